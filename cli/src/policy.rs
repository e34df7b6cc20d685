//! `execgate policy check|lint`: what the rules say, without running
//! anything.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use execgate_core_bridge::rules::{
    lint_with, CheckReport, Destination, LintContext, LintFinding, MatchOptions,
    NetworkCheckReport, PathState, Protocol, RuleDecision, RuleExecution, RuleSet, Severity,
};
use execgate_core_bridge::server::sandbox::{PermissionProfile, ProfileSet};
use execgate_network_proxy::{classify, AddressClass, DomainPattern, ListDecision};

use crate::config::Config;
use execgate_core_bridge::SkillRegistry;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Print, as JSON, the rules that match a command line and the decision
    /// (the shape of `codex execpolicy check`, plus each rule's file:line
    /// and execution, the program decided on and the execution that
    /// applies).
    #[command(group(
        // The rules come from --rules, from a session's (--as-run) or both:
        // a missing source names the two.
        clap::ArgGroup::new("rules_from")
            .args(["rules", "as_run"])
            .required(true)
            .multiple(true)
    ))]
    Check {
        /// A rules file; repeat to merge several, in order. With --as-run,
        /// added to the config's, as a session adds them.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// Let an absolute program path match its basename's rules (their
        /// allow and prompt rules only for paths `host_executable` lists,
        /// where it lists any; their forbidden rules for every path).
        #[arg(long)]
        resolve_host_executables: bool,
        /// Decide as `execgate run` does: with the config's rules before
        /// those --rules names, and its profiles; a program without a
        /// slash looked up in the PATH a session's shell gets (the config's
        /// `[env]` applied to this environment; `zsh` is the session's
        /// own), its path canonicalized (symlinks resolved), then the rules
        /// of that exact path, else its basename's (implies
        /// --resolve-host-executables).
        #[arg(long)]
        as_run: bool,
        /// With --as-run: the config file whose rules, profiles and `[env]`
        /// a session would take (default:
        /// $XDG_CONFIG_HOME/execgate/config.toml, if there is one).
        #[arg(long, value_name = "FILE", requires = "as_run")]
        config: Option<PathBuf>,
        /// With --as-run: the profile a session would run in (default: the
        /// config's `default_profile`, else workspace-write), whose sandbox
        /// hides what the session's shell does not find.
        #[arg(long, value_name = "NAME", requires = "as_run")]
        profile: Option<String>,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
        /// Check a connection instead of a command line: the
        /// `network_rule`s that match HOST:PORT (`[v6]:PORT` for IPv6), with
        /// --as-run the config's too. The rules alone: a limited profile's `domains` lists decide before
        /// every rule but `forbidden` (`policy lint --config` names the
        /// rules they take over).
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "argv")]
        network: Option<String>,
        /// With --network: how the connection is made. Default: https.
        // clap lets `requires` pass where --network may be missing (beside
        // a command line, which it conflicts with): the flag was read and
        // ignored. So it conflicts with a command line too.
        #[arg(long, value_enum, requires = "network", conflicts_with = "argv")]
        protocol: Option<NetworkProtocol>,
        /// The command line: program first.
        #[arg(
            trailing_var_arg = true,
            required_unless_present = "network",
            value_name = "ARGV"
        )]
        argv: Vec<std::ffi::OsString>,
    },
    /// Warn about allow and prompt rules on programs that run whatever
    /// their arguments say (interpreters, shells, command runners), about
    /// network rules open to every host, about absolute paths a session
    /// never sees (symlinks, paths that do not exist here), names not found
    /// in PATH, tokens only a look-alike matches (whitespace at an end, a
    /// program name that is not printable ASCII) or the shell expands
    /// first (`~/`, `$HOME`, `=cmd`, a `*` alone), and forbidden or prompt rules on names a zsh
    /// module makes builtins (`rm` after `zmodload zsh/files`); report as
    /// errors `execution` profiles the config (or, without one, the
    /// presets) does not define. Exits 1 when there are warnings, 2 when
    /// there are errors, 125 when a rules file or the config does not load
    /// (the error names the file and line).
    Lint {
        /// A rules file; repeat for several. Linted after the config
        /// file's, with them, as a session loads both.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// The config file whose profiles `execution` may name, and whose
        /// rules are linted with those of --rules. Default:
        /// $XDG_CONFIG_HOME/execgate/config.toml (a missing default file
        /// is fine: then only the presets are profiles).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per finding.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum NetworkProtocol {
    /// An HTTP CONNECT tunnel.
    Https,
    /// A plain HTTP request forwarded by the proxy.
    Http,
    /// A SOCKS5 CONNECT.
    Socks5Tcp,
}

fn print_json(report: &impl serde::Serialize, pretty: bool) -> Result<()> {
    let json = if pretty {
        serde_json::to_string_pretty(report)?
    } else {
        serde_json::to_string(report)?
    };
    // Rules files come with repositories: their text is someone else's.
    let json = crate::output::json_terminal_safe(json);
    crate::output::stdout(|out| writeln!(out, "{json}"))
}

/// `policy lint`'s exit status with warnings only, and with an error.
const LINT_WARNINGS: i32 = 1;
const LINT_ERRORS: i32 = 2;

pub fn run(command: PolicyCommand) -> Result<i32> {
    match command {
        PolicyCommand::Check {
            rules,
            as_run,
            config,
            network: Some(network),
            protocol,
            pretty,
            ..
        } => {
            let (rules, _) = rules_to_check(&rules, as_run, config.as_deref(), None)?;
            let (destination, port) = Destination::parse_authority(&network, None)?;
            let protocol = match protocol.unwrap_or(NetworkProtocol::Https) {
                NetworkProtocol::Https => Protocol::Https,
                NetworkProtocol::Http => Protocol::Http,
                NetworkProtocol::Socks5Tcp => Protocol::Socks5Tcp,
            };
            let evaluation = rules.check_network(&destination, port, protocol);
            let mut report = NetworkCheckReport::from(&evaluation);
            // Probe 162: `allow` for an address every session refuses.
            if let (Destination::Address(address), Some("allow")) = (&destination, report.decision)
            {
                if let AddressClass::NonPublic(range) = classify(*address) {
                    report.note = Some(format!(
                        "{address} is {range}: a session refuses it all the same, unless a \
                         domains entry in the profile names it exactly"
                    ));
                }
            }
            print_json(&report, pretty)?;
            Ok(0)
        }
        PolicyCommand::Check {
            rules,
            resolve_host_executables,
            as_run,
            config,
            profile,
            pretty,
            mut argv,
            network: None,
            ..
        } => {
            let (rules, mut session) =
                rules_to_check(&rules, as_run, config.as_deref(), profile.as_deref())?;
            let mut found = None;
            let mut external = false;
            if let Some(session) = &mut session {
                let past = past_precommand_modifiers(argv)?;
                argv = past.argv;
                external = past.external;
                if let Some(path) = past.path {
                    session.path = path;
                }
            }
            let program = argv.first().and_then(|program| program.to_str());
            if let Some(session) = &session {
                if let Some(program) = program.filter(|program| !external && !program.contains('/'))
                {
                    let builtins = ShellBuiltins::of([program]);
                    if builtins.always.contains(program) {
                        crate::stderr::line(&format!(
                            "execgate: {program} is a zsh builtin: in a session the shell runs \
                             it itself, and never asks; what follows is for an executable \
                             named {program} run by path or by another program"
                        ));
                    } else if let Some(module) = builtins.by_module.get(program) {
                        crate::stderr::line(&format!(
                            "execgate: {program} is a builtin of zsh's {module} module: after \
                             `zmodload {module}` a session's shell runs it itself (in its \
                             sandbox), and never asks; what follows is for the program"
                        ));
                    }
                }
                if let Some(program) = argv.first_mut() {
                    let (as_found, canonical) = program_as_run(program, session)?;
                    found = Some(as_found);
                    *program = canonical.into_os_string();
                }
            }
            let options = MatchOptions {
                resolve_host_executables: resolve_host_executables || as_run,
            };
            // As a session decides: a `forbidden` rule on the name found
            // holds for the program it links to.
            let evaluation = match &found {
                // As the server names a path that climbs to the program,
                // with its directory resolved too (probe 238).
                Some(found) => rules.check_os_as_found_either(
                    &argv,
                    found.as_os_str(),
                    execgate_core_bridge::server::climbing_path_resolved(found)
                        .as_deref()
                        .map(Path::as_os_str),
                    options,
                ),
                None => rules.check_os(&argv, options),
            };
            let report = match as_run {
                true => CheckReport::as_run(
                    &evaluation,
                    argv.first()
                        .map(|program| program.to_string_lossy().into_owned()),
                ),
                false => CheckReport::from(&evaluation),
            };
            print_json(&report, pretty)?;
            if !as_run {
                let program = argv.first().and_then(|program| program.to_str());
                let by_name = program
                    .filter(|_| evaluation.deciding_rule().is_none() && !resolve_host_executables)
                    .and_then(|program| decided_by_its_name_in_a_session(program, &rules));
                if let Some(hint) = program.and_then(renamed_in_a_session).or(by_name) {
                    crate::stderr::line(&hint);
                }
            }
            let escalates = evaluation
                .deciding_rule()
                .is_some_and(|rule| rule.decision != RuleDecision::Forbidden);
            // Probe 227: `xzcat` is `xz`, which a session escalates only
            // by that name.
            let refused_for_its_name = match (&found, argv.first(), &session) {
                (Some(found), Some(program), Some(session)) if escalates => {
                    execgate_core_bridge::found_by_another_name(
                        found,
                        Path::new(program),
                        &|path: &Path| {
                            session
                                .sandbox
                                .as_ref()
                                .is_some_and(|view| view.may_write(path))
                        },
                    )
                }
                _ => None,
            };
            // Probe 232: a skill's script read as one that runs in place.
            let skill = match (argv.first(), &session) {
                (Some(program), Some(session)) => {
                    let program = Path::new(program);
                    session
                        .skills
                        .owner_of(program)
                        .map(|skill| (program, skill))
                }
                _ => None,
            };
            if let Some((program, skill)) = skill {
                crate::stderr::line(&format!(
                    "execgate: {} is a script of skill {}: a session decides it by the skill, \
                     not by these rules (but for forbidden ones): {}",
                    program.display(),
                    skill.name,
                    match skill.permissions {
                        Some(_) => {
                            "a person is asked, and it runs with the skill's grants where it \
                             may leave the sandbox (see \"Security model\" in the README)"
                        }
                        None => "it runs in place, in the session's sandbox",
                    }
                ));
            }
            if let Some(refused) = &refused_for_its_name {
                crate::stderr::line(&format!(
                    "execgate: in a session this command runs in place, in the sandbox: {refused}"
                ));
            }
            let leaves_the_sandbox = evaluation.deciding_rule().is_some_and(|rule| {
                rule.decision != RuleDecision::Forbidden
                    && !matches!(rule.execution, Some(RuleExecution::TurnDefault))
            });
            if as_run && leaves_the_sandbox && refused_for_its_name.is_none() {
                crate::stderr::line(
                    "execgate: in a session this escalation is still refused, and the command \
                     runs in place, when the sandbox can write the program, its #! \
                     interpreter, or what the program reads its instructions from (its \
                     project, its configuration): see \"Security model\" in the README",
                );
            }
            Ok(0)
        }
        PolicyCommand::Lint {
            rules,
            config,
            json,
        } => lint_files(rules, config.as_deref(), json),
    }
}

/// The rules `policy check` decides with: with `as_run`, the config's
/// before `files`, as a session loads them, checked as `run` checks them,
/// and the session's PATH from the same config; else `files` alone, with a
/// line on stderr when the config has rules they leave out.
fn rules_to_check(
    files: &[PathBuf],
    as_run: bool,
    config: Option<&Path>,
    profile: Option<&str>,
) -> Result<(std::sync::Arc<RuleSet>, Option<SessionView>)> {
    if !as_run {
        say_if_config_rules_are_left_out(files);
        return Ok((std::sync::Arc::new(load_saying_when_slow(files)?), None));
    }
    let (config, config_file) = Config::load_naming(config)?;
    let all: Vec<PathBuf> = config.rules.iter().chain(files).cloned().collect();
    let rules = std::sync::Arc::new(load_rules(&all)?);
    let profile_name = profile
        .map(str::to_owned)
        .or(config.default_profile.clone())
        .unwrap_or_else(|| "workspace-write".into());
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let session = SessionView {
        path: session_path_of(&config)?,
        sandbox: crate::sandbox_view(
            &config.profile(&profile_name, config_file.as_deref())?,
            &cwd,
        ),
        skills: SkillRegistry::load(&config.skills)
            .context("the skills cannot be registered; fix or drop them (skills in the config)")?,
    };
    if !config.skills.is_empty() {
        crate::stderr::line(
            "execgate: the config names skills: a session decides their scripts by the skill \
             (its permissions), not by these rules, but for `forbidden` ones; this check says \
             when the program is one",
        );
    }
    // What `run` refuses to start with, refused alike.
    execgate_core_bridge::ExecPolicy::new(execgate_core_bridge::ExecPolicyConfig {
        rules: rules.clone(),
        profiles: std::sync::Arc::new(config.profiles),
        ..Default::default()
    })?;
    Ok((rules, Some(session)))
}

/// What a session's shell sees when it looks a program up.
struct SessionView {
    /// The `PATH` it gets.
    path: std::ffi::OsString,
    /// Its sandbox, `None` for an unsandboxed profile.
    sandbox: Option<execgate_core_bridge::server::sandbox::ResolvedPolicy>,
    /// The config's skills, which decide their own scripts.
    skills: SkillRegistry,
}

impl SessionView {
    /// Whether the session's shell can see `path` at all: its sandbox
    /// hides what its profile does not grant, and `/run`.
    fn shows(&self, path: &Path) -> bool {
        let Some(sandbox) = &self.sandbox else {
            return true;
        };
        let Ok(path) = std::path::absolute(path) else {
            return false;
        };
        let path = path.as_path();
        // `/run` is hidden but for what the profile grants in it, which is
        // mounted after; `/dev` is the sandbox's own.
        let hidden = |place: &Path| {
            execgate_core_bridge::server::sandbox::HIDDEN_SERVICE_DIRS
                .iter()
                .any(|dir| {
                    place.starts_with(dir)
                        && !sandbox
                            .rules()
                            .iter()
                            .any(|rule| rule.path.starts_with(dir) && place.starts_with(&rule.path))
                })
                || place.starts_with("/dev")
        };
        let visible = |place: &Path| !hidden(place) && sandbox.can_read(place);
        // The path as written, every link its resolution follows (a link in
        // a directory the sandbox hides is not there for it), and where it
        // leads.
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        visible(path)
            && crate::links_followed(path).iter().all(|link| visible(link))
            && visible(&canonical)
    }
}

/// A command line past zsh's precommand modifiers, as a session's shell
/// reads it.
struct PastModifiers {
    argv: Vec<std::ffi::OsString>,
    /// After `command` or `exec`: the word is a program, never a builtin.
    external: bool,
    /// The `PATH` the program is looked up in, when the command line sets
    /// one: `PATH=...` before it, or `command -p` (zsh's default).
    path: Option<std::ffi::OsString>,
}

/// `argv` past what zsh reads before the program: the reserved words `!`
/// and `time` (each once, in either order); then assignments and
/// `nocorrect`, in any order and any number; then `-`, `noglob` and `exec`
/// (with its options), in any order and any number; `builtin` before any
/// of them or `command`; `command` (with its options) ends them, as the
/// next word is then a program, whatever its name. A session decides on
/// that program (probe 149: these were called builtins that never ask;
/// probe 157: `exec command uname` was said to look for a program named
/// `command`; probe 223: `FOO=1 id` and `! id` were not found). `builtin`
/// before anything else runs no program, and `command -v` only says where
/// one is. What zsh cannot parse (`FOO=1 time id`, `! ! id`) is an error.
fn past_precommand_modifiers(mut argv: Vec<std::ffi::OsString>) -> Result<PastModifiers> {
    let (mut external, mut path) = (false, None);
    let word = |argv: &[std::ffi::OsString]| {
        argv.first()
            .and_then(|word| word.to_str())
            .map(str::to_owned)
    };
    let first = word(&argv);
    let words = argv.len();
    let (mut timed, mut after_negation) = (false, false);
    loop {
        match word(&argv).as_deref() {
            // `! time ! id` runs id (review 229); `! ! id` does not parse.
            Some("!") if after_negation => bail!("zsh cannot parse `! !`: nothing runs"),
            Some("!") => after_negation = true,
            // A second `time` is the program (review 34b's rule below).
            Some("time") if !timed => (timed, after_negation) = (true, false),
            _ => break,
        }
        argv.remove(0);
    }
    let past_reserved_words = argv.len();
    while let Some(next) = word(&argv) {
        if is_assignment(&next) && assigns_search_path(&next) {
            // Review 229: `PATH=~/bin:...`, `path[1]=D`, quotes: where zsh
            // looks, which a literal reading would miss.
            path = Some(assigned_search_path(&next).with_context(|| {
                format!(
                    "{next}: zsh looks the program up in the PATH this sets, which the check \
                     reads only written out literally (PATH=/a:/b or path=(/a /b), no quotes, \
                     ~, $ or subscript); write it so"
                )
            })?);
        } else if next != "nocorrect" && !is_assignment(&next) {
            break;
        }
        argv.remove(0);
    }
    if argv.len() < past_reserved_words {
        if let Some(reserved @ ("!" | "time")) = word(&argv).as_deref() {
            bail!(
                "zsh cannot parse `{reserved}` after an assignment or `nocorrect` (a parse \
                 error): nothing runs; put it first"
            );
        }
    }
    let past_reserved = argv.len();
    while let Some(modifier) = word(&argv) {
        match modifier.as_str() {
            "-" | "noglob" => {
                argv.remove(0);
            }
            "builtin" => match argv.get(1).and_then(|next| next.to_str()) {
                Some("-" | "noglob" | "builtin" | "command" | "exec") => {
                    argv.remove(0);
                }
                _ => bail!(
                    "builtin runs a zsh builtin: no program runs, and a session decides nothing"
                ),
            },
            "command" | "exec" => {
                argv.remove(0);
                while let Some(option) = word(&argv) {
                    if option == "--" {
                        argv.remove(0);
                        break;
                    }
                    let Some(letters) = option.strip_prefix('-').filter(|rest| !rest.is_empty())
                    else {
                        break;
                    };
                    argv.remove(0);
                    if modifier == "command" {
                        if letters.contains(['v', 'V']) {
                            bail!(
                                "command {option} says where a program is and runs nothing: a \
                                 session decides nothing"
                            );
                        }
                        if letters.contains('p') {
                            // zsh's own default for `command -p`.
                            path = Some("/bin:/usr/bin".into());
                        }
                    } else if let Some(at) = letters.find('a') {
                        // The name it runs under follows the first `a`: in
                        // the word (`-aNAME`, `-ala`: `la`), else the next
                        // word (`-a NAME`, `-la NAME`). Probe 223: `-aa
                        // uname id` was read as running id.
                        if at + 1 == letters.len() && !argv.is_empty() {
                            argv.remove(0);
                        }
                    }
                }
                external = true;
                // After `exec`, zsh reads modifiers still; after `command`,
                // the next word is a program's name.
                if modifier == "command" {
                    break;
                }
            }
            _ => break,
        }
    }
    // Reserved words only where a command starts: past a modifier, `time`
    // and `nocorrect` are programs' names (review 34b: `noglob time uname`
    // runs /usr/bin/time).
    let past_a_word = argv.len() < past_reserved || (timed && argv.len() < words);
    if past_a_word && matches!(word(&argv).as_deref(), Some("time" | "nocorrect")) {
        external = true;
    }
    let Some(program) = argv.first() else {
        bail!("no program follows the precommand modifiers: a session decides nothing");
    };
    if let Some(first) = first.filter(|first| argv.len() < words && !is_assignment(first)) {
        crate::stderr::line(&format!(
            "execgate: {first} runs what follows it: a session decides on {}",
            program.to_string_lossy()
        ));
    }
    Ok(PastModifiers {
        argv,
        external,
        path,
    })
}

/// Whether zsh reads `word`, before a command, as an assignment to a
/// variable: `NAME=`, `NAME+=` or `NAME[...]=`.
fn is_assignment(word: &str) -> bool {
    let (name, rest) = assignment_name(word);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let rest = match rest.strip_prefix('[') {
        Some(subscript) => match subscript.find(']') {
            Some(end) => &subscript[end + 1..],
            None => return false,
        },
        None => rest,
    };
    rest.starts_with('=') || rest.starts_with("+=")
}

/// An assignment word's variable name, and the rest of the word. zsh
/// takes letters beyond ASCII in names too (`é=1`).
fn assignment_name(word: &str) -> (&str, &str) {
    let name_end = word
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(word.len());
    word.split_at(name_end)
}

/// Whether the assignment `word` sets the search path, in any form.
fn assigns_search_path(word: &str) -> bool {
    matches!(assignment_name(word).0, "PATH" | "path")
}

/// The search path an assignment before the command sets, which zsh looks
/// the program up in, where it is written out literally: `PATH=a:b`, or
/// `path=(a b)`. `None` for any other form (a subscript, `+=`, quotes,
/// `~`, `$`, a backquote or a backslash), which zsh reads otherwise.
fn assigned_search_path(word: &str) -> Option<std::ffi::OsString> {
    let literal = |value: &str| !value.contains(['\'', '"', '\\', '~', '$', '`']);
    if let Some(value) = word.strip_prefix("PATH=").filter(|value| literal(value)) {
        return Some(value.into());
    }
    let list = word
        .strip_prefix("path=(")?
        .strip_suffix(')')
        .filter(|list| literal(list) && !list.contains(['(', ')']))?;
    Some(list.split_whitespace().collect::<Vec<_>>().join(":").into())
}

/// Warns, as a session's start would, of what the config's profiles grant
/// or hide that is not there (from the current directory, for `:cwd`);
/// returns how many warnings it gave.
fn warn_of_profiles(profiles: &ProfileSet) -> Result<usize> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut warnings = 0;
    for name in profiles.names() {
        let profile = profiles.get(name)?;
        let whose = format!("profile {name}");
        warnings += crate::warn_if_grants_name_nothing(&profile, &whose, &cwd);
        warnings += crate::warn_if_grants_held_back(None, &profile, &whose, false, &cwd);
    }
    Ok(warnings)
}

/// Warns, as a session's start would, of what the rules' profiles and the
/// skills grant that their commands do not get in a session of the
/// config's default profile; returns how many warnings it gave.
fn warn_of_grants_held_back(
    config: &Config,
    config_file: Option<&Path>,
    rules: &RuleSet,
) -> Result<usize> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let session_name = config
        .default_profile
        .clone()
        .unwrap_or_else(|| "workspace-write".into());
    let session_profile = config.profile(&session_name, config_file)?;
    let session = crate::SessionGrants::of(&session_profile, &session_name, &cwd);
    let session = session.as_ref();
    let session_entries = match &session_profile {
        PermissionProfile::Managed { file_system, .. } => file_system.entries.clone(),
        _ => Vec::new(),
    };
    let mut warnings = 0;
    for name in crate::rule_profile_names(rules) {
        // One the config lacks is the rules' lint finding.
        let Ok(granted) = config.profile(name, config_file) else {
            continue;
        };
        // Each profile alone is warned of apart (`warn_of_profiles`).
        let whose = format!("profile {name}");
        warnings += crate::warn_if_grants_held_back(session, &granted, &whose, true, &cwd);
        // The rule's profile's own grants, as a session's start says.
        let mut own = granted.clone();
        if let PermissionProfile::Managed { file_system, .. } = &mut own {
            file_system
                .entries
                .retain(|entry| !session_entries.contains(entry));
        }
        warnings += crate::warn_if_grants_reach_user_configuration(&own, &whose, &cwd);
    }
    // Probe 156: the README said lint warned of skills' grants too.
    let skills = SkillRegistry::load(&config.skills)
        .context("the skills cannot be registered; fix or drop them (skills in the config)")?;
    let skill_files = crate::skill_files(&skills, &config.skills);
    let policy_files: Vec<PathBuf> = config
        .rules
        .iter()
        .chain(&config.skills)
        .chain(&skill_files)
        .cloned()
        .collect();
    for skill in skills.skills() {
        warnings += crate::warn_of_skills_grants(skill, session, &cwd, &policy_files);
    }
    Ok(warnings)
}

fn lint_files(rules: Vec<PathBuf>, config: Option<&Path>, json: bool) -> Result<i32> {
    // The profiles are the config's even when --rules names the files: a
    // session loads both.
    let (config, config_read) = Config::load_naming(config)?;
    // The config's rules and the named ones together, as a session loads
    // them (probe 223: a project's `allow` on a path that undid the
    // config's `forbidden` linted clean alone); a file named twice, once.
    let files: Vec<PathBuf> = config
        .rules
        .iter()
        .chain(none_of(&rules, &config.rules))
        .cloned()
        .collect();
    // Loading the config read every profile in it (a mistake is an error
    // naming the file); what a session warns of in them at its start is
    // counted here too (probe 133: a config `run` warned of four times
    // linted clean).
    let profile_warnings = warn_of_profiles(&config.profiles)?;
    if files.is_empty() {
        let profile_warnings = profile_warnings
            + warn_of_grants_held_back(&config, config_read.as_deref(), &RuleSet::default())?;
        let Some(config_read) = config_read else {
            bail!(
                "nothing to lint: no rules files and no config file; pass --rules FILE or \
                 --config FILE"
            );
        };
        crate::stderr::line(&format!(
            "execgate: no rules files; {} profile(s) in {}, {profile_warnings} warning(s), \
             0 error(s)",
            config.profiles.names().count(),
            crate::output::terminal_safe(
                &config_read.display().to_string(),
                crate::output::Lines::Escaped
            )
        ));
        return Ok(if profile_warnings > 0 {
            LINT_WARNINGS
        } else {
            0
        });
    }
    let rules = load_saying_when_slow(&files)?;
    let profile_warnings =
        profile_warnings + warn_of_grants_held_back(&config, config_read.as_deref(), &rules)?;
    let mut findings = lint_with(
        &rules,
        &Machine {
            profiles: &config.profiles,
            path: session_path_of(&config)?,
        },
    );
    let names = rules
        .rules()
        .map(|rule| rule.program())
        .filter(|program| !program.contains('/'));
    let builtins = ShellBuiltins::of(names);
    let mut on_builtins: Vec<_> = rules
        .rules()
        // A module's builtin sidesteps what a rule holds back; an allow
        // rule then only runs in place what it would have escalated.
        .filter(|rule| {
            builtins.always.contains(rule.program())
                || (builtins.by_module.contains_key(rule.program())
                    && rule.decision != RuleDecision::Allow)
        })
        .collect();
    // In the order written.
    on_builtins.sort_by_key(|rule| (rule.origin.file.clone(), rule.origin.line));
    for rule in on_builtins {
        let program = rule.program();
        let message = match builtins.by_module.get(program) {
            None => format!(
                "{program} is a zsh builtin: in a session `{program}` runs inside the shell \
                 and is never asked about; this rule applies only to an executable named \
                 {program} run by path or by another program (env, xargs, find -exec)"
            ),
            Some(module) => format!(
                "{program} is also a builtin of zsh's {module} module: after `zmodload \
                 {module}`, `{program}` runs inside the session's shell (in its sandbox, \
                 with no more than it may do) and is never asked about; this rule decides \
                 {program} only where it runs as a program"
            ),
        };
        findings.push(LintFinding {
            origin: rule.origin.clone(),
            pattern: vec![program.to_owned()],
            severity: Severity::Warning,
            message,
        });
    }
    crate::output::stdout(|out| {
        for finding in &findings {
            if json {
                let object = serde_json::json!({
                    "rule": finding.origin.to_string(),
                    "pattern": finding.pattern,
                    "severity": finding.severity.as_str(),
                    "message": finding.message,
                });
                writeln!(out, "{object}")?;
            } else {
                // A finding quotes the rules and the paths they name, and
                // is one line: a pattern's line break would make a line of
                // its own that reads as a finding.
                let finding = finding.to_string();
                writeln!(
                    out,
                    "{}",
                    crate::output::terminal_safe(&finding, crate::output::Lines::Escaped)
                )?;
            }
        }
        Ok(())
    })?;
    let errors = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Error)
        .count();
    if !json {
        crate::stderr::line(&format!(
            "execgate: {} prefix rule(s) and {} network rule(s) in {} file(s), {} warning(s), \
             {errors} error(s)",
            rules.len(),
            rules.network_rules().len(),
            files.len(),
            findings.len() - errors + profile_warnings,
        ));
    }
    Ok(if errors > 0 {
        LINT_ERRORS
    } else if findings.is_empty() && profile_warnings == 0 {
        0
    } else {
        LINT_WARNINGS
    })
}

/// What lint asks of this machine and the config, answered as a session
/// would: the profiles of `ExecPolicy::new`, the paths of the server's
/// resolution (`/proc/self/fd` of the file it opened: the canonical path).
struct Machine<'a> {
    profiles: &'a ProfileSet,
    /// The `PATH` a session's shell gets.
    path: std::ffi::OsString,
}

impl LintContext for Machine<'_> {
    fn check_profile(&self, name: &str) -> Result<(), String> {
        match self.profiles.get(name) {
            Ok(PermissionProfile::Managed { .. }) => Ok(()),
            Ok(PermissionProfile::Disabled | PermissionProfile::External { .. }) => Err(format!(
                "profile {name:?} is not sandboxed by execgate; use execution = \"unsandboxed\" \
                 to run outside the sandbox"
            )),
            Err(error) => Err(format!(
                "{error}; define it under [profiles.{name}] in the config file, or pass the \
                 config that does with --config"
            )),
        }
    }

    fn inspect_path(&self, path: &Path) -> PathState {
        match std::fs::canonicalize(path) {
            Ok(canonical) if canonical.is_dir() => PathState::Directory,
            Ok(canonical) if canonical.as_os_str() == path.as_os_str() => PathState::Canonical,
            Ok(canonical) => {
                if path.symlink_metadata().is_ok_and(|meta| meta.is_symlink()) {
                    PathState::Symlink { canonical }
                } else {
                    PathState::NotCanonical { canonical }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => PathState::Missing,
            Err(error) => PathState::Unknown {
                reason: error.to_string(),
            },
        }
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        find_in(name, &self.path)
    }

    fn find_link_to(&self, name: &str) -> Option<PathBuf> {
        linked_in(name, &self.path)
    }

    fn allowed_domains(&self) -> Vec<(String, DomainPattern)> {
        let mut allowed = Vec::new();
        for name in self.profiles.names() {
            let Ok(PermissionProfile::Managed { network_lists, .. }) = self.profiles.get(name)
            else {
                continue;
            };
            for (pattern, decision) in network_lists.domains.entries() {
                if decision == ListDecision::Allow {
                    allowed.push((format!("profile {name:?}'s domains entry"), pattern.clone()));
                }
            }
        }
        allowed
    }
}

/// The first executable file named `program` in `PATH`, as the shell
/// finds it.
fn find_in_path(program: &str) -> Option<PathBuf> {
    find_in(program, &std::env::var_os("PATH").unwrap_or_default())
}

/// `program` in the directories of `path` (a `PATH` value).
fn find_in(program: impl AsRef<Path>, path: &std::ffi::OsStr) -> Option<PathBuf> {
    runnable_in(program.as_ref(), path).next()
}

/// Each `program` in the directories of `path`, in order, that zsh would
/// run: a regular file this user may execute (else it looks on).
fn runnable_in<'a>(
    program: &'a Path,
    path: &'a std::ffi::OsStr,
) -> impl Iterator<Item = PathBuf> + 'a {
    std::env::split_paths(path)
        .map(move |dir| dir.join(program))
        .filter(|candidate| why_zsh_would_not_run(candidate).is_none())
}

/// A link in the directories of `path` that leads to a program named
/// `program` (`ld.so`, for `ld-linux-x86-64.so.2`): a session looks rules
/// up by the name the link resolves to, so such a rule matches when the
/// link runs. Read only when no file of that name is in `path`.
fn linked_in(program: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_symlink()))
        .map(|entry| entry.path())
        .find(|link| {
            std::fs::canonicalize(link)
                .is_ok_and(|real| real.file_name() == Some(std::ffi::OsStr::new(program)))
                && why_zsh_would_not_run(link).is_none()
        })
}

/// Why zsh would not run the file at `path` (its `iscom` test: a regular
/// file this user may execute), or `None` when it would.
fn why_zsh_would_not_run(path: &Path) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some("is a directory"),
        Ok(meta) if !meta.is_file() => Some("is not a regular file"),
        Ok(_) if nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_err() => {
            Some("is not executable")
        }
        Ok(_) => None,
        Err(_) => Some("cannot be read"),
    }
}

/// zsh modules a script may load whose builtins take the names of
/// programs (`zmodload zsh/files` makes `rm`, `mv`, `ln`, `mkdir` and
/// more builtins; `zsh/cap`, `getcap` and `setcap`). A module of the
/// sandbox's own making, loaded from a `module_path` it writes, can take
/// any name: lint names the ones zsh ships.
const SHADOWING_MODULES: [&str; 4] = ["zsh/files", "zsh/stat", "zsh/cap", "zsh/watch"];

/// Which of `names` the session's zsh runs itself, as `whence -w` in the
/// patched zsh says: builtins and reserved words (always), and builtins
/// of [`SHADOWING_MODULES`] once loaded (by module). A session never asks
/// about them. Empty, with a line on stderr saying so, when the zsh
/// cannot be run.
struct ShellBuiltins {
    always: HashSet<String>,
    /// Name -> the module that makes it a builtin.
    by_module: std::collections::HashMap<String, String>,
}

impl ShellBuiltins {
    fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> ShellBuiltins {
        let mut found = ShellBuiltins {
            always: HashSet::new(),
            by_module: std::collections::HashMap::new(),
        };
        let names: Vec<&str> = names.into_iter().collect();
        if names.is_empty() {
            return found;
        }
        // One section per state: as the shell starts, then with each
        // module loaded in turn.
        let mut script = String::from(r#"whence -w -- "$@";"#);
        for module in SHADOWING_MODULES {
            script.push_str(&format!(
                r#" zmodload {module} 2>/dev/null; print -r -- "--- {module}"; whence -w -- "$@";"#
            ));
        }
        let output = execgate_core_bridge::Tools::locate()
            .map_err(|error| error.to_string())
            .and_then(|tools| {
                std::process::Command::new(&tools.zsh)
                    .args(["-fc", &script, "zsh"])
                    .args(&names)
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .output()
                    .map_err(|error| format!("cannot run {}: {error}", tools.zsh.display()))
            });
        let output = match output {
            Ok(output) => output,
            Err(error) => {
                crate::stderr::line(&format!(
                    "execgate: rules on zsh builtins, which a session never asks about, are \
                     not looked for: {error}"
                ));
                return found;
            }
        };
        let mut module: Option<String> = None;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(loaded) = line.strip_prefix("--- ") {
                module = Some(loaded.to_owned());
                continue;
            }
            let Some((name, kind)) = line.rsplit_once(": ") else {
                continue;
            };
            if !matches!(kind, "builtin" | "reserved") || found.always.contains(name) {
                continue;
            }
            match &module {
                None => {
                    found.always.insert(name.to_owned());
                }
                Some(module) => {
                    found
                        .by_module
                        .entry(name.to_owned())
                        .or_insert_with(|| module.clone());
                }
            }
        }
        found
    }
}

/// Says on stderr when the config file has rules that `files` leaves
/// out: a plain check is of the files named, a session takes the
/// config's too.
fn say_if_config_rules_are_left_out(files: &[PathBuf]) {
    let Ok(config) = Config::load(None) else {
        return;
    };
    let left_out: Vec<String> = none_of(&config.rules, files)
        .map(|file| file.display().to_string())
        .collect();
    if !left_out.is_empty() {
        crate::stderr::line(&format!(
            "execgate: the config's rules ({}) are not checked, only the files --rules names; \
             a session loads both: --as-run adds them as a session does",
            left_out.join(", ")
        ));
    }
}

/// The files of `files` that are none of `others`, told apart by their
/// canonical paths (one that has none is none of them).
fn none_of<'a>(files: &'a [PathBuf], others: &[PathBuf]) -> impl Iterator<Item = &'a PathBuf> {
    let others: Vec<PathBuf> = others
        .iter()
        .filter_map(|file| std::fs::canonicalize(file).ok())
        .collect();
    files.iter().filter(move |file| {
        !std::fs::canonicalize(file).is_ok_and(|canonical| others.contains(&canonical))
    })
}

/// Loads rules for a session, with errors that say which file.
/// Their ids name the files by canonical path: the same rule is one id in
/// every session's records, wherever each was started.
pub fn load_rules(files: &[PathBuf]) -> Result<RuleSet> {
    let files: Vec<PathBuf> = files
        .iter()
        .map(|file| std::fs::canonicalize(file).unwrap_or_else(|_| file.clone()))
        .collect();
    load_saying_when_slow(&files)
        .context("the rules cannot be loaded; nothing runs until they are fixed")
}

/// How long rules may take to load before execgate says why it waits.
const SLOW_RULES: std::time::Duration = std::time::Duration::from_secs(3);

/// [`RuleSet::load`], with a line on stderr when the files take longer
/// than [`SLOW_RULES`] to evaluate (probe 223: a comprehension over
/// `range(1000000000)` held `run`, `check` and `lint` with no word). It
/// ends by itself, as Starlark has no `while` and no recursion, but not
/// soon; starlark offers no bound on it to a caller.
pub(crate) fn load_saying_when_slow(
    files: &[PathBuf],
) -> Result<RuleSet, execgate_core_bridge::rules::LoadError> {
    let (loaded, waiting) = std::sync::mpsc::channel::<()>();
    let names = files
        .iter()
        .map(|file| file.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let watch = std::thread::spawn(move || {
        if waiting.recv_timeout(SLOW_RULES) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            crate::stderr::line(&format!(
                "execgate: the rules ({names}) are still being evaluated after {} s: a \
                 comprehension or loop in them may take long to end; nothing runs until they \
                 are loaded, and Ctrl-C stops execgate",
                SLOW_RULES.as_secs()
            ));
        }
    });
    let rules = RuleSet::load(files);
    drop(loaded);
    // It ends as soon as the channel closes.
    let _ = watch.join();
    rules
}

/// What to say when a session never sees the program a command line
/// names by that name: a bare name that `PATH` finds as a link to a
/// program of another name (`python3` -> `python3.11`), of whose rules a
/// session consults only the forbidden ones, as it decides on the
/// canonical path and its name. `None` when the name is the program's
/// own, or not found.
fn renamed_in_a_session(program: &str) -> Option<String> {
    if program.contains('/') {
        return None;
    }
    let found = find_in_path(program)?;
    let canonical = std::fs::canonicalize(&found).ok()?;
    let real = canonical.file_name()?.to_str()?;
    (real != program).then(|| {
        format!(
            "execgate: {program} is {} here, which resolves to {}: a session decides on \
             {real}, and of the rules on {program} only the forbidden ones hold for it, where \
             the shell finds it as {program}; --as-run decides as a session does",
            found.display(),
            canonical.display()
        )
    })
}

/// Where `program`, a path no rule names, has rules on its name: a
/// session falls back to those (probe 223: "no match" was all that was said
/// of what a session forbids). `None` for a bare name, or no such rules.
fn decided_by_its_name_in_a_session(program: &str, rules: &RuleSet) -> Option<String> {
    let (_, name) = program.rsplit_once('/')?;
    rules.rules().any(|rule| rule.program() == name).then(|| {
        format!(
            "execgate: no rule on {program} matches, but rules name {name}: a session decides \
             by the rules on the program's canonical path, else by those on its name; \
             --as-run decides as a session does"
        )
    })
}

/// The `PATH` a session's shell gets: `config`'s `[env]` applied to this
/// process's environment, or the session's default when it leaves none.
fn session_path_of(config: &Config) -> Result<std::ffi::OsString> {
    let env = config.env.build(std::env::vars_os())?;
    Ok(env
        .into_iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value)
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
}

/// `program` as a session's server sees it: looked up in the session's
/// `path` when it has no slash, then canonicalized. A session's `PATH`
/// starts with a directory of its own that holds its zsh. What zsh never
/// hands on (a directory, a file it may not execute: its `iscom` test) is
/// an error, as no rule decides it.
fn program_as_run(program: &std::ffi::OsStr, session: &SessionView) -> Result<(PathBuf, PathBuf)> {
    let shown = program.to_string_lossy();
    let path = &session.path;
    let sessions_zsh = (program == "zsh")
        .then(|| execgate_core_bridge::Tools::locate().ok())
        .flatten();
    let found = if program.as_encoded_bytes().contains(&b'/') {
        PathBuf::from(program)
    } else if let Some(tools) = sessions_zsh {
        tools.zsh
    } else {
        runnable_in(Path::new(program), path)
            .find(|candidate| session.shows(candidate))
            .with_context(|| {
                format!(
                    "{shown} is not found in the session's PATH ({}), as its sandbox shows it",
                    path.to_string_lossy()
                )
            })?
    };
    // As the session's shell hands it on: joined to the working directory
    // (probe 149: a relative path's name missed its `forbidden` rule).
    let found = std::path::absolute(&found)
        .with_context(|| format!("cannot resolve {}", found.display()))?;
    if found.starts_with("/proc") {
        bail!(
            "{}: a /proc link to a process's root, directory or descriptors, which execgate \
             does not follow: in a session the request is refused and nothing runs; run the \
             program by its own path",
            found.display()
        );
    }
    if found.starts_with("/dev") {
        bail!(
            "{} is in the sandbox's own /dev, which execgate does not see from outside: in a \
             session the request is refused and nothing runs",
            found.display()
        );
    }
    if !session.shows(&found) {
        bail!(
            "{} is hidden from the session's sandbox: its shell finds nothing there, and \
             nothing runs",
            found.display()
        );
    }
    let canonical = std::fs::canonicalize(&found)
        .with_context(|| format!("cannot resolve {}", found.display()))?;
    std::fs::metadata(&canonical)
        .with_context(|| format!("cannot read {}", canonical.display()))?;
    if let Some(why) = why_zsh_would_not_run(&canonical) {
        bail!(
            "{} {why}: in a session, zsh says \"permission denied\" and asks no rule; \
             nothing runs",
            found.display()
        );
    }
    Ok((found, canonical))
}
