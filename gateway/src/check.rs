//! `switchyard egress check`: probe a destination the way a connector would reach it — policy,
//! DNS, TCP from the static egress IP, TLS with the destination's identity, certificate expiry —
//! and name the first thing that fails: `denied_by_policy`, `ip_not_allowlisted`, `dns`,
//! `refused`, `timeout`, `tls`, `cert_expired`.

use std::time::SystemTime;

use switchyard_config::FailureClass;

use crate::Error;
use crate::dial::{Dialer, Target};
use crate::identity::Identities;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub target: String,
    /// `None` when every stage passed.
    pub code: Option<&'static str>,
    /// What was reached, or what failed.
    pub detail: String,
    pub hint: String,
}

impl CheckResult {
    pub fn ok(&self) -> bool {
        self.code.is_none()
    }
}

fn code_of(e: &Error) -> &'static str {
    match e {
        Error::Denied { reason, .. } => reason.code(),
        Error::Dns { .. } => "dns",
        Error::Refused { .. } => "refused",
        Error::Timeout { .. } => "timeout",
        Error::Tls { detail, .. } if detail.contains("Expired") => "cert_expired",
        Error::Tls { .. } | Error::Identity { .. } => "tls",
        _ => "refused",
    }
}

/// Probes `target`; with `tls`, also completes a TLS handshake and checks expiry.
pub async fn check(dialer: &Dialer, identities: &Identities, target: &Target, tls: bool) -> CheckResult {
    let label = target.label();
    let failed = |e: Error| CheckResult {
        target: label.clone(),
        code: Some(code_of(&e)),
        detail: e.to_string(),
        hint: e.hint(),
    };
    if !tls {
        return match dialer.connect(target).await {
            Ok(d) => CheckResult {
                target: label.clone(),
                code: None,
                detail: format!(
                    "TCP to {} from {} (rule {})",
                    d.info.peer,
                    d.info.local.ip(),
                    d.info.rule.as_deref().unwrap_or("-")
                ),
                hint: String::new(),
            },
            Err(e) => failed(e),
        };
    }
    match dialer.connect_tls(target).await {
        Err(e) => failed(e),
        Ok((stream, info)) => {
            let mut detail = format!(
                "TLS to {} from {} (rule {})",
                info.peer,
                info.local.ip(),
                info.rule.as_deref().unwrap_or("-")
            );
            if let Some(name) = &info.identity {
                if let Some(identity) = identities.get(name) {
                    let days = identity.days_left(SystemTime::now());
                    if days < 0 {
                        return CheckResult {
                            target: label,
                            code: Some("cert_expired"),
                            detail: format!(
                                "client certificate of identity {name} expired {} day(s) ago",
                                -days
                            ),
                            hint: format!(
                                "renew the certificate of [identities.{name}]; the node reloads it without a restart"
                            ),
                        };
                    }
                    detail.push_str(&format!(", identity {name} valid for {days} more day(s)"));
                }
            }
            if let Some(days) = server_days_left(&stream) {
                detail.push_str(&format!(", server certificate valid for {days} more day(s)"));
            }
            CheckResult { target: label, code: None, detail, hint: String::new() }
        }
    }
}

fn server_days_left(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Option<i64> {
    let (_, conn) = stream.get_ref();
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some((cert.validity().not_after.timestamp() - now).div_euclid(86_400))
}

/// The class of a failed check, for reporting alongside runtime failures.
pub fn class_of(code: &str) -> FailureClass {
    match code {
        "denied_by_policy" | "ip_not_allowlisted" => FailureClass::Access,
        "tls" | "cert_expired" => FailureClass::Authentication,
        _ => FailureClass::Connectivity,
    }
}
