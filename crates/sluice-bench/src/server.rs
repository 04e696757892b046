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
