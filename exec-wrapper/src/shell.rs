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

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use execgate_protocol::{ExecRequest, ServerMessage, WrapperArgs};

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
pub fn ask_from_shell(
    socket_fd: Option<RawFd>,
    path: PathBuf,
    argv: Vec<OsString>,
    env: Vec<OsString>,
) -> ShellVerdict {
    let request = ExecRequest {
        cwd: std::env::current_dir().unwrap_or_default(),
        path,
        argv,
        env,
    };
    let path = request.path.clone();
    let refused = |error: &WrapperError| {
        report(&format!("{error}; not running {}", path.display()));
        ShellVerdict::Refused
    };
    match server::ask_for_request(socket_fd, request) {
        Ok((_, ServerMessage::Run)) => ShellVerdict::Run,
        Ok((_, ServerMessage::Deny { reason })) => {
            report(&format!("denied: {}: {reason}", path.display()));
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
