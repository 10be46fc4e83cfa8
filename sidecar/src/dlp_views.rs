//! The decoded views outbound DLP scans besides the raw bytes, so an encoding the detectors were
//! not precomputed for does not carry a secret out: percent-decoding (with `+` as space), JSON
//! string escapes, MIME transfer encodings (base64 wrapped into lines, quoted-printable), and
//! every run of base64 / base64url (at each of its four alignments) or hex (either case, both
//! nibble alignments).

use std::borrow::Cow;

/// Base64 runs shorter than this decode to fewer than 8 bytes, below the shortest secret.
const MIN_B64_RUN: usize = 11;
/// Hex runs shorter than this decode to fewer than 8 bytes.
const MIN_HEX_RUN: usize = 16;

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` of either case decoded, `+` read as a space (as in forms). Borrowed when there is no
/// `%` (a `+` alone only hides a secret that holds a space: not worth a pass over every body).
pub fn percent_decoded(data: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', data).is_none() {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'%' => match (
                data.get(i + 1).copied().and_then(hex_val),
                data.get(i + 2).copied().and_then(hex_val),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// JSON string escapes resolved (`\n`, `\"`, `\/`, `\u00XX`, surrogate pairs). Borrowed unless
/// a `\u` or `\/` occurs: `\n` and `\"` alone (in every chat request) hide nothing a token holds.
pub fn json_unescaped(data: &[u8]) -> Cow<'_, [u8]> {
    let escapes_hide =
        memchr::memchr_iter(b'\\', data).any(|i| matches!(data.get(i + 1), Some(b'u' | b'/')));
    if !escapes_hide {
        return Cow::Borrowed(data);
    }
    let hex4 = |at: usize| -> Option<u32> {
        let s = data.get(at..at + 4)?;
        s.iter()
            .try_fold(0u32, |acc, &b| hex_val(b).map(|v| acc * 16 + u32::from(v)))
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'\\' || i + 1 >= data.len() {
            out.push(data[i]);
            i += 1;
            continue;
        }
        let simple = match data[i + 1] {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        if data[i + 1] == b'u'
            && let Some(hi) = hex4(i + 2)
        {
            let mut code = hi;
            let mut used = 6;
            if (0xD800..0xDC00).contains(&hi)
                && data.get(i + 6..i + 8) == Some(b"\\u")
                && let Some(lo) = hex4(i + 8)
                && (0xDC00..0xE000).contains(&lo)
            {
                code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                used = 12;
            }
            let c = char::from_u32(code).unwrap_or('\u{FFFD}');
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += used;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Base64 and base64url digit values; `NOT_B64` elsewhere. A table: this runs on every byte.
const NOT_B64: u8 = 0xFF;
const B64: [u8; 256] = {
    let mut t = [NOT_B64; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

fn b64_val(b: u8) -> Option<u32> {
    let v = B64[usize::from(b)];
    (v != NOT_B64).then_some(u32::from(v))
}

/// Decodes base64 or base64url characters (no padding expected), dropping leftover bits.
fn b64_decode(run: &[u8], out: &mut Vec<u8>) {
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in run {
        let Some(v) = b64_val(c) else { break };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
}

/// Every decoding of every base64 / base64url and hex run long enough to hold a secret, joined
/// by newlines into one buffer (so the detectors run once, not once per run): each base64 run from
/// its first four characters (a secret encoded at any byte offset of a larger plaintext decodes
/// whole in one of them), each hex run from its first two. Empty when there is no such run.
pub fn decoded_runs(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if B64[usize::from(data[i])] == NOT_B64 {
            i += 1;
            continue;
        }
        let start = i;
        while i < data.len() && B64[usize::from(data[i])] != NOT_B64 {
            i += 1;
        }
        let run = &data[start..i];
        if run.len() < MIN_B64_RUN {
            continue;
        }
        for offset in 0..4 {
            b64_decode(&run[offset..], &mut out);
            out.push(b'\n');
        }
        // Hex digits are base64 characters too: look for hex runs inside this run.
        let mut j = 0;
        while j < run.len() {
            if hex_val(run[j]).is_none() {
                j += 1;
                continue;
            }
            let hs = j;
            while j < run.len() && hex_val(run[j]).is_some() {
                j += 1;
            }
            let hex = &run[hs..j];
            if hex.len() >= MIN_HEX_RUN {
                for offset in 0..2 {
                    out.extend(
                        hex[offset..]
                            .chunks_exact(2)
                            .filter_map(|p| Some(hex_val(p[0])? * 16 + hex_val(p[1])?)),
                    );
                    out.push(b'\n');
                }
            }
        }
    }
    out
}

/// Base64 lines at least this long that end in a line break are taken to continue on the next
/// line (MIME wraps at 76 characters, PEM at 64): a secret split by the wrap is whole again.
const WRAPPED_LINE: usize = 60;

/// Wrapped base64 joined back: every line break that ends a base64 line of `WRAPPED_LINE` or
/// more characters and is followed by more base64 is removed. `None` when there is none.
pub fn base64_lines_joined(data: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut run = 0usize;
    let mut i = 0;
    let is_b64 = |b: u8| B64[usize::from(b)] != NOT_B64 || b == b'=';
    while i < data.len() {
        let b = data[i];
        let brk = match (b, data.get(i + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\n', _) => 1,
            _ => 0,
        };
        if brk > 0 && run >= WRAPPED_LINE && data.get(i + brk).is_some_and(|&n| is_b64(n)) {
            out.get_or_insert_with(|| data[..i].to_vec());
            i += brk;
            run = 0;
            continue;
        }
        run = if is_b64(b) { run + 1 } else { 0 };
        if let Some(o) = out.as_mut() {
            o.push(b);
        }
        i += 1;
    }
    out
}

/// Quoted-printable decoded (`=XX` bytes, `=` soft line breaks), when the data says it is
/// quoted-printable or has a soft line break; `None` otherwise.
pub fn quoted_printable_decoded(data: &[u8]) -> Option<Vec<u8>> {
    let soft_break = memchr::memmem::find(data, b"=\n").is_some()
        || memchr::memmem::find(data, b"=\r\n").is_some();
    let declared = || {
        data.windows(16)
            .any(|w| w.eq_ignore_ascii_case(b"quoted-printable"))
    };
    if !soft_break && !declared() {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'=' {
            out.push(data[i]);
            i += 1;
            continue;
        }
        match (data.get(i + 1).copied(), data.get(i + 2).copied()) {
            (Some(b'\n'), _) => i += 2,
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(h), Some(l)) if hex_val(h).is_some() && hex_val(l).is_some() => {
                out.push(hex_val(h).unwrap_or(0) * 16 + hex_val(l).unwrap_or(0));
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn any_run_contains(data: &[u8], needle: &[u8]) -> bool {
        decoded_runs(data)
            .windows(needle.len())
            .any(|w| w == needle)
    }

    #[test]
    fn percent_and_form_encoding() {
        assert_eq!(&*percent_decoded(b"a%2Db%2dc+d%zz"), b"a-b-c d%zz");
        assert!(matches!(percent_decoded(b"plain+text"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_escapes() {
        assert_eq!(
            &*json_unescaped(br#"s\u0065cr\u0045t \"q\" \/ \ud83d\ude00 \n"#),
            "secrEt \"q\" / \u{1F600} \n".as_bytes()
        );
        assert_eq!(&*json_unescaped(br"\u12"), br"\u12");
        assert!(matches!(json_unescaped(br#"a\nb \"c\""#), Cow::Borrowed(_)));
    }

    #[test]
    fn base64_at_every_alignment_and_both_alphabets() {
        let secret = b"hunter2-very-secret";
        for prefix in ["", "x", "xy", "xyz"] {
            let mut plain = prefix.as_bytes().to_vec();
            plain.extend_from_slice(secret);
            plain.extend_from_slice(b" and more text");
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                let enc = engine.encode(&plain);
                let wrapped = format!("data={enc}&x=1");
                assert!(any_run_contains(wrapped.as_bytes(), secret), "{wrapped}");
            }
        }
    }

    #[test]
    fn hex_of_either_case_and_nibble_alignment() {
        let secret = b"hunter2-very-secret";
        let lower: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mixed: String = lower
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 3 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for text in [format!("k={lower};"), format!("k=0{mixed};"), mixed.clone()] {
            assert!(any_run_contains(text.as_bytes(), secret), "{text}");
        }
    }

    #[test]
    fn short_runs_are_skipped() {
        assert!(decoded_runs(b"hello world, q=abc & x=1 (short words only)").is_empty());
    }

    #[test]
    fn mime_base64_wrapped_at_76_columns_is_joined() {
        let secret = b"wrapped-secret-9f8e7d6c5b";
        let mut plain = vec![b'.'; 50];
        plain.extend_from_slice(secret);
        plain.extend(vec![b'.'; 50]);
        let enc = base64::engine::general_purpose::STANDARD.encode(&plain);
        let wrapped: Vec<&str> = enc
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        let body = format!(
            "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            wrapped.join("\r\n")
        );
        assert!(
            !any_run_contains(body.as_bytes(), secret),
            "split by the wrap"
        );
        let joined = base64_lines_joined(body.as_bytes()).expect("joined");
        assert!(any_run_contains(&joined, secret));
        assert_eq!(base64_lines_joined(b"short line\nnext line\n"), None);
    }

    #[test]
    fn quoted_printable_soft_breaks_and_escapes() {
        let body = b"Content-Transfer-Encoding: quoted-printable\r\n\r\nsecret=3Dqp-sec=\r\nret-value=\nend";
        assert_eq!(
            quoted_printable_decoded(body).expect("decoded"),
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nsecret=qp-secret-valueend"
                .to_vec()
        );
        assert_eq!(quoted_printable_decoded(b"a=1&b=2"), None);
    }
}
