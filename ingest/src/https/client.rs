//! One HTTP/1.1 connection to the API's host, made by the gateway's dialer (policy, static source
//! IP, the rule's client identity) and kept alive across pages; a new one is dialled when the
//! server closes it. Its end is audited with the bytes it carried, like every gateway socket.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use switchyard_config::FailureClass;
use switchyard_gateway::dial::{Dialer, Target};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Error;
use crate::counted::Counted;

#[derive(Debug)]
pub(super) struct Client {
    /// The source's name, for errors.
    source: String,
    dialer: Dialer,
    target: Target,
    tls: bool,
    /// The identity the manifest names, which the egress rule must present.
    identity: Option<String>,
    conn: Option<Conn>,
}

#[derive(Debug)]
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    egress_ip: IpAddr,
}

/// Why a request got no response.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection: the gateway refused or could not make it, nothing was sent.
    Dial(Error),
    /// The connection closed before the request was written: nothing was sent.
    Unsent(hyper::Error),
    /// The connection failed with the request in flight.
    Http(hyper::Error),
}

impl Client {
    pub(super) fn new(
        source: String,
        dialer: Dialer,
        target: Target,
        tls: bool,
        identity: Option<String>,
    ) -> Self {
        Client { source, dialer, target, tls, identity, conn: None }
    }

    /// Sends `request` on the open connection, or on a new one if there is none (or the server
    /// closed it). Returns the response and the egress IP it went out from.
    pub(super) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, IpAddr), SendError> {
        if let Some(conn) = &mut self.conn {
            if conn.sender.is_closed() || conn.sender.ready().await.is_err() {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let egress_ip = conn.egress_ip;
        match conn.sender.try_send_request(request).await {
            Ok(response) => Ok((response, egress_ip)),
            Err(mut e) => {
                self.conn = None;
                let unsent = e.take_message().is_some();
                Err(if unsent { SendError::Unsent(e.into_error()) } else { SendError::Http(e.into_error()) })
            }
        }
    }

    /// Drops the connection, e.g. after leaving a response body unread.
    pub(super) fn forget(&mut self) {
        self.conn = None;
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let (io, info): (Box<dyn Io>, _) = if self.tls {
            let (stream, info) = self.dialer.connect_tls(&self.target).await.map_err(dial)?;
            (Box::new(stream), info)
        } else {
            let dialed = self.dialer.connect(&self.target).await.map_err(dial)?;
            (Box::new(dialed.stream), dialed.info)
        };
        if let Some(wanted) = &self.identity {
            if info.identity.as_ref() != Some(wanted) {
                return Err(SendError::Dial(Error::source(
                    &self.source,
                    FailureClass::Authentication,
                    format!(
                        "the task asks for identity `{wanted}`, but egress rule `{}` presents {}",
                        info.rule.as_deref().unwrap_or("(none)"),
                        info.identity
                            .as_deref()
                            .map_or("no client certificate".to_owned(), |i| format!("`{i}`"))
                    ),
                    format!(
                        "set `identity: {wanted}` on the egress rule for {} (egress.yaml), or fix the task's `identity`",
                        self.target.label()
                    ),
                )));
            }
        }
        let bytes = Arc::new(AtomicU64::new(0));
        let io: Counted<Box<dyn Io>> = Counted::new(io, bytes.clone());
        let (sender, connection) = http1::handshake(TokioIo::new(io)).await.map_err(SendError::Http)?;
        let (dialer, target, egress_ip, started) =
            (self.dialer.clone(), self.target.clone(), info.local.ip(), Instant::now());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(destination = %target.label(), error = %e, "HTTPS connection ended with an error.");
            }
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            dialer.closed(&target, &info, bytes.load(Ordering::Relaxed), ms);
        });
        Ok(Conn { sender, egress_ip })
    }
}

fn dial(e: switchyard_gateway::Error) -> SendError {
    SendError::Dial(Error::Gateway(e))
}

/// What the connection runs over: TLS, or plain TCP for `http://` URLs.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The I/O error under a hyper error, where TLS failures after the handshake surface (a TLS 1.3
/// server rejects a client certificate on the first read).
pub(super) fn io_cause<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e io::Error> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}
