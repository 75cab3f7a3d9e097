//! The inputs a long-running command needs clean before it starts: the settings and the egress
//! policy (and manifests, for some), every problem printed with its location at once.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::bail;
use switchyard_config::{Inputs, LoadOptions};

use super::render::{Style, render_errors};

/// Loads settings (and a policy) and refuses to go on if they have errors, printing them all.
pub(crate) fn load_inputs(
    settings: Option<PathBuf>,
    egress: Option<PathBuf>,
    paths: Vec<PathBuf>,
) -> anyhow::Result<Inputs> {
    let options = LoadOptions { paths, settings, egress, env: None, inline: vec![] };
    let inputs = switchyard_config::load(&options)?;
    let relevant: Vec<_> = inputs.diagnostics.iter().map(switchyard_scheduler::PlanError::from).collect();
    if !relevant.is_empty() {
        eprint!("{}", render_errors(&relevant, Style::detect(std::io::stderr().is_terminal())));
        bail!(
            "{} error(s) in the inputs; fix them first (`switchyard validate` shows the same)",
            relevant.len()
        );
    }
    Ok(inputs)
}
