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
                "DELETE FROM prop_bag WHERE hub_name = ?1",
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

fn prop_json(value: &PropValue) -> String {
    serde_json::to_string(value).expect("property values serialize")
}

fn parse_prop(text: &str) -> Result<PropValue> {
    serde_json::from_str(text).map_err(|_| corrupt(format_args!("property value {text:?}")))
}

fn write_location(tx: &Transaction<'_>, hub: &HubName, loc: &Location, exists: bool) -> Result<()> {
    let what = "store a location";
    if exists {
        tx.execute(
            "UPDATE location SET loc_class = ?3, description = ?4 WHERE hub_name = ?1 AND loc_name = ?2",
            params![hub.as_str(), loc.name.as_str(), loc.class.as_str(), loc.description],
        )
        .map_err(|e| storage(e, what))?;
        tx.execute(
            "DELETE FROM location_property WHERE hub_name = ?1 AND loc_name = ?2",
            params![hub.as_str(), loc.name.as_str()],
        )
        .map_err(|e| storage(e, what))?;
    } else {
        tx.execute(
            "INSERT INTO location (hub_name, loc_name, loc_class, description) VALUES (?1, ?2, ?3, ?4)",
            params![hub.as_str(), loc.name.as_str(), loc.class.as_str(), loc.description],
        )
        .map_err(|e| storage(e, what))?;
    }
    for (prop, value) in &loc.props {
        tx.execute(
            "INSERT INTO location_property (hub_name, loc_name, prop_name, prop_value) VALUES (?1, ?2, ?3, ?4)",
            params![hub.as_str(), loc.name.as_str(), prop, prop_json(value)],
        )
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

fn write_channel(tx: &Transaction<'_>, hub: &HubName, ch: &Channel) -> Result<()> {
    let what = "store a channel";
    let (h, c) = (hub.as_str(), ch.name.as_str());
    tx.execute(
        "DELETE FROM channel WHERE hub_name = ?1 AND chn_name = ?2",
        params![h, c],
    )
    .map_err(|e| storage(e, what))?;
    tx.execute(
        "INSERT INTO channel (hub_name, chn_name, description) VALUES (?1, ?2, ?3)",
        params![h, c, ch.description],
    )
    .map_err(|e| storage(e, what))?;
    for (group, members) in &ch.loc_groups {
        tx.execute(
            "INSERT INTO loc_group (hub_name, chn_name, grp_name) VALUES (?1, ?2, ?3)",
            params![h, c, group.as_str()],
        )
        .map_err(|e| storage(e, what))?;
        for (seq, loc) in members.iter().enumerate() {
            tx.execute(
                "INSERT INTO loc_group_member (hub_name, chn_name, grp_name, loc_name, member_seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![h, c, group.as_str(), loc.as_str(), seq as i64],
            )
            .map_err(|e| storage(e, &format!("store location group {group} (is location {loc} defined?)")))?;
        }
    }
    for table in ch.tables.values() {
        tx.execute(
            "INSERT INTO channel_table (hub_name, chn_name, tbl_name, tbl_base_name, tbl_group, discover_cols) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                h,
                c,
                table.name.as_str(),
                table.base_name.as_ref().map(|b| b.as_str()),
                table.table_group.as_ref().map(|g| g.as_str()),
                table.columns.is_none(),
            ],
        )
        .map_err(|e| storage(e, what))?;
        for (seq, col) in table.columns.iter().flatten().enumerate() {
            tx.execute(
                "INSERT INTO channel_column (hub_name, chn_name, tbl_name, col_name, col_sequence, col_key, col_datatype, col_nullable) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![h, c, table.name.as_str(), col.name.as_str(), seq as i64 + 1, col.key, col.data_type.to_string(), col.nullable],
            )
            .map_err(|e| storage(e, what))?;
        }
    }
    for (seq, action) in ch.actions.iter().enumerate() {
        let params_json =
            serde_json::to_string(action.params()).expect("action parameters serialize");
        tx.execute(
            "INSERT INTO action (hub_name, chn_name, action_seq, act_name, loc_scope, tbl_scope, act_params) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![h, c, seq as i64, action.action_type().as_str(), action.loc_scope.to_string(), action.table_scope.to_string(), params_json],
        )
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

fn read_hub(conn: &Connection, hub: &str) -> Result<Option<HubRecord>> {
    type Row = (String, String, String, String, String, Option<String>, i64);
    let row: Option<Row> = conn
        .query_row(
            "SELECT hub_name, description, hub_state, created, creator, freeze_time, def_version FROM hub WHERE hub_name = ?1",
            [hub],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .optional()
        .map_err(|e| storage(e, "read a hub"))?;
    let Some((n, description, state, created, creator, freeze, version)) = row else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT prop_name, prop_value FROM hub_property WHERE hub_name = ?1 ORDER BY prop_name",
        )
        .map_err(|e| storage(e, "read hub properties"))?;
    let props: Vec<(String, String)> = stmt
        .query_map([hub], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| storage(e, "read hub properties"))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| storage(e, "read hub properties"))?;
    let props = props
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_str(&v)
                .map(|v| (k, v))
                .map_err(|_| corrupt("hub property"))
        })
        .collect::<Result<_>>()?;
    Ok(Some(HubRecord {
        hub: Hub {
            name: name(&n, "hub name")?,
            description,
        },
        state: name(&state, "hub state")?,
        created: parse_ts(&created)?,
        creator,
        freeze_time: freeze.as_deref().map(parse_ts).transpose()?,
        props,
        version,
    }))
}

fn read_locations(
    conn: &Connection,
    hub: &HubName,
    only: Option<&LocationName>,
) -> Result<Vec<Location>> {
    let what = "read locations";
    let mut stmt = conn
        .prepare(
            "SELECT loc_name, loc_class, description FROM location WHERE hub_name = ?1 AND (?2 IS NULL OR loc_name = ?2) ORDER BY loc_name",
        )
        .map_err(|e| storage(e, what))?;
    let rows: Vec<(String, String, String)> = stmt
        .query_map(params![hub.as_str(), only.map(|l| l.as_str())], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| storage(e, what))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| storage(e, what))?;
    let mut props_stmt = conn
        .prepare("SELECT prop_name, prop_value FROM location_property WHERE hub_name = ?1 AND loc_name = ?2 ORDER BY prop_name")
        .map_err(|e| storage(e, what))?;
    let mut out = Vec::with_capacity(rows.len());
    for (loc, class, description) in rows {
        let props: Vec<(String, String)> = props_stmt
            .query_map(params![hub.as_str(), loc], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| storage(e, what))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(e, what))?;
        let mut map = BTreeMap::new();
        for (k, v) in props {
            map.insert(k, parse_prop(&v)?);
        }
        out.push(Location {
            name: name(&loc, "location name")?,
            class: name(&class, "location class")?,
            description,
            props: map,
        });
    }
    Ok(out)
}

fn read_channels(
    conn: &Connection,
    hub: &HubName,
    only: Option<&ChannelName>,
) -> Result<Vec<Channel>> {
    let what = "read channels";
    let h = hub.as_str();
    let mut stmt = conn
        .prepare("SELECT chn_name, description FROM channel WHERE hub_name = ?1 AND (?2 IS NULL OR chn_name = ?2) ORDER BY chn_name")
        .map_err(|e| storage(e, what))?;
    let channels: Vec<(String, String)> = stmt
        .query_map(params![h, only.map(|c| c.as_str())], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| storage(e, what))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| storage(e, what))?;
    let mut out = Vec::new();
    for (c, description) in channels {
        let mut loc_groups: BTreeMap<LocGroupName, Vec<LocationName>> = BTreeMap::new();
        let mut groups = conn
            .prepare("SELECT grp_name FROM loc_group WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY grp_name")
            .map_err(|e| storage(e, what))?;
        for g in groups
            .query_map(params![h, c], |r| r.get::<_, String>(0))
            .map_err(|e| storage(e, what))?
        {
            let g = g.map_err(|e| storage(e, what))?;
            loc_groups.insert(name(&g, "location group")?, Vec::new());
        }
        let mut members = conn
            .prepare("SELECT grp_name, loc_name FROM loc_group_member WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY grp_name, member_seq")
            .map_err(|e| storage(e, what))?;
        for m in members
            .query_map(params![h, c], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| storage(e, what))?
        {
            let (g, l) = m.map_err(|e| storage(e, what))?;
            loc_groups
                .entry(name(&g, "location group")?)
                .or_default()
                .push(name(&l, "location name")?);
        }
        let mut tables = BTreeMap::new();
        let mut table_stmt = conn
            .prepare("SELECT tbl_name, tbl_base_name, tbl_group, discover_cols FROM channel_table WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY tbl_name")
            .map_err(|e| storage(e, what))?;
        let table_rows: Vec<(String, Option<String>, Option<String>, bool)> = table_stmt
            .query_map(params![h, c], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| storage(e, what))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(e, what))?;
        let mut col_stmt = conn
            .prepare(
                "SELECT col_name, col_key, col_datatype, col_nullable FROM channel_column \
                 WHERE hub_name = ?1 AND chn_name = ?2 AND tbl_name = ?3 ORDER BY col_sequence",
            )
            .map_err(|e| storage(e, what))?;
        for (t, base, group, discover) in table_rows {
            let columns = if discover {
                None
            } else {
                let rows: Vec<(String, u32, String, bool)> = col_stmt
                    .query_map(params![h, c, t], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(|e| storage(e, what))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| storage(e, what))?;
                Some(
                    rows.into_iter()
                        .map(|(n, key, ty, nullable)| {
                            Ok(ChannelColumn {
                                name: name(&n, "column name")?,
                                data_type: name(&ty, "data type")?,
                                nullable,
                                key,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                )
            };
            let table_name: TableName = name(&t, "table name")?;
            tables.insert(
                table_name.clone(),
                ChannelTable {
                    name: table_name,
                    base_name: opt_name(base, "base name")?,
                    table_group: opt_name(group, "table group")?,
                    columns,
                },
            );
        }
        let mut action_stmt = conn
            .prepare("SELECT act_name, loc_scope, tbl_scope, act_params FROM action WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY action_seq")
            .map_err(|e| storage(e, what))?;
        let action_rows: Vec<(String, String, String, String)> = action_stmt
            .query_map(params![h, c], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| storage(e, what))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(e, what))?;
        let mut actions = Vec::new();
        for (act, loc_scope, tbl_scope, params_json) in action_rows {
            actions.push(
                Action::new(
                    name(&act, "action type")?,
                    name(&loc_scope, "location scope")?,
                    name(&tbl_scope, "table scope")?,
                    serde_json::from_str(&params_json).map_err(|_| corrupt("action parameters"))?,
                )
                .map_err(|_| corrupt("action parameters"))?,
            );
        }
        out.push(Channel {
            name: name(&c, "channel name")?,
            description,
            loc_groups,
            tables,
            actions,
        });
    }
    Ok(out)
}
