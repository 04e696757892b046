//! SQLite: hubs and their definitions (locations, channels, tables, actions) ([`crate::DefinitionStore`]).

use super::*;
use crate::DefinitionStore;

#[async_trait]
impl DefinitionStore for SqliteRepository {
    async fn hubs(&self) -> Result<Vec<HubRecord>> {
        self.with(|conn| {
            let names: Vec<String> = conn
                .prepare("SELECT hub_name FROM hub ORDER BY hub_name")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(|e| storage(e, "list hubs"))?;
            names
                .iter()
                .filter_map(|n| read_hub(conn, n).transpose())
                .collect()
        })
        .await
    }

    async fn hub(&self, hub: &HubName) -> Result<Option<HubRecord>> {
        let hub = hub.clone();
        self.with(move |conn| read_hub(conn, hub.as_str())).await
    }

    async fn apply_definitions(
        &self,
        definitions: &Definitions,
        user: &str,
        source: &str,
    ) -> Result<ApplySummary> {
        let defs = definitions.clone();
        let (user, source) = (user.to_owned(), source.to_owned());
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| storage(e, "begin"))?;
            let hub = &defs.hub.name;
            let mut summary = ApplySummary::default();
            if read_hub(&tx, hub.as_str())?.is_none() {
                tx.execute(
                    "INSERT INTO hub (hub_name, description, created, creator) VALUES (?1, ?2, ?3, ?4)",
                    params![hub.as_str(), defs.hub.description, ts(Utc::now()), user],
                )
                .map_err(|e| storage(e, "create the hub"))?;
                summary.hub_created = true;
                insert_event(
                    &tx,
                    &NewEvent {
                        hub: hub.clone(),
                        event_type: EventType::HubCreate,
                        user: user.clone(),
                        description: format!("hub {hub} created"),
                        channel: None,
                        loc: None,
                        loc2: None,
                        job: None,
                        state: EventState::Done,
                        body: serde_json::json!({ "source": source }),
                    },
                )?;
            } else {
                tx.execute(
                    "UPDATE hub SET description = ?2, def_version = def_version + 1 WHERE hub_name = ?1",
                    params![hub.as_str(), defs.hub.description],
                )
                .map_err(|e| storage(e, "update the hub"))?;
            }
            let existing: Vec<String> = read_locations(&tx, hub, None)?
                .into_iter()
                .map(|l| l.name.to_string())
                .collect();
            for loc in defs.locations.values() {
                let exists = existing.iter().any(|e| e == loc.name.as_str());
                write_location(&tx, hub, loc, exists)?;
                if exists {
                    summary.locations_replaced.push(loc.name.clone());
                } else {
                    summary.locations_added.push(loc.name.clone());
                }
            }
            for ch in defs.channels.values() {
                let exists = !read_channels(&tx, hub, Some(&ch.name))?.is_empty();
                write_channel(&tx, hub, ch)?;
                if exists {
                    summary.channels_replaced.push(ch.name.clone());
                } else {
                    summary.channels_added.push(ch.name.clone());
                }
            }
            let body = serde_json::json!({
                "source": source,
                "locations_added": summary.locations_added,
                "locations_replaced": summary.locations_replaced,
                "channels_added": summary.channels_added,
                "channels_replaced": summary.channels_replaced,
            });
            let event = insert_event(
                &tx,
                &NewEvent {
                    hub: hub.clone(),
                    event_type: EventType::DefinitionChangeImport,
                    user,
                    description: format!(
                        "applied {source}: {} location(s), {} channel(s)",
                        defs.locations.len(),
                        defs.channels.len()
                    ),
                    channel: None,
                    loc: None,
                    loc2: None,
                    job: None,
                    state: EventState::Done,
                    body,
                },
            )?;
            summary.event = Some(event);
            tx.commit().map_err(|e| storage(e, "commit the definitions"))?;
            Ok(summary)
        })
        .await
    }

    async fn location(&self, hub: &HubName, loc: &LocationName) -> Result<Option<Location>> {
        let (hub, loc) = (hub.clone(), loc.clone());
        self.with(move |conn| Ok(read_locations(conn, &hub, Some(&loc))?.pop()))
            .await
    }

    async fn locations(&self, hub: &HubName) -> Result<Vec<Location>> {
        let hub = hub.clone();
        self.with(move |conn| read_locations(conn, &hub, None))
            .await
    }

    async fn channel(&self, hub: &HubName, ch: &ChannelName) -> Result<Option<Channel>> {
        let (hub, ch) = (hub.clone(), ch.clone());
        self.with(move |conn| Ok(read_channels(conn, &hub, Some(&ch))?.pop()))
            .await
    }

    async fn channels(&self, hub: &HubName) -> Result<Vec<Channel>> {
        let hub = hub.clone();
        self.with(move |conn| read_channels(conn, &hub, None)).await
    }

    async fn create_hub(&self, hub: &Hub, user: &str) -> Result<EventId> {
        let (hub, user) = (hub.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            if read_hub(&tx, hub.name.as_str())?.is_some() {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("hub {} already exists", hub.name),
                ));
            }
            tx.execute(
                "INSERT INTO hub (hub_name, description, created, creator) VALUES (?1, ?2, ?3, ?4)",
                params![hub.name.as_str(), hub.description, ts(Utc::now()), user],
            )
            .map_err(|e| storage(e, "create a hub"))?;
            let id = insert_event(
                &tx,
                &audit(
                    &hub.name,
                    EventType::HubCreate,
                    &user,
                    format!("hub {} created", hub.name),
                ),
            )?;
            tx.commit().map_err(|e| storage(e, "commit a hub"))?;
            Ok(id)
        })
        .await
    }

    async fn delete_hub(&self, hub: &HubName) -> Result<()> {
        let hub = hub.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let h = hub.as_str();
            // Members reference locations without cascade; channels go first.
            for sql in [
                "DELETE FROM channel WHERE hub_name = ?1",
                "DELETE FROM location WHERE hub_name = ?1",
                "DELETE FROM job WHERE hub_name = ?1",
            ] {
                tx.execute(sql, [h])
                    .map_err(|e| storage(e, "delete a hub"))?;
            }
            let n = tx
                .execute("DELETE FROM hub WHERE hub_name = ?1", [h])
                .map_err(|e| storage(e, "delete a hub"))?;
            if n == 0 {
                return Err(hub_missing(&hub));
            }
            tx.commit().map_err(|e| storage(e, "commit a hub deletion"))
        })
        .await
    }

    async fn set_hub_frozen(&self, hub: &HubName, frozen: bool, user: &str) -> Result<EventId> {
        let (hub, user) = (hub.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            let n = if frozen {
                tx.execute(
                    "UPDATE hub SET hub_state = 'FROZEN', freeze_time = CASE WHEN hub_state = 'FROZEN' THEN freeze_time ELSE ?2 END WHERE hub_name = ?1",
                    params![hub.as_str(), ts(Utc::now())],
                )
            } else {
                tx.execute(
                    "UPDATE hub SET hub_state = 'LIVE', freeze_time = NULL WHERE hub_name = ?1",
                    params![hub.as_str()],
                )
            }
            .map_err(|e| storage(e, "change the hub state"))?;
            if n == 0 {
                return Err(hub_missing(&hub));
            }
            let (kind, word) = if frozen {
                (EventType::HubFreeze, "frozen")
            } else {
                (EventType::HubUnfreeze, "unfrozen")
            };
            let id = insert_event(&tx, &audit(&hub, kind, &user, format!("hub {hub} {word} by {user}")))?;
            tx.commit().map_err(|e| storage(e, "commit the hub state"))?;
            Ok(id)
        })
        .await
    }

    async fn set_hub_props(
        &self,
        hub: &HubName,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        user: &str,
    ) -> Result<EventId> {
        let (hub, changes, user) = (hub.clone(), changes.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            if read_hub(&tx, hub.as_str())?.is_none() {
                return Err(hub_missing(&hub));
            }
            for (prop, value) in &changes {
                let result = match (prop.as_str(), value) {
                    ("Description", v) => tx.execute(
                        "UPDATE hub SET description = ?2 WHERE hub_name = ?1",
                        params![hub.as_str(), v.as_ref().map_or(String::new(), |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))],
                    ),
                    (_, None) => tx.execute(
                        "DELETE FROM hub_property WHERE hub_name = ?1 AND prop_name = ?2",
                        params![hub.as_str(), prop],
                    ),
                    (_, Some(v)) => tx.execute(
                        "INSERT INTO hub_property (hub_name, prop_name, prop_value) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (hub_name, prop_name) DO UPDATE SET prop_value = excluded.prop_value",
                        params![hub.as_str(), prop, v.to_string()],
                    ),
                };
                result.map_err(|e| storage(e, "set a hub property"))?;
            }
            let mut event = audit(
                &hub,
                EventType::HubPropertyChange,
                &user,
                format!("hub properties changed by {user}: {}", changes.keys().cloned().collect::<Vec<_>>().join(", ")),
            );
            event.body = serde_json::json!({ "props": changes });
            let id = insert_event(&tx, &event)?;
            tx.commit().map_err(|e| storage(e, "commit hub properties"))?;
            Ok(id)
        })
        .await
    }

    async fn replace_hub_definitions(
        &self,
        definitions: &Definitions,
        expected_version: i64,
        event: NewEvent,
    ) -> Result<EventId> {
        let defs = definitions.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let hub = &defs.hub.name;
            let h = hub.as_str();
            let current = read_hub(&tx, h)?.ok_or_else(|| hub_missing(hub))?;
            if current.version != expected_version {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("the definitions of hub {hub} changed meanwhile (version {} is now {})", expected_version, current.version),
                ));
            }
            tx.execute(
                "UPDATE hub SET description = ?2, def_version = def_version + 1 WHERE hub_name = ?1",
                params![h, defs.hub.description],
            )
            .map_err(|e| storage(e, "update the hub"))?;
            tx.execute("DELETE FROM channel WHERE hub_name = ?1", [h])
                .map_err(|e| storage(e, "replace channels"))?;
            let existing: Vec<String> = read_locations(&tx, hub, None)?
                .into_iter()
                .map(|l| l.name.to_string())
                .collect();
            for old in &existing {
                if !defs.locations.keys().any(|l| l.as_str() == old) {
                    tx.execute("DELETE FROM location WHERE hub_name = ?1 AND loc_name = ?2", params![h, old])
                        .map_err(|e| storage(e, "delete a location"))?;
                }
            }
            for loc in defs.locations.values() {
                write_location(&tx, hub, loc, existing.iter().any(|e| e == loc.name.as_str()))?;
            }
            for ch in defs.channels.values() {
                write_channel(&tx, hub, ch)?;
            }
            let id = insert_event(&tx, &event)?;
            tx.commit().map_err(|e| storage(e, "commit the definitions"))?;
            Ok(id)
        })
        .await
    }
}
