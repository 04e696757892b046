//! The `sluice` binary end to end on real SQLite files: the happy path, dry runs, and bad input that
//! must give a one-line error naming the object, a non-zero exit code, and leave the target as it was.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use rusqlite::Connection;

mod common;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn sluice(&self) -> Command {
        let mut cmd = Command::cargo_bin("sluice").unwrap();
        cmd.current_dir(self.dir.path())
            .env("SLUICE_HOME", self.path(".sluice"))
            .env_remove("SLUICE_HUB_NAME")
            .env_remove("SLUICE_HUB")
            .env_remove("SLUICE_PASSWORD")
            .env("SLUICE_CONFIG_DIR", self.path("config"))
            .env("SLUICE_USER", "tester");
        cmd
    }

    fn sql(&self, db: &str, script: &str) {
        Connection::open(self.path(db))
            .unwrap()
            .execute_batch(script)
            .unwrap();
    }

    fn rows(&self, db: &str, query: &str) -> Vec<String> {
        let conn = Connection::open(self.path(db)).unwrap();
        let mut stmt = conn.prepare(query).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A source with two tables, definitions naming `target_db`, applied.
    fn setup(&self, target_db: &str) {
        self.sql(
            "src.db",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, price DECIMAL(10,2), placed DATETIME);
             INSERT INTO orders VALUES (1, 'tea', '3.50', '2024-01-02 10:00:00'), (2, 'café ☕', '4.25', '2024-01-03 11:30:00.25'),
                                       (3, NULL, NULL, NULL);
             CREATE TABLE lines (order_id INTEGER, line INT, qty INT, PRIMARY KEY (order_id, line));
             INSERT INTO lines VALUES (1, 1, 2), (1, 2, 1), (2, 1, 5);",
        );
        self.write("defs.yaml", &definitions(target_db));
        self.sluice()
            .args(["apply", "defs.yaml"])
            .assert()
            .success();
    }
}

fn definitions(target_db: &str) -> String {
    format!(
        r#"hub: test
locations:
  src: {{class: sqlite, props: {{Database_Name: src.db}}}}
  tgt: {{class: sqlite, props: {{Database_Name: "{target_db}"}}}}
channels:
  shop:
    loc_groups: {{SOURCE: [src], TARGET: [tgt]}}
    tables:
      orders: {{}}
      lines: {{}}
    actions:
      - {{type: Capture, loc_scope: SOURCE}}
      - {{type: Integrate, loc_scope: TARGET}}
"#
    )
}

fn json(output: &[u8]) -> serde_json::Value {
    serde_json::from_slice(output)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(output)))
}

fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn refresh_compare_status_and_events_work_end_to_end() {
    let env = Env::new();
    env.setup("tgt.db");
    env.sluice()
        .args(["location", "test", "src"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Class_Version"));

    let out = env
        .sluice()
        .args(["refresh", "shop", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = json(&out.stdout);
    assert_eq!(summary["state"], "DONE");
    assert_eq!(
        env.rows("tgt.db", "SELECT item FROM orders WHERE id = 2"),
        vec!["café ☕"]
    );

    // Identical: exit 0, both granularities.
    env.sluice()
        .args(["compare", "shop"])
        .assert()
        .success()
        .stdout(predicate::str::contains("IDENTICAL"));
    env.sluice()
        .args(["compare", "shop", "--rowwise"])
        .assert()
        .success();

    // An online compare needs the channel activated: refused, saying so.
    env.sluice()
        .args(["compare", "shop", "--online"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "online compare needs channel shop activated",
        ));

    // A change at the target: compare exits 3 and names the key.
    env.sql("tgt.db", "UPDATE lines SET qty = 99 WHERE order_id = 1 AND line = 2; DELETE FROM orders WHERE id = 3;");
    env.sluice()
        .args(["compare", "shop", "--rowwise"])
        .assert()
        .code(3)
        .stdout(
            predicate::str::contains("lines differ: (1, 2)")
                .and(predicate::str::contains("orders only on source: (3)")),
        );

    // A staging swap puts it right.
    env.sluice()
        .args([
            "refresh",
            "shop",
            "--strategy",
            "staging_swap",
            "--tables",
            "lines,orders",
        ])
        .assert()
        .success();
    env.sluice()
        .args(["compare", "shop", "--rowwise"])
        .assert()
        .success();

    let status = json(
        &env.sluice()
            .args(["status", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    let tables = status[0]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2);
    for t in tables {
        assert_eq!(t["source_rows"], t["target_rows"]);
        assert_eq!(t["last_refresh"]["table_state"], "DONE");
        assert_eq!(t["last_compare"]["table_state"], "DONE/IDENTICAL");
    }

    let events = json(
        &env.sluice()
            .args(["event", "list", "--json", "--type", "Refresh"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(events.as_array().unwrap().len(), 2);
    assert_eq!(events[0]["user"], "tester");
    let results = events[0]["results"].as_array().unwrap();
    assert!(
        results.iter().any(|r| r["name"] == "Source_Rows_Used"
            && r["table"] == "orders"
            && r["value"] == "3")
    );
    let id = events[0]["id"].as_str().unwrap();
    env.sluice()
        .args(["event", "log", id])
        .assert()
        .success()
        .stdout(predicate::str::contains("Refresh completed"));
    env.sluice()
        .args(["event", "show", id])
        .assert()
        .success()
        .stdout(predicate::str::contains("Table_Duration"));
    for args in [
        ["location", "list", "--json"],
        ["channel", "list", "--json"],
        ["job", "list", "--json"],
    ] {
        json(&env.sluice().args(args).output().unwrap().stdout);
    }
}

#[test]
fn a_dry_run_prints_every_statement_and_runs_none() {
    let env = Env::new();
    env.setup("tgt.db");
    let out = env
        .sluice()
        .args(["refresh", "shop", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "dry run: nothing was executed",
        r#"SELECT "id", "item", "price", "placed" FROM "orders""#,
        "BEGIN IMMEDIATE",
        r#"CREATE TABLE "orders" ("id" INTEGER NOT NULL"#,
        r#"INSERT INTO "orders" ("id", "item", "price", "placed") VALUES (?1, ?2, ?3, ?4);   -- once per row"#,
        "COMMIT",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !env.path("tgt.db").exists(),
        "a dry run created the target database"
    );
    // With an existing target, the plan empties it instead of creating it.
    env.sluice().args(["refresh", "shop"]).assert().success();
    let plan = json(
        &env.sluice()
            .args([
                "refresh",
                "shop",
                "--dry-run",
                "--json",
                "--strategy",
                "staging_swap",
            ])
            .output()
            .unwrap()
            .stdout,
    );
    let target_sql: Vec<&str> = plan["tables"][0]["target_statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sql"].as_str().unwrap())
        .collect();
    assert!(
        target_sql
            .iter()
            .any(|s| s.starts_with(r#"ALTER TABLE "lines__sluice_stage" RENAME TO "lines""#)),
        "{target_sql:?}"
    );
    let events = json(
        &env.sluice()
            .args(["event", "list", "--json", "--type", "Refresh"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(
        events.as_array().unwrap().len(),
        1,
        "dry runs post no events"
    );
}

#[test]
fn validate_reports_every_error_with_its_path() {
    let env = Env::new();
    env.write(
        "bad.yaml",
        r#"hub: test
locations:
  src: {class: sqlite, props: {Database_Name: a.db, Database_Password: hunter2}}
channels:
  sales:
    loc_groups: {SOURCE: [src], TARGET: [nowhere]}
    tables:
      orders:
        cols:
          id: {data_type: inte}
"#,
    );
    let out = env
        .sluice()
        .args(["validate", "bad.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            r#"error: channels.sales.tables.orders.cols.id.data_type: unknown data type "inte""#
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("error: channels.sales.loc_groups.TARGET[0]: unknown location nowhere"),
        "{stdout}"
    );
    assert!(stdout.contains("error: locations.src.props.Database_Password: a secret must be given as an ${ENV_VAR} reference"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !String::from_utf8_lossy(&out.stderr).contains("hunter2"),
        "the secret was echoed"
    );
    assert!(
        !env.path(".sluice").exists(),
        "validate created a repository"
    );

    // apply refuses it and stores nothing.
    let out = env.sluice().args(["apply", "bad.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_lines(&out)
            .last()
            .unwrap()
            .starts_with("error: bad.yaml has 3 error(s); nothing was applied"),
        "{:?}",
        stderr_lines(&out)
    );
    env.sluice()
        .args(["channel", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no hub yet"));
}

#[test]
fn invalid_yaml_is_one_clear_error() {
    let env = Env::new();
    env.write("broken.yaml", "hub: test\nlocations: [a,\n");
    let out = env
        .sluice()
        .args(["validate", "broken.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("error: invalid YAML: line 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.sluice()
        .args(["validate", "missing.yaml"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("cannot read missing.yaml"));
}

/// SQLite has one writer per file: `--parallel 4` into a SQLite target refreshes its tables
/// one after another instead of failing them on "database is locked" (a row-wise table reads the
/// target while another table waits to commit).
#[test]
fn rowwise_parallel_refresh_into_sqlite_writes_one_table_at_a_time() {
    let env = Env::new();
    let tables = ["t1", "t2", "t3", "t4"];
    let mut script = String::new();
    for t in tables {
        script += &format!(
            "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000)
             INSERT INTO {t} SELECT i, 'value ' || i FROM n;"
        );
    }
    env.sql("src.db", &script);
    // The target holds an older version of every table: each row-wise table reads it whole.
    env.sql("tgt.db", &script);
    let mut changes = String::new();
    for t in tables {
        changes += &format!(
            "UPDATE {t} SET v = 'old' WHERE id % 7 = 0; DELETE FROM {t} WHERE id % 11 = 0;
             INSERT INTO {t} VALUES (70000, 'only here'), (70001, 'only here');"
        );
    }
    env.sql("tgt.db", &changes);
    env.write(
        "defs.yaml",
        r#"hub: test
locations:
  src: {class: sqlite, props: {Database_Name: src.db}}
  tgt: {class: sqlite, props: {Database_Name: tgt.db}}
channels:
  shop:
    loc_groups: {SOURCE: [src], TARGET: [tgt]}
    tables: {t1: {}, t2: {}, t3: {}, t4: {}}
    actions:
      - {type: Capture, loc_scope: SOURCE}
      - {type: Integrate, loc_scope: TARGET}
"#,
    );
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let out = env
        .sluice()
        .args([
            "refresh",
            "shop",
            "--mode",
            "rowwise",
            "--parallel",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each table says what it did: 60,000 / 11 rows back, multiples of 7 (not of 77) updated,
    // the two rows only in the target deleted.
    let summary = json(&out.stdout);
    for t in summary["tables"].as_array().unwrap() {
        assert_eq!(
            t["changes"],
            serde_json::json!({"inserted": 5454, "updated": 7792, "deleted": 2}),
            "{t}"
        );
    }
    let event = summary["event"].as_str().unwrap();
    env.sluice()
        .args(["event", "show", event])
        .assert()
        .success()
        .stdout(predicate::str::contains("Rows_Inserted"));
    env.sluice()
        .args(["compare", "shop", "--rowwise"])
        .assert()
        .success();
}

/// An incremental refresh reports the rows it upserted, and its progress counts only the rows
/// past the target's greatest value, not the whole source table.
#[test]
fn incremental_refresh_reports_its_upserts() {
    let env = Env::new();
    env.setup("tgt.db");
    env.sluice().args(["refresh", "shop"]).assert().success();
    env.sql(
        "src.db",
        "WITH RECURSIVE n(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM n WHERE i < 25)
         INSERT INTO orders SELECT i, 'new', '1.00', NULL FROM n;",
    );
    let args = [
        "refresh",
        "shop",
        "--tables",
        "orders",
        "--mode",
        "incremental",
        "--incremental-column",
        "id",
    ];
    let out = env.sluice().args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("16 upserted"), "{stdout}");
    // Progress: no total for an incremental read (the count would be of the whole table).
    assert!(stderr.contains("orders: refresh started\n"), "{stderr}");
    assert_eq!(
        env.rows(
            "tgt.db",
            "SELECT CAST(count(*) AS TEXT) FROM orders WHERE item = 'new'"
        ),
        vec!["16"]
    );
}

#[test]
fn unknown_names_are_one_line_errors_that_change_nothing() {
    let env = Env::new();
    env.setup("tgt.db");
    env.sluice().args(["refresh", "shop"]).assert().success();
    let before = env.rows("tgt.db", "SELECT group_concat(id) FROM orders");
    for (args, message) in [
        (
            vec!["refresh", "nope"],
            "error: channel nope does not exist in hub test",
        ),
        (
            vec!["refresh", "shop", "--tables", "orders,ghosts"],
            "error: table ghosts is not in channel shop",
        ),
        (
            vec!["refresh", "shop", "--target", "other"],
            "error: location other is not a member of channel shop",
        ),
        (
            vec!["location", "test", "other"],
            "error: location other does not exist in hub test",
        ),
        (
            vec!["compare", "nope"],
            "error: channel nope does not exist in hub test",
        ),
        (vec!["refresh", "Shop"], "invalid channel name \"Shop\""),
    ] {
        let out = env.sluice().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let lines = stderr_lines(&out);
        assert!(
            lines.iter().any(|l| l.contains(message)),
            "{args:?}: {lines:?}"
        );
    }
    assert_eq!(
        env.rows("tgt.db", "SELECT group_concat(id) FROM orders"),
        before
    );
    let events = json(
        &env.sluice()
            .args(["event", "list", "--json", "--type", "Refresh"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(
        events.as_array().unwrap().len(),
        1,
        "refused requests post no events"
    );
}

#[test]
fn a_source_table_that_vanished_fails_before_anything_changes() {
    let env = Env::new();
    env.setup("tgt.db");
    env.sluice().args(["refresh", "shop"]).assert().success();
    env.sql(
        "src.db",
        "INSERT INTO orders VALUES (4, 'new', '1.00', NULL); DROP TABLE lines;",
    );
    let out = env.sluice().args(["refresh", "shop"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let lines = stderr_lines(&out);
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("error: table lines: source table lines does not exist"),
        "{lines:?}"
    );
    // orders was not refreshed either: pre-flight stops the whole job.
    assert_eq!(
        env.rows("tgt.db", "SELECT count(*) || '' FROM orders"),
        vec!["3"]
    );
    assert_eq!(
        env.rows("tgt.db", "SELECT count(*) || '' FROM lines"),
        vec!["3"]
    );
    let events = json(
        &env.sluice()
            .args([
                "event", "list", "--json", "--type", "Refresh", "--state", "FAILED",
            ])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        events[0]["response"]
            .as_str()
            .unwrap()
            .contains("source table lines does not exist")
    );
}

#[test]
fn a_target_that_cannot_be_written_is_an_error_and_stays_unchanged() {
    let env = Env::new();
    env.setup("tgt.db");
    env.sluice().args(["refresh", "shop"]).assert().success();
    env.sql("src.db", "UPDATE orders SET item = 'changed';");
    // Point the target at the same file, read-only.
    let readonly = format!("file:{}?mode=ro", env.path("tgt.db").display());
    env.write("defs.yaml", &definitions(&readonly));
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let out = env.sluice().args(["refresh", "shop"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the database is read-only"), "{stdout}");
    assert!(
        stderr_lines(&out)
            .last()
            .unwrap()
            .starts_with("error: Refresh failed for 2 of 2 table(s)")
    );
    assert_eq!(
        env.rows("tgt.db", "SELECT item FROM orders WHERE id = 1"),
        vec!["tea"]
    );

    // A target whose file is not a database at all.
    env.write(
        "junk.db",
        "this is not a database file, it is just text that is long enough to have a header",
    );
    env.write("defs.yaml", &definitions("junk.db"));
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let out = env.sluice().args(["refresh", "shop"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("not a usable SQLite database"), "{text}");
}

/// Channels `sales_a`, `sales_b`, `sales_c` (targets `a.db`, `b.db`, `c.db`), `sales_x` (its
/// target `junk.db` is not a database), `stock` (target `s.db`), all reading `orders` of `src.db`.
fn batch_setup(env: &Env) {
    env.setup("tgt.db");
    env.write(
        "junk.db",
        "this is not a database file, it is just text that is long enough to have a header",
    );
    let mut yaml = String::from("hub: test\nlocations:\n");
    let targets = [
        ("sales_a", "a"),
        ("sales_b", "b"),
        ("sales_c", "c"),
        ("sales_x", "junk"),
        ("stock", "s"),
    ];
    for (_, db) in targets {
        yaml.push_str(&format!(
            "  t_{db}: {{class: sqlite, props: {{Database_Name: {db}.db}}}}\n"
        ));
    }
    yaml.push_str("channels:\n");
    for (channel, db) in targets {
        yaml.push_str(&format!(
            "  {channel}:\n    loc_groups: {{SOURCE: [src], TARGET: [t_{db}]}}\n    tables: {{orders: {{}}}}\n    actions:\n      - {{type: Capture, loc_scope: SOURCE}}\n      - {{type: Integrate, loc_scope: TARGET}}\n"
        ));
    }
    env.write("batch.yaml", &yaml);
    env.sluice()
        .args(["apply", "batch.yaml"])
        .assert()
        .success();
}

#[test]
fn refresh_channels_runs_one_job_per_matching_channel() {
    let env = Env::new();
    batch_setup(&env);

    let out = env
        .sluice()
        .args([
            "refresh",
            "--channels",
            "sales_[abc]",
            "--channel-parallel",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = json(&out.stdout);
    let channels = answer["channels"].as_array().unwrap();
    let names: Vec<&str> = channels
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales_a", "sales_b", "sales_c"], "{answer}");
    for c in channels {
        assert_eq!(c["state"], "DONE", "{c}");
        assert!(c["ev_id"].is_string() && c["job"].is_string(), "{c}");
    }
    for db in ["a.db", "b.db", "c.db"] {
        assert_eq!(
            env.rows(db, "SELECT item FROM orders WHERE id = 1"),
            vec!["tea"],
            "{db}"
        );
    }
    assert!(!env.path("s.db").exists(), "stock was refreshed");

    // One channel failing makes the command fail, after every channel ran; the table shows each.
    let out = env
        .sluice()
        .args(["refresh", "--channels", "sales_*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in ["sales_a", "sales_b", "sales_c"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(line) && l.contains("DONE")),
            "{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("sales_x") && l.contains("FAILED")),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 of 4 channel(s) of the batch refresh failed"),
        "{stderr}"
    );

    // A pattern matching nothing posts nothing; CHANNEL and --channels exclude each other, and
    // one of them is needed.
    let events = |env: &Env| {
        let out = env
            .sluice()
            .args(["event", "list", "--json", "--limit", "1000"])
            .output()
            .unwrap();
        json(&out.stdout).as_array().unwrap().len()
    };
    let before = events(&env);
    let out = env
        .sluice()
        .args(["refresh", "--channels", "hr_*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no channel matches"));
    for args in [
        &["refresh", "sales_a", "--channels", "sales_*"][..],
        &["refresh"][..],
        &["refresh", "sales_a", "--channel-parallel", "2"][..],
        &[
            "refresh",
            "--channels",
            "sales_*",
            "--channel-parallel",
            "0",
        ][..],
        &["compare", "--channels", "sales_*", "--online"][..],
    ] {
        env.sluice().args(args).assert().failure().code(2);
    }
    assert_eq!(events(&env), before, "something was posted");
}

/// Makes `orders` big enough that a refresh of it is still running a second later.
fn grow_orders(env: &Env) {
    env.sql(
        "src.db",
        "WITH RECURSIVE n(x) AS (SELECT 10 UNION ALL SELECT x + 1 FROM n LIMIT 3000000)
         INSERT INTO orders SELECT x, 'bulk ' || x, '1.00', '2024-01-01 00:00:00' FROM n;",
    );
}

/// Starts `sluice refresh shop --tables orders` and returns once its table has started.
fn start_long_refresh(
    env: &Env,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sluice"))
        .current_dir(env.dir.path())
        .env("SLUICE_HOME", env.path(".sluice"))
        .args(["refresh", "shop", "--tables", "orders"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    loop {
        let line = reader
            .next()
            .expect("the refresh reports its start")
            .unwrap();
        if line.starts_with("orders: refresh started") {
            break;
        }
    }
    (child, reader)
}

fn interrupt(child: &std::process::Child) {
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[test]
fn interrupting_a_refresh_rolls_the_table_back() {
    let env = Env::new();
    env.setup("tgt.db");
    env.sluice().args(["refresh", "shop"]).assert().success();
    grow_orders(&env);
    let (mut child, reader) = start_long_refresh(&env);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let rest: Vec<String> = reader.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    assert_eq!(
        env.rows("tgt.db", "SELECT count(*) || '' FROM orders"),
        vec!["3"],
        "the target kept its rows"
    );
    let events = json(
        &env.sluice()
            .args(["event", "list", "--json", "--type", "Refresh"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(events[0]["state"], "CANCELED");
    // The job is free again.
    env.sluice()
        .args(["refresh", "shop", "--tables", "lines"])
        .assert()
        .success();
}

#[test]
fn a_job_runs_once_at_a_time() {
    let env = Env::new();
    env.setup("tgt.db");
    env.sluice()
        .args(["refresh", "shop", "--tables", "lines"])
        .assert()
        .success();
    grow_orders(&env);
    let (mut child, reader) = start_long_refresh(&env);
    let events = json(
        &env.sluice()
            .args([
                "event", "list", "--json", "--type", "Refresh", "--state", "ACTIVE",
            ])
            .output()
            .unwrap()
            .stdout,
    );
    let running = events[0]["id"].as_str().unwrap().to_owned();
    let out = env
        .sluice()
        .args(["refresh", "shop", "--tables", "lines"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let last = stderr_lines(&out).pop().unwrap();
    assert!(
        last.contains("job shop-refr-src-tgt is already running as event")
            && last.contains(&running),
        "{last}"
    );
    assert_eq!(
        last.matches("already running").count(),
        1,
        "the message is not repeated: {last}"
    );
    // A compare of the same channel is another job and may run meanwhile.
    env.sluice()
        .args(["compare", "shop", "--tables", "lines"])
        .assert()
        .success();
    // Close the child's stderr before it ends: its notices must not stop it from ending the job.
    drop(reader);
    interrupt(&child);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    env.sluice()
        .args(["refresh", "shop", "--tables", "lines"])
        .assert()
        .success();
}

/// The values SQLite would change on the way (or cannot hold), each in its own table of one refresh:
/// every such table fails naming column and key and keeps its target; the rest go through.
#[test]
fn values_sqlite_would_change_fail_their_table_and_change_nothing() {
    let env = Env::new();
    env.sql(
        "src.db",
        "CREATE TABLE zips (id INTEGER PRIMARY KEY, zip TEXT); INSERT INTO zips VALUES (1, '007'), (2, '1e3');
         CREATE TABLE loose (id INTEGER PRIMARY KEY, v); INSERT INTO loose VALUES (1, 'text'), (2, 5);
         CREATE TABLE floats (id INTEGER PRIMARY KEY, f REAL); INSERT INTO floats VALUES (1, 1.5), (2, 'NaN');
         CREATE TABLE stamps (id INTEGER PRIMARY KEY, at DATETIME); INSERT INTO stamps VALUES (1, '2024-01-01 00:00:00.12345678999');
         CREATE TABLE dkeys (id DECIMAL(20,0) PRIMARY KEY, v TEXT); INSERT INTO dkeys VALUES (9, 'nine'), (10, 'ten'), (-3, 'minus');",
    );
    env.sql("tgt.db", "CREATE TABLE zips (id INTEGER PRIMARY KEY, zip STRING); INSERT INTO zips VALUES (9, 'kept');");
    env.write(
        "defs.yaml",
        &definitions("tgt.db").replace("      orders: {}\n      lines: {}\n", "      zips: {}\n      loose: {}\n      floats: {}\n      stamps: {}\n      dkeys: {}\n"),
    );
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let out = env
        .sluice()
        .args(["refresh", "shop", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let summary = json(&out.stdout);
    let table = |name: &str| {
        summary["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    for (name, needles) in [
        ("zips", vec!["(id=1)", "column zip", "numeric affinity"]),
        ("loose", vec!["(id=2)", "column v", "no declared type"]),
        ("floats", vec!["(id=2)", "column f", "NaN"]),
        ("stamps", vec!["(id=1)", "column at", "ISO-8601"]),
    ] {
        let t = table(name);
        assert_eq!(t["state"], "FAILED", "{name}: {t}");
        let error = t["error"].as_str().unwrap();
        for needle in needles {
            assert!(error.contains(needle), "{name}: {needle:?} not in {error}");
        }
    }
    assert_eq!(table("dkeys")["state"], "DONE");
    assert_eq!(env.rows("tgt.db", "SELECT zip FROM zips"), vec!["kept"]);
    // Decimal keys kept as digits in the target still merge in numeric order.
    env.sluice()
        .args(["compare", "shop", "--rowwise", "--tables", "dkeys"])
        .assert()
        .success();
}

fn quickstart(dir: &Path) -> std::process::Output {
    let mut cmd = Command::cargo_bin("sluice").unwrap();
    cmd.current_dir(dir)
        .env_remove("SLUICE_HOME")
        .args(["quickstart", "--rows", "20000"])
        .output()
        .unwrap()
}

/// The README's exit codes, one case per class: 2 when the command or the definitions name what
/// is malformed or does not exist (a channel, a database, a column: found before any row moves),
/// 1 when the work was attempted and failed (a database that cannot be reached), 3 when a
/// compare finds differences.
#[test]
fn exit_codes_follow_one_rule() {
    let env = Env::new();
    env.sql(
        "src.db",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT); INSERT INTO orders VALUES (1, 'tea');",
    );
    let missing = format!(
        "sluice_cli_missing_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    env.write(
        "defs.yaml",
        &format!(
            r#"hub: codes
locations:
  src: {{class: sqlite, props: {{Database_Name: src.db}}}}
  tgt: {{class: sqlite, props: {{Database_Name: tgt.db}}}}
  missing: {{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, Database_Name: {missing}, Database_User: postgres, Database_Sslmode: disable}}}}
  dead: {{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 1, Database_Name: postgres, Database_User: postgres, Database_Sslmode: disable}}}}
channels:
  shop:
    loc_groups: {{SOURCE: [src], TARGET: [tgt, missing, dead]}}
    tables: {{orders: {{}}}}
    actions:
      - {{type: Capture, loc_scope: SOURCE}}
      - {{type: Integrate, loc_scope: TARGET}}
"#
        ),
    );
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let code = |args: &[&str], expected: i32, says: &str| {
        let out = env.sluice().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    // 2: usage, and names that do not exist, in the hub or at a database.
    code(
        &["refresh", "shop", "--mode", "sideways"],
        2,
        "invalid value",
    );
    code(&["refresh", "nosuch"], 2, "nosuch");
    code(
        &["refresh", "shop", "--target", "missing"],
        2,
        &format!("\"{missing}\" does not exist"),
    );
    code(
        &[
            "refresh",
            "shop",
            "--target",
            "tgt",
            "--mode",
            "incremental",
            "--incremental-column",
            "placed",
        ],
        2,
        "incremental column placed is not among the columns read",
    );
    // 1: the work was attempted and a database could not do it.
    code(
        &["refresh", "shop", "--target", "dead"],
        1,
        "cannot be reached",
    );
    code(&["location", "test", "dead"], 1, "cannot be reached");
    // 3: a compare that finds differences (the target has no table yet).
    code(&["refresh", "shop", "--target", "tgt"], 0, "");
    env.sql("tgt.db", "DELETE FROM orders");
    code(&["compare", "shop", "--target", "tgt"], 3, "");
}

#[test]
fn commands_that_read_create_no_repository_and_say_where_they_looked() {
    let env = Env::new();
    for args in [
        &["status"][..],
        &["channel", "list"],
        &["location", "list"],
        &["hub", "status"],
        &["job", "list"],
        &["event", "list"],
        &["export"],
        &["lineage"],
    ] {
        let out = env.sluice().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for part in [
            "no sluice repository here",
            ".sluice/hub.db",
            "sluice apply FILE",
        ] {
            assert!(stderr.contains(part), "{args:?}: {part:?} in {stderr}");
        }
        assert!(
            !env.path(".sluice").exists(),
            "{args:?} created a repository"
        );
    }
    // A plan compares with an empty hub and creates nothing either.
    env.write("defs.yaml", &definitions("tgt.db"));
    env.sluice()
        .args(["plan", "defs.yaml"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("+ add channel shop"))
        .stderr(predicate::str::contains(
            "does not exist yet: this plan is against an empty hub",
        ));
    assert!(!env.path(".sluice").exists(), "plan created a repository");
    // Defining a hub is what makes one.
    env.setup("tgt.db");
    env.sluice().args(["status"]).assert().success();
}

#[test]
fn status_shows_every_channel_when_one_cannot_resolve_its_tables() {
    let env = Env::new();
    env.setup("tgt.db");
    let both = definitions("tgt.db")
        + "  nocap:\n    loc_groups: {SOURCE: [src], TARGET: [tgt]}\n    tables:\n      orders: {}\n";
    env.write("defs.yaml", &both);
    env.sluice()
        .args(["apply", "defs.yaml", "--auto-approve"])
        .assert()
        .success();
    env.sluice()
        .args(["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("channel shop (src → tgt)"))
        .stdout(predicate::str::contains(
            "channel nocap: its tables cannot be shown: channel nocap has no Capture action",
        ));
    let out = env.sluice().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    let listed = json(&out.stdout);
    let nocap = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "nocap")
        .unwrap();
    assert!(
        nocap["error"]
            .as_str()
            .unwrap()
            .contains("no Capture action")
    );
    // Asked for by name, the channel's problem is the command's error.
    env.sluice().args(["status", "nocap"]).assert().code(2);
}

#[test]
fn quickstart_runs_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    for run in 1..=2 {
        let out = quickstart(dir.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {run}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for expected in [
            "[7/7]",
            "compare (row by row) reports exactly the changes made",
            "order_items",
            "rows/s",
            "sluice status",
        ] {
            assert!(
                stdout.contains(expected),
                "run {run}: missing {expected:?} in {stdout}"
            );
        }
        // The hints name the binary that ran (not on the PATH here) so they can be pasted.
        let me = assert_cmd::cargo::cargo_bin("sluice")
            .canonicalize()
            .unwrap();
        assert!(
            stdout.contains(&format!("  {} status ", me.display())),
            "run {run}: the hints name {}: {stdout}",
            me.display()
        );
    }
    let qs = dir.path().join("sluice-quickstart");
    assert!(
        qs.join("shop.db").exists()
            && qs.join("warehouse.db").exists()
            && qs.join("sluice.yaml").exists()
    );
    // The suggested next commands work from there.
    let mut cmd = Command::cargo_bin("sluice").unwrap();
    cmd.current_dir(&qs)
        .env_remove("SLUICE_HOME")
        .args(["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("DONE/IDENTICAL"));
}

// ---- remote mode (--hub) without a server ----

/// A loopback URL nothing listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// Stores a session for `url` as `sluice login` would.
fn store_session(env: &Env, url: &str) {
    let creds = serde_json::json!({"hubs": {url: {
        "url": url, "user": "admin", "access_token": "a1", "refresh_token": "r1",
        "expires_at": "2999-01-01T00:00:00Z"}}});
    std::fs::create_dir_all(env.path("config")).unwrap();
    env.write("config/credentials.json", &creds.to_string());
}

#[test]
fn a_remote_command_without_a_session_says_how_to_log_in() {
    let env = Env::new();
    let url = dead_url();
    let out = env
        .sluice()
        .args(["refresh", "shop", "--hub", &url])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert_eq!(
        stderr_lines(&out),
        [format!(
            "error: not logged in to {url}: run `sluice login --hub {url}`"
        )]
    );
    // SLUICE_HUB selects remote mode as --hub does; the local repository is never created.
    env.sluice()
        .env("SLUICE_HUB", &url)
        .args(["event", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not logged in"));
    assert!(!env.path(".sluice").exists());
}

#[test]
fn a_remote_refresh_of_an_unreachable_server_is_a_connection_error() {
    let env = Env::new();
    let url = dead_url();
    store_session(&env, &url);
    for args in [
        // With both locations given the refresh is posted at once …
        &[
            "refresh",
            "shop",
            "--source",
            "src",
            "--target",
            "wh",
            "--hub-name",
            "hub1",
        ][..],
        // … without, the channel is asked for them first; without --hub-name, the hubs.
        &["refresh", "shop", "--wait"][..],
        &["job", "cancel", "shop-refr-src-wh", "--hub-name", "hub1"][..],
    ] {
        let out = env
            .sluice()
            .args(args)
            .args(["--hub", &url])
            .assert()
            .code(1)
            .get_output()
            .clone();
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(
            lines[0].starts_with(&format!("error: cannot reach the hub server at {url}/")),
            "{args:?}: {lines:?}"
        );
        assert!(lines[0].contains("Connection refused"), "{lines:?}");
    }
}

#[test]
fn login_to_an_unreachable_server_stores_nothing() {
    let env = Env::new();
    let url = dead_url();
    env.sluice()
        .args(["login", "--hub", &url, "--user", "admin", "--password-stdin"])
        .write_stdin("secret\n")
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "error: cannot log in to {url} as admin: cannot reach the hub server at {url}/auth/v1/password"
        )));
    assert!(!env.path("config").join("credentials.json").exists());
    // Without a URL, or a password and a terminal, login explains what it needs.
    env.sluice()
        .args(["login", "--password", "x"])
        .assert()
        .code(1)
        .stderr("error: `sluice login` needs the hub server's URL: pass --hub URL (or set SLUICE_HUB)\n");
    env.sluice()
        .args(["login", "--hub", &url])
        .write_stdin("")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no password: pass --password-stdin",
        ));
    env.sluice()
        .args(["login", "--hub", "localhost:4341", "--password", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the scheme must be http or https"));
}

#[test]
fn logout_forgets_the_session_even_when_the_server_is_gone() {
    let env = Env::new();
    let url = dead_url();
    // $XDG_CONFIG_HOME/sluice is used when SLUICE_CONFIG_DIR is not set.
    let xdg = env.path("xdg");
    std::fs::create_dir_all(xdg.join("sluice")).unwrap();
    let creds = serde_json::json!({"hubs": {
        url.clone(): {"url": url, "user": "admin", "access_token": "a1", "refresh_token": "r1",
               "expires_at": "2999-01-01T00:00:00Z"},
        "http://other:1": {"url": "http://other:1", "user": "bob", "access_token": "a2",
               "expires_at": "2999-01-01T00:00:00Z"}}});
    std::fs::write(xdg.join("sluice/credentials.json"), creds.to_string()).unwrap();
    let logout = || {
        let mut cmd = env.sluice();
        cmd.env_remove("SLUICE_CONFIG_DIR")
            .env("XDG_CONFIG_HOME", &xdg);
        cmd
    };
    // Two sessions: which one must be said.
    logout()
        .arg("logout")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("logged in to several hub servers"));
    logout()
        .args(["logout", "--hub", &format!("{url}/")])
        .assert()
        .success()
        .stdout(format!("logged out of {url}\n"))
        .stderr(predicate::str::contains(
            "warning: the server did not revoke the session",
        ));
    let left: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(xdg.join("sluice/credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        left["hubs"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["http://other:1"]
    );
    // One session left: logout needs no URL.
    logout()
        .arg("logout")
        .assert()
        .success()
        .stdout("logged out of http://other:1\n");
    logout()
        .arg("logout")
        .assert()
        .success()
        .stdout("not logged in to any hub server\n");
}

#[test]
fn commands_without_a_remote_variant_say_so() {
    let env = Env::new();
    let url = dead_url();
    store_session(&env, &url);
    env.sluice()
        .args(["status", "--hub", &url])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "`sluice status` has no --hub variant yet",
        ));
    // validate needs no hub: it checks the file here even with --hub.
    env.write("defs.yaml", &definitions("wh.db"));
    env.sluice()
        .args(["validate", "defs.yaml", "--hub", &url])
        .assert()
        .success()
        .stdout(predicate::str::contains("defs.yaml is valid"));
}

#[test]
fn hub_channel_and_job_administration_work_on_the_local_repository() {
    let env = Env::new();
    env.setup("wh.db");
    let status = env
        .sluice()
        .args(["hub", "status", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json(&status)["hub_state"], "LIVE");

    // Frozen, nothing starts; unfrozen, it does.
    env.sluice()
        .args(["hub", "freeze"])
        .assert()
        .success()
        .stdout("hub test frozen: no job starts until `sluice hub unfreeze`\n");
    let status = env
        .sluice()
        .args(["hub", "status", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&status.stdout)["hub_state"], "FROZEN");
    assert!(json(&status.stdout)["freeze_time"].is_string());
    env.sluice()
        .args(["refresh", "shop"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("FROZEN"));
    // The refresh never started: the target was not even created.
    assert!(!env.path("wh.db").exists());
    env.sluice().args(["hub", "unfreeze"]).assert().success();
    env.sluice().args(["refresh", "shop"]).assert().success();

    // Suspend and resume the refresh job.
    env.sluice()
        .args(["job", "suspend", "shop-refr-src-tgt"])
        .assert()
        .success();
    let jobs = env
        .sluice()
        .args(["job", "list", "--json"])
        .output()
        .unwrap();
    let jobs = json(&jobs.stdout);
    let refr = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "shop-refr-src-tgt")
        .unwrap()
        .clone();
    assert_eq!(refr["state"], "SUSPEND", "{jobs}");
    env.sluice()
        .args(["job", "resume", "shop-refr-src-tgt"])
        .assert()
        .success()
        .stdout("job shop-refr-src-tgt resumed\n");
    // Nothing runs, so nothing to cancel.
    env.sluice()
        .args(["job", "cancel", "shop-refr-src-tgt"])
        .assert()
        .code(2)
        .stderr("error: job shop-refr-src-tgt has no active event to cancel\n");

    // Export, then delete the channel.
    let export = env
        .sluice()
        .args(["channel", "export"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let export = json(&export);
    assert!(
        export["channels"]["shop"]["tables"]["orders"].is_object(),
        "{export}"
    );
    assert_eq!(export["locations"]["src"]["class"], "sqlite", "{export}");
    env.sluice()
        .args(["channel", "delete", "shop"])
        .assert()
        .success()
        .stdout("channel shop deleted from hub test\n");
    env.sluice()
        .args(["channel", "show", "shop"])
        .assert()
        .code(2);
    env.sluice()
        .args(["channel", "delete", "shop"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("channel shop does not exist"));
}

#[test]
fn apikeys_are_created_listed_and_deleted() {
    let env = Env::new();
    let out = env
        .sluice()
        .args([
            "--json",
            "apikey",
            "create",
            "--level",
            "ReadExecRefresh",
            "--description",
            "dagster",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let created: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap();
    assert!(key.starts_with("sk") && secret.len() >= 40, "{created}");
    assert_eq!(created["level"], "ReadExecRefresh");
    let list = env
        .sluice()
        .args(["apikey", "list"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list = String::from_utf8(list).unwrap();
    assert!(list.contains(&key) && list.contains("dagster"), "{list}");
    assert!(!list.contains(secret), "the secret is never shown again");
    env.sluice()
        .args(["apikey", "create", "--level", "Nope"])
        .assert()
        .failure();
    env.sluice()
        .args(["apikey", "delete", &key])
        .assert()
        .success();
    env.sluice()
        .args(["apikey", "delete", &key])
        .assert()
        .failure()
        .stderr(predicate::str::contains("does not exist"));
}

// ---- hub server processes: a cancel against a table's commit, and runs of killed processes ----
//
// These start real `sluice serve` processes on a SQLite or a PostgreSQL repository, with the rows
// in a fresh PostgreSQL database (`127.0.0.1:5432`, user postgres, as `scripts/services` starts
// it; unreachable → the tests fail). A refresh is held at a chosen phase for real: a statement
// trigger on the target that sleeps in the upsert's merge (the commit phase), or another session
// holding a lock on the target table, which the load's TRUNCATE waits for (before the commit).

const ADMIN_PASSWORD: &str = "cli-test-password";

/// Runs `sql` in database `db` and answers its output (unaligned, tuples only).
fn psql(db: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
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
            "-qAtc",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "PostgreSQL is needed at 127.0.0.1:5432 (these tests never skip): {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A fresh PostgreSQL database, dropped (with its connections) when this is dropped.
struct PgDb {
    name: String,
}

impl PgDb {
    fn create(tag: &str) -> Self {
        let name = format!(
            "sluice_cli_{tag}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        psql("postgres", &format!("CREATE DATABASE {name}"));
        PgDb { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    fn sql(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }

    /// Whether a statement of this database is sleeping in a trigger right now.
    fn sleeping(&self) -> bool {
        self.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event = 'PgSleep' \
             AND application_name <> '{LOCK_HOLDER}'",
            self.name
        )) != "0"
    }

    /// Whether a statement of this database waits for a lock right now.
    fn waiting_for_a_lock(&self) -> bool {
        self.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
            self.name
        )) != "0"
    }
}

/// The application name of the session that holds a lock for a test.
const LOCK_HOLDER: &str = "sluice_test_lock_holder";

/// Another session holding a share lock on `dst.<table>` of a database: a TRUNCATE of the table
/// (the start of a `truncate_load`, before anything is written) waits until this is dropped.
struct LockHolder {
    db: String,
    child: std::process::Child,
}

impl LockHolder {
    fn hold(data: &PgDb, table: &str) -> Self {
        let child = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                &data.name,
                "-qc",
                &format!(
                    "BEGIN; LOCK TABLE dst.{table} IN ACCESS SHARE MODE; SELECT pg_sleep(600);"
                ),
            ])
            .env("PGAPPNAME", LOCK_HOLDER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql runs");
        let started = std::time::Instant::now();
        while data.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = '{LOCK_HOLDER}' \
             AND wait_event = 'PgSleep'",
            data.name
        )) == "0"
        {
            assert!(started.elapsed() < Duration::from_secs(30), "the lock is not held");
            std::thread::sleep(Duration::from_millis(50));
        }
        LockHolder {
            db: data.name.clone(),
            child,
        }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        psql(
            &self.db,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{LOCK_HOLDER}' \
                 AND datname = '{}'",
                self.db
            ),
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A `sluice serve` process, logged in as admin; killed (SIGKILL) when dropped.
type Hub = common::Served;

/// Starts `sluice serve` on `repo` with `home` as its `SLUICE_HOME` and logs in as admin.
async fn serve(home: &Path, repo: &str) -> Hub {
    common::serve(home, &["--repo", repo], ADMIN_PASSWORD, None).await
}

impl Hub {
    /// Calls the HVR API: the status and the body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}/api/latest{path}", self.url),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, text) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Hub `h` with PostgreSQL locations `src` and `tgt` (schemas `src` and `dst` of `data`) and
    /// channel `shop` of `tables`.
    async fn define(&self, data: &PgDb, tables: &[&str]) {
        self.ok("POST", "/hubs", Some(serde_json::json!({"hub": "h"})))
            .await;
        for (loc, schema) in [("src", "src"), ("tgt", "dst")] {
            let props = serde_json::json!({
                "Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 5432,
                "Database_Name": data.name, "Database_User": "postgres",
                "Database_Schema": schema, "Database_Sslmode": "disable",
            });
            self.ok(
                "POST",
                "/hubs/h/definition/locs",
                Some(serde_json::json!({"loc": loc, "props": props})),
            )
            .await;
        }
        let tables: serde_json::Map<String, serde_json::Value> = tables
            .iter()
            .map(|t| ((*t).to_owned(), serde_json::json!({})))
            .collect();
        self.ok(
            "POST",
            "/hubs/h/definition/channels",
            Some(serde_json::json!({
                "channel": "shop",
                "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
                "tables": tables,
                "actions": [
                    {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                    {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
                ]
            })),
        )
        .await;
    }

    /// Posts a refresh of channel `shop` and answers its event.
    async fn refresh(&self, extra: serde_json::Value) -> String {
        let mut body = serde_json::json!({"source_loc": "src", "target_loc": "tgt"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let posted = self
            .ok("POST", "/hubs/h/channels/shop/refresh", Some(body))
            .await;
        posted["posted_ev_id"].as_str().unwrap().to_owned()
    }

    /// The event `id` with its results.
    async fn event(&self, id: &str) -> serde_json::Value {
        let events = self
            .ok(
                "GET",
                &format!("/hubs/h/events?ev_id={id}&fetch_results=true"),
                None,
            )
            .await;
        assert!(!events[id].is_null(), "no event {id}: {events}");
        events[id].clone()
    }

    /// Waits (at most `limit`) until event `id` is no longer ACTIVE and answers it.
    async fn finished(&self, id: &str, limit: Duration) -> serde_json::Value {
        let started = std::time::Instant::now();
        loop {
            let event = self.event(id).await;
            if event["state"] != "ACTIVE" {
                return event;
            }
            assert!(
                started.elapsed() < limit,
                "event {id} still ACTIVE after {limit:?}: {event}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The state of job `shop-refr-src-tgt`.
    async fn job_state(&self) -> String {
        let jobs = self.ok("GET", "/hubs/h/jobs", None).await;
        jobs["shop-refr-src-tgt"]["state"]
            .as_str()
            .unwrap_or_else(|| panic!("no job shop-refr-src-tgt in {jobs}"))
            .to_owned()
    }

    /// The `/v1` connector `h.shop`, read with the API key `(key, secret)`.
    async fn connector(&self, key: &(String, String)) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}/v1/connectors/h.shop", self.url))
            .basic_auth(&key.0, Some(&key.1))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["data"].clone()
    }
}

/// The value of result `name` of `table` in an event with results.
fn result_value<'a>(event: &'a serde_json::Value, table: &str, name: &str) -> Option<&'a str> {
    event["results"]
        .as_array()?
        .iter()
        .find(|r| r["table"] == table && r["result"] == name)
        .and_then(|r| r["value"].as_str())
}

/// Creates a ReadOnly API key of the `/v1` face in `repo` with the CLI.
fn api_key(home: &Path, repo: &str) -> (String, String) {
    let out = Command::cargo_bin("sluice")
        .unwrap()
        .env("SLUICE_HOME", home)
        .args([
            "--json", "apikey", "create", "--level", "ReadOnly", "--repo", repo,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = json(&out.stdout);
    (
        created["key"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// `src.orders` with `rows` rows and an empty `dst.orders` of the same shape.
fn orders(data: &PgDb, rows: u32) {
    data.sql(&format!(
        "CREATE SCHEMA src; CREATE SCHEMA dst;
         CREATE TABLE src.orders (id int PRIMARY KEY, item text);
         INSERT INTO src.orders SELECT x, 'item ' || x FROM generate_series(1, {rows}) x;
         CREATE TABLE dst.orders (id int PRIMARY KEY, item text);"
    ));
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finding: a cancel accepted while the table's merge already ran, so the event said CANCELED and
/// the table was committed. Now the repository decides: a cancel (here through the other process)
/// while the merge runs is too late, and the run ends DONE with the table committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_while_a_table_commits_is_too_late_and_the_run_ends_done() {
    let (repo, data) = (PgDb::create("repo"), PgDb::create("data"));
    orders(&data, 2000);
    // The upsert's merge into dst.orders (its commit phase) takes 4 s.
    data.sql(
        "CREATE FUNCTION dst.slow_merge() RETURNS trigger LANGUAGE plpgsql AS
           'BEGIN PERFORM pg_sleep(4); RETURN NULL; END';
         CREATE TRIGGER slow AFTER INSERT ON dst.orders FOR EACH STATEMENT EXECUTE FUNCTION dst.slow_merge();",
    );
    let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(home_a.path(), &repo.url()).await;
    let b = serve(home_b.path(), &repo.url()).await;
    a.define(&data, &["orders"]).await;
    let ev = a.refresh(serde_json::json!({"strategy": "upsert"})).await;
    wait_until("the merge runs", Duration::from_secs(60), || {
        data.sleeping()
    })
    .await;

    let (status, text) = b
        .call(
            "POST",
            "/hubs/h/events_cancel",
            Some(serde_json::json!({"ev_ids": [ev]})),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.starts_with("F_JA0409: too late to cancel event") && text.contains("orders"),
        "{text}"
    );
    let event = a.finished(&ev, Duration::from_secs(60)).await;
    assert_eq!(event["state"], "DONE", "{event}");
    assert_eq!(result_value(&event, "orders", "Table_State"), Some("DONE"));
    assert_eq!(data.sql("SELECT count(*) FROM dst.orders"), "2000");
    assert_eq!(
        data.sql("SELECT count(*) FROM src.orders s JOIN dst.orders d USING (id, item)"),
        "2000"
    );
}

/// A multi-table refresh cancelled between tables: the committed table keeps its new rows, the
/// table being loaded is rolled back, and the event ends FAILED (never CANCELED with a committed
/// table), naming what committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_between_tables_stops_the_rest_and_ends_failed() {
    let (repo, data) = (PgDb::create("repo"), PgDb::create("data"));
    data.sql(
        "CREATE SCHEMA src; CREATE SCHEMA dst;
         CREATE TABLE src.a_fast (id int PRIMARY KEY, v text);
         INSERT INTO src.a_fast SELECT x, 'new' FROM generate_series(1, 100) x;
         CREATE TABLE dst.a_fast (id int PRIMARY KEY, v text); INSERT INTO dst.a_fast VALUES (1, 'old');
         CREATE TABLE src.b_held (id int PRIMARY KEY, v text);
         INSERT INTO src.b_held SELECT x, 'new' FROM generate_series(1, 100) x;
         CREATE TABLE dst.b_held (id int PRIMARY KEY, v text); INSERT INTO dst.b_held VALUES (1, 'old');",
    );
    let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(home_a.path(), &repo.url()).await;
    let b = serve(home_b.path(), &repo.url()).await;
    a.define(&data, &["a_fast", "b_held"]).await;
    // a_fast refreshes and commits; b_held's load waits for the lock.
    let holder = LockHolder::hold(&data, "b_held");
    let ev = a.refresh(serde_json::json!({})).await;
    wait_until("b_held waits", Duration::from_secs(60), || {
        data.waiting_for_a_lock()
    })
    .await;
    let running = a.event(&ev).await;
    assert_eq!(
        result_value(&running, "a_fast", "Table_State"),
        Some("DONE"),
        "{running}"
    );

    let (status, text) = b
        .call(
            "POST",
            "/hubs/h/events_cancel",
            Some(serde_json::json!({"ev_ids": [ev]})),
        )
        .await;
    assert_eq!(status, 204, "{text}");
    let event = a.event(&ev).await;
    assert_eq!(event["state"], "FAILED", "at once: {event}");
    let response = event["response"].as_str().unwrap();
    assert!(
        response.starts_with("canceled by a user after table(s) a_fast committed"),
        "{response}"
    );
    // Once b_held gets its lock the run sees the cancel, rolls b_held back and lets go of the job.
    drop(holder);
    let started = std::time::Instant::now();
    while a.job_state().await == "RUNNING" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run did not stop"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(a.job_state().await, "FAILED");
    let event = a.event(&ev).await;
    assert_eq!(event["state"], "FAILED", "{event}");
    assert_eq!(result_value(&event, "a_fast", "Table_State"), Some("DONE"));
    assert_eq!(
        result_value(&event, "b_held", "Table_State"),
        Some("CANCELED")
    );
    assert_eq!(
        data.sql("SELECT count(*) || ' ' || min(v) FROM dst.a_fast"),
        "100 new"
    );
    assert_eq!(data.sql("SELECT string_agg(v, ',') FROM dst.b_held"), "old");
}

/// One scenario of a killed hub: `kill` stops the hub running a slow refresh, `survivor` (a hub
/// restarted on the same repository, or the other process sharing it) must end the run FAILED
/// within 90 s of the kill with nobody submitting again.
async fn a_killed_run_ends_failed(
    what: &str,
    data: &PgDb,
    repo: &str,
    runner: Hub,
    key: (String, String),
    survivor: impl std::future::Future<Output = Hub>,
) {
    runner.define(data, &["orders"]).await;
    // The load waits for the lock: the hub is killed before the table's commit.
    let holder = LockHolder::hold(data, "orders");
    let ev = runner.refresh(serde_json::json!({})).await;
    wait_until(
        &format!("{what}: the refresh loads"),
        Duration::from_secs(60),
        || data.waiting_for_a_lock(),
    )
    .await;
    let before = runner.connector(&key).await;
    assert_eq!(
        before["status"]["sync_state"], "syncing",
        "{what}: {before}"
    );
    assert!(before["failed_at"].is_null(), "{what}: {before}");
    let mut runner = runner;
    runner.child.kill().unwrap();
    runner.child.wait().unwrap();
    let killed = std::time::Instant::now();
    let survivor = survivor.await;

    let event = survivor.finished(&ev, Duration::from_secs(90)).await;
    let after = killed.elapsed();
    assert_eq!(event["state"], "FAILED", "{what}: {event}");
    let response = event["response"].as_str().unwrap();
    assert!(
        response.starts_with("abandoned: the process running it (pid ")
            && response.contains(&format!("pid {}", runner.child.id())),
        "{what}: {response}"
    );
    assert_eq!(
        result_value(&event, "orders", "Table_State"),
        Some("FAILED"),
        "{what}: {event}"
    );
    assert_ne!(survivor.job_state().await, "RUNNING", "{what}");
    let connector = survivor.connector(&key).await;
    assert_ne!(
        connector["status"]["sync_state"], "syncing",
        "{what}: {connector}"
    );
    assert!(connector["failed_at"].is_string(), "{what}: {connector}");
    drop(holder);
    assert_eq!(
        data.sql("SELECT count(*) FROM dst.orders"),
        "0",
        "{what}: the killed load was rolled back"
    );
    eprintln!("{what}: event FAILED {after:?} after the kill (repository {repo})");
}

/// Finding: after `kill -9` of the hub running a refresh, its event stayed ACTIVE, the job RUNNING
/// and the `/v1` connector `syncing` until someone submitted again; cancelling the orphaned event
/// left the job RUNNING. Three scenarios at once (the restarted and surviving hubs of this host end
/// the run at once, its process being gone; the third waits out the 60 s heartbeat bound):
/// one hub restarted on a SQLite repository; two hubs on one PostgreSQL repository, one killed;
/// and a run of a killed hub cancelled with nobody reaping it, which frees its job at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_of_killed_hubs_end_failed_without_a_new_submit() {
    let sqlite = async {
        let data = PgDb::create("data");
        orders(&data, 1000);
        let home = tempfile::tempdir().unwrap();
        let repo = format!("sqlite:{}", home.path().join("hub.db").display());
        let runner = serve(home.path(), &repo).await;
        let key = api_key(home.path(), &repo);
        let restarted = serve(home.path(), &repo);
        a_killed_run_ends_failed("sqlite, restarted", &data, &repo, runner, key, restarted).await;
    };
    let postgres = async {
        let (repo, data) = (PgDb::create("repo"), PgDb::create("data"));
        orders(&data, 1000);
        let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let runner = serve(home_a.path(), &repo.url()).await;
        let other = serve(home_b.path(), &repo.url()).await;
        let key = api_key(home_a.path(), &repo.url());
        a_killed_run_ends_failed(
            "postgres, two processes",
            &data,
            &repo.url(),
            runner,
            key,
            async { other },
        )
        .await;
    };
    let cancel = async {
        let data = PgDb::create("data");
        orders(&data, 1000);
        let env = Env::new();
        let home = env.path(".sluice");
        let repo = format!("sqlite:{}", home.join("hub.db").display());
        let mut runner = serve(&home, &repo).await;
        runner.define(&data, &["orders"]).await;
        let holder = LockHolder::hold(&data, "orders");
        let ev = runner.refresh(serde_json::json!({})).await;
        wait_until("cancel: the refresh loads", Duration::from_secs(60), || {
            data.waiting_for_a_lock()
        })
        .await;
        runner.child.kill().unwrap();
        runner.child.wait().unwrap();
        // No hub runs any more; once the heartbeat is stale the run is an orphan.
        tokio::time::sleep(Duration::from_secs(63)).await;
        let db = home.join("hub.db");
        let job_state = || -> String {
            Connection::open(&db)
                .unwrap()
                .query_row(
                    "SELECT job_state FROM job WHERE job_name = 'shop-refr-src-tgt'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(job_state(), "RUNNING", "nobody reaped it");
        env.sluice()
            .args(["job", "cancel", "shop-refr-src-tgt"])
            .assert()
            .success();
        assert_eq!(job_state(), "SUSPEND", "the cancel freed the job at once");
        let state: String = Connection::open(&db)
            .unwrap()
            .query_row("SELECT ev_state FROM event WHERE ev_id = ?1", [&ev], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(state, "CANCELED");
        // And the job runs again at once.
        drop(holder);
        env.sluice().args(["refresh", "shop"]).assert().success();
        assert_eq!(data.sql("SELECT count(*) FROM dst.orders"), "1000");
    };
    tokio::join!(sqlite, postgres, cancel);
}

// ---- change capture on the local repository: a PostgreSQL source, a SQLite target ----

/// Definitions of hub `hub` with a PostgreSQL source `pg` (schema `src` of `data`) and a SQLite
/// target `tgt.db`, channel `shop` capturing `items`.
fn capture_definitions(hub: &str, data: &PgDb) -> String {
    capture_definitions_into(hub, data, "tgt.db")
}

/// [`capture_definitions`] with the SQLite target at `target`.
fn capture_definitions_into(hub: &str, data: &PgDb, target: &str) -> String {
    format!(
        r#"hub: {hub}
locations:
  pg: {{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, Database_Name: {db}, Database_User: postgres, Database_Schema: src, Database_Sslmode: disable}}}}
  tgt: {{class: sqlite, props: {{Database_Name: "{target}"}}}}
channels:
  shop:
    loc_groups: {{SOURCE: [pg], TARGET: [tgt]}}
    tables:
      items: {{}}
    actions:
      - {{type: Capture, loc_scope: SOURCE}}
      - {{type: Integrate, loc_scope: TARGET}}
"#,
        db = data.name
    )
}

/// Drops the slots of `hub` a failed run may leave (a database with a slot cannot be dropped).
struct Slots(String);

impl Slots {
    fn count(&self) -> String {
        psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_{}%'",
                self.0
            ),
        )
    }

    fn read(&self) -> bool {
        psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_{}%' AND active",
                self.0
            ),
        ) != "0"
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_{0}%' AND active; \
                 SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_{0}%' AND NOT active",
                self.0
            ))
            .output();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn activate_follow_status_and_deactivate_on_the_local_repository() {
    let data = PgDb::create("cdc");
    let hub = format!("h{}", &data.name[data.name.len() - 12..]);
    let slots = Slots(hub.clone());
    data.sql(
        "CREATE SCHEMA src; CREATE TABLE src.items (id bigint PRIMARY KEY, name text NOT NULL); \
         INSERT INTO src.items SELECT i, 'item ' || i FROM generate_series(1, 3) i;",
    );
    let env = Env::new();
    env.write("defs.yaml", &capture_definitions(&hub, &data));
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let target_rows = || {
        Connection::open(env.path("tgt.db"))
            .and_then(|c| c.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(-1)
    };

    // A plain activation loads the target and says where the jobs run.
    let out = env
        .sluice()
        .args(["activate", "shop", "--refresh"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("jobs shop-cap-pg, shop-integ-tgt run while a hub server runs")
            && stdout.contains("sluice serve --home")
            && stdout.contains("--follow"),
        "{stdout}"
    );
    assert_eq!(target_rows(), 3);
    assert_eq!(slots.count(), "1");
    let status = json(
        &env.sluice()
            .args(["status", "shop", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    let replication = &status[0]["replication"];
    assert_eq!(replication["state"], "active", "{status}");
    assert_eq!(replication["source"], "pg", "{status}");
    assert_eq!(replication["jobs"][0]["job"], "shop-cap-pg", "{status}");
    assert_eq!(replication["jobs"][1]["job"], "shop-integ-tgt", "{status}");
    assert!(replication["capture_lag_bytes"].is_u64(), "{status}");

    // --follow replicates in this process until Ctrl-C.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sluice"))
        .current_dir(env.dir.path())
        .env("SLUICE_HOME", env.path(".sluice"))
        .args(["activate", "shop", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the capture to read the slot", || slots.read());
    data.sql(
        "INSERT INTO src.items SELECT i, 'new ' || i FROM generate_series(4, 8) i; \
         DELETE FROM src.items WHERE id = 1;",
    );
    wait_for("the changes at the target", || target_rows() == 7);
    interrupt(&child);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("replicating in this process") && stderr.contains("stopping"),
        "{stderr}"
    );
    assert_eq!(slots.count(), "1", "Ctrl-C leaves the channel activated");

    // The figures of the run that ended, from its events.
    let status = json(
        &env.sluice()
            .args(["status", "shop", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    let jobs = &status[0]["replication"]["jobs"];
    assert_eq!(jobs[0]["rows"], 6, "{status}");
    assert_eq!(jobs[1]["rows"], 6, "{status}");
    assert!(
        jobs[1]["latency_seconds"]
            .as_f64()
            .is_some_and(|l| l >= 0.0),
        "{status}"
    );
    env.sluice()
        .args(["status", "shop"])
        .assert()
        .success()
        .stdout(predicate::str::contains("change capture: active"))
        .stdout(predicate::str::contains("shop-integ-tgt"));

    // Deactivation removes the slot; the target keeps its rows.
    env.sluice().args(["deactivate", "shop"]).assert().success();
    assert_eq!(slots.count(), "0");
    assert_eq!(target_rows(), 7);
    let status = json(
        &env.sluice()
            .args(["status", "shop", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(status[0]["replication"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activate_and_deactivate_on_a_hub_server_wait_for_their_events() {
    let data = PgDb::create("cdcremote");
    let hub = format!("h{}", &data.name[data.name.len() - 12..]);
    let slots = Slots(hub.clone());
    data.sql(
        "CREATE SCHEMA src; CREATE TABLE src.items (id bigint PRIMARY KEY, name text NOT NULL); \
         INSERT INTO src.items SELECT i, 'item ' || i FROM generate_series(1, 3) i;",
    );
    let env = Env::new();
    let target = env.path("tgt.db");
    env.write(
        "defs.yaml",
        &capture_definitions_into(&hub, &data, &target.display().to_string()),
    );
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let repo = format!("sqlite:{}", env.path(".sluice").join("hub.db").display());
    let server = serve(&env.path(".sluice"), &repo).await;
    let url = server.url.clone();
    common::cli_login(env.sluice(), &url, ADMIN_PASSWORD);
    let target_rows = || {
        Connection::open(&target)
            .and_then(|c| c.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(-1)
    };

    let out = env
        .sluice()
        .args(["activate", "shop", "--refresh", "--wait", "--hub", &url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Channel shop activated") && stdout.contains("run on the hub server"),
        "{stdout}"
    );
    assert_eq!(target_rows(), 3);
    // The server replicates by itself.
    wait_for("the server to read the slot", || slots.read());
    data.sql("INSERT INTO src.items VALUES (4, 'four'), (5, 'five')");
    wait_for("the changes at the target", || target_rows() == 5);
    env.sluice()
        .args(["activate", "shop", "--follow", "--hub", &url])
        .assert()
        .failure()
        .stderr(predicate::str::contains("leave out --hub"));

    env.sluice()
        .args(["deactivate", "shop", "--wait", "--hub", &url])
        .assert()
        .success()
        .stdout(predicate::str::contains("Channel shop deactivated"));
    assert_eq!(slots.count(), "0");
    drop(server);
}

/// After `sluice login` the commands without --hub work on that hub server, until `sluice
/// logout`; --home (or SLUICE_HOME) still names a local repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_makes_its_hub_server_the_default_until_logout() {
    let env = Env::new();
    env.setup("tgt.db");
    let repo = format!("sqlite:{}", env.path(".sluice").join("hub.db").display());
    let server = serve(&env.path(".sluice"), &repo).await;
    let url = server.url.clone();
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let there = || {
        let mut cmd = env.sluice();
        cmd.env_remove("SLUICE_HOME").current_dir(&elsewhere);
        cmd
    };
    let out = there()
        .args([
            "login",
            "--hub",
            &url,
            "--user",
            "admin",
            "--password-stdin",
        ])
        .write_stdin(format!("{ADMIN_PASSWORD}\n"))
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("until `sluice logout`"),
        "{out:?}"
    );
    // Reading, running and exporting go to the server; nothing is created here.
    there()
        .args(["channel", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("shop"));
    there()
        .args(["refresh", "shop", "--wait"])
        .assert()
        .success();
    assert_eq!(
        env.rows("tgt.db", "SELECT item FROM orders WHERE id = 1"),
        vec!["tea"]
    );
    there()
        .args(["export"])
        .assert()
        .success()
        .stdout(predicate::str::contains("hub: test"));
    assert!(!elsewhere.join(".sluice").exists());
    // --home names a local repository: the command works there.
    there()
        .args(["channel", "list", "--home", ".sluice"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no sluice repository here"));
    // With a local repository here, the server still wins, and the command says so.
    env.write("elsewhere/defs.yaml", &definitions("tgt2.db"));
    there()
        .args(["apply", "defs.yaml", "--home", ".sluice"])
        .assert()
        .success();
    there()
        .args(["channel", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "note: working on the hub server {url} (logged in)"
        )));
    // After logout the commands work locally again.
    there()
        .args(["logout"])
        .assert()
        .success()
        .stdout(predicate::str::contains("local repository again"));
    there()
        .args(["channel", "list"])
        .assert()
        .success()
        .stderr("");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_channels_on_a_hub_server_posts_and_waits_for_every_channel() {
    let env = Env::new();
    batch_setup(&env);
    let repo = format!("sqlite:{}", env.path(".sluice").join("hub.db").display());
    let server = serve(&env.path(".sluice"), &repo).await;
    let url = server.url.clone();
    common::cli_login(env.sluice(), &url, ADMIN_PASSWORD);

    let out = env
        .sluice()
        .args([
            "refresh",
            "--channels",
            "sales_[ab]",
            "--wait",
            "--json",
            "--hub",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = json(&out.stdout);
    let channels = answer["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2, "{answer}");
    for c in channels {
        assert_eq!(c["state"], "DONE", "{c}");
    }
    for db in ["a.db", "b.db"] {
        assert_eq!(
            env.rows(db, "SELECT item FROM orders WHERE id = 1"),
            vec!["tea"],
            "{db}"
        );
    }
    // With --wait a channel that fails makes the command fail.
    let out = env
        .sluice()
        .args([
            "compare",
            "--channels",
            "sales_*",
            "--parallel",
            "1",
            "--wait",
            "--hub",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("sales_x") && l.contains("FAILED")),
        "{stdout}"
    );
    // A pattern matching nothing is invalid input.
    env.sluice()
        .args(["refresh", "--channels", "hr_*", "--hub", &url])
        .assert()
        .failure()
        .code(2)
        .stderr(predicate::str::contains("no channel matches"));
    drop(server);
}

/// Hub `a` refreshes x.db → y.db, hub `b` y.db (spelled `./y.db`) → z.db.
fn lineage_hubs(env: &Env) {
    env.sql(
        "x.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
    );
    env.sql("y.db", "");
    env.sql("z.db", "");
    let defs = |hub: &str, channel: &str, (s, sdb): (&str, &str), (t, tdb): (&str, &str)| {
        format!(
            "hub: {hub}\nlocations:\n  {s}: {{class: sqlite, props: {{Database_Name: {sdb}}}}}\n  {t}: {{class: sqlite, props: {{Database_Name: {tdb}}}}}\n\
             channels:\n  {channel}:\n    loc_groups: {{SOURCE: [{s}], TARGET: [{t}]}}\n    tables: {{t: {{}}}}\n\
             \x20   actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]\n"
        )
    };
    env.write("a.yaml", &defs("a", "ca", ("ax", "x.db"), ("ay", "y.db")));
    env.write("b.yaml", &defs("b", "cb", ("by", "./y.db"), ("bz", "z.db")));
    for file in ["a.yaml", "b.yaml"] {
        env.sluice().args(["apply", file]).assert().success();
    }
    env.sluice()
        .args(["refresh", "ca", "--hub-name", "a"])
        .assert()
        .success();
}

#[test]
fn lineage_shows_a_chain_across_hubs_as_a_table_json_and_dot() {
    let env = Env::new();
    lineage_hubs(&env);

    let out = env.sluice().arg("lineage").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |channel: &str| {
        text.lines()
            .find(|l| l.contains(&format!(" {channel} ")))
            .unwrap_or_else(|| panic!("no row of {channel} in {text}"))
            .to_owned()
    };
    let (ca, cb) = (line("ca"), line("cb"));
    assert!(
        ca.contains("ax: t → ay, by: t") && ca.contains(" done ") && ca.contains("refresh DONE"),
        "{ca}"
    );
    assert!(
        cb.contains("ay, by: t → bz: t") && cb.contains(" never "),
        "{cb}"
    );

    let value = json(
        &env.sluice()
            .args(["lineage", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    let nodes = value["nodes"].as_array().unwrap();
    let edges = value["edges"].as_array().unwrap();
    assert_eq!((nodes.len(), edges.len()), (3, 2), "{value}");
    let y = &nodes[1];
    assert_eq!(y["depth"], 1);
    assert_eq!(y["label"], "ay, by: t");
    assert_eq!(
        y["locations"][1],
        serde_json::json!({"hub": "b", "location": "by"})
    );
    assert!(y["database"].as_str().unwrap().starts_with("sqlite:///"));
    let ca = edges.iter().find(|e| e["channel"] == "ca").unwrap();
    assert_eq!(ca["target"], y["id"]);
    assert_eq!(ca["state"], "done");
    assert_eq!(ca["last_run"]["kind"], "refresh");
    assert_eq!(ca["last_run"]["state"], "DONE");
    let cb = edges.iter().find(|e| e["channel"] == "cb").unwrap();
    assert_eq!(cb["source"], y["id"]);
    assert_eq!(cb["state"], "never");
    assert!(cb["last_run"].is_null());

    // DOT: one statement per line, every id a quoted string that names a declared node.
    let out = env.sluice().args(["lineage", "--dot"]).output().unwrap();
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = dot.lines().collect();
    assert_eq!(lines.first(), Some(&"digraph lineage {"));
    assert_eq!(lines.last(), Some(&"}"));
    let quoted = |s: &str| -> Vec<String> {
        // The quoted strings of a statement, unescaped.
        let mut out = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '"' {
                let mut text = String::new();
                loop {
                    match chars.next().expect("an unterminated string") {
                        '\\' => text.push(chars.next().unwrap()),
                        '"' => break,
                        c => text.push(c),
                    }
                }
                out.push(text);
            }
        }
        out
    };
    let declared: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(" [label=") && !l.contains(" -> "))
        .map(|l| quoted(l)[0].clone())
        .collect();
    assert_eq!(declared.len(), 3);
    let arrows: Vec<&&str> = lines.iter().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(arrows.len(), 2);
    for arrow in arrows {
        assert!(
            arrow.trim_start().starts_with('"') && arrow.ends_with("];"),
            "{arrow}"
        );
        let q = quoted(arrow);
        assert!(
            declared.contains(&q[0]) && declared.contains(&q[1]),
            "{arrow}"
        );
    }
    assert!(dot.contains(r#"label="a/ca""#) && dot.contains(r#"label="b/cb""#));

    // --json and --dot together is a usage error.
    env.sluice()
        .args(["lineage", "--json", "--dot"])
        .assert()
        .code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_of_a_hub_server_is_the_same_graph() {
    let env = Env::new();
    lineage_hubs(&env);
    let local = json(
        &env.sluice()
            .args(["lineage", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    let repo = format!("sqlite:{}", env.path(".sluice").join("hub.db").display());
    let server = serve(&env.path(".sluice"), &repo).await;
    common::cli_login(env.sluice(), &server.url, ADMIN_PASSWORD);
    let out = env
        .sluice()
        .args(["lineage", "--json", "--hub", &server.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out.stdout), local);
    let out = env
        .sluice()
        .args(["lineage", "--dot", "--hub", &server.url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"label="b/cb""#));
}

/// The archives `sluice backup` and rolling backups wrote into `dir`, by name.
fn backups_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("sluice-backup-") && n.ends_with(".tar.gz"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn backup_then_restore_shows_the_plan_asks_and_brings_the_hub_back() {
    let env = Env::new();
    env.setup("tgt.db");
    let out = env
        .sluice()
        .args(["backup", "--dir", "bk"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = env
        .dir
        .path()
        .join(String::from_utf8_lossy(&out.stdout).trim())
        .display()
        .to_string();
    assert_eq!(backups_in(&env.path("bk")).len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path}");
    }
    let before = env
        .sluice()
        .args(["--json", "channel", "export"])
        .output()
        .unwrap();
    env.sluice()
        .args(["channel", "delete", "shop"])
        .assert()
        .success();

    // A damaged archive is refused; nothing changes.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 10);
    env.write("bad.tar.gz", "");
    std::fs::write(env.path("bad.tar.gz"), &bytes).unwrap();
    env.sluice()
        .args(["restore", "bad.tar.gz", "--auto-approve"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("corrupted or truncated"));
    // Without a terminal and without --auto-approve: the plan, then a refusal.
    env.sluice()
        .args(["restore", &path])
        .write_stdin("yes\n")
        .assert()
        .failure()
        .stdout(predicate::str::contains("+ add channel shop"))
        .stderr(predicate::str::contains("--auto-approve"));
    env.sluice()
        .args(["channel", "show", "shop"])
        .assert()
        .failure();

    env.sluice()
        .args(["restore", &path, "--auto-approve"])
        .assert()
        .success()
        .stdout(predicate::str::contains("+ add channel shop"));
    let after = env
        .sluice()
        .args(["--json", "channel", "export"])
        .output()
        .unwrap();
    assert_eq!(json(&after.stdout), json(&before.stdout));
    // Again: nothing to restore (with --json: one document, the plan and no outcome).
    env.sluice()
        .args(["restore", &path])
        .assert()
        .success()
        .stderr(predicate::str::contains("nothing to restore"));
    let out = env
        .sluice()
        .args(["--json", "restore", &path])
        .output()
        .unwrap();
    let answer = json(&out.stdout);
    assert_eq!(answer["plan"]["hubs"][0]["hub"], "test", "{answer}");
    assert!(answer["restored"].is_null(), "{answer}");
}

#[test]
fn serve_keeps_the_newest_rolling_backups_and_leaves_other_files() {
    let env = Env::new();
    env.setup("tgt.db");
    let dir = env.path("rolling");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--backup-every", "1s"])
        .args(["--backup-keep", "2", "--backup-dir"])
        .arg(&dir)
        .env("SLUICE_HOME", env.path(".sluice"))
        .env("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Three or more written (a second apart), two kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 4 && std::time::Instant::now() < deadline {
        seen.extend(backups_in(&dir));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let kept = backups_in(&dir);
    seen.extend(kept.iter().cloned());
    assert!(seen.len() >= 4, "rolling backups were written: {seen:?}");
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(
        kept,
        seen.iter().rev().take(2).rev().cloned().collect::<Vec<_>>(),
        "the newest are kept"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_through_a_hub_server() {
    let env = Env::new();
    // Locations inside the server's data directory, so the server's location policy accepts them
    // when the archive's definitions come back over the API.
    let data = env.path(".sluice").join("data");
    std::fs::create_dir_all(&data).unwrap();
    env.sql(
        ".sluice/data/src.db",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT);",
    );
    env.sql(".sluice/data/tgt.db", "");
    env.write(
        "defs.yaml",
        &format!(
            "hub: test\nlocations:\n  src: {{class: sqlite, props: {{Database_Name: \"{}\"}}}}\n  \
             tgt: {{class: sqlite, props: {{Database_Name: \"{}\"}}}}\nchannels:\n  shop:\n    \
             loc_groups: {{SOURCE: [src], TARGET: [tgt]}}\n    tables: {{orders: {{}}}}\n    \
             actions:\n      - {{type: Capture, loc_scope: SOURCE}}\n      - {{type: Integrate, loc_scope: TARGET}}\n",
            data.join("src.db").display(),
            data.join("tgt.db").display()
        ),
    );
    env.sluice().args(["apply", "defs.yaml"]).assert().success();
    let repo = format!("sqlite:{}", env.path(".sluice").join("hub.db").display());
    let server = serve(&env.path(".sluice"), &repo).await;
    let url = server.url.clone();
    common::cli_login(env.sluice(), &url, ADMIN_PASSWORD);
    let out = env
        .sluice()
        .args(["--hub", &url, "backup", "--dir", "bk", "--with-users"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = backups_in(&env.path("bk"));
    assert_eq!(names.len(), 1, "{names:?}");
    let path = env.path("bk").join(&names[0]).display().to_string();
    env.sluice()
        .args(["--hub", &url, "channel", "delete", "shop"])
        .assert()
        .success();
    env.sluice()
        .args(["--hub", &url, "restore", &path, "--auto-approve"])
        .assert()
        .success()
        .stdout(predicate::str::contains("+ add channel shop"));
    env.sluice()
        .args(["--hub", &url, "channel", "show", "shop"])
        .assert()
        .success();
    drop(server);
}

/// The lines `sluice serve` writes up to its dashboard line, started on `home` with `password`
/// as `SLUICE_ADMIN_PASSWORD`; the process is killed afterwards.
fn startup_lines(home: &Path, password: &str) -> Vec<String> {
    let (mut child, rx) = common::spawn_serve(home, &[], password, None);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let last = line.starts_with("dashboard: ");
        lines.push(line);
        if last {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// The start-up lines name the dashboard, `/` leads to it, and a restart with another
/// `SLUICE_ADMIN_PASSWORD` says that it was not used (the admin keeps its password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_announces_its_dashboard_and_warns_of_an_unused_admin_password() {
    let env = Env::new();
    let home = env.path(".sluice");
    let lines = startup_lines(&home, ADMIN_PASSWORD);
    let url = lines
        .iter()
        .find_map(|l| l.split("listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("a listening line in {lines:?}"))
        .to_owned();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("dashboard: {url}/ui (log in with a hub user)").as_str()),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("SLUICE_ADMIN_PASSWORD is not")),
        "{lines:?}"
    );
    // Started again with the admin's own password: nothing to warn about.
    let lines = startup_lines(&home, ADMIN_PASSWORD);
    assert!(
        lines.last().is_some_and(|l| l.starts_with("dashboard: ")),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("warning: SLUICE_ADMIN_PASSWORD")),
        "{lines:?}"
    );

    let hub = common::serve(&home, &[], ADMIN_PASSWORD, None).await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = plain.get(format!("{}/", hub.url)).send().await.unwrap();
    assert_eq!(root.status().as_u16(), 307);
    assert_eq!(root.headers()["location"], "/ui");
    drop(hub);

    let lines = startup_lines(&home, "another-password-456");
    assert!(
        lines
            .iter()
            .any(|l| l
                .starts_with("warning: SLUICE_ADMIN_PASSWORD is not the password of user admin")),
        "{lines:?}"
    );
    // The admin's password is still the first one.
    let hub = common::serve(&home, &[], ADMIN_PASSWORD, None).await;
    assert!(!hub.token.is_empty());
}
