//! The OpenAPI document: generated from the `#[utoipa::path]` of every handler registered with
//! `routes!` in [`super::routes`], then completed here with what every operation shares, so the
//! handlers' annotations list only what is theirs:
//!
//! - the `bearer` scheme, and on each operation that takes a token, 401 and 403;
//! - on each operation with a body, 400 (malformed, naming the field), 413 (over
//!   [`super::MAX_BODY`]) and 415 (not `application/json`); with path or query parameters, 400;
//! - on each operation that reads the state store, 500;
//! - links from a registration to the node's routes and from a submission to its runs, which
//!   the stateful phase of an API tester follows.
//!
//! The document is built once per process ([`json`]) and served at `/api/v1/openapi.json`; the
//! copy in `docs/openapi.json` is checked against it by `scheduler/tests/api.rs`.

use std::sync::{LazyLock, OnceLock};

use axum::http::StatusCode;
use regex::Regex;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, ResponseBuilder};

use super::error::ApiError;

/// The grammar of the API's `since=` windows: a positive whole number with one unit. Stricter
/// than the CLI's `--since` (which takes any humantime text) so the document can state it; the
/// same string is the schema's `pattern` and what [`since`] checks.
pub const SINCE_PATTERN: &str = r"^0*[1-9][0-9]{0,5}(ms|s|m|h|d)$";

/// The completed document, as JSON, built on first use.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_string_pretty(&super::openapi()).expect("JSON values serialize") + "\n"
    })
}

/// What the routes do not say themselves.
pub(super) fn base() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Switchyard control plane")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Jobs, runs, nodes, leases, tokens and the egress policy. Every error is \
                     `application/json` `{code, message, hint}`. Tokens are bearer tokens with a role \
                     (viewer, operator, node, admin); each operation's `security` names the roles that \
                     may call it, and admin may call everything.",
                ))
                .build(),
        )
        .build()
}

/// Adds what every operation shares (see the module comment).
pub(super) fn finish(mut doc: OpenApi) -> OpenApi {
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in operations(item) {
            shared_responses(path, op);
        }
    }
    link(
        &mut doc,
        "/api/v1/nodes",
        "201",
        &[("heartbeat", "heartbeat"), ("report", "report"), ("deregister", "deregister")],
        "$response.body#/node_id",
    );
    link(
        &mut doc,
        "/api/v1/jobs",
        "200",
        &[("run", "run"), ("cancel_run", "cancel_run")],
        "$response.body#/jobs/0/run",
    );
    doc
}

/// The document as JSON. utoipa 5.5 writes a link's fields in snake case (`operation_id`), which
/// OpenAPI tools do not read; they are renamed here to the spec's camel case.
pub(super) fn to_json(doc: &OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    let operations = value["paths"].as_object_mut().into_iter().flat_map(|paths| paths.values_mut());
    for op in operations.filter_map(|item| item.as_object_mut()).flat_map(|item| item.values_mut()) {
        let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else { continue };
        for links in responses.values_mut().filter_map(|r| r.get_mut("links")?.as_object_mut()) {
            for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(v) = link.remove(snake) {
                        link.insert(camel.to_owned(), v);
                    }
                }
            }
        }
    }
    value
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Routes that never answer 500: they do not read the state store, or (`/readyz`) answer 503 when
/// it fails.
const NO_500: &[&str] = &["/healthz", "/readyz", "/api/v1/openapi.json", "/", "/assets/{name}"];

fn shared_responses(path: &str, op: &mut Operation) {
    let mut add = |status: StatusCode, description: &str| {
        op.responses
            .responses
            .entry(status.as_str().to_owned())
            .or_insert_with(|| error_response(description));
    };
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        add(StatusCode::UNAUTHORIZED, "no token, or an unknown one (`unauthorized`)");
        add(StatusCode::FORBIDDEN, "the token's role may not do this (`forbidden`)");
    }
    let has_params = op.parameters.as_ref().is_some_and(|ps| {
        ps.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query))
    });
    if op.request_body.is_some() || has_params {
        add(StatusCode::BAD_REQUEST, "malformed request: the message names the field (`bad_request`)");
    }
    if op.request_body.is_some() {
        add(StatusCode::PAYLOAD_TOO_LARGE, "the body is over the limit (`payload_too_large`)");
        add(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body is not `application/json` (`unsupported_media_type`)",
        );
    }
    if !NO_500.contains(&path) {
        add(StatusCode::INTERNAL_SERVER_ERROR, "the state store failed (`internal`); retry");
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build(),
            )
            .build(),
    )
}

/// Links a response to operations taking its value as their `id` path parameter.
fn link(doc: &mut OpenApi, path: &str, status: &str, to: &[(&str, &str)], value: &str) {
    let Some(RefOr::T(response)) = doc
        .paths
        .paths
        .get_mut(path)
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.responses.responses.get_mut(status))
    else {
        panic!("no {status} response on POST {path} to link from");
    };
    for (name, operation_id) in to {
        let link = LinkBuilder::new().operation_id(*operation_id).parameter("id", value).build();
        response.links.insert((*name).to_owned(), RefOr::T(link));
    }
}

/// Checks an API `since=` against [`SINCE_PATTERN`], then reads it as a duration (ms).
pub(super) fn since(text: &str) -> Result<i64, ApiError> {
    static PATTERN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(SINCE_PATTERN).expect("SINCE_PATTERN compiles"));
    if !PATTERN.is_match(text) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid query parameter `since`: `{text}` is not a window like `7d`"),
            "give a positive whole number and one unit: ms, s, m, h or d (e.g. 7d, 24h, 90m)",
        ));
    }
    Ok(crate::views::cost::parse_since(text)?)
}

#[cfg(test)]
mod tests {
    use super::since;

    #[test]
    fn since_takes_what_the_pattern_states() {
        assert_eq!(since("7d").unwrap(), 7 * 86_400_000);
        assert_eq!(since("90m").unwrap(), 90 * 60_000);
        assert_eq!(since("000250ms").unwrap(), 250);
        for bad in ["0d", "7", "d", "1h 30m", "7d\n", " 7d", "1000000d", "-1d", "1.5h"] {
            assert_eq!(since(bad).unwrap_err().status, 400, "{bad:?}");
        }
    }
}
