//! Definitions as code: `sluice render`, `plan`, `apply` and `export`, on the local repository or
//! a hub server (`--hub`). A file is rendered (base + the environment's overlay) here; the hub
//! plans and applies the rendered document.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_model::HubName;
use sluice_service::definition::{Diagnostic, Severity};
use sluice_service::plan::{
    Applied, ChangeAction, DriftKind, Export, FieldChange, Plan, PlanRequest, change_counts,
};
use sluice_service::selection::ChannelSelection;
use sluice_service::{ServiceError, ServiceErrorKind, environment};

use crate::args::{Global, Outcome};
use crate::backend::Backend;
use crate::output::json;
use crate::remote::Remote;

/// Output format of a document.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// YAML.
    #[default]
    Yaml,
    /// JSON.
    Json,
}

/// Options of `sluice render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The base definitions file.
    pub file: PathBuf,
    /// The environment: its overlay `envs/NAME.yaml` (next to the file) is applied.
    #[arg(long)]
    pub env: Option<String>,
    /// yaml or json.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Options of `sluice plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The definitions file.
    pub file: PathBuf,
    /// The environment: its overlay `envs/NAME.yaml` (next to the file) is applied.
    #[arg(long)]
    pub env: Option<String>,
    /// Also remove the hub's locations and channels the file does not have.
    #[arg(long)]
    pub prune: bool,
    /// Save the plan to this file; `sluice apply PLANFILE` applies exactly it, or refuses when
    /// the hub changed since.
    #[arg(long, value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
}

/// Options of `sluice apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The definitions file, or a plan saved by `sluice plan --out`.
    pub file: PathBuf,
    /// The environment: its overlay `envs/NAME.yaml` (next to the file) is applied.
    #[arg(long)]
    pub env: Option<String>,
    /// Also remove the hub's locations and channels the file does not have.
    #[arg(long)]
    pub prune: bool,
    /// Apply without asking (on a terminal, apply asks first).
    #[arg(long)]
    pub auto_approve: bool,
}

/// Options of `sluice export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Only the channels matching this pattern (`sales_*`) and the locations they use.
    #[arg(long)]
    pub channels: Option<String>,
    /// yaml or json.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// A plan saved by `sluice plan --out`.
#[derive(Debug, Serialize, Deserialize)]
struct SavedPlan {
    /// Marks the file as a saved plan (format version).
    sluice_plan: u32,
    /// The rendered document.
    document: Value,
    /// Whether the plan prunes.
    prune: bool,
    /// The definitions file it came from.
    source: String,
    /// The directory of that file (relative SQLite paths), for a local apply.
    base_dir: Option<PathBuf>,
    /// The environment it was rendered for.
    env: Option<String>,
    /// The plan that was shown.
    plan: Plan,
}

/// Where plans are made: the local repository or a hub server.
enum Hub {
    Local(sluice_service::HubService),
    /// There is no local repository yet: `plan` compares with an empty one, thrown away after.
    Empty {
        svc: sluice_service::HubService,
        /// Kept until the plan is made: dropping it removes the scratch repository.
        _scratch: tempfile::TempDir,
    },
    Remote(sluice_client::Client),
}

impl Hub {
    fn open(g: &Global) -> Result<Hub> {
        Ok(match &g.hub {
            Some(_) => Hub::Remote(Remote::session(g)?.0),
            None => Hub::Local(crate::local::service(g)?),
        })
    }

    /// Where `plan` compares: as [`Hub::open`], but without a local repository it creates none.
    fn open_to_plan(g: &Global) -> Result<Hub> {
        let db = g.home.join("hub.db");
        let exists = db
            .try_exists()
            .with_context(|| format!("cannot look for the repository {}", db.display()))?;
        if g.hub.is_some() || exists {
            return Hub::open(g);
        }
        let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
        let svc = sluice_service::HubService::open_local(scratch.path(), crate::args::user())?;
        note!(
            "note: {} does not exist yet: this plan is against an empty hub (`sluice apply` \
             creates the repository)",
            std::path::absolute(&db).unwrap_or(db).display()
        );
        Ok(Hub::Empty {
            svc,
            _scratch: scratch,
        })
    }

    async fn plan(&self, req: &PlanRequest) -> Result<Plan> {
        match self {
            Hub::Local(svc) | Hub::Empty { svc, .. } => Ok(svc.plan_definitions(req).await?),
            Hub::Remote(client) => {
                let hub = req.hub.as_ref().expect("requests name their hub");
                let body = serde_json::json!({
                    "document": req.document, "prune": req.prune, "source": req.source,
                });
                let answer = client.plan_definitions(hub.as_str(), &body).await?;
                serde_json::from_value(answer).context("the hub server's plan is not readable")
            }
        }
    }

    async fn apply(&self, req: &PlanRequest, base_version: Option<i64>) -> Result<Applied> {
        match self {
            Hub::Local(svc) | Hub::Empty { svc, .. } => {
                Ok(svc.apply_definitions_plan(req, base_version).await?)
            }
            Hub::Remote(client) => {
                let hub = req.hub.as_ref().expect("requests name their hub");
                let body = serde_json::json!({
                    "document": req.document, "prune": req.prune, "source": req.source,
                    "base_version": base_version,
                });
                let answer = client
                    .apply_definitions(hub.as_str(), &body)
                    .await
                    .map_err(stale_plan)?;
                serde_json::from_value(answer).context("the hub server's answer is not readable")
            }
        }
    }
}

/// A hub server's refusal of a stale plan, as the same conflict the local repository reports
/// (exit code 4).
fn stale_plan(e: sluice_client::Error) -> anyhow::Error {
    let text = e.to_string();
    if text.contains("changed since the plan") {
        let message = text
            .split_once("F_JA0409: ")
            .map_or(text.as_str(), |(_, m)| m)
            .to_owned();
        return ServiceError::new(ServiceErrorKind::Conflict, message).into();
    }
    e.into()
}

/// Diagnostics as one invalid-input error, each printed first.
fn invalid(diagnostics: &[Diagnostic], what: &str) -> anyhow::Error {
    for d in diagnostics {
        note!("error: {d}");
    }
    ServiceError::invalid(format!("{what} has {} error(s)", diagnostics.len())).into()
}

/// The file rendered for `env`.
pub fn render_file(file: &Path, env: Option<&str>) -> Result<Value> {
    environment::render(file, env).map_err(|ds| invalid(&ds, &file.display().to_string()))
}

fn write_document(doc: &Value, format: Format) -> Result<()> {
    match format {
        Format::Json => json(doc),
        Format::Yaml => {
            let text = sluice_service::definition::write_text(doc, false)
                .map_err(|e| anyhow::anyhow!("cannot write the document as YAML: {e}"))?;
            say!("{}", text.trim_end());
            Ok(())
        }
    }
}

/// `sluice render FILE [--env NAME]`: the merged document, compiled to check it.
pub async fn render(g: &Global, args: RenderArgs) -> Result<Outcome> {
    let doc = render_file(&args.file, args.env.as_deref())?;
    let compiled = sluice_service::definition::compile(
        &doc,
        &sluice_service::definition::CompileContext {
            base_dir: base_dir(&args.file),
            default_hub: g.hub_name.clone(),
            env: std::env::vars().collect(),
            ..Default::default()
        },
    );
    // Channels may name locations already in a hub: only errors of the document itself count.
    let errors: Vec<Diagnostic> = compiled
        .errors()
        .filter(|d| !d.message.contains("is not a location"))
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(invalid(&errors, "the rendered document"));
    }
    write_document(&doc, args.format)?;
    Ok(Outcome::Ok)
}

fn base_dir(file: &Path) -> Option<PathBuf> {
    file.canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

fn source_of(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The request for a file: rendered, for the local repository with the file's directory.
fn request(
    g: &Global,
    hub: &Hub,
    file: &Path,
    env: Option<&str>,
    prune: bool,
) -> Result<PlanRequest> {
    let document = render_file(file, env)?;
    let hub_name = sluice_service::definition::hub_of(&document)
        .or_else(|| g.hub_name.clone())
        .ok_or_else(|| {
            anyhow::Error::from(ServiceError::invalid(format!(
                "{} names no hub (hub: NAME) and --hub-name is not given",
                file.display()
            )))
        })?;
    Ok(PlanRequest {
        document,
        prune,
        hub: Some(hub_name),
        source: source_of(file),
        base_dir: match hub {
            Hub::Local(_) | Hub::Empty { .. } => base_dir(file),
            Hub::Remote(_) => None,
        },
    })
}

/// `sluice plan FILE`: exit 0 when nothing would change, 3 when changes are planned.
pub async fn plan(g: &Global, args: PlanArgs) -> Result<Outcome> {
    let hub = Hub::open_to_plan(g)?;
    let req = request(g, &hub, &args.file, args.env.as_deref(), args.prune)?;
    let plan = hub.plan(&req).await?;
    if let Some(out) = &args.out {
        let saved = SavedPlan {
            sluice_plan: 1,
            document: req.document.clone(),
            prune: req.prune,
            source: req.source.clone(),
            base_dir: req.base_dir.clone(),
            env: args.env.clone(),
            plan: plan.clone(),
        };
        let text = serde_json::to_string_pretty(&saved)?;
        std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
    }
    if g.json {
        json(&plan)?;
    } else {
        print_plan(&plan, &req.source, args.env.as_deref());
        if let Some(out) = &args.out {
            say!(
                "\nsaved to {}: `sluice apply {}` applies exactly this plan",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if plan.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Different
    })
}

/// Reads a saved plan, or `None` when `file` is not one.
fn saved_plan(file: &Path) -> Result<Option<SavedPlan>> {
    if !file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let Ok(value) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    if value.get("sluice_plan").is_none() {
        return Ok(None);
    }
    let saved: SavedPlan = serde_json::from_value(value).map_err(|e| {
        ServiceError::invalid(format!(
            "{} is not a readable saved plan: {e}",
            file.display()
        ))
    })?;
    if saved.sluice_plan != 1 {
        bail!(ServiceError::invalid(format!(
            "{}: saved plan format {} is not known to this sluice",
            file.display(),
            saved.sluice_plan
        )));
    }
    Ok(Some(saved))
}

/// `sluice apply FILE|PLANFILE`: shows the plan, asks on a terminal (unless `--auto-approve`),
/// applies it in one transaction against the version it was planned on.
pub async fn apply(g: &Global, args: ApplyArgs) -> Result<Outcome> {
    let hub = Hub::open(g)?;
    let (req, plan) = match saved_plan(&args.file)? {
        Some(saved) => {
            if args.env.is_some() || args.prune {
                bail!(ServiceError::invalid(
                    "a saved plan is applied as it was made: --env and --prune belong to `sluice plan`"
                ));
            }
            let req = PlanRequest {
                hub: Some(saved.plan.hub.clone()),
                document: saved.document,
                prune: saved.prune,
                source: saved.source,
                base_dir: match hub {
                    Hub::Local(_) | Hub::Empty { .. } => saved.base_dir,
                    Hub::Remote(_) => None,
                },
            };
            (req, saved.plan)
        }
        None => {
            let req = request(g, &hub, &args.file, args.env.as_deref(), args.prune)?;
            let plan = hub.plan(&req).await?;
            (req, plan)
        }
    };
    if !g.json {
        print_plan(&plan, &req.source, args.env.as_deref());
    }
    if !plan.is_empty() && !args.auto_approve && std::io::stdin().is_terminal() {
        note!(
            "\napply these changes to hub {}? only 'yes' applies: ",
            plan.hub
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            say!("nothing was applied");
            return Ok(Outcome::Ok);
        }
    }
    let applied = hub.apply(&req, plan.base_version).await?;
    if g.json {
        json(&applied)?;
    } else if applied.changes.is_empty() {
        say!(
            "nothing to apply; hub {} is at version {}",
            applied.hub,
            applied.version
        );
    } else {
        let (a, c, r) = change_counts(&applied.changes);
        say!(
            "\napplied to hub {}: {a} added, {c} changed, {r} removed (version {}, event {})",
            applied.hub,
            applied.version,
            applied.ev_id.map(|e| e.to_string()).unwrap_or_default()
        );
    }
    Ok(Outcome::Ok)
}

/// `sluice export`: the hub's definitions in the file schema.
pub async fn export(g: &Global, args: ExportArgs) -> Result<Outcome> {
    let selection = args
        .channels
        .as_deref()
        .map(ChannelSelection::parse)
        .transpose()?;
    let export: Export = match &g.hub {
        Some(_) => {
            let remote = Remote::connect(g).await?;
            let answer = remote
                .client()
                .definitions_file(remote.hub(), args.channels.as_deref())
                .await?;
            serde_json::from_value(answer).context("the hub server's export is not readable")?
        }
        None => {
            let svc = crate::local::existing_service(g)?;
            let hub: HubName = svc.resolve_hub(g.hub_name.as_ref()).await?;
            svc.export_definitions(&hub, selection.as_ref()).await?
        }
    };
    for path in &export.left_out {
        note!(
            "note: {path} is sealed in the hub and left out; the hub keeps it when this file is applied back (give it as ${{VAR}} to set it)"
        );
    }
    write_document(&export.document, args.format)?;
    Ok(Outcome::Ok)
}

fn value(v: &Option<Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn print_field(f: &FieldChange) {
    match (&f.before, &f.after) {
        (None, Some(_)) => say!("      + {}: {}", f.path, value(&f.after)),
        (Some(_), None) => say!("      - {}: {}", f.path, value(&f.before)),
        _ => say!(
            "      ~ {}: {} → {}",
            f.path,
            value(&f.before),
            value(&f.after)
        ),
    }
}

/// A plan for people.
pub fn print_plan(plan: &Plan, source: &str, env: Option<&str>) {
    let version = plan
        .base_version
        .map_or_else(|| "new hub".to_owned(), |v| format!("version {v}"));
    let env = env
        .map(|e| format!(", environment {e}"))
        .unwrap_or_default();
    say!(
        "plan of {source}{env} for hub {} ({version}){}",
        plan.hub,
        if plan.prune { ", with prune" } else { "" }
    );
    for change in &plan.changes {
        let (sign, word) = match change.action {
            ChangeAction::Add => ("+", "add"),
            ChangeAction::Change => ("~", "change"),
            ChangeAction::Remove => ("-", "remove"),
        };
        say!("\n  {sign} {word} {} {}", change.kind.as_str(), change.name);
        if change.action != ChangeAction::Remove {
            for f in &change.fields {
                print_field(f);
            }
        }
    }
    if !plan.unmanaged.is_empty() {
        say!(
            "\n  kept, not in the file (--prune removes them): {}",
            plan.unmanaged.join(", ")
        );
    }
    if let Some(drift) = &plan.drift
        && !drift.objects.is_empty()
    {
        say!(
            "\n  changed outside the file since its last apply ({} by {} at {}, version {}):",
            drift.since.source,
            drift.since.user,
            drift.since.at.format("%Y-%m-%d %H:%M:%S UTC"),
            drift.since.version
        );
        for o in &drift.objects {
            let how = match o.drift {
                DriftKind::Changed => "changed",
                DriftKind::Added => "added",
                DriftKind::Removed => "removed",
            };
            say!("      {} {} {how}", o.kind.as_str(), o.name);
        }
        for e in &drift.events {
            say!(
                "      {} {} by {}: {}",
                e.ev_id,
                e.ev_type,
                e.user,
                e.description
            );
        }
    }
    for note in &plan.notes {
        say!("\n  note: {note}");
    }
    for w in &plan.warnings {
        if w.severity == Severity::Warning {
            say!("  warning: {w}");
        }
    }
    let (a, c, r) = plan.counts();
    if plan.is_empty() {
        say!("\nno changes: hub {} matches {source}", plan.hub);
    } else {
        say!("\nplan: {a} to add, {c} to change, {r} to remove");
    }
}
