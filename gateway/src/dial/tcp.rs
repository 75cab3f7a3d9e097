//! The innermost layer: resolve the name once, then connect from this node's static egress IP to
//! an address of that answer, with a timeout. The address connected to is the one resolved here,
//! never re-resolved by anyone else.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use switchyard_config::value::Host;
use tokio::net::TcpSocket;

use super::{Dial, DialInfo, Dialed, Target};
use crate::Error;

#[derive(Debug, Clone)]
pub struct TcpDialer {
    source: IpAddr,
    timeout: Duration,
}

impl TcpDialer {
    pub fn new(source: IpAddr, timeout: Duration) -> Self {
        TcpDialer { source, timeout }
    }

    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, Error> {
        let addrs: Vec<SocketAddr> = match &target.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), target.port))
                .await
                .map_err(|e| Error::Dns { host: name.clone(), cause: e.to_string() })?
                .collect(),
        };
        // Only addresses of the source's family are reachable from it.
        let usable: Vec<SocketAddr> =
            addrs.into_iter().filter(|a| a.is_ipv4() == self.source.is_ipv4()).collect();
        if usable.is_empty() {
            return Err(Error::Dns {
                host: target.host.to_string(),
                cause: format!("no address of the egress IP's family ({})", self.source),
            });
        }
        Ok(usable)
    }

    async fn connect_one(&self, addr: SocketAddr) -> Result<tokio::net::TcpStream, Error> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|cause| Error::Bind { ip: self.source, cause })?;
        // Bind only the address now and pick the port at connect time, per destination: binding
        // port 0 up front makes the kernel find a port free for *every* destination, which is slow
        // and runs out under TIME_WAIT at a few thousand connections per second.
        #[cfg(target_os = "linux")]
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true);
        socket
            .bind(SocketAddr::new(self.source, 0))
            .map_err(|cause| Error::Bind { ip: self.source, cause })?;
        match tokio::time::timeout(self.timeout, socket.connect(addr)).await {
            Err(_) => Err(Error::Timeout { addr, source_ip: self.source, after: self.timeout }),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(Error::Refused { addr, source_ip: self.source })
            }
            Ok(Err(cause)) => Err(Error::Connect { addr, source_ip: self.source, cause }),
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
        }
    }
}

impl Dial for TcpDialer {
    async fn dial(&self, target: &Target) -> Result<Dialed, Error> {
        let mut last = None;
        for addr in self.resolve(target).await? {
            match self.connect_one(addr).await {
                Ok(stream) => {
                    let local = stream.local_addr().map_err(|cause| Error::Connect {
                        addr,
                        source_ip: self.source,
                        cause,
                    })?;
                    return Ok(Dialed {
                        stream,
                        info: DialInfo { peer: addr, local, rule: None, identity: None },
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| Error::Dns { host: target.host.to_string(), cause: "no addresses".into() }))
    }
}
