//! Access levels of hub users, HVR's ladder: `SysAdmin > HubOwner > ReadWrite > ReadExecRefresh >
//! ReadExec > ReadOnly > None`. A level grants everything the levels below it grant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a user may do. Ordered: a higher level includes every lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessLevel {
    /// Nothing.
    None,
    /// Read definitions, jobs and events.
    ReadOnly,
    /// Also run compares, start and suspend jobs, cancel events, test locations.
    ReadExec,
    /// Also run refreshes.
    ReadExecRefresh,
    /// Also change definitions.
    ReadWrite,
    /// Also change hub properties, freeze and unfreeze, delete the hub.
    HubOwner,
    /// Also manage hubs and users.
    SysAdmin,
}

impl AccessLevel {
    /// Every level, lowest first.
    pub const ALL: [AccessLevel; 7] = [
        AccessLevel::None,
        AccessLevel::ReadOnly,
        AccessLevel::ReadExec,
        AccessLevel::ReadExecRefresh,
        AccessLevel::ReadWrite,
        AccessLevel::HubOwner,
        AccessLevel::SysAdmin,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::None => "None",
            AccessLevel::ReadOnly => "ReadOnly",
            AccessLevel::ReadExec => "ReadExec",
            AccessLevel::ReadExecRefresh => "ReadExecRefresh",
            AccessLevel::ReadWrite => "ReadWrite",
            AccessLevel::HubOwner => "HubOwner",
            AccessLevel::SysAdmin => "SysAdmin",
        }
    }

    /// Whether this level includes `required`.
    pub fn allows(self, required: AccessLevel) -> bool {
        self >= required
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccessLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AccessLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown access level {s:?}; expected one of: {}",
                    AccessLevel::ALL.map(|l| l.as_str()).join(", ")
                )
            })
    }
}

impl Serialize for AccessLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AccessLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_parse_case_insensitively() {
        assert!(AccessLevel::SysAdmin.allows(AccessLevel::ReadWrite));
        assert!(!AccessLevel::ReadExec.allows(AccessLevel::ReadExecRefresh));
        assert_eq!("readonly".parse::<AccessLevel>(), Ok(AccessLevel::ReadOnly));
        assert!("Admin".parse::<AccessLevel>().is_err());
        for l in AccessLevel::ALL {
            assert_eq!(l.as_str().parse::<AccessLevel>(), Ok(l));
        }
    }
}
