//! `validate` and `plan`: load the inputs, plan, print, choose the exit code.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use switchyard_config::{Inputs, LoadOptions, load};
use switchyard_scheduler::plan;

use super::InputArgs;
use super::render::{Style, render_errors, render_plan, summary};

fn load_inputs(args: &InputArgs) -> anyhow::Result<Inputs> {
    let options = LoadOptions {
        paths: args.paths.clone(),
        settings: args.settings.clone(),
        egress: args.egress.clone(),
        env: None,
        inline: vec![],
    };
    Ok(load(&options)?)
}

pub(super) fn validate(args: &InputArgs) -> anyhow::Result<ExitCode> {
    let inputs = load_inputs(args)?;
    let planned = plan(&inputs);
    let style = Style::detect(std::io::stderr().is_terminal());
    let mut err = std::io::stderr().lock();
    for note in &inputs.notes {
        writeln!(err, "note: {note}")?;
    }
    write!(err, "{}", render_errors(&planned.errors, style))?;
    let tasks: usize = planned.jobs.iter().map(|j| j.tasks.len()).sum();
    if planned.is_ok() {
        println!("ok: {} jobs, {tasks} tasks in {} files are valid", planned.jobs.len(), inputs.files.len());
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(err, "{}", summary(&planned))?;
        Ok(ExitCode::from(1))
    }
}

pub(super) fn plan_cmd(args: &InputArgs, json: bool) -> anyhow::Result<ExitCode> {
    let inputs = load_inputs(args)?;
    let planned = plan(&inputs);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &planned).context("writing the plan")?;
        writeln!(out)?;
    } else {
        let style = Style::detect(std::io::stdout().is_terminal());
        write!(out, "{}", render_plan(&planned, style))?;
        let err_style = Style::detect(std::io::stderr().is_terminal());
        let mut err = std::io::stderr().lock();
        for note in &inputs.notes {
            writeln!(err, "note: {note}")?;
        }
        write!(err, "{}", render_errors(&planned.errors, err_style))?;
        writeln!(out, "{}", summary(&planned))?;
    }
    Ok(if planned.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
