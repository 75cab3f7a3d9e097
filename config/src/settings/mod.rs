//! Settings (`switchyard.toml`, DESIGN §4.3), layered: built-in defaults < the file <
//! `SWITCHYARD__SECTION__KEY` environment variables. The file is read twice on purpose: once into a
//! located node tree so its errors carry `FILE:LINE:COL`, then through the `config` crate with the
//! environment on top.

mod alerts;
mod check;
mod load;
mod storage;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use check::check_settings;
pub(crate) use load::load_settings;
pub use load::{ENV_PREFIX, LoadedSettings};
pub use storage::{LAKE_SCHEMES, StorageOptions, lake_scheme};

use crate::value::Duration;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub control_plane: ControlPlane,
    pub lake: Lake,
    /// Dedicated node pools, each with its static egress IPs.
    pub pools: Vec<Pool>,
    pub serverless: Serverless,
    /// How transforms run: the default engine and the Ballista cluster for `engine: distributed`.
    pub transform: Transform,
    pub scheduler: Scheduler,
    /// Client identities by name: PEM files read by nodes, never by `plan`.
    pub identities: BTreeMap<String, IdentityFiles>,
    /// Prices for the cost report.
    pub prices: Prices,
    /// Health evaluation and alert webhooks.
    pub alerts: Alerts,
}

impl Settings {
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlane {
    /// Address the API and dashboard listen on.
    pub listen: SocketAddr,
    /// State store URL: `sqlite://PATH` (embedded default) or `postgres://user@host/db` for
    /// several control-plane replicas.
    pub state: String,
    /// File holding the admin API token (created on first start).
    pub token_file: PathBuf,
    /// How long a node's lease lasts without a heartbeat; a node silent longer loses its tasks to
    /// other eligible nodes. Nodes heartbeat three times per period.
    pub lease_ttl: Duration,
    /// Serve the API over TLS with this certificate chain (PEM)…
    pub tls_cert: Option<PathBuf>,
    /// …and this private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Ask `/metrics` scrapers for a viewer token. Off by default: scrape targets are usually
    /// open (the Prometheus convention) and the metrics hold no secrets, but they do name jobs,
    /// pools and egress IPs.
    pub metrics_token: bool,
}

impl Default for ControlPlane {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            state: "sqlite://.switchyard/state.db".to_owned(),
            token_file: PathBuf::from(".switchyard/admin.token"),
            lease_ttl: Duration(std::time::Duration::from_secs(15)),
            tls_cert: None,
            tls_key: None,
            metrics_token: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Lake {
    /// Lake root: a local directory, or an object store URL (`s3://bucket/prefix`, `s3a://`,
    /// `abfss://container@account.dfs.core.windows.net/prefix`, `az://container/prefix`,
    /// `gs://bucket/prefix`). Credentials come from the environment object_store reads (`AWS_*`,
    /// `AZURE_STORAGE_*`, `GOOGLE_*`), overridden by `storage_options`.
    pub root: String,
    /// Options for the object store, by object_store's names (e.g. `aws_endpoint_url`,
    /// `aws_region`, `aws_allow_http`); `NAME_env = "VAR"` or `NAME_file = "PATH"` read a value
    /// from an environment variable or a file. Every value is treated as a secret.
    pub storage_options: StorageOptions,
    /// S3 only: allow commits by copy-then-delete when neither conditional PUT nor a DynamoDB lock
    /// is configured. Two writers racing for one version can then both "win" and one commit is
    /// lost; leave false unless exactly one process ever writes each table.
    pub allow_unsafe_rename: bool,
    /// How often the control plane compacts the event log table (`_switchyard.event_log`, one
    /// small file per export otherwise), once per interval across replicas; `0s` turns it off.
    /// A `[[lake.maintenance]]` entry for that table replaces this.
    pub event_log_optimize_every: Duration,
    /// Table maintenance the control plane runs on a schedule, exactly once per slot across
    /// replicas.
    pub maintenance: Vec<Maintenance>,
}

impl Default for Lake {
    fn default() -> Self {
        Self {
            root: ".switchyard/lake".to_owned(),
            storage_options: StorageOptions::default(),
            allow_unsafe_rename: false,
            event_log_optimize_every: Duration(std::time::Duration::from_secs(24 * 3600)),
            maintenance: Vec::new(),
        }
    }
}

/// Scheduled maintenance of one table (`[[lake.maintenance]]`): compaction (or Z-order), then
/// optionally a vacuum. Exactly one of `every` and `schedule`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// The table, e.g. `bronze.claims` (`_switchyard.event_log` for the event log).
    pub table: crate::value::TableName,
    /// Once per interval (slots aligned to the Unix epoch, so replicas agree on them)…
    #[serde(default)]
    pub every: Option<Duration>,
    /// …or at the times of this cron schedule (UTC), e.g. `0 3 * * *`.
    #[serde(default)]
    pub schedule: Option<crate::value::Schedule>,
    /// Compact small files (deltalake's optimize). Default: true.
    #[serde(default = "enabled")]
    pub optimize: bool,
    /// Z-order by these columns instead of plain compaction.
    #[serde(default)]
    pub z_order: Vec<String>,
    /// After optimizing, delete files no version newer than this still needs (`7d`). Default:
    /// no vacuum. Readers pinned to older versions lose them, so keep it longer than any query.
    #[serde(default)]
    pub vacuum_retain: Option<Duration>,
}

fn enabled() -> bool {
    true
}

/// A pool of dedicated nodes that share static egress IPs and installed identities.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Pool name, unique; tasks may pin to it with `pool:`.
    pub name: String,
    /// Static egress IPs of this pool's nodes; a node must start with one of them.
    pub egress_ips: Vec<IpAddr>,
    /// Concurrent tasks per node.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Client identities installed on this pool's nodes.
    #[serde(default)]
    pub identities: Vec<String>,
}

fn default_slots() -> u32 {
    4
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Serverless {
    /// Most workers running at once; 0 disables serverless.
    pub max_workers: u32,
    /// How long an idle worker waits for work before it exits.
    pub idle_timeout: Duration,
    /// vCPUs one worker is billed for (the cost report prices worker-seconds × this ×
    /// `[prices] serverless_vcpu_second`).
    pub vcpus_per_worker: f64,
    /// What starts workers: `local` (processes on the control plane's machine) or `kubernetes`
    /// (one Job per burst; see `[serverless.kubernetes]`).
    pub launcher: LauncherKind,
    /// The Kubernetes launcher's Jobs (used when `launcher = "kubernetes"`).
    pub kubernetes: KubernetesWorkers,
    /// What one transform's query may hold in memory on a worker (DataFusion's memory pool):
    /// sorts, joins and aggregates spill to the worker's temporary directory beyond it, and a
    /// query that still cannot fit fails as `data` naming the operators that ran out. Keep it
    /// below the worker's memory (`[serverless.kubernetes] memory`, 2Gi): the runtime and the
    /// output rows waiting for their commit are not in it.
    pub memory_limit: crate::value::ByteSize,
    /// Local launcher only: start each worker inside this Linux network namespace (`ip netns
    /// exec NAME switchyard worker …`; see `ip netns list`). Made with routes to nothing but the
    /// control plane and the lake, it stops workers' programs from reaching anything else even
    /// when they ignore the proxy variables: their connections fail with "Network is
    /// unreachable". The control plane and the lake must be reachable from inside at the
    /// addresses the workers are given. On Kubernetes the workers' NetworkPolicy does this.
    pub netns: Option<String>,
}

/// What starts serverless workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LauncherKind {
    /// `switchyard worker` processes on the control plane's machine.
    #[default]
    Local,
    /// A Kubernetes Job per burst of workers (needs a build with the `kube` feature).
    Kubernetes,
}

/// How the Kubernetes launcher makes its Jobs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesWorkers {
    /// Namespace the worker Jobs are created in.
    pub namespace: String,
    /// Container image with the `switchyard` binary (the one `deploy/Dockerfile` builds).
    pub image: String,
    /// URL workers reach the control plane at, e.g. its Service:
    /// `http://switchyard-control-plane.switchyard.svc:7070`.
    pub control_plane_url: Option<String>,
    /// Secret holding the workers' API token (a `node`-role token) under the key `token`; mounted
    /// as a file, never put in the Job spec.
    pub token_secret: String,
    /// Secret with a `ca.crt` key for an https control plane.
    pub ca_secret: Option<String>,
    /// Secret whose keys become the workers' environment, for object-store credentials of the lake
    /// (e.g. `AWS_ACCESS_KEY_ID`).
    pub lake_secret: Option<String>,
    /// Service account of the worker pods (no API permissions needed).
    pub service_account: String,
    /// Memory request and limit of one worker, in Kubernetes quantity notation.
    pub memory: String,
    /// How long a finished Job (and its pods' logs) is kept before Kubernetes deletes it.
    pub job_ttl: Duration,
}

impl Default for KubernetesWorkers {
    fn default() -> Self {
        Self {
            namespace: "switchyard".to_owned(),
            image: String::new(),
            control_plane_url: None,
            token_secret: "switchyard-worker-token".to_owned(),
            ca_secret: None,
            lake_secret: None,
            service_account: "switchyard-worker".to_owned(),
            memory: "2Gi".to_owned(),
            job_ttl: Duration(std::time::Duration::from_secs(600)),
        }
    }
}

impl Default for Serverless {
    fn default() -> Self {
        Self {
            max_workers: 8,
            idle_timeout: Duration(std::time::Duration::from_secs(30)),
            vcpus_per_worker: 1.0,
            memory_limit: crate::value::ByteSize(1 << 30),
            launcher: LauncherKind::Local,
            kubernetes: KubernetesWorkers::default(),
            netns: None,
        }
    }
}

/// Transforms' query engine.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Transform {
    /// The engine of `sql` tasks that do not say (`local` or `distributed`).
    pub engine: crate::manifest::Engine,
    /// The Apache DataFusion Ballista cluster that `engine: distributed` transforms run on.
    pub ballista: Option<Ballista>,
}

/// Where the Ballista scheduler listens.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ballista {
    /// The scheduler's address, `df://HOST:PORT` (Ballista's default port is 50050).
    pub scheduler: String,
}

/// How the control plane starts runs on its own.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Scheduler {
    /// How long an `on_update` transform waits after a commit to a table it reads before it runs;
    /// every further commit within this time restarts the wait, so a burst of small commits
    /// starts one run, not one per commit. A steady stream of commits still starts a run at least
    /// every ten times this.
    pub trigger_debounce: Duration,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self { trigger_debounce: Duration(std::time::Duration::from_secs(2)) }
    }
}

/// PEM files of one client identity.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityFiles {
    /// Client certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM). Keep it readable only by the node's user.
    pub key: PathBuf,
    /// CA bundle that verifies the destination's server certificate; system roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// Cost of one dedicated node for one hour, idle or busy.
    pub dedicated_node_hour: f64,
    /// Cost of one serverless vCPU for one second.
    pub serverless_vcpu_second: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self { dedicated_node_hour: 0.50, serverless_vcpu_second: 0.000024 }
    }
}

/// The control plane evaluates `/api/v1/health` every `interval` and POSTs to each webhook when a
/// check turns bad, again every `rearm` while it stays bad, and once when it is good again.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// How often health is evaluated for alerts.
    pub interval: Duration,
    /// While a check stays bad, notify again after this long.
    pub rearm: Duration,
    /// Where alerts go. Without any, health is still served but nothing is sent.
    pub webhooks: Vec<Webhook>,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            interval: Duration(std::time::Duration::from_secs(30)),
            rearm: Duration(std::time::Duration::from_secs(3600)),
            webhooks: vec![],
        }
    }
}

/// One alert receiver. Its URL often is a secret (a Slack webhook URL is its own credential):
/// prefer `url_env` or `url_file`; the URL is never logged, only its host.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Name in logs (default: the URL's host).
    #[serde(default)]
    pub name: Option<String>,
    /// The URL, inline (`http://` or `https://`)…
    #[serde(default)]
    pub url: Option<String>,
    /// …or the environment variable holding it…
    #[serde(default)]
    pub url_env: Option<String>,
    /// …or a file holding it (e.g. a mounted secret).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// `json` (Switchyard's own alert object) or `slack` (a Slack incoming-webhook body with `text`
    /// and `blocks`; also understood by Mattermost and Rocket.Chat).
    #[serde(default)]
    pub format: WebhookFormat,
    /// CA bundle (PEM) that verifies an https receiver; the system roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl Webhook {
    /// Where the URL comes from: inline, an environment variable or a file.
    pub fn url_source(&self) -> Option<crate::SecretRef> {
        match (&self.url, &self.url_env, &self.url_file) {
            (_, Some(var), _) => Some(crate::SecretRef::Env(var.clone())),
            (_, _, Some(file)) => Some(crate::SecretRef::File(file.clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"source": "switchyard", "status": "firing"|"resolved", "check", "severity", "message", "action", …}`.
    #[default]
    Json,
    /// `{"text": …, "blocks": […]}` for Slack incoming webhooks.
    Slack,
}
