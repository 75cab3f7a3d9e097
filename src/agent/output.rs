//! A task's output, bounded: the last [`KEEP`] bytes are kept, older output is dropped (and counted),
//! so a chatty program cannot exhaust the node's memory or the store.

use std::sync::{Arc, Mutex};

/// Bytes of output kept per attempt.
pub(crate) const KEEP: usize = 16 * 1024;

#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    inner: Arc<Mutex<TailInner>>,
}

#[derive(Debug, Default)]
struct TailInner {
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    pub(crate) fn push(&self, bytes: &[u8]) {
        let Ok(mut t) = self.inner.lock() else { return };
        t.buf.extend_from_slice(bytes);
        if t.buf.len() > KEEP {
            let excess = t.buf.len() - KEEP;
            t.buf.drain(..excess);
            t.dropped += excess as u64;
        }
    }

    /// The kept output as text, with a note of how much was dropped before it.
    pub(crate) fn text(&self) -> String {
        let Ok(t) = self.inner.lock() else { return String::new() };
        let body = String::from_utf8_lossy(&t.buf);
        // Start at a line boundary after a cut, so the tail does not begin mid-line.
        let body =
            if t.dropped > 0 { body.split_once('\n').map_or(body.as_ref(), |(_, rest)| rest) } else { &body };
        if t.dropped > 0 {
            format!("[… {} earlier bytes not kept]\n{body}", t.dropped)
        } else {
            body.to_owned()
        }
    }

    /// The last non-empty line, for failure messages.
    pub(crate) fn last_line(&self) -> Option<String> {
        let text = self.text();
        text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.chars().take(300).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_bytes() {
        let tail = Tail::default();
        for i in 0..10_000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        let text = tail.text();
        assert!(text.len() <= KEEP + 64, "{}", text.len());
        assert!(text.starts_with("[… "), "{}", &text[..40]);
        assert!(text.ends_with("line 9999\n"));
        assert_eq!(tail.last_line().as_deref(), Some("line 9999"));
    }
}
