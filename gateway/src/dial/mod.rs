//! The only way connectors get sockets: a dialer built as layers, outermost first —
//! [`enforce`] (policy: allow or deny, audited) → [`breaker`] (per-destination circuit breaker) →
//! [`tcp`] (resolve, bind this node's static egress IP as source, connect with a timeout) — and
//! TLS with the destination's client identity on top ([`Dialer::connect_tls`]).

mod breaker;
mod enforce;
mod tcp;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::value::Host;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use breaker::{Breaker, BreakerConfig};
pub use enforce::Enforce;
pub use tcp::TcpDialer;

use crate::audit::AuditSink;
use crate::identity::Identities;
use crate::policy::Enforcer;
use crate::{Error, tls};

/// Where to connect, and on whose behalf (for the audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
    pub task: Option<String>,
}

impl Target {
    pub fn new(host: Host, port: u16) -> Self {
        Target { host, port, task: None }
    }

    pub fn parse(host: &str, port: u16) -> Result<Self, Error> {
        let host = Host::parse(host).map_err(|e| Error::Dns { host: host.to_owned(), cause: e.message })?;
        Ok(Target::new(host, port))
    }

    pub fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A connected socket and what allowed it.
#[derive(Debug)]
pub struct Dialed {
    pub stream: TcpStream,
    pub info: DialInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The rule that allowed it (none in dry-run mode when no rule matched).
    pub rule: Option<String>,
    /// The identity that rule asks for.
    pub identity: Option<String>,
}

/// One layer of the dialer.
pub trait Dial: Send + Sync {
    fn dial(&self, target: &Target) -> impl Future<Output = Result<Dialed, Error>> + Send;
}

/// The composed dialer of a node.
#[derive(Debug, Clone)]
pub struct Dialer {
    inner: Arc<Enforce<Breaker<TcpDialer>>>,
    identities: Arc<Identities>,
}

#[derive(Debug, Clone)]
pub struct DialerConfig {
    pub connect_timeout: Duration,
    pub breaker: BreakerConfig,
    /// Local address connections are bound to. `None` (the default): the static egress IP itself,
    /// which must then be an address of this machine. Set it when the egress IP belongs to a NAT
    /// in front of the machine (a Kubernetes egress gateway, a cloud NAT gateway, an Elastic IP):
    /// the policy is still enforced for the egress IP, while sockets leave from this address.
    pub source_ip: Option<IpAddr>,
}

impl Default for DialerConfig {
    fn default() -> Self {
        DialerConfig {
            connect_timeout: Duration::from_secs(10),
            breaker: BreakerConfig::default(),
            source_ip: None,
        }
    }
}

impl Dialer {
    pub fn new(
        enforcer: Enforcer,
        identities: Arc<Identities>,
        audit: AuditSink,
        config: DialerConfig,
    ) -> Self {
        let tcp = TcpDialer::new(config.source_ip.unwrap_or(enforcer.egress_ip()), config.connect_timeout);
        let inner = Enforce::new(enforcer, audit, Breaker::new(tcp, config.breaker));
        Dialer { inner: Arc::new(inner), identities }
    }

    /// Enforces a new policy (a new version applied by an operator) from the next dial on.
    pub fn replace_policy(&self, enforcer: Enforcer) {
        self.inner.replace(enforcer);
    }

    /// Audits the end of a connection this dialer made.
    pub fn closed(&self, target: &Target, info: &DialInfo, bytes: u64, duration_ms: u64) {
        self.inner.closed(target, info.rule.clone(), bytes, duration_ms);
    }

    /// A plain TCP connection through every layer.
    pub async fn connect(&self, target: &Target) -> Result<Dialed, Error> {
        self.inner.dial(target).await
    }

    /// TCP, then TLS presenting the identity the matching rule names (if any).
    pub async fn connect_tls(&self, target: &Target) -> Result<(TlsStream<TcpStream>, DialInfo), Error> {
        let dialed = self.connect(target).await?;
        let config = match &dialed.info.identity {
            Some(name) => self
                .identities
                .get(name)
                .ok_or_else(|| Error::Identity {
                    name: name.clone(),
                    problem: "is not installed on this node".into(),
                })?
                .config
                .clone(),
            None => switchyard_config::tls::public_client(),
        };
        let host = target.host.to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = tls::handshake(dialed.stream, host, config).await?;
        Ok((tls, dialed.info))
    }
}
