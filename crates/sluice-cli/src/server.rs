//! `sluice serve` (the hub server: REST API, scheduler and job runners in one process) and
//! `sluice user …` (users of the hub server, managed directly in the repository) and
//! `sluice apikey …` (API keys of the Fivetran-compatible `/v1` API, likewise).

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sluice_api::hub::redact;
use sluice_api::{Hub, HubConfig};
use sluice_model::AccessLevel;
use sluice_repo::Repository;
use sluice_service::HubService;
use sluice_service::policy::LocationPolicy;
use sluice_service::secrets::SecretKey;
use tokio_util::sync::CancellationToken;

use crate::args::{self, Global, Outcome};

/// Where the repository is.
#[derive(Args, Debug, Clone)]
pub struct RepoArg {
    /// The hub repository: `sqlite:PATH` (default: `$SLUICE_HOME/hub.db`) or
    /// `postgres://USER@HOST:PORT/DATABASE`.
    #[arg(long, env = "SLUICE_REPO")]
    repo: Option<String>,
}

impl RepoArg {
    /// The repository spec: `--repo`, else the SQLite file in `--home`.
    pub(crate) fn spec(&self, g: &Global) -> String {
        self.repo
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", g.home.join("hub.db").display()))
    }
}

/// `sluice serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4341", env = "SLUICE_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    repo: RepoArg,
    /// How hub nodes sharing a PostgreSQL repository tell each other about new events:
    /// `in-process` (one node, the default), a NATS JetStream URL (`nats://127.0.0.1:4222`) or a
    /// RabbitMQ URL (`amqp://USER:PASSWORD@HOST:5672/%2f`, `amqps://` for TLS).
    #[arg(long, env = "SLUICE_BROKER", default_value = "in-process")]
    broker: String,
    /// Where SQLite locations defined over the API live (default: `$SLUICE_HOME/data`); a
    /// relative Database_Name given over the API is taken from here, and paths outside it, `..`,
    /// symlinks out of it and `file:` URIs are refused.
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Environment variables `${VAR}` references in locations may read on this server: names or
    /// prefixes ending in `*`, separated by commas (default: none; `SLUICE_*` never).
    #[arg(long, env = "SLUICE_ENV_ALLOW", default_value = "")]
    env_allow: String,
    /// Setup mode: on a repository without users, create no `admin`; the first users are created
    /// over the API with a setup-mode token (`POST /auth/v1/setup`, HVR's first-run set-up).
    #[arg(long, env = "SLUICE_SETUP_MODE")]
    setup_mode: bool,
    /// Write a backup (every hub, the server settings, the users) this often: e.g. 24h, 30m, 7d
    /// (default: none). The first is written at start when none is due later.
    #[arg(long, value_parser = crate::backup::parse_every, value_name = "DURATION")]
    backup_every: Option<std::time::Duration>,
    /// How many rolling backups to keep: the oldest beyond are deleted.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    backup_keep: u32,
    /// Where rolling backups go (default: `$SLUICE_HOME/backups`).
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<std::path::PathBuf>,
    /// Worker threads of the job runtime: jobs (refresh, compare, activation, replication) run
    /// there at a lower CPU priority than the requests (default: one per core); 0 runs jobs on
    /// the request threads.
    #[arg(long, env = "SLUICE_JOB_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(0..=256))]
    job_threads: Option<u16>,
    /// CPU priority (nice, 0 to 19) of the job runtime's threads.
    #[arg(long, env = "SLUICE_JOB_NICE", value_name = "NICE",
          default_value_t = sluice_service::job_runtime::DEFAULT_JOB_NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    job_nice: i32,
}

impl RepoArg {
    /// The SQLite file of the repository, when it is one.
    fn sqlite_path(&self, g: &Global) -> Option<std::path::PathBuf> {
        sqlite_file(&self.spec(g))
    }
}

/// The SQLite file of a repository spec, read as the repository reads it (case, `sqlite://`,
/// surrounding blanks), so the file the location policy protects is the file opened; a spec that
/// does not parse fails at open instead.
fn sqlite_file(spec: &str) -> Option<std::path::PathBuf> {
    match sluice_repo::Spec::parse(spec, "repository") {
        Ok(sluice_repo::Spec::Sqlite(path)) => Some(path),
        _ => None,
    }
}

/// `sluice apikey …`.
#[derive(Subcommand, Debug)]
pub enum ApikeyCommand {
    /// Create an API key; its key and secret are printed once (only a hash of the secret is kept).
    Create {
        /// SysAdmin, HubOwner, ReadWrite, ReadExecRefresh, ReadExec or ReadOnly.
        #[arg(long)]
        level: AccessLevel,
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// List API keys (never their secrets).
    List {
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Delete an API key.
    Delete {
        /// The key.
        key: String,
        #[command(flatten)]
        repo: RepoArg,
    },
}

/// `sluice user …`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user; the password comes from --password or, by default, stdin.
    Add {
        /// Login name.
        name: String,
        /// SysAdmin, HubOwner, ReadWrite, ReadExecRefresh, ReadExec, ReadOnly or None.
        #[arg(long)]
        level: AccessLevel,
        /// The password (prefer stdin: flags show in process lists).
        #[arg(long)]
        password: Option<String>,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// List users.
    List {
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Change a user's level and/or password (password from stdin with --password-stdin).
    Set {
        /// Login name.
        name: String,
        /// New level.
        #[arg(long)]
        level: Option<AccessLevel>,
        /// Read a new password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        repo: RepoArg,
    },
    /// Delete a user.
    Delete {
        /// Login name.
        name: String,
        #[command(flatten)]
        repo: RepoArg,
    },
}

/// Opens the repository `spec` names.
pub(crate) async fn open(spec: &str) -> Result<Arc<dyn Repository>> {
    open_in(spec, &open_database(spec)?).await
}

/// The database `spec` names, opened once per process: on PostgreSQL, one pool that the
/// repository and the event store share.
fn open_database(spec: &str) -> Result<sluice_repo::Database> {
    sluice_repo::Database::open(spec, "repository")
        .with_context(|| format!("cannot open the repository {}", redact(spec)))
}

async fn open_in(spec: &str, db: &sluice_repo::Database) -> Result<Arc<dyn Repository>> {
    sluice_repo::open_repository_in(db)
        .await
        .with_context(|| format!("cannot open the repository {}", redact(spec)))
}

fn key(home: &Path) -> Result<SecretKey> {
    SecretKey::load(&home.join("secret.key")).context("cannot load the secret key")
}

/// Runs the hub server until Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs, g: &Global) -> Result<Outcome> {
    let spec = args.repo.spec(g);
    let mut protected = vec![g.home.join("secret.key"), g.home.join("hub.db")];
    protected.extend(args.repo.sqlite_path(g));
    let data_dir = args.data_dir.clone().unwrap_or_else(|| g.home.join("data"));
    let policy = LocationPolicy::server(&args.env_allow, &data_dir, protected)
        .map_err(anyhow::Error::msg)
        .context("invalid location policy (--data-dir, --env-allow)")?;
    let mut config = HubConfig::new(spec);
    config.broker = args.broker.clone();
    config.events = sluice_events::HubConfig::from_env().context("invalid event hub settings")?;
    config.secret_key = Some(key(&g.home)?);
    config.location_policy = Some(policy);
    config.admin_password = std::env::var("SLUICE_ADMIN_PASSWORD").ok();
    config.setup_mode = args.setup_mode;
    config.metrics_access = sluice_api::MetricsAccess::from_env()
        .map_err(anyhow::Error::msg)
        .context("invalid metrics settings")?;
    config.job_threads = match args.job_threads {
        Some(0) => None,
        Some(n) => Some(usize::from(n)),
        None => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    config.job_nice = args.job_nice;
    let hub = Hub::open(config).await?;
    if let Some(generated) = hub.generated_admin_password() {
        eprintln!(
            "created user admin (SysAdmin) with password {generated}\n  (shown once; set SLUICE_ADMIN_PASSWORD to choose it, change it with `sluice user set admin --password-stdin`)"
        );
    }
    match hub.admin_password_unused() {
        Some(sluice_service::UnusedPassword::NotAdmins) => eprintln!(
            "warning: SLUICE_ADMIN_PASSWORD is not the password of user admin, and was not used: it only \
             chooses the password of the admin a hub creates on its first start. Log in with the \
             admin's password, or change it with `sluice user set admin --password-stdin`"
        ),
        Some(sluice_service::UnusedPassword::NoAdmin) => eprintln!(
            "warning: SLUICE_ADMIN_PASSWORD was not used: this hub has users but none named admin, and \
             the variable only chooses the password of the admin a hub creates on its first start. \
             Log in as one of the hub's SysAdmin users"
        ),
        None => {}
    }
    match hub.reaped() {
        Ok(reaped) if !reaped.is_empty() => eprintln!(
            "ended {} job run(s) whose process had stopped: {}",
            reaped.len(),
            reaped
                .iter()
                .map(|r| r.job.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(_) => {}
        Err(error) => eprintln!("warning: cannot end the runs of stopped processes: {error:#}"),
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let broker = match hub.events().broker_target() {
        Some(target) => format!("{} at {target}", hub.events().broker_name()),
        None => hub.events().broker_name().to_owned(),
    };
    eprintln!(
        "sluice hub server listening on http://{addr} (repository {}, event broker {broker}, {})",
        hub.repository(),
        match hub.service().job_runtime() {
            Some((threads, nice)) => format!("jobs on {threads} thread(s) at nice {nice}"),
            None => "jobs on the request threads".to_owned(),
        }
    );
    // A wildcard address is reached on the loopback of its family from this machine.
    let dashboard = if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        std::net::SocketAddr::new(loopback, addr.port())
    } else {
        addr
    };
    eprintln!("dashboard: http://{dashboard}/ui (log in with a hub user)");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!(
            "shutting down: no new requests; running jobs stop at their next table (send the signal again to stop now)"
        );
        signal.cancel();
        // A job in the middle of a large table can take minutes to reach the next one. A second
        // signal stops at once: a table being written is left as it was (its load never
        // committed), and the next start ends the runs this process left behind.
        wait_for_signal().await;
        eprintln!("stopping now: running jobs are abandoned");
        std::process::exit(130);
    });
    if let Some(every) = args.backup_every {
        let rolling = sluice_service::backup::RollingBackups {
            every,
            keep: args.backup_keep as usize,
            dir: args
                .backup_dir
                .clone()
                .unwrap_or_else(|| g.home.join("backups")),
        };
        eprintln!(
            "rolling backups every {}s into {}, keeping {}",
            every.as_secs(),
            rolling.dir.display(),
            rolling.keep
        );
        tokio::spawn(
            hub.service()
                .as_user("sluice-backup")
                .run_rolling_backups(rolling, shutdown.clone()),
        );
    }
    hub.serve(listener, shutdown)
        .await
        .context("the server stopped")?;
    Ok(Outcome::Ok)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn read_password_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the password from stdin")?;
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on stdin");
    }
    Ok(password)
}

/// `sluice user …`.
pub async fn user(cmd: UserCommand, g: &Global) -> Result<Outcome> {
    let who = args::user();
    match cmd {
        UserCommand::Add {
            name,
            level,
            password,
            repo,
        } => {
            let password = match password {
                Some(p) => p,
                None => read_password_stdin()?,
            };
            let service = HubService::new(
                open(&repo.spec(g)).await?,
                sluice_service::registry::process_env(),
                who,
            );
            service.create_user(&name, level, &password).await?;
            eprintln!("user {name} added with level {level}");
        }
        UserCommand::List { repo } => {
            let service = HubService::new(
                open(&repo.spec(g)).await?,
                sluice_service::registry::process_env(),
                who,
            );
            let users = service.users().await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for u in users {
                    println!(
                        "{:<24} {:<16} created {} by {}",
                        u.name,
                        u.level,
                        u.created.format("%Y-%m-%d %H:%M"),
                        u.creator
                    );
                }
            }
        }
        UserCommand::Set {
            name,
            level,
            password_stdin,
            repo,
        } => {
            if level.is_none() && !password_stdin {
                bail!("nothing to change: give --level and/or --password-stdin");
            }
            let password = password_stdin.then(read_password_stdin).transpose()?;
            let service = HubService::new(
                open(&repo.spec(g)).await?,
                sluice_service::registry::process_env(),
                who,
            );
            // The operator resets passwords: no current password is asked for.
            let change = password
                .as_deref()
                .map(|new| sluice_service::auth::PasswordChange { new, current: None });
            service.update_user(&name, level, change, true).await?;
            eprintln!("user {name} changed");
        }
        UserCommand::Delete { name, repo } => {
            let service = HubService::new(
                open(&repo.spec(g)).await?,
                sluice_service::registry::process_env(),
                who,
            );
            service.delete_user(&name).await?;
            eprintln!("user {name} deleted");
        }
    }
    Ok(Outcome::Ok)
}

pub async fn apikey(cmd: ApikeyCommand, g: &Global) -> Result<Outcome> {
    let who = args::user();
    let repo = match &cmd {
        ApikeyCommand::Create { repo, .. }
        | ApikeyCommand::List { repo }
        | ApikeyCommand::Delete { repo, .. } => repo.spec(g),
    };
    let service = HubService::new(
        open(&repo).await?,
        sluice_service::registry::process_env(),
        who,
    );
    match cmd {
        ApikeyCommand::Create {
            level, description, ..
        } => {
            let (key, secret) = service.create_api_key(level, &description).await?;
            if g.json {
                let out = serde_json::json!({
                    "key": key.key, "secret": secret, "level": key.level, "description": key.description,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("key:    {}", key.key);
                println!("secret: {secret}");
            }
            eprintln!(
                "API key {} created with level {}; the secret is shown only now",
                key.key, key.level
            );
        }
        ApikeyCommand::List { .. } => {
            let keys = service.api_keys().await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    println!(
                        "{:<20} {:<16} created {} by {:<12} {}",
                        k.key,
                        k.level,
                        k.created.format("%Y-%m-%d %H:%M"),
                        k.creator,
                        k.description
                    );
                }
            }
        }
        ApikeyCommand::Delete { key, .. } => {
            service.delete_api_key(&key).await?;
            eprintln!("API key {key} deleted");
        }
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;
    use std::path::PathBuf;

    #[test]
    fn the_protected_repository_file_is_the_one_opened() {
        for spec in [
            "sqlite:/x/hub.db",
            "SQLITE:/x/hub.db",
            " sqlite:///x/hub.db ",
            "/x/hub.db",
        ] {
            assert_eq!(
                sqlite_file(spec),
                Some(PathBuf::from("/x/hub.db")),
                "{spec:?}"
            );
        }
        assert_eq!(sqlite_file("postgres://u@h/d"), None);
        assert_eq!(sqlite_file("PostgreSQL://u@h/d"), None);
    }
}
