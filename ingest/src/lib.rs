//! Sources that pull from external systems into Delta, exactly once.
//!
//! A [`Source`] produces [`Chunk`]s: Arrow record batches and, at each commit point, the source
//! positions the data ends at (Kafka offsets per partition, a SQL watermark, a page number).
//! [`run`] streams every batch into the table's files and commits them together with those
//! positions in one Delta version (`lake::TableWriter`), so a task killed at any moment resumes
//! from the last committed position and never duplicates or skips rows.
//!
//! One module per source: [`postgres`] (binary `COPY` over a gateway socket), [`sqlserver`]
//! (tiberius over a gateway socket), [`kafka`] (rdkafka; offsets from the table's `txn` actions,
//! undecodable messages to `<table>__dlq`) and [`https`] (hyper over the gateway's TLS with the
//! rule's client identity; pagination, `Retry-After`). Every socket comes from the gateway's
//! dialer. Failures carry their class (connectivity, authentication, access, data, internal).
//!
//! The crate knows nothing of the scheduler: progress and commits go out through [`Progress`].

#![forbid(unsafe_code)]

mod chunk;
mod counted;
mod error;
mod flush;
pub mod https;
mod json;
pub mod kafka;
pub mod postgres;
mod run;
mod secret;
pub mod sqlserver;

pub use chunk::{Chunk, Source};
pub use error::Error;
pub use flush::Limits;
pub use run::{Context, Progress, Summary, run};
