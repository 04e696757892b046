//! SQLite: hub-wide settings and the `/v1` connector records ([`crate::SettingsStore`]).

use super::*;
use crate::SettingsStore;

#[async_trait]
impl SettingsStore for SqliteRepository {
    async fn setting_or_insert(&self, setting: &str, value: &str) -> Result<String> {
        let (setting, value) = (setting.to_owned(), value.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            tx.execute(
                "INSERT INTO setting (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![setting, value],
            )
            .map_err(|e| storage(e, "store a setting"))?;
            let stored: String = tx
                .query_row(
                    "SELECT value FROM setting WHERE name = ?1",
                    [&setting],
                    |r| r.get(0),
                )
                .map_err(|e| storage(e, "read a setting"))?;
            tx.commit().map_err(|e| storage(e, "commit a setting"))?;
            Ok(stored)
        })
        .await
    }

    async fn connector_or_insert(&self, record: &ConnectorRecord) -> Result<ConnectorRecord> {
        let record = record.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            if !hub_exists(&tx, &record.hub)? {
                return Err(hub_missing(&record.hub));
            }
            write_connector(&tx, &record, false).map_err(|e| storage(e, "store a connector"))?;
            let row = tx
                .query_row(
                    &format!("SELECT {CONNECTOR_COLUMNS} FROM connector WHERE hub_name = ?1 AND chn_name = ?2"),
                    params![record.hub.as_str(), record.channel.as_str()],
                    connector_from_row,
                )
                .map_err(|e| storage(e, "read a connector"))?;
            tx.commit().map_err(|e| storage(e, "commit a connector"))?;
            connector_record(row)
        })
        .await
    }

    async fn connector_records(&self, hub: Option<&HubName>) -> Result<Vec<ConnectorRecord>> {
        let hub = hub.map(|h| h.as_str().to_owned());
        self.with(move |conn| {
            let rows: Vec<_> = conn
                .prepare(&format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connector WHERE ?1 IS NULL OR hub_name = ?1 ORDER BY hub_name, chn_name"
                ))
                .and_then(|mut st| st.query_map([&hub], connector_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| storage(e, "list connectors"))?;
            rows.into_iter().map(connector_record).collect()
        })
        .await
    }

    async fn put_connector(&self, record: &ConnectorRecord) -> Result<()> {
        let record = record.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            if !hub_exists(&tx, &record.hub)? {
                return Err(hub_missing(&record.hub));
            }
            write_connector(&tx, &record, true).map_err(|e| storage(e, "store a connector"))?;
            tx.commit().map_err(|e| storage(e, "commit a connector"))
        })
        .await
    }
}
