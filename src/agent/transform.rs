//! Running one leased transform attempt (on a serverless worker, or on a node for a transform
//! pinned to dedicated compute): the SQL runs in-process against
//! the lake (DataFusion), its outcome — refresh mode and why, input versions, rows written,
//! expectation counts — goes into the report's `details`, and the output's committed version goes
//! to the control plane so `on_update` readers of that table are triggered.

use std::time::{Duration, Instant};

use switchyard_config::FailureClass;
use switchyard_config::manifest::{Expectation, SinkSpec};
use switchyard_scheduler::api::types::CommitRecord;
use switchyard_scheduler::api::types::{Lease, Outcome, Report};
use tokio::sync::{mpsc, watch};

use super::output::Tail;
use super::stop::{Stop, deadline, stopped};

/// What a transform needs from the agent: the lake, and where committed versions and egress
/// denials go.
#[derive(Debug, Clone)]
pub(crate) struct TransformAccess {
    pub(crate) lake: switchyard_lake::Lake,
    /// Where it runs, for the egress audit: `serverless`, or the node's egress IP.
    pub(crate) egress_ip: String,
    pub(crate) commits: mpsc::UnboundedSender<CommitRecord>,
    pub(crate) client: switchyard_scheduler::client::Client,
    pub(crate) budget: Option<switchyard_transform::Budget>,
}

/// What a transform task asks for, from its spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Work<'a> {
    pub(crate) sql: &'a str,
    pub(crate) sink: Option<&'a SinkSpec>,
    pub(crate) expectations: &'a [Expectation],
    /// `engine: distributed`: the Ballista scheduler that runs the query.
    pub(crate) distributed: Option<&'a str>,
}

pub(crate) async fn execute(
    lease: &Lease,
    work: Work<'_>,
    tail: Tail,
    mut stop: watch::Receiver<Option<Stop>>,
    access: Option<&TransformAccess>,
) -> Option<Report> {
    let report = |outcome, class: Option<FailureClass>, message: String, details, tail: &Tail| Report {
        attempt: lease.attempt,
        outcome,
        exit_code: None,
        error_class: class,
        message: Some(message),
        log_tail: Some(tail.text()),
        details,
    };
    let Some(access) = access else {
        let message = "this agent has no lake configured for transforms; run transforms on serverless workers (`switchyard worker`) or on nodes (`switchyard node`)".to_owned();
        return Some(report(Outcome::Failed, Some(FailureClass::Internal), message, None, &tail));
    };
    let Work { sql, sink, expectations, distributed } = work;
    let Some(sink) = sink else {
        let message =
            "the task has no sink; re-submit the job so its spec carries the table it writes".to_owned();
        return Some(report(Outcome::Failed, Some(FailureClass::Internal), message, None, &tail));
    };
    let request = switchyard_transform::Request {
        job: &lease.job,
        task: &lease.spec.name,
        sql,
        sink,
        expectations,
        full_refresh: lease.options.full_refresh,
        input_versions: &lease.options.input_versions,
        distributed,
    };
    match distributed {
        Some(scheduler) => tail.push(
            format!("transforming into {} on the Ballista cluster at {scheduler}\n", sink.table).as_bytes(),
        ),
        None => tail.push(format!("transforming into {}\n", sink.table).as_bytes()),
    }
    let started = Instant::now();
    let timeout = lease.spec.timeout_ms.map(Duration::from_millis);
    let deadline = deadline(timeout);
    let stopped = stopped(&mut stop);
    // Dropping the transform future before its commit leaves only unreferenced files: the output
    // table changes in one Delta commit or not at all.
    tokio::select! {
        result = switchyard_transform::run_within(&access.lake, &request, access.budget.as_ref()) => match result {
            Ok(outcome) => {
                for c in &outcome.expectations {
                    if c.violations > 0 {
                        tail.push(format!("expectation {} ({}): {} violation(s)\n", c.name, c.action, c.violations).as_bytes());
                    }
                }
                let message = match &outcome.output {
                    Some(w) => {
                        let _ = access.commits.send(CommitRecord {
                            attempt: lease.attempt,
                            table: w.table.clone(),
                            version: w.version as i64,
                            rows: w.rows as i64,
                        });
                        format!(
                            "{} rows into {} version {} ({:?} refresh: {}) in {:.2}s",
                            w.rows, w.table, w.version, outcome.refresh.mode, outcome.refresh.reason,
                            started.elapsed().as_secs_f64()
                        )
                    }
                    None => format!("nothing to commit: {}", outcome.refresh.reason),
                };
                tail.push(format!("{message}\n").as_bytes());
                Some(report(Outcome::Succeeded, None, message, Some(outcome.details()), &tail))
            }
            Err(e) => {
                if let switchyard_transform::Error::OutsideLake { target, url: true } = &e {
                    audit_denial(access, lease, target).await;
                }
                let message = format!("{e}; hint: {}", e.hint());
                tail.push(format!("error: {message}\n").as_bytes());
                Some(report(Outcome::Failed, Some(e.class()), message, None, &tail))
            }
        },
        () = deadline => {
            let t = timeout.unwrap_or_default();
            Some(report(Outcome::TimedOut, None, format!("timed out after {}s; nothing was committed", t.as_secs_f64()), None, &tail))
        }
        reason = stopped => match reason {
            Stop::Revoked(why) => {
                tracing::info!(attempt = lease.attempt, task = %lease.spec.name, reason = %why, "Transform stopped: the control plane revoked it.");
                None
            }
            Stop::HandBack => Some(report(Outcome::HandedBack, None, "worker draining; lease handed back".into(), None, &tail)),
        },
    }
}

/// A query that named a URL tried to leave the lake: record the denial like the gateway records
/// one, so it shows next to the nodes' denials.
async fn audit_denial(access: &TransformAccess, lease: &Lease, url: &str) {
    let destination = url::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| url.to_owned());
    let record = super::no_egress::denial(&access.egress_ip, &lease.job, &lease.spec.name, destination);
    if let Err(e) = access.client.post_audit(vec![record]).await {
        tracing::warn!(error = %e, "Could not record the egress denial at the control plane.");
    }
}
