//! HVR conformance: the hub server, the repository, the wallet, hub props and snapshots.

use super::*;

async fn props(api: &Api, path: &str) -> Value {
    api.call("GET", path, None).await.expect(200).json()
}

#[tokio::test]
async fn hub_server_props_answer_the_configuration_keep_documented_ones_and_refuse_the_rest() {
    let api = Api::start(false).await;
    let p = props(&api, "/api/v6.1.0.3/hubserver/props").await;
    let port: u16 = api.hub.base().rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(p["HTTP_Port"], json!(port), "{p}");
    assert_eq!(p["Repository_Class"], "sqlite");
    assert_eq!(p["Database_Name"], "hub.db", "the file's name only: {p}");
    assert!(
        p["Hub_Server_HVR_Version"]
            .as_str()
            .unwrap()
            .starts_with("sluice")
    );

    // Documented props are kept; a write of what a configured prop is changes nothing.
    api.call(
        "PATCH",
        "/api/latest/hubserver/props",
        Some(json!({"Worker_Age": 120, "Public_Host": "hub.example:4340", "HTTP_Port": port})),
    )
    .await
    .expect(204);
    let p = props(
        &api,
        "/api/latest/hubserver/props?fetch=Worker_Age&fetch=HTTP_Port",
    )
    .await;
    assert_eq!(p, json!({"Worker_Age": 120, "HTTP_Port": port}));

    // Refused, each with a 400 naming the prop, and nothing changes.
    for (body, says) in [
        (json!({"HTTP_Port": 1}), "HTTP_Port"),
        (json!({"No_Such_Prop": 1}), "No_Such_Prop"),
        (json!({"Database_Password": "x"}), "Database_Password"),
        (json!({"Hub_Server_Platform": "x"}), "Hub_Server_Platform"),
        (json!({"Worker_Idle": [1, 2]}), "Worker_Idle"),
        (
            json!({"Worker_Idle": 5, "Repository_Class": "postgresql"}),
            "Repository_Class",
        ),
    ] {
        let a = api
            .call("PATCH", "/api/latest/hubserver/props", Some(body))
            .await
            .expect(400);
        assert!(
            a.text.starts_with("F_") && a.text.contains(says),
            "{}",
            a.text
        );
    }
    let p = props(&api, "/api/latest/hubserver/props").await;
    assert!(p.get("Worker_Idle").is_none(), "{p}");

    // A ReadOnly user reads but cannot change.
    let ro = api.user("viewer", "ReadOnly").await;
    for (method, path, body) in [
        (
            "PATCH",
            "/api/latest/hubserver/props",
            json!({"Worker_Age": 1}),
        ),
        ("PUT", "/api/latest/hubserver/props", json!({})),
        (
            "POST",
            "/api/latest/hubserver/props_delete",
            json!({"props": ["Worker_Age"]}),
        ),
        (
            "POST",
            "/api/latest/hubserver/props_test",
            json!({"props": {}}),
        ),
    ] {
        api.call_as(Some(&ro), method, path, Some(body))
            .await
            .expect(403);
    }
    api.call_as(Some(&ro), "GET", "/api/latest/hubserver/props", None)
        .await
        .expect(200);
    assert_eq!(
        props(&api, "/api/latest/hubserver/props").await["Worker_Age"],
        120
    );

    // props_delete, then PUT replaces what is kept.
    api.call(
        "POST",
        "/api/latest/hubserver/props_delete",
        Some(json!({"props": ["Worker_Age"]})),
    )
    .await
    .expect(204);
    let p = props(&api, "/api/latest/hubserver/props").await;
    assert!(p.get("Worker_Age").is_none() && p["Public_Host"] == "hub.example:4340");
    let mut put = p.clone();
    put.as_object_mut().unwrap().remove("Public_Host");
    put["Worker_Max_Soft"] = json!(10);
    api.call("PUT", "/api/latest/hubserver/props", Some(put))
        .await
        .expect(204);
    let p = props(&api, "/api/latest/hubserver/props").await;
    assert!(
        p.get("Public_Host").is_none() && p["Worker_Max_Soft"] == 10,
        "{p}"
    );
    api.call(
        "POST",
        "/api/latest/hubserver/props_delete",
        Some(json!({"props": []})),
    )
    .await
    .expect(400);

    // props_test changes nothing and answers what sluice discovers.
    let t = api
        .call(
            "POST",
            "/api/latest/hubserver/props_test",
            Some(json!({"props": {"Worker_Age": 5}})),
        )
        .await
        .expect(200)
        .json();
    assert!(
        t["discovered_props"]["Hub_Server_HVR_Version"].is_string(),
        "{t}"
    );
    assert!(
        props(&api, "/api/latest/hubserver/props")
            .await
            .get("Worker_Age")
            .is_none()
    );
    api.call(
        "POST",
        "/api/latest/hubserver/props_test",
        Some(json!({"props": {"HTTP_Port": 1}})),
    )
    .await
    .expect(400);
    api.call_as(Some(&ro), "POST", "/api/latest/hubserver/test", None)
        .await
        .expect(200);
}

#[tokio::test]
async fn hub_server_environment_shows_only_safe_variables_to_sysadmins() {
    let api = Api::start(false).await;
    let a = api
        .call(
            "GET",
            "/api/latest/hubserver/env/vars?vars=PATH&vars=ORACLE_HOME",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["PATH"], json!(std::env::var("PATH").unwrap_or_default()));
    assert!(a["ORACLE_HOME"].is_string());
    for refused in [
        "SLUICE_SECRET_KEY",
        "SLUICE_ADMIN_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "X",
    ] {
        let a = api
            .call(
                "GET",
                &format!("/api/latest/hubserver/env/vars?vars={refused}"),
                None,
            )
            .await
            .expect(400);
        assert!(a.text.contains(refused), "{}", a.text);
    }
    api.call("GET", "/api/latest/hubserver/env/vars", None)
        .await
        .expect(400);
    let ro = api.user("viewer", "ReadOnly").await;
    for path in [
        "/api/latest/hubserver/env/vars?vars=PATH",
        "/api/latest/hubserver/env/odbc_drivers",
        "/api/latest/hubserver/env/oratab",
        "/api/latest/hubserver/dirs?path=/etc",
    ] {
        api.call_as(Some(&ro), "GET", path, None).await.expect(403);
    }
    assert_eq!(
        api.call("GET", "/api/latest/hubserver/env/oratab", None)
            .await
            .expect(200)
            .json(),
        json!({"oracle_sid": "", "oracle_home": ""})
    );
    api.call("GET", "/api/latest/hubserver/env/odbc_drivers", None)
        .await
        .expect(200);
    let a = api
        .call("GET", "/api/latest/hubserver/dirs?path=/etc", None)
        .await
        .expect(501);
    assert!(a.text.contains("file system"), "{}", a.text);
    let clock = api
        .call("GET", "/api/latest/hubserver/clock", None)
        .await
        .expect(200)
        .json();
    assert!(clock["clock"].as_str().unwrap().ends_with('Z'), "{clock}");
}

#[tokio::test]
async fn the_repository_is_described_never_created_or_dropped_and_keeps_its_props() {
    let api = Api::start(true).await;
    let r = props(&api, "/api/latest/repos").await;
    assert_eq!(r["class"], "postgresql");
    assert_eq!(r["current_user_access"]["level"], "SysAdmin");
    assert!(r["version"]["current"].as_u64().unwrap() > 0);
    assert!(
        r["database"]
            .as_str()
            .unwrap()
            .starts_with("sluice_api_test_"),
        "{r}"
    );
    assert!(!r.to_string().contains("password"), "{r}");
    let ro = api.user("viewer", "ReadOnly").await;
    let seen = api
        .call_as(Some(&ro), "GET", "/api/latest/repos", None)
        .await
        .expect(200)
        .json();
    assert_eq!(seen["current_user_access"]["level"], "None");
    assert!(seen.get("database").is_none(), "{seen}");
    for method in ["POST", "DELETE"] {
        let a = api
            .call(method, "/api/latest/repos", None)
            .await
            .expect(400);
        assert!(a.text.contains("sluice serve"), "{}", a.text);
        api.call_as(Some(&ro), method, "/api/latest/repos", None)
            .await
            .expect(403);
    }
    api.call(
        "PATCH",
        "/api/latest/repos/props",
        Some(json!({"Hub_Switch_Bookmarks": {"a": "b"}})),
    )
    .await
    .expect(204);
    api.call_as(
        Some(&ro),
        "PATCH",
        "/api/latest/repos/props",
        Some(json!({"PAM_Service": "login"})),
    )
    .await
    .expect(403);
    for bad in [
        json!({"Registration_Access_Key": "k"}),
        json!({"Wallet": {}}),
        json!({"Nope": 1}),
    ] {
        api.call("PATCH", "/api/latest/repos/props", Some(bad))
            .await
            .expect(400);
    }
    let p = props(&api, "/api/latest/repos/props").await;
    assert_eq!(p["Hub_Switch_Bookmarks"], json!({"a": "b"}));
    assert_eq!(p["Wallet"]["Wallet_Type"], "SOFTWARE");
    assert!(p.get("PAM_Service").is_none());
    api.call(
        "POST",
        "/api/latest/repos/props_delete",
        Some(json!({"props": ["Hub_Switch_Bookmarks"]})),
    )
    .await
    .expect(204);
    assert!(
        props(&api, "/api/latest/repos/props")
            .await
            .get("Hub_Switch_Bookmarks")
            .is_none()
    );
}

/// Adds PostgreSQL location `pgsrc` (password `pw-sealed-1`, sealed when stored) holding table
/// `items` of 5 rows, and channel `ch2` refreshing it into `tgt`.
async fn define_pg_source(api: &Api) -> sluice_test_support::TestDatabase {
    let db = sluice_test_support::TestDatabase::create("sluice_api_wallet_").await;
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text); \
             INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 5) g;",
        )
        .await
        .unwrap();
    let server = sluice_test_support::pg_server();
    let (host, port) = server
        .rsplit('@')
        .next()
        .unwrap()
        .split_once(':')
        .map(|(h, p)| (h.to_owned(), p.split('/').next().unwrap().to_owned()))
        .unwrap_or(("127.0.0.1".into(), "5432".into()));
    api.call(
        "POST",
        "/api/latest/hubs/hub1/definition/locs",
        Some(json!({"loc": "pgsrc", "props": {
            "Class": "postgresql", "Database_Host": host, "Database_Port": port,
            "Database_Name": db.name, "Database_User": "postgres",
            "Database_Password": "pw-sealed-1"}})),
    )
    .await
    .expect(201);
    api.call(
        "POST",
        "/api/latest/hubs/hub1/definition/channels",
        Some(json!({
            "channel": "ch2",
            "loc_groups": {"SOURCE": {"members": ["pgsrc"]}, "TARGET": {"members": ["tgt"]}},
            "tables": {"items": {}},
            "actions": [
                {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
            ]
        })),
    )
    .await
    .expect(201);
    db
}

/// Refreshes `ch2` and answers the final state of its event.
async fn refresh_ch2(api: &Api) -> Value {
    let posted = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch2/refresh",
            Some(json!({"source_loc": "pgsrc", "target_loc": "tgt", "create_tables": true})),
        )
        .await;
    assert!(posted.status.is_success(), "{}", posted.text);
    let ev = posted.json()["posted_ev_id"].as_str().unwrap().to_owned();
    api.wait_event(&ev).await
}

fn keys(wallet: &Value) -> Vec<(String, u64)> {
    wallet["Encryption_Keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["secrets"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn key_rotation_reseals_every_secret_and_survives_restarts_and_crashes() {
    let api = Api::start(true).await;
    api.define(2).await;
    let _db = define_pg_source(&api).await;
    let e = refresh_ch2(&api).await;
    assert_eq!(e["state"], "DONE", "{e}");
    let w = props(&api, "/api/latest/wallet/props").await;
    assert_eq!(w["Encryption_Key_Sequence"], 0);
    assert_eq!(keys(&w), vec![("0".into(), 1)]);
    assert!(!w.to_string().contains("wrapped"), "{w}");

    // A ReadOnly user cannot rotate; nothing changes.
    let ro = api.user("viewer", "ReadOnly").await;
    for path in [
        "/api/latest/wallet/key_rotate",
        "/api/latest/wallet/reencrypt_continue",
    ] {
        api.call_as(Some(&ro), "POST", path, None).await.expect(403);
    }
    api.call_as(Some(&ro), "GET", "/api/latest/wallet/props", None)
        .await
        .expect(403);
    assert_eq!(
        props(&api, "/api/latest/wallet/props").await["Encryption_Key_Sequence"],
        0
    );

    api.call("POST", "/api/latest/wallet/key_rotate", None)
        .await
        .expect(204);
    let w = props(&api, "/api/latest/wallet/props").await;
    assert_eq!(w["Encryption_Key_Sequence"], 1);
    assert_eq!(w["Reencrypt_State"], "DONE");
    assert_eq!(keys(&w), vec![("0".into(), 0), ("1".into(), 1)]);
    let e = refresh_ch2(&api).await;
    assert_eq!(e["state"], "DONE", "{e}");
    let events = props(&api, "/api/latest/hubs/hub1/events?type=Reencrypt_Secrets").await;
    assert_eq!(events.as_object().unwrap().len(), 1, "{events}");

    // A second hub process on the same repository opens the secrets with the same master key.
    let repository = api.hub.repository().clone();
    let second = TestHub::serve(repository.clone(), TestHub::config(&repository)).await;
    let mut other = Api {
        hub: second,
        http: reqwest::Client::new(),
        token: String::new(),
    };
    other.token = other.login("admin", ADMIN_PASSWORD).await;
    // A rotation by the first process applies in the second at its next use of a secret.
    api.call("POST", "/api/latest/wallet/key_rotate", None)
        .await
        .expect(204);
    let e = refresh_ch2(&other).await;
    assert_eq!(e["state"], "DONE", "{e}");
    // The old key goes; the secrets stay readable.
    let deleted = api
        .call(
            "POST",
            "/api/latest/wallet/key_history_delete",
            Some(json!({"before_key_sequence": 2})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(deleted, json!({"key_history_deleted": 1}));
    let w = props(&other, "/api/latest/wallet/props").await;
    assert_eq!(keys(&w), vec![("0".into(), 0), ("2".into(), 1)]);

    // A crash half-way: a new key is current, the secret is still sealed under the old one.
    let repo = api.hub.service().repository();
    let wrapped = sluice_service::secrets::SecretKey::from_text("test key").new_wrapped_key();
    use sluice_repo::PropStore as _;
    use sluice_service::{PropBag, PropWrite};
    repo.write_props(
        &PropBag::WalletKey(3),
        &[
            ("wrapped".to_owned(), Some(json!(wrapped))),
            ("created".to_owned(), Some(json!("2026-12-05T22:00:00Z"))),
        ]
        .into_iter()
        .collect(),
        PropWrite::Create,
    )
    .await
    .unwrap();
    repo.write_props(
        &PropBag::Wallet,
        &[
            ("Encryption_Key_Sequence".to_owned(), Some(json!(3))),
            ("Reencrypt_Pending".to_owned(), Some(json!(3))),
        ]
        .into_iter()
        .collect(),
        PropWrite::Merge,
    )
    .await
    .unwrap();
    // Restart: both processes go; a new one opens the repository.
    drop(other);
    drop(api);
    let third = TestHub::serve(repository.clone(), TestHub::config(&repository)).await;
    let mut api = Api {
        hub: third,
        http: reqwest::Client::new(),
        token: String::new(),
    };
    api.token = api.login("admin", ADMIN_PASSWORD).await;
    let e = refresh_ch2(&api).await;
    assert_eq!(
        e["state"], "DONE",
        "every secret readable after the crash: {e}"
    );
    let w = props(&api, "/api/latest/wallet/props").await;
    assert_eq!(w["Reencrypt_State"], "PENDING");
    api.call("POST", "/api/latest/wallet/key_rotate", None)
        .await
        .expect(400);
    let a = api
        .call(
            "POST",
            "/api/latest/wallet/key_history_delete",
            Some(json!({"before_key_sequence": 3})),
        )
        .await
        .expect(400);
    assert!(a.text.contains("reencrypt_continue"), "{}", a.text);
    api.call(
        "POST",
        "/api/latest/wallet/reencrypt_continue",
        Some(json!({})),
    )
    .await
    .expect(200);
    let w = props(&api, "/api/latest/wallet/props").await;
    assert_eq!(w["Reencrypt_State"], "DONE");
    assert_eq!(
        keys(&w),
        vec![("0".into(), 0), ("2".into(), 0), ("3".into(), 1)]
    );
    let e = refresh_ch2(&api).await;
    assert_eq!(e["state"], "DONE", "{e}");
    // The location as shown never carries the secret.
    let loc = props(&api, "/api/latest/hubs/hub1/definition/locs/pgsrc").await;
    assert!(!loc.to_string().contains("enc:"), "{loc}");
}

#[tokio::test]
async fn the_wallet_is_the_master_key_and_refuses_what_it_is_not() {
    let api = Api::start(false).await;
    api.call(
        "POST",
        "/api/latest/wallet",
        Some(json!({"props": {"Wallet_Type": "SOFTWARE"}})),
    )
    .await
    .expect(204);
    for (path, body, says) in [
        (
            "/api/latest/wallet",
            json!({"props": {"Wallet_Type": "KMS"}}),
            "KMS",
        ),
        (
            "/api/latest/wallet",
            json!({"props": {}, "password": "x"}),
            "password",
        ),
        (
            "/api/latest/wallet/change",
            json!({"props": {"Wallet_KMS_Region": "eu"}}),
            "Wallet_KMS_Region",
        ),
        (
            "/api/latest/wallet/migrate",
            json!({"props": {"Wallet_Type": "AZURE"}}),
            "AZURE",
        ),
        (
            "/api/latest/wallet/disable",
            json!({"force": true}),
            "cannot be disabled",
        ),
        (
            "/api/latest/wallet/key_history_delete",
            json!({"before_rotation_tstamp": "yesterday"}),
            "before_rotation_tstamp",
        ),
    ] {
        let a = api.call("POST", path, Some(body)).await.expect(400);
        assert!(a.text.contains(says), "{path}: {}", a.text);
    }
    api.call(
        "POST",
        "/api/latest/wallet/migrate",
        Some(json!({"props": {"Wallet_Type": "SOFTWARE"}, "rotate_encryption_key": true})),
    )
    .await
    .expect(204);
    assert_eq!(
        props(
            &api,
            "/api/latest/wallet/props?fetch=Encryption_Key_Sequence"
        )
        .await,
        json!({"Encryption_Key_Sequence": 1})
    );
}

#[tokio::test]
async fn hub_props_are_replaced_and_deleted_by_hub_owners_only() {
    let api = Api::start(false).await;
    api.define(1).await;
    api.call(
        "PATCH",
        "/api/latest/hubs/hub1/props",
        Some(json!({"Statistics_Enabled": 1, "Other": "x"})),
    )
    .await
    .expect(204);
    let mut all = props(&api, "/api/latest/hubs/hub1/props").await;
    all.as_object_mut().unwrap().remove("Other");
    all["Description"] = json!("replaced");
    api.call("PUT", "/api/latest/hubs/hub1/props", Some(all))
        .await
        .expect(204);
    let p = props(&api, "/api/latest/hubs/hub1/props").await;
    assert!(
        p.get("Other").is_none() && p["Description"] == "replaced" && p["Statistics_Enabled"] == 1,
        "{p}"
    );
    api.call(
        "PUT",
        "/api/latest/hubs/hub1/props",
        Some(json!({"Hub_State": "FROZEN"})),
    )
    .await
    .expect(400);
    let ro = api.user("viewer", "ReadOnly").await;
    api.call_as(
        Some(&ro),
        "POST",
        "/api/latest/hubs/hub1/props_delete",
        Some(json!({"props": ["Statistics_Enabled"]})),
    )
    .await
    .expect(403);
    api.call_as(
        Some(&ro),
        "PUT",
        "/api/latest/hubs/hub1/props",
        Some(json!({})),
    )
    .await
    .expect(403);
    api.call(
        "POST",
        "/api/latest/hubs/hub1/props_delete",
        Some(json!({"props": ["Statistics_Enabled"]})),
    )
    .await
    .expect(204);
    let p = props(&api, "/api/latest/hubs/hub1/props").await;
    assert!(
        p.get("Statistics_Enabled").is_none() && p["Description"] == "replaced",
        "{p}"
    );
    api.call(
        "POST",
        "/api/latest/hubs/nohub/props_delete",
        Some(json!({"props": ["X"]})),
    )
    .await
    .expect(404);
}

#[tokio::test]
async fn a_snapshot_is_inspected_and_restored_as_a_new_hub() {
    let api = Api::start(false).await;
    api.define(3).await;
    api.call(
        "PATCH",
        "/api/latest/hubs/hub1/props",
        Some(json!({"Team": "data"})),
    )
    .await
    .expect(204);
    let ro = api.user("viewer", "ReadOnly").await;
    api.call_as(
        Some(&ro),
        "POST",
        "/api/latest/hubs/hub1/snapshot",
        Some(json!({})),
    )
    .await
    .expect(403);
    let saved = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/snapshot",
            Some(json!({"reason": "before the upgrade", "event_trim": "none"})),
        )
        .await
        .expect(200)
        .json();
    let reference = saved["ref"].as_str().unwrap().to_owned();
    let seen = api
        .call_as(
            Some(&ro),
            "POST",
            "/api/latest/snapshot_inspect",
            Some(json!({"ref": reference})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(seen["original_hub"], "hub1");
    assert_eq!(seen["save_user"], "admin");
    assert_eq!(seen["reason"], "before the upgrade");
    assert_eq!(seen["hub_props"]["Team"], "data");
    for bad in ["../../etc/passwd", "nope"] {
        let a = api
            .call(
                "POST",
                "/api/latest/snapshot_inspect",
                Some(json!({"ref": bad})),
            )
            .await;
        assert!(matches!(a.status.as_u16(), 400 | 404), "{}", a.text);
    }
    // Restoring needs SysAdmin, a new hub name, and leaves the original alone.
    api.call_as(
        Some(&ro),
        "POST",
        "/api/latest/snapshot",
        Some(json!({"ref": reference, "hub": "hub2"})),
    )
    .await
    .expect(403);
    api.call(
        "POST",
        "/api/latest/snapshot",
        Some(json!({"ref": reference, "hub": "hub1"})),
    )
    .await
    .expect(400);
    api.call(
        "POST",
        "/api/latest/snapshot",
        Some(json!({"ref": reference, "hub": "hub2", "description": "copy"})),
    )
    .await
    .expect(200);
    let hub2 = props(&api, "/api/latest/hubs/hub2/props").await;
    assert_eq!(
        (hub2["Description"].as_str(), hub2["Team"].as_str()),
        (Some("copy"), Some("data"))
    );
    let channels = props(
        &api,
        "/api/latest/hubs/hub2/definition/channels?fetch=tables",
    )
    .await;
    assert!(
        channels["ch1"]["tables"]["orders"].is_object(),
        "{channels}"
    );
    let locs = props(&api, "/api/latest/hubs/hub2/definition/locs").await;
    assert!(locs["src"].is_object() && locs["tgt"].is_object(), "{locs}");
    let events = props(
        &api,
        "/api/latest/hubs/hub2/events?type=Restore_Hub_Snapshot",
    )
    .await;
    assert_eq!(events.as_object().unwrap().len(), 1, "{events}");
    api.call(
        "POST",
        "/api/latest/hubs/hub1/snapshot",
        Some(json!({"channel_focus": "nochannel"})),
    )
    .await
    .expect(404);
}
