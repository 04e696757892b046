//! The event store contract, run against both stores: every test in `on_both_stores!` runs once
//! on a fresh SQLite file and once on a fresh PostgreSQL database (`sluice_ev_test_<random>`,
//! dropped afterwards). PostgreSQL is `$SLUICE_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when it is unreachable the PostgreSQL tests
//! fail, they are never skipped.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;
use serde_json::value::RawValue;
use sluice_events::event::Append;
use sluice_events::store::{AppendOutcome, PostgresEventStore, SqliteEventStore, open_event_store};
use sluice_events::{
    ErrorKind, EventStore, Grants, HistoryQuery, Pattern, Principal, Retention, RoutingKey,
    StoredEvent, TopicName, TopicSpec,
};

use sluice_test_support::{StoreFixture, TestDatabase, TestStore as Backend};
// ---------------------------------------------------------------------------------------------
// Fixtures: one store per test, on either backend.

/// A fresh PostgreSQL database (see `sluice_test_support`), named for this crate's tests.
async fn fresh_database() -> TestDatabase {
    TestDatabase::create(PREFIX).await
}

/// The name prefix of this crate's fresh PostgreSQL databases.
const PREFIX: &str = "sluice_ev_test_";

/// A store on a fresh database. Derefs to the store.
type Fixture = StoreFixture<dyn EventStore>;

/// The fixture's constructors, and what the tests do beneath the store.
#[allow(async_fn_in_trait)]
trait EventStoreFixture: Sized {
    async fn sqlite() -> Self;
    async fn postgres() -> Self;
    async fn reopen(&self) -> Arc<dyn EventStore>;
    fn label(&self) -> &'static str;
}

impl EventStoreFixture for Fixture {
    async fn sqlite() -> Self {
        let place = Backend::sqlite();
        let Backend::Sqlite { path, .. } = &place else {
            unreachable!("a SQLite store")
        };
        let handle = Arc::new(SqliteEventStore::open(path).unwrap());
        StoreFixture { handle, place }
    }

    async fn postgres() -> Self {
        let place = Backend::postgres(PREFIX).await;
        let Backend::Postgres(db) = &place else {
            unreachable!("a PostgreSQL store")
        };
        let handle = Arc::new(PostgresEventStore::connect(&db.url).await.unwrap());
        StoreFixture { handle, place }
    }

    /// Another store on the same database, as a second process would open it.
    async fn reopen(&self) -> Arc<dyn EventStore> {
        match &self.place {
            Backend::Sqlite { path, .. } => Arc::new(SqliteEventStore::open(path).unwrap()),
            Backend::Postgres(db) => Arc::new(PostgresEventStore::connect(&db.url).await.unwrap()),
        }
    }

    fn label(&self) -> &'static str {
        match self.place {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// For each named `async fn NAME(fx: Fixture)`, a module `NAME` with the tests `sqlite` and
/// `postgres`.
macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(<super::Fixture as super::EventStoreFixture>::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test(<super::Fixture as super::EventStoreFixture>::postgres().await).await
            }
        }
    )+};
}

on_both_stores!(
    topics_are_created_updated_listed_and_deleted,
    a_topic_holding_events_is_deleted_only_by_force,
    sequence_numbers_are_per_topic_in_input_order,
    client_ids_are_stored_once_across_calls_and_within_one,
    a_missing_topic_stores_nothing,
    read_after_pages_in_sequence_order,
    queries_match_routing_patterns,
    queries_keep_to_a_time_range,
    cursor_pages_visit_every_match_exactly_once,
    a_scan_limit_ends_a_page_early_with_a_cursor,
    last_per_key_is_the_newest_event_of_each_key,
    last_per_key_follows_appends_retention_and_a_recreated_topic,
    retention_by_count_keeps_the_newest,
    retention_by_age_removes_the_old,
    timestamps_keep_microseconds_and_never_go_back,
    payloads_keep_their_exact_text,
    concurrent_appenders_through_two_instances_leave_no_gap,
    concurrent_appends_of_one_client_id_store_it_once,
    append_throughput,
);

// ---------------------------------------------------------------------------------------------
// Helpers.

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn pattern(text: &str) -> Pattern {
    Pattern::new(text).unwrap()
}

fn spec() -> TopicSpec {
    TopicSpec::default()
}

/// An event with a hub-made id.
fn ev(topic_name: &str, key: &str, payload: serde_json::Value) -> Append {
    Append {
        topic: topic(topic_name),
        routing_key: RoutingKey::new(key).unwrap(),
        payload: RawValue::from_string(payload.to_string()).unwrap(),
        id: uuid::Uuid::new_v4().to_string(),
        client_id: false,
        posted_by: Some("ann".into()),
    }
}

/// An event with a client's id.
fn ev_id(topic_name: &str, key: &str, payload: serde_json::Value, id: &str) -> Append {
    Append {
        id: id.to_owned(),
        client_id: true,
        ..ev(topic_name, key, payload)
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

async fn create(store: &dyn EventStore, name: &str) {
    store
        .create_topic(&topic(name), &spec(), false, "ann")
        .await
        .unwrap();
}

async fn append(store: &dyn EventStore, events: Vec<Append>) -> Vec<AppendOutcome> {
    store.append(events, Utc::now()).await.unwrap()
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

async fn all_events(store: &dyn EventStore, name: &str) -> Vec<StoredEvent> {
    store.read_after(&topic(name), 0, 1_000_000).await.unwrap()
}

fn history(name: &str, pattern_text: &str) -> HistoryQuery {
    HistoryQuery {
        topic: topic(name),
        pattern: pattern(pattern_text),
        start: None,
        end: None,
        after_seq: 0,
        limit: 1_000_000,
        scan_limit: 1_000_000,
    }
}

// ---------------------------------------------------------------------------------------------
// Topics.

async fn topics_are_created_updated_listed_and_deleted(fx: Fixture) {
    let schema1 = json!({"type": "object", "required": ["v"]});
    let schema2 = json!({"type": "object", "required": ["v", "w"]});
    let grants = Grants {
        read: vec![Principal::User("bob".into())],
        publish: vec![],
        admin: vec![Principal::User("alice".into())],
    };
    let spec1 = TopicSpec {
        description: "temperatures".into(),
        schema: Some(schema1.clone()),
        retention: Retention {
            max_age_seconds: Some(3600),
            max_count: Some(100),
        },
        grants: grants.clone(),
    };
    let t = fx
        .create_topic(&topic("temps"), &spec1, false, "ann")
        .await
        .unwrap();
    assert_eq!(t.name, topic("temps"));
    assert_eq!(t.description, "temperatures");
    assert_eq!(t.schema_version, 1);
    assert_eq!(t.schema, Some(schema1.clone()));
    assert_eq!(t.retention, spec1.retention);
    assert_eq!(t.grants, grants);
    assert!(!t.builtin);
    assert_eq!(t.updated_by, "ann");
    assert_eq!(t.last_seq, 0);
    assert_eq!(fx.topic(&topic("temps")).await.unwrap(), Some(t.clone()));

    let again = fx
        .create_topic(&topic("temps"), &spec(), false, "bob")
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);
    assert!(again.to_string().contains("temps"), "{again}");

    let plain = fx
        .create_topic(&topic("audit"), &spec(), true, "sluice")
        .await
        .unwrap();
    assert_eq!(plain.schema_version, 0);
    assert_eq!(plain.schema, None);
    assert!(plain.builtin);
    assert!(
        fx.schema_versions(&topic("audit"))
            .await
            .unwrap()
            .is_empty()
    );

    // The same schema (keys in another order) is no new version.
    let same = TopicSpec {
        description: "temperatures, in C".into(),
        schema: Some(json!({"required": ["v"], "type": "object"})),
        ..spec1.clone()
    };
    let t = fx
        .update_topic(&topic("temps"), &same, "bob")
        .await
        .unwrap();
    assert_eq!(t.schema_version, 1);
    assert_eq!(t.description, "temperatures, in C");
    assert_eq!(t.updated_by, "bob");
    // A changed schema is version 2; removing it is version 3.
    let changed = TopicSpec {
        schema: Some(schema2.clone()),
        retention: Retention::default(),
        grants: Grants::default(),
        ..same.clone()
    };
    let t = fx
        .update_topic(&topic("temps"), &changed, "cy")
        .await
        .unwrap();
    assert_eq!(t.schema_version, 2);
    assert_eq!(t.schema, Some(schema2.clone()));
    assert_eq!(t.retention, Retention::default());
    assert_eq!(t.grants, Grants::default());
    let removed = TopicSpec {
        schema: None,
        ..changed.clone()
    };
    let t = fx
        .update_topic(&topic("temps"), &removed, "cy")
        .await
        .unwrap();
    assert_eq!(t.schema_version, 3);
    assert_eq!(t.schema, None);
    let t = fx
        .update_topic(&topic("temps"), &removed, "cy")
        .await
        .unwrap();
    assert_eq!(t.schema_version, 3, "no schema again is no new version");
    let versions = fx.schema_versions(&topic("temps")).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.schema.clone(), v.created_by.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (1, Some(schema1), "ann"),
            (2, Some(schema2.clone()), "cy"),
            (3, None, "cy"),
        ]
    );
    // A topic that never had a schema starts at version 1.
    let t = fx
        .update_topic(
            &topic("audit"),
            &TopicSpec {
                schema: Some(schema2),
                ..spec()
            },
            "sluice",
        )
        .await
        .unwrap();
    assert_eq!(t.schema_version, 1);

    create(&*fx, "a-first").await;
    let names: Vec<String> = fx
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["a-first", "audit", "temps"]);

    let missing = topic("nope");
    assert_eq!(fx.topic(&missing).await.unwrap(), None);
    assert_eq!(
        fx.update_topic(&missing, &spec(), "ann")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        fx.schema_versions(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        fx.delete_topic(&missing, true).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // An empty topic goes without force, with its schema versions.
    fx.delete_topic(&topic("temps"), false).await.unwrap();
    assert_eq!(fx.topic(&topic("temps")).await.unwrap(), None);
    let t = fx
        .create_topic(&topic("temps"), &spec(), false, "dan")
        .await
        .unwrap();
    assert_eq!(t.schema_version, 0);
    assert!(
        fx.schema_versions(&topic("temps"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_topic_holding_events_is_deleted_only_by_force(fx: Fixture) {
    create(&*fx, "t").await;
    create(&*fx, "other").await;
    append(
        &*fx,
        (0..12_000)
            .map(|i| ev("t", "k", json!(i)))
            .chain([ev("other", "k", json!(0))])
            .collect(),
    )
    .await;
    let refused = fx.delete_topic(&topic("t"), false).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict);
    let message = refused.to_string();
    assert!(
        message.contains("12000 events") && message.contains("force"),
        "{message}"
    );
    assert_eq!(fx.event_count(&topic("t")).await.unwrap(), 12_000);

    fx.delete_topic(&topic("t"), true).await.unwrap();
    assert_eq!(fx.topic(&topic("t")).await.unwrap(), None);
    assert_eq!(fx.event_count(&topic("t")).await.unwrap(), 0);
    assert_eq!(fx.event_count(&topic("other")).await.unwrap(), 1);
    // A new topic of the same name starts afresh.
    create(&*fx, "t").await;
    let out = append(&*fx, vec![ev("t", "k", json!(1))]).await;
    assert_eq!(out[0].event.seq, 1);
    assert_eq!(seqs(&all_events(&*fx, "t").await), [1]);
}

// ---------------------------------------------------------------------------------------------
// Append.

async fn sequence_numbers_are_per_topic_in_input_order(fx: Fixture) {
    create(&*fx, "a").await;
    create(&*fx, "b").await;
    let out = append(
        &*fx,
        vec![
            ev("a", "x", json!(1)),
            ev("b", "x", json!(2)),
            ev("a", "x", json!(3)),
            ev("a", "y", json!(4)),
            ev("b", "y", json!(5)),
        ],
    )
    .await;
    let got: Vec<(String, u64, bool)> = out
        .iter()
        .map(|o| (o.event.topic.to_string(), o.event.seq, o.duplicate))
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), 1, false),
            ("b".into(), 1, false),
            ("a".into(), 2, false),
            ("a".into(), 3, false),
            ("b".into(), 2, false),
        ]
    );
    let out = append(&*fx, vec![ev("b", "x", json!(6)), ev("a", "x", json!(7))]).await;
    assert_eq!((out[0].event.seq, out[1].event.seq), (3, 4));
    assert_eq!(fx.topic(&topic("a")).await.unwrap().unwrap().last_seq, 4);
    assert_eq!(fx.topic(&topic("b")).await.unwrap().unwrap().last_seq, 3);

    let stored = all_events(&*fx, "a").await;
    assert_eq!(seqs(&stored), [1, 2, 3, 4]);
    let payloads: Vec<&str> = stored.iter().map(|e| e.payload.get()).collect();
    assert_eq!(payloads, ["1", "3", "4", "7"]);
    assert!(stored.iter().all(|e| e.topic == topic("a")));
    assert_eq!(stored[2].routing_key.as_str(), "y");
    assert_eq!(stored[0].posted_by.as_deref(), Some("ann"));
    assert_eq!(fx.event_count(&topic("a")).await.unwrap(), 4);
    assert_eq!(fx.event_count(&topic("b")).await.unwrap(), 3);
    assert_eq!(fx.event_count(&topic("none")).await.unwrap(), 0);
    // What append answers is what reads give.
    assert_eq!(
        out[1].event.to_json(),
        stored[3].to_json(),
        "append's outcome equals the stored event"
    );
    assert!(append(&*fx, Vec::new()).await.is_empty());
}

async fn client_ids_are_stored_once_across_calls_and_within_one(fx: Fixture) {
    create(&*fx, "a").await;
    create(&*fx, "b").await;
    let first = append(&*fx, vec![ev_id("a", "k", json!({"n": 1}), "order-1")]).await;
    assert!(!first[0].duplicate);
    assert_eq!(first[0].event.seq, 1);

    let out = fx
        .append(
            vec![
                ev_id("a", "k2", json!({"n": 2}), "order-1"),
                ev_id("a", "k", json!({"n": 3}), "order-2"),
                ev("a", "k", json!({"n": 4})),
                ev_id("a", "k", json!({"n": 5}), "order-2"),
                ev_id("b", "k", json!({"n": 6}), "order-1"),
            ],
            Utc::now() + TimeDelta::seconds(5),
        )
        .await
        .unwrap();
    // An id stored by an earlier call: the stored event, unchanged.
    assert!(out[0].duplicate);
    assert_eq!(out[0].event.to_json(), first[0].event.to_json());
    // New ones take the next numbers.
    assert!(!out[1].duplicate);
    assert_eq!(out[1].event.seq, 2);
    assert!(!out[2].duplicate);
    assert_eq!(out[2].event.seq, 3);
    // The second occurrence in one call answers with the first.
    assert!(out[3].duplicate);
    assert_eq!(out[3].event.to_json(), out[1].event.to_json());
    assert_eq!(out[3].event.payload.get(), r#"{"n":3}"#);
    // Ids are per topic.
    assert!(!out[4].duplicate);
    assert_eq!((out[4].event.topic.as_str(), out[4].event.seq), ("b", 1));

    let stored = all_events(&*fx, "a").await;
    assert_eq!(seqs(&stored), [1, 2, 3]);
    assert_eq!(fx.topic(&topic("a")).await.unwrap().unwrap().last_seq, 3);
}

async fn a_missing_topic_stores_nothing(fx: Fixture) {
    create(&*fx, "a").await;
    let refused = fx
        .append(
            vec![ev("a", "k", json!(1)), ev("ghost", "k", json!(2))],
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotFound);
    assert!(refused.to_string().contains("ghost"), "{refused}");
    assert!(all_events(&*fx, "a").await.is_empty());
    assert_eq!(fx.topic(&topic("a")).await.unwrap().unwrap().last_seq, 0);
    // Also when every event of the missing topic is a duplicate-looking client id.
    let refused = fx
        .append(vec![ev_id("ghost", "k", json!(1), "x")], Utc::now())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotFound);
    // And a plain append to one missing topic (no client ids, no separate lock query).
    let refused = fx
        .append(vec![ev("ghost", "k", json!(1))], Utc::now())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotFound);
    assert!(refused.to_string().contains("ghost"), "{refused}");
    let out = append(&*fx, vec![ev("a", "k", json!(3))]).await;
    assert_eq!(out[0].event.seq, 1, "the failed call took no numbers");
}

async fn read_after_pages_in_sequence_order(fx: Fixture) {
    create(&*fx, "a").await;
    create(&*fx, "b").await;
    append(&*fx, (0..10).map(|i| ev("a", "k", json!(i))).collect()).await;
    append(&*fx, (0..3).map(|i| ev("b", "k", json!(i))).collect()).await;
    let page = fx.read_after(&topic("a"), 3, 4).await.unwrap();
    assert_eq!(seqs(&page), [4, 5, 6, 7]);
    assert!(page.iter().all(|e| e.topic == topic("a")));
    assert_eq!(
        seqs(&fx.read_after(&topic("a"), 8, 100).await.unwrap()),
        [9, 10]
    );
    assert!(
        fx.read_after(&topic("a"), 10, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        fx.read_after(&topic("zzz"), 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// History.

const KEYS: [&str; 7] = [
    "plant1.line1.temp",
    "plant1.line2.temp",
    "plant2.line1.temp",
    "plant1",
    "plant1.line1.pressure",
    "plant10.line1.temp",
    "plant_1.x",
];

const PATTERNS: [&str; 10] = [
    "plant1.line1.temp",
    "plant1.#",
    "plant1.*.temp",
    "*.line1.temp",
    "#.temp",
    "#",
    "plant1",
    "plant_1.*",
    "nothing.#",
    "plant1.line1.#",
];

async fn queries_match_routing_patterns(fx: Fixture) {
    create(&*fx, "t").await;
    let events: Vec<Append> = (0..70)
        .map(|i| ev("t", KEYS[i % KEYS.len()], json!(i)))
        .collect();
    append(&*fx, events).await;
    let stored = all_events(&*fx, "t").await;
    for text in PATTERNS {
        let p = pattern(text);
        let expected: Vec<u64> = stored
            .iter()
            .filter(|e| p.matches(&e.routing_key))
            .map(|e| e.seq)
            .collect();
        let page = fx.query(&history("t", text)).await.unwrap();
        assert_eq!(seqs(&page.events), expected, "pattern {text}");
        assert_eq!(page.next_after, None, "pattern {text}");
    }
    // Spot checks against the reference itself.
    let page = fx.query(&history("t", "plant1.#")).await.unwrap();
    let keys: BTreeSet<&str> = page.events.iter().map(|e| e.routing_key.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "plant1",
            "plant1.line1.temp",
            "plant1.line2.temp",
            "plant1.line1.pressure"
        ])
    );
    assert_eq!(
        fx.query(&history("t", "plant1.line1.temp"))
            .await
            .unwrap()
            .events
            .len(),
        10
    );
    // Another topic's events never show.
    create(&*fx, "u").await;
    append(&*fx, vec![ev("u", "plant1", json!(0))]).await;
    assert_eq!(
        fx.query(&history("t", "plant1"))
            .await
            .unwrap()
            .events
            .len(),
        10
    );
    let none = fx.query(&history("nope", "#")).await.unwrap();
    assert!(none.events.is_empty() && none.next_after.is_none());
}

async fn queries_keep_to_a_time_range(fx: Fixture) {
    create(&*fx, "t").await;
    for (i, when) in [at(0), at(10), at(20)].into_iter().enumerate() {
        let events = (0..5)
            .map(|j| ev("t", if j % 2 == 0 { "a.x" } else { "b.x" }, json!([i, j])))
            .collect();
        fx.append(events, when).await.unwrap();
    }
    let range = |start: Option<i64>, end: Option<i64>, text: &str| HistoryQuery {
        start: start.map(at),
        end: end.map(at),
        ..history("t", text)
    };
    let page = fx.query(&range(Some(10), None, "#")).await.unwrap();
    assert_eq!(seqs(&page.events), (6..=15).collect::<Vec<_>>());
    assert_eq!(page.next_after, None);
    let page = fx.query(&range(None, Some(20), "#")).await.unwrap();
    assert_eq!(seqs(&page.events), (1..=10).collect::<Vec<_>>());
    assert_eq!(page.next_after, None);
    let page = fx.query(&range(Some(5), Some(20), "#")).await.unwrap();
    assert_eq!(seqs(&page.events), (6..=10).collect::<Vec<_>>());
    let page = fx.query(&range(Some(5), Some(20), "a.#")).await.unwrap();
    assert_eq!(seqs(&page.events), [6, 8, 10]);
    let page = fx.query(&range(Some(5), Some(20), "*.x")).await.unwrap();
    assert_eq!(seqs(&page.events), (6..=10).collect::<Vec<_>>());
    let page = fx.query(&range(Some(10), Some(11), "b.x")).await.unwrap();
    assert_eq!(seqs(&page.events), [7, 9]);
    assert!(
        page.events
            .iter()
            .all(|e| e.timestamp == at(10) && e.timestamp_text() == "2023-11-14T22:13:30.000000Z")
    );
    let page = fx.query(&range(Some(21), None, "#")).await.unwrap();
    assert!(page.events.is_empty() && page.next_after.is_none());
    let page = fx.query(&range(None, Some(-1), "#")).await.unwrap();
    assert!(page.events.is_empty() && page.next_after.is_none());
    // A cursor and a start time: whichever is later.
    let page = fx
        .query(&HistoryQuery {
            after_seq: 12,
            ..range(Some(10), None, "#")
        })
        .await
        .unwrap();
    assert_eq!(seqs(&page.events), [13, 14, 15]);
    let page = fx
        .query(&HistoryQuery {
            after_seq: 2,
            ..range(Some(10), None, "#")
        })
        .await
        .unwrap();
    assert_eq!(page.events.first().map(|e| e.seq), Some(6));
}

async fn cursor_pages_visit_every_match_exactly_once(fx: Fixture) {
    create(&*fx, "t").await;
    let events: Vec<Append> = (0..2_500)
        .map(|i| ev("t", KEYS[(i * 3 + i / 7) % KEYS.len()], json!(i)))
        .collect();
    append(&*fx, events).await;
    let stored = all_events(&*fx, "t").await;
    for text in PATTERNS {
        let p = pattern(text);
        let expected: Vec<u64> = stored
            .iter()
            .filter(|e| p.matches(&e.routing_key))
            .map(|e| e.seq)
            .collect();
        for (limit, scan_limit) in [(7, 1_000_000), (100, 450), (1, 3), (1_000, 1_000)] {
            let mut got = Vec::new();
            let mut after = 0;
            let mut pages = 0;
            loop {
                let page = fx
                    .query(&HistoryQuery {
                        after_seq: after,
                        limit,
                        scan_limit,
                        ..history("t", text)
                    })
                    .await
                    .unwrap();
                assert!(page.events.len() <= limit);
                got.extend(seqs(&page.events));
                pages += 1;
                assert!(pages <= 5_000, "pattern {text}: paging does not end");
                match page.next_after {
                    Some(next) => {
                        assert!(next > after, "pattern {text}: the cursor moves on");
                        after = next;
                    }
                    None => break,
                }
            }
            assert_eq!(
                got, expected,
                "pattern {text}, limit {limit}, scan limit {scan_limit}"
            );
        }
    }
}

async fn a_scan_limit_ends_a_page_early_with_a_cursor(fx: Fixture) {
    create(&*fx, "t").await;
    let events: Vec<Append> = (1..=100)
        .map(|i| ev("t", if i == 90 { "x.rare" } else { "x.common" }, json!(i)))
        .collect();
    append(&*fx, events).await;
    let query = |after: u64, text: &str| HistoryQuery {
        after_seq: after,
        limit: 10,
        scan_limit: 30,
        ..history("t", text)
    };
    // Narrowed in Rust: a page looks at 30 events at most.
    let page = fx.query(&query(0, "*.rare")).await.unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.next_after, Some(30));
    let page = fx.query(&query(60, "*.rare")).await.unwrap();
    assert_eq!(seqs(&page.events), [90]);
    assert_eq!(page.next_after, Some(90));
    let page = fx.query(&query(90, "*.rare")).await.unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.next_after, None);
    let page = fx.query(&query(0, "x.rare")).await.unwrap();
    if fx.label() == "sqlite" {
        // Narrowed in SQL: the key index finds the one event at once.
        assert_eq!(seqs(&page.events), [90]);
        assert_eq!(page.next_after, None);
    } else {
        // No key index (it would cost every append): a literal key is windowed like a pattern.
        assert!(page.events.is_empty());
        assert_eq!(page.next_after, Some(30));
        let page = fx.query(&query(60, "x.rare")).await.unwrap();
        assert_eq!(seqs(&page.events), [90]);
    }
    // A full page of a common key ends at its last event.
    let page = fx.query(&query(0, "x.#")).await.unwrap();
    assert_eq!(seqs(&page.events), (1..=10).collect::<Vec<_>>());
    assert_eq!(page.next_after, Some(10));
}

async fn last_per_key_is_the_newest_event_of_each_key(fx: Fixture) {
    create(&*fx, "t").await;
    create(&*fx, "u").await;
    let keys = ["a.x", "a.y", "b.x", "a.x", "a.y", "a", "a_b.x"];
    append(
        &*fx,
        keys.iter()
            .enumerate()
            .map(|(i, k)| ev("t", k, json!(i)))
            .collect(),
    )
    .await;
    append(&*fx, vec![ev("u", "a.x", json!("u"))]).await;
    let last = |text: &'static str| {
        let store = fx.handle.clone();
        async move {
            store
                .last_per_key(&topic("t"), &pattern(text))
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.routing_key.to_string(), e.seq))
                .collect::<Vec<_>>()
        }
    };
    let s = |k: &str, seq: u64| (k.to_owned(), seq);
    assert_eq!(
        last("#").await,
        [
            s("a", 6),
            s("a.x", 4),
            s("a.y", 5),
            s("a_b.x", 7),
            s("b.x", 3)
        ]
    );
    assert_eq!(last("a.*").await, [s("a.x", 4), s("a.y", 5)]);
    assert_eq!(last("a.#").await, [s("a", 6), s("a.x", 4), s("a.y", 5)]);
    assert_eq!(last("a.x").await, [s("a.x", 4)]);
    assert_eq!(last("#.x").await, [s("a.x", 4), s("a_b.x", 7), s("b.x", 3)]);
    assert!(last("c.#").await.is_empty());
    assert!(last("c").await.is_empty());
    let events = fx.last_per_key(&topic("t"), &pattern("b.x")).await.unwrap();
    assert_eq!(events[0].payload.get(), "2");
}

async fn last_per_key_follows_appends_retention_and_a_recreated_topic(fx: Fixture) {
    let keep3 = TopicSpec {
        retention: Retention {
            max_age_seconds: None,
            max_count: Some(3),
        },
        ..spec()
    };
    fx.create_topic(&topic("t"), &keep3, false, "ann")
        .await
        .unwrap();
    create(&*fx, "u").await;
    let last = |name: &'static str| {
        let store = fx.handle.clone();
        async move {
            store
                .last_per_key(&topic(name), &pattern("#"))
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.routing_key.to_string(), e.seq, e.payload.get().to_owned()))
                .collect::<Vec<_>>()
        }
    };
    let s = |k: &str, seq: u64, p: &str| (k.to_owned(), seq, p.to_owned());
    // One call over two topics, keys repeating within it.
    append(
        &*fx,
        vec![
            ev("t", "a", json!("t1")),
            ev("u", "b", json!("u1")),
            ev("t", "b", json!("t2")),
            ev("t", "a", json!("t3")),
            ev("u", "b", json!("u2")),
        ],
    )
    .await;
    assert_eq!(last("t").await, [s("a", 3, "\"t3\""), s("b", 2, "\"t2\"")]);
    assert_eq!(last("u").await, [s("b", 2, "\"u2\"")]);
    append(&*fx, vec![ev("t", "c", json!("t4"))]).await;
    assert_eq!(fx.enforce_retention(Utc::now()).await.unwrap(), 1);
    assert_eq!(
        last("t").await,
        [
            s("a", 3, "\"t3\""),
            s("b", 2, "\"t2\""),
            s("c", 4, "\"t4\"")
        ]
    );
    // Retention removes every event of a and b: they are no longer keys of the topic.
    append(
        &*fx,
        vec![ev("t", "c", json!("t5")), ev("t", "c", json!("t6"))],
    )
    .await;
    assert_eq!(fx.enforce_retention(Utc::now()).await.unwrap(), 2);
    assert_eq!(last("t").await, [s("c", 6, "\"t6\"")]);
    // A topic made again under the same name starts from nothing.
    fx.delete_topic(&topic("t"), true).await.unwrap();
    create(&*fx, "t").await;
    assert!(last("t").await.is_empty());
    append(&*fx, vec![ev("t", "d", json!("new"))]).await;
    assert_eq!(last("t").await, [s("d", 1, "\"new\"")]);
    assert_eq!(last("u").await, [s("b", 2, "\"u2\"")]);
}

// ---------------------------------------------------------------------------------------------
// Retention.

async fn retention_by_count_keeps_the_newest(fx: Fixture) {
    let keep5 = TopicSpec {
        retention: Retention {
            max_age_seconds: None,
            max_count: Some(5),
        },
        ..spec()
    };
    fx.create_topic(&topic("t"), &keep5, false, "ann")
        .await
        .unwrap();
    create(&*fx, "forever").await;
    append(&*fx, (0..12).map(|i| ev("t", "k", json!(i))).collect()).await;
    append(
        &*fx,
        (0..12).map(|i| ev("forever", "k", json!(i))).collect(),
    )
    .await;
    assert_eq!(fx.enforce_retention(Utc::now()).await.unwrap(), 7);
    assert_eq!(seqs(&all_events(&*fx, "t").await), [8, 9, 10, 11, 12]);
    assert_eq!(fx.event_count(&topic("t")).await.unwrap(), 5);
    assert_eq!(fx.event_count(&topic("forever")).await.unwrap(), 12);
    assert_eq!(fx.enforce_retention(Utc::now()).await.unwrap(), 0);
    let out = append(&*fx, vec![ev("t", "k", json!(12))]).await;
    assert_eq!(out[0].event.seq, 13, "numbers are never reused");
    assert_eq!(fx.enforce_retention(Utc::now()).await.unwrap(), 1);
    assert_eq!(seqs(&all_events(&*fx, "t").await), [9, 10, 11, 12, 13]);

    // A large removal goes in chunks and still removes exactly what it should.
    append(&*fx, (0..12_000).map(|i| ev("t", "k", json!(i))).collect()).await;
    assert_eq!(fx.enforce_retention(Utc::now()).await.unwrap(), 12_000);
    assert_eq!(
        seqs(&all_events(&*fx, "t").await),
        (12_009..=12_013).collect::<Vec<_>>()
    );
    // Queries start at the oldest event kept.
    let page = fx
        .query(&HistoryQuery {
            limit: 2,
            ..history("t", "#")
        })
        .await
        .unwrap();
    assert_eq!(seqs(&page.events), [12_009, 12_010]);
}

async fn retention_by_age_removes_the_old(fx: Fixture) {
    let minute = TopicSpec {
        retention: Retention {
            max_age_seconds: Some(60),
            max_count: None,
        },
        ..spec()
    };
    fx.create_topic(&topic("t"), &minute, false, "ann")
        .await
        .unwrap();
    fx.append((0..3).map(|i| ev("t", "k", json!(i))).collect(), at(0))
        .await
        .unwrap();
    fx.append((3..5).map(|i| ev("t", "k", json!(i))).collect(), at(90))
        .await
        .unwrap();
    assert_eq!(fx.enforce_retention(at(100)).await.unwrap(), 3);
    assert_eq!(seqs(&all_events(&*fx, "t").await), [4, 5]);
    // Exactly max_age old is kept.
    assert_eq!(fx.enforce_retention(at(150)).await.unwrap(), 0);
    assert_eq!(fx.enforce_retention(at(151)).await.unwrap(), 2);
    assert_eq!(fx.event_count(&topic("t")).await.unwrap(), 0);
    assert_eq!(fx.topic(&topic("t")).await.unwrap().unwrap().last_seq, 5);
    let out = fx
        .append(vec![ev("t", "k", json!(5))], at(200))
        .await
        .unwrap();
    assert_eq!(out[0].event.seq, 6);
}

// ---------------------------------------------------------------------------------------------
// Timestamps and payloads.

async fn timestamps_keep_microseconds_and_never_go_back(fx: Fixture) {
    create(&*fx, "t").await;
    let when = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
    let micros = Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap();
    let out = fx.append(vec![ev("t", "k", json!(1))], when).await.unwrap();
    assert_eq!(out[0].event.timestamp, micros);
    let stored = all_events(&*fx, "t").await;
    assert_eq!(stored[0].timestamp, micros);
    assert_eq!(stored[0].timestamp_text(), "2023-11-14T22:13:20.123456Z");
    // A clock behind the topic's newest event stamps that event's time instead.
    let out = fx
        .append(vec![ev("t", "k", json!(2))], when - TimeDelta::seconds(10))
        .await
        .unwrap();
    assert_eq!(out[0].event.timestamp, micros);
    let later = when + TimeDelta::microseconds(1);
    let out = fx
        .append(vec![ev("t", "k", json!(3))], later)
        .await
        .unwrap();
    assert_eq!(out[0].event.timestamp, micros + TimeDelta::microseconds(1));
    let stored = all_events(&*fx, "t").await;
    assert!(stored.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert_eq!(
        fx.query(&HistoryQuery {
            start: Some(micros + TimeDelta::microseconds(1)),
            ..history("t", "#")
        })
        .await
        .unwrap()
        .events
        .len(),
        1
    );
}

async fn payloads_keep_their_exact_text(fx: Fixture) {
    create(&*fx, "t").await;
    let texts = [
        r#"{"z":1,"a":[1,2.50,"ü\n\"x\""],"m":{"b":null,"a":true}}"#,
        r#""just a string""#,
        "12345678901234567890",
        r#"{ "spaced" : 1 }"#,
    ];
    let events = texts
        .iter()
        .map(|t| Append {
            payload: RawValue::from_string((*t).to_owned()).unwrap(),
            ..ev("t", "k", json!(null))
        })
        .collect();
    append(&*fx, events).await;
    let stored = all_events(&*fx, "t").await;
    let got: Vec<&str> = stored.iter().map(|e| e.payload.get()).collect();
    assert_eq!(got, texts);
}

// ---------------------------------------------------------------------------------------------
// Several writers.

async fn concurrent_appenders_through_two_instances_leave_no_gap(fx: Fixture) {
    create(&*fx, "t").await;
    create(&*fx, "u").await;
    let second = fx.reopen().await;
    let mut tasks = Vec::new();
    for (w, store) in [
        fx.handle.clone(),
        second,
        fx.handle.clone(),
        fx.reopen().await,
    ]
    .into_iter()
    .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..100 {
                // Some calls touch both topics, in either order.
                let mut events = vec![ev("t", "k", json!([w, i]))];
                if i % 3 == 0 {
                    let other = ev("u", "k", json!([w, i]));
                    if w % 2 == 0 {
                        events.push(other);
                    } else {
                        events.insert(0, other);
                    }
                }
                let out = store.append(events, Utc::now()).await.unwrap();
                mine.extend(
                    out.into_iter()
                        .filter(|o| o.event.topic.as_str() == "t")
                        .map(|o| o.event.seq),
                );
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one writer's seqs rise"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    assert_eq!(seqs(&all_events(&*fx, "t").await), all);
    let u = all_events(&*fx, "u").await;
    assert_eq!(seqs(&u), (1..=u.len() as u64).collect::<Vec<_>>());
    assert_eq!(u.len(), 4 * 34);
    let t = all_events(&*fx, "t").await;
    assert!(t.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
}

async fn concurrent_appends_of_one_client_id_store_it_once(fx: Fixture) {
    create(&*fx, "t").await;
    let stores = [fx.handle.clone(), fx.reopen().await];
    for round in 0..8 {
        let id = format!("order-{round}");
        let mut tasks = Vec::new();
        for w in 0..6 {
            let store = stores[w % 2].clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append(
                        vec![ev("t", "k", json!(w)), ev_id("t", "k", json!(w), &id)],
                        Utc::now(),
                    )
                    .await
                    .unwrap()
                    .pop()
                    .unwrap()
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        assert_eq!(
            outcomes.iter().filter(|o| !o.duplicate).count(),
            1,
            "round {round}: exactly one append stores the id"
        );
        let seq = outcomes[0].event.seq;
        assert!(outcomes.iter().all(|o| o.event.seq == seq));
        let payload = outcomes[0].event.payload.get().to_owned();
        assert!(outcomes.iter().all(|o| o.event.payload.get() == payload));
    }
    let stored = all_events(&*fx, "t").await;
    assert_eq!(stored.len(), 8 * 7);
    assert_eq!(seqs(&stored), (1..=56).collect::<Vec<_>>());
    let ids: BTreeSet<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 56);
}

/// Prints how fast 10,000 small events append in one call (asserts nothing about time).
async fn append_throughput(fx: Fixture) {
    create(&*fx, "bench").await;
    let batch = || -> Vec<Append> {
        (0..10_000)
            .map(|i| {
                ev(
                    "bench",
                    &format!("plant{}.line{}.temp", i % 10, i % 7),
                    json!({"v": i, "unit": "C"}),
                )
            })
            .collect()
    };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let events = batch();
        let started = Instant::now();
        let out = fx.append(events, Utc::now()).await.unwrap();
        best = best.min(started.elapsed().as_secs_f64());
        assert_eq!(out.len(), 10_000);
    }
    println!(
        "{}: 10,000 events in one append: best {:.1} ms, {:.0} events/s",
        fx.label(),
        best * 1e3,
        10_000.0 / best
    );
    assert_eq!(fx.event_count(&topic("bench")).await.unwrap(), 50_000);
}

// ---------------------------------------------------------------------------------------------
// Opening by spec.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_open_by_the_repository_spec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let spec = format!("sqlite:{}", path.display());
    let store = open_event_store(&spec).await.unwrap();
    create(&*store, "t").await;
    drop(store);
    // A plain path opens the same file, and its topic is still there.
    let store = open_event_store(&path.display().to_string()).await.unwrap();
    assert!(store.topic(&topic("t")).await.unwrap().is_some());

    for bad in ["mysql://x@y/z", "", "  "] {
        let e = open_event_store(bad).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Storage);
        let message = e.to_string();
        assert!(message.contains("sqlite:PATH"), "{message}");
    }
    let e = open_event_store("mysql://x@y/z").await.err().unwrap();
    assert!(e.to_string().contains("\"mysql\""), "{e}");

    let db = fresh_database().await;
    let pg = open_event_store(&db.url).await.unwrap();
    create(&*pg, "t").await;
    let url = db.url.replacen("postgres://", "postgresql://", 1);
    let again = open_event_store(&url).await.unwrap();
    assert!(again.topic(&topic("t")).await.unwrap().is_some());
    drop((pg, again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_shares_the_file_with_other_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migration (version INTEGER PRIMARY KEY); \
             INSERT INTO schema_migration VALUES (7); PRAGMA journal_mode = WAL;",
        )
        .unwrap();
    }
    let store = SqliteEventStore::open(&path).unwrap();
    create(&store, "t").await;
    append(&store, vec![ev("t", "k", json!(1))]).await;
    drop(store);
    // Opening again migrates nothing twice.
    let store = SqliteEventStore::open(&path).unwrap();
    assert_eq!(all_events(&store, "t").await.len(), 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let repo_version: i64 = conn
        .query_row("SELECT max(version) FROM schema_migration", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(repo_version, 7, "the repository's tables are untouched");
    let ours: i64 = conn
        .query_row("SELECT count(*) FROM ev_schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(ours, 1);
}
