//! Users, passwords and tokens of the hub server.
//!
//! Passwords are kept only as Argon2id PHC strings, hashed and checked on a small blocking pool
//! (never on the async workers that serve requests and streams). A login yields what HVR clients
//! expect: a short-lived JWT access token (HS256, 900 s) and, when asked, an opaque refresh token
//! (32 random bytes, stored only as its SHA-256, valid a week, rotated on every use). The signing
//! key is a repository setting, so every hub process sharing the repository accepts the others'
//! tokens.
//!
//! Revocation takes effect at once: every login opens a *session* (a repository token record of
//! kind `session`, named in the access token's `sid` claim and carried by the refresh token). Each
//! request checks the token against the user's current state: the user exists, their level *now*
//! (a demotion applies to tokens already issued), and the session is still open; logging out
//! (revoke), a password change and deleting the user close sessions. A check is remembered for at
//! most [`REVALIDATE`], and forgotten at once by every write to users or tokens in this process
//! (see [`AuthCache`]); another process's writes are seen within [`REVALIDATE`].
//!
//! Logins are limited so that they can neither be used to guess passwords nor be turned against a
//! user or the server: every attempt is counted *before* its password is checked, against a global
//! budget (what the hashing pool can take) and a per-address budget; failures are counted per user
//! and address and make that pair back off (1 s, 2 s, 4 s … up to 5 minutes) instead of locking the
//! user out for everyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher};
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
/// How long a token check is trusted before the user and session are read again.
pub const REVALIDATE: Duration = Duration::from_secs(1);
/// Failed logins of one user from one address before that pair backs off.
const FREE_FAILURES: u32 = 5;
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Failures are forgotten after this long without another.
const FAILURE_MEMORY: Duration = Duration::from_secs(900);
const MIN_PASSWORD: usize = 8;
/// Kind of the repository token records that are sessions.
const SESSION: &str = "session";
/// Logins waiting for the hashing pool beyond which new ones are turned away at once.
const MAX_WAITING_HASHES: usize = 32;

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
    /// What the user may do (as the repository says now, not as the token said).
    pub level: AccessLevel,
    /// When the access token expires (Unix seconds).
    pub expires: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    lvl: String,
    iat: i64,
    exp: i64,
    jti: String,
    #[serde(default)]
    sid: Option<String>,
    /// A setup-mode token ([`HubService::setup_login`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    setup: bool,
}

/// The name a setup-mode token acts as; no user can have it (user names have no parentheses).
pub const SETUP_USER: &str = "(setup)";

impl Identity {
    /// Whether this is a setup-mode token's identity ([`HubService::setup_login`]).
    pub fn is_setup(&self) -> bool {
        self.user == SETUP_USER
    }
}

/// How many logins a budget allows: `burst` at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoginRate {
    /// Attempts allowed at once.
    pub burst: f64,
    /// Attempts added back per second.
    pub per_second: f64,
}

/// The login budgets of a hub server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoginLimits {
    /// All logins of the process (sized to what the hashing pool can take).
    pub global: LoginRate,
    /// Logins from one client address.
    pub per_address: LoginRate,
    /// Threads checking passwords at once.
    pub hash_workers: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoginLimits {
            global: LoginRate {
                burst: 60.0,
                per_second: 30.0,
            },
            per_address: LoginRate {
                burst: 30.0,
                per_second: 5.0,
            },
            hash_workers: (cores / 2).max(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: LoginRate) -> Self {
        Bucket {
            tokens: rate.burst,
            at: Instant::now(),
        }
    }

    /// Takes one attempt; the wait until one is available when there is none.
    fn take(&mut self, rate: LoginRate) -> std::result::Result<(), Duration> {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * rate.per_second;
        self.tokens = (self.tokens + refill).min(rate.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second.max(0.001),
            ))
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// No attempt of this user from this address before then.
    not_before: Option<Instant>,
}

#[derive(Default)]
struct LimiterState {
    global: Option<Bucket>,
    per_address: HashMap<IpAddr, Bucket>,
    failures: HashMap<(String, Option<IpAddr>), Failures>,
    /// Users and the addresses they logged in from successfully, with when: such a login is not
    /// held to the global and per-address budgets, so a flood cannot keep a user out of the
    /// place they work from.
    known: HashMap<(String, IpAddr), Instant>,
}

/// How long a successful login from an address is remembered.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Login budgets and back-offs, and the pool that hashes passwords.
pub(crate) struct LoginLimiter {
    limits: LoginLimits,
    state: Mutex<LimiterState>,
    /// The threads that hash and check passwords, with their lines (see [`crate::password`]).
    pool: crate::password::PasswordPool,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(LoginLimits::default())
    }
}

fn rate_limited(message: String) -> ServiceError {
    ServiceError::new(ServiceErrorKind::RateLimited, message)
}

fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl LoginLimiter {
    pub(crate) fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            state: Mutex::new(LimiterState::default()),
            pool: crate::password::PasswordPool::new(limits.hash_workers, MAX_WAITING_HASHES),
        }
    }

    /// Counts an attempt of `user` from `from` before anything is checked; refuses when a budget
    /// is spent or the pair is backing off. `Ok(true)` for a user at an address they logged in
    /// from before (no budget applies, and their check has a line of its own).
    fn admit(&self, user: &str, from: Option<IpAddr>) -> Result<bool> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(f) = state.failures.get(&(user.to_owned(), from))
            && let Some(not_before) = f.not_before
            && now < not_before
        {
            return Err(rate_limited(format!(
                "too many failed logins for user {user} from this address; try again in {} s",
                seconds(not_before - now)
            )));
        }
        if let Some(addr) = from
            && state
                .known
                .get(&(user.to_owned(), addr))
                .is_some_and(|at| now.duration_since(*at) < KNOWN_FOR)
        {
            return Ok(true);
        }
        if let Some(addr) = from {
            if state.per_address.len() > 50_000 {
                let rate = self.limits.per_address;
                state.per_address.retain(|_, b| {
                    now.duration_since(b.at).as_secs_f64() * rate.per_second < rate.burst
                });
            }
            let rate = self.limits.per_address;
            let bucket = state
                .per_address
                .entry(addr)
                .or_insert_with(|| Bucket::full(rate));
            if let Err(wait) = bucket.take(rate) {
                return Err(rate_limited(format!(
                    "too many logins from this address; try again in {} s",
                    seconds(wait)
                )));
            }
        }
        let rate = self.limits.global;
        let global = state.global.get_or_insert_with(|| Bucket::full(rate));
        if let Err(wait) = global.take(rate) {
            return Err(rate_limited(format!(
                "the hub server is busy with logins; try again in {} s",
                seconds(wait)
            )));
        }
        Ok(false)
    }

    fn failed(&self, user: &str, from: Option<IpAddr>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if state.failures.len() > 50_000 {
            state
                .failures
                .retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
        }
        let entry = state
            .failures
            .entry((user.to_owned(), from))
            .or_insert(Failures {
                count: 0,
                last: now,
                not_before: None,
            });
        if now.duration_since(entry.last) >= FAILURE_MEMORY {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES).min(16);
            let wait = Duration::from_secs(1 << doublings).min(MAX_BACKOFF);
            entry.not_before = Some(now + wait);
        }
    }

    fn succeeded(&self, user: &str, from: Option<IpAddr>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.failures.remove(&(user.to_owned(), from));
        if let Some(addr) = from {
            let now = Instant::now();
            if state.known.len() > 100_000 {
                state
                    .known
                    .retain(|_, at| now.duration_since(*at) < KNOWN_FOR);
            }
            state.known.insert((user.to_owned(), addr), now);
        }
    }

    /// A PHC string of `password`, hashed on the pool.
    async fn hash(&self, password: &str) -> Result<String> {
        self.pool
            .hash(password)
            .await
            .map_err(|_| busy())?
            .map_err(ServiceError::invalid)
    }

    /// Whether `password` matches `phc`, checked on the pool (in the line of known users when
    /// `known`).
    async fn verify(&self, phc: &str, password: &str, known: bool) -> Result<bool> {
        self.pool
            .verify(phc, password, known)
            .await
            .map_err(|_| busy())
    }
}

fn busy() -> ServiceError {
    rate_limited("the hub server is busy checking passwords; try again in 1 s".into())
}

/// Token checks remembered for [`REVALIDATE`], by the token's `jti`.
///
/// Every write to users or tokens in this process goes through [`RevokingIdentityStore`], which
/// forgets every remembered check ([`AuthCache::forget_all`]): a logout, a deleted user, a
/// changed level or password takes effect at the next request, not a second later. A check that
/// read the repository before such a write and finishes after it is not remembered (the
/// generation it started at is gone). Writes by another process (the `sluice user` commands, a
/// second hub node) are seen within [`REVALIDATE`].
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: Mutex<AuthEntries>,
}

#[derive(Default)]
struct AuthEntries {
    /// Bumped by every identity write of this process.
    generation: u64,
    checks: HashMap<String, (Identity, Instant)>,
}

impl AuthCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, AuthEntries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered check of `jti`, and the generation a new check starts at.
    fn get(&self, jti: &str) -> (Option<Identity>, u64) {
        let entries = self.lock();
        let hit = entries
            .checks
            .get(jti)
            .filter(|(_, at)| at.elapsed() < REVALIDATE)
            .map(|(identity, _)| identity.clone());
        (hit, entries.generation)
    }

    /// Remembers a check that started at `generation`, unless an identity write came since.
    fn put(&self, jti: String, identity: Identity, generation: u64) {
        let mut entries = self.lock();
        if entries.generation != generation {
            return;
        }
        if entries.checks.len() > 10_000 {
            entries
                .checks
                .retain(|_, (_, at)| at.elapsed() < REVALIDATE);
        }
        entries.checks.insert(jti, (identity, Instant::now()));
    }

    /// Forgets every check (a user or token changed).
    pub(crate) fn forget_all(&self) {
        let mut entries = self.lock();
        entries.generation = entries.generation.wrapping_add(1);
        entries.checks.clear();
    }
}

/// The identity store as the service uses it: every write (users, tokens, API keys) makes the
/// token checks remembered in [`AuthCache`] be forgotten, after the write and also when it
/// fails (a failed write may still have changed something).
pub(crate) struct RevokingIdentityStore {
    pub(crate) store: std::sync::Arc<dyn sluice_repo::IdentityStore>,
    pub(crate) cache: std::sync::Arc<AuthCache>,
}

impl RevokingIdentityStore {
    fn forgetting<T>(&self, result: sluice_repo::Result<T>) -> sluice_repo::Result<T> {
        self.cache.forget_all();
        result
    }
}

#[async_trait::async_trait]
impl sluice_repo::IdentityStore for RevokingIdentityStore {
    async fn users(&self) -> sluice_repo::Result<Vec<UserRecord>> {
        self.store.users().await
    }

    async fn user(&self, name: &str) -> sluice_repo::Result<Option<UserRecord>> {
        self.store.user(name).await
    }

    async fn create_user(&self, user: &UserRecord) -> sluice_repo::Result<()> {
        self.forgetting(self.store.create_user(user).await)
    }

    async fn update_user(
        &self,
        name: &str,
        level: Option<AccessLevel>,
        password_hash: Option<&str>,
    ) -> sluice_repo::Result<()> {
        self.forgetting(self.store.update_user(name, level, password_hash).await)
    }

    async fn delete_user(&self, name: &str) -> sluice_repo::Result<()> {
        self.forgetting(self.store.delete_user(name).await)
    }

    async fn put_token(&self, token: &TokenRecord) -> sluice_repo::Result<()> {
        // A new token ends nothing: remembered checks stay true.
        self.store.put_token(token).await
    }

    async fn take_token(&self, hash: &str) -> sluice_repo::Result<Option<TokenRecord>> {
        self.forgetting(self.store.take_token(hash).await)
    }

    async fn token(&self, hash: &str) -> sluice_repo::Result<Option<TokenRecord>> {
        self.store.token(hash).await
    }

    async fn tokens(
        &self,
        kind: &str,
        user: Option<&str>,
    ) -> sluice_repo::Result<Vec<TokenRecord>> {
        self.store.tokens(kind, user).await
    }

    async fn delete_token(&self, hash: &str) -> sluice_repo::Result<()> {
        self.forgetting(self.store.delete_token(hash).await)
    }

    async fn create_api_key(&self, key: &sluice_repo::ApiKeyRecord) -> sluice_repo::Result<()> {
        self.store.create_api_key(key).await
    }

    async fn api_keys(&self) -> sluice_repo::Result<Vec<sluice_repo::ApiKeyRecord>> {
        self.store.api_keys().await
    }

    async fn api_key(&self, key: &str) -> sluice_repo::Result<Option<sluice_repo::ApiKeyRecord>> {
        self.store.api_key(key).await
    }

    async fn delete_api_key(&self, key: &str) -> sluice_repo::Result<()> {
        self.forgetting(self.store.delete_api_key(key).await)
    }
}

/// An Argon2id PHC string for `password` (CPU-heavy: call it on the blocking pool).
pub fn hash_password(password: &str) -> Result<String> {
    let salt: [u8; 16] = rand::random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::invalid(format!("cannot hash the password: {e}")))
}

/// What [`HubService::ensure_admin`] did. Its `Debug` leaves out the generated password.
#[derive(Default)]
pub struct AdminSetup {
    /// The random password of the admin it just created without a given one, to show once.
    pub generated: Option<String>,
    /// Why a given password was not used, when the hub had users already and it is not the
    /// password of user admin.
    pub unused_password: Option<UnusedPassword>,
}

impl std::fmt::Debug for AdminSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSetup")
            .field("generated", &self.generated.as_ref().map(|_| "…"))
            .field("unused_password", &self.unused_password)
            .finish()
    }
}

/// Why the configured admin password was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusedPassword {
    /// User admin exists with another password.
    NotAdmins,
    /// The hub has users, none of them named admin.
    NoAdmin,
}

/// The library's own check (the tests hold the password threads' check to it).
#[cfg(test)]
fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A valid hash of no one's password: checked against when the user does not exist, so that an
/// unknown name costs as much as a wrong password.
static DECOY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password(&new_token("decoy")).unwrap_or_default());

/// Hex SHA-256 of a token: what the repository keeps.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Lowercase hex of the SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token with a readable prefix.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", B64.encode(rand::random::<[u8; 32]>()))
}

/// The session a refresh token belongs to (`rt_<session>.<secret>`).
fn session_of_refresh(token: &str) -> Option<&str> {
    token
        .strip_prefix("rt_")?
        .split_once('.')
        .map(|(sid, _)| sid)
        .filter(|sid| !sid.is_empty())
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

/// A password change: the new password and, unless a SysAdmin resets someone else's, the
/// current one.
#[derive(Debug, Clone, Copy)]
pub struct PasswordChange<'a> {
    /// The new password.
    pub new: &'a str,
    /// The current password, as the user typed it.
    pub current: Option<&'a str>,
}

impl HubService {
    async fn signing_key(&self) -> Result<&[u8]> {
        let key = self
            .inner
            .jwt_key
            .get_or_try_init(|| async {
                let fresh = B64.encode(rand::random::<[u8; 32]>());
                let stored = self
                    .settings_store()
                    .setting_or_insert("jwt_signing_key", &fresh)
                    .await?;
                Ok::<_, ServiceError>(stored.into_bytes())
            })
            .await?;
        Ok(key.as_slice())
    }

    /// Hashes a password on the password threads.
    async fn hash_on_pool(&self, password: &str) -> Result<String> {
        self.inner.limiter.hash(password).await
    }

    /// Creates user `admin` (SysAdmin) when the repository has no user: with `password` when
    /// given, else a random one, which is returned so it can be shown once. When there are users
    /// already, a given `password` changes nothing; the answer says whether it is not admin's.
    pub async fn ensure_admin(&self, password: Option<&str>) -> Result<AdminSetup> {
        let password = password.filter(|p| !p.is_empty());
        if !self.identity_store().users().await?.is_empty() {
            let unused_password = match password {
                None => None,
                Some(p) => match self.identity_store().user("admin").await? {
                    // Only a warning depends on it: a check that cannot run says nothing.
                    Some(admin) => {
                        match self
                            .inner
                            .limiter
                            .verify(&admin.password_hash, p, true)
                            .await
                        {
                            Ok(true) => None,
                            Ok(false) => Some(UnusedPassword::NotAdmins),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not compare SLUICE_ADMIN_PASSWORD with the admin's password");
                                None
                            }
                        }
                    }
                    None => Some(UnusedPassword::NoAdmin),
                },
            };
            return Ok(AdminSetup {
                generated: None,
                unused_password,
            });
        }
        let (password, generated) = match password {
            Some(p) => (p.to_owned(), false),
            None => (new_token(""), true),
        };
        check_password(&password)?;
        let record = UserRecord {
            name: "admin".into(),
            level: AccessLevel::SysAdmin,
            password_hash: self.hash_on_pool(&password).await?,
            created: Utc::now(),
            creator: "sluice".into(),
        };
        match self.identity_store().create_user(&record).await {
            Ok(()) => Ok(AdminSetup {
                generated: generated.then_some(password),
                unused_password: None,
            }),
            // Another hub process created it first.
            Err(e) if e.kind() == RepoErrorKind::Conflict => Ok(AdminSetup::default()),
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
            password_hash: self.hash_on_pool(password).await?,
            created: Utc::now(),
            creator: self.user().to_owned(),
        };
        Ok(self.identity_store().create_user(&record).await?)
    }

    /// Adds a user without a password they know (a random one): they cannot log in until a
    /// SysAdmin sets one (`PUT /users/{user}/password`).
    pub async fn create_user_without_password(&self, name: &str, level: AccessLevel) -> Result<()> {
        self.create_user(name, level, &new_token("")).await
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        Ok(self.identity_store().users().await?)
    }

    /// Changes a user's level and/or password. A password change needs the current password
    /// unless `reset` (a SysAdmin setting someone else's, or the operator's CLI); it ends every
    /// session of the user, and so does a level change.
    pub async fn update_user(
        &self,
        name: &str,
        level: Option<AccessLevel>,
        password: Option<PasswordChange<'_>>,
        reset: bool,
    ) -> Result<()> {
        let hash = match password {
            Some(change) => {
                check_password(change.new)?;
                if !reset {
                    self.check_current_password(name, change.current).await?;
                }
                Some(self.hash_on_pool(change.new).await?)
            }
            None => None,
        };
        self.identity_store()
            .update_user(name, level, hash.as_deref())
            .await?;
        if hash.is_some() || level.is_some() {
            self.end_sessions(name).await?;
        }
        Ok(())
    }

    async fn check_current_password(&self, name: &str, current: Option<&str>) -> Result<()> {
        let Some(current) = current.filter(|c| !c.is_empty()) else {
            return Err(forbidden(
                "changing your password needs your current password (current_password)",
            ));
        };
        let record = self
            .identity_store()
            .user(name)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("user {name} does not exist")))?;
        if self
            .inner
            .limiter
            .verify(&record.password_hash, current, true)
            .await?
        {
            Ok(())
        } else {
            Err(forbidden("the current password is wrong"))
        }
    }

    /// Ends every session and refresh token of `name`: their access tokens stop working at once.
    async fn end_sessions(&self, name: &str) -> Result<()> {
        for kind in [SESSION, "refresh"] {
            for t in self.identity_store().tokens(kind, Some(name)).await? {
                self.identity_store().delete_token(&t.hash).await?;
            }
        }
        Ok(())
    }

    /// Deletes a user and their tokens.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        Ok(self.identity_store().delete_user(name).await?)
    }

    /// Issues tokens for `user` in session `sid` (a new session when `None`).
    async fn issue(
        &self,
        user: &UserRecord,
        sid: Option<String>,
        want_refresh: bool,
    ) -> Result<Tokens> {
        let now = Utc::now();
        let sid = sid.unwrap_or_else(|| new_token(""));
        // The session lives as long as the longest token that names it.
        let lifetime = if want_refresh {
            REFRESH_TTL
        } else {
            ACCESS_TTL
        };
        let session_hash = token_hash(&sid);
        let _ = self.identity_store().delete_token(&session_hash).await;
        self.identity_store()
            .put_token(&TokenRecord {
                hash: session_hash,
                user: user.name.clone(),
                kind: SESSION.into(),
                created: now,
                expires: now + chrono::Duration::from_std(lifetime).unwrap_or_default(),
            })
            .await?;
        let claims = Claims {
            sub: user.name.clone(),
            lvl: user.level.as_str().to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp() + ACCESS_TTL.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: Some(sid.clone()),
            setup: false,
        };
        let key = EncodingKey::from_secret(self.signing_key().await?);
        let access_token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|e| ServiceError::invalid(format!("cannot sign a token: {e}")))?;
        let refresh_token = if want_refresh {
            let token = format!("rt_{sid}.{}", B64.encode(rand::random::<[u8; 32]>()));
            self.identity_store()
                .put_token(&TokenRecord {
                    hash: token_hash(&token),
                    user: user.name.clone(),
                    kind: "refresh".into(),
                    created: now,
                    expires: now + chrono::Duration::from_std(REFRESH_TTL).unwrap_or_default(),
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

    /// Logs in with a password, from client address `from` when known. The attempt is counted
    /// before the password is checked (see the module documentation).
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        want_refresh: bool,
        from: Option<IpAddr>,
    ) -> Result<Tokens> {
        let limiter = &self.inner.limiter;
        let known = limiter.admit(user, from)?;
        let record = self.identity_store().user(user).await?;
        let hash = record
            .as_ref()
            .map_or(DECOY_HASH.as_str(), |r| r.password_hash.as_str());
        let ok = limiter.verify(hash, password, known).await? && record.is_some();
        match record {
            Some(r) if ok && r.level != AccessLevel::None => {
                limiter.succeeded(user, from);
                self.issue(&r, None, want_refresh).await
            }
            _ => {
                limiter.failed(user, from);
                Err(forbidden("invalid user name or password"))
            }
        }
    }

    /// Trades a refresh token for new tokens in the same session; the old refresh token stops
    /// working.
    pub async fn refresh_login(&self, refresh_token: &str, want_refresh: bool) -> Result<Tokens> {
        let stored = self
            .identity_store()
            .take_token(&token_hash(refresh_token))
            .await?
            .filter(|t| t.kind == "refresh" && t.expires > Utc::now())
            .ok_or_else(|| forbidden("the refresh token is invalid or expired"))?;
        let user = self
            .identity_store()
            .user(&stored.user)
            .await?
            .filter(|u| u.level != AccessLevel::None)
            .ok_or_else(|| forbidden("the refresh token's user no longer exists"))?;
        let sid = match session_of_refresh(refresh_token) {
            Some(sid) => {
                let open = self
                    .identity_store()
                    .token(&token_hash(sid))
                    .await?
                    .is_some_and(|t| t.kind == SESSION && t.user == user.name);
                if !open {
                    return Err(forbidden("the session has ended; log in again"));
                }
                Some(sid.to_owned())
            }
            None => None,
        };
        self.issue(&user, sid, want_refresh).await
    }

    /// Ends a refresh token and its session (logout); never fails for an unknown token.
    pub async fn revoke(&self, refresh_token: &str) -> Result<()> {
        if let Some(stored) = self
            .identity_store()
            .take_token(&token_hash(refresh_token))
            .await?
            && stored.kind == "refresh"
            && let Some(sid) = session_of_refresh(refresh_token)
        {
            self.end_session(sid, &stored.user).await?;
        }
        Ok(())
    }

    /// Ends the session of an access token (logout of a client without a refresh token); never
    /// fails for an invalid token.
    pub async fn revoke_access(&self, access_token: &str) -> Result<()> {
        if let Ok(claims) = self.decode(access_token).await
            && let Some(sid) = &claims.sid
        {
            self.end_session(sid, &claims.sub).await?;
        }
        Ok(())
    }

    async fn end_session(&self, sid: &str, user: &str) -> Result<()> {
        let hash = token_hash(sid);
        if self
            .identity_store()
            .token(&hash)
            .await?
            .is_some_and(|t| t.kind == SESSION && t.user == user)
        {
            self.identity_store().delete_token(&hash).await?;
        }
        Ok(())
    }

    async fn decode(&self, access_token: &str) -> Result<Claims> {
        let key = DecodingKey::from_secret(self.signing_key().await?);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(access_token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    unauthenticated("the access token has expired; log in again or refresh it")
                }
                _ => unauthenticated("the access token is invalid"),
            })
    }

    /// Checks an access token against the user's current state: the user exists and may log
    /// in, the token's session is open; the level is the user's level now. Remembered for at most
    /// [`REVALIDATE`].
    pub async fn authenticate(&self, access_token: &str) -> Result<Identity> {
        let claims = self.decode(access_token).await?;
        if claims.setup {
            return Err(unauthenticated(
                "a setup-mode token is accepted only by the user operations (/api/latest/users…); \
                 log in with POST /auth/v1/password",
            ));
        }
        let (remembered, generation) = self.inner.auth_cache.get(&claims.jti);
        if let Some(identity) = remembered {
            return Ok(identity);
        }
        let user = self
            .identity_store()
            .user(&claims.sub)
            .await?
            .filter(|u| u.level != AccessLevel::None)
            .ok_or_else(|| {
                unauthenticated("the access token's user no longer exists or may not log in")
            })?;
        let sid = claims
            .sid
            .as_deref()
            .ok_or_else(|| unauthenticated("the access token is invalid; log in again"))?;
        let open = self
            .identity_store()
            .token(&token_hash(sid))
            .await?
            .is_some_and(|t| t.kind == SESSION && t.user == user.name && t.expires > Utc::now());
        if !open {
            return Err(unauthenticated(
                "the session has ended (logged out, password changed or expired); log in again",
            ));
        }
        let identity = Identity {
            user: user.name,
            level: user.level,
            expires: claims.exp,
        };
        self.inner
            .auth_cache
            .put(claims.jti, identity.clone(), generation);
        Ok(identity)
    }
}

impl HubService {
    /// Whether the hub server is in setup mode: no user is SysAdmin yet.
    pub async fn in_setup_mode(&self) -> Result<bool> {
        Ok(!self
            .identity_store()
            .users()
            .await?
            .iter()
            .any(|u| u.level == AccessLevel::SysAdmin))
    }

    /// A setup-mode access token (HVR's `POST /auth/v1/setup`), for a hub server that has no user
    /// yet: it acts as SysAdmin on the user operations only (the API restricts it), and stops
    /// working when it expires or once a user is SysAdmin. Refused once any user exists.
    pub async fn setup_login(&self) -> Result<Tokens> {
        if !self.identity_store().users().await?.is_empty() {
            return Err(forbidden(
                "the hub server is set up (it has users): log in with POST /auth/v1/password",
            ));
        }
        let now = Utc::now();
        let claims = Claims {
            sub: SETUP_USER.to_owned(),
            lvl: AccessLevel::SysAdmin.as_str().to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp() + ACCESS_TTL.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: None,
            setup: true,
        };
        let key = EncodingKey::from_secret(self.signing_key().await?);
        let access_token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|e| ServiceError::invalid(format!("cannot sign a token: {e}")))?;
        Ok(Tokens {
            token_type: "bearer",
            access_token,
            expires_in: ACCESS_TTL.as_secs(),
            refresh_token: None,
        })
    }

    /// Checks a token that may be a setup-mode token: a setup token is valid while the hub
    /// server is in setup mode (then the identity is [`SETUP_USER`], SysAdmin); any other
    /// token is checked as [`HubService::authenticate`] does.
    pub async fn authenticate_in_setup(&self, access_token: &str) -> Result<Identity> {
        let claims = self.decode(access_token).await?;
        if !claims.setup {
            return self.authenticate(access_token).await;
        }
        if claims.sub != SETUP_USER || !self.in_setup_mode().await? {
            return Err(unauthenticated(
                "setup mode has ended (a user is SysAdmin): log in with POST /auth/v1/password",
            ));
        }
        Ok(Identity {
            user: SETUP_USER.to_owned(),
            level: AccessLevel::SysAdmin,
            expires: claims.exp,
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
        assert!(!verify_password(&DECOY_HASH, "correct horse"));
    }

    fn quiet() -> LoginLimits {
        LoginLimits {
            global: LoginRate {
                burst: 1000.0,
                per_second: 1000.0,
            },
            per_address: LoginRate {
                burst: 1000.0,
                per_second: 1000.0,
            },
            hash_workers: 1,
        }
    }

    #[test]
    fn failures_back_off_per_user_and_address_without_locking_others_out() {
        let limiter = LoginLimiter::new(quiet());
        let attacker = Some(IpAddr::from([10, 0, 0, 66]));
        let owner = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..FREE_FAILURES {
            limiter.admit("admin", attacker).unwrap();
            limiter.failed("admin", attacker);
        }
        assert_eq!(
            limiter.admit("admin", attacker).unwrap_err().kind(),
            ServiceErrorKind::RateLimited
        );
        // The real admin, elsewhere, is not locked out.
        limiter.admit("admin", owner).unwrap();
        limiter.admit("alice", attacker).unwrap();
    }

    #[test]
    fn a_user_is_never_kept_out_of_an_address_they_logged_in_from() {
        let limiter = LoginLimiter::new(LoginLimits {
            global: LoginRate {
                burst: 1.0,
                per_second: 0.001,
            },
            ..quiet()
        });
        let home = Some(IpAddr::from([10, 0, 0, 1]));
        limiter.admit("admin", home).unwrap();
        limiter.succeeded("admin", home);
        // A flood from elsewhere spends the global budget …
        assert!(
            limiter
                .admit("x", Some(IpAddr::from([10, 9, 9, 9])))
                .is_err()
        );
        // … but the user logs in from where they did before.
        limiter.admit("admin", home).unwrap();
        assert!(
            limiter
                .admit("admin", Some(IpAddr::from([10, 0, 0, 2])))
                .is_err()
        );
    }

    #[test]
    fn attempts_count_before_they_are_checked() {
        let limiter = LoginLimiter::new(LoginLimits {
            per_address: LoginRate {
                burst: 3.0,
                per_second: 0.001,
            },
            ..quiet()
        });
        let from = Some(IpAddr::from([10, 0, 0, 7]));
        // Random names, no failure recorded yet: the address budget still runs out.
        for i in 0..3 {
            limiter.admit(&format!("u{i}"), from).unwrap();
        }
        assert_eq!(
            limiter.admit("u9", from).unwrap_err().kind(),
            ServiceErrorKind::RateLimited
        );
        limiter
            .admit("u9", Some(IpAddr::from([10, 0, 0, 8])))
            .unwrap();
        let global = LoginLimiter::new(LoginLimits {
            global: LoginRate {
                burst: 2.0,
                per_second: 0.001,
            },
            ..quiet()
        });
        global.admit("a", None).unwrap();
        global.admit("b", Some(IpAddr::from([1, 1, 1, 1]))).unwrap();
        assert!(global.admit("c", Some(IpAddr::from([2, 2, 2, 2]))).is_err());
    }

    #[test]
    fn refresh_tokens_name_their_session() {
        assert_eq!(session_of_refresh("rt_abc.def"), Some("abc"));
        assert_eq!(session_of_refresh("rt_abcdef"), None);
        assert_eq!(session_of_refresh("rt_.def"), None);
        assert_eq!(session_of_refresh("xx_abc.def"), None);
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user_name("alice.b@x-y_z").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a'; DROP TABLE users; --").is_err());
        assert!(check_user_name(&"a".repeat(65)).is_err());
    }
}
