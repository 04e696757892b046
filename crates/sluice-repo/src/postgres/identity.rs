//! PostgreSQL: users, tokens (refresh tokens, sessions) and API keys ([`crate::IdentityStore`]).

use super::*;
use crate::IdentityStore;

#[async_trait]
impl IdentityStore for PostgresRepository {
    async fn users(&self) -> Result<Vec<UserRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {USER_COLUMNS} FROM app_user ORDER BY user_name"),
                &[],
            )
            .await
            .map_err(|e| storage(e, "list users"))?
            .iter()
            .map(user_record)
            .collect()
    }

    async fn user(&self, user: &str) -> Result<Option<UserRecord>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM app_user WHERE user_name = $1"),
                &[&user],
            )
            .await
            .map_err(|e| storage(e, "read a user"))?
            .as_ref()
            .map(user_record)
            .transpose()
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO app_user (user_name, access_level, password_hash, created, creator) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_name) DO NOTHING",
                &[
                    &user.name,
                    &user.level.as_str(),
                    &user.password_hash,
                    &user.created,
                    &user.creator,
                ],
            )
            .await
            .map_err(|e| storage(e, "create a user"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("user {} already exists", user.name),
            ));
        }
        Ok(())
    }

    async fn update_user(
        &self,
        user: &str,
        level: Option<AccessLevel>,
        password_hash: Option<&str>,
    ) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE app_user SET access_level = coalesce($2::text, access_level), \
                 password_hash = coalesce($3::text, password_hash) WHERE user_name = $1",
                &[&user, &level.map(|l| l.as_str()), &password_hash],
            )
            .await
            .map_err(|e| storage(e, "change a user"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("user {user} does not exist"),
            ));
        }
        Ok(())
    }

    async fn delete_user(&self, user: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        // The user's props go with the user: a new user of the same name starts bare.
        tx.execute(
            "DELETE FROM prop_bag WHERE bag_kind IN ('user', 'hub_user') AND owner = $1",
            &[&user],
        )
        .await
        .map_err(|e| storage(e, "delete a user"))?;
        let n = tx
            .execute("DELETE FROM app_user WHERE user_name = $1", &[&user])
            .await
            .map_err(|e| storage(e, "delete a user"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("user {user} does not exist"),
            ));
        }
        commit(tx, "commit a user deletion").await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO token (token_hash, user_name, kind, created, expires) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token.hash,
                    &token.user,
                    &token.kind,
                    &token.created,
                    &token.expires,
                ],
            )
            .await
            .map_err(|e| storage(e, "store a token"))?;
        Ok(())
    }

    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        // One statement: of racing callers, exactly one deletes the row and gets it back.
        client
            .query_opt(
                &format!("DELETE FROM token WHERE token_hash = $1 RETURNING {TOKEN_COLUMNS}"),
                &[&hash],
            )
            .await
            .map_err(|e| storage(e, "take a token"))?
            .as_ref()
            .map(token_record)
            .transpose()
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM token WHERE token_hash = $1"),
                &[&hash],
            )
            .await
            .map_err(|e| storage(e, "read a token"))?
            .as_ref()
            .map(token_record)
            .transpose()
    }

    async fn tokens(&self, kind: &str, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM token WHERE kind = $1 AND ($2::text IS NULL OR user_name = $2) \
                     ORDER BY created"
                ),
                &[&kind, &user],
            )
            .await
            .map_err(|e| storage(e, "list tokens"))?
            .iter()
            .map(token_record)
            .collect()
    }

    async fn delete_token(&self, hash: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM token WHERE token_hash = $1", &[&hash])
            .await
            .map_err(|e| storage(e, "delete a token"))?;
        Ok(())
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                &format!(
                    "INSERT INTO api_key ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (key_id) DO NOTHING"
                ),
                &[
                    &key.key,
                    &key.secret_hash,
                    &key.level.as_str(),
                    &key.created,
                    &key.creator,
                    &key.description,
                ],
            )
            .await
            .map_err(|e| storage(e, "store an API key"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("API key {} already exists", key.key),
            ));
        }
        Ok(())
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_key ORDER BY created, key_id"),
                &[],
            )
            .await
            .map_err(|e| storage(e, "list API keys"))?
            .iter()
            .map(api_key_record)
            .collect()
    }

    async fn api_key(&self, key: &str) -> Result<Option<ApiKeyRecord>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_key WHERE key_id = $1"),
                &[&key],
            )
            .await
            .map_err(|e| storage(e, "read an API key"))?
            .as_ref()
            .map(api_key_record)
            .transpose()
    }

    async fn delete_api_key(&self, key: &str) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM api_key WHERE key_id = $1", &[&key])
            .await
            .map_err(|e| storage(e, "delete an API key"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("API key {key} does not exist"),
            ));
        }
        Ok(())
    }
}
