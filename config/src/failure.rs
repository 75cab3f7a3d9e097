//! The runtime failure classes of DESIGN §5, shared by every crate that reports a failed task.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why something failed, in the terms an operator acts on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Could not reach the other side: refused, timed out, DNS, reset.
    Connectivity,
    /// Reached it, but it did not accept who we are: password, certificate.
    Authentication,
    /// Known, but not allowed: permissions, IP not allowlisted, egress policy.
    Access,
    /// The data itself: undecodable, incompatible schema, failed expectation, non-zero exit.
    Data,
    /// A fault of our own.
    Internal,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Connectivity => "connectivity",
            FailureClass::Authentication => "authentication",
            FailureClass::Access => "access",
            FailureClass::Data => "data",
            FailureClass::Internal => "internal",
        }
    }

    /// The first thing an operator checks for a failure of this class; the failure's own message
    /// says what exactly happened.
    pub fn hint(self) -> &'static str {
        match self {
            FailureClass::Connectivity => {
                "check that the destination is up and reachable from the node's egress IP (DNS, routes, firewalls); the task retries by itself"
            }
            FailureClass::Authentication => {
                "check the credentials or client certificate the task uses (expired, rotated, wrong identity in the pool's settings)"
            }
            FailureClass::Access => {
                "the connection was refused by policy: ask the partner to allowlist the pool's static egress IP, or add a rule with `switchyard egress apply`; serverless tasks have no egress, so move outside calls to a dedicated task"
            }
            FailureClass::Data => {
                "look at the message and the attempt's log tail: fix the source data, the query or the expectation, then re-run (failed rows are in the dead-letter or quarantine table)"
            }
            FailureClass::Internal => {
                "a fault in Switchyard itself: retry the run, and report the attempt's log tail if it happens again"
            }
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "connectivity" => FailureClass::Connectivity,
            "authentication" => FailureClass::Authentication,
            "access" => FailureClass::Access,
            "data" => FailureClass::Data,
            "internal" => FailureClass::Internal,
            _ => return None,
        })
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
