//! Remote mode: with `--hub URL` the commands are requests to a hub server, made with the session
//! `sluice login` stored (see [`crate::credentials`]).

use std::collections::HashMap;
use std::io::{BufRead as _, IsTerminal as _};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Map, Value, json as value};
use sluice_client::{
    ActivateRequest, BatchRequest, Client, CompareRequest, DifferenceFilter, ErrorKind, EventInfo,
    EventQuery, Granularity, JobQuery, PostedJob, RefreshRequest, Strategy, event_state,
};
use sluice_connector::WriteStrategy;
use sluice_model::event::table_state;
use sluice_model::{ChannelName, EventId, JobName, LocationName};

use crate::args::{
    ActivateArgs, BatchArgs, CompareArgs, DeactivateArgs, EventListArgs, Global, Outcome,
    RefreshArgs,
};
use crate::backend::{
    ActionView, Backend, BatchRow, ChannelRow, ChannelView, EventRow, EventView, Groups, HubState,
    JobRow, LocationRow, Plan, PlannedTable, Shown, Side, TableView,
};
use crate::credentials::{self, Credentials, Session};
use crate::output::{JobFailed, StoppedWaiting, json, table, thousands};

/// How often `--wait` asks for the event's state.
const POLL: Duration = Duration::from_millis(500);

/// Failed polls in a row `--wait` rides out (a server restarting, a network hiccup).
const POLL_RETRIES: u32 = 10;

/// Options of `sluice login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The user (default: $SLUICE_USER, else $USER).
    #[arg(long)]
    user: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The password (other users of this machine may see it: prefer --password-stdin).
    #[arg(
        long,
        env = "SLUICE_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_stdin"
    )]
    password: Option<String>,
}

/// The server URL of `--hub`, normalised as the sessions are keyed.
fn server(g: &Global, command: &str) -> Result<(Client, String)> {
    let url = g.hub.as_deref().ok_or_else(|| {
        anyhow!("`sluice {command}` needs the hub server's URL: pass --hub URL (or set SLUICE_HUB)")
    })?;
    let client = Client::new(url)?;
    let key = credentials::key(client.base_url().as_str());
    Ok((client, key))
}

/// `sluice login`.
pub async fn login(g: &Global, args: LoginArgs) -> Result<Outcome> {
    let (client, url) = server(g, "login")?;
    let user = match args.user {
        Some(user) => user,
        None => std::env::var("SLUICE_USER")
            .or_else(|_| std::env::var("USER"))
            .context("no user name: pass --user")?,
    };
    let password = match (args.password_stdin, args.password) {
        (true, _) => read_password_line()?,
        (false, Some(password)) => password,
        (false, None) => prompt_password(&user, &url)?,
    };
    let tokens = client
        .login(&user, &password)
        .await
        .with_context(|| format!("cannot log in to {url} as {user}"))?;
    let path = credentials::path()?;
    credentials::store(&path, Session::new(&url, &user, &tokens), true)?;
    // Show what the session reaches; the login itself already succeeded.
    let hubs = client.hubs().await.ok();
    if g.json {
        let hubs = hubs.map(|h| h.into_iter().map(|h| h.name).collect::<Vec<_>>());
        json(&value!({ "url": url, "user": user, "expires_at": tokens.expires_at, "hubs": hubs }))?;
    } else {
        say!("logged in to {url} as {user}");
        if let Some(hubs) = hubs {
            let names: Vec<_> = hubs.iter().map(|h| h.name.as_str()).collect();
            say!("  hubs: {}", list_or_dash(&names));
        }
        say!("  session stored in {}", path.display());
        say!("  commands without --hub now work on this server, until `sluice logout`");
    }
    Ok(Outcome::Ok)
}

fn read_password_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

/// Asks for the password on the terminal without echoing it.
fn prompt_password(user: &str, url: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password: pass --password-stdin (with the password on standard input) or --password"
        );
    }
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !stty("-echo") {
        bail!("cannot hide the password as it is typed: pass --password-stdin");
    }
    {
        use std::io::Write as _;
        let mut err = std::io::stderr();
        let _ = write!(err, "password of {user} at {url}: ");
        let _ = err.flush();
    }
    let password = read_password_line();
    stty("echo");
    note!();
    password
}

/// `sluice logout`.
pub async fn logout(g: &Global) -> Result<Outcome> {
    let path = credentials::path()?;
    let mut creds = Credentials::load(&path)?;
    let url = match (&g.hub, &creds.default) {
        (Some(_), _) => server(g, "logout")?.1,
        (None, Some(default)) if creds.hubs.contains_key(default) => default.clone(),
        (None, _) => match creds.hubs.keys().collect::<Vec<_>>().as_slice() {
            [one] => (*one).clone(),
            [] => {
                say!("not logged in to any hub server");
                return Ok(Outcome::Ok);
            }
            many => bail!(
                "logged in to several hub servers ({}): pass --hub URL",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    let Some(session) = creds.hubs.remove(&url) else {
        say!("not logged in to {url}");
        return Ok(Outcome::Ok);
    };
    let was_default = creds.default.as_ref() == Some(&url);
    if was_default {
        creds.default = None;
    }
    // Forget the session first: a server that cannot be reached must not keep it stored.
    creds.save(&path)?;
    let revoked = Client::new(&url)?
        .with_token(session.tokens())
        .revoke()
        .await;
    if let Err(e) = revoked {
        note!("warning: the server did not revoke the session: {e:#}");
    }
    say!("logged out of {url}");
    if was_default {
        say!("  commands without --hub work on the local repository again");
    }
    Ok(Outcome::Ok)
}

/// A logged-in client and the hub it works on.
pub struct Remote {
    client: Client,
    url: String,
    hub: String,
}

impl Remote {
    /// A client with the stored session of `--hub`.
    pub fn session(g: &Global) -> Result<(Client, String)> {
        let (client, url) = server(g, "--hub")?;
        let path = credentials::path()?;
        let creds = Credentials::load(&path)?;
        let session = creds
            .hubs
            .get(&url)
            .cloned()
            .ok_or_else(|| anyhow!("not logged in to {url}: run `sluice login --hub {url}`"))?;
        let client = client.with_token(session.tokens()).on_new_tokens({
            let (url, user) = (url.clone(), session.user.clone());
            move |tokens| {
                // The server expired the old refresh token: the new pair must be kept.
                if let Err(e) = credentials::store(&path, Session::new(&url, &user, tokens), false)
                {
                    note!("warning: cannot store the renewed session: {e:#}");
                }
            }
        });
        Ok((client, url))
    }

    /// The client of the session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn connect(g: &Global) -> Result<Remote> {
        let (client, url) = Self::session(g)?;
        let hub = match &g.hub_name {
            Some(name) => name.to_string(),
            None => {
                let hubs = client.hubs().await?;
                match hubs.as_slice() {
                    [one] => one.name.clone(),
                    [] => bail!("the hub server at {url} has no hub"),
                    many => bail!(
                        "the hub server at {url} has several hubs ({}): pass --hub-name",
                        many.iter()
                            .map(|h| h.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
        };
        Ok(Remote { client, url, hub })
    }
}

/// Adds "log in again" to an error that says the session is missing or expired.
pub fn login_hint(error: anyhow::Error, url: &str) -> anyhow::Error {
    let unauthorized = error
        .chain()
        .filter_map(|e| e.downcast_ref::<sluice_client::Error>())
        .any(sluice_client::Error::is_unauthorized);
    match unauthorized {
        true => error.context(format!(
            "the session with {url} is no longer valid: run `sluice login --hub {url}`"
        )),
        false => error,
    }
}

fn object<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn members(group: &Value) -> Vec<&str> {
    group
        .get("members")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A property or parameter value as text (`5432`, `true`, `secret`).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list_or_dash(names: &[&str]) -> String {
    match names.is_empty() {
        true => "-".into(),
        false => names.join(", "),
    }
}

// ---- refresh and compare ----

/// The one location of `channel` covered by an action of `action` (the local rule: `Capture` →
/// the source, `Integrate` → the target), unless one was given.
fn pick_location(
    channel: &Value,
    name: &ChannelName,
    explicit: Option<&LocationName>,
    action: &str,
    role: &str,
    flag: &str,
) -> Result<String> {
    if let Some(loc) = explicit {
        return Ok(loc.to_string());
    }
    let groups = object(channel, "loc_groups");
    let mut all: Vec<&str> = Vec::new();
    for group in groups.into_iter().flatten().map(|(_, v)| v) {
        for m in members(group) {
            if !all.contains(&m) {
                all.push(m);
            }
        }
    }
    let actions = channel.get("actions").and_then(Value::as_array);
    let covered = |loc: &str| {
        actions.into_iter().flatten().any(|a| {
            text(a, "type") == action
                && match text(a, "loc_scope") {
                    "" | "*" => true,
                    scope => {
                        scope == loc
                            || groups
                                .and_then(|g| g.get(scope))
                                .is_some_and(|g| members(g).contains(&loc))
                    }
                }
        })
    };
    match all
        .into_iter()
        .filter(|l| covered(l))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [one] => Ok((*one).to_owned()),
        [] => bail!("channel {name} has no {action} action to choose its {role}; pass {flag}"),
        many => bail!(
            "channel {name} has several {role} locations ({}); pass {flag}",
            many.join(", ")
        ),
    }
}

/// The source and target: as given, else from the channel's actions.
async fn endpoints(
    r: &Remote,
    channel: &ChannelName,
    source: Option<&LocationName>,
    target: Option<&LocationName>,
) -> Result<(String, String)> {
    if let (Some(s), Some(t)) = (source, target) {
        return Ok((s.to_string(), t.to_string()));
    }
    let c = r.client.channel(&r.hub, channel.as_str()).await?;
    Ok((
        pick_location(&c, channel, source, "Capture", "source", "--source")?,
        pick_location(&c, channel, target, "Integrate", "target", "--target")?,
    ))
}

/// The request of a refresh.
async fn refresh_request(r: &Remote, args: &RefreshArgs) -> Result<RefreshRequest> {
    let (source_loc, target_loc) = endpoints(
        r,
        args.channel(),
        args.source.as_ref(),
        args.target.as_ref(),
    )
    .await?;
    Ok(RefreshRequest {
        source_loc,
        target_loc,
        tables: args.tables.iter().map(ToString::to_string).collect(),
        granularity: (args.mode.as_deref() == Some("rowwise")).then_some(Granularity::Rowwise),
        start_immediate: Some(true),
        difference_filter: match (args.no_deletes, args.only_deletes) {
            (true, _) => Some(DifferenceFilter {
                inserts: true,
                updates: true,
                deletes: false,
            }),
            (_, true) => Some(DifferenceFilter {
                inserts: false,
                updates: false,
                deletes: true,
            }),
            _ => None,
        },
        parallel_sessions: (args.parallel > 1).then_some(args.parallel),
        mode: args.mode.clone(),
        incremental_column: args.incremental_column.as_ref().map(ToString::to_string),
        date_buffer_days: args.date_buffer_days,
        strategy: args
            .strategy
            .map(|s| match s {
                WriteStrategy::StagingSwap => Ok(Strategy::StagingSwap),
                WriteStrategy::TruncateLoad => Ok(Strategy::TruncateLoad),
                other => Err(anyhow!("a refresh cannot use strategy {}", other.as_str())),
            })
            .transpose()?,
        batch_rows: args.batch_rows,
        dry_run: false,
    })
}

/// The request of a compare.
async fn compare_request(r: &Remote, args: &CompareArgs) -> Result<CompareRequest> {
    let (source_loc, target_loc) = endpoints(
        r,
        args.channel(),
        args.source.as_ref(),
        args.target.as_ref(),
    )
    .await?;
    Ok(CompareRequest {
        source_loc,
        target_loc,
        tables: args.tables.iter().map(ToString::to_string).collect(),
        granularity: Some(match args.rowwise || args.online {
            true => Granularity::Rowwise,
            false => Granularity::Bulk,
        }),
        start_immediate: Some(true),
        online_compare: args.online.then(|| "diff_cap".to_owned()),
        dry_run: false,
        pushdown: args.no_pushdown.then_some(false),
    })
}

/// A plan the server made, as the commands print it (the shape of the local `--dry-run`).
fn plan_view(plan: Value) -> Plan {
    let statements = |t: &Value, key: &str| {
        t.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| (text(s, "sql").to_owned(), text(s, "repeat") == "per_row"))
            .collect()
    };
    let tables = plan
        .get("tables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| PlannedTable {
            table: text(t, "table").to_owned(),
            source_table: text(t, "source_table").to_owned(),
            target_table: text(t, "target_table").to_owned(),
            action: t.get("action").filter(|a| !a.is_null()).map(scalar),
            source_statements: statements(t, "source_statements"),
            target_statements: statements(t, "target_statements"),
        })
        .collect();
    Plan {
        job: text(&plan, "job").to_owned(),
        source: text(&plan, "source").to_owned(),
        target: text(&plan, "target").to_owned(),
        tables,
        json: plan,
    }
}

/// A channel object's location groups.
fn groups(channel: &Value) -> Groups {
    object(channel, "loc_groups")
        .into_iter()
        .flatten()
        .map(|(g, v)| {
            let members = members(v).into_iter().map(str::to_owned).collect();
            (g.clone(), members)
        })
        .collect()
}

/// `k=v` pairs of a properties or parameters object, but `skip`.
fn pairs(object: Option<&Map<String, Value>>, skip: &str) -> Vec<(String, String)> {
    object
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != skip)
        .map(|(k, v)| (k.clone(), scalar(v)))
        .collect()
}

impl Backend for Remote {
    fn side(&self) -> Side {
        Side::Remote
    }

    fn hub(&self) -> &str {
        &self.hub
    }

    async fn hub_state(&self) -> Result<Shown<HubState>> {
        let status = self.client.hub_status(&self.hub).await?;
        let mut json = serde_json::to_value(&status)?;
        if let Value::Object(map) = &mut json {
            map.insert("hub".into(), Value::String(self.hub.clone()));
        }
        let view = HubState {
            place: format!("at {}", self.url),
            state: status.hub_state.to_string(),
            freeze_time: status.freeze_time,
            license: status.license.clone(),
            jobs_over_latency_sla: status
                .jobs_over_latency_sla
                .iter()
                .map(|j| j.as_str().map_or_else(|| j.to_string(), str::to_owned))
                .collect(),
        };
        Ok(Shown { json, view })
    }

    async fn freeze(&self, freeze: bool) -> Result<()> {
        match freeze {
            true => self.client.freeze_hub(&self.hub).await?,
            false => self.client.unfreeze_hub(&self.hub).await?,
        }
        Ok(())
    }

    async fn locations(&self) -> Result<Shown<Vec<LocationRow>>> {
        let locations = self.client.locations(&self.hub).await?;
        let view = locations
            .iter()
            .map(|(name, l)| {
                let props = object(l, "props");
                LocationRow {
                    name: name.clone(),
                    class: props
                        .and_then(|p| p.get("Class"))
                        .map(scalar)
                        .unwrap_or_default(),
                    description: String::new(),
                    props: pairs(props, "Class"),
                }
            })
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&locations)?,
            view,
        })
    }

    async fn test_location(&self, location: &LocationName) -> Result<Shown<Vec<(String, String)>>> {
        let report = self
            .client
            .test_location(&self.hub, location.as_str())
            .await?;
        let view = pairs(object(&report, "discovered_props"), "");
        Ok(Shown {
            json: serde_json::to_value(&report)?,
            view,
        })
    }

    async fn channels(&self) -> Result<Shown<Vec<ChannelRow>>> {
        let channels = self.client.channels(&self.hub).await?;
        let view = channels
            .iter()
            .map(|(name, c)| ChannelRow {
                name: name.clone(),
                tables: object(c, "tables").map_or(0, Map::len),
                groups: groups(c),
                description: text(c, "description").to_owned(),
            })
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&channels)?,
            view,
        })
    }

    async fn channel(&self, channel: &ChannelName) -> Result<Shown<ChannelView>> {
        let c = self.client.channel(&self.hub, channel.as_str()).await?;
        let tables = object(&c, "tables")
            .into_iter()
            .flatten()
            .map(|(name, t)| TableView {
                name: name.clone(),
                base_name: text(t, "base_name").to_owned(),
                columns: object(t, "cols").map(|cols| {
                    cols.iter()
                        .map(|(col, v)| {
                            let key = v.get("key").and_then(Value::as_u64).unwrap_or(0) > 0;
                            (col.clone(), text(v, "data_type").to_owned(), key)
                        })
                        .collect()
                }),
            })
            .collect();
        let actions = c
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| {
                let scope = |key| match text(a, key) {
                    "" => "*".to_owned(),
                    s => s.to_owned(),
                };
                ActionView {
                    action_type: text(a, "type").to_owned(),
                    loc_scope: scope("loc_scope"),
                    table_scope: scope("table_scope"),
                    params: pairs(object(a, "params"), ""),
                }
            })
            .collect();
        let view = ChannelView {
            name: channel.to_string(),
            description: text(&c, "description").to_owned(),
            groups: groups(&c),
            tables,
            actions,
        };
        Ok(Shown { json: c, view })
    }

    async fn export(&self) -> Result<Value> {
        Ok(serde_json::to_value(
            self.client.export_definition(&self.hub).await?,
        )?)
    }

    async fn delete_channel(&self, channel: &ChannelName) -> Result<()> {
        self.client
            .delete_channel(&self.hub, channel.as_str())
            .await?;
        Ok(())
    }

    async fn plan_refresh(&self, args: &RefreshArgs, _: &Global) -> Result<Plan> {
        let request = refresh_request(self, args).await?;
        let plan = self
            .client
            .plan_refresh(&self.hub, args.channel().as_str(), &request)
            .await?;
        Ok(plan_view(plan))
    }

    async fn refresh(&self, args: RefreshArgs, g: &Global) -> Result<Outcome> {
        let request = refresh_request(self, &args).await?;
        let posted = self
            .client
            .refresh(&self.hub, args.channel().as_str(), &request)
            .await?;
        finish(self, g, posted, Verb::Refresh, args.wait).await
    }

    async fn plan_compare(&self, args: &CompareArgs) -> Result<Plan> {
        let request = compare_request(self, args).await?;
        let plan = self
            .client
            .plan_compare(&self.hub, args.channel().as_str(), &request)
            .await?;
        Ok(plan_view(plan))
    }

    async fn compare(&self, args: CompareArgs, g: &Global) -> Result<Outcome> {
        let request = compare_request(self, &args).await?;
        let posted = self
            .client
            .compare(&self.hub, args.channel().as_str(), &request)
            .await?;
        finish(self, g, posted, Verb::Compare, args.wait).await
    }

    async fn activate(&self, args: ActivateArgs, g: &Global) -> Result<Outcome> {
        if args.follow {
            bail!(
                "--follow replicates in this process, on the local repository: leave out --hub \
                 (a hub server replicates its activated channels by itself)"
            );
        }
        let request = ActivateRequest {
            start_immediate: args.no_start.then_some(false),
            refresh: args.refresh,
        };
        let posted = self
            .client
            .activate(&self.hub, args.channel().as_str(), &request)
            .await?;
        let outcome = finish(self, g, posted, Verb::Activate, args.wait).await?;
        if args.wait && !g.json {
            say!(
                "the capture and integrate jobs of {} run on the hub server: `sluice status` on its \
                 machine, or `sluice job list --hub {}`, shows them",
                args.channel(),
                self.url
            );
        }
        Ok(outcome)
    }

    async fn deactivate(&self, args: DeactivateArgs, g: &Global) -> Result<Outcome> {
        let posted = self
            .client
            .deactivate(&self.hub, args.channel().as_str())
            .await?;
        finish(self, g, posted, Verb::Deactivate, args.wait).await
    }

    async fn batch(&self, args: &BatchArgs) -> Result<Vec<BatchRow>> {
        let r = args.request(&self.hub);
        let request = BatchRequest {
            channels: r.channels,
            parallel: r.parallel,
            tables: r.tables,
            mode: r.mode,
            strategy: args
                .strategy
                .filter(|_| r.verb == "refresh")
                .map(|s| match s {
                    WriteStrategy::StagingSwap => Ok(Strategy::StagingSwap),
                    WriteStrategy::TruncateLoad => Ok(Strategy::TruncateLoad),
                    other => Err(anyhow!(
                        "strategy {} does not apply to a refresh",
                        other.as_str()
                    )),
                })
                .transpose()?,
            granularity: r.granularity.map(|g| match g.as_str() {
                "rowwise" => Granularity::Rowwise,
                _ => Granularity::Bulk,
            }),
            max_listed: r.max_listed,
            refresh: r.refresh,
        };
        let posted = self
            .client
            .batch(&self.hub, args.verb.as_str(), &request)
            .await?;
        let mut rows: Vec<BatchRow> = posted
            .channels
            .into_iter()
            .map(|c| BatchRow {
                state: if c.ev_id.is_some() { "ACTIVE" } else { "ERROR" }.to_owned(),
                channel: c.channel,
                ev_id: c.ev_id,
                job: c.job,
                response: c.error,
            })
            .collect();
        let ids: Vec<String> = rows.iter().filter_map(|r| r.ev_id.clone()).collect();
        if !args.wait || ids.is_empty() {
            return Ok(rows);
        }
        note!(
            "{} posted for {} channel(s), at most {} running at once; waiting for them to end",
            args.verb,
            ids.len(),
            posted.parallel
        );
        let query = EventQuery {
            ev_ids: ids,
            ..Default::default()
        };
        let mut failures = 0;
        loop {
            let events = match self.client.events(&self.hub, &query).await {
                Ok(events) => events,
                // A blip: the jobs go on on the server; ask again, a few times.
                Err(e) if e.kind() == ErrorKind::Connect && failures < POLL_RETRIES => {
                    failures += 1;
                    note!("warning: {e:#}; retrying");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            failures = 0;
            for row in rows.iter_mut() {
                if let Some(e) = events.iter().find(|e| Some(&e.ev_id) == row.ev_id.as_ref()) {
                    row.state = e.state.clone();
                    row.response = e.response.clone();
                }
            }
            if rows.iter().all(|r| r.state != "ACTIVE") {
                return Ok(rows);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn jobs(&self) -> Result<Shown<Vec<JobRow>>> {
        let jobs = self.client.jobs(&self.hub, &JobQuery::default()).await?;
        let view = jobs
            .iter()
            .map(|j| JobRow {
                name: j.name.clone(),
                state: j.state.clone(),
                last_event: j.last_ev_id.clone().unwrap_or_default(),
                run: (None, None),
                runs: j.num_runs.map(|n| n.to_string()).unwrap_or_default(),
            })
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&jobs)?,
            view,
        })
    }

    async fn suspend_job(&self, job: &JobName, suspend: bool) -> Result<()> {
        let jobs = [job.as_str().to_owned()];
        match suspend {
            true => self.client.suspend_jobs(&self.hub, &jobs).await?,
            false => self.client.unsuspend_jobs(&self.hub, &jobs).await?,
        }
        Ok(())
    }

    async fn cancel_job(&self, job: &JobName) -> Result<Vec<String>> {
        let query = EventQuery {
            jobs: vec![job.to_string()],
            states: vec![event_state::ACTIVE.to_owned()],
            ..Default::default()
        };
        let ids: Vec<String> = self
            .client
            .events(&self.hub, &query)
            .await?
            .into_iter()
            // The filter is the server's; never cancel what it should not have listed.
            .filter(|e| !e.is_finished() && e.job.as_deref().is_none_or(|j| j == job.as_str()))
            .map(|e| e.ev_id)
            .collect();
        if ids.is_empty() {
            bail!("job {job} has no active event to cancel");
        }
        self.client.cancel_events(&self.hub, &ids).await?;
        Ok(ids)
    }

    async fn events(
        &self,
        args: &EventListArgs,
        with_results: bool,
    ) -> Result<Shown<Vec<EventRow>>> {
        let query = EventQuery {
            channels: args.channel.iter().map(ToString::to_string).collect(),
            types: args.event_type.iter().map(ToString::to_string).collect(),
            states: args.state.iter().map(ToString::to_string).collect(),
            max_events: Some(args.limit),
            fetch_results: with_results,
            ..Default::default()
        };
        let events = self.client.events(&self.hub, &query).await?;
        let view = events
            .iter()
            .map(|e| EventRow {
                id: e.ev_id.clone(),
                event_type: e.event_type.clone(),
                state: e.state.clone(),
                channel: e.channel.clone().unwrap_or_default(),
                user: e.user.clone().unwrap_or_default(),
                response: e
                    .response
                    .clone()
                    .or_else(|| e.description.clone())
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&events)?,
            view,
        })
    }

    async fn event(&self, event: EventId) -> Result<Shown<EventView>> {
        let e = self
            .client
            .event(&self.hub, &event.to_string())
            .await?
            .ok_or_else(|| {
                sluice_service::ServiceError::new(
                    sluice_service::ServiceErrorKind::NotFound,
                    format!("event {event} does not exist on hub {}", self.hub),
                )
            })?;
        let view = EventView {
            id: e.ev_id.clone(),
            event_type: e.event_type.clone(),
            state: e.state.clone(),
            user: e.user.clone(),
            description: e.description.clone(),
            job: e.job.clone(),
            start: e.start_tstamp,
            finish: e.finish_tstamp,
            response: e.response.clone(),
            results: e
                .results
                .iter()
                .map(|r| {
                    [
                        r.table.clone().unwrap_or_default(),
                        r.result.clone(),
                        r.value.clone(),
                    ]
                })
                .collect(),
        };
        Ok(Shown {
            json: serde_json::to_value(&e)?,
            view,
        })
    }

    async fn event_log(&self, event: EventId) -> Result<Shown<Vec<String>>> {
        let log = self.client.event_log(&self.hub, &event.to_string()).await?;
        Ok(Shown {
            json: value!({ "ev_id": event.to_string(), "log": log }),
            view: vec![log.trim_end_matches('\n').to_owned()],
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Refresh,
    Compare,
    Activate,
    Deactivate,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Refresh => "refresh",
            Verb::Compare => "compare",
            Verb::Activate => "activation",
            Verb::Deactivate => "deactivation",
        }
    }
}

/// Reports a posted job, and with `wait` follows it to its end.
async fn finish(
    r: &Remote,
    g: &Global,
    posted: PostedJob,
    verb: Verb,
    wait: bool,
) -> Result<Outcome> {
    if !wait {
        if g.json {
            json(&posted)?;
        } else {
            say!(
                "{} posted: event {}, job {}",
                verb.as_str(),
                posted.posted_ev_id,
                posted.job
            );
            for canceled in &posted.canceled_ev_ids {
                say!("  replaced the waiting event {canceled}");
            }
            say!(
                "  follow it with `sluice event show {} --hub {}`",
                posted.posted_ev_id,
                r.url
            );
        }
        return Ok(Outcome::Ok);
    }
    if !g.json {
        note!(
            "{} started: event {}, job {}",
            verb.as_str(),
            posted.posted_ev_id,
            posted.job
        );
    }
    let event = tokio::select! {
        event = follow(r, g, &posted, verb) => event?,
        _ = tokio::signal::ctrl_c() => {
            return Err(StoppedWaiting(format!(
                "stopped waiting; the {} goes on on the server (`sluice job cancel {}` cancels it)",
                verb.as_str(),
                posted.job
            ))
            .into());
        }
    };
    print_outcome(&event, g, verb)?;
    match event.state.as_str() {
        event_state::DONE if verb == Verb::Compare && differs(&event) => Ok(Outcome::Different),
        event_state::DONE => Ok(Outcome::Ok),
        state => Err(JobFailed(
            event
                .response
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| format!("the {} ended {state}", verb.as_str())),
        )
        .into()),
    }
}

/// Polls the event until it ends, printing each table's progress to stderr.
async fn follow(r: &Remote, g: &Global, posted: &PostedJob, verb: Verb) -> Result<EventInfo> {
    let query = EventQuery {
        ev_ids: vec![posted.posted_ev_id.clone()],
        fetch_results: true,
        ..Default::default()
    };
    // Per table: the state and line shown last, and when.
    let mut shown: HashMap<String, (String, String, Instant)> = HashMap::new();
    let mut failures = 0;
    loop {
        let event = match r.client.events(&r.hub, &query).await {
            Ok(events) => events.into_iter().find(|e| e.ev_id == posted.posted_ev_id),
            // A blip: the job goes on on the server; ask again, a few times.
            Err(e) if e.kind() == ErrorKind::Connect && failures < POLL_RETRIES => {
                failures += 1;
                note!("warning: {e:#}; retrying");
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        failures = 0;
        let event = event.ok_or_else(|| {
            anyhow!(
                "event {} of the {} is gone from the server",
                posted.posted_ev_id,
                verb.as_str()
            )
        })?;
        if !g.json {
            for table in event.tables() {
                let line = progress_line(&event, table);
                let state = event
                    .result(Some(table), "Table_State")
                    .unwrap_or(table_state::PENDING)
                    .to_owned();
                // A new state at once; growing row counts every few seconds.
                let show = match shown.get(table) {
                    None => true,
                    Some((last_state, last_line, at)) => {
                        *last_state != state
                            || (*last_line != line && at.elapsed() >= Duration::from_secs(2))
                    }
                };
                if show {
                    note!("  {} {line}", verb.as_str());
                    shown.insert(table.to_owned(), (state, line, Instant::now()));
                }
            }
        }
        if event.is_finished() {
            return Ok(event);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `orders: BUSY, 12,000 rows`.
fn progress_line(event: &EventInfo, table: &str) -> String {
    let state = event
        .result(Some(table), "Table_State")
        .unwrap_or(table_state::PENDING);
    match count(event, table, "Source_Rows_Used") {
        Some(n) => format!("{table}: {state}, {} rows", thousands(n)),
        None => format!("{table}: {state}"),
    }
}

fn count(event: &EventInfo, table: &str, result: &str) -> Option<u64> {
    event.result(Some(table), result)?.trim().parse().ok()
}

/// Whether a compare found a table different.
fn differs(event: &EventInfo) -> bool {
    event.tables().into_iter().any(|t| {
        event.result(Some(t), "Table_State") == Some(table_state::DONE_DIFFERENT)
            || [
                "Rows_Only_On_Source",
                "Rows_Only_On_Target",
                "Rows_Which_Differ",
            ]
            .iter()
            .any(|r| count(event, t, r).is_some_and(|n| n > 0))
    })
}

/// What a refresh did to a table's rows, from the event's results; `None` when it replaced the
/// table whole (no such result).
fn row_changes(event: &EventInfo, table: &str) -> Option<sluice_service::RowChanges> {
    let n = |r: &str| count(event, table, r);
    if let Some(upserted) = n("Rows_Upserted") {
        return Some(sluice_service::RowChanges::Upserted { upserted });
    }
    let any = ["Rows_Inserted", "Rows_Updated", "Rows_Deleted"]
        .iter()
        .any(|r| n(r).is_some());
    any.then(|| sluice_service::RowChanges::Merged {
        inserted: n("Rows_Inserted").unwrap_or(0),
        updated: n("Rows_Updated").unwrap_or(0),
        deleted: n("Rows_Deleted").unwrap_or(0),
    })
}

fn print_outcome(event: &EventInfo, g: &Global, verb: Verb) -> Result<()> {
    if g.json {
        return json(event);
    }
    if matches!(verb, Verb::Activate | Verb::Deactivate) {
        say!(
            "{} (event {})",
            event
                .response
                .clone()
                .unwrap_or_else(|| event.state.clone()),
            event.ev_id
        );
        return Ok(());
    }
    let number = |t: &str, r: &str| count(event, t, r).map(thousands).unwrap_or_default();
    let value = |t: &str, r: &str| event.result(Some(t), r).unwrap_or_default().to_owned();
    let rows: Vec<Vec<String>> = event
        .tables()
        .into_iter()
        .map(|t| {
            let mut row = vec![t.to_owned(), value(t, "Table_State")];
            match verb {
                Verb::Refresh | Verb::Activate | Verb::Deactivate => {
                    let rows = match number(t, "Target_Rows_Used") {
                        n if n.is_empty() => number(t, "Source_Rows_Used"),
                        n => n,
                    };
                    row.push(rows);
                    row.push(crate::output::changes(row_changes(event, t).as_ref()));
                }
                Verb::Compare => row.extend([
                    number(t, "Source_Rows_Used"),
                    number(t, "Target_Rows_Used"),
                    number(t, "Rows_Only_On_Source"),
                    number(t, "Rows_Only_On_Target"),
                    number(t, "Rows_Which_Differ"),
                ]),
            }
            row.push(value(t, "Table_Duration"));
            row.push(value(t, "Table_Error"));
            row
        })
        .collect();
    let headers: &[&str] = match verb {
        Verb::Refresh | Verb::Activate | Verb::Deactivate => {
            &["table", "state", "rows", "changes", "seconds", "error"]
        }
        Verb::Compare => &[
            "table",
            "state",
            "source rows",
            "target rows",
            "only on source",
            "only on target",
            "differ",
            "seconds",
            "error",
        ],
    };
    say!("{}", table(headers, rows));
    say!(
        "{} (event {})",
        event
            .response
            .clone()
            .unwrap_or_else(|| event.state.clone()),
        event.ev_id
    );
    Ok(())
}

/// `sluice event tail`: one line per event (`--json`: the event as JSON Lines); notices on stderr.
pub async fn tail(
    client: &Client,
    g: &Global,
    topic: &str,
    pattern: Option<&str>,
    after: Option<u64>,
    count: Option<u64>,
) -> Result<Outcome> {
    use futures::StreamExt as _;
    use sluice_client::TailItem;
    let mut stream = std::pin::pin!(client.tail(topic, pattern, after));
    let mut seen = 0u64;
    if !g.json {
        note!(
            "following {topic} {} (Ctrl-C to stop)",
            pattern.unwrap_or("#")
        );
    }
    while let Some(item) = stream.next().await {
        match item.with_context(|| format!("cannot follow topic {topic}"))? {
            TailItem::Event(e) => {
                if g.json {
                    println!("{e}");
                } else {
                    println!(
                        "{:>8}  {}  {}  {}",
                        e["seq"],
                        e["timestamp"].as_str().unwrap_or(""),
                        e["routing_key"].as_str().unwrap_or(""),
                        e["payload"]
                    );
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            TailItem::Lag(behind) => note!("note: this stream is {behind} events behind"),
            TailItem::Cutoff {
                reason,
                resume_after,
            } => note!(
                "note: the server cut the stream off ({reason}); resuming after {resume_after}"
            ),
            TailItem::Reconnecting { after, reason } => note!(
                "note: {reason}; reconnecting{}",
                after.map(|a| format!(" after {a}")).unwrap_or_default()
            ),
        }
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn channel() -> Value {
        value!({
            "loc_groups": {"SRC": {"members": ["a"]}, "TGT": {"members": ["b", "c"]}},
            "actions": [
                {"type": "Capture", "loc_scope": "SRC", "table_scope": "*"},
                {"type": "Integrate", "loc_scope": "TGT"},
                {"type": "Integrate", "loc_scope": "c", "params": {"Method": "BURST"}}
            ]
        })
    }

    #[test]
    fn the_source_and_target_follow_the_channels_actions() {
        let name: ChannelName = "ch".parse().unwrap();
        let c = channel();
        assert_eq!(
            pick_location(&c, &name, None, "Capture", "source", "--source").unwrap(),
            "a"
        );
        let e = pick_location(&c, &name, None, "Integrate", "target", "--target").unwrap_err();
        assert_eq!(
            e.to_string(),
            "channel ch has several target locations (b, c); pass --target"
        );
        let b: LocationName = "b".parse().unwrap();
        assert_eq!(
            pick_location(&c, &name, Some(&b), "Integrate", "target", "--target").unwrap(),
            "b"
        );
        let e = pick_location(&c, &name, None, "Refresh", "x", "--x").unwrap_err();
        assert!(e.to_string().contains("has no Refresh action"), "{e}");
        // `*` (or no scope) covers every member.
        let all = value!({"loc_groups": {"G": {"members": ["only"]}},
                          "actions": [{"type": "Capture"}]});
        assert_eq!(
            pick_location(&all, &name, None, "Capture", "source", "--source").unwrap(),
            "only"
        );
    }

    fn event(results: Value, state: &str) -> EventInfo {
        serde_json::from_value(value!({"type": "Compare", "state": state, "results": results}))
            .unwrap()
    }

    #[test]
    fn a_compare_differs_by_state_or_counts() {
        let same = event(
            value!([{"table": "t", "result": "Table_State", "value": "DONE/IDENTICAL"},
                    {"table": "t", "result": "Rows_Which_Differ", "value": "0"}]),
            "DONE",
        );
        assert!(!differs(&same));
        let by_state = event(
            value!([{"table": "t", "result": "Table_State", "value": "DONE/DIFFERENT"}]),
            "DONE",
        );
        assert!(differs(&by_state));
        let by_count = event(
            value!([{"table": "t", "result": "Table_State", "value": "DONE"},
                    {"table": "u", "result": "Rows_Only_On_Target", "value": "3"}]),
            "DONE",
        );
        assert!(differs(&by_count));
    }

    #[test]
    fn progress_lines_name_state_table_and_rows() {
        let e = event(
            value!([{"table": "orders", "result": "Table_State", "value": "BUSY"},
                    {"table": "orders", "result": "Source_Rows_Used", "value": "12000"},
                    {"table": "lines", "result": "Table_Start_Time", "value": "x"}]),
            "ACTIVE",
        );
        assert_eq!(progress_line(&e, "orders"), "orders: BUSY, 12,000 rows");
        assert_eq!(progress_line(&e, "lines"), "lines: PENDING");
    }
}
