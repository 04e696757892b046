//! A bounded run of `sluice bench --suite hub` (2,000 rows, one round, every case, `scale` at
//! 200 and 2,000 rows) against the real PostgreSQL and MariaDB servers and sling: a `sluice serve`
//! child process, refreshes and compares through its HTTP API, and every reference pipeline, each
//! checked by the suite itself (row counts, the reference's rows equal to the source's, sling and
//! sluice moving exactly the new rows, compares finding the copies identical). sling comes from
//! `$SLING_BINARY` (scripts/test installs it with scripts/sling). Databases `sluice_bench_hub*`
//! are replaced.

use std::process::Command;

use serde_json::Value;

/// `HOST:PORT` of `postgres://USER@HOST:PORT[/DB][?…]`.
fn pg_host_port() -> String {
    let server = sluice_test_support::pg_server();
    let rest = server.split_once("://").map_or(server.as_str(), |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, hp)| hp).to_owned()
}

fn mariadb_host_port() -> String {
    let env = |name: &str| std::env::var(format!("SLUICE_TEST_MARIADB_{name}")).ok();
    format!(
        "{}:{}",
        env("HOST").unwrap_or_else(|| "127.0.0.1".into()),
        env("PORT").unwrap_or_else(|| "3306".into())
    )
}

#[test]
fn the_hub_suite_measures_every_case_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("sluice"))
        .args([
            "--json",
            "bench",
            "--suite",
            "hub",
            "--rows",
            "2000",
            "--runs",
            "1",
            "--cases",
            "pg-pg,mariadb-pg,pg-mariadb,compare,incremental,scale",
            "--postgres",
            &pg_host_port(),
            "--mariadb",
            &mariadb_host_port(),
            "--dir",
        ])
        .arg(dir.path())
        .env("SLUICE_HOME", dir.path().join(".sluice"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the hub suite failed (PostgreSQL, MariaDB and sling must be there: scripts/services, \
         scripts/sling): {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let cases = report["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(cases.len(), 5, "{names:?}");
    for c in cases {
        assert_eq!(c["rounds"], 1, "{c}");
        assert!(c["sluice_seconds"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["server_peak_rss_mb"].as_f64().unwrap() > 1.0, "{c}");
        // Every case has a reference and a ratio (the compare's is the same compare with
        // pushdown off).
        assert!(c["ratio"].is_number(), "{c}");
        assert!(c["reference_seconds"].is_number(), "{c}");
    }
    let incremental = cases
        .iter()
        .find(|c| c["case"].as_str().unwrap().contains("incremental"))
        .unwrap();
    assert_eq!(
        incremental["rows"], 20,
        "1 % of 2,000 new rows: {incremental}"
    );
    let scale = report["scale"].as_array().unwrap();
    // Nine engine pairs, each refreshed and compared.
    assert_eq!(scale.len(), 18, "{scale:?}");
    for s in scale {
        assert_eq!(s["rows"], 2000, "{s}");
        assert_eq!(s["base_rows"], 200, "{s}");
        assert!(s["linearity"].as_f64().unwrap().is_finite(), "{s}");
    }
}
