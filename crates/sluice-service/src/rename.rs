//! Renames of definition objects: a channel, a table of a channel, a location group of a channel,
//! a location. Each is one edit of the hub's definitions document (so one repository transaction,
//! guarded by the definitions version, with its `Definition_Change` event) that carries every
//! reference along: a location renamed keeps its membership in every channel's groups and the
//! actions scoped to it; a table renamed keeps its columns and the actions scoped to it; a group
//! renamed keeps its members and the actions scoped to it. A rename to a name that exists or is
//! invalid is refused and changes nothing; so is renaming a channel or location with a job that
//! runs or will run (pending, retrying, suspended: it would look for the old name; deactivate
//! first). Jobs that have run keep the old name as history.

use serde_json::{Map, Value as Json, json};
use sluice_model::{
    ChannelName, EventType, HubName, JobState, LocGroupName, LocationName, TableName,
};

use crate::{HubService, Result, ServiceError, ServiceErrorKind};

/// What to rename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    /// A channel.
    Channel {
        /// Its name.
        channel: String,
    },
    /// A table of a channel.
    Table {
        /// The channel.
        channel: String,
        /// The table.
        table: String,
    },
    /// A location group of a channel.
    LocGroup {
        /// The channel.
        channel: String,
        /// The group.
        loc_group: String,
    },
    /// A location.
    Location {
        /// Its name.
        loc: String,
    },
}

impl Rename {
    /// HVR's name of the change (`rename_channel`, …).
    pub fn change_name(&self) -> &'static str {
        match self {
            Rename::Channel { .. } => "rename_channel",
            Rename::Table { .. } => "rename_table",
            Rename::LocGroup { .. } => "rename_loc_group",
            Rename::Location { .. } => "rename_loc",
        }
    }

    /// HVR's event body of the change.
    pub fn event_body(&self, new_name: &str) -> Json {
        let args = match self {
            Rename::Channel { channel } => json!({"channel": channel, "new_name": new_name}),
            Rename::Table { channel, table } => {
                json!({"channel": channel, "table": table, "new_name": new_name})
            }
            Rename::LocGroup { channel, loc_group } => {
                json!({"channel": channel, "loc_group": loc_group, "new_name": new_name})
            }
            Rename::Location { loc } => json!({"loc": loc, "new_name": new_name}),
        };
        json!({ self.change_name(): args })
    }
}

fn conflict(message: String) -> ServiceError {
    ServiceError::new(ServiceErrorKind::Conflict, message)
}

fn invalid_name<E: std::fmt::Display>(e: E) -> ServiceError {
    ServiceError::invalid(format!("new_name: {e}"))
}

fn object_mut<'a>(v: &'a mut Json, key: &str) -> Option<&'a mut Map<String, Json>> {
    v.get_mut(key).and_then(Json::as_object_mut)
}

/// Renames the key `old` of `map` to `new` keeping its position (definitions keep insertion order
/// nowhere but it costs nothing to keep it).
fn rename_key(map: &mut Map<String, Json>, old: &str, new: &str) -> bool {
    let Some(value) = map.remove(old) else {
        return false;
    };
    map.insert(new.to_owned(), value);
    true
}

fn channel_mut<'a>(doc: &'a mut Json, ch: &str) -> Result<&'a mut Map<String, Json>> {
    object_mut(doc, "channels")
        .and_then(|c| c.get_mut(ch))
        .and_then(Json::as_object_mut)
        .ok_or_else(|| ServiceError::not_found(format!("channel {ch} does not exist")))
}

/// Sets `key` of every action of `actions` whose value is `old` to `new`.
fn rescope(actions: Option<&mut Json>, key: &str, old: &str, new: &str) {
    for a in actions.and_then(Json::as_array_mut).into_iter().flatten() {
        if a.get(key).and_then(Json::as_str) == Some(old) {
            a[key] = Json::from(new);
        }
    }
}

/// Applies a rename to a definitions document (as `crate::definition::to_document` writes it).
pub fn apply(doc: &mut Json, what: &Rename, new_name: &str) -> Result<()> {
    match what {
        Rename::Channel { channel } => {
            ChannelName::new(new_name).map_err(invalid_name)?;
            let channels = object_mut(doc, "channels").ok_or_else(|| {
                ServiceError::not_found(format!("channel {channel} does not exist"))
            })?;
            if !channels.contains_key(channel) {
                return Err(ServiceError::not_found(format!(
                    "channel {channel} does not exist"
                )));
            }
            if channels.contains_key(new_name) {
                return Err(conflict(format!("channel {new_name} already exists")));
            }
            rename_key(channels, channel, new_name);
        }
        Rename::Table { channel, table } => {
            TableName::new(new_name).map_err(invalid_name)?;
            let ch = channel_mut(doc, channel)?;
            let tables = ch
                .get_mut("tables")
                .and_then(Json::as_object_mut)
                .filter(|t| t.contains_key(table))
                .ok_or_else(|| {
                    ServiceError::not_found(format!(
                        "table {table} does not exist in channel {channel}"
                    ))
                })?;
            if tables.contains_key(new_name) {
                return Err(conflict(format!(
                    "table {new_name} already exists in channel {channel}"
                )));
            }
            rename_key(tables, table, new_name);
            rescope(ch.get_mut("actions"), "table_scope", table, new_name);
        }
        Rename::LocGroup { channel, loc_group } => {
            LocGroupName::new(new_name).map_err(invalid_name)?;
            let ch = channel_mut(doc, channel)?;
            let groups = ch
                .get_mut("loc_groups")
                .and_then(Json::as_object_mut)
                .filter(|g| g.contains_key(loc_group))
                .ok_or_else(|| {
                    ServiceError::not_found(format!(
                        "location group {loc_group} does not exist in channel {channel}"
                    ))
                })?;
            if groups.contains_key(new_name) {
                return Err(conflict(format!(
                    "location group {new_name} already exists in channel {channel}"
                )));
            }
            rename_key(groups, loc_group, new_name);
            rescope(ch.get_mut("actions"), "loc_scope", loc_group, new_name);
        }
        Rename::Location { loc } => {
            LocationName::new(new_name).map_err(invalid_name)?;
            let locs = object_mut(doc, "locations")
                .filter(|l| l.contains_key(loc))
                .ok_or_else(|| ServiceError::not_found(format!("location {loc} does not exist")))?;
            if locs.contains_key(new_name) {
                return Err(conflict(format!("location {new_name} already exists")));
            }
            rename_key(locs, loc, new_name);
            for (_, ch) in object_mut(doc, "channels").into_iter().flatten() {
                for (_, group) in object_mut(ch, "loc_groups").into_iter().flatten() {
                    let members = match group {
                        Json::Array(list) => Some(list),
                        other => other.get_mut("members").and_then(Json::as_array_mut),
                    };
                    for m in members.into_iter().flatten() {
                        if m.as_str() == Some(loc) {
                            *m = Json::from(new_name);
                        }
                    }
                }
                rescope(ch.get_mut("actions"), "loc_scope", loc, new_name);
            }
        }
    }
    Ok(())
}

impl HubService {
    /// Renames a definition object of `hub` to `new_name`, carrying every reference along, in one
    /// transaction with a `Definition_Change` event. Refused (nothing changed) when the object does
    /// not exist, the new name is invalid or taken, or the channel or location has jobs.
    pub async fn rename(&self, hub: &HubName, what: &Rename, new_name: &str) -> Result<()> {
        let jobs = self.job_store().jobs(hub).await?;
        // A job that has run (DONE, FAILED) keeps its old name as history; one that runs or will
        // run would look for objects that are no longer there.
        let will_run = |state: JobState| {
            matches!(
                state,
                JobState::Running | JobState::Pending | JobState::Retry | JobState::Suspend
            )
        };
        let busy = jobs
            .iter()
            .filter(|j| will_run(j.state))
            .find(|j| match what {
                Rename::Channel { channel } => j.name.channel().as_str() == channel,
                Rename::Location { loc } => j.name.locations().iter().any(|l| l.as_str() == loc),
                Rename::Table { .. } | Rename::LocGroup { .. } => false,
            });
        if let Some(job) = busy {
            return Err(conflict(format!(
                "job {} ({}) uses the old name; deactivate (or delete the job) before renaming",
                job.name, job.state
            )));
        }
        let body = what.event_body(new_name);
        self.edit_definitions_with_body(
            hub,
            EventType::DefinitionChange,
            &format!("{} to {new_name}", describe(what)),
            body,
            |doc| apply(doc, what, new_name),
        )
        .await?;
        Ok(())
    }
}

fn describe(what: &Rename) -> String {
    match what {
        Rename::Channel { channel } => format!("rename_channel {channel}"),
        Rename::Table { channel, table } => format!("rename_table {channel}.{table}"),
        Rename::LocGroup { channel, loc_group } => {
            format!("rename_loc_group {channel}.{loc_group}")
        }
        Rename::Location { loc } => format!("rename_loc {loc}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Json {
        json!({
            "hub": {"name": "h"},
            "locations": {"src": {"class": "sqlite"}, "tgt": {"class": "sqlite"}},
            "channels": {
                "ch1": {
                    "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
                    "tables": {"orders": {"cols": {"id": {"data_type": "int64"}}}},
                    "actions": [
                        {"type": "Capture", "loc_scope": "SOURCE", "table_scope": "*"},
                        {"type": "Restrict", "loc_scope": "src", "table_scope": "orders"}
                    ]
                },
                "ch2": {}
            }
        })
    }

    #[test]
    fn a_location_renamed_keeps_its_groups_and_actions() {
        let mut d = doc();
        apply(&mut d, &Rename::Location { loc: "src".into() }, "src2").unwrap();
        assert!(d["locations"].get("src").is_none());
        assert_eq!(
            d["channels"]["ch1"]["loc_groups"]["SOURCE"]["members"],
            json!(["src2"])
        );
        assert_eq!(d["channels"]["ch1"]["actions"][1]["loc_scope"], "src2");
    }

    #[test]
    fn a_table_renamed_keeps_its_columns_and_actions() {
        let mut d = doc();
        let what = Rename::Table {
            channel: "ch1".into(),
            table: "orders".into(),
        };
        apply(&mut d, &what, "orders2").unwrap();
        assert_eq!(
            d["channels"]["ch1"]["tables"]["orders2"]["cols"]["id"]["data_type"],
            "int64"
        );
        assert_eq!(d["channels"]["ch1"]["actions"][1]["table_scope"], "orders2");
        assert_eq!(d["channels"]["ch1"]["actions"][0]["table_scope"], "*");
    }

    #[test]
    fn taken_or_invalid_names_are_refused() {
        let mut d = doc();
        let before = d.clone();
        let e = apply(
            &mut d,
            &Rename::Channel {
                channel: "ch1".into(),
            },
            "ch2",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::Conflict);
        let e = apply(
            &mut d,
            &Rename::Channel {
                channel: "ch1".into(),
            },
            "../x",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::Invalid);
        let group = Rename::LocGroup {
            channel: "ch1".into(),
            loc_group: "SOURCE".into(),
        };
        let e = apply(&mut d, &group, "TARGET").unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::Conflict);
        let e = apply(&mut d, &Rename::Location { loc: "nope".into() }, "x").unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::NotFound);
        assert_eq!(d, before);
    }
}
