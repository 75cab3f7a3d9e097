//! Turning a file's bytes into text, refusing what no person meant to write.

use crate::diagnostic::{Code, Diagnostic, Location};

/// Manifests, policies and settings are hand-written; 8 MiB is far past any real one, and refusing
/// larger input early keeps a stray data file from taking seconds and gigabytes to reject.
pub(crate) const MAX_INPUT_BYTES: usize = 8 * 1024 * 1024;

/// The diagnostic for a file over [`MAX_INPUT_BYTES`] (the file is not set).
pub(crate) fn too_large(size: u64) -> Diagnostic {
    Diagnostic::new(
        Code::Syntax,
        Location::new(1, 1),
        format!(
            "file is {:.1} MiB; input files are limited to {} MiB",
            size as f64 / (1024.0 * 1024.0),
            MAX_INPUT_BYTES / (1024 * 1024)
        ),
    )
    .with_hint("is this the right file? Split a very large manifest into several files in a directory")
}

/// Checks size and encoding. The returned diagnostic has no file set.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<&str, Diagnostic> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.strip_prefix('\u{feff}').unwrap_or(text)),
        Err(err) => {
            let good = &bytes[..err.valid_up_to()];
            // `good` is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(good).unwrap_or_default();
            let line = prefix.matches('\n').count() + 1;
            let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(Diagnostic::new(
                Code::Syntax,
                Location::new(line as u32, column as u32),
                format!(
                    "file is not valid UTF-8 (byte 0x{:02x} at offset {})",
                    bytes[err.valid_up_to()],
                    err.valid_up_to()
                ),
            )
            .with_hint("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_position_of_first_bad_byte() {
        let err = decode_text(b"job: a\ntasks: \xff\n").unwrap_err();
        assert_eq!(err.location, Location::new(2, 8));
        assert!(err.message.contains("0xff"), "{}", err.message);
    }

    #[test]
    fn refuses_oversize_input_before_parsing() {
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        let err = decode_text(&big).unwrap_err();
        assert_eq!(err.code, Code::Syntax);
        assert!(err.message.contains("limited to 8 MiB"), "{}", err.message);
    }

    #[test]
    fn strips_byte_order_mark() {
        assert_eq!(decode_text("\u{feff}job: a".as_bytes()).unwrap(), "job: a");
    }
}
