//! A real network for tests (and `switchyard demo --netns`): a partner, one dedicated node per
//! pool, serverless workers and "strangers" each in a Linux network namespace of its own, wired
//! by veth pairs so that a packet can only go where the topology says.
//!
//! ```text
//!   pool-<name> ns                 partner ns                        stranger-<name> ns
//!   eg0 203.0.113.10/32 ──veth── in0 198.51.100.10/32 ──veth── in1 … eg0 203.0.113.66/32
//!   (route: 198.51.100.10 only)    nftables: only the pools' IPs,    (a wrong egress IP)
//!                                  each on its own link
//!   serverless ns: `lo` only — no route at all. A connect to the partner fails in the worker's
//!   own kernel with ENETUNREACH ("Network is unreachable"); no packet is ever sent.
//! ```
//!
//! Why it is shaped like this (each point was tried on the machine, see issue 18's notes):
//!
//! - **Nothing in the root namespace changes**: no address, route, nft table or sysctl there.
//!   Every link is between two namespaces this module made, so addresses can be the same in every
//!   test (tests run in parallel, one process each, under nextest) and deleting the namespaces
//!   deletes the veths and the firewall with them.
//! - **Services of the root namespace** (the control plane, PostgreSQL, moto) are reached through
//!   [`Topology::forward`]: a listening socket created *inside* a namespace (`setns(2)` on a
//!   short-lived thread; a socket keeps the namespace it was made in) relayed to the target from
//!   the root namespace. `forward_loopback(ns, port)` makes `127.0.0.1:PORT` inside the namespace
//!   the same service as `127.0.0.1:PORT` outside, so URLs in settings work unchanged on both sides.
//! - **Processes** start inside a namespace with `ip netns exec NAME program…`
//!   ([`Topology::command`]): it `exec`s in place (the child's pid is the program's, so `kill`
//!   and `kill_on_drop` reach it) and needs no `unsafe` (`pre_exec` would; the workspace forbids it).
//! - **Teardown** on every path: [`Topology`] is a guard. Its `Drop` closes the forwards (their
//!   sockets would keep a deleted namespace alive), kills what still runs in the namespaces and
//!   deletes them. A process killed with SIGKILL runs no `Drop`: names carry the pid
//!   (`sy-<pid>-<n>-<role>`), and every [`TopologyBuilder::build`] first removes namespaces whose
//!   pid no longer runs.
//!
//! Needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN, `ip` (Debian's iproute2) and `nft` (Debian's
//! nftables). [`available`] probes once per process by making a namespace, a veth pair and an nft
//! table; tests call [`require_netns!`], which skips with the reason only
//! when that fails and `SWITCHYARD_TEST_NETNS=required` (set by `scripts/test` as root) is unset.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The partner's address on every link: TEST-NET-2 (RFC 5737), which exists only inside the
/// namespaces. The host's own network (192.0.2.0/24 here) is never used.
pub const PARTNER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// A pool's egress IP when the test names none: TEST-NET-3, as in DESIGN §4.3's examples.
pub const DEFAULT_EGRESS_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// `scripts/test` sets this to `required` when it runs as root with iproute2 and nftables
/// installed: an unavailable topology then fails the test instead of skipping it, so a broken
/// machine cannot pass silently.
pub const REQUIRED_ENV: &str = "SWITCHYARD_TEST_NETNS";

/// Every namespace name starts with this, then the pid: `sy-<pid>-<n>-<role>`.
const PREFIX: &str = "sy";
/// The partner's nftables table (family `inet`: one table for IPv4 and IPv6).
const TABLE: &str = "switchyard_partner";
const IP_PATHS: &[&str] = &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];
const NFT_PATHS: &[&str] = &["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];
/// How often a forward's accept loop looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// How long a forward waits for its target before closing the client's connection.
const TARGET_TIMEOUT: Duration = Duration::from_secs(5);

/// Per process: the `<n>` of `sy-<pid>-<n>-<role>`.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why this machine cannot make a topology, in words a test prints when it skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespaces are unavailable: {0}")]
    Unavailable(Unavailable),
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    #[error("cannot run `{program}`: {cause}")]
    Spawn {
        program: String,
        #[source]
        cause: io::Error,
    },
    #[error("cannot enter network namespace {ns}: {cause}")]
    Enter {
        ns: String,
        #[source]
        cause: io::Error,
    },
    #[error("in network namespace {ns}, {what}: {cause}")]
    Io {
        ns: String,
        what: String,
        #[source]
        cause: io::Error,
    },
    #[error("unexpected output from `{command}`: {detail}")]
    Parse { command: String, detail: String },
    #[error("topology: {0}")]
    Invalid(String),
    #[error("teardown left {0:?} behind")]
    Leftover(Vec<String>),
}

/// What the partner's firewall does with a packet from a source it does not allow. All three
/// were tried from a stranger's namespace (python `socket.connect`, curl 7.88):
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirewallAction {
    /// ICMP "administratively prohibited": the client fails at once with EHOSTUNREACH, "No route
    /// to host" (errno 113). Fast, and unlike a reset it cannot be mistaken for a closed port.
    #[default]
    RejectAdminProhibited,
    /// TCP reset: ECONNREFUSED, "Connection refused" (errno 111), like a port nobody listens on.
    RejectTcpReset,
    /// Silence, as most real firewalls: the client waits out its own connect timeout (curl:
    /// "(28) … Timeout was reached"; the kernel's default is about two minutes). Slow tests.
    Drop,
}

impl FirewallAction {
    fn statement(self) -> &'static str {
        match self {
            FirewallAction::RejectAdminProhibited => "reject with icmpx type admin-prohibited",
            FirewallAction::RejectTcpReset => "meta l4proto tcp reject with tcp reset\n\t\tdrop",
            FirewallAction::Drop => "drop",
        }
    }
}

/// The partner firewall's counters, from one `nft -j list table inet switchyard_partner`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallCounters {
    /// Connections let in: first packets from an allowed source on its own link (established
    /// traffic is accepted before this counter).
    pub accepted: u64,
    /// Packets turned away (rejected or dropped), whatever their source.
    pub refused: u64,
    /// Every source address that sent the partner any packet, with its packet count. A source
    /// missing here never reached the partner at all.
    pub sources: BTreeMap<Ipv4Addr, u64>,
}

/// A namespace of the topology and its address on the partner's side of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `partner`, `pool-<name>`, `stranger-<name>` or `serverless`.
    pub role: String,
    /// The namespace's name, for `ip netns exec` and `[serverless] netns`.
    pub ns: String,
    /// The partner's address, a pool's egress IP, a stranger's IP; `None` for serverless.
    pub ip: Option<Ipv4Addr>,
}

/// What to build; see [`Topology::builder`].
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    partner_ip: Ipv4Addr,
    ports: Vec<u16>,
    action: FirewallAction,
    pools: Vec<(String, Ipv4Addr)>,
    strangers: Vec<(String, Ipv4Addr)>,
    serverless: bool,
}

impl TopologyBuilder {
    /// The partner's address ([`PARTNER_IP`] unless set).
    pub fn partner_ip(mut self, ip: Ipv4Addr) -> Self {
        self.partner_ip = ip;
        self
    }

    /// Restricts what the pools may reach on the partner to these TCP ports (default: any port;
    /// the firewall's point is the source address).
    pub fn partner_ports(mut self, ports: &[u16]) -> Self {
        self.ports = ports.to_vec();
        self
    }

    pub fn firewall(mut self, action: FirewallAction) -> Self {
        self.action = action;
        self
    }

    /// A dedicated pool's node: a namespace whose only interface (besides `lo`) holds `egress_ip`
    /// and leads to the partner, whose firewall allows that IP on that link.
    pub fn pool(mut self, name: &str, egress_ip: Ipv4Addr) -> Self {
        self.pools.push((name.to_owned(), egress_ip));
        self
    }

    /// A namespace linked to the partner like a pool's, with an IP the firewall does not allow:
    /// the wrong egress IP.
    pub fn stranger(mut self, name: &str, ip: Ipv4Addr) -> Self {
        self.strangers.push((name.to_owned(), ip));
        self
    }

    /// A namespace for serverless workers with no interface but `lo`: no route anywhere.
    /// Reach the control plane and the lake from it with [`Topology::forward_loopback`].
    pub fn serverless(mut self) -> Self {
        self.serverless = true;
        self
    }

    /// Makes the namespaces, links and the partner's firewall. On an error, whatever was made is
    /// removed before returning.
    pub fn build(self) -> Result<Topology, NetnsError> {
        available().map_err(NetnsError::Unavailable)?;
        self.check()?;
        let (ip, nft) = tools().map_err(NetnsError::Unavailable)?;
        sweep_stale(ip);
        let id = format!("{PREFIX}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut topology = Topology {
            ip,
            nft,
            made: Vec::new(),
            partner: Member {
                role: "partner".into(),
                ns: format!("{id}-partner"),
                ip: Some(self.partner_ip),
            },
            pools: Vec::new(),
            strangers: Vec::new(),
            serverless: None,
            forwards: Mutex::new(Vec::new()),
            closed: false,
        };
        // From here on `topology` owns whatever exists: an early return drops it, and its Drop
        // removes everything made so far.
        let partner = topology.partner.ns.clone();
        topology.add_namespace(&partner)?;
        // Strict reverse-path filtering: a packet claiming a pool's IP must arrive on that pool's
        // link. Sources are what the firewall judges, so they must not be forgeable from a
        // stranger's namespace (where the test runs as root and could bind any address).
        topology.sysctl(&partner, "net.ipv4.conf.all.rp_filter", "1")?;
        topology.sysctl(&partner, "net.ipv4.conf.default.rp_filter", "1")?;
        let mut allowed = Vec::new();
        let peers =
            self.pools.iter().map(|p| ("pool", p)).chain(self.strangers.iter().map(|s| ("stranger", s)));
        for (link, (kind, (name, addr))) in peers.enumerate() {
            let ns = format!("{id}-{kind}-{name}");
            topology.add_namespace(&ns)?;
            let partner_dev = format!("in{link}");
            topology.link(
                (ns.as_str(), "eg0", *addr),
                (partner.as_str(), partner_dev.as_str(), self.partner_ip),
            )?;
            let member = Member { role: format!("{kind}-{name}"), ns, ip: Some(*addr) };
            if kind == "pool" {
                allowed.push((partner_dev, *addr));
                topology.pools.push(member);
            } else {
                topology.strangers.push(member);
            }
        }
        if self.serverless {
            let ns = format!("{id}-serverless");
            topology.add_namespace(&ns)?;
            topology.serverless = Some(Member { role: "serverless".into(), ns, ip: None });
        }
        let rules = ruleset(&allowed, &self.ports, self.action);
        run(ip, &["netns", "exec", &partner, nft, "-f", "-"], Some(&rules))?;
        Ok(topology)
    }

    fn check(&self) -> Result<(), NetnsError> {
        let mut names = std::collections::HashSet::new();
        let mut ips = std::collections::HashSet::from([self.partner_ip]);
        for (name, addr) in self.pools.iter().chain(&self.strangers) {
            let valid = !name.is_empty()
                && name.len() <= 40
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(NetnsError::Invalid(format!(
                    "`{name}` is not a usable name: letters, digits, `-` and `_`, at most 40"
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(NetnsError::Invalid(format!("`{name}` is named twice")));
            }
            if !ips.insert(*addr) {
                return Err(NetnsError::Invalid(format!("{addr} is used twice (each link needs its own)")));
            }
        }
        if self.pools.is_empty() && self.strangers.is_empty() && !self.serverless {
            return Err(NetnsError::Invalid("nothing to build: add a pool, a stranger or serverless".into()));
        }
        Ok(())
    }
}

/// The namespaces of one test, removed when this is dropped.
#[derive(Debug)]
pub struct Topology {
    ip: &'static str,
    nft: &'static str,
    /// Namespaces that exist, in the order they were made.
    made: Vec<String>,
    partner: Member,
    pools: Vec<Member>,
    strangers: Vec<Member>,
    serverless: Option<Member>,
    forwards: Mutex<Vec<Forward>>,
    closed: bool,
}

impl Topology {
    /// A partner at [`PARTNER_IP`] whose firewall rejects (ICMP admin-prohibited) every source
    /// but the pools' egress IPs; add pools, strangers and serverless.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder {
            partner_ip: PARTNER_IP,
            ports: Vec::new(),
            action: FirewallAction::default(),
            pools: Vec::new(),
            strangers: Vec::new(),
            serverless: false,
        }
    }

    pub fn partner(&self) -> &Member {
        &self.partner
    }

    pub fn pool(&self, name: &str) -> Option<&Member> {
        self.pools.iter().find(|m| m.role.strip_prefix("pool-") == Some(name))
    }

    pub fn stranger(&self, name: &str) -> Option<&Member> {
        self.strangers.iter().find(|m| m.role.strip_prefix("stranger-") == Some(name))
    }

    pub fn serverless(&self) -> Option<&Member> {
        self.serverless.as_ref()
    }

    /// Every namespace of the topology (for assertions that they are gone after a drop).
    pub fn namespaces(&self) -> &[String] {
        &self.made
    }

    /// `ip netns exec NS program`: the program and everything it starts run inside `ns`. The
    /// returned command's pid is the program's (`ip` execs in place). `ip netns exec` also
    /// bind-mounts files of `/etc/netns/NS/` over `/etc/` (none exist unless a test makes them)
    /// and remounts `/sys` for the namespace; the working directory and environment are kept.
    pub fn command(&self, ns: &str, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(self.ip);
        command.args(["netns", "exec", ns]).arg(program);
        command
    }

    /// A listening socket inside `ns` (e.g. the partner's API at `PARTNER_IP:443`), for a server
    /// in this process: it sees the real source addresses of its clients.
    pub fn listen(&self, ns: &str, addr: SocketAddr) -> Result<TcpListener, NetnsError> {
        listen_in(ns, addr)
    }

    /// One TCP connection attempt from inside `ns`, its source chosen by that namespace's routes
    /// (a pool's egress IP). The outer error is the harness's; the inner result is the
    /// connection's own, e.g. `ErrorKind::NetworkUnreachable` (errno 101) from serverless,
    /// `ErrorKind::HostUnreachable` (113) from a stranger.
    pub fn connect_from(
        &self,
        ns: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<io::Result<TcpStream>, NetnsError> {
        in_netns(ns, &format!("connecting to {addr}"), move || Ok(TcpStream::connect_timeout(&addr, timeout)))
    }

    /// Relays connections to `listen` inside `ns` to `target` reached from the root namespace
    /// (where this process's other threads are). Returns the bound address (port 0 picks one).
    /// Stopped when the topology is dropped.
    pub fn forward(
        &self,
        ns: &str,
        listen: SocketAddr,
        target: SocketAddr,
    ) -> Result<SocketAddr, NetnsError> {
        let forward = Forward::start(ns, listen, target)?;
        let bound = forward.listen;
        self.forwards.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(forward);
        Ok(bound)
    }

    /// `127.0.0.1:port` inside `ns` leads to `127.0.0.1:port` outside: the control plane, moto,
    /// PostgreSQL under the same URL on both sides.
    pub fn forward_loopback(&self, ns: &str, port: u16) -> Result<(), NetnsError> {
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        self.forward(ns, addr, addr).map(drop)
    }

    /// The main routing tables of `ns`, IPv4 then IPv6, as `ip route` prints them. Serverless's
    /// is empty.
    pub fn routes(&self, ns: &str) -> Result<String, NetnsError> {
        let v4 = run(self.ip, &["-n", ns, "-4", "route", "show", "table", "main"], None)?;
        let v6 = run(self.ip, &["-n", ns, "-6", "route", "show", "table", "main"], None)?;
        Ok(format!("{v4}{v6}"))
    }

    /// The partner firewall's counters.
    pub fn firewall(&self) -> Result<FirewallCounters, NetnsError> {
        let args =
            ["netns", "exec", self.partner.ns.as_str(), self.nft, "-j", "list", "table", "inet", TABLE];
        let json = run(self.ip, &args, None)?;
        parse_counters(&json)
            .map_err(|detail| NetnsError::Parse { command: describe(self.ip, &args), detail })
    }

    /// The partner's ruleset with its counters, as `nft list table` prints it (for failure messages).
    pub fn firewall_text(&self) -> Result<String, NetnsError> {
        run(self.ip, &["netns", "exec", &self.partner.ns, self.nft, "list", "table", "inet", TABLE], None)
    }

    /// Tears down now and says whether anything was left behind (`Drop` can only print it).
    pub fn close(mut self) -> Result<(), NetnsError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), NetnsError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        // Forwards first: a socket keeps its namespace (and its veths) alive after `ip netns
        // del`, until it is closed.
        let forwards = std::mem::take(&mut *self.forwards.lock().unwrap_or_else(|p| p.into_inner()));
        for mut forward in forwards {
            forward.stop();
        }
        let mut first_error = None;
        for ns in self.made.iter().rev() {
            if let Err(e) = remove_namespace(self.ip, ns) {
                first_error.get_or_insert(e);
            }
        }
        let listed = run(self.ip, &["netns", "list"], None)?;
        let left: Vec<String> = self
            .made
            .drain(..)
            .filter(|ns| listed.lines().any(|l| l.split_whitespace().next() == Some(ns.as_str())))
            .collect();
        if !left.is_empty() {
            return Err(NetnsError::Leftover(left));
        }
        first_error.map_or(Ok(()), Err)
    }

    fn add_namespace(&mut self, ns: &str) -> Result<(), NetnsError> {
        run(self.ip, &["netns", "add", ns], None)?;
        self.made.push(ns.to_owned());
        // IPv4 only: no link-local IPv6 addresses or fe80::/64 routes on the veths, so the routing
        // tables hold exactly what the topology says. Set before any interface exists.
        for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
            self.sysctl(ns, key, "1")?;
        }
        // A new namespace copies the root's IPv4 `all`/`default` settings; never route between links.
        self.sysctl(ns, "net.ipv4.ip_forward", "0")?;
        // `lo` starts down: 127.0.0.1 can then be bound but not reached (ENETUNREACH), which
        // would break forwards and every local proxy in the namespace.
        run(self.ip, &["-n", ns, "link", "set", "lo", "up"], None)?;
        Ok(())
    }

    /// A veth pair between two namespaces, made in place (neither end ever appears in the root
    /// namespace, so interface names only need to be unique per namespace), with a /32 address
    /// and a peer route on each side: each end routes to exactly the other.
    fn link(
        &self,
        (ns, dev, addr): (&str, &str, Ipv4Addr),
        (peer_ns, peer_dev, peer_addr): (&str, &str, Ipv4Addr),
    ) -> Result<(), NetnsError> {
        let ip = self.ip;
        run(
            ip,
            &["-n", ns, "link", "add", dev, "type", "veth", "peer", "name", peer_dev, "netns", peer_ns],
            None,
        )?;
        let (local, remote) = (format!("{addr}/32"), format!("{peer_addr}/32"));
        run(ip, &["-n", ns, "addr", "add", &local, "peer", &remote, "dev", dev], None)?;
        run(ip, &["-n", peer_ns, "addr", "add", &remote, "peer", &local, "dev", peer_dev], None)?;
        run(ip, &["-n", ns, "link", "set", dev, "up"], None)?;
        run(ip, &["-n", peer_ns, "link", "set", peer_dev, "up"], None)?;
        Ok(())
    }

    /// Writes `/proc/sys/<key>` from a thread inside `ns`: /proc/sys/net is the namespace of the
    /// thread that opens it, and this needs no `sysctl` binary (procps) in the namespace.
    fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let ipv6 = key.starts_with("net.ipv6.");
        let value = value.to_owned();
        in_netns(ns, &format!("setting {key}"), move || match std::fs::write(&path, value) {
            // A kernel without IPv6 has nothing to turn off.
            Err(e) if ipv6 && e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("network namespace teardown: {e}");
        }
    }
}

/// Whether this machine can make topologies; probed once per process (a namespace with a veth
/// pair and an nft table, made and removed: about 20 ms). Root alone is not enough: a root
/// without CAP_SYS_ADMIN (a default container) fails at `ip netns add` with "mount
/// --make-shared /run/netns failed: Operation not permitted".
pub fn available() -> Result<(), Unavailable> {
    static PROBE: OnceLock<Result<(), Unavailable>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

/// `None` when topologies can be made; otherwise why not, for a test to print as it skips.
/// Panics instead when `SWITCHYARD_TEST_NETNS=required`.
pub fn skip_reason() -> Option<String> {
    match available() {
        Ok(()) => None,
        Err(why) if std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "required") => {
            panic!("{REQUIRED_ENV}=required, but network namespaces are unavailable: {why}")
        }
        Err(why) => Some(why.0),
    }
}

/// Returns from the calling test, printing why, when no topology can be made here.
#[macro_export]
macro_rules! require_netns {
    () => {
        if let Some(why) = $crate::skip_reason() {
            eprintln!("SKIPPED: this test needs network namespaces: {why}");
            return;
        }
    };
}

/// Runs `f` on a new thread that has entered `ns`, and waits for it. Sockets made in `f` stay in
/// `ns` for their whole life, wherever they are used afterwards. The thread ends with `f`, so no
/// other code ever runs in the namespace by accident (never call `setns` on a runtime's thread).
pub fn in_netns<T, F>(ns: &str, what: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> io::Result<T> + Send,
{
    let path = netns_path(ns);
    let file = File::open(&path).map_err(|cause| NetnsError::Enter { ns: ns.to_owned(), cause })?;
    std::thread::scope(|scope| {
        let inside = scope.spawn(move || -> Result<T, NetnsError> {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|errno| NetnsError::Enter { ns: ns.to_owned(), cause: io::Error::from(errno) })?;
            f().map_err(|cause| NetnsError::Io { ns: ns.to_owned(), what: what.to_owned(), cause })
        });
        inside.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A listening socket inside `ns`.
pub fn listen_in(ns: &str, addr: SocketAddr) -> Result<TcpListener, NetnsError> {
    in_netns(ns, &format!("listening on {addr}"), move || TcpListener::bind(addr))
}

fn netns_path(ns: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(ns)
}

fn tools() -> Result<(&'static str, &'static str), Unavailable> {
    let find = |paths: &[&'static str]| paths.iter().copied().find(|p| Path::new(p).is_file());
    let ip = find(IP_PATHS).ok_or_else(|| {
        Unavailable("`ip` is not installed: apt-get install iproute2 (scripts/test does)".into())
    })?;
    let nft = find(NFT_PATHS).ok_or_else(|| {
        Unavailable("`nft` is not installed: apt-get install nftables (scripts/test does)".into())
    })?;
    Ok((ip, nft))
}

fn probe() -> Result<(), Unavailable> {
    let (ip, nft) = tools()?;
    let ns = format!("{PREFIX}-{}-probe", std::process::id());
    let _ = run(ip, &["netns", "del", &ns], None);
    let made = run(ip, &["netns", "add", &ns], None).and_then(|_| {
        run(ip, &["-n", &ns, "link", "add", "a0", "type", "veth", "peer", "name", "b0"], None)?;
        run(ip, &["netns", "exec", &ns, nft, "add", "table", "inet", "probe"], None)
    });
    let _ = run(ip, &["netns", "del", &ns], None);
    made.map(drop).map_err(|e| {
        Unavailable(format!(
            "cannot make a network namespace with a veth pair and an nftables table ({e}); \
             these tests need root with CAP_SYS_ADMIN and CAP_NET_ADMIN"
        ))
    })
}

/// Removes namespaces of processes that no longer run (killed before their `Drop`).
fn sweep_stale(ip: &str) {
    let Ok(listed) = run(ip, &["netns", "list"], None) else { return };
    let me = std::process::id();
    for name in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = owner_pid(name) else { continue };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_namespace(ip, name);
        }
    }
}

/// The pid in `sy-<pid>-…`, for names this module makes (nothing else is ever touched).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let (pid, tail) = rest.split_once('-')?;
    (!tail.is_empty()).then_some(())?;
    pid.parse().ok()
}

/// Kills what runs in `ns` (it would keep the namespace, and a veth, alive unnamed), then deletes it.
fn remove_namespace(ip: &str, ns: &str) -> Result<(), NetnsError> {
    if let Ok(pids) = run(ip, &["netns", "pids", ns], None) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    run(ip, &["netns", "del", ns], None).map(drop)
}

/// Runs a tool with arguments (never through a shell) and returns its standard output.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|cause| NetnsError::Spawn { program: program.to_owned(), cause })?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|cause| NetnsError::Spawn { program: program.to_owned(), cause })?;
    }
    let out =
        child.wait_with_output().map_err(|cause| NetnsError::Spawn { program: program.to_owned(), cause })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            command: describe(program, args),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(program: &str, args: &[&str]) -> String {
    std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

/// The partner's ruleset: `allowed` are (partner-side interface, egress IP) pairs — an IP is
/// accepted only on its own link.
fn ruleset(allowed: &[(String, Ipv4Addr)], ports: &[u16], action: FirewallAction) -> String {
    let ports = match ports {
        [] => "meta l4proto tcp".to_owned(),
        _ => format!("tcp dport {{ {} }}", ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")),
    };
    let accepts: String = allowed
        .iter()
        .map(|(dev, addr)| {
            format!("\t\tiifname \"{dev}\" ip saddr {addr} {ports} counter name \"accepted\" accept\n")
        })
        .collect();
    format!(
        "table inet {TABLE} {{\n\
         \tset sources {{\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic\n\t\tcounter\n\t}}\n\
         \tcounter accepted {{ }}\n\
         \tcounter refused {{ }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy drop;\n\
         \t\tiif \"lo\" accept\n\
         \t\tupdate @sources {{ ip saddr }}\n\
         \t\tct state established,related accept\n\
         {accepts}\
         \t\tcounter name \"refused\"\n\
         \t\t{}\n\
         \t}}\n\
         }}\n",
        action.statement()
    )
}

/// Reads `nft -j list table inet switchyard_partner`: `{"nftables": [{"metainfo": …},
/// {"counter": {"name": "accepted", "packets": N, …}}, {"set": {"name": "sources", "elem":
/// [{"elem": {"val": "203.0.113.10", "counter": {"packets": N, "bytes": M}}}]}}, …]}`. An empty
/// set has no `elem` key.
fn parse_counters(json: &str) -> Result<FirewallCounters, String> {
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = doc.get("nftables").and_then(|v| v.as_array()).ok_or("no `nftables` array")?;
    let mut counters = FirewallCounters::default();
    for item in items {
        if let Some(counter) = item.get("counter") {
            let packets =
                counter.get("packets").and_then(|p| p.as_u64()).ok_or("a counter without packets")?;
            match counter.get("name").and_then(|n| n.as_str()) {
                Some("accepted") => counters.accepted = packets,
                Some("refused") => counters.refused = packets,
                _ => {}
            }
        }
        let Some(set) = item.get("set").filter(|s| s.get("name").and_then(|n| n.as_str()) == Some("sources"))
        else {
            continue;
        };
        for element in set.get("elem").and_then(|e| e.as_array()).into_iter().flatten() {
            let element = element.get("elem").ok_or("a set element without `elem`")?;
            let source: Ipv4Addr = element
                .get("val")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok())
                .ok_or("a set element without an IPv4 `val`")?;
            let packets = element
                .get("counter")
                .and_then(|c| c.get("packets"))
                .and_then(|p| p.as_u64())
                .ok_or("a set element without a counter")?;
            counters.sources.insert(source, packets);
        }
    }
    Ok(counters)
}

/// Relayed connections still open (client, target), to shut down when the forward stops.
type OpenPairs = Mutex<Vec<Weak<(TcpStream, TcpStream)>>>;

/// Connections to a listener inside a namespace, relayed to a target reached from the root
/// namespace. Plain threads: no runtime needed, and a test's tokio runtime is never touched.
#[derive(Debug)]
struct Forward {
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Relayed connections still open, to shut down on stop (each pair closes itself when both
    /// directions end).
    open: Arc<OpenPairs>,
    accept: Option<JoinHandle<()>>,
}

impl Forward {
    fn start(ns: &str, listen: SocketAddr, target: SocketAddr) -> Result<Forward, NetnsError> {
        let io_error = |what: &str| {
            let (ns, what) = (ns.to_owned(), what.to_owned());
            move |cause| NetnsError::Io { ns, what, cause }
        };
        let listener = listen_in(ns, listen)?;
        let bound = listener.local_addr().map_err(io_error("reading the forward's address"))?;
        // Polled, so that stopping needs no connection from inside the namespace to wake it.
        listener.set_nonblocking(true).map_err(io_error("making the forward's listener non-blocking"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<OpenPairs> = Arc::default();
        // Spawned from the caller's thread, so it is in the root namespace: connections to the
        // target are made there.
        let accept = {
            let (stop, open) = (stop.clone(), open.clone());
            std::thread::Builder::new()
                .name(format!("netns-forward-{}", bound.port()))
                .spawn(move || accept_loop(&listener, target, &stop, &open))
                .map_err(io_error("starting the forward's thread"))?
        };
        Ok(Forward { listen: bound, stop, open, accept: Some(accept) })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join(); // the listener closes as the loop returns
        }
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        for pair in open.iter().filter_map(Weak::upgrade) {
            let _ = pair.0.shutdown(Shutdown::Both);
            let _ = pair.1.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, stop: &AtomicBool, open: &OpenPairs) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                match TcpStream::connect_timeout(&target, TARGET_TIMEOUT) {
                    Ok(upstream) => relay(client, upstream, open),
                    // The client sees its connection closed, as with a service that is down.
                    Err(e) => eprintln!("network namespace forward to {target}: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn relay(client: TcpStream, upstream: TcpStream, open: &OpenPairs) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let pair = Arc::new((client, upstream));
    if let Ok(mut open) = open.lock() {
        open.retain(|w| w.strong_count() > 0);
        open.push(Arc::downgrade(&pair));
    }
    let back = pair.clone();
    let _ = std::thread::Builder::new().spawn(move || pipe(&pair.0, &pair.1));
    let _ = std::thread::Builder::new().spawn(move || pipe(&back.1, &back.0));
}

/// Copies one direction until EOF, then passes the EOF on (half-close), as a TCP proxy must.
fn pipe(mut from: &TcpStream, mut to: &TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner_pid() {
        assert_eq!(owner_pid("sy-4242-0-partner"), Some(4242));
        assert_eq!(owner_pid("sy-4242-probe"), Some(4242));
        assert_eq!(owner_pid("sy-4242"), None);
        assert_eq!(owner_pid("sy-x-0-partner"), None);
        assert_eq!(owner_pid("other-4242-0"), None);
        assert_eq!(owner_pid("systemd-1-0"), None);
    }

    #[test]
    fn reads_counters_and_sources_as_nft_prints_them() {
        // `nft -j list table inet …` from nftables 1.0.6 (Debian 12), trimmed.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "switchyard_partner", "handle": 1}},
            {"counter": {"family": "inet", "name": "accepted", "table": "switchyard_partner", "handle": 2, "packets": 3, "bytes": 180}},
            {"counter": {"family": "inet", "name": "refused", "table": "switchyard_partner", "handle": 3, "packets": 5, "bytes": 300}},
            {"set": {"family": "inet", "name": "sources", "table": "switchyard_partner", "type": "ipv4_addr", "handle": 4, "size": 65535,
                     "elem": [{"elem": {"val": "203.0.113.10", "counter": {"packets": 23, "bytes": 4303}}},
                              {"elem": {"val": "203.0.113.66", "counter": {"packets": 4, "bytes": 240}}}],
                     "stmt": [{"counter": null}]}}]}"#;
        let c = parse_counters(json).unwrap();
        assert_eq!((c.accepted, c.refused), (3, 5));
        assert_eq!(c.sources.get(&Ipv4Addr::new(203, 0, 113, 10)), Some(&23));
        assert_eq!(c.sources.get(&Ipv4Addr::new(203, 0, 113, 66)), Some(&4));
        // An empty set has no `elem`.
        let empty = r#"{"nftables": [{"set": {"name": "sources", "stmt": [{"counter": null}]}}]}"#;
        assert!(parse_counters(empty).unwrap().sources.is_empty());
    }

    #[test]
    fn the_ruleset_accepts_each_pool_only_on_its_own_link() {
        let rules = ruleset(&[("in0".into(), DEFAULT_EGRESS_IP)], &[443, 5432], FirewallAction::default());
        assert!(rules.contains("iifname \"in0\" ip saddr 203.0.113.10 tcp dport { 443, 5432 } counter name \"accepted\" accept"), "{rules}");
        assert!(
            rules.contains("policy drop;") && rules.contains("reject with icmpx type admin-prohibited"),
            "{rules}"
        );
    }

    /// The prototype's checks (a)–(d), in Rust: run as root with iproute2 and nftables.
    #[test]
    fn a_packet_goes_only_where_the_topology_says() {
        crate::require_netns!();
        let topology = Topology::builder()
            .pool("egress-a", DEFAULT_EGRESS_IP)
            .stranger("wrong", Ipv4Addr::new(203, 0, 113, 66))
            .serverless()
            .build()
            .unwrap();
        let partner = SocketAddr::from((PARTNER_IP, 8443));
        let listener = topology.listen(&topology.partner().ns, partner).unwrap();
        let server = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer));
        let t = Duration::from_secs(3);

        let pool = topology.pool("egress-a").unwrap().ns.clone();
        let stream = topology.connect_from(&pool, partner, t).unwrap().expect("the pool reaches the partner");
        assert_eq!(stream.local_addr().unwrap().ip(), DEFAULT_EGRESS_IP);
        assert_eq!(server.join().unwrap().unwrap().ip(), DEFAULT_EGRESS_IP);

        let serverless = topology.serverless().unwrap().ns.clone();
        let err = topology.connect_from(&serverless, partner, t).unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NetworkUnreachable, "{err}");
        assert_eq!(topology.routes(&serverless).unwrap(), "", "serverless has no route at all");

        let wrong = topology.stranger("wrong").unwrap().ns.clone();
        let err = topology.connect_from(&wrong, partner, t).unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::HostUnreachable, "{err}");

        let counters = topology.firewall().unwrap();
        assert_eq!(counters.accepted, 1, "{}", topology.firewall_text().unwrap());
        assert_eq!(counters.refused, 1);
        let sources: Vec<Ipv4Addr> = counters.sources.keys().copied().collect();
        assert_eq!(sources, [DEFAULT_EGRESS_IP, Ipv4Addr::new(203, 0, 113, 66)]);

        let names = topology.namespaces().to_vec();
        topology.close().unwrap();
        let listed = run(tools().unwrap().0, &["netns", "list"], None).unwrap();
        assert!(names.iter().all(|ns| !listed.contains(ns.as_str())), "{listed}");
    }

    /// A forward makes a root-namespace service reachable at the same address inside, and its
    /// socket does not outlive the topology.
    #[test]
    fn forwards_reach_the_root_namespace_and_close_with_the_topology() {
        crate::require_netns!();
        let service = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = service.local_addr().unwrap().port();
        let topology = Topology::builder().serverless().build().unwrap();
        let serverless = topology.serverless().unwrap().ns.clone();
        topology.forward_loopback(&serverless, port).unwrap();
        let inside = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let _client = topology.connect_from(&serverless, inside, Duration::from_secs(3)).unwrap().unwrap();
        let (_, peer) = service.accept().unwrap();
        assert!(peer.ip().is_loopback());
        topology.close().unwrap();
    }
}
