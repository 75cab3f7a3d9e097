//! The egress gateway of a dedicated node — filled by the gateway issue; nothing here yet.
//!
//! It will own: the policy engine compiled from `egress.yaml` (indexed exact hosts, `*.suffix`
//! wildcards, CIDR prefixes; deny by default); the dialer, built as layers — policy check → resolve
//! → bind the node's static egress IP → connect with timeout → TLS with the destination's client
//! identity (the one module that configures rustls) → per-destination circuit breaker — from which
//! every connector gets its sockets; client identities (PEM files, expiry, reload); the HTTP CONNECT
//! proxy that `run` tasks reach through `HTTPS_PROXY`; and the audit log of every decision.
//!
//! Depends on `switchyard-config` only. `transform` never depends on this crate: serverless code
//! has no path to the outside world by construction.

#![forbid(unsafe_code)]
