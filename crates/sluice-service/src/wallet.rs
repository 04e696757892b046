//! The wallet (HVR's Encryption Interface), mapped onto sluice's sealed secrets.
//!
//! The *master key* is the hub server's secret key (`SLUICE_SECRET_KEY` or the key file); it is
//! never stored in the repository. A *wallet key* is a random key stored in the repository
//! wrapped (sealed) by the master key, one property bag per key sequence
//! ([`PropBag::WalletKey`]), created exclusively so that two processes rotating at once cannot
//! both take one sequence. The wallet bag ([`PropBag::Wallet`]) names the current sequence and,
//! while a re-seal runs, the sequence it re-seals to.
//!
//! Rotating (`key_rotate`) makes a new wallet key, makes it current (from then on every process
//! seals new secrets under it, loading it from the repository at its next use of a secret), and
//! re-seals every stored secret hub by hub, each hub in one transaction guarded by the hub's
//! definitions version (a concurrent edit makes it retry). Old keys stay readable meanwhile and
//! afterwards, so nothing stops working: a crash half-way leaves every secret readable, under
//! the old key or the new one, and `reencrypt_continue` finishes the work. Old keys leave only
//! through `key_history_delete`, which refuses a key that still seals a secret.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use sluice_model::definition::PropValue;
use sluice_model::{EventState, EventType, HubName};
use sluice_repo::{NewEvent, PropBag, PropBagKind, PropWrite, RepoErrorKind};

use crate::secrets::{SecretKey, sealed_sequence};
use crate::{HubService, Result, ServiceError, ServiceErrorKind};

/// The wallet bag's prop naming the current key sequence.
const CURRENT: &str = "Encryption_Key_Sequence";
/// The wallet bag's prop naming the sequence a re-seal that has not finished re-seals to.
const PENDING: &str = "Reencrypt_Pending";
/// A wallet key bag's wrapped key.
const WRAPPED: &str = "wrapped";
/// A wallet key bag's creation time.
const CREATED: &str = "created";

/// The only wallet type sluice has: its master key.
pub const WALLET_TYPE: &str = "SOFTWARE";

/// A wallet key as [`HubService::wallet_props`] shows it (never its material).
#[derive(Clone, Debug, PartialEq)]
pub struct WalletKeyInfo {
    /// When it was made (`None` for sequence 0, the master key itself).
    pub created: Option<String>,
    /// Stored secrets sealed under it.
    pub secret_count: usize,
}

fn no_key() -> ServiceError {
    ServiceError::invalid(
        "no wallet configured: this hub server has no secret key (set SLUICE_SECRET_KEY or let \
         `sluice serve` create its key file)",
    )
}

fn as_sequence(v: Option<&Json>) -> Option<u32> {
    v.and_then(Json::as_u64).and_then(|n| u32::try_from(n).ok())
}

impl HubService {
    fn secret_key(&self) -> Result<&SecretKey> {
        self.inner.secrets.as_ref().ok_or_else(no_key)
    }

    /// Loads wallet keys this process does not have yet and the current sequence from the
    /// repository. Called before secrets are sealed or opened, so that a rotation by another
    /// process applies here at once. A key this master key cannot unwrap is skipped (the
    /// secrets it sealed then fail to open, naming it).
    pub(crate) async fn sync_wallet(&self) -> Result<()> {
        let Some(key) = self.inner.secrets.as_ref() else {
            return Ok(());
        };
        let wallet = self
            .props_store()
            .props(&PropBag::Wallet)
            .await?
            .unwrap_or_default();
        let current = as_sequence(wallet.get(CURRENT)).unwrap_or(0);
        if key.current() == current && key.has(current) {
            return Ok(());
        }
        for (bag, props) in self
            .props_store()
            .bags(PropBagKind::WalletKey, None)
            .await?
        {
            if let (PropBag::WalletKey(n), Some(Json::String(wrapped))) = (bag, props.get(WRAPPED))
                && let Err(e) = key.load_wallet_key(n, wrapped)
            {
                tracing::warn!(error = %e, sequence = n, "cannot load a wallet key");
            }
        }
        if !key.set_current(current) {
            return Err(ServiceError::new(
                ServiceErrorKind::Failed,
                format!(
                    "the wallet's current key {current} cannot be loaded with this hub server's master key (was SLUICE_SECRET_KEY or the key file changed?)"
                ),
            ));
        }
        Ok(())
    }

    /// The wallet's configuration (the repository prop `Wallet`): `{}` without a secret key.
    pub async fn wallet_config(&self) -> Result<Json> {
        let Some(key) = self.inner.secrets.as_ref() else {
            return Ok(json!({}));
        };
        self.sync_wallet().await?;
        Ok(json!({
            "Wallet_Type": WALLET_TYPE,
            "Wallet_Key_Source": key.source(),
            CURRENT: key.current(),
        }))
    }

    /// Every stored sealed secret: (hub, location, prop, sealed value).
    async fn sealed_secrets(&self) -> Result<Vec<(HubName, String, String, String)>> {
        let mut out = Vec::new();
        for hub in self.definition_store().hubs().await? {
            for loc in self.definition_store().locations(&hub.hub.name).await? {
                for (prop, value) in &loc.props {
                    let text = value.to_text();
                    if crate::secrets::is_sealed(&text) {
                        out.push((
                            hub.hub.name.clone(),
                            loc.name.to_string(),
                            prop.clone(),
                            text,
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The wallet's props: its type, where the master key comes from, the current key
    /// sequence, each key (when made, how many stored secrets it seals; never key material)
    /// and whether a re-seal is unfinished.
    pub async fn wallet_props(&self) -> Result<BTreeMap<String, Json>> {
        let key = self.secret_key()?;
        self.sync_wallet().await?;
        let mut keys: BTreeMap<u32, WalletKeyInfo> = BTreeMap::new();
        keys.insert(
            0,
            WalletKeyInfo {
                created: None,
                secret_count: 0,
            },
        );
        for (bag, props) in self
            .props_store()
            .bags(PropBagKind::WalletKey, None)
            .await?
        {
            if let PropBag::WalletKey(n) = bag {
                keys.insert(
                    n,
                    WalletKeyInfo {
                        created: props.get(CREATED).and_then(Json::as_str).map(str::to_owned),
                        secret_count: 0,
                    },
                );
            }
        }
        let mut unreadable = 0;
        for (.., sealed) in self.sealed_secrets().await? {
            match sealed_sequence(&sealed).and_then(|n| keys.get_mut(&n)) {
                Some(info) => info.secret_count += 1,
                None => unreadable += 1,
            }
        }
        let wallet = self
            .props_store()
            .props(&PropBag::Wallet)
            .await?
            .unwrap_or_default();
        let current = key.current();
        let listed: serde_json::Map<String, Json> = keys
            .iter()
            .map(|(n, info)| {
                let mut k = json!({
                    "secrets": info.secret_count,
                    "current": *n == current,
                    "origin": if *n == 0 { "master key" } else { "wallet key wrapped by the master key" },
                });
                if let Some(c) = &info.created {
                    k["created"] = json!(c);
                }
                (n.to_string(), k)
            })
            .collect();
        let mut out = BTreeMap::new();
        out.insert("Wallet_Type".into(), json!(WALLET_TYPE));
        out.insert("Wallet_Key_Source".into(), json!(key.source()));
        out.insert("Encryption".into(), json!("SECRETS_ONLY"));
        out.insert(CURRENT.into(), json!(current));
        out.insert("Encryption_Keys".into(), Json::Object(listed));
        out.insert(
            "Reencrypt_State".into(),
            json!(if wallet.contains_key(PENDING) {
                "PENDING"
            } else {
                "DONE"
            }),
        );
        if unreadable > 0 {
            out.insert("Unreadable_Secrets".into(), json!(unreadable));
        }
        Ok(out)
    }

    /// Checks that a wallet configuration is sluice's own (`Wallet_Type` `SOFTWARE` or none).
    pub fn check_wallet_config(&self, props: &BTreeMap<String, Json>) -> Result<()> {
        self.secret_key()?;
        for (name, value) in props {
            match (name.as_str(), value) {
                ("Wallet_Type", Json::String(t)) if t.eq_ignore_ascii_case(WALLET_TYPE) => {}
                ("Wallet_Type", other) => {
                    return Err(ServiceError::new(
                        ServiceErrorKind::Invalid,
                        format!(
                            "wallet type {other} is not available: sluice's wallet is its master key (SLUICE_SECRET_KEY or the key file), type {WALLET_TYPE}; it has no KMS, Azure Key Vault or other external wallet"
                        ),
                    ));
                }
                _ => {
                    return Err(ServiceError::invalid(format!(
                        "wallet prop {name} is not one sluice has (its wallet has only Wallet_Type {WALLET_TYPE})"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Makes a new wallet key current and re-seals every stored secret under it. Answers the
    /// new sequence.
    pub async fn rotate_wallet_key(&self) -> Result<u32> {
        let key = self.secret_key()?;
        self.sync_wallet().await?;
        let wallet = self
            .props_store()
            .props(&PropBag::Wallet)
            .await?
            .unwrap_or_default();
        if let Some(pending) = as_sequence(wallet.get(PENDING)) {
            return Err(ServiceError::invalid(format!(
                "a re-encryption to key {pending} has not finished: POST /wallet/reencrypt_continue first"
            )));
        }
        let mut sequence = self
            .props_store()
            .bags(PropBagKind::WalletKey, None)
            .await?
            .iter()
            .filter_map(|(bag, _)| match bag {
                PropBag::WalletKey(n) => Some(*n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
            .max(key.current());
        // Take the next free sequence; another process rotating at once takes another.
        let wrapped = key.new_wrapped_key();
        loop {
            sequence = sequence
                .checked_add(1)
                .ok_or_else(|| ServiceError::invalid("no wallet key sequence is left"))?;
            let props = BTreeMap::from([
                (WRAPPED.to_owned(), Some(json!(wrapped))),
                (
                    CREATED.to_owned(),
                    Some(json!(crate::hub_server::now_text())),
                ),
            ]);
            match self
                .props_store()
                .write_props(&PropBag::WalletKey(sequence), &props, PropWrite::Create)
                .await
            {
                Ok(_) => break,
                Err(e) if e.kind() == RepoErrorKind::Conflict => continue,
                Err(e) => return Err(e.into()),
            }
        }
        key.load_wallet_key(sequence, &wrapped)
            .map_err(|e| ServiceError::new(ServiceErrorKind::Failed, e.to_string()))?;
        // The key becomes current and the re-seal pending in one write.
        let pointer = BTreeMap::from([
            (CURRENT.to_owned(), Some(json!(sequence))),
            (PENDING.to_owned(), Some(json!(sequence))),
        ]);
        self.props_store()
            .write_props(&PropBag::Wallet, &pointer, PropWrite::Merge)
            .await?;
        key.set_current(sequence);
        self.reseal_secrets().await?;
        Ok(sequence)
    }

    /// Re-seals every stored secret not sealed under the current key (the rest of a rotation a
    /// crash interrupted, or secrets sealed by the master key itself). Answers how many were
    /// re-sealed.
    pub async fn reseal_secrets(&self) -> Result<usize> {
        let key = self.secret_key()?;
        self.sync_wallet().await?;
        let mut count = 0;
        for hub in self.definition_store().hubs().await? {
            count += self.reseal_hub(&hub.hub.name).await?;
        }
        let done = BTreeMap::from([(PENDING.to_owned(), None)]);
        self.props_store()
            .write_props(&PropBag::Wallet, &done, PropWrite::Merge)
            .await?;
        tracing::info!(
            sequence = key.current(),
            resealed = count,
            "stored secrets re-sealed"
        );
        Ok(count)
    }

    async fn reseal_hub(&self, hub: &HubName) -> Result<usize> {
        let key = self.secret_key()?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (mut defs, version) = self.definitions(hub).await?;
            // After reading the definitions: a rotation since makes this write conflict.
            self.sync_wallet().await?;
            let current = key.current();
            let mut count = 0;
            for loc in defs.locations.values_mut() {
                for value in loc.props.values_mut() {
                    let text = value.to_text();
                    match sealed_sequence(&text) {
                        Some(n) if n != current => {
                            let plain = key.open(&text).map_err(|e| {
                                ServiceError::new(
                                    ServiceErrorKind::Failed,
                                    format!(
                                        "location {}: {e}; nothing more was re-sealed",
                                        loc.name
                                    ),
                                )
                            })?;
                            *value = PropValue::Text(key.seal(&plain));
                            count += 1;
                        }
                        _ => {}
                    }
                }
            }
            if count == 0 {
                return Ok(0);
            }
            let event = NewEvent {
                hub: hub.clone(),
                event_type: EventType::ReencryptSecrets,
                user: self.user().to_owned(),
                description: format!(
                    "{count} stored secret(s) re-sealed under wallet key {current} (by {})",
                    self.user()
                ),
                channel: None,
                loc: None,
                loc2: None,
                job: None,
                state: EventState::Done,
                body: json!({ "new_encryption_key_sequence": current }),
            };
            match self
                .definition_store()
                .replace_hub_definitions(&defs, version, event)
                .await
            {
                Err(e) if e.kind() == RepoErrorKind::Conflict && attempts < 10 => continue,
                other => {
                    other?;
                    return Ok(count);
                }
            }
        }
    }

    /// Deletes old wallet keys (never the current one, nor one that still seals a stored
    /// secret or that an unfinished re-seal needs): those before sequence `before_sequence` and
    /// made before `before_time` (each when given). Answers how many were deleted.
    pub async fn delete_wallet_key_history(
        &self,
        before_sequence: Option<u32>,
        before_time: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<usize> {
        let key = self.secret_key()?;
        self.sync_wallet().await?;
        let wallet = self
            .props_store()
            .props(&PropBag::Wallet)
            .await?
            .unwrap_or_default();
        if wallet.contains_key(PENDING) {
            return Err(ServiceError::invalid(
                "a re-encryption has not finished: POST /wallet/reencrypt_continue first",
            ));
        }
        let mut in_use: BTreeMap<u32, usize> = BTreeMap::new();
        for (.., sealed) in self.sealed_secrets().await? {
            if let Some(n) = sealed_sequence(&sealed) {
                *in_use.entry(n).or_default() += 1;
            }
        }
        let mut doomed = Vec::new();
        for (bag, props) in self
            .props_store()
            .bags(PropBagKind::WalletKey, None)
            .await?
        {
            let PropBag::WalletKey(n) = bag else { continue };
            if n == key.current() || before_sequence.is_some_and(|b| n >= b) {
                continue;
            }
            if let Some(t) = before_time {
                let created = props
                    .get(CREATED)
                    .and_then(Json::as_str)
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
                if created.is_none_or(|c| c >= t) {
                    continue;
                }
            }
            if let Some(count) = in_use.get(&n) {
                return Err(ServiceError::invalid(format!(
                    "wallet key {n} still seals {count} stored secret(s): POST /wallet/reencrypt_continue first; nothing was deleted"
                )));
            }
            doomed.push(n);
        }
        let mut deleted = 0;
        for n in doomed {
            if self
                .props_store()
                .delete_bag(&PropBag::WalletKey(n))
                .await?
            {
                key.forget(n);
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
