use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

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
        let cron = parse_cached(s).map_err(|e| {
            ParseError::new(
                format!("invalid cron schedule `{s}`: {e}"),
                "write minute hour day-of-month month day-of-week, e.g. `0 */6 * * *`, or @hourly/@daily",
            )
        })?;
        Ok(Schedule { text: s.to_owned(), cron })
    }
}

/// Parsing a cron expression costs ~20 µs and thousands of jobs share a handful of schedules, so
/// parsed expressions are memoized (successes only; the map is bounded by the distinct texts seen).
fn parse_cached(s: &str) -> Result<Cron, croner::errors::CronError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cron>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(cron) = cache.lock().ok().and_then(|c| c.get(s).cloned()) {
        return Ok(cron);
    }
    let cron = CronParser::new().parse(s)?;
    if let Ok(mut c) = cache.lock() {
        if c.len() < 10_000 {
            c.insert(s.to_owned(), cron.clone());
        }
    }
    Ok(cron)
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
