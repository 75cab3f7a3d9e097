//! Running one leased ingestion attempt in the agent's process: the connector gets its sockets
//! from the node's gateway dialer and writes to the lake; progress lines go to the attempt's log
//! tail, and every committed Delta version is sent to the control plane.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::FailureClass;
use switchyard_config::manifest::{SinkSpec, Source};
use switchyard_config::value::TableName;
use switchyard_scheduler::api::types::CommitRecord;
use switchyard_scheduler::api::types::{Lease, Outcome, Report};
use tokio::sync::{mpsc, watch};

use super::output::Tail;
use super::stop::{Stop, deadline, stopped};

/// What an ingestion needs from the node.
#[derive(Debug, Clone)]
pub(crate) struct IngestAccess {
    pub(crate) dialer: switchyard_gateway::dial::Dialer,
    pub(crate) lake: switchyard_lake::Lake,
    /// Committed versions, for the control plane.
    pub(crate) commits: mpsc::UnboundedSender<CommitRecord>,
}

/// Progress of one attempt: lines in its log, commits to the control plane.
struct AttemptProgress {
    attempt: i64,
    tail: Tail,
    commits: mpsc::UnboundedSender<CommitRecord>,
    last_line: std::sync::Mutex<Instant>,
}

impl switchyard_ingest::Progress for AttemptProgress {
    fn rows(&self, total: u64, per_second: f64) {
        let Ok(mut last) = self.last_line.lock() else { return };
        if last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            self.tail.push(format!("read {total} rows ({per_second:.0} rows/s)\n").as_bytes());
        }
    }

    fn committed(&self, table: &TableName, version: u64, rows: u64) {
        self.tail.push(format!("committed {table} version {version} (+{rows} rows)\n").as_bytes());
        let _ = self.commits.send(CommitRecord {
            attempt: self.attempt,
            table: table.to_string(),
            version: version as i64,
            rows: rows as i64,
        });
    }
}

pub(crate) async fn execute(
    lease: &Lease,
    source: &Source,
    sink: &SinkSpec,
    tail: Tail,
    mut stop: watch::Receiver<Option<Stop>>,
    access: Option<&IngestAccess>,
) -> Option<Report> {
    let report = |outcome, class: Option<FailureClass>, message: String, tail: &Tail| Report {
        attempt: lease.attempt,
        outcome,
        exit_code: None,
        error_class: class,
        message: Some(message),
        log_tail: Some(tail.text()),
        details: None,
    };
    let Some(access) = access else {
        let message = "ingestion runs on dedicated nodes only (this worker has no gateway)".to_owned();
        return Some(report(Outcome::Failed, Some(FailureClass::Internal), message, &tail));
    };
    let ctx = switchyard_ingest::Context {
        lake: access.lake.clone(),
        dialer: access.dialer.clone(),
        job: lease.job.clone(),
        task: lease.spec.name.clone(),
        run: lease.run,
        continuous: lease.spec.continuous,
    };
    let progress = Arc::new(AttemptProgress {
        attempt: lease.attempt,
        tail: tail.clone(),
        commits: access.commits.clone(),
        last_line: std::sync::Mutex::new(Instant::now()),
    });
    tail.push(format!("ingesting from {} into {}\n", source.kind(), sink.table).as_bytes());
    let timeout = lease.spec.timeout_ms.map(Duration::from_millis);
    let deadline = deadline(timeout);
    let stopped = stopped(&mut stop);
    // Dropping the ingestion future stops it between commits' effects: what is committed stays,
    // the rest is read again by the next attempt.
    tokio::select! {
        result = switchyard_ingest::run(source, sink, &ctx, progress) => match result {
            Ok(s) => {
                let message = format!(
                    "{} rows in {} commits ({:.0} rows/s){}",
                    s.rows,
                    s.commits,
                    s.rows_per_second(),
                    if s.dead_letters > 0 { format!("; {} undecodable messages in {}__dlq", s.dead_letters, sink.table) } else { String::new() },
                );
                tail.push(format!("{message}\n").as_bytes());
                Some(report(Outcome::Succeeded, None, message, &tail))
            }
            Err(e) => {
                let message = format!("{e}; hint: {}", e.hint());
                tail.push(format!("error: {message}\n").as_bytes());
                Some(report(Outcome::Failed, Some(e.class()), message, &tail))
            }
        },
        () = deadline => {
            let t = timeout.unwrap_or_default();
            Some(report(Outcome::TimedOut, None, format!("timed out after {}s; committed data stays", t.as_secs_f64()), &tail))
        }
        reason = stopped => match reason {
            Stop::Revoked(why) => {
                tracing::info!(attempt = lease.attempt, task = %lease.spec.name, reason = %why, "Ingestion stopped: the control plane revoked it.");
                None
            }
            Stop::HandBack => Some(report(Outcome::HandedBack, None, "node draining; lease handed back".into(), &tail)),
        },
    }
}
