//! Rules, rule sets and matching.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What a matching rule says. Ordered by strictness: when several rules
/// match, the greatest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleDecision {
    Allow,
    Prompt,
    Forbidden,
}

impl RuleDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleDecision::Allow => "allow",
            RuleDecision::Prompt => "prompt",
            RuleDecision::Forbidden => "forbidden",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<RuleDecision> {
        match text {
            "allow" => Some(RuleDecision::Allow),
            "prompt" => Some(RuleDecision::Prompt),
            "forbidden" => Some(RuleDecision::Forbidden),
            _ => None,
        }
    }
}

/// What an allowed or approved command runs as (our extension to the
/// codex syntax: `execution = "..."`). Ordered by what it grants, least
/// first: among equally strict matching rules, the least privileged wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleExecution {
    /// The session's own sandbox, started by the server.
    TurnDefault,
    /// The session's sandbox plus a named profile's grants.
    Profile(String),
    /// Outside any sandbox. The default for `allow` and `prompt` rules.
    Unsandboxed,
}

impl RuleExecution {
    pub(crate) fn parse(text: &str) -> RuleExecution {
        match text {
            "unsandboxed" => RuleExecution::Unsandboxed,
            "turn-default" => RuleExecution::TurnDefault,
            profile => RuleExecution::Profile(profile.to_owned()),
        }
    }
}

impl fmt::Display for RuleExecution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleExecution::Unsandboxed => f.write_str("unsandboxed"),
            RuleExecution::TurnDefault => f.write_str("turn-default"),
            RuleExecution::Profile(name) => f.write_str(name),
        }
    }
}

/// Where a rule was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleOrigin {
    pub file: PathBuf,
    /// 1-based: the statement at the file's top level that made the rule.
    pub line: usize,
    /// The line inside the function that statement called, where the
    /// rule was made by one.
    pub within: Option<usize>,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        match self.within {
            Some(within) => write!(f, " (line {within})"),
            None => Ok(()),
        }
    }
}

/// One path a `host_executable` pins a name to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostExecutable {
    pub name: String,
    /// Absolute, `~` expanded, as written otherwise.
    pub path: PathBuf,
    pub origin: RuleOrigin,
}

/// One position of a pattern: a token, or alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternToken {
    Exact(String),
    AnyOf(Vec<String>),
}

impl PatternToken {
    fn matches(&self, token: &str) -> bool {
        match self {
            PatternToken::Exact(expected) => expected == token,
            PatternToken::AnyOf(choices) => choices.iter().any(|choice| choice == token),
        }
    }

    pub(crate) fn choices(&self) -> &[String] {
        match self {
            PatternToken::Exact(token) => std::slice::from_ref(token),
            PatternToken::AnyOf(choices) => choices,
        }
    }
}

/// A `prefix_rule`: one program and the arguments that must follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRule {
    /// The first token: a bare name, or an absolute path (`~/` expanded,
    /// as written otherwise).
    pub(crate) program: String,
    pub(crate) rest: Vec<PatternToken>,
    /// `exact = True`: no arguments beyond the pattern.
    pub(crate) exact: bool,
    pub decision: RuleDecision,
    pub justification: Option<String>,
    pub execution: Option<RuleExecution>,
    pub origin: RuleOrigin,
}

impl PrefixRule {
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Whether `args` (argv without the program) start with this rule's
    /// pattern; the matched tokens if so. `None` stands for an argument
    /// that is not UTF-8, which no pattern token matches.
    fn match_args(&self, args: &[Option<&str>]) -> Option<Vec<String>> {
        if args.len() < self.rest.len() || (self.exact && args.len() != self.rest.len()) {
            return None;
        }
        let mut matched = Vec::with_capacity(self.rest.len() + 1);
        matched.push(self.program.clone());
        for (token, arg) in self.rest.iter().zip(args) {
            let arg = (*arg)?;
            if !token.matches(arg) {
                return None;
            }
            matched.push(arg.to_owned());
        }
        Some(matched)
    }

    pub(crate) fn rest(&self) -> &[PatternToken] {
        &self.rest
    }

    pub(crate) fn is_exact(&self) -> bool {
        self.exact
    }
}

/// A rule that matched a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// The program as the rule names it, then the arguments it matched.
    pub matched_prefix: Vec<String>,
    pub decision: RuleDecision,
    /// The absolute path the program was resolved from, when the rule was
    /// reached through a `host_executable` (basename) fallback.
    pub resolved_program: Option<PathBuf>,
    pub justification: Option<String>,
    pub execution: Option<RuleExecution>,
    pub origin: RuleOrigin,
}

/// Every rule that matched a command line, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluation {
    /// In the order the rules were loaded.
    pub matched: Vec<RuleMatch>,
}

impl Evaluation {
    /// The strictest decision among the matches; `None` when nothing
    /// matched.
    pub fn decision(&self) -> Option<RuleDecision> {
        self.matched.iter().map(|rule| rule.decision).max()
    }

    /// The rule that decides: strictest decision first, then the least
    /// privileged execution, then the first loaded.
    pub fn deciding_rule(&self) -> Option<&RuleMatch> {
        let decision = self.decision()?;
        self.matched
            .iter()
            .filter(|rule| rule.decision == decision)
            .min_by_key(|rule| rule.execution.clone().unwrap_or(RuleExecution::Unsandboxed))
    }
}

/// How [`RuleSet::check`] treats an absolute program path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchOptions {
    /// When no rule names the absolute path itself, try the rules for its
    /// basename: all of them if `host_executable` lists the path for that
    /// name, or lists nothing for it; only the `forbidden` ones otherwise.
    pub resolve_host_executables: bool,
}

/// A program's name or path as Windows compares them: in lower case, with
/// `\` for `/`. (Windows folds case by its own table; lower case agrees
/// with it for the names programs have.)
pub fn fold_windows_name(name: &str) -> String {
    name.replace('/', "\\").to_lowercase()
}

/// Rules from one or more files, merged in load order, indexed by program
/// and first argument: a lookup touches only the rules that can match, so
/// its cost does not grow with the number of rules for other commands.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    by_program: HashMap<String, ProgramRules>,
    network: Vec<crate::network::NetworkRule>,
    host_executables: HashMap<String, Vec<PathBuf>>,
    /// The same paths, each with where it was written, in load order.
    host_executable_paths: Vec<HostExecutable>,
    count: usize,
    files: Vec<PathBuf>,
}

/// One program's rules, each stored once; the index holds positions.
#[derive(Debug, Clone, Default)]
struct ProgramRules {
    /// In load order.
    rules: Vec<PrefixRule>,
    /// Rules with no argument in their pattern: they match any arguments.
    any_arguments: Vec<usize>,
    /// Rules by each token their first argument accepts.
    by_first_argument: HashMap<String, Vec<usize>>,
}

impl ProgramRules {
    fn push(&mut self, rule: PrefixRule) {
        let position = self.rules.len();
        match rule.rest.first() {
            None => self.any_arguments.push(position),
            Some(first) => {
                for choice in first.choices() {
                    self.by_first_argument
                        .entry(choice.clone())
                        .or_default()
                        .push(position);
                }
            }
        }
        self.rules.push(rule);
    }

    /// Positions of the rules that may match `first`, in load order.
    fn candidates(&self, first: Option<&str>) -> Vec<usize> {
        let indexed = first
            .and_then(|token| self.by_first_argument.get(token))
            .map_or(&[][..], Vec::as_slice);
        let mut positions: Vec<usize> = self.any_arguments.iter().chain(indexed).copied().collect();
        positions.sort_unstable();
        positions
    }
}

impl RuleSet {
    /// The number of `prefix_rule`s (one per first-token alternative).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The files loaded, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every rule, grouped by program.
    pub fn rules(&self) -> impl Iterator<Item = &PrefixRule> {
        self.by_program.values().flat_map(|program| &program.rules)
    }

    /// This set for a file system that ignores case, as Windows does: every
    /// rule's program, and every name and path `host_executable` pins, as
    /// [`fold_windows_name`] spells it, so that `WhoAmI`, `whoami.exe` and
    /// `C:/Windows/System32/whoami.exe` name what Windows runs as
    /// `C:\windows\system32\WHOAMI.EXE`. Look programs up folded alike.
    /// Rules that fold to one program keep their load order among them.
    pub fn folded_for_windows(self) -> RuleSet {
        let loaded_at = |origin: &RuleOrigin| {
            let file = self.files.iter().position(|file| *file == origin.file);
            (file, origin.line)
        };
        let mut rules: Vec<PrefixRule> = self
            .by_program
            .values()
            .flat_map(|program| program.rules.iter().cloned())
            .collect();
        rules.sort_by_key(|rule| loaded_at(&rule.origin));
        let mut folded = RuleSet {
            network: self.network,
            files: self.files,
            ..RuleSet::default()
        };
        for mut rule in rules {
            rule.program = fold_windows_name(&rule.program);
            folded.add_rule(rule);
        }
        // From the map, not the list of paths: a pin to no path at all
        // (`paths = []`) is in the map alone, and keeps everything but
        // `forbidden` away from every program of its name (a review).
        let fold_path = |path: &PathBuf| PathBuf::from(fold_windows_name(&path.to_string_lossy()));
        for (name, paths) in self.host_executables {
            folded
                .host_executables
                .entry(fold_windows_name(&name))
                .or_default()
                .extend(paths.iter().map(fold_path));
        }
        folded.host_executable_paths = self
            .host_executable_paths
            .into_iter()
            .map(|pinned| HostExecutable {
                name: fold_windows_name(&pinned.name),
                path: fold_path(&pinned.path),
                origin: pinned.origin,
            })
            .collect();
        folded
    }

    /// The paths `host_executable` pins `name` to, if any.
    pub fn host_executable(&self, name: &str) -> Option<&[PathBuf]> {
        self.host_executables.get(name).map(Vec::as_slice)
    }

    /// Every path `host_executable` pins a name to, in load order.
    pub fn host_executables(&self) -> &[HostExecutable] {
        &self.host_executable_paths
    }

    pub(crate) fn add_rule(&mut self, rule: PrefixRule) {
        self.count += 1;
        self.by_program
            .entry(rule.program.clone())
            .or_default()
            .push(rule);
    }

    pub(crate) fn add_host_executable(
        &mut self,
        name: String,
        paths: Vec<PathBuf>,
        origin: &RuleOrigin,
    ) {
        self.host_executable_paths
            .extend(paths.iter().map(|path| HostExecutable {
                name: name.clone(),
                path: path.clone(),
                origin: origin.clone(),
            }));
        self.host_executables.entry(name).or_default().extend(paths);
    }

    /// The `network_rule`s, in load order.
    pub fn network_rules(&self) -> &[crate::network::NetworkRule] {
        &self.network
    }

    pub(crate) fn add_network_rule(&mut self, rule: crate::network::NetworkRule) {
        self.network.push(rule);
    }

    /// The network rules that match a connection to `destination:port`
    /// made with `protocol`.
    pub fn check_network(
        &self,
        destination: &execgate_network_proxy::Destination,
        port: u16,
        protocol: execgate_network_proxy::Protocol,
    ) -> crate::network::NetworkEvaluation {
        crate::network::evaluate(&self.network, destination, port, protocol)
    }

    pub(crate) fn add_file(&mut self, file: PathBuf) {
        self.files.push(file);
    }

    /// Appends `other`'s rules after this set's.
    pub fn merge(&mut self, other: RuleSet) {
        // Order only matters among one program's rules, and is kept there.
        for rule in other
            .by_program
            .into_values()
            .flat_map(|program| program.rules)
        {
            self.add_rule(rule);
        }
        for (name, paths) in other.host_executables {
            self.host_executables.entry(name).or_default().extend(paths);
        }
        self.host_executable_paths
            .extend(other.host_executable_paths);
        self.network.extend(other.network);
        self.files.extend(other.files);
    }

    /// The rules that match `argv` (program first).
    pub fn check<S: AsRef<str>>(&self, argv: &[S], options: MatchOptions) -> Evaluation {
        let tokens: Vec<Option<&str>> = argv.iter().map(|arg| Some(arg.as_ref())).collect();
        self.evaluate(&tokens, options)
    }

    /// [`check`](Self::check) for arguments that may not be UTF-8: such an
    /// argument matches no pattern token.
    pub fn check_os<S: AsRef<std::ffi::OsStr>>(
        &self,
        argv: &[S],
        options: MatchOptions,
    ) -> Evaluation {
        let tokens: Vec<Option<&str>> = argv.iter().map(|arg| arg.as_ref().to_str()).collect();
        match (tokens.split_first(), argv.first()) {
            // A program path that is not UTF-8 names no rule itself, but a
            // UTF-8 name is still its name (probe 144: `forbidden` on
            // `awk` passed over `/tmp/\xff/awk`).
            (Some((None, args)), Some(program)) if options.resolve_host_executables => {
                self.by_name(Path::new(program.as_ref()), args)
            }
            _ => self.evaluate(&tokens, options),
        }
    }

    /// [`RuleSet::check_os_as_found`] for a program found by a path that
    /// climbs (`/usr/lib/../bin/awk`), which has another name with its
    /// directory resolved (`/usr/bin/awk`): a `forbidden` rule on either
    /// holds (probe 238, review 243).
    pub fn check_os_as_found_either<S: AsRef<std::ffi::OsStr>>(
        &self,
        argv: &[S],
        found: &std::ffi::OsStr,
        resolved: Option<&std::ffi::OsStr>,
        options: MatchOptions,
    ) -> Evaluation {
        let as_written = self.check_os_as_found(argv, found, options);
        let Some(resolved) = resolved else {
            return as_written;
        };
        if as_written.decision() == Some(RuleDecision::Forbidden) {
            return as_written;
        }
        let as_resolved = self.check_os_as_found(argv, resolved, options);
        match as_resolved.decision() {
            Some(RuleDecision::Forbidden) => as_resolved,
            _ => as_written,
        }
    }

    /// [`check_os`](Self::check_os) for a program a session found at
    /// `found` (`/usr/bin/python3`, a link) and decides on by `argv[0]`, its
    /// canonical path (`/usr/bin/python3.11`): the `forbidden` rules that
    /// match the path as found, or its name, forbid it too. They only ever
    /// refuse: what rules allow or prompt for stays with the canonical
    /// path, as a `host_executable` pin narrows what rules loosen and never
    /// what they forbid.
    pub fn check_os_as_found<S: AsRef<std::ffi::OsStr>>(
        &self,
        argv: &[S],
        found: &std::ffi::OsStr,
        options: MatchOptions,
    ) -> Evaluation {
        let mut evaluation = self.check_os(argv, options);
        let same = argv.first().is_none_or(|program| program.as_ref() == found);
        if same || evaluation.decision() == Some(RuleDecision::Forbidden) {
            return evaluation;
        }
        // `/usr/bin//awk`, `/usr/bin/./awk` (a `PATH` entry ending in `/`,
        // a `./awk` joined to the working directory) are `/usr/bin/awk`.
        let found: std::path::PathBuf = Path::new(found).components().collect();
        let found = found.as_os_str();
        let canonical = argv.first().map(|program| Path::new(program.as_ref()));
        // Under the same name (`/bin/ls`, `/usr/bin/ls`) the name's rules
        // were weighed against the canonical path's already: only a rule
        // on the path as found adds to them.
        let found_name = Path::new(found).file_name();
        let renamed = found_name != canonical.and_then(Path::file_name);
        // Most programs have no rule by either: two lookups, no second pass.
        let has_rules =
            |key: Option<&str>| key.is_some_and(|key| self.by_program.contains_key(key));
        let by_name = renamed && has_rules(found_name.and_then(|name| name.to_str()));
        if !(by_name || has_rules(found.to_str())) {
            return evaluation;
        }
        let mut as_found: Vec<&std::ffi::OsStr> = argv.iter().map(AsRef::as_ref).collect();
        let options = MatchOptions {
            resolve_host_executables: options.resolve_host_executables && renamed,
        };
        as_found[0] = found;
        evaluation.matched.extend(
            self.check_os(&as_found, options)
                .matched
                .into_iter()
                .filter(|rule| rule.decision == RuleDecision::Forbidden),
        );
        evaluation
    }

    fn evaluate(&self, argv: &[Option<&str>], options: MatchOptions) -> Evaluation {
        let Some((Some(program), args)) = argv.split_first() else {
            return Evaluation::default();
        };
        let exact = self.matches_for(program, args, None);
        if !exact.is_empty() || !options.resolve_host_executables {
            return Evaluation { matched: exact };
        }
        self.by_name(Path::new(program), args)
    }

    /// The rules on an absolute `path`'s name, as far as a pin lets them
    /// reach it.
    fn by_name(&self, path: &Path, args: &[Option<&str>]) -> Evaluation {
        if !path.is_absolute() {
            return Evaluation::default();
        }
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            return Evaluation::default();
        };
        let mut matched = self.matches_for(name, args, Some(path));
        if self.pins_elsewhere(name, path) {
            matched.retain(|rule| rule.decision == RuleDecision::Forbidden);
        }
        Evaluation { matched }
    }

    /// Whether `host_executable` pins `name` to paths that do not include
    /// `path`. A pin keeps what the rules on its name loosen (allow and
    /// prompt escalate the program) to the paths it lists, so that a
    /// look-alike elsewhere is not escalated; what they forbid applies to
    /// every program of that name, pinned or not: a pin that took a
    /// `forbidden` away from `/usr/local/bin/git` would let the very
    /// look-alike it guards against run where `/usr/bin/git` may not.
    fn pins_elsewhere(&self, name: &str, path: &Path) -> bool {
        self.host_executables
            .get(name)
            .is_some_and(|pinned| !pinned.iter().any(|allowed| allowed == path))
    }

    fn matches_for(
        &self,
        program: &str,
        args: &[Option<&str>],
        resolved: Option<&Path>,
    ) -> Vec<RuleMatch> {
        let Some(rules) = self.by_program.get(program) else {
            return Vec::new();
        };
        let first = args.first().copied().flatten();
        rules
            .candidates(first)
            .into_iter()
            .map(|position| &rules.rules[position])
            .filter_map(|rule| {
                let matched_prefix = rule.match_args(args)?;
                Some(RuleMatch {
                    matched_prefix,
                    decision: rule.decision,
                    resolved_program: resolved.map(Path::to_path_buf),
                    justification: rule.justification.clone(),
                    execution: rule.execution.clone(),
                    origin: rule.origin.clone(),
                })
            })
            .collect()
    }
}
