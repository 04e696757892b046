//! The sessions `sluice login` stores: `credentials.json` in `$SLUICE_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/sluice`, else `~/.config/sluice`, readable by its owner only, one entry per hub
//! server URL.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_client::Tokens;

/// The file's name inside the configuration directory.
const FILE: &str = "credentials.json";

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The hub server's URL.
    pub url: String,
    /// Who logged in.
    pub user: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// A session of `user` at `url` with `tokens`.
    pub fn new(url: &str, user: &str, tokens: &Tokens) -> Session {
        Session {
            url: url.to_owned(),
            user: user.to_owned(),
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            expires_at: tokens.expires_at,
        }
    }

    /// The session's tokens.
    pub fn tokens(&self) -> Tokens {
        Tokens {
            access_token: self.access_token.clone(),
            refresh_token: self.refresh_token.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// The stored sessions, by URL.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// Sessions by hub server URL.
    #[serde(default)]
    pub hubs: BTreeMap<String, Session>,
    /// The hub server commands work on without `--hub`: the last one logged in to, until
    /// `sluice logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// The directory of the credentials file.
pub fn config_dir() -> Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("SLUICE_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("sluice"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("sluice")),
        None => bail!("cannot tell where to keep credentials: set SLUICE_CONFIG_DIR or HOME"),
    }
}

/// The credentials file's path.
pub fn path() -> Result<PathBuf> {
    Ok(config_dir()?.join(FILE))
}

/// The key of a hub server URL as the client normalised it: without a trailing slash.
pub fn key(normalized_url: &str) -> String {
    normalized_url.trim_end_matches('/').to_owned()
}

impl Credentials {
    /// Reads the file at `path`; a missing file holds no sessions.
    pub fn load(path: &Path) -> Result<Credentials> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a credentials file (remove it and log in again)",
                path.display()
            )
        })
    }

    /// Writes the file at `path` with mode 0600 (its directory 0700 when created), replacing the
    /// old one atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .context("the credentials path has no directory")?;
        create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let temp = dir.join(format!(".{FILE}.{}", std::process::id()));
        let written = write_private(&temp, &serde_json::to_vec_pretty(self)?)
            .and_then(|()| std::fs::rename(&temp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Stores `session` in the file at `path`, keeping the sessions of other servers; a login
/// (`default`) also makes its server the one commands work on without `--hub`.
pub fn store(path: &Path, session: Session, default: bool) -> Result<()> {
    let mut creds = Credentials::load(path)?;
    if default {
        creds.default = Some(session.url.clone());
    }
    creds.hubs.insert(session.url.clone(), session);
    creds.save(path)
}

/// The hub server commands work on without `--hub`: the last one logged in to whose session is
/// still stored.
pub fn default_hub() -> Result<Option<String>> {
    let creds = Credentials::load(&path()?)?;
    Ok(creds.default.filter(|url| creds.hubs.contains_key(url)))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes `bytes` to a new file readable and writable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // The mode above is filtered by the umask and ignored for a file that already existed: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn session(url: &str, access: &str) -> Session {
        Session {
            url: url.into(),
            user: "admin".into(),
            access_token: access.into(),
            refresh_token: Some("r".into()),
            expires_at: Utc::now(),
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf").join(FILE);
        // A file left world-readable (by hand, or an older version) is tightened on save.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut creds = Credentials::load(&path).unwrap();
        creds
            .hubs
            .insert("http://a:1".into(), session("http://a:1", "t"));
        creds.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");

        let fresh = dir.path().join("new").join("deeper").join(FILE);
        creds.save(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        let dir_mode = std::fs::metadata(fresh.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700, "{dir_mode:o}");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(fresh.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
    }

    #[test]
    fn sessions_of_several_servers_are_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(Credentials::load(&path).unwrap().hubs.is_empty());
        let mut creds = Credentials::default();
        creds
            .hubs
            .insert("http://a:1".into(), session("http://a:1", "ta"));
        creds
            .hubs
            .insert("https://b:2".into(), session("https://b:2", "tb"));
        creds.save(&path).unwrap();
        let loaded = Credentials::load(&path).unwrap();
        assert_eq!(loaded.hubs.len(), 2);
        assert_eq!(loaded.hubs["http://a:1"].access_token, "ta");
        assert_eq!(loaded.hubs["https://b:2"].tokens().access_token, "tb");
    }

    #[test]
    fn storing_a_session_replaces_only_that_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        store(&path, session("http://a:1", "a-old"), true).unwrap();
        store(&path, session("http://b:2", "b"), true).unwrap();
        // A renewal keeps the default: the last login's server.
        store(&path, session("http://a:1", "a-new"), false).unwrap();
        let loaded = Credentials::load(&path).unwrap();
        assert_eq!(loaded.hubs.len(), 2);
        assert_eq!(loaded.hubs["http://a:1"].access_token, "a-new");
        assert_eq!(loaded.hubs["http://b:2"].access_token, "b");
        assert_eq!(loaded.default.as_deref(), Some("http://b:2"));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, "not json").unwrap();
        let e = format!("{:#}", Credentials::load(&path).unwrap_err());
        assert!(e.contains("is not a credentials file"), "{e}");
    }

    #[test]
    fn urls_are_keyed_without_a_trailing_slash() {
        let client = sluice_client::Client::new("http://127.0.0.1:4341").unwrap();
        assert_eq!(key(client.base_url().as_str()), "http://127.0.0.1:4341");
        let client = sluice_client::Client::new("http://127.0.0.1:4341/x/").unwrap();
        assert_eq!(key(client.base_url().as_str()), "http://127.0.0.1:4341/x");
    }
}
