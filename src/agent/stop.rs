//! How a running attempt learns it must stop, shared by every kind of work (programs,
//! ingestion, transforms): its timeout, and the stop signal the agent sends when the control
//! plane revokes the attempt or the node drains.

use std::time::Duration;

use tokio::sync::watch;

/// Why an attempt must stop before it finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The control plane no longer considers the attempt ours (cancelled or lost): stop, report nothing.
    Revoked(String),
    /// The node is draining and its grace period is over: stop and hand the lease back.
    HandBack,
}

/// Resolves when an attempt's timeout (if any) has passed.
pub(crate) async fn deadline(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// Resolves with the reason once the attempt must stop (never, if the sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(reason) = stop.borrow_and_update().clone() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
