use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Destination, EgressPolicy};
use crate::diagnostic::Code;
use crate::document::{Document, NodeKind, Seg, Sink, from_node_at};

/// The egress policy as read from its file (or empty, when no file exists at the default path).
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// `None` when the policy is the built-in empty one (deny everything).
    pub doc: Option<Document>,
    pub policy: EgressPolicy,
    /// For each destination of `policy`, its index in the file (destinations that failed to read
    /// are left out of `policy`).
    pub index: Vec<usize>,
    pub clean: bool,
}

impl LoadedPolicy {
    /// The deny-everything policy used when there is no file.
    pub fn empty() -> Self {
        LoadedPolicy { doc: None, policy: EgressPolicy::default(), index: vec![], clean: true }
    }
}

/// The top level of the file, so that a misspelt `destinations` gets a "did you mean".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[allow(dead_code)]
    destinations: Option<IgnoredAny>,
}

pub(crate) fn load_policy(doc: Document, sink: &Sink) -> LoadedPolicy {
    let before = sink.borrow().len();
    let mut policy = EgressPolicy::default();
    let mut index = Vec::new();
    match &doc.root.kind {
        NodeKind::Null => {
            sink.borrow_mut().push(doc.error(Code::Schema, &[], "egress policy file is empty").with_hint(
                "list allowed destinations under `destinations:`; see `switchyard schema egress`",
            ));
        }
        _ => {
            let _: Option<Top> = from_node_at(&doc.root, &[], sink);
            match doc.root.get("destinations").map(|n| &n.kind) {
                Some(NodeKind::Seq(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = [Seg::Key("destinations"), Seg::Index(i)];
                        if let Some(d) = from_node_at::<Destination>(item, &path, sink) {
                            policy.destinations.push(d);
                            index.push(i);
                        }
                    }
                }
                Some(_) => sink.borrow_mut().push(
                    doc.error(Code::Schema, &[Seg::Key("destinations")], "`destinations` must be a list")
                        .with_hint("write one `- name: …` entry per allowed destination"),
                ),
                None if matches!(doc.root.kind, NodeKind::Map(_)) => sink.borrow_mut().push(
                    doc.error(Code::Schema, &[], "missing field `destinations`")
                        .with_hint("list allowed destinations under `destinations:`"),
                ),
                None => {}
            }
        }
    }
    for d in sink.borrow_mut()[before..].iter_mut() {
        d.file = doc.file().to_path_buf();
    }
    let clean = sink.borrow().len() == before;
    LoadedPolicy { doc: Some(doc), policy, index, clean }
}
