//! PostgreSQL: hubs and their definitions (locations, channels, tables, actions) ([`crate::DefinitionStore`]).

use super::*;
use crate::DefinitionStore;

#[async_trait]
impl DefinitionStore for PostgresRepository {
    async fn hubs(&self) -> Result<Vec<HubRecord>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        let rows = conn
            .query("SELECT hub_name FROM hub ORDER BY hub_name", &[])
            .await
            .map_err(|e| storage(e, "list hubs"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(hub) = read_hub(conn, &col::<String>(row, 0)?).await? {
                out.push(hub);
            }
        }
        Ok(out)
    }

    async fn hub(&self, hub: &HubName) -> Result<Option<HubRecord>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        read_hub(conn, hub.as_str()).await
    }

    async fn apply_definitions(
        &self,
        definitions: &Definitions,
        user: &str,
        source: &str,
    ) -> Result<ApplySummary> {
        let defs = definitions;
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let hub = &defs.hub.name;
        let mut summary = ApplySummary::default();
        let created = tx
            .execute(
                "INSERT INTO hub (hub_name, description, created, creator) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hub_name) DO NOTHING",
                &[&hub.as_str(), &defs.hub.description, &Utc::now(), &user],
            )
            .await
            .map_err(|e| storage(e, "create the hub"))?
            == 1;
        if created {
            summary.hub_created = true;
            insert_event(
                &tx,
                &NewEvent {
                    hub: hub.clone(),
                    event_type: EventType::HubCreate,
                    user: user.to_owned(),
                    description: format!("hub {hub} created"),
                    channel: None,
                    loc: None,
                    loc2: None,
                    job: None,
                    state: EventState::Done,
                    body: serde_json::json!({ "source": source }),
                },
            )
            .await?;
        } else {
            let n = tx
                .execute(
                    "UPDATE hub SET description = $2, def_version = def_version + 1 WHERE hub_name = $1",
                    &[&hub.as_str(), &defs.hub.description],
                )
                .await
                .map_err(|e| storage(e, "update the hub"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("hub {hub} was deleted while its definitions were applied"),
                ));
            }
        }
        let existing: Vec<String> = read_locations(&*tx, hub, None)
            .await?
            .into_iter()
            .map(|l| l.name.to_string())
            .collect();
        for loc in defs.locations.values() {
            let exists = existing.iter().any(|e| e == loc.name.as_str());
            write_location(&tx, hub, loc, exists).await?;
            if exists {
                summary.locations_replaced.push(loc.name.clone());
            } else {
                summary.locations_added.push(loc.name.clone());
            }
        }
        for ch in defs.channels.values() {
            let exists = !read_channels(&*tx, hub, Some(&ch.name)).await?.is_empty();
            write_channel(&tx, hub, ch).await?;
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
                user: user.to_owned(),
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
        )
        .await?;
        summary.event = Some(event);
        commit(tx, "commit the definitions").await?;
        Ok(summary)
    }

    async fn location(&self, hub: &HubName, loc: &LocationName) -> Result<Option<Location>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        Ok(read_locations(conn, hub, Some(loc)).await?.pop())
    }

    async fn locations(&self, hub: &HubName) -> Result<Vec<Location>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        read_locations(conn, hub, None).await
    }

    async fn channel(&self, hub: &HubName, ch: &ChannelName) -> Result<Option<Channel>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        Ok(read_channels(conn, hub, Some(ch)).await?.pop())
    }

    async fn channels(&self, hub: &HubName) -> Result<Vec<Channel>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        read_channels(conn, hub, None).await
    }

    async fn create_hub(&self, hub: &Hub, user: &str) -> Result<EventId> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let n = tx
            .execute(
                "INSERT INTO hub (hub_name, description, created, creator) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hub_name) DO NOTHING",
                &[&hub.name.as_str(), &hub.description, &Utc::now(), &user],
            )
            .await
            .map_err(|e| storage(e, "create a hub"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("hub {} already exists", hub.name),
            ));
        }
        let id = insert_event(
            &tx,
            &audit(
                &hub.name,
                EventType::HubCreate,
                user,
                format!("hub {} created", hub.name),
            ),
        )
        .await?;
        commit(tx, "commit a hub").await?;
        Ok(id)
    }

    async fn delete_hub(&self, hub: &HubName) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        // First, so that whatever else writes to this hub waits for the deletion.
        lock_hub(&tx, hub, "FOR UPDATE").await?;
        let h = hub.as_str();
        // Members reference locations without cascade; channels go first.
        for sql in [
            "DELETE FROM channel WHERE hub_name = $1",
            "DELETE FROM location WHERE hub_name = $1",
            "DELETE FROM job WHERE hub_name = $1",
            "DELETE FROM hub WHERE hub_name = $1",
        ] {
            tx.execute(sql, &[&h])
                .await
                .map_err(|e| storage(e, "delete a hub"))?;
        }
        commit(tx, "commit a hub deletion").await
    }

    async fn set_hub_frozen(&self, hub: &HubName, frozen: bool, user: &str) -> Result<EventId> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let n = if frozen {
            tx.execute(
                "UPDATE hub SET hub_state = 'FROZEN', \
                 freeze_time = CASE WHEN hub_state = 'FROZEN' THEN freeze_time ELSE $2 END WHERE hub_name = $1",
                &[&hub.as_str(), &Utc::now()],
            )
            .await
        } else {
            tx.execute(
                "UPDATE hub SET hub_state = 'LIVE', freeze_time = NULL WHERE hub_name = $1",
                &[&hub.as_str()],
            )
            .await
        }
        .map_err(|e| storage(e, "change the hub state"))?;
        if n == 0 {
            return Err(hub_missing(hub));
        }
        let (kind, word) = if frozen {
            (EventType::HubFreeze, "frozen")
        } else {
            (EventType::HubUnfreeze, "unfrozen")
        };
        let id = insert_event(
            &tx,
            &audit(hub, kind, user, format!("hub {hub} {word} by {user}")),
        )
        .await?;
        commit(tx, "commit the hub state").await?;
        Ok(id)
    }

    async fn set_hub_props(
        &self,
        hub: &HubName,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        user: &str,
    ) -> Result<EventId> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        lock_hub(&tx, hub, "FOR NO KEY UPDATE").await?;
        let h = hub.as_str();
        for (prop, value) in changes {
            let result = match (prop.as_str(), value) {
                ("Description", v) => {
                    let description = v.as_ref().map_or(String::new(), |v| {
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    });
                    tx.execute(
                        "UPDATE hub SET description = $2 WHERE hub_name = $1",
                        &[&h, &description],
                    )
                    .await
                }
                (_, None) => {
                    tx.execute(
                        "DELETE FROM hub_property WHERE hub_name = $1 AND prop_name = $2",
                        &[&h, prop],
                    )
                    .await
                }
                (_, Some(v)) => {
                    tx.execute(
                        "INSERT INTO hub_property (hub_name, prop_name, prop_value) VALUES ($1, $2, $3) \
                         ON CONFLICT (hub_name, prop_name) DO UPDATE SET prop_value = excluded.prop_value",
                        &[&h, prop, &v.to_string()],
                    )
                    .await
                }
            };
            result.map_err(|e| storage(e, "set a hub property"))?;
        }
        let mut event = audit(
            hub,
            EventType::HubPropertyChange,
            user,
            format!(
                "hub properties changed by {user}: {}",
                changes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
        event.body = serde_json::json!({ "props": changes });
        let id = insert_event(&tx, &event).await?;
        commit(tx, "commit hub properties").await?;
        Ok(id)
    }

    async fn replace_hub_definitions(
        &self,
        definitions: &Definitions,
        expected_version: i64,
        event: NewEvent,
    ) -> Result<EventId> {
        let defs = definitions;
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let hub = &defs.hub.name;
        let h = hub.as_str();
        // The version is checked and bumped under the hub row's lock: of two writers that read
        // the same version, the second sees the first's bump.
        let row = tx
            .query_opt(
                "SELECT def_version FROM hub WHERE hub_name = $1 FOR NO KEY UPDATE",
                &[&h],
            )
            .await
            .map_err(|e| storage(e, "lock a hub"))?
            .ok_or_else(|| hub_missing(hub))?;
        let version: i64 = col(&row, 0)?;
        if version != expected_version {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!(
                    "the definitions of hub {hub} changed meanwhile (version {expected_version} is now {version})"
                ),
            ));
        }
        tx.execute(
            "UPDATE hub SET description = $2, def_version = def_version + 1 WHERE hub_name = $1",
            &[&h, &defs.hub.description],
        )
        .await
        .map_err(|e| storage(e, "update the hub"))?;
        tx.execute("DELETE FROM channel WHERE hub_name = $1", &[&h])
            .await
            .map_err(|e| storage(e, "replace channels"))?;
        let keep: Vec<&str> = defs.locations.keys().map(|l| l.as_str()).collect();
        tx.execute(
            "DELETE FROM location WHERE hub_name = $1 AND NOT (loc_name = ANY($2::text[]))",
            &[&h, &keep],
        )
        .await
        .map_err(|e| storage(e, "delete a location"))?;
        let existing: Vec<String> = tx
            .query("SELECT loc_name FROM location WHERE hub_name = $1", &[&h])
            .await
            .map_err(|e| storage(e, "read locations"))?
            .iter()
            .map(|r| col(r, 0))
            .collect::<Result<_>>()?;
        for loc in defs.locations.values() {
            let exists = existing.iter().any(|e| e == loc.name.as_str());
            write_location(&tx, hub, loc, exists).await?;
        }
        for ch in defs.channels.values() {
            write_channel(&tx, hub, ch).await?;
        }
        let id = insert_event(&tx, &event).await?;
        commit(tx, "commit the definitions").await?;
        Ok(id)
    }
}
