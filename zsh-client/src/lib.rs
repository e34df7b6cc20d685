//! The exec wrapper's client (`execgate_exec_wrapper::ask_from_shell`)
//! behind a C interface, for the patched zsh: its forked child asks the
//! escalation server itself and executes a `Run` command directly, one
//! execve per command as in stock zsh; on `Escalate` it carries the
//! escalation on itself (`execgate_exec_wrapper::escalate_from_shell`), as
//! the wrapper would, without executing it. One implementation of the
//! protocol's client side serves the wrapper and the shell.
//!
//! It must never let a panic unwind into C (it is built with
//! `panic = "abort"` by `scripts/build-zsh.sh`, and catches unwinding
//! anyway for other builds: a caught panic is a refusal), never return
//! `Run` without the server's `Run`, and never keep anything it allocates:
//! the child either executes or exits right after. It uses the process's
//! own `malloc` (zsh's), which is safe in zsh's single-threaded child.
//!
//! ```c
//! /* 0: execute the command; 1: escalate: call execgate_escalate() with
//!    *conversation; 2: exit 126, the reason has been printed. */
//! int execgate_ask(int session_fd, const char *path, char *const *argv,
//!                  char *const *envp, int *conversation);
//! /* Never returns: hands the descriptors over, forwards signals, and
//!    ends as the escalated child ended. wrapper_argv is the wrapper's
//!    command line, its path first. */
//! void execgate_escalate(int conversation, char *const *wrapper_argv);
//! ```
//!
//! Tested through the real patched zsh in `tests/suite/` (spine, escape,
//! fidelity and zsh's own test suite by `scripts/zsh-parity.sh`).
//! There is no patched zsh on Windows: there the crate is empty.

#![cfg(unix)]

mod sys;

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use execgate_exec_wrapper::{ask_from_shell, escalate_from_shell, ShellVerdict, EXIT_CANNOT_RUN};

/// `execgate_ask()`'s answers, as the C side tests them.
const ASK_RUN: libc::c_int = 0;
const ASK_ESCALATE: libc::c_int = 1;
const ASK_REFUSED: libc::c_int = 2;

/// Asks the server on `session_fd` about executing `path` (absolute) with
/// `argv` and `envp`, from the current directory.
///
/// # Safety
///
/// `path` must be a NUL-terminated string; `argv` and `envp` NULL-terminated
/// arrays of NUL-terminated strings; `conversation` a valid pointer to one
/// `int`. All are only read during the call (`conversation` written).
#[no_mangle]
pub unsafe extern "C" fn execgate_ask(
    session_fd: libc::c_int,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    conversation: *mut libc::c_int,
) -> libc::c_int {
    // SAFETY: the caller's contract, passed on: all are only read, and
    // only during this call.
    let (path, argv, env) = unsafe {
        (
            sys::bytes(path),
            sys::CStrings::new(argv),
            sys::CStrings::new(envp),
        )
    };
    let socket_fd = (session_fd >= 0).then_some(session_fd);
    let verdict = std::panic::catch_unwind(move || ask_from_shell(socket_fd, path, argv, env));
    match verdict {
        Ok(ShellVerdict::Run) => ASK_RUN,
        Ok(ShellVerdict::Escalate(socket)) => {
            // SAFETY: the caller's contract: a valid pointer to one int.
            unsafe { sys::set(conversation, socket.into_raw_fd()) };
            ASK_ESCALATE
        }
        Ok(ShellVerdict::Refused) => ASK_REFUSED,
        Ok(other) => {
            eprintln!("execgate: unknown verdict {other:?}; not running it");
            ASK_REFUSED
        }
        Err(_) => ASK_REFUSED,
    }
}

/// Carries the escalation decided on `conversation` on in this process, in
/// place of the wrapper; never returns.
///
/// # Safety
///
/// `conversation` must be the descriptor `execgate_ask()` gave back, which
/// the caller gives up here: nothing else in the process may use or close
/// it. `wrapper_argv` must be a NULL-terminated array of NUL-terminated
/// strings, only read during the call.
#[no_mangle]
pub unsafe extern "C" fn execgate_escalate(
    conversation: libc::c_int,
    wrapper_argv: *const *const libc::c_char,
) -> ! {
    if conversation < 0 {
        eprintln!("execgate: lost the conversation with the escalation server; not running it");
        sys::exit_now(EXIT_CANNOT_RUN)
    }
    // SAFETY: an open descriptor the caller gives up (the contract above);
    // -1 was refused just now.
    let conversation = unsafe { OwnedFd::from_raw_fd(conversation) };
    // SAFETY: the caller's contract, passed on.
    let arguments = unsafe { sys::strings(wrapper_argv) };
    // Release builds abort on a panic (SIGABRT), which fails closed as
    // well: nothing ran yet, or the server kills the child of a stand-in
    // that died.
    let _ = std::panic::catch_unwind(move || escalate_from_shell(conversation, arguments));
    sys::exit_now(EXIT_CANNOT_RUN)
}
