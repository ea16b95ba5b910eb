//! Text that came from a component, made safe to print or store.
//!
//! A component is untrusted, so everything it says (log lines, failure messages, rejected rows,
//! names in its plan) passes through here before it reaches a terminal or a file: control
//! characters are escaped, so a component cannot move the cursor, recolour the screen or forge
//! one of the host's own lines, and lengths are bounded. This sits at the bottom of the crate
//! because every layer that handles component text needs it.

/// Text from a component, safe to print: control characters (terminal escapes) are shown
/// as `\u{..}` instead of being sent to the operator's terminal.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// A component's multi-line message, safe to print: bounded, control characters escaped, and
/// every continuation line indented so it cannot pass for one of the host's own lines.
pub fn printable_message(s: &str) -> String {
    let s = truncate(s.to_string(), 8192);
    s.split('\n').map(|line| printable(line.trim_start())).collect::<Vec<_>>().join("\n    ")
}

/// `s` cut to at most `max` bytes (on a character boundary), marked with `…` when cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_bounds_length() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable_message("one\n✔ forged"), "one\n    ✔ forged");
        assert_eq!(truncate("héllo".into(), 2), "h…");
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
