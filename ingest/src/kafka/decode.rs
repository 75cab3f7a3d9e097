//! Messages of one chunk to Arrow: JSON payloads decoded in one pass, with `_kafka_partition` and
//! `_kafka_offset` columns (the row's identity in the topic); what does not decode becomes a dead
//! letter instead of stopping the stream.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int32Builder, Int64Array, Int64Builder, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::json;

const PARTITION: &str = "_kafka_partition";
const OFFSET: &str = "_kafka_offset";
/// Messages sampled to infer a schema when the table does not exist yet.
const INFER_SAMPLE: usize = 1_000;

#[derive(Debug)]
pub(crate) struct Decoder {
    topic: String,
    /// The payload schema (the table's, without the `_kafka_*` columns), once known.
    schema: Option<SchemaRef>,
    arena: Vec<u8>,
    spans: Vec<(usize, usize)>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    /// Whether a message that fails to decode is new to the dead-letter table.
    new_letter: Vec<bool>,
}

impl Decoder {
    pub(crate) fn new(table: Option<SchemaRef>, topic: String) -> Self {
        let schema = table.map(|s| {
            Arc::new(Schema::new(
                s.fields().iter().filter(|f| !f.name().starts_with("_kafka_")).cloned().collect::<Vec<_>>(),
            ))
        });
        Decoder {
            topic,
            schema,
            arena: Vec::new(),
            spans: Vec::new(),
            partitions: Vec::new(),
            offsets: Vec::new(),
            new_letter: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, partition: i32, offset: i64, payload: &[u8], new_letter: bool) {
        let start = self.arena.len();
        self.arena.extend_from_slice(payload);
        self.spans.push((start, self.arena.len()));
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.new_letter.push(new_letter);
    }

    /// Decodes everything pushed since the last call: the rows, and the dead letters.
    pub(crate) fn finish(&mut self) -> Result<(Vec<RecordBatch>, Option<RecordBatch>), String> {
        if self.spans.is_empty() {
            return Ok((vec![], None));
        }
        let records: Vec<&[u8]> = self.spans.iter().map(|&(s, e)| &self.arena[s..e]).collect();
        if self.schema.is_none() {
            let sample: Vec<serde_json::Value> = records
                .iter()
                .filter_map(|r| serde_json::from_slice::<serde_json::Value>(r).ok())
                .filter(serde_json::Value::is_object)
                .take(INFER_SAMPLE)
                .collect();
            if !sample.is_empty() {
                self.schema = Some(json::infer(&sample)?);
            }
        }
        let mut good: Vec<usize> = (0..records.len()).collect();
        let mut letters: Vec<(usize, String)> = Vec::new();
        let mut batches = Vec::new();
        match &self.schema {
            None => letters.extend(good.drain(..).map(|i| (i, "not a JSON object".to_owned()))),
            Some(schema) => loop {
                let slices: Vec<&[u8]> = good.iter().map(|&i| records[i]).collect();
                match json::decode_slices(schema, &slices) {
                    Ok(batch) => {
                        if batch.num_rows() > 0 {
                            batches.push(with_identity(&batch, &good, &self.partitions, &self.offsets)?);
                        }
                        break;
                    }
                    Err((bad, reason)) => letters.push((good.remove(bad), reason)),
                }
                if good.is_empty() {
                    break;
                }
            },
        }
        let dead = self.dead_letters(&records, &letters)?;
        self.arena.clear();
        self.spans.clear();
        self.partitions.clear();
        self.offsets.clear();
        self.new_letter.clear();
        Ok((batches, dead))
    }

    fn dead_letters(
        &self,
        records: &[&[u8]],
        letters: &[(usize, String)],
    ) -> Result<Option<RecordBatch>, String> {
        let letters: Vec<&(usize, String)> = letters.iter().filter(|(i, _)| self.new_letter[*i]).collect();
        if letters.is_empty() {
            return Ok(None);
        }
        let mut topic = StringBuilder::new();
        let mut partition = Int32Builder::new();
        let mut offset = Int64Builder::new();
        let mut error = StringBuilder::new();
        let mut payload = BinaryBuilder::new();
        for (i, why) in letters {
            topic.append_value(&self.topic);
            partition.append_value(self.partitions[*i]);
            offset.append_value(self.offsets[*i]);
            error.append_value(why);
            payload.append_value(records[*i]);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(error.finish()),
            Arc::new(payload.finish()),
        ];
        RecordBatch::try_new(dead_letter_schema(), columns).map(Some).map_err(|e| e.to_string())
    }
}

/// The dead-letter table's columns.
pub(crate) fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]))
}

/// `batch` with the partition and offset of each of its rows (`rows` index the chunk's messages).
fn with_identity(
    batch: &RecordBatch,
    rows: &[usize],
    partitions: &[i32],
    offsets: &[i64],
) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(PARTITION, DataType::Int32, false));
    fields.push(Field::new(OFFSET, DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int32Array::from_iter_values(rows.iter().map(|&i| partitions[i]))));
    columns.push(Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| offsets[i]))));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_messages_become_letters_and_the_rest_rows() {
        let mut d = Decoder::new(None, "t".into());
        d.push(0, 10, br#"{"id": 1, "name": "a"}"#, true);
        d.push(0, 11, b"not json", true);
        d.push(1, 6, br#"{"id": 3}"#, true);
        d.push(1, 7, b"[1]", false); // already in the dead-letter table
        let (batches, dead) = d.finish().unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 2);
        let dead = dead.unwrap();
        assert_eq!(dead.num_rows(), 1, "the letter already written is not written again");
        assert_eq!(batches[0].schema().field(batches[0].num_columns() - 1).name(), OFFSET);
        // The schema stays: the next chunk decodes the same way, a wrong type is a letter.
        d.push(0, 12, br#"{"id": 4, "extra": true}"#, true);
        d.push(1, 8, br#"{"id": "two"}"#, true);
        let (batches, dead) = d.finish().unwrap();
        assert_eq!(batches[0].num_rows(), 1);
        let dead = dead.unwrap();
        let offsets = dead.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(offsets.values().to_vec(), vec![8]);
    }
}
