//! Change capture by logical replication: a publication and a `pgoutput` slot per capture, both
//! named by the capture's name, read over a replication connection (pgwire-replication) and
//! decoded by [`crate::pgoutput`].
//!
//! How it works:
//! * `create` checks the request, drops what may exist under the name, creates the publication
//!   (`FOR TABLE …`, published through partition roots) and then the slot on a replication
//!   connection with an exported snapshot. That connection stays open and idle inside the
//!   returned [`SlotSnapshot`] until it is dropped: only so long is the snapshot valid.
//! * `open` starts `START_REPLICATION` at the slot's `confirmed_flush_lsn` with binary values
//!   (PostgreSQL 14 and later; values decode with the binary COPY decoders). Streamed
//!   (in-progress) transactions are never asked for, so each transaction arrives whole, in commit
//!   order, and is handed on in parts of bounded size.
//! * Acknowledgements go to the replication client's applied position; its worker keeps sending
//!   standby status while the caller is slow. When nothing arrives for a while, a non-transactional
//!   logical message (`pg_logical_emit_message`) is written on an ordinary connection so that an
//!   idle or filtered slot still advances.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pgwire_replication::{
    Lsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig,
};
use sluice_connector::{
    CaptureLag, CaptureRequest, CaptureStart, ChangeStream, ConnectorError, ErrorKind,
    OpenTransaction, Result, SharedSnapshot,
};
use sluice_model::{
    CaptureMessage, ChangeOp, ColumnDef, ColumnName, Position, RowChange, TableRef, TransactionId,
    Value,
};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::config::{PostgresConfig, SslMode};
use crate::connect::{APPLICATION_NAME, connect};
use crate::copy::{ReadColumn, decode_timestamp};
use crate::error::{kind_of_state, pg_error};
use crate::introspect::{columns, find_relation};
use crate::pgoutput::{self, Field, Message, OldTuple};
use crate::types::{pg_type, quote_ident, quote_table, schema_of};

/// The prefix of the logical messages a stream writes as heartbeats.
pub const HEARTBEAT_PREFIX: &str = "sluice_heartbeat";

/// The oldest server a stream reads from (binary values in `pgoutput`).
const MIN_SERVER_VERSION: i32 = 140000;

/// How a change stream cuts transactions into parts and keeps an idle slot moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Most changes in one [`CaptureMessage::Changes`] part.
    pub part_changes: usize,
    /// Most bytes of values (as [`RowChange::byte_size`] counts them) in one part; a part holds
    /// at least one change.
    pub part_bytes: usize,
    /// After this long without a message of the log (keepalives do not count), a heartbeat
    /// message is written to it.
    pub heartbeat_interval: Duration,
    /// After this long with nothing sent outside a transaction, [`CaptureMessage::Idle`] is sent.
    pub idle_interval: Duration,
    /// How soon an acknowledged position is reported to the server.
    pub status_interval: Duration,
    /// The server's `wal_sender_timeout` for this session; `None` keeps the server's setting.
    pub wal_sender_timeout: Option<Duration>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            part_changes: 5_000,
            part_bytes: 8 << 20,
            heartbeat_interval: Duration::from_secs(10),
            idle_interval: Duration::from_secs(2),
            status_interval: Duration::from_secs(1),
            wal_sender_timeout: None,
        }
    }
}

/// Refuses a capture name that is not lowercase letters, digits and `_` of at most 63 bytes
/// (it names a slot and a publication and reaches replication commands).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::schema(format!(
            "capture name {name:?} is not 1 to 63 lowercase letters, digits and underscores"
        )))
    }
}

/// Classifies a replication client error; the server's own text is kept in the message.
fn replication_error(error: PgWireError, what: impl fmt::Display) -> ConnectorError {
    let (kind, reason) = match &error {
        PgWireError::Io(_) | PgWireError::Tls(_) => (
            ErrorKind::Connection,
            "the replication connection failed".to_owned(),
        ),
        PgWireError::Auth(_) => (
            ErrorKind::Auth,
            "the server refused the replication login".to_owned(),
        ),
        PgWireError::Server(text) => {
            let kind = text
                .find("SQLSTATE ")
                .and_then(|at| text.get(at + 9..at + 14))
                .map(|code| kind_of_state(&SqlState::from_code(code)))
                .unwrap_or(ErrorKind::Internal);
            (kind, text.clone())
        }
        PgWireError::MessageTooLarge { .. } => (
            ErrorKind::Data,
            "the server sent a message larger than allowed".to_owned(),
        ),
        _ => (
            ErrorKind::Connection,
            "the replication session ended unexpectedly".to_owned(),
        ),
    };
    ConnectorError::new(kind, format!("{what}: {reason}")).with_source(error)
}

/// The replication connection's settings for the capture called `name`.
fn replication_config(config: &PostgresConfig, name: &str) -> ReplicationConfig {
    let tls = match config.sslmode {
        SslMode::Disable => TlsConfig::disabled(),
        SslMode::Prefer => TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..TlsConfig::disabled()
        },
        SslMode::Require => TlsConfig::require(),
        SslMode::VerifyFull => TlsConfig::verify_full(None),
    };
    ReplicationConfig::new(
        config.host.clone(),
        config.user.clone(),
        config.password.clone().unwrap_or_default(),
        config.database.clone(),
        name,
        name,
    )
    .with_port(config.port)
    .with_tls(tls)
    .with_application_name(APPLICATION_NAME)
}

async fn server_version(client: &Client) -> Result<i32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| pg_error(e, "read the server version"))?;
    Ok(row.get(0))
}

/// Everything that keeps `request` from being captured, as sentences.
async fn problems(
    client: &Client,
    config: &PostgresConfig,
    request: &CaptureRequest,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = check_name(&request.name) {
        problems.push(e.message().to_owned());
    }
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), current_setting('server_version_num')::int, \
                    r.rolsuper, r.rolreplication, \
                    has_database_privilege(current_database(), 'CREATE'), current_user::text \
             FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "read the replication settings"))?;
    let wal_level: String = row.get(0);
    let version: i32 = row.get(1);
    let superuser: bool = row.get(2);
    let replication: bool = row.get(3);
    let create: bool = row.get(4);
    let user: String = row.get(5);
    if wal_level != "logical" {
        problems.push(format!(
            "the server has wal_level = {wal_level}; capture needs wal_level = logical \
             (ALTER SYSTEM SET wal_level = logical, then restart the server)"
        ));
    }
    if version < MIN_SERVER_VERSION {
        problems.push(format!(
            "the server is PostgreSQL {}.{}; capture needs PostgreSQL 14 or later",
            version / 10000,
            version % 10000
        ));
    }
    if !superuser && !replication {
        problems.push(format!(
            "user {user} may not replicate: ALTER ROLE {} REPLICATION",
            quote_ident(&user)
        ));
    }
    if !superuser && !create {
        problems.push(format!(
            "user {user} may not create a publication in this database: \
             GRANT CREATE ON DATABASE {} TO {}",
            quote_ident(&config.database),
            quote_ident(&user)
        ));
    }
    if request.tables.is_empty() {
        problems.push("the capture has no tables".to_owned());
    }
    for t in &request.tables {
        let table = &t.table;
        let quoted = quote_table(table, &config.schema);
        let schema = schema_of(table, &config.schema);
        let Some(relation) = find_relation(client, schema, table.name.as_str()).await? else {
            problems.push(format!("table {table} does not exist"));
            continue;
        };
        if !relation.is_table() {
            problems.push(format!("{table} is not a table"));
            continue;
        }
        let row = client
            .query_one(
                "SELECT c.relreplident::text, \
                        EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                                WHERE i.indrelid = c.oid AND i.indisprimary), \
                        EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                                WHERE i.indrelid = c.oid AND i.indisreplident), \
                        pg_has_role(c.relowner, 'USAGE') \
                 FROM pg_catalog.pg_class c WHERE c.oid = $1",
                &[&relation.oid],
            )
            .await
            .map_err(|e| pg_error(e, format_args!("read the replica identity of {table}")))?;
        let identity: String = row.get(0);
        let primary: bool = row.get(1);
        let index: bool = row.get(2);
        let owner: bool = row.get(3);
        let fix = format!("add a primary key or run ALTER TABLE {quoted} REPLICA IDENTITY FULL");
        match identity.as_str() {
            "n" => problems.push(format!(
                "table {table} has REPLICA IDENTITY NOTHING, so its updates and deletes cannot \
                 be captured: run ALTER TABLE {quoted} REPLICA IDENTITY FULL (or add a primary \
                 key and set REPLICA IDENTITY DEFAULT)"
            )),
            "d" if !primary => problems.push(format!(
                "table {table} has neither a primary key nor REPLICA IDENTITY FULL, so its \
                 updates and deletes cannot be captured: {fix}"
            )),
            "i" if !index => problems.push(format!(
                "table {table} has REPLICA IDENTITY USING INDEX without a valid index: {fix}"
            )),
            _ => {}
        }
        if !superuser && !owner {
            problems.push(format!(
                "user {user} does not own table {table}, which a publication of it needs"
            ));
        }
        for column in columns(client, relation.oid).await? {
            if pg_type(&column.native_type).is_none() {
                problems.push(format!(
                    "table {table} column {} has type {}, which sluice cannot carry",
                    column.name, column.native_type
                ));
            }
        }
    }
    Ok(problems)
}

/// Checks that `request` can be captured; changes nothing.
pub(crate) async fn check(config: &PostgresConfig, request: &CaptureRequest) -> Result<()> {
    let client = connect(config).await?;
    let problems = problems(&client, config, request).await?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(ConnectorError::schema(format!(
        "capture {} from {} cannot work: {}",
        request.name,
        config.describe(),
        problems.join("; ")
    )))
}

/// The snapshot a slot exported when it was created: valid while the replication connection that
/// created it stays open and idle, which it does until this is dropped.
pub struct SlotSnapshot {
    id: String,
    /// The gated replication session; dropping it ends the session.
    _session: ReplicationClient,
}

impl SharedSnapshot for SlotSnapshot {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Creates the publication and the slot (dropping what exists under the name first).
pub(crate) async fn create(
    config: &PostgresConfig,
    request: &CaptureRequest,
) -> Result<CaptureStart> {
    check(config, request).await?;
    let name = request.name.as_str();
    let client = connect(config).await?;
    let version = server_version(&client).await?;
    drop_with(&client, config, name).await?;
    let tables: Vec<String> = request
        .tables
        .iter()
        .map(|t| quote_table(&t.table, &config.schema))
        .collect();
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
            quote_ident(name),
            tables.join(", ")
        ))
        .await
        .map_err(|e| pg_error(e, format_args!("create publication {name}")))?;
    match create_slot(config, name, version).await {
        Ok(start) => Ok(start),
        Err(error) => {
            // Leave nothing half made behind.
            let _ = drop_with(&client, config, name).await;
            Err(error)
        }
    }
}

async fn create_slot(config: &PostgresConfig, name: &str, version: i32) -> Result<CaptureStart> {
    let what = format!("create replication slot {name} at {}", config.describe());
    let mut session = ReplicationClient::connect_gated(replication_config(config, name))
        .await
        .map_err(|e| replication_error(e, &what))?;
    let command = if version >= 150000 {
        format!("CREATE_REPLICATION_SLOT {name} LOGICAL pgoutput (SNAPSHOT 'export')")
    } else {
        format!("CREATE_REPLICATION_SLOT {name} LOGICAL pgoutput EXPORT_SNAPSHOT")
    };
    let rows = session
        .simple_query(&command)
        .await
        .map_err(|e| replication_error(e, &what))?;
    let field = |i: usize| -> Result<String> {
        rows.first()
            .and_then(|row| row.get(i))
            .and_then(|v| v.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| {
                ConnectorError::internal(format!(
                    "{what}: the server's answer lacks column {}",
                    i + 1
                ))
            })
    };
    let point = field(1)?;
    let lsn = Lsn::parse(&point)
        .map_err(|_| ConnectorError::internal(format!("{what}: {point:?} is not an LSN")))?;
    let id = field(2)?;
    tracing::info!(capture = name, position = %point, "replication slot created");
    Ok(CaptureStart {
        position: Position::Lsn { lsn: lsn.as_u64() },
        snapshot: Some(Box::new(SlotSnapshot {
            id,
            _session: session,
        })),
    })
}

/// How long a drop waits for the slot's walsender to end.
const DROP_WAIT: Duration = Duration::from_secs(30);

/// Drops the slot (ending a session that holds it) and the publication called `name`.
async fn drop_with(client: &Client, config: &PostgresConfig, name: &str) -> Result<()> {
    let deadline = Instant::now() + DROP_WAIT;
    loop {
        let row = client
            .query_opt(
                "SELECT active_pid FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name = $1 AND database = current_database()",
                &[&name],
            )
            .await
            .map_err(|e| pg_error(e, format_args!("look up replication slot {name}")))?;
        let Some(row) = row else { break };
        if Instant::now() > deadline {
            return Err(ConnectorError::new(
                ErrorKind::Timeout,
                format!(
                    "replication slot {name} at {} stayed in use for {} s",
                    config.describe(),
                    DROP_WAIT.as_secs()
                ),
            ));
        }
        let pid: Option<i32> = row.get(0);
        if let Some(pid) = pid {
            client
                .execute("SELECT pg_catalog.pg_terminate_backend($1)", &[&pid])
                .await
                .map_err(|e| pg_error(e, format_args!("end the session reading slot {name}")))?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        match client
            .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[&name])
            .await
        {
            Ok(_) => break,
            // Taken again meanwhile (in use) or gone: look again.
            Err(e)
                if e.code() == Some(&SqlState::OBJECT_IN_USE)
                    || e.code() == Some(&SqlState::UNDEFINED_OBJECT) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(pg_error(e, format_args!("drop replication slot {name}"))),
        }
    }
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .await
        .map_err(|e| pg_error(e, format_args!("drop publication {name}")))?;
    Ok(())
}

/// Drops what `create` made for `name`; nothing there is fine.
pub(crate) async fn drop(config: &PostgresConfig, name: &str) -> Result<()> {
    check_name(name)?;
    let client = connect(config).await?;
    drop_with(&client, config, name).await
}

/// Whether both the slot and the publication called `name` exist.
pub(crate) async fn exists(config: &PostgresConfig, name: &str) -> Result<bool> {
    check_name(name)?;
    let client = connect(config).await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots \
                            WHERE slot_name = $1 AND database = current_database()) \
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1)",
            &[&name],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("look up capture {name}")))?;
    Ok(row.get(0))
}

/// The slot's lag behind the current WAL position and whether a session reads it.
pub(crate) async fn lag(config: &PostgresConfig, name: &str) -> Result<Option<CaptureLag>> {
    check_name(name)?;
    let client = connect(config).await?;
    let row = client
        .query_opt(
            "SELECT COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), \
                        COALESCE(confirmed_flush_lsn, restart_lsn)), 0)::bigint, active \
             FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = $1 AND database = current_database()",
            &[&name],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("read the lag of capture {name}")))?;
    Ok(row.map(|r| CaptureLag {
        bytes: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
        active: r.get(1),
    }))
}

/// The server's current write-ahead log position (`pg_current_wal_lsn()`): every transaction
/// committed before this call ends at or before it. Then a heartbeat message is written to the
/// log after it, so that a capture of this database with nothing else to read reaches a position
/// past it at once (it sends `Idle` on a message) rather than at its next idle interval.
pub(crate) async fn current_position(config: &PostgresConfig) -> Result<Position> {
    let client = connect(config).await?;
    let row = client
        .query_one(
            "SELECT (pg_catalog.pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("read the current log position")))?;
    let lsn = u64::try_from(row.get::<_, i64>(0))
        .map_err(|_| ConnectorError::data("the server reported a negative log position"))?;
    // Only a shortcut: a server that refuses it (no logical decoding) still has the position.
    if let Err(error) = client
        .execute(
            "SELECT pg_catalog.pg_logical_emit_message(false, $1, '')",
            &[&HEARTBEAT_PREFIX],
        )
        .await
    {
        tracing::debug!(error = %error, "no heartbeat after reading the log position");
    }
    Ok(Position::Lsn { lsn })
}

/// Starts streaming the capture `request.name` from its slot's confirmed position.
pub(crate) async fn open(
    config: &PostgresConfig,
    request: &CaptureRequest,
    options: CaptureOptions,
) -> Result<PgChangeStream> {
    let name = request.name.as_str();
    check_name(name)?;
    let client = connect(config).await?;
    let version = server_version(&client).await?;
    if version < MIN_SERVER_VERSION {
        return Err(ConnectorError::unsupported(format!(
            "capture from {} needs PostgreSQL 14 or later (binary logical replication); \
             the server is {}.{}",
            config.describe(),
            version / 10000,
            version % 10000
        )));
    }
    let row = client
        .query_opt(
            "SELECT s.confirmed_flush_lsn::text, \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1) \
             FROM pg_catalog.pg_replication_slots s \
             WHERE s.slot_name = $1 AND s.database = current_database() AND s.plugin = 'pgoutput'",
            &[&name],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("look up replication slot {name}")))?;
    let missing = || {
        ConnectorError::not_found(format!(
            "capture {name} does not exist at {}; it must be created first",
            config.describe()
        ))
    };
    let Some(row) = row else {
        return Err(missing());
    };
    let confirmed: Option<String> = row.get(0);
    if !row.get::<_, bool>(1) {
        return Err(missing());
    }
    // Every requested table must be published, or its changes would silently go missing.
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables \
             WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("read the tables of publication {name}")))?;
    let published: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let unpublished: Vec<String> = request
        .tables
        .iter()
        .filter(|t| {
            let schema = schema_of(&t.table, &config.schema);
            !published
                .iter()
                .any(|(s, n)| s == schema && n == t.table.name.as_str())
        })
        .map(|t| t.table.to_string())
        .collect();
    if !unpublished.is_empty() {
        return Err(ConnectorError::schema(format!(
            "capture {name} at {} does not cover table {}; create the capture again",
            config.describe(),
            unpublished.join(", ")
        )));
    }
    let start = match confirmed.as_deref().map(Lsn::parse) {
        Some(Ok(lsn)) => lsn,
        Some(Err(_)) | None => Lsn::ZERO,
    };
    let what = format!("start capture {name} at {}", config.describe());
    let replication = replication_config(config, name)
        .with_start_lsn(start)
        .with_binary(true)
        .with_status_interval(options.status_interval)
        .with_wakeup_interval(options.idle_interval.max(Duration::from_secs(1)))
        .with_buffer_size(4096);
    let replication = match options.wal_sender_timeout {
        Some(timeout) => replication.with_options(format!(
            "-c wal_sender_timeout={}ms",
            timeout.as_millis().max(1)
        )),
        None => replication,
    };
    let mut session = ReplicationClient::connect(replication)
        .await
        .map_err(|e| replication_error(e, &what))?;
    session
        .wait_started()
        .await
        .map_err(|e| replication_error(e, &what))?;
    tracing::info!(capture = name, position = %start, "capture started");
    let mut tables = HashMap::new();
    for (i, t) in request.tables.iter().enumerate() {
        tables.insert(
            (
                schema_of(&t.table, &config.schema).to_owned(),
                t.table.name.as_str().to_owned(),
            ),
            i,
        );
    }
    let now = Instant::now();
    Ok(PgChangeStream {
        session,
        sql: Arc::new(client),
        config: config.clone(),
        request: request.clone(),
        tables,
        relations: HashMap::new(),
        sent: HashMap::new(),
        type_names: HashMap::new(),
        out: VecDeque::new(),
        transaction: None,
        position: start.as_u64(),
        server_time: None,
        last_data: now,
        last_sent: now,
        heartbeat: None,
        options,
        scratch: String::new(),
    })
}

/// A relation as announced in this session.
struct RelationState {
    /// Index into the request's tables; `None` for a table outside the request.
    table: Option<usize>,
    columns: Vec<ColumnDef>,
    decoders: Vec<ReadColumn>,
}

/// A running capture: reads the slot, decodes, and hands on [`CaptureMessage`]s.
pub struct PgChangeStream {
    session: ReplicationClient,
    /// An ordinary connection for type names, keys and heartbeats.
    sql: Arc<Client>,
    config: PostgresConfig,
    request: CaptureRequest,
    /// Request tables by (schema, name).
    tables: HashMap<(String, String), usize>,
    relations: HashMap<u32, RelationState>,
    /// The last Relation sent per request table.
    sent: HashMap<usize, (Vec<ColumnDef>, Vec<usize>)>,
    /// `format_type` by (type oid, modifier), domains resolved to their base type.
    type_names: HashMap<(u32, i32), String>,
    out: VecDeque<CaptureMessage>,
    transaction: Option<OpenTransaction>,
    /// The log position everything received so far is complete up to (between transactions).
    position: u64,
    server_time: Option<DateTime<Utc>>,
    /// When the last message of the log itself (not a keepalive) arrived, or a heartbeat was
    /// written: keepalives alone do not prove that this database's log moves.
    last_data: Instant,
    last_sent: Instant,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    options: CaptureOptions,
    scratch: String,
}

fn pg_time(micros: i64) -> Option<DateTime<Utc>> {
    decode_timestamp(micros).ok()
}

/// Decodes a tuple of `relation`: values, and the indexes of unchanged (unsent) columns.
fn decode_tuple(
    relation: &RelationState,
    table: &TableRef,
    fields: Vec<Field>,
    scratch: &mut String,
) -> Result<(Vec<Value>, Vec<usize>)> {
    if fields.len() != relation.columns.len() {
        return Err(ConnectorError::data(format!(
            "table {table}: a change has {} columns, its relation {}",
            fields.len(),
            relation.columns.len()
        )));
    }
    let mut values = Vec::with_capacity(fields.len());
    let mut unchanged = Vec::new();
    for (i, field) in fields.into_iter().enumerate() {
        let value =
            match field {
                Field::Null => Value::Null,
                Field::Unchanged => {
                    unchanged.push(i);
                    Value::Null
                }
                Field::Binary(bytes) => relation.decoders[i]
                    .decode(Some(&bytes), scratch)
                    .map_err(|reason| {
                        ConnectorError::data(format!(
                            "table {table} column {}: {reason}",
                            relation.columns[i].name
                        ))
                    })?,
                Field::Text(_) => {
                    return Err(ConnectorError::unsupported(format!(
                        "table {table} column {}: the server sent a text value where binary \
                     was asked for",
                        relation.columns[i].name
                    )));
                }
            };
        values.push(value);
    }
    Ok((values, unchanged))
}

/// The request table and state of relation `oid`; `None` for tables outside the request.
fn lookup<'a>(
    relations: &'a HashMap<u32, RelationState>,
    request: &CaptureRequest,
    oid: u32,
) -> Result<Option<(&'a RelationState, TableRef)>> {
    let state = relations.get(&oid).ok_or_else(|| {
        ConnectorError::internal(format!(
            "the server sent a change of relation {oid} before describing it"
        ))
    })?;
    Ok(state
        .table
        .map(|i| (state, request.tables[i].table.clone())))
}

impl PgChangeStream {
    /// The type name of a column as `format_type` spells it (a domain's base type).
    async fn type_name(&mut self, oid: u32, modifier: i32) -> Result<String> {
        if let Some(name) = self.type_names.get(&(oid, modifier)) {
            return Ok(name.clone());
        }
        let row = self
            .sql
            .query_opt(
                "SELECT pg_catalog.format_type( \
                    CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END, \
                    CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE $2 END) \
                 FROM pg_catalog.pg_type t WHERE t.oid = $1",
                &[&oid, &modifier],
            )
            .await
            .map_err(|e| pg_error(e, format_args!("look up type {oid}")))?;
        let name: String = row
            .map(|r| r.get(0))
            .ok_or_else(|| ConnectorError::schema(format!("type {oid} does not exist")))?;
        self.type_names.insert((oid, modifier), name.clone());
        Ok(name)
    }

    /// The primary key columns of relation `oid`, by name, in key order.
    async fn primary_key(&self, oid: u32) -> Result<Vec<String>> {
        let rows = self
            .sql
            .query(
                "SELECT a.attname::text FROM pg_catalog.pg_index i \
                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
                &[&oid],
            )
            .await
            .map_err(|e| pg_error(e, "read a primary key"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn on_relation(&mut self, relation: pgoutput::Relation) -> Result<()> {
        let schema = if relation.namespace.is_empty() {
            "pg_catalog".to_owned()
        } else {
            relation.namespace.clone()
        };
        let Some(&index) = self.tables.get(&(schema, relation.name.clone())) else {
            self.relations.insert(
                relation.oid,
                RelationState {
                    table: None,
                    columns: Vec::new(),
                    decoders: Vec::new(),
                },
            );
            return Ok(());
        };
        let table = self.request.tables[index].table.clone();
        let mut columns = Vec::with_capacity(relation.columns.len());
        let mut decoders = Vec::with_capacity(relation.columns.len());
        for c in &relation.columns {
            let native = self.type_name(c.type_oid, c.type_modifier).await?;
            let ty = pg_type(&native).ok_or_else(|| {
                ConnectorError::unsupported(format!(
                    "table {table} column {} has type {native}, which sluice cannot carry",
                    c.name
                ))
            })?;
            let declared = self.request.tables[index]
                .columns
                .iter()
                .find(|d| d.name.as_str() == c.name);
            let name = ColumnName::new(c.name.clone()).map_err(|e| {
                ConnectorError::schema(format!(
                    "table {table} column {:?} cannot be carried: {e}",
                    c.name
                ))
            })?;
            columns.push(ColumnDef {
                name,
                data_type: ty.data_type,
                // Replica identity columns are never NULL, except with REPLICA IDENTITY FULL
                // (where every column is flagged).
                nullable: declared.is_none_or(|d| d.nullable)
                    && !(c.key && relation.replica_identity != b'f'),
                native_type: Some(native),
            });
            decoders.push(ReadColumn {
                wire: ty.wire,
                data_type: ty.data_type,
                convert: false,
            });
        }
        let flagged: Vec<usize> = (0..relation.columns.len())
            .filter(|&i| relation.columns[i].key)
            .collect();
        let key = if relation.replica_identity == b'f' {
            // Every column identifies the row; the primary key, when there is one, is the key.
            let names = self.primary_key(relation.oid).await?;
            let pk: Vec<usize> = names
                .iter()
                .filter_map(|n| relation.columns.iter().position(|c| &c.name == n))
                .collect();
            if !pk.is_empty() && pk.len() == names.len() {
                pk
            } else {
                flagged
            }
        } else {
            flagged
        };
        let announce = self.sent.get(&index) != Some(&(columns.clone(), key.clone()));
        if announce {
            self.flush_part();
            self.sent.insert(index, (columns.clone(), key.clone()));
            self.out.push_back(CaptureMessage::Relation {
                table,
                columns: columns.clone(),
                key,
            });
        }
        self.relations.insert(
            relation.oid,
            RelationState {
                table: Some(index),
                columns,
                decoders,
            },
        );
        Ok(())
    }

    fn push(&mut self, change: RowChange) -> Result<()> {
        let open = self.transaction.as_mut().ok_or_else(|| {
            ConnectorError::internal("the server sent a change outside a transaction")
        })?;
        if let Some(part) = open.push(change, self.options.part_changes, self.options.part_bytes) {
            self.out.push_back(part);
        }
        Ok(())
    }

    /// Hands on the changes collected so far, if any.
    fn flush_part(&mut self) {
        if let Some(part) = self
            .transaction
            .as_mut()
            .and_then(OpenTransaction::take_part)
        {
            self.out.push_back(part);
        }
    }

    fn idle(&mut self, at: Option<DateTime<Utc>>) {
        if self.transaction.is_none() {
            self.out.push_back(CaptureMessage::Idle {
                position: Position::Lsn { lsn: self.position },
                at: at.or(self.server_time),
            });
        }
    }

    fn on_begin(&mut self, final_lsn: u64, commit_time: i64) -> Result<()> {
        if self.transaction.is_some() {
            return Err(ConnectorError::internal(
                "the server began a transaction inside another",
            ));
        }
        let commit_time = decode_timestamp(commit_time).map_err(|reason| {
            ConnectorError::data(format!("a transaction's commit time: {reason}"))
        })?;
        self.transaction = Some(OpenTransaction::new(TransactionId {
            commit: Position::Lsn { lsn: final_lsn },
            commit_time,
        }));
        Ok(())
    }

    fn on_commit(&mut self, end_lsn: u64) -> Result<()> {
        self.flush_part();
        let open = self.transaction.take().ok_or_else(|| {
            ConnectorError::internal("the server committed a transaction it never began")
        })?;
        self.position = self.position.max(end_lsn);
        if open.count == 0 {
            self.idle(Some(open.id.commit_time));
        } else {
            self.out.push_back(CaptureMessage::Commit {
                transaction: open.id,
                ack: Position::Lsn { lsn: end_lsn },
                change_count: open.count,
            });
        }
        Ok(())
    }

    async fn on_message(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Begin {
                final_lsn,
                commit_time,
                ..
            } => self.on_begin(final_lsn, commit_time)?,
            Message::Commit { end_lsn, .. } => self.on_commit(end_lsn)?,
            Message::Logical {
                transactional, lsn, ..
            } => {
                if !transactional && self.transaction.is_none() {
                    self.position = self.position.max(lsn);
                    self.idle(None);
                }
            }
            Message::Origin { .. } | Message::Type { .. } => {}
            Message::Relation(relation) => self.on_relation(relation).await?,
            Message::Insert { relation, new } => {
                if let Some((state, table)) = lookup(&self.relations, &self.request, relation)? {
                    let (after, unchanged) = decode_tuple(state, &table, new, &mut self.scratch)?;
                    self.push(RowChange {
                        table,
                        op: ChangeOp::Insert,
                        before: None,
                        before_is_key: false,
                        after: Some(after),
                        unchanged,
                    })?;
                }
            }
            Message::Update { relation, old, new } => {
                if let Some((state, table)) = lookup(&self.relations, &self.request, relation)? {
                    let (before, before_is_key) = match old {
                        None => (None, false),
                        Some(OldTuple::Key(fields)) => (
                            Some(decode_tuple(state, &table, fields, &mut self.scratch)?.0),
                            true,
                        ),
                        Some(OldTuple::Old(fields)) => (
                            Some(decode_tuple(state, &table, fields, &mut self.scratch)?.0),
                            false,
                        ),
                    };
                    let (after, unchanged) = decode_tuple(state, &table, new, &mut self.scratch)?;
                    self.push(RowChange {
                        table,
                        op: ChangeOp::Update,
                        before,
                        before_is_key,
                        after: Some(after),
                        unchanged,
                    })?;
                }
            }
            Message::Delete { relation, old } => {
                if let Some((state, table)) = lookup(&self.relations, &self.request, relation)? {
                    let (fields, before_is_key) = match old {
                        OldTuple::Key(fields) => (fields, true),
                        OldTuple::Old(fields) => (fields, false),
                    };
                    let (before, _) = decode_tuple(state, &table, fields, &mut self.scratch)?;
                    self.push(RowChange {
                        table,
                        op: ChangeOp::Delete,
                        before: Some(before),
                        before_is_key,
                        after: None,
                        unchanged: Vec::new(),
                    })?;
                }
            }
            Message::Truncate { relations, .. } => {
                for oid in relations {
                    if let Some((_, table)) = lookup(&self.relations, &self.request, oid)? {
                        self.push(RowChange {
                            table,
                            op: ChangeOp::Truncate,
                            before: None,
                            before_is_key: false,
                            after: None,
                            unchanged: Vec::new(),
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, event: ReplicationEvent) -> Result<()> {
        match event {
            ReplicationEvent::KeepAlive {
                wal_end,
                server_time_micros,
                ..
            } => {
                self.server_time = pg_time(server_time_micros).or(self.server_time);
                if self.transaction.is_none() {
                    self.position = self.position.max(wal_end.as_u64());
                }
            }
            ReplicationEvent::Begin {
                final_lsn,
                commit_time_micros,
                ..
            } => self.on_begin(final_lsn.as_u64(), commit_time_micros)?,
            ReplicationEvent::Commit { end_lsn, .. } => self.on_commit(end_lsn.as_u64())?,
            ReplicationEvent::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => {
                self.on_message(Message::Logical {
                    transactional,
                    lsn: lsn.as_u64(),
                    prefix,
                    content,
                })
                .await?
            }
            ReplicationEvent::XLogData {
                data,
                server_time_micros,
                ..
            } => {
                self.server_time = pg_time(server_time_micros).or(self.server_time);
                let message = pgoutput::decode(data).map_err(|e| {
                    ConnectorError::data(format!("capture {}: {e}", self.request.name))
                        .with_source(e)
                })?;
                self.on_message(message).await?;
            }
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// Writes a heartbeat message to the log on the ordinary connection, in the background.
    fn heartbeat(&mut self) {
        if self.heartbeat.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let sql = Arc::clone(&self.sql);
        let name = self.request.name.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            if let Err(error) = sql
                .execute(
                    "SELECT pg_catalog.pg_logical_emit_message(false, $1, '')",
                    &[&HEARTBEAT_PREFIX],
                )
                .await
            {
                tracing::warn!(capture = %name, error = %error, "heartbeat failed");
            }
        }));
    }

    /// The configuration the stream reads with.
    pub fn options(&self) -> &CaptureOptions {
        &self.options
    }
}

#[async_trait]
impl ChangeStream for PgChangeStream {
    async fn next(&mut self) -> Result<CaptureMessage> {
        loop {
            if let Some(message) = self.out.pop_front() {
                self.last_sent = Instant::now();
                return Ok(message);
            }
            let now = Instant::now();
            if self.transaction.is_none() && now >= self.last_sent + self.options.idle_interval {
                self.idle(None);
                continue;
            }
            let heartbeat_at = self.last_data + self.options.heartbeat_interval;
            if now >= heartbeat_at {
                self.heartbeat();
                self.last_data = now;
                continue;
            }
            let mut wake = heartbeat_at;
            if self.transaction.is_none() {
                wake = wake.min(self.last_sent + self.options.idle_interval);
            }
            match tokio::time::timeout_at(wake, self.session.recv()).await {
                Err(_) => continue,
                Ok(Ok(Some(event))) => {
                    if !matches!(event, ReplicationEvent::KeepAlive { .. }) {
                        self.last_data = Instant::now();
                    }
                    self.on_event(event).await?;
                }
                Ok(Ok(None)) => {
                    return Err(ConnectorError::new(
                        ErrorKind::Connection,
                        format!(
                            "capture {} at {}: the replication stream ended",
                            self.request.name,
                            self.config.describe()
                        ),
                    ));
                }
                Ok(Err(e)) => {
                    return Err(replication_error(
                        e,
                        format_args!(
                            "capture {} at {}",
                            self.request.name,
                            self.config.describe()
                        ),
                    ));
                }
            }
        }
    }

    fn ack(&mut self, position: &Position) -> Result<()> {
        match position {
            Position::Lsn { lsn } => {
                self.session.update_applied_lsn(Lsn::from_u64(*lsn));
                Ok(())
            }
            other => Err(ConnectorError::internal(format!(
                "capture {}: {other} is not a PostgreSQL log position",
                self.request.name
            ))),
        }
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        let name = self.request.name.clone();
        match tokio::time::timeout(Duration::from_secs(10), self.session.shutdown()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(replication_error(e, format_args!("stop capture {name}"))),
            Err(_) => {
                self.session.abort();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn capture_names_are_plain_identifiers() {
        for good in ["c", "hub1_ch1_src", &"a".repeat(63)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Upper", "a-b", "a b", "x'; DROP", &"a".repeat(64)] {
            let err = check_name(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Schema, "{bad}");
        }
    }

    #[test]
    fn replication_errors_classify_by_sqlstate() {
        let server = |text: &str| replication_error(PgWireError::Server(text.into()), "start");
        let missing = server("replication slot \"x\" does not exist (SQLSTATE 42704)");
        assert_eq!(missing.kind(), ErrorKind::Schema);
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        assert_eq!(
            server("password authentication failed (SQLSTATE 28P01)").kind(),
            ErrorKind::Auth
        );
        assert_eq!(server("no code").kind(), ErrorKind::Internal);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            replication_error(PgWireError::Io(Arc::new(io)), "start").kind(),
            ErrorKind::Connection
        );
        assert_eq!(
            replication_error(PgWireError::Auth("no".into()), "start").kind(),
            ErrorKind::Auth
        );
    }

    #[test]
    fn replication_settings_follow_the_location() {
        let mut config = PostgresConfig::new("db");
        config.host = "db.example".into();
        config.port = 6543;
        config.user = "u".into();
        config.password = Some("secret".into());
        config.sslmode = SslMode::VerifyFull;
        let r = replication_config(&config, "cap");
        assert_eq!(
            (
                r.host.as_str(),
                r.port,
                r.user.as_str(),
                r.password.as_str()
            ),
            ("db.example", 6543, "u", "secret")
        );
        assert_eq!((r.database.as_str(), r.slot.as_str()), ("db", "cap"));
        assert_eq!(r.tls.mode, pgwire_replication::SslMode::VerifyFull);
        config.sslmode = SslMode::Disable;
        assert_eq!(
            replication_config(&config, "cap").tls.mode,
            pgwire_replication::SslMode::Disable
        );
    }
}
