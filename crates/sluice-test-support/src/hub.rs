//! A repository on either backend, and a hub server on it: what the API's test binaries share.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_api::{Hub, HubConfig};
use sluice_service::HubService;
use sluice_service::secrets::SecretKey;
use tokio_util::sync::CancellationToken;

use crate::TestDatabase;

/// The password [`TestHub::config`] gives the first user, `admin`.
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// A repository spec on SQLite (`hub.db` in a temp dir) or on a fresh PostgreSQL database; the
/// temp dir exists on both (for the tests' own files) and both are removed on drop.
#[derive(Debug)]
pub struct TestRepository {
    spec: String,
    dir: tempfile::TempDir,
    // Dropped (the database with it) after the hub that used it, which the owner drops first.
    database: Option<TestDatabase>,
}

impl TestRepository {
    /// On PostgreSQL when `pg` (a fresh database named `sluice_api_test_…`), else on SQLite.
    pub async fn new(pg: bool) -> Self {
        if pg {
            Self::postgres("sluice_api_test_").await
        } else {
            Self::sqlite()
        }
    }

    /// `sqlite:DIR/hub.db` in a fresh temp dir.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let spec = format!("sqlite:{}", dir.path().join("hub.db").display());
        TestRepository {
            spec,
            dir,
            database: None,
        }
    }

    /// A fresh PostgreSQL database named `PREFIX` and random hex digits (see
    /// [`TestDatabase::create`]), and a fresh temp dir.
    pub async fn postgres(prefix: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let database = TestDatabase::create(prefix).await;
        TestRepository {
            spec: database.url.clone(),
            dir,
            database: Some(database),
        }
    }

    /// The repository spec, as `sluice serve --repository` takes it.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The temp dir (on SQLite, the one holding `hub.db`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PostgreSQL database, when the repository is on one.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }
}

/// A hub server assembled by [`Hub::open`] on a [`TestRepository`]; served on a random loopback
/// port by [`TestHub::serve`], or only assembled by [`TestHub::open`] (for tests that call the
/// router in-process). Dropping it stops the server, closes the event hub and removes the
/// repository.
pub struct TestHub {
    hub: Arc<Hub>,
    base: Option<String>,
    shutdown: CancellationToken,
    repository: Arc<TestRepository>,
}

impl TestHub {
    /// `sluice serve`'s config on `repository` with what the tests rely on: the secret key
    /// `test key`, `admin`'s password [`ADMIN_PASSWORD`], a scheduler tick of 200 ms.
    pub fn config(repository: &TestRepository) -> HubConfig {
        HubConfig {
            secret_key: Some(SecretKey::from_text("test key")),
            admin_password: Some(ADMIN_PASSWORD.to_owned()),
            scheduler_tick: Duration::from_millis(200),
            ..HubConfig::new(repository.spec())
        }
    }

    /// A hub server with [`TestHub::config`] on a fresh SQLite repository, served.
    pub async fn start() -> Self {
        let repository = TestRepository::sqlite();
        let config = Self::config(&repository);
        Self::serve(repository, config).await
    }

    /// Assembles a hub server with `config` (its repository should be `repository`'s) and
    /// serves it, with its scheduler, on a random loopback port. Several hubs may share one
    /// repository (an `Arc`); it is removed when the last is dropped.
    pub async fn serve(repository: impl Into<Arc<TestRepository>>, config: HubConfig) -> Self {
        let mut hub = Self::open(repository, config).await;
        let (addr, _served) = hub
            .hub
            .clone()
            .spawn_on_loopback(hub.shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot serve on loopback: {e}"));
        hub.base = Some(format!("http://{addr}"));
        hub
    }

    /// Assembles a hub server with `config` (its repository should be `repository`'s) without
    /// serving it: no listener, no scheduler.
    pub async fn open(repository: impl Into<Arc<TestRepository>>, config: HubConfig) -> Self {
        let repository = repository.into();
        // reqwest is built without a default TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let hub = Hub::open(config)
            .await
            .unwrap_or_else(|e| panic!("cannot open the hub on {}: {e:?}", repository.spec()));
        TestHub {
            hub: Arc::new(hub),
            base: None,
            shutdown: CancellationToken::new(),
            repository,
        }
    }

    /// `http://127.0.0.1:PORT`; panics when the hub is not served.
    pub fn base(&self) -> &str {
        self.base
            .as_deref()
            .unwrap_or_else(|| panic!("the test hub is not served (TestHub::open)"))
    }

    /// The hub server.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The service (acting as the hub server).
    pub fn service(&self) -> &HubService {
        self.hub.service()
    }

    /// The router's state, for calling the router in-process (`sluice_api::app`).
    pub fn state(&self) -> &sluice_api::AppState {
        self.hub.state()
    }

    /// The repository (clone it to open another hub on it).
    pub fn repository(&self) -> &Arc<TestRepository> {
        &self.repository
    }

    /// The repository's temp dir.
    pub fn dir(&self) -> &Path {
        self.repository.dir()
    }

    /// Stops serving and closes the event hub (live streams end); dropping does it too.
    pub fn stop(&self) {
        self.hub.events().close();
        self.shutdown.cancel();
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.stop();
    }
}
