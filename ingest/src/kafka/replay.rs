//! Messages already in memory, read the way [`KafkaSource`](super::KafkaSource) reads a topic:
//! the same decoder, commit points, positions (`<app id>/<topic>/<partition>` → next offset) and
//! dead letters, with no broker in between.
//!
//! Why it exists: the Kafka path's throughput is bounded by the broker and librdkafka as much as
//! by what Switchyard does with a message. Replaying captured messages measures the consumer
//! path's own ceiling (decode + Parquet encode + Delta commit), and positions already in the
//! table are honoured, so a replay resumes exactly like a consumer would.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_config::value::TableName;
use switchyard_lake::{Position, TableWriter, WriteMode};

use super::decode::Decoder;
use crate::chunk::{Chunk, Source};
use crate::flush::Fill;
use crate::run::{Progress, Summary, drive};
use crate::{Context, Error, Limits};

/// One message as a consumer would receive it.
#[derive(Debug, Clone)]
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

struct Replay {
    name: String,
    app_id: String,
    /// Consumed from the back (messages are reversed once, in partition-interleaved order).
    messages: Vec<Message>,
    /// Partition → (next offset to take, what the last commit point covered).
    positions: BTreeMap<i32, (i64, i64)>,
    dead_letters_from: BTreeMap<i32, i64>,
    limits: Limits,
    decoder: Decoder,
}

impl Replay {
    fn cut(&mut self) -> Result<Option<Chunk>, Error> {
        let positions: Vec<Position> = self
            .positions
            .iter_mut()
            .filter(|(_, (next, committed))| next > committed)
            .map(|(id, (next, committed))| {
                *committed = *next;
                Position { app_id: format!("{}/{id}", self.app_id), version: *next }
            })
            .collect();
        let (batches, dead_letters) =
            self.decoder.finish().map_err(|e| Error::data(&self.name, e, "report this as a bug"))?;
        if positions.is_empty() {
            return Ok(None);
        }
        Ok(Some(Chunk { batches, positions, dead_letters }))
    }
}

impl Source for Replay {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn next(&mut self) -> Result<Option<Chunk>, Error> {
        let mut fill = Fill::new();
        while let Some(m) = self.messages.pop() {
            let Some((next, _)) = self.positions.get_mut(&m.partition) else { continue };
            if m.offset < *next {
                continue; // already in the table
            }
            *next = m.offset + 1;
            fill.add(1, m.payload.len() as u64);
            let new_letter = m.offset >= self.dead_letters_from.get(&m.partition).copied().unwrap_or(0);
            self.decoder.push(m.partition, m.offset, &m.payload, new_letter);
            if fill.full(&self.limits) {
                return self.cut();
            }
        }
        self.cut()
    }
}

/// Ingests `messages` of `topic` into `sink_table` (append) exactly as a triggered Kafka task
/// would, resuming from the positions the table already holds; undecodable messages go to
/// `<table>__dlq`.
pub async fn replay(
    topic: &str,
    messages: Vec<Message>,
    sink_table: &TableName,
    limits: Limits,
    ctx: &Context,
    progress: Arc<dyn Progress>,
) -> Result<Summary, Error> {
    let writer: TableWriter = ctx.lake.writer(sink_table, WriteMode::Append).await?;
    let dlq_table = super::dead_letter_table(sink_table);
    let dlq = ctx.lake.writer(&dlq_table, WriteMode::Append).await?;
    let app_id = format!("{}/{topic}", ctx.app_id());
    let mut positions = BTreeMap::new();
    let mut dead_letters_from = BTreeMap::new();
    for m in &messages {
        if positions.contains_key(&m.partition) {
            continue;
        }
        let key = format!("{app_id}/{}", m.partition);
        let next = writer.position(&key).await?.unwrap_or(0);
        positions.insert(m.partition, (next, next));
        dead_letters_from.insert(m.partition, dlq.position(&key).await?.unwrap_or(0));
    }
    let mut messages = messages;
    messages.reverse();
    let source = Replay {
        name: format!("replay {topic}"),
        app_id,
        messages,
        positions,
        dead_letters_from,
        limits,
        decoder: Decoder::new(writer.schema(), topic.to_owned()),
    };
    drive(source, writer, Some((dlq, dlq_table)), sink_table, progress).await
}
