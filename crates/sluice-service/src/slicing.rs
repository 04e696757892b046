//! Slicing: HVR's `slicing` of refresh and compare, which reads one table in parts (slices) that
//! run in parallel. Methods: `count` (N slices of about equal row counts, cut at the column's
//! quantiles), `boundary` (cut at given values), `modulo` (the integer column modulo N) and
//! `series` (one slice per listed value, and one for every other value).
//!
//! A request is checked in two steps: [`Slicing::parse`] checks the request alone (a bad method,
//! 0 slices, boundaries out of order), and [`HubService::slice_filters`] checks it against the
//! source table (the column exists, a modulo column is an integer) and renders each slice as a
//! row filter in the dialect of each side. The filters split the rows: every row, NULLs too,
//! falls in exactly one slice, whatever the database's collation.

use std::collections::BTreeSet;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sluice_connector::{Connector, ReadRequest};
use sluice_engine::TableSpec;
use sluice_model::condition::SqlDialect;
use sluice_model::{BatchLimits, ColumnDef, ColumnName, Condition, DataType, TableName, Value};

use crate::{HubService, Result, ServiceError};

/// The most slices one table may be read in.
pub const MAX_SLICES: u32 = 256;

/// Slices read at the same time when the request does not say (`parallel_sessions`).
pub const DEFAULT_SLICE_PARALLEL: usize = 4;

/// HVR's `slicing` of one table as requested, not yet checked.
#[derive(Debug, Clone, Default)]
pub struct SlicingRequest {
    /// `type`: `count`, `boundary`, `modulo` or `series`.
    pub method: String,
    /// `col`.
    pub col: Option<String>,
    /// `slices`.
    pub slices: Option<i64>,
    /// `str_boundaries`.
    pub str_boundaries: Option<Vec<String>>,
    /// `int_boundaries`.
    pub int_boundaries: Option<Vec<String>>,
    /// `date_boundaries`.
    pub date_boundaries: Option<Vec<String>>,
    /// `series_values`.
    pub series_values: Option<Vec<String>>,
    /// `selection`: only some slices (refused: a sliced table is replaced at once).
    pub selection: Option<Vec<i64>>,
}

/// How one table is sliced, checked on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slicing {
    /// The column slices are cut on; `count` defaults to the table's first key column.
    pub column: Option<ColumnName>,
    /// The method.
    pub method: SliceMethod,
}

/// A slicing method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SliceMethod {
    /// About equal row counts, cut at the column's quantiles.
    Count {
        /// Slices.
        slices: u32,
    },
    /// The integer column modulo `slices`.
    Modulo {
        /// Slices.
        slices: u32,
    },
    /// Cut before each boundary: `n` boundaries make `n + 1` slices.
    Boundary {
        /// The boundaries, ascending.
        boundaries: Boundaries,
    },
    /// One slice per value, and one more for every other value (and NULL).
    Series {
        /// The values.
        values: Vec<String>,
    },
}

/// Boundaries of a `boundary` slicing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundaries {
    /// `int_boundaries`, strictly ascending.
    Int(Vec<i64>),
    /// `str_boundaries`, distinct.
    Str(Vec<String>),
    /// `date_boundaries` as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), strictly ascending.
    Date(Vec<String>),
}

fn invalid(table: &str, message: impl std::fmt::Display) -> ServiceError {
    ServiceError::invalid(format!("slicing.{table}: {message}"))
}

fn slice_count(table: &str, slices: Option<i64>) -> Result<u32> {
    match slices {
        None => Err(invalid(table, "slices: missing")),
        Some(n) if (1..=i64::from(MAX_SLICES)).contains(&n) => Ok(n as u32),
        Some(n) => Err(invalid(
            table,
            format!("slices: expected 1 to {MAX_SLICES}, got {n}"),
        )),
    }
}

/// A date-time boundary, normalised to UTC.
fn date_boundary(table: &str, text: &str) -> Result<chrono::NaiveDateTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.naive_utc())
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .map_err(|_| {
            invalid(
                table,
                format!("date_boundaries: {text:?} is not a date-time (YYYY-MM-DDTHH:MM:SSZ)"),
            )
        })
}

fn ascending<T: PartialOrd>(values: &[T]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

impl Slicing {
    /// Checks one table's slicing on its own.
    pub fn parse(table: &str, r: &SlicingRequest) -> Result<Slicing> {
        if r.selection.is_some() {
            return Err(invalid(
                table,
                "selection (running only some slices) is not supported by sluice: a sliced \
                 refresh replaces the whole table at once",
            ));
        }
        let column = r
            .col
            .as_deref()
            .map(|c| ColumnName::new(c).map_err(|e| invalid(table, format!("col: {e}"))))
            .transpose()?;
        let lists = [
            ("str_boundaries", r.str_boundaries.is_some()),
            ("int_boundaries", r.int_boundaries.is_some()),
            ("date_boundaries", r.date_boundaries.is_some()),
            ("series_values", r.series_values.is_some()),
        ];
        let given: Vec<&str> = lists.iter().filter(|l| l.1).map(|l| l.0).collect();
        let needs_col = || {
            if column.is_none() {
                Err(invalid(
                    table,
                    format!("col: type {} needs a column", r.method),
                ))
            } else {
                Ok(())
            }
        };
        let only = |allowed: &[&str]| match given.iter().find(|g| !allowed.contains(g)) {
            Some(g) => Err(invalid(
                table,
                format!("{g} does not go with type {}", r.method),
            )),
            None => Ok(()),
        };
        let method = match r.method.as_str() {
            "count" => {
                only(&[])?;
                SliceMethod::Count {
                    slices: slice_count(table, r.slices)?,
                }
            }
            "modulo" => {
                only(&[])?;
                needs_col()?;
                SliceMethod::Modulo {
                    slices: slice_count(table, r.slices)?,
                }
            }
            "boundary" => {
                needs_col()?;
                only(&["str_boundaries", "int_boundaries", "date_boundaries"])?;
                if given.len() != 1 {
                    return Err(invalid(
                        table,
                        "type boundary needs exactly one of str_boundaries, int_boundaries and date_boundaries",
                    ));
                }
                let boundaries = if let Some(values) = &r.int_boundaries {
                    let ints = values
                        .iter()
                        .map(|v| {
                            v.trim().parse::<i64>().map_err(|_| {
                                invalid(table, format!("int_boundaries: {v:?} is not an integer"))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    if !ascending(&ints) {
                        return Err(invalid(table, "int_boundaries: not strictly ascending"));
                    }
                    Boundaries::Int(ints)
                } else if let Some(values) = &r.date_boundaries {
                    let dates = values
                        .iter()
                        .map(|v| date_boundary(table, v))
                        .collect::<Result<Vec<_>>>()?;
                    if !ascending(&dates) {
                        return Err(invalid(table, "date_boundaries: not strictly ascending"));
                    }
                    Boundaries::Date(
                        dates
                            .iter()
                            .map(|d| d.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                            .collect(),
                    )
                } else {
                    let strings = r.str_boundaries.clone().unwrap_or_default();
                    if strings.iter().collect::<BTreeSet<_>>().len() != strings.len() {
                        return Err(invalid(table, "str_boundaries: a value repeats"));
                    }
                    Boundaries::Str(strings)
                };
                let n = boundaries.len();
                if n == 0 || n >= MAX_SLICES as usize {
                    return Err(invalid(
                        table,
                        format!("boundaries: expected 1 to {}, got {n}", MAX_SLICES - 1),
                    ));
                }
                if let Some(s) = r.slices
                    && s != n as i64 + 1
                {
                    return Err(invalid(
                        table,
                        format!("slices: {n} boundaries make {} slices, not {s}", n + 1),
                    ));
                }
                SliceMethod::Boundary { boundaries }
            }
            "series" => {
                needs_col()?;
                only(&["series_values"])?;
                let values = r.series_values.clone().unwrap_or_default();
                if values.is_empty() || values.len() >= MAX_SLICES as usize {
                    return Err(invalid(
                        table,
                        format!(
                            "series_values: expected 1 to {} values, got {}",
                            MAX_SLICES - 1,
                            values.len()
                        ),
                    ));
                }
                if values.iter().collect::<BTreeSet<_>>().len() != values.len() {
                    return Err(invalid(table, "series_values: a value repeats"));
                }
                SliceMethod::Series { values }
            }
            other => {
                return Err(invalid(
                    table,
                    format!("type: expected count, boundary, modulo or series, got {other:?}"),
                ));
            }
        };
        Ok(Slicing { column, method })
    }
}

impl Boundaries {
    fn len(&self) -> usize {
        match self {
            Boundaries::Int(v) => v.len(),
            Boundaries::Str(v) => v.len(),
            Boundaries::Date(v) => v.len(),
        }
    }
}

/// A value as SQL: an integer as digits, anything else as a quoted string (the database reads
/// it as the column's type).
#[derive(Debug, Clone)]
enum Literal {
    Int(i64),
    Text(String),
}

impl Literal {
    fn sql(&self) -> String {
        match self {
            Literal::Int(i) => i.to_string(),
            Literal::Text(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }
}

/// How the rows are cut, with the values rendered for the column's type.
#[derive(Debug, Clone)]
enum Cut {
    /// Before each boundary; `ordered`: the boundaries ascend in the database's own order too
    /// (numbers and dates), so plain ranges split the rows.
    Ranges {
        bounds: Vec<Literal>,
        ordered: bool,
    },
    Modulo(u32),
    Series(Vec<Literal>),
}

fn is_integer(ty: DataType) -> bool {
    matches!(ty, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

fn is_number(ty: DataType) -> bool {
    is_integer(ty)
        || ty.is_decimal()
        || matches!(
            ty,
            DataType::Float32 | DataType::Float64 | DataType::Numeric
        )
}

fn is_dated(ty: DataType) -> bool {
    matches!(
        ty,
        DataType::Date | DataType::Timestamp | DataType::TimestampTz
    )
}

/// A user's value for `column`: digits for an integer column (refused when it is not one).
fn literal_for(table: &str, column: &ColumnDef, value: &str) -> Result<Literal> {
    if is_integer(column.data_type) {
        value.trim().parse::<i64>().map(Literal::Int).map_err(|_| {
            invalid(
                table,
                format!(
                    "{value:?} is not an integer, and column {} is one",
                    column.name
                ),
            )
        })
    } else {
        Ok(Literal::Text(value.to_owned()))
    }
}

/// A value read from the database as a literal; `None` for values slices are not cut at.
fn literal_of(value: &Value) -> Option<Literal> {
    Some(match value {
        Value::Int16(i) => Literal::Int(i64::from(*i)),
        Value::Int32(i) => Literal::Int(i64::from(*i)),
        Value::Int64(i) => Literal::Int(*i),
        Value::Text(s) => Literal::Text(s.clone()),
        Value::Date(d) => Literal::Text(d.format("%Y-%m-%d").to_string()),
        Value::Timestamp(t) => Literal::Text(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        Value::TimestampTz(t) => Literal::Text(t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()),
        _ => return None,
    })
}

/// An identifier quoted for `dialect`.
pub(crate) fn ident(name: &str, dialect: SqlDialect) -> String {
    match dialect {
        SqlDialect::Mariadb => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

impl Cut {
    /// Each slice's condition on column `c` (already quoted).
    fn conditions(&self, c: &str) -> Vec<String> {
        match self {
            Cut::Ranges { bounds, ordered } => {
                let b: Vec<String> = bounds.iter().map(Literal::sql).collect();
                (0..=b.len())
                    .map(|i| {
                        let mut parts = Vec::new();
                        if i == 0 {
                            return format!("{c} < {} OR {c} IS NULL", b[0]);
                        }
                        if *ordered {
                            parts.push(format!("{c} >= {}", b[i - 1]));
                        } else {
                            // Not below any earlier boundary: a split whatever the collation.
                            parts.extend(b[..i].iter().map(|x| format!("NOT ({c} < {x})")));
                        }
                        if i < b.len() {
                            parts.push(format!("{c} < {}", b[i]));
                        }
                        parts.join(" AND ")
                    })
                    .collect()
            }
            Cut::Modulo(n) => (0..*n)
                .map(|i| {
                    let m = format!("(({c} % {n}) + {n}) % {n} = {i}");
                    if i == 0 {
                        format!("{m} OR {c} IS NULL")
                    } else {
                        m
                    }
                })
                .collect(),
            Cut::Series(values) => {
                let v: Vec<String> = values.iter().map(Literal::sql).collect();
                let mut out: Vec<String> = v.iter().map(|x| format!("{c} = {x}")).collect();
                out.push(format!("{c} IS NULL OR NOT ({c} IN ({}))", v.join(", ")));
                out
            }
        }
    }
}

/// One slice of a table: a label, and the filter of each side (each side's own filter and the
/// slice's condition).
#[derive(Debug, Clone)]
pub(crate) struct SliceFilter {
    pub(crate) label: String,
    pub(crate) source: Condition,
    pub(crate) target: Condition,
}

fn combined(
    table: &str,
    own: Option<&Condition>,
    slice: &str,
    dialect: SqlDialect,
) -> Result<Condition> {
    let parts: Vec<&str> = own.map(|c| c.as_str()).into_iter().chain([slice]).collect();
    Condition::all(&parts, dialect)
        .map_err(|e| invalid(table, format!("a slice's condition: {e}")))?
        .ok_or_else(|| invalid(table, "a slice has no condition"))
}

impl HubService {
    /// The slices of `spec` by `slicing`: checked against the source table (the column exists
    /// and suits the method), `count` cut at quantiles read from the source.
    pub(crate) async fn slice_filters(
        &self,
        spec: &TableSpec,
        slicing: &Slicing,
        source: &dyn Connector,
        dialects: (SqlDialect, SqlDialect),
    ) -> Result<Vec<SliceFilter>> {
        let table = spec.name.as_str();
        let column = self.slice_column(spec, slicing, source).await?;
        let cut = match &slicing.method {
            SliceMethod::Modulo { slices } => {
                if !is_integer(column.data_type) {
                    return Err(invalid(
                        table,
                        format!(
                            "modulo needs an integer column; {} is {}",
                            column.name, column.data_type
                        ),
                    ));
                }
                Cut::Modulo(*slices)
            }
            SliceMethod::Boundary { boundaries } => match boundaries {
                Boundaries::Int(v) => {
                    if !is_number(column.data_type) {
                        return Err(invalid(
                            table,
                            format!(
                                "int_boundaries need a number column; {} is {}",
                                column.name, column.data_type
                            ),
                        ));
                    }
                    Cut::Ranges {
                        bounds: v.iter().map(|i| Literal::Int(*i)).collect(),
                        ordered: true,
                    }
                }
                Boundaries::Date(v) => {
                    if !is_dated(column.data_type) {
                        return Err(invalid(
                            table,
                            format!(
                                "date_boundaries need a date or timestamp column; {} is {}",
                                column.name, column.data_type
                            ),
                        ));
                    }
                    Cut::Ranges {
                        bounds: v.iter().map(|d| Literal::Text(d.clone())).collect(),
                        ordered: true,
                    }
                }
                Boundaries::Str(v) => Cut::Ranges {
                    bounds: v
                        .iter()
                        .map(|s| literal_for(table, &column, s))
                        .collect::<Result<_>>()?,
                    ordered: false,
                },
            },
            SliceMethod::Series { values } => Cut::Series(
                values
                    .iter()
                    .map(|s| literal_for(table, &column, s))
                    .collect::<Result<_>>()?,
            ),
            SliceMethod::Count { slices } => {
                let bounds = self
                    .quantiles(spec, &column, *slices, source)
                    .await?
                    .iter()
                    .filter_map(literal_of)
                    .collect::<Vec<_>>();
                if bounds.is_empty() {
                    // Too few distinct values to cut: one slice, every row.
                    Cut::Modulo(1)
                } else {
                    Cut::Ranges {
                        bounds,
                        ordered: is_integer(column.data_type),
                    }
                }
            }
        };
        let (source_dialect, target_dialect) = dialects;
        let source_conditions = cut.conditions(&ident(column.name.as_str(), source_dialect));
        let target_conditions = cut.conditions(&ident(column.name.as_str(), target_dialect));
        let n = source_conditions.len();
        source_conditions
            .iter()
            .zip(&target_conditions)
            .enumerate()
            .map(|(i, (s, t))| {
                Ok(SliceFilter {
                    label: format!("{}/{n} ({s})", i + 1),
                    source: combined(table, spec.source_filter.as_ref(), s, source_dialect)?,
                    target: combined(table, spec.target_filter.as_ref(), t, target_dialect)?,
                })
            })
            .collect()
    }

    /// The source column slices are cut on: the named one, or for `count` the first key column.
    async fn slice_column(
        &self,
        spec: &TableSpec,
        slicing: &Slicing,
        source: &dyn Connector,
    ) -> Result<ColumnDef> {
        let table = spec.name.as_str();
        let introspector = source
            .introspector()
            .ok_or_else(|| invalid(table, "the source location cannot describe tables"))?;
        let schema = introspector
            .table_schema(&spec.source)
            .await
            .map_err(|e| ServiceError::connector(format!("table {table}"), e))?
            .ok_or_else(|| {
                ServiceError::not_found(format!("source table {} does not exist", spec.source))
            })?;
        let name = match &slicing.column {
            Some(c) => c.clone(),
            None => spec
                .key
                .first()
                .or(schema.primary_key.first())
                .cloned()
                .ok_or_else(|| {
                    invalid(table, "col: missing, and the table has no key to slice on")
                })?,
        };
        schema
            .columns
            .iter()
            .find(|c| c.name == name)
            .or_else(|| {
                schema
                    .columns
                    .iter()
                    .find(|c| c.name.as_str().eq_ignore_ascii_case(name.as_str()))
            })
            .cloned()
            .ok_or_else(|| {
                invalid(
                    table,
                    format!("col: source table {} has no column {name}", spec.source),
                )
            })
    }

    /// Up to `slices - 1` distinct values of `column` that cut the source rows (of `spec`'s
    /// filter) into `slices` parts of about equal size, ascending; NULLs are left out.
    pub(crate) async fn quantiles(
        &self,
        spec: &TableSpec,
        column: &ColumnDef,
        slices: u32,
        source: &dyn Connector,
    ) -> Result<Vec<Value>> {
        let table = spec.name.as_str();
        let err = |e| ServiceError::connector(format!("table {table}"), e);
        let reader = source
            .snapshot_reader()
            .ok_or_else(|| invalid(table, "the source location cannot be read"))?;
        if slices < 2 {
            return Ok(Vec::new());
        }
        let total = reader
            .count_rows(&spec.source, spec.source_filter.as_ref())
            .await
            .map_err(err)?;
        let mut at: Vec<u64> = (1..u64::from(slices))
            .map(|k| k * total / u64::from(slices))
            .collect();
        at.dedup();
        let request = ReadRequest {
            table: spec.source.clone(),
            columns: vec![column.clone()],
            key: vec![0],
            ordered: true,
            filter: spec.source_filter.clone(),
            lower_bound: None,
            key_range: None,
            limits: BatchLimits::DEFAULT,
        };
        let mut batches = reader.read(request).await.map_err(err)?.batches;
        let mut out: Vec<Value> = Vec::new();
        let mut row: u64 = 0;
        let mut next = at.iter().peekable();
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(err)?;
            for values in batch.rows() {
                while next.peek().is_some_and(|&&p| p == row) {
                    next.next();
                    let value = &values[0];
                    if !matches!(value, Value::Null) && out.last() != Some(value) {
                        out.push(value.clone());
                    }
                }
                row += 1;
            }
            if next.peek().is_none() {
                break;
            }
        }
        Ok(out)
    }
}

/// What `slicing_suggest` is to base a table's suggestion on, in the order tried.
#[derive(Debug, Clone, Default)]
pub struct SuggestRequest {
    /// Rows a slice should hold about; default [`DEFAULT_ROWS_PER_SLICE`].
    pub rows_per_slice: Option<u64>,
    /// The most slices suggested for a table; default [`DEFAULT_MAX_SUGGESTED`].
    pub max_slices_per_table: Option<u32>,
    /// Repeat the slicing of the table's last refresh.
    pub repeat_last_refresh_slicing: bool,
    /// Repeat the slicing of the table's last compare.
    pub repeat_last_compare_slicing: bool,
    /// Size slices from the rows the table's last refresh read.
    pub suggest_from_last_refresh_rows: bool,
    /// Size slices from the rows the table's last compare read.
    pub suggest_from_last_compare_rows: bool,
    /// Size slices from the rows the database has now (the default when nothing is asked).
    pub suggest_from_db_stats: bool,
    /// Tables; empty: every table of the channel.
    pub tables: Vec<TableName>,
}

/// Rows per slice a suggestion aims at when the request does not say.
pub const DEFAULT_ROWS_PER_SLICE: u64 = 1_000_000;
/// Slices suggested for a table at most when the request does not say.
pub const DEFAULT_MAX_SUGGESTED: u32 = 16;

/// A suggestion for one table.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// What it is based on: `no_data`, `repeat_last_refresh_slicing`, …, `suggest_from_db_stats`.
    pub based_on: &'static str,
    /// The event it was taken from.
    pub ev_id: Option<sluice_model::EventId>,
    /// The rows the table holds, as far as known.
    pub row_estimate: Option<u64>,
    /// The slicing suggested; `None` with a row estimate: the table is small enough whole.
    pub slicing: Option<serde_json::Value>,
}

/// Boundaries for `slices` slices of a column: integers, date-times or strings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SuggestedBoundaries {
    /// For integer columns.
    pub int_boundaries: Vec<String>,
    /// For date and timestamp columns.
    pub date_boundaries: Vec<String>,
    /// For other columns.
    pub str_boundaries: Vec<String>,
}

impl SuggestedBoundaries {
    fn of(values: &[Value]) -> Self {
        let mut out = SuggestedBoundaries::default();
        for v in values {
            match v {
                Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => {
                    if let Some(Literal::Int(i)) = literal_of(v) {
                        out.int_boundaries.push(i.to_string());
                    }
                }
                Value::Date(d) => out
                    .date_boundaries
                    .push(d.format("%Y-%m-%dT00:00:00Z").to_string()),
                Value::Timestamp(t) => out
                    .date_boundaries
                    .push(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
                Value::TimestampTz(t) => out
                    .date_boundaries
                    .push(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
                Value::Text(t) => out.str_boundaries.push(t.clone()),
                _ => {}
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.int_boundaries.is_empty()
            && self.date_boundaries.is_empty()
            && self.str_boundaries.is_empty()
    }
}

/// A checked slicing in HVR's shape.
pub fn slicing_json(slicing: &Slicing) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    if let Some(c) = &slicing.column {
        o.insert("col".into(), serde_json::json!(c));
    }
    match &slicing.method {
        SliceMethod::Count { slices } => {
            o.insert("type".into(), "count".into());
            o.insert("slices".into(), serde_json::json!(slices));
        }
        SliceMethod::Modulo { slices } => {
            o.insert("type".into(), "modulo".into());
            o.insert("slices".into(), serde_json::json!(slices));
        }
        SliceMethod::Boundary { boundaries } => {
            o.insert("type".into(), "boundary".into());
            let (key, values) = match boundaries {
                Boundaries::Int(v) => ("int_boundaries", v.iter().map(|i| i.to_string()).collect()),
                Boundaries::Str(v) => ("str_boundaries", v.clone()),
                Boundaries::Date(v) => (
                    "date_boundaries",
                    v.iter()
                        .map(|d| format!("{}Z", d.replacen(' ', "T", 1)))
                        .collect::<Vec<_>>(),
                ),
            };
            o.insert(key.into(), serde_json::json!(values));
        }
        SliceMethod::Series { values } => {
            o.insert("type".into(), "series".into());
            o.insert("series_values".into(), serde_json::json!(values));
        }
    }
    serde_json::Value::Object(o)
}

impl HubService {
    /// A table of `channel` as it is at `loc`, with the column named `col` (or its first key
    /// column), checked to exist.
    async fn table_at(
        &self,
        hub: &sluice_model::HubName,
        channel: &sluice_model::ChannelName,
        loc: &sluice_model::LocationName,
        table: &TableName,
        col: Option<&ColumnName>,
    ) -> Result<(TableSpec, std::sync::Arc<dyn Connector>, Option<ColumnDef>)> {
        let channel = self.channel(hub, channel).await?;
        if channel.group_of(loc).is_none() {
            return Err(ServiceError::not_found(format!(
                "location {loc} is not a member of channel {}",
                channel.name
            )));
        }
        let location = self.location(hub, loc).await?;
        let t = channel.tables.get(table).ok_or_else(|| {
            ServiceError::not_found(format!("table {table} is not in channel {}", channel.name))
        })?;
        let at = sluice_model::definition::physical_table(
            &channel,
            t,
            loc,
            crate::jobs::default_schema(&location).as_ref(),
        );
        let spec = TableSpec::new(table.clone(), at.clone(), at);
        let connector = self
            .connect(&location)
            .map_err(|e| ServiceError::connector(format!("location {loc}"), e))?;
        let slicing = Slicing {
            column: col.cloned(),
            method: SliceMethod::Count { slices: 1 },
        };
        let column = match self.slice_column(&spec, &slicing, connector.as_ref()).await {
            Ok(c) => Some(c),
            Err(e) if col.is_none() && e.kind() == crate::ServiceErrorKind::Invalid => None,
            Err(e) => return Err(e),
        };
        Ok((spec, connector, column))
    }

    /// Boundaries that cut `table` at `loc` on `col` into `slices` slices of about equal
    /// row counts (empty when the column has too few distinct values).
    pub async fn slicing_boundaries(
        &self,
        hub: &sluice_model::HubName,
        channel: &sluice_model::ChannelName,
        loc: &sluice_model::LocationName,
        table: &TableName,
        col: &ColumnName,
        slices: u32,
    ) -> Result<SuggestedBoundaries> {
        if !(1..=MAX_SLICES).contains(&slices) {
            return Err(ServiceError::invalid(format!(
                "slices: expected 1 to {MAX_SLICES}, got {slices}"
            )));
        }
        let (spec, connector, column) = self.table_at(hub, channel, loc, table, Some(col)).await?;
        let column = column
            .ok_or_else(|| ServiceError::not_found(format!("column {col} does not exist")))?;
        let values = self
            .quantiles(&spec, &column, slices, connector.as_ref())
            .await?;
        Ok(SuggestedBoundaries::of(&values))
    }

    /// A slicing suggestion per table of `channel` at `loc`.
    pub async fn slicing_suggest(
        &self,
        hub: &sluice_model::HubName,
        channel: &sluice_model::ChannelName,
        loc: &sluice_model::LocationName,
        req: &SuggestRequest,
    ) -> Result<std::collections::BTreeMap<TableName, Suggestion>> {
        let ch = self.channel(hub, channel).await?;
        let tables: Vec<TableName> = if req.tables.is_empty() {
            ch.tables.keys().cloned().collect()
        } else {
            req.tables.clone()
        };
        let rows_per_slice = req.rows_per_slice.unwrap_or(DEFAULT_ROWS_PER_SLICE).max(1);
        let max_slices = req
            .max_slices_per_table
            .unwrap_or(DEFAULT_MAX_SUGGESTED)
            .clamp(1, MAX_SLICES);
        let history = |t| {
            let filter = sluice_repo::EventFilter {
                hub: Some(hub.clone()),
                channels: vec![channel.clone()],
                types: vec![t],
                fetch_results: true,
                max_events: Some(100),
                ..Default::default()
            };
            async move { self.events(&filter).await }
        };
        let refreshes = history(sluice_model::EventType::Refresh).await?;
        let compares = history(sluice_model::EventType::Compare).await?;
        let nothing_asked = !(req.repeat_last_refresh_slicing
            || req.repeat_last_compare_slicing
            || req.suggest_from_last_refresh_rows
            || req.suggest_from_last_compare_rows
            || req.suggest_from_db_stats);
        let mut out = std::collections::BTreeMap::new();
        for table in tables {
            let (spec, connector, column) = self.table_at(hub, channel, loc, &table, None).await?;
            let mut suggestion = Suggestion {
                based_on: "no_data",
                ev_id: None,
                row_estimate: None,
                slicing: None,
            };
            let repeats = [
                (
                    req.repeat_last_refresh_slicing,
                    &refreshes,
                    "repeat_last_refresh_slicing",
                ),
                (
                    req.repeat_last_compare_slicing,
                    &compares,
                    "repeat_last_compare_slicing",
                ),
            ];
            let mut rows = None;
            'found: {
                for (asked, events, based_on) in repeats {
                    if !asked {
                        continue;
                    }
                    for e in events.iter() {
                        let slicing = e
                            .body
                            .pointer(&format!("/command/slicing/{table}"))
                            .and_then(|v| serde_json::from_value::<Slicing>(v.clone()).ok());
                        if let Some(slicing) = slicing {
                            suggestion.based_on = based_on;
                            suggestion.ev_id = Some(e.id);
                            suggestion.slicing = Some(slicing_json(&slicing));
                            break 'found;
                        }
                    }
                }
                let counted = [
                    (
                        req.suggest_from_last_refresh_rows,
                        &refreshes,
                        "suggest_from_last_refresh_rows",
                    ),
                    (
                        req.suggest_from_last_compare_rows,
                        &compares,
                        "suggest_from_last_compare_rows",
                    ),
                ];
                for (asked, events, based_on) in counted {
                    if !asked {
                        continue;
                    }
                    let last = events.iter().find_map(|e| {
                        e.results
                            .iter()
                            .find(|r| {
                                r.table.as_ref() == Some(&table)
                                    && r.name == sluice_model::ResultName::SourceRowsUsed
                            })
                            .and_then(|r| r.value.parse::<u64>().ok())
                            .map(|n| (e.id, n))
                    });
                    if let Some((ev, n)) = last {
                        suggestion.based_on = based_on;
                        suggestion.ev_id = Some(ev);
                        rows = Some(n);
                        break 'found;
                    }
                }
                if req.suggest_from_db_stats || nothing_asked {
                    let reader = connector.snapshot_reader().ok_or_else(|| {
                        ServiceError::invalid(format!("location {loc} cannot be read"))
                    })?;
                    let n = reader
                        .count_rows(&spec.source, None)
                        .await
                        .map_err(|e| ServiceError::connector(format!("table {table}"), e))?;
                    suggestion.based_on = "suggest_from_db_stats";
                    rows = Some(n);
                }
            }
            if let Some(n) = rows {
                suggestion.row_estimate = Some(n);
                let slices = n.div_ceil(rows_per_slice).clamp(1, u64::from(max_slices)) as u32;
                if let (true, Some(column)) = (slices > 1, &column) {
                    let values = self
                        .quantiles(&spec, column, slices, connector.as_ref())
                        .await?;
                    let b = SuggestedBoundaries::of(&values);
                    if !b.is_empty() {
                        let mut o = serde_json::json!({"type": "boundary", "col": column.name});
                        for (key, v) in [
                            ("int_boundaries", &b.int_boundaries),
                            ("date_boundaries", &b.date_boundaries),
                            ("str_boundaries", &b.str_boundaries),
                        ] {
                            if !v.is_empty() {
                                o[key] = serde_json::json!(v);
                            }
                        }
                        suggestion.slicing = Some(o);
                    }
                }
            }
            out.insert(table, suggestion);
        }
        Ok(out)
    }
}

/// The slicing of each table of a request, checked on its own.
pub fn parse_slicing(
    requests: &[(String, SlicingRequest)],
) -> Result<std::collections::BTreeMap<TableName, Slicing>> {
    requests
        .iter()
        .map(|(table, r)| {
            let name = TableName::new(table)
                .map_err(|e| ServiceError::invalid(format!("slicing: table {table:?}: {e}")))?;
            Ok((name, Slicing::parse(table, r)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str) -> SlicingRequest {
        SlicingRequest {
            method: method.into(),
            col: Some("id".into()),
            ..Default::default()
        }
    }

    #[test]
    fn bad_requests_are_refused_with_the_field() {
        let refused = |r: SlicingRequest| Slicing::parse("t", &r).unwrap_err().to_string();
        let mut r = req("count");
        r.slices = Some(0);
        assert_eq!(refused(r), "slicing.t: slices: expected 1 to 256, got 0");
        let mut r = req("modulo");
        r.col = None;
        r.slices = Some(2);
        assert_eq!(refused(r), "slicing.t: col: type modulo needs a column");
        let mut r = req("boundary");
        r.int_boundaries = Some(vec!["5".into(), "3".into()]);
        assert_eq!(
            refused(r),
            "slicing.t: int_boundaries: not strictly ascending"
        );
        let mut r = req("boundary");
        r.int_boundaries = Some(vec!["x".into()]);
        assert!(refused(r).contains("not an integer"));
        let mut r = req("boundary");
        r.date_boundaries = Some(vec!["yesterday".into()]);
        assert!(refused(r).contains("not a date-time"));
        let mut r = req("boundary");
        r.int_boundaries = Some(vec!["1".into()]);
        r.str_boundaries = Some(vec!["a".into()]);
        assert!(refused(r).contains("exactly one"));
        let mut r = req("series");
        r.series_values = Some(vec!["a".into(), "a".into()]);
        assert!(refused(r).contains("repeats"));
        let mut r = req("modulo");
        r.slices = Some(2);
        r.selection = Some(vec![1]);
        assert!(refused(r).contains("selection"));
        assert!(refused(req("hash")).contains("type: expected"));
    }

    #[test]
    fn every_row_falls_in_one_slice() {
        let c = "\"id\"";
        let ranges = Cut::Ranges {
            bounds: vec![Literal::Int(10), Literal::Int(20)],
            ordered: true,
        };
        assert_eq!(
            ranges.conditions(c),
            vec![
                "\"id\" < 10 OR \"id\" IS NULL",
                "\"id\" >= 10 AND \"id\" < 20",
                "\"id\" >= 20"
            ]
        );
        let strings = Cut::Ranges {
            bounds: vec![Literal::Text("b".into()), Literal::Text("it's".into())],
            ordered: false,
        };
        assert_eq!(
            strings.conditions(c)[2],
            "NOT (\"id\" < 'b') AND NOT (\"id\" < 'it''s')"
        );
        assert_eq!(
            Cut::Modulo(3).conditions(c)[0],
            "((\"id\" % 3) + 3) % 3 = 0 OR \"id\" IS NULL"
        );
        let series = Cut::Series(vec![Literal::Int(1), Literal::Int(2)]).conditions(c);
        assert_eq!(series.len(), 3);
        assert_eq!(series[2], "\"id\" IS NULL OR NOT (\"id\" IN (1, 2))");
        assert_eq!(ident("a`b", SqlDialect::Mariadb), "`a``b`");
    }
}
