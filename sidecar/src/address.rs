//! Request authorities: `host:port`, `[v6]:port` or a bare host, split with the scheme's
//! default port. A leaf the proxy, the decision and the fuzz harness share.

/// Splits `host:port` (or `[v6]:port`), with `default` when no port is given.
pub fn host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        (
            h.to_string(),
            tail.strip_prefix(':')
                .map(str::parse)
                .transpose()
                .ok()?
                .unwrap_or(default),
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default),
        }
    };
    if host.is_empty() {
        None
    } else {
        Some((host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(host_port("a.com:443", 1), Some(("a.com".into(), 443)));
        assert_eq!(host_port("a.com", 80), Some(("a.com".into(), 80)));
        assert_eq!(host_port("[::1]:8443", 1), Some(("::1".into(), 8443)));
        assert_eq!(host_port("[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(host_port("a.com:x", 1), None);
        assert_eq!(host_port(":443", 1), None);
    }
}
