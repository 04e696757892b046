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

use crate::condition::Condition;
use crate::data_type::DataType;
use crate::name::{
    BaseName, ChannelName, ColumnName, HubName, LocGroupName, LocationName, NameKind, SchemaName,
    TableName,
};
use crate::refresh::{RefreshModeKind, RefreshSettings, RowwiseApply, WriteStrategy};

/// A hub: the unit that owns locations, channels, jobs and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hub {
    /// Hub name.
    pub name: HubName,
    /// Free text.
    pub description: String,
}

/// Whether a hub runs jobs: `LIVE`, or `FROZEN` (no job starts until it is unfrozen). Spelled as
/// HVR spells `Hub_State`, in the repository and on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HubState {
    /// Jobs run.
    Live,
    /// No job starts.
    Frozen,
}

impl HubState {
    /// The stored and wire spelling (`LIVE`, `FROZEN`).
    pub fn as_str(self) -> &'static str {
        match self {
            HubState::Live => "LIVE",
            HubState::Frozen => "FROZEN",
        }
    }
}

impl fmt::Display for HubState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HubState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "LIVE" => Ok(HubState::Live),
            "FROZEN" => Ok(HubState::Frozen),
            _ => Err(format!("unknown hub state {s:?}; expected LIVE or FROZEN")),
        }
    }
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
            "EventHub",
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

/// The type of an action, one per entry of [`ACTION_SPECS`]; spelled as HVR spells it in the
/// repository, definitions and on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionType {
    /// `Capture`: the location is a source.
    Capture,
    /// `Integrate`: the location is a target.
    Integrate,
    /// `Restrict`: conditions on rows.
    Restrict,
    /// `TableProperties`: where a table lives.
    TableProperties,
    /// `ColumnProperties`: columns left out or made key.
    ColumnProperties,
    /// `Scheduling` (kept, not acted on).
    Scheduling,
    /// `Environment` (kept, not acted on).
    Environment,
    /// `Refresh` (a sluice extension): how refresh treats the tables in scope.
    Refresh,
}

impl ActionType {
    /// Every type, in the order of [`ACTION_SPECS`].
    pub const ALL: [ActionType; 8] = [
        ActionType::Capture,
        ActionType::Integrate,
        ActionType::Restrict,
        ActionType::TableProperties,
        ActionType::ColumnProperties,
        ActionType::Scheduling,
        ActionType::Environment,
        ActionType::Refresh,
    ];

    /// The type's name (`Capture`, `Restrict`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Capture => "Capture",
            ActionType::Integrate => "Integrate",
            ActionType::Restrict => "Restrict",
            ActionType::TableProperties => "TableProperties",
            ActionType::ColumnProperties => "ColumnProperties",
            ActionType::Scheduling => "Scheduling",
            ActionType::Environment => "Environment",
            ActionType::Refresh => "Refresh",
        }
    }

    /// The parameters the type accepts (`Context` is accepted on every action besides).
    pub fn params(self) -> &'static [&'static str] {
        action_spec(self.as_str())
            .expect("every action type has a spec")
            .params
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ActionType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ACTION_SPECS.iter().map(|s| s.name).collect();
                format!("unknown action type {s:?}; known: {}", known.join(", "))
            })
    }
}

/// `Restrict`: the conditions sluice runs. Every `…Condition` parameter is checked as one SQL
/// expression when the action is decoded, so no stored action holds a statement for a later
/// feature to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrict {
    /// `RefreshCondition`: rows a refresh (and a compare) reads.
    pub refresh_condition: Option<Condition>,
    /// `CompareCondition`: rows a compare reads, instead of `RefreshCondition`.
    pub compare_condition: Option<Condition>,
}

/// `TableProperties`: where a table lives at the locations in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableProperties {
    /// `BaseName`, when given as text.
    pub base_name: Option<BaseName>,
    /// `Schema`, when given as text.
    pub schema: Option<SchemaName>,
}

/// `ColumnProperties`: what sluice does with one column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnProperties {
    /// `Name`: the column it applies to.
    pub name: Option<ColumnName>,
    /// `Absent`: the column is missing at the locations in scope.
    pub absent: bool,
    /// `Key`: the column is part of the replication key.
    pub key: bool,
}

/// What an action means to sluice, decoded from its type and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// `Capture`.
    Capture,
    /// `Integrate`.
    Integrate,
    /// `Restrict`.
    Restrict(Restrict),
    /// `TableProperties`.
    TableProperties(TableProperties),
    /// `ColumnProperties`.
    ColumnProperties(ColumnProperties),
    /// `Scheduling`.
    Scheduling,
    /// `Environment`.
    Environment,
    /// `Refresh`.
    Refresh(RefreshSettings),
}

impl ActionKind {
    /// The action's type.
    pub fn action_type(&self) -> ActionType {
        match self {
            ActionKind::Capture => ActionType::Capture,
            ActionKind::Integrate => ActionType::Integrate,
            ActionKind::Restrict(_) => ActionType::Restrict,
            ActionKind::TableProperties(_) => ActionType::TableProperties,
            ActionKind::ColumnProperties(_) => ActionType::ColumnProperties,
            ActionKind::Scheduling => ActionType::Scheduling,
            ActionKind::Environment => ActionType::Environment,
            ActionKind::Refresh(_) => ActionType::Refresh,
        }
    }

    /// Decodes the parameters of an action of `action_type`; every problem at once, each naming
    /// its parameter (or none, for a problem between parameters). Parameters sluice does not act
    /// on are not looked at.
    pub fn decode(
        action_type: ActionType,
        params: &BTreeMap<String, PropValue>,
    ) -> Result<ActionKind, Vec<ParamError>> {
        let mut d = Decoder {
            params,
            errors: Vec::new(),
        };
        let kind = match action_type {
            ActionType::Capture => ActionKind::Capture,
            ActionType::Integrate => ActionKind::Integrate,
            ActionType::Scheduling => ActionKind::Scheduling,
            ActionType::Environment => ActionKind::Environment,
            ActionType::Restrict => ActionKind::Restrict(d.restrict()),
            ActionType::TableProperties => ActionKind::TableProperties(d.table_properties()),
            ActionType::ColumnProperties => ActionKind::ColumnProperties(d.column_properties()),
            ActionType::Refresh => ActionKind::Refresh(d.refresh()),
        };
        if d.errors.is_empty() {
            Ok(kind)
        } else {
            Err(d.errors)
        }
    }
}

/// A parameter value an action cannot have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter, or `None` for a problem between parameters.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.param {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParamError {}

/// Decodes one action's parameters, collecting every problem.
struct Decoder<'a> {
    params: &'a BTreeMap<String, PropValue>,
    errors: Vec<ParamError>,
}

impl Decoder<'_> {
    fn fail(&mut self, param: Option<&str>, message: impl Into<String>) {
        self.errors.push(ParamError {
            param: param.map(str::to_owned),
            message: message.into(),
        });
    }

    /// The parameter `name` decoded by `decode` from its value; a refusal is recorded.
    fn get<T, E: fmt::Display>(
        &mut self,
        name: &str,
        decode: impl FnOnce(&PropValue) -> Result<T, E>,
    ) -> Option<T> {
        let value = self.params.get(name)?;
        match decode(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(Some(name), e.to_string());
                None
            }
        }
    }

    /// A flag: `true`, `false`, `0`, `1` (as a boolean, a number or text).
    fn flag(&mut self, name: &str) -> bool {
        self.get(name, |v| {
            let ok = matches!(v, PropValue::Bool(_) | PropValue::Int(0 | 1))
                || matches!(v, PropValue::Text(t) if ["true", "false", "0", "1"].contains(&t.to_ascii_lowercase().as_str()));
            if ok {
                Ok(v.is_set())
            } else {
                Err("expected true or false")
            }
        })
        .unwrap_or(false)
    }

    /// One of `choices` (by its spelling), or a message listing them.
    fn choice<T: Copy>(&mut self, name: &str, what: &str, choices: &[(&str, T)]) -> Option<T> {
        self.get(name, |v| {
            let text = v.to_text();
            choices
                .iter()
                .find(|(spelling, _)| *spelling == text)
                .map(|(_, c)| *c)
                .ok_or_else(|| {
                    let known: Vec<&str> = choices.iter().map(|(s, _)| *s).collect();
                    format!("unknown {what} {text:?}; expected {}", known.join(", "))
                })
        })
    }

    fn restrict(&mut self) -> Restrict {
        let mut restrict = Restrict::default();
        let params = self.params;
        for (name, value) in params.iter().filter(|(k, _)| k.ends_with("Condition")) {
            match Condition::new(value.to_text()) {
                Ok(c) if name == "RefreshCondition" => restrict.refresh_condition = Some(c),
                Ok(c) if name == "CompareCondition" => restrict.compare_condition = Some(c),
                Ok(_) => {}
                Err(e) => self.fail(Some(name), e.to_string()),
            }
        }
        restrict
    }

    fn table_properties(&mut self) -> TableProperties {
        // Only text names move a table (a number or a boolean is checked, and not used).
        let text = |v: &PropValue| matches!(v, PropValue::Text(_));
        let base_name = self.get("BaseName", |v| BaseName::new(v.to_text()));
        let schema = self.get("Schema", |v| SchemaName::new(v.to_text()));
        self.flag("Absent");
        TableProperties {
            base_name: base_name.filter(|_| self.params.get("BaseName").is_some_and(text)),
            schema: schema.filter(|_| self.params.get("Schema").is_some_and(text)),
        }
    }

    fn column_properties(&mut self) -> ColumnProperties {
        let name = self.get("Name", |v| ColumnName::new(v.to_text()));
        let absent = self.flag("Absent");
        let key = self.flag("Key");
        self.flag("Nullable");
        if !self.params.contains_key("Name")
            && (self.params.contains_key("Absent") || self.params.contains_key("Key"))
        {
            self.fail(
                None,
                "ColumnProperties needs Name: the column it applies to",
            );
        }
        ColumnProperties { name, absent, key }
    }

    fn refresh(&mut self) -> RefreshSettings {
        use RefreshModeKind as M;
        let mode = self.choice(
            "Mode",
            "mode",
            &[
                ("full_replace", M::FullReplace),
                ("incremental", M::Incremental),
                ("smart_sync", M::SmartSync),
                ("rowwise", M::Rowwise),
            ],
        );
        let strategy = self.choice(
            "Strategy",
            "strategy",
            &[
                ("truncate_load", WriteStrategy::TruncateLoad),
                ("staging_swap", WriteStrategy::StagingSwap),
            ],
        );
        let apply = self.choice(
            "Apply",
            "apply",
            &[
                ("all", RowwiseApply::All),
                ("no_deletes", RowwiseApply::NoDeletes),
                ("only_deletes", RowwiseApply::OnlyDeletes),
            ],
        );
        let incremental_column = self.get("IncrementalColumn", |v| ColumnName::new(v.to_text()));
        let date_buffer_days = self.get("DateBufferDays", |v| {
            v.to_text()
                .parse::<u32>()
                .map_err(|_| "expected a whole number of days")
        });
        if mode.is_some_and(RefreshModeKind::needs_column)
            && !self.params.contains_key("IncrementalColumn")
        {
            self.fail(
                None,
                "Mode incremental and smart_sync need IncrementalColumn",
            );
        }
        RefreshSettings {
            mode,
            strategy,
            incremental_column,
            date_buffer_days,
            apply,
        }
    }
}

/// An action of a channel: a type, scopes, and parameters, decoded once into what it means
/// ([`Action::kind`]) and kept as written ([`Action::params`]) for the repository and documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Locations it applies to.
    pub loc_scope: LocScope,
    /// Tables it applies to.
    pub table_scope: TableScope,
    kind: ActionKind,
    params: BTreeMap<String, PropValue>,
}

impl Action {
    /// An action of `action_type` with `params` as written; every parameter problem at once when
    /// they do not decode ([`ActionKind::decode`]).
    pub fn new(
        action_type: ActionType,
        loc_scope: LocScope,
        table_scope: TableScope,
        params: BTreeMap<String, PropValue>,
    ) -> Result<Action, Vec<ParamError>> {
        Ok(Action {
            kind: ActionKind::decode(action_type, &params)?,
            loc_scope,
            table_scope,
            params,
        })
    }

    /// The action's type.
    pub fn action_type(&self) -> ActionType {
        self.kind.action_type()
    }

    /// What the action means.
    pub fn kind(&self) -> &ActionKind {
        &self.kind
    }

    /// The parameters as written: what the repository stores and documents show.
    pub fn params(&self) -> &BTreeMap<String, PropValue> {
        &self.params
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

    /// Actions that apply to `loc` and `table`, in definition order.
    pub fn actions_for<'a>(
        &'a self,
        loc: &'a LocationName,
        table: &'a TableName,
    ) -> impl Iterator<Item = &'a Action> + 'a {
        self.actions.iter().filter(move |a| {
            self.loc_in_scope(&a.loc_scope, loc) && self.table_in_scope(&a.table_scope, table)
        })
    }

    /// Locations covered by an action of `action_type` (e.g. `Capture` → sources).
    pub fn locations_with_action(&self, action_type: ActionType) -> Vec<&LocationName> {
        self.locations()
            .filter(|loc| {
                self.actions
                    .iter()
                    .any(|a| a.action_type() == action_type && self.loc_in_scope(&a.loc_scope, loc))
            })
            .collect()
    }

    /// What the `Refresh` actions on `loc` say about `table`, later actions overriding earlier
    /// ones field by field.
    pub fn refresh_settings(&self, loc: &LocationName, table: &TableName) -> RefreshSettings {
        self.actions_for(loc, table)
            .filter_map(|a| match a.kind() {
                ActionKind::Refresh(settings) => Some(settings),
                _ => None,
            })
            .fold(RefreshSettings::default(), RefreshSettings::overlaid)
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
    for action in channel.actions_for(loc, &table.name) {
        if let ActionKind::TableProperties(props) = action.kind() {
            if let Some(b) = &props.base_name {
                base = b.clone();
            }
            if let Some(s) = &props.schema {
                schema = Some(s.clone());
            }
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
    fn params(list: &[(&str, PropValue)]) -> BTreeMap<String, PropValue> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn text(s: &str) -> PropValue {
        PropValue::Text(s.into())
    }

    fn errors(action_type: ActionType, list: &[(&str, PropValue)]) -> Vec<String> {
        ActionKind::decode(action_type, &params(list))
            .expect_err("the parameters are refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn action_types_round_trip() {
        for t in ActionType::ALL {
            assert_eq!(t.as_str().parse::<ActionType>().unwrap(), t);
            assert!(action_spec(t.as_str()).is_some());
        }
        assert_eq!(ActionType::ALL.len(), ACTION_SPECS.len());
        assert_eq!(
            "Replicate".parse::<ActionType>().unwrap_err(),
            "unknown action type \"Replicate\"; known: Capture, Integrate, Restrict, TableProperties, ColumnProperties, Scheduling, Environment, Refresh"
        );
        assert!("capture".parse::<ActionType>().is_err());
    }

    #[test]
    fn hub_states_keep_their_spelling() {
        for (state, text) in [(HubState::Live, "LIVE"), (HubState::Frozen, "FROZEN")] {
            assert_eq!(state.as_str(), text);
            assert_eq!(text.parse::<HubState>().unwrap(), state);
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(text)
            );
        }
        assert!("live".parse::<HubState>().is_err());
    }

    #[test]
    fn refresh_actions_decode_every_setting() {
        for mode in RefreshModeKind::ALL {
            let kind = ActionKind::decode(
                ActionType::Refresh,
                &params(&[
                    ("Mode", text(mode.as_str())),
                    ("IncrementalColumn", text("updated_at")),
                    ("DateBufferDays", PropValue::Int(2)),
                    ("Strategy", text("staging_swap")),
                    ("Apply", text("no_deletes")),
                    ("Context", text("anything")),
                ]),
            )
            .unwrap();
            let ActionKind::Refresh(settings) = kind else {
                panic!("a Refresh action decodes to Refresh");
            };
            assert_eq!(settings.mode, Some(mode));
            assert_eq!(settings.incremental_column.unwrap().as_str(), "updated_at");
            assert_eq!(settings.date_buffer_days, Some(2));
            assert_eq!(settings.strategy, Some(WriteStrategy::StagingSwap));
            assert_eq!(settings.apply, Some(RowwiseApply::NoDeletes));
        }
        assert_eq!(
            ActionKind::decode(
                ActionType::Refresh,
                &params(&[("DateBufferDays", text("3"))])
            ),
            Ok(ActionKind::Refresh(RefreshSettings {
                date_buffer_days: Some(3),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn refresh_actions_refuse_what_sluice_cannot_run() {
        assert_eq!(
            errors(
                ActionType::Refresh,
                &[
                    ("Apply", text("some")),
                    ("DateBufferDays", text("-1")),
                    ("Mode", text("merge")),
                    ("Strategy", text("append")),
                ]
            ),
            [
                "Mode: unknown mode \"merge\"; expected full_replace, incremental, smart_sync, rowwise",
                "Strategy: unknown strategy \"append\"; expected truncate_load, staging_swap",
                "Apply: unknown apply \"some\"; expected all, no_deletes, only_deletes",
                "DateBufferDays: expected a whole number of days",
            ]
        );
        for mode in ["incremental", "smart_sync"] {
            assert_eq!(
                errors(ActionType::Refresh, &[("Mode", text(mode))]),
                ["Mode incremental and smart_sync need IncrementalColumn"]
            );
        }
    }

    #[test]
    fn restrict_conditions_are_checked_and_kept() {
        let kind = ActionKind::decode(
            ActionType::Restrict,
            &params(&[
                ("RefreshCondition", text("total > 0")),
                ("CompareCondition", PropValue::Int(1)),
                ("CaptureCondition", text("a = 1")),
            ]),
        )
        .unwrap();
        let ActionKind::Restrict(r) = kind else {
            panic!("a Restrict action decodes to Restrict");
        };
        assert_eq!(r.refresh_condition.unwrap().as_str(), "total > 0");
        assert_eq!(r.compare_condition.unwrap().as_str(), "1");
        let refused = errors(
            ActionType::Restrict,
            &[("SliceCountCondition", text("1=1; drop table t"))],
        );
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].starts_with("SliceCountCondition: condition \"1=1; drop table t\""),
            "{refused:?}"
        );
    }

    #[test]
    fn column_and_table_properties() {
        for (value, set) in [
            (PropValue::Bool(true), true),
            (PropValue::Int(1), true),
            (text("TRUE"), true),
            (text("1"), true),
            (PropValue::Bool(false), false),
            (text("0"), false),
        ] {
            let kind = ActionKind::decode(
                ActionType::ColumnProperties,
                &params(&[
                    ("Name", text("total")),
                    ("Absent", value.clone()),
                    ("Key", value),
                ]),
            )
            .unwrap();
            assert_eq!(
                kind,
                ActionKind::ColumnProperties(ColumnProperties {
                    name: Some(ColumnName::new("total").unwrap()),
                    absent: set,
                    key: set,
                })
            );
        }
        assert_eq!(
            errors(
                ActionType::ColumnProperties,
                &[("Absent", text("yes")), ("Nullable", PropValue::Int(2))]
            ),
            [
                "Absent: expected true or false",
                "Nullable: expected true or false",
                "ColumnProperties needs Name: the column it applies to",
            ]
        );
        // A name given as a number is checked, and (as before) does not move the table.
        let kind = ActionKind::decode(
            ActionType::TableProperties,
            &params(&[("BaseName", PropValue::Int(7)), ("Schema", text("sales"))]),
        )
        .unwrap();
        assert_eq!(
            kind,
            ActionKind::TableProperties(TableProperties {
                base_name: None,
                schema: Some(SchemaName::new("sales").unwrap()),
            })
        );
    }

    #[test]
    fn refresh_settings_follow_scope_and_order() {
        let loc = |s: &str| LocationName::new(s).unwrap();
        let table = |s: &str| TableName::new(s).unwrap();
        let action = |scope: &str, list: &[(&str, PropValue)]| {
            Action::new(
                ActionType::Refresh,
                scope.parse().unwrap(),
                TableScope::All,
                params(list),
            )
            .unwrap()
        };
        let channel = Channel {
            name: ChannelName::new("ch").unwrap(),
            description: String::new(),
            loc_groups: BTreeMap::from([
                (LocGroupName::new("SOURCE").unwrap(), vec![loc("src")]),
                (LocGroupName::new("TARGET").unwrap(), vec![loc("tgt")]),
            ]),
            tables: BTreeMap::new(),
            actions: vec![
                action(
                    "TARGET",
                    &[
                        ("Mode", text("incremental")),
                        ("IncrementalColumn", text("id")),
                    ],
                ),
                action("src", &[("Mode", text("rowwise"))]),
                action("*", &[("Strategy", text("staging_swap"))]),
                action("tgt", &[("DateBufferDays", PropValue::Int(5))]),
            ],
        };
        let settings = channel.refresh_settings(&loc("tgt"), &table("orders"));
        assert_eq!(settings.mode, Some(RefreshModeKind::Incremental));
        assert_eq!(settings.incremental_column.unwrap().as_str(), "id");
        assert_eq!(settings.date_buffer_days, Some(5));
        assert_eq!(settings.strategy, Some(WriteStrategy::StagingSwap));
        let settings = channel.refresh_settings(&loc("src"), &table("orders"));
        assert_eq!(settings.mode, Some(RefreshModeKind::Rowwise));
        assert_eq!(settings.incremental_column, None);
        assert_eq!(
            channel.locations_with_action(ActionType::Refresh),
            [&loc("src"), &loc("tgt")]
        );
        assert!(
            channel
                .locations_with_action(ActionType::Capture)
                .is_empty()
        );
    }
}
