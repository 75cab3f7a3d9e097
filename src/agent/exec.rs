//! Running one leased attempt: a `run` task's program, with its output kept bounded, its timeout
//! enforced, and the whole process group stopped on cancellation, lease loss or drain.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use switchyard_config::FailureClass;
use switchyard_scheduler::api::types::{Lease, Outcome, Report};
use switchyard_scheduler::spec::Work;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::output::Tail;
use super::stop::{Stop, deadline, stopped};

/// A child's output stream.
type Pipe = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// Grace between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Runs the attempt to its end. `None` when it was revoked (there is nothing to report).
pub(crate) async fn execute(
    lease: &Lease,
    tail: Tail,
    mut stop: watch::Receiver<Option<Stop>>,
    access: &super::Access,
) -> Option<Report> {
    let proxy = access.proxy.as_ref();
    let report =
        |outcome, class: Option<FailureClass>, code: Option<i64>, message: String, tail: &Tail| Report {
            attempt: lease.attempt,
            outcome,
            exit_code: code,
            error_class: class,
            message: Some(message),
            log_tail: Some(tail.text()),
            details: None,
        };
    let (command, env, workdir, destinations) = match &lease.spec.work {
        Work::Run { command, env, workdir, declared_workdir, destinations } => {
            (command, env, access.run_dir.resolve(workdir, declared_workdir.as_deref()), destinations)
        }
        Work::Ingest { source, sink } => {
            return super::ingest::execute(lease, source, sink, tail, stop, access.ingest.as_ref()).await;
        }
        Work::Transform { sql, sink, expectations, distributed } => {
            let access = access.transform.as_ref();
            let work = super::transform::Work {
                sql,
                sink: sink.as_ref(),
                expectations,
                distributed: distributed.as_deref(),
            };
            return super::transform::execute(lease, work, tail, stop, access).await;
        }
    };
    let Some((program, args)) = command.split_first() else {
        return Some(report(Outcome::Failed, Some(FailureClass::Data), None, "empty command".into(), &tail));
    };
    let mut command = match setpriv() {
        // The kernel kills the program if this agent dies (kill -9 included), so a task that is
        // requeued elsewhere does not also keep running here. Its own children are not covered;
        // run node agents under systemd or in a container so the whole group goes with them.
        Some(setpriv) => {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(program);
            c
        }
        None => tokio::process::Command::new(program),
    };
    // Declared egress goes through the node's gateway; a task without destinations gets none.
    // Each attempt is its own proxy user, so the gateway can say which attempt it refused.
    let label = format!("attempt-{}", lease.attempt);
    let refusing = access.no_egress.as_ref().filter(|_| destinations.is_empty());
    let proxy_url = match (destinations.is_empty(), proxy, refusing) {
        (false, Some(proxy), _) => Some(proxy.url.replacen("://", &format!("://{label}:x@"), 1)),
        // A serverless worker has no egress: outbound requests go to a proxy that refuses them.
        (true, _, Some(guard)) => {
            Some(guard.register(lease.attempt, &lease.job, &lease.spec.name, tail.clone()))
        }
        _ => None,
    };
    if let Some(url) = &proxy_url {
        for var in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"] {
            command.env(var, url);
        }
        command.env_remove("NO_PROXY").env_remove("no_proxy");
    }
    // The agent's own settings overrides (`SWITCHYARD__*`, which may carry the lake's
    // credentials) and the CA it was handed are the agent's, not the program's.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("SWITCHYARD__") || key_text == crate::cli::CA_PEM_ENV {
            command.env_remove(&key);
        }
    }
    let mut child = match command
        .args(args)
        .envs(env)
        .env("SWITCHYARD_JOB", &lease.job)
        .env("SWITCHYARD_TASK", &lease.spec.name)
        .env("SWITCHYARD_RUN", lease.run.to_string())
        .env("SWITCHYARD_ATTEMPT", lease.number.to_string())
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let message = format!(
                "cannot start `{program}` in {}: {e}; install it on the node or fix `run.command`",
                workdir.display()
            );
            return Some(report(Outcome::Failed, Some(FailureClass::Internal), None, message, &tail));
        }
    };
    // Both streams go to the task log; stderr also to its own tail, whose last line explains a
    // failure (the interleaving of the two streams is not deterministic).
    let errors = Tail::default();
    let pipes: [(Option<Pipe>, Option<Tail>); 2] = [
        (child.stdout.take().map(|p| Box::new(p) as _), None),
        (child.stderr.take().map(|p| Box::new(p) as _), Some(errors.clone())),
    ];
    for (pipe, also) in pipes {
        let Some(mut pipe) = pipe else { continue };
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.push(&buf[..n]);
                if let Some(also) = &also {
                    also.push(&buf[..n]);
                }
            }
        });
    }
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    let started = Instant::now();
    let timeout = lease.spec.timeout_ms.map(Duration::from_millis);
    let deadline = deadline(timeout);
    let stopped = stopped(&mut stop);
    tokio::select! {
        status = child.wait() => {
            // Let the readers drain what the program wrote last.
            tokio::time::sleep(Duration::from_millis(20)).await;
            // A program that failed after the gateway refused it a connection failed for that
            // reason: report the gateway's class and hint, not a bare exit status.
            let refusal = proxy.and_then(|p| p.refusals.take(&label)).map(|r| {
                (r.class, format!("the node's gateway refused a connection: {}; hint: {}", r.message, r.hint))
            });
            let refusal = refusal.or_else(|| {
                let destination = refusing?.take_refusal(lease.attempt)?;
                Some((FailureClass::Access, format!(
                    "serverless workers have no egress: the connection to {destination} was refused and audited; \
                     hint: declare it in `run.destinations` so the task runs on a dedicated node whose egress IP the destination allows"
                )))
            });
            // A program that ignored the proxy and connected itself: where the network has no
            // route out (a worker's namespace or NetworkPolicy), its own error says so.
            let refusal = match (refusal, refusing) {
                (None, Some(guard)) if !matches!(&status, Ok(s) if s.success()) => {
                    match super::no_route::no_route(&errors.text()) {
                        Some(found) => {
                            let to = found.destination.as_deref().map(|d| format!(" to {d}")).unwrap_or_default();
                            guard.audit_no_route(&lease.job, &lease.spec.name, found.destination.clone()).await;
                            Some((FailureClass::Access, format!(
                                "no egress: the program's own connection{to} failed with `{}` (this worker's network \
                                 has no route out) and was audited; hint: declare it in `run.destinations` so the task \
                                 runs on a dedicated node whose egress IP the destination allows",
                                found.error
                            )))
                        }
                        None => None,
                    }
                }
                (refusal, _) => refusal,
            };
            if let Some(guard) = refusing {
                guard.unregister(lease.attempt);
            }
            match (status, refusal) {
                (Ok(s), _) if s.success() => Some(report(Outcome::Succeeded, None, Some(0), format!("exited 0 after {:.1}s", started.elapsed().as_secs_f64()), &tail)),
                (Ok(s), Some((class, message))) => {
                    Some(report(Outcome::Failed, Some(class), s.code().map(i64::from), message, &tail))
                }
                (Ok(s), None) => {
                    let code = s.code().map(i64::from);
                    let how = code.map_or_else(|| "was killed by a signal".to_owned(), |c| format!("exited with status {c}"));
                    let last = errors.last_line().or_else(|| tail.last_line()).map(|l| format!(": {l}")).unwrap_or_default();
                    Some(report(Outcome::Failed, Some(FailureClass::Data), code, format!("`{program}` {how}{last}"), &tail))
                }
                (Err(e), _) => Some(report(Outcome::Failed, Some(FailureClass::Internal), None, format!("waiting for `{program}` failed: {e}"), &tail)),
            }
        }
        () = deadline => {
            terminate(pid, &mut child).await;
            let t = timeout.unwrap_or_default();
            Some(report(Outcome::TimedOut, None, None, format!("timed out after {}s; the process group was stopped", t.as_secs_f64()), &tail))
        }
        reason = stopped => {
            terminate(pid, &mut child).await;
            match reason {
                Stop::Revoked(why) => {
                    tracing::info!(attempt = lease.attempt, task = %lease.spec.name, reason = %why, "Attempt stopped: the control plane revoked it.");
                    None
                }
                Stop::HandBack => Some(report(Outcome::HandedBack, None, None, "node draining; lease handed back".into(), &tail)),
            }
        }
    }
}

/// `setpriv` (util-linux), if this machine has it.
fn setpriv() -> Option<&'static std::path::Path> {
    static FOUND: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            ["/usr/bin/setpriv", "/bin/setpriv"]
                .into_iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.is_file())
        })
        .as_deref()
}

/// SIGTERM to the whole process group, then SIGKILL after a grace period.
async fn terminate(pid: Option<Pid>, child: &mut tokio::process::Child) {
    if let Some(pid) = pid {
        let _ = killpg(pid, Signal::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_ok() {
            let _ = killpg(pid, Signal::SIGKILL); // stragglers in the group
            return;
        }
        let _ = killpg(pid, Signal::SIGKILL);
    }
    let _ = child.kill().await;
}
