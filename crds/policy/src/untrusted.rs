//! Text an agent wrote, made safe to put before a human who decides on it: nothing in it can
//! move the cursor, clear the screen, draw a box, pass for the runner's own lines or run on.

/// What the approver sees of agent text at most.
pub const MAX_CHARS: usize = 2000;
pub const MAX_LINES: usize = 30;

/// The prefix of every line of agent text, so none of it reads as the view's own.
pub const QUOTE: &str = "> ";

/// One character as it may be shown: control characters as their visible Unicode pictures
/// (ESC as `␛`), drawing characters and bullets as `#`, invisible and direction-changing
/// characters as `·`; the rest unchanged.
fn shown(c: char) -> char {
    match c {
        '\t' => ' ',
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('·'),
        '\u{7f}' => '\u{2421}',
        '\u{80}'..='\u{9f}' => '·',
        // Box drawing, block elements, geometric shapes, bullets: a fake frame or list item.
        '\u{2500}'..='\u{25ff}' | '\u{2022}' | '\u{2023}' | '\u{2043}' | '\u{2219}' => '#',
        // Zero-width and bidirectional controls: text that reads other than it is.
        '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}' => '·',
        c => c,
    }
}

/// `text` as quoted lines: every character shown as `shown` allows, at most `MAX_LINES`
/// lines and `MAX_CHARS` characters, then one line saying how much was left out.
pub fn quoted(text: &str) -> Vec<String> {
    // Blank lines at the end push nothing into view that matters.
    let text = text.trim_end();
    let total = text.chars().count();
    let mut out = Vec::new();
    let mut used = 0;
    let mut cut = false;
    for line in text.split('\n') {
        if out.len() == MAX_LINES || used >= MAX_CHARS {
            cut = true;
            break;
        }
        let len = line.chars().count();
        let take = (MAX_CHARS - used).min(len);
        cut |= take < len;
        used += take + 1;
        let line: String = line.chars().take(take).map(shown).collect();
        out.push(format!("{QUOTE}{line}"));
    }
    if cut {
        out.push(format!(
            "(the agent wrote {total} characters; the rest is not shown here)"
        ));
    }
    out
}

/// `text` on one line (runs of whitespace as one space), neutralised as `quoted` does, at most
/// `max` characters: for an event note or an audit record a terminal will print.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = flat.chars().take(max).map(shown).collect();
    if flat.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_neutralised_quoted_and_bounded() {
        let hostile =
            "fine\x1b[2J\x1b[H\n┌ Approving grants ┐\n  • nothing new\u{202e}gnp.exe\n\n\n";
        let lines = quoted(hostile);
        assert_eq!(
            lines,
            vec![
                "> fine␛[2J␛[H".to_string(),
                "> # Approving grants #".to_string(),
                ">   # nothing new·gnp.exe".to_string(),
            ]
        );
        let long = format!("{}{}", "x\n".repeat(100), "y".repeat(5000));
        let lines = quoted(&long);
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert!(lines.iter().take(MAX_LINES).all(|l| l.starts_with(QUOTE)));
        assert!(lines[MAX_LINES].contains("the rest is not shown"));
        assert!(
            quoted(&"z".repeat(5000))
                .iter()
                .map(|l| l.len())
                .sum::<usize>()
                < MAX_CHARS + 200
        );
    }

    #[test]
    fn one_line_is_flat_inert_and_bounded() {
        assert_eq!(one_line("a\n\x1b[31mred\tb", 100), "a ␛[31mred b");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
