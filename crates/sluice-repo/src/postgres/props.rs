//! PostgreSQL: property bags ([`crate::PropStore`]).

use super::*;
use crate::{PropBag, PropBagKind, PropStore, PropWrite};

type Props = BTreeMap<String, serde_json::Value>;

async fn read_bag(
    client: &impl GenericClient,
    key: &(&str, String, String),
) -> Result<Option<Props>> {
    let rows = client
        .query(
            "SELECT prop_name, prop_value FROM prop_bag \
             WHERE bag_kind = $1 AND hub_name = $2 AND owner = $3 ORDER BY prop_name",
            &[&key.0, &key.1, &key.2],
        )
        .await
        .map_err(|e| storage(e, "read props"))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut props = Props::new();
    for row in &rows {
        let name: String = col(row, 0)?;
        if name.is_empty() {
            continue;
        }
        let value: String = col(row, 1)?;
        props.insert(name, crate::props_value(&value)?);
    }
    Ok(Some(props))
}

#[async_trait]
impl PropStore for PostgresRepository {
    async fn props(&self, bag: &PropBag) -> Result<Option<Props>> {
        let client = self.client().await?;
        read_bag(&**client, &bag.key()).await
    }

    async fn bags(
        &self,
        kind: PropBagKind,
        hub: Option<&HubName>,
    ) -> Result<Vec<(PropBag, Props)>> {
        let client = self.client().await?;
        let hub = hub.map(|h| h.as_str());
        let rows = client
            .query(
                "SELECT hub_name, owner, prop_name, prop_value FROM prop_bag \
                 WHERE bag_kind = $1 AND ($2::text IS NULL OR hub_name = $2) \
                 ORDER BY hub_name, owner, prop_name",
                &[&kind.as_str(), &hub],
            )
            .await
            .map_err(|e| storage(e, "list props"))?;
        let rows = rows
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?)))
            .collect::<Result<Vec<(String, String, String, String)>>>()?;
        crate::group_bags(kind, rows)
    }

    async fn write_props(
        &self,
        bag: &PropBag,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        how: PropWrite,
    ) -> Result<Props> {
        let key = bag.key();
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        // Writers of one bag queue on its marker row, so Create answers Conflict to all but one.
        tx.execute(
            "INSERT INTO prop_bag (bag_kind, hub_name, owner, prop_name, prop_value) \
             VALUES ($1, $2, $3, '', 'new') ON CONFLICT DO NOTHING",
            &[&key.0, &key.1, &key.2],
        )
        .await
        .map_err(|e| storage(e, "write props"))?;
        let marker: String = col(
            &tx.query_one(
                "SELECT prop_value FROM prop_bag WHERE bag_kind = $1 AND hub_name = $2 \
                 AND owner = $3 AND prop_name = '' FOR UPDATE",
                &[&key.0, &key.1, &key.2],
            )
            .await
            .map_err(|e| storage(e, "write props"))?,
            0,
        )?;
        crate::check_write(how, marker != "new", &format!("{bag:?}"))?;
        if how == PropWrite::Replace {
            tx.execute(
                "DELETE FROM prop_bag WHERE bag_kind = $1 AND hub_name = $2 AND owner = $3 \
                 AND prop_name <> ''",
                &[&key.0, &key.1, &key.2],
            )
            .await
            .map_err(|e| storage(e, "write props"))?;
        }
        tx.execute(
            "UPDATE prop_bag SET prop_value = 'null' WHERE bag_kind = $1 AND hub_name = $2 \
             AND owner = $3 AND prop_name = ''",
            &[&key.0, &key.1, &key.2],
        )
        .await
        .map_err(|e| storage(e, "write props"))?;
        for (name, value) in changes {
            match value {
                Some(v) => {
                    tx.execute(
                        "INSERT INTO prop_bag (bag_kind, hub_name, owner, prop_name, prop_value) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (bag_kind, hub_name, owner, prop_name) \
                         DO UPDATE SET prop_value = excluded.prop_value",
                        &[&key.0, &key.1, &key.2, name, &v.to_string()],
                    )
                    .await
                }
                None => {
                    tx.execute(
                        "DELETE FROM prop_bag WHERE bag_kind = $1 AND hub_name = $2 \
                         AND owner = $3 AND prop_name = $4",
                        &[&key.0, &key.1, &key.2, name],
                    )
                    .await
                }
            }
            .map_err(|e| storage(e, "write props"))?;
        }
        let stored = read_bag(&*tx, &key).await?.unwrap_or_default();
        commit(tx, "commit props").await?;
        Ok(stored)
    }

    async fn delete_bag(&self, bag: &PropBag) -> Result<bool> {
        let key = bag.key();
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM prop_bag WHERE bag_kind = $1 AND hub_name = $2 AND owner = $3",
                &[&key.0, &key.1, &key.2],
            )
            .await
            .map_err(|e| storage(e, "delete props"))?;
        Ok(n > 0)
    }
}
