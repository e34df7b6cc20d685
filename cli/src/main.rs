//! `execgate`: run shell commands with every program they execute decided
//! by a policy and confined by the sandbox.
//!
//! A thin edge over `execgate-core-bridge`: it parses arguments and the
//! config file, turns errors into messages that say what to do, and maps a
//! command's end to an exit status. It must never run a command outside the
//! sandbox its profile asks for.

// On Windows there is no patched zsh: `windows.rs` is the whole CLI there.
#[cfg(windows)]
mod windows;
#[cfg(windows)]
fn main() -> std::process::ExitCode {
    windows::main()
}

mod arguments;
#[cfg(unix)]
mod audit;
#[cfg(unix)]
mod config;
#[cfg(unix)]
mod doctor;
#[cfg(unix)]
mod ending;
#[cfg(unix)]
mod logging;
#[cfg(unix)]
mod man;
#[cfg(unix)]
mod mcp;
#[cfg(all(unix, feature = "otlp"))]
mod otlp;
mod output;
#[cfg(unix)]
mod policy;
#[cfg(unix)]
mod prompt;
#[cfg(unix)]
mod stderr;
#[cfg(unix)]
mod unrecorded;

#[cfg(unix)]
use std::ffi::OsString;
#[cfg(unix)]
use std::path::PathBuf;
#[cfg(unix)]
use std::process::ExitCode;
#[cfg(unix)]
use std::sync::Arc;

#[cfg(unix)]
use anyhow::{Context, Result};
#[cfg(unix)]
use clap::{Parser, Subcommand};
#[cfg(unix)]
use execgate_core_bridge::server::sandbox::{
    AbsolutePath, Access, AdditionalPermissions, FsEntry, FsTarget, NetworkPolicy,
    PermissionProfile, ResolvedPolicy, SandboxContext,
};
#[cfg(unix)]
use execgate_core_bridge::server::{AuditFailure, Decision, SessionEnd, SessionEvent, Termination};
#[cfg(unix)]
use execgate_core_bridge::{
    ApproveAll, Approver, DenyAll, EnvInherit, EnvPolicy, ExecPolicy, ExecPolicyConfig,
    Interactive, LocatedTools, Metrics, OnNetworkDenial, PromptMarker, RunOptions, ShellSession,
    ShellSessionConfig, SkillRegistry, StartupFiles, Stdio3, Tools, ToolsOrigin, DEFAULT_EXCLUDES,
    SKILL_PERMISSIONS_FILE,
};
#[cfg(unix)]
use std::io::IsTerminal;

#[cfg(unix)]
use crate::config::Config;
#[cfg(unix)]
use crate::ending::{
    EndSignals, JobEvent, JobPlace, TerminalInterrupt, TerminalJob, TerminalState,
};

#[cfg(unix)]
/// Run shell commands with every exec decided by a policy, inside a sandbox.
#[derive(Parser)]
#[command(name = "execgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: logging::LogArgs,
    #[cfg(feature = "otlp")]
    #[command(flatten)]
    otlp: otlp::OtlpArgs,
    /// Send the session's counters to an OTLP/HTTP endpoint: this build
    /// has no OTLP export (cargo build -p execgate-cli --features otlp).
    // Taken only to say how to get it (probe 163: clap's "unexpected
    // argument" said nothing of the build); shown, as completions offer it
    // (probe 219).
    #[cfg(not(feature = "otlp"))]
    #[arg(long, value_name = "URL", global = true)]
    otlp_endpoint: Option<String>,
}

#[cfg(unix)]
#[derive(Subcommand)]
enum Command {
    /// Run a command string in the patched zsh under a session.
    ///
    /// Ctrl-C ends the whole command at once (SIGKILL): run a program you
    /// drive at the terminal (a REPL, a pager) in `execgate shell`, where
    /// Ctrl-C is the program's.
    Run(RunArgs),
    /// Start an interactive patched zsh under a session, in its sandbox.
    Shell(ShellArgs),
    /// Run one program in a sandbox profile (for debugging a profile).
    Sandbox {
        /// Profile name: a preset or one from the config file (default:
        /// the config's `default_profile`, else `workspace-write`, as for
        /// a session).
        #[arg(long)]
        profile: Option<String>,
        /// Working directory (`:cwd` in profiles).
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Config file (its profiles and `[audit] log`). Default:
        /// $XDG_CONFIG_HOME/execgate/config.toml (a missing default file
        /// is fine).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<OsString>,
    },
    /// Read audit logs: a table, or matching records as JSON lines.
    Audit(audit::AuditArgs),
    /// Check command lines against rules files, and lint them.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Show what this machine offers: kernel, Landlock, user namespaces,
    /// bubblewrap, seccomp, the patched zsh.
    Doctor {
        /// The report as one JSON object (with `ready`), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Serve MCP over stdio: exec_command, write_stdin, kill_process and
    /// list_processes in one session (approvals by elicitation).
    Mcp(mcp::McpArgs),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (execgate.1, execgate-run.1, ...) into DIR.
    Man { dir: PathBuf },
}

#[cfg(unix)]
#[derive(clap::Args)]
struct ShellArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Skip your zsh startup files (.zshenv, .zshrc from $ZDOTDIR or
    /// $HOME), which are read by default as `zsh -i` does.
    #[arg(long)]
    no_rcs: bool,
    /// No `[execgate:PROFILE]` on the right of the prompt (or set
    /// EXECGATE_PROMPT_MARKER=0 in your .zshrc).
    #[arg(long)]
    no_prompt_marker: bool,
    /// Print neither the start line nor the summary at exit.
    #[arg(long, short)]
    quiet: bool,
}

#[cfg(unix)]
/// What every session-starting command takes.
#[derive(clap::Args)]
struct SessionArgs {
    /// Profile name: a preset (read-only, workspace-write,
    /// danger-full-access) or one from the config file.
    #[arg(long)]
    profile: Option<String>,
    /// Working directory (`:cwd` in profiles). Default: the current one.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Config file. Default: $XDG_CONFIG_HOME/execgate/config.toml (a
    /// missing default file is fine).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print every decision to stderr.
    #[arg(long, short)]
    verbose: bool,
    /// The audit log. Default: the config's `[audit] log`, else
    /// $XDG_STATE_HOME/execgate/audit.jsonl (or
    /// ~/.local/state/execgate/audit.jsonl).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// A rules file (codex `.rules` syntax); repeat to merge several, in
    /// order, after the config file's. Without rules, everything runs in
    /// place, inside the sandbox.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// A skill directory, or a directory of skills; repeatable.
    #[arg(long = "skills", value_name = "DIR")]
    skills: Vec<PathBuf>,
    /// Who answers approval prompts: `ask` a person (on the terminal, the
    /// default when stdin is one; for `mcp`, through the client's
    /// elicitation, always the default), `deny` everything (the default
    /// otherwise), or `approve` everything once (for tests).
    #[arg(long, value_enum)]
    approval: Option<ApprovalMode>,
    /// Run the shell and escalated commands this much nicer (0-19) than
    /// execgate itself, so that deciding on their execs does not wait behind
    /// them on a busy machine (not across the kernel's per-session
    /// autogroups: see the README).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=19))]
    nice: Option<u8>,
}

#[cfg(unix)]
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ApprovalMode {
    Ask,
    Deny,
    Approve,
}

#[cfg(unix)]
impl SessionArgs {
    /// The session these arguments ask for, whose questions' aborts stop
    /// what `aborts` says. Everything that can fail for a reason the user
    /// must fix fails here, before anything starts.
    fn session_config(
        self,
        aborts: prompt::AbortScope,
    ) -> Result<(ShellSessionConfig, SessionLabels)> {
        let mode = self.approval.unwrap_or(if std::io::stdin().is_terminal() {
            ApprovalMode::Ask
        } else {
            ApprovalMode::Deny
        });
        let freezer = prompt::FreezerSlot::default();
        let approver: Arc<dyn Approver> = match mode {
            ApprovalMode::Ask => Arc::new(prompt::TerminalApprover::new(freezer.clone(), aborts)),
            ApprovalMode::Deny => Arc::new(DenyAll),
            ApprovalMode::Approve => Arc::new(ApproveAll),
        };
        let (config, mut labels) = self.session_config_approved_by(approver)?;
        labels.question_freezer = freezer;
        Ok((config, labels))
    }

    /// [`session_config`](Self::session_config) with `approver` answering.
    fn session_config_approved_by(
        self,
        approver: Arc<dyn Approver>,
    ) -> Result<(ShellSessionConfig, SessionLabels)> {
        let (config, config_file) = Config::load_naming(self.config.as_deref())?;
        let profile_name = self
            .profile
            .or(config.default_profile.clone())
            .unwrap_or_else(|| "workspace-write".into());
        let mut profile = config.profile(&profile_name, config_file.as_deref())?;
        let cwd = current_dir(self.cwd)?;
        let mut config_kept = Vec::new();
        let config_left =
            protect_config(&mut profile, self.config.as_deref(), &cwd, &mut config_kept)?;
        let rule_files: Vec<PathBuf> = config.rules.iter().chain(&self.rules).cloned().collect();
        let rules = policy::load_rules(&rule_files)?;
        let skill_dirs: Vec<PathBuf> = config.skills.iter().chain(&self.skills).cloned().collect();
        let skills = SkillRegistry::load(&skill_dirs).context(
            "the skills cannot be registered; fix or drop them (--skills, or skills in the config)",
        )?;
        warn_if_tmpdir_not_taken(&profile, &cwd);
        warn_if_forbidden_rules_unsandboxed(&profile, &rules);
        warn_if_secrets_pass(&config.env);
        warn_if_grants_name_nothing(&profile, "the profile", &cwd);
        // As `policy lint` does (probe 203: a grant a glob of the profile's
        // own held back went unsaid until the command was refused).
        warn_if_grants_held_back(None, &profile, "the profile", false, &cwd);
        let session_grants = SessionGrants::of(&profile, &profile_name, &cwd);
        let skill_files = skill_files(&skills, &skill_dirs);
        // The session's own profile refuses them as well (review 233).
        let anything_granted = skills
            .skills()
            .iter()
            .any(|skill| skill.permissions.is_some())
            || !rule_profile_names(&rules).is_empty();
        if anything_granted {
            warn_if_grants_reach_user_configuration(
                &profile,
                &format!("profile {profile_name}"),
                &cwd,
            );
        }
        let skills_policy: Vec<PathBuf> = rule_files
            .iter()
            .chain(&skill_dirs)
            .chain(&skill_files)
            .cloned()
            .collect();
        for skill in skills.skills() {
            warn_of_skills_grants(skill, session_grants.as_ref(), &cwd, &skills_policy);
        }
        let later_sessions = default_config_policy_files(self.config.as_deref());
        warn_if_sandbox_writable(
            &profile,
            &cwd,
            rule_files
                .iter()
                .chain(&skill_dirs)
                .chain(&config_left)
                .chain(&later_sessions)
                .chain(&skill_files)
                .map(PathBuf::as_path),
            CHANGES_LATER_POLICY,
        );
        warn_if_sandbox_writable(
            &profile,
            &cwd,
            logging::file().into_iter(),
            "the commands run here could write lines of their own into it; keep the log file \
             outside the writable roots",
        );
        // A rule's profile runs its commands with grants of its own, which
        // may reach the rules and skills (probe 151: one granting the
        // rules' directory let an allowed command rewrite them). The
        // config file is kept read-only, and a grant on it refused
        // (probe 244), already.
        // What the session's profile was warned of above is not again,
        // nor what one rule's profile shares with another (`extends`).
        let mut warned: Vec<FsEntry> = match &profile {
            PermissionProfile::Managed { file_system, .. } => file_system.entries.clone(),
            _ => Vec::new(),
        };
        for name in rule_profile_names(&rules) {
            let Ok(granted) = config.profile(name, config_file.as_deref()) else {
                continue;
            };
            let whose = format!("profile {name}");
            // Probe 160: a write grant that a link (one an earlier sandbox
            // may have made) leads elsewhere was warned of by lint only; so
            // was a grant on a path that does not exist.
            let mut own = granted.clone();
            if let PermissionProfile::Managed { file_system, .. } = &mut own {
                file_system.entries.retain(|entry| !warned.contains(entry));
                warned.extend(file_system.entries.iter().cloned());
            }
            warn_if_grants_name_nothing(&own, &whose, &cwd);
            warn_if_grants_held_back(session_grants.as_ref(), &granted, &whose, false, &cwd);
            warn_if_grants_reach_user_configuration(&own, &whose, &cwd);
            warn_if_sandbox_writable(
                &granted,
                &cwd,
                rule_files
                    .iter()
                    .chain(&skill_dirs)
                    .chain(&skill_files)
                    .map(PathBuf::as_path),
                &format!("the commands a rule runs in the profile {name:?} could change the policy of later sessions; keep policy files outside what it grants"),
            );
        }
        warn_of_startup_files(&profile, &cwd);
        let located = Tools::locate_with_origin()?;
        warn_of_tools_from_other_builds(&located);
        // A probe replaced the execgate its next session ran, from a
        // sandbox that could write the directory it was installed in. (A
        // build tree is a developer's, and said so in the README.)
        if located.origin == ToolsOrigin::Installed {
            let tools = &located.tools;
            let execgate = std::env::current_exe().ok();
            warn_if_sandbox_writable(
                &profile,
                &cwd,
                execgate
                    .iter()
                    .chain([&tools.zsh, &tools.wrapper, &tools.sandbox_helper])
                    .map(PathBuf::as_path),
                "the commands run here could replace what later sessions run outside any \
                 sandbox; install execgate outside the writable roots",
            );
        }
        let tools = located.tools;
        let skill_names: Vec<String> = skills
            .skills()
            .iter()
            .map(|skill| skill.name.clone())
            .collect();
        let policy = ExecPolicy::new(ExecPolicyConfig {
            rules: Arc::new(rules),
            skills,
            profiles: Arc::new(config.profiles),
            approver,
        })?;
        let mut session = ShellSessionConfig::with_exec_policy(&cwd, tools, policy);
        session.profile = profile;
        session.profile_name = profile_name.clone();
        session.env = config.env;
        session.niceness = self.nice.unwrap_or(0);
        session.on_network_denial = config.on_network_denial;
        session.out_of_grants = config_kept
            .into_iter()
            .map(|place| (place, "the config's"))
            .collect();
        let show: fn(&SessionEvent) = if self.verbose {
            show_event
        } else {
            show_refused_escalation
        };
        let left_out_said = std::sync::Mutex::new(LeftOutSaid::default());
        session.events = Some(Arc::new(move |event: &SessionEvent| {
            show(event);
            say_variables_left_out(event, &left_out_said);
        }));
        let log = open_audit_log(
            &session.profile,
            &cwd,
            self.audit_log.or(config.audit.log.clone()),
            &config.audit,
        )?;
        let log_path = log.path().to_path_buf();
        let mut options =
            execgate_audit::RecordOptions::new(config.audit.env_values, &config.audit.redact_args)?;
        options.sync_escalations = config.audit.sync_escalations;
        let audit = execgate_audit::SessionAudit::new(Arc::new(log), options);
        if config.audit.warn_on_failure {
            session.audit_failure = AuditFailure::Warn;
        }
        session.audit = Some(Arc::new(unrecorded::SaysWhenUnrecorded::new(
            audit,
            config.audit.warn_on_failure,
        )));
        let policy_files = rule_files
            .iter()
            .chain(&skill_dirs)
            .chain(&config_left)
            .chain(&later_sessions)
            .chain(&skill_files)
            .cloned()
            .collect();
        let labels = SessionLabels {
            profile: profile_name,
            rules: rule_files,
            policy_files,
            skills: skill_names,
            audit_log: log_path,
            question_freezer: prompt::FreezerSlot::default(),
        };
        Ok((session, labels))
    }
}

/// What the shell's start line names.
#[cfg(unix)]
struct SessionLabels {
    profile: String,
    rules: Vec<PathBuf>,
    /// What later sessions load: the rules, skills and config files.
    policy_files: Vec<PathBuf>,
    /// The skills' names.
    skills: Vec<String>,
    audit_log: PathBuf,
    /// Where the terminal's approver learns how to freeze the session
    /// while it asks (set once the session has started).
    question_freezer: prompt::FreezerSlot,
}

#[cfg(unix)]
impl SessionLabels {
    /// Lets the terminal's approver freeze `session` while it asks.
    fn attach(&self, session: &ShellSession) {
        let _ = self.question_freezer.set(session.question_freezer());
        warn_if_cgroup_refused_by_a_limit();
    }
}

/// Says, once a session has started, that its process has no cgroup for
/// its sessions because a limit refused one: a session weaker than the
/// machine offers. Read after the start, from the attempt the session
/// used (a check of its own could disagree with it).
#[cfg(unix)]
pub(crate) fn warn_if_cgroup_refused_by_a_limit() {
    use execgate_core_bridge::server::{scope_support, ScopeSupport};
    if let ScopeSupport::ProcessGroups { why, limited: true } = scope_support() {
        stderr::line(&format!(
            "execgate: warning: no cgroup for this session ({why}): a process that leaves its \
             process group can outlive execgate if it is killed, and Ctrl-Z cannot stop a \
             command; raise the limit, or set EXECGATE_SCOPE=cgroup to refuse to start instead"
        ));
    }
}

#[cfg(unix)]
#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Ask that this command run with more permissions (TOML: `filesystem`,
    /// `network`, `justification`); it gets what the approver grants.
    #[arg(long, value_name = "FILE")]
    request_permissions: Option<PathBuf>,
    /// The command string; several words are joined with spaces.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

#[cfg(unix)]
fn main() -> ExitCode {
    let code = execgate(arguments::parse::<Cli>());
    // What is still queued for stderr, for as long as stderr takes it.
    stderr::drain();
    if let Some(signal) = ending::ended_by() {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        execgate_core_bridge::server::die_of(signal);
    }
    code
}

/// The command `cli` names. Its lines for stderr go through [`stderr`]:
/// the sandboxed command may have suspended the terminal's output.
#[cfg(unix)]
fn execgate(cli: Cli) -> ExitCode {
    // Nothing execgate was given beyond its standard streams reaches a
    // command (a sandbox gets only what its profile grants).
    if let Err(error) = execgate_core_bridge::server::close_inherited_descriptors_on_exec() {
        stderr::line(&format!(
            "execgate: cannot keep inherited descriptors from the commands: {error}"
        ));
        return ExitCode::from(125);
    }
    // A parent that ignored SIGCHLD passed that on across its exec: every
    // child of ours would be reaped unwaited, and a session refuses to
    // start so (probe 198: `execgate run` hung).
    if let Err(error) = execgate_core_bridge::server::wait_for_children() {
        stderr::line(&format!(
            "execgate: cannot give SIGCHLD its default action: {error}"
        ));
        return ExitCode::from(125);
    }
    if matches!(
        cli.command,
        Command::Run(_) | Command::Shell(_) | Command::Mcp(_)
    ) {
        ending::never_stopped_by_the_terminal();
        if let Err(error) = execgate_core_bridge::server::enough_descriptors() {
            stderr::line(&format!(
                "execgate: {error}, and run again; nothing was run"
            ));
            return ExitCode::from(125);
        }
    }
    #[cfg(not(feature = "otlp"))]
    if cli.otlp_endpoint.is_some() {
        stderr::line(
            "execgate: --otlp-endpoint needs a build with OTLP export: cargo build -p \
             execgate-cli --features otlp; nothing was run",
        );
        return ExitCode::from(125);
    }
    if let Err(error) = logging::init(&cli.log) {
        stderr::line(&format!("execgate: {}", describe(&error)));
        return ExitCode::from(125);
    }
    let result = match cli.command {
        Command::Run(args) => reaping(|| run_in_session(args)),
        Command::Shell(args) => reaping(|| shell(args)),
        Command::Sandbox {
            profile,
            cwd,
            config,
            argv,
        } => sandbox(profile, cwd, config, argv),
        Command::Doctor { json } => doctor::run(json),
        Command::Audit(args) => audit::run(args),
        Command::Policy(command) => policy::run(command),
        Command::Mcp(args) => reaping(|| mcp::serve(args)),
        Command::Completions { shell } => {
            // Made whole first: `generate` panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut arguments::command::<Cli>(),
                "execgate",
                &mut script,
            );
            output::stdout(|out| out.write_all(&script)).map(|()| 0)
        }
        Command::Man { dir } => man::write_pages(arguments::command::<Cli>(), &dir),
    };
    #[cfg(feature = "otlp")]
    if let Some(metrics) = SESSION_METRICS.get() {
        otlp::export_if_configured(&cli.otlp, metrics);
    }
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            stderr::line(&format!("execgate: {}", describe(&error)));
            ExitCode::from(125)
        }
    }
}

/// `error` and its causes for the terminal: see [`causes`].
fn describe(error: &anyhow::Error) -> String {
    // Errors quote files (a rules file's bytes, a config's keys) that may
    // come with a repository.
    output::terminal_safe(&causes(error), output::Lines::Kept)
}

/// `error` and its causes, joined by ": ", each cause left out when the
/// text so far already ends with it (after a ": "): many errors show their
/// source in their own message too, and the reason would be said twice
/// (probe 146: "File not found. (os error 2): File not found. (os error
/// 2)" on Windows).
fn causes(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if text != cause && !text.ends_with(&format!(": {cause}")) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// What shells read at their start in `$ZDOTDIR` or the home directory.
#[cfg(unix)]
const STARTUP_FILES: [&str; 11] = [
    ".zshenv",
    ".zprofile",
    ".zshrc",
    ".zlogin",
    ".zlogout",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".config/fish",
];

/// Warns about policy files the session's sandbox could rewrite, or move
/// away and replace (it can write a directory on the way to them): the
/// next session would load what the sandboxed command wrote.
#[cfg(unix)]
fn warn_if_sandbox_writable<'a>(
    profile: &PermissionProfile,
    cwd: &std::path::Path,
    files: impl Iterator<Item = &'a std::path::Path>,
    consequence: &str,
) -> usize {
    let Some(view) = sandbox_view(profile, cwd) else {
        return 0;
    };
    let mut warnings = 0;
    // Once for a place: a skill inside a writable skills directory is
    // warned about with the directory.
    let mut warned: Vec<std::path::PathBuf> = Vec::new();
    for file in files {
        // A file with another name: one in a writable root writes it too,
        // and execgate cannot find it (probe 151: a config linked into the
        // workspace by its owner was rewritten from the sandbox).
        if has_other_names(file) {
            warnings += 1;
            stderr::line(&format!(
                "execgate: warning: {} has another name (a hard link), which execgate cannot \
                 find: one in a place this session's sandbox can write writes it too, so \
                 {consequence}",
                file.display()
            ));
            continue;
        }
        // A link to what is not there yet, somewhere the sandbox could make
        // it (probe 151: a skill a skills directory linked to was made by a
        // command, and loaded by the next session).
        if let Some(target) = dangling_target(file) {
            if let Some(writable) = writable_on_the_way(&view, &target) {
                warnings += 1;
                stderr::line(&format!(
                    "execgate: warning: {} is a link to {}, which is not there yet and which \
                     this session's sandbox can make (it can write {}), so {consequence}",
                    file.display(),
                    target.display(),
                    writable.display()
                ));
                continue;
            }
        }
        if let Some((link, writable)) = replaceable_link_on_the_way(&view, file) {
            warnings += 1;
            stderr::line(&format!(
                "execgate: warning: {} is reached through the link {}, which this session's \
                 sandbox can replace (it can write {}), so {consequence}",
                file.display(),
                link.display(),
                writable.display()
            ));
            continue;
        }
        let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        if warned.iter().any(|place| path.starts_with(place)) {
            continue;
        }
        if let Some(writable) = writable_on_the_way(&view, &path) {
            warned.push(path.clone());
            let how = if !path.exists() {
                format!(
                    "can be made from this session's sandbox (it can write {})",
                    writable.display()
                )
            } else if writable == path {
                "is writable from this session's sandbox".to_owned()
            } else {
                format!(
                    "can be replaced from this session's sandbox (it can write {})",
                    writable.display()
                )
            };
            warnings += 1;
            stderr::line(&format!(
                "execgate: warning: {} {how}, so {consequence}",
                file.display(),
            ));
        }
    }
    warnings
}

/// Whether the file at `path` (followed, if a link) has another name, a
/// hard link, which execgate cannot find: one may lie where a sandbox
/// writes (probe 151).
#[cfg(unix)]
fn has_other_names(path: &std::path::Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) > 1)
}

/// Where the link `path` leads when that is not there: the link's own
/// target, from its directory (one hop).
#[cfg(unix)]
fn dangling_target(path: &std::path::Path) -> Option<PathBuf> {
    if path.exists() {
        return None;
    }
    let target = std::fs::read_link(path).ok()?;
    let from = std::fs::canonicalize(path.parent()?).ok()?;
    Some(from.join(target))
}

/// The files of the skills in `skill_dirs` a later session loads: each
/// skill as loaded (one a skills directory links to, or whose files are
/// links, may lie elsewhere than the directory named), and each link in a
/// skills directory, dangling ones too (the skill it leads to, once made,
/// is loaded).
#[cfg(unix)]
pub(crate) fn skill_files(skills: &SkillRegistry, skill_dirs: &[PathBuf]) -> Vec<PathBuf> {
    // Its `scripts/` too: a grant on it keeps its scripts in place for
    // good (review 233).
    let loaded = skills.skills().iter().flat_map(|skill| {
        [
            skill.root.clone(),
            skill.root.join("SKILL.md"),
            skill.root.join(SKILL_PERMISSIONS_FILE),
            skill.scripts.clone(),
        ]
    });
    let links = skill_dirs
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_symlink()))
        .map(|entry| entry.path());
    loaded
        .chain(links)
        .filter(|file| std::fs::symlink_metadata(file).is_ok())
        .collect()
}

/// Warns where the user's own shells read their startup files (`ZDOTDIR`,
/// the home, and the files in them) can be written, or made, from the
/// sandbox: a sandbox that writes there plants what they run outside it
/// (a probe's ZDOTDIR in the workspace took a .zshrc line; probe 151: one
/// not made yet was not warned of, nor under `execgate sandbox`).
#[cfg(unix)]
fn warn_of_startup_files(profile: &PermissionProfile, cwd: &std::path::Path) {
    let startup_dirs: Vec<PathBuf> = ["ZDOTDIR", "HOME"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .collect();
    // The files themselves too: a profile may grant one alone.
    let startup_files: Vec<PathBuf> = startup_dirs
        .iter()
        .filter(|dir| dir.is_dir())
        .flat_map(|dir| STARTUP_FILES.iter().map(|name| dir.join(name)))
        .collect();
    warn_if_sandbox_writable(
        profile,
        cwd,
        startup_dirs
            .iter()
            .chain(&startup_files)
            .map(PathBuf::as_path),
        "the commands run here could plant what your own shell runs at its next start, \
         outside any sandbox (.zshrc, .bashrc, .profile); keep ZDOTDIR and your home \
         outside the writable roots",
    );
}

/// Warns about what the profile grants that is not there: a read or write
/// root that does not exist grants nothing (nothing can be mounted on it),
/// and a `unix_sockets` entry with no socket reaches nothing, even once one
/// is made there (a socket is allowed by its identity at the start).
/// Returns how many warnings it gave (`policy lint` counts them).
#[cfg(unix)]
pub(crate) fn warn_if_grants_name_nothing(
    profile: &PermissionProfile,
    whose: &str,
    cwd: &std::path::Path,
) -> usize {
    let mut warnings = warn_if_write_grants_follow_links(profile, whose);
    let Some(view) = sandbox_view(profile, cwd) else {
        return warnings;
    };
    for rule in view.rules() {
        if !rule.exists && rule.access == Access::None {
            warnings += 1;
            stderr::line(&format!(
                "execgate: warning: {whose} hides {}, which does not exist: a file made there \
                 later is not hidden (a relative entry is a path from the config file's \
                 directory){}",
                rule.path.display(),
                glob_hint(&rule.path)
            ));
        }
        if !rule.exists && rule.access != Access::None {
            warnings += 1;
            stderr::line(&format!(
                "execgate: warning: {whose} grants {} access to {}, which does not \
                 exist: nothing is granted there",
                if rule.access == Access::Write {
                    "write"
                } else {
                    "read"
                },
                rule.path.display()
            ));
        }
    }
    warnings += warn_of_links_on_relative_globs(&view, whose);
    for socket in view.network_lists().allowed_unix_sockets() {
        if std::fs::symlink_metadata(socket.as_path()).is_err() {
            warnings += 1;
            stderr::line(&format!(
                "execgate: warning: {whose}'s unix_sockets entry {} names no socket: \
                 nothing is reached there, even once a socket is made there (sockets are \
                 allowed as they are found when the session starts)",
                socket.as_path().display()
            ));
        }
    }
    warnings
}

/// Warns of each relative glob with a `/` whose start, as written under a
/// writable root, passes a link to anywhere but the same name under
/// another writable root (probe 218: with `conf` a link to `/elsewhere`,
/// `"conf/*.key"` did not hide `conf/old.key`): a glob judges the real path
/// a name resolves to, and a relative one applies only under the writable
/// roots. A glob that starts
/// with a wildcard (`**/conf/*.key`) is not looked at. The link is not
/// followed instead: one the sandbox made would then aim later sessions'
/// globs wherever it liked. Returns how many warnings it gave.
#[cfg(unix)]
fn warn_of_links_on_relative_globs(view: &ResolvedPolicy, whose: &str) -> usize {
    let mut warnings = 0;
    let relative = view
        .deny_globs()
        .iter()
        .filter(|glob| !glob.starts_with('/') && glob.contains('/'));
    for glob in relative {
        let literal_start = glob
            .split('/')
            .take_while(|part| !part.contains(['*', '?', '[', '{']));
        for root in view.relative_glob_roots() {
            let mut path = root.clone();
            let mut written = PathBuf::new();
            // Where it leads, the glob still applies only if that is the
            // same name under another writable root (review 220: warned of
            // where the file was hidden; review 222: not warned of a link
            // into the same root, where nothing was).
            let misses = |link: &std::path::Path, written: &std::path::Path| {
                std::fs::canonicalize(link).is_ok_and(|real| {
                    !view
                        .relative_glob_roots()
                        .iter()
                        .any(|other| other.join(written) == real)
                })
            };
            let link = literal_start.clone().find_map(|part| {
                path.push(part);
                written.push(part);
                std::fs::symlink_metadata(&path)
                    .is_ok_and(|meta| meta.is_symlink() && misses(&path, &written))
                    .then(|| path.clone())
            });
            if let Some(link) = link {
                warnings += 1;
                stderr::line(&format!(
                    "execgate: warning: {whose}'s glob {glob} does not reach through {}, a \
                     link: a glob judges where a name really leads, and a relative one looks \
                     only under the writable roots; hide what the link leads to by its own \
                     path or an absolute glob",
                    link.display()
                ));
            }
        }
    }
    warnings
}

/// The profiles the rules run commands in (`execution = "name"`), each
/// once.
#[cfg(unix)]
pub(crate) fn rule_profile_names(rules: &execgate_core_bridge::rules::RuleSet) -> Vec<&str> {
    let mut names: Vec<&str> = rules
        .rules()
        .filter_map(|rule| match &rule.execution {
            Some(execgate_core_bridge::rules::RuleExecution::Profile(name)) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The session's profile that rules' profiles and skills add their grants
/// to, with its name, resolved once for all of them (a resolution walks
/// the writable roots for the deny globs).
#[cfg(unix)]
pub(crate) struct SessionGrants<'a> {
    profile: &'a PermissionProfile,
    view: ResolvedPolicy,
    name: &'a str,
}

#[cfg(unix)]
impl<'a> SessionGrants<'a> {
    /// `None` for a profile that is not resolved (no sandbox).
    pub(crate) fn of(
        profile: &'a PermissionProfile,
        name: &'a str,
        cwd: &std::path::Path,
    ) -> Option<SessionGrants<'a>> {
        Some(SessionGrants {
            profile,
            view: sandbox_view(profile, cwd)?,
            name,
        })
    }
}

/// Warns when `extra` gives the host's network to commands of a session
/// whose network is `limited` (probe 162): the host's network wins the
/// merge, so they connect directly, past the proxy and all it decides (the
/// `domains` deny entries, `forbidden` network rules, a person's answers),
/// and leave no network records. Returns how many warnings it gave.
#[cfg(unix)]
fn warn_if_network_bypassed(
    session: Option<&SessionGrants<'_>>,
    extra: &PermissionProfile,
    whose: &str,
) -> usize {
    let network = |profile: &PermissionProfile| match profile {
        PermissionProfile::Managed { network, .. } | PermissionProfile::External { network } => {
            Some(*network)
        }
        _ => None,
    };
    let Some(session) = session else {
        return 0;
    };
    if network(session.profile) != Some(NetworkPolicy::Limited)
        || network(extra) != Some(NetworkPolicy::Enabled)
    {
        return 0;
    }
    stderr::line(&format!(
        "execgate: warning: {whose} enables the network, so the commands it runs connect \
         directly, past this session's limited network ({}): its domains lists, network \
         rules and questions do not apply to them, and their connections are not recorded; \
         grant them domains in a limited network instead",
        session.name
    ));
    1
}

/// Warns of the hosts `extra` allows that the session's profile denies
/// (probe 235: a request's allow entry was shown, granted and recorded,
/// and the connection refused): a deny entry holds over every allow entry
/// of a sandbox with extra grants. Judged for entries that name one host,
/// and for an allow entry written as a deny entry of the session's is.
/// Returns how many warnings it gave.
#[cfg(unix)]
fn warn_if_domains_held_back(
    session: Option<&SessionGrants<'_>>,
    extra: &PermissionProfile,
    whose: &str,
) -> usize {
    use execgate_network_proxy::{DomainPattern, ListDecision};
    let (
        Some(session),
        PermissionProfile::Managed {
            network_lists: wanted,
            ..
        },
    ) = (session, extra)
    else {
        return 0;
    };
    let PermissionProfile::Managed {
        network_lists: held,
        ..
    } = session.profile
    else {
        return 0;
    };
    let denied_by_session = |pattern: &DomainPattern| {
        held.domains
            .entries()
            .any(|(denied, decision)| decision == ListDecision::Deny && denied == pattern)
            || matches!(pattern, DomainPattern::Exact(host)
                if held.domains.decide(host).is_some_and(|found| found.decision == ListDecision::Deny))
    };
    let mut warnings = 0;
    for (pattern, decision) in wanted.domains.entries() {
        if decision != ListDecision::Allow || !denied_by_session(pattern) {
            continue;
        }
        warnings += 1;
        stderr::line(&format!(
            "execgate: warning: {whose} allows {pattern}, which the profile {} denies: a deny \
             entry holds over every allow entry, so nothing is granted there",
            session.name
        ));
    }
    warnings
}

/// Warns of what `extra` grants that a sandbox with it does not get
/// (probe 154): a path a `none` entry hides (one at the same path holds
/// over a grant there) or that a deny glob matches (a glob holds over
/// every grant). Added to `session`'s profile, the session's denials hold
/// too: an escalation keeps them. What `extra` holds back by itself is
/// left out with `own_warned_apart` (`policy lint` warns of each profile
/// alone too). Returns how many warnings it gave.
#[cfg(unix)]
pub(crate) fn warn_if_grants_held_back(
    session: Option<&SessionGrants<'_>>,
    extra: &PermissionProfile,
    whose: &str,
    own_warned_apart: bool,
    cwd: &std::path::Path,
) -> usize {
    let network_warnings = warn_if_network_bypassed(session, extra, whose)
        + warn_if_domains_held_back(session, extra, whose);
    let PermissionProfile::Managed { file_system, .. } = extra else {
        return network_warnings;
    };
    let Some(own) = sandbox_view(extra, cwd) else {
        return network_warnings;
    };
    let merged = session.and_then(|session| {
        let merged = sandbox_view(&session.profile.merged_with(extra), cwd)?;
        Some((merged, &session.view, session.name))
    });
    let mut warnings = network_warnings;
    for entry in &file_system.entries {
        let FsTarget::Path(path) = &entry.target else {
            continue;
        };
        if entry.access == Access::None {
            continue;
        }
        // As the sandbox resolves it; one that is not there is warned of
        // apart (`warn_if_grants_name_nothing`).
        let Ok(real) = std::fs::canonicalize(path.as_path()) else {
            continue;
        };
        let why = if own.access(&real) == Access::None {
            if own_warned_apart {
                continue;
            }
            held_back_by(&own, &real, "of its own", "an entry of its own")
        } else {
            match &merged {
                Some((merged, session, name)) if merged.access(&real) == Access::None => {
                    let profile = format!("the profile {name}");
                    held_back_by(session, &real, &format!("of {profile}"), &profile)
                }
                _ => continue,
            }
        };
        let access = if entry.access == Access::Write {
            "write"
        } else {
            "read"
        };
        warnings += 1;
        stderr::line(&format!(
            "execgate: warning: {whose} grants {access} access to {}, {why}",
            path.as_path().display()
        ));
    }
    warnings
}

/// Why `view` shows nothing at `path`: one of its globs (`globs_of` names
/// whose), or an entry hiding it (`hider`).
#[cfg(unix)]
fn held_back_by(
    view: &ResolvedPolicy,
    path: &std::path::Path,
    globs_of: &str,
    hider: &str,
) -> String {
    if view.glob_denies(path) {
        format!(
            "which a deny glob {globs_of} matches: a deny glob holds over every grant, on the \
             files below a directory it matches too, so nothing is granted there"
        )
    } else {
        format!(
            "which {hider} hides: a sandbox with these grants keeps that denial, so nothing \
             is granted there (grant a path below it, or hide less)"
        )
    }
}

/// Warns of a write grant whose path leads elsewhere through a link (it,
/// or a directory on its way): the grant follows the link as it is when
/// each session starts, and a link where a sandbox could write may have
/// been put there by an earlier one (probe 131: `cache -> secrets`).
#[cfg(unix)]
fn warn_if_write_grants_follow_links(profile: &PermissionProfile, whose: &str) -> usize {
    let mut warnings = 0;
    let PermissionProfile::Managed { file_system, .. } = profile else {
        return warnings;
    };
    for entry in &file_system.entries {
        let FsTarget::Path(path) = &entry.target else {
            continue;
        };
        if entry.access != Access::Write {
            continue;
        }
        let Ok(real) = std::fs::canonicalize(path.as_path()) else {
            continue;
        };
        if real != path.as_path() {
            warnings += 1;
            warn_of_write_grant_through_link(whose, path.as_path(), &real);
        }
    }
    warnings
}

/// Warns of a skill's grants as of any profile's, of those a link led
/// elsewhere when it was read, of its scripts that never get them, and of
/// grants that reach `policy_files`, which later sessions load (probe 232:
/// a skill's grant over the rules rewrote them, unwarned, as a rule's
/// profile's would), or where programs read per-user configuration; as a
/// session starts and for `policy lint`, which counts what it returns.
#[cfg(unix)]
pub(crate) fn warn_of_skills_grants(
    skill: &execgate_core_bridge::Skill,
    session: Option<&SessionGrants<'_>>,
    cwd: &std::path::Path,
    policy_files: &[PathBuf],
) -> usize {
    let Some(grants) = &skill.permissions else {
        return 0;
    };
    let whose = format!("skill {}", skill.name);
    // Probe 181: read resolved, so the check on the grants themselves
    // could never see the link.
    for (declared, real) in &skill.write_grants_through_links {
        warn_of_write_grant_through_link(&whose, declared, real);
    }
    let reaching_policy = format!(
        "the scripts of skill {:?}, which are granted it, could change the policy of later \
         sessions; keep policy files outside what a skill grants",
        skill.name
    );
    skill.write_grants_through_links.len()
        + warn_if_grants_name_nothing(grants, &whose, cwd)
        + warn_if_grants_held_back(session, grants, &whose, false, cwd)
        + warn_of_scripts_never_granted(skill)
        + warn_if_sandbox_writable(
            grants,
            cwd,
            policy_files.iter().map(PathBuf::as_path),
            &reaching_policy,
        )
        + warn_if_grants_reach_user_configuration(grants, &whose, cwd)
}

/// Warns of a skill's scripts that never get its grants, found when it
/// loads rather than at each run (probe 232): one with other names (hard
/// links: `cp -al`, a backup's `--link-dest`), which every session refuses
/// its grants since the sandbox might write it through another, and one
/// with a `#!` line but no execute permission, which the shell cannot run
/// (`sh script` runs `sh`, which gets no grants). Returns how many.
#[cfg(unix)]
fn warn_of_scripts_never_granted(skill: &execgate_core_bridge::Skill) -> usize {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut warnings = 0;
    let mut pending = vec![(skill.scripts.clone(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Not through links: a link leading out of `scripts/` keeps a
            // skill with permissions from loading.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() && depth < 8 {
                pending.push((path, depth + 1));
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            // A helper module a script reads is not run: only what is.
            let executable = meta.permissions().mode() & 0o111 != 0;
            if !executable && !starts_with_shebang(&path) {
                continue;
            }
            let why = if meta.nlink() > 1 {
                format!(
                    "has {} names (hard links), so it never gets the skill's grants (the \
                     sandbox might write it through another); copy it so that it has one",
                    meta.nlink()
                )
            } else if !executable {
                "has a #! line but no execute permission, so the shell cannot run it, and run \
                 by its interpreter it gets none of the skill's grants; make it executable"
                    .to_owned()
            } else {
                continue;
            };
            warnings += 1;
            stderr::line(&format!(
                "execgate: warning: skill {}: its script {} {why}",
                skill.name,
                path.display()
            ));
        }
    }
    warnings
}

/// Whether the file at `path` starts with `#!`.
#[cfg(unix)]
fn starts_with_shebang(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut start = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut start))
        .is_ok_and(|()| &start == b"#!")
}

/// Warns where `grants` (`whose`) can write where programs read per-user
/// configuration, which keeps every command with grants in a session that
/// knows of them in place (probe 232: one skill's cache under `~/.cache`
/// took every skill's grants away, unsaid); returns how many warnings it
/// gave.
#[cfg(unix)]
pub(crate) fn warn_if_grants_reach_user_configuration(
    grants: &PermissionProfile,
    whose: &str,
    cwd: &std::path::Path,
) -> usize {
    let roots = write_roots(grants, cwd);
    let Some(why) = execgate_core_bridge::grant_reaching_user_configuration(&roots, cwd) else {
        return 0;
    };
    stderr::line(&format!(
        "execgate: warning: {whose}: {why}: so, in a session that knows of this grant, no \
         command with grants (a skill's script, a rule's profile) leaves the sandbox, and each \
         runs in place without them; grant a place outside the home's configuration and \
         caches"
    ));
    1
}

/// Warns of what a permissions request grants, as of a skill's or a
/// profile's grants, and of what only a request's can do: a session does
/// not know of it the next time, so what the command writes where later
/// sessions, programs escalated out of them or the user's own shell and
/// git read is trusted then (probe 235: a granted `~/.config` took a git
/// `core.fsmonitor` that the next session's escalated git ran on the
/// host). Said before the question, which lists the grants alone.
#[cfg(unix)]
fn warn_of_requested_grants(
    requested: &AdditionalPermissions,
    session: &ShellSessionConfig,
    labels: &SessionLabels,
) {
    const WHOSE: &str = "the permissions request";
    let (grants, cwd) = (&requested.profile, session.cwd.as_path());
    warn_if_grants_name_nothing(grants, WHOSE, cwd);
    for (declared, real) in &requested.write_grants_through_links {
        warn_of_write_grant_through_link(WHOSE, declared, real);
    }
    let session_grants = SessionGrants::of(&session.profile, &session.profile_name, cwd);
    warn_if_grants_held_back(session_grants.as_ref(), grants, WHOSE, false, cwd);
    let roots = write_roots(grants, cwd);
    // What the session's own sandbox reaches was said as it started (a
    // request for the network alone said its hard links again).
    if roots.is_empty() {
        return;
    }
    warn_if_sandbox_writable(
        grants,
        cwd,
        labels.policy_files.iter().map(PathBuf::as_path),
        "the command, with the permissions it requests, could change the policy of later \
         sessions; keep policy files outside what a request asks for",
    );
    warn_of_startup_files(grants, cwd);
    warn_of_grants_on_path(&roots, WHOSE, std::env::var_os("PATH"));
    if let Some(why) = execgate_core_bridge::grant_reaching_user_configuration(&roots, cwd) {
        stderr::line(&format!(
            "execgate: warning: {WHOSE}: {why}: what the command writes there, programs \
             escalated out of the sandbox read in later sessions, which do not know of this \
             grant (git's hooks and fsmonitor, say); grant a place outside the home's \
             configuration and caches"
        ));
    }
    let repository = cwd
        .ancestors()
        .map(|dir| dir.join(".git"))
        .find(|git| git.exists());
    if let Some(git) = repository.and_then(|git| std::fs::canonicalize(git).ok()) {
        for root in roots.iter().filter(|root| root.starts_with(&git)) {
            stderr::line(&format!(
                "execgate: warning: {WHOSE} grants write access to {}, in the repository's \
                 {}: what the command writes there (hooks, configuration) runs when git is used \
                 outside the sandbox; grant a place outside .git",
                root.display(),
                git.display()
            ));
        }
        // `.git` is kept read-only directly below a writable root only, the
        // session's or the request's (probe 244: a grant two levels up, in
        // a read-only session, let a hook be planted; review 245).
        let kept = roots
            .iter()
            .chain(&write_roots(&session.profile, cwd))
            .any(|root| git.parent() == Some(root.as_path()));
        let above = roots
            .iter()
            .filter(|root| git.starts_with(root) && git.parent() != Some(root.as_path()));
        for root in above.filter(|_| !kept) {
            stderr::line(&format!(
                "execgate: warning: {WHOSE} grants write access to {}, above the repository's \
                 {}, which is kept read-only only directly below a writable root: what the \
                 command writes there (hooks, configuration) runs when git is used outside the \
                 sandbox; grant the repository's own directory, or a place inside it",
                root.display(),
                git.display()
            ));
        }
    }
}

/// Warns of write roots that reach a directory of `path` (`PATH`): the
/// directory itself, one above it, or a program in it. A session that
/// knows of a grant leaves what it writes out of its escalations' `PATH`,
/// but later sessions and the user's own shell do not know of a
/// request's (probe 244: a granted `/usr/local/bin` took a program that
/// they would run outside any sandbox). Relative entries name the shell's
/// working directory, whatever it is then, and are not judged.
#[cfg(unix)]
fn warn_of_grants_on_path(roots: &[PathBuf], whose: &str, path: Option<OsString>) {
    let Some(path) = path else {
        return;
    };
    let directories: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|directory| directory.is_absolute())
        .map(|directory| std::fs::canonicalize(&directory).unwrap_or(directory))
        .collect();
    for root in roots {
        // The directory, one above it, or a program in it: the shell does
        // not look in a directory below one on `PATH`.
        let reached = directories.iter().find(|directory| {
            directory.starts_with(root)
                || (root.parent() == Some(directory.as_path()) && !root.is_dir())
        });
        if let Some(directory) = reached {
            let relation = match () {
                _ if directory == root => String::new(),
                _ if directory.starts_with(root) => {
                    format!(", which holds {}", directory.display())
                }
                _ => format!(", in {}", directory.display()),
            };
            stderr::line(&format!(
                "execgate: warning: {whose} grants write access to {}{relation}, a directory on \
                 PATH: a program the command puts or changes there runs outside any sandbox in \
                 your own shell, and in later sessions, which do not know of this grant; grant \
                 a place off PATH",
                root.display(),
            ));
        }
    }
}

/// The roots `grants` let a sandbox write, as resolved from `cwd`; none
/// for grants that do not resolve.
#[cfg(unix)]
fn write_roots(grants: &PermissionProfile, cwd: &std::path::Path) -> Vec<PathBuf> {
    sandbox_view(grants, cwd)
        .map(|view| {
            view.rules()
                .iter()
                .filter(|rule| rule.access == Access::Write)
                .map(|rule| rule.path.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The warning of [`warn_if_write_grants_follow_links`], for a grant
/// already resolved when it was read (a skill's), as `declared` and `real`.
#[cfg(unix)]
fn warn_of_write_grant_through_link(
    whose: &str,
    declared: &std::path::Path,
    real: &std::path::Path,
) {
    stderr::line(&format!(
        "execgate: warning: {whose} grants write access to {}, which leads to {} through a \
         link: the grant goes where the link leads when the session starts, and a link in a \
         place a sandbox can write may have been made by an earlier one; name {} if that is \
         what is meant",
        declared.display(),
        real.display(),
        real.display()
    ));
}

#[cfg(unix)]
/// How to hide what `path` names once it exists, and its name wherever
/// it appears under the writable roots: as a glob, which the sandbox's
/// supervisor judges at every open (a path is hidden only as it is when
/// the sandbox starts). Empty when its name has no plain first character
/// to write as a one-character class.
fn glob_hint(path: &std::path::Path) -> String {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return String::new();
    };
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    if !(first.is_ascii_alphanumeric() || first == '.' || first == '_') {
        return String::new();
    }
    let glob = format!("[{first}]{}", chars.as_str());
    let parent = path.parent().unwrap_or(std::path::Path::new("/"));
    format!(
        "; a glob covers files made later: \"{}\" for this one, \"{glob}\" for the name \
         under every writable root",
        parent.join(&glob).display()
    )
}

/// Warns of tools an override (`EXECGATE_SANDBOX_HELPER`, ...) takes from
/// another build of execgate: they run, as comparing builds needs, but
/// parts of two builds may not work together.
#[cfg(unix)]
fn warn_of_tools_from_other_builds(located: &LocatedTools) {
    for (variable, path) in &located.from_other_builds {
        stderr::line(&format!(
            "execgate: warning: {variable} names {}, which another build of execgate made; \
             parts of two builds may not work together (unset it to use this build's)",
            path.display()
        ));
    }
}

/// Warns when `TMPDIR` is not the temporary directory the sandbox writes
/// (its name does not look like one, see the sandbox's `:tmpdir`): the
/// shell gets the one it writes instead.
#[cfg(unix)]
fn warn_if_tmpdir_not_taken(profile: &PermissionProfile, cwd: &std::path::Path) {
    let Some(asked) = std::env::var_os("TMPDIR") else {
        return;
    };
    if !matches!(profile, PermissionProfile::Managed { .. }) {
        return;
    }
    let taken = SandboxContext::new(cwd).tmpdir;
    if std::fs::canonicalize(&asked).ok().as_ref() != Some(&taken) {
        stderr::line(&format!(
            "execgate: warning: TMPDIR={} is not the sandbox's temporary directory: only an \
             existing directory named like one (tmp, temp, tmp.*, tmp-*, tmp_*, *-tmp, \
             *_tmp, *.tmp) is, so that TMPDIR=$HOME cannot open the home; the shell gets \
             TMPDIR={}",
            std::path::Path::new(&asked).display(),
            taken.display()
        ));
    }
}

/// Warns when the session has `forbidden` rules and no sandbox: a rule
/// stops what the shell itself executes, and a program run in place can
/// start the forbidden one without asking (`env`, `xargs`, an interpreter,
/// a `#!` line, a copy). In a sandbox, what gets past the rules stays in
/// it; without one, nothing holds it.
#[cfg(unix)]
fn warn_if_forbidden_rules_unsandboxed(
    profile: &PermissionProfile,
    rules: &execgate_core_bridge::rules::RuleSet,
) {
    use execgate_core_bridge::server::sandbox::SpecialRoot;
    let forbids = rules
        .rules()
        .any(|rule| rule.decision == execgate_core_bridge::rules::RuleDecision::Forbidden);
    // A sandbox that can write `/` holds nothing either (review 127).
    let holds_nothing = match profile {
        PermissionProfile::Disabled => true,
        PermissionProfile::Managed { file_system, .. } => file_system.entries.iter().any(|entry| {
            entry.access == Access::Write
                && match &entry.target {
                    FsTarget::Special(SpecialRoot::Root) => true,
                    // Through a link to `/` too (review 129).
                    FsTarget::Path(path) => std::fs::canonicalize(path.as_path())
                        .is_ok_and(|path| path == std::path::Path::new("/")),
                    FsTarget::Special(_) | FsTarget::DenyGlob(_) => false,
                }
        }),
        PermissionProfile::External { .. } => false,
    };
    if forbids && holds_nothing {
        stderr::line(
            "execgate: warning: this session's sandbox holds nothing (none, or one that can \
             write /), so forbidden rules stop only what the shell itself executes: a program \
             it runs in place (env, xargs, an interpreter, a script's #! line, a copy of the \
             program) can start a forbidden one without asking; keep a sandbox where the rules \
             must hold",
        );
    }
}

/// Warns when the config's `[env] exclude` lets credentials of the
/// caller's environment reach the commands: `exclude` replaces the
/// built-in list, and one of its own is easily taken for "these too". An
/// empty list is warned of whatever the environment holds now, unless
/// `inherit` or `include_only` keep such names out anyway; a list of its
/// own, by the variables that pass because of it (names only), if any do
/// and no `include_only` pattern names them (`AWS_*` is a choice, `*` is
/// not).
#[cfg(unix)]
fn warn_if_secrets_pass(env: &EnvPolicy) {
    let everything = env.inherit == EnvInherit::All && env.include_only.is_empty();
    if env.exclude.is_empty() && everything {
        stderr::line(&format!(
            "execgate: warning: the config's [env] exclude is empty: no variable is dropped, \
             so credentials in your environment reach the commands; leave exclude out for the \
             built-in patterns ({}), or list the ones to drop",
            DEFAULT_EXCLUDES.join(", ")
        ));
        return;
    }
    // A pattern that does not build fails the session's start itself.
    let Ok(passed) = env.credentials_passed(std::env::vars_os()) else {
        return;
    };
    if passed.is_empty() {
        return;
    }
    let names: Vec<_> = passed.iter().map(|name| name.to_string_lossy()).collect();
    let verb = if names.len() == 1 { "reaches" } else { "reach" };
    if env.include_only.is_empty() {
        stderr::line(&format!(
            "execgate: warning: the config's [env] exclude replaces the built-in patterns ({}) \
             with its own list, so {} {verb} the commands; add the patterns to exclude, or \
             leave it out",
            DEFAULT_EXCLUDES.join(", "),
            names.join(", ")
        ));
    } else {
        stderr::line(&format!(
            "execgate: warning: the config's [env] include_only passes {} by a pattern that \
             names no variable, and exclude does not drop {}; name the ones to pass in \
             include_only, or add the built-in patterns ({}) to exclude",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" },
            DEFAULT_EXCLUDES.join(", ")
        ));
    }
}

/// Warns when the session's sandbox can write the audit log's directory
/// (it holds the working directory, so it is not hidden) or a directory
/// on the way to it: commands run here could then forge records, or move
/// the log away and put another in its place, where later sessions would
/// write and `execgate audit` read. This session keeps to the log it
/// opened (the audit crate holds its directory open).
/// Warns when users other than this one (and root) can change the audit
/// log: its file, or its directory (renaming or removing the file, or
/// planting the next one a rotation makes), or a directory above (moving
/// the log's away), by its mode or its owner. A
/// sticky directory (`/tmp`) lets them do neither to a file that is not
/// theirs.
#[cfg(unix)]
fn warn_if_log_open_to_others(log: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let open_to_others = |path: &std::path::Path, kind: &str| {
        let is_dir = kind != "the file";
        let meta = std::fs::metadata(path).ok()?;
        if meta.uid() != me && meta.uid() != 0 {
            return Some(format!(
                "{kind} {} belongs to uid {}",
                path.display(),
                meta.uid()
            ));
        }
        let sticky = is_dir && meta.mode() & 0o1000 != 0;
        (meta.mode() & 0o022 != 0 && !sticky).then(|| {
            format!(
                "{kind} {} is mode {:04o}",
                path.display(),
                meta.mode() & 0o7777
            )
        })
    };
    // A directory above it open to others lets them move its own away
    // and put another in its place (probe 246).
    let why = open_to_others(log, "the file").or_else(|| {
        let dir = std::fs::canonicalize(log.parent()?).ok()?;
        open_to_others(&dir, "its directory").or_else(|| {
            dir.ancestors()
                .skip(1)
                .find_map(|above| open_to_others(above, "the directory above it"))
        })
    });
    if let Some(why) = why {
        stderr::line(&format!(
            "execgate: warning: the audit log {} can be changed by other users ({why}): they \
             could edit, remove or replace its records; keep it yours and owner-only \
             (`chmod 600`), in a directory only you can write",
            log.display()
        ));
        return;
    }
    // Probe 166: kept as they were, open to others.
    if let Ok(meta) = std::fs::metadata(log) {
        if meta.mode() & 0o044 != 0 {
            stderr::line(&format!(
                "execgate: warning: the audit log {} can be read by other users (mode {:04o}): \
                 they can read every record (arguments, directories, the environment's names); \
                 `chmod 600` it",
                log.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    let lock = execgate_audit::lock_path(log);
    if let Ok(meta) = std::fs::metadata(&lock) {
        if meta.uid() != me && meta.uid() != 0 {
            stderr::line(&format!(
                "execgate: warning: the audit log's lock file {} belongs to uid {}, who can \
                 hold the lock and so stop every session that shares the log; remove it (the \
                 next session makes its own)",
                lock.display(),
                meta.uid()
            ));
        }
    }
}

#[cfg(unix)]
fn warn_if_log_reachable(
    profile: &PermissionProfile,
    cwd: &std::path::Path,
    log: &std::path::Path,
) {
    let (Some(view), Some(dir)) = (sandbox_view(profile, cwd), log.parent()) else {
        return;
    };
    if has_other_names(log) {
        // Hidden by its name only (probe 151: one linked into the
        // workspace was read and appended to from the sandbox).
        stderr::line(&format!(
            "execgate: warning: the audit log {} has another name (a hard link), which \
             execgate cannot find or hide: by one in this session's sandbox's reach, the \
             commands run here could read and forge records; keep the log's only name",
            log.display()
        ));
        return;
    }
    // A link at the log's own name is refused when it is opened (probe
    // 166: warned of as followed, then refused as never followed).
    let on_the_way = replaceable_link_on_the_way(&view, log).filter(|(link, _)| link != log);
    if let Some((link, writable)) = on_the_way {
        stderr::line(&format!(
            "execgate: warning: the audit log {} is reached through the link {}, which this \
             session's sandbox can replace (it can write {}): later sessions would write, and \
             `execgate audit` read, wherever it points then; name the log by its real path \
             (--audit-log, or [audit] log in the config)",
            log.display(),
            link.display(),
            writable.display()
        ));
        return;
    }
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    // A directory that is hidden (see `hide_audit_directory`) is out of
    // reach itself, but not its place in its parent.
    let first = if cwd.starts_with(&dir) {
        Some(dir.as_path())
    } else {
        dir.parent()
    };
    let Some(writable) = first.and_then(|first| writable_on_the_way(&view, first)) else {
        return;
    };
    stderr::line(&format!(
        "execgate: warning: the audit log {} is in reach of this session's sandbox: it can \
         write {}, so the commands run here could forge records, or move the log away and \
         put another in its place for later sessions; keep the log outside the writable \
         roots (--audit-log, or [audit] log in the config)",
        log.display(),
        writable.display()
    ));
}

/// What the sandbox of a managed profile may do; `None` for others.
#[cfg(unix)]
fn sandbox_view(profile: &PermissionProfile, cwd: &std::path::Path) -> Option<ResolvedPolicy> {
    if !matches!(profile, PermissionProfile::Managed { .. }) {
        return None;
    }
    ResolvedPolicy::resolve(profile, &SandboxContext::new(cwd)).ok()
}

/// `path` itself, or the nearest directory on the way to it, if the
/// sandbox may write it, short of a place that [`stays`] (probe 235: a
/// skills directory in the working directory's `.agents`, kept read-only
/// there, was said to be replaceable).
#[cfg(unix)]
fn writable_on_the_way<'a>(
    view: &ResolvedPolicy,
    path: &'a std::path::Path,
) -> Option<&'a std::path::Path> {
    path.ancestors()
        .take_while(|place| !stays(view, place))
        .find(|place| view.may_write(place))
}

/// Whether `place` has a rule of its own that the sandbox cannot write: a
/// mount point there, which cannot be replaced; nor can a directory
/// holding it be moved, as the sandbox's supervisor refuses (EBUSY,
/// `refuse_moving_anchors`) what the kernel allows: what lies inside it
/// stays, whatever lies above.
#[cfg(unix)]
fn stays(view: &ResolvedPolicy, place: &std::path::Path) -> bool {
    view.rules()
        .iter()
        .any(|rule| rule.path == place && rule.exists && rule.access != Access::Write)
}

/// A symbolic link on the way to `path` as it is written (absolute) that
/// the sandbox could replace, and the place it can write to do so: a later
/// session, or `execgate audit`, follows the path as written, wherever the
/// sandbox points it (a probe swapped such a link to the audit log's
/// directory for its own, and the reviewer read forged records).
/// Every link followed counts, those a link's target leads through too
/// (probe 147: a config file linked to a link in the workspace was kept
/// read-only at its end, and the sandbox re-pointed the link between).
#[cfg(unix)]
fn replaceable_link_on_the_way(
    view: &ResolvedPolicy,
    path: &std::path::Path,
) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let path = std::path::absolute(path).ok()?;
    links_followed(&path).into_iter().find_map(|link| {
        // A link inside a place that stays stays.
        let writable = writable_on_the_way(view, link.parent()?)?;
        Some((link.clone(), writable.to_path_buf()))
    })
}

/// The symbolic links resolving the absolute `path` follows, in order, each
/// named in its directory as resolved (no link in it), as the kernel
/// follows them: a link's target is resolved from the link's directory,
/// `..` after a link from where the link led. As many as the kernel
/// follows (40); resolution stops where a component is missing.
#[cfg(unix)]
fn links_followed(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    const MOST_LINKS: usize = 40;
    let mut links = Vec::new();
    let mut resolved = PathBuf::from("/");
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    let push_reversed = |pending: &mut Vec<std::ffi::OsString>, path: &std::path::Path| {
        let names = path.components().filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        });
        let names: Vec<_> = names.collect();
        pending.extend(names.into_iter().rev());
    };
    push_reversed(&mut pending, path);
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let place = resolved.join(&name);
        match std::fs::read_link(&place) {
            Ok(target) if links.len() < MOST_LINKS => {
                links.push(place);
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                push_reversed(&mut pending, &target);
            }
            Ok(_) => break,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
            Err(_) => resolved = place,
        }
    }
    links
}

/// Keeps the config file read-only in every sandbox of the session: it
/// chooses the profile, the rules and the audit log of every later session
/// (a probe wrote `default_profile = "danger-full-access"` into it from a
/// sandbox, and the next session ran unsandboxed). The default one's
/// directory, `execgate/` in the config home, is kept whole, and made
/// first when the sandbox could otherwise make it and a config in it; a
/// file named with `--config`, only itself, beside the default one's.
/// Returns those it could not keep so, to be warned of: the default one
/// even beside `--config`, as it chooses the policy of every later session
/// started without it (a review: a link on its way was re-pointed unwarned).
#[cfg(unix)]
fn protect_config(
    profile: &mut PermissionProfile,
    explicit: Option<&std::path::Path>,
    cwd: &std::path::Path,
    kept: &mut Vec<PathBuf>,
) -> Result<Vec<PathBuf>> {
    let mut left = Vec::new();
    if !keep_config(profile, None, cwd, kept)? {
        left.extend(config::default_path());
    }
    if let Some(file) = explicit {
        if !keep_config(profile, Some(file), cwd, kept)? {
            left.push(file.to_path_buf());
        }
    }
    Ok(left)
}

/// Beside `--config` (`explicit`), the rules files and skill directories
/// the default config names: every later session started without it
/// loads them (a review: they were left writable unwarned). None without
/// `--config` (the session's own are those), or when the default config
/// cannot be read (its session would refuse to start).
#[cfg(unix)]
fn default_config_policy_files(explicit: Option<&std::path::Path>) -> Vec<PathBuf> {
    match explicit.map(|_| Config::load(None)) {
        Some(Ok(config)) => config.rules.into_iter().chain(config.skills).collect(),
        Some(Err(_)) | None => Vec::new(),
    }
}

/// [`protect_config`] for one file: the one named with `--config` (else
/// the default one); whether it was kept.
#[cfg(unix)]
fn keep_config(
    profile: &mut PermissionProfile,
    explicit: Option<&std::path::Path>,
    cwd: &std::path::Path,
    kept_places: &mut Vec<PathBuf>,
) -> Result<bool> {
    let Some(view) = sandbox_view(profile, cwd) else {
        return Ok(false);
    };
    let place = match explicit {
        Some(file) => {
            let file = std::path::absolute(file)?;
            if replaceable_link_on_the_way(&view, &file).is_some() {
                return Ok(false);
            }
            file
        }
        None => {
            let Some(dir) = config::default_path()
                .as_deref()
                .and_then(std::path::Path::parent)
                .map(std::path::Path::to_path_buf)
            else {
                return Ok(false);
            };
            // Not through a link the sandbox could replace: that is warned
            // of, not kept (the directory kept would be the link's target
            // of today).
            if replaceable_link_on_the_way(&view, &dir).is_some() {
                return Ok(false);
            }
            if !dir.exists() && writable_on_the_way(&view, &dir).is_some() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .with_context(|| {
                        format!(
                            "cannot make {}, to keep a config file out of the sandbox's \
                             reach (set XDG_CONFIG_HOME to a directory it cannot write)",
                            dir.display()
                        )
                    })?;
            }
            dir
        }
    };
    // The default file may be a link out of its directory (to a dotfiles
    // checkout, say): the file it leads to is kept too (probe 133: it was
    // not, and a command rewrote it).
    let mut kept_all = true;
    let mut places = vec![place];
    if explicit.is_none() {
        let target = config::default_path().and_then(|file| std::fs::canonicalize(file).ok());
        let dir = std::fs::canonicalize(&places[0]).ok();
        if let Some(target) = target.filter(|target| dir.is_none_or(|dir| !target.starts_with(dir)))
        {
            places.push(target);
        }
    }
    for place in places {
        let Ok(place) = std::fs::canonicalize(&place) else {
            kept_all = false;
            continue;
        };
        // Not the work itself (a config in the working directory's own
        // ancestors would make all of it read-only).
        if cwd.starts_with(&place) {
            kept_all = false;
            continue;
        }
        // Kept even where the session's own profile cannot write it: a
        // grant (a skill's, a rule's profile, one requested) adds to that
        // profile, and one on a directory above it would make it writable
        // (probe 137: a skill's grant rewrote the --config file). Only what
        // the sandbox sees at all: a read entry must not show it.
        if !view.can_read(&place) {
            continue;
        }
        let PermissionProfile::Managed { file_system, .. } = profile else {
            return Ok(false);
        };
        let Ok(kept) = AbsolutePath::new(&place, None) else {
            kept_all = false;
            continue;
        };
        let _ = file_system.push(FsTarget::Path(kept), Access::Read);
        // A grant on it, as particular as this entry, would win (probe
        // 244): the session refuses it.
        kept_places.push(place.clone());
        // Unless the profile names it writable itself.
        kept_all &= sandbox_view(profile, cwd).is_some_and(|view| !view.may_write(&place));
    }
    // Kept all the same when the file has another name (a hard link),
    // which may lie where the sandbox writes: warned of (probe 151).
    let file = explicit
        .map(std::path::Path::to_path_buf)
        .or_else(config::default_path);
    if file.as_deref().is_some_and(has_other_names) {
        kept_all = false;
    }
    // Kept all the same where a link between the default file and its
    // target can be re-pointed, but not as the session reads it: warned of.
    // (A `--config` file reached so was not kept.)
    if explicit.is_none() {
        kept_all &= sandbox_view(profile, cwd).is_some_and(|view| {
            file.as_deref()
                .is_none_or(|file| replaceable_link_on_the_way(&view, file).is_none())
        });
    }
    Ok(kept_all)
}

/// What `warn_if_sandbox_writable` says of policy files: rules, skills,
/// and a config file that could not be kept read-only.
#[cfg(unix)]
const CHANGES_LATER_POLICY: &str = "the commands run here could change the policy of later \
                                    sessions; keep policy files outside the writable roots";

/// Opens the audit log a session writes: `named` (`--audit-log`, else the
/// config's `[audit] log`), else the default one, its directory made first
/// (warned of where `profile`'s sandbox reaches it). The session hides it
/// from its sandboxes as it starts; `execgate sandbox` hides it too, so
/// that the program it runs cannot hold its lock either.
#[cfg(unix)]
fn open_audit_log(
    profile: &PermissionProfile,
    cwd: &std::path::Path,
    named: Option<PathBuf>,
    settings: &config::AuditSettings,
) -> Result<execgate_audit::AuditLog> {
    let log_path = match named {
        Some(path) => path,
        None => audit::default_log_path()?,
    };
    // Absolute (links kept as written), so that a bare name's directory
    // is this one, to hide and to check, not "".
    let log_path = std::path::absolute(&log_path)
        .with_context(|| format!("the audit log {}", log_path.display()))?;
    if let Some(dir) = log_path.parent() {
        // Owner-only, whatever the umask: the records are the reviewers'.
        // `create_dir_all` says only "File exists" of a file on the way.
        use std::os::unix::fs::DirBuilderExt;
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(
                |error| match dir.ancestors().find(|on_the_way| on_the_way.is_file()) {
                    Some(file) => anyhow::anyhow!("{} is a file, not a directory", file.display()),
                    None => error.into(),
                },
            );
        made.with_context(|| {
            format!(
                "cannot create the audit log's directory {}; nothing runs unrecorded \
                 (choose another with --audit-log, or [audit] log in the config)",
                dir.display()
            )
        })?;
        warn_if_log_reachable(profile, cwd, &log_path);
    }
    let mut rotation = execgate_audit::Rotation::default();
    if let Some(max_bytes) = settings.max_bytes {
        rotation.max_bytes = max_bytes;
    }
    if let Some(keep) = settings.keep {
        rotation.keep = keep;
    }
    let log = execgate_audit::AuditLog::open(&log_path, rotation)
        .context("the audit log cannot be opened; nothing runs unrecorded")?;
    warn_if_log_open_to_others(&log_path);
    Ok(log)
}

#[cfg(unix)]
fn current_dir(cwd: Option<PathBuf>) -> Result<PathBuf> {
    let cwd = match cwd {
        Some(cwd) => cwd,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    std::fs::canonicalize(&cwd).with_context(|| format!("working directory {}", cwd.display()))
}

#[cfg(unix)]
/// Makes this process the reaper of everything the command leaves behind:
/// a process that leaves the command's group and session (`setsid`, a
/// daemon's double fork) is re-parented here instead of to init, so that
/// [`end_leftovers`] finds it.
fn adopt_orphans() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
        .context("cannot become the reaper of the command's processes")
}

#[cfg(unix)]
/// Kills and reaps every child still left: with the sandbox's pid
/// namespace there are none; without it, whatever escaped the command's
/// process group.
fn end_leftovers() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    // A killed orphan's own children come to us in turn: a few rounds.
    for _ in 0..20 {
        // The warden ends by itself once we have gone, after removing the
        // sessions' cgroups: not ours to kill.
        let warden = execgate_core_bridge::server::warden_pid();
        let mut children = children_of(std::process::id());
        children.retain(|child| Some(*child) != warden);
        if children.is_empty() {
            return;
        }
        for child in children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(unix)]
/// The pids whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parens.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// Runs a command that starts a session (`run`, `shell`, `mcp`) as the
/// reaper of what its session leaves behind when it has no cgroup: a
/// process that left its process group and session (an unsandboxed
/// escalation's `setsid`, a daemon's double fork) would outlive it. With a
/// cgroup, `cgroup.kill` ends those, and orphans go to init, which reaps
/// them; here they stay zombies until this process ends (README says so).
#[cfg(unix)]
fn reaping(session: impl FnOnce() -> Result<i32>) -> Result<i32> {
    use execgate_core_bridge::server::{scope_support, ScopeSupport};
    let adopting = matches!(scope_support(), ScopeSupport::ProcessGroups { .. });
    if adopting {
        adopt_orphans()?;
    }
    let code = session();
    if adopting {
        end_leftovers();
    }
    code
}

#[cfg(unix)]
fn run_in_session(args: RunArgs) -> Result<i32> {
    let request_permissions = args
        .request_permissions
        .as_deref()
        .map(AdditionalPermissions::load)
        .transpose()?;
    let (session_config, labels) = args
        .session
        .session_config(prompt::AbortScope::WholeCommand)?;
    // As a profile's and a skill's are (probe 133: a request's grant on a
    // path that is not there was given without a word).
    if let Some(requested) = &request_permissions {
        warn_of_requested_grants(requested, &session_config, &labels);
    }
    let command = args.command.join(" ");
    // What the command sets on the terminal stays in its sandbox.
    let terminal = TerminalState::save();
    let runtime = execgate_core_bridge::server::keep_blocking_threads(
        tokio::runtime::Builder::new_multi_thread().enable_all(),
    )
    .context("cannot start the async runtime")?;
    let code = runtime.block_on(async move {
        // Ctrl-C reaches us, not the command (it has its own process
        // group); it, SIGTERM and SIGHUP end the command and the session.
        // Taken over before the session starts, whose first record may
        // pass a file size limit (`SIGXFSZ`, a review).
        let mut signals = EndSignals::new(TerminalInterrupt::Ends)?;
        let session = ShellSession::start(session_config)?;
        labels.attach(&session);
        let options = RunOptions {
            stdio: Stdio3::Inherited,
            request_permissions,
            ..RunOptions::default()
        };
        let cancel = options.cancel.clone();
        // On a terminal, the command runs only while execgate is in the
        // foreground (see `TerminalJob`): started in the background, it
        // waits for `fg` before it starts.
        let mut job = TerminalJob::new()?;
        if let Some(waiting) = job.as_mut() {
            if waiting.place() == JobPlace::Background {
                stderr::line(WAITS_FOR_FOREGROUND);
                loop {
                    tokio::select! {
                        signal = signals.recv() => {
                            session.terminate(signal);
                            session.shutdown().await;
                            return Ok(128 + signal);
                        }
                        event = waiting.next() => {
                            if let JobEvent::Stop = event {
                                TerminalJob::stop_self();
                            }
                        }
                    }
                    if matches!(waiting.place(), JobPlace::Foreground | JobPlace::Gone) {
                        break;
                    }
                }
            }
        }
        let handle = session.run(&command, options)?;
        let outcome = handle.wait();
        tokio::pin!(outcome);
        let mut frozen = false;
        let outcome = loop {
            let next_job_event = async {
                match job.as_mut() {
                    Some(job) => job.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                outcome = &mut outcome => break outcome,
                signal = signals.recv() => {
                    session.terminate(signal);
                    cancel.cancel();
                    let _ = outcome.await;
                    keep_session_metrics(&session);
                    session.shutdown().await;
                    return Ok(128 + signal);
                }
                event = next_job_event => {
                    let Some(following) = &job else { continue };
                    let place = following.place();
                    let wanted = match (&event, place) {
                        (JobEvent::Stop, _) | (_, JobPlace::Background) => Freezer::Frozen,
                        (_, JobPlace::Foreground | JobPlace::Gone) => Freezer::Thawed,
                        (_, JobPlace::Prompting) if frozen => Freezer::Frozen,
                        (_, JobPlace::Prompting) => Freezer::Thawed,
                    };
                    if (wanted == Freezer::Frozen) != frozen {
                        match set_freezer(&session, wanted) {
                            Ok(()) => frozen = wanted == Freezer::Frozen,
                            // Nothing to follow the job with: it runs on.
                            Err(()) => job = None,
                        }
                        if frozen && matches!(event, JobEvent::Look) {
                            stderr::line(WAITS_FOR_FOREGROUND);
                        }
                    }
                    // Continued in the background (`bg`): say why nothing runs.
                    if frozen && matches!(event, JobEvent::Resumed) {
                        stderr::line(WAITS_FOR_FOREGROUND);
                    }
                    if place == JobPlace::Gone {
                        job = None;
                    }
                    if let JobEvent::Stop = event {
                        TerminalJob::stop_self();
                    }
                }
            }
        };
        keep_session_metrics(&session);
        session.shutdown().await;
        let outcome = outcome?;
        if outcome.permissions_declined {
            stderr::line(
                "execgate: the requested permissions were declined; the command ran with the \
                 session's own",
            );
        }
        if let Some(denied) = &outcome.network_denied {
            stderr::line(&format!("execgate: {denied}"));
            return Ok(126);
        }
        if outcome.aborted {
            stderr::line(
                "execgate: the command was aborted at a question, and stopped with everything \
                 it started",
            );
            // By Ctrl-C or Ctrl-\: the person interrupted the run, and a
            // shell around it is to see the key's signal.
            if let Some(signal) = prompt::abort_key_signal() {
                ending::ended_as_by(signal);
            }
        }
        Ok(outcome.status.code())
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    terminal.restore_after_run();
    code
}

/// Whether the session's processes are to be frozen.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freezer {
    Frozen,
    Thawed,
}

/// Freezes or thaws the session's processes; says why it cannot (no
/// session cgroup, or the cgroup's error): the caller stops following the
/// job.
#[cfg(unix)]
fn set_freezer(session: &ShellSession, wanted: Freezer) -> Result<(), ()> {
    match session.freeze(wanted == Freezer::Frozen) {
        Ok(true) => Ok(()),
        Ok(false) => {
            stderr::line(
                "execgate: warning: without a session cgroup the command cannot be stopped \
                 with execgate: it goes on running, and can read what is typed on the terminal",
            );
            Err(())
        }
        Err(error) => {
            stderr::line(&format!(
                "execgate: warning: {}; the command goes on as it is",
                describe(&error.into())
            ));
            Err(())
        }
    }
}

/// Said when the command waits for `fg`.
#[cfg(unix)]
const WAITS_FOR_FOREGROUND: &str = "execgate: in the background, the command waits until it \
                                    is brought back (fg): it holds the terminal, and could \
                                    read what is typed there (redirect its standard streams \
                                    away from the terminal to let it run meanwhile; under \
                                    timeout, use timeout --foreground)";

/// How long the end of `run` and `shell` waits for blocking tasks still
/// running on their runtime when the session is over (dropping the runtime
/// would wait for them without end): the bridge's, reading the command's
/// output, which a sandboxed command could hold up. The session's own
/// tasks run on the thread sessions are served on, and the prompt's thread
/// is one of that runtime's blocking threads; both stop with the session.
#[cfg(unix)]
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(unix)]
fn shell(args: ShellArgs) -> Result<i32> {
    // The shell shares the terminal for its job control: started from the
    // background (`execgate shell &`), it would take the terminal's
    // foreground from the caller's shell and read what is typed there.
    if ending::in_the_background_of_its_terminal() {
        anyhow::bail!(
            "execgate shell was started in the background of its terminal, where the \
             sandboxed shell would take the terminal from yours; start it in the foreground"
        );
    }
    let (mut session_config, labels) = args.session.session_config(prompt::AbortScope::Job)?;
    // The person who answers is at the terminal, and the command is the
    // whole interactive shell: a late denial only fails the connection.
    session_config.on_network_denial = OnNetworkDenial::FailConnection;
    let interactive = Interactive {
        startup_files: if args.no_rcs {
            StartupFiles::Skipped
        } else {
            StartupFiles::User
        },
        prompt_marker: if args.no_prompt_marker {
            PromptMarker::Hidden
        } else {
            PromptMarker::Shown
        },
    };
    let quiet = args.quiet;
    let runtime = execgate_core_bridge::server::keep_blocking_threads(
        tokio::runtime::Builder::new_multi_thread().enable_all(),
    )
    .context("cannot start the async runtime")?;
    let code = runtime.block_on(async move {
        // The terminal's Ctrl-C is for the shell's jobs; this process waits
        // it out. SIGTERM, SIGHUP and an interrupt sent to this process
        // itself end the session. Taken over before the session starts (see
        // `run_in_session`).
        let mut signals = EndSignals::new(TerminalInterrupt::BelongsToShell)?;
        let session = ShellSession::start(session_config)
            .context("the shell's session could not be started")?;
        labels.attach(&session);
        if !quiet {
            stderr::line(&start_line(&labels));
        }
        let modes = TerminalState::save();
        let status = tokio::select! {
            status = session.interactive_with(&interactive) => status,
            signal = signals.recv() => {
                // Dropping the shell's future kills it.
                session.terminate(signal);
                let metrics = keep_session_metrics(&session);
                session.shutdown().await;
                modes.restore();
                if !quiet {
                    stderr::line(&end_line(&metrics));
                }
                return Ok(128 + signal);
            }
        };
        let metrics = keep_session_metrics(&session);
        session.shutdown().await;
        // What the shell's programs left set (no echo, another interrupt
        // key) stays in the sandbox's session, not in the caller's.
        modes.restore();
        if !quiet {
            stderr::line(&end_line(&metrics));
        }
        Ok(status.context("the interactive shell failed")?.code())
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}

/// The counters of the session this process ran, kept at its end for the
/// export that follows once the async runtime is gone.
#[cfg(unix)]
static SESSION_METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();

#[cfg(unix)]
fn keep_session_metrics(session: &ShellSession) -> Metrics {
    let metrics = session.metrics();
    let _ = SESSION_METRICS.set(metrics.clone());
    metrics
}

/// `execgate shell`'s first line: where its decisions come from and go.
#[cfg(unix)]
fn start_line(labels: &SessionLabels) -> String {
    // Probe 232: "everything runs in place" with skills loaded.
    let rules = if labels.rules.is_empty() && labels.skills.is_empty() {
        "none (everything runs in place)".to_owned()
    } else if labels.rules.is_empty() {
        "none".to_owned()
    } else {
        labels
            .rules
            .iter()
            .map(|rule| rule.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let skills = match labels.skills.is_empty() {
        true => String::new(),
        false => format!("; skills: {}", labels.skills.join(", ")),
    };
    format!(
        "execgate: shell in profile {}; rules: {rules}{skills}; audit log: {}",
        labels.profile,
        labels.audit_log.display()
    )
}

/// `execgate shell`'s last line.
#[cfg(unix)]
fn end_line(metrics: &Metrics) -> String {
    let decided = metrics.decided();
    let mut line = format!(
        "execgate: shell ended: {decided} command{} decided, {} escalated, {} denied",
        if decided == 1 { "" } else { "s" },
        metrics.decided_escalate,
        metrics.decided_deny
    );
    let failures = metrics.spawn_failures + metrics.sandbox_start_failures.values().sum::<u64>();
    if failures > 0 {
        line.push_str(&format!(", {failures} failed to start"));
    }
    if metrics.requests_refused > 0 {
        line.push_str(&format!(
            ", {} refused before a decision (see the audit log)",
            metrics.requests_refused
        ));
    }
    line
}

/// Without `--verbose`: a line for each escalation the policy refused. The
/// command runs in place, in the sandbox, without what the escalation would
/// have given it, and may fail there ("Read-only file system") for a
/// reason only the audit log said.
#[cfg(unix)]
fn show_refused_escalation(event: &SessionEvent) {
    let SessionEvent::Decided {
        request,
        decision: Decision::Run,
        provenance,
    } = event
    else {
        return;
    };
    let Some(note) = provenance.note.as_deref() else {
        return;
    };
    // A skill's note names the skill first.
    if note.contains("escalation refused: ") {
        stderr::line(&format!(
            "execgate: {} runs in place, in the sandbox: {}",
            output::debug_escaped(&request.executable.canonical_path.to_string_lossy()),
            output::terminal_safe(note, output::Lines::Escaped)
        ));
    }
}

/// What [`say_variables_left_out`] has said in a session: the names, and
/// how many notes.
#[cfg(unix)]
#[derive(Default)]
struct LeftOutSaid {
    names: std::collections::HashSet<OsString>,
    notes: usize,
}

/// Notes of left-out variables said per session: a command that sets new
/// names before each escalation does not fill the terminal.
#[cfg(unix)]
const MOST_LEFT_OUT_NOTES: usize = 8;

/// Says which variables the shell set that a program escalated beyond the
/// session's sandbox runs without (probe 227: `export CFLAGS=-O2; make`,
/// escalated, built with none, unsaid), each name once per session.
#[cfg(unix)]
fn say_variables_left_out(event: &SessionEvent, said: &std::sync::Mutex<LeftOutSaid>) {
    use execgate_core_bridge::server::Execution;
    let SessionEvent::Decided {
        request,
        decision: Decision::Escalate(execution),
        ..
    } = event
    else {
        return;
    };
    let how = match execution {
        Execution::Unsandboxed => "unsandboxed",
        Execution::Permissions(_) => "with grants",
        _ => return,
    };
    let left_out = execgate_core_bridge::server::left_out_beyond_the_sandbox(
        &request.env,
        &request.escalation_env,
    );
    let mut said = said
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let new: Vec<OsString> = left_out
        .into_iter()
        .filter(|name| !said.names.contains(name))
        .collect();
    if new.is_empty() || said.notes == MOST_LEFT_OUT_NOTES {
        return;
    }
    said.notes += 1;
    said.names.extend(new.iter().cloned());
    let names: Vec<String> = new
        .iter()
        .map(|name| output::debug_escaped(&name.to_string_lossy()))
        .collect();
    let program = request
        .executable
        .canonical_path
        .file_name()
        .unwrap_or(request.executable.canonical_path.as_os_str());
    let more = match said.notes == MOST_LEFT_OUT_NOTES {
        true => "; no more such notes in this session",
        false => "",
    };
    stderr::line(&format!(
        "execgate: note: {}, escalated {how}, runs without variables the shell set: {} (a \
         program escalated beyond the session's sandbox gets the session's environment, not \
         the shell's; pass what it needs as arguments where it takes them){more}",
        output::debug_escaped(&program.to_string_lossy()),
        names.join(", ")
    ));
}

/// `--verbose`: one line per event. Called on the escalation server's
/// threads, so the line is queued, never written there.
#[cfg(unix)]
fn show_event(event: &SessionEvent) {
    let line = match event {
        SessionEvent::Decided {
            request,
            decision,
            provenance,
        } => format!(
            "execgate: {:?} {:?} -> {decision:?} (by {}{}{})",
            request.executable.canonical_path,
            request.argv,
            provenance.decided_by.as_str(),
            provenance
                .rule
                .as_ref()
                .map(|rule| format!(", rule {:?}", rule.id))
                .unwrap_or_default(),
            provenance
                .note
                .as_ref()
                .map(|note| format!("; {note:?}"))
                .unwrap_or_default()
        ),
        SessionEvent::Ended {
            reason,
            running,
            processes,
            ..
        } => format!(
            "execgate: session ended ({}); escalated children still running, killed: \
             {running}{}",
            match reason {
                SessionEnd::Signal(signal) => format!("signal {signal}"),
                SessionEnd::Closed => "closed".into(),
                // `SessionEnd` is non-exhaustive: a kind of end added later.
                other => format!("{other:?}"),
            },
            processes
                .map(|processes| format!("; processes in the session, killed: {processes}"))
                .unwrap_or_default()
        ),
        // Probe 136: these were the events' debug dumps.
        SessionEvent::Began {
            profile,
            sandbox,
            roots,
        } => {
            // Quoted as an escalation's are: a path with `, ` in it read as
            // more grants (probe 238).
            let quoted = |grants: &[String]| {
                grants
                    .iter()
                    .map(|grant| audit::quoted_grant(grant))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "execgate: session started (profile {}; sandbox {}{})",
                profile.as_deref().unwrap_or("not named"),
                quoted(sandbox),
                if roots.is_empty() {
                    String::new()
                } else {
                    format!("; {}", quoted(roots))
                }
            )
        }
        SessionEvent::Network(network) => {
            use execgate_core_bridge::server::NetworkStage;
            let target = network.request.as_ref().map_or_else(
                || "a request that could not be read".to_owned(),
                |request| {
                    format!(
                        "{}:{} ({})",
                        request.destination, request.port, request.protocol
                    )
                },
            );
            let stage = match network.stage {
                NetworkStage::Decided => "decided",
                NetworkStage::Closed => "closed",
            };
            format!(
                "execgate: connection to {target} {stage}: {}{}{}",
                network.outcome.as_str(),
                network
                    .reason
                    .as_ref()
                    .map(|reason| format!(" ({reason})"))
                    .unwrap_or_default(),
                network
                    .bytes
                    .map(|bytes| format!(
                        "; {} bytes sent, {} received",
                        bytes.sent, bytes.received
                    ))
                    .unwrap_or_default()
            )
        }
        // Probe 140: these were debug dumps too.
        SessionEvent::Started { request_id, pid } => {
            format!("execgate: request {request_id} started, pid {pid}")
        }
        SessionEvent::Exited {
            request_id,
            pid,
            termination,
            run_time,
        } => format!(
            "execgate: request {request_id} (pid {pid}) ended after {:.3} s: {}",
            run_time.as_secs_f64(),
            match termination {
                Termination::Exited(code) => format!("exit status {code}"),
                Termination::Signaled {
                    signal,
                    core_dumped,
                } => format!(
                    "killed by signal {signal}{}",
                    if *core_dumped { ", core dumped" } else { "" }
                ),
            }
        ),
        SessionEvent::SpawnFailed { request_id, reason } => format!(
            "execgate: request {request_id} could not start: {}",
            output::terminal_safe(reason, output::Lines::Escaped)
        ),
        SessionEvent::RequestRefused {
            request_id,
            reason,
            requester,
            ..
        } => format!(
            "execgate: {}{} refused: {}",
            match request_id {
                Some(id) => format!("request {id}"),
                None => "a request on the session socket".to_owned(),
            },
            match requester {
                Some(peer) => format!(" from pid {}", peer.pid),
                None => String::new(),
            },
            output::terminal_safe(reason, output::Lines::Escaped)
        ),
        // Said as the command's failure too, in full: one line here.
        SessionEvent::ShellNotStarted { kind, .. } => {
            format!("execgate: a shell did not start ({kind}); nothing of its command ran")
        }
        other => format!("execgate: {other:?}"),
    };
    stderr::line(&line);
}

/// `execgate sandbox`: one program in a profile's sandbox, kept from what
/// a session's sandbox is kept from (a probe rewrote the config, forged
/// audit records and read credentials from here, where a session with the
/// same profile refused all three): the config read-only, the audit log
/// hidden, the environment as `[env]` makes it.
#[cfg(unix)]
fn sandbox(
    profile_name: Option<String>,
    cwd: Option<PathBuf>,
    config_path: Option<PathBuf>,
    argv: Vec<OsString>,
) -> Result<i32> {
    let (config, config_file) = Config::load_naming(config_path.as_deref())?;
    // A profile is debugged as a session would take it.
    let profile_name = profile_name
        .or(config.default_profile.clone())
        .unwrap_or_else(|| "workspace-write".into());
    let profile_name = profile_name.as_str();
    let mut profile = config.profile(profile_name, config_file.as_deref())?;
    if let PermissionProfile::Managed {
        network: NetworkPolicy::Limited,
        ..
    } = profile
    {
        anyhow::bail!(
            "profile {profile_name:?} has a limited network, whose proxy lives in a session: \
             use `execgate run --profile {profile_name} -- COMMAND`"
        );
    }
    let cwd = current_dir(cwd)?;
    // Its grants as a session warns of them: a profile is debugged here.
    warn_if_grants_name_nothing(&profile, "the profile", &cwd);
    warn_if_grants_held_back(None, &profile, "the profile", false, &cwd);
    let config_left = protect_config(&mut profile, config_path.as_deref(), &cwd, &mut Vec::new())?;
    let later_sessions = default_config_policy_files(config_path.as_deref());
    // As a session warns (probe 151: `sandbox` said nothing of a skill or
    // a ZDOTDIR its program rewrote). Skills that cannot be loaded are a
    // later session's error, not this program's.
    let skill_files = SkillRegistry::load(&config.skills)
        .map(|skills| skill_files(&skills, &config.skills))
        .unwrap_or_default();
    warn_if_sandbox_writable(
        &profile,
        &cwd,
        config
            .rules
            .iter()
            .chain(&config.skills)
            .chain(&config_left)
            .chain(&later_sessions)
            .chain(&skill_files)
            .map(PathBuf::as_path),
        CHANGES_LATER_POLICY,
    );
    warn_of_startup_files(&profile, &cwd);
    warn_if_tmpdir_not_taken(&profile, &cwd);
    warn_if_secrets_pass(&config.env);
    // Opened as a session opens it, only to be hidden: nothing is recorded.
    let log = open_audit_log(&profile, &cwd, config.audit.log.clone(), &config.audit)?;
    let located = Tools::locate_with_origin()?;
    warn_of_tools_from_other_builds(&located);
    let tools = located.tools;
    let mut command = execgate_core_bridge::sandboxed_program(
        &cwd,
        &profile,
        profile_name,
        &config.env,
        &tools,
        &log.files(),
        &argv,
    )?;
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?}", argv[0]))?;
    Ok(status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    }))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// The end line counts what the session did, requests refused before
    /// a decision included (a probe's refused program showed as "0
    /// denied", with nothing else said).
    #[test]
    fn the_end_line_counts_refused_requests() {
        let mut metrics = Metrics::default();
        metrics.decided_run = 2;
        metrics.decided_deny = 1;
        assert_eq!(
            end_line(&metrics),
            "execgate: shell ended: 3 commands decided, 0 escalated, 1 denied"
        );
        metrics.requests_refused = 2;
        assert_eq!(
            end_line(&metrics),
            "execgate: shell ended: 3 commands decided, 0 escalated, 1 denied, \
             2 refused before a decision (see the audit log)"
        );
    }

    /// Probe 232: with skills and no rules, the start line said that
    /// everything runs in place.
    #[test]
    fn the_start_line_names_the_skills() {
        let labels = |rules: &[&str], skills: &[&str]| SessionLabels {
            profile: "workspace-write".into(),
            rules: rules.iter().map(PathBuf::from).collect(),
            policy_files: Vec::new(),
            skills: skills.iter().map(|name| (*name).to_owned()).collect(),
            audit_log: "/l/audit.jsonl".into(),
            question_freezer: prompt::FreezerSlot::default(),
        };
        assert_eq!(
            start_line(&labels(&[], &[])),
            "execgate: shell in profile workspace-write; rules: none (everything runs in \
             place); audit log: /l/audit.jsonl"
        );
        assert_eq!(
            start_line(&labels(&[], &["saver", "notes"])),
            "execgate: shell in profile workspace-write; rules: none; skills: saver, notes; \
             audit log: /l/audit.jsonl"
        );
        assert_eq!(
            start_line(&labels(&["/r/team.rules"], &["saver"])),
            "execgate: shell in profile workspace-write; rules: /r/team.rules; skills: saver; \
             audit log: /l/audit.jsonl"
        );
    }

    /// The links a path's resolution follows, as the kernel follows them:
    /// into a link's target, relative to the link's directory, and `..`
    /// from where a link led.
    #[test]
    fn every_link_a_path_follows_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(dir.path()).unwrap();
        let link =
            |target: &str, name: &str| std::os::unix::fs::symlink(target, top.join(name)).unwrap();
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("a/file"), "").unwrap();
        link("a/b", "to-b");
        link("../file", "a/b/up");
        link("to-b/up", "chain");
        link(top.join("chain").to_str().unwrap(), "absolute");
        link("loop", "loop");
        let cases: [(&str, &[&str]); 5] = [
            ("a/file", &[]),
            ("chain", &["chain", "to-b", "a/b/up"]),
            ("absolute", &["absolute", "chain", "to-b", "a/b/up"]),
            ("to-b/../file", &["to-b"]),
            ("missing/chain", &[]),
        ];
        for (path, expected) in cases {
            let expected: Vec<PathBuf> = expected.iter().map(|name| top.join(name)).collect();
            assert_eq!(links_followed(&top.join(path)), expected, "{path}");
        }
        // A loop ends where the kernel gives up.
        assert_eq!(links_followed(&top.join("loop")).len(), 40);
    }
}
