//! Request and response bodies of the control-plane API, shared by the server, the client and
//! the node agent: what a node registers, leases, heartbeats and reports, the egress audit, token
//! roles. They live here, not in the engine, so the agent depends on the wire and not on how the
//! control plane stores runs.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use switchyard_config::FailureClass;

use crate::engine::state::TaskState;
use crate::plan::{PlanError, TaskPlan};
use crate::spec::TaskSpec;

/// A granted lease: what to run, and the attempt id to report with.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunOptions {
    /// Rebuild outputs from scratch instead of processing only what changed.
    #[serde(default)]
    pub full_refresh: bool,
    /// Lake table (`bronze.claims`) → the Delta version to read, so a data-triggered run reads
    /// exactly the commit that triggered it even if more land meanwhile. Empty: read the latest.
    #[serde(default)]
    pub input_versions: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    #[serde(default, deserialize_with = "optional_object")]
    #[schema(value_type = Option<Object>)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A dedicated node of a pool, with a static egress IP.
    Dedicated,
    /// An ephemeral serverless worker.
    Serverless,
}

/// What a node says about itself when it registers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    pub kind: NodeKind,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    #[schema(schema_with = ip_address)]
    pub egress_ip: Option<IpAddr>,
    #[serde(default)]
    pub identities: Vec<String>,
    pub version: String,
    #[schema(schema_with = unsigned_32)]
    pub slots: u32,
    /// When the launcher decided to start this worker (epoch ms), for cold-start figures.
    #[serde(default, deserialize_with = "optional_epoch_ms")]
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub launched_at: Option<i64>,
}

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registration {
    pub node_id: String,
    /// Heartbeat at least this often (ms).
    pub heartbeat_ms: u64,
    pub lease_ttl_ms: u64,
}

/// An attempt the node must stop, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stop {
    pub attempt: i64,
    /// `cancelled`, `lost`, …: the attempt's state in the store.
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatReply {
    pub stop: Vec<Stop>,
}

/// One audit record (a denial, or allowed connections aggregated per destination and minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// When (epoch ms).
    #[serde(deserialize_with = "epoch_ms")]
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
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
    #[serde(deserialize_with = "amount")]
    #[schema(minimum = 0, maximum = 281_474_976_710_656_i64)]
    pub count: i64,
    /// Bytes both ways of the connections that ended in this record's minute.
    #[serde(default, deserialize_with = "amount")]
    #[schema(minimum = 0, maximum = 281_474_976_710_656_i64)]
    pub bytes: i64,
    /// Their total duration.
    #[serde(default, deserialize_with = "amount")]
    #[schema(minimum = 0, maximum = 281_474_976_710_656_i64)]
    pub duration_ms: i64,
}

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyVersion {
    pub version: i64,
    pub yaml: String,
    /// `enforce` or `dry_run`.
    pub mode: String,
    pub applied_at: i64,
    pub applied_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManifestFile {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "manifests": [{
        "path": "jobs/orders.yaml",
        "content": "job: orders\nexternal_tables: [bronze.orders]\ntasks:\n  - { name: daily, sql: \"SELECT * FROM bronze.orders\", sink: { table: silver.orders } }\n"
    }],
    "run": true
}))]
pub struct SubmitRequest {
    #[schema(min_items = 1)]
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

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmittedJob {
    pub job: String,
    pub run: Option<i64>,
    pub tasks: Vec<TaskPlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitResponse {
    pub jobs: Vec<SubmittedJob>,
}

/// A lease request: up to `max` tasks, waiting up to `wait_ms` for work.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseRequest {
    /// At most this many leases (above 1024 counts as 1024).
    #[schema(schema_with = unsigned_64)]
    pub max: usize,
    /// How long to wait for work when there is none (ms; above 30000 counts as 30000).
    #[serde(default)]
    #[schema(schema_with = unsigned_64)]
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseResponse {
    pub leases: Vec<Lease>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogTail {
    pub attempt: i64,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommitRecord {
    pub attempt: i64,
    pub table: String,
    pub version: i64,
    /// Rows the version added.
    #[serde(deserialize_with = "amount")]
    #[schema(minimum = 0, maximum = 281_474_976_710_656_i64)]
    pub rows: i64,
}

/// A lake table's latest version known to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateExpiry {
    pub identity: String,
    /// Seconds since the Unix epoch.
    #[serde(deserialize_with = "epoch_s")]
    #[schema(minimum = 0, maximum = 253_402_300_799_i64)]
    pub not_after: i64,
}

/// Reports, and optionally a lease request answered in the same round trip.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportRequest {
    pub reports: Vec<Report>,
    #[serde(default)]
    pub lease: Option<LeaseRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportResponse {
    pub results: Vec<ReportResult>,
    pub leases: Vec<Lease>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    pub role: Role,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// Shown once; only its hash is stored.
    pub token: String,
}

/// Plan errors are returned inside [`super::error::ApiError`]; re-exported for clients.
pub type SubmitErrors = Vec<PlanError>;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditBatch {
    pub records: Vec<AuditRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "yaml": "destinations:\n  - { name: partner-api, host: api.partner.example, ports: [443], egress_ips: [127.0.0.2] }\n",
    "mode": "dry_run"
}))]
pub struct ApplyPolicy {
    /// The policy file's contents.
    pub yaml: String,
    /// `enforce` (default) or `dry_run`: log would-be denials without blocking.
    #[serde(default)]
    pub mode: PolicyMode,
}

/// How nodes apply an egress policy version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// Deny what no rule allows.
    #[default]
    Enforce,
    /// Allow everything, and audit what would have been denied.
    DryRun,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::DryRun => "dry_run",
        }
    }
}

/// An IPv4 or IPv6 address, as `IpAddr` reads it, or null.
fn ip_address() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let ip = |format| {
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)))
    };
    OneOfBuilder::new()
        .item(ip(KnownFormat::Ipv4))
        .item(ip(KnownFormat::Ipv6))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    pub version: i64,
}

/// `u32` as serde reads it: the document's `int32` would stop at 2^31 - 1.
fn unsigned_32() -> utoipa::openapi::Schema {
    unsigned(u32::MAX.into())
}

/// `u64` (and `usize`) as serde reads it: the document's `int64` would stop at 2^63 - 1.
fn unsigned_64() -> utoipa::openapi::Schema {
    unsigned(u64::MAX)
}

fn unsigned(max: u64) -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(max)).build().into()
}

/// The largest count, byte total or row count one record may carry (2^48, 281 TB): sums over
/// millions of records in the store's 64-bit columns stay far from overflowing. The schemas'
/// `maximum` states the same numbers (checked by `bounds_match_the_document`).
pub const MAX_AMOUNT: i64 = 1 << 48;
/// The last millisecond of year 9999: differences between timestamps cannot overflow.
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;
/// The same in seconds.
pub const MAX_EPOCH_S: i64 = MAX_EPOCH_MS / 1000;

fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    within(i64::deserialize(d)?, MAX_AMOUNT)
}

fn epoch_ms<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    within(i64::deserialize(d)?, MAX_EPOCH_MS)
}

fn optional_epoch_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<i64>::deserialize(d)?.map(|v| within(v, MAX_EPOCH_MS)).transpose()
}

fn epoch_s<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    within(i64::deserialize(d)?, MAX_EPOCH_S)
}

/// What the document's `Object` says: a JSON object, or null.
fn optional_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(object @ serde_json::Value::Object(_)) => Ok(Some(object)),
        Some(_) => Err(serde::de::Error::custom("expected a JSON object or null")),
    }
}

fn within<E: serde::de::Error>(value: i64, max: i64) -> Result<i64, E> {
    if (0..=max).contains(&value) {
        Ok(value)
    } else {
        Err(E::custom(format_args!("{value} is out of range: expected 0 to {max}")))
    }
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    fn schema_of<T: PartialSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn bounds_match_the_document() {
        let audit = schema_of::<AuditRecord>();
        for field in ["count", "bytes", "duration_ms"] {
            assert_eq!(audit["properties"][field]["maximum"], MAX_AMOUNT, "{field}");
        }
        assert_eq!(audit["properties"]["at"]["maximum"], MAX_EPOCH_MS);
        assert_eq!(schema_of::<CommitRecord>()["properties"]["rows"]["maximum"], MAX_AMOUNT);
        assert_eq!(schema_of::<CertificateExpiry>()["properties"]["not_after"]["maximum"], MAX_EPOCH_S);
        assert_eq!(schema_of::<NodeInfo>()["properties"]["launched_at"]["maximum"], MAX_EPOCH_MS);
        assert_eq!(schema_of::<NodeInfo>()["properties"]["slots"]["maximum"], u32::MAX);
        assert_eq!(schema_of::<LeaseRequest>()["properties"]["wait_ms"]["maximum"], u64::MAX);
    }

    #[test]
    fn numbers_past_their_bounds_are_refused_naming_the_bound() {
        let record = |count: i64| serde_json::json!({"at": 0, "egress_ip": "", "destination": "d", "verdict": "allowed", "count": count});
        assert!(serde_json::from_value::<AuditRecord>(record(MAX_AMOUNT)).is_ok());
        for bad in [MAX_AMOUNT + 1, -1] {
            let err = serde_json::from_value::<AuditRecord>(record(bad)).unwrap_err().to_string();
            assert!(err.contains("out of range: expected 0 to 281474976710656"), "{err}");
        }
    }
}
