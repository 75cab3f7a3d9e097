//! The runtime failure classes of DESIGN §5, shared by every crate that reports a failed task.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why something failed, in the terms an operator acts on.
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
