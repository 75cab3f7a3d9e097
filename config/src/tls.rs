//! The one owner of rustls configuration for all of Switchyard: the crypto provider (ring,
//! installed once per process), root stores (the system bundle read once, a CA file or PEM when
//! given), and the client and server configurations built on them. The gateway's dialer, node
//! identities, the control plane's API and client, alert webhooks and the Kubernetes launcher
//! all take theirs from here, so they trust the same roots the same way.
//!
//! It lives in this crate because it is the one both the scheduler and the gateway may import
//! (DESIGN §3); it is behind the `tls` feature so crates that never speak TLS do not build it.

use std::path::Path;
use std::sync::{Arc, Once, OnceLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Debian's bundle of public roots: what clients trust when no CA is named.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Installs rustls' ring provider for the process; later calls do nothing. Dependencies compile
/// both ring and aws-lc-rs, so rustls has no default of its own to fall back on.
pub fn install_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The certificates of a PEM text; at least one.
pub fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The private key of a PEM text.
pub fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("{what} is not PEM: {e}"))?
        .ok_or_else(|| format!("{what} holds no private key"))
}

/// Roots from a PEM text (a CA certificate handed over as text; `origin` names where it came
/// from, for errors).
pub fn roots_from_pem(pem: &[u8], origin: &str) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in certs(pem, origin)? {
        store.add(cert).map_err(|e| format!("bad CA certificate in {origin}: {e}"))?;
    }
    Ok(Arc::new(store))
}

/// Roots from a CA file, or the system bundle (read once per process; empty where there is
/// none, so connections to public servers then fail as untrusted, not as a crash).
pub fn roots(ca: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    match ca {
        Some(ca) => {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
            roots_from_pem(&pem, &ca.display().to_string())
        }
        None => Ok(system_roots()),
    }
}

fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            if let Ok(pem) = std::fs::read(SYSTEM_ROOTS) {
                for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                    let _ = store.add(cert);
                }
            }
            Arc::new(store)
        })
        .clone()
}

/// A client configuration trusting `roots`, without a client certificate.
pub fn client(roots: Arc<RootCertStore>) -> Arc<ClientConfig> {
    install_provider();
    Arc::new(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// A client configuration presenting `chain` with `key` (a node's client identity).
pub fn client_with_identity(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ClientConfig>, String> {
    install_provider();
    ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map(Arc::new)
        .map_err(|e| format!("cannot use the certificate and key: {e}"))
}

/// The client configuration for public servers: system roots, no client certificate, built once.
pub fn public_client() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| client(system_roots())).clone()
}

/// A server configuration from a PEM certificate chain and key file.
pub fn server(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    install_provider();
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let chain = certs(&read(cert)?, &cert.display().to_string())?;
    let key_der = private_key(&read(key)?, &key.display().to_string())?;
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map(Arc::new)
        .map_err(|e| format!("the key does not match the certificate ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_a_certificate_says_what_was_expected() {
        let err = roots_from_pem(b"not a certificate", "the CA variable").unwrap_err();
        assert!(err.contains("the CA variable holds no PEM certificate"), "{err}");
        assert!(private_key(b"", "key.pem").unwrap_err().contains("key.pem holds no private key"));
    }

    #[test]
    fn the_public_client_is_built_once() {
        assert!(Arc::ptr_eq(&public_client(), &public_client()));
    }
}
