//! The end of a gateway socket: the gateway audits how many bytes each connection carried when it
//! ends ([`Dialer::closed`]); the byte count comes from [`crate::counted::Counted`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use switchyard_gateway::dial::{DialInfo, Dialer, Target};

/// Reports the connection's end to the gateway's audit when dropped, on every path out.
#[derive(Debug)]
pub(crate) struct Closing {
    pub(crate) dialer: Dialer,
    pub(crate) target: Target,
    pub(crate) info: DialInfo,
    pub(crate) bytes: Arc<AtomicU64>,
    pub(crate) opened: Instant,
}

impl Drop for Closing {
    fn drop(&mut self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.dialer.closed(&self.target, &self.info, self.bytes.load(Ordering::Relaxed), ms);
    }
}
