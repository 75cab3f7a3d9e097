//! PostgreSQL source: the query's rows streamed with binary `COPY (query) TO STDOUT` over a socket
//! from the gateway's dialer (policy-checked, bound to the node's static egress IP).
//!
//! With a `watermark` column the load is incremental: rows come ordered by it, a commit point is
//! cut only where its value changes (ties never straddle two commits), and the last value of each
//! commit is its `txn` version, so the next attempt or run reads `watermark > last`. Rows whose
//! watermark is NULL cannot be placed and are not read. Without a watermark the whole result is
//! one commit, scoped to the run.

mod copy;
mod types;

use std::pin::Pin;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use switchyard_config::FailureClass;
use switchyard_config::manifest::DatabaseSource;
use switchyard_gateway::dial::Target;
use switchyard_lake::{Position, TableWriter, WriteMode};
use tokio_postgres::error::SqlState;

use crate::chunk::{Chunk, Source};
use crate::flush::Fill;
use crate::{Context, Error, Limits, secret};
use copy::{CopyReader, Fields};
use types::{Builder, Kind};

/// Rows per Arrow batch handed to the writer (bounded memory, overlapping encode and read).
const BATCH_ROWS: usize = 65_536;

type CopyStream = Pin<Box<dyn Stream<Item = Result<Bytes, tokio_postgres::Error>> + Send>>;

pub struct PostgresSource {
    name: String,
    /// Keeps the session open while the COPY streams.
    _client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
    stream: CopyStream,
    reader: CopyReader,
    fields: Fields,
    kinds: Vec<Kind>,
    schema: SchemaRef,
    builders: Vec<Builder>,
    /// Index and kind of the watermark column.
    watermark: Option<(usize, Kind)>,
    app_id: String,
    limits: Limits,
    fill: Fill,
    /// Rows handed out since the last commit point.
    uncommitted: u64,
    last: Option<i64>,
    ended: bool,
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSource").field("name", &self.name).field("last", &self.last).finish()
    }
}

impl Drop for PostgresSource {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl PostgresSource {
    pub async fn open(
        spec: &DatabaseSource,
        ctx: &Context,
        writer: &TableWriter,
        mode: WriteMode,
        limits: Limits,
    ) -> Result<Self, Error> {
        let port = spec.port.map_or(5432, |p| p.0);
        let name = format!("postgres {}:{port}/{}", spec.host, spec.database);
        if spec.watermark.is_some() && mode == WriteMode::Overwrite {
            return Err(Error::config(
                format!("{name}: a `watermark` load reads only new rows, so it cannot `overwrite` the table"),
                "use `mode: append` with a watermark, or drop the watermark to reload everything",
            ));
        }
        let dialed = ctx.dialer.connect(&Target::parse(&spec.host, port)?).await?;
        let mut config = tokio_postgres::Config::new();
        config.user(&spec.user).dbname(&spec.database).application_name("switchyard");
        if let Some(password) = secret::password(spec.password_env.as_deref(), spec.password_file.as_deref())?
        {
            config.password(password.expose().as_bytes());
        }
        let handshake = config.connect_raw(dialed.stream, tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(std::time::Duration::from_secs(30), handshake)
            .await
            .map_err(|_| {
                Error::source(
                    &name,
                    FailureClass::Connectivity,
                    "no answer to the startup handshake within 30s",
                    "check that a PostgreSQL server (not another service) listens on that port",
                )
            })?
            .map_err(|e| classify(&name, &e))?;
        let task = name.clone();
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(source = %task, error = %e, "PostgreSQL connection ended with an error.");
            }
        });
        let base = spec.query.trim().trim_end_matches(';').trim();
        let described = client
            .prepare(&format!("SELECT * FROM ({base}) AS sy_src"))
            .await
            .map_err(|e| classify(&name, &e))?;
        let mut kinds = Vec::new();
        for column in described.columns() {
            kinds.push(Kind::of(column.type_()).ok_or_else(|| {
                Error::data(
                    &name,
                    format!("column `{}` has type {}, which is not supported", column.name(), column.type_()),
                    format!("cast it in the query, e.g. `{}::text`", column.name()),
                )
            })?);
        }
        let names: Vec<&str> = described.columns().iter().map(|c| c.name()).collect();
        let schema = std::sync::Arc::new(Schema::new(
            kinds.iter().zip(&names).map(|(k, n)| k.field(n)).collect::<Vec<_>>(),
        ));
        let (sql, watermark, app_id) = match &spec.watermark {
            Some(column) => {
                let index = names
                    .iter()
                    .position(|n| n == column)
                    .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(column)))
                    .ok_or_else(|| {
                        Error::config(
                            format!("{name}: watermark column `{column}` is not in the query's result"),
                            format!("the query returns: {}", names.join(", ")),
                        )
                    })?;
                let kind = kinds[index];
                let app_id = format!("{}/wm", ctx.app_id());
                let last = writer.position(&app_id).await?;
                let quoted = format!("\"{}\"", names[index].replace('"', "\"\""));
                let mut filter = format!("{quoted} IS NOT NULL");
                if let Some(last) = last {
                    let literal = kind.literal(last).ok_or_else(|| unsupported_watermark(&name, column))?;
                    filter.push_str(&format!(" AND {quoted} > {literal}"));
                }
                if kind.literal(0).is_none() {
                    return Err(unsupported_watermark(&name, column));
                }
                tracing::info!(source = %name, watermark = %column, after = ?last, "Incremental load.");
                (
                    format!("SELECT * FROM ({base}) AS sy_src WHERE {filter} ORDER BY {quoted}"),
                    Some((index, kind)),
                    app_id,
                )
            }
            None => (base.to_owned(), None, format!("{}/run-{}", ctx.app_id(), ctx.run)),
        };
        let stream = client
            .copy_out(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)"))
            .await
            .map_err(|e| classify(&name, &e))?;
        let builders = kinds.iter().map(|k| Builder::new(*k, BATCH_ROWS)).collect();
        Ok(PostgresSource {
            name,
            _client: client,
            connection,
            stream: Box::pin(stream),
            reader: CopyReader::default(),
            fields: Fields::new(),
            kinds,
            schema,
            builders,
            watermark,
            app_id,
            limits,
            fill: Fill::new(),
            uncommitted: 0,
            last: None,
            ended: false,
        })
    }

    fn take_batch(&mut self) -> Result<RecordBatch, Error> {
        let columns = self.builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::data(&self.name, e.to_string(), "report this as a bug"))
    }

    fn pending(&self) -> usize {
        self.builders.first().map_or(0, Builder::len)
    }

    /// The rows built so far, as a commit point (`commit`) or a batch of the commit in progress.
    fn chunk(&mut self, commit: bool) -> Result<Chunk, Error> {
        let mut chunk = Chunk::default();
        if self.pending() > 0 {
            let batch = self.take_batch()?;
            self.uncommitted += batch.num_rows() as u64;
            chunk.batches.push(batch);
        }
        if commit && self.uncommitted > 0 {
            let version = match self.watermark {
                Some(_) => self.last.unwrap_or_default(),
                None => 1,
            };
            chunk.positions.push(Position { app_id: self.app_id.clone(), version });
            self.uncommitted = 0;
            self.fill = Fill::new();
        }
        Ok(chunk)
    }

    /// Appends the row whose fields were just parsed.
    fn push_row(&mut self, bytes: usize) -> Result<(), Error> {
        let buf = self.reader.bytes();
        for (i, (field, builder)) in self.fields.iter().zip(&mut self.builders).enumerate() {
            let raw = field.map(|(s, e)| &buf[s..e]);
            builder.push(raw).map_err(|why| {
                Error::data(
                    &self.name,
                    format!("column `{}` ({:?}): {why}", self.schema.field(i).name(), self.kinds[i]),
                    "cast the column to text in the query and report the value",
                )
            })?;
        }
        self.fill.add(1, bytes as u64);
        Ok(())
    }
}

impl Source for PostgresSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn next(&mut self) -> Result<Option<Chunk>, Error> {
        loop {
            while let Some(bytes) = self
                .reader
                .next_row(&mut self.fields)
                .map_err(|why| Error::data(&self.name, why, "check that the query is a plain SELECT"))?
            {
                let mut cut = None;
                if let Some((index, kind)) = self.watermark {
                    let value = self.fields[index]
                        .and_then(|(s, e)| kind.watermark(&self.reader.bytes()[s..e]))
                        .ok_or_else(|| {
                            Error::data(
                                &self.name,
                                "a watermark value is NULL or unreadable",
                                "report this as a bug",
                            )
                        })?;
                    // Cut only between different watermark values: a resume reads `> last`.
                    if self.fill.full(&self.limits) && self.last.is_some_and(|l| l != value) {
                        cut = Some(self.chunk(true)?);
                    }
                    self.last = Some(value);
                }
                self.push_row(bytes)?;
                if let Some(chunk) = cut {
                    return Ok(Some(chunk));
                }
                if self.pending() >= BATCH_ROWS {
                    return Ok(Some(self.chunk(false)?));
                }
            }
            if self.reader.finished || self.ended {
                if self.pending() == 0 && self.uncommitted == 0 {
                    return Ok(None);
                }
                return Ok(Some(self.chunk(true)?));
            }
            match self.stream.next().await {
                Some(Ok(bytes)) => self.reader.feed(&bytes),
                Some(Err(e)) => return Err(classify(&self.name, &e)),
                None => self.ended = true,
            }
        }
    }
}

fn unsupported_watermark(name: &str, column: &str) -> Error {
    Error::config(
        format!("{name}: watermark column `{column}` must be an integer, date or timestamp column"),
        "pick a column that only grows (an id or an updated_at timestamp)",
    )
}

/// What went wrong with the server, in the classes operators act on.
fn classify(name: &str, e: &tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return Error::source(
            name,
            FailureClass::Connectivity,
            format!("connection failed: {e}"),
            "check that the server is up and reachable from this node's egress IP",
        );
    };
    let code = db.code();
    let message = format!("{} ({})", db.message(), code.code());
    let (class, hint) = if *code == SqlState::INVALID_PASSWORD {
        (
            FailureClass::Authentication,
            "check the user and the password the manifest's password_env/password_file holds",
        )
    } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && db.message().contains("pg_hba") {
        (
            FailureClass::Access,
            "the server does not accept this user from this node's egress IP: add it to pg_hba.conf",
        )
    } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        || *code == SqlState::INVALID_CATALOG_NAME
    {
        (FailureClass::Authentication, "check the user and database names")
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        (FailureClass::Access, "grant SELECT on the tables the query reads to the ingest user")
    } else if code.code().starts_with("42") || code.code().starts_with("22") {
        (FailureClass::Data, "fix the query in the manifest")
    } else if code.code().starts_with("08") || code.code().starts_with("57") || code.code().starts_with("53")
    {
        (FailureClass::Connectivity, "the server is shutting down or overloaded; the task retries")
    } else {
        (FailureClass::Internal, "see the server's log for this error")
    };
    Error::source(name, class, message, hint)
}
