//! A transform's memory budget (`[serverless] memory_limit` on a worker): DataFusion's memory
//! pool of that size, shared fairly by the operators that can spill (sorts, aggregates), which
//! spill to the budget's directory beyond it; the ten largest consumers are named when an
//! allocation is refused. The pool is wrapped to remember its peak, for the attempt's record.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deltalake::datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use serde::Serialize;
use switchyard_lake::deltalake;

use crate::Error;

/// What a run may hold in memory, and where its operators spill beyond that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub memory_bytes: u64,
    pub spill_dir: std::path::PathBuf,
}

/// The query's memory against its budget. The pool counts what DataFusion's operators reserve
/// (hash tables, sort buffers, aggregation state); the Parquet encoders' open row groups (a
/// quarter of the budget in all, at most) are outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryUse {
    pub budget_bytes: u64,
    /// The most the pool held at once.
    pub peak_pool_bytes: u64,
    /// Bytes the operators spilled to disk.
    pub spilled_bytes: u64,
}

/// A session for one run: as many partitions as cores and, with a budget, its pool and spill
/// directory (returned, to read the peak afterwards).
pub(crate) fn session(budget: Option<&Budget>) -> Result<(SessionContext, Option<Arc<PeakPool>>), Error> {
    use deltalake::datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // DataFusion's own `DATAFUSION_*` variables (e.g. `DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS`)
    // tune a worker without a rebuild; target partitions default to the cores.
    let mut config = SessionConfig::from_env().map_err(|e| {
        Error::internal(format!("a DATAFUSION_* variable of the worker's environment is not valid: {e}"))
    })?;
    if std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_none() {
        config = config.with_target_partitions(cores);
    }
    let Some(budget) = budget else {
        return Ok((SessionContext::new_with_config(config), None));
    };
    // Each partition's sort sets this much aside to merge its spill files; DataFusion's 10 MiB
    // would take a small budget whole. A quarter of a partition's share, at most the default.
    let per_partition = budget.memory_bytes / cores as u64;
    let merge_reserve = (per_partition / 4).min(10 << 20) as usize;
    let config = config.with_sort_spill_reservation_bytes(merge_reserve);
    std::fs::create_dir_all(&budget.spill_dir).map_err(|e| {
        Error::internal(format!("cannot create the spill directory {}: {e}", budget.spill_dir.display()))
    })?;
    let top = std::num::NonZeroUsize::new(10).unwrap_or(std::num::NonZeroUsize::MIN);
    let limit = usize::try_from(budget.memory_bytes).unwrap_or(usize::MAX);
    let pool = Arc::new(PeakPool {
        inner: TrackConsumersPool::new(FairSpillPool::new(limit), top),
        peak: AtomicU64::new(0),
    });
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool.clone())
        .with_disk_manager_builder(
            DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![budget.spill_dir.clone()])),
        )
        .build_arc()
        .map_err(|e| Error::internal(format!("the query's memory pool: {e}")))?;
    Ok((SessionContext::new_with_config_rt(config, runtime), Some(pool)))
}

/// Bytes spilled by every operator of `plan`, as their metrics count them.
pub(crate) fn spilled_bytes(plan: &dyn ExecutionPlan) -> u64 {
    let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) as u64;
    own + plan.children().into_iter().map(|c| spilled_bytes(c.as_ref())).sum::<u64>()
}

/// The budget's pool, remembering the most it held.
#[derive(Debug)]
pub(crate) struct PeakPool {
    inner: TrackConsumersPool<FairSpillPool>,
    peak: AtomicU64,
}

impl PeakPool {
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    fn note(&self) {
        self.peak.fetch_max(self.inner.reserved() as u64, Ordering::Relaxed);
    }
}

impl fmt::Display for PeakPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl MemoryPool for PeakPool {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.note();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
    }

    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> deltalake::datafusion::error::Result<()> {
        self.inner.try_grow(reservation, additional)?;
        self.note();
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}
