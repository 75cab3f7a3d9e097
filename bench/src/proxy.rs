//! The gateway's proxy against tinyproxy (Debian's package) and direct connections, each in its own
//! process: the load generator, the origin and the proxy under test are three processes, pinned with
//! `taskset` when the machine has two cores or more (the proxy alone on CPU 0; load and origin on
//! CPU 1), so the figures are the proxy's, not a shared runtime's. Both proxies run with the same
//! one allowed destination (tinyproxy: `FilterDefaultDeny` with a filter naming only the origin;
//! the gateway: its egress policy); the gateway binds its outgoing connections to the egress IP
//! 127.0.0.2 and audits every tunnel (tinyproxy cannot bind at these rates: see [`tinyproxy`]). Measured alternately in each round: new tunnels per second
//! (CONNECT + one request + close), requests per second over 64 long-lived tunnels, and the
//! median round trip over one tunnel; medians over the rounds, ratios to tinyproxy and to direct.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: origin\r\n\r\n";

/// A keep-alive origin answering every request with `RESPONSE`.
async fn origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if s.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn read_response(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.ends_with(b"ok") {
            return true;
        }
    }
}

/// Opens a tunnel to `origin` through `proxy` (or a direct connection when `proxy` is `None`).
async fn open(proxy: Option<SocketAddr>, origin: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(proxy.unwrap_or(origin)).await.ok()?;
    let _ = s.set_nodelay(true);
    if proxy.is_some() {
        s.write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if !got.starts_with(b"HTTP/1.1 200") && !got.starts_with(b"HTTP/1.0 200") {
            return None;
        }
    }
    Some(s)
}

/// New tunnel per request, `workers` at a time, for `secs`: completed requests per second.
async fn tunnels_per_second(proxy: Option<SocketAddr>, origin: SocketAddr, workers: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for _ in 0..workers {
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            while Instant::now() < until {
                if let Some(mut s) = open(proxy, origin).await {
                    if s.write_all(REQUEST).await.is_ok() && read_response(&mut s).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

/// Requests per second over `tunnels` long-lived tunnels, one request in flight on each.
async fn requests_per_second(
    proxy: Option<SocketAddr>,
    origin: SocketAddr,
    tunnels: usize,
    secs: u64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for _ in 0..tunnels {
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let Some(mut s) = open(proxy, origin).await else { return };
            while Instant::now() < until {
                if s.write_all(REQUEST).await.is_err() || !read_response(&mut s).await {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

/// Median round trip of one request at a time over one tunnel (µs).
async fn median_rtt_us(proxy: Option<SocketAddr>, origin: SocketAddr, n: usize) -> f64 {
    let Some(mut s) = open(proxy, origin).await else { return f64::NAN };
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if s.write_all(REQUEST).await.is_err() || !read_response(&mut s).await {
            return f64::NAN;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    samples[n / 2]
}

/// A child process killed when dropped, with the folder holding its configuration.
struct Proc(Child, #[allow(dead_code)] Option<tempfile::TempDir>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program` pinned to `cpu` with taskset when the machine has two cores or more and taskset is
/// there; unpinned otherwise.
fn pinned(cpu: usize, program: &std::path::Path) -> Command {
    if super::cores() >= 2 && std::path::Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.arg("-c").arg(cpu.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pinning() -> &'static str {
    if super::cores() >= 2 && std::path::Path::new("/usr/bin/taskset").exists() {
        "proxy on CPU 0, load generator and origin on CPU 1 (taskset)"
    } else {
        "unpinned (fewer than two cores, or no taskset)"
    }
}

/// Starts this benchmark binary as `proxy-child ROLE ARGS…` on `cpu`, and reads the address it
/// prints on its first line.
fn spawn_child(cpu: usize, args: &[&str]) -> (Proc, SocketAddr) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = pinned(cpu, &exe)
        .arg("proxy-child")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn benchmark child");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .expect("child address");
    let addr = line.trim().parse().unwrap_or_else(|_| panic!("child printed `{line}`, not an address"));
    (Proc(child, None), addr)
}

fn tinyproxy(origin: SocketAddr) -> Option<(Proc, SocketAddr)> {
    let exe = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.exists())?;
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let conf = dir.path().join("tinyproxy.conf");
    let filter = dir.path().join("filter");
    // The same one allowed destination as the gateway's policy. No `Bind 127.0.0.2`: with it,
    // tinyproxy binds each outgoing socket to the address with port 0 before connecting, and once
    // the TIME_WAIT sockets of a few seconds of new tunnels hold the ports it fails every tunnel
    // with EADDRINUSE (seen here: 0 tunnels/s in the rounds after the gateway's). Without it,
    // tinyproxy leaves from 127.0.0.1 and is spared the source-IP binding the gateway does.
    std::fs::write(&filter, format!("^{}$\n", origin.ip().to_string().replace('.', "\\."))).ok()?;
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 1024\nAllow 127.0.0.1\n\
             LogLevel Critical\nFilter \"{}\"\nFilterDefaultDeny Yes\nFilterURLs No\nConnectPort {}\n",
            filter.display(),
            origin.port()
        ),
    )
    .ok()?;
    let child = pinned(0, exe)
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((Proc(child, Some(dir)), SocketAddr::from(([127, 0, 0, 1], port))));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The gateway's proxy with audit, policy (one allowed destination) and source-IP binding on.
async fn gateway(origin: SocketAddr) -> SocketAddr {
    use switchyard_gateway::audit::AuditSink;
    use switchyard_gateway::dial::{Dialer, DialerConfig};
    use switchyard_gateway::identity::Identities;
    use switchyard_gateway::policy::{Enforcer, Mode};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.yaml");
    std::fs::write(
        &path,
        format!(
            "destinations:\n  - {{ name: origin, host: 127.0.0.1, ports: [{}], egress_ips: [127.0.0.2] }}\n",
            origin.port()
        ),
    )
    .unwrap();
    let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
        egress: Some(path),
        env: Some(Default::default()),
        ..Default::default()
    })
    .unwrap();
    let (audit, mut events) = AuditSink::channel();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let dialer = Dialer::new(
        Enforcer::new(inputs.policy.policy, "127.0.0.2".parse().unwrap(), Mode::Enforce),
        Arc::new(Identities::default()),
        audit,
        DialerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    tokio::spawn(switchyard_gateway::proxy::serve(listener, dialer, Default::default(), rx));
    addr
}

/// `proxy-child origin` | `proxy-child gateway ORIGIN` | `proxy-child load TARGET ORIGIN MODE SECS`:
/// the origin and the gateway print their address and serve until killed; the load generator
/// prints its figure (per second, or µs for `rtt`) and exits.
pub(crate) fn child(args: &[String]) {
    let rt = super::runtime();
    match args.first().map(String::as_str) {
        Some("origin") => rt.block_on(async {
            println!("{}", origin().await);
            std::future::pending::<()>().await
        }),
        Some("gateway") => rt.block_on(async {
            println!("{}", gateway(args[1].parse().expect("origin address")).await);
            std::future::pending::<()>().await
        }),
        Some("load") => {
            let proxy = (args[1] != "direct").then(|| args[1].parse().expect("proxy address"));
            let origin = args[2].parse().expect("origin address");
            let secs: u64 = args[4].parse().expect("seconds");
            let figure = rt.block_on(async {
                match args[3].as_str() {
                    "tunnels" => tunnels_per_second(proxy, origin, 32, secs).await,
                    "requests" => requests_per_second(proxy, origin, 64, secs).await,
                    _ => median_rtt_us(proxy, origin, 2000).await,
                }
            });
            println!("{figure}");
        }
        other => panic!("unknown proxy-child role {other:?}"),
    }
}

/// CPU time (user + system, µs) of process `pid` and of its children that are still running
/// (threads are counted in their process), from /proc: what a proxy spent while the load ran.
fn cpu_us(pid: u32) -> Option<f64> {
    let ticks = |stat: &str| -> Option<(u32, f64)> {
        // Fields after the command name (which may hold spaces) end with `)`.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = fields.get(1)?.parse().ok()?;
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((ppid, utime + stime))
    };
    // Linux reports these in clock ticks of USER_HZ, 100 per second on every architecture.
    const TICK_US: f64 = 10_000.0;
    let own = ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?.1;
    let children: f64 = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| ticks(&s))
        .filter(|(ppid, _)| *ppid == pid)
        .map(|(_, t)| t)
        .sum();
    Some((own + children) * TICK_US)
}

/// One load-generator run on CPU 1: its figure.
fn load(target: &str, origin: SocketAddr, mode: &str, secs: u64) -> f64 {
    let exe = std::env::current_exe().expect("current exe");
    let out = pinned(1, &exe)
        .args(["proxy-child", "load", target, &origin.to_string(), mode, &secs.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("load generator");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn run() {
    let rounds: usize = std::env::var("SWITCHYARD_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let secs = 3;
    println!("  processes: {}; {rounds} rounds, {secs} s per figure, targets alternating", pinning());
    let (_origin_proc, origin) = spawn_child(1, &["origin"]);
    let (_gateway_proc, gw) = spawn_child(0, &["gateway", &origin.to_string()]);
    let tiny = tinyproxy(origin);
    if tiny.is_none() {
        println!("  tinyproxy: not installed (apt-get install tinyproxy; bench/run installs it) — no ratio");
    }
    // (name, address, the proxy's pid for its CPU time)
    let mut targets: Vec<(&str, String, Option<u32>)> =
        vec![("direct", "direct".into(), None), ("gateway", gw.to_string(), Some(_gateway_proc.0.id()))];
    if let Some((p, addr)) = &tiny {
        targets.push(("tinyproxy", addr.to_string(), Some(p.0.id())));
    }
    // figures[target] = (tunnels/s, requests/s, rtt µs) per round
    let mut figures: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); targets.len()];
    // The proxy's CPU µs per new tunnel, per round: when the load generator cannot saturate the
    // proxy (one core for the load and the origin), this is the proxy's own cost.
    let mut cost: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        for k in 0..targets.len() {
            // Rotate the order each round so no target always runs first or last.
            let i = (k + round) % targets.len();
            let (name, target, pid) = &targets[i];
            let before = pid.and_then(cpu_us);
            let t = load(target, origin, "tunnels", secs);
            if let (Some(b), Some(a)) = (before, pid.and_then(cpu_us)) {
                cost[i].push((a - b) / (t * secs as f64));
            }
            let r = load(target, origin, "requests", secs);
            let l = load(target, origin, "rtt", secs);
            println!(
                "  round {}: {name:<10} {t:>10.0} new tunnels/s {r:>10.0} requests/s {l:>6.0} µs",
                round + 1
            );
            figures[i].0.push(t);
            figures[i].1.push(r);
            figures[i].2.push(l);
        }
    }
    let med: Vec<(f64, f64, f64)> =
        figures.into_iter().map(|(t, r, l)| (median(t), median(r), median(l))).collect();
    let cost: Vec<f64> = cost.into_iter().map(median).collect();
    let find = |n: &str| targets.iter().position(|t| t.0 == n).map(|i| med[i]);
    let cost_of = |n: &str| targets.iter().position(|t| t.0 == n).map(|i| cost[i]).filter(|c| c.is_finite());
    let (direct, tiny_m) = (find("direct").unwrap(), find("tinyproxy"));
    println!(
        "  {:<10} {:>14} {:>9} {:>9} {:>24} {:>9} {:>9} {:>11}",
        "median",
        "new tunnels/s",
        "÷ tiny",
        "÷ direct",
        "requests/s (64 tunnels)",
        "÷ tiny",
        "÷ direct",
        "RTT"
    );
    for (i, (name, _, _)) in targets.iter().enumerate() {
        let (t, r, l) = med[i];
        let vs = |x: f64, y: Option<f64>| match y {
            Some(y) if y > 0.0 && x.is_finite() => format!("{:.2}×", x / y),
            _ => "-".to_owned(),
        };
        println!(
            "  {name:<10} {t:>14.0} {:>9} {:>9} {r:>24.0} {:>9} {:>9} {l:>8.0} µs",
            vs(t, tiny_m.map(|m| m.0)),
            vs(t, Some(direct.0)),
            vs(r, tiny_m.map(|m| m.1)),
            vs(r, Some(direct.1)),
        );
    }
    for name in ["gateway", "tinyproxy"] {
        if let Some(c) = cost_of(name) {
            println!(
                "  {name:<10} CPU per new tunnel: {c:>6.1} µs (median of the rounds) → {:>7.0} new tunnels/s per core",
                1e6 / c
            );
        }
    }
    if let Some(g) = find("gateway") {
        if let Some(t) = tiny_m.filter(|t| t.0 > 0.0) {
            let tunnels = g.0 / t.0;
            println!(
                "  goal new tunnels ≥ 1.5× tinyproxy: {tunnels:.2}× measured — {}; direct connections reach only {:.2}× tinyproxy here (the load generator and origin share one core: the ceiling)",
                if tunnels >= 1.5 { "met" } else { "not met" },
                direct.0 / t.0
            );
        }
        if let (Some(gc), Some(tc)) = (cost_of("gateway"), cost_of("tinyproxy")) {
            println!(
                "  per core (proxy CPU per tunnel): the gateway sets up {:.2}× tinyproxy's tunnels — {}",
                tc / gc,
                if tc / gc >= 1.5 { "met" } else { "not met" }
            );
        }
        println!(
            "  goal requests over long-lived tunnels ≥ 2× squid's ~56k/s (112,000/s): {:.0}/s — {}",
            g.1,
            if g.1 >= 112_000.0 { "met" } else { "not met" }
        );
        println!("  gateway adds {:.0} µs median round trip over a direct connection", g.2 - direct.2);
    }
}
