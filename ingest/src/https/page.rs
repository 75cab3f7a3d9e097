//! One page of an API's answer: its records (a JSON array, at the top or under the `records`
//! field, or newline-delimited JSON objects) and where it says the next page is. Decoding to Arrow
//! goes through `crate::json`, so HTTPS and Kafka read JSON the same way.

use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;
use switchyard_config::manifest::PageFormat;
use switchyard_lake::arrow::datatypes::SchemaRef;
use switchyard_lake::arrow::record_batch::RecordBatch;

use crate::json;

/// Records an NDJSON page's schema is inferred from: enough to see every field of a regular API,
/// without parsing a large first page twice.
const INFER_LINES: usize = 1000;

#[derive(Debug)]
pub(super) struct Page {
    records: Records,
    /// The cursor or next link the page names; `None` when it names none (the last page).
    pub(super) next: Option<String>,
}

#[derive(Debug)]
enum Records {
    Json(Vec<Value>),
    /// The body, and each non-blank line's 1-based number and byte range.
    Lines(Bytes, Vec<(usize, Range<usize>)>),
}

impl Page {
    /// Splits a body into records. `records` is the field holding the array (JSON only); `next`
    /// the field naming the next page. `Err` says what is wrong with the body.
    pub(super) fn parse(
        body: Bytes,
        format: PageFormat,
        records: Option<&str>,
        next: Option<&str>,
    ) -> Result<Page, String> {
        match format {
            PageFormat::Ndjson => {
                Ok(Page { records: Records::Lines(body.clone(), lines(&body)), next: None })
            }
            PageFormat::Json => parse_json(&body, records, next),
        }
    }

    pub(super) fn len(&self) -> usize {
        match &self.records {
            Records::Json(values) => values.len(),
            Records::Lines(_, lines) => lines.len(),
        }
    }

    /// The schema of the page's records, every column nullable; `None` for an empty page.
    pub(super) fn infer(&self) -> Result<Option<SchemaRef>, String> {
        if self.len() == 0 {
            return Ok(None);
        }
        let schema = match &self.records {
            Records::Json(values) => json::infer(values)?,
            Records::Lines(body, lines) => {
                let values = lines
                    .iter()
                    .take(INFER_LINES)
                    .map(|(n, r)| {
                        serde_json::from_slice(&body[r.clone()])
                            .map_err(|e| format!("line {n} is not JSON: {e}"))
                    })
                    .collect::<Result<Vec<Value>, String>>()?;
                json::infer(&values)?
            }
        };
        Ok(Some(schema))
    }

    /// The records as one batch of `schema`; `Err` names the record that does not fit.
    pub(super) fn decode(&self, schema: &SchemaRef) -> Result<RecordBatch, String> {
        match &self.records {
            Records::Json(values) => {
                if let Some(i) = values.iter().position(|v| !v.is_object()) {
                    return Err(format!("record {} is not a JSON object", i + 1));
                }
                json::decode_values(schema, values)
            }
            Records::Lines(body, lines) => {
                let slices: Vec<&[u8]> = lines.iter().map(|(_, r)| &body[r.clone()]).collect();
                json::decode_slices(schema, &slices)
                    .map_err(|(i, reason)| format!("line {}: {reason}", lines[i].0))
            }
        }
    }
}

fn parse_json(body: &[u8], records: Option<&str>, next: Option<&str>) -> Result<Page, String> {
    let mut value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let next = match next {
        Some(path) => next_of(&mut value, path)?,
        None => None,
    };
    let array = match (records, value) {
        (None, Value::Array(a)) => a,
        (None, Value::Object(o)) => {
            let fields: Vec<&str> = o.keys().take(10).map(String::as_str).collect();
            return Err(format!(
                "the body is a JSON object (fields: {}); set `records` to the field holding the records",
                fields.join(", ")
            ));
        }
        (Some(path), mut v @ Value::Object(_)) => match field(&mut v, path).map(Value::take) {
            Some(Value::Array(a)) => a,
            Some(Value::Null) => Vec::new(),
            Some(other) => {
                return Err(format!("field `{path}` is {}, not an array of records", kind(&other)));
            }
            None => return Err(format!("the body has no field `{path}` (set by `records`)")),
        },
        (_, other) => return Err(format!("the body is {}, not an array or object", kind(&other))),
    };
    Ok(Page { records: Records::Json(array), next })
}

/// The cursor or next link at `path`: a string or number; `null`, `""` or missing mean none.
fn next_of(value: &mut Value, path: &str) -> Result<Option<String>, String> {
    if !value.is_object() {
        return Err(format!("the body is {}, so it has no field `{path}` naming the next page", kind(value)));
    }
    match field(value, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("field `{path}` is {}, not a cursor or link", kind(other))),
    }
}

/// The field `path` names: a top-level key, else a dotted path into nested objects
/// (`meta.next_cursor`).
fn field<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    if value.get(path).is_some() {
        return value.get_mut(path);
    }
    let pointer: String =
        path.split('.').map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect();
    value.pointer_mut(&pointer)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Non-blank lines, with their 1-based numbers.
fn lines(body: &[u8]) -> Vec<(usize, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let end = start + line.len();
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            out.push((n + 1, start..end));
        }
        start = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str, records: Option<&str>, next: Option<&str>) -> Result<Page, String> {
        Page::parse(Bytes::from(body.to_owned()), PageFormat::Json, records, next)
    }

    #[test]
    fn finds_records_and_the_next_page() {
        let p =
            json(r#"{"data": [{"id": 1}, {"id": 2}], "meta": {"next": 7}}"#, Some("data"), Some("meta.next"))
                .unwrap();
        assert_eq!((p.len(), p.next.as_deref()), (2, Some("7")));
        let p = json(r#"{"data": null, "next": ""}"#, Some("data"), Some("next")).unwrap();
        assert_eq!((p.len(), p.next), (0, None));
        let p = json(r#"[{"id": 1}]"#, None, None).unwrap();
        assert_eq!(p.len(), 1);
        let schema = p.infer().unwrap().unwrap();
        assert_eq!(p.decode(&schema).unwrap().num_rows(), 1);
    }

    #[test]
    fn says_what_is_wrong_with_a_body() {
        assert!(json("<html>", None, None).unwrap_err().contains("not JSON"));
        assert!(json(r#"{"data": []}"#, None, None).unwrap_err().contains("set `records`"));
        assert!(json(r#"{"items": []}"#, Some("data"), None).unwrap_err().contains("no field `data`"));
        assert!(json(r#"{"data": 3}"#, Some("data"), None).unwrap_err().contains("a number"));
        assert!(
            json(r#"{"data": [], "next": [1]}"#, Some("data"), Some("next"))
                .unwrap_err()
                .contains("an array")
        );
        let p = json(r#"[{"id": 1}, 5]"#, None, None).unwrap();
        let schema = json(r#"[{"id": 1}]"#, None, None).unwrap().infer().unwrap().unwrap();
        assert!(p.decode(&schema).unwrap_err().contains("record 2"));
    }

    #[test]
    fn ndjson_names_the_bad_line() {
        let body = Bytes::from_static(b"{\"id\": 1}\r\n\n{\"id\": 2}\n{\"id\": \"x\"}\n");
        let p = Page::parse(body, PageFormat::Ndjson, None, None).unwrap();
        assert_eq!(p.len(), 3);
        let schema = Page::parse(Bytes::from_static(b"{\"id\": 1}"), PageFormat::Ndjson, None, None)
            .unwrap()
            .infer()
            .unwrap()
            .unwrap();
        let err = p.decode(&schema).unwrap_err();
        assert!(err.starts_with("line 4"), "{err}");
    }
}
