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
        merge_cap: limit / (config.target_partitions() + 1),
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
    /// The most one partition's spill merge may hold: a share of the pool that leaves as much
    /// again for the final merge across partitions. DataFusion's multi-level merge reads as many
    /// spill files at once as the pool grants and merges fewer (in more passes) when refused;
    /// on a shared pool it took everything, two partitions' merges held 63 of 64 MiB and the
    /// final `SortPreservingMergeExec` failed for want of 768 KiB (CI, December 2026).
    merge_cap: usize,
}

/// The consumer name DataFusion gives a sort's spill merge (`ExternalSorterMerge[partition]`).
const SPILL_MERGE: &str = "ExternalSorterMerge";

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
        let consumer = reservation.consumer();
        let wanted = reservation.size().saturating_add(additional);
        if !consumer.can_spill() && consumer.name().starts_with(SPILL_MERGE) && wanted > self.merge_cap {
            return Err(deltalake::datafusion::error::DataFusionError::ResourcesExhausted(format!(
                "{} may hold at most {} bytes of the budget's pool (it asked for {wanted})",
                consumer.name(),
                self.merge_cap
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sort's spill merge is held to its share, so the final merge keeps room; other
    /// consumers, spilling or not, still draw on the whole pool.
    #[test]
    fn a_spill_merge_is_held_to_its_share_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget { memory_bytes: 30 << 20, spill_dir: dir.path().join("spill") };
        let (_, pool) = session(Some(&budget)).unwrap();
        let pool: Arc<dyn MemoryPool> = pool.unwrap();
        // However many partitions, a merge's share is at most half the pool.
        let half = (30 << 20) / 2;
        let merge = MemoryConsumer::new(format!("{SPILL_MERGE}[0]")).register(&pool);
        assert!(merge.try_grow(1 << 20).is_ok(), "a merge gets its share");
        let refused = merge.try_grow(half).unwrap_err().to_string();
        assert!(refused.contains("ExternalSorterMerge[0] may hold at most"), "{refused}");
        drop(merge);
        let join = MemoryConsumer::new("HashJoinInput").register(&pool);
        assert!(
            join.try_grow(half + (1 << 20)).is_ok(),
            "a consumer that is not a spill merge is not capped"
        );
    }
}
