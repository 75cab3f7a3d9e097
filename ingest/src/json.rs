//! JSON records to Arrow (arrow-json), shared by the Kafka and HTTPS sources: the schema comes
//! from the manifest, else from the existing table (so a restarted task decodes exactly as
//! before), else it is inferred from the first records seen (every column nullable).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::json::ReaderBuilder;
use arrow::json::reader::infer_json_schema_from_iterator;
use arrow::record_batch::RecordBatch;
use switchyard_config::manifest::{Column, ColumnType};

/// The Arrow schema of declared columns.
pub(crate) fn declared(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                let ty = match c.data_type {
                    ColumnType::String => DataType::Utf8,
                    ColumnType::Int32 => DataType::Int32,
                    ColumnType::Int64 => DataType::Int64,
                    ColumnType::Float64 => DataType::Float64,
                    ColumnType::Boolean => DataType::Boolean,
                    ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    ColumnType::Date => DataType::Date32,
                };
                Field::new(&c.name, ty, c.nullable.unwrap_or(true))
            })
            .collect::<Vec<_>>(),
    ))
}

/// A schema inferred from records (objects); every field nullable, since later records may omit it.
pub(crate) fn infer(records: &[serde_json::Value]) -> Result<SchemaRef, String> {
    let schema = infer_json_schema_from_iterator(records.iter().map(Ok)).map_err(|e| e.to_string())?;
    Ok(nullable(&schema))
}

/// `schema` with every field nullable.
pub(crate) fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
    ))
}

/// Records (already parsed) into one batch.
pub(crate) fn decode_values(
    schema: &SchemaRef,
    records: &[serde_json::Value],
) -> Result<RecordBatch, String> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(records.len().max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(records).map_err(|e| e.to_string())?;
    Ok(decoder.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// Raw JSON objects (one per message or line) into one batch; `Err((index, reason))` names the
/// first record that does not decode, so the caller can set it aside and retry the rest.
pub(crate) fn decode_slices(schema: &SchemaRef, records: &[&[u8]]) -> Result<RecordBatch, (usize, String)> {
    let build = || {
        ReaderBuilder::new(schema.clone())
            .with_batch_size(records.len().max(1))
            .build_decoder()
            .map_err(|e| (0, e.to_string()))
    };
    let mut decoder = build()?;
    for (i, record) in records.iter().enumerate() {
        if let Err(reason) = check_object(record) {
            return Err((i, reason));
        }
        if let Err(e) = decoder.decode(record) {
            // Find which record it was, on a fresh decoder (the failed one's state is spent).
            return Err(first_bad(schema, records).unwrap_or((i, e.to_string())));
        }
    }
    match decoder.flush() {
        Ok(batch) => Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()))),
        Err(e) => Err(first_bad(schema, records).unwrap_or((records.len().saturating_sub(1), e.to_string()))),
    }
}

/// The first record that does not decode on its own.
fn first_bad(schema: &SchemaRef, records: &[&[u8]]) -> Option<(usize, String)> {
    records.iter().enumerate().find_map(|(i, record)| {
        let mut d = ReaderBuilder::new(schema.clone()).build_decoder().ok()?;
        let result = check_object(record).and_then(|()| {
            d.decode(record).map_err(|e| e.to_string())?;
            d.flush().map(|_| ()).map_err(|e| e.to_string())
        });
        result.err().map(|e| (i, e))
    })
}

/// One complete JSON object — the tape decoder would otherwise join a truncated record with the
/// next one, or read a bare scalar as an error only at flush.
fn check_object(record: &[u8]) -> Result<(), String> {
    let start = record.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_none_or(|s| record[s] != b'{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(record)
        .map(|_| ())
        .map_err(|e| format!("invalid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bad_record_and_decodes_the_rest() {
        let schema = nullable(&Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let good: Vec<&[u8]> = vec![br#"{"id": 1, "name": "a"}"#, br#"{"id": 2}"#];
        assert_eq!(decode_slices(&schema, &good).unwrap().num_rows(), 2);
        for bad in [&br#"{"id": 1"#[..], b"42", br#"{"id": "x"}"#, b"\xff\xfe"] {
            let records: Vec<&[u8]> = vec![good[0], bad, good[1]];
            let (i, reason) = decode_slices(&schema, &records).unwrap_err();
            assert_eq!(i, 1, "{reason}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn infers_nullable_columns() {
        let records: Vec<serde_json::Value> =
            vec![serde_json::json!({"id": 1, "ok": true}), serde_json::json!({"id": 2, "score": 1.5})];
        let schema = infer(&records).unwrap();
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
        let batch = decode_values(&schema, &records).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), 3);
    }
}
