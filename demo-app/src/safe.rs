//! Terminal-safe text: what a plugin wrote, made fit to print on a person's terminal.
//!
//! A plugin controls its name, version, description, command help, error messages, event types
//! and log messages. Printed raw, a control character in any of them drives the terminal: clear
//! the screen, recolour what follows, set the window title, or start a new line that forges an
//! `error:` of the host's own. Every such string goes through [`text`] (or [`Safe`]) on its way
//! to human output: control characters and the bidirectional-text controls are shown as Rust
//! escapes (`\u{1b}`), and a value longer than [`MAX_CHARS`] is cut there and told by its length
//! (`…(10 000 chars)`).
//!
//! JSON output does not come here: serde_json already escapes control characters in strings,
//! and a script wants the whole value.

use std::{borrow::Cow, fmt};

/// Longest value shown whole, in characters; longer ones are cut to this many.
pub const MAX_CHARS: usize = 1000;

/// `value` with every control character escaped and, past [`MAX_CHARS`] characters, cut and
/// followed by its full length. Borrows when there is nothing to change, which is nearly always.
pub fn text(value: &str) -> Cow<'_, str> {
    let long = value.chars().nth(MAX_CHARS).is_some();
    if !long && !value.chars().any(needs_escape) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len().min(MAX_CHARS * 2) + 24);
    for c in value.chars().take(MAX_CHARS) {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if long {
        out.push_str("…(");
        out.push_str(&grouped(value.chars().count()));
        out.push_str(" chars)");
    }
    Cow::Owned(out)
}

/// A string shown through [`text`] when formatted: `format!("{}", Safe(&name))`.
#[derive(Debug, Clone, Copy)]
pub struct Safe<'a>(pub &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&text(self.0))
    }
}

/// Whether `c` is shown escaped: the C0 and C1 controls and DEL (which include ESC, CR, LF, BEL
/// and the 8-bit CSI), and the characters that reorder the text displayed after them.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `n` with a space between each group of three digits: `10 000`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(text("greeter 0.1.0 — ok µs"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            text("\u{1b}[2Jhi\r\nerror: x\u{7}\u{9b}"),
            r"\u{1b}[2Jhi\u{d}\u{a}error: x\u{7}\u{9b}"
        );
        assert_eq!(text("a\u{202e}b\tc"), r"a\u{202e}b\u{9}c");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let shown = text(&"x".repeat(10_000)).into_owned();
        assert!(shown.starts_with(&"x".repeat(MAX_CHARS)), "{shown}");
        assert!(shown.ends_with("x…(10 000 chars)"), "{shown}");
        assert_eq!(
            shown.chars().count(),
            MAX_CHARS + "…(10 000 chars)".chars().count()
        );
        assert_eq!(text(&"y".repeat(MAX_CHARS)), "y".repeat(MAX_CHARS));
    }

    #[test]
    fn groups_of_three_digits() {
        assert_eq!(grouped(7), "7");
        assert_eq!(grouped(1000), "1 000");
        assert_eq!(grouped(1_234_567), "1 234 567");
    }

    #[test]
    fn safe_pads_like_a_string() {
        assert_eq!(format!("[{:<6}]", Safe("a\u{1b}")), r"[a\u{1b}]");
        assert_eq!(format!("[{:<4}]", Safe("ab")), "[ab  ]");
    }
}
