//! How long to wait before asking again: what the server says in `Retry-After` (seconds or an
//! HTTP date), else exponential backoff from one second up to a minute.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attempts at one page while the server says it is busy (429, 503).
pub(super) const THROTTLED_ATTEMPTS: u32 = 8;
/// Attempts at one page while the connection fails or the server errs (5xx); GET only.
pub(super) const FAILED_ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured within an attempt; beyond it the task fails and its own
/// retries (minutes apart, without holding a slot) take over.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(300);

/// The wait before retry number `retry` (0-based): 1 s, 2 s, 4 s … at most 60 s.
pub(super) fn backoff(retry: u32) -> Duration {
    Duration::from_secs((1u64 << retry.min(6)).min(60))
}

/// The wait a `Retry-After` value asks for, as of `now`; `None` if it is neither form.
pub(super) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = UNIX_EPOCH + Duration::from_secs(http_date(value)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Seconds since the epoch of an HTTP date in any of the three forms RFC 9110 §5.6.7 requires a
/// recipient to accept: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850
/// form (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
fn http_date(s: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(s).ok()?;
    at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example).
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_date("Tue, 29 Feb 2028 12:00:00 GMT"), Some(1_835_438_400));
        // A date in the past: retry now.
        assert_eq!(retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now), Some(Duration::ZERO));
        for bad in ["soon", "-1", "Sun 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nox 1994 08:49:37 GMT", ""] {
            assert_eq!(retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn reads_the_obsolete_date_forms_too() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        for obsolete in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(retry_after(obsolete, now), Some(Duration::from_secs(7)), "{obsolete}");
        }
    }

    #[test]
    fn backs_off_up_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
