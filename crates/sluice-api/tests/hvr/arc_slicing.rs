//! HVR conformance: slicing of refresh and compare (PostgreSQL and SQLite sources), and the
//! slicing suggestions.

use std::collections::BTreeMap;

use sluice_test_support::TestDatabase;

use super::*;

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A PostgreSQL database with table `orders` of `rows` rows (ids 1..=rows; some NULL amounts).
async fn pg_source(rows: i64) -> TestDatabase {
    let db = TestDatabase::create("sluice_arc_test_").await;
    pg(&db.url)
        .await
        .batch_execute(&format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL,
                 amount double precision, placed date NOT NULL);
             INSERT INTO orders SELECT i, 'c' || (i % 7), CASE WHEN i % 10 = 0 THEN NULL ELSE i * 1.5 END,
                 DATE '2024-01-01' + (i % 100)::int FROM generate_series(1, {rows}) AS i;"
        ))
        .await
        .unwrap();
    db
}

fn pg_loc(db: &TestDatabase) -> Value {
    json!({"Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 5432,
        "Database_Name": db.name, "Database_User": "postgres"})
}

/// Hub `hub1`, locations `src` and `tgt` with these props, channel `ch1` of table `orders`.
async fn define_with(api: &Api, src: Value, tgt: Value) {
    api.call(
        "POST",
        "/api/latest/hubs",
        Some(json!({"hub": "hub1", "props": {}})),
    )
    .await
    .expect(204);
    for (loc, props) in [("src", src), ("tgt", tgt)] {
        api.call(
            "POST",
            "/api/latest/hubs/hub1/definition/locs",
            Some(json!({"loc": loc, "props": props})),
        )
        .await
        .expect(201);
    }
    api.call(
        "POST",
        "/api/latest/hubs/hub1/definition/channels",
        Some(json!({
            "channel": "ch1",
            "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
            "tables": {"orders": {}},
            "actions": [
                {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
            ]
        })),
    )
    .await
    .expect(201);
}

/// Posts a refresh or compare of `orders` with `extra` fields; answers its event once ended.
async fn run(api: &Api, op: &str, extra: Value) -> Value {
    let mut body = json!({"source_loc": "src", "target_loc": "tgt"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let posted = api
        .call(
            "POST",
            &format!("/api/latest/hubs/hub1/channels/ch1/{op}"),
            Some(body),
        )
        .await
        .expect(201)
        .json();
    api.wait_event(posted["posted_ev_id"].as_str().unwrap())
        .await
}

fn results(event: &Value) -> BTreeMap<String, String> {
    event["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["table"] == "orders")
        .map(|r| {
            (
                r["result"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Rows of `orders` in a PostgreSQL database, in id order, as text.
async fn pg_rows(url: &str) -> Vec<String> {
    pg(url)
        .await
        .query(
            "SELECT id::text || '|' || customer || '|' || coalesce(amount::text, 'null') FROM orders ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Each method, with the slices it makes of `pg_source` and of `sqlite_pair` tables.
fn methods(with_dates: bool) -> Vec<(Value, usize)> {
    let mut m = vec![
        (json!({"type": "count", "slices": 4}), 4),
        (json!({"type": "count", "col": "customer", "slices": 3}), 3),
        (
            json!({"type": "boundary", "col": "id", "int_boundaries": ["250", 500, "750"]}),
            4,
        ),
        (
            json!({"type": "boundary", "col": "customer", "str_boundaries": ["c3", "c5"]}),
            3,
        ),
        (json!({"type": "modulo", "col": "id", "slices": 3}), 3),
        (
            json!({"type": "series", "col": "customer", "series_values": ["c1", "c2"]}),
            3,
        ),
    ];
    if with_dates {
        m.push((
            json!({"type": "boundary", "col": "placed", "date_boundaries": ["2024-02-01T00:00:00Z"]}),
            2,
        ));
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_refresh_pg_to_pg_equals_the_source_with_each_method() {
    let api = Api::start(false).await;
    let src = pg_source(1000).await;
    let tgt = TestDatabase::create("sluice_arc_test_").await;
    define_with(&api, pg_loc(&src), pg_loc(&tgt)).await;
    let expected = pg_rows(&src.url).await;
    for (slicing, slices) in methods(true) {
        pg(&tgt.url)
            .await
            .batch_execute("DROP TABLE IF EXISTS orders")
            .await
            .unwrap();
        let event = run(
            &api,
            "refresh",
            json!({"slicing": {"orders": slicing}, "parallel_sessions": 2}),
        )
        .await;
        assert_eq!(event["state"], "DONE", "{slicing}: {event}");
        let r = results(&event);
        assert_eq!(r["Subtasks_Total"], slices.to_string(), "{slicing}");
        assert_eq!(r["Subtasks_Done"], slices.to_string(), "{slicing}");
        assert_eq!(r["Source_Rows_Used"], "1000", "{slicing}");
        assert_eq!(pg_rows(&tgt.url).await, expected, "{slicing}");
        // Compared by the same slices: identical.
        let event = run(
            &api,
            "compare",
            json!({"slicing": {"orders": slicing}, "granularity": "rowwise"}),
        )
        .await;
        assert_eq!(results(&event)["Table_State"], "DONE/IDENTICAL", "{event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_refresh_sqlite_to_pg_equals_the_source_with_each_method() {
    let api = Api::start(false).await;
    let (src, _) = sqlite_pair(api.hub.dir(), 1000);
    let tgt = TestDatabase::create("sluice_arc_test_").await;
    define_with(
        &api,
        json!({"Class": "sqlite", "Database_Name": src}),
        pg_loc(&tgt),
    )
    .await;
    let conn = rusqlite::Connection::open(&src).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, customer, amount FROM orders ORDER BY id")
        .unwrap();
    let expected: Vec<(i64, String, f64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (slicing, slices) in methods(false) {
        pg(&tgt.url)
            .await
            .batch_execute("DROP TABLE IF EXISTS orders")
            .await
            .unwrap();
        let event = run(&api, "refresh", json!({"slicing": {"orders": slicing}})).await;
        assert_eq!(event["state"], "DONE", "{slicing}: {event}");
        assert_eq!(results(&event)["Subtasks_Total"], slices.to_string());
        let got: Vec<(i64, String, f64)> = pg(&tgt.url)
            .await
            .query("SELECT id, customer, amount FROM orders ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(got, expected, "{slicing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_compare_reports_differences_as_an_unsliced_one() {
    let api = Api::start(false).await;
    let src = pg_source(500).await;
    let tgt = TestDatabase::create("sluice_arc_test_").await;
    define_with(&api, pg_loc(&src), pg_loc(&tgt)).await;
    assert_eq!(run(&api, "refresh", json!({})).await["state"], "DONE");
    pg(&tgt.url)
        .await
        .batch_execute(
            "DELETE FROM orders WHERE id IN (3, 250, 499);
             UPDATE orders SET customer = 'x' WHERE id IN (10, 11);
             INSERT INTO orders VALUES (1000, 'c1', NULL, DATE '2024-01-01');",
        )
        .await
        .unwrap();
    let counts = |e: &Value| {
        let r = results(e);
        (
            r["Table_State"].clone(),
            r["Rows_Only_On_Source"].clone(),
            r["Rows_Only_On_Target"].clone(),
            r["Rows_Which_Differ"].clone(),
        )
    };
    let whole = run(&api, "compare", json!({"granularity": "rowwise"})).await;
    assert_eq!(
        counts(&whole),
        ("DONE/DIFFERENT".into(), "3".into(), "1".into(), "2".into())
    );
    for slicing in [
        json!({"type": "modulo", "col": "id", "slices": 4}),
        json!({"type": "boundary", "col": "id", "int_boundaries": ["100", "400"]}),
    ] {
        let sliced = run(
            &api,
            "compare",
            json!({"granularity": "rowwise", "slicing": {"orders": slicing}}),
        )
        .await;
        assert_eq!(counts(&sliced), counts(&whole), "{slicing}");
        let bulk = run(&api, "compare", json!({"slicing": {"orders": slicing}})).await;
        assert_eq!(results(&bulk)["Table_State"], "DONE/DIFFERENT", "{bulk}");
    }
}

/// All slices of a PostgreSQL source read one exported snapshot: while a writer inserts, the
/// copy holds every row from before the refresh began and none from after its snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_pg_refresh_is_one_consistent_snapshot_while_a_writer_inserts() {
    let api = Api::start(false).await;
    let initial = 40_000i64;
    let src = pg_source(initial).await;
    let tgt = TestDatabase::create("sluice_arc_test_").await;
    define_with(&api, pg_loc(&src), pg_loc(&tgt)).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (src.url.clone(), stop.clone());
        tokio::spawn(async move {
            let client = pg(&url).await;
            let mut id = initial;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                id += 1;
                client
                    .execute(
                        "INSERT INTO orders VALUES ($1, 'w', NULL, DATE '2024-01-01')",
                        &[&id],
                    )
                    .await
                    .unwrap();
            }
            id
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Eight slices read one after another: without one shared snapshot, later slices would see
    // rows the earlier ones did not.
    let event = run(
        &api,
        "refresh",
        json!({"slicing": {"orders": {"type": "modulo", "col": "id", "slices": 8}},
               "parallel_sessions": 1}),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.await.unwrap();
    assert_eq!(event["state"], "DONE", "{event}");
    let ids: Vec<i64> = pg(&tgt.url)
        .await
        .query("SELECT id FROM orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let max = *ids.last().unwrap();
    assert!(max > initial, "the copy began after the writer did");
    assert!(
        last > max,
        "the writer went on after the snapshot ({last} vs {max})"
    );
    // No row missing below the newest copied one: one snapshot.
    assert_eq!(ids.len() as i64, max, "gaps in the copy: not one snapshot");
    assert_eq!(results(&event)["Subtasks_Done"], "8");
}

/// A sliced refresh that fails in one slice leaves the target table as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sliced_refresh_leaves_the_target_intact() {
    let api = Api::start(false).await;
    let src = pg_source(400).await;
    pg(&src.url)
        .await
        .batch_execute("UPDATE orders SET customer = 'much too long' WHERE id = 399")
        .await
        .unwrap();
    let tgt = TestDatabase::create("sluice_arc_test_").await;
    pg(&tgt.url)
        .await
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(2) NOT NULL,
                 amount double precision, placed date NOT NULL);
             INSERT INTO orders VALUES (7, 'ol', 1, DATE '2020-01-01');",
        )
        .await
        .unwrap();
    define_with(&api, pg_loc(&src), pg_loc(&tgt)).await;
    let event = run(
        &api,
        "refresh",
        json!({"slicing": {"orders": {"type": "modulo", "col": "id", "slices": 4}}}),
    )
    .await;
    assert_eq!(event["state"], "FAILED", "{event}");
    let r = results(&event);
    assert_eq!(r["Subtasks_Total"], "4");
    assert!(r.contains_key("Subtasks_Failed"), "{r:?}");
    assert_eq!(pg_rows(&tgt.url).await, vec!["7|ol|1"]);
}

#[tokio::test]
async fn bad_slicing_answers_400_and_posts_nothing() {
    let api = Api::start(false).await;
    api.define(50).await;
    let c = "/api/latest/hubs/hub1/channels/ch1";
    for (slicing, word) in [
        (json!({"orders": {"type": "count", "slices": 0}}), "slices"),
        (
            json!({"orders": {"type": "modulo", "col": "id", "slices": -1}}),
            "slices",
        ),
        (
            json!({"orders": {"type": "boundary", "col": "id", "int_boundaries": ["9", "3"]}}),
            "ascending",
        ),
        (
            json!({"orders": {"type": "boundary", "col": "id", "int_boundaries": []}}),
            "boundaries",
        ),
        (
            json!({"orders": {"type": "boundary", "col": "id", "date_boundaries": ["soon"]}}),
            "date-time",
        ),
        (
            json!({"orders": {"type": "modulo", "col": "customer", "slices": 2}}),
            "integer",
        ),
        (
            json!({"orders": {"type": "modulo", "col": "nope", "slices": 2}}),
            "no column",
        ),
        (json!({"orders": {"type": "hash", "slices": 2}}), "type"),
        (json!({"orders": {"slices": 2}}), "type"),
        (json!({"other": {"type": "count", "slices": 2}}), "other"),
        (
            json!({"orders": {"type": "count", "slices": 2, "selection": [1]}}),
            "selection",
        ),
        (
            json!({"orders": {"type": "series", "col": "id", "series_values": ["1; DROP TABLE orders"]}}),
            "not an integer",
        ),
        (
            json!({"orders": {"type": "count", "slices": 2, "bogus": 1}}),
            "bogus",
        ),
    ] {
        for op in ["refresh", "compare"] {
            let a = api
                .call(
                    "POST",
                    &format!("{c}/{op}"),
                    Some(json!({"source_loc": "src", "target_loc": "tgt", "slicing": slicing})),
                )
                .await
                .expect(400);
            assert!(a.text.contains(word), "{slicing}: {}", a.text);
        }
    }
    let a = api
        .call(
            "POST",
            &format!("{c}/refresh"),
            Some(
                json!({"source_loc": "src", "target_loc": "tgt", "granularity": "rowwise",
                "slicing": {"orders": {"type": "count", "slices": 2}}}),
            ),
        )
        .await
        .expect(400);
    assert!(a.text.contains("bulk"), "{}", a.text);
    let events = api
        .call("GET", "/api/latest/hubs/hub1/events?type=Refresh", None)
        .await
        .expect(200)
        .json();
    assert_eq!(events, json!({}));
    let events = api
        .call("GET", "/api/latest/hubs/hub1/events?type=Compare", None)
        .await
        .expect(200)
        .json();
    assert_eq!(events, json!({}));
}

#[tokio::test]
async fn slicing_suggestions_come_from_the_database_and_the_last_refresh() {
    let api = Api::start(false).await;
    api.define(1000).await;
    let c = "/api/latest/hubs/hub1/channels/ch1/locs/src";
    let a = api
        .call(
            "POST",
            &format!("{c}/tables/orders/slicing_boundaries"),
            Some(json!({"col": "id", "slices": 4})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"int_boundaries": ["250", "500", "750"]}));
    let a = api
        .call(
            "POST",
            &format!("{c}/tables/orders/slicing_boundaries"),
            Some(json!({"col": "customer", "slices": 2})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["str_boundaries"].as_array().unwrap().len(), 1, "{a}");
    for (body, status) in [
        (json!({"col": "nope", "slices": 4}), 400),
        (json!({"col": "id", "slices": 0}), 400),
        (json!({"col": "id"}), 400),
    ] {
        api.call(
            "POST",
            &format!("{c}/tables/orders/slicing_boundaries"),
            Some(body),
        )
        .await
        .expect(status);
    }
    api.call(
        "POST",
        "/api/latest/hubs/hub1/channels/ch1/locs/src/tables/other/slicing_boundaries",
        Some(json!({"col": "id", "slices": 2})),
    )
    .await
    .expect(404);

    let a = api
        .call(
            "POST",
            &format!("{c}/slicing_suggest"),
            Some(json!({"rows_per_slice": "300"})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["orders"]["based_on"], "suggest_from_db_stats", "{a}");
    assert_eq!(a["orders"]["row_estimate"], "1000");
    assert_eq!(a["orders"]["slicing"]["type"], "boundary");
    assert_eq!(a["orders"]["slicing"]["col"], "id");
    assert_eq!(
        a["orders"]["slicing"]["int_boundaries"],
        json!(["250", "500", "750"])
    );
    let a = api
        .call(
            "POST",
            &format!("{c}/slicing_suggest"),
            Some(json!({"rows_per_slice": 5000, "tables": ["orders"]})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["orders"]["no_slicing"], true, "{a}");
    let a = api
        .call(
            "POST",
            &format!("{c}/slicing_suggest"),
            Some(json!({"repeat_last_refresh_slicing": true})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"orders": {"based_on": "no_data"}}));
    let slicing = json!({"type": "modulo", "col": "id", "slices": 3});
    let posted = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(json!({"source_loc": "src", "target_loc": "tgt", "slicing": {"orders": slicing}})),
        )
        .await
        .expect(201)
        .json();
    let ev = posted["posted_ev_id"].as_str().unwrap();
    assert_eq!(api.wait_event(ev).await["state"], "DONE");
    let a = api
        .call(
            "POST",
            &format!("{c}/slicing_suggest"),
            Some(json!({"repeat_last_refresh_slicing": true, "suggest_from_last_refresh_rows": true})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a,
        json!({"orders": {"based_on": "repeat_last_refresh_slicing", "ev_id": ev, "slicing": slicing}})
    );
    let a = api
        .call(
            "POST",
            &format!("{c}/slicing_suggest"),
            Some(json!({"suggest_from_last_refresh_rows": true, "rows_per_slice": "2000"})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a,
        json!({"orders": {"based_on": "suggest_from_last_refresh_rows", "ev_id": ev,
            "row_estimate": "1000", "no_slicing": true}})
    );
    for body in [
        json!({"rows_per_slice": "many"}),
        json!({"max_slices_per_table": 0}),
        json!({"tables": ["Bad!"]}),
    ] {
        let status = if body.get("tables").is_some() {
            404
        } else {
            400
        };
        api.call("POST", &format!("{c}/slicing_suggest"), Some(body))
            .await
            .expect(status);
    }
    api.call(
        "POST",
        "/api/latest/hubs/hub1/channels/ch1/locs/nope/slicing_suggest",
        Some(json!({})),
    )
    .await
    .expect(404);
}
