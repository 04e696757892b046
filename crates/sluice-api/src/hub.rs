//! Assembling a hub server: the one function that opens the repository and the event store on
//! one database (one pool on PostgreSQL), starts the event hub and its broker, builds the service and the router, and
//! serves them with the scheduler. `sluice serve`, the benchmarks and the tests all call it, so
//! what they run is the same server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_events::{AmqpBroker, Broker, EventHub, InProcessBroker, NatsBroker, NatsOptions};
use sluice_repo::{ReapedJob, Repository};
use sluice_service::HubService;
use sluice_service::policy::LocationPolicy;
use sluice_service::registry::EnvLookup;
use sluice_service::secrets::SecretKey;
use tokio_util::sync::CancellationToken;

/// How often the hub server looks for activated channels to replicate.
const REPLICATION_TICK: Duration = Duration::from_secs(1);

use crate::{AppState, MetricsAccess};

/// What a hub server is made of. [`HubConfig::new`] gives the defaults of `sluice serve`
/// except the repository, which it names.
#[derive(Clone)]
pub struct HubConfig {
    /// The repository: `sqlite:PATH`, a file path, or `postgres://USER@HOST:PORT/DATABASE`. The
    /// event store lives in the same database.
    pub repository: String,
    /// How hub nodes sharing a PostgreSQL repository tell each other about new events:
    /// `in-process` or a NATS JetStream URL.
    pub broker: String,
    /// The event hub's buffers and retention.
    pub events: sluice_events::HubConfig,
    /// Seals location passwords at rest (`None`: stored as given).
    pub secret_key: Option<SecretKey>,
    /// Where `${VAR}` references in locations are looked up.
    pub env: EnvLookup,
    /// What locations defined over the API may reach (`None`: the service's default, the
    /// operator's own policy).
    pub location_policy: Option<LocationPolicy>,
    /// The password of the first user, `admin`, when the repository has no user yet (`None`:
    /// one is generated and returned by [`Hub::open`]).
    pub admin_password: Option<String>,
    /// Setup mode: when the repository has no user, create none (not even `admin`); the first
    /// users are then created with a setup-mode token from `POST /auth/v1/setup`.
    pub setup_mode: bool,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    /// How often the scheduler looks for due jobs.
    pub scheduler_tick: Duration,
    /// Jobs (refresh, compare, activation, replication) run on a runtime of their own with this
    /// many worker threads at CPU priority [`HubConfig::job_nice`], so that they take the CPU
    /// requests leave; `None`: on the server's runtime, beside the requests.
    pub job_threads: Option<usize>,
    /// The `nice` of the job threads (0 to 19).
    pub job_nice: i32,
}

impl HubConfig {
    /// The defaults of `sluice serve` on `repository`: in-process broker, event hub defaults,
    /// process environment, no secret key, no location policy, a generated admin password.
    pub fn new(repository: impl Into<String>) -> Self {
        HubConfig {
            repository: repository.into(),
            broker: "in-process".into(),
            events: sluice_events::HubConfig::default(),
            secret_key: None,
            env: sluice_service::registry::process_env(),
            location_policy: None,
            admin_password: None,
            setup_mode: false,
            metrics_access: MetricsAccess::default(),
            scheduler_tick: Duration::from_secs(1),
            job_threads: None,
            job_nice: sluice_service::job_runtime::DEFAULT_JOB_NICE,
        }
    }
}

/// Why a hub server could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubOpenError {
    /// The repository could not be opened or migrated.
    #[error("cannot open the repository {repository}")]
    Repository {
        /// The repository, without its password.
        repository: String,
        /// Why.
        #[source]
        source: sluice_repo::RepoError,
    },
    /// The event store could not be opened or migrated.
    #[error("cannot open the event store in {repository}")]
    EventStore {
        /// The repository, without its password.
        repository: String,
        /// Why.
        #[source]
        source: sluice_events::Error,
    },
    /// The broker is not one sluice knows or cannot be reached.
    #[error("{message}")]
    Broker {
        /// What is wrong.
        message: String,
        /// Why.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The event hub did not start.
    #[error("cannot start the event hub")]
    EventHub(#[source] sluice_events::Error),
    /// The first user could not be created.
    #[error("cannot create the first user")]
    Admin(#[source] sluice_service::ServiceError),
    /// The job runtime did not start.
    #[error("cannot start the job runtime")]
    JobRuntime(#[source] std::io::Error),
}

/// An assembled hub server, ready to serve.
pub struct Hub {
    service: HubService,
    events: EventHub,
    state: AppState,
    scheduler_tick: Duration,
    repository: String,
    admin: sluice_service::AdminSetup,
    reaped: Result<Vec<ReapedJob>, sluice_service::ServiceError>,
}

impl Hub {
    /// Opens the repository and the event store, starts the event hub, builds the service with
    /// the config's key, environment and location policy, creates the first user when there is
    /// none, and ends the job runs of processes that stopped (see [`Hub::reaped`]).
    pub async fn open(config: HubConfig) -> Result<Hub, HubOpenError> {
        let repository = redact(&config.repository);
        // One database, one pool (on PostgreSQL) for the repository and the event store.
        let repo_error = |source| HubOpenError::Repository {
            repository: repository.clone(),
            source,
        };
        let db = sluice_repo::Database::open(&config.repository, "repository")
            .map_err(|e| repo_error(e.into()))?;
        let repo = sluice_repo::open_repository_in(&db)
            .await
            .map_err(repo_error)?;
        let store = sluice_events::store::open_event_store_in(&db)
            .await
            .map_err(|source| HubOpenError::EventStore {
                repository: repository.clone(),
                source,
            })?;
        let broker = broker(&config.broker, repo.as_ref()).await?;
        let events = EventHub::start(store, broker, config.events)
            .await
            .map_err(HubOpenError::EventHub)?;
        let service = HubService::with_event_hub(
            repo,
            config.env,
            config.secret_key,
            events.clone(),
            "hub-server",
        );
        if let Some(policy) = config.location_policy {
            service.set_location_policy(policy);
        }
        if let Some(threads) = config.job_threads {
            let jobs = sluice_service::job_runtime::JobRuntime::new(threads, config.job_nice)
                .map_err(HubOpenError::JobRuntime)?;
            service.set_job_runtime(jobs);
        }
        let facts = sluice_service::hub_server::RepositoryFacts::from_spec(&config.repository);
        service.set_server_facts(|f| f.repository = facts);
        let admin = if config.setup_mode {
            sluice_service::AdminSetup::default()
        } else {
            service
                .ensure_admin(config.admin_password.as_deref())
                .await
                .map_err(HubOpenError::Admin)?
        };
        // Runs left behind by a process that stopped (this one before a restart, or another one
        // sharing the repository) are ended now if their heartbeat is old enough, and by the
        // scheduler as soon as it is.
        let reaped = service.reap_orphaned_jobs().await;
        let state = AppState::new(service.clone()).with_metrics_access(config.metrics_access);
        Ok(Hub {
            service,
            events,
            state,
            scheduler_tick: config.scheduler_tick,
            repository,
            admin,
            reaped,
        })
    }

    /// The service (acting as the hub server).
    pub fn service(&self) -> &HubService {
        &self.service
    }

    /// The event hub.
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// The router's state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The repository as the config named it, without its password.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The password [`Hub::open`] generated for `admin`, when it created that user without one.
    pub fn generated_admin_password(&self) -> Option<&str> {
        self.admin.generated.as_deref()
    }

    /// Why the configured admin password was given but not used, if it was: the hub had users,
    /// and user admin's password is another one, or there is no user admin.
    pub fn admin_password_unused(&self) -> Option<sluice_service::UnusedPassword> {
        self.admin.unused_password
    }

    /// The runs of stopped processes that [`Hub::open`] ended, or why it could not look.
    pub fn reaped(&self) -> &Result<Vec<ReapedJob>, sluice_service::ServiceError> {
        &self.reaped
    }

    /// Serves the API on `listener` and runs the scheduler until `shutdown` fires; then live
    /// streams end (with a cut-off notice) and the server stops once its requests are done.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            self.service
                .set_server_facts(|f| f.http_port = Some(addr.port()));
        }
        let scheduler = tokio::spawn(
            self.service
                .clone()
                .run_scheduler(self.scheduler_tick, shutdown.clone()),
        );
        let replication = tokio::spawn(
            self.service
                .clone()
                .run_replication_supervisor(REPLICATION_TICK, shutdown.clone()),
        );
        let events = self.events.clone();
        let closing = shutdown.clone();
        tokio::spawn(async move {
            closing.cancelled().await;
            events.close();
        });
        let served = crate::serve(listener, self.state.clone(), shutdown.clone()).await;
        shutdown.cancel();
        let _ = scheduler.await;
        let _ = replication.await;
        served
    }

    /// Binds a random loopback port and serves there in a task until `shutdown` fires (for
    /// tests and benchmarks): the address, and the task.
    pub async fn spawn_on_loopback(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = tokio::spawn(async move { self.serve(listener, shutdown).await });
        Ok((addr, served))
    }
}

/// The broker `name` names. Nodes share a NATS stream and subjects, or a RabbitMQ exchange, only
/// with nodes of the same repository: the names carry an id stored in the repository, so several
/// hubs can use one NATS or RabbitMQ server without mixing events.
async fn broker(name: &str, repo: &dyn Repository) -> Result<Arc<dyn Broker>, HubOpenError> {
    let url = name.trim();
    if url.is_empty() || url == "in-process" {
        return Ok(Arc::new(InProcessBroker));
    }
    let remote = |what: &str| HubOpenError::Broker {
        message: format!(
            "unknown event broker {what:?}: expected in-process, nats://HOST:PORT or amqp://USER:PASSWORD@HOST:PORT/VHOST"
        ),
        source: None,
    };
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("nats" | "amqp" | "amqps")) {
        return Err(remote(&shown_broker(url)));
    }
    let fresh = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let id = repo
        .setting_or_insert("event_cluster_id", &fresh)
        .await
        .map_err(|e| HubOpenError::Broker {
            message: "cannot read the repository's event cluster id".into(),
            source: Some(Box::new(e)),
        })?;
    if scheme == Some("nats") {
        let options = NatsOptions {
            stream: format!("SLUICE_EVENTS_{id}"),
            subject_prefix: format!("sluice.events.{id}"),
            ..NatsOptions::default()
        };
        let broker = NatsBroker::connect(url, options)
            .await
            .map_err(|e| HubOpenError::Broker {
                message: format!("cannot use the NATS broker at {}", redact(url)),
                source: Some(Box::new(e)),
            })?;
        return Ok(Arc::new(broker));
    }
    let broker = AmqpBroker::connect(url, &format!("sluice.events.{id}"))
        .await
        .map_err(|e| HubOpenError::Broker {
            message: format!("cannot use the RabbitMQ broker at {}", redact(url)),
            source: Some(Box::new(e)),
        })?;
    Ok(Arc::new(broker))
}

/// An unknown `--broker` value as messages may show it: never what might be a password.
fn shown_broker(value: &str) -> String {
    let shown = redact(value);
    if shown.contains('@') && !shown.contains(":***@") {
        "(a value with credentials)".to_owned()
    } else {
        shown
    }
}

/// A repository spec without its password.
pub fn redact(spec: &str) -> String {
    match (spec.find("://"), spec.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &spec[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &spec[..s + 3], &spec[at..]),
                None => spec.to_owned(),
            }
        }
        _ => spec.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn unknown_brokers_are_shown_without_passwords() {
        use super::shown_broker;
        assert_eq!(shown_broker("in-proces"), "in-proces");
        assert_eq!(
            shown_broker("rabbit://u:hunter2@h:5672/"),
            "rabbit://u:***@h:5672/"
        );
        assert!(!shown_broker("u:hunter2@h").contains("hunter2"));
        assert!(!shown_broker("hunter2@h").contains("hunter2"));
    }

    #[test]
    fn passwords_leave_repository_specs() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("sqlite:/tmp/a@b.db"), "sqlite:/tmp/a@b.db");
    }
}
