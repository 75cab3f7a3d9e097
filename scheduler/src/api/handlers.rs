//! One function per route. Each checks the caller's role first, then does one engine call.
//! The `#[utoipa::path]` on each is its entry in the OpenAPI document: the statuses it answers
//! itself (the ones every operation shares are added by [`super::doc`]), the role it needs, and
//! its body types, so the document cannot describe a route that is not there.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{self, Path, Query};
use super::types::*;
use super::{AppState, doc};
use crate::engine::{HeartbeatReply, NodeInfo, Registration, Role, RunOptions};
use crate::views::{NodeView, RunView};
use crate::{Error, plan, spec};

type Body<T> = extract::Json<T>;
type Reply<T> = Result<Json<T>, ApiError>;

/// Long polls are capped so that proxies and clients do not time out first.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "alive", body = String, content_type = "text/plain", example = "ok\n")))]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the state store answers.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "ready", body = String, content_type = "text/plain", example = "ready\n"),
        (status = 503, description = "the state store does not answer", body = ApiError),
    ))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.engine.ready().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("state store unavailable: {e}"),
            "check the state store URL and that the database is up",
        )
    })?;
    Ok("ready\n")
}

/// This document, generated from the routes and their types when the server starts.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc::json())
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route", "see /api/v1/openapi.json")
}

/// Plans the manifests like `switchyard plan`, registers their jobs and, unless `run` is false,
/// starts a run of each.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = SubmitRequest,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "jobs registered; `run` is the run started, if any", body = SubmitResponse),
        (status = 422, description = "the manifests do not plan cleanly (`invalid_manifests`, every error in `errors`), or `select` names no task's table (`unknown_table`)", body = ApiError),
    ))]
pub(super) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<SubmitRequest>,
) -> Reply<SubmitResponse> {
    caller.require(Role::Operator)?;
    let extract::Json(request) = body;
    if request.manifests.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no manifests in the request",
            "send at least one manifest",
        ));
    }
    let options = switchyard_config::LoadOptions {
        paths: vec![],
        settings: state.planning.settings.clone(),
        egress: state.planning.egress.clone(),
        env: None,
        inline: request
            .manifests
            .iter()
            .map(|m| (m.path.clone().into(), m.content.clone().into_bytes()))
            .collect(),
    };
    // Planning reads files and parses: keep it off the async workers.
    let planned = tokio::task::spawn_blocking(move || {
        let inputs = switchyard_config::load(&options).map_err(Error::Inputs)?;
        let planned = plan::plan(&inputs);
        let specs = spec::job_specs(&inputs, &planned).map_err(|errors| Error::Rejected { errors })?;
        Ok::<_, Error>((planned, specs))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string(), "retry"))?;
    let (planned, specs) = planned?;
    // Checked before anything is registered: a mistyped table changes nothing.
    let selected =
        if request.select.is_empty() { None } else { Some(spec::select_tasks(&specs, &request.select)?) };
    state.engine.upsert_jobs(&specs).await?;
    let options = RunOptions { full_refresh: request.full_refresh, ..RunOptions::default() };
    let mut jobs = Vec::new();
    for job in planned.jobs {
        let only = selected.as_ref().map(|s| s.get(&job.job).cloned().unwrap_or_default());
        let run = match &only {
            _ if !request.run => None,
            Some(tasks) if tasks.is_empty() => None,
            only => Some(state.engine.trigger_with(&job.job, &options, only.as_deref()).await?),
        };
        jobs.push(SubmittedJob { job: job.job, run, tasks: job.tasks });
    }
    Ok(Json(SubmitResponse { jobs }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RunsQuery {
    /// Only runs of this job.
    job: Option<String>,
    /// At most this many runs, newest first (default 20; below 1 counts as 1, above 1000 as 1000).
    limit: Option<i64>,
    /// Only runs unfinished or finished within this long (`7d`): the runs a cost report counts.
    // The pattern is `doc::SINCE_PATTERN`: utoipa takes only a literal, and the API test
    // checks that they are equal.
    #[param(pattern = r"^0*[1-9][0-9]{0,5}(ms|s|m|h|d)$", example = "7d")]
    since: Option<String>,
}

/// Recent runs with their tasks and attempts.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunsQuery),
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "runs, newest first", body = Vec<RunView>)))]
pub(super) async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RunsQuery>,
) -> Reply<Vec<RunView>> {
    caller.require(Role::Viewer)?;
    let since = match q.since.as_deref() {
        Some(s) => Some(crate::store::now_ms() - doc::since(s)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    Ok(Json(state.engine.views().runs_since(q.job.as_deref(), since, limit).await?))
}

/// One run with its tasks, attempts and lineage.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "the run id")),
    security(("bearer" = ["viewer"])),
    responses(
        (status = 200, description = "the run", body = RunView),
        (status = 404, description = "no run with this id", body = ApiError),
    ))]
pub(super) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Reply<RunView> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.views().run(id).await?))
}

/// Cancels a run: its queued tasks are cancelled, running attempts are told to stop.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = i64, Path, description = "the run id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "the run as it is now", body = RunView),
        (status = 404, description = "no run with this id", body = ApiError),
    ))]
pub(super) async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Reply<RunView> {
    caller.require(Role::Operator)?;
    Ok(Json(state.engine.cancel_run(id).await?))
}

/// Cancels one task run.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "runs",
    params(("id" = i64, Path, description = "the task run id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 204, description = "cancelled (or already finished)"),
        (status = 404, description = "no task run with this id", body = ApiError),
    ))]
pub(super) async fn cancel_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Operator)?;
    state.engine.cancel_task(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Registered nodes and workers.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes",
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "nodes", body = Vec<NodeView>)))]
pub(super) async fn nodes(State(state): State<AppState>, caller: Caller) -> Reply<Vec<NodeView>> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.views().nodes().await?))
}

/// A node or worker registers itself.
#[utoipa::path(post, path = "/api/v1/nodes", tag = "nodes", request_body = NodeInfo,
    security(("bearer" = ["node"])),
    responses(
        (status = 201, description = "registered", body = Registration),
        (status = 422, description = "refused by the settings (`node_refused`): a dedicated node without a pool or egress IP, an unknown pool, an IP not in the pool", body = ApiError),
    ))]
pub(super) async fn register(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<NodeInfo>,
) -> Result<(StatusCode, Json<Registration>), ApiError> {
    caller.require(Role::Node)?;
    let extract::Json(info) = body;
    Ok((StatusCode::CREATED, Json(state.engine.register(&info).await?)))
}

/// A node leaves; its running attempts are handed to other nodes.
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "the node id from registration")),
    security(("bearer" = ["node"])),
    responses((status = 204, description = "deregistered (or was not registered)")))]
pub(super) async fn deregister(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Node)?;
    state.engine.deregister(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Renews the node's leases and says which attempts to stop.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/heartbeat", tag = "nodes", request_body = HeartbeatRequest,
    params(("id" = String, Path, description = "the node id from registration")),
    security(("bearer" = ["node"])),
    responses(
        (status = 200, description = "attempts to stop", body = HeartbeatReply),
        (status = 422, description = "the node is not registered or was declared gone (`node_refused`): register again", body = ApiError),
    ))]
pub(super) async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<HeartbeatRequest>,
) -> Reply<HeartbeatReply> {
    caller.require(Role::Node)?;
    let extract::Json(request) = body;
    let tails: Vec<(i64, String)> = request.tails.into_iter().map(|t| (t.attempt, t.text)).collect();
    if !request.certificates.is_empty() {
        state.engine.record_certificates(&id, &request.certificates).await?;
    }
    if !request.commits.is_empty() {
        state.engine.record_commits(&id, &request.commits).await?;
    }
    Ok(Json(state.engine.heartbeat(&id, &request.running, &tails).await?))
}

/// Leases up to `max` tasks, long-polling up to `wait_ms` for work.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/leases", tag = "nodes", request_body = LeaseRequest,
    params(("id" = String, Path, description = "the node id from registration")),
    security(("bearer" = ["node"])),
    responses(
        (status = 200, description = "leases (possibly none)", body = LeaseResponse),
        (status = 404, description = "no node with this id", body = ApiError),
        (status = 422, description = "the node was deregistered or declared gone (`node_refused`): register again", body = ApiError),
    ))]
pub(super) async fn lease(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<LeaseRequest>,
) -> Reply<LeaseResponse> {
    caller.require(Role::Node)?;
    let extract::Json(request) = body;
    // Asking for no leases is answered at once: there is nothing to wait for.
    let wait =
        if request.max == 0 { Duration::ZERO } else { Duration::from_millis(request.wait_ms).min(MAX_WAIT) };
    Ok(Json(LeaseResponse { leases: state.engine.lease(&id, request.max.min(1024), wait).await? }))
}

/// Reports attempts' outcomes, optionally leasing more work in the same round trip.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/reports", tag = "nodes", request_body = ReportRequest,
    params(("id" = String, Path, description = "the node id from registration")),
    security(("bearer" = ["node"])),
    responses(
        (status = 200, description = "one result per report, and leases if asked for", body = ReportResponse),
        (status = 404, description = "leases were asked for and there is no node with this id", body = ApiError),
        (status = 422, description = "leases were asked for and the node was deregistered (`node_refused`)", body = ApiError),
    ))]
pub(super) async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<ReportRequest>,
) -> Reply<ReportResponse> {
    caller.require(Role::Node)?;
    let extract::Json(request) = body;
    let (results, leases) = match request.lease {
        // Leases that need no waiting are claimed in the reports' transaction.
        Some(l) if l.max > 0 && l.wait_ms == 0 => {
            state.engine.complete_then_lease(&id, &request.reports, l.max.min(1024)).await?
        }
        Some(l) if l.max > 0 => {
            let results = state.engine.complete(&id, &request.reports).await?;
            let wait = Duration::from_millis(l.wait_ms).min(MAX_WAIT);
            (results, state.engine.lease(&id, l.max.min(1024), wait).await?)
        }
        _ => (state.engine.complete(&id, &request.reports).await?, vec![]),
    };
    Ok(Json(ReportResponse { results, leases }))
}

/// Creates an API token; it is shown once, only its hash is stored.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenRequest,
    security(("bearer" = ["admin"])),
    responses((status = 201, description = "the new token", body = TokenResponse)))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<TokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    caller.require(Role::Admin)?;
    let extract::Json(request) = body;
    let token = state.engine.create_token(request.role, &request.name).await?;
    Ok((StatusCode::CREATED, Json(TokenResponse { token })))
}

/// Nodes' gateways send their audit records.
#[utoipa::path(post, path = "/api/v1/egress/audit", tag = "egress", request_body = AuditBatch,
    security(("bearer" = ["node"])),
    responses((status = 204, description = "stored")))]
pub(super) async fn post_audit(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<AuditBatch>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Node)?;
    let extract::Json(batch) = body;
    state.engine.record_audit(&batch.records).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only denials (and dry-run would-be denials).
    denied: Option<bool>,
    /// At most this many records, newest first (default 50; below 1 counts as 1, above 10000 as 10000).
    limit: Option<i64>,
}

/// The egress audit trail.
#[utoipa::path(get, path = "/api/v1/egress/audit", tag = "egress", params(AuditQuery),
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "records, newest first", body = Vec<AuditRecord>)))]
pub(super) async fn get_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Reply<Vec<crate::engine::AuditRecord>> {
    caller.require(Role::Viewer)?;
    Ok(Json(
        state.engine.views().audit(q.denied.unwrap_or(false), q.limit.unwrap_or(50).clamp(1, 10_000)).await?,
    ))
}

/// The egress policy version in force, as applied through the control plane.
#[utoipa::path(get, path = "/api/v1/egress/policy", tag = "egress",
    security(("bearer" = ["node"]), ("bearer" = ["viewer"])),
    responses(
        (status = 200, description = "the current version", body = PolicyVersion),
        (status = 404, description = "none was applied (`no_policy`): nodes use their local egress.yaml", body = ApiError),
    ))]
pub(super) async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Reply<crate::engine::PolicyVersion> {
    if !(caller.0.permits(Role::Node) || caller.0.permits(Role::Viewer)) {
        caller.require(Role::Viewer)?;
    }
    match state.engine.current_policy().await? {
        Some(p) => Ok(Json(p)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_policy",
            "no egress policy was applied through the control plane",
            "nodes use their local egress.yaml; `switchyard egress apply FILE` stores a versioned one",
        )),
    }
}

/// Stores a new egress policy version; nodes pick it up on their next poll.
#[utoipa::path(post, path = "/api/v1/egress/policy", tag = "egress", request_body = ApplyPolicy,
    security(("bearer" = ["operator"])),
    responses(
        (status = 201, description = "the version stored", body = Applied),
        (status = 422, description = "the policy does not check cleanly (`invalid_manifests`, every error in `errors`)", body = ApiError),
    ))]
pub(super) async fn apply_policy(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<ApplyPolicy>,
) -> Result<(StatusCode, Json<Applied>), ApiError> {
    caller.require(Role::Operator)?;
    let extract::Json(request) = body;
    let settings = state.engine.config().settings.clone();
    let (_, diagnostics) = switchyard_config::parse_policy(
        std::path::Path::new("egress.yaml"),
        request.yaml.as_bytes(),
        Some(&settings),
    );
    if !diagnostics.is_empty() {
        return Err(
            Error::Rejected { errors: diagnostics.iter().map(plan::PlanError::from).collect() }.into()
        );
    }
    let version = state.engine.apply_policy(&request.yaml, request.mode.as_str(), caller.0.as_str()).await?;
    Ok((StatusCode::CREATED, Json(Applied { version })))
}

/// Prometheus text format. Open by default, like most scrape targets (it holds no secrets);
/// `[control_plane] metrics_token = true` makes it ask for a viewer token.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    security((), ("bearer" = ["viewer"])),
    responses((status = 200, description = "metrics (text format 0.0.4)", body = String, content_type = "text/plain; version=0.0.4")))]
pub(super) async fn metrics(
    State(state): State<AppState>,
    caller: Option<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    if state.engine.config().settings.control_plane.metrics_token {
        caller.ok_or_else(super::auth::missing_token)?.require(Role::Viewer)?;
    }
    let body = state.engine.views().metrics().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

/// Every lake table's latest version known to the control plane.
#[utoipa::path(get, path = "/api/v1/tables", tag = "runs",
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "tables", body = Vec<TableVersion>)))]
pub(super) async fn tables(State(state): State<AppState>, caller: Caller) -> Reply<Vec<TableVersion>> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.table_versions().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CostQuery {
    /// The window the report covers (default `7d`).
    // The pattern is `doc::SINCE_PATTERN`: utoipa takes only a literal, and the API test
    // checks that they are equal.
    #[param(pattern = r"^0*[1-9][0-9]{0,5}(ms|s|m|h|d)$", example = "7d")]
    since: Option<String>,
}

/// The cost report, exactly what `switchyard cost --json` prints (shape: [`crate::views::cost`]).
#[utoipa::path(get, path = "/api/v1/cost", tag = "runs", params(CostQuery),
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "the report", body = crate::views::CostReport)))]
pub(super) async fn cost(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CostQuery>,
) -> Reply<crate::views::CostReport> {
    caller.require(Role::Viewer)?;
    let since = q.since.as_deref().unwrap_or(crate::views::cost::DEFAULT_SINCE);
    doc::since(since)?;
    Ok(Json(state.engine.views().cost(since).await?))
}

/// Health of every job and pool with severities and actions ([`crate::views::health::Health`]).
/// Needs a viewer token: it names jobs, pools, nodes and failure messages. Liveness and readiness
/// probes use the unauthenticated `/healthz` and `/readyz`. Always 200 when it could be computed;
/// the verdict is the body's `status`.
#[utoipa::path(get, path = "/api/v1/health", tag = "runs",
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "the verdict and every check", body = crate::views::health::Health)))]
pub(super) async fn health(
    State(state): State<AppState>,
    caller: Caller,
) -> Reply<crate::views::health::Health> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.views().health().await?))
}
