//! The hub's actions and a location's actions (HVR's `hub_actions` and `locs/{loc}/actions`):
//! lists of `{"type", "params"}` without scopes. sluice keeps them as stored (no action of these
//! kinds changes what sluice does yet) in a property bag of the hub or location; every change is
//! checked (known action type, known parameters), posts HVR's `Definition_Change` event and bumps
//! the hub's definitions version.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};
use sluice_model::definition::ActionType;
use sluice_model::{EventType, HubName, LocationName};
use sluice_repo::{PropBag, PropWrite};

use crate::{HubService, Result, ServiceError};

/// Whose action list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOwner {
    /// The hub's.
    Hub,
    /// A location's.
    Location(LocationName),
}

impl ActionOwner {
    fn bag(&self, hub: &HubName) -> PropBag {
        match self {
            ActionOwner::Hub => PropBag::HubActions(hub.clone()),
            ActionOwner::Location(loc) => PropBag::LocActions(hub.clone(), loc.to_string()),
        }
    }
}

/// Checks one action of a hub or location list: `type` a known action type, `params` its known
/// parameters with text, number or boolean values; answers it as stored (empty params left out).
pub fn check_action(action: &Json, what: &str) -> Result<Json> {
    let map = action
        .as_object()
        .ok_or_else(|| ServiceError::invalid(format!("{what}: expected an action object")))?;
    if let Some(bad) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "params"))
    {
        return Err(ServiceError::invalid(format!(
            "{what}: unknown field {bad:?}; expected type, params"
        )));
    }
    let action_type: ActionType = map
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| ServiceError::invalid(format!("{what}.type: missing")))?
        .parse()
        .map_err(|e: String| ServiceError::invalid(format!("{what}.type: {e}")))?;
    let mut out = Map::new();
    out.insert("type".into(), Json::from(action_type.as_str()));
    match map.get("params") {
        None | Some(Json::Null) => {}
        Some(Json::Object(params)) => {
            for (k, v) in params {
                if k != "Context" && !action_type.params().contains(&k.as_str()) {
                    return Err(ServiceError::invalid(format!(
                        "{what}.params.{k}: unknown parameter of {action_type}"
                    )));
                }
                if !matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_)) {
                    return Err(ServiceError::invalid(format!(
                        "{what}.params.{k}: expected text, a number or a boolean"
                    )));
                }
            }
            if !params.is_empty() {
                out.insert("params".into(), Json::Object(params.clone()));
            }
        }
        Some(_) => {
            return Err(ServiceError::invalid(format!(
                "{what}.params: expected an object"
            )));
        }
    }
    Ok(Json::Object(out))
}

impl HubService {
    async fn require_owner(&self, hub: &HubName, owner: &ActionOwner) -> Result<()> {
        if let ActionOwner::Location(loc) = owner {
            let locations = self.definition_store().locations(hub).await?;
            if !locations.iter().any(|l| &l.name == loc) {
                return Err(ServiceError::not_found(format!(
                    "location {loc} does not exist"
                )));
            }
        } else {
            self.hub(hub).await?;
        }
        Ok(())
    }

    /// The action list of the hub or of a location (empty when none was stored).
    pub async fn action_list(&self, hub: &HubName, owner: &ActionOwner) -> Result<Vec<Json>> {
        self.require_owner(hub, owner).await?;
        self.stored_action_list(hub, owner).await
    }

    async fn stored_action_list(&self, hub: &HubName, owner: &ActionOwner) -> Result<Vec<Json>> {
        let props = self.props_store().props(&owner.bag(hub)).await?;
        Ok(props
            .and_then(|p| p.get("actions").and_then(Json::as_array).cloned())
            .unwrap_or_default())
    }

    /// Changes the action list of the hub or of a location: `change` edits the stored list, the
    /// result is checked and stored, and HVR's event (`change_name`, e.g. `add_hub_actions`) is
    /// posted with the hub's definitions version bumped.
    pub async fn edit_action_list(
        &self,
        hub: &HubName,
        owner: &ActionOwner,
        change_name: &str,
        change: impl FnOnce(&mut Vec<Json>) -> Result<()>,
    ) -> Result<()> {
        self.require_owner(hub, owner).await?;
        let mut list = self.stored_action_list(hub, owner).await?;
        change(&mut list)?;
        let list: Vec<Json> = list
            .iter()
            .enumerate()
            .map(|(i, a)| check_action(a, &format!("actions[{i}]")))
            .collect::<Result<_>>()?;
        let changes = BTreeMap::from([("actions".to_owned(), Some(Json::Array(list.clone())))]);
        self.props_store()
            .write_props(&owner.bag(hub), &changes, PropWrite::Replace)
            .await?;
        let args = match owner {
            ActionOwner::Hub => json!({ "actions": list }),
            ActionOwner::Location(loc) => json!({ "loc": loc.as_str(), "actions": list }),
        };
        let description = match owner {
            ActionOwner::Hub => change_name.to_owned(),
            ActionOwner::Location(loc) => format!("{change_name} {loc}"),
        };
        self.edit_definitions_with_body(
            hub,
            EventType::DefinitionChange,
            &description,
            json!({ change_name: args }),
            |_| Ok(()),
        )
        .await?;
        Ok(())
    }

    /// Moves (`copy` false) or copies a location's stored actions to another location's bag:
    /// after a location rename or copy.
    pub async fn carry_loc_actions(
        &self,
        hub: &HubName,
        from: &LocationName,
        to: &LocationName,
        copy: bool,
    ) -> Result<()> {
        let from_bag = ActionOwner::Location(from.clone()).bag(hub);
        let Some(props) = self.props_store().props(&from_bag).await? else {
            return Ok(());
        };
        let changes = props.into_iter().map(|(k, v)| (k, Some(v))).collect();
        self.props_store()
            .write_props(
                &ActionOwner::Location(to.clone()).bag(hub),
                &changes,
                PropWrite::Replace,
            )
            .await?;
        if !copy {
            self.props_store().delete_bag(&from_bag).await?;
        }
        Ok(())
    }

    /// Forgets a deleted location's stored actions.
    pub async fn forget_loc_actions(&self, hub: &HubName, loc: &LocationName) -> Result<()> {
        self.props_store()
            .delete_bag(&ActionOwner::Location(loc.clone()).bag(hub))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_checked() {
        assert_eq!(
            check_action(&json!({"type": "Capture", "params": {}}), "a").unwrap(),
            json!({"type": "Capture"})
        );
        assert!(check_action(&json!({"type": "Nope"}), "a").is_err());
        assert!(check_action(&json!({"type": "Capture", "params": {"Nope": 1}}), "a").is_err());
        assert!(check_action(&json!({"type": "Capture", "loc_scope": "X"}), "a").is_err());
        assert!(
            check_action(&json!({"type": "Environment", "params": {"Name": []}}), "a").is_err()
        );
    }
}
