//! What the hub server reports about itself: its health check and the repository's gauges on
//! `/metrics`. The API asks the service for these instead of reading the repository.

use std::collections::BTreeMap;

use sluice_model::HubName;

use crate::{HubService, Result};

/// The repository's side of `/metrics` for one hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubGauge {
    /// The hub.
    pub hub: HubName,
    /// Whether it is frozen.
    pub frozen: bool,
    /// Its jobs counted by state (`RUNNING`, …), in state order; `None` when they could not be
    /// read (the gauge lines of that hub are then left out).
    pub job_states: Option<BTreeMap<&'static str, u64>>,
}

impl HubService {
    /// The health check: how many hubs the repository holds. An error means the repository is
    /// unavailable.
    pub async fn health(&self) -> Result<usize> {
        Ok(self.definition_store().hubs().await?.len())
    }

    /// The gauges of every hub, by name. An error means the repository could not list the hubs.
    pub async fn metrics_snapshot(&self) -> Result<Vec<HubGauge>> {
        let hubs = self.definition_store().hubs().await?;
        let mut gauges = Vec::with_capacity(hubs.len());
        for h in hubs {
            let job_states = match self.job_store().jobs(&h.hub.name).await {
                Ok(jobs) => {
                    let mut counts = BTreeMap::new();
                    for j in jobs {
                        *counts.entry(j.state.as_str()).or_insert(0u64) += 1;
                    }
                    Some(counts)
                }
                Err(_) => None,
            };
            gauges.push(HubGauge {
                frozen: h.state == sluice_model::definition::HubState::Frozen,
                hub: h.hub.name,
                job_states,
            });
        }
        Ok(gauges)
    }
}
