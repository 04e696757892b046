//! Capture and integrate latency over time, for the channel page's lag chart: a small ring of
//! samples per replicating channel, kept in memory. A sampler reads the figures of the
//! replications this process runs every few seconds while the dashboard is in use (it starts
//! with the first channel page and stops with the router); the page also samples when it reads
//! the figures.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_model::{ChannelName, HubName};
use sluice_service::HubService;
use sluice_service::replication::ReplicationStats;

/// Samples kept per channel: ten minutes at one every [`EVERY`].
const KEPT: usize = 300;
/// How often the sampler reads the figures.
const EVERY: Duration = Duration::from_secs(2);

/// One reading of a channel's latency.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Seconds from a source commit to its capture, last seen.
    pub capture: Option<f64>,
    /// Seconds from a source commit to its commit at the slowest target, last batch.
    pub integrate: Option<f64>,
}

/// The samples of every channel this process replicates.
#[derive(Default)]
pub(crate) struct LagHistory {
    samples: Mutex<HashMap<(HubName, ChannelName), VecDeque<Sample>>>,
    sampler: OnceLock<()>,
}

impl LagHistory {
    /// Records a sample per channel of `figures`, at most one a second per channel.
    pub(crate) fn record(
        &self,
        at: DateTime<Utc>,
        figures: &[((HubName, ChannelName), ReplicationStats)],
    ) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        for (key, s) in figures {
            let ring = samples.entry(key.clone()).or_default();
            if ring
                .back()
                .is_some_and(|last| (at - last.at) < chrono::Duration::seconds(1))
            {
                continue;
            }
            if ring.len() == KEPT {
                ring.pop_front();
            }
            ring.push_back(Sample {
                at,
                capture: s.capture_latency,
                integrate: s.integrate_latency.values().copied().reduce(f64::max),
            });
        }
    }

    /// The samples of a channel, oldest first.
    pub(crate) fn samples(&self, hub: &HubName, channel: &ChannelName) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(hub.clone(), channel.clone()))
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts the sampler once; it ends when the history is dropped.
    pub(crate) fn start_sampling(self: &Arc<Self>, service: &HubService) {
        if self.sampler.set(()).is_err() {
            return;
        }
        let history: Weak<LagHistory> = Arc::downgrade(self);
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                let Some(history) = history.upgrade() else {
                    break;
                };
                history.record(Utc::now(), &service.replication_figures());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sluice_model::LocationName;

    #[test]
    fn the_ring_keeps_the_newest_samples_one_a_second_with_the_slowest_target() {
        let history = LagHistory::default();
        let key = (HubName::new("h").unwrap(), ChannelName::new("c").unwrap());
        let stats = |n: u64| ReplicationStats {
            capture_latency: Some(n as f64),
            integrate_latency: [
                (LocationName::new("a").unwrap(), n as f64 + 1.0),
                (LocationName::new("b").unwrap(), n as f64 + 5.0),
            ]
            .into(),
            ..Default::default()
        };
        let t0 = Utc::now();
        for n in 0..(KEPT as u64 + 10) {
            let at = t0 + chrono::Duration::seconds(n as i64);
            history.record(at, &[(key.clone(), stats(n))]);
            // A second reading within the same second is not kept.
            history.record(at, &[(key.clone(), stats(9999))]);
        }
        let samples = history.samples(&key.0, &key.1);
        assert_eq!(samples.len(), KEPT);
        assert_eq!(samples[0].capture, Some(10.0));
        assert_eq!(samples[0].integrate, Some(15.0));
        assert_eq!(samples[KEPT - 1].capture, Some((KEPT + 9) as f64));
        assert!(
            history
                .samples(&key.0, &ChannelName::new("other").unwrap())
                .is_empty()
        );
    }
}
