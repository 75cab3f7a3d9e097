//! A serde `Deserializer` over [`Node`]s that knows where it is.
//!
//! Every error is turned into a [`Diagnostic`] at the innermost node that saw it — with the node's
//! location and key path — and pushed into a shared sink; the error value itself only unwinds. Two
//! choices make errors friendlier than serde's defaults:
//!
//! - structs list their fields to `deserialize_struct`, so *all* unknown keys of a mapping are
//!   reported (with "did you mean") before the known ones are read, instead of stopping at the first;
//! - an enum with data is written as a mapping with a `kind:` key naming the variant (DESIGN §4.1's
//!   `source: { kind: kafka, … }`), read here directly rather than through serde's buffering
//!   internally-tagged path, which would lose every location inside the variant.

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::path::{Path, Seg};
use super::{Key, Node, NodeKind};
use crate::diagnostic::{Code, Diagnostic};
use crate::suggest;

/// Where diagnostics collect while a document is read.
pub(crate) type Sink = RefCell<Vec<Diagnostic>>;

/// The key that selects an enum variant, as in `source: { kind: kafka }`.
const TAG: &str = "kind";

/// Deserializes `node`, found at `prefix` in its document, as `T`, recording every problem in
/// `sink`. `None` when `node` itself failed (its errors are in the sink).
pub(crate) fn from_node_at<T: DeserializeOwned>(node: &Node, prefix: &[Seg<'_>], sink: &Sink) -> Option<T> {
    fn go<T: DeserializeOwned>(node: &Node, prefix: &[Seg<'_>], path: Path<'_>, sink: &Sink) -> Option<T> {
        match prefix.split_first() {
            Some((seg, rest)) => {
                let link = path.link(*seg);
                go(node, rest, link.path(), sink)
            }
            None => {
                let de = NodeDe { node, path, sink, skip_tag: false };
                T::deserialize(de).map_err(|e| de.stamp(e)).ok()
            }
        }
    }
    go(node, prefix, Path::ROOT, sink)
}

/// The error that unwinds through serde. Its content is recorded in the sink exactly once.
#[derive(Debug)]
pub(crate) struct Error {
    message: String,
    hint: String,
    recorded: bool,
}

impl Error {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { message: message.into(), hint: hint.into(), recorded: false }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        // Leaf parsers put their hint after a newline (see `crate::value`).
        let text = msg.to_string();
        match text.split_once('\n') {
            Some((message, hint)) => Error::new(message, hint),
            None => Error::new(text, ""),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::new(format!("wrong type: expected {exp}, found {unexp}"), "")
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::new(format!("invalid value {unexp}: expected {exp}"), "")
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Error::new(format!("wrong number of items ({len}): expected {exp}"), "")
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::new(
            format!("unknown value `{variant}`"),
            format!(
                "{}expected one of: {}",
                suggest::did_you_mean(variant, expected.iter().copied()),
                expected.join(", ")
            ),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::new(format!("unknown field `{field}`"), field_hint(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Error::new(format!("missing field `{field}`"), format!("add `{field}:` to this mapping"))
    }
}

fn field_hint(field: &str, expected: &[&str]) -> String {
    let secretish = ["password", "secret", "token", "key", "private_key"];
    if secretish.contains(&field) {
        let alternatives: Vec<_> = expected
            .iter()
            .filter(|e| e.ends_with("_env") || e.ends_with("_file"))
            .map(|e| format!("`{e}`"))
            .collect();
        if !alternatives.is_empty() {
            return format!(
                "secrets are never written inline; put the value in an environment variable or file and name it with {}",
                alternatives.join(" or ")
            );
        }
    }
    format!(
        "{}expected one of: {}",
        suggest::did_you_mean(field, expected.iter().copied()),
        expected.join(", ")
    )
}

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    path: Path<'a>,
    sink: &'a Sink,
    /// Set for the content of a newtype enum variant, whose mapping still holds the `kind:` key.
    skip_tag: bool,
}

impl<'a> NodeDe<'a> {
    /// Records `err` at this node unless an inner node already did.
    fn stamp(&self, mut err: Error) -> Error {
        if !err.recorded {
            record(self.sink, self.node.location, self.path, &err);
            err.recorded = true;
        }
        err
    }

    fn type_error(&self, exp: &dyn de::Expected) -> Error {
        Error::new(format!("wrong type: expected {exp}, found {}", self.node.describe()), "")
    }

    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.kind {
            NodeKind::Scalar { text, quoted } => Some((text.as_str(), *quoted)),
            _ => None,
        }
    }

    fn plain(&self) -> Option<&'a str> {
        self.scalar().filter(|(_, quoted)| !quoted).map(|(text, _)| text)
    }
}

fn record(sink: &Sink, location: crate::diagnostic::Location, path: Path<'_>, err: &Error) {
    sink.borrow_mut().push(
        Diagnostic::new(Code::Schema, location, err.message.clone())
            .with_path(path.render())
            .with_hint(err.hint.clone()),
    );
}

macro_rules! deserialize_number {
    ($($method:ident => $visit:ident: $ty:ty,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let parsed = self.plain().and_then(|t| t.replace('_', "").parse::<$ty>().ok());
            let result = match parsed {
                Some(n) => visitor.$visit(n),
                None => Err(self.type_error(&visitor)),
            };
            result.map_err(|e| self.stamp(e))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Scalar { text, quoted: true } => visitor.visit_str(text),
            NodeKind::Scalar { text, quoted: false } => match text.as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                t => match (t.parse::<i64>(), t.parse::<f64>()) {
                    (Ok(i), _) => visitor.visit_i64(i),
                    (_, Ok(f)) if t.chars().any(|c| c.is_ascii_digit()) => visitor.visit_f64(f),
                    _ => visitor.visit_str(t),
                },
            },
            NodeKind::Seq(_) => return self.deserialize_seq(visitor),
            NodeKind::Map(_) => return self.deserialize_map(visitor),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.plain() {
            Some("true") => visitor.visit_bool(true),
            Some("false") => visitor.visit_bool(false),
            _ => Err(self.type_error(&visitor)),
        };
        result.map_err(|e| self.stamp(e))
    }

    deserialize_number! {
        deserialize_i8 => visit_i64: i64,
        deserialize_i16 => visit_i64: i64,
        deserialize_i32 => visit_i64: i64,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u64: u64,
        deserialize_u16 => visit_u64: u64,
        deserialize_u32 => visit_u64: u64,
        deserialize_u64 => visit_u64: u64,
        deserialize_f32 => visit_f64: f64,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.scalar() {
            Some((text, _)) => visitor.visit_str(text),
            None => Err(self.type_error(&visitor)),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.node.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            _ => Err(self.type_error(&visitor)),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self).map_err(|e| self.stamp(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqAcc {
                items: items.iter().enumerate(),
                path: self.path,
                sink: self.sink,
            }),
            _ => Err(self.type_error(&visitor)),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapAcc::new(entries, self, None)),
            _ => Err(self.type_error(&visitor)),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            NodeKind::Map(entries) => {
                let skip = self.skip_tag.then_some(TAG);
                report_unknown_fields(entries, fields, skip, self);
                visitor.visit_map(MapAcc::new(entries, self, Some(Filter { fields, skip })))
            }
            _ => Err(self.type_error(&visitor)),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            NodeKind::Scalar { text, .. } => {
                visitor.visit_enum(Variant { name: text, tag: None, content: self })
            }
            NodeKind::Map(_) => match self.node.get(TAG) {
                Some(tag) => match &tag.kind {
                    NodeKind::Scalar { text, .. } => {
                        let tag_link = self.path.link(Seg::Key(TAG));
                        let tag_de =
                            NodeDe { node: tag, path: tag_link.path(), sink: self.sink, skip_tag: false };
                        if !variants.contains(&text.as_str()) {
                            let err = <Error as de::Error>::unknown_variant(text, variants);
                            return Err(tag_de.stamp(err));
                        }
                        visitor.visit_enum(Variant { name: text, tag: Some(tag_de), content: self })
                    }
                    _ => Err(Error::new(format!("`{TAG}` must be one of: {}", variants.join(", ")), "")),
                },
                None => Err(Error::new(
                    format!("missing field `{TAG}`"),
                    format!("add `{TAG}:` with one of: {}", variants.join(", ")),
                )),
            },
            _ => Err(Error::new(
                format!(
                    "wrong type: expected one of {}, found {}",
                    variants.join(", "),
                    self.node.describe()
                ),
                "",
            )),
        };
        result.map_err(|e| self.stamp(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// Reports every key of a mapping that the struct does not have, each at the key's own location.
fn report_unknown_fields(entries: &[(Key, Node)], fields: &[&str], skip: Option<&str>, de: NodeDe<'_>) {
    for (key, _) in entries {
        if Some(key.name.as_str()) == skip || fields.contains(&key.name.as_str()) {
            continue;
        }
        let link = de.path.link(Seg::Key(&key.name));
        let err = Error::new(format!("unknown field `{}`", key.name), field_hint(&key.name, fields));
        record(de.sink, key.location, link.path(), &err);
    }
}

#[derive(Clone, Copy)]
struct Filter {
    fields: &'static [&'static str],
    skip: Option<&'static str>,
}

struct MapAcc<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    current: Option<&'a (Key, Node)>,
    path: Path<'a>,
    sink: &'a Sink,
    filter: Option<Filter>,
}

impl<'a> MapAcc<'a> {
    fn new(entries: &'a [(Key, Node)], de: NodeDe<'a>, filter: Option<Filter>) -> Self {
        Self { entries: entries.iter(), current: None, path: de.path, sink: de.sink, filter }
    }
}

impl<'de> MapAccess<'de> for MapAcc<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        for entry in self.entries.by_ref() {
            let name = entry.0.name.as_str();
            if let Some(filter) = self.filter {
                if Some(name) == filter.skip || !filter.fields.contains(&name) {
                    continue;
                }
            }
            self.current = Some(entry);
            return seed.deserialize(name.into_deserializer()).map(Some).map_err(|e: Error| {
                let mut e = e;
                if !e.recorded {
                    let link = self.path.link(Seg::Key(name));
                    record(self.sink, entry.0.location, link.path(), &e);
                    e.recorded = true;
                }
                e
            });
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let Some((key, node)) = self.current.take() else {
            return Err(Error::new("internal: value requested before key", ""));
        };
        let link = self.path.link(Seg::Key(&key.name));
        let de = NodeDe { node, path: link.path(), sink: self.sink, skip_tag: false };
        seed.deserialize(de).map_err(|e| de.stamp(e))
    }
}

struct SeqAcc<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: Path<'a>,
    sink: &'a Sink,
}

impl<'de> SeqAccess<'de> for SeqAcc<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let link = self.path.link(Seg::Index(i));
        let de = NodeDe { node, path: link.path(), sink: self.sink, skip_tag: false };
        seed.deserialize(de).map(Some).map_err(|e| de.stamp(e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An enum variant: its name (a scalar, or the `kind:` value) and the mapping holding its fields.
struct Variant<'a> {
    name: &'a str,
    tag: Option<NodeDe<'a>>,
    content: NodeDe<'a>,
}

impl<'de, 'a> EnumAccess<'de> for Variant<'a> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let at = self.tag.unwrap_or(self.content);
        let value = seed.deserialize(self.name.into_deserializer()).map_err(|e: Error| at.stamp(e))?;
        Ok((value, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match (&self.content.node.kind, self.tag) {
            (NodeKind::Scalar { .. }, _) => Ok(()),
            (NodeKind::Map(entries), Some(_)) => {
                report_unknown_fields(entries, &[], Some(TAG), self.content);
                Ok(())
            }
            _ => Err(self.content.stamp(Error::new("expected a plain value", ""))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(NodeDe { skip_tag: true, ..self.content })
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self.content, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let de = self.content;
        let NodeKind::Map(entries) = &de.node.kind else {
            let err = Error::new(
                format!("`{}` needs its settings as a mapping with `{TAG}: {}`", self.name, self.name),
                "",
            );
            return Err(de.stamp(err));
        };
        report_unknown_fields(entries, fields, Some(TAG), de);
        let filter = Filter { fields, skip: Some(TAG) };
        visitor.visit_map(MapAcc::new(entries, de, Some(filter))).map_err(|e| de.stamp(e))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::diagnostic::Location;
    use crate::document::parse_yaml;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "snake_case")]
    enum Source {
        Kafka { topic: String, brokers: Vec<String> },
        Https { url: String },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Task {
        name: String,
        port: Option<u16>,
        source: Option<Source>,
        #[serde(default)]
        enabled: bool,
    }

    fn read<T: DeserializeOwned>(yaml: &str) -> (Option<T>, Vec<Diagnostic>) {
        let (node, _) = parse_yaml(yaml).unwrap();
        let sink = Sink::default();
        let value = from_node_at(&node, &[], &sink);
        (value, sink.into_inner())
    }

    #[test]
    fn reads_kind_tagged_enums_and_plain_scalars_as_strings() {
        let (task, errors) = read::<Task>("name: 2024\nsource: {kind: kafka, topic: t, brokers: [a:1]}\n");
        assert!(errors.is_empty(), "{errors:?}");
        let task = task.unwrap();
        assert_eq!(task.name, "2024");
        assert_eq!(task.source, Some(Source::Kafka { topic: "t".into(), brokers: vec!["a:1".into()] }));
    }

    #[test]
    fn reports_all_unknown_fields_with_locations_and_suggestions() {
        let (_, errors) = read::<Task>("name: a\nnmae: b\nsource:\n  kind: https\n  ulr: x\n  url: y\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].location, Location::new(2, 1));
        assert!(errors[0].hint.contains("did you mean `name`"), "{}", errors[0].hint);
        assert_eq!(errors[1].path, "source.ulr");
        assert_eq!(errors[1].location, Location::new(5, 3));
    }

    #[test]
    fn wrong_type_and_range_are_located_at_the_value() {
        let (_, errors) = read::<Task>("name: a\nport: 70000\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location, Location::new(2, 7));
        assert_eq!(errors[0].path, "port");
        let (_, errors) = read::<Task>("name: [a]\n");
        assert!(errors[0].message.contains("expected a string"), "{}", errors[0].message);
    }

    #[test]
    fn missing_field_is_reported_at_the_mapping() {
        let (_, errors) = read::<Task>("port: 1\n");
        assert_eq!(errors[0].message, "missing field `name`");
        assert_eq!(errors[0].location, Location::new(1, 1));
    }

    #[test]
    fn unknown_kind_suggests_the_closest() {
        let (_, errors) = read::<Task>("name: a\nsource: {kind: kafak, topic: t}\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "source.kind");
        assert!(errors[0].hint.contains("did you mean `kafka`"), "{}", errors[0].hint);
    }
}
