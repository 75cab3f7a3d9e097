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

mod auth;
pub mod dashboard;
pub mod error;
mod handlers;
mod tls;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};

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

/// The OpenAPI document, kept beside the routes it describes (a test checks they agree).
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .route("/api/v1/overview", get(dashboard::overview))
        .route("/api/v1/egress/activity", get(dashboard::egress))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/api/v1/health", get(handlers::health))
        .route("/api/v1/openapi.json", get(handlers::openapi))
        .route("/api/v1/jobs", post(handlers::submit))
        .route("/api/v1/runs", get(handlers::runs))
        .route("/api/v1/runs/{id}", get(handlers::run))
        .route("/api/v1/runs/{id}/cancel", post(handlers::cancel_run))
        .route("/api/v1/tasks/{id}/cancel", post(handlers::cancel_task))
        .route("/api/v1/nodes", get(handlers::nodes).post(handlers::register))
        .route("/api/v1/nodes/{id}", delete(handlers::deregister))
        .route("/api/v1/nodes/{id}/heartbeat", post(handlers::heartbeat))
        .route("/api/v1/nodes/{id}/leases", post(handlers::lease))
        .route("/api/v1/nodes/{id}/reports", post(handlers::report))
        .route("/api/v1/tables", get(handlers::tables))
        .route("/api/v1/cost", get(handlers::cost))
        .route("/api/v1/tokens", post(handlers::create_token))
        .route("/api/v1/egress/audit", get(handlers::get_audit).post(handlers::post_audit))
        .route("/api/v1/egress/policy", get(handlers::get_policy).post(handlers::apply_policy))
        .fallback(handlers::not_found)
        .with_state(state)
}
