//! Turning a byte stream into numbered, validated lines.
//!
//! This is synchronous on purpose: the `csv` crate reads a `std::io::Read`,
//! and the ingest runs it on a blocking thread fed from the S3 body, so parsing
//! overlaps the network writes. Memory is bounded by the longest line allowed,
//! not by the file: a record that grows past the limit is cut off, rejected,
//! and reading starts again at the next physical line.

use std::io::{self, Read};

use aws_sdk_dynamodb::types::AttributeValue;
use csv::{ByteRecord, ReaderBuilder};
use schema::items::{FieldMap, MAX_FIELDS_BYTES};
use schema::{HeaderError, Limits, Rejection, RowValidator};

/// One CSV record after the header.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// 1-based record number after the header.
    pub number: u64,
    /// Absolute byte offset just past the record (a resume point).
    pub end_byte: u64,
    /// The typed fields (as the event item stores them), or why the line was rejected.
    pub outcome: Result<FieldMap, Rejection>,
    /// The raw bytes of a rejected line, without its line break (empty for accepted lines).
    pub raw: Vec<u8>,
}

/// What the reader needs to start: the header is read from the stream, or,
/// when resuming from the middle of a file, given.
#[derive(Debug, Clone)]
pub enum Start {
    /// Read from byte 0: the first record is the header.
    Beginning,
    /// Resume at `byte`, which starts record `next_line`, under a known header.
    Resume {
        /// The header the first run read.
        header: Vec<String>,
        /// Absolute byte offset the stream starts at.
        byte: u64,
        /// Number of the first record in the stream.
        next_line: u64,
    },
}

/// A file that cannot be read as CSV at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The header does not fit the dataset.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The byte stream failed (network, S3).
    #[error("reading the object failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not UTF-8 text, or do not decompress: the file fails.
    #[error(transparent)]
    Decode(crate::decode::DecodeError),
}

impl From<crate::decode::DecodeError> for ReadError {
    fn from(e: crate::decode::DecodeError) -> Self {
        match e {
            // A failed read of the body is the network's, retried.
            crate::decode::DecodeError::Io(io) => ReadError::Io(io),
            other => ReadError::Decode(other),
        }
    }
}

/// Reads validated lines from any byte stream.
pub struct LineReader<R: Read> {
    csv: csv::Reader<Tap<R>>,
    validator: RowValidator,
    next_line: u64,
    /// Absolute offset of the csv reader's byte 0.
    base: u64,
    record: ByteRecord,
    header: Vec<String>,
}

impl<R: Read> LineReader<R> {
    /// Start reading. From the beginning, the header is read and checked against the dataset.
    pub fn new(input: R, start: Start, dataset: &schema::Dataset, limits: Limits) -> Result<Self, ReadError> {
        let (header, base, next_line) = match &start {
            Start::Beginning => (None, 0, 1),
            Start::Resume {
                header,
                byte,
                next_line,
            } => (Some(header.clone()), *byte, *next_line),
        };
        let mut csv = builder().from_reader(Tap::new(Some(input), limits.max_line_bytes));
        let header = match header {
            Some(h) => h,
            None => {
                let mut rec = ByteRecord::new();
                match csv.read_byte_record(&mut rec) {
                    Ok(true) => {}
                    Ok(false) => return Err(HeaderError::Empty.into()),
                    Err(e) => return Err(csv_io_error(e).into()),
                }
                let after_header = csv.position().byte();
                csv.get_mut().consumed_to(after_header);
                rec.iter()
                    .map(|f| std::str::from_utf8(f).map(str::to_owned))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| HeaderError::NotUtf8)?
            }
        };
        let validator = RowValidator::new(dataset, &header, limits)?;
        Ok(LineReader {
            csv,
            validator,
            next_line,
            base,
            record: ByteRecord::new(),
            header,
        })
    }

    /// The header in force.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The next line, `None` at the end of the stream.
    pub fn next_line(&mut self) -> Result<Option<Line>, ReadError> {
        let start = self.csv.position().byte();
        let limit = self.validator.limits().max_line_bytes;
        match self.csv.read_byte_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => {
                let err = csv_io_error(e);
                if !self.csv.get_ref().over_limit {
                    return Err(err.into());
                }
                // The record grew past the limit: reject its first physical line.
                let line = self.resync(start, |line| {
                    if unbalanced_quote(line) {
                        format!("unbalanced quote: a quoted field runs on past the limit of {limit} bytes")
                    } else {
                        format!("line is longer than the limit of {limit} bytes")
                    }
                })?;
                return Ok(Some(line));
            }
        }
        let end = self.csv.position().byte();
        let raw = trim_eol(self.csv.get_ref().slice(start, end));
        let number = self.next_line;
        if unbalanced_quote(raw) && raw.contains(&b'\n') {
            // An opening quote without its closing one swallowed the lines after it:
            // only the first physical line is bad, and reading goes on from the next.
            let line = self.resync(start, |_| {
                "unbalanced quote: a quoted field is not closed on its line".into()
            })?;
            return Ok(Some(line));
        }
        let outcome = if raw.len() > limit {
            Err(Rejection::line(format!(
                "line is {} bytes, longer than the limit of {limit} bytes",
                raw.len()
            )))
        } else {
            self.validate()
        };
        let outcome = match outcome {
            Err(r) if unbalanced_quote(raw) => Err(Rejection {
                reason: format!("unbalanced quote: {}", r.reason),
                column: r.column,
            }),
            other => other,
        };
        self.next_line += 1;
        let raw = if outcome.is_err() { raw.to_vec() } else { Vec::new() };
        self.csv.get_mut().consumed_to(end);
        Ok(Some(Line {
            number,
            end_byte: self.base + end,
            outcome,
            raw,
        }))
    }

    fn validate(&self) -> Result<FieldMap, Rejection> {
        let mut fields = FieldMap::with_capacity(self.record.len());
        let mut size = 0;
        self.validator.validate_each(self.record.iter(), |name, value| {
            size += name.len() + value.len() + 2;
            fields.insert(name.to_owned(), AttributeValue::S(value));
        })?;
        if size > MAX_FIELDS_BYTES {
            return Err(Rejection::line(format!(
                "line makes an item of more than {} bytes, DynamoDB's limit",
                schema::items::MAX_ITEM_BYTES
            )));
        }
        Ok(fields)
    }

    /// Reject the physical line starting at relative offset `start` and restart
    /// the csv reader on the line after it.
    fn resync(&mut self, start: u64, reason: impl FnOnce(&[u8]) -> String) -> Result<Line, ReadError> {
        let limit = self.validator.limits().max_line_bytes;
        let tap = self.csv.get_mut();
        let (raw, next) = tap.first_line_from(start)?;
        let raw = trim_eol(&raw);
        let reason = reason(raw);
        let raw = raw[..raw.len().min(limit)].to_vec();
        let number = self.next_line;
        self.next_line += 1;
        let abs_next = self.base + next;
        // Rebuild the reader over what the tap holds after the line, then the rest of the stream.
        let old = std::mem::replace(&mut self.csv, builder().from_reader(Tap::new(None, limit)));
        let tap = old.into_inner().restart_at(next);
        self.csv = builder().from_reader(tap);
        self.base = abs_next;
        Ok(Line {
            number,
            end_byte: abs_next,
            outcome: Err(Rejection::line(reason)),
            raw,
        })
    }
}

fn builder() -> ReaderBuilder {
    let mut b = ReaderBuilder::new();
    // Headers and ragged lines are handled here, with reasons.
    b.has_headers(false).flexible(true);
    b
}

fn csv_io_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// A record's bytes without line breaks around it (a CRLF's `\n` can lead the next record).
fn trim_eol(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(start, |i| i + 1);
    &raw[start..end]
}

/// Quotes in a well-formed record pair up (open/close, and `""` escapes).
fn unbalanced_quote(raw: &[u8]) -> bool {
    raw.iter().filter(|&&b| b == b'"').count() % 2 == 1
}

/// Bytes of consumed records kept before the buffer is compacted.
const COMPACT_AT: usize = 64 * 1024;

/// A `Read` adapter that keeps the bytes of the record being parsed, so a
/// rejected line can be stored as it was written, and that refuses to let a
/// single record grow past a limit.
struct Tap<R> {
    inner: Option<R>,
    /// Bytes replayed before `inner` (after a resync).
    replay: Vec<u8>,
    replay_pos: usize,
    /// Bytes handed to the csv reader from relative offset `kept_from` on.
    kept: Vec<u8>,
    kept_from: u64,
    /// Relative offset of the next byte handed out.
    pos: u64,
    /// The csv reader is done with everything before this offset.
    done_to: u64,
    /// Hard cap on `pos - kept_from`: the longest line plus read-ahead.
    cap: u64,
    over_limit: bool,
}

impl<R: Read> Tap<R> {
    fn new(inner: Option<R>, max_line_bytes: usize) -> Self {
        Tap {
            inner,
            replay: Vec::new(),
            replay_pos: 0,
            kept: Vec::new(),
            kept_from: 0,
            pos: 0,
            done_to: 0,
            cap: max_line_bytes as u64 + 64 * 1024,
            over_limit: false,
        }
    }

    /// Bytes `[start, end)` (relative), which must still be kept.
    fn slice(&self, start: u64, end: u64) -> &[u8] {
        &self.kept[(start - self.kept_from) as usize..(end - self.kept_from) as usize]
    }

    /// The csv reader is done with everything before `offset`.
    fn consumed_to(&mut self, offset: u64) {
        self.done_to = offset;
        // Compact only when the consumed prefix is large: shifting on every
        // record would copy the read-ahead buffer once per line.
        let drop = (offset - self.kept_from) as usize;
        if drop >= COMPACT_AT && drop * 2 >= self.kept.len() {
            self.kept.drain(..drop.min(self.kept.len()));
            self.kept_from = offset;
        }
    }

    /// The physical line starting at `start` (with its line break), reading on
    /// from the stream if needed, and the relative offset just past it.
    fn first_line_from(&mut self, start: u64) -> io::Result<(Vec<u8>, u64)> {
        let mut from = (start - self.kept_from) as usize;
        // The record starts after the line breaks that lead it (a CRLF's
        // `\n`, blank lines): the line rejected is its own, never an empty one,
        // so a read that starts at the record (a chunk) rejects the same line.
        while from < self.kept.len() && matches!(self.kept[from], b'\r' | b'\n') {
            from += 1;
        }
        let start = self.kept_from + from as u64;
        if let Some(i) = self.kept[from..].iter().position(|&b| b == b'\n') {
            let line = self.kept[from..from + i + 1].to_vec();
            return Ok((line, start + i as u64 + 1));
        }
        // The line is longer than what is kept: keep its head, skip to its end.
        let head = self.kept[from..].to_vec();
        let mut next = self.kept_from + self.kept.len() as u64;
        self.kept.clear();
        self.kept_from = next;
        let mut buf = [0u8; 8192];
        loop {
            let n = self.read_raw(&mut buf)?;
            if n == 0 {
                return Ok((head, next));
            }
            if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
                next += i as u64 + 1;
                self.kept.extend_from_slice(&buf[i + 1..n]);
                self.kept_from = next;
                return Ok((head, next));
            }
            next += n as u64;
            self.kept_from = next;
        }
    }

    /// A fresh tap whose stream starts at relative offset `next` of this one.
    fn restart_at(mut self, next: u64) -> Self {
        let from = (next - self.kept_from) as usize;
        let mut replay = self.kept.split_off(from.min(self.kept.len()));
        replay.extend_from_slice(&self.replay[self.replay_pos..]);
        Tap {
            inner: self.inner.take(),
            replay,
            replay_pos: 0,
            kept: Vec::new(),
            kept_from: 0,
            pos: 0,
            done_to: 0,
            cap: self.cap,
            over_limit: false,
        }
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.replay_pos < self.replay.len() {
            let n = buf.len().min(self.replay.len() - self.replay_pos);
            buf[..n].copy_from_slice(&self.replay[self.replay_pos..self.replay_pos + n]);
            self.replay_pos += n;
            if self.replay_pos == self.replay.len() {
                self.replay = Vec::new();
                self.replay_pos = 0;
            }
            return Ok(n);
        }
        match self.inner.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos - self.done_to >= self.cap {
            self.over_limit = true;
            return Err(io::Error::other("record exceeds the line length limit"));
        }
        let room = (self.cap - (self.pos - self.done_to)) as usize;
        let want = buf.len().min(room);
        let n = self.read_raw(&mut buf[..want])?;
        self.kept.extend_from_slice(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::Dataset;

    fn untyped_lines(input: &[u8], limits: Limits) -> Vec<Line> {
        let mut r = LineReader::new(input, Start::Beginning, &Dataset::untyped(), limits).unwrap();
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    fn reasons(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match &l.outcome {
                Ok(f) => {
                    let sorted: std::collections::BTreeMap<_, _> = f.iter().collect();
                    let values: Vec<&str> = sorted.values().map(|v| v.as_s().unwrap().as_str()).collect();
                    format!("ok {}", values.join("|"))
                }
                Err(r) => format!("rejected {}", r.reason),
            })
            .collect()
    }

    #[test]
    fn numbers_lines_and_offsets() {
        let input = b"a,b\n1,2\r\n\"x\ny\",3\n4,5";
        let lines = untyped_lines(input, Limits::default());
        assert_eq!(reasons(&lines), ["ok 1|2", "ok x\ny|3", "ok 4|5"]);
        assert_eq!(lines.iter().map(|l| l.number).collect::<Vec<_>>(), [1, 2, 3]);
        // csv ends a CRLF record at its \r; the \n is skipped as a blank line on resume.
        assert_eq!(lines[0].end_byte, 8);
        assert_eq!(lines[1].end_byte, 17);
        assert_eq!(lines[2].end_byte, input.len() as u64);
    }

    #[test]
    fn strips_a_bom() {
        let lines = untyped_lines(b"\xef\xbb\xbfa,b\n1,2\n", Limits::default());
        let r = LineReader::new(
            &b"\xef\xbb\xbfa,b\n"[..],
            Start::Beginning,
            &Dataset::untyped(),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(r.header(), ["a", "b"]);
        assert_eq!(reasons(&lines), ["ok 1|2"]);
    }

    #[test]
    fn an_unbalanced_quote_costs_one_line() {
        let input = b"a,b\n1,\"open\n3,4\n5,6\n";
        let lines = untyped_lines(input, Limits::default());
        assert_eq!(lines.len(), 3, "{:?}", reasons(&lines));
        assert!(
            reasons(&lines)[0].starts_with("rejected unbalanced quote"),
            "{:?}",
            reasons(&lines)
        );
        assert_eq!(lines[0].raw, b"1,\"open");
        assert_eq!(reasons(&lines)[1..], ["ok 3|4", "ok 5|6"]);
        assert_eq!(lines.iter().map(|l| l.number).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(lines[0].end_byte, 12);
    }

    #[test]
    fn an_over_long_line_is_rejected_and_reading_goes_on() {
        let limits = Limits {
            max_line_bytes: 10,
            ..Limits::default()
        };
        let long = format!("a,b\n1,2\n{},x\n3,4\n", "y".repeat(200_000));
        let lines = untyped_lines(long.as_bytes(), limits);
        assert_eq!(reasons(&lines)[0], "ok 1|2");
        assert!(
            reasons(&lines)[1].contains("longer than the limit of 10 bytes"),
            "{:?}",
            reasons(&lines)
        );
        assert_eq!(lines[1].raw.len(), 10);
        assert_eq!(reasons(&lines)[2], "ok 3|4");
        assert_eq!(lines[2].number, 3);
        // A line over the limit but under the read-ahead slack takes the other path.
        let medium = b"a,b\n1,2\n0123456789abc,x\n3,4\n";
        let lines = untyped_lines(medium, limits);
        assert!(reasons(&lines)[1].contains("line is 15 bytes"), "{:?}", reasons(&lines));
        assert_eq!(reasons(&lines)[2], "ok 3|4");
    }

    #[test]
    fn an_unbalanced_quote_near_the_end_of_a_huge_run_is_bounded() {
        let limits = Limits {
            max_line_bytes: 100,
            ..Limits::default()
        };
        let mut input = b"a,b\n1,\"never closed\n".to_vec();
        for i in 0..50_000 {
            input.extend_from_slice(format!("{i},{i}\n").as_bytes());
        }
        let lines = untyped_lines(&input, limits);
        assert_eq!(lines.len(), 50_001);
        assert!(lines[0].outcome.is_err());
        assert!(lines[1..].iter().all(|l| l.outcome.is_ok()));
    }

    #[test]
    fn resumes_from_a_byte_offset() {
        let input = b"a,b\n1,2\n3,4\n5,6\n";
        let all = untyped_lines(input, Limits::default());
        let cut = all[0].end_byte;
        let start = Start::Resume {
            header: vec!["a".into(), "b".into()],
            byte: cut,
            next_line: 2,
        };
        let mut r = LineReader::new(&input[cut as usize..], start, &Dataset::untyped(), Limits::default()).unwrap();
        let mut rest = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            rest.push(l);
        }
        assert_eq!(rest, all[1..]);
    }

    #[test]
    fn empty_and_header_only() {
        let e = LineReader::new(&b""[..], Start::Beginning, &Dataset::untyped(), Limits::default()).err();
        assert!(matches!(e, Some(ReadError::Header(HeaderError::Empty))));
        assert!(untyped_lines(b"a,b\n", Limits::default()).is_empty());
        assert!(untyped_lines(b"a,b", Limits::default()).is_empty());
    }
}
