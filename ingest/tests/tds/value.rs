//! The fixture's column types and values: their TDS encoding, their description by
//! `sp_describe_first_result_set`, and the watermark predicate evaluated over them.

use std::cmp::Ordering;

use super::{Table, utf16};

/// A column type, as declared in SQL Server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    Decimal(u8, u8),
    Numeric(u8, u8),
    Money,
    Float,
    Real,
    Char(u16),
    VarChar(u16),
    NVarChar(u16),
    NVarCharMax,
    Date,
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    Guid,
    VarBinary(u16),
    /// Described only: the source must refuse it before asking for rows.
    Xml,
}

/// A value, in SQL Server's own terms. Days count from 1970-01-01.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Bit(bool),
    /// Unscaled, at the column's scale.
    Dec(i128),
    /// In 1/10000.
    Money(i64),
    F64(f64),
    F32(f32),
    Str(String),
    Bytes(Vec<u8>),
    /// In the usual text order (as SQL Server prints it).
    Guid([u8; 16]),
    Date(i64),
    /// `datetime`: 1/300 s ticks since midnight.
    DateTime {
        days: i64,
        ticks: i64,
    },
    SmallDateTime {
        days: i64,
        minutes: i64,
    },
    /// 100 ns units since midnight.
    DateTime2 {
        days: i64,
        hns: i64,
    },
    /// UTC date and time, and the offset of the local time in minutes.
    DateTimeOffset {
        days: i64,
        hns: i64,
        offset: i16,
    },
}

const HNS_PER_DAY: i64 = 864_000_000_000;

impl Val {
    /// `2024-01-15` as a `date`.
    pub(crate) fn date(text: &str) -> Val {
        Val::Date(civil(text).0)
    }

    /// `2024-01-15T10:20:30.997` as a `datetime`, rounded to its 1/300 s tick as SQL Server does.
    pub(crate) fn datetime(text: &str) -> Val {
        let (days, hns, _) = civil(text);
        Val::DateTime { days, ticks: (hns * 300 + 5_000_000) / 10_000_000 }
    }

    pub(crate) fn smalldatetime(text: &str) -> Val {
        let (days, hns, _) = civil(text);
        Val::SmallDateTime { days, minutes: (hns + 300_000_000) / 600_000_000 }
    }

    /// `2024-01-15T10:20:30.1234567` as a `datetime2(7)`.
    pub(crate) fn datetime2(text: &str) -> Val {
        let (days, hns, _) = civil(text);
        Val::DateTime2 { days, hns }
    }

    /// `2024-01-15T10:20:30.1234567+02:00` as a `datetimeoffset(7)`: kept in UTC, as TDS sends it.
    pub(crate) fn datetimeoffset(text: &str) -> Val {
        let (days, hns, offset) = civil(text);
        let utc = days * HNS_PER_DAY + hns - i64::from(offset) * 600_000_000;
        Val::DateTimeOffset { days: utc.div_euclid(HNS_PER_DAY), hns: utc.rem_euclid(HNS_PER_DAY), offset }
    }

    /// `6f9619ff-8b86-d011-b42d-00c04fc964ff`.
    pub(crate) fn guid(text: &str) -> Val {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
        }
        Val::Guid(bytes)
    }

    /// A point in time in units of 1/(3·10⁷) s, fine enough for 1/300 s ticks and 100 ns alike.
    fn instant(&self) -> Option<i128> {
        let day = |d: i64| i128::from(d) * 86_400 * 30_000_000;
        Some(match *self {
            Val::Date(d) => day(d),
            Val::DateTime { days, ticks } => day(days) + i128::from(ticks) * 100_000,
            Val::SmallDateTime { days, minutes } => day(days) + i128::from(minutes) * 60 * 30_000_000,
            Val::DateTime2 { days, hns } | Val::DateTimeOffset { days, hns, .. } => {
                day(days) + i128::from(hns) * 3
            }
            _ => return None,
        })
    }

    fn compare(&self, other: &Val) -> Ordering {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (a, b) => a.instant().expect("orderable").cmp(&b.instant().expect("orderable")),
        }
    }
}

/// `YYYY-MM-DD[THH:MM:SS[.fffffff]][±HH:MM]` → (days since 1970-01-01, 100 ns since midnight,
/// offset in minutes).
fn civil(text: &str) -> (i64, i64, i16) {
    let num = |s: &str| s.parse::<i64>().unwrap();
    let (date, rest) = text.split_once('T').unwrap_or((text, ""));
    let mut ymd = date.split('-').map(num);
    let (y, m, d) = (ymd.next().unwrap(), ymd.next().unwrap(), ymd.next().unwrap());
    let (time, offset) = match rest.find(['+', '-']) {
        Some(i) => {
            let sign = if &rest[i..=i] == "-" { -1 } else { 1 };
            let (h, m) = rest[i + 1..].split_once(':').unwrap();
            (&rest[..i], sign * (num(h) * 60 + num(m)) as i16)
        }
        None => (rest, 0),
    };
    let mut hns = 0;
    if !time.is_empty() {
        let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
        let mut parts = hms.split(':').map(num);
        let seconds = parts.next().unwrap() * 3600 + parts.next().unwrap() * 60 + parts.next().unwrap();
        let digits = format!("{fraction:0<7}");
        hns = seconds * 10_000_000 + num(&digits[..7]);
    }
    (days_from_civil(y, m, d), hns, offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years, from 0000-03-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// SQL_Latin1_General_CP1_CI_AS: LCID 0x0409 with its flags, sort id 52 (code page 1252).
const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

fn decimal_size(precision: u8) -> u8 {
    match precision {
        1..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// Bytes of a `time`/`datetime2`/`datetimeoffset` time part at `scale`.
fn time_size(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

impl Ty {
    /// TYPE_INFO in COLMETADATA.
    pub(crate) fn type_info(self, buf: &mut Vec<u8>) {
        let u16le = |buf: &mut Vec<u8>, v: u16| buf.extend(v.to_le_bytes());
        match self {
            Ty::TinyInt => buf.extend([0x26, 1]),
            Ty::SmallInt => buf.extend([0x26, 2]),
            Ty::Int => buf.extend([0x26, 4]),
            Ty::BigInt => buf.extend([0x26, 8]),
            Ty::Bit => buf.extend([0x68, 1]),
            Ty::Decimal(p, s) => buf.extend([0x6A, decimal_size(p), p, s]),
            Ty::Numeric(p, s) => buf.extend([0x6C, decimal_size(p), p, s]),
            Ty::Money => buf.extend([0x6E, 8]),
            Ty::Float => buf.extend([0x6D, 8]),
            Ty::Real => buf.extend([0x6D, 4]),
            Ty::Char(n) | Ty::VarChar(n) => {
                buf.push(if matches!(self, Ty::Char(_)) { 0xAF } else { 0xA7 });
                u16le(buf, n);
                buf.extend(COLLATION);
            }
            Ty::NVarChar(n) => {
                buf.push(0xE7);
                u16le(buf, n * 2);
                buf.extend(COLLATION);
            }
            Ty::NVarCharMax => {
                buf.push(0xE7);
                u16le(buf, 0xFFFF);
                buf.extend(COLLATION);
            }
            Ty::Date => buf.push(0x28),
            Ty::DateTime => buf.extend([0x6F, 8]),
            Ty::SmallDateTime => buf.extend([0x6F, 4]),
            Ty::DateTime2(s) => buf.extend([0x2A, s]),
            Ty::DateTimeOffset(s) => buf.extend([0x2B, s]),
            Ty::Guid => buf.extend([0x24, 16]),
            Ty::VarBinary(n) => {
                buf.push(0xA5);
                u16le(buf, n);
            }
            Ty::Xml => buf.extend([0xF1, 0]),
        }
    }

    /// One value in a ROW.
    pub(crate) fn value(self, buf: &mut Vec<u8>, v: &Val) {
        let date3 = |buf: &mut Vec<u8>, days: i64| buf.extend(&((days + 719_162) as u32).to_le_bytes()[..3]);
        let time = |buf: &mut Vec<u8>, scale: u8, hns: i64| {
            let increments = hns / 10_i64.pow(7 - u32::from(scale));
            buf.extend(&increments.to_le_bytes()[..time_size(scale)]);
        };
        match (self, v) {
            (Ty::Char(_) | Ty::VarChar(_) | Ty::NVarChar(_) | Ty::VarBinary(_), Val::Null) => {
                buf.extend(0xFFFFu16.to_le_bytes())
            }
            (Ty::NVarCharMax, Val::Null) => buf.extend(u64::MAX.to_le_bytes()),
            (_, Val::Null) => buf.push(0),
            (Ty::TinyInt, Val::Int(i)) => buf.extend([1, *i as u8]),
            (Ty::SmallInt, Val::Int(i)) => {
                buf.push(2);
                buf.extend((*i as i16).to_le_bytes());
            }
            (Ty::Int, Val::Int(i)) => {
                buf.push(4);
                buf.extend((*i as i32).to_le_bytes());
            }
            (Ty::BigInt, Val::Int(i)) => {
                buf.push(8);
                buf.extend(i.to_le_bytes());
            }
            (Ty::Bit, Val::Bit(b)) => buf.extend([1, u8::from(*b)]),
            (Ty::Decimal(p, _) | Ty::Numeric(p, _), Val::Dec(d)) => {
                let size = decimal_size(p);
                buf.push(size);
                buf.push(u8::from(*d >= 0));
                buf.extend(&d.unsigned_abs().to_le_bytes()[..usize::from(size) - 1]);
            }
            (Ty::Money, Val::Money(m)) => {
                buf.push(8);
                buf.extend(((*m >> 32) as i32).to_le_bytes());
                buf.extend((*m as u32).to_le_bytes());
            }
            (Ty::Float, Val::F64(f)) => {
                buf.push(8);
                buf.extend(f.to_le_bytes());
            }
            (Ty::Real, Val::F32(f)) => {
                buf.push(4);
                buf.extend(f.to_le_bytes());
            }
            (Ty::Char(_) | Ty::VarChar(_), Val::Str(s)) => {
                let mut bytes = cp1252(s);
                if let Ty::Char(n) = self {
                    bytes.resize(usize::from(n), b' ');
                }
                buf.extend((bytes.len() as u16).to_le_bytes());
                buf.extend(bytes);
            }
            (Ty::NVarChar(_), Val::Str(s)) => {
                buf.extend((s.encode_utf16().count() as u16 * 2).to_le_bytes());
                utf16(buf, s);
            }
            (Ty::NVarCharMax, Val::Str(s)) => {
                // PLP: total length, chunks, a zero-length terminator.
                let mut bytes = Vec::new();
                utf16(&mut bytes, s);
                buf.extend((bytes.len() as u64).to_le_bytes());
                for chunk in bytes.chunks(3000) {
                    buf.extend((chunk.len() as u32).to_le_bytes());
                    buf.extend(chunk);
                }
                buf.extend(0u32.to_le_bytes());
            }
            (Ty::VarBinary(_), Val::Bytes(b)) => {
                buf.extend((b.len() as u16).to_le_bytes());
                buf.extend(b);
            }
            (Ty::Guid, Val::Guid(g)) => {
                // The first three groups little-endian, as Windows stores a GUID.
                buf.push(16);
                buf.extend([g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6]]);
                buf.extend(&g[8..]);
            }
            (Ty::Date, Val::Date(d)) => {
                buf.push(3);
                date3(buf, *d);
            }
            (Ty::DateTime, Val::DateTime { days, ticks }) => {
                buf.push(8);
                buf.extend(((days + 25_567) as i32).to_le_bytes());
                buf.extend((*ticks as u32).to_le_bytes());
            }
            (Ty::SmallDateTime, Val::SmallDateTime { days, minutes }) => {
                buf.push(4);
                buf.extend(((days + 25_567) as u16).to_le_bytes());
                buf.extend((*minutes as u16).to_le_bytes());
            }
            (Ty::DateTime2(s), Val::DateTime2 { days, hns }) => {
                buf.push((time_size(s) + 3) as u8);
                time(buf, s, *hns);
                date3(buf, *days);
            }
            (Ty::DateTimeOffset(s), Val::DateTimeOffset { days, hns, offset }) => {
                buf.push((time_size(s) + 5) as u8);
                time(buf, s, *hns);
                date3(buf, *days);
                buf.extend(offset.to_le_bytes());
            }
            (ty, v) => panic!("the fixture cannot send {v:?} as {ty:?}"),
        }
    }

    /// `(system_type_name, max_length, precision, scale)` as `sp_describe_first_result_set` gives them.
    fn described(self) -> (String, i64, i64, i64) {
        match self {
            Ty::TinyInt => ("tinyint".into(), 1, 3, 0),
            Ty::SmallInt => ("smallint".into(), 2, 5, 0),
            Ty::Int => ("int".into(), 4, 10, 0),
            Ty::BigInt => ("bigint".into(), 8, 19, 0),
            Ty::Bit => ("bit".into(), 1, 1, 0),
            Ty::Decimal(p, s) => {
                (format!("decimal({p},{s})"), i64::from(decimal_size(p)), p.into(), s.into())
            }
            Ty::Numeric(p, s) => {
                (format!("numeric({p},{s})"), i64::from(decimal_size(p)), p.into(), s.into())
            }
            Ty::Money => ("money".into(), 8, 19, 4),
            Ty::Float => ("float".into(), 8, 53, 0),
            Ty::Real => ("real".into(), 4, 24, 0),
            Ty::Char(n) => (format!("char({n})"), n.into(), 0, 0),
            Ty::VarChar(n) => (format!("varchar({n})"), n.into(), 0, 0),
            Ty::NVarChar(n) => (format!("nvarchar({n})"), i64::from(n) * 2, 0, 0),
            Ty::NVarCharMax => ("nvarchar(max)".into(), -1, 0, 0),
            Ty::Date => ("date".into(), 3, 10, 0),
            Ty::DateTime => ("datetime".into(), 8, 23, 3),
            Ty::SmallDateTime => ("smalldatetime".into(), 4, 16, 0),
            Ty::DateTime2(s) => (format!("datetime2({s})"), 8, 27, s.into()),
            Ty::DateTimeOffset(s) => (format!("datetimeoffset({s})"), 10, 34, s.into()),
            Ty::Guid => ("uniqueidentifier".into(), 16, 0, 0),
            Ty::VarBinary(n) => (format!("varbinary({n})"), n.into(), 0, 0),
            Ty::Xml => ("xml".into(), -1, 0, 0),
        }
    }
}

fn cp1252(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).ok().filter(|b| !(0x80..0xA0).contains(b)).expect("Latin-1 text"))
        .collect()
}

/// The result of `sp_describe_first_result_set` for `columns` (the columns the source reads, in
/// SQL Server's order and types; the many others SQL Server adds are left out).
pub(crate) fn describe(columns: &[(String, Ty)]) -> Table {
    let spec = [
        ("is_hidden", Ty::Bit),
        ("column_ordinal", Ty::Int),
        ("name", Ty::NVarChar(128)),
        ("is_nullable", Ty::Bit),
        ("system_type_id", Ty::Int),
        ("system_type_name", Ty::NVarChar(256)),
        ("max_length", Ty::SmallInt),
        ("precision", Ty::TinyInt),
        ("scale", Ty::TinyInt),
    ];
    let rows = columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            let (type_name, max_length, precision, scale) = ty.described();
            vec![
                Val::Bit(false),
                Val::Int(i as i64 + 1),
                Val::Str(name.clone()),
                Val::Bit(true),
                Val::Int(0),
                Val::Str(type_name),
                Val::Int(max_length),
                Val::Int(precision),
                Val::Int(scale),
            ]
        })
        .collect();
    Table { columns: spec.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(), rows }
}

/// A data query as the source writes it: the manifest's query, possibly wrapped for a watermark.
#[derive(Debug)]
pub(crate) struct Load {
    pub(crate) query: String,
    /// Column, and the `(operator, literal)` the rows must be past.
    watermark: Option<(String, Option<(String, String)>)>,
}

impl Load {
    pub(crate) fn parse(sql: &str) -> Load {
        let Some((query, tail)) =
            sql.strip_prefix("SELECT * FROM (").and_then(|rest| rest.split_once("\n) AS sy_src WHERE "))
        else {
            return Load { query: sql.to_owned(), watermark: None };
        };
        let (condition, _order) = tail.rsplit_once(" ORDER BY ").expect("ORDER BY");
        let (column, rest) = condition.split_once(" IS NOT NULL").expect("IS NOT NULL");
        let column = column.trim_start_matches('[').trim_end_matches(']').replace("]]", "]");
        let past = rest.strip_prefix(" AND ").map(|p| {
            let p = p.split_once("] ").expect("column").1;
            let (op, literal) = p.split_once(' ').expect("operator");
            (op.to_owned(), literal.to_owned())
        });
        Load { query: query.to_owned(), watermark: Some((column, past)) }
    }

    /// The rows the query selects, in its order.
    pub(crate) fn select(&self, table: &Table) -> Vec<Vec<Val>> {
        let Some((column, past)) = &self.watermark else { return table.rows.clone() };
        let i =
            table.columns.iter().position(|(n, _)| n.eq_ignore_ascii_case(column)).expect("watermark column");
        let bound = past.as_ref().map(|(op, literal)| (op.clone(), literal_value(literal)));
        let mut rows: Vec<Vec<Val>> = table
            .rows
            .iter()
            .filter(|r| r[i] != Val::Null)
            .filter(|r| match &bound {
                None => true,
                Some((op, b)) => match op.as_str() {
                    ">" => r[i].compare(b) == Ordering::Greater,
                    ">=" => r[i].compare(b) != Ordering::Less,
                    other => panic!("operator {other}"),
                },
            })
            .cloned()
            .collect();
        rows.sort_by(|a, b| a[i].compare(&b[i]));
        rows
    }
}

/// `42` or `CAST('…' AS type)`, as SQL Server converts it.
fn literal_value(literal: &str) -> Val {
    let Some(cast) = literal.strip_prefix("CAST('") else {
        return Val::Int(literal.parse().expect("integer"));
    };
    let (text, ty) = cast.split_once("' AS ").expect("CAST");
    match ty.trim_end_matches(')').split('(').next().unwrap() {
        "date" => Val::date(text),
        "datetime" => Val::datetime(text),
        "smalldatetime" => Val::smalldatetime(text),
        "datetime2" => Val::datetime2(text),
        "datetimeoffset" => Val::datetimeoffset(text),
        other => panic!("the fixture cannot CAST to {other}"),
    }
}
