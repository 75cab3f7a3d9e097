//! The S3 server the object-store figures use: `SWITCHYARD_BENCH_S3` names it (bench/run starts
//! moto on 127.0.0.1 and sets it, with the standard `AWS_*` variables the lake reads and
//! `SWITCHYARD_BENCH_S3_LOG`, the server's request log, which tells what the runs asked of it).

use std::fmt;
use std::path::PathBuf;

use futures_util::StreamExt;
use object_store::ObjectStore as _;
use switchyard_lake::Lake;

pub(crate) const SKIPPED: &str =
    "SWITCHYARD_BENCH_S3 is not set; bench/run starts moto's S3 server and sets it with the AWS_* variables";

/// The bucket bench/run creates.
const BUCKET: &str = "switchyard-bench";

#[derive(Debug, Clone)]
pub(crate) struct S3 {
    pub(crate) endpoint: String,
    log: Option<PathBuf>,
}

impl S3 {
    pub(crate) fn from_env() -> Option<S3> {
        let endpoint = std::env::var("SWITCHYARD_BENCH_S3").ok().filter(|e| !e.is_empty())?;
        Some(S3 { endpoint, log: std::env::var_os("SWITCHYARD_BENCH_S3_LOG").map(PathBuf::from) })
    }

    /// A lake root no earlier run used.
    pub(crate) fn fresh_root(&self, what: &str) -> String {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("s3://{BUCKET}/{what}-{}-{nanos}", std::process::id())
    }

    /// The requests the server has logged so far, by kind.
    pub(crate) fn requests(&self) -> Requests {
        let Some(text) = self.log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) else {
            return Requests::default();
        };
        let mut r = Requests { known: true, ..Requests::default() };
        // werkzeug's access log: `127.0.0.1 - - [date] "PUT /bucket/key HTTP/1.1" 200 -`.
        for line in text.lines() {
            let Some((_, request)) = line.split_once('"') else { continue };
            let mut parts = request.split_whitespace();
            let (Some(method), Some(path)) = (parts.next(), parts.next()) else { continue };
            match method {
                "GET" if path.contains("list-type=") || path.contains("delimiter=") => r.list += 1,
                "GET" => r.get += 1,
                "PUT" => r.put += 1,
                "HEAD" => r.head += 1,
                "DELETE" => r.delete += 1,
                "POST" => r.post += 1,
                _ => {}
            }
        }
        r
    }
}

/// Requests by kind (`known` false when there is no log to read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Requests {
    known: bool,
    get: u64,
    list: u64,
    put: u64,
    head: u64,
    delete: u64,
    post: u64,
}

impl Requests {
    pub(crate) fn since(&self, before: &Requests) -> Requests {
        Requests {
            known: self.known,
            get: self.get - before.get.min(self.get),
            list: self.list - before.list.min(self.list),
            put: self.put - before.put.min(self.put),
            head: self.head - before.head.min(self.head),
            delete: self.delete - before.delete.min(self.delete),
            post: self.post - before.post.min(self.post),
        }
    }
}

impl fmt::Display for Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.known {
            return f.write_str("not counted (no SWITCHYARD_BENCH_S3_LOG)");
        }
        let total = self.get + self.list + self.put + self.head + self.delete + self.post;
        write!(
            f,
            "{total} in all: {} PUT, {} GET, {} LIST, {} HEAD, {} POST (multipart), {} DELETE",
            self.put, self.get, self.list, self.head, self.post, self.delete
        )
    }
}

/// Bytes stored under the lake's root, and how many objects.
pub(crate) async fn stored_bytes(lake: &Lake) -> u64 {
    let Ok(store) = lake.object_store() else { return 0 };
    let mut listing = store.list(None);
    let mut bytes = 0;
    while let Some(Ok(meta)) = listing.next().await {
        bytes += meta.size;
    }
    bytes
}
