//! Kafka source (rdkafka): every partition of the topic, resumed from the offsets the table's own
//! `txn` actions record.
//!
//! The scheduler runs at most one attempt of a task, so the consumer assigns itself all
//! partitions (no group rebalancing can move a partition while a chunk is in flight); the group id
//! is still used, and offsets are committed to it after each chunk, so lag tools keep working —
//! but Delta is the source of truth: a restarted attempt seeks to the positions in the table.
//! Broker addresses (bootstrap and every broker in the metadata) are checked against the egress
//! policy through the gateway before the consumer connects; librdkafka opens its own sockets and
//! cannot bind a source address, so on real nodes the static egress IP for Kafka comes from host
//! routing (SNAT on the node's interface), see README.
//!
//! A message that does not decode goes to `<table>__dlq` (topic, partition, offset, error, raw
//! bytes) and the stream goes on.

mod decode;
mod replay;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use switchyard_config::FailureClass;
use switchyard_config::manifest::{KafkaSource as Spec, MessageFormat};
use switchyard_config::value::TableName;
use switchyard_gateway::dial::Target;
use switchyard_lake::{Position, TableWriter};

use crate::chunk::{Chunk, Source};
use crate::flush::Fill;
use crate::{Context, Error, Limits};
use decode::Decoder;
pub use replay::{Message, replay};

/// `<table>__dlq`: where messages that cannot be decoded go.
pub fn dead_letter_table(table: &TableName) -> TableName {
    format!("{table}__dlq").parse().unwrap_or_else(|_| table.clone())
}

/// `triggered` mode: how long a partition read up to its end must stay quiet to be done.
const END_IDLE: Duration = Duration::from_millis(300);
/// The same before the first message arrived.
const FIRST_FETCH: Duration = Duration::from_secs(3);

/// How long metadata and watermark requests may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// Where one partition stands.
#[derive(Debug, Clone, Copy)]
struct Partition {
    /// The next offset to read (what the table's position says, then what was read).
    next: i64,
    /// What the last commit point covered.
    committed: i64,
    /// Offsets below this are already in the dead-letter table.
    dead_letters_from: i64,
    /// `triggered` mode: the end offset seen at start.
    end: Option<i64>,
    /// `triggered` mode: a message past the end and newer than the start was seen; nothing
    /// more is read from this partition.
    closed: bool,
    /// The partition's first offset, to re-read from (see [`KafkaSource::next`]).
    low: i64,
    /// No message was taken since the consumer was positioned at `next`.
    fresh: bool,
    /// Re-reading from `low` after a broker served the wrong batch: ignore messages until the
    /// re-read reaches `next`.
    rereading: bool,
}

pub struct KafkaSource {
    name: String,
    topic: String,
    consumer: Arc<StreamConsumer>,
    partitions: BTreeMap<i32, Partition>,
    app_id: String,
    limits: Limits,
    continuous: bool,
    /// When the attempt started (ms since the epoch), for `triggered` mode's end.
    started_ms: i64,
    /// A message arrived since the consumer was assigned.
    received: bool,
    decoder: Decoder,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").field("name", &self.name).field("partitions", &self.partitions).finish()
    }
}

impl KafkaSource {
    pub async fn open(
        spec: &Spec,
        ctx: &Context,
        writer: &TableWriter,
        dlq: &TableWriter,
        limits: Limits,
    ) -> Result<Self, Error> {
        let brokers: Vec<String> = spec.brokers.iter().map(ToString::to_string).collect();
        let name = format!("kafka {}/{}", brokers.join(","), spec.topic);
        if spec.format == Some(MessageFormat::Avro) {
            return Err(Error::config(
                format!("{name}: Avro payloads are not supported yet"),
                "produce JSON (`format: json`), or ingest with a `run` task",
            ));
        }
        if spec.identity.is_some() {
            return Err(Error::config(
                format!("{name}: TLS to Kafka with a client identity is not supported yet"),
                "use a PLAINTEXT listener reachable from the node, or a `run` task",
            ));
        }
        for broker in &spec.brokers {
            check_egress(ctx, &broker.host.to_string(), broker.port).await?;
        }
        let group = spec.group.clone().unwrap_or_else(|| format!("switchyard-{}-{}", ctx.job, ctx.task));
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers.join(","))
            .set("group.id", &group)
            .set("client.id", format!("switchyard-{}-{}", ctx.job, ctx.task))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("queued.min.messages", "200000")
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(|e| classify(&name, &e))?;
        let consumer = Arc::new(consumer);
        // Only owned values leave the blocking call: librdkafka's metadata is not `Sync`.
        let (brokers_seen, ids) = {
            let (c, topic) = (consumer.clone(), spec.topic.clone());
            tokio::task::spawn_blocking(move || {
                c.fetch_metadata(Some(&topic), METADATA_TIMEOUT).map(|m| {
                    let brokers: Vec<(String, u16)> =
                        m.brokers().iter().map(|b| (b.host().to_owned(), b.port() as u16)).collect();
                    let ids: Option<Vec<i32>> = m
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                        .map(|t| t.partitions().iter().map(|p| p.id()).collect());
                    (brokers, ids)
                })
            })
            .await
            .map_err(|e| Error::config(e.to_string(), "report this as a bug"))?
            .map_err(|e| classify(&name, &e))?
        };
        for (host, port) in &brokers_seen {
            check_egress(ctx, host, *port).await?;
        }
        let Some(ids) = ids else {
            return Err(Error::source(
                &name,
                FailureClass::Data,
                format!("topic `{}` does not exist on the cluster", spec.topic),
                "check the topic name in the manifest, or create the topic",
            ));
        };
        let app_id = format!("{}/{}", ctx.app_id(), spec.topic);
        let mut partitions = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for id in ids {
            let key = format!("{app_id}/{id}");
            let (low, high) = {
                let (c, topic) = (consumer.clone(), spec.topic.clone());
                tokio::task::spawn_blocking(move || c.fetch_watermarks(&topic, id, METADATA_TIMEOUT))
                    .await
                    .map_err(|e| Error::config(e.to_string(), "report this as a bug"))?
                    .map_err(|e| classify(&name, &e))?
            };
            let next = writer.position(&key).await?.unwrap_or(low).max(low);
            let dead_letters_from = dlq.position(&key).await?.unwrap_or(0);
            let end = (!ctx.continuous).then_some(high);
            let fresh = next > low;
            partitions.insert(
                id,
                Partition {
                    next,
                    committed: next,
                    dead_letters_from,
                    end,
                    closed: false,
                    low,
                    fresh,
                    rereading: false,
                },
            );
            assignment
                .add_partition_offset(&spec.topic, id, Offset::Offset(next))
                .map_err(|e| classify(&name, &e))?;
        }
        consumer.assign(&assignment).map_err(|e| classify(&name, &e))?;
        tracing::info!(source = %name, group = %group, partitions = ?partitions, "Consuming.");
        Ok(KafkaSource {
            name,
            topic: spec.topic.clone(),
            consumer,
            partitions,
            app_id,
            limits,
            continuous: ctx.continuous,
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            received: false,
            decoder: Decoder::new(writer.schema(), spec.topic.clone()),
        })
    }

    /// `triggered` mode has read every partition up to its end offset seen at start.
    ///
    /// Some Kafka-protocol brokers (tansu) report an end offset below the last message, so past
    /// it reading goes on while messages are older than the start, until a newer one is seen or
    /// the partition is idle; on Kafka itself that costs one short idle wait.
    fn at_end(&self) -> bool {
        !self.continuous
            && self.partitions.values().all(|p| p.closed || p.end.is_some_and(|end| p.next >= end))
    }

    /// At the end of a `triggered` read: a partition positioned at or past the broker's end
    /// offset that never delivered a message. tansu 0.6 reports the end as the last record
    /// batch's base offset + 1 and answers a fetch inside that batch with nothing (it serves the
    /// next batch, and there is none), so messages after a position inside the last batch would
    /// never be seen. Re-read such partitions once from `end - 1` (the last batch's base on
    /// tansu; the last message on Kafka, which costs one small fetch), skipping what the table
    /// already has. Returns whether any partition is being re-read.
    async fn reread_silent_partitions(&mut self) -> Result<bool, Error> {
        let mut any = false;
        for (id, p) in &mut self.partitions {
            let Some(end) = p.end else { continue };
            if !p.fresh || p.closed || p.next < end || end <= p.low {
                continue;
            }
            p.fresh = false;
            p.rereading = true;
            any = true;
            tracing::info!(source = %self.name, partition = id, next = p.next, from = end - 1, "No message after positioning at the end; re-reading the last batch.");
            let (c, topic, id) = (self.consumer.clone(), self.topic.clone(), *id);
            tokio::task::spawn_blocking(move || {
                c.seek(&topic, id, Offset::Offset(end - 1), METADATA_TIMEOUT)
            })
            .await
            .map_err(|e| Error::config(e.to_string(), "report this as a bug"))?
            .map_err(|e| classify(&self.name, &e))?;
        }
        Ok(any)
    }

    /// A commit point for what was read since the last one.
    fn cut(&mut self) -> Result<Option<Chunk>, Error> {
        let positions: Vec<Position> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.next > p.committed)
            .map(|(id, p)| Position { app_id: format!("{}/{id}", self.app_id), version: p.next })
            .collect();
        let (batches, dead_letters) =
            self.decoder.finish().map_err(|e| Error::data(&self.name, e, "report this as a bug"))?;
        if positions.is_empty() {
            return Ok(None);
        }
        let mut offsets = TopicPartitionList::new();
        for (id, p) in &mut self.partitions {
            if p.next > p.committed {
                p.committed = p.next;
                let _ = offsets.add_partition_offset(&self.topic, *id, Offset::Offset(p.next));
            }
        }
        // Monitoring only (lag in the group); a failure here loses nothing.
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(source = %self.name, error = %e, "Could not commit offsets to the group.");
        }
        Ok(Some(Chunk { batches, positions, dead_letters }))
    }
}

impl Source for KafkaSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn next(&mut self) -> Result<Option<Chunk>, Error> {
        let mut fill = Fill::new();
        loop {
            let at_end = self.at_end();
            if at_end && self.partitions.values().all(|p| p.closed) {
                return self.cut();
            }
            if fill.full(&self.limits) {
                if let Some(chunk) = self.cut()? {
                    return Ok(Some(chunk));
                }
                fill = Fill::new();
            }
            // The first fetch after assignment (or a seek back to re-read) takes a while:
            // idleness only counts after it.
            let rereading = self.partitions.values().any(|p| p.rereading);
            let idle = if self.received && !rereading { END_IDLE } else { FIRST_FETCH };
            let wait = if at_end { idle } else { self.limits.interval.min(Duration::from_millis(500)) };
            let message = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) if at_end => {
                    if self.reread_silent_partitions().await? {
                        continue;
                    }
                    return self.cut();
                }
                Err(_) => {
                    if fill.timed_out(&self.limits) {
                        if let Some(chunk) = self.cut()? {
                            return Ok(Some(chunk));
                        }
                        fill = Fill::new();
                    }
                    continue;
                }
                Ok(Err(e)) => return Err(classify(&self.name, &e)),
                Ok(Ok(m)) => m,
            };
            self.received = true;
            let (id, offset) = (message.partition(), message.offset());
            let Some(partition) = self.partitions.get_mut(&id) else { continue };
            if offset < partition.next || partition.closed {
                partition.rereading = false;
                continue; // a duplicate delivery after a seek, or past a triggered end
            }
            if partition.rereading {
                if offset > partition.next {
                    continue; // fetched before the re-read took effect
                }
                partition.rereading = false;
            }
            // The first message after positioning must be the one asked for, unless offsets are
            // missing (compaction, transaction markers). tansu 0.6 answers a fetch that starts
            // inside a record batch with the *next* batch, silently skipping messages: re-read
            // such a partition from its start once, skipping what the table already has.
            if partition.fresh && offset > partition.next {
                partition.fresh = false;
                tracing::warn!(source = %self.name, partition = id, asked = partition.next, got = offset, "The broker skipped offsets after a seek; re-reading the partition from its start.");
                let (c, topic, low) = (self.consumer.clone(), self.topic.clone(), partition.low);
                partition.rereading = true;
                tokio::task::spawn_blocking(move || {
                    c.seek(&topic, id, Offset::Offset(low), METADATA_TIMEOUT)
                })
                .await
                .map_err(|e| Error::config(e.to_string(), "report this as a bug"))?
                .map_err(|e| classify(&self.name, &e))?;
                continue;
            }
            partition.fresh = false;
            let newer = message.timestamp().to_millis().is_some_and(|t| t > self.started_ms);
            if partition.end.is_some_and(|end| offset >= end) && newer {
                partition.closed = true;
                continue;
            }
            partition.next = offset + 1;
            let payload = message.payload().unwrap_or_default();
            fill.add(1, payload.len() as u64);
            self.decoder.push(id, offset, payload, offset >= partition.dead_letters_from);
        }
    }
}

/// Opens (and closes) a connection to `host:port` through the gateway: the policy decides, the
/// audit records it, and the path from the static egress IP is proven before librdkafka connects.
async fn check_egress(ctx: &Context, host: &str, port: u16) -> Result<(), Error> {
    let target = Target::parse(host, port)?;
    let dialed = ctx.dialer.connect(&target).await?;
    drop(dialed.stream);
    Ok(())
}

fn classify(name: &str, e: &KafkaError) -> Error {
    use RDKafkaErrorCode as C;
    let (class, hint) = match e.rdkafka_error_code() {
        Some(C::SaslAuthenticationFailed | C::Authentication | C::SSL) => {
            (FailureClass::Authentication, "check the client credentials for the brokers")
        }
        Some(C::TopicAuthorizationFailed | C::GroupAuthorizationFailed | C::ClusterAuthorizationFailed) => {
            (FailureClass::Access, "grant the consumer's principal READ on the topic and the group")
        }
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            (FailureClass::Data, "check the topic name in the manifest")
        }
        _ => (FailureClass::Connectivity, "check that the brokers are up and reachable from this node"),
    };
    Error::source(name, class, e.to_string(), hint)
}
