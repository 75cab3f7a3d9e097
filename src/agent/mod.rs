//! The agent that runs leased work: as a dedicated node (`switchyard node`, a pool and a static
//! egress IP) or as a serverless worker (`switchyard worker`, exits when idle). It registers,
//! long-polls for leases up to its free slots, heartbeats (renewing leases, learning which
//! attempts to stop), reports outcomes in batches, and on shutdown drains: no new leases, running
//! attempts get a grace period, then their leases are handed back for another node.

mod exec;
mod ingest;
mod no_egress;
mod no_route;
mod output;
mod stop;
mod transform;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_scheduler::Error as SchedulerError;
use switchyard_scheduler::api::types::{
    CertificateExpiry, CommitRecord, HeartbeatRequest, LeaseRequest, LogTail, ReportRequest,
};
use switchyard_scheduler::api::types::{Lease, NodeInfo, Report};
use switchyard_scheduler::client::Client;
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument;

use exec::execute;
use output::Tail;
use stop::Stop;

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
    /// The lake, for SQL transforms: serverless workers run them, and so do nodes for transforms
    /// a manifest pins to dedicated compute (`compute: dedicated`).
    pub(crate) transform_lake: Option<switchyard_lake::Lake>,
    /// What a transform's query may hold in memory.
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

#[derive(Debug)]
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
    let (hb_stop_tx, hb_stop_rx) = watch::channel(false);
    let (commits_tx, commits_rx) = mpsc::unbounded_channel();
    // How attempts' log lines and the egress audit name where they run: the static egress IP,
    // or `serverless`.
    let egress_label = config.info.egress_ip.map_or_else(|| "serverless".to_owned(), |ip| ip.to_string());
    let transform = config.transform_lake.as_ref().map(|lake| transform::TransformAccess {
        lake: lake.clone(),
        egress_ip: egress_label.clone(),
        budget: config.transform_budget.clone(),
        commits: commits_tx.clone(),
        client: client.clone(),
    });
    // Tasks without destinations get a proxy that refuses and audits every outbound request: on
    // workers, which have no egress, and on nodes, where such a task (`compute: dedicated`) has
    // none either — the node's egress is for declared destinations only.
    let no_egress = Some(
        no_egress::NoEgress::start(client.clone(), egress_label.clone())
            .await
            .context("starting the refusal proxy for tasks without destinations on 127.0.0.1")?,
    );
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
    let launcher = Launcher {
        running: running.clone(),
        slots: Arc::new(Slots { total: config.info.slots.max(1) as usize, promised: Mutex::new(0) }),
        reports: reports_tx.downgrade(),
        freed: freed.clone(),
        shutdown: shutdown.clone(),
        leased: Arc::default(),
        access: Access {
            node: node.clone(),
            egress_ip: egress_label,
            proxy: config.proxy.clone(),
            ingest: ingest.clone(),
            transform: transform.clone(),
            no_egress: no_egress.clone(),
            run_dir: config.run_dir.clone(),
        },
    };
    let reporter = tokio::spawn(report_loop(client.clone(), node.clone(), reports_rx, launcher.clone()));
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
        // Slots that neither run an attempt nor are promised to the report loop's request.
        // Interest is registered first, so a slot freed right after the look is not missed.
        let notified = freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let free = launcher.slots.promise(&running);
        if free == 0 {
            tokio::select! {
                _ = notified => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        let wait_ms = config.poll.as_millis() as u64;
        // A poll in flight is never abandoned: leases granted to a dropped request would sit
        // unused until their TTL ran out. Shutdown takes effect when the poll returns.
        let result = client.lease(&node, &LeaseRequest { max: free, wait_ms }).await;
        match result {
            Ok(leases) => {
                if !leases.is_empty() {
                    last_work = Instant::now();
                }
                for lease in leases {
                    launcher.start(lease);
                }
                launcher.slots.release(free);
            }
            Err(e) if e.retryable() => {
                launcher.slots.release(free);
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
    summary.leased = launcher.leased.load(Ordering::Relaxed);
    drop(launcher);
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
) -> anyhow::Result<switchyard_scheduler::api::types::Registration> {
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

/// Starts leased attempts. Shared by the lease loop and the report loop, which asks for the next
/// leases in the same call as its reports: a node whose tasks finish quickly then needs one call
/// per batch instead of a report and a lease.
#[derive(Debug, Clone)]
struct Launcher {
    running: RunningMap,
    slots: Arc<Slots>,
    /// Weak, so the report loop (which holds a launcher) ends once every attempt has reported.
    reports: mpsc::WeakUnboundedSender<Report>,
    /// Told when an attempt ended without a report or a report call is done: slots may be free.
    freed: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    leased: Arc<AtomicUsize>,
    access: Access,
}

/// The node's slots: held by running attempts, or promised to a lease request in flight, so the
/// lease loop's long poll and the report loop's request never ask for more than the node has.
#[derive(Debug)]
struct Slots {
    total: usize,
    promised: Mutex<usize>,
}

impl Slots {
    /// Promises every slot that is neither running an attempt nor promised; returns how many.
    fn promise(&self, running: &RunningMap) -> usize {
        let Ok(mut promised) = self.promised.lock() else { return 0 };
        let busy = running.lock().map_or(self.total, |r| r.len());
        let free = self.total.saturating_sub(busy + *promised);
        *promised += free;
        free
    }

    /// Gives back a promise once its request's leases are started (they hold their slots now).
    fn release(&self, n: usize) {
        if let Ok(mut promised) = self.promised.lock() {
            *promised = promised.saturating_sub(n);
        }
    }
}

impl Launcher {
    fn start(&self, lease: Lease) {
        self.leased.fetch_add(1, Ordering::Relaxed);
        let Some(reports) = self.reports.upgrade() else {
            // Only after the agent stopped: the lease runs out and another node takes the task.
            tracing::warn!(attempt = lease.attempt, "Lease granted after the agent stopped; not started.");
            return;
        };
        let draining = *self.shutdown.borrow();
        let (stop_tx, stop_rx) = watch::channel(draining.then_some(Stop::HandBack));
        let tail = Tail::default();
        if let Ok(mut r) = self.running.lock() {
            r.insert(lease.attempt, Running { stop: stop_tx, tail: tail.clone() });
        }
        let running = self.running.clone();
        let freed = self.freed.clone();
        let access = self.access.clone();
        let span = attempt_span(&lease, &access);
        tokio::spawn(
            async move {
                tracing::info!(class = %lease.spec.class, number = lease.number, "Starting attempt.");
                let report = execute(&lease, tail, stop_rx, &access).await;
                match &report {
                    Some(r) => {
                        tracing::info!(outcome = ?r.outcome, class = ?r.error_class, "Attempt finished.")
                    }
                    None => tracing::info!("Attempt stopped; nothing to report."),
                }
                if let Ok(mut r) = running.lock() {
                    r.remove(&lease.attempt);
                }
                // The slot is free: the report loop asks for its next lease with the report and
                // then tells the lease loop; without a report, tell it now.
                match report {
                    Some(report) => {
                        let _ = reports.send(report);
                    }
                    None => freed.notify_waiters(),
                }
            }
            .instrument(span),
        );
    }
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

/// Sends reports in batches, each asking for leases for the slots free at that moment (no long
/// poll: a report is never held back waiting for work); retries while the control plane is
/// unreachable (e.g. restarting).
async fn report_loop(
    client: Client,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Report>,
    launcher: Launcher,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let free = if *launcher.shutdown.borrow() { 0 } else { launcher.slots.promise(&launcher.running) };
        let lease = (free > 0).then_some(LeaseRequest { max: free, wait_ms: 0 });
        let request = ReportRequest { reports: batch, lease };
        let mut delay = Duration::from_millis(100);
        loop {
            match client.report(&node, &request).await {
                Ok(response) => {
                    for (report, result) in request.reports.iter().zip(&response.results) {
                        tracing::info!(attempt = report.attempt, outcome = ?report.outcome, result = ?result, "Reported.");
                    }
                    for lease in response.leases {
                        launcher.start(lease);
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
        launcher.slots.release(free);
        launcher.freed.notify_waiters();
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

    use switchyard_scheduler::api::types::Outcome;
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

    /// A real attempt (a program started by the launcher, as a node runs it) logged with `--log-format
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
            let (_, shutdown) = watch::channel(false);
            let launcher = Launcher {
                running: running.clone(),
                slots: Arc::new(Slots { total: 1, promised: Mutex::new(0) }),
                reports: reports.downgrade(),
                freed: Arc::new(Notify::new()),
                shutdown,
                leased: Arc::default(),
                access,
            };
            launcher.start(lease);
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
