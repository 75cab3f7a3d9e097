//! Request and response bodies of the control-plane API, shared by the server, the client and
//! the node agent: what a node registers, leases, heartbeats and reports, the egress audit, token
//! roles. They live here, not in the engine, so the agent depends on the wire and not on how the
//! control plane stores runs.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use switchyard_config::FailureClass;

use crate::engine::state::TaskState;
use crate::plan::{PlanError, TaskPlan};
use crate::spec::TaskSpec;

/// A granted lease: what to run, and the attempt id to report with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The attempt; also the fencing token.
    pub attempt: i64,
    pub task_run: i64,
    pub run: i64,
    pub job: String,
    pub number: i64,
    pub spec: TaskSpec,
    /// Renew before this (epoch ms), by heartbeating.
    pub lease_expires_at: i64,
    /// The run's options, so the agent runs the task the way the run was asked for; absent from
    /// leases of older control planes, hence the default.
    #[serde(default)]
    pub options: RunOptions,
}

/// How a run was asked to run, stored with the run (`job_runs.options`) and carried by each of its
/// leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Rebuild outputs from scratch instead of processing only what changed.
    #[serde(default)]
    pub full_refresh: bool,
    /// Lake table (`bronze.claims`) → the Delta version to read, so a data-triggered run reads
    /// exactly the commit that triggered it even if more land meanwhile. Empty: read the latest.
    #[serde(default)]
    pub input_versions: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    /// Stopped because the task or run was cancelled.
    Cancelled,
    /// Not finished; the node gives the lease back (draining) for another node to run.
    HandedBack,
}

/// What a node reports about one attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub attempt: i64,
    pub outcome: Outcome,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub error_class: Option<FailureClass>,
    #[serde(default)]
    pub message: Option<String>,
    /// The last KiB of the task's output.
    #[serde(default)]
    pub log_tail: Option<String>,
    /// What the task did beyond succeeding or failing (a transform: refresh mode, versions read
    /// and written, expectation violations), kept with the attempt for `switchyard runs`.
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

impl Report {
    /// A plain success (exit code 0, nothing else to say): what a no-op task reports.
    pub fn succeeded(attempt: i64) -> Report {
        Report {
            attempt,
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            error_class: None,
            message: None,
            log_tail: None,
            details: None,
        }
    }
}

/// The answer to one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReportResult {
    Accepted {
        task_state: TaskState,
    },
    /// The attempt no longer holds its lease; the report changed nothing.
    Rejected {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A dedicated node of a pool, with a static egress IP.
    Dedicated,
    /// An ephemeral serverless worker.
    Serverless,
}

/// What a node says about itself when it registers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub kind: NodeKind,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub egress_ip: Option<IpAddr>,
    #[serde(default)]
    pub identities: Vec<String>,
    pub version: String,
    pub slots: u32,
    /// When the launcher decided to start this worker (epoch ms), for cold-start figures.
    #[serde(default)]
    pub launched_at: Option<i64>,
}

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub node_id: String,
    /// Heartbeat at least this often (ms).
    pub heartbeat_ms: u64,
    pub lease_ttl_ms: u64,
}

/// An attempt the node must stop, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub attempt: i64,
    /// `cancelled`, `lost`, …: the attempt's state in the store.
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub stop: Vec<Stop>,
}

/// One audit record (a denial, or allowed connections aggregated per destination and minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: i64,
    pub egress_ip: String,
    #[serde(default)]
    pub task: Option<String>,
    pub destination: String,
    /// `allowed`, `denied` or `would_deny` (dry run).
    pub verdict: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// How many connections this record stands for.
    pub count: i64,
    /// Bytes both ways of the connections that ended in this record's minute.
    #[serde(default)]
    pub bytes: i64,
    /// Their total duration.
    #[serde(default)]
    pub duration_ms: i64,
}

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub version: i64,
    pub yaml: String,
    /// `enforce` or `dry_run`.
    pub mode: String,
    pub applied_at: i64,
    pub applied_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Node,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Node => "node",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "node" => Role::Node,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// Whether a token of this role may do what `needed` allows.
    pub fn permits(self, needed: Role) -> bool {
        match needed {
            Role::Admin => self == Role::Admin,
            Role::Node => matches!(self, Role::Node | Role::Admin),
            Role::Operator => matches!(self, Role::Operator | Role::Admin),
            Role::Viewer => matches!(self, Role::Viewer | Role::Operator | Role::Admin),
        }
    }
}

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
    pub role: Role,
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
    pub records: Vec<AuditRecord>,
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
