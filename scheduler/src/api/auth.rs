//! Bearer-token authentication. The token is looked up by its hash; it is never logged.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::engine::Role;

/// The caller's role, from `Authorization: Bearer TOKEN`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller(pub(super) Role);

impl Caller {
    /// 403 unless the caller's role allows `needed`.
    pub(super) fn require(self, needed: Role) -> Result<(), ApiError> {
        if self.0.permits(needed) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("a {} token cannot do this; it needs the {} role", self.0.as_str(), needed.as_str()),
                "use a token with that role (`switchyard token create --role ROLE`)",
            ))
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        message,
        "send `Authorization: Bearer TOKEN`; the admin token is in the control plane's token_file",
    )
}

/// 401 for a route that needs a token and got none.
pub(super) fn missing_token() -> ApiError {
    unauthorized("missing bearer token")
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(missing_token)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthorized("the Authorization header is not a bearer token"))?;
        match state.engine.authenticate(token.trim()).await? {
            Some(role) => Ok(Caller(role)),
            None => Err(unauthorized("unknown token")),
        }
    }
}

/// For routes open by default (`/metrics`): no `Authorization` header is no caller, a wrong one is
/// still 401.
impl OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, ApiError> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state).await.map(Some)
        } else {
            Ok(None)
        }
    }
}
