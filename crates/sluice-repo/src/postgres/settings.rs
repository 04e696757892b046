//! PostgreSQL: hub-wide settings and the `/v1` connector records ([`crate::SettingsStore`]).

use super::*;
use crate::SettingsStore;

#[async_trait]
impl SettingsStore for PostgresRepository {
    async fn setting_or_insert(&self, setting: &str, value: &str) -> Result<String> {
        let client = self.client().await?;
        // A racing insert waits for the first to commit, then does nothing; the read that follows
        // (a fresh snapshot) sees the committed value.
        client
            .execute(
                "INSERT INTO setting (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&setting, &value],
            )
            .await
            .map_err(|e| storage(e, "store a setting"))?;
        let row = client
            .query_one("SELECT value FROM setting WHERE name = $1", &[&setting])
            .await
            .map_err(|e| storage(e, "read a setting"))?;
        col(&row, 0)
    }

    async fn connector_or_insert(&self, record: &ConnectorRecord) -> Result<ConnectorRecord> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        lock_hub(&tx, &record.hub, "FOR KEY SHARE").await?;
        write_connector(&tx, record, false).await?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connector WHERE hub_name = $1 AND chn_name = $2"
                ),
                &[&record.hub.as_str(), &record.channel.as_str()],
            )
            .await
            .map_err(|e| storage(e, "read a connector"))?;
        let stored = connector_record(&row)?;
        commit(tx, "commit a connector").await?;
        Ok(stored)
    }

    async fn connector_records(&self, hub: Option<&HubName>) -> Result<Vec<ConnectorRecord>> {
        let client = self.client().await?;
        let hub = hub.map(|h| h.as_str());
        client
            .query(
                &format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connector WHERE $1::text IS NULL OR hub_name = $1 \
                     ORDER BY hub_name, chn_name"
                ),
                &[&hub],
            )
            .await
            .map_err(|e| storage(e, "list connectors"))?
            .iter()
            .map(connector_record)
            .collect()
    }

    async fn put_connector(&self, record: &ConnectorRecord) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        lock_hub(&tx, &record.hub, "FOR KEY SHARE").await?;
        write_connector(&tx, record, true).await?;
        commit(tx, "commit a connector").await
    }
}
