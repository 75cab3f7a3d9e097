//! When a source cuts a chunk: whichever of rows, bytes or elapsed time is reached first. Larger
//! commits are cheaper (each is one Delta version; small appends top out near 50 commits/s here),
//! smaller ones make data visible sooner.

use std::time::{Duration, Instant};

use switchyard_config::manifest::Flush;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub rows: u64,
    pub bytes: u64,
    pub interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { rows: 500_000, bytes: 256 << 20, interval: Duration::from_secs(10) }
    }
}

impl Limits {
    pub fn from_manifest(flush: Option<&Flush>) -> Self {
        let d = Limits::default();
        let Some(f) = flush else { return d };
        Limits {
            rows: f.rows.unwrap_or(d.rows).max(1),
            bytes: f.bytes.unwrap_or(d.bytes).max(1),
            interval: f.interval.map_or(d.interval, |i| i.as_std()),
        }
    }
}

/// What a chunk in the making holds so far.
#[derive(Debug)]
pub(crate) struct Fill {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    started: Instant,
}

impl Fill {
    pub(crate) fn new() -> Self {
        Fill { rows: 0, bytes: 0, started: Instant::now() }
    }

    pub(crate) fn add(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
    }

    pub(crate) fn full(&self, limits: &Limits) -> bool {
        self.rows >= limits.rows || self.bytes >= limits.bytes || self.timed_out(limits)
    }

    pub(crate) fn timed_out(&self, limits: &Limits) -> bool {
        self.rows > 0 && self.started.elapsed() >= limits.interval
    }
}
