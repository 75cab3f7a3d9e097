//! Small value types that parse and check themselves: durations, byte sizes, cron schedules, `host:port`
//! endpoints, egress host patterns and table names.
//!
//! Each parses inside a serde `Visitor`, so a bad value is reported by the deserializer at its own
//! location (see `document::recover`). A parse error's text is `message\nhint`.

mod bytes;
mod duration;
mod endpoint;
mod host_pattern;
mod port;
mod schedule;
mod table;
mod url;

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Visitor};

pub use bytes::ByteSize;
pub use duration::Duration;
pub use endpoint::{Endpoint, Host};
pub use host_pattern::HostPattern;
pub use port::Port;
pub use schedule::Schedule;
pub use table::TableName;
pub use url::HttpUrl;

/// Why a value did not parse: what is wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub hint: String,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { message: message.into(), hint: hint.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.message, self.hint)
    }
}

impl std::error::Error for ParseError {}

/// Deserializes any `FromStr<Err = ParseError>` type from a string, inside the deserializer.
pub(crate) struct FromStrVisitor<T>(PhantomData<T>, &'static str);

impl<T> FromStrVisitor<T> {
    pub(crate) fn new(expecting: &'static str) -> Self {
        Self(PhantomData, expecting)
    }
}

impl<T: FromStr<Err = ParseError>> Visitor<'_> for FromStrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(|e: ParseError| E::custom(e))
    }
}

/// Implements `Deserialize` (via [`FromStrVisitor`]), `Serialize` (via `Display`) and a string
/// `JsonSchema` with a description, for a value type.
macro_rules! string_value {
    ($ty:ty, $expecting:literal, $schema_description:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::value::FromStrVisitor::new($expecting))
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $schema_description })
            }
        }
    };
}
pub(crate) use string_value;
