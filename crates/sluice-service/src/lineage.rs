//! Lineage: which table flows from which database to which, through which channel of which hub,
//! with the last refresh, compare or replication state of each flow.
//!
//! A node is a table at a *database*, known by the database's physical identity (class, host,
//! port and database name as stored, or the SQLite file's canonical path), so two locations
//! (of one hub or of two hubs) reaching the same database share their nodes, and a chain across
//! hubs (hub a: x→y, hub b: y→z) reads x→y→z. Property values are shown as stored: a `${VAR}`
//! reference stays a reference, secrets are never read, and sealed values are never shown.
//!
//! An edge is one table of one channel from one source location to one target location: the
//! locations refresh chooses by default (the channel's `Capture` locations to its `Integrate`
//! locations; a channel without those actions goes from its `SOURCE` group to its `TARGET`
//! group). Its state comes from the channel's refresh and compare jobs between those two
//! locations (the newest of their last events) and, for an activated channel, from its capture
//! and integrate jobs: one query for the jobs and one for their events per hub.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_model::definition::{ActionType, Channel, Location, LocationClass, physical_table};
use sluice_model::{
    AccessLevel, ChannelName, EventId, EventState, HubName, JobName, JobState, LocationName,
    ResultName, TableName,
};
use sluice_repo::{EventFilter, EventRecord, JobRecord};

use crate::jobs::default_schema;
use crate::replication::{capture_job, integrate_job};
use crate::{HubService, Result};

/// The lineage graph of every hub a user may read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Tables at databases, ordered by depth, then id.
    pub nodes: Vec<LineageNode>,
    /// Flows between them, ordered by hub, channel, table, source and target.
    pub edges: Vec<LineageEdge>,
}

/// A table at a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageNode {
    /// Stable id: the database's identity and the table (`postgresql://127.0.0.1:5432/shop#public.orders`).
    pub id: String,
    /// The database's identity (`postgresql://127.0.0.1:5432/shop`, `sqlite:///data/shop.db`).
    pub database: String,
    /// The table's physical name there (`schema.base` when a schema is set).
    pub table: String,
    /// The locations (of every readable hub) that reach this database with this table.
    pub locations: Vec<NodeLocation>,
    /// Location names and table, for people (`src, stage: public.orders`).
    pub label: String,
    /// Column in a left-to-right drawing: the longest chain of flows leading here (0 for a
    /// table nothing flows into).
    pub depth: usize,
}

/// A location of a hub.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeLocation {
    /// The hub.
    pub hub: HubName,
    /// The location.
    pub location: LocationName,
}

/// One table of one channel, from one source location to one target location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageEdge {
    /// The hub.
    pub hub: HubName,
    /// The channel.
    pub channel: ChannelName,
    /// The channel's name for the table.
    pub table: TableName,
    /// The source node's id.
    pub source: String,
    /// The target node's id.
    pub target: String,
    /// The source location.
    pub source_location: LocationName,
    /// The target location.
    pub target_location: LocationName,
    /// What the drawing colours the edge by.
    pub state: FlowState,
    /// The newest refresh or compare between these locations.
    pub last_run: Option<FlowRun>,
    /// The capture and integrate jobs, when the channel is activated.
    pub replication: Option<FlowReplication>,
}

/// The state of a flow at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowState {
    /// The last run finished well (for this table), or the replication is healthy.
    Done,
    /// The last run failed (for this table), or a replication job failed.
    Failed,
    /// A run or the replication is going on.
    Running,
    /// Never refreshed, compared or replicated (or the last run was cancelled before it did).
    Never,
}

impl FlowState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Done => "done",
            FlowState::Failed => "failed",
            FlowState::Running => "running",
            FlowState::Never => "never",
        }
    }
}

/// The kind of a [`FlowRun`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A refresh.
    Refresh,
    /// A compare.
    Compare,
}

impl RunKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Refresh => "refresh",
            RunKind::Compare => "compare",
        }
    }
}

/// The newest refresh or compare of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRun {
    /// Refresh or compare.
    pub kind: RunKind,
    /// Its event.
    pub event: EventId,
    /// The event's state.
    pub state: EventState,
    /// When it finished, else when it started.
    pub time: DateTime<Utc>,
    /// The table's `Table_State` in that event, when it reached the table.
    pub table_state: Option<String>,
}

/// The replication jobs of an activated channel, for one flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowReplication {
    /// The capture job's state at the source.
    pub capture: Option<JobState>,
    /// The integrate job's state at the target.
    pub integrate: Option<JobState>,
}

/// Hosts that name this machine, shown (and matched) as one.
const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "::1", "[::1]"];

/// A property's text as stored; a sealed value never shows.
fn stored(location: &Location, name: &str) -> Option<String> {
    let text = location.prop(name)?.to_text().trim().to_owned();
    if text.is_empty() {
        None
    } else if crate::secrets::is_sealed(&text) {
        Some("(sealed)".to_owned())
    } else {
        Some(text)
    }
}

/// The identity of the database `location` reaches, and the schema its tables default to
/// there (for MariaDB a schema is a database, so a table's schema takes the database's place).
fn database_identity(location: &Location, schema: Option<&str>) -> (String, Option<String>) {
    let server = |default_port: u16| {
        let host = stored(location, "Database_Host").unwrap_or_else(|| "127.0.0.1".to_owned());
        let host = if LOOPBACK.iter().any(|h| host.eq_ignore_ascii_case(h)) {
            "127.0.0.1".to_owned()
        } else if host.contains("${") {
            host
        } else {
            host.to_ascii_lowercase()
        };
        let port = stored(location, "Database_Port").unwrap_or_else(|| default_port.to_string());
        format!("{host}:{port}")
    };
    let database = stored(location, "Database_Name").unwrap_or_default();
    match location.class {
        LocationClass::Postgresql => (
            format!("postgresql://{}/{database}", server(5432)),
            Some(schema.unwrap_or("public").to_owned()),
        ),
        LocationClass::Mariadb => (
            format!(
                "mariadb://{}/{}",
                server(3306),
                schema.unwrap_or(database.as_str())
            ),
            None,
        ),
        LocationClass::Sqlite => {
            // A path without references names a file: the same file however it is spelled.
            let path = if database.contains("${") {
                database
            } else {
                std::fs::canonicalize(&database)
                    .map(|p| p.display().to_string())
                    .unwrap_or(database)
            };
            (format!("sqlite://{path}"), schema.map(str::to_owned))
        }
    }
}

/// A flow's state from its last run (for `table`) and its replication.
fn flow_state(run: Option<&FlowRun>, replication: Option<&FlowReplication>) -> FlowState {
    if let Some(r) = replication {
        let states = [r.capture, r.integrate];
        if states
            .iter()
            .any(|s| matches!(s, Some(JobState::Failed | JobState::Retry)))
        {
            return FlowState::Failed;
        }
        if states.contains(&Some(JobState::Running)) {
            return FlowState::Running;
        }
    }
    let Some(run) = run else {
        return FlowState::Never;
    };
    if run.state == EventState::Active {
        return FlowState::Running;
    }
    match &run.table_state {
        Some(t) if t.to_ascii_uppercase().contains("FAILED") => FlowState::Failed,
        Some(_) => FlowState::Done,
        None => match run.state {
            EventState::Done => FlowState::Done,
            EventState::Failed => FlowState::Failed,
            _ => FlowState::Never,
        },
    }
}

/// The locations a channel's flows start (`Capture`) or end (`Integrate`) at: those refresh
/// chooses by default, else the members of its `SOURCE` or `TARGET` group.
fn ends(channel: &Channel, action: ActionType, group: &str) -> Vec<LocationName> {
    let with_action = channel.locations_with_action(action);
    if !with_action.is_empty() {
        return with_action.into_iter().cloned().collect();
    }
    channel
        .loc_groups
        .iter()
        .find(|(g, _)| g.as_str().eq_ignore_ascii_case(group))
        .map(|(_, members)| members.clone())
        .unwrap_or_default()
}

/// The run of `job`'s last event, for `table`.
fn run_of(
    job: Option<&JobRecord>,
    events: &BTreeMap<EventId, EventRecord>,
    kind: RunKind,
    table: &TableName,
) -> Option<FlowRun> {
    let event = events.get(&job?.last_event?)?;
    let table_state = event
        .results
        .iter()
        .find(|r| r.name == ResultName::TableState && r.table.as_ref() == Some(table))
        .map(|r| r.value.clone());
    Some(FlowRun {
        kind,
        event: event.id,
        state: event.state,
        time: event.finish.unwrap_or(event.start),
        table_state,
    })
}

/// Depths of a graph's nodes: the longest chain of edges leading to each, a cycle broken at its
/// smallest node id.
fn depths(nodes: &BTreeSet<String>, edges: &BTreeSet<(String, String)>) -> BTreeMap<String, usize> {
    let mut incoming: BTreeMap<&str, BTreeSet<&str>> = nodes
        .iter()
        .map(|n| (n.as_str(), BTreeSet::new()))
        .collect();
    for (s, t) in edges {
        if s != t {
            incoming.entry(t.as_str()).or_default().insert(s.as_str());
        }
    }
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let mut left: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
    while !left.is_empty() {
        // A node whose every predecessor is placed; else (a cycle) the smallest one left.
        let next = left
            .iter()
            .find(|n| incoming[**n].iter().all(|p| depth.contains_key(*p)))
            .or_else(|| left.iter().next())
            .copied()
            .expect("left is not empty");
        let d = incoming[next]
            .iter()
            .filter_map(|p| depth.get(*p))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(next.to_owned(), d);
        left.remove(next);
    }
    depth
}

impl HubService {
    /// The lineage of every hub `user` (server-wide level `level`) may read: ReadOnly or more
    /// there (their access entry on the hub, else their level).
    pub async fn lineage(&self, user: &str, level: AccessLevel) -> Result<Lineage> {
        let entries = self.hub_levels(user, level).await?;
        let mut nodes: BTreeMap<String, (String, String, BTreeSet<NodeLocation>)> = BTreeMap::new();
        let mut edges = Vec::new();
        for hub in self.hubs().await? {
            let hub = hub.hub.name;
            let on_hub = entries.get(&hub).copied().unwrap_or(level);
            if !on_hub.allows(AccessLevel::ReadOnly) {
                continue;
            }
            let locations: BTreeMap<LocationName, Location> = self
                .locations(&hub)
                .await?
                .into_iter()
                .map(|l| (l.name.clone(), l))
                .collect();
            let jobs: BTreeMap<JobName, JobRecord> = self
                .jobs(&hub)
                .await?
                .into_iter()
                .map(|j| (j.name.clone(), j))
                .collect();
            let channels = self.channels(&hub).await?;
            let wanted = channel_jobs(&channels);
            let ids: Vec<EventId> = wanted
                .iter()
                .filter_map(|name| jobs.get(name).and_then(|j| j.last_event))
                .collect();
            let events: BTreeMap<EventId, EventRecord> = if ids.is_empty() {
                BTreeMap::new()
            } else {
                self.events(&EventFilter {
                    hub: Some(hub.clone()),
                    ids,
                    fetch_results: true,
                    ..Default::default()
                })
                .await?
                .into_iter()
                .map(|e| (e.id, e))
                .collect()
            };
            for channel in &channels {
                let sources = ends(channel, ActionType::Capture, "SOURCE");
                let targets = ends(channel, ActionType::Integrate, "TARGET");
                for source in &sources {
                    let Some(src) = locations.get(source) else {
                        continue;
                    };
                    for target in targets.iter().filter(|t| *t != source) {
                        let Some(tgt) = locations.get(target) else {
                            continue;
                        };
                        let refresh = jobs.get(&JobName::refresh(&channel.name, source, target));
                        let compare = jobs.get(&JobName::compare(&channel.name, source, target));
                        let capture = jobs.get(&capture_job(&channel.name, source));
                        let integrate = jobs.get(&integrate_job(&channel.name, target));
                        let replication =
                            (capture.is_some() || integrate.is_some()).then(|| FlowReplication {
                                capture: capture.map(|j| j.state),
                                integrate: integrate.map(|j| j.state),
                            });
                        for table in channel.tables.values() {
                            let mut node = |loc: &Location| {
                                let t = physical_table(
                                    channel,
                                    table,
                                    &loc.name,
                                    default_schema(loc).as_ref(),
                                );
                                let schema = t.schema.as_ref().map(|s| s.as_str());
                                let (database, schema) = database_identity(loc, schema);
                                let name = match schema {
                                    Some(s) => format!("{s}.{}", t.name),
                                    None => t.name.to_string(),
                                };
                                let id = format!("{database}#{name}");
                                nodes
                                    .entry(id.clone())
                                    .or_insert_with(|| (database, name, BTreeSet::new()))
                                    .2
                                    .insert(NodeLocation {
                                        hub: hub.clone(),
                                        location: loc.name.clone(),
                                    });
                                id
                            };
                            let (source_id, target_id) = (node(src), node(tgt));
                            let last_run = [
                                run_of(refresh, &events, RunKind::Refresh, &table.name),
                                run_of(compare, &events, RunKind::Compare, &table.name),
                            ]
                            .into_iter()
                            .flatten()
                            .max_by_key(|r| r.event);
                            edges.push(LineageEdge {
                                hub: hub.clone(),
                                channel: channel.name.clone(),
                                table: table.name.clone(),
                                source: source_id,
                                target: target_id,
                                source_location: source.clone(),
                                target_location: target.clone(),
                                state: flow_state(last_run.as_ref(), replication.as_ref()),
                                last_run,
                                replication: replication.clone(),
                            });
                        }
                    }
                }
            }
        }
        let ids: BTreeSet<String> = nodes.keys().cloned().collect();
        let pairs: BTreeSet<(String, String)> = edges
            .iter()
            .map(|e| (e.source.clone(), e.target.clone()))
            .collect();
        let depth = depths(&ids, &pairs);
        let mut nodes: Vec<LineageNode> = nodes
            .into_iter()
            .map(|(id, (database, table, locations))| {
                let mut names: Vec<&str> = locations.iter().map(|l| l.location.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                LineageNode {
                    depth: depth.get(&id).copied().unwrap_or(0),
                    label: format!("{}: {table}", names.join(", ")),
                    id,
                    database,
                    table,
                    locations: locations.into_iter().collect(),
                }
            })
            .collect();
        nodes.sort_by(|a, b| (a.depth, &a.id).cmp(&(b.depth, &b.id)));
        Ok(Lineage { nodes, edges })
    }
}

/// The refresh, compare, capture and integrate jobs a hub's channels may have.
fn channel_jobs(channels: &[Channel]) -> BTreeSet<JobName> {
    let mut out = BTreeSet::new();
    for channel in channels {
        let sources = ends(channel, ActionType::Capture, "SOURCE");
        let targets = ends(channel, ActionType::Integrate, "TARGET");
        for s in &sources {
            for t in targets.iter().filter(|t| *t != s) {
                out.insert(JobName::refresh(&channel.name, s, t));
                out.insert(JobName::compare(&channel.name, s, t));
            }
        }
    }
    out
}

/// `text` as a DOT quoted string (`"…"`, with `"` and `\` escaped and line breaks as `\n`).
fn dot_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl FlowState {
    /// The colour the drawings give this state.
    pub fn colour(self) -> &'static str {
        match self {
            FlowState::Done => "#2e7d32",
            FlowState::Failed => "#c62828",
            FlowState::Running => "#1565c0",
            FlowState::Never => "#9e9e9e",
        }
    }
}

impl Lineage {
    /// The graph as Graphviz DOT (`sluice lineage --dot | dot -Tsvg`): left to right, a box per
    /// node (its label and database), an edge per flow labelled `hub/channel` and coloured by
    /// its state. Every id and label is a quoted string.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph lineage {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
        );
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "  {} [label={}];",
                dot_quoted(&n.id),
                dot_quoted(&format!("{}\n{}", n.label, n.database))
            );
        }
        for e in &self.edges {
            let _ = writeln!(
                out,
                "  {} -> {} [label={}, color={}, fontcolor={}, tooltip={}];",
                dot_quoted(&e.source),
                dot_quoted(&e.target),
                dot_quoted(&format!("{}/{}", e.hub, e.channel)),
                dot_quoted(e.state.colour()),
                dot_quoted(e.state.colour()),
                dot_quoted(&format!("{}: {}", e.table, e.state.as_str())),
            );
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn depth_is_the_longest_chain() {
        let d = depths(
            &set(&["a", "b", "c", "d"]),
            &pairs(&[("a", "b"), ("b", "c"), ("a", "c"), ("d", "c")]),
        );
        assert_eq!(d["a"], 0);
        assert_eq!(d["b"], 1);
        assert_eq!(d["c"], 2);
        assert_eq!(d["d"], 0);
    }

    #[test]
    fn a_cycle_still_gets_depths() {
        let d = depths(
            &set(&["x", "y", "z"]),
            &pairs(&[("x", "y"), ("y", "x"), ("y", "z")]),
        );
        assert_eq!(d.len(), 3);
        assert!(d["z"] > d["y"]);
    }

    #[test]
    fn a_flow_state_comes_from_replication_first_then_the_run_for_its_table() {
        let run = |state: EventState, table_state: Option<&str>| FlowRun {
            kind: RunKind::Refresh,
            event: EventId::now(),
            state,
            time: Utc::now(),
            table_state: table_state.map(str::to_owned),
        };
        let replication = |capture, integrate| FlowReplication {
            capture: Some(capture),
            integrate: Some(integrate),
        };
        assert_eq!(flow_state(None, None), FlowState::Never);
        assert_eq!(
            flow_state(Some(&run(EventState::Active, None)), None),
            FlowState::Running
        );
        assert_eq!(
            flow_state(Some(&run(EventState::Done, None)), None),
            FlowState::Done
        );
        assert_eq!(
            flow_state(Some(&run(EventState::Canceled, None)), None),
            FlowState::Never
        );
        // One table failed in a run that failed: only its flow is red.
        let failed = run(EventState::Failed, Some("FAILED"));
        let other = run(EventState::Failed, Some("DONE"));
        assert_eq!(flow_state(Some(&failed), None), FlowState::Failed);
        assert_eq!(flow_state(Some(&other), None), FlowState::Done);
        let done = run(EventState::Done, Some("DONE"));
        assert_eq!(
            flow_state(
                Some(&done),
                Some(&replication(JobState::Running, JobState::Retry))
            ),
            FlowState::Failed
        );
        assert_eq!(
            flow_state(
                Some(&done),
                Some(&replication(JobState::Running, JobState::Running))
            ),
            FlowState::Running
        );
        assert_eq!(
            flow_state(
                None,
                Some(&replication(JobState::Suspend, JobState::Suspend))
            ),
            FlowState::Never
        );
    }

    #[test]
    fn dot_strings_are_quoted() {
        assert_eq!(dot_quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(dot_quoted("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn loopback_hosts_and_default_ports_are_one_database() {
        let loc = |props: &[(&str, &str)]| Location {
            name: LocationName::new("l").unwrap(),
            class: LocationClass::Postgresql,
            description: String::new(),
            props: props
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        sluice_model::definition::PropValue::Text(v.to_string()),
                    )
                })
                .collect(),
        };
        let a = database_identity(
            &loc(&[("Database_Host", "localhost"), ("Database_Name", "shop")]),
            None,
        );
        let b = database_identity(
            &loc(&[
                ("Database_Host", "127.0.0.1"),
                ("Database_Port", "5432"),
                ("Database_Name", "shop"),
            ]),
            Some("public"),
        );
        assert_eq!(a, b);
        let c = database_identity(
            &loc(&[("Database_Host", "${PGHOST}"), ("Database_Name", "shop")]),
            None,
        );
        assert_eq!(c.0, "postgresql://${PGHOST}:5432/shop");
    }
}
