//! Fivetran wire shapes of sluice's connectors, schema configs, groups and destinations.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};
use sluice_model::definition::{Location, is_secret_prop};
use sluice_repo::HubRecord;
use sluice_service::connectors::{Connector, SchemaConfig};

/// RFC 3339 in UTC with microseconds: `2024-01-01T00:00:00.000000Z`.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Json {
    t.map_or(Json::Null, |t| Json::from(ts(t)))
}

/// A location's properties without secrets, plus Fivetran's lower-case names for the common
/// ones (`database`, `schema`, `host`, `port`, `user`).
pub(crate) fn location_config(loc: &Location) -> Json {
    let mut out = Map::new();
    for (name, value) in &loc.props {
        if is_secret_prop(name) {
            continue;
        }
        let value = serde_json::to_value(value).unwrap_or(Json::Null);
        let alias = match name.as_str() {
            "Database_Name" => Some("database"),
            "Database_Schema" => Some("schema"),
            "Database_Host" => Some("host"),
            "Database_Port" => Some("port"),
            "Database_User" => Some("user"),
            _ => None,
        };
        if let Some(alias) = alias {
            out.insert(alias.into(), value.clone());
        }
        out.insert(name.clone(), value);
    }
    out.insert("location".into(), Json::from(loc.name.as_str()));
    Json::Object(out)
}

/// The connector object (reference §2).
pub(crate) fn connector(c: &Connector) -> Json {
    let s = &c.settings;
    json!({
        "id": c.id.to_string(),
        "group_id": c.id.hub.as_str(),
        "service": c.source.class.as_str(),
        "service_version": 1,
        "schema": c.id.channel.as_str(),
        "connected_by": s.hub.as_str(),
        "created_at": ts(s.created),
        "succeeded_at": opt_ts(c.succeeded_at),
        "failed_at": opt_ts(c.failed_at),
        "paused": s.paused,
        "pause_after_trial": false,
        "sync_frequency": s.sync_frequency,
        "schedule_type": s.schedule_type,
        "daily_sync_time": s.daily_sync_time,
        "status": {
            "setup_state": s.setup_state,
            "sync_state": c.sync_state.as_str(),
            "update_state": "on_schedule",
            "is_historical_sync": c.is_historical_sync,
            "rescheduled_for": null,
            "schema_status": "ready",
            "tasks": [],
            "warnings": [],
        },
        "config": location_config(&c.target),
        "source_sync_details": {"source_location": c.source.name.as_str()},
        "setup_tests": s.setup_tests.clone(),
    })
}

/// The columns of one table.
pub(crate) fn columns(table: &sluice_service::connectors::TableInfo) -> Json {
    let columns: Map<String, Json> = table
        .columns
        .iter()
        .map(|(name, c)| {
            let patch = if c.is_primary_key {
                json!({"allowed": false, "reason_code": "SYSTEM_COLUMN",
                       "reason": "primary key columns cannot be disabled"})
            } else {
                json!({"allowed": true})
            };
            (
                name.clone(),
                json!({
                    "name_in_destination": c.name_in_destination,
                    "enabled": c.enabled,
                    "hashed": false,
                    "is_primary_key": c.is_primary_key,
                    "enabled_patch_settings": patch,
                }),
            )
        })
        .collect();
    Json::Object(columns)
}

/// The schema config (reference §4).
pub(crate) fn schema_config(config: &SchemaConfig) -> Json {
    let schemas: Map<String, Json> = config
        .schemas
        .iter()
        .map(|(name, s)| {
            let tables: Map<String, Json> = s
                .tables
                .iter()
                .map(|(tname, t)| {
                    (
                        tname.clone(),
                        json!({
                            "name_in_destination": t.name_in_destination,
                            "enabled": t.enabled,
                            "sync_mode": t.sync_mode,
                            "supports_columns_config": true,
                            "enabled_patch_settings": {"allowed": true},
                            "columns": columns(t),
                        }),
                    )
                })
                .collect();
            (
                name.clone(),
                json!({
                    "name_in_destination": s.name_in_destination,
                    "enabled": s.enabled,
                    "tables": tables,
                }),
            )
        })
        .collect();
    json!({
        "enable_new_by_default": config.schema_change_handling == "ALLOW_ALL",
        "schema_change_handling": config.schema_change_handling,
        "schemas": schemas,
    })
}

/// A group (a hub).
pub(crate) fn group(hub: &HubRecord) -> Json {
    json!({
        "id": hub.hub.name.as_str(),
        "name": hub.hub.name.as_str(),
        "created_at": ts(hub.created),
    })
}

/// The destination of a group: the target location of its connectors.
pub(crate) fn destination(hub: &HubRecord, target: &Location) -> Json {
    json!({
        "id": hub.hub.name.as_str(),
        "group_id": hub.hub.name.as_str(),
        "service": target.class.as_str(),
        "region": "local",
        "time_zone_offset": "0",
        "setup_status": "connected",
        "config": location_config(target),
    })
}
