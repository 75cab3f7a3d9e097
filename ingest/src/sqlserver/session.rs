//! One load: log in over the gateway socket, describe the query, stream its rows into Arrow
//! batches and hand them out as chunks, with a commit point wherever one may go.
//!
//! It runs on its own task because tiberius's row stream borrows the client: the two cannot live
//! in the source between calls to `next`. The channel to the source holds one chunk, so at most a
//! couple of batches of rows are in memory however large the result.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use switchyard_config::{FailureClass, Secret};
use switchyard_gateway::dial::{Dialer, Target};
use switchyard_lake::Position;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, Row};
use tokio::sync::mpsc;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::classify::{Phase, classify};
use super::cut::Cuts;
use super::describe::{self, Described, Problem, RawColumn};
use super::ident::quote_ident;
use super::query::{self, Watermark};
use super::types::{self, Batch};
use super::wire::Closing;
use crate::chunk::Chunk;
use crate::counted::Counted;
use crate::{Error, Limits};

/// Rows per Arrow batch handed to the writer (each batch is not a commit by itself).
const BATCH_ROWS: usize = 65_536;
/// Or fewer, when the rows are wide.
const BATCH_BYTES: u64 = 64 << 20;
/// From TCP connected to logged in; a SQL Server answers in milliseconds.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What is loaded, and under which position.
#[derive(Debug)]
pub(crate) enum Load {
    /// Everything, committed once at the end under the run's app id.
    Full { app_id: String },
    /// Rows past `last` in `column` order, committed at watermark boundaries.
    Incremental { column: String, app_id: String, last: Option<i64> },
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) name: String,
    pub(crate) dialer: Dialer,
    pub(crate) target: Target,
    /// The host as the manifest names it, for TLS.
    pub(crate) host: String,
    pub(crate) database: String,
    pub(crate) user: String,
    pub(crate) password: Option<Secret<String>>,
    pub(crate) query: String,
    pub(crate) load: Load,
    pub(crate) limits: Limits,
}

type Tds = Client<Compat<Counted<tokio::net::TcpStream>>>;

impl Session {
    pub(crate) async fn run(self, chunks: mpsc::Sender<Chunk>) -> Result<(), Error> {
        let (mut client, _closing) = self.connect().await?;
        let columns = self.describe(&mut client).await?;
        let watermark = self.watermark(&columns).map_err(|p| Error::config(p.message, p.hint))?;
        let sql = match (&self.load, watermark) {
            (Load::Incremental { last, .. }, Some((i, kind))) => {
                query::load(&self.query, Some((&columns[i].name, kind, *last)))
            }
            _ => query::load(&self.query, None),
        };
        tracing::debug!(source = %self.name, sql = %sql, "Reading.");
        let stream = client.simple_query(sql).await.map_err(|e| classify(&self.name, Phase::Query, e))?;
        let mut rows = stream.into_row_stream();
        let mut out = Out::new(&self, &columns, watermark.map(|(i, _)| i), chunks);
        while let Some(row) = rows.try_next().await.map_err(|e| classify(&self.name, Phase::Query, e))? {
            if !out.row(row).await? {
                return Ok(()); // The source was dropped: nobody wants the rest.
            }
        }
        drop(rows);
        out.end().await?;
        let _ = client.close().await;
        Ok(())
    }

    /// The gateway's socket, logged in. TLS is required unless the server is on this machine
    /// (loopback), where the bytes never reach a network: there a server without TLS is accepted.
    async fn connect(&self) -> Result<(Tds, Closing), Error> {
        let dialed = self.dialer.connect(&self.target).await?;
        let bytes = Arc::new(AtomicU64::new(0));
        let closing = Closing {
            dialer: self.dialer.clone(),
            target: self.target.clone(),
            info: dialed.info.clone(),
            bytes: bytes.clone(),
            opened: Instant::now(),
        };
        let _ = dialed.stream.set_nodelay(true);
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.target.port);
        config.database(&self.database);
        config.application_name("switchyard");
        let password = self.password.as_ref().map_or("", |p| p.expose().as_str());
        config.authentication(AuthMethod::sql_server(&self.user, password));
        config.encryption(if dialed.info.peer.ip().is_loopback() {
            EncryptionLevel::NotSupported
        } else {
            EncryptionLevel::Required
        });
        let stream = Counted::new(dialed.stream, bytes).compat_write();
        let client = tokio::time::timeout(LOGIN_TIMEOUT, Client::connect(config, stream))
            .await
            .map_err(|_| {
                Error::source(
                    &self.name,
                    FailureClass::Connectivity,
                    format!("no answer to the login within {}s", LOGIN_TIMEOUT.as_secs()),
                    format!("check that {} is a SQL Server and that it is up", self.target.label()),
                )
            })?
            .map_err(|e| classify(&self.name, Phase::Login, e))?;
        Ok((client, closing))
    }

    async fn describe(&self, client: &mut Tds) -> Result<Vec<Described>, Error> {
        let stream = client
            .simple_query(query::describe(&self.query))
            .await
            .map_err(|e| classify(&self.name, Phase::Query, e))?;
        let rows = stream.into_first_result().await.map_err(|e| classify(&self.name, Phase::Query, e))?;
        let raw = rows.iter().map(RawColumn::from_row).collect::<Result<Vec<_>, _>>();
        raw.and_then(describe::columns).map_err(|p| Error::data(&self.name, p.message, p.hint))
    }

    /// The watermark column's position and order, for an incremental load.
    fn watermark(&self, columns: &[Described]) -> Result<Option<(usize, Watermark)>, Problem> {
        let Load::Incremental { column, .. } = &self.load else { return Ok(None) };
        let Some(i) = columns.iter().position(|c| c.name.eq_ignore_ascii_case(column)) else {
            let names = columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
            return Err(Problem {
                message: format!(
                    "{}: the watermark column {} is not among the query's columns ({names})",
                    self.name,
                    quote_ident(column)
                ),
                hint: "name one of them in `watermark`, or add the column to the query".into(),
            });
        };
        let Some(kind) = Watermark::of(columns[i].kind) else {
            return Err(Problem {
                message: format!(
                    "{}: the watermark column {} is {}; a watermark must be an integer (tinyint, smallint, int, bigint) or a date/time (date, smalldatetime, datetime, datetime2, datetimeoffset)",
                    self.name,
                    quote_ident(&columns[i].name),
                    columns[i].type_name
                ),
                hint: "choose such a column, or CAST one in the query (e.g. `CAST(row_version AS bigint) AS rv`)".into(),
            });
        };
        Ok(Some((i, kind)))
    }
}

/// Rows into chunks.
struct Out {
    name: String,
    names: Vec<String>,
    batch: Batch,
    /// The watermark column, for an incremental load.
    watermark: Option<usize>,
    app_id: String,
    cuts: Cuts,
    rows: u64,
    chunks: mpsc::Sender<Chunk>,
}

impl Out {
    fn new(
        session: &Session,
        columns: &[Described],
        watermark: Option<usize>,
        chunks: mpsc::Sender<Chunk>,
    ) -> Out {
        let app_id = match &session.load {
            Load::Full { app_id } | Load::Incremental { app_id, .. } => app_id.clone(),
        };
        Out {
            name: session.name.clone(),
            names: columns.iter().map(|c| c.name.clone()).collect(),
            batch: Batch::new(&columns.iter().map(|c| (c.name.clone(), c.kind)).collect::<Vec<_>>()),
            watermark,
            app_id,
            cuts: Cuts::new(session.limits),
            rows: 0,
            chunks,
        }
    }

    /// Adds a row, sending what is ready. `false` once nobody receives chunks any more.
    async fn row(&mut self, row: Row) -> Result<bool, Error> {
        if row.len() != self.names.len() {
            return Err(Error::data(
                &self.name,
                format!(
                    "the query returned {} columns, but was described with {}",
                    row.len(),
                    self.names.len()
                ),
                "the query's columns must not depend on the data (no dynamic SQL)",
            ));
        }
        let mut cells = Vec::with_capacity(self.names.len());
        for ((data, kind), name) in row.into_iter().zip(self.batch.kinds()).zip(&self.names) {
            match types::cell(*kind, data) {
                Ok(cell) => cells.push(cell),
                Err(m) => {
                    return Err(Error::data(
                        &self.name,
                        format!("column {}: {m}", quote_ident(name)),
                        "CAST the column to a supported type in the query",
                    ));
                }
            }
        }
        let key = match self.watermark {
            Some(i) => Some(cells[i].watermark().ok_or_else(|| {
                Error::data(
                    &self.name,
                    format!("a row has no value in the watermark column {}", quote_ident(&self.names[i])),
                    "the load skips NULL watermarks; this is a bug if it happens",
                )
            })?),
            None => None,
        };
        if let Some(key) = key {
            if self.cuts.before(key) {
                let last = self.cuts.cut().expect("a row was read");
                if !self.send(Some(last)).await {
                    return Ok(false);
                }
            }
        }
        let bytes = self.batch.push(cells);
        self.rows += 1;
        if let Some(key) = key {
            self.cuts.add(key, bytes).map_err(|last| {
                Error::data(
                    &self.name,
                    format!("rows arrived out of watermark order ({key} after {last})"),
                    "the watermark column must sort the same way in SQL Server as its values do; use an integer or date/time column",
                )
            })?;
        }
        if self.batch.rows() >= BATCH_ROWS || self.batch.bytes() >= BATCH_BYTES {
            return Ok(self.send(None).await);
        }
        Ok(true)
    }

    /// The last chunk, always a commit point; nothing at all when no row was read.
    async fn end(mut self) -> Result<(), Error> {
        if self.rows == 0 {
            return Ok(());
        }
        let version = match self.watermark {
            Some(_) => self.cuts.cut().expect("a row was read"),
            // The whole load is one commit.
            None => 1,
        };
        self.send(Some(version)).await;
        Ok(())
    }

    /// Sends the batch so far, as a commit point at `version` if given.
    async fn send(&mut self, version: Option<i64>) -> bool {
        let chunk = Chunk {
            batches: self.batch.finish().into_iter().collect(),
            positions: version
                .map(|v| Position { app_id: self.app_id.clone(), version: v })
                .into_iter()
                .collect(),
            dead_letters: None,
        };
        self.chunks.send(chunk).await.is_ok()
    }
}
