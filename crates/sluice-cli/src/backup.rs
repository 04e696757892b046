//! `sluice backup` (a checksummed archive of the hubs' definitions and settings) and `sluice
//! restore ARCHIVE` (verify, show the plan, confirm, restore), on the local repository or, with
//! `--hub URL`, on a hub server.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use sluice_model::HubName;
use sluice_service::HubService;
use sluice_service::backup::{
    self, BackupContents, BackupRequest, RestorePlan, RestoreRequest, Restored,
};
use sluice_service::hub_server::RepositoryFacts;

use crate::args::{self, Global, Outcome};
use crate::remote::Remote;
use crate::server::{RepoArg, open};

/// `sluice backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the archive (default: `$SLUICE_HOME/backups`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also the users and API keys (password and secret hashes as stored).
    #[arg(long)]
    with_users: bool,
    #[command(flatten)]
    repo: RepoArg,
}

/// `sluice restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The archive (`sluice-backup-….tar.gz`).
    archive: PathBuf,
    /// Also restore the users and API keys (the archive must hold them).
    #[arg(long)]
    with_users: bool,
    /// Restore without asking (needed when stdin is not a terminal).
    #[arg(long)]
    auto_approve: bool,
    #[command(flatten)]
    repo: RepoArg,
}

/// The local repository's service, knowing which backend it is on (for the manifest).
async fn local_service(repo: &RepoArg, g: &Global) -> Result<HubService> {
    let spec = repo.spec(g);
    let service = HubService::new(
        open(&spec).await?,
        sluice_service::registry::process_env(),
        args::user(),
    );
    service.set_server_facts(|f| f.repository = RepositoryFacts::from_spec(&spec));
    Ok(service)
}

/// `sluice backup`.
pub async fn backup(a: BackupArgs, g: &Global) -> Result<Outcome> {
    let dir = a.dir.clone().unwrap_or_else(|| g.home.join("backups"));
    let hubs: Vec<HubName> = g.hub_name.iter().cloned().collect();
    let (name, bytes, hubs_in) = match &g.hub {
        Some(_) => {
            let (client, _) = Remote::session(g)?;
            let names: Vec<String> = hubs.iter().map(ToString::to_string).collect();
            let (name, bytes) = client.backup(&names, a.with_users).await?;
            // Checked as a restore would check it before it is kept.
            let contents = backup::read_backup(&bytes).context("the hub server's archive")?;
            let name = if backup::is_backup_file_name(&name) {
                name
            } else {
                backup::file_name(contents.manifest.created)
            };
            (name, bytes, contents.manifest.hubs)
        }
        None => {
            let service = local_service(&a.repo, g).await?;
            let made = service
                .backup(&BackupRequest {
                    hubs,
                    with_users: a.with_users,
                    with_server: true,
                })
                .await?;
            (made.file_name, made.bytes, made.manifest.hubs)
        }
    };
    let path = backup::write_file_atomically(&dir, &name, &bytes)
        .with_context(|| format!("cannot write the backup into {}", dir.display()))?;
    if g.json {
        say!(
            "{}",
            serde_json::json!({"path": path, "hubs": hubs_in, "bytes": bytes.len()})
        );
    } else {
        say!("{}", path.display());
    }
    note!(
        "backed up {} hub(s) ({}){} into {}",
        hubs_in.len(),
        hubs_in
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if a.with_users { " with users" } else { "" },
        path.display()
    );
    Ok(Outcome::Ok)
}

fn read_archive(path: &Path) -> Result<(Vec<u8>, BackupContents)> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > backup::MAX_ARCHIVE_BYTES as u64 {
        bail!("{} is too large for a sluice backup", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let contents = backup::read_backup(&bytes).with_context(|| path.display().to_string())?;
    Ok((bytes, contents))
}

/// `sluice restore ARCHIVE`.
pub async fn restore(a: RestoreArgs, g: &Global) -> Result<Outcome> {
    let (bytes, contents) = read_archive(&a.archive)?;
    let hubs: Vec<HubName> = g.hub_name.iter().cloned().collect();
    let with_server = contents.manifest.with_server;
    let req = RestoreRequest {
        hubs: hubs.clone(),
        with_users: a.with_users,
        with_server,
        expected: None,
    };
    let query = |expect: &[String]| {
        let mut q: Vec<(&'static str, String)> =
            hubs.iter().map(|h| ("hub", h.to_string())).collect();
        q.push(("with_users", a.with_users.to_string()));
        q.push(("with_server", with_server.to_string()));
        q.extend(expect.iter().map(|e| ("expect", e.clone())));
        q
    };
    let remote = match &g.hub {
        Some(_) => Some(Remote::session(g)?.0),
        None => None,
    };
    let local = match &remote {
        None => Some(local_service(&a.repo, g).await?),
        Some(_) => None,
    };
    let plan: RestorePlan = match (&remote, &local) {
        (Some(client), _) => {
            serde_json::from_value(client.restore(&bytes, true, &query(&[])).await?)
                .context("the hub server's plan")?
        }
        (None, Some(svc)) => svc.plan_restore(&contents, &req).await?,
        (None, None) => unreachable!("one side is chosen"),
    };
    print_plan(&plan, g)?;
    let unchanged = plan.hubs.iter().all(|p| p.is_empty())
        && plan.settings.is_empty()
        && plan.identity.is_empty()
        && plan.server.is_empty();
    if unchanged {
        if g.json {
            say!("{}", serde_json::json!({"plan": plan, "restored": null}));
        }
        note!("nothing to restore: the repository already holds what the archive holds");
        return Ok(Outcome::Ok);
    }
    if !a.auto_approve && !confirm()? {
        if g.json {
            say!("{}", serde_json::json!({"plan": plan, "restored": null}));
        }
        note!("nothing was restored");
        return Ok(Outcome::Ok);
    }
    let expected: BTreeMap<HubName, Option<i64>> = plan
        .hubs
        .iter()
        .map(|p| (p.hub.clone(), p.base_version))
        .collect();
    let restored: Restored = match (&remote, &local) {
        (Some(client), _) => {
            let expect: Vec<String> = expected
                .iter()
                .map(|(h, v)| format!("{h}:{}", v.map_or("new".to_owned(), |v| v.to_string())))
                .collect();
            serde_json::from_value(client.restore(&bytes, false, &query(&expect)).await?)
                .context("the hub server's answer")?
        }
        (None, Some(svc)) => {
            let req = RestoreRequest {
                expected: Some(expected),
                ..req
            };
            svc.restore(&contents, &req).await?
        }
        (None, None) => unreachable!("one side is chosen"),
    };
    if g.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"plan": plan, "restored": restored}))?
        );
    }
    for note in &restored.notes {
        note!("{note}");
    }
    for applied in &restored.hubs {
        note!(
            "restored hub {} (definitions version {})",
            applied.hub,
            applied.version
        );
    }
    Ok(Outcome::Ok)
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirm() -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("not restoring without a confirmation: stdin is not a terminal; pass --auto-approve");
    }
    eprint!("Restore this archive? Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok(line.trim() == "yes")
}

/// The restore plan for people (with `--json`, the plan is printed once, with the outcome).
fn print_plan(plan: &RestorePlan, g: &Global) -> Result<()> {
    if g.json {
        return Ok(());
    }
    let m = &plan.manifest;
    say!(
        "archive of {} made {} by sluice {} from a {} repository",
        m.hubs
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        m.created.format("%Y-%m-%d %H:%M:%S UTC"),
        m.sluice_version,
        m.backend
    );
    for hub in &plan.hubs {
        crate::definitions::print_plan(hub, "the archive", None);
    }
    if !(plan.settings.is_empty() && plan.server.is_empty() && plan.identity.is_empty()) {
        say!("\nsettings:");
    }
    for line in plan
        .settings
        .iter()
        .chain(&plan.server)
        .chain(&plan.identity)
    {
        say!("  {line}");
    }
    Ok(())
}

/// `24h`, `30m`, `90s`, `7d` (a number and a unit).
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: give a unit (s, m, h or d), e.g. 24h"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 24h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    if seconds == 0 {
        return Err("the interval must be longer than 0".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_every;
    use std::time::Duration;

    #[test]
    fn intervals_parse_with_their_unit() {
        assert_eq!(parse_every("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_every("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_every("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_every("90s"), Ok(Duration::from_secs(90)));
        for bad in ["24", "h", "0h", "1w", "-1h", ""] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }
}
