//! Durations as people write and read them: the one grammar every flag and field takes
//! (`90s`, `1h30m`, `7d`), and Kubernetes' short ages (`3m20s`, `2d3h`) printed in tables.

use std::time::Duration;

/// `500ms`, `90s`, `30m`, `8h`, `7d` and sums of them (`1h30m`), or a whole number of seconds
/// (`30`): every duration a flag (`--timeout`) or field (`expiresAfter`) of bot-bottle takes.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not a duration; use for example 90s, 5m, 1h30m or 7d");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d"]
            .into_iter()
            .find(|u| rest.starts_with(u))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            _ => n.checked_mul(86400).map(Duration::from_secs),
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(bad)?;
    }
    if s.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// `parse`, for how long a grant lasts: more than nothing.
pub fn parse_expiry(s: &str) -> Result<Duration, String> {
    match parse(s)? {
        d if d.is_zero() => Err(format!(
            "'{s}' is no time at all: an expiry must be more than 0"
        )),
        d => Ok(d),
    }
}

/// `parse`, for a wait that must be more than nothing (`lifecycle.ttl`, `idleSuspendAfter`).
pub fn parse_positive(s: &str) -> Result<Duration, String> {
    match parse(s)? {
        d if d.is_zero() => Err(format!("'{s}' is no time at all: use more than 0")),
        d => Ok(d),
    }
}

/// Kubernetes' short human durations (`45s`, `3m20s`, `5h`, `2d3h`, `400d`).
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_grammar_for_every_duration() {
        let secs = Duration::from_secs;
        assert_eq!(parse("90s"), Ok(secs(90)));
        assert_eq!(parse("1h30m"), Ok(secs(5400)));
        assert_eq!(parse("7d"), Ok(secs(604800)));
        assert_eq!(parse("30"), Ok(secs(30)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("1m500ms"), Ok(Duration::from_millis(60_500)));
        for bad in [
            "",
            "soon",
            "1w",
            "h",
            "-1s",
            "1.5h",
            "5m ",
            "99999999999999999999d",
            "1d9999999999999999999d",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("is not a duration"), "{e}");
        }
        assert_eq!(parse_expiry("5"), Ok(secs(5)));
        for zero in ["0", "0s", "0m0s"] {
            assert!(parse_expiry(zero).is_err(), "{zero}");
        }
    }

    #[test]
    fn durations_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(86400 * 2 + 3600 * 3), "2d3h");
        assert_eq!(human_duration(86400 * 400), "400d");
        assert_eq!(human_duration(86400 * 800), "2y");
    }
}
