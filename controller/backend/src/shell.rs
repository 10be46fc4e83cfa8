//! POSIX shell quoting, for the few places a value becomes part of a script (a session's env
//! file, a provider's banner command). Written here: the canonical single-quote form is four
//! lines, and every input byte but NUL survives it in any POSIX shell.

/// `s` as one POSIX shell word: in single quotes, each `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_survive_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        // What the shell reads back is the input, whatever it holds.
        for word in [
            "a b",
            "it's",
            "$(rm -rf /)",
            "`x`",
            "\\n\"q\"",
            "semi;colon",
            "",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(word)))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), word);
        }
    }
}
