//! The client side as the patched zsh uses it: asked from inside the
//! shell's forked child, before anything is executed, so that a `Run`
//! command costs one execve (its own) and no wrapper.
//!
//! The child gets back what to do: execute the command itself (`Run`),
//! execute the wrapper with the open conversation (`Escalate`), or exit 126
//! (denied, or no answer: the reason is already printed, in the wrapper's
//! words). The wrapper then carries the escalation on exactly as if it had
//! asked itself: descriptors, signals and exit status are its business.

use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use execgate_protocol::{ExecRequest, ServerMessage, WrapperArgs};

use crate::server::{self, Conversation, WrapperError};
use crate::{escalate, fail, report, sys};

/// The wrapper's first argument when the shell hands it a conversation
/// already decided `Escalate`, followed by that conversation's descriptor.
pub const ESCALATED_FLAG: &str = "--escalated=";

/// What the shell's child does with a command it asked about.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShellVerdict {
    /// Execute it in place.
    Run,
    /// Execute the wrapper with `--escalated=FD` (this socket, which the
    /// child must let the wrapper inherit) before the usual arguments.
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

/// The conversation descriptor named by `--escalated=FD`, if `flag` is that.
pub(crate) fn escalated_fd(flag: &OsString) -> Option<RawFd> {
    flag.to_str()?
        .strip_prefix(ESCALATED_FLAG)
        .map(|fd| fd.parse().unwrap_or(-1))
}

/// The wrapper's life after the shell's child got `Escalate` on the
/// conversation `fd`: the rest of `arguments` are the usual ones.
pub(crate) fn carry_on_escalation(fd: RawFd, mut arguments: Vec<OsString>) -> ! {
    let Some(socket) = sys::adopt_socket(fd) else {
        fail(&format!(
            "the escalated conversation (descriptor {fd}) is not an open socket; \
             not running anything"
        ))
    };
    arguments.remove(1);
    let args = match WrapperArgs::parse(arguments.into_iter()) {
        Ok(args) => args,
        Err(error) => fail(&error.to_string()),
    };
    escalate::escalate(&args, Conversation::adopt(socket))
}
