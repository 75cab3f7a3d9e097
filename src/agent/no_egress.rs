//! What a serverless worker gives programs in place of egress: a proxy on loopback that refuses
//! every request (`CONNECT host:port` or `GET http://…`) with 403 and an explanation, and records
//! each refusal in the control plane's egress audit — so a `run` task without destinations that
//! tries to reach the outside fails with a reason an operator can read, and the attempt shows in
//! the egress page beside the nodes' denials.
//!
//! Programs reach it through `HTTPS_PROXY`/`HTTP_PROXY`, which curl, Python and most HTTP
//! clients honour. A program that opens sockets directly is not stopped by this proxy but by the
//! network: a worker in a namespace with routes to the control plane and the lake only
//! (`[serverless] netns`), or a pod under the workers' NetworkPolicy (see `deploy/`), finds no
//! route out; the agent recognises that failure in the program's output ([`super::no_route`]) and
//! audits it here too, as `serverless_no_route`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use switchyard_scheduler::api::types::AuditRecord;
use switchyard_scheduler::client::Client;
use tokio::net::TcpListener;

use super::output::Tail;

/// Why the request was refused, in the audit and in the 403 body.
const REASON: &str = "serverless workers have no egress";
/// The audit code of these denials.
pub(crate) const CODE: &str = "serverless_no_egress";
/// The audit code of a program's own connection that found no route out.
pub(crate) const NO_ROUTE_CODE: &str = "serverless_no_route";
/// Its reason in the audit.
const NO_ROUTE_REASON: &str = "no route out of the worker's network";

/// Job, task and log tail of a running attempt, by its proxy label.
type Attempt = (String, String, Tail);

/// The running refusal proxy.
#[derive(Debug, Clone)]
pub(crate) struct NoEgress {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    attempts: Arc<Mutex<HashMap<String, Attempt>>>,
    /// The first refused destination of each attempt label, until taken.
    refused: Arc<Mutex<HashMap<String, String>>>,
    client: Client,
    /// Where the refused attempts run, for the audit: `serverless`, or a node's egress IP.
    egress_ip: String,
}

impl NoEgress {
    /// Binds a loopback port and serves until the process ends.
    pub(crate) async fn start(client: Client, egress_ip: String) -> std::io::Result<NoEgress> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let guard = NoEgress { url, attempts: Arc::default(), refused: Arc::default(), client, egress_ip };
        let served = guard.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let guard = served.clone();
                tokio::spawn(async move { guard.refuse(stream).await });
            }
        });
        Ok(guard)
    }

    /// The proxy URL for one attempt: its label goes in the user part, so a refusal names the task.
    pub(crate) fn register(&self, attempt: i64, job: &str, task: &str, tail: Tail) -> String {
        let label = format!("attempt-{attempt}");
        if let Ok(mut a) = self.attempts.lock() {
            a.insert(label.clone(), (job.to_owned(), task.to_owned(), tail));
        }
        self.url.replacen("://", &format!("://{label}:x@"), 1)
    }

    pub(crate) fn unregister(&self, attempt: i64) {
        if let Ok(mut a) = self.attempts.lock() {
            a.remove(&format!("attempt-{attempt}"));
        }
        if let Ok(mut r) = self.refused.lock() {
            r.remove(&format!("attempt-{attempt}"));
        }
    }

    /// Records in the control plane's audit that a program of `job`/`task` connected by itself
    /// and found no route (its destination, when its error named one).
    pub(crate) async fn audit_no_route(&self, job: &str, task: &str, destination: Option<String>) {
        let destination = destination.unwrap_or_else(|| "unknown".into());
        tracing::warn!(destination = %destination, job, task, "A program's own connection found no route out of the worker.");
        let mut record = denial(&self.egress_ip, job, task, destination);
        record.code = Some(NO_ROUTE_CODE.into());
        record.reason = Some(NO_ROUTE_REASON.into());
        if let Err(e) = self.client.post_audit(vec![record]).await {
            tracing::warn!(error = %e, "Could not record the egress denial at the control plane.");
        }
    }

    /// The first destination refused to `attempt`, if any.
    pub(crate) fn take_refusal(&self, attempt: i64) -> Option<String> {
        self.refused.lock().ok()?.remove(&format!("attempt-{attempt}"))
    }

    /// Answers every request on one connection with 403 and records the refusal. hyper reads the
    /// request: CONNECT's authority, an absolute-form URI, the proxy credentials.
    async fn refuse(&self, stream: tokio::net::TcpStream) {
        let guard = self.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = guard.clone();
            async move { Ok::<_, std::convert::Infallible>(guard.answer(&req).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
        if let Err(e) = served {
            tracing::debug!(error = %e, "Refusal proxy connection ended with an error.");
        }
    }

    async fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let destination = destination(req).unwrap_or_else(|| "unknown".into());
        let label = label(req);
        let who = label.as_ref().and_then(|l| self.attempts.lock().ok().and_then(|a| a.get(l).cloned()));
        if let (Some(l), Some(_), Ok(mut refused)) = (&label, &who, self.refused.lock()) {
            refused.entry(l.clone()).or_insert_with(|| destination.clone());
        }
        let body = format!(
            "switchyard: {destination} refused: {REASON}. Move this fetch to a task with `destinations` \
             (or an ingest source) on a dedicated node whose egress IP the destination allows.\n"
        );
        let (job, task) = match &who {
            Some((job, task, tail)) => {
                tail.push(format!("egress denied: {destination} ({REASON})\n").as_bytes());
                (job.as_str(), task.as_str())
            }
            None => ("", ""),
        };
        tracing::warn!(destination = %destination, job, task, "Egress refused to a task without destinations.");
        if let Err(e) = self.client.post_audit(vec![denial(&self.egress_ip, job, task, destination)]).await {
            tracing::warn!(error = %e, "Could not record the egress denial at the control plane.");
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::FORBIDDEN;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
        headers.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        response
    }
}

/// The audit record of a refused attempt to leave: a serverless worker (`egress_ip`
/// `serverless`) or a node running a task without destinations (its egress IP).
pub(crate) fn denial(egress_ip: &str, job: &str, task: &str, destination: String) -> AuditRecord {
    AuditRecord {
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        egress_ip: egress_ip.to_owned(),
        task: (!task.is_empty()).then(|| format!("{job}/{task}")),
        destination,
        verdict: "denied".into(),
        code: Some(CODE.into()),
        rule: None,
        reason: Some(REASON.into()),
        count: 1,
        bytes: 0,
        duration_ms: 0,
    }
}

/// `host:port` of `CONNECT host:port` or of an absolute-form `GET http://host/…`.
fn destination<B>(req: &Request<B>) -> Option<String> {
    if req.method() == hyper::Method::CONNECT {
        return req.uri().authority().map(ToString::to_string);
    }
    let uri = req.uri();
    let port = uri.port_u16().or_else(|| match uri.scheme_str()? {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(format!("{}:{port}", uri.host()?))
}

/// The user of a `Proxy-Authorization: Basic …` header (the attempt label).
fn label<B>(req: &Request<B>) -> Option<String> {
    let value = req.headers().get(header::PROXY_AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = switchyard_gateway::proxy::decode_base64(encoded.trim())?;
    let user = String::from_utf8(decoded).ok()?;
    Some(user.split_once(':').map_or(user.clone(), |(u, _)| u.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_destinations_and_labels() {
        let connect = Request::builder().method("CONNECT").uri("api.example.com:443").body(()).unwrap();
        assert_eq!(destination(&connect).as_deref(), Some("api.example.com:443"));
        let get = Request::builder().method("GET").uri("http://10.0.0.5/x").body(()).unwrap();
        assert_eq!(destination(&get).as_deref(), Some("10.0.0.5:80"));
        // "attempt-7:x" in base64.
        let labelled = Request::builder()
            .method("CONNECT")
            .uri("a:1")
            .header("Proxy-Authorization", "Basic YXR0ZW1wdC03Ong=")
            .body(())
            .unwrap();
        assert_eq!(label(&labelled).as_deref(), Some("attempt-7"));
    }
}
