//! The Delta handoff on a real local lake directory: first write creates the table, positions
//! commit with the data and make retries no-ops, overwrites, schema merges and refusals.

use std::sync::Arc;

use switchyard_config::FailureClass;
use switchyard_lake::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use switchyard_lake::arrow::datatypes::{DataType, Field, Schema};
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::{Error, Lake, Position, WriteMode};

fn batch(ids: &[i64], names: Option<&[&str]>) -> RecordBatch {
    let mut fields = vec![Field::new("id", DataType::Int64, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec()))];
    if let Some(names) = names {
        fields.push(Field::new("name", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(names.to_vec())));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn table(name: &str) -> switchyard_config::value::TableName {
    name.parse().unwrap()
}

fn pos(version: i64) -> [Position; 1] {
    [Position { app_id: "job/task/0".into(), version }]
}

#[tokio::test]
async fn positions_commit_with_the_data_and_make_retries_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("bronze.claims");
    assert_eq!(lake.position(&t, "job/task/0").await.unwrap(), None);
    let first = lake.commit(&t, vec![batch(&[1, 2, 3], None)], WriteMode::Append, &pos(3)).await.unwrap();
    assert!(!first.skipped);
    assert!(dir.path().join("bronze/claims/_delta_log").is_dir(), "table lives at <root>/bronze/claims");
    // A retry of the same batch (e.g. after a failover) commits nothing.
    let again = lake.commit(&t, vec![batch(&[1, 2, 3], None)], WriteMode::Append, &pos(3)).await.unwrap();
    assert!(again.skipped);
    assert_eq!(again.table_version, first.table_version);
    lake.commit(&t, vec![batch(&[4, 5], None)], WriteMode::Append, &pos(5)).await.unwrap();
    // A fresh handle (a restarted writer) reads the position back.
    let reopened = Lake::new(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(reopened.position(&t, "job/task/0").await.unwrap(), Some(5));
    assert_eq!(reopened.position(&t, "other").await.unwrap(), None);
    assert_eq!(rows(&reopened.read(&t, None).await.unwrap()), 5, "no duplicates");
    assert_eq!(rows(&reopened.read(&t, Some(first.table_version)).await.unwrap()), 3, "time travel");
}

#[tokio::test]
async fn overwrite_replaces_and_new_nullable_columns_merge() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("silver.members");
    lake.commit(&t, vec![batch(&[1, 2, 3], None)], WriteMode::Append, &[]).await.unwrap();
    lake.commit(&t, vec![batch(&[9], None)], WriteMode::Overwrite, &[]).await.unwrap();
    assert_eq!(rows(&lake.read(&t, None).await.unwrap()), 1);
    // A new nullable column is merged into the schema; old rows read it as null.
    lake.commit(&t, vec![batch(&[10, 11], Some(&["a", "b"]))], WriteMode::Append, &[]).await.unwrap();
    let batches = lake.read(&t, None).await.unwrap();
    assert_eq!(rows(&batches), 3);
    let nulls: usize =
        batches.iter().map(|b| b.column_by_name("name").map_or(b.num_rows(), |c| c.null_count())).sum();
    assert_eq!(nulls, 1, "the row written before the column existed has no name");
}

#[tokio::test]
async fn an_incompatible_schema_change_is_a_data_error_showing_both_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("bronze.events");
    lake.commit(&t, vec![batch(&[1], None)], WriteMode::Append, &[]).await.unwrap();
    let wrong = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["not a number"])) as ArrayRef],
    )
    .unwrap();
    let err = lake.commit(&t, vec![wrong], WriteMode::Append, &[]).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Data, "{err}");
    assert!(matches!(err, Error::IncompatibleSchema { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("existing: (id long not null)") && text.contains("incoming: (id Utf8 not null)"),
        "both schemas are shown: {text}"
    );
    assert_eq!(rows(&lake.read(&t, None).await.unwrap()), 1, "nothing was committed");
}

/// The streaming writer: files written before a commit are invisible, a commit carries several
/// positions (one per Kafka partition), and a retried commit of the same positions is dropped.
#[tokio::test]
async fn streaming_writer_commits_files_with_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("bronze.events");
    let at = |p: i64, v: i64| Position { app_id: format!("events/{p}"), version: v };
    let mut w = lake.writer(&t, WriteMode::Append).await.unwrap();
    w.write(batch(&[1, 2], None)).await.unwrap();
    w.write(batch(&[3], None)).await.unwrap();
    assert_eq!(rows(&lake.read(&t, None).await.unwrap()), 0, "nothing visible before the commit");
    let c = w.commit(&[at(0, 2), at(1, 1)]).await.unwrap();
    assert!(!c.skipped);
    assert_eq!(c.rows, 3);
    assert_eq!(rows(&lake.read(&t, None).await.unwrap()), 3);
    assert_eq!(lake.position(&t, "events/0").await.unwrap(), Some(2));
    assert_eq!(lake.position(&t, "events/1").await.unwrap(), Some(1));

    // A second writer (the retry after a crash) re-sends the same positions: dropped.
    let mut again = lake.writer(&t, WriteMode::Append).await.unwrap();
    again.write(batch(&[1, 2, 3], None)).await.unwrap();
    assert!(again.commit(&[at(0, 2), at(1, 1)]).await.unwrap().skipped);
    // Half old, half new: two writers raced; refused rather than guessed.
    again.write(batch(&[4], None)).await.unwrap();
    let err = again.commit(&[at(0, 2), at(1, 5)]).await.unwrap_err();
    assert!(matches!(err, Error::PositionConflict { .. }), "{err}");
    let mut w2 = lake.writer(&t, WriteMode::Append).await.unwrap();
    w2.write(batch(&[4], Some(&["new column"]))).await.unwrap();
    w2.commit(&[at(0, 3), at(1, 5)]).await.unwrap();
    let all = lake.read(&t, None).await.unwrap();
    assert_eq!(rows(&all), 4);
    assert!(all.iter().all(|b| b.schema().field_with_name("name").is_ok()), "merged schema");
}
