//! TOML text → [`Node`] tree, from toml's spanned `DeTable`, so that settings errors carry
//! `FILE:LINE:COL` exactly like manifest errors do.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Key, Node, NodeKind};
use crate::diagnostic::{Code, Diagnostic, Location};

/// Maps byte offsets to 1-based line and character columns.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { text, starts }
    }

    fn locate(&self, offset: usize) -> Location {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let end = offset.min(self.text.len()).max(start);
        let column = self.text.get(start..end).map_or(end - start, |s| s.chars().count()) + 1;
        Location::new(line as u32, column as u32)
    }
}

pub(crate) fn parse_toml(text: &str) -> Result<Node, Diagnostic> {
    let index = LineIndex::new(text);
    let table = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(Location::new(1, 1), |s| index.locate(s.start));
        Diagnostic::new(Code::Syntax, at, format!("invalid TOML: {}", e.message().trim()))
            .with_hint("check quoting and brackets near this position; strings need quotes in TOML")
    })?;
    let location = index.locate(table.span().start);
    Ok(table_node(table.get_ref(), location, &index))
}

fn table_node(table: &DeTable<'_>, location: Location, index: &LineIndex<'_>) -> Node {
    let entries = table
        .iter()
        .map(|(k, v)| {
            let key = Key { name: k.get_ref().to_string(), location: index.locate(k.span().start) };
            (key, value_node(v, index))
        })
        .collect();
    Node::new(NodeKind::Map(entries), location)
}

fn value_node(value: &Spanned<DeValue<'_>>, index: &LineIndex<'_>) -> Node {
    let location = index.locate(value.span().start);
    let scalar = |text: String, quoted: bool| Node::new(NodeKind::Scalar { text, quoted }, location);
    match value.get_ref() {
        DeValue::String(s) => scalar(s.to_string(), true),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let text = i64::from_str_radix(&digits, i.radix()).map_or(digits, |n| n.to_string());
            scalar(text, false)
        }
        DeValue::Float(f) => scalar(f.as_str().replace('_', ""), false),
        DeValue::Boolean(b) => scalar(b.to_string(), false),
        DeValue::Datetime(d) => scalar(d.to_string(), true),
        DeValue::Array(items) => {
            Node::new(NodeKind::Seq(items.iter().map(|v| value_node(v, index)).collect()), location)
        }
        DeValue::Table(t) => table_node(t, location, index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_locations() {
        let node = parse_toml("[serverless]\nmax_workers = 8\n\n[[pools]]\nname = \"a\"\n").unwrap();
        let workers = node.get("serverless").unwrap().get("max_workers").unwrap();
        assert_eq!(workers.location, Location::new(2, 15));
        assert_eq!(workers.kind, NodeKind::Scalar { text: "8".into(), quoted: false });
        let NodeKind::Seq(pools) = &node.get("pools").unwrap().kind else { panic!() };
        assert_eq!(pools[0].get("name").unwrap().location, Location::new(5, 8));
    }

    #[test]
    fn syntax_error_is_located() {
        let err = parse_toml("[a]\nb = \n").unwrap_err();
        assert_eq!(err.code, Code::Syntax);
        assert_eq!(err.location.line, 2);
    }
}
