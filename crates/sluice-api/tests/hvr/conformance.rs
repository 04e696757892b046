//! The walk over every operation of HVR's REST document (`reference/`, 243 operations) against a
//! real hub server: for each, a request built from the documented schema (with the names of a
//! fixture hub where the schema cannot know them), then the answer is classified:
//!
//! * **served**: a 2xx answer, whose body validates against the documented response schema;
//! * **not in sluice**: 501 saying why (operations of HVR's own product, see `hvr/product.rs`);
//! * **refused**: a documented error status for a documented reason, listed in [`REFUSED`] with it.
//!
//! Anything else fails the test: a missing route (404 `no such route`, 405), an undocumented
//! status, a body that does not validate, a refusal not listed (or a listed one that is now served).
//! The walk also writes the table of `docs/hvr-compatibility.md` and fails when the file differs
//! (`SLUICE_BLESS=1` rewrites it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures::StreamExt;

use super::*;

const DOCUMENT: &str = include_str!("reference/hvr6-openapi-v6.1.0.3.json");

/// Operations the walk expects to be refused, by operation id, with the status and the reason
/// the compatibility document gives.
const REFUSED: &[(&str, u16, &str)] = &[
    (
        "control_get",
        404,
        "sluice's capture and integrate jobs take no control messages (they are suspended, \
         started or deactivated instead), so none exists, and the error says so",
    ),
    (
        "controls_delete_post",
        404,
        "sluice's capture and integrate jobs take no control messages (they are suspended, \
         started or deactivated instead), so none exists, and the error says so",
    ),
    (
        "loc_task_controls_post",
        400,
        "control messages go to capture (`cap`) and integrate (`integ`) tasks, and sluice's \
         take none (they are suspended, started or deactivated instead); the walk's task is \
         neither and the error names the two",
    ),
    (
        "repos_post",
        400,
        "the repository is chosen when `sluice serve` starts and exists while it runs; the error \
         says so",
    ),
    (
        "repos_delete",
        400,
        "a running hub server does not drop its own repository; the error says how to remove one",
    ),
    (
        "wallet_disable_post",
        400,
        "sluice always seals stored passwords; the error says so",
    ),
];

/// Answers whose documented schema is wrong in HVR's document (its generator lost a level), by
/// operation id: the schema the walk validates against instead, and why.
fn corrected_schema(id: &str, documented: &Value) -> Option<(Value, &'static str)> {
    match id {
        "definition_hub_actions_get"
        | "definition_loc_actions_get"
        | "definition_channel_actions_get" => Some((
            json!({"type": "array", "items": documented}),
            "the document gives one action where HVR answers a list of them",
        )),
        "adapt_other_channels_post" => Some((
            json!({"type": "array", "items": documented}),
            "the document gives one table where HVR answers a list of them",
        )),
        "alerts_get" => Some((
            json!({"type": "array", "items": documented}),
            "the document gives one alert name where HVR answers a list of them",
        )),
        _ => None,
    }
}

/// Prepares the fixture for an operation whose request the schema alone cannot make valid (names
/// of the fixture's objects, values that must fit each other, objects the operation deletes) and
/// answers the body to send, when not the one sampled from the schema.
async fn prepare(id: &str, fx: &mut Fixture) -> Option<Value> {
    let dir = fx.api.hub.dir().to_string_lossy().into_owned();
    let src_db = format!("{dir}/src.db");
    let pair = json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": true});
    Some(match id {
        "auth_password_post" => json!({"username": "admin", "password": ADMIN_PASSWORD}),
        "auth_refresh_post" | "auth_revoke_post" => {
            json!({"refresh_token": fx.refresh_token().await})
        }
        "users_post" => {
            json!({"user": "bob", "authentication": "local", "password": "bob-password-1"})
        }
        "user_password_put" => json!({"new_password": "ann-password-2"}),
        "hubs_post" => json!({"hub": "hub2", "props": {"Description": "another hub"}}),
        "hub_props_patch" | "hub_props_put" => json!({"Description": "changed"}),
        "refresh_post" | "compare_post" => pair,
        // The fixture's target already holds the source's rows (its refresh): stream from now on.
        "activate_post" => json!({"start_immediate": true}),
        "deactivate_post" => {
            let posted = fx
                .api
                .call(
                    "POST",
                    "/api/latest/hubs/hub1/channels/ch1/activate",
                    Some(json!({"start_immediate": true})),
                )
                .await
                .expect(201)
                .json();
            let ev_id = posted["posted_ev_id"].as_str().unwrap().to_owned();
            assert_eq!(fx.api.wait_event(&ev_id).await["state"], "DONE");
            json!({})
        }
        "jobs_suspend_post" | "jobs_unsuspend_post" | "jobs_delete_post" => {
            json!({"jobs": ["ch1-refr-src-tgt"]})
        }
        "events_cancel_post" => {
            let mut pending = pair;
            pending["start_immediate"] = json!(false);
            let posted = fx
                .api
                .call(
                    "POST",
                    "/api/latest/hubs/hub1/channels/ch1/refresh",
                    Some(pending),
                )
                .await
                .expect(201)
                .json();
            json!({"ev_ids": [posted["posted_ev_id"]]})
        }
        "definition_channel_post" => json!({"channel": "ch2", "description": "desc1"}),
        "definition_loc_group_post" => json!({"loc_group": "EXTRA"}),
        "definition_loc_group_delete" => {
            fx.api
                .call(
                    "POST",
                    "/api/latest/hubs/hub1/definition/channels/ch1/loc_groups",
                    Some(json!({"loc_group": "EXTRA"})),
                )
                .await
                .expect(201);
            fx.params.insert("loc_group", "EXTRA".into());
            return None;
        }
        "definition_loc_post" => json!({
            "loc": "loc3",
            "props": {"Class": "sqlite", "Database_Name": format!("{dir}/loc3.db")}
        }),
        "definition_loc_delete" => {
            fx.api
                .call(
                    "POST",
                    "/api/latest/hubs/hub1/definition/locs",
                    Some(json!({
                        "loc": "loc3",
                        "props": {"Class": "sqlite", "Database_Name": format!("{dir}/loc3.db")}
                    })),
                )
                .await
                .expect(201);
            fx.params.insert("loc", "loc3".into());
            return None;
        }
        "definition_loc_put" => json!({"props": {"Class": "sqlite", "Database_Name": src_db}}),
        "new_loc_test_post" | "new_loc_db_schemas_post" => {
            json!({"props": {"Class": "sqlite", "Database_Name": src_db}})
        }
        "alerts_post" => json!({"alert": "a2", "props": {}}),
        "slicing_boundaries_post" => json!({"col": "id", "slices": 2}),
        "jobs_start_post" => {
            // A job with a pending run (posted without start_immediate) is what jobs_start starts.
            let mut pending = pair;
            pending["start_immediate"] = json!(false);
            fx.api
                .call(
                    "POST",
                    "/api/latest/hubs/hub1/channels/ch1/refresh",
                    Some(pending),
                )
                .await
                .expect(201);
            json!({"jobs": ["ch1-refr-src-tgt"]})
        }
        "alert_props_delete_post" => {
            fx.api
                .call(
                    "PATCH",
                    "/api/latest/hubs/hub1/alerts/a1/props",
                    Some(json!({"Description": "late refreshes"})),
                )
                .await;
            json!({"props": ["Description"]})
        }
        "snapshot_restore_post" | "snapshot_inspect_post" => {
            let saved = fx
                .api
                .call("POST", "/api/latest/hubs/hub1/snapshot", Some(json!({})))
                .await;
            assert!(saved.status.is_success(), "snapshot: {}", saved.text);
            if id == "snapshot_inspect_post" {
                json!({"ref": saved.json()["ref"]})
            } else {
                json!({"ref": saved.json()["ref"], "hub": "hub2"})
            }
        }
        "hubserver_props_delete_post" | "repos_props_delete_post" => {
            let (owner, prop) = if id.starts_with("hubserver") {
                ("/api/latest/hubserver/props", "Authentication_Method")
            } else {
                ("/api/latest/repos/props", "Account_Name")
            };
            let set = fx
                .api
                .call("PATCH", owner, Some(json!({ prop: "conformance" })))
                .await;
            assert!(set.status.is_success(), "{owner}: {}", set.text);
            json!({"props": [prop]})
        }
        "job_system_attribute_put" | "job_attribute_put" => json!({"arg1": "2"}),
        "job_system_attribute_delete"
        | "job_attribute_delete"
        | "job_system_env_var_delete"
        | "job_env_var_delete" => {
            let (what, body) = if id.contains("attribute") {
                ("attributes/quota_run", json!({"arg1": "2"}))
            } else {
                ("env_vars/SLUICE_CONFORMANCE", json!({"value": "1"}))
            };
            let owner = if id.starts_with("job_system") {
                "job_system".to_owned()
            } else {
                "jobs/ch1-refr-src-tgt".to_owned()
            };
            fx.api
                .call(
                    "PUT",
                    &format!("/api/latest/hubs/hub1/{owner}/{what}"),
                    Some(body),
                )
                .await
                .expect(204);
            return None;
        }
        "definition_loc_prop_delete" => {
            fx.api
                .call(
                    "PATCH",
                    "/api/latest/hubs/hub1/definition/locs/src/props",
                    Some(json!({"Agent_Host": "db1.example.com"})),
                )
                .await;
            fx.params.insert("prop", "Agent_Host".into());
            return None;
        }
        "definition_loc_group_rename_post" => json!({"new_name": "ORIGIN"}),
        // Renaming what a job names is refused (tested in tests/hvr/definition.rs); the walk
        // renames objects no job uses.
        "definition_channel_rename_post" => {
            fx.api
                .call(
                    "POST",
                    "/api/latest/hubs/hub1/definition/channels",
                    Some(json!({"channel": "ch2", "description": "spare"})),
                )
                .await
                .expect(201);
            fx.params.insert("channel", "ch2".into());
            json!({"new_name": "ch3"})
        }
        "definition_loc_rename_post" => {
            fx.api
                .call(
                    "POST",
                    "/api/latest/hubs/hub1/definition/locs",
                    Some(json!({
                        "loc": "loc3",
                        "props": {"Class": "sqlite", "Database_Name": format!("{dir}/loc3.db")}
                    })),
                )
                .await
                .expect(201);
            fx.params.insert("loc", "loc3".into());
            json!({"new_name": "loc4"})
        }
        "definition_action_modify_post" | "definition_action_replace_post" => json!({
            "type": "Capture",
            "old": {"channel": "ch1", "loc_scope": "SOURCE", "table_scope": "*"},
            "new": {"channel": "ch1", "loc_scope": "SOURCE", "table_scope": "orders"}
        }),
        _ => return None,
    })
}

/// One operation of the document.
struct Operation {
    method: String,
    path: String,
    id: String,
    tag: String,
    op: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            ops.push(Operation {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                id: op["operationId"].as_str().unwrap_or_default().to_owned(),
                tag: op["tags"][0].as_str().unwrap_or("untagged").to_owned(),
                op: op.clone(),
            });
        }
    }
    ops
}

/// A value that satisfies `schema` (required members only; the first of choices).
fn sample(schema: &Value) -> Value {
    if let Some(e) = schema.get("example") {
        return e.clone();
    }
    if let Some(first) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(|c| c.get(0))
    {
        return sample(first);
    }
    if let Some(e) = schema["enum"].get(0) {
        return e.clone();
    }
    match schema["type"].as_str() {
        Some("object") | None if schema.get("properties").is_some() => {
            let mut out = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                out.insert(name.to_owned(), sample(&schema["properties"][name]));
            }
            Value::Object(out)
        }
        Some("object") => json!({}),
        Some("array") => {
            let n = schema["minItems"].as_u64().unwrap_or(0);
            Value::Array((0..n).map(|_| sample(&schema["items"])).collect())
        }
        Some("integer") | Some("number") => json!(schema["minimum"].as_i64().unwrap_or(1)),
        Some("boolean") => json!(false),
        Some("string") => match schema["format"].as_str() {
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            _ => json!("x"),
        },
        _ => Value::Null,
    }
}

/// `schema` in JSON Schema terms: OpenAPI 3.0's `nullable` becomes a choice with null.
fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if k == "nullable" || k == "example" {
                    continue;
                }
                // HVR's document writes `oneOf` where its choices overlap (a string enum beside
                // any string): a value matching two is what it means, so the walk reads `anyOf`.
                if k == "oneOf" {
                    out.insert("anyOf".into(), json_schema(v));
                    continue;
                }
                let v = match k.as_str() {
                    "properties" | "patternProperties" => Value::Object(
                        v.as_object()
                            .unwrap()
                            .iter()
                            .map(|(n, s)| (n.clone(), json_schema(s)))
                            .collect(),
                    ),
                    _ => json_schema(v),
                };
                out.insert(k.clone(), v);
            }
            let out = Value::Object(out);
            if map.get("nullable") == Some(&json!(true)) {
                json!({"anyOf": [out, {"type": "null"}]})
            } else {
                out
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// Where the walk found an operation.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Served(u16),
    NotInSluice(String),
    Refused(u16, String),
    Broken(String),
}

/// The fixture's names for path parameters.
struct Fixture {
    api: Api,
    params: BTreeMap<&'static str, String>,
}

impl Fixture {
    async fn new() -> Fixture {
        let api = Api::start(false).await;
        api.define(3).await;
        let posted = api
            .call(
                "POST",
                "/api/latest/hubs/hub1/channels/ch1/refresh",
                Some(json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": true})),
            )
            .await
            .expect(201)
            .json();
        let ev_id = posted["posted_ev_id"].as_str().unwrap().to_owned();
        api.wait_event(&ev_id).await;
        api.user("ann", "ReadOnly").await;
        api.call(
            "POST",
            "/api/latest/hubs/hub1/alerts",
            Some(json!({"alert": "a1", "props": {}})),
        )
        .await
        .expect(201);
        let params = [
            ("hub", "hub1".to_owned()),
            ("channel", "ch1".to_owned()),
            ("loc", "src".to_owned()),
            ("table", "orders".to_owned()),
            ("loc_group", "SOURCE".to_owned()),
            ("member", "src".to_owned()),
            ("user", "ann".to_owned()),
            ("job", "ch1-refr-src-tgt".to_owned()),
            ("ev_id", ev_id.clone()),
            ("alert", "a1".to_owned()),
            ("attr", "quota_run".to_owned()),
            ("var", "SLUICE_CONFORMANCE".to_owned()),
            ("prop", "Description".to_owned()),
            ("file", "hvr.out".to_owned()),
            // Log archives are days; a job's control id is one of its events.
            ("archive", chrono::Utc::now().format("%Y%m%d").to_string()),
            ("ctrl_id", ev_id.clone()),
            ("task", "refr".to_owned()),
            ("license", "hvr".to_owned()),
        ]
        .into_iter()
        .collect();
        Fixture { api, params }
    }

    /// A refresh token of the admin (a second login).
    async fn refresh_token(&self) -> String {
        let a = self
            .api
            .call_as(
                None,
                "POST",
                "/auth/v1/password",
                Some(json!({"username": "admin", "password": ADMIN_PASSWORD, "refresh": "token"})),
            )
            .await
            .expect(200)
            .json();
        a["refresh_token"].as_str().unwrap().to_owned()
    }

    fn path(&self, template: &str) -> String {
        let mut out = String::new();
        for (i, seg) in template.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => out.push_str(
                    self.params
                        .get(name)
                        .unwrap_or_else(|| panic!("no fixture value for {{{name}}}")),
                ),
                None => out.push_str(seg),
            }
        }
        out
    }
}

/// Walks one operation on a fresh fixture.
async fn walk(op: &Operation) -> (Outcome, String) {
    if op.id == "auth_setup_post" {
        return walk_setup(op).await;
    }
    let mut fx = Fixture::new().await;
    let prepared = prepare(&op.id, &mut fx).await;
    let mut path = fx.path(&op.path);
    let required_query: Vec<(String, Value)> = op.op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query" && p["required"] == json!(true))
        .map(|p| (p["name"].as_str().unwrap().to_owned(), sample(&p["schema"])))
        .collect();
    for (i, (name, value)) in required_query.iter().enumerate() {
        let value = match value {
            Value::Array(items) => items
                .first()
                .map(|v| v.as_str().map_or(v.to_string(), str::to_owned))
                .unwrap_or_default(),
            _ if name == "search_tstamp" => "2026-01-01T00:00:00Z".to_owned(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(&format!("{name}={value}"));
    }
    let body_schema = &op.op["requestBody"]["content"]["application/json"]["schema"];
    let body = prepared.or_else(|| (!body_schema.is_null()).then(|| sample(body_schema)));
    let answer = fx.api.call(&op.method, &path, body).await;
    (classify(op, &answer), path)
}

/// Set-up mode is for a hub server without users: the walk starts one for `/auth/v1/setup`.
async fn walk_setup(op: &Operation) -> (Outcome, String) {
    let repository = Arc::new(TestRepository::new(false).await);
    let mut config = TestHub::config(&repository);
    config.setup_mode = true;
    let api = Api {
        hub: TestHub::serve(repository, config).await,
        http: reqwest::Client::new(),
        token: String::new(),
    };
    let answer = api.call_as(None, &op.method, &op.path, None).await;
    (classify(op, &answer), op.path.clone())
}

/// Where an answer puts the operation.
fn classify(op: &Operation, answer: &Answer) -> Outcome {
    let status = answer.status.as_u16();
    let documented = &op.op["responses"][status.to_string()];
    if status == 501 && answer.text.starts_with("F_JA0501: ") {
        Outcome::NotInSluice(answer.text["F_JA0501: ".len()..].to_owned())
    } else if answer.text.contains("no such route") || status == 405 {
        Outcome::Broken(format!("missing: {status} {}", answer.text))
    } else if (200..300).contains(&status) {
        match validate(&op.id, documented, answer) {
            Ok(()) => Outcome::Served(status),
            Err(e) => Outcome::Broken(format!("{status}: {e}")),
        }
    } else if documented.is_object() || status == 403 || status == 409 {
        Outcome::Refused(status, answer.text.clone())
    } else {
        Outcome::Broken(format!("undocumented status {status}: {}", answer.text))
    }
}

/// Checks a 2xx answer against what the document says of that status.
fn validate(id: &str, documented: &Value, answer: &Answer) -> Result<(), String> {
    let Some(schema) = documented["content"]
        .as_object()
        .and_then(|c| c.values().next())
        .map(|c| &c["schema"])
        .filter(|s| !s.is_null())
    else {
        return Ok(());
    };
    let corrected = corrected_schema(id, schema);
    let schema = corrected.as_ref().map_or(schema, |(s, _)| s);
    if answer.text.is_empty() {
        return Err("an empty body where the document has a schema".into());
    }
    let instance: Value = if schema["type"] == "string" {
        Value::String(answer.text.clone())
    } else {
        serde_json::from_str(&answer.text)
            .map_err(|e| format!("not JSON ({e}): {}", answer.text))?
    };
    let validator = jsonschema::options()
        .build(&json_schema(schema))
        .map_err(|e| format!("the documented schema does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .take(3)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        let mut text = answer.text.clone();
        text.truncate(300);
        Err(format!(
            "does not validate: {} (body {text})",
            errors.join("; ")
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_operation_of_the_document() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let ops = operations(&doc);
    assert_eq!(ops.len(), 243, "HVR's document has 243 operations");
    let only = std::env::var("SLUICE_HVR_OP").ok();
    let outcomes: Vec<(Outcome, String)> = futures::stream::iter(ops.iter())
        .map(|op| {
            let skip = only.as_deref().is_some_and(|o| o != op.id);
            async move {
                if skip {
                    (Outcome::Broken("skipped".into()), String::new())
                } else {
                    walk(op).await
                }
            }
        })
        .buffered(4)
        .collect()
        .await;

    let refused: BTreeMap<&str, (u16, &str)> = REFUSED
        .iter()
        .map(|(id, s, why)| (*id, (*s, *why)))
        .collect();
    let mut problems = Vec::new();
    let mut table = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut last_tag = "";
    for (op, (outcome, path)) in ops.iter().zip(&outcomes) {
        if only.as_deref().is_some_and(|o| o != op.id) {
            continue;
        }
        let status = match outcome {
            Outcome::Served(s) => {
                if refused.contains_key(op.id.as_str()) {
                    problems.push(format!(
                        "{} {}: served now; remove it from REFUSED",
                        op.method, op.path
                    ));
                }
                match corrected_schema(&op.id, &Value::Null) {
                    Some((_, why)) => format!("served ({s}; {why})"),
                    None => format!("served ({s})"),
                }
            }
            Outcome::NotInSluice(why) => format!("not in sluice (501): {why}"),
            Outcome::Refused(s, text) => match refused.get(op.id.as_str()) {
                Some((expected, why)) if expected == s => format!("refused ({s}): {why}"),
                _ => {
                    problems.push(format!(
                        "{} {path} ({}): refused {s}: {text}",
                        op.method, op.id
                    ));
                    format!("refused ({s})")
                }
            },
            Outcome::Broken(why) => {
                problems.push(format!("{} {path} ({}): {why}", op.method, op.id));
                "missing".to_owned()
            }
        };
        *counts
            .entry(match outcome {
                Outcome::Served(_) => "served",
                Outcome::NotInSluice(_) => "not in sluice",
                Outcome::Refused(..) => "refused",
                Outcome::Broken(_) => "missing",
            })
            .or_default() += 1;
        if op.tag != last_tag {
            last_tag = &op.tag;
            let _ = write!(
                table,
                "\n### {}\n\n| operation | method and path | sluice |\n|---|---|---|\n",
                op.tag
            );
        }
        let short = op.path.replacen("/api/v6.1.0.3", "/api/{version}", 1);
        let _ = writeln!(
            table,
            "| `{}` | `{} {}` | {} |",
            op.id,
            op.method,
            short,
            status.replace('|', "\\|").replace('\n', " ")
        );
    }
    if only.is_some() {
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        return;
    }
    let summary = counts
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let document = format!(
        "{HEADER}\nOf the document's {} operations — {summary}.\n{table}",
        ops.len()
    );
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/hvr-compatibility.md"
    );
    if std::env::var("SLUICE_BLESS").is_ok() {
        std::fs::write(file, &document).unwrap();
    } else {
        let current = std::fs::read_to_string(file).unwrap_or_default();
        if current != document {
            problems.push(format!(
                "docs/hvr-compatibility.md is not what the walk found ({summary}); rerun with SLUICE_BLESS=1"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

const HEADER: &str = "# HVR 6 compatibility

sluice's native API is HVR 6's REST API. This page lists every operation of HVR's own document
(HVR REST Interfaces v6.1.0.3, 243 operations; a copy is in
`crates/sluice-api/tests/hvr/reference/`) with how a running sluice hub server answers it. It is
written by the conformance walk (`cargo test -p sluice-api --test hvr conformance`), which calls each
operation on a fresh hub with a request built from the documented schema and checks the answer:

* **served**: the operation does what HVR's does; its answer validates against the documented
  response schema.
* **not in sluice (501)**: an operation of HVR's own product (licences, metering, HVR agents,
  restarting the hub server over the API); the error says why sluice has none.
* **refused**: the request the walk sends is refused for the documented reason given.

Any `/api/{version}/…` (`latest`, `v6.1.0.3`, `v0`, …) reaches the same handlers; errors are
`text/plain` `F_JAxxxx: message` naming the path as the client sent it.
";
