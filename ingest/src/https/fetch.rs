//! Fetching one page: the request the manifest describes, sent until the server answers it or
//! the failure is one that waiting cannot fix. 429 and 503 wait as `Retry-After` says; a GET
//! whose connection fails or that meets a 5xx is retried with backoff (a POST is not: the server
//! may have acted on it). Every other answer is classified (`gateway::classify`) with the URL,
//! never its query string.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response};
use switchyard_config::FailureClass;
use switchyard_config::SecretRef;
use switchyard_config::manifest::{HttpMethod, HttpsSource as Spec, PageFormat};
use switchyard_config::value::HttpUrl;
use switchyard_gateway::classify::classify_http;

use super::client::{Client, SendError, io_cause};
use super::paging::redact;
use super::retry::{FAILED_ATTEMPTS, MAX_WAIT, THROTTLED_ATTEMPTS, backoff, retry_after};
use crate::{Error, secret};

/// The largest page body read into memory.
pub(super) const MAX_PAGE: usize = 256 << 20;
/// The longest one request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of an error body is kept to classify it (nginx explains certificate problems there).
const ERROR_BODY: usize = 64 << 10;

/// Method, headers and body shared by every page request.
#[derive(Debug)]
pub(super) struct Template {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    /// The variable the bearer token comes from, for the hint of a 401.
    token_var: Option<String>,
}

impl Template {
    pub(super) fn new(spec: &Spec) -> Result<Template, Error> {
        let method = match spec.method.unwrap_or(HttpMethod::Get) {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
        };
        let mut headers = HeaderMap::new();
        let url = spec.url.as_url();
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        headers.insert(header::HOST, value(&host, "the URL's host")?);
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION"))),
        );
        let accept = match spec.format.unwrap_or(PageFormat::Json) {
            PageFormat::Json => "application/json",
            PageFormat::Ndjson => "application/x-ndjson, application/jsonl, application/json;q=0.9",
        };
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        for (name, v) in &spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::config(
                    format!("https source: `{name}` is not a valid header name"),
                    "fix `headers` in the task",
                )
            })?;
            headers.insert(name.clone(), value(v, &format!("header `{name}`"))?);
        }
        if let Some(var) = &spec.bearer_token_env {
            let token = secret::resolve(&SecretRef::Env(var.clone()))?;
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", token.expose().trim())).map_err(|_| {
                    Error::config(
                        format!("https source: the token in `{var}` has characters a header cannot carry"),
                        "store the bare token, without quotes or line breaks",
                    )
                })?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        let body = match (&spec.body, &method) {
            (None, _) => Bytes::new(),
            (Some(body), &Method::POST) => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Bytes::from(serde_json::to_vec(body).map_err(|e| {
                    Error::config(format!("https source: cannot encode `body`: {e}"), "fix the task's `body`")
                })?)
            }
            (Some(_), _) => {
                return Err(Error::config(
                    "https source: `body` is set for a GET request",
                    "set `method: POST`, or remove `body`",
                ));
            }
        };
        Ok(Template { method, headers, body, token_var: spec.bearer_token_env.clone() })
    }

    fn request(&self, url: &HttpUrl) -> Request<Full<Bytes>> {
        let u = url.as_url();
        let target = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        };
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        // A URL that parsed as an `HttpUrl` always has a valid origin-form target.
        *request.uri_mut() = target.parse().unwrap_or_default();
        *request.headers_mut() = self.headers.clone();
        request
    }

    fn idempotent(&self) -> bool {
        self.method == Method::GET
    }
}

fn value(v: &str, what: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(v).map_err(|_| {
        Error::config(
            format!("https source: {what} has characters a header cannot carry"),
            "fix it in the task",
        )
    })
}

/// Which page is being fetched, for errors and logs.
#[derive(Debug, Clone, Copy)]
pub(super) struct What<'a> {
    /// The source's name, which says the host and path of the task's URL.
    pub(super) source: &'a str,
    pub(super) base: &'a HttpUrl,
    pub(super) url: &'a HttpUrl,
    pub(super) page: i64,
}

impl What<'_> {
    /// `page 3`, and where it is when a next link led elsewhere than the task's URL.
    pub(super) fn describe(&self) -> String {
        if self.url.as_url().path() == self.base.as_url().path() {
            format!("page {}", self.page)
        } else {
            format!("page {} ({})", self.page, redact(self.url))
        }
    }
}

/// One try's outcome.
enum Try {
    Body(Bytes),
    /// The server is busy: wait (`None`: as the backoff says) and ask again.
    Throttled(Option<Duration>, Error),
    /// Failed in a way a later try may not.
    Failed(Error),
    Fatal(Error),
}

/// The page's body, after as many tries as the failure allows.
pub(super) async fn fetch(client: &mut Client, template: &Template, what: What<'_>) -> Result<Bytes, Error> {
    let (mut throttled, mut failed) = (0u32, 0u32);
    loop {
        let attempt = tokio::time::timeout(REQUEST_TIMEOUT, try_once(client, template, what)).await;
        let attempt = attempt.unwrap_or_else(|_| {
            client.forget();
            Try::Failed(Error::source(
                what.source,
                FailureClass::Connectivity,
                format!("{}: no complete answer within {}s", what.describe(), REQUEST_TIMEOUT.as_secs()),
                "the API is slow or stalled; ask for smaller pages, or retry later",
            ))
        });
        let (wait, error) = match attempt {
            Try::Body(body) => return Ok(body),
            Try::Fatal(e) => return Err(e),
            Try::Throttled(asked, e) => {
                throttled += 1;
                if throttled >= THROTTLED_ATTEMPTS {
                    return Err(e);
                }
                (asked.unwrap_or_else(|| backoff(throttled - 1)), e)
            }
            Try::Failed(e) => {
                failed += 1;
                if failed >= FAILED_ATTEMPTS {
                    return Err(e);
                }
                (backoff(failed - 1), e)
            }
        };
        tracing::warn!(source = what.source, page = what.page, wait_ms = wait.as_millis() as u64, error = %error, "Retrying a page.");
        tokio::time::sleep(wait).await;
    }
}

async fn try_once(client: &mut Client, template: &Template, what: What<'_>) -> Try {
    let (response, egress_ip) = match client.send(template.request(what.url)).await {
        Ok(r) => r,
        Err(SendError::Dial(e)) => {
            // Nothing was sent, so even a POST may be tried again.
            let retry = e.class() == FailureClass::Connectivity;
            return if retry { Try::Failed(e) } else { Try::Fatal(e) };
        }
        // The server closed a kept-alive connection before the request went out.
        Err(SendError::Unsent(e)) => return Try::Failed(transport(what, &e)),
        Err(SendError::Http(e)) => {
            let e = transport(what, &e);
            return if template.idempotent() && e.class() == FailureClass::Connectivity {
                Try::Failed(e)
            } else {
                Try::Fatal(e)
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return match read(response, MAX_PAGE).await {
            Ok(body) => Try::Body(body),
            Err(Read::TooLarge) => Try::Fatal(Error::data(
                what.source,
                format!("{} is larger than {} MiB", what.describe(), MAX_PAGE >> 20),
                "ask the API for smaller pages (usually a page size or limit parameter in the URL)",
            )),
            Err(Read::Failed(e)) => {
                let e = transport(what, &*e);
                if template.idempotent() && e.class() == FailureClass::Connectivity {
                    Try::Failed(e)
                } else {
                    Try::Fatal(e)
                }
            }
        };
    }
    let asked = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match read(response, ERROR_BODY).await {
        Ok(body) => String::from_utf8_lossy(&body).into_owned(),
        Err(_) => {
            client.forget();
            String::new()
        }
    };
    let code = status.as_u16();
    if matches!(code, 429 | 503) {
        if let Some(wait) = asked.filter(|w| *w > MAX_WAIT) {
            return Try::Fatal(Error::source(
                what.source,
                FailureClass::Connectivity,
                format!(
                    "{}: the API is busy (HTTP {code}) and asks to wait {}s",
                    what.describe(),
                    wait.as_secs()
                ),
                "the task's retries will try again later; check the API's rate limits for this client",
            ));
        }
        return Try::Throttled(asked, refused(what, template, code, &body, egress_ip));
    }
    if status.is_redirection() {
        return Try::Fatal(Error::data(
            what.source,
            format!(
                "{} answered HTTP {code}, a redirect to {}",
                what.describe(),
                location.as_deref().map_or("(no Location)".to_owned(), |l| format!(
                    "`{}`",
                    l.split('?').next().unwrap_or(l)
                ))
            ),
            "set the task's `url` to the address it redirects to (redirects are not followed: the egress policy is per host)",
        ));
    }
    let e = refused(what, template, code, &body, egress_ip);
    if status.is_server_error() && template.idempotent() { Try::Failed(e) } else { Try::Fatal(e) }
}

/// An answer that is not the page, classified by what it says.
fn refused(what: What<'_>, template: &Template, code: u16, body: &str, egress_ip: IpAddr) -> Error {
    let (class, message, hint) = match classify_http(code, body, egress_ip) {
        Some(f) => (f.class, f.message, f.hint),
        None => (FailureClass::Data, format!("the destination answered HTTP {code}"), String::new()),
    };
    let hint = match (code, &template.token_var) {
        (401, Some(var)) => format!(
            "check the token in `{var}` (`bearer_token_env`): it may have expired or belong to another environment"
        ),
        (401, None) => {
            "the API wants credentials: set `bearer_token_env` to the variable holding its token".into()
        }
        (404, _) => format!("check the task's `url` ({})", redact(what.url)),
        _ => hint,
    };
    Error::source(what.source, class, format!("{}: {message}", what.describe()), hint)
}

/// A failed exchange: a TLS failure keeps the class the gateway gives it (a client certificate
/// rejected after a TLS 1.3 handshake is authentication); anything else is connectivity.
fn transport(what: What<'_>, e: &(dyn std::error::Error + 'static)) -> Error {
    if let (Some(io), "https") = (io_cause(e), what.url.as_url().scheme()) {
        let host = what.url.endpoint().host.to_string();
        let tls = switchyard_gateway::tls::classify(&host, io);
        if tls.class() != FailureClass::Connectivity {
            return Error::Gateway(tls);
        }
    }
    Error::source(
        what.source,
        FailureClass::Connectivity,
        format!("{}: the connection failed: {}", what.describe(), chain(e)),
        "the server closed or reset the connection; check that it is up and speaks HTTP(S) on this port",
    )
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

enum Read {
    TooLarge,
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

async fn read(response: Response<Incoming>, limit: usize) -> Result<Bytes, Read> {
    match Limited::new(response.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Read::TooLarge),
        Err(e) => Err(Read::Failed(e)),
    }
}
