//! The `sluice` binary end to end on real SQLite files: the happy path, dry runs, and bad input that
//! must give a one-line error naming the object, a non-zero exit code, and leave the target as it was.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use rusqlite::Connection;

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
