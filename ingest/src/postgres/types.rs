//! PostgreSQL column types as Arrow columns, decoded from binary `COPY` fields.
//!
//! Binary is PostgreSQL's own wire form (big-endian integers, microseconds since 2000-01-01), so
//! no value goes through text; `numeric` is the exception that is kept as its exact decimal text,
//! since its precision is not known from the result's type alone.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use tokio_postgres::types::Type;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between the two epochs.
const PG_EPOCH_DAYS: i32 = 10_957;

/// How one column is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytea,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    Numeric,
    Jsonb,
}

impl Kind {
    pub(crate) fn of(ty: &Type) -> Option<Kind> {
        Some(match *ty {
            Type::BOOL => Kind::Bool,
            Type::INT2 => Kind::Int2,
            Type::INT4 => Kind::Int4,
            Type::INT8 => Kind::Int8,
            Type::OID => Kind::Int4,
            Type::FLOAT4 => Kind::Float4,
            Type::FLOAT8 => Kind::Float8,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON => Kind::Text,
            Type::BYTEA => Kind::Bytea,
            Type::DATE => Kind::Date,
            Type::TIMESTAMP => Kind::Timestamp,
            Type::TIMESTAMPTZ => Kind::Timestamptz,
            Type::UUID => Kind::Uuid,
            Type::NUMERIC => Kind::Numeric,
            Type::JSONB => Kind::Jsonb,
            _ => return None,
        })
    }

    pub(crate) fn field(self, name: &str) -> Field {
        let ty = match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Text | Kind::Uuid | Kind::Numeric | Kind::Jsonb => DataType::Utf8,
            Kind::Bytea => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        };
        Field::new(name, ty, true)
    }

    /// The column's value as a watermark (strictly ordered i64), for the kinds that can be one.
    pub(crate) fn watermark(self, raw: &[u8]) -> Option<i64> {
        match self {
            Kind::Int2 => Some(i16::from_be_bytes(raw.try_into().ok()?) as i64),
            Kind::Int4 => Some(i32::from_be_bytes(raw.try_into().ok()?) as i64),
            Kind::Int8 => Some(i64::from_be_bytes(raw.try_into().ok()?)),
            Kind::Date => Some((i32::from_be_bytes(raw.try_into().ok()?) + PG_EPOCH_DAYS) as i64),
            Kind::Timestamp | Kind::Timestamptz => {
                Some(i64::from_be_bytes(raw.try_into().ok()?).saturating_add(PG_EPOCH_MICROS))
            }
            _ => None,
        }
    }

    /// SQL for a watermark value of this kind (the inverse of [`Kind::watermark`]).
    pub(crate) fn literal(self, value: i64) -> Option<String> {
        let since = |base: &str| {
            // Whole seconds and the remainder as separate intervals keep every microsecond exact.
            let (s, us) = (value.div_euclid(1_000_000), value.rem_euclid(1_000_000));
            format!("({base} 'epoch' + {s} * INTERVAL '1 second' + {us} * INTERVAL '1 microsecond')")
        };
        match self {
            Kind::Int2 | Kind::Int4 | Kind::Int8 => Some(value.to_string()),
            Kind::Date => Some(format!("(DATE 'epoch' + {value})")),
            Kind::Timestamp => Some(since("TIMESTAMP")),
            Kind::Timestamptz => Some(since("TIMESTAMPTZ")),
            _ => None,
        }
    }
}

/// An Arrow builder per column kind.
#[derive(Debug)]
pub(crate) enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder, Kind),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

impl Builder {
    pub(crate) fn new(kind: Kind, capacity: usize) -> Builder {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            Kind::Int2 => Builder::I16(Int16Builder::with_capacity(capacity)),
            Kind::Int4 => Builder::I32(Int32Builder::with_capacity(capacity)),
            Kind::Int8 => Builder::I64(Int64Builder::with_capacity(capacity)),
            Kind::Float4 => Builder::F32(Float32Builder::with_capacity(capacity)),
            Kind::Float8 => Builder::F64(Float64Builder::with_capacity(capacity)),
            Kind::Text | Kind::Uuid | Kind::Numeric | Kind::Jsonb => {
                Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16), kind)
            }
            Kind::Bytea => Builder::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            Kind::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity)),
            Kind::Timestamptz => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
        }
    }

    /// Appends one field (`None` is SQL NULL). `Err` says why the bytes are not a value of the type.
    pub(crate) fn push(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        let Some(raw) = raw else {
            self.push_null();
            return Ok(());
        };
        fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
            raw.try_into().map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
        }
        match self {
            Builder::Bool(b) => b.append_value(fixed::<1>(raw)?[0] != 0),
            Builder::I16(b) => b.append_value(i16::from_be_bytes(fixed(raw)?)),
            Builder::I32(b) => b.append_value(i32::from_be_bytes(fixed(raw)?)),
            Builder::I64(b) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            Builder::F32(b) => b.append_value(f32::from_be_bytes(fixed(raw)?)),
            Builder::F64(b) => b.append_value(f64::from_be_bytes(fixed(raw)?)),
            Builder::Bytes(b) => b.append_value(raw),
            Builder::Date(b) => b.append_value(i32::from_be_bytes(fixed(raw)?).saturating_add(PG_EPOCH_DAYS)),
            Builder::Ts(b) => b.append_value(i64::from_be_bytes(fixed(raw)?).saturating_add(PG_EPOCH_MICROS)),
            Builder::Text(b, Kind::Uuid) => b.append_value(uuid(&fixed::<16>(raw)?)),
            Builder::Text(b, Kind::Numeric) => b.append_value(numeric(raw)?),
            Builder::Text(b, Kind::Jsonb) => match raw.split_first() {
                Some((1, text)) => b.append_value(std::str::from_utf8(text).map_err(|e| e.to_string())?),
                _ => return Err("unknown jsonb version".into()),
            },
            Builder::Text(b, _) => b.append_value(std::str::from_utf8(raw).map_err(|e| e.to_string())?),
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Text(b, _) => b.append_null(),
            Builder::Bytes(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Text(b, _) => Arc::new(b.finish()),
            Builder::Bytes(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Builder::Bool(b) => b.len(),
            Builder::I16(b) => b.len(),
            Builder::I32(b) => b.len(),
            Builder::I64(b) => b.len(),
            Builder::F32(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::Text(b, _) => b.len(),
            Builder::Bytes(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Ts(b) => b.len(),
        }
    }
}

fn uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `numeric`'s binary form (base-10000 digits with a weight and display scale) as exact text.
fn numeric(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<i16, String> {
        raw.get(i..i + 2).map(|b| i16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "truncated numeric".into())
    };
    let (ndigits, weight, sign, dscale) =
        (word(0)? as usize, word(2)? as i32, word(4)? as u16, word(6)? as usize);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Result<Vec<_>, _>>()?;
    let mut int = String::new();
    for w in 0..=weight.max(0) {
        let d = if weight >= 0 { digits.get(w as usize).copied().unwrap_or(0) } else { 0 };
        if int.is_empty() { int = d.to_string() } else { int.push_str(&format!("{d:04}")) }
    }
    let mut frac = String::new();
    let mut i = weight + 1;
    while frac.len() < dscale {
        let d = if i >= 0 { digits.get(i as usize).copied().unwrap_or(0) } else { 0 };
        frac.push_str(&format!("{d:04}"));
        i += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if dscale > 0 { format!("{sign}{int}.{frac}") } else { format!("{sign}{int}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [ndigits, weight, sign as i16, dscale].iter().chain(digits) {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_text_is_exact() {
        assert_eq!(numeric(&num(2, 0, 0, 2, &[123, 4500])).unwrap(), "123.45");
        assert_eq!(numeric(&num(3, 1, 0x4000, 0, &[1, 2, 0])).unwrap(), "-10002");
        assert_eq!(numeric(&num(1, -1, 0, 4, &[5])).unwrap(), "0.0005");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric(&num(2, 2, 0, 0, &[7, 1])).unwrap(), "700010000");
    }

    #[test]
    fn watermark_literals_round_trip_their_kind() {
        assert_eq!(Kind::Int8.literal(-5).unwrap(), "-5");
        let ts = Kind::Timestamptz.literal(1_700_000_000_123_456).unwrap();
        assert!(ts.contains("1700000000 * INTERVAL '1 second'") && ts.contains("123456 *"), "{ts}");
        assert_eq!(Kind::Text.literal(1), None);
        let raw = (1_700_000_000_000_000i64 - PG_EPOCH_MICROS).to_be_bytes();
        assert_eq!(Kind::Timestamp.watermark(&raw), Some(1_700_000_000_000_000));
    }
}
