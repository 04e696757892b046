//! Users, passwords and tokens of the hub server.
//!
//! Passwords are kept only as Argon2id PHC strings. A login yields what HVR clients expect: a
//! short-lived JWT access token (HS256, 900 s, carrying the user and level) and, when asked, an
//! opaque refresh token (32 random bytes, stored only as its SHA-256, valid a week, rotated on
//! every use). The signing key is a repository setting, so every hub process sharing the
//! repository accepts the others' tokens. Failed logins are rate limited per user name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_model::AccessLevel;
use sluice_repo::{RepoErrorKind, TokenRecord, UserRecord};

use crate::{HubService, Result, ServiceError, ServiceErrorKind};

/// Lifetime of an access token.
pub const ACCESS_TTL: Duration = Duration::from_secs(900);
/// Lifetime of a refresh token.
pub const REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed logins allowed per user name within [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const MIN_PASSWORD: usize = 8;

/// What a login answers.
#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    /// Always `bearer`.
    pub token_type: &'static str,
    /// The JWT.
    pub access_token: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    /// The refresh token, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: String,
    /// What the user may do.
    pub level: AccessLevel,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    lvl: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Failed login counts per user name.
#[derive(Default)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    fn check(&self, user: &str) -> Result<()> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((count, since)) = map.get(user)
            && *count >= MAX_FAILURES
            && since.elapsed() < FAILURE_WINDOW
        {
            let wait = FAILURE_WINDOW.saturating_sub(since.elapsed()).as_secs() + 1;
            return Err(ServiceError::new(
                ServiceErrorKind::RateLimited,
                format!("too many failed logins for user {user}; try again in {wait} s"),
            ));
        }
        Ok(())
    }

    fn failed(&self, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(user.to_owned()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        // Bound the map: forget old windows.
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
    }

    fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}

/// An Argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String> {
    let salt: [u8; 16] = rand::random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::invalid(format!("cannot hash the password: {e}")))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Hex SHA-256 of a token: what the repository keeps.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token with a readable prefix.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", B64.encode(rand::random::<[u8; 32]>()))
}

/// Checks a user name: 1–64 letters, digits, `_ . @ -`.
pub fn check_user_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
    {
        return Err(ServiceError::invalid(format!(
            "invalid user name {name:?}: 1 to 64 letters, digits, '_', '.', '@' or '-'"
        )));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ServiceError::invalid(format!(
            "the password is too short: at least {MIN_PASSWORD} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(ServiceError::invalid("the password is too long"));
    }
    Ok(())
}

fn forbidden(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ServiceErrorKind::Forbidden, message)
}

fn unauthenticated(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ServiceErrorKind::Unauthenticated, message)
}

impl HubService {
    async fn signing_key(&self) -> Result<&[u8]> {
        let key = self
            .inner
            .jwt_key
            .get_or_try_init(|| async {
                let fresh = B64.encode(rand::random::<[u8; 32]>());
                let stored = self
                    .repo()
                    .setting_or_insert("jwt_signing_key", &fresh)
                    .await?;
                Ok::<_, ServiceError>(stored.into_bytes())
            })
            .await?;
        Ok(key.as_slice())
    }

    /// Creates user `admin` (SysAdmin) when the repository has no user: with `password` when
    /// given, else a random one, which is returned so it can be shown once.
    pub async fn ensure_admin(&self, password: Option<&str>) -> Result<Option<String>> {
        if !self.repo().users().await?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password.filter(|p| !p.is_empty()) {
            Some(p) => (p.to_owned(), false),
            None => (new_token(""), true),
        };
        check_password(&password)?;
        let record = UserRecord {
            name: "admin".into(),
            level: AccessLevel::SysAdmin,
            password_hash: hash_password(&password)?,
            created: Utc::now(),
            creator: "sluice".into(),
        };
        match self.repo().create_user(&record).await {
            Ok(()) => Ok(generated.then_some(password)),
            // Another hub process created it first.
            Err(e) if e.kind() == RepoErrorKind::Conflict => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a user.
    pub async fn create_user(&self, name: &str, level: AccessLevel, password: &str) -> Result<()> {
        check_user_name(name)?;
        check_password(password)?;
        let record = UserRecord {
            name: name.to_owned(),
            level,
            password_hash: hash_password(password)?,
            created: Utc::now(),
            creator: self.user().to_owned(),
        };
        Ok(self.repo().create_user(&record).await?)
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        Ok(self.repo().users().await?)
    }

    /// Changes a user's level and/or password; a new password ends the user's refresh tokens.
    pub async fn update_user(
        &self,
        name: &str,
        level: Option<AccessLevel>,
        password: Option<&str>,
    ) -> Result<()> {
        let hash = match password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p)?)
            }
            None => None,
        };
        self.repo()
            .update_user(name, level, hash.as_deref())
            .await?;
        if hash.is_some() || level.is_some() {
            for t in self.repo().tokens("refresh", Some(name)).await? {
                self.repo().delete_token(&t.hash).await?;
            }
        }
        Ok(())
    }

    /// Deletes a user and their tokens.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        Ok(self.repo().delete_user(name).await?)
    }

    async fn issue(&self, user: &UserRecord, want_refresh: bool) -> Result<Tokens> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.name.clone(),
            lvl: user.level.as_str().to_owned(),
            iat: now,
            exp: now + ACCESS_TTL.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let key = EncodingKey::from_secret(self.signing_key().await?);
        let access_token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|e| ServiceError::invalid(format!("cannot sign a token: {e}")))?;
        let refresh_token = if want_refresh {
            let token = new_token("rt_");
            let created = Utc::now();
            self.repo()
                .put_token(&TokenRecord {
                    hash: token_hash(&token),
                    user: user.name.clone(),
                    kind: "refresh".into(),
                    created,
                    expires: created + chrono::Duration::from_std(REFRESH_TTL).unwrap_or_default(),
                })
                .await?;
            Some(token)
        } else {
            None
        };
        Ok(Tokens {
            token_type: "bearer",
            access_token,
            expires_in: ACCESS_TTL.as_secs(),
            refresh_token,
        })
    }

    /// Logs in with a password.
    pub async fn login(&self, user: &str, password: &str, want_refresh: bool) -> Result<Tokens> {
        self.inner.limiter.check(user)?;
        let record = self.repo().user(user).await?;
        let ok = match &record {
            Some(r) => verify_password(&r.password_hash, password),
            None => {
                // Spend the same time as for a real user.
                let _ = hash_password(password);
                false
            }
        };
        match record {
            Some(r) if ok && r.level != AccessLevel::None => {
                self.inner.limiter.succeeded(user);
                self.issue(&r, want_refresh).await
            }
            _ => {
                self.inner.limiter.failed(user);
                Err(forbidden("invalid user name or password"))
            }
        }
    }

    /// Trades a refresh token for new tokens; the old refresh token stops working.
    pub async fn refresh_login(&self, refresh_token: &str, want_refresh: bool) -> Result<Tokens> {
        let stored = self
            .repo()
            .take_token(&token_hash(refresh_token))
            .await?
            .filter(|t| t.kind == "refresh" && t.expires > Utc::now())
            .ok_or_else(|| forbidden("the refresh token is invalid or expired"))?;
        let user = self
            .repo()
            .user(&stored.user)
            .await?
            .ok_or_else(|| forbidden("the refresh token's user no longer exists"))?;
        self.issue(&user, want_refresh).await
    }

    /// Ends a refresh token; never fails for an unknown token.
    pub async fn revoke(&self, refresh_token: &str) -> Result<()> {
        Ok(self.repo().delete_token(&token_hash(refresh_token)).await?)
    }

    /// Checks an access token.
    pub async fn authenticate(&self, access_token: &str) -> Result<Identity> {
        let key = DecodingKey::from_secret(self.signing_key().await?);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let data =
            jsonwebtoken::decode::<Claims>(access_token, &key, &validation).map_err(|e| match e
                .kind()
            {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    unauthenticated("the access token has expired; log in again or refresh it")
                }
                _ => unauthenticated("the access token is invalid"),
            })?;
        let level = data
            .claims
            .lvl
            .parse()
            .map_err(|_| unauthenticated("the access token is invalid"))?;
        Ok(Identity {
            user: data.claims.sub,
            level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("garbage", "correct horse"));
    }

    #[test]
    fn limiter_blocks_after_repeated_failures() {
        let limiter = LoginLimiter::default();
        for _ in 0..MAX_FAILURES {
            limiter.check("bob").unwrap();
            limiter.failed("bob");
        }
        assert_eq!(
            limiter.check("bob").unwrap_err().kind(),
            ServiceErrorKind::RateLimited
        );
        limiter.check("alice").unwrap();
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user_name("alice.b@x-y_z").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a'; DROP TABLE users; --").is_err());
        assert!(check_user_name(&"a".repeat(65)).is_err());
    }
}
