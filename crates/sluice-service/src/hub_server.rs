//! The hub server as HVR's API shows it: its props (`/hubserver/props`), the environment it
//! shows, the repository it runs on (`/repos`) and the repository's props.
//!
//! A prop is one of three sorts. *Discovered* props (`Hub_Server_HVR_Version`, …) and the props of
//! `sluice serve`'s configuration (`HTTP_Port`, `Repository_Class`, `Database_*`) are answered as
//! they are and cannot be changed over the API (a change to the value they have is accepted and
//! changes nothing, so a client may write back what it read). The other props HVR documents are
//! kept in the repository's property bag and answered as stored; sluice does not act on them.
//! Secrets are never kept in these bags: sluice takes none of the hub server's secrets as props.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use sluice_repo::{PropBag, PropWrite};

use crate::{HubService, Result, ServiceError};

type Props = BTreeMap<String, Json>;

/// What the hub server knows of itself from `sluice serve`'s configuration.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    /// The port the API listens on, once it listens.
    pub http_port: Option<u16>,
    /// The repository, as its spec names it (never its password).
    pub repository: Option<RepositoryFacts>,
}

/// The repository, described from its spec (never its password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryFacts {
    /// `postgresql` or `sqlite`.
    pub class: &'static str,
    /// The database host (PostgreSQL).
    pub host: Option<String>,
    /// The database port (PostgreSQL).
    pub port: Option<u16>,
    /// The database name (PostgreSQL) or the file (SQLite).
    pub database: String,
    /// The database user (PostgreSQL).
    pub user: Option<String>,
}

impl RepositoryFacts {
    /// Reads a repository spec (`postgres://…`, a key=value string, `sqlite:PATH` or a path).
    pub fn from_spec(spec: &str) -> Option<RepositoryFacts> {
        match sluice_repo::Spec::parse(spec, "repository").ok()? {
            sluice_repo::Spec::Sqlite(path) => Some(RepositoryFacts {
                class: "sqlite",
                host: None,
                port: None,
                database: path.display().to_string(),
                user: None,
            }),
            sluice_repo::Spec::Postgres(url) => Some(postgres_facts(&url)),
        }
    }
}

fn postgres_facts(url: &str) -> RepositoryFacts {
    let mut facts = RepositoryFacts {
        class: "postgresql",
        host: None,
        port: None,
        database: String::new(),
        user: None,
    };
    let lower = url.to_ascii_lowercase();
    if let Some(rest) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &url[s.len()..]))
    {
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (creds, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        facts.user = creds
            .map(|c| c.split(':').next().unwrap_or_default().to_owned())
            .filter(|u| !u.is_empty());
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p.parse().ok()),
            _ => (hostport, None),
        };
        facts.host = (!host.is_empty()).then(|| host.to_owned());
        facts.port = port;
        facts.database = path.to_owned();
    } else {
        for pair in url.split_whitespace() {
            match pair.split_once('=') {
                Some(("host", v)) => facts.host = Some(v.to_owned()),
                Some(("port", v)) => facts.port = v.parse().ok(),
                Some(("dbname", v)) => facts.database = v.to_owned(),
                Some(("user", v)) => facts.user = Some(v.to_owned()),
                _ => {}
            }
        }
    }
    facts
}

/// Hub server props discovered by sluice (never set).
const DISCOVERED: &[&str] = &[
    "Hub_Server_HVR_Version",
    "Hub_Server_Operating_System",
    "Hub_Server_Platform",
    "Hub_Server_Password_Manager_Configured",
    "Hub_Server_HVR_CONFIG",
    "Hub_Server_HVR_HOME",
    "Hub_Server_OS_Fingerprint",
    "Repository_Class_Flavor",
];

/// Hub server props of `sluice serve`'s configuration.
const CONFIGURED: &[&str] = &[
    "HTTP_Port",
    "Repository_Class",
    "Database_Host",
    "Database_Port",
    "Database_Name",
    "Database_User",
];

/// Hub server props HVR documents that sluice keeps as given (and does not act on).
const KEPT: &[&str] = &[
    "Authentication_Method",
    "Azure_OAuth2_Client_Id",
    "Azure_OAuth2_Endpoint",
    "Azure_OAuth2_User",
    "Db2_DB2INSTANCE",
    "Db2_INSTHOME",
    "HTTPS_Port",
    "Ingres_II_SYSTEM",
    "License_Agreement_Accepted",
    "Log_Rotate_Interval",
    "Minimum_TLS_Supported",
    "ODBC_DM_Lib_Path",
    "ODBC_Driver",
    "ODBC_Inst",
    "ODBC_Sysini",
    "Oracle_Home",
    "Oracle_SID",
    "Oracle_TNS",
    "PostgreSQL_Pglib",
    "Public_Host",
    "Saml_IDP_Metadata",
    "Saml_IDP_Name",
    "Saml_IDP_User_Claim",
    "Saml_SP_Public_Certificate",
    "Setup_Mode",
    "SqlServer_Authentication_Method",
    "SqlServer_Server",
    "Teradata_TPT_Lib_Path",
    "Worker_Age",
    "Worker_Environment",
    "Worker_Idle",
    "Worker_Kill_Grace",
    "Worker_Max_Hard",
    "Worker_Max_Soft",
];

/// Hub server props HVR documents that are secrets: sluice keeps none.
const SECRETS: &[&str] = &[
    "Database_Password",
    "HTTPS_Private_Key_Password",
    "Azure_OAuth2_Client_Secret",
    "Azure_OAuth2_Password",
    "Saml_SP_Private_Key",
    "Saml_SP_Private_Key_Password",
];

/// Repository props HVR documents that sluice keeps as given (and does not act on).
const REPOSITORY_KEPT: &[&str] = &[
    "Access_List",
    "Account_Id",
    "Account_Name",
    "Agent_Client_Public_Certificate",
    "All_User_Access",
    "Hub_Server_Login_Expiration",
    "Hub_Switch_Bookmarks",
    "Licenses",
    "Metering_License_Acquire_State",
    "Metering_Purge_Frequency",
    "Metering_Upload_State",
    "PAM_Service",
    "PAM_Sudo_User",
    "Registration_Id",
    "User_Access",
    "User_Auto_Create",
];

/// Repository props that are secrets: sluice keeps none.
const REPOSITORY_SECRETS: &[&str] = &[
    "Agent_Client_Private_Key",
    "Agent_Client_Private_Key_Password",
    "Registration_Access_Key",
];

/// The largest prop value kept (its JSON text).
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Environment variables `GET /hubserver/env/vars` may show: names, or prefixes ending in `*`.
const ENV_SHOWN: &[&str] = &[
    "DB2INSTANCE",
    "II_SYSTEM",
    "INSTHOME",
    "ORACLE_HOME",
    "ORACLE_SID",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "PATH",
    "HOME",
    "TZ",
    "LANG",
    "LC_ALL",
    "USER",
    "HOSTNAME",
    "SLUICE_*",
];

/// Parts of a variable's name that mark it secret (never shown, even when on [`ENV_SHOWN`]).
const ENV_SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "KEY",
    "TOKEN",
    "CREDENTIAL",
    "REPOSITORY",
    "DATABASE_URL",
];

/// Whether `GET /hubserver/env/vars` may show variable `name`.
pub fn env_var_shown(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if name == "GOOGLE_APPLICATION_CREDENTIALS" {
        // A path to a credentials file, not the credentials.
        return true;
    }
    if ENV_SECRET_WORDS.iter().any(|w| upper.contains(w)) {
        return false;
    }
    ENV_SHOWN
        .iter()
        .any(|allowed| match allowed.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *allowed,
        })
}

/// Which props a bag holds and how each is treated.
struct Rules {
    what: &'static str,
    bag: PropBag,
    kept: &'static [&'static str],
    secrets: &'static [&'static str],
    secret_reason: &'static str,
}

const HUB_SERVER: Rules = Rules {
    what: "hub server",
    bag: PropBag::HubServer,
    kept: KEPT,
    secrets: SECRETS,
    secret_reason: "sluice keeps no secret of the hub server as a prop (the repository's password \
         is part of `sluice serve --repository`; TLS is ended by a proxy in front of sluice)",
};

const REPOSITORY: Rules = Rules {
    what: "repository",
    bag: PropBag::Repository,
    kept: REPOSITORY_KEPT,
    secrets: REPOSITORY_SECRETS,
    secret_reason: "sluice has no agents nor registration with Fivetran, and keeps no secret as a \
         repository prop",
};

impl HubService {
    /// Records what `sluice serve`'s configuration says of the hub server.
    pub fn set_server_facts(&self, update: impl FnOnce(&mut ServerFacts)) {
        update(&mut self.inner.server.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// What `sluice serve`'s configuration says of the hub server.
    pub fn server_facts(&self) -> ServerFacts {
        self.inner
            .server
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The hub server's derived props: discovered ones and those of `sluice serve`'s configuration.
    fn hub_server_derived(&self) -> Props {
        let facts = self.server_facts();
        let mut p = Props::new();
        p.insert(
            "Hub_Server_HVR_Version".into(),
            json!(concat!("sluice ", env!("CARGO_PKG_VERSION"))),
        );
        p.insert(
            "Hub_Server_Operating_System".into(),
            json!(std::env::consts::OS),
        );
        p.insert(
            "Hub_Server_Platform".into(),
            json!(format!(
                "{}-{}",
                std::env::consts::OS,
                std::env::consts::ARCH
            )),
        );
        p.insert(
            "Hub_Server_Password_Manager_Configured".into(),
            // HVR's document types prop values as integer, string or object: 0 is "no".
            json!(0),
        );
        if let Some(port) = facts.http_port {
            p.insert("HTTP_Port".into(), json!(port));
        }
        if let Some(r) = facts.repository {
            p.insert("Repository_Class".into(), json!(r.class));
            if let Some(h) = r.host {
                p.insert("Database_Host".into(), json!(h));
            }
            if let Some(port) = r.port {
                p.insert("Database_Port".into(), json!(port));
            }
            if r.class == "postgresql" {
                p.insert("Database_Name".into(), json!(r.database));
            } else {
                // The file's name only: where the server keeps its files is not for every user.
                let name = std::path::Path::new(&r.database)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                p.insert("Database_Name".into(), json!(name));
            }
            if let Some(u) = r.user {
                p.insert("Database_User".into(), json!(u));
            }
        }
        p
    }

    /// The repository's derived props: `Wallet` (the wallet's configuration).
    async fn repository_derived(&self) -> Result<Props> {
        let mut p = Props::new();
        p.insert("Wallet".into(), self.wallet_config().await?);
        Ok(p)
    }

    async fn derived(&self, rules: &Rules) -> Result<Props> {
        match rules.bag {
            PropBag::Repository => self.repository_derived().await,
            _ => Ok(self.hub_server_derived()),
        }
    }

    /// The hub server's props (`fetch`: only those named).
    pub async fn hub_server_props(&self, fetch: &[String]) -> Result<Props> {
        self.bag_props(&HUB_SERVER, fetch).await
    }

    /// The repository's props (`fetch`: only those named).
    pub async fn repository_props(&self, fetch: &[String]) -> Result<Props> {
        self.bag_props(&REPOSITORY, fetch).await
    }

    async fn bag_props(&self, rules: &Rules, fetch: &[String]) -> Result<Props> {
        let mut all = self
            .props_store()
            .props(&rules.bag)
            .await?
            .unwrap_or_default();
        all.extend(self.derived(rules).await?);
        if !fetch.is_empty() {
            all.retain(|k, _| fetch.contains(k));
        }
        Ok(all)
    }

    /// Changes the hub server's props: `replace` makes the kept props exactly those given,
    /// otherwise each given is set (`None` deletes it). Answers the props afterwards.
    pub async fn change_hub_server_props(
        &self,
        changes: &BTreeMap<String, Option<Json>>,
        replace: bool,
    ) -> Result<Props> {
        self.change_bag(&HUB_SERVER, changes, replace, false).await
    }

    /// What the hub server's props would be after a change (nothing is stored), with the
    /// repository connection tested: the props sluice discovers and acts on.
    pub async fn test_hub_server_props(
        &self,
        changes: &BTreeMap<String, Option<Json>>,
    ) -> Result<Props> {
        self.change_bag(&HUB_SERVER, changes, false, true).await?;
        self.test_hub_server().await?;
        let mut discovered = self.hub_server_derived();
        discovered.retain(|k, _| DISCOVERED.contains(&k.as_str()));
        Ok(discovered)
    }

    /// Changes the repository's props, as [`HubService::change_hub_server_props`].
    pub async fn change_repository_props(
        &self,
        changes: &BTreeMap<String, Option<Json>>,
        replace: bool,
    ) -> Result<Props> {
        self.change_bag(&REPOSITORY, changes, replace, false).await
    }

    async fn change_bag(
        &self,
        rules: &Rules,
        changes: &BTreeMap<String, Option<Json>>,
        replace: bool,
        dry_run: bool,
    ) -> Result<Props> {
        let derived = self.derived(rules).await?;
        let mut kept = BTreeMap::new();
        for (name, value) in changes {
            let n = name.as_str();
            if rules.secrets.contains(&n) {
                return Err(ServiceError::invalid(format!(
                    "{} prop {name} is not accepted: {}",
                    rules.what, rules.secret_reason
                )));
            }
            if let Some(current) = derived.get(n) {
                if value.as_ref() == Some(current) || (value.is_none() && replace) {
                    continue;
                }
                return Err(ServiceError::invalid(format!(
                    "{} prop {name} is {}; it cannot be changed over the API",
                    rules.what,
                    if DISCOVERED.contains(&n) || n == "Wallet" {
                        format!("discovered by sluice (it is {current})")
                    } else {
                        format!(
                            "chosen when `sluice serve` starts (it is {current}; see --listen and --repository)"
                        )
                    }
                )));
            }
            if DISCOVERED.contains(&n) || CONFIGURED.contains(&n) || n == "Wallet" {
                return Err(ServiceError::invalid(format!(
                    "{} prop {name} is {} and cannot be set over the API",
                    rules.what,
                    if CONFIGURED.contains(&n) {
                        "chosen when `sluice serve` starts"
                    } else {
                        "discovered by sluice"
                    }
                )));
            }
            if !rules.kept.contains(&n) {
                return Err(ServiceError::invalid(format!(
                    "unknown {} prop {name:?}",
                    rules.what
                )));
            }
            if let Some(v) = value {
                if !matches!(
                    v,
                    Json::String(_) | Json::Number(_) | Json::Bool(_) | Json::Object(_)
                ) {
                    return Err(ServiceError::invalid(format!(
                        "{} prop {name} must be a number, text, a boolean or an object",
                        rules.what
                    )));
                }
                if v.to_string().len() > MAX_VALUE_BYTES {
                    return Err(ServiceError::invalid(format!(
                        "{} prop {name} is longer than {MAX_VALUE_BYTES} bytes",
                        rules.what
                    )));
                }
            }
            kept.insert(name.clone(), value.clone());
        }
        if dry_run {
            return Ok(Props::new());
        }
        let how = if replace {
            PropWrite::Replace
        } else {
            PropWrite::Merge
        };
        let mut stored = self
            .props_store()
            .write_props(&rules.bag, &kept, how)
            .await?;
        stored.extend(derived);
        Ok(stored)
    }

    /// Tests the hub server: its repository answers.
    pub async fn test_hub_server(&self) -> Result<()> {
        self.definition_store().hubs().await.map_err(|e| {
            tracing::warn!(error = %e, "hub server test: the repository is unavailable");
            ServiceError::new(
                crate::ServiceErrorKind::Failed,
                "the hub server cannot use its repository (the reason is in the server's log)",
            )
        })?;
        self.props_store().props(&PropBag::HubServer).await?;
        Ok(())
    }

    /// Environment variables of the hub server, among those it may show ([`env_var_shown`]);
    /// a variable not set answers `""`. Any other name is refused.
    pub fn hub_server_env(&self, names: &[String]) -> Result<BTreeMap<String, String>> {
        if names.is_empty() {
            return Err(ServiceError::invalid("vars: name at least one variable"));
        }
        let mut out = BTreeMap::new();
        for name in names {
            if !env_var_shown(name) {
                return Err(ServiceError::invalid(format!(
                    "vars: the hub server does not show variable {name:?} (it shows {} and non-secret SLUICE_* variables)",
                    ENV_SHOWN[..ENV_SHOWN.len() - 1].join(", ")
                )));
            }
            out.insert(name.clone(), std::env::var(name).unwrap_or_default());
        }
        Ok(out)
    }

    /// The repository: what it is (never its password) and its schema version.
    pub fn repository_facts(&self) -> Option<RepositoryFacts> {
        self.server_facts().repository
    }
}

/// Now, as HVR writes times (`2024-05-01T10:11:12.123456Z`).
pub(crate) fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The repository schema version this build reads and writes.
pub fn repository_version() -> u32 {
    sluice_repo::schema_version()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_specs_describe_without_passwords() {
        let f =
            RepositoryFacts::from_spec("postgres://u:secret@db.example:5433/hub?sslmode=require")
                .unwrap();
        assert_eq!(f.class, "postgresql");
        assert_eq!(f.host.as_deref(), Some("db.example"));
        assert_eq!(f.port, Some(5433));
        assert_eq!(f.database, "hub");
        assert_eq!(f.user.as_deref(), Some("u"));
        assert!(!format!("{f:?}").contains("secret"));
        let f = RepositoryFacts::from_spec("sqlite:/var/lib/sluice/hub.db").unwrap();
        assert_eq!(f.class, "sqlite");
        assert_eq!(f.database, "/var/lib/sluice/hub.db");
    }

    #[test]
    fn only_safe_variables_show() {
        for shown in ["PATH", "HOME", "TZ", "ORACLE_HOME", "SLUICE_DATA_DIR"] {
            assert!(env_var_shown(shown), "{shown}");
        }
        for hidden in [
            "SLUICE_SECRET_KEY",
            "SLUICE_ADMIN_PASSWORD",
            "SLUICE_METRICS_TOKEN",
            "SLUICE_REPOSITORY",
            "AWS_SECRET_ACCESS_KEY",
            "DB_PASSWORD",
            "RANDOM",
            "path",
        ] {
            assert!(!env_var_shown(hidden), "{hidden}");
        }
    }
}
