//! The query's columns, from `sp_describe_first_result_set` (SQL Server 2012 and later), before any
//! row is read: the declared type with precision and scale (which the row stream does not carry),
//! so a decimal lands as `Decimal128(p, s)` and an unsupported type fails up front, naming the
//! column, instead of halfway through a load.

use tiberius::Row;

use super::ident::quote_ident;
use super::types::{Kind, suggested_cast};

/// One result column as SQL Server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    pub(crate) name: String,
    /// As SQL Server writes it, e.g. `decimal(18,4)`.
    pub(crate) type_name: String,
    pub(crate) kind: Kind,
}

/// A problem with the query's columns: what is wrong, and what to change in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) message: String,
    pub(crate) hint: String,
}

fn problem(message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem { message: message.into(), hint: hint.into() }
}

/// One row of `sp_describe_first_result_set`, reduced to what is used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawColumn {
    pub(crate) ordinal: i32,
    pub(crate) hidden: bool,
    pub(crate) name: Option<String>,
    pub(crate) type_name: Option<String>,
    pub(crate) precision: u8,
    pub(crate) scale: u8,
}

impl RawColumn {
    pub(crate) fn from_row(row: &Row) -> Result<RawColumn, Problem> {
        let bad = |e: tiberius::error::Error| {
            problem(
                format!("unexpected answer from sp_describe_first_result_set: {e}"),
                "the server must be SQL Server 2012 or later",
            )
        };
        Ok(RawColumn {
            ordinal: row.try_get::<i32, _>("column_ordinal").map_err(bad)?.unwrap_or_default(),
            hidden: row.try_get::<bool, _>("is_hidden").map_err(bad)?.unwrap_or(false),
            name: row.try_get::<&str, _>("name").map_err(bad)?.map(str::to_owned),
            type_name: row.try_get::<&str, _>("system_type_name").map_err(bad)?.map(str::to_owned),
            precision: row.try_get::<u8, _>("precision").map_err(bad)?.unwrap_or_default(),
            scale: row.try_get::<u8, _>("scale").map_err(bad)?.unwrap_or_default(),
        })
    }
}

/// The loadable columns, in result order, or the first problem.
pub(crate) fn columns(mut raw: Vec<RawColumn>) -> Result<Vec<Described>, Problem> {
    raw.retain(|c| !c.hidden);
    raw.sort_by_key(|c| c.ordinal);
    if raw.is_empty() {
        return Err(problem("the query returns no columns", "the query must be a single SELECT"));
    }
    let mut out: Vec<Described> = Vec::with_capacity(raw.len());
    for c in raw {
        let Some(name) = c.name.filter(|n| !n.is_empty()) else {
            return Err(problem(
                format!("result column {} has no name", c.ordinal),
                "name it in the query, e.g. `SELECT COUNT(*) AS claims`",
            ));
        };
        // Delta column names are case-insensitive, as are SQL Server's in most collations.
        if out.iter().any(|d| d.name.eq_ignore_ascii_case(&name)) {
            return Err(problem(
                format!("two result columns are named {}", quote_ident(&name)),
                "give one of them another name with AS in the query",
            ));
        }
        let Some(type_name) = c.type_name else {
            return Err(problem(
                format!("SQL Server cannot describe the type of column {}", quote_ident(&name)),
                "CAST the column to a type in the query",
            ));
        };
        let Some(kind) = Kind::parse(&type_name, c.precision, c.scale) else {
            return Err(problem(
                format!(
                    "column {} has type {type_name}, which the SQL Server source does not load",
                    quote_ident(&name)
                ),
                format!(
                    "CAST it in the query, e.g. `{}`; loaded types are integers, bit, decimal/numeric, money, float/real, (n)char/(n)varchar/(n)text, date, datetime/datetime2/smalldatetime/datetimeoffset, uniqueidentifier and (var)binary",
                    suggested_cast(&type_name, &name)
                ),
            ));
        };
        out.push(Described { name, type_name, kind });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ordinal: i32, name: &str, type_name: &str, precision: u8, scale: u8) -> RawColumn {
        RawColumn {
            ordinal,
            hidden: false,
            name: Some(name.into()),
            type_name: Some(type_name.into()),
            precision,
            scale,
        }
    }

    #[test]
    fn orders_columns_and_keeps_precision() {
        let cols =
            columns(vec![raw(2, "amount", "decimal(18,4)", 18, 4), raw(1, "id", "bigint", 19, 0)]).unwrap();
        assert_eq!(cols[0].name, "id");
        assert_eq!(cols[1].kind, Kind::Decimal { precision: 18, scale: 4 });
    }

    #[test]
    fn names_the_column_of_an_unsupported_type() {
        let err = columns(vec![raw(1, "id", "int", 10, 0), raw(2, "body", "xml", 0, 0)]).unwrap_err();
        assert!(err.message.contains("[body]") && err.message.contains("xml"), "{err:?}");
        assert!(err.hint.contains("CAST([body] AS nvarchar(max)) AS [body]"), "{err:?}");
        let err = columns(vec![raw(1, "ID", "int", 10, 0), raw(2, "id", "int", 10, 0)]).unwrap_err();
        assert!(err.message.contains("two result columns"), "{err:?}");
        let err = columns(vec![RawColumn { name: None, ..raw(1, "", "int", 10, 0) }]).unwrap_err();
        assert!(err.hint.contains("AS"), "{err:?}");
    }
}
