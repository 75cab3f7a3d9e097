//! The gateway's proxy against tinyproxy (Debian's package), in the same run and the same harness:
//! new tunnel per request (CONNECT + one request + close), many requests over long-lived tunnels,
//! and the latency a tunnel adds over a direct connection. The origin is a minimal HTTP server on
//! loopback; the load comes from this process, which shares the machine's two cores with the proxy
//! under test, so absolute figures are lower than with a separate load generator — compare ratios.

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
    let mut s = open(proxy, origin).await.expect("tunnel");
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(REQUEST).await.unwrap();
        assert!(read_response(&mut s).await);
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    samples[n / 2]
}

/// The child process, and the folder holding its configuration (kept until it exits).
struct Tinyproxy(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tinyproxy() -> Option<(Tinyproxy, SocketAddr)> {
    let exe = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let conf = dir.path().join("tinyproxy.conf");
    std::fs::write(&conf, format!("Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 1024\nAllow 127.0.0.1\nLogLevel Critical\n")).ok()?;
    let child = Command::new(exe)
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((Tinyproxy(child, dir), SocketAddr::from(([127, 0, 0, 1], port))));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

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

pub(crate) async fn run() {
    let origin = origin().await;
    let gw = gateway(origin).await;
    let tiny = tinyproxy();
    if tiny.is_none() {
        println!("  tinyproxy: not installed (apt-get install tinyproxy) — gateway figures only");
    }
    let tiny_addr = tiny.as_ref().map(|t| t.1);
    let secs = 5;
    let mut rows: Vec<(&str, Option<SocketAddr>)> = vec![("direct", None), ("gateway", Some(gw))];
    if let Some(addr) = tiny_addr {
        rows.push(("tinyproxy", Some(addr)));
    }
    println!("  {:<10} {:>16} {:>22} {:>14}", "", "new tunnels/s", "requests/s (64 tunnels)", "median RTT");
    let mut results = Vec::new();
    for (name, proxy) in &rows {
        let t = tunnels_per_second(*proxy, origin, 32, secs).await;
        let r = requests_per_second(*proxy, origin, 64, secs).await;
        let l = median_rtt_us(*proxy, origin, 2000).await;
        println!("  {name:<10} {t:>16.0} {r:>22.0} {l:>11.0} µs");
        results.push((*name, t, r, l));
    }
    let get = |n: &str| results.iter().find(|r| r.0 == n).copied();
    if let (Some(g), Some(d)) = (get("gateway"), get("direct")) {
        println!(
            "  gateway adds {:.0} µs median latency over a direct connection (target ≤ 100 µs)",
            g.3 - d.3
        );
        println!("  gateway long-lived tunnels: {:.0} requests/s (target ≥ 60,000)", g.2);
        if let Some(t) = get("tinyproxy") {
            println!(
                "  gateway vs tinyproxy: {:.2}× tunnel setups/s (target ≥ 1.5×), {:.2}× requests/s over tunnels",
                g.1 / t.1,
                g.2 / t.2
            );
        }
    }
}
