//! Looking into a location's database (schemas, tables, columns), how a channel's tables sit at
//! its locations (the query interface), and table adapt: comparing a channel's table definitions
//! with what a database holds and applying the differences to the definitions.
//!
//! Nothing here writes to a location's database; only `adapt_apply` changes anything (the hub's
//! definitions, as one change with its `Table_Definition_Adapt` event).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value as Json;
use sluice_connector::{Connector, Introspector, TestReport};
use sluice_model::definition::{
    ActionKind, ActionType, Channel, ChannelColumn, ChannelTable, Location, physical_table,
};
use sluice_model::{
    BaseName, ChannelName, ColumnName, DataType, EventId, EventType, HubName, LocGroupName,
    LocationName, SchemaName, TableName, TableRef, TableSchema,
};

use crate::{HubService, Result, ServiceError, definition, registry};

/// What testing a stored location found.
#[derive(Debug, Clone)]
pub struct LocationTest {
    /// What the connector discovered (`Class_Version`, `Class_Flavor`, …).
    pub report: TestReport,
    /// Stored properties of the location that sluice does not act on, sorted.
    pub not_used: Vec<String>,
}

/// The schemas a location's credentials may use.
#[derive(Debug, Clone)]
pub struct SchemaList {
    /// Sorted by name.
    pub schemas: Vec<SchemaName>,
    /// Where tables without a schema live.
    pub default_schema: Option<SchemaName>,
}

/// Where a channel table sits at one location.
#[derive(Debug, Clone)]
pub struct TablePlace {
    /// The channel table.
    pub table: TableName,
    /// Its schema there, when it can be named without connecting.
    pub schema: Option<SchemaName>,
    /// Whether a `TableProperties` action sets the schema (else it is the location's default).
    pub schema_configured: bool,
    /// Its name in the database.
    pub base_name: BaseName,
    /// Whether a `Capture` action covers the table at the location.
    pub capture: bool,
    /// Whether an `Integrate` action covers the table at the location.
    pub integrate: bool,
}

/// How a channel's tables sit at one of its locations.
#[derive(Debug, Clone)]
pub struct LocationPlaces {
    /// The location.
    pub loc: LocationName,
    /// Whether a `Capture` action covers the location.
    pub capture: bool,
    /// Whether an `Integrate` action covers the location.
    pub integrate: bool,
    /// The channel's tables there.
    pub tables: Vec<TablePlace>,
}

/// A channel table at a location with its columns: as the channel declares them, else as the
/// database has them.
#[derive(Debug, Clone)]
pub struct TableAtLocation {
    /// Where it sits.
    pub place: TablePlace,
    /// Columns in order.
    pub columns: Vec<ChannelColumn>,
    /// Whether the columns come from the database (the channel declares none).
    pub from_db: bool,
}

/// A difference between a channel table's definition and the database's table (HVR's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Diff {
    /// A column of the definition is not in the database.
    ColDropped,
    /// A column of the database is not in the definition.
    ColAdded,
    /// A column's type changed within its family (e.g. `text` to `varchar(10)`).
    DataTypeChanged,
    /// A column's type changed family (e.g. number to text).
    DataTypeFamilyChanged,
    /// A column's type holds less than before.
    ColRangeSmaller,
    /// A column's type holds more than before.
    ColRangeBigger,
    /// The database's key has columns the definition's has not (or the definition has none).
    UniqueIndexAdded,
    /// The definition's key has columns the database's has not (or the database has none).
    UniqueIndexRemoved,
    /// A column lost `NULL`s (became `NOT NULL`).
    NullsRemoved,
    /// A column may hold `NULL` now.
    NullsAdded,
}

impl Diff {
    /// HVR's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Diff::ColDropped => "col_dropped",
            Diff::ColAdded => "col_added",
            Diff::DataTypeChanged => "data_type_changed",
            Diff::DataTypeFamilyChanged => "data_type_family_changed",
            Diff::ColRangeSmaller => "col_range_smaller",
            Diff::ColRangeBigger => "col_range_bigger",
            Diff::UniqueIndexAdded => "unique_index_added",
            Diff::UniqueIndexRemoved => "unique_index_removed",
            Diff::NullsRemoved => "nulls_removed",
            Diff::NullsAdded => "nulls_added",
        }
    }

    /// The diff called `name` (HVR's names; those sluice never reports — distribution keys,
    /// encodings — answer `None`).
    pub fn parse(name: &str) -> Option<Diff> {
        ALL_DIFFS.iter().copied().find(|d| d.as_str() == name)
    }

    /// Whether the diff is about the table rather than one column.
    pub fn is_table_level(self) -> bool {
        matches!(self, Diff::UniqueIndexAdded | Diff::UniqueIndexRemoved)
    }
}

const ALL_DIFFS: &[Diff] = &[
    Diff::ColDropped,
    Diff::ColAdded,
    Diff::DataTypeChanged,
    Diff::DataTypeFamilyChanged,
    Diff::ColRangeSmaller,
    Diff::ColRangeBigger,
    Diff::UniqueIndexAdded,
    Diff::UniqueIndexRemoved,
    Diff::NullsRemoved,
    Diff::NullsAdded,
];

/// One column compared: the definition's, the database's and how they differ.
#[derive(Debug, Clone)]
pub struct ColumnCheck {
    /// Column name.
    pub name: ColumnName,
    /// As the channel defines it.
    pub core: Option<ChannelColumn>,
    /// As the database has it, with its native type.
    pub from_db: Option<(ChannelColumn, Option<String>)>,
    /// Column-level differences.
    pub diff: Vec<Diff>,
}

/// One channel table compared with the database.
#[derive(Debug, Clone)]
pub struct TableCheck {
    /// Where it sits.
    pub place: TablePlace,
    /// Whether the database has it.
    pub exists_in_db: bool,
    /// Every difference, table and column level, sorted and without repeats.
    pub diff: Vec<Diff>,
    /// Per column, definition order then new database columns.
    pub columns: Vec<ColumnCheck>,
    /// Whether the mapspec names it (when one was given).
    pub matched_by_mapspec: Option<bool>,
    /// Its row count, when asked for.
    pub num_rows: Option<u64>,
    /// The database's table, when it exists.
    db: Option<TableSchema>,
}

/// A database table the channel does not have yet.
#[derive(Debug, Clone)]
pub struct NewTable {
    /// Its schema.
    pub schema: SchemaName,
    /// Its name in the database.
    pub base_name: BaseName,
    /// The channel table name it gets.
    pub table: TableName,
    /// Its row count, when asked for.
    pub num_rows: Option<u64>,
    db: TableSchema,
}

/// One entry of a mapspec: tables by exact name, or by pattern.
#[derive(Debug, Clone)]
pub enum MapspecEntry {
    /// One table.
    Name {
        /// Its schema (else the location's default).
        schema: Option<SchemaName>,
        /// Its name in the database.
        base_name: String,
    },
    /// Tables whose names match `pattern` (`*`, `?`, alternatives split by `|`, without case)
    /// and none of `not_pattern`.
    Pattern {
        /// Their schema (else the location's default).
        schema: Option<SchemaName>,
        /// What names must match.
        pattern: String,
        /// What names must not match.
        not_pattern: Vec<String>,
    },
}

/// What an adapt check or apply looks at.
#[derive(Debug, Clone, Default)]
pub struct AdaptRequest {
    /// Compare the channel's tables (only these, when given).
    pub tables_in_channel: Option<Vec<TableName>>,
    /// Differences to leave alone.
    pub ignore_diff: BTreeSet<Diff>,
    /// Look for database tables the channel does not have.
    pub add_tables: bool,
    /// Which database tables count (all of the default schema when `None`).
    pub mapspec: Option<Vec<MapspecEntry>>,
    /// Count rows of the tables looked at.
    pub db_stats: bool,
    /// Group given to added tables.
    pub add_table_group: Option<LocGroupName>,
    /// Group added tables by their schema (uppercased) instead.
    pub group_from_schema: bool,
    /// Which channel tables to delete on apply.
    pub delete_tables: DeleteTables,
}

/// Which channel tables an adapt apply deletes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeleteTables {
    /// None.
    #[default]
    None,
    /// Those the database does not have.
    NotInDb,
    /// Those the database does not have or the mapspec does not name.
    NotInMapspecOrNotInDb,
}

/// What an adapt check found.
#[derive(Debug, Clone, Default)]
pub struct AdaptCheck {
    /// The channel's tables compared, when asked for.
    pub tables_in_channel: Option<Vec<TableCheck>>,
    /// Database tables the channel does not have, when asked for.
    pub add_tables: Option<Vec<NewTable>>,
}

/// What an adapt apply changed.
#[derive(Debug, Clone, Default)]
pub struct AdaptApplied {
    /// The check it acted on.
    pub check: AdaptCheck,
    /// Channel tables whose columns were replaced by the database's.
    pub changed: BTreeSet<TableName>,
    /// Channel tables deleted.
    pub deleted: BTreeSet<TableName>,
    /// The definitions change event, when anything changed.
    pub event: Option<EventId>,
}

impl HubService {
    /// Tests a stored location and names its stored properties sluice does not act on.
    pub async fn test_location_props(
        &self,
        hub: &HubName,
        name: &LocationName,
    ) -> Result<LocationTest> {
        let location = self.location(hub, name).await?;
        let report = self.test_location(hub, name).await?;
        Ok(LocationTest {
            report,
            not_used: registry::unused_props(&location),
        })
    }

    /// The connection to a location given as a document (`{"class"?, "props": {…}}`), checked
    /// against the location policy like a location the API defines; nothing is stored. With
    /// `props_from`, the document's props are laid over that stored location's (a `null` prop
    /// removes it), and its stored password is not sent anywhere the stored location does not
    /// point to unless the document gives one.
    pub(crate) async fn connect_document(
        &self,
        hub: &HubName,
        doc: &Json,
        props_from: Option<&LocationName>,
    ) -> Result<(Location, Arc<dyn Connector>)> {
        let stored = match props_from {
            Some(name) => Some(self.location(hub, name).await?),
            None => None,
        };
        let mut doc = doc.clone();
        if let Some(stored) = &stored {
            let mut merged = definition::location_document(stored);
            if let (Some(props), Some(over)) = (
                merged.get_mut("props").and_then(Json::as_object_mut),
                doc.get("props").and_then(Json::as_object),
            ) {
                for (k, v) in over {
                    if v.is_null() {
                        props.remove(k);
                    } else {
                        props.insert(k.clone(), v.clone());
                    }
                }
            }
            if let Some(class) = doc.get("class") {
                merged["class"] = class.clone();
            }
            doc = merged;
        }
        let whole = serde_json::json!({
            "hub": hub.as_str(),
            "locations": { "new_loc": doc },
        });
        let compiled = definition::compile(&whole, &self.api_compile_context(hub));
        let Some(defs) = compiled.definitions else {
            let first = compiled
                .errors()
                .next()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "invalid location".into());
            return Err(ServiceError::invalid(first));
        };
        let mut location = defs
            .locations
            .into_values()
            .next()
            .ok_or_else(|| ServiceError::invalid("no location given"))?;
        if let Some(stored) = &stored {
            location.name = stored.name.clone();
            crate::admin::drop_redirected_password(stored, &mut location);
        }
        if let Some((prop, reason)) = self
            .location_policy()
            .check_api_location(&location, stored.as_ref())
            .into_iter()
            .next()
        {
            return Err(ServiceError::invalid(format!("props.{prop}: {reason}")));
        }
        let connector = self
            .connect(&location)
            .map_err(|e| ServiceError::connector("the new location", e))?;
        Ok((location, connector))
    }

    async fn connect_stored(
        &self,
        hub: &HubName,
        name: &LocationName,
    ) -> Result<(Location, Arc<dyn Connector>)> {
        let location = self.location(hub, name).await?;
        let connector = self
            .connect(&location)
            .map_err(|e| ServiceError::connector(format!("location {name}"), e))?;
        Ok((location, connector))
    }

    /// The connection to a stored location (`Ok(name)`) or to one given as a document.
    async fn connect_either(
        &self,
        hub: &HubName,
        loc: LocRef<'_>,
    ) -> Result<(Location, Arc<dyn Connector>)> {
        match loc {
            LocRef::Stored(name) => self.connect_stored(hub, name).await,
            LocRef::Document { doc, props_from } => {
                self.connect_document(hub, doc, props_from).await
            }
        }
    }

    /// The schemas a location's credentials may use.
    pub async fn location_schemas(&self, hub: &HubName, loc: LocRef<'_>) -> Result<SchemaList> {
        let (location, connector) = self.connect_either(hub, loc).await?;
        let introspector = introspector(&location, connector.as_ref())?;
        let schemas = introspector
            .list_schemas()
            .await
            .map_err(|e| ServiceError::connector(format!("location {}", location.name), e))?;
        Ok(SchemaList {
            schemas,
            default_schema: introspector.default_schema(),
        })
    }

    /// The tables of a schema (or the default one) of a location's database.
    pub async fn location_tables(
        &self,
        hub: &HubName,
        loc: LocRef<'_>,
        schema: Option<&SchemaName>,
    ) -> Result<(Option<SchemaName>, Vec<TableRef>)> {
        let (location, connector) = self.connect_either(hub, loc).await?;
        let introspector = introspector(&location, connector.as_ref())?;
        let tables = introspector
            .list_tables(schema)
            .await
            .map_err(|e| ServiceError::connector(format!("location {}", location.name), e))?;
        let schema = schema.cloned().or_else(|| introspector.default_schema());
        Ok((schema, tables))
    }

    /// A table of a location's database with its columns and key.
    pub async fn location_table(
        &self,
        hub: &HubName,
        loc: LocRef<'_>,
        table: &TableRef,
    ) -> Result<TableSchema> {
        let (location, connector) = self.connect_either(hub, loc).await?;
        let introspector = introspector(&location, connector.as_ref())?;
        introspector
            .table_schema(table)
            .await
            .map_err(|e| ServiceError::connector(format!("location {}", location.name), e))?
            .ok_or_else(|| {
                ServiceError::not_found(format!(
                    "table {table} does not exist in the database of location {}",
                    location.name
                ))
            })
    }

    /// How each channel table sits at each location of `channel` (only `locs` when given).
    pub async fn channel_places(
        &self,
        hub: &HubName,
        channel: &Channel,
        locs: Option<&BTreeSet<LocationName>>,
    ) -> Result<Vec<LocationPlaces>> {
        let mut out = Vec::new();
        for loc in channel.locations() {
            if locs.is_some_and(|l| !l.contains(loc)) {
                continue;
            }
            let default_schema = match self.location(hub, loc).await {
                Ok(location) => configured_default_schema(&location),
                Err(e) if e.kind() == crate::ServiceErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            let tables: Vec<TablePlace> = channel
                .tables
                .values()
                .map(|t| place(channel, t, loc, default_schema.as_ref()))
                .collect();
            out.push(LocationPlaces {
                loc: loc.clone(),
                capture: covered(channel, ActionType::Capture, loc),
                integrate: covered(channel, ActionType::Integrate, loc),
                tables,
            });
        }
        Ok(out)
    }

    /// One channel table at one of the channel's locations, with its columns (the channel's,
    /// else the database's).
    pub async fn channel_table_at(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        loc: &LocationName,
        table: &TableName,
    ) -> Result<TableAtLocation> {
        let channel = self.channel(hub, channel).await?;
        let (channel_table, location) = self.member(hub, &channel, loc, table).await?;
        let default = configured_default_schema(&location);
        let place = place(&channel, channel_table, loc, default.as_ref());
        if let Some(columns) = &channel_table.columns {
            return Ok(TableAtLocation {
                place,
                columns: columns.clone(),
                from_db: false,
            });
        }
        let connector = self
            .connect(&location)
            .map_err(|e| ServiceError::connector(format!("location {loc}"), e))?;
        let introspector = introspector(&location, connector.as_ref())?;
        let at = physical_table(&channel, channel_table, loc, None);
        let db = introspector
            .table_schema(&at)
            .await
            .map_err(|e| ServiceError::connector(format!("location {loc}"), e))?
            .ok_or_else(|| {
                ServiceError::not_found(format!(
                    "table {table} of channel {} declares no columns and its base table {at} does not exist at location {loc}",
                    channel.name
                ))
            })?;
        Ok(TableAtLocation {
            place,
            columns: channel_columns(&db),
            from_db: true,
        })
    }

    async fn member<'c>(
        &self,
        hub: &HubName,
        channel: &'c Channel,
        loc: &LocationName,
        table: &TableName,
    ) -> Result<(&'c ChannelTable, Location)> {
        if !channel.locations().any(|l| l == loc) {
            return Err(ServiceError::not_found(format!(
                "location {loc} is not in channel {}",
                channel.name
            )));
        }
        let channel_table = channel.tables.get(table).ok_or_else(|| {
            ServiceError::not_found(format!(
                "table {table} does not exist in channel {}",
                channel.name
            ))
        })?;
        Ok((channel_table, self.location(hub, loc).await?))
    }

    /// Compares the channel's tables with the database of one of its locations and looks for
    /// tables the channel does not have; changes nothing.
    pub async fn adapt_check(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        loc: &LocationName,
        request: &AdaptRequest,
    ) -> Result<AdaptCheck> {
        let channel = self.channel(hub, channel).await?;
        self.adapt_check_of(hub, &channel, loc, request).await
    }

    async fn adapt_check_of(
        &self,
        hub: &HubName,
        channel: &Channel,
        loc: &LocationName,
        request: &AdaptRequest,
    ) -> Result<AdaptCheck> {
        if !channel.locations().any(|l| l == loc) {
            return Err(ServiceError::not_found(format!(
                "location {loc} is not in channel {}",
                channel.name
            )));
        }
        if let Some(tables) = &request.tables_in_channel {
            for t in tables {
                if !channel.tables.contains_key(t) {
                    return Err(ServiceError::not_found(format!(
                        "table {t} does not exist in channel {}",
                        channel.name
                    )));
                }
            }
        }
        let (location, connector) = self.connect_stored(hub, loc).await?;
        let introspector = introspector(&location, connector.as_ref())?;
        let failed = |e| ServiceError::connector(format!("location {loc}"), e);
        let default = introspector.default_schema();
        let mut out = AdaptCheck::default();
        let count = |table: TableRef| {
            let connector = connector.clone();
            async move {
                match connector.snapshot_reader() {
                    Some(reader) => reader.count_rows(&table, None).await.map(Some),
                    None => Ok(None),
                }
            }
        };
        if let Some(only) = &request.tables_in_channel {
            let mut checks = Vec::new();
            for t in channel.tables.values() {
                if !only.is_empty() && !only.contains(&t.name) {
                    continue;
                }
                let place = place(channel, t, loc, default.as_ref());
                let at = physical_table(channel, t, loc, None);
                let db = introspector.table_schema(&at).await.map_err(failed)?;
                let mut check = compare(place, t, db, &request.ignore_diff);
                if let Some(mapspec) = &request.mapspec {
                    check.matched_by_mapspec = Some(mapspec_matches(
                        mapspec,
                        check.place.schema.as_ref(),
                        default.as_ref(),
                        check.place.base_name.as_str(),
                    ));
                }
                if request.db_stats && check.exists_in_db {
                    check.num_rows = count(at).await.map_err(failed)?;
                }
                checks.push(check);
            }
            out.tables_in_channel = Some(checks);
        }
        if request.add_tables {
            let known: BTreeSet<(Option<SchemaName>, BaseName)> = channel
                .tables
                .values()
                .map(|t| {
                    let p = place(channel, t, loc, default.as_ref());
                    (p.schema, p.base_name)
                })
                .collect();
            let mut schemas: BTreeSet<Option<SchemaName>> = BTreeSet::new();
            match &request.mapspec {
                None => {
                    schemas.insert(None);
                }
                Some(entries) => {
                    for e in entries {
                        schemas.insert(match e {
                            MapspecEntry::Name { schema, .. }
                            | MapspecEntry::Pattern { schema, .. } => schema.clone(),
                        });
                    }
                }
            }
            let mut taken: BTreeSet<TableName> = channel.tables.keys().cloned().collect();
            let mut added = Vec::new();
            for schema in schemas {
                let tables = introspector
                    .list_tables(schema.as_ref())
                    .await
                    .map_err(failed)?;
                let schema = schema.or_else(|| default.clone());
                for t in tables {
                    let Some(schema) = schema.clone() else {
                        continue;
                    };
                    if known.contains(&(Some(schema.clone()), t.name.clone())) {
                        continue;
                    }
                    if let Some(mapspec) = &request.mapspec
                        && !mapspec_matches(
                            mapspec,
                            Some(&schema),
                            default.as_ref(),
                            t.name.as_str(),
                        )
                    {
                        continue;
                    }
                    let at = TableRef {
                        schema: Some(schema.clone()),
                        name: t.name.clone(),
                    };
                    let Some(db) = introspector.table_schema(&at).await.map_err(failed)? else {
                        continue;
                    };
                    let table = table_name_for(t.name.as_str(), &taken);
                    taken.insert(table.clone());
                    let num_rows = if request.db_stats {
                        count(at).await.map_err(failed)?
                    } else {
                        None
                    };
                    added.push(NewTable {
                        schema,
                        base_name: t.name,
                        table,
                        num_rows,
                        db,
                    });
                }
            }
            out.add_tables = Some(added);
        }
        Ok(out)
    }

    /// Applies an adapt check to the channel's definitions: new database tables are added (with
    /// the database's columns), channel tables that differ get the database's columns, and
    /// tables are deleted as `delete_tables` says. One definitions change with its
    /// `Table_Definition_Adapt` event; nothing changes when nothing differs.
    pub async fn adapt_apply(
        &self,
        hub: &HubName,
        channel_name: &ChannelName,
        loc: &LocationName,
        request: &AdaptRequest,
    ) -> Result<AdaptApplied> {
        let channel = self.channel(hub, channel_name).await?;
        let check = self.adapt_check_of(hub, &channel, loc, request).await?;
        let mut tables: BTreeMap<TableName, Json> = BTreeMap::new();
        let mut actions: Vec<Json> = Vec::new();
        let mut changed = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        for c in check.tables_in_channel.iter().flatten() {
            let delete = match request.delete_tables {
                DeleteTables::None => false,
                DeleteTables::NotInDb => !c.exists_in_db,
                DeleteTables::NotInMapspecOrNotInDb => {
                    !c.exists_in_db || c.matched_by_mapspec == Some(false)
                }
            };
            if delete {
                deleted.insert(c.place.table.clone());
                continue;
            }
            let (Some(db), Some(current)) = (&c.db, channel.tables.get(&c.place.table)) else {
                continue;
            };
            if c.diff.is_empty() || current.columns.is_none() {
                continue;
            }
            let table = ChannelTable {
                columns: Some(channel_columns(db)),
                ..current.clone()
            };
            tables.insert(table.name.clone(), definition::table_document(&table));
            changed.insert(table.name);
        }
        let default = self
            .location(hub, loc)
            .await
            .ok()
            .and_then(|l| configured_default_schema(&l));
        for new in check.add_tables.iter().flatten() {
            let group = if request.group_from_schema {
                LocGroupName::new(new.schema.as_str().to_ascii_uppercase()).ok()
            } else {
                request.add_table_group.clone()
            };
            let table = ChannelTable {
                name: new.table.clone(),
                base_name: (new.base_name.as_str() != new.table.as_str())
                    .then(|| new.base_name.clone()),
                table_group: group,
                columns: Some(channel_columns(&new.db)),
            };
            tables.insert(table.name.clone(), definition::table_document(&table));
            if default.as_ref() != Some(&new.schema) {
                actions.push(serde_json::json!({
                    "type": "TableProperties",
                    "loc_scope": loc.as_str(),
                    "table_scope": new.table.as_str(),
                    "params": { "Schema": new.schema.as_str() },
                }));
            }
        }
        if tables.is_empty() && deleted.is_empty() {
            return Ok(AdaptApplied {
                check,
                ..Default::default()
            });
        }
        let description = format!(
            "adapt channel {channel_name} to location {loc}: {} table(s) added or changed, {} deleted",
            tables.len(),
            deleted.len()
        );
        let name = channel_name.to_string();
        let event = self
            .edit_definitions(hub, EventType::TableDefinitionAdapt, &description, |doc| {
                let channel = doc
                    .get_mut("channels")
                    .and_then(|c| c.get_mut(&name))
                    .and_then(Json::as_object_mut)
                    .ok_or_else(|| {
                        ServiceError::not_found(format!("channel {name} does not exist"))
                    })?;
                let doc_tables = channel
                    .entry("tables")
                    .or_insert_with(|| Json::Object(Default::default()));
                if let Some(doc_tables) = doc_tables.as_object_mut() {
                    for t in &deleted {
                        doc_tables.remove(t.as_str());
                    }
                    for (t, v) in &tables {
                        doc_tables.insert(t.to_string(), v.clone());
                    }
                }
                if !actions.is_empty() {
                    let doc_actions = channel
                        .entry("actions")
                        .or_insert_with(|| Json::Array(Vec::new()));
                    if let Some(list) = doc_actions.as_array_mut() {
                        list.extend(actions.iter().cloned());
                    }
                }
                Ok(())
            })
            .await?;
        Ok(AdaptApplied {
            check,
            changed,
            deleted,
            event: Some(event),
        })
    }

    /// For each given table and each table of the channel at `loc`: the other channels that
    /// replicate the same database table at the same location.
    pub async fn adapt_other_channels(
        &self,
        hub: &HubName,
        channel_name: &ChannelName,
        loc: &LocationName,
        extra: &[(Option<SchemaName>, BaseName)],
    ) -> Result<Vec<(Option<SchemaName>, BaseName, Vec<ChannelName>)>> {
        let channel = self.channel(hub, channel_name).await?;
        if !channel.locations().any(|l| l == loc) {
            return Err(ServiceError::not_found(format!(
                "location {loc} is not in channel {channel_name}"
            )));
        }
        let location = self.location(hub, loc).await?;
        let default = configured_default_schema(&location);
        let mut wanted: BTreeSet<(Option<SchemaName>, BaseName)> = channel
            .tables
            .values()
            .map(|t| {
                let p = place(&channel, t, loc, default.as_ref());
                (p.schema, p.base_name)
            })
            .collect();
        for (schema, base) in extra {
            wanted.insert((schema.clone().or_else(|| default.clone()), base.clone()));
        }
        let mut by_table: BTreeMap<(Option<SchemaName>, BaseName), Vec<ChannelName>> =
            BTreeMap::new();
        for other in self.channels(hub).await? {
            if other.name == channel.name || !other.locations().any(|l| l == loc) {
                continue;
            }
            for t in other.tables.values() {
                let p = place(&other, t, loc, default.as_ref());
                let key = (p.schema, p.base_name);
                if wanted.contains(&key) {
                    let list = by_table.entry(key).or_default();
                    if !list.contains(&other.name) {
                        list.push(other.name.clone());
                    }
                }
            }
        }
        Ok(by_table
            .into_iter()
            .map(|((schema, base), channels)| (schema, base, channels))
            .collect())
    }
}

/// A location named by a request: stored, or given as a document.
#[derive(Debug, Clone, Copy)]
pub enum LocRef<'a> {
    /// A stored location.
    Stored(&'a LocationName),
    /// A location given as a document (`{"class"?, "props": {…}}`), checked against the
    /// location policy, its props laid over those of `props_from` when given.
    Document {
        /// The document.
        doc: &'a Json,
        /// A stored location whose props the document's complete.
        props_from: Option<&'a LocationName>,
    },
}

fn introspector<'c>(
    location: &Location,
    connector: &'c dyn Connector,
) -> Result<&'c dyn Introspector> {
    connector.introspector().ok_or_else(|| {
        ServiceError::invalid(format!(
            "location {} (class {}) cannot be browsed",
            location.name, location.class
        ))
    })
}

/// The schema tables without one live in at `location`, as its properties say (without
/// connecting): PostgreSQL's `Database_Schema` (else `public`), MariaDB's `Database_Name`,
/// SQLite's `main`.
fn configured_default_schema(location: &Location) -> Option<SchemaName> {
    use sluice_model::definition::LocationClass;
    let prop = |name: &str| location.prop(name).map(|v| v.to_text());
    let text = match location.class {
        LocationClass::Postgresql => prop("Database_Schema").unwrap_or_else(|| "public".into()),
        LocationClass::Mariadb => prop("Database_Name")?,
        LocationClass::Sqlite => "main".into(),
    };
    // A `${VAR}` reference is resolved only when connecting: the schema cannot be named here.
    if text.contains("${") {
        return None;
    }
    SchemaName::new(text).ok()
}

fn covered(channel: &Channel, action: ActionType, loc: &LocationName) -> bool {
    channel
        .actions
        .iter()
        .any(|a| a.action_type() == action && channel.loc_in_scope(&a.loc_scope, loc))
}

fn covers_table(
    channel: &Channel,
    action: ActionType,
    loc: &LocationName,
    table: &TableName,
) -> bool {
    channel
        .actions_for(loc, table)
        .any(|a| a.action_type() == action)
}

fn place(
    channel: &Channel,
    table: &ChannelTable,
    loc: &LocationName,
    default_schema: Option<&SchemaName>,
) -> TablePlace {
    let configured = channel
        .actions_for(loc, &table.name)
        .any(|a| matches!(a.kind(), ActionKind::TableProperties(p) if p.schema.is_some()));
    let at = physical_table(channel, table, loc, default_schema);
    TablePlace {
        table: table.name.clone(),
        schema: at.schema,
        schema_configured: configured,
        base_name: at.name,
        capture: covers_table(channel, ActionType::Capture, loc, &table.name),
        integrate: covers_table(channel, ActionType::Integrate, loc, &table.name),
    }
}

/// A database table's columns as channel columns (key positions from its primary key).
pub fn channel_columns(db: &TableSchema) -> Vec<ChannelColumn> {
    db.columns
        .iter()
        .map(|c| ChannelColumn {
            name: c.name.clone(),
            data_type: c.data_type,
            nullable: c.nullable,
            key: db
                .primary_key
                .iter()
                .position(|k| k == &c.name)
                .map_or(0, |i| i as u32 + 1),
        })
        .collect()
}

/// Compares a channel table with the database's (when it exists).
fn compare(
    place: TablePlace,
    table: &ChannelTable,
    db: Option<TableSchema>,
    ignore: &BTreeSet<Diff>,
) -> TableCheck {
    let mut diff = BTreeSet::new();
    let mut columns = Vec::new();
    if let (Some(db), Some(core)) = (&db, &table.columns) {
        let db_cols = channel_columns(db);
        for c in core {
            let from_db = db_cols.iter().find(|d| d.name == c.name).map(|d| {
                let native = db.column(&d.name).and_then(|n| n.native_type.clone());
                (d.clone(), native)
            });
            let col_diff: Vec<Diff> = match &from_db {
                None => vec![Diff::ColDropped],
                Some((d, _)) => column_diff(c, d),
            };
            columns.push(ColumnCheck {
                name: c.name.clone(),
                core: Some(c.clone()),
                from_db,
                diff: col_diff,
            });
        }
        for d in &db_cols {
            if !core.iter().any(|c| c.name == d.name) {
                let native = db.column(&d.name).and_then(|n| n.native_type.clone());
                columns.push(ColumnCheck {
                    name: d.name.clone(),
                    core: None,
                    from_db: Some((d.clone(), native)),
                    diff: vec![Diff::ColAdded],
                });
            }
        }
        for c in &columns {
            diff.extend(c.diff.iter().copied());
        }
        let core_key: BTreeSet<&ColumnName> =
            core.iter().filter(|c| c.key > 0).map(|c| &c.name).collect();
        let db_key: BTreeSet<&ColumnName> = db.primary_key.iter().collect();
        if db_key.difference(&core_key).next().is_some() {
            diff.insert(Diff::UniqueIndexAdded);
        }
        if core_key.difference(&db_key).next().is_some() {
            diff.insert(Diff::UniqueIndexRemoved);
        }
    } else if let Some(core) = &table.columns {
        columns = core
            .iter()
            .map(|c| ColumnCheck {
                name: c.name.clone(),
                core: Some(c.clone()),
                from_db: None,
                diff: Vec::new(),
            })
            .collect();
    }
    for c in &mut columns {
        c.diff.retain(|d| !ignore.contains(d));
    }
    diff.retain(|d| !ignore.contains(d));
    TableCheck {
        place,
        exists_in_db: db.is_some(),
        diff: diff.into_iter().collect(),
        columns,
        matched_by_mapspec: None,
        num_rows: None,
        db,
    }
}

/// How one column changed from the definition (`core`) to the database (`db`).
fn column_diff(core: &ChannelColumn, db: &ChannelColumn) -> Vec<Diff> {
    let mut out = Vec::new();
    if core.data_type != db.data_type {
        out.push(type_diff(core.data_type, db.data_type));
    }
    match (core.nullable, db.nullable) {
        (false, true) => out.push(Diff::NullsAdded),
        (true, false) => out.push(Diff::NullsRemoved),
        _ => {}
    }
    out
}

#[derive(PartialEq, Eq)]
enum Family {
    Bool,
    Number,
    Text,
    Bytes,
    Time,
    Other,
}

fn family(t: DataType) -> Family {
    use DataType::*;
    match t {
        Bool => Family::Bool,
        Int16 | Int32 | Int64 | Float32 | Float64 | Numeric | Decimal { .. } => Family::Number,
        Text | Varchar(_) => Family::Text,
        Bytes => Family::Bytes,
        Date | Time | Timestamp | TimestampTz => Family::Time,
        Json | Uuid => Family::Other,
    }
}

/// A rough measure of what a type holds, within its family, for telling bigger from smaller.
fn range(t: DataType) -> Option<u64> {
    use DataType::*;
    match t {
        Int16 => Some(16),
        Int32 => Some(32),
        Int64 => Some(64),
        Float32 => Some(24),
        Float64 => Some(53),
        Decimal { precision, .. } => Some(u64::from(precision) * 4),
        Numeric => Some(u64::MAX),
        Varchar(n) => Some(u64::from(n)),
        Text => Some(u64::MAX),
        _ => None,
    }
}

fn type_diff(core: DataType, db: DataType) -> Diff {
    if family(core) != family(db) {
        return Diff::DataTypeFamilyChanged;
    }
    let same_kind = core.is_text() == db.is_text()
        && !(matches!(core, DataType::Float32 | DataType::Float64)
            ^ matches!(db, DataType::Float32 | DataType::Float64));
    match (range(core), range(db)) {
        (Some(a), Some(b)) if same_kind && a < b => Diff::ColRangeBigger,
        (Some(a), Some(b)) if same_kind && a > b => Diff::ColRangeSmaller,
        _ => Diff::DataTypeChanged,
    }
}

/// Whether `name` in `schema` is named by the mapspec.
fn mapspec_matches(
    mapspec: &[MapspecEntry],
    schema: Option<&SchemaName>,
    default: Option<&SchemaName>,
    name: &str,
) -> bool {
    mapspec.iter().any(|e| {
        let (want_schema, hit) = match e {
            MapspecEntry::Name { schema, base_name } => (schema, base_name == name),
            MapspecEntry::Pattern {
                schema,
                pattern,
                not_pattern,
            } => (
                schema,
                pattern_matches(pattern, name)
                    && !not_pattern.iter().any(|p| pattern_matches(p, name)),
            ),
        };
        hit && want_schema.as_ref().or(default) == schema.or(default)
    })
}

/// HVR's table name patterns: `*` any run, `?` any one character, alternatives split by `|`;
/// letters match without regard to case.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn glob(p: &[char], n: &[char]) -> bool {
        // Iterative wildcard match with backtracking to the last `*`.
        let (mut pi, mut ni) = (0, 0);
        let (mut star, mut mark) = (None, 0);
        while ni < n.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some(pi);
                mark = ni;
                pi += 1;
            } else if let Some(s) = star {
                pi = s + 1;
                mark += 1;
                ni = mark;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
    let name: Vec<char> = name.to_lowercase().chars().collect();
    pattern.split('|').any(|alt| {
        let p: Vec<char> = alt.trim().to_lowercase().chars().collect();
        glob(&p, &name)
    })
}

/// A channel table name for a database table: lowercase, characters a table name cannot hold
/// replaced by `_`, and a number added when the name is taken.
fn table_name_for(base: &str, taken: &BTreeSet<TableName>) -> TableName {
    let mut stem: String = base
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !stem.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        stem.insert(0, 't');
    }
    stem.truncate(120);
    let mut n = 1;
    loop {
        let candidate = if n == 1 {
            stem.clone()
        } else {
            format!("{stem}_{n}")
        };
        if let Ok(name) = TableName::new(&candidate)
            && !taken.contains(&name)
        {
            return name;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_hvr() {
        assert!(pattern_matches("*", "orders"));
        assert!(pattern_matches("ord*", "ORDERS"));
        assert!(pattern_matches("cust|ord?rs", "orders"));
        assert!(!pattern_matches("ord?", "orders"));
        assert!(pattern_matches("*_hist", "orders_hist"));
        assert!(!pattern_matches("*_hist", "orders"));
    }

    #[test]
    fn types_compare_by_family_and_range() {
        assert_eq!(
            type_diff(DataType::Int32, DataType::Int64),
            Diff::ColRangeBigger
        );
        assert_eq!(
            type_diff(DataType::Varchar(20), DataType::Varchar(10)),
            Diff::ColRangeSmaller
        );
        assert_eq!(
            type_diff(DataType::Int32, DataType::Text),
            Diff::DataTypeFamilyChanged
        );
        assert_eq!(
            type_diff(DataType::Date, DataType::Timestamp),
            Diff::DataTypeChanged
        );
    }

    #[test]
    fn table_names_are_made_valid_and_unique() {
        let mut taken = BTreeSet::new();
        let a = table_name_for("Order Lines", &taken);
        assert_eq!(a.as_str(), "order_lines");
        taken.insert(a);
        assert_eq!(
            table_name_for("order-lines", &taken).as_str(),
            "order_lines_2"
        );
        assert_eq!(table_name_for("2024", &taken).as_str(), "t2024");
    }
}
