//! The Delta Lake handoff between dedicated ingestion and serverless transforms — filled by the
//! ingestion issue; nothing here yet.
//!
//! It will own: table name → location under the lake root (local directory or object store);
//! creating a table on first write from the batch's schema; append and overwrite commits that carry
//! a Delta `txn` action (app id per job/task/partition, version = source position) so data and
//! position commit atomically; reading the last committed position back to resume; schema merges
//! of new nullable columns, and `data` errors showing both schemas for incompatible changes.

#![forbid(unsafe_code)]
