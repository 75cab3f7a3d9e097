//! A data-triggered chain across real processes: `switchyard serve` (SQLite), a node agent and the
//! serverless workers its launcher starts. One ingest run from PostgreSQL commits `bronze.claims`;
//! that commit alone starts the `on_update` silver transform, whose commit starts the gold one —
//! in that order, each exactly once, each pinned to the version its upstream committed.

use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_scheduler::api::types::{ManifestFile, SubmitRequest};
use switchyard_scheduler::engine::RunState;
use switchyard_scheduler::views::RunView;

use super::harness::{PgDb, Setup, s3_test_options, write_bronze_t};

const DEBOUNCE: &str = "500ms";

/// `state`: the state store URL (`None`: SQLite in the setup directory).
fn settings(setup: &Setup, state: Option<&str>, lake: &str) -> String {
    let sqlite = format!("sqlite://{}", setup.path("state.db").display());
    format!(
        r#"[control_plane]
listen = "127.0.0.1:{port}"
state = "{state}"
token_file = "{token}"
lease_ttl = "10s"

{lake}

[[pools]]
name = "ingest"
egress_ips = ["127.0.0.1"]
slots = 2

[serverless]
max_workers = 2
idle_timeout = "5s"

[scheduler]
trigger_debounce = "{DEBOUNCE}"
"#,
        port = setup.port,
        state = state.unwrap_or(&sqlite),
        token = setup.path("admin.token").display(),
    )
}

async fn runs_of(client: &switchyard_scheduler::client::Client, job: &str) -> Vec<RunView> {
    let mut runs = client.runs(Some(job), 50).await.unwrap();
    runs.sort_by_key(|r| r.id);
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ingest_commit_runs_silver_then_gold_once_each() {
    let setup = Setup::new("sqlite://unused", "10s");
    let lake = setup.path("lake");
    let reader = switchyard_lake::Lake::new(lake.to_str().unwrap()).unwrap();
    let lake_settings = format!("[lake]\nroot = \"{}\"\n", lake.display());
    chain(&setup, None, &|_: &Path| lake_settings.clone(), &reader).await;
}

/// The same chain with the lake on the S3 server (`SWITCHYARD_TEST_S3`, moto) and the state on
/// PostgreSQL: control plane, node and workers (each worker in a fresh temporary directory)
/// share nothing but the state store and the bucket; afterwards no local lake directory exists, `switchyard events` reads
/// the event log from the bucket, and Python's deltalake reads the tables with the right rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_runs_with_the_lake_on_s3_and_no_local_lake() {
    let owned = s3_test_options();
    let options: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    chain_on_object_store("s3://switchyard-test", &options, "aws_secret_access_key").await;
}

/// The same on Azurite (`SWITCHYARD_TEST_AZURITE`), through object_store's emulator mode
/// (`AZURITE_BLOB_STORAGE_URL`, exported by scripts/test, reaches every process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_runs_with_the_lake_on_azurite_and_no_local_lake() {
    std::env::var("AZURITE_BLOB_STORAGE_URL").expect("AZURITE_BLOB_STORAGE_URL: run through scripts/test");
    let options = [
        ("azure_storage_use_emulator", "true"),
        ("azure_storage_account_name", "devstoreaccount1"),
        (
            "azure_storage_account_key",
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        ),
    ];
    chain_on_object_store("az://switchyard-test", &options, "azure_storage_account_key").await;
}

/// The chain under `base/<unique>` with `options` as `[lake.storage_options]` (`secret` given
/// through a `_file` reference, as an operator would), then the checks that nothing went to a
/// local disk and that independent readers see the tables.
async fn chain_on_object_store(base: &str, options: &[(&str, &str)], secret: &str) {
    let root = format!("{base}/{}", switchyard_testkit::unique_name("chain-"));
    let setup = Setup::new("sqlite://unused", "10s");
    // Each process's settings in its own directory, the secret in a file of that directory.
    let lake_settings = |dir: &Path| {
        let mut text = format!("[lake]\nroot = \"{root}\"\n[lake.storage_options]\n");
        for (key, value) in options {
            if *key == secret {
                std::fs::write(dir.join("lake.secret"), format!("{value}\n")).unwrap();
                text.push_str(&format!("{key}_file = \"{}\"\n", dir.join("lake.secret").display()));
            } else {
                text.push_str(&format!("{key} = \"{value}\"\n"));
            }
        }
        text
    };
    let map = options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let reader = switchyard_lake::Lake::with_options(&root, map, false).unwrap();
    // The control plane's state on PostgreSQL, as in a deployment with no shared disk.
    let state = PgDb::create().await;
    let node_dir = chain(&setup, Some(&state.url), &lake_settings, &reader).await;
    for dir in [setup.dir.path(), node_dir.path()] {
        for local in ["lake", ".switchyard/lake", "bronze", "silver", "gold", "_switchyard"] {
            assert!(
                !dir.join(local).exists(),
                "a local lake directory {local} was made in {}",
                dir.display()
            );
        }
    }
    // The event log went to the object store too, and `switchyard events` reads it there.
    let (code, out, err) = setup.run_cli(&["events", "--json", "--last", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.contains("\"run_finished\"")), "no run_finished event:\n{out}\n{err}");
    // An independent reader: Python's deltalake, straight from the store. It exits with
    // `os._exit` once it has printed: deltalake 1.6.6 with pyarrow sometimes aborts while the
    // interpreter shuts down ("terminate called without an active exception"), after the reads.
    let python =
        std::env::var("SWITCHYARD_TEST_PYTHON").expect("SWITCHYARD_TEST_PYTHON: run through scripts/test");
    let opts: Vec<String> = options.iter().map(|(k, v)| format!("'{k}': '{v}'")).collect();
    let script = format!(
        "import os, sys\nimport deltalake\nopts = {{{}}}\n\
         for t in ['bronze/claims', 'silver/claims', 'silver/claims__quarantine', 'gold/provider_totals']:\n    \
         d = deltalake.DeltaTable('{root}/' + t, storage_options=opts)\n    \
         print(t, d.to_pyarrow_table().num_rows)\n\
         sys.stdout.flush()\n\
         os._exit(0)\n",
        opts.join(", ")
    );
    let out = std::process::Command::new(python).arg("-c").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["bronze/claims 300", "silver/claims 270", "silver/claims__quarantine 30", "gold/provider_totals 3"]
    );
}

/// One PostgreSQL ingest into bronze, then silver (with an expectation that quarantines the
/// negative amounts) and gold triggered by its commits, on the lake `lake_settings` renders for
/// a process's directory; `reader` opens that lake for the checks. The node runs in a directory
/// of its own (returned) with its own settings, policy and node token; the control plane's
/// workers each start in a fresh one.
async fn chain(
    setup: &Setup,
    state: Option<&str>,
    lake_settings: &dyn Fn(&Path) -> String,
    reader: &switchyard_lake::Lake,
) -> tempfile::TempDir {
    let source = PgDb::create().await;
    let pool = sqlx::PgPool::connect(&source.url).await.unwrap();
    sqlx::query("CREATE TABLE claims (id bigint PRIMARY KEY, provider text NOT NULL, amount double precision NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    // 300 claims over 3 providers; every tenth has a negative amount, which silver drops.
    sqlx::query(
        "INSERT INTO claims SELECT g, 'p' || (g % 3), CASE WHEN g % 10 = 0 THEN -1 ELSE g END FROM generate_series(1, 300) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let url = url::Url::parse(&source.url).unwrap();
    let (host, port, database) =
        (url.host_str().unwrap().to_owned(), url.port().unwrap_or(5432), &url.path()[1..]);
    let user = url.username();
    let password_file = url.password().map(|p| {
        let path = std::env::temp_dir().join(format!("switchyard-chain-{}.pw", std::process::id()));
        std::fs::write(&path, format!("{p}\n")).unwrap();
        format!("      password_file: {}\n", path.display())
    });

    std::fs::write(setup.path("switchyard.toml"), settings(setup, state, &lake_settings(setup.dir.path())))
        .unwrap();
    // PostgreSQL here trusts 127.0.0.1 only (pg_hba.conf): the pool's egress IP is 127.0.0.1.
    let policy = format!(
        "destinations:\n  - {{ name: source-db, host: {host}, ports: [{port}], egress_ips: [127.0.0.1] }}\n"
    );
    std::fs::write(setup.path("egress.yaml"), &policy).unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        node_dir.path().join("switchyard.toml"),
        format!(
            "{}\n[[pools]]\nname = \"ingest\"\negress_ips = [\"127.0.0.1\"]\nslots = 2\n",
            lake_settings(node_dir.path())
        ),
    )
    .unwrap();
    std::fs::write(node_dir.path().join("egress.yaml"), &policy).unwrap();
    let ingest = format!(
        "job: ingest\ntasks:\n  - name: load\n    source:\n      kind: postgres\n      host: {host}\n      port: {port}\n      \
         database: {database}\n      user: {user}\n{}      query: SELECT id, provider, amount FROM claims\n      watermark: id\n    \
         sink: {{ table: bronze.claims }}\n",
        password_file.unwrap_or_default()
    );
    let silver = "job: silver\ntasks:\n  - name: clean\n    trigger: on_update\n    \
                  sql: SELECT id, provider, amount FROM bronze.claims\n    \
                  expectations:\n      - { name: positive_amount, check: \"amount > 0\", on_violation: quarantine }\n    \
                  sink: { table: silver.claims, mode: overwrite }\n";
    let gold = "job: gold\ntasks:\n  - name: totals\n    trigger: on_update\n    \
                sql: SELECT provider, count(*) AS n, sum(amount) AS total FROM silver.claims GROUP BY provider\n    \
                sink: { table: gold.provider_totals, mode: overwrite }\n";
    let files: Vec<ManifestFile> =
        [("ingest.yaml", ingest.as_str()), ("silver.yaml", silver), ("gold.yaml", gold)]
            .into_iter()
            .map(|(name, content)| ManifestFile {
                path: setup.write_job(name, content).display().to_string(),
                content: content.to_owned(),
            })
            .collect();

    let mut serve = setup.serve();
    let client = setup.client(&setup.url());
    let node_token =
        client.create_token(switchyard_scheduler::engine::Role::Node, "chain-node").await.unwrap();
    std::fs::write(node_dir.path().join("node.token"), format!("{node_token}\n")).unwrap();
    let mut node = setup.node_in(node_dir.path(), (&setup.url(), "ingest", "127.0.0.1"), &[], &[]);
    // Register all three; start only what writes bronze.claims. Silver and gold wait for data.
    let submitted = client
        .submit(&SubmitRequest {
            manifests: files,
            run: true,
            full_refresh: false,
            select: vec!["bronze.claims".into()],
        })
        .await
        .unwrap();
    let started: Vec<(&str, Option<i64>)> = submitted.jobs.iter().map(|j| (j.job.as_str(), j.run)).collect();
    assert!(started.iter().all(|(job, run)| run.is_some() == (*job == "ingest")), "{started:?}");

    // Gold finishing means the whole chain ran; then wait out a few more debounce periods to see
    // that nothing fires a second time.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let gold = runs_of(&client, "gold").await;
        if gold.iter().any(|r| r.state != RunState::Running) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gold never finished; runs: {:#?}",
            client.runs(None, 20).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (ingest, silver, gold) =
        (runs_of(&client, "ingest").await, runs_of(&client, "silver").await, runs_of(&client, "gold").await);
    assert_eq!((ingest.len(), silver.len(), gold.len()), (1, 1, 1), "one run each: {silver:#?} {gold:#?}");
    for run in [&ingest[0], &silver[0], &gold[0]] {
        assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    }
    assert_eq!((silver[0].trigger.as_str(), gold[0].trigger.as_str()), ("on_update", "on_update"));
    // In order: each triggered run was created only after its upstream run had finished.
    assert!(silver[0].created_at >= ingest[0].finished_at.unwrap(), "silver started before ingest ended");
    assert!(gold[0].created_at >= silver[0].finished_at.unwrap(), "gold started before silver ended");
    // Pinned to what the upstream committed.
    let silver_output = &silver[0].tasks[0].attempts.last().unwrap().details.as_ref().unwrap()["transform"];
    let silver_version =
        silver_output["output"]["version"].as_i64().expect("silver reports its output version");
    assert_eq!(
        gold[0].options.input_versions.get("silver.claims"),
        Some(&silver_version),
        "{:#?}",
        gold[0].options
    );
    assert!(silver[0].options.input_versions.contains_key("bronze.claims"), "{:#?}", silver[0].options);

    // And the data went through: 270 positive claims, 90 per provider.
    let totals = reader.read(&"gold.provider_totals".parse().unwrap(), None).await.unwrap();
    let rows: usize = totals.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    let mut n: i64 = 0;
    for b in &totals {
        let c = switchyard_lake::arrow::compute::cast(
            b.column_by_name("n").unwrap(),
            &switchyard_lake::arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        n += switchyard_lake::arrow::compute::sum(
            c.as_any().downcast_ref::<switchyard_lake::arrow::array::Int64Array>().unwrap(),
        )
        .unwrap_or(0);
    }
    assert_eq!(n, 270, "positive claims in gold");

    // The expectation's counts, as silver reported them.
    let silver_details = silver[0].tasks[0].attempts.last().unwrap().details.as_ref().unwrap();
    assert!(silver_details.to_string().contains("positive_amount"), "{silver_details:#}");
    let quarantine = reader.read(&"silver.claims__quarantine".parse().unwrap(), None).await.unwrap();
    assert_eq!(quarantine.iter().map(|b| b.num_rows()).sum::<usize>(), 30, "quarantined claims");

    node.terminate(Duration::from_secs(10));
    serve.terminate(Duration::from_secs(10));
    node_dir
}

/// `switchyard run` on a pipeline split into jobs joined by data: it starts only the upstream
/// job, follows the `on_update` run its commit starts, and exits once that is done — one run
/// each, the downstream one triggered, the gold table built from what silver committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_run_follows_the_runs_its_commits_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&format!("sqlite://{}/state.db", dir.path().display()), "10s");
    let lake = setup.use_lake(&dir.path().join("lake"), "\n[scheduler]\ntrigger_debounce = \"300ms\"\n");
    write_bronze_t(&lake).await;
    setup.write_job(
        "silver.yaml",
        "job: silver\nexternal_tables: [bronze.t]\ntasks:\n  - name: clean\n    \
         sql: SELECT id, provider, amount FROM bronze.t WHERE amount > 0\n    sink: { table: silver.t, mode: overwrite }\n",
    );
    setup.write_job(
        "gold.yaml",
        "job: gold\ntasks:\n  - name: totals\n    trigger: on_update\n    \
         sql: SELECT provider, count(*) AS n FROM silver.t GROUP BY provider\n    sink: { table: gold.t, mode: overwrite }\n",
    );
    let (code, stdout, stderr) = setup.run_jobs();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let runs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(runs.len(), 2, "one run of each job:\n{stdout}");
    assert!(runs.iter().any(|l| l.contains("job silver") && l.contains("manual")), "{stdout}");
    assert!(runs.iter().any(|l| l.contains("job gold") && l.contains("on_update")), "{stdout}");
    assert!(stdout.contains("ok: 2 jobs, 2/2 tasks succeeded"), "{stdout}");
    let gold = lake.read(&"gold.t".parse().unwrap(), None).await.unwrap();
    assert_eq!(gold.iter().map(|b| b.num_rows()).sum::<usize>(), 2, "providers a and b");
}

/// `switchyard run` with `[lake] root = "s3://…"`, no `[lake.storage_options]` and only the
/// standard `AWS_*` variables: the transform runs on a launched worker (in a fresh temporary
/// directory) against the S3 server, the output is there, and no local lake directory is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_run_on_s3_with_only_the_standard_aws_variables() {
    let root = format!("s3://switchyard-test/{}", switchyard_testkit::unique_name("run-aws-"));
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&format!("sqlite://{}/state.db", dir.path().display()), "10s");
    let settings = setup.path("switchyard.toml");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!("\n[lake]\nroot = \"{root}\"\n"));
    std::fs::write(&settings, text).unwrap();
    let options = s3_test_options();
    let lake = switchyard_lake::Lake::with_options(
        &root,
        options.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        false,
    )
    .unwrap();
    write_bronze_t(&lake).await;
    setup.write_job(
        "silver.yaml",
        "job: silver\nexternal_tables: [bronze.t]\ntasks:\n  - name: clean\n    \
         sql: SELECT id, provider, amount FROM bronze.t WHERE amount > 0\n    sink: { table: silver.t, mode: overwrite }\n",
    );
    let value = |name: &str| options.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    let out = std::process::Command::new(super::harness::bin())
        .args(["run", "--settings", settings.to_str().unwrap(), "--egress"])
        .arg(setup.path("egress.yaml"))
        .arg(setup.path("jobs"))
        .current_dir(setup.dir.path())
        .env("AWS_ENDPOINT_URL", value("aws_endpoint_url"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok: 1 job, 1/1 tasks succeeded"), "{stdout}");
    let silver = lake.read(&"silver.t".parse().unwrap(), None).await.unwrap();
    assert_eq!(silver.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    for local in ["lake", ".switchyard/lake", "silver", "bronze", "_switchyard"] {
        assert!(!setup.path(local).exists(), "a local lake directory {local} was made");
    }
}
