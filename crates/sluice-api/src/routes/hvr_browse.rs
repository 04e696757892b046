//! The document of HVR's location tests, database browsing, the query interface and table adapt.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value as Json;
use utoipa::ToSchema;
use utoipa::openapi::path::HttpMethod;

use super::{Auth, Doc, Face, HVR_ERRORS, Op, string};
use crate::hvr::browse as b;
use crate::hvr::shapes as hvr;

/// `GET …/locs/{loc}/db/schemas`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct DbSchemas {
    /// The schemas the location's credentials may use.
    schemas: Vec<String>,
    /// Where tables without a schema live (empty when it has no name sluice can carry).
    default_schema: String,
}

/// `POST …/new_loc/db/schemas`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct NewLocDbSchemas {
    /// The schemas the location's credentials may use.
    schemas: Vec<String>,
}

/// A table of a database.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct DbTable {
    base_name: String,
    /// Always `Table` (views are not listed).
    r#type: String,
}

/// `…/db/tables`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct DbTables {
    /// The schema listed.
    #[schema(nullable = false)]
    schema: Option<String>,
    tables: Vec<DbTable>,
}

/// HVR's type attributes of a column.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct ColAttributes {
    nullable: bool,
    /// Characters of a `varchar`.
    #[schema(nullable = false)]
    charlen: Option<String>,
    /// Digits of a `decimal`.
    #[schema(nullable = false)]
    prec: Option<u32>,
    /// Digits after the point of a `decimal`.
    #[schema(nullable = false)]
    scale: Option<u32>,
}

/// A column's type (`core`, `with_col_props`, `from_db`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct ColType {
    sequence: u32,
    /// sluice's engine-neutral type (`int32`, `varchar(100)`, `decimal(12,2)`, …).
    data_type: String,
    /// Position in the key.
    #[schema(nullable = false)]
    key: Option<u32>,
    attributes: ColAttributes,
    /// The type as the database declares it (`from_db`).
    #[schema(nullable = false)]
    sql_data_type: Option<String>,
    /// How the database's column differs from the definition (`from_db` of an adapt check).
    #[schema(nullable = false)]
    diff: Option<Vec<String>>,
    /// `with_col_props`: always false.
    #[schema(nullable = false)]
    localize_type_change: Option<bool>,
    /// `with_col_props`: column properties of actions (none in sluice).
    #[schema(nullable = false)]
    other_props: Option<BTreeMap<String, Json>>,
}

/// A column of a database table.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct DbColumn {
    basecolname: String,
    from_db: ColType,
}

/// `…/db/tables/{table}/columns`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct DbColumns {
    #[schema(nullable = false)]
    schema: Option<String>,
    base_name: String,
    /// `explicit` (a primary key) or `implicit` (none: every column is the key).
    key_mode: String,
    cols: Vec<DbColumn>,
}

/// `…/env/vars`: each variable asked for, empty (sluice uses none of them).
#[derive(ToSchema)]
struct EnvVars(BTreeMap<String, String>);

/// HVR's `oratab` answer; sluice serves no Oracle, so both are empty.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct Oratab {
    oracle_sid: String,
    oracle_home: String,
}

/// A channel table at a location.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct QueryTable {
    #[schema(nullable = false)]
    schema: Option<String>,
    base_name: String,
    capture: bool,
    integrate: bool,
}

/// A location of a channel.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct QueryLoc {
    capture: bool,
    integrate: bool,
    capture_tables: u32,
    integrate_tables: u32,
    cap_integ_tables: u32,
    /// With `fetch=tables`.
    #[schema(nullable = false)]
    tables: Option<BTreeMap<String, QueryTable>>,
}

/// `GET …/query/channels/{channel}/locs`: by location.
#[derive(ToSchema)]
struct QueryLocs(BTreeMap<String, QueryLoc>);

/// A channel's locations.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct QueryChannel {
    locs: BTreeMap<String, QueryLoc>,
}

/// `GET …/query/channels`: by channel.
#[derive(ToSchema)]
struct QueryChannels(BTreeMap<String, QueryChannel>);

/// Where a channel table sits, and at which locations.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct SchemaBase {
    #[schema(nullable = false)]
    schema: Option<String>,
    /// `configured` (a `TableProperties` action) or `discovered` (the location's default).
    #[schema(nullable = false)]
    schema_type: Option<String>,
    base_name: String,
    cap_locs: Vec<String>,
    integ_locs: Vec<String>,
}

/// A channel table's places.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct QueryChannelTable {
    schema_bases: Vec<SchemaBase>,
}

/// `GET …/query/channels/{channel}/tables`: by table.
#[derive(ToSchema)]
struct QueryChannelTables(BTreeMap<String, QueryChannelTable>);

/// A column of a channel table at a location.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct QueryColumn {
    hvrcolname: String,
    basecolname: String,
    core: ColType,
    with_col_props: ColType,
}

/// `GET …/query/channels/{channel}/locs/{loc}/tables/{table}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct QueryTableAt {
    #[schema(nullable = false)]
    schema: Option<String>,
    #[schema(nullable = false)]
    schema_type: Option<String>,
    base_name: String,
    capture: bool,
    integrate: bool,
    key_mode: String,
    cols: Vec<QueryColumn>,
}

/// Row count of a table.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct DbStats {
    num_rows: String,
}

/// A channel table compared with the database.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptTable {
    schema: String,
    base_name: String,
    exists_in_db: bool,
    r#type: String,
    #[schema(nullable = false)]
    matched_by_mapspec: Option<bool>,
    #[schema(nullable = false)]
    db_stats: Option<DbStats>,
    /// `col_added`, `col_dropped`, `data_type_changed`, `data_type_family_changed`,
    /// `col_range_bigger`, `col_range_smaller`, `nulls_added`, `nulls_removed`,
    /// `unique_index_added`, `unique_index_removed`.
    diff: Vec<String>,
}

/// A database table the channel does not have.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptNewTable {
    schema: String,
    base_name: String,
    r#type: String,
    #[schema(nullable = false)]
    db_stats: Option<DbStats>,
}

/// `POST …/adapt/check`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptCheck {
    #[schema(nullable = false)]
    tables_in_channel: Option<BTreeMap<String, AdaptTable>>,
    #[schema(nullable = false)]
    add_tables: Option<Vec<AdaptNewTable>>,
}

/// A column compared: the definition's (`core`) and the database's (`from_db`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptColumn {
    hvrcolname: String,
    basecolname: String,
    #[schema(nullable = false)]
    core: Option<ColType>,
    #[schema(nullable = false)]
    with_col_props: Option<ColType>,
    #[schema(nullable = false)]
    from_db: Option<ColType>,
}

/// `POST …/adapt/check/{table}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptCheckTable {
    #[schema(nullable = false)]
    schema: Option<String>,
    #[schema(nullable = false)]
    schema_type: Option<String>,
    base_name: String,
    capture: bool,
    integrate: bool,
    key_mode: String,
    exists_in_db: bool,
    /// Table-level differences (`unique_index_added`, `unique_index_removed`).
    diff: Vec<String>,
    #[schema(nullable = false)]
    db_stats: Option<DbStats>,
    cols: Vec<AdaptColumn>,
}

/// A table added by an adapt apply.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptAdded {
    schema: String,
    base_name: String,
    /// The channel table name it got.
    table: String,
    r#type: String,
}

/// A channel table after an adapt apply.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptApplied {
    schema: String,
    base_name: String,
    r#type: String,
    diff: Vec<String>,
    #[schema(nullable = false)]
    deleted: Option<bool>,
}

/// `POST …/adapt/apply`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AdaptApply {
    #[schema(nullable = false)]
    add_tables: Option<Vec<AdaptAdded>>,
    #[schema(nullable = false)]
    tables_in_channel: Option<BTreeMap<String, AdaptApplied>>,
}

/// A table replicated at the location by other channels.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct OtherChannels {
    schema: String,
    base_name: String,
    other_channels: Vec<String>,
}

pub(super) fn document(doc: &mut Doc) {
    const H: &str = "/api/latest/hubs/{hub}";
    const L: &str = "/api/latest/hubs/{hub}/locs/{loc}";
    const N: &str = "/api/latest/hubs/{hub}/new_loc";
    const Q: &str = "/api/latest/hubs/{hub}/query/channels";
    const A: &str = "/api/latest/hubs/{hub}/channels/{channel}/locs/{loc}/adapt";
    let browse = "File and DB Browse Interface";
    let query = "Query Interface";
    let adapt = "Table Adapt Interface";
    let read = Auth::Bearer("ReadOnly");
    let write = Auth::Bearer("ReadWrite");
    let channel_q = |op: Op| {
        op.query(
            "channel",
            string().build(),
            "the channel the location is looked at for (it must exist)",
        )
    };

    let test = doc.schema::<hvr::LocationTest>();
    let loc_test = doc.schema::<b::LocTestBody>();
    let new_loc = doc.schema::<b::NewLocBody>();
    doc.add(
        Op::new(HttpMethod::Post, &format!("{L}/test"), browse, read, "Test a location's connection")
            .description("discovered_props has Class_Version and Class_Flavor (e.g. vanilla, aurora, rds, cloudsql, azure for PostgreSQL; mariadb or mysql; vanilla for SQLite), and Props_Not_Used names the stored properties sluice does not act on")
            .body(loc_test, true)
            .json(200, "the connection works", test.clone())
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Post, &format!("{N}/test"), browse, write, "Test properties of a location not yet defined")
            .description("the location is checked against the location policy like one the API defines (docs/security.md)")
            .body(new_loc.clone(), false)
            .json(200, "the connection works", test)
            .errors(Face::Hvr, HVR_ERRORS),
    );

    let schemas = doc.schema::<DbSchemas>();
    let new_schemas = doc.schema::<NewLocDbSchemas>();
    doc.add(
        channel_q(Op::new(
            HttpMethod::Get,
            &format!("{L}/db/schemas"),
            browse,
            read,
            "The schemas of a location's database",
        ))
        .description("only those the location's credentials may use")
        .json(200, "the schemas", schemas)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{N}/db/schemas"),
            browse,
            write,
            "The schemas of a database of a location not yet defined",
        )
        .body(new_loc.clone(), false)
        .json(200, "the schemas", new_schemas)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let tables = doc.schema::<DbTables>();
    doc.add(
        channel_q(Op::new(
            HttpMethod::Get,
            &format!("{L}/db/tables"),
            browse,
            read,
            "The tables of a schema of a location's database",
        ))
        .query(
            "schema",
            string().build(),
            "the schema (else the location's default)",
        )
        .json(200, "the tables", tables.clone())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{N}/db/tables"),
            browse,
            write,
            "The tables of a schema of a location not yet defined",
        )
        .body(new_loc.clone(), false)
        .json(200, "the tables", tables)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let columns = doc.schema::<DbColumns>();
    doc.add(
        channel_q(Op::new(
            HttpMethod::Get,
            &format!("{L}/db/tables/{{table}}/columns"),
            browse,
            read,
            "The columns of a table of a location's database",
        ))
        .query(
            "schema",
            string().build(),
            "the table's schema (else the location's default)",
        )
        .json(200, "the columns", columns.clone())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{N}/db/tables/{{table}}/columns"),
            browse,
            write,
            "The columns of a table of a location not yet defined",
        )
        .body(new_loc.clone(), false)
        .json(200, "the columns", columns)
        .errors(Face::Hvr, HVR_ERRORS),
    );

    let vars = doc.schema::<EnvVars>();
    const NO_ENV: &str = "sluice runs no agents and uses no ODBC, Oracle, DB2, Ingres or Google credentials file: the answer has HVR's shape with empty values; the server's own environment is never shown";
    doc.add(
        channel_q(Op::new(HttpMethod::Get, &format!("{L}/env/vars"), browse, write, "Environment variables of a location"))
            .description(NO_ENV)
            .query_list("vars", "DB2INSTANCE, II_SYSTEM, INSTHOME, ORACLE_HOME, ORACLE_SID or GOOGLE_APPLICATION_CREDENTIALS (at least one)")
            .json(200, "each variable asked for, empty: sluice uses none of these", vars.clone())
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{N}/env/vars"),
            browse,
            write,
            "Environment variables of a location not yet defined",
        )
        .description(NO_ENV)
        .body(new_loc.clone(), false)
        .json(
            200,
            "each variable asked for, empty: sluice uses none of these",
            vars,
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        channel_q(Op::new(
            HttpMethod::Get,
            &format!("{L}/env/odbc_drivers"),
            browse,
            write,
            "ODBC drivers of a location",
        ))
        .description(NO_ENV)
        .query(
            "odbcinst",
            string().build(),
            "accepted; sluice uses no ODBC",
        )
        .query(
            "odbcsysini",
            string().build(),
            "accepted; sluice uses no ODBC",
        )
        .json(200, "empty: sluice uses no ODBC", string().build().into())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{N}/env/odbc_drivers"),
            browse,
            write,
            "ODBC drivers of a location not yet defined",
        )
        .description(NO_ENV)
        .body(new_loc.clone(), false)
        .json(200, "empty: sluice uses no ODBC", string().build().into())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let oratab = doc.schema::<Oratab>();
    doc.add(
        channel_q(Op::new(
            HttpMethod::Get,
            &format!("{L}/env/oratab"),
            browse,
            write,
            "Oracle instances of a location",
        ))
        .description(NO_ENV)
        .json(200, "empty: sluice serves no Oracle", oratab.clone())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{N}/env/oratab"),
            browse,
            write,
            "Oracle instances of a location not yet defined",
        )
        .description(NO_ENV)
        .body(new_loc.clone(), false)
        .json(200, "empty: sluice serves no Oracle", oratab)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/dirs"),
            browse,
            write,
            "Files of the hub",
        )
        .description(b::NO_HUB_FILES)
        .query("path", string().build(), "accepted")
        .query("pattern", string().build(), "accepted")
        .errors(Face::Hvr, &[400, 401, 403, 404, 501]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{L}/dirs"),
            browse,
            write,
            "Files of a location",
        )
        .description(b::NO_FILE_LOCATIONS)
        .query("path", string().build(), "accepted")
        .query("pattern", string().build(), "accepted")
        .query("local", string().build(), "accepted")
        .query("channel", string().build(), "accepted")
        .errors(Face::Hvr, &[400, 401, 403, 404, 501]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{N}/dirs"),
            browse,
            write,
            "Files of a location not yet defined",
        )
        .description(b::NO_FILE_LOCATIONS)
        .body(new_loc, false)
        .errors(Face::Hvr, &[400, 401, 403, 404, 501]),
    );

    let channels = doc.schema::<QueryChannels>();
    let locs = doc.schema::<QueryLocs>();
    let channel_tables = doc.schema::<QueryChannelTables>();
    let table_at = doc.schema::<QueryTableAt>();
    let filters = |op: Op| {
        op.query_list("loc", "only these locations")
            .query_list("table", "only these tables")
            .query_list(
                "fetch",
                "tables (latency_sla is accepted; sluice keeps no latency SLA)",
            )
    };
    doc.add(
        filters(Op::new(
            HttpMethod::Get,
            Q,
            query,
            read,
            "Which tables each location of each channel captures and integrates",
        ))
        .query_list("channel", "only these channels")
        .json(200, "by channel", channels)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        filters(Op::new(
            HttpMethod::Get,
            &format!("{Q}/{{channel}}/locs"),
            query,
            read,
            "Which tables each location of a channel captures and integrates",
        ))
        .json(200, "by location", locs)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{Q}/{{channel}}/tables"),
            query,
            read,
            "Where each table of a channel sits and which locations capture and integrate it",
        )
        .query_list("table", "only these tables")
        .json(200, "by table", channel_tables)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{Q}/{{channel}}/locs/{{loc}}/tables/{{table}}"),
            query,
            read,
            "A channel table at a location, with its columns",
        )
        .description("the columns the channel declares, else those of the location's database")
        .query_list("context", "accepted; sluice's actions have no contexts")
        .json(200, "the table", table_at)
        .errors(Face::Hvr, HVR_ERRORS),
    );

    let adapt_body = doc.schema::<b::AdaptBody>();
    let table_body = doc.schema::<b::AdaptTableBody>();
    let other_body = doc.schema::<b::OtherChannelsBody>();
    let mapdoc = doc.schema::<b::MapdocBody>();
    let check = doc.schema::<AdaptCheck>();
    let check_table = doc.schema::<AdaptCheckTable>();
    let apply = doc.schema::<AdaptApply>();
    let other = doc.schema::<OtherChannels>();
    doc.add(
        Op::new(HttpMethod::Post, &format!("{A}/check"), adapt, read, "Compare the channel's tables with the location's database")
            .description("tables_in_channel compares the channel's tables (also when the body asks for nothing); add_tables looks for database tables the channel does not have (those the mapspec names, else all of the default schema); changes nothing")
            .body(adapt_body.clone(), true)
            .json(200, "the differences", check)
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{A}/check/{{table}}"),
            adapt,
            read,
            "Compare one channel table with the location's database, column by column",
        )
        .body(table_body, true)
        .json(200, "the differences", check_table)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Post, &format!("{A}/apply"), adapt, write, "Adapt the channel's table definitions to the location's database")
            .description("adds the tables add_tables finds and gives the channel tables that differ the database's columns (or deletes them as delete_tables says): one definitions change with its Table_Definition_Adapt event, none when nothing differs")
            .body(adapt_body, true)
            .json(200, "what was added and compared", apply)
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{A}/other_channels"),
            adapt,
            read,
            "Other channels that replicate the same tables at the location",
        )
        .body(other_body, true)
        .json(
            200,
            "one entry per table another channel replicates there",
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(other)
                .build()
                .into(),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{H}/mapdoc/parse"),
            adapt,
            read,
            "Parse an adapt mapping document",
        )
        .description(b::NO_MAPDOC)
        .body(mapdoc, false)
        .errors(Face::Hvr, &[400, 401, 403, 404, 501]),
    );
}
