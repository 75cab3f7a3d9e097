//! Classifying what a destination answers over HTTP, where TLS servers such as nginx report client
//! certificate problems and source-IP refusals (`allow`/`deny`) as responses rather than alerts.

use std::net::IpAddr;

use switchyard_config::FailureClass;

/// A failure a response reveals: its class, what happened, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFailure {
    pub class: FailureClass,
    pub message: String,
    pub hint: String,
}

/// Classifies an HTTP status (and the start of its body) received from `egress_ip`.
pub fn classify_http(status: u16, body: &str, egress_ip: IpAddr) -> Option<HttpFailure> {
    let lower = body.to_ascii_lowercase();
    let cert_problem = lower.contains("ssl certificate") || lower.contains("no required ssl certificate");
    let failure = |class, message: String, hint: String| Some(HttpFailure { class, message, hint });
    match status {
        200..=399 => None,
        400 | 495 | 496 if cert_problem || status != 400 => failure(
            FailureClass::Authentication,
            format!("the destination rejected the client certificate (HTTP {status})"),
            "check the identity: the certificate must be signed by a CA the partner trusts, unexpired, and match its key".into(),
        ),
        401 => failure(
            FailureClass::Authentication,
            "the destination did not accept our credentials (HTTP 401)".into(),
            "check the token or identity this task uses".into(),
        ),
        403 => failure(
            FailureClass::Access,
            format!("the destination refused requests from egress IP {egress_ip} (HTTP 403)"),
            format!("ask the partner to allowlist {egress_ip}, or run the task on a pool whose egress IP they allow"),
        ),
        407 => failure(FailureClass::Authentication, "the proxy wants credentials (HTTP 407)".into(), "configure the gateway's proxy credentials".into()),
        429 | 500..=599 => failure(FailureClass::Connectivity, format!("the destination is unavailable (HTTP {status})"), "retry later; the task's retries will".into()),
        _ => failure(FailureClass::Data, format!("the destination answered HTTP {status}"), "check the request the task makes".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_nginx_answers() {
        let ip: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(classify_http(403, "<html>403 Forbidden", ip).unwrap().class, FailureClass::Access);
        assert!(classify_http(403, "", ip).unwrap().hint.contains("127.0.0.3"));
        assert_eq!(
            classify_http(400, "The SSL certificate error", ip).unwrap().class,
            FailureClass::Authentication
        );
        assert_eq!(
            classify_http(400, "No required SSL certificate was sent", ip).unwrap().class,
            FailureClass::Authentication
        );
        assert_eq!(classify_http(400, "bad request", ip).unwrap().class, FailureClass::Data);
        assert_eq!(classify_http(200, "", ip), None);
    }
}
