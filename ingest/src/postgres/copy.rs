//! The binary `COPY … TO STDOUT` stream, parsed row by row as its bytes arrive.
//!
//! Format: an 11-byte signature, flags and a header extension, then per row a 16-bit field count
//! (-1 ends the data) and per field a 32-bit length (-1 is NULL) and the value's bytes.

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Unconsumed bytes of the stream and where parsing stands.
#[derive(Debug, Default)]
pub(crate) struct CopyReader {
    buf: Vec<u8>,
    pos: usize,
    header_done: bool,
    pub(crate) finished: bool,
}

/// Field byte ranges of one row inside the reader's buffer (`None` for NULL).
pub(crate) type Fields = Vec<Option<(usize, usize)>>;

impl CopyReader {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > (1 << 20) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete row's fields, `Ok(None)` if more bytes are needed or the data ended.
    pub(crate) fn next_row(&mut self, fields: &mut Fields) -> Result<Option<usize>, String> {
        if !self.header_done {
            if self.buf.len() < self.pos + 19 {
                return Ok(None);
            }
            if &self.buf[self.pos..self.pos + 11] != SIGNATURE {
                return Err("the server did not send binary COPY data".into());
            }
            let ext = u32::from_be_bytes(self.buf[self.pos + 15..self.pos + 19].try_into().unwrap()) as usize;
            if self.buf.len() < self.pos + 19 + ext {
                return Ok(None);
            }
            self.pos += 19 + ext;
            self.header_done = true;
        }
        let start = self.pos;
        let Some(count) = self.buf.get(start..start + 2) else { return Ok(None) };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            self.finished = true;
            self.pos += 2;
            return Ok(None);
        }
        let mut at = start + 2;
        fields.clear();
        for _ in 0..count {
            let Some(len) = self.buf.get(at..at + 4) else { return Ok(None) };
            let len = i32::from_be_bytes(len.try_into().unwrap());
            at += 4;
            if len < 0 {
                fields.push(None);
                continue;
            }
            let end = at + len as usize;
            if end > self.buf.len() {
                return Ok(None);
            }
            fields.push(Some((at, end)));
            at = end;
        }
        self.pos = at;
        Ok(Some(at - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_across_network_reads_parse_whole() {
        let mut stream = SIGNATURE.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for (a, b) in [(1i32, Some(&b"x"[..])), (2, None)] {
            stream.extend_from_slice(&2i16.to_be_bytes());
            stream.extend_from_slice(&4i32.to_be_bytes());
            stream.extend_from_slice(&a.to_be_bytes());
            match b {
                Some(b) => {
                    stream.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    stream.extend_from_slice(b);
                }
                None => stream.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        let mut r = CopyReader::default();
        let mut fields = Fields::new();
        let mut rows = Vec::new();
        for byte in &stream {
            r.feed(&[*byte]);
            while r.next_row(&mut fields).unwrap().is_some() {
                let f: Vec<Option<Vec<u8>>> =
                    fields.iter().map(|f| f.map(|(s, e)| r.bytes()[s..e].to_vec())).collect();
                rows.push(f);
            }
        }
        assert!(r.finished);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1].as_deref(), Some(&b"x"[..]));
        assert_eq!(rows[1][1], None);
    }
}
