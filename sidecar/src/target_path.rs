//! The request target's path, decoded and normalised once (RFC 3986 §6.2.2: percent-decoding of
//! unreserved characters, dot-segment removal) before any rule sees it; targets whose meaning a
//! server could read differently from the rule are refused instead of guessed at.

/// Why a path was refused: it means different things to different servers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "egress: the request path is ambiguous: {0}; send it without encoded separators, encoded or parameterised dot segments, or NUL"
)]
pub struct Ambiguous(pub &'static str);

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §5.2.4 on a path of segments: `.` dropped, `..` removes the segment before it
/// (never climbing above the root).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The normalised form of an origin-form path (`/a/./b/../c%7e` → `/a/c~`), the form rules are
/// matched against and the form sent upstream. Escapes of reserved characters stay escaped, with
/// upper-case hex.
pub fn normalise(raw: &str) -> Result<String, Ambiguous> {
    if !raw.starts_with('/') {
        return Err(Ambiguous("it does not start with '/'"));
    }
    if raw.contains('\\') {
        return Err(Ambiguous("it contains a backslash"));
    }
    // RFC 3986 targets are ASCII; raw bytes beyond it are read differently by different servers.
    if !raw.is_ascii() {
        return Err(Ambiguous(
            "it contains raw non-ASCII bytes (percent-encode them)",
        ));
    }
    let bytes = raw.as_bytes();
    let mut partly = String::with_capacity(raw.len());
    // The fully decoded path, only to check that it means something unambiguous.
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            partly.push(char::from(b));
            decoded.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(Ambiguous("it has a malformed percent-escape"));
        };
        let v = hi * 16 + lo;
        match v {
            b'/' => return Err(Ambiguous("it contains an encoded '/' (%2F)")),
            b'\\' => return Err(Ambiguous("it contains an encoded '\\' (%5C)")),
            0 => return Err(Ambiguous("it contains NUL (%00)")),
            _ => {}
        }
        if unreserved(v) {
            partly.push(char::from(v));
        } else {
            partly.push_str(&format!("%{v:02X}"));
        }
        decoded.push(v);
        i += 3;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(Ambiguous("it is not UTF-8 once decoded"));
    }
    let raw_segments: Vec<&str> = raw.split('/').collect();
    let segments: Vec<&str> = partly.split('/').collect();
    let mut has_dots = false;
    for (seg, raw_seg) in segments.iter().zip(&raw_segments) {
        if matches!(*seg, "." | "..") {
            if seg != raw_seg {
                return Err(Ambiguous("it has an encoded dot segment"));
            }
            has_dots = true;
        }
        // `/..;x/` is `..` to servlet containers that strip path parameters.
        if seg.starts_with("..;") || seg.starts_with(".;") {
            return Err(Ambiguous("it has a dot segment with a path parameter"));
        }
    }
    if !has_dots {
        return Ok(partly);
    }
    // Servers that merge `//` before removing dot segments would land elsewhere than the rule.
    if partly.contains("//") {
        return Err(Ambiguous("it combines '//' with dot segments"));
    }
    Ok(remove_dot_segments(&partly))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/items", "/api/items"),
            ("/api/../other", "/other"),
            ("/api/./items", "/api/items"),
            ("/a/b/../../../c", "/c"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%61pi/items%7e", "/api/items~"),
            ("/q/a%3fb%2bc", "/q/a%3Fb%2Bc"),
            ("/search/caf%C3%A9", "/search/caf%C3%A9"),
            ("//double//slash", "//double//slash"),
            ("/v1/..../x", "/v1/..../x"),
        ] {
            assert_eq!(normalise(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        for raw in [
            "/api/%2e%2e/other",
            "/api/%2E./other",
            "/api/.%2e",
            "/api/..%2fother",
            "/api%2F..%2Fother",
            "/api/%5c../other",
            "/api\\..\\other",
            "/api/..;/other",
            "/api/.;x/other",
            "/a%00b",
            "/a%zz",
            "/a%4",
            "/caf%E9",
            "/api//../other",
            "api/items",
            "/caf\u{e9}",
        ] {
            assert!(normalise(raw).is_err(), "{raw} was accepted");
        }
    }

    #[test]
    fn the_error_says_what_is_wrong() {
        let e = normalise("/api/..%2fx").expect_err("ambiguous");
        assert!(e.to_string().contains("encoded '/' (%2F)"), "{e}");
    }
}
