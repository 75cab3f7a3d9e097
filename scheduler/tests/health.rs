//! Health checks and alert webhooks against real stores (SQLite and PostgreSQL) with real history,
//! and webhooks received by a real HTTP server on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::{TestDb, job, node, task, worker};
use switchyard_config::FailureClass;
use switchyard_config::settings::{Alerts, Settings, Webhook, WebhookFormat};
use switchyard_scheduler::api::types::{CertificateExpiry, CommitRecord};
use switchyard_scheduler::engine::{Engine, EngineConfig, Outcome, Report, Role};
use switchyard_scheduler::observe::alerts::Alerter;
use switchyard_scheduler::plan::Compute;
use switchyard_scheduler::store::{Store, now_ms};
use switchyard_scheduler::views::health::{Health, Severity, Status};

fn report(attempt: i64, outcome: Outcome) -> Report {
    Report {
        attempt,
        outcome,
        exit_code: None,
        error_class: None,
        message: None,
        log_tail: None,
        details: None,
    }
}

const SECRET_MESSAGE: &str =
    "cannot connect to postgres://sy:hunter2@db.corp.example:5432/claims: connection refused";

async fn engine_with(db: &TestDb, alerts: Alerts) -> Engine {
    let store = Store::open(&db.url).await.unwrap();
    let settings = Settings { alerts, ..common::settings() };
    Engine::new(store, EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings })
}

/// Fails `broken`'s task on node `n` with a connectivity error whose message holds a password.
async fn fail_broken(e: &Engine, n: &str) {
    e.trigger("broken").await.unwrap();
    let lease = e.lease(n, 1, Duration::ZERO).await.unwrap().remove(0);
    assert_eq!(lease.job, "broken");
    let failed = Report {
        error_class: Some(FailureClass::Connectivity),
        message: Some(SECRET_MESSAGE.into()),
        ..report(lease.attempt, Outcome::Failed)
    };
    e.complete(n, &[failed]).await.unwrap();
}

/// Jobs in every state the checks look at:
/// - `claims`: ingest on egress-a then a transform that dropped and quarantined 10% of its rows;
///   succeeded; must succeed every 2 s; the node's certificate expires in 3 days.
/// - `broken`: its run failed (connectivity, a password in the message).
/// - `slow`: SLA 1 s, its run still running.
/// - `stranded`: a task only egress-b may run; egress-b has no node.
async fn history(e: &Engine) -> (String, String) {
    let mut claims = job(
        "claims",
        vec![
            task("ingest", Compute::Dedicated, &["egress-a"], &[]),
            task("silver", Compute::Serverless, &[], &["ingest"]),
        ],
    );
    claims.expected_interval_ms = Some(2_000);
    let mut slow = job("slow", vec![task("wait", Compute::Dedicated, &["egress-a"], &[])]);
    slow.sla_ms = Some(1_000);
    e.upsert_jobs(&[
        claims,
        job("broken", vec![task("load", Compute::Dedicated, &["egress-a"], &[])]),
        slow,
        job("stranded", vec![task("pinned", Compute::Dedicated, &["egress-b"], &[])]),
    ])
    .await
    .unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let w = e.register(&worker()).await.unwrap().node_id;
    e.trigger("claims").await.unwrap();
    let ingest = e.lease(&n, 1, Duration::ZERO).await.unwrap().remove(0);
    e.record_commits(
        &n,
        &[CommitRecord { attempt: ingest.attempt, table: "bronze.claims".into(), version: 1, rows: 1000 }],
    )
    .await
    .unwrap();
    e.complete(&n, &[report(ingest.attempt, Outcome::Succeeded)]).await.unwrap();
    let silver = e.lease(&w, 1, Duration::ZERO).await.unwrap().remove(0);
    let details = serde_json::json!({"transform": {
        "output": {"table": "silver.claims", "version": 0, "rows": 900},
        "expectations": [
            {"name": "positive_amount", "action": "drop", "check": "amount >= 0", "violations": 60},
            {"name": "has_member", "action": "quarantine", "check": "member_id IS NOT NULL", "violations": 40},
            {"name": "known_status", "action": "warn", "check": "status IN ('a')", "violations": 7}
        ],
        "quarantined": 40
    }});
    e.complete(&w, &[Report { details: Some(details), ..report(silver.attempt, Outcome::Succeeded) }])
        .await
        .unwrap();
    fail_broken(e, &n).await;
    e.trigger("slow").await.unwrap();
    let slow = e.lease(&n, 1, Duration::ZERO).await.unwrap();
    assert_eq!(slow[0].job, "slow");
    e.trigger("stranded").await.unwrap();
    let in_three_days = now_ms() / 1000 + 3 * 86_400;
    e.record_certificates(
        &n,
        &[CertificateExpiry { identity: "partner-prod".into(), not_after: in_three_days }],
    )
    .await
    .unwrap();
    (n, w)
}

fn check<'a>(h: &'a Health, job: &str, name: &str) -> &'a switchyard_scheduler::views::health::Check {
    let j = h.jobs.iter().find(|j| j.job == job).unwrap_or_else(|| panic!("no job {job}"));
    j.checks.iter().find(|c| c.check == name).unwrap_or_else(|| panic!("{job} has no check {name}: {j:?}"))
}

async fn health_checks_of_jobs_and_pools(db: &TestDb) {
    let e = engine_with(db, Alerts::default()).await;
    history(&e).await;
    let now = now_ms();
    let h = e.views().health_at(now).await.unwrap();
    assert_eq!(h.status, Status::Critical);

    let failed = check(&h, "broken", "failed_state");
    assert!(!failed.ok && failed.severity == Severity::Critical, "{failed:?}");
    assert!(failed.message.contains("task load failed (connectivity)"), "{failed:?}");
    assert!(failed.action.as_deref().unwrap().contains("egress check"), "{failed:?}");
    let ok = check(&h, "claims", "failed_state");
    assert!(ok.ok && ok.severity == Severity::Info && ok.action.is_none(), "{ok:?}");

    let drop = check(&h, "claims", "drop_rate");
    assert!(!drop.ok && drop.severity == Severity::Warning, "{drop:?}");
    assert!(drop.message.starts_with("10.0% of rows"), "{drop:?}");
    assert!(drop.message.contains("(100 of 1000)") && drop.message.contains("positive_amount"), "{drop:?}");

    let recent = check(&h, "claims", "recent_success");
    assert!(recent.ok, "just succeeded: {recent:?}");
    // Three seconds later the 2 s expected interval has passed.
    let later = e.views().health_at(now + 3_000).await.unwrap();
    let recent = check(&later, "claims", "recent_success");
    assert!(!recent.ok && recent.severity == Severity::Warning, "{recent:?}");
    assert!(recent.message.contains("no successful run in 3s"), "{recent:?}");
    let unchecked = check(&h, "broken", "recent_success");
    assert!(unchecked.ok && unchecked.message.contains("not checked"), "{unchecked:?}");

    let slow = check(&later, "slow", "latency");
    assert!(!slow.ok && slow.severity == Severity::Warning, "{slow:?}");
    assert!(slow.message.contains("has been running for") && slow.message.contains("(SLA 1s)"), "{slow:?}");
    assert!(check(&later, "claims", "latency").ok, "claims took well under its 1h default SLA");

    let cert = check(&h, "claims", "certificate_expiry");
    assert!(!cert.ok && cert.severity == Severity::Critical, "3 days left: {cert:?}");
    assert!(cert.message.contains("partner-prod") && cert.message.contains("expires in 2d 23h"), "{cert:?}");

    let stranded = check(&h, "stranded", "live_nodes");
    assert!(!stranded.ok && stranded.severity == Severity::Critical, "{stranded:?}");
    assert!(stranded.message.contains("pinned (pools egress-b)"), "{stranded:?}");
    assert!(check(&h, "claims", "live_nodes").ok);

    let pool = |name: &str| h.pools.iter().find(|p| p.pool == name).unwrap();
    assert_eq!(pool("egress-a").live_nodes, 1);
    assert_eq!(pool("egress-a").status, Status::Critical, "its certificate: {:?}", pool("egress-a"));
    assert_eq!(pool("egress-a").egress_ips, ["127.0.0.2"]);
    let b = &pool("egress-b").checks[0];
    assert!(!b.ok && b.check == "live_nodes" && b.severity == Severity::Critical, "stranded needs it: {b:?}");

    // The JSON shape the dashboard renders.
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["status"], "critical");
    let job = json["jobs"].as_array().unwrap().iter().find(|j| j["job"] == "broken").unwrap();
    assert_eq!(job["last_run"]["state"], "failed");
    assert_eq!(job["checks"][0]["check"], "failed_state");
    assert_eq!(job["checks"][0]["severity"], "critical");
    assert!(job["checks"][1]["action"].is_null());
    e.store().close().await;
}
both_stores!(health_checks, health_checks_of_jobs_and_pools);

/// What the test's webhook receiver got: (path, body).
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A webhook receiver on 127.0.0.1: stores every POST; `/hook/flaky…` answers 503 once first.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let flaky_failed = Arc::new(Mutex::new(false));
    let app = axum::Router::new()
        .route(
            "/hook/{name}",
            axum::routing::post(
                |State((received, flaky)): State<(Received, Arc<Mutex<bool>>)>,
                 Path(name): Path<String>,
                 axum::Json(body): axum::Json<serde_json::Value>| async move {
                    if name.starts_with("flaky") {
                        let mut failed = flaky.lock().unwrap();
                        if !*failed {
                            *failed = true;
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                    }
                    received.lock().unwrap().push((name, body));
                    StatusCode::OK
                },
            ),
        )
        .with_state((received.clone(), flaky_failed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn bodies(received: &Received, hook: &str, alert: &str) -> Vec<serde_json::Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, body)| {
            // The JSON body names the alert in `alert`, Slack's in its context block.
            name.starts_with(hook) && (body["alert"] == alert || body["blocks"].to_string().contains(alert))
        })
        .map(|(_, b)| b.clone())
        .collect()
}

fn hook(url: Option<String>, url_file: Option<std::path::PathBuf>, format: WebhookFormat) -> Webhook {
    Webhook { name: None, url, url_env: None, url_file, format, ca: None }
}

async fn alerts_fire_rearm_and_resolve_once_across_replicas(db: &TestDb) {
    let (base, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    // The Slack URL comes from a file, as a mounted secret would.
    let slack_file = dir.path().join("slack-url");
    std::fs::write(&slack_file, format!("{base}/hook/slack-SECRET-T0K3N\n")).unwrap();
    let alerts = Alerts {
        interval: switchyard_config::value::Duration(Duration::from_millis(100)),
        rearm: switchyard_config::value::Duration(Duration::from_millis(1_500)),
        webhooks: vec![
            hook(Some(format!("{base}/hook/json-SECRET-T0K3N")), None, WebhookFormat::Json),
            hook(None, Some(slack_file), WebhookFormat::Slack),
            hook(Some(format!("{base}/hook/flaky")), None, WebhookFormat::Json),
        ],
    };
    let e = engine_with(db, alerts.clone()).await;
    e.upsert_jobs(&[job("broken", vec![task("load", Compute::Dedicated, &["egress-a"], &[])])])
        .await
        .unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    fail_broken(&e, &n).await;
    let first = Alerter::from_settings(&alerts).unwrap().unwrap();
    let replica = Alerter::from_settings(&alerts).unwrap().unwrap();
    const ALERT: &str = "job/broken/failed_state";

    let sent = first.evaluate(&e.views()).await.unwrap();
    assert_eq!(sent.failed, 1, "the flaky receiver's 503: {sent:?}");
    let json = bodies(&received, "json", ALERT);
    assert_eq!(json.len(), 1, "{json:?}");
    let b = &json[0];
    assert_eq!(b["source"], "switchyard");
    assert_eq!(b["status"], "firing");
    assert_eq!(b["job"], "broken");
    assert!(b["pool"].is_null());
    assert_eq!(b["check"], "failed_state");
    assert_eq!(b["severity"], "critical");
    assert_eq!(b["notification"], 1);
    assert!(b["message"].as_str().unwrap().contains("postgres://sy:***@db.corp.example"), "{b}");
    assert!(b["action"].as_str().unwrap().contains("egress check"), "{b}");
    let slack = bodies(&received, "slack", ALERT);
    assert_eq!(slack.len(), 1);
    let text = slack[0]["text"].as_str().unwrap();
    assert!(text.starts_with(":red_circle: [critical] job *broken* `failed_state`: run "), "{text}");
    assert!(text.contains("\n*Action:* "), "{text}");
    assert_eq!(slack[0]["blocks"][0]["type"], "section");
    assert_eq!(slack[0]["blocks"][0]["text"]["type"], "mrkdwn");
    assert_eq!(slack[0]["blocks"][0]["text"]["text"], text);
    assert_eq!(slack[0]["blocks"][1]["type"], "context");
    assert!(slack[0]["blocks"][1]["elements"][0]["text"].as_str().unwrap().contains(ALERT));
    // Other checks fire too (egress-b has no node).
    assert!(!bodies(&received, "json", "pool/egress-b/live_nodes").is_empty());

    // Within the re-arm time: nothing again, from this replica or another; the flaky receiver's
    // notifications, given back after its 503, are delivered now.
    let again = first.evaluate(&e.views()).await.unwrap();
    assert_eq!((again.firing, again.failed), (1, 0), "{again:?}");
    assert_eq!(bodies(&received, "flaky", ALERT).len(), 1);
    assert_eq!(replica.evaluate(&e.views()).await.unwrap().firing, 0);
    assert_eq!(bodies(&received, "json", ALERT).len(), 1);

    // After the re-arm time, one repeat per webhook, whichever replica evaluates.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    replica.evaluate(&e.views()).await.unwrap();
    first.evaluate(&e.views()).await.unwrap();
    let json = bodies(&received, "json", ALERT);
    assert_eq!(json.len(), 2, "{json:?}");
    assert_eq!(json[1]["notification"], 2);
    assert_eq!(json[1]["since"], json[0]["since"], "the same episode");
    assert!(json[1]["at"].as_i64().unwrap() - json[0]["at"].as_i64().unwrap() >= 1_500);
    assert!(bodies(&received, "slack", ALERT)[1]["text"].as_str().unwrap().contains("(still failing)"));

    // Fixed: the next run succeeds; a resolution goes out once.
    e.trigger("broken").await.unwrap();
    let lease = e.lease(&n, 1, Duration::ZERO).await.unwrap().remove(0);
    e.complete(&n, &[report(lease.attempt, Outcome::Succeeded)]).await.unwrap();
    let sent = first.evaluate(&e.views()).await.unwrap();
    assert_eq!(sent.resolved, 3, "one per webhook: {sent:?}");
    assert_eq!(replica.evaluate(&e.views()).await.unwrap().resolved, 0);
    let json = bodies(&received, "json", ALERT);
    assert_eq!(json.len(), 3);
    assert_eq!(json[2]["status"], "resolved");
    assert!(
        bodies(&received, "slack", ALERT)[2]["text"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: [resolved]")
    );

    // Failing again starts a new episode, notified at once.
    fail_broken(&e, &n).await;
    replica.evaluate(&e.views()).await.unwrap();
    let json = bodies(&received, "json", ALERT);
    assert_eq!(json.len(), 4);
    assert_eq!((json[3]["status"].as_str(), json[3]["notification"].as_i64()), (Some("firing"), Some(1)));
    assert!(json[3]["since"].as_i64() > json[0]["since"].as_i64());

    // No body carries a webhook URL's token or a password.
    for (_, body) in received.lock().unwrap().iter() {
        let text = body.to_string();
        assert!(!text.contains("SECRET") && !text.contains("hunter2"), "{text}");
    }
    e.store().close().await;
}
both_stores!(alerts, alerts_fire_rearm_and_resolve_once_across_replicas);

/// The loop itself: evaluating every 100 ms with a 700 ms re-arm, notifications of one failing
/// check are at least 700 ms apart.
async fn alert_loop_rearms_on_time(db: &TestDb) {
    let (base, received) = receiver().await;
    let alerts = Alerts {
        interval: switchyard_config::value::Duration(Duration::from_millis(100)),
        rearm: switchyard_config::value::Duration(Duration::from_millis(700)),
        webhooks: vec![hook(Some(format!("{base}/hook/loop")), None, WebhookFormat::Json)],
    };
    let e = engine_with(db, alerts.clone()).await;
    e.upsert_jobs(&[job("broken", vec![task("load", Compute::Dedicated, &["egress-a"], &[])])])
        .await
        .unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    fail_broken(&e, &n).await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let looping = tokio::spawn(Alerter::from_settings(&alerts).unwrap().unwrap().run(e.views(), rx));
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    stop.send(true).unwrap();
    looping.await.unwrap();
    let got = bodies(&received, "loop", "job/broken/failed_state");
    let at: Vec<i64> = got.iter().map(|b| b["at"].as_i64().unwrap()).collect();
    assert!((2..=3).contains(&at.len()), "{at:?}");
    assert!(at.windows(2).all(|w| w[1] - w[0] >= 700 && w[1] - w[0] < 1_000), "{at:?}");
    e.store().close().await;
}
both_stores!(alert_loop, alert_loop_rearms_on_time);

/// `GET /api/v1/health` over HTTP: a viewer token is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoint_needs_a_viewer_token() {
    use switchyard_scheduler::api::{AppState, PlanningInputs, router, serve};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::sqlite().await;
    let e = engine_with(&db, Alerts::default()).await;
    history(&e).await;
    let viewer = e.create_token(Role::Viewer, "v").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let app = router(AppState { engine: e.clone(), planning: Arc::new(PlanningInputs::default()) });
    tokio::spawn(serve(listener, app, None, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let get = |token: Option<String>| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        s.write_all(
            format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        (status, serde_json::from_str::<serde_json::Value>(out.split("\r\n\r\n").nth(1).unwrap()).unwrap())
    };
    let (status, body) = get(None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(Some(viewer)).await;
    assert_eq!(status, 200, "{body}");
    let health: Health = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(health.status, Status::Critical);
    assert_eq!(health.jobs.len(), 4);
    assert_eq!(health.pools.len(), 2);
    let _ = stop.send(true);
}
