//! `execgate` on Windows: `run` and `doctor`. There is no patched zsh, so
//! a command is decided once, on its resolved program, and runs with the
//! restricted token of its profile (`execgate_core_bridge::windows`).
//! Every run leaves an audit record with `execgate.sandbox`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use execgate_core_bridge::rules::RuleSet;
use execgate_core_bridge::sandbox::windows::UnenforcedToken;
use execgate_core_bridge::sandbox::windows::WindowsReport;
use execgate_core_bridge::sandbox::windows_plan::{WindowsNetwork, WINDOWS_SANDBOX_NAME};
use execgate_core_bridge::sandbox::ProfileSet;
use execgate_core_bridge::windows::{
    decide, plain, prepare, writable_root_over, ScriptShell, WindowsCommand, WindowsDecision,
    WindowsRunConfig, WindowsVerdict, WINE_UNENFORCED_TOKEN,
};

/// Run commands with the program decided by rules, inside a restricted token.
#[derive(Parser)]
#[command(name = "execgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one program (or a cmd/pwsh script) under the rules and profile.
    Run(RunArgs),
    /// What this machine provides for the restricted-token backend.
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ShellArg {
    Cmd,
    Pwsh,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The profile: a preset or one from --profiles.
    #[arg(long, default_value = "workspace-write")]
    profile: String,
    /// TOML files of named profiles.
    #[arg(long = "profiles")]
    profile_files: Vec<PathBuf>,
    /// Rules files.
    #[arg(long = "rules")]
    rules: Vec<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Extra writable roots (`:workspace_roots`).
    #[arg(long = "workspace-root")]
    workspace_roots: Vec<PathBuf>,
    /// Give the words to this shell as one script.
    #[arg(long)]
    shell: Option<ShellArg>,
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// The audit log. Default: %LOCALAPPDATA%\execgate\audit.jsonl.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<OsString>,
}

pub fn main() -> ExitCode {
    let cli = crate::arguments::parse::<Cli>();
    let result = match cli.command {
        Command::Run(args) => run_command(args),
        Command::Doctor { json } => doctor(json),
    };
    match result {
        Ok(code) => match u8::try_from(code) {
            Ok(code) => ExitCode::from(code),
            // A Windows exit code is 32 bits (an NTSTATUS such as
            // 0xC0000005 for a crash): passed on whole.
            Err(_) => std::process::exit(code),
        },
        Err(error) => {
            eprintln!("execgate: {}", crate::describe(&error));
            ExitCode::from(125)
        }
    }
}

/// `%LOCALAPPDATA%\execgate` (state: capability SIDs, the audit log).
fn state_dir() -> Result<PathBuf> {
    std::env::var_os("LOCALAPPDATA")
        .map(|dir| PathBuf::from(dir).join("execgate"))
        .context("LOCALAPPDATA is not set; execgate keeps its capability SIDs there")
}

fn run_command(args: RunArgs) -> Result<i32> {
    let cwd = match args.cwd {
        Some(cwd) => cwd,
        None => std::env::current_dir().context("no current directory")?,
    };
    let mut profiles = ProfileSet::default();
    for file in &args.profile_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        profiles.add_toml(&text, Some(file))?;
    }
    let profile = profiles.get(&args.profile)?;
    let network = if profiles.windows_network_best_effort(&args.profile) {
        WindowsNetwork::BestEffort
    } else {
        WindowsNetwork::Refuse
    };
    let rules = RuleSet::load(&canonical_files(&args.rules))?;
    let mut execution_profiles = BTreeMap::new();
    let mut execution_networks = BTreeMap::new();
    for rule in rules.rules() {
        if let Some(execgate_core_bridge::rules::RuleExecution::Profile(name)) = &rule.execution {
            let profile = profiles
                .get(name)
                .with_context(|| format!("{} runs in the profile {name:?}", rule.origin))?;
            execution_profiles.insert(name.clone(), profile);
            if let Some(network) = profiles.windows_network(name) {
                execution_networks.insert(name.clone(), network);
            }
        }
    }
    let state = state_dir()?;
    let config = WindowsRunConfig {
        profile,
        network,
        execution_profiles,
        execution_networks,
        rules,
        cwd,
        workspace_roots: args.workspace_roots,
        state_dir: state.clone(),
        timeout: Duration::from_secs(args.timeout_seconds),
        // Honoured under Wine only (the backend checks); see the README.
        unenforced_token: match std::env::var_os(WINE_UNENFORCED_TOKEN) {
            Some(value) if value == "1" => UnenforcedToken::RunUnderWine,
            Some(_) | None => UnenforcedToken::Refuse,
        },
    };
    let command = match args.shell {
        None => WindowsCommand::Program(args.command),
        Some(shell) => WindowsCommand::Script {
            shell: match shell {
                ShellArg::Cmd => ScriptShell::Cmd,
                ShellArg::Pwsh => ScriptShell::Pwsh,
            },
            script: args.command.join(&OsString::from(" ")),
        },
    };
    let audit_log = args.audit_log.unwrap_or_else(|| state.join("audit.jsonl"));
    let audit = Audit {
        log: &audit_log,
        config: &config,
    };
    // As on Linux: a log the sandbox can write is one its commands can
    // forge (probe 146). The default one is refused in reach, with the
    // state directory.
    match writable_root_over(&config, &audit_log) {
        Ok(None) => {}
        Ok(Some(root)) => eprintln!(
            "execgate: warning: the audit log {} is in reach of this session's sandbox: it \
             can write {root}, so the commands run here could forge records; keep the log \
             outside the writable roots (--audit-log)",
            audit_log.display()
        ),
        // A profile that cannot be planned is refused below, and recorded.
        Err(error) => eprintln!(
            "execgate: warning: cannot tell whether the audit log {} is in reach of this \
             session's sandbox: {error}",
            audit_log.display()
        ),
    }
    let decision = match decide(&config, &command) {
        Ok(decision) => decision,
        // Not found, or not resolvable: denied by execgate itself, as the
        // Linux server records a request it could not check.
        Err(error) => {
            let reason = error.to_string();
            let argv = requested_argv(&command);
            return refused(
                audit.write(&Entry::Refused {
                    decision: None,
                    argv: &argv,
                    reason: &reason,
                }),
                error.into(),
            );
        }
    };
    for warning in &decision.warnings {
        eprintln!("execgate: warning: {warning}");
    }
    if let Some(note) = &decision.note {
        // As on Linux: the command may fail in the sandbox for a reason
        // only this line and the audit record give.
        eprintln!(
            "execgate: {} runs in place, in the sandbox: {}",
            decision.program.display(),
            crate::output::terminal_safe(note, crate::output::Lines::Escaped)
        );
    }
    if let WindowsVerdict::Denied(reason) = &decision.verdict {
        audit.write(&Entry::Decided {
            decision: &decision,
            warnings: &decision.warnings,
        })?;
        eprintln!(
            "execgate: denied: {}",
            crate::output::terminal_safe(reason, crate::output::Lines::Escaped)
        );
        return Ok(126);
    }
    // Every refusal of the planner and the backend (a profile it cannot
    // enforce, a batch argument it cannot quote, a token Windows does not
    // report restricted) comes before the decision is recorded as a run.
    let prepared = match prepare(&config, &command, &decision) {
        Ok(prepared) => prepared,
        Err(error) => {
            let reason = error.to_string();
            return refused(
                audit.write(&Entry::Refused {
                    decision: Some(&decision),
                    argv: &decision.argv,
                    reason: &reason,
                }),
                error.into(),
            );
        }
    };
    for warning in prepared.warnings.iter().skip(decision.warnings.len()) {
        eprintln!("execgate: warning: {warning}");
    }
    let mut stdin = Vec::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        if let Err(error) = std::io::stdin().read_to_end(&mut stdin) {
            // It does not run without the input it was given: refused, and
            // recorded as such.
            let error = anyhow::Error::new(error).context("cannot read stdin");
            let reason = crate::causes(&error);
            return refused(
                audit.write(&Entry::Refused {
                    decision: Some(&decision),
                    argv: &decision.argv,
                    reason: &reason,
                }),
                error,
            );
        }
    }
    // Recorded before it runs, as on Linux: one that cannot be recorded
    // does not run.
    audit.write(&Entry::Decided {
        decision: &decision,
        warnings: &prepared.warnings,
    })?;
    let shown = prepared.warnings.len();
    let outcome = match prepared.run(stdin) {
        Ok(outcome) => outcome,
        Err(error) => {
            let reason = error.to_string();
            return refused(
                audit.write(&Entry::Failed {
                    decision: &decision,
                    error: &reason,
                }),
                error.into(),
            );
        }
    };
    let mut outcome = outcome;
    // The command ran: its end is recorded even when its output cannot be
    // passed on, and the record says so.
    let passed_on = std::io::stdout()
        .write_all(&outcome.finished.stdout)
        .and_then(|()| std::io::stdout().flush())
        .context("cannot write the command's output to stdout")
        .and_then(|()| {
            std::io::stderr()
                .write_all(&outcome.finished.stderr)
                .context("cannot write the command's error output to stderr")
        });
    if let Err(error) = &passed_on {
        outcome.warnings.push(crate::causes(error));
    }
    // What running it added (temporary ACEs that could not be removed).
    for warning in outcome.warnings.iter().skip(shown) {
        eprintln!("execgate: warning: {warning}");
    }
    let recorded = audit.write(&Entry::Exited {
        decision: &decision,
        outcome: &outcome,
    });
    if let Err(error) = passed_on {
        return refused(recorded, error);
    }
    recorded?;
    if outcome.finished.timed_out {
        eprintln!(
            "execgate: timed out after {} s; the job was ended",
            config.timeout.as_secs()
        );
        return Ok(124);
    }
    Ok(signed(outcome.finished.exit_code))
}

/// A process's exit code (a DWORD) as the same 32 bits signed: as `exit`
/// takes them, and as the audit records and `%ERRORLEVEL%` show them.
fn signed(exit_code: u32) -> i32 {
    i32::from_ne_bytes(exit_code.to_ne_bytes())
}

/// The error that stopped a command, and, when its record could not be
/// written either, that too.
fn refused(recorded: Result<()>, error: anyhow::Error) -> Result<i32> {
    match recorded {
        Ok(()) => Err(error),
        Err(not_recorded) => Err(error.context(format!("(not recorded: {not_recorded:#})"))),
    }
}

/// The words a command was asked with, for a record of one that could not
/// be decided (for a script: its shell's name and the script).
fn requested_argv(command: &WindowsCommand) -> Vec<OsString> {
    match command {
        WindowsCommand::Program(argv) => argv.clone(),
        WindowsCommand::Script { shell, script } => vec![
            OsString::from(match shell {
                ScriptShell::Cmd => "cmd.exe",
                ScriptShell::Pwsh => "pwsh.exe",
            }),
            script.clone(),
        ],
    }
}

/// What one audit record is about.
enum Entry<'a> {
    /// The rules' decision, before the command runs (or its denial).
    Decided {
        decision: &'a WindowsDecision,
        warnings: &'a [String],
    },
    /// Execgate refused it before it ran: it could not be decided (no
    /// `decision`), or not planned, quoted or given a restricted token.
    /// Listed with the denials (`decision: deny`, `decided_by: server`).
    Refused {
        decision: Option<&'a WindowsDecision>,
        argv: &'a [OsString],
        reason: &'a str,
    },
    /// Decided and recorded, but it could not start (placing its ACEs,
    /// creating its process) or be waited for.
    Failed {
        decision: &'a WindowsDecision,
        error: &'a str,
    },
    /// It ended.
    Exited {
        decision: &'a WindowsDecision,
        outcome: &'a execgate_core_bridge::windows::WindowsOutcome,
    },
}

/// Where records go, and the session they belong to.
struct Audit<'a> {
    log: &'a Path,
    config: &'a WindowsRunConfig,
}

impl Audit<'_> {
    /// Appends `entry` as one JSON line, in the Linux records' shape
    /// (`audit/SCHEMA.md`: fields that do not apply are absent) with
    /// `execgate.sandbox`, written with one write call so that records of
    /// concurrent runs never interleave.
    fn write(&self, entry: &Entry<'_>) -> Result<()> {
        let mut line = self.record(entry).to_string();
        line.push('\n');
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Append mode: Windows moves to the end and writes in one step, for
        // every writer of the file.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .with_context(|| format!("cannot open the audit log {}", self.log.display()))?;
        // Where append mode is emulated by a move to the end and a write
        // (Wine, as a concurrent test saw: one of nine records overwritten),
        // the file's lock keeps writers apart; released as it closes. Best
        // effort: Windows itself appends whole.
        let _ = file.lock();
        // One call, never `write_all`'s loop: a line written in pieces could
        // take another writer's between them.
        let written = file
            .write(line.as_bytes())
            .with_context(|| format!("cannot write {}", self.log.display()))?;
        if written != line.len() {
            anyhow::bail!(
                "cannot write {}: the record was cut short ({written} of {} bytes)",
                self.log.display(),
                line.len()
            );
        }
        Ok(())
    }

    fn record(&self, entry: &Entry<'_>) -> serde_json::Value {
        let decision = match entry {
            Entry::Decided { decision, .. }
            | Entry::Failed { decision, .. }
            | Entry::Exited { decision, .. } => Some(*decision),
            Entry::Refused { decision, .. } => *decision,
        };
        let (verdict, execution) = match decision.map(|decision| &decision.verdict) {
            Some(WindowsVerdict::Denied(_)) | None => ("deny", None),
            Some(WindowsVerdict::Unsandboxed) => ("escalate", Some("unsandboxed".to_owned())),
            Some(WindowsVerdict::Sandboxed { execution: None }) => ("run", None),
            // As Linux records write it (probe 168: `permissions:NAME`,
            // without the grants): the grants are below.
            Some(WindowsVerdict::Sandboxed { execution: Some(_) }) => {
                ("escalate", Some("permissions".to_owned()))
            }
        };
        let grants = match decision.map(|decision| &decision.verdict) {
            Some(WindowsVerdict::Sandboxed {
                execution: Some((_, profile)),
            }) => Some(profile.grants()),
            _ => None,
        };
        let (action, success, decided, reason, error, warnings) = match entry {
            Entry::Decided { decision, warnings } => {
                let reason = match &decision.verdict {
                    WindowsVerdict::Denied(reason) => Some(reason.as_str()),
                    WindowsVerdict::Unsandboxed | WindowsVerdict::Sandboxed { .. } => None,
                };
                let decided = (verdict, execution.clone());
                (
                    "decision",
                    reason.is_none(),
                    decided,
                    reason,
                    None,
                    *warnings,
                )
            }
            Entry::Refused {
                decision, reason, ..
            } => {
                let warnings = decision.map_or(&[][..], |decision| &decision.warnings);
                let decided = ("deny", None);
                (
                    "error",
                    false,
                    decided,
                    Some(*reason),
                    Some(*reason),
                    warnings,
                )
            }
            Entry::Failed { decision, error } => (
                "error",
                false,
                (verdict, execution.clone()),
                None,
                Some(*error),
                &decision.warnings[..],
            ),
            Entry::Exited { outcome, .. } => (
                "exit",
                outcome.finished.exit_code == 0 && !outcome.finished.timed_out,
                (verdict, execution.clone()),
                None,
                None,
                &outcome.warnings[..],
            ),
        };
        let decided_by = match (entry, decision.and_then(|d| d.rule.as_ref())) {
            (Entry::Refused { .. }, _) => "server",
            (_, Some(_)) => "rule",
            (_, None) => "default",
        };
        let sandbox = match (entry, decision.map(|decision| &decision.verdict)) {
            (Entry::Exited { outcome, .. }, _) => outcome.sandbox,
            (_, Some(WindowsVerdict::Unsandboxed)) => "none",
            (_, _) => WINDOWS_SANDBOX_NAME,
        };
        let argv: Vec<std::borrow::Cow<'_, str>> = match entry {
            Entry::Refused { argv, .. } => argv.iter().map(|arg| arg.to_string_lossy()).collect(),
            Entry::Decided { decision, .. }
            | Entry::Failed { decision, .. }
            | Entry::Exited { decision, .. } => decision
                .argv
                .iter()
                .map(|arg| arg.to_string_lossy())
                .collect(),
        };
        // As the Linux records have them, so that `execgate audit` reads
        // both: an RFC 3339 time in UTC, and a session (one command is one
        // here).
        let timestamp = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        let mut record = serde_json::json!({
            "@timestamp": timestamp,
            "session_id": session_id(),
            "event": {
                "action": action,
                "outcome": if success { "success" } else { "failure" },
            },
            "process": {
                "executable": decision.map(|decision| decision.program.to_string_lossy()),
                "args_count": argv.len(),
                "args": argv,
                "working_directory": self.config.cwd.to_string_lossy(),
                // Signed, as the process's own status is and as the Linux
                // records read it (probe 168: 0xC000013A, a Ctrl-C or a
                // timeout's end, made the record unreadable there).
                "exit_code": match entry {
                    Entry::Exited { outcome, .. } => Some(signed(outcome.finished.exit_code)),
                    Entry::Decided { .. } | Entry::Refused { .. } | Entry::Failed { .. } => None,
                },
            },
            "execgate": {
                "decision": decided.0,
                "execution": decided.1,
                "grants": grants,
                "reason": reason,
                "note": decision.and_then(|decision| decision.note.as_deref()),
                "decided_by": decided_by,
                "sandbox": sandbox,
                "warnings": warnings,
            },
            "rule": decision.and_then(|decision| decision.rule.as_ref()).map(|(id, justification)| {
                serde_json::json!({ "id": id, "justification": justification })
            }),
            "error": error,
        });
        without_nulls(&mut record);
        record
    }
}

/// Removes the fields that do not apply (`null`), as the Linux records
/// leave them out.
fn without_nulls(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(fields) = value {
        fields.retain(|_, field| !field.is_null());
        fields.values_mut().for_each(without_nulls);
    }
}

/// This process's session id: its pid and when it started.
fn session_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        format!("windows-{}-{started:x}", std::process::id())
    })
}

fn doctor(json: bool) -> Result<i32> {
    let report = WindowsReport::probe();
    let show = |result: &std::result::Result<(), String>| match result {
        Ok(()) => "ok".to_owned(),
        Err(error) => format!("missing: {error}"),
    };
    let token = match &report.restricted_token {
        Ok(true) => "ok (Windows reports it restricted)".to_owned(),
        Ok(false) => "created, but Windows does not report it restricted (Wine?): \
                      writes would not be confined"
            .to_owned(),
        Err(error) => format!("missing: {error}"),
    };
    let lines = [
        ("sandbox", WINDOWS_SANDBOX_NAME.to_owned()),
        ("restricted token", token),
        ("ACL composition", show(&report.acl_composition)),
        ("job objects (kill on close)", show(&report.job_objects)),
        ("private desktop", show(&report.private_desktop)),
        (
            "reads",
            "not restricted: profiles that restrict reads are refused".to_owned(),
        ),
        (
            "network",
            "not blocked per process: restricted-network profiles are refused unless they \
             set windows_network = \"best-effort\" (proxy variables only)"
                .to_owned(),
        ),
    ];
    crate::output::stdout(|out| {
        if json {
            let map: BTreeMap<&str, &String> =
                lines.iter().map(|(key, value)| (*key, value)).collect();
            serde_json::to_writer_pretty(&mut *out, &map)?;
            writeln!(out)
        } else {
            for (key, value) in &lines {
                writeln!(out, "{key}: {value}")?;
            }
            Ok(())
        }
    })?;
    let usable = matches!(report.restricted_token, Ok(true))
        && report.acl_composition.is_ok()
        && report.job_objects.is_ok();
    Ok(if usable { 0 } else { 1 })
}

/// Rules files by their canonical paths, as Linux sessions name them: a
/// rule's id is then one whatever spelling named its file (probe 168: a
/// relative, an 8.3 and a full name gave one rule three ids). A file that
/// cannot be resolved keeps its name, and fails to load with it.
fn canonical_files(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|file| std::fs::canonicalize(file).map_or_else(|_| file.clone(), plain))
        .collect()
}
