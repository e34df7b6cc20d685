//! `#!` lines, parsed the way Linux's `binfmt_script` reads them.
//!
//! Both ends need this: the wrapper to replay zsh's fallbacks when an
//! in-place execve fails, the server to start an escalated script through the
//! interpreter it verified rather than by path.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// How many leading bytes of a file the kernel reads for a `#!` line.
pub const SHEBANG_LIMIT: usize = 256;

/// The interpreter line of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter as written: absolute, or relative (zsh then looks it
    /// up in `PATH`).
    pub interpreter: OsString,
    /// Everything after the interpreter, trimmed, passed as one argument.
    pub argument: Option<OsString>,
}

/// Parses the first bytes of a file. `None` when they do not start with `#!`
/// or name no interpreter.
pub fn parse_shebang(head: &[u8]) -> Option<Shebang> {
    let head = &head[..head.len().min(SHEBANG_LIMIT)];
    let line = head.strip_prefix(b"#!")?;
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(end) => &line[..end],
        None => line,
    };
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = trim(line, is_blank);
    if line.is_empty() {
        return None;
    }
    let (interpreter, rest) = match line.iter().position(is_blank) {
        Some(split) => (&line[..split], trim(&line[split..], is_blank)),
        None => (line, &[][..]),
    };
    Some(Shebang {
        interpreter: OsString::from_vec(interpreter.to_vec()),
        argument: (!rest.is_empty()).then(|| OsString::from_vec(rest.to_vec())),
    })
}

/// zsh's test before running a file without `#!` under `/bin/sh`: text, or
/// a line with a lowercase letter, `$` or a backquote before the first NUL.
pub fn looks_like_shell_text(head: &[u8]) -> bool {
    let Some(nul) = head.iter().position(|&b| b == 0) else {
        return true;
    };
    let mut has_letter = false;
    for &b in &head[..nul] {
        if b.is_ascii_lowercase() || b == b'$' || b == b'`' {
            has_letter = true;
        }
        if has_letter && b == b'\n' {
            return true;
        }
    }
    false
}

fn trim(bytes: &[u8], is_blank: impl Fn(&u8) -> bool) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shebang(interpreter: &str, argument: Option<&str>) -> Option<Shebang> {
        Some(Shebang {
            interpreter: interpreter.into(),
            argument: argument.map(Into::into),
        })
    }

    #[test]
    fn parses_like_the_kernel() {
        let cases: &[(&[u8], Option<Shebang>)] = &[
            (b"#!/bin/sh\necho", shebang("/bin/sh", None)),
            (b"#! /bin/sh -e \n", shebang("/bin/sh", Some("-e"))),
            (
                b"#!/usr/bin/env  python3 -u\n",
                shebang("/usr/bin/env", Some("python3 -u")),
            ),
            (b"#!\tperl\t-w\n", shebang("perl", Some("-w"))),
            (b"#!/bin/sh", shebang("/bin/sh", None)),
            (b"#!\n", None),
            (b"#!   \n", None),
            (b"echo hi\n", None),
            (b"", None),
            (b"\x7fELF", None),
        ];
        for (head, expected) in cases {
            assert_eq!(
                &parse_shebang(head),
                expected,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn only_the_first_256_bytes_count() {
        let mut long = b"#!/bin/".to_vec();
        long.extend(std::iter::repeat_n(b'x', 400));
        let parsed = parse_shebang(&long).unwrap();
        assert_eq!(parsed.interpreter.len(), SHEBANG_LIMIT - 2);
    }

    #[test]
    fn shell_text_detection_matches_zsh() {
        let cases: &[(&[u8], bool)] = &[
            (b"echo hi\n", true),
            (b"ECHO\n\0", false),
            (b"echo hi\n\0binary", true),
            (b"\0echo", false),
            (b"$X\n\0", true),
        ];
        for (head, expected) in cases {
            assert_eq!(looks_like_shell_text(head), *expected, "{head:?}");
        }
    }
}
