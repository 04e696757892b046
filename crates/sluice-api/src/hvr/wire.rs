//! HVR wire JSON ⇄ sluice's definitions document.
//!
//! The document (what `compile` reads, see `sluice_service::definition`) is close to HVR's shapes;
//! the differences live here: HVR keeps a column's nullability and lengths in `attributes` and names
//! types its own way (`number` with `prec`/`scale`, `varchar` with `charlen`), and keeps a location's
//! class among its `props`. Incoming objects are checked for unknown fields; names and values are
//! checked by `compile`, which reports paths into the document.

use serde_json::{Map, Value as Json, json};

use crate::error::ApiError;

/// Fields a wire channel object may have.
const CHANNEL_FIELDS: &[&str] = &["description", "loc_groups", "tables", "actions"];
const TABLE_FIELDS: &[&str] = &["base_name", "table_group", "cols"];
const COL_FIELDS: &[&str] = &[
    "sequence",
    "key",
    "distrib_key",
    "data_type",
    "attributes",
    "nullable",
];
const ATTRIBUTE_FIELDS: &[&str] = &[
    "encoding", "nullable", "charlen", "bytelen", "prec", "scale", "timeprec", "dayprec",
    "yearprec", "bitlen",
];
const ACTION_FIELDS: &[&str] = &["type", "loc_scope", "table_scope", "params"];
const LOC_FIELDS: &[&str] = &["props", "actions", "description"];

/// The object at `v`, refusing unknown fields (`what` names it in errors).
pub fn object<'a>(
    v: &'a Json,
    what: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Json>, ApiError> {
    let map = v
        .as_object()
        .ok_or_else(|| ApiError::invalid(format!("{what}: expected a JSON object")))?;
    if let Some(bad) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "{what}: unknown field {bad:?}; expected one of: {}",
            allowed.join(", ")
        )));
    }
    Ok(map)
}

/// A wire channel object → the document's channel.
pub fn channel_in(v: &Json, what: &str) -> Result<Json, ApiError> {
    let map = object(v, what, CHANNEL_FIELDS)?;
    let mut out = Map::new();
    if let Some(d) = map.get("description") {
        out.insert("description".into(), d.clone());
    }
    if let Some(groups) = map.get("loc_groups") {
        out.insert(
            "loc_groups".into(),
            loc_groups_in(groups, &format!("{what}.loc_groups"))?,
        );
    }
    if let Some(tables) = map.get("tables") {
        let tables_map = tables.as_object().ok_or_else(|| {
            ApiError::invalid(format!("{what}.tables: expected an object of tables"))
        })?;
        let mut t_out = Map::new();
        for (name, t) in tables_map {
            t_out.insert(name.clone(), table_in(t, &format!("{what}.tables.{name}"))?);
        }
        out.insert("tables".into(), Json::Object(t_out));
    }
    if let Some(actions) = map.get("actions") {
        out.insert(
            "actions".into(),
            actions_in(actions, &format!("{what}.actions"))?,
        );
    }
    Ok(Json::Object(out))
}

/// Wire location groups (`{"G":{"members":[…]}}`) → the document's.
pub fn loc_groups_in(v: &Json, what: &str) -> Result<Json, ApiError> {
    let map = v.as_object().ok_or_else(|| {
        ApiError::invalid(format!("{what}: expected an object of location groups"))
    })?;
    let mut out = Map::new();
    for (g, body) in map {
        let members = match body {
            Json::Array(_) => body.clone(),
            _ => object(body, &format!("{what}.{g}"), &["members"])?
                .get("members")
                .cloned()
                .unwrap_or_else(|| json!([])),
        };
        out.insert(g.clone(), json!({ "members": members }));
    }
    Ok(Json::Object(out))
}

/// A wire action list → the document's.
pub fn actions_in(v: &Json, what: &str) -> Result<Json, ApiError> {
    let list = v
        .as_array()
        .ok_or_else(|| ApiError::invalid(format!("{what}: expected an array of actions")))?;
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let map = object(a, &format!("{what}[{i}]"), ACTION_FIELDS)?;
        let mut a = map.clone();
        // An empty params object is the same as none.
        if a.get("params")
            .is_some_and(|p| p.as_object().is_some_and(Map::is_empty))
        {
            a.remove("params");
        }
        out.push(Json::Object(a));
    }
    Ok(Json::Array(out))
}

/// A wire table object → the document's.
pub fn table_in(v: &Json, what: &str) -> Result<Json, ApiError> {
    let map = object(v, what, TABLE_FIELDS)?;
    let mut out = Map::new();
    for key in ["base_name", "table_group"] {
        if let Some(x) = map.get(key).filter(|x| !x.is_null()) {
            out.insert(key.into(), x.clone());
        }
    }
    if let Some(cols) = map.get("cols").filter(|c| !c.is_null()) {
        out.insert("cols".into(), cols_in(cols, &format!("{what}.cols"))?);
    }
    Ok(Json::Object(out))
}

/// Wire columns → the document's.
pub fn cols_in(v: &Json, what: &str) -> Result<Json, ApiError> {
    let map = v
        .as_object()
        .ok_or_else(|| ApiError::invalid(format!("{what}: expected an object of columns")))?;
    let mut out = Map::new();
    for (name, c) in map {
        out.insert(name.clone(), col_in(c, &format!("{what}.{name}"))?);
    }
    Ok(Json::Object(out))
}

fn col_in(v: &Json, what: &str) -> Result<Json, ApiError> {
    let map = object(v, what, COL_FIELDS)?;
    let attrs = match map.get("attributes") {
        None | Some(Json::Null) => Map::new(),
        Some(a) => object(a, &format!("{what}.attributes"), ATTRIBUTE_FIELDS)?.clone(),
    };
    let mut out = Map::new();
    if let Some(s) = map.get("sequence") {
        out.insert("sequence".into(), s.clone());
    }
    match map.get("key") {
        None | Some(Json::Null) => {}
        Some(Json::Bool(b)) => {
            if *b {
                out.insert("key".into(), json!(1));
            }
        }
        Some(k) => {
            if k.as_i64() != Some(0) {
                out.insert("key".into(), k.clone());
            }
        }
    }
    let nullable = map
        .get("nullable")
        .or_else(|| attrs.get("nullable"))
        .cloned();
    if let Some(n) = nullable {
        out.insert("nullable".into(), n);
    }
    let data_type = match map.get("data_type") {
        Some(Json::String(t)) => data_type_in(t, &attrs, what)?,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "{what}.data_type: expected text, found {other}"
            )));
        }
        None => return Err(ApiError::invalid(format!("{what}.data_type: missing"))),
    };
    out.insert("data_type".into(), Json::from(data_type));
    Ok(Json::Object(out))
}

fn int_attr(attrs: &Map<String, Json>, key: &str, what: &str) -> Result<Option<u64>, ApiError> {
    match attrs.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!("{what}.attributes.{key}: expected a whole number"))
        }),
        Some(Json::String(s)) => s.parse().map(Some).map_err(|_| {
            ApiError::invalid(format!(
                "{what}.attributes.{key}: expected digits, got {s:?}"
            ))
        }),
        Some(other) => Err(ApiError::invalid(format!(
            "{what}.attributes.{key}: expected a number, found {other}"
        ))),
    }
}

/// HVR's type names with attributes → sluice's type spelling (unknown names pass through and are
/// reported by `compile`).
fn data_type_in(t: &str, attrs: &Map<String, Json>, what: &str) -> Result<String, ApiError> {
    if t.contains('(') {
        return Ok(t.to_owned());
    }
    let lower = t.to_ascii_lowercase();
    let prec = int_attr(attrs, "prec", what)?;
    let scale = int_attr(attrs, "scale", what)?;
    let len = match int_attr(attrs, "charlen", what)? {
        Some(n) => Some(n),
        None => int_attr(attrs, "bytelen", what)?,
    };
    Ok(match lower.as_str() {
        "number" | "numeric" | "decimal" => match (prec, scale) {
            (Some(p), s) => format!("decimal({p},{})", s.unwrap_or(0)),
            (None, _) => "numeric".into(),
        },
        "varchar" | "varchar2" | "nvarchar" | "nvarchar2" | "char" | "nchar"
        | "character varying" => match len {
            Some(n) => format!("varchar({n})"),
            None => "text".into(),
        },
        "clob" | "nclob" | "longtext" | "mediumtext" => "text".into(),
        "raw" | "varbinary" | "longblob" => "bytes".into(),
        "integer" | "int" => match int_attr(attrs, "bytelen", what)? {
            Some(8) => "int64".into(),
            Some(2) => "int16".into(),
            _ => "int32".into(),
        },
        "timestamp with time zone" | "timestamp_tz" => "timestamptz".into(),
        _ => t.to_owned(),
    })
}

/// A wire location (`{"props":{"Class":…}}`) → the document's (`{"class":…,"props":…}`).
pub fn location_in(v: &Json, what: &str) -> Result<Json, ApiError> {
    let map = object(v, what, LOC_FIELDS)?;
    // Actions (HVR's location actions) are stored apart from the definitions: see
    // `sluice_service::action_list`; the handlers take them from the body.
    let props = match map.get("props") {
        None | Some(Json::Null) => Map::new(),
        Some(p) => p
            .as_object()
            .ok_or_else(|| ApiError::invalid(format!("{what}.props: expected an object")))?
            .clone(),
    };
    let mut out = Map::new();
    if let Some(d) = map.get("description") {
        out.insert("description".into(), d.clone());
    }
    out.insert("props".into(), Json::Object(props));
    Ok(Json::Object(out))
}

/// The document's location → wire (`Class` among the props; sealed secrets already removed).
pub fn location_out(doc: &Json, fetch_props: bool) -> Json {
    let mut props = doc
        .get("props")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(class) = doc.get("class") {
        props.insert("Class".into(), class.clone());
    }
    if let Some(d) = doc
        .get("description")
        .filter(|d| d.as_str().is_some_and(|s| !s.is_empty()))
    {
        props.insert("Description".into(), d.clone());
    }
    if fetch_props {
        json!({ "props": props, "actions": [] })
    } else {
        json!({})
    }
}

/// What a channel GET includes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fetch {
    /// Tables.
    pub tables: bool,
    /// Columns of tables.
    pub cols: bool,
    /// Location groups.
    pub loc_groups: bool,
    /// Members of location groups.
    pub members: bool,
    /// Actions.
    pub actions: bool,
}

impl Fetch {
    /// Everything.
    pub const ALL: Fetch = Fetch {
        tables: true,
        cols: true,
        loc_groups: true,
        members: true,
        actions: true,
    };

    /// From `fetch=` values; none given means everything a channel has.
    pub fn from_list(list: &[String]) -> Fetch {
        if list.is_empty() {
            return Fetch::ALL;
        }
        let has = |s: &str| list.iter().any(|x| x == s);
        Fetch {
            tables: has("tables") || has("cols"),
            cols: has("cols"),
            loc_groups: has("loc_groups") || has("members"),
            members: has("members"),
            actions: has("channel_actions") || has("actions"),
        }
    }
}

/// The document's channel → wire.
pub fn channel_out(doc: &Json, fetch: Fetch) -> Json {
    let mut out = Map::new();
    out.insert(
        "description".into(),
        doc.get("description").cloned().unwrap_or_else(|| json!("")),
    );
    if fetch.loc_groups {
        let mut groups = Map::new();
        for (g, body) in doc
            .get("loc_groups")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            groups.insert(
                g.clone(),
                if fetch.members {
                    json!({ "members": body.get("members").cloned().unwrap_or_else(|| json!([])) })
                } else {
                    json!({})
                },
            );
        }
        out.insert("loc_groups".into(), Json::Object(groups));
    }
    if fetch.tables {
        let mut tables = Map::new();
        for (t, body) in doc
            .get("tables")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            tables.insert(t.clone(), table_out(body, fetch.cols));
        }
        out.insert("tables".into(), Json::Object(tables));
    }
    if fetch.actions {
        out.insert(
            "actions".into(),
            doc.get("actions").cloned().unwrap_or_else(|| json!([])),
        );
    }
    Json::Object(out)
}

/// The document's table → wire.
pub fn table_out(doc: &Json, cols: bool) -> Json {
    let mut out = Map::new();
    for key in ["base_name", "table_group"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if cols && let Some(c) = doc.get("cols").and_then(Json::as_object) {
        out.insert("cols".into(), cols_out(c));
    }
    Json::Object(out)
}

/// The document's columns → wire.
pub fn cols_out(cols: &Map<String, Json>) -> Json {
    let mut out = Map::new();
    for (name, c) in cols {
        let mut col = Map::new();
        col.insert(
            "sequence".into(),
            c.get("sequence").cloned().unwrap_or(json!(0)),
        );
        if let Some(k) = c.get("key") {
            col.insert("key".into(), k.clone());
        }
        col.insert(
            "data_type".into(),
            c.get("data_type").cloned().unwrap_or(Json::Null),
        );
        col.insert(
            "attributes".into(),
            json!({ "nullable": c.get("nullable").cloned().unwrap_or(json!(true)) }),
        );
        out.insert(name.clone(), Json::Object(col));
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hvr_columns_become_sluice_types() {
        let t = table_in(
            &json!({"base_name": "ORDERS", "cols": {
                "id": {"sequence": 1, "key": 1, "data_type": "number", "attributes": {"prec": 10, "scale": 0, "nullable": false}},
                "name": {"sequence": 2, "data_type": "varchar", "attributes": {"charlen": "100", "bytelen": "100", "encoding": "UTF-8", "nullable": true}}
            }}),
            "t",
        )
        .unwrap();
        assert_eq!(t["cols"]["id"]["data_type"], "decimal(10,0)");
        assert_eq!(t["cols"]["id"]["nullable"], false);
        assert_eq!(t["cols"]["name"]["data_type"], "varchar(100)");
        let err = table_in(
            &json!({"cols": {"x": {"data_type": "int", "colour": 1}}}),
            "t",
        )
        .unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    }
}
