//! HVR conformance: location tests, database browsing, the query interface and table adapt,
//! against real SQLite and PostgreSQL databases.

use sluice_test_support::TestDatabase;

use super::*;

const H: &str = "/api/latest/hubs/hub1";

/// A PostgreSQL location `loc` of hub1 on `db` as `user` (trust authentication, no password).
async fn pg_location(api: &Api, loc: &str, db: &TestDatabase, user: &str, schema: &str) {
    api.call(
        "POST",
        &format!("{H}/definition/locs"),
        Some(json!({"loc": loc, "props": pg_props(db, user, schema)})),
    )
    .await
    .expect(201);
}

fn pg_props(db: &TestDatabase, user: &str, schema: &str) -> Value {
    json!({"Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 5432,
        "Database_Name": db.name, "Database_User": user, "Database_Schema": schema})
}

async fn pg_exec(db: &TestDatabase, sql: &str) {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
}

#[tokio::test]
async fn location_tests_report_the_class_flavor() {
    let api = Api::start(false).await;
    api.define(3).await;
    let a = api
        .call("POST", &format!("{H}/locs/src/test"), None)
        .await
        .expect(200)
        .json();
    let props = &a["discovered_props"];
    assert_eq!(props["Class_Flavor"], "vanilla", "{a}");
    assert!(props["Class_Version"].is_string(), "{a}");
    assert!(props.get("Props_Not_Used").is_none(), "{a}");

    let db = TestDatabase::create("browse_test").await;
    pg_location(&api, "pg", &db, "postgres", "public").await;
    let a = api
        .call(
            "POST",
            &format!("{H}/locs/pg/test"),
            Some(json!({"channel": "ch1"})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["discovered_props"]["Class_Flavor"], "vanilla", "{a}");
    let a = api
        .call(
            "POST",
            &format!("{H}/new_loc/test"),
            Some(json!({"props": pg_props(&db, "postgres", "public")})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["discovered_props"]["Class_Flavor"], "vanilla", "{a}");
    // Stored properties sluice does not act on are named.
    let mut props = pg_props(&db, "postgres", "public");
    props["Capture_Method"] = json!("DIRECT");
    props["Agent_Host"] = json!("somewhere");
    api.call(
        "POST",
        &format!("{H}/definition/locs"),
        Some(json!({"loc": "pgextra", "props": props})),
    )
    .await
    .expect(201);
    let a = api
        .call("POST", &format!("{H}/locs/pgextra/test"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        a["discovered_props"]["Props_Not_Used"],
        json!({"Agent_Host": "not used", "Capture_Method": "not used"}),
        "{a}"
    );
    // props_from: the stored location's props, completed by the body's.
    let a = api
        .call(
            "POST",
            &format!("{H}/new_loc/test"),
            Some(json!({"props_from": "pg", "props": {"Database_Schema": "nowhere"}})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["discovered_props"]["Schema_Exists"], "false", "{a}");
    // An unknown channel, an unknown location.
    api.call(
        "POST",
        &format!("{H}/locs/pg/test"),
        Some(json!({"channel": "nope"})),
    )
    .await
    .expect(400);
    api.call("POST", &format!("{H}/locs/nope/test"), None)
        .await
        .expect(404);
}

#[tokio::test]
async fn browsing_answers_only_what_the_credentials_see() {
    let api = Api::start(false).await;
    api.define(3).await;
    let db = TestDatabase::create("browse_see").await;
    let role = db.name.replace("browse_see", "browse_role");
    pg_exec(
        &db,
        &format!(
            "CREATE SCHEMA visible; CREATE SCHEMA hidden;
             CREATE TABLE visible.items (id int PRIMARY KEY, label varchar(40) NOT NULL, price numeric(10,2));
             CREATE TABLE hidden.secrets (id int);
             CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA visible TO {role};
             GRANT SELECT ON visible.items TO {role};"
        ),
    )
    .await;
    pg_location(&api, "pgro", &db, &role, "visible").await;
    pg_location(&api, "pgadm", &db, "postgres", "public").await;

    let a = api
        .call("GET", &format!("{H}/locs/pgro/db/schemas"), None)
        .await
        .expect(200)
        .json();
    let schemas: Vec<&str> = a["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(schemas.contains(&"visible"), "{a}");
    assert!(!schemas.contains(&"hidden"), "{a}");
    assert!(!schemas.iter().any(|s| s.starts_with("pg_")), "{a}");
    assert_eq!(a["default_schema"], "visible");
    let a = api
        .call("GET", &format!("{H}/locs/pgadm/db/schemas"), None)
        .await
        .expect(200)
        .json();
    assert!(
        a["schemas"].as_array().unwrap().contains(&json!("hidden")),
        "{a}"
    );
    let a = api
        .call(
            "POST",
            &format!("{H}/new_loc/db/schemas"),
            Some(json!({"props": pg_props(&db, &role, "visible")})),
        )
        .await
        .expect(200)
        .json();
    assert!(
        !a["schemas"].as_array().unwrap().contains(&json!("hidden")),
        "{a}"
    );

    let a = api
        .call("GET", &format!("{H}/locs/pgro/db/tables"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        a,
        json!({"schema": "visible", "tables": [{"base_name": "items", "type": "Table"}]})
    );
    let a = api
        .call(
            "GET",
            &format!("{H}/locs/pgro/db/tables/items/columns?schema=visible"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["key_mode"], "explicit");
    let cols = a["cols"].as_array().unwrap();
    assert_eq!(cols.len(), 3, "{a}");
    assert_eq!(cols[0]["basecolname"], "id");
    assert_eq!(cols[0]["from_db"]["key"], 1);
    assert_eq!(cols[1]["from_db"]["data_type"], "varchar(40)");
    assert_eq!(cols[1]["from_db"]["attributes"]["nullable"], false);
    assert_eq!(cols[2]["from_db"]["attributes"]["prec"], 10);
    api.call(
        "GET",
        &format!("{H}/locs/pgro/db/tables/nothing/columns"),
        None,
    )
    .await
    .expect(404);

    // SQLite: one schema, its tables and columns.
    let a = api
        .call("GET", &format!("{H}/locs/src/db/schemas"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"schemas": ["main"], "default_schema": "main"}));
    let a = api
        .call("GET", &format!("{H}/locs/src/db/tables"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        a["tables"],
        json!([{"base_name": "orders", "type": "Table"}])
    );

    drop(api);
    pg_exec(&db, &format!("DROP OWNED BY {role}; ")).await;
    drop(db);
    let admin = sluice_test_support::pg_admin().await;
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

#[tokio::test]
async fn environment_files_and_levels() {
    let api = Api::start(false).await;
    api.define(1).await;
    let a = api
        .call(
            "GET",
            &format!("{H}/locs/src/env/vars?vars=ORACLE_HOME&vars=ORACLE_SID"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"ORACLE_HOME": "", "ORACLE_SID": ""}));
    api.call("GET", &format!("{H}/locs/src/env/vars?vars=HOME"), None)
        .await
        .expect(400);
    api.call("GET", &format!("{H}/locs/src/env/vars"), None)
        .await
        .expect(400);
    let a = api
        .call("GET", &format!("{H}/locs/src/env/oratab"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"oracle_sid": "", "oracle_home": ""}));
    let a = api
        .call("GET", &format!("{H}/locs/src/dirs"), None)
        .await
        .expect(501);
    assert!(a.text.contains("no file locations"), "{}", a.text);
    api.call("GET", &format!("{H}/dirs?path=/etc"), None)
        .await
        .expect(501);
    api.call("GET", &format!("{H}/locs/nope/dirs"), None)
        .await
        .expect(404);
    let a = api
        .call(
            "POST",
            &format!("{H}/mapdoc/parse"),
            Some(json!({"mapdoc": "orders"})),
        )
        .await
        .expect(501);
    assert!(a.text.contains("mapspec"), "{}", a.text);
    api.call("POST", &format!("{H}/mapdoc/parse"), Some(json!({})))
        .await
        .expect(400);

    let ro = api.user("reader", "ReadOnly").await;
    api.call_as(Some(&ro), "GET", &format!("{H}/locs/src/db/schemas"), None)
        .await
        .expect(200);
    api.call_as(Some(&ro), "POST", &format!("{H}/locs/src/test"), None)
        .await
        .expect(200);
    let new_loc = json!({"props": {"Class": "sqlite", "Database_Name": "x.db"}});
    // A location not yet defined is connected to where the body says: ReadWrite, as defining one.
    for what in ["db/schemas", "db/tables", "db/tables/orders/columns"] {
        api.call_as(
            Some(&ro),
            "POST",
            &format!("{H}/new_loc/{what}"),
            Some(new_loc.clone()),
        )
        .await
        .expect(403);
    }
    for (method, path, body) in [
        ("POST", format!("{H}/new_loc/test"), Some(new_loc)),
        (
            "GET",
            format!("{H}/locs/src/env/vars?vars=ORACLE_SID"),
            None,
        ),
        (
            "POST",
            format!("{H}/channels/ch1/locs/src/adapt/apply"),
            None,
        ),
    ] {
        api.call_as(Some(&ro), method, &path, body)
            .await
            .expect(403);
    }
}

#[tokio::test]
async fn the_query_interface_shows_where_tables_sit() {
    let api = Api::start(false).await;
    api.define(2).await;
    let a = api
        .call("GET", &format!("{H}/query/channels?fetch=tables"), None)
        .await
        .expect(200)
        .json();
    let src = &a["ch1"]["locs"]["src"];
    assert_eq!(src["capture"], true, "{a}");
    assert_eq!(src["integrate"], false, "{a}");
    assert_eq!(src["capture_tables"], 1, "{a}");
    assert_eq!(
        src["tables"]["orders"],
        json!({"schema": "main", "base_name": "orders", "capture": true, "integrate": false})
    );
    assert_eq!(a["ch1"]["locs"]["tgt"]["integrate_tables"], 1, "{a}");
    let a = api
        .call("GET", &format!("{H}/query/channels/ch1/locs?loc=tgt"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(a.as_object().unwrap().len(), 1, "{a}");
    assert!(a["tgt"].get("tables").is_none(), "{a}");
    let a = api
        .call("GET", &format!("{H}/query/channels/ch1/tables"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        a["orders"]["schema_bases"],
        json!([{"schema": "main", "schema_type": "discovered", "base_name": "orders",
            "cap_locs": ["src"], "integ_locs": ["tgt"]}])
    );
    // The channel declares no columns for orders: they come from the database.
    let a = api
        .call(
            "GET",
            &format!("{H}/query/channels/ch1/locs/src/tables/orders"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["key_mode"], "explicit", "{a}");
    let cols = a["cols"].as_array().unwrap();
    assert_eq!(cols.len(), 3, "{a}");
    assert_eq!(cols[0]["hvrcolname"], "id");
    assert_eq!(cols[0]["core"]["key"], 1);
    assert_eq!(cols[1]["core"]["attributes"]["nullable"], false);
    api.call("GET", &format!("{H}/query/channels/nope/tables"), None)
        .await
        .expect(404);
    api.call(
        "GET",
        &format!("{H}/query/channels/ch1/locs/src/tables/nope"),
        None,
    )
    .await
    .expect(404);
    api.call("GET", &format!("{H}/query/channels?fetch=colours"), None)
        .await
        .expect(400);
}

#[tokio::test]
async fn adapt_finds_an_added_column_and_applies_it() {
    let api = Api::start(false).await;
    api.define(2).await;
    let src = api.hub.dir().join("src.db");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
        .unwrap();
    let adapt = format!("{H}/channels/ch1/locs/src/adapt");

    // The new table is found, then added with its columns.
    let a = api
        .call(
            "POST",
            &format!("{adapt}/check"),
            Some(json!({"add_tables": true})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a,
        json!({"add_tables": [{"schema": "main", "base_name": "customers", "type": "Table"}]})
    );
    let a = api
        .call(
            "POST",
            &format!("{adapt}/apply"),
            Some(json!({"add_tables": true, "mapspec": {"tables": [{"pattern": "cust*"}]}})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a,
        json!({"add_tables": [{"schema": "main", "base_name": "customers", "table": "customers", "type": "Table"}]})
    );

    // A column added in the database is a difference until applied.
    conn.execute_batch("ALTER TABLE customers ADD COLUMN email TEXT;")
        .unwrap();
    let a = api
        .call(
            "POST",
            &format!("{adapt}/check"),
            Some(json!({"tables_in_channel": {"tables": ["customers"]}})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a["tables_in_channel"]["customers"]["diff"],
        json!(["col_added"]),
        "{a}"
    );
    assert_eq!(a["tables_in_channel"]["customers"]["exists_in_db"], true);
    let a = api
        .call("POST", &format!("{adapt}/check/customers"), None)
        .await
        .expect(200)
        .json();
    let email = a["cols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hvrcolname"] == "email")
        .cloned()
        .unwrap_or_else(|| panic!("no email column: {a}"));
    assert!(email.get("core").is_none(), "{email}");
    assert_eq!(email["from_db"]["diff"], json!(["col_added"]));
    // Ignoring the difference hides it.
    let a = api
        .call(
            "POST",
            &format!("{adapt}/check"),
            Some(json!({"tables_in_channel": {"ignore_diff": ["col_added"]}})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a["tables_in_channel"]["customers"]["diff"],
        json!([]),
        "{a}"
    );

    let a = api
        .call(
            "POST",
            &format!("{adapt}/apply"),
            Some(json!({"tables_in_channel": {}})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a["tables_in_channel"]["customers"]["diff"],
        json!(["col_added"]),
        "{a}"
    );
    let t = api
        .call(
            "GET",
            &format!("{H}/definition/channels/ch1/tables/customers"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert!(t["cols"].get("email").is_some(), "{t}");
    let a = api
        .call("POST", &format!("{adapt}/check"), None)
        .await
        .expect(200)
        .json();
    assert_eq!(
        a["tables_in_channel"]["customers"]["diff"],
        json!([]),
        "{a}"
    );
    let events = api
        .call(
            "GET",
            &format!("{H}/events?type=Table_Definition_Adapt"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(events.as_object().unwrap().len(), 2, "{events}");

    // Other channels, and hostile input.
    let a = api
        .call(
            "POST",
            &format!("{adapt}/other_channels"),
            Some(json!({"tables": [{"base_name": "orders"}]})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!([]));
    api.call(
        "POST",
        &format!("{adapt}/check"),
        Some(json!({"tables_in_channel": {"tables": ["nope"]}})),
    )
    .await
    .expect(404);
    api.call(
        "POST",
        &format!("{adapt}/check"),
        Some(json!({"mapspec": {"tables": [{"base_name": "a", "pattern": "b"}]}})),
    )
    .await
    .expect(400);
    api.call(
        "POST",
        &format!("{H}/channels/ch1/locs/nope/adapt/check"),
        None,
    )
    .await
    .expect(404);
}

#[tokio::test]
async fn adapt_adds_a_postgresql_table_like_hvr() {
    let api = Api::start(true).await;
    api.define(1).await;
    let db = TestDatabase::create("browse_adapt").await;
    pg_exec(
        &db,
        "CREATE TABLE public.customer (id int PRIMARY KEY, name text);
         CREATE TABLE public.other (id int);",
    )
    .await;
    pg_location(&api, "pg", &db, "postgres", "public").await;
    api.call(
        "POST",
        &format!("{H}/definition/channels"),
        Some(json!({
            "channel": "chp",
            "loc_groups": {"SOURCE": {"members": ["pg"]}},
            "tables": {},
            "actions": [{"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"}]
        })),
    )
    .await
    .expect(201);
    // The request and the answer pyhvr's test asserts exactly.
    let a = api
        .call(
            "POST",
            &format!("{H}/channels/chp/locs/pg/adapt/apply"),
            Some(
                json!({"add_tables": true, "add_table_group": {"group": "GENERAL"},
                "mapspec": {"tables": [{"schema": "public", "base_name": "customer"}]}}),
            ),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        a,
        json!({"add_tables": [{"base_name": "customer", "schema": "public", "table": "customer", "type": "Table"}]})
    );
    let t = api
        .call(
            "GET",
            &format!("{H}/definition/channels/chp/tables/customer"),
            None,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(t["table_group"], "GENERAL", "{t}");
    assert_eq!(t["cols"]["id"]["key"], 1, "{t}");
    let a = api
        .call(
            "POST",
            &format!("{H}/channels/chp/locs/pg/adapt/check"),
            Some(json!({"tables_in_channel": {}, "add_tables": true, "fetch_extra": ["db_stats"]})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a["tables_in_channel"]["customer"]["diff"], json!([]), "{a}");
    assert_eq!(
        a["add_tables"],
        json!([{"schema": "public", "base_name": "other", "type": "Table", "db_stats": {"num_rows": "0"}}])
    );
}

/// A hub server whose location policy is a server's: SQLite files only under `data`, `${VAR}`
/// only for `DB_*`.
async fn start_guarded() -> Api {
    let repository = Arc::new(TestRepository::new(false).await);
    let home = repository.dir().to_owned();
    std::fs::create_dir_all(home.join("data")).unwrap();
    let config = sluice_api::HubConfig {
        location_policy: Some(
            sluice_service::policy::LocationPolicy::server(
                "DB_*",
                &home.join("data"),
                vec![home.join("hub.db")],
            )
            .unwrap(),
        ),
        ..TestHub::config(&repository)
    };
    let hub = TestHub::serve(repository, config).await;
    let mut api = Api {
        hub,
        http: reqwest::Client::new(),
        token: String::new(),
    };
    api.token = api.login("admin", ADMIN_PASSWORD).await;
    api
}

#[tokio::test]
async fn new_locations_go_through_the_location_policy() {
    let api = start_guarded().await;
    api.call(
        "POST",
        "/api/latest/hubs",
        Some(json!({"hub": "hub1", "props": {"Description": "guarded"}})),
    )
    .await
    .expect(204);
    let outside = api.hub.dir().join("elsewhere.db");
    rusqlite::Connection::open(&outside)
        .unwrap()
        .execute_batch("CREATE TABLE secret_table (id int);")
        .unwrap();
    for name in [
        outside.to_string_lossy().into_owned(),
        "../elsewhere.db".to_owned(),
        "/nonexistent/${HOME}.db".to_owned(),
    ] {
        for path in [
            "db/schemas",
            "db/tables",
            "db/tables/secret_table/columns",
            "test",
        ] {
            let a = api
                .call(
                    "POST",
                    &format!("{H}/new_loc/{path}"),
                    Some(json!({"props": {"Class": "sqlite", "Database_Name": name}})),
                )
                .await
                .expect(400);
            assert!(
                a.text.contains("Database_Name"),
                "{path} {name}: {}",
                a.text
            );
            assert!(!a.text.contains("secret_table"), "{}", a.text);
            assert!(!a.text.contains("/root"), "{}", a.text);
        }
    }
    // Inside the data directory it is fine.
    let a = api
        .call(
            "POST",
            &format!("{H}/new_loc/db/tables"),
            Some(json!({"props": {"Class": "sqlite", "Database_Name": "inside.db"}})),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(a, json!({"schema": "main", "tables": []}));
}
