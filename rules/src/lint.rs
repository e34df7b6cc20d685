//! Rules that are escape hatches in disguise, and rules that cannot work
//! as written.
//!
//! An `allow` or `prompt` rule on a program that runs other programs (an
//! interpreter, a shell, a command runner) lets the command line choose
//! what really runs, outside the sandbox once approved. Lint names them,
//! and network rules that read stricter than they are: an `allow` or
//! `prompt` on every host, a `forbidden` narrowed by `protocol` (which the
//! client in the sandbox picks).
//!
//! With a [`LintContext`] (what the machine and the config say: this crate
//! resolves nothing itself), [`lint_with`] also names rules that never
//! match or cannot run: an absolute path that is not canonical (a session
//! decides on the canonical path of the program it opened, so a rule on a
//! symlink never matches), a path that does not exist, an `execution`
//! profile that is not defined, a bare name not found in `PATH`. Without
//! one, it names tokens that only a look-alike matches: whitespace at a
//! token's ends, a program name with characters that are not printable
//! ASCII.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::rule::{HostExecutable, PrefixRule, RuleDecision, RuleExecution, RuleOrigin, RuleSet};
use execgate_network_proxy::{Destination, DomainPattern};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// Worth a second look: the rule works, perhaps not as meant.
    Warning,
    /// A session refuses these rules.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding about one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    pub origin: RuleOrigin,
    /// The rule's pattern, as written (alternatives joined with `|`).
    pub pattern: Vec<String>,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} [{}]",
            self.origin,
            self.severity.as_str(),
            self.message,
            self.pattern.join(" ")
        )
    }
}

/// What an absolute path in a rule is on this machine, as a session's
/// server would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathState {
    /// The path is its own canonical path: a session sees it as written.
    Canonical,
    /// Nothing is there (or a symlink that leads nowhere).
    Missing,
    /// The path is a symbolic link; `canonical` is where it ends.
    Symlink { canonical: PathBuf },
    /// Another spelling of `canonical`: a symlinked directory on the way,
    /// `..`, or a doubled `/`.
    NotCanonical { canonical: PathBuf },
    /// It could not be looked at (permissions, ...).
    Unknown { reason: String },
    /// A directory (probe 223: `"/usr/bin/"` was told to write `"/usr/bin"`).
    Directory,
}

/// What lint cannot know from the rules alone.
pub trait LintContext {
    /// `Ok` when `execution = "name"` names a profile a session can run a
    /// rule's command in; otherwise why not.
    fn check_profile(&self, name: &str) -> Result<(), String>;
    /// What `path` (absolute) is on this machine.
    fn inspect_path(&self, path: &Path) -> PathState;
    /// Where the bare program name `name` is found in `PATH` on this
    /// machine, if anywhere.
    fn find_program(&self, name: &str) -> Option<PathBuf>;
    /// A link in `PATH` to a program named `name`, when no file of that
    /// name is there: a session matches a rule on `name` when it runs.
    fn find_link_to(&self, _name: &str) -> Option<PathBuf> {
        None
    }
    /// The `domains` entries that allow, with where each is (a profile):
    /// a `forbidden` network rule overrides them.
    fn allowed_domains(&self) -> Vec<(String, DomainPattern)> {
        Vec::new()
    }
}

/// Why the JDK's tools are listed in [`RUNS_ANYTHING`].
const JDK_RUNS: &str = "the JDK runs classes and annotation processors from its class path, \
                        which starts in its working directory";

/// Why autoconf and its kin are listed in [`RUNS_ANYTHING`].
const AUTOTOOLS_RUN: &str = "the autotools' m4 runs the shell commands of the configure.ac \
                             and m4 files in their working directory";

/// Programs that execute code given on their command line or in files
/// they are pointed at, whatever arguments follow. A name with a version
/// after it (`perl5.36.0`, `node18`, `python3.11`) is looked up without
/// it: see [`unversioned`].
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
    // Probe 167: each runs the command its arguments name.
    ("split", "split --filter runs a shell command"),
    (
        "dbus-run-session",
        "dbus-run-session runs the program its arguments name",
    ),
    ("newgrp", "newgrp runs a shell"),
    ("sg", "sg runs the command its arguments name"),
    ("fakeroot", "fakeroot runs the program its arguments name"),
    (
        "fakeroot-sysv",
        "fakeroot runs the program its arguments name",
    ),
    (
        "fakeroot-tcp",
        "fakeroot runs the program its arguments name",
    ),
    ("valgrind", "valgrind runs the program its arguments name"),
    (
        "start-stop-daemon",
        "start-stop-daemon runs the program its arguments name",
    ),
    ("python", "an interpreter runs any code"),
    ("pypy", "an interpreter runs any code"),
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
    (
        "systemd-run",
        "systemd-run runs the program its arguments name",
    ),
    ("setpriv", "setpriv runs the program its arguments name"),
    ("prlimit", "prlimit runs the program its arguments name"),
    ("chrt", "chrt runs the program its arguments name"),
    ("taskset", "taskset runs the program its arguments name"),
    ("ionice", "ionice runs the program its arguments name"),
    ("bwrap", "bwrap runs the program its arguments name"),
    (
        "runuser",
        "runuser runs a shell command or the program its arguments name",
    ),
    ("su", "su runs a shell command its arguments name"),
    (
        "capsh",
        "capsh runs a shell command or the program its arguments name",
    ),
    (
        "run-parts",
        "run-parts runs every program in the directory its arguments name",
    ),
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
    // Programs a rule may seem to narrow (`tar -tf`, "list an archive")
    // whose options, anywhere among the arguments, run commands.
    (
        "tar",
        "tar runs commands through --to-command, -I (--use-compress-program), \
         --checkpoint-action=exec and --rsh-command",
    ),
    ("sort", "sort runs the program --compress-program names"),
    (
        "rsync",
        "rsync runs the commands -e (--rsh) and --rsync-path name",
    ),
    ("scp", "scp runs the program -S names"),
    ("sftp", "sftp runs the program -S names"),
    ("zip", "zip runs the command -TT (--unzip-command) names"),
    ("diff3", "diff3 runs the program --diff-program names"),
    ("sdiff", "sdiff runs the program --diff-program names"),
    (
        "man",
        "man runs the pager -P and the preprocessors it is told to",
    ),
    ("less", "less runs shell commands (!, |, LESSOPEN)"),
    ("more", "more runs shell commands (!)"),
    ("vi", "an editor runs shell commands"),
    ("vim", "an editor runs shell commands"),
    ("vim.basic", "an editor runs shell commands"),
    ("vim.tiny", "an editor runs shell commands"),
    ("vim.nox", "an editor runs shell commands"),
    ("vim.gtk3", "an editor runs shell commands"),
    ("nvim", "an editor runs shell commands"),
    ("emacs", "an editor runs shell commands"),
    ("nano", "an editor runs shell commands"),
    ("m4", "m4's syscmd runs shell commands"),
    ("tcpdump", "tcpdump runs the command -z names"),
    (
        "docker",
        "docker runs containers that can mount and change the host",
    ),
    (
        "podman",
        "podman runs containers that can mount and change the host",
    ),
    ("apt", "apt runs the commands its -o options name"),
    ("apt-get", "apt-get runs the commands its -o options name"),
    (
        "dpkg",
        "dpkg runs packages' scripts and the commands its options name",
    ),
    (
        "terraform",
        "terraform runs the provisioners and providers its configuration names",
    ),
    (
        "tofu",
        "tofu runs the provisioners and providers its configuration names",
    ),
    // Probe 122: each ran the sandbox's code unsandboxed under an exact
    // rule.
    (
        "sqlite3",
        "sqlite3 runs shell commands (.shell, .system) and loads extensions",
    ),
    (
        "openssl",
        "openssl loads the engines and providers its options name",
    ),
    ("nm", "binutils load the plugin --plugin names"),
    ("ar", "binutils load the plugin --plugin names"),
    ("ranlib", "binutils load the plugin --plugin names"),
    ("ld", "binutils load the plugin --plugin names"),
    ("ed", "ed runs shell commands (!)"),
    ("npx", NPX_RUNS),
    ("npx-cli.js", NPX_RUNS),
    ("npx.js", NPX_RUNS),
    ("pnpx", NPX_RUNS),
    ("pnpx.js", NPX_RUNS),
    ("pnpx.cjs", NPX_RUNS),
    (
        "corepack",
        "corepack runs the package manager its arguments name, with the rest",
    ),
    (
        "corepack.js",
        "corepack runs the package manager its arguments name, with the rest",
    ),
    ("java", JDK_RUNS),
    ("javac", JDK_RUNS),
    ("jshell", JDK_RUNS),
    ("javadoc", JDK_RUNS),
    (
        "scalar",
        "scalar runs git in every repository ~/.gitconfig lists",
    ),
    ("prove", "prove runs the commands --exec and .proverc name"),
    ("autoconf", AUTOTOOLS_RUN),
    ("autoreconf", AUTOTOOLS_RUN),
    ("autoheader", AUTOTOOLS_RUN),
    ("autom4te", AUTOTOOLS_RUN),
    ("automake", AUTOTOOLS_RUN),
    ("aclocal", AUTOTOOLS_RUN),
    ("libtoolize", AUTOTOOLS_RUN),
    (
        "make-first-existing-target",
        "make-first-existing-target runs make on its working directory's Makefile",
    ),
    // Probe 223: each ran a command, or code, of the sandbox's outside it
    // under an `allow` lint said nothing of.
    ("ld.bfd", "binutils load the plugin --plugin names"),
    ("ld.gold", "binutils load the plugin --plugin names"),
    ("setarch", "setarch runs the program its arguments name"),
    ("ssh-agent", "ssh-agent runs the program its arguments name"),
    ("gpg-agent", "gpg-agent runs the program its arguments name"),
    ("choom", "choom runs the program its arguments name"),
    ("logsave", "logsave runs the program its arguments name"),
    ("sotruss", "sotruss runs the program its arguments name"),
    ("memusage", "memusage runs the program its arguments name"),
    ("heaptrack", "heaptrack runs the program its arguments name"),
    ("perf", "perf runs the program its arguments name"),
    ("runcon", "runcon runs the program its arguments name"),
    (
        "systemd-cat",
        "systemd-cat runs the program its arguments name",
    ),
    (
        "systemd-inhibit",
        "systemd-inhibit runs the program its arguments name",
    ),
    (
        "systemd-socket-activate",
        "systemd-socket-activate runs the program its arguments name",
    ),
    (
        "pg_virtualenv",
        "pg_virtualenv runs the program its arguments name",
    ),
    ("msgexec", "msgexec runs the program its arguments name"),
    ("msgfilter", "msgfilter runs the program its arguments name"),
    ("scriptlive", "scriptlive runs a shell"),
    (
        "tmux",
        "tmux runs shell commands, in a server that outlives the command",
    ),
    (
        "screen",
        "screen runs shell commands, in a session that outlives the command",
    ),
    ("gdbtui", "gdb runs programs and shell commands"),
    ("zmore", "more runs shell commands (!)"),
    ("bzmore", "more runs shell commands (!)"),
    ("xzmore", "more runs shell commands (!)"),
    ("uclampset", "uclampset runs the program its arguments name"),
    (
        "gp-collect-app",
        "gp-collect-app runs the program its arguments name",
    ),
    ("zless", "less runs shell commands (!, |, LESSOPEN)"),
    ("bzless", "less runs shell commands (!, |, LESSOPEN)"),
    ("xzless", "less runs shell commands (!, |, LESSOPEN)"),
    ("lzless", "less runs shell commands (!, |, LESSOPEN)"),
    ("zstdless", "less runs shell commands (!, |, LESSOPEN)"),
    ("wish", "an interpreter runs any code"),
    ("ipython", "an interpreter runs any code"),
    ("lli", "an interpreter runs any code"),
    ("jrunscript", JDK_RUNS),
    ("jdb", JDK_RUNS),
    // Review 225: `wine` leads to `wine-stable` (or `-development`).
    ("wine", "wine runs any program, Unix ones too (start /unix)"),
    (
        "wine-stable",
        "wine runs any program, Unix ones too (start /unix)",
    ),
    (
        "wine-development",
        "wine runs any program, Unix ones too (start /unix)",
    ),
    // Review 229: wine's front ends lead to `wineapploader`, which runs
    // `wine-stable`.
    (
        "wineapploader",
        "wine runs any program, Unix ones too (start /unix)",
    ),
    (
        "wineconsole",
        "wine runs any program, Unix ones too (start /unix)",
    ),
    (
        "winedbg",
        "wine runs any program, Unix ones too (start /unix)",
    ),
    (
        "valgrind.bin",
        "valgrind runs the program its arguments name",
    ),
    ("gprofng", "gprofng runs the program its arguments name"),
];

const NPX_RUNS: &str = "npx runs the program its arguments name";

/// Compilers, by the last part of their name (`x86_64-linux-gnu-gcc-12`
/// is gcc): their options run other programs.
const COMPILERS: &[&str] = &["gcc", "g++", "cc", "c++", "clang", "clang++", "gfortran"];

/// Subcommands that run scripts or programs chosen by the project.
const RUNNERS: &[(&str, &[&str], &str)] = &[
    (
        "npm",
        &[
            "run",
            "run-script",
            "exec",
            "x",
            "explore",
            "init",
            "create",
            "test",
            "t",
            "tst",
            "it",
            "cit",
            "install-test",
            "install-ci-test",
            "start",
            "restart",
            "stop",
            "config",
            "c",
            "set",
            "pkg",
            "login",
        ],
        "npm runs package.json scripts, and exec, x, explore and init what they name",
    ),
    (
        "yarn",
        &[
            "run",
            "exec",
            "dlx",
            "node",
            "test",
            "create",
            "workspace",
            "workspaces",
            "config",
            "plugin",
        ],
        "yarn runs package.json scripts",
    ),
    (
        "pnpm",
        &[
            "run", "exec", "dlx", "create", "test", "t", "start", "setup", "env", "x", "config",
        ],
        "pnpm runs package.json scripts, and exec, dlx and create what they name",
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
/// pick what runs, in file and line order.
pub fn lint(rules: &RuleSet) -> Vec<LintFinding> {
    let mut findings = from_the_rules_alone(rules);
    sort(&mut findings);
    findings
}

/// What lint finds in the rules without a context, unsorted.
fn from_the_rules_alone(rules: &RuleSet) -> Vec<LintFinding> {
    let mut findings = escape_hatches(rules);
    findings.extend(pins_from_several_files(rules));
    findings.extend(shadowed(rules));
    findings.extend(unmatchable_tokens(rules));
    findings.extend(rules.rules().filter_map(confining_preset));
    findings
}

/// [`lint`]'s warnings, and what `context` shows: rule paths that are not
/// canonical or do not exist, and rules on a name that is a link to a
/// program of another name (warnings), `execution` profiles that are not
/// defined or not sandboxed (errors).
pub fn lint_with(rules: &RuleSet, context: &dyn LintContext) -> Vec<LintFinding> {
    let mut findings = from_the_rules_alone(rules);
    findings.extend(rules.rules().filter_map(|rule| {
        let program = Path::new(rule.program());
        if !rule.program().contains('/') {
            let name = rule.program();
            let message = match context.find_program(name) {
                Some(found) => renamed_program(name, &found, context, rule.decision)?,
                // `ld.so` leads to `ld-linux-x86-64.so.2` (probe 126).
                None if context.find_link_to(name).is_some() => return None,
                None => format!(
                    "{name:?} is not found in PATH here (a misspelling?); a session matches \
                     it only where a program of that name is run, by a path outside PATH or \
                     where one is installed"
                ),
            };
            return Some(LintFinding {
                origin: rule.origin.clone(),
                pattern: pattern_text(rule),
                severity: Severity::Warning,
                message,
            });
        }
        let state = context.inspect_path(program);
        let Some((problem, canonical)) = path_problem(program, &state) else {
            return found_first_elsewhere(program, program, context).map(|message| LintFinding {
                origin: rule.origin.clone(),
                pattern: pattern_text(rule),
                severity: Severity::Warning,
                message,
            });
        };
        let message = match canonical {
            // A session also matches its `forbidden` rules on the path as
            // the shell found it (`RuleSet::check_os_as_found`).
            Some(canonical) if rule.decision == RuleDecision::Forbidden => format!(
                "{problem}, so this rule forbids it only when it is run by this path; write \
                 \"{}\" to forbid it however it is run",
                canonical.display()
            ),
            // Probe 223: it still matches the path as found, where it
            // keeps the name's `forbidden` rules from applying (another
            // warning says so): it never decides by itself.
            Some(canonical) => format!(
                "{problem}, so this rule never {} as written; write \"{}\" instead",
                if rule.decision == RuleDecision::Prompt {
                    "asks"
                } else {
                    "allows"
                },
                canonical.display()
            ),
            None => problem,
        };
        // Review 40: a link's canonical path is no better where `PATH`
        // finds another file of the name first (a shim).
        let message = match canonical.and_then(|runs| found_first_elsewhere(program, runs, context))
        {
            Some(elsewhere) => format!("{message}; besides, {elsewhere}"),
            None => message,
        };
        Some(LintFinding {
            origin: rule.origin.clone(),
            pattern: pattern_text(rule),
            severity: Severity::Warning,
            message,
        })
    }));
    findings.extend(rules.host_executables().iter().filter_map(|pin| {
        let state = context.inspect_path(&pin.path);
        let (problem, canonical) = path_problem(&pin.path, &state)?;
        let advice =
            canonical.map_or_else(String::new, |canonical| pin_advice(&pin.name, canonical));
        let message = format!("host_executable path {problem}{advice}");
        Some(LintFinding {
            origin: pin.origin.clone(),
            pattern: pin_text(pin),
            severity: Severity::Warning,
            message,
        })
    }));
    findings.extend(pins_leaving_out_what_path_finds(rules, context));
    let allowed = context.allowed_domains();
    findings.extend(rules.network_rules().iter().flat_map(|rule| {
        allowed
            .iter()
            .filter_map(|(place, entry)| {
                overridden_entry(rule, place, entry).or_else(|| unasked_prompt(rule, place, entry))
            })
            .collect::<Vec<_>>()
    }));
    findings.extend(rules.rules().filter_map(|rule| {
        let Some(RuleExecution::Profile(name)) = &rule.execution else {
            return None;
        };
        let reason = context.check_profile(name).err()?;
        Some(LintFinding {
            origin: rule.origin.clone(),
            pattern: pattern_text(rule),
            severity: Severity::Error,
            message: format!(
                "execution = {name:?} cannot be used: {reason}; a session refuses to start \
                 with these rules"
            ),
        })
    }));
    sort(&mut findings);
    findings
}

fn escape_hatches(rules: &RuleSet) -> Vec<LintFinding> {
    rules
        .rules()
        .filter(|rule| rule.decision != RuleDecision::Forbidden)
        .filter_map(|rule| warning(rule).map(|message| (rule, message)))
        .map(|(rule, message)| LintFinding {
            origin: rule.origin.clone(),
            pattern: pattern_text(rule),
            severity: Severity::Warning,
            message,
        })
        .chain(rules.network_rules().iter().filter_map(network_warning))
        .collect()
}

/// Rules on a name stricter than a rule on a path with that name, for
/// command lines both match: a session consults the path's rules first and
/// the name's only when none of those match, so the stricter rule never
/// applies to that path there.
fn shadowed(rules: &RuleSet) -> Vec<LintFinding> {
    let by_path: Vec<&PrefixRule> = rules
        .rules()
        .filter(|rule| Path::new(rule.program()).is_absolute())
        .collect();
    rules
        .rules()
        .filter(|rule| !Path::new(rule.program()).is_absolute())
        .filter_map(|rule| {
            let same_name = |path_rule: &&&PrefixRule| {
                Path::new(path_rule.program()).file_name()
                    == Some(std::ffi::OsStr::new(rule.program()))
            };
            // A path rule as strict that matches all it matches keeps it.
            let kept = by_path
                .iter()
                .filter(same_name)
                .any(|path_rule| path_rule.decision >= rule.decision && covers(path_rule, rule));
            if kept {
                return None;
            }
            let path_rule = by_path.iter().filter(same_name).find(|path_rule| {
                path_rule.decision < rule.decision && may_match_alike(path_rule, rule)
            })?;
            Some(LintFinding {
                origin: rule.origin.clone(),
                pattern: pattern_text(rule),
                severity: Severity::Warning,
                message: format!(
                    "{} on {} does not apply to {} where the {} rule at {} matches: a \
                     session consults the rules on a path before those on its name",
                    rule.decision.as_str(),
                    rule.program(),
                    path_rule.program(),
                    path_rule.decision.as_str(),
                    path_rule.origin
                ),
            })
        })
        .collect()
}

/// Whether every argument list `narrower` matches, `wider` matches too.
fn covers(wider: &PrefixRule, narrower: &PrefixRule) -> bool {
    let (wide, narrow) = (wider.rest(), narrower.rest());
    wide.len() <= narrow.len()
        && (!wider.exact || (narrower.exact && wide.len() == narrow.len()))
        && wide.iter().zip(narrow).all(|(wide, narrow)| {
            narrow
                .choices()
                .iter()
                .all(|choice| wide.choices().contains(choice))
        })
}

/// Whether some argument list matches both rules' patterns (after the
/// program): every position both patterns have shares a choice, and
/// neither is `exact` with fewer positions than the other has.
fn may_match_alike(one: &PrefixRule, other: &PrefixRule) -> bool {
    let (one_len, other_len) = (one.rest().len(), other.rest().len());
    if (one.exact && other_len > one_len) || (other.exact && one_len > other_len) {
        return false;
    }
    one.rest().iter().zip(other.rest()).all(|(mine, theirs)| {
        mine.choices()
            .iter()
            .any(|choice| theirs.choices().contains(choice))
    })
}

/// Pattern tokens that no command line has as a person means it: one
/// with leading or trailing whitespace (the shell splits words on it, so
/// only an argument quoted with that space matches), and a program name
/// with whitespace, or with a character that is not printable ASCII (a
/// homoglyph such as the Cyrillic `м` in `rм`, an invisible one such as a
/// zero-width space): such a rule matches only a program spelled with
/// that very character, never the program it looks like.
fn unmatchable_tokens(rules: &RuleSet) -> Vec<LintFinding> {
    let mut findings = Vec::new();
    // A rule with alternatives in first position is one rule per program,
    // each with the same arguments: their problems are named once.
    let mut named = std::collections::HashSet::new();
    for rule in rules.rules() {
        let program = rule.program();
        let name = program.rsplit('/').next().unwrap_or(program);
        let mut messages = Vec::new();
        // A path may name a file with a space in it (not a line break);
        // a bare name is one word of a command line.
        let is_path = program.contains('/');
        if name
            .chars()
            .any(|c| c.is_whitespace() && !(is_path && c == ' '))
        {
            messages.push(format!(
                "program {program:?} has whitespace in its name, so this rule matches no \
                 program as the shell splits a command line; a pattern takes one word per \
                 token (write [\"git\", \"push\"], not [\"git push\"])"
            ));
        }
        let strange: Vec<String> = name
            .chars()
            .filter(|c| !c.is_ascii_graphic() && !c.is_whitespace())
            .map(|c| format!("U+{:04X}", u32::from(c)))
            .collect();
        if !strange.is_empty() {
            messages.push(format!(
                "program {program:?} has characters that are not printable ASCII ({}): a \
                 look-alike or invisible character, so this rule matches only a program \
                 whose name has it too, never the ASCII name it resembles",
                strange.join(", ")
            ));
        }
        for token in rule.rest() {
            for choice in token.choices() {
                // A token of whitespace alone (`grep " "`) means it.
                let padded = choice.trim() != choice && !choice.trim().is_empty();
                if padded && named.insert((rule.origin.clone(), choice.clone())) {
                    messages.push(format!(
                        "argument {choice:?} has leading or trailing whitespace: it matches \
                         only an argument quoted with that whitespace, never the word {:?}",
                        choice.trim()
                    ));
                }
                if let Some((what, instead)) = shell_expands(choice) {
                    if named.insert((rule.origin.clone(), choice.clone())) {
                        messages.push(format!(
                            "argument {choice:?} holds {what}, which the shell expands before \
                             the program runs: this rule matches only an argument quoted as \
                             written, never the one a command line with it unquoted gives; \
                             {instead}"
                        ));
                    }
                }
            }
        }
        findings.extend(messages.into_iter().map(|message| LintFinding {
            origin: rule.origin.clone(),
            pattern: pattern_text(rule),
            severity: Severity::Warning,
            message,
        }));
    }
    findings
}

/// What in `token` the shell replaces when it is written unquoted, and
/// what to write instead: a `~` that starts it (`~/`, `~user`), a
/// parameter (`$HOME`, `${HOME}`, `$(cmd)`), zsh's `=cmd` (the program's
/// path), a token of `*` alone (probe 223: `["rm", "*"]`, read as "any
/// argument", never fired). Not a `$` before a digit or nothing (`{print
/// $1}`, `s/$//`), nor a `~` inside (`HEAD~1`), nor a pattern the program
/// reads itself (`*.rs` for find, `foo.*bar`, `SELECT * FROM t`, `{a,b}`
/// for jq), which people write quoted, as the rule does (review 225).
fn shell_expands(token: &str) -> Option<(&'static str, &'static str)> {
    const EXPANDED_WORD: &str = "write the expanded word (an absolute path)";
    let home = token
        .strip_prefix('~')
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_whitespace()));
    if home {
        return Some(("a leading ~ (a home directory)", EXPANDED_WORD));
    }
    let parameter = token.match_indices('$').any(|(at, _)| {
        token[at + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || "_{(".contains(c))
    });
    if parameter {
        return Some(("a $ parameter or command substitution", EXPANDED_WORD));
    }
    if token
        .strip_prefix('=')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
    {
        return Some(("a leading = (zsh's =command: its path)", EXPANDED_WORD));
    }
    if !token.is_empty() && token.chars().all(|c| c == '*') {
        return Some((
            "nothing but the shell's wildcard (file names)",
            "a token is one literal word, never a wildcard: a prefix rule matches whatever \
             arguments follow its pattern already (drop the token)",
        ));
    }
    None
}

/// The presets whose names promise confinement, with what each grants.
const CONFINING_PRESETS: &[(&str, &str)] = &[
    ("read-only", "reading the whole file system"),
    (
        "workspace-write",
        "reading the whole file system and writing the working directory, the temporary \
         directory and the workspace roots",
    ),
];

/// A rule whose `execution` names a preset that reads as confinement
/// (`read-only`, `workspace-write`): a rule's profile adds its grants to
/// the session's sandbox and takes none away, so the command runs with
/// the session's grants or more, never fewer.
fn confining_preset(rule: &PrefixRule) -> Option<LintFinding> {
    let Some(RuleExecution::Profile(name)) = &rule.execution else {
        return None;
    };
    let (_, grants) = CONFINING_PRESETS
        .iter()
        .find(|(preset, _)| preset == name)?;
    Some(LintFinding {
        origin: rule.origin.clone(),
        pattern: pattern_text(rule),
        severity: Severity::Warning,
        message: format!(
            "execution = {name:?} confines nothing: a rule's profile only adds its grants \
             ({grants}) to the session's sandbox, and never takes any away; write execution = \
             \"turn-default\" to run in the session's sandbox as it is, or name a profile \
             for the grants it adds"
        ),
    })
}

fn sort(findings: &mut [LintFinding]) {
    findings.sort_by(|a, b| {
        (&a.origin.file, a.origin.line, &a.pattern, &a.message).cmp(&(
            &b.origin.file,
            b.origin.line,
            &b.pattern,
            &b.message,
        ))
    });
}

/// What a session makes of `path` when it is not its canonical path or
/// is not there: the sentence, and the canonical path when there is one;
/// `None` for a canonical path. A session decides on the canonical path of
/// the file it opened and never follows a rule's link (where a link points
/// can change, and may be writable): a path that is not canonical is never
/// seen.
fn path_problem<'a>(path: &Path, state: &'a PathState) -> Option<(String, Option<&'a Path>)> {
    let path = path.display();
    let not_canonical = |how: &str, canonical: &'a PathBuf| {
        let sentence = format!(
            "{path} {how} {}: a session decides on the canonical path",
            canonical.display()
        );
        (sentence, Some(canonical.as_path()))
    };
    Some(match state {
        PathState::Canonical => return None,
        PathState::Symlink { canonical } => not_canonical("is a symlink to", canonical),
        PathState::NotCanonical { canonical } => not_canonical("resolves to", canonical),
        PathState::Missing => (
            format!("{path} does not exist on this machine: a session never sees it here"),
            None,
        ),
        PathState::Unknown { reason } => (
            format!(
                "{path} cannot be looked at ({reason}): lint cannot tell whether a session sees it"
            ),
            None,
        ),
        PathState::Directory => (
            format!("{path} is a directory: a session runs files, and never decides on it"),
            None,
        ),
    })
}

/// Why a rule on `program`, which runs the file at the canonical path
/// `runs_here`, does not match the commands that name it without a path:
/// `PATH` finds another file of that name first here (a version manager's
/// shim, another installation).
fn found_first_elsewhere(
    program: &Path,
    runs_here: &Path,
    context: &dyn LintContext,
) -> Option<String> {
    let name = program.file_name()?.to_str()?;
    let found = context.find_program(name)?;
    let runs = match context.inspect_path(&found) {
        PathState::Canonical => found.clone(),
        PathState::Symlink { canonical } | PathState::NotCanonical { canonical } => canonical,
        PathState::Missing | PathState::Unknown { .. } | PathState::Directory => return None,
    };
    if runs == runs_here {
        return None;
    }
    let through = if runs == found {
        String::new()
    } else {
        format!(", which resolves to {}", runs.display())
    };
    Some(format!(
        "{name} in PATH here is {found}{through}, not {program}: a command that runs {name} \
         by its name runs that file, and this rule does not match it; write a rule on \
         \"{runs}\" too, or run the program by its path",
        found = found.display(),
        program = runs_here.display(),
        runs = runs.display(),
    ))
}

/// Why rules on the bare name `name` never match the program found under
/// that name here: it is a link to a program of another name (`sh` ->
/// `dash`, `awk` -> `mawk`), and a session falls back from the canonical
/// path only to the canonical path's own name.
fn renamed_program(
    name: &str,
    found: &Path,
    context: &dyn LintContext,
    decision: RuleDecision,
) -> Option<String> {
    let (PathState::Symlink { canonical } | PathState::NotCanonical { canonical }) =
        context.inspect_path(found)
    else {
        return None;
    };
    let real = canonical.file_name()?.to_str()?;
    if real == name {
        return None;
    }
    // A session also matches its `forbidden` rules on the name the shell
    // found the program by (`RuleSet::check_os_as_found`).
    if decision == RuleDecision::Forbidden {
        return Some(format!(
            "{name} is {found} here, which resolves to {canonical}, named {real}: this rule \
             forbids it where the shell finds it as {name}, not when it is run as {real} or by \
             another link; write it on {real} (or \"{canonical}\") to forbid it by every name",
            found = found.display(),
            canonical = canonical.display(),
        ));
    }
    // Probe 227: `xzcat` escalated as `xz` compressed its file; review
    // 230: no rewrite makes `awk` escalate, so none is offered as one.
    if !runs_as_itself(name, &canonical) {
        return Some(format!(
            "{name} is {found} here, which resolves to {canonical}, named {real}: a session \
             looks up rules by the name of the program it runs, so this rule never matches \
             it; and a program may act by the name it is run by, so a session escalates \
             {real} only when it is run as {real}: run as {name}, it runs in place, in the \
             sandbox, whatever the rules say",
            found = found.display(),
            canonical = canonical.display(),
        ));
    }
    Some(format!(
        "{name} is {found} here, which resolves to {canonical}, named {real}: a session looks \
         up rules by the name of the program it runs, so this rule never matches it; write it \
         on \"{canonical}\", or on {real} (where it covers every name that leads there)",
        found = found.display(),
        canonical = canonical.display(),
    ))
}

/// Pins of one name written in more than one file: they merge, so a later
/// file widens what the allow and prompt rules of an earlier one reach,
/// and a session's record names only the rule, not the pin that let it
/// match. Named at the first pin of each file after the first.
fn pins_from_several_files(rules: &RuleSet) -> Vec<LintFinding> {
    let pins = rules.host_executables();
    let mut findings = Vec::new();
    for (at, pin) in pins.iter().enumerate() {
        let earlier = &pins[..at];
        let first_file = earlier.iter().find(|other| other.name == pin.name);
        let Some(first) = first_file.filter(|first| first.origin.file != pin.origin.file) else {
            continue;
        };
        let already_named = earlier
            .iter()
            .any(|other| other.name == pin.name && other.origin.file == pin.origin.file);
        if already_named {
            continue;
        }
        findings.push(pin_warning(
            pin,
            format!(
                "{name} is pinned in {first} too: pins merge, so this file widens what the \
                 allow and prompt rules on {name} reach, there as here, and a session's \
                 record names the rule, not the pin; keep a name's pins in one file",
                name = pin.name,
                first = first.origin.file.display(),
            ),
        ));
    }
    findings
}

/// A name pinned to paths that leave out the program `PATH` finds for it
/// first: a session runs that program for the bare name, and the allow
/// and prompt rules on the name never reach it (it runs in place). Named
/// once per name, at its first pin, and only where such rules exist.
fn pins_leaving_out_what_path_finds(
    rules: &RuleSet,
    context: &dyn LintContext,
) -> Vec<LintFinding> {
    let mut findings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pin in rules.host_executables() {
        if !seen.insert(pin.name.as_str()) {
            continue;
        }
        let loosened = rules
            .rules()
            .any(|rule| rule.program() == pin.name && rule.decision != RuleDecision::Forbidden);
        let Some(found) = context.find_program(&pin.name).filter(|_| loosened) else {
            continue;
        };
        let canonical = match context.inspect_path(&found) {
            PathState::Symlink { canonical } | PathState::NotCanonical { canonical } => canonical,
            _ => found.clone(),
        };
        let pinned: Vec<&HostExecutable> = rules
            .host_executables()
            .iter()
            .filter(|other| other.name == pin.name)
            .collect();
        if pinned
            .iter()
            .any(|other| other.path == canonical || other.path == found)
        {
            continue;
        }
        findings.push(pin_warning(
            pin,
            format!(
                "a session's PATH finds {name} at {found}, which the pins on {name} leave out: \
                 a bare `{name}` runs that program, in place, and the allow and prompt rules \
                 on {name} never reach it; pin {canonical} too if it is meant, or give \
                 sessions a PATH that finds {first} first",
                name = pin.name,
                found = found.display(),
                canonical = canonical.display(),
                first = pinned[0].path.display(),
            ),
        ));
    }
    findings
}

/// What to write instead of pinning `name` to a path that resolves to
/// `canonical`. A session looks up the rules for the canonical path's own
/// name, and their allow and prompt rules only if the pins for that name
/// list the canonical path: a pin on a link shuts out the very program it
/// means from what it would allow, and a link whose
/// name differs from its target's (`awk` -> `mawk`) can never be pinned,
/// nor reached by rules on its name.
fn pin_advice(name: &str, canonical: &Path) -> String {
    let target = canonical.display();
    match canonical.file_name().and_then(|file| file.to_str()) {
        Some(real) if real == name => {
            format!(
                ", so the allow and prompt rules on {name} never match it; pin {target} instead"
            )
        }
        Some(real) => format!(
            ", named {real}, so neither this pin nor the allow and prompt rules on {name} ever \
             match it; \
             pin host_executable(name = \"{real}\", paths = [\"{target}\"]) and write \
             the rules on {real}, or write them on \"{target}\""
        ),
        None => format!("; write the rules on \"{target}\""),
    }
}

/// An `allow` or `prompt` on every host turns the proxy into an open
/// door; an `allow` on a whole domain's subdomains is worth a second look
/// only when that domain hosts anyone's content, which lint cannot know.
/// A `forbidden` narrowed by protocol closes less than it reads: the
/// client in the sandbox picks how it asks the proxy, so it reaches the
/// host by another protocol (an `allow` or `prompt` so narrowed only
/// gives less, and is not flagged).
fn network_warning(rule: &crate::network::NetworkRule) -> Option<LintFinding> {
    let mut pattern = vec!["network_rule".into(), format!("host={}", rule.host)];
    let message = if rule.decision == RuleDecision::Forbidden {
        let protocol = rule.protocol?;
        pattern.push(format!("protocol={protocol}"));
        format!(
            "forbidden for protocol = \"{protocol}\" only: the client in the sandbox picks \
             how it asks the proxy (an http:// request is \"http\", CONNECT \"https\", \
             SOCKS5 \"socks5-tcp\"), so it reaches {} the other ways; leave protocol out \
             to forbid it",
            rule.host
        )
    } else if rule.host == DomainPattern::Everything {
        format!(
            "{} on every host: the sandbox reaches the whole network through the proxy; \
             name the hosts instead",
            rule.decision.as_str()
        )
    } else {
        return None;
    };
    Some(LintFinding {
        origin: rule.origin.clone(),
        pattern,
        severity: Severity::Warning,
        message,
    })
}

/// A `forbidden` rule decides before the `domains` lists: one on every port
/// and protocol that covers what an allow entry names leaves that entry
/// allowing nothing, which is easy to miss when the two sit in different
/// files. A rule narrower than the entry (one subdomain of an allowed
/// wildcard, one port of an allowed host) is what rules are for, and is not
/// flagged.
fn overridden_entry(
    rule: &crate::network::NetworkRule,
    place: &str,
    entry: &DomainPattern,
) -> Option<LintFinding> {
    if rule.decision != RuleDecision::Forbidden || rule.port.is_some() || rule.protocol.is_some() {
        return None;
    }
    if !rule.host.matches(&a_host_it_names(entry)?) {
        return None;
    }
    Some(LintFinding {
        origin: rule.origin.clone(),
        pattern: vec!["network_rule".into(), format!("host={}", rule.host)],
        severity: Severity::Warning,
        message: format!(
            "forbids what {place} \"{entry}\" allows: a forbidden rule decides before the \
             domains lists, so that entry opens nothing the rule covers"
        ),
    })
}

/// A host `pattern` names (one under it, for a wildcard), to ask another
/// pattern about; none for `*`.
fn a_host_it_names(pattern: &DomainPattern) -> Option<Destination> {
    match pattern {
        DomainPattern::Exact(destination) => Some(destination.clone()),
        DomainPattern::ApexAndSubdomains(apex) => Destination::parse(apex.as_str()).ok(),
        DomainPattern::Subdomains(apex) => Destination::parse(&format!("a.{apex}")).ok(),
        DomainPattern::Everything => None,
    }
}

/// The `domains` lists decide before every rule but `forbidden`: a
/// `prompt` rule on a host an allow entry names asks nobody there, the
/// connection is allowed (and `policy check --network`, which sees no
/// profile, says `prompt`).
fn unasked_prompt(
    rule: &crate::network::NetworkRule,
    place: &str,
    entry: &DomainPattern,
) -> Option<LintFinding> {
    if rule.decision != RuleDecision::Prompt {
        return None;
    }
    if !entry.matches(&a_host_it_names(&rule.host)?) {
        return None;
    }
    Some(LintFinding {
        origin: rule.origin.clone(),
        pattern: vec!["network_rule".into(), format!("host={}", rule.host)],
        severity: Severity::Warning,
        message: format!(
            "asks about what {place} \"{entry}\" allows: the domains lists decide before \
             prompt rules, so nobody is asked there and the connection is allowed"
        ),
    })
}

/// A warning about `pin`.
fn pin_warning(pin: &HostExecutable, message: String) -> LintFinding {
    LintFinding {
        origin: pin.origin.clone(),
        pattern: pin_text(pin),
        severity: Severity::Warning,
        message,
    }
}

/// A `host_executable` pin as a finding quotes it.
fn pin_text(pin: &HostExecutable) -> Vec<String> {
    vec![
        "host_executable".into(),
        format!("name={}", pin.name),
        format!("path={}", pin.path.display()),
    ]
}

fn pattern_text(rule: &PrefixRule) -> Vec<String> {
    std::iter::once(rule.program().to_owned())
        .chain(rule.rest().iter().map(|token| token.choices().join("|")))
        .collect()
}

/// The dynamic loader, by its names: `ld.so` (`ld.so.1` on MIPS, 32-bit
/// POWER and others), glibc's `ld-linux-*.so.N` (`ld-2.31.so` or
/// `ld-2.3.6.so` itself before glibc 2.34), `ld64.so.N` (s390x, POWER),
/// musl's `ld-musl-*.so.1` and uClibc's `ld-uClibc.so.0`. `ld.so PROGRAM`
/// runs the program it is given.
pub fn is_dynamic_loader(name: &str) -> bool {
    let old_glibc = name
        .strip_prefix("ld-2.")
        .and_then(|rest| rest.strip_suffix(".so"))
        .is_some_and(|version| {
            version.starts_with(|c: char| c.is_ascii_digit())
                && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        });
    let numbered = name
        .strip_prefix("ld.so.")
        .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()));
    name == "ld.so"
        || numbered
        || old_glibc
        || (["ld-linux", "ld-musl", "ld64.so", "ld-uClibc"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            && name.contains(".so"))
}

fn warning(rule: &PrefixRule) -> Option<String> {
    let name = rule.program().rsplit('/').next().unwrap_or_default();
    if is_dynamic_loader(name) {
        return Some(format!(
            "{} on {name}: the dynamic loader runs the program named in its arguments",
            rule.decision.as_str()
        ));
    }
    // `gcc-12` is `gcc`, as `python3.11` is `python`; a cross tool's
    // canonical name (`x86_64-linux-gnu-nm`, which `nm` links to) is its
    // plain one (probe 223: only the links' names were known).
    let plain = without_target(name);
    let program = unversioned(plain).trim_end_matches('-');
    let verb = rule.decision.as_str();
    // By its own name first: `diff3` and `m4` are no versions.
    let listed = |wanted: &str| RUNS_ANYTHING.iter().find(|(known, _)| *known == wanted);
    if let Some((_, why)) = listed(name)
        .or_else(|| listed(plain))
        .or_else(|| listed(program))
    {
        return Some(format!("{verb} on {name}: {why}"));
    }
    if program
        .rsplit('-')
        .next()
        .is_some_and(|last| COMPILERS.contains(&last))
    {
        return Some(format!(
            "{verb} on {name}: a compiler runs the programs -wrapper, -B, -fplugin, -specs \
             and @file name"
        ));
    }
    let unsandboxed = matches!(rule.execution, None | Some(RuleExecution::Unsandboxed));
    if program == "git" && unsandboxed {
        return Some(format!(
            "{verb} on git, unsandboxed: git runs the hooks and config commands of the \
             repository it is in, outside the sandbox; execgate escalates it only where the \
             sandbox cannot have written them (elsewhere it runs in place, sandboxed); add \
             execution = \"turn-default\" to keep it in the sandbox"
        ));
    }
    // The names the packages install the scripts under, which rules must
    // use (an escalation's path is the script's; probe 165).
    let runner = match program {
        "npm-cli.js" | "npm.js" => "npm",
        "yarnpkg" | "yarn.js" | "yarnpkg.js" => "yarn",
        "pnpm.cjs" | "pnpm.js" => "pnpm",
        other => other,
    };
    let (_, subcommands, why) = RUNNERS.iter().find(|(known, ..)| *known == runner)?;
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

/// The parts of a GNU target triple that end its prefix (`x86_64-linux-gnu-`)
/// or start its suffix (`perl5.36-x86_64-linux-gnu`).
const TRIPLE_ENDS: &[&str] = &[
    "gnu",
    "gnueabi",
    "gnueabihf",
    "gnux32",
    "gnuabi64",
    "gnuabin32",
    "gnuspe",
    "musl",
    "musleabihf",
    "mingw32",
    "elf",
    "eabi",
    "eabihf",
];
const TRIPLE_STARTS: &[&str] = &[
    "x86_64",
    "i386",
    "i486",
    "i586",
    "i686",
    "aarch64",
    "arm",
    "armhf",
    "armel",
    "riscv64",
    "powerpc",
    "powerpc64",
    "powerpc64le",
    "ppc64el",
    "s390x",
    "mips",
    "mipsel",
    "mips64",
    "mips64el",
    "mipsisa32r6",
    "mipsisa32r6el",
    "mipsisa64r6",
    "mipsisa64r6el",
    "arc",
    "hppa64",
    "ia64",
    "sparc64",
    "m68k",
    "hppa",
    "alpha",
    "sh4",
    "loongarch64",
];

/// `name` without a target triple before it (`x86_64-linux-gnu-nm`: `nm`)
/// or after it (`perl5.36-x86_64-linux-gnu`: `perl5.36`), as Debian
/// installs cross tools and multiarch interpreters under their canonical
/// names; without mingw-w64's thread model (`...-gcc-12-win32`, where the
/// alternatives of `x86_64-w64-mingw32-gcc` lead: `gcc-12`; review 225);
/// and without Python's ABI letter (`python3.6m`: `python3.6`).
fn without_target(name: &str) -> &str {
    let mut plain = name;
    // The prefix: up to the last part that ends a triple, one that starts
    // one before it.
    let parts: Vec<&str> = plain.split('-').collect();
    if let Some(end) = (1..parts.len().saturating_sub(1))
        .rev()
        .find(|&at| TRIPLE_ENDS.contains(&parts[at]))
    {
        if TRIPLE_STARTS.contains(&parts[0]) {
            let prefix: usize = parts[..=end].iter().map(|part| part.len() + 1).sum();
            plain = &plain[prefix..];
        }
    }
    // The suffix: from the part that starts a triple, one that ends one
    // after it.
    let parts: Vec<&str> = plain.split('-').collect();
    if let Some(start) = (1..parts.len()).find(|&at| TRIPLE_STARTS.contains(&parts[at])) {
        if parts[start..].iter().any(|part| TRIPLE_ENDS.contains(part)) {
            let kept: usize = parts[..start].iter().map(|part| part.len() + 1).sum();
            plain = &plain[..kept - 1];
        }
    }
    if let Some(before) = ["-win32", "-posix"]
        .iter()
        .find_map(|model| plain.strip_suffix(model))
    {
        plain = before;
    }
    match plain.strip_suffix('m') {
        Some(before) if before.ends_with(|c: char| c.is_ascii_digit()) => before,
        _ => plain,
    }
}

/// Whether the program at the canonical path `canonical`, found by the
/// name `found`, acts the same run under its canonical path: `found` is
/// its name, or its name without a version or a target triple it has
/// (`python3` and `python3.11`, `gcc` and `x86_64-linux-gnu-gcc-12`), or
/// its name with the version of the directory it is in (`llvm-ar-14` and
/// `/usr/lib/llvm-14/bin/llvm-ar`). A found name that adds a triple or a
/// version of its own may be read by the program (`ping6`, `linux32`, a
/// cross clang; review 230), and one of another name may be its mode
/// (`xzcat` and `xz`, `view` and `vim.basic`): a session does not escalate
/// those under the canonical path (probe 227: `xzcat` escalated as `xz`
/// compressed the file it was to print).
pub fn runs_as_itself(found: &str, canonical: &Path) -> bool {
    let Some(name) = canonical.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    let is_version = |rest: &str| {
        let rest = rest.strip_prefix(['-', '_', '.']).unwrap_or(rest);
        rest.starts_with(|c: char| c.is_ascii_digit())
            && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
    };
    let lacks_a_version_or_triple = [name, without_target(name)]
        .iter()
        .any(|full| *full == found || full.strip_prefix(found).is_some_and(&is_version));
    let versioned_as_its_directory = found.strip_prefix(name).is_some_and(|rest| {
        let version = rest.trim_start_matches(['-', '_', '.']);
        is_version(rest)
            && canonical.ancestors().skip(1).any(|dir| {
                dir.file_name()
                    .and_then(|dir| dir.to_str())
                    .is_some_and(|dir| dir == version || dir.ends_with(&format!("-{version}")))
            })
    });
    lacks_a_version_or_triple || versioned_as_its_directory
}

/// `name` without a version at its end, as packages install interpreters
/// and runners beside their plain names: `python3.11` and `python3` are
/// `python`, `perl5.36.0` `perl`, `tclsh8.6` `tclsh`, `node18` `node`,
/// `go1.22.1` `go`. A version is digits and dots that start with a digit;
/// a name that is all version stays as it is.
fn unversioned(name: &str) -> &str {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let version = &name[base.len()..];
    if base.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return name;
    }
    base
}
