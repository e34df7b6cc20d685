//! What agents embed: shell sessions in which every program zsh executes is
//! decided by execgate, and that run inside the session's sandbox.
//!
//! A [`ShellSession`] owns one escalation session (its policy, its
//! sandbox profile, its escalated children) and runs one-shot commands in
//! it through the patched zsh: [`ShellSession::run`] returns a
//! [`RunHandle`] that streams stdout and stderr as separate chunks and ends
//! with a [`RunOutcome`]: the status (code or signal), the output kept up to
//! a cap (with a flag when cut), and whether a timeout or cancellation ended
//! it. When a command ends, whatever it left running in its process group
//! is killed; dropping or shutting down the session kills every escalated
//! child.
//!
//! Long-lived processes (unified exec: a dev server, a REPL on a PTY) start
//! with [`ShellSession::exec_command`] on the same path, and are polled and
//! typed into with [`ShellSession::write_stdin`].
//!
//! The shell's environment comes from an [`EnvPolicy`]; inside a session,
//! `zsh` on `PATH` is the patched zsh, so nested shells keep asking.
//!
//! Rules, skills and approvals decide through an [`ExecPolicy`]:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use execgate_core_bridge::rules::RuleSet;
//! use execgate_core_bridge::{
//!     ApprovalAnswer, ApprovalRequest, ExecPolicy, ExecPolicyConfig, RunOptions, ShellSession,
//!     ShellSessionConfig, SkillRegistry, Tools,
//! };
//!
//! let approver = |_request: ApprovalRequest| async { ApprovalAnswer::ApproveOnce };
//! let policy = ExecPolicy::new(ExecPolicyConfig {
//!     rules: Arc::new(RuleSet::load(&["team.rules"])?),
//!     skills: SkillRegistry::load(&["skills"])?,
//!     approver: Arc::new(approver),
//!     ..ExecPolicyConfig::default()
//! })?;
//! let config = ShellSessionConfig::with_exec_policy("/path/to/workspace", Tools::locate()?, policy);
//! let session = ShellSession::start(config)?;
//! let mut run = session.run("cargo test", RunOptions::default())?;
//! while let Some(_chunk) = run.next_chunk().await {}
//! let _outcome = run.wait().await?;
//! session.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! This crate must never start a shell outside its session's sandbox or
//! with the session socket missing: a configuration that cannot be
//! enforced is an error. Nor may its policy escalate out of the sandbox a
//! program the sandbox could have written, or one that reads what to run
//! from files the sandbox could have planted (a repository, a Makefile, a
//! script: the table in `planted.rs`).
//!
//! # Windows
//!
//! There is no patched zsh on Windows: the zsh-based session above is
//! Unix only, and `windows` runs one command at a time through the
//! restricted-token backend, deciding on the resolved program.
//! Its `sandbox` re-export is the sandbox crate itself there.

// The zsh-based session.
#[cfg(unix)]
mod approval;
#[cfg(unix)]
mod blocking;
#[cfg(unix)]
mod environment;
#[cfg(unix)]
mod interpreter;
#[cfg(unix)]
mod metrics;
#[cfg(unix)]
mod network;
#[cfg(unix)]
mod planted;
#[cfg(unix)]
mod policy;
#[cfg(unix)]
mod session;
#[cfg(unix)]
mod skills;
#[cfg(unix)]
mod startup;
#[cfg(unix)]
mod sys;
#[cfg(unix)]
mod tools;
#[cfg(unix)]
mod tree;
#[cfg(unix)]
mod unified;

#[cfg(unix)]
use std::path::PathBuf;

// One command through the restricted-token backend.
#[cfg(windows)]
pub mod windows;

#[cfg(unix)]
pub use approval::{
    ApprovalAnswer, ApprovalClock, ApprovalFuture, ApprovalReason, ApprovalRequest, ApproveAll,
    Approver, DenyAll, NetworkApprovalRequest,
};
#[cfg(unix)]
pub use environment::{EnvInherit, EnvPolicy, CORE_VARIABLES, DEFAULT_EXCLUDES};
#[cfg(unix)]
pub use execgate_escalate_server as server;
pub use execgate_rules as rules;
#[cfg(windows)]
pub use execgate_sandbox as sandbox;
#[cfg(unix)]
pub use metrics::Metrics;
#[cfg(unix)]
pub use network::OnNetworkDenial;
#[cfg(unix)]
pub use planted::grant_reaching_user_configuration;
#[cfg(unix)]
pub use policy::{found_by_another_name, ExecPolicy, ExecPolicyConfig, PolicyError};
#[cfg(unix)]
pub use session::{
    hide_audit_log, sandboxed_program, sessions_dir_problem, CommandStatus, OutputChunk, RunHandle,
    RunOptions, RunOutcome, ShellSession, ShellSessionConfig, Stdio3, PROFILE_VARIABLE,
};
#[cfg(unix)]
pub use skills::{Skill, SkillError, SkillRegistry, SKILL_PERMISSIONS_FILE};
#[cfg(unix)]
pub use startup::{Interactive, PromptMarker, StartupFiles, PROMPT_MARKER_VARIABLE};
/// What [`RunOptions::cancel`] and the unified exec calls take: a
/// session's caller need not depend on `tokio-util` for it (probe 224).
pub use tokio_util::sync::CancellationToken;
#[cfg(unix)]
pub use tools::{
    LocatedTools, Tools, ToolsOrigin, ENV_SANDBOX_HELPER, ENV_WRAPPER_BINARY, ENV_ZSH,
    INSTALLED_TOOLS_DIR,
};
#[cfg(unix)]
pub use unified::{
    ExecError, ExecOptions, ExecOutput, ExecResponse, ExecStdio, Exited, ProcessId, ProcessInfo,
    ProcessState, Running, DEFAULT_PROCESS_LIMIT, DEFAULT_TERMINAL_SIZE, DEFAULT_YIELD_TIME,
    INPUT_PATIENCE, LONGEST_APPROVAL_WAIT, OUTPUT_BUFFER_BYTES, YIELD_TIME_RANGE,
};

/// Why a session or command could not start.
#[cfg(unix)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    #[error(
        "the patched zsh was not found at {}; build it with scripts/build-zsh.sh \
         (or set EXECGATE_ZSH)",
        .0.display()
    )]
    NoZsh(PathBuf),
    #[error(
        "{} is not the patched zsh: a session's shell must ask execgate before each program \
         it runs, and this one would run every program in place, with no rule and no \
         record; build the patched one with scripts/build-zsh.sh (or set EXECGATE_ZSH to it)",
        .0.display()
    )]
    UnpatchedZsh(PathBuf),
    #[error(
        "{} is missing; build the workspace (cargo build --workspace) so it sits beside \
         this binary",
        .0.display()
    )]
    MissingTool(PathBuf),
    #[error(
        "execgate's tools were not found: {} is missing from the build tree, and no \
         complete installation is in {} or {}; build the workspace and \
         scripts/build-zsh.sh, or install the package (or set EXECGATE_ZSH, \
         EXECGATE_WRAPPER_BINARY and EXECGATE_SANDBOX_HELPER)",
        .missing.display(),
        .installed.display(),
        .package.display()
    )]
    NoTools {
        missing: PathBuf,
        installed: PathBuf,
        package: PathBuf,
    },
    #[error(
        "execgate's installation in {} is incomplete: {} is missing; reinstall the package \
         (apt-get install --reinstall execgate)",
        .installation.display(),
        .missing.display()
    )]
    IncompleteInstallation {
        missing: PathBuf,
        installation: PathBuf,
    },
    #[error(
        "{variable} names {}, which does not exist; unset it, or name the tool where it is",
        .path.display()
    )]
    NoOverriddenTool {
        variable: &'static str,
        path: PathBuf,
    },
    #[error(
        "{variable} names {}, which is not execgate's {what} ({why}); unset it, or name the \
         one built with this execgate (`execgate doctor` shows which tools it takes)",
        .path.display()
    )]
    ForeignTool {
        variable: &'static str,
        path: PathBuf,
        what: &'static str,
        why: &'static str,
    },
    #[error(
        "{} is not execgate's {what} ({why}); name the one built with this execgate in \
         Tools (Tools::locate finds them)",
        .path.display()
    )]
    NotTheTool {
        path: PathBuf,
        what: &'static str,
        why: &'static str,
    },
    #[error(transparent)]
    Sandbox(#[from] execgate_escalate_server::sandbox::SandboxError),
    #[error(transparent)]
    Session(#[from] execgate_escalate_server::StartError),
    #[error("bad environment pattern {pattern:?}: {reason}")]
    EnvPattern { pattern: String, reason: String },
    #[error("bad variable to set {name:?}: {reason}")]
    EnvSet { name: String, reason: &'static str },
    #[error("requested permissions need an approver: build the session with an ExecPolicy")]
    NoApprover,
    #[error("the approver aborted the command")]
    Aborted,
    #[error(transparent)]
    Grant(#[from] execgate_escalate_server::GrantError),
    #[error("the session has ended")]
    SessionEnded,
    /// The runtime the session started in has shut down: the session's
    /// commands and processes ended with it (probe 224: "the command's
    /// task failed").
    #[error(
        "the runtime the session started in has shut down, and its commands with it; keep \
         that runtime alive and driven while the session is used"
    )]
    RuntimeEnded,
    #[error(
        "this ExecPolicy serves, or has served, another session: its approvals for the \
         session, its approval clock and what its grants may write are that session's; \
         build one per session with ExecPolicy::new (a cloned ShellSessionConfig carries \
         the same one)"
    )]
    PolicyInUse,
    #[error(
        "the command is {len} bytes: the shell gets it as one argument, which Linux limits \
         to 128 KiB; write it to a script file and run that"
    )]
    CommandTooLong { len: usize },
    /// The sessions' directory is there but not this user's alone
    /// ([`sessions_dir_problem`] says why).
    #[error("{0}")]
    UnusableSessionsDir(String),
    /// bubblewrap failed before the sandbox ran anything: `bubblewrap_said`
    /// is its message, or where it is.
    #[error(
        "bubblewrap could not set the sandbox up, so nothing ran ({bubblewrap_said}); if a \
         path it hides was removed or replaced as it started, run the command again; if a path \
         it grants is gone, start a new session"
    )]
    SandboxNotSetUp { bubblewrap_said: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
