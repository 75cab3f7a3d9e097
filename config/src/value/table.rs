use std::fmt;
use std::str::FromStr;

use super::{ParseError, string_value};

/// A lake table name such as `bronze.claims`: dot-separated identifiers, compared case-insensitively
/// (as SQL compares unquoted names), stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName(String);

impl TableName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TableName {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let valid_part = |p: &str| {
            let mut chars = p.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if s.is_empty() || !s.split('.').all(valid_part) {
            return Err(ParseError::new(
                format!("`{s}` is not a valid table name"),
                "write schema.table with letters, digits and `_`, e.g. `bronze.claims`",
            ));
        }
        Ok(TableName(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_value!(
    TableName,
    "a table name such as `bronze.claims`",
    "A lake table name: dot-separated identifiers, e.g. `bronze.claims`."
);
