//! The HTTP proxy every node runs (and `switchyard gateway` runs standalone): `CONNECT host:port`
//! tunnels and plain-HTTP forwarding, each connection made through the node's [`Dialer`] — the
//! same policy, source-IP binding, breakers and audit as connectors get. `run` tasks reach their
//! destinations through it via `HTTPS_PROXY`/`HTTP_PROXY`. Connections are bounded, idle tunnels
//! time out, and optional credentials are checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::Error;
use crate::dial::{Dialer, Target};

type Body = BoxBody<Bytes, hyper::Error>;

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Most client connections at once; more wait for a free place.
    pub max_connections: usize,
    /// A tunnel with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// `user:password` that clients must send as Basic `Proxy-Authorization`, if set.
    pub credentials: Option<String>,
    /// Without `credentials`, a client's proxy user name labels its connections (the node gives
    /// each attempt its own, `attempt-ID`), and refusals are kept here for it to look up.
    pub refusals: RefusalLog,
}

/// Why the gateway refused a connection, as the task that asked should report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub class: switchyard_config::FailureClass,
    pub message: String,
    pub hint: String,
}

/// Refusals by client label, taken once by whoever reports the task.
#[derive(Debug, Clone, Default)]
pub struct RefusalLog(Arc<std::sync::Mutex<std::collections::HashMap<String, Refusal>>>);

impl RefusalLog {
    fn record(&self, label: &str, error: &Error) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(
                label.to_owned(),
                Refusal { class: error.class(), message: error.to_string(), hint: error.hint() },
            );
        }
    }

    /// The last refusal for `label`, removing it.
    pub fn take(&self, label: &str) -> Option<Refusal> {
        self.0.lock().ok()?.remove(label)
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            credentials: None,
            refusals: RefusalLog::default(),
        }
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    dialer: Dialer,
    config: ProxyConfig,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = shutdown.changed() => return Ok(()),
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.changed() => return Ok(()),
        };
        // Tunnels carry request/response traffic: a small write must not wait for the previous
        // one's ACK (Nagle), which costs a delayed-ACK round trip per exchange.
        let _ = stream.set_nodelay(true);
        let dialer = dialer.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handle(req, dialer.clone(), config.clone(), peer));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "Proxy connection ended with an error.");
            }
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}

/// The answer for a dial that failed: 403 for policy denials, 502 otherwise, with the reason.
fn refusal(error: &Error) -> Response<Body> {
    let status =
        if matches!(error, Error::Denied { .. }) { StatusCode::FORBIDDEN } else { StatusCode::BAD_GATEWAY };
    text(status, format!("switchyard gateway: {error} ({})\nhint: {}\n", error.class(), error.hint()))
}

/// The user name of Basic `Proxy-Authorization`, if any.
fn client_user(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(PROXY_AUTHORIZATION)?.to_str().ok()?;
    let decoded = decode_base64(value.strip_prefix("Basic ")?.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or("").to_owned()).filter(|u| !u.is_empty())
}

fn authorized(req: &Request<Incoming>, config: &ProxyConfig) -> bool {
    let Some(expected) = &config.credentials else { return true };
    let Some(value) = req.headers().get(PROXY_AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value
        .strip_prefix("Basic ")
        .is_some_and(|b64| decode_base64(b64.trim()).is_some_and(|d| d == expected.as_bytes()))
}

async fn handle(
    req: Request<Incoming>,
    dialer: Dialer,
    config: Arc<ProxyConfig>,
    peer: SocketAddr,
) -> Result<Response<Body>, hyper::Error> {
    if !authorized(&req, &config) {
        let mut r = text(StatusCode::PROXY_AUTHENTICATION_REQUIRED, "proxy credentials required\n".into());
        r.headers_mut().insert(PROXY_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"switchyard\""));
        return Ok(r);
    }
    let label = if config.credentials.is_none() { client_user(&req) } else { None };
    let refused = |e: &Error| {
        if let Some(label) = &label {
            config.refusals.record(label, e);
        }
        refusal(e)
    };
    if req.method() == Method::CONNECT {
        return Ok(tunnel(req, dialer, config.idle_timeout, peer, label.clone(), refused).await);
    }
    Ok(forward(req, dialer, label.clone(), refused).await)
}

async fn tunnel(
    req: Request<Incoming>,
    dialer: Dialer,
    idle: Duration,
    peer: SocketAddr,
    label: Option<String>,
    refused: impl Fn(&Error) -> Response<Body>,
) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n".into());
    };
    let target = match Target::parse(
        authority.host().trim_start_matches('[').trim_end_matches(']'),
        authority.port_u16().unwrap_or(443),
    ) {
        Ok(t) => Target { task: label, ..t },
        Err(e) => return refused(&e),
    };
    let dialed = match dialer.connect(&target).await {
        Ok(d) => d,
        Err(e) => return refused(&e),
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let started = std::time::Instant::now();
                let (up, down) = match upgraded.downcast::<TokioIo<TcpStream>>() {
                    // The client's own socket back from hyper: the copy then reads and writes the
                    // two sockets directly, not through hyper's boxed IO and a shared-half lock.
                    Ok(parts) => {
                        let (mut client, mut upstream) = (parts.io.into_inner(), dialed.stream);
                        let early = parts.read_buf;
                        let sent = if early.is_empty() {
                            Ok(())
                        } else {
                            tokio::io::AsyncWriteExt::write_all(&mut upstream, &early).await
                        };
                        match sent {
                            Ok(()) => {
                                let (cr, cw) = client.split();
                                let (ur, uw) = upstream.split();
                                // Both sockets are closed right after, which sends their
                                // FINs: no `shutdown` calls first (two syscalls a tunnel).
                                let (up, down) = pipe(cr, cw, ur, uw, idle, false).await;
                                (up + early.len() as u64, down)
                            }
                            Err(_) => (0, 0),
                        }
                    }
                    Err(upgraded) => {
                        let (cr, cw) = tokio::io::split(TokioIo::new(upgraded));
                        let (ur, uw) = tokio::io::split(dialed.stream);
                        pipe(cr, cw, ur, uw, idle, true).await
                    }
                };
                dialer.closed(&target, &dialed.info, up + down, started.elapsed().as_millis() as u64);
                tracing::debug!(%peer, destination = %target.label(), bytes_up = up, bytes_down = down, ms = started.elapsed().as_millis() as u64, "Tunnel closed.");
            }
            Err(e) => tracing::debug!(%peer, error = %e, "CONNECT upgrade failed."),
        }
    });
    Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed())
}

/// Copies both ways until either side closes (RFC 9110 §9.3.6: a tunnel ends when either side
/// does) or nothing moves for `idle`, then shuts both write sides down when `shutdown` (a caller
/// about to close the sockets needs not). Returns bytes each way. The idle timer is armed once and
/// re-armed only when it fires, not around every read: a timer per read was a timer-wheel insert
/// and removal per request over a long-lived tunnel.
async fn pipe<AR, AW, BR, BW>(
    mut ar: AR,
    mut aw: AW,
    mut br: BR,
    mut bw: BW,
    idle: Duration,
    shutdown: bool,
) -> (u64, u64)
where
    AR: tokio::io::AsyncRead + Unpin,
    AW: tokio::io::AsyncWrite + Unpin,
    BR: tokio::io::AsyncRead + Unpin,
    BW: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;
    let (mut up, mut down) = (0u64, 0u64);
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    let mut last = Instant::now();
    let timer = tokio::time::sleep_until(last + idle);
    tokio::pin!(timer);
    loop {
        let step = tokio::select! {
            n = ar.read(&mut abuf) => match n { Ok(0) | Err(_) => None, Ok(n) => bw.write_all(&abuf[..n]).await.ok().map(|_| (n, 0)) },
            n = br.read(&mut bbuf) => match n { Ok(0) | Err(_) => None, Ok(n) => aw.write_all(&bbuf[..n]).await.ok().map(|_| (0, n)) },
            () = &mut timer => {
                if last.elapsed() >= idle {
                    None
                } else {
                    timer.as_mut().reset(last + idle);
                    continue;
                }
            }
        };
        match step {
            Some((u, d)) => {
                up += u as u64;
                down += d as u64;
                last = Instant::now();
            }
            None => break,
        }
    }
    if shutdown {
        let _ = aw.shutdown().await;
        let _ = bw.shutdown().await;
    }
    (up, down)
}

/// Plain HTTP through the proxy (absolute-form request URI).
async fn forward(
    mut req: Request<Incoming>,
    dialer: Dialer,
    label: Option<String>,
    refused: impl Fn(&Error) -> Response<Body>,
) -> Response<Body> {
    let Some(host) = req.uri().host().map(str::to_owned) else {
        return text(
            StatusCode::BAD_REQUEST,
            "a proxied request needs an absolute URI (http://host/…)\n".into(),
        );
    };
    if req.uri().scheme_str() != Some("http") {
        return text(StatusCode::BAD_REQUEST, "only http:// is forwarded; use CONNECT for https\n".into());
    }
    let port = req.uri().port_u16().unwrap_or(80);
    let target = match Target::parse(&host, port) {
        Ok(t) => Target { task: label, ..t },
        Err(e) => return refused(&e),
    };
    let dialed = match dialer.connect(&target).await {
        Ok(d) => d,
        Err(e) => return refused(&e),
    };
    let path = req.uri().path_and_query().map_or("/".to_owned(), |p| p.to_string());
    *req.uri_mut() = path.parse().unwrap_or_default();
    req.headers_mut().remove(PROXY_AUTHORIZATION);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(dialed.stream)).await {
        Ok(pair) => pair,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("switchyard gateway: {e}\n")),
    };
    tokio::spawn(conn);
    match sender.send_request(req).await {
        Ok(response) => response.map(|b| b.boxed()),
        Err(e) => text(StatusCode::BAD_GATEWAY, format!("switchyard gateway: {e}\n")),
    }
}

/// Standard base64 decoding (for Basic credentials; also the serverless refusal proxy's).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_credentials() {
        assert_eq!(decode_base64("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert!(decode_base64("!!").is_none());
    }
}
