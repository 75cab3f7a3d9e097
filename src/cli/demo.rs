//! `switchyard demo`: the healthcare case study on one machine, with nothing installed. A partner
//! claims API that demands a client certificate and allowlists one static IP runs in-process;
//! a pipeline ingests it on a dedicated node bound to that IP and refines it serverless over
//! Delta tables; and a program that tries to call the partner from a serverless worker — the
//! mistake the case study's team kept hitting — is refused and audited. The summary shows where
//! each task ran and why, and the run exits 0 only if all of that happened as intended.
//!
//! - [`pki`]: the throwaway CA and certificates;
//! - [`partner`]: the partner API;
//! - [`inputs`]: the settings, egress policy and manifests the demo writes and runs;
//! - [`network`]: with `--netns`, the same in Linux network namespaces behind a real firewall;
//! - [`report`]: the summary.

mod inputs;
mod network;
mod partner;
mod pki;
mod report;

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_config::value::TableName;
use switchyard_scheduler::api::types::SubmitRequest;
use switchyard_scheduler::engine::{AuditRecord, TaskState};

use super::embedded::{self, fetch, follow};
use super::ops::read_manifests;
use super::render::{Style, render_errors};
use super::shutdown::shutdown_signal;

/// The static egress IP the partner allowlists, and the demo pool's node binds.
const EGRESS_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
/// Marks a directory as the demo's, so that only such a directory is ever wiped.
const MARKER: &str = ".switchyard-demo";

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where the demo writes its certificates, settings, manifests, state and lake. Wiped and
    /// recreated on every run (only if an earlier demo made it, or it is empty).
    #[arg(long, value_name = "DIR", default_value = ".switchyard/demo")]
    dir: PathBuf,
    /// After the summary, keep the control plane, node and partner API running until Ctrl-C, to
    /// explore with `switchyard runs` and `switchyard egress audit`.
    #[arg(long)]
    keep_running: bool,
    /// Put the demo's lake on an object store instead of DIR/lake, e.g. s3://bucket/demo, with
    /// credentials and endpoint from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, …).
    #[arg(long, value_name = "URL")]
    lake: Option<String>,
    /// Run it in Linux network namespaces (needs root, iproute2 and nftables): the partner behind
    /// a firewall that admits only the pool's egress IP 203.0.113.10, the node holding that IP on
    /// a real interface, serverless workers with no route out — and one more program that
    /// ignores the proxy variables, which only the network can stop.
    #[arg(long)]
    netns: bool,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // Built first and dropped last: whatever happens below, the namespaces go with it.
    let mut network = if args.netns { Some(network::Network::build()?) } else { None };
    let egress_ip = network.as_ref().map_or(EGRESS_IP, network::Network::egress_ip);
    if network.is_none() {
        if let Err(e) = std::net::TcpListener::bind((EGRESS_IP, 0)) {
            bail!(
                "the demo's static egress IP {EGRESS_IP} is not an address of this machine ({e}); the demo binds its \
                 dedicated node to it. On Linux all of 127.0.0.0/8 is loopback; elsewhere add it (macOS: \
                 `sudo ifconfig lo0 alias 127.0.0.2 up`)"
            );
        }
    }
    let dir = std::path::absolute(&args.dir)?;
    fresh_dir(&dir)?;
    let pki = pki::create(&dir.join("certs"))?;
    let listener = match &network {
        Some(n) => n.partner_listener()?,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .context("the partner API cannot listen on 127.0.0.1")?,
    };
    let partner = partner::start(&pki, egress_ip, listener).await?;
    let exe = std::env::current_exe().context("locating the switchyard executable for the fetch task")?;
    let serverless_ns = network.as_ref().map(|n| n.serverless_ns().to_owned());
    let files =
        inputs::write(&dir, &pki, &partner, egress_ip, &exe, args.lake.as_deref(), serverless_ns.as_deref())?;

    let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
        paths: vec![files.jobs.clone()],
        settings: Some(files.settings.clone()),
        egress: Some(files.egress.clone()),
        env: None,
        inline: vec![],
    })?;
    let planned = switchyard_scheduler::plan(&inputs);
    if !planned.is_ok() {
        eprint!("{}", render_errors(&planned.errors, Style::detect(std::io::stderr().is_terminal())));
        bail!(
            "the demo's own inputs in {} do not plan (a bug in `switchyard demo`; please report it with the errors above)",
            dir.display()
        );
    }
    let settings = inputs.settings.settings.clone();
    let style = Style::detect(std::io::stdout().is_terminal());
    report::intro(&dir, &partner, &files, egress_ip, network.is_some(), style);

    let nodes = if network.is_some() { embedded::Nodes::External } else { embedded::Nodes::InProcess };
    let embedded = embedded::start(&inputs, &planned, nodes).await?;
    let client = embedded.client.clone();
    if let Some(network) = network.as_mut() {
        network.start_node(&embedded.url, &embedded.token_file, &files, &exe, &dir, &client).await?;
    }
    let submitted = client
        .submit(&SubmitRequest {
            manifests: read_manifests(std::slice::from_ref(&files.jobs))?,
            run: true,
            // A fresh directory every time: there is nothing to refresh incrementally from.
            full_refresh: false,
            select: vec![],
        })
        .await
        .context("submitting the demo's jobs")?;
    let run_ids: Vec<i64> = submitted.jobs.iter().filter_map(|j| j.run).collect();
    let interrupted = follow(&client, &run_ids, started).await?;
    let runs = fetch(&client, &run_ids).await?;

    // The worker sends its audit record on its own schedule; give it a moment to arrive.
    let fetch_failed = runs
        .iter()
        .filter(|r| r.job == inputs::FETCH_JOB)
        .flat_map(|r| &r.tasks)
        .any(|t| t.state == TaskState::Failed);
    let audit = if fetch_failed && !interrupted {
        denials(&client).await.map_err(|e| format!("{e:#}"))
    } else {
        Ok(Vec::new())
    };

    let lake = switchyard_lake::Lake::from_settings(&settings.lake).with_context(|| {
        format!("opening the demo's lake at {}", switchyard_lake::redact_url(&settings.lake.root))
    })?;
    let mut tables = Vec::new();
    for name in inputs::TABLES {
        let table: TableName = name.parse().map_err(|e: switchyard_config::value::ParseError| {
            anyhow::anyhow!("table name {name}: {}", e.message)
        })?;
        let location = lake.location(&table);
        let path =
            location.to_file_path().map_or_else(|()| location.to_string(), |p| p.display().to_string());
        // Reading a local table that was never written would create its folder: look first.
        let rows = if !lake.is_local() || Path::new(&path).join("_delta_log").is_dir() {
            lake.read(&table, None).await.ok().map(|b| b.iter().map(|b| b.num_rows()).sum::<usize>())
        } else {
            None
        };
        tables.push(report::Table { name: name.to_owned(), path, rows });
    }

    let facts = report::Facts {
        submitted: &submitted,
        runs: &runs,
        audit: &audit,
        partner: &partner,
        tables: &tables,
        interrupted,
        elapsed: started.elapsed(),
        egress_ip,
        network: network.as_ref().map(network::Network::observe),
    };
    let verdict = report::verdict(&facts);
    if args.keep_running {
        print!("{}", report::render(&facts, &verdict, style));
        let (url, token) = (&embedded.url, embedded.token_file.display());
        let cli = exe.display();
        // A viewer token in the URL's fragment: the page keeps it in the tab and drops it from the
        // address bar; fragments never reach the server's logs.
        let viewer = client
            .create_token(switchyard_scheduler::engine::Role::Viewer, "demo dashboard")
            .await
            .context("creating a viewer token for the dashboard")?;
        println!("\nDashboard: {url}/#token={viewer}");
        println!(
            "\nThe control plane stays up at {url} (admin token in {token}). Try:\n  \
             {cli} runs --control-plane {url} --token-file {token}\n  \
             {cli} egress audit --control-plane {url} --token-file {token}\n\
             Ctrl-C stops everything."
        );
        let mut stop = shutdown_signal();
        let _ = stop.changed().await;
        embedded.stop().await;
    } else {
        embedded.stop().await;
        print!("{}", report::render(&facts, &verdict, style));
    }
    drop(partner);
    drop(network);
    Ok(if verdict.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Empties `dir` for a new run: only a directory an earlier demo made (it holds the marker) or
/// an empty one, so that a mistyped `--dir` can never wipe anything else.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!(
                "--dir {} is a file, not a directory; pass a directory for the demo's files",
                dir.display()
            );
        }
        let empty =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by `switchyard demo`; the demo wipes its directory on every run, \
                 so pass another --dir (or remove this one yourself)",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by `switchyard demo`; wiped on its next run\n")
        .with_context(|| format!("writing into {}", dir.display()))?;
    Ok(())
}

/// The control plane's denied egress records for the fetch task, waiting up to a few seconds for
/// the worker's report.
async fn denials(client: &switchyard_scheduler::client::Client) -> anyhow::Result<Vec<AuditRecord>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records: Vec<AuditRecord> = client
            .audit(true, 100)
            .await
            .context("reading the egress audit from the control plane")?
            .into_iter()
            .filter(|r| r.task.as_deref().is_some_and(|t| t.starts_with(&format!("{}/", inputs::FETCH_JOB))))
            .collect();
        if !records.is_empty() || Instant::now() >= deadline {
            return Ok(records);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
