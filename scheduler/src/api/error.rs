//! API errors as JSON `{code, message, hint}` with the right status: 400 for malformed input
//! (naming the field), 401/403 for tokens, 404, 409 for stale leases, 422 for invalid manifests.
//! 405 (with `Allow`), 413 and 415 from axum itself. A store failure is the only 500, and its
//! message never carries secrets.

use axum::Json;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::plan::PlanError;

/// Every error the API answers with, whatever the status.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    /// What went wrong, for programs: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `lease_lost`, `node_refused`, `invalid_manifests`,
    /// `payload_too_large`, `unsupported_media_type`, `internal`, …
    pub code: String,
    /// What went wrong, for people, naming the field or the id.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// For `invalid_manifests`: every error, as `plan --json` reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PlanError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError {
            status: status.as_u16(),
            code: code.into(),
            message: message.into(),
            hint: hint.into(),
            errors: vec![],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                e.to_string(),
                "check the id (`switchyard runs`)",
            ),
            Error::Fenced { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "lease_lost",
                e.to_string(),
                "stop the attempt; the task was given to another node",
            ),
            Error::NodeRefused { ref reason, ref hint } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "node_refused", reason.clone(), hint.clone())
            }
            Error::Rejected { errors } => ApiError {
                errors,
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_manifests",
                    "the manifests do not plan cleanly",
                    "run `switchyard plan` on them locally for the full report",
                )
            },
            // The request is well formed; the manifests it came with have no such table.
            Error::UnknownSelection { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_table",
                e.to_string(),
                "select tables by the name in a task's `sink: { table: … }`, e.g. `--select silver.claims`",
            ),
            Error::BadRequest { ref hint, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string(), hint.clone())
            }
            Error::Inputs(ref inner) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "control_plane_inputs",
                e.to_string(),
                format!("fix the control plane's settings or egress policy files ({inner})"),
            ),
            other => {
                tracing::error!(error = %other, "Internal error serving a request.");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    other.to_string(),
                    "retry; if it persists, check the control plane's log",
                )
            }
        }
    }
}

/// The net under the extractors: a response axum made itself (405 for a method the path does not
/// have, a rejection outside [`super::extract`]) arrives as `text/plain`; it leaves as the one
/// JSON shape, same status, `Allow` kept. Responses of the handlers pass untouched.
pub(super) async fn json_errors(method: Method, uri: Uri, response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let error = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
        ApiError::new(
            status,
            "method_not_allowed",
            format!("{} is not allowed on {}", method, uri.path()),
            format!("use one of: {allow} (see /api/v1/openapi.json)"),
        )
    } else {
        let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
        ApiError::new(
            status,
            status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_").as_str(),
            String::from_utf8_lossy(&text).trim().to_owned(),
            "see /api/v1/openapi.json",
        )
    };
    let mut out = error.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}
