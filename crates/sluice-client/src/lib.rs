//! A typed client of the sluice hub server's HTTP API, which is the HVR 6 REST API plus a few sluice
//! extensions.
//!
//! ```no_run
//! # async fn demo() -> sluice_client::Result<()> {
//! let client = sluice_client::Client::new("http://127.0.0.1:4341")?;
//! client.login("admin", "secret").await?;
//! for hub in client.hubs().await? {
//!     println!("{} {:?}", hub.name, hub.props.hub_state);
//! }
//! # Ok(()) }
//! ```
//!
//! A [`Client`] is a cheap `Clone` handle. It keeps the session's [`Tokens`]: calls carry the
//! access token, and when it is about to expire, or a call is answered 401, the client gets a new
//! pair with the refresh token once and repeats the call. [`Client::on_new_tokens`] learns every
//! new pair, so a caller can store it (the server expires a refresh token once it was used).
//!
//! Errors are one [`Error`]; an error answer of the server is an [`ApiError`] with the HTTP status
//! and the `F_XXXXXX` code and message of its text body.
#![deny(missing_docs)]

mod error;
mod events;
mod types;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use error::{ApiError, Error, ErrorKind, Result};
pub use events::TailItem;
pub use types::{
    Access, ActivateRequest, BatchChannel, BatchPosted, BatchRequest, CompareRequest,
    DifferenceFilter, EventInfo, EventQuery, EventResult, Granularity, HubInfo, HubProps,
    HubStatus, JobInfo, JobQuery, PostedJob, RefreshRequest, Strategy, Tokens, UserChange,
    UserInfo, event_state,
};

/// A token that expires within this margin is renewed before a call.
const RENEW_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// What the channel listing asks the server to include.
const CHANNEL_FETCH: [&str; 5] = ["tables", "cols", "loc_groups", "members", "channel_actions"];

type TokenHook = Arc<dyn Fn(&Tokens) + Send + Sync>;

/// The session shared by the clones of one client.
#[derive(Default)]
struct Session {
    tokens: Mutex<Option<Tokens>>,
    /// Held while the tokens are renewed, so concurrent calls renew once.
    renewing: tokio::sync::Mutex<()>,
    hook: Mutex<Option<TokenHook>>,
}

/// A client of one hub server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For long-lived streams: no total timeout, only a read timeout (the server sends
    /// keep-alives every 15 s).
    stream_http: reqwest::Client,
    base: Url,
    session: Arc<Session>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// One request, kept so it can be sent again after the tokens were renewed.
struct Call {
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    /// The body's content type.
    body_type: &'static str,
    streaming: bool,
}

impl Call {
    fn new(method: Method, url: Url) -> Call {
        Call {
            method,
            url,
            body: None,
            body_type: "application/json",
            streaming: false,
        }
    }

    fn streaming(mut self) -> Call {
        self.streaming = true;
        self
    }

    fn json(mut self, body: &impl Serialize) -> Call {
        self.body = Some(serde_json::to_vec(body).expect("request bodies are plain JSON values"));
        self
    }
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:4341`), without a session yet.
    pub fn new(base_url: &str) -> Result<Client> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("it has no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("it must not have a query or fragment"));
        }
        // reqwest is built without a crypto provider of its own; another part of the process may
        // have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("sluice-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::Connect {
                url: base.to_string(),
                source,
            })?;
        let stream_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("sluice-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::Connect {
                url: base.to_string(),
                source,
            })?;
        Ok(Client {
            http,
            stream_http,
            base,
            session: Arc::default(),
        })
    }

    /// The same client with a session's tokens (e.g. stored from an earlier login).
    pub fn with_token(self, tokens: Tokens) -> Client {
        *self.session.tokens.lock().expect("token lock") = Some(tokens);
        self
    }

    /// The same client, calling `hook` with every new pair of tokens (login and each renewal).
    pub fn on_new_tokens(self, hook: impl Fn(&Tokens) + Send + Sync + 'static) -> Client {
        *self.session.hook.lock().expect("hook lock") = Some(Arc::new(hook));
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The session's current tokens.
    pub fn tokens(&self) -> Option<Tokens> {
        self.session.tokens.lock().expect("token lock").clone()
    }

    // ---- authentication ----

    /// Logs in with a password (`POST /auth/v1/password`, asking for a refresh token); the client
    /// keeps the tokens. A wrong password is a [`ErrorKind::Forbidden`] error.
    pub async fn login(&self, user: &str, password: &str) -> Result<Tokens> {
        let body =
            serde_json::json!({ "username": user, "password": password, "refresh": "token" });
        let call = Call::new(Method::POST, self.url(&["auth", "v1", "password"])).json(&body);
        let tokens = self.token_call(call).await?;
        self.keep(tokens.clone());
        Ok(tokens)
    }

    /// Gets a new pair of tokens with the refresh token (`POST /auth/v1/refresh`); the server
    /// expires the old refresh token.
    pub async fn refresh_tokens(&self) -> Result<Tokens> {
        let _renewing = self.session.renewing.lock().await;
        self.renew().await
    }

    /// Ends the session: revokes the refresh token (`POST /auth/v1/revoke`) and forgets the tokens.
    pub async fn revoke(&self) -> Result<()> {
        let current = self.tokens();
        *self.session.tokens.lock().expect("token lock") = None;
        let Some(refresh_token) = current.and_then(|t| t.refresh_token) else {
            return Ok(());
        };
        let call = Call::new(Method::POST, self.url(&["auth", "v1", "revoke"]))
            .json(&serde_json::json!({ "refresh_token": refresh_token }));
        checked(self.send(&call, None).await?).await?;
        Ok(())
    }

    // ---- hubs ----

    /// Every hub the user may see (`GET /hubs`).
    pub async fn hubs(&self) -> Result<Vec<HubInfo>> {
        let map = self.get(self.api(&["hubs"])).await?;
        keyed(map, &self.api(&["hubs"]), |h: &mut HubInfo, name| {
            h.name = name
        })
    }

    /// One hub (`GET /hubs/{hub}`).
    pub async fn hub(&self, hub: &str) -> Result<HubInfo> {
        let mut info: HubInfo = self.get(self.api(&["hubs", hub])).await?;
        info.name = hub.to_owned();
        Ok(info)
    }

    /// Creates a hub (`POST /hubs`).
    pub async fn create_hub(&self, hub: &str, description: Option<&str>) -> Result<()> {
        let mut props = Map::new();
        if let Some(d) = description {
            props.insert("Description".into(), d.into());
        }
        let body = serde_json::json!({ "hub": hub, "props": props });
        self.no_content(Call::new(Method::POST, self.api(&["hubs"])).json(&body))
            .await
    }

    /// Deletes a hub (`DELETE /hubs/{hub}`).
    pub async fn delete_hub(&self, hub: &str) -> Result<()> {
        self.no_content(Call::new(Method::DELETE, self.api(&["hubs", hub])))
            .await
    }

    /// Freezes a hub: no job runs until it is unfrozen (`POST /hubs/{hub}/freeze`).
    pub async fn freeze_hub(&self, hub: &str) -> Result<()> {
        self.no_content(Call::new(Method::POST, self.api(&["hubs", hub, "freeze"])))
            .await
    }

    /// Unfreezes a hub (`POST /hubs/{hub}/unfreeze`).
    pub async fn unfreeze_hub(&self, hub: &str) -> Result<()> {
        self.no_content(Call::new(
            Method::POST,
            self.api(&["hubs", hub, "unfreeze"]),
        ))
        .await
    }

    /// A hub's properties (`GET /hubs/{hub}/props`).
    pub async fn hub_props(&self, hub: &str) -> Result<Map<String, Value>> {
        self.get(self.api(&["hubs", hub, "props"])).await
    }

    /// Changes some of a hub's properties; a `null` value deletes one (`PATCH /hubs/{hub}/props`).
    pub async fn modify_hub_props(&self, hub: &str, props: &Map<String, Value>) -> Result<()> {
        let call = Call::new(Method::PATCH, self.api(&["hubs", hub, "props"])).json(props);
        self.no_content(call).await
    }

    /// A hub's state (`GET /hubs/{hub}/query/status`).
    pub async fn hub_status(&self, hub: &str) -> Result<HubStatus> {
        self.get(self.api(&["hubs", hub, "query", "status"])).await
    }

    // ---- lineage ----

    /// Tables at databases and the flows between them, over every hub the user may read
    /// (`GET /api/latest/lineage`, a sluice extension): `{"nodes": […], "edges": […]}`.
    pub async fn lineage(&self) -> Result<Value> {
        self.get(self.api(&["lineage"])).await
    }

    // ---- definitions ----

    /// Every channel with its tables, columns, location groups and actions, by name
    /// (`GET /hubs/{hub}/definition/channels`).
    pub async fn channels(&self, hub: &str) -> Result<Map<String, Value>> {
        let mut url = self.api(&["hubs", hub, "definition", "channels"]);
        add_query(
            &mut url,
            CHANNEL_FETCH.iter().map(|f| ("fetch", f.to_string())),
        );
        self.get(url).await
    }

    /// One channel with its tables, columns, location groups and actions
    /// (`GET /hubs/{hub}/definition/channels/{ch}`).
    pub async fn channel(&self, hub: &str, channel: &str) -> Result<Value> {
        let mut url = self.api(&["hubs", hub, "definition", "channels", channel]);
        add_query(
            &mut url,
            CHANNEL_FETCH.iter().map(|f| ("fetch", f.to_string())),
        );
        self.get(url).await
    }

    /// Adds a channel; `definition` is a channel object (`POST /hubs/{hub}/definition/channels`).
    pub async fn create_channel(&self, hub: &str, channel: &str, definition: &Value) -> Result<()> {
        let body = named(definition, "channel", channel);
        let url = self.api(&["hubs", hub, "definition", "channels"]);
        self.no_content(Call::new(Method::POST, url).json(&body))
            .await
    }

    /// Adds or replaces a channel (`PUT /hubs/{hub}/definition/channels/{ch}`).
    pub async fn put_channel(&self, hub: &str, channel: &str, definition: &Value) -> Result<()> {
        let url = self.api(&["hubs", hub, "definition", "channels", channel]);
        self.no_content(Call::new(Method::PUT, url).json(definition))
            .await
    }

    /// Deletes a channel (`DELETE /hubs/{hub}/definition/channels/{ch}`).
    pub async fn delete_channel(&self, hub: &str, channel: &str) -> Result<()> {
        let url = self.api(&["hubs", hub, "definition", "channels", channel]);
        self.no_content(Call::new(Method::DELETE, url)).await
    }

    /// Every location with its properties, by name (`GET /hubs/{hub}/definition/locs`).
    pub async fn locations(&self, hub: &str) -> Result<Map<String, Value>> {
        let mut url = self.api(&["hubs", hub, "definition", "locs"]);
        add_query(&mut url, [("fetch", "loc_props".to_owned())]);
        self.get(url).await
    }

    /// One location (`GET /hubs/{hub}/definition/locs/{loc}`).
    pub async fn location(&self, hub: &str, location: &str) -> Result<Value> {
        self.get(self.api(&["hubs", hub, "definition", "locs", location]))
            .await
    }

    /// Adds a location; `definition` is `{"props": {…}}` (`POST /hubs/{hub}/definition/locs`).
    pub async fn create_location(
        &self,
        hub: &str,
        location: &str,
        definition: &Value,
    ) -> Result<()> {
        let body = named(definition, "loc", location);
        let url = self.api(&["hubs", hub, "definition", "locs"]);
        self.no_content(Call::new(Method::POST, url).json(&body))
            .await
    }

    /// Adds or replaces a location (`PUT /hubs/{hub}/definition/locs/{loc}`).
    pub async fn put_location(&self, hub: &str, location: &str, definition: &Value) -> Result<()> {
        let url = self.api(&["hubs", hub, "definition", "locs", location]);
        self.no_content(Call::new(Method::PUT, url).json(definition))
            .await
    }

    /// Deletes a location (`DELETE /hubs/{hub}/definition/locs/{loc}`).
    pub async fn delete_location(&self, hub: &str, location: &str) -> Result<()> {
        let url = self.api(&["hubs", hub, "definition", "locs", location]);
        self.no_content(Call::new(Method::DELETE, url)).await
    }

    /// Tests the connection to a location; the answer is the server's report
    /// (`POST /hubs/{hub}/locs/{loc}/test`).
    pub async fn test_location(&self, hub: &str, location: &str) -> Result<Value> {
        let url = self.api(&["hubs", hub, "locs", location, "test"]);
        self.json_or_null(Call::new(Method::POST, url).json(&serde_json::json!({})))
            .await
    }

    /// The hub's whole definition: locations, channels, actions (`GET /hubs/{hub}/definition`).
    pub async fn export_definition(&self, hub: &str) -> Result<Value> {
        self.get(self.api(&["hubs", hub, "definition"])).await
    }

    /// Applies a definition change document (`POST /hubs/{hub}/definition/import`).
    pub async fn import_definition(&self, hub: &str, changes: &Value) -> Result<Value> {
        let url = self.api(&["hubs", hub, "definition", "import"]);
        self.json_or_null(Call::new(Method::POST, url).json(changes))
            .await
    }

    /// What applying a definitions document would change (`POST /hubs/{hub}/definition/plan`,
    /// a sluice extension): `body` is `{"document": …, "prune": bool, "source": "file.yaml"}`.
    pub async fn plan_definitions(&self, hub: &str, body: &Value) -> Result<Value> {
        let url = self.api(&["hubs", hub, "definition", "plan"]);
        self.json(Call::new(Method::POST, url).json(body)).await
    }

    /// Applies a definitions document against the version its plan was made on
    /// (`POST /hubs/{hub}/definition/apply`, a sluice extension): `body` as
    /// [`Client::plan_definitions`] takes it plus `"base_version"`.
    pub async fn apply_definitions(&self, hub: &str, body: &Value) -> Result<Value> {
        let url = self.api(&["hubs", hub, "definition", "apply"]);
        self.json(Call::new(Method::POST, url).json(body)).await
    }

    /// The hub's definitions in the definitions file schema (`GET /hubs/{hub}/definition/file`,
    /// a sluice extension), only the channels matching `channels` when given.
    pub async fn definitions_file(&self, hub: &str, channels: Option<&str>) -> Result<Value> {
        let mut url = self.api(&["hubs", hub, "definition", "file"]);
        if let Some(pattern) = channels {
            url.query_pairs_mut().append_pair("channels", pattern);
        }
        self.get(url).await
    }

    // ---- refresh and compare ----

    /// Posts a refresh (`POST /hubs/{hub}/channels/{ch}/refresh`); it runs on the server.
    /// `request.dry_run` is ignored: see [`Client::plan_refresh`].
    pub async fn refresh(
        &self,
        hub: &str,
        channel: &str,
        request: &RefreshRequest,
    ) -> Result<PostedJob> {
        let request = RefreshRequest {
            dry_run: false,
            ..request.clone()
        };
        let url = self.api(&["hubs", hub, "channels", channel, "refresh"]);
        self.json(Call::new(Method::POST, url).json(&request)).await
    }

    /// The statements a refresh would run, per table; nothing runs (sluice's `dry_run`).
    pub async fn plan_refresh(
        &self,
        hub: &str,
        channel: &str,
        request: &RefreshRequest,
    ) -> Result<Value> {
        let request = RefreshRequest {
            dry_run: true,
            ..request.clone()
        };
        let url = self.api(&["hubs", hub, "channels", channel, "refresh"]);
        self.json(Call::new(Method::POST, url).json(&request)).await
    }

    /// Posts a compare (`POST /hubs/{hub}/channels/{ch}/compare`); it runs on the server.
    /// `request.dry_run` is ignored: see [`Client::plan_compare`].
    pub async fn compare(
        &self,
        hub: &str,
        channel: &str,
        request: &CompareRequest,
    ) -> Result<PostedJob> {
        let request = CompareRequest {
            dry_run: false,
            ..request.clone()
        };
        let url = self.api(&["hubs", hub, "channels", channel, "compare"]);
        self.json(Call::new(Method::POST, url).json(&request)).await
    }

    /// The statements a compare would run, per table; nothing runs (sluice's `dry_run`).
    pub async fn plan_compare(
        &self,
        hub: &str,
        channel: &str,
        request: &CompareRequest,
    ) -> Result<Value> {
        let request = CompareRequest {
            dry_run: true,
            ..request.clone()
        };
        let url = self.api(&["hubs", hub, "channels", channel, "compare"]);
        self.json(Call::new(Method::POST, url).json(&request)).await
    }

    // ---- batches ----

    /// Posts one `verb` (`refresh`, `compare`, `activate`, `deactivate`) per channel matching
    /// `request.channels` (`POST /hubs/{hub}/batch/{verb}`, sluice); they run on the server.
    pub async fn batch(
        &self,
        hub: &str,
        verb: &str,
        request: &BatchRequest,
    ) -> Result<BatchPosted> {
        let url = self.api(&["hubs", hub, "batch", verb]);
        self.json(Call::new(Method::POST, url).json(request)).await
    }

    // ---- activate and deactivate ----

    /// Activates a channel (`POST /hubs/{hub}/channels/{ch}/activate`): the answer names the
    /// `Activate` event, which ends when capture is set up (and the initial load is done).
    pub async fn activate(
        &self,
        hub: &str,
        channel: &str,
        request: &ActivateRequest,
    ) -> Result<PostedJob> {
        let url = self.api(&["hubs", hub, "channels", channel, "activate"]);
        self.json(Call::new(Method::POST, url).json(request)).await
    }

    /// Deactivates a channel (`POST /hubs/{hub}/channels/{ch}/deactivate`): the answer names the
    /// `Deactivate` event, which ends when replication stopped and capture was removed.
    pub async fn deactivate(&self, hub: &str, channel: &str) -> Result<PostedJob> {
        let url = self.api(&["hubs", hub, "channels", channel, "deactivate"]);
        self.json(Call::new(Method::POST, url).json(&serde_json::json!({})))
            .await
    }

    // ---- jobs ----

    /// Jobs, in the server's order (`GET /hubs/{hub}/jobs`).
    pub async fn jobs(&self, hub: &str, query: &JobQuery) -> Result<Vec<JobInfo>> {
        let mut url = self.api(&["hubs", hub, "jobs"]);
        add_query(
            &mut url,
            repeated("channel", &query.channels)
                .chain(repeated("job", &query.jobs))
                // sluice's own fields: HVR answers only what `fetch` names.
                .chain(["num_runs", "last_ev_id", "last_run"].map(|f| ("fetch", f.to_owned()))),
        );
        let map = self.get(url.clone()).await?;
        keyed(map, &url, |j: &mut JobInfo, name| j.name = name)
    }

    /// Starts jobs (`POST /hubs/{hub}/jobs_start`).
    pub async fn start_jobs(&self, hub: &str, jobs: &[String]) -> Result<()> {
        self.jobs_call(hub, "jobs_start", jobs).await
    }

    /// Suspends jobs: they do not run until unsuspended (`POST /hubs/{hub}/jobs_suspend`).
    pub async fn suspend_jobs(&self, hub: &str, jobs: &[String]) -> Result<()> {
        self.jobs_call(hub, "jobs_suspend", jobs).await
    }

    /// Unsuspends jobs (`POST /hubs/{hub}/jobs_unsuspend`).
    pub async fn unsuspend_jobs(&self, hub: &str, jobs: &[String]) -> Result<()> {
        self.jobs_call(hub, "jobs_unsuspend", jobs).await
    }

    /// Deletes jobs; the answer is the ids of the events that were cancelled
    /// (`POST /hubs/{hub}/jobs_delete`).
    pub async fn delete_jobs(&self, hub: &str, jobs: &[String]) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            canceled_ev_ids: Vec<String>,
        }
        let url = self.api(&["hubs", hub, "jobs_delete"]);
        let call = Call::new(Method::POST, url).json(&serde_json::json!({ "jobs": jobs }));
        let answer: Answer = self.json(call).await?;
        Ok(answer.canceled_ev_ids)
    }

    async fn jobs_call(&self, hub: &str, verb: &str, jobs: &[String]) -> Result<()> {
        let url = self.api(&["hubs", hub, verb]);
        let call = Call::new(Method::POST, url).json(&serde_json::json!({ "jobs": jobs }));
        self.no_content(call).await
    }

    // ---- events ----

    /// Events, newest first (`GET /hubs/{hub}/events`).
    pub async fn events(&self, hub: &str, query: &EventQuery) -> Result<Vec<EventInfo>> {
        let mut url = self.api(&["hubs", hub, "events"]);
        let flags = query
            .fetch_results
            .then(|| ("fetch_results", "true".to_owned()))
            .into_iter()
            .chain(query.max_events.map(|n| ("max_events", n.to_string())));
        add_query(
            &mut url,
            repeated("channel", &query.channels)
                .chain(repeated("ev_id", &query.ev_ids))
                .chain(repeated("job", &query.jobs))
                .chain(repeated("type", &query.types))
                .chain(repeated("state", &query.states))
                .chain(flags),
        );
        let map = self.get(url.clone()).await?;
        keyed(map, &url, |e: &mut EventInfo, id| e.ev_id = id)
    }

    /// One event with its results, or `None` when the hub has no such event.
    pub async fn event(&self, hub: &str, ev_id: &str) -> Result<Option<EventInfo>> {
        let query = EventQuery {
            ev_ids: vec![ev_id.to_owned()],
            fetch_results: true,
            ..Default::default()
        };
        let events = self.events(hub, &query).await?;
        Ok(events.into_iter().find(|e| e.ev_id == ev_id))
    }

    /// Cancels `ACTIVE` events (`POST /hubs/{hub}/events_cancel`).
    pub async fn cancel_events(&self, hub: &str, ev_ids: &[String]) -> Result<()> {
        let url = self.api(&["hubs", hub, "events_cancel"]);
        let call = Call::new(Method::POST, url).json(&serde_json::json!({ "ev_ids": ev_ids }));
        self.no_content(call).await
    }

    /// An event's log as text (`GET /hubs/{hub}/events/{ev_id}/log`).
    pub async fn event_log(&self, hub: &str, ev_id: &str) -> Result<String> {
        let call = Call::new(
            Method::GET,
            self.api(&["hubs", hub, "events", ev_id, "log"]),
        );
        let url = call.url.to_string();
        let response = self.authorized(call).await?;
        response
            .text()
            .await
            .map_err(|source| Error::Connect { url, source })
    }

    // ---- users ----

    /// Every user (`GET /users`).
    pub async fn users(&self) -> Result<Vec<UserInfo>> {
        let url = self.api(&["users"]);
        let map = self.get(url.clone()).await?;
        keyed(map, &url, |u: &mut UserInfo, name| u.name = name)
    }

    /// Creates a user (`POST /users`).
    pub async fn create_user(&self, user: &str, level: &str, password: &str) -> Result<()> {
        let body = serde_json::json!({ "user": user, "level": level, "password": password });
        self.no_content(Call::new(Method::POST, self.api(&["users"])).json(&body))
            .await
    }

    /// Changes a user's level or password (`PATCH /users/{user}`).
    pub async fn modify_user(&self, user: &str, change: &UserChange) -> Result<()> {
        let call = Call::new(Method::PATCH, self.api(&["users", user])).json(change);
        self.no_content(call).await
    }

    /// Deletes a user (`DELETE /users/{user}`).
    pub async fn delete_user(&self, user: &str) -> Result<()> {
        self.no_content(Call::new(Method::DELETE, self.api(&["users", user])))
            .await
    }

    /// `GET /api/latest/backup`: a backup archive of `hubs` (every hub when empty), with the users
    /// when `with_users`; its file name (as the server named it) and bytes.
    pub async fn backup(&self, hubs: &[String], with_users: bool) -> Result<(String, Vec<u8>)> {
        let mut url = self.api(&["backup"]);
        add_query(
            &mut url,
            repeated("hub", hubs).chain(with_users.then(|| ("with_users", "true".to_owned()))),
        );
        let response = self.authorized(Call::new(Method::GET, url.clone())).await?;
        let name = response
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("filename=\"").nth(1))
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.map_err(|source| Error::Connect {
            url: url.to_string(),
            source,
        })?;
        Ok((name, bytes.to_vec()))
    }

    /// `POST /api/latest/restore`: restores `archive` (with `plan`, only answers what it would
    /// change). `query` holds the other query pairs (`with_users`, `with_server`, `expect`).
    pub async fn restore(
        &self,
        archive: &[u8],
        plan: bool,
        query: &[(&'static str, String)],
    ) -> Result<Value> {
        let mut url = self.api(&["restore"]);
        add_query(
            &mut url,
            query
                .iter()
                .cloned()
                .chain(plan.then(|| ("plan", "true".to_owned()))),
        );
        let mut call = Call::new(Method::POST, url);
        call.body = Some(archive.to_vec());
        call.body_type = "application/gzip";
        self.json(call).await
    }

    // ---- plumbing ----

    /// `base/seg/seg…`, each segment percent-encoded as needed.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("the base URL was checked to be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// `base/api/latest/seg/seg…`.
    fn api(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "latest"];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    fn keep(&self, tokens: Tokens) {
        *self.session.tokens.lock().expect("token lock") = Some(tokens.clone());
        let hook = self.session.hook.lock().expect("hook lock").clone();
        if let Some(hook) = hook {
            hook(&tokens);
        }
    }

    async fn send(&self, call: &Call, token: Option<&str>) -> Result<reqwest::Response> {
        let http = if call.streaming {
            &self.stream_http
        } else {
            &self.http
        };
        let mut request = http.request(call.method.clone(), call.url.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, call.body_type)
                .body(body.clone());
        }
        request.send().await.map_err(|source| Error::Connect {
            url: call.url.to_string(),
            source,
        })
    }

    /// Sends `call` with the access token; on a 401 renews the tokens once and sends it again.
    async fn authorized(&self, call: Call) -> Result<reqwest::Response> {
        let token = self.usable_token().await?;
        let response = self.send(&call, Some(&token)).await?;
        if response.status() != StatusCode::UNAUTHORIZED || !self.can_renew() {
            return checked(response).await;
        }
        let token = self.renew_unless_renewed(&token).await?;
        checked(self.send(&call, Some(&token)).await?).await
    }

    fn can_renew(&self) -> bool {
        self.tokens().is_some_and(|t| t.refresh_token.is_some())
    }

    /// The access token, renewed first when it is about to expire.
    async fn usable_token(&self) -> Result<String> {
        let current = self.tokens().ok_or(Error::NoToken)?;
        if current.refresh_token.is_some() && current.expires_within(RENEW_MARGIN) {
            return self.renew_unless_renewed(&current.access_token).await;
        }
        Ok(current.access_token)
    }

    /// Renews the tokens unless another call already replaced `stale`; the new access token.
    async fn renew_unless_renewed(&self, stale: &str) -> Result<String> {
        let _renewing = self.session.renewing.lock().await;
        match self.tokens() {
            Some(current) if current.access_token != stale => Ok(current.access_token),
            _ => Ok(self.renew().await?.access_token),
        }
    }

    /// Renews the tokens; the caller holds `session.renewing`.
    async fn renew(&self) -> Result<Tokens> {
        let refresh_token = self
            .tokens()
            .and_then(|t| t.refresh_token)
            .ok_or(Error::NoToken)?;
        let call = Call::new(Method::POST, self.url(&["auth", "v1", "refresh"]))
            .json(&serde_json::json!({ "refresh_token": refresh_token, "refresh": "token" }));
        let tokens = self.token_call(call).await.map_err(|e| match e.kind() {
            ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::Invalid => {
                Error::SessionExpired {
                    source: Box::new(e),
                }
            }
            _ => e,
        })?;
        self.keep(tokens.clone());
        Ok(tokens)
    }

    async fn token_call(&self, call: Call) -> Result<Tokens> {
        let issued = Utc::now();
        let url = call.url.to_string();
        let response = checked(self.send(&call, None).await?).await?;
        let answer: types::TokenAnswer = decode(response, &url).await?;
        Ok(answer.into_tokens(issued))
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        self.json(Call::new(Method::GET, url)).await
    }

    async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let url = call.url.to_string();
        let response = self.authorized(call).await?;
        decode(response, &url).await
    }

    /// JSON, or `null` for an empty answer.
    async fn json_or_null(&self, call: Call) -> Result<Value> {
        let url = call.url.to_string();
        let response = self.authorized(call).await?;
        let bytes = response.bytes().await.map_err(|source| Error::Connect {
            url: url.clone(),
            source,
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { url, source })
    }

    /// A call whose answer has no content worth reading (201/204).
    async fn no_content(&self, call: Call) -> Result<()> {
        self.authorized(call).await?;
        Ok(())
    }
}

/// The response when its status is a success, else its error answer.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // A body that cannot be read still leaves the status to report.
    let body = response.text().await.unwrap_or_default();
    Err(ApiError::parse(status.as_u16(), &body).into())
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response, url: &str) -> Result<T> {
    let bytes = response.bytes().await.map_err(|source| Error::Connect {
        url: url.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
        url: url.to_owned(),
        source,
    })
}

/// The values of a map keyed by name, in the server's order, each told its name.
fn keyed<T: DeserializeOwned>(
    map: Map<String, Value>,
    url: &Url,
    name: impl Fn(&mut T, String),
) -> Result<Vec<T>> {
    map.into_iter()
        .map(|(key, value)| {
            let mut item: T = serde_json::from_value(value).map_err(|source| Error::Decode {
                url: url.to_string(),
                source,
            })?;
            name(&mut item, key);
            Ok(item)
        })
        .collect()
}

/// `definition` with `key: name` added (the POST forms name the object inside the body).
fn named(definition: &Value, key: &str, name: &str) -> Value {
    let mut body = match definition {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    body.insert(key.to_owned(), Value::String(name.to_owned()));
    Value::Object(body)
}

fn repeated<'a>(
    key: &'static str,
    values: &'a [String],
) -> impl Iterator<Item = (&'static str, String)> + 'a {
    values.iter().map(move |v| (key, v.clone()))
}

/// Appends query pairs, repeating a key once per value; adds no `?` when there are none.
fn add_query(url: &mut Url, pairs: impl IntoIterator<Item = (&'static str, String)>) {
    let mut pairs = pairs.into_iter().peekable();
    if pairs.peek().is_none() {
        return;
    }
    let mut query = url.query_pairs_mut();
    for (key, value) in pairs {
        query.append_pair(key, &value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_keep_a_base_path_and_encode_names() {
        let client = Client::new("http://hub.example:4341/sluice/").unwrap();
        assert_eq!(
            client
                .api(&["hubs", "my hub", "events", "2024-05-01T10:11:12.5Z", "log"])
                .as_str(),
            "http://hub.example:4341/sluice/api/latest/hubs/my%20hub/events/2024-05-01T10:11:12.5Z/log"
        );
        let client = Client::new("http://127.0.0.1:4341").unwrap();
        assert_eq!(
            client.api(&["hubs", "a/b?c"]).as_str(),
            "http://127.0.0.1:4341/api/latest/hubs/a%2Fb%3Fc"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in ["127.0.0.1:4341", "ftp://x", "http://x/?a=1", "not a url"] {
            let e = Client::new(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{url}");
        }
    }

    #[test]
    fn query_lists_repeat_their_key() {
        let mut url = Url::parse("http://x/e").unwrap();
        add_query(&mut url, []);
        assert_eq!(url.as_str(), "http://x/e");
        add_query(
            &mut url,
            repeated("channel", &["a".into(), "b c".into()]).chain([("max", "5".into())]),
        );
        assert_eq!(url.as_str(), "http://x/e?channel=a&channel=b+c&max=5");
    }
}
