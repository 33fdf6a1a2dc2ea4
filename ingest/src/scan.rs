//! Record boundaries of CSV text, found without parsing fields, so that a
//! big file can be cut into chunks that parse exactly as the whole would.
//!
//! The scanner follows the record rules of the `csv` crate as the ingest
//! configures it ([`crate::reader`]): `,` between fields, `"` opening a
//! quoted field only at the start of a field (elsewhere it is a plain byte),
//! `""` inside quotes as an escape, `\r`, `\n` or `\r\n` ending a record
//! outside quotes, and blank lines skipped. It stops at the first
//! byte where it cannot promise that: the reader treats some records
//! specially (an odd number of quotes across a line break costs one physical
//! line; a record over the line limit is cut), so after the first such
//! record no boundary is offered and the rest of the file stays one chunk.
//!
//! It looks at line breaks and quotes only (`memchr`), so it runs at
//! memory speed on ordinary exports, and its state carries across buffers:
//! memory is the caller's buffer, whatever the file's size.

use memchr::{memchr, memchr3};

/// Line breaks between two records beyond which the scan stops: with the
/// record after them, they must stay well inside the reader's read-ahead
/// allowance (the line limit plus 64 KiB), so the reader never cuts a record
/// the scan let through. Both checks look only at bytes after a boundary, so
/// a scan resumed at one finds what the whole scan found.
const MAX_BLANK_RUN: u64 = 1024;

/// Where a chunk may start: the first byte of a record, and that record's
/// line number (records after the header, from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// Absolute byte offset.
    pub byte: u64,
    /// Number of the record starting there.
    pub line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between records: line breaks are skipped.
    RecordStart,
    /// In a record, outside quotes.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a `"` inside a quoted field: an escape if another follows.
    QuoteInQuoted,
}

/// Why the scanner stopped offering boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Line number of the record the reader treats specially.
    pub line: u64,
    /// What it is.
    pub reason: &'static str,
}

/// An incremental boundary scan: feed it the object's bytes in order.
#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    /// Absolute offset of the next byte fed.
    pos: u64,
    /// The byte before `pos` (a quote opens a field only after `,`).
    prev: u8,
    /// Where the current record started.
    record_start: u64,
    /// Offset of the line break that ended the previous record.
    line_end: u64,
    quotes: u64,
    quoted_newline: bool,
    /// Records finished, the header included: the next record's line number.
    records: u64,
    every: u64,
    last_boundary: u64,
    max_record_bytes: u64,
    stop: Option<Stop>,
}

impl Scanner {
    /// A scan from byte 0 (the header's first byte) offering a boundary about
    /// every `every` bytes; a record spanning more than `max_record_bytes`
    /// (the reader's line limit) stops it.
    pub fn new(every: u64, max_record_bytes: u64) -> Self {
        Scanner::resume(Boundary { byte: 0, line: 0 }, every, max_record_bytes)
    }

    /// A scan resumed at a boundary it offered before (a planner's checkpoint).
    pub fn resume(at: Boundary, every: u64, max_record_bytes: u64) -> Self {
        Scanner {
            state: State::RecordStart,
            pos: at.byte,
            prev: b'\n',
            record_start: at.byte,
            line_end: at.byte.saturating_sub(1),
            quotes: 0,
            quoted_newline: false,
            records: at.line,
            every: every.max(1),
            last_boundary: at.byte,
            max_record_bytes,
            stop: None,
        }
    }

    /// Absolute offset of the next byte to feed.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Why boundaries stopped, if they did.
    pub fn stopped(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// Scan the next bytes, appending the boundaries found to `out`.
    pub fn feed(&mut self, buf: &[u8], out: &mut Vec<Boundary>) {
        let mut i = 0;
        while i < buf.len() && self.stop.is_none() {
            match self.state {
                State::RecordStart => {
                    let Some(k) = buf[i..].iter().position(|&b| b != b'\n' && b != b'\r') else {
                        break;
                    };
                    i += k;
                    let at = self.pos + i as u64;
                    // The reader's line limit counts the line breaks before a
                    // record too: a long run of them is not cut after.
                    if at - self.line_end > MAX_BLANK_RUN {
                        self.stop = Some(Stop {
                            line: self.records,
                            reason: "a run of blank lines",
                        });
                        break;
                    }
                    // A chunk starts after the header, at a record's first byte.
                    if self.records >= 1 && at - self.last_boundary >= self.every {
                        out.push(Boundary {
                            byte: at,
                            line: self.records,
                        });
                        self.last_boundary = at;
                    }
                    self.record_start = at;
                    self.quotes = 0;
                    self.quoted_newline = false;
                    self.state = State::Unquoted;
                }
                State::Unquoted => match memchr3(b'"', b'\n', b'\r', &buf[i..]) {
                    None => i = buf.len(),
                    Some(k) => {
                        let j = i + k;
                        if buf[j] == b'"' {
                            self.quotes += 1;
                            let before = if j > 0 { buf[j - 1] } else { self.prev };
                            let at = self.pos + j as u64;
                            if at == self.record_start || before == b',' {
                                self.state = State::Quoted;
                            }
                            i = j + 1;
                        } else {
                            self.end_record(self.pos + j as u64);
                            i = j;
                        }
                    }
                },
                State::Quoted => match memchr(b'"', &buf[i..]) {
                    None => {
                        self.quoted_newline |= memchr(b'\n', &buf[i..]).is_some();
                        i = buf.len();
                    }
                    Some(k) => {
                        self.quoted_newline |= memchr(b'\n', &buf[i..i + k]).is_some();
                        self.quotes += 1;
                        self.state = State::QuoteInQuoted;
                        i += k + 1;
                    }
                },
                State::QuoteInQuoted => {
                    if buf[i] == b'"' {
                        self.quotes += 1;
                        self.state = State::Quoted;
                        i += 1;
                    } else {
                        self.state = State::Unquoted;
                    }
                }
            }
        }
        if let Some(&b) = buf.last() {
            self.prev = b;
        }
        self.pos += buf.len() as u64;
    }

    /// The record in progress ends at `at` (its line break, or the end of the input).
    fn end_record(&mut self, at: u64) {
        let line = self.records;
        self.records += 1;
        if self.quotes % 2 == 1 && self.quoted_newline {
            self.stop = Some(Stop {
                line,
                reason: "an odd number of quotes across a line break",
            });
        } else if at - self.record_start > self.max_record_bytes {
            self.stop = Some(Stop {
                line,
                reason: "a record longer than the line limit",
            });
        }
        self.line_end = at;
        self.state = State::RecordStart;
    }

    /// The end of the input: the number of records after the header, when
    /// the scan went through to the end.
    pub fn finish(mut self) -> Result<u64, Stop> {
        if self.stop.is_none() && self.state != State::RecordStart {
            self.end_record(self.pos);
        }
        match self.stop {
            Some(s) => Err(s),
            None => Ok(self.records.saturating_sub(1)),
        }
    }
}

/// The boundaries of a whole input held in memory (tests, benchmarks).
pub fn boundaries(input: &[u8], every: u64, max_record_bytes: u64) -> (Vec<Boundary>, Result<u64, Stop>) {
    let mut s = Scanner::new(every, max_record_bytes);
    let mut out = Vec::new();
    s.feed(input, &mut out);
    (out, s.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{Line, LineReader, Start};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use schema::{Dataset, Limits};

    fn serial(input: &[u8], limits: Limits) -> Option<Vec<Line>> {
        let mut r = LineReader::new(input, Start::Beginning, &Dataset::untyped(), limits).ok()?;
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        Some(out)
    }

    /// Read `input` as chunks cut at `bounds`, as the chunked ingest does.
    fn chunked(input: &[u8], bounds: &[Boundary], limits: Limits) -> Option<Vec<Line>> {
        let ends: Vec<u64> = bounds.iter().map(|b| b.byte).chain([input.len() as u64]).collect();
        let mut r = LineReader::new(
            &input[..ends[0] as usize],
            Start::Beginning,
            &Dataset::untyped(),
            limits,
        )
        .ok()?;
        let header = r.header().to_vec();
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        for (b, end) in bounds.iter().zip(&ends[1..]) {
            let start = Start::Resume {
                header: header.clone(),
                byte: b.byte,
                next_line: b.line,
            };
            let mut r = LineReader::new(
                &input[b.byte as usize..*end as usize],
                start,
                &Dataset::untyped(),
                limits,
            )
            .unwrap();
            let mut n = 0;
            while let Some(l) = r.next_line().unwrap() {
                n += 1;
                out.push(l);
            }
            assert!(n > 0, "a chunk without a record at {b:?}");
        }
        Some(out)
    }

    /// A random CSV-ish text, heavy in the bytes that matter at a boundary.
    fn generate(rng: &mut SmallRng, len: usize, anomalies: bool) -> Vec<u8> {
        let mut out = b"a,b,c\n".to_vec();
        if rng.gen_bool(0.1) {
            out = b"\xef\xbb\xbf\"a\",b,c\r\n".to_vec();
        }
        while out.len() < len {
            let fields = rng.gen_range(1..5);
            for f in 0..fields {
                if f > 0 {
                    out.push(b',');
                }
                match rng.gen_range(0..10) {
                    0..=3 => out.extend_from_slice(b"x1"),
                    4 => {}
                    5 => out.extend_from_slice(b"\"q,\"\"\nz\r\n\""),
                    6 => out.extend_from_slice(b"\"\""),
                    7 if anomalies => out.extend_from_slice(b"ab\"c"),
                    7 => out.extend_from_slice(b"a\"\"b"),
                    8 => out.extend_from_slice(b"\"a\"b"),
                    _ => out.extend_from_slice(b"\"\r\n,\""),
                }
            }
            match rng.gen_range(0..8) {
                0 => out.extend_from_slice(b"\r\n"),
                1 => out.extend_from_slice(b"\n\n"),
                2 => out.push(b'\r'),
                3 if anomalies => out.extend_from_slice(b",\"open\n"),
                _ => out.push(b'\n'),
            }
        }
        if rng.gen_bool(0.3) {
            while matches!(out.last(), Some(b'\n' | b'\r')) {
                out.pop();
            }
        }
        out
    }

    #[test]
    fn chunks_read_exactly_as_the_whole_file_for_many_inputs_and_sizes() {
        let limits = Limits {
            max_line_bytes: 200,
            ..Limits::default()
        };
        let mut rng = SmallRng::seed_from_u64(14);
        let mut cut = 0;
        for case in 0..2000 {
            let len = rng.gen_range(0..2000);
            let input = generate(&mut rng, len, case % 3 == 0);
            let every = rng.gen_range(1..300);
            let (bounds, end) = boundaries(&input, every, limits.max_line_bytes as u64);
            let Some(whole) = serial(&input, limits) else {
                continue;
            };
            let parts = chunked(&input, &bounds, limits).expect("the header reads in the first chunk");
            assert_eq!(
                parts,
                whole,
                "case {case}, every {every}: {:?}",
                String::from_utf8_lossy(&input)
            );
            if let Ok(lines) = end {
                assert_eq!(lines, whole.len() as u64, "case {case}");
            }
            for w in bounds.windows(2) {
                assert!(w[1].byte - w[0].byte >= every && w[1].line > w[0].line);
            }
            cut += bounds.len();
        }
        assert!(cut > 10_000, "the inputs were cut: {cut} boundaries");
    }

    #[test]
    fn quotes_and_line_breaks_on_and_around_every_edge() {
        // Every split of the input into two feeds gives the same boundaries.
        let input = b"h1,h2\r\n\"a\nb\",\"c\"\"\r\nd\"\r\n\r\nx,\"\"\n\"\",y\rlast,\"z\"";
        let (whole, end) = boundaries(input, 1, 1000);
        assert_eq!(end, Ok(4));
        assert_eq!(
            whole.iter().map(|b| (b.byte, b.line)).collect::<Vec<_>>(),
            [(7, 1), (25, 2), (30, 3), (35, 4)]
        );
        for split in 0..=input.len() {
            let mut s = Scanner::new(1, 1000);
            let mut out = Vec::new();
            s.feed(&input[..split], &mut out);
            s.feed(&input[split..], &mut out);
            assert_eq!(out, whole, "split at {split}");
            assert_eq!(s.finish(), Ok(4));
        }
    }

    #[test]
    fn stops_at_a_record_the_reader_treats_specially() {
        let (b, end) = boundaries(b"a,b\n1,2\n3,\"open\n4,5\n6,7\n", 1, 1000);
        assert_eq!(b, [Boundary { byte: 4, line: 1 }, Boundary { byte: 8, line: 2 }]);
        assert_eq!(end.unwrap_err().line, 2);
        let (b, end) = boundaries(b"a,b\n1,2\n333333333333,4\n5,6\n", 1, 10);
        assert_eq!(b.len(), 2);
        assert_eq!(end.unwrap_err().reason, "a record longer than the line limit");
        let blanks = format!("a,b\n1,2\n{}3,4\n5,6\n", "\n".repeat(2000));
        let (b, end) = boundaries(blanks.as_bytes(), 1, 10);
        assert_eq!(b, [Boundary { byte: 4, line: 1 }]);
        assert_eq!(end.unwrap_err().reason, "a run of blank lines");
    }

    #[test]
    fn a_resumed_scan_finds_what_the_whole_scan_found() {
        let input: Vec<u8> = (0..500)
            .flat_map(|i| format!("{i},\"x\n{i}\"\n").into_bytes())
            .collect();
        let (whole, end) = boundaries(&input, 64, 1000);
        let mid = whole[whole.len() / 2];
        let mut s = Scanner::resume(mid, 64, 1000);
        let mut rest = Vec::new();
        s.feed(&input[mid.byte as usize..], &mut rest);
        assert_eq!(rest, whole[whole.len() / 2 + 1..]);
        assert_eq!(s.finish(), end);
    }
}
