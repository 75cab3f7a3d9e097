//! `switchyard`: the command line. It only composes the library crates; see `cli/` for each command.

#![forbid(unsafe_code)]

mod agent;
mod cli;

/// mimalloc: the planner and the engine allocate many small objects; it is measurably faster here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any library opens a TLS connection on rustls' process-wide default (tiberius,
    // object stores, kube), which would panic with two providers compiled in and none chosen.
    switchyard_config::tls::install_provider();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        // `switchyard plan --json | head` is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}
