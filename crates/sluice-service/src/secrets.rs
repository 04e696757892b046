//! Secrets at rest. Location passwords given to the hub server as values are sealed with
//! XChaCha20-Poly1305 under the hub's secret key before they reach the repository, stored as
//! `enc:v1:<base64 of nonce ‖ ciphertext>`, and opened only at the moment a connector is made.
//! Whatever shows definitions (API GETs, exports, plans, events) omits sealed values.
//!
//! The key comes from `SLUICE_SECRET_KEY` (any text: it is hashed to 32 bytes, so hub processes
//! sharing a repository share it by sharing the variable) or from a key file created on first use
//! with mode 0600.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc:v1:";
/// Sealed under a wallet key: `enc:v2:<sequence>:<base64 of nonce ‖ ciphertext>`.
const PREFIX_V2: &str = "enc:v2:";

/// Whether a stored property value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX) || value.starts_with(PREFIX_V2)
}

/// The wallet key sequence a sealed value was sealed under (`0`: the master key itself).
pub fn sealed_sequence(value: &str) -> Option<u32> {
    if value.starts_with(PREFIX) {
        return Some(0);
    }
    let rest = value.strip_prefix(PREFIX_V2)?;
    rest.split_once(':')?.0.parse().ok()
}

/// The key that seals and opens stored secrets: the *master key* (from `SLUICE_SECRET_KEY` or the
/// key file) and the wallet keys it wraps (see `wallet.rs`). Values are sealed under the current
/// wallet key (`enc:v2:<sequence>:…`), or under the master key itself while no wallet key exists
/// (`enc:v1:…`); every wallet key this process has loaded opens what it sealed. Clones share
/// the wallet keys.
#[derive(Clone)]
pub struct SecretKey {
    key: [u8; 32],
    source: &'static str,
    ring: std::sync::Arc<std::sync::RwLock<Ring>>,
}

/// The wallet keys a process has loaded.
#[derive(Default)]
struct Ring {
    /// The sequence new values are sealed under (`0`: the master key).
    current: u32,
    keys: std::collections::BTreeMap<u32, [u8; 32]>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A secret that could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(String);

impl SecretKey {
    /// A key derived from any text (SHA-256 of it).
    pub fn from_text(text: &str) -> Self {
        SecretKey {
            key: Sha256::digest(text.as_bytes()).into(),
            source: "given",
            ring: Default::default(),
        }
    }

    /// Where the master key came from: `SLUICE_SECRET_KEY`, `key file` or `given`.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// `SLUICE_SECRET_KEY` when set, else the key file `path`, created (mode 0600) when missing.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        if let Ok(text) = std::env::var("SLUICE_SECRET_KEY")
            && !text.is_empty()
        {
            return Ok(SecretKey {
                source: "SLUICE_SECRET_KEY",
                ..Self::from_text(&text)
            });
        }
        Self::load_file(path).map(|key| SecretKey {
            source: "key file",
            ..key
        })
    }

    /// The key file `path`, created when missing: exclusively (`O_CREAT|O_EXCL`, mode 0600 from
    /// the start), so it never follows a link planted in its place nor overwrites a file another
    /// process created meanwhile (that process's key is read instead).
    pub fn load_file(path: &Path) -> Result<Self, SecretError> {
        let read =
            |path: &Path| std::fs::read_to_string(path).map(|text| Self::from_text(text.trim()));
        match read(path) {
            Ok(key) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = B64.encode(rand::random::<[u8; 32]>());
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        SecretError(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                match create_private(path, text.as_bytes()) {
                    Ok(()) => Ok(Self::from_text(&text)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // Another process made it first, or something sits at the path.
                        read(path).map_err(|e| {
                            SecretError(format!(
                                "the secret key file {} exists but cannot be read: {e}",
                                path.display()
                            ))
                        })
                    }
                    Err(e) => Err(SecretError(format!(
                        "cannot create the secret key file {}: {e}",
                        path.display()
                    ))),
                }
            }
            Err(e) => Err(SecretError(format!(
                "cannot read the secret key file {}: {e}",
                path.display()
            ))),
        }
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    fn ring_mut(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Seals a secret value under the current wallet key (the master key while there is none).
    pub fn seal(&self, plain: &str) -> String {
        let ring = self.ring();
        match ring.keys.get(&ring.current) {
            Some(key) if ring.current > 0 => format!(
                "{PREFIX_V2}{}:{}",
                ring.current,
                B64.encode(seal_bytes(key, plain.as_bytes()))
            ),
            _ => format!(
                "{PREFIX}{}",
                B64.encode(seal_bytes(&self.key, plain.as_bytes()))
            ),
        }
    }

    /// Opens a sealed value, whichever loaded key sealed it.
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let (key, body) = if let Some(body) = sealed.strip_prefix(PREFIX) {
            (self.key, body)
        } else {
            let sequence = sealed_sequence(sealed)
                .ok_or_else(|| SecretError("the value is not sealed".into()))?;
            let body = sealed
                .strip_prefix(PREFIX_V2)
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, body)| body)
                .unwrap_or_default();
            let key = *self.ring().keys.get(&sequence).ok_or_else(|| {
                SecretError(format!(
                    "the stored secret is sealed under wallet key {sequence}, which this hub server does not have (deleted from the key history, or wrapped by another master key)"
                ))
            })?;
            (key, body)
        };
        let plain = open_bytes(&key, body).map_err(|e| match e {
            Some(e) => e,
            None => SecretError(
                "the stored secret cannot be opened with this hub's secret key (was SLUICE_SECRET_KEY or the key file changed?)"
                    .into(),
            ),
        })?;
        String::from_utf8(plain).map_err(|_| SecretError("the sealed value is damaged".into()))
    }

    /// A new random wallet key: the key wrapped (sealed) by the master key, for storing.
    pub fn new_wrapped_key(&self) -> String {
        let key = rand::random::<[u8; 32]>();
        format!("{PREFIX}{}", B64.encode(seal_bytes(&self.key, &key)))
    }

    /// Loads wallet key `sequence` from its wrapped form (a no-op when it is loaded already).
    pub fn load_wallet_key(&self, sequence: u32, wrapped: &str) -> Result<(), SecretError> {
        if sequence == 0 || self.ring().keys.contains_key(&sequence) {
            return Ok(());
        }
        let body = wrapped
            .strip_prefix(PREFIX)
            .ok_or_else(|| SecretError(format!("wallet key {sequence} is damaged")))?;
        let bytes = open_bytes(&self.key, body)
            .map_err(|_| {
                SecretError(format!(
                    "wallet key {sequence} cannot be opened with this hub's master key (was SLUICE_SECRET_KEY or the key file changed?)"
                ))
            })?
            .try_into()
            .map_err(|_| SecretError(format!("wallet key {sequence} is damaged")))?;
        self.ring_mut().keys.insert(sequence, bytes);
        Ok(())
    }

    /// Makes `sequence` (a loaded wallet key, or `0` for the master key) the one new values are
    /// sealed under; `false` when that key is not loaded.
    pub fn set_current(&self, sequence: u32) -> bool {
        let mut ring = self.ring_mut();
        if sequence != 0 && !ring.keys.contains_key(&sequence) {
            return false;
        }
        ring.current = sequence;
        true
    }

    /// The sequence new values are sealed under.
    pub fn current(&self) -> u32 {
        self.ring().current
    }

    /// Whether wallet key `sequence` is loaded (`0`, the master key, always is).
    pub fn has(&self, sequence: u32) -> bool {
        sequence == 0 || self.ring().keys.contains_key(&sequence)
    }

    /// Forgets wallet key `sequence` (deleted from the key history).
    pub fn forget(&self, sequence: u32) {
        self.ring_mut().keys.remove(&sequence);
    }
}

fn seal_bytes(key: &[u8; 32], plain: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes = rand::random::<[u8; 24]>();
    let nonce = XNonce::from_slice(&nonce_bytes);
    let sealed = cipher.encrypt(nonce, plain).unwrap_or_default();
    let mut bytes = nonce_bytes.to_vec();
    bytes.extend_from_slice(&sealed);
    bytes
}

/// Opens base64 `body`; `Err(None)` when the key does not open it.
fn open_bytes(key: &[u8; 32], body: &str) -> Result<Vec<u8>, Option<SecretError>> {
    let bytes = B64
        .decode(body)
        .map_err(|_| Some(SecretError("the sealed value is damaged".into())))?;
    if bytes.len() < 24 {
        return Err(Some(SecretError("the sealed value is damaged".into())));
    }
    let (nonce, data) = bytes.split_at(24);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(XNonce::from_slice(nonce), data)
        .map_err(|_| None)
}

/// Creates a new file only its owner can read, failing when anything (a file, a link) is at
/// `path` already.
fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .map_err(|e| SecretError(format!("cannot write {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SecretError(format!("cannot protect {}: {e}", path.display())))?;
    }
    file.write_all(bytes)
        .map_err(|e| SecretError(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_another_key() {
        let key = SecretKey::from_text("k1");
        let sealed = key.seal("p@ss ${NOT_A_REF}");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("p@ss"));
        assert_eq!(key.open(&sealed).unwrap(), "p@ss ${NOT_A_REF}");
        assert_ne!(key.seal("x"), key.seal("x"), "a fresh nonce each time");
        assert!(SecretKey::from_text("k2").open(&sealed).is_err());
        assert!(key.open("enc:v1:!!").is_err());
    }

    #[test]
    fn wallet_keys_seal_new_values_and_old_ones_still_open() {
        let key = SecretKey::from_text("master");
        let old = key.seal("before");
        assert_eq!(sealed_sequence(&old), Some(0));
        let wrapped = key.new_wrapped_key();
        assert!(!key.set_current(1), "not loaded yet");
        key.load_wallet_key(1, &wrapped).unwrap();
        assert!(key.set_current(1));
        let new = key.seal("after");
        assert_eq!(sealed_sequence(&new), Some(1));
        assert!(is_sealed(&new));
        assert_eq!(key.open(&new).unwrap(), "after");
        assert_eq!(key.open(&old).unwrap(), "before");
        // Another process with the same master key loads the wrapped key and opens both.
        let other = SecretKey::from_text("master");
        assert!(other.open(&new).is_err());
        other.load_wallet_key(1, &wrapped).unwrap();
        assert_eq!(other.open(&new).unwrap(), "after");
        // A different master key cannot unwrap it.
        assert!(
            SecretKey::from_text("other")
                .load_wallet_key(1, &wrapped)
                .is_err()
        );
        key.forget(1);
        assert!(key.open(&new).is_err());
    }

    #[test]
    fn key_file_creation_never_follows_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let victim = dir.path().join("elsewhere").join("stolen.key");
        std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        // A dangling link where the key file belongs: refused, and nothing is written through it.
        assert!(SecretKey::load_file(&path).is_err());
        assert!(!victim.exists(), "the key was written through the link");
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        // SAFETY-free: the test only reads the variable; make sure it does not interfere.
        if std::env::var("SLUICE_SECRET_KEY").is_ok() {
            return;
        }
        let a = SecretKey::load(&path).unwrap();
        let b = SecretKey::load(&path).unwrap();
        assert_eq!(b.open(&a.seal("v")).unwrap(), "v");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
