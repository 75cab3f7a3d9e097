//! Command definitions (clap) and dispatch. Exit codes (DESIGN §4.6): 0 success, 1 the thing
//! checked or run failed, 2 usage or I/O error.

mod check;
mod render;
mod schema;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Hybrid compute scheduler and connectivity gateway for data platforms"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests, egress policy and settings; report every problem with FILE:LINE:COL.
    ///
    /// Exit 0 when valid, 1 when not, 2 on usage or I/O errors. Reads only the files given: no
    /// network, no key files, no state store.
    Validate(InputArgs),
    /// Show where every task will run and why: class, compute, pool, egress IPs, dependencies.
    ///
    /// Exit 0 when every task is placeable, 1 otherwise, 2 on usage or I/O errors.
    Plan {
        #[command(flatten)]
        inputs: InputArgs,
        /// Print the plan as JSON (the documented `plan --json` contract).
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of a file format, for editor validation and completion.
    Schema {
        #[arg(value_enum)]
        kind: SchemaArg,
    },
}

#[derive(Debug, Args)]
struct InputArgs {
    /// Settings file (TOML). Default: ./switchyard.toml if it exists, else built-in defaults.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Egress policy (YAML). Default: ./egress.yaml if it exists, else an empty policy (deny all).
    #[arg(long, value_name = "FILE")]
    egress: Option<PathBuf>,
    /// Manifest files or directories (searched for *.yaml and *.yml).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaArg {
    Manifest,
    Egress,
    Settings,
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(inputs) => check::validate(&inputs),
        Command::Plan { inputs, json } => check::plan_cmd(&inputs, json),
        Command::Schema { kind } => schema::print(kind),
    }
}
