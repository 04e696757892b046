//! Backups of the hub repository: an archive of the hubs' definitions and settings (and, when
//! asked, the hub server's settings and its users), and restoring one.
//!
//! An archive is one gzip'd tar file, `sluice-backup-<YYYYmmddTHHMMSSZ>.tar.gz`, holding
//! `manifest.json` (format, creation time, sluice version, source backend, hubs, and the SHA-256
//! and size of every other member) and one JSON file per part:
//! * `hubs/<hub>/definitions.json`: the hub's definitions in the document form
//!   ([`definition::to_document`]) with secrets as stored: sealed secrets stay sealed, `${VAR}`
//!   references stay references; never a plaintext secret;
//! * `hubs/<hub>/settings.json`: hub props and state, access list (hub users), hub and location
//!   actions, alerts, job system attributes and environment, `/v1` connector settings;
//! * `server.json` (optional): the hub server's and the repository's props, the wallet's
//!   settings and its wrapped keys, so sealed secrets open after a restore with the same master key;
//! * `identity.json` (optional): users with their password hashes and props, API keys with the
//!   hashes of their secrets, as stored.
//!
//! Restoring reads the whole archive first and checks the manifest and every checksum: a corrupted
//! or truncated archive is refused and nothing changes. Then each hub's definitions are planned
//! with the plan use case ([`crate::plan`]) and applied with `prune` (the hub becomes exactly what
//! the archive holds; a missing hub is created), then its settings, then the identity.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sluice_model::definition::{HubState, is_secret_prop, is_single_env_ref};
use sluice_model::{AccessLevel, ChannelName, HubName, JobName};
use sluice_repo::{ApiKeyRecord, ConnectorRecord, PropBag, PropBagKind, PropWrite, UserRecord};

use crate::definition;
use crate::plan::{Applied, Plan, PlanRequest};
use crate::{HubService, Result, ServiceError, ServiceErrorKind, secrets};

/// The format name in every manifest.
pub const FORMAT: &str = "sluice-backup";
/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;
/// The largest archive (compressed) and the most its members may hold together (uncompressed).
pub const MAX_ARCHIVE_BYTES: usize = 256 * 1024 * 1024;
/// The prefix of archive file names; rolling backups delete only files named like this.
pub const FILE_PREFIX: &str = "sluice-backup-";
/// The suffix of archive file names.
pub const FILE_SUFFIX: &str = ".tar.gz";

const MANIFEST: &str = "manifest.json";
const SERVER: &str = "server.json";
const IDENTITY: &str = "identity.json";

/// Props by name.
pub type Props = BTreeMap<String, Json>;

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// These hubs (empty: every hub).
    pub hubs: Vec<HubName>,
    /// Also the users and API keys (their hashes as stored).
    pub with_users: bool,
    /// Also the hub server's settings and the wallet's wrapped keys.
    pub with_server: bool,
}

/// The size and SHA-256 of an archive member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDigest {
    /// Hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version.
    pub format_version: u32,
    /// When the backup was made.
    pub created: DateTime<Utc>,
    /// The sluice that made it.
    pub sluice_version: String,
    /// The repository backend it was made from (`sqlite`, `postgresql`).
    pub backend: String,
    /// The hubs it holds.
    pub hubs: Vec<HubName>,
    /// Whether it holds `server.json`.
    pub with_server: bool,
    /// Whether it holds `identity.json`.
    pub with_users: bool,
    /// Every other member by path.
    pub members: BTreeMap<String, MemberDigest>,
}

/// A stored property bag of a hub: its kind (as the repository names it), its owner (the user,
/// alert, location or job; empty for the hub's own) and its props.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBag {
    /// `hub_user`, `alert`, `hub_actions`, `loc_actions`, `job_system_attr`, `job_system_env`,
    /// `job_attr` or `job_env`.
    pub kind: String,
    /// Whose bag it is (empty for the hub's own).
    #[serde(default)]
    pub owner: String,
    /// The props.
    pub props: Props,
}

/// The `/v1` settings of a connector (a channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorSettings {
    /// The channel.
    pub channel: ChannelName,
    /// Its `created_at`.
    pub created: DateTime<Utc>,
    /// Paused.
    pub paused: bool,
    /// `auto` or `manual`.
    pub schedule_type: String,
    /// Minutes between syncs.
    pub sync_frequency: u32,
    /// `HH:MM`.
    pub daily_sync_time: String,
    /// `ALLOW_ALL`, `ALLOW_COLUMNS` or `BLOCK_ALL`.
    pub schema_change_handling: String,
    /// Tables and columns enabled or disabled.
    pub schema_overlay: Json,
    /// `connected`, `broken` or `incomplete`.
    pub setup_state: String,
    /// The last setup tests.
    pub setup_tests: Json,
}

/// `hubs/<hub>/settings.json`: what a hub has besides its definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubSettings {
    /// `LIVE` or `FROZEN`.
    pub state: HubState,
    /// Hub props (the description is in the definitions).
    pub props: Props,
    /// Access list, actions, alerts, job system attributes and environment.
    pub bags: Vec<StoredBag>,
    /// `/v1` connector settings.
    pub connectors: Vec<ConnectorSettings>,
}

/// `server.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// The hub server's props.
    pub hub_server: Props,
    /// The repository's props.
    pub repository: Props,
    /// The wallet's settings (its current key sequence).
    pub wallet: Props,
    /// The wallet keys by sequence, wrapped by the master key (never the master key).
    pub wallet_keys: BTreeMap<u32, Props>,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// Level.
    pub level: AccessLevel,
    /// Argon2id PHC string, as stored.
    pub password_hash: String,
    /// When created.
    pub created: DateTime<Utc>,
    /// By whom.
    pub creator: String,
    /// The user's props.
    pub props: Props,
}

/// An API key as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyEntry {
    /// The public key.
    pub key: String,
    /// Hex SHA-256 of the secret, as stored.
    pub secret_hash: String,
    /// Level.
    pub level: AccessLevel,
    /// When created.
    pub created: DateTime<Utc>,
    /// By whom.
    pub creator: String,
    /// What it is for.
    pub description: String,
}

/// `identity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Users by name.
    pub users: Vec<UserEntry>,
    /// API keys, oldest first.
    pub api_keys: Vec<ApiKeyEntry>,
}

/// One hub of an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct HubBackup {
    /// The definitions document.
    pub definitions: Json,
    /// The settings.
    pub settings: HubSettings,
}

/// A written archive.
#[derive(Debug, Clone)]
pub struct Backup {
    /// `sluice-backup-<YYYYmmddTHHMMSSZ>.tar.gz`.
    pub file_name: String,
    /// The archive.
    pub bytes: Vec<u8>,
    /// Its manifest.
    pub manifest: Manifest,
}

/// An archive read and verified: every checksum matched, every part parsed.
#[derive(Debug, Clone)]
pub struct BackupContents {
    /// The manifest.
    pub manifest: Manifest,
    /// The hubs, by name.
    pub hubs: BTreeMap<HubName, HubBackup>,
    /// The server settings, when the archive has them.
    pub server: Option<ServerSettings>,
    /// The users and API keys, when the archive has them.
    pub identity: Option<Identity>,
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// Only these hubs of the archive (empty: all).
    pub hubs: Vec<HubName>,
    /// Also restore the users and API keys (the archive must have them).
    pub with_users: bool,
    /// Also restore the server settings and wallet keys, when the archive has them.
    pub with_server: bool,
    /// The definitions version each hub must still be at (`None`: the hub must not exist), as
    /// the plan shown found it; a hub that moved since makes the restore refuse, changing nothing.
    pub expected: Option<BTreeMap<HubName, Option<i64>>>,
}

/// What a restore would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Per hub: what its definitions become.
    pub hubs: Vec<Plan>,
    /// The settings that change, one line each.
    pub settings: Vec<String>,
    /// What the identity restore does (empty: not restored).
    pub identity: Vec<String>,
    /// What the server settings restore does (empty: not restored).
    pub server: Vec<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    /// Per hub: the apply of its definitions.
    pub hubs: Vec<Applied>,
    /// Settings, identity and server changes, one line each.
    pub notes: Vec<String>,
}

/// The archive's file name for a backup made at `at`.
pub fn file_name(at: DateTime<Utc>) -> String {
    format!("{FILE_PREFIX}{}{FILE_SUFFIX}", at.format("%Y%m%dT%H%M%SZ"))
}

/// Whether `name` is the name of an archive [`file_name`] makes.
pub fn is_backup_file_name(name: &str) -> bool {
    name.strip_prefix(FILE_PREFIX)
        .and_then(|rest| rest.strip_suffix(FILE_SUFFIX))
        .is_some_and(|stamp| chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").is_ok())
}

fn corrupt(why: impl std::fmt::Display) -> ServiceError {
    ServiceError::invalid(format!(
        "the backup archive is corrupted or truncated: {why}; nothing was restored"
    ))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| {
        ServiceError::new(ServiceErrorKind::Failed, "cannot write a backup part").with_source(e)
    })
}

/// The hub bag kinds a backup holds, and how to name a bag of one from its owner.
const HUB_BAG_KINDS: [PropBagKind; 8] = [
    PropBagKind::HubUser,
    PropBagKind::Alert,
    PropBagKind::HubActions,
    PropBagKind::LocActions,
    PropBagKind::JobSystemAttributes,
    PropBagKind::JobSystemEnv,
    PropBagKind::JobAttributes,
    PropBagKind::JobEnv,
];

/// The bag of `hub` a [`StoredBag`] names, or why it names none.
fn hub_bag(hub: &HubName, stored: &StoredBag) -> Result<PropBag> {
    let owner = stored.owner.clone();
    let job = || {
        owner.parse::<JobName>().map_err(|e| {
            corrupt(format!(
                "hub {hub}: {} bag of job {owner:?}: {e}",
                stored.kind
            ))
        })
    };
    let h = hub.clone();
    let bag = match stored.kind.as_str() {
        "hub_user" => PropBag::HubUser(h, owner.clone()),
        "alert" => PropBag::Alert(h, owner.clone()),
        "hub_actions" => PropBag::HubActions(h),
        "loc_actions" => PropBag::LocActions(h, owner.clone()),
        "job_system_attr" => PropBag::JobSystemAttributes(h),
        "job_system_env" => PropBag::JobSystemEnv(h),
        "job_attr" => PropBag::JobAttributes(h, job()?),
        "job_env" => PropBag::JobEnv(h, job()?),
        other => {
            return Err(corrupt(format!(
                "hub {hub}: unknown settings bag {other:?}"
            )));
        }
    };
    let owned = matches!(
        bag,
        PropBag::HubUser(..) | PropBag::Alert(..) | PropBag::LocActions(..)
    );
    if owned && (owner.is_empty() || owner.len() > 128 || owner.chars().any(char::is_control)) {
        return Err(corrupt(format!(
            "hub {hub}: {} bag with an invalid owner",
            stored.kind
        )));
    }
    Ok(bag)
}

impl HubService {
    /// A hub's settings as a backup holds them.
    pub async fn hub_settings(&self, hub: &HubName) -> Result<HubSettings> {
        let record = self.hub(hub).await?;
        let mut bags = Vec::new();
        for kind in HUB_BAG_KINDS {
            for (bag, props) in self.props_store().bags(kind, Some(hub)).await? {
                if let Some(owner) = bag.hub_owner() {
                    bags.push(StoredBag {
                        kind: kind.as_str().to_owned(),
                        owner,
                        props,
                    });
                }
            }
        }
        let connectors = self
            .settings_store()
            .connector_records(Some(hub))
            .await?
            .into_iter()
            .map(|c| ConnectorSettings {
                channel: c.channel,
                created: c.created,
                paused: c.paused,
                schedule_type: c.schedule_type,
                sync_frequency: c.sync_frequency,
                daily_sync_time: c.daily_sync_time,
                schema_change_handling: c.schema_change_handling,
                schema_overlay: c.schema_overlay,
                setup_state: c.setup_state,
                setup_tests: c.setup_tests,
            })
            .collect();
        let mut props = record.props;
        props.remove("Description");
        Ok(HubSettings {
            state: record.state,
            props,
            bags,
            connectors,
        })
    }

    /// The hub server's settings and the wallet's wrapped keys as a backup holds them.
    pub async fn server_settings(&self) -> Result<ServerSettings> {
        let store = self.props_store();
        let mut wallet_keys = BTreeMap::new();
        for (bag, props) in store.bags(PropBagKind::WalletKey, None).await? {
            if let PropBag::WalletKey(n) = bag {
                wallet_keys.insert(n, props);
            }
        }
        Ok(ServerSettings {
            hub_server: store.props(&PropBag::HubServer).await?.unwrap_or_default(),
            repository: store.props(&PropBag::Repository).await?.unwrap_or_default(),
            wallet: store.props(&PropBag::Wallet).await?.unwrap_or_default(),
            wallet_keys,
        })
    }

    /// The users (password hashes as stored, with their props) and API keys (secret hashes as
    /// stored) as a backup holds them.
    pub async fn identity_backup(&self) -> Result<Identity> {
        let mut users = Vec::new();
        for u in self.identity_store().users().await? {
            let props = self
                .props_store()
                .props(&PropBag::User(u.name.clone()))
                .await?
                .unwrap_or_default();
            users.push(UserEntry {
                name: u.name,
                level: u.level,
                password_hash: u.password_hash,
                created: u.created,
                creator: u.creator,
                props,
            });
        }
        let api_keys = self
            .identity_store()
            .api_keys()
            .await?
            .into_iter()
            .map(|k| ApiKeyEntry {
                key: k.key,
                secret_hash: k.secret_hash,
                level: k.level,
                created: k.created,
                creator: k.creator,
                description: k.description,
            })
            .collect();
        Ok(Identity { users, api_keys })
    }

    /// Writes a backup archive in memory: the hubs `req` names (every hub when it names none)
    /// with their definitions (secrets as stored) and settings, and what else it asks for.
    pub async fn backup(&self, req: &BackupRequest) -> Result<Backup> {
        let all: Vec<HubName> = self
            .definition_store()
            .hubs()
            .await?
            .into_iter()
            .map(|h| h.hub.name)
            .collect();
        let hubs: Vec<HubName> = if req.hubs.is_empty() {
            all
        } else {
            let mut chosen = Vec::new();
            for hub in &req.hubs {
                if !all.contains(hub) {
                    return Err(ServiceError::not_found(format!("hub {hub} does not exist")));
                }
                if !chosen.contains(hub) {
                    chosen.push(hub.clone());
                }
            }
            chosen
        };
        let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
        for hub in &hubs {
            let (defs, _) = self.definitions(hub).await?;
            let document = definition::to_document(&defs);
            if let Some(path) = plaintext_secret(&document) {
                // Stored secrets are sealed or ${VAR}: a plaintext one is never written out.
                return Err(ServiceError::invalid(format!(
                    "hub {hub}: {path} is stored as plaintext (a repository written without a secret key); \
                     give it as ${{VAR}} or store it sealed before backing up; nothing was written"
                )));
            }
            parts.push((format!("hubs/{hub}/definitions.json"), to_json(&document)?));
            let settings = self.hub_settings(hub).await?;
            parts.push((format!("hubs/{hub}/settings.json"), to_json(&settings)?));
        }
        if req.with_server {
            parts.push((SERVER.to_owned(), to_json(&self.server_settings().await?)?));
        }
        if req.with_users {
            parts.push((
                IDENTITY.to_owned(),
                to_json(&self.identity_backup().await?)?,
            ));
        }
        let created = Utc::now();
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            created,
            sluice_version: env!("CARGO_PKG_VERSION").to_owned(),
            backend: self
                .server_facts()
                .repository
                .map_or("unknown", |r| r.class)
                .to_owned(),
            hubs,
            with_server: req.with_server,
            with_users: req.with_users,
            members: parts
                .iter()
                .map(|(path, bytes)| {
                    (
                        path.clone(),
                        MemberDigest {
                            sha256: crate::auth::sha256_hex(bytes),
                            size: bytes.len() as u64,
                        },
                    )
                })
                .collect(),
        };
        let bytes = write_archive(&to_json(&manifest)?, &parts, created).map_err(|e| {
            ServiceError::new(ServiceErrorKind::Failed, "cannot write the backup archive")
                .with_source(e)
        })?;
        Ok(Backup {
            file_name: file_name(created),
            bytes,
            manifest,
        })
    }

    /// What restoring `archive` as `req` asks would change, changing nothing.
    pub async fn plan_restore(
        &self,
        archive: &BackupContents,
        req: &RestoreRequest,
    ) -> Result<RestorePlan> {
        let hubs = chosen_hubs(archive, req)?;
        let mut plans = Vec::new();
        let mut settings = Vec::new();
        for (hub, part) in &hubs {
            plans.push(
                self.plan_definitions(&restore_plan_request(hub, part)?)
                    .await?,
            );
            settings.extend(self.settings_changes(hub, &part.settings).await?);
        }
        let server = match (&archive.server, req.with_server) {
            (Some(s), true) => self.server_changes(s).await?,
            _ => Vec::new(),
        };
        let identity = match identity_of(archive, req)? {
            Some(identity) => self.identity_changes(identity).await?,
            None => Vec::new(),
        };
        Ok(RestorePlan {
            manifest: archive.manifest.clone(),
            hubs: plans,
            settings,
            identity,
            server,
        })
    }

    /// Restores `archive` as `req` asks: the server settings and wallet keys (when asked), then
    /// each hub's definitions (applied with `prune`, creating missing hubs), its settings, and
    /// the users and API keys (when asked). Every hub is planned and checked before anything
    /// changes; a hub at another definitions version than `req.expected` names refuses the
    /// whole restore.
    pub async fn restore(
        &self,
        archive: &BackupContents,
        req: &RestoreRequest,
    ) -> Result<Restored> {
        let hubs = chosen_hubs(archive, req)?;
        let identity = identity_of(archive, req)?;
        let server = archive.server.as_ref().filter(|_| req.with_server);
        // Check everything first: a plan that fails (or moved) changes nothing.
        let mut planned = Vec::new();
        for (hub, part) in &hubs {
            let plan_req = restore_plan_request(hub, part)?;
            let plan = self.plan_definitions(&plan_req).await?;
            if let Some(expected) = &req.expected {
                let want = expected.get(*hub).copied().flatten();
                if !expected.contains_key(*hub) || want != plan.base_version {
                    return Err(ServiceError::new(
                        ServiceErrorKind::Conflict,
                        format!(
                            "hub {hub} changed since the restore was planned; nothing was restored (plan again)"
                        ),
                    ));
                }
            }
            for bag in &part.settings.bags {
                // What the access-list API accepts, and nothing else (an archive may be tampered).
                if let PropBag::HubUser(..) = hub_bag(hub, bag)? {
                    crate::access::check_changes(&some(&bag.props), true).map_err(|e| {
                        ServiceError::invalid(format!(
                            "hub {hub}: {}: {e}; nothing was restored",
                            describe_bag(&bag.kind, &bag.owner)
                        ))
                    })?;
                }
            }
            planned.push((*hub, part, plan_req, plan.base_version));
        }
        if let Some(server) = server {
            self.check_wallet_keys(server).await?;
        }
        for user in identity.map(|i| i.users.as_slice()).unwrap_or_default() {
            crate::access::check_changes(&some(&user.props), false).map_err(|e| {
                ServiceError::invalid(format!("user {}: {e}; nothing was restored", user.name))
            })?;
        }
        let mut notes = Vec::new();
        if let Some(server) = server {
            notes.extend(self.restore_server(server).await?);
        }
        let mut applied = Vec::new();
        for (hub, part, plan_req, version) in planned {
            applied.push(self.apply_definitions_plan(&plan_req, version).await?);
            notes.extend(self.restore_settings(hub, &part.settings, identity).await?);
        }
        if let Some(identity) = identity {
            notes.extend(self.restore_identity(identity).await?);
        }
        Ok(Restored {
            hubs: applied,
            notes,
        })
    }

    async fn settings_changes(&self, hub: &HubName, want: &HubSettings) -> Result<Vec<String>> {
        let have = match self.definition_store().hub(hub).await? {
            Some(_) => Some(self.hub_settings(hub).await?),
            None => None,
        };
        let mut lines = Vec::new();
        let state = have.as_ref().map_or(HubState::Live, |h| h.state);
        if state != want.state {
            lines.push(format!("hub {hub}: state becomes {}", want.state.as_str()));
        }
        let empty = HubSettings {
            state: HubState::Live,
            props: Props::new(),
            bags: Vec::new(),
            connectors: Vec::new(),
        };
        let have = have.unwrap_or(empty);
        if have.props != want.props {
            lines.push(format!("hub {hub}: hub properties replaced"));
        }
        let key = |b: &StoredBag| (b.kind.clone(), b.owner.clone());
        let had: BTreeMap<_, _> = have.bags.iter().map(|b| (key(b), &b.props)).collect();
        let wants: BTreeMap<_, _> = want.bags.iter().map(|b| (key(b), &b.props)).collect();
        for ((kind, owner), props) in &wants {
            let what = describe_bag(kind, owner);
            match had.get(&(kind.clone(), owner.clone())) {
                None => lines.push(format!("hub {hub}: + {what}")),
                Some(p) if p != props => lines.push(format!("hub {hub}: ~ {what}")),
                _ => {}
            }
        }
        for (kind, owner) in had.keys() {
            if !wants.contains_key(&(kind.clone(), owner.clone())) {
                lines.push(format!("hub {hub}: - {}", describe_bag(kind, owner)));
            }
        }
        if have.connectors != want.connectors {
            lines.push(format!("hub {hub}: /v1 connector settings replaced"));
        }
        Ok(lines)
    }

    async fn server_changes(&self, want: &ServerSettings) -> Result<Vec<String>> {
        let have = self.server_settings().await?;
        let mut lines = Vec::new();
        if have.hub_server != want.hub_server {
            lines.push("hub server properties replaced".to_owned());
        }
        if have.repository != want.repository {
            lines.push("repository properties replaced".to_owned());
        }
        for n in want.wallet_keys.keys() {
            if !have.wallet_keys.contains_key(n) {
                lines.push(format!("+ wallet key {n}"));
            }
        }
        if have.wallet != want.wallet {
            lines.push("wallet settings replaced".to_owned());
        }
        Ok(lines)
    }

    async fn identity_changes(&self, want: &Identity) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for u in &want.users {
            match self.identity_store().user(&u.name).await? {
                None => lines.push(format!("+ user {} ({})", u.name, u.level)),
                Some(have) if have.level != u.level || have.password_hash != u.password_hash => {
                    lines.push(format!("~ user {} ({})", u.name, u.level));
                }
                Some(_) => {}
            }
        }
        for k in &want.api_keys {
            if self.identity_store().api_key(&k.key).await?.is_none() {
                lines.push(format!("+ API key {} ({})", k.key, k.level));
            }
        }
        Ok(lines)
    }

    /// Refuses a restore whose wallet keys clash with this repository's: a key sequence stored
    /// here with other material would leave the secrets sealed under it unreadable.
    async fn check_wallet_keys(&self, want: &ServerSettings) -> Result<()> {
        let have = self.server_settings().await?;
        for (n, props) in &want.wallet_keys {
            if let Some(mine) = have.wallet_keys.get(n)
                && mine.get("wrapped") != props.get("wrapped")
            {
                return Err(ServiceError::new(
                    ServiceErrorKind::Conflict,
                    format!(
                        "wallet key {n} of the archive differs from this repository's: restore the server settings only into a repository of the same wallet (or an empty one); nothing was restored"
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn restore_server(&self, want: &ServerSettings) -> Result<Vec<String>> {
        let lines = self.server_changes(want).await?;
        let store = self.props_store();
        let have = self.server_settings().await?;
        for (n, props) in &want.wallet_keys {
            if !have.wallet_keys.contains_key(n) {
                store
                    .write_props(&PropBag::WalletKey(*n), &some(props), PropWrite::Create)
                    .await?;
            }
        }
        let current = |p: &Props| p.get("Encryption_Key_Sequence").and_then(Json::as_u64);
        // Never move the wallet back to an older key than this repository already seals under.
        if current(&want.wallet).unwrap_or(0) >= current(&have.wallet).unwrap_or(0) {
            store
                .write_props(&PropBag::Wallet, &some(&want.wallet), PropWrite::Replace)
                .await?;
        }
        store
            .write_props(
                &PropBag::HubServer,
                &some(&want.hub_server),
                PropWrite::Replace,
            )
            .await?;
        store
            .write_props(
                &PropBag::Repository,
                &some(&want.repository),
                PropWrite::Replace,
            )
            .await?;
        Ok(lines)
    }

    async fn restore_settings(
        &self,
        hub: &HubName,
        want: &HubSettings,
        identity: Option<&Identity>,
    ) -> Result<Vec<String>> {
        let mut notes = self.settings_changes(hub, want).await?;
        let have = self.hub_settings(hub).await?;
        if have.props != want.props {
            let mut changes: BTreeMap<String, Option<Json>> = have
                .props
                .keys()
                .filter(|k| !want.props.contains_key(*k))
                .map(|k| (k.clone(), None))
                .collect();
            changes.extend(want.props.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
            self.definition_store()
                .set_hub_props(hub, &changes, self.user())
                .await?;
        }
        if have.state != want.state {
            self.definition_store()
                .set_hub_frozen(hub, want.state == HubState::Frozen, self.user())
                .await?;
        }
        let mut keep = BTreeSet::new();
        for stored in &want.bags {
            let bag = hub_bag(hub, stored)?;
            if let PropBag::HubUser(_, user) = &bag
                && user != crate::access::EVERY_USER
                && self.identity_store().user(user).await?.is_none()
                && !identity.is_some_and(|i| i.users.iter().any(|u| &u.name == user))
            {
                notes.push(format!(
                    "hub {hub}: the access entry of user {user} is left out: no such user here"
                ));
                continue;
            }
            self.props_store()
                .write_props(&bag, &some(&stored.props), PropWrite::Replace)
                .await?;
            keep.insert(bag);
        }
        for kind in HUB_BAG_KINDS {
            for (bag, _) in self.props_store().bags(kind, Some(hub)).await? {
                if !keep.contains(&bag) {
                    self.props_store().delete_bag(&bag).await?;
                }
            }
        }
        for c in &want.connectors {
            let record = ConnectorRecord {
                hub: hub.clone(),
                channel: c.channel.clone(),
                created: c.created,
                paused: c.paused,
                schedule_type: c.schedule_type.clone(),
                sync_frequency: c.sync_frequency,
                daily_sync_time: c.daily_sync_time.clone(),
                schema_change_handling: c.schema_change_handling.clone(),
                schema_overlay: c.schema_overlay.clone(),
                setup_state: c.setup_state.clone(),
                setup_tests: c.setup_tests.clone(),
            };
            self.settings_store().put_connector(&record).await?;
        }
        Ok(notes)
    }

    async fn restore_identity(&self, want: &Identity) -> Result<Vec<String>> {
        let notes = self.identity_changes(want).await?;
        let store = self.identity_store();
        for u in &want.users {
            match store.user(&u.name).await? {
                None => {
                    store
                        .create_user(&UserRecord {
                            name: u.name.clone(),
                            level: u.level,
                            password_hash: u.password_hash.clone(),
                            created: u.created,
                            creator: u.creator.clone(),
                        })
                        .await?
                }
                Some(have) if have.level != u.level || have.password_hash != u.password_hash => {
                    store
                        .update_user(&u.name, Some(u.level), Some(&u.password_hash))
                        .await?
                }
                Some(_) => {}
            }
            self.props_store()
                .write_props(
                    &PropBag::User(u.name.clone()),
                    &some(&u.props),
                    PropWrite::Replace,
                )
                .await?;
        }
        for k in &want.api_keys {
            if store.api_key(&k.key).await?.is_none() {
                store
                    .create_api_key(&ApiKeyRecord {
                        key: k.key.clone(),
                        secret_hash: k.secret_hash.clone(),
                        level: k.level,
                        created: k.created,
                        creator: k.creator.clone(),
                        description: k.description.clone(),
                    })
                    .await?;
            }
        }
        Ok(notes)
    }
}

fn some(props: &Props) -> BTreeMap<String, Option<Json>> {
    props
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

fn describe_bag(kind: &str, owner: &str) -> String {
    match kind {
        "hub_user" if owner == crate::access::EVERY_USER => "access entry of every user".into(),
        "hub_user" => format!("access entry of user {owner}"),
        "alert" => format!("alert {owner}"),
        "hub_actions" => "hub actions".into(),
        "loc_actions" => format!("actions of location {owner}"),
        "job_system_attr" => "job system attributes".into(),
        "job_system_env" => "job system environment".into(),
        "job_attr" => format!("attributes of job {owner}"),
        "job_env" => format!("environment of job {owner}"),
        other => format!("{other} {owner}"),
    }
}

/// The hubs of the archive a restore works on.
fn chosen_hubs<'a>(
    archive: &'a BackupContents,
    req: &RestoreRequest,
) -> Result<Vec<(&'a HubName, &'a HubBackup)>> {
    if req.hubs.is_empty() {
        return Ok(archive.hubs.iter().collect());
    }
    req.hubs
        .iter()
        .map(|hub| {
            archive
                .hubs
                .get_key_value(hub)
                .ok_or_else(|| ServiceError::not_found(format!("the archive has no hub {hub}")))
        })
        .collect()
}

fn identity_of<'a>(
    archive: &'a BackupContents,
    req: &RestoreRequest,
) -> Result<Option<&'a Identity>> {
    match (&archive.identity, req.with_users) {
        (_, false) => Ok(None),
        (Some(identity), true) => Ok(Some(identity)),
        (None, true) => Err(ServiceError::invalid(
            "the archive holds no users (it was made without --with-users); nothing was restored",
        )),
    }
}

/// The plan of a hub's restore: its document applied with `prune`, compiled as a document that
/// arrived over the API (the hub server's location policy applies), after checking that it
/// holds secrets only sealed or as `${VAR}` (an archive never holds a plaintext secret).
fn restore_plan_request(hub: &HubName, part: &HubBackup) -> Result<PlanRequest> {
    if let Some(path) = plaintext_secret(&part.definitions) {
        return Err(ServiceError::invalid(format!(
            "hub {hub}: {path} holds a plaintext secret: an archive holds secrets only sealed or as ${{VAR}}; nothing was restored"
        )));
    }
    if definition::hub_of(&part.definitions).as_ref() != Some(hub) {
        return Err(corrupt(format!(
            "hubs/{hub}/definitions.json names another hub"
        )));
    }
    Ok(PlanRequest {
        document: part.definitions.clone(),
        prune: true,
        hub: Some(hub.clone()),
        source: "restore".to_owned(),
        base_dir: None,
    })
}

/// The path of the first location secret of `doc` that is neither sealed nor one `${VAR}`.
fn plaintext_secret(doc: &Json) -> Option<String> {
    let locations = doc.get("locations")?.as_object()?;
    for (loc, body) in locations {
        let Some(props) = body.get("props").and_then(Json::as_object) else {
            continue;
        };
        for (name, value) in props {
            let text = match value {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            if is_secret_prop(name) && !secrets::is_sealed(&text) && !is_single_env_ref(&text) {
                return Some(format!("locations.{loc}.props.{name}"));
            }
        }
    }
    None
}

/// Writes the tar.gz: `manifest.json` first, then the parts, each file mode 0600.
fn write_archive(
    manifest: &[u8],
    parts: &[(String, Vec<u8>)],
    at: DateTime<Utc>,
) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = u64::try_from(at.timestamp()).unwrap_or(0);
    for (path, bytes) in std::iter::once((MANIFEST, manifest))
        .chain(parts.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
    {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, bytes)?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// Reads an archive and verifies it: the manifest's format, that it lists exactly the members
/// present, every size and SHA-256, and that every part parses. Any mismatch refuses the whole
/// archive.
pub fn read_backup(bytes: &[u8]) -> Result<BackupContents> {
    if bytes.len() > MAX_ARCHIVE_BYTES {
        return Err(ServiceError::invalid(format!(
            "the backup archive is larger than {} MiB",
            MAX_ARCHIVE_BYTES / 1024 / 1024
        )));
    }
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz.take(MAX_ARCHIVE_BYTES as u64 + 1));
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive.entries().map_err(corrupt)?;
    let mut total = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(corrupt("it holds something other than regular files"));
        }
        let path = entry
            .path()
            .map_err(corrupt)?
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| corrupt("a member's name is not UTF-8"))?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(corrupt)?;
        total += data.len();
        if total > MAX_ARCHIVE_BYTES {
            return Err(corrupt("its members are too large"));
        }
        if members.insert(path.clone(), data).is_some() {
            return Err(corrupt(format!("{path} appears twice")));
        }
    }
    // Reading to the end checks the gzip trailer (CRC and length): a truncated file fails here.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(corrupt)?;
    let manifest_bytes = members
        .remove(MANIFEST)
        .ok_or_else(|| corrupt("it has no manifest.json"))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| corrupt(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(ServiceError::invalid(format!(
            "not a sluice backup (format {:?})",
            manifest.format
        )));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(ServiceError::invalid(format!(
            "the backup's format version {} is newer than this sluice reads ({FORMAT_VERSION}): restore it with a newer sluice",
            manifest.format_version
        )));
    }
    for (path, digest) in &manifest.members {
        let data = members
            .get(path)
            .ok_or_else(|| corrupt(format!("{path} is missing")))?;
        if data.len() as u64 != digest.size || crate::auth::sha256_hex(data) != digest.sha256 {
            return Err(corrupt(format!("{path} does not match its checksum")));
        }
    }
    if let Some(extra) = members.keys().find(|p| !manifest.members.contains_key(*p)) {
        return Err(corrupt(format!("{extra} is not in the manifest")));
    }
    let parse = |path: &str| -> Result<Json> {
        serde_json::from_slice(&members[path]).map_err(|e| corrupt(format!("{path}: {e}")))
    };
    let mut hubs = BTreeMap::new();
    for hub in &manifest.hubs {
        let defs = format!("hubs/{hub}/definitions.json");
        let sets = format!("hubs/{hub}/settings.json");
        if !members.contains_key(&defs) || !members.contains_key(&sets) {
            return Err(corrupt(format!("hub {hub} has no definitions or settings")));
        }
        let settings: HubSettings =
            serde_json::from_value(parse(&sets)?).map_err(|e| corrupt(format!("{sets}: {e}")))?;
        hubs.insert(
            hub.clone(),
            HubBackup {
                definitions: parse(&defs)?,
                settings,
            },
        );
    }
    let expected: usize = 2 * manifest.hubs.len()
        + usize::from(manifest.with_server)
        + usize::from(manifest.with_users);
    if members.len() != expected || hubs.len() != manifest.hubs.len() {
        return Err(corrupt(
            "its members do not match the hubs and parts the manifest names",
        ));
    }
    let server = match manifest.with_server {
        true => Some(
            serde_json::from_value(parse(SERVER)?)
                .map_err(|e| corrupt(format!("{SERVER}: {e}")))?,
        ),
        false => None,
    };
    let identity = match manifest.with_users {
        true => Some(
            serde_json::from_value(parse(IDENTITY)?)
                .map_err(|e| corrupt(format!("{IDENTITY}: {e}")))?,
        ),
        false => None,
    };
    Ok(BackupContents {
        manifest,
        hubs,
        server,
        identity,
    })
}

/// Writes `bytes` to `dir/name` atomically: a temp file of mode 0600 in `dir`, fsynced, renamed
/// into place, and the directory fsynced. Creates `dir` (mode 0700) when missing.
pub fn write_file_atomically(
    dir: &std::path::Path,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<std::path::PathBuf> {
    use std::fs;
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir)?;
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, &target)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.map(|()| target)
}

/// Deletes the oldest archives in `dir` beyond the newest `keep` (only files named as
/// [`file_name`] names them); returns the deleted paths.
pub fn prune_backups(
    dir: &std::path::Path,
    keep: usize,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_backup_file_name(n))
        .collect();
    // The time stamp sorts as text.
    names.sort();
    let excess = names.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for name in names.into_iter().take(excess) {
        let path = dir.join(name);
        std::fs::remove_file(&path)?;
        deleted.push(path);
    }
    Ok(deleted)
}

/// When the rolling backups of `dir` are next due: the newest archive's time plus `every`
/// (now when there is none, or it is overdue).
pub fn next_backup_due(
    dir: &std::path::Path,
    every: std::time::Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_backup_file_name(n))
        .max();
    let Some(name) = newest else {
        return now;
    };
    let stamp = &name[FILE_PREFIX.len()..name.len() - FILE_SUFFIX.len()];
    match (
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ"),
        chrono::Duration::from_std(every),
    ) {
        (Ok(at), Ok(every)) => (at.and_utc() + every).clamp(now, now + every),
        _ => now,
    }
}

/// Rolling backups: what `sluice serve --backup-every` runs.
#[derive(Debug, Clone)]
pub struct RollingBackups {
    /// How often.
    pub every: std::time::Duration,
    /// How many archives to keep (the oldest beyond are deleted).
    pub keep: usize,
    /// Where.
    pub dir: std::path::PathBuf,
}

impl HubService {
    /// Writes a whole backup (every hub, the server settings, the users) into `dir` and deletes
    /// the oldest archives beyond `keep`; answers the archive's path.
    pub async fn write_rolling_backup(
        &self,
        rolling: &RollingBackups,
    ) -> Result<std::path::PathBuf> {
        let made = self
            .backup(&BackupRequest {
                hubs: Vec::new(),
                with_users: true,
                with_server: true,
            })
            .await?;
        let RollingBackups { keep, dir, .. } = rolling.clone();
        let failed = |e: std::io::Error| {
            ServiceError::new(
                ServiceErrorKind::Failed,
                format!("cannot write the backup into {}", dir.display()),
            )
            .with_source(e)
        };
        let dir2 = dir.clone();
        tokio::task::spawn_blocking(move || {
            let path = write_file_atomically(&dir2, &made.file_name, &made.bytes)?;
            prune_backups(&dir2, keep.max(1))?;
            Ok(path)
        })
        .await
        .map_err(|e| {
            ServiceError::new(ServiceErrorKind::Failed, "the backup task failed").with_source(e)
        })?
        .map_err(failed)
    }

    /// Writes a rolling backup whenever one is due (see [`next_backup_due`]) until `shutdown`
    /// fires. A failed backup is logged and tried again at the next interval.
    pub async fn run_rolling_backups(
        self,
        rolling: RollingBackups,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let due = next_backup_due(&rolling.dir, rolling.every, Utc::now());
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.write_rolling_backup(&rolling).await {
                Ok(path) => tracing::info!(path = %path.display(), "wrote a backup"),
                Err(error) => {
                    tracing::error!(error = %error, dir = %rolling.dir.display(), "backup failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(rolling.every) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_time_and_are_recognised() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T07:08:09Z")
            .expect("a valid time")
            .with_timezone(&Utc);
        assert_eq!(file_name(at), "sluice-backup-20261206T070809Z.tar.gz");
        assert!(is_backup_file_name(&file_name(at)));
        for other in [
            "sluice-backup-20261206T070809Z.tar",
            "sluice-backup-latest.tar.gz",
            "hub.db",
            "sluice-backup-20261206T070809Z.tar.gz.tmp",
        ] {
            assert!(!is_backup_file_name(other), "{other}");
        }
    }

    #[test]
    fn plaintext_secrets_are_found_and_sealed_or_referenced_ones_are_not() {
        let doc = serde_json::json!({"locations": {
            "a": {"props": {"Database_Password": "enc:v1:AAAA", "Database_Host": "h"}},
            "b": {"props": {"Database_Password": "${PW}"}},
        }});
        assert_eq!(plaintext_secret(&doc), None);
        let doc = serde_json::json!({"locations": {
            "c": {"props": {"Database_Password": "hunter2"}},
        }});
        assert_eq!(
            plaintext_secret(&doc).as_deref(),
            Some("locations.c.props.Database_Password")
        );
    }

    #[test]
    fn an_archive_round_trips_and_any_flipped_byte_is_refused() {
        let part = b"{\"x\": 1}".to_vec();
        let identity = b"{\"users\": [], \"api_keys\": []}".to_vec();
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            created: Utc::now(),
            sluice_version: "0".into(),
            backend: "sqlite".into(),
            hubs: vec![],
            with_server: false,
            with_users: true,
            members: BTreeMap::from([(
                IDENTITY.to_owned(),
                MemberDigest {
                    sha256: crate::auth::sha256_hex(&identity),
                    size: identity.len() as u64,
                },
            )]),
        };
        let bytes = write_archive(
            &serde_json::to_vec(&manifest).expect("serializes"),
            &[(IDENTITY.to_owned(), identity.clone())],
            Utc::now(),
        )
        .expect("written");
        let read = read_backup(&bytes).expect("a good archive reads");
        assert_eq!(read.identity.map(|i| i.users.len()), Some(0));
        // Truncated anywhere: refused.
        for cut in [10, bytes.len() / 2, bytes.len() - 1] {
            let error = read_backup(&bytes[..cut]).expect_err("a truncated archive is refused");
            assert_eq!(error.kind(), ServiceErrorKind::Invalid, "{error}");
        }
        // A member that does not match its checksum: refused.
        let bad = write_archive(
            &serde_json::to_vec(&manifest).expect("serializes"),
            &[(
                IDENTITY.to_owned(),
                b"{\"users\": [], \"api_keys\": [ ]}".to_vec(),
            )],
            Utc::now(),
        )
        .expect("written");
        let error = read_backup(&bad).expect_err("a checksum mismatch is refused");
        assert!(error.to_string().contains("checksum"), "{error}");
        // An extra member: refused.
        let extra = write_archive(
            &serde_json::to_vec(&manifest).expect("serializes"),
            &[
                (
                    IDENTITY.to_owned(),
                    b"{\"users\": [], \"api_keys\": []}".to_vec(),
                ),
                ("other.json".to_owned(), part),
            ],
            Utc::now(),
        )
        .expect("written");
        assert!(read_backup(&extra).is_err());
    }

    #[test]
    fn the_next_backup_is_due_an_interval_after_the_newest() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .expect("a valid time")
            .with_timezone(&Utc);
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(next_backup_due(dir.path(), day, now), now, "none yet: now");
        write_file_atomically(dir.path(), "sluice-backup-20261206T060000Z.tar.gz", b"x")
            .expect("written");
        assert_eq!(
            next_backup_due(dir.path(), day, now).to_rfc3339(),
            "2026-12-07T06:00:00+00:00"
        );
        write_file_atomically(dir.path(), "sluice-backup-20261101T060000Z.tar.gz", b"x")
            .expect("written");
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(next_backup_due(dir.path(), hour, now), now, "overdue: now");
    }

    #[test]
    fn pruning_keeps_the_newest_and_only_touches_backups() {
        let dir = tempfile::tempdir().expect("a temp dir");
        for h in 0..5 {
            let name = format!("sluice-backup-20260101T0{h}0000Z.tar.gz");
            write_file_atomically(dir.path(), &name, b"x").expect("written");
        }
        std::fs::write(dir.path().join("notes.txt"), b"keep me").expect("written");
        let deleted = prune_backups(dir.path(), 2).expect("pruned");
        assert_eq!(deleted.len(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("listed")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "sluice-backup-20260101T030000Z.tar.gz",
                "sluice-backup-20260101T040000Z.tar.gz"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("sluice-backup-20260101T040000Z.tar.gz"))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
