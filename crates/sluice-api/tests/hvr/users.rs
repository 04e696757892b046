//! HVR conformance: users, their props, per-hub access and first-run set-up (User Config
//! Interface, `/auth/v1/setup`, `/auth`), and the attacks of a ReadOnly user on them.

use super::*;

const USERS: &str = "/api/latest/users";

/// A user's password as `Api::user` sets it.
fn password_of(name: &str) -> String {
    format!("{name}-password-1")
}

#[tokio::test]
async fn users_have_hvr_shapes_props_and_local_authentication() {
    let api = Api::start(false).await;
    // HVR's body: user, authentication, password, props (no level).
    api.call(
        "POST",
        USERS,
        Some(
            json!({"user": "ann", "authentication": "local", "password": "ann-password-1",
                    "props": {"Full_Name": "Ann Smith", "Theme": "dark"}}),
        ),
    )
    .await
    .expect(204);
    let all = api
        .call(
            "GET",
            &format!("{USERS}?fetch=authentication&fetch=all_props"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(all["ann"]["authentication"], "local", "{all}");
    assert_eq!(all["ann"]["props"]["Full_Name"], "Ann Smith", "{all}");
    assert_eq!(all["ann"]["level"], "ReadOnly", "{all}");
    assert_eq!(all["admin"]["authentication"], "local", "{all}");
    // fetch=authentication alone: no props; contact_props: only the contact ones.
    let a = api
        .call("GET", &format!("{USERS}/ann?fetch=authentication"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a["authentication"], "local");
    assert!(a.get("props").is_none(), "{a}");
    let a = api
        .call("GET", &format!("{USERS}/ann?fetch=contact_props"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a["props"], json!({"Full_Name": "Ann Smith"}), "{a}");
    api.call("GET", &format!("{USERS}?fetch=secrets"), None)
        .await
        .expect(400);
    // The new user logs in with the password given.
    api.login("ann", "ann-password-1").await;
    // Authentication other than local: a clear 400, nothing created.
    for method in ["pam", "plugin", "windows"] {
        let a = api
            .call(
                "POST",
                USERS,
                Some(
                    json!({"user": "bob", "authentication": method, "password": "bob-password-1"}),
                ),
            )
            .await
            .expect(400);
        assert!(a.text.contains("local users only"), "{}", a.text);
    }
    api.call(
        "POST",
        USERS,
        Some(json!({"user": "bob", "authentication": "ldap"})),
    )
    .await
    .expect(400);
    // Invalid props: nothing created either.
    let a = api
        .call(
            "POST",
            USERS,
            Some(
                json!({"user": "bob", "authentication": "local", "password": "bob-password-1",
                        "props": {"level": "SysAdmin"}}),
            ),
        )
        .await
        .expect(400);
    assert!(a.text.contains("not a user property"), "{}", a.text);
    api.call(
        "POST",
        USERS,
        Some(json!({"user": "bob", "authentication": "local", "props": {"../../etc": 1}})),
    )
    .await
    .expect(400);
    api.call("GET", &format!("{USERS}/bob"), None)
        .await
        .expect(404);
    // Already exists: 400 (HVR's "User already exists").
    api.call(
        "POST",
        USERS,
        Some(json!({"user": "ann", "authentication": "local", "password": "ann-password-2"})),
    )
    .await
    .expect(400);
    // Without a password: created, but nobody can log in as them until one is set.
    api.call(
        "POST",
        USERS,
        Some(json!({"user": "carl", "authentication": "local"})),
    )
    .await
    .expect(204);
    api.call_as(
        None,
        "POST",
        "/auth/v1/password",
        Some(json!({"username": "carl", "password": ""})),
    )
    .await
    .expect(403);
    api.call(
        "PUT",
        &format!("{USERS}/carl/password"),
        Some(json!({"new_password": "carl-password-1"})),
    )
    .await
    .expect(204);
    api.login("carl", "carl-password-1").await;
    // Hostile names.
    for name in ["a'; DROP TABLE app_user; --", "../admin", ""] {
        api.call(
            "POST",
            USERS,
            Some(json!({"user": name, "authentication": "local", "password": "password-123"})),
        )
        .await
        .expect(400);
    }
    // Props: PATCH sets (null deletes), PUT replaces, props_delete deletes, fetch filters.
    let props = format!("{USERS}/ann/props");
    api.call(
        "PATCH",
        &props,
        Some(json!({"Theme": null, "Compact_Mode": true})),
    )
    .await
    .expect(204);
    let p = api.call("GET", &props, None).await.expect(200).json();
    assert_eq!(p, json!({"Full_Name": "Ann Smith", "Compact_Mode": true}));
    api.call("PUT", &props, Some(json!({"Avatar": {"kind": "initials"}})))
        .await
        .expect(204);
    let p = api.call("GET", &props, None).await.expect(200).json();
    assert_eq!(p, json!({"Avatar": {"kind": "initials"}}));
    api.call(
        "PATCH",
        &props,
        Some(json!({"Full_Name": "Ann", "Theme": "light"})),
    )
    .await
    .expect(204);
    api.call(
        "POST",
        &format!("{USERS}/ann/props_delete"),
        Some(json!({"props": ["Avatar", "Theme"]})),
    )
    .await
    .expect(204);
    let p = api
        .call("GET", &format!("{props}?fetch=Full_Name"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(p, json!({"Full_Name": "Ann"}));
    api.call(
        "POST",
        &format!("{USERS}/ann/props_delete"),
        Some(json!({"props": []})),
    )
    .await
    .expect(400);
    api.call("GET", &format!("{USERS}/nobody/props"), None)
        .await
        .expect(404);
    api.call(
        "PATCH",
        &format!("{USERS}/nobody/props"),
        Some(json!({"Theme": "x"})),
    )
    .await
    .expect(404);
    // Deleting the user deletes their props.
    api.call("DELETE", &format!("{USERS}/ann"), None)
        .await
        .expect(204);
    api.call("GET", &props, None).await.expect(404);
    api.call("DELETE", &format!("{USERS}/ann"), None)
        .await
        .expect(404);
}

#[tokio::test]
async fn a_readonly_user_manages_only_their_own_props_and_password() {
    let api = Api::start(false).await;
    let ro = api.user("ro", "ReadOnly").await;
    api.user("other", "ReadWrite").await;
    let as_ro = |method: &'static str, path: String, body: Option<Value>| {
        let api = &api;
        let ro = ro.clone();
        async move { api.call_as(Some(&ro), method, &path, body).await }
    };
    // Their own props: yes.
    as_ro(
        "PATCH",
        format!("{USERS}/ro/props"),
        Some(json!({"Theme": "dark"})),
    )
    .await
    .expect(204);
    let p = as_ro("GET", format!("{USERS}/ro/props"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(p, json!({"Theme": "dark"}));
    // Their own level, through props or otherwise: never.
    for (method, path, body) in [
        ("PATCH", "ro/props", json!({"level": "SysAdmin"})),
        ("PATCH", "ro/props", json!({"Access_Level": "HubOwner"})),
        (
            "PUT",
            "ro/props",
            json!({"Theme": "x", "LEVEL": "SysAdmin"}),
        ),
        ("POST", "ro/props_delete", json!({"props": ["level"]})),
        ("PATCH", "ro", json!({"level": "SysAdmin"})),
    ] {
        let a = as_ro(method, format!("{USERS}/{path}"), Some(body.clone()))
            .await
            .expect(403);
        assert!(a.text.starts_with("F_"), "{}", a.text);
    }
    // Other users: nothing.
    for (method, path, body) in [
        ("GET", "other".to_owned(), None),
        ("GET", "other/props".to_owned(), None),
        ("GET", "admin/props".to_owned(), None),
        (
            "PATCH",
            "other/props".to_owned(),
            Some(json!({"Theme": "x"})),
        ),
        ("PUT", "other/props".to_owned(), Some(json!({}))),
        (
            "POST",
            "other/props_delete".to_owned(),
            Some(json!({"props": ["Theme"]})),
        ),
        (
            "PUT",
            "other/password".to_owned(),
            Some(json!({"new_password": "stolen-password-1"})),
        ),
        (
            "PUT",
            "admin/password".to_owned(),
            Some(json!({"new_password": "stolen-password-1"})),
        ),
        ("PATCH", "other".to_owned(), Some(json!({"level": "None"}))),
        ("DELETE", "other".to_owned(), None),
    ] {
        as_ro(method, format!("{USERS}/{path}"), body)
            .await
            .expect(403);
    }
    as_ro(
        "POST",
        USERS.to_owned(),
        Some(
            json!({"user": "mine", "authentication": "local", "password": "mine-password-1",
                    "level": "SysAdmin"}),
        ),
    )
    .await
    .expect(403);
    // Nothing changed: levels, passwords, props.
    let all = api.call("GET", USERS, None).await.expect(200).json();
    assert_eq!(all["ro"]["level"], "ReadOnly");
    assert_eq!(all["other"]["level"], "ReadWrite");
    assert!(all.get("mine").is_none(), "{all}");
    assert_eq!(all["ro"]["props"], json!({"Theme": "dark"}));
    api.login("other", &password_of("other")).await;
    api.login("admin", sluice_test_support::ADMIN_PASSWORD)
        .await;
    // GET /users lists only themselves.
    let mine = as_ro("GET", USERS.to_owned(), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        mine.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["ro"],
        "{mine}"
    );
    // Their own password: with the current one.
    as_ro(
        "PUT",
        format!("{USERS}/ro/password"),
        Some(json!({"new_password": "ro-password-2"})),
    )
    .await
    .expect(403);
    as_ro(
        "PUT",
        format!("{USERS}/ro/password"),
        Some(json!({"new_password": "ro-password-2", "current_password": password_of("ro")})),
    )
    .await
    .expect(204);
    api.login("ro", "ro-password-2").await;
}

/// The level of `token`'s user on each hub `GET /hubs` lists.
async fn listed(api: &Api, token: &str) -> Value {
    let hubs = api
        .call_as(Some(token), "GET", "/api/latest/hubs", None)
        .await
        .expect(200)
        .json();
    let levels: serde_json::Map<String, Value> = hubs
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["current_user_access"]["level"].clone()))
        .collect();
    Value::Object(levels)
}

async fn hub_access_entries_set_the_level_per_hub(pg: bool) {
    let api = Api::start(pg).await;
    api.define(3).await;
    api.call("POST", "/api/latest/hubs", Some(json!({"hub": "hub2"})))
        .await
        .expect(204);
    let ro = api.user("ro", "ReadOnly").await;
    let rw = api.user("rw", "ReadWrite").await;
    let entry = |hub: &str, user: &str| format!("/api/latest/hubs/{hub}/users/{user}/props");
    assert_eq!(
        listed(&api, &ro).await,
        json!({"hub1": "ReadOnly", "hub2": "ReadOnly"})
    );
    // None on hub2: hidden from the list, refused everywhere on it.
    api.call(
        "PATCH",
        &entry("hub2", "ro"),
        Some(json!({"Access_Level": "None"})),
    )
    .await
    .expect(204);
    assert_eq!(listed(&api, &ro).await, json!({"hub1": "ReadOnly"}));
    for path in [
        "/api/latest/hubs/hub2",
        "/api/latest/hubs/hub2/props",
        "/api/latest/hubs/hub2/definition/channels",
        "/api/latest/hubs/hub2/jobs",
        "/api/latest/hubs/hub2/events",
    ] {
        let a = api.call_as(Some(&ro), "GET", path, None).await.expect(403);
        assert!(a.text.contains("on hub hub2"), "{path}: {}", a.text);
    }
    // ReadExecRefresh on hub1: a refresh there, at once.
    let refresh = json!({"source_loc": "src", "target_loc": "tgt"});
    let path = "/api/latest/hubs/hub1/channels/ch1/refresh";
    api.call_as(Some(&ro), "POST", path, Some(refresh.clone()))
        .await
        .expect(403);
    api.call(
        "PATCH",
        &entry("hub1", "ro"),
        Some(json!({"Access_Level": "ReadExecRefresh", "Graph_Range_Period": "1h"})),
    )
    .await
    .expect(204);
    assert_eq!(listed(&api, &ro).await, json!({"hub1": "ReadExecRefresh"}));
    let one = api
        .call_as(Some(&ro), "GET", "/api/latest/hubs/hub1", None)
        .await
        .expect(200)
        .json();
    assert_eq!(one["current_user_access"]["level"], "ReadExecRefresh");
    let posted = api
        .call_as(Some(&ro), "POST", path, Some(refresh.clone()))
        .await
        .expect(201)
        .json();
    api.wait_event(posted["posted_ev_id"].as_str().unwrap())
        .await;
    // The entry is taken away: refused at the next request (nothing cached).
    api.call(
        "POST",
        &format!("{}_delete", entry("hub1", "ro")),
        Some(json!({"props": ["Access_Level"]})),
    )
    .await
    .expect(204);
    api.call_as(Some(&ro), "POST", path, Some(refresh))
        .await
        .expect(403);
    let props = api
        .call("GET", &entry("hub1", "ro"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(props, json!({"Graph_Range_Period": "1h"}));
    // An entry lowers a level too: ReadWrite server-wide, ReadOnly on hub1.
    let new_channel = json!({"channel": "c2", "loc_groups": {"SOURCE": {"members": ["src"]}},
                             "tables": {"orders": {}}});
    api.call(
        "PATCH",
        &entry("hub1", "rw"),
        Some(json!({"Access_Level": "ReadOnly"})),
    )
    .await
    .expect(204);
    api.call_as(
        Some(&rw),
        "POST",
        "/api/latest/hubs/hub1/definition/channels",
        Some(new_channel.clone()),
    )
    .await
    .expect(403);
    assert_eq!(
        listed(&api, &rw).await,
        json!({"hub1": "ReadOnly", "hub2": "ReadWrite"})
    );
    // HubOwner on hub2 only: its props, not hub1's.
    api.call(
        "PATCH",
        &entry("hub2", "rw"),
        Some(json!({"Access_Level": "HubOwner"})),
    )
    .await
    .expect(204);
    api.call_as(
        Some(&rw),
        "PATCH",
        "/api/latest/hubs/hub2/props",
        Some(json!({"Description": "owned"})),
    )
    .await
    .expect(204);
    api.call_as(
        Some(&rw),
        "PATCH",
        "/api/latest/hubs/hub1/props",
        Some(json!({"Description": "not owned"})),
    )
    .await
    .expect(403);

    // The ReadOnly user's attacks on access entries: every one 403, nothing changed.
    for (method, path, body) in [
        (
            "PATCH",
            entry("hub2", "ro"),
            json!({"Access_Level": "HubOwner"}),
        ),
        (
            "PATCH",
            entry("hub2", "ro"),
            json!({"access_level": "HubOwner"}),
        ),
        ("PATCH", entry("hub2", "ro"), json!({"Access_Level": null})),
        (
            "PUT",
            entry("hub2", "ro"),
            json!({"Access_Level": "ReadWrite"}),
        ),
        (
            "POST",
            format!("{}_delete", entry("hub2", "ro")),
            json!({"props": ["Access_Level"]}),
        ),
        ("PATCH", entry("hub1", "rw"), json!({"Theme": "x"})),
        (
            "PATCH",
            entry("hub1", "admin"),
            json!({"Access_Level": "None"}),
        ),
        ("PUT", entry("hub1", "rw"), json!({})),
    ] {
        api.call_as(Some(&ro), method, &path, Some(body.clone()))
            .await
            .expect(403);
    }
    for path in [entry("hub1", "rw"), entry("hub1", "admin")] {
        api.call_as(Some(&ro), "GET", &path, None).await.expect(403);
    }
    // Replacing their own hub props keeps the entry.
    api.call_as(
        Some(&ro),
        "PUT",
        &entry("hub2", "ro"),
        Some(json!({"Latency_Colors": "x"})),
    )
    .await
    .expect(204);
    let props = api
        .call("GET", &entry("hub2", "ro"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        props,
        json!({"Access_Level": "None", "Latency_Colors": "x"})
    );
    let own = api
        .call_as(Some(&ro), "GET", &entry("hub2", "ro"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(own, props);
    assert_eq!(listed(&api, &ro).await, json!({"hub1": "ReadOnly"}));
    let props = api
        .call("GET", &entry("hub1", "rw"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(props, json!({"Access_Level": "ReadOnly"}));

    // What a SysAdmin may not set either, and objects that do not exist.
    for body in [
        json!({"Access_Level": "SysAdmin"}),
        json!({"Access_Level": "Root"}),
        json!({"Access_Level": 7}),
        json!({"../x": 1}),
    ] {
        api.call("PATCH", &entry("hub1", "ro"), Some(body))
            .await
            .expect(400);
    }
    api.call(
        "PATCH",
        &entry("hub1", "nobody"),
        Some(json!({"Access_Level": "ReadOnly"})),
    )
    .await
    .expect(404);
    api.call(
        "PATCH",
        &entry("nohub", "ro"),
        Some(json!({"Access_Level": "ReadOnly"})),
    )
    .await
    .expect(404);
    api.call("GET", &entry("Bad-Hub", "ro"), None)
        .await
        .expect(404);
    // A SysAdmin's PUT replaces the entry too; deleting the user deletes their entries.
    api.call("PUT", &entry("hub1", "rw"), Some(json!({})))
        .await
        .expect(204);
    assert_eq!(
        listed(&api, &rw).await,
        json!({"hub1": "ReadWrite", "hub2": "HubOwner"})
    );
    api.call("DELETE", &format!("{USERS}/rw"), None)
        .await
        .expect(204);
    api.user("rw", "ReadOnly").await;
    let rw = api.login("rw", &password_of("rw")).await;
    assert_eq!(
        listed(&api, &rw).await,
        json!({"hub1": "ReadOnly", "hub2": "ReadOnly"})
    );
}

#[tokio::test]
async fn hub_access_entries_set_the_level_per_hub_on_sqlite() {
    hub_access_entries_set_the_level_per_hub(false).await;
}

#[tokio::test]
async fn hub_access_entries_set_the_level_per_hub_on_postgres() {
    hub_access_entries_set_the_level_per_hub(true).await;
}

#[tokio::test]
async fn setup_mode_creates_the_first_users_only() {
    let repository = Arc::new(TestRepository::new(false).await);
    let mut config = TestHub::config(&repository);
    config.setup_mode = true;
    let hub = TestHub::serve(repository, config).await;
    let api = Api {
        hub,
        http: reqwest::Client::new(),
        token: String::new(),
    };
    let versions = api
        .call_as(None, "POST", "/auth", None)
        .await
        .expect(200)
        .json();
    assert_eq!(versions, json!(["v1"]));
    let tokens = api
        .call_as(None, "POST", "/auth/v1/setup", None)
        .await
        .expect(200)
        .json();
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 900);
    let setup = tokens["access_token"].as_str().unwrap().to_owned();
    // Only the user operations take it.
    for (method, path) in [
        ("GET", "/api/latest/hubs"),
        ("GET", "/api/latest/hubserver/clock"),
        ("GET", "/topics"),
    ] {
        api.call_as(Some(&setup), method, path, None)
            .await
            .expect(401);
    }
    api.call_as(
        Some(&setup),
        "POST",
        "/api/latest/hubs",
        Some(json!({"hub": "sneaky"})),
    )
    .await
    .expect(401);
    // A first user who is not SysAdmin: setup mode goes on.
    api.call_as(
        Some(&setup),
        "POST",
        USERS,
        Some(
            json!({"user": "viewer", "authentication": "local", "password": "viewer-password",
                    "level": "ReadOnly"}),
        ),
    )
    .await
    .expect(204);
    // Users exist now: no new setup token.
    api.call_as(None, "POST", "/auth/v1/setup", None)
        .await
        .expect(403);
    // A user created without a level in setup mode is SysAdmin; setup mode then ends.
    api.call_as(
        Some(&setup),
        "POST",
        USERS,
        Some(json!({"user": "boss", "authentication": "local", "password": "boss-password"})),
    )
    .await
    .expect(204);
    api.call_as(Some(&setup), "GET", USERS, None)
        .await
        .expect(401);
    let boss = api.login("boss", "boss-password").await;
    let users = api
        .call_as(Some(&boss), "GET", USERS, None)
        .await
        .expect(200)
        .json();
    assert_eq!(users["boss"]["level"], "SysAdmin", "{users}");
    assert_eq!(users["boss"]["creator"], "(setup)", "{users}");
    assert_eq!(users["viewer"]["level"], "ReadOnly", "{users}");
    assert!(users.get("admin").is_none(), "{users}");
}

#[tokio::test]
async fn setup_is_refused_on_a_hub_server_with_users() {
    let api = Api::start(false).await;
    let a = api
        .call_as(None, "POST", "/auth/v1/setup", None)
        .await
        .expect(403);
    assert!(a.text.starts_with("F_"), "{}", a.text);
    // A forged setup token (signed with another key) is nothing.
    api.call_as(Some("eyJhbGciOiJIUzI1NiJ9.e30.x"), "GET", USERS, None)
        .await
        .expect(401);
}

#[tokio::test]
async fn hvrs_access_list_sets_the_hubs_access_entries() {
    let api = Api::start(false).await;
    let ro = api.user("ro", "ReadOnly").await;
    let rw = api.user("rw", "ReadWrite").await;
    // Refused lists create nothing.
    for list in [
        json!([{"user": "nobody", "level": "ReadOnly"}]),
        json!([{"user": "ro", "level": "SysAdmin"}]),
        json!([{"user": "ro", "level": "ReadOnly"}, {"user": "ro", "level": "None"}]),
        json!("ReadOnly"),
    ] {
        api.call(
            "POST",
            "/api/latest/hubs",
            Some(json!({"hub": "hub3", "props": {"Access_List": list}})),
        )
        .await
        .expect(400);
    }
    api.call("GET", "/api/latest/hubs/hub3", None)
        .await
        .expect(404);
    // HVR's hub creation with an access list: ro ReadWrite there, everyone else None.
    let list = json!([{"user": "ro", "level": "ReadWrite"}, {"level": "None"}]);
    api.call(
        "POST",
        "/api/latest/hubs",
        Some(json!({"hub": "hub3", "props": {"Description": "listed", "Access_List": list}})),
    )
    .await
    .expect(204);
    assert_eq!(listed(&api, &ro).await, json!({"hub3": "ReadWrite"}));
    assert_eq!(listed(&api, &rw).await, json!({}));
    api.call_as(Some(&rw), "GET", "/api/latest/hubs/hub3/props", None)
        .await
        .expect(403);
    let props = api
        .call("GET", "/api/latest/hubs/hub3/props", None)
        .await
        .expect(200)
        .json();
    assert_eq!(props["Access_List"], list, "{props}");
    let entry = api
        .call("GET", "/api/latest/hubs/hub3/users/ro/props", None)
        .await
        .expect(200)
        .json();
    assert_eq!(entry, json!({"Access_Level": "ReadWrite"}));
    // Only a SysAdmin changes it, even a HubOwner of the hub may not.
    api.call(
        "PATCH",
        "/api/latest/hubs/hub3/users/rw/props",
        Some(json!({"Access_Level": "HubOwner"})),
    )
    .await
    .expect(204);
    api.call_as(
        Some(&rw),
        "PATCH",
        "/api/latest/hubs/hub3/props",
        Some(json!({"Access_List": [{"level": "HubOwner"}]})),
    )
    .await
    .expect(403);
    api.call_as(
        Some(&rw),
        "PATCH",
        "/api/latest/hubs/hub3/props",
        Some(json!({"Description": "mine"})),
    )
    .await
    .expect(204);
    assert_eq!(listed(&api, &ro).await, json!({"hub3": "ReadWrite"}));
    // A SysAdmin's PATCH replaces it; null clears it (server-wide levels apply again).
    api.call(
        "PATCH",
        "/api/latest/hubs/hub3/props",
        Some(json!({"Access_List": [{"user": "rw", "level": "ReadExec"}]})),
    )
    .await
    .expect(204);
    assert_eq!(listed(&api, &ro).await, json!({"hub3": "ReadOnly"}));
    assert_eq!(listed(&api, &rw).await, json!({"hub3": "ReadExec"}));
    api.call(
        "PATCH",
        "/api/latest/hubs/hub3/props",
        Some(json!({"Access_List": null})),
    )
    .await
    .expect(204);
    assert_eq!(listed(&api, &rw).await, json!({"hub3": "ReadWrite"}));
    let props = api
        .call("GET", "/api/latest/hubs/hub3/props", None)
        .await
        .expect(200)
        .json();
    assert!(props.get("Access_List").is_none(), "{props}");
    assert_eq!(props["Description"], "mine");
}
