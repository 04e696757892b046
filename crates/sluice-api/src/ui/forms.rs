//! The dashboard's forms for a newcomer's first steps: hubs (list, create), locations (create,
//! edit, test before saving) and channels (create from the tables discovered at a source). Each
//! change goes through the same service calls, checks and access levels as the REST API's
//! `POST /hubs`, `POST|PUT …/definition/locs`, `POST …/locs/test` and
//! `POST …/definition/channels`.

use askama::Template;
use askama_web::WebTemplate;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value as Json, json};
use sluice_model::definition::LocationClass;
use sluice_model::definition::is_secret_prop;
use sluice_model::{AccessLevel, EventType, LocationName, TableName};
use sluice_service::browse::LocRef;
use sluice_service::{ServiceError, ServiceErrorKind};

use super::actions::{Form, ok};
use super::location_name;
use super::session::{Flash, Viewer, error_flash, navigate_with, redirect_with};
use super::view::Chrome;
use crate::error::dashboard::Refusal;
use crate::extract::QueryList;
use crate::hvr::{hub_name, section, wire};

type Page<T> = Result<T, Refusal>;
type Done = Result<Response, Refusal>;

/// The classes a location form offers.
const CLASSES: [LocationClass; 3] = [
    LocationClass::Postgresql,
    LocationClass::Mariadb,
    LocationClass::Sqlite,
];

/// The refresh modes a new channel's table may take (its `Refresh` action's `Mode`).
const MODES: [(&str, &str); 3] = [
    ("full_replace", "full replace"),
    ("rowwise", "row-wise (insert, update, delete what differs)"),
    (
        "incremental",
        "incremental (rows past the target's greatest column value)",
    ),
];

fn invalid(text: impl Into<String>) -> Flash {
    Flash {
        error: true,
        text: text.into(),
    }
}

/// One hub of the hubs page.
pub(crate) struct HubRow {
    pub name: String,
    pub description: String,
    pub state: String,
}

/// `GET /ui/hubs`: the hubs, and a form to create one.
#[derive(Template, WebTemplate)]
#[template(path = "hubs.html")]
pub(crate) struct HubsPage {
    pub chrome: Chrome,
    pub hubs: Vec<HubRow>,
    /// Whether the viewer may create a hub (SysAdmin).
    pub can_create: bool,
}

pub(crate) async fn hubs(Extension(viewer): Extension<Viewer>) -> Page<HubsPage> {
    viewer.require(AccessLevel::ReadOnly, "the hub list")?;
    let readable = viewer.readable().await?;
    let hubs = viewer
        .service
        .hubs()
        .await?
        .into_iter()
        .filter(|h| readable(&h.hub.name))
        .map(|h| HubRow {
            name: h.hub.name.to_string(),
            description: h.hub.description.clone(),
            state: h.state.to_string(),
        })
        .collect();
    Ok(HubsPage {
        chrome: Chrome::new(&viewer, "Hubs"),
        hubs,
        can_create: viewer.identity.level.allows(AccessLevel::SysAdmin),
    })
}

/// `POST /ui/hubs` (SysAdmin, as `POST /api/…/hubs`): creates a hub, then shows it.
pub(crate) async fn create_hub(Extension(viewer): Extension<Viewer>, body: Bytes) -> Done {
    viewer.require(AccessLevel::SysAdmin, "creating a hub")?;
    let form = Form::parse(&body);
    let name = form.one("hub").unwrap_or("").trim().to_owned();
    let description = form.one("description").unwrap_or("").trim().to_owned();
    Ok(match viewer.service.create_hub(&name, &description).await {
        Ok(_) => navigate_with(
            &format!("/ui/hubs/{name}"),
            ok(format!(
                "hub {name} created: add its locations (the databases), then a channel"
            )),
        ),
        Err(e) => redirect_with("/ui/hubs", error_flash(e)),
    })
}

/// One property field of a location form.
pub(crate) struct PropField {
    pub name: String,
    pub description: String,
    pub required: bool,
    /// A password: never shown, sealed when stored.
    pub secret: bool,
    /// The stored value (empty for a secret).
    pub value: String,
    /// Whether a secret is stored (the field may be left empty to keep it).
    pub stored: bool,
}

/// `GET /ui/hubs/{hub}/new-location?class=` and `GET /ui/hubs/{hub}/locs/{loc}/edit`.
#[derive(Template, WebTemplate)]
#[template(path = "location_form.html")]
pub(crate) struct LocationForm {
    pub chrome: Chrome,
    pub hub: String,
    /// The location being edited, or empty for a new one.
    pub editing: String,
    pub class: String,
    pub classes: Vec<String>,
    pub fields: Vec<PropField>,
}

fn fields(
    class: LocationClass,
    stored: Option<&sluice_model::definition::Location>,
) -> Vec<PropField> {
    sluice_service::registry::property_specs(class)
        .unwrap_or_default()
        .iter()
        .map(|spec| {
            let secret = is_secret_prop(spec.name);
            let value = stored
                .and_then(|l| l.props.get(spec.name))
                .map(|v| v.to_text());
            PropField {
                name: spec.name.to_owned(),
                description: spec.description.to_owned(),
                required: spec.required,
                secret,
                stored: secret && value.is_some(),
                value: if secret {
                    String::new()
                } else {
                    value.unwrap_or_default()
                },
            }
        })
        .collect()
}

fn class_of(text: Option<&str>) -> Result<LocationClass, Refusal> {
    let text = text.unwrap_or("postgresql");
    text.parse::<LocationClass>().map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("class {text:?} is not one sluice connects to"),
        )
    })
}

pub(crate) async fn new_location(
    Extension(viewer): Extension<Viewer>,
    Path(hub): Path<String>,
    query: QueryList,
) -> Page<LocationForm> {
    viewer
        .require_on(&hub, AccessLevel::ReadWrite, "adding a location")
        .await?;
    let hub = hub_name(&hub)?;
    let class = class_of(query.one("class"))?;
    Ok(LocationForm {
        chrome: Chrome::new(&viewer, "New location"),
        hub: hub.to_string(),
        editing: String::new(),
        class: class.as_str().to_owned(),
        classes: CLASSES.iter().map(|c| c.as_str().to_owned()).collect(),
        fields: fields(class, None),
    })
}

pub(crate) async fn edit_location(
    Extension(viewer): Extension<Viewer>,
    Path((hub, loc)): Path<(String, String)>,
) -> Page<LocationForm> {
    viewer
        .require_on(&hub, AccessLevel::ReadWrite, "changing a location")
        .await?;
    let hub = hub_name(&hub)?;
    let name = location_name(&loc)?;
    let stored = viewer.service.location(&hub, &name).await?;
    Ok(LocationForm {
        chrome: Chrome::new(&viewer, format!("Location {name}")),
        hub: hub.to_string(),
        editing: name.to_string(),
        class: stored.class.as_str().to_owned(),
        classes: vec![stored.class.as_str().to_owned()],
        fields: fields(stored.class, Some(&stored)),
    })
}

/// The class's properties as the form filled them in: `(name, value, secret)`, values trimmed,
/// empty when left empty. Properties the class does not have are never taken from a form.
fn form_props(form: &Form, class: LocationClass) -> Vec<(&'static str, String, bool)> {
    sluice_service::registry::property_specs(class)
        .unwrap_or_default()
        .iter()
        .map(|spec| {
            let value = form
                .one(&format!("prop.{}", spec.name))
                .unwrap_or("")
                .trim()
                .to_owned();
            (spec.name, value, is_secret_prop(spec.name))
        })
        .collect()
}

/// `POST /ui/hubs/{hub}/locations`: `do=test` tests the form's location without storing it
/// (ReadWrite, as `POST …/locs/test`); `do=save` stores it (ReadWrite, as `POST` or `PUT
/// …/definition/locs`), a new one when `editing` is empty. An edit changes only the fields the
/// form shows: a field emptied removes that property, an empty password keeps the stored one
/// (sealed or a `${VAR}` reference), and the description and other properties stay.
pub(crate) async fn save_location(
    Extension(viewer): Extension<Viewer>,
    Path(hub): Path<String>,
    body: Bytes,
) -> Done {
    viewer
        .require_on(
            &hub,
            AccessLevel::ReadWrite,
            "adding or changing a location",
        )
        .await?;
    let hub = hub_name(&hub)?;
    let form = Form::parse(&body);
    let editing = match form.one("editing").unwrap_or("") {
        "" => None,
        name => Some(location_name(name)?),
    };
    let stored = match &editing {
        Some(loc) => Some(viewer.service.location(&hub, loc).await?),
        None => None,
    };
    let class = match &stored {
        Some(l) => l.class,
        None => class_of(form.one("class"))?,
    };
    let back = match &editing {
        Some(loc) => format!("/ui/hubs/{hub}/locs/{loc}/edit"),
        None => format!("/ui/hubs/{hub}/new-location?class={}", class.as_str()),
    };
    let entries = form_props(&form, class);
    if form.one("do") == Some("test") {
        // Laid over the stored location when editing: an emptied field removes its property
        // (null), an empty password keeps the stored one.
        let mut props = Map::new();
        for (name, value, secret) in &entries {
            if !value.is_empty() {
                props.insert((*name).to_owned(), json!(value));
            } else if editing.is_some() && !secret {
                props.insert((*name).to_owned(), Json::Null);
            }
        }
        let doc = json!({ "class": class.as_str(), "props": props });
        return Ok(
            match viewer
                .service
                .test_location_document(&hub, &doc, editing.as_ref())
                .await
            {
                Ok(report) => redirect_with(
                    &back,
                    ok(format!(
                        "test passed ({})",
                        super::actions::discovered(&report)
                    )),
                ),
                Err(e) => redirect_with(&back, error_flash(e)),
            },
        );
    }
    let name = match &editing {
        Some(loc) => loc.to_string(),
        None => match LocationName::new(form.one("loc").unwrap_or("").trim()) {
            Ok(n) => n.to_string(),
            Err(e) => return Ok(redirect_with(&back, invalid(format!("name: {e}")))),
        },
    };
    let new = match &stored {
        Some(_) => None,
        None => {
            let mut props = Map::new();
            props.insert("Class".into(), json!(class.as_str()));
            for (name, value, _) in &entries {
                if !value.is_empty() {
                    props.insert((*name).to_owned(), json!(value));
                }
            }
            match wire::location_in(&json!({ "props": props }), &format!("location {name}")) {
                Ok(new) => Some(new),
                Err(e) => return Ok(redirect_with(&back, error_flash(e))),
            }
        }
    };
    // An edit that changes where the password would be sent, without giving it again, loses
    // the stored one (the service drops it): say so rather than "saved".
    let endpoint_moved = stored.as_ref().is_some_and(|l| {
        let specs = sluice_service::registry::property_specs(class).unwrap_or_default();
        let has_secret = entries
            .iter()
            .any(|(n, v, secret)| *secret && v.is_empty() && l.props.contains_key(*n));
        has_secret
            && entries.iter().any(|(n, v, _)| {
                specs.iter().any(|s| s.name == *n && s.endpoint)
                    && l.props.get(*n).map(|p| p.to_text()).unwrap_or_default() != *v
            })
    });
    let description = match &stored {
        None => format!("add_loc {name}"),
        Some(_) => format!("replace_loc {name}"),
    };
    let saved = viewer
        .service
        .edit_definitions(&hub, EventType::DefinitionChange, &description, |doc| {
            let locs = section(doc, "locations");
            match &new {
                Some(new) => {
                    if locs.contains_key(&name) {
                        return Err(ServiceError::new(
                            ServiceErrorKind::Conflict,
                            format!("location {name} already exists"),
                        ));
                    }
                    locs.insert(name.clone(), new.clone());
                }
                None => {
                    let loc = locs
                        .get_mut(&name)
                        .and_then(Json::as_object_mut)
                        .ok_or_else(|| {
                            ServiceError::not_found(format!("location {name} does not exist"))
                        })?;
                    if !loc.get("props").is_some_and(Json::is_object) {
                        loc.insert("props".into(), json!({}));
                    }
                    let props = loc["props"].as_object_mut().expect("just made an object");
                    for (prop, value, secret) in &entries {
                        if !value.is_empty() {
                            props.insert((*prop).to_owned(), json!(value));
                        } else if !secret {
                            props.remove(*prop);
                        }
                    }
                }
            }
            Ok(())
        })
        .await;
    Ok(match saved {
        Ok(_) if endpoint_moved => navigate_with(
            &format!("/ui/hubs/{hub}"),
            invalid(format!(
                "location {name} saved, without its password: it now points elsewhere, so the \
                 stored password was dropped; edit it again and type the password"
            )),
        ),
        Ok(_) => navigate_with(
            &format!("/ui/hubs/{hub}"),
            ok(format!(
                "location {name} {}",
                if stored.is_none() { "added" } else { "saved" }
            )),
        ),
        Err(e) => redirect_with(&back, error_flash(e)),
    })
}

/// A table discovered at the chosen source.
pub(crate) struct FoundTable {
    /// Its name at the source (and in the channel).
    pub name: String,
    /// Why it cannot be taken as it is named, or empty.
    pub unusable: String,
}

/// `GET /ui/hubs/{hub}/new-channel?source=&target=`: pick the source and target locations, then
/// tick the tables found at the source and choose each one's refresh mode.
#[derive(Template, WebTemplate)]
#[template(path = "channel_new.html")]
pub(crate) struct ChannelForm {
    pub chrome: Chrome,
    pub hub: String,
    pub locations: Vec<String>,
    pub source: String,
    pub target: String,
    pub tables: Vec<FoundTable>,
    /// Why the source's tables could not be listed, or empty.
    pub tables_error: String,
    pub modes: Vec<(String, String)>,
}

pub(crate) async fn new_channel(
    Extension(viewer): Extension<Viewer>,
    Path(hub): Path<String>,
    query: QueryList,
) -> Page<ChannelForm> {
    viewer
        .require_on(&hub, AccessLevel::ReadWrite, "adding a channel")
        .await?;
    let hub = hub_name(&hub)?;
    let overview = viewer.service.hub_overview(&hub).await?;
    let locations: Vec<String> = overview
        .locations
        .iter()
        .map(|l| l.name.to_string())
        .collect();
    let pick = |key: &str| {
        query
            .one(key)
            .filter(|v| locations.iter().any(|l| l == v))
            .unwrap_or("")
            .to_owned()
    };
    let (source, target) = (pick("source"), pick("target"));
    let (mut tables, mut tables_error) = (Vec::new(), String::new());
    if !source.is_empty() {
        let loc = location_name(&source)?;
        match viewer
            .service
            .location_tables(&hub, LocRef::Stored(&loc), None)
            .await
        {
            Ok((_, found)) => {
                tables = found
                    .iter()
                    .map(|t| FoundTable {
                        name: t.name.to_string(),
                        unusable: TableName::new(t.name.as_str())
                            .err()
                            .map(|e| e.to_string())
                            .unwrap_or_default(),
                    })
                    .collect()
            }
            Err(e) => tables_error = crate::error::ApiError::from(e).message().to_owned(),
        }
    }
    Ok(ChannelForm {
        chrome: Chrome::new(&viewer, "New channel"),
        hub: hub.to_string(),
        locations,
        source,
        target,
        tables,
        tables_error,
        modes: MODES
            .iter()
            .map(|(m, label)| ((*m).to_owned(), (*label).to_owned()))
            .collect(),
    })
}

/// The channel a form describes, in the API's wire form: one source and one target group,
/// the ticked tables, Capture and Integrate, and a Refresh action per table whose mode is not
/// a full replace.
fn channel_body(form: &Form) -> Result<(String, Json), String> {
    let name = form.one("channel").unwrap_or("").trim().to_owned();
    let source = form.one("source").unwrap_or("");
    let target = form.one("target").unwrap_or("");
    if source.is_empty() || target.is_empty() {
        return Err("choose a source and a target location".into());
    }
    if source == target {
        return Err("the source and the target must be different locations".into());
    }
    let mut tables = Map::new();
    let mut actions = vec![
        json!({"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"}),
        json!({"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}),
    ];
    for table in form.all("table") {
        let name = TableName::new(table).map_err(|e| format!("table {table:?}: {e}"))?;
        tables.insert(name.to_string(), json!({}));
        let mode = form.one(&format!("mode.{name}")).unwrap_or("full_replace");
        let column = form
            .one(&format!("column.{name}"))
            .unwrap_or("")
            .trim()
            .to_owned();
        match mode {
            "full_replace" => {}
            "rowwise" => actions.push(json!({"loc_scope": "TARGET", "table_scope": name.as_str(),
                "type": "Refresh", "params": {"Mode": "rowwise"}})),
            "incremental" if column.is_empty() => {
                return Err(format!(
                    "table {name}: an incremental refresh needs its column (an identity, date or date-time)"
                ));
            }
            "incremental" => {
                actions.push(json!({"loc_scope": "TARGET", "table_scope": name.as_str(),
                "type": "Refresh", "params": {"Mode": "incremental", "IncrementalColumn": column}}))
            }
            other => {
                return Err(format!(
                    "table {name}: mode {other:?} is not one of the listed"
                ));
            }
        }
    }
    if tables.is_empty() {
        return Err("tick at least one table".into());
    }
    let body = json!({
        "description": form.one("description").unwrap_or("").trim(),
        "loc_groups": {"SOURCE": {"members": [source]}, "TARGET": {"members": [target]}},
        "tables": tables,
        "actions": actions,
    });
    Ok((name, body))
}

/// `POST /ui/hubs/{hub}/new-channel` (ReadWrite, as `POST …/definition/channels`).
pub(crate) async fn create_channel(
    Extension(viewer): Extension<Viewer>,
    Path(hub): Path<String>,
    body: Bytes,
) -> Done {
    viewer
        .require_on(&hub, AccessLevel::ReadWrite, "adding a channel")
        .await?;
    let hub = hub_name(&hub)?;
    let form = Form::parse(&body);
    let back = format!(
        "/ui/hubs/{hub}/new-channel?source={}&target={}",
        urlencoding(form.one("source").unwrap_or("")),
        urlencoding(form.one("target").unwrap_or(""))
    );
    let (name, body) = match channel_body(&form) {
        Ok(v) => v,
        Err(text) => return Ok(redirect_with(&back, invalid(text))),
    };
    if let Err(e) = sluice_model::ChannelName::new(&name) {
        return Ok(redirect_with(&back, invalid(format!("name: {e}"))));
    }
    let new = match wire::channel_in(&body, &format!("channel {name}")) {
        Ok(new) => new,
        Err(e) => return Ok(redirect_with(&back, error_flash(e))),
    };
    let saved = viewer
        .service
        .edit_definitions(
            &hub,
            EventType::DefinitionChange,
            &format!("add_channel {name}"),
            |doc| {
                let channels = section(doc, "channels");
                if channels.contains_key(&name) {
                    return Err(ServiceError::new(
                        ServiceErrorKind::Conflict,
                        format!("channel {name} already exists"),
                    ));
                }
                channels.insert(name.clone(), new.clone());
                Ok(())
            },
        )
        .await;
    Ok(match saved {
        Ok(_) => navigate_with(
            &format!("/ui/hubs/{hub}/channels/{name}"),
            ok(format!("channel {name} created: Sync copies its tables")),
        ),
        Err(e) => redirect_with(&back, error_flash(e)),
    })
}

fn urlencoding(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
