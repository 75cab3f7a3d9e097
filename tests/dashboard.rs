//! The dashboard in a real browser: `switchyard demo --keep-running` serves it, and
//! `tests/browser/dashboard.cjs` drives Debian's headless Chromium through playwright-core over
//! it (overview, the failed run's class and hint, the egress denial). Screenshots are kept in
//! `target/test-artifacts/dashboard/`.
//!
//! Needs `/usr/bin/chromium` (or `SWITCHYARD_CHROMIUM`), `node`, and playwright-core under
//! `target/browser/node_modules` (or `SWITCHYARD_PLAYWRIGHT_MODULES`); the test command
//! (`scripts/test`) installs all three. Missing ones fail the test with what to install.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Stops the demo on every way out of the test, with Ctrl-C as a person would.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from)
}

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} not found at {}; run the test command (scripts/test), which installs it",
        path.display()
    );
}

#[test]
fn an_operator_finds_the_failed_run_its_hint_and_the_egress_denial_in_the_browser() {
    let chromium =
        std::env::var_os("SWITCHYARD_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    require(&chromium, "Chromium (Debian package `chromium`)");
    let modules = std::env::var_os("SWITCHYARD_PLAYWRIGHT_MODULES")
        .map_or_else(|| target_dir().join("browser/node_modules"), PathBuf::from);
    require(&modules.join("playwright-core"), "playwright-core (npm)");
    let artifacts = target_dir().join("test-artifacts/dashboard");
    std::fs::create_dir_all(&artifacts).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--keep-running", "--dir"])
        .arg(dir.path().join("demo"))
        .env("NO_COLOR", "1")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start switchyard demo --keep-running");
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);

    // The demo prints its summary, then the dashboard's address; keep draining its output after
    // that so it never blocks on a full pipe.
    let (found, url) = mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("demo: {line}");
            if let Some(url) = line.strip_prefix("Dashboard: ") {
                if let Some(tx) = found.take() {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        }
    });
    let url = url
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo printed no `Dashboard: URL` line within 120 s (see its output above)");

    let out = Command::new("node")
        .arg(workspace().join("tests/browser/dashboard.cjs"))
        .arg(&url)
        .arg(&artifacts)
        .env("NODE_PATH", &modules)
        .env("SWITCHYARD_CHROMIUM", &chromium)
        .output()
        .expect("run node (Debian package `nodejs`)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    drop(demo);
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\nscreenshots in {}",
        out.status,
        artifacts.display()
    );
    for shot in ["overview.png", "run-failed.png", "run-pipeline.png", "egress.png", "cost.png"] {
        let meta =
            std::fs::metadata(artifacts.join(shot)).unwrap_or_else(|e| panic!("screenshot {shot}: {e}"));
        assert!(meta.len() > 5_000, "screenshot {shot} is only {} bytes", meta.len());
    }
}
