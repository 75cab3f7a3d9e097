use std::fmt;
use std::str::FromStr;

use super::endpoint::{Endpoint, Host};
use super::{ParseError, string_value};

/// An `https://` (or, for tests and internal services, `http://`) URL with its endpoint resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    url: url::Url,
    endpoint: Endpoint,
}

impl HttpUrl {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn as_url(&self) -> &url::Url {
        &self.url
    }
}

impl FromStr for HttpUrl {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let hint = "write a full URL such as `https://api.partner.example.com/v2/eligibility`";
        let url = url::Url::parse(s).map_err(|e| ParseError::new(format!("invalid URL `{s}`: {e}"), hint))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(ParseError::new(format!("URL `{s}` is not http(s)"), hint));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ParseError::new(
                format!("URL for host `{}` carries credentials", url.host_str().unwrap_or("")),
                "never put credentials in a URL; use `bearer_token_env` or a client `identity`",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => Host::Name(d.to_ascii_lowercase()),
            Some(url::Host::Ipv4(ip)) => Host::Ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => Host::Ip(ip.into()),
            None => return Err(ParseError::new(format!("URL `{s}` has no host"), hint)),
        };
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(HttpUrl { endpoint: Endpoint::new(host, port), url })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

string_value!(
    HttpUrl,
    "an https:// URL",
    "An http(s) URL; the destination is its host and port (443 by default)."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_endpoint_and_refuses_credentials() {
        let u: HttpUrl = "https://API.partner.example.com/v2/x".parse().unwrap();
        assert_eq!(u.endpoint().to_string(), "api.partner.example.com:443");
        let u: HttpUrl = "http://127.0.0.1:8080/x".parse().unwrap();
        assert_eq!(u.endpoint().to_string(), "127.0.0.1:8080");
        let err = "https://user:pw@h.example.com/".parse::<HttpUrl>().unwrap_err();
        assert!(!err.message.contains("pw"), "{}", err.message);
        assert!("ftp://x.example.com".parse::<HttpUrl>().is_err());
    }
}
