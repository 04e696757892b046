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

/// Whether a stored property value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The key that seals and opens stored secrets.
#[derive(Clone)]
pub struct SecretKey {
    key: [u8; 32],
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
        }
    }

    /// `SLUICE_SECRET_KEY` when set, else the key file `path`, created (mode 0600) when missing.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        if let Ok(text) = std::env::var("SLUICE_SECRET_KEY")
            && !text.is_empty()
        {
            return Ok(Self::from_text(&text));
        }
        Self::load_file(path)
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

    /// Seals a secret value.
    pub fn seal(&self, plain: &str) -> String {
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let nonce_bytes = rand::random::<[u8; 24]>();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = cipher.encrypt(nonce, plain.as_bytes()).unwrap_or_default();
        let mut bytes = nonce_bytes.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(bytes))
    }

    /// Opens a sealed value.
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let body = sealed
            .strip_prefix(PREFIX)
            .ok_or_else(|| SecretError("the value is not sealed".into()))?;
        let bytes = B64
            .decode(body)
            .map_err(|_| SecretError("the sealed value is damaged".into()))?;
        if bytes.len() < 24 {
            return Err(SecretError("the sealed value is damaged".into()));
        }
        let (nonce, data) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let plain = cipher.decrypt(XNonce::from_slice(nonce), data).map_err(|_| {
            SecretError(
                "the stored secret cannot be opened with this hub's secret key (was SLUICE_SECRET_KEY or the key file changed?)"
                    .into(),
            )
        })?;
        String::from_utf8(plain).map_err(|_| SecretError("the sealed value is damaged".into()))
    }
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
