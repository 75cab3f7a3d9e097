//! The egress gateway of a dedicated node: the policy from `egress.yaml` enforced on every
//! outbound connection, bound to the node's static egress IP, presenting the destination's client
//! identity, guarded by per-destination circuit breakers, and audited.
//!
//! - [`policy`]: the decision for `host:port` from this node's IP — allow (rule, identity) or deny
//!   (reason); deny by default; indexed lookups shared with `plan`.
//! - [`dial`]: the layered dialer, the only way connectors get sockets.
//! - [`identity`]: client certificates (key/cert match, expiry, reload on change).
//! - [`tls`]: the handshake over a dialed stream and the classification of TLS failures; the
//!   configurations come from `switchyard_config::tls`, the process's one owner of rustls setup.
//! - [`audit`]: decision records for the control plane.
//!
//! Depends on `switchyard-config` only. `transform` never depends on this crate: serverless code
//! has no path to the outside world by construction.

#![forbid(unsafe_code)]

pub mod audit;
pub mod check;
pub mod classify;
pub mod dial;
mod error;
pub mod identity;
pub mod policy;
pub mod proxy;
pub mod tls;

pub use error::Error;
