//! Embedded migrations, applied in order, each in its own transaction, recorded in
//! `switchyard_migrations`. On PostgreSQL an advisory lock keeps two replicas that start together
//! from migrating at the same time.

use sqlx::Executor;

use super::{Dialect, Store};
use crate::Error;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/0001_init.sql") },
    Migration { version: 2, name: "egress", sql: include_str!("../../migrations/0002_egress.sql") },
    Migration {
        version: 3,
        name: "lake_commits",
        sql: include_str!("../../migrations/0003_lake_commits.sql"),
    },
    Migration { version: 4, name: "run_options", sql: include_str!("../../migrations/0004_run_options.sql") },
    Migration { version: 5, name: "event_log", sql: include_str!("../../migrations/0005_event_log.sql") },
    Migration { version: 7, name: "alerts", sql: include_str!("../../migrations/0007_alerts.sql") },
    Migration {
        version: 8,
        name: "lake_maintenance",
        sql: include_str!("../../migrations/0008_lake_maintenance.sql"),
    },
    Migration {
        version: 9,
        name: "retry_decision",
        sql: include_str!("../../migrations/0009_retry_decision.sql"),
    },
];

/// The SQL for `dialect`: migrations are written for SQLite, and identity columns are the one
/// thing PostgreSQL spells differently.
fn adapt(sql: &str, dialect: Dialect) -> std::borrow::Cow<'_, str> {
    match dialect {
        Dialect::Sqlite => sql.into(),
        Dialect::Postgres => sql
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
            .into(),
    }
}

/// An arbitrary constant: the advisory lock id for migrations.
const MIGRATION_LOCK: i64 = 0x5717_c4a7_d000_0001;

pub(super) async fn run(store: &Store) -> Result<(), Error> {
    let mut conn = store.pool.acquire().await.map_err(Error::store)?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS switchyard_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(Error::store)?;
    if store.dialect == Dialect::Postgres {
        sqlx::query(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .execute(&mut *conn)
            .await
            .map_err(Error::store)?;
    }
    let result = apply(store, &mut conn).await;
    if store.dialect == Dialect::Postgres {
        let _ =
            sqlx::query(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(&mut *conn).await;
    }
    result
}

async fn apply(store: &Store, conn: &mut sqlx::pool::PoolConnection<sqlx::Any>) -> Result<(), Error> {
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM switchyard_migrations")
        .fetch_all(&mut **conn)
        .await
        .map_err(Error::store)?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let sql = adapt(m.sql, store.dialect);
        let mut tx = sqlx::Connection::begin(&mut **conn).await.map_err(Error::store)?;
        tx.execute(sql.as_ref()).await.map_err(|e| Error::Migration {
            version: m.version,
            name: m.name,
            cause: e.to_string(),
        })?;
        sqlx::query("INSERT INTO switchyard_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(super::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)?;
        tracing::info!(version = m.version, name = m.name, "Applied state store migration.");
    }
    Ok(())
}
