//! Tables, columns, keys, indexes and dependencies from `pg_catalog`.
//!
//! Columns report the `format_type()` spelling of their type as `native_type`; a column of a domain
//! reports its base type (that is what travels in COPY). Partitioned tables are listed and described
//! like ordinary tables (their partition key is not reported); partitions themselves are not listed.

use sluice_connector::{ConnectorError, Result};
use sluice_model::{BaseName, ColumnDef, ColumnName, SchemaName, TableRef, TableSchema};
use tokio_postgres::Client;

use crate::error::pg_error;
use crate::types::{pg_type, schema_of};

/// A relation found in the catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relation {
    /// Its oid.
    pub oid: u32,
    /// `r` table, `p` partitioned table, `v` view, `m` materialized view, `f` foreign table.
    pub kind: u8,
    /// Whether it is a partition of another table.
    pub is_partition: bool,
}

impl Relation {
    /// Whether rows can be written into it.
    pub fn is_table(&self) -> bool {
        matches!(self.kind, b'r' | b'p')
    }
}

/// One column as the catalog has it.
#[derive(Debug, Clone)]
pub(crate) struct CatalogColumn {
    pub name: String,
    /// `format_type()` of the column's (base) type.
    pub native_type: String,
    pub not_null: bool,
    /// A generated column (cannot be written).
    pub generated: bool,
}

/// Tables (ordinary and partitioned, not partitions) in `schema`, sorted by name (bytewise).
pub(crate) async fn list_tables(client: &Client, schema: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY c.relname COLLATE \"C\"",
            &[&schema],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("list the tables of schema {schema}")))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The schemas the connected role may use (`USAGE`), without PostgreSQL's own catalogs.
pub(crate) async fn list_schemas(client: &Client) -> Result<Vec<SchemaName>> {
    let rows = client
        .query(
            "SELECT n.nspname::text FROM pg_catalog.pg_namespace n \
             WHERE has_schema_privilege(n.oid, 'USAGE') \
             AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
             ORDER BY n.nspname COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("list the schemas")))?;
    // Names sluice cannot carry (control characters) are left out of discovery.
    Ok(rows
        .iter()
        .filter_map(|r| SchemaName::new(r.get::<_, String>(0)).ok())
        .collect())
}

/// The relation called `name` in `schema`, when it exists.
pub(crate) async fn find_relation(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Option<Relation>> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text, c.relispartition FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&schema, &name],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("look up table {schema}.{name}")))?;
    Ok(row.map(|r| Relation {
        oid: r.get(0),
        kind: r.get::<_, String>(1).bytes().next().unwrap_or(b'r'),
        is_partition: r.get(2),
    }))
}

/// Whether any relation (of any kind) called `name` exists in `schema`.
pub(crate) async fn name_taken(client: &Client, schema: &str, name: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2)",
            &[&schema, &name],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("look up relation {schema}.{name}")))?;
    Ok(row.get(0))
}

/// The columns of a relation in order.
pub(crate) async fn columns(client: &Client, oid: u32) -> Result<Vec<CatalogColumn>> {
    let rows = client
        .query(
            "SELECT a.attname::text, \
                    pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, \
                                           CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END), \
                    a.attnotnull OR (t.typtype = 'd' AND t.typnotnull), \
                    a.attgenerated <> '' \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(e, "read the columns of a table"))?;
    Ok(rows
        .iter()
        .map(|r| CatalogColumn {
            name: r.get(0),
            native_type: r.get(1),
            not_null: r.get(2),
            generated: r.get(3),
        })
        .collect())
}

/// Key columns of the table's primary key (first) and of its other unique indexes that can serve
/// as `ON CONFLICT` arbiters (valid, immediate, no predicate, no expressions), each in key order.
pub(crate) async fn unique_keys(client: &Client, oid: u32) -> Result<Vec<(bool, Vec<String>)>> {
    let rows = client
        .query(
            "SELECT i.indisprimary, \
                    array_agg(a.attname::text ORDER BY k.ord) \
             FROM pg_catalog.pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate \
               AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts \
             GROUP BY i.indexrelid, i.indisprimary \
             ORDER BY i.indisprimary DESC, i.indexrelid",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(e, "read the keys of a table"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn base_name(name: &str) -> Result<BaseName> {
    BaseName::new(name).map_err(|e| {
        ConnectorError::unsupported(format!("table name {name:?} cannot be used: {e}"))
    })
}

/// Columns and primary key of `table`; `None` when it does not exist. A column of a type sluice
/// does not carry is an error naming table, column and type.
pub(crate) async fn table_schema(
    client: &Client,
    table: &TableRef,
    default_schema: &SchemaName,
) -> Result<Option<TableSchema>> {
    let schema = schema_of(table, default_schema);
    let Some(relation) = find_relation(client, schema, table.name.as_str()).await? else {
        return Ok(None);
    };
    if relation.kind == b'p' {
        tracing::debug!(table = %table, "describing a partitioned table; its partition key is not reported");
    }
    let mut out = Vec::new();
    for column in columns(client, relation.oid).await? {
        let ty = pg_type(&column.native_type).ok_or_else(|| {
            ConnectorError::unsupported(format!(
                "table {table} column {} has type {}, which sluice cannot carry",
                column.name, column.native_type
            ))
        })?;
        let name = ColumnName::new(column.name.clone()).map_err(|e| {
            ConnectorError::unsupported(format!(
                "table {table} column name {:?} cannot be used: {e}",
                column.name
            ))
        })?;
        out.push(ColumnDef {
            name,
            data_type: ty.data_type,
            nullable: !column.not_null,
            native_type: Some(column.native_type),
        });
    }
    let primary_key = unique_keys(client, relation.oid)
        .await?
        .into_iter()
        .find(|(primary, _)| *primary)
        .map(|(_, cols)| cols)
        .unwrap_or_default()
        .into_iter()
        .map(|c| ColumnName::new(c).map_err(|e| ConnectorError::unsupported(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TableSchema {
        table: table.clone(),
        columns: out,
        primary_key,
    }))
}

/// Table refs for names listed in `schema` (`None`: the default schema, left implicit).
pub(crate) fn table_refs(names: Vec<String>, schema: Option<&SchemaName>) -> Result<Vec<TableRef>> {
    names
        .iter()
        .map(|n| {
            Ok(TableRef {
                schema: schema.cloned(),
                name: base_name(n)?,
            })
        })
        .collect()
}

/// One index of a table, as a staging swap rebuilds it.
#[derive(Debug, Clone)]
pub(crate) struct IndexDef {
    /// The index's name.
    pub name: String,
    /// `pg_get_constraintdef` of the constraint it backs (primary key, unique, exclusion), if any.
    pub constraint: Option<String>,
    /// Whether it is a unique index.
    pub unique: bool,
    /// `pg_get_indexdef` from ` USING ` on (method, columns, options, predicate).
    pub using: String,
}

/// An index a `truncate_load` drops after its `TRUNCATE` and builds again after the load: one
/// sorted build is cheaper than maintaining the index row by row, and the rebuilt index is the
/// same (a key constraint is added back under its own name, which names its index too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeferredIndex {
    /// The index's name (for a constraint's index, also the constraint's name).
    pub name: String,
    /// `pg_get_constraintdef` when the index belongs to a primary key, unique or exclusion
    /// constraint.
    pub constraint: Option<String>,
    /// `pg_get_indexdef`: the whole `CREATE INDEX` of a plain index.
    pub definition: String,
    /// Whether the index is the table's replica identity.
    pub replica_identity: bool,
    /// Whether the table is marked clustered on the index.
    pub clustered: bool,
}

/// The indexes of the table with `oid` that a `truncate_load` may drop and rebuild, in creation
/// order; `None` when rebuilding could lose something, so the load keeps them: an index that is
/// not valid, lives in a tablespace of its own, carries a comment (itself or its constraint),
/// has per-column statistics targets, or is referenced by a foreign key.
pub(crate) async fn deferrable_indexes(
    client: &Client,
    oid: u32,
) -> Result<Option<Vec<DeferredIndex>>> {
    let rows = client
        .query(
            "SELECT ic.relname::text, \
                    con.oid IS NOT NULL, \
                    CASE WHEN con.oid IS NOT NULL THEN pg_catalog.pg_get_constraintdef(con.oid) END, \
                    pg_catalog.pg_get_indexdef(i.indexrelid), \
                    i.indisreplident, i.indisclustered, \
                    (NOT i.indisvalid OR NOT i.indisready OR ic.reltablespace <> 0 \
                     OR pg_catalog.obj_description(i.indexrelid, 'pg_class') IS NOT NULL \
                     OR (con.oid IS NOT NULL AND pg_catalog.obj_description(con.oid, 'pg_constraint') IS NOT NULL) \
                     OR (con.oid IS NOT NULL AND con.contype NOT IN ('p', 'u', 'x')) \
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                                 WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0) \
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint f \
                                 WHERE f.contype = 'f' AND f.conindid = i.indexrelid)) \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
             LEFT JOIN pg_catalog.pg_constraint con \
               ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype <> 'f' \
             WHERE i.indrelid = $1 ORDER BY i.indexrelid",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(e, "read the indexes of a table"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if r.get::<_, bool>(6) {
            return Ok(None);
        }
        let is_constraint: bool = r.get(1);
        out.push(DeferredIndex {
            name: r.get(0),
            constraint: if is_constraint { r.get(2) } else { None },
            definition: r.get(3),
            replica_identity: r.get(4),
            clustered: r.get(5),
        });
    }
    Ok(Some(out))
}

/// What a staging swap must rebuild or carry over, and what keeps it from running.
#[derive(Debug, Clone, Default)]
pub(crate) struct SwapCatalog {
    pub indexes: Vec<IndexDef>,
    /// Foreign keys of the table: name and `pg_get_constraintdef`.
    pub foreign_keys: Vec<(String, String)>,
    /// Sequences owned by a column (serial): qualified sequence name and column.
    pub owned_sequences: Vec<(String, String)>,
    /// Identity columns: column and qualified sequence name.
    pub identity_columns: Vec<(String, String)>,
    /// Grants on the table: `GRANT …` clauses without the `ON table`, as `(privileges, grantee,
    /// grantable)`.
    pub grants: Vec<(String, String, bool)>,
    /// The table's owner (quoted) when it is not the current user.
    pub owner: Option<String>,
    /// Reasons the table cannot be swapped.
    pub blockers: Vec<String>,
}

/// Reads what a staging swap needs to know about the table with `oid`.
pub(crate) async fn swap_catalog(client: &Client, oid: u32) -> Result<SwapCatalog> {
    let err = |e| pg_error(e, "read the indexes and dependencies of a table");
    let mut out = SwapCatalog::default();
    for r in client
        .query(
            "SELECT ic.relname::text, \
                    (SELECT pg_catalog.pg_get_constraintdef(con.oid) FROM pg_catalog.pg_constraint con \
                      WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')), \
                    i.indisunique, \
                    substring(pg_catalog.pg_get_indexdef(i.indexrelid) from ' USING .*$') \
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
             WHERE i.indrelid = $1 ORDER BY i.indexrelid",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        out.indexes.push(IndexDef {
            name: r.get(0),
            constraint: r.get(1),
            unique: r.get(2),
            using: r.get(3),
        });
    }
    for r in client
        .query(
            "SELECT conname::text, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint \
             WHERE conrelid = $1 AND contype = 'f' AND confrelid <> $1 ORDER BY oid",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        out.foreign_keys.push((r.get(0), r.get(1)));
    }
    for r in client
        .query(
            "SELECT d.objid::regclass::text, a.attname::text, d.deptype::text \
             FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
               AND d.refobjid = $1 AND d.deptype IN ('a', 'i') ORDER BY d.objid",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        let (sequence, column, deptype): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if deptype == "i" {
            out.identity_columns.push((column, sequence));
        } else {
            out.owned_sequences.push((sequence, column));
        }
    }
    for r in client
        .query(
            "SELECT string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type), \
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, \
                    a.is_grantable \
             FROM pg_catalog.pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a \
             WHERE c.oid = $1 AND a.grantee <> c.relowner \
             GROUP BY a.grantee, a.is_grantable ORDER BY 2, 3",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        out.grants.push((r.get(0), r.get(1), r.get(2)));
    }
    let owner = client
        .query_one(
            "SELECT quote_ident(pg_catalog.pg_get_userbyid(relowner)), \
                    pg_catalog.pg_get_userbyid(relowner) = current_user \
             FROM pg_catalog.pg_class WHERE oid = $1",
            &[&oid],
        )
        .await
        .map_err(err)?;
    if !owner.get::<_, bool>(1) {
        out.owner = Some(owner.get(0));
    }
    let blockers = client
        .query_one(
            "SELECT \
               (SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'f' AND confrelid = $1), \
               (SELECT count(*) FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
                 WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refobjid = $1 AND r.ev_class <> $1), \
               (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal), \
               (SELECT count(*) FROM pg_catalog.pg_inherits WHERE inhrelid = $1 OR inhparent = $1), \
               (SELECT count(*) FROM pg_catalog.pg_policy WHERE polrelid = $1), \
               (SELECT count(*) FROM pg_catalog.pg_publication_rel WHERE prrelid = $1)",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let reasons = [
        "foreign keys of other tables reference it",
        "views or rules depend on it",
        "it has triggers",
        "it takes part in table inheritance",
        "it has row security policies",
        "it belongs to a publication",
    ];
    for (i, reason) in reasons.iter().enumerate() {
        if blockers.get::<_, i64>(i) > 0 {
            out.blockers.push((*reason).to_owned());
        }
    }
    Ok(out)
}
