//! tiberius errors in the failure classes of DESIGN §5, with the hint an operator acts on. Server
//! errors are told apart by their number, which is stable across SQL Server versions and
//! languages (the message text is not).

use switchyard_config::FailureClass;
use tiberius::error::Error as Tds;

use crate::Error;

/// Where the session was when it failed: a protocol error while logging in means the other side is
/// not (a reachable) SQL Server; while reading rows, that the data could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Login,
    Query,
}

/// Login failures: wrong user or password (18456), untrusted domain (18452), disabled (18470),
/// locked out (18486), password expired or to be changed (18487, 18488).
const AUTHENTICATION: &[u32] = &[18452, 18456, 18470, 18486, 18487, 18488];
/// Known but not allowed: object permission (229, 230), database permission (262, 297, 300),
/// no access to the database (916, 4060).
const ACCESS: &[u32] = &[229, 230, 262, 297, 300, 916, 4060];
/// The query itself: syntax (102, 156), invalid object or column (207, 208, 4104), a derived table
/// with unnamed or duplicate columns (8155, 8156), ORDER BY in a derived table (1033), and
/// sp_describe_first_result_set refusing the statement (11501–11529).
const QUERY: &[u32] = &[102, 156, 207, 208, 1033, 4104, 8155, 8156];
/// Gone by themselves on a retry: deadlock victim (1205), lock timeout (1222).
const TRANSIENT: &[u32] = &[1205, 1222];

pub(crate) fn classify(source: &str, phase: Phase, e: Tds) -> Error {
    let (class, hint): (FailureClass, String) = match &e {
        Tds::Server(t) => {
            let (class, hint) = server(t.code(), t.class());
            (class, hint.into())
        }
        Tds::Io { .. } => (
            FailureClass::Connectivity,
            "the connection to SQL Server broke; check the server and the network path".into(),
        ),
        Tds::Tls(_) => (
            FailureClass::Authentication,
            "TLS with the server failed: its certificate must be valid for the host name and issued by a CA in this node's trust store".into(),
        ),
        Tds::Routing { host, port } => (
            FailureClass::Connectivity,
            format!("the server redirects clients to {host}:{port}; point the task there (and allow it in egress.yaml)"),
        ),
        Tds::Protocol(_) | Tds::Encoding(_) if phase == Phase::Login => (
            FailureClass::Connectivity,
            "the other side does not speak TDS as SQL Server does: check host and port".into(),
        ),
        Tds::Protocol(_) | Tds::Encoding(_) | Tds::Conversion(_) | Tds::Utf8 | Tds::Utf16 | Tds::ParseInt(_) => (
            FailureClass::Data,
            "a value could not be decoded; CAST the column to a simpler type in the query".into(),
        ),
        Tds::BulkInput(_) => (FailureClass::Internal, "this source never bulk-inserts; report it as a bug".into()),
    };
    let message = match &e {
        Tds::Server(t) => format!("SQL Server error {} (severity {}): {}", t.code(), t.class(), t.message()),
        other => other.to_string(),
    };
    Error::source(source, class, message, hint)
}

/// The class of a server error (number, severity) and what to do about it.
fn server(code: u32, severity: u8) -> (FailureClass, &'static str) {
    match code {
        c if AUTHENTICATION.contains(&c) => (
            FailureClass::Authentication,
            "check `user` and the password in `password_env`/`password_file`, and that the login is enabled for SQL Server authentication",
        ),
        c if ACCESS.contains(&c) => (
            FailureClass::Access,
            "grant the login what the query needs (e.g. `GRANT SELECT ON <table> TO <user>`) and access to the database",
        ),
        1033 => (
            FailureClass::Data,
            "remove ORDER BY from the query: an incremental load orders by the watermark itself",
        ),
        c if QUERY.contains(&c) || (11501..=11529).contains(&c) => (
            FailureClass::Data,
            "fix the query (run it as the same login in sqlcmd or SSMS to see the same error)",
        ),
        c if TRANSIENT.contains(&c) => (
            FailureClass::Connectivity,
            "a transient conflict with other sessions; the retry repeats the read",
        ),
        // Severity 20 and above ends the connection: the server's problem, not the query's.
        _ if severity >= 20 => {
            (FailureClass::Connectivity, "the server ended the session; check its error log")
        }
        _ => (FailureClass::Data, "the server rejected the query or its data; see the message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_and_tls_have_their_classes() {
        let io = Tds::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() };
        assert_eq!(classify("s", Phase::Query, io).class(), FailureClass::Connectivity);
        assert_eq!(
            classify("s", Phase::Login, Tds::Tls("bad cert".into())).class(),
            FailureClass::Authentication
        );
        assert_eq!(
            classify("s", Phase::Login, Tds::Protocol("x".into())).class(),
            FailureClass::Connectivity
        );
        assert_eq!(classify("s", Phase::Query, Tds::Utf16).class(), FailureClass::Data);
    }

    #[test]
    fn server_errors_by_number() {
        assert_eq!(server(18456, 14).0, FailureClass::Authentication);
        for code in [229, 230, 262, 297, 300, 916, 4060] {
            assert_eq!(server(code, 14).0, FailureClass::Access, "{code}");
        }
        for code in [102, 207, 208, 1033, 8156, 11514] {
            assert_eq!(server(code, 16).0, FailureClass::Data, "{code}");
        }
        assert_eq!(server(1205, 13).0, FailureClass::Connectivity);
        assert_eq!(server(9001, 21).0, FailureClass::Connectivity);
        assert_eq!(server(8115, 16).0, FailureClass::Data);
    }
}
