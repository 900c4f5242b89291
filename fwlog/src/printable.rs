//! Strings from outside (DNS names, process names, interface names, lines read back from a
//! log) made safe to show: control characters (escape sequences, newlines, C1), invisible and
//! bidirectional formatting characters, and the backslash become `\u{…}` / `\\`, so a packet
//! or a process cannot move the cursor, retitle or clear the terminal, reorder a line or start
//! a new one. Which characters those are is std's `char::escape_debug` table (Unicode's
//! printable set), not a list of our own.

use std::borrow::Cow;

/// Whether a terminal may act on `c` or not show it: control, formatting, invisible
/// characters (shown escaped; so is the backslash, which starts an escape).
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || (!matches!(c, '\\' | '\'' | '"') && c.escape_debug().len() > 1)
}

/// Appends `value` with its unsafe characters escaped.
pub fn push_escaped(out: &mut String, value: &str) {
    push(out, value, false);
}

/// [`push_escaped`], spaces escaped too: for a `key=value` word of a text line, which a value
/// with a space could otherwise follow with words of its own.
pub fn push_escaped_word(out: &mut String, value: &str) {
    push(out, value, true);
}

/// `value`, escaped when it needs to be.
pub fn escaped(value: &str) -> Cow<'_, str> {
    if value.chars().any(|c| c == '\\' || is_unsafe(c)) {
        let mut out = String::with_capacity(value.len() + 8);
        push_escaped(&mut out, value);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(value)
    }
}

fn push(out: &mut String, value: &str, word: bool) {
    for c in value.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe(c) || (word && c == ' ') {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped() {
        let hostile = "evil\x1b]0;owned\x07\x1b[2J\r\nfake row\u{9b}31m\u{202e}gnp.exe\u{200b}\x7f";
        let shown = escaped(hostile);
        assert_eq!(
            shown,
            "evil\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{d}\\u{a}fake row\\u{9b}31m\\u{202e}gnp.exe\\u{200b}\\u{7f}"
        );
        assert!(!shown.chars().any(|c| c.is_control()));
    }

    #[test]
    fn ordinary_names_are_left_alone() {
        for name in [
            "updates.example.com",
            "Web Content",
            "curl",
            "bücher.de",
            "中文.cn",
            "it's \"x\"",
        ] {
            assert!(matches!(escaped(name), Cow::Borrowed(_)), "{name}");
        }
    }

    #[test]
    fn backslashes_are_doubled_so_escapes_cannot_be_faked() {
        assert_eq!(escaped("a\\u{1b}b"), "a\\\\u{1b}b");
    }

    #[test]
    fn words_escape_their_spaces() {
        let mut out = String::new();
        push_escaped_word(&mut out, "x[1] user=root");
        assert_eq!(out, "x[1]\\u{20}user=root");
    }
}
