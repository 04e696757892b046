//! Validated names of hubs, locations, channels, location groups, tables and columns.
//!
//! The rules follow HVR's repository (reference `hvr6-api.md` §1) and live in one table,
//! [`NameKind::rule`]. Identifiers are deliberately strict (ASCII letters, digits, `_`): they appear in
//! job names, URLs, file names and log lines. Names of database objects (`BaseName`, `ColumnName`,
//! `SchemaName`) may be any text, because they name real tables and columns; they reach SQL only
//! through each dialect's quoting function.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which object a name names; selects its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A hub.
    Hub,
    /// A location (a database connection).
    Location,
    /// A channel.
    Channel,
    /// A location group inside a channel (`SOURCE`, `TARGET`).
    LocGroup,
    /// A table of a channel.
    Table,
    /// A column of a table.
    Column,
    /// The name of a table in its database, when it differs from the channel's table name.
    BaseName,
    /// A database schema.
    Schema,
}

/// The character classes a name may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    /// `^[a-z_][a-z0-9_]*$`
    LowerIdent,
    /// `^[A-Z_][A-Z0-9_]*$`
    UpperIdent,
    /// Any text without control characters and without leading or trailing blanks.
    Text,
}

/// A naming rule: character classes and the maximum length in characters.
#[derive(Debug, Clone, Copy)]
struct NameRule {
    charset: Charset,
    max_len: usize,
}

impl NameKind {
    fn rule(self) -> NameRule {
        use Charset::*;
        let (charset, max_len) = match self {
            NameKind::Hub => (LowerIdent, 32),
            NameKind::Location => (LowerIdent, 12),
            NameKind::Channel => (LowerIdent, 12),
            NameKind::LocGroup => (UpperIdent, 24),
            NameKind::Table => (LowerIdent, 124),
            NameKind::Column => (Text, 128),
            NameKind::BaseName => (Text, 128),
            NameKind::Schema => (Text, 128),
        };
        NameRule { charset, max_len }
    }

    /// The word used for this kind in messages (`channel`, `location group`).
    pub fn noun(self) -> &'static str {
        match self {
            NameKind::Hub => "hub",
            NameKind::Location => "location",
            NameKind::Channel => "channel",
            NameKind::LocGroup => "location group",
            NameKind::Table => "table",
            NameKind::Column => "column",
            NameKind::BaseName => "base name",
            NameKind::Schema => "schema",
        }
    }

    /// Checks `text` against this kind's rule.
    pub fn check(self, text: &str) -> Result<(), NameError> {
        let rule = self.rule();
        let fail = |reason: String| NameError {
            kind: self,
            name: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(fail("must not be empty".into()));
        }
        let len = text.chars().count();
        if len > rule.max_len {
            return Err(fail(format!(
                "is {len} characters long, the limit is {}",
                rule.max_len
            )));
        }
        match rule.charset {
            Charset::LowerIdent | Charset::UpperIdent => {
                let upper = rule.charset == Charset::UpperIdent;
                let letter_ok = |c: char| {
                    c == '_'
                        || if upper {
                            c.is_ascii_uppercase()
                        } else {
                            c.is_ascii_lowercase()
                        }
                };
                let first = text.chars().next().expect("checked non-empty above");
                if !letter_ok(first) {
                    let class = if upper { "A-Z" } else { "a-z" };
                    return Err(fail(format!("must start with {class} or _")));
                }
                if let Some(bad) = text
                    .chars()
                    .find(|&c| !(letter_ok(c) || c.is_ascii_digit()))
                {
                    let class = if upper { "A-Z" } else { "a-z" };
                    return Err(fail(format!(
                        "contains {bad:?}; only {class}, 0-9 and _ are allowed"
                    )));
                }
            }
            Charset::Text => {
                if let Some(bad) = text.chars().find(|c| c.is_control()) {
                    return Err(fail(format!("contains the control character {bad:?}")));
                }
                if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
                    return Err(fail("must not start or end with blanks".into()));
                }
            }
        }
        Ok(())
    }
}

/// A name that broke its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} name {name:?}: {reason}", kind.noun())]
pub struct NameError {
    /// What was being named.
    pub kind: NameKind,
    /// The rejected text.
    pub name: String,
    /// Why it was rejected.
    pub reason: String,
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// Validates `text` and wraps it.
            pub fn new(text: impl Into<String>) -> Result<Self, NameError> {
                let text = text.into();
                $kind.check(&text)?;
                Ok(Self(text))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::new(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A hub name: lowercase identifier, at most 32 characters.
    HubName,
    NameKind::Hub
);
name_type!(
    /// A location name: lowercase identifier, at most 12 characters.
    LocationName,
    NameKind::Location
);
name_type!(
    /// A channel name: lowercase identifier, at most 12 characters.
    ChannelName,
    NameKind::Channel
);
name_type!(
    /// A location group name: uppercase identifier, at most 24 characters.
    LocGroupName,
    NameKind::LocGroup
);
name_type!(
    /// A channel table name: lowercase identifier, at most 124 characters.
    TableName,
    NameKind::Table
);
name_type!(
    /// A column name: any text without control characters, at most 128 characters.
    ColumnName,
    NameKind::Column
);
name_type!(
    /// A table's name in its database: any text without control characters, at most 128 characters.
    BaseName,
    NameKind::BaseName
);
name_type!(
    /// A database schema name: any text without control characters, at most 128 characters.
    SchemaName,
    NameKind::Schema
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_hvr_rules() {
        assert!(ChannelName::new("sales").is_ok());
        assert!(ChannelName::new("_a1").is_ok());
        assert!(ChannelName::new("twelve_chars").is_ok());
        let err = ChannelName::new("thirteen_char").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid channel name \"thirteen_char\": is 13 characters long, the limit is 12"
        );
        assert!(ChannelName::new("Sales").is_err());
        assert!(ChannelName::new("1sales").is_err());
        assert!(ChannelName::new("").is_err());
        let err = ChannelName::new("a;drop").unwrap_err();
        assert!(err.to_string().contains("contains ';'"), "{err}");
    }

    #[test]
    fn location_groups_are_uppercase() {
        assert!(LocGroupName::new("SOURCE").is_ok());
        assert!(LocGroupName::new("source").is_err());
    }

    #[test]
    fn column_names_allow_text_but_not_control_characters() {
        assert!(ColumnName::new("Order Date").is_ok());
        assert!(ColumnName::new("prix_€").is_ok());
        assert!(ColumnName::new("a\u{0}b").is_err());
        assert!(ColumnName::new(" padded").is_err());
        assert!(ColumnName::new("x".repeat(129)).is_err());
        assert!(ColumnName::new("é".repeat(128)).is_ok());
    }

    #[test]
    fn names_deserialize_with_validation() {
        let ok: TableName = serde_json::from_str("\"orders\"").unwrap();
        assert_eq!(ok.as_str(), "orders");
        assert!(serde_json::from_str::<TableName>("\"Orders\"").is_err());
    }
}
