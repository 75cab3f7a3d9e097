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
                        proxy: config.proxy.clone(),
                        ingest: ingest.clone(),
                        transform: transform.clone(),
                        no_egress: no_egress.clone(),
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
    pub(crate) proxy: Option<ProxyAccess>,
    pub(crate) ingest: Option<ingest::IngestAccess>,
    pub(crate) transform: Option<transform::TransformAccess>,
    pub(crate) no_egress: Option<no_egress::NoEgress>,
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
    tokio::spawn(async move {
        tracing::info!(job = %lease.job, run = lease.run, task = %lease.spec.name, attempt = lease.attempt, "Starting attempt.");
        let report = execute(&lease, tail, stop_rx, &access).await;
        if let Some(report) = report {
            let _ = reports.send(report);
        }
        if let Ok(mut r) = running.lock() {
            r.remove(&lease.attempt);
        }
        freed.notify_waiters();
    });
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
