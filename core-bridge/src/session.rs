//! Shell sessions and the commands run in them.

use std::ffi::OsString;
use std::os::unix::fs::symlink;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use execgate_escalate_server::sandbox::{
    Access, AdditionalPermissions, Launcher, MountAliases, PermissionProfile, ResolvedPolicy,
    SandboxContext, Terminal,
};
use execgate_escalate_server::{
    AuditFailure, AuditSink, EventReporter, EventSink, GrantError, Policy, Provenance, Session,
    SessionConfig, SessionEvent, SessionSandbox, ShellCommand, ShellWatch, StartError,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::approval::{sleep_excluding_approvals, ApprovalClock};
use crate::environment::EnvPolicy;
use crate::metrics::{Metrics, Telemetry};
use crate::network::{OnNetworkDenial, ProxyHost};
use crate::policy::ExecPolicy;
use crate::startup::{self, Interactive};
use crate::tools::Tools;
use crate::BridgeError;

/// The shell's variable naming its profile, for prompts and scripts.
pub const PROFILE_VARIABLE: &str = "EXECGATE_PROFILE";

/// How a session is set up.
#[derive(Clone)]
pub struct ShellSessionConfig {
    /// The session's working directory (`:cwd` in profiles).
    pub cwd: PathBuf,
    /// More roots for `:workspace_roots`.
    pub workspace_roots: Vec<PathBuf>,
    /// The profile the shell and `TurnDefault` escalations run in.
    pub profile: PermissionProfile,
    /// The profile's name: the shell's `EXECGATE_PROFILE` and a label of
    /// every telemetry event.
    pub profile_name: String,
    /// Decides every exec.
    pub policy: Arc<dyn Policy>,
    /// The shell's environment.
    pub env: EnvPolicy,
    pub tools: Tools,
    /// Receives every session event (decisions, escalated children).
    pub events: Option<EventSink>,
    /// The audit log: every decision is recorded before it takes effect.
    /// The session's sandboxes see nothing of the files it writes
    /// ([`AuditSink::log_files`], hidden by [`hide_audit_log`]).
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Whether a decision that cannot be recorded is denied (the default).
    pub audit_failure: AuditFailure,
    /// Set when `policy` is an [`ExecPolicy`]: its approval clock pauses
    /// command timeouts, and its approver answers permission requests.
    pub exec_policy: Option<ExecPolicy>,
    /// How much nicer than the caller the shell and escalated commands run
    /// (`SessionConfig::shell_niceness`). Default 0.
    pub niceness: u8,
    /// What a connection denied after a person was asked does to the
    /// command that made it (`limited` networks). Default: cancel it.
    pub on_network_denial: OnNetworkDenial,
    /// Places no grant of the session's makes writable (a permissions
    /// request, a skill's, a rule's profile, the profile itself), each
    /// with what it is (`"the config's"`): a config file `profile` keeps
    /// read-only, which a write grant on the file itself would make
    /// writable. Such a grant is refused, as one on the audit log's files
    /// is. Default: none.
    pub out_of_grants: Vec<(PathBuf, &'static str)>,
}

impl ShellSessionConfig {
    /// A `workspace-write` session on `cwd` where every exec runs in place
    /// (inside the sandbox), with the default environment policy.
    pub fn new(cwd: impl Into<PathBuf>, tools: Tools, policy: Arc<dyn Policy>) -> Self {
        ShellSessionConfig {
            cwd: cwd.into(),
            workspace_roots: Vec::new(),
            profile: PermissionProfile::preset("workspace-write")
                .unwrap_or(PermissionProfile::Disabled),
            profile_name: "workspace-write".into(),
            policy,
            env: EnvPolicy::default(),
            tools,
            events: None,
            audit: None,
            audit_failure: AuditFailure::Deny,
            exec_policy: None,
            niceness: 0,
            on_network_denial: OnNetworkDenial::default(),
            out_of_grants: Vec::new(),
        }
    }

    /// [`new`](Self::new) with rules, skills and approvals deciding.
    pub fn with_exec_policy(cwd: impl Into<PathBuf>, tools: Tools, policy: ExecPolicy) -> Self {
        let mut config = ShellSessionConfig::new(cwd, tools, Arc::new(policy.clone()));
        config.exec_policy = Some(policy);
        config
    }
}

/// A running session: every command run through it shares one escalation
/// server and one sandbox profile. Dropping it kills everything it started.
pub struct ShellSession {
    session: Arc<Session>,
    env: Vec<(OsString, OsString)>,
    zsh: PathBuf,
    cwd: PathBuf,
    pub(crate) exec_policy: Option<ExecPolicy>,
    /// The long-lived processes of unified exec (`unified/`).
    pub(crate) processes: crate::unified::ProcessTable,
    pub(crate) telemetry: Telemetry,
    /// Serves the session's `limited` sandboxes.
    pub(crate) network: Arc<ProxyHost>,
    /// Holds `zsh`, first in the shell's `PATH`, so that nested shells and
    /// `#!/usr/bin/env zsh` scripts run the patched zsh.
    _zsh_dir: tempfile::TempDir,
    /// `.lock` in it, locked while the session lives: see
    /// [`remove_abandoned_session_dirs`].
    _zsh_dir_lock: Option<std::fs::File>,
    /// Cancelled when the session ends: every [`ShellSession::run`] stops
    /// then (without a session cgroup nothing else would kill its shell).
    runs: CancellationToken,
    /// The runtime the session started in, which runs its commands' and
    /// long-lived processes' tasks whatever thread or runtime asks for one
    /// (probe 198: `run` from a plain thread panicked, "there is no reactor
    /// running"; probe 224: a process died with the runtime that asked).
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Drop for ShellSession {
    fn drop(&mut self) {
        self.runs.cancel();
    }
}

/// How a shell relates to process groups and terminals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShellGroup {
    /// Its own process group, no terminal.
    OwnGroup,
    /// The leader of its own session, whose controlling terminal is its
    /// stdin (a PTY the caller set up).
    OwnTerminal,
}

/// Where a command's standard streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stdio3 {
    /// stdin is empty; stdout and stderr are captured and streamed.
    #[default]
    Captured,
    /// The caller's own terminal or files (the CLI).
    Inherited,
}

/// How one command runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub timeout: Option<Duration>,
    pub cancel: CancellationToken,
    /// Bytes of stdout plus stderr kept, the first to arrive, whichever
    /// stream they came on; the rest is drained and dropped, and neither
    /// kept nor streamed as chunks (`RunOutcome::truncated` says so). An
    /// error printed last after a long output is lost with it: where the
    /// end matters, `exec_command` keeps each stream's head and tail.
    pub output_limit: usize,
    pub stdio: Stdio3,
    /// Run this one command with more than the session's profile, if the
    /// approver grants it: the command gets the requested grants the
    /// approver kept, never more. Needs an [`ExecPolicy`].
    pub request_permissions: Option<AdditionalPermissions>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: None,
            cancel: CancellationToken::new(),
            output_limit: 1 << 20,
            stdio: Stdio3::Captured,
            request_permissions: None,
        }
    }
}

/// A piece of output, in the order it arrived on its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    Exited(i32),
    Signaled(i32),
}

impl CommandStatus {
    /// The shell convention: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            CommandStatus::Exited(code) => code,
            CommandStatus::Signaled(signal) => 128 + signal,
        }
    }

    /// How a shell that ended with `status` ended (`Exited(-1)` for a
    /// status that says neither): a sandboxed shell's death by a signal
    /// is its sandbox's exit status 128 plus it, which `watch` tells from
    /// an exit with that code.
    pub(crate) fn of_shell(status: std::process::ExitStatus, watch: &ShellWatch) -> CommandStatus {
        match (status.code(), status.signal()) {
            (Some(code), _) => match watch.signal(&status) {
                Some(signal) => CommandStatus::Signaled(signal),
                None => CommandStatus::Exited(code),
            },
            (None, Some(signal)) => CommandStatus::Signaled(signal),
            (None, None) => CommandStatus::Exited(-1),
        }
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: CommandStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond [`RunOptions::output_limit`] was dropped.
    pub truncated: bool,
    pub timed_out: bool,
    /// [`RunOptions::cancel`] ended the command; before its shell started
    /// (at the question about its requested permissions) nothing ran.
    pub cancelled: bool,
    /// The command was ended because a connection it made was denied once
    /// a person had been asked (`limited` networks,
    /// [`OnNetworkDenial::Cancel`]): `network denied: HOST:PORT (reason)`.
    pub network_denied: Option<String>,
    /// Permissions were requested ([`RunOptions::request_permissions`])
    /// and declined: the command ran with the session's own.
    pub permissions_declined: bool,
    /// A person stopped the command at a question one of its programs
    /// asked ([`ApprovalAnswer::Abort`](crate::ApprovalAnswer::Abort)): its
    /// shell was killed with its process group, and its sandbox with
    /// everything in it.
    pub aborted: bool,
}

impl RunOutcome {
    /// A command cancelled before its shell started (at the question about
    /// its requested permissions): nothing ran, and its status reads as a
    /// command killed at once.
    fn cancelled_before_it_started() -> RunOutcome {
        RunOutcome {
            status: CommandStatus::Signaled(libc::SIGKILL),
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
            timed_out: false,
            cancelled: true,
            network_denied: None,
            permissions_declined: false,
            aborted: false,
        }
    }
}

/// Records the approver's answer to a request for grants, told why they
/// were not made, if they were not.
type RecordAnswer = Box<dyn FnOnce(Option<&dyn std::fmt::Display>) -> Result<(), String> + Send>;

/// Grants for one shell beyond the session's sandbox, and what records
/// the approver's answer: called once whether they can be made is known,
/// before the shell is built, or, if the grant is dropped first (a panic
/// on the way), as it is dropped, with the grant not made.
pub(crate) struct ShellGrant {
    profile: PermissionProfile,
    record: AnswerRecord,
}

impl ShellGrant {
    fn new(profile: PermissionProfile, record: RecordAnswer) -> ShellGrant {
        ShellGrant {
            profile,
            record: AnswerRecord(Some(record)),
        }
    }
}

/// A [`RecordAnswer`] that records, if it is dropped uncalled, that the
/// grant was not made.
struct AnswerRecord(Option<RecordAnswer>);

impl AnswerRecord {
    fn record(mut self, not_made: Option<&dyn std::fmt::Display>) -> Result<(), String> {
        match self.0.take() {
            Some(record) => record(not_made),
            None => Ok(()),
        }
    }
}

impl Drop for AnswerRecord {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            // Nobody is left to tell of a failure to record it.
            let _ = record(Some(&"its shell could not be prepared"));
        }
    }
}

/// A command in flight. Dropping it, or the future of [`RunHandle::wait`]
/// before it is done (a `tokio::time::timeout` around it, say), kills the
/// command and its process group, as [`RunOptions::cancel`] does; so does
/// the end of its session.
pub struct RunHandle {
    chunks: mpsc::UnboundedReceiver<OutputChunk>,
    outcome: tokio::task::JoinHandle<Result<RunOutcome, BridgeError>>,
    stop: CancellationToken,
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RunHandle {
    /// The next piece of output, or `None` once both streams have closed.
    pub async fn next_chunk(&mut self) -> Option<OutputChunk> {
        self.chunks.recv().await
    }

    /// Waits for the end. Everything the command started in its sandbox
    /// is gone by then (the sandbox's pid namespace ends with it). What an
    /// escalated program started and left running outside its own process
    /// group (`setsid`, a daemon that double-forks) is not, when the
    /// command ended by itself: it runs on in the command's cgroup until
    /// the session ends, which kills it, and `session-end`'s
    /// `processes_killed` counts it. A timeout, a cancel or a drop kills
    /// the command's cgroup, and it with it.
    pub async fn wait(mut self) -> Result<RunOutcome, BridgeError> {
        match (&mut self.outcome).await {
            Ok(outcome) => outcome,
            Err(error) if error.is_cancelled() => Err(BridgeError::RuntimeEnded),
            Err(error) => Err(BridgeError::Io {
                what: "the command's task failed".into(),
                source: std::io::Error::other(error),
            }),
        }
    }
}

impl ShellSession {
    /// Starts a session from within a tokio runtime: the bridge's tasks
    /// (the shell, its output) run on it; the escalation server serves the
    /// session on a thread of its own.
    pub fn start(config: ShellSessionConfig) -> Result<ShellSession, BridgeError> {
        let ShellSessionConfig {
            cwd,
            workspace_roots,
            mut profile,
            profile_name,
            policy,
            env,
            tools,
            events,
            audit,
            audit_failure,
            exec_policy,
            niceness,
            on_network_denial,
            out_of_grants,
        } = config;
        let cwd = std::fs::canonicalize(&cwd).map_err(|source| BridgeError::Io {
            what: format!("working directory {}", cwd.display()),
            source,
        })?;
        // The log's files exist by now: it was opened.
        let audit_places = audit.as_ref().map_or_else(Vec::new, |audit| {
            let files = audit.log_files();
            hide_audit_log(&mut profile, &files, &cwd);
            audit_log_places(&files, &cwd)
        });
        // Refused now, not at each command's start.
        if !cwd.is_dir() {
            return Err(BridgeError::Io {
                what: format!("working directory {}", cwd.display()),
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            });
        }
        // One session's approvals, clock and grants: never another's.
        let claim = exec_policy.as_ref().map(ExecPolicy::claim).transpose()?;
        // Any other shell would run every program unasked.
        if !tools.zsh.is_file() {
            return Err(BridgeError::NoZsh(tools.zsh.clone()));
        }
        if !tools.zsh_is_patched() {
            return Err(BridgeError::UnpatchedZsh(tools.zsh.clone()));
        }
        tools.check_made()?;
        // Not in /tmp: sandboxes of other sessions can write there, and
        // could swap this session's zsh. Not straight in /var/tmp either: a
        // sandbox started there may write it. Every session's directory is
        // in one per-user directory that every sandbox sees read-only.
        let sessions_dir = private_sessions_dir()?;
        remove_abandoned_session_dirs(&sessions_dir);
        let zsh_dir = tempfile::Builder::new()
            .prefix(SESSION_DIR_PREFIX)
            .tempdir_in(&sessions_dir)
            .map_err(|source| BridgeError::Io {
                what: "cannot create the session's PATH directory".into(),
                source,
            })?;
        // Unlocked, the directory is only left to this session's own end.
        let zsh_dir_lock = lock_session_dir(zsh_dir.path())
            .inspect_err(|error| {
                tracing::warn!(%error, "the session's PATH directory is not locked");
            })
            .ok();
        symlink(&tools.zsh, zsh_dir.path().join("zsh")).map_err(|source| BridgeError::Io {
            what: "cannot link the patched zsh".into(),
            source,
        })?;

        // One policy builds the shell's environment and what escalated
        // children beyond the sandbox start from (PATH aside: the server's own).
        let mut env = shell_environment(&env, &profile_name)?;
        let mut telemetry = Telemetry::new(&profile, &profile_name);
        let mut server = SessionConfig::new(&tools.wrapper, policy);
        server.profile_name = Some(profile_name.clone());
        server.escalation_env = env
            .iter()
            .filter(|(name, _)| name != "PATH")
            .cloned()
            .collect();
        // Unsandboxed children get a temporary directory of their own, and
        // each escalation with grants one made for it: in one the sandbox
        // shares, it could swap what they write there and then run (a
        // re-probe swapped the `setup.py` an escalated pip had unpacked
        // there). Both lie in one directory of the session's that every
        // sandbox sees empty (one mount to hide them, a sandbox's start
        // pays for it).
        let mut private_dir = None;
        if matches!(profile, PermissionProfile::Managed { .. }) {
            use std::os::unix::fs::DirBuilderExt;
            let private = zsh_dir.path().join("private");
            let [unsandboxed, granted] = ["tmp", "granted"].map(|name| private.join(name));
            for dir in [&private, &unsandboxed, &granted] {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .map_err(|source| BridgeError::Io {
                        what: format!("cannot create {}", dir.display()),
                        source,
                    })?;
            }
            // Canonical, as the sandboxes' rules are (a review: with
            // `/var/tmp` a link, every grant of one was taken for moved).
            let canonical = |dir: PathBuf| {
                std::fs::canonicalize(&dir).map_err(|source| BridgeError::Io {
                    what: format!("cannot resolve {}", dir.display()),
                    source,
                })
            };
            let (unsandboxed, granted) = (canonical(unsandboxed)?, canonical(granted)?);
            private_dir = Some(canonical(private)?);
            if let Some(policy) = &exec_policy {
                policy.count_granted_tmpdirs(&granted);
            }
            server.unsandboxed_tmpdir = Some(unsandboxed);
            server.granted_tmpdirs = Some(granted);
        }
        let mut context = sandbox_context(&cwd, &sessions_dir);
        take_sandbox_tmpdir(&mut env, &profile, &context);
        // Counted and traced first, then the caller's sink. The session's
        // id is known only once it has started: a shared cell names it.
        let named: Arc<std::sync::OnceLock<Telemetry>> = Arc::default();
        let observer = Arc::clone(&named);
        let unnamed = telemetry.clone();
        server.events = Some(Arc::new(move |event: &SessionEvent| {
            observer.get().unwrap_or(&unnamed).observe(event);
            // The caller's code: its panic must not take the request's
            // handling with it (a probe's left a lone `decision` record).
            if let Some(events) = &events {
                let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| events(event)));
                if told.is_err() {
                    tracing::error!("the session's event callback panicked; the session goes on");
                }
            }
        }));
        server.audit = audit;
        server.audit_failure = audit_failure;
        server.shell_niceness = niceness;
        let reporter: Arc<std::sync::OnceLock<EventReporter>> = Arc::default();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let network = Arc::new(ProxyHost::new(
            runtime.clone(),
            crate::network::sandbox_networks(exec_policy.as_ref(), reporter.clone()),
            on_network_denial,
        ));
        server.network = Some(network.clone());
        // A disabled profile needs no launcher; any other profile that
        // cannot get one does not start.
        match Launcher::new(&tools.sandbox_helper) {
            Ok(mut launcher) => {
                // Empty inside, but for this session's own, read-only: no
                // sandbox can swap the zsh of this session or of any
                // other, nor read what another session keeps there.
                hide_sessions_dir(&mut launcher, &sessions_dir)?;
                launcher.expose(zsh_dir.path());
                // Each escalation's temporary directory is its own: no
                // sandbox sees what another escalation, or an unsandboxed
                // one, keeps there.
                if let Some(private) = &private_dir {
                    launcher.hide(private);
                }
                for dir in tools.zsh_library_dirs() {
                    launcher.expose(dir);
                }
                // Hidden by the profile (above), and out of every grant's
                // reach (probe 242).
                for place in &audit_places {
                    launcher.keep_from_grants(place, "the audit log's", Access::None);
                }
                for (place, what) in out_of_grants {
                    launcher.keep_from_grants(place, what, Access::Read);
                }
                context.workspace_roots = workspace_roots;
                if let Some(policy) = &exec_policy {
                    server.known_grant_roots = policy.known_grant_roots(&context);
                }
                server.sandbox = Some(SessionSandbox {
                    launcher,
                    turn_default: profile,
                    context,
                });
            }
            Err(_) if profile == PermissionProfile::Disabled => {}
            Err(error) => return Err(error.into()),
        }
        let session = Session::start(server)?;
        // Before any sandbox can link: the shell starts after this returns.
        let _ = reporter.set(session.event_reporter());
        telemetry.set_session(session.id());
        let _ = named.set(telemetry.clone());

        set_path(&mut env, Some(zsh_dir.path()))?;
        if let Some(claim) = claim {
            claim.keep();
        }
        Ok(ShellSession {
            session: Arc::new(session),
            env,
            zsh: zsh_dir.path().join("zsh"),
            cwd,
            exec_policy,
            processes: crate::unified::ProcessTable::default(),
            telemetry,
            network,
            _zsh_dir: zsh_dir,
            _zsh_dir_lock: zsh_dir_lock,
            runs: CancellationToken::new(),
            runtime,
        })
    }

    pub fn id(&self) -> &str {
        self.session.id()
    }

    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// The session's counters so far: decisions by outcome, escalations by
    /// execution, spawn and sandbox start failures, approvals.
    pub fn metrics(&self) -> Metrics {
        self.telemetry.snapshot()
    }

    /// Runs `command` with `zsh -f -c` in the session. With requested
    /// permissions, the approver is asked first; the timeout starts once
    /// the shell does, and stops while approvals are pending. Callable
    /// from any thread: the command is followed on the runtime the session
    /// started in, while it runs.
    pub fn run(&self, command: &str, options: RunOptions) -> Result<RunHandle, BridgeError> {
        if self.session.has_ended() {
            return Err(BridgeError::SessionEnded);
        }
        // `--`: a command that starts with `-` or `+` is a command, not
        // options (`- cmd` is zsh's precommand modifier).
        let args = [
            OsString::from("-f"),
            "-c".into(),
            "--".into(),
            command.into(),
        ];
        let requested = match (&options.request_permissions, &self.exec_policy) {
            (None, _) => None,
            (Some(requested), Some(policy)) => Some((
                requested.clone(),
                policy.clone(),
                self.session.event_reporter(),
            )),
            (Some(_), None) => return Err(BridgeError::NoApprover),
        };
        let (zsh, cwd, command) = (self.zsh.clone(), self.cwd.clone(), command.to_owned());
        let session_shell = self.shell_factory(args.to_vec(), ShellGroup::OwnGroup, Vec::new());
        let failure = self.shell_failure("command", &args);
        let clock = self.exec_policy.as_ref().map(ExecPolicy::approval_clock);
        let telemetry = self.telemetry.clone();
        let network = self.network.clone();
        let (sender, chunks) = mpsc::unbounded_channel();
        let stop = self.runs.child_token();
        let (run_stop, session_runs) = (stop.clone(), self.runs.clone());
        let outcome = self.runtime.spawn(async move {
            let (cancel, stop) = (options.cancel.clone(), run_stop.clone());
            let stopped = async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = stop.cancelled() => {}
                }
            };
            // (the shell, whether a grant was declined, whether one was
            // given: its record then says why a shell not made was not)
            let (shell, declined, granted) = match requested {
                None => (session_shell(None), false, false),
                Some((requested, policy, reporter)) => {
                    let granting = policy.grant_permissions(
                        &zsh,
                        &command,
                        &cwd,
                        &requested.profile,
                        requested.justification.clone(),
                    );
                    let argv = failure.argv.clone();
                    let asked_at = std::time::Instant::now();
                    let answer = tokio::select! {
                        answer = granting => answer,
                        () = stopped => {
                            // A person was asked: the request is recorded,
                            // with what ended it, though nobody answered.
                            // Else cancelled, or its handle dropped.
                            let session_ended = session_runs.is_cancelled();
                            let why = match session_ended {
                                true => "the session ended at the question",
                                false => "the command was cancelled at the question",
                            };
                            let event = SessionEvent::PermissionsRequested {
                                argv,
                                cwd,
                                grants: requested.profile,
                                granted: false,
                                justification: requested.justification,
                                provenance: Provenance {
                                    approval_wait: Some(asked_at.elapsed()),
                                    note: Some(why.into()),
                                    ..Provenance::default()
                                },
                            };
                            let recorded = crate::blocking::off_the_runtime(move || {
                                reporter.report(&event)
                            })
                            .await;
                            if let Some(Err(error)) = recorded {
                                tracing::warn!(%error, "a request for grants ended at its question is not recorded");
                            }
                            // The caller's cancel or the session's end,
                            // not a person's abort (probe 224).
                            // As the record says (review 226).
                            if session_ended {
                                return Err(BridgeError::SessionEnded);
                            }
                            return Ok(RunOutcome::cancelled_before_it_started());
                        }
                    };
                    let aborted = answer.aborted;
                    // Recorded before the shell starts: a reviewer must
                    // see what it could write beyond the session's
                    // sandbox, or why it could not (declined, or granted
                    // and not made).
                    let grants = answer
                        .granted
                        .clone()
                        .unwrap_or_else(|| requested.profile.clone());
                    let (granted, mut provenance) = (answer.granted.is_some(), answer.provenance);
                    let (cwd, justification) = (cwd.clone(), requested.justification);
                    let record = move |not_made: Option<&dyn std::fmt::Display>| {
                        if let Some(why) = not_made {
                            let not_made = format!("granted, but not made: {why}");
                            provenance.note_after(not_made);
                        }
                        reporter.report(&SessionEvent::PermissionsRequested {
                            argv,
                            cwd,
                            grants,
                            granted: granted && not_made.is_none(),
                            justification,
                            provenance,
                        })
                    };
                    // Off the runtime: with `sync = "escalations"` the
                    // record waits for the disk, and a grant's profile is
                    // resolved (its deny globs walked) before it is.
                    let shell = tokio::task::spawn_blocking(move || match answer.granted {
                        Some(profile) => {
                            session_shell(Some(ShellGrant::new(profile, Box::new(record))))
                        }
                        None => {
                            record(None).map_err(GrantError::Unrecorded)?;
                            match aborted {
                                true => Err(BridgeError::Aborted),
                                false => session_shell(None),
                            }
                        }
                    })
                    .await
                    .map_err(|error| BridgeError::Io {
                        what: "the command's shell could not be prepared".into(),
                        source: std::io::Error::other(error),
                    })?;
                    (shell, !granted, granted)
                }
            };
            let shell = match shell {
                Ok(shell) => shell,
                // A person's abort at the question is no failure to start.
                Err(BridgeError::Aborted) => return Err(BridgeError::Aborted),
                // Its `permissions-request` says why (review 216: said
                // twice, the whole command with each).
                Err(error) if granted => {
                    telemetry.observe(&failure.event(&error));
                    return Err(error);
                }
                Err(error) => return Err(failure.report(error).await),
            };
            let started = Started {
                telemetry: &telemetry,
                failure: &failure,
            };
            let mut outcome =
                run_shell(shell, options, run_stop, clock, started, &network, sender).await?;
            outcome.permissions_declined = declined;
            Ok(outcome)
        });
        Ok(RunHandle {
            chunks,
            outcome,
            stop,
        })
    }

    /// How a `kind` shell started with `args` is reported if it does not
    /// start.
    pub(crate) fn shell_failure(&self, kind: &'static str, args: &[OsString]) -> ShellFailure {
        ShellFailure {
            reporter: self.session.event_reporter(),
            kind,
            argv: std::iter::once(self.zsh.clone().into_os_string())
                .chain(args.iter().cloned())
                .collect(),
            cwd: self.cwd.clone(),
        }
    }

    /// Builds shell commands later, from a task that cannot borrow `self`.
    /// Every shell of the session starts here, one-shot or long-lived; one
    /// granted more has the approver's answer recorded first
    /// ([`ShellGrant`]).
    pub(crate) fn shell_factory(
        &self,
        args: Vec<OsString>,
        group: ShellGroup,
        extra_env: Vec<(OsString, OsString)>,
    ) -> impl FnOnce(Option<ShellGrant>) -> Result<ShellCommand, BridgeError> + Send + 'static {
        // Weak: a command still waiting for approval must not keep a
        // dropped session alive.
        let session = Arc::downgrade(&self.session);
        // Cancelled as the session ends, before its server is told.
        let runs = self.runs.clone();
        let (zsh, env, cwd) = (self.zsh.clone(), self.env.clone(), self.cwd.clone());
        move |grant| {
            let session = (|| {
                // The kernel's limit on one argument (`MAX_ARG_STRLEN`,
                // with its NUL): past it, `execve` says only "Argument list
                // too long".
                let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                    .ok()
                    .flatten()
                    .and_then(|page| usize::try_from(page).ok())
                    .unwrap_or(4096);
                if let Some(long) = args.iter().find(|arg| arg.len() >= 32 * page) {
                    return Err(BridgeError::CommandTooLong { len: long.len() });
                }
                session
                    .upgrade()
                    .filter(|session| !session.has_ended())
                    .filter(|_| !runs.is_cancelled())
                    .ok_or(BridgeError::SessionEnded)
            })();
            let session = match session {
                Ok(session) => session,
                Err(error) => {
                    // The answer is recorded with why its grant was not made.
                    if let Some(grant) = grant {
                        grant
                            .record
                            .record(Some(&error))
                            .map_err(GrantError::Unrecorded)?;
                    }
                    return Err(error);
                }
            };
            let terminal = match group {
                ShellGroup::OwnGroup => Terminal::Detached,
                ShellGroup::OwnTerminal => Terminal::Shared,
            };
            let mut shell = match grant {
                None => session.shell_command_on(&zsh, &args, terminal),
                Some(grant) => session.shell_command_with(
                    &zsh,
                    &args,
                    terminal,
                    &grant.profile,
                    |not_made| grant.record.record(not_made),
                )?,
            };
            // The session's socket and wrapper last: nothing a caller
            // adds replaces them (probe 173: an empty `EXECGATE_WRAPPER`
            // started a shell that asked nothing). The caller's `PATH` or
            // `TMPDIR` replaces the session's, as the caller asked.
            shell.env_clear().envs(env.iter().cloned()).envs(extra_env);
            shell.envs(session.shell_env());
            session.seal_shell_command(&mut shell);
            shell.current_dir(&cwd);
            match group {
                // Its own process group, so that nothing it leaves behind
                // survives the end of the command.
                ShellGroup::OwnGroup => {
                    shell.process_group(0);
                }
                // Its own session on its own terminal (bubblewrap must not
                // start another): a session is a process group too.
                ShellGroup::OwnTerminal => crate::sys::own_terminal_in_child(&mut shell),
            }
            Ok(shell)
        }
    }

    /// Runs an interactive `zsh -i` on the caller's terminal, in the
    /// session, until it exits, with the user's startup files and the
    /// prompt marker (see [`Interactive`]). The caller should ignore SIGINT
    /// and SIGTSTP meanwhile: the terminal's signals belong to the shell's
    /// jobs.
    pub async fn interactive(&self) -> Result<CommandStatus, BridgeError> {
        self.interactive_with(&Interactive::default()).await
    }

    /// [`ShellSession::interactive`] with a choice of startup files.
    pub async fn interactive_with(
        &self,
        options: &Interactive,
    ) -> Result<CommandStatus, BridgeError> {
        let zdotdir = self
            ._zsh_dir
            .path()
            .join("startup")
            .join(options.dir_name());
        let args = [OsString::from("-i")];
        let failure = self.shell_failure("interactive", &args);
        if let Err(source) = startup::write(&zdotdir, options) {
            let error = BridgeError::Io {
                what: "cannot write the shell's startup files".into(),
                source,
            };
            return Err(failure.report(error).await);
        }
        let mut shell = self
            .session
            .shell_command_on(&self.zsh, &args, Terminal::Shared);
        shell.env_clear().envs(self.env.iter().cloned());
        shell.envs(startup::environment(&zdotdir, &self.env));
        shell.envs(self.session.shell_env());
        self.session.seal_shell_command(&mut shell);
        shell.current_dir(&self.cwd);
        let ShellCommand {
            command: shell,
            watch,
            cgroup: _cgroup,
        } = shell;
        let mut child = match tokio::process::Command::from(shell)
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(source) => {
                let error = shell_not_started(source, &self.cwd);
                return Err(failure.report(error).await);
            }
        };
        self.telemetry.shell_started("interactive", child.id());
        let status = child.wait().await.map_err(|source| BridgeError::Io {
            what: "cannot wait for the shell".into(),
            source,
        })?;
        if watch.set_up_failed(&status) {
            let error = sandbox_not_set_up_error(None);
            return Err(failure.report(error).await);
        }
        Ok(CommandStatus::of_shell(status, &watch))
    }

    /// Ends the session at once because its owner received `signal`: every
    /// escalated child (and, where the session has a cgroup, every process
    /// of the session) is killed, and the audit log records the end by that
    /// signal. Follow with [`ShellSession::shutdown`] to wait for the reaping.
    pub fn terminate(&self, signal: i32) {
        self.stop_everything();
        self.session.terminate(signal);
    }

    /// What every end of the session does first: its commands (each then
    /// reports itself cancelled), its long-lived processes and its network
    /// go; shells hold the session socket.
    fn stop_everything(&self) {
        self.runs.cancel();
        self.processes.kill_all();
        self.network.shut_down();
    }

    /// Ends the session at once, as its owner closing it: every escalated
    /// child (and, where the session has a cgroup, every process of the
    /// session) is killed, and the audit log records a close. For an
    /// owner that cannot wait for [`ShellSession::shutdown`] (another
    /// holder keeps the session).
    pub fn cancel(&self) {
        self.stop_everything();
        self.session.cancel();
    }

    /// A handle that freezes the session while a question is asked on its
    /// terminal: see [`server::QuestionFreezer`](crate::server::QuestionFreezer).
    pub fn question_freezer(&self) -> crate::server::QuestionFreezer {
        self.session.question_freezer()
    }

    /// Freezes every process of the session, or thaws them (its cgroup's
    /// freezer): for a caller that must stop the command as a job is
    /// stopped. `Ok(false)`, and nothing done, without a session cgroup.
    pub fn freeze(&self, frozen: bool) -> Result<bool, BridgeError> {
        self.session
            .freeze(frozen)
            .map_err(|source| BridgeError::Io {
                what: "cannot freeze or thaw the session's processes".into(),
                source,
            })
    }

    /// Ends the session: every escalated child is killed and reaped, and
    /// every connection of its limited sandboxes ended and recorded.
    pub async fn shutdown(self) {
        self.stop_everything();
        // Before the session's end record, as far as it can.
        self.network.connections_recorded().await;
        self.session.cancel();
        self.session.finished().await;
    }
}

/// Where a command's shell reports its start, or its failure to start.
struct Started<'a> {
    telemetry: &'a Telemetry,
    failure: &'a ShellFailure,
}

/// Starts `shell` and follows it to its end.
async fn run_shell(
    shell: ShellCommand,
    options: RunOptions,
    stop: CancellationToken,
    clock: Option<ApprovalClock>,
    Started { telemetry, failure }: Started<'_>,
    network: &ProxyHost,
    sender: mpsc::UnboundedSender<OutputChunk>,
) -> Result<RunOutcome, BridgeError> {
    let ShellCommand {
        command: mut shell,
        watch,
        cgroup,
    } = shell;
    match options.stdio {
        Stdio3::Captured => {
            shell
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        Stdio3::Inherited => {
            shell
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
        }
    }
    // Before the spawn: a denial of this run's sandbox comes after it.
    let started = std::time::Instant::now();
    let cwd = shell.get_current_dir().map(Path::to_path_buf);
    // The command's own approval clock, kept before any question of its
    // is asked: another command's question does not stop its timeout.
    let spawned = crate::approval::start_shell(clock.as_ref(), shell, cgroup.as_ref());
    let (mut child, own_clock) = match spawned {
        Ok(spawned) => spawned,
        Err(source) => {
            let error = shell_not_started(source, cwd.as_deref().unwrap_or(Path::new(".")));
            return Err(failure.report(error).await);
        }
    };
    telemetry.shell_started("command", child.id());
    let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let root = child.id().and_then(crate::tree::pin);
    let command = child.id();
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(options.output_limit));
    let stdout = child
        .stdout
        .take()
        .map(|pipe| start_collector(pipe, OutputChunk::Stdout, &sender, &budget));
    let stderr = child
        .stderr
        .take()
        .map(|pipe| start_collector(pipe, OutputChunk::Stderr, &sender, &budget));
    drop(sender);
    let deadline = async {
        match options.timeout {
            Some(timeout) => sleep_excluding_approvals(timeout, clock, command).await,
            None => std::future::pending().await,
        }
    };
    let mut timed_out = false;
    let status = tokio::select! {
        status = child.wait() => status,
        () = deadline => {
            timed_out = true;
            crate::tree::kill_command(root.as_ref(), pgid, cgroup.as_ref());
            child.wait().await
        }
        () = options.cancel.cancelled() => {
            crate::tree::kill_command(root.as_ref(), pgid, cgroup.as_ref());
            child.wait().await
        }
        // Its handle dropped, or its session ended.
        () = stop.cancelled() => {
            crate::tree::kill_command(root.as_ref(), pgid, cgroup.as_ref());
            child.wait().await
        }
    };
    // Cancelled: killed, with a cancellation asked for, whichever end was
    // seen first (the session's cancel kills the shell as it cancels
    // `stop`). A shell that exited by itself was not, whatever came after.
    let killed = status
        .as_ref()
        .is_ok_and(|status| status.signal() == Some(nix::libc::SIGKILL));
    let cancelled = killed && !timed_out && (options.cancel.is_cancelled() || stop.is_cancelled());
    // Background jobs the command left in its group go with it. The group
    // id cannot name another process while any member lives.
    crate::tree::kill_group(pgid);
    let status = status.map_err(|source| BridgeError::Io {
        what: "cannot wait for the shell".into(),
        source,
    })?;
    // A process that left the group (`setsid`, possible only without a
    // sandbox's pid namespace) may hold the pipes open: what it writes
    // after a short grace is not waited for.
    let grace = tokio::time::Instant::now() + COLLECT_GRACE;
    let (stdout, out_truncated) = join_collector(stdout, grace).await;
    let (stderr, err_truncated) = join_collector(stderr, grace).await;
    if watch.set_up_failed(&status) {
        let error = sandbox_not_set_up_error(match options.stdio {
            Stdio3::Captured => Some(&stderr),
            Stdio3::Inherited => None,
        });
        return Err(failure.report(error).await);
    }
    Ok(RunOutcome {
        status: CommandStatus::of_shell(status, &watch),
        stdout,
        stderr,
        truncated: out_truncated || err_truncated,
        timed_out,
        cancelled,
        network_denied: pgid
            .and_then(|pid| u32::try_from(pid).ok())
            .and_then(|pid| network.take_denial(pid, started)),
        permissions_declined: false,
        aborted: own_clock
            .as_ref()
            .is_some_and(crate::approval::CommandClock::aborted),
    })
}

/// What one stream's collector has kept so far, and whether it dropped any.
type Kept = Arc<std::sync::Mutex<(Vec<u8>, bool)>>;

/// Starts reading one of the command's streams.
fn start_collector(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    wrap: fn(Vec<u8>) -> OutputChunk,
    sender: &mpsc::UnboundedSender<OutputChunk>,
    budget: &Arc<std::sync::atomic::AtomicUsize>,
) -> (tokio::task::JoinHandle<()>, Kept) {
    let kept = Kept::default();
    let task = tokio::spawn(collect(
        pipe,
        wrap,
        sender.clone(),
        budget.clone(),
        kept.clone(),
    ));
    (task, kept)
}

/// Reads a stream to its end, streaming and keeping what fits in the
/// shared budget.
async fn collect(
    mut pipe: impl AsyncRead + Unpin,
    wrap: fn(Vec<u8>) -> OutputChunk,
    sender: mpsc::UnboundedSender<OutputChunk>,
    budget: Arc<std::sync::atomic::AtomicUsize>,
    kept: Kept,
) {
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let allowed = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(read))
            })
            .unwrap_or(0)
            .min(read);
        let mut kept = kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if allowed < read {
            kept.1 = true;
        }
        if allowed > 0 {
            kept.0.extend_from_slice(&buf[..allowed]);
            let _ = sender.send(wrap(buf[..allowed].to_vec()));
        }
    }
}

/// How long output is still read after the command's process group is gone.
const COLLECT_GRACE: Duration = Duration::from_millis(500);

/// Waits for a collector until `until`, then takes what it kept. One still
/// reading then (a process outside the group holds the pipe) is stopped,
/// and the output counts as cut.
async fn join_collector(
    collector: Option<(tokio::task::JoinHandle<()>, Kept)>,
    until: tokio::time::Instant,
) -> (Vec<u8>, bool) {
    let Some((mut task, kept)) = collector else {
        return (Vec::new(), false);
    };
    let finished = tokio::time::timeout_at(until, &mut task).await.is_ok();
    if !finished {
        task.abort();
    }
    let mut kept = kept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let truncated = kept.1 || !finished;
    (std::mem::take(&mut kept.0), truncated)
}

/// What every session's own directory in the sessions' directory is named
/// after.
const SESSION_DIR_PREFIX: &str = "execgate-zsh";

/// How old a session's directory must be before another session may judge
/// it abandoned: older than the moment between its making and its lock.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Locks `dir/.lock` for as long as the returned file is open. A lock file
/// it could not lock is removed: unlocked, it would mark a live session's
/// directory abandoned.
fn lock_session_dir(dir: &Path) -> std::io::Result<std::fs::File> {
    let path = dir.join(".lock");
    let lock = std::fs::File::create(&path)?;
    if let Err(error) = lock.try_lock() {
        let _ = std::fs::remove_file(&path);
        return Err(error.into());
    }
    Ok(lock)
}

/// Removes the directories of sessions whose process ended without
/// removing its own (killed, or ended by `exit` with the session alive):
/// those whose lock nobody holds. One without a lock (made before sessions
/// locked theirs, or by one that could not) is left alone: nothing tells
/// whether its session lives. The warden ends a killed session's
/// processes; its directory is left to the next session.
fn remove_abandoned_session_dirs(sessions: &Path) {
    let Ok(entries) = std::fs::read_dir(sessions) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(SESSION_DIR_PREFIX.as_bytes());
        let age = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        if !ours || age.is_none_or(|age| age < ABANDONED_AFTER) {
            continue;
        }
        let dir = entry.path();
        let abandoned =
            std::fs::File::open(dir.join(".lock")).is_ok_and(|lock| lock.try_lock().is_ok());
        if abandoned {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Hides an audit log's `files` (the log first: [`AuditSink::log_files`])
/// from every sandbox of `profile` on `cwd`: its directory, or, where that
/// directory holds `cwd` (hiding it would hide the work itself), the files.
/// A session does it as it starts for the log it records to, and
/// [`sandboxed_program`] for the files it is given; a sandbox started
/// otherwise must be given it. The records
/// are the reviewers', and a sandbox that could open the lock file could
/// hold the lock: every session sharing the log was then refused
/// everything (a probe held it from a read-only view of a parent
/// directory). A file rotation makes later is not among the files; in a
/// directory hidden whole it is hidden too.
pub fn hide_audit_log(profile: &mut PermissionProfile, files: &[PathBuf], cwd: &Path) {
    use execgate_escalate_server::sandbox::{AbsolutePath, FsTarget};
    let PermissionProfile::Managed { file_system, .. } = profile else {
        return;
    };
    for place in audit_log_places(files, cwd) {
        if let Ok(place) = AbsolutePath::new(&place, None) {
            let _ = file_system.push(FsTarget::Path(place), Access::None);
        }
    }
}

/// Where [`hide_audit_log`] hides an audit log's `files` from sandboxes on
/// `cwd`: its directory, or, where that holds `cwd`, the files themselves.
fn audit_log_places(files: &[PathBuf], cwd: &Path) -> Vec<PathBuf> {
    let Some(log) = files.first() else {
        return Vec::new();
    };
    // A relative name hid nothing (review 45): it is this process's
    // directory's, as the sink opened it.
    let log = std::path::absolute(log).unwrap_or_else(|_| log.clone());
    let Some(dir) = log.parent() else {
        return Vec::new();
    };
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if cwd.starts_with(&dir) {
        files
            .iter()
            .filter_map(|file| file.file_name())
            .map(|name| dir.join(name))
            .collect()
    } else {
        vec![dir]
    }
}

/// A command that runs `argv` in the sandbox a session's shell gets for
/// `profile` on `cwd`, without a session: `execgate sandbox`, to try a
/// profile. It is given what a session's shell is given, but for the
/// patched zsh first in `PATH`: the environment `env` makes (with
/// `EXECGATE_PROFILE`, and the sandbox's own `TMPDIR`), the same
/// temporary directory, and the sessions' directory shown empty (it holds
/// the running sessions' zsh and what their escalations keep). Nothing it
/// executes is decided. A disabled profile runs `argv` as it is, in that
/// environment. The audit log's `audit_log_files` are hidden from it
/// ([`hide_audit_log`]) and out of every grant's reach: a grant there is
/// refused.
pub fn sandboxed_program(
    cwd: &Path,
    profile: &PermissionProfile,
    profile_name: &str,
    env: &EnvPolicy,
    tools: &Tools,
    audit_log_files: &[PathBuf],
    argv: &[OsString],
) -> Result<std::process::Command, BridgeError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(BridgeError::Io {
            what: "no program to run".into(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    };
    let sessions_dir = private_sessions_dir()?;
    let context = sandbox_context(cwd, &sessions_dir);
    let mut env = shell_environment(env, profile_name)?;
    take_sandbox_tmpdir(&mut env, profile, &context);
    set_path(&mut env, None)?;
    if *profile == PermissionProfile::Disabled {
        let mut command = std::process::Command::new(program);
        command.args(args).env_clear().envs(env).current_dir(cwd);
        return Ok(command);
    }
    let mut launcher = Launcher::new(&tools.sandbox_helper)?;
    hide_sessions_dir(&mut launcher, &sessions_dir)?;
    // As a session's (probe 244: the profile's grant on the log's file
    // won over its hiding).
    let mut profile = profile.clone();
    hide_audit_log(&mut profile, audit_log_files, cwd);
    for place in audit_log_places(audit_log_files, cwd) {
        launcher.keep_from_grants(place, "the audit log's", Access::None);
    }
    if let Some(refused) = execgate_escalate_server::grant_kept_from(&launcher, &profile, |_| true)
    {
        return Err(refused.into());
    }
    let policy = ResolvedPolicy::resolve(&profile, &context)?;
    policy.check_working_directory(cwd)?;
    let mut command = launcher.command(&policy, cwd, None, Default::default(), argv);
    command.env_clear().envs(env).current_dir(cwd);
    // The loader's variables (a config's `[env] set` among them) reach
    // the program, not bubblewrap (review 36).
    launcher.seal_environment(&mut command);
    Ok(command)
}

/// The environment a session's shell starts from: `policy` applied to
/// this process's, and `EXECGATE_PROFILE` naming the profile (never the
/// caller's).
fn shell_environment(
    policy: &EnvPolicy,
    profile_name: &str,
) -> Result<Vec<(OsString, OsString)>, BridgeError> {
    let mut env = policy.build(std::env::vars_os())?;
    env.retain(|(name, _)| name != PROFILE_VARIABLE);
    env.push((PROFILE_VARIABLE.into(), profile_name.into()));
    Ok(env)
}

/// A sandboxed shell's `TMPDIR` is the one its sandbox may write: a
/// `TMPDIR` the sandbox did not take (its name does not look like a
/// temporary directory's) would fail every `mktemp`.
fn take_sandbox_tmpdir(
    env: &mut [(OsString, OsString)],
    profile: &PermissionProfile,
    context: &SandboxContext,
) {
    if !matches!(profile, PermissionProfile::Managed { .. }) {
        return;
    }
    let tmpdir = &context.tmpdir;
    for (name, value) in env {
        if name == "TMPDIR" && std::fs::canonicalize(&*value).ok().as_ref() != Some(tmpdir) {
            *value = tmpdir.clone().into();
        }
    }
}

/// Puts `first` (the session's directory holding the patched zsh) before
/// the `PATH` of `env`, or of a plain system when it has none.
fn set_path(env: &mut Vec<(OsString, OsString)>, first: Option<&Path>) -> Result<(), BridgeError> {
    let path = std::env::join_paths(
        first.map(Path::to_path_buf).into_iter().chain(
            env.iter()
                .find(|(name, _)| name == "PATH")
                .map(|(_, value)| std::env::split_paths(value).collect::<Vec<_>>())
                .unwrap_or_else(|| {
                    ["/usr/local/bin", "/usr/bin", "/bin"]
                        .iter()
                        .map(PathBuf::from)
                        .collect()
                }),
        ),
    )
    .map_err(|error| BridgeError::Io {
        what: "cannot build PATH".into(),
        source: std::io::Error::other(error),
    })?;
    env.retain(|(name, _)| name != "PATH");
    env.push(("PATH".into(), path));
    Ok(())
}

/// The sandbox's context for `cwd`, but never with a temporary directory
/// in the sessions' directory: a session started from an unsandboxed
/// escalation inherits that escalation's own, which the outer session's
/// other unsandboxed escalations use (a review: its sandbox could swap
/// what they unpack there). `/tmp` then, as with no `TMPDIR`.
fn sandbox_context(cwd: &Path, sessions_dir: &Path) -> SandboxContext {
    let mut context = SandboxContext::new(cwd);
    if context.tmpdir.starts_with(sessions_dir) {
        context.tmpdir = PathBuf::from("/tmp");
    }
    context
}

/// Where the sessions' private directories live: `/var/tmp/execgate-UID`.
fn sessions_dir_path() -> PathBuf {
    PathBuf::from(format!(
        "/var/tmp/execgate-{}",
        nix::unistd::getuid().as_raw()
    ))
}

/// Why the sessions' directory that is already there cannot be used: not
/// a real directory of this user that nobody else may write (a planted
/// one could hold another zsh). `None` when it can, or is not there yet.
/// Made by nothing: `execgate doctor` asks it too.
pub fn sessions_dir_problem() -> Option<String> {
    let dir = sessions_dir_path();
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    unusable_sessions_dir(&dir, &meta)
}

fn unusable_sessions_dir(dir: &Path, meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    let found = if !meta.is_dir() {
        "something that is not a directory".to_owned()
    } else if meta.uid() != uid {
        format!("a directory of uid {}", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!(
            "a directory others may write (mode {:o})",
            meta.mode() & 0o7777
        )
    } else {
        return None;
    };
    // Someone else may have made it to be used: say so, and what to do.
    Some(format!(
        "the sessions' directory {} cannot be used (it may have been put there for sessions \
         to use: remove it, as root or its owner, once you know what made it): it is {found}, \
         not a directory of this user that only it can write",
        dir.display()
    ))
}

/// Hides the sessions' directory from every sandbox by each name the
/// host's mounts give it (probe 247: with `/var/tmp` a bind mount of
/// `/tmp`, as older hardening guides advise, a sandbox that could write `/tmp`
/// swapped another session's zsh through `/tmp/execgate-UID`, and that
/// session's next command ran the sandbox's program, undecided). A name a
/// mount gives it later is not known. Refused when the mounts cannot be
/// read: no name could be hidden then.
fn hide_sessions_dir(launcher: &mut Launcher, sessions_dir: &Path) -> Result<(), BridgeError> {
    launcher.hide(sessions_dir);
    let aliases = MountAliases::of(&[sessions_dir.to_path_buf()]);
    if aliases.unknown() {
        return Err(BridgeError::Io {
            what: format!(
                "cannot read this process's mounts, to hide the sessions' directory {} from \
                 sandboxes by each name they give it (is /proc mounted, and the descriptor limit, \
                 ulimit -n, above what is open?)",
                sessions_dir.display()
            ),
            source: std::io::Error::other("/proc/self/mountinfo could not be read"),
        });
    }
    for alias in aliases.aliases() {
        launcher.hide(alias);
    }
    Ok(())
}

/// The sessions' directory, created owner-only, and refused unless it is
/// a real directory of this user that nobody else may write.
fn private_sessions_dir() -> Result<PathBuf, BridgeError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = sessions_dir_path();
    let failed = |source| BridgeError::Io {
        what: format!("cannot create the sessions' directory {}", dir.display()),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(failed(error)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(failed)?;
    if let Some(problem) = unusable_sessions_dir(&dir, &meta) {
        return Err(BridgeError::UnusableSessionsDir(problem));
    }
    // Made earlier with another mode (an older execgate, by hand): the
    // sessions' names and what their escalations keep are this user's
    // alone.
    if meta.mode() & 0o077 != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
    }
    // Canonical, as the sandboxes' rules are, when `/var/tmp` is a link.
    std::fs::canonicalize(&dir).map_err(failed)
}

/// [`BridgeError::SandboxNotSetUp`], with bubblewrap's line from the
/// shell's captured `stderr`, or pointing at it where the stream was the
/// caller's own.
pub(crate) fn sandbox_not_set_up_error(stderr: Option<&[u8]>) -> BridgeError {
    let bubblewrap_said = match stderr {
        Some(stderr) => String::from_utf8_lossy(stderr)
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("bwrap: "))
            .map_or_else(
                || "bubblewrap said nothing".to_owned(),
                |said| format!("bubblewrap: {said}"),
            ),
        None => "bubblewrap's message is above".to_owned(),
    };
    BridgeError::SandboxNotSetUp { bubblewrap_said }
}

/// How a command's shell that did not start is reported: counted and
/// traced by the session's telemetry, and recorded in its audit log as an
/// `error` with the command (a shell whose sandbox bubblewrap could not
/// set up left no trace there: a reviewer saw the session begin and end,
/// and nothing of the command in between).
#[derive(Clone)]
pub(crate) struct ShellFailure {
    reporter: EventReporter,
    kind: &'static str,
    argv: Vec<OsString>,
    cwd: PathBuf,
}

impl ShellFailure {
    /// Reports that the shell did not start, because of `error`. Waits
    /// for the audit log (its lock, a disk): not on the runtime's threads.
    pub(crate) fn report_blocking(&self, error: &BridgeError) {
        // Nothing is left to refuse: the shell did not start.
        if let Err(error) = self.reporter.report(&self.event(error)) {
            tracing::warn!(%error, shell = self.kind, "a shell that did not start is not recorded");
        }
    }

    /// The event that says the shell did not start, because of `error`.
    pub(crate) fn event(&self, error: &BridgeError) -> SessionEvent {
        SessionEvent::ShellNotStarted {
            kind: self.kind,
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            reason: error.to_string(),
        }
    }

    /// One that reports to nobody, for the tests of what uses it.
    #[cfg(test)]
    pub(crate) fn unreported() -> ShellFailure {
        ShellFailure {
            reporter: EventReporter::new("none", None, None, AuditFailure::Deny),
            kind: "process",
            argv: Vec::new(),
            cwd: PathBuf::from("/"),
        }
    }

    /// [`ShellFailure::report_blocking`], from the runtime: answered even
    /// when no thread can start (a shell's start fails most often so).
    pub(crate) async fn report(&self, error: BridgeError) -> BridgeError {
        let failure = self.clone();
        crate::blocking::off_the_runtime(move || {
            failure.report_blocking(&error);
            error
        })
        .await
        .unwrap_or_else(|| BridgeError::Io {
            what: "cannot report a shell that did not start".into(),
            source: std::io::Error::other("the report panicked"),
        })
    }
}

/// Why a session's shell did not start, said so that the user can act: a
/// working directory removed since the session began fails the spawn with
/// a bare "No such file or directory" (probe 163), which names neither.
pub(crate) fn shell_not_started(source: std::io::Error, cwd: &Path) -> BridgeError {
    let what = match source.kind() {
        std::io::ErrorKind::NotFound if !cwd.is_dir() => format!(
            "cannot start the shell in {}: the directory is gone (removed or renamed since \
             the session began); start a session elsewhere",
            cwd.display()
        ),
        _ => "cannot start the shell".to_owned(),
    };
    BridgeError::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review 123: a grant dropped before its answer was recorded (a panic
    /// while its shell was built) left the approver's answer unrecorded.
    /// It is recorded as not made.
    #[test]
    fn a_grant_dropped_unrecorded_records_its_answer_as_not_made() {
        let (sender, told) = std::sync::mpsc::channel();
        let grant = ShellGrant::new(
            PermissionProfile::preset("read-only").unwrap(),
            Box::new(move |why: Option<&dyn std::fmt::Display>| {
                sender.send(why.map(ToString::to_string)).unwrap();
                Ok(())
            }),
        );
        drop(grant);
        let why = told.try_recv().expect("the answer was recorded");
        assert!(
            why.is_some_and(|why| why.contains("its shell could not be prepared")),
            "recorded as made"
        );
    }

    /// Review 45: a log opened by a bare name ("audit.jsonl") hid nothing:
    /// its directory read as "", the names stayed relative, and no profile
    /// takes a relative path. It is this process's directory's.
    #[test]
    fn a_log_named_relatively_is_hidden_where_it_lies() {
        use execgate_escalate_server::sandbox::Access;
        let hidden_entries = |profile: &PermissionProfile| -> Vec<String> {
            let PermissionProfile::Managed { file_system, .. } = profile else {
                panic!("not a managed profile");
            };
            file_system
                .entries
                .iter()
                .filter(|entry| entry.access == Access::None)
                .map(|entry| entry.target.to_string())
                .collect()
        };
        let mut profile = PermissionProfile::preset("workspace-write").unwrap();
        let before = hidden_entries(&profile);
        let elsewhere = tempfile::tempdir().unwrap();
        hide_audit_log(
            &mut profile,
            &[PathBuf::from("audit.jsonl")],
            elsewhere.path(),
        );
        let here = std::fs::canonicalize(".").unwrap();
        let added: Vec<String> = hidden_entries(&profile)
            .into_iter()
            .filter(|entry| !before.contains(entry))
            .collect();
        assert_eq!(added, [here.display().to_string()]);
    }

    /// From a probe: a sessions' directory others could read (made by
    /// hand, or by an older execgate) was taken as it was.
    #[test]
    fn the_sessions_directory_is_made_this_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_sessions_dir().unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let again = private_sessions_dir().unwrap();
        let mode = std::fs::metadata(&again).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    /// A sessions' directory found already there is refused, as a session
    /// and `doctor` say, unless it is a real directory of this user that
    /// nobody else may write (probe 177: doctor said ready).
    #[test]
    fn a_sessions_directory_not_this_users_alone_is_named_as_found() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let dir = |name: &str, mode: u32| {
            let path = base.path().join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let own = dir("own", 0o700);
        let readable = dir("readable", 0o755);
        let writable = dir("writable", 0o777);
        let foreign = dir("foreign", 0o700);
        std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
        let file = base.path().join("file");
        std::fs::write(&file, "").unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&own, &link).unwrap();
        // (path, what the problem says, if any)
        let cases = [
            (own, None),
            (readable, None),
            (writable, Some("a directory others may write (mode 777)")),
            (foreign, Some("a directory of uid 65534")),
            (file, Some("something that is not a directory")),
            (link, Some("something that is not a directory")),
        ];
        for (path, found) in cases {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let problem = unusable_sessions_dir(&path, &meta);
            match found {
                None => assert_eq!(problem, None, "{}", path.display()),
                Some(found) => {
                    let problem = problem.unwrap_or_default();
                    assert!(problem.contains(found), "{problem}");
                    assert!(problem.contains("remove it"), "{problem}");
                }
            }
        }
    }

    /// Regression: a session whose process was killed left its directory
    /// (the zsh link, start-up files) in the sessions' directory for good,
    /// thousands of them after a day of tests. The next session removes
    /// those whose lock nobody holds, and no other.
    #[test]
    fn abandoned_session_dirs_are_removed_and_no_other() {
        let sessions = tempfile::tempdir().unwrap();
        let make = |name: &str, locked: bool| {
            let dir = sessions.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("zsh"), "").unwrap();
            let lock = locked.then(|| lock_session_dir(&dir).unwrap());
            (dir, lock)
        };
        let (live, _held) = make("execgate-zsh-live", true);
        let (dead, _) = make("execgate-zsh-dead", true);
        let (unlocked, _) = make("execgate-zsh-unlocked", false);
        let (other, _) = make("other-dead", true);
        let (_young, _) = make("execgate-zsh-young", true);
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        for dir in [&live, &dead, &unlocked, &other] {
            std::fs::File::open(dir)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        remove_abandoned_session_dirs(sessions.path());
        let mut left: Vec<String> = std::fs::read_dir(sessions.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "execgate-zsh-live",
                "execgate-zsh-unlocked",
                "execgate-zsh-young",
                "other-dead"
            ]
        );
    }
}
