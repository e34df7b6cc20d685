//! Asking a person: the approver trait, its answers, and the clocks that
//! keep approval time out of command timeouts.
//!
//! An approver is asked two kinds of question: may this command run
//! ([`Approver::approve`]), and may a `limited` sandbox connect to this
//! host, protocol and port ([`Approver::approve_network`]). The network
//! question has a default answer, decline, so that an approver written
//! before it existed (a closure, say) fails closed instead of letting
//! connections through.

use std::collections::HashMap;
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

// tokio's clock, so that tests can pause and advance it.
use tokio::time::Instant;

use execgate_escalate_server::sandbox::PermissionProfile;
use execgate_escalate_server::{CommandCgroup, Execution, RuleRef};
use execgate_network_proxy::{Destination, Protocol};

/// Why a request needs a person's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalReason {
    /// A `prompt` rule matched.
    Rule(RuleRef),
    /// A `prompt` rule matched and its escalation was refused (`refused`
    /// says why): the person is asked about running it in place, in the
    /// session's sandbox.
    RuleInPlace { rule: RuleRef, refused: String },
    /// A skill's script, whose skill declares permissions, and why it
    /// says it needs them.
    Skill {
        name: String,
        script: PathBuf,
        justification: Option<String>,
    },
    /// The caller asked that one command run with more permissions.
    RequestedPermissions { justification: Option<String> },
}

/// What the approver is asked.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    /// The canonical path of the program (for requested permissions: the
    /// shell).
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    pub cwd: PathBuf,
    pub reason: ApprovalReason,
    /// What the command runs as once approved.
    pub execution: Execution,
    /// Grants beyond the session's profile that come with approval
    /// (skills, requested permissions). A skill's are shown as its script
    /// gets them: `:cwd` and the other special roots named by their paths,
    /// and the network it reaches with the session's.
    pub permissions: Option<PermissionProfile>,
}

/// The approver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalAnswer {
    ApproveOnce,
    /// Approve this exact request (same file, arguments and directory) for
    /// the rest of the session.
    ApproveForSession,
    /// For requested permissions: approve with only these grants. Only what
    /// was requested as well is kept.
    ApprovePartly(PermissionProfile),
    Decline,
    /// Decline, and decline this exact request for the rest of the session
    /// without asking again. Offered for network destinations; an exec
    /// approval takes it as [`ApprovalAnswer::Decline`].
    DeclineForSession,
    /// Decline, and stop the whole command that asked.
    Abort,
    /// Nobody answered: the question could not be put (no terminal, a
    /// client's elicitation failed). Declined, and recorded as no one's
    /// answer, with `reason`.
    Unanswered {
        reason: String,
    },
}

/// What the approver is asked about a connection from a `limited` sandbox
/// that no list or rule allowed: the destination as the client named it
/// (canonical: lowercase, no trailing dot), the protocol and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkApprovalRequest {
    pub destination: Destination,
    pub protocol: Protocol,
    pub port: u16,
    /// The `prompt` rule that asks, if one does (otherwise nothing decided).
    pub rule: Option<RuleRef>,
}

/// Why a request is denied that no person answered: the session's
/// approver declines alone (`NOBODY_IS_ASKED`), or the question could not
/// be put ([`ApprovalAnswer::Unanswered`]'s reason).
pub(crate) const NOBODY_IS_ASKED: &str =
    "nobody is asked in this session (its approver declines every request)";

/// Distinct questions a session can have waiting for a person at once.
/// Past them a new one is not put: a probe's sandbox raised 6,600 in
/// seconds, each one more chance of a mistaken "yes", each holding
/// descriptors of the server while it waited.
pub(crate) const QUESTIONS_IN_FLIGHT: usize = 16;

/// Why a question was not put: [`QUESTIONS_IN_FLIGHT`] already wait.
pub(crate) fn too_many_questions() -> String {
    format!("not asked: {QUESTIONS_IN_FLIGHT} questions of this session already wait for an answer")
}

/// Requests of a session that may wait for answers at once, identical
/// ones that share a question included: past them a request is declined
/// unasked.
pub(crate) const REQUESTS_WAITING: usize = 256;

/// Why a request was declined unasked: [`REQUESTS_WAITING`] already wait.
pub(crate) fn too_many_waiting() -> String {
    format!("not asked: {REQUESTS_WAITING} requests of this session already wait for answers")
}

/// One requester waiting for a question's answer, with the others who
/// asked the same (`cell`, shared through `pending`). The question leaves
/// `pending` once answered, or once the last requester waiting for it has
/// gone away: one given up (its requester hung up, its call cancelled)
/// stayed there for the session, where it counted against
/// [`QUESTIONS_IN_FLIGHT`] for good.
pub(crate) struct WaitingForAnswer<'a, K: Eq + std::hash::Hash, V> {
    pending: &'a Mutex<HashMap<K, Arc<V>>>,
    key: K,
    pub(crate) cell: Arc<V>,
    /// Set once the answer came: the question is done with, whoever else
    /// still holds it.
    pub(crate) answered: bool,
}

impl<'a, K: Eq + std::hash::Hash, V> WaitingForAnswer<'a, K, V> {
    pub(crate) fn new(
        pending: &'a Mutex<HashMap<K, Arc<V>>>,
        key: K,
        cell: Arc<V>,
    ) -> WaitingForAnswer<'a, K, V> {
        WaitingForAnswer {
            pending,
            key,
            cell,
            answered: false,
        }
    }
}

impl<K: Eq + std::hash::Hash, V> Drop for WaitingForAnswer<'_, K, V> {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(current) = pending.get(&self.key) else {
            return;
        };
        // The map's reference and this one: nobody else waits for it.
        let abandoned = Arc::strong_count(&self.cell) <= 2;
        if Arc::ptr_eq(current, &self.cell) && (self.answered || abandoned) {
            pending.remove(&self.key);
        }
    }
}

pub(crate) fn nobody_answered(reason: &str) -> String {
    format!("declined: nobody answered ({reason})")
}

/// A boxed answer, so that approvers can be async and trait objects.
pub type ApprovalFuture<'a> = Pin<Box<dyn Future<Output = ApprovalAnswer> + Send + 'a>>;

/// Answers approval requests. Called concurrently; identical requests that
/// arrive while one is pending are asked once.
pub trait Approver: Send + Sync + 'static {
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a>;

    /// May a `limited` sandbox connect to this destination? Answers:
    /// [`ApprovalAnswer::ApproveOnce`], [`ApprovalAnswer::ApproveForSession`],
    /// [`ApprovalAnswer::Decline`], [`ApprovalAnswer::DeclineForSession`]
    /// (anything else declines). The default declines: an approver that
    /// does not know about networks must not open one.
    fn approve_network<'a>(&'a self, _request: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(std::future::ready(ApprovalAnswer::Decline))
    }

    /// Whether a person answers. [`DenyAll`] and [`ApproveAll`] answer by
    /// themselves: what they decide is recorded as the rule's or the
    /// policy's default, never as a person's.
    fn asks_a_person(&self) -> bool {
        true
    }
}

/// An approver whose panic is an unanswered question: declined, and on
/// the record. Left to unwind, the panic took the request's handling with
/// it, and the audit log kept no trace of the request (a probe's). The
/// approver is the embedder's code: a bug there must not lose a record.
/// Only where panics unwind: built with `panic = "abort"` (execgate's own
/// release build), a panic ends the process, and the warden kills what
/// the session started.
pub(crate) struct Contained(pub(crate) Arc<dyn Approver>);

/// What an approver that panicked is taken to have answered.
fn panicked() -> ApprovalAnswer {
    tracing::error!("the approver panicked; the request is declined");
    ApprovalAnswer::Unanswered {
        reason: "the approver failed (it panicked)".into(),
    }
}

/// `answer`, or [`panicked`] once polling it panics.
struct Unwinding<'a>(Option<ApprovalFuture<'a>>);

impl Future for Unwinding<'_> {
    type Output = ApprovalAnswer;

    fn poll(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<ApprovalAnswer> {
        let Some(answer) = self.0.as_mut() else {
            return std::task::Poll::Ready(panicked());
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer.as_mut().poll(context)
        })) {
            Ok(poll) => poll,
            Err(_) => {
                // A future that panicked is not polled again; its own drop
                // may panic too.
                let broken = self.0.take();
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(broken)));
                std::task::Poll::Ready(panicked())
            }
        }
    }
}

impl Contained {
    fn contain<'a>(&'a self, ask: impl FnOnce() -> ApprovalFuture<'a>) -> ApprovalFuture<'a> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(ask)) {
            Ok(answer) => Box::pin(Unwinding(Some(answer))),
            Err(_) => Box::pin(std::future::ready(panicked())),
        }
    }
}

impl Approver for Contained {
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        self.contain(|| self.0.approve(request))
    }

    fn approve_network<'a>(&'a self, request: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        self.contain(|| self.0.approve_network(request))
    }

    /// A person is taken to answer when the approver cannot say: its
    /// answers are then recorded as a person's.
    fn asks_a_person(&self) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.asks_a_person()))
            .unwrap_or(true)
    }
}

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        // An answer dropped before it came (a withdrawn question).
        let answer = self.0.take();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(answer)));
    }
}

/// Declines everything: for scripts and tests (`--approval deny`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl Approver for DenyAll {
    fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(std::future::ready(ApprovalAnswer::Decline))
    }

    fn asks_a_person(&self) -> bool {
        false
    }
}

/// Approves everything once: for tests (`--approval approve`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproveAll;

impl Approver for ApproveAll {
    fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(std::future::ready(ApprovalAnswer::ApproveOnce))
    }

    fn approve_network<'a>(&'a self, _: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(std::future::ready(ApprovalAnswer::ApproveOnce))
    }

    fn asks_a_person(&self) -> bool {
        false
    }
}

/// Any async function of the request is an approver.
impl<F, Fut> Approver for F
where
    F: Fn(ApprovalRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ApprovalAnswer> + Send + 'static,
{
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(self(request.clone()))
    }
}

/// How long approvals have been pending, for the session and for each of
/// its commands. A command's timeout and unified exec's yields stop while
/// a question it asked waits (asked for a program it started), or one no
/// command is known to have asked (a network destination, requested
/// permissions), overlapping ones counted once; another command's question
/// does not stop them (probe 153: one question held every command of the
/// session).
#[derive(Debug, Clone, Default)]
pub struct ApprovalClock {
    state: Arc<Mutex<ClockState>>,
    /// Held while a command starts and until it is registered
    /// ([`start_command`]): a question or an abort waits for it.
    starting: Arc<Mutex<()>>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// Every approval: the session's clock.
    any: Pause,
    /// Approvals pending that no command is known to have asked: each
    /// command's clock counts them.
    unattributed: usize,
    /// Each command's clock, by the pid it was started as, with the
    /// registration it belongs to: a pid freed and taken by another
    /// command is another clock (review 34b).
    commands: HashMap<u32, (u64, Pause)>,
    registrations: u64,
    /// Commands (pid and registration) a person stopped at a question.
    aborted: std::collections::HashSet<(u32, u64)>,
    /// Each command's first process, by pid: whether the process with
    /// that pid now is the one registered (review 46: a command that had
    /// ended stayed registered until its end was read, and a process of
    /// another command that took its pid was taken for it).
    processes: HashMap<u32, (u64, std::os::fd::OwnedFd, Option<CommandCgroup>)>,
}

/// Time during which at least one of some approvals was pending.
#[derive(Debug, Default)]
struct Pause {
    pending: usize,
    since: Option<Instant>,
    paused: Duration,
}

impl Pause {
    fn start(&mut self) {
        self.pending += 1;
        if self.pending == 1 {
            self.since = Some(Instant::now());
        }
    }

    fn end(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            if let Some(since) = self.since.take() {
                self.paused += since.elapsed();
            }
        }
    }

    fn total(&self) -> Duration {
        self.paused + self.since.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

impl ApprovalClock {
    /// Total time during which at least one approval of the session was
    /// pending.
    pub fn paused(&self) -> Duration {
        self.lock().any.total()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`paused`](Self::paused) as the command started as `command`
    /// counts it (the session's, for a command not registered).
    pub(crate) fn paused_for(&self, command: Option<u32>) -> Duration {
        let state = self.lock();
        match command.and_then(|pid| state.commands.get(&pid)) {
            Some((_, pause)) => pause.total(),
            None => state.any.total(),
        }
    }

    /// Whether an approval that holds `command`'s clock is waiting now.
    pub(crate) fn waiting_for(&self, command: Option<u32>) -> bool {
        let state = self.lock();
        match command.and_then(|pid| state.commands.get(&pid)) {
            Some((_, pause)) => pause.pending > 0,
            None => state.any.pending > 0,
        }
    }

    /// Keeps a clock for the command started as process `pid`, in
    /// `cgroup`, until the guard drops.
    pub(crate) fn command(&self, pid: u32, cgroup: Option<CommandCgroup>) -> CommandClock {
        let process = crate::tree::pin(pid);
        let mut state = self.lock();
        let mut pause = Pause::default();
        for _ in 0..state.unattributed {
            pause.start();
        }
        state.registrations += 1;
        let registration = state.registrations;
        state.commands.insert(pid, (registration, pause));
        let replaced = match process {
            Some(process) => state.processes.insert(pid, (registration, process, cgroup)),
            None => state.processes.remove(&pid),
        };
        // As a clock's drop does: a replaced hold may be a cgroup's last.
        drop(state);
        drop(replaced);
        CommandClock {
            clock: self.clone(),
            pid,
            registration,
        }
    }

    /// The command the process `requester` is part of
    /// ([`commands_of`](Self::commands_of)), marked as stopped by a person
    /// at a question. `None` when it is part of no running command (a
    /// program a spare sandbox runs, a process a command left). A command
    /// whose first process has ended is not one: a process with its pid now
    /// is another's.
    pub(crate) fn abort(&self, requester: i32) -> Option<CommandToStop> {
        // Blocks this thread for as long as a command takes to start (a
        // fork and exec); a start waits at most for a few reads of /proc.
        let _started = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        let ancestry = self.commands_of(requester);
        let mut state = self.lock();
        let (registration, command) = ancestry.into_iter().find_map(|pid| {
            let registration = state.commands.get(&pid)?.0;
            let (of, process, cgroup) = state.processes.get(&pid)?;
            let running = *of == registration && crate::tree::still_running(process);
            let command = CommandToStop {
                pid,
                pidfd: process.try_clone().ok()?,
                cgroup: cgroup.clone(),
            };
            running.then_some((registration, command))
        })?;
        state.aborted.insert((command.pid, registration));
        Some(command)
    }

    /// The commands the process `requester` may be part of, by their first
    /// processes: the one whose cgroup holds it; without one, those among
    /// its [`lineage`](crate::tree::lineage) (probe 206: a process both
    /// left by its parent and out of its command's group was found by
    /// neither, and a stop at its question let the command go on).
    fn commands_of(&self, requester: i32) -> Vec<u32> {
        let cgroups: Vec<(u32, CommandCgroup)> = self
            .lock()
            .processes
            .iter()
            .filter_map(|(pid, (_, _, cgroup))| Some((*pid, cgroup.clone()?)))
            .collect();
        let commands = cgroups.iter().map(|(pid, cgroup)| (*pid, cgroup));
        match CommandCgroup::holding(requester, commands) {
            Some(pid) => vec![pid],
            None => crate::tree::lineage(requester),
        }
    }

    /// Marks an approval pending until the guard drops, asked by the
    /// process `requester` (`None`: not known): it holds the clock of the
    /// command that process is part of, or, when none is known, of every
    /// command.
    pub(crate) fn pending(&self, requester: Option<i32>) -> PendingApproval {
        // As an abort does, a known asker waits for its command to be kept
        // first (a question no process asked, a network one, need not).
        let ancestry = requester
            .map(|requester| {
                let _started = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
                self.commands_of(requester)
            })
            .unwrap_or_default();
        let mut state = self.lock();
        state.any.start();
        let commands: Vec<(u32, u64)> = ancestry
            .into_iter()
            .filter_map(|pid| Some((pid, state.commands.get(&pid)?.0)))
            .collect();
        let holds = if commands.is_empty() {
            state.unattributed += 1;
            state
                .commands
                .values_mut()
                .for_each(|(_, pause)| pause.start());
            Holds::Every
        } else {
            for (pid, _) in &commands {
                if let Some((_, pause)) = state.commands.get_mut(pid) {
                    pause.start();
                }
            }
            Holds::Commands(commands)
        };
        PendingApproval {
            clock: self.clone(),
            holds,
        }
    }
}

/// Starts a session's shell, killed if its handle drops, as
/// [`start_command`] starts a command.
pub(crate) fn start_shell(
    clock: Option<&ApprovalClock>,
    shell: std::process::Command,
    cgroup: Option<&CommandCgroup>,
) -> std::io::Result<(tokio::process::Child, Option<CommandClock>)> {
    start_command(clock, cgroup, move || {
        let child = tokio::process::Command::from(shell)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id();
        Ok((child, pid))
    })
}

/// Starts a command with `start`, which gives its first process's pid,
/// and, with a `clock`, keeps the command's clock until the guard drops;
/// a question or an abort asked meanwhile waits until it is kept (CI: a
/// question the shell asked first found no command: an abort stopped only
/// the asker, and the question held every command's clock).
pub(crate) fn start_command<T, E>(
    clock: Option<&ApprovalClock>,
    cgroup: Option<&CommandCgroup>,
    start: impl FnOnce() -> Result<(T, Option<u32>), E>,
) -> Result<(T, Option<CommandClock>), E> {
    let Some(clock) = clock else {
        return start().map(|(started, _)| (started, None));
    };
    let _starting = clock
        .starting
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (started, pid) = start()?;
    Ok((started, pid.map(|pid| clock.command(pid, cgroup.cloned()))))
}

/// A command a person stopped at a question ([`ApprovalClock::abort`]):
/// its first process, which leads its process group (its shell's, or its
/// sandbox's bubblewrap), pinned by a pidfd, and its cgroup if it has one.
pub(crate) struct CommandToStop {
    pub(crate) pid: u32,
    pub(crate) pidfd: std::os::fd::OwnedFd,
    pub(crate) cgroup: Option<CommandCgroup>,
}

/// A command's own clock, kept while this lives.
pub(crate) struct CommandClock {
    clock: ApprovalClock,
    pid: u32,
    registration: u64,
}

impl CommandClock {
    /// Whether a person stopped this command at a question
    /// ([`ApprovalClock::abort`]).
    pub(crate) fn aborted(&self) -> bool {
        self.clock
            .lock()
            .aborted
            .contains(&(self.pid, self.registration))
    }
}

impl Drop for CommandClock {
    fn drop(&mut self) {
        let mut state = self.clock.lock();
        state.aborted.remove(&(self.pid, self.registration));
        // Dropped after the lock: the last hold of a command's cgroup
        // removes it, a file-system call no other clock user need wait on.
        let mut process = None;
        if state.processes.get(&self.pid).map(|(of, ..)| *of) == Some(self.registration) {
            process = state.processes.remove(&self.pid);
        }
        if state
            .commands
            .get(&self.pid)
            .map(|(registration, _)| *registration)
            == Some(self.registration)
        {
            state.commands.remove(&self.pid);
        }
        drop(state);
        drop(process);
    }
}

/// Whose clocks an approval holds: every command's, or these (pid and
/// registration).
enum Holds {
    Every,
    Commands(Vec<(u32, u64)>),
}

pub(crate) struct PendingApproval {
    clock: ApprovalClock,
    holds: Holds,
}

impl Drop for PendingApproval {
    fn drop(&mut self) {
        let mut state = self.clock.lock();
        state.any.end();
        match &self.holds {
            Holds::Every => {
                state.unattributed = state.unattributed.saturating_sub(1);
                state
                    .commands
                    .values_mut()
                    .for_each(|(_, pause)| pause.end());
            }
            Holds::Commands(commands) => {
                for (pid, registration) in commands {
                    match state.commands.get_mut(pid) {
                        Some((now, pause)) if now == registration => pause.end(),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Sleeps until `timeout` has passed, not counting time when approvals
/// holding the clock of the command started as `command` were pending
/// (any of the session's, for `None`).
pub(crate) async fn sleep_excluding_approvals(
    timeout: Duration,
    clock: Option<ApprovalClock>,
    command: Option<u32>,
) {
    let Some(clock) = clock else {
        return tokio::time::sleep(timeout).await;
    };
    let start = Instant::now();
    let paused_at_start = clock.paused_for(command);
    loop {
        let paused = clock.paused_for(command).saturating_sub(paused_at_start);
        let counted = start.elapsed().saturating_sub(paused);
        if counted >= timeout {
            return;
        }
        // Wake at the deadline as it stands; an approval in between moves
        // it, and the next round sees that.
        let left = (timeout - counted).max(Duration::from_millis(5));
        tokio::time::sleep(left).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overlapping_approvals_pause_the_clock_once() {
        let clock = ApprovalClock::default();
        let first = clock.pending(None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = clock.pending(None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(second);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Pending from 0 to 300 ms, the overlap counted once.
        assert_eq!(clock.paused(), Duration::from_millis(300));
    }

    /// A command: a child of this process, as a session's are; killed
    /// and reaped when dropped.
    struct Command(std::process::Child);

    impl Command {
        fn start() -> Command {
            Command(
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap(),
            )
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Command {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_question_holds_the_clock_of_the_command_it_came_from_only() {
        let clock = ApprovalClock::default();
        let child = Command::start();
        let asker = child.pid();
        // No process's pid (above any `pid_max`): none of the child's
        // ancestors.
        let other = u32::MAX - 1;
        let _asker_clock = clock.command(asker, None);
        let _other_clock = clock.command(other, None);
        let asked = clock.pending(i32::try_from(asker).ok());
        assert!(clock.waiting_for(Some(asker)) && !clock.waiting_for(Some(other)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(asked);
        assert_eq!(clock.paused_for(Some(asker)), Duration::from_millis(100));
        assert_eq!(clock.paused_for(Some(other)), Duration::ZERO);
        // Nobody known asked: every command's clock, one started while it
        // waits from its start.
        let unknown = clock.pending(None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let late = 4242;
        let _late_clock = clock.command(late, None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(unknown);
        assert_eq!(clock.paused_for(Some(asker)), Duration::from_millis(300));
        assert_eq!(clock.paused_for(Some(other)), Duration::from_millis(200));
        assert_eq!(clock.paused_for(Some(late)), Duration::from_millis(100));
        // The session's: any question.
        assert_eq!(clock.paused(), Duration::from_millis(300));
        assert_eq!(clock.paused_for(None), Duration::from_millis(300));
        drop(child);
    }

    /// Review 34b: a pid freed by one command and taken by another is
    /// another clock; the first's guards leave the second's alone.
    #[tokio::test(start_paused = true)]
    async fn a_reused_pid_is_another_commands_clock() {
        let clock = ApprovalClock::default();
        let child = Command::start();
        let asker = child.pid();
        let first = clock.command(asker, None);
        let asked = clock.pending(i32::try_from(asker).ok());
        // The first command's process is gone; its pid is the second's.
        let second = clock.command(asker, None);
        drop(first);
        assert!(!clock.waiting_for(Some(asker)));
        let own = clock.pending(i32::try_from(asker).ok());
        drop(asked);
        assert!(clock.waiting_for(Some(asker)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(own);
        assert_eq!(clock.paused_for(Some(asker)), Duration::from_millis(100));
        drop(second);
        assert!(clock.lock().commands.is_empty());
        drop(child);
    }

    /// Review 46: a command that had ended stayed registered until its
    /// end was read, and a process of another command that took its pid
    /// was aborted as that command (the other went on). A command is only
    /// the one registered while its first process runs.
    #[test]
    fn an_ended_commands_pid_names_no_command() {
        let clock = ApprovalClock::default();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let _registered = clock.command(pid, None);
        let asker = i32::try_from(pid).unwrap();
        assert_eq!(clock.abort(asker).map(|command| command.pid), Some(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(clock.abort(asker).is_none());
    }

    /// CI: a question the shell asked before its pid was kept found no
    /// command, and the command went unaborted. An abort asked while a
    /// command starts waits until it is kept.
    #[test]
    fn an_abort_asked_while_its_command_starts_finds_it() {
        let clock = ApprovalClock::default();
        let ((child, abort), kept) = start_command(Some(&clock), None, || {
            let child = Command::start();
            let asker = i32::try_from(child.pid()).unwrap();
            let abort = std::thread::spawn({
                let clock = clock.clone();
                move || clock.abort(asker)
            });
            // Long enough for the abort to reach the clock first.
            std::thread::sleep(Duration::from_millis(200));
            let pid = Some(child.pid());
            Ok::<_, std::convert::Infallible>(((child, abort), pid))
        })
        .unwrap();
        assert_eq!(
            abort.join().unwrap().map(|command| command.pid),
            Some(child.pid())
        );
        assert!(kept.unwrap().aborted());
    }

    /// Review 205: a question asked while its command started was no
    /// command's, and held every command's clock until answered.
    #[test]
    fn a_question_asked_while_its_command_starts_is_its_own() {
        let clock = ApprovalClock::default();
        let other = u32::MAX - 1;
        let _other_clock = clock.command(other, None);
        let ((child, asking), _kept) = start_command(Some(&clock), None, || {
            let child = Command::start();
            let asker = i32::try_from(child.pid()).unwrap();
            let asking = std::thread::spawn({
                let clock = clock.clone();
                move || clock.pending(Some(asker))
            });
            // Long enough for the question to reach the clock first.
            std::thread::sleep(Duration::from_millis(200));
            let pid = Some(child.pid());
            Ok::<_, std::convert::Infallible>(((child, asking), pid))
        })
        .unwrap();
        let _asked = asking.join().unwrap();
        assert!(clock.waiting_for(Some(child.pid())));
        assert!(!clock.waiting_for(Some(other)));
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_stop_while_an_approval_waits() {
        let clock = ApprovalClock::default();
        let waiting = clock.pending(None);
        let start = Instant::now();
        let sleeper = tokio::spawn(sleep_excluding_approvals(
            Duration::from_millis(100),
            Some(clock.clone()),
            None,
        ));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!sleeper.is_finished());
        drop(waiting);
        sleeper.await.expect("sleeper");
        let slept = start.elapsed();
        assert!(
            slept >= Duration::from_millis(1100) && slept < Duration::from_millis(1200),
            "{slept:?}"
        );
    }
}
