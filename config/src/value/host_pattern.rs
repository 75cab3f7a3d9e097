use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;

use super::endpoint::check_dns_name;
use super::{ParseError, string_value};

/// What an egress rule matches: one host name, every name under a suffix (`*.partner.example.com`
/// matches `api.partner.example.com` and `a.b.partner.example.com`, not `partner.example.com`),
/// or a CIDR block (a bare IP is a /32 or /128).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// The suffix without the `*`, starting with `.`: `.partner.example.com`.
    Suffix(String),
    Cidr(IpNet),
}

impl FromStr for HostPattern {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.contains('/') {
            return parse_cidr(s);
        }
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(HostPattern::Cidr(IpNet::from(ip)));
        }
        if let Some(suffix) = s.strip_prefix("*.") {
            if suffix.contains('*') {
                return Err(wildcard_error(s));
            }
            check_dns_name(suffix)?;
            if !suffix.contains('.') {
                return Err(ParseError::new(
                    format!("wildcard `{s}` covers a whole top-level domain"),
                    "name the organisation's domain, e.g. `*.partner.example.com`",
                ));
            }
            return Ok(HostPattern::Suffix(format!(".{}", suffix.to_ascii_lowercase())));
        }
        if s.contains('*') {
            return Err(wildcard_error(s));
        }
        check_dns_name(s)?;
        Ok(HostPattern::Exact(s.to_ascii_lowercase()))
    }
}

fn wildcard_error(s: &str) -> ParseError {
    ParseError::new(
        format!("`{s}` uses `*` in an unsupported place"),
        "a wildcard is only allowed as the whole first label, e.g. `*.partner.example.com`",
    )
}

fn parse_cidr(s: &str) -> Result<HostPattern, ParseError> {
    let hint = "write an address block such as `10.20.0.0/16` or `2001:db8::/32`";
    let net: IpNet = s.parse().map_err(|_| {
        let (addr, len) = s.split_once('/').unwrap_or((s, ""));
        let max = if addr.contains(':') { 128 } else { 32 };
        let why = match (addr.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
            (Err(_), _) => format!("`{addr}` is not an IP address"),
            (Ok(_), Ok(n)) if n > max => format!("prefix length {n} is more than {max}"),
            _ => format!("`{len}` is not a prefix length"),
        };
        ParseError::new(format!("invalid CIDR `{s}`: {why}"), hint)
    })?;
    if net.trunc() != net {
        return Err(ParseError::new(
            format!("CIDR `{s}` has host bits set"),
            format!("did you mean `{}`?", net.trunc()),
        ));
    }
    Ok(HostPattern::Cidr(net))
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*{s}"),
            HostPattern::Cidr(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            HostPattern::Cidr(net) => write!(f, "{net}"),
        }
    }
}

string_value!(
    HostPattern,
    "a host name, `*.suffix` wildcard, or CIDR",
    "An exact host name, a `*.suffix` wildcard (any name under the suffix), an IP address, or a CIDR block."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            "SQL01.corp.example".parse::<HostPattern>().unwrap(),
            HostPattern::Exact("sql01.corp.example".into())
        );
        assert_eq!(
            "*.partner.example.com".parse::<HostPattern>().unwrap(),
            HostPattern::Suffix(".partner.example.com".into())
        );
        assert!(matches!("10.0.0.0/8".parse::<HostPattern>().unwrap(), HostPattern::Cidr(_)));
        assert_eq!("10.0.0.5".parse::<HostPattern>().unwrap().to_string(), "10.0.0.5");
    }

    #[test]
    fn explains_bad_patterns() {
        assert!("10.0.0.5/24".parse::<HostPattern>().unwrap_err().hint.contains("10.0.0.0/24"));
        assert!("10.0.0.0/33".parse::<HostPattern>().unwrap_err().message.contains("more than 32"));
        assert!("api.*.example.com".parse::<HostPattern>().is_err());
        assert!("*.com".parse::<HostPattern>().is_err());
        assert!("*".parse::<HostPattern>().is_err());
    }
}
