//! Property bags: the stored props of objects that are nothing but props (an alert, a user's or a
//! user-on-a-hub's props, the hub server's props, the job system's and a job's attributes and
//! environment, the wallet's settings). See [`PropStore`](crate::PropStore).

use sluice_model::{HubName, JobName};

/// Which bag: its kind, and the object it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PropBag {
    /// The hub server's props (`/hubserver/props`).
    HubServer,
    /// The repository's props (`/repos/props`).
    Repository,
    /// The wallet's settings (`/wallet/props`).
    Wallet,
    /// A wallet key, by sequence: its wrapped key and when it was made (`/wallet/key_rotate`).
    WalletKey(u32),
    /// A saved hub snapshot, by reference (`/hubs/{hub}/snapshot`).
    Snapshot(String),
    /// A user's props (`/users/{user}/props`).
    User(String),
    /// A user's props on one hub, among them its access level there (`/hubs/{hub}/users/{user}/props`).
    HubUser(HubName, String),
    /// An alert rule of a hub (`/hubs/{hub}/alerts/{alert}/props`).
    Alert(HubName, String),
    /// The job system's attributes of a hub.
    JobSystemAttributes(HubName),
    /// The job system's environment variables of a hub.
    JobSystemEnv(HubName),
    /// A job's attributes.
    JobAttributes(HubName, JobName),
    /// A job's environment variables.
    JobEnv(HubName, JobName),
    /// The hub's actions (`/hubs/{hub}/definition/hub_actions`), as prop `actions`.
    HubActions(HubName),
    /// A location's actions (`/hubs/{hub}/definition/locs/{loc}/actions`), as prop `actions`.
    LocActions(HubName, String),
    /// An activated channel: its capture and integrate set-up (`activate` writes it,
    /// `deactivate` removes it).
    Activation(HubName, String),
    /// What the last `sluice apply` of a definitions file stored in a hub: the definitions
    /// version it made, when, by whom, from which file, and a digest of each object it left, so a
    /// later plan can tell objects changed outside the file since.
    LastApply(HubName),
}

/// The kinds of [`PropBag`], to list the bags of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PropBagKind {
    /// [`PropBag::HubServer`].
    HubServer,
    /// [`PropBag::Repository`].
    Repository,
    /// [`PropBag::Wallet`].
    Wallet,
    /// [`PropBag::WalletKey`].
    WalletKey,
    /// [`PropBag::Snapshot`].
    Snapshot,
    /// [`PropBag::User`].
    User,
    /// [`PropBag::HubUser`].
    HubUser,
    /// [`PropBag::Alert`].
    Alert,
    /// [`PropBag::JobSystemAttributes`].
    JobSystemAttributes,
    /// [`PropBag::JobSystemEnv`].
    JobSystemEnv,
    /// [`PropBag::JobAttributes`].
    JobAttributes,
    /// [`PropBag::JobEnv`].
    JobEnv,
    /// [`PropBag::HubActions`].
    HubActions,
    /// [`PropBag::LocActions`].
    LocActions,
    /// [`PropBag::Activation`].
    Activation,
    /// [`PropBag::LastApply`].
    LastApply,
}

impl PropBagKind {
    /// The name stored in the repository.
    pub fn as_str(self) -> &'static str {
        match self {
            PropBagKind::HubServer => "hubserver",
            PropBagKind::Repository => "repository",
            PropBagKind::Wallet => "wallet",
            PropBagKind::WalletKey => "wallet_key",
            PropBagKind::Snapshot => "snapshot",
            PropBagKind::User => "user",
            PropBagKind::HubUser => "hub_user",
            PropBagKind::Alert => "alert",
            PropBagKind::JobSystemAttributes => "job_system_attr",
            PropBagKind::JobSystemEnv => "job_system_env",
            PropBagKind::JobAttributes => "job_attr",
            PropBagKind::JobEnv => "job_env",
            PropBagKind::HubActions => "hub_actions",
            PropBagKind::LocActions => "loc_actions",
            PropBagKind::Activation => "activation",
            PropBagKind::LastApply => "last_apply",
        }
    }
}

impl PropBag {
    /// The bag's kind.
    pub fn kind(&self) -> PropBagKind {
        match self {
            PropBag::HubServer => PropBagKind::HubServer,
            PropBag::Repository => PropBagKind::Repository,
            PropBag::Wallet => PropBagKind::Wallet,
            PropBag::WalletKey(_) => PropBagKind::WalletKey,
            PropBag::Snapshot(_) => PropBagKind::Snapshot,
            PropBag::User(_) => PropBagKind::User,
            PropBag::HubUser(..) => PropBagKind::HubUser,
            PropBag::Alert(..) => PropBagKind::Alert,
            PropBag::JobSystemAttributes(_) => PropBagKind::JobSystemAttributes,
            PropBag::JobSystemEnv(_) => PropBagKind::JobSystemEnv,
            PropBag::JobAttributes(..) => PropBagKind::JobAttributes,
            PropBag::JobEnv(..) => PropBagKind::JobEnv,
            PropBag::HubActions(_) => PropBagKind::HubActions,
            PropBag::LocActions(..) => PropBagKind::LocActions,
            PropBag::Activation(..) => PropBagKind::Activation,
            PropBag::LastApply(_) => PropBagKind::LastApply,
        }
    }

    /// For a bag of a hub, its owner within the hub (a user, an alert, a location, a job, a
    /// channel; `""` for the hub's own bags); `None` for a bag of no hub.
    pub fn hub_owner(&self) -> Option<String> {
        let (_, hub, owner) = self.key();
        (!hub.is_empty()).then_some(owner)
    }

    /// The stored key: kind, hub (`""` for none), owner (`""` for a singleton).
    pub(crate) fn key(&self) -> (&'static str, String, String) {
        let kind = self.kind().as_str();
        let (hub, owner) = match self {
            PropBag::HubServer | PropBag::Repository | PropBag::Wallet => {
                (String::new(), String::new())
            }
            PropBag::WalletKey(n) => (String::new(), n.to_string()),
            PropBag::User(u) | PropBag::Snapshot(u) => (String::new(), u.clone()),
            PropBag::HubUser(h, u)
            | PropBag::Alert(h, u)
            | PropBag::LocActions(h, u)
            | PropBag::Activation(h, u) => (h.as_str().to_owned(), u.clone()),
            PropBag::JobSystemAttributes(h)
            | PropBag::JobSystemEnv(h)
            | PropBag::HubActions(h)
            | PropBag::LastApply(h) => (h.as_str().to_owned(), String::new()),
            PropBag::JobAttributes(h, j) | PropBag::JobEnv(h, j) => {
                (h.as_str().to_owned(), j.as_str().to_owned())
            }
        };
        (kind, hub, owner)
    }

    /// The bag stored under `kind`, `hub`, `owner` (`None` for a key this build does not know).
    pub(crate) fn from_key(kind: &str, hub: &str, owner: &str) -> Option<PropBag> {
        let hub_name = || HubName::new(hub).ok();
        let job = || owner.parse::<JobName>().ok();
        Some(match kind {
            "hubserver" => PropBag::HubServer,
            "repository" => PropBag::Repository,
            "wallet" => PropBag::Wallet,
            "wallet_key" => PropBag::WalletKey(owner.parse().ok()?),
            "snapshot" => PropBag::Snapshot(owner.to_owned()),
            "user" => PropBag::User(owner.to_owned()),
            "hub_user" => PropBag::HubUser(hub_name()?, owner.to_owned()),
            "alert" => PropBag::Alert(hub_name()?, owner.to_owned()),
            "job_system_attr" => PropBag::JobSystemAttributes(hub_name()?),
            "job_system_env" => PropBag::JobSystemEnv(hub_name()?),
            "job_attr" => PropBag::JobAttributes(hub_name()?, job()?),
            "job_env" => PropBag::JobEnv(hub_name()?, job()?),
            "hub_actions" => PropBag::HubActions(hub_name()?),
            "loc_actions" => PropBag::LocActions(hub_name()?, owner.to_owned()),
            "activation" => PropBag::Activation(hub_name()?, owner.to_owned()),
            "last_apply" => PropBag::LastApply(hub_name()?),
            _ => return None,
        })
    }
}

/// How [`PropStore::write_props`](crate::PropStore::write_props) treats the bag's stored props.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropWrite {
    /// The bag must not exist yet (`Conflict` when it does); it gets exactly the props given.
    Create,
    /// The bag gets exactly the props given (created when absent).
    Replace,
    /// Each prop given is set (`Some`) or removed (`None`); others stay (created when absent).
    Merge,
    /// As [`PropWrite::Merge`], but the bag must exist (`NotFound` when it does not).
    MergeExisting,
}

type Props = std::collections::BTreeMap<String, serde_json::Value>;

/// A stored prop value (JSON text).
pub(crate) fn props_value(text: &str) -> crate::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        crate::RepoError::new(crate::RepoErrorKind::Storage, "a stored prop is not JSON")
            .with_source(e)
    })
}

/// Rows `(hub, owner, prop, value)` in key order, grouped into bags (unknown keys skipped).
pub(crate) fn group_bags(
    kind: PropBagKind,
    rows: Vec<(String, String, String, String)>,
) -> crate::Result<Vec<(PropBag, Props)>> {
    let mut out: Vec<(PropBag, Props)> = Vec::new();
    let mut last: Option<(String, String)> = None;
    for (hub, owner, name, value) in rows {
        if last.as_ref() != Some(&(hub.clone(), owner.clone())) {
            last = Some((hub.clone(), owner.clone()));
            match PropBag::from_key(kind.as_str(), &hub, &owner) {
                Some(bag) => out.push((bag, Props::new())),
                None => continue,
            }
        }
        if name.is_empty() {
            continue;
        }
        if let Some((bag, props)) = out.last_mut()
            && bag.key().1 == hub
            && bag.key().2 == owner
        {
            props.insert(name, props_value(&value)?);
        }
    }
    Ok(out)
}

/// Whether a write of `how` may go ahead on a bag that `exists`.
pub(crate) fn check_write(how: PropWrite, exists: bool, what: &str) -> crate::Result<()> {
    match how {
        PropWrite::Create if exists => Err(crate::RepoError::new(
            crate::RepoErrorKind::Conflict,
            format!("{what} already exists"),
        )),
        PropWrite::MergeExisting if !exists => Err(crate::RepoError::new(
            crate::RepoErrorKind::NotFound,
            format!("{what} does not exist"),
        )),
        _ => Ok(()),
    }
}
