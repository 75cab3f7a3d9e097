//! `switchyard lake`: the lake root from this machine's point of view — `check` probes it stage
//! by stage, `optimize` compacts a table's small files, `vacuum` deletes the files no retained
//! version needs. All three read `[lake]` from the settings (and the environment), as the
//! control plane, nodes and workers do.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchyard_config::value::{Duration as HumanDuration, TableName};
use switchyard_lake::Lake;

use super::inputs::load_inputs;
use super::render::Style;

#[derive(Debug, Subcommand)]
pub(crate) enum LakeCommand {
    /// Probe the lake root from here: resolve, list, put, conditional put refused over an
    /// existing key, read back, delete. Exit 1 naming the first stage that fails.
    Check(LakeArgs),
    /// Compact TABLE's small files into larger ones (optionally Z-ordered by columns).
    Optimize {
        /// The table, e.g. bronze.claims (`_switchyard.event_log` for the event log).
        table: TableName,
        /// Z-order by these columns instead of plain compaction.
        #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
        zorder: Vec<String>,
        #[command(flatten)]
        args: LakeArgs,
    },
    /// Delete TABLE's files that no version within the retention references.
    Vacuum {
        table: TableName,
        /// Keep every file a version younger than this needs (time travel and slow readers).
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        retain: HumanDuration,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        args: LakeArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LakeArgs {
    /// Settings file (TOML) with `[lake]`. Default: ./switchyard.toml if it exists.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
}

fn open(args: &LakeArgs) -> anyhow::Result<Lake> {
    let inputs = load_inputs(args.settings.clone(), None, vec![])?;
    let lake = &inputs.settings.settings.lake;
    Lake::from_settings(lake)
        .with_context(|| format!("opening the lake at {}", switchyard_lake::redact_url(&lake.root)))
}

pub(crate) async fn run(command: LakeCommand) -> anyhow::Result<ExitCode> {
    match command {
        LakeCommand::Check(args) => check(&args).await,
        LakeCommand::Optimize { table, zorder, args } => {
            let lake = open(&args)?;
            eprintln!("optimizing {table} at {}…", lake.location(&table));
            let done = lake.optimize(&table, &zorder).await.map_err(|e| located(e, &table))?;
            println!(
                "{table}: {} small files rewritten into {}; table version {}",
                done.files_removed, done.files_added, done.table_version
            );
            Ok(ExitCode::SUCCESS)
        }
        LakeCommand::Vacuum { table, retain, dry_run, args } => {
            let lake = open(&args)?;
            let done = lake.vacuum(&table, retain.as_std(), dry_run).await.map_err(|e| located(e, &table))?;
            let verb = if done.dry_run { "would delete" } else { "deleted" };
            for file in &done.files {
                println!("{verb} {file}");
            }
            println!("{table}: {verb} {} files older than the {retain} retention", done.files.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn located(e: switchyard_lake::Error, table: &TableName) -> anyhow::Error {
    anyhow::anyhow!("{table}: {e} [{}]\nhint: {}", e.class(), e.hint())
}

async fn check(args: &LakeArgs) -> anyhow::Result<ExitCode> {
    let lake = open(args)?;
    let style = Style::detect(std::io::stdout().is_terminal());
    println!("lake root {}", switchyard_lake::redact_url(lake.root().as_str()));
    let stages = lake.check().await;
    for stage in &stages {
        if stage.ok {
            println!(
                "{}    {:<16} {} ({})",
                style.paint_pub("32", "ok"),
                stage.name,
                stage.what,
                stage.detail
            );
        } else {
            let class = stage.failure.map(|f| f.class().to_string()).unwrap_or_else(|| "storage".to_owned());
            println!("{}  {:<16} {}", style.paint_pub("1;31", "FAIL"), stage.name, stage.what);
            println!("      {class}: {}", stage.detail);
            if let Some(hint) = &stage.hint {
                println!("      hint: {hint}");
            }
        }
    }
    match stages.iter().find(|s| !s.ok) {
        Some(failed) => {
            println!("lake check failed at stage `{}`", failed.name);
            Ok(ExitCode::from(1))
        }
        None => {
            println!("lake check passed: {} stages", stages.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
