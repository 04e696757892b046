//! Definitions as code: what applying a definitions document would change in a hub (a [`Plan`]),
//! applying it in one transaction against the definitions version it was planned on, exporting a
//! hub's definitions in the file schema, and telling what changed outside the file since the last
//! apply (drift).
//!
//! A plan compares the hub's stored definitions with the *target*: the document's objects added to
//! or replacing the hub's (or, with `prune`, the document alone), compiled the way the document's
//! origin asks (a local file: relative paths against its directory, secrets only as `${VAR}`; a
//! document sent over the API: the hub server's location policy). A secret the hub keeps sealed
//! and the document leaves out stays, unless the location now points somewhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sluice_model::definition::{Definitions, Location, is_secret_prop, is_single_env_ref};
use sluice_model::{EventId, EventState, EventType, HubName, LocationName};
use sluice_repo::{EventFilter, NewEvent, PropBag, PropWrite};

use crate::definition::{self, CompileContext, Diagnostic};
use crate::selection::ChannelSelection;
use crate::{HubService, Result, ServiceError, ServiceErrorKind, secrets};

/// What to plan: a definitions document and how to apply it.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// The definitions document (a file's, with its environment's overlay rendered).
    pub document: Json,
    /// Remove the hub's locations and channels the document does not have.
    pub prune: bool,
    /// The hub, when the document names none.
    pub hub: Option<HubName>,
    /// Where the document came from (a file name), for the audit event and the drift record.
    pub source: String,
    /// `Some`: the operator's own file, compiled as `sluice apply` compiles files (relative paths
    /// against this directory, secrets only as `${VAR}`). `None`: a document that arrived over
    /// the API, compiled under the hub server's location policy. Never set from a request.
    pub base_dir: Option<PathBuf>,
}

/// The kind of a planned object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// The hub itself (its description).
    Hub,
    /// A location.
    Location,
    /// A channel.
    Channel,
}

impl ObjectKind {
    /// The word for people.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Hub => "hub",
            ObjectKind::Location => "location",
            ObjectKind::Channel => "channel",
        }
    }
}

/// What happens to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// Added.
    Add,
    /// Changed (the fields say how).
    Change,
    /// Removed (`prune`).
    Remove,
}

/// One field of an object that changes: its path in the object's document and the values before
/// and after (absent when the field is added or removed). Secret values are never shown: a sealed
/// or literal secret reads `(secret)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field's path in the object (`props.Database_Host`, `tables.orders.cols.id.data_type`).
    pub path: String,
    /// The value before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Json>,
    /// The value after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Json>,
}

/// One object that changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectChange {
    /// Hub, location or channel.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// Added, changed or removed.
    pub action: ChangeAction,
    /// The fields (for an added object: every field it gets; removed: every field it had).
    pub fields: Vec<FieldChange>,
}

/// How an object drifted from what the last apply left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Changed since.
    Changed,
    /// Added since (not from the file).
    Added,
    /// Removed since.
    Removed,
}

/// One object changed outside the file since the last apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftedObject {
    /// Hub, location or channel.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// How.
    pub drift: DriftKind,
}

/// A definition change recorded since the last apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// The event.
    pub ev_id: EventId,
    /// Its type (`Definition_Change`, …).
    pub ev_type: String,
    /// Who.
    pub user: String,
    /// What, for people.
    pub description: String,
}

/// The last apply of a definitions file to a hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastApply {
    /// The definitions version it left.
    pub version: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub user: String,
    /// From which file.
    pub source: String,
}

/// What changed outside the file since it was last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The last apply.
    pub since: LastApply,
    /// The objects changed since (empty: none).
    pub objects: Vec<DriftedObject>,
    /// The definition changes recorded since, oldest first (at most 50).
    pub events: Vec<DriftEvent>,
}

/// What applying a document would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The hub.
    pub hub: HubName,
    /// Whether the hub exists (applying creates it otherwise).
    pub hub_exists: bool,
    /// The definitions version planned against (`None`: the hub does not exist). Applying
    /// refuses when the hub is at another version by then.
    pub base_version: Option<i64>,
    /// Whether objects the document does not have are removed.
    pub prune: bool,
    /// The objects that change, hub first, then locations, then channels, by name.
    pub changes: Vec<ObjectChange>,
    /// Without `prune`: the hub's objects the document does not have (kept; `--prune` removes
    /// them).
    pub unmanaged: Vec<String>,
    /// What changed outside the file since its last apply (`None`: never applied).
    pub drift: Option<Drift>,
    /// Notes on secrets kept or dropped.
    pub notes: Vec<String>,
    /// Warnings of the compile (unset variables, …).
    pub warnings: Vec<Diagnostic>,
}

impl Plan {
    /// Whether applying changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many objects are added, changed and removed.
    pub fn counts(&self) -> (usize, usize, usize) {
        change_counts(&self.changes)
    }

    /// Whether the hub's own fields (its description) change or the hub is created.
    pub fn touches_hub(&self) -> bool {
        !self.hub_exists || self.changes.iter().any(|c| c.kind == ObjectKind::Hub)
    }
}

/// How many of `changes` add, change and remove an object.
pub fn change_counts(changes: &[ObjectChange]) -> (usize, usize, usize) {
    let count = |a: ChangeAction| changes.iter().filter(|c| c.action == a).count();
    (
        count(ChangeAction::Add),
        count(ChangeAction::Change),
        count(ChangeAction::Remove),
    )
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The hub.
    pub hub: HubName,
    /// The definitions version after.
    pub version: i64,
    /// The audit event (`None` when nothing changed).
    pub ev_id: Option<EventId>,
    /// What changed.
    pub changes: Vec<ObjectChange>,
    /// Notes on secrets kept or dropped.
    pub notes: Vec<String>,
}

/// A hub's definitions in the file schema, with what was left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    /// The document (`hub`, `locations`, `channels`).
    pub document: Json,
    /// Secrets the hub keeps sealed, left out (`locations.pg.props.Database_Password`).
    pub left_out: Vec<String>,
}

/// The stored form of [`PropBag::LastApply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastApplyRecord {
    #[serde(flatten)]
    last: LastApply,
    /// Object key (`location/pg`) → digest of its document.
    digests: BTreeMap<String, String>,
}

/// The plan and the definitions it would store.
struct Target {
    plan: Plan,
    defs: Definitions,
    current: Option<Definitions>,
}

/// The definition event types, for drift.
const DEFINITION_EVENTS: &[EventType] = &[
    EventType::DefinitionChange,
    EventType::DefinitionChangeImport,
    EventType::TableDefinitionAdapt,
    EventType::HubPropertyChange,
];

impl HubService {
    /// What applying `req` would change, without changing anything.
    pub async fn plan_definitions(&self, req: &PlanRequest) -> Result<Plan> {
        Ok(self.target(req).await?.plan)
    }

    /// Applies `req` in one transaction when the hub is still at `expected_version` (`None`: the
    /// hub must not exist yet); `Conflict` otherwise, changing nothing. Records the apply for
    /// later drift reports.
    pub async fn apply_definitions_plan(
        &self,
        req: &PlanRequest,
        expected_version: Option<i64>,
    ) -> Result<Applied> {
        let Target {
            plan,
            defs: mut target,
            current,
        } = self.target(req).await?;
        if plan.base_version != expected_version {
            let now = plan.base_version.map_or_else(
                || "does not exist".to_owned(),
                |v| format!("is at version {v}"),
            );
            let then = expected_version.map_or_else(
                || "did not exist".to_owned(),
                |v| format!("was at version {v}"),
            );
            return Err(ServiceError::new(
                ServiceErrorKind::Conflict,
                format!(
                    "hub {} changed since the plan: it {then} and now {now}; nothing was applied (plan again)",
                    plan.hub
                ),
            ));
        }
        let hub = plan.hub.clone();
        let mut ev_id = None;
        if !plan.is_empty() {
            self.sync_wallet().await?;
            self.seal_secrets(&mut target)?;
            let (added, changed, removed) = plan.counts();
            let summary: Vec<Json> = plan
                .changes
                .iter()
                .map(|c| serde_json::json!({"kind": c.kind, "name": c.name, "action": c.action}))
                .collect();
            let body = serde_json::json!({
                "apply": {"source": req.source, "prune": req.prune, "changes": summary}
            });
            let description = format!(
                "apply of {} (by {}): {added} added, {changed} changed, {removed} removed",
                req.source,
                self.user()
            );
            ev_id = Some(match (current, expected_version) {
                (Some(_), Some(version)) => {
                    let event = NewEvent {
                        hub: hub.clone(),
                        event_type: EventType::DefinitionChangeImport,
                        user: self.user().to_owned(),
                        description,
                        channel: None,
                        loc: None,
                        loc2: None,
                        job: None,
                        state: EventState::Done,
                        body,
                    };
                    self.definition_store()
                        .replace_hub_definitions(&target, version, event)
                        .await?
                }
                _ => {
                    self.definition_store()
                        .apply_definitions(&target, self.user(), &req.source)
                        .await?;
                    self.newest_definition_event(&hub).await?
                }
            });
        }
        // Location actions live apart from the definitions: a removed location's go with it.
        for change in &plan.changes {
            if change.kind == ObjectKind::Location
                && change.action == ChangeAction::Remove
                && let Ok(loc) = LocationName::new(&change.name)
            {
                self.forget_loc_actions(&hub, &loc).await?;
            }
        }
        let (stored, version) = self.definitions(&hub).await?;
        let record = LastApplyRecord {
            last: LastApply {
                version,
                at: Utc::now(),
                user: self.user().to_owned(),
                source: req.source.clone(),
            },
            digests: object_digests(&definition::to_document(&stored)),
        };
        let props: BTreeMap<String, Option<Json>> = match serde_json::to_value(&record) {
            Ok(Json::Object(map)) => map.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            _ => BTreeMap::new(),
        };
        self.props_store()
            .write_props(&PropBag::LastApply(hub.clone()), &props, PropWrite::Replace)
            .await?;
        Ok(Applied {
            hub,
            version,
            ev_id,
            changes: plan.changes,
            notes: plan.notes,
        })
    }

    /// The hub's definitions in the file schema: sealed secrets are left out (and listed), so the
    /// document holds secrets only as `${VAR}` references. With `channels`, only the chosen
    /// channels and the locations they use.
    pub async fn export_definitions(
        &self,
        hub: &HubName,
        channels: Option<&ChannelSelection>,
    ) -> Result<Export> {
        let (mut defs, _) = self.definitions(hub).await?;
        if let Some(selection) = channels {
            let chosen: BTreeSet<_> = selection
                .choose(defs.channels.keys())?
                .into_iter()
                .collect();
            defs.channels.retain(|name, _| chosen.contains(name));
            let used: BTreeSet<LocationName> = defs
                .channels
                .values()
                .flat_map(|c| c.locations().cloned())
                .collect();
            defs.locations.retain(|name, _| used.contains(name));
        }
        let mut left_out = Vec::new();
        for loc in defs.locations.values_mut() {
            loc.props.retain(|name, value| {
                let sealed = is_secret_prop(name) && secrets::is_sealed(&value.to_text());
                if sealed {
                    left_out.push(format!("locations.{}.props.{name}", loc.name));
                }
                !sealed
            });
        }
        Ok(Export {
            document: file_document(&definition::to_document(&defs)),
            left_out,
        })
    }

    /// Compiles the request and compares it with the hub.
    async fn target(&self, req: &PlanRequest) -> Result<Target> {
        let hub = definition::hub_of(&req.document)
            .or_else(|| req.hub.clone())
            .ok_or_else(|| {
                ServiceError::invalid("the document names no hub (hub: NAME) and none was given")
            })?;
        if let Some(given) = &req.hub
            && *given != hub
        {
            return Err(ServiceError::invalid(format!(
                "the document names hub {hub}, not {given}"
            )));
        }
        let exists = self.definition_store().hub(&hub).await?.is_some();
        let (current, version) = if exists {
            let (defs, version) = self.definitions(&hub).await?;
            (Some(defs), Some(version))
        } else {
            (None, None)
        };
        let mut cx = match &req.base_dir {
            Some(dir) => CompileContext {
                base_dir: Some(dir.clone()),
                default_hub: Some(hub.clone()),
                env: std::env::vars().collect(),
                allow_secret_values: false,
                ..Default::default()
            },
            None => self.api_compile_context(&hub),
        };
        if !req.prune
            && let Some(cur) = &current
        {
            cx.known_locations = cur.locations.keys().cloned().collect();
        }
        let compiled = definition::compile(&req.document, &cx);
        let warnings: Vec<Diagnostic> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity != definition::Severity::Error)
            .cloned()
            .collect();
        let Some(file) = compiled.definitions.clone() else {
            let errors: Vec<Diagnostic> = compiled.errors().cloned().collect();
            // One error is named in the message; several are listed with it (CLI and API).
            let mut error = ServiceError::invalid(match errors.as_slice() {
                [one] => format!("{} has 1 error; nothing was applied: {one}", req.source),
                _ => format!(
                    "{} has {} error(s); nothing was applied",
                    req.source,
                    errors.len()
                ),
            });
            error.diagnostics = errors;
            return Err(error);
        };
        let gives_description = req
            .document
            .get("hub")
            .is_some_and(|h| h.get("description").is_some());
        let mut target = match (&current, req.prune) {
            (Some(cur), false) => {
                let mut t = cur.clone();
                t.locations.extend(file.locations.clone());
                t.channels.extend(file.channels.clone());
                t
            }
            _ => file.clone(),
        };
        target.hub.description = match (&current, gives_description) {
            (Some(cur), false) => cur.hub.description.clone(),
            _ => file.hub.description.clone(),
        };
        let mut notes = Vec::new();
        if let Some(cur) = &current {
            for (name, loc) in target.locations.iter_mut() {
                if let (Some(before), Some(_)) = (cur.locations.get(name), file.locations.get(name))
                    && let Some(note) = keep_sealed_secrets(before, loc)
                {
                    notes.push(note);
                }
            }
        }
        self.check_location_policy(current.as_ref(), &target)?;
        if let Some(cur) = &current {
            for name in cur.channels.keys() {
                if !target.channels.contains_key(name) && self.is_activated(&hub, name).await? {
                    return Err(ServiceError::invalid(format!(
                        "channel {name} is activated: deactivate it before removing it (or keep it in the document); nothing was planned"
                    )));
                }
            }
        }
        let before = current.as_ref().map(definition::to_document);
        let after = definition::to_document(&target);
        let changes = diff_documents(before.as_ref(), &after);
        let unmanaged = match (&current, req.prune) {
            (Some(cur), false) => cur
                .locations
                .keys()
                .filter(|n| !file.locations.contains_key(*n))
                .map(|n| format!("location {n}"))
                .chain(
                    cur.channels
                        .keys()
                        .filter(|n| !file.channels.contains_key(*n))
                        .map(|n| format!("channel {n}")),
                )
                .collect(),
            _ => Vec::new(),
        };
        let drift = match (&before, version) {
            (Some(doc), Some(version)) => self.drift(&hub, doc, version).await?,
            _ => None,
        };
        Ok(Target {
            plan: Plan {
                hub,
                hub_exists: exists,
                base_version: version,
                prune: req.prune,
                changes,
                unmanaged,
                drift,
                notes,
                warnings,
            },
            defs: target,
            current,
        })
    }

    /// What changed in `hub` (now `doc` at `version`) since the last apply.
    async fn drift(&self, hub: &HubName, doc: &Json, version: i64) -> Result<Option<Drift>> {
        let Some(props) = self
            .props_store()
            .props(&PropBag::LastApply(hub.clone()))
            .await?
        else {
            return Ok(None);
        };
        let Ok(record) =
            serde_json::from_value::<LastApplyRecord>(Json::Object(props.into_iter().collect()))
        else {
            return Ok(None);
        };
        if record.last.version == version {
            return Ok(Some(Drift {
                since: record.last,
                objects: Vec::new(),
                events: Vec::new(),
            }));
        }
        let now = object_digests(doc);
        let keys: BTreeSet<&String> = now.keys().chain(record.digests.keys()).collect();
        let mut objects = Vec::new();
        for key in keys {
            let drift = match (record.digests.get(key), now.get(key)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(_), Some(_)) => DriftKind::Changed,
                (None, Some(_)) => DriftKind::Added,
                (Some(_), None) => DriftKind::Removed,
                (None, None) => continue,
            };
            let (kind, name) = split_key(key);
            objects.push(DriftedObject { kind, name, drift });
        }
        let mut events: Vec<DriftEvent> = self
            .job_store()
            .events(&EventFilter {
                hub: Some(hub.clone()),
                types: DEFINITION_EVENTS.to_vec(),
                begin: Some(record.last.at),
                max_events: Some(50),
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|e| DriftEvent {
                ev_id: e.id,
                ev_type: e.event_type.to_string(),
                user: e.user,
                description: e.description,
            })
            .collect();
        events.reverse();
        Ok(Some(Drift {
            since: record.last,
            objects,
            events,
        }))
    }

    /// The newest definition event of `hub` (the one an apply that created the hub posted).
    async fn newest_definition_event(&self, hub: &HubName) -> Result<EventId> {
        self.job_store()
            .events(&EventFilter {
                hub: Some(hub.clone()),
                types: vec![EventType::DefinitionChangeImport],
                max_events: Some(1),
                ..Default::default()
            })
            .await?
            .pop()
            .map(|e| e.id)
            .ok_or_else(|| ServiceError::invalid(format!("hub {hub} has no definition event")))
    }
}

/// Keeps in `after` (a location as a document gives it) the secrets `before` holds sealed that the
/// document leaves out, unless the location now points elsewhere (another class, host, port,
/// database…): then they are dropped, and the note says so.
fn keep_sealed_secrets(before: &Location, after: &mut Location) -> Option<String> {
    let sealed: Vec<(&String, &sluice_model::definition::PropValue)> = before
        .props
        .iter()
        .filter(|(name, value)| {
            is_secret_prop(name)
                && secrets::is_sealed(&value.to_text())
                && !after.props.contains_key(*name)
        })
        .collect();
    if sealed.is_empty() {
        return None;
    }
    let names: Vec<&str> = sealed.iter().map(|(n, _)| n.as_str()).collect();
    let Some(why) = crate::admin::redirection(before, after) else {
        for (name, value) in sealed {
            after.props.insert(name.clone(), value.clone());
        }
        return None;
    };
    Some(format!(
        "location {}: the stored (sealed) {} is dropped because {why} changes; give it as ${{VAR}} to keep one",
        after.name,
        names.join(", ")
    ))
}

/// A document in the file schema: empty descriptions left out, the hub as `{name, description}`
/// only when it has a description.
fn file_document(doc: &Json) -> Json {
    let mut doc = doc.clone();
    if let Some(hub) = doc.get_mut("hub")
        && hub.get("description").and_then(Json::as_str) == Some("")
        && let Some(name) = hub.get("name").cloned()
    {
        *hub = name;
    }
    for section in ["locations", "channels"] {
        if let Some(objects) = doc.get_mut(section).and_then(Json::as_object_mut) {
            for object in objects.values_mut() {
                if let Some(o) = object.as_object_mut()
                    && o.get("description").and_then(Json::as_str) == Some("")
                {
                    o.remove("description");
                }
            }
        }
    }
    doc
}

/// The object key of a drift record: `location/pg`.
fn object_key(kind: ObjectKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

fn split_key(key: &str) -> (ObjectKind, String) {
    let (kind, name) = key.split_once('/').unwrap_or(("hub", key));
    let kind = match kind {
        "location" => ObjectKind::Location,
        "channel" => ObjectKind::Channel,
        _ => ObjectKind::Hub,
    };
    (kind, name.to_owned())
}

/// Each object of a document (the hub's description, each location, each channel) → a digest of
/// its document form.
fn object_digests(doc: &Json) -> BTreeMap<String, String> {
    let digest = |v: &Json| crate::auth::sha256_hex(v.to_string().as_bytes());
    let mut out = BTreeMap::new();
    let hub_name = definition::hub_of(doc)
        .map(|h| h.to_string())
        .unwrap_or_default();
    out.insert(
        object_key(ObjectKind::Hub, &hub_name),
        digest(&doc["hub"]["description"]),
    );
    for (section, kind) in [
        ("locations", ObjectKind::Location),
        ("channels", ObjectKind::Channel),
    ] {
        for (name, object) in doc[section].as_object().into_iter().flatten() {
            out.insert(object_key(kind, name), digest(object));
        }
    }
    out
}

/// The objects that differ between two documents in [`definition::to_document`] form (`before`
/// `None`: the hub does not exist).
fn diff_documents(before: Option<&Json>, after: &Json) -> Vec<ObjectChange> {
    let mut changes = Vec::new();
    let hub_name = definition::hub_of(after)
        .map(|h| h.to_string())
        .unwrap_or_default();
    let description = |d: &Json| {
        let mut m = Map::new();
        if let Some(text) = d["hub"]["description"].as_str()
            && !text.is_empty()
        {
            m.insert("description".into(), Json::from(text));
        }
        Json::Object(m)
    };
    match before {
        None => changes.push(ObjectChange {
            kind: ObjectKind::Hub,
            name: hub_name,
            action: ChangeAction::Add,
            fields: fields_of(&description(after), false),
        }),
        Some(b) => {
            let mut fields = Vec::new();
            diff_value("", &description(b), &description(after), &mut fields);
            if !fields.is_empty() {
                changes.push(ObjectChange {
                    kind: ObjectKind::Hub,
                    name: hub_name,
                    action: ChangeAction::Change,
                    fields,
                });
            }
        }
    }
    let empty = Map::new();
    for (section, kind) in [
        ("locations", ObjectKind::Location),
        ("channels", ObjectKind::Channel),
    ] {
        let old = before
            .and_then(|b| b[section].as_object())
            .unwrap_or(&empty);
        let new = after[section].as_object().unwrap_or(&empty);
        let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for name in names {
            let change = match (old.get(name), new.get(name)) {
                (None, Some(n)) => Some((ChangeAction::Add, fields_of(n, false))),
                (Some(o), None) => Some((ChangeAction::Remove, fields_of(o, true))),
                (Some(o), Some(n)) if o != n => {
                    let mut fields = Vec::new();
                    diff_value("", o, n, &mut fields);
                    Some((ChangeAction::Change, fields))
                }
                _ => None,
            };
            if let Some((action, fields)) = change {
                changes.push(ObjectChange {
                    kind,
                    name: name.clone(),
                    action,
                    fields,
                });
            }
        }
    }
    changes
}

/// Every leaf field of an object, as added (`removed` false) or removed.
fn fields_of(object: &Json, removed: bool) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    let empty = Json::Object(Map::new());
    if removed {
        diff_value("", object, &empty, &mut fields);
    } else {
        diff_value("", &empty, object, &mut fields);
    }
    fields
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends the differences between `a` and `b` under `path`: objects key by key (a key only one
/// side has as a whole), arrays of objects element by element (removed ones, then added ones),
/// anything else as a whole.
fn diff_value(path: &str, a: &Json, b: &Json, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().collect();
            keys.extend(y.keys().filter(|k| !x.contains_key(*k)));
            for key in keys {
                let p = join(path, key);
                match (x.get(key), y.get(key)) {
                    (Some(v), Some(w)) => diff_value(&p, v, w, out),
                    (v, w) => out.push(field(&p, v.cloned(), w.cloned())),
                }
            }
        }
        (Json::Array(x), Json::Array(y))
            if x.iter().chain(y.iter()).any(Json::is_object) && x != y =>
        {
            for v in x.iter().filter(|v| !y.contains(v)) {
                out.push(field(path, Some(v.clone()), None));
            }
            for w in y.iter().filter(|w| !x.contains(w)) {
                out.push(field(path, None, Some(w.clone())));
            }
            if x.iter().all(|v| y.contains(v)) && y.iter().all(|w| x.contains(w)) {
                // Same elements in another order.
                out.push(field(path, Some(a.clone()), Some(b.clone())));
            }
        }
        _ if a != b => out.push(field(path, Some(a.clone()), Some(b.clone()))),
        _ => {}
    }
}

/// One field change, with secret values hidden.
fn field(path: &str, before: Option<Json>, after: Option<Json>) -> FieldChange {
    FieldChange {
        path: path.to_owned(),
        before: before.map(|v| hide_secrets(path, v)),
        after: after.map(|v| hide_secrets(path, v)),
    }
}

/// `value` at `path` of a location's document with every secret that is not a `${VAR}`
/// reference replaced by `(secret)`.
fn hide_secrets(path: &str, value: Json) -> Json {
    let hide = |name: &str, v: Json| match v.as_str() {
        Some(text) if is_secret_prop(name) && !is_single_env_ref(text) => Json::from("(secret)"),
        _ => v,
    };
    match path.strip_prefix("props") {
        Some("") => match value {
            Json::Object(props) => Json::Object(
                props
                    .into_iter()
                    .map(|(k, v)| {
                        let v = hide(&k, v);
                        (k, v)
                    })
                    .collect(),
            ),
            other => other,
        },
        Some(rest) => match rest.strip_prefix('.') {
            Some(name) if !name.contains('.') => hide(name, value),
            _ => value,
        },
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(locations: Json, channels: Json) -> Json {
        json!({"hub": {"name": "h", "description": ""}, "locations": locations, "channels": channels})
    }

    #[test]
    fn field_diffs_name_each_changed_leaf_and_hide_secrets() {
        let a = doc(
            json!({"pg": {"class": "postgresql", "props": {"Database_Host": "dev", "Database_Password": "sealed:v1:abc"}}}),
            json!({"sales": {"description": "", "tables": {"a": {}}, "actions": [{"type": "Capture", "loc_scope": "SRC", "table_scope": "*"}]}}),
        );
        let b = doc(
            json!({"pg": {"class": "postgresql", "props": {"Database_Host": "prod", "Database_Password": "${PGPASS}"}}}),
            json!({"sales": {"description": "", "tables": {"a": {}, "b": {}}, "actions": [{"type": "Integrate", "loc_scope": "TGT", "table_scope": "*"}]}}),
        );
        let changes = diff_documents(Some(&a), &b);
        assert_eq!(changes.len(), 2, "{changes:#?}");
        let pg = &changes[0];
        assert_eq!(
            (pg.kind, pg.action),
            (ObjectKind::Location, ChangeAction::Change)
        );
        assert_eq!(
            pg.fields,
            vec![
                FieldChange {
                    path: "props.Database_Host".into(),
                    before: Some(json!("dev")),
                    after: Some(json!("prod"))
                },
                FieldChange {
                    path: "props.Database_Password".into(),
                    before: Some(json!("(secret)")),
                    after: Some(json!("${PGPASS}"))
                },
            ]
        );
        let sales = &changes[1];
        let paths: Vec<_> = sales.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["tables.b", "actions", "actions"], "{sales:#?}");
        assert_eq!(sales.fields[1].after, None);
        assert_eq!(sales.fields[2].before, None);
    }

    #[test]
    fn added_and_removed_objects_list_their_fields_and_equal_documents_plan_nothing() {
        let a = doc(
            json!({"x": {"class": "sqlite", "props": {"Database_Name": "/a.db"}}}),
            json!({}),
        );
        let b = doc(
            json!({"y": {"class": "sqlite", "props": {"Database_Name": "/b.db"}}}),
            json!({}),
        );
        let changes = diff_documents(Some(&a), &b);
        assert_eq!(changes.len(), 2);
        assert_eq!(
            (changes[0].name.as_str(), changes[0].action),
            ("x", ChangeAction::Remove)
        );
        assert_eq!(
            (changes[1].name.as_str(), changes[1].action),
            ("y", ChangeAction::Add)
        );
        assert!(
            changes[1]
                .fields
                .iter()
                .any(|f| f.path == "props" && f.after == Some(json!({"Database_Name": "/b.db"})))
        );
        let gone = doc(
            json!({"x": {"class": "postgresql", "props": {"Database_Password": "sealed:v1:x", "Database_User": "u"}}}),
            json!({}),
        );
        let removed = diff_documents(Some(&gone), &b);
        assert_eq!(
            removed[0].fields[1].before,
            Some(json!({"Database_Password": "(secret)", "Database_User": "u"}))
        );
        assert!(diff_documents(Some(&a), &a).is_empty());
        let created = diff_documents(None, &a);
        assert_eq!(created[0].kind, ObjectKind::Hub);
        assert_eq!(created[0].action, ChangeAction::Add);
    }

    #[test]
    fn digests_tell_changed_added_and_removed_objects() {
        let a = doc(
            json!({"x": {"class": "sqlite", "props": {}}}),
            json!({"c": {}}),
        );
        let b = doc(
            json!({"x": {"class": "sqlite", "props": {"P": 1}}}),
            json!({"d": {}}),
        );
        let (da, db) = (object_digests(&a), object_digests(&b));
        assert_eq!(da["hub/h"], db["hub/h"]);
        assert_ne!(da["location/x"], db["location/x"]);
        assert!(da.contains_key("channel/c") && !db.contains_key("channel/c"));
        assert_eq!(
            split_key("channel/d"),
            (ObjectKind::Channel, "d".to_owned())
        );
    }

    #[test]
    fn a_sealed_secret_left_out_is_kept_unless_the_location_moves() {
        use sluice_model::definition::{LocationClass, PropValue};
        let loc = |host: &str, password: Option<&str>| {
            let mut props: BTreeMap<String, PropValue> = [
                ("Database_Host", host),
                ("Database_Name", "shop"),
                ("Database_User", "app"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), PropValue::Text(v.to_owned())))
            .collect();
            if let Some(p) = password {
                props.insert("Database_Password".into(), PropValue::Text(p.into()));
            }
            Location {
                name: LocationName::new("pg").unwrap(),
                class: LocationClass::Postgresql,
                description: String::new(),
                props,
            }
        };
        let stored = loc("db1", Some("enc:v1:c2VhbGVk"));
        let mut same = loc("db1", None);
        assert_eq!(keep_sealed_secrets(&stored, &mut same), None);
        assert_eq!(same, stored, "kept as sealed");
        let mut moved = loc("db2", None);
        let note = keep_sealed_secrets(&stored, &mut moved).unwrap();
        assert!(
            note.contains("Database_Password") && note.contains("Database_Host"),
            "{note}"
        );
        assert!(!moved.props.contains_key("Database_Password"));
        let mut given = loc("db2", Some("${PG_PASSWORD}"));
        assert_eq!(
            keep_sealed_secrets(&stored, &mut given),
            None,
            "the file gives its own"
        );
        assert_eq!(
            given
                .prop("Database_Password")
                .map(|p| p.to_text())
                .as_deref(),
            Some("${PG_PASSWORD}")
        );
    }

    #[test]
    fn file_documents_leave_empty_descriptions_out() {
        let d = file_document(&doc(
            json!({"x": {"class": "sqlite", "description": "", "props": {}}}),
            json!({}),
        ));
        assert_eq!(d["hub"], json!("h"));
        assert!(d["locations"]["x"].get("description").is_none());
    }
}
