//! axum's `Json`, `Query` and `Path` with their rejections turned into [`ApiError`]s, so a
//! malformed body, query string or path parameter is answered like every other error: JSON
//! `{code, message, hint}` naming the field, never axum's `text/plain` default. Handlers take these
//! instead of axum's extractors; [`super::errors::json_errors`] catches what no extractor sees.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Where to look when a request is refused as malformed.
const SCHEMA_HINT: &str = "see /api/v1/openapi.json for the request schema";

/// A JSON request body. Read like axum's `Json` (415 without `Content-Type: application/json`,
/// 413 over the body limit), then deserialized with the path of the field that failed in the
/// message. JSON Schema counts `3.0` as an integer, serde does not: a body refused only for such a
/// number is read again with integral floats made integers, so what the document calls valid is
/// accepted.
pub(super) struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                malformed(&format!("could not read the body: {}", rejection.body_text()))
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let first = match serde_path_to_error::deserialize(&mut de) {
            Ok(value) => match de.end() {
                Ok(()) => return Ok(Json(value)),
                Err(trailing) => return Err(malformed(&trailing.to_string())),
            },
            Err(e) => e,
        };
        if first.inner().classify() == serde_json::error::Category::Data {
            if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                if integral_floats_to_integers(&mut value) {
                    if let Ok(v) = serde_path_to_error::deserialize(value) {
                        return Ok(Json(v));
                    }
                }
            }
        }
        Err(malformed(&first.to_string()))
    }
}

/// `application/json`, or any `+json` type, as axum's `Json` takes.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(mime) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Turns every float with no fractional part, up to 2^53, into that integer; says whether it
/// changed anything.
fn integral_floats_to_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Only where f64 holds every integer (|f| <= 2^53): past that, `-9223372036854775809`
            // would read as i64::MIN and an out-of-range number would pass.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            let integer = if f.fract() != 0.0 || !f.is_finite() || f.abs() > EXACT {
                None
            } else if f >= 0.0 {
                Some(serde_json::Number::from(f as u64))
            } else {
                Some(serde_json::Number::from(f as i64))
            };
            match integer {
                Some(i) => {
                    *n = i;
                    true
                }
                None => false,
            }
        }
        Value::Array(items) => {
            items.iter_mut().fold(false, |changed, v| integral_floats_to_integers(v) | changed)
        }
        Value::Object(fields) => {
            fields.values_mut().fold(false, |changed, v| integral_floats_to_integers(v) | changed)
        }
        _ => false,
    }
}

/// A query string.
pub(super) struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

/// Path parameters.
pub(super) struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                // A single parameter's parse error does not carry its name; the route's does.
                let names: Vec<(String, String)> =
                    match axum::extract::RawPathParams::from_request_parts(parts, state).await {
                        Ok(raw) => raw.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
                        Err(_) => vec![],
                    };
                Err(path_rejection(&rejection, &names))
            }
        }
    }
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than the API accepts ({} MiB)", super::MAX_BODY >> 20),
        "send fewer manifests or records per request",
    )
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the request body is not declared as JSON",
        "send the body with `Content-Type: application/json`",
    )
}

/// serde's text names the field and position ("lease.max: invalid type: string \"a\", expected
/// usize at line 1 column 20").
fn malformed(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("malformed JSON body: {detail}"),
        SCHEMA_HINT,
    )
}

/// serde_urlencoded's text names the parameter: "limit: invalid digit found in string".
fn query_rejection(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text.trim_start_matches("Failed to deserialize query string: ");
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("invalid query string: {detail}"),
        SCHEMA_HINT,
    )
}

/// `names`: the route's parameters as (name, raw value), to name the one that did not parse.
fn path_rejection(rejection: &PathRejection, names: &[(String, String)]) -> ApiError {
    use axum::extract::path::ErrorKind;
    let message = match rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::ParseErrorAtKey { key, value, expected_type } => {
                format!(
                    "path parameter `{key}` is `{value}`, which is not a valid {}",
                    readable(expected_type)
                )
            }
            ErrorKind::ParseError { value, expected_type } => {
                let key = names.iter().find(|(_, v)| v == value).map_or("?", |(k, _)| k.as_str());
                format!(
                    "path parameter `{key}` is `{value}`, which is not a valid {}",
                    readable(expected_type)
                )
            }
            ErrorKind::InvalidUtf8InPathParam { key } => format!("path parameter `{key}` is not valid UTF-8"),
            _ => format!("invalid path: {}", e.body_text()),
        },
        other => format!("invalid path: {}", other.body_text()),
    };
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message, SCHEMA_HINT)
}

/// `i64` → "integer (64-bit)": what a person reading the error expects, not a Rust type name.
fn readable(rust_type: &str) -> &str {
    match rust_type {
        "i64" => "integer (64-bit)",
        "u64" | "u32" | "usize" => "non-negative integer",
        "bool" => "boolean (true or false)",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::{integral_floats_to_integers, readable};

    #[test]
    fn names_types_for_people() {
        assert_eq!(readable("i64"), "integer (64-bit)");
        assert_eq!(readable("bool"), "boolean (true or false)");
        assert_eq!(readable("alloc::string::String"), "alloc::string::String");
    }

    #[test]
    fn integral_floats_become_integers_and_nothing_else_changes() {
        let mut v = serde_json::json!({"a": 3.0, "b": [-2.0, 1.5, 1e300, 7], "c": "3.0", "d": -9223372036854775809.0});
        assert!(integral_floats_to_integers(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"a": 3, "b": [-2, 1.5, 1e300, 7], "c": "3.0", "d": -9223372036854775809.0})
        );
        let mut untouched = serde_json::json!({"a": 3, "b": [1.5]});
        assert!(!integral_floats_to_integers(&mut untouched));
    }
}
