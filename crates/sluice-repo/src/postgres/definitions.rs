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
            "DELETE FROM prop_bag WHERE hub_name = $1",
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

fn prop_json(value: &PropValue) -> String {
    serde_json::to_string(value).expect("property values serialize")
}

fn parse_prop(text: &str) -> Result<PropValue> {
    serde_json::from_str(text).map_err(|_| corrupt(format_args!("property value {text:?}")))
}

async fn write_location(
    tx: &Transaction<'_>,
    hub: &HubName,
    loc: &Location,
    exists: bool,
) -> Result<()> {
    let what = "store a location";
    let (h, l) = (hub.as_str(), loc.name.as_str());
    if exists {
        tx.execute(
            "UPDATE location SET loc_class = $3, description = $4 WHERE hub_name = $1 AND loc_name = $2",
            &[&h, &l, &loc.class.as_str(), &loc.description],
        )
        .await
        .map_err(|e| storage(e, what))?;
        tx.execute(
            "DELETE FROM location_property WHERE hub_name = $1 AND loc_name = $2",
            &[&h, &l],
        )
        .await
        .map_err(|e| storage(e, what))?;
    } else {
        tx.execute(
            "INSERT INTO location (hub_name, loc_name, loc_class, description) VALUES ($1, $2, $3, $4)",
            &[&h, &l, &loc.class.as_str(), &loc.description],
        )
        .await
        .map_err(|e| storage(e, what))?;
    }
    for (prop, value) in &loc.props {
        tx.execute(
            "INSERT INTO location_property (hub_name, loc_name, prop_name, prop_value) VALUES ($1, $2, $3, $4)",
            &[&h, &l, prop, &prop_json(value)],
        )
        .await
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

fn seq(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

async fn write_channel(tx: &Transaction<'_>, hub: &HubName, ch: &Channel) -> Result<()> {
    let what = "store a channel";
    let (h, c) = (hub.as_str(), ch.name.as_str());
    tx.execute(
        "DELETE FROM channel WHERE hub_name = $1 AND chn_name = $2",
        &[&h, &c],
    )
    .await
    .map_err(|e| storage(e, what))?;
    tx.execute(
        "INSERT INTO channel (hub_name, chn_name, description) VALUES ($1, $2, $3)",
        &[&h, &c, &ch.description],
    )
    .await
    .map_err(|e| storage(e, what))?;
    for (group, members) in &ch.loc_groups {
        tx.execute(
            "INSERT INTO loc_group (hub_name, chn_name, grp_name) VALUES ($1, $2, $3)",
            &[&h, &c, &group.as_str()],
        )
        .await
        .map_err(|e| storage(e, what))?;
        for (i, loc) in members.iter().enumerate() {
            tx.execute(
                "INSERT INTO loc_group_member (hub_name, chn_name, grp_name, loc_name, member_seq) VALUES ($1, $2, $3, $4, $5)",
                &[&h, &c, &group.as_str(), &loc.as_str(), &seq(i)],
            )
            .await
            .map_err(|e| {
                storage(
                    e,
                    &format!("store location group {group} (is location {loc} defined?)"),
                )
            })?;
        }
    }
    for table in ch.tables.values() {
        tx.execute(
            "INSERT INTO channel_table (hub_name, chn_name, tbl_name, tbl_base_name, tbl_group, discover_cols) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &h,
                &c,
                &table.name.as_str(),
                &table.base_name.as_ref().map(|b| b.as_str()),
                &table.table_group.as_ref().map(|g| g.as_str()),
                &table.columns.is_none(),
            ],
        )
        .await
        .map_err(|e| storage(e, what))?;
        for (i, column) in table.columns.iter().flatten().enumerate() {
            tx.execute(
                "INSERT INTO channel_column (hub_name, chn_name, tbl_name, col_name, col_sequence, col_key, col_datatype, col_nullable) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &h,
                    &c,
                    &table.name.as_str(),
                    &column.name.as_str(),
                    &seq(i + 1),
                    &i32::try_from(column.key).unwrap_or(i32::MAX),
                    &column.data_type.to_string(),
                    &column.nullable,
                ],
            )
            .await
            .map_err(|e| storage(e, what))?;
        }
    }
    for (i, action) in ch.actions.iter().enumerate() {
        let params_json =
            serde_json::to_string(action.params()).expect("action parameters serialize");
        tx.execute(
            "INSERT INTO action (hub_name, chn_name, action_seq, act_name, loc_scope, tbl_scope, act_params) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &h,
                &c,
                &seq(i),
                &action.action_type().as_str(),
                &action.loc_scope.to_string(),
                &action.table_scope.to_string(),
                &params_json,
            ],
        )
        .await
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

async fn read_hub<C: GenericClient + Sync>(conn: &C, hub: &str) -> Result<Option<HubRecord>> {
    let row = conn
        .query_opt(
            "SELECT hub_name, description, hub_state, created, creator, freeze_time, def_version \
             FROM hub WHERE hub_name = $1",
            &[&hub],
        )
        .await
        .map_err(|e| storage(e, "read a hub"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let props = conn
        .query(
            "SELECT prop_name, prop_value FROM hub_property WHERE hub_name = $1 ORDER BY prop_name",
            &[&hub],
        )
        .await
        .map_err(|e| storage(e, "read hub properties"))?
        .iter()
        .map(|r| {
            let value: String = col(r, 1)?;
            let value = serde_json::from_str(&value).map_err(|_| corrupt("hub property"))?;
            Ok((col(r, 0)?, value))
        })
        .collect::<Result<_>>()?;
    Ok(Some(HubRecord {
        hub: Hub {
            name: name(&col::<String>(&row, 0)?, "hub name")?,
            description: col(&row, 1)?,
        },
        state: name(&col::<String>(&row, 2)?, "hub state")?,
        created: col(&row, 3)?,
        creator: col(&row, 4)?,
        freeze_time: col(&row, 5)?,
        props,
        version: col(&row, 6)?,
    }))
}

async fn read_locations<C: GenericClient + Sync>(
    conn: &C,
    hub: &HubName,
    only: Option<&LocationName>,
) -> Result<Vec<Location>> {
    let what = "read locations";
    let h = hub.as_str();
    let only = only.map(|l| l.as_str());
    let rows = conn
        .query(
            "SELECT loc_name, loc_class, description FROM location \
             WHERE hub_name = $1 AND ($2::text IS NULL OR loc_name = $2) ORDER BY loc_name",
            &[&h, &only],
        )
        .await
        .map_err(|e| storage(e, what))?;
    let props = conn
        .query(
            "SELECT loc_name, prop_name, prop_value FROM location_property \
             WHERE hub_name = $1 AND ($2::text IS NULL OR loc_name = $2) ORDER BY loc_name, prop_name",
            &[&h, &only],
        )
        .await
        .map_err(|e| storage(e, what))?;
    let mut by_location: BTreeMap<String, BTreeMap<String, PropValue>> = BTreeMap::new();
    for r in &props {
        let value: String = col(r, 2)?;
        by_location
            .entry(col(r, 0)?)
            .or_default()
            .insert(col(r, 1)?, parse_prop(&value)?);
    }
    rows.iter()
        .map(|r| {
            let loc: String = col(r, 0)?;
            Ok(Location {
                name: name(&loc, "location name")?,
                class: name(&col::<String>(r, 1)?, "location class")?,
                description: col(r, 2)?,
                props: by_location.remove(&loc).unwrap_or_default(),
            })
        })
        .collect()
}

async fn read_channels<C: GenericClient + Sync>(
    conn: &C,
    hub: &HubName,
    only: Option<&ChannelName>,
) -> Result<Vec<Channel>> {
    let what = "read channels";
    let h = hub.as_str();
    let channels = conn
        .query(
            "SELECT chn_name, description FROM channel \
             WHERE hub_name = $1 AND ($2::text IS NULL OR chn_name = $2) ORDER BY chn_name",
            &[&h, &only.map(|c| c.as_str())],
        )
        .await
        .map_err(|e| storage(e, what))?;
    let mut out = Vec::with_capacity(channels.len());
    for row in &channels {
        let c: String = col(row, 0)?;
        let mut loc_groups: BTreeMap<LocGroupName, Vec<LocationName>> = BTreeMap::new();
        for g in conn
            .query(
                "SELECT grp_name FROM loc_group WHERE hub_name = $1 AND chn_name = $2 ORDER BY grp_name",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            loc_groups.insert(name(&col::<String>(&g, 0)?, "location group")?, Vec::new());
        }
        for m in conn
            .query(
                "SELECT grp_name, loc_name FROM loc_group_member WHERE hub_name = $1 AND chn_name = $2 \
                 ORDER BY grp_name, member_seq",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            loc_groups
                .entry(name(&col::<String>(&m, 0)?, "location group")?)
                .or_default()
                .push(name(&col::<String>(&m, 1)?, "location name")?);
        }
        let mut columns: BTreeMap<String, Vec<ChannelColumn>> = BTreeMap::new();
        for r in conn
            .query(
                "SELECT tbl_name, col_name, col_key, col_datatype, col_nullable FROM channel_column \
                 WHERE hub_name = $1 AND chn_name = $2 ORDER BY tbl_name, col_sequence",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            let key: i32 = col(&r, 2)?;
            columns.entry(col(&r, 0)?).or_default().push(ChannelColumn {
                name: name(&col::<String>(&r, 1)?, "column name")?,
                data_type: name(&col::<String>(&r, 3)?, "data type")?,
                nullable: col(&r, 4)?,
                key: u32::try_from(key).map_err(|_| corrupt(format_args!("key position {key}")))?,
            });
        }
        let mut tables = BTreeMap::new();
        for r in conn
            .query(
                "SELECT tbl_name, tbl_base_name, tbl_group, discover_cols FROM channel_table \
                 WHERE hub_name = $1 AND chn_name = $2 ORDER BY tbl_name",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            let t: String = col(&r, 0)?;
            let discover: bool = col(&r, 3)?;
            let cols = columns.remove(&t).unwrap_or_default();
            let table_name: TableName = name(&t, "table name")?;
            tables.insert(
                table_name.clone(),
                ChannelTable {
                    name: table_name,
                    base_name: opt_name(col(&r, 1)?, "base name")?,
                    table_group: opt_name(col(&r, 2)?, "table group")?,
                    columns: (!discover).then_some(cols),
                },
            );
        }
        let mut actions = Vec::new();
        for r in conn
            .query(
                "SELECT act_name, loc_scope, tbl_scope, act_params FROM action \
                 WHERE hub_name = $1 AND chn_name = $2 ORDER BY action_seq",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            let params_json: String = col(&r, 3)?;
            actions.push(
                Action::new(
                    name(&col::<String>(&r, 0)?, "action type")?,
                    name(&col::<String>(&r, 1)?, "location scope")?,
                    name(&col::<String>(&r, 2)?, "table scope")?,
                    serde_json::from_str(&params_json).map_err(|_| corrupt("action parameters"))?,
                )
                .map_err(|_| corrupt("action parameters"))?,
            );
        }
        out.push(Channel {
            name: name(&c, "channel name")?,
            description: col(row, 1)?,
            loc_groups,
            tables,
            actions,
        });
    }
    Ok(out)
}
