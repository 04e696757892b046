//! Waiting for an activated channel to catch up: "every change committed at the source before
//! position P is at every target".
//!
//! The engine acknowledges a source position only once every target stored the changes up to it
//! (and, with nothing pending, on the source's idle messages), so a channel has caught up with P
//! when its acknowledged — durable — position is at or past P. That position is kept twice: in
//! the process that runs the replication (a watch the waiter follows at once), and in the
//! repository as the `Durable_Position` result of the capture job's current event, rewritten with
//! the other figures every two seconds, so a waiter in any process of the hub can read it.
//!
//! P comes from [`ChangeReader::current_position`](sluice_connector::ChangeReader::current_position)
//! at the channel's capture location ([`HubService::source_position`]). Online compare and the
//! `/v1` syncs of an activated connector are built on [`HubService::wait_caught_up`].

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use sluice_model::{ChannelName, HubName, JobState, LocationName, Position, ResultName};
use sluice_repo::{EventFilter, PropBag};

use crate::replication::{capture_job, integrate_job};
use crate::{HubService, Result, ServiceError, ServiceErrorKind};

/// How long a caller waits for a channel to catch up unless it says otherwise.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a waiter in another process than the replication's reads the repository.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// A channel that caught up.
#[derive(Debug, Clone, PartialEq)]
pub struct CaughtUp {
    /// The position waited for.
    pub target: Position,
    /// The channel's durable position when the wait ended (at or past `target`).
    pub durable: Position,
    /// How long the wait took.
    pub waited: Duration,
}

/// What the activation record of a channel says, for waiting.
pub(crate) struct Activated {
    /// The capture location.
    pub(crate) source: LocationName,
    /// The integrate locations.
    pub(crate) targets: Vec<LocationName>,
    /// `loading` or `active`.
    pub(crate) state: String,
}

impl HubService {
    pub(crate) async fn activation(
        &self,
        hub: &HubName,
        channel: &ChannelName,
    ) -> Result<Activated> {
        let bag = PropBag::Activation(hub.clone(), channel.to_string());
        let record = self.props_store().props(&bag).await?.ok_or_else(|| {
            ServiceError::new(
                ServiceErrorKind::Conflict,
                format!("channel {channel} is not activated: it has no replication to wait for (sluice activate {channel})"),
            )
        })?;
        let text = |k: &str| record.get(k).and_then(Json::as_str).unwrap_or_default();
        let source = LocationName::new(text("source"))
            .map_err(|e| ServiceError::invalid(format!("activation record of {channel}: {e}")))?;
        let targets = record
            .get("targets")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().and_then(|s| LocationName::new(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Activated {
            source,
            targets,
            state: text("state").to_owned(),
        })
    }

    /// The log position of the capture location of activated `channel` now: every transaction
    /// committed at the source before this call is at or before it.
    pub async fn source_position(&self, hub: &HubName, channel: &ChannelName) -> Result<Position> {
        let activated = self.activation(hub, channel).await?;
        let location = self.location(hub, &activated.source).await?;
        let connector = self.capture_connector(&location)?;
        let reader = connector.change_reader().ok_or_else(|| {
            ServiceError::invalid(format!(
                "location {} cannot capture changes",
                activated.source
            ))
        })?;
        reader
            .current_position()
            .await
            .map_err(|e| ServiceError::connector(format!("location {}", activated.source), e))
    }

    /// The durable position of activated `channel`: what this process's run of its replication
    /// acknowledged, else what the capture job's current (or last) run recorded.
    pub async fn durable_position(
        &self,
        hub: &HubName,
        channel: &ChannelName,
    ) -> Result<Option<Position>> {
        if let Some(rx) = self.inner.replications.durable(hub, channel)
            && let Some(p) = rx.borrow().clone()
        {
            return Ok(Some(p));
        }
        let activated = self.activation(hub, channel).await?;
        self.recorded_durable(hub, channel, &activated.source).await
    }

    async fn recorded_durable(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        source: &LocationName,
    ) -> Result<Option<Position>> {
        let job = capture_job(channel, source);
        let Some(record) = self.job_store().job(hub, &job).await? else {
            return Ok(None);
        };
        let Some(event) = record.last_event else {
            return Ok(None);
        };
        let filter = EventFilter {
            hub: Some(hub.clone()),
            ids: vec![event],
            fetch_results: true,
            result_names: vec![ResultName::DurablePosition],
            ..Default::default()
        };
        let events = self.job_store().events(&filter).await?;
        let value = events
            .iter()
            .flat_map(|e| e.results.iter())
            .find(|r| r.name == ResultName::DurablePosition && r.table.is_none())
            .map(|r| r.value.clone());
        Ok(value.and_then(|v| serde_json::from_str::<Position>(&v).ok()))
    }

    /// Why activated `channel` is not replicating and will not by itself: a job suspended or
    /// failed, or the activation still loading; `None` while it runs (or will run again: a job
    /// waiting to retry, or not yet started by a supervisor).
    pub(crate) async fn replication_held(
        &self,
        hub: &HubName,
        channel: &ChannelName,
    ) -> Result<Option<String>> {
        let activated = self.activation(hub, channel).await?;
        if activated.state != "active" && activated.state != "loading" {
            return Ok(Some(format!(
                "channel {channel}'s activation is {}",
                activated.state
            )));
        }
        let mut jobs = vec![capture_job(channel, &activated.source)];
        jobs.extend(activated.targets.iter().map(|t| integrate_job(channel, t)));
        for job in jobs {
            if let Some(r) = self.job_store().job(hub, &job).await? {
                match r.state {
                    JobState::Suspend => {
                        return Ok(Some(format!(
                            "job {job} is suspended (sluice job resume {job})"
                        )));
                    }
                    JobState::Failed => {
                        return Ok(Some(format!(
                            "job {job} failed (see its last event; sluice job start {job} runs it again)"
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(None)
    }

    /// Waits until activated `channel`'s replication has passed source position `target`: every
    /// change committed at the source before `target` is stored at every target. Fails at once
    /// when the channel is not activated or a job of its replication is suspended or failed,
    /// and after `timeout` with how far behind the channel is.
    pub async fn wait_caught_up(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        target: &Position,
        timeout: Duration,
    ) -> Result<CaughtUp> {
        let started = Instant::now();
        let deadline = started + timeout;
        let activated = self.activation(hub, channel).await?;
        let mut last_check = Instant::now();
        if let Some(why) = self.replication_held(hub, channel).await? {
            return Err(not_replicating(channel, &why));
        }
        loop {
            let here = self.inner.replications.durable(hub, channel);
            let durable = match &here {
                Some(rx) => rx.borrow().clone(),
                None => None,
            };
            let durable = match durable {
                Some(p) => Some(p),
                None => {
                    self.recorded_durable(hub, channel, &activated.source)
                        .await?
                }
            };
            if let Some(d) = &durable {
                match d.cmp_same(target) {
                    Some(Ordering::Equal | Ordering::Greater) => {
                        return Ok(CaughtUp {
                            target: target.clone(),
                            durable: d.clone(),
                            waited: started.elapsed(),
                        });
                    }
                    Some(Ordering::Less) => {}
                    None => {
                        return Err(ServiceError::invalid(format!(
                            "channel {channel}: position {target} cannot be compared with the replication's position {d}"
                        )));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ServiceError::new(
                    ServiceErrorKind::Failed,
                    format!(
                        "channel {channel} did not catch up with source position {target} within {:.0} s: {}",
                        timeout.as_secs_f64(),
                        behind(durable.as_ref(), target)
                    ),
                ));
            }
            if now.duration_since(last_check) >= Duration::from_secs(1) {
                last_check = now;
                if let Some(why) = self.replication_held(hub, channel).await? {
                    return Err(not_replicating(channel, &why));
                }
            }
            let nap = POLL_EVERY.min(deadline.saturating_duration_since(now));
            match here {
                Some(mut rx) => {
                    let _ = tokio::time::timeout(nap, rx.changed()).await;
                }
                None => tokio::time::sleep(nap).await,
            }
        }
    }

    /// Takes the source's current position and waits until `channel` has passed it
    /// ([`HubService::source_position`], then [`HubService::wait_caught_up`]).
    pub async fn catch_up(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        timeout: Duration,
    ) -> Result<CaughtUp> {
        let target = self.source_position(hub, channel).await?;
        self.wait_caught_up(hub, channel, &target, timeout).await
    }
}

fn not_replicating(channel: &ChannelName, why: &str) -> ServiceError {
    ServiceError::new(
        ServiceErrorKind::Conflict,
        format!("channel {channel} is not replicating: {why}"),
    )
}

/// How far `durable` is behind `target`, in words.
fn behind(durable: Option<&Position>, target: &Position) -> String {
    match (durable, target) {
        (None, _) => "its replication has not stored any position yet".to_owned(),
        (Some(Position::Lsn { lsn: d }), Position::Lsn { lsn: t }) => format!(
            "its targets have stored up to {} ({} bytes of source log behind)",
            Position::Lsn { lsn: *d },
            t.saturating_sub(*d)
        ),
        (Some(d), _) => format!("its targets have stored up to {d}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_names_the_stored_position_and_the_distance() {
        let lsn = |lsn| Position::Lsn { lsn };
        assert_eq!(
            behind(Some(&lsn(0x100)), &lsn(0x180)),
            "its targets have stored up to 0/100 (128 bytes of source log behind)"
        );
        assert_eq!(
            behind(None, &lsn(1)),
            "its replication has not stored any position yet"
        );
    }
}
