//! Environments: one base definitions file plus an overlay per environment
//! (`sluice.yaml` + `envs/prod.yaml`), rendered into one document before it is compiled.
//!
//! An overlay may:
//! * `hub`: replace the hub (a name, or `{name, description}`);
//! * `rename`: `{locations: {old: new}, channels: {old: new}}` — applied first, references in
//!   location groups and action scopes follow;
//! * `locations`: per location, a JSON merge patch (RFC 7386) onto the base's (`props` replaced
//!   key by key, `null` removes a property; a location the base lacks is added; `null` removes the
//!   location);
//! * `channels`: per channel, a merge patch onto the base's (`tables: {audit: null, extra: {}}`
//!   drops and adds tables, `null` removes the channel), plus `actions_add` (appended) and
//!   `actions_drop` (each entry removes every action whose fields equal all the entry's fields; an
//!   entry matching none is an error).
//!
//! Unknown keys are errors, as in the base file. The result is an ordinary definitions document.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::definition::{Diagnostic, Severity, parse_file};

/// The overlay file of environment `env` next to `base`: `envs/<env>.yaml` (or `.yml`, `.json`)
/// in the base file's directory. Invalid when the name is not a plain name.
pub fn overlay_path(base: &Path, env: &str) -> Result<PathBuf, Vec<Diagnostic>> {
    let plain = !env.is_empty()
        && env.len() <= 64
        && env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !plain {
        return Err(vec![error(
            "",
            format!("environment {env:?} is not a plain name (letters, digits, _ and -)"),
        )]);
    }
    let dir = base
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let envs = dir.join("envs");
    for ext in ["yaml", "yml", "json"] {
        let candidate = envs.join(format!("{env}.{ext}"));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(vec![error(
        "",
        format!(
            "environment {env} has no overlay: {} does not exist (nor .yml, .json)",
            envs.join(format!("{env}.yaml")).display()
        ),
    )])
}

/// The base file's document with environment `env`'s overlay applied (`None`: the base alone).
pub fn render(base: &Path, env: Option<&str>) -> Result<Json, Vec<Diagnostic>> {
    let mut doc = parse_file(base)?;
    if let Some(env) = env {
        let path = overlay_path(base, env)?;
        let overlay = parse_file(&path).map_err(|ds| in_file(&path, ds))?;
        apply_overlay(&mut doc, &overlay).map_err(|ds| in_file(&path, ds))?;
    }
    Ok(doc)
}

/// Applies an overlay document to a base document, reporting every problem at once.
pub fn apply_overlay(doc: &mut Json, overlay: &Json) -> Result<(), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let Some(o) = overlay.as_object() else {
        return Err(vec![error("", "an overlay is a mapping".into())]);
    };
    for key in o.keys() {
        if !["hub", "rename", "locations", "channels"].contains(&key.as_str()) {
            errors.push(error(
                key,
                "unknown overlay key (expected hub, rename, locations, channels)".into(),
            ));
        }
    }
    if !doc.is_object() {
        return Err(vec![error("", "the base document is not a mapping".into())]);
    }
    if let Some(hub) = o.get("hub") {
        doc["hub"] = hub.clone();
    }
    if let Some(rename) = o.get("rename") {
        apply_renames(doc, rename, &mut errors);
    }
    if let Some(locations) = o.get("locations") {
        patch_section(doc, "locations", locations, &mut errors, |_, _, _| {});
    }
    if let Some(channels) = o.get("channels") {
        patch_section(doc, "channels", channels, &mut errors, patch_actions);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn error(path: &str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        path: path.to_owned(),
        message,
    }
}

fn in_file(file: &Path, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics
        .into_iter()
        .map(|mut d| {
            d.path = if d.path.is_empty() {
                file.display().to_string()
            } else {
                format!("{}: {}", file.display(), d.path)
            };
            d
        })
        .collect()
}

fn section_mut<'a>(doc: &'a mut Json, section: &str) -> &'a mut Map<String, Json> {
    if !doc.get(section).is_some_and(Json::is_object) {
        doc[section] = Json::Object(Map::new());
    }
    doc[section].as_object_mut().expect("just made an object")
}

/// `rename: {locations: {old: new}, channels: {old: new}}`.
fn apply_renames(doc: &mut Json, rename: &Json, errors: &mut Vec<Diagnostic>) {
    let Some(r) = rename.as_object() else {
        errors.push(error("rename", "expected a mapping".into()));
        return;
    };
    for (section, pairs) in r {
        if section != "locations" && section != "channels" {
            errors.push(error(
                &format!("rename.{section}"),
                "unknown key (expected locations, channels)".into(),
            ));
            continue;
        }
        let Some(pairs) = pairs.as_object() else {
            errors.push(error(
                &format!("rename.{section}"),
                "expected a mapping old: new".into(),
            ));
            continue;
        };
        for (old, new) in pairs {
            let path = format!("rename.{section}.{old}");
            let Some(new) = new.as_str() else {
                errors.push(error(&path, "expected the new name".into()));
                continue;
            };
            let objects = section_mut(doc, section);
            if objects.contains_key(new) {
                errors.push(error(&path, format!("{new} already exists in the base")));
                continue;
            }
            let Some(object) = objects.remove(old) else {
                errors.push(error(&path, format!("the base has no {old}")));
                continue;
            };
            objects.insert(new.to_owned(), object);
            if section == "locations" {
                rename_location_refs(doc, old, new);
            }
        }
    }
}

/// Follows a location's rename in every channel's location groups and action scopes.
fn rename_location_refs(doc: &mut Json, old: &str, new: &str) {
    let Some(channels) = doc.get_mut("channels").and_then(Json::as_object_mut) else {
        return;
    };
    for channel in channels.values_mut() {
        if let Some(groups) = channel.get_mut("loc_groups").and_then(Json::as_object_mut) {
            for group in groups.values_mut() {
                let members = match group {
                    Json::Array(m) => Some(m),
                    Json::Object(o) => o.get_mut("members").and_then(Json::as_array_mut),
                    _ => None,
                };
                for m in members.into_iter().flatten() {
                    if m.as_str() == Some(old) {
                        *m = Json::from(new);
                    }
                }
            }
        }
        if let Some(actions) = channel.get_mut("actions").and_then(Json::as_array_mut) {
            for action in actions {
                if action.get("loc_scope").and_then(Json::as_str) == Some(old) {
                    action["loc_scope"] = Json::from(new);
                }
            }
        }
    }
}

/// Merge-patches each object of `section`; `extra` handles keys the patch may carry besides the
/// object's own (removed from the patch before merging).
fn patch_section(
    doc: &mut Json,
    section: &str,
    patches: &Json,
    errors: &mut Vec<Diagnostic>,
    extra: fn(&mut Json, &mut Map<String, Json>, &mut Vec<Diagnostic>),
) {
    let Some(patches) = patches.as_object() else {
        errors.push(error(section, "expected a mapping by name".into()));
        return;
    };
    for (name, patch) in patches {
        let objects = section_mut(doc, section);
        if patch.is_null() {
            if objects.remove(name).is_none() {
                errors.push(error(
                    &format!("{section}.{name}"),
                    format!("the base has no {name} to remove"),
                ));
            }
            continue;
        }
        let Some(patch) = patch.as_object() else {
            errors.push(error(
                &format!("{section}.{name}"),
                "expected a mapping (or null to remove it)".into(),
            ));
            continue;
        };
        let mut patch = patch.clone();
        let mut local = Vec::new();
        let object = objects
            .entry(name.clone())
            .or_insert_with(|| Json::Object(Map::new()));
        extra(object, &mut patch, &mut local);
        merge_patch(object, &Json::Object(patch));
        errors.extend(local.into_iter().map(|mut d| {
            d.path = format!("{section}.{name}.{}", d.path);
            d
        }));
    }
}

/// `actions_add` and `actions_drop` of a channel's patch.
fn patch_actions(channel: &mut Json, patch: &mut Map<String, Json>, errors: &mut Vec<Diagnostic>) {
    let drops = patch.remove("actions_drop");
    let adds = patch.remove("actions_add");
    if !channel.get("actions").is_some_and(Json::is_array) {
        channel["actions"] = Json::Array(Vec::new());
    }
    let actions = channel["actions"]
        .as_array_mut()
        .expect("just made an array");
    match drops {
        None => {}
        Some(Json::Array(drops)) => {
            for (i, d) in drops.iter().enumerate() {
                let Some(fields) = d.as_object() else {
                    errors.push(error(
                        &format!("actions_drop[{i}]"),
                        "expected a mapping of the fields to match (type, loc_scope, …)".into(),
                    ));
                    continue;
                };
                let before = actions.len();
                actions.retain(|a| !fields.iter().all(|(k, v)| a.get(k) == Some(v)));
                if actions.len() == before {
                    errors.push(error(
                        &format!("actions_drop[{i}]"),
                        "matches no action of the base".into(),
                    ));
                }
            }
        }
        Some(_) => errors.push(error("actions_drop", "expected a list".into())),
    }
    match adds {
        None => {}
        Some(Json::Array(adds)) => actions.extend(adds),
        Some(_) => errors.push(error("actions_add", "expected a list".into())),
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: &mut Json, patch: &Json) {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Json::Object(Map::new());
    }
    let t = target.as_object_mut().expect("just made an object");
    for (key, value) in p {
        if value.is_null() {
            t.remove(key);
        } else {
            merge_patch(t.entry(key.clone()).or_insert(Json::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Json {
        json!({
            "hub": "dev",
            "locations": {
                "src": {"class": "postgresql", "props": {"Database_Host": "dev-db", "Database_Name": "shop"}},
                "dst": {"class": "sqlite", "props": {"Database_Name": "dev.db"}}
            },
            "channels": {
                "sales": {
                    "loc_groups": {"SOURCE": ["src"], "TARGET": {"members": ["dst"]}},
                    "tables": {"orders": {}, "audit": {}},
                    "actions": [
                        {"type": "Capture", "loc_scope": "src"},
                        {"type": "Integrate", "loc_scope": "TARGET"},
                        {"type": "Restrict", "loc_scope": "src", "params": {"RefreshCondition": "id < 10"}}
                    ]
                }
            }
        })
    }

    #[test]
    fn an_overlay_renames_patches_and_drops() {
        let mut doc = base();
        let overlay = json!({
            "hub": {"name": "prod", "description": "production"},
            "rename": {"locations": {"src": "shop_pg"}, "channels": {"sales": "sales_prod"}},
            "locations": {"shop_pg": {"props": {"Database_Host": "prod-db"}}},
            "channels": {"sales_prod": {
                "tables": {"audit": null, "items": {}},
                "actions_drop": [{"type": "Restrict"}],
                "actions_add": [{"type": "Scheduling", "params": {"RefreshSchedule": "0 2 * * *"}}]
            }}
        });
        apply_overlay(&mut doc, &overlay).unwrap();
        assert_eq!(doc["hub"]["name"], "prod");
        assert_eq!(
            doc["locations"]["shop_pg"]["props"]["Database_Host"],
            "prod-db"
        );
        assert_eq!(
            doc["locations"]["shop_pg"]["props"]["Database_Name"],
            "shop"
        );
        assert!(doc["locations"].get("src").is_none());
        let ch = &doc["channels"]["sales_prod"];
        assert_eq!(ch["loc_groups"]["SOURCE"], json!(["shop_pg"]));
        assert_eq!(ch["tables"], json!({"orders": {}, "items": {}}));
        let types: Vec<_> = ch["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].clone())
            .collect();
        assert_eq!(
            types,
            [json!("Capture"), json!("Integrate"), json!("Scheduling")]
        );
        assert_eq!(ch["actions"][0]["loc_scope"], "shop_pg");
    }

    #[test]
    fn every_overlay_mistake_is_reported() {
        let mut doc = base();
        let overlay = json!({
            "extra": 1,
            "rename": {"locations": {"nope": "x", "src": "dst"}},
            "locations": {"ghost": null},
            "channels": {"sales": {"actions_drop": [{"type": "Transform"}]}}
        });
        let errors = apply_overlay(&mut doc, &overlay).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "extra",
                "rename.locations.nope",
                "rename.locations.src",
                "locations.ghost",
                "channels.sales.actions_drop[0]"
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn environment_names_are_plain_and_overlays_must_exist() {
        let dir = std::env::temp_dir();
        let base = dir.join("sluice.yaml");
        assert!(overlay_path(&base, "../etc").is_err());
        assert!(overlay_path(&base, "").is_err());
        let e = overlay_path(&base, "no_such_env_here").unwrap_err();
        assert!(e[0].message.contains("has no overlay"), "{e:?}");
    }
}
