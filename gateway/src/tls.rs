//! The one place that configures rustls on the egress side: the crypto provider (ring, installed
//! once), root stores, client configurations, and the classification of TLS failures into
//! `authentication` (certificates, on either side) versus `connectivity`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use switchyard_config::FailureClass;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::Error;

/// Debian's bundle of public roots, used when an identity names no `ca`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn read_pem(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|cause| Error::Read { path: path.to_path_buf(), cause })
}

pub(crate) fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    Ok(certs)
}

pub(crate) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("the key file is not PEM: {e}"))?
        .ok_or_else(|| "the key file holds no private key".to_owned())
}

/// Roots from a CA file, or the system bundle.
pub(crate) fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    let (pem, what) = match ca {
        Some(ca) => (
            std::fs::read(ca).map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?,
            ca.display().to_string(),
        ),
        None => match std::fs::read(SYSTEM_ROOTS) {
            Ok(pem) => (pem, SYSTEM_ROOTS.to_owned()),
            Err(_) => return Ok(store),
        },
    };
    for cert in certs(&pem, &what)? {
        store.add(cert).map_err(|e| format!("bad CA certificate in {what}: {e}"))?;
    }
    Ok(store)
}

/// A client configuration without a client certificate.
pub fn anonymous_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    install_provider();
    let roots = roots(ca).map_err(|problem| Error::Tls {
        host: String::new(),
        class: FailureClass::Internal,
        detail: problem,
    })?;
    Ok(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
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
