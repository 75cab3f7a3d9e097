use std::process::ExitCode;

use switchyard_config::{SchemaKind, json_schema};

use super::SchemaArg;

pub(super) fn print(kind: SchemaArg) -> anyhow::Result<ExitCode> {
    let kind = match kind {
        SchemaArg::Manifest => SchemaKind::Manifest,
        SchemaArg::Egress => SchemaKind::Egress,
        SchemaArg::Settings => SchemaKind::Settings,
    };
    println!("{}", serde_json::to_string_pretty(&json_schema(kind))?);
    Ok(ExitCode::SUCCESS)
}
