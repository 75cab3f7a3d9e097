//! Sources that pull from external systems into Delta, exactly once — filled by the ingestion
//! issue; nothing here yet.
//!
//! It will own the source trait (Arrow record batches with the position they end at, batched by
//! rows, bytes and latency) and one folder per source: `sqlserver` (tiberius), `postgres`, `kafka`
//! (rdkafka; offsets resumed from the table's `txn` actions; undecodable messages to `<table>__dlq`)
//! and `https` (hyper + rustls; pagination, `Retry-After`). Every socket comes from the gateway's
//! dialer; commits go through `lake`. Failures are classified connectivity / authentication /
//! access / data.
//!
//! Depends on `switchyard-config`, `switchyard-gateway` and `switchyard-lake`; knows nothing of the
//! scheduler — progress and committed versions are reported through a small trait.

#![forbid(unsafe_code)]
