//! The Kubernetes launcher: one `batch/v1` Job per burst of serverless workers.
//!
//! The Job is plain data ([`JobTemplate::job`]), built and tested in every build; the API client
//! that creates and watches Jobs ([`KubernetesLauncher`]) needs the `kube` feature.
//!
//! A burst of `n` workers is one Job with `parallelism = completions = n`: each pod runs
//! `switchyard worker`, which exits 0 after `idle_timeout` without work, so the Job completes when
//! the burst has drained and Kubernetes deletes it `ttlSecondsAfterFinished` later. `backoffLimit`
//! is 0: a worker that fails is not restarted (its leases are reclaimed by the control plane, and
//! the autoscaler starts new workers if the queue still needs them).
//!
//! [`live`](super::Launcher::live) counts, over this namespace's worker Jobs, the pods that have
//! not finished: `completions - succeeded - failed` of every Job without a `Complete` or `Failed`
//! condition ([`unfinished_workers`]). That includes pods still pending (scheduling, image pull),
//! which the control plane's count of registered workers would miss for tens of seconds — the
//! autoscaler would start more in the meantime — and it survives a control-plane restart, since
//! the Jobs are read back from the API.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use switchyard_config::settings::Settings;

use crate::Error;

/// Labels every worker Job and pod carries; the NetworkPolicy in `deploy/kubernetes/` selects the
/// pods by `app.kubernetes.io/component`.
pub const COMPONENT: &str = "serverless-worker";
/// Label with the Job (burst) a worker pod belongs to.
pub const BURST_LABEL: &str = "switchyard.dev/burst";
/// Where the API token Secret is mounted in a worker pod.
pub const TOKEN_DIR: &str = "/var/run/secrets/switchyard";
/// Where the CA Secret of an https control plane is mounted.
pub const CA_DIR: &str = "/var/run/secrets/switchyard-ca";
/// UID/GID the image's `switchyard` user has (see `deploy/Dockerfile`).
pub const RUN_AS: u32 = 10001;

/// Everything a worker Job needs, from the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTemplate {
    pub namespace: String,
    pub image: String,
    pub control_plane_url: String,
    pub token_secret: String,
    pub ca_secret: Option<String>,
    pub lake_secret: Option<String>,
    pub service_account: String,
    pub lake_root: String,
    /// The lake's other settings for the pods' environment: `_env` storage-option references
    /// (their values come from `lake_secret`) and `allow_unsafe_rename`. Never a secret value.
    pub lake_env: Vec<(String, String)>,
    /// Passed to `switchyard worker --idle-timeout`.
    pub idle_timeout: String,
    /// Tasks one worker runs at once (`--slots`; the autoscaler's slots per worker).
    pub slots: u32,
    /// CPU request and limit of one worker: the vCPUs the cost report prices.
    pub vcpus: f64,
    pub memory: String,
    pub ttl_seconds_after_finished: u64,
}

impl JobTemplate {
    /// The template for `settings` (`[serverless]` and `[serverless.kubernetes]`), refusing what
    /// the Jobs could not run with (the same checks `switchyard validate` reports with locations).
    pub fn from_settings(settings: &Settings, slots: u32) -> Result<Self, Error> {
        let s = &settings.serverless;
        let k = &s.kubernetes;
        let bad =
            |what: &str, cause: &str| Error::Kubernetes { what: what.to_owned(), cause: cause.to_owned() };
        if k.image.trim().is_empty() {
            return Err(bad("serverless.kubernetes.image", "not set: the worker Jobs need an image"));
        }
        let Some(url) = k.control_plane_url.clone() else {
            return Err(bad(
                "serverless.kubernetes.control_plane_url",
                "not set: workers need the URL of the control plane's Service",
            ));
        };
        if switchyard_config::settings::lake_scheme(&settings.lake.root) == "file" {
            return Err(bad(
                "lake.root",
                "a local path is not shared with worker pods; use an object-store URL (s3://, s3a://, abfss://, az://, gs://)",
            ));
        }
        let mut lake_env = Vec::new();
        for (key, value) in settings.lake.storage_options.as_written() {
            if !key.ends_with("_env") {
                return Err(bad(
                    &format!("lake.storage_options.{key}"),
                    "worker pods get storage options only as NAME_env references to variables of the lake_secret Secret (a value here would sit in the Job spec, a _file path does not exist in the pod): put the value in that Secret and write NAME_env = \"VARIABLE\"",
                ));
            }
            lake_env.push((
                format!("SWITCHYARD__LAKE__STORAGE_OPTIONS__{}", key.to_ascii_uppercase()),
                value.to_owned(),
            ));
        }
        if settings.lake.allow_unsafe_rename {
            lake_env.push(("SWITCHYARD__LAKE__ALLOW_UNSAFE_RENAME".to_owned(), "true".to_owned()));
        }
        if !(s.vcpus_per_worker > 0.0 && s.vcpus_per_worker.is_finite()) {
            return Err(bad("serverless.vcpus_per_worker", "must be a positive number of vCPUs"));
        }
        Ok(JobTemplate {
            namespace: k.namespace.clone(),
            image: k.image.clone(),
            control_plane_url: url,
            token_secret: k.token_secret.clone(),
            ca_secret: k.ca_secret.clone(),
            lake_secret: k.lake_secret.clone(),
            service_account: k.service_account.clone(),
            lake_root: settings.lake.root.clone(),
            lake_env,
            idle_timeout: s.idle_timeout.to_string(),
            slots,
            vcpus: s.vcpus_per_worker,
            memory: k.memory.clone(),
            ttl_seconds_after_finished: k.job_ttl.as_std().as_secs_f64().ceil() as u64,
        })
    }

    /// Labels of every worker Job and pod.
    pub fn labels() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("app.kubernetes.io/name", "switchyard"),
            ("app.kubernetes.io/component", COMPONENT),
            ("app.kubernetes.io/managed-by", "switchyard"),
        ])
    }

    /// The label selector that finds the worker Jobs (of every control-plane replica in the
    /// namespace, so replicas count each other's workers).
    pub fn selector() -> String {
        Self::labels().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    /// The `switchyard worker` arguments of a pod.
    pub fn worker_args(&self) -> Vec<String> {
        let mut args = vec![
            "worker".to_owned(),
            "--control-plane".to_owned(),
            self.control_plane_url.clone(),
            "--token-file".to_owned(),
            format!("{TOKEN_DIR}/token"),
            "--idle-timeout".to_owned(),
            self.idle_timeout.clone(),
            "--slots".to_owned(),
            self.slots.to_string(),
        ];
        if self.ca_secret.is_some() {
            args.extend(["--ca-file".to_owned(), format!("{CA_DIR}/ca.crt")]);
        }
        args
    }

    /// The Job for one burst of `n` workers, named `name`, started at `launched_at_ms`.
    pub fn job(&self, name: &str, n: usize, launched_at_ms: i64) -> Value {
        let mut labels: serde_json::Map<String, Value> =
            Self::labels().into_iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
        labels.insert(BURST_LABEL.to_owned(), Value::from(name));
        let cpu = format!("{}m", (self.vcpus * 1000.0).round() as u64);
        let resources = json!({ "cpu": cpu, "memory": self.memory });
        let mut env = vec![
            json!({ "name": "SWITCHYARD__LAKE__ROOT", "value": self.lake_root }),
            json!({ "name": "SWITCHYARD_LAUNCHED_AT", "value": launched_at_ms.to_string() }),
            json!({ "name": "HOME", "value": "/tmp" }),
        ];
        env.extend(self.lake_env.iter().map(|(k, v)| json!({ "name": k, "value": v })));
        env.push(json!({ "name": "RUST_LOG", "value": "info" }));
        let mut mounts = vec![
            json!({ "name": "token", "mountPath": TOKEN_DIR, "readOnly": true }),
            json!({ "name": "tmp", "mountPath": "/tmp" }),
        ];
        let mut volumes = vec![
            json!({ "name": "token", "secret": {
                "secretName": self.token_secret,
                "items": [{ "key": "token", "path": "token" }],
                "defaultMode": 0o440,
            }}),
            json!({ "name": "tmp", "emptyDir": {} }),
        ];
        if let Some(ca) = &self.ca_secret {
            mounts.push(json!({ "name": "ca", "mountPath": CA_DIR, "readOnly": true }));
            volumes.push(json!({ "name": "ca", "secret": {
                "secretName": ca,
                "items": [{ "key": "ca.crt", "path": "ca.crt" }],
            }}));
        }
        let env_from: Vec<Value> =
            self.lake_secret.iter().map(|s| json!({ "secretRef": { "name": s } })).collect();
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": name, "namespace": self.namespace, "labels": labels },
            "spec": {
                "parallelism": n,
                "completions": n,
                "completionMode": "NonIndexed",
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": self.service_account,
                        // Workers never call the Kubernetes API.
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": 45,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": RUN_AS,
                            "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS,
                            "seccompProfile": { "type": "RuntimeDefault" },
                        },
                        "containers": [{
                            "name": "worker",
                            "image": self.image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["switchyard"],
                            "args": self.worker_args(),
                            "workingDir": "/tmp",
                            "env": env,
                            "envFrom": env_from,
                            "resources": { "requests": resources, "limits": resources },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": { "drop": ["ALL"] },
                            },
                            "volumeMounts": mounts,
                        }],
                        "volumes": volumes,
                    },
                },
            },
        })
    }
}

/// A Job name for a burst: `switchyard-worker-<launch time in ms, base 36>-<sequence>`, a valid
/// DNS label (lowercase, at most 63 characters), unique per control plane and distinct across
/// replicas unless they launch in the same millisecond with the same sequence number.
pub fn job_name(launched_at_ms: i64, seq: u64) -> String {
    fn base36(mut n: u64) -> String {
        let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut out = Vec::new();
        loop {
            out.push(digits[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        out.reverse();
        String::from_utf8(out).unwrap_or_default()
    }
    format!("switchyard-worker-{}-{}", base36(launched_at_ms.max(0) as u64), base36(seq))
}

/// Worker pods of a Job (as the API returns it) that have not finished: 0 once the Job has a
/// `Complete` or `Failed` condition or is being deleted, else `completions - succeeded - failed`
/// (pods pending, starting or running, and those the Job controller has not created yet).
pub fn unfinished_workers(job: &Value) -> usize {
    if job.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return 0;
    }
    let finished =
        job.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
            matches!(c.get("type").and_then(Value::as_str), Some("Complete" | "Failed"))
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
    if finished {
        return 0;
    }
    let num = |p: &str| job.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let completions = job.pointer("/spec/completions").and_then(Value::as_u64).unwrap_or(1);
    completions.saturating_sub(num("/status/succeeded") + num("/status/failed")) as usize
}

/// Whether this build has the launcher's API client (the `kube` feature). Without it,
/// [`KubernetesLauncher::connect`] fails saying how to build one that has it.
pub const CLIENT_BUILT: bool = cfg!(feature = "kube");

#[cfg(feature = "kube")]
pub use client::KubernetesLauncher;
#[cfg(not(feature = "kube"))]
pub use no_client::KubernetesLauncher;

/// Stands in for the launcher in builds without the `kube` feature, so that callers compile the
/// same code either way.
#[cfg(not(feature = "kube"))]
mod no_client {
    use super::JobTemplate;
    use crate::Error;
    use crate::launcher::Launcher;

    /// Never constructed: [`connect`](Self::connect) always fails in this build.
    #[derive(Debug)]
    pub struct KubernetesLauncher(());

    impl KubernetesLauncher {
        pub async fn connect(_: JobTemplate) -> Result<Self, Error> {
            Err(Error::Kubernetes {
                what: "this switchyard was built without the Kubernetes launcher".into(),
                cause: "build with `cargo build --release --features kube` (the deploy/Dockerfile image has it), or set serverless.launcher = \"local\"".into(),
            })
        }
    }

    impl Launcher for KubernetesLauncher {
        async fn launch(&self, _: usize) -> Result<usize, Error> {
            Ok(0)
        }

        fn live(&self) -> usize {
            0
        }

        fn name(&self) -> &'static str {
            "kubernetes"
        }
    }
}

#[cfg(feature = "kube")]
mod client {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use k8s_openapi::api::batch::v1::Job;
    use kube::Api;
    use kube::api::{ListParams, PostParams};

    use super::{JobTemplate, job_name, unfinished_workers};
    use crate::Error;
    use crate::launcher::Launcher;
    use crate::store::now_ms;

    /// How often the Jobs are listed to learn which workers finished.
    const REFRESH: Duration = Duration::from_secs(2);

    /// Starts serverless workers as Kubernetes Jobs, one per burst (see the module docs).
    #[derive(Debug)]
    pub struct KubernetesLauncher {
        template: JobTemplate,
        jobs: Api<Job>,
        state: Arc<Mutex<State>>,
        seq: AtomicU64,
        refresher: tokio::task::JoinHandle<()>,
    }

    #[derive(Debug, Default)]
    struct State {
        /// Unfinished workers per Job, and when this launcher created it (None: read from the API).
        jobs: BTreeMap<String, (usize, Option<Instant>)>,
    }

    fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |e| Error::Kubernetes { what, cause: e.to_string() }
    }

    impl KubernetesLauncher {
        /// Connects with the in-cluster service account (or `KUBECONFIG` outside a cluster) and
        /// reads the worker Jobs already there, so a restarted control plane counts them; fails
        /// when the API refuses (e.g. the Role that allows listing and creating Jobs is missing).
        pub async fn connect(template: JobTemplate) -> Result<Self, Error> {
            // kube's rustls client uses the process-wide crypto provider (ring, as everywhere here).
            switchyard_config::tls::install_provider();
            let client = kube::Client::try_default()
                .await
                .map_err(kube_error("cannot configure the Kubernetes client"))?;
            let jobs: Api<Job> = Api::namespaced(client, &template.namespace);
            let state = Arc::new(Mutex::new(State::default()));
            refresh(&jobs, &state).await?;
            let refresher = {
                let (jobs, state) = (jobs.clone(), state.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(REFRESH).await;
                        if let Err(e) = refresh(&jobs, &state).await {
                            tracing::warn!(error = %e, "Could not list the serverless worker Jobs.");
                        }
                    }
                })
            };
            Ok(KubernetesLauncher { template, jobs, state, seq: AtomicU64::new(0), refresher })
        }
    }

    impl Drop for KubernetesLauncher {
        fn drop(&mut self) {
            // Jobs are left to finish: their workers drain and exit when idle.
            self.refresher.abort();
        }
    }

    /// Replaces the counts with what the API says; a Job created while the list was in flight
    /// keeps the count its launch recorded.
    async fn refresh(jobs: &Api<Job>, state: &Mutex<State>) -> Result<(), Error> {
        let asked = Instant::now();
        let list = jobs
            .list(&ListParams::default().labels(&JobTemplate::selector()))
            .await
            .map_err(kube_error("cannot list the worker Jobs"))?;
        let mut seen = BTreeMap::new();
        for job in list.items {
            let Some(name) = job.metadata.name.clone() else { continue };
            let value = serde_json::to_value(&job).unwrap_or_default();
            seen.insert(name, unfinished_workers(&value));
        }
        if let Ok(mut state) = state.lock() {
            let mut next: BTreeMap<String, (usize, Option<Instant>)> =
                seen.into_iter().map(|(name, n)| (name, (n, None))).collect();
            for (name, (n, created)) in &state.jobs {
                if let Some(at) = created.filter(|at| *at >= asked) {
                    next.entry(name.clone()).or_insert((*n, Some(at)));
                }
            }
            state.jobs = next;
        }
        Ok(())
    }

    impl Launcher for KubernetesLauncher {
        async fn launch(&self, n: usize) -> Result<usize, Error> {
            if n == 0 {
                return Ok(0);
            }
            let launched_at = now_ms();
            let name = job_name(launched_at, self.seq.fetch_add(1, Ordering::Relaxed));
            let job: Job = serde_json::from_value(self.template.job(&name, n, launched_at)).map_err(|e| {
                Error::Kubernetes { what: "the worker Job spec".into(), cause: e.to_string() }
            })?;
            self.jobs
                .create(&PostParams::default(), &job)
                .await
                .map_err(kube_error(format!("cannot create Job {name} in {}", self.template.namespace)))?;
            if let Ok(mut state) = self.state.lock() {
                state.jobs.insert(name, (n, Some(Instant::now())));
            }
            Ok(n)
        }

        fn live(&self) -> usize {
            self.state.lock().map(|s| s.jobs.values().map(|(n, _)| n).sum()).unwrap_or(0)
        }

        fn name(&self) -> &'static str {
            "kubernetes"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> JobTemplate {
        let mut settings = Settings::default();
        settings.lake.root = "s3://lake/prod".into();
        settings.serverless.vcpus_per_worker = 2.0;
        settings.serverless.kubernetes.image = "registry.example/switchyard:0.1.0".into();
        settings.serverless.kubernetes.control_plane_url =
            Some("http://switchyard-control-plane.switchyard.svc:7070".into());
        JobTemplate::from_settings(&settings, 2).unwrap()
    }

    #[test]
    fn kubernetes_job_per_burst_runs_n_workers_once_and_is_cleaned_up() {
        let job = template().job("switchyard-worker-abc-0", 3, 1_700_000_000_000);
        assert_eq!(job["apiVersion"], "batch/v1");
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["name"], "switchyard-worker-abc-0");
        assert_eq!(job["metadata"]["namespace"], "switchyard");
        let spec = &job["spec"];
        assert_eq!(spec["parallelism"], 3);
        assert_eq!(spec["completions"], 3);
        assert_eq!(spec["backoffLimit"], 0);
        assert_eq!(spec["ttlSecondsAfterFinished"], 600);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["serviceAccountName"], "switchyard-worker");
        // The pods carry the labels the NetworkPolicy and the launcher's list select on.
        for (k, v) in JobTemplate::labels() {
            assert_eq!(job["metadata"]["labels"][k], v);
            assert_eq!(spec["template"]["metadata"]["labels"][k], v);
        }
        assert_eq!(spec["template"]["metadata"]["labels"][BURST_LABEL], "switchyard-worker-abc-0");
    }

    #[test]
    fn kubernetes_worker_container_reaches_the_control_plane_with_a_mounted_token() {
        let job = template().job("switchyard-worker-abc-0", 1, 1_700_000_000_000);
        let pod = &job["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example/switchyard:0.1.0");
        assert_eq!(c["command"], json!(["switchyard"]));
        assert_eq!(
            c["args"],
            json!([
                "worker",
                "--control-plane",
                "http://switchyard-control-plane.switchyard.svc:7070",
                "--token-file",
                "/var/run/secrets/switchyard/token",
                "--idle-timeout",
                "30s",
                "--slots",
                "2"
            ])
        );
        let env: BTreeMap<&str, &str> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        assert_eq!(env["SWITCHYARD__LAKE__ROOT"], "s3://lake/prod");
        assert_eq!(env["SWITCHYARD_LAUNCHED_AT"], "1700000000000");
        // The token comes from the Secret as a file, never as a value in the spec.
        assert!(!job.to_string().to_lowercase().contains("\"token\":\"sy"), "no inline token");
        let token = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "token").unwrap();
        assert_eq!(token["secret"]["secretName"], "switchyard-worker-token");
        assert_eq!(token["secret"]["items"][0]["key"], "token");
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "token" && m["mountPath"] == TOKEN_DIR && m["readOnly"] == true)
        );
        // CPU matches what the cost report bills (vcpus_per_worker), requests = limits.
        assert_eq!(c["resources"]["requests"], json!({ "cpu": "2000m", "memory": "2Gi" }));
        assert_eq!(c["resources"]["limits"], c["resources"]["requests"]);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["envFrom"], json!([]));
    }

    #[test]
    fn kubernetes_optional_ca_and_lake_credentials() {
        let mut t = template();
        t.ca_secret = Some("switchyard-ca".into());
        t.lake_secret = Some("lake-credentials".into());
        t.vcpus = 0.5;
        let job = t.job("j", 1, 0);
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[args.len() - 2..], ["--ca-file", "/var/run/secrets/switchyard-ca/ca.crt"]);
        assert_eq!(c["envFrom"], json!([{ "secretRef": { "name": "lake-credentials" } }]));
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    }

    #[test]
    fn kubernetes_pods_get_storage_option_references_never_values() {
        use std::collections::BTreeMap;
        let mut settings = Settings::default();
        settings.lake.root = "s3://lake/prod".into();
        settings.serverless.kubernetes.image = "registry.example/switchyard:0.1.0".into();
        settings.serverless.kubernetes.control_plane_url = Some("http://cp:7070".into());
        settings.lake.storage_options = switchyard_config::settings::StorageOptions::new(BTreeMap::from([(
            "aws_secret_access_key_env".to_owned(),
            "LAKE_SECRET_KEY".to_owned(),
        )]));
        let job = JobTemplate::from_settings(&settings, 1).unwrap().job("w-0", 1, 0);
        let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
        let found = env.as_array().unwrap().iter().any(|e| {
            e["name"] == "SWITCHYARD__LAKE__STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY_ENV"
                && e["value"] == "LAKE_SECRET_KEY"
        });
        assert!(found, "{env}");
        settings.lake.storage_options = switchyard_config::settings::StorageOptions::new(BTreeMap::from([(
            "aws_secret_access_key".to_owned(),
            "hunter2".to_owned(),
        )]));
        let err = JobTemplate::from_settings(&settings, 1).unwrap_err().to_string();
        assert!(
            err.contains("lake.storage_options.aws_secret_access_key") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn kubernetes_template_refuses_incomplete_settings() {
        let mut settings = Settings::default();
        settings.serverless.kubernetes.image = "i".into();
        settings.serverless.kubernetes.control_plane_url = Some("http://cp:7070".into());
        let err = JobTemplate::from_settings(&settings, 2).unwrap_err().to_string();
        assert!(err.contains("lake.root"), "{err}");
        settings.lake.root = "s3://b/p".into();
        settings.serverless.kubernetes.control_plane_url = None;
        let err = JobTemplate::from_settings(&settings, 2).unwrap_err().to_string();
        assert!(err.contains("control_plane_url"), "{err}");
    }

    #[test]
    fn kubernetes_job_names_are_dns_labels_and_distinct() {
        let a = job_name(1_700_000_000_000, 0);
        let b = job_name(1_700_000_000_000, 1);
        assert_ne!(a, b);
        for name in [&a, &b, &job_name(i64::MAX, u64::MAX)] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                "{name}"
            );
        }
        assert_eq!(
            JobTemplate::selector(),
            "app.kubernetes.io/component=serverless-worker,app.kubernetes.io/managed-by=switchyard,app.kubernetes.io/name=switchyard"
        );
    }

    #[test]
    fn kubernetes_live_counts_workers_not_yet_finished() {
        // Just created: no status yet, every worker counts (pending pods included).
        assert_eq!(unfinished_workers(&json!({ "spec": { "completions": 3 } })), 3);
        assert_eq!(
            unfinished_workers(
                &json!({ "spec": { "completions": 3 }, "status": { "active": 2, "succeeded": 1 } })
            ),
            2
        );
        let done = json!({ "spec": { "completions": 3 }, "status": { "succeeded": 3,
            "conditions": [{ "type": "Complete", "status": "True" }] } });
        assert_eq!(unfinished_workers(&done), 0);
        // backoffLimit 0: one failure fails the Job, and its other pods are stopped.
        let failed = json!({ "spec": { "completions": 3 }, "status": { "active": 2, "failed": 1,
            "conditions": [{ "type": "Failed", "status": "True" }] } });
        assert_eq!(unfinished_workers(&failed), 0);
        let deleting = json!({ "metadata": { "deletionTimestamp": "2026-01-01T00:00:00Z" }, "spec": { "completions": 2 } });
        assert_eq!(unfinished_workers(&deleting), 0);
    }

    /// The Job is also a valid `k8s-openapi` Job (every field name and type known to the client).
    #[cfg(feature = "kube")]
    #[test]
    fn kubernetes_job_spec_deserializes_as_a_k8s_openapi_job() {
        use k8s_openapi::api::batch::v1::Job;
        let mut t = template();
        t.ca_secret = Some("ca".into());
        t.lake_secret = Some("lake".into());
        let value = t.job("switchyard-worker-abc-0", 2, 1);
        let job: Job = serde_json::from_value(value.clone()).unwrap();
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.parallelism, Some(2));
        assert_eq!(spec.ttl_seconds_after_finished, Some(600));
        // Round trip: nothing in the value was dropped as unknown.
        assert_eq!(serde_json::to_value(&job).unwrap(), value);
    }
}
