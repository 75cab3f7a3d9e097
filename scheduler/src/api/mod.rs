//! The control-plane HTTP API (axum on hyper): JSON in and out, bearer tokens with roles, errors as
//! `{code, message, hint}`, optional TLS (rustls), and an OpenAPI document at
//! `/api/v1/openapi.json`.
//!
//! | route | role |
//! | --- | --- |
//! | `GET /` and `GET /assets/…` (the dashboard), `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /api/v1/openapi.json` | none |
//! | `GET /api/v1/overview`, `GET /api/v1/egress/activity` (the dashboard's data) | viewer |
//! | `GET /api/v1/runs`, `GET /api/v1/runs/{id}`, `GET /api/v1/nodes` | viewer |
//! | `GET /api/v1/health` (per-job and per-pool checks, see [`crate::views::health::Health`]; probes use `/healthz` and `/readyz`) | viewer |
//! | `GET /api/v1/cost?since=7d` (the JSON of `switchyard cost --json`, see [`crate::views::cost`]) | viewer |
//! | `POST /api/v1/jobs`, `POST /api/v1/runs/{id}/cancel`, `POST /api/v1/tasks/{id}/cancel` | operator |
//! | `POST /api/v1/nodes`, `…/{id}/heartbeat`, `…/{id}/leases`, `…/{id}/reports`, `DELETE …/{id}` | node |
//! | `POST /api/v1/tokens` | admin |
//! | `POST /api/v1/egress/audit` | node; `GET` viewer |
//! | `GET /api/v1/egress/policy` | node or viewer; `POST` (apply a version) operator |
//!
//! `/metrics` asks for a viewer token when `[control_plane] metrics_token = true`. The roles are
//! also in the OpenAPI document ([`doc`]), generated from the handlers.

mod auth;
pub mod dashboard;
pub mod doc;
pub mod error;
mod extract;
mod handlers;
mod tls;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use tls::{load_server_tls, serve};

use crate::engine::Engine;

/// Where the control plane finds the settings and policy it plans submissions with.
#[derive(Debug, Clone, Default)]
pub struct PlanningInputs {
    pub settings: Option<PathBuf>,
    pub egress: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Engine,
    pub planning: Arc<PlanningInputs>,
}

/// The largest request body the API reads (16 MiB: a submission of a few thousand manifests);
/// larger is answered 413.
pub const MAX_BODY: usize = 16 << 20;

/// Every route, with its OpenAPI operation: a handler is routed and documented by the same
/// `routes!` entry, so neither can exist without the other.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(doc::base())
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::asset))
        .routes(routes!(dashboard::overview))
        .routes(routes!(dashboard::egress))
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::health))
        .routes(routes!(handlers::openapi))
        .routes(routes!(handlers::submit))
        .routes(routes!(handlers::runs))
        .routes(routes!(handlers::run))
        .routes(routes!(handlers::cancel_run))
        .routes(routes!(handlers::cancel_task))
        .routes(routes!(handlers::nodes, handlers::register))
        .routes(routes!(handlers::deregister))
        .routes(routes!(handlers::heartbeat))
        .routes(routes!(handlers::lease))
        .routes(routes!(handlers::report))
        .routes(routes!(handlers::tables))
        .routes(routes!(handlers::cost))
        .routes(routes!(handlers::create_token))
        .routes(routes!(handlers::get_audit, handlers::post_audit))
        .routes(routes!(handlers::get_policy, handlers::apply_policy))
}

/// The API's OpenAPI document (what `/api/v1/openapi.json` serves).
pub fn openapi() -> serde_json::Value {
    doc::to_json(&doc::finish(routes().split_for_parts().1))
}

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state)
}
