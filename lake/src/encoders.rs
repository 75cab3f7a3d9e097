//! Parquet encoding for a staged write, on more than one core when the output is wide. Encoding
//! is CPU-bound and one file is encoded by one thread, so a single writer caps a wide output at
//! one core (measured: 14 of 15 s of a 96M-row copy were encoding). A second lane, with its own
//! files, is opened only when the first cannot keep up (its queue is full); small outputs stay in
//! one file.

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::Add;
use deltalake::logstore::ObjectStoreRef;
use deltalake::{DeltaResult, DeltaTableError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches waiting per lane: enough to keep its encoder busy, little to hold.
const QUEUE: usize = 2;

pub(crate) struct Encoders {
    store: ObjectStoreRef,
    config: WriterConfig,
    lanes: Vec<Lane>,
    max_lanes: usize,
    next: usize,
}

struct Lane {
    queue: mpsc::Sender<RecordBatch>,
    encoder: JoinHandle<DeltaResult<Vec<Add>>>,
}

impl Encoders {
    pub(crate) fn new(store: ObjectStoreRef, config: WriterConfig) -> Encoders {
        let max_lanes = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        Encoders { store, config, lanes: Vec::new(), max_lanes, next: 0 }
    }

    /// Hands `batch` to a lane: the next one with room, a new one when all are full and another
    /// core is free, else waits for the next in turn.
    pub(crate) async fn write(&mut self, batch: RecordBatch) -> DeltaResult<()> {
        let mut batch = batch;
        for offset in 0..self.lanes.len() {
            let i = (self.next + offset) % self.lanes.len();
            match self.lanes[i].queue.try_send(batch) {
                Ok(()) => {
                    self.next = (i + 1) % self.lanes.len();
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Full(back)) => batch = back,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.failed(i).await),
            }
        }
        let i = if self.lanes.len() < self.max_lanes {
            self.open_lane();
            self.lanes.len() - 1
        } else {
            self.next % self.lanes.len()
        };
        if self.lanes[i].queue.send(batch).await.is_err() {
            return Err(self.failed(i).await);
        }
        self.next = (i + 1) % self.lanes.len();
        Ok(())
    }

    /// Waits for every lane to finish its files; their `add` actions.
    pub(crate) async fn close(self) -> DeltaResult<Vec<Add>> {
        let mut adds = Vec::new();
        let mut first_error = None;
        for lane in self.lanes {
            drop(lane.queue);
            match lane.encoder.await {
                Ok(Ok(more)) => adds.extend(more),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(DeltaTableError::Generic(format!(
                        "a Parquet encoder task failed: {e}"
                    )));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(adds),
        }
    }

    fn open_lane(&mut self) {
        let (queue, mut batches) = mpsc::channel::<RecordBatch>(QUEUE);
        let mut writer = DeltaWriter::new(self.store.clone(), self.config.clone());
        let encoder = tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                writer.write(&batch).await?;
            }
            writer.close().await
        });
        self.lanes.push(Lane { queue, encoder });
    }

    /// The error that stopped lane `i`'s encoder.
    async fn failed(&mut self, i: usize) -> DeltaTableError {
        let lane = self.lanes.remove(i);
        self.next = 0;
        match lane.encoder.await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => DeltaTableError::Generic("a Parquet encoder stopped early".into()),
            Err(e) => DeltaTableError::Generic(format!("a Parquet encoder task failed: {e}")),
        }
    }
}
