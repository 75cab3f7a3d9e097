//! The files the demo runs, written into its directory so they can be read, changed and run again
//! with `switchyard run`/`plan` like any team's own: settings, egress policy, two manifests.
//! Paths in them are absolute, so they work from any current directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::partner::Partner;
use super::pki::{IDENTITY, Pki};

/// The pipeline modelled on the case study, and the job that shows a serverless worker has no
/// way out.
pub(crate) const PIPELINE_JOB: &str = "claims_pipeline";
pub(crate) const FETCH_JOB: &str = "serverless_fetch_attempt";
pub(crate) const POOL: &str = "partner-egress";
/// The fetch that honours the proxy variables, refused by the worker's proxy.
pub(crate) const FETCH_TASK: &str = "fetch_claims";
/// With `--netns`: the fetch that ignores the proxy variables and opens its own socket.
pub(crate) const DIRECT_TASK: &str = "fetch_direct";
/// Every table the pipeline writes, in the order data flows (the quarantine beside silver).
pub(crate) const TABLES: [&str; 4] =
    ["bronze.claims", "silver.claims", "silver.claims__quarantine", "gold.provider_totals"];

/// Where the demo's inputs are.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    pub(crate) settings: PathBuf,
    pub(crate) egress: PathBuf,
    /// The manifests' directory.
    pub(crate) jobs: PathBuf,
    pub(crate) state_file: PathBuf,
    /// The lake root: the demo directory's `lake/`, or the `--lake` URL.
    pub(crate) lake: String,
}

pub(crate) fn write(
    dir: &Path,
    pki: &Pki,
    partner: &Partner,
    egress_ip: IpAddr,
    exe: &Path,
    lake: Option<&str>,
    netns: Option<&str>,
) -> anyhow::Result<Files> {
    let files = Files {
        settings: dir.join("switchyard.toml"),
        egress: dir.join("egress.yaml"),
        jobs: dir.join("jobs"),
        state_file: dir.join("state.db"),
        lake: lake.map_or_else(|| dir.join("lake").display().to_string(), str::to_owned),
    };
    let q = |p: &Path| quote(&p.display().to_string());
    let settings = format!(
        r#"# Written by `switchyard demo` (and rewritten on its next run). One pool, `{POOL}`, whose
# node leaves from {egress_ip}: the only source the partner API's allowlist accepts. It holds the
# client identity the partner requires. Transforms run on up to two serverless workers that
# exit after a few idle seconds.
[control_plane]
state = {state}
token_file = {token}
lease_ttl = "10s"

[lake]
root = {lake}

[[pools]]
name = "{POOL}"
egress_ips = ["{egress_ip}"]
slots = 2
identities = ["{IDENTITY}"]

[serverless]
max_workers = 2
idle_timeout = "5s"{netns}

[identities.{IDENTITY}]
cert = {cert}
key = {key}
ca = {ca}
"#,
        state = quote(&format!("sqlite://{}", files.state_file.display())),
        token = q(&dir.join("admin.token")),
        lake = quote(&files.lake),
        cert = q(&pki.client.cert),
        key = q(&pki.client.key),
        ca = q(&pki.client.ca),
        netns = netns.map_or_else(String::new, |ns| {
            format!(
                "\n# Workers start in this network namespace: no route but to the control plane.\nnetns = {}",
                quote(ns)
            )
        }),
    );
    let (host, port) = (partner.addr.ip(), partner.addr.port());
    let egress = format!(
        r#"# Written by `switchyard demo`. Deny by default: the partner API on {host}:{port} is reached
# only from {egress_ip}, presenting the `{IDENTITY}` client certificate. Nothing else may leave.
destinations:
  - name: partner-api
    host: {host}
    ports: [{port}]
    egress_ips: [{egress_ip}]
    identity: {IDENTITY}
    description: The demo partner's claims API; its firewall allows only {egress_ip}.
"#
    );
    let url = quote(&partner.url());
    let pipeline = format!(
        r#"# Written by `switchyard demo`. The case study in small: claims from a partner API that wants a
# client certificate and allowlists one static IP land in bronze on a dedicated node; cleansing
# (with expectations) and aggregation run serverless over the Delta tables.
job: {PIPELINE_JOB}
description: Partner claims to bronze (dedicated), then silver and gold (serverless).
tasks:
  - name: ingest_claims
    class: ingest.api
    source:
      kind: https
      url: {url}
      identity: {IDENTITY}
      records: data
      pagination: {{ cursor_field: next }}
      schema:
        - {{ name: claim_id, type: string, nullable: false }}
        - {{ name: member_id, type: string }}
        - {{ name: provider, type: string }}
        - {{ name: amount, type: float64 }}
        - {{ name: service_date, type: date }}
        - {{ name: status, type: string }}
    sink: {{ table: bronze.claims, mode: overwrite }}
    retries: {{ max: 2, backoff: 1s }}
    timeout: 2m

  - name: silver_claims
    class: transform
    sql: |
      SELECT claim_id, member_id, trim(provider) AS provider, amount, service_date, lower(status) AS status
      FROM bronze.claims
    expectations:
      - {{ name: valid_member, check: "member_id IS NOT NULL", on_violation: quarantine }}
      - {{ name: positive_amount, check: "amount >= 0", on_violation: drop }}
      - {{ name: known_status, check: "status IN ('paid', 'pending', 'denied')", on_violation: warn }}
    sink: {{ table: silver.claims, mode: overwrite }}
    timeout: 2m

  - name: gold_provider_totals
    class: transform
    sql: |
      SELECT provider, count(*) AS claims, sum(amount) AS total_amount
      FROM silver.claims
      GROUP BY provider
    sink: {{ table: gold.provider_totals, mode: overwrite }}
    timeout: 2m
"#
    );
    let fetch = format!(
        r#"# Written by `switchyard demo`. A program calls the partner API itself, as a team's script might
# once its job is moved to serverless. It declares no destinations, so it is a transform and
# runs on a serverless worker, which has no egress: the worker's proxy refuses the connection,
# the task fails, and the control plane's egress audit records the denial.
job: {FETCH_JOB}
tasks:
  - name: {FETCH_TASK}
    run:
      command: [{exe}, "fetch", {url}]
    timeout: 1m
{direct}"#,
        exe = q(exe),
        // In network namespaces, the same program ignoring the proxy: only the network stops it.
        direct = if netns.is_some() {
            format!(
                "  - name: {DIRECT_TASK}\n    run:\n      command: [{}, \"fetch\", \"--direct\", {url}]\n    timeout: 1m\n",
                q(exe)
            )
        } else {
            String::new()
        },
    );
    std::fs::create_dir_all(&files.jobs).with_context(|| format!("creating {}", files.jobs.display()))?;
    for (path, text) in [
        (files.settings.clone(), settings),
        (files.egress.clone(), egress),
        (files.jobs.join(format!("{PIPELINE_JOB}.yaml")), pipeline),
        (files.jobs.join(format!("{FETCH_JOB}.yaml")), fetch),
    ] {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files)
}

/// A double-quoted string that TOML and YAML both read back as `s` (JSON's escapes are valid in
/// both), so a path with spaces or quotes cannot break the file.
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
