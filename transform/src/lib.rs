//! Serverless transforms: SQL over Delta tables with DataFusion — filled by the transform issue;
//! nothing here yet.
//!
//! It will own: registering the input tables at the versions the scheduler names; running the
//! task's SQL; writing with `overwrite`, `append` or `merge` on keys, idempotently (the output
//! commit's `txn` identifies the input versions); expectations (`warn`, `drop`, `fail`,
//! `quarantine`); and incremental refresh when inputs only had appends.
//!
//! Depends on `switchyard-config` and `switchyard-lake`, and never on `switchyard-gateway`: a
//! serverless worker has no egress except the lake.

#![forbid(unsafe_code)]
