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
pub fn text<R: Read + Send + 'static>(input: R) -> Result<(Compression, Box<dyn Read + Send>), DecodeError> {
    let mut input = Source(input);
    let head = read_head(&mut input)?;
    let kind = compression(&head);
    let raw = Chain::new(head, input);
    let mut decoded: Box<dyn Read + Send> = match kind {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(ZstdFrames::new(raw).map_err(|e| DecodeError::Corrupt(kind, e.to_string()))?),
    };
    let head = read_head(&mut decoded).map_err(|e| classify(kind, e))?;
    if let Some(name) = foreign_encoding(&head) {
        return Err(DecodeError::Encoding(name));
    }
    Ok((kind, Box::new(Chain::new(head, decoded))))
}

/// An error of the object's byte stream itself (the network, S3): worth a
/// retry, unlike a stream that does not decompress.
#[derive(Debug)]
struct SourceError(io::Error);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The object's bytes, their errors marked as the source's.
struct Source<R>(R);

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| io::Error::new(e.kind(), SourceError(e)))
    }
}

/// Whether `e`, met while reading a file's text, came from the object's
/// byte stream (transient) rather than from decoding it (the file's fault).
pub fn is_source_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SourceError>())
}

/// An error met reading the text of a `kind` object, as the file's fault or not.
pub fn classify(kind: Compression, e: io::Error) -> DecodeError {
    if kind == Compression::None || is_source_error(&e) {
        DecodeError::Io(e)
    } else {
        DecodeError::Corrupt(kind, e.to_string())
    }
}

/// Every frame of a zstd stream, one after another (a file written by
/// `pzstd`, or files concatenated, has several; a decoder of one frame would
/// end the text at the first, and lose the rest without a word).
struct ZstdFrames {
    frame: Option<ruzstd::decoding::StreamingDecoder<Box<dyn Read + Send>, ruzstd::decoding::FrameDecoder>>,
}

impl ZstdFrames {
    fn new(source: impl Read + Send + 'static) -> Result<Self, ruzstd::decoding::errors::FrameDecoderError> {
        let source: Box<dyn Read + Send> = Box::new(source);
        Ok(ZstdFrames {
            frame: Some(ruzstd::decoding::StreamingDecoder::new(source)?),
        })
    }
}

impl Read for ZstdFrames {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(frame) = self.frame.as_mut() else { return Ok(0) };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The frame ended: another may follow.
            let mut source = self.frame.take().expect("a frame").into_inner();
            let head = read_head(&mut source)?;
            if head.is_empty() {
                return Ok(0);
            }
            let next: Box<dyn Read + Send> = Box::new(Chain::new(head, source));
            // A frame that does not start as one (a skippable frame too,
            // which ruzstd does not read) is the file's fault.
            let decoder = ruzstd::decoding::StreamingDecoder::new(next)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd frame: {e}")))?;
            self.frame = Some(decoder);
        }
    }
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
    fn every_frame_of_a_zstd_file_is_read() {
        let a = b"a,b\n1,2\n".repeat(500);
        let b = b"3,4\n".repeat(700);
        let mut two = zstd_frame(&a);
        two.extend(zstd_frame(&b));
        let (kind, mut t) = text(std::io::Cursor::new(two)).unwrap();
        assert_eq!(kind, Compression::Zstd);
        assert_eq!(read_all(&mut t), [a, b].concat());
    }

    /// One zstd frame of `bytes`, written by the reference encoder would be
    /// best; ruzstd's own encoder keeps this test free of C.
    fn zstd_frame(bytes: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn a_stream_that_stops_decompressing_is_the_files_fault_and_a_failed_read_is_not() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b"a,b\n1,2\n".repeat(20_000)).unwrap();
        let mut gz = gz.finish().unwrap();
        gz.truncate(gz.len() / 2);
        let (kind, mut t) = text(std::io::Cursor::new(gz)).unwrap();
        let e = t.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(classify(kind, e), DecodeError::Corrupt(Compression::Gzip, _)));
        // The network failing mid-body is the source's, whatever the encoding.
        struct Fails;
        impl Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let gz_head = std::io::Cursor::new(vec![0x1f, 0x8b, 8, 0]).chain(Fails);
        match text(gz_head) {
            Err(DecodeError::Io(e)) => assert!(is_source_error(&e)),
            Ok((kind, mut t)) => {
                let e = t.read_to_end(&mut Vec::new()).unwrap_err();
                assert!(matches!(classify(kind, e), DecodeError::Io(_)));
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_broken_stream_says_so() {
        let e = text(std::io::Cursor::new(vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0]))
            .err()
            .unwrap();
        assert!(matches!(e, DecodeError::Corrupt(Compression::Zstd, _)), "{e}");
    }
}
