//! Validated definitions: hubs, locations and channels, as the repository stores them and the
//! service runs them.
//!
//! A value of these types has passed `compile()` (service crate): names are valid, every reference
//! resolves, action types and parameters are known, secrets are `${ENV_VAR}` references. Secrets are
//! never stored resolved: [`resolve_env_refs`] turns references into values at the moment of use.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data_type::DataType;
use crate::name::{
    BaseName, ChannelName, ColumnName, HubName, LocGroupName, LocationName, NameKind, SchemaName,
    TableName,
};

/// A hub: the unit that owns locations, channels, jobs and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hub {
    /// Hub name.
    pub name: HubName,
    /// Free text.
    pub description: String,
}

/// The database engine behind a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocationClass {
    /// PostgreSQL.
    Postgresql,
    /// MariaDB (alias `mysql`).
    Mariadb,
    /// SQLite.
    Sqlite,
}

impl LocationClass {
    /// The canonical class name.
    pub fn as_str(self) -> &'static str {
        match self {
            LocationClass::Postgresql => "postgresql",
            LocationClass::Mariadb => "mariadb",
            LocationClass::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for LocationClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LocationClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "postgresql" | "postgres" => Ok(LocationClass::Postgresql),
            "mariadb" | "mysql" => Ok(LocationClass::Mariadb),
            "sqlite" => Ok(LocationClass::Sqlite),
            _ => Err(format!(
                "unknown location class {s:?}; expected postgresql, mariadb (or mysql) or sqlite"
            )),
        }
    }
}

impl Serialize for LocationClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LocationClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A property or action parameter value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropValue {
    /// A boolean flag.
    Bool(bool),
    /// A number.
    Int(i64),
    /// Text; may contain `${ENV_VAR}` references.
    Text(String),
}

impl PropValue {
    /// The value as text (`true`, `42`, or the text itself).
    pub fn to_text(&self) -> String {
        match self {
            PropValue::Bool(b) => b.to_string(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Text(s) => s.clone(),
        }
    }

    /// The value read as a flag: `true`, `1`, `"true"`, `"1"`, `"yes"` are set.
    pub fn is_set(&self) -> bool {
        match self {
            PropValue::Bool(b) => *b,
            PropValue::Int(i) => *i != 0,
            PropValue::Text(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        }
    }
}

/// Whether a location property holds a secret: such a property may only be given as an
/// `${ENV_VAR}` reference, and is never shown resolved.
pub fn is_secret_prop(name: &str) -> bool {
    const SECRET_SUFFIXES: &[&str] = &["_Password", "_Secret", "_Token", "_Key_Passphrase"];
    SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A reference to an environment variable that is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name} is not set")]
pub struct MissingEnvVar {
    /// The variable's name.
    pub name: String,
}

/// A malformed `${…}` reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed environment reference in {text:?}: {reason}")]
pub struct EnvRefError {
    text: String,
    reason: &'static str,
}

/// The pieces of a text with `${NAME}` references: literal text and variable names. `$$` stands for
/// a literal `$`.
fn env_ref_pieces(text: &str) -> Result<Vec<(bool, String)>, EnvRefError> {
    let fail = |reason| EnvRefError {
        text: text.to_owned(),
        reason,
    };
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            literal.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let close = tail.find('}').ok_or_else(|| fail("missing }"))?;
            let name = &tail[..close];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(fail("a variable name is letters, digits and _"));
            }
            if !literal.is_empty() {
                pieces.push((false, std::mem::take(&mut literal)));
            }
            pieces.push((true, name.to_owned()));
            rest = &tail[close + 1..];
        } else {
            literal.push('$');
            rest = after;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push((false, literal));
    }
    Ok(pieces)
}

/// The names of the `${NAME}` references in `text`.
pub fn env_refs(text: &str) -> Result<Vec<String>, EnvRefError> {
    Ok(env_ref_pieces(text)?
        .into_iter()
        .filter(|(is_ref, _)| *is_ref)
        .map(|(_, name)| name)
        .collect())
}

/// Whether `text` is exactly one `${NAME}` reference and nothing else.
pub fn is_single_env_ref(text: &str) -> bool {
    matches!(env_ref_pieces(text).as_deref(), Ok([(true, _)]))
}

/// Replaces every `${NAME}` in `text` with `lookup(NAME)`.
pub fn resolve_env_refs(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ResolveError> {
    let mut out = String::with_capacity(text.len());
    for (is_ref, piece) in env_ref_pieces(text)? {
        if is_ref {
            let value = lookup(&piece).ok_or(MissingEnvVar { name: piece })?;
            out.push_str(&value);
        } else {
            out.push_str(&piece);
        }
    }
    Ok(out)
}

/// Why a reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The variable is not set.
    #[error(transparent)]
    Missing(#[from] MissingEnvVar),
    /// The reference is malformed.
    #[error(transparent)]
    Malformed(#[from] EnvRefError),
}

/// A location: a database connection of some class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Location name.
    pub name: LocationName,
    /// Database engine.
    pub class: LocationClass,
    /// Free text.
    pub description: String,
    /// Connection properties (`Database_Host`, `Database_Name`, …), unresolved.
    pub props: BTreeMap<String, PropValue>,
}

impl Location {
    /// The property `name`, if set.
    pub fn prop(&self, name: &str) -> Option<&PropValue> {
        self.props.get(name)
    }
}

/// Which locations an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocScope {
    /// Every location (`*`).
    All,
    /// The members of a location group.
    Group(LocGroupName),
    /// One location.
    Location(LocationName),
}

/// Which tables an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableScope {
    /// Every table (`*`).
    All,
    /// The tables of a table group (uppercase name).
    Group(LocGroupName),
    /// One table.
    Table(TableName),
}

impl fmt::Display for LocScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocScope::All => f.write_str("*"),
            LocScope::Group(g) => write!(f, "{g}"),
            LocScope::Location(l) => write!(f, "{l}"),
        }
    }
}

impl fmt::Display for TableScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableScope::All => f.write_str("*"),
            TableScope::Group(g) => write!(f, "{g}"),
            TableScope::Table(t) => write!(f, "{t}"),
        }
    }
}

impl FromStr for LocScope {
    type Err = String;
    /// `*`, an uppercase group name or a lowercase location name.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(LocScope::All);
        }
        if NameKind::LocGroup.check(s).is_ok() {
            return Ok(LocScope::Group(
                LocGroupName::new(s).map_err(|e| e.to_string())?,
            ));
        }
        LocationName::new(s).map(LocScope::Location).map_err(|_| {
            format!("location scope {s:?} is neither *, a location group (UPPERCASE) nor a location (lowercase)")
        })
    }
}

impl FromStr for TableScope {
    type Err = String;
    /// `*`, an uppercase table group name or a lowercase table name.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(TableScope::All);
        }
        if NameKind::LocGroup.check(s).is_ok() {
            return Ok(TableScope::Group(
                LocGroupName::new(s).map_err(|e| e.to_string())?,
            ));
        }
        TableName::new(s).map(TableScope::Table).map_err(|_| {
            format!(
                "table scope {s:?} is neither *, a table group (UPPERCASE) nor a table (lowercase)"
            )
        })
    }
}

/// An action type and the parameters it takes (HVR 6 action reference, reference §6).
pub struct ActionSpec {
    /// The type name (`Capture`, `Restrict`, …).
    pub name: &'static str,
    /// Parameter names it accepts.
    pub params: &'static [&'static str],
}

/// The action types sluice knows, with their parameters. Parameters are checked against this table;
/// `Context` is accepted on every action.
pub const ACTION_SPECS: &[ActionSpec] = &[
    ActionSpec {
        name: "Capture",
        params: &[
            "IgnoreSessionName",
            "Coalesce",
            "NoBeforeUpdate",
            "NoTruncate",
            "AugmentIncomplete",
            "IgnoreCondition",
            "IgnoreUpdateCondition",
            "HashBuckets",
            "HashKey",
        ],
    },
    ActionSpec {
        name: "Integrate",
        params: &[
            "Method",
            "BurstCommitFrequency",
            "Coalesce",
            "ReorderRows",
            "Resilient",
            "OnErrorSaveFailed",
            "DbProc",
            "TxBundleSize",
            "TxSplitLimit",
            "NoTriggerFiring",
            "SessionName",
            "Topic",
            "MessageKey",
            "RenameExpression",
            "Delay",
        ],
    },
    ActionSpec {
        name: "Restrict",
        params: &[
            "CaptureCondition",
            "IntegrateCondition",
            "RefreshCondition",
            "CompareCondition",
            "RefreshJoinCondition",
            "CompareJoinCondition",
            "SliceCountCondition",
            "SliceSeriesCondition",
            "HorizColumn",
            "HorizLookupTable",
            "DynamicHorizLookup",
            "AddressTo",
            "AddressSubscribe",
            "SelectDistinct",
        ],
    },
    ActionSpec {
        name: "TableProperties",
        params: &[
            "BaseName",
            "Schema",
            "Absent",
            "NoDuplicateRows",
            "CoerceErrorPolicy",
            "CoerceErrorType",
            "TrimWhiteSpace",
            "TrimTime",
            "MapEmptyStringToSpace",
            "MapEmptyDateToConstant",
            "CreateUnicodeDatatypes",
            "DistributionKeyLimit",
            "DistributionKeyAvoidPattern",
            "CharacterMapping",
            "MapBinary",
            "PartitionByDate",
        ],
    },
    ActionSpec {
        name: "ColumnProperties",
        params: &[
            "Name",
            "DatatypeMatch",
            "BaseName",
            "Extra",
            "Absent",
            "CaptureExpression",
            "CaptureExpressionType",
            "IntegrateExpression",
            "ExpressionScope",
            "CaptureFromRowId",
            "TrimDatatype",
            "Key",
            "SurrogateKey",
            "DistributionKey",
            "SoftDelete",
            "TimeKey",
            "IgnoreDuringCompare",
            "Datatype",
            "Length",
            "Precision",
            "Scale",
            "Nullable",
        ],
    },
    ActionSpec {
        name: "Scheduling",
        params: &[
            "CaptureStartTimes",
            "CaptureOnceOnStart",
            "IntegrateStartAfterCapture",
            "IntegrateStartTimes",
            "IntegrateOnceOnStart",
            "LatencySLA",
            "TimeContext",
        ],
    },
    ActionSpec {
        name: "Environment",
        params: &["Name", "Value"],
    },
    // A sluice extension: how refresh treats the tables in scope.
    ActionSpec {
        name: "Refresh",
        params: &[
            "Mode",
            "Strategy",
            "IncrementalColumn",
            "DateBufferDays",
            "Apply",
        ],
    },
];

/// The spec of the action type `name`.
pub fn action_spec(name: &str) -> Option<&'static ActionSpec> {
    ACTION_SPECS.iter().find(|s| s.name == name)
}

/// An action of a channel: a type, scopes, and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The action type, one of [`ACTION_SPECS`].
    pub action_type: String,
    /// Locations it applies to.
    pub loc_scope: LocScope,
    /// Tables it applies to.
    pub table_scope: TableScope,
    /// Parameters by name.
    pub params: BTreeMap<String, PropValue>,
}

impl Action {
    /// The parameter `name`, if set.
    pub fn param(&self, name: &str) -> Option<&PropValue> {
        self.params.get(name)
    }
}

/// A column declared in a channel table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelColumn {
    /// Column name.
    pub name: ColumnName,
    /// Its engine-neutral type.
    pub data_type: DataType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Position in the replication key, 1-based; 0 when not a key column.
    pub key: u32,
}

/// A table of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelTable {
    /// Channel table name.
    pub name: TableName,
    /// The table's name in the databases, when it differs from `name`.
    pub base_name: Option<BaseName>,
    /// Uppercase table group, for action table scopes.
    pub table_group: Option<LocGroupName>,
    /// Declared columns in order; `None` means "discover from the source at run time".
    pub columns: Option<Vec<ChannelColumn>>,
}

/// A channel: tables replicated between location groups, shaped by actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Channel name.
    pub name: ChannelName,
    /// Free text.
    pub description: String,
    /// Location groups and their members; a location is in at most one group.
    pub loc_groups: BTreeMap<LocGroupName, Vec<LocationName>>,
    /// Tables by name.
    pub tables: BTreeMap<TableName, ChannelTable>,
    /// Actions in definition order.
    pub actions: Vec<Action>,
}

impl Channel {
    /// The group `loc` belongs to in this channel.
    pub fn group_of(&self, loc: &LocationName) -> Option<&LocGroupName> {
        self.loc_groups
            .iter()
            .find(|(_, members)| members.contains(loc))
            .map(|(group, _)| group)
    }

    /// Every member location, in group order.
    pub fn locations(&self) -> impl Iterator<Item = &LocationName> {
        self.loc_groups.values().flatten()
    }

    /// Whether `scope` covers `loc`.
    pub fn loc_in_scope(&self, scope: &LocScope, loc: &LocationName) -> bool {
        match scope {
            LocScope::All => true,
            LocScope::Location(l) => l == loc,
            LocScope::Group(g) => self.loc_groups.get(g).is_some_and(|m| m.contains(loc)),
        }
    }

    /// Whether `scope` covers `table`.
    pub fn table_in_scope(&self, scope: &TableScope, table: &TableName) -> bool {
        match scope {
            TableScope::All => true,
            TableScope::Table(t) => t == table,
            TableScope::Group(g) => self
                .tables
                .get(table)
                .and_then(|t| t.table_group.as_ref())
                .is_some_and(|group| group == g),
        }
    }

    /// Actions of `action_type` that apply to `loc` and `table`, in definition order.
    pub fn actions_for<'a>(
        &'a self,
        action_type: &'a str,
        loc: &'a LocationName,
        table: &'a TableName,
    ) -> impl Iterator<Item = &'a Action> + 'a {
        self.actions.iter().filter(move |a| {
            a.action_type == action_type
                && self.loc_in_scope(&a.loc_scope, loc)
                && self.table_in_scope(&a.table_scope, table)
        })
    }

    /// Locations covered by an action of `action_type` (e.g. `Capture` → sources).
    pub fn locations_with_action(&self, action_type: &str) -> Vec<&LocationName> {
        self.locations()
            .filter(|loc| {
                self.actions
                    .iter()
                    .any(|a| a.action_type == action_type && self.loc_in_scope(&a.loc_scope, loc))
            })
            .collect()
    }
}

/// Everything one definitions file (or one hub's export) holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Definitions {
    /// The hub the definitions belong to.
    pub hub: Hub,
    /// Locations by name.
    pub locations: BTreeMap<LocationName, Location>,
    /// Channels by name.
    pub channels: BTreeMap<ChannelName, Channel>,
}

/// Where a table lives at one location: its schema and base name after `TableProperties`.
pub fn physical_table(
    channel: &Channel,
    table: &ChannelTable,
    loc: &LocationName,
    default_schema: Option<&SchemaName>,
) -> crate::schema::TableRef {
    let mut base = table
        .base_name
        .clone()
        .unwrap_or_else(|| BaseName::new(table.name.as_str()).expect("table names are base names"));
    let mut schema = default_schema.cloned();
    for action in channel.actions_for("TableProperties", loc, &table.name) {
        if let Some(PropValue::Text(b)) = action.param("BaseName")
            && let Ok(b) = BaseName::new(b.as_str())
        {
            base = b;
        }
        if let Some(PropValue::Text(s)) = action.param("Schema")
            && let Ok(s) = SchemaName::new(s.as_str())
        {
            schema = Some(s);
        }
    }
    crate::schema::TableRef { schema, name: base }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references() {
        assert_eq!(env_refs("${A}-x-${B_2}").unwrap(), vec!["A", "B_2"]);
        assert!(is_single_env_ref("${PG_PASSWORD}"));
        assert!(!is_single_env_ref("pre${PG_PASSWORD}"));
        assert!(!is_single_env_ref("secret"));
        assert!(env_refs("${1A}").is_err());
        assert!(env_refs("${A").is_err());
        let env = |n: &str| (n == "HOST").then(|| "db1".to_owned());
        assert_eq!(
            resolve_env_refs("${HOST}:5432 $$5 $x", env).unwrap(),
            "db1:5432 $5 $x"
        );
        assert_eq!(
            resolve_env_refs("${NOPE}", env).unwrap_err().to_string(),
            "environment variable NOPE is not set"
        );
    }

    #[test]
    fn secrets_by_name() {
        assert!(is_secret_prop("Database_Password"));
        assert!(is_secret_prop("File_Password"));
        assert!(!is_secret_prop("Database_User"));
    }

    #[test]
    fn scopes_parse_by_case() {
        assert_eq!("*".parse::<LocScope>().unwrap(), LocScope::All);
        assert!(matches!(
            "SOURCE".parse::<LocScope>().unwrap(),
            LocScope::Group(_)
        ));
        assert!(matches!(
            "src".parse::<LocScope>().unwrap(),
            LocScope::Location(_)
        ));
        assert!("Src".parse::<LocScope>().is_err());
        assert!(matches!(
            "orders".parse::<TableScope>().unwrap(),
            TableScope::Table(_)
        ));
    }

    #[test]
    fn classes_accept_mysql_alias() {
        assert_eq!(
            "mysql".parse::<LocationClass>().unwrap(),
            LocationClass::Mariadb
        );
        assert_eq!(
            "SQLite".parse::<LocationClass>().unwrap(),
            LocationClass::Sqlite
        );
        assert!("oracle".parse::<LocationClass>().is_err());
    }
}
