//! execgate's exec wrapper: the program the patched zsh executes in place of
//! every external command.
//!
//! It asks the escalation server, over the session socket the shell
//! inherited, how the command may run, and carries the answer out exactly:
//!
//! - `Run`: execve the command in place, inside whatever sandbox the shell is
//!   in, replaying zsh's own fallbacks (a file without `#!` runs under
//!   `/bin/sh`; a relative `#!` interpreter is looked up in `PATH`).
//! - `Deny`: print `execgate: denied: PATH: REASON` and exit 126.
//! - `Escalate`: hand every inheritable descriptor (not the session socket)
//!   to the server, forward signals to the child it starts, and end the way
//!   the child ended: same exit code, or death by the same signal.
//!
//! It must never execute anything without a `Run` answer for it: every
//! failure (no session, server gone, malformed reply, timeout) prints why and
//! exits 126 having run nothing. It is synchronous, single-threaded and
//! small, because it sits on the path of every exec; speed targets live in
//! the benchmarks, not here.
//!
//! Started once per server process with `--warden`, it is instead the
//! server's warden (`warden.rs`): it kills what the server's sessions
//! escalated if the server dies.
//!
//! The patched zsh asks the server itself through [`ask_from_shell`]
//! (linked into zsh from the `execgate-zsh-client` static library), runs a
//! `Run` command with no wrapper at all, and on `Escalate` stands in for the
//! command itself through [`escalate_from_shell`], this crate's escalation
//! code, on the conversation it opened (`shell.rs`): zsh never executes the
//! wrapper binary.
//!
//! Tested end to end through the real patched zsh in `tests/`.
//!
//! Unix only (it is the exec hook of the patched zsh): empty elsewhere.
#![cfg(unix)]

mod arena;
mod escalate;
mod run;
mod server;
mod shell;
mod sys;
mod warden;

use std::io::{self, Write};
use std::path::Path;

use execgate_protocol::{ServerMessage, WrapperArgs};

pub use crate::arena::Arena;
use crate::server::WrapperError;
pub use crate::shell::{ask_from_shell, escalate_from_shell, ShellVerdict};
pub use crate::sys::{abort_on_failed_assertion, describe_errno_into};

/// Exit status for anything that stops a command from running: the same
/// number a shell uses for "found but not executable".
pub const EXIT_CANNOT_RUN: i32 = 126;

/// The wrapper's whole life, from the C `main`'s arguments; never returns.
/// The binaries are `no_main`, and std only finds the arguments on its own
/// with glibc (musl, which the static wrapper links, does not hand them
/// over before `main`).
///
/// # Safety
///
/// `argv` must point to `argc` pointers to NUL-terminated strings, as the
/// C runtime passes them to `main`.
pub unsafe fn main_from_c(argc: libc::c_int, argv: *const *const libc::c_char) -> ! {
    // SAFETY: the caller passes main's own argc and argv.
    let arguments = unsafe { sys::arguments(argc, argv) };
    main(arguments)
}

/// The wrapper's whole life; never returns.
pub fn main(arguments: Vec<std::ffi::OsString>) -> ! {
    if arguments
        .get(1)
        .is_some_and(|flag| flag == execgate_protocol::WARDEN_FLAG)
    {
        warden::watch(&arguments)
    }
    let args = match WrapperArgs::parse(arguments.into_iter()) {
        Ok(args) => args,
        Err(error) => fail(&error.to_string()),
    };
    match server::ask(&args) {
        Ok((_, ServerMessage::Run)) => run::run_in_place(&args),
        Ok((_, ServerMessage::Deny { reason })) => {
            report(&format!("denied: {}: {reason}", shown(&args.path)));
            sys::exit_now(EXIT_CANNOT_RUN)
        }
        Ok((conversation, ServerMessage::Escalate)) => escalate::escalate(&args, conversation),
        Ok((_, other)) => refuse(
            &args.path,
            &WrapperError::UnexpectedReply(other.name().to_owned()),
        ),
        Err(error) => refuse(&args.path, &error),
    }
}

/// Fails closed for a command that was about to run.
pub(crate) fn refuse(path: &Path, error: &WrapperError) -> ! {
    fail(&format!("{error}; not running {}", shown(path)))
}

pub(crate) fn fail(message: &str) -> ! {
    report(message);
    sys::exit_now(EXIT_CANNOT_RUN)
}

/// `path` for a message: bytes that are not UTF-8 as `\xNN`, where
/// `display` would make each U+FFFD, and two names one (probe 190: `rm\xff`
/// and `rm\xfe` were told apart nowhere but in the audit log).
pub(crate) fn shown(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut shown = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        shown.push_str(chunk.valid());
        for byte in chunk.invalid() {
            shown.push_str(&format!("\\x{byte:02x}"));
        }
    }
    shown
}

fn report(message: &str) {
    // One write, so concurrent commands' messages do not interleave. A
    // message quotes paths and arguments the sandbox chose: escaped, they
    // cannot move the cursor, reorder the line or start another one that
    // passes for execgate's.
    let message: String = message
        .chars()
        .map(|c| match c {
            '"' | '\'' | '\\' => c.to_string(),
            _ => c.escape_debug().to_string(),
        })
        .collect();
    let line = format!("execgate: {message}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    /// Probe 190: names that differ only in bytes that are not UTF-8 read
    /// the same in a message.
    #[test]
    fn a_path_is_shown_with_its_bytes_that_are_not_utf8() {
        let shown =
            |bytes: &[u8]| super::shown(std::path::Path::new(std::ffi::OsStr::from_bytes(bytes)));
        assert_eq!(shown(b"/ws/rm\xff"), "/ws/rm\\xff");
        assert_eq!(shown(b"/ws/rm\xfe"), "/ws/rm\\xfe");
        assert_eq!(shown("/ws/caf\u{e9}".as_bytes()), "/ws/caf\u{e9}");
    }
}
