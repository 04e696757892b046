//! The dashboard's form of an error: a page stating why the request was refused or failed (its
//! message also kept on the response, for the dashboard's script that wants it as JSON).

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// A refused or failed request, shown as a page with its reason.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::new(e.status(), e.message())
    }
}

impl From<sluice_events::Error> for Refusal {
    fn from(e: sluice_events::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<sluice_service::ServiceError> for Refusal {
    fn from(e: sluice_service::ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "refusal.html")]
struct RefusalPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// The message of a refusal, kept on its response for scripts that want it as JSON.
#[derive(Clone, Debug)]
pub(crate) struct RefusalText(pub String);

/// A page stating why the request was refused.
pub(crate) fn refusal_page(status: StatusCode, message: &str) -> Response {
    let page = RefusalPage {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    let mut response = (status, page).into_response();
    response
        .extensions_mut()
        .insert(RefusalText(message.to_owned()));
    response
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refusal_page(self.status, &self.message)
    }
}
