//! The control plane's HTTP client, used by node agents, serverless workers and the CLI. Speaks
//! plain HTTP or HTTPS (rustls, with the control plane's CA). Errors keep the server's
//! `{code, message, hint}`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::api::error::ApiError;
use crate::api::types::*;
use crate::engine::{HeartbeatReply, Lease, NodeInfo, Registration};
use crate::views::{NodeView, RunView};

/// Requests other than long polls give up after this long.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    /// `base` is `http://host:port` or `https://host:port`; `ca` verifies an HTTPS control plane.
    pub fn new(base: &str, token: String, ca: Option<&Path>) -> Result<Client, Error> {
        match ca {
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|cause| Error::Io {
                    what: format!("cannot read the CA file {}", ca.display()),
                    cause,
                })?;
                Client::with_ca_pem(base, token, Some((&pem, &ca.display().to_string())))
            }
            None => Client::with_ca_pem(base, token, None),
        }
    }

    /// As [`Client::new`], with the CA certificate given as PEM text (`origin` names where it came
    /// from, for errors): how the local launcher hands workers the control plane's CA, so a
    /// worker reads no file the control plane's machine holds.
    pub fn with_ca_pem(base: &str, token: String, ca: Option<(&[u8], &str)>) -> Result<Client, Error> {
        let roots = match ca {
            Some((pem, origin)) => switchyard_config::tls::roots_from_pem(pem, origin).map_err(Error::Tls)?,
            None if base.starts_with("https://") => {
                return Err(Error::Tls(
                    "an https control plane needs its CA certificate: pass --ca-file".into(),
                ));
            }
            None => Arc::new(rustls::RootCertStore::empty()),
        };
        let tls = Arc::unwrap_or_clone(switchyard_config::tls::client(roots));
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<R, Error> {
        let url = format!("{}{path}", self.base);
        let payload = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| Error::corrupt("request body", e))?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(payload))
            .map_err(|e| Error::Unreachable { url: url.clone(), cause: e.to_string() })?;
        let unreachable = |cause: String| Error::Unreachable { url: self.base.clone(), cause };
        let response = tokio::time::timeout(timeout, self.http.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", timeout.as_secs())))?
            .map_err(|e| unreachable(describe(&e)))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
        if status.is_success() {
            let bytes = if bytes.is_empty() { Bytes::from_static(b"null") } else { bytes };
            return serde_json::from_slice(&bytes).map_err(|e| Error::corrupt("control plane answer", e));
        }
        let api: ApiError = serde_json::from_slice(&bytes).unwrap_or_else(|_| ApiError {
            status: status.as_u16(),
            code: "http".into(),
            message: String::from_utf8_lossy(&bytes).trim().to_owned(),
            hint: String::new(),
            errors: vec![],
        });
        if !api.errors.is_empty() {
            return Err(Error::Rejected { errors: api.errors });
        }
        Err(Error::Api {
            url: self.base.clone(),
            status: status.as_u16(),
            code: api.code,
            message: api.message,
            hint: api.hint,
        })
    }

    pub async fn register(&self, info: &NodeInfo) -> Result<Registration, Error> {
        self.call(Method::POST, "/api/v1/nodes", Some(info), TIMEOUT).await
    }

    pub async fn deregister(&self, node: &str) -> Result<(), Error> {
        self.call::<(), ()>(Method::DELETE, &format!("/api/v1/nodes/{node}"), None, TIMEOUT).await
    }

    pub async fn heartbeat(&self, node: &str, request: &HeartbeatRequest) -> Result<HeartbeatReply, Error> {
        self.call(Method::POST, &format!("/api/v1/nodes/{node}/heartbeat"), Some(request), TIMEOUT).await
    }

    pub async fn lease(&self, node: &str, request: &LeaseRequest) -> Result<Vec<Lease>, Error> {
        let timeout = TIMEOUT + Duration::from_millis(request.wait_ms);
        let r: LeaseResponse =
            self.call(Method::POST, &format!("/api/v1/nodes/{node}/leases"), Some(request), timeout).await?;
        Ok(r.leases)
    }

    pub async fn report(&self, node: &str, request: &ReportRequest) -> Result<ReportResponse, Error> {
        let wait = request.lease.map_or(0, |l| l.wait_ms);
        self.call(
            Method::POST,
            &format!("/api/v1/nodes/{node}/reports"),
            Some(request),
            TIMEOUT + Duration::from_millis(wait),
        )
        .await
    }

    pub async fn submit(&self, request: &SubmitRequest) -> Result<SubmitResponse, Error> {
        self.call(Method::POST, "/api/v1/jobs", Some(request), TIMEOUT).await
    }

    pub async fn runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<RunView>, Error> {
        self.runs_since(job, None, limit).await
    }

    /// Runs unfinished or finished within `since` (`7d`), when given.
    pub async fn runs_since(
        &self,
        job: Option<&str>,
        since: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunView>, Error> {
        let mut path = format!("/api/v1/runs?limit={limit}");
        if let Some(since) = since {
            crate::views::cost::parse_since(since)?;
            let since: String = since.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            path.push_str(&format!("&since={since}"));
        }
        if let Some(job) = job {
            path.push_str(&format!(
                "&job={}",
                job.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-', "")
            ));
        }
        self.call::<(), _>(Method::GET, &path, None, TIMEOUT).await
    }

    pub async fn run(&self, id: i64) -> Result<RunView, Error> {
        self.call::<(), _>(Method::GET, &format!("/api/v1/runs/{id}"), None, TIMEOUT).await
    }

    pub async fn cancel_run(&self, id: i64) -> Result<RunView, Error> {
        self.call::<(), _>(Method::POST, &format!("/api/v1/runs/{id}/cancel"), None, TIMEOUT).await
    }

    pub async fn cancel_task(&self, id: i64) -> Result<(), Error> {
        self.call::<(), ()>(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None, TIMEOUT).await
    }

    pub async fn create_token(&self, role: crate::engine::Role, name: &str) -> Result<String, Error> {
        let r: TokenResponse = self
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(&TokenRequest { role, name: name.to_owned() }),
                TIMEOUT,
            )
            .await?;
        Ok(r.token)
    }

    pub async fn post_audit(&self, records: Vec<crate::engine::AuditRecord>) -> Result<(), Error> {
        self.call::<_, ()>(Method::POST, "/api/v1/egress/audit", Some(&AuditBatch { records }), TIMEOUT).await
    }

    pub async fn audit(
        &self,
        denied_only: bool,
        limit: i64,
    ) -> Result<Vec<crate::engine::AuditRecord>, Error> {
        self.call::<(), _>(
            Method::GET,
            &format!("/api/v1/egress/audit?denied={denied_only}&limit={limit}"),
            None,
            TIMEOUT,
        )
        .await
    }

    /// The latest applied policy, or `None` if none was applied through the control plane.
    pub async fn policy(&self) -> Result<Option<crate::engine::PolicyVersion>, Error> {
        match self.call::<(), _>(Method::GET, "/api/v1/egress/policy", None, TIMEOUT).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn apply_policy(&self, yaml: String, mode: PolicyMode) -> Result<i64, Error> {
        let applied: Applied = self
            .call(Method::POST, "/api/v1/egress/policy", Some(&ApplyPolicy { yaml, mode }), TIMEOUT)
            .await?;
        Ok(applied.version)
    }

    pub async fn nodes(&self) -> Result<Vec<NodeView>, Error> {
        self.call::<(), _>(Method::GET, "/api/v1/nodes", None, TIMEOUT).await
    }

    /// The cost report over the last `since` (`7d`, `24h`); checked here first, so a typo is
    /// reported without a round trip.
    pub async fn cost(&self, since: &str) -> Result<crate::views::CostReport, Error> {
        crate::views::cost::parse_since(since)?;
        // A duration is letters, digits and spaces; spaces are dropped (`1h 30m` = `1h30m`).
        let since: String = since.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        self.call::<(), _>(Method::GET, &format!("/api/v1/cost?since={since}"), None, TIMEOUT).await
    }
}

/// hyper's client errors hide the cause (refused, DNS, TLS) in their source chain.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
