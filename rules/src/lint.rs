//! Rules that are escape hatches in disguise.
//!
//! An `allow` or `prompt` rule on a program that runs other programs (an
//! interpreter, a shell, a command runner) lets the command line choose
//! what really runs, outside the sandbox once approved. Lint names them.

use std::fmt;

use crate::rule::{PrefixRule, RuleDecision, RuleExecution, RuleOrigin, RuleSet};

/// One warning about one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintWarning {
    pub origin: RuleOrigin,
    /// The rule's pattern, as written (alternatives joined with `|`).
    pub pattern: Vec<String>,
    pub message: String,
}

impl fmt::Display for LintWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: warning: {} [{}]",
            self.origin,
            self.message,
            self.pattern.join(" ")
        )
    }
}

/// Programs that execute code given on their command line or in files
/// they are pointed at, whatever arguments follow.
const RUNS_ANYTHING: &[(&str, &str)] = &[
    ("sh", "a shell runs any command"),
    ("bash", "a shell runs any command"),
    ("zsh", "a shell runs any command"),
    ("dash", "a shell runs any command"),
    ("ksh", "a shell runs any command"),
    ("fish", "a shell runs any command"),
    ("csh", "a shell runs any command"),
    ("tcsh", "a shell runs any command"),
    ("busybox", "busybox contains a shell"),
    ("node", "an interpreter runs any code"),
    ("nodejs", "an interpreter runs any code"),
    ("deno", "an interpreter runs any code"),
    ("bun", "an interpreter runs any code"),
    ("perl", "an interpreter runs any code"),
    ("ruby", "an interpreter runs any code"),
    ("php", "an interpreter runs any code"),
    ("lua", "an interpreter runs any code"),
    ("Rscript", "an interpreter runs any code"),
    ("tclsh", "an interpreter runs any code"),
    ("awk", "awk's system() runs any command"),
    ("gawk", "awk's system() runs any command"),
    ("mawk", "awk's system() runs any command"),
    ("sed", "GNU sed's e command runs any command"),
    ("env", "env runs the program its arguments name"),
    ("xargs", "xargs runs the program its arguments name"),
    ("sudo", "sudo runs the program its arguments name"),
    ("doas", "doas runs the program its arguments name"),
    ("nice", "nice runs the program its arguments name"),
    ("nohup", "nohup runs the program its arguments name"),
    ("timeout", "timeout runs the program its arguments name"),
    ("time", "time runs the program its arguments name"),
    ("stdbuf", "stdbuf runs the program its arguments name"),
    ("setsid", "setsid runs the program its arguments name"),
    ("chroot", "chroot runs the program its arguments name"),
    ("unshare", "unshare runs the program its arguments name"),
    ("nsenter", "nsenter runs the program its arguments name"),
    ("flock", "flock runs the program its arguments name"),
    ("strace", "strace runs the program its arguments name"),
    ("ltrace", "ltrace runs the program its arguments name"),
    ("gdb", "gdb runs programs and shell commands"),
    ("watch", "watch runs a shell command"),
    ("parallel", "parallel runs shell commands"),
    ("script", "script runs a shell command"),
    (
        "ssh",
        "ssh runs commands (remotely, or locally through ProxyCommand)",
    ),
    (
        "make",
        "make runs the recipes of whatever Makefile it reads",
    ),
    (
        "just",
        "just runs the recipes of whatever justfile it reads",
    ),
    ("rake", "rake runs whatever Rakefile it reads"),
    ("npx", "npx runs any package's binary"),
    (
        "find",
        "find runs commands with -exec, -execdir, -ok and -okdir",
    ),
];

/// Subcommands that run scripts or programs chosen by the project.
const RUNNERS: &[(&str, &[&str], &str)] = &[
    (
        "npm",
        &["run", "run-script", "exec", "x", "test", "start"],
        "npm runs package.json scripts",
    ),
    (
        "yarn",
        &["run", "exec", "dlx"],
        "yarn runs package.json scripts",
    ),
    (
        "pnpm",
        &["run", "exec", "dlx"],
        "pnpm runs package.json scripts",
    ),
    (
        "cargo",
        &["run", "build", "test"],
        "cargo runs build scripts and the code it builds",
    ),
    (
        "go",
        &["run", "generate", "test"],
        "go runs the code it builds",
    ),
    (
        "git",
        &["-c", "--config-env", "-C", "--exec-path"],
        "git's config can name programs to run",
    ),
];

/// Warnings for every `allow` and `prompt` rule that lets its command line
/// pick what runs.
pub fn lint(rules: &RuleSet) -> Vec<LintWarning> {
    let mut warnings: Vec<LintWarning> = rules
        .rules()
        .filter(|rule| rule.decision != RuleDecision::Forbidden)
        .filter_map(|rule| warning(rule).map(|message| (rule, message)))
        .map(|(rule, message)| LintWarning {
            origin: rule.origin.clone(),
            pattern: pattern_text(rule),
            message,
        })
        .chain(rules.network_rules().iter().filter_map(network_warning))
        .collect();
    warnings.sort_by(|a, b| {
        (&a.origin.file, a.origin.line, &a.pattern).cmp(&(
            &b.origin.file,
            b.origin.line,
            &b.pattern,
        ))
    });
    warnings
}

/// An `allow` or `prompt` on every host turns the proxy into an open
/// door; an `allow` on a whole domain's subdomains is worth a second look
/// only when that domain hosts anyone's content, which lint cannot know.
fn network_warning(rule: &crate::network::NetworkRule) -> Option<LintWarning> {
    use execgate_network_proxy::DomainPattern;
    (rule.host == DomainPattern::Everything && rule.decision != RuleDecision::Forbidden).then(
        || LintWarning {
            origin: rule.origin.clone(),
            pattern: vec!["network_rule".into(), format!("host={}", rule.host)],
            message: format!(
                "{} on every host: the sandbox reaches the whole network through the proxy; \
                 name the hosts instead",
                rule.decision.as_str()
            ),
        },
    )
}

fn pattern_text(rule: &PrefixRule) -> Vec<String> {
    std::iter::once(rule.program().to_owned())
        .chain(rule.rest().iter().map(|token| token.choices().join("|")))
        .collect()
}

fn warning(rule: &PrefixRule) -> Option<String> {
    let name = rule.program().rsplit('/').next().unwrap_or_default();
    let verb = rule.decision.as_str();
    if is_interpreter(name) {
        return Some(format!("{verb} on {name}: an interpreter runs any code"));
    }
    if let Some((_, why)) = RUNS_ANYTHING.iter().find(|(program, _)| *program == name) {
        return Some(format!("{verb} on {name}: {why}"));
    }
    let unsandboxed = matches!(rule.execution, None | Some(RuleExecution::Unsandboxed));
    if name == "git" && unsandboxed {
        return Some(format!(
            "{verb} on git, unsandboxed: git runs the hooks and config commands of the \
             repository it is in, outside the sandbox; execgate escalates it only where the \
             sandbox cannot have written them (elsewhere it runs in place, sandboxed); add \
             execution = \"turn-default\" to keep it in the sandbox"
        ));
    }
    let (_, subcommands, why) = RUNNERS.iter().find(|(program, ..)| *program == name)?;
    match rule.rest().first() {
        // Any first argument: every subcommand, the dangerous ones too.
        None if !rule.is_exact() => Some(format!("{verb} on {name} with any arguments: {why}")),
        None => None,
        Some(token) => token
            .choices()
            .iter()
            .find(|choice| subcommands.contains(&choice.as_str()))
            .map(|choice| format!("{verb} on {name} {choice}: {why}")),
    }
}

/// `python`, `python3`, `python3.11`, `pypy3`...
fn is_interpreter(name: &str) -> bool {
    ["python", "pypy"].iter().any(|prefix| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    })
}
