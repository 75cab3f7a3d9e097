//! Scheduled lake maintenance in the control plane: `[[lake.maintenance]]` entries and the event
//! log's compaction (`[lake] event_log_optimize_every`). Each slot runs on exactly one replica
//! (the store's `lake_maintenance` row decides) and ends in a `lake_maintenance` event. Optimize
//! and vacuum leave `txn` actions alone, so ingest resumes read the same positions afterwards.

use std::time::Duration;

use anyhow::Context;
use switchyard_config::settings::{Lake as LakeSettings, Maintenance};
use switchyard_lake::Lake;
use switchyard_scheduler::engine::{Engine, maintenance_slot};
use switchyard_scheduler::store::now_ms;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often due slots are looked for: the finest `every` worth having.
const TICK: Duration = Duration::from_secs(1);

/// What the control plane maintains: the entries as written, plus the event log's compaction
/// unless an entry names the event log itself or its interval is 0.
pub(crate) fn entries(lake: &LakeSettings) -> Vec<Maintenance> {
    let mut entries = lake.maintenance.clone();
    let event_log: switchyard_config::value::TableName =
        switchyard_lake::EVENT_LOG_TABLE.parse().unwrap_or_else(|e| {
            unreachable!("{} is a valid table name: {e:?}", switchyard_lake::EVENT_LOG_TABLE)
        });
    if !lake.event_log_optimize_every.0.is_zero() && !entries.iter().any(|m| m.table == event_log) {
        entries.push(Maintenance {
            table: event_log,
            every: Some(lake.event_log_optimize_every),
            schedule: None,
            optimize: true,
            z_order: vec![],
            vacuum_retain: None,
        });
    }
    entries
}

/// Starts the maintenance loop (none when there is nothing to maintain); it stops when
/// `shutdown` turns true, after the maintenance under way.
pub(crate) fn spawn(
    engine: &Engine,
    lake: &LakeSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let entries = entries(lake);
    if entries.is_empty() {
        return Ok(None);
    }
    let store = Lake::from_settings(lake)
        .with_context(|| format!("opening the lake at {} for maintenance", lake.root))?;
    Ok(Some(tokio::spawn(maintain(engine.clone(), store, entries, shutdown))))
}

async fn maintain(
    engine: Engine,
    lake: Lake,
    entries: Vec<Maintenance>,
    mut shutdown: watch::Receiver<bool>,
) {
    let owner = switchyard_scheduler::observe::export::replica();
    // The slot each entry was last looked at in, so a slot is claimed once per replica.
    let mut seen: Vec<Option<i64>> = vec![None; entries.len()];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        for (entry, seen) in entries.iter().zip(seen.iter_mut()) {
            let schedule = entry.schedule.as_ref().map(|s| s.as_str());
            let Some(slot) = maintenance_slot(entry.every.map(|d| d.0), schedule, now_ms()) else { continue };
            if *seen == Some(slot) {
                continue;
            }
            let table = entry.table.as_str();
            match engine.claim_maintenance(table, slot, owner).await {
                Ok(true) => {}
                Ok(false) => {
                    *seen = Some(slot); // another replica has it
                    continue;
                }
                Err(e) => {
                    tracing::warn!(table, error = %e, "Cannot claim a maintenance slot; trying again.");
                    continue;
                }
            }
            *seen = Some(slot);
            let started = std::time::Instant::now();
            let (outcome, details, record) = run(&lake, entry).await;
            let ms = started.elapsed().as_millis() as u64;
            match &outcome {
                Ok(done) => tracing::info!(table, slot, ms, "Lake maintenance: {done}."),
                Err(why) => tracing::warn!(table, slot, ms, "Lake maintenance failed: {why}"),
            }
            if let Err(e) = engine.finish_maintenance(table, slot, outcome, details, record).await {
                tracing::warn!(table, error = %e, "Cannot record how a maintenance slot ended.");
            }
        }
    }
}

/// Optimize (or Z-order), then vacuum when asked. Returns the outcome, what was done (for the
/// event) and whether to record an event: a table nothing has been committed to yet is skipped
/// quietly.
async fn run(lake: &Lake, entry: &Maintenance) -> (Result<String, String>, serde_json::Value, bool) {
    let mut done = Vec::new();
    let mut details = serde_json::Map::new();
    if entry.optimize {
        match lake.optimize(&entry.table, &entry.z_order).await {
            Ok(o) => {
                done.push(format!(
                    "{} {} files into {} (version {})",
                    if entry.z_order.is_empty() { "compacted" } else { "z-ordered" },
                    o.files_removed,
                    o.files_added,
                    o.table_version
                ));
                details.insert(
                    "optimize".into(),
                    serde_json::json!({ "files_removed": o.files_removed, "files_added": o.files_added, "version": o.table_version }),
                );
            }
            Err(e) => return failed("optimize", e, details),
        }
    }
    if let Some(retain) = entry.vacuum_retain {
        match lake.vacuum(&entry.table, retain.0, false).await {
            Ok(v) => {
                done.push(format!("vacuumed {} files older than {retain}", v.files.len()));
                details.insert("vacuum".into(), serde_json::json!({ "files_deleted": v.files.len() }));
            }
            Err(e) => return failed("vacuum", e, details),
        }
    }
    (Ok(done.join("; ")), details.into(), true)
}

/// How a step's error ends the slot: a table with no commits yet is nothing to do (no event).
fn failed(
    step: &str,
    e: switchyard_lake::Error,
    details: serde_json::Map<String, serde_json::Value>,
) -> (Result<String, String>, serde_json::Value, bool) {
    match e {
        switchyard_lake::Error::NoTable { .. } => {
            (Ok("nothing to do: no commits yet".into()), serde_json::Value::Null, false)
        }
        e => (Err(format!("{step}: {e} ({}; hint: {})", e.class(), e.hint())), details.into(), true),
    }
}
