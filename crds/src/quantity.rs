//! Kubernetes resource quantities (`500m`, `1.5`, `4Gi`, `1e3`), parsed exactly enough to
//! validate limits and hand the engine integers.

/// A parsed quantity, scaled to an integer number of thousandths so `500m` CPU is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    milli: u128,
}

impl Quantity {
    /// The value in whole units, rounded up (a byte count for memory).
    pub fn ceil_units(self) -> u128 {
        self.milli.div_ceil(1000)
    }

    /// The value in thousandths (millicores for CPU).
    pub fn milli(self) -> u128 {
        self.milli
    }
}

/// Parses a non-negative quantity. Errors say what a valid one looks like.
pub fn parse_quantity(s: &str) -> Result<Quantity, String> {
    const HINT: &str = "expected a Kubernetes quantity such as 2, 1.5, 500m, 512Mi, 4Gi or 1G";
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("is empty; {HINT}"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return Err(format!("'{s}' has no valid number; {HINT}"));
    }
    // Multiplier as (numerator, denominator) so `m` stays exact.
    let (mul, div): (u128, u128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        _ => {
            if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
                let e: u32 = exp
                    .parse()
                    .map_err(|_| format!("'{s}' has an invalid exponent; {HINT}"))?;
                if e > 18 {
                    return Err(format!("'{s}' is too large"));
                }
                (10u128.pow(e), 1)
            } else {
                return Err(format!("'{s}' has unknown suffix '{suffix}'; {HINT}"));
            }
        }
    };
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(format!("'{s}' is too large"));
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| format!("'{s}' has no valid number; {HINT}"))?
    };
    let scale = 10u128.pow(frac_part.len() as u32);
    let milli = mantissa
        .checked_mul(mul)
        .and_then(|v| v.checked_mul(1000))
        .map(|v| v / (div * scale))
        .ok_or_else(|| format!("'{s}' is too large"))?;
    Ok(Quantity { milli })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_quantity("500m").map(|q| q.milli()), Ok(500));
        assert_eq!(parse_quantity("1.5").map(|q| q.milli()), Ok(1500));
        assert_eq!(parse_quantity("2").map(|q| q.ceil_units()), Ok(2));
        assert_eq!(parse_quantity("4Gi").map(|q| q.ceil_units()), Ok(4 << 30));
        assert_eq!(
            parse_quantity("1G").map(|q| q.ceil_units()),
            Ok(1_000_000_000)
        );
        assert_eq!(parse_quantity("1e3").map(|q| q.ceil_units()), Ok(1000));
        assert_eq!(parse_quantity("0.5Gi").map(|q| q.ceil_units()), Ok(1 << 29));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "-1", "4GB", ".", "1x", "1e99"] {
            assert!(parse_quantity(bad).is_err(), "{bad} should fail");
        }
    }
}
