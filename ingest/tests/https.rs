//! The HTTPS source against a real nginx that serves paginated JSON and NDJSON, requires a client
//! certificate and allows only source 127.0.0.2 — the node's egress IP, bound by the gateway's
//! dialer. Pages are static files picked by query argument (`map`, `try_files`); `limit_req`
//! answers 429 with `Retry-After`. nginx is installed by `scripts/test`.

mod nginx;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_config::FailureClass;
use switchyard_config::manifest::{SinkSpec, Source};
use switchyard_config::settings::IdentityFiles;
use switchyard_config::value::TableName;
use switchyard_gateway::audit::Verdict;
use switchyard_gateway::dial::Dialer;
use switchyard_ingest::{Context, Error, Progress, Summary};
use switchyard_lake::Lake;
use switchyard_lake::arrow::array::{Array, Int64Array};
use switchyard_lake::arrow::datatypes::{DataType, TimeUnit};
use switchyard_lake::arrow::record_batch::RecordBatch;

use nginx::{Audit, Nginx, Pki};

/// The large endpoint: pages × records = 100,000 rows.
const PAGES: u64 = 100;
const PER_PAGE: u64 = 1000;
const TABLE: &str = "bronze.items";

/// The partner API: nginx, its PKI, and the client identity it trusts.
struct Site {
    pki: Pki,
    nginx: Nginx,
    partner: IdentityFiles,
    /// The bearer token `/api/secure` wants: the value of `TOKEN_VAR`.
    token: String,
}

/// A variable the test runner sets (tests cannot set variables: `unsafe_code` is forbidden), used
/// as the bearer token.
const TOKEN_VAR: &str = "CARGO_PKG_NAME";

fn item(id: u64) -> Value {
    json!({
        "id": id,
        "name": format!("item-{id}"),
        "score": id as f64 / 4.0,
        "active": id.is_multiple_of(3),
        "ts": format!("2024-05-01T12:{:02}:{:02}Z", id / 60 % 60, id % 60),
        "day": format!("2024-05-{:02}", id % 28 + 1),
    })
}

/// Records `first..first + n`.
fn items(first: u64, n: u64) -> Vec<Value> {
    (first..first + n).map(item).collect()
}

fn write(site_root: &std::path::Path, path: &str, body: impl AsRef<[u8]>) {
    let path = site_root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// Cursor pages `{"data": [...], "next": "N+1"}` under `dir/N.json`, the last without `next`.
fn cursor_pages(root: &std::path::Path, dir: &str, pages: u64, per_page: u64) {
    for p in 1..=pages {
        let mut page = json!({ "data": items((p - 1) * per_page + 1, per_page) });
        if p < pages {
            page["next"] = json!((p + 1).to_string());
        }
        write(root, &format!("{dir}/{p}.json"), serde_json::to_vec(&page).unwrap());
    }
}

fn site() -> Site {
    let pki = Pki::new();
    let port = nginx::free_port();
    let root = pki.path("nginx/www");
    cursor_pages(&root, "items", PAGES, PER_PAGE);
    cursor_pages(&root, "slow", 3, 10);
    cursor_pages(&root, "search", 3, 10);
    for p in 1..=5u64 {
        write(
            &root,
            &format!("numbered/{p}.json"),
            serde_json::to_vec(&items((p - 1) * 200 + 1, 200)).unwrap(),
        );
    }
    for p in 1..=4u64 {
        let lines: String = items((p - 1) * 250 + 1, 250).iter().map(|v| format!("{v}\n")).collect();
        write(&root, &format!("events/{p}.ndjson"), lines);
    }
    write(&root, "empty.json", "[]");
    write(&root, "empty.ndjson", "");
    // Next links: relative, then absolute on the same host, then none.
    let linked = [
        json!({"items": items(1, 10), "links": {"next": "/api/linked?after=2"}}),
        json!({"items": items(11, 10), "links": {"next": format!("https://localhost:{port}/api/linked?after=3")}}),
        json!({"items": items(21, 10), "links": {"next": null}}),
    ];
    for (i, page) in linked.iter().enumerate() {
        write(&root, &format!("linked/{}.json", i + 1), serde_json::to_vec(page).unwrap());
    }
    write(
        &root,
        "away.json",
        json!({"data": items(1, 3), "next": "https://example.com/api/away?after=2"}).to_string(),
    );
    write(&root, "broken/1.json", json!({"data": items(1, 3), "next": "2"}).to_string());
    write(&root, "broken/2.json", r#"{"data": [{"id": 4}, {"id": "#);
    write(&root, "secure.json", json!({"data": items(1, 1)}).to_string());
    let token = std::env::var(TOKEN_VAR).unwrap_or_else(|_| panic!("the test runner sets {TOKEN_VAR}"));
    let http = "map $arg_cursor $cursor_page { \"\" 1; default $arg_cursor; }\n  \
                map $arg_after $after_page { \"\" 1; default $arg_after; }\n  \
                limit_req_zone $binary_remote_addr zone=slow:1m rate=30r/m;";
    let locations = format!(
        "location = /api/items {{ try_files /items/$cursor_page.json =404; }}\n    \
         location = /api/numbered {{ try_files /numbered/$arg_page.json /empty.json; }}\n    \
         location = /api/events {{ try_files /events/$arg_page.ndjson /empty.ndjson; }}\n    \
         location = /api/linked {{ try_files /linked/$after_page.json =404; }}\n    \
         location = /api/away {{ try_files /away.json =404; }}\n    \
         location = /api/broken {{ try_files /broken/$cursor_page.json =404; }}\n    \
         location = /api/slow {{ limit_req zone=slow; limit_req_status 429; add_header Retry-After 2 always; \
         try_files /slow/$cursor_page.json =404; }}\n    \
         location = /api/search {{ if ($request_method != POST) {{ return 418; }} \
         if ($content_type != \"application/json\") {{ return 415; }} \
         error_page 405 =200 /search/$cursor_page.json; try_files /search/$cursor_page.json =404; }}\n    \
         location = /api/secure {{ if ($http_authorization != \"Bearer {token}\") {{ return 401; }} \
         try_files /secure.json =404; }}"
    );
    let nginx = Nginx::start(&pki, port, http, &locations);
    let partner = pki.leaf("partner", &["partner"], None);
    Site { pki, nginx, partner, token }
}

/// The egress policy: nginx's host and port from both loopback egress IPs, presenting `partner`
/// when `identity`; plus `closed_port`, where nothing listens.
fn policy(port: u16, identity: bool, closed_port: u16) -> String {
    let identity = if identity { ", identity: partner" } else { "" };
    format!(
        "destinations:\n  \
         - {{ name: partner-api, host: localhost, ports: [{port}], egress_ips: [127.0.0.2, 127.0.0.3]{identity} }}\n  \
         - {{ name: closed, host: localhost, ports: [{closed_port}], egress_ips: [127.0.0.2] }}\n"
    )
}

/// A node bound to `egress_ip`, with the partner identity and a lake of its own.
struct Node {
    ctx: Context,
    audit: Audit,
    _lake: tempfile::TempDir,
}

impl Node {
    fn new(site: &Site, egress_ip: &str, identity: Option<IdentityFiles>) -> Node {
        let yaml = policy(site.nginx.port, identity.is_some(), 9);
        let (dialer, audit) = nginx::dialer(&yaml, egress_ip, identity);
        Node::with_dialer(dialer, audit)
    }

    fn with_dialer(dialer: Dialer, audit: Audit) -> Node {
        let lake = tempfile::tempdir().unwrap();
        let ctx = Context {
            lake: Lake::new(lake.path().to_str().unwrap()).unwrap(),
            dialer,
            job: "partner".into(),
            task: "fetch_items".into(),
            run: 1,
            continuous: false,
        };
        Node { ctx, audit, _lake: lake }
    }

    async fn ingest(
        &self,
        source: Value,
        sink: Value,
        progress: Arc<dyn Progress>,
    ) -> Result<Summary, Error> {
        let source: Source = serde_json::from_value(json!({ "https": source })).unwrap();
        let sink: SinkSpec = serde_json::from_value(sink).unwrap();
        switchyard_ingest::run(&source, &sink, &self.ctx, progress).await
    }

    async fn table(&self) -> Vec<RecordBatch> {
        self.ctx.lake.read(&TABLE.parse::<TableName>().unwrap(), None).await.unwrap()
    }

    /// Connections the dialer allowed since the last call.
    fn dials(&mut self) -> usize {
        let mut n = 0;
        while let Ok(event) = self.audit.try_recv() {
            n += usize::from(matches!(event.verdict, Verdict::Allowed { .. }));
        }
        n
    }
}

fn url(site: &Site, path: &str) -> String {
    format!("https://localhost:{}{path}", site.nginx.port)
}

/// Counts commits and wakes a waiter at each.
#[derive(Default)]
struct Commits {
    count: AtomicU64,
    committed: tokio::sync::Notify,
}

impl Progress for Commits {
    fn rows(&self, _total: u64, _per_second: f64) {}

    fn committed(&self, _table: &TableName, _version: u64, _rows: u64) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.committed.notify_one();
    }
}

fn quiet() -> Arc<dyn Progress> {
    Arc::new(Commits::default())
}

/// Row count and order-independent checksums of the `id` column; `distinct` exposes duplicates.
#[derive(Debug, PartialEq, Eq)]
struct Ids {
    rows: u64,
    distinct: u64,
    sum: u64,
    hashes: u64,
}

impl Ids {
    fn of(ids: impl Iterator<Item = u64>) -> Ids {
        let (mut rows, mut sum, mut hashes, mut seen) = (0, 0u64, 0u64, HashSet::new());
        for id in ids {
            rows += 1;
            sum = sum.wrapping_add(id);
            hashes = hashes.wrapping_add(mix(id));
            seen.insert(id);
        }
        Ids { rows, distinct: seen.len() as u64, sum, hashes }
    }

    fn table(batches: &[RecordBatch]) -> Ids {
        Ids::of(batches.iter().flat_map(|b| {
            let column = b.column_by_name("id").expect("an id column");
            let ids = column.as_any().downcast_ref::<Int64Array>().expect("id is int64");
            assert_eq!(ids.null_count(), 0);
            ids.values().iter().map(|v| *v as u64).collect::<Vec<_>>()
        }))
    }

    /// What ids `1..=n` give.
    fn expected(n: u64) -> Ids {
        Ids::of(1..=n)
    }
}

/// splitmix64: spreads ids so that swapped or repeated rows change the sum of hashes.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn field_type(batches: &[RecordBatch], name: &str) -> DataType {
    batches[0].schema().field_with_name(name).unwrap().data_type().clone()
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paginated_api_lands_whole_over_one_kept_alive_mtls_connection() {
    let site = site();
    let mut node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    let source = json!({
        "url": url(&site, "/api/items"),
        "identity": "partner",
        "records": "data",
        "pagination": { "cursor_field": "next" },
    });
    let started = Instant::now();
    let summary =
        node.ingest(source, json!({ "table": TABLE, "flush": { "rows": 20000 } }), quiet()).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let total = PAGES * PER_PAGE;
    println!(
        "https: {} rows in {PAGES} pages, {} commits, {seconds:.2}s ({:.0} rows/s)",
        summary.rows,
        summary.commits,
        summary.rows as f64 / seconds
    );
    assert_eq!(summary.rows, total);
    assert_eq!(summary.commits, total / 20000, "a commit per 20,000 rows (20 pages)");
    let batches = node.table().await;
    assert_eq!(Ids::table(&batches), Ids::expected(total));
    // The schema was inferred from the first page; every column nullable.
    assert_eq!(field_type(&batches, "id"), DataType::Int64);
    assert_eq!(field_type(&batches, "score"), DataType::Float64);
    assert_eq!(field_type(&batches, "active"), DataType::Boolean);
    assert!(is_string(&field_type(&batches, "name")));
    assert!(is_string(&field_type(&batches, "ts")), "undeclared timestamps stay text");
    // One connection carried every page: nginx saw one connection number, the gateway one dial.
    let accesses = site.nginx.accesses();
    let items: Vec<_> = accesses.iter().filter(|(_, _, uri)| uri.starts_with("/api/items")).collect();
    assert_eq!(items.len() as u64, PAGES);
    assert!(items.iter().all(|(status, _, _)| *status == 200), "{items:?}");
    let connections: HashSet<u64> = items.iter().map(|(_, c, _)| *c).collect();
    assert_eq!(connections.len(), 1, "pages over one kept-alive connection");
    assert_eq!(node.dials(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_duplicates_or_gaps() {
    let site = site();
    let node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    let source = json!({
        "url": url(&site, "/api/items"),
        "records": "data",
        "pagination": { "cursor_field": "next" },
    });
    let sink = json!({ "table": TABLE, "flush": { "rows": 10000 } });
    let total = PAGES * PER_PAGE;

    // First attempt: killed right after its first commit (the future is dropped mid-ingest, with
    // pages read ahead and files written that no commit references).
    let progress = Arc::new(Commits::default());
    tokio::select! {
        r = node.ingest(source.clone(), sink.clone(), progress.clone()) => panic!("finished before it was killed: {r:?}"),
        () = progress.committed.notified() => {}
    }
    let before = Ids::table(&node.table().await);
    assert!(before.rows >= 10000 && before.rows < total, "{before:?}");
    assert!(before.rows.is_multiple_of(10000), "whole commits only: {before:?}");
    assert_eq!(before, Ids::expected(before.rows), "the first pages, once each");

    // Second attempt of the same run: re-walks the cursor chain, emits only what is missing.
    let summary = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap();
    assert_eq!(summary.rows, total - before.rows);
    assert_eq!(Ids::table(&node.table().await), Ids::expected(total), "no duplicates, no gaps");

    // A third attempt finds everything committed.
    let again = node.ingest(source, sink, quiet()).await.unwrap();
    assert_eq!((again.rows, again.commits), (0, 0));
    assert_eq!(Ids::table(&node.table().await).rows, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_schema_types_numbered_pages_and_a_resume_asks_for_the_next_page_only() {
    let site = site();
    let mut node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    let source = json!({
        "url": url(&site, "/api/numbered?size=200"),
        "pagination": { "page_param": "page" },
        "schema": [
            { "name": "id", "type": "int64", "nullable": false },
            { "name": "name", "type": "string" },
            { "name": "score", "type": "float64" },
            { "name": "active", "type": "boolean" },
            { "name": "ts", "type": "timestamp" },
            { "name": "day", "type": "date" },
        ],
    });
    let sink = json!({ "table": TABLE });
    let summary = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap();
    assert_eq!((summary.rows, summary.commits), (1000, 1));
    let batches = node.table().await;
    assert_eq!(Ids::table(&batches), Ids::expected(1000));
    let schema = batches[0].schema();
    assert!(!schema.field_with_name("id").unwrap().is_nullable());
    assert_eq!(field_type(&batches, "ts"), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
    assert_eq!(field_type(&batches, "day"), DataType::Date32);
    assert_eq!(field_type(&batches, "score"), DataType::Float64);
    let asked: Vec<String> = site.nginx.accesses().into_iter().map(|(_, _, uri)| uri).collect();
    let pages: Vec<String> = (1..=6).map(|p| format!("/api/numbered?size=200&page={p}")).collect();
    assert_eq!(asked, pages, "pages 1 to 5, then the empty page 6 ends it");

    // The same run again: numbered pages are addressable, so it asks for page 7 only.
    let again = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap();
    assert_eq!(again.rows, 0);
    let asked: Vec<String> = site.nginx.accesses().into_iter().skip(6).map(|(_, _, uri)| uri).collect();
    assert_eq!(asked, ["/api/numbered?size=200&page=7"]);

    // The next run declares nothing: it decodes with the table's schema, so `ts` stays a
    // timestamp (inferred, it would be text, which the table cannot take).
    node.ctx.run = 2;
    let mut undeclared = source;
    undeclared.as_object_mut().unwrap().remove("schema");
    let next = node.ingest(undeclared, sink, quiet()).await.unwrap();
    assert_eq!(next.rows, 1000);
    let batches = node.table().await;
    assert_eq!(Ids::table(&batches).rows, 2000);
    assert_eq!(field_type(&batches, "ts"), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_commits_once_at_the_end_and_replaces_the_table() {
    let site = site();
    let mut node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    let source = json!({ "url": url(&site, "/api/numbered"), "pagination": { "page_param": "page" } });
    // The row limit does not cut an overwrite: a partial overwrite would be visible otherwise.
    let sink = json!({ "table": TABLE, "mode": "overwrite", "flush": { "rows": 200 } });
    let first = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap();
    assert_eq!((first.rows, first.commits), (1000, 1));
    // Another attempt of the same run: the overwrite is complete, nothing is fetched.
    let requests = site.nginx.accesses().len();
    let again = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap();
    assert_eq!((again.rows, again.commits), (0, 0));
    assert_eq!(site.nginx.accesses().len(), requests);
    // The next run replaces the table: the source once, not twice.
    node.ctx.run = 2;
    let next = node.ingest(source, sink, quiet()).await.unwrap();
    assert_eq!((next.rows, next.commits), (1000, 1));
    assert_eq!(Ids::table(&node.table().await), Ids::expected(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_pages_and_next_links() {
    let site = site();
    let node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    let source = json!({
        "url": url(&site, "/api/events"),
        "format": "ndjson",
        "pagination": { "page_param": "page" },
    });
    let summary = node.ingest(source, json!({ "table": TABLE }), quiet()).await.unwrap();
    assert_eq!(summary.rows, 1000);
    let batches = node.table().await;
    assert_eq!(Ids::table(&batches), Ids::expected(1000));
    assert_eq!(field_type(&batches, "active"), DataType::Boolean);

    // Next links, relative and absolute, into a second table.
    let linked = json!({
        "url": url(&site, "/api/linked"),
        "records": "items",
        "pagination": { "next_link": "links.next" },
    });
    let summary = node.ingest(linked, json!({ "table": "bronze.linked" }), quiet()).await.unwrap();
    assert_eq!(summary.rows, 30);
    let linked = node.ctx.lake.read(&"bronze.linked".parse().unwrap(), None).await.unwrap();
    assert_eq!(Ids::table(&linked), Ids::expected(30));

    // A next link to another host is not followed, and nothing of that run is committed.
    let away = json!({
        "url": url(&site, "/api/away"),
        "records": "data",
        "pagination": { "next_link": "next" },
    });
    let err = node.ingest(away, json!({ "table": "bronze.away" }), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Data, "{err}");
    assert!(err.to_string().contains("example.com:443") && err.to_string().contains("page 1"), "{err}");
    assert!(node.ctx.lake.read(&"bronze.away".parse().unwrap(), None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_requests_with_a_json_body_follow_cursors() {
    let site = site();
    let node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    // nginx answers 418 to anything but a POST and 415 to a body that is not JSON.
    let source = json!({
        "url": url(&site, "/api/search"),
        "method": "POST",
        "body": { "filter": { "active": true }, "size": 10 },
        "records": "data",
        "pagination": { "cursor_field": "next", "cursor_param": "cursor" },
    });
    let summary = node.ingest(source, json!({ "table": TABLE }), quiet()).await.unwrap();
    assert_eq!(summary.rows, 30);
    assert_eq!(Ids::table(&node.table().await), Ids::expected(30));
    let asked: Vec<String> = site.nginx.accesses().into_iter().map(|(_, _, uri)| uri).collect();
    assert_eq!(asked, ["/api/search", "/api/search?cursor=2", "/api/search?cursor=3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let site = site();
    let node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    let source = json!({
        "url": url(&site, "/api/slow"),
        "records": "data",
        "pagination": { "cursor_field": "next" },
    });
    let started = Instant::now();
    let summary = node.ingest(source, json!({ "table": TABLE }), quiet()).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(summary.rows, 30);
    assert_eq!(Ids::table(&node.table().await), Ids::expected(30));
    // nginx allows one request per 2 s and answers the others 429 with `Retry-After: 2`. Each
    // 429 is followed by a 200 (a 1 s backoff would have met a second 429), after the 2 s asked.
    let statuses: Vec<u16> = site.nginx.accesses().iter().map(|(s, _, _)| *s).collect();
    let throttled = statuses.iter().filter(|s| **s == 429).count() as u32;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert!(throttled >= 1, "pages were fetched back to back: {statuses:?}");
    assert!(statuses.windows(2).all(|w| w != [429, 429]), "retried before `Retry-After`: {statuses:?}");
    assert!(elapsed >= Duration::from_secs(2) * throttled, "{elapsed:?} for {statuses:?}");
    println!("https: 3 rate-limited pages in {:.2}s", elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_and_certificate_refusals_are_access_and_authentication() {
    let site = site();
    let source = json!({ "url": url(&site, "/api/items"), "records": "data" });
    let sink = json!({ "table": TABLE });

    // From 127.0.0.3, which the egress policy allows but nginx does not: access, naming the IP.
    let node = Node::new(&site, "127.0.0.3", Some(site.partner.clone()));
    let err = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Access, "{err}");
    assert!(err.hint().contains("127.0.0.3"), "{}", err.hint());
    assert!(err.to_string().contains("/api/items"), "{err}");

    // A rule without an identity: no client certificate, and the public roots do not know the
    // partner's server certificate either: authentication.
    let node = Node::new(&site, "127.0.0.2", None);
    let err = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Authentication, "{err}");

    // A client certificate from a CA nginx does not trust: nginx answers 400 "The SSL
    // certificate error": authentication.
    let (other_ca, _) = nginx::new_ca("Someone else's CA");
    let stranger = site.pki.leaf("stranger", &["stranger"], Some(&other_ca));
    let node = Node::new(&site, "127.0.0.2", Some(stranger));
    let err = node.ingest(source.clone(), sink.clone(), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Authentication, "{err}");
    assert!(err.to_string().contains("client certificate"), "{err}");

    // The task names an identity the rule does not present: authentication, saying which.
    let node = Node::new(&site, "127.0.0.2", Some(site.partner.clone()));
    let mut wrong = source.clone();
    wrong["identity"] = json!("partner-prod");
    let err = node.ingest(wrong, sink, quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Authentication, "{err}");
    assert!(err.to_string().contains("partner-prod") && err.hint().contains("egress.yaml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_missing_pages_bad_bodies_and_closed_ports_are_classified() {
    let site = site();
    let closed = nginx::free_port();
    let (dialer, audit) =
        nginx::dialer(&policy(site.nginx.port, true, closed), "127.0.0.2", Some(site.partner.clone()));
    let node = Node::with_dialer(dialer, audit);
    let sink = json!({ "table": TABLE });

    // The bearer token from the environment is sent; a wrong one is authentication.
    let secure =
        json!({ "url": url(&site, "/api/secure"), "records": "data", "bearer_token_env": TOKEN_VAR });
    assert_eq!(node.ingest(secure.clone(), sink.clone(), quiet()).await.unwrap().rows, 1);
    let mut wrong = secure.clone();
    wrong["bearer_token_env"] = json!("CARGO_PKG_VERSION");
    let err = node.ingest(wrong, sink.clone(), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Authentication, "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    // An unset variable is the task's own configuration; the error names it, never a value.
    let mut unset = secure;
    unset["bearer_token_env"] = json!("SWITCHYARD_TEST_NO_SUCH_TOKEN");
    let err = node.ingest(unset, sink.clone(), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Data, "{err}");
    assert!(err.to_string().contains("SWITCHYARD_TEST_NO_SUCH_TOKEN"), "{err}");
    assert!(!format!("{err:?}").contains(&site.token));

    // A wrong path: data, naming the URL without its query.
    let missing = json!({ "url": url(&site, "/api/nowhere?key=s3cret"), "records": "data" });
    let err = node.ingest(missing, sink.clone(), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Data, "{err}");
    assert!(err.to_string().contains("404") && err.to_string().contains("/api/nowhere"), "{err}");
    assert!(!err.to_string().contains("s3cret") && !err.hint().contains("s3cret"), "{err}");

    // A page that is not JSON: data, naming the page; the good page before it is not committed
    // on its own (one commit point at the end).
    let broken = json!({ "url": url(&site, "/api/broken"), "records": "data", "pagination": { "cursor_field": "next" } });
    let err = node.ingest(broken, json!({ "table": "bronze.broken" }), quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Data, "{err}");
    assert!(err.to_string().contains("page 2") && err.to_string().contains("/api/broken"), "{err}");
    assert!(node.ctx.lake.read(&"bronze.broken".parse().unwrap(), None).await.unwrap().is_empty());

    // Nothing listens: connectivity, after the retries.
    let refused = json!({ "url": format!("https://localhost:{closed}/api/items"), "records": "data" });
    let err = node.ingest(refused, sink, quiet()).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Connectivity, "{err}");
}
