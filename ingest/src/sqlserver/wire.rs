//! The gateway socket, counted: the gateway audits how many bytes each connection carried when it
//! ends ([`Dialer::closed`]), and only the source sees them pass.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use switchyard_gateway::dial::{DialInfo, Dialer, Target};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stream that adds every byte read or written to a shared counter.
#[derive(Debug)]
pub(crate) struct Counted {
    inner: TcpStream,
    bytes: Arc<AtomicU64>,
}

impl Counted {
    pub(crate) fn new(inner: TcpStream, bytes: Arc<AtomicU64>) -> Counted {
        Counted { inner, bytes }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

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
