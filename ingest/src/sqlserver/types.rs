//! SQL Server column types as Arrow columns.
//!
//! The kind of each column comes from `sp_describe_first_result_set` (see [`super::describe`]):
//! the row stream alone does not carry a decimal's precision, and tiberius cannot even read the
//! metadata of `sql_variant` or CLR types, so the decision is made before any row is read.
//!
//! Values are decoded by tiberius ([`ColumnData`]) and land here as [`Cell`]s, one conversion per
//! SQL Server representation, so the table's values and the watermark are computed the same way.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use tiberius::ColumnData;

/// Days from 0001-01-01 (`date`, `datetime2`) to 1970-01-01.
const DAYS_0001_TO_UNIX: i64 = 719_162;
/// Days from 1900-01-01 (`datetime`, `smalldatetime`) to 1970-01-01.
const DAYS_1900_TO_UNIX: i64 = 25_567;
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `money` arrives from tiberius as an `f64`; beyond ±2^53 / 10^4 its cents are no longer exact.
const MONEY_EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// How one column is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// `money` (precision 19) and `smallmoney` (10), both with four decimals.
    Money {
        precision: u8,
    },
    Float,
    Real,
    /// `char`, `varchar`, `nchar`, `nvarchar`, `text`, `ntext`.
    Text,
    Guid,
    /// `binary`, `varbinary`, `image`, `rowversion`.
    Binary,
    Date,
    SmallDateTime,
    DateTime,
    DateTime2,
    DateTimeOffset,
}

impl Kind {
    /// The kind of a column SQL Server describes as `type_name` (`decimal(18,4)`, `nvarchar(max)`…),
    /// or `None` when it is not loaded as is.
    pub(crate) fn parse(type_name: &str, precision: u8, scale: u8) -> Option<Kind> {
        Some(match base_type(type_name).as_str() {
            "tinyint" => Kind::TinyInt,
            "smallint" => Kind::SmallInt,
            "int" => Kind::Int,
            "bigint" => Kind::BigInt,
            "bit" => Kind::Bit,
            "decimal" | "numeric" if (1..=38).contains(&precision) && scale <= precision => {
                Kind::Decimal { precision, scale }
            }
            "money" => Kind::Money { precision: 19 },
            "smallmoney" => Kind::Money { precision: 10 },
            "float" => Kind::Float,
            "real" => Kind::Real,
            "char" | "varchar" | "nchar" | "nvarchar" | "text" | "ntext" | "sysname" => Kind::Text,
            "uniqueidentifier" => Kind::Guid,
            "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => Kind::Binary,
            "date" => Kind::Date,
            "smalldatetime" => Kind::SmallDateTime,
            "datetime" => Kind::DateTime,
            "datetime2" => Kind::DateTime2,
            "datetimeoffset" => Kind::DateTimeOffset,
            _ => return None,
        })
    }

    pub(crate) fn data_type(self) -> DataType {
        match self {
            // Delta has no unsigned types: tinyint (0–255) needs 16 bits.
            Kind::TinyInt | Kind::SmallInt => DataType::Int16,
            Kind::Int => DataType::Int32,
            Kind::BigInt => DataType::Int64,
            Kind::Bit => DataType::Boolean,
            Kind::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
            Kind::Money { precision } => DataType::Decimal128(precision, 4),
            Kind::Float => DataType::Float64,
            Kind::Real => DataType::Float32,
            Kind::Text | Kind::Guid => DataType::Utf8,
            Kind::Binary => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::SmallDateTime | Kind::DateTime | Kind::DateTime2 => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            Kind::DateTimeOffset => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// `decimal(18,4)` → `decimal`.
pub(crate) fn base_type(type_name: &str) -> String {
    type_name.split('(').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// What to write in the query instead of a column of an unsupported type.
pub(crate) fn suggested_cast(type_name: &str, column: &str) -> String {
    let target = match base_type(type_name).as_str() {
        "time" => "varchar(16)",
        "sql_variant" | "xml" | "hierarchyid" | "geography" | "geometry" => "nvarchar(max)",
        _ => "nvarchar(max) or varbinary(max)",
    };
    format!(
        "CAST({} AS {target}) AS {}",
        super::ident::quote_ident(column),
        super::ident::quote_ident(column)
    )
}

/// One decoded value, in the unit its Arrow column stores.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    F32(f32),
    F64(f64),
    /// Unscaled, at the column's scale.
    Decimal(i128),
    Text(Cow<'static, str>),
    Bytes(Cow<'static, [u8]>),
    /// Days since 1970-01-01.
    Days(i32),
    /// Microseconds since 1970-01-01 (UTC for `datetimeoffset`, wall clock otherwise).
    Micros(i64),
}

impl Cell {
    /// The value as a watermark: integers as they are, times in microseconds since the epoch.
    pub(crate) fn watermark(&self) -> Option<i64> {
        match *self {
            Cell::Int(v) | Cell::Micros(v) => Some(v),
            Cell::Days(d) => Some(i64::from(d) * MICROS_PER_DAY),
            _ => None,
        }
    }

    /// Approximate Arrow bytes, for the flush limit.
    fn bytes(&self) -> u64 {
        match self {
            Cell::Null => 1,
            Cell::Bool(_) => 1,
            Cell::F32(_) | Cell::Days(_) => 4,
            Cell::Int(_) | Cell::F64(_) | Cell::Micros(_) => 8,
            Cell::Decimal(_) => 16,
            Cell::Text(s) => s.len() as u64 + 4,
            Cell::Bytes(b) => b.len() as u64 + 4,
        }
    }
}

/// Converts a value tiberius decoded for a column of `kind`. The error says what arrived.
pub(crate) fn cell(kind: Kind, data: ColumnData<'static>) -> Result<Cell, String> {
    use ColumnData as D;
    let cell = match (kind, data) {
        (_, D::U8(None) | D::I16(None) | D::I32(None) | D::I64(None) | D::F32(None) | D::F64(None)) => {
            Cell::Null
        }
        (_, D::Bit(None) | D::String(None) | D::Guid(None) | D::Binary(None) | D::Numeric(None)) => {
            Cell::Null
        }
        (_, D::DateTime(None) | D::SmallDateTime(None) | D::Date(None) | D::DateTime2(None)) => Cell::Null,
        (_, D::DateTimeOffset(None) | D::Time(None) | D::Xml(None)) => Cell::Null,
        (Kind::TinyInt | Kind::SmallInt | Kind::Int | Kind::BigInt, d) => Cell::Int(match d {
            D::U8(Some(v)) => i64::from(v),
            D::I16(Some(v)) => i64::from(v),
            D::I32(Some(v)) => i64::from(v),
            D::I64(Some(v)) => v,
            other => return Err(unexpected(kind, &other)),
        }),
        (Kind::Bit, D::Bit(Some(v))) => Cell::Bool(v),
        (Kind::Decimal { scale, .. }, D::Numeric(Some(n))) => Cell::Decimal(
            rescale(n.value(), n.scale(), scale)
                .ok_or_else(|| format!("decimal {n} does not fit the column's scale {scale}"))?,
        ),
        (Kind::Money { .. }, D::F64(Some(v))) => {
            let unscaled = (v * 10_000.0).round();
            if !unscaled.is_finite() || unscaled.abs() >= MONEY_EXACT_LIMIT {
                return Err(format!(
                    "money value {v} is too large to load exactly (the driver reads money as a float)"
                ));
            }
            Cell::Decimal(unscaled as i128)
        }
        (Kind::Float, D::F64(Some(v))) => Cell::F64(v),
        (Kind::Float, D::F32(Some(v))) => Cell::F64(f64::from(v)),
        (Kind::Real, D::F32(Some(v))) => Cell::F32(v),
        (Kind::Text, D::String(Some(s))) => Cell::Text(s),
        (Kind::Guid, D::Guid(Some(g))) => Cell::Text(Cow::Owned(g.hyphenated().to_string())),
        (Kind::Binary, D::Binary(Some(b))) => Cell::Bytes(b),
        (Kind::Date, D::Date(Some(d))) => Cell::Days((i64::from(d.days()) - DAYS_0001_TO_UNIX) as i32),
        (Kind::SmallDateTime | Kind::DateTime, D::SmallDateTime(Some(dt))) => Cell::Micros(
            (i64::from(dt.days()) - DAYS_1900_TO_UNIX) * MICROS_PER_DAY
                + i64::from(dt.seconds_fragments()) * 60_000_000,
        ),
        (Kind::SmallDateTime | Kind::DateTime, D::DateTime(Some(dt))) => Cell::Micros(
            (i64::from(dt.days()) - DAYS_1900_TO_UNIX) * MICROS_PER_DAY
                + datetime_fraction_micros(dt.seconds_fragments()),
        ),
        (Kind::DateTime2, D::DateTime2(Some(dt))) => Cell::Micros(datetime2_micros(dt)),
        // TDS sends the UTC date and time, and the offset only to restore local time.
        (Kind::DateTimeOffset, D::DateTimeOffset(Some(dto))) => {
            Cell::Micros(datetime2_micros(dto.datetime2()))
        }
        (_, other) => return Err(unexpected(kind, &other)),
    };
    Ok(cell)
}

/// `datetime` stores 1/300 s ticks; rounded to the nearest microsecond (SQL Server rounds the same
/// way when it converts to `datetime2(6)`).
pub(crate) fn datetime_fraction_micros(ticks: u32) -> i64 {
    (i64::from(ticks) * 10_000 + 1) / 3
}

fn datetime2_micros(dt: tiberius::time::DateTime2) -> i64 {
    let time = dt.time();
    let increments = time.increments() as i64;
    let micros = match time.scale() {
        s @ 0..=6 => increments * 10_i64.pow(6 - u32::from(s)),
        // Scale 7 counts 100 ns: truncated to the microsecond (Arrow and Delta store microseconds).
        s => increments / 10_i64.pow(u32::from(s) - 6),
    };
    (i64::from(dt.date().days()) - DAYS_0001_TO_UNIX) * MICROS_PER_DAY + micros
}

/// `value` at `from` decimals as a value at `to` decimals, if exact.
fn rescale(value: i128, from: u8, to: u8) -> Option<i128> {
    match from.cmp(&to) {
        std::cmp::Ordering::Equal => Some(value),
        std::cmp::Ordering::Less => value.checked_mul(10_i128.checked_pow(u32::from(to - from))?),
        std::cmp::Ordering::Greater => {
            let div = 10_i128.checked_pow(u32::from(from - to))?;
            (value % div == 0).then_some(value / div)
        }
    }
}

fn unexpected(kind: Kind, data: &ColumnData<'static>) -> String {
    let got = match data {
        ColumnData::U8(_) => "tinyint",
        ColumnData::I16(_) => "smallint",
        ColumnData::I32(_) => "int",
        ColumnData::I64(_) => "bigint",
        ColumnData::F32(_) => "real",
        ColumnData::F64(_) => "float",
        ColumnData::Bit(_) => "bit",
        ColumnData::String(_) => "a string",
        ColumnData::Guid(_) => "uniqueidentifier",
        ColumnData::Binary(_) => "binary",
        ColumnData::Numeric(_) => "decimal",
        ColumnData::Xml(_) => "xml",
        ColumnData::DateTime(_) => "datetime",
        ColumnData::SmallDateTime(_) => "smalldatetime",
        ColumnData::Time(_) => "time",
        ColumnData::Date(_) => "date",
        ColumnData::DateTime2(_) => "datetime2",
        ColumnData::DateTimeOffset(_) => "datetimeoffset",
    };
    format!("described as {kind:?} but the server sent {got} values")
}

/// Arrow builders for one batch of rows.
pub(crate) struct Batch {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    builders: Vec<Builder>,
    rows: usize,
    bytes: u64,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("kinds", &self.kinds).field("rows", &self.rows).finish()
    }
}

enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Micros(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        let ty = kind.data_type();
        match kind {
            Kind::Bit => Builder::Bool(BooleanBuilder::new()),
            Kind::TinyInt | Kind::SmallInt => Builder::I16(Int16Builder::new()),
            Kind::Int => Builder::I32(Int32Builder::new()),
            Kind::BigInt => Builder::I64(Int64Builder::new()),
            Kind::Real => Builder::F32(Float32Builder::new()),
            Kind::Float => Builder::F64(Float64Builder::new()),
            Kind::Decimal { .. } | Kind::Money { .. } => {
                Builder::Decimal(Decimal128Builder::new().with_data_type(ty))
            }
            Kind::Text | Kind::Guid => Builder::Text(StringBuilder::new()),
            Kind::Binary => Builder::Bytes(BinaryBuilder::new()),
            Kind::Date => Builder::Date(Date32Builder::new()),
            Kind::SmallDateTime | Kind::DateTime | Kind::DateTime2 | Kind::DateTimeOffset => {
                Builder::Micros(TimestampMicrosecondBuilder::new().with_data_type(ty))
            }
        }
    }

    /// Appends `cell`, which [`cell`] made for this builder's kind.
    fn append(&mut self, cell: Cell) {
        match (self, cell) {
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::I16(b), Cell::Int(v)) => b.append_value(v as i16),
            (Builder::I32(b), Cell::Int(v)) => b.append_value(v as i32),
            (Builder::I64(b), Cell::Int(v)) => b.append_value(v),
            (Builder::F32(b), Cell::F32(v)) => b.append_value(v),
            (Builder::F64(b), Cell::F64(v)) => b.append_value(v),
            (Builder::Decimal(b), Cell::Decimal(v)) => b.append_value(v),
            (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
            (Builder::Bytes(b), Cell::Bytes(v)) => b.append_value(v),
            (Builder::Date(b), Cell::Days(v)) => b.append_value(v),
            (Builder::Micros(b), Cell::Micros(v)) => b.append_value(v),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Bytes(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Micros(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bytes(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Micros(b) => Arc::new(b.finish()),
        }
    }
}

impl Batch {
    /// Builders for columns `(name, kind)`; every column nullable, as a later row may be null.
    pub(crate) fn new(columns: &[(String, Kind)]) -> Batch {
        let schema = Arc::new(Schema::new(
            columns.iter().map(|(name, kind)| Field::new(name, kind.data_type(), true)).collect::<Vec<_>>(),
        ));
        Batch {
            schema,
            kinds: columns.iter().map(|(_, k)| *k).collect(),
            builders: columns.iter().map(|(_, k)| Builder::new(*k)).collect(),
            rows: 0,
            bytes: 0,
        }
    }

    pub(crate) fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// Appends one row of cells (one per column, as [`cell`] made them); returns its bytes.
    pub(crate) fn push(&mut self, cells: Vec<Cell>) -> u64 {
        let mut bytes = 0;
        for (builder, cell) in self.builders.iter_mut().zip(cells) {
            bytes += cell.bytes();
            builder.append(cell);
        }
        self.rows += 1;
        self.bytes += bytes;
        bytes
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The rows so far as one record batch (none when empty); the builders start over.
    pub(crate) fn finish(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        self.rows = 0;
        self.bytes = 0;
        let arrays = self.builders.iter_mut().map(Builder::finish).collect();
        Some(RecordBatch::try_new(self.schema.clone(), arrays).expect("builders follow the schema"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::numeric::Numeric;
    use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, Time};

    #[test]
    fn parses_described_types() {
        assert_eq!(Kind::parse("decimal(18,4)", 18, 4), Some(Kind::Decimal { precision: 18, scale: 4 }));
        assert_eq!(Kind::parse("NVARCHAR(MAX)", 0, 0), Some(Kind::Text));
        assert_eq!(Kind::parse("datetime2(7)", 27, 7), Some(Kind::DateTime2));
        assert_eq!(Kind::parse("xml", 0, 0), None);
        assert_eq!(Kind::parse("sql_variant", 0, 0), None);
        assert_eq!(Kind::parse("time(7)", 16, 7), None);
    }

    #[test]
    fn converts_times_to_the_unix_epoch() {
        // 1970-01-02 in each representation.
        let date = Date::new(719_163);
        assert_eq!(cell(Kind::Date, ColumnData::Date(Some(date))), Ok(Cell::Days(1)));
        let dt = DateTime::new(25_568, 300);
        assert_eq!(
            cell(Kind::DateTime, ColumnData::DateTime(Some(dt))),
            Ok(Cell::Micros(MICROS_PER_DAY + 1_000_000))
        );
        // 2 ticks = 6.666… ms → 6667 µs.
        let dt = DateTime::new(25_567, 2);
        assert_eq!(cell(Kind::DateTime, ColumnData::DateTime(Some(dt))), Ok(Cell::Micros(6_667)));
        let dt2 = DateTime2::new(date, Time::new(12_345_678, 7));
        assert_eq!(
            cell(Kind::DateTime2, ColumnData::DateTime2(Some(dt2))),
            Ok(Cell::Micros(MICROS_PER_DAY + 1_234_567))
        );
        // The offset does not move the instant: TDS sends it in UTC.
        let dto = DateTimeOffset::new(dt2, 120);
        assert_eq!(
            cell(Kind::DateTimeOffset, ColumnData::DateTimeOffset(Some(dto))),
            Ok(Cell::Micros(MICROS_PER_DAY + 1_234_567))
        );
    }

    #[test]
    fn keeps_decimals_exact_and_refuses_inexact_money() {
        let kind = Kind::Decimal { precision: 10, scale: 2 };
        assert_eq!(
            cell(kind, ColumnData::Numeric(Some(Numeric::new_with_scale(-12_345, 2)))),
            Ok(Cell::Decimal(-12_345))
        );
        assert_eq!(
            cell(kind, ColumnData::Numeric(Some(Numeric::new_with_scale(5, 0)))),
            Ok(Cell::Decimal(500))
        );
        let money = Kind::Money { precision: 19 };
        assert_eq!(cell(money, ColumnData::F64(Some(12.3456))), Ok(Cell::Decimal(123_456)));
        assert!(cell(money, ColumnData::F64(Some(9.0e14))).is_err());
        assert!(cell(Kind::Int, ColumnData::String(Some("x".into()))).is_err());
        assert_eq!(cell(Kind::Int, ColumnData::String(None)), Ok(Cell::Null));
    }
}
