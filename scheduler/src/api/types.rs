//! Request and response bodies of the control-plane API, shared by the server and the client.

use serde::{Deserialize, Serialize};

use crate::engine::{Lease, Report, ReportResult};
use crate::plan::{PlanError, TaskPlan};

/// A manifest file sent for submission: its path (for messages and `run` working directories)
/// and its contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitRequest {
    pub manifests: Vec<ManifestFile>,
    /// Start a run of each job now (default true).
    #[serde(default = "yes")]
    pub run: bool,
    /// Rebuild transform outputs from scratch instead of incrementally.
    #[serde(default)]
    pub full_refresh: bool,
    /// Run only the tasks that write these tables (`schema.table`); jobs with none of them are
    /// registered without a run. Empty: every task.
    #[serde(default)]
    pub select: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedJob {
    pub job: String,
    pub run: Option<i64>,
    pub tasks: Vec<TaskPlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub jobs: Vec<SubmittedJob>,
}

/// A lease request: up to `max` tasks, waiting up to `wait_ms` for work.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub max: usize,
    #[serde(default)]
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseResponse {
    pub leases: Vec<Lease>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogTail {
    pub attempt: i64,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Attempts the node is running.
    #[serde(default)]
    pub running: Vec<i64>,
    /// The latest output of running attempts.
    #[serde(default)]
    pub tails: Vec<LogTail>,
    /// Expiry of the client certificates the node's gateway holds.
    #[serde(default)]
    pub certificates: Vec<CertificateExpiry>,
    /// Delta versions committed by the node's attempts since the last heartbeat.
    #[serde(default)]
    pub commits: Vec<CommitRecord>,
}

/// A Delta version an attempt committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub attempt: i64,
    pub table: String,
    pub version: i64,
    pub rows: i64,
}

/// A lake table's latest version known to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableVersion {
    pub table: String,
    pub version: i64,
    /// When it was committed (epoch ms).
    pub at: i64,
    /// The job and task whose attempt committed it.
    pub job: String,
    pub task: String,
    pub rows: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateExpiry {
    pub identity: String,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

/// Reports, and optionally a lease request answered in the same round trip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportRequest {
    pub reports: Vec<Report>,
    #[serde(default)]
    pub lease: Option<LeaseRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportResponse {
    pub results: Vec<ReportResult>,
    pub leases: Vec<Lease>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub role: crate::engine::Role,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Shown once; only its hash is stored.
    pub token: String,
}

/// Plan errors are returned inside [`super::error::ApiError`]; re-exported for clients.
pub type SubmitErrors = Vec<PlanError>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditBatch {
    pub records: Vec<crate::engine::AuditRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyPolicy {
    /// The policy file's contents.
    pub yaml: String,
    /// `enforce` (default) or `dry_run`: log would-be denials without blocking.
    #[serde(default = "enforce")]
    pub mode: String,
}

fn enforce() -> String {
    "enforce".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub version: i64,
}
