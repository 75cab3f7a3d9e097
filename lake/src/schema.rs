//! Tables' schemas as a person reads them in an error, and which write failures are schema
//! mismatches (a `data` problem, not a storage one).

use deltalake::DeltaTable;

/// The schema of an existing table, as a person reads it.
pub(crate) fn describe_table(t: &DeltaTable) -> String {
    t.snapshot()
        .map(|s| {
            describe(
                s.schema()
                    .fields()
                    .map(|f| (f.name().to_string(), f.data_type().to_string(), f.is_nullable())),
            )
        })
        .unwrap_or_default()
}

pub(crate) fn describe_arrow(schema: &deltalake::arrow::datatypes::Schema) -> String {
    describe(schema.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable())))
}

/// Whether a write failed because the data does not fit the table's schema.
pub(crate) fn is_schema_error(e: &deltalake::DeltaTableError) -> bool {
    use deltalake::arrow::error::ArrowError;
    match e {
        deltalake::DeltaTableError::SchemaMismatch { .. } => true,
        deltalake::DeltaTableError::Arrow { source } => {
            matches!(source, ArrowError::SchemaError(_) | ArrowError::CastError(_))
        }
        _ => false,
    }
}

/// `(id long not null, name string)`: a schema as a person reads it in an error.
fn describe(fields: impl Iterator<Item = (String, String, bool)>) -> String {
    let fields: Vec<String> = fields
        .map(|(name, ty, nullable)| format!("{name} {ty}{}", if nullable { "" } else { " not null" }))
        .collect();
    format!("({})", fields.join(", "))
}
