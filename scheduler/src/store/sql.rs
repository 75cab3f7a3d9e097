//! Building blocks of the statements every part of the control plane writes: multi-row VALUES
//! lists and placeholders (both databases take `$n`), the transaction type, and reading a text
//! column back into its enum. Statements are chunked to stay far below both databases' limits on
//! bound parameters.

use sqlx::Row;

use crate::Error;

/// A transaction on the store (SQLite or PostgreSQL).
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Rows per multi-row statement.
pub(crate) const CHUNK: usize = 200;

/// `$start, $start+1, …` for `n` values.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `($1, $2), ($3, $4)` for `rows` rows of `cols` values: the VALUES list of a multi-row insert.
pub(crate) fn value_rows(rows: usize, cols: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(r * cols + 1, cols))).collect::<Vec<_>>().join(", ")
}

/// A text column parsed into what it stores (a state, a level…); a value the code does not know
/// means the store was written by something else: `corrupt`.
pub(crate) fn parse_column<T: std::str::FromStr<Err = String>>(
    row: &sqlx::any::AnyRow,
    col: &str,
) -> Result<T, Error> {
    let text: String = row.try_get(col).map_err(Error::store)?;
    text.parse().map_err(|e| Error::corrupt("state column", e))
}

/// One column of a row, typed; a type mismatch is a store error.
pub(crate) fn get<T>(row: &sqlx::any::AnyRow, col: &str) -> Result<T, Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(Error::store)
}

/// A nullable JSON text column, parsed.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    col: &str,
    what: &'static str,
) -> Result<Option<T>, Error> {
    let text: Option<String> = row.try_get(col).map_err(Error::store)?;
    text.map(|t| serde_json::from_str(&t)).transpose().map_err(|e| Error::corrupt(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lists_number_their_placeholders_in_order() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
