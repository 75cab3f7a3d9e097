//! `switchyard demo --netns`: the same story where a packet could really go the wrong way. The
//! partner API listens inside a `partner` network namespace whose nftables firewall admits only
//! the pool's egress IP; the dedicated node runs as a process inside the pool's namespace, where
//! 203.0.113.10 is a real interface with a route to the partner; serverless workers start in a
//! namespace with no route at all (`[serverless] netns`). The control plane stays on this
//! machine's 127.0.0.1, reached from inside through relays on the same address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchyard_netns::{FirewallCounters, PARTNER_IP, Topology};
use switchyard_scheduler::client::Client;

use super::inputs::{Files, POOL};

/// The pool's egress IP: TEST-NET-3, which exists only inside the demo's namespaces.
pub(crate) const EGRESS_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The partner API's port inside its namespace.
const PARTNER_PORT: u16 = 8443;

/// The topology and the node running in it; both go when this is dropped.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) topology: Topology,
    node: Option<Child>,
}

/// What the network showed, for the summary.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) serverless_routes: String,
    pub(crate) pool_routes: String,
    pub(crate) firewall: Result<FirewallCounters, String>,
}

impl Network {
    /// Makes the namespaces, or says why this machine cannot.
    pub(crate) fn build() -> anyhow::Result<Network> {
        if let Err(why) = switchyard_netns::available() {
            bail!("--netns needs Linux network namespaces: {why}");
        }
        let topology = Topology::builder()
            .pool(POOL, EGRESS_IP)
            .serverless()
            .partner_ports(&[PARTNER_PORT])
            .build()
            .context("making the demo's network namespaces")?;
        Ok(Network { topology, node: None })
    }

    pub(crate) fn egress_ip(&self) -> IpAddr {
        IpAddr::V4(EGRESS_IP)
    }

    pub(crate) fn serverless_ns(&self) -> &str {
        self.topology.serverless().map_or("", |m| m.ns.as_str())
    }

    fn pool_ns(&self) -> &str {
        self.topology.pool(POOL).map_or("", |m| m.ns.as_str())
    }

    /// The partner API's listening socket, inside the partner's namespace.
    pub(crate) fn partner_listener(&self) -> anyhow::Result<std::net::TcpListener> {
        let addr = SocketAddr::from((PARTNER_IP, PARTNER_PORT));
        Ok(self.topology.listen(&self.topology.partner().ns, addr)?)
    }

    /// Makes the control plane at `url` (127.0.0.1:PORT) reachable from the node's and the
    /// workers' namespaces, then starts the pool's node inside its namespace and waits until it
    /// has registered.
    pub(crate) async fn start_node(
        &mut self,
        url: &str,
        token_file: &Path,
        files: &Files,
        exe: &Path,
        dir: &Path,
        client: &Client,
    ) -> anyhow::Result<()> {
        let port = url::Url::parse(url)?.port().context("the control plane's URL has no port")?;
        for ns in [self.pool_ns().to_owned(), self.serverless_ns().to_owned()] {
            self.topology.forward_loopback(&ns, port)?;
        }
        let log_path = dir.join("node.log");
        let log =
            std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = self
            .topology
            .command(self.pool_ns(), exe)
            .args(["node", "--pool", POOL, "--egress-ip", &EGRESS_IP.to_string(), "--control-plane", url])
            .arg("--token-file")
            .arg(token_file)
            .arg("--settings")
            .arg(&files.settings)
            .arg("--egress")
            .arg(&files.egress)
            .args(["--drain-timeout", "5s"])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the node in the pool's network namespace")?;
        self.node = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let nodes = client.nodes().await.unwrap_or_default();
            if nodes.iter().any(|n| n.egress_ip.as_deref() == Some("203.0.113.10") && n.state == "active") {
                return Ok(());
            }
            let exited = self.node.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "the node in the pool's network namespace did not register; its log ({}):\n{log}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The routes each side has and what the partner's firewall counted.
    pub(crate) fn observe(&self) -> Observed {
        Observed {
            serverless_routes: self.topology.routes(self.serverless_ns()).unwrap_or_else(|e| e.to_string()),
            pool_routes: self.topology.routes(self.pool_ns()).unwrap_or_else(|e| e.to_string()),
            firewall: self.topology.firewall().map_err(|e| e.to_string()),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // The node first (it holds sockets in the pool's namespace), then the namespaces.
        if let Some(mut node) = self.node.take() {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
