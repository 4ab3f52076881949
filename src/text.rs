//! Text cut to a byte budget without splitting a character, and cleared of stray control characters.

use std::borrow::Cow;

/// The longest prefix of `text` that is at most `max_bytes` long and ends on a character
/// boundary.
pub fn cut(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Cuts `text` in place to at most `max_bytes`; true when something was cut.
pub fn cut_in_place(text: &mut String, max_bytes: usize) -> bool {
    let kept = cut(text, max_bytes).len();
    let was_cut = kept < text.len();
    text.truncate(kept);
    was_cut
}

/// An ASCII control character other than a tab or a line break: never meaningful in a
/// book's text, and most take six bytes of JSON (`\u0001`).
fn is_stray_control(c: char) -> bool {
    c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// `text` with every run of stray control characters (ASCII controls and DEL, but not tabs or
/// line breaks, which multi-line cells keep) replaced by one space; borrowed when there are
/// none.
pub fn without_controls(text: &str) -> Cow<'_, str> {
    // Every ASCII byte of UTF-8 is a whole character, so the bytes tell without decoding
    // characters: this check runs on every cell an import reads.
    if !text.bytes().any(|byte| is_stray_control(char::from(byte))) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if is_stray_control(c) {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_land_on_character_boundaries() {
        // (text, budget, kept)
        let table = [
            ("short", 10, "short"),
            ("exactly", 7, "exactly"),
            ("abcdef", 3, "abc"),
            ("ééé", 3, "é"),
            ("ééé", 4, "éé"),
            ("😀x", 3, ""),
            ("", 0, ""),
        ];
        for (text, budget, kept) in table {
            assert_eq!(cut(text, budget), kept, "{text:?} to {budget}");
            let mut owned = text.to_string();
            assert_eq!(cut_in_place(&mut owned, budget), kept != text, "{text:?}");
            assert_eq!(owned, kept);
        }
    }

    #[test]
    fn control_runs_become_one_space() {
        let table = [
            ("plain title", "plain title", false),
            ("line\r\nbreak\tkept", "line\r\nbreak\tkept", false),
            ("bell\x07\x01\x02run", "bell run", true),
            ("\x00\x1f\x7f", " ", true),
            ("a\x0b\nb", "a \nb", true),
            ("café\u{85}", "café\u{85}", false),
            ("📚\x01é\x7f", "📚 é ", true),
        ];
        for (text, want, owned) in table {
            let got = without_controls(text);
            assert_eq!(got, want, "{text:?}");
            assert_eq!(matches!(got, Cow::Owned(_)), owned, "{text:?}");
        }
    }
}
