//! Backups: backup → wipe → restore reproduces a hub (definitions and settings), on SQLite and
//! PostgreSQL repositories and across them; a corrupted archive is refused and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};
use sluice_model::{AccessLevel, HubName};
use sluice_repo::{PropBag, PropWrite, Repository};
use sluice_service::HubService;
use sluice_service::access::AccessEntry;
use sluice_service::backup::{self, BackupRequest, RestoreRequest};
use sluice_service::definition;
use sluice_service::plan::PlanRequest;
use sluice_service::secrets::SecretKey;
use sluice_test_support::{TestDatabase, pg_server, pg_url};

/// A repository on SQLite (in `dir`) or on a fresh PostgreSQL database.
struct Repo {
    repo: Arc<dyn Repository>,
    _db: Option<TestDatabase>,
}

async fn repo(pg: bool, dir: &std::path::Path) -> Repo {
    if pg {
        let db = TestDatabase::create("sluice_backup_test_").await;
        let repo = sluice_repo::open_repository(&db.url).await.unwrap();
        Repo {
            repo,
            _db: Some(db),
        }
    } else {
        let spec = format!("sqlite:{}", dir.join("hub.db").display());
        let repo = sluice_repo::open_repository(&spec).await.unwrap();
        Repo { repo, _db: None }
    }
}

/// A service over `repo` acting as SysAdmin `admin`, with the key file in `key_dir`.
fn service(repo: &Repo, key_dir: &std::path::Path) -> HubService {
    let key = SecretKey::load(&key_dir.join("secret.key")).unwrap();
    HubService::with_secrets(
        repo.repo.clone(),
        sluice_service::registry::process_env(),
        Some(key),
        "admin",
    )
}

fn hub() -> HubName {
    HubName::new("shop").unwrap()
}

/// Defines hub `shop` (a PostgreSQL location with a password given as a value, so it is stored
/// sealed; a SQLite location; a channel) and gives it settings of every kind a backup holds.
async fn populate(svc: &HubService, data: &std::path::Path) {
    let pg = pg_url(&pg_server(), "postgres");
    let url = url_parts(&pg);
    let doc = json!({
        "hub": {"name": "shop", "description": "the shop"},
        "locations": {
            "src": {"class": "postgresql", "props": {
                "Database_Host": url.0, "Database_Port": url.1, "Database_Name": "postgres",
                "Database_User": url.2, "Database_Password": "not-a-real-password",
            }},
            "wh": {"class": "sqlite", "props": {
                "Database_Name": data.join("wh.db").display().to_string(),
            }},
        },
        "channels": {"sales": {
            "loc_groups": {"SRC": ["src"], "TGT": ["wh"]},
            "tables": {"orders": {}},
            "actions": [
                {"type": "Capture", "loc_scope": "SRC", "table_scope": "*"},
                {"type": "Integrate", "loc_scope": "TGT", "table_scope": "*"},
            ],
        }},
    });
    let req = PlanRequest {
        document: doc,
        prune: true,
        hub: None,
        source: "test".into(),
        base_dir: None,
    };
    svc.apply_definitions_plan(&req, None).await.unwrap();
    svc.rotate_wallet_key().await.unwrap();
    svc.reseal_secrets().await.unwrap();
    svc.create_user("ann", AccessLevel::ReadOnly, "ann-password-123")
        .await
        .unwrap();
    svc.set_hub_access_list(
        &hub(),
        &[
            AccessEntry {
                user: Some("ann".into()),
                level: AccessLevel::HubOwner,
            },
            AccessEntry {
                user: None,
                level: AccessLevel::ReadOnly,
            },
        ],
    )
    .await
    .unwrap();
    svc.set_hub_props(
        &hub(),
        &BTreeMap::from([("Team".to_owned(), Some(json!("data")))]),
    )
    .await
    .unwrap();
    svc.create_alert(
        &hub(),
        "late",
        &BTreeMap::from([("Description".to_owned(), json!("late jobs"))]),
    )
    .await
    .unwrap();
    svc.repository()
        .write_props(
            &PropBag::JobSystemEnv(hub()),
            &BTreeMap::from([("TZ".to_owned(), Some(json!("UTC")))]),
            PropWrite::Replace,
        )
        .await
        .unwrap();
    svc.freeze_hub(&hub()).await.unwrap();
}

/// (host, port, user) of a `postgres://user@host:port/db` URL.
fn url_parts(url: &str) -> (String, String, String) {
    let rest = url.split_once("://").unwrap().1;
    let (user, rest) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap().to_owned();
    let hostport = rest.split('/').next().unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    (host.to_owned(), port.to_owned(), user)
}

/// The hub's definitions document and settings.
async fn snapshot(svc: &HubService) -> (Json, backup::HubSettings) {
    let (defs, _) = svc.definitions(&hub()).await.unwrap();
    (
        definition::to_document(&defs),
        svc.hub_settings(&hub()).await.unwrap(),
    )
}

fn everything() -> BackupRequest {
    BackupRequest {
        hubs: vec![],
        with_users: true,
        with_server: true,
    }
}

fn restore_all() -> RestoreRequest {
    RestoreRequest {
        with_users: true,
        with_server: true,
        ..Default::default()
    }
}

async fn backup_and_restore_across(from_pg: bool, to_pg: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = repo(from_pg, &a_dir).await;
    let svc_a = service(&a, dir.path());
    populate(&svc_a, dir.path()).await;
    let before = snapshot(&svc_a).await;
    let kinds: Vec<&str> = before.1.bags.iter().map(|b| b.kind.as_str()).collect();
    for kind in ["hub_user", "alert", "job_system_env"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert_eq!(before.1.state, sluice_model::definition::HubState::Frozen);
    assert_eq!(before.1.props.get("Team"), Some(&json!("data")));
    assert!(
        before.0.to_string().contains("enc:v2:"),
        "the password is stored sealed under a wallet key: {}",
        before.0
    );
    let made = svc_a.backup(&everything()).await.unwrap();
    assert!(backup::is_backup_file_name(&made.file_name));
    assert!(
        !String::from_utf8_lossy(&made.bytes).contains("not-a-real-password"),
        "no plaintext secret in the archive"
    );
    let contents = backup::read_backup(&made.bytes).unwrap();
    assert_eq!(contents.manifest.hubs, vec![hub()]);
    for part in contents.hubs.values() {
        assert!(!part.definitions.to_string().contains("not-a-real-password"));
    }

    // An empty repository on the other backend, the same key file.
    let b = repo(to_pg, &b_dir).await;
    let svc_b = service(&b, dir.path());
    let plan = svc_b.plan_restore(&contents, &restore_all()).await.unwrap();
    assert_eq!(plan.hubs.len(), 1);
    assert!(!plan.hubs[0].hub_exists);
    assert!(
        plan.identity.iter().any(|l| l.contains("user ann")),
        "{:?}",
        plan.identity
    );
    let expected = BTreeMap::from([(hub(), None)]);
    let req = RestoreRequest {
        expected: Some(expected),
        ..restore_all()
    };
    let restored = svc_b.restore(&contents, &req).await.unwrap();
    assert_eq!(restored.hubs.len(), 1);
    assert_eq!(snapshot(&svc_b).await, before);
    // The sealed password opens with the restored wallet key: the location's test connects.
    svc_b
        .test_location(&hub(), &"src".parse().unwrap())
        .await
        .unwrap();
    // The user logs in with the password hashed as stored.
    svc_b
        .login("ann", "ann-password-123", false, None)
        .await
        .unwrap();
    // Restoring again changes nothing.
    let again = svc_b.plan_restore(&contents, &restore_all()).await.unwrap();
    assert!(again.hubs[0].is_empty(), "{:?}", again.hubs[0].changes);
    assert!(again.settings.is_empty(), "{:?}", again.settings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_restores_into_an_empty_postgresql_repository() {
    backup_and_restore_across(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_backup_restores_into_an_empty_sqlite_repository() {
    backup_and_restore_across(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_wipe_restore_reproduces_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let a = repo(false, dir.path()).await;
    let svc = service(&a, dir.path());
    populate(&svc, dir.path()).await;
    let before = snapshot(&svc).await;
    let made = svc
        .backup(&BackupRequest {
            hubs: vec![hub()],
            ..Default::default()
        })
        .await
        .unwrap();
    let contents = backup::read_backup(&made.bytes).unwrap();
    assert!(contents.identity.is_none() && contents.server.is_none());

    // Changed after the backup: restoring makes the hub what the archive holds again.
    svc.unfreeze_hub(&hub()).await.unwrap();
    svc.delete_alert(&hub(), "late").await.ok();
    let plan = svc
        .plan_restore(&contents, &RestoreRequest::default())
        .await
        .unwrap();
    assert!(
        plan.settings.iter().any(|l| l.contains("FROZEN")),
        "{:?}",
        plan.settings
    );
    svc.delete_hub(&hub()).await.unwrap();
    assert!(svc.definitions(&hub()).await.is_err());
    // Asking for users from an archive without them is refused.
    let error = svc
        .restore(
            &contents,
            &RestoreRequest {
                with_users: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no users"), "{error}");
    svc.restore(&contents, &RestoreRequest::default())
        .await
        .unwrap();
    assert_eq!(snapshot(&svc).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_or_truncated_archive_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = repo(false, dir.path()).await;
    let svc = service(&a, dir.path());
    populate(&svc, dir.path()).await;
    let made = svc.backup(&everything()).await.unwrap();
    svc.delete_hub(&hub()).await.unwrap();
    let mut flipped = made.bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    for bad in [
        flipped,
        made.bytes[..made.bytes.len() - 8].to_vec(),
        b"not an archive".to_vec(),
    ] {
        let error = backup::read_backup(&bad).unwrap_err();
        assert_eq!(error.kind(), sluice_service::ServiceErrorKind::Invalid);
        assert!(
            error.to_string().contains("corrupted or truncated"),
            "{error}"
        );
    }
    assert!(svc.resolve_hub(None).await.is_err(), "nothing was restored");

    // A hub whose document holds a plaintext secret (a tampered archive with checksums
    // recomputed) is refused before anything changes, even when another hub would restore.
    let mut contents = backup::read_backup(&made.bytes).unwrap();
    let part = contents.hubs.get_mut(&hub()).unwrap();
    part.definitions["locations"]["src"]["props"]["Database_Password"] = json!("plain");
    let error = svc.restore(&contents, &restore_all()).await.unwrap_err();
    assert!(error.to_string().contains("plaintext"), "{error}");
    assert!(svc.resolve_hub(None).await.is_err(), "nothing was restored");

    // An access entry the access-list API would refuse (SysAdmin on one hub): refused too.
    let mut contents = backup::read_backup(&made.bytes).unwrap();
    let part = contents.hubs.get_mut(&hub()).unwrap();
    let entry = part
        .settings
        .bags
        .iter_mut()
        .find(|b| b.kind == "hub_user" && b.owner == "ann")
        .unwrap();
    entry.props.insert("Access_Level".into(), json!("SysAdmin"));
    let error = svc.restore(&contents, &restore_all()).await.unwrap_err();
    assert!(error.to_string().contains("SysAdmin"), "{error}");
    assert!(svc.resolve_hub(None).await.is_err(), "nothing was restored");
}
