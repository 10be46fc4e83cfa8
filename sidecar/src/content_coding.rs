//! Request bodies sent with a `Content-Encoding` (gzip, deflate, br, zstd), decoded so DLP reads
//! what the upstream will read. Bounded: output beyond `MAX_DECODED` is a refusal, never a buffer
//! that grows with a decompression bomb.

use std::io::Read;

/// The most a body may expand to for scanning.
pub const MAX_DECODED: u64 = 32 * 1024 * 1024;

/// Why a coded body cannot be scanned (and so is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecodable {
    #[error(
        "its Content-Encoding {0:?} is not one the egress proxy can read (gzip, deflate, br, zstd)"
    )]
    Unknown(String),
    #[error("it does not decode as its Content-Encoding {0} says")]
    Corrupt(&'static str),
    #[error("it expands beyond {} MiB once decoded", MAX_DECODED / 1024 / 1024)]
    TooLarge,
}

/// The codings of a `Content-Encoding` value, in the order they were applied; `identity` left out.
pub fn codings(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect()
}

fn read_bounded(mut r: impl Read, name: &'static str) -> Result<Vec<u8>, Undecodable> {
    let mut out = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .map_err(|_| Undecodable::Corrupt(name))?;
    if n as u64 > MAX_DECODED {
        return Err(Undecodable::TooLarge);
    }
    Ok(out)
}

/// `body` with `codings` undone (the last applied first).
pub fn decode(body: &[u8], codings: &[String]) -> Result<Vec<u8>, Undecodable> {
    let mut data = body.to_vec();
    for c in codings.iter().rev() {
        data = match c.as_str() {
            "gzip" | "x-gzip" => {
                read_bounded(flate2::read::MultiGzDecoder::new(&data[..]), "gzip")?
            }
            // "deflate" means zlib-wrapped; raw deflate is what some clients send anyway.
            "deflate" => match read_bounded(flate2::read::ZlibDecoder::new(&data[..]), "deflate") {
                Ok(d) => d,
                Err(Undecodable::TooLarge) => return Err(Undecodable::TooLarge),
                Err(_) => read_bounded(flate2::read::DeflateDecoder::new(&data[..]), "deflate")?,
            },
            "br" => read_bounded(
                brotli_decompressor::Decompressor::new(&data[..], 4096),
                "br",
            )?,
            "zstd" => {
                let d = ruzstd::decoding::StreamingDecoder::new(&data[..])
                    .map_err(|_| Undecodable::Corrupt("zstd"))?;
                read_bounded(d, "zstd")?
            }
            other => return Err(Undecodable::Unknown(other.to_string())),
        };
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn codings_are_undone_in_reverse() {
        let plain = b"the token is hunter2-very-secret".to_vec();
        assert_eq!(decode(&gzip(&plain), &codings("gzip")), Ok(plain.clone()));
        assert_eq!(
            decode(&gzip(&gzip(&plain)), &codings("gzip, gzip")),
            Ok(plain.clone())
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).expect("write");
        assert_eq!(
            decode(&z.finish().expect("zlib"), &codings("deflate")),
            Ok(plain.clone())
        );
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&plain).expect("write");
        assert_eq!(
            decode(&raw.finish().expect("raw"), &codings("Deflate")),
            Ok(plain.clone())
        );
        assert_eq!(decode(&plain, &codings("identity")), Ok(plain));
    }

    #[test]
    fn bombs_garbage_and_unknown_codings_are_refused() {
        let bomb = gzip(&vec![0u8; (MAX_DECODED + 1024) as usize]);
        assert!(bomb.len() < 100 * 1024, "a small body");
        assert_eq!(decode(&bomb, &codings("gzip")), Err(Undecodable::TooLarge));
        assert_eq!(
            decode(b"not gzip", &codings("gzip")),
            Err(Undecodable::Corrupt("gzip"))
        );
        assert_eq!(
            decode(b"x", &codings("compress")),
            Err(Undecodable::Unknown("compress".into()))
        );
        assert!(decode(b"not zstd", &codings("zstd")).is_err());
        assert!(decode(b"not br", &codings("br")).is_err());
    }
}
