//! One command on Windows: decided by the rules on the resolved program,
//! then run with the restricted token of its profile (or, when a rule
//! escalates it unsandboxed, with the caller's token).
//!
//! Windows has no exec hook like the patched zsh's: what a program starts
//! is not decided one by one. A script given to `cmd` or `pwsh` is decided
//! as that shell, and the result says so in its warnings. Everything it
//! starts runs with the same restricted token, in the same job object.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use execgate_rules::{
    fold_windows_name, Evaluation, MatchOptions, RuleDecision, RuleExecution, RuleSet,
};
use execgate_sandbox::windows::{
    self as backend, Command, Finished, PlacedAces, PrivateDesktop, RestrictedToken, Running,
    TokenChoice, TokenEnforcement, UnenforcedToken,
};
use execgate_sandbox::windows_plan::{
    cmd_command_line, cmd_script_line, command_line, environment_block, escalation_refusal,
    path_beyond_sandbox, pwsh_script_line, sandbox_writable_paths, PathEntryFound, PathKind,
    SidStore, WinPath, WindowsContext, WindowsNetwork, WindowsPlan, WindowsPlanError,
    WINDOWS_SANDBOX_NAME,
};
use execgate_sandbox::PermissionProfile;

/// Why a Windows command could not be decided or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowsRunError {
    #[error("{0}: not found on PATH (with PATHEXT) or not a file")]
    NotFound(String),
    /// In the working directory, which is not searched: a program the
    /// sandbox can write there would otherwise take a name's place.
    #[error(
        "{0}: not found on PATH (with PATHEXT); the working directory is not searched: name it \
         by its path (.\\{0})"
    )]
    OnlyInWorkingDirectory(String),
    /// The rules denied it; it is not prepared.
    #[error("denied: {0}")]
    Denied(String),
    #[error(
        "execgate's state directory {state} is writable from the sandbox (through {root}): \
         the command could rewrite the capability SIDs later runs restrict their tokens with; \
         run it from a directory that does not hold %LOCALAPPDATA%\\execgate"
    )]
    StateInReach { state: String, root: String },
    #[error(transparent)]
    Plan(#[from] WindowsPlanError),
    #[error(transparent)]
    Backend(#[from] backend::WindowsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which shell interprets a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptShell {
    Cmd,
    Pwsh,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowsCommand {
    /// A program and its arguments.
    Program(Vec<OsString>),
    /// A script for `cmd` or `pwsh`.
    Script {
        shell: ScriptShell,
        script: OsString,
    },
}

/// The session around one command.
pub struct WindowsRunConfig {
    pub profile: PermissionProfile,
    pub network: WindowsNetwork,
    /// Profiles that rules may name as their `execution`.
    pub execution_profiles: BTreeMap<String, PermissionProfile>,
    /// The `windows_network` those profiles set themselves: for a command
    /// with a rule's profile it wins over the session's `network`.
    pub execution_networks: BTreeMap<String, WindowsNetwork>,
    pub rules: RuleSet,
    pub cwd: PathBuf,
    pub workspace_roots: Vec<PathBuf>,
    /// Where capability SIDs are kept.
    pub state_dir: PathBuf,
    pub timeout: Duration,
    /// Whether a token Windows does not report restricted may be used:
    /// only under Wine, for its tests ([`WINE_UNENFORCED_TOKEN`]).
    pub unenforced_token: UnenforcedToken,
}

/// The environment variable that lets `execgate run` use a token Windows
/// does not report restricted, under Wine only (which enforces no token
/// and no DACL, so its tests could run nothing otherwise). Set to `1`. On
/// Windows it changes nothing: such a token is always refused.
pub const WINE_UNENFORCED_TOKEN: &str = "EXECGATE_WINE_UNENFORCED_TOKEN";

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowsVerdict {
    /// The session's profile, plus a rule's named profile when it has one.
    Sandboxed {
        execution: Option<(String, PermissionProfile)>,
    },
    /// A rule escalates it out of the sandbox: the caller's token.
    Unsandboxed,
    Denied(String),
}

/// A decision and what it was made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsDecision {
    /// The resolved program (for a script: the shell).
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    pub verdict: WindowsVerdict,
    /// `file:line` and justification of the deciding rule.
    pub rule: Option<(String, Option<String>)>,
    /// Why the verdict differs from what the rule asked for (an escalation
    /// refused: the command runs in place, in the sandbox), as the Linux
    /// records' `execgate.note`.
    pub note: Option<String>,
    pub warnings: Vec<String>,
}

/// How a command ended, for the CLI and the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsOutcome {
    pub finished: Finished,
    /// `windows-restricted-token`, or `none` for an unsandboxed run.
    pub sandbox: &'static str,
    pub warnings: Vec<String>,
}

fn wide(text: &OsStr) -> Vec<u16> {
    text.encode_wide().collect()
}

/// `\\?\C:\x` as `C:\x` (what CreateProcess and people expect).
pub fn plain(path: PathBuf) -> PathBuf {
    let text = path.to_string_lossy();
    match text.strip_prefix(r"\\?\") {
        Some(rest) if !rest.starts_with("UNC\\") => PathBuf::from(rest),
        _ => path,
    }
}

/// The program `name` stands for: a path (against `cwd`) when it holds a
/// separator, else the first `PATH` entry holding it, trying `PATHEXT`'s
/// extensions. The current directory is not searched (unlike
/// `CreateProcess`), so a file planted in the workspace cannot stand in for
/// a program.
pub fn resolve_program(name: &OsStr, cwd: &Path) -> Result<PathBuf, WindowsRunError> {
    let text = name.to_string_lossy();
    let not_found = || WindowsRunError::NotFound(text.to_string());
    let by_path = text.contains(['\\', '/', ':']);
    let extensions: Vec<String> = std::env::var("PATHEXT")
        .unwrap_or_else(|_| ".COM;.EXE;.BAT;.CMD".into())
        .split(';')
        .filter(|ext| !ext.is_empty())
        .map(str::to_owned)
        .collect();
    let has_extension = Path::new(name).extension().is_some();
    // `name` in `dir`, as `PATH` is searched: itself when it has an
    // extension, then with each of `PATHEXT`'s.
    let in_dir = |dir: &Path| {
        let with_extensions = extensions.iter().map(|ext| {
            let mut file = name.to_os_string();
            file.push(ext);
            dir.join(file)
        });
        has_extension
            .then(|| dir.join(name))
            .into_iter()
            .chain(with_extensions)
            .collect::<Vec<_>>()
    };
    let candidates: Vec<PathBuf> = if by_path {
        vec![cwd.join(name)]
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .filter(|dir| dir.is_absolute())
            .flat_map(|dir| in_dir(&dir))
            .collect()
    };
    for candidate in candidates {
        if candidate.is_file() {
            return std::fs::canonicalize(&candidate)
                .map(plain)
                .map_err(|source| WindowsRunError::Io {
                    what: format!("cannot resolve {}", candidate.display()),
                    source,
                });
        }
    }
    if !by_path && in_dir(cwd).iter().any(|candidate| candidate.is_file()) {
        return Err(WindowsRunError::OnlyInWorkingDirectory(text.to_string()));
    }
    Err(not_found())
}

/// The rules that match `argv`, whose program is `program`, as Windows
/// names files: without regard to case (probe 146: `forbidden` on
/// `whoami.exe` passed over `WHOAMI.EXE`). The rules on its path, else on
/// its names, `whoami.exe` and `whoami`, together (the strictest decides).
/// A `host_executable` pin under either name keeps what those loosen to
/// the paths it lists; what they forbid holds for every program of that
/// name.
fn evaluate_folded(rules: &RuleSet, program: &Path, argv: &[OsString]) -> Evaluation {
    let rules = rules.clone().folded_for_windows();
    let folded = |name: &OsStr| OsString::from(fold_windows_name(&name.to_string_lossy()));
    let path = folded(program.as_os_str());
    let mut asked = argv.to_vec();
    asked[0] = path.clone();
    let evaluation = rules.check_os(&asked, MatchOptions::default());
    if !evaluation.matched.is_empty() {
        return evaluation;
    }
    let mut names: Vec<OsString> = [program.file_name(), program.file_stem()]
        .into_iter()
        .flatten()
        .map(folded)
        .collect();
    names.dedup();
    let mut pins = names
        .iter()
        .filter_map(|name| rules.host_executable(&name.to_string_lossy()))
        .flatten()
        .peekable();
    let pinned_here = pins.peek().is_none() || pins.any(|pinned| pinned.as_os_str() == path);
    let mut matched = Vec::new();
    for name in names {
        asked[0] = name;
        matched.extend(rules.check_os(&asked, MatchOptions::default()).matched);
    }
    if !pinned_here {
        matched.retain(|rule| rule.decision == RuleDecision::Forbidden);
    }
    Evaluation { matched }
}

/// Decides `command` on its resolved program, with the rules as
/// [`evaluate_folded`] reads them.
pub fn decide(
    config: &WindowsRunConfig,
    command: &WindowsCommand,
) -> Result<WindowsDecision, WindowsRunError> {
    let mut warnings = Vec::new();
    let (program, mut argv) = match command {
        WindowsCommand::Program(argv) => {
            let Some(first) = argv.first() else {
                return Err(WindowsRunError::NotFound("(empty command)".into()));
            };
            (resolve_program(first, &config.cwd)?, argv.clone())
        }
        WindowsCommand::Script { shell, script } => {
            let (name, shell) = match shell {
                // The system's own, never one found on PATH.
                ScriptShell::Cmd => ("cmd.exe", backend::system_cmd_exe()?),
                ScriptShell::Pwsh => (
                    "pwsh.exe",
                    resolve_program(OsStr::new("pwsh.exe"), &config.cwd)?,
                ),
            };
            warnings.push(format!(
                "the script's inner commands are not decided one by one on Windows: the rules \
                 decided on {name}, and everything the script starts runs as it does"
            ));
            (shell, vec![OsString::from(name), script.clone()])
        }
    };
    argv[0] = program.clone().into_os_string();
    let evaluation = evaluate_folded(&config.rules, &program, &argv);
    let Some(rule) = evaluation.deciding_rule() else {
        return Ok(WindowsDecision {
            program,
            argv,
            verdict: WindowsVerdict::Sandboxed { execution: None },
            rule: None,
            note: None,
            warnings,
        });
    };
    let rule_ref = Some((rule.origin.to_string(), rule.justification.clone()));
    let verdict = match (rule.decision, &rule.execution) {
        (RuleDecision::Forbidden, _) => WindowsVerdict::Denied(match &rule.justification {
            Some(why) => format!("forbidden by {}: {why}", rule.origin),
            None => format!("forbidden by {}", rule.origin),
        }),
        (RuleDecision::Prompt, _) => WindowsVerdict::Denied(format!(
            "{} asks for approval, and the Windows CLI cannot ask yet",
            rule.origin
        )),
        (RuleDecision::Allow, None | Some(RuleExecution::Unsandboxed)) => {
            WindowsVerdict::Unsandboxed
        }
        (RuleDecision::Allow, Some(RuleExecution::TurnDefault)) => {
            WindowsVerdict::Sandboxed { execution: None }
        }
        (RuleDecision::Allow, Some(RuleExecution::Profile(name))) => {
            match config.execution_profiles.get(name) {
                Some(profile) => WindowsVerdict::Sandboxed {
                    execution: Some((name.clone(), profile.clone())),
                },
                None => WindowsVerdict::Denied(format!(
                    "rule {} names unknown profile {name:?}",
                    rule.origin
                )),
            }
        }
    };
    // A rule matched on a name or a path escalates what the sandbox could
    // have planted there: refused, it runs in place, in the sandbox.
    let beyond_sandbox = match &verdict {
        WindowsVerdict::Unsandboxed | WindowsVerdict::Sandboxed { execution: Some(_) } => true,
        WindowsVerdict::Sandboxed { execution: None } | WindowsVerdict::Denied(_) => false,
    };
    let mut note = None;
    let mut verdict = verdict;
    if beyond_sandbox {
        let writable = writable_paths(config)?;
        let resolved = win_path(&program)?;
        note = escalation_refusal(&resolved, &writable.sandbox, &writable.granted);
        if note.is_some() {
            verdict = WindowsVerdict::Sandboxed { execution: None };
        }
    }
    Ok(WindowsDecision {
        program,
        argv,
        verdict,
        rule: rule_ref,
        note,
        warnings,
    })
}

/// What the session's sandbox can write, and what the rules' profiles
/// (every grant known in advance) can write besides.
struct WritablePaths {
    sandbox: Vec<WinPath>,
    granted: Vec<WinPath>,
}

impl WritablePaths {
    fn all(&self) -> Vec<WinPath> {
        self.sandbox.iter().chain(&self.granted).cloned().collect()
    }
}

fn writable_paths(config: &WindowsRunConfig) -> Result<WritablePaths, WindowsRunError> {
    let probe = |path: &WinPath| backend::probe(path);
    let context = session_context(config, &probe)?;
    let grants: Vec<&PermissionProfile> = config.execution_profiles.values().collect();
    Ok(WritablePaths {
        sandbox: with_canonical_forms(sandbox_writable_paths(&[&config.profile], &context)?),
        granted: with_canonical_forms(sandbox_writable_paths(&grants, &context)?),
    })
}

/// Refuses a sandbox that could write execgate's state directory: a
/// capability SID written there (the user's own, a group's) would become a
/// restricting SID of a later run's token, which would then write wherever
/// the user can.
fn refuse_state_in_reach(config: &WindowsRunConfig) -> Result<(), WindowsRunError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| WindowsRunError::Io {
        what: format!("cannot make {}", config.state_dir.display()),
        source,
    })?;
    let state = win_path(&config.state_dir)?;
    match writable_paths(config)?
        .all()
        .into_iter()
        .find(|root| state.starts_with(root))
    {
        Some(root) => Err(WindowsRunError::StateInReach {
            state: state.to_string(),
            root: root.to_string(),
        }),
        None => Ok(()),
    }
}

/// The writable root through which the session's sandbox, or a rule's
/// profile, could write `path`, if any: a command could then change what
/// is there (forge an audit log's records). `path`'s nearest ancestor that
/// exists decides, and so does every link or junction on the way as
/// written, whose directory the sandbox could write: it could point it
/// elsewhere (a review; Wine makes no directory links, so
/// `scripts/windows-smoke.ps1` checks this one on Windows).
pub fn writable_root_over(
    config: &WindowsRunConfig,
    path: &Path,
) -> Result<Option<String>, WindowsRunError> {
    // Where it is opened: a relative path from this process's directory
    // (a review: `logs\a.jsonl`, not there yet, had no ancestor to judge).
    let path = &std::path::absolute(path).map_err(|source| WindowsRunError::Io {
        what: format!("cannot resolve {}", path.display()),
        source,
    })?;
    let roots = writable_paths(config)?.all();
    let under_a_root = |place: &Path| -> Result<Option<String>, WindowsRunError> {
        let place = win_path(place)?;
        Ok(roots
            .iter()
            .find(|root| place.starts_with(root))
            .map(ToString::to_string))
    };
    let links = path.ancestors().filter(|place| {
        std::fs::symlink_metadata(place).is_ok_and(|meta| meta.file_type().is_symlink())
    });
    for link in links {
        if let Some(root) = link.parent().map(under_a_root).transpose()?.flatten() {
            return Ok(Some(root));
        }
    }
    match path.ancestors().find(|place| place.exists()) {
        Some(existing) => under_a_root(existing),
        None => Ok(None),
    }
}

/// `paths` and, for those that exist, their canonical forms: a profile's
/// path spelled through a junction or an 8.3 name must still cover the
/// canonical paths that programs and `PATH` entries resolve to.
fn with_canonical_forms(paths: Vec<WinPath>) -> Vec<WinPath> {
    let mut all = paths.clone();
    for path in &paths {
        if let Ok(canonical) = win_path(Path::new(&path.to_string())) {
            all.push(canonical);
        }
    }
    all.sort();
    all.dedup();
    all
}

/// Replaces `name` (compared without case, as Windows does) with `value`.
fn set_variable(variables: &mut Vec<(Vec<u16>, Vec<u16>)>, name: &str, value: &str) {
    variables
        .retain(|(existing, _)| !String::from_utf16_lossy(existing).eq_ignore_ascii_case(name));
    variables.push((
        name.encode_utf16().collect(),
        value.encode_utf16().collect(),
    ));
}

/// What the special roots stand for in this session.
fn session_context<'probe>(
    config: &WindowsRunConfig,
    probe: &'probe dyn Fn(&WinPath) -> PathKind,
) -> Result<WindowsContext<'probe>, WindowsRunError> {
    let mut temp_dirs = Vec::new();
    for variable in ["TEMP", "TMP"] {
        if let Some(dir) = std::env::var_os(variable) {
            let dir = win_path(Path::new(&dir))?;
            if !temp_dirs.contains(&dir) {
                temp_dirs.push(dir);
            }
        }
    }
    let workspace_roots = config
        .workspace_roots
        .iter()
        .map(|root| win_path(root))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WindowsContext {
        cwd: win_path(&config.cwd)?,
        temp_dirs,
        workspace_roots,
        homes: homes(),
        probe,
        canonical: &canonical,
    })
}

/// The user's homes, canonical: `%USERPROFILE%` and the profile directory
/// Windows reports for this process's user (either is where the user's
/// startup files are read from). One that does not resolve is left out,
/// as is a volume's root (which the planner refuses to write anyway).
fn homes() -> Vec<WinPath> {
    let mut homes: Vec<WinPath> = std::env::var_os("USERPROFILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(backend::profile_directory().ok())
        .filter(|home| home.is_absolute())
        .filter_map(|home| win_path(&home).ok())
        .filter(|home| home.depth() > 0)
        .collect();
    homes.sort();
    homes.dedup();
    homes
}

/// A profile's path as Windows opens it, for the planner: see
/// [`resolve_path_entry`].
fn canonical(path: &WinPath) -> Option<WinPath> {
    match resolve_path_entry(path) {
        PathEntryFound::Canonical(canonical) => Some(canonical),
        PathEntryFound::Nowhere | PathEntryFound::Unresolvable => None,
    }
}

/// A `PATH` entry as it resolves on disk (`std::fs::canonicalize`, which
/// is `GetFinalPathNameByHandleW`, as for the program): for one that does
/// not exist yet, its nearest existing ancestor resolved, with the missing
/// names after it.
fn resolve_path_entry(entry: &WinPath) -> PathEntryFound {
    let mut existing = PathBuf::from(entry.to_string());
    let mut missing: Vec<OsString> = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(canonical) => {
                let Ok(mut resolved) = WinPath::parse(&plain(canonical).to_string_lossy()) else {
                    return PathEntryFound::Unresolvable;
                };
                for name in missing.iter().rev() {
                    match resolved.join(&name.to_string_lossy()) {
                        Ok(joined) => resolved = joined,
                        Err(_) => return PathEntryFound::Unresolvable,
                    }
                }
                return PathEntryFound::Canonical(resolved);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(OsStr::to_os_string) else {
                    return PathEntryFound::Nowhere;
                };
                missing.push(name);
                if !existing.pop() {
                    return PathEntryFound::Nowhere;
                }
            }
            Err(_) => return PathEntryFound::Unresolvable,
        }
    }
}

fn win_path(path: &Path) -> Result<WinPath, WindowsRunError> {
    let canonical =
        std::fs::canonicalize(path)
            .map(plain)
            .map_err(|source| WindowsRunError::Io {
                what: format!("cannot resolve {}", path.display()),
                source,
            })?;
    Ok(WinPath::parse(&canonical.to_string_lossy())?)
}

/// A decided command made ready to start: its command line, environment,
/// plan and token, with every refusal of the planner and the backend
/// already made. Nothing on disk has changed yet (the capability SIDs
/// aside), so a command that cannot be prepared is a denial.
pub struct Prepared {
    application: Vec<u16>,
    line: Vec<u16>,
    environment: Vec<u16>,
    current_directory: Vec<u16>,
    plan: Option<WindowsPlan>,
    token: Option<RestrictedToken>,
    desktop: Option<PrivateDesktop>,
    timeout: Duration,
    /// `windows-restricted-token`, or `none` for an unsandboxed run.
    pub sandbox: &'static str,
    /// The decision's warnings and those of preparing it.
    pub warnings: Vec<String>,
}

/// Prepares a decided command: everything up to placing ACEs and
/// starting it. Denied commands are refused here too.
pub fn prepare(
    config: &WindowsRunConfig,
    command: &WindowsCommand,
    decision: &WindowsDecision,
) -> Result<Prepared, WindowsRunError> {
    let mut warnings = decision.warnings.clone();
    let mut variables: Vec<(Vec<u16>, Vec<u16>)> = std::env::vars_os()
        .map(|(name, value)| (wide(&name), wide(&value)))
        .collect();
    let program = wide(decision.program.as_os_str());
    let (application, line) = match command {
        WindowsCommand::Script {
            shell: ScriptShell::Cmd,
            script,
        } => (program.clone(), cmd_script_line(&program, &wide(script))?),
        WindowsCommand::Script {
            shell: ScriptShell::Pwsh,
            script,
        } => (program.clone(), pwsh_script_line(&program, &wide(script))?),
        WindowsCommand::Program(argv) => {
            let mut args: Vec<Vec<u16>> = argv.iter().map(|arg| wide(arg)).collect();
            args[0] = program.clone();
            let extension = decision
                .program
                .extension()
                .map(|ext| ext.to_string_lossy().to_lowercase());
            if matches!(extension.as_deref(), Some("bat" | "cmd")) {
                // The system's cmd.exe: PATH may hold a directory the
                // sandbox can write.
                let cmd = wide(backend::system_cmd_exe()?.as_os_str());
                (cmd.clone(), cmd_command_line(&cmd, &args)?)
            } else {
                (program.clone(), command_line(&args)?)
            }
        }
    };
    let (sandbox, plan) = match &decision.verdict {
        WindowsVerdict::Denied(reason) => return Err(WindowsRunError::Denied(reason.clone())),
        WindowsVerdict::Unsandboxed => ("none", None),
        WindowsVerdict::Sandboxed { execution } => {
            let probe = |path: &WinPath| backend::probe(path);
            let context = session_context(config, &probe)?;
            // The rule's profile's own setting, if it has one: its author
            // chose for the commands it runs.
            let network = execution
                .as_ref()
                .and_then(|(name, _)| config.execution_networks.get(name))
                .copied()
                .unwrap_or(config.network);
            refuse_state_in_reach(config)?;
            let mut sids = SidStore::load(&config.state_dir)?;
            let plan = WindowsPlan::new(
                &config.profile,
                execution.as_ref().map(|(_, profile)| profile),
                &context,
                network,
                &mut sids,
            )?;
            sids.save(&config.state_dir)?;
            if let Some(warning) = plan.network.warning() {
                warnings.push(warning.to_owned());
            }
            if let execgate_sandbox::windows_plan::NetworkPlan::BestEffort { environment } =
                &plan.network
            {
                for (name, value) in environment {
                    set_variable(&mut variables, name, value);
                }
            }
            (WINDOWS_SANDBOX_NAME, Some(plan))
        }
    };
    // No child searches its current directory for the programs it runs by
    // name (cmd.exe and CreateProcess do by default): the working directory
    // is the sandbox's to write.
    set_variable(&mut variables, "NoDefaultCurrentDirectoryInExePath", "1");
    let beyond_sandbox = match &decision.verdict {
        WindowsVerdict::Unsandboxed | WindowsVerdict::Sandboxed { execution: Some(_) } => true,
        WindowsVerdict::Sandboxed { execution: None } | WindowsVerdict::Denied(_) => false,
    };
    if beyond_sandbox {
        // What the session's sandbox and every grant known in advance can
        // write, as on Linux.
        let writable = writable_paths(config)?.all();
        let caller_path = variables
            .iter()
            .find(|(name, _)| String::from_utf16_lossy(name).eq_ignore_ascii_case("PATH"))
            .map(|(_, value)| String::from_utf16_lossy(value));
        if let Some(caller_path) = caller_path {
            let (kept, dropped) = path_beyond_sandbox(&caller_path, &writable, &resolve_path_entry);
            if !dropped.is_empty() {
                warnings.push(format!(
                    "left out of PATH, as the sandbox can write them or they are relative: {}",
                    dropped.join(";")
                ));
            }
            set_variable(&mut variables, "PATH", &kept);
        }
    }
    let environment = environment_block(&variables)?;
    let token = match &plan {
        Some(plan) => Some(RestrictedToken::create(
            &plan.token,
            config.unenforced_token,
        )?),
        None => None,
    };
    if token.as_ref().map(RestrictedToken::enforcement)
        == Some(TokenEnforcement::NotEnforcedUnderWine)
    {
        warnings.push(format!(
            "the token is not enforced: Wine ignores restricting SIDs and file DACLs, so \
             writes are not confined ({WINE_UNENFORCED_TOKEN} is set)"
        ));
    }
    let desktop = match &plan {
        Some(plan) if PrivateDesktop::wanted() => {
            Some(PrivateDesktop::create(&[plan.token.launch_sid])?)
        }
        Some(_) => {
            // Said, not silent: the command then shares the desktop of the
            // session it runs in, with the job's UI limits only.
            warnings.push(
                "no private desktop: SSH_CONNECTION or SSH_CLIENT is set, so the command runs \
                 on the session's desktop, with the job's UI limits (no clipboard, no other \
                 processes' windows, no desktop switch, no system settings, no log-off)"
                    .to_owned(),
            );
            None
        }
        None => None,
    };
    Ok(Prepared {
        application,
        line,
        environment,
        current_directory: wide(config.cwd.as_os_str()),
        plan,
        token,
        desktop,
        timeout: config.timeout,
        sandbox,
        warnings,
    })
}

impl Prepared {
    /// Places the plan's ACEs, runs the command and waits for it (at most
    /// the timeout), then removes the ACEs granted for it alone.
    pub fn run(self, stdin: Vec<u8>) -> Result<WindowsOutcome, WindowsRunError> {
        // Removed on every way out of here, the `?`s included.
        let placed = match &self.plan {
            Some(plan) => Some(PlacedAces::place(plan)?),
            None => None,
        };
        let started = Running::start(Command {
            token: match &self.token {
                Some(token) => TokenChoice::Restricted(token),
                None => TokenChoice::Caller,
            },
            application: Some(self.application),
            command_line: self.line,
            environment: self.environment,
            current_directory: self.current_directory,
            desktop: self.desktop.as_ref(),
            stdin,
        });
        let mut warnings = self.warnings;
        let finished = started.and_then(|running| {
            // A Ctrl-C ends the command's tree, not execgate, which then
            // removes the temporary ACEs below.
            if let Err(error) = running.end_on_console_interrupt() {
                warnings.push(format!(
                    "a Ctrl-C would end execgate before it removes temporary ACEs: {error}"
                ));
            }
            running.wait(self.timeout)
        });
        let removed = placed.map(PlacedAces::remove).transpose();
        let finished = match (finished, removed) {
            (Ok(finished), Ok(_)) => finished,
            // The command ran: its output and status are kept, and what
            // was left is said on stderr and in the audit record.
            (Ok(finished), Err(cleanup)) => {
                warnings.push(cleanup.to_string());
                finished
            }
            (Err(error), Ok(_)) => return Err(error.into()),
            (Err(error), Err(cleanup)) => {
                return Err(backend::WindowsError::CleanupFailed {
                    error: Box::new(error),
                    cleanup: Box::new(cleanup),
                }
                .into())
            }
        };
        Ok(WindowsOutcome {
            finished,
            sandbox: self.sandbox,
            warnings,
        })
    }
}
