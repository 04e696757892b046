//! Every route of the API with the access level it needs, its request body and its answers: the
//! OpenAPI 3.1 document `GET /openapi.json` serves, built with utoipa from the wire types.
//!
//! Each operation names the Rust type of its body and of each answer; their schemas come from
//! `#[derive(ToSchema)]` on the request structs the handlers parse and on the shape types of
//! [`crate::shapes`], `hvr::shapes` and `fivetran::shapes` that describe the JSON handlers build.
//! `tests/openapi.rs` checks that every operation reaches a handler, that every route of the
//! router is documented, and that real answers validate against these schemas.
//!
//! HVR paths are documented as `/api/latest/…`; any `/api/{version}/…` reaches the same handlers.
//! Every `/v1/connectors/…` route also exists as `/v1/connections/…` (both are documented) and
//! every `/v1` route also with a trailing `/` (not documented).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::ToSchema;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, ParameterStyle, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder,
    OneOfBuilder, Ref, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, RefOr, Required, ResponseBuilder,
    ResponsesBuilder,
};

use crate::fivetran::connectors as ft_body;
use crate::fivetran::shapes as ft;
use crate::hvr::shapes as hvr;
use crate::hvr::{hubs as hvr_hubs, ops as hvr_ops};
use crate::shapes;

mod hvr_admin;
mod hvr_arc;
mod hvr_browse;
mod hvr_definition;
mod hvr_monitor;
mod hvr_product;
mod hvr_users;

/// The extension naming the access level an operation needs.
pub const ACCESS_LEVEL: &str = "x-sluice-access-level";

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| {
        document()
            .to_json()
            .expect("an OpenAPI document always serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Auth {
    /// Anyone.
    Anonymous,
    /// A bearer token (HVR API, event hub) of a user with the level named.
    Bearer(&'static str),
    /// An API key (HTTP Basic, the `/v1` face) with the level named.
    Basic(&'static str),
}

/// How errors look on a path: HVR's text or the Fivetran envelope.
#[derive(Clone, Copy, PartialEq)]
enum Face {
    Hvr,
    Fivetran,
}

/// The document being built.
struct Doc {
    paths: BTreeMap<String, PathItem>,
    schemas: BTreeMap<String, RefOr<Schema>>,
    /// Names given to two different schemas (a mistake a unit test catches).
    clashes: Vec<String>,
}

impl Doc {
    /// A `$ref` to `T`'s schema, recording it (and what it refers to) among the components.
    fn schema<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut found = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut found);
        for (name, schema) in found {
            if let Some(old) = self.schemas.insert(name.clone(), schema.clone())
                && old != schema
            {
                self.clashes.push(name);
            }
        }
        Ref::from_schema_name(T::name()).into()
    }

    fn add(&mut self, op: Op) {
        let Op {
            method,
            path,
            builder,
            responses,
        } = op;
        let operation = builder.responses(responses.build()).build();
        match self.paths.get_mut(&path) {
            Some(item) => item.merge_operations(PathItem::new(method, operation)),
            None => {
                self.paths
                    .insert(path.clone(), PathItem::new(method, operation));
            }
        }
    }
}

/// One operation being described.
struct Op {
    method: HttpMethod,
    path: String,
    builder: OperationBuilder,
    responses: ResponsesBuilder,
}

pub(super) fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

impl Op {
    fn new(method: HttpMethod, path: &str, tag: &str, auth: Auth, summary: &str) -> Op {
        let mut builder = OperationBuilder::new()
            .tag(tag)
            .summary(Some(summary))
            .operation_id(Some(operation_id(&method, path)));
        for name in path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            builder = builder.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(path_parameter(path, name))),
            );
        }
        let (scheme, level) = match auth {
            Auth::Anonymous => (None, "anonymous"),
            Auth::Bearer(level) => (Some("bearer"), level),
            Auth::Basic(level) => (Some("basic"), level),
        };
        builder = builder.extensions(Some(
            ExtensionsBuilder::new()
                .add(ACCESS_LEVEL, json!(level))
                .build(),
        ));
        builder = match scheme {
            Some(s) => builder.security(SecurityRequirement::new(s, Vec::<String>::new())),
            // An empty requirement: no authentication.
            None => builder.securities(Some(Vec::<SecurityRequirement>::new())),
        };
        Op {
            method,
            path: path.to_owned(),
            builder,
            responses: ResponsesBuilder::new(),
        }
    }

    fn description(mut self, text: &str) -> Op {
        self.builder = self.builder.description(Some(text));
        self
    }

    /// A JSON body; `optional` when an empty body is read as `{}` and that is a valid request.
    /// A body larger than the route's limit is refused while it is read (413).
    fn body(mut self, schema: RefOr<Schema>, optional: bool) -> Op {
        if !self.path.starts_with("/v1") {
            self = self.errors(Face::Hvr, &[413]);
        }
        self.builder = self.builder.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(schema))
                .required(Some(if optional {
                    Required::False
                } else {
                    Required::True
                }))
                .build(),
        ));
        self
    }

    /// A query parameter.
    fn query(mut self, name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Op {
        self.builder = self.builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema)),
        );
        self
    }

    /// A query parameter that may repeat (`?x=a&x=b`; `?x=a,b` works too).
    fn query_list(mut self, name: &str, description: &str) -> Op {
        self.builder = self.builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .style(Some(ParameterStyle::Form))
                .explode(Some(true))
                .schema(Some(ArrayBuilder::new().items(string()))),
        );
        self
    }

    fn header(mut self, name: &str, description: &str) -> Op {
        self.builder = self.builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(string())),
        );
        self
    }

    /// An answer with a body of `content_type`.
    fn reply(
        mut self,
        status: u16,
        description: &str,
        content_type: &str,
        schema: RefOr<Schema>,
    ) -> Op {
        self.responses = self.responses.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(description)
                .content(content_type, Content::new(Some(schema))),
        );
        self
    }

    /// `GET /events/{topic}/export`: JSON Lines or CSV.
    fn export_reply(mut self) -> Op {
        let text = || Content::new(Some(string().build()));
        self.responses = self.responses.response(
            "200",
            ResponseBuilder::new()
                .description("one stored event per line (CSV: seq,timestamp,topic,routing_key,id,posted_by,payload)")
                .content("application/x-ndjson", text())
                .content("text/csv; charset=utf-8; header=present", text()),
        );
        self
    }

    /// A JSON answer.
    fn json(self, status: u16, description: &str, schema: RefOr<Schema>) -> Op {
        self.reply(status, description, "application/json", schema)
    }

    /// An answer without a body.
    fn empty(mut self, status: u16, description: &str) -> Op {
        self.responses = self.responses.response(
            status.to_string(),
            ResponseBuilder::new().description(description),
        );
        self
    }

    /// Error answers: HVR's `text/plain` `F_XXXXXX: message` or the Fivetran JSON envelope.
    fn errors(mut self, face: Face, statuses: &[u16]) -> Op {
        for status in statuses {
            let description = match status {
                400 => "invalid request",
                401 => "authentication required, or the token or key is invalid or expired",
                403 => "the caller's access level or grants do not allow this",
                404 => "no such object",
                405 => "method not allowed on this path",
                409 => "conflicts with the current state",
                413 => "request body too large",
                429 => "too many attempts (see Retry-After)",
                501 => "not in sluice: an operation of HVR's own product (the message says why)",
                503 => "unavailable now (see Retry-After)",
                _ => "error",
            };
            let response = match face {
                Face::Hvr => ResponseBuilder::new().description(description).content(
                    "text/plain; charset=utf-8",
                    Content::new(Some(Ref::from_schema_name("HvrError"))),
                ),
                Face::Fivetran => ResponseBuilder::new().description(description).content(
                    "application/json",
                    json_content(Ref::from_schema_name("FivetranError").into()),
                ),
            };
            self.responses = self.responses.response(status.to_string(), response);
        }
        self
    }
}

/// A path parameter's schema: HVR names follow sluice's naming rules (`sluice_model::NameKind`).
fn path_parameter(path: &str, name: &str) -> ObjectBuilder {
    let pattern = match name {
        _ if !path.starts_with("/api/") => None,
        "hub" => Some(names::HUB),
        "channel" => Some(names::CHANNEL),
        "loc" => Some(names::LOCATION),
        "group" => Some(names::LOC_GROUP),
        "table" => Some(names::TABLE),
        _ => None,
    };
    string().pattern(pattern)
}

/// Patterns of HVR names (`sluice_model::NameKind`'s rules).
pub(crate) mod names {
    /// A hub.
    pub const HUB: &str = "^[a-z_][a-z0-9_]{0,31}$";
    /// A channel.
    pub const CHANNEL: &str = "^[a-z_][a-z0-9_]{0,11}$";
    /// A location.
    pub const LOCATION: &str = "^[a-z_][a-z0-9_]{0,11}$";
    /// A location group.
    pub const LOC_GROUP: &str = "^[A-Z_][A-Z0-9_]{0,23}$";
    /// A table.
    pub const TABLE: &str = "^[a-z_][a-z0-9_]{0,123}$";
}

/// `getApiLatestHubsHubChannels`-style ids: unique and stable.
fn operation_id(method: &HttpMethod, path: &str) -> String {
    let mut id = match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Patch => "patch",
        HttpMethod::Delete => "delete",
        _ => "other",
    }
    .to_owned();
    for part in path
        .split(['/', '_', '.', '{', '}'])
        .filter(|p| !p.is_empty())
    {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.push_str(chars.as_str());
        }
    }
    id
}

/// The HVR error body.
fn hvr_error_schema() -> Schema {
    string()
        .pattern(Some("^F_[A-Z0-9]{6}: "))
        .description(Some(
            "F_XXXXXX: message (a code, then what went wrong; further lines indented)",
        ))
        .build()
        .into()
}

/// `{"code": "Success", "message"?, "data"}` around `data`.
fn envelope(data: Option<RefOr<Schema>>) -> RefOr<Schema> {
    let mut o = ObjectBuilder::new()
        .property("code", string().pattern(Some("^Success$")))
        .required("code")
        .property("message", string());
    o = match data {
        Some(d) => o.property("data", d).required("data"),
        None => o.required("message"),
    };
    o.additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .build()
        .into()
}

/// A page: `{"items": […], "next_cursor", "nextCursor"}` (`null` on the last page).
fn page(item: RefOr<Schema>) -> RefOr<Schema> {
    let cursor = || {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .build()
    };
    ObjectBuilder::new()
        .property("items", ArrayBuilder::new().items(item))
        .required("items")
        .property("next_cursor", cursor())
        .required("next_cursor")
        .property("nextCursor", cursor())
        .required("nextCursor")
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .build()
        .into()
}

fn boolean() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .build()
        .into()
}

fn count() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .build()
        .into()
}

/// The whole document.
pub fn document() -> OpenApi {
    build().0
}

/// The document, and the names of schemas that clash.
fn build() -> (OpenApi, Vec<String>) {
    let mut doc = Doc {
        paths: BTreeMap::new(),
        schemas: BTreeMap::new(),
        clashes: Vec::new(),
    };
    doc.schema::<shapes::FivetranError>();
    server(&mut doc);
    auth(&mut doc);
    hubs(&mut doc);
    hvr_definition::document(&mut doc);
    operations(&mut doc);
    hvr_admin::document(&mut doc);
    hvr_browse::document(&mut doc);
    hvr_arc::document(&mut doc);
    hvr_monitor::document(&mut doc);
    hvr_product::document(&mut doc);
    hvr_users::document(&mut doc);
    event_hub(&mut doc);
    fivetran(&mut doc);

    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from POST /auth/v1/password (valid 900 s)",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "basic",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "API_KEY:API_SECRET of a key from `sluice apikey create` (the /v1 face)",
                    ))
                    .build(),
            ),
        )
        .schema("HvrError", hvr_error_schema());
    let clashes = doc.clashes;
    for (name, schema) in doc.schemas {
        components = components.schema(name, schema);
    }
    let mut paths = Paths::new();
    for (path, item) in doc.paths {
        paths.paths.insert(path, item);
    }
    let document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("sluice hub server")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HVR 6-compatible REST API (/auth/v1, /api/latest; any /api/{version}/… \
                     path reaches the same handlers), the Fivetran-compatible /v1 face and the \
                     event hub (/topics, /events). Each operation names the access level it needs \
                     in x-sluice-access-level. HVR and event hub errors are text/plain \
                     'F_XXXXXX: message'; /v1 errors are JSON {code, message}.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .tags(Some(
            [
                ("server", "Health, metrics and this document"),
                ("auth", "HVR logins and tokens"),
                ("users", "HVR users"),
                ("hubs", "HVR hubs"),
                (
                    "definition",
                    "HVR Definition Interface: channels, tables, locations",
                ),
                ("jobs", "HVR refresh, compare, jobs and events"),
                (
                    "File and DB Browse Interface",
                    "HVR location tests and browsing a location's database",
                ),
                (
                    "Query Interface",
                    "HVR: where a channel's tables sit at its locations",
                ),
                (
                    "Table Adapt Interface",
                    "HVR: comparing a channel's tables with a database and adapting them",
                ),
                ("event hub", "Topics and events"),
                (
                    "not in sluice",
                    "Operations of HVR's own product (licences, metering, agents, hub server \
                     restart) that answer 501 saying why sluice does not have them",
                ),
                ("fivetran", "The Fivetran-compatible /v1 face"),
            ]
            .map(|(name, text)| TagBuilder::new().name(name).description(Some(text)).build()),
        ))
        .build();
    (document, clashes)
}

pub(super) const HVR_ERRORS: &[u16] = &[400, 401, 403, 404];

fn server(doc: &mut Doc) {
    let health = doc.schema::<shapes::Health>();
    let unavailable = doc.schema::<shapes::HealthUnavailable>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/health",
            "server",
            Auth::Anonymous,
            "Liveness and repository reachability",
        )
        .json(200, "the server and its repository answer", health)
        .json(503, "the repository does not answer", unavailable),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/metrics",
            "server",
            Auth::Bearer("ReadOnly or the scrape token"),
            "Prometheus metrics",
        )
        .description(
            "Bearer: a user's access token (ReadOnly or above) or the scrape token \
             SLUICE_METRICS_TOKEN; SLUICE_METRICS_PUBLIC=true opens them to anyone.",
        )
        .reply(
            200,
            "Prometheus text format 0.0.4",
            "text/plain; version=0.0.4",
            string().build().into(),
        )
        .errors(Face::Hvr, &[401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/openapi.json",
            "server",
            Auth::Anonymous,
            "This document",
        )
        .json(
            200,
            "the OpenAPI 3.1 document",
            ObjectBuilder::new().build().into(),
        ),
    );
}

fn auth(doc: &mut Doc) {
    let tokens = doc.schema::<hvr::Tokens>();
    let login = doc.schema::<hvr::Login>();
    let refresh = doc.schema::<hvr::RefreshRequest>();
    doc.add(
        Op::new(HttpMethod::Post, "/auth/v1/password", "auth", Auth::Anonymous, "Log in")
            .description("A JWT access token (900 s) and, with refresh=token, a refresh token. A wrong user name or password answers 403.")
            .body(login, false)
            .json(200, "logged in", tokens.clone())
            .errors(Face::Hvr, &[400, 403, 429]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            "/auth/v1/refresh",
            "auth",
            Auth::Anonymous,
            "Trade a refresh token for new tokens (the old one stops working)",
        )
        .body(refresh.clone(), false)
        .json(200, "new tokens", tokens)
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            "/auth/v1/revoke",
            "auth",
            Auth::Anonymous,
            "End a refresh token",
        )
        .body(refresh, true)
        .empty(204, "the token (if any) no longer works")
        .errors(Face::Hvr, &[400]),
    );
    let versions = doc.schema::<hvr::ApiVersions>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/api",
            "auth",
            Auth::Anonymous,
            "Supported API versions",
        )
        .json(200, "versions", versions),
    );
    let clock = doc.schema::<hvr::Clock>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/api/latest/hubserver/clock",
            "hubs",
            Auth::Bearer("any"),
            "Server time",
        )
        .json(200, "the time", clock)
        .errors(Face::Hvr, &[401]),
    );
}

const H: &str = "/api/latest/hubs/{hub}";

fn hubs(doc: &mut Doc) {
    let hubs = doc.schema::<hvr::Hubs>();
    let hub = doc.schema::<hvr::Hub>();
    let new_hub = doc.schema::<hvr_hubs::NewHub>();
    let props = doc.schema::<hvr::HubProps>();
    let props_change = doc.schema::<hvr::HubPropsChange>();
    let status = doc.schema::<hvr::HubStatus>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/api/latest/hubs",
            "hubs",
            Auth::Bearer("any"),
            "List hubs",
        )
        .json(200, "hubs by name", hubs)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let lineage = doc.schema::<shapes::Lineage>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/api/latest/lineage",
            "hubs",
            Auth::Bearer("ReadOnly on each hub shown"),
            "Lineage of every hub the caller may read (sluice)",
        )
        .description(
            "Tables at databases (a database known by class, host, port and name as stored, or \
             the SQLite file's canonical path, so locations of several hubs reaching one database \
             share a node) and the flows between them: per channel, table, source and target \
             location, the state of the newest refresh or compare and of the replication jobs. \
             Hubs where the caller has less than ReadOnly are left out; no secret is shown.",
        )
        .json(200, "nodes and edges", lineage)
        .errors(Face::Hvr, &[401]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            "/api/latest/hubs",
            "hubs",
            Auth::Bearer("SysAdmin"),
            "Create a hub",
        )
        .description("Only Description and Access_List (`[{\"user\": \"ann\", \"level\": \"ReadWrite\"}, {\"level\": \"ReadOnly\"}]`: each user's level on the hub; without `user`, every other user's) may be set at creation. The users must exist; the levels are below SysAdmin.")
        .body(new_hub, false)
        .empty(204, "created (HVR answers 204)")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            H,
            "hubs",
            Auth::Bearer("ReadOnly"),
            "One hub",
        )
        .json(200, "the hub", hub)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Delete,
            H,
            "hubs",
            Auth::Bearer("HubOwner"),
            "Delete a hub and everything in it",
        )
        .empty(200, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    for (verb, summary) in [
        ("freeze", "Freeze: no job starts, the scheduler stops"),
        ("unfreeze", "Unfreeze"),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{H}/{verb}"),
                "hubs",
                Auth::Bearer("HubOwner"),
                summary,
            )
            .empty(204, "done")
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/props"),
            "hubs",
            Auth::Bearer("ReadOnly"),
            "Hub properties",
        )
        .query_list("fetch", "only these properties")
        .json(200, "properties by name", props)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{H}/props"),
            "hubs",
            Auth::Bearer("HubOwner"),
            "Set hub properties (null deletes)",
        )
        .body(props_change, false)
        .empty(204, "set")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/query/status"),
            "hubs",
            Auth::Bearer("ReadOnly"),
            "Hub state",
        )
        .json(200, "the state", status)
        .errors(Face::Hvr, HVR_ERRORS),
    );
}

fn operations(doc: &mut Doc) {
    const C: &str = "/api/latest/hubs/{hub}/channels/{channel}";
    let tag = "jobs";
    let refresh = doc.schema::<hvr_ops::RefreshBody>();
    let compare = doc.schema::<hvr_ops::CompareBody>();
    let posted = doc.schema::<hvr::Posted>();
    let plan = doc.schema::<hvr::JobPlan>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/refresh"),
            tag,
            Auth::Bearer("ReadExecRefresh"),
            "Refresh",
        )
        .body(refresh, false)
        .json(201, "the job was posted", posted.clone())
        .json(200, "dry_run: what the refresh would do", plan.clone())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/compare"),
            tag,
            Auth::Bearer("ReadExec"),
            "Compare",
        )
        .body(compare, false)
        .json(201, "the job was posted", posted.clone())
        .json(200, "dry_run: what the compare would do", plan)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let activate = doc.schema::<hvr_ops::ActivateBody>();
    let deactivate = doc.schema::<hvr_ops::DeactivateBody>();
    for (verb, body, summary) in [
        (
            "activate",
            activate,
            "Activate: set up capture and integrate (optionally load the targets first) and start their jobs",
        ),
        (
            "deactivate",
            deactivate,
            "Deactivate: stop the capture and integrate jobs and remove what activation created",
        ),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{C}/{verb}"),
                tag,
                Auth::Bearer("ReadWrite"),
                summary,
            )
            .body(body, false)
            .json(201, "the job was posted", posted.clone())
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
    // sluice extension: one operation per channel matching a pattern.
    let batch = doc.schema::<hvr_ops::BatchBody>();
    let batch_posted = doc.schema::<hvr::BatchPosted>();
    for (verb, level) in [
        ("refresh", "ReadExecRefresh"),
        ("compare", "ReadExec"),
        ("activate", "ReadWrite"),
        ("deactivate", "ReadWrite"),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("/api/latest/hubs/{{hub}}/batch/{verb}"),
                tag,
                Auth::Bearer(level),
                &format!(
                    "Batch {verb} (sluice): one {verb} per channel matching a pattern, at most `parallel` jobs running at once; a pattern matching no channel posts nothing (400)"
                ),
            )
            .body(batch.clone(), false)
            .json(201, "one event per channel was posted (or the channel's error is listed)", batch_posted.clone())
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
}

fn event_hub(doc: &mut Doc) {
    let tag = "event hub";
    let any = Auth::Bearer("any");
    let read = Auth::Bearer("read grant");
    const E: &[u16] = &[400, 401, 403, 404, 503];
    let topics = doc.schema::<shapes::TopicList>();
    let topic = doc.schema::<shapes::Topic>();
    let new_topic = doc.schema::<shapes::NewTopic>();
    let spec = doc.schema::<shapes::TopicSpec>();
    let versions = doc.schema::<shapes::SchemaVersionList>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/topics",
            tag,
            any,
            "Topics the caller may read",
        )
        .json(200, "topics", topics)
        .errors(Face::Hvr, &[401, 503]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            "/topics",
            tag,
            Auth::Bearer("ReadWrite"),
            "Create a topic",
        )
        .body(new_topic, false)
        .json(201, "created", topic.clone())
        .errors(Face::Hvr, &[400, 401, 403, 409, 503]),
    );
    doc.add(
        Op::new(HttpMethod::Get, "/topics/{topic}", tag, read, "One topic")
            .json(200, "the topic", topic.clone())
            .errors(Face::Hvr, E),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            "/topics/{topic}",
            tag,
            Auth::Bearer("ReadWrite"),
            "Replace a topic's spec (a changed schema is a new version)",
        )
        .body(spec, true)
        .json(200, "the topic", topic)
        .errors(Face::Hvr, &[400, 401, 403, 404, 409, 503]),
    );
    doc.add(
        Op::new(
            HttpMethod::Delete,
            "/topics/{topic}",
            tag,
            Auth::Bearer("ReadWrite"),
            "Delete a topic",
        )
        .query("force", boolean(), "also when it holds events")
        .empty(204, "deleted")
        .errors(Face::Hvr, &[400, 401, 403, 404, 409, 503]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/topics/{topic}/schemas",
            tag,
            read,
            "Every schema version of a topic",
        )
        .json(200, "versions, oldest first", versions)
        .errors(Face::Hvr, E),
    );
    let publish = doc.schema::<shapes::Publish>();
    let published = doc.schema::<shapes::Published>();
    let published_list = doc.schema::<shapes::PublishedList>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            "/events",
            tag,
            Auth::Bearer("publish grant"),
            "Publish one event or a batch",
        )
        .body(publish, false)
        .json(
            201,
            "stored (a batch: every event, in order)",
            one_or_many(published.clone(), published_list),
        )
        .json(
            200,
            "one event whose id was already stored: the stored one",
            published,
        )
        .errors(Face::Hvr, &[400, 401, 403, 404, 413, 503]),
    );
    let pattern = "routing key pattern: tokens separated by '.', '*' one token, '>' the rest";
    doc.add(
        Op::new(HttpMethod::Get, "/events/{topic}/stream", tag, read, "Live SSE stream")
            .description("Server-sent events: each event's id is its seq and its data the stored event; `lag` and `cutoff` events tell a slow client what it missed. Browsers may pass the token as ?access_token=.")
            .query("routing_key", string(), pattern)
            .query("after", count(), "start after this sequence number (else Last-Event-ID, else now)")
            .query("access_token", string(), "the token, for clients that cannot set headers")
            .header("Last-Event-ID", "resume after this sequence number")
            .reply(200, "an endless event stream", "text/event-stream", string().build().into())
            .errors(Face::Hvr, E),
    );
    doc.add(
        Op::new(HttpMethod::Get, "/events/{topic}/ws", tag, read, "Live WebSocket stream (same semantics as SSE)")
            .description("Frames {\"type\": \"event\", \"event\": …}, {\"type\": \"lag\", \"behind\"} and {\"type\": \"cutoff\"} (then close code 4000).")
            .query("routing_key", string(), pattern)
            .query("after", count(), "start after this sequence number")
            .query("access_token", string(), "the token, for clients that cannot set headers")
            .empty(101, "switching to the WebSocket protocol")
            .errors(Face::Hvr, E),
    );
    let history = doc.schema::<shapes::HistoryPage>();
    let last = doc.schema::<shapes::EventList>();
    let limit: Schema = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(10_000))
        .build()
        .into();
    let range = |op: Op| {
        op.query("routing_key", string(), pattern)
            .query(
                "start",
                string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
                "events stored at or after (RFC 3339)",
            )
            .query(
                "end",
                string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
                "events stored before (RFC 3339)",
            )
            .query("after", count(), "events after this sequence number")
            .query("cursor", string(), "next_cursor of the previous page")
    };
    doc.add(
        range(Op::new(
            HttpMethod::Get,
            "/events/{topic}/history",
            tag,
            read,
            "History by pattern and time with cursors",
        ))
        .query("limit", limit.clone(), "events per page (default 100)")
        .json(200, "a page of events, oldest first", history)
        .errors(Face::Hvr, E),
    );
    doc.add(
        range(Op::new(
            HttpMethod::Get,
            "/events/{topic}/export",
            tag,
            read,
            "Export as JSON Lines or CSV",
        ))
        .query(
            "format",
            string().enum_values(Some(["jsonl", "ndjson", "csv"])),
            "jsonl (default) or csv; else the Accept header",
        )
        .export_reply()
        .errors(Face::Hvr, E),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/events/{topic}/last",
            tag,
            read,
            "The newest event per matching routing key",
        )
        .query("routing_key", string(), pattern)
        .json(200, "events", last)
        .errors(Face::Hvr, E),
    );
}

fn one_or_many(one: RefOr<Schema>, many: RefOr<Schema>) -> RefOr<Schema> {
    RefOr::T(Schema::OneOf(
        OneOfBuilder::new().item(one).item(many).build(),
    ))
}

fn fivetran(doc: &mut Doc) {
    let tag = "fivetran";
    const E: &[u16] = &[400, 401, 403, 404];
    let connector = doc.schema::<ft::Connector>();
    let config = doc.schema::<ft::SchemaConfig>();
    let group = doc.schema::<ft::Group>();
    let cursor = |op: Op| {
        op.query("cursor", string(), "next_cursor of the previous page")
            .query(
                "limit",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(1000)),
                "items per page (default 100)",
            )
    };
    let message = envelope(None);
    for p in ["connectors", "connections"] {
        let c = format!("/v1/{p}/{{id}}");
        doc.add(
            cursor(Op::new(
                HttpMethod::Get,
                &format!("/v1/{p}"),
                tag,
                Auth::Basic("ReadOnly"),
                "List connectors",
            ))
            .query("group_id", string(), "only connectors of this group (hub)")
            .query(
                "schema",
                string(),
                "only the connector of this schema (channel)",
            )
            .json(
                200,
                "a page of connectors",
                envelope(Some(page(connector.clone()))),
            )
            .errors(Face::Fivetran, E),
        );
        doc.add(
            Op::new(
                HttpMethod::Get,
                &c,
                tag,
                Auth::Basic("ReadOnly"),
                "Connector details (id = HUB.CHANNEL)",
            )
            .json(200, "the connector", envelope(Some(connector.clone())))
            .errors(Face::Fivetran, E),
        );
        let update = doc.schema::<ft_body::UpdateBody>();
        doc.add(
            Op::new(
                HttpMethod::Patch,
                &c,
                tag,
                Auth::Basic("ReadWrite"),
                "Change paused, schedule_type, sync_frequency, daily_sync_time",
            )
            .body(update, true)
            .json(
                200,
                "the changed connector",
                envelope(Some(connector.clone())),
            )
            .errors(Face::Fivetran, E),
        );
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{c}/force"),
                tag,
                Auth::Basic("ReadExecRefresh"),
                "Start a sync, replacing a running one",
            )
            .json(200, "triggered", message.clone())
            .errors(Face::Fivetran, &[400, 401, 403, 404, 409]),
        );
        let sync = doc.schema::<ft_body::SyncBody>();
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{c}/sync"),
                tag,
                Auth::Basic("ReadExecRefresh"),
                "Start a sync",
            )
            .body(sync, true)
            .json(200, "triggered, or already running", message.clone())
            .errors(Face::Fivetran, &[400, 401, 403, 404, 409]),
        );
        let resync = doc.schema::<ft_body::ResyncBody>();
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{c}/resync"),
                tag,
                Auth::Basic("ReadExecRefresh"),
                "Historical resync, or of the tables of a scope",
            )
            .body(resync, true)
            .json(200, "triggered", message.clone())
            .errors(Face::Fivetran, &[400, 401, 403, 404, 409]),
        );
        let by_schema = doc.schema::<ft::TablesBySchema>();
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{c}/schemas/tables/resync"),
                tag,
                Auth::Basic("ReadExecRefresh"),
                "Resync tables",
            )
            .body(by_schema, false)
            .json(200, "triggered", message.clone())
            .errors(Face::Fivetran, &[400, 401, 403, 404, 409]),
        );
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{c}/schemas/{{schema}}/tables/{{table}}/resync"),
                tag,
                Auth::Basic("ReadExecRefresh"),
                "Resync one table",
            )
            .json(200, "triggered", message.clone())
            .errors(Face::Fivetran, &[400, 401, 403, 404, 409]),
        );
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{c}/test"),
                tag,
                Auth::Basic("ReadExec"),
                "Run the setup tests (both locations)",
            )
            .json(
                200,
                "the connector with its setup tests",
                envelope(Some(connector.clone())),
            )
            .errors(Face::Fivetran, E),
        );
        doc.add(
            Op::new(
                HttpMethod::Get,
                &format!("{c}/schemas"),
                tag,
                Auth::Basic("ReadOnly"),
                "Schema config (source tables merged with the channel)",
            )
            .json(200, "the schema config", envelope(Some(config.clone())))
            .errors(Face::Fivetran, E),
        );
        let schemas_body = doc.schema::<ft_body::SchemasBody>();
        doc.add(
            Op::new(
                HttpMethod::Patch,
                &format!("{c}/schemas"),
                tag,
                Auth::Basic("ReadWrite"),
                "Change the schema config",
            )
            .body(schemas_body, true)
            .json(200, "the schema config", envelope(Some(config.clone())))
            .errors(Face::Fivetran, E),
        );
        let reload = doc.schema::<ft_body::ReloadBody>();
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{c}/schemas/reload"),
                tag,
                Auth::Basic("ReadWrite"),
                "Reload the schema config from the source",
            )
            .body(reload, true)
            .json(200, "the schema config", envelope(Some(config.clone())))
            .errors(Face::Fivetran, E),
        );
        let schema_body = doc.schema::<ft_body::SchemaBody>();
        doc.add(
            Op::new(
                HttpMethod::Patch,
                &format!("{c}/schemas/{{schema}}"),
                tag,
                Auth::Basic("ReadWrite"),
                "Enable or disable a schema and its tables",
            )
            .body(schema_body, true)
            .json(200, "the schema config", envelope(Some(config.clone())))
            .errors(Face::Fivetran, E),
        );
        let table_body = doc.schema::<ft_body::TableBody>();
        doc.add(
            Op::new(
                HttpMethod::Patch,
                &format!("{c}/schemas/{{schema}}/tables/{{table}}"),
                tag,
                Auth::Basic("ReadWrite"),
                "Enable or disable a table and its columns",
            )
            .body(table_body, true)
            .json(200, "the schema config", envelope(Some(config.clone())))
            .errors(Face::Fivetran, E),
        );
        let columns = doc.schema::<ft::ColumnConfig>();
        doc.add(
            Op::new(
                HttpMethod::Get,
                &format!("{c}/schemas/{{schema}}/tables/{{table}}/columns"),
                tag,
                Auth::Basic("ReadOnly"),
                "Columns of a table",
            )
            .json(200, "the columns", envelope(Some(columns)))
            .errors(Face::Fivetran, E),
        );
        doc.add(
            cursor(Op::new(
                HttpMethod::Get,
                &format!("/v1/groups/{{id}}/{p}"),
                tag,
                Auth::Basic("ReadOnly"),
                "Connectors of a group",
            ))
            .query(
                "schema",
                string(),
                "only the connector of this schema (channel)",
            )
            .json(
                200,
                "a page of connectors",
                envelope(Some(page(connector.clone()))),
            )
            .errors(Face::Fivetran, E),
        );
    }
    doc.add(
        cursor(Op::new(
            HttpMethod::Get,
            "/v1/groups",
            tag,
            Auth::Basic("ReadOnly"),
            "Groups (hubs)",
        ))
        .json(200, "a page of groups", envelope(Some(page(group.clone()))))
        .errors(Face::Fivetran, E),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/v1/groups/{id}",
            tag,
            Auth::Basic("ReadOnly"),
            "One group",
        )
        .json(200, "the group", envelope(Some(group)))
        .errors(Face::Fivetran, E),
    );
    let destination = doc.schema::<ft::Destination>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/v1/destinations/{id}",
            tag,
            Auth::Basic("ReadOnly"),
            "A group's destination (the target location)",
        )
        .json(200, "the destination", envelope(Some(destination)))
        .errors(Face::Fivetran, E),
    );
    let user = doc.schema::<ft::FivetranUser>();
    doc.add(
        cursor(Op::new(
            HttpMethod::Get,
            "/v1/users",
            tag,
            Auth::Basic("ReadOnly"),
            "Users (all for a SysAdmin key, none for others)",
        ))
        .json(200, "a page of users", envelope(Some(page(user))))
        .errors(Face::Fivetran, E),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two different types with one schema name would overwrite each other's component.
    #[test]
    fn schema_names_are_unique() {
        let (document, clashes) = build();
        assert!(clashes.is_empty(), "schema names used twice: {clashes:?}");
        let n = document.components.expect("components").schemas.len();
        assert!(n > 60, "{n} schemas");
    }

    #[test]
    fn operation_ids_are_unique() {
        let value: serde_json::Value =
            serde_json::from_str(&document().to_json().expect("serializes")).expect("JSON");
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in value["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let id = op["operationId"].as_str().expect("an operationId");
                assert!(ids.insert(id.to_owned()), "{method} {path}: {id} twice");
            }
        }
    }
}
