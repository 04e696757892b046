//! What location definitions may reach on the machine that runs them: environment variables
//! (`${VAR}` references) and files (SQLite databases).
//!
//! Two postures:
//! * [`LocationPolicy::local`]: the CLI working on its own repository, as the operator. Any
//!   variable resolves except the hub server's own `SLUICE_*`; SQLite files may be anywhere except
//!   the files sluice itself keeps secret (the repository, the key file).
//! * [`LocationPolicy::server`]: the hub server, where definitions also arrive over the API from
//!   users who must not read the server's environment or files. A reference resolves only when the
//!   variable is on the operator's allow list (`SLUICE_ENV_ALLOW`: names, or prefixes ending in
//!   `*`; empty by default), never `SLUICE_*`. A location created or changed over the API must keep
//!   its SQLite file inside the data directory (no `..`, no symlink out of it, no `file:` URI), and
//!   no location may ever open the repository or the key file.
//!
//! Resolved values never appear in messages: errors name the reference (`${VAR}`), and
//! [`Redactor`] replaces any resolved value a driver error repeats.

use std::path::{Component, Path, PathBuf};

use sluice_model::definition::{Location, LocationClass, env_refs};

/// Variables no location may read, whatever the allow list says.
const RESERVED_PREFIX: &str = "SLUICE_";

/// Which `${VAR}` references resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvAllow {
    /// Every variable but the reserved ones (the operator's own CLI).
    Any,
    /// Names and `PREFIX*` patterns.
    Listed(Vec<String>),
}

/// What location definitions may reach; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationPolicy {
    env: EnvAllow,
    /// Where SQLite locations defined over the API live (absolute, symlinks resolved).
    data_dir: Option<PathBuf>,
    /// Files no location may open (absolute, symlinks resolved where they exist).
    protected: Vec<PathBuf>,
}

impl Default for LocationPolicy {
    fn default() -> Self {
        Self::local(Vec::new())
    }
}

impl LocationPolicy {
    /// The operator's own CLI: any variable but `SLUICE_*`, any file but `protected`.
    pub fn local(protected: Vec<PathBuf>) -> Self {
        LocationPolicy {
            env: EnvAllow::Any,
            data_dir: None,
            protected: protected.iter().map(|p| normalize(p)).collect(),
        }
    }

    /// The hub server: references resolve only for variables matching `env_allow` (a comma- or
    /// space-separated list of names and `PREFIX*` patterns); SQLite locations defined over the API
    /// live under `data_dir` (created when missing); `protected` files are never opened.
    pub fn server(
        env_allow: &str,
        data_dir: &Path,
        protected: Vec<PathBuf>,
    ) -> Result<Self, String> {
        let mut listed = Vec::new();
        for item in env_allow
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let name = item.strip_suffix('*').unwrap_or(item);
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || (name.is_empty() && !item.ends_with('*'))
            {
                return Err(format!(
                    "invalid entry {item:?} in the environment allow list: expected NAME or PREFIX*"
                ));
            }
            if item == "*" || RESERVED_PREFIX.starts_with(name) || name.starts_with(RESERVED_PREFIX)
            {
                return Err(format!(
                    "the environment allow list may not include {item:?}: the hub server's own {RESERVED_PREFIX}* variables are never readable by locations"
                ));
            }
            listed.push(item.to_owned());
        }
        std::fs::create_dir_all(data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let data_dir = data_dir.canonicalize().map_err(|e| {
            format!(
                "cannot resolve the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        Ok(LocationPolicy {
            env: EnvAllow::Listed(listed),
            data_dir: Some(data_dir),
            protected: protected.iter().map(|p| normalize(p)).collect(),
        })
    }

    /// The data directory, when this is a hub server's policy.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// Whether a `${name}` reference may resolve.
    pub fn env_allowed(&self, name: &str) -> bool {
        if name.starts_with(RESERVED_PREFIX) {
            return false;
        }
        match &self.env {
            EnvAllow::Any => true,
            EnvAllow::Listed(items) => items.iter().any(|item| match item.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => item == name,
            }),
        }
    }

    /// Why a reference to `name` is refused, for messages.
    pub fn env_refusal(&self, name: &str) -> String {
        if name.starts_with(RESERVED_PREFIX) {
            format!(
                "${{{name}}} may not be referenced: {RESERVED_PREFIX}* variables belong to sluice itself"
            )
        } else {
            format!(
                "${{{name}}} may not be referenced on this hub server: the operator has not allowed it (SLUICE_ENV_ALLOW)"
            )
        }
    }

    /// Checks a location created or changed over the API: every reference allowed, and a SQLite
    /// file inside the data directory. Returns `(property, reason)` for each problem.
    pub fn check_api_location(&self, location: &Location) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (prop, value) in &location.props {
            let text = value.to_text();
            if crate::secrets::is_sealed(&text) {
                continue;
            }
            for var in env_refs(&text).unwrap_or_default() {
                if !self.env_allowed(&var) {
                    problems.push((prop.clone(), self.env_refusal(&var)));
                }
            }
        }
        if location.class == LocationClass::Sqlite
            && let Some(value) = location.prop("Database_Name")
        {
            let text = value.to_text();
            if env_refs(&text).is_ok_and(|refs| refs.is_empty())
                && let Err(reason) = self.check_api_sqlite_path(&text)
            {
                problems.push(("Database_Name".into(), reason));
            }
        }
        problems
    }

    /// A SQLite path given over the API: inside the data directory, no `..`, no URI, no symlink
    /// out, not a protected file.
    fn check_api_sqlite_path(&self, text: &str) -> Result<(), String> {
        let Some(data_dir) = &self.data_dir else {
            return self.check_path(Path::new(text));
        };
        if text.starts_with("file:") {
            return Err("a file: URI is not accepted over the API; give a file name inside the hub server's data directory".into());
        }
        let path = Path::new(text);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err("'..' is not accepted in a database path".into());
        }
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            data_dir.join(path)
        };
        let resolved = normalize(&full);
        if !resolved.starts_with(data_dir) {
            return Err(format!(
                "the database file must be inside the hub server's data directory {} (a relative name is taken from there)",
                data_dir.display()
            ));
        }
        self.check_path(&resolved)
    }

    /// A SQLite file any location is about to open: never a protected file.
    pub fn check_path(&self, path: &Path) -> Result<(), String> {
        if path.to_str().is_some_and(|p| p.starts_with("file:")) {
            // A URI: compare the path part.
            let text = path.to_str().unwrap_or_default();
            let rest = text.trim_start_matches("file:");
            let rest = rest.strip_prefix("//localhost").unwrap_or(rest);
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let file = rest.split(['?', '#']).next().unwrap_or_default();
            if file.contains('%') {
                return Err("a file: URI with %-escapes is not accepted".into());
            }
            return self.check_path(Path::new(file));
        }
        let resolved = normalize(path);
        if self.protected.iter().any(|p| is_same_db(&resolved, p)) {
            return Err("this file belongs to the hub itself (its repository or key) and cannot be a location".into());
        }
        Ok(())
    }
}

/// Whether `path` is `protected` or one of SQLite's companion files of it.
fn is_same_db(path: &Path, protected: &Path) -> bool {
    if path == protected {
        return true;
    }
    let (Some(name), Some(base)) = (path.to_str(), protected.to_str()) else {
        return false;
    };
    ["-wal", "-shm", "-journal"]
        .iter()
        .any(|suffix| name.strip_suffix(suffix) == Some(base))
}

/// `path` made absolute with symlinks resolved as far as it exists, and `.`/`..` folded.
fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // Resolve the longest existing ancestor (symlinks included), then append the rest.
    let mut existing = absolute.clone();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return fold(&out);
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            _ => return fold(&absolute),
        }
    }
}

fn fold(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Replaces resolved secret values in messages by what they were resolved from.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// `(value, shown instead)`, longest values first.
    pairs: Vec<(String, String)>,
}

impl Redactor {
    /// Remembers that `value` came from `shown` (e.g. `${DB_PASSWORD}`).
    pub fn add(&mut self, value: &str, shown: impl Into<String>) {
        // Very short values would redact ordinary words; they are also no secret worth the name.
        if value.len() < 3 || self.pairs.iter().any(|(v, _)| v == value) {
            return;
        }
        self.pairs.push((value.to_owned(), shown.into()));
        self.pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// Whether nothing needs redacting.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `text` with every remembered value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (value, shown) in &self.pairs {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), shown);
            }
        }
        out
    }

    /// Whether `text` holds a remembered value.
    pub fn leaks(&self, text: &str) -> bool {
        self.pairs.iter().any(|(v, _)| text.contains(v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::definition::PropValue;

    fn sqlite(name: &str) -> Location {
        Location {
            name: sluice_model::LocationName::new("l").unwrap(),
            class: LocationClass::Sqlite,
            description: String::new(),
            props: [("Database_Name".to_owned(), PropValue::Text(name.into()))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn the_allow_list_never_opens_sluice_variables() {
        let local = LocationPolicy::local(Vec::new());
        assert!(local.env_allowed("PG_PASSWORD"));
        assert!(!local.env_allowed("SLUICE_ADMIN_PASSWORD"));
        let dir = tempfile::tempdir().unwrap();
        let server = LocationPolicy::server("PG_*, MY_PASSWORD", dir.path(), Vec::new()).unwrap();
        assert!(server.env_allowed("PG_HOST"));
        assert!(server.env_allowed("MY_PASSWORD"));
        assert!(!server.env_allowed("MY_PASSWORD2"));
        assert!(!server.env_allowed("HOME"));
        assert!(!server.env_allowed("SLUICE_SECRET_KEY"));
        let none = LocationPolicy::server("", dir.path(), Vec::new()).unwrap();
        assert!(!none.env_allowed("PG_HOST"));
        for bad in [
            "*",
            "SLUICE_*",
            "SLU*",
            "SLUICE_ADMIN_PASSWORD",
            "A-B",
            "$X",
        ] {
            assert!(
                LocationPolicy::server(bad, dir.path(), Vec::new()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_sqlite_paths_stay_in_the_data_directory() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("data");
        let repo = home.path().join("hub.db");
        std::fs::write(&repo, b"").unwrap();
        let key = home.path().join("secret.key");
        let p = LocationPolicy::server("", &data, vec![repo.clone(), key.clone()]).unwrap();
        let ok = |name: &str| p.check_api_location(&sqlite(name)).is_empty();
        assert!(ok("shop.db"));
        assert!(ok("sub/dir/shop.db"));
        assert!(ok(&data.join("x.db").display().to_string()));
        assert!(!ok("../hub.db"));
        assert!(!ok(&repo.display().to_string()));
        assert!(!ok(&format!("{}-wal", repo.display())));
        assert!(!ok("/etc/passwd"));
        assert!(!ok("file:shop.db"));
        assert!(!ok("a/../../hub.db"));
        // A symlink inside the data directory pointing out of it.
        std::os::unix::fs::symlink(home.path(), data.join("escape")).unwrap();
        assert!(!ok("escape/hub.db"));
        assert!(!ok("escape/other.db"));
        // The repository is never a location, even for the operator.
        let local = LocationPolicy::local(vec![repo.clone()]);
        assert!(local.check_path(&repo).is_err());
        assert!(local.check_path(&data.join("escape/hub.db")).is_err());
        assert!(
            local
                .check_path(Path::new(&format!("file:{}?mode=ro", repo.display())))
                .is_err()
        );
        assert!(local.check_path(&data.join("fine.db")).is_ok());
    }

    #[test]
    fn references_over_the_api_must_be_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocationPolicy::server("DB_*", dir.path(), Vec::new()).unwrap();
        let problems = p.check_api_location(&sqlite("/nonexistent/${SLUICE_ADMIN_PASSWORD}"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].1.contains("${SLUICE_ADMIN_PASSWORD}"));
        assert!(!p.check_api_location(&sqlite("${HOME}/x.db")).is_empty());
        assert!(p.check_api_location(&sqlite("${DB_FILE}")).is_empty());
    }

    #[test]
    fn redaction_replaces_values_longest_first() {
        let mut r = Redactor::default();
        r.add("hunter22", "${PW}");
        r.add("hunter2", "${PW2}");
        r.add("ab", "${SHORT}");
        assert_eq!(
            r.redact("login hunter22 failed (hunter2) ab"),
            "login ${PW} failed (${PW2}) ab"
        );
        assert!(r.leaks("xx hunter2"));
    }
}
