//! Starting and stopping real `switchyard` processes for the runtime tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Executor;
use switchyard_scheduler::client::Client;
use switchyard_scheduler::engine::RunState;
use switchyard_scheduler::views::RunView;

/// Commits the five-row `bronze.t` (id, provider a/b, amount; id 2's amount is negative) that the
/// transform tests read.
pub(crate) async fn write_bronze_t(lake: &switchyard_lake::Lake) {
    use std::sync::Arc;

    use switchyard_lake::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use switchyard_lake::arrow::record_batch::RecordBatch;

    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef),
        ("provider", Arc::new(StringArray::from(vec!["a", "a", "b", "b", "b"])) as ArrayRef),
        ("amount", Arc::new(Float64Array::from(vec![10.0, -1.0, 5.0, 7.0, 8.0])) as ArrayRef),
    ])
    .unwrap();
    let table = "bronze.t".parse().unwrap();
    lake.commit(&table, vec![batch], switchyard_lake::WriteMode::Append, &[]).await.unwrap();
}

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A PostgreSQL database for one test, dropped with it.
#[derive(Debug)]
pub(crate) struct PgDb {
    pub(crate) url: String,
    name: String,
}

fn pg_admin() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl PgDb {
    pub(crate) async fn create() -> PgDb {
        let name = switchyard_testkit::unique_name("sy_rt_");
        let admin = sqlx::PgPool::connect(&pg_admin())
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        admin.close().await;
        let base = pg_admin();
        PgDb { url: format!("{}/{name}", &base[..base.rfind('/').unwrap()]), name }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = pg_admin();
        // Drop in a fresh runtime on a plain thread: Drop may run inside a tokio runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let _ =
                        pool.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A working directory with settings, an egress policy and a jobs folder.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Setup {
    /// Pools: egress-a (127.0.0.2 and 127.0.0.4), egress-b (127.0.0.3); both partner rules allow
    /// egress-a's IPs, one also egress-b's.
    pub(crate) fn new(state: &str, lease_ttl: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let settings = format!(
            r#"[control_plane]
listen = "127.0.0.1:{port}"
state = "{state}"
token_file = "{token}"
lease_ttl = "{lease_ttl}"

[[pools]]
name = "egress-a"
egress_ips = ["127.0.0.2", "127.0.0.4"]
slots = 4

[[pools]]
name = "egress-b"
egress_ips = ["127.0.0.3"]
slots = 4

[serverless]
max_workers = 4
idle_timeout = "3s"
"#,
            token = dir.path().join("admin.token").display()
        );
        std::fs::write(dir.path().join("switchyard.toml"), settings).unwrap();
        std::fs::write(
            dir.path().join("egress.yaml"),
            "destinations:\n  - { name: partner-a, host: 127.0.0.1, ports: [9443], egress_ips: [127.0.0.2, 127.0.0.4] }\n  \
             - { name: partner-any, host: 127.0.0.1, ports: [9444], egress_ips: [127.0.0.2, 127.0.0.3, 127.0.0.4] }\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        Setup { dir, port }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn write_job(&self, file: &str, yaml: &str) -> PathBuf {
        let path = self.path("jobs").join(file);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).current_dir(self.dir.path()).env("RUST_LOG", "info,sqlx=warn").stdin(Stdio::null());
        if std::env::var_os("SWITCHYARD_TEST_VERBOSE").is_none() {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        }
        c
    }

    /// `switchyard serve` on this setup's port; returns once `/healthz` answers.
    pub(crate) fn serve(&self) -> Proc {
        self.serve_on(self.port)
    }

    pub(crate) fn serve_on(&self, port: u16) -> Proc {
        let settings = self.path("switchyard.toml");
        let egress = self.path("egress.yaml");
        let listen = format!("127.0.0.1:{port}");
        let child = self
            .command(&[
                "serve",
                "--settings",
                settings.to_str().unwrap(),
                "--egress",
                egress.to_str().unwrap(),
                "--listen",
                &listen,
            ])
            .spawn()
            .unwrap();
        let proc = Proc { child };
        wait_healthy(port);
        proc
    }

    pub(crate) fn node(&self, url: &str, pool: &str, ip: &str) -> Proc {
        let settings = self.path("switchyard.toml");
        let child = self.command(&node_args(url, pool, ip, &settings)).spawn().unwrap();
        Proc { child }
    }

    /// A node of its own: started in `dir`, with `dir`'s `switchyard.toml`, `egress.yaml` and
    /// token, sharing no file with the control plane (`more`: further arguments, `env`: more of
    /// its environment).
    pub(crate) fn node_in(
        &self,
        dir: &Path,
        (url, pool, ip): (&str, &str, &str),
        more: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let (settings, egress, token) =
            (dir.join("switchyard.toml"), dir.join("egress.yaml"), dir.join("node.token"));
        let mut args = node_args(url, pool, ip, &settings);
        args.extend(["--egress", egress.to_str().unwrap(), "--token-file", token.to_str().unwrap()]);
        args.extend_from_slice(more);
        let child = self.command(&args).current_dir(dir).envs(env.iter().copied()).spawn().unwrap();
        Proc { child }
    }

    /// `switchyard run` on this setup's settings, policy and jobs folder, to completion.
    pub(crate) fn run_jobs(&self) -> (i32, String, String) {
        let (settings, egress, jobs) =
            (self.path("switchyard.toml"), self.path("egress.yaml"), self.path("jobs"));
        self.run_cli(&[
            "run",
            "--settings",
            settings.to_str().unwrap(),
            "--egress",
            egress.to_str().unwrap(),
            jobs.to_str().unwrap(),
        ])
    }

    /// Puts the lake at `root` (plus `more` settings) into this setup's settings; returns the lake.
    pub(crate) fn use_lake(&self, root: &Path, more: &str) -> switchyard_lake::Lake {
        let settings = self.path("switchyard.toml");
        let mut text = std::fs::read_to_string(&settings).unwrap();
        text.push_str(&format!("\n[lake]\nroot = \"{}\"\n{more}", root.display()));
        std::fs::write(&settings, text).unwrap();
        switchyard_lake::Lake::new(root.to_str().unwrap()).unwrap()
    }

    /// Runs a CLI command to completion in this setup; returns (exit code, stdout, stderr).
    pub(crate) fn run_cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin())
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn client(&self, url: &str) -> Client {
        let token = std::fs::read_to_string(self.path("admin.token")).unwrap();
        Client::new(url, token.trim().to_owned(), None).unwrap()
    }

    pub(crate) async fn submit(&self, client: &Client, job_file: &Path) -> i64 {
        let content = std::fs::read_to_string(job_file).unwrap();
        let request = switchyard_scheduler::api::types::SubmitRequest {
            manifests: vec![switchyard_scheduler::api::types::ManifestFile {
                path: job_file.display().to_string(),
                content,
            }],
            run: true,
            full_refresh: false,
            select: vec![],
        };
        client.submit(&request).await.unwrap().jobs[0].run.unwrap()
    }
}

/// `switchyard node` in `pool` with egress IP `ip`, against `url`, with `settings`.
fn node_args<'a>(url: &'a str, pool: &'a str, ip: &'a str, settings: &'a Path) -> Vec<&'a str> {
    vec![
        "node",
        "--pool",
        pool,
        "--egress-ip",
        ip,
        "--control-plane",
        url,
        "--settings",
        settings.to_str().unwrap(),
        "--drain-timeout",
        "2s",
    ]
}

pub(crate) fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("control plane on port {port} did not become healthy");
}

/// Polls until `pred` holds for the run, or panics with the last state seen.
pub(crate) async fn wait_for(
    client: &Client,
    run: i64,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&RunView) -> bool,
) -> RunView {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(view) = client.run(run).await {
            if pred(&view) {
                return view;
            }
            last = Some(view);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}; last state: {last:#?}");
}

pub(crate) async fn wait_finished(client: &Client, run: i64, timeout: Duration) -> RunView {
    wait_for(client, run, timeout, "the run to finish", |v| v.state != RunState::Running).await
}

/// No task ever had two attempts alive at once: each attempt ended before the next began.
pub(crate) fn assert_attempts_never_overlap(view: &RunView) {
    for task in &view.tasks {
        for pair in task.attempts.windows(2) {
            let ended = pair[0].finished_at.unwrap_or(i64::MAX);
            assert!(
                ended <= pair[1].started_at,
                "task {} had overlapping attempts: {:#?}",
                task.task,
                task.attempts
            );
        }
    }
}

/// Object-store options for the S3 server the test command starts (`SWITCHYARD_TEST_S3`: moto,
/// which takes any key): `[lake.storage_options]` names and values.
pub(crate) fn s3_test_options() -> Vec<(&'static str, String)> {
    let endpoint = std::env::var("SWITCHYARD_TEST_S3").expect("SWITCHYARD_TEST_S3: run through scripts/test");
    vec![
        ("aws_endpoint_url", endpoint),
        ("aws_region", "us-east-1".into()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "testing".into()),
        ("aws_secret_access_key", "testing".into()),
    ]
}
