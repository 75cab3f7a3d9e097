//! Recognising, in a failed program's error output, a connection that found no route out.
//!
//! A worker started inside a network namespace with routes to the control plane and the lake
//! only (`[serverless] netns`, or a pod under the workers' NetworkPolicy) stops a program that
//! ignores the proxy variables in the kernel: its `connect` fails with ENETUNREACH ("Network is
//! unreachable") or, behind a firewall that rejects, EHOSTUNREACH ("No route to host"). The
//! failure happens inside the program, so the agent only sees its exit status and output; this
//! finds the ways programs print those two errors, so the attempt is reported as `access` — the
//! task asked for egress it does not have — rather than as bad data.

/// What was found: the error as printed, and the destination when the line names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoRoute {
    pub(crate) error: &'static str,
    pub(crate) destination: Option<String>,
}

/// How programs print the two errors (strerror, Python `[Errno 101]`, Rust `(os error 101)`,
/// curl -v, Node.js and Go `connect: network is unreachable`, errno names), lower-cased.
const PATTERNS: &[(&str, &str)] = &[
    ("network is unreachable", "Network is unreachable"),
    ("enetunreach", "Network is unreachable"),
    ("no route to host", "No route to host"),
    ("ehostunreach", "No route to host"),
];

/// The last line of `stderr` that reports one of the errors.
pub(crate) fn no_route(stderr: &str) -> Option<NoRoute> {
    stderr.lines().rev().find_map(|line| {
        let lower = line.to_ascii_lowercase();
        let (_, error) = PATTERNS.iter().find(|(pattern, _)| lower.contains(pattern))?;
        Some(NoRoute { error, destination: destination(line) })
    })
}

/// `host:port` named on the line: a socket address (`198.51.100.10:443`, `[::1]:443`), or
/// curl's "to 198.51.100.10 port 443".
fn destination(line: &str) -> Option<String> {
    let words: Vec<&str> =
        line.split_whitespace().map(|w| w.trim_matches(|c: char| ",;:()'\"`<>".contains(c))).collect();
    if let Some(addr) = words.iter().find_map(|w| w.parse::<std::net::SocketAddr>().ok()) {
        return Some(addr.to_string());
    }
    words.windows(3).find_map(|w| {
        let ip: std::net::IpAddr = w[0].parse().ok()?;
        let port: u16 = (w[1] == "port").then(|| w[2].parse().ok())??;
        Some(std::net::SocketAddr::new(ip, port).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_error_as_programs_print_it() {
        let rust = "cannot connect to 198.51.100.10:443: Network is unreachable (os error 101)";
        assert_eq!(
            no_route(rust),
            Some(NoRoute { error: "Network is unreachable", destination: Some("198.51.100.10:443".into()) })
        );
        let python =
            "Traceback (most recent call last):\n  ...\nOSError: [Errno 101] Network is unreachable\n";
        assert_eq!(no_route(python).map(|n| n.error), Some("Network is unreachable"));
        let curl = "* Immediate connect fail for 198.51.100.10: Network is unreachable\n\
                    * connect to 198.51.100.10 port 443 failed: No route to host\n\
                    curl: (7) Couldn't connect to server";
        assert_eq!(
            no_route(curl),
            Some(NoRoute { error: "No route to host", destination: Some("198.51.100.10:443".into()) })
        );
        let node = "Error: connect ENETUNREACH 198.51.100.10:5432 - Local (0.0.0.0:0)";
        assert_eq!(no_route(node).and_then(|n| n.destination), Some("198.51.100.10:5432".into()));
    }

    #[test]
    fn other_failures_are_not_taken_for_it() {
        assert_eq!(no_route("curl: (7) Couldn't connect to server"), None);
        assert_eq!(no_route("connection refused (os error 111)"), None);
        assert_eq!(no_route(""), None);
    }
}
