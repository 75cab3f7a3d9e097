//! Ctrl-C and SIGTERM as a watch every long-running command selects on, so each can stop
//! cleanly (drain, export what is left) instead of dying mid-write.

use tokio::sync::watch;

/// A watch that turns true on SIGINT or SIGTERM.
pub(crate) fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        tracing::info!("Shutdown requested.");
        let _ = tx.send(true);
    });
    rx
}
