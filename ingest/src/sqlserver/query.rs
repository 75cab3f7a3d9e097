//! The SQL text this source sends: the manifest's query, wrapped for incremental loads.
//!
//! An incremental load reads `SELECT * FROM (<query>) AS sy_src WHERE [wm] IS NOT NULL AND
//! <past the last watermark> ORDER BY [wm]`. The watermark is kept as an `i64` (integers as they
//! are, times as microseconds since the Unix epoch), and the predicate is written so that "past"
//! means exactly "a different, later watermark" in the column's own type:
//!
//! - integers, `date`, `smalldatetime`: `> literal`, exact in the column's type;
//! - `datetime` (1/300 s ticks): `> CAST('…ms' AS datetime)`, which SQL Server rounds back to the
//!   very tick the watermark came from;
//! - `datetime2`, `datetimeoffset` (down to 100 ns, loaded as µs): `>= literal + 1 µs` as
//!   `datetime2(7)` / `datetimeoffset(7)`. Rows within one microsecond share a watermark and are
//!   never split across commits, so a resume neither repeats nor skips any of them.
//!
//! Rows whose watermark is NULL are never loaded: they have no place in the order.

use arrow::temporal_conversions::timestamp_us_to_datetime;

use super::ident::{quote_ident, quote_text};
use super::types::{Kind, MICROS_PER_DAY};

/// The manifest's query without the trailing `;` a person may add, which would break the wrapper.
pub(crate) fn base(query: &str) -> &str {
    let mut q = query.trim();
    while let Some(rest) = q.strip_suffix(';') {
        q = rest.trim_end();
    }
    q
}

/// The column types of `query`'s result, without running it.
pub(crate) fn describe(query: &str) -> String {
    format!("EXEC sp_describe_first_result_set @tsql = {}", quote_text(base(query)))
}

/// The watermark column's kinds of order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watermark {
    Integer,
    Date,
    SmallDateTime,
    DateTime,
    DateTime2,
    DateTimeOffset,
}

impl Watermark {
    pub(crate) fn of(kind: Kind) -> Option<Watermark> {
        Some(match kind {
            Kind::TinyInt | Kind::SmallInt | Kind::Int | Kind::BigInt => Watermark::Integer,
            Kind::Date => Watermark::Date,
            Kind::SmallDateTime => Watermark::SmallDateTime,
            Kind::DateTime => Watermark::DateTime,
            Kind::DateTime2 => Watermark::DateTime2,
            Kind::DateTimeOffset => Watermark::DateTimeOffset,
            _ => return None,
        })
    }

    /// The condition "`column` is past `last`".
    fn past(self, column: &str, last: i64) -> String {
        match self {
            Watermark::Integer => format!("{column} > {last}"),
            Watermark::Date => format!("{column} > CAST('{}' AS date)", stamp(last, "%Y-%m-%d")),
            Watermark::SmallDateTime => {
                format!("{column} > CAST('{}' AS smalldatetime)", stamp(last, "%Y-%m-%dT%H:%M:%S"))
            }
            Watermark::DateTime => format!("{column} > CAST('{}' AS datetime)", datetime_literal(last)),
            Watermark::DateTime2 => format!(
                "{column} >= CAST('{}' AS datetime2(7))",
                stamp(last.saturating_add(1), "%Y-%m-%dT%H:%M:%S%.6f")
            ),
            Watermark::DateTimeOffset => format!(
                "{column} >= CAST('{}+00:00' AS datetimeoffset(7))",
                stamp(last.saturating_add(1), "%Y-%m-%dT%H:%M:%S%.6f")
            ),
        }
    }
}

/// What is read: everything, or for an incremental load the rows past `last` in watermark order.
pub(crate) fn load(query: &str, watermark: Option<(&str, Watermark, Option<i64>)>) -> String {
    let query = base(query);
    let Some((column, kind, last)) = watermark else { return query.to_owned() };
    let column = quote_ident(column);
    let past = last.map(|last| format!(" AND {}", kind.past(&column, last))).unwrap_or_default();
    format!("SELECT * FROM ({query}\n) AS sy_src WHERE {column} IS NOT NULL{past} ORDER BY {column}")
}

fn stamp(micros: i64, format: &str) -> String {
    // Out of chrono's range only for values no SQL Server column holds.
    timestamp_us_to_datetime(micros).map(|t| t.format(format).to_string()).unwrap_or_default()
}

/// A `datetime` watermark as text that SQL Server converts back to the same 1/300 s tick: the tick
/// is recovered from the microseconds (they are within half a microsecond of it) and written in
/// milliseconds, which SQL Server rounds to the nearest tick.
fn datetime_literal(micros: i64) -> String {
    let day = micros.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY;
    let ticks = ((micros - day) * 300 + 500_000) / 1_000_000;
    let millis = (ticks * 10 + 1) / 3;
    let seconds = stamp(day + (millis / 1000) * 1_000_000, "%Y-%m-%dT%H:%M:%S");
    format!("{seconds}.{:03}", millis % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlserver::types::datetime_fraction_micros;

    #[test]
    fn wraps_the_query_for_incremental_loads() {
        assert_eq!(load("SELECT * FROM t ; ", None), "SELECT * FROM t");
        assert_eq!(
            load("SELECT * FROM t;", Some(("id]x", Watermark::Integer, None))),
            "SELECT * FROM (SELECT * FROM t\n) AS sy_src WHERE [id]]x] IS NOT NULL ORDER BY [id]]x]"
        );
        assert_eq!(
            load("SELECT * FROM t", Some(("id", Watermark::Integer, Some(-5)))),
            "SELECT * FROM (SELECT * FROM t\n) AS sy_src WHERE [id] IS NOT NULL AND [id] > -5 ORDER BY [id]"
        );
        assert_eq!(
            describe("SELECT 'a' AS x;"),
            "EXEC sp_describe_first_result_set @tsql = N'SELECT ''a'' AS x'"
        );
    }

    #[test]
    fn time_literals_name_the_next_value_in_the_columns_type() {
        // 2024-03-10T06:30:00.123456Z
        let t = 1_710_052_200_123_456;
        assert_eq!(Watermark::Date.past("[d]", 19_792 * MICROS_PER_DAY), "[d] > CAST('2024-03-10' AS date)");
        assert_eq!(
            Watermark::DateTime2.past("[c]", t),
            "[c] >= CAST('2024-03-10T06:30:00.123457' AS datetime2(7))"
        );
        assert_eq!(
            Watermark::DateTimeOffset.past("[c]", t),
            "[c] >= CAST('2024-03-10T06:30:00.123457+00:00' AS datetimeoffset(7))"
        );
        assert_eq!(
            Watermark::SmallDateTime.past("[c]", 1_710_052_200_000_000),
            "[c] > CAST('2024-03-10T06:30:00' AS smalldatetime)"
        );
        // Every datetime tick of a second round-trips through its millisecond text.
        for tick in 0..300u32 {
            let micros = 1_710_052_200_000_000 + datetime_fraction_micros(tick);
            let text = datetime_literal(micros);
            let millis: u32 = text.rsplit('.').next().unwrap().parse().unwrap();
            assert_eq!((millis * 3 + 5) / 10, tick, "{text}");
        }
        assert_eq!(datetime_literal(1_710_115_199_996_667), "2024-03-10T23:59:59.997");
    }
}
