//! The dashboard's session: the hub's access and refresh tokens in two HttpOnly, SameSite=Strict
//! cookies; the access token renewed through the refresh token when it has expired; state-changing
//! requests accepted only from the dashboard's own origin.
//!
//! CSRF: the cookies are `SameSite=Strict`, so a browser does not send them with a request another
//! site starts; on top of that every POST must carry an `Origin` (or, failing that, a `Referer`)
//! naming the host the request was sent to. A request with neither is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sluice_model::AccessLevel;
use sluice_service::HubService;
use sluice_service::auth::{Identity, Tokens};

use super::UiState;
use crate::error::ApiError;
use crate::error::dashboard::{Refusal, RefusalText, refusal_page};

/// The cookie holding the access token.
pub(crate) const ACCESS_COOKIE: &str = "sluice_access";
/// The cookie holding the refresh token.
pub(crate) const REFRESH_COOKIE: &str = "sluice_refresh";
/// The cookie carrying a one-time notice to the next page.
pub(crate) const FLASH_COOKIE: &str = "sluice_flash";
/// How long a renewal is remembered, so that requests racing with the old refresh token (the
/// page and its live stream, say) share the renewal instead of failing on a spent token.
const RENEWAL_MEMORY: Duration = Duration::from_secs(30);
/// How long the refresh cookie lives in the browser (the token itself may expire sooner).
const REFRESH_COOKIE_AGE: u64 = 7 * 24 * 3600;

/// The logged-in user of a dashboard request.
#[derive(Clone)]
pub(crate) struct Viewer {
    /// The service, acting as the user.
    pub service: HubService,
    /// Who it is.
    pub identity: Identity,
    /// The access token the request was authenticated with (live streams end with it).
    pub token: String,
    /// A notice left by the previous request, shown once.
    pub flash: Option<Flash>,
}

impl Viewer {
    /// Refuses (403, with the reason) unless the user has at least `level` for `what`.
    pub fn require(&self, level: AccessLevel, what: &str) -> Result<(), Refusal> {
        if self.identity.level.allows(level) {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "refused: {what} needs {level} access; user {} has {}",
                    self.identity.user, self.identity.level
                ),
            ))
        }
    }

    /// Which hubs the user may read: ReadOnly there, by their access entry, else their level.
    pub async fn readable(
        &self,
    ) -> Result<impl Fn(&sluice_model::HubName) -> bool + use<>, sluice_service::ServiceError> {
        let levels = self
            .service
            .hub_levels(&self.identity.user, self.identity.level)
            .await?;
        let level = self.identity.level;
        Ok(move |hub: &sluice_model::HubName| {
            levels
                .get(hub)
                .copied()
                .unwrap_or(level)
                .allows(AccessLevel::ReadOnly)
        })
    }

    /// Refuses (403, with the reason) unless the user has at least `level` on `hub` (their
    /// access entry there, else their server-wide level; read from the repository every time)
    /// for `what`. A name that is no hub's is checked against the server-wide level (the page
    /// then answers that the hub does not exist).
    pub async fn require_on(
        &self,
        hub: &str,
        level: AccessLevel,
        what: &str,
    ) -> Result<(), Refusal> {
        let Ok(name) = sluice_model::HubName::new(hub) else {
            return self.require(level, what);
        };
        let has = self
            .service
            .level_on(&self.identity.user, self.identity.level, &name)
            .await
            .map_err(|e| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        if has.allows(level) {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "refused: {what} needs {level} access; user {} has {has} on hub {name}",
                    self.identity.user
                ),
            ))
        }
    }
}

/// A one-time notice: what an action did, or why it failed.
#[derive(Clone, Debug)]
pub(crate) struct Flash {
    /// Whether it reports a failure.
    pub error: bool,
    /// The text.
    pub text: String,
}

impl Flash {
    fn encode(&self) -> String {
        let kind = if self.error { "e" } else { "o" };
        form_urlencoded::byte_serialize(format!("{kind}{}", self.text).as_bytes()).collect()
    }

    fn decode(raw: &str) -> Option<Flash> {
        let text: String = form_urlencoded::parse(format!("f={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())?;
        let (kind, rest) = text.split_at_checked(1)?;
        Some(Flash {
            error: kind == "e",
            text: rest.chars().take(2000).collect(),
        })
    }
}

/// Renewals by spent refresh token: the tokens they produced, and when.
#[derive(Default)]
pub(crate) struct Renewals(Mutex<HashMap<String, (Instant, Tokens)>>);

impl Renewals {
    fn recall(&self, refresh: &str) -> Option<Tokens> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (at, _)| at.elapsed() < RENEWAL_MEMORY);
        map.get(refresh).map(|(_, t)| t.clone())
    }

    fn remember(&self, refresh: &str, tokens: &Tokens) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(refresh.to_owned(), (Instant::now(), tokens.clone()));
    }
}

/// The value of cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("tokens and encoded notices are header-safe")
}

/// Adds the session cookies for `tokens` to `response`.
pub(crate) fn store_tokens(response: &mut Response, tokens: &Tokens, secure: bool) {
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            ACCESS_COOKIE,
            &tokens.access_token,
            REFRESH_COOKIE_AGE,
            secure,
        ),
    );
    if let Some(refresh) = &tokens.refresh_token {
        h.append(
            header::SET_COOKIE,
            set_cookie(REFRESH_COOKIE, refresh, REFRESH_COOKIE_AGE, secure),
        );
    }
}

/// Removes the session cookies.
pub(crate) fn clear_tokens(response: &mut Response) {
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(ACCESS_COOKIE, "", 0, false));
    h.append(header::SET_COOKIE, set_cookie(REFRESH_COOKIE, "", 0, false));
}

/// A redirect to `to` that leaves `flash` for the next page.
pub(crate) fn redirect_with(to: &str, flash: Flash) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(FLASH_COOKIE, &flash.encode(), 60, false),
    );
    response.extensions_mut().insert(flash);
    response
}

/// Marks an action's redirect as where the page should go next: the script's JSON answer
/// carries it as `go` (a form posted without the script follows the redirect anyway).
#[derive(Debug, Clone)]
struct Navigate(String);

/// As [`redirect_with`], and the script goes there too (a form that created something).
pub(crate) fn navigate_with(to: &str, flash: Flash) -> Response {
    let mut response = redirect_with(to, flash);
    response.extensions_mut().insert(Navigate(to.to_owned()));
    response
}

/// The header the dashboard's script sends with actions it posts itself: it wants the notice
/// as JSON `{error, text}` instead of a redirect.
pub(crate) const FETCH_HEADER: &str = "x-sluice-fetch";

/// For a script's request, the outcome (a notice, or a refusal) as JSON.
fn answer_fetch(mut response: Response) -> Response {
    let (status, flash) = if let Some(flash) = response.extensions_mut().remove::<Flash>() {
        (StatusCode::OK, flash)
    } else if let Some(refusal) = response.extensions_mut().remove::<RefusalText>() {
        (
            response.status(),
            Flash {
                error: true,
                text: refusal.0,
            },
        )
    } else {
        return response;
    };
    let mut answer = serde_json::json!({"error": flash.error, "text": flash.text});
    let navigate = response.extensions_mut().remove::<Navigate>();
    if let Some(Navigate(to)) = &navigate {
        answer["go"] = serde_json::json!(to);
    }
    let mut json = (status, axum::Json(answer)).into_response();
    // Keep the session cookies a renewal set; drop the notice cookie unless the script goes on
    // to the next page, which shows it.
    for v in response.headers().get_all(header::SET_COOKIE) {
        if navigate.is_some() || !v.as_bytes().starts_with(FLASH_COOKIE.as_bytes()) {
            json.headers_mut().append(header::SET_COOKIE, v.clone());
        }
    }
    json
}

/// Whether a state-changing request comes from the dashboard's own origin: its `Origin` (or
/// else its `Referer`) must name the host the request was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let named = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(named) = named else { return false };
    let Some(rest) = named
        .strip_prefix("http://")
        .or_else(|| named.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

/// Where a refused unauthenticated request is sent: the login page, coming back to `path`.
fn to_login(path: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    let mut response = Redirect::to(&format!("/ui/login?next={next}")).into_response();
    clear_tokens(&mut response);
    response
}

/// Middleware of every page but the login page: checks the origin of POSTs, finds the user from
/// the cookies (renewing the access token when needed) and hands a [`Viewer`] to the handler.
pub(crate) async fn require_viewer(
    State(ui): State<UiState>,
    request: Request,
    next: Next,
) -> Response {
    let fetch = request.headers().contains_key(FETCH_HEADER);
    let response = viewer_then(ui, request, next).await;
    if fetch {
        answer_fetch(response)
    } else {
        response
    }
}

async fn viewer_then(ui: UiState, mut request: Request, next: Next) -> Response {
    let headers = request.headers().clone();
    if request.method() == Method::POST && !same_origin(&headers) {
        return refusal_page(
            StatusCode::FORBIDDEN,
            "refused: the request did not come from this dashboard (its Origin or Referer does not name this server)",
        );
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/ui/", |p| p.as_str())
        .to_owned();
    let service = &ui.app.service;
    let mut renewed = None;
    let identity = match cookie(&headers, ACCESS_COOKIE) {
        Some(token) => service
            .authenticate(token)
            .await
            .ok()
            .map(|i| (i, token.to_owned())),
        None => None,
    };
    let (identity, token) = match identity {
        Some(found) => found,
        None => {
            let Some(refresh) = cookie(&headers, REFRESH_COOKIE) else {
                return to_login(&path);
            };
            let tokens = match ui.renewals.recall(refresh) {
                Some(t) => t,
                None => match service.refresh_login(refresh, true).await {
                    Ok(t) => {
                        ui.renewals.remember(refresh, &t);
                        t
                    }
                    Err(_) => return to_login(&path),
                },
            };
            match service.authenticate(&tokens.access_token).await {
                Ok(i) => {
                    let token = tokens.access_token.clone();
                    renewed = Some(tokens);
                    (i, token)
                }
                Err(_) => return to_login(&path),
            }
        }
    };
    let flash = cookie(&headers, FLASH_COOKIE).and_then(Flash::decode);
    let had_flash = flash.is_some();
    request.extensions_mut().insert(Viewer {
        service: service.as_user(&identity.user),
        identity,
        token,
        flash,
    });
    let mut response = next.run(request).await;
    if let Some(tokens) = renewed {
        store_tokens(&mut response, &tokens, secure(&headers));
    }
    // The notice was shown by this page (a redirect passes it on untouched).
    if had_flash && !response.status().is_redirection() {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(FLASH_COOKIE, "", 0, false));
    }
    response
}

/// Whether the request was made over TLS (as a proxy in front says).
pub(crate) fn is_secure(headers: &HeaderMap) -> bool {
    secure(headers)
}

/// Shared state of the dashboard's routes.
pub(crate) fn renewals() -> Arc<Renewals> {
    Arc::new(Renewals::default())
}

/// A service error as a notice.
pub(crate) fn error_flash(error: impl Into<ApiError>) -> Flash {
    Flash {
        error: true,
        text: error.into().message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_name_the_host() {
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "hub.example"),
            ("referer", "https://hub.example/ui/channels?x=1")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080.evil.example")
        ])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null")
        ])));
    }

    #[test]
    fn cookies_and_notices_round_trip() {
        let h = headers(&[("cookie", "a=1; sluice_access=tok.en; b=2")]);
        assert_eq!(cookie(&h, ACCESS_COOKIE), Some("tok.en"));
        assert_eq!(cookie(&h, REFRESH_COOKIE), None);
        let f = Flash {
            error: true,
            text: "hub hub1 is FROZEN; a=b & c".into(),
        };
        let back = Flash::decode(&f.encode()).expect("decodes");
        assert!(back.error);
        assert_eq!(back.text, f.text);
    }
}
