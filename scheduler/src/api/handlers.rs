//! One function per route. Each checks the caller's role first, then does one engine call.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::types::*;
use super::{AppState, OPENAPI};
use crate::engine::{HeartbeatReply, NodeInfo, Registration, Role, RunOptions};
use crate::views::{NodeView, RunView};
use crate::{Error, plan, spec};

type Body<T> = Result<Json<T>, JsonRejection>;
type Reply<T> = Result<Json<T>, ApiError>;

/// Long polls are capped so that proxies and clients do not time out first.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

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

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route", "see /api/v1/openapi.json")
}

pub(super) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<SubmitRequest>,
) -> Reply<SubmitResponse> {
    caller.require(Role::Operator)?;
    let Json(request) = body?;
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

#[derive(Debug, Deserialize)]
pub(super) struct RunsQuery {
    job: Option<String>,
    limit: Option<i64>,
    /// Only runs unfinished or finished within this long (`7d`): the runs a cost report counts.
    since: Option<String>,
}

pub(super) async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RunsQuery>,
) -> Reply<Vec<RunView>> {
    caller.require(Role::Viewer)?;
    let since = match q.since.as_deref() {
        Some(s) => Some(crate::store::now_ms() - crate::views::cost::parse_since(s)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    Ok(Json(state.engine.views().runs_since(q.job.as_deref(), since, limit).await?))
}

pub(super) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Reply<RunView> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.views().run(id).await?))
}

pub(super) async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Reply<RunView> {
    caller.require(Role::Operator)?;
    Ok(Json(state.engine.cancel_run(id).await?))
}

pub(super) async fn cancel_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Operator)?;
    state.engine.cancel_task(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn nodes(State(state): State<AppState>, caller: Caller) -> Reply<Vec<NodeView>> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.views().nodes().await?))
}

pub(super) async fn register(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<NodeInfo>,
) -> Result<(StatusCode, Json<Registration>), ApiError> {
    caller.require(Role::Node)?;
    let Json(info) = body?;
    Ok((StatusCode::CREATED, Json(state.engine.register(&info).await?)))
}

pub(super) async fn deregister(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Node)?;
    state.engine.deregister(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<HeartbeatRequest>,
) -> Reply<HeartbeatReply> {
    caller.require(Role::Node)?;
    let Json(request) = body?;
    let tails: Vec<(i64, String)> = request.tails.into_iter().map(|t| (t.attempt, t.text)).collect();
    if !request.certificates.is_empty() {
        state.engine.record_certificates(&id, &request.certificates).await?;
    }
    if !request.commits.is_empty() {
        state.engine.record_commits(&id, &request.commits).await?;
    }
    Ok(Json(state.engine.heartbeat(&id, &request.running, &tails).await?))
}

pub(super) async fn lease(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<LeaseRequest>,
) -> Reply<LeaseResponse> {
    caller.require(Role::Node)?;
    let Json(request) = body?;
    let wait = Duration::from_millis(request.wait_ms).min(MAX_WAIT);
    Ok(Json(LeaseResponse { leases: state.engine.lease(&id, request.max.min(1024), wait).await? }))
}

pub(super) async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body<ReportRequest>,
) -> Reply<ReportResponse> {
    caller.require(Role::Node)?;
    let Json(request) = body?;
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

pub(super) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<TokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    caller.require(Role::Admin)?;
    let Json(request) = body?;
    let token = state.engine.create_token(request.role, &request.name).await?;
    Ok((StatusCode::CREATED, Json(TokenResponse { token })))
}

pub(super) async fn post_audit(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<AuditBatch>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Node)?;
    let Json(batch) = body?;
    state.engine.record_audit(&batch.records).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    denied: Option<bool>,
    limit: Option<i64>,
}

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

pub(super) async fn apply_policy(
    State(state): State<AppState>,
    caller: Caller,
    body: Body<ApplyPolicy>,
) -> Result<(StatusCode, Json<Applied>), ApiError> {
    caller.require(Role::Operator)?;
    let Json(request) = body?;
    if !matches!(request.mode.as_str(), "enforce" | "dry_run") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("unknown mode `{}`", request.mode),
            "use enforce or dry_run",
        ));
    }
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
    let version = state.engine.apply_policy(&request.yaml, &request.mode, caller.0.as_str()).await?;
    Ok((StatusCode::CREATED, Json(Applied { version })))
}

/// Prometheus text format. Unauthenticated, like most scrape targets; it holds no secrets.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let body = state.engine.views().metrics().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

pub(super) async fn tables(State(state): State<AppState>, caller: Caller) -> Reply<Vec<TableVersion>> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.table_versions().await?))
}

#[derive(Debug, Deserialize)]
pub(super) struct CostQuery {
    since: Option<String>,
}

/// The cost report, exactly what `switchyard cost --json` prints (shape: [`crate::views::cost`]).
pub(super) async fn cost(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CostQuery>,
) -> Reply<crate::views::CostReport> {
    caller.require(Role::Viewer)?;
    let since = q.since.as_deref().unwrap_or(crate::views::cost::DEFAULT_SINCE);
    Ok(Json(state.engine.views().cost(since).await?))
}

/// Health of every job and pool with severities and actions ([`crate::views::health::Health`]).
/// Needs a viewer token: it names jobs, pools, nodes and failure messages. Liveness and readiness
/// probes use the unauthenticated `/healthz` and `/readyz`. Always 200 when it could be computed;
/// the verdict is the body's `status`.
pub(super) async fn health(
    State(state): State<AppState>,
    caller: Caller,
) -> Reply<crate::views::health::Health> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.engine.views().health().await?))
}
