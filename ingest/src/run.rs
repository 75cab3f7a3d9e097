//! Driving a source into its table: the source reads ahead on its own task while the previous
//! chunk is encoded and committed, so network, decoding and Parquet encoding overlap.

use std::sync::Arc;
use std::time::Instant;

use switchyard_config::manifest::{SinkSpec, Source as SourceSpec, WriteMode as SinkMode};
use switchyard_config::value::TableName;
use switchyard_gateway::dial::Dialer;
use switchyard_lake::{Lake, TableWriter, WriteMode};
use tokio::sync::mpsc;

use crate::chunk::{Chunk, Source};
use crate::{Error, Limits, https, kafka, postgres, sqlserver};

/// Where an ingestion runs and writes.
#[derive(Debug, Clone)]
pub struct Context {
    pub lake: Lake,
    /// The node's gateway dialer: the only way to open a socket to the source.
    pub dialer: Dialer,
    pub job: String,
    pub task: String,
    /// The run this attempt belongs to; positions of loads that are not incremental are scoped
    /// to it, so a retry resumes the run while the next run starts afresh.
    pub run: i64,
    /// `continuous` mode: keep reading until stopped (Kafka).
    pub continuous: bool,
}

impl Context {
    /// The app id prefix of this task's positions in the table's `txn` actions.
    pub fn app_id(&self) -> String {
        format!("switchyard/{}/{}", self.job, self.task)
    }
}

/// Where progress goes (the node agent forwards it to the control plane).
pub trait Progress: Send + Sync {
    /// Rows read so far in this attempt and the recent rate.
    fn rows(&self, total: u64, per_second: f64);
    /// A Delta version was committed.
    fn committed(&self, table: &TableName, version: u64, rows: u64);
}

/// What an attempt did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub rows: u64,
    pub commits: u64,
    pub dead_letters: u64,
    /// The table's version after the last commit of this attempt.
    pub table_version: Option<u64>,
    pub seconds: f64,
}

impl Summary {
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.rows as f64 / self.seconds } else { 0.0 }
    }
}

/// Ingests `source` into `sink` until the source is exhausted (or forever, for a continuous
/// source; cancel by dropping the future).
pub async fn run(
    source: &SourceSpec,
    sink: &SinkSpec,
    ctx: &Context,
    progress: Arc<dyn Progress>,
) -> Result<Summary, Error> {
    let mode = match sink.mode.unwrap_or_default() {
        SinkMode::Append => WriteMode::Append,
        SinkMode::Overwrite => WriteMode::Overwrite,
        SinkMode::Merge => {
            return Err(Error::config(
                format!("sink {}: ingestion writes `append` or `overwrite`, not `merge`", sink.table),
                "ingest with `mode: append` into a bronze table and merge in a transform",
            ));
        }
    };
    let limits = Limits::from_manifest(sink.flush.as_ref());
    let writer = ctx.lake.writer(&sink.table, mode).await?;
    match source {
        SourceSpec::Postgres(spec) => {
            let s = postgres::PostgresSource::open(spec, ctx, &writer, mode, limits).await?;
            drive(s, writer, None, &sink.table, progress).await
        }
        SourceSpec::Sqlserver(spec) => {
            let s = sqlserver::SqlServerSource::open(spec, ctx, &writer, mode, limits).await?;
            drive(s, writer, None, &sink.table, progress).await
        }
        SourceSpec::Https(spec) => {
            let s = https::HttpsSource::open(spec, ctx, &writer, mode, limits).await?;
            drive(s, writer, None, &sink.table, progress).await
        }
        SourceSpec::Kafka(spec) => {
            let dlq_table = kafka::dead_letter_table(&sink.table);
            let dlq = ctx.lake.writer(&dlq_table, WriteMode::Append).await?;
            let s = kafka::KafkaSource::open(spec, ctx, &writer, &dlq, limits).await?;
            drive(s, writer, Some((dlq, dlq_table)), &sink.table, progress).await
        }
    }
}

/// Chunks read ahead of the commit in progress. Two keep the source busy while one commits
/// without holding more than a few chunks of rows in memory.
const READ_AHEAD: usize = 2;

pub(crate) async fn drive<S: Source + 'static>(
    mut source: S,
    mut writer: TableWriter,
    mut dlq: Option<(TableWriter, TableName)>,
    table: &TableName,
    progress: Arc<dyn Progress>,
) -> Result<Summary, Error> {
    let name = source.name();
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Result<Chunk, Error>>(READ_AHEAD);
    let reader = tokio::spawn(async move {
        loop {
            match source.next().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let _abort = AbortOnDrop(reader);
    let mut summary = Summary::default();
    let mut read = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        read += chunk.rows();
        let elapsed = started.elapsed().as_secs_f64();
        progress.rows(read, if elapsed > 0.0 { read as f64 / elapsed } else { 0.0 });
        for batch in chunk.batches {
            writer.write(batch).await?;
        }
        if let (Some(letters), Some((dlq, _))) = (chunk.dead_letters, dlq.as_mut()) {
            summary.dead_letters += letters.num_rows() as u64;
            dlq.write(letters).await?;
        }
        if chunk.positions.is_empty() {
            continue;
        }
        // Dead letters first: the source skips letters already in the dead-letter table, while
        // the main table's positions decide where reading resumes. An attempt that died between
        // the two commits left the dead-letter table ahead for some positions: leave those out.
        if let Some((dlq, dlq_table)) = dlq.as_mut() {
            let c = dlq.commit_past(&chunk.positions).await?;
            if !c.skipped {
                progress.committed(dlq_table, c.table_version, c.rows);
            }
        }
        let c = writer.commit(&chunk.positions).await?;
        if !c.skipped {
            summary.commits += 1;
            summary.rows += c.rows;
            summary.table_version = Some(c.table_version);
            progress.committed(table, c.table_version, c.rows);
            tracing::info!(source = %name, table = %table, version = c.table_version, rows = c.rows, "Committed.");
        }
    }
    if writer.pending_rows() > 0 {
        return Err(Error::data(
            name,
            format!("{} rows were read after the last commit point and not committed", writer.pending_rows()),
            "this is a bug in the source: it must end with a commit point",
        ));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
