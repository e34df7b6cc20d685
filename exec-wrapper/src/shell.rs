//! The client side as the patched zsh uses it: asked from inside the
//! shell's forked child, before anything is executed, so that a `Run`
//! command costs one execve (its own) and no wrapper.
//!
//! The child gets back what to do: execute the command itself (`Run`),
//! stand in for it on the open conversation (`Escalate`), or exit 126
//! (denied, or no answer: the reason is already printed, in the wrapper's
//! words). Standing in is the wrapper's own escalation, run in the child
//! ([`escalate_from_shell`]): descriptors, signals and exit status as if
//! the wrapper had asked itself, without executing it.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use execgate_protocol::{encode_request, ServerMessage, WrapperArgs};

use crate::server::{self, Conversation, WrapperError};
use crate::{escalate, fail, report, sys};

/// What the shell's child does with a command it asked about.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShellVerdict {
    /// Execute it in place.
    Run,
    /// Stand in for it on this conversation: [`escalate_from_shell`].
    Escalate(OwnedFd),
    /// Exit 126 running nothing; why has been printed.
    Refused,
}

/// Asks the server on the session socket `socket_fd` about executing `path`
/// (absolute) with `argv` and `env` from the current directory. Never
/// panics on anything the server sends; every failure is a refusal.
///
/// The request is encoded straight from the borrowed strings (walked
/// twice, the environment a third time for the reply timeout), with no
/// copy of them: the caller is a forked child whose every allocation
/// touches pages of its parent's heap.
pub fn ask_from_shell<'a>(
    socket_fd: Option<RawFd>,
    path: &'a [u8],
    argv: impl Iterator<Item = &'a [u8]> + Clone,
    env: impl Iterator<Item = &'a [u8]> + Clone,
) -> ShellVerdict {
    let program = Path::new(OsStr::from_bytes(path));
    let refused = |error: &WrapperError| {
        report(&format!("{error}; not running {}", crate::shown(program)));
        ShellVerdict::Refused
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let frame = match encode_request(path, argv, cwd.as_os_str().as_bytes(), env.clone()) {
        Ok(frame) => frame,
        Err(error) => return refused(&WrapperError::RequestTooLarge(error)),
    };
    match server::ask_for(socket_fd, frame, server::reply_timeout_in(env)) {
        Ok((_, ServerMessage::Run)) => ShellVerdict::Run,
        Ok((_, ServerMessage::Deny { reason })) => {
            report(&format!("denied: {}: {reason}", crate::shown(program)));
            ShellVerdict::Refused
        }
        Ok((conversation, ServerMessage::Escalate)) => {
            ShellVerdict::Escalate(conversation.into_socket())
        }
        Ok((_, other)) => refused(&WrapperError::UnexpectedReply(other.name().to_owned())),
        Err(error) => refused(&error),
    }
}

/// Carries the escalation decided on `conversation` on in the
/// shell's forked child itself, in place of an executed wrapper: one execve
/// fewer for every escalated command. `arguments` are the wrapper's usual
/// ones, its path first. The shell's signal handlers go back to their
/// defaults and its close-on-exec descriptors are closed, as an execve
/// would have done; from there on it is the wrapper's escalation, the same
/// code: descriptors, forwarded signals and the child's end.
pub fn escalate_from_shell(conversation: OwnedFd, arguments: Vec<OsString>) -> ! {
    sys::reset_handled_signals();
    if !sys::check_conversation(&conversation) {
        fail("the escalated conversation is not an open socket; not running anything")
    }
    if let Err(error) = sys::close_what_exec_would_close(conversation.as_raw_fd()) {
        fail(&format!(
            "cannot close the shell's close-on-exec descriptors ({error}); not running anything"
        ))
    }
    let args = match WrapperArgs::parse(arguments.into_iter()) {
        Ok(args) => args,
        Err(error) => fail(&error.to_string()),
    };
    escalate::escalate(&args, Conversation::adopt(conversation))
}
