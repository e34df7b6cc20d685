//! What the policy sees and what it may answer.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use std::sync::Arc;

use execgate_sandbox::{PermissionProfile, ResolvedPolicy};

/// The requester as the kernel reports it (`SO_PEERCRED`), in the server's
/// pid namespace. Nothing here is taken from the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The file a request names, as the server found it. This, never `argv[0]`,
/// is what a policy decides on; an escalation executes exactly this file
/// (same device and inode), through the descriptor it was checked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedExecutable {
    /// The path the shell resolved, as it was sent.
    pub requested_path: PathBuf,
    /// The canonical path: symlinks and `..` resolved.
    pub canonical_path: PathBuf,
    pub device: u64,
    pub inode: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The directory a request was decided on, as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingDirectory {
    /// The path the held directory has in the server's view, symlinks
    /// resolved: what policies check (who could write it, and its
    /// ancestors).
    pub canonical_path: PathBuf,
    pub device: u64,
    pub inode: u64,
}

/// One exec request, parsed and resolved.
#[derive(Debug, Clone)]
pub struct ExecContext {
    pub session_id: String,
    /// Unique within the session, in arrival order.
    pub request_id: u64,
    /// The request whose program (a nested shell, say) this request's
    /// requester descends from, found through process ancestry. Best
    /// effort: informative for the audit, not for decisions.
    pub parent_request_id: Option<u64>,
    pub peer: PeerCredentials,
    pub executable: ResolvedExecutable,
    /// The argument vector as the shell built it; `argv[0]` is whatever the
    /// shell was told to pass (`exec -a`, `ARGV0`) and names nothing.
    pub argv: Vec<OsString>,
    /// The working directory's name: `working_directory`'s canonical path
    /// when the server could hold it, else the path the request named.
    pub cwd: PathBuf,
    /// The directory the requester really runs in, as the server opened it
    /// when the request was read: `cwd`, checked against the requester's
    /// own working directory (`/proc/PID/cwd`). An escalation starts in
    /// this very directory (held by descriptor), whatever happens to the
    /// path later. An error says why `cwd` could not be held (not the
    /// requester's directory, moved, or not visible to the server): such a
    /// request is never escalated.
    pub working_directory: Result<WorkingDirectory, String>,
    /// The requester's environment entries (`NAME=value`).
    pub env: Vec<OsString>,
    /// When the server accepted the request's connection.
    pub received: std::time::Instant,
    /// When the whole request had been read: the server's own time to a
    /// decision is measured from here (before it, the requester was still
    /// writing).
    pub request_read: std::time::Instant,
    /// The session's sandbox as resolved: `None` when execgate does not
    /// confine the shell. Policies ask it whether the sandbox could have
    /// written a file (an executable the shell could have swapped).
    pub sandbox: Option<Arc<ResolvedPolicy>>,
    /// What an escalation beyond the sandbox (unsandboxed, or with grants)
    /// takes its environment from, besides a few harmless entries of
    /// `env`: the session's [`SessionConfig::escalation_env`](crate::SessionConfig).
    /// Policies judge by it what such a child will read (its `HOME`).
    pub escalation_env: Arc<[(OsString, OsString)]>,
    /// The question a policy put to a person about this request, while it
    /// waits: a request withdrawn meanwhile is recorded with it.
    pub question: PendingQuestion,
}

/// The question a policy is waiting on for a request: which rule asked, and
/// since when. A policy that asks a person says so here first; the server
/// reads it when the request is withdrawn before the answer (its requester
/// gone, its session ended), so that the record still names the rule that
/// asked and how long the question waited.
#[derive(Debug, Default)]
pub struct PendingQuestion {
    asked: std::sync::Mutex<Option<(Option<RuleRef>, std::time::Instant)>>,
    answered: std::sync::atomic::AtomicBool,
}

impl PendingQuestion {
    /// A person is asked from now, because of `rule` (if a rule asked).
    pub fn asked(&self, rule: Option<RuleRef>) {
        *self.state() = Some((rule, std::time::Instant::now()));
    }

    /// The person has answered, and what the policy still does before it
    /// decides is that answer's doing (stopping the command that asked):
    /// the requester going away from now on is no withdrawal, and the
    /// decision is recorded as the answer made it (probe 219: a person's
    /// stop was mostly recorded as "the requester went away", decided by
    /// the server).
    pub fn answered(&self) {
        self.answered
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`PendingQuestion::answered`] was said.
    pub(crate) fn was_answered(&self) -> bool {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The rule that asked and how long its question has waited, once a
    /// person was asked.
    pub fn waiting(&self) -> Option<(Option<RuleRef>, Duration)> {
        self.state()
            .as_ref()
            .map(|(rule, since)| (rule.clone(), since.elapsed()))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<(Option<RuleRef>, std::time::Instant)>> {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clone for PendingQuestion {
    fn clone(&self) -> PendingQuestion {
        PendingQuestion {
            asked: std::sync::Mutex::new(self.state().clone()),
            answered: self.was_answered().into(),
        }
    }
}

/// How an escalated command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Execution {
    /// Outside any sandbox, as the server's user.
    Unsandboxed,
    /// Inside the session's own sandbox profile.
    TurnDefault,
    /// Inside the session's profile plus these grants (merged as a union;
    /// see [`PermissionProfile::merged_with`]).
    Permissions(PermissionProfile),
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Execute in place, inside the shell's sandbox.
    Run,
    /// The server starts the command.
    Escalate(Execution),
    /// Do not execute; the reason is shown to the user.
    Deny { reason: String },
}

/// Who or what reached a decision, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DecidedBy {
    /// No rule applied: the policy's default.
    #[default]
    Default,
    /// A rule decided on its own (`allow`, `forbidden`).
    Rule,
    /// A person answered an approval prompt.
    User,
    /// An earlier "approve for the session" answer.
    SessionCache,
    /// The request is a registered skill's script.
    Skill,
}

impl DecidedBy {
    /// `default`, `rule`, `user`, `session-cache` or `skill`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Default => "default",
            DecidedBy::Rule => "rule",
            DecidedBy::User => "user",
            DecidedBy::SessionCache => "session-cache",
            DecidedBy::Skill => "skill",
        }
    }
}

/// The rule behind a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// `file:line`.
    pub id: String,
    pub justification: Option<String>,
}

/// How a decision was reached: what the audit log records beside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    pub decided_by: DecidedBy,
    pub rule: Option<RuleRef>,
    /// How long the approver took, when one was asked.
    pub approval_wait: Option<Duration>,
    /// Why the decision is not what the rule asked for (an escalation
    /// refused, a grant narrowed), when it is not.
    pub note: Option<String>,
}

impl Provenance {
    /// Adds `more` after the note there is, if any (`NOTE; MORE`).
    pub fn note_after(&mut self, more: impl Into<String>) {
        let more = more.into();
        self.note = Some(match self.note.take() {
            Some(note) => format!("{note}; {more}"),
            None => more,
        });
    }

    /// Puts `first` before the note there is, if any (`FIRST; NOTE`).
    pub fn note_before(&mut self, first: impl Into<String>) {
        let first = first.into();
        self.note = Some(match self.note.take() {
            Some(note) => format!("{first}; {note}"),
            None => first,
        });
    }
}

/// A decision and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub provenance: Provenance,
}

impl From<Decision> for Verdict {
    /// A decision with [`DecidedBy::Default`] provenance.
    fn from(decision: Decision) -> Verdict {
        Verdict {
            decision,
            provenance: Provenance::default(),
        }
    }
}

/// A boxed future, so that policies can be async and still be trait objects.
pub type DecisionFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// Decides every exec of a session. Called concurrently, once per request;
/// a request is untrusted input, and a policy that cannot decide should
/// answer `Run` (stay sandboxed) or `Deny`, never `Escalate`. Where panics
/// unwind, one that panics refuses the request (exit 126, recorded as
/// refused with "the policy failed"), and the session serves on; a build
/// with `panic = "abort"` (execgate's own release binaries) ends the
/// process instead. Decisions share one serving
/// thread per process: a policy that blocks holds up every session's (the
/// first decision of a session that holds it 100 ms or more is warned of).
pub trait Policy: Send + Sync + 'static {
    fn decide<'a>(&'a self, request: &'a ExecContext) -> DecisionFuture<'a>;
}

/// Any synchronous function of the request is a policy.
impl<F> Policy for F
where
    F: Fn(&ExecContext) -> Decision + Send + Sync + 'static,
{
    fn decide<'a>(&'a self, request: &'a ExecContext) -> DecisionFuture<'a> {
        let verdict = Verdict::from(self(request));
        Box::pin(std::future::ready(verdict))
    }
}
