//! The demo's stand-in for a healthcare partner's claims API, behaving like the ones in the case
//! study: HTTPS that requires a client certificate from the partner's CA, and a firewall
//! allowlist of one static source address. Everything else (shared, rotating serverless egress)
//! is turned away. It runs in the demo's process so that nothing has to be installed.
//!
//! A refused source still completes the TLS handshake and gets `403` with a JSON reason, the way
//! nginx's `allow`/`deny` answers: the ingestion then reports an `access` failure naming the
//! egress IP, which is the message an operator needs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::pki::Pki;

/// Pages of claims the API serves, and records per page.
pub(crate) const PAGES: usize = 3;
pub(crate) const PER_PAGE: usize = 250;
/// Rows (0-based) with a negative amount, a missing member, and an unexpected status: the bad
/// records a real feed carries, for the expectations to catch. Disjoint, so each row breaks one
/// rule and the counts do not depend on the order rules are applied in.
const NEGATIVE_AMOUNT: [usize; 6] = [41, 177, 298, 405, 566, 702];
const NO_MEMBER: [usize; 5] = [12, 260, 333, 512, 689];
const ODD_STATUS: [usize; 3] = [90, 391, 640];
const PROVIDERS: [&str; 6] = [
    "Northside Clinic",
    "Lakeview Hospital",
    "Cedar Family Practice",
    "Riverside Imaging",
    "Summit Orthopedics",
    "Harbor Pediatrics",
];
/// The path of the claims feed.
pub(crate) const PATH: &str = "/v1/claims";

/// What the API did with one connection or request.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) peer: SocketAddr,
    /// `None`: served; `Some(reason)`: refused.
    pub(crate) refused: Option<String>,
}

/// The API's own access log, shared with the demo's summary.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartnerLog(Arc<Mutex<Vec<Entry>>>);

impl PartnerLog {
    fn push(&self, peer: SocketAddr, refused: Option<String>) {
        match &refused {
            Some(reason) => tracing::info!(%peer, %reason, "Partner API refused a client."),
            None => tracing::debug!(%peer, "Partner API served a page."),
        }
        if let Ok(mut log) = self.0.lock() {
            log.push(Entry { peer, refused });
        }
    }

    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Pages served, by source address.
    pub(crate) fn served(&self) -> HashMap<IpAddr, usize> {
        let mut served = HashMap::new();
        for e in self.entries().iter().filter(|e| e.refused.is_none()) {
            *served.entry(e.peer.ip()).or_default() += 1;
        }
        served
    }
}

/// The running API; it stops when dropped.
#[derive(Debug)]
pub(crate) struct Partner {
    pub(crate) addr: SocketAddr,
    pub(crate) log: PartnerLog,
    _stop: watch::Sender<bool>,
}

impl Partner {
    pub(crate) fn url(&self) -> String {
        format!("https://{}{PATH}", self.addr)
    }
}

/// Starts the API on `listener` (a free port of 127.0.0.1, or the partner's address inside its
/// network namespace with `--netns`), accepting clients with a certificate from the demo's CA
/// that connect from `allowed`.
pub(crate) async fn start(
    pki: &Pki,
    allowed: IpAddr,
    listener: std::net::TcpListener,
) -> anyhow::Result<Partner> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).context("adding the demo CA to the partner API's trust store")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("the partner API's client-certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the partner API's TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server_cert.clone()], pki.server_key())
        .context("the partner API's server certificate")?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    listener.set_nonblocking(true).context("the partner API's listener")?;
    let listener = TcpListener::from_std(listener).context("the partner API's listener")?;
    let addr = listener.local_addr()?;
    let log = PartnerLog::default();
    let (stop, mut stopped) = watch::channel(false);
    let served = log.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "Partner API: accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => return,
            };
            tokio::spawn(connection(tcp, peer, acceptor.clone(), allowed, served.clone()));
        }
    });
    Ok(Partner { addr, log, _stop: stop })
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    allowed: IpAddr,
    log: PartnerLog,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return log.push(peer, Some(format!("TLS handshake failed: {e}"))),
        Err(_) => return log.push(peer, Some("no TLS handshake within 10s".into())),
    };
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let log = log.clone();
        async move { Ok::<_, Infallible>(respond(&request, peer, allowed, &log)) }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
}

fn respond(
    request: &Request<Incoming>,
    peer: SocketAddr,
    allowed: IpAddr,
    log: &PartnerLog,
) -> Response<Full<Bytes>> {
    if peer.ip() != allowed {
        let reason =
            format!("source address {} is not on the allowlist (only {allowed}); answered 403", peer.ip());
        log.push(peer, Some(reason));
        let body = json!({
            "error": "forbidden",
            "message": format!("connections from {} are not allowed; this API accepts only {allowed}", peer.ip()),
        });
        return reply(StatusCode::FORBIDDEN, &body);
    }
    if request.method() != hyper::Method::GET || request.uri().path() != PATH {
        log.push(peer, Some(format!("no such resource: {} {}", request.method(), request.uri().path())));
        return reply(
            StatusCode::NOT_FOUND,
            &json!({ "error": "not_found", "message": format!("try GET {PATH}") }),
        );
    }
    let cursor = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("cursor="))
        .map(str::to_owned);
    let page = match cursor.as_deref() {
        None => 0,
        Some(c) => match c.strip_prefix('p').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if (2..=PAGES).contains(&n) => n - 1,
            _ => {
                log.push(peer, Some(format!("unknown cursor `{c}`")));
                return reply(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": "bad_cursor", "message": format!("unknown cursor `{c}`") }),
                );
            }
        },
    };
    log.push(peer, None);
    let next = (page + 1 < PAGES).then(|| format!("p{}", page + 2));
    let data: Vec<Value> = (page * PER_PAGE..(page + 1) * PER_PAGE).map(claim).collect();
    reply(StatusCode::OK, &json!({ "data": data, "next": next }))
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// Claim `i` of the feed: deterministic, so a run's tables can be checked exactly.
fn claim(i: usize) -> Value {
    let cents = 2_500 + (i * 7_919) % 180_000;
    let amount = cents as f64 / 100.0;
    let day =
        chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default() + chrono::Days::new((i % 180) as u64);
    let member = (!NO_MEMBER.contains(&i)).then(|| format!("M{:06}", 100_000 + (i * 104_729) % 50_000));
    let status = if ODD_STATUS.contains(&i) {
        "in_review"
    } else {
        ["paid", "paid", "paid", "pending", "denied"][i % 5]
    };
    json!({
        "claim_id": format!("CLM-{:05}", i + 1),
        "member_id": member,
        "provider": PROVIDERS[i % PROVIDERS.len()],
        "amount": if NEGATIVE_AMOUNT.contains(&i) { -amount } else { amount },
        "service_date": day.format("%Y-%m-%d").to_string(),
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    use super::*;

    struct Answer {
        status: u16,
        body: Value,
    }

    /// GET `path` from `source`, presenting the demo identity or not.
    async fn get(
        pki: &Pki,
        partner: &Partner,
        source: IpAddr,
        identity: bool,
        path: &str,
    ) -> Result<Answer, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if identity {
            let certs = vec![CertificateDer::from_pem_file(&pki.client.cert).unwrap()];
            let key = PrivateKeyDer::from_pem_file(&pki.client.key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let tcp = socket.connect(partner.addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = Request::get(path).header("host", "127.0.0.1").body(Full::new(Bytes::new())).unwrap();
        // TLS 1.3 servers check the client certificate after the client's handshake ends: a
        // missing one shows up as an error on the first request.
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer { status, body: serde_json::from_slice(&bytes).map_err(|e| e.to_string())? })
    }

    async fn setup() -> (tempfile::TempDir, Pki, Partner) {
        let dir = tempfile::tempdir().unwrap();
        let pki = super::super::pki::create(dir.path()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let partner = start(&pki, "127.0.0.2".parse().unwrap(), listener).await.unwrap();
        (dir, pki, partner)
    }

    #[tokio::test]
    async fn the_allowlisted_source_with_the_identity_gets_every_page() {
        let (_dir, pki, partner) = setup().await;
        let source = "127.0.0.2".parse().unwrap();
        let mut path = PATH.to_owned();
        let mut rows = Vec::new();
        loop {
            let answer = get(&pki, &partner, source, true, &path).await.unwrap();
            assert_eq!(answer.status, 200, "{}", answer.body);
            rows.extend(answer.body["data"].as_array().unwrap().iter().cloned());
            match answer.body["next"].as_str() {
                Some(next) => path = format!("{PATH}?cursor={next}"),
                None => break,
            }
        }
        assert_eq!(rows.len(), PAGES * PER_PAGE);
        let negative = rows.iter().filter(|r| r["amount"].as_f64().unwrap() < 0.0).count();
        let no_member = rows.iter().filter(|r| r["member_id"].is_null()).count();
        assert_eq!((negative, no_member), (NEGATIVE_AMOUNT.len(), NO_MEMBER.len()));
        assert_eq!(partner.log.served().get(&source), Some(&PAGES));
        assert!(partner.log.entries().iter().all(|e| e.refused.is_none()));
    }

    #[tokio::test]
    async fn another_source_is_refused_with_403_even_with_the_identity() {
        let (_dir, pki, partner) = setup().await;
        let answer = get(&pki, &partner, "127.0.0.1".parse().unwrap(), true, PATH).await.unwrap();
        assert_eq!(answer.status, 403);
        assert!(answer.body["message"].as_str().unwrap().contains("127.0.0.2"), "{}", answer.body);
        let entries = partner.log.entries();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].refused.as_deref().unwrap().contains("not on the allowlist"), "{entries:?}");
        assert!(partner.log.served().is_empty());
    }

    #[tokio::test]
    async fn a_client_without_the_certificate_is_refused_in_the_handshake() {
        let (_dir, pki, partner) = setup().await;
        let result = get(&pki, &partner, "127.0.0.2".parse().unwrap(), false, PATH).await;
        assert!(result.is_err(), "served without a client certificate");
        // The server logs the refusal once its side of the handshake has failed.
        for _ in 0..50 {
            if !partner.log.entries().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let entries = partner.log.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].refused.as_deref().unwrap().contains("TLS handshake failed"), "{entries:?}");
    }
}
