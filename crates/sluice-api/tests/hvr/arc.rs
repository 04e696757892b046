//! HVR conformance: activate, refresh and compare results, contexts, slicing and control messages.

use super::*;

/// Table `extra` (id key, 4 rows) in both SQLite files of `define`.
fn extra_on_both_sides(dir: &Path) {
    for file in ["src.db", "tgt.db"] {
        let conn = rusqlite::Connection::open(dir.join(file)).unwrap();
        conn.execute_batch(
            "CREATE TABLE extra (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO extra VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');",
        )
        .unwrap();
    }
}

fn results_of(event: &Value, table: &str) -> BTreeMap<String, String> {
    event["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["table"] == table)
        .map(|r| {
            (
                r["result"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

use std::collections::BTreeMap;

#[tokio::test]
async fn a_compare_of_a_table_missing_on_the_target_is_posted_and_fails_in_the_event() {
    let api = Api::start(false).await;
    api.define(5).await;
    extra_on_both_sides(api.hub.dir());
    api.call(
        "PUT",
        "/api/latest/hubs/hub1/definition/channels/ch1/tables/extra",
        Some(json!({})),
    )
    .await
    .expect(204);
    // `orders` is not on the target (nothing was refreshed): the compare is still posted.
    let posted = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/compare",
            Some(json!({"source_loc": "src", "target_loc": "tgt", "granularity": "rowwise"})),
        )
        .await
        .expect(201)
        .json();
    let ev = posted["posted_ev_id"].as_str().unwrap().to_owned();
    assert_eq!(posted["job"], "ch1-cmp-src-tgt");
    let event = api.wait_event(&ev).await;
    assert_eq!(event["state"], "FAILED", "{event}");
    let orders = results_of(&event, "orders");
    assert_eq!(orders["Table_State"], "FAILED", "{event}");
    assert!(
        orders["Table_Error"].contains("orders")
            && orders["Table_Error"].contains("does not exist"),
        "{orders:?}"
    );
    // The other table was still compared.
    let extra = results_of(&event, "extra");
    assert_eq!(extra["Table_State"], "DONE/IDENTICAL", "{event}");
    assert_eq!(extra["Source_Rows_Used"], "4");
}

#[tokio::test]
async fn activation_state_is_not_activated_everywhere() {
    let api = Api::start(false).await;
    api.define(1).await;
    let off = json!({"found": false, "missing": true, "lossy_reactivate": false});
    let state = json!({"jobs": off, "router_files": off});
    let a = api
        .call("GET", "/api/v6.1.0.3/hubs/hub1/activate", None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"ch1": {"src": state, "tgt": state}}));
    let a = api
        .call("GET", "/api/latest/hubs/hub1/activate?locs=tgt", None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"ch1": {"tgt": state}}));
    let a = api
        .call(
            "GET",
            "/api/latest/hubs/hub1/channels/ch1/activate?locs=src",
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"src": state}));
    let a = api
        .call("GET", "/api/latest/hubs/hub1/locs/src/activate", None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"ch1": state}));
    for (path, status) in [
        ("/api/latest/hubs/hub1/activate?channels=nope", 404),
        ("/api/latest/hubs/hub1/channels/nope/activate", 404),
        ("/api/latest/hubs/hub1/channels/ch1/activate?locs=nope", 404),
        ("/api/latest/hubs/hub1/locs/nope/activate", 404),
        ("/api/latest/hubs/nohub/activate", 404),
    ] {
        api.call("GET", path, None).await.expect(status);
    }
    api.call_as(None, "GET", "/api/latest/hubs/hub1/activate", None)
        .await
        .expect(401);
}

#[tokio::test]
async fn tables_results_ids_per_hub_and_per_channel() {
    let api = Api::start(false).await;
    api.define(3).await;
    let body = json!({"source_loc": "src", "target_loc": "tgt"});
    let refresh = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(body.clone()),
        )
        .await
        .expect(201)
        .json();
    let refresh = refresh["posted_ev_id"].as_str().unwrap().to_owned();
    assert_eq!(api.wait_event(&refresh).await["state"], "DONE");
    let compare = api
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/compare",
            Some(body),
        )
        .await
        .expect(201)
        .json();
    let compare = compare["posted_ev_id"].as_str().unwrap().to_owned();
    assert_eq!(api.wait_event(&compare).await["state"], "DONE");

    let get = |path: String| {
        let api = &api;
        async move { api.call("GET", &path, None).await.expect(200).json() }
    };
    assert_eq!(
        get("/api/latest/hubs/hub1/refresh/tables_results_ids".into()).await,
        json!({"ch1": {refresh.clone(): ["orders"]}})
    );
    assert_eq!(
        get("/api/latest/hubs/hub1/compare/tables_results_ids?channel=ch1&table=orders".into())
            .await,
        json!({"ch1": {compare.clone(): ["orders"]}})
    );
    assert_eq!(
        get("/api/latest/hubs/hub1/channels/ch1/refresh/tables_results_ids".into()).await,
        json!({refresh.clone(): ["orders"]})
    );
    assert_eq!(
        get(
            "/api/latest/hubs/hub1/channels/ch1/compare/tables_results_ids?result_pattern=Table_State|Nothing"
                .into()
        )
        .await,
        json!({compare.clone(): ["orders"]})
    );
    for path in [
        "/api/latest/hubs/hub1/refresh/tables_results_ids?result_pattern=No_Such_Result",
        "/api/latest/hubs/hub1/refresh/tables_results_ids?source_loc=tgt",
        "/api/latest/hubs/hub1/compare/tables_results_ids?table=other",
        "/api/latest/hubs/hub1/refresh/tables_results_ids?ev_tstamp_end=2000-01-01T00:00:00Z",
    ] {
        assert_eq!(get(path.into()).await, json!({}), "{path}");
    }
    assert_eq!(
        get("/api/latest/hubs/hub1/refresh/tables_results_ids?result_pattern=Table_*".into()).await,
        json!({"ch1": {refresh: ["orders"]}})
    );
    api.call(
        "GET",
        "/api/latest/hubs/hub1/refresh/tables_results_ids?channel=Bad!",
        None,
    )
    .await
    .expect(400);
    api.call(
        "GET",
        "/api/latest/hubs/hub1/refresh/tables_results_ids?ev_tstamp_begin=yesterday",
        None,
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn contexts_open_transactions_and_integrate_points() {
    let api = Api::start(false).await;
    api.define(1).await;
    let c = "/api/latest/hubs/hub1/channels/ch1";
    let a = api
        .call("GET", &format!("{c}/contexts"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"contexts": [], "context_variables": []}));
    api.call(
        "PATCH",
        "/api/latest/hubs/hub1/definition/channels/ch1/actions",
        Some(json!({"actions": [{
            "loc_scope": "SOURCE", "table_scope": "*", "type": "Restrict",
            "params": {"RefreshCondition": "id > 0", "Context": "!recent"}
        }]})),
    )
    .await
    .expect(204);
    let a = api
        .call("GET", &format!("{c}/contexts"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"contexts": ["recent"], "context_variables": []}));
    api.call("GET", "/api/latest/hubs/hub1/channels/nope/contexts", None)
        .await
        .expect(404);

    let a = api
        .call("GET", &format!("{c}/locs/src/capture_open_tx"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a["num_open_tx"], 0);
    assert!(a["request_time"].as_str().unwrap().ends_with('Z'), "{a}");
    // The target captures nothing; a location outside the channel is not found.
    let a = api
        .call("GET", &format!("{c}/locs/tgt/capture_open_tx"), None)
        .await
        .expect(400);
    assert!(a.text.contains("no capture tables"), "{}", a.text);
    api.call("GET", &format!("{c}/locs/other/capture_open_tx"), None)
        .await
        .expect(404);

    let a = api
        .call("GET", &format!("{c}/locs/tgt/integrate_point"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({}));
    api.call(
        "GET",
        &format!("{c}/locs/tgt/integrate_point?orig_channel=nope"),
        None,
    )
    .await
    .expect(404);
    api.call("GET", &format!("{c}/locs/Bad!/integrate_point"), None)
        .await
        .expect(404);
}

#[tokio::test]
async fn control_messages_say_there_is_no_task_to_send_them_to() {
    let api = Api::start(false).await;
    api.define(1).await;
    let c = "/api/latest/hubs/hub1/channels/ch1";
    let a = api
        .call("GET", &format!("{c}/controls?task_name=cap"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!(""));
    api.call("GET", &format!("{c}/controls?task_name=refr"), None)
        .await
        .expect(400);
    api.call("GET", &format!("{c}/controls?loc_name=other"), None)
        .await
        .expect(404);
    let a = api
        .call("GET", &format!("{c}/controls/c1"), None)
        .await
        .expect(404);
    assert!(
        a.text.contains("control \"c1\" does not exist"),
        "{}",
        a.text
    );
    api.call("POST", &format!("{c}/controls_delete"), Some(json!({})))
        .await
        .expect(400);
    api.call(
        "POST",
        &format!("{c}/controls_delete"),
        Some(json!({"ctrl_ids": []})),
    )
    .await
    .expect(400);
    api.call(
        "POST",
        &format!("{c}/controls_delete"),
        Some(json!({"ctrl_ids": ["c1"]})),
    )
    .await
    .expect(404);

    let control = json!({
        "ctrl_name": "skip_bad",
        "filters": [{"tables": ["orders"], "where": [{"col": "id", "op": "=", "val_int": ["7"]}], "skip_rows": true}],
        "finish_after_cycle": true
    });
    let a = api
        .call(
            "POST",
            &format!("{c}/locs/tgt/tasks/integ/controls"),
            Some(control.clone()),
        )
        .await
        .expect(409);
    assert!(
        a.text.contains("job ch1-integ-tgt does not exist"),
        "{}",
        a.text
    );
    assert!(a.text.contains("events_cancel"), "{}", a.text);
    for (path, body, status) in [
        ("locs/tgt/tasks/refr/controls", control.clone(), 400),
        ("locs/other/tasks/integ/controls", control.clone(), 404),
        (
            "locs/tgt/tasks/integ/controls",
            json!({"ctrl_name": "x", "filters": [{"where": [{"col": "id", "op": "; drop"}]}]}),
            400,
        ),
        (
            "locs/tgt/tasks/integ/controls",
            json!({"ctrl_name": "x", "bogus": 1}),
            400,
        ),
        ("locs/tgt/tasks/integ/controls", json!({}), 400),
    ] {
        api.call("POST", &format!("{c}/{path}"), Some(body))
            .await
            .expect(status);
    }
    let reader = api.user("reader", "ReadOnly").await;
    api.call_as(
        Some(&reader),
        "POST",
        &format!("{c}/locs/tgt/tasks/integ/controls"),
        Some(control),
    )
    .await
    .expect(403);
    api.call_as(
        Some(&reader),
        "POST",
        &format!("{c}/controls_delete"),
        Some(json!({"ctrl_ids": ["c1"]})),
    )
    .await
    .expect(403);
}
