//! Every route the server answers, with the access level it needs: the source of
//! `GET /openapi.json` (a test checks each entry reaches a handler).

use axum::Json;
use serde_json::{Map, Value, json};

/// `(method, path, level needed, summary)`; `{v}` stands for any API version.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "POST",
        "/auth/v1/password",
        "",
        "Log in: a JWT access token (900 s) and, with refresh=token, a refresh token",
    ),
    (
        "POST",
        "/auth/v1/refresh",
        "",
        "Trade a refresh token for new tokens (the old one stops working)",
    ),
    ("POST", "/auth/v1/revoke", "", "End a refresh token"),
    ("GET", "/api", "", "Supported API versions"),
    ("GET", "/health", "", "Liveness and repository reachability"),
    (
        "GET",
        "/metrics",
        "ReadOnly or the scrape token",
        "Prometheus metrics (Bearer: a user's access token or SLUICE_METRICS_TOKEN; SLUICE_METRICS_PUBLIC=true opens them)",
    ),
    ("GET", "/openapi.json", "", "This description"),
    (
        "GET",
        "/topics",
        "any",
        "Event hub topics the caller may read",
    ),
    (
        "POST",
        "/topics",
        "ReadWrite",
        "Create a topic {name, description, schema, retention, grants}",
    ),
    ("GET", "/topics/{topic}", "read grant", "One topic"),
    (
        "PUT",
        "/topics/{topic}",
        "ReadWrite",
        "Replace a topic's spec (a changed schema is a new version)",
    ),
    (
        "DELETE",
        "/topics/{topic}",
        "ReadWrite",
        "Delete a topic (?force=true when it holds events)",
    ),
    (
        "GET",
        "/topics/{topic}/schemas",
        "read grant",
        "Every schema version of a topic",
    ),
    (
        "POST",
        "/events",
        "publish grant",
        "Publish one event or a batch {topic, routing_key, payload, id?}",
    ),
    (
        "GET",
        "/events/{topic}/stream",
        "read grant",
        "Live SSE stream (?routing_key=, ?after=, Last-Event-ID)",
    ),
    (
        "GET",
        "/events/{topic}/ws",
        "read grant",
        "Live WebSocket stream (same semantics as SSE)",
    ),
    (
        "GET",
        "/events/{topic}/history",
        "read grant",
        "History by pattern and time with cursors",
    ),
    (
        "GET",
        "/events/{topic}/export",
        "read grant",
        "Export as JSON Lines or CSV",
    ),
    (
        "GET",
        "/events/{topic}/last",
        "read grant",
        "The newest event per matching routing key",
    ),
    ("GET", "/api/{v}/hubserver/clock", "any", "Server time"),
    ("GET", "/api/{v}/users", "SysAdmin", "List users"),
    (
        "POST",
        "/api/{v}/users",
        "SysAdmin",
        "Create a user {user, level, password}",
    ),
    (
        "GET",
        "/api/{v}/users/{user}",
        "SysAdmin or self",
        "One user",
    ),
    (
        "PATCH",
        "/api/{v}/users/{user}",
        "SysAdmin (self: password only, with current_password)",
        "Change a user's level or password {level?, password?, current_password?}",
    ),
    (
        "PUT",
        "/api/{v}/users/{user}/password",
        "SysAdmin (self: with current_password)",
        "Set a password {new_password, current_password?}; ends the user's sessions",
    ),
    (
        "DELETE",
        "/api/{v}/users/{user}",
        "SysAdmin",
        "Delete a user",
    ),
    ("GET", "/api/{v}/hubs", "any", "List hubs"),
    ("POST", "/api/{v}/hubs", "SysAdmin", "Create a hub"),
    ("GET", "/api/{v}/hubs/{hub}", "ReadOnly", "One hub"),
    (
        "DELETE",
        "/api/{v}/hubs/{hub}",
        "HubOwner",
        "Delete a hub and everything in it",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/freeze",
        "HubOwner",
        "Freeze: no job starts, the scheduler stops",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/unfreeze",
        "HubOwner",
        "Unfreeze",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/props",
        "ReadOnly",
        "Hub properties (?fetch=…)",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/props",
        "HubOwner",
        "Set hub properties (null deletes)",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/query/status",
        "ReadOnly",
        "Hub state",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition",
        "ReadOnly",
        "Export definitions (secrets left out)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/definition/import",
        "ReadWrite",
        "Apply a list of changes atomically",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels",
        "ReadOnly",
        "List channels (?fetch=…)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/definition/channels",
        "ReadWrite",
        "Create a channel",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}",
        "ReadOnly",
        "One channel",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}",
        "ReadWrite",
        "Add or replace a channel",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}",
        "ReadWrite",
        "Change a channel's description",
    ),
    (
        "DELETE",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}",
        "ReadWrite",
        "Delete a channel",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables",
        "ReadOnly",
        "List tables",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables",
        "ReadWrite",
        "Add a table",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables",
        "ReadWrite",
        "Add or replace several tables",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables",
        "ReadWrite",
        "Replace the table list",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables_delete",
        "ReadWrite",
        "Delete tables",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables/{table}",
        "ReadOnly",
        "One table",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables/{table}",
        "ReadWrite",
        "Add or replace a table",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables/{table}",
        "ReadWrite",
        "Change base_name / table_group",
    ),
    (
        "DELETE",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables/{table}",
        "ReadWrite",
        "Delete a table",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables/{table}/cols",
        "ReadOnly",
        "A table's columns",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables/{table}/cols",
        "ReadWrite",
        "Add or replace columns",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/tables/{table}/cols",
        "ReadWrite",
        "Replace the columns",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups",
        "ReadOnly",
        "Location groups",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups",
        "ReadWrite",
        "Add a location group",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}",
        "ReadOnly",
        "One location group",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}",
        "ReadWrite",
        "Add or replace a location group",
    ),
    (
        "DELETE",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}",
        "ReadWrite",
        "Delete a location group",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}/members",
        "ReadOnly",
        "Members",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}/members",
        "ReadWrite",
        "Add members (moved from other groups)",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}/members",
        "ReadWrite",
        "Replace members",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/actions",
        "ReadOnly",
        "Actions (an array; ?action_type=…)",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/actions",
        "ReadWrite",
        "Append actions",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/actions",
        "ReadWrite",
        "Replace the action list",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/definition/channels/{channel}/actions_delete",
        "ReadWrite",
        "Delete actions by exact match",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/locs",
        "ReadOnly",
        "List locations (?fetch=loc_props)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/definition/locs",
        "ReadWrite",
        "Create a location (passwords stored encrypted)",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/locs/{loc}",
        "ReadOnly",
        "One location (secrets left out)",
    ),
    (
        "PUT",
        "/api/{v}/hubs/{hub}/definition/locs/{loc}",
        "ReadWrite",
        "Add or replace a location",
    ),
    (
        "DELETE",
        "/api/{v}/hubs/{hub}/definition/locs/{loc}",
        "ReadWrite",
        "Delete a location",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/definition/locs/{loc}/props",
        "ReadOnly",
        "A location's properties",
    ),
    (
        "PATCH",
        "/api/{v}/hubs/{hub}/definition/locs/{loc}/props",
        "ReadWrite",
        "Set location properties (null deletes)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/channels/{channel}/refresh",
        "ReadExecRefresh",
        "Refresh: 201 {posted_ev_id, job, canceled_ev_ids}; dry_run: the plan",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/channels/{channel}/compare",
        "ReadExec",
        "Compare: 201 {posted_ev_id, job}; dry_run: the plan",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/channels/{channel}/activate",
        "ReadWrite",
        "Not available until change capture exists (400)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/channels/{channel}/deactivate",
        "ReadWrite",
        "Not available until change capture exists (400)",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/channels/{channel}/refresh/tables_results_ids",
        "ReadOnly",
        "Refresh events with results, by table",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/channels/{channel}/compare/tables_results_ids",
        "ReadOnly",
        "Compare events with results, by table",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/jobs",
        "ReadOnly",
        "Jobs (?channel, ?job)",
    ),
    (
        "DELETE",
        "/api/{v}/hubs/{hub}/jobs/{job}",
        "ReadExec",
        "Delete a job (its active events are cancelled)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/jobs_start",
        "ReadExec",
        "Start jobs' pending events",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/jobs_suspend",
        "ReadExec",
        "Suspend jobs",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/jobs_unsuspend",
        "ReadExec",
        "Unsuspend jobs",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/jobs_delete",
        "ReadExec",
        "Delete jobs",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/events",
        "ReadOnly",
        "Events, newest first (filters of HVR §5.6)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/events_cancel",
        "ReadExec",
        "Cancel ACTIVE events",
    ),
    (
        "GET",
        "/api/{v}/hubs/{hub}/events/{ev_id}/log",
        "ReadOnly",
        "An event's log (text/plain)",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/locs/{loc}/test",
        "ReadExec",
        "Test a location's connection",
    ),
    (
        "POST",
        "/api/{v}/hubs/{hub}/new_loc/test",
        "ReadWrite",
        "Test properties of a location not yet defined",
    ),
    (
        "GET",
        "/v1/connectors",
        "ReadOnly",
        "Fivetran: list connectors (group_id, schema, cursor, limit; also /v1/connections)",
    ),
    (
        "GET",
        "/v1/connectors/{id}",
        "ReadOnly",
        "Fivetran: connector details (id = HUB.CHANNEL)",
    ),
    (
        "PATCH",
        "/v1/connectors/{id}",
        "ReadWrite",
        "Fivetran: change paused, schedule_type, sync_frequency, daily_sync_time",
    ),
    (
        "POST",
        "/v1/connectors/{id}/force",
        "ReadExecRefresh",
        "Fivetran: start a sync, replacing a running one",
    ),
    (
        "POST",
        "/v1/connectors/{id}/sync",
        "ReadExecRefresh",
        "Fivetran: start a sync {force}",
    ),
    (
        "POST",
        "/v1/connectors/{id}/resync",
        "ReadExecRefresh",
        "Fivetran: historical resync, or {scope: {schema: [table]}}",
    ),
    (
        "POST",
        "/v1/connectors/{id}/schemas/tables/resync",
        "ReadExecRefresh",
        "Fivetran: resync tables {schema: [table]}",
    ),
    (
        "POST",
        "/v1/connectors/{id}/schemas/{schema}/tables/{table}/resync",
        "ReadExecRefresh",
        "Fivetran: resync one table",
    ),
    (
        "POST",
        "/v1/connectors/{id}/test",
        "ReadExec",
        "Fivetran: run the setup tests (both locations)",
    ),
    (
        "GET",
        "/v1/connectors/{id}/schemas",
        "ReadOnly",
        "Fivetran: schema config (source tables merged with the channel)",
    ),
    (
        "PATCH",
        "/v1/connectors/{id}/schemas",
        "ReadWrite",
        "Fivetran: change the schema config",
    ),
    (
        "POST",
        "/v1/connectors/{id}/schemas/reload",
        "ReadWrite",
        "Fivetran: reload the schema config {exclude_mode}",
    ),
    (
        "PATCH",
        "/v1/connectors/{id}/schemas/{schema}",
        "ReadWrite",
        "Fivetran: enable or disable a schema and its tables",
    ),
    (
        "PATCH",
        "/v1/connectors/{id}/schemas/{schema}/tables/{table}",
        "ReadWrite",
        "Fivetran: enable or disable a table and its columns",
    ),
    (
        "GET",
        "/v1/connectors/{id}/schemas/{schema}/tables/{table}/columns",
        "ReadOnly",
        "Fivetran: columns of a table",
    ),
    (
        "GET",
        "/v1/connections",
        "ReadOnly",
        "Fivetran: list connectors (every /v1/connectors/… path also exists as /v1/connections/…)",
    ),
    ("GET", "/v1/groups", "ReadOnly", "Fivetran: groups (hubs)"),
    ("GET", "/v1/groups/{id}", "ReadOnly", "Fivetran: one group"),
    (
        "GET",
        "/v1/groups/{id}/connectors",
        "ReadOnly",
        "Fivetran: connectors of a group (also /connections)",
    ),
    (
        "GET",
        "/v1/groups/{id}/connections",
        "ReadOnly",
        "Fivetran: connectors of a group",
    ),
    (
        "GET",
        "/v1/destinations/{id}",
        "ReadOnly",
        "Fivetran: a group's destination (the target location)",
    ),
    (
        "GET",
        "/v1/users",
        "ReadOnly",
        "Fivetran: users (all for a SysAdmin key)",
    ),
];

/// `GET /openapi.json`.
pub async fn openapi() -> Json<Value> {
    let mut paths = Map::new();
    for (method, path, level, summary) in ROUTES {
        let path = path.replace("{v}", "latest");
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "F_XXXXXX: message (text/plain)"},
                "401": {"description": "missing or expired token"},
                "403": {"description": "insufficient access"},
                "404": {"description": "not found"},
            },
        });
        if !level.is_empty() {
            let scheme = if path.starts_with("/v1/") {
                "basic"
            } else {
                "bearer"
            };
            op["security"] = json!([{ scheme: [] }]);
            op["x-sluice-access-level"] = json!(level);
        }
        let entry = paths
            .entry(path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert(method.to_ascii_lowercase(), op));
        let _ = entry;
    }
    Json(json!({
        "openapi": "3.0.3",
        "info": {
            "title": "sluice hub server (HVR 6 compatible)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Any /api/{version}/… path (vX.Y.Z…, v0 or latest) reaches the same handlers. Errors are text/plain 'F_XXXXXX: message'.",
        },
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "basic": {"type": "http", "scheme": "basic", "description": "Fivetran face: API_KEY:API_SECRET from `sluice apikey create`"},
        }},
        "paths": paths,
    }))
}
