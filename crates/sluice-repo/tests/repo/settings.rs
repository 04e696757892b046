//! The contract of settings and `/v1` connector records (`SettingsStore`).

use super::*;

async fn a_setting_keeps_its_first_value(fx: Fixture) {
    assert_eq!(fx.setting_or_insert("color", "red").await.unwrap(), "red");
    assert_eq!(fx.setting_or_insert("color", "blue").await.unwrap(), "red");

    // Racing processes all get the same stored value.
    let other = fx.reopen().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..12 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            repo.setting_or_insert("signing_key", &format!("key-{i}"))
                .await
        }));
    }
    let mut values = BTreeSet::new();
    for h in handles {
        values.insert(h.await.unwrap().unwrap());
    }
    assert_eq!(values.len(), 1, "{values:?}");
    let stored = fx.setting_or_insert("signing_key", "late").await.unwrap();
    assert!(values.contains(&stored));
}

// ---------------------------------------------------------------------------------------------
// Connector settings and API keys (the Fivetran face).

async fn connector_settings_are_inserted_once_and_replaced(fx: Fixture) {
    with_definitions(&fx).await;
    let sales: ChannelName = "sales".parse().unwrap();
    let created = Utc::now().trunc_subsecs(6);
    let first = ConnectorRecord::new(hub1(), sales.clone(), created);
    assert_eq!(fx.connector_or_insert(&first).await.unwrap(), first);
    // A second insert keeps what is stored (its own `created` is ignored).
    let later = ConnectorRecord::new(hub1(), sales.clone(), created + TimeDelta::seconds(5));
    assert_eq!(fx.connector_or_insert(&later).await.unwrap(), first);

    let mut changed = first.clone();
    changed.paused = true;
    changed.schedule_type = "auto".into();
    changed.sync_frequency = 1440;
    changed.daily_sync_time = "03:30".into();
    changed.schema_change_handling = "BLOCK_ALL".into();
    changed.schema_overlay = serde_json::json!({"tables": {"orders": {"enabled": false}}});
    changed.setup_state = "broken".into();
    changed.setup_tests = serde_json::json!([{"title": "source", "status": "FAILED"}]);
    fx.put_connector(&changed).await.unwrap();
    assert_eq!(
        fx.connector_records(Some(&hub1())).await.unwrap(),
        vec![changed.clone()]
    );
    assert_eq!(
        fx.connector_records(None).await.unwrap(),
        vec![changed.clone()]
    );
    assert_eq!(fx.connector_or_insert(&first).await.unwrap(), changed);
    let other: HubName = "other".parse().unwrap();
    assert_eq!(fx.connector_records(Some(&other)).await.unwrap(), vec![]);

    // Settings of an unknown hub are refused; deleting the hub deletes its settings.
    let error = fx
        .put_connector(&ConnectorRecord::new(other.clone(), sales.clone(), created))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    let error = fx
        .connector_or_insert(&ConnectorRecord::new(other, sales, created))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    fx.delete_hub(&hub1()).await.unwrap();
    assert_eq!(fx.connector_records(None).await.unwrap(), vec![]);
}

on_both_backends!(
    a_setting_keeps_its_first_value,
    connector_settings_are_inserted_once_and_replaced,
);
