//! Users' props, their props on one hub, and the access level each user has on each hub.
//!
//! A user has a server-wide level (kept with the user). A user's props on a hub (HVR's "user hub
//! properties", a [`PropBag::HubUser`]) may hold [`ACCESS_LEVEL_PROP`]: the user's level on that
//! hub, which then replaces the server-wide level there, up or down (`None` hides the hub). A
//! SysAdmin is SysAdmin on every hub. Nothing of it is cached: every check reads the repository,
//! so a change takes effect at the next request.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use sluice_model::{AccessLevel, HubName};
use sluice_repo::{PropBag, PropBagKind, PropWrite};

use crate::{HubService, Result, ServiceError};

/// The prop of a user's hub props that holds their access level on that hub.
pub const ACCESS_LEVEL_PROP: &str = "Access_Level";

/// Prop names that are never stored as a user's own props (case-insensitive): they would look
/// like the user's level, password or authentication, which are not props.
pub const RESERVED_USER_PROPS: &[&str] = &[
    "level",
    "access_level",
    "access_list",
    "user_access",
    "all_user_access",
    "password",
    "authentication",
    "user",
];

/// Props of one bag, by name.
pub type Props = BTreeMap<String, Json>;

/// At most this many props in one bag.
const MAX_PROPS: usize = 200;
/// At most this many bytes of JSON in one prop's value.
const MAX_VALUE_BYTES: usize = 256 * 1024;

/// Whether `name` is a reserved user prop ([`RESERVED_USER_PROPS`]).
pub fn is_reserved_user_prop(name: &str) -> bool {
    RESERVED_USER_PROPS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
}

/// Checks a prop name: a letter, then up to 63 letters, digits or `_`.
fn check_prop_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "invalid property name {:?}: a letter, then up to 63 letters, digits or '_'",
            truncated(name)
        )))
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Checks a prop value: an integer, a string, an object (or an array or boolean, which HVR's
/// UI preferences use); at most [`MAX_VALUE_BYTES`] of JSON.
fn check_prop_value(name: &str, value: &Json) -> Result<()> {
    if matches!(value, Json::Null) {
        return Err(ServiceError::invalid(format!(
            "property {name}: null is not a value (delete it with props_delete or PATCH it to null)"
        )));
    }
    if value.to_string().len() > MAX_VALUE_BYTES {
        return Err(ServiceError::invalid(format!(
            "property {name}: the value is larger than {MAX_VALUE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The level an [`ACCESS_LEVEL_PROP`] value names: a level below SysAdmin.
pub fn hub_access_level(value: &Json) -> Result<AccessLevel> {
    let level = value
        .as_str()
        .and_then(|s| s.parse::<AccessLevel>().ok())
        .ok_or_else(|| {
            ServiceError::invalid(format!(
                "{ACCESS_LEVEL_PROP}: expected one of None, ReadOnly, ReadExec, ReadExecRefresh, \
                 ReadWrite, HubOwner; got {}",
                truncated(&value.to_string())
            ))
        })?;
    if level == AccessLevel::SysAdmin {
        return Err(ServiceError::invalid(format!(
            "{ACCESS_LEVEL_PROP}: SysAdmin is a server-wide level, not a level on one hub \
             (PATCH /api/latest/users/{{user}} {{\"level\": \"SysAdmin\"}})"
        )));
    }
    Ok(level)
}

/// The level of `stored` hub props: their [`ACCESS_LEVEL_PROP`] when it is valid.
fn entry_level(stored: &Props) -> Option<AccessLevel> {
    stored
        .get(ACCESS_LEVEL_PROP)
        .and_then(|v| hub_access_level(v).ok())
}

/// Checks a write of props: names, values, and (for hub props) the access level.
fn check_changes(changes: &BTreeMap<String, Option<Json>>, hub: bool) -> Result<()> {
    if changes.len() > MAX_PROPS {
        return Err(ServiceError::invalid(format!(
            "too many properties: at most {MAX_PROPS}"
        )));
    }
    for (name, value) in changes {
        check_prop_name(name)?;
        if hub && name.eq_ignore_ascii_case(ACCESS_LEVEL_PROP) && name != ACCESS_LEVEL_PROP {
            return Err(ServiceError::invalid(format!(
                "property {name}: the access level is spelled {ACCESS_LEVEL_PROP}"
            )));
        }
        if !hub && is_reserved_user_prop(name) {
            return Err(ServiceError::invalid(format!(
                "{name} is not a user property: a user's level is changed with PATCH \
                 /api/latest/users/{{user}} {{\"level\"}}, a password with PUT \
                 /api/latest/users/{{user}}/password, and the level on one hub with the \
                 {ACCESS_LEVEL_PROP} property of /api/latest/hubs/{{hub}}/users/{{user}}/props"
            )));
        }
        if let Some(v) = value {
            check_prop_value(name, v)?;
            if hub && name == ACCESS_LEVEL_PROP {
                hub_access_level(v)?;
            }
        }
    }
    Ok(())
}

impl HubService {
    /// The level `user` (whose server-wide level is `level`) has on `hub`: the level of their
    /// access entry there, else `level`; SysAdmin everywhere for a SysAdmin. Read from the
    /// repository every time.
    pub async fn level_on(
        &self,
        user: &str,
        level: AccessLevel,
        hub: &HubName,
    ) -> Result<AccessLevel> {
        if level == AccessLevel::SysAdmin {
            return Ok(level);
        }
        let stored = self
            .props_store()
            .props(&PropBag::HubUser(hub.clone(), user.to_owned()))
            .await?;
        Ok(stored.as_ref().and_then(entry_level).unwrap_or(level))
    }

    /// The level `user` (server-wide `level`) has on each hub that has an access entry for them.
    pub async fn hub_levels(
        &self,
        user: &str,
        level: AccessLevel,
    ) -> Result<BTreeMap<HubName, AccessLevel>> {
        if level == AccessLevel::SysAdmin {
            return Ok(BTreeMap::new());
        }
        Ok(self
            .props_store()
            .bags(PropBagKind::HubUser, None)
            .await?
            .into_iter()
            .filter_map(|(bag, props)| match bag {
                PropBag::HubUser(hub, owner) if owner == user => {
                    entry_level(&props).map(|l| (hub, l))
                }
                _ => None,
            })
            .collect())
    }

    async fn require_user(&self, user: &str) -> Result<()> {
        match self.identity_store().user(user).await? {
            Some(_) => Ok(()),
            None => Err(ServiceError::not_found(format!(
                "user {} does not exist",
                truncated(user)
            ))),
        }
    }

    async fn require_hub(&self, hub: &HubName) -> Result<()> {
        self.hub(hub).await.map(|_| ())
    }

    /// A user's props (empty when none were set); `NotFound` for an unknown user.
    pub async fn user_props(&self, user: &str) -> Result<Props> {
        self.require_user(user).await?;
        Ok(self
            .props_store()
            .props(&PropBag::User(user.to_owned()))
            .await?
            .unwrap_or_default())
    }

    /// The props of every user that has some.
    pub async fn all_user_props(&self) -> Result<BTreeMap<String, Props>> {
        Ok(self
            .props_store()
            .bags(PropBagKind::User, None)
            .await?
            .into_iter()
            .filter_map(|(bag, props)| match bag {
                PropBag::User(u) => Some((u, props)),
                _ => None,
            })
            .collect())
    }

    /// Writes a user's props as `how` says (`None` removes a prop). Level, password and
    /// authentication are not props ([`RESERVED_USER_PROPS`]).
    pub async fn write_user_props(
        &self,
        user: &str,
        changes: &BTreeMap<String, Option<Json>>,
        how: PropWrite,
    ) -> Result<Props> {
        self.require_user(user).await?;
        check_changes(changes, false)?;
        Ok(self
            .props_store()
            .write_props(&PropBag::User(user.to_owned()), changes, how)
            .await?)
    }

    /// Adds a user with `props` (checked before anything is created) and a password
    /// (`None`: a random one nobody knows, so they cannot log in until a SysAdmin sets one).
    pub async fn create_user_with_props(
        &self,
        name: &str,
        level: AccessLevel,
        password: Option<&str>,
        props: &Props,
    ) -> Result<()> {
        let changes: BTreeMap<String, Option<Json>> = props
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        check_changes(&changes, false)?;
        match password {
            Some(p) => self.create_user(name, level, p).await?,
            None => self.create_user_without_password(name, level).await?,
        }
        if !changes.is_empty() {
            self.props_store()
                .write_props(
                    &PropBag::User(name.to_owned()),
                    &changes,
                    PropWrite::Replace,
                )
                .await?;
        }
        Ok(())
    }

    /// A user's props on `hub`, among them [`ACCESS_LEVEL_PROP`] when they have an access
    /// entry there; `NotFound` for an unknown hub or user.
    pub async fn hub_user_props(&self, hub: &HubName, user: &str) -> Result<Props> {
        self.require_hub(hub).await?;
        self.require_user(user).await?;
        Ok(self
            .props_store()
            .props(&PropBag::HubUser(hub.clone(), user.to_owned()))
            .await?
            .unwrap_or_default())
    }

    /// Writes a user's props on `hub` as `how` says. [`ACCESS_LEVEL_PROP`] must name a level
    /// below SysAdmin. Whether the caller may change the access level is the caller's to check.
    pub async fn write_hub_user_props(
        &self,
        hub: &HubName,
        user: &str,
        changes: &BTreeMap<String, Option<Json>>,
        how: PropWrite,
    ) -> Result<Props> {
        self.require_hub(hub).await?;
        self.require_user(user).await?;
        check_changes(changes, true)?;
        Ok(self
            .props_store()
            .write_props(
                &PropBag::HubUser(hub.clone(), user.to_owned()),
                changes,
                how,
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hub_access_levels_stop_below_sysadmin() {
        assert_eq!(
            hub_access_level(&json!("ReadWrite")).unwrap(),
            AccessLevel::ReadWrite
        );
        assert_eq!(hub_access_level(&json!("None")).unwrap(), AccessLevel::None);
        assert!(hub_access_level(&json!("SysAdmin")).is_err());
        assert!(hub_access_level(&json!("Root")).is_err());
        assert!(hub_access_level(&json!(5)).is_err());
    }

    #[test]
    fn prop_names_and_reserved_names_are_checked() {
        let one = |k: &str, v: Json| BTreeMap::from([(k.to_owned(), Some(v))]);
        assert!(check_changes(&one("Full_Name", json!("A")), false).is_ok());
        assert!(check_changes(&one("../x", json!("A")), false).is_err());
        assert!(check_changes(&one("a'; DROP TABLE x", json!(1)), false).is_err());
        assert!(check_changes(&one("LEVEL", json!("SysAdmin")), false).is_err());
        assert!(check_changes(&one("Access_Level", json!("ReadOnly")), false).is_err());
        assert!(check_changes(&one("Access_Level", json!("ReadOnly")), true).is_ok());
        assert!(check_changes(&one("access_level", json!("ReadOnly")), true).is_err());
        assert!(check_changes(&one("Access_Level", json!("SysAdmin")), true).is_err());
        assert!(check_changes(&one("Theme", json!("x".repeat(300_000))), true).is_err());
        let many: BTreeMap<_, _> = (0..201)
            .map(|i| (format!("P{i}"), Some(json!(i))))
            .collect();
        assert!(check_changes(&many, true).is_err());
    }
}
