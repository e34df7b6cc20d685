//! Unified exec: long-lived processes in a shell session that an agent
//! starts, reads, types into and comes back to later, several at once.
//!
//! [`ShellSession::exec_command`] starts `zsh -f -c CMD` on the same path as
//! [`ShellSession::run`] (the patched zsh, the session's sandbox, its scope,
//! its policy deciding every exec) and returns after the yield time or as
//! soon as the process has exited and its output is drained:
//! [`ExecResponse::Exited`] or [`ExecResponse::Running`] with a
//! [`ProcessId`] to pass to [`ShellSession::write_stdin`] (which also polls),
//! [`ShellSession::resize`], [`ShellSession::kill`]; [`ShellSession::list`]
//! shows them all.
//!
//! Each call returns the output produced since the previous one. Each
//! stream is kept in a head+tail buffer of [`OUTPUT_BUFFER_BYTES`] and cut
//! again to the call's `max_output_bytes`; what was dropped in the middle is
//! counted, and no cut falls inside a UTF-8 sequence.
//!
//! This module must never start a process outside the session's scope (a
//! dropped or shut down session leaves none of them, escalated children
//! included), nor keep more than the session's process limit.
//! Limits: Ctrl-C on a PTY reaches escalated children only through the
//! process that stands in for each in the shell (it relays the signal;
//! the server starts them in process groups of their own); a terminal in
//! canonical mode keeps at most 4095 bytes of a line not yet ended, and
//! drops the rest as the kernel does, unreported; whether an approval is
//! pending is known per session, not per process.

mod buffer;
mod process;
mod pty;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::approval::sleep_excluding_approvals;
use crate::session::ShellGroup;
use crate::{BridgeError, CommandStatus, ShellSession};
use tokio_util::sync::CancellationToken;

pub use pty::DEFAULT_TERMINAL_SIZE;

pub(crate) use process::ProcessTable;

/// Bytes of each stream's output kept per process between two calls.
pub const OUTPUT_BUFFER_BYTES: usize = 1 << 20;
/// How many processes a session keeps by default.
pub const DEFAULT_PROCESS_LIMIT: usize = 64;
/// The shortest and longest yield time, and the default.
pub const YIELD_TIME_RANGE: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(30));
pub const DEFAULT_YIELD_TIME: Duration = Duration::from_secs(10);
/// How long a call waits at most, by default, while approvals keep its
/// clock stopped.
pub const LONGEST_APPROVAL_WAIT: Duration = Duration::from_secs(600);
/// How long `write_stdin` types at most: a process that reads its
/// terminal slowly, or not at all, must not hold the call.
pub const INPUT_PATIENCE: Duration = Duration::from_secs(5);

/// Names a process of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId(pub u32);

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a process's standard streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecStdio {
    /// stdin closed, stdout and stderr captured apart.
    #[default]
    Pipes,
    /// A PTY: the process leads its session on it (job control, Ctrl-C as
    /// `\x03`); stdin stays open for [`ShellSession::write_stdin`].
    Terminal,
}

/// How [`ShellSession::exec_command`] starts a process.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Where it starts: absolute, or relative to the session's directory;
    /// must be visible inside the sandbox. Default: the session's
    /// directory.
    pub workdir: Option<PathBuf>,
    pub stdio: ExecStdio,
    /// How long to wait for output before answering `Running`
    /// (clamped to [`YIELD_TIME_RANGE`]).
    pub yield_time: Duration,
    /// Output bytes returned per call, cut in the middle beyond that.
    pub max_output_bytes: usize,
    /// Set over the agent defaults (`NO_COLOR=1`, `TERM=dumb` or
    /// `xterm-256color` on a terminal, `PAGER=cat`, `GIT_PAGER=cat`).
    /// `EXECGATE_` names are refused ([`ExecError::SessionVariable`]); the
    /// loader's variables (`LD_PRELOAD`...) reach the shell, never what
    /// starts its sandbox.
    pub env: Vec<(OsString, OsString)>,
    /// Wall time after which this call, and each poll of its process
    /// ([`ShellSession::write_stdin`]), answers `Running` with
    /// `awaiting_approval` even though approvals stopped its yield clock;
    /// never before its yield time.
    pub longest_approval_wait: Duration,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            workdir: None,
            stdio: ExecStdio::Pipes,
            yield_time: DEFAULT_YIELD_TIME,
            max_output_bytes: 64 * 1024,
            env: Vec::new(),
            longest_approval_wait: LONGEST_APPROVAL_WAIT,
        }
    }
}

/// Output since the previous call. On a terminal everything is `stdout`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes dropped from the middle (buffer overflow or the call's cap).
    pub omitted_bytes: u64,
}

/// A process that has ended; its id is forgotten once this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub process_id: ProcessId,
    pub status: CommandStatus,
    pub output: ExecOutput,
    /// How long this call took (a wait for an approval included), not how
    /// long the process ran.
    pub wall_time: Duration,
    /// It was ended because a connection it made was denied once a person
    /// had been asked (`limited` networks, [`OnNetworkDenial::Cancel`](crate::OnNetworkDenial::Cancel)):
    /// `network denied: HOST:PORT (reason)`.
    pub network_denied: Option<String>,
    /// A person stopped it at a question one of its programs asked
    /// ([`ApprovalAnswer::Abort`](crate::ApprovalAnswer::Abort)).
    pub aborted: bool,
}

/// A process still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub process_id: ProcessId,
    pub output: ExecOutput,
    /// A question this process asked (one of the programs it started) was
    /// still waiting for an answer, or one no command is known to have
    /// asked (a network destination).
    pub awaiting_approval: bool,
    /// How long this call took.
    pub wall_time: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecResponse {
    Exited(Exited),
    Running(Running),
}

impl ExecResponse {
    pub fn process_id(&self) -> ProcessId {
        match self {
            ExecResponse::Exited(exited) => exited.process_id,
            ExecResponse::Running(running) => running.process_id,
        }
    }

    pub fn output(&self) -> &ExecOutput {
        match self {
            ExecResponse::Exited(exited) => &exited.output,
            ExecResponse::Running(running) => &running.output,
        }
    }
}

/// Whether a listed process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    Running,
    Exited(CommandStatus),
}

/// One line of [`ShellSession::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub process_id: ProcessId,
    pub command: String,
    pub started: SystemTime,
    pub state: ProcessState,
    /// Running, and waiting on a question as [`Running::awaiting_approval`]
    /// says (probe 159: only a poll could tell).
    pub awaiting_approval: bool,
}

/// Why a unified exec call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    #[error("unknown process {0} (it ended and was reported, was killed, or was pruned)")]
    UnknownProcess(ProcessId),
    /// A poll cancelled while it waited, its input all typed
    /// ([`ShellSession::write_stdin_unless_cancelled`]).
    #[error(
        "cancelled: process {0} runs on, any input typed; its output and exit status wait for \
         the next poll"
    )]
    Cancelled(ProcessId),
    /// Nothing to kill: it ended by itself, and its end and last output
    /// wait for a poll (`write_stdin` with no input).
    #[error(
        "process {0} has already exited: nothing was killed; poll it (write_stdin with no \
         input) for its exit status and last output"
    )]
    AlreadyExited(ProcessId),
    /// Input for a process that has ended: a terminal takes bytes nobody
    /// will read, so none are typed.
    #[error(
        "process {0} has already exited: nothing was typed; poll it (write_stdin with no \
         input) for its exit status and last output"
    )]
    ExitedBeforeInput(ProcessId),
    #[error("process {0} has no stdin: start it on a terminal (ExecStdio::Terminal; MCP: tty = true) to write to it")]
    StdinClosed(ProcessId),
    #[error("process {0} has no terminal to resize: start it on one (ExecStdio::Terminal; MCP: tty = true)")]
    NoTerminal(ProcessId),
    /// Setting the terminal's size failed.
    #[error("process {process_id}'s terminal: {source}")]
    Write {
        process_id: ProcessId,
        #[source]
        source: std::io::Error,
    },
    /// Typing into the terminal failed (the process ended while its input
    /// queue was full, say) after the first `written` bytes went in.
    #[error(
        "process {process_id}'s terminal took {written} of {total} bytes, then failed: {source}"
    )]
    Typing {
        process_id: ProcessId,
        written: usize,
        total: usize,
        #[source]
        source: std::io::Error,
    },
    /// The terminal did not take all the input within [`INPUT_PATIENCE`]:
    /// the process reads too little, or nothing. The first `written` bytes
    /// were typed; the rest were not.
    #[error(
        "process {process_id} is not reading its terminal fast enough: {written} of {total} \
         bytes were typed in {} s, the rest were not; read its output, type the rest later, \
         or kill it",
        INPUT_PATIENCE.as_secs()
    )]
    InputNotRead {
        process_id: ProcessId,
        written: usize,
        total: usize,
    },
    /// [`ExecOptions::env`] named one of the session's own variables.
    #[error(
        "the command's environment cannot set {0}: `EXECGATE_` variables are the session's own \
         (how its shell asks before each exec); leave them out"
    )]
    SessionVariable(String),
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

impl ShellSession {
    /// Starts `command` with `zsh -f -c` in the session, and answers with
    /// its output after the yield time, or once it has exited. Dropped
    /// before it answers (a cancelled call), it kills the command.
    pub async fn exec_command(
        &self,
        command: &str,
        options: ExecOptions,
    ) -> Result<ExecResponse, ExecError> {
        let called = Instant::now();
        if let Some((name, _)) = options
            .env
            .iter()
            .find(|(name, _)| name.to_string_lossy().starts_with("EXECGATE_"))
        {
            return Err(ExecError::SessionVariable(
                name.to_string_lossy().into_owned(),
            ));
        }
        let script = match &options.workdir {
            None => command.to_owned(),
            Some(dir) => format!(
                "builtin cd -q -- {} || exit 1\n{command}",
                zsh_quote(&self.cwd().join(dir).to_string_lossy())
            ),
        };
        let script = match options.stdio {
            ExecStdio::Pipes => script,
            // bubblewrap starts with the terminal's signals ignored, so that
            // Ctrl-C does not end the sandbox around the command; the shell
            // and what it runs get them back.
            ExecStdio::Terminal => format!("trap - INT QUIT\n{script}"),
        };
        // `--`: a script that starts with `-` or `+` is not options.
        let args = vec![
            OsString::from("-f"),
            "-c".into(),
            "--".into(),
            script.into(),
        ];
        let group = match options.stdio {
            ExecStdio::Pipes => ShellGroup::OwnGroup,
            ExecStdio::Terminal => ShellGroup::OwnTerminal,
        };
        // Reported as `run`'s shells are: started, or why not.
        let failure = self.shell_failure("process", &args);
        let term = match options.stdio {
            ExecStdio::Pipes => "dumb",
            ExecStdio::Terminal => "xterm-256color",
        };
        let env = [
            ("NO_COLOR", "1"),
            ("TERM", term),
            ("PAGER", "cat"),
            ("GIT_PAGER", "cat"),
        ]
        .into_iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .chain(options.env.iter().cloned())
        .collect();
        let started = match self.shell_factory(args, group, env)(None) {
            Ok(shell) => {
                self.processes
                    .start(
                        &self.runtime,
                        command,
                        shell,
                        options.stdio,
                        options.longest_approval_wait,
                        self.exec_policy
                            .as_ref()
                            .map(|policy| policy.approval_clock()),
                        &failure,
                    )
                    .await
            }
            Err(error) => Err(error),
        };
        let process = match started {
            Ok(process) => process,
            Err(error) => return Err(failure.report(error).await.into()),
        };
        self.telemetry
            .shell_started("process", process.group_since().map(|(pgid, _)| pgid));
        // A call dropped before it answers (an MCP client's cancellation)
        // takes its command with it: left running, it would end with no
        // one to report it to, or escalate on an approval given after.
        let mut abandoned = KillUnlessAnswered {
            processes: &self.processes,
            process_id: Some(process.id()),
        };
        let wait = Wait {
            yield_time: clamp_yield(options.yield_time),
            longest: options.longest_approval_wait,
        };
        let response = self
            .answer(&process, wait, options.max_output_bytes, called, None)
            .await;
        abandoned.process_id = None;
        response
    }

    /// Types `input` into a process started with a terminal (empty: only
    /// polls), and answers as [`ShellSession::exec_command`] does. After
    /// typing, the answer waits at least the shortest yield time.
    pub async fn write_stdin(
        &self,
        process_id: ProcessId,
        input: &[u8],
        yield_time: Duration,
        max_output_bytes: usize,
    ) -> Result<ExecResponse, ExecError> {
        self.type_and_answer(process_id, input, yield_time, max_output_bytes, None)
            .await
    }

    /// [`ShellSession::write_stdin`] that `cancel` stops once the input is
    /// typed, while it waits, before it takes any output
    /// ([`ExecError::Cancelled`]): the process runs on, and its output and
    /// exit status wait for the next poll (probe 159, review 34c: a
    /// dropped call could cut the input short, or take the output into an
    /// answer nobody read).
    pub async fn write_stdin_unless_cancelled(
        &self,
        process_id: ProcessId,
        input: &[u8],
        yield_time: Duration,
        max_output_bytes: usize,
        cancel: &CancellationToken,
    ) -> Result<ExecResponse, ExecError> {
        self.type_and_answer(
            process_id,
            input,
            yield_time,
            max_output_bytes,
            Some(cancel),
        )
        .await
    }

    async fn type_and_answer(
        &self,
        process_id: ProcessId,
        input: &[u8],
        yield_time: Duration,
        max_output_bytes: usize,
        cancel: Option<&CancellationToken>,
    ) -> Result<ExecResponse, ExecError> {
        let called = Instant::now();
        let process = self.processes.touch(process_id)?;
        let yield_time = if input.is_empty() {
            yield_time.min(YIELD_TIME_RANGE.1)
        } else {
            let terminal = process
                .terminal()
                .ok_or(ExecError::StdinClosed(process_id))?;
            // One that ends while the bytes go in fails as `Typing`.
            if process.has_exited() {
                return Err(ExecError::ExitedBeforeInput(process_id));
            }
            let written = terminal
                .write_within(input, INPUT_PATIENCE)
                .await
                .map_err(|failed| ExecError::Typing {
                    process_id,
                    written: failed.written,
                    total: input.len(),
                    source: failed.source,
                })?;
            if written < input.len() {
                return Err(ExecError::InputNotRead {
                    process_id,
                    written,
                    total: input.len(),
                });
            }
            clamp_yield(yield_time)
        };
        let wait = Wait {
            yield_time,
            longest: process.longest_approval_wait(),
        };
        self.answer(&process, wait, max_output_bytes, called, cancel)
            .await
    }

    /// Sets the terminal size of a process started with one.
    pub fn resize(&self, process_id: ProcessId, rows: u16, cols: u16) -> Result<(), ExecError> {
        let process = self.processes.touch(process_id)?;
        let terminal = process
            .terminal()
            .ok_or(ExecError::NoTerminal(process_id))?;
        terminal
            .resize(rows, cols)
            .map_err(|source| ExecError::Write { process_id, source })
    }

    /// Kills a process and all it started in its sandbox, every process
    /// descended from its shell whatever their groups, and its escalated
    /// programs' process groups; its id is forgotten. What an escalated
    /// program left outside its group (`setsid`, a daemon), or a process
    /// its parent left that also left the group, runs on until the session
    /// ends. One that has already exited is left for a poll to
    /// report ([`ExecError::AlreadyExited`]); if its output is still
    /// draining, held by what it left, what it left in its cgroup is
    /// killed first.
    pub async fn kill(&self, process_id: ProcessId) -> Result<(), ExecError> {
        {
            let process = self.processes.touch(process_id)?;
            if process.has_exited() {
                return Err(ExecError::AlreadyExited(process_id));
            }
            // Its shell ended, its output still draining (held by what it
            // left): that is killed, and its end kept for a poll (probe
            // 221: taken out of the table, its status was lost).
            if process.shell_ended() {
                process.kill();
                return Err(ExecError::AlreadyExited(process_id));
            }
        }
        let process = self
            .processes
            .remove(process_id)
            .ok_or(ExecError::UnknownProcess(process_id))?;
        process.kill_and_wait().await;
        Ok(())
    }

    /// Every process the session keeps, oldest first.
    pub fn list(&self) -> Vec<ProcessInfo> {
        let clock = self
            .exec_policy
            .as_ref()
            .map(|policy| policy.approval_clock());
        self.processes.list(|command| {
            clock
                .as_ref()
                .is_some_and(|clock| clock.waiting_for(command))
        })
    }

    /// Sets how many processes the session keeps (default
    /// [`DEFAULT_PROCESS_LIMIT`]); starting one more prunes one that no
    /// call is waiting on.
    pub fn set_process_limit(&self, limit: usize) {
        self.processes.set_limit(limit.max(1));
    }

    /// Waits as `wait` says, then takes the process's output; `cancel`
    /// stops the wait first, taking nothing.
    async fn answer(
        &self,
        process: &Arc<process::LiveProcess>,
        wait: Wait,
        max_output_bytes: usize,
        called: Instant,
        cancel: Option<&CancellationToken>,
    ) -> Result<ExecResponse, ExecError> {
        // A poll that waits for nothing gives the runtime its turn all the
        // same (probe 224: a loop of them starved the process's own readers
        // on its runtime, and saw no output).
        tokio::task::consume_budget().await;
        let clock = self
            .exec_policy
            .as_ref()
            .map(|policy| policy.approval_clock());
        let waiting = clock.clone();
        let command = process.group_since().map(|(pgid, _)| pgid);
        // Bounds only what approvals add: a call with no question pending
        // takes its whole yield (review 34: polls of a process started
        // with a short bound ended early).
        let deadline = tokio::time::timeout(
            wait.longest.max(wait.yield_time),
            sleep_excluding_approvals(wait.yield_time, clock, command),
        );
        let cancelled = async {
            match cancel {
                Some(cancel) => cancel.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = cancelled => return Err(ExecError::Cancelled(process.id())),
            () = process.ended() => {}
            _ = deadline => {}
        }
        let (output, status) = process.take_output(max_output_bytes);
        let process_id = process.id();
        Ok(match status {
            Some(status) => {
                self.processes.forget(process_id);
                ExecResponse::Exited(Exited {
                    process_id,
                    status,
                    output,
                    wall_time: called.elapsed(),
                    network_denied: process
                        .group_since()
                        .and_then(|(pgid, since)| self.network.take_denial(pgid, since)),
                    aborted: process.aborted(),
                })
            }
            None => ExecResponse::Running(Running {
                process_id,
                output,
                awaiting_approval: waiting.is_some_and(|clock| clock.waiting_for(command)),
                wall_time: called.elapsed(),
            }),
        })
    }
}

/// How long one call waits for its process.
struct Wait {
    yield_time: Duration,
    longest: Duration,
}

fn clamp_yield(yield_time: Duration) -> Duration {
    yield_time.clamp(YIELD_TIME_RANGE.0, YIELD_TIME_RANGE.1)
}

/// `text` as one single-quoted zsh word.
fn zsh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Kills the process `process_id` names when dropped, unless its call
/// answered first (then `process_id` is `None`).
struct KillUnlessAnswered<'a> {
    processes: &'a process::ProcessTable,
    process_id: Option<ProcessId>,
}

impl Drop for KillUnlessAnswered<'_> {
    fn drop(&mut self) {
        if let Some(process) = self.process_id.and_then(|id| self.processes.remove(id)) {
            process.kill();
        }
    }
}
