//! Statistics (HVR's `stats/metrics`), computed from the events of refreshes and compares and
//! their per-table results: no separate statistics job or table.
//!
//! A metric's value for a time bucket is the sum over the tables' results of the events that
//! finished in that bucket. The location of a refresh's or compare's metrics is its target (the
//! location the rows were written to or compared on).

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sluice_model::{EventState, EventType, HubName, ResultName};
use sluice_repo::{EventFilter, EventRecord};

use crate::{HubService, Result, ServiceError};

/// A metric: its name, unit, and what it sums.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// HVR-style name (`Refresh Rows`).
    pub name: &'static str,
    /// Unit (`rows`, `secs`, `bytes`, `tables`).
    pub unit: &'static str,
    event_type: EventType,
    source: Source,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    /// The sum of these results of the table.
    Results(&'static [ResultName]),
    /// 1 for a table whose `Table_State` is `FAILED`.
    Failed,
    /// 1 for a table that has a `Table_State`.
    Tables,
    /// The largest of this result (seconds) in the bucket, in milliseconds.
    MaxMillis(ResultName),
}

/// The metrics sluice computes.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "Refresh Rows",
        unit: "rows",
        event_type: EventType::Refresh,
        source: Source::Results(&[ResultName::TargetRowsUsed]),
    },
    Metric {
        name: "Refresh Source Rows",
        unit: "rows",
        event_type: EventType::Refresh,
        source: Source::Results(&[ResultName::SourceRowsUsed]),
    },
    Metric {
        name: "Refresh Bytes",
        unit: "bytes",
        event_type: EventType::Refresh,
        source: Source::Results(&[ResultName::BytesUsed]),
    },
    Metric {
        name: "Refresh Duration",
        unit: "secs",
        event_type: EventType::Refresh,
        source: Source::Results(&[ResultName::TableDuration]),
    },
    Metric {
        name: "Refresh Tables",
        unit: "tables",
        event_type: EventType::Refresh,
        source: Source::Tables,
    },
    Metric {
        name: "Refresh Failures",
        unit: "tables",
        event_type: EventType::Refresh,
        source: Source::Failed,
    },
    Metric {
        name: "Compare Rows",
        unit: "rows",
        event_type: EventType::Compare,
        source: Source::Results(&[ResultName::SourceRowsUsed]),
    },
    Metric {
        name: "Compare Duration",
        unit: "secs",
        event_type: EventType::Compare,
        source: Source::Results(&[ResultName::TableDuration]),
    },
    Metric {
        name: "Compare Differences",
        unit: "rows",
        event_type: EventType::Compare,
        source: Source::Results(&[
            ResultName::RowsOnlyOnSource,
            ResultName::RowsOnlyOnTarget,
            ResultName::RowsWhichDiffer,
        ]),
    },
    Metric {
        name: "Compare Tables",
        unit: "tables",
        event_type: EventType::Compare,
        source: Source::Tables,
    },
    Metric {
        name: "Compare Failures",
        unit: "tables",
        event_type: EventType::Compare,
        source: Source::Failed,
    },
    Metric {
        name: "Capture Rows",
        unit: "rows",
        event_type: EventType::Capture,
        source: Source::Results(&[ResultName::CapturedRows]),
    },
    Metric {
        name: "Capture Latency",
        unit: "ms",
        event_type: EventType::Capture,
        source: Source::MaxMillis(ResultName::CaptureLatency),
    },
    Metric {
        name: "Integrate Rows",
        unit: "rows",
        event_type: EventType::Integrate,
        source: Source::Results(&[ResultName::IntegratedRows]),
    },
    Metric {
        name: "Integrate Latency",
        unit: "ms",
        event_type: EventType::Integrate,
        source: Source::MaxMillis(ResultName::IntegrateLatency),
    },
];

/// Time granularities HVR has, in minutes (`0`: each event's own time).
pub const TIME_GRANULARITIES: &[u32] = &[0, 1, 10, 60, 1440];

/// Scopes HVR has: which of channel, location and table a value is per (`*` for all).
pub const SCOPES: &[&str] = &["***", "c**", "cl*", "c*t", "*l*", "clt"];

/// The events read at most for one query, newest first.
pub const MAX_STATS_EVENTS: usize = 100_000;

/// A statistics query.
#[derive(Debug, Clone, Default)]
pub struct MetricsQuery {
    /// Only these channels (empty: all).
    pub channels: Vec<String>,
    /// Only these locations (empty: all).
    pub locs: Vec<String>,
    /// Only these tables (empty: all).
    pub tables: Vec<String>,
    /// Only these metrics (empty: all).
    pub metrics: Vec<String>,
    /// Granularities in minutes (empty: 1).
    pub time_grans: Vec<u32>,
    /// Scopes (empty: `clt`).
    pub scopes: Vec<String>,
    /// Only events that finished at or after.
    pub begin: Option<DateTime<Utc>>,
    /// Only events that finished at or before.
    pub end: Option<DateTime<Utc>>,
}

/// One value: metric, granularity, scope, channel, location, table, bucket → sum.
pub type MetricValues = BTreeMap<(String, u32, String, String, String, String, DateTime<Utc>), i64>;

impl MetricsQuery {
    /// Checks names against HVR's lists; fills the defaults.
    pub fn checked(mut self) -> Result<MetricsQuery> {
        if let Some(m) = self
            .metrics
            .iter()
            .find(|m| !METRICS.iter().any(|x| x.name == m.as_str()))
        {
            return Err(ServiceError::invalid(format!(
                "metric: unknown metric {m:?} (known: {})",
                METRICS
                    .iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(g) = self
            .time_grans
            .iter()
            .find(|g| !TIME_GRANULARITIES.contains(g))
        {
            return Err(ServiceError::invalid(format!(
                "time_gran: {g} is not one of 0, 1, 10, 60, 1440"
            )));
        }
        if let Some(s) = self.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(ServiceError::invalid(format!(
                "scope: {s:?} is not one of {}",
                SCOPES.join(", ")
            )));
        }
        if let (Some(b), Some(e)) = (self.begin, self.end)
            && b > e
        {
            return Err(ServiceError::invalid("tstamp_begin: after tstamp_end"));
        }
        if self.time_grans.is_empty() {
            self.time_grans.push(1);
        }
        if self.scopes.is_empty() {
            self.scopes.push("clt".into());
        }
        self.time_grans.sort();
        self.time_grans.dedup();
        self.scopes.sort();
        self.scopes.dedup();
        Ok(self)
    }
}

fn bucket(t: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
    if minutes == 0 {
        return t;
    }
    t.duration_trunc(TimeDelta::minutes(i64::from(minutes)))
        .unwrap_or(t)
}

fn number(text: &str) -> i64 {
    text.trim()
        .parse::<i64>()
        .ok()
        .or_else(|| text.trim().parse::<f64>().ok().map(|f| f.round() as i64))
        .unwrap_or(0)
}

/// The metric values of `events` for `query` (already checked).
pub fn compute(events: &[EventRecord], query: &MetricsQuery) -> MetricValues {
    let wanted = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
    let mut out = MetricValues::new();
    let now = Utc::now();
    for e in events {
        // A capture or integrate run counts while it runs: its figures so far, now.
        let running = e.state == EventState::Active
            && matches!(e.event_type, EventType::Capture | EventType::Integrate);
        let Some(channel) = &e.channel else {
            continue;
        };
        let Some(finish) = e.finish.or(running.then_some(now)) else {
            continue;
        };
        if !running
            && !matches!(
                e.state,
                EventState::Done | EventState::Failed | EventState::Canceled
            )
        {
            continue;
        }
        if e.state == EventState::Canceled
            && !matches!(e.event_type, EventType::Capture | EventType::Integrate)
        {
            continue;
        }
        let loc = e.loc2.as_ref().or(e.loc.as_ref()).map(|l| l.to_string());
        let loc = loc.unwrap_or_default();
        if !wanted(&query.channels, channel.as_str()) || !wanted(&query.locs, &loc) {
            continue;
        }
        let mut tables: BTreeMap<String, Vec<(ResultName, &str)>> = BTreeMap::new();
        for r in &e.results {
            if let Some(t) = &r.table {
                tables
                    .entry(t.to_string())
                    .or_default()
                    .push((r.name, r.value.as_str()));
            }
        }
        for (table, results) in &tables {
            if !wanted(&query.tables, table) {
                continue;
            }
            let state = results
                .iter()
                .find(|(n, _)| *n == ResultName::TableState)
                .map(|(_, v)| *v);
            for m in METRICS
                .iter()
                .filter(|m| m.event_type == e.event_type && wanted(&query.metrics, m.name))
            {
                let value = match m.source {
                    Source::Results(names) => {
                        let found: Vec<i64> = results
                            .iter()
                            .filter(|(n, _)| names.contains(n))
                            .map(|(_, v)| number(v))
                            .collect();
                        if found.is_empty() {
                            continue;
                        }
                        found.iter().sum()
                    }
                    Source::Failed => match state {
                        Some(s) => i64::from(s == sluice_model::event::table_state::FAILED),
                        None => continue,
                    },
                    Source::Tables => match state {
                        Some(_) => 1,
                        None => continue,
                    },
                    Source::MaxMillis(name) => match results.iter().find(|(n, _)| *n == name) {
                        Some((_, v)) => {
                            (v.trim().parse::<f64>().unwrap_or(0.0) * 1000.0).round() as i64
                        }
                        None => continue,
                    },
                };
                let max = matches!(m.source, Source::MaxMillis(_));
                for gran in &query.time_grans {
                    for scope in &query.scopes {
                        let part = |i: usize, v: &str| {
                            if scope.as_bytes()[i] == b'*' {
                                "*".to_owned()
                            } else {
                                v.to_owned()
                            }
                        };
                        let key = (
                            m.name.to_owned(),
                            *gran,
                            scope.clone(),
                            part(0, channel.as_str()),
                            part(1, &loc),
                            part(2, table),
                            bucket(finish, *gran),
                        );
                        let slot = out.entry(key).or_insert(0);
                        if max {
                            *slot = (*slot).max(value);
                        } else {
                            *slot += value;
                        }
                    }
                }
            }
        }
    }
    out
}

impl HubService {
    /// The metric values of `hub` for `query`, from its refresh and compare events (at most
    /// the newest [`MAX_STATS_EVENTS`] in the time range).
    pub async fn metrics(&self, hub: &HubName, query: MetricsQuery) -> Result<MetricValues> {
        let query = query.checked()?;
        self.hub(hub).await?;
        let events = self
            .job_store()
            .events(&EventFilter {
                hub: Some(hub.clone()),
                types: vec![EventType::Refresh, EventType::Compare],
                states: vec![EventState::Done, EventState::Failed],
                fetch_results: true,
                max_events: Some(MAX_STATS_EVENTS),
                // An event finishes after it starts: those started after the end are out.
                end: query.end,
                ..Default::default()
            })
            .await?;
        let events: Vec<EventRecord> = events
            .into_iter()
            .filter(|e| {
                e.finish.is_some_and(|f| {
                    query.begin.is_none_or(|b| f >= b) && query.end.is_none_or(|x| f <= x)
                })
            })
            .collect();
        Ok(compute(&events, &query))
    }

    /// The oldest bucket of any metric, per granularity and scope.
    pub async fn oldest_metrics(
        &self,
        hub: &HubName,
        time_grans: Vec<u32>,
        scopes: Vec<String>,
    ) -> Result<BTreeMap<u32, BTreeMap<String, DateTime<Utc>>>> {
        let values = self
            .metrics(
                hub,
                MetricsQuery {
                    time_grans,
                    scopes,
                    ..Default::default()
                },
            )
            .await?;
        let mut out: BTreeMap<u32, BTreeMap<String, DateTime<Utc>>> = BTreeMap::new();
        for (gran, scope, t) in values.keys().map(|k| (k.1, &k.2, k.6)) {
            let slot = out
                .entry(gran)
                .or_default()
                .entry(scope.clone())
                .or_insert(t);
            if t < *slot {
                *slot = t;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_numbers() {
        let t: DateTime<Utc> = "2024-05-01T10:17:42.5Z".parse().unwrap();
        assert_eq!(bucket(t, 10).to_rfc3339(), "2024-05-01T10:10:00+00:00");
        assert_eq!(bucket(t, 1440).to_rfc3339(), "2024-05-01T00:00:00+00:00");
        assert_eq!(bucket(t, 0), t);
        assert_eq!(number("12"), 12);
        assert_eq!(number("1.6"), 2);
        assert_eq!(number("x"), 0);
    }

    #[test]
    fn queries_are_checked() {
        let bad = |q: MetricsQuery| q.checked().is_err();
        assert!(bad(MetricsQuery {
            metrics: vec!["Nope".into()],
            ..Default::default()
        }));
        assert!(bad(MetricsQuery {
            time_grans: vec![5],
            ..Default::default()
        }));
        assert!(bad(MetricsQuery {
            scopes: vec!["c'; drop".into()],
            ..Default::default()
        }));
        let q = MetricsQuery::default().checked().unwrap();
        assert_eq!(q.time_grans, [1]);
        assert_eq!(q.scopes, ["clt"]);
    }

    #[test]
    fn a_running_capture_and_integrate_count_with_rows_and_latency() {
        use sluice_model::{ChannelName, EventId, LocationName, TableName};
        use sluice_repo::EventResult;
        let event =
            |event_type: EventType, loc: &str, results: Vec<(ResultName, &str)>| EventRecord {
                id: EventId::now(),
                hub: HubName::new("h").unwrap(),
                event_type,
                user: "u".into(),
                description: String::new(),
                channel: Some(ChannelName::new("c").unwrap()),
                loc: Some(LocationName::new(loc).unwrap()),
                loc2: None,
                job: None,
                state: EventState::Active,
                response: None,
                start: Utc::now(),
                finish: None,
                num_retries: 0,
                canceled: false,
                body: serde_json::Value::Null,
                results: results
                    .into_iter()
                    .map(|(name, value)| EventResult {
                        table: Some(TableName::new("items").unwrap()),
                        name,
                        value: value.into(),
                    })
                    .collect(),
            };
        let events = vec![
            event(
                EventType::Capture,
                "src",
                vec![
                    (ResultName::CapturedRows, "120"),
                    (ResultName::CaptureLatency, "0.040"),
                ],
            ),
            event(
                EventType::Integrate,
                "dst",
                vec![
                    (ResultName::IntegratedRows, "100"),
                    (ResultName::IntegrateLatency, "0.250"),
                ],
            ),
            event(
                EventType::Integrate,
                "dst",
                vec![
                    (ResultName::IntegratedRows, "5"),
                    (ResultName::IntegrateLatency, "0.125"),
                ],
            ),
        ];
        let q = MetricsQuery {
            scopes: vec!["***".into()],
            time_grans: vec![1440],
            ..Default::default()
        }
        .checked()
        .unwrap();
        let values = compute(&events, &q);
        let get = |name: &str| {
            values
                .iter()
                .find(|(k, _)| k.0 == name)
                .map(|(_, v)| *v)
                .unwrap_or(-1)
        };
        assert_eq!(get("Capture Rows"), 120);
        assert_eq!(get("Capture Latency"), 40);
        assert_eq!(get("Integrate Rows"), 105);
        assert_eq!(get("Integrate Latency"), 250, "the largest, not a sum");
    }
}
