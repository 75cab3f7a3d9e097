//! The dashboard: a single page (HTML, CSS and JavaScript compiled into the binary, no CDN, works
//! offline) and the two read-only routes only it needs beyond the runs API. The page holds no
//! data of its own: it asks for a viewer token once, keeps it in the tab's session storage, and
//! polls the API with it.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::Path;
use crate::engine::Role;
use crate::views::{EgressActivity, Overview};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// Assets change only with the binary; the version in their URL keeps browsers from mixing old
/// and new.
const CACHE: &str = "no-cache";

/// The dashboard's page.
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "the page", body = String, content_type = "text/html; charset=utf-8")))]
pub(super) async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], INDEX)
}

/// The dashboard's script and style sheet.
#[utoipa::path(get, path = "/assets/{name}", tag = "dashboard",
    params(("name" = String, Path, description = "`app.js` or `app.css`", example = "app.js")),
    responses(
        (status = 200, description = "the asset", content(
            (String = "text/javascript; charset=utf-8"),
            (String = "text/css; charset=utf-8"),
        )),
        (status = 404, description = "no such asset", body = ApiError),
    ))]
pub(super) async fn asset(Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let (body, kind) = match name.as_str() {
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no dashboard asset `{name}`"),
                "the dashboard is at /",
            ));
        }
    };
    Ok(([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, CACHE)], body))
}

/// Everything the dashboard's front page shows.
#[utoipa::path(get, path = "/api/v1/overview", tag = "dashboard",
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "the overview", body = Overview)))]
pub(super) async fn overview(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Overview>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.views().overview().await?))
}

/// The egress page: the rules in force, and what the audit trail says about them.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EgressPage {
    /// Where the rules come from: `control plane vN (mode)` or the policy file the control plane
    /// plans with; `None` when there is neither (everything is denied).
    pub source: Option<String>,
    pub rules: Vec<RuleView>,
    #[serde(flatten)]
    pub activity: EgressActivity,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleView {
    pub name: String,
    pub host: String,
    pub ports: Vec<String>,
    pub egress_ips: Vec<String>,
    pub identity: Option<String>,
    pub description: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/egress/activity", tag = "dashboard",
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "rules and activity", body = EgressPage)))]
pub(super) async fn egress(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EgressPage>, ApiError> {
    caller.require(Role::Viewer)?;
    let activity = state.engine.views().egress_activity().await?;
    let (source, yaml, path) = match state.engine.current_policy().await? {
        Some(p) => (
            Some(format!("control plane v{} ({})", p.version, p.mode)),
            Some(p.yaml.into_bytes()),
            std::path::PathBuf::from("egress.yaml"),
        ),
        None => match &state.planning.egress {
            Some(file) => match tokio::fs::read(file).await {
                Ok(bytes) => (Some(file.display().to_string()), Some(bytes), file.clone()),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "Egress policy file unreadable for the dashboard.");
                    (None, None, file.clone())
                }
            },
            None => (None, None, std::path::PathBuf::new()),
        },
    };
    let rules = match yaml {
        Some(bytes) => {
            let (loaded, _) = switchyard_config::parse_policy(&path, &bytes, None);
            loaded
                .policy
                .destinations
                .iter()
                .map(|d| RuleView {
                    name: d.name.clone(),
                    host: d.host.to_string(),
                    ports: d.ports.iter().map(ToString::to_string).collect(),
                    egress_ips: d.egress_ips.iter().map(ToString::to_string).collect(),
                    identity: d.identity.clone(),
                    description: d.description.clone(),
                })
                .collect()
        }
        None => vec![],
    };
    Ok(Json(EgressPage { source, rules, activity }))
}
