//! Hub snapshots (HVR's `POST /hubs/{hub}/snapshot`, `/snapshot`, `/snapshot_inspect`): a hub's
//! state saved as one document under a reference, to inspect and to restore as a new hub.
//!
//! What a snapshot holds: the hub's definitions (locations, channels with their tables and
//! actions, in the definitions document form) and its props. Sealed secrets (location
//! passwords) are left out: a snapshot outlives the wallet keys that sealed them, and a restored
//! hub is given its passwords again. Events, logs and statistics are not saved (HVR's
//! `event_trim`, `log_trim` and `stats_trim` are always `all`). A snapshot is kept in the
//! repository ([`PropBag::Snapshot`]), so every hub process of the repository sees it; a restore
//! compiles the definitions as an import over the API would, under the same location policy.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};
use sluice_model::definition::is_secret_prop;
use sluice_model::{EventType, HubName};
use sluice_repo::{PropBag, PropWrite};

use crate::{HubService, Result, ServiceError};

/// What to save (HVR's `snapshot_save_post_req`).
#[derive(Clone, Debug, Default)]
pub struct SnapshotRequest {
    /// Why it is saved.
    pub reason: Option<String>,
    /// Only this channel (and every location).
    pub channel_focus: Option<String>,
}

/// The snapshot's description (HVR's `snapshot_inspect_post_resp`): everything but the
/// definitions.
const META: &str = "meta";
const DEFINITIONS: &str = "definitions";

/// Whether `reference` may name a snapshot.
fn check_reference(reference: &str) -> Result<()> {
    if reference.is_empty()
        || reference.len() > 100
        || !reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ServiceError::invalid(format!(
            "ref: {reference:?} is not a snapshot reference (letters, digits, _ and -, at most 100)"
        )));
    }
    Ok(())
}

impl HubService {
    /// Saves `hub` to a new snapshot; answers its reference.
    pub async fn save_snapshot(&self, hub: &HubName, request: &SnapshotRequest) -> Result<String> {
        let record = self.hub(hub).await?;
        let (defs, _) = self.definitions(hub).await?;
        let mut doc = crate::definition::to_document(&defs);
        if let Some(Json::Object(locations)) = doc.get_mut("locations") {
            for loc in locations.values_mut() {
                if let Some(Json::Object(props)) = loc.get_mut("props") {
                    props.retain(|name, value| {
                        !(is_secret_prop(name)
                            && value.as_str().is_some_and(crate::secrets::is_sealed))
                    });
                }
            }
        }
        if let Some(focus) = &request.channel_focus {
            let channels = doc
                .get_mut("channels")
                .and_then(Json::as_object_mut)
                .ok_or_else(|| ServiceError::invalid("the hub's definitions have no channels"))?;
            let kept = channels.remove(focus).ok_or_else(|| {
                ServiceError::not_found(format!(
                    "channel_focus: channel {focus} does not exist in hub {hub}"
                ))
            })?;
            *channels = Map::from_iter([(focus.clone(), kept)]);
        }
        let mut hub_props: Map<String, Json> = record.props.clone().into_iter().collect();
        hub_props.insert("Description".into(), json!(record.hub.description));
        let now = crate::hub_server::now_text();
        let reference = format!(
            "{hub}-{}-{}",
            now.chars().filter(char::is_ascii_digit).collect::<String>(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut meta = json!({
            "original_hub": hub.as_str(),
            "original_hvr_version": concat!("sluice ", env!("CARGO_PKG_VERSION")),
            "original_repository_version": crate::hub_server::repository_version().to_string(),
            "save_user": self.user(),
            "save_tstamp": now,
            "event_trim": "all",
            "log_trim": "all",
            "stats_trim": "all",
            "definition_trim": "none",
            "hub_props": hub_props,
        });
        if let Some(reason) = &request.reason {
            meta["reason"] = json!(reason);
        }
        if let Some(focus) = &request.channel_focus {
            meta["channel_focus"] = json!(focus);
        }
        let props = BTreeMap::from([
            (META.to_owned(), Some(meta)),
            (DEFINITIONS.to_owned(), Some(doc)),
        ]);
        self.props_store()
            .write_props(
                &PropBag::Snapshot(reference.clone()),
                &props,
                PropWrite::Create,
            )
            .await?;
        Ok(reference)
    }

    async fn snapshot(&self, reference: &str) -> Result<BTreeMap<String, Json>> {
        check_reference(reference)?;
        self.props_store()
            .props(&PropBag::Snapshot(reference.to_owned()))
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("snapshot {reference} does not exist")))
    }

    /// What snapshot `reference` holds: who saved which hub when, and the hub's props.
    pub async fn inspect_snapshot(&self, reference: &str) -> Result<Json> {
        let snapshot = self.snapshot(reference).await?;
        Ok(snapshot.get(META).cloned().unwrap_or_else(|| json!({})))
    }

    /// The hub snapshot `reference` was saved from.
    pub async fn snapshot_hub(&self, reference: &str) -> Result<HubName> {
        let meta = self.inspect_snapshot(reference).await?;
        meta.get("original_hub")
            .and_then(Json::as_str)
            .and_then(|h| HubName::new(h).ok())
            .ok_or_else(|| ServiceError::invalid(format!("snapshot {reference} is damaged")))
    }

    /// Restores snapshot `reference` as the new hub `hub` (with `description`, else the saved
    /// one). Nothing is left when it fails.
    pub async fn restore_snapshot(
        &self,
        reference: &str,
        hub: &str,
        description: Option<&str>,
    ) -> Result<()> {
        let snapshot = self.snapshot(reference).await?;
        let meta = snapshot.get(META).cloned().unwrap_or_default();
        let mut doc = snapshot
            .get(DEFINITIONS)
            .cloned()
            .ok_or_else(|| ServiceError::invalid(format!("snapshot {reference} is damaged")))?;
        let mut props: BTreeMap<String, Json> = meta
            .get("hub_props")
            .and_then(Json::as_object)
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        let saved_description = props
            .remove("Description")
            .and_then(|d| d.as_str().map(str::to_owned))
            .unwrap_or_default();
        let description = description.map_or(saved_description, str::to_owned);
        self.create_hub(hub, &description).await?;
        let name = HubName::new(hub).map_err(|e| ServiceError::invalid(e.to_string()))?;
        doc["hub"] = json!({"name": hub, "description": description});
        let restored = async {
            self.edit_definitions(
                &name,
                EventType::RestoreHubSnapshot,
                &format!("hub restored from snapshot {reference}"),
                |d| {
                    *d = doc.clone();
                    Ok(())
                },
            )
            .await?;
            if !props.is_empty() {
                let changes = props.into_iter().map(|(k, v)| (k, Some(v))).collect();
                self.set_hub_props(&name, &changes).await?;
            }
            Ok::<_, ServiceError>(())
        }
        .await;
        if let Err(e) = restored {
            if let Err(cleanup) = self.delete_hub(&name).await {
                tracing::warn!(hub = %name, error = %cleanup, "cannot remove a hub whose restore failed");
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_cannot_be_paths_or_sql() {
        assert!(check_reference("hub1-20261205-abcdef12").is_ok());
        for bad in ["", "../x", "a/b", "x' OR 1=1 --", &"a".repeat(101)] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }
}
