//! gzip for message bodies: compress, decompress under a size cap, and read
//! `Accept-Encoding`. Deciding *when* to compress is left to the server and client.

use std::fmt;
use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Why a gzip body could not be decompressed.
#[derive(Debug)]
pub enum GunzipError {
    /// The decompressed body would exceed the cap (given in bytes).
    TooLarge(usize),
    /// The bytes are not a valid gzip stream.
    Malformed(io::Error),
}

impl fmt::Display for GunzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GunzipError::TooLarge(limit) => {
                write!(f, "decompressed body exceeds the limit of {limit} bytes")
            }
            GunzipError::Malformed(source) => write!(f, "malformed gzip body: {source}"),
        }
    }
}

/// Decompresses `compressed`, refusing to produce more than `limit` bytes.
///
/// The cap is what makes a "gzip bomb" (1 MB that inflates to 1 GiB) harmless: decoding
/// stops at the first chunk past the limit, and the output buffer grows by doubling only
/// up to `limit`, never beyond, so the most it holds is `limit` bytes (issue 10).
/// Concatenated gzip members are accepted, as RFC 1952 allows.
pub fn gunzip_limited(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    const CHUNK_BYTES: usize = 16 * 1024;
    let mut decoder = MultiGzDecoder::new(compressed);
    let mut decompressed = Vec::new();
    let mut chunk = [0u8; CHUNK_BYTES];
    loop {
        let read = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(decompressed),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(GunzipError::Malformed(error)),
        };
        let needed = decompressed.len() + read;
        if needed > limit {
            return Err(GunzipError::TooLarge(limit));
        }
        if needed > decompressed.capacity() {
            let grown = (decompressed.capacity() * 2)
                .max(CHUNK_BYTES * 4)
                .min(limit)
                .max(needed);
            decompressed.reserve_exact(grown - decompressed.len());
        }
        decompressed.extend_from_slice(&chunk[..read]);
    }
}

/// Compresses `plain` at the default level, which on JSON gives most of the saving of
/// the highest level for a fraction of the CPU time, a fair trade on a Raspberry Pi.
pub(crate) fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(plain.len() / 4), Compression::default());
    // Writing into a Vec cannot fail.
    encoder.write_all(plain).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// One gzip member of `text` followed by `raw`: `text` deflated at the default level,
/// `raw` (random bytes that deflate cannot shrink: a compact changes page's signatures)
/// in stored blocks. Compressing `raw` would cost as much CPU time as the text for no
/// byte saved, and sharing blocks with the text costs bytes.
///
/// The two parts come from two deflate streams joined at a byte boundary: the first
/// ends with a sync flush (an empty stored block, not final), and the second never
/// refers back past its own start, so together they are one valid deflate stream, as
/// `pigz` joins its blocks. Only the gzip member's 10-byte header and 8-byte trailer
/// (CRC-32 and length, RFC 1952) are written here.
pub fn gzip_text_and_raw(text: &[u8], raw: &[u8]) -> Vec<u8> {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut out = Vec::with_capacity(HEADER.len() + text.len() / 8 + raw.len() + 64);
    out.extend_from_slice(&HEADER);
    deflate_into(
        &mut Compress::new(Compression::default(), false),
        text,
        FlushCompress::Sync,
        &mut out,
    );
    deflate_into(
        &mut Compress::new(Compression::none(), false),
        raw,
        FlushCompress::Finish,
        &mut out,
    );
    let mut crc = Crc::new();
    crc.update(text);
    crc.update(raw);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    out.extend_from_slice(&((text.len() + raw.len()) as u32).to_le_bytes());
    // A page body may be kept for other requests: without the room deflate had.
    out.shrink_to_fit();
    out
}

/// Runs `input` through `compress` into `out` and flushes as `flush` says: to the end
/// of the stream, or to a byte boundary.
fn deflate_into(compress: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let mut rest = input;
    loop {
        out.reserve(16 * 1024);
        let read_before = compress.total_in();
        // Into a Vec with room to spare, deflate cannot fail.
        let status = compress
            .compress_vec(rest, out, flush)
            .expect("deflate into memory");
        rest = &rest[(compress.total_in() - read_before) as usize..];
        let flushed = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            // The flush is complete once a call leaves room in the output.
            _ => out.len() < out.capacity(),
        };
        if rest.is_empty() && flushed {
            return;
        }
    }
}

/// Whether an `Accept-Encoding` value admits gzip: a `gzip` (or `*`) entry whose
/// quality is not zero.
pub(crate) fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|entry| {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if !coding.eq_ignore_ascii_case("gzip") && coding != "*" {
            return false;
        }
        // "q=0" (or "q=0.000") is an explicit refusal.
        !parts.any(|parameter| {
            let parameter = parameter.trim();
            let Some(quality) = parameter
                .strip_prefix("q=")
                .or_else(|| parameter.strip_prefix("Q="))
            else {
                return false;
            };
            quality.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
        })
    })
}

/// Whether a `Content-Encoding` value says gzip (`x-gzip` is its old alias).
pub(crate) fn is_gzip_encoding(content_encoding: &str) -> bool {
    let value = content_encoding.trim();
    value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let plain = b"{\"id\":\"a\"}".repeat(100);
        assert_eq!(gunzip_limited(&gzip(&plain), plain.len()).unwrap(), plain);
    }

    #[test]
    fn text_and_raw_come_back_as_one_body_and_raw_is_not_compressed() {
        let random = |count: u32| -> Vec<u8> {
            (0..count)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect()
        };
        for (text, raw) in [
            (b"{\"id\":\"a\"}\n".repeat(100), random(640)),
            (Vec::new(), Vec::new()),
            (b"{}\n".to_vec(), Vec::new()),
            (Vec::new(), random(64)),
            // Past deflate's 64 KiB stored block and its 32 KiB window.
            (b"{\"id\":\"b\"}\n".repeat(20_000), random(200_000)),
        ] {
            let joined = [text.as_slice(), &raw].concat();
            let compressed = gzip_text_and_raw(&text, &raw);
            assert_eq!(
                gunzip_limited(&compressed, joined.len()).unwrap(),
                joined,
                "{} + {}",
                text.len(),
                raw.len()
            );
            // One member, which a decoder of single members (as older nodes use) reads whole.
            let mut single = Vec::new();
            flate2::read::GzDecoder::new(compressed.as_slice())
                .read_to_end(&mut single)
                .unwrap();
            assert_eq!(single, joined);
            // The raw bytes cost their length and the 5-byte headers of their stored
            // blocks (miniz_oxide stores at most about 16 KiB a block).
            let text_alone = gzip(&text).len();
            assert!(
                compressed.len() <= text_alone + raw.len() + 5 * (raw.len() / 16_384 + 2) + 8,
                "{} > {text_alone} + {}",
                compressed.len(),
                raw.len()
            );
        }
    }

    #[test]
    fn bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        match gunzip_limited(&bomb, 1024 * 1024) {
            Err(GunzipError::TooLarge(1_048_576)) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn output_never_grows_past_the_limit() {
        let plain = vec![b'a'; 300_000];
        let output = gunzip_limited(&gzip(&plain), 300_000).unwrap();
        assert_eq!(output, plain);
        assert!(output.capacity() <= 300_000, "{}", output.capacity());
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(matches!(
            gunzip_limited(&bomb, 4 * 1024 * 1024),
            Err(GunzipError::TooLarge(4_194_304))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        let error = gunzip_limited(b"not gzip at all", 1024).unwrap_err();
        assert!(matches!(error, GunzipError::Malformed(_)));
        assert!(error.to_string().starts_with("malformed gzip body"));
    }

    #[test]
    fn accept_encoding() {
        fn check(header: &str, expected: bool) {
            assert_eq!(accepts_gzip(header), expected, "{header:?}");
        }
        check("gzip", true);
        check("deflate, gzip;q=0.5", true);
        check("GZIP", true);
        check("*", true);
        check("identity", false);
        check("", false);
        check("gzip;q=0", false);
        check("br, gzip; q=0.000", false);
        check("gzipped", false);
    }
}
