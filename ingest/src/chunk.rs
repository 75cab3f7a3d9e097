//! The source trait and what it yields.

use std::future::Future;

use switchyard_lake::Position;
use switchyard_lake::arrow::record_batch::RecordBatch;

use crate::Error;

/// Rows read from a source, and where they end.
#[derive(Debug, Default)]
pub struct Chunk {
    pub batches: Vec<RecordBatch>,
    /// Set at a commit point: the positions everything up to here covers (one per Kafka
    /// partition; one for a watermark or page). Empty: more rows of the same commit follow.
    pub positions: Vec<Position>,
    /// Kafka messages that could not be decoded, for `<table>__dlq`.
    pub dead_letters: Option<RecordBatch>,
}

impl Chunk {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

/// A source of rows. `next` yields chunks until the source is exhausted (`None`); a continuous
/// source never is, and is stopped by dropping it.
pub trait Source: Send {
    /// Short name for logs and errors, e.g. `postgres db01:5432/claims`.
    fn name(&self) -> String;

    fn next(&mut self) -> impl Future<Output = Result<Option<Chunk>, Error>> + Send;
}
