//! The Delta Lake handoff between dedicated ingestion and serverless transforms.
//!
//! [`Lake`] maps table names (`bronze.claims`) to locations under the lake root (a local directory
//! by default, `bronze/claims/`), creates a table on its first write from the batch's schema, and
//! commits appends and overwrites that carry a Delta `txn` action — app id and version, where the
//! version is the source position the data ends at. Data and position therefore commit together:
//! [`Lake::position`] reads the position back to resume from, and a commit whose position is not
//! past the stored one is skipped, so a retried or failed-over writer never duplicates rows.
//! New nullable columns are merged into the schema; an incompatible change is a `data` error
//! showing both schemas.
//!
//! The root is a local directory or an object store (`s3://`, `s3a://`, `abfss://`, `az://`,
//! `gs://`; see [`store`](crate::StoreFailure) for how their failures are classified).

#![forbid(unsafe_code)]

mod commit;
mod encoders;
mod error;
mod event_log;
mod history;
mod maintain;
mod merge;
mod probe;
mod schema;
mod staged;
mod store;
mod table;
mod writer;

pub use error::Error;
pub use event_log::{EVENT_LOG_TABLE, EventFilter, EventRecord};
pub use history::{COMMIT_INFO_KEY, Changes};
pub use maintain::{Optimized, Vacuumed};
pub use probe::Stage;
pub use staged::{ROW_GROUP_BYTES, StagedWrite};
pub use store::{StoreFailure, bucket, redact_url, store_failure};
pub use table::{Committed, Lake, Position, WriteMode, plain_types};
pub use writer::TableWriter;

/// deltalake itself, for readers that register tables with DataFusion (the transform crate).
pub use deltalake;
/// Arrow, as the lake uses it (re-exported so producers build batches against the same version).
pub use deltalake::arrow;
