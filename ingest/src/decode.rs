//! What an object's bytes are before they are CSV: gzip or zstd compressed
//! (told by their magic bytes, whatever the key says), and then UTF-8 text,
//! or text in an encoding the pipeline does not read (told by its byte-order
//! mark), which fails the file with a reason instead of ingesting garbage.

use std::io::{self, Read};

/// How an object's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed: the bytes are the text (and ranged reads work).
    None,
    /// gzip (RFC 1952), every member of a multi-member file.
    Gzip,
    /// Zstandard (RFC 8878).
    Zstd,
}

/// The compression the first bytes of an object announce.
pub fn compression(first: &[u8]) -> Compression {
    match first {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

/// A byte-order mark of an encoding other than UTF-8, with what to do; `None`
/// for UTF-8 (with or without its BOM, which the CSV reader strips) and for
/// text without a BOM, which is read as UTF-8 (a line that is not fails alone).
pub fn foreign_encoding(first: &[u8]) -> Option<&'static str> {
    // UTF-32 LE's BOM starts with UTF-16 LE's: test the longer first.
    match first {
        [0xff, 0xfe, 0x00, 0x00, ..] => Some("UTF-32 (little-endian)"),
        [0x00, 0x00, 0xfe, 0xff, ..] => Some("UTF-32 (big-endian)"),
        [0xff, 0xfe, ..] => Some("UTF-16 (little-endian)"),
        [0xfe, 0xff, ..] => Some("UTF-16 (big-endian)"),
        _ => None,
    }
}

/// An object that cannot be read as text.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Text in another encoding than UTF-8.
    #[error("the file is {0} text; the pipeline reads UTF-8: export it as UTF-8 (in Excel, \"CSV UTF-8\"; with iconv, `iconv -f UTF-16 -t UTF-8`) and upload it again")]
    Encoding(&'static str),
    /// The compressed stream does not decode.
    #[error("the file looks {0:?}-compressed but does not decompress: {1}")]
    Corrupt(Compression, String),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// `input` decompressed as its first bytes say, checked to be UTF-8 text.
/// Returns the compression found and the text's bytes.
pub fn text<R: Read + Send + 'static>(mut input: R) -> Result<(Compression, Box<dyn Read + Send>), DecodeError> {
    let head = read_head(&mut input)?;
    let kind = compression(&head);
    let raw = Chain::new(head, input);
    let mut decoded: Box<dyn Read + Send> = match kind {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(raw).map_err(|e| DecodeError::Corrupt(kind, e.to_string()))?,
        ),
    };
    let head = read_head(&mut decoded).map_err(|e| match kind {
        Compression::None => DecodeError::Io(e),
        _ => DecodeError::Corrupt(kind, e.to_string()),
    })?;
    if let Some(name) = foreign_encoding(&head) {
        return Err(DecodeError::Encoding(name));
    }
    Ok((kind, Box::new(Chain::new(head, decoded))))
}

/// Up to the first four bytes of `r` (fewer only at its end): a body may
/// arrive in pieces smaller than a magic number.
fn read_head(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(4);
    let mut buf = [0u8; 4];
    while head.len() < 4 {
        let n = r.read(&mut buf[..4 - head.len()])?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// Bytes already read, then the rest of the stream.
struct Chain<R> {
    head: io::Cursor<Vec<u8>>,
    tail: R,
}

impl<R> Chain<R> {
    fn new(head: Vec<u8>, tail: R) -> Self {
        Chain {
            head: io::Cursor::new(head),
            tail,
        }
    }
}

impl<R: Read> Read for Chain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.head.read(buf)? {
            0 => self.tail.read(buf),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut dyn Read) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn plain_gzip_and_zstd_read_the_same() {
        let csv = b"a,b\n1,2\n".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &csv).unwrap();
        let gz = gz.finish().unwrap();
        for (bytes, want) in [(csv.clone(), Compression::None), (gz, Compression::Gzip)] {
            let (kind, mut text) = text(std::io::Cursor::new(bytes)).unwrap();
            assert_eq!(kind, want);
            assert_eq!(read_all(&mut text), csv);
        }
    }

    #[test]
    fn bodies_that_arrive_a_byte_at_a_time_are_told_apart() {
        struct Drip(std::io::Cursor<Vec<u8>>);
        impl Read for Drip {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1);
                self.0.read(&mut buf[..n])
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"x,y\n").unwrap();
        let (kind, mut t) = text(Drip(std::io::Cursor::new(gz.finish().unwrap()))).unwrap();
        assert_eq!((kind, read_all(&mut t)), (Compression::Gzip, b"x,y\n".to_vec()));
        let (kind, mut t) = text(Drip(std::io::Cursor::new(b"ab".to_vec()))).unwrap();
        assert_eq!((kind, read_all(&mut t)), (Compression::None, b"ab".to_vec()));
    }

    #[test]
    fn other_encodings_fail_with_their_name() {
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("a,b\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let e = text(std::io::Cursor::new(utf16)).err().unwrap().to_string();
        assert!(e.contains("UTF-16 (little-endian)") && e.contains("UTF-8"), "{e}");
        let e = text(std::io::Cursor::new(vec![0, 0, 0xfe, 0xff, 0, 0, 0, 0x61]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("UTF-32 (big-endian)"), "{e}");
        // UTF-8's own BOM is UTF-8.
        assert!(text(std::io::Cursor::new(b"\xef\xbb\xbfa,b\n".to_vec())).is_ok());
        // Compressed UTF-16 is told too.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[0xfe, 0xff, 0, 0x61]).unwrap();
        let e = text(std::io::Cursor::new(gz.finish().unwrap()))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("UTF-16 (big-endian)"), "{e}");
    }

    #[test]
    fn a_broken_stream_says_so() {
        let e = text(std::io::Cursor::new(vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0]))
            .err()
            .unwrap();
        assert!(matches!(e, DecodeError::Corrupt(Compression::Zstd, _)), "{e}");
    }
}
