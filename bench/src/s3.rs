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
    /// The server's process (`SWITCHYARD_BENCH_S3_PID`), whose CPU time is read with the log:
    /// moto shares this machine's cores with the runs it serves.
    pid: Option<u32>,
}

impl S3 {
    pub(crate) fn from_env() -> Option<S3> {
        let endpoint = std::env::var("SWITCHYARD_BENCH_S3").ok().filter(|e| !e.is_empty())?;
        Some(S3 {
            endpoint,
            log: std::env::var_os("SWITCHYARD_BENCH_S3_LOG").map(PathBuf::from),
            pid: std::env::var("SWITCHYARD_BENCH_S3_PID").ok().and_then(|p| p.parse().ok()),
        })
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
        let mut r = Requests { known: true, cpu_ticks: self.pid.and_then(cpu_ticks), ..Requests::default() };
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
    /// The server's user + system CPU time, in clock ticks (1/100 s).
    cpu_ticks: Option<u64>,
}

/// utime + stime of `pid` from /proc (fields 14 and 15, after the parenthesised command name).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
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
            cpu_ticks: self.cpu_ticks.zip(before.cpu_ticks).map(|(now, then)| now.saturating_sub(then)),
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
        )?;
        match self.cpu_ticks {
            Some(ticks) => write!(f, "; the server spent {:.2} s of CPU on them", ticks as f64 / 100.0),
            None => Ok(()),
        }
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
