//! The agent that runs leased work: as a dedicated node (`switchyard node`, a pool and a static
//! egress IP) or as a serverless worker (`switchyard worker`, exits when idle). It registers,
//! long-polls for leases up to its free slots, heartbeats (renewing leases, learning which
//! attempts to stop), reports outcomes in batches, and on shutdown drains: no new leases, running
//! attempts get a grace period, then their leases are handed back for another node.

mod exec;
mod ingest;
mod no_egress;
mod output;
mod transform;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_scheduler::Error as SchedulerError;
use switchyard_scheduler::api::types::{
    CertificateExpiry, CommitRecord, HeartbeatRequest, LeaseRequest, LogTail, ReportRequest,
};
use switchyard_scheduler::client::Client;
use switchyard_scheduler::engine::{Lease, NodeInfo, Report};
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument;

use exec::{Stop, execute};
use output::Tail;

#[derive(Debug, Clone)]
pub(crate) struct AgentConfig {
    pub(crate) info: NodeInfo,
    /// Exit after this long with nothing to do (serverless workers).
    pub(crate) idle_timeout: Option<Duration>,
    /// On shutdown, how long running attempts may continue before their leases are handed back.
    pub(crate) drain_timeout: Duration,
    /// Long-poll duration of one lease request.
    pub(crate) poll: Duration,
    /// The node's gateway proxy URL: `run` tasks with destinations reach them only through it
    /// (`HTTPS_PROXY`/`HTTP_PROXY`). `None` for serverless workers, which have no egress.
    pub(crate) proxy: Option<ProxyAccess>,
    /// The node's dialer and lake, for ingestion tasks. `None` for serverless workers.
    pub(crate) ingest: Option<IngestSetup>,
    /// The lake, for transforms. Serverless workers only: they also give `run` tasks a proxy
    /// that refuses and audits every outbound request, as they have no egress.
    pub(crate) serverless_lake: Option<switchyard_lake::Lake>,
    /// What a transform's query may hold in memory (serverless workers).
    pub(crate) transform_budget: Option<switchyard_transform::Budget>,
    /// Where `run` tasks start.
    pub(crate) run_dir: RunDir,
}

/// Where `run` tasks start. A node or worker on another machine than the control plane has none
/// of its folders: it resolves the manifest's `run.workdir` against a directory of its own.
#[derive(Debug, Clone)]
pub(crate) enum RunDir {
    /// The folder the control plane planned (the manifest's, or `run.workdir` under it), for
    /// agents on the machine that read the manifests: `switchyard run` and the local launcher's
    /// workers.
    Planned,
    /// `run.workdir` under this directory (an absolute `run.workdir` as it is), else the
    /// directory itself.
    Own(std::path::PathBuf),
}

impl RunDir {
    pub(crate) fn resolve(
        &self,
        planned: &std::path::Path,
        declared: Option<&std::path::Path>,
    ) -> std::path::PathBuf {
        match self {
            RunDir::Planned => planned.to_path_buf(),
            RunDir::Own(base) => declared.map_or_else(|| base.clone(), |d| base.join(d)),
        }
    }
}

/// What a dedicated node gives its ingestion tasks.
#[derive(Debug, Clone)]
pub(crate) struct IngestSetup {
    pub(crate) dialer: switchyard_gateway::dial::Dialer,
    pub(crate) lake: switchyard_lake::Lake,
}

/// The node's gateway as tasks see it.
#[derive(Debug, Clone)]
pub(crate) struct ProxyAccess {
    pub(crate) url: String,
    pub(crate) refusals: switchyard_gateway::proxy::RefusalLog,
    pub(crate) identities: Arc<switchyard_gateway::identity::Identities>,
}

/// What the agent did, for logs and the embedded summary.
#[derive(Debug, Default, Clone)]
pub(crate) struct AgentSummary {
    pub(crate) node_id: String,
    pub(crate) leased: usize,
    pub(crate) handed_back: usize,
}

struct Running {
    stop: watch::Sender<Option<Stop>>,
    tail: Tail,
}

type RunningMap = Arc<Mutex<HashMap<i64, Running>>>;

/// Runs until `shutdown` is set (then drains) or, for workers, until idle.
pub(crate) async fn run(
    client: Client,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<AgentSummary> {
    let registration = register(&client, &config.info).await?;
    let node = registration.node_id.clone();
    let mut summary = AgentSummary { node_id: node.clone(), ..Default::default() };
    let running: RunningMap = Arc::default();
    let freed = Arc::new(Notify::new());
    let (reports_tx, reports_rx) = mpsc::unbounded_channel::<Report>();
    let reporter = tokio::spawn(report_loop(client.clone(), node.clone(), reports_rx));
    let (hb_stop_tx, hb_stop_rx) = watch::channel(false);
    let (commits_tx, commits_rx) = mpsc::unbounded_channel();
    let transform = config.serverless_lake.as_ref().map(|lake| transform::TransformAccess {
        lake: lake.clone(),
        budget: config.transform_budget.clone(),
        commits: commits_tx.clone(),
        client: client.clone(),
    });
    let no_egress = match &config.serverless_lake {
        Some(_) => Some(
            no_egress::NoEgress::start(client.clone())
                .await
                .context("starting the serverless worker's refusal proxy on 127.0.0.1")?,
        ),
        None => None,
    };
    let ingest = config.ingest.as_ref().map(|s| ingest::IngestAccess {
        dialer: s.dialer.clone(),
        lake: s.lake.clone(),
        commits: commits_tx,
    });
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        node.clone(),
        running.clone(),
        Duration::from_millis(registration.heartbeat_ms),
        config.proxy.as_ref().map(|p| p.identities.clone()),
        commits_rx,
        hb_stop_rx,
    ));
    let slots = config.info.slots.max(1) as usize;
    // How attempts' log lines name where they run: the static egress IP, or `serverless`.
    let egress_label = config.info.egress_ip.map_or_else(|| "serverless".to_owned(), |ip| ip.to_string());
    let mut last_work = Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let busy = running.lock().map_or(0, |r| r.len());
        if busy > 0 {
            last_work = Instant::now();
        }
        if let Some(idle) = config.idle_timeout {
            if busy == 0 && last_work.elapsed() >= idle {
                tracing::info!(node = %node, idle_s = idle.as_secs_f64(), "Idle; exiting.");
                break;
            }
        }
        let free = slots.saturating_sub(busy);
        if free == 0 {
            tokio::select! {
                _ = freed.notified() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        let wait_ms = config.poll.as_millis() as u64;
        // A poll in flight is never abandoned: leases granted to a dropped request would sit
        // unused until their TTL ran out. Shutdown takes effect when the poll returns.
        match client.lease(&node, &LeaseRequest { max: free, wait_ms }).await {
            Ok(leases) => {
                if !leases.is_empty() {
                    last_work = Instant::now();
                }
                summary.leased += leases.len();
                for lease in leases {
                    let access = Access {
                        node: node.clone(),
                        egress_ip: egress_label.clone(),
                        proxy: config.proxy.clone(),
                        ingest: ingest.clone(),
                        transform: transform.clone(),
                        no_egress: no_egress.clone(),
                        run_dir: config.run_dir.clone(),
                    };
                    start(lease, &running, &reports_tx, &freed, *shutdown.borrow(), access);
                }
            }
            Err(e) if e.retryable() => {
                tracing::warn!(node = %node, error = %e, "Control plane unreachable; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("leasing work"),
        }
    }
    summary.handed_back = drain(&running, &freed, config.drain_timeout).await;
    drop(ingest);
    drop(reports_tx);
    let _ = reporter.await;
    let _ = hb_stop_tx.send(true);
    let _ = heartbeat.await;
    if let Err(e) = client.deregister(&node).await {
        tracing::warn!(node = %node, error = %e, "Could not deregister.");
    }
    Ok(summary)
}

async fn register(
    client: &Client,
    info: &NodeInfo,
) -> anyhow::Result<switchyard_scheduler::engine::Registration> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.register(info).await {
            Ok(r) => return Ok(r),
            Err(e) if e.retryable() && Instant::now() < deadline => {
                tracing::info!(error = %e, "Waiting for the control plane.");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(SchedulerError::Api { message, hint, code, .. }) if code == "node_refused" => {
                anyhow::bail!("the control plane refused this node: {message}\n  hint: {hint}")
            }
            Err(e) => return Err(e).context("registering with the control plane"),
        }
    }
}

/// What a leased attempt may use of the node.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    /// The node's id and egress IP (`serverless` for workers), for the attempt's log span.
    pub(crate) node: String,
    pub(crate) egress_ip: String,
    pub(crate) proxy: Option<ProxyAccess>,
    pub(crate) ingest: Option<ingest::IngestAccess>,
    pub(crate) transform: Option<transform::TransformAccess>,
    pub(crate) no_egress: Option<no_egress::NoEgress>,
    pub(crate) run_dir: RunDir,
}

fn start(
    lease: Lease,
    running: &RunningMap,
    reports: &mpsc::UnboundedSender<Report>,
    freed: &Arc<Notify>,
    draining: bool,
    access: Access,
) {
    let (stop_tx, stop_rx) = watch::channel(draining.then_some(Stop::HandBack));
    let tail = Tail::default();
    if let Ok(mut r) = running.lock() {
        r.insert(lease.attempt, Running { stop: stop_tx, tail: tail.clone() });
    }
    let running = running.clone();
    let reports = reports.clone();
    let freed = freed.clone();
    let span = attempt_span(&lease, &access);
    tokio::spawn(
        async move {
            tracing::info!(class = %lease.spec.class, number = lease.number, "Starting attempt.");
            let report = execute(&lease, tail, stop_rx, &access).await;
            match &report {
                Some(r) => tracing::info!(outcome = ?r.outcome, class = ?r.error_class, "Attempt finished."),
                None => tracing::info!("Attempt stopped; nothing to report."),
            }
            if let Some(report) = report {
                let _ = reports.send(report);
            }
            if let Ok(mut r) = running.lock() {
                r.remove(&lease.attempt);
            }
            freed.notify_waiters();
        }
        .instrument(span),
    );
}

/// The span every log line of an attempt is written in: with `--log-format json`, each line
/// carries `span.{job, run, task, attempt, node, egress_ip}`, so one attempt's lines can be found
/// across nodes and joined with `switchyard runs` and the egress audit.
pub(crate) fn attempt_span(lease: &Lease, access: &Access) -> tracing::Span {
    tracing::info_span!(
        "attempt",
        job = %lease.job,
        run = lease.run,
        task = %lease.spec.name,
        attempt = lease.attempt,
        node = %access.node,
        egress_ip = %access.egress_ip,
    )
}

/// Waits for running attempts up to `grace`, then hands the rest back. Returns how many were.
async fn drain(running: &RunningMap, freed: &Arc<Notify>, grace: Duration) -> usize {
    let deadline = Instant::now() + grace;
    let count = || running.lock().map_or(0, |r| r.len());
    while count() > 0 && Instant::now() < deadline {
        tracing::info!(running = count(), "Draining: waiting for running attempts.");
        let _ = tokio::time::timeout(Duration::from_millis(500), freed.notified()).await;
    }
    let left = count();
    if left > 0 {
        if let Ok(r) = running.lock() {
            for attempt in r.values() {
                let _ = attempt.stop.send(Some(Stop::HandBack));
            }
        }
        while count() > 0 {
            let _ = tokio::time::timeout(Duration::from_millis(500), freed.notified()).await;
        }
    }
    left
}

/// Sends reports in batches; retries while the control plane is unreachable (e.g. restarting).
async fn report_loop(client: Client, node: String, mut rx: mpsc::UnboundedReceiver<Report>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let request = ReportRequest { reports: batch, lease: None };
        let mut delay = Duration::from_millis(100);
        loop {
            match client.report(&node, &request).await {
                Ok(response) => {
                    for (report, result) in request.reports.iter().zip(&response.results) {
                        tracing::info!(attempt = report.attempt, outcome = ?report.outcome, result = ?result, "Reported.");
                    }
                    break;
                }
                Err(e) if e.retryable() => {
                    tracing::warn!(error = %e, reports = request.reports.len(), "Could not report; retrying.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(error = %e, "Reports rejected.");
                    break;
                }
            }
        }
    }
}

async fn heartbeat_loop(
    client: Client,
    node: String,
    running: RunningMap,
    every: Duration,
    identities: Option<Arc<switchyard_gateway::identity::Identities>>,
    mut commits: mpsc::UnboundedReceiver<CommitRecord>,
    mut stop: watch::Receiver<bool>,
) {
    // Commits not yet delivered (kept across a failed heartbeat).
    let mut pending: Vec<CommitRecord> = Vec::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            // A commit goes out promptly (transforms wait for it), a little batched.
            Some(c) = commits.recv() => {
                pending.push(c);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ = stop.changed() => stopping = true,
        }
        while let Ok(c) = commits.try_recv() {
            pending.push(c);
        }
        if stopping && pending.is_empty() {
            return;
        }
        let request = {
            let Ok(r) = running.lock() else { return };
            HeartbeatRequest {
                running: r.keys().copied().collect(),
                tails: r
                    .iter()
                    .map(|(attempt, a)| LogTail { attempt: *attempt, text: a.tail.text() })
                    .collect(),
                certificates: identities
                    .iter()
                    .flat_map(|ids| ids.all())
                    .map(|i| CertificateExpiry { identity: i.name.clone(), not_after: i.not_after })
                    .collect(),
                commits: pending.clone(),
            }
        };
        match client.heartbeat(&node, &request).await {
            Ok(reply) => {
                pending.clear();
                if let Ok(r) = running.lock() {
                    for stop in reply.stop {
                        if let Some(attempt) = r.get(&stop.attempt) {
                            let _ = attempt.stop.send(Some(Stop::Revoked(stop.reason)));
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(node = %node, error = %e, "Heartbeat failed."),
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use switchyard_scheduler::engine::Outcome;
    use switchyard_scheduler::plan::Compute;
    use switchyard_scheduler::spec::TaskSpec;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::cli::logging::{LogFormat, subscriber};

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// A real attempt (a program run by `start`, as a node runs it) logged with `--log-format
    /// json`: every line it writes names the job, run, task, attempt, node and egress IP.
    #[test]
    fn json_log_lines_of_an_attempt_carry_its_identity() {
        let captured = Captured::default();
        let _guard = tracing::subscriber::set_default(subscriber(
            LogFormat::Json,
            EnvFilter::new("info"),
            captured.clone(),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let lease = Lease {
                attempt: 42,
                task_run: 7,
                run: 3,
                job: "claims_daily".into(),
                number: 1,
                spec: TaskSpec::command("export", Compute::Dedicated, &["egress-a"], &["true"]),
                lease_expires_at: 0,
                options: Default::default(),
            };
            let running = RunningMap::default();
            let (reports, mut received) = mpsc::unbounded_channel();
            let access = Access {
                node: "node-7f3a".into(),
                egress_ip: "203.0.113.10".into(),
                proxy: None,
                ingest: None,
                transform: None,
                no_egress: None,
                run_dir: RunDir::Planned,
            };
            start(lease, &running, &reports, &Arc::new(Notify::new()), false, access);
            let report = received.recv().await.unwrap();
            assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
        assert!(messages.contains(&"Starting attempt.") && messages.contains(&"Attempt finished."), "{text}");
        for line in &lines {
            let span = &line["span"];
            assert_eq!(span["name"], "attempt", "{line}");
            assert_eq!(span["job"], "claims_daily", "{line}");
            assert_eq!(span["run"], 3, "{line}");
            assert_eq!(span["task"], "export", "{line}");
            assert_eq!(span["attempt"], 42, "{line}");
            assert_eq!(span["node"], "node-7f3a", "{line}");
            assert_eq!(span["egress_ip"], "203.0.113.10", "{line}");
        }
    }
}
