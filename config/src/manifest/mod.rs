//! Task manifests (`jobs/*.yaml`, DESIGN §4.1): one job per file, its tasks tagged by workload class.
//!
//! These types are the user documentation: each field's `///` comment is what `switchyard schema
//! manifest` shows in an editor.

mod check;
mod load;

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

pub(crate) use check::{check_manifest, valid_name};
pub use load::LoadedManifest;
pub(crate) use load::load_manifest;

use crate::document::{recover_opt, recover_vec};
use crate::value::{Duration, Endpoint, HttpUrl, Port, Schedule, TableName};

/// A job: a named set of tasks run together, in dependency order.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Job name, unique across all manifests: letters, digits, `_` and `-`.
    pub job: String,
    /// What the job is for, shown in the dashboard.
    #[serde(default)]
    pub description: Option<String>,
    /// Cron schedule (five fields, UTC), e.g. `0 */6 * * *`. Without one the job runs when submitted.
    #[serde(default, deserialize_with = "recover_opt")]
    pub schedule: Option<Schedule>,
    /// Tables this job reads that already exist in the lake (written by something outside these
    /// manifests). Any other table a task reads must be written by a task being planned.
    #[serde(default, deserialize_with = "recover_vec")]
    pub external_tables: Vec<TableName>,
    /// Longest a run may take from start to finish, e.g. `1h` (the default). A run over it turns
    /// the job's `latency` health check to warning.
    #[serde(default, deserialize_with = "recover_opt")]
    pub sla: Option<Duration>,
    /// A run must succeed at least this often, e.g. `26h`; longer without one turns the job's
    /// `recent_success` health check to warning. Default for a scheduled job: late when neither of
    /// its last two slots (older than the SLA) led to a success; unscheduled jobs are not checked.
    #[serde(default, deserialize_with = "recover_opt")]
    pub expected_interval: Option<Duration>,
    /// The job's tasks, in the order they are shown.
    #[serde(deserialize_with = "recover_vec")]
    pub tasks: Vec<Task>,
}

/// One unit of work: an ingestion `source`, a transform `sql`, or a program to `run`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Task name, unique within the job.
    pub name: String,
    /// Workload class tag. Optional: inferred from what the task declares when absent; a tag that
    /// contradicts the task's connectivity needs is an error (`class_mismatch`).
    #[serde(default, deserialize_with = "recover_opt")]
    pub class: Option<WorkloadClass>,
    /// External system to ingest from (makes the task external ingestion).
    #[serde(default, deserialize_with = "recover_opt")]
    pub source: Option<Source>,
    /// SQL over lake tables (makes the task a transform). Tables it reads become dependencies.
    #[serde(default)]
    pub sql: Option<String>,
    /// A program to run, for tools a team already has.
    #[serde(default, deserialize_with = "recover_opt")]
    pub run: Option<RunSpec>,
    /// The lake table the task writes.
    #[serde(default, deserialize_with = "recover_opt")]
    pub sink: Option<SinkSpec>,
    /// `triggered` (run to completion, the default) or `continuous` (keep running; restarted with
    /// backoff when it stops).
    #[serde(default, deserialize_with = "recover_opt")]
    pub mode: Option<RunMode>,
    /// `on_update`: also run this transform on its own whenever a table its SQL reads gets a new
    /// Delta version (after the settings' `[scheduler] trigger_debounce`), reading exactly the
    /// versions that were committed. Only for `sql` tasks.
    #[serde(default, deserialize_with = "recover_opt")]
    pub trigger: Option<Trigger>,
    /// Tasks of this job that must succeed first, beyond those inferred from tables.
    #[serde(default, deserialize_with = "recover_vec")]
    pub depends_on: Vec<String>,
    /// Where the task runs: `dedicated` or `serverless`. Optional: it follows from what the
    /// task connects to. `compute: dedicated` puts a task that reaches only the lake on a pool's
    /// node (the cost report says when that is cheaper, e.g. a task busy most of the day); it
    /// still has no egress there. `compute: serverless` on a task that connects to something is
    /// an error (`class_mismatch`): serverless workers have no egress.
    #[serde(default, deserialize_with = "recover_opt")]
    pub compute: Option<Compute>,
    /// How a transform's query runs: `local` (the default), in the serverless worker's own
    /// DataFusion; or `distributed`, on the Apache DataFusion Ballista cluster the settings name
    /// (`[transform.ballista] scheduler`), for inputs past one worker. Only for `sql` tasks.
    /// The worker still pins the inputs, checks expectations and commits the output.
    #[serde(default, deserialize_with = "recover_opt")]
    pub engine: Option<Engine>,
    /// Pin the task to one pool; placement then considers only that pool. For a task with
    /// destinations, or one with `compute: dedicated`.
    #[serde(default)]
    pub pool: Option<String>,
    /// Data quality checks on a transform's output.
    #[serde(default, deserialize_with = "recover_vec")]
    pub expectations: Vec<Expectation>,
    /// Retry policy for failed attempts (exponential backoff with full jitter).
    #[serde(default, deserialize_with = "recover_opt")]
    pub retries: Option<Retries>,
    /// Longest an attempt may run before it is stopped and marked `timed_out`, e.g. `15m`.
    #[serde(default, deserialize_with = "recover_opt")]
    pub timeout: Option<Duration>,
}

impl Task {
    pub fn mode(&self) -> RunMode {
        self.mode.unwrap_or_default()
    }
}

/// Where a task runs (DESIGN §4.4).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compute {
    /// A node of a pool with static egress IPs.
    Dedicated,
    /// An ephemeral worker with no egress but the lake.
    Serverless,
}

impl Compute {
    pub fn as_str(self) -> &'static str {
        match self {
            Compute::Dedicated => "dedicated",
            Compute::Serverless => "serverless",
        }
    }
}

/// Which query engine runs a transform.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// DataFusion inside the serverless worker.
    #[default]
    Local,
    /// Apache DataFusion Ballista: a scheduler and its executors.
    Distributed,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Local => "local",
            Engine::Distributed => "distributed",
        }
    }
}

/// Workload class tags (DESIGN §4.1).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
pub enum WorkloadClass {
    /// SQL Server or PostgreSQL ingestion.
    #[serde(rename = "ingest.jdbc")]
    IngestJdbc,
    /// Kafka consumer.
    #[serde(rename = "ingest.kafka")]
    IngestKafka,
    /// HTTPS API, or a `run` task with destinations.
    #[serde(rename = "ingest.api")]
    IngestApi,
    /// SQL over lake tables, or a `run` task without destinations.
    #[serde(rename = "transform")]
    Transform,
}

impl WorkloadClass {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadClass::IngestJdbc => "ingest.jdbc",
            WorkloadClass::IngestKafka => "ingest.kafka",
            WorkloadClass::IngestApi => "ingest.api",
            WorkloadClass::Transform => "transform",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    #[default]
    Triggered,
    Continuous,
}

/// What starts a task besides its job's runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A new version of a table the transform reads.
    OnUpdate,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::OnUpdate => "on_update",
        }
    }
}

/// An external system to ingest from, selected by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[schemars(tag = "kind")]
pub enum Source {
    Sqlserver(DatabaseSource),
    Postgres(DatabaseSource),
    Kafka(KafkaSource),
    Https(Box<HttpsSource>),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Sqlserver(_) => "sqlserver",
            Source::Postgres(_) => "postgres",
            Source::Kafka(_) => "kafka",
            Source::Https(_) => "https",
        }
    }
}

/// SQL Server (`kind: sqlserver`, port 1433 by default) or PostgreSQL (`kind: postgres`, 5432).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSource {
    /// Database server host name or IP address.
    pub host: String,
    /// Server port; defaults to the engine's standard port.
    #[serde(default)]
    pub port: Option<Port>,
    pub database: String,
    pub user: String,
    /// Environment variable holding the password. Secrets are never written in manifests.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (e.g. a mounted secret), as an alternative to `password_env`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The query whose rows are ingested.
    pub query: String,
    /// Column for incremental loads: only rows past the last committed value are read.
    #[serde(default)]
    pub watermark: Option<String>,
}

/// A Kafka consumer (`kind: kafka`). It keeps its group membership on one node while that node is
/// healthy.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// Bootstrap brokers as host:port.
    #[serde(deserialize_with = "recover_vec")]
    pub brokers: Vec<Endpoint>,
    pub topic: String,
    /// Consumer group id; defaults to `switchyard-<job>-<task>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Message payload format.
    #[serde(default)]
    pub format: Option<MessageFormat>,
    /// Client identity (certificate) for TLS to the brokers.
    #[serde(default)]
    pub identity: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageFormat {
    Json,
    Avro,
}

/// A partner HTTPS API (`kind: https`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpsSource {
    pub url: HttpUrl,
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// JSON request body for POST.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Extra request headers (not for secrets: use `bearer_token_env`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Client certificate held by the gateway (settings `[identities.NAME]`).
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// Page body format: a JSON array (optionally under `records`) or newline-delimited JSON.
    #[serde(default)]
    pub format: Option<PageFormat>,
    /// Field of the JSON response that holds the records array, e.g. `data`.
    #[serde(default)]
    pub records: Option<String>,
    /// Columns of the records. Without it the schema is inferred from the first page (every
    /// column nullable); declare it when pages may disagree.
    #[serde(default, deserialize_with = "recover_vec")]
    pub schema: Vec<Column>,
}

/// A declared column of ingested records.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// Whether the column may be missing or null (default true).
    #[serde(default)]
    pub nullable: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float64,
    Boolean,
    /// RFC 3339 text, stored as UTC microseconds.
    Timestamp,
    /// `YYYY-MM-DD`.
    Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PageFormat {
    Json,
    Ndjson,
}

/// How to get the next page: set exactly one of `cursor_field`, `next_link` or `page_param`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    /// Response field holding the cursor for the next page.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Query parameter that carries the cursor (default `cursor`).
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Response field holding the full URL of the next page.
    #[serde(default)]
    pub next_link: Option<String>,
    /// Query parameter for page numbers, starting at 1.
    #[serde(default)]
    pub page_param: Option<String>,
}

/// A program to run. With `destinations` it is dedicated and reaches them through the node's
/// gateway (`HTTPS_PROXY`); without, it is serverless and has no egress.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Program and arguments, e.g. `["python3", "export.py"]`. Not run through a shell.
    pub command: Vec<String>,
    /// Declared egress as host:port; enforced through the gateway proxy.
    #[serde(default, deserialize_with = "recover_vec")]
    pub destinations: Vec<Endpoint>,
    /// Environment for the program. Point at secret files here; never write secret values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the manifest's directory.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

/// Where a task's output goes.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub table: TableName,
    /// `append` (default), `overwrite`, or `merge` on `keys`.
    #[serde(default, deserialize_with = "recover_opt")]
    pub mode: Option<WriteMode>,
    /// Key columns for `merge`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// When an ingestion commits to the table: whichever limit is reached first.
    #[serde(default, deserialize_with = "recover_opt")]
    pub flush: Option<Flush>,
}

/// Commit cadence of an ingestion: each commit is one Delta version carrying the source position,
/// so fewer, larger commits are faster; smaller ones make data visible sooner.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flush {
    /// Rows per commit (default 500000).
    #[serde(default)]
    pub rows: Option<u64>,
    /// Approximate bytes of Arrow data per commit (default 256 MiB).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Longest time data waits before it is committed, e.g. `5s` (default 10s).
    #[serde(default, deserialize_with = "recover_opt")]
    pub interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    #[default]
    Append,
    Overwrite,
    Merge,
}

/// A data quality rule: a SQL boolean expression over output rows.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub name: String,
    /// SQL boolean expression that valid rows satisfy, e.g. `amount >= 0`.
    pub check: String,
    /// What to do with rows that fail: `warn` (keep, count; the default), `drop`, `fail` the task,
    /// or `quarantine` them in `<table>__quarantine`.
    #[serde(default)]
    pub on_violation: Option<OnViolation>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    #[default]
    Warn,
    Drop,
    Fail,
    Quarantine,
}

/// Retries with exponential backoff and full jitter: attempt n waits a random time up to
/// `min(backoff · 2^(n-1), max_backoff)`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first attempt.
    pub max: u32,
    /// Base delay, e.g. `2s` (default `1s`).
    #[serde(default)]
    pub backoff: Option<Duration>,
    /// Cap on the delay (default `5m`).
    #[serde(default)]
    pub max_backoff: Option<Duration>,
    /// Which failures are worth another attempt. Default: for ingestion and SQL transforms
    /// `[connectivity, timeout]` — a dropped connection or an outage may pass, while bad data,
    /// refused credentials or a missing permission fail the same way again; for `run` tasks
    /// every failure, since an exit status says nothing about its cause.
    #[serde(default)]
    pub retry_on: Option<Vec<RetryOn>>,
}

/// A kind of failure `retries.retry_on` can name: a failure class, or running out of time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    Connectivity,
    Authentication,
    Access,
    Data,
    Internal,
    /// The attempt ran past `timeout`.
    Timeout,
}

impl RetryOn {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::Connectivity => "connectivity",
            RetryOn::Authentication => "authentication",
            RetryOn::Access => "access",
            RetryOn::Data => "data",
            RetryOn::Internal => "internal",
            RetryOn::Timeout => "timeout",
        }
    }

    /// The kind a failure of `class` is (a failure without a class counts as `internal`).
    pub fn of(class: Option<crate::FailureClass>) -> RetryOn {
        match class {
            Some(crate::FailureClass::Connectivity) => RetryOn::Connectivity,
            Some(crate::FailureClass::Authentication) => RetryOn::Authentication,
            Some(crate::FailureClass::Access) => RetryOn::Access,
            Some(crate::FailureClass::Data) => RetryOn::Data,
            Some(crate::FailureClass::Internal) | None => RetryOn::Internal,
        }
    }
}
