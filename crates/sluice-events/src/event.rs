//! Events as clients publish them and as the hub stores and delivers them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::routing::RoutingKey;
use crate::topic::TopicName;

/// Longest client-supplied event id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// An event to publish. With an `id`, publishing is idempotent: the same id on the same topic is
/// stored once, and publishing it again answers with the stored event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The topic.
    pub topic: TopicName,
    /// The routing key.
    pub routing_key: RoutingKey,
    /// Any JSON value (checked against the topic's schema).
    pub payload: serde_json::Value,
    /// The client's id of the event.
    #[serde(default)]
    pub id: Option<String>,
}

/// Checks a client-supplied event id.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("id is empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "id is {} bytes long; the limit is {MAX_ID_LEN}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("id holds control characters".to_owned());
    }
    Ok(())
}

/// An event ready to store: validated, with its id and payload text fixed.
#[derive(Debug, Clone)]
pub struct Append {
    /// The topic.
    pub topic: TopicName,
    /// The routing key.
    pub routing_key: RoutingKey,
    /// The payload as compact JSON text.
    pub payload: Box<RawValue>,
    /// The client's id, or one the hub made up (a UUID).
    pub id: String,
    /// Whether `id` came from the client (only those deduplicate).
    pub client_id: bool,
    /// Who published it.
    pub posted_by: Option<String>,
}

/// A stored event: what streams, queries and exports deliver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The topic.
    pub topic: TopicName,
    /// Its place in the topic: 1, 2, 3, … with no reuse.
    pub seq: u64,
    /// The client's id, or one the hub made up.
    pub id: String,
    /// The routing key.
    pub routing_key: RoutingKey,
    /// When the hub stored it (UTC, microseconds).
    #[serde(with = "micros")]
    pub timestamp: DateTime<Utc>,
    /// Who published it (none for the hub itself).
    pub posted_by: Option<String>,
    /// The payload.
    pub payload: Box<RawValue>,
}

impl StoredEvent {
    /// The event as one line of compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a stored event always serializes")
    }

    /// The timestamp as RFC 3339 with microseconds and `Z`.
    pub fn timestamp_text(&self) -> String {
        self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

/// What publishing one event did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The topic.
    pub topic: TopicName,
    /// The event's sequence number.
    pub seq: u64,
    /// The event's id.
    pub id: String,
    /// When it was stored.
    #[serde(with = "micros")]
    pub timestamp: DateTime<Utc>,
    /// True when an event with this id was already stored (nothing new was stored).
    pub duplicate: bool,
}

mod micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
