//! The dialer against a real nginx that requires a client certificate (`ssl_verify_client on`)
//! and allows only source 127.0.0.2 (`allow`/`deny`). Certificates come from a throwaway CA made
//! with rcgen (`switchyard-testkit`, shared with the ingest and runtime tests). nginx is installed by `scripts/test` (Debian's nginx-light).

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::FailureClass;
use switchyard_config::egress::EgressPolicy;
use switchyard_config::settings::IdentityFiles;
use switchyard_gateway::Error;
use switchyard_gateway::audit::{AuditSink, Verdict};
use switchyard_gateway::classify::classify_http;
use switchyard_gateway::dial::{Dialer, DialerConfig, Target};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};
use switchyard_testkit::{Nginx, Pki, new_ca};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The partner: nginx (shared with the other packages' tests) serving `/index.json` to source
/// 127.0.0.2 with a client certificate from `pki`.
fn start_nginx(pki: &Pki) -> Nginx {
    let nginx = Nginx::start(pki, switchyard_testkit::free_port(), "", "");
    std::fs::write(nginx.dir.join("www/index.json"), "{\"hello\": \"partner\"}\n").unwrap();
    nginx
}

fn policy(port: u16) -> EgressPolicy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.yaml");
    std::fs::write(
        &path,
        format!("destinations:\n  - {{ name: partner, host: localhost, ports: [{port}], egress_ips: [127.0.0.2, 127.0.0.3], identity: partner-prod }}\n"),
    )
    .unwrap();
    let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
        egress: Some(path),
        env: Some(Default::default()),
        ..Default::default()
    })
    .unwrap();
    inputs.policy.policy
}

fn dialer(
    port: u16,
    ip: &str,
    identity: IdentityFiles,
) -> (Dialer, Arc<Identities>, tokio::sync::mpsc::UnboundedReceiver<switchyard_gateway::audit::AuditEvent>) {
    let files = [("partner-prod".to_owned(), identity)].into_iter().collect();
    let identities = Identities::load_all(&files, &["partner-prod".to_owned()]).unwrap();
    let (audit, rx) = AuditSink::channel();
    let enforcer = Enforcer::new(policy(port), ip.parse().unwrap(), Mode::Enforce);
    (Dialer::new(enforcer, identities.clone(), audit, DialerConfig::default()), identities, rx)
}

/// GET /index.json over the dialer's TLS; returns (status, body) or the classified error.
async fn get(dialer: &Dialer, port: u16) -> Result<(u16, String), Error> {
    let target = Target::parse("localhost", port).unwrap();
    let (mut tls, _) = dialer.connect_tls(&target).await?;
    tls.write_all(b"GET /index.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| switchyard_gateway::tls::classify("localhost", &e))?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| switchyard_gateway::tls::classify("localhost", &e))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_and_source_ip_allowlist_through_the_dialer() {
    let pki = Pki::new();
    let nginx = start_nginx(&pki);
    let good = pki.leaf("partner-prod", &["partner-prod"], None);

    // Bound to 127.0.0.2 with the right identity: success.
    let (d, _, mut audit) = dialer(nginx.port, "127.0.0.2", good.clone());
    let (status, body) = get(&d, nginx.port).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"hello\""));
    assert!(matches!(audit.recv().await.unwrap().verdict, Verdict::Allowed { .. }));

    // Bound to 127.0.0.3: nginx refuses the source IP → access, the hint names the IP.
    let (d3, _, _) = dialer(nginx.port, "127.0.0.3", good.clone());
    let (status, body) = get(&d3, nginx.port).await.unwrap();
    let failure = classify_http(
        status,
        &body[body.find("\r\n\r\n").unwrap_or(0)..],
        "127.0.0.3".parse::<IpAddr>().unwrap(),
    )
    .unwrap();
    assert_eq!(failure.class, FailureClass::Access, "{status} {body}");
    assert!(failure.hint.contains("127.0.0.3"), "{}", failure.hint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_expired_client_certificates_are_authentication_failures() {
    let pki = Pki::new();
    let nginx = start_nginx(&pki);
    let (other_ca, _) = new_ca("Someone else's CA");
    for (name, files) in [
        ("untrusted", pki.leaf("untrusted", &["x"], Some(&other_ca))),
        ("expired", pki.expired_leaf("expired", &["x"])),
    ] {
        let (d, _, _) = dialer(nginx.port, "127.0.0.2", files);
        let class = match get(&d, nginx.port).await {
            Ok((status, body)) => classify_http(status, &body, "127.0.0.2".parse().unwrap()).map(|f| f.class),
            Err(e) => Some(e.class()),
        };
        assert_eq!(class, Some(FailureClass::Authentication), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_destination_is_denied_before_any_packet_and_audited() {
    let pki = Pki::new();
    let nginx = start_nginx(&pki);
    let good = pki.leaf("partner-prod", &["partner-prod"], None);
    let (d, _, mut audit) = dialer(nginx.port, "127.0.0.2", good);
    let before = nginx.accesses().len();
    // Same server, but as 127.0.0.1: no rule allows that host name.
    let err = d.connect(&Target::parse("127.0.0.1", nginx.port).unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert_eq!(err.class(), FailureClass::Access);
    let event = audit.recv().await.unwrap();
    assert!(matches!(&event.verdict, Verdict::Denied { code: "denied_by_policy", .. }), "{event:?}");
    assert_eq!(event.destination, format!("127.0.0.1:{}", nginx.port));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(nginx.accesses().len(), before, "nginx saw a connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_files_are_picked_up_without_a_restart() {
    let pki = Pki::new();
    let nginx = start_nginx(&pki);
    let (other_ca, _) = new_ca("Old CA");
    // Start with a certificate nginx does not trust …
    let files = pki.leaf("partner-prod", &["partner-prod"], Some(&other_ca));
    let (d, identities, _) = dialer(nginx.port, "127.0.0.2", files.clone());
    let first = match get(&d, nginx.port).await {
        Ok((status, body)) => classify_http(status, &body, "127.0.0.2".parse().unwrap()).map(|f| f.class),
        Err(e) => Some(e.class()),
    };
    assert_eq!(first, Some(FailureClass::Authentication));
    let old_expiry = identities.get("partner-prod").unwrap().not_after;
    // … then rotate the files in place (mtime changes), as an operator would.
    std::thread::sleep(Duration::from_millis(20));
    pki.leaf("partner-prod", &["partner-prod"], None);
    assert_eq!(identities.reload_changed(), ["partner-prod"]);
    assert!(identities.get("partner-prod").unwrap().not_after >= old_expiry);
    let (status, body) = get(&d, nginx.port).await.unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_connect_proxy_allowed_and_denied() {
    let pki = Pki::new();
    let nginx = start_nginx(&pki);
    let client = pki.leaf("partner-prod", &["partner-prod"], None);
    let (d, _, mut audit) = dialer(nginx.port, "127.0.0.2", client.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(switchyard_gateway::proxy::serve(listener, d, Default::default(), stop_rx));

    let curl = |url: String| {
        let proxy = proxy.clone();
        let (ca, cert, key) = (pki.path("ca.crt"), client.cert.clone(), client.key.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sS", "--max-time", "10", "-x", &proxy, "--cacert"])
                .arg(ca)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .arg(url)
                .output()
                .expect("curl (installed by scripts/test)")
        })
    };
    // Allowed: the tunnel goes out from 127.0.0.2, which nginx allows.
    let out = curl(format!("https://localhost:{}/index.json", nginx.port)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"hello\""));
    assert!(matches!(audit.recv().await.unwrap().verdict, Verdict::Allowed { .. }));
    // When the tunnel closes, its bytes and duration are audited.
    match audit.recv().await.unwrap().verdict {
        Verdict::Closed { rule, bytes, .. } => {
            assert_eq!(rule.as_deref(), Some("partner"));
            assert!(bytes > 1000, "a TLS handshake and a response went through: {bytes}");
        }
        other => panic!("expected the close record, got {other:?}"),
    }

    // Denied: no rule for 127.0.0.1 → the proxy answers 403 and audits it; nginx sees nothing.
    let before = nginx.accesses().len();
    let out = curl(format!("https://127.0.0.1:{}/index.json", nginx.port)).await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403"), "{stderr}");
    let event = audit.recv().await.unwrap();
    assert!(matches!(event.verdict, Verdict::Denied { code: "denied_by_policy", .. }), "{event:?}");
    assert_eq!(nginx.accesses().len(), before);
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_check_names_the_failing_stage() {
    use switchyard_gateway::check::check;
    let pki = Pki::new();
    let nginx = start_nginx(&pki);
    let good = pki.leaf("partner-prod", &["partner-prod"], None);
    let (d, identities, _) = dialer(nginx.port, "127.0.0.2", good.clone());
    let ok = check(&d, &identities, &Target::parse("localhost", nginx.port).unwrap(), true).await;
    assert!(ok.ok(), "{ok:?}");
    assert!(ok.detail.contains("identity partner-prod valid for"), "{}", ok.detail);
    let denied = check(&d, &identities, &Target::parse("127.0.0.1", nginx.port).unwrap(), true).await;
    assert_eq!(denied.code, Some("denied_by_policy"), "{denied:?}");
    // A port nothing listens on, allowed by policy: refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.yaml");
    std::fs::write(&path, format!("destinations:\n  - {{ name: closed, host: localhost, ports: [{closed}], egress_ips: [127.0.0.2] }}\n  - {{ name: other-ip, host: localhost, ports: [{}], egress_ips: [127.0.0.9] }}\n", nginx.port)).unwrap();
    let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
        egress: Some(path),
        env: Some(Default::default()),
        ..Default::default()
    })
    .unwrap();
    let (audit, _rx) = AuditSink::channel();
    let d2 = Dialer::new(
        Enforcer::new(inputs.policy.policy, "127.0.0.2".parse().unwrap(), Mode::Enforce),
        identities.clone(),
        audit,
        DialerConfig::default(),
    );
    assert_eq!(
        check(&d2, &identities, &Target::parse("localhost", closed).unwrap(), false).await.code,
        Some("refused")
    );
    let not_listed = check(&d2, &identities, &Target::parse("localhost", nginx.port).unwrap(), true).await;
    assert_eq!(not_listed.code, Some("ip_not_allowlisted"), "{not_listed:?}");
    assert!(not_listed.hint.contains("127.0.0.9"), "{}", not_listed.hint);
    assert_eq!(
        check(&d2, &identities, &Target::parse("no-such-host.invalid", closed).unwrap(), false).await.code,
        Some("denied_by_policy")
    );
    // An expired identity is reported as such.
    let expired = pki.expired_leaf("old", &["x"]);
    let (d3, ids3, _) = dialer(nginx.port, "127.0.0.2", expired);
    let r = check(&d3, &ids3, &Target::parse("localhost", nginx.port).unwrap(), true).await;
    assert_eq!(r.code, Some("cert_expired"), "{r:?}");
}
