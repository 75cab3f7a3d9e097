use std::fmt;
use std::str::FromStr;

use croner::Cron;
use croner::parser::CronParser;

use super::{ParseError, string_value};

/// A cron schedule: five fields (minute hour day-of-month month day-of-week), or `@hourly`-style
/// aliases. Kept with its source text so it prints exactly as written.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FromStr for Schedule {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let fields = s.split_whitespace().count();
        if !s.trim_start().starts_with('@') && fields != 5 {
            return Err(ParseError::new(
                format!("cron schedule `{s}` has {fields} fields; expected 5"),
                "write minute hour day-of-month month day-of-week, e.g. `0 */6 * * *` (every 6 hours)",
            ));
        }
        let cron = CronParser::new().parse(s).map_err(|e| {
            ParseError::new(
                format!("invalid cron schedule `{s}`: {e}"),
                "write minute hour day-of-month month day-of-week, e.g. `0 */6 * * *`, or @hourly/@daily",
            )
        })?;
        Ok(Schedule { text: s.to_owned(), cron })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_value!(
    Schedule,
    "a cron schedule such as `0 */6 * * *`",
    "A five-field cron schedule (minute hour day-of-month month day-of-week) or an alias such as @hourly."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_five_fields_and_aliases() {
        assert!("0 */6 * * *".parse::<Schedule>().is_ok());
        assert!("@daily".parse::<Schedule>().is_ok());
        assert!("0 */6 * *".parse::<Schedule>().unwrap_err().message.contains("4 fields"));
        assert!("61 * * * *".parse::<Schedule>().is_err());
    }
}
