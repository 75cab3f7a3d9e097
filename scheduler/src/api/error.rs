//! API errors as JSON `{code, message, hint}` with the right status: 400 for malformed input
//! (naming the field), 401/403 for tokens, 404, 409 for stale leases, 422 for invalid manifests.
//! A store failure is the only 500, and its message never carries secrets.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::plan::PlanError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub code: String,
    pub message: String,
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
            Error::UnknownSelection { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
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

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // serde's text names the field and position: "missing field `max` at line 1 column 2".
        let detail = r.body_text();
        let detail = detail.trim_start_matches("Failed to deserialize the JSON body into the target type: ");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("malformed JSON body: {detail}"),
            "see /api/v1/openapi.json for the request schema",
        )
    }
}
