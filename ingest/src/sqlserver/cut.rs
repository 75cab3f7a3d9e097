//! Where an incremental load commits. A commit records the last watermark it holds, and the next
//! run reads only rows *past* it; so a commit may end only where the watermark changes — rows that
//! share a watermark are never split, or a resume would skip the rest of them.
//!
//! Once the flush limits are reached the commit is due, and it is cut before the first row whose
//! watermark differs from the last one's.

use crate::Limits;
use crate::flush::Fill;

#[derive(Debug)]
pub(crate) struct Cuts {
    limits: Limits,
    fill: Fill,
    due: bool,
    last: Option<i64>,
}

impl Cuts {
    pub(crate) fn new(limits: Limits) -> Cuts {
        Cuts { limits, fill: Fill::new(), due: false, last: None }
    }

    /// Whether a commit point belongs before a row with watermark `key`.
    pub(crate) fn before(&self, key: i64) -> bool {
        self.due && self.last.is_some_and(|last| last != key)
    }

    /// Starts a new commit; returns the watermark the finished one ends at.
    pub(crate) fn cut(&mut self) -> Option<i64> {
        self.fill = Fill::new();
        self.due = false;
        self.last
    }

    /// Records a row. `Err(last)` if it goes back in watermark order, which would make the
    /// recorded watermark a lie.
    pub(crate) fn add(&mut self, key: i64, bytes: u64) -> Result<(), i64> {
        if let Some(last) = self.last.filter(|last| key < *last) {
            return Err(last);
        }
        self.last = Some(key);
        self.fill.add(1, bytes);
        if self.fill.full(&self.limits) {
            self.due = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Commit sizes for watermarks `keys` with a row limit of `rows`.
    fn commits(keys: &[i64], rows: u64) -> Vec<(usize, i64)> {
        let mut cuts = Cuts::new(Limits { rows, bytes: u64::MAX, interval: Duration::from_secs(3600) });
        let (mut out, mut n) = (vec![], 0);
        for &k in keys {
            if cuts.before(k) {
                out.push((n, cuts.cut().unwrap()));
                n = 0;
            }
            cuts.add(k, 10).unwrap();
            n += 1;
        }
        if n > 0 {
            out.push((n, cuts.cut().unwrap()));
        }
        out
    }

    #[test]
    fn never_splits_a_watermark() {
        assert_eq!(commits(&[1, 2, 3, 4, 5], 2), vec![(2, 2), (2, 4), (1, 5)]);
        // The limit is reached inside the run of 3s: the commit takes all of them.
        assert_eq!(commits(&[1, 3, 3, 3, 4, 4], 2), vec![(4, 3), (2, 4)]);
        assert_eq!(commits(&[7, 7, 7, 7], 1), vec![(4, 7)]);
    }

    #[test]
    fn refuses_rows_out_of_order() {
        let mut cuts = Cuts::new(Limits::default());
        cuts.add(5, 1).unwrap();
        cuts.add(5, 1).unwrap();
        assert_eq!(cuts.add(4, 1), Err(5));
    }
}
