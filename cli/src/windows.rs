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
    decide, run, ScriptShell, WindowsCommand, WindowsDecision, WindowsRunConfig, WindowsVerdict,
    WINE_UNENFORCED_TOKEN,
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_command(args),
        Command::Doctor { json } => doctor(json),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            let error = format!("{error:#}");
            eprintln!(
                "execgate: {}",
                crate::output::terminal_safe(&error, crate::output::Lines::Kept)
            );
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
    let rules = RuleSet::load(&args.rules)?;
    let mut execution_profiles = BTreeMap::new();
    for rule in rules.rules() {
        if let Some(execgate_core_bridge::rules::RuleExecution::Profile(name)) = &rule.execution {
            execution_profiles.insert(name.clone(), profiles.get(name)?);
        }
    }
    let state = state_dir()?;
    let config = WindowsRunConfig {
        profile,
        network,
        execution_profiles,
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
    let decision = decide(&config, &command)?;
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
        record(&audit_log, &config, &decision, None, Some(reason))?;
        eprintln!(
            "execgate: denied: {}",
            crate::output::terminal_safe(reason, crate::output::Lines::Escaped)
        );
        return Ok(126);
    }
    let mut stdin = Vec::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        std::io::stdin()
            .read_to_end(&mut stdin)
            .context("cannot read stdin")?;
    }
    // Recorded before it runs, as on Linux: one that cannot be recorded
    // does not run.
    record(&audit_log, &config, &decision, None, None)?;
    let outcome = match run(&config, &command, &decision, stdin) {
        Ok(outcome) => outcome,
        Err(error) => {
            record(
                &audit_log,
                &config,
                &decision,
                None,
                Some(&error.to_string()),
            )?;
            return Err(error.into());
        }
    };
    std::io::stdout().write_all(&outcome.finished.stdout)?;
    std::io::stderr().write_all(&outcome.finished.stderr)?;
    for warning in outcome.warnings.iter().skip(decision.warnings.len()) {
        eprintln!("execgate: warning: {warning}");
    }
    record(&audit_log, &config, &decision, Some(&outcome), None)?;
    if outcome.finished.timed_out {
        eprintln!(
            "execgate: timed out after {} s; the job was ended",
            config.timeout.as_secs()
        );
        return Ok(124);
    }
    Ok(i32::try_from(outcome.finished.exit_code).unwrap_or(1))
}

/// One JSON line in the audit log, with the fields of the Linux records
/// that apply (`event`, `process`, `execgate`, `rule`) and
/// `execgate.sandbox`.
fn record(
    log: &Path,
    config: &WindowsRunConfig,
    decision: &WindowsDecision,
    outcome: Option<&execgate_core_bridge::windows::WindowsOutcome>,
    error: Option<&str>,
) -> Result<()> {
    let (verdict, execution, reason) = match &decision.verdict {
        WindowsVerdict::Denied(reason) => ("deny", None, Some(reason.clone())),
        WindowsVerdict::Unsandboxed => ("escalate", Some("unsandboxed".to_owned()), None),
        WindowsVerdict::Sandboxed { execution: None } => ("run", None, None),
        WindowsVerdict::Sandboxed {
            execution: Some((name, _)),
        } => ("escalate", Some(format!("permissions:{name}")), None),
    };
    let sandbox = match (&decision.verdict, outcome) {
        (_, Some(outcome)) => outcome.sandbox,
        (WindowsVerdict::Unsandboxed, None) => "none",
        _ => WINDOWS_SANDBOX_NAME,
    };
    let mut warnings = decision.warnings.clone();
    if let Some(outcome) = outcome {
        warnings = outcome.warnings.clone();
    }
    // As the Linux records have them, so that `execgate audit` reads both:
    // an RFC 3339 time in UTC, and a session (one command is one here).
    let timestamp = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    let line = serde_json::json!({
        "@timestamp": timestamp,
        "session_id": session_id(),
        "event": {
            "action": match (outcome, error) {
                (Some(_), _) => "exit",
                (None, Some(_)) if verdict != "deny" => "error",
                (None, _) => "decision",
            },
            "outcome": if error.is_none() && verdict != "deny" { "success" } else { "failure" },
        },
        "process": {
            "executable": decision.program.to_string_lossy(),
            "args": decision.argv.iter().map(|arg| arg.to_string_lossy()).collect::<Vec<_>>(),
            "working_directory": config.cwd.to_string_lossy(),
            "exit_code": outcome.map(|outcome| outcome.finished.exit_code),
        },
        "execgate": {
            "decision": verdict,
            "execution": execution,
            "reason": reason,
            "note": decision.note,
            "decided_by": if decision.rule.is_some() { "rule" } else { "default" },
            "sandbox": sandbox,
            "warnings": warnings,
        },
        "rule": decision.rule.as_ref().map(|(id, justification)| serde_json::json!({
            "id": id,
            "justification": justification,
        })),
        "error": error,
    });
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the audit log {}", log.display()))?;
    writeln!(file, "{line}").with_context(|| format!("cannot write {}", log.display()))?;
    Ok(())
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
