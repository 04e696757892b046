//! SQLite: property bags ([`crate::PropStore`]).

use super::*;
use crate::{PropBag, PropBagKind, PropStore, PropWrite};

type Props = BTreeMap<String, serde_json::Value>;

fn read_bag(conn: &Connection, key: &(&str, String, String)) -> Result<Option<Props>> {
    let rows: Vec<(String, String)> = conn
        .prepare(
            "SELECT prop_name, prop_value FROM prop_bag \
             WHERE bag_kind = ?1 AND hub_name = ?2 AND owner = ?3 ORDER BY prop_name",
        )
        .and_then(|mut st| {
            st.query_map(params![key.0, key.1, key.2], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| storage(e, "read props"))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut props = Props::new();
    for (name, value) in rows {
        if name.is_empty() {
            continue;
        }
        props.insert(name, crate::props_value(&value)?);
    }
    Ok(Some(props))
}

#[async_trait]
impl PropStore for SqliteRepository {
    async fn props(&self, bag: &PropBag) -> Result<Option<Props>> {
        let key = bag.key();
        self.with(move |conn| read_bag(conn, &key)).await
    }

    async fn bags(
        &self,
        kind: PropBagKind,
        hub: Option<&HubName>,
    ) -> Result<Vec<(PropBag, Props)>> {
        let hub = hub.map(|h| h.as_str().to_owned());
        self.with(move |conn| {
            let rows: Vec<(String, String, String, String)> = conn
                .prepare(
                    "SELECT hub_name, owner, prop_name, prop_value FROM prop_bag \
                     WHERE bag_kind = ?1 AND (?2 IS NULL OR hub_name = ?2) \
                     ORDER BY hub_name, owner, prop_name",
                )
                .and_then(|mut st| {
                    st.query_map(params![kind.as_str(), hub], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| storage(e, "list props"))?;
            crate::group_bags(kind, rows)
        })
        .await
    }

    async fn write_props(
        &self,
        bag: &PropBag,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        how: PropWrite,
    ) -> Result<Props> {
        let key = bag.key();
        let changes = changes.clone();
        let what = format!("{bag:?}");
        self.with(move |conn| {
            let tx = begin(conn)?;
            let exists = read_bag(&tx, &key)?.is_some();
            crate::check_write(how, exists, &what)?;
            if how == PropWrite::Replace {
                tx.execute(
                    "DELETE FROM prop_bag WHERE bag_kind = ?1 AND hub_name = ?2 AND owner = ?3",
                    params![key.0, key.1, key.2],
                )
                .map_err(|e| storage(e, "write props"))?;
            }
            let upsert = "INSERT INTO prop_bag (bag_kind, hub_name, owner, prop_name, prop_value) \
                          VALUES (?1, ?2, ?3, ?4, ?5) \
                          ON CONFLICT (bag_kind, hub_name, owner, prop_name) \
                          DO UPDATE SET prop_value = excluded.prop_value";
            tx.execute(upsert, params![key.0, key.1, key.2, "", "null"])
                .map_err(|e| storage(e, "write props"))?;
            for (name, value) in &changes {
                match value {
                    Some(v) => {
                        tx.execute(upsert, params![key.0, key.1, key.2, name, v.to_string()])
                    }
                    None => tx.execute(
                        "DELETE FROM prop_bag WHERE bag_kind = ?1 AND hub_name = ?2 AND owner = ?3 \
                         AND prop_name = ?4",
                        params![key.0, key.1, key.2, name],
                    ),
                }
                .map_err(|e| storage(e, "write props"))?;
            }
            let stored = read_bag(&tx, &key)?.unwrap_or_default();
            tx.commit().map_err(|e| storage(e, "commit props"))?;
            Ok(stored)
        })
        .await
    }

    async fn delete_bag(&self, bag: &PropBag) -> Result<bool> {
        let key = bag.key();
        self.with(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM prop_bag WHERE bag_kind = ?1 AND hub_name = ?2 AND owner = ?3",
                    params![key.0, key.1, key.2],
                )
                .map_err(|e| storage(e, "delete props"))?;
            Ok(n > 0)
        })
        .await
    }
}
