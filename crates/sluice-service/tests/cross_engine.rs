//! End to end across engines: every source → target pair of {postgresql, mariadb, sqlite} refreshed
//! (truncate_load, then staging_swap) and compared (bulk and row-wise) through the service, against
//! the real PostgreSQL and MariaDB servers; and the incremental and rowwise modes between engines.
//!
//! Each test gets its own PostgreSQL database, MariaDB databases and SQLite files. The servers are
//! the ones `scripts/services` starts (127.0.0.1:5432 user postgres, 127.0.0.1:3306 user root); an
//! unreachable server fails the test.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use sluice_connector::kit::{col, table, write_rows};
use sluice_connector::{Connector, WriteRequest, WriteStrategy};
use sluice_model::{
    BatchLimits, ChannelName, ColumnDef, ColumnName, DataType, Decimal, EventState, HubName,
    LocationName, RowBatch, Value,
};
use sluice_service::{
    CompareCommand, CompareSummary, Granularity, HubService, ModeOverride, RefreshCommand,
    RefreshModeKind, RefreshSummary,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Engine {
    Pg,
    Maria,
    Lite,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed (is the server up? run scripts/services): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn psql(db: &str, sql: &str) {
    run(
        Command::new("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ]),
        &format!("psql {sql}"),
    );
}

fn mariadb(sql: &str) {
    run(
        Command::new("mariadb").args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql]),
        &format!("mariadb {sql}"),
    );
}

/// Databases of one test: a PostgreSQL database with schemas `src` and `dst`, MariaDB databases
/// `<name>_src` and `<name>_dst`, SQLite files `src.db` and `dst.db`.
struct World {
    dir: tempfile::TempDir,
    name: String,
}

impl World {
    fn new() -> World {
        let name = format!(
            "sx_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        psql(&name, "CREATE SCHEMA src; CREATE SCHEMA dst;");
        mariadb(&format!(
            "DROP DATABASE IF EXISTS {name}_src; DROP DATABASE IF EXISTS {name}_dst; \
             CREATE DATABASE {name}_src; CREATE DATABASE {name}_dst;"
        ));
        World {
            dir: tempfile::tempdir().unwrap(),
            name,
        }
    }

    fn props(&self, engine: Engine, side: &str) -> String {
        match engine {
            Engine::Pg => format!(
                "{{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, Database_Name: {}, \
                 Database_User: postgres, Database_Schema: {side}, Database_Sslmode: disable}}}}",
                self.name
            ),
            Engine::Maria => format!(
                "{{class: mariadb, props: {{Database_Host: 127.0.0.1, Database_Port: 3306, Database_Name: {}_{side}, \
                 Database_User: root}}}}",
                self.name
            ),
            Engine::Lite => format!(
                "{{class: sqlite, props: {{Database_Name: \"{}\"}}}}",
                self.dir.path().join(format!("{side}.db")).display()
            ),
        }
    }

    /// A hub `x` with locations `src` and `dst` and a channel `c` over table `items`.
    async fn service(&self, source: Engine, target: Engine) -> HubService {
        let yaml = format!(
            "hub: x\nlocations:\n  src: {}\n  dst: {}\nchannels:\n  c:\n    loc_groups: {{SOURCE: [src], TARGET: [dst]}}\n    \
             tables: {{items: {{}}}}\n    actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]\n",
            self.props(source, "src"),
            self.props(target, "dst")
        );
        let path = self.dir.path().join("defs.yaml");
        std::fs::write(&path, yaml).unwrap();
        let svc = HubService::open_local(&self.dir.path().join(".sluice"), "tester").unwrap();
        svc.apply_file(&path, None).await.unwrap();
        svc
    }

    fn connector(&self, engine: Engine, side: &str) -> Box<dyn Connector> {
        let props = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        match engine {
            Engine::Pg => Box::new(sluice_postgres::PostgresConnector::new(
                sluice_postgres::PostgresConfig::from_props(&props(&[
                    ("Database_Host", "127.0.0.1".into()),
                    ("Database_Name", self.name.clone()),
                    ("Database_User", "postgres".into()),
                    ("Database_Schema", side.into()),
                    ("Database_Sslmode", "disable".into()),
                ]))
                .unwrap(),
            )),
            Engine::Maria => Box::new(sluice_mariadb::MariadbConnector::new(
                sluice_mariadb::MariadbConfig::from_props(&props(&[
                    ("Database_Host", "127.0.0.1".into()),
                    ("Database_Name", format!("{}_{side}", self.name)),
                    ("Database_User", "root".into()),
                ]))
                .unwrap(),
            )),
            Engine::Lite => Box::new(sluice_sqlite::SqliteConnector::new(
                sluice_sqlite::SqliteConfig::new(self.dir.path().join(format!("{side}.db"))),
            )),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .output();
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {name}_src; DROP DATABASE IF EXISTS {name}_dst;"
            ))
            .output();
    }
}

fn columns() -> Vec<ColumnDef> {
    vec![
        col("id", DataType::Int64, false),
        col("n", DataType::Int32, false),
        col("small", DataType::Int16, true),
        col("name", DataType::Varchar(64), false),
        col(
            "amount",
            DataType::Decimal {
                precision: 12,
                scale: 2,
            },
            true,
        ),
        col("big", DataType::Numeric, true),
        col("ratio", DataType::Float64, true),
        col("created", DataType::TimestampTz, true),
        col("day", DataType::Date, true),
        col("at", DataType::Time, true),
        col("ts", DataType::Timestamp, true),
        col("flag", DataType::Bool, true),
        col("doc", DataType::Json, true),
        col("note", DataType::Text, true),
        col("raw", DataType::Bytes, true),
        col("uid", DataType::Uuid, true),
    ]
}

fn row(i: i64, tag: &str) -> Vec<Value> {
    let x = (i * 7919) % 100_000;
    let micros = |n: i64| chrono::Duration::microseconds(n);
    vec![
        Value::Int64(i),
        Value::Int32((x - 50_000) as i32),
        if i % 11 == 0 {
            Value::Null
        } else {
            Value::Int16((i % 3000 - 1500) as i16)
        },
        Value::Text(format!("name-{i}-ü-{tag}")),
        Value::Decimal(Decimal::parse(&format!("{}.{:02}", x - 50_000, i % 100)).unwrap()),
        Value::Decimal(
            Decimal::parse(&format!("-123456789012345678901234567890.{:010}", i * 37)).unwrap(),
        ),
        Value::Float64(i as f64 / 7.0),
        Value::TimestampTz(
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + micros(i * 1_000_003),
        ),
        Value::Date(NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Duration::days(i)),
        Value::Time(
            NaiveTime::from_num_seconds_from_midnight_opt(
                ((i * 37) % 86_400) as u32,
                (i % 1000) as u32 * 1000,
            )
            .unwrap(),
        ),
        Value::Timestamp(
            NaiveDate::from_ymd_opt(2023, 6, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                + micros(i * 61_000_001),
        ),
        if i % 13 == 0 {
            Value::Null
        } else {
            Value::Bool(i % 3 == 0)
        },
        Value::Json(format!(
            r#"{{"i": {i}, "tags": ["x", "ü"], "nested": {{"b": 1, "a": null}}}}"#
        )),
        match i % 10 {
            0 => Value::Null,
            1 => Value::Text(String::new()),
            _ => Value::Text(format!("note ✓ {i}\ttab \\ back {tag}")),
        },
        if i % 7 == 0 {
            Value::Null
        } else {
            Value::Bytes(vec![0, i as u8, b'\t', b'\\', b'\n', 255])
        },
        Value::Uuid(uuid::Uuid::from_u128(i as u128 * 0x9e37_79b9_7f4a_7c15)),
    ]
}

const ROWS: i64 = 3000;

async fn seed(world: &World, engine: Engine) {
    let c = world.connector(engine, "src");
    let rows: Vec<Vec<Value>> = (1..=ROWS).map(|i| row(i, "v1")).collect();
    write_rows(
        c.as_ref(),
        WriteRequest {
            table: table("items"),
            columns: columns(),
            key: vec![0],
            strategy: WriteStrategy::TruncateLoad,
            create_if_missing: true,
            filter: None,
        },
        &rows,
        BatchLimits::rows(1000),
    )
    .await;
}

fn hub() -> HubName {
    HubName::new("x").unwrap()
}

async fn refresh(
    svc: &HubService,
    strategy: Option<WriteStrategy>,
    mode: ModeOverride,
) -> RefreshSummary {
    let running = svc
        .refresh(RefreshCommand {
            slicing: Default::default(),
            hub: hub(),
            channel: ChannelName::new("c").unwrap(),
            source: None,
            target: None,
            tables: vec![],
            strategy,
            batch_rows: Some(700),
            count_first: false,
            mode,
            parallel: None,
        })
        .await
        .unwrap();
    let summary = running.done.await.unwrap().unwrap();
    assert_eq!(summary.state, EventState::Done, "refresh: {summary:#?}");
    summary
}

async fn compare(svc: &HubService, granularity: Granularity) -> CompareSummary {
    let running = svc
        .compare(CompareCommand {
            slicing: Default::default(),
            hub: hub(),
            channel: ChannelName::new("c").unwrap(),
            source: None,
            target: None,
            tables: vec![],
            granularity,
            max_listed: 10,
            pushdown: true,
            online: None,
        })
        .await
        .unwrap();
    running.done.await.unwrap().unwrap()
}

async fn assert_identical(svc: &HubService, what: &str) {
    for granularity in [Granularity::Bulk, Granularity::Rowwise] {
        let summary = compare(svc, granularity).await;
        assert!(
            summary.identical,
            "{what}: {granularity:?} compare: {:#?}",
            summary.tables
        );
    }
}

async fn pair(source: Engine, target: Engine) {
    let world = World::new();
    seed(&world, source).await;
    let svc = world.service(source, target).await;
    let first = refresh(
        &svc,
        Some(WriteStrategy::TruncateLoad),
        ModeOverride::default(),
    )
    .await;
    assert!(first.tables[0].created, "the target table is created");
    assert_eq!(first.tables[0].rows, ROWS as u64);
    assert_identical(&svc, &format!("{source:?}→{target:?} after truncate_load")).await;
    refresh(
        &svc,
        Some(WriteStrategy::StagingSwap),
        ModeOverride::default(),
    )
    .await;
    assert_identical(&svc, &format!("{source:?}→{target:?} after staging_swap")).await;
    let dir: &Path = world.dir.path();
    assert!(dir.exists());
}

macro_rules! pairs {
    ($($name:ident: $s:ident => $t:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                pair(Engine::$s, Engine::$t).await;
            }
        )+
    };
}

pairs!(
    postgresql_to_postgresql: Pg => Pg,
    postgresql_to_mariadb: Pg => Maria,
    postgresql_to_sqlite: Pg => Lite,
    mariadb_to_postgresql: Maria => Pg,
    mariadb_to_mariadb: Maria => Maria,
    mariadb_to_sqlite: Maria => Lite,
    sqlite_to_postgresql: Lite => Pg,
    sqlite_to_mariadb: Lite => Maria,
    sqlite_to_sqlite: Lite => Lite,
);

/// Inserts 30 rows, changes 5 and deletes 4 at the source, through the source's own connector.
async fn change_source(world: &World, engine: Engine) {
    let c = world.connector(engine, "src");
    let mut w = c
        .batch_writer()
        .unwrap()
        .open(WriteRequest {
            table: table("items"),
            columns: columns(),
            key: vec![0],
            strategy: WriteStrategy::Upsert,
            create_if_missing: false,
            filter: None,
        })
        .await
        .unwrap();
    let mut puts = RowBatch::new(columns().len(), BatchLimits::DEFAULT);
    for i in (ROWS + 1..=ROWS + 30).chain([5, 50, 500, 1500, 2500]) {
        puts.push_row(row(i, "v2")).unwrap();
    }
    w.write_batch(puts).await.unwrap();
    let mut deletes = RowBatch::new(1, BatchLimits::DEFAULT);
    for i in [7, 70, 700, 2999] {
        deletes.push_row([Value::Int64(i)]).unwrap();
    }
    w.delete_batch(deletes).await.unwrap();
    w.commit().await.unwrap();
}

async fn modes(source: Engine, target: Engine) {
    let world = World::new();
    seed(&world, source).await;
    let svc = world.service(source, target).await;
    refresh(&svc, None, ModeOverride::default()).await;
    change_source(&world, source).await;

    // Incremental by id: only the 30 new rows travel; changes and deletes below the bound stay.
    let incremental = ModeOverride {
        mode: Some(RefreshModeKind::Incremental),
        incremental_column: Some(ColumnName::new("id").unwrap()),
        ..ModeOverride::default()
    };
    let summary = refresh(&svc, None, incremental).await;
    assert_eq!(summary.tables[0].rows, 30, "{summary:#?}");
    let diff = compare(&svc, Granularity::Rowwise).await;
    let d = diff.tables[0].diff.clone().unwrap();
    assert_eq!(
        (d.only_on_source, d.only_on_target, d.differ),
        (0, 4, 5),
        "{source:?}→{target:?} after incremental: {:#?}",
        diff.tables
    );

    // Rowwise without deletes leaves the 4 deleted rows; then with deletes the target equals the source.
    let no_deletes = ModeOverride {
        mode: Some(RefreshModeKind::Rowwise),
        apply: Some(sluice_service::RowwiseApply::NoDeletes),
        ..ModeOverride::default()
    };
    refresh(&svc, None, no_deletes).await;
    let d = compare(&svc, Granularity::Rowwise).await.tables[0]
        .diff
        .clone()
        .unwrap();
    assert_eq!((d.only_on_source, d.only_on_target, d.differ), (0, 4, 0));
    let rowwise = ModeOverride {
        mode: Some(RefreshModeKind::Rowwise),
        ..ModeOverride::default()
    };
    refresh(&svc, None, rowwise).await;
    assert_identical(&svc, &format!("{source:?}→{target:?} after rowwise")).await;

    // smart_sync on a non-empty target is incremental: nothing new, nothing moves.
    let smart = ModeOverride {
        mode: Some(RefreshModeKind::SmartSync),
        incremental_column: Some(ColumnName::new("id").unwrap()),
        ..ModeOverride::default()
    };
    let summary = refresh(&svc, None, smart).await;
    assert_eq!(summary.tables[0].rows, 0);
    let _ = LocationName::new("src").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_postgresql_to_mariadb() {
    modes(Engine::Pg, Engine::Maria).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_mariadb_to_sqlite() {
    modes(Engine::Maria, Engine::Lite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_sqlite_to_postgresql() {
    modes(Engine::Lite, Engine::Pg).await;
}
