//! Capture → integrate: a source's change stream applied to its targets, exactly once.
//!
//! One reader task owns the source's [`ChangeStream`] and hands messages on through a queue
//! bounded in bytes (a huge source transaction streams through; it never piles up in memory). The
//! runner feeds every message to one [`Coalescer`] per target, which keeps the last state of each
//! key (insert then delete is a delete, two updates are the last one) already mapped to the
//! target's columns and types. A target's batch is applied in one target transaction together
//! with its [`Checkpoint`] when it reaches its row or byte limit, or has waited `max_wait`, at a
//! transaction boundary (or mid-transaction when one transaction alone exceeds the limits).
//!
//! **Exactly once.** A restart resumes the stream from the position last acknowledged to the
//! source, which is never past what every target stored; each target skips what its own
//! checkpoint says it has ([`Checkpoint::skip`]). A position is acknowledged only after every
//! target committed it.
//!
//! **Schema changes.** A table's columns are announced before its first change and again when they
//! change at the source: an added column is added to every target (after the batch so far is
//! applied); a dropped or retyped column of a target stops the run with an error naming table and
//! column, never writing wrong data.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_connector::{
    ChangeApplier, ChangeStream, ConnectorError, IntegrateBatch, IntegrateTable, PartialUpdate,
    TableChanges,
};
use sluice_model::{
    BatchLimits, CaptureMessage, ChangeOp, Checkpoint, ColumnDef, ColumnName, LocationName,
    Position, RowBatch, RowChange, TableName, TableRef, TransactionId, Value,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::map::convert;

/// When a target's batch is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyLimits {
    /// Coalesced rows per target transaction.
    pub max_rows: usize,
    /// Approximate bytes of values per target transaction.
    pub max_bytes: usize,
    /// How long the first change of a batch may wait for more while changes keep arriving.
    pub max_wait: Duration,
    /// How long a batch waits for more once nothing more has arrived (the source is caught up):
    /// then it is applied at once, so a quiet source's changes arrive within this and the
    /// apply's own time.
    pub min_wait: Duration,
}

impl Default for ApplyLimits {
    fn default() -> Self {
        ApplyLimits {
            max_rows: 50_000,
            max_bytes: 32 << 20,
            max_wait: Duration::from_millis(100),
            min_wait: Duration::from_millis(10),
        }
    }
}

/// What to replicate.
pub struct ReplicationPlan {
    /// The channel's tables at the source.
    pub tables: Vec<ReplicatedTable>,
    /// The targets; each one's `request.tables` is parallel to `tables`.
    pub targets: Vec<ReplicationTarget>,
    /// Batch limits.
    pub limits: ApplyLimits,
    /// Bytes of captured messages in flight between the reader and the appliers.
    pub queue_bytes: usize,
}

/// One table of the channel.
#[derive(Debug, Clone)]
pub struct ReplicatedTable {
    /// The channel's name for it.
    pub name: TableName,
    /// The table at the source.
    pub source: TableRef,
    /// Source columns no target gets (and that are not added when they appear).
    pub ignored: BTreeSet<ColumnName>,
}

/// One target of the channel, opened.
pub struct ReplicationTarget {
    /// The target location.
    pub location: LocationName,
    /// Its tables, parallel to [`ReplicationPlan::tables`].
    pub tables: Vec<IntegrateTable>,
    /// The open applier.
    pub applier: Box<dyn ChangeApplier>,
}

/// Changes of one table handed to observers (the event hub), in source order.
#[derive(Debug, Clone)]
pub struct CapturedChanges {
    /// The channel's name for the table.
    pub table: TableName,
    /// The source's columns, in row-image order.
    pub columns: Arc<Vec<ColumnDef>>,
    /// Indexes of the key columns.
    pub key: Arc<Vec<usize>>,
    /// The transaction.
    pub transaction: TransactionId,
    /// Index of the first change within the transaction.
    pub first_index: u64,
    /// The changes.
    pub changes: Vec<RowChange>,
}

/// Counts per operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// Inserts.
    pub inserts: u64,
    /// Updates.
    pub updates: u64,
    /// Deletes.
    pub deletes: u64,
    /// Truncates.
    pub truncates: u64,
}

impl OpCounts {
    /// All changes counted.
    pub fn total(&self) -> u64 {
        self.inserts + self.updates + self.deletes + self.truncates
    }

    fn add(&mut self, op: ChangeOp) {
        match op {
            ChangeOp::Insert => self.inserts += 1,
            ChangeOp::Update => self.updates += 1,
            ChangeOp::Delete => self.deletes += 1,
            ChangeOp::Truncate => self.truncates += 1,
        }
    }
}

/// What the runner reports as it goes; sent without waiting for a reader.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReplicationEvent {
    /// Changes of a table were read from the source.
    Captured {
        /// The table.
        table: TableName,
        /// Changes per operation.
        counts: OpCounts,
        /// Commit time of their transaction at the source.
        commit_time: DateTime<Utc>,
        /// When they were read.
        at: DateTime<Utc>,
    },
    /// A target committed a batch.
    Applied {
        /// The target.
        target: LocationName,
        /// Per table, what was applied (coalesced).
        tables: Vec<(TableName, OpCounts)>,
        /// Commit time at the source of the last transaction in the batch.
        source_commit_time: Option<DateTime<Utc>>,
        /// When the target committed.
        committed_at: DateTime<Utc>,
        /// The stored checkpoint.
        checkpoint: Checkpoint,
    },
    /// A position was acknowledged to the source.
    Acknowledged {
        /// The position.
        position: Position,
    },
    /// A column that appeared at the source was added to a target.
    ColumnAdded {
        /// The target.
        target: LocationName,
        /// The table.
        table: TableName,
        /// The column.
        column: ColumnName,
    },
}

/// Why a replication run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Reading the source failed.
    #[error("capture")]
    Capture(#[source] ConnectorError),
    /// Applying to a target failed.
    #[error("integrate into {target}")]
    Integrate {
        /// The target.
        target: LocationName,
        /// What went wrong.
        #[source]
        source: ConnectorError,
    },
    /// The source's tables changed in a way the targets cannot follow, or a change cannot be
    /// applied as it is.
    #[error("{0}")]
    Schema(String),
}

impl ReplicationError {
    /// Whether trying again may succeed (a broken connection, a timeout).
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplicationError::Capture(e) => e.kind().is_retryable(),
            ReplicationError::Integrate { source, .. } => source.kind().is_retryable(),
            ReplicationError::Schema(_) => false,
        }
    }
}

type Result<T> = std::result::Result<T, ReplicationError>;

/// Runs `plan` on `stream` until `cancel` fires (then returns `Ok`) or an error stops it.
/// Reports on `events`; when `publish` is given, every captured change of the channel's tables
/// goes there too (waiting for room: a slow consumer slows capture, it never grows memory).
pub async fn run_replication(
    stream: Box<dyn ChangeStream>,
    plan: ReplicationPlan,
    events: mpsc::UnboundedSender<ReplicationEvent>,
    publish: Option<mpsc::Sender<CapturedChanges>>,
    cancel: CancellationToken,
) -> Result<()> {
    let queue_bytes = plan.queue_bytes.max(1 << 20);
    let budget = Arc::new(Semaphore::new(queue_bytes));
    let (tx, mut rx) = mpsc::channel::<Queued>(1024);
    let (ack_tx, ack_rx) = watch::channel::<Option<Position>>(None);
    let reader_cancel = cancel.child_token();
    let reader = tokio::spawn(read_stream(
        stream,
        tx,
        budget.clone(),
        queue_bytes,
        ack_rx,
        reader_cancel.clone(),
    ));
    let mut runner = Runner::new(plan, events, publish);
    let outcome = async {
        loop {
            let wait = runner.next_deadline();
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                next = rx.recv() => next,
                // Only when no message is waiting: what is pending at a transaction boundary
                // goes now rather than waiting for more that is not coming.
                _ = sleep_until(wait) => {
                    runner.flush_due(true).await?;
                    if let Some(p) = runner.ack_position() {
                        let _ = ack_tx.send(Some(p));
                    }
                    continue;
                }
            };
            let Some(queued) = next else {
                // The reader stopped: on cancel, or after sending its error.
                return Ok(());
            };
            let message = match queued.message {
                Ok(message) => message,
                Err(e) => return Err(ReplicationError::Capture(e)),
            };
            runner.handle(message).await?;
            drop(queued.permit);
            if let Some(p) = runner.ack_position() {
                let _ = ack_tx.send(Some(p));
            }
        }
    }
    .await;
    reader_cancel.cancel();
    drop(rx);
    let _ = reader.await;
    outcome
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

struct Queued {
    message: std::result::Result<CaptureMessage, ConnectorError>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

fn message_bytes(message: &CaptureMessage) -> usize {
    match message {
        CaptureMessage::Changes { changes, .. } => {
            changes.iter().map(RowChange::byte_size).sum::<usize>() + 64
        }
        _ => 256,
    }
}

/// Owns the stream: reads, queues within the byte budget, and passes on acknowledgements between
/// reads (the stream keeps the source's status updates going by itself while this waits).
async fn read_stream(
    mut stream: Box<dyn ChangeStream>,
    tx: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    queue_bytes: usize,
    mut acks: watch::Receiver<Option<Position>>,
    cancel: CancellationToken,
) {
    let mut acked: Option<Position> = None;
    loop {
        if acks.has_changed().unwrap_or(false) {
            let position = acks.borrow_and_update().clone();
            if let Some(p) = position
                && acked.as_ref() != Some(&p)
            {
                if let Err(e) = stream.ack(&p) {
                    let permit = budget.clone().acquire_many_owned(1).await;
                    if let Ok(permit) = permit {
                        let _ = tx
                            .send(Queued {
                                message: Err(e),
                                permit,
                            })
                            .await;
                    }
                    break;
                }
                acked = Some(p);
            }
        }
        let message = tokio::select! {
            _ = cancel.cancelled() => break,
            m = stream.next() => m,
        };
        let failed = message.is_err();
        let bytes = message.as_ref().map(message_bytes).unwrap_or(1);
        // A message larger than the whole budget waits for the queue to empty, then goes alone.
        let want = bytes.clamp(1, queue_bytes) as u32;
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = budget.clone().acquire_many_owned(want) => p,
        };
        let Ok(permit) = permit else { break };
        if tx.send(Queued { message, permit }).await.is_err() || failed {
            break;
        }
    }
    // Acknowledge what became durable last, then let go of the source.
    if let Some(p) = acks.borrow().clone()
        && acked.as_ref() != Some(&p)
    {
        let _ = stream.ack(&p);
    }
    // A failed close only loses the final status update, which the next run sends again.
    let _ = stream.close().await;
}

/// A source table as last announced.
#[derive(Debug, Clone)]
struct Relation {
    columns: Arc<Vec<ColumnDef>>,
    key: Arc<Vec<usize>>,
}

/// How one source table's rows become one target table's rows.
#[derive(Debug, Clone)]
struct TargetMap {
    /// For each target column, the source column it comes from.
    from: Vec<usize>,
    /// Whether that column's values need converting.
    convert: Vec<bool>,
    /// Target column indexes of the key, in key order.
    key: Vec<usize>,
}

/// The last state of one key within a batch.
#[derive(Debug, Clone)]
enum Entry {
    Upsert(Vec<Value>),
    Partial(Vec<Value>, BTreeSet<usize>),
    Delete(Vec<Value>),
}

#[derive(Default)]
struct TableState {
    truncate: bool,
    entries: HashMap<Vec<u8>, Entry>,
    counts: OpCounts,
}

struct TargetState {
    location: LocationName,
    tables: Vec<IntegrateTable>,
    applier: Box<dyn ChangeApplier>,
    maps: Vec<Option<TargetMap>>,
    pending: Vec<TableState>,
    rows: usize,
    bytes: usize,
    since: Option<Instant>,
    /// The checkpoint stored at the target (skipping is decided by it).
    stored: Option<Checkpoint>,
    /// The transaction being received and how many of its changes this target has seen.
    open: Option<(TransactionId, u64)>,
    /// The last complete transaction received and not yet applied: its commit and ack.
    ended: Option<(TransactionId, Position)>,
    /// The ack position of the last transaction this target made durable.
    durable_ack: Option<Position>,
}

impl TargetState {
    fn has_pending(&self) -> bool {
        self.rows > 0 || self.pending.iter().any(|t| t.truncate)
    }
}

struct Runner {
    tables: Vec<ReplicatedTable>,
    by_source: HashMap<TableRef, usize>,
    relations: Vec<Option<Relation>>,
    targets: Vec<TargetState>,
    limits: ApplyLimits,
    events: mpsc::UnboundedSender<ReplicationEvent>,
    publish: Option<mpsc::Sender<CapturedChanges>>,
    /// The transaction being received.
    open: Option<TransactionId>,
    /// What may be acknowledged once every target is durable to here: the last commit's ack or
    /// an idle position.
    idle: Option<Position>,
    acked: Option<Position>,
}

impl Runner {
    fn new(
        plan: ReplicationPlan,
        events: mpsc::UnboundedSender<ReplicationEvent>,
        publish: Option<mpsc::Sender<CapturedChanges>>,
    ) -> Self {
        let n = plan.tables.len();
        let by_source = plan
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.source.clone(), i))
            .collect();
        let targets = plan
            .targets
            .into_iter()
            .map(|t| TargetState {
                stored: t.applier.checkpoint().cloned(),
                location: t.location,
                tables: t.tables,
                applier: t.applier,
                maps: vec![None; n],
                pending: (0..n).map(|_| TableState::default()).collect(),
                rows: 0,
                bytes: 0,
                since: None,
                open: None,
                ended: None,
                durable_ack: None,
            })
            .collect();
        Runner {
            tables: plan.tables,
            by_source,
            relations: vec![None; n],
            targets,
            limits: plan.limits,
            events,
            publish,
            open: None,
            idle: None,
            acked: None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        // Mid-transaction a batch waits for the commit (or its size limits), never for time.
        self.targets
            .iter()
            .filter(|t| t.open.is_none())
            .filter_map(|t| t.since)
            .min()
            .map(|s| s + self.limits.min_wait)
    }

    async fn handle(&mut self, message: CaptureMessage) -> Result<()> {
        match message {
            CaptureMessage::Relation {
                table,
                columns,
                key,
            } => self.relation(table, columns, key).await,
            CaptureMessage::Changes {
                transaction,
                first_index,
                changes,
            } => self.changes(transaction, first_index, changes).await,
            CaptureMessage::Commit {
                transaction,
                ack,
                change_count,
            } => {
                self.open = None;
                for t in &mut self.targets {
                    t.open = None;
                    // A transaction this target had already applied is durable there.
                    if t.stored.as_ref().is_some_and(|c| {
                        c.skip(&transaction.commit, 0, change_count.max(1)) >= change_count.max(1)
                    }) && !t.has_pending()
                    {
                        t.durable_ack = Some(ack.clone());
                        t.ended = None;
                    } else {
                        t.ended = Some((transaction.clone(), ack.clone()));
                    }
                }
                self.idle = None;
                self.flush_due(false).await
            }
            CaptureMessage::Idle { position, .. } => {
                if self.open.is_none() {
                    self.idle = Some(position);
                }
                self.flush_due(false).await
            }
        }
    }

    async fn relation(
        &mut self,
        table: TableRef,
        columns: Vec<ColumnDef>,
        key: Vec<usize>,
    ) -> Result<()> {
        let Some(&ti) = self.by_source.get(&table) else {
            return Ok(());
        };
        let changed = self.relations[ti]
            .as_ref()
            .is_none_or(|r| r.columns.as_slice() != columns.as_slice() || *r.key != key);
        if !changed {
            return Ok(());
        }
        // Rows already coalesced were mapped with the old columns: apply them first.
        if self.relations[ti].is_some() {
            self.flush_all().await?;
        }
        let name = self.tables[ti].name.clone();
        let ignored = self.tables[ti].ignored.clone();
        for t in &mut self.targets {
            // Columns new at the source that the target lacks are added (nullable).
            for c in &columns {
                if ignored.contains(&c.name)
                    || t.tables[ti].columns.iter().any(|tc| tc.name == c.name)
                {
                    continue;
                }
                let added = ColumnDef {
                    name: c.name.clone(),
                    data_type: c.data_type,
                    nullable: true,
                    native_type: None,
                };
                t.applier
                    .add_column(ti, added.clone())
                    .await
                    .map_err(|source| ReplicationError::Integrate {
                        target: t.location.clone(),
                        source,
                    })?;
                t.tables[ti].columns.push(added);
                let _ = self.events.send(ReplicationEvent::ColumnAdded {
                    target: t.location.clone(),
                    table: name.clone(),
                    column: c.name.clone(),
                });
            }
            let target_table = &t.tables[ti];
            let mut from = Vec::with_capacity(target_table.columns.len());
            let mut conv = Vec::with_capacity(target_table.columns.len());
            for tc in &target_table.columns {
                let Some(si) = columns.iter().position(|c| c.name == tc.name) else {
                    return Err(ReplicationError::Schema(format!(
                        "table {name}: column {} of target {} is no longer at the source {} (dropped or renamed); \
                         replication stopped rather than leave it empty: change the channel and re-activate",
                        tc.name, t.location, table
                    )));
                };
                let source_type = columns[si].data_type;
                if let Some(old) = self.relations[ti]
                    .as_ref()
                    .and_then(|r| r.columns.iter().find(|c| c.name == tc.name))
                    && old.data_type != source_type
                {
                    return Err(ReplicationError::Schema(format!(
                        "table {name}: column {} changed type at the source from {} to {}; \
                         replication stopped rather than write values of another type: change the target and re-activate",
                        tc.name, old.data_type, source_type
                    )));
                }
                from.push(si);
                conv.push(source_type != tc.data_type);
            }
            let mut tkey = Vec::with_capacity(key.len());
            for &k in &key {
                let kname = &columns[k].name;
                match target_table.columns.iter().position(|c| &c.name == kname) {
                    Some(j) => tkey.push(j),
                    None => {
                        return Err(ReplicationError::Schema(format!(
                            "table {name}: key column {kname} is not among the columns of target {}",
                            t.location
                        )));
                    }
                }
            }
            if tkey.is_empty() {
                tkey = target_table.key.clone();
            }
            if tkey.is_empty() {
                return Err(ReplicationError::Schema(format!(
                    "table {name}: the source sends no key for its rows; give the table a primary key"
                )));
            }
            t.maps[ti] = Some(TargetMap {
                from,
                convert: conv,
                key: tkey,
            });
        }
        self.relations[ti] = Some(Relation {
            columns: Arc::new(columns),
            key: Arc::new(key),
        });
        Ok(())
    }

    async fn changes(
        &mut self,
        transaction: TransactionId,
        first_index: u64,
        changes: Vec<RowChange>,
    ) -> Result<()> {
        self.open = Some(transaction.clone());
        self.idle = None;
        let count = changes.len() as u64;
        let now = Utc::now();
        // Observers first, per table, in order.
        let mut per_table: Vec<(usize, OpCounts)> = Vec::new();
        for c in &changes {
            let Some(&ti) = self.by_source.get(&c.table) else {
                continue;
            };
            match per_table.last_mut() {
                Some((t, counts)) if *t == ti => counts.add(c.op),
                _ => {
                    let mut counts = OpCounts::default();
                    counts.add(c.op);
                    per_table.push((ti, counts));
                }
            }
        }
        for (ti, counts) in &per_table {
            let _ = self.events.send(ReplicationEvent::Captured {
                table: self.tables[*ti].name.clone(),
                counts: *counts,
                commit_time: transaction.commit_time,
                at: now,
            });
        }
        for ti in 0..self.targets.len() {
            let skip = {
                let t = &self.targets[ti];
                t.stored
                    .as_ref()
                    .map(|c| c.skip(&transaction.commit, first_index, count))
                    .unwrap_or(0)
            };
            for change in changes.iter().skip(skip as usize) {
                self.coalesce(ti, change)?;
            }
            let t = &mut self.targets[ti];
            t.open = Some((transaction.clone(), first_index + count));
            if t.since.is_none() && t.has_pending() {
                t.since = Some(Instant::now());
            }
        }
        if let Some(publish) = &self.publish {
            let mut start = 0usize;
            while start < changes.len() {
                let Some(&ti) = self.by_source.get(&changes[start].table) else {
                    start += 1;
                    continue;
                };
                let mut end = start + 1;
                while end < changes.len() && changes[end].table == changes[start].table {
                    end += 1;
                }
                if let Some(rel) = &self.relations[ti] {
                    let out = CapturedChanges {
                        table: self.tables[ti].name.clone(),
                        columns: rel.columns.clone(),
                        key: rel.key.clone(),
                        transaction: transaction.clone(),
                        first_index: first_index + start as u64,
                        changes: changes[start..end].to_vec(),
                    };
                    // A consumer that went away stops publishing, not replication.
                    if publish.send(out).await.is_err() {
                        self.publish = None;
                        break;
                    }
                }
                start = end;
            }
        }
        // One transaction larger than the limits is applied in parts.
        for ti in 0..self.targets.len() {
            let t = &self.targets[ti];
            if t.rows >= self.limits.max_rows || t.bytes >= self.limits.max_bytes {
                self.flush(ti).await?;
            }
        }
        Ok(())
    }

    fn coalesce(&mut self, ti: usize, change: &RowChange) -> Result<()> {
        let Some(&table) = self.by_source.get(&change.table) else {
            return Ok(());
        };
        let name = &self.tables[table].name;
        let t = &mut self.targets[ti];
        let Some(map) = t.maps[table].as_ref() else {
            return Err(ReplicationError::Schema(format!(
                "table {name}: a change arrived before the table's columns"
            )));
        };
        let columns = &t.tables[table].columns;
        let state = &mut t.pending[table];
        state.counts.add(change.op);
        let to_target = |row: &[Value], only_key: bool| -> Result<Vec<Value>> {
            let mut out = Vec::with_capacity(map.from.len());
            for (j, &si) in map.from.iter().enumerate() {
                if only_key && !map.key.contains(&j) {
                    out.push(Value::Null);
                    continue;
                }
                let v = row.get(si).cloned().unwrap_or(Value::Null);
                out.push(if map.convert[j] {
                    convert(v, columns[j].data_type).map_err(|reason| {
                        ReplicationError::Schema(format!(
                            "table {name}: column {} cannot take a changed value at target {}: {reason}",
                            columns[j].name, t.location
                        ))
                    })?
                } else {
                    v
                });
            }
            Ok(out)
        };
        let key_of = |row: &[Value]| -> Vec<u8> {
            let mut k = Vec::with_capacity(16);
            for &j in &map.key {
                row[j].encode_canonical(&mut k);
            }
            k
        };
        let mut added_bytes = 0usize;
        let mut added_rows = 0usize;
        match change.op {
            ChangeOp::Truncate => {
                state.truncate = true;
                state.entries.clear();
                added_rows += 1;
            }
            ChangeOp::Insert => {
                let Some(after) = &change.after else {
                    return Err(missing_image(name, "an insert", "new"));
                };
                let row = to_target(after, false)?;
                added_bytes += row.iter().map(Value::byte_size).sum::<usize>();
                added_rows += 1;
                state.entries.insert(key_of(&row), Entry::Upsert(row));
            }
            ChangeOp::Delete => {
                let Some(before) = &change.before else {
                    return Err(missing_image(name, "a delete", "old"));
                };
                let row = to_target(before, true)?;
                added_rows += 1;
                let key: Vec<Value> = map.key.iter().map(|&j| row[j].clone()).collect();
                state.entries.insert(key_of(&row), Entry::Delete(key));
            }
            ChangeOp::Update => {
                let Some(after) = &change.after else {
                    return Err(missing_image(name, "an update", "new"));
                };
                let row = to_target(after, false)?;
                let new_key = key_of(&row);
                let unchanged: BTreeSet<usize> = (0..map.from.len())
                    .filter(|&j| change.unchanged.contains(&map.from[j]))
                    .collect();
                if let Some(before) = &change.before {
                    let old = to_target(before, true)?;
                    let old_key = key_of(&old);
                    if old_key != new_key {
                        if !unchanged.is_empty() {
                            return Err(ReplicationError::Schema(format!(
                                "table {name}: an update changed a row's key and left large values unsent; \
                                 set REPLICA IDENTITY FULL on the source table so the whole row is logged"
                            )));
                        }
                        let key: Vec<Value> = map.key.iter().map(|&j| old[j].clone()).collect();
                        state.entries.insert(old_key, Entry::Delete(key));
                    }
                }
                added_bytes += row.iter().map(Value::byte_size).sum::<usize>();
                added_rows += 1;
                let entry = if unchanged.is_empty() {
                    Entry::Upsert(row)
                } else {
                    match state.entries.remove(&new_key) {
                        Some(Entry::Upsert(mut prev)) => {
                            for (j, v) in row.into_iter().enumerate() {
                                if !unchanged.contains(&j) {
                                    prev[j] = v;
                                }
                            }
                            Entry::Upsert(prev)
                        }
                        Some(Entry::Partial(mut prev, mut set)) => {
                            for (j, v) in row.into_iter().enumerate() {
                                if !unchanged.contains(&j) && !map.key.contains(&j) {
                                    prev[j] = v;
                                    set.insert(j);
                                }
                            }
                            Entry::Partial(prev, set)
                        }
                        _ => {
                            let set = (0..row.len())
                                .filter(|j| !unchanged.contains(j) && !map.key.contains(j))
                                .collect();
                            Entry::Partial(row, set)
                        }
                    }
                };
                state.entries.insert(new_key, entry);
            }
        }
        t.rows += added_rows;
        t.bytes += added_bytes;
        Ok(())
    }

    /// Applies every target's batch that is due: full, or waited long enough at a boundary
    /// (`force`: every batch with anything pending).
    async fn flush_due(&mut self, force: bool) -> Result<()> {
        for ti in 0..self.targets.len() {
            let t = &self.targets[ti];
            let at_boundary = t.open.is_none() || self.open.is_none();
            let due = t.rows >= self.limits.max_rows
                || t.bytes >= self.limits.max_bytes
                || t.since.is_some_and(|s| s.elapsed() >= self.limits.max_wait)
                || force;
            if (t.has_pending() || t.ended.is_some()) && at_boundary && due {
                self.flush(ti).await?;
            } else if !t.has_pending() && t.ended.is_some() && at_boundary {
                // Only changes of tables outside the channel, or changes this target had already:
                // store nothing, but the transaction is as good as durable once its checkpoint
                // is written with the next batch; record it now so acks can move on.
                self.flush(ti).await?;
            }
        }
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<()> {
        for ti in 0..self.targets.len() {
            if self.targets[ti].has_pending() {
                self.flush(ti).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, ti: usize) -> Result<()> {
        let t = &mut self.targets[ti];
        let (checkpoint, source_commit_time, ack) = match (&t.open, &t.ended) {
            (Some((txn, seen)), _) => (
                Checkpoint {
                    transaction: txn.commit.clone(),
                    applied: Some(*seen),
                },
                Some(txn.commit_time),
                None,
            ),
            (None, Some((txn, ack))) => (
                Checkpoint::at(txn.commit.clone()),
                Some(txn.commit_time),
                Some(ack.clone()),
            ),
            (None, None) => return Ok(()),
        };
        if !t.has_pending() && checkpoint.applied.is_some() {
            // Nothing of this transaction so far: wait for more.
            return Ok(());
        }
        let mut tables = Vec::new();
        let mut counts = Vec::new();
        for (i, state) in t.pending.iter_mut().enumerate() {
            if state.entries.is_empty() && !state.truncate {
                state.counts = OpCounts::default();
                continue;
            }
            let width = t.tables[i].columns.len();
            let key_width = t.maps[i].as_ref().map(|m| m.key.len()).unwrap_or(0);
            let unbounded = BatchLimits {
                max_rows: usize::MAX,
                max_bytes: usize::MAX,
            };
            let mut changes = TableChanges {
                table: i,
                truncate: state.truncate,
                deletes: RowBatch::new(key_width, unbounded),
                upserts: RowBatch::new(width, unbounded),
                updates: Vec::new(),
            };
            for (_, entry) in state.entries.drain() {
                match entry {
                    Entry::Upsert(row) => changes
                        .upserts
                        .push_row(row)
                        .map_err(|e| ReplicationError::Schema(e.to_string()))?,
                    Entry::Delete(key) => changes
                        .deletes
                        .push_row(key)
                        .map_err(|e| ReplicationError::Schema(e.to_string()))?,
                    Entry::Partial(row, set) => changes.updates.push(PartialUpdate {
                        row,
                        set: set.into_iter().collect(),
                    }),
                }
            }
            state.truncate = false;
            counts.push((
                self.tables[i].name.clone(),
                std::mem::take(&mut state.counts),
            ));
            tables.push(changes);
        }
        let batch = IntegrateBatch {
            tables,
            checkpoint: checkpoint.clone(),
        };
        let summary =
            t.applier
                .apply(&batch)
                .await
                .map_err(|source| ReplicationError::Integrate {
                    target: t.location.clone(),
                    source,
                })?;
        t.rows = 0;
        t.bytes = 0;
        t.since = None;
        t.stored = Some(checkpoint.clone());
        if let Some(ack) = ack {
            t.durable_ack = Some(ack);
            t.ended = None;
        }
        let _ = self.events.send(ReplicationEvent::Applied {
            target: t.location.clone(),
            tables: counts,
            source_commit_time,
            committed_at: summary.committed_at.unwrap_or_else(Utc::now),
            checkpoint,
        });
        Ok(())
    }

    /// The position to acknowledge now, when it moved: every target durable up to it.
    fn ack_position(&mut self) -> Option<Position> {
        let clean = self
            .targets
            .iter()
            .all(|t| !t.has_pending() && t.ended.is_none() && t.open.is_none());
        let candidate = if clean && self.open.is_none() {
            // Everything received is durable everywhere: the newest position known.
            let mut best = self.idle.clone();
            for t in &self.targets {
                if let Some(a) = &t.durable_ack
                    && best
                        .as_ref()
                        .is_none_or(|b| a.cmp_same(b) == Some(std::cmp::Ordering::Greater))
                {
                    best = Some(a.clone());
                }
            }
            best
        } else {
            // The oldest durable point among the targets.
            let mut worst: Option<Position> = None;
            for t in &self.targets {
                let a = t.durable_ack.clone()?;
                if worst
                    .as_ref()
                    .is_none_or(|w| a.cmp_same(w) == Some(std::cmp::Ordering::Less))
                {
                    worst = Some(a);
                }
            }
            worst
        }?;
        if self
            .acked
            .as_ref()
            .is_some_and(|a| candidate.cmp_same(a) != Some(std::cmp::Ordering::Greater))
        {
            return None;
        }
        self.acked = Some(candidate.clone());
        let _ = self.events.send(ReplicationEvent::Acknowledged {
            position: candidate.clone(),
        });
        Some(candidate)
    }
}

fn missing_image(table: &TableName, what: &str, which: &str) -> ReplicationError {
    ReplicationError::Schema(format!(
        "table {table}: {what} arrived without its {which} row; the source does not log enough to replicate it"
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use sluice_connector::kit::{col, table};
    use sluice_connector::{ApplySummary, Result as CResult};
    use sluice_model::DataType;

    use super::*;

    /// A stream of prepared messages; then it waits (as an idle source does) and records acks.
    struct Script {
        messages: std::collections::VecDeque<CaptureMessage>,
        acked: Arc<Mutex<Vec<Position>>>,
    }

    #[async_trait]
    impl ChangeStream for Script {
        async fn next(&mut self) -> CResult<CaptureMessage> {
            match self.messages.pop_front() {
                Some(m) => Ok(m),
                None => std::future::pending().await,
            }
        }

        fn ack(&mut self, position: &Position) -> CResult<()> {
            self.acked.lock().unwrap().push(position.clone());
            Ok(())
        }

        async fn close(self: Box<Self>) -> CResult<()> {
            Ok(())
        }
    }

    /// Keeps the target table as key → row, and every batch.
    #[derive(Default)]
    struct Target {
        rows: BTreeMap<i64, Vec<Value>>,
        batches: Vec<IntegrateBatch>,
        added: Vec<ColumnDef>,
    }

    struct Applier {
        target: Arc<Mutex<Target>>,
        checkpoint: Option<Checkpoint>,
    }

    fn id(v: &Value) -> i64 {
        match v {
            Value::Int64(i) => *i,
            other => panic!("key {other:?}"),
        }
    }

    #[async_trait]
    impl ChangeApplier for Applier {
        fn checkpoint(&self) -> Option<&Checkpoint> {
            self.checkpoint.as_ref()
        }

        async fn apply(&mut self, batch: &IntegrateBatch) -> CResult<ApplySummary> {
            let mut t = self.target.lock().unwrap();
            for tc in &batch.tables {
                if tc.truncate {
                    t.rows.clear();
                }
                for k in tc.deletes.rows() {
                    t.rows.remove(&id(&k[0]));
                }
                for r in tc.upserts.rows() {
                    t.rows.insert(id(&r[0]), r.to_vec());
                }
                for u in &tc.updates {
                    let row = t.rows.get_mut(&id(&u.row[0])).expect("updated row exists");
                    for &j in &u.set {
                        row[j] = u.row[j].clone();
                    }
                }
            }
            t.batches.push(batch.clone());
            self.checkpoint = Some(batch.checkpoint.clone());
            Ok(ApplySummary::default())
        }

        async fn add_column(&mut self, _table: usize, column: ColumnDef) -> CResult<()> {
            let mut t = self.target.lock().unwrap();
            t.added.push(column);
            for row in t.rows.values_mut() {
                row.push(Value::Null);
            }
            Ok(())
        }
    }

    fn columns() -> Vec<ColumnDef> {
        vec![
            col("id", DataType::Int64, false),
            col("n", DataType::Int32, true),
            col("note", DataType::Text, true),
        ]
    }

    fn relation(columns: Vec<ColumnDef>) -> CaptureMessage {
        CaptureMessage::Relation {
            table: table("items"),
            columns,
            key: vec![0],
        }
    }

    fn txn(lsn: u64) -> TransactionId {
        TransactionId {
            commit: Position::Lsn { lsn },
            commit_time: Utc::now(),
        }
    }

    fn change(op: ChangeOp, key: i64, n: Option<i32>, note: Option<&str>) -> RowChange {
        let row = vec![
            Value::Int64(key),
            n.map(Value::Int32).unwrap_or(Value::Null),
            note.map(|s| Value::Text(s.into())).unwrap_or(Value::Null),
        ];
        let (before, after) = match op {
            ChangeOp::Delete => (
                Some(vec![Value::Int64(key), Value::Null, Value::Null]),
                None,
            ),
            _ => (None, Some(row)),
        };
        RowChange {
            table: table("items"),
            op,
            before,
            before_is_key: true,
            after,
            unchanged: if op == ChangeOp::Update && note.is_none() {
                vec![2]
            } else {
                vec![]
            },
        }
    }

    fn transaction(lsn: u64, changes: Vec<RowChange>) -> Vec<CaptureMessage> {
        let n = changes.len() as u64;
        vec![
            CaptureMessage::Changes {
                transaction: txn(lsn),
                first_index: 0,
                changes,
            },
            CaptureMessage::Commit {
                transaction: txn(lsn),
                ack: Position::Lsn { lsn: lsn + 8 },
                change_count: n,
            },
        ]
    }

    /// Runs `messages` against a target with `stored` as its checkpoint until the last commit's
    /// ack is acknowledged (or 5 s): the target and the acks.
    async fn run(
        messages: Vec<CaptureMessage>,
        stored: Option<Checkpoint>,
        target: Arc<Mutex<Target>>,
    ) -> (std::result::Result<(), ReplicationError>, Vec<Position>) {
        run_with(messages, stored, target, 1000).await
    }

    async fn run_with(
        messages: Vec<CaptureMessage>,
        stored: Option<Checkpoint>,
        target: Arc<Mutex<Target>>,
        max_rows: usize,
    ) -> (std::result::Result<(), ReplicationError>, Vec<Position>) {
        // Acknowledgements reach the stream between its messages (or when it stops): the run
        // is stopped once the target stored the last transaction.
        let last = messages.iter().rev().find_map(|m| match m {
            CaptureMessage::Commit { transaction, .. } => {
                Some(Checkpoint::at(transaction.commit.clone()))
            }
            _ => None,
        });
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stream = Box::new(Script {
            messages: messages.into(),
            acked: acked.clone(),
        });
        let plan = ReplicationPlan {
            tables: vec![ReplicatedTable {
                name: TableName::new("items").unwrap(),
                source: table("items"),
                ignored: BTreeSet::new(),
            }],
            targets: vec![ReplicationTarget {
                location: LocationName::new("tgt").unwrap(),
                tables: vec![IntegrateTable {
                    table: table("items"),
                    columns: columns(),
                    key: vec![0],
                }],
                applier: Box::new(Applier {
                    target: target.clone(),
                    checkpoint: stored,
                }),
            }],
            limits: ApplyLimits {
                max_rows,
                max_bytes: 1 << 20,
                max_wait: Duration::from_millis(20),
                min_wait: Duration::from_millis(5),
            },
            queue_bytes: 1 << 20,
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let stopper = cancel.clone();
        let watch = target.clone();
        tokio::spawn(async move {
            for _ in 0..500 {
                let done = match &last {
                    Some(c) => {
                        watch.lock().unwrap().batches.last().map(|b| &b.checkpoint) == Some(c)
                    }
                    None => false,
                };
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stopper.cancel();
        });
        let result = run_replication(stream, plan, tx, None, cancel).await;
        let acks = acked.lock().unwrap().clone();
        (result, acks)
    }

    #[tokio::test]
    async fn changes_of_a_key_coalesce_to_its_last_state() {
        let target = Arc::new(Mutex::new(Target::default()));
        let mut messages = vec![relation(columns())];
        messages.extend(transaction(
            100,
            vec![
                change(ChangeOp::Insert, 1, Some(1), Some("a")),
                change(ChangeOp::Insert, 2, Some(2), Some("b")),
                change(ChangeOp::Update, 1, Some(10), Some("a2")),
                change(ChangeOp::Delete, 2, None, None),
                change(ChangeOp::Insert, 3, Some(3), Some("big")),
            ],
        ));
        // An update leaving the large `note` unsent keeps the target's value.
        messages.extend(transaction(
            200,
            vec![change(ChangeOp::Update, 3, Some(30), None)],
        ));
        let (result, acks) = run(
            messages,
            Some(Checkpoint::at(Position::Lsn { lsn: 50 })),
            target.clone(),
        )
        .await;
        result.unwrap();
        let t = target.lock().unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[&1][1], Value::Int32(10));
        assert_eq!(
            t.rows[&3],
            vec![Value::Int64(3), Value::Int32(30), Value::Text("big".into())]
        );
        assert_eq!(acks.last(), Some(&Position::Lsn { lsn: 208 }));
        // Never acknowledged beyond what the target stored.
        let stored = match &t.batches.last().unwrap().checkpoint.transaction {
            Position::Lsn { lsn } => *lsn,
            _ => unreachable!(),
        };
        assert!(
            acks.iter()
                .all(|a| matches!(a, Position::Lsn { lsn } if *lsn <= stored + 8))
        );
    }

    #[tokio::test]
    async fn a_restart_skips_what_the_target_has_stored() {
        let target = Arc::new(Mutex::new(Target::default()));
        let mut messages = vec![relation(columns())];
        messages.extend(transaction(
            100,
            vec![change(ChangeOp::Insert, 1, Some(1), Some("a"))],
        ));
        messages.extend(transaction(
            200,
            vec![
                change(ChangeOp::Insert, 2, Some(2), Some("b")),
                change(ChangeOp::Insert, 3, Some(3), Some("c")),
            ],
        ));
        messages.extend(transaction(
            300,
            vec![change(ChangeOp::Insert, 4, Some(4), Some("d"))],
        ));
        // The target stored transaction 100 whole and the first change of 200.
        let stored = Checkpoint {
            transaction: Position::Lsn { lsn: 200 },
            applied: Some(1),
        };
        let (result, _) = run(messages, Some(stored), target.clone()).await;
        result.unwrap();
        let t = target.lock().unwrap();
        let keys: Vec<i64> = t.rows.keys().copied().collect();
        assert_eq!(keys, vec![3, 4], "only what was not stored is applied");
        assert_eq!(
            t.batches.last().unwrap().checkpoint,
            Checkpoint::at(Position::Lsn { lsn: 300 })
        );
    }

    #[tokio::test]
    async fn a_truncate_drops_earlier_changes_of_the_batch() {
        let target = Arc::new(Mutex::new(Target::default()));
        target
            .lock()
            .unwrap()
            .rows
            .insert(9, vec![Value::Int64(9), Value::Null, Value::Null]);
        let mut messages = vec![relation(columns())];
        let mut truncate = change(ChangeOp::Insert, 0, None, None);
        truncate.op = ChangeOp::Truncate;
        truncate.after = None;
        messages.extend(transaction(
            100,
            vec![
                change(ChangeOp::Insert, 1, Some(1), Some("a")),
                truncate,
                change(ChangeOp::Insert, 2, Some(2), Some("b")),
            ],
        ));
        let (result, _) = run(
            messages,
            Some(Checkpoint::at(Position::Lsn { lsn: 1 })),
            target.clone(),
        )
        .await;
        result.unwrap();
        let keys: Vec<i64> = target.lock().unwrap().rows.keys().copied().collect();
        assert_eq!(keys, vec![2]);
    }

    #[tokio::test]
    async fn an_added_column_is_added_and_a_dropped_one_stops_the_run() {
        let target = Arc::new(Mutex::new(Target::default()));
        let mut wider = columns();
        wider.push(col("extra", DataType::Int32, true));
        let mut messages = vec![relation(columns())];
        messages.extend(transaction(
            100,
            vec![change(ChangeOp::Insert, 1, Some(1), Some("a"))],
        ));
        messages.push(relation(wider));
        let mut c = change(ChangeOp::Insert, 2, Some(2), Some("b"));
        c.after.as_mut().unwrap().push(Value::Int32(7));
        messages.extend(transaction(200, vec![c]));
        let (result, _) = run(
            messages,
            Some(Checkpoint::at(Position::Lsn { lsn: 1 })),
            target.clone(),
        )
        .await;
        result.unwrap();
        {
            let t = target.lock().unwrap();
            assert_eq!(t.added.len(), 1);
            assert_eq!(t.rows[&2][3], Value::Int32(7));
        }
        let narrower: Vec<ColumnDef> = columns().into_iter().take(2).collect();
        let messages = vec![relation(columns()), relation(narrower)];
        let (result, _) = run(messages, None, Arc::new(Mutex::new(Target::default()))).await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("note") && error.contains("items"), "{error}");
    }

    #[tokio::test]
    async fn a_transaction_larger_than_a_batch_is_applied_in_parts() {
        let target = Arc::new(Mutex::new(Target::default()));
        let mut messages = vec![relation(columns())];
        let t = txn(500);
        for part in 0..3u64 {
            messages.push(CaptureMessage::Changes {
                transaction: t.clone(),
                first_index: part * 400,
                changes: (0..400)
                    .map(|i| {
                        change(
                            ChangeOp::Insert,
                            (part * 400 + i) as i64,
                            Some(1),
                            Some("x"),
                        )
                    })
                    .collect(),
            });
        }
        messages.push(CaptureMessage::Commit {
            transaction: t,
            ack: Position::Lsn { lsn: 508 },
            change_count: 1200,
        });
        let (result, acks) = run_with(
            messages,
            Some(Checkpoint::at(Position::Lsn { lsn: 1 })),
            target.clone(),
            500,
        )
        .await;
        result.unwrap();
        let t = target.lock().unwrap();
        assert_eq!(t.rows.len(), 1200);
        let points: Vec<Option<u64>> = t.batches.iter().map(|b| b.checkpoint.applied).collect();
        assert!(
            points.len() >= 2 && points[..points.len() - 1].iter().all(Option::is_some),
            "applied in parts with partial checkpoints: {points:?}"
        );
        assert_eq!(points.last(), Some(&None));
        assert!(
            t.batches
                .iter()
                .all(|b| b.tables.iter().all(|c| c.upserts.len() <= 800))
        );
        // Nothing acknowledged before the transaction was whole at the target.
        assert_eq!(acks, vec![Position::Lsn { lsn: 508 }]);
    }
}
