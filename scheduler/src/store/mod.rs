//! The state store: SQLite (embedded default, WAL) or PostgreSQL (several control-plane replicas),
//! behind one set of queries.
//!
//! Queries are written once in the SQL both engines accept (`$1` placeholders, `RETURNING`,
//! `ON CONFLICT`, partial unique indexes); the few differences — identity columns, row locking with
//! `SKIP LOCKED`, migration locking — are in [`Dialect`]. Times are epoch milliseconds, JSON is text.

pub(crate) mod event_log;
mod migrate;
pub(crate) mod sql;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::Error;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Row locking for reading a row that the transaction will update.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Row locking that skips rows another transaction holds (SQLite has one writer anyway).
    pub(crate) fn lock_skip(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Row locking of one table's rows in a join, skipping rows another transaction holds.
    pub(crate) fn lock_skip_of(self, alias: &str) -> String {
        match self {
            Dialect::Sqlite => String::new(),
            Dialect::Postgres => format!(" FOR UPDATE OF {alias} SKIP LOCKED"),
        }
    }
}

/// A connection pool and its dialect. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    /// For reads outside transactions on the hot paths (a waiting lease looking for work, a
    /// node's pool): on SQLite, connections of their own, so they do not queue behind the one
    /// writer (WAL lets readers run beside it and see every committed write); on PostgreSQL the
    /// same pool.
    pub(crate) read: AnyPool,
    pub(crate) dialect: Dialect,
}

impl Store {
    /// Connects and applies pending migrations. `url` is `sqlite://PATH` (the file and its folder
    /// are created) or `postgres://…`.
    pub async fn open(url: &str) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(Error::StoreUrl { url: redact(url) });
        };
        let pool = match dialect {
            Dialect::Sqlite => open_sqlite(url, Access::Write).await?,
            Dialect::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(|e| Error::store_connect(url, e))?,
        };
        let mut store = Store { read: pool.clone(), pool, dialect };
        migrate::run(&store).await?;
        if dialect == Dialect::Sqlite {
            // After the migrations, so the readers find the schema in place.
            store.read = open_sqlite(url, Access::Read).await?;
        }
        Ok(store)
    }

    /// Starts a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`): a
    /// deferred transaction that reads and then writes fails with "database is locked" when another
    /// process wrote in between, instead of waiting its turn.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, Error> {
        let statement = match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        // On its own task, so it always runs to the end: sqlx (0.8.6) leaves the pooled connection
        // inside an open transaction when `begin` is cancelled between sending BEGIN and reading
        // the reply (sqlx issue #4385), and later statements on that connection would then
        // never commit. An API handler is cancelled whenever its client goes away (a node killed
        // mid-request). A transaction begun for a caller that is gone is dropped: rolled back.
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin_with(statement).await })
            .await
            .map_err(|e| Error::store(sqlx::Error::Io(std::io::Error::other(e))))?
            .map_err(Error::store)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes all connections (tests drop their databases afterwards).
    pub async fn close(&self) {
        self.read.close().await;
        self.pool.close().await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Write,
    Read,
}

/// SQLite runs as one writer: a single connection serializes transactions without `SQLITE_BUSY`,
/// and WAL with `synchronous = NORMAL` makes each commit durable against process crashes (the
/// "kill -9 at any moment" promise) at a fraction of the cost of `FULL`. Readers get a few
/// connections of their own that refuse writes (`query_only`).
async fn open_sqlite(url: &str, access: Access) -> Result<AnyPool, Error> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|cause| Error::StoreFiles { path: dir.to_path_buf(), cause })?;
        }
    }
    let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
    let options = AnyConnectOptions::from_str(&url)
        .map_err(|e| Error::store_connect(&url, e))?
        .disable_statement_logging();
    let (connections, pragmas) = match access {
        Access::Write => (
            1,
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
             PRAGMA foreign_keys = ON;",
        ),
        Access::Read => (4, "PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;"),
    };
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(pragmas).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| Error::store_connect(&url, e))
}

/// A store URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://sy:hunter2@db:5432/x"), "postgres://sy:***@db:5432/x");
        assert_eq!(redact("sqlite://.switchyard/state.db"), "sqlite://.switchyard/state.db");
    }
}
