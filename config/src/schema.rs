//! JSON Schemas of the three file formats, generated from the same types that read them, so the
//! editor's view and the parser's can never disagree.

use crate::egress::EgressPolicy;
use crate::manifest::Manifest;
use crate::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    Manifest,
    Egress,
    Settings,
}

pub fn json_schema(kind: SchemaKind) -> serde_json::Value {
    let schema = match kind {
        SchemaKind::Manifest => schemars::schema_for!(Manifest),
        SchemaKind::Egress => schemars::schema_for!(EgressPolicy),
        SchemaKind::Settings => schemars::schema_for!(Settings),
    };
    schema.to_value()
}
