//! SQLite: users, tokens (refresh tokens, sessions) and API keys ([`crate::IdentityStore`]).

use super::*;
use crate::IdentityStore;

#[async_trait]
impl IdentityStore for SqliteRepository {
    async fn users(&self) -> Result<Vec<UserRecord>> {
        self.with(|conn| {
            let rows: Vec<_> = conn
                .prepare("SELECT user_name, access_level, password_hash, created, creator FROM app_user ORDER BY user_name")
                .and_then(|mut st| st.query_map([], user_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| storage(e, "list users"))?;
            rows.into_iter().map(user_record).collect()
        })
        .await
    }

    async fn user(&self, user: &str) -> Result<Option<UserRecord>> {
        let user = user.to_owned();
        self.with(move |conn| {
            conn.prepare_cached("SELECT user_name, access_level, password_hash, created, creator FROM app_user WHERE user_name = ?1")
                .and_then(|mut st| st.query_row([&user], user_from_row).optional())
                .map_err(|e| storage(e, "read a user"))?
                .map(user_record)
                .transpose()
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let user = user.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let exists: bool = tx
                .query_row("SELECT count(*) > 0 FROM app_user WHERE user_name = ?1", [&user.name], |r| r.get(0))
                .map_err(|e| storage(e, "read a user"))?;
            if exists {
                return Err(RepoError::new(RepoErrorKind::Conflict, format!("user {} already exists", user.name)));
            }
            tx.execute(
                "INSERT INTO app_user (user_name, access_level, password_hash, created, creator) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user.name, user.level.as_str(), user.password_hash, ts(user.created), user.creator],
            )
            .map_err(|e| storage(e, "create a user"))?;
            tx.commit().map_err(|e| storage(e, "commit a user"))
        })
        .await
    }

    async fn update_user(
        &self,
        user: &str,
        level: Option<AccessLevel>,
        password_hash: Option<&str>,
    ) -> Result<()> {
        let (user, hash) = (user.to_owned(), password_hash.map(str::to_owned));
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE app_user SET access_level = coalesce(?2, access_level), password_hash = coalesce(?3, password_hash) WHERE user_name = ?1",
                    params![user, level.map(|l| l.as_str()), hash],
                )
                .map_err(|e| storage(e, "change a user"))?;
            if n == 0 {
                return Err(RepoError::new(RepoErrorKind::NotFound, format!("user {user} does not exist")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, user: &str) -> Result<()> {
        let user = user.to_owned();
        self.with(move |conn| {
            let tx = begin(conn)?;
            // The user's props go with the user: a new user of the same name starts bare.
            tx.execute(
                "DELETE FROM prop_bag WHERE bag_kind IN ('user', 'hub_user') AND owner = ?1",
                [&user],
            )
            .map_err(|e| storage(e, "delete a user"))?;
            let n = tx
                .execute("DELETE FROM app_user WHERE user_name = ?1", [&user])
                .map_err(|e| storage(e, "delete a user"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::NotFound,
                    format!("user {user} does not exist"),
                ));
            }
            tx.commit()
                .map_err(|e| storage(e, "commit a user deletion"))
        })
        .await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let t = token.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO token (token_hash, user_name, kind, created, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.hash, t.user, t.kind, ts(t.created), ts(t.expires)],
            )
            .map_err(|e| storage(e, "store a token"))?;
            Ok(())
        })
        .await
    }

    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_owned();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let row = tx
                .query_row(
                    "SELECT token_hash, user_name, kind, created, expires FROM token WHERE token_hash = ?1",
                    [&hash],
                    user_from_row,
                )
                .optional()
                .map_err(|e| storage(e, "read a token"))?;
            tx.execute("DELETE FROM token WHERE token_hash = ?1", [&hash])
                .map_err(|e| storage(e, "delete a token"))?;
            tx.commit().map_err(|e| storage(e, "commit a token"))?;
            row.map(token_record).transpose()
        })
        .await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_owned();
        self.with(move |conn| {
            conn.prepare_cached("SELECT token_hash, user_name, kind, created, expires FROM token WHERE token_hash = ?1")
                .and_then(|mut st| st.query_row([&hash], user_from_row).optional())
                .map_err(|e| storage(e, "read a token"))?
                .map(token_record)
                .transpose()
        })
        .await
    }

    async fn tokens(&self, kind: &str, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let (kind, user) = (kind.to_owned(), user.map(str::to_owned));
        self.with(move |conn| {
            let rows: Vec<_> = conn
                .prepare("SELECT token_hash, user_name, kind, created, expires FROM token WHERE kind = ?1 AND (?2 IS NULL OR user_name = ?2) ORDER BY created")
                .and_then(|mut st| st.query_map(params![kind, user], user_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| storage(e, "list tokens"))?;
            rows.into_iter().map(token_record).collect()
        })
        .await
    }

    async fn delete_token(&self, hash: &str) -> Result<()> {
        let hash = hash.to_owned();
        self.with(move |conn| {
            conn.execute("DELETE FROM token WHERE token_hash = ?1", [&hash])
                .map_err(|e| storage(e, "delete a token"))?;
            Ok(())
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let k = key.clone();
        self.with(move |conn| {
            let n = conn
                .execute(
                    &format!("INSERT INTO api_key ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key_id) DO NOTHING"),
                    params![k.key, k.secret_hash, k.level.as_str(), ts(k.created), k.creator, k.description],
                )
                .map_err(|e| storage(e, "store an API key"))?;
            if n == 0 {
                return Err(RepoError::new(RepoErrorKind::Conflict, format!("API key {} already exists", k.key)));
            }
            Ok(())
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.with(|conn| {
            let rows: Vec<_> = conn
                .prepare(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_key ORDER BY created, key_id"
                ))
                .and_then(|mut st| {
                    st.query_map([], api_key_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| storage(e, "list API keys"))?;
            rows.into_iter().map(api_key_record).collect()
        })
        .await
    }

    async fn api_key(&self, key: &str) -> Result<Option<ApiKeyRecord>> {
        let key = key.to_owned();
        self.with(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_key WHERE key_id = ?1"
            ))
            .and_then(|mut st| st.query_row([&key], api_key_from_row).optional())
            .map_err(|e| storage(e, "read an API key"))?
            .map(api_key_record)
            .transpose()
        })
        .await
    }

    async fn delete_api_key(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM api_key WHERE key_id = ?1", [&key])
                .map_err(|e| storage(e, "delete an API key"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::NotFound,
                    format!("API key {key} does not exist"),
                ));
            }
            Ok(())
        })
        .await
    }
}
