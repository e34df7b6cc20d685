//! A subcommand's output on stdout (`audit`, `policy`, `doctor`).
//!
//! `println!` panics when a write fails (`> /dev/full`: exit 101 and a
//! backtrace), and `std::io::Stdout` takes a write that fails with `EBADF`
//! (a standard output open for reading only) for done. Here a failed
//! write is an error that names standard output, which `main` prints on
//! one line before it exits 125. A reader that went away (`| head`:
//! `EPIPE`, SIGPIPE being ignored by Rust programs) is no error: the rest
//! is dropped quietly and the command ends with the status it decided
//! (lint's 1 for its findings included).

use std::io::{self, Write};

use anyhow::{Context, Result};

/// Runs `print` on stdout ([`writer`]), then flushes it.
pub fn stdout(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let mut out = writer()?;
    match print(&mut out).and_then(|()| out.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("cannot write to standard output"),
    }
}

/// Whether `error` is, at its root, a reader that went away.
#[cfg(unix)]
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|error| error.kind() == io::ErrorKind::BrokenPipe)
}

/// Standard output, buffered, through a descriptor of its own (a `dup` of
/// 1, so that a write failing with `EBADF` is an error, not done), once it
/// is known to be open for writing: output that could not go anywhere
/// fails before anything is done.
#[cfg(unix)]
pub fn writer() -> Result<io::BufWriter<std::fs::File>> {
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let flags = nix::fcntl::fcntl(stdout.as_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .context("cannot write to standard output")?;
    if flags & nix::libc::O_ACCMODE == nix::libc::O_RDONLY {
        return Err(io::Error::from_raw_os_error(nix::libc::EBADF))
            .context("cannot write to standard output: it is open for reading only");
    }
    let own = stdout
        .as_fd()
        .try_clone_to_owned()
        .context("cannot write to standard output")?;
    Ok(io::BufWriter::new(std::fs::File::from(own)))
}

/// Standard output, locked.
#[cfg(windows)]
pub fn writer() -> Result<io::StdoutLock<'static>> {
    Ok(io::stdout().lock())
}

/// `text` as safe to put on a terminal: what `escape_debug` escapes
/// (control characters, Unicode's format characters that reorder or hide
/// text) escaped, and nothing else: quotes stay readable. Line breaks are
/// kept only where `lines` says so. Text read from files, logs and the
/// sandbox's own names is someone else's: escaped, it cannot move the
/// cursor, clear the screen or reorder what is read after it.
pub fn terminal_safe(text: &str, lines: Lines) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\'' | '\\' => c.to_string(),
            '\n' if lines == Lines::Kept => c.to_string(),
            _ => escaped_char(c),
        })
        .collect()
}

/// `text` as `escape_debug` shows it (quotes and backslashes escaped too),
/// with [`escaped_char`]'s blank letters escaped.
#[cfg(unix)]
pub fn debug_escaped(text: &str) -> String {
    text.chars().map(escaped_char).collect()
}

/// `bytes` as [`debug_escaped`] shows text, and each byte that is not
/// UTF-8 as `\xNN`: not as U+FFFD, which a name may hold itself.
#[cfg(unix)]
pub fn bytes_escaped(bytes: &[u8]) -> String {
    let mut shown = String::new();
    for chunk in bytes.utf8_chunks() {
        shown.push_str(&debug_escaped(chunk.valid()));
        for byte in chunk.invalid() {
            shown.push_str(&format!("\\x{byte:02x}"));
        }
    }
    shown
}

/// `c` as `escape_debug` shows it, and escaped too when it is a letter
/// that is drawn blank or with no width at all (`escape_debug` escapes
/// Unicode's spaces, not these): padding made of them would pass for empty
/// space, and two names that differ by them would look alike. The
/// zero-width ones are Hangul's vowel and final jamo, which terminals draw
/// over the letter before them (glibc's `wcwidth` gives them 0).
pub fn escaped_char(c: char) -> String {
    if drawn_blank(c) {
        format!("\\u{{{:x}}}", u32::from(c))
    } else {
        c.escape_debug().to_string()
    }
}

/// Whether [`escaped_char`] escapes `c`, without making the text.
#[cfg(unix)]
fn is_escaped(c: char) -> bool {
    drawn_blank(c) || c.escape_debug().len() > 1
}

/// Whether `c` is a letter drawn blank or with no width: see
/// [`escaped_char`].
fn drawn_blank(c: char) -> bool {
    const DRAWN_BLANK: [char; 6] = [
        '\u{115f}', '\u{17b4}', '\u{17b5}', '\u{2800}', '\u{3164}', '\u{ffa0}',
    ];
    matches!(c, '\u{1160}'..='\u{11ff}' | '\u{d7b0}'..='\u{d7ff}') || DRAWN_BLANK.contains(&c)
}

/// Serialized JSON `json` with every character [`escaped_char`] would
/// escape written as a JSON escape (`\u009b`) instead: the same JSON,
/// which a terminal cannot act on. serde_json escapes only C0 controls; a
/// recorded argument is the sandbox's to choose, and DEL, C1 controls
/// (an 8-bit CSI) and the format characters that reorder text reached the
/// reviewer's terminal raw through `execgate audit --json` (probe 214).
/// Outside strings JSON is ASCII, so only text inside them changes.
#[cfg(unix)]
pub fn json_terminal_safe(json: String) -> String {
    use std::fmt::Write;
    let unsafe_char = |c: char| c == '\u{7f}' || (!c.is_ascii() && is_escaped(c));
    if !json.contains(unsafe_char) {
        return json;
    }
    let mut safe = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unsafe_char(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(safe, "\\u{unit:04x}");
            }
        } else {
            safe.push(c);
        }
    }
    safe
}

/// Whether [`terminal_safe`] keeps line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    Kept,
    Escaped,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probe 214: DEL, an 8-bit CSI, a right-to-left override and a
    /// character past the BMP that escapes alone: JSON escapes, the same
    /// value; printable text, quotes and escapes left as serde wrote them.
    #[test]
    #[cfg(unix)]
    fn json_for_a_terminal_escapes_what_a_terminal_would_act_on() {
        let value = "\u{7f}\u{9b}2J safe\u{202e}gnp.exe é \"q\" \u{e0001}";
        let json = serde_json::to_string(&[value]).unwrap();
        let safe = json_terminal_safe(json);
        assert_eq!(
            safe,
            r#"["\u007f\u009b2J safe\u202egnp.exe é \"q\" \udb40\udc01"]"#
        );
        let read: Vec<String> = serde_json::from_str(&safe).unwrap();
        assert_eq!(read, [value]);
        let plain = serde_json::to_string(&["plain é"]).unwrap();
        assert_eq!(json_terminal_safe(plain.clone()), plain);
    }

    /// Probe 112: a byte that is not UTF-8 and a U+FFFD in a name read
    /// alike in `execgate audit`'s table.
    #[test]
    #[cfg(unix)]
    fn bytes_that_are_not_utf8_are_shown_apart_from_their_stand_in() {
        let cases: [(&[u8], &str); 4] = [
            (b"bad\xff", "bad\\xff"),
            ("bad\u{fffd}".as_bytes(), "bad\u{fffd}"),
            (b"bad\\xff", "bad\\\\xff"),
            (b"a\x1b[2J\xc3", "a\\u{1b}[2J\\xc3"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(bytes_escaped(bytes), shown, "{bytes:?}");
        }
    }

    #[test]
    fn terminal_safe_text_escapes_controls_and_format_characters_only() {
        let cases = [
            (
                "plain \"quoted\" 'text'",
                Lines::Escaped,
                "plain \"quoted\" 'text'",
            ),
            ("a\nb", Lines::Kept, "a\nb"),
            ("a\nb", Lines::Escaped, "a\\nb"),
            ("\u{1b}[2J\r", Lines::Kept, "\\u{1b}[2J\\r"),
            (
                "safe\u{202e}txt\u{200b}",
                Lines::Kept,
                "safe\\u{202e}txt\\u{200b}",
            ),
            ("caf\u{e9} \u{1f600}", Lines::Kept, "caf\u{e9} \u{1f600}"),
            (
                "\u{a0}\u{3000}\u{2800}\u{3164}",
                Lines::Kept,
                "\\u{a0}\\u{3000}\\u{2800}\\u{3164}",
            ),
            // Hangul's jamo that a terminal draws with no width.
            (
                "ro\u{1161}ot\u{d7b0}",
                Lines::Kept,
                "ro\\u{1161}ot\\u{d7b0}",
            ),
            // And its syllables, which it draws whole.
            ("\u{d55c}\u{ae00}", Lines::Kept, "\u{d55c}\u{ae00}"),
        ];
        for (text, lines, shown) in cases {
            assert_eq!(terminal_safe(text, lines), shown, "{text:?}");
        }
    }
}
