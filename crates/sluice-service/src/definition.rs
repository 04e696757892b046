//! Definitions files: YAML or JSON (one schema), compiled into validated [`Definitions`].
//!
//! Parsing gives a generic tree; [`compile`] walks it with the path of every node and collects
//! *every* problem before giving up, each as `path: message`, e.g.
//! `channels.sales.tables.orders.cols.id: unknown data type "inte"`. The REST import (a later
//! issue) shares this path.
//!
//! ```yaml
//! hub: quickstart                  # or {name: quickstart, description: "…"}
//! locations:
//!   src:
//!     class: sqlite                # postgresql | mariadb (alias mysql) | sqlite
//!     description: sample shop
//!     props:
//!       Database_Name: shop.db     # relative paths are relative to this file
//!       Database_Password: ${SHOP_PASSWORD}   # secrets only as ${ENV_VAR} references
//! channels:
//!   shop:
//!     loc_groups: {SOURCE: [src], TARGET: [tgt]}
//!     tables:
//!       customers: {}              # columns discovered from the source
//!       orders:
//!         base_name: orders
//!         cols:
//!           id: {data_type: int64, key: 1, nullable: false}
//!           total: {data_type: "decimal(12,2)"}
//!     actions:
//!       - {type: Capture, loc_scope: SOURCE}
//!       - {type: Integrate, loc_scope: TARGET}
//!       - {type: Restrict, loc_scope: SOURCE, table_scope: orders, params: {RefreshCondition: "total > 0"}}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sluice_model::definition::{
    Action, ActionType, Channel, ChannelColumn, ChannelTable, Definitions, Hub, LocScope, Location,
    LocationClass, ParamError, PropValue, TableScope, is_secret_prop, is_single_env_ref,
};
use sluice_model::location_property::{hvr_location_properties, hvr_location_property};
use sluice_model::{
    BaseName, ChannelName, ColumnName, DataType, HubName, LocGroupName, LocationName, TableName,
};

use crate::registry;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The definitions cannot be used.
    Error,
    /// Usable, but probably not what was meant.
    Warning,
}

/// One finding, located by its path in the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Dotted path of the node, e.g. `channels.sales.tables.orders`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Reads a definitions file: JSON when the name ends in `.json`, YAML otherwise. A syntax error is
/// one diagnostic with its line and column.
pub fn parse_file(path: &Path) -> Result<Json, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse_text(&text, json)
}

/// Parses definitions text as JSON or YAML.
pub fn parse_text(text: &str, json: bool) -> Result<Json, Vec<Diagnostic>> {
    let parsed: Result<Json, String> = if json {
        strict_json(text).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let first = e.to_string();
            let line = first
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            format!("invalid YAML: {line}")
        })
    };
    parsed.map_err(|message| {
        vec![Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            message,
        }]
    })
}

/// Writes a document as definitions text: YAML, or pretty JSON when `json`.
pub fn write_text(doc: &Json, json: bool) -> Result<String, String> {
    if json {
        serde_json::to_string_pretty(doc).map_err(|e| e.to_string())
    } else {
        serde_saphyr::to_string(doc).map_err(|e| e.to_string())
    }
}

/// Parses JSON like `serde_json::from_str`, but a key repeated in one object is an error (serde_json
/// keeps the last one silently; YAML files already refuse duplicates).
fn strict_json(text: &str) -> Result<Json, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Strict;

    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Json;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = Json;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
            Ok(Json::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
            Ok(Json::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
            Ok(Json::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
            Ok(Json::from(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Json, E> {
            Ok(Json::String(v.to_owned()))
        }
        fn visit_unit<E>(self) -> Result<Json, E> {
            Ok(Json::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Strict)? {
                items.push(item);
            }
            Ok(Json::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
            let mut object = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if object.contains_key(&key) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
                let value = map.next_value_seed(Strict)?;
                object.insert(key, value);
            }
            Ok(Json::Object(object))
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// What compile may consult besides the document.
#[derive(Debug, Clone, Default)]
pub struct CompileContext {
    /// Directory that relative file paths in location properties are relative to.
    pub base_dir: Option<PathBuf>,
    /// Locations already in the repository, which channels may reference.
    pub known_locations: BTreeSet<LocationName>,
    /// The hub to use when the document names none.
    pub default_hub: Option<HubName>,
    /// Environment variables, to warn about references that are not set here.
    pub env: BTreeMap<String, String>,
    /// Whether secrets may be given as values (the hub server stores them encrypted); files
    /// must use `${ENV_VAR}` references.
    pub allow_secret_values: bool,
}

/// A path into the document.
#[derive(Clone)]
struct Path2(String);

impl Path2 {
    fn root() -> Self {
        Path2(String::new())
    }

    fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*');
        let part = if plain {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.0.is_empty() {
            Path2(part)
        } else {
            Path2(format!("{}.{part}", self.0))
        }
    }

    fn index(&self, i: usize) -> Self {
        Path2(format!("{}[{i}]", self.0))
    }
}

struct Compiler<'a> {
    cx: &'a CompileContext,
    diagnostics: Vec<Diagnostic>,
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "text",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

impl Compiler<'_> {
    fn error(&mut self, path: &Path2, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            path: path.0.clone(),
            message: message.into(),
        });
    }

    fn warning(&mut self, path: &Path2, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            path: path.0.clone(),
            message: message.into(),
        });
    }

    /// The node as a mapping (null counts as empty); reports unknown keys.
    fn object<'v>(
        &mut self,
        path: &Path2,
        v: &'v Json,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Json>> {
        static EMPTY: std::sync::OnceLock<Map<String, Json>> = std::sync::OnceLock::new();
        let map = match v {
            Json::Object(map) => map,
            Json::Null => EMPTY.get_or_init(Map::new),
            other => {
                self.error(
                    path,
                    format!("expected a mapping, found {}", kind_of(other)),
                );
                return None;
            }
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    &path.key(key),
                    format!(
                        "unknown field {key:?}; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(map)
    }

    fn text(&mut self, path: &Path2, v: Option<&Json>) -> Option<String> {
        match v {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => {
                self.error(path, format!("expected text, found {}", kind_of(other)));
                None
            }
        }
    }

    fn name<'t, T, E: fmt::Display>(
        &mut self,
        path: &Path2,
        text: &'t str,
        make: impl FnOnce(&'t str) -> Result<T, E>,
    ) -> Option<T> {
        match make(text) {
            Ok(n) => Some(n),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    fn prop_value(&mut self, path: &Path2, v: &Json) -> Option<PropValue> {
        match v {
            Json::Bool(b) => Some(PropValue::Bool(*b)),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Some(PropValue::Int(i)),
                None => Some(PropValue::Text(n.to_string())),
            },
            Json::String(s) => Some(PropValue::Text(s.clone())),
            other => {
                self.error(
                    path,
                    format!(
                        "expected text, a number or a boolean, found {}",
                        kind_of(other)
                    ),
                );
                None
            }
        }
    }

    fn hub(&mut self, doc: &Map<String, Json>) -> Option<Hub> {
        let path = Path2::root().key("hub");
        match doc.get("hub") {
            None | Some(Json::Null) => match &self.cx.default_hub {
                Some(name) => Some(Hub {
                    name: name.clone(),
                    description: String::new(),
                }),
                None => {
                    self.error(&path, "missing: name the hub these definitions belong to");
                    None
                }
            },
            Some(Json::String(name)) => self.name(&path, name, HubName::new).map(|name| Hub {
                name,
                description: String::new(),
            }),
            Some(v) => {
                let map = self.object(&path, v, &["name", "description"])?;
                let name = match self.text(&path.key("name"), map.get("name")) {
                    Some(n) => self.name(&path.key("name"), &n, HubName::new),
                    None => {
                        self.error(&path.key("name"), "missing");
                        None
                    }
                };
                let description = self
                    .text(&path.key("description"), map.get("description"))
                    .unwrap_or_default();
                name.map(|name| Hub { name, description })
            }
        }
    }

    fn location(&mut self, path: &Path2, name: LocationName, v: &Json) -> Option<Location> {
        let map = self.object(path, v, &["class", "description", "props"])?;
        let mut props = BTreeMap::new();
        let props_path = path.key("props");
        if let Some(p) = map.get("props") {
            let Json::Object(p) = p else {
                self.error(
                    &props_path,
                    format!("expected a mapping, found {}", kind_of(p)),
                );
                return None;
            };
            for (k, v) in p {
                if let Some(value) = self.prop_value(&props_path.key(k), v) {
                    props.insert(k.clone(), value);
                }
            }
        }
        // HVR keeps the class among the properties; accept it there too.
        let class_text = match (
            self.text(&path.key("class"), map.get("class")),
            props.remove("Class"),
        ) {
            (Some(c), None) => Some(c),
            (None, Some(c)) => Some(c.to_text()),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b.to_text()) => Some(a),
            (Some(a), Some(b)) => {
                self.error(
                    path,
                    format!("class {a:?} and props.Class {:?} disagree", b.to_text()),
                );
                None
            }
            (None, None) => {
                self.error(
                    &path.key("class"),
                    "missing: postgresql, mariadb (or mysql) or sqlite",
                );
                None
            }
        };
        let class: LocationClass =
            self.name(&path.key("class"), class_text.as_deref()?, str::parse)?;
        let Some(specs) = registry::property_specs(class) else {
            self.error(
                &path.key("class"),
                format!(
                    "class {class} is not supported by this build of sluice yet (supported: {})",
                    registry::supported_classes()
                ),
            );
            return None;
        };
        for (prop, value) in &mut props {
            let prop_path = props_path.key(prop);
            let text = value.to_text();
            // Checked first: a secret written out is the most important thing to report.
            if is_secret_prop(prop) && !is_single_env_ref(&text) && !self.cx.allow_secret_values {
                self.error(
                    &prop_path,
                    "a secret must be given as an ${ENV_VAR} reference, never as its value",
                );
                continue;
            }
            if !specs.iter().any(|s| s.name == prop) && hvr_location_property(class, prop).is_none()
            {
                let mut known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                let documented: Vec<&str> = hvr_location_properties(class)
                    .filter(|n| !known.contains(n))
                    .collect();
                known.extend(documented);
                self.error(
                    &prop_path,
                    format!(
                        "unknown property for class {class}; known: {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            if is_secret_prop(prop) && !is_single_env_ref(&text) {
                // A secret value (allowed here): no reference to check.
                continue;
            }
            if let Err(e) = sluice_model::definition::env_refs(&text) {
                self.error(&prop_path, e.to_string());
                continue;
            }
            for var in sluice_model::definition::env_refs(&text).unwrap_or_default() {
                if var.starts_with("SLUICE_") {
                    self.error(
                        &prop_path,
                        format!("${{{var}}} may not be referenced: SLUICE_* variables belong to sluice itself"),
                    );
                } else if !self.cx.env.contains_key(&var) {
                    self.warning(
                        &prop_path,
                        format!("environment variable {var} is not set here"),
                    );
                }
            }
            if registry::is_path_prop(class, prop)
                && let PropValue::Text(p) = value
                && !p.contains("${")
                && !p.starts_with("file:")
                && Path::new(p.as_str()).is_relative()
                && let Some(base) = &self.cx.base_dir
            {
                *p = base.join(p.as_str()).display().to_string();
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !props.contains_key(spec.name) {
                self.error(
                    &props_path.key(spec.name),
                    format!("missing: {}", spec.description),
                );
            }
        }
        let description = self
            .text(&path.key("description"), map.get("description"))
            .unwrap_or_default();
        Some(Location {
            name,
            class,
            description,
            props,
        })
    }

    fn columns(&mut self, path: &Path2, v: &Json) -> Option<Vec<ChannelColumn>> {
        let Json::Object(map) = v else {
            self.error(
                path,
                format!(
                    "expected a mapping of column name to column, found {}",
                    kind_of(v)
                ),
            );
            return None;
        };
        let mut columns: Vec<(Option<i64>, usize, ChannelColumn)> = Vec::new();
        let mut keys_seen = BTreeSet::new();
        for (i, (col_name, col)) in map.iter().enumerate() {
            let col_path = path.key(col_name);
            let name = self.name(&col_path, col_name, ColumnName::new);
            let Some(spec) = self.object(
                &col_path,
                col,
                &["data_type", "key", "nullable", "sequence"],
            ) else {
                continue;
            };
            let data_type = match self.text(&col_path.key("data_type"), spec.get("data_type")) {
                Some(t) => self.name(&col_path.key("data_type"), &t, str::parse::<DataType>),
                None => {
                    self.error(
                        &col_path.key("data_type"),
                        "missing, e.g. int64, text, decimal(12,2)",
                    );
                    None
                }
            };
            let key = match spec.get("key") {
                None | Some(Json::Null) => 0,
                Some(Json::Bool(b)) => u32::from(*b),
                Some(Json::Number(n)) if n.as_u64().is_some_and(|k| k <= 1000) => {
                    n.as_u64().unwrap_or(0) as u32
                }
                Some(other) => {
                    self.error(
                        &col_path.key("key"),
                        format!("expected a key position (1, 2, …) or a boolean, found {other}"),
                    );
                    0
                }
            };
            if key > 0 && !keys_seen.insert(key) {
                self.error(
                    &col_path.key("key"),
                    format!("key position {key} is used twice"),
                );
            }
            let nullable = match spec.get("nullable") {
                None | Some(Json::Null) => key == 0,
                Some(Json::Bool(b)) => *b,
                Some(other) => {
                    self.error(
                        &col_path.key("nullable"),
                        format!("expected true or false, found {}", kind_of(other)),
                    );
                    true
                }
            };
            let sequence = match spec.get("sequence") {
                None | Some(Json::Null) => None,
                Some(Json::Number(n)) if n.as_i64().is_some() => n.as_i64(),
                Some(other) => {
                    self.error(
                        &col_path.key("sequence"),
                        format!("expected a number, found {}", kind_of(other)),
                    );
                    None
                }
            };
            if let (Some(name), Some(data_type)) = (name, data_type) {
                columns.push((
                    sequence,
                    i,
                    ChannelColumn {
                        name,
                        data_type,
                        nullable,
                        key,
                    },
                ));
            }
        }
        columns.sort_by_key(|(seq, i, _)| (seq.unwrap_or(*i as i64), *i));
        Some(columns.into_iter().map(|(_, _, c)| c).collect())
    }

    fn table(&mut self, path: &Path2, name: TableName, v: &Json) -> Option<ChannelTable> {
        let map = self.object(path, v, &["base_name", "table_group", "cols"])?;
        let base_name = self
            .text(&path.key("base_name"), map.get("base_name"))
            .and_then(|b| self.name(&path.key("base_name"), &b, BaseName::new));
        let table_group = self
            .text(&path.key("table_group"), map.get("table_group"))
            .and_then(|g| self.name(&path.key("table_group"), &g, LocGroupName::new));
        let columns = match map.get("cols") {
            None | Some(Json::Null) => None,
            Some(cols) => Some(self.columns(&path.key("cols"), cols)?),
        };
        Some(ChannelTable {
            name,
            base_name,
            table_group,
            columns,
        })
    }

    fn action(&mut self, path: &Path2, v: &Json, channel: &Channel) -> Option<Action> {
        let map = self.object(path, v, &["type", "loc_scope", "table_scope", "params"])?;
        let Some(action_type) = self.text(&path.key("type"), map.get("type")) else {
            self.error(&path.key("type"), "missing");
            return None;
        };
        let action_type = self.name(&path.key("type"), &action_type, str::parse::<ActionType>)?;
        let loc_scope = match self.text(&path.key("loc_scope"), map.get("loc_scope")) {
            None => LocScope::All,
            Some(s) => self.name(&path.key("loc_scope"), &s, str::parse::<LocScope>)?,
        };
        match &loc_scope {
            LocScope::Group(g) if !channel.loc_groups.contains_key(g) => {
                self.error(
                    &path.key("loc_scope"),
                    format!("location group {g} is not defined in this channel"),
                );
            }
            LocScope::Location(l) if channel.group_of(l).is_none() => {
                self.error(
                    &path.key("loc_scope"),
                    format!("location {l} is not a member of this channel"),
                );
            }
            _ => {}
        }
        let table_scope = match self.text(&path.key("table_scope"), map.get("table_scope")) {
            None => TableScope::All,
            Some(s) => self.name(&path.key("table_scope"), &s, str::parse::<TableScope>)?,
        };
        match &table_scope {
            TableScope::Table(t) if !channel.tables.contains_key(t) => {
                self.error(
                    &path.key("table_scope"),
                    format!("table {t} is not in this channel"),
                );
            }
            TableScope::Group(g)
                if !channel
                    .tables
                    .values()
                    .any(|t| t.table_group.as_ref() == Some(g)) =>
            {
                self.error(
                    &path.key("table_scope"),
                    format!("no table of this channel is in table group {g}"),
                );
            }
            _ => {}
        }
        let mut params = BTreeMap::new();
        if let Some(p) = map.get("params") {
            let params_path = path.key("params");
            match p {
                Json::Object(p) => {
                    for (k, v) in p {
                        let param_path = params_path.key(k);
                        if k != "Context" && !action_type.params().contains(&k.as_str()) {
                            self.error(
                                &param_path,
                                format!(
                                    "unknown parameter of {action_type}; known: {}",
                                    action_type.params().join(", ")
                                ),
                            );
                            continue;
                        }
                        if let Some(value) = self.prop_value(&param_path, v) {
                            params.insert(k.clone(), value);
                        }
                    }
                }
                Json::Null => {}
                other => self.error(
                    &params_path,
                    format!("expected a mapping, found {}", kind_of(other)),
                ),
            }
        }
        let action = Action::new(action_type, loc_scope, table_scope.clone(), params.clone());
        let errors = action.as_ref().err().map(Vec::as_slice).unwrap_or_default();
        self.report_params(path, action_type, &params, errors, &table_scope, channel);
        action.ok()
    }

    /// Reports the parameter problems of an action in parameter order, each at its parameter,
    /// those between parameters last; checks a `ColumnProperties` column against the declared
    /// columns of the tables in scope.
    fn report_params(
        &mut self,
        path: &Path2,
        action_type: ActionType,
        params: &BTreeMap<String, PropValue>,
        errors: &[ParamError],
        table_scope: &TableScope,
        channel: &Channel,
    ) {
        let params_path = path.key("params");
        for (k, v) in params {
            let p = params_path.key(k);
            let mut refused = false;
            for e in errors.iter().filter(|e| e.param.as_deref() == Some(k)) {
                self.error(&p, e.message.clone());
                refused = true;
            }
            if action_type == ActionType::ColumnProperties
                && k == "Name"
                && !refused
                && let Ok(column) = ColumnName::new(v.to_text())
            {
                // With declared columns, the column must be one of them.
                let tables: Vec<&ChannelTable> = channel
                    .tables
                    .values()
                    .filter(|t| channel.table_in_scope(table_scope, &t.name))
                    .collect();
                let declared_everywhere = tables.iter().all(|t| t.columns.is_some());
                let found = tables.iter().any(|t| {
                    t.columns
                        .as_ref()
                        .is_none_or(|cols| cols.iter().any(|c| c.name == column))
                });
                if declared_everywhere && !found {
                    self.error(
                        &p,
                        format!("column {column} is not declared in the tables this action covers"),
                    );
                }
            }
        }
        for e in errors.iter().filter(|e| e.param.is_none()) {
            self.error(&params_path, e.message.clone());
        }
    }

    fn channel(
        &mut self,
        path: &Path2,
        name: ChannelName,
        v: &Json,
        locations: &BTreeSet<LocationName>,
    ) -> Option<Channel> {
        let map = self.object(path, v, &["description", "loc_groups", "tables", "actions"])?;
        let description = self
            .text(&path.key("description"), map.get("description"))
            .unwrap_or_default();
        let mut loc_groups: BTreeMap<LocGroupName, Vec<LocationName>> = BTreeMap::new();
        let mut member_of: BTreeMap<LocationName, LocGroupName> = BTreeMap::new();
        let groups_path = path.key("loc_groups");
        match map.get("loc_groups") {
            Some(Json::Object(groups)) => {
                for (g, members) in groups {
                    let group_path = groups_path.key(g);
                    let Some(group) = self.name(&group_path, g, LocGroupName::new) else {
                        continue;
                    };
                    // `[a, b]` or `{members: [a, b]}` (HVR's shape).
                    let list = match members {
                        Json::Array(list) => Some(list),
                        Json::Object(_) => self
                            .object(&group_path, members, &["members"])
                            .and_then(|m| m.get("members"))
                            .and_then(Json::as_array),
                        other => {
                            self.error(
                                &group_path,
                                format!("expected a list of locations, found {}", kind_of(other)),
                            );
                            None
                        }
                    };
                    let mut names = Vec::new();
                    for (i, member) in list.into_iter().flatten().enumerate() {
                        let member_path = group_path.index(i);
                        let Some(text) = self.text(&member_path, Some(member)) else {
                            continue;
                        };
                        let Some(loc) = self.name(&member_path, &text, LocationName::new) else {
                            continue;
                        };
                        if !locations.contains(&loc) {
                            self.error(&member_path, format!("unknown location {loc}"));
                        }
                        if let Some(other) = member_of.insert(loc.clone(), group.clone()) {
                            self.error(&member_path, format!("location {loc} is already in group {other}; a location belongs to one group per channel"));
                            continue;
                        }
                        names.push(loc);
                    }
                    if names.is_empty() {
                        self.warning(&group_path, "the group has no members");
                    }
                    loc_groups.insert(group, names);
                }
            }
            // HVR requires only a channel's name: groups, tables and actions may come later.
            None | Some(Json::Null) => {}
            Some(other) => self.error(
                &groups_path,
                format!("expected a mapping, found {}", kind_of(other)),
            ),
        }
        let mut tables = BTreeMap::new();
        let tables_path = path.key("tables");
        match map.get("tables") {
            Some(Json::Object(t)) => {
                for (table_name, spec) in t {
                    let table_path = tables_path.key(table_name);
                    let Some(table_name) = self.name(&table_path, table_name, TableName::new)
                    else {
                        continue;
                    };
                    if let Some(table) = self.table(&table_path, table_name.clone(), spec) {
                        tables.insert(table_name, table);
                    }
                }
            }
            None | Some(Json::Null) => self.warning(&tables_path, "the channel has no tables"),
            Some(other) => self.error(
                &tables_path,
                format!(
                    "expected a mapping of table name to table, found {}",
                    kind_of(other)
                ),
            ),
        }
        let mut channel = Channel {
            name,
            description,
            loc_groups,
            tables,
            actions: Vec::new(),
        };
        let actions_path = path.key("actions");
        match map.get("actions") {
            Some(Json::Array(list)) => {
                for (i, a) in list.iter().enumerate() {
                    if let Some(action) = self.action(&actions_path.index(i), a, &channel) {
                        channel.actions.push(action);
                    }
                }
            }
            None | Some(Json::Null) => {}
            Some(other) => self.error(
                &actions_path,
                format!("expected a list, found {}", kind_of(other)),
            ),
        }
        if !channel.loc_groups.is_empty() {
            if channel
                .locations_with_action(ActionType::Capture)
                .is_empty()
            {
                self.warning(
                    &actions_path,
                    "no Capture action: refresh and compare need --source",
                );
            }
            if channel
                .locations_with_action(ActionType::Integrate)
                .is_empty()
            {
                self.warning(
                    &actions_path,
                    "no Integrate action: refresh and compare need --target",
                );
            }
        }
        Some(channel)
    }

    fn document(&mut self, doc: &Json) -> Option<Definitions> {
        let root = Path2::root();
        let map = self.object(&root, doc, &["hub", "locations", "channels"])?;
        let hub = self.hub(map);
        let mut locations = BTreeMap::new();
        let locations_path = root.key("locations");
        match map.get("locations") {
            Some(Json::Object(l)) => {
                for (loc_name, spec) in l {
                    let loc_path = locations_path.key(loc_name);
                    let Some(loc_name) = self.name(&loc_path, loc_name, LocationName::new) else {
                        continue;
                    };
                    if let Some(loc) = self.location(&loc_path, loc_name.clone(), spec) {
                        locations.insert(loc_name, loc);
                    }
                }
            }
            None | Some(Json::Null) => {}
            Some(other) => self.error(
                &locations_path,
                format!("expected a mapping, found {}", kind_of(other)),
            ),
        }
        // Channels may use locations from this document and those already in the repository.
        // Names that failed to compile still count as defined, so one mistake is reported once.
        let mut known: BTreeSet<LocationName> = self.cx.known_locations.clone();
        if let Some(Json::Object(l)) = map.get("locations") {
            known.extend(
                l.keys()
                    .filter_map(|name| LocationName::new(name.as_str()).ok()),
            );
        }
        let mut channels = BTreeMap::new();
        let channels_path = root.key("channels");
        match map.get("channels") {
            Some(Json::Object(c)) => {
                for (ch_name, spec) in c {
                    let ch_path = channels_path.key(ch_name);
                    let Some(ch_name) = self.name(&ch_path, ch_name, ChannelName::new) else {
                        continue;
                    };
                    if let Some(ch) = self.channel(&ch_path, ch_name.clone(), spec, &known) {
                        channels.insert(ch_name, ch);
                    }
                }
            }
            None | Some(Json::Null) => {}
            Some(other) => self.error(
                &channels_path,
                format!("expected a mapping, found {}", kind_of(other)),
            ),
        }
        Some(Definitions {
            hub: hub?,
            locations,
            channels,
        })
    }
}

/// The document form of definitions: what [`compile`] turns back into the same definitions.
/// Property values are written as stored (sealed secrets stay sealed); callers that show the
/// document to people redact it first.
pub fn to_document(defs: &Definitions) -> Json {
    let locations: Map<String, Json> = defs
        .locations
        .values()
        .map(|l| (l.name.to_string(), location_document(l)))
        .collect();
    let channels: Map<String, Json> = defs
        .channels
        .values()
        .map(|c| (c.name.to_string(), channel_document(c)))
        .collect();
    serde_json::json!({
        "hub": {"name": defs.hub.name, "description": defs.hub.description},
        "locations": locations,
        "channels": channels,
    })
}

/// The document form of one location.
pub fn location_document(l: &Location) -> Json {
    let props: Map<String, Json> = l
        .props
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Json::Null)))
        .collect();
    let mut out = Map::new();
    out.insert("class".into(), Json::from(l.class.as_str()));
    if !l.description.is_empty() {
        out.insert("description".into(), Json::from(l.description.clone()));
    }
    out.insert("props".into(), Json::Object(props));
    Json::Object(out)
}

/// The document form of one table.
pub fn table_document(t: &ChannelTable) -> Json {
    let mut out = Map::new();
    if let Some(b) = &t.base_name {
        out.insert("base_name".into(), Json::from(b.as_str()));
    }
    if let Some(g) = &t.table_group {
        out.insert("table_group".into(), Json::from(g.as_str()));
    }
    if let Some(cols) = &t.columns {
        let cols: Map<String, Json> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut col = Map::new();
                col.insert("sequence".into(), Json::from(i as i64 + 1));
                col.insert("data_type".into(), Json::from(c.data_type.to_string()));
                if c.key > 0 {
                    col.insert("key".into(), Json::from(c.key));
                }
                col.insert("nullable".into(), Json::from(c.nullable));
                (c.name.to_string(), Json::Object(col))
            })
            .collect();
        out.insert("cols".into(), Json::Object(cols));
    }
    Json::Object(out)
}

/// The document form of one action.
pub fn action_document(a: &Action) -> Json {
    let mut out = Map::new();
    out.insert("type".into(), Json::from(a.action_type().as_str()));
    out.insert("loc_scope".into(), Json::from(a.loc_scope.to_string()));
    out.insert("table_scope".into(), Json::from(a.table_scope.to_string()));
    if !a.params().is_empty() {
        out.insert(
            "params".into(),
            serde_json::to_value(a.params()).unwrap_or(Json::Null),
        );
    }
    Json::Object(out)
}

/// The document form of one channel.
pub fn channel_document(c: &Channel) -> Json {
    let loc_groups: Map<String, Json> = c
        .loc_groups
        .iter()
        .map(|(g, members)| (g.to_string(), serde_json::json!({ "members": members })))
        .collect();
    let tables: Map<String, Json> = c
        .tables
        .values()
        .map(|t| (t.name.to_string(), table_document(t)))
        .collect();
    serde_json::json!({
        "description": c.description,
        "loc_groups": loc_groups,
        "tables": tables,
        "actions": c.actions.iter().map(action_document).collect::<Vec<_>>(),
    })
}

/// The hub a parsed document names, if it names a valid one.
pub fn hub_of(doc: &Json) -> Option<HubName> {
    doc.get("hub")
        .and_then(|h| h.as_str().or_else(|| h.get("name").and_then(Json::as_str)))
        .and_then(|n| HubName::new(n).ok())
}

/// Reads and compiles a definitions file: relative paths are taken against the file's directory,
/// channels may use `known_locations` besides the file's own, and the process environment is
/// consulted for warnings about unset `${ENV_VAR}` references.
pub fn compile_file(
    path: &Path,
    known_locations: BTreeSet<LocationName>,
    default_hub: Option<&HubName>,
) -> Compiled {
    compile_parsed(path, parse_file(path), known_locations, default_hub)
}

/// Compiles what [`parse_file`] read from `path`, as [`compile_file`] does.
pub fn compile_parsed(
    path: &Path,
    parsed: Result<Json, Vec<Diagnostic>>,
    known_locations: BTreeSet<LocationName>,
    default_hub: Option<&HubName>,
) -> Compiled {
    let doc = match parsed {
        Ok(doc) => doc,
        Err(diagnostics) => {
            return Compiled {
                definitions: None,
                diagnostics,
            };
        }
    };
    let cx = CompileContext {
        base_dir: path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
        known_locations,
        default_hub: default_hub.cloned(),
        env: std::env::vars().collect(),
        allow_secret_values: false,
    };
    compile(&doc, &cx)
}

/// The result of compiling: the definitions when there is no error, and every finding.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The definitions, when there are no errors.
    pub definitions: Option<Definitions>,
    /// Errors and warnings in document order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

/// Compiles a parsed document, reporting every problem at once.
pub fn compile(doc: &Json, cx: &CompileContext) -> Compiled {
    let mut compiler = Compiler {
        cx,
        diagnostics: Vec::new(),
    };
    let definitions = compiler.document(doc);
    let has_errors = compiler
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error);
    Compiled {
        definitions: if has_errors { None } else { definitions },
        diagnostics: compiler.diagnostics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_yaml(text: &str) -> Compiled {
        let doc = parse_text(text, false).unwrap();
        compile(
            &doc,
            &CompileContext {
                base_dir: Some(PathBuf::from("/defs")),
                ..Default::default()
            },
        )
    }

    const GOOD: &str = r#"
hub: {name: quickstart, description: sample}
locations:
  src: {class: sqlite, props: {Database_Name: shop.db}}
  tgt:
    props: {Class: sqlite, Database_Name: /abs/warehouse.db}
channels:
  shop:
    loc_groups: {SOURCE: [src], TARGET: {members: [tgt]}}
    tables:
      customers: {}
      orders:
        cols:
          id: {data_type: int64, key: 1}
          total: {data_type: "decimal(12,2)"}
    actions:
      - {type: Capture, loc_scope: SOURCE}
      - {type: Integrate, loc_scope: TARGET}
      - {type: Restrict, loc_scope: SOURCE, table_scope: orders, params: {RefreshCondition: "total > 0"}}
      - {type: ColumnProperties, loc_scope: TARGET, table_scope: orders, params: {Name: total, Absent: true}}
"#;

    #[test]
    fn a_good_document_compiles() {
        let compiled = compile_yaml(GOOD);
        assert!(
            compiled.diagnostics.is_empty(),
            "{:?}",
            compiled.diagnostics
        );
        let defs = compiled.definitions.unwrap();
        assert_eq!(defs.hub.description, "sample");
        let src = &defs.locations[&LocationName::new("src").unwrap()];
        assert_eq!(
            src.props["Database_Name"],
            PropValue::Text("/defs/shop.db".into())
        );
        let shop = &defs.channels[&ChannelName::new("shop").unwrap()];
        let orders = &shop.tables[&TableName::new("orders").unwrap()];
        let cols = orders.columns.as_ref().unwrap();
        assert_eq!(
            (cols[0].key, cols[0].nullable, cols[1].nullable),
            (1, false, true)
        );
        assert_eq!(shop.actions.len(), 4);
        assert!(
            shop.tables[&TableName::new("customers").unwrap()]
                .columns
                .is_none()
        );
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let compiled = compile_yaml(
            r#"
hub: quickstart
extra: 1
locations:
  src: {class: sqlite, props: {Database_Name: a.db, Database_Password: hunter2, Databse_User: x}}
  TGT: {class: sqlite, props: {Database_Name: b.db}}
  pg: {class: oracle}
channels:
  sales:
    loc_groups: {SOURCE: [src], TARGET: [nowhere]}
    tables:
      orders:
        cols:
          id: {data_type: inte, key: 1}
          qty: {data_type: int32, nulable: true}
    actions:
      - {type: Capture, loc_scope: SOURCE}
      - {type: Integrate, loc_scope: TARGET}
      - {type: Restrict, table_scope: orders, params: {RefreshCondition: "1=1; drop table orders"}}
      - {type: Restrict, table_scope: lines, params: {RefreshConditon: "x"}}
      - {type: Replicate}
"#,
        );
        let rendered: Vec<String> = compiled.errors().map(ToString::to_string).collect();
        let expect = [
            "extra: unknown field \"extra\"",
            "locations.src.props.Database_Password: a secret must be given as an ${ENV_VAR} reference",
            "locations.src.props.Databse_User: unknown property for class sqlite",
            "locations.TGT: invalid location name \"TGT\"",
            "locations.pg.class: unknown location class \"oracle\"",
            "channels.sales.loc_groups.TARGET[0]: unknown location nowhere",
            "channels.sales.tables.orders.cols.id.data_type: unknown data type \"inte\"",
            "channels.sales.tables.orders.cols.qty.nulable: unknown field",
            "channels.sales.actions[2].params.RefreshCondition: condition \"1=1; drop table orders\" contains ';'",
            "channels.sales.actions[3].table_scope: table lines is not in this channel",
            "channels.sales.actions[3].params.RefreshConditon: unknown parameter of Restrict",
            "channels.sales.actions[4].type: unknown action type \"Replicate\"",
        ];
        for want in expect {
            assert!(
                rendered.iter().any(|r| r.starts_with(want)),
                "missing {want:?} in:\n{}",
                rendered.join("\n")
            );
        }
        assert_eq!(rendered.len(), expect.len(), "{}", rendered.join("\n"));
        assert!(compiled.definitions.is_none());
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let errors = parse_text("hub: x\nlocations: [a,\n", false).unwrap_err();
        assert!(
            errors[0].message.starts_with("invalid YAML: line 2"),
            "{}",
            errors[0]
        );
        let errors = parse_text(r#"{"hub": "a", "locations": {}, "hub": "b"}"#, true).unwrap_err();
        assert!(
            errors[0].message.contains("duplicate key \"hub\""),
            "{}",
            errors[0]
        );
        let errors = parse_text("{\"hub\": }", true).unwrap_err();
        assert!(
            errors[0].message.starts_with("invalid JSON"),
            "{}",
            errors[0]
        );
        let errors = parse_text("a: 1\na: 2\n", false).unwrap_err();
        assert!(errors[0].message.contains("duplicate"), "{}", errors[0]);
    }

    #[test]
    fn json_and_yaml_share_the_schema() {
        let yaml = compile_yaml(GOOD).definitions.unwrap();
        let as_json = serde_json::to_string(&parse_text(GOOD, false).unwrap()).unwrap();
        let doc = parse_text(&as_json, true).unwrap();
        let cx = CompileContext {
            base_dir: Some(PathBuf::from("/defs")),
            ..Default::default()
        };
        assert_eq!(compile(&doc, &cx).definitions.unwrap(), yaml);
    }

    #[test]
    fn unset_environment_references_are_warnings() {
        let compiled = compile_yaml(
            "hub: h\nlocations:\n  src: {class: sqlite, props: {Database_Name: '${NOT_SET_ANYWHERE}/x.db'}}\n",
        );
        assert!(compiled.definitions.is_some());
        assert_eq!(compiled.diagnostics.len(), 1);
        assert_eq!(compiled.diagnostics[0].severity, Severity::Warning);
    }
}
