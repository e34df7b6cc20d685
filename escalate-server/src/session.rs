//! A session: one session socket, the workers that serve it, and every
//! escalated child it started.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use execgate_protocol::{accept_hello, recv_with_fds, HelloError, ENV_SOCKET_FD, ENV_WRAPPER};
use execgate_sandbox::{
    Access, Launcher, PermissionProfile, ResolvedPolicy, SandboxContext, SandboxError,
    SandboxStart, Terminal,
};
use nix::sys::signal::{killpg, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::{AuditFailure, AuditSink, EventSink, SessionEnd, SessionEvent};
use crate::network::{NetworkBridge, SandboxOrigin};
use crate::policy::Policy;
use crate::relay::Relay;
use crate::scope::{CommandCgroup, FreezeReason, Scope, ScopeError};
use crate::spare::Spares;
use crate::sys;
use crate::{closer, conversation};

/// How a session is set up.
#[derive(Clone)]
pub struct SessionConfig {
    /// The exec wrapper the shell runs for every command.
    pub wrapper: PathBuf,
    /// Decides every request.
    pub policy: Arc<dyn Policy>,
    /// Receives an event for every decision, escalated child and error.
    pub events: Option<EventSink>,
    /// The name of the session's profile, for its first audit record
    /// (`session-start`). Default: none.
    pub profile_name: Option<String>,
    /// `PATH` for escalated children (the requester's is not trusted), and
    /// where relative `#!` interpreters of escalated scripts are looked up.
    pub escalation_path: OsString,
    /// What escalated children beyond the sandbox (unsandboxed, or with
    /// grants) start from, instead of the
    /// requester's environment (which the sandbox controls): the caller's
    /// own, as its environment policy shapes it. Injection variables and
    /// `PATH` are removed from it all the same. Default: the server's
    /// `HOME`, `USER`, `LOGNAME`, `SHELL`, `TMPDIR` and XDG directories.
    pub escalation_env: Vec<(OsString, OsString)>,
    /// `TMPDIR` for children outside any sandbox, in place of
    /// `escalation_env`'s: a directory the session's sandbox cannot write.
    /// Programs write sources and scripts there and run them (pip builds
    /// a package there); in a temporary directory the sandbox shares, it
    /// could swap them first. Default: none (`escalation_env`'s).
    pub unsandboxed_tmpdir: Option<PathBuf>,
    /// Where each escalation with grants gets a temporary directory of its
    /// own, for `TMPDIR` (made when it starts, removed when it ends), for
    /// the same reason. It must be a directory the session's sandbox cannot
    /// write, though one of its sandboxes may be granted a directory in
    /// it. Default: none (the escalation shares the session's).
    pub granted_tmpdirs: Option<PathBuf>,
    /// What every grant the policy can make lets a sandbox write, as far
    /// as known when the session starts (a skill's, a rule's profile).
    /// Counted from the start: left out of the `PATH` of escalations
    /// beyond the sandbox, and a sandbox started with grants only there
    /// does not make escalations decided before it stale (the policy
    /// counted them when it decided). Default: none.
    pub known_grant_roots: Vec<PathBuf>,
    /// How long a client may take to send its request.
    pub request_timeout: Duration,
    /// The session's sandbox. `None` refuses every sandboxed escalation.
    pub sandbox: Option<SessionSandbox>,
    /// Where every decision, child exit and refused request is recorded.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// What happens when a decision cannot be recorded.
    pub audit_failure: AuditFailure,
    /// How much lower than the server's the CPU priority of the session's
    /// shell and escalated children is: a `nice` increment, 0 to 19. The
    /// commands then yield the CPU to the server that decides on them (and
    /// to everything else on the machine): with 64 busy unsandboxed shells
    /// on 2 cores, 10 keeps the server's time per decision under a
    /// millisecond at p99 where 0 lets a few wait for several
    /// (BENCHMARKS.md, P2). Default 0.
    ///
    /// Niceness orders processes within one scheduler group. Where the
    /// kernel groups processes by session (`kernel.sched_autogroup_enabled`,
    /// on by default in many distributions), a sandboxed shell started
    /// detached, which bubblewrap puts in a session of its own, competes
    /// with the server's group as an equal whatever its niceness; so do
    /// sandboxed escalated children.
    pub shell_niceness: u8,
    /// Hosts the proxy of sandboxes whose network is `limited`. Without
    /// one, such sandboxes run nothing.
    pub network: Option<Arc<dyn NetworkBridge>>,
}

/// The sandbox a session's shell and its sandboxed escalations run in.
#[derive(Debug, Clone)]
pub struct SessionSandbox {
    pub launcher: Launcher,
    /// The session's own profile: the shell runs in it, and so do
    /// `TurnDefault` escalations. `Permissions` escalations add to it.
    pub turn_default: PermissionProfile,
    pub context: SandboxContext,
}

/// A session's sandbox, made concrete once at start.
pub(crate) struct ActiveSandbox {
    pub(crate) launcher: Launcher,
    pub(crate) turn_default: PermissionProfile,
    pub(crate) context: SandboxContext,
    /// `None` when the profile is not enforced by us (`Disabled`,
    /// `External`).
    pub(crate) resolved_default: Option<Arc<ResolvedPolicy>>,
}

impl ActiveSandbox {
    fn new(sandbox: SessionSandbox, wrapper: &Path) -> Result<ActiveSandbox, SandboxError> {
        let SessionSandbox {
            mut launcher,
            turn_default,
            context,
        } = sandbox;
        // Sandboxed programs must be able to run the wrapper.
        launcher.expose(wrapper);
        // The session's own profile grants nothing where the launcher
        // hides (review 243, probe 244: its grant on the audit log's file
        // won over the hiding of its directory). A place kept read-only (a
        // config) may be the profile's own to write: the caller warns of it.
        let hidden_only = |access| access == Access::None;
        if let Some(refused) = grant_kept_from(&launcher, &turn_default, hidden_only) {
            return Err(refused);
        }
        let resolved_default = match &turn_default {
            PermissionProfile::Managed { .. } => {
                let resolved = ResolvedPolicy::resolve(&turn_default, &context)?;
                resolved.check_working_directory(&context.cwd)?;
                Some(Arc::new(resolved))
            }
            PermissionProfile::Disabled | PermissionProfile::External { .. } => None,
        };
        Ok(ActiveSandbox {
            launcher,
            turn_default,
            context,
            resolved_default,
        })
    }

    /// The policy for an escalation with `extra` grants on top of the
    /// session's profile, with `private_root` (one of those grants, in a
    /// directory every sandbox has hidden) shown to this sandbox alone;
    /// `None` means unconfined by us.
    pub(crate) fn policy_with(
        &self,
        extra: Option<&PermissionProfile>,
        private_root: Option<&Path>,
    ) -> Result<Option<Arc<ResolvedPolicy>>, SandboxError> {
        let Some(extra) = extra else {
            return Ok(self.resolved_default.clone());
        };
        // Probe 201: such a grant failed at the sandbox's start, saying
        // the path had been replaced, after its record said it was made.
        // The escalation's own temporary directory is shown there.
        let shown = private_root.map(|root| std::fs::canonicalize(root).unwrap_or(root.into()));
        let hidden_grant = granted_paths(extra)
            .filter(|path| !shown.as_ref().is_some_and(|root| path.starts_with(root)))
            .find_map(|path| {
                let hidden = self.launcher.hidden_over(&path)?.to_path_buf();
                Some((path, hidden))
            });
        if let Some((path, hidden)) = hidden_grant {
            return Err(SandboxError::GrantHidden { path, hidden });
        }
        // Probe 242: a grant on the audit log's file won over the `none`
        // that hides its directory.
        if let Some(refused) = grant_kept_from(&self.launcher, extra, |_| true) {
            return Err(refused);
        }
        match self.turn_default.merged_with(extra) {
            merged @ PermissionProfile::Managed { .. } => {
                let mut resolved = ResolvedPolicy::resolve(&merged, &self.context)?;
                // Grants are pinned when made (a skill's when it loads, a
                // rule's profile when the session starts): one the sandbox
                // has since pointed elsewhere with a link grants nothing.
                // Checked on the resolution itself, whose identities the
                // sandbox's helper checks again after bubblewrap's binds.
                if let Some((path, now)) = extra.moved_from(&resolved) {
                    return Err(SandboxError::GrantMoved { path, now });
                }
                if let Some(root) = private_root {
                    resolved.show_private_root(root.to_path_buf());
                }
                Ok(Some(Arc::new(resolved)))
            }
            PermissionProfile::Disabled | PermissionProfile::External { .. } => Ok(None),
        }
    }
}

/// The paths `extra` grants read or write access to, by their real path
/// where they have one (the hidden directories are canonical).
fn granted_paths(extra: &PermissionProfile) -> impl Iterator<Item = PathBuf> + '_ {
    granted_entries(extra).map(|(path, _)| path)
}

/// [`granted_paths`], each with the access it grants.
fn granted_entries(extra: &PermissionProfile) -> impl Iterator<Item = (PathBuf, Access)> + '_ {
    let entries = match extra {
        PermissionProfile::Managed { file_system, .. } => file_system.entries.as_slice(),
        _ => &[],
    };
    entries
        .iter()
        .filter(|entry| entry.access != Access::None)
        .filter_map(|entry| match &entry.target {
            execgate_sandbox::FsTarget::Path(path) => {
                let path = path.as_path();
                let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                Some((path, entry.access))
            }
            _ => None,
        })
}

/// The refusal of the first grant of `profile` in a place `launcher` keeps
/// from every grant ([`Launcher::keep_from_grants`]), of those whose most
/// access `judged` takes, if it has one.
pub fn grant_kept_from(
    launcher: &Launcher,
    profile: &PermissionProfile,
    judged: impl Fn(Access) -> bool,
) -> Option<SandboxError> {
    let rank = |access: Access| match access {
        Access::None => 0,
        Access::Read => 1,
        Access::Write => 2,
    };
    granted_entries(profile).find_map(|(path, access)| {
        let (kept, what, most) = launcher.kept_over(&path)?;
        (judged(most) && rank(access) > rank(most)).then(|| SandboxError::GrantKept {
            kept: kept.to_path_buf(),
            what,
            path,
        })
    })
}

/// Where a sandbox's special roots lead, for the session's first record.
fn special_roots(context: &SandboxContext) -> Vec<String> {
    [(":cwd", &context.cwd), (":tmpdir", &context.tmpdir)]
        .into_iter()
        .chain(
            context
                .workspace_roots
                .iter()
                .map(|root| (":workspace_roots", root)),
        )
        .map(|(name, path)| format!("{name}={}", path.display()))
        .collect()
}

/// Adds to `known` what of `items` it lacks; whether there was any.
fn add_unknown<T: PartialEq>(known: &mut Vec<T>, items: impl IntoIterator<Item = T>) -> bool {
    let before = known.len();
    for item in items {
        if !known.contains(&item) {
            known.push(item);
        }
    }
    known.len() > before
}

/// What a sandbox reaches beyond its files, one entry a thing: its network
/// mode with its lists, and each host socket it may connect to.
fn network_reach(policy: &ResolvedPolicy) -> Vec<String> {
    let network = format!(
        "network {:?} {:?}",
        policy.network(),
        policy.network_lists()
    );
    let sockets = policy
        .allowed_unix_sockets()
        .map(|(socket, _)| format!("socket {}", socket.display()));
    std::iter::once(network).chain(sockets).collect()
}

impl SessionConfig {
    /// A configuration with the defaults: no event sink, the server's own
    /// `PATH` (or a standard one) for escalations, a 10 s request timeout.
    pub fn new(wrapper: impl Into<PathBuf>, policy: Arc<dyn Policy>) -> Self {
        SessionConfig {
            wrapper: wrapper.into(),
            policy,
            events: None,
            profile_name: None,
            escalation_path: std::env::var_os("PATH")
                .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            escalation_env: crate::environment::server_defaults(),
            unsandboxed_tmpdir: None,
            granted_tmpdirs: None,
            known_grant_roots: Vec::new(),
            request_timeout: Duration::from_secs(10),
            sandbox: None,
            audit: None,
            audit_failure: AuditFailure::Deny,
            shell_niceness: 0,
            network: None,
        }
    }
}

/// How a process has its children reaped as they end
/// ([`StartError::ChildrenUnwaited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildrenReaped {
    /// `SIGCHLD` is ignored, which a program it starts inherits (bubblewrap
    /// then waits for its own child forever).
    Ignored,
    /// Its `SIGCHLD` action has `SA_NOCLDWAIT` (not inherited across exec).
    NoChildWait,
}

impl ChildrenReaped {
    fn how(self) -> &'static str {
        match self {
            ChildrenReaped::Ignored => "ignores SIGCHLD",
            ChildrenReaped::NoChildWait => "has SA_NOCLDWAIT on its SIGCHLD action",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            ChildrenReaped::Ignored => "give SIGCHLD its default action, or a handler,",
            ChildrenReaped::NoChildWait => "install the SIGCHLD action without SA_NOCLDWAIT",
        }
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Not returned by [`Session::start`], which serves sessions on a thread
    /// of its own; kept for embedders (the bridge) that need the caller's
    /// runtime for their own tasks.
    #[error("sessions must be started inside a tokio runtime")]
    NoRuntime,
    /// This process's children are reaped by the kernel as they end:
    /// `how` it told the kernel to.
    #[error(
        "this process {how}, so the kernel reaps its children as they end and nothing can \
         wait for them: a session could not tell when its shells end; {advice} before \
         starting a session",
        how = .0.how(),
        advice = .0.advice()
    )]
    ChildrenUnwaited(ChildrenReaped),
    /// This process's soft descriptor limit is below
    /// [`FEWEST_DESCRIPTORS`]: its commands would fail one by one, with
    /// messages that name something else.
    #[error(
        "the descriptor limit (ulimit -n) is {0}: a session needs at least \
         {FEWEST_DESCRIPTORS}; raise it (ulimit -n 1024)"
    )]
    TooFewDescriptors(u64),
    #[error("cannot create the session socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot start the thread sessions are served on: {0}")]
    Serving(#[source] io::Error),
    #[error("exec wrapper {path:?} is not usable: {source}")]
    Wrapper { path: PathBuf, source: io::Error },
    #[error("the session's sandbox cannot be set up: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("the session's processes cannot be kept killable: {0}")]
    Scope(#[from] ScopeError),
    #[error(
        "the session's start cannot be recorded in the audit log ({0}); nothing runs unrecorded"
    )]
    Unrecorded(String),
}

/// The fewest descriptors a session works with: the patched shell keeps
/// the session's socket at descriptor 64 or above, the kernel counts the
/// descriptors in flight between processes against the same limit, and a
/// sandbox's start takes a few dozen of its own.
pub const FEWEST_DESCRIPTORS: u64 = 256;

/// Refuses a soft descriptor limit below [`FEWEST_DESCRIPTORS`] up front:
/// under it, commands fail one by one with messages that name something
/// else (a shell "started without an execgate session", user namespaces
/// "disabled"; probe 224: an embedder's every command was denied so). A
/// limit that cannot be read is taken as enough.
pub fn enough_descriptors() -> Result<(), StartError> {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft < FEWEST_DESCRIPTORS => Err(StartError::TooFewDescriptors(soft)),
        _ => Ok(()),
    }
}

/// A command that starts a session's shell ([`Session::shell_command`]
/// and its kin): the command to finish and spawn (it derefs to it), and
/// the watch that tells, once the shell has ended, what its exit status
/// cannot, and the command's own cgroup, where the session has one. Drop
/// the command once spawned: it holds the watch's other ends.
pub struct ShellCommand {
    pub command: std::process::Command,
    pub watch: ShellWatch,
    /// What the shell joins and the escalations it asks for start in:
    /// kill it to stop the command whole. Keep it while the command runs.
    pub cgroup: Option<CommandCgroup>,
}

/// The cgroup a shell joins, kept by the hook that joins it: alive until
/// the spawn, whatever the caller drops before it.
enum Joined {
    Session(Arc<crate::scope::Cgroup>),
    Command(CommandCgroup),
}

/// What a shell's sandbox says of its start and its end, read once the
/// shell has ended; it says nothing of a shell outside a sandbox, nor of
/// one whose sandbox could not be watched (no descriptor left, a tiny
/// file-size limit).
#[derive(Debug, Default)]
pub struct ShellWatch {
    start: Option<SandboxStart>,
    report: Option<OwnedFd>,
}

impl ShellWatch {
    /// Whether the shell's exit `status` is bubblewrap's failure to set its
    /// sandbox up: status 1, and nothing ran
    /// ([`SandboxStart::set_up_failed`]).
    pub fn set_up_failed(&self, status: &std::process::ExitStatus) -> bool {
        status.code() == Some(1) && self.start.as_ref().is_some_and(SandboxStart::set_up_failed)
    }

    /// The signal the shell died of, when its exit `status` is 128 plus it
    /// because the sandbox's init, which cannot die of a signal sent from
    /// inside, said so as it exited. `None` for a shell that exited by
    /// itself, whatever its code.
    pub fn signal(&self, status: &std::process::ExitStatus) -> Option<i32> {
        let report = self.report.as_ref()?;
        match execgate_sandbox::reported_end(report.as_fd(), status.code()?)? {
            execgate_sandbox::ReportedEnd::Signaled { signal, .. } => Some(signal),
            _ => None,
        }
    }
}

impl std::ops::Deref for ShellCommand {
    type Target = std::process::Command;

    fn deref(&self) -> &std::process::Command {
        &self.command
    }
}

impl std::ops::DerefMut for ShellCommand {
    fn deref_mut(&mut self) -> &mut std::process::Command {
        &mut self.command
    }
}

/// A running session. Dropping it (or [`Session::cancel`]) stops its workers
/// and kills every escalated child's process group; nothing it started is
/// left running, and no child is left unreaped.
pub struct Session {
    shared: Arc<Shared>,
    shell_socket: Option<OwnedFd>,
    /// Whether a shell has been prepared with `shell_socket` itself: every
    /// later one gets a socket of its own.
    shell_socket_taken: AtomicBool,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// Why a shell granted more than the session's sandbox was not prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The session's profile and the grants do not make one that resolves.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The session has ended: it starts no more shells.
    #[error("the session has ended")]
    Ended,
    /// The answer to the request could not be recorded: the shell does not
    /// start.
    #[error("the answer to the command's request for permissions was not recorded: {0}")]
    Unrecorded(String),
}

/// Freezes a session's processes while a question is asked on the
/// terminal they share with the person who answers: none of them can then
/// draw over the question (another question in its place, a different host
/// or program) or take the keys that answer it. A job's own freezing
/// ([`Session::freeze`]) is held apart: the end of a question never thaws a
/// job stopped meanwhile.
#[derive(Clone)]
pub struct QuestionFreezer {
    shared: std::sync::Weak<Shared>,
}

/// Thaws (unless something else holds the session frozen) when dropped.
pub struct QuestionHold {
    shared: Arc<Shared>,
}

/// Why a session could not be frozen for a question.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuestionFreezeError {
    /// The session has no cgroup (or has ended): nothing can freeze it.
    #[error("the session has no cgroup to freeze")]
    Unsupported,
    /// Its processes were not all frozen in time (it is thawed again).
    #[error("the session's processes did not freeze within {0:?}")]
    NotFrozen(Duration),
    #[error("cannot freeze the session's processes: {0}")]
    Io(#[from] std::io::Error),
}

impl QuestionFreezer {
    /// Freezes the session and waits until all its processes are frozen
    /// (up to `limit`). Blocks: call it off the reactor.
    pub fn hold(&self, limit: Duration) -> Result<QuestionHold, QuestionFreezeError> {
        let shared = self
            .shared
            .upgrade()
            .ok_or(QuestionFreezeError::Unsupported)?;
        if !shared.children.scope.hold(FreezeReason::Asking(true))? {
            return Err(QuestionFreezeError::Unsupported);
        }
        let hold = QuestionHold { shared };
        if hold.shared.children.scope.wait_frozen(limit) {
            Ok(hold)
        } else {
            Err(QuestionFreezeError::NotFrozen(limit))
        }
    }
}

impl Drop for QuestionHold {
    fn drop(&mut self) {
        let _ = self.shared.children.scope.hold(FreezeReason::Asking(false));
    }
}

/// What the workers share.
pub(crate) struct Shared {
    pub(crate) id: String,
    /// `PATH` for escalated children that may do more than the session's
    /// sandbox (unsandboxed, or with grants), and where their relative
    /// `#!` interpreters are looked up: the configured escalation `PATH`
    /// without what the session's sandbox can write.
    pub(crate) outside_path: OsString,
    /// What escalations with grants could write beyond the session's own
    /// sandbox: left out of [`Shared::outside_path`] too, once granted.
    pub(crate) granted_writable: Mutex<Vec<PathBuf>>,
    /// What sandboxes with grants (and the session's own) could reach
    /// beyond files ([`network_reach`]): a grant reaching more (a daemon's
    /// socket, a wider network) could have had something else write.
    pub(crate) granted_reach: Mutex<Vec<String>>,
    /// Sandboxes with grants set up so far that could write more than
    /// those before them: an escalation decided before one of them started
    /// does not start after it (see `escalate`).
    pub(crate) grants_made: AtomicU64,
    /// [`SessionConfig::escalation_env`], shared with every request's
    /// context.
    pub(crate) escalation_env: Arc<[(OsString, OsString)]>,
    /// The bytes of the requests being read.
    pub(crate) frames_being_read: crate::channel::FramesBeingRead,
    pub(crate) config: SessionConfig,
    pub(crate) children: Children,
    pub(crate) sandbox: Option<ActiveSandbox>,
    pub(crate) lineage: crate::lineage::Lineage,
    next_request: AtomicU64,
    /// Set once the session's end has been recorded.
    ended: AtomicBool,
    /// Set once a decision that blocked the serving thread was warned of.
    blocking_decision_warned: AtomicBool,
    /// Set before the session starts its first sandbox (a shell's or an
    /// escalation's), or from the start where the caller sandboxes the
    /// shell (`External`): until then no requester can be in a sandbox.
    sandbox_started: AtomicBool,
}

impl Shared {
    /// Called before anything of the session starts in a sandbox: from
    /// then on, a request may come from inside one.
    pub(crate) fn starting_a_sandbox(&self) {
        self.sandbox_started.store(true, Ordering::SeqCst);
    }

    /// Whether a requester may be inside one of the session's sandboxes,
    /// and so must be checked against what it sees. A session that has
    /// started none (its shells unsandboxed, nothing escalated into a
    /// sandbox yet) has no requester there: a program it asks for is one
    /// it could run itself, and the look-up in its view (`/proc/PID/root`,
    /// 20 µs of a `Run`'s server time) would find the server's own file.
    pub(crate) fn requesters_may_be_sandboxed(&self) -> bool {
        self.sandbox.is_some() && self.sandbox_started.load(Ordering::SeqCst)
    }
}

/// A poll of a decision that holds the serving thread this long is a
/// policy or an approver that blocked: far above a rule lookup's
/// microseconds, and above what a busy machine's scheduling adds.
const BLOCKING_DECISION: Duration = Duration::from_millis(100);

/// Requests whose arguments and environment pass this many bytes are
/// recorded off the serving thread (a probe: three processes asking with
/// megabytes of arguments raised another's p99 from 3 ms to 300 ms). The
/// request's bytes, not the record's: a record escapes control characters
/// six-fold, so one of up to about 384 KiB is still written inline (three
/// processes asking with 60 KB of them: a p99 of 21 ms).
const LARGE_REQUEST: usize = 64 << 10;

/// Turns to write a large record, one for the whole process: each holds
/// its request, a copy in the record, and the line, up to six times the
/// request's size.
static LARGE_RECORDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Whether `event` is a decision on, or a refusal naming, a request of
/// [`LARGE_REQUEST`] bytes or more.
fn is_large(event: &SessionEvent) -> bool {
    match event {
        SessionEvent::Decided { request, .. } => {
            bytes_at_least(request.argv.iter().chain(&request.env), LARGE_REQUEST)
        }
        SessionEvent::RequestRefused {
            asked: Some(asked), ..
        } => bytes_at_least(asked.argv.iter(), LARGE_REQUEST),
        _ => false,
    }
}

/// Whether `entries` hold `least` bytes or more, read no further than that.
fn bytes_at_least<'a>(entries: impl Iterator<Item = &'a OsString>, least: usize) -> bool {
    let mut bytes = 0;
    for entry in entries {
        bytes += entry.len();
        if bytes >= least {
            return true;
        }
    }
    false
}

impl Shared {
    /// Records the session's end, once, then kills everything it started.
    fn end(&self, reason: SessionEnd) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            let running = self.children.count();
            let processes = self.children.scope.processes(&self.sandbox_machinery());
            // Numbered after this, none: the session is cancelled
            // before it ends, and its accept loop stops with that.
            let requests = self.next_request.load(Ordering::SeqCst);
            self.emit(SessionEvent::Ended {
                reason,
                running,
                processes,
                requests,
            });
        }
        self.children.kill_all();
    }

    /// The files of bubblewrap and the sandbox helper, by device and
    /// inode: the processes that run them are the sandboxes themselves.
    fn sandbox_machinery(&self) -> Vec<(u64, u64)> {
        let Some(sandbox) = &self.sandbox else {
            return Vec::new();
        };
        let launcher = &sandbox.launcher;
        [launcher.bwrap(), launcher.helper()]
            .into_iter()
            .filter_map(crate::scope::file_identity)
            .collect()
    }

    /// Warns, once a session, that deciding on `program` held the thread
    /// that serves every session's requests for `held`: a policy or an
    /// approver that blocks in place of returning a future that waits.
    pub(crate) fn warn_if_the_decision_blocked(&self, held: Duration, program: &Path) {
        if held >= BLOCKING_DECISION && !self.blocking_decision_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                session = %self.id,
                program = ?program,
                held_ms = held.as_millis(),
                "deciding held the thread that serves every session's requests: a policy or \
                 approver that must wait should return a future that waits (on \
                 tokio::task::spawn_blocking, say), never block; said once a session"
            );
        }
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records and reports an event whose effect cannot be held back.
    pub(crate) fn emit(&self, event: SessionEvent) {
        if let Err(reason) = self.record(&event) {
            tracing::error!(session = %self.id, %reason, "audit log write failed");
        }
    }

    /// [`Shared::record`], on a blocking thread if the audit sink waits for
    /// the disk to record it (`fdatasync`) or the record is large (its
    /// encoding alone takes milliseconds): the serving thread is every
    /// session's. Large records are written one at a time in the process
    /// ([`LARGE_RECORDS`]), their requests' bytes held meanwhile in their
    /// session's budget by the caller, so that a flood of them costs the
    /// server no more memory than when the serving thread wrote them.
    pub(crate) async fn record_off_serving_thread(
        self: &Arc<Self>,
        event: SessionEvent,
    ) -> Result<(), String> {
        let Some(audit) = self.config.audit.as_ref() else {
            return self.record(&event);
        };
        let large = is_large(&event);
        if !audit.waits_for_disk(&event) && !large {
            return self.record(&event);
        }
        // Never closed: acquire cannot fail.
        let turn = if large {
            LARGE_RECORDS.acquire().await.ok()
        } else {
            None
        };
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let recorded = shared.record(&event);
            drop(turn);
            recorded
        })
        .await
        .unwrap_or_else(|error| Err(format!("the audit record was not written: {error}")))
    }

    /// [`Shared::emit`], as [`Shared::record_off_serving_thread`] writes.
    pub(crate) async fn emit_off_serving_thread(self: &Arc<Self>, event: SessionEvent) {
        if let Err(reason) = self.record_off_serving_thread(event).await {
            tracing::error!(session = %self.id, %reason, "audit log write failed");
        }
    }

    /// Counts a sandbox with grants about to start: what it may write is
    /// left out of later escalations' `PATH`, and when that is more than
    /// the grants so far (or known from the start) could write, an
    /// escalation decided before it does not start after it. Returns how
    /// many new grants it counted (0 or 1).
    pub(crate) fn granted(&self, policy: &ResolvedPolicy) -> u64 {
        let mut granted = self
            .granted_writable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // An escalation's own temporary directory counts as the directory
        // all of them are made in: one entry, however many escalations.
        let own_tmpdirs = self.config.granted_tmpdirs.as_deref();
        let writes = policy
            .rules()
            .iter()
            .filter(|rule| rule.access == Access::Write)
            .map(|rule| match own_tmpdirs {
                Some(root) if rule.path.starts_with(root) => root.to_path_buf(),
                _ => rule.path.clone(),
            });
        let writes_more = add_unknown(&mut granted, writes);
        let mut reach = self
            .granted_reach
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let reaches_more = add_unknown(&mut reach, network_reach(policy));
        // Under the locks: an escalation that reads the count after this
        // sandbox's roots were added sees this grant counted too.
        let new = u64::from(writes_more || reaches_more);
        self.grants_made.fetch_add(new, Ordering::SeqCst);
        new
    }

    /// `PATH` for an escalated child that may do more than the session's
    /// sandbox: [`Shared::outside_path`] without what the grants so far
    /// may write either.
    pub(crate) fn path_beyond_the_sandbox(&self) -> OsString {
        let granted = self
            .granted_writable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if granted.is_empty() {
            return self.outside_path.clone();
        }
        // By every name the host's mounts give what they may write.
        // Unknown mounts keep no directory: any may be a grant's under
        // another name.
        let aliases = execgate_sandbox::MountAliases::of(&granted);
        crate::environment::path_without(&self.outside_path, |dir| {
            aliases.unknown() || aliases.under_any(dir, &granted)
        })
        .0
    }

    /// Records an event in the audit log, then reports it. An error means
    /// the audit log could not be written (and the failure mode says to
    /// refuse).
    pub(crate) fn record(&self, event: &SessionEvent) -> Result<(), String> {
        crate::events::record_and_report(
            &self.id,
            self.config.audit.as_deref(),
            self.config.events.as_ref(),
            self.config.audit_failure,
            event,
        )
    }
}

impl Session {
    /// Starts serving a new session socket. Its workers run on a thread
    /// every session of the process shares, not on the caller's runtime
    /// (why: `serving.rs`).
    pub fn start(config: SessionConfig) -> Result<Session, StartError> {
        if let Some(how) = sys::children_reaped_unwaited() {
            return Err(StartError::ChildrenUnwaited(how));
        }
        enough_descriptors()?;
        let runtime = crate::serving::handle().map_err(StartError::Serving)?;
        std::fs::metadata(&config.wrapper).map_err(|source| StartError::Wrapper {
            path: config.wrapper.clone(),
            source,
        })?;
        let (listener, shell_end) = session_socket(&runtime).map_err(StartError::Socket)?;
        let sandbox = match config.sandbox.clone() {
            Some(sandbox) => Some(ActiveSandbox::new(sandbox, &config.wrapper)?),
            None => None,
        };
        let outside_path = match sandbox.as_ref().and_then(|s| s.resolved_default.as_ref()) {
            Some(policy) => {
                let (path, dropped) =
                    crate::environment::path_outside(&config.escalation_path, policy);
                if !dropped.is_empty() {
                    tracing::warn!(
                        left_out = ?dropped,
                        "directories the sandbox can write are left out of the PATH of \
                         programs escalated out of it"
                    );
                }
                path
            }
            None => config.escalation_path.clone(),
        };
        let id = new_session_id();
        let scope = Scope::new(&id, &config.wrapper)?;
        // The session's own sandbox's writable roots too: every sandbox
        // with grants can write them, and the shell could already.
        let default_policy = sandbox
            .as_ref()
            .and_then(|sandbox| sandbox.resolved_default.as_deref());
        let sandbox_writable = default_policy
            .into_iter()
            .flat_map(|policy| policy.rules())
            .filter(|rule| rule.access == Access::Write)
            .map(|rule| rule.path.clone());
        let granted_reach = default_policy.map(network_reach).unwrap_or_default();
        let granted_writable = config
            .known_grant_roots
            .iter()
            .chain(&config.granted_tmpdirs)
            .cloned()
            .chain(sandbox_writable)
            .collect();
        // A shell in a sandbox of the caller's (`External`) may ask from its
        // first request on (review 248).
        let sandbox_started = sandbox.as_ref().is_some_and(|sandbox| {
            matches!(sandbox.turn_default, PermissionProfile::External { .. })
        });
        let shared = Arc::new(Shared {
            id,
            escalation_env: config.escalation_env.clone().into(),
            frames_being_read: crate::channel::FramesBeingRead::default(),
            config,
            outside_path,
            granted_writable: Mutex::new(granted_writable),
            granted_reach: Mutex::new(granted_reach),
            grants_made: AtomicU64::new(0),
            children: Children::new(scope),
            sandbox,
            lineage: crate::lineage::Lineage::default(),
            next_request: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            blocking_decision_warned: AtomicBool::new(false),
            sandbox_started: AtomicBool::new(sandbox_started),
        });
        // Before the shell can ask anything; a session whose start cannot
        // be recorded does not start (with `AuditFailure::Deny`).
        let began = SessionEvent::Began {
            profile: shared.config.profile_name.clone(),
            sandbox: shared.sandbox.as_ref().map_or_else(
                || vec!["sandbox=disabled".to_owned()],
                |sandbox| sandbox.turn_default.grants(),
            ),
            roots: shared
                .sandbox
                .as_ref()
                .map(|sandbox| special_roots(&sandbox.context))
                .unwrap_or_default(),
        };
        shared.record(&began).map_err(StartError::Unrecorded)?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn_on(
            serve(shared.clone(), listener, cancel.clone(), tracker.clone()),
            &runtime,
        );
        Ok(Session {
            shared,
            shell_socket: Some(shell_end),
            shell_socket_taken: AtomicBool::new(false),
            cancel,
            tracker,
        })
    }

    /// The session's id, as it appears in events.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Records and reports events for this session from elsewhere (the
    /// network proxy's tasks), with its audit sink, event sink and
    /// [`AuditFailure`].
    pub fn event_reporter(&self) -> crate::EventReporter {
        crate::EventReporter::new(
            &self.shared.id,
            self.shared.config.audit.clone(),
            self.shared.config.events.clone(),
            self.shared.config.audit_failure,
        )
    }

    /// Variables to merge into the shell's environment: where the wrapper
    /// is and which descriptor is the session socket. Empty once the
    /// shell's socket has been handed over.
    pub fn shell_env(&self) -> Vec<(OsString, OsString)> {
        let Some(socket) = &self.shell_socket else {
            return Vec::new();
        };
        vec![
            (
                ENV_WRAPPER.into(),
                self.shared.config.wrapper.clone().into_os_string(),
            ),
            (ENV_SOCKET_FD.into(), socket.as_raw_fd().to_string().into()),
        ]
    }

    /// Call last, just before spawning a command that
    /// [`Session::shell_command`] and its kin made, once its environment
    /// is complete (`env_clear`, then `envs`): where the shell starts in
    /// the session's sandbox, the loader's variables of that environment
    /// (`LD_PRELOAD`, `GCONV_PATH`...) reach only the shell, not the
    /// launcher and the helper that start outside the sandbox's
    /// confinement (probe 173).
    pub fn seal_shell_command(&self, command: &mut std::process::Command) {
        if let Some(sandbox) = &self.shared.sandbox {
            sandbox.launcher.seal_environment(command);
        }
    }

    /// The descriptor the shell must inherit, at the number
    /// [`Session::shell_env`] names.
    pub fn shell_socket(&self) -> Option<BorrowedFd<'_>> {
        self.shell_socket.as_ref().map(AsFd::as_fd)
    }

    /// Prepares `command` to start the session's shell: merges
    /// [`Session::shell_env`] and makes the socket inheritable in the child
    /// only, after keeping every other descriptor from 3 up out of it
    /// (whatever this process inherited or opened without close-on-exec),
    /// and starts it with no signal blocked (whatever the spawning thread
    /// blocks).
    /// So call it before adding hooks of your own that pass a descriptor
    /// on. Call [`Session::shell_spawned`] once it has been spawned. The
    /// first shell gets the session's socket; each later one a socket of
    /// its own, whose end `command` holds until it is dropped: drop it once
    /// spawned.
    pub fn prepare_shell(&self, command: &mut std::process::Command) {
        let no_command_cgroup = None;
        self.prepare_shell_joining(command, no_command_cgroup);
    }

    /// [`Session::prepare_shell`], joining `command_cgroup`, or the
    /// session's cgroup without one.
    fn prepare_shell_joining(
        &self,
        command: &mut std::process::Command,
        command_cgroup: Option<CommandCgroup>,
    ) {
        sys::inherit_only_chosen_in_child(command);
        sys::empty_signal_mask_in_child(command);
        command.envs(self.shell_env());
        if let Some(socket) = &self.shell_socket {
            // The first shell takes the session's socket, which leaves no
            // descriptor in `command` (a caller may keep it past
            // `finished`); each later one a socket of its own, at the
            // number `shell_env` names (which a caller may set again after
            // clearing the command's environment).
            let own = match self.shell_socket_taken.swap(true, Ordering::SeqCst) {
                false => None,
                true => Some(self.socket_of_its_own()),
            };
            match own {
                None => sys::inherit_in_child(command, socket.as_raw_fd()),
                Some(Ok(own)) => sys::inherit_owned_at(command, own, socket.as_raw_fd()),
                // The session's own socket: this shell shares it.
                Some(Err(error)) => {
                    tracing::warn!(
                        session = %self.shared.id,
                        %error,
                        "cannot make a shell a session socket of its own; it shares the \
                         session's"
                    );
                    sys::inherit_in_child(command, socket.as_raw_fd());
                }
            }
        }
        if self.shared.config.shell_niceness > 0 {
            sys::lower_priority_in_child(command, self.shared.config.shell_niceness);
        }
        // The shell, and all it runs in place, dies with the session too.
        let cgroup = match command_cgroup {
            Some(own) => Some(Joined::Command(own)),
            None => self
                .shared
                .children
                .scope
                .cgroup()
                .cloned()
                .map(Joined::Session),
        };
        if let Some(cgroup) = cgroup {
            let procs = match &cgroup {
                Joined::Session(session) => session.procs(),
                Joined::Command(own) => own.cgroup().procs(),
            };
            sys::join_cgroup_in_child(command, procs, cgroup);
        }
    }

    /// A session socket for one shell, served as the session's own is
    /// (until the session is cancelled, or every holder of its shell end
    /// has closed it). Each shell gets its own, so that what one shell's
    /// processes do to theirs reaches no other shell of the session: a
    /// `shutdown(SHUT_WR)` on a shared one, which no holder can undo, cut
    /// every later shell off from the server, and hellos queued on it kept
    /// the others' waiting.
    fn socket_of_its_own(&self) -> std::io::Result<OwnedFd> {
        let runtime = crate::serving::handle()?;
        let (listener, shell_end) = session_socket(&runtime)?;
        self.tracker.spawn_on(
            serve(
                self.shared.clone(),
                listener,
                self.cancel.clone(),
                self.tracker.clone(),
            ),
            &runtime,
        );
        Ok(shell_end)
    }

    /// The command that starts `shell` with `args` for this session: inside
    /// the session's profile when it has a managed one, prepared as
    /// [`Session::prepare_shell`] does. Set its environment, then call
    /// [`Session::seal_shell_command`] on it last, before spawning it (else
    /// bubblewrap starts with the environment's `LD_PRELOAD`), and
    /// [`Session::shell_spawned`] once it has been spawned.
    pub fn shell_command(&self, shell: &Path, args: &[OsString]) -> ShellCommand {
        self.shell_command_on(shell, args, Terminal::Detached)
    }

    /// [`Session::shell_command`] for a shell that keeps the caller's
    /// terminal (an interactive shell with job control).
    pub fn shell_command_on(
        &self,
        shell: &Path,
        args: &[OsString],
        terminal: Terminal,
    ) -> ShellCommand {
        let policy = self
            .shared
            .sandbox
            .as_ref()
            .and_then(|sandbox| sandbox.resolved_default.clone());
        self.shell_command_in(shell, args, terminal, policy)
    }

    /// [`shell_command_on`](Self::shell_command_on) in the session's
    /// profile plus `extra` grants: one command that was granted more
    /// (requested permissions). `record` records the approver's answer (a
    /// [`SessionEvent::PermissionsRequested`] through
    /// [`Session::event_reporter`]; it may wait for the disk), told why the
    /// grant cannot be made, if it cannot: it is called once that is
    /// known, before the grant reaches the session or a command, and its
    /// error is this one's. So no shell is granted more unrecorded, and an
    /// answer is on the record even when its grant could not be made. Fails
    /// when the merged profile cannot be resolved, or the session has
    /// ended; never falls back to fewer restrictions than asked for.
    pub fn shell_command_with(
        &self,
        shell: &Path,
        args: &[OsString],
        terminal: Terminal,
        extra: &PermissionProfile,
        record: impl FnOnce(Option<&dyn std::fmt::Display>) -> Result<(), String>,
    ) -> Result<ShellCommand, GrantError> {
        let policy = match &self.shared.sandbox {
            _ if self.has_ended() => Err(GrantError::Ended),
            // A grant that hides the shell's working directory is not
            // made, as a profile that hides it is refused (probe 235: the
            // command ran in an empty directory).
            Some(sandbox) => sandbox
                .policy_with(Some(extra), None)
                .and_then(|policy| {
                    if let Some(policy) = &policy {
                        policy.check_working_directory(&sandbox.context.cwd)?;
                    }
                    Ok(policy)
                })
                .map_err(GrantError::from),
            // Unconfined by us: nothing to merge the grants into.
            None => Ok(None),
        };
        let policy = match policy {
            Ok(policy) => {
                record(None).map_err(GrantError::Unrecorded)?;
                policy
            }
            Err(error) => {
                record(Some(&error)).map_err(GrantError::Unrecorded)?;
                return Err(error);
            }
        };
        if let Some(policy) = &policy {
            self.shared.granted(policy);
        }
        Ok(self.shell_command_in(shell, args, terminal, policy))
    }

    fn shell_command_in(
        &self,
        shell: &Path,
        args: &[OsString],
        terminal: Terminal,
        policy: Option<Arc<ResolvedPolicy>>,
    ) -> ShellCommand {
        let (mut command, link, start, report) = match (&self.shared.sandbox, policy) {
            (
                Some(ActiveSandbox {
                    launcher, context, ..
                }),
                Some(policy),
            ) => {
                // The file itself, by a path that exists inside the view: a
                // symlink cannot be a bind target, and `..` may pass through
                // directories the view does not have.
                let shell = std::fs::canonicalize(shell).unwrap_or_else(|_| shell.into());
                self.shared.starting_a_sandbox();
                let mut launcher = launcher.clone();
                launcher.expose(&shell);
                launcher.set_terminal(terminal);
                let mut argv = vec![shell.into_os_string()];
                argv.extend(args.iter().cloned());
                let link = self.network_link(&policy, SandboxOrigin::Shell);
                let link_number = link.as_ref().map(AsRawFd::as_raw_fd);
                // Without them (no descriptor left, a tiny file-size
                // limit), the shell still starts; a failed set-up then
                // reads as its exit status 1, a death by signal as 128+n.
                let start = SandboxStart::new()
                    .inspect_err(|error| {
                        tracing::debug!(
                            session = %self.shared.id,
                            %error,
                            "cannot watch the sandbox's set-up"
                        );
                    })
                    .ok();
                let report = socketpair(
                    AddressFamily::Unix,
                    SockType::Stream,
                    None,
                    SockFlag::SOCK_CLOEXEC,
                )
                .inspect_err(|error| {
                    tracing::debug!(
                        session = %self.shared.id,
                        %error,
                        "cannot hear how the shell's sandbox ends"
                    );
                })
                .ok();
                let watch = execgate_sandbox::CommandWatch {
                    status_fd: start.as_ref().map(|(_, end)| end.as_raw_fd()),
                    report_fd: report.as_ref().map(|(_, end)| end.as_raw_fd()),
                };
                let command = launcher.command(&policy, &context.cwd, link_number, watch, &argv);
                (command, link, start, report)
            }
            _ => {
                let mut command = std::process::Command::new(shell);
                command.args(args);
                (command, None, None, None)
            }
        };
        // First: whatever this process inherited without close-on-exec
        // stays out of the shell; the hooks after it choose what goes in.
        // The shell joins its command's cgroup, or the session's.
        let cgroup = self.shared.children.scope.command_cgroup();
        self.prepare_shell_joining(&mut command, cgroup.clone());
        if let Some(link) = link {
            // The command owns the sandbox's end until it is dropped
            // (after the spawn).
            sys::inherit_owned_in_child(&mut command, link);
        }
        let start = start.map(|(start, bubblewraps)| {
            // bubblewrap's alone: it does not pass it on.
            sys::inherit_owned_in_child(&mut command, bubblewraps);
            start
        });
        let report = report.map(|(ours, helpers)| {
            // The helper's alone: it closes it as it executes the shell,
            // and the sandbox's init keeps it.
            sys::inherit_owned_in_child(&mut command, helpers);
            ours
        });
        ShellCommand {
            command,
            watch: ShellWatch { start, report },
            cgroup,
        }
    }

    /// The sandbox's end of a link to the proxy, for a limited sandbox
    /// with a bridge configured. `None` otherwise, and when the bridge
    /// fails: the helper then refuses to start a limited sandbox without
    /// one, saying why.
    fn network_link(&self, policy: &ResolvedPolicy, origin: SandboxOrigin) -> Option<OwnedFd> {
        network_link(&self.shared, policy, origin)
    }

    /// Closes the server's copy of the shell's socket. After this, the
    /// session ends when the shell and everything that inherited the socket
    /// have exited.
    pub fn shell_spawned(&mut self) {
        self.shell_socket = None;
    }

    /// Freezes every process of the session (its shells, what they run,
    /// its escalated children), or thaws them: its cgroup's freezer.
    /// `Ok(false)`, and nothing done, when the session has no cgroup
    /// ([`scope_support`](crate::scope_support)).
    pub fn freeze(&self, frozen: bool) -> std::io::Result<bool> {
        self.shared.children.scope.hold(FreezeReason::Job(frozen))
    }

    /// A handle that freezes the session while a question is on its
    /// terminal ([`QuestionFreezer::hold`]); it does not keep the session.
    pub fn question_freezer(&self) -> QuestionFreezer {
        QuestionFreezer {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Stops the workers and kills every escalated child now (and, where
    /// the session has a cgroup, every process of it).
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.shared.end(SessionEnd::Closed);
        crate::spare::Spares::reap_after_end(&self.shared);
    }

    /// Whether the session has been cancelled or terminated: it decides
    /// nothing more, and a shell started in it now could run nothing.
    pub fn has_ended(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// [`Session::cancel`] because the owner received `signal`: the audit
    /// log records that the session ended by it.
    pub fn terminate(&self, signal: i32) {
        self.cancel.cancel();
        self.shared.end(SessionEnd::Signal(signal));
        crate::spare::Spares::reap_after_end(&self.shared);
    }

    /// Cancels the session and waits until every worker has finished and
    /// every escalated child has been reaped.
    pub async fn shutdown(self) {
        self.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Waits until the shell side has gone (every holder of the session's
    /// sockets closed them: its shells, what they left running, and a
    /// command prepared for a shell after the first that is still kept)
    /// and every request has been served, escalated children included.
    pub async fn finished(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        // No request can come any more: the spares go now, not at the drop.
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            shared.children.spares.close();
            shared.children.spares.reap(&shared.children.scope);
        })
        .await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.shared.end(SessionEnd::Closed);
        self.shared.children.reap_all();
    }
}

/// A session socket: its server end registered with the serving thread's
/// reactor, its shell end (blocking: the wrapper uses it synchronously).
fn session_socket(
    runtime: &tokio::runtime::Handle,
) -> std::io::Result<(AsyncFd<OwnedFd>, OwnedFd)> {
    let (server_end, shell_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    let flags = nix::fcntl::fcntl(&shell_end, nix::fcntl::FcntlArg::F_GETFL)?;
    let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
    flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
    nix::fcntl::fcntl(&shell_end, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    let _guard = runtime.enter();
    let listener = sys::register_owned(server_end, tokio::io::Interest::READABLE)?;
    Ok((listener, shell_end))
}

fn new_session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:x}-{:x}-{}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Accepts hello datagrams until the session is cancelled or every sender
/// has closed the session socket.
async fn serve(
    shared: Arc<Shared>,
    listener: AsyncFd<OwnedFd>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    accept_hellos(&shared, &listener, &cancel, &tracker).await;
    // Hellos still queued on it carry descriptors, closed with it.
    closer::close_later([listener.into_inner()]);
}

async fn accept_hellos(
    shared: &Arc<Shared>,
    listener: &AsyncFd<OwnedFd>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    let mut buf = [0u8; 64];
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = next_hello(listener, &mut buf) => next,
        };
        match next {
            NextHello::Hello(private) => {
                tracker.spawn(conversation::serve_request(
                    shared.clone(),
                    private,
                    cancel.clone(),
                ));
            }
            NextHello::Refused(reason) => shared.emit(SessionEvent::RequestRefused {
                request_id: None,
                reason,
                requester: None,
                asked: None,
            }),
            NextHello::HungUp => return,
            NextHello::Failed(error) => {
                tracing::error!(session = %shared.id, %error, "session socket failed");
                return;
            }
        }
        // However many datagrams are queued, the reactor gets its turn: the
        // serving thread decides for every session.
        tokio::task::consume_budget().await;
    }
}

/// What the session socket gave next.
enum NextHello {
    /// A hello: the requester's private socket.
    Hello(OwnedFd),
    /// Something else, and why it is refused.
    Refused(String),
    /// Every holder of the shell end has closed it.
    HungUp,
    /// The socket cannot be waited on.
    Failed(std::io::Error),
}

/// Reads the next datagram on the session socket.
async fn next_hello(listener: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> NextHello {
    loop {
        let mut guard = match listener.readable().await {
            Ok(guard) => guard,
            Err(error) => return NextHello::Failed(error),
        };
        let hung_up = guard.ready().is_read_closed();
        let mut received = match guard.try_io(|fd| recv_with_fds(fd.get_ref().as_fd(), buf)) {
            Ok(Ok(received)) => received,
            Ok(Err(error)) => {
                return NextHello::Refused(format!("session socket read failed: {error}"))
            }
            Err(_would_block) => continue,
        };
        let accepted = accept_hello(buf, &mut received);
        // Whatever else the hello carried.
        closer::close_later(received.fds);
        return match accepted {
            Ok(private) => NextHello::Hello(private),
            // An empty datagram reads like a hang-up; only a real one ends
            // the session's accept loop. The readiness the reactor saw last
            // may be older than the hang-up (probe 206: the holders killed
            // while hellos were read, it was taken for an empty datagram
            // again and again, and the loop never let the reactor run): the
            // socket itself is asked.
            Err(HelloError::Closed) if hung_up || sys::hung_up(listener.get_ref().as_fd()) => {
                NextHello::HungUp
            }
            // Not a hang-up: say what it was (probe 140: the record said
            // the socket was closed, and the session served on).
            Err(HelloError::Closed) => NextHello::Refused("an empty datagram, not a hello".into()),
            Err(error) => NextHello::Refused(error.to_string()),
        };
    }
}

/// Escalated children that have not been reaped, by request id. A child's
/// process group id is its pid, which stays reserved while the child is
/// unreaped, so signalling the group of a listed child can never reach an
/// unrelated process.
pub(crate) struct Children {
    live: Mutex<HashMap<u64, LiveChild>>,
    /// Children being started: not listed yet, but counted as running by
    /// a session's end, and killed as they are listed after it. Changed
    /// under `live`'s lock when listed, so that a count sees each child
    /// once.
    starting: std::sync::atomic::AtomicUsize,
    /// Set (under `live`'s lock) once the session has killed its children:
    /// no child is listed after that.
    closed: AtomicBool,
    /// Sandboxes started ahead of `TurnDefault` escalations.
    pub(crate) spares: Spares,
    pub(crate) scope: Scope,
}

pub(crate) struct LiveChild {
    pub(crate) pid: i32,
    pub(crate) pidfd: Arc<OwnedFd>,
    /// Started through bubblewrap: the program runs in a pid namespace.
    pub(crate) sandboxed: bool,
    /// Relays signals to a sandboxed one's processes.
    pub(crate) relay: Arc<Relay>,
}

/// A child being started, counted by [`Children::count`] until listed.
pub(crate) struct Starting<'a> {
    children: &'a Children,
    counted: bool,
}

impl Starting<'_> {
    /// Lists the started child. Once the session has killed its children,
    /// kills this one too as it is listed: nothing a session started
    /// outlives it, however late its start completed; its conversation
    /// reaps it (and records its end) as any other's.
    pub(crate) fn listed(mut self, request_id: u64, child: LiveChild) {
        let children = self.children;
        let mut live = children.lock();
        if children.closed.load(Ordering::SeqCst) {
            // By its pidfd too: it, whichever group it is in now.
            let _ = sys::pidfd_kill(child.pidfd.as_fd());
            let _ = killpg(Pid::from_raw(child.pid), Signal::SIGKILL);
            // And whatever it started since, in the session's cgroup.
            children.scope.kill_all();
        }
        live.insert(request_id, child);
        // Under the lock: a count sees the child once, listed or starting.
        self.uncount();
    }

    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.children.starting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.uncount();
    }
}

/// The pid (in our namespace) of the sandbox's init, the helper that
/// bubblewrap `bwrap_pid` started (`--as-pid-1`). bubblewrap reaps it only
/// on its way out, so the number can name something else only in the
/// instant between that and bubblewrap's own exit.
fn sandbox_init(bwrap_pid: i32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{bwrap_pid}/task/{bwrap_pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

impl Children {
    fn new(scope: Scope) -> Children {
        Children {
            live: Mutex::default(),
            starting: std::sync::atomic::AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            spares: Spares::default(),
            scope,
        }
    }

    /// Listed children and those being started.
    fn count(&self) -> usize {
        let live = self.lock();
        live.len() + self.starting.load(Ordering::SeqCst)
    }

    /// Counts a child about to be started until it is listed
    /// ([`Starting::listed`]) or its start fails (the guard's drop).
    pub(crate) fn starting(&self) -> Starting<'_> {
        self.starting.fetch_add(1, Ordering::SeqCst);
        Starting {
            children: self,
            counted: true,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, LiveChild>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `signal` to the child's process group (a sandboxed one's every
    /// process), if it is still listed.
    pub(crate) fn signal(&self, request_id: u64, signal: Signal) {
        let Some(child) = self
            .lock()
            .get(&request_id)
            .map(|child| (child.pid, child.sandboxed, child.relay.clone()))
        else {
            return;
        };
        match child {
            // bubblewrap does not pass signals on. Its child is the pid
            // namespace's init, which leads the session and process group
            // the program inside runs in: signal that group (init itself
            // ignores what it has no handler for), and what left it
            // (`relay.rs`). SIGKILL still goes to bubblewrap, whose death
            // tears the namespace down.
            (pid, true, relay) if signal != Signal::SIGKILL => {
                if let Some(init) = sandbox_init(pid) {
                    relay.send(init, signal);
                }
            }
            (pid, _, _) => {
                let _ = killpg(Pid::from_raw(pid), signal);
            }
        }
    }

    /// Stops an escalation with `SIGSTOP`: a sandboxed one's every process,
    /// init included (a signal the kernel lets an ancestor namespace send
    /// it), an unsandboxed one's process group. Each leads a session of its
    /// own, so its group is orphaned and the kernel drops a `SIGTSTP` there
    /// unless the program handles it. A stand-in forwards `SIGTSTP` as it
    /// stops itself (Ctrl-Z); the program gets it first, and this after
    /// (see the conversation); the `SIGCONT` of `fg` or `bg` continues
    /// them all.
    pub(crate) fn stop_after_tstp(&self, request_id: u64) {
        self.signal(request_id, Signal::SIGSTOP);
    }

    /// Reaps the child if it has exited; `None` while it runs. A child no
    /// longer listed was killed and reaped by the session's drop.
    pub(crate) fn try_reap(&self, request_id: u64) -> Option<WaitStatus> {
        let mut live = self.lock();
        let Some(child) = live.get(&request_id) else {
            return Some(WaitStatus::Signaled(
                Pid::from_raw(0),
                Signal::SIGKILL,
                false,
            ));
        };
        let pid = child.pid;
        // Seen first, reaped after the warden has forgotten the group: once
        // reaped, its number may be given to another process.
        match waitid(
            Id::PIDFd(child.pidfd.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(_) => {
                self.scope.untrack(pid);
                let status = waitid(Id::PIDFd(child.pidfd.as_fd()), WaitPidFlag::WEXITED);
                live.remove(&request_id);
                Some(status.unwrap_or(WaitStatus::Signaled(
                    Pid::from_raw(pid),
                    Signal::SIGKILL,
                    false,
                )))
            }
            // Reaped by the session's drop, after it killed the group.
            Err(_) => {
                live.remove(&request_id);
                Some(WaitStatus::Signaled(
                    Pid::from_raw(pid),
                    Signal::SIGKILL,
                    false,
                ))
            }
        }
    }

    /// Kills every listed child's process group, and everything in the
    /// session's cgroup.
    pub(crate) fn kill_all(&self) {
        let live = self.lock();
        self.closed.store(true, Ordering::SeqCst);
        for child in live.values() {
            let _ = killpg(Pid::from_raw(child.pid), Signal::SIGKILL);
        }
        drop(live);
        self.spares.close();
        self.scope.kill_all();
    }

    /// Waits for every listed child (after [`Children::kill_all`]). The
    /// list is emptied first and the waits happen after its lock is
    /// released: other sessions' conversations share the serving thread,
    /// and one of this session's, still watching a child, must not hold it
    /// waiting on the lock while a killed child takes its time to exit. A
    /// conversation that finds its child gone from the list reports it
    /// killed, which it was.
    fn reap_all(&self) {
        let killed: Vec<LiveChild> = self.lock().drain().map(|(_, child)| child).collect();
        for child in killed {
            self.scope.untrack(child.pid);
            let _ = waitid(Id::PIDFd(child.pidfd.as_fd()), WaitPidFlag::WEXITED);
        }
        self.spares.reap(&self.scope);
    }
}

/// See [`Session::network_link`].
pub(crate) fn network_link(
    shared: &Shared,
    policy: &ResolvedPolicy,
    origin: SandboxOrigin,
) -> Option<OwnedFd> {
    if policy.network() != execgate_sandbox::NetworkPolicy::Limited {
        return None;
    }
    let bridge = shared.config.network.as_ref()?;
    match bridge.open(policy, origin) {
        Ok(link) => Some(link),
        Err(error) => {
            tracing::warn!(%error, "cannot link a limited sandbox to the proxy");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probe 206: the shell end's last holders were killed while hellos
    /// were read; the readiness seen last said nothing of it, and each read
    /// of the end was refused as an empty datagram, for ever. The end is
    /// the end, whatever the readiness seen last.
    #[tokio::test(flavor = "current_thread")]
    async fn a_hang_up_after_the_readiness_seen_last_is_one() {
        let (listener, shell_end) = session_socket(&tokio::runtime::Handle::current()).unwrap();
        let mut buf = [0u8; 64];
        nix::sys::socket::send(
            shell_end.as_raw_fd(),
            b"not a hello",
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        assert!(matches!(
            next_hello(&listener, &mut buf).await,
            NextHello::Refused(_)
        ));
        // No await between: the reactor has not run since.
        drop(shell_end);
        assert!(matches!(
            next_hello(&listener, &mut buf).await,
            NextHello::HungUp
        ));
    }

    /// An empty datagram from a holder still there is refused, not an end.
    #[tokio::test(flavor = "current_thread")]
    async fn an_empty_datagram_is_no_hang_up() {
        let (listener, shell_end) = session_socket(&tokio::runtime::Handle::current()).unwrap();
        let mut buf = [0u8; 64];
        nix::sys::socket::send(
            shell_end.as_raw_fd(),
            b"",
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        assert!(matches!(
            next_hello(&listener, &mut buf).await,
            NextHello::Refused(reason) if reason.contains("empty datagram")
        ));
    }

    #[test]
    fn a_request_is_large_by_its_arguments_and_environment_together() {
        let entry = |bytes: usize| OsString::from("x".repeat(bytes));
        // (entries, large at 10 bytes)
        let cases = [
            (vec![], false),
            (vec![entry(9)], false),
            (vec![entry(10)], true),
            (vec![entry(4), entry(5)], false),
            (vec![entry(4), entry(6)], true),
            (vec![entry(0); 100], false),
        ];
        for (entries, large) in cases {
            assert_eq!(bytes_at_least(entries.iter(), 10), large, "{entries:?}");
        }
    }
}
