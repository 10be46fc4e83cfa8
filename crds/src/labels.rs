//! Kubernetes label syntax: the keys and values of `spec.runnerSelector` and of the labels a
//! runner carries (`bbctl controller run --runner-label`), checked the way the apiserver does.

use std::collections::BTreeMap;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A label name or value: at most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn name_error(s: &str, what: &str) -> Option<String> {
    if s.len() > 63 {
        return Some(format!("{what} '{s}' must be at most 63 characters"));
    }
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !s.chars().all(is_name_char) || !ends(s.chars().next()) || !ends(s.chars().last()) {
        return Some(format!(
            "{what} '{s}' must consist of letters, digits, '-', '_' or '.', and begin and end with a letter or digit"
        ));
    }
    None
}

/// Why `key` is not a valid label key (`[prefix/]name`, the prefix a DNS subdomain).
pub fn key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label_ok) {
            return Some(format!(
                "label key '{key}': the prefix '{p}' must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
            ));
        }
    }
    if name.is_empty() {
        return Some(format!("label key '{key}' has an empty name"));
    }
    name_error(name, "label key")
}

/// Why `value` is not a valid label value (empty is valid).
pub fn value_error(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    name_error(value, "label value")
}

/// Whether every pair of `selector` is among `labels` (an empty selector matches everything).
pub fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes_syntax() {
        for ok in ["zone", "gpu", "example.com/zone", "a.b-c_d", "x"] {
            assert_eq!(key_error(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-zone",
            "zone-",
            "Example.com/zone",
            "/zone",
            "a/",
            "a b",
            &"z".repeat(64),
        ] {
            assert!(key_error(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn values_may_be_empty_but_not_malformed() {
        assert_eq!(value_error(""), None);
        assert_eq!(value_error("eu-west_1.a"), None);
        assert!(value_error("a/b").is_some());
        assert!(value_error("-a").is_some());
    }

    #[test]
    fn a_selector_needs_every_pair() {
        let labels: BTreeMap<_, _> = [
            ("zone".to_string(), "a".to_string()),
            ("gpu".into(), "true".into()),
        ]
        .into();
        assert!(matches(&BTreeMap::new(), &labels));
        assert!(matches(
            &[("zone".to_string(), "a".to_string())].into(),
            &labels
        ));
        assert!(!matches(
            &[("zone".to_string(), "b".to_string())].into(),
            &labels
        ));
        assert!(!matches(
            &[("arch".to_string(), "arm".to_string())].into(),
            &labels
        ));
    }
}
