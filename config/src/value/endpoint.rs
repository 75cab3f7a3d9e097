use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::{ParseError, string_value};

/// A destination host: a DNS name (lower-cased, as DNS compares) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Parses a host without port, checking DNS name syntax.
    pub fn parse(s: &str) -> Result<Host, ParseError> {
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        check_dns_name(s)?;
        Ok(Host::Name(s.to_ascii_lowercase()))
    }
}

/// Checks RFC 1123 name syntax: labels of letters, digits and `-`, at most 63 characters each.
pub(crate) fn check_dns_name(s: &str) -> Result<(), ParseError> {
    let bad = |why: String| {
        Err(ParseError::new(
            format!("`{s}` is not a valid host name: {why}"),
            "write a DNS name such as `sql01.corp.example` or an IP address",
        ))
    };
    if s.is_empty() {
        return bad("it is empty".into());
    }
    if s.len() > 253 {
        return bad("it is longer than 253 characters".into());
    }
    for label in s.trim_end_matches('.').split('.') {
        if label.is_empty() {
            return bad("it has an empty label (`..`)".into());
        }
        if label.len() > 63 {
            return bad(format!("label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return bad(format!("it contains `{c}`"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!("label `{label}` starts or ends with `-`"));
        }
    }
    Ok(())
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// `host:port`, the unit that egress rules allow and tasks declare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: Host, port: u16) -> Self {
        Self { host, port }
    }
}

impl FromStr for Endpoint {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(ParseError::new(
                format!("`{s}` has no port"),
                format!("write host:port, e.g. `{s}:443`"),
            ));
        };
        if host.contains(':') && !host.starts_with('[') {
            return Err(ParseError::new(
                format!("`{s}` is ambiguous"),
                "write IPv6 addresses in brackets, e.g. `[2001:db8::1]:443`",
            ));
        }
        let port = parse_port(port)?;
        Ok(Endpoint { host: Host::parse(host)?, port })
    }
}

pub(crate) fn parse_port(s: &str) -> Result<u16, ParseError> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(ParseError::new(format!("port {p} is out of range"), "ports are 1–65535")),
        Err(_) => Err(ParseError::new(format!("`{s}` is not a port number"), "ports are 1–65535")),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

string_value!(
    Endpoint,
    "host:port",
    "A destination as host:port, e.g. `files.partner.example.com:443` or `[2001:db8::1]:443`."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_ips_and_ipv6() {
        let e: Endpoint = "Kafka1.Corp.Example:9093".parse().unwrap();
        assert_eq!(e.to_string(), "kafka1.corp.example:9093");
        let e: Endpoint = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(e.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert!("host".parse::<Endpoint>().unwrap_err().hint.contains("host:443"));
        assert!("host:70000".parse::<Endpoint>().unwrap_err().message.contains("out of range"));
        assert!("bad host:1".parse::<Endpoint>().is_err());
    }
}
