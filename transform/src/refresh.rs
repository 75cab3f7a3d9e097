//! Full or incremental: a run may process only the files its inputs gained since the last run
//! when (a) the previous output came from the same query (same fingerprint) and recorded the
//! input versions it read, (b) every input only had appends since then, and (c) the query is
//! row-wise, or an aggregate whose partial results merge exactly. Anything else recomputes
//! fully, and the reason is recorded with the run.

use std::collections::BTreeMap;

use switchyard_config::manifest::{OnViolation, WriteMode};
use switchyard_config::value::TableName;
use switchyard_lake::Lake;

use crate::shape::Shape;
use crate::{Error, Request};

/// What this run does.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    Full {
        reason: String,
    },
    /// Read only `files` of `table` (the one input that changed).
    Incremental {
        table: TableName,
        files: Vec<String>,
        reason: String,
        shape: Shape,
    },
}

/// How far back in the output table's log to look for this query's last commit.
const LOOKBACK: u64 = 1_000;

pub(crate) async fn decide(
    lake: &Lake,
    request: &Request<'_>,
    app_id: &str,
    versions: &BTreeMap<TableName, u64>,
    shape: Shape,
) -> Result<Plan, Error> {
    let full = |reason: String| Ok(Plan::Full { reason });
    if request.full_refresh {
        return full("a full refresh was requested".into());
    }
    let sink = &request.sink.table;
    let Some((_, note)) = lake.last_commit_by(sink, app_id, LOOKBACK).await? else {
        return full(format!(
            "no earlier output of this query in {sink} (first run, or its SQL, expectations or sink changed)"
        ));
    };
    let previous: BTreeMap<String, u64> =
        note.get("inputs").and_then(|i| serde_json::from_value(i.clone()).ok()).unwrap_or_default();
    let (table, reason_shape) = match &shape {
        Shape::Other { why } => return full(why.clone()),
        Shape::RowWise { table } => (table.clone(), "row-wise"),
        Shape::Aggregate { table, .. } => {
            if request.sink.mode.unwrap_or_default() == WriteMode::Append {
                return full("an aggregate appended to its sink is recomputed (appending merged groups would duplicate them)".into());
            }
            if request.expectations.iter().any(|e| {
                matches!(e.on_violation.unwrap_or_default(), OnViolation::Drop | OnViolation::Quarantine)
            }) {
                return full(
                    "expectations that remove rows from an aggregate's output would make merging its groups wrong".into(),
                );
            }
            (table.clone(), "mergeable aggregate")
        }
    };
    let mut changed = Vec::new();
    for (t, &now) in versions {
        let Some(&before) = previous.get(t.as_str()) else {
            return full(format!("the last run did not record the version of {t} it read"));
        };
        if now < before {
            return full(format!("{t} is at version {now}, behind the {before} the last run read"));
        }
        if now > before {
            changed.push((t.clone(), before, now));
        }
    }
    let [(t, before, now)] = changed.as_slice() else {
        return full(format!(
            "{} inputs changed since the last run; only one may for an incremental run",
            changed.len()
        ));
    };
    if t.as_str() != table {
        return full(format!("{t} changed, but the query's incremental input is {table}"));
    }
    let changes = lake.changes(t, *before, *now).await?;
    if let Some(why) = changes.not_appends {
        return full(format!("{t} did not only gain rows: {why}"));
    }
    let reason = format!(
        "{t} only had appends since version {before} ({} new file(s) up to version {now}) and the query is {reason_shape}",
        changes.added.len()
    );
    Ok(Plan::Incremental { table: t.clone(), files: changes.added, reason, shape })
}
