//! Pre-flight: turning a channel table ([`TableSpec`]) into concrete read and write requests against
//! the two locations as they are now. Every table is resolved before any runs, so a missing source
//! table, an unknown column or a type the target cannot take stops the whole job while nothing has
//! changed.

use std::collections::BTreeSet;

use serde::Serialize;
use sluice_connector::{
    BatchWriter, Connector, ConnectorError, ErrorKind, Introspector, LowerBound, PlannedStatement,
    ReadRequest, SnapshotReader, WriteRequest, WriteStrategy,
};
use sluice_model::definition::ChannelColumn;
use sluice_model::{
    BatchLimits, ColumnDef, ColumnName, Condition, DataType, TableName, TableRef, TableSchema,
    Value,
};

use crate::EngineError;
use crate::map::{RowMapping, Source};

/// One channel table as the service resolved it from the definitions.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The channel's name for the table.
    pub name: TableName,
    /// Where it lives at the source.
    pub source: TableRef,
    /// Where it lives at the target.
    pub target: TableRef,
    /// Declared columns, or `None` to take every column of the source table.
    pub declared: Option<Vec<ChannelColumn>>,
    /// Columns absent everywhere (`ColumnProperties Absent` on both locations or `*`).
    pub excluded: BTreeSet<ColumnName>,
    /// Columns absent at the source: the target receives NULL.
    pub source_absent: BTreeSet<ColumnName>,
    /// Columns absent at the target: not written.
    pub target_absent: BTreeSet<ColumnName>,
    /// Key columns from `ColumnProperties Key`; empty to use declared keys or the primary key.
    pub key: Vec<ColumnName>,
    /// Rows to read (`Restrict RefreshCondition`/`CompareCondition` at the source).
    pub source_filter: Option<Condition>,
    /// Rows to replace or compare at the target.
    pub target_filter: Option<Condition>,
    /// How the table is refreshed.
    pub mode: RefreshMode,
    /// The full-replace strategy of this table, overriding [`RefreshOptions::strategy`].
    pub strategy: Option<WriteStrategy>,
}

/// How a table is refreshed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum RefreshMode {
    /// Replace the target's contents by the source's (by a [`WriteStrategy`]).
    #[default]
    FullReplace,
    /// Copy the source rows beyond the target's greatest `column` value and upsert them. For date
    /// and time columns the bound moves back `date_buffer_days` and rows inside it are upserted too.
    Incremental {
        /// An identity, date or date-time column.
        column: ColumnName,
        /// Days of overlap for date and date-time columns.
        date_buffer_days: u32,
    },
    /// `full_replace` when the target is missing or empty, otherwise `incremental`.
    SmartSync {
        /// An identity, date or date-time column.
        column: ColumnName,
        /// Days of overlap for date and date-time columns.
        date_buffer_days: u32,
    },
    /// Compare by key and apply only the needed inserts, updates and deletes.
    Rowwise {
        /// Which changes are applied.
        apply: RowwiseApply,
    },
}

impl RefreshMode {
    /// The spelling in definitions, the CLI and results.
    pub fn name(&self) -> &'static str {
        match self {
            RefreshMode::FullReplace => "full_replace",
            RefreshMode::Incremental { .. } => "incremental",
            RefreshMode::SmartSync { .. } => "smart_sync",
            RefreshMode::Rowwise { .. } => "rowwise",
        }
    }
}

pub use sluice_model::refresh::RowwiseApply;

impl TableSpec {
    /// A spec copying every column of `source` to `target` with no filters.
    pub fn new(name: TableName, source: TableRef, target: TableRef) -> Self {
        TableSpec {
            name,
            source,
            target,
            declared: None,
            excluded: BTreeSet::new(),
            source_absent: BTreeSet::new(),
            target_absent: BTreeSet::new(),
            key: Vec::new(),
            source_filter: None,
            target_filter: None,
            mode: RefreshMode::FullReplace,
            strategy: None,
        }
    }
}

/// The columns and key of a table as both sides will see them.
#[derive(Debug, Clone)]
struct Resolved {
    /// Channel columns with their source types.
    columns: Vec<ColumnDef>,
    /// Indexes of key columns in `columns`.
    key: Vec<usize>,
    source_schema: TableSchema,
    target_schema: Option<TableSchema>,
}

fn introspector<'a>(
    c: &'a dyn Connector,
    side: &str,
) -> Result<&'a dyn Introspector, ConnectorError> {
    c.introspector().ok_or_else(|| {
        ConnectorError::unsupported(format!("the {side} location cannot describe tables"))
    })
}

pub(crate) fn reader(c: &dyn Connector) -> Result<&dyn SnapshotReader, ConnectorError> {
    c.snapshot_reader().ok_or_else(|| {
        ConnectorError::unsupported(format!("{} locations cannot be read", c.class()))
    })
}

pub(crate) fn writer(c: &dyn Connector) -> Result<&dyn BatchWriter, ConnectorError> {
    c.batch_writer().ok_or_else(|| {
        ConnectorError::unsupported(format!("{} locations cannot be written", c.class()))
    })
}

/// Finds a column by name: exactly, or else ignoring ASCII case when that is unambiguous.
fn find_column<'a>(schema: &'a TableSchema, name: &ColumnName) -> Option<&'a ColumnDef> {
    schema.column(name).or_else(|| {
        let mut matches = schema
            .columns
            .iter()
            .filter(|c| c.name.as_str().eq_ignore_ascii_case(name.as_str()));
        match (matches.next(), matches.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    })
}

async fn resolve(
    spec: &TableSpec,
    source: &dyn Connector,
    target: &dyn Connector,
) -> Result<Resolved, EngineError> {
    let err = |error: ConnectorError| EngineError::table(&spec.name, error);
    let source_schema = introspector(source, "source")
        .map_err(err)?
        .table_schema(&spec.source)
        .await
        .map_err(err)?
        .ok_or_else(|| {
            err(ConnectorError::not_found(format!(
                "source table {} does not exist",
                spec.source
            )))
        })?;
    let mut columns = Vec::new();
    let mut declared_keys: Vec<(u32, usize)> = Vec::new();
    match &spec.declared {
        Some(declared) => {
            for col in declared {
                if spec.excluded.contains(&col.name) {
                    continue;
                }
                if !spec.source_absent.contains(&col.name)
                    && find_column(&source_schema, &col.name).is_none()
                {
                    return Err(err(ConnectorError::schema(format!(
                        "source table {} has no column {}",
                        spec.source, col.name
                    ))));
                }
                if col.key > 0 {
                    declared_keys.push((col.key, columns.len()));
                }
                columns.push(ColumnDef::new(
                    col.name.clone(),
                    col.data_type,
                    col.nullable,
                ));
            }
        }
        None => {
            for col in &source_schema.columns {
                if !spec.excluded.contains(&col.name) {
                    columns.push(col.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        return Err(err(ConnectorError::schema(
            "no columns are left to replicate",
        )));
    }
    let position = |name: &ColumnName| {
        columns
            .iter()
            .position(|c| &c.name == name || c.name.as_str().eq_ignore_ascii_case(name.as_str()))
    };
    let key_names: Vec<ColumnName> = if !spec.key.is_empty() {
        spec.key.clone()
    } else if !declared_keys.is_empty() {
        declared_keys.sort();
        declared_keys
            .iter()
            .map(|&(_, i)| columns[i].name.clone())
            .collect()
    } else {
        source_schema.primary_key.clone()
    };
    let mut key = Vec::with_capacity(key_names.len());
    for name in &key_names {
        key.push(position(name).ok_or_else(|| {
            err(ConnectorError::schema(format!(
                "key column {name} is not among the replicated columns"
            )))
        })?);
    }
    let target_schema = introspector(target, "target")
        .map_err(err)?
        .table_schema(&spec.target)
        .await
        .map_err(err)?;
    Ok(Resolved {
        columns,
        key,
        source_schema,
        target_schema,
    })
}

/// The source columns actually read (channel columns not absent at the source), with their
/// names as the source spells them.
fn read_columns(spec: &TableSpec, resolved: &Resolved) -> Vec<(usize, ColumnDef)> {
    resolved
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !spec.source_absent.contains(&c.name))
        .map(|(i, c)| {
            let mut c = c.clone();
            if let Some(found) = find_column(&resolved.source_schema, &c.name) {
                c.name = found.name.clone();
                c.native_type = found.native_type.clone();
            }
            (i, c)
        })
        .collect()
}

/// One table of a refresh, ready to run.
#[derive(Debug, Clone)]
pub struct RefreshTablePlan {
    /// The channel's name for the table.
    pub name: TableName,
    /// What to read.
    pub read: ReadRequest,
    /// What to write.
    pub write: WriteRequest,
    /// How read rows become written rows.
    pub mapping: RowMapping,
    /// How the rows are applied.
    pub apply: PlannedApply,
    /// What the table's refresh does, in words (e.g. `incremental: id > 1200`).
    pub description: String,
    /// The statements the source runs.
    pub source_statements: Vec<PlannedStatement>,
    /// The statements the target runs.
    pub target_statements: Vec<PlannedStatement>,
    /// Reads of parts of the source table that run in parallel into the one write; `None`: one
    /// read. Only for plans that load ([`PlannedApply::Load`]).
    pub slices: Option<Slices>,
}

/// A table read in slices: each slice a read of the rows matching its filter (which replaces
/// [`ReadRequest::filter`] and must include it), all written into the table's one atomic write.
/// The filters must split the rows: every row matches exactly one. When the source can share a
/// snapshot ([`sluice_connector::SnapshotReader::share_snapshot`]) every slice reads the same
/// one, so the whole table is one consistent copy.
#[derive(Debug, Clone)]
pub struct Slices {
    /// Per slice, a label for results and logs and its filter.
    pub filters: Vec<(String, sluice_model::Condition)>,
    /// Slices read at the same time (at least 1).
    pub parallel: usize,
}

/// How a refresh applies what it reads.
#[derive(Debug, Clone)]
pub enum PlannedApply {
    /// Every row read is written.
    Load,
    /// The target is read too, ordered by key, and only differences are written.
    Rowwise {
        /// The target read, with the written columns and key (boxed: it is large, and most plans
        /// load).
        target_read: Box<ReadRequest>,
        /// Which changes are applied.
        apply: RowwiseApply,
    },
}

/// Options of a refresh.
#[derive(Debug, Clone, Copy)]
pub struct RefreshOptions {
    /// How the target's contents are replaced.
    pub strategy: WriteStrategy,
    /// Rows per batch.
    pub limits: BatchLimits,
    /// Count source rows first, to report progress as a fraction.
    pub count_first: bool,
    /// Tables refreshed at the same time (at least 1).
    pub parallel: usize,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions {
            strategy: WriteStrategy::TruncateLoad,
            limits: BatchLimits::DEFAULT,
            count_first: false,
            parallel: 1,
        }
    }
}

/// Resolves one table of a refresh.
pub async fn plan_refresh_table(
    spec: &TableSpec,
    source: &dyn Connector,
    target: &dyn Connector,
    options: &RefreshOptions,
) -> Result<RefreshTablePlan, EngineError> {
    let err = |error: ConnectorError| EngineError::table(&spec.name, error);
    let strategy = spec.strategy.unwrap_or(options.strategy);
    if strategy == WriteStrategy::StagingSwap && !target.capabilities().staging_swap {
        return Err(err(ConnectorError::unsupported(format!(
            "{} targets cannot do staging_swap",
            target.class()
        ))));
    }
    if spec.mode != RefreshMode::FullReplace && !target.capabilities().upsert {
        return Err(err(ConnectorError::unsupported(format!(
            "{} targets cannot do {} refreshes (they need upserts)",
            target.class(),
            spec.mode.name()
        ))));
    }
    let resolved = resolve(spec, source, target).await?;
    let read_cols = read_columns(spec, &resolved);
    let read = ReadRequest {
        table: spec.source.clone(),
        columns: read_cols.iter().map(|(_, c)| c.clone()).collect(),
        key: resolved
            .key
            .iter()
            .filter_map(|k| read_cols.iter().position(|(i, _)| i == k))
            .collect(),
        ordered: false,
        filter: spec.source_filter.clone(),
        lower_bound: None,
        key_range: None,
        limits: options.limits,
    };
    // Written columns: channel columns not absent at the target, typed as the target has them.
    let mut write_columns = Vec::new();
    let mut sources = Vec::new();
    for (i, column) in resolved.columns.iter().enumerate() {
        if spec.target_absent.contains(&column.name) {
            continue;
        }
        let mut written = match &resolved.target_schema {
            Some(schema) => find_column(schema, &column.name).cloned().ok_or_else(|| {
                err(ConnectorError::schema(format!(
                    "target table {} has no column {}",
                    spec.target, column.name
                )))
            })?,
            None => ColumnDef {
                native_type: None,
                ..column.clone()
            },
        };
        if spec.source_absent.contains(&column.name) {
            written.nullable = true;
        }
        write_columns.push(written);
        sources.push(match read_cols.iter().position(|(j, _)| *j == i) {
            Some(r) => Source::Column(r),
            None => Source::Null,
        });
    }
    let write_key: Vec<usize> = resolved
        .key
        .iter()
        .filter_map(|&k| {
            let name = &resolved.columns[k].name;
            write_columns
                .iter()
                .position(|c| c.name.as_str().eq_ignore_ascii_case(name.as_str()))
        })
        .collect();
    let source_types: Vec<DataType> = read.columns.iter().map(|c| c.data_type).collect();
    let target_types: Vec<DataType> = write_columns.iter().map(|c| c.data_type).collect();
    let mapping = RowMapping::new(sources, &source_types, &target_types);
    let mut read = read;
    let mut write = WriteRequest {
        table: spec.target.clone(),
        columns: write_columns,
        key: write_key,
        strategy,
        create_if_missing: true,
        filter: spec.target_filter.clone(),
    };
    let mut apply = PlannedApply::Load;
    let mut description = format!("full_replace ({})", strategy.as_str());
    let target_exists = resolved.target_schema.is_some();
    let incremental = match &spec.mode {
        RefreshMode::FullReplace => None,
        RefreshMode::Incremental {
            column,
            date_buffer_days,
        } => Some((column, *date_buffer_days)),
        RefreshMode::SmartSync {
            column,
            date_buffer_days,
        } => {
            let empty = !target_exists
                || reader(target)
                    .map_err(err)?
                    .count_rows(&spec.target, spec.target_filter.as_ref())
                    .await
                    .map_err(err)?
                    == 0;
            if empty {
                description = format!(
                    "smart_sync: the target is empty, full_replace ({})",
                    strategy.as_str()
                );
                None
            } else {
                Some((column, *date_buffer_days))
            }
        }
        RefreshMode::Rowwise { apply: changes } => {
            if write.key.is_empty() || write.key.len() != resolved.key.len() {
                return Err(err(ConnectorError::schema(
                    "a rowwise refresh needs a key: the table has no primary key and no key columns are declared",
                )));
            }
            if target_exists {
                write.strategy = WriteStrategy::Upsert;
                read.ordered = true;
                let target_read = ReadRequest {
                    table: spec.target.clone(),
                    columns: write.columns.clone(),
                    key: write.key.clone(),
                    ordered: true,
                    filter: spec.target_filter.clone(),
                    lower_bound: None,
                    key_range: None,
                    limits: options.limits,
                };
                description = format!(
                    "rowwise ({})",
                    match changes {
                        RowwiseApply::All => "inserts, updates and deletes",
                        RowwiseApply::NoDeletes => "inserts and updates",
                        RowwiseApply::OnlyDeletes => "deletes",
                    }
                );
                apply = PlannedApply::Rowwise {
                    target_read: Box::new(target_read),
                    apply: *changes,
                };
            } else {
                description = format!(
                    "rowwise: the target does not exist, full_replace ({})",
                    strategy.as_str()
                );
            }
            None
        }
    };
    if let Some((column, buffer_days)) = incremental {
        if write.key.is_empty() {
            return Err(err(ConnectorError::schema(
                "an incremental refresh upserts by key: the table has no primary key and no key columns are declared",
            )));
        }
        let bound = incremental_bound(
            spec,
            target,
            target_exists,
            &read,
            &write,
            column,
            buffer_days,
        )
        .await
        .map_err(err)?;
        description = match &bound {
            Some(b) => format!(
                "incremental: {} {} {}",
                read.columns[b.column].name,
                if b.inclusive { ">=" } else { ">" },
                b.value
            ),
            None => format!("incremental: the target holds no {column} yet, every row"),
        };
        read.lower_bound = bound;
        write.strategy = WriteStrategy::Upsert;
    }
    let source_statements = reader(source).map_err(err)?.plan_read(&read).map_err(err)?;
    let mut target_statements = Vec::new();
    if let PlannedApply::Rowwise { target_read, .. } = &apply {
        target_statements.extend(
            reader(target)
                .map_err(err)?
                .plan_read(target_read)
                .map_err(err)?,
        );
    }
    target_statements.extend(
        writer(target)
            .map_err(err)?
            .plan_write(&write)
            .await
            .map_err(err)?,
    );
    Ok(RefreshTablePlan {
        name: spec.name.clone(),
        read,
        write,
        mapping,
        apply,
        description,
        source_statements,
        target_statements,
        slices: None,
    })
}

/// Whether values of `ty` are dates or times, whose incremental bound moves back by buffer days.
fn is_dated(ty: DataType) -> bool {
    matches!(
        ty,
        DataType::Date | DataType::Timestamp | DataType::TimestampTz
    )
}

/// The read bound of an incremental refresh: the target's greatest value of `column` (minus the
/// buffer for dates), or `None` when the target holds none.
async fn incremental_bound(
    spec: &TableSpec,
    target: &dyn Connector,
    target_exists: bool,
    read: &ReadRequest,
    write: &WriteRequest,
    column: &ColumnName,
    buffer_days: u32,
) -> Result<Option<LowerBound>, ConnectorError> {
    let same = |c: &ColumnDef| c.name.as_str().eq_ignore_ascii_case(column.as_str());
    let read_index = read.columns.iter().position(same).ok_or_else(|| {
        ConnectorError::not_found(format!(
            "incremental column {column} is not among the columns read from the source"
        ))
    })?;
    let source_type = read.columns[read_index].data_type;
    if !(matches!(
        source_type,
        DataType::Int16 | DataType::Int32 | DataType::Int64
    ) || is_dated(source_type))
    {
        return Err(ConnectorError::schema(format!(
            "incremental column {column} is a {source_type}; it must be an integer identity, a date or a date-time"
        )));
    }
    let Some(target_column) = write.columns.iter().find(|c| same(c)) else {
        return Err(ConnectorError::schema(format!(
            "incremental column {column} is not written to the target"
        )));
    };
    let max = if target_exists {
        reader(target)?
            .max_value(&spec.target, target_column, spec.target_filter.as_ref())
            .await?
    } else {
        None
    };
    let Some(max) = max else { return Ok(None) };
    let value = crate::map::convert(max, source_type).map_err(|reason| {
        ConnectorError::data(format!(
            "the target's greatest {column} cannot be compared with the source: {reason}"
        ))
    })?;
    if !is_dated(source_type) {
        return Ok(Some(LowerBound {
            column: read_index,
            value,
            inclusive: false,
        }));
    }
    let days = chrono::Duration::days(i64::from(buffer_days));
    let overflow = || {
        ConnectorError::data(format!(
            "{column}: the date buffer reaches before the calendar"
        ))
    };
    let value = match value {
        Value::Date(d) => Value::Date(d.checked_sub_signed(days).ok_or_else(overflow)?),
        Value::Timestamp(t) => Value::Timestamp(t.checked_sub_signed(days).ok_or_else(overflow)?),
        Value::TimestampTz(t) => {
            Value::TimestampTz(t.checked_sub_signed(days).ok_or_else(overflow)?)
        }
        other => other,
    };
    // Rows stamped with the greatest value itself may have been added after the last refresh:
    // take them again; the upsert keeps them single.
    Ok(Some(LowerBound {
        column: read_index,
        value,
        inclusive: true,
    }))
}

/// Resolves every table of a refresh; the first failure is returned and nothing runs.
pub async fn plan_refresh(
    specs: &[TableSpec],
    source: &dyn Connector,
    target: &dyn Connector,
    options: &RefreshOptions,
) -> Result<Vec<RefreshTablePlan>, EngineError> {
    let mut plans = Vec::with_capacity(specs.len());
    for spec in specs {
        plans.push(plan_refresh_table(spec, source, target, options).await?);
    }
    Ok(plans)
}

/// How a compare looks at the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Row counts and an order-independent checksum per table.
    Bulk,
    /// Every row, matched by key.
    Rowwise,
}

/// One table of a compare, ready to run.
#[derive(Debug, Clone)]
pub struct CompareTablePlan {
    /// The channel's name for the table.
    pub name: TableName,
    /// What to read at the source.
    pub source_read: ReadRequest,
    /// What to read at the target.
    pub target_read: ReadRequest,
    /// Per compared column, the source type target values are converted to before comparing, when
    /// the two sides keep the column in different types (e.g. a PostgreSQL `timestamptz` and a
    /// MariaDB `DATETIME(6)` holding UTC). A value that does not convert exactly compares unequal.
    pub target_as_source: Vec<Option<DataType>>,
    /// The statements the source runs.
    pub source_statements: Vec<PlannedStatement>,
    /// The statements the target runs.
    pub target_statements: Vec<PlannedStatement>,
    /// Whether `source_read.key` is the table's whole key (no key column is left out of the
    /// compare), so that keys are unique on both sides.
    pub whole_key: bool,
}

/// Resolves one table of a compare: the channel columns present on both sides.
pub async fn plan_compare_table(
    spec: &TableSpec,
    source: &dyn Connector,
    target: &dyn Connector,
    granularity: Granularity,
    limits: BatchLimits,
) -> Result<CompareTablePlan, EngineError> {
    let err = |error: ConnectorError| EngineError::table(&spec.name, error);
    let resolved = resolve(spec, source, target).await?;
    let target_schema = resolved.target_schema.clone().ok_or_else(|| {
        err(ConnectorError::not_found(format!(
            "target table {} does not exist",
            spec.target
        )))
    })?;
    let mut source_columns = Vec::new();
    let mut target_columns = Vec::new();
    let mut kept = Vec::new();
    for (i, column) in resolved.columns.iter().enumerate() {
        if spec.source_absent.contains(&column.name) || spec.target_absent.contains(&column.name) {
            continue;
        }
        let on_target = find_column(&target_schema, &column.name).ok_or_else(|| {
            err(ConnectorError::schema(format!(
                "target table {} has no column {}",
                spec.target, column.name
            )))
        })?;
        let mut on_source = column.clone();
        if let Some(found) = find_column(&resolved.source_schema, &column.name) {
            on_source.name = found.name.clone();
            on_source.native_type = found.native_type.clone();
        }
        source_columns.push(on_source);
        target_columns.push(on_target.clone());
        kept.push(i);
    }
    let key: Vec<usize> = resolved
        .key
        .iter()
        .filter_map(|k| kept.iter().position(|i| i == k))
        .collect();
    if granularity == Granularity::Rowwise && (key.is_empty() || key.len() != resolved.key.len()) {
        return Err(err(ConnectorError::new(
            ErrorKind::Schema,
            "a row-wise compare needs a key: the table has no primary key and no key columns are declared",
        )));
    }
    let whole_key = !key.is_empty() && key.len() == resolved.key.len();
    let ordered = granularity == Granularity::Rowwise;
    let source_read = ReadRequest {
        table: spec.source.clone(),
        columns: source_columns,
        key: key.clone(),
        ordered,
        filter: spec.source_filter.clone(),
        lower_bound: None,
        key_range: None,
        limits,
    };
    let target_read = ReadRequest {
        table: spec.target.clone(),
        columns: target_columns,
        key,
        ordered,
        filter: spec.target_filter.clone(),
        lower_bound: None,
        key_range: None,
        limits,
    };
    let target_as_source = source_read
        .columns
        .iter()
        .zip(&target_read.columns)
        .map(|(s, t)| (s.data_type != t.data_type).then_some(s.data_type))
        .collect();
    Ok(CompareTablePlan {
        name: spec.name.clone(),
        whole_key,
        target_as_source,
        source_statements: reader(source)
            .map_err(err)?
            .plan_read(&source_read)
            .map_err(err)?,
        target_statements: reader(target)
            .map_err(err)?
            .plan_read(&target_read)
            .map_err(err)?,
        source_read,
        target_read,
    })
}

/// Resolves every table of a compare; the first failure is returned and nothing runs.
pub async fn plan_compare(
    specs: &[TableSpec],
    source: &dyn Connector,
    target: &dyn Connector,
    granularity: Granularity,
    limits: BatchLimits,
) -> Result<Vec<CompareTablePlan>, EngineError> {
    let mut plans = Vec::with_capacity(specs.len());
    for spec in specs {
        plans.push(plan_compare_table(spec, source, target, granularity, limits).await?);
    }
    Ok(plans)
}
