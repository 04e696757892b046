//! Topics: names, schemas, retention and who may read or publish.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sluice_model::AccessLevel;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// The topic of job state changes; routing `<hub>.<channel>.<job_type>`.
pub const JOB_TOPIC: &str = "sluice.job";
/// The topic of HVR events and their results; routing `<hub>.<channel>.<event_type>`.
pub const EVENT_TOPIC: &str = "sluice.event";
/// The topic of definition and hub state changes; routing `<hub>.<what>`.
pub const DEFINITION_TOPIC: &str = "sluice.definition";
/// Notifications of the hub's alert rules (HVR's Alert Interface).
pub const ALERT_TOPIC: &str = "sluice.alert";
/// Captured row changes of channels that publish them; routing
/// `<hub>.<channel>.<table>.<op>`.
pub const CHANGE_TOPIC: &str = "sluice.change";

/// A validated topic name: 1–128 bytes of letters, digits, `_`, `-` and `.`, starting with a
/// letter or digit. Topics are matched by whole name only: `sample` and `samples` are unrelated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    /// Validates `text`.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("topic name is empty".to_owned());
        }
        if text.len() > MAX_TOPIC_LEN {
            return Err(format!(
                "topic name is {} bytes long; the limit is {MAX_TOPIC_LEN}",
                text.len()
            ));
        }
        if !text.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(format!(
                "topic name {text:?} must start with a letter or a digit"
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(format!(
                "topic name {text:?}: {c:?} is not allowed (letters, digits, '_', '-' and '.')"
            ));
        }
        Ok(TopicName(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the topics the hub itself publishes on.
    pub fn is_builtin(&self) -> bool {
        [
            JOB_TOPIC,
            EVENT_TOPIC,
            DEFINITION_TOPIC,
            ALERT_TOPIC,
            CHANGE_TOPIC,
        ]
        .contains(&self.0.as_str())
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TopicName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TopicName::new(s)
    }
}

impl Serialize for TopicName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TopicName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TopicName::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Someone a grant names: one user, or every user with at least a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `user:NAME`.
    User(String),
    /// `level:LEVEL` (that level or higher).
    Level(AccessLevel),
}

impl Principal {
    fn covers(&self, user: &str, level: AccessLevel) -> bool {
        match self {
            Principal::User(u) => u == user,
            Principal::Level(l) => level != AccessLevel::None && level.allows(*l),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(u) => write!(f, "user:{u}"),
            Principal::Level(l) => write!(f, "level:{l}"),
        }
    }
}

impl FromStr for Principal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(user) = s.strip_prefix("user:") {
            if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
                return Err(format!("grant {s:?}: the user name is empty or invalid"));
            }
            return Ok(Principal::User(user.to_owned()));
        }
        if let Some(level) = s.strip_prefix("level:") {
            return level
                .parse()
                .map(Principal::Level)
                .map_err(|e| format!("grant {s:?}: {e}"));
        }
        Err(format!(
            "grant {s:?}: expected user:NAME or level:LEVEL (e.g. level:ReadOnly)"
        ))
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who may read (stream, query, export), who may publish on a topic, and who may administer it
/// (change its spec and grants, delete it). SysAdmin users may always do all three on topics that
/// are not built in; nobody publishes on built-in topics but the hub itself. A new topic's
/// administrators are its creator unless the request names others; a topic stored without the
/// `admin` grant (made before it existed) is administered by SysAdmins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Readers.
    #[serde(default = "Grants::default_read")]
    pub read: Vec<Principal>,
    /// Publishers.
    #[serde(default = "Grants::default_publish")]
    pub publish: Vec<Principal>,
    /// Administrators (besides SysAdmins).
    #[serde(default)]
    pub admin: Vec<Principal>,
}

impl Grants {
    fn default_read() -> Vec<Principal> {
        vec![Principal::Level(AccessLevel::ReadOnly)]
    }

    fn default_publish() -> Vec<Principal> {
        vec![Principal::Level(AccessLevel::ReadWrite)]
    }

    /// Whether `user` with `level` may read.
    pub fn may_read(&self, user: &str, level: AccessLevel) -> bool {
        level == AccessLevel::SysAdmin || self.read.iter().any(|p| p.covers(user, level))
    }

    /// Whether `user` with `level` may publish.
    pub fn may_publish(&self, user: &str, level: AccessLevel) -> bool {
        level == AccessLevel::SysAdmin || self.publish.iter().any(|p| p.covers(user, level))
    }

    /// Whether `user` with `level` may change the topic's spec and grants or delete it.
    pub fn may_admin(&self, user: &str, level: AccessLevel) -> bool {
        level == AccessLevel::SysAdmin || self.admin.iter().any(|p| p.covers(user, level))
    }
}

impl Default for Grants {
    /// Every user may read; ReadWrite users and above may publish.
    fn default() -> Self {
        Grants {
            read: Self::default_read(),
            publish: Self::default_publish(),
            admin: Vec::new(),
        }
    }
}

/// How long a topic keeps its events. Both limits apply when both are set; none means forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Events older than this many seconds are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// Only the newest this many events are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
}

impl Retention {
    /// Refuses zero limits (which would delete everything at once).
    pub fn validate(&self) -> Result<(), String> {
        if self.max_age_seconds == Some(0) {
            return Err("retention.max_age_seconds must be at least 1".to_owned());
        }
        if self.max_count == Some(0) {
            return Err("retention.max_count must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// What a client sets on a topic (create and update).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The JSON Schema every payload must satisfy; none accepts any JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// How long events are kept.
    #[serde(default)]
    pub retention: Retention,
    /// Who may read and publish.
    #[serde(default)]
    pub grants: Grants,
}

/// A stored topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topic {
    /// The name.
    pub name: TopicName,
    /// Free text.
    pub description: String,
    /// The current schema version; 0 while the topic has never had a schema.
    pub schema_version: u32,
    /// The current schema.
    pub schema: Option<serde_json::Value>,
    /// How long events are kept.
    pub retention: Retention,
    /// Who may read and publish.
    pub grants: Grants,
    /// Whether the hub itself publishes on it (clients may not publish, update or delete it).
    pub builtin: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// Who changed it last.
    pub updated_by: String,
    /// The sequence number of the newest event ever stored (0: none yet).
    pub last_seq: u64,
}

/// One version of a topic's schema; every version ever set is kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaVersion {
    /// 1, 2, …
    pub version: u32,
    /// The schema (`null` when that version removed the schema).
    pub schema: Option<serde_json::Value>,
    /// When it was set.
    pub created_at: DateTime<Utc>,
    /// Who set it.
    pub created_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(TopicName::new("sluice.job").is_ok());
        assert!(TopicName::new("plant-1_temps").is_ok());
        assert!(TopicName::new("").is_err());
        assert!(TopicName::new(".x").is_err());
        assert!(TopicName::new("a b").is_err());
        assert!(TopicName::new("a'; drop table x; --").is_err());
        assert!(TopicName::new(&"a".repeat(129)).is_err());
    }

    #[test]
    fn grants() {
        let g: Grants = serde_json::from_str(
            r#"{"read":["user:ann","level:ReadExec"],"publish":["user:bob"]}"#,
        )
        .expect("valid grants");
        assert!(g.may_read("ann", AccessLevel::ReadOnly));
        assert!(g.may_read("cy", AccessLevel::ReadWrite));
        assert!(!g.may_read("cy", AccessLevel::ReadOnly));
        assert!(g.may_publish("bob", AccessLevel::ReadOnly));
        assert!(!g.may_publish("ann", AccessLevel::ReadWrite));
        assert!(g.may_publish("root", AccessLevel::SysAdmin));
        assert!(serde_json::from_str::<Grants>(r#"{"read":["group:x"]}"#).is_err());
        assert!(serde_json::from_str::<Grants>(r#"{"read":["level:Boss"]}"#).is_err());
        let d = Grants::default();
        assert!(d.may_read("x", AccessLevel::ReadOnly));
        assert!(!d.may_read("x", AccessLevel::None));
        assert!(!d.may_publish("x", AccessLevel::ReadExecRefresh));
    }
}
