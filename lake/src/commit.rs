//! What every commit path (whole-batch commits, the streaming writer, staged one-commit
//! outputs) shares: the positions a commit carries and whether they are already in the table, and
//! which failures mean another writer won the race.

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use switchyard_config::value::TableName;

use crate::{Error, Position};

/// Whether `t` already holds every one of `positions` (a retry of a commit that landed: skip
/// it). None of them: go on. Some but not all: two writers raced for the same source, which
/// fails rather than guess.
pub(crate) async fn already_committed(
    t: &DeltaTable,
    table: &TableName,
    positions: &[Position],
) -> Result<bool, Error> {
    if positions.is_empty() || t.version().is_none() {
        return Ok(false);
    }
    let delta = |cause| Error::Delta { table: table.to_string(), cause };
    let state = t.snapshot().map_err(delta)?;
    let mut done = 0;
    for p in positions {
        let committed = state.transaction_version(t.log_store().as_ref(), &p.app_id).await.map_err(delta)?;
        if committed.is_some_and(|c| c >= p.version) {
            done += 1;
        }
    }
    if done == positions.len() {
        tracing::info!(table = %table, positions = ?positions, "Positions already committed; skipping.");
        return Ok(true);
    }
    if done > 0 {
        return Err(Error::PositionConflict {
            table: table.to_string(),
            detail: format!("{done} of {} positions are already committed", positions.len()),
        });
    }
    Ok(false)
}

/// The `txn` actions for `positions`, and the Switchyard note in `commitInfo`.
pub(crate) fn commit_properties(positions: &[Position], note: Option<serde_json::Value>) -> CommitProperties {
    let properties = CommitProperties::default().with_application_transactions(
        positions.iter().map(|p| Transaction::new(&p.app_id, p.version)).collect(),
    );
    match note {
        Some(note) => properties.with_metadata([(crate::COMMIT_INFO_KEY.to_owned(), note)]),
        None => properties,
    }
}

/// Whether a commit failed because another writer committed first.
pub(crate) fn is_conflict(e: &deltalake::DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    match e {
        deltalake::DeltaTableError::VersionAlreadyExists(_) => true,
        deltalake::DeltaTableError::Transaction { source } => {
            matches!(
                source,
                TransactionError::CommitConflict(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_)
            )
        }
        _ => false,
    }
}
