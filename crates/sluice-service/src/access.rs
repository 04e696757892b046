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

/// Props by name.
pub type Props = BTreeMap<String, Json>;

/// The owner of the hub access entry for every user without one of their own (HVR's
/// `Access_List` entry without `user`); no user can have this name.
pub const EVERY_USER: &str = "*";

/// One entry of a hub's access list (HVR's hub property `Access_List`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The user; `None`: every user without an entry of their own.
    pub user: Option<String>,
    /// Their level on the hub (below SysAdmin).
    pub level: AccessLevel,
}

/// Reads HVR's `Access_List` (`[{"user": "ann", "level": "ReadWrite"}, {"level": "ReadOnly"}]`;
/// `null` or `[]`: no entries). At most one entry per user and one without a user.
pub fn parse_access_list(value: &Json) -> Result<Vec<AccessEntry>> {
    let items = match value {
        Json::Null => return Ok(Vec::new()),
        Json::Array(items) => items,
        _ => {
            return Err(ServiceError::invalid(
                "Access_List: expected an array of {\"user\", \"level\"} objects",
            ));
        }
    };
    if items.len() > 10_000 {
        return Err(ServiceError::invalid("Access_List: at most 10000 entries"));
    }
    let mut out: Vec<AccessEntry> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let o = item.as_object().ok_or_else(|| {
            ServiceError::invalid(format!("Access_List[{i}]: expected an object"))
        })?;
        if let Some(k) = o.keys().find(|k| *k != "user" && *k != "level") {
            return Err(ServiceError::invalid(format!(
                "Access_List[{i}]: unknown field {:?} (expected user and level)",
                truncated(k)
            )));
        }
        let user = match o.get("user") {
            None | Some(Json::Null) => None,
            Some(Json::String(u)) => {
                crate::auth::check_user_name(u)?;
                Some(u.clone())
            }
            Some(_) => {
                return Err(ServiceError::invalid(format!(
                    "Access_List[{i}].user: expected a user name"
                )));
            }
        };
        let level = hub_access_level(o.get("level").unwrap_or(&Json::Null))
            .map_err(|e| ServiceError::invalid(format!("Access_List[{i}]: {e}")))?;
        if out.iter().any(|e| e.user == user) {
            return Err(ServiceError::invalid(format!(
                "Access_List[{i}]: a second entry for {}",
                user.as_deref().unwrap_or("every user")
            )));
        }
        out.push(AccessEntry { user, level });
    }
    Ok(out)
}

/// HVR's `Access_List` of `entries` (users first, then the entry for every user).
pub fn access_list_json(entries: &[AccessEntry]) -> Json {
    let mut users: Vec<&AccessEntry> = entries.iter().filter(|e| e.user.is_some()).collect();
    users.extend(entries.iter().filter(|e| e.user.is_none()));
    Json::Array(
        users
            .into_iter()
            .map(|e| match &e.user {
                Some(u) => serde_json::json!({"user": u, "level": e.level}),
                None => serde_json::json!({"level": e.level}),
            })
            .collect(),
    )
}

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
pub(crate) fn check_changes(changes: &BTreeMap<String, Option<Json>>, hub: bool) -> Result<()> {
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
        for owner in [user, EVERY_USER] {
            let stored = self
                .props_store()
                .props(&PropBag::HubUser(hub.clone(), owner.to_owned()))
                .await?;
            if let Some(l) = stored.as_ref().and_then(entry_level) {
                return Ok(l);
            }
        }
        Ok(level)
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
        let mut own = BTreeMap::new();
        let mut every = BTreeMap::new();
        for (bag, props) in self.props_store().bags(PropBagKind::HubUser, None).await? {
            if let PropBag::HubUser(hub, owner) = bag
                && let Some(l) = entry_level(&props)
            {
                if owner == user {
                    own.insert(hub, l);
                } else if owner == EVERY_USER {
                    every.insert(hub, l);
                }
            }
        }
        every.extend(own);
        Ok(every)
    }

    /// The access list of `hub`: every access entry there.
    pub async fn hub_access_list(&self, hub: &HubName) -> Result<Vec<AccessEntry>> {
        Ok(self
            .props_store()
            .bags(PropBagKind::HubUser, Some(hub))
            .await?
            .into_iter()
            .filter_map(|(bag, props)| match bag {
                PropBag::HubUser(_, owner) => entry_level(&props).map(|level| AccessEntry {
                    user: (owner != EVERY_USER).then_some(owner),
                    level,
                }),
                _ => None,
            })
            .collect())
    }

    /// Checks that every user an access list names exists (before anything is changed).
    pub async fn check_access_list(&self, entries: &[AccessEntry]) -> Result<()> {
        for user in entries.iter().filter_map(|e| e.user.as_deref()) {
            if self.identity_store().user(user).await?.is_none() {
                return Err(ServiceError::invalid(format!(
                    "Access_List: user {} does not exist",
                    truncated(user)
                )));
            }
        }
        Ok(())
    }

    /// Replaces the access list of `hub`: entries not in `entries` are removed (the users'
    /// other hub props stay), the others set. The users must exist.
    pub async fn set_hub_access_list(&self, hub: &HubName, entries: &[AccessEntry]) -> Result<()> {
        self.require_hub(hub).await?;
        self.check_access_list(entries).await?;
        let owner = |e: &AccessEntry| e.user.clone().unwrap_or_else(|| EVERY_USER.to_owned());
        for old in self.hub_access_list(hub).await? {
            if !entries.iter().any(|e| e.user == old.user) {
                let change = BTreeMap::from([(ACCESS_LEVEL_PROP.to_owned(), None)]);
                self.props_store()
                    .write_props(
                        &PropBag::HubUser(hub.clone(), owner(&old)),
                        &change,
                        PropWrite::Merge,
                    )
                    .await?;
            }
        }
        for e in entries {
            let change = BTreeMap::from([(
                ACCESS_LEVEL_PROP.to_owned(),
                Some(Json::String(e.level.as_str().to_owned())),
            )]);
            self.props_store()
                .write_props(
                    &PropBag::HubUser(hub.clone(), owner(e)),
                    &change,
                    PropWrite::Merge,
                )
                .await?;
        }
        Ok(())
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
    fn access_lists_read_as_hvr_writes_them() {
        let list = json!([{"user": "ann", "level": "ReadWrite"}, {"level": "ReadOnly"}]);
        let entries = parse_access_list(&list).unwrap();
        assert_eq!(
            entries,
            vec![
                AccessEntry {
                    user: Some("ann".into()),
                    level: AccessLevel::ReadWrite
                },
                AccessEntry {
                    user: None,
                    level: AccessLevel::ReadOnly
                },
            ]
        );
        assert_eq!(access_list_json(&entries), list);
        assert!(parse_access_list(&Json::Null).unwrap().is_empty());
        for bad in [
            json!("ReadOnly"),
            json!([{"user": "ann"}]),
            json!([{"user": "ann", "level": "SysAdmin"}]),
            json!([{"user": "a b", "level": "ReadOnly"}]),
            json!([{"user": "ann", "level": "ReadOnly", "x": 1}]),
            json!([{"level": "ReadOnly"}, {"level": "None"}]),
            json!([{"user": "ann", "level": "ReadOnly"}, {"user": "ann", "level": "None"}]),
        ] {
            assert!(parse_access_list(&bad).is_err(), "{bad}");
        }
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
