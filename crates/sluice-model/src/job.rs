//! Jobs: their names, types and states.
//!
//! A job name is built by exactly one function, [`JobName::new`], from HVR's pattern:
//! `{chn}-refr-{src}-{tgt}`, `{chn}-cmp-{src}-{tgt}`, `{chn}-cap-{loc}`, `{chn}-integ-{loc}`,
//! `{chn}-activate`, `{chn}-deactivate`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::{ChannelName, LocationName};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobType {
    /// Copies tables from a source to a target location.
    Refresh,
    /// Compares tables of a source and a target location.
    Compare,
    /// Captures changes at a location.
    Capture,
    /// Integrates captured changes into a location.
    Integrate,
    /// Activates replication of a channel.
    Activate,
    /// Deactivates replication of a channel.
    Deactivate,
}

impl JobType {
    /// The word this type contributes to a job name.
    pub fn infix(self) -> &'static str {
        match self {
            JobType::Refresh => "refr",
            JobType::Compare => "cmp",
            JobType::Capture => "cap",
            JobType::Integrate => "integ",
            JobType::Activate => "activate",
            JobType::Deactivate => "deactivate",
        }
    }

    /// How many locations the name of a job of this type carries.
    pub fn location_count(self) -> usize {
        match self {
            JobType::Refresh | JobType::Compare => 2,
            JobType::Capture | JobType::Integrate => 1,
            JobType::Activate | JobType::Deactivate => 0,
        }
    }

    const ALL: [JobType; 6] = [
        JobType::Refresh,
        JobType::Compare,
        JobType::Capture,
        JobType::Integrate,
        JobType::Activate,
        JobType::Deactivate,
    ];
}

/// A job name; see the module documentation for its shape.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName {
    text: String,
    channel: ChannelName,
    job_type: JobType,
    locations: Vec<LocationName>,
}

/// Text that is not a job name, or locations that do not fit the job type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job name {name:?}: {reason}")]
pub struct JobNameError {
    name: String,
    reason: String,
}

impl JobName {
    /// The job of `job_type` on `channel` between `locations` (source first).
    pub fn new(
        channel: &ChannelName,
        job_type: JobType,
        locations: &[&LocationName],
    ) -> Result<Self, JobNameError> {
        let mut text = format!("{channel}-{}", job_type.infix());
        for loc in locations {
            text.push('-');
            text.push_str(loc.as_str());
        }
        if locations.len() != job_type.location_count() {
            return Err(JobNameError {
                name: text,
                reason: format!(
                    "a {} job names {} location(s)",
                    job_type.infix(),
                    job_type.location_count()
                ),
            });
        }
        Ok(JobName {
            text,
            channel: channel.clone(),
            job_type,
            locations: locations.iter().map(|l| (*l).clone()).collect(),
        })
    }

    /// The refresh job from `source` to `target`.
    pub fn refresh(channel: &ChannelName, source: &LocationName, target: &LocationName) -> Self {
        Self::new(channel, JobType::Refresh, &[source, target])
            .expect("a refresh job names two locations")
    }

    /// The compare job between `source` and `target`.
    pub fn compare(channel: &ChannelName, source: &LocationName, target: &LocationName) -> Self {
        Self::new(channel, JobType::Compare, &[source, target])
            .expect("a compare job names two locations")
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The channel of the job.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The job type.
    pub fn job_type(&self) -> JobType {
        self.job_type
    }

    /// The locations in the name, source first.
    pub fn locations(&self) -> &[LocationName] {
        &self.locations
    }
}

impl FromStr for JobName {
    type Err = JobNameError;

    fn from_str(text: &str) -> Result<Self, JobNameError> {
        let fail = |reason: &str| JobNameError {
            name: text.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = text.split('-').collect();
        if parts.len() < 2 {
            return Err(fail("expected {channel}-{type}[-{location}…]"));
        }
        let channel = ChannelName::new(parts[0]).map_err(|e| fail(&e.to_string()))?;
        let job_type = JobType::ALL
            .into_iter()
            .find(|t| t.infix() == parts[1])
            .ok_or_else(|| {
                fail("unknown job type; expected refr, cmp, cap, integ, activate or deactivate")
            })?;
        let locations = parts[2..]
            .iter()
            .map(|p| LocationName::new(*p).map_err(|e| fail(&e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&LocationName> = locations.iter().collect();
        JobName::new(&channel, job_type, &refs)
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl Serialize for JobName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The state of a job, spelled as HVR's repository spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Waiting to run.
    Pending,
    /// Running now.
    Running,
    /// The last run failed.
    Failed,
    /// Failed and waiting for its next retry.
    Retry,
    /// Suspended by a user; does not start until unsuspended.
    Suspend,
    /// The last run of an event-driven job finished.
    Done,
}

impl JobState {
    /// The wire spelling (`RUNNING`, `SUSPEND`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Failed => "FAILED",
            JobState::Retry => "RETRY",
            JobState::Suspend => "SUSPEND",
            JobState::Done => "DONE",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            JobState::Pending,
            JobState::Running,
            JobState::Failed,
            JobState::Retry,
            JobState::Suspend,
            JobState::Done,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> LocationName {
        LocationName::new(s).unwrap()
    }

    #[test]
    fn names_follow_hvr_patterns() {
        let ch = ChannelName::new("sales").unwrap();
        assert_eq!(
            JobName::refresh(&ch, &loc("src"), &loc("tgt")).as_str(),
            "sales-refr-src-tgt"
        );
        assert_eq!(
            JobName::compare(&ch, &loc("src"), &loc("tgt")).as_str(),
            "sales-cmp-src-tgt"
        );
        assert_eq!(
            JobName::new(&ch, JobType::Capture, &[&loc("src")])
                .unwrap()
                .as_str(),
            "sales-cap-src"
        );
        assert!(JobName::new(&ch, JobType::Capture, &[]).is_err());
    }

    #[test]
    fn parse_round_trips() {
        let job: JobName = "sales-refr-src-tgt".parse().unwrap();
        assert_eq!(job.job_type(), JobType::Refresh);
        assert_eq!(job.locations()[1].as_str(), "tgt");
        assert_eq!(job.to_string(), "sales-refr-src-tgt");
        assert!("sales-zap-src".parse::<JobName>().is_err());
        assert!("sales-refr-src".parse::<JobName>().is_err());
        assert!("Sales-refr-a-b".parse::<JobName>().is_err());
    }
}
