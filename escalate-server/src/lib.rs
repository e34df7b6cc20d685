//! execgate's escalation server: it decides every exec a session's shell
//! makes, and starts the escalated ones itself.
//!
//! [`Session::start`] creates a session socket, serves it on a thread all
//! sessions share (with a tokio runtime of its own), and hands the caller
//! what the shell needs: environment variables naming the exec wrapper and
//! the socket's descriptor
//! ([`Session::prepare_shell`] does both for a `Command`). Each request the
//! wrapper sends is parsed, its executable opened and identified
//! ([`ResolvedExecutable`]), and put to the session's [`Policy`]:
//!
//! - [`Decision::Run`] and [`Decision::Deny`] are answered and done.
//! - [`Decision::Escalate`] with [`Execution::Unsandboxed`] starts the
//!   checked file itself (`execveat` on the descriptor the decision was made
//!   on; a script through its interpreter, which reads it as `/dev/fd/N`),
//!   in the working directory the server opened and checked when the
//!   request arrived, with the wrapper's descriptors at their numbers, in its own
//!   process group, with injection variables removed from its environment;
//!   signals are relayed and the child's end is reported back.
//! - [`Execution::TurnDefault`] and [`Execution::Permissions`] start the
//!   same way, inside a sandbox built from the session's profile (plus the
//!   extra grants) by the [`sandbox`] crate's launcher. A session without a
//!   sandbox configured refuses them: never run unsandboxed instead.
//!   A sandbox whose network is `limited` is linked to the proxy through
//!   the session's [`NetworkBridge`], or runs nothing.
//!
//! The session's shell belongs inside the session's profile too:
//! [`Session::shell_command`] builds that command.
//!
//! Requests are untrusted input: the requester's identity comes from the
//! kernel (`SO_PEERCRED`), a different uid is denied, anything malformed is
//! denied and reported as a [`SessionEvent::RequestRefused`], and the
//! session keeps serving. It must never run a command whose decision was
//! not `Escalate`, never leak a server descriptor (the session socket least
//! of all) into a child, never close a descriptor a requester sent on a
//! thread that serves sessions (a close can wait), and never leave a child
//! behind: dropping or cancelling a [`Session`] kills every escalated
//! child's process group and reaps it.
//!
//! Linux only. Unit tests sit beside the code; the end-to-end suite in
//! `tests/` drives it through the real patched zsh and exec wrapper.
//!
//! Unix only (the patched zsh's escalation protocol): empty elsewhere.
#![cfg(unix)]

mod channel;
mod closer;
mod conversation;
mod environment;
mod events;
mod lineage;
mod network;
mod own_tmpdir;
mod policy;
mod relay;
mod resolve;
mod scope;
mod serving;
mod session;
mod spare;
mod spawner;
mod sys;

pub use environment::{is_injection_variable, left_out_beyond_the_sandbox};
pub use events::{
    unrecorded_denial, AuditFailure, AuditSink, EventReporter, EventSink, NetworkDecidedBy,
    NetworkEvent, NetworkOutcome, NetworkStage, RefusedRequest, RelayedBytes, SessionEnd,
    SessionEvent,
};
pub use execgate_protocol::Termination;
pub use execgate_sandbox as sandbox;
pub use network::{NetworkBridge, SandboxOrigin};
pub use policy::{
    DecidedBy, Decision, DecisionFuture, ExecContext, Execution, PeerCredentials, PendingQuestion,
    Policy, Provenance, ResolvedExecutable, RuleRef, Verdict, WorkingDirectory,
};
pub use resolve::{climbing_path_resolved, ResolveError};
pub use scope::{scope_support, warden_pid, CommandCgroup, ScopeError, ScopeSupport, ENV_SCOPE};
pub use serving::keep_blocking_threads;
pub use session::{
    enough_descriptors, grant_kept_from, ChildrenReaped, GrantError, QuestionFreezeError,
    QuestionFreezer, QuestionHold, Session, SessionConfig, SessionSandbox, ShellCommand,
    ShellWatch, StartError, FEWEST_DESCRIPTORS,
};
pub use sys::{
    close_inherited_descriptors_on_exec, die_of, has_ended, is_ignored, wait_for_children,
};
