//! Switchyard's inputs: task manifests (`jobs/*.yaml`), the egress policy (`egress.yaml`) and
//! settings (`switchyard.toml`) — reading them, and every check that needs no I/O.
//!
//! Data flows one way: bytes → [`document`] (a node tree that remembers the line and column of
//! every key and value) → typed values ([`manifest::Manifest`], [`egress::EgressPolicy`],
//! [`settings::Settings`]) through a serde deserializer that records *all* problems, each as a
//! [`Diagnostic`] with `FILE:LINE:COL`, key path, [`Code`], message and hint → per-document checks.
//! [`load`] does all of that for a set of files and returns [`Inputs`]; the scheduler then checks
//! references between documents and plans.
//!
//! Secrets are never held here, only where to find them ([`SecretRef`]); a resolved one is a
//! [`Secret`], which prints as `***`.
//!
//! With the `tls` feature, `tls` is the process's one owner of rustls setup (provider, roots,
//! client and server configurations), here because both the scheduler and the gateway may import
//! this crate.

#![forbid(unsafe_code)]
// A `Diagnostic` is the error of a parser that runs once per file, on the cold path; boxing it
// would buy nothing measurable and cost a layer of indirection at every use.
#![allow(clippy::result_large_err)]

mod diagnostic;
pub mod document;
pub mod egress;
mod error;
mod failure;
mod load;
pub mod manifest;
mod schema;
mod secret;
pub mod settings;
pub mod suggest;
#[cfg(feature = "tls")]
pub mod tls;
pub mod value;

pub use diagnostic::{Code, Diagnostic, Location, sort_in_reading_order};
pub use document::{Document, Seg};
pub use error::Error;
pub use failure::FailureClass;
pub use load::{DEFAULT_EGRESS, DEFAULT_SETTINGS, Inputs, LoadOptions, load, parse_manifest, parse_policy};
pub use schema::{SchemaKind, json_schema};
pub use secret::{Secret, SecretRef};
