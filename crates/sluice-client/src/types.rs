//! The typed shapes of requests and answers. Open-ended shapes (channel and location objects,
//! definition exports, plans, test reports) stay [`serde_json::Value`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The tokens of a session: a short-lived access token and the refresh token that renews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The bearer token sent with every call.
    pub access_token: String,
    /// The token that gets a new pair when the access token expires (absent when the server
    /// issued none).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token expires, by this machine's clock.
    pub expires_at: DateTime<Utc>,
}

impl Tokens {
    /// Whether the access token expires within `margin`.
    pub fn expires_within(&self, margin: chrono::Duration) -> bool {
        self.expires_at - margin <= Utc::now()
    }
}

/// The answer of `/auth/v1/password` and `/auth/v1/refresh`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: String,
    pub expires_in: i64,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl TokenAnswer {
    pub(crate) fn into_tokens(self, issued: DateTime<Utc>) -> Tokens {
        Tokens {
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_at: issued + chrono::Duration::seconds(self.expires_in),
        }
    }
}

/// A hub as `GET /hubs` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubInfo {
    /// The hub's name (the key of the server's map).
    #[serde(default, skip_deserializing)]
    pub name: String,
    /// Its properties.
    #[serde(default)]
    pub props: HubProps,
    /// What the logged-in user may do on it.
    #[serde(default)]
    pub current_user_access: Option<Access>,
}

/// A hub's properties; the ones this client does not name are in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HubProps {
    /// `Description`.
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    /// `Created`.
    #[serde(rename = "Created", default)]
    pub created: Option<DateTime<Utc>>,
    /// `Creator`.
    #[serde(rename = "Creator", default)]
    pub creator: Option<String>,
    /// `Hub_State`: `LIVE`, `FROZEN` or `RESTARTING`.
    #[serde(rename = "Hub_State", default)]
    pub hub_state: Option<String>,
    /// `Freeze_Time`: when the hub was frozen.
    #[serde(rename = "Freeze_Time", default)]
    pub freeze_time: Option<DateTime<Utc>>,
    /// Every other property.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An access level (`SysAdmin`, `HubOwner`, `ReadWrite`, `ReadExecRefresh`, `ReadExec`,
/// `ReadOnly`, `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The level.
    pub level: String,
}

/// `GET /hubs/{hub}/query/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubStatus {
    /// `LIVE`, `FROZEN` or `RESTARTING`.
    pub hub_state: String,
    /// When the hub was frozen.
    #[serde(default)]
    pub freeze_time: Option<DateTime<Utc>>,
    /// Jobs whose latency exceeds their service level.
    #[serde(default)]
    pub jobs_over_latency_sla: Vec<Value>,
    /// `VALID`, `NONE`, `EXPIRED`, ….
    #[serde(default)]
    pub license: Option<String>,
}

/// A job as `GET /hubs/{hub}/jobs` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's name (the key of the server's map).
    #[serde(default, skip_deserializing)]
    pub name: String,
    /// `PENDING`, `RUNNING`, `FAILED`, `RETRY`, `SUSPEND`, ….
    pub state: String,
    /// How often the job ran.
    #[serde(default)]
    pub num_runs: Option<u64>,
    /// How often the job was retried.
    #[serde(default)]
    pub num_retries: Option<u64>,
    /// The job's latest event.
    #[serde(default)]
    pub last_ev_id: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An event as `GET /hubs/{hub}/events` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    /// The event id (the key of the server's map), e.g. `2024-05-01T10:11:12.123456Z`.
    #[serde(default, skip_deserializing)]
    pub ev_id: String,
    /// `Refresh`, `Compare`, `Hub_Freeze`, ….
    #[serde(rename = "type")]
    pub event_type: String,
    /// `ACTIVE`, `DONE`, `FAILED` or `CANCELED`.
    pub state: String,
    /// Who caused it.
    #[serde(default)]
    pub user: Option<String>,
    /// What it is about.
    #[serde(default)]
    pub description: Option<String>,
    /// The channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// The (source) location.
    #[serde(default)]
    pub loc: Option<String>,
    /// The target location.
    #[serde(default)]
    pub loc2: Option<String>,
    /// The job that runs it.
    #[serde(default)]
    pub job: Option<String>,
    /// Retries so far.
    #[serde(default)]
    pub num_retries: Option<u64>,
    /// The outcome, once it ended.
    #[serde(default)]
    pub response: Option<String>,
    /// When it started.
    #[serde(default)]
    pub start_tstamp: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default)]
    pub finish_tstamp: Option<DateTime<Utc>>,
    /// The request that caused it (HVR sends a JSON string, sluice may send the object).
    #[serde(default)]
    pub body: Option<Value>,
    /// Per-table results (with `fetch_results`).
    #[serde(default)]
    pub results: Vec<EventResult>,
}

/// Event states.
pub mod event_state {
    /// Waiting or running.
    pub const ACTIVE: &str = "ACTIVE";
    /// Ended well.
    pub const DONE: &str = "DONE";
    /// Ended in failure.
    pub const FAILED: &str = "FAILED";
    /// Cancelled by a user.
    pub const CANCELED: &str = "CANCELED";
}

impl EventInfo {
    /// Whether the event has ended (any state but `ACTIVE`).
    pub fn is_finished(&self) -> bool {
        self.state != event_state::ACTIVE
    }

    /// The value of result `name` of `table` (`None` for event-level results).
    pub fn result(&self, table: Option<&str>, name: &str) -> Option<&str> {
        self.results
            .iter()
            .find(|r| r.table.as_deref() == table && r.result == name)
            .map(|r| r.value.as_str())
    }

    /// The tables that have results, in the order of their first result.
    pub fn tables(&self) -> Vec<&str> {
        let mut tables: Vec<&str> = Vec::new();
        for r in &self.results {
            if let Some(t) = r.table.as_deref()
                && !tables.contains(&t)
            {
                tables.push(t);
            }
        }
        tables
    }
}

/// One result of an event: `Table_State`, `Source_Rows_Used`, `Rows_Which_Differ`, ….
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    /// The table (absent for event-level results).
    #[serde(default)]
    pub table: Option<String>,
    /// The result's name.
    pub result: String,
    /// The value, as text (numbers are accepted and turned into text).
    #[serde(deserialize_with = "lenient_text")]
    pub value: String,
}

fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// The answer to a refresh or compare: the event posted and the job that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedJob {
    /// The new event's id.
    pub posted_ev_id: String,
    /// The job that runs it.
    pub job: String,
    /// Waiting events of the same job this one replaced.
    #[serde(default)]
    pub canceled_ev_ids: Vec<String>,
}

/// `bulk` (counts and checksums, or a whole-table copy) or `rowwise` (row by row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Whole tables.
    Bulk,
    /// Row by row.
    Rowwise,
}

/// How a refresh replaces the target table (sluice extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Empty the table and load it in one transaction.
    TruncateLoad,
    /// Load a staging table and swap it in atomically.
    StagingSwap,
}

/// Which differences a row-wise refresh applies (HVR `difference_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DifferenceFilter {
    /// Insert rows missing at the target.
    pub inserts: bool,
    /// Update rows that differ.
    pub updates: bool,
    /// Delete rows only on the target.
    pub deletes: bool,
}

/// The body of `POST /hubs/{hub}/channels/{ch}/refresh`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RefreshRequest {
    /// The source location.
    pub source_loc: String,
    /// The target location.
    pub target_loc: String,
    /// Only these tables (empty: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Bulk or row-wise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    /// Start at once (the server's default when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_immediate: Option<bool>,
    /// Row-wise: which differences to apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference_filter: Option<DifferenceFilter>,
    /// Tables refreshed at the same time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_sessions: Option<u16>,
    /// sluice: `full_replace`, `incremental`, `smart_sync` or `rowwise`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// sluice: the column of incremental and smart_sync refreshes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental_column: Option<String>,
    /// sluice: days an incremental refresh by a date column reaches back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_buffer_days: Option<u32>,
    /// sluice: how the target is replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// sluice: rows per batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_rows: Option<usize>,
    /// sluice: plan only; the answer is the plan and nothing runs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The body of `POST /hubs/{hub}/channels/{ch}/activate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActivateRequest {
    /// Start the capture and integrate jobs at once (the server's default when absent);
    /// `false` leaves them suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_immediate: Option<bool>,
    /// sluice: load the targets from the snapshot capture starts at.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

/// The body of `POST /hubs/{hub}/batch/{verb}` (sluice): one operation per channel matching
/// `channels`; each option only with the verbs it applies to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchRequest {
    /// A channel name or pattern (`sales_*`).
    pub channels: String,
    /// Jobs of the batch run at once (1 to 32; the server's default 4 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// refresh, compare: only these tables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// refresh: the refresh mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// refresh: `truncate_load` or `staging_swap`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// compare: bulk or row-wise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    /// compare: keys listed per kind of difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_listed: Option<usize>,
    /// activate: load the targets from the snapshot capture starts at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<bool>,
}

/// The answer of `POST /hubs/{hub}/batch/{verb}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPosted {
    /// At most this many of the batch's jobs run at once.
    pub parallel: usize,
    /// Per channel matching the pattern.
    pub channels: Vec<BatchChannel>,
}

/// One channel of a batch: its event and job, or why it was not posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchChannel {
    /// The channel.
    pub channel: String,
    /// Its event, when posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ev_id: Option<String>,
    /// Its job, when posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why it was not posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of that error (`invalid`, `not_found`, `conflict`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The body of `POST /hubs/{hub}/channels/{ch}/compare`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompareRequest {
    /// The source location.
    pub source_loc: String,
    /// The target location.
    pub target_loc: String,
    /// Only these tables (empty: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Bulk (counts and checksums) or row-wise (keys that differ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    /// Start at once (the server's default when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_immediate: Option<bool>,
    /// HVR's `online_compare` (`diff_diff` or `diff_cap`): compare an activated channel while
    /// it replicates, settling the differences whose changes are in flight. Row-wise only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_compare: Option<String>,
    /// sluice: plan only; the answer is the plan and nothing runs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// sluice: `false` reads every row instead of first narrowing the compare with checksums
    /// computed in the databases (the server's default, true, when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushdown: Option<bool>,
}

/// Filters of `GET /hubs/{hub}/events`; lists become repeated query keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of these channels.
    pub channels: Vec<String>,
    /// Only these events.
    pub ev_ids: Vec<String>,
    /// Only events of these jobs.
    pub jobs: Vec<String>,
    /// Only events of these types.
    pub types: Vec<String>,
    /// Only events in these states.
    pub states: Vec<String>,
    /// With per-table results.
    pub fetch_results: bool,
    /// At most this many, newest first.
    pub max_events: Option<usize>,
}

/// Filters of `GET /hubs/{hub}/jobs`; lists become repeated query keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs of these channels.
    pub channels: Vec<String>,
    /// Only these jobs.
    pub jobs: Vec<String>,
}

/// A user as `GET /users` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user's name (the key of the server's map).
    #[serde(default, skip_deserializing)]
    pub name: String,
    /// The access level.
    pub level: String,
    /// When the user was created.
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    /// Who created the user.
    #[serde(default)]
    pub creator: Option<String>,
}

/// Changes of `PATCH /users/{user}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserChange {
    /// A new access level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// A new password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refresh_requests_send_only_what_is_set() {
        let req = RefreshRequest {
            source_loc: "src".into(),
            target_loc: "tgt".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"source_loc": "src", "target_loc": "tgt"})
        );
        let req = RefreshRequest {
            tables: vec!["orders".into()],
            granularity: Some(Granularity::Rowwise),
            strategy: Some(Strategy::StagingSwap),
            parallel_sessions: Some(4),
            dry_run: true,
            ..req
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"source_loc": "src", "target_loc": "tgt", "tables": ["orders"],
                "granularity": "rowwise", "strategy": "staging_swap", "parallel_sessions": 4,
                "dry_run": true})
        );
    }

    #[test]
    fn events_read_hvr_and_sluice_shapes() {
        let e: EventInfo = serde_json::from_value(serde_json::json!({
            "type": "Refresh", "state": "DONE", "user": "admin", "channel": "ch1",
            "start_tstamp": "2024-05-01T10:11:12.123456Z", "body": "{\"a\":1}",
            "results": [{"table": "orders", "result": "Source_Rows_Used", "value": 1000},
                        {"table": "orders", "result": "Table_State", "value": "DONE"},
                        {"result": "Event_Note", "value": null}]
        }))
        .unwrap();
        assert!(e.is_finished());
        assert_eq!(e.result(Some("orders"), "Source_Rows_Used"), Some("1000"));
        assert_eq!(e.result(None, "Event_Note"), Some(""));
        assert_eq!(e.tables(), vec!["orders"]);
        assert_eq!(
            e.start_tstamp.unwrap().to_rfc3339(),
            "2024-05-01T10:11:12.123456+00:00"
        );
    }
}
