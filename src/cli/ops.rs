//! Commands that talk to a running control plane: submit, runs, cancel, token.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchyard_scheduler::Error as SchedulerError;
use switchyard_scheduler::api::types::{ManifestFile, SubmitRequest};
use switchyard_scheduler::engine::{Role, RunState};

use super::ClientArgs;
use super::control::client_for;
use super::render::{Style, render_errors};
use super::summary::render_runs;

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// Manifest files or directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Register the jobs without starting runs (scheduled jobs then run on their schedule).
    #[arg(long, conflicts_with_all = ["full_refresh", "select"])]
    no_run: bool,
    /// Rebuild transform outputs from scratch instead of processing only new input versions.
    #[arg(long)]
    full_refresh: bool,
    /// Run only the tasks that write TABLE (e.g. silver.claims); repeat for several tables.
    #[arg(long, value_name = "TABLE")]
    select: Vec<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// Only runs of this job.
    #[arg(long)]
    job: Option<String>,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 10)]
    limit: i64,
    /// Only runs unfinished or finished within this long (7d, 24h): the runs `switchyard cost
    /// --since` counts (raise --limit to see them all).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The run id (or, with --task, the task run id) shown by `switchyard runs`.
    id: i64,
    /// Cancel one task run (and the tasks waiting for it) instead of a whole run.
    #[arg(long)]
    task: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        #[arg(long, value_parser = ["viewer", "operator", "node", "admin"])]
        role: String,
        /// Who or what the token is for.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Reads manifest files for submission, in the order `plan` would.
pub(crate) fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<ManifestFile>> {
    let mut files = Vec::new();
    for path in paths {
        let mut found = Vec::new();
        if path.is_dir() {
            collect(path, &mut found)?;
        } else {
            found.push(path.clone());
        }
        for file in found {
            let absolute = std::path::absolute(&file)?;
            let content =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            files.push(ManifestFile { path: absolute.display().to_string(), content });
        }
    }
    Ok(files)
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

pub(crate) async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (client, _) = client_for(&args.client)?;
    let manifests = read_manifests(&args.paths)?;
    let request = SubmitRequest {
        manifests,
        run: !args.no_run,
        full_refresh: args.full_refresh,
        select: args.select.clone(),
    };
    match client.submit(&request).await {
        Ok(response) => {
            for job in response.jobs {
                match job.run {
                    Some(run) => println!("submitted {} ({} tasks): run {run}", job.job, job.tasks.len()),
                    None if !args.select.is_empty() && !args.no_run => println!(
                        "registered {} ({} tasks); not run: none of its tasks writes a selected table",
                        job.job,
                        job.tasks.len()
                    ),
                    None => println!("registered {} ({} tasks)", job.job, job.tasks.len()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(SchedulerError::Api { code, message, hint, .. }) if code == "unknown_table" => {
            eprintln!("error: {message}\n  hint: {hint}\nnothing was submitted");
            Ok(ExitCode::from(2))
        }
        Err(SchedulerError::Rejected { errors }) => {
            eprint!("{}", render_errors(&errors, Style::detect(std::io::stderr().is_terminal())));
            eprintln!("the control plane rejected the manifests: {} error(s)", errors.len());
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let (client, _) = client_for(&args.client)?;
    let runs = client.runs_since(args.job.as_deref(), args.since.as_deref(), args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        println!("no runs yet");
    } else {
        print!("{}", render_runs(&runs, Style::detect(std::io::stdout().is_terminal())));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let (client, _) = client_for(&args.client)?;
    if args.task {
        client.cancel_task(args.id).await?;
        println!("cancelled task run {} (and the tasks waiting for it)", args.id);
    } else {
        let run = client.cancel_run(args.id).await?;
        println!("run {} is {}", run.id, run.state.as_str());
        if run.state != RunState::Cancelled {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { role, name, client } => {
            let (client, _) = client_for(&client)?;
            let role = Role::parse(&role).context("role")?;
            let token = client.create_token(role, &name).await?;
            println!("{token}");
            eprintln!("a {} token for {name}: shown once, stored only as a hash", role.as_str());
            Ok(ExitCode::SUCCESS)
        }
    }
}
