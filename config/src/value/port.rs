use std::fmt;

use serde::de::{self, Visitor};

/// A TCP port, 1–65535 (0 means "any" to the OS and is never what a person meant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Port(pub u16);

struct PortVisitor;

impl Visitor<'_> for PortVisitor {
    type Value = Port;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port number (1–65535)")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
        match u16::try_from(v) {
            Ok(p) if p > 0 => Ok(Port(p)),
            _ => Err(E::custom(format!("port {v} is out of range\nports are 1–65535"))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
        self.visit_u64(u64::try_from(v).unwrap_or(0))
    }
}

impl<'de> de::Deserialize<'de> for Port {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u64(PortVisitor)
    }
}

impl schemars::JsonSchema for Port {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Port".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "integer", "minimum": 1, "maximum": 65535 })
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
