//! A document as a tree of nodes that remember where they came from.
//!
//! YAML (manifests, egress policy) and TOML (settings) are both read into [`Node`]s first, so one
//! deserializer ([`de`]) and one location lookup serve every file format. Scalars keep their source
//! text; the deserializer decides what they mean from the type it is asked for, which is what makes
//! `database: 2024` a string where a string is wanted.

mod de;
mod path;
mod recover;
mod text;
mod toml;
mod yaml;

pub(crate) use de::{Sink, from_node_at};
pub use path::Seg;
pub(crate) use recover::{recover_opt, recover_vec};
pub(crate) use text::{MAX_INPUT_BYTES, decode_text, too_large};
pub(crate) use toml::parse_toml;
pub(crate) use yaml::parse_yaml;

use std::path::{Path as FsPath, PathBuf};

use crate::diagnostic::{Code, Diagnostic, Location};

/// A parsed input file: its path and node tree, kept so that checks long after deserialization can
/// still say exactly where a problem is.
#[derive(Debug, Clone)]
pub struct Document {
    file: PathBuf,
    pub(crate) root: Node,
    text: String,
}

impl Document {
    pub(crate) fn new(file: &FsPath, root: Node, text: String) -> Self {
        Self { file: file.to_path_buf(), root, text }
    }

    /// Line `n` (1-based) of the source text, without its newline.
    pub fn line(&self, n: u32) -> Option<&str> {
        self.text.lines().nth((n as usize).checked_sub(1)?)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn file(&self) -> &FsPath {
        &self.file
    }

    /// The location of the value at `path` (or of its nearest existing ancestor).
    pub fn locate(&self, path: &[Seg<'_>]) -> Location {
        self.root.locate(path)
    }

    /// A diagnostic about the value at `path`.
    pub fn error(&self, code: Code, path: &[Seg<'_>], message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(code, self.locate(path), message)
            .with_path(path::render_segs(path))
            .in_file(&self.file)
    }

    /// A diagnostic about the key `key` of the mapping at `parent` (e.g. a duplicate name).
    pub fn key_error(
        &self,
        code: Code,
        parent: &[Seg<'_>],
        key: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut segs = parent.to_vec();
        segs.push(Seg::Key(key));
        Diagnostic::new(code, self.root.locate_key(parent, key), message)
            .with_path(path::render_segs(&segs))
            .in_file(&self.file)
    }

    /// The source text of a scalar and where it starts, for mapping positions inside an embedded
    /// language (SQL) back to the file.
    pub fn scalar_at(&self, path: &[Seg<'_>]) -> Option<(&str, Location)> {
        match &self.root.at(path)?.kind {
            NodeKind::Scalar { text, .. } => Some((text, self.root.at(path)?.location)),
            _ => None,
        }
    }

    /// The number of items of the list at `path`, if it is a list.
    pub fn seq_len(&self, path: &[Seg<'_>]) -> Option<usize> {
        match &self.root.at(path)?.kind {
            NodeKind::Seq(items) => Some(items.len()),
            _ => None,
        }
    }

    /// Whether the document has a value at `path` (even one that failed to deserialize).
    pub fn has(&self, path: &[Seg<'_>]) -> bool {
        self.root.at(path).is_some()
    }
}

/// One value in a document, with the location of its first character.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    /// An explicit null (`~`, `null`, or a key with no value).
    Null,
    /// Scalar text as written. `quoted` scalars are always strings; plain ones are typed on demand.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) location: Location,
}

impl Node {
    pub(crate) fn new(kind: NodeKind, location: Location) -> Self {
        Self { kind, location }
    }

    /// The node's kind as a person would name it in "expected X, found Y".
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "nothing (null)".to_owned(),
            NodeKind::Scalar { text, quoted: true } => format!("the string \"{text}\""),
            NodeKind::Scalar { text, .. } => format!("`{text}`"),
            NodeKind::Seq(_) => "a list".to_owned(),
            NodeKind::Map(_) => "a mapping".to_owned(),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn key_location(&self, key: &str) -> Option<Location> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k.location),
            _ => None,
        }
    }

    /// The node at `path`, if there is one.
    pub(crate) fn at(&self, path: &[Seg<'_>]) -> Option<&Node> {
        path.iter().try_fold(self, |node, seg| node.child(*seg))
    }

    fn child(&self, seg: Seg<'_>) -> Option<&Node> {
        match (seg, &self.kind) {
            (Seg::Key(k), NodeKind::Map(_)) => self.get(k),
            (Seg::Index(i), NodeKind::Seq(items)) => items.get(i),
            _ => None,
        }
    }

    /// Where `path` points, or the nearest ancestor that exists: an error about a missing key is
    /// best shown at the mapping that lacks it.
    pub(crate) fn locate(&self, path: &[Seg<'_>]) -> Location {
        let mut node = self;
        for seg in path {
            match node.child(*seg) {
                Some(n) => node = n,
                None => break,
            }
        }
        node.location
    }

    /// The location of a key itself (for "unknown field" and "duplicate name" errors).
    pub(crate) fn locate_key(&self, parent: &[Seg<'_>], key: &str) -> Location {
        match self.at(parent) {
            Some(node) => node.key_location(key).unwrap_or(node.location),
            None => self.locate(parent),
        }
    }
}
