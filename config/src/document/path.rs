//! Key paths such as `tasks[2].source.port`, built on the stack while deserializing so that the
//! common case (no error) allocates nothing.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A borrowed, linked key path: each level points at its parent's link in a caller's stack frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path<'a> {
    link: Option<&'a Link<'a>>,
}

#[derive(Debug)]
pub(crate) struct Link<'a> {
    parent: Path<'a>,
    seg: Seg<'a>,
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path { link: None };

    pub(crate) fn link(self, seg: Seg<'a>) -> Link<'a> {
        Link { parent: self, seg }
    }

    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = self.link;
        while let Some(link) = cur {
            segs.push(link.seg);
            cur = link.parent.link;
        }
        segs.reverse();
        render_segs(&segs)
    }
}

impl<'a> Link<'a> {
    pub(crate) fn path(&'a self) -> Path<'a> {
        Path { link: Some(self) }
    }
}

/// `["tasks", 2, "source"]` → `tasks[2].source`.
pub(crate) fn render_segs(segs: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                use fmt::Write;
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}
