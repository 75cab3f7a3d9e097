//! Shared setup for the store and engine tests: every test runs against SQLite (a temp file) and
//! PostgreSQL (the server on 127.0.0.1:5432, a uniquely named database per test, dropped after).
//! `SWITCHYARD_TEST_POSTGRES` overrides the admin URL (default `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use sqlx::Executor;
use switchyard_config::settings::{Pool, Settings};
use switchyard_scheduler::engine::{Engine, EngineConfig, NodeInfo, NodeKind};
use switchyard_scheduler::plan::Compute;
use switchyard_scheduler::spec::{JobSpec, TaskSpec};
use switchyard_scheduler::store::Store;

pub fn admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh store of each kind. Keep the returned guards alive for the test's duration.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/state.db", dir.path().display());
        TestDb { url, pg_name: None, _dir: Some(dir) }
    }

    pub async fn postgres() -> TestDb {
        let name = switchyard_testkit::unique_name("sy_test_");
        let admin = sqlx::PgPool::connect(&admin_url())
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        admin.close().await;
        let base = admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        TestDb { url, pg_name: Some(name), _dir: None }
    }

    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
            admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
            admin.close().await;
        }
    }
}

pub fn settings() -> Settings {
    Settings {
        pools: vec![
            Pool {
                name: "egress-a".into(),
                egress_ips: vec!["127.0.0.2".parse().unwrap()],
                slots: 4,
                identities: vec![],
            },
            Pool {
                name: "egress-b".into(),
                egress_ips: vec!["127.0.0.3".parse().unwrap()],
                slots: 4,
                identities: vec![],
            },
        ],
        ..Settings::default()
    }
}

pub async fn engine(db: &TestDb, lease_ttl: Duration) -> Engine {
    let store = Store::open(&db.url).await.unwrap();
    Engine::new(store, EngineConfig { lease_ttl, max_losses: 3, settings: settings() })
}

pub fn task(name: &str, compute: Compute, pools: &[&str], deps: &[&str]) -> TaskSpec {
    let mut t = TaskSpec::command(name, compute, pools, &["true"]);
    t.depends_on = deps.iter().map(|d| d.to_string()).collect();
    t.backoff_ms = 10;
    t.max_backoff_ms = 50;
    t
}

pub fn job(name: &str, tasks: Vec<TaskSpec>) -> JobSpec {
    JobSpec { job: name.into(), schedule: None, tasks, sla_ms: None, expected_interval_ms: None }
}

/// Runs `test` against SQLite and then PostgreSQL.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = common::TestDb::sqlite().await;
                ($body)(&db).await;
                db.drop_db().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = common::TestDb::postgres().await;
                ($body)(&db).await;
                db.drop_db().await;
            }
        }
    };
}

/// A dedicated node of `pool` leaving from `ip`, holding the `partner-prod` identity.
pub fn node(pool: &str, ip: &str) -> NodeInfo {
    NodeInfo {
        kind: NodeKind::Dedicated,
        pool: Some(pool.into()),
        egress_ip: Some(ip.parse().unwrap()),
        identities: vec!["partner-prod".into()],
        version: "test".into(),
        slots: 4,
        launched_at: None,
    }
}

/// A serverless worker.
pub fn worker() -> NodeInfo {
    NodeInfo {
        kind: NodeKind::Serverless,
        pool: None,
        egress_ip: None,
        identities: vec![],
        version: "test".into(),
        slots: 4,
        launched_at: None,
    }
}
