//! The session's table of live processes: starting one, following it to
//! its end, its output buffers, and which one goes when the table is full.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use execgate_escalate_server::ShellWatch;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use super::buffer::{cut_middle, HeadTail, Trailing};
use super::pty::{self, Master, DEFAULT_TERMINAL_SIZE};
use super::{
    ExecError, ExecOutput, ExecStdio, ProcessId, ProcessInfo, ProcessState, DEFAULT_PROCESS_LIMIT,
    OUTPUT_BUFFER_BYTES,
};
use crate::{BridgeError, CommandStatus};

/// How many of the most recently used processes pruning never picks.
const PROTECTED_RECENT: usize = 8;
/// The exit status of a process whose sandbox bubblewrap could not set
/// up, so that nothing ran: `execgate run`'s for a command that did not
/// start, not the 1 bubblewrap exits with, which a command's own failure
/// gives too.
const SANDBOX_NOT_SET_UP: i32 = 125;
/// How long output is still read after a process's group is gone (a
/// process that left the group may hold the pipe open).
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// The same for a process that was killed: what is already in the pipe is
/// read, and nobody waits for what a process that left the group may
/// still write (a probe's MCP client waited 0.5 s per killed process, 32 s
/// for a full table, at its disconnect).
const KILLED_DRAIN_GRACE: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(crate) struct ProcessTable {
    state: Mutex<TableState>,
}

struct TableState {
    limit: usize,
    next_id: u32,
    uses: u64,
    entries: HashMap<ProcessId, Entry>,
    /// Set by [`ProcessTable::kill_all`]: a process started after it is
    /// killed at once (review 205: one started while the session was
    /// cancelled was kept, and lived until the session was dropped).
    closed: bool,
}

impl Default for TableState {
    fn default() -> Self {
        TableState {
            limit: DEFAULT_PROCESS_LIMIT,
            next_id: 1000,
            uses: 0,
            entries: HashMap::new(),
            closed: false,
        }
    }
}

struct Entry {
    process: Arc<LiveProcess>,
    last_used: u64,
    /// Calls waiting on the process now: pruning passes it over, so that
    /// no call answers with the end of a process it was promised.
    calls: usize,
}

/// A process a call is waiting on; dropping it ends the wait, and prunes
/// whatever the wait kept over the limit.
pub(crate) struct InUse<'a> {
    table: &'a ProcessTable,
    process: Arc<LiveProcess>,
}

impl std::ops::Deref for InUse<'_> {
    type Target = Arc<LiveProcess>;

    fn deref(&self) -> &Arc<LiveProcess> {
        &self.process
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        let mut state = self.table.lock();
        if let Some(entry) = state.entries.get_mut(&self.process.id) {
            entry.calls -= 1;
        }
        state.trim();
    }
}

/// One process: its output so far and how it ended. Dropping the last
/// handle kills its process group.
pub(crate) struct LiveProcess {
    id: ProcessId,
    command: String,
    started: SystemTime,
    /// When it started, on the clock network denials are told apart by.
    started_at: std::time::Instant,
    pgid: Option<i32>,
    terminal: Option<Arc<Master>>,
    /// The `longest_approval_wait` of the call that started it, which its
    /// polls keep.
    longest_approval_wait: Duration,
    /// The shell, pinned while it runs: what it started is killed with it.
    root: Option<std::os::fd::OwnedFd>,
    /// Its own cgroup, which a kill reaches whole.
    cgroup: Option<execgate_escalate_server::CommandCgroup>,
    /// Its own approval clock, kept while it is (another command's
    /// question does not stop its yields).
    own_clock: Option<crate::approval::CommandClock>,
    shared: Arc<Mutex<Collected>>,
    ended: watch::Receiver<bool>,
    follower: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Collected {
    stdout: Option<HeadTail>,
    stderr: Option<HeadTail>,
    status: Option<CommandStatus>,
    /// The shell has been reaped: unless something it left behind is still
    /// in its process group, the group's id is free for another process.
    /// Set at once; `status` waits for the output to drain (up to
    /// [`DRAIN_GRACE`]), and a kill in between could have reached a
    /// recycled group.
    reaped: bool,
    /// It was killed (by request, pruning or its session's end): its
    /// output is drained for [`KILLED_DRAIN_GRACE`] only, and told so
    /// while it drains.
    killed: bool,
    killing: Arc<tokio::sync::Notify>,
}

impl ProcessTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, TableState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.lock().limit = limit;
    }

    /// Spawns `shell` with `stdio` and keeps it, in use by the calling
    /// call, pruning others when the table is over its limit. Forked,
    /// read and followed on `runtime`, the session's, as `run`'s commands
    /// are (probe 224: forked on the caller's thread and followed on its
    /// runtime, a process died with either, and was listed as running for
    /// good): bubblewrap's `--die-with-parent` follows the thread that
    /// forks it, and a runtime's workers last as long as the runtime.
    // Each is the call's own, but for the runtime: no struct would hold
    // them together anywhere else.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        &self,
        runtime: &tokio::runtime::Handle,
        command: &str,
        shell: execgate_escalate_server::ShellCommand,
        stdio: ExecStdio,
        longest_approval_wait: Duration,
        clock: Option<crate::approval::ApprovalClock>,
        failure: &crate::session::ShellFailure,
    ) -> Result<InUse<'_>, BridgeError> {
        let execgate_escalate_server::ShellCommand {
            command: mut shell,
            watch: shell_watch,
            cgroup,
        } = shell;
        let io_error = |what: &str| {
            let what = what.to_owned();
            move |source| BridgeError::Io { what, source }
        };
        let terminal = match stdio {
            ExecStdio::Pipes => {
                shell
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                None
            }
            ExecStdio::Terminal => {
                let (rows, cols) = DEFAULT_TERMINAL_SIZE;
                let (master, slave) = {
                    let _registered_there = runtime.enter();
                    pty::open(rows, cols).map_err(io_error("cannot open a PTY"))?
                };
                let clone = |slave: &std::fs::File| slave.try_clone().map(Stdio::from);
                shell
                    .stdin(clone(&slave).map_err(io_error("cannot share the PTY"))?)
                    .stdout(clone(&slave).map_err(io_error("cannot share the PTY"))?)
                    .stderr(Stdio::from(slave));
                Some(Arc::new(master))
            }
        };
        // The command holds the parent's copies of the slave end: it goes
        // right after the spawn, so the master sees the end of the process.
        let cwd = shell
            .get_current_dir()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        // Before the spawn: a denial of this process's sandbox comes after
        // it.
        let started_at = std::time::Instant::now();
        // Its own approval clock, kept before any question of its is asked
        // (review 205: kept after the spawn, a question asked first held
        // every process's yield, and an abort stopped only the asker).
        let forked_cgroup = cgroup.clone();
        let forked = runtime
            .spawn(async move {
                crate::approval::start_shell(clock.as_ref(), shell, forked_cgroup.as_ref())
            })
            .await
            .map_err(|_| BridgeError::RuntimeEnded)?;
        let (mut child, own_clock) =
            forked.map_err(|source| crate::session::shell_not_started(source, &cwd))?;
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
        let root = child.id().and_then(crate::tree::pin);
        let shared = Arc::new(Mutex::new(Collected::default()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(runtime.spawn(read_pipe(stdout, shared.clone(), Stream::Stdout)));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(runtime.spawn(read_pipe(stderr, shared.clone(), Stream::Stderr)));
        }
        if let Some(master) = &terminal {
            readers.push(runtime.spawn(read_terminal(master.clone(), shared.clone())));
        }
        let (ended_sender, ended) = watch::channel(false);
        let stream = match terminal {
            Some(_) => Stream::Stdout,
            None => Stream::Stderr,
        };
        let follower = runtime.spawn(follow(
            child,
            pgid,
            readers,
            shared.clone(),
            ended_sender,
            (shell_watch, stream, failure.clone()),
        ));

        let mut state = self.lock();
        let id = ProcessId(state.next_id);
        state.next_id = state.next_id.wrapping_add(1);
        state.uses += 1;
        let process = Arc::new(LiveProcess {
            id,
            command: command.to_owned(),
            started: SystemTime::now(),
            started_at,
            pgid,
            root,
            cgroup,
            terminal,
            longest_approval_wait,
            own_clock,
            shared,
            ended,
            follower,
        });
        if state.closed {
            drop(state);
            // Its drop kills it whole.
            drop(process);
            return Err(BridgeError::SessionEnded);
        }
        let last_used = state.uses;
        state.entries.insert(
            id,
            Entry {
                process: process.clone(),
                last_used,
                calls: 1,
            },
        );
        state.trim();
        drop(state);
        Ok(InUse {
            table: self,
            process,
        })
    }

    /// The process `id`, now the most recently used, in use by the caller.
    pub(crate) fn touch(&self, id: ProcessId) -> Result<InUse<'_>, ExecError> {
        let mut state = self.lock();
        state.uses += 1;
        let uses = state.uses;
        let entry = state
            .entries
            .get_mut(&id)
            .ok_or(ExecError::UnknownProcess(id))?;
        entry.last_used = uses;
        entry.calls += 1;
        let process = entry.process.clone();
        drop(state);
        Ok(InUse {
            table: self,
            process,
        })
    }

    pub(crate) fn remove(&self, id: ProcessId) -> Option<Arc<LiveProcess>> {
        self.lock().entries.remove(&id).map(|entry| entry.process)
    }

    /// Forgets a process whose end has been reported.
    pub(crate) fn forget(&self, id: ProcessId) {
        let removed = self.remove(id);
        drop(removed);
    }

    /// Every process, `waiting_for` telling whether a question holds the
    /// clock of the one started as a pid.
    pub(crate) fn list(&self, waiting_for: impl Fn(Option<u32>) -> bool) -> Vec<ProcessInfo> {
        let state = self.lock();
        let mut list: Vec<ProcessInfo> = state
            .entries
            .values()
            .map(|entry| {
                let process = &entry.process;
                let state = match process.status() {
                    Some(status) => ProcessState::Exited(status),
                    None => ProcessState::Running,
                };
                let awaiting_approval = state == ProcessState::Running
                    && waiting_for(process.group_since().map(|(pgid, _)| pgid));
                ProcessInfo {
                    process_id: process.id,
                    command: process.command.clone(),
                    started: process.started,
                    state,
                    awaiting_approval,
                }
            })
            .collect();
        list.sort_by_key(|info| info.process_id);
        list
    }

    /// Kills every process now, and each one started from then on.
    pub(crate) fn kill_all(&self) {
        let entries: Vec<Entry> = {
            let mut state = self.lock();
            state.closed = true;
            state.entries.drain().map(|(_, entry)| entry).collect()
        };
        drop(entries);
    }
}

impl TableState {
    /// Prunes processes no call waits on until the table is within its
    /// limit; it stays over while every candidate is in use.
    fn trim(&mut self) {
        while self.entries.len() > self.limit {
            let chosen = prune_choice(self.entries.iter().map(|(id, entry)| Candidate {
                id: *id,
                last_used: entry.last_used,
                exited: entry.process.has_exited(),
                in_use: entry.calls > 0,
            }));
            let Some(pruned) = chosen.and_then(|id| self.entries.remove(&id)) else {
                return;
            };
            // The process dies when its last handle drops; the task only
            // waits for its end outside the lock. Without a runtime (a
            // `resize` from a plain thread) the drop alone does it.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { pruned.process.kill_and_wait().await });
            }
        }
    }
}

/// What pruning knows of one process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    id: ProcessId,
    last_used: u64,
    exited: bool,
    in_use: bool,
}

impl Drop for ProcessTable {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Which process goes when the table is full: among all but the
/// [`PROTECTED_RECENT`] most recently used, the least recently used one
/// that has exited, else the least recently used one; in a table of no
/// more than those, the least recently used one. A process some call is
/// waiting on is never chosen, and while every candidate is, none is
/// (probe 221: a recent one was, and each process started then was
/// pruned as its start answered, its id just handed out).
pub(crate) fn prune_choice(entries: impl Iterator<Item = Candidate>) -> Option<ProcessId> {
    let mut entries: Vec<Candidate> = entries.collect();
    entries.sort_by_key(|entry| entry.last_used);
    let unprotected = entries.len().saturating_sub(PROTECTED_RECENT);
    let idle: Vec<(usize, Candidate)> = entries
        .into_iter()
        .enumerate()
        .filter(|(_, entry)| !entry.in_use)
        .collect();
    let unprotected_idle = || idle.iter().filter(|(place, _)| *place < unprotected);
    unprotected_idle()
        .find(|(_, entry)| entry.exited)
        .or_else(|| unprotected_idle().next())
        .or_else(|| idle.first().filter(|_| unprotected == 0))
        .map(|(_, entry)| entry.id)
}

impl LiveProcess {
    pub(crate) fn id(&self) -> ProcessId {
        self.id
    }

    /// Its process group (its sandbox's first process), and when it
    /// started: what [`ProxyHost::take_denial`](crate::network::ProxyHost)
    /// asks.
    pub(crate) fn group_since(&self) -> Option<(u32, std::time::Instant)> {
        let pgid = u32::try_from(self.pgid?).ok()?;
        Some((pgid, self.started_at))
    }

    /// Whether a person stopped it at a question one of its programs
    /// asked.
    pub(crate) fn aborted(&self) -> bool {
        self.own_clock
            .as_ref()
            .is_some_and(crate::approval::CommandClock::aborted)
    }

    pub(crate) fn terminal(&self) -> Option<&Master> {
        self.terminal.as_deref()
    }

    pub(crate) fn longest_approval_wait(&self) -> Duration {
        self.longest_approval_wait
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> Option<CommandStatus> {
        self.lock().status
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.status().is_some()
    }

    /// Whether its shell has ended (its status comes once the output is
    /// drained).
    pub(crate) fn shell_ended(&self) -> bool {
        self.lock().reaped
    }

    /// Resolves once the process has exited and its output is drained.
    pub(crate) async fn ended(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// The output since the last take, cut to `max` bytes, and the status
    /// once the process has ended (all output is then handed out).
    pub(crate) fn take_output(&self, max: usize) -> (ExecOutput, Option<CommandStatus>) {
        let mut collected = self.lock();
        let status = collected.status;
        let trailing = match status {
            Some(_) => Trailing::Release,
            None => Trailing::HoldBack,
        };
        let take = |buffer: &mut Option<HeadTail>| {
            buffer
                .as_mut()
                .map_or((Vec::new(), 0), |buffer| buffer.take(trailing))
        };
        let (stdout, stdout_omitted) = take(&mut collected.stdout);
        let (stderr, stderr_omitted) = take(&mut collected.stderr);
        drop(collected);
        // stderr keeps at least half of the cap when it needs it.
        let stderr_share = stderr
            .len()
            .min(max.saturating_sub(stdout.len()).max(max / 2));
        let (stderr, stderr_cut) = cut_middle(&stderr, stderr_share);
        let (stdout, stdout_cut) = cut_middle(&stdout, max - stderr.len().min(max));
        let output = ExecOutput {
            stdout,
            stderr,
            omitted_bytes: stdout_omitted + stderr_omitted + stdout_cut + stderr_cut,
        };
        (output, status)
    }

    /// Kills the command and its process group now, unless the shell has
    /// been reaped (the follower killed what was left in the group then).
    pub(crate) fn kill(&self) {
        let mut collected = self.lock();
        collected.killed = true;
        collected.killing.notify_one();
        if !collected.reaped {
            // Whole, in whatever groups (probe 206: its group alone, and
            // `timeout`'s or `setsid`'s children ran on).
            crate::tree::kill_command(self.root.as_ref(), self.pgid, self.cgroup.as_ref());
        } else if let Some(cgroup) = &self.cgroup {
            // Its shell is gone, and its group may be another's by now;
            // its cgroup is its own still, with what an escalated program
            // left there (probe 221: skipped, that ran on until the
            // session ended).
            let _ = cgroup.kill();
        }
    }

    /// Kills the process group and waits (briefly) for the end.
    pub(crate) async fn kill_and_wait(&self) {
        self.kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.ended()).await;
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        self.kill();
        // Its child is killed on drop: the shell goes even if the group
        // kill missed it.
        self.follower.abort();
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

fn keep(shared: &Mutex<Collected>, stream: Stream, bytes: &[u8]) {
    let mut collected = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let buffer = match stream {
        Stream::Stdout => &mut collected.stdout,
        Stream::Stderr => &mut collected.stderr,
    };
    buffer
        .get_or_insert_with(|| HeadTail::new(OUTPUT_BUFFER_BYTES))
        .push(bytes);
}

async fn read_pipe(
    mut pipe: impl AsyncRead + Unpin,
    shared: Arc<Mutex<Collected>>,
    stream: Stream,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(read @ 1..) = pipe.read(&mut buf).await {
        keep(&shared, stream, &buf[..read]);
    }
}

async fn read_terminal(master: Arc<Master>, shared: Arc<Mutex<Collected>>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(read @ 1..) = master.read(&mut buf).await {
        keep(&shared, Stream::Stdout, &buf[..read]);
    }
}

/// Waits for the shell, kills what it left in its group, drains the
/// output, then records the end.
async fn follow(
    mut child: tokio::process::Child,
    pgid: Option<i32>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    shared: Arc<Mutex<Collected>>,
    ended: watch::Sender<bool>,
    (shell_watch, stream, failure): (ShellWatch, Stream, crate::session::ShellFailure),
) {
    let status = child.wait().await;
    // The group id cannot name another process while any member lives;
    // from here on nothing else uses it.
    crate::tree::kill_group(pgid);
    let (grace, killing) = {
        let mut collected = shared.lock().unwrap_or_else(PoisonError::into_inner);
        collected.reaped = true;
        let grace = match collected.killed {
            true => KILLED_DRAIN_GRACE,
            false => DRAIN_GRACE,
        };
        (grace, collected.killing.clone())
    };
    let mut until = tokio::time::Instant::now() + grace;
    for mut reader in readers {
        loop {
            tokio::select! {
                _ = &mut reader => break,
                () = tokio::time::sleep_until(until) => {
                    reader.abort();
                    break;
                }
                () = killing.notified() => {
                    until = until.min(tokio::time::Instant::now() + KILLED_DRAIN_GRACE);
                }
            }
        }
    }
    let status = match status {
        // bubblewrap's failure, not the command's exit (probe 192): said
        // where the process's output goes, after bubblewrap's own line.
        Ok(status) if shell_watch.set_up_failed(&status) => {
            let error = crate::session::sandbox_not_set_up_error(None);
            keep(&shared, stream, format!("execgate: {error}\n").as_bytes());
            // Recorded before the status is told: whoever sees 125 finds
            // the record.
            failure.report(error).await;
            CommandStatus::Exited(SANDBOX_NOT_SET_UP)
        }
        Ok(status) => CommandStatus::of_shell(status, &shell_watch),
        Err(_) => CommandStatus::Exited(-1),
    };
    shared.lock().unwrap_or_else(PoisonError::into_inner).status = Some(status);
    let _ = ended.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review 205: a process started while the session was cancelled,
    /// after its processes were killed, was kept, and lived until the
    /// session was dropped. It is killed, and its start refused.
    #[tokio::test]
    async fn a_process_started_after_kill_all_is_killed() {
        let table = ProcessTable::default();
        table.kill_all();
        let mut command = std::process::Command::new("sleep");
        command.arg("30.0625");
        let shell = execgate_escalate_server::ShellCommand {
            command,
            watch: ShellWatch::default(),
            cgroup: None,
        };
        let started = table
            .start(
                &tokio::runtime::Handle::current(),
                "sleep",
                shell,
                ExecStdio::Pipes,
                Duration::from_secs(1),
                None,
                &crate::session::ShellFailure::unreported(),
            )
            .await;
        assert!(matches!(started, Err(BridgeError::SessionEnded)));
        assert!(table.lock().entries.is_empty());
        // Killed, then reaped by its follower's end (`kill_on_drop`).
        let gone = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !running_as("sleep 30.0625")
        });
        assert!(gone, "the process outlived its refused start");
    }

    /// Whether a process of ours runs with command line `cmdline`.
    fn running_as(cmdline: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            let own = entry
                .file_name()
                .to_str()
                .and_then(|pid| pid.parse::<u32>().ok());
            let Some(pid) = own else {
                return false;
            };
            let line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            String::from_utf8_lossy(&line).replace('\0', " ").trim_end() == cmdline && !zombie
        })
    }

    /// (id, which is also its last use, exited, in use) → the id pruned.
    type Case = (Vec<(u32, bool, bool)>, Option<u32>);

    #[test]
    fn pruning_prefers_old_exited_processes_outside_the_recent_eight() {
        // Entries as (id = last used, exited, in use) → the id pruned.
        let running = |n: u32| (n, false, false);
        let exited = |n: u32| (n, true, false);
        let waited_on = |n: u32| (n, false, true);
        let cases: Vec<Case> = vec![
            ((1..=10).map(running).collect(), Some(1)),
            (
                (1..=10)
                    .map(|n| if n == 2 { exited(n) } else { running(n) })
                    .collect(),
                Some(2),
            ),
            // An exited process among the eight most recent is kept.
            (
                (1..=10)
                    .map(|n| if n == 9 { exited(n) } else { running(n) })
                    .collect(),
                Some(1),
            ),
            // The oldest exited one outside them goes first.
            (
                (1..=12)
                    .map(|n| {
                        if n == 4 || n == 3 {
                            exited(n)
                        } else {
                            running(n)
                        }
                    })
                    .collect(),
                Some(3),
            ),
            // A limit at or below eight: the least recently used.
            ((1..=3).map(running).collect(), Some(1)),
            // A process a call waits on is passed over, even exited.
            (
                (1..=12)
                    .map(|n| match n {
                        1 => waited_on(n),
                        2 => (n, true, true),
                        _ => running(n),
                    })
                    .collect(),
                Some(3),
            ),
            // Outside the recent eight every one is waited on: none, till
            // a call answers (probe 221).
            (
                (1..=10)
                    .map(|n| if n <= 2 { waited_on(n) } else { running(n) })
                    .collect(),
                None,
            ),
            // No more than the recent eight: the least recently used idle
            // one among them.
            (
                (1..=5)
                    .map(|n| if n <= 2 { waited_on(n) } else { running(n) })
                    .collect(),
                Some(3),
            ),
            // Every one waited on: none.
            ((1..=10).map(waited_on).collect(), None),
            (Vec::new(), None),
        ];
        for (entries, pruned) in cases {
            let candidates = entries.iter().map(|&(n, exited, in_use)| Candidate {
                id: ProcessId(n),
                last_used: u64::from(n),
                exited,
                in_use,
            });
            assert_eq!(
                prune_choice(candidates),
                pruned.map(ProcessId),
                "{entries:?}"
            );
        }
    }
}
