use std::fmt;
use std::str::FromStr;

use super::{ParseError, string_value};

/// A span of time written the way people write it: `30s`, `15m`, `1h 30m`, `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let trimmed = s.trim();
        if trimmed.chars().all(|c| c.is_ascii_digit()) && !trimmed.is_empty() {
            return Err(ParseError::new(
                format!("duration `{s}` has no unit"),
                format!("write the unit, e.g. `{trimmed}s` or `{trimmed}m`"),
            ));
        }
        humantime::parse_duration(trimmed).map(Duration).map_err(|e| {
            ParseError::new(
                format!("invalid duration `{s}`: {e}"),
                "write a number with a unit: ms, s, m, h, d (e.g. `30s`, `15m`, `1h 30m`)",
            )
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

string_value!(
    Duration,
    "a duration such as `30s` or `15m`",
    "A duration: a number with a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `1h 30m`."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_explains() {
        assert_eq!("15m".parse::<Duration>().unwrap().0.as_secs(), 900);
        assert_eq!("1h 30m".parse::<Duration>().unwrap().0.as_secs(), 5400);
        assert!("30".parse::<Duration>().unwrap_err().hint.contains("`30s`"));
        assert!("soon".parse::<Duration>().is_err());
    }
}
