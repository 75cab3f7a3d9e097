//! Serving the router, over TLS when configured.

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

/// A server TLS configuration from PEM files (built by [`switchyard_config::tls`], the one owner
/// of rustls setup in the process).
pub fn load_server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    switchyard_config::tls::server(cert, key).map_err(Error::Tls)
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
