//! Definitions as code end to end: `sluice render`, `plan`, `apply` and `export` on the local
//! repository and against hub servers (one on a SQLite repository, one on a PostgreSQL one), with
//! environment overlays, drift after an edit through the API, prune, and stale plans.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Value, json};
use sluice_test_support::TestDatabase;

mod common;

const ADMIN_PASSWORD: &str = "defs-test-password";

/// A directory with the definitions files, a config dir for sessions and a local repository.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(env.path("envs")).unwrap();
        env.write("sluice.yaml", BASE);
        env.write("envs/dev.yaml", DEV);
        env.write("envs/prod.yaml", PROD);
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn sluice(&self) -> Command {
        let mut cmd = Command::cargo_bin("sluice").unwrap();
        cmd.current_dir(self.dir.path())
            .env("SLUICE_HOME", self.path(".sluice"))
            .env_remove("SLUICE_HUB_NAME")
            .env_remove("SLUICE_HUB")
            .env_remove("SLUICE_PASSWORD")
            .env("SLUICE_CONFIG_DIR", self.path("config"))
            .env("SLUICE_USER", "tester")
            .timeout(Duration::from_secs(120));
        cmd
    }

    /// Runs `sluice ARGS`; the exit code, stdout and stderr.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.sluice().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `sluice ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "sluice {args:?} failed: {out}\n{err}");
        out
    }

    fn login(&self, hub: &Hub) {
        common::cli_login(self.sluice(), &hub.url, ADMIN_PASSWORD);
    }

    /// The hub's definitions as `sluice export --json` prints them (the document).
    fn export(&self, hub: &Hub, hub_name: &str) -> Value {
        let out = self.ok(&[
            "export",
            "--hub",
            &hub.url,
            "--hub-name",
            hub_name,
            "--format",
            "json",
        ]);
        serde_json::from_str(&out).unwrap()
    }
}

const BASE: &str = r#"
hub: {name: shop, description: the shop}
locations:
  src: {class: sqlite, props: {Database_Name: src.db}}
  dst: {class: sqlite, props: {Database_Name: dst.db}}
channels:
  sales:
    loc_groups: {SOURCE: [src], TARGET: [dst]}
    tables: {orders: {}, audit: {}}
    actions:
      - {type: Capture, loc_scope: SOURCE}
      - {type: Integrate, loc_scope: TARGET}
  stock:
    loc_groups: {SOURCE: [src], TARGET: [dst]}
    tables: {items: {}}
    actions:
      - {type: Capture, loc_scope: SOURCE}
      - {type: Integrate, loc_scope: TARGET}
"#;

const DEV: &str = r#"
hub: {name: shop_dev, description: development}
locations:
  dst: {props: {Database_Name: dev_dst.db}}
"#;

const PROD: &str = r#"
hub: {name: shop_prod, description: production}
rename: {locations: {dst: warehouse}}
locations:
  warehouse: {props: {Database_Name: prod_wh.db}}
channels:
  sales:
    tables: {audit: null}
    actions_add:
      - {type: Restrict, loc_scope: SOURCE, table_scope: orders, params: {RefreshCondition: "id > 0"}}
"#;

/// A `sluice serve` process, logged in as admin; killed when dropped.
type Hub = common::Served;

/// Starts `sluice serve` on `repo` (`None`: the SQLite repository in `home`) and logs in.
async fn serve(home: &Path, repo: Option<&str>) -> Hub {
    let args: Vec<&str> = repo.map(|r| vec!["--repo", r]).unwrap_or_default();
    common::serve(home, &args, ADMIN_PASSWORD, None).await
}

impl Hub {
    /// Calls the API as admin: the status.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> u16 {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The file name of a stored SQLite path (servers keep them absolute, in their data directory).
fn file_name(doc: &Value, loc: &str) -> String {
    let path = doc["locations"][loc]["props"]["Database_Name"]
        .as_str()
        .unwrap_or_else(|| panic!("location {loc} in {doc:#}"));
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn names(doc: &Value, section: &str) -> Vec<String> {
    doc[section]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The (kind, name, action) of each planned change.
fn changes(plan: &Value) -> Vec<(String, String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn triple(kind: &str, name: &str, action: &str) -> (String, String, String) {
    (kind.into(), name.into(), action.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn overlays_apply_to_a_sqlite_and_a_postgres_hub_and_plans_track_drift_prune_and_staleness() {
    let env = Env::new();
    let pg_repo = TestDatabase::create("sluice_defs_repo_").await;
    let a_home = env.path("hub_a");
    let b_home = env.path("hub_b");
    let (a, b) = tokio::join!(serve(&a_home, None), serve(&b_home, Some(&pg_repo.url)));
    env.login(&a);
    env.login(&b);

    // Render shows the merged prod document without touching a hub.
    let rendered: Value = serde_json::from_str(&env.ok(&[
        "render",
        "sluice.yaml",
        "--env",
        "prod",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(rendered["hub"]["name"], "shop_prod");
    assert_eq!(names(&rendered, "locations"), ["src", "warehouse"]);

    // dev → hub server A (SQLite repository), prod → hub server B (PostgreSQL repository).
    let (code, out, err) = env.run(&["plan", "sluice.yaml", "--env", "dev", "--hub", &a.url]);
    assert_eq!(code, 3, "a plan with changes exits 3: {out}\n{err}");
    assert!(out.contains("+ add hub shop_dev"), "{out}");
    env.ok(&[
        "apply",
        "sluice.yaml",
        "--env",
        "dev",
        "--hub",
        &a.url,
        "--auto-approve",
    ]);
    env.ok(&[
        "apply",
        "sluice.yaml",
        "--env",
        "prod",
        "--hub",
        &b.url,
        "--auto-approve",
    ]);

    let dev = env.export(&a, "shop_dev");
    assert_eq!(
        dev["hub"],
        json!({"name": "shop_dev", "description": "development"})
    );
    assert_eq!(names(&dev, "locations"), ["dst", "src"]);
    assert_eq!(file_name(&dev, "dst"), "dev_dst.db");
    assert_eq!(names(&dev, "channels"), ["sales", "stock"]);
    assert_eq!(
        names(&dev["channels"]["sales"], "tables"),
        ["audit", "orders"]
    );

    let prod = env.export(&b, "shop_prod");
    assert_eq!(
        prod["hub"],
        json!({"name": "shop_prod", "description": "production"})
    );
    assert_eq!(names(&prod, "locations"), ["src", "warehouse"]);
    assert_eq!(file_name(&prod, "warehouse"), "prod_wh.db");
    assert_eq!(names(&prod["channels"]["sales"], "tables"), ["orders"]);
    assert_eq!(
        prod["channels"]["sales"]["loc_groups"]["TARGET"]["members"],
        json!(["warehouse"])
    );
    let actions = prod["channels"]["sales"]["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|a| a["type"] == "Restrict"
            && a["params"]["RefreshCondition"] == "id > 0"
            && a["table_scope"] == "orders"),
        "{actions:#?}"
    );

    // Applied as written: both plans are empty now.
    for (hub, e) in [(&a, "dev"), (&b, "prod")] {
        let (code, out, err) = env.run(&["plan", "sluice.yaml", "--env", e, "--hub", &hub.url]);
        assert_eq!(code, 0, "{e}: {out}\n{err}");
        assert!(out.contains("no changes"), "{out}");
    }

    // An edit through the API (as the dashboard makes it): the plan shows exactly that field,
    // and the drift report names the object and the event.
    let status = b
        .call(
            reqwest::Method::PATCH,
            "/api/latest/hubs/shop_prod/definition/locs/warehouse/props",
            json!({"Database_Name": "edited.db"}),
        )
        .await;
    assert_eq!(status, 204);
    let (code, out, err) = env.run(&[
        "plan",
        "sluice.yaml",
        "--env",
        "prod",
        "--hub",
        &b.url,
        "--json",
    ]);
    assert_eq!(code, 3, "{out}\n{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(changes(&plan), [triple("location", "warehouse", "change")]);
    let fields = plan["changes"][0]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], "props.Database_Name");
    assert!(fields[0]["before"].as_str().unwrap().ends_with("edited.db"));
    assert!(fields[0]["after"].as_str().unwrap().ends_with("prod_wh.db"));
    let drift = &plan["drift"];
    assert_eq!(
        drift["objects"],
        json!([{"kind": "location", "name": "warehouse", "drift": "changed"}])
    );
    assert_eq!(drift["since"]["source"], "sluice.yaml");
    let events = drift["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["user"], "admin");
    assert!(
        events[0]["description"]
            .as_str()
            .unwrap()
            .contains("warehouse"),
        "{events:#?}"
    );

    // A saved plan is refused once the hub changed after it was made; nothing changes.
    let (code, _, err) = env.run(&[
        "plan",
        "sluice.yaml",
        "--env",
        "prod",
        "--hub",
        &b.url,
        "--out",
        "prod-plan.json",
    ]);
    assert_eq!(code, 3, "{err}");
    let status = b
        .call(
            reqwest::Method::PATCH,
            "/api/latest/hubs/shop_prod/definition/locs/src/props",
            json!({"Database_Name": "moved.db"}),
        )
        .await;
    assert_eq!(status, 204);
    let before = env.export(&b, "shop_prod");
    let (code, out, err) = env.run(&["apply", "prod-plan.json", "--hub", &b.url]);
    assert_eq!(code, 4, "a stale plan exits 4: {out}\n{err}");
    assert!(err.contains("changed since the plan"), "{err}");
    assert_eq!(
        env.export(&b, "shop_prod"),
        before,
        "a refused apply changes nothing"
    );

    // Applying the file again puts both locations back.
    env.ok(&[
        "apply",
        "sluice.yaml",
        "--env",
        "prod",
        "--hub",
        &b.url,
        "--auto-approve",
    ]);
    let prod_again = env.export(&b, "shop_prod");
    assert_eq!(prod_again, prod);

    // Prune: a channel dropped from the file is removed only with --prune.
    env.write("envs/prod.yaml", &format!("{PROD}  stock: null\n"));
    let (code, out, _) = env.run(&[
        "plan",
        "sluice.yaml",
        "--env",
        "prod",
        "--hub",
        &b.url,
        "--json",
    ]);
    assert_eq!(
        code, 0,
        "without --prune the channel is only listed as kept: {out}"
    );
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["unmanaged"], json!(["channel stock"]));
    let (code, out, _) = env.run(&[
        "plan",
        "sluice.yaml",
        "--env",
        "prod",
        "--prune",
        "--hub",
        &b.url,
        "--json",
    ]);
    assert_eq!(code, 3);
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(changes(&plan), [triple("channel", "stock", "remove")]);
    env.ok(&[
        "apply",
        "sluice.yaml",
        "--env",
        "prod",
        "--prune",
        "--hub",
        &b.url,
        "--auto-approve",
    ]);
    assert_eq!(names(&env.export(&b, "shop_prod"), "channels"), ["sales"]);

    // Round trip: an export applied to an empty hub reproduces it (on the same server: its
    // SQLite files must stay in its data directory).
    let mut exported = env.export(&a, "shop_dev");
    exported["hub"]["name"] = json!("shop_copy");
    env.write("exported.json", &serde_json::to_string(&exported).unwrap());
    let (code, out, err) = env.run(&["apply", "exported.json", "--hub", &a.url, "--auto-approve"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.export(&a, "shop_copy"), exported);
}

#[test]
fn local_plan_apply_and_export_round_trip_with_secrets_as_references() {
    let env = Env::new();
    // Plan → exit 3 → apply → plan exit 0.
    let (code, out, _) = env.run(&["plan", "sluice.yaml", "--env", "dev"]);
    assert_eq!(code, 3, "{out}");
    env.ok(&["apply", "sluice.yaml", "--env", "dev"]);
    let (code, out, _) = env.run(&["plan", "sluice.yaml", "--env", "dev"]);
    assert_eq!(code, 0, "{out}");

    // A location with a password reference exports as the reference, and the export applies
    // back to a fresh repository as the same definitions.
    env.write(
        "pg.yaml",
        "hub: shop_dev\nlocations:\n  pg: {class: postgresql, props: {Database_Host: 127.0.0.1, Database_Name: shop, Database_User: app, Database_Password: '${SHOP_PG_PASSWORD}'}}\n",
    );
    env.ok(&["apply", "pg.yaml"]);
    let exported = env.ok(&["export", "--hub-name", "shop_dev"]);
    assert!(exported.contains("${SHOP_PG_PASSWORD}"), "{exported}");
    env.write("exported.yaml", &exported);
    let fresh = env.path("fresh");
    let apply_fresh = |args: &[&str]| {
        let out = env
            .sluice()
            .env("SLUICE_HOME", &fresh)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    apply_fresh(&["apply", "exported.yaml"]);
    assert_eq!(apply_fresh(&["export", "--hub-name", "shop_dev"]), exported);

    // --channels exports the chosen channels and only the locations they use.
    let only: Value = serde_json::from_str(&env.ok(&[
        "export",
        "--hub-name",
        "shop_dev",
        "--channels",
        "st*",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(names(&only, "channels"), ["stock"]);
    assert_eq!(names(&only, "locations"), ["dst", "src"]);
    let (code, _, err) = env.run(&["export", "--hub-name", "shop_dev", "--channels", "nope_*"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no channel matches"), "{err}");
}

#[test]
fn bad_overlays_and_environments_are_clear_errors_that_change_nothing() {
    let env = Env::new();
    env.write(
        "envs/broken.yaml",
        "hub: x\nrename: {locations: {ghost: g2}}\nchannels: {sales: {actions_drop: [{type: Transform}]}}\n",
    );
    let (code, _, err) = env.run(&["plan", "sluice.yaml", "--env", "broken"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rename.locations.ghost"), "{err}");
    assert!(err.contains("actions_drop[0]: matches no action"), "{err}");
    let (code, _, err) = env.run(&["apply", "sluice.yaml", "--env", "../etc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a plain name"), "{err}");
    let (code, _, err) = env.run(&["render", "sluice.yaml", "--env", "staging"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no overlay"), "{err}");
    // Nothing was stored by any of them.
    let (code, _, err) = env.run(&["channel", "list", "--hub-name", "shop_dev"]);
    assert_ne!(code, 0, "{err}");
}
