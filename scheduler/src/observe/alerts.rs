//! Alert webhooks: the control plane evaluates [`Views::health`] every `[alerts] interval` and
//! POSTs to each webhook when a check turns bad, again every `rearm` while it stays bad (or at once
//! when its severity changes), and once when it is good again (`status: resolved`).
//!
//! Which notification is due is decided in the state store (`alerts`, one row per check and
//! webhook) by one conditional upsert, so several control-plane replicas evaluating at once send
//! each notification once. A delivery that fails is given back (the row's `sent_at` cleared) and
//! retried at the next evaluation.
//!
//! Bodies carry the check's job or pool, severity, message and action — never the webhook URL
//! (often itself a credential), and URL passwords in messages are masked.
//!
//! Generic JSON (`format = "json"`):
//!
//! ```json
//! { "source": "switchyard", "status": "firing" | "resolved",
//!   "alert": "job/claims_daily/failed_state", "job": "claims_daily", "pool": null,
//!   "check": "failed_state", "severity": "critical",
//!   "message": "run 12 failed: task ingest_claims failed (connectivity): …",
//!   "action": "check that the destination is up …",
//!   "since": 1760000000000, "at": 1760000030000, "notification": 1 }
//! ```
//!
//! Slack (`format = "slack"`): `{ "text": "…", "blocks": [ section (mrkdwn), context ] }`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sha2::Digest;
use sqlx::{AnyPool, Row};
use switchyard_config::Secret;
use switchyard_config::settings::{Alerts, Webhook, WebhookFormat};
use tokio::sync::watch;

use crate::Error;
use crate::views::Views;
use crate::views::health::{Check, Health, Severity};

/// One delivery gives up after this long.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failing check, as alerts name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// `job/<job>/<check>` or `pool/<pool>/<check>`.
    pub alert: String,
    pub job: Option<String>,
    pub pool: Option<String>,
    pub check: Check,
}

/// The failing checks of a health report.
pub fn firing(health: &Health) -> Vec<Firing> {
    let jobs = health.jobs.iter().flat_map(|j| {
        j.checks.iter().filter(|c| !c.ok).map(|c| Firing {
            alert: format!("job/{}/{}", j.job, c.check),
            job: Some(j.job.clone()),
            pool: None,
            check: c.clone(),
        })
    });
    let pools = health.pools.iter().flat_map(|p| {
        p.checks.iter().filter(|c| !c.ok).map(|c| Firing {
            alert: format!("pool/{}/{}", p.pool, c.check),
            job: None,
            pool: Some(p.pool.clone()),
            check: c.clone(),
        })
    });
    jobs.chain(pools).collect()
}

/// One webhook, its URL resolved.
#[derive(Debug)]
struct Target {
    /// For logs: the configured name or the URL's host.
    name: String,
    /// Identifies the webhook in the store without keeping its URL: a hash of it.
    id: String,
    url: Secret<String>,
    format: WebhookFormat,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What one evaluation sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub firing: usize,
    pub resolved: usize,
    pub failed: usize,
}

/// The alert loop's state: its webhooks and timing.
#[derive(Debug)]
pub struct Alerter {
    targets: Vec<Target>,
    interval: Duration,
    rearm: Duration,
}

impl Alerter {
    /// `None` when no webhook is configured. Errors name the webhook whose URL cannot be read.
    pub fn from_settings(alerts: &Alerts) -> Result<Option<Alerter>, Error> {
        if alerts.webhooks.is_empty() {
            return Ok(None);
        }
        let targets =
            alerts.webhooks.iter().enumerate().map(|(i, w)| target(i, w)).collect::<Result<_, _>>()?;
        Ok(Some(Alerter { targets, interval: alerts.interval.as_std(), rearm: alerts.rearm.as_std() }))
    }

    /// Evaluates every `interval` until `shutdown` turns true.
    pub async fn run(self, views: Views, mut shutdown: watch::Receiver<bool>) {
        let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        tracing::info!(webhooks = ?names, interval_s = self.interval.as_secs_f64(), rearm_s = self.rearm.as_secs_f64(), "Alerting.");
        loop {
            if let Err(e) = self.evaluate(&views).await {
                tracing::warn!(error = %e, "Alert evaluation failed; retrying at the next interval.");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// One evaluation: health now, then the notifications that are due.
    pub async fn evaluate(&self, views: &Views) -> Result<Sent, Error> {
        let health = views.health().await?;
        self.notify(views, &firing(&health), health.checked_at).await
    }

    /// Sends what is due for the failing checks `now` (epoch ms): each newly failing check, each
    /// one whose last notification is older than `rearm` or whose severity changed, and a
    /// resolution for each notified check that is no longer failing.
    pub async fn notify(&self, views: &Views, firing: &[Firing], now: i64) -> Result<Sent, Error> {
        let rearm_before = now - self.rearm.as_millis() as i64;
        let mut sent = Sent::default();
        for target in &self.targets {
            let delivery = Delivery { pool: &views.store().pool, target, now };
            for f in firing {
                delivery.fire(f, rearm_before, &mut sent).await?;
            }
            delivery.resolve_cleared(firing, &mut sent).await?;
        }
        Ok(sent)
    }
}

/// One webhook's part of an evaluation. Claims, give-backs and resolutions bind the same `now`: a
/// failed delivery is given back by matching `sent_at = now`, so the claim and the give-back must
/// agree on it.
#[derive(Debug)]
struct Delivery<'a> {
    pool: &'a AnyPool,
    target: &'a Target,
    now: i64,
}

impl Delivery<'_> {
    /// The conditional upsert is the claim: of several replicas only the one whose upsert matched
    /// posts. A failed post gives the claim back (`sent_at` cleared) so the next evaluation retries.
    async fn fire(&self, f: &Firing, rearm_before: i64, sent: &mut Sent) -> Result<(), Error> {
        let (target, now) = (self.target, self.now);
        let claimed = sqlx::query(
            "INSERT INTO alerts (alert, target, state, severity, message, since, sent_at, sent_count) \
             VALUES ($1, $2, 'firing', $3, $4, $5, $5, 1) \
             ON CONFLICT (alert, target) DO UPDATE SET state = 'firing', severity = excluded.severity, \
             message = excluded.message, sent_at = excluded.sent_at, \
             since = CASE WHEN alerts.state = 'resolved' THEN excluded.since ELSE alerts.since END, \
             sent_count = CASE WHEN alerts.state = 'resolved' THEN 1 ELSE alerts.sent_count + 1 END \
             WHERE alerts.state = 'resolved' OR alerts.sent_at IS NULL OR alerts.sent_at <= $6 \
             OR alerts.severity <> excluded.severity \
             RETURNING since, sent_count",
        )
        .bind(&f.alert)
        .bind(&target.id)
        .bind(f.check.severity.as_str())
        .bind(&f.check.message)
        .bind(now)
        .bind(rearm_before)
        .fetch_optional(self.pool)
        .await
        .map_err(Error::store)?;
        let Some(row) = claimed else { return Ok(()) };
        let since: i64 = row.try_get("since").map_err(Error::store)?;
        let count: i64 = row.try_get("sent_count").map_err(Error::store)?;
        let body = body(target.format, f, "firing", since, now, count);
        match target.post(&body).await {
            Ok(()) => {
                sent.firing += 1;
                tracing::info!(webhook = %target.name, alert = %f.alert, severity = f.check.severity.as_str(), notification = count, "Alert sent.");
            }
            Err(problem) => {
                sent.failed += 1;
                tracing::warn!(webhook = %target.name, alert = %f.alert, problem = %problem, "Alert not delivered; retrying at the next evaluation.");
                sqlx::query(
                    "UPDATE alerts SET sent_at = NULL, sent_count = sent_count - 1 \
                     WHERE alert = $1 AND target = $2 AND sent_at = $3",
                )
                .bind(&f.alert)
                .bind(&target.id)
                .bind(now)
                .execute(self.pool)
                .await
                .map_err(Error::store)?;
            }
        }
        Ok(())
    }

    /// Which alerts were notified is read from the store, not remembered, so a replica that never
    /// saw an alert fire still resolves it.
    async fn resolve_cleared(&self, firing: &[Firing], sent: &mut Sent) -> Result<(), Error> {
        let bad: BTreeSet<&str> = firing.iter().map(|f| f.alert.as_str()).collect();
        let open = sqlx::query("SELECT alert FROM alerts WHERE target = $1 AND state = 'firing'")
            .bind(&self.target.id)
            .fetch_all(self.pool)
            .await
            .map_err(Error::store)?;
        for row in &open {
            let alert: String = row.try_get("alert").map_err(Error::store)?;
            if bad.contains(alert.as_str()) {
                continue;
            }
            self.resolve(&alert, sent).await?;
        }
        Ok(())
    }

    /// The conditional update is the claim, as for firing. A resolution that is not delivered is
    /// not retried: the row is marked resolved before the post, so no later evaluation sees it open.
    async fn resolve(&self, alert: &str, sent: &mut Sent) -> Result<(), Error> {
        let (target, now) = (self.target, self.now);
        // Notified before: say it is resolved (once, whichever replica gets here first).
        let resolved = sqlx::query(
            "UPDATE alerts SET state = 'resolved', sent_at = $3 \
             WHERE alert = $1 AND target = $2 AND state = 'firing' AND sent_at IS NOT NULL \
             RETURNING since, severity, message, sent_count",
        )
        .bind(alert)
        .bind(&target.id)
        .bind(now)
        .fetch_optional(self.pool)
        .await
        .map_err(Error::store)?;
        let Some(row) = resolved else {
            // Never delivered: close it quietly.
            sqlx::query(
                "UPDATE alerts SET state = 'resolved' WHERE alert = $1 AND target = $2 AND state = 'firing'",
            )
            .bind(alert)
            .bind(&target.id)
            .execute(self.pool)
            .await
            .map_err(Error::store)?;
            return Ok(());
        };
        let since: i64 = row.try_get("since").map_err(Error::store)?;
        let severity: String = row.try_get("severity").map_err(Error::store)?;
        let message: String = row.try_get("message").map_err(Error::store)?;
        let count: i64 = row.try_get("sent_count").map_err(Error::store)?;
        let f = resolved_firing(alert, &severity, &message);
        let body = body(target.format, &f, "resolved", since, now, count + 1);
        match target.post(&body).await {
            Ok(()) => {
                sent.resolved += 1;
                tracing::info!(webhook = %target.name, alert = %alert, "Alert resolved.");
            }
            Err(problem) => {
                sent.failed += 1;
                tracing::warn!(webhook = %target.name, alert = %alert, problem = %problem, "Resolution not delivered; not retried.");
            }
        }
        Ok(())
    }
}

/// A resolved alert rebuilt from its row (the check passes now; the body says what it was).
fn resolved_firing(alert: &str, severity: &str, message: &str) -> Firing {
    let mut parts = alert.splitn(3, '/');
    let (kind, subject, check) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let severity = match severity {
        "critical" => Severity::Critical,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    };
    Firing {
        alert: alert.to_owned(),
        job: (kind == "job").then(|| subject.to_owned()),
        pool: (kind == "pool").then(|| subject.to_owned()),
        check: Check {
            check: check.to_owned(),
            ok: true,
            severity,
            message: format!("resolved: {message}"),
            action: None,
        },
    }
}

#[derive(Serialize)]
struct JsonBody<'a> {
    source: &'static str,
    status: &'a str,
    alert: &'a str,
    job: Option<&'a str>,
    pool: Option<&'a str>,
    check: &'a str,
    severity: &'a str,
    message: String,
    action: Option<String>,
    since: i64,
    at: i64,
    /// 1 for the first notification of this episode, 2 for the first repeat, …
    notification: i64,
}

/// The request body for `format`.
fn body(
    format: WebhookFormat,
    f: &Firing,
    status: &str,
    since: i64,
    at: i64,
    notification: i64,
) -> serde_json::Value {
    let message = scrub(&f.check.message);
    let action = f.check.action.as_deref().map(scrub);
    match format {
        WebhookFormat::Json => serde_json::to_value(JsonBody {
            source: "switchyard",
            status,
            alert: &f.alert,
            job: f.job.as_deref(),
            pool: f.pool.as_deref(),
            check: &f.check.check,
            severity: f.check.severity.as_str(),
            message,
            action,
            since,
            at,
            notification,
        })
        .unwrap_or_default(),
        WebhookFormat::Slack => {
            let subject = match (&f.job, &f.pool) {
                (Some(job), _) => format!("job *{job}*"),
                (_, Some(pool)) => format!("pool *{pool}*"),
                _ => String::new(),
            };
            let (icon, head) = if status == "resolved" {
                (":white_check_mark:", "resolved".to_owned())
            } else {
                let icon = if f.check.severity == Severity::Critical { ":red_circle:" } else { ":warning:" };
                (icon, f.check.severity.as_str().to_owned())
            };
            let repeat = if status == "firing" && notification > 1 { " (still failing)" } else { "" };
            let mut text = format!("{icon} [{head}] {subject} `{}`{repeat}: {message}", f.check.check);
            if let Some(action) = &action {
                text.push_str(&format!("\n*Action:* {action}"));
            }
            let context = format!("Switchyard · `{}` · failing since {}", f.alert, utc(since));
            serde_json::json!({
                "text": text,
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": text } },
                    { "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] }
                ]
            })
        }
    }
}

fn utc(ms: i64) -> String {
    use chrono::TimeZone;
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Masks the password of any `scheme://user:password@host` in `text`.
pub(crate) fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end =
            tail.find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn target(index: usize, hook: &Webhook) -> Result<Target, Error> {
    let label = hook.name.clone().unwrap_or_else(|| format!("webhook {}", index + 1));
    let bad =
        |cause: String, hint: &str| Error::Webhook { name: label.clone(), cause, hint: hint.to_owned() };
    let url = match (&hook.url, hook.url_source()) {
        (_, Some(source)) => source.resolve().map_err(|e| {
            bad(e.to_string(), "set the variable or write the file the webhook's url_env/url_file names")
        })?,
        (Some(url), None) => Secret::new(url.clone()),
        (None, None) => {
            return Err(bad("no URL".into(), "set url_env, url_file or url in [[alerts.webhooks]]"));
        }
    };
    let parsed: hyper::Uri = url.expose().trim().parse().map_err(|_| {
        bad(
            "the URL is not a valid http(s) URL".into(),
            "check the value (it is not shown because it may be a secret)",
        )
    })?;
    let host = match parsed.host() {
        Some(h) if matches!(parsed.scheme_str(), Some("http" | "https")) => h.to_owned(),
        _ => {
            return Err(bad(
                "the URL is not http:// or https://".into(),
                "use the receiver's full http(s) URL",
            ));
        }
    };
    let name = hook.name.clone().unwrap_or(host);
    let id = {
        let digest = sha2::Sha256::digest(url.expose().trim().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
    };
    let roots = switchyard_config::tls::roots(hook.ca.as_deref())
        .map_err(|problem| bad(problem, "point `ca` at a readable PEM bundle"))?;
    let tls = Arc::unwrap_or_clone(switchyard_config::tls::client(roots));
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    let http = HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(Target { name, id, url: Secret::new(url.expose().trim().to_owned()), format: hook.format, http })
}

impl Target {
    /// POSTs `body`; `Err` says why it was not delivered (without the URL).
    async fn post(&self, body: &serde_json::Value) -> Result<(), String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let request = hyper::Request::post(self.url.expose().as_str())
            .header("content-type", "application/json")
            .header("user-agent", concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|_| "the URL cannot be requested".to_owned())?;
        let response = tokio::time::timeout(POST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| format!("no answer within {}s", POST_TIMEOUT.as_secs()))?
            .map_err(|e| describe(&e))?;
        let status = response.status();
        let text = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&text);
            Err(format!("answered {status}: {}", text.chars().take(200).collect::<String>().trim()))
        }
    }
}

/// A client error with its causes, without the URL.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            scrub("cannot connect to postgres://sy:hunter2@db:5432/x: refused"),
            "cannot connect to postgres://sy:***@db:5432/x: refused"
        );
        assert_eq!(scrub("https://api.example.com/v2?x=1"), "https://api.example.com/v2?x=1");
        assert_eq!(scrub("a://u@h b://p:q@r"), "a://u@h b://p:***@r");
    }
}
