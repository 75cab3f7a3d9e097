//! YAML text → [`Node`] tree, from yaml-rust2's event stream with its markers.
//!
//! Building from events (not yaml-rust2's own `Yaml` tree) keeps the location of every key and value,
//! lets us stop at a depth limit instead of recursing 10,000 levels, and bounds alias expansion so a
//! "billion laughs" document is an error instead of an out-of-memory.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{Key, Node, NodeKind};
use crate::diagnostic::{Code, Diagnostic, Location};

/// Real manifests nest about 6 levels deep; 64 leaves room while keeping every later walk shallow.
pub(crate) const MAX_DEPTH: usize = 64;
/// Upper bound on nodes produced by alias expansion, far above any hand-written file.
const MAX_ALIAS_NODES: usize = 1_000_000;

enum Frame {
    Seq { items: Vec<Node>, location: Location, anchor: usize },
    Map { entries: Vec<(Key, Node)>, pending_key: Option<Key>, location: Location, anchor: usize },
}

fn location(mark: &Marker) -> Location {
    Location::new(mark.line() as u32, mark.col() as u32 + 1)
}

/// Parses one YAML document. `Ok` carries the tree (a `Null` node for an empty file) and the
/// non-fatal problems found on the way (duplicate keys); `Err` is a syntax error.
pub(crate) fn parse_yaml(text: &str) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let mut builder = Builder { end: end_of(text), ..Builder::default() };
    let mut parser = Parser::new_from_str(text);
    loop {
        let end = builder.end;
        let (event, mark) = parser.next_token().map_err(|e| {
            let at = location(e.marker()).min(end);
            if e.info().contains("recursion limit") {
                return too_deep(at);
            }
            Diagnostic::new(Code::Syntax, at, format!("invalid YAML: {}", e.info()))
                .with_hint("check indentation and quoting near this position; YAML uses spaces, not tabs")
        })?;
        if builder.on_event(event, &mark)? {
            break;
        }
    }
    let root = builder.root.unwrap_or_else(|| Node::new(NodeKind::Null, Location::new(1, 1)));
    Ok((root, builder.problems))
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    anchors: HashMap<usize, Node>,
    alias_nodes: usize,
    problems: Vec<Diagnostic>,
    /// The position just after the last character of the text.
    end: Location,
}

fn end_of(text: &str) -> Location {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let line = trimmed.matches('\n').count() + 1;
    let column = trimmed.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Location::new(line as u32, column as u32)
}

impl Builder {
    /// Returns `Ok(true)` at the end of the stream.
    fn on_event(&mut self, event: Event, mark: &Marker) -> Result<bool, Diagnostic> {
        // yaml-rust2 marks an empty value where the next token starts, which at the end of the
        // file is past the last line; never point outside the text.
        let at = location(mark).min(self.end);
        match event {
            Event::StreamEnd => return Ok(true),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::new(Code::Syntax, at, "a second YAML document starts here")
                        .with_hint(
                            "put one job per file; remove the extra `---` or move it to its own file",
                        ));
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::Scalar(text, style, anchor, _tag) => {
                let kind = if style == TScalarStyle::Plain && is_null(&text) {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar { text, quoted: style != TScalarStyle::Plain }
                };
                self.complete(Node::new(kind, at), anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.push(Frame::Seq { items: Vec::new(), location: at, anchor }, at)?
            }
            Event::MappingStart(anchor, _) => {
                self.push(Frame::Map { entries: Vec::new(), pending_key: None, location: at, anchor }, at)?
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, location, anchor }) => {
                        (Node::new(NodeKind::Seq(items), location), anchor)
                    }
                    Some(Frame::Map { entries, location, anchor, .. }) => {
                        // yaml-rust2 marks a block mapping's start after its first key; the first
                        // key is where a person sees the mapping begin.
                        let location = entries.first().map_or(location, |(k, _)| k.location);
                        (Node::new(NodeKind::Map(entries), location), anchor)
                    }
                    None => {
                        return Err(Diagnostic::new(Code::Syntax, at, "unbalanced end of collection"));
                    }
                };
                self.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(Diagnostic::new(Code::Syntax, at, "alias refers to an unknown anchor")
                        .with_hint("define the anchor (`&name`) before using it (`*name`)"));
                };
                self.alias_nodes += count_nodes(&node);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(Diagnostic::new(
                        Code::Syntax,
                        at,
                        "aliases expand to more than a million nodes",
                    )
                    .with_hint(
                        "this looks like an alias bomb; write the values out or use fewer nested aliases",
                    ));
                }
                self.complete(node, 0)?;
            }
        }
        Ok(false)
    }

    fn push(&mut self, frame: Frame, at: Location) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_deep(at));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Attaches a finished node to its parent (as key or value), or makes it the root.
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending_key, .. }) => match pending_key.take() {
                Some(key) => {
                    // A key with no value: point at the key, not wherever the next token starts.
                    let node = match node.kind {
                        NodeKind::Null if node.location.line != key.location.line => {
                            Node { location: key.location, ..node }
                        }
                        _ => node,
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key.name) {
                        self.problems.push(
                            Diagnostic::new(
                                Code::Schema,
                                key.location,
                                format!("duplicate key `{}`", key.name),
                            )
                            .with_hint(format!(
                                "`{}` is already set at line {}; keep one of them",
                                key.name, first.location.line
                            )),
                        );
                    } else {
                        entries.push((key, node));
                    }
                }
                None => {
                    let name = match node.kind {
                        NodeKind::Scalar { text, .. } => text,
                        NodeKind::Null => String::new(),
                        _ => {
                            return Err(Diagnostic::new(
                                Code::Syntax,
                                node.location,
                                "a mapping key must be a plain name, not a list or mapping",
                            )
                            .with_hint("check for a misplaced `?`, `[` or `{`"));
                        }
                    };
                    *pending_key = Some(Key { name, location: node.location });
                }
            },
        }
        Ok(())
    }
}

fn too_deep(at: Location) -> Diagnostic {
    Diagnostic::new(Code::Syntax, at, format!("nesting is deeper than {MAX_DEPTH} levels"))
        .with_hint("manifests nest a few levels deep; check for runaway brackets or indentation")
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn count_nodes(node: &Node) -> usize {
    let mut count = 0;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        count += 1;
        match &n.kind {
            NodeKind::Seq(items) => stack.extend(items),
            NodeKind::Map(entries) => stack.extend(entries.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_locations_of_keys_and_values() {
        let (root, problems) = parse_yaml("job: a\ntasks:\n  - name: x\n    port: 5\n").unwrap();
        assert!(problems.is_empty());
        let tasks = root.get("tasks").unwrap();
        let NodeKind::Seq(items) = &tasks.kind else { panic!("{tasks:?}") };
        let port = items[0].get("port").unwrap();
        assert_eq!(port.location, Location::new(4, 11));
        assert_eq!(items[0].location, Location::new(3, 5));
    }

    #[test]
    fn empty_document_is_null() {
        let (root, _) = parse_yaml("").unwrap();
        assert_eq!(root.kind, NodeKind::Null);
        let (root, _) = parse_yaml("# only a comment\n").unwrap();
        assert_eq!(root.kind, NodeKind::Null);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let err = parse_yaml(&deep).unwrap_err();
        assert_eq!(err.code, Code::Syntax);
        let deep_block: String = (0..10_000).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        let err = parse_yaml(&deep_block).unwrap_err();
        assert_eq!(err.code, Code::Syntax);
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_lines() {
        let (_, problems) = parse_yaml("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].location, Location::new(3, 1));
        assert!(problems[0].hint.contains("line 1"));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse_yaml(&doc).unwrap_err();
        assert!(err.message.contains("million"), "{}", err.message);
    }

    #[test]
    fn syntax_error_has_location() {
        let err = parse_yaml("job: a\ntasks:\n  - name: [unclosed\n").unwrap_err();
        assert_eq!(err.code, Code::Syntax);
        assert!(err.location.line >= 3, "{err:?}");
    }
}
