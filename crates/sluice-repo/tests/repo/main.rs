//! The repository contract, one module per store area, run against both backends: every test in
//! an `on_both_backends!` list runs once on a fresh SQLite file and once on a fresh PostgreSQL
//! database (`sluice_repo_test_<random>`, dropped afterwards). PostgreSQL is `$SLUICE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`);
//! when it is unreachable the PostgreSQL tests fail, they are never skipped.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, SubsecRound, TimeDelta, Utc};
use sluice_model::definition::{
    Action, ActionType, Channel, ChannelColumn, ChannelTable, Definitions, Hub, HubState, LocScope,
    Location, LocationClass, PropValue, TableScope,
};
use sluice_model::{
    AccessLevel, ChannelName, DataType, EventId, EventState, EventType, HubName, JobName, JobState,
    LocGroupName, LocationName, ResultName, TableName,
};
use sluice_repo::{
    ApiKeyRecord, ConnectorRecord, DefinitionStore, EventFilter, EventResult, NewEvent, Owner,
    PostgresRepository, PropBag, PropBagKind, PropWrite, RepoError, RepoErrorKind, Repository,
    SqliteRepository, TokenRecord, UserRecord, open_repository,
};
use sluice_test_support::{StoreFixture, TestDatabase, TestStore as Store};

// ---------------------------------------------------------------------------------------------
// Fixtures: one repository per test, on either backend.

/// The name prefix of this crate's fresh PostgreSQL databases.
const PREFIX: &str = "sluice_repo_test_";

/// A fresh PostgreSQL database (see `sluice_test_support`), named for this crate's tests.
async fn fresh_database() -> TestDatabase {
    TestDatabase::create(PREFIX).await
}

/// A repository on a fresh store. Derefs to the repository.
type Fixture = StoreFixture<dyn Repository>;

/// The fixture's constructors, and what the tests do beneath the repository.
#[allow(async_fn_in_trait)]
trait RepoFixture: Sized {
    async fn sqlite() -> Self;
    async fn postgres() -> Self;
    async fn reopen(&self) -> Result<Arc<dyn Repository>, RepoError>;
    async fn schema_version(&self) -> u32;
    async fn insert_event_at(&self, id: EventId);
    async fn record_future_migration(&self);
}

impl RepoFixture for Fixture {
    async fn sqlite() -> Self {
        let place = Store::sqlite();
        let Store::Sqlite { path, .. } = &place else {
            unreachable!("a SQLite store")
        };
        let handle = Arc::new(SqliteRepository::open(path).unwrap());
        StoreFixture { handle, place }
    }

    async fn postgres() -> Self {
        let place = Store::postgres(PREFIX).await;
        let Store::Postgres(db) = &place else {
            unreachable!("a PostgreSQL store")
        };
        let handle = Arc::new(PostgresRepository::connect(&db.url).await.unwrap());
        StoreFixture { handle, place }
    }

    /// Another repository on the same store, as a second process would open it.
    async fn reopen(&self) -> Result<Arc<dyn Repository>, RepoError> {
        Ok(match &self.place {
            Store::Sqlite { path, .. } => Arc::new(SqliteRepository::open(path)?),
            Store::Postgres(db) => Arc::new(PostgresRepository::connect(&db.url).await?),
        })
    }

    async fn schema_version(&self) -> u32 {
        match &self.place {
            Store::Sqlite { path, .. } => SqliteRepository::open(path)
                .unwrap()
                .schema_version()
                .unwrap(),
            Store::Postgres(db) => PostgresRepository::connect(&db.url)
                .await
                .unwrap()
                .schema_version()
                .await
                .unwrap(),
        }
    }

    /// Stores an event of hub1 with id `id` directly, as a process whose clock runs ahead would.
    async fn insert_event_at(&self, id: EventId) {
        let sql = format!(
            "INSERT INTO event (ev_id, hub_name, ev_type, user_name, description, ev_state, start_tstamp, last_updated) \
             VALUES ('{id}', 'hub1', 'Refresh', 'skewed', 'from the future', 'DONE', '{id}', '{id}')"
        );
        match &self.place {
            Store::Sqlite { path, .. } => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute(&sql, [])
                    .unwrap();
            }
            Store::Postgres(db) => {
                let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client.batch_execute(&sql).await.unwrap();
            }
        }
    }

    /// Records a migration this build does not know, as a newer sluice would.
    async fn record_future_migration(&self) {
        match &self.place {
            Store::Sqlite { path, .. } => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute(
                        "INSERT INTO schema_migration VALUES (99, 'future', '2030-01-01T00:00:00Z')",
                        [],
                    )
                    .unwrap();
            }
            Store::Postgres(db) => {
                let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client
                    .batch_execute(
                        "INSERT INTO schema_migration VALUES (99, 'future', '2030-01-01T00:00:00Z')",
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

/// For each named `async fn NAME(fx: Fixture)`, a module `NAME` with the tests `sqlite` and
/// `postgres`.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$test(<super::Fixture as super::RepoFixture>::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$test(<super::Fixture as super::RepoFixture>::postgres().await).await
            }
        }
    )+};
}

// ---------------------------------------------------------------------------------------------
// Definitions and events used by the tests.

fn hub1() -> HubName {
    HubName::new("hub1").unwrap()
}

fn loc(name: &str) -> Location {
    Location {
        name: LocationName::new(name).unwrap(),
        class: LocationClass::Sqlite,
        description: format!("{name} db"),
        props: BTreeMap::from([
            (
                "Database_Name".to_owned(),
                PropValue::Text(format!("/data/{name}.db")),
            ),
            (
                "Database_Password".to_owned(),
                PropValue::Text("${PW}".into()),
            ),
            ("Database_Busy_Timeout".to_owned(), PropValue::Int(100)),
        ]),
    }
}

fn channel(name: &str, note: &str, source: &str, target: &str) -> Channel {
    let table = |n: &str, cols: Option<Vec<ChannelColumn>>| {
        (
            TableName::new(n).unwrap(),
            ChannelTable {
                name: TableName::new(n).unwrap(),
                base_name: None,
                table_group: None,
                columns: cols,
            },
        )
    };
    Channel {
        name: ChannelName::new(name).unwrap(),
        description: note.to_owned(),
        loc_groups: BTreeMap::from([
            (
                LocGroupName::new("SOURCE").unwrap(),
                vec![LocationName::new(source).unwrap()],
            ),
            (
                LocGroupName::new("TARGET").unwrap(),
                vec![LocationName::new(target).unwrap()],
            ),
        ]),
        tables: BTreeMap::from([
            table("customers", None),
            table(
                "orders",
                Some(vec![
                    ChannelColumn {
                        name: "id".parse().unwrap(),
                        data_type: DataType::Int64,
                        nullable: false,
                        key: 1,
                    },
                    ChannelColumn {
                        name: "total".parse().unwrap(),
                        data_type: DataType::decimal(12, 2).unwrap(),
                        nullable: true,
                        key: 0,
                    },
                ]),
            ),
        ]),
        actions: vec![
            Action::new(
                ActionType::Capture,
                LocScope::Group(LocGroupName::new("SOURCE").unwrap()),
                TableScope::All,
                BTreeMap::new(),
            )
            .unwrap(),
            Action::new(
                ActionType::Restrict,
                LocScope::Location(LocationName::new(source).unwrap()),
                TableScope::Table(TableName::new("orders").unwrap()),
                BTreeMap::from([(
                    "RefreshCondition".to_owned(),
                    PropValue::Text("total > 0".into()),
                )]),
            )
            .unwrap(),
        ],
    }
}

fn definitions(note: &str) -> Definitions {
    let channel = channel("sales", note, "src", "tgt");
    Definitions {
        hub: Hub {
            name: hub1(),
            description: "test hub".into(),
        },
        locations: BTreeMap::from([
            (LocationName::new("src").unwrap(), loc("src")),
            (LocationName::new("tgt").unwrap(), loc("tgt")),
        ]),
        channels: BTreeMap::from([(channel.name.clone(), channel)]),
    }
}

fn refresh_event(job: &JobName) -> NewEvent {
    NewEvent {
        hub: hub1(),
        event_type: EventType::Refresh,
        user: "alice".into(),
        description: "refresh".into(),
        channel: Some(ChannelName::new("sales").unwrap()),
        loc: Some(LocationName::new("src").unwrap()),
        loc2: Some(LocationName::new("tgt").unwrap()),
        job: Some(job.clone()),
        state: EventState::Active,
        body: serde_json::json!({"tables": ["orders"], "zeta": 1, "alpha": 2}),
    }
}

fn refresh_job() -> JobName {
    "sales-refr-src-tgt".parse().unwrap()
}

async fn with_definitions(fx: &Fixture) {
    fx.apply_definitions(&definitions("x"), "alice", "f")
        .await
        .unwrap();
}

async fn event(fx: &Fixture, id: EventId) -> sluice_repo::EventRecord {
    let mut found = fx
        .events(&EventFilter {
            ids: vec![id],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "event {id}");
    found.remove(0)
}

const MINUTE: Duration = Duration::from_secs(60);

mod definitions;
mod identity;
mod jobs;
mod opening;
mod props;
mod runs;
mod settings;
