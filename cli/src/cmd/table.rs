//! kubectl's plain tables: columns as wide as their widest cell, three spaces apart. A leaf
//! every listing verb (get, get runners, describe) renders with.

/// Aligns rows like kubectl: each column as wide as its widest cell, three spaces apart.
pub fn render(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header);
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_like_kubectl() {
        let out = render(
            &["NAME".into(), "PHASE".into(), "AGE".into()],
            &[
                vec!["a".into(), "Running".into(), "5s".into()],
                vec!["longer-name".into(), "Pending".into(), "12m".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME          PHASE     AGE\na             Running   5s\nlonger-name   Pending   12m\n"
        );
    }
}
