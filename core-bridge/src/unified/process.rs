//! The session's table of live processes: starting one, following it to
//! its end, its output buffers, and which one goes when the table is full.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

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
/// How long output is still read after a process's group is gone (a
/// process that left the group may hold the pipe open).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(crate) struct ProcessTable {
    state: Mutex<TableState>,
}

struct TableState {
    limit: usize,
    next_id: u32,
    uses: u64,
    entries: HashMap<ProcessId, Entry>,
}

impl Default for TableState {
    fn default() -> Self {
        TableState {
            limit: DEFAULT_PROCESS_LIMIT,
            next_id: 1000,
            uses: 0,
            entries: HashMap::new(),
        }
    }
}

struct Entry {
    process: Arc<LiveProcess>,
    last_used: u64,
}

/// One process: its output so far and how it ended. Dropping the last
/// handle kills its process group.
pub(crate) struct LiveProcess {
    id: ProcessId,
    command: String,
    started: SystemTime,
    pgid: Option<i32>,
    terminal: Option<Arc<Master>>,
    shared: Arc<Mutex<Collected>>,
    ended: watch::Receiver<bool>,
    follower: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Collected {
    stdout: Option<HeadTail>,
    stderr: Option<HeadTail>,
    status: Option<CommandStatus>,
}

impl ProcessTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, TableState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.lock().limit = limit;
    }

    /// Spawns `shell` with `stdio` and keeps it, pruning one process first
    /// when the table is full.
    pub(crate) fn start(
        &self,
        command: &str,
        mut shell: std::process::Command,
        stdio: ExecStdio,
    ) -> Result<Arc<LiveProcess>, BridgeError> {
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
                let (master, slave) =
                    pty::open(rows, cols).map_err(io_error("cannot open a PTY"))?;
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
        let mut child = tokio::process::Command::from(shell)
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error("cannot start the shell"))?;
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
        let shared = Arc::new(Mutex::new(Collected::default()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(read_pipe(
                stdout,
                shared.clone(),
                Stream::Stdout,
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(read_pipe(
                stderr,
                shared.clone(),
                Stream::Stderr,
            )));
        }
        if let Some(master) = &terminal {
            readers.push(tokio::spawn(read_terminal(master.clone(), shared.clone())));
        }
        let (ended_sender, ended) = watch::channel(false);
        let follower = tokio::spawn(follow(child, pgid, readers, shared.clone(), ended_sender));

        let mut state = self.lock();
        if state.entries.len() >= state.limit {
            let chosen = prune_choice(
                state
                    .entries
                    .iter()
                    .map(|(id, entry)| (*id, entry.last_used, entry.process.has_exited())),
            );
            // Dropped outside the lock: the drop kills its group.
            if let Some(pruned) = chosen.and_then(|id| state.entries.remove(&id)) {
                tokio::spawn(async move { pruned.process.kill_and_wait().await });
            }
        }
        let id = ProcessId(state.next_id);
        state.next_id = state.next_id.wrapping_add(1);
        state.uses += 1;
        let process = Arc::new(LiveProcess {
            id,
            command: command.to_owned(),
            started: SystemTime::now(),
            pgid,
            terminal,
            shared,
            ended,
            follower,
        });
        let last_used = state.uses;
        state.entries.insert(
            id,
            Entry {
                process: process.clone(),
                last_used,
            },
        );
        Ok(process)
    }

    /// The process `id`, now the most recently used.
    pub(crate) fn touch(&self, id: ProcessId) -> Result<Arc<LiveProcess>, ExecError> {
        let mut state = self.lock();
        state.uses += 1;
        let uses = state.uses;
        let entry = state
            .entries
            .get_mut(&id)
            .ok_or(ExecError::UnknownProcess(id))?;
        entry.last_used = uses;
        Ok(entry.process.clone())
    }

    pub(crate) fn remove(&self, id: ProcessId) -> Option<Arc<LiveProcess>> {
        self.lock().entries.remove(&id).map(|entry| entry.process)
    }

    /// Forgets a process whose end has been reported.
    pub(crate) fn forget(&self, id: ProcessId) {
        let removed = self.remove(id);
        drop(removed);
    }

    pub(crate) fn list(&self) -> Vec<ProcessInfo> {
        let state = self.lock();
        let mut list: Vec<ProcessInfo> = state
            .entries
            .values()
            .map(|entry| {
                let process = &entry.process;
                ProcessInfo {
                    process_id: process.id,
                    command: process.command.clone(),
                    started: process.started,
                    state: match process.status() {
                        Some(status) => ProcessState::Exited(status),
                        None => ProcessState::Running,
                    },
                }
            })
            .collect();
        list.sort_by_key(|info| info.process_id);
        list
    }

    /// Kills every process now.
    pub(crate) fn kill_all(&self) {
        let entries: Vec<Entry> = self
            .lock()
            .entries
            .drain()
            .map(|(_, entry)| entry)
            .collect();
        drop(entries);
    }
}

impl Drop for ProcessTable {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Which process goes when the table is full: among all but the
/// [`PROTECTED_RECENT`] most recently used, the least recently used one
/// that has exited, else the least recently used one.
pub(crate) fn prune_choice(
    entries: impl Iterator<Item = (ProcessId, u64, bool)>,
) -> Option<ProcessId> {
    let mut entries: Vec<(ProcessId, u64, bool)> = entries.collect();
    entries.sort_by_key(|(_, last_used, _)| *last_used);
    let unprotected = entries.len().saturating_sub(PROTECTED_RECENT);
    let candidates = &entries[..unprotected];
    candidates
        .iter()
        .find(|(_, _, exited)| *exited)
        .or_else(|| candidates.first())
        .or_else(|| entries.first())
        .map(|(id, _, _)| *id)
}

impl LiveProcess {
    pub(crate) fn id(&self) -> ProcessId {
        self.id
    }

    pub(crate) fn terminal(&self) -> Option<&Master> {
        self.terminal.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> Option<CommandStatus> {
        self.lock().status
    }

    fn has_exited(&self) -> bool {
        self.status().is_some()
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

    /// Kills the process group and waits (briefly) for the end.
    pub(crate) async fn kill_and_wait(&self) {
        if !self.has_exited() {
            kill_group(self.pgid);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.ended()).await;
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        if !self.has_exited() {
            kill_group(self.pgid);
        }
        // Its child is killed on drop: the shell goes even if the group
        // kill missed it.
        self.follower.abort();
    }
}

fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
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
) {
    let status = child.wait().await;
    // The group id cannot name another process while any member lives.
    kill_group(pgid);
    let until = tokio::time::Instant::now() + DRAIN_GRACE;
    for mut reader in readers {
        if tokio::time::timeout_at(until, &mut reader).await.is_err() {
            reader.abort();
        }
    }
    let status = match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => CommandStatus::Exited(code),
            (None, Some(signal)) => CommandStatus::Signaled(signal),
            (None, None) => CommandStatus::Exited(-1),
        },
        Err(_) => CommandStatus::Exited(-1),
    };
    shared.lock().unwrap_or_else(PoisonError::into_inner).status = Some(status);
    let _ = ended.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (id, last used, exited) of each entry → the one pruned.
    type Case = (Vec<(ProcessId, u64, bool)>, Option<ProcessId>);

    #[test]
    fn pruning_prefers_old_exited_processes_outside_the_recent_eight() {
        let id = ProcessId;
        // (entries as (id, last_used, exited)) → pruned.
        let running = |n: u32| (id(n), u64::from(n), false);
        let exited = |n: u32| (id(n), u64::from(n), true);
        let cases: Vec<Case> = vec![
            ((1..=10).map(running).collect(), Some(id(1))),
            (
                (1..=10)
                    .map(|n| if n == 2 { exited(n) } else { running(n) })
                    .collect(),
                Some(id(2)),
            ),
            // An exited process among the eight most recent is kept.
            (
                (1..=10)
                    .map(|n| if n == 9 { exited(n) } else { running(n) })
                    .collect(),
                Some(id(1)),
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
                Some(id(3)),
            ),
            // A limit at or below eight: the least recently used.
            ((1..=3).map(running).collect(), Some(id(1))),
            (Vec::new(), None),
        ];
        for (entries, pruned) in cases {
            assert_eq!(
                prune_choice(entries.clone().into_iter()),
                pruned,
                "{entries:?}"
            );
        }
    }
}
