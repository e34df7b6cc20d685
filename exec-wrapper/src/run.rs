//! `Run`: execute the command in place, with zsh's fallbacks.
//!
//! The patched zsh hands over before its own `#!` and `/bin/sh` fallbacks
//! (running them there would bypass the server), so they are replayed here,
//! on the same path string zsh would have used. Their failures are reported
//! in zsh's own words, behind the message prefix zsh passed (`zsh:1: `), so
//! that they read as under stock zsh.

use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use execgate_protocol::{looks_like_shell_text, WrapperArgs};
use nix::errno::Errno;
use nix::unistd::execv;

use crate::sys;

/// How many leading bytes zsh reads for its fallbacks (`POUNDBANGLIMIT` in
/// `Src/exec.c`): less than the kernel reads for `#!`.
const ZSH_HEAD_LIMIT: u64 = 128;

pub(crate) fn run_in_place(args: &WrapperArgs) -> ! {
    let errno = exec(args.exec_path.as_os_str(), &args.argv);
    if errno == Errno::ENOEXEC || errno == Errno::ENOENT {
        // As zsh: no fallback for a file it cannot open.
        if let Some(head) = read_head(&args.exec_path) {
            replay_fallbacks(args, errno, &head);
        }
    }
    report_as_zsh(
        args,
        &[
            describe(errno).as_bytes(),
            b": ",
            args.command_name.as_bytes(),
        ],
    );
    sys::exit_now(exit_status(errno))
}

/// What zsh's `zexecve()` does after execve failed with ENOEXEC or ENOENT:
/// run a `#!` interpreter itself (looking a relative one up in `PATH` when
/// the kernel found none), or run a text file without `#!` under `/bin/sh`.
/// Returns when zsh would go on to report `errno` for the command; exits
/// when zsh would have reported a bad interpreter instead.
fn replay_fallbacks(args: &WrapperArgs, errno: Errno, head: &[u8]) {
    // The remaining arguments follow the script's path, as zsh passes them.
    let script_args = || {
        std::iter::once(args.exec_path.clone().into_os_string())
            .chain(args.argv.iter().skip(1).cloned())
    };
    let bad_interpreter = |interpreter: &[u8]| -> ! {
        report_as_zsh(
            args,
            &[
                &nice(args.exec_path.as_os_str().as_bytes()),
                b": bad interpreter: ",
                &nice(interpreter),
                b": ",
                describe(errno).as_bytes(),
            ],
        );
        // zsh's own report of the command is then suppressed (its error
        // flag is set); the status still follows the script's errno.
        sys::exit_now(exit_status(errno))
    };
    match zsh_shebang(head) {
        Some(ZshShebang::Unterminated(text)) => bad_interpreter(text),
        Some(ZshShebang::Line {
            interpreter,
            argument,
        }) => {
            let interpreter = OsStr::from_bytes(interpreter);
            let mut argv = vec![interpreter.to_owned()];
            argv.extend(argument.map(|argument| OsStr::from_bytes(argument).to_owned()));
            argv.extend(script_args());
            if errno == Errno::ENOEXEC {
                // A failure here is reported as the script's own.
                exec(interpreter, &argv);
                return;
            }
            if !interpreter.as_bytes().starts_with(b"/") {
                if let Some(found) = path_program(interpreter) {
                    exec(found.as_os_str(), &argv);
                }
            }
            bad_interpreter(interpreter.as_bytes())
        }
        None if errno == Errno::ENOEXEC && looks_like_shell_text(head) => {
            let argv: Vec<OsString> = std::iter::once("sh".into()).chain(script_args()).collect();
            exec(OsStr::new("/bin/sh"), &argv);
        }
        None => {}
    }
}

/// A `#!` line as zsh's fallback reads it, which is not quite as the kernel
/// does: only spaces separate, the argument keeps any further leading
/// spaces, and the line must end within the bytes zsh read.
#[derive(Debug, PartialEq, Eq)]
enum ZshShebang<'a> {
    /// No newline in the bytes read: zsh reports the rest of them as a bad
    /// interpreter without trying anything.
    Unterminated(&'a [u8]),
    Line {
        interpreter: &'a [u8],
        argument: Option<&'a [u8]>,
    },
}

fn zsh_shebang(head: &[u8]) -> Option<ZshShebang<'_>> {
    let rest = head.strip_prefix(b"#!")?;
    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
        return Some(ZshShebang::Unterminated(c_string(rest)));
    };
    let mut line = &rest[..newline];
    while let [init @ .., b' ' | b'\t' | b'\n'] = line {
        line = init;
    }
    let mut line = c_string(line);
    while let [b' ', tail @ ..] = line {
        line = tail;
    }
    Some(match line.iter().position(|&b| b == b' ') {
        Some(space) => ZshShebang::Line {
            interpreter: &line[..space],
            argument: Some(&line[space + 1..]),
        },
        None => ZshShebang::Line {
            interpreter: line,
            argument: None,
        },
    })
}

/// Control characters shown as zsh's messages show them (`nicezputs()`):
/// `\n`, `\t`, `^X`, `^?`. Other bytes pass as they are (zsh would also
/// escape bytes that are not printable in the current locale).
fn nice(bytes: &[u8]) -> Vec<u8> {
    let mut shown = Vec::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => shown.extend_from_slice(b"\\n"),
            b'\t' => shown.extend_from_slice(b"\\t"),
            0x7f => shown.extend_from_slice(b"^?"),
            0..0x20 => shown.extend_from_slice(&[b'^', b + 0x40]),
            _ => shown.push(b),
        }
    }
    shown
}

/// zsh reads the buffer as a C string: a NUL ends everything.
fn c_string(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// zsh's status for a command it could not execute.
fn exit_status(errno: Errno) -> i32 {
    i32::from(execgate_protocol::exec_failure_status(errno as i32))
}

/// Prints one of zsh's own exec failure messages as zsh would: behind the
/// prefix it passed, in one write.
fn report_as_zsh(args: &WrapperArgs, parts: &[&[u8]]) {
    let mut line = args.message_prefix.as_bytes().to_vec();
    for part in parts {
        line.extend_from_slice(part);
    }
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
}

/// execv; returns only on failure.
fn exec(path: &OsStr, argv: &[OsString]) -> Errno {
    let (Ok(path), Ok(argv)) = (
        CString::new(path.as_bytes()),
        argv.iter()
            .map(|arg| CString::new(arg.as_bytes()))
            .collect::<Result<Vec<_>, _>>(),
    ) else {
        // Arguments reached us as C strings, so none can hold a NUL.
        return Errno::EINVAL;
    };
    match execv(&path, &argv) {
        Err(errno) => errno,
        Ok(never) => match never {},
    }
}

fn read_head(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut head = Vec::new();
    file.take(ZSH_HEAD_LIMIT).read_to_end(&mut head).ok()?;
    Some(head)
}

/// Looks a relative `#!` interpreter up in `PATH` as zsh's `pathprog()`
/// does: the first entry where it exists and is not a directory (an empty
/// entry makes `/NAME`); whether it can be executed is execve's business.
fn path_program(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let mut candidate = dir.to_vec();
            candidate.push(b'/');
            candidate.extend_from_slice(name.as_bytes());
            PathBuf::from(OsString::from_vec(candidate))
        })
        .find(|candidate| std::fs::metadata(candidate).is_ok_and(|meta| !meta.is_dir()))
}

/// zsh's `%e`: the system's message with a lowercase first letter (kept
/// for EIO), and `interrupt` for EINTR.
fn describe(errno: Errno) -> String {
    if errno == Errno::EINTR {
        return "interrupt".into();
    }
    let text = std::io::Error::from(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if errno != Errno::EIO => first.to_lowercase().chain(chars).collect(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_shebang_lines_as_zsh_does() {
        let line = |interpreter: &'static [u8], argument: Option<&'static [u8]>| {
            Some(ZshShebang::Line {
                interpreter,
                argument,
            })
        };
        // (head, what zsh makes of it)
        let cases: &[(&[u8], Option<ZshShebang<'_>>)] = &[
            (b"#!/bin/sh\necho", line(b"/bin/sh", None)),
            (b"#!  /bin/sh -e  \t\n", line(b"/bin/sh", Some(b"-e"))),
            (b"#!interp  -x  y\n", line(b"interp", Some(b" -x  y"))),
            (b"#!interp\t-x\n", line(b"interp\t-x", None)),
            (b"#!\n", line(b"", None)),
            (b"#!inter\0p -x\n", line(b"inter", None)),
            (
                b"#!/no/newline",
                Some(ZshShebang::Unterminated(b"/no/newline")),
            ),
            (b"echo hi\n", None),
            (b"#", None),
        ];
        for (head, expected) in cases {
            assert_eq!(
                &zsh_shebang(head),
                expected,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn shows_control_characters_as_zsh_messages_do() {
        assert_eq!(nice(b"a\tb\nc\x01\x7f\xc3\xa9"), b"a\\tb\\nc^A^?\xc3\xa9");
    }
}
