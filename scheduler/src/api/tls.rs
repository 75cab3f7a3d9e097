//! Serving the router, over TLS when configured. The one place that builds the server-side rustls
//! configuration; the ring provider is installed once for the process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::Error;

/// Installs rustls' ring crypto provider, once per process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server TLS configuration from PEM files.
pub fn load_server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    install_crypto_provider();
    let read = |p: &Path| {
        std::fs::read(p).map_err(|cause| Error::Io { what: format!("cannot read {}", p.display()), cause })
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{} is not a PEM certificate chain: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{} holds no certificate", cert.display())));
    }
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| Error::Tls(format!("{} is not a PEM private key: {e}", key.display())))?
        .ok_or_else(|| Error::Tls(format!("{} holds no private key", key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::Tls(format!("the key does not match the certificate ({e})")))?;
    Ok(Arc::new(config))
}

/// Serves `router` on `listener` (TLS if `tls`) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        return axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed.");
                    return;
                }
            };
            let service = TowerToHyperService::new(router);
            if let Err(e) =
                auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(%peer, error = %e, "Connection ended with an error.");
            }
        });
    }
}
