//! The contract of opening a repository: migrations, specs, the shared pool (PostgreSQL only).

use super::*;

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: connecting, migrating, and `open_repository`.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_processes_starting_together_migrate_once() {
    let db = fresh_database().await;
    let mut handles = Vec::new();
    for _ in 0..6 {
        let url = db.url.clone();
        handles.push(tokio::spawn(async move {
            PostgresRepository::connect(&url).await
        }));
    }
    let mut repos = Vec::new();
    for h in handles {
        repos.push(h.await.unwrap().unwrap());
    }
    assert_eq!(repos[0].schema_version().await.unwrap(), 5);
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query("SELECT version FROM schema_migration ORDER BY version", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    drop(repos);
}

#[tokio::test]
async fn postgres_unreachable_or_tls_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let error = PostgresRepository::connect("postgres://alice:secret@127.0.0.1:1/hub")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Storage);
    let message = error.to_string();
    assert!(
        message.contains("cannot connect") && message.contains("alice@127.0.0.1:1/hub"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");

    let error = PostgresRepository::connect("postgres://postgres@127.0.0.1/hub?sslmode=require")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_repository_by_spec() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain/hub.db");
    let prefixed = dir.path().join("prefixed.db");
    for spec in [
        plain.display().to_string(),
        format!("sqlite:{}", prefixed.display()),
        format!("sqlite://{}", prefixed.display()),
    ] {
        let repo = open_repository(&spec).await.unwrap();
        assert!(repo.hubs().await.unwrap().is_empty(), "{spec}");
    }
    assert!(plain.exists() && prefixed.exists());

    let db = fresh_database().await;
    for spec in [
        db.url.clone(),
        db.url.replacen("postgres://", "postgresql://", 1),
    ] {
        let repo = open_repository(&spec).await.unwrap();
        repo.create_hub(
            &Hub {
                name: hub1(),
                description: String::new(),
            },
            "alice",
        )
        .await
        .map(|_| ())
        .or_else(|e| match e.kind() {
            RepoErrorKind::Conflict => Ok(()),
            _ => Err(e),
        })
        .unwrap();
    }
    assert_eq!(
        PostgresRepository::connect(&db.url)
            .await
            .unwrap()
            .hubs()
            .await
            .unwrap()
            .len(),
        1
    );

    for (spec, expected) in [
        (
            "mysql://root@localhost/hub",
            "unsupported repository scheme",
        ),
        ("", "no repository given"),
        ("sqlite:", "no repository given"),
        ("postgres://u@127.0.0.1/hub?sslmode=require", "TLS"),
    ] {
        let error = open_repository(spec).await.err().expect(spec);
        assert!(error.to_string().contains(expected), "{spec}: {error}");
    }
}

/// On PostgreSQL the repository and the event store share the one pool `Database::open` sets
/// up, each with its own migrations in the same database.
#[tokio::test]
async fn postgres_repository_and_event_store_share_one_pool() {
    let db = fresh_database().await;
    let database = sluice_repo::Database::open(&db.url, "repository").unwrap();
    let repo = sluice_repo::open_repository_in(&database).await.unwrap();
    let store = sluice_events::store::open_event_store_in(&database)
        .await
        .unwrap();
    assert!(repo.hubs().await.unwrap().is_empty());
    store.topics().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for table in ["schema_migration", "ev_schema_migrations"] {
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        assert!(
            row.get::<_, i64>(0) > 0,
            "{table} records the store's migrations"
        );
    }
}
