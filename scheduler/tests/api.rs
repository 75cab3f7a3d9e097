//! The control-plane API over real HTTP (and HTTPS): tokens and roles, error shapes, the OpenAPI
//! document, and a full lease cycle through the client.

mod common;

use std::time::Duration;

use switchyard_scheduler::api::types::{LeaseRequest, ReportRequest};
use switchyard_scheduler::api::{AppState, PlanningInputs, load_server_tls, router, serve};
use switchyard_scheduler::client::Client;
use switchyard_scheduler::engine::{Engine, NodeInfo, NodeKind, Outcome, Report, Role};
use switchyard_scheduler::plan::Compute;
use tokio::sync::watch;

struct Server {
    url: String,
    engine: Engine,
    stop: watch::Sender<bool>,
    _db: common::TestDb,
}

async fn start(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Server {
    let db = common::TestDb::sqlite().await;
    let engine = common::engine(&db, Duration::from_secs(30)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let (stop, mut rx) = watch::channel(false);
    let app =
        router(AppState { engine: engine.clone(), planning: std::sync::Arc::new(PlanningInputs::default()) });
    tokio::spawn(serve(listener, app, tls, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    Server { url, engine, stop, _db: db }
}

/// Raw HTTP, to send exactly the bytes a careless client would.
async fn raw(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let json = out
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Raw HTTP with the head kept: status, the head's text (headers), the body as JSON (or Null).
/// `body` is (content type, text).
async fn raw_response(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> (u16, String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let (kind, text) = body.unwrap_or(("application/json", ""));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) and close before reading all of a large body.
    let _ = s.write_all(text.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = out[9..12].parse().unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_owned(), serde_json::from_str(rest).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_error_shapes() {
    let s = start(None).await;
    let viewer = s.engine.create_token(Role::Viewer, "v").await.unwrap();
    let node = s.engine.create_token(Role::Node, "n").await.unwrap();
    let operator = s.engine.create_token(Role::Operator, "o").await.unwrap();

    let (status, body) = raw(&s.url, "GET", "/api/v1/runs", None, "").await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    assert!(body["hint"].as_str().unwrap().contains("Bearer"));
    let (status, _) = raw(&s.url, "GET", "/api/v1/runs", Some("sy_wrong"), "").await;
    assert_eq!(status, 401);
    let (status, body) = raw(&s.url, "GET", "/api/v1/runs", Some(&viewer), "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(&s.url, "POST", "/api/v1/jobs", Some(&viewer), r#"{"manifests":[]}"#).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "forbidden");
    assert!(body["message"].as_str().unwrap().contains("needs the operator role"));
    let (status, _) = raw(&s.url, "GET", "/api/v1/runs", Some(&node), "").await;
    assert_eq!(status, 403, "a node token cannot read runs");

    // Malformed JSON names the problem and the field; never a 500.
    for (body, needle) in [
        (r#"{"max": "lots"}"#, "max"),
        (r#"{"wait_ms": 5}"#, "missing field `max`"),
        ("{not json", "malformed JSON"),
    ] {
        let (status, reply) = raw(&s.url, "POST", "/api/v1/nodes/n1/leases", Some(&node), body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["code"], "bad_request");
        assert!(reply["message"].as_str().unwrap().contains(needle), "{body}: {reply}");
    }
    let (status, reply) = raw(
        &s.url,
        "POST",
        "/api/v1/nodes",
        Some(&node),
        r#"{"kind":"dedicated","version":"x","slots":1,"pool":"egress-a","egress_ip":"127.0.0.9"}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(reply["code"], "node_refused");
    let (status, reply) = raw(&s.url, "GET", "/api/v1/runs/999", Some(&operator), "").await;
    assert_eq!(status, 404, "{reply}");
    let (status, _) = raw(&s.url, "GET", "/nope", None, "").await;
    assert_eq!(status, 404);
    let (status, _) = raw(&s.url, "GET", "/healthz", None, "").await;
    assert_eq!(status, 200);
    let (status, _) = raw(&s.url, "GET", "/readyz", None, "").await;
    assert_eq!(status, 200);
    let _ = s.stop.send(true);
}

/// The served document is the one generated from the handlers, and `docs/openapi.json` (for
/// readers and client generators) is that same document: `UPDATE_GOLDEN=1` rewrites it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_generated_and_checked_in() {
    let s = start(None).await;
    let (status, head, served) = raw_response(&s.url, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let generated = switchyard_scheduler::api::openapi();
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");
    // Links name operations that exist, in the spec's spelling, so a tester can follow them.
    let ids: Vec<&str> = served["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let links = &served["paths"]["/api/v1/nodes"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["heartbeat"]["operationId"], "heartbeat", "{links}");
    for link in links.as_object().unwrap().values() {
        assert!(ids.contains(&link["operationId"].as_str().unwrap()), "{link}");
    }
    // Every operation states its statuses and, unless it is open, the roles it needs.
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() >= 22, "{:?}", paths.keys());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let open = ["/", "/assets/{name}", "/healthz", "/readyz", "/api/v1/openapi.json"]
                .contains(&path.as_str());
            if !open {
                assert!(op["security"].is_array(), "{method} {path} declares no security");
                assert!(responses.contains_key("401") && responses.contains_key("403"), "{method} {path}");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
            }
        }
    }
    // utoipa takes a pattern only as a literal: each `since` repeats the handler's constant.
    let since: Vec<&serde_json::Value> = ["/api/v1/runs", "/api/v1/cost"]
        .iter()
        .flat_map(|path| served["paths"][path]["get"]["parameters"].as_array().unwrap())
        .filter(|p| p["name"] == "since")
        .collect();
    assert_eq!(since.len(), 2, "{since:?}");
    for p in since {
        assert_eq!(p["schema"]["pattern"], switchyard_scheduler::api::doc::SINCE_PATTERN, "{p}");
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let text = switchyard_scheduler::api::doc::json();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, text).unwrap();
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        checked_in == text,
        "docs/openapi.json differs from the generated document: run `UPDATE_GOLDEN=1 cargo test -p switchyard-scheduler --test api openapi` and review the diff"
    );
    let _ = s.stop.send(true);
}

/// Whatever refuses a request, the answer is the one JSON error shape: axum's own rejections
/// (query, path, body), unknown routes, methods a path does not have (with `Allow`), bodies over
/// the limit and bodies not declared as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_with_the_right_status() {
    let s = start(None).await;
    let viewer = s.engine.create_token(Role::Viewer, "v").await.unwrap();
    let node = s.engine.create_token(Role::Node, "n").await.unwrap();
    let json = |head: &str| head.to_ascii_lowercase().contains("content-type: application/json");

    let (status, head, body) =
        raw_response(&s.url, "GET", "/api/v1/runs?limit=lots", Some(&viewer), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(json(&head) && body["code"] == "bad_request", "{head}{body}");
    assert!(body["message"].as_str().unwrap().contains("limit"), "{body}");

    let (status, head, body) =
        raw_response(&s.url, "GET", "/api/v1/runs?since=1h%2030m", Some(&viewer), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(json(&head) && body["message"].as_str().unwrap().contains("since"), "{body}");

    let (status, head, body) = raw_response(&s.url, "GET", "/api/v1/runs/abc", Some(&viewer), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(json(&head), "{head}");
    assert!(body["message"].as_str().unwrap().contains("`id` is `abc`"), "{body}");

    let (status, head, body) = raw_response(&s.url, "PATCH", "/api/v1/runs", Some(&viewer), None).await;
    assert_eq!(status, 405, "{body}");
    assert!(json(&head) && body["code"] == "method_not_allowed", "{head}{body}");
    let allow = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("allow:"))
        .unwrap_or_else(|| panic!("{head}"));
    assert!(allow.contains("GET") && !allow.contains("POST"), "{allow}");

    let (status, head, body) = raw_response(&s.url, "GET", "/api/v2/nothing", None, None).await;
    assert_eq!(status, 404);
    assert!(json(&head) && body["code"] == "not_found", "{head}{body}");

    // 17 MiB of a valid-looking body: refused by size, before any parsing.
    let big = format!("{{\"records\":[{}]}}", "0,".repeat(17 << 19));
    let (status, head, body) =
        raw_response(&s.url, "POST", "/api/v1/egress/audit", Some(&node), Some(("application/json", &big)))
            .await;
    assert_eq!(status, 413, "{body}");
    assert!(json(&head) && body["code"] == "payload_too_large", "{head}{body}");

    let (status, head, body) = raw_response(
        &s.url,
        "POST",
        "/api/v1/nodes/n1/leases",
        Some(&node),
        Some(("text/plain", r#"{"max":1}"#)),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(json(&head) && body["code"] == "unsupported_media_type", "{head}{body}");
    let _ = s.stop.send(true);
}

/// `/metrics` is open by default and asks for a viewer token when the settings say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_viewer_token() {
    let db = common::TestDb::sqlite().await;
    let mut settings = common::settings();
    settings.control_plane.metrics_token = true;
    let engine = Engine::new(
        switchyard_scheduler::store::Store::open(&db.url).await.unwrap(),
        switchyard_scheduler::engine::EngineConfig {
            lease_ttl: Duration::from_secs(30),
            max_losses: 3,
            settings,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, mut rx) = watch::channel(false);
    let app =
        router(AppState { engine: engine.clone(), planning: std::sync::Arc::new(PlanningInputs::default()) });
    tokio::spawn(serve(listener, app, None, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let viewer = engine.create_token(Role::Viewer, "v").await.unwrap();
    let node = engine.create_token(Role::Node, "n").await.unwrap();
    let (status, _, body) = raw_response(&url, "GET", "/metrics", None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, _, body) = raw_response(&url, "GET", "/metrics", Some(&node), None).await;
    assert_eq!(status, 403, "{body}");
    let (status, head, _) = raw_response(&url, "GET", "/metrics", Some(&viewer), None).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_cycle_through_the_client_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    // A throwaway CA and a server certificate it signed.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (ca_path, cert_path, key_path) =
        (dir.path().join("ca.crt"), dir.path().join("cp.crt"), dir.path().join("cp.key"));
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let s = start(Some(load_server_tls(&cert_path, &key_path).unwrap())).await;
    s.engine
        .upsert_jobs(&[common::job("j", vec![common::task("t", Compute::Serverless, &[], &[])])])
        .await
        .unwrap();
    let run = s.engine.trigger("j").await.unwrap();
    let token = s.engine.create_token(Role::Node, "n").await.unwrap();

    // Without the CA, https is refused up front; with it, the whole cycle works.
    assert!(Client::new(&s.url, token.clone(), None).is_err());
    let client = Client::new(&s.url, token, Some(&ca_path)).unwrap();
    let info = NodeInfo {
        kind: NodeKind::Serverless,
        pool: None,
        egress_ip: None,
        identities: vec![],
        version: "t".into(),
        slots: 1,
        launched_at: None,
    };
    let reg = client.register(&info).await.unwrap();
    let leases = client.lease(&reg.node_id, &LeaseRequest { max: 1, wait_ms: 1000 }).await.unwrap();
    assert_eq!(leases.len(), 1);
    let report = Report {
        attempt: leases[0].attempt,
        outcome: Outcome::Succeeded,
        exit_code: Some(0),
        error_class: None,
        message: None,
        log_tail: Some("done".into()),
        details: None,
    };
    let reply = client
        .report(
            &reg.node_id,
            &ReportRequest {
                reports: vec![report.clone()],
                lease: Some(LeaseRequest { max: 1, wait_ms: 0 }),
            },
        )
        .await
        .unwrap();
    assert!(matches!(reply.results[0], switchyard_scheduler::engine::ReportResult::Accepted { .. }));
    // The same report again is fenced: the attempt no longer holds a lease.
    let again =
        client.report(&reg.node_id, &ReportRequest { reports: vec![report], lease: None }).await.unwrap();
    assert!(matches!(again.results[0], switchyard_scheduler::engine::ReportResult::Rejected { .. }));
    assert_eq!(
        s.engine.views().run(run).await.unwrap().state,
        switchyard_scheduler::engine::RunState::Succeeded
    );
    let _ = s.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_export_queue_depth_and_certificate_expiry() {
    use switchyard_scheduler::api::types::{CertificateExpiry, HeartbeatRequest};
    let s = start(None).await;
    s.engine
        .upsert_jobs(&[common::job("j", vec![common::task("t", Compute::Dedicated, &["egress-a"], &[])])])
        .await
        .unwrap();
    s.engine.trigger("j").await.unwrap();
    let token = s.engine.create_token(Role::Node, "n").await.unwrap();
    let client = Client::new(&s.url, token, None).unwrap();
    let info = NodeInfo {
        kind: NodeKind::Dedicated,
        pool: Some("egress-b".into()),
        egress_ip: Some("127.0.0.3".parse().unwrap()),
        identities: vec!["partner-prod".into()],
        version: "t".into(),
        slots: 1,
        launched_at: None,
    };
    let node = client.register(&info).await.unwrap().node_id;
    let in_ten_days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64
        + 10 * 86_400;
    let heartbeat = HeartbeatRequest {
        commits: vec![],
        certificates: vec![CertificateExpiry { identity: "partner-prod".into(), not_after: in_ten_days }],
        ..Default::default()
    };
    client.heartbeat(&node, &heartbeat).await.unwrap();
    let (status, _) = raw(&s.url, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    let text = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(s.url.trim_start_matches("http://")).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(text.contains("switchyard_scheduler_queue_depth_tasks{pool=\"egress-a\"} 1"), "{text}");
    assert!(text.contains("switchyard_scheduler_nodes_live 1"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("switchyard_gateway_certificate_expiry_seconds{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("identity=\"partner-prod\"") && line.contains("pool=\"egress-b\""), "{line}");
    let seconds: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((10 * 86_400 - 5..=10 * 86_400).contains(&seconds), "{line}");
    // Every line is either a comment or `name{labels} value`.
    for l in text.split("\r\n\r\n").nth(1).unwrap().lines() {
        assert!(
            l.starts_with('#') || l.rsplit_once(' ').is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
            "bad line {l}"
        );
    }
    let _ = s.stop.send(true);
}

/// `select` runs only the tasks writing the chosen tables, with the run's options; a table no task
/// writes is refused (400, `unknown_table`) before anything is registered, naming the tables that can be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_selects_tables_and_carries_options() {
    use switchyard_scheduler::api::types::{ManifestFile, SubmitRequest};
    let s = start(None).await;
    let operator = s.engine.create_token(Role::Operator, "o").await.unwrap();
    let client = Client::new(&s.url, operator, None).unwrap();
    let manifest = "job: t\nexternal_tables: [bronze.x]\ntasks:\n  \
        - { name: a, sql: \"SELECT * FROM bronze.x\", sink: { table: silver.a } }\n  \
        - { name: b, sql: \"SELECT * FROM silver.a\", sink: { table: gold.b }, trigger: on_update }\n";
    let request = |select: &[&str]| SubmitRequest {
        manifests: vec![ManifestFile { path: "/jobs/t.yaml".into(), content: manifest.into() }],
        run: true,
        full_refresh: true,
        select: select.iter().map(|t| t.to_string()).collect(),
    };
    let err = client.submit(&request(&["gold.c"])).await.unwrap_err();
    match &err {
        switchyard_scheduler::Error::Api { status, code, message, .. } => {
            assert_eq!((*status, code.as_str()), (422, "unknown_table"));
            assert!(message.contains("`gold.c`") && message.contains("gold.b, silver.a"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(s.engine.views().runs(None, 10).await.unwrap().is_empty(), "nothing ran");
    let submitted = client.submit(&request(&["gold.b"])).await.unwrap();
    let run = s.engine.views().run(submitted.jobs[0].run.unwrap()).await.unwrap();
    assert_eq!(run.tasks.iter().map(|t| t.task.as_str()).collect::<Vec<_>>(), ["b"]);
    assert!(run.options.full_refresh);
    let _ = s.stop.send(true);
}
