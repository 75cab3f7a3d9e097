//! TLS on the egress side: the handshake over a dialed stream, and the classification of TLS
//! failures into `authentication` (certificates, on either side) versus `connectivity`. The
//! configurations themselves (provider, roots, client configs) come from
//! [`switchyard_config::tls`], the process's one owner of rustls setup.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use switchyard_config::FailureClass;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::Error;

pub(crate) fn read_pem(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|cause| Error::Read { path: path.to_path_buf(), cause })
}

/// Performs the TLS handshake over a dialed stream.
pub async fn handshake(
    stream: TcpStream,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| Error::Tls {
        host: host.to_owned(),
        class: FailureClass::Internal,
        detail: format!("`{host}` is not a valid TLS server name"),
    })?;
    tokio_rustls::TlsConnector::from(config).connect(name, stream).await.map_err(|e| classify(host, &e))
}

/// Turns an I/O error on a TLS stream (handshake, or the first read when TLS 1.3 servers reject a
/// client certificate after the handshake) into a classified error.
pub fn classify(host: &str, e: &std::io::Error) -> Error {
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (class, detail) = match tls {
        Some(rustls::Error::InvalidCertificate(reason)) => {
            (FailureClass::Authentication, format!("the server's certificate was rejected: {reason:?}"))
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            use rustls::AlertDescription as A;
            let auth = matches!(
                alert,
                A::BadCertificate
                    | A::CertificateRequired
                    | A::CertificateExpired
                    | A::CertificateRevoked
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::AccessDenied
                    | A::UnsupportedCertificate
            );
            let class = if auth { FailureClass::Authentication } else { FailureClass::Connectivity };
            (class, format!("the server sent the alert {alert:?} (our client certificate was not accepted)"))
        }
        Some(other) => (FailureClass::Connectivity, other.to_string()),
        None => (FailureClass::Connectivity, e.to_string()),
    };
    Error::Tls { host: host.to_owned(), class, detail }
}
