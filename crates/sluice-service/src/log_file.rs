//! HVR's log files mapped onto the event logs sluice keeps in the repository: `hvr.out` (every
//! event's log lines), `hvr.err` (those of failed events), `{job}.out` and `{job}.err` (a job's).
//! A file name is looked up, never opened: sluice writes no log files.

use chrono::{DateTime, Utc};
use sluice_model::{EventState, HubName, JobName};
use sluice_repo::EventFilter;

use crate::{HubService, Result, ServiceError};

/// The events whose lines a log file holds at most (the newest).
pub const MAX_LOG_EVENTS: usize = 1000;

/// A log file HVR names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    job: Option<JobName>,
    errors_only: bool,
}

impl LogFile {
    /// The file `name` stands for (`NotFound` for any other name).
    pub fn parse(name: &str) -> Result<LogFile> {
        let missing = || ServiceError::not_found(format!("log file {name:?} does not exist"));
        let (stem, errors_only) = match name.rsplit_once('.') {
            Some((stem, "out")) => (stem, false),
            Some((stem, "err")) => (stem, true),
            _ => return Err(missing()),
        };
        let job = match stem {
            "hvr" => None,
            j => Some(j.parse::<JobName>().map_err(|_| missing())?),
        };
        Ok(LogFile { job, errors_only })
    }
}

impl HubService {
    /// The lines of `file` of `hub`, oldest first: `(time, "ev_id type: text")`; with `day`
    /// (`YYYYMMDD`, HVR's archive), only that day's.
    pub async fn log_lines(
        &self,
        hub: &HubName,
        file: &LogFile,
        day: Option<&str>,
    ) -> Result<Vec<(DateTime<Utc>, String)>> {
        self.hub(hub).await?;
        let (begin, end) = match day {
            None => (None, None),
            Some(d) => {
                let date = chrono::NaiveDate::parse_from_str(d, "%Y%m%d").map_err(|_| {
                    ServiceError::not_found(format!(
                        "log archive {d:?} does not exist (archives are days, YYYYMMDD)"
                    ))
                })?;
                let start = date
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_utc();
                (Some(start), Some(start + chrono::TimeDelta::days(1)))
            }
        };
        let events = self
            .job_store()
            .events(&EventFilter {
                hub: Some(hub.clone()),
                jobs: file.job.iter().cloned().collect(),
                states: if file.errors_only {
                    vec![EventState::Failed]
                } else {
                    Vec::new()
                },
                max_events: Some(MAX_LOG_EVENTS),
                end,
                ..Default::default()
            })
            .await?;
        let mut lines = Vec::new();
        for e in events.iter().rev() {
            for (t, text) in self.job_store().event_log(e.id).await? {
                if begin.is_some_and(|b| t < b) || end.is_some_and(|x| t >= x) {
                    continue;
                }
                lines.push((t, format!("{} {}: {text}", e.id, e.event_type)));
            }
        }
        lines.sort_by_key(|(t, _)| *t);
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up() {
        assert!(LogFile::parse("hvr.out").is_ok());
        assert!(LogFile::parse("hvr.err").unwrap().errors_only);
        assert!(
            LogFile::parse("ch1-refr-src-tgt.out")
                .unwrap()
                .job
                .is_some()
        );
        for bad in [
            "../etc/passwd",
            "hvr.out/../x",
            "/etc/passwd.out",
            "hvr",
            "x.log",
        ] {
            assert!(LogFile::parse(bad).is_err(), "{bad}");
        }
    }
}
