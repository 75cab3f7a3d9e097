//! The gateway's one error type. Every variant knows its failure class (DESIGN §5) and carries
//! the hint an operator needs; none carries key material.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use switchyard_config::FailureClass;

use crate::policy::DenyReason;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("egress to {target} denied: {reason}")]
    Denied { target: String, reason: DenyReason },
    #[error("cannot resolve {host}: {cause}")]
    Dns { host: String, cause: String },
    #[error("{addr} refused the connection from {source_ip}")]
    Refused { addr: SocketAddr, source_ip: IpAddr },
    #[error("no answer from {addr} within {}s (from {source_ip})", after.as_secs_f64())]
    Timeout { addr: SocketAddr, source_ip: IpAddr, after: Duration },
    #[error("cannot connect to {addr} from {source_ip}: {cause}")]
    Connect { addr: SocketAddr, source_ip: IpAddr, cause: std::io::Error },
    #[error("cannot use {ip} as the source address: {cause}")]
    Bind { ip: IpAddr, cause: std::io::Error },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, class: FailureClass, detail: String },
    #[error("circuit open for {destination} after {failures} connectivity failures; next probe in {}s", retry_in.as_secs())]
    CircuitOpen { destination: String, failures: u32, retry_in: Duration },
    #[error("identity `{name}`: {problem}")]
    Identity { name: String, problem: String },
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
}

impl Error {
    pub fn class(&self) -> FailureClass {
        match self {
            Error::Denied { reason, .. } => reason.class(),
            Error::Dns { .. }
            | Error::Refused { .. }
            | Error::Timeout { .. }
            | Error::Connect { .. }
            | Error::CircuitOpen { .. } => FailureClass::Connectivity,
            Error::Tls { class, .. } => *class,
            Error::Identity { .. } => FailureClass::Authentication,
            Error::Bind { .. } | Error::Read { .. } => FailureClass::Internal,
        }
    }

    /// Whether the same dial may succeed later without anyone changing anything.
    pub fn retryable(&self) -> bool {
        self.class() == FailureClass::Connectivity
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            Error::Denied { reason, .. } => reason.hint(),
            Error::Dns { .. } => "check the host name and this node's resolver".into(),
            Error::Refused { .. } => "nothing listens there, or a firewall rejects this source IP; check the destination's port".into(),
            Error::Timeout { source_ip, .. } => format!("the path is down or a firewall drops packets from {source_ip}; check routing and the partner's allowlist"),
            Error::Connect { .. } => "check the route from this node to the destination".into(),
            Error::Bind { ip, .. } => format!("{ip} must be an address of this node: configure it on an interface (static egress IP)"),
            Error::Tls { class: FailureClass::Authentication, .. } => "the destination rejected our client certificate, or we rejected its server certificate: check the identity's cert, key and ca files and their expiry".into(),
            Error::Tls { .. } => "check that the destination speaks TLS on this port".into(),
            Error::CircuitOpen { .. } => "the destination keeps failing; fix connectivity, the breaker probes again by itself".into(),
            Error::Identity { name, .. } => format!("fix the PEM files of [identities.{name}] in the settings"),
            Error::Read { .. } => "check the file exists and is readable by the node's user".into(),
        }
    }
}
