//! Serverless scale: a [`Launcher`] starts workers; [`autoscale`] decides how many, from queue
//! depth, between 0 and `max_workers`. Workers exit by themselves after `idle_timeout`, so the
//! launcher only ever starts them — which is all a Kubernetes Job launcher can do too.
//! [`kubernetes`] has that launcher (its Job spec in every build, its API client with the `kube`
//! feature).

pub mod kubernetes;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::Error;
use crate::engine::Engine;
use crate::store::now_ms;

/// Starts serverless workers. Implementations: [`LocalProcessLauncher`] (child processes) and
/// `kubernetes::KubernetesLauncher` (a Job per burst; `kube` feature).
pub trait Launcher: Send + Sync + 'static {
    /// Starts `n` workers; returns how many actually started.
    fn launch(&self, n: usize) -> impl std::future::Future<Output = Result<usize, Error>> + Send;
    /// Workers started and not yet exited (including those still starting up).
    fn live(&self) -> usize;
    fn name(&self) -> &'static str;
}

/// How a worker is started: the executable and the arguments that point it at the control plane.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub exe: PathBuf,
    pub args: Vec<String>,
    /// Extra environment (e.g. `RUST_LOG` for quieter workers under `switchyard run`, the lake's
    /// settings).
    pub env: Vec<(String, String)>,
    /// Written to the worker's standard input, then closed: its API token (`--token-file -`), so
    /// the worker reads no file the control plane wrote and `run` programs inherit no variable.
    pub stdin: Option<switchyard_config::Secret<String>>,
    /// Start the worker inside this Linux network namespace (`[serverless] netns`): with routes
    /// to the control plane and the lake only, a program that ignores the proxy variables finds
    /// no route to anything else.
    pub netns: Option<String>,
}

/// Starts `switchyard worker` processes on this machine, each in a fresh temporary directory
/// (removed once it has exited): a worker shares no disk with the control plane or other
/// workers, as on Kubernetes, so anything it needs must come from its command line, its
/// environment, the control plane or the lake.
#[derive(Debug)]
pub struct LocalProcessLauncher {
    command: WorkerCommand,
    children: Mutex<Vec<(tokio::process::Child, tempfile::TempDir)>>,
}

impl LocalProcessLauncher {
    pub fn new(command: WorkerCommand) -> Self {
        LocalProcessLauncher { command, children: Mutex::new(Vec::new()) }
    }

    /// Stops every worker this launcher started (control plane shutdown).
    pub fn stop_all(&self) {
        if let Ok(mut children) = self.children.lock() {
            for (child, _) in children.iter_mut() {
                let _ = child.start_kill();
            }
            children.clear();
        }
    }
}

impl Launcher for LocalProcessLauncher {
    async fn launch(&self, n: usize) -> Result<usize, Error> {
        let mut started = 0;
        for _ in 0..n {
            let io = |what: &str| {
                let what = format!("cannot start a worker ({}): {what}", self.command.exe.display());
                move |cause| Error::Io { what, cause }
            };
            let dir = tempfile::Builder::new()
                .prefix("switchyard-worker-")
                .tempdir()
                .map_err(io("no temporary directory"))?;
            let mut command = match &self.command.netns {
                // `ip netns exec` execs the worker in place: the child is the worker itself, so
                // kill_on_drop and `live` act on it; its directory, input and environment stay.
                Some(ns) => {
                    let ip = netns_exec(ns).map_err(|cause| Error::Io {
                        what: format!("cannot start a worker in network namespace {ns}"),
                        cause,
                    })?;
                    let mut c = tokio::process::Command::new(ip);
                    c.args(["netns", "exec", ns]).arg(&self.command.exe);
                    c
                }
                None => tokio::process::Command::new(&self.command.exe),
            };
            let mut child = command
                .args(&self.command.args)
                .envs(self.command.env.iter().map(|(k, v)| (k, v)))
                .env("SWITCHYARD_LAUNCHED_AT", now_ms().to_string())
                .current_dir(dir.path())
                .stdin(if self.command.stdin.is_some() {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                })
                .kill_on_drop(true)
                .spawn()
                .map_err(io("spawn failed"))?;
            if let (Some(secret), Some(mut stdin)) = (&self.command.stdin, child.stdin.take()) {
                use tokio::io::AsyncWriteExt;
                let line = format!("{}\n", secret.expose());
                stdin.write_all(line.as_bytes()).await.map_err(io("its standard input closed"))?;
                drop(stdin);
            }
            if let Ok(mut children) = self.children.lock() {
                children.push((child, dir));
            }
            started += 1;
        }
        Ok(started)
    }

    fn live(&self) -> usize {
        let Ok(mut children) = self.children.lock() else { return 0 };
        children.retain_mut(|(c, _)| matches!(c.try_wait(), Ok(None)));
        children.len()
    }

    fn name(&self) -> &'static str {
        "local-process"
    }
}

/// The `ip` binary that starts a worker in namespace `ns`, after checking that the namespace
/// exists: otherwise `ip` would start, fail, and the launcher would count a worker that never
/// registers.
fn netns_exec(ns: &str) -> std::io::Result<&'static str> {
    if !std::path::Path::new("/run/netns").join(ns).exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no network namespace {ns} (`ip netns list` shows the ones that exist)"),
        ));
    }
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "`ip` is not installed (Debian: apt-get install iproute2)",
            )
        })
}

/// Scaling policy inputs.
#[derive(Debug, Clone, Copy)]
pub struct ScalePolicy {
    pub max_workers: usize,
    /// Tasks one worker runs at once.
    pub slots_per_worker: usize,
    pub interval: Duration,
}

/// Workers wanted for `queued` waiting and `running` executing serverless tasks.
pub fn desired_workers(queued: i64, running: i64, policy: &ScalePolicy) -> usize {
    let demand = (queued.max(0) + running.max(0)) as usize;
    demand.div_ceil(policy.slots_per_worker.max(1)).min(policy.max_workers)
}

/// Keeps enough workers running for the serverless queue until `shutdown` fires.
pub async fn autoscale<L: Launcher>(
    engine: Engine,
    launcher: &L,
    policy: ScalePolicy,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if policy.max_workers == 0 {
        return;
    }
    loop {
        match engine.serverless_demand().await {
            Ok((queued, running)) => {
                let want = desired_workers(queued, running, &policy);
                let live = launcher.live();
                if want > live {
                    match launcher.launch(want - live).await {
                        Ok(n) => tracing::info!(
                            launcher = launcher.name(),
                            started = n,
                            queued,
                            running,
                            live,
                            "Started serverless workers."
                        ),
                        Err(e) => {
                            tracing::warn!(launcher = launcher.name(), error = %e, "Could not start serverless workers.")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Could not read serverless demand."),
        }
        tokio::select! {
            _ = tokio::time::sleep(policy.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_with_demand_between_zero_and_max() {
        let p = ScalePolicy { max_workers: 8, slots_per_worker: 2, interval: Duration::ZERO };
        assert_eq!(desired_workers(0, 0, &p), 0);
        assert_eq!(desired_workers(1, 0, &p), 1);
        assert_eq!(desired_workers(3, 2, &p), 3);
        assert_eq!(desired_workers(100, 0, &p), 8);
    }
}
