//! The messages of one request's conversation.

use std::ffi::OsString;
use std::path::PathBuf;

/// What the shell was about to execute, as the wrapper saw it.
///
/// Everything here is claimed by a process inside the sandbox: the server
/// resolves and checks `path` itself and never trusts `argv[0]` to name the
/// program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The absolute path the shell resolved (not canonicalised).
    pub path: PathBuf,
    /// The argument vector exactly as the shell built it, `argv[0]` included.
    pub argv: Vec<OsString>,
    /// The wrapper's working directory.
    pub cwd: PathBuf,
    /// The environment entries as the kernel would pass them (`NAME=value`,
    /// usually; an entry without `=` is kept as it is).
    pub env: Vec<OsString>,
}

/// How a process ended. Never folded into one number: a shell shows a signal
/// as 128+n, but 128+n is also a valid exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Termination {
    /// The process called `exit` with this code (0-255).
    Exited(i32),
    /// The process was killed by this signal.
    Signaled { signal: i32, core_dumped: bool },
}

/// Frames the wrapper sends on its private socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientMessage {
    /// The first frame: what to decide on.
    Request(ExecRequest),
    /// After [`ServerMessage::Escalate`]: the descriptor numbers the target
    /// must see, in the order of the descriptors attached with `SCM_RIGHTS`.
    Descriptors(Vec<i32>),
    /// A signal the wrapper received and forwards to the escalated child:
    /// one of [`FORWARDED_SIGNALS`], or the server ignores it.
    Signal(i32),
}

/// The signals a stand-in (the wrapper, or the shell's child) forwards to
/// its escalated child: what a job gets from its terminal or its shell.
/// The server relays these and no others: a `SIGSTOP` from a client would
/// stop the child behind the back of the stand-in, which waits for its
/// end. (After a `SIGTSTP` the server itself stops a sandboxed escalation,
/// which the kernel would not stop for it.)
pub const FORWARDED_SIGNALS: [i32; 9] = [
    nix::libc::SIGINT,
    nix::libc::SIGTERM,
    nix::libc::SIGHUP,
    nix::libc::SIGQUIT,
    nix::libc::SIGWINCH,
    nix::libc::SIGTSTP,
    nix::libc::SIGCONT,
    nix::libc::SIGUSR1,
    nix::libc::SIGUSR2,
];

/// Frames the server sends on a request's private socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// Execute the target in place, inside the shell's own sandbox.
    Run,
    /// Do not execute; tell the user why.
    Deny { reason: String },
    /// The server will start the target; send the descriptors.
    Escalate,
    /// The escalated child is running with this pid (the server's view).
    Started { pid: i32 },
    /// The escalated child could not be started; nothing ran. The
    /// requester ends with `exit_status` ([`exec_failure_status`] for an
    /// exec that failed, else 126).
    SpawnFailed { reason: String, exit_status: u8 },
    /// The escalated child ended.
    Exited(Termination),
}

impl ServerMessage {
    /// The frame's name, for messages about a frame that came out of turn:
    /// the wrapper says which one it got without the derived `Debug`, whose
    /// formatting code it would otherwise carry (P4: its size).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Run => "Run",
            Self::Deny { .. } => "Deny",
            Self::Escalate => "Escalate",
            Self::Started { .. } => "Started",
            Self::SpawnFailed { .. } => "SpawnFailed",
            Self::Exited(_) => "Exited",
        }
    }
}

/// The status a shell ends with for a command whose exec failed with
/// `errno`, as zsh's: 126 for one it found but could not execute (no
/// permission, a format it does not know), 127 for every other failure (a
/// file, interpreter or loader not found, an argument list too long, a
/// file busy being written).
pub fn exec_failure_status(errno: i32) -> u8 {
    match errno {
        nix::libc::EACCES | nix::libc::ENOEXEC => 126,
        _ => 127,
    }
}
