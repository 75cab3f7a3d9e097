use super::EgressPolicy;
use crate::diagnostic::Code;
use crate::document::{Document, NodeKind, Sink, from_node_at};

/// The egress policy as read from its file (or empty, when no file exists at the default path).
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// `None` when the policy is the built-in empty one (deny everything).
    pub doc: Option<Document>,
    pub policy: EgressPolicy,
    pub clean: bool,
}

pub(crate) fn load_policy(doc: Document, sink: &Sink) -> LoadedPolicy {
    let before = sink.borrow().len();
    let policy = match &doc.root.kind {
        NodeKind::Null => {
            sink.borrow_mut().push(doc.error(Code::Schema, &[], "egress policy file is empty").with_hint(
                "list allowed destinations under `destinations:`; see `switchyard schema egress`",
            ));
            None
        }
        _ => from_node_at::<EgressPolicy>(&doc.root, &[], sink),
    };
    for d in sink.borrow_mut()[before..].iter_mut() {
        d.file = doc.file().to_path_buf();
    }
    let clean = sink.borrow().len() == before;
    LoadedPolicy { doc: Some(doc), policy: policy.unwrap_or_default(), clean }
}
