//! HVR conformance: the Definition Interface.

use super::*;

const D: &str = "/api/latest/hubs/hub1/definition";

#[tokio::test]
async fn a_channel_needs_only_its_name() {
    for pg in [false, true] {
        let api = Api::start(pg).await;
        api.define(1).await;
        api.call(
            "POST",
            &format!("{D}/channels"),
            Some(json!({"channel": "ch2", "description": "desc1"})),
        )
        .await
        .expect(201);
        let ch = api
            .call("GET", &format!("{D}/channels/ch2"), None)
            .await
            .expect(200)
            .json();
        assert_eq!(ch["description"], "desc1");
        // Groups can come later.
        api.call(
            "POST",
            &format!("{D}/channels/ch2/loc_groups"),
            Some(json!({"loc_group": "SOURCE", "members": ["src"]})),
        )
        .await
        .expect(201);
        // A second channel of the same name is refused.
        let a = api
            .call(
                "POST",
                &format!("{D}/channels"),
                Some(json!({"channel": "ch2"})),
            )
            .await;
        assert!(a.status.is_client_error(), "{}", a.text);
    }
}

#[tokio::test]
async fn documented_location_properties_are_kept() {
    for pg in [false, true] {
        let api = Api::start(pg).await;
        api.define(1).await;
        let props = json!({
            "Class": "postgresql",
            "Database_Host": "127.0.0.1",
            "Database_Port": 5432,
            "Database_Name": "tpcc",
            "Database_User": "u",
            "Capture_Method": "SQL",
            "Agent_Host": "a1",
            "Agent_Port": "4343",
            "Case_Sensitive_Names": true
        });
        api.call(
            "POST",
            &format!("{D}/locs"),
            Some(json!({"loc": "pg1", "props": props})),
        )
        .await
        .expect(201);
        let got = api
            .call("GET", &format!("{D}/locs/pg1"), None)
            .await
            .expect(200)
            .json();
        for (k, v) in [
            ("Capture_Method", json!("SQL")),
            ("Agent_Host", json!("a1")),
            ("Agent_Port", json!("4343")),
            ("Case_Sensitive_Names", json!(true)),
        ] {
            assert_eq!(got["props"][k], v, "{k}: {got}");
        }
        // A name HVR does not document for the class is still refused, naming it.
        let a = api
            .call(
                "PATCH",
                &format!("{D}/locs/pg1/props"),
                Some(json!({"Databse_User": "x"})),
            )
            .await
            .expect(400);
        assert!(a.text.contains("Databse_User"), "{}", a.text);
        // Deleting props: one by path, several by list; a missing one is a 404.
        api.call("DELETE", &format!("{D}/locs/pg1/props/Agent_Port"), None)
            .await
            .expect(204);
        api.call(
            "POST",
            &format!("{D}/locs/pg1/props_delete"),
            Some(json!({"props": ["Agent_Host", "Capture_Method"]})),
        )
        .await
        .expect(204);
        api.call("DELETE", &format!("{D}/locs/pg1/props/Agent_Port"), None)
            .await
            .expect(404);
        let props = api
            .call("GET", &format!("{D}/locs/pg1/props"), None)
            .await
            .expect(200)
            .json();
        assert!(props.get("Agent_Host").is_none(), "{props}");
        assert_eq!(props["Case_Sensitive_Names"], true);
    }
}

#[tokio::test]
async fn renames_carry_references_along() {
    for pg in [false, true] {
        let api = Api::start(pg).await;
        api.define(1).await;
        api.call(
            "PATCH",
            &format!("{D}/channels/ch1/actions"),
            Some(json!({"actions": [
                {"type": "Restrict", "loc_scope": "src", "table_scope": "orders",
                 "params": {"RefreshCondition": "id > 0"}}
            ]})),
        )
        .await
        .expect(204);
        // Location.
        api.call(
            "POST",
            &format!("{D}/locs/src/rename"),
            Some(json!({"new_name": "src2"})),
        )
        .await
        .expect(201);
        let ch = api
            .call("GET", &format!("{D}/channels/ch1"), None)
            .await
            .expect(200)
            .json();
        assert_eq!(ch["loc_groups"]["SOURCE"]["members"], json!(["src2"]));
        assert_eq!(ch["actions"][2]["loc_scope"], "src2");
        api.call("GET", &format!("{D}/locs/src"), None)
            .await
            .expect(404);
        // Table.
        api.call(
            "POST",
            &format!("{D}/channels/ch1/tables/orders/rename"),
            Some(json!({"new_name": "orders2"})),
        )
        .await
        .expect(201);
        let ch = api
            .call("GET", &format!("{D}/channels/ch1"), None)
            .await
            .expect(200)
            .json();
        assert!(ch["tables"].get("orders2").is_some(), "{ch}");
        assert_eq!(ch["actions"][2]["table_scope"], "orders2");
        // Location group.
        api.call(
            "POST",
            &format!("{D}/channels/ch1/loc_groups/SOURCE/rename"),
            Some(json!({"new_name": "SRC"})),
        )
        .await
        .expect(201);
        let ch = api
            .call("GET", &format!("{D}/channels/ch1"), None)
            .await
            .expect(200)
            .json();
        assert_eq!(ch["loc_groups"]["SRC"]["members"], json!(["src2"]));
        assert_eq!(ch["actions"][0]["loc_scope"], "SRC");
        // Channel.
        api.call(
            "POST",
            &format!("{D}/channels/ch1/rename"),
            Some(json!({"new_name": "ch9"})),
        )
        .await
        .expect(201);
        api.call("GET", &format!("{D}/channels/ch9/tables/orders2"), None)
            .await
            .expect(200);
        // Refused: a taken name, an invalid one, a missing object; nothing changes.
        api.call(
            "POST",
            &format!("{D}/locs"),
            Some(json!({"loc": "other", "props": {"Class": "sqlite", "Database_Name": "x.db"}})),
        )
        .await
        .expect(201);
        let before = api.call("GET", D, None).await.expect(200).json();
        let a = api
            .call(
                "POST",
                &format!("{D}/locs/src2/rename"),
                Some(json!({"new_name": "other"})),
            )
            .await
            .expect(400);
        // HVR answers "already exists" with 400 (its document lists no 409); sluice's code says
        // which kind of refusal it is.
        assert!(a.text.starts_with("F_JA0409: "), "{}", a.text);
        assert!(a.text.contains("other"), "{}", a.text);
        let a = api
            .call(
                "POST",
                &format!("{D}/channels/ch9/rename"),
                Some(json!({"new_name": "../etc"})),
            )
            .await
            .expect(400);
        assert!(a.text.contains("new_name"), "{}", a.text);
        api.call(
            "POST",
            &format!("{D}/channels/nope/tables/orders2/rename"),
            Some(json!({"new_name": "t"})),
        )
        .await
        .expect(404);
        api.call(
            "POST",
            &format!("{D}/channels/ch9/rename"),
            Some(json!({"name": "x"})),
        )
        .await
        .expect(400);
        assert_eq!(api.call("GET", D, None).await.expect(200).json(), before);
    }
}

#[tokio::test]
async fn columns_members_and_copies() {
    let api = Api::start(false).await;
    api.define(1).await;
    api.call(
        "PUT",
        &format!("{D}/channels/ch1/tables/orders/cols"),
        Some(json!({
            "id": {"sequence": 1, "key": 1, "data_type": "integer"},
            "customer": {"sequence": 2, "data_type": "varchar", "attributes": {"charlen": "20"}},
            "amount": {"sequence": 3, "data_type": "number", "attributes": {"prec": 10, "scale": 2}}
        })),
    )
    .await
    .expect(204);
    api.call(
        "POST",
        &format!("{D}/channels/ch1/tables/orders/cols_delete"),
        Some(json!({"cols": ["amount"]})),
    )
    .await
    .expect(204);
    let cols = api
        .call("GET", &format!("{D}/channels/ch1/tables/orders/cols"), None)
        .await
        .expect(200)
        .json();
    assert!(
        cols.get("amount").is_none() && cols.get("id").is_some(),
        "{cols}"
    );
    api.call(
        "POST",
        &format!("{D}/channels/ch1/tables/orders/cols_delete"),
        Some(json!({"cols": ["nope"]})),
    )
    .await
    .expect(404);
    // Copy a location, then move it into a group and out again.
    api.call(
        "POST",
        &format!("{D}/locs/tgt/copy"),
        Some(json!({"new_name": "tgt2"})),
    )
    .await
    .expect(201);
    let copy = api
        .call("GET", &format!("{D}/locs/tgt2"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(copy["props"]["Class"], "sqlite");
    api.call(
        "POST",
        &format!("{D}/locs/tgt/copy"),
        Some(json!({"new_name": "src"})),
    )
    .await
    .expect(400);
    api.call(
        "PATCH",
        &format!("{D}/channels/ch1/loc_groups/TARGET/members"),
        Some(json!({"members": ["tgt2"]})),
    )
    .await
    .expect(204);
    api.call(
        "DELETE",
        &format!("{D}/channels/ch1/loc_groups/TARGET/members/tgt2"),
        None,
    )
    .await
    .expect(204);
    api.call(
        "POST",
        &format!("{D}/channels/ch1/loc_groups/TARGET/members_delete"),
        Some(json!({"members": ["tgt"]})),
    )
    .await
    .expect(204);
    let m = api
        .call(
            "GET",
            &format!("{D}/channels/ch1/loc_groups/TARGET/members"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(m["members"], json!([]));
    api.call(
        "POST",
        &format!("{D}/channels/ch1/loc_groups/TARGET/members_delete"),
        Some(json!({"members": ["tgt"]})),
    )
    .await
    .expect(404);
}

#[tokio::test]
async fn hub_and_location_actions_and_action_modify() {
    for pg in [false, true] {
        let api = Api::start(pg).await;
        api.define(1).await;
        api.call(
            "PATCH",
            &format!("{D}/hub_actions"),
            Some(json!({"actions": [{"type": "Environment", "params": {"Name": "TZ", "Value": "UTC"}}]})),
        )
        .await
        .expect(204);
        api.call(
            "PUT",
            &format!("{D}/locs/src/actions"),
            Some(json!({"actions": [{"type": "Environment", "params": {"Name": "A", "Value": "1"}}]})),
        )
        .await
        .expect(204);
        let hub = api
            .call("GET", &format!("{D}/hub_actions"), None)
            .await
            .expect(200)
            .json();
        assert_eq!(
            hub,
            json!([{"type": "Environment", "params": {"Name": "TZ", "Value": "UTC"}}])
        );
        // A location's actions follow it through a rename and show in its GET.
        api.call(
            "POST",
            &format!("{D}/locs/src/rename"),
            Some(json!({"new_name": "src3"})),
        )
        .await
        .expect(201);
        let loc = api
            .call("GET", &format!("{D}/locs/src3"), None)
            .await
            .expect(200)
            .json();
        assert_eq!(loc["actions"][0]["params"]["Name"], "A", "{loc}");
        // Unknown types and params are refused.
        api.call(
            "PATCH",
            &format!("{D}/hub_actions"),
            Some(json!({"actions": [{"type": "Nope"}]})),
        )
        .await
        .expect(400);
        // action_modify on a channel action: params merged, null deletes.
        api.call(
            "POST",
            &format!("{D}/action_modify"),
            Some(json!({
                "type": "Integrate",
                "old": {"channel": "ch1", "loc_scope": "TARGET", "table_scope": "*"},
                "new": {"params": {"Method": "BURST"}}
            })),
        )
        .await
        .expect(204);
        let actions = api
            .call(
                "GET",
                &format!("{D}/channels/ch1/actions?action_type=Integrate"),
                None,
            )
            .await
            .expect(200)
            .json();
        assert_eq!(actions[0]["params"]["Method"], "BURST", "{actions}");
        // action_replace on the hub action.
        api.call(
            "POST",
            &format!("{D}/action_replace"),
            Some(json!({
                "type": "Environment",
                "old": {"params": {"Name": "TZ", "Value": "UTC"}},
                "new": {"params": {"Name": "TZ", "Value": "CET"}}
            })),
        )
        .await
        .expect(204);
        let hub = api
            .call("GET", &format!("{D}/hub_actions"), None)
            .await
            .expect(200)
            .json();
        assert_eq!(hub[0]["params"]["Value"], "CET");
        api.call(
            "POST",
            &format!("{D}/hub_actions_delete"),
            Some(json!({"actions": [{"type": "Environment", "params": {"Name": "TZ", "Value": "CET"}}]})),
        )
        .await
        .expect(204);
        api.call(
            "POST",
            &format!("{D}/action_modify"),
            Some(json!({"type": "Capture", "old": {"channel": "ch1", "loc_scope": "NOPE"}, "new": {}})),
        )
        .await
        .expect(404);
        // Every change was recorded as an HVR change.
        let changes = api
            .call("GET", &format!("{D}/change/events"), None)
            .await
            .expect(200)
            .json();
        let kinds: Vec<String> = changes["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_object().unwrap().keys().next().unwrap().clone())
            .collect();
        for k in [
            "add_hub_actions",
            "replace_loc_action_list",
            "rename_loc",
            "delete_hub_actions",
        ] {
            assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
        }
    }
}

#[tokio::test]
async fn import_analyze_counts_without_changing() {
    let api = Api::start(false).await;
    api.define(1).await;
    let body = json!({"changes": [
        {"add_loc": {"loc": "l2", "props": {"Class": "sqlite", "Database_Name": "l2.db"}}},
        {"add_loc": {"loc": "l3", "props": {"Class": "postgresql", "Database_Name": "l3",
                                            "Database_Password": "hunter2-secret"}}}
    ]});
    let a = api
        .call("POST", &format!("{D}/import/analyze"), Some(body.clone()))
        .await
        .expect(200)
        .json();
    assert_eq!(a["change_counts"]["add_loc"], 2);
    api.call("GET", &format!("{D}/locs/l2"), None)
        .await
        .expect(404);
    let a = api
        .call("POST", &format!("{D}/import"), Some(body))
        .await
        .expect(200)
        .json();
    assert_eq!(a["change_counts"]["add_loc"], 2);
    api.call("GET", &format!("{D}/locs/l2"), None)
        .await
        .expect(200);
    api.call(
        "PATCH",
        &format!("{D}/locs/l2/actions"),
        Some(json!({"actions": [{"type": "Environment", "params": {"Name": "X", "Value": "1"}}]})),
    )
    .await
    .expect(204);
    // Every kind of change HVR documents for the definitions themselves, in one import.
    let a = api
        .call(
            "POST",
            &format!("{D}/import"),
            Some(json!({"changes": [
                {"rename_loc": {"loc": "l2", "new_name": "l9"}},
                {"add_loc_group_members": {"channel": "ch1", "loc_group": "TARGET", "members": ["l9"]}},
                {"modify_channel": {"channel": "ch1", "description": "renamed"}},
                {"add_cols": {"channel": "ch1", "table": "orders", "cols": {
                    "id": {"sequence": 1, "key": 1, "data_type": "integer"},
                    "note": {"sequence": 2, "data_type": "varchar", "attributes": {"charlen": "9"}}
                }}},
                {"delete_cols": {"channel": "ch1", "table": "orders", "cols": ["note"]}},
                {"modify_loc_props": {"loc": "l9", "props": {"Agent_Host": "a1"}}},
                {"rename_table": {"channel": "ch1", "table": "orders", "new_name": "orders2"}}
            ]})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["change_counts"]["rename_loc"], 1, "{a}");
    let ch = api
        .call("GET", &format!("{D}/channels/ch1"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(ch["description"], "renamed");
    // The renamed location kept its actions.
    let actions = api
        .call("GET", &format!("{D}/locs/l9/actions"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(actions[0]["params"]["Name"], "X", "{actions}");
    assert_eq!(ch["loc_groups"]["TARGET"]["members"], json!(["tgt", "l9"]));
    assert_eq!(
        ch["tables"]["orders2"]["cols"].as_object().unwrap().len(),
        1,
        "{ch}"
    );
    // One failing change: nothing of the import is applied.
    let before = api.call("GET", D, None).await.expect(200).json();
    let a = api
        .call(
            "POST",
            &format!("{D}/import"),
            Some(json!({"changes": [
                {"modify_channel": {"channel": "ch1", "description": "again"}},
                {"delete_loc_group": {"channel": "ch1", "loc_group": "NOPE"}}
            ]})),
        )
        .await
        .expect(404);
    assert!(a.text.contains("changes[1]"), "{}", a.text);
    assert_eq!(api.call("GET", D, None).await.expect(200).json(), before);
    // A read-only user may not change definitions.
    let token = api.user("reader", "ReadOnly").await;
    api.call_as(
        Some(&token),
        "POST",
        &format!("{D}/channels/ch1/rename"),
        Some(json!({"new_name": "x"})),
    )
    .await
    .expect(403);
}

/// The definitions-as-code routes: who may plan and apply what, and that a refusal changes
/// nothing.
#[tokio::test]
async fn plan_and_apply_check_levels_versions_and_hostile_documents() {
    let api = Api::start(false).await;
    api.define(1).await;
    let file = api
        .call("GET", &format!("{D}/file"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(file["left_out"], json!([]));
    let mut doc = file["document"].clone();
    doc["channels"]["ch2"] = doc["channels"]["ch1"].clone();
    let plan = api
        .call(
            "POST",
            &format!("{D}/plan"),
            Some(json!({"document": doc, "source": "defs.yaml"})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(plan["changes"].as_array().unwrap().len(), 1, "{plan:#}");
    assert_eq!(plan["changes"][0]["name"], "ch2");
    let version = plan["base_version"].clone();

    // ReadOnly plans but does not apply; nothing changes.
    let ro = api.user("viewer", "ReadOnly").await;
    api.call_as(
        Some(&ro),
        "POST",
        &format!("{D}/plan"),
        Some(json!({"document": doc})),
    )
    .await
    .expect(200);
    api.call_as(
        Some(&ro),
        "POST",
        &format!("{D}/apply"),
        Some(json!({"document": doc, "base_version": version})),
    )
    .await
    .expect(403);
    // ReadWrite applies channel changes, but not the hub's description, nor a new hub.
    let rw = api.user("writer", "ReadWrite").await;
    let mut described = doc.clone();
    described["hub"] = json!({"name": "hub1", "description": "taken over"});
    api.call_as(
        Some(&rw),
        "POST",
        &format!("{D}/apply"),
        Some(json!({"document": described, "base_version": version})),
    )
    .await
    .expect(403);
    let mut other = doc.clone();
    other["hub"] = json!("hub9");
    api.call_as(
        Some(&rw),
        "POST",
        "/api/latest/hubs/hub9/definition/plan",
        Some(json!({"document": other})),
    )
    .await
    .expect(403);
    // A document naming another hub than the path is refused.
    api.call(
        "POST",
        &format!("{D}/plan"),
        Some(json!({"document": other})),
    )
    .await
    .expect(400);
    // Without base_version an apply is refused; a plan may not carry one.
    api.call_as(
        Some(&rw),
        "POST",
        &format!("{D}/apply"),
        Some(json!({"document": doc})),
    )
    .await
    .expect(400);
    api.call(
        "POST",
        &format!("{D}/plan"),
        Some(json!({"document": doc, "base_version": 1})),
    )
    .await
    .expect(400);
    // None of that changed the hub.
    let after = api
        .call("GET", &format!("{D}/file"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(after, file);

    // ReadWrite applies the plan; applying it again at the old version is refused.
    let applied = api
        .call_as(
            Some(&rw),
            "POST",
            &format!("{D}/apply"),
            Some(json!({"document": doc, "base_version": version, "source": "defs.yaml"})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(applied["changes"][0]["action"], "add");
    let stale = api
        .call_as(
            Some(&rw),
            "POST",
            &format!("{D}/apply"),
            Some(json!({"document": doc, "base_version": version})),
        )
        .await
        .expect(400);
    assert!(
        stale.text.contains("changed since the plan"),
        "{}",
        stale.text
    );
    let channels = api
        .call("GET", &format!("{D}/file?channels=ch*"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        channels["document"]["channels"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["ch1", "ch2"]
    );
}

/// Two hub servers sharing one repository, each logged in as the admin.
async fn two_nodes(pg: bool) -> (Api, Api) {
    let repository = Arc::new(TestRepository::new(pg).await);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let config = TestHub::config(&repository);
        let hub = TestHub::serve(repository.clone(), config).await;
        let mut api = Api {
            hub,
            http: reqwest::Client::new(),
            token: String::new(),
        };
        api.token = api.login("admin", ADMIN_PASSWORD).await;
        nodes.push(api);
    }
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    (a, b)
}

/// The channel's GET is served from a cached document: right after every change (on this node or
/// on another sharing the repository) it shows the change, never the document it had cached.
#[tokio::test]
async fn a_channel_read_right_after_a_change_shows_the_change() {
    const CH: &str = "/api/latest/hubs/hub1/definition/channels/ch1";
    for pg in [false, true] {
        let (a, b) = two_nodes(pg).await;
        a.define(1).await;
        for node in [&a, &b] {
            let ch = node.call("GET", CH, None).await.expect(200).json();
            assert_eq!(ch["description"], "orders");
        }
        // A change on a, read on a and on b at once (both had the old document cached).
        a.call("PATCH", CH, Some(json!({"description": "changed on a"})))
            .await
            .expect(204);
        for node in [&a, &b] {
            let ch = node.call("GET", CH, None).await.expect(200).json();
            assert_eq!(ch["description"], "changed on a", "pg {pg}");
        }
        // A change on b, read on both.
        b.call("PATCH", CH, Some(json!({"description": "changed on b"})))
            .await
            .expect(204);
        for node in [&a, &b] {
            let ch = node.call("GET", CH, None).await.expect(200).json();
            assert_eq!(ch["description"], "changed on b", "pg {pg}");
        }
        // Other write paths: a table added, a member removed, an import, a rename, a delete.
        a.call(
            "POST",
            &format!("{CH}/tables"),
            Some(json!({"table": "items"})),
        )
        .await
        .expect(201);
        let ch = b
            .call("GET", &format!("{CH}?fetch=tables"), None)
            .await
            .expect(200)
            .json();
        assert!(ch["tables"].get("items").is_some(), "pg {pg}: {ch}");
        b.call(
            "DELETE",
            &format!("{CH}/loc_groups/TARGET/members/tgt"),
            None,
        )
        .await
        .expect(204);
        let ch = a
            .call("GET", &format!("{CH}?fetch=loc_groups&fetch=members"), None)
            .await
            .expect(200)
            .json();
        assert_eq!(ch["loc_groups"]["TARGET"]["members"], json!([]), "pg {pg}");
        a.call(
            "POST",
            &format!("{CH}/rename"),
            Some(json!({"new_name": "ch2"})),
        )
        .await
        .expect(201);
        for node in [&a, &b] {
            node.call("GET", CH, None).await.expect(404);
            node.call("GET", "/api/latest/hubs/hub1/definition/channels/ch2", None)
                .await
                .expect(200);
        }
        b.call(
            "DELETE",
            "/api/latest/hubs/hub1/definition/channels/ch2",
            None,
        )
        .await
        .expect(204);
        for node in [&a, &b] {
            node.call("GET", "/api/latest/hubs/hub1/definition/channels/ch2", None)
                .await
                .expect(404);
        }
    }
}
