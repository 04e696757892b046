//! The hub server the API and event benchmarks load: the one `sluice serve` runs
//! ([`sluice_api::Hub::open`]), on a random loopback port and on its own Tokio runtime, so the
//! load generator's threads do not serve requests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_api::{Hub, HubConfig};
use sluice_service::secrets::SecretKey;
use tokio_util::sync::CancellationToken;

/// Worker threads of the server's runtime.
pub(crate) const SERVER_THREADS: usize = 2;

/// A running hub server.
pub(crate) struct HubServer {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    runtime: tokio::runtime::Runtime,
}

impl HubServer {
    /// Starts a hub server on repository `spec` whose `admin` has `admin_password`; `key` seals
    /// location passwords.
    pub(crate) async fn start(spec: &str, admin_password: &str, key: &str) -> Result<HubServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SERVER_THREADS)
            .thread_name("hub-server")
            .enable_all()
            .build()
            .context("cannot start the server's runtime")?;
        let shutdown = CancellationToken::new();
        let mut config = HubConfig::new(spec);
        config.events =
            sluice_events::HubConfig::from_env().context("invalid event hub settings")?;
        config.secret_key = Some(SecretKey::from_text(key));
        config.admin_password = Some(admin_password.to_owned());
        let stop = shutdown.clone();
        let started = runtime.spawn(async move {
            let hub = Arc::new(Hub::open(config).await?);
            let (addr, served) = hub.spawn_on_loopback(stop).await?;
            Ok::<_, anyhow::Error>((format!("http://{addr}"), served))
        });
        let (base, served) = started.await.context("the server's start-up failed")??;
        Ok(HubServer {
            base,
            shutdown,
            served,
            runtime,
        })
    }

    /// Stops the server: live streams end, requests finish, jobs still running are abandoned
    /// with the runtime (the caller has cancelled them).
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.served).await;
        self.runtime.shutdown_background();
    }
}

/// A `sluice serve` child process of this binary on a random loopback port, with its own
/// `SLUICE_HOME` (a temp dir); killed when dropped.
pub(crate) struct ServeProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The server's last lines on stderr, for a failure's message.
    tail: Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    _home: tempfile::TempDir,
}

/// Lines of the server's stderr kept for a failure's message.
const TAIL_LINES: usize = 20;

impl ServeProcess {
    /// Starts `sluice serve --listen 127.0.0.1:0 EXTRA…` whose `admin` has `admin_password`;
    /// returns once it listens.
    pub(crate) fn start(
        extra: &[&str],
        admin_password: &str,
        prefix: &str,
    ) -> Result<ServeProcess> {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let home = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("cannot create a temp dir")?;
        let exe = std::env::current_exe().context("cannot find the sluice binary")?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SLUICE_HOME", home.path())
            .env("SLUICE_ADMIN_PASSWORD", admin_password)
            .env_remove("SLUICE_REPO")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start sluice serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let url = loop {
            let Some(line) = lines.next() else {
                let _ = child.wait();
                anyhow::bail!(
                    "sluice serve stopped before listening:\n{}",
                    seen.join("\n")
                );
            };
            let line = line?;
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .context("no address")?
                    .to_owned();
            }
            seen.push(line);
        };
        let tail = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let kept = tail.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut tail = kept.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        Ok(ServeProcess {
            child,
            url,
            tail,
            _home: home,
        })
    }

    /// The server's `SLUICE_HOME` (its data directory is `data/` there).
    pub(crate) fn home(&self) -> &std::path::Path {
        self._home.path()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the server's last lines, when the server has stopped.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
                anyhow::bail!(
                    "sluice serve stopped ({status}); its last lines:\n{}",
                    tail.iter().cloned().collect::<Vec<_>>().join("\n")
                )
            }
            Err(e) => Err(e).context("cannot check the sluice serve process"),
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
