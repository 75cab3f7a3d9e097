use std::fmt;
use std::str::FromStr;

use super::{ParseError, string_value};

/// An amount of memory or disk written the way people write it: `2GiB`, `512 MiB`, `64MiB`,
/// `2Gi` (Kubernetes' spelling), `1500000000` (bytes). `KB`/`MB`/`GB` are powers of 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kib", 1 << 10),
    ("ki", 1 << 10),
    ("mib", 1 << 20),
    ("mi", 1 << 20),
    ("gib", 1 << 30),
    ("gi", 1 << 30),
    ("tib", 1 << 40),
    ("ti", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
];

impl FromStr for ByteSize {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || {
            ParseError::new(
                format!("`{s}` is not an amount of memory"),
                "write a number with a unit, e.g. `2GiB`, `512MiB` or `2Gi`",
            )
        };
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_lowercase();
        let (_, factor) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?;
        let bytes = number * *factor as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

string_value!(
    ByteSize,
    "an amount of memory such as `2GiB`",
    "An amount of memory: a number with a unit (`2GiB`, `512MiB`, `2Gi`, `1GB`)."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_spellings_and_prints_them_back() {
        assert_eq!("2GiB".parse::<ByteSize>().unwrap(), ByteSize(2 << 30));
        assert_eq!("2Gi".parse::<ByteSize>().unwrap(), ByteSize(2 << 30));
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap(), ByteSize(512 << 20));
        assert_eq!("1.5GB".parse::<ByteSize>().unwrap(), ByteSize(1_500_000_000));
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!(ByteSize(2 << 30).to_string(), "2GiB");
        assert_eq!(ByteSize(1_500_000_000).to_string(), "1500000000B");
        let err = "2 gigs".parse::<ByteSize>().unwrap_err();
        assert!(err.message.contains("2 gigs") && err.hint.contains("2GiB"), "{err:?}");
        assert!("GiB".parse::<ByteSize>().is_err());
    }
}
