//! Reading rules files: Starlark, with `prefix_rule`, `host_executable` and
//! `network_rule` as the only builtins beyond the language itself.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use starlark::any::ProvidesStaticType;
use starlark::environment::{GlobalsBuilder, Module};
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::list::UnpackList;
use starlark::values::none::NoneType;
use starlark::values::Value;

use crate::rule::{
    MatchOptions, PatternToken, PrefixRule, RuleDecision, RuleExecution, RuleOrigin, RuleSet,
};

/// Why a rules file could not be loaded. Every variant names the file, and
/// the line where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read rules file {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{}: {message}", .file.display(), .line.map_or_else(|| "?".to_owned(), |line| line.to_string()))]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

impl LoadError {
    /// The line the error points at, 1-based, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::Read { .. } => None,
            LoadError::Invalid { line, .. } => *line,
        }
    }
}

/// What a file being evaluated has declared so far.
#[derive(ProvidesStaticType)]
struct Collector {
    file: PathBuf,
    home: Option<PathBuf>,
    rules: RefCell<RuleSet>,
}

/// The most of a rules file read (review 47: `/dev/zero` as a rules file
/// was read until memory ran out).
const MOST_RULES_BYTES: u64 = 16 << 20;

/// The text of the rules file `file`. A FIFO by a name of its own is
/// refused (review 47: one without a writer held every command, `doctor`
/// too); a pipe the caller's shell made (`--rules <(...)`, a name under
/// `/dev/fd` or `/proc`) is read.
fn read_rules(file: &Path) -> std::io::Result<String> {
    use std::io::Read;
    #[cfg(unix)]
    let named_fifo = {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(file)?.file_type().is_fifo()
            && !(file.starts_with("/dev/fd") || file.starts_with("/proc"))
    };
    #[cfg(not(unix))]
    let named_fifo = false;
    if named_fifo {
        return Err(std::io::Error::other("it is a FIFO, not a file"));
    }
    let mut text = String::new();
    std::fs::File::open(file)?
        .take(MOST_RULES_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MOST_RULES_BYTES {
        return Err(std::io::Error::other("it is larger than 16 MiB"));
    }
    Ok(text)
}

impl RuleSet {
    /// Loads and merges rules files, in order.
    pub fn load<P: AsRef<Path>>(files: &[P]) -> Result<RuleSet, LoadError> {
        let mut set = RuleSet::default();
        for file in files {
            let file = file.as_ref();
            let source = read_rules(file).map_err(|source| LoadError::Read {
                file: file.to_path_buf(),
                source,
            })?;
            set.merge(RuleSet::parse(file, &source)?);
        }
        Ok(set)
    }

    /// Evaluates one rules file's text; `file` names it in errors and
    /// rule origins. A leading `~/` in a program path (a pattern's first
    /// token, a `host_executable` path) is `$HOME`.
    pub fn parse(file: &Path, source: &str) -> Result<RuleSet, LoadError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        RuleSet::parse_with_home(file, source, home)
    }

    /// [`parse`](Self::parse) with the home directory `~/` stands for.
    pub(crate) fn parse_with_home(
        file: &Path,
        source: &str,
        home: Option<PathBuf>,
    ) -> Result<RuleSet, LoadError> {
        let invalid = |error: starlark::Error| {
            let at = error.span().map(|span| span.resolve_span().begin.line + 1);
            let called_at = outermost_line(error.call_stack());
            let mut message = error.without_diagnostic().to_string();
            let mut line = at;
            // Inside a function: the line that called it, and where in it.
            if let (Some(at), Some(called_at)) = (at, called_at) {
                if called_at != at {
                    message.push_str(&format!(" (at line {at}, in a function called here)"));
                    line = Some(called_at);
                }
            }
            LoadError::Invalid {
                file: file.to_path_buf(),
                line,
                message,
            }
        };
        let ast = AstModule::parse(
            &file.display().to_string(),
            source.to_owned(),
            &Dialect::Standard,
        )
        .map_err(invalid)?;
        // Starlark's own message asks for an evaluator's loader.
        if let Some(load) = ast.loads().first() {
            return Err(LoadError::Invalid {
                file: file.to_path_buf(),
                line: Some(load.span.resolve_span().begin.line + 1),
                message: format!(
                    "load({:?}) is not supported: each rules file stands alone; name every \
                     file with --rules, or in the config's rules = [...]",
                    load.module_id
                ),
            });
        }
        let globals = GlobalsBuilder::standard().with(rules_builtins).build();
        let module = Module::new();
        let collector = Collector {
            file: file.to_path_buf(),
            home,
            rules: RefCell::new(RuleSet::default()),
        };
        {
            let mut eval = Evaluator::new(&module);
            eval.extra = Some(&collector);
            eval.eval_module(ast, &globals).map_err(invalid)?;
        }
        let mut set = collector.rules.into_inner();
        set.add_file(file.to_path_buf());
        Ok(set)
    }
}

/// A `pattern`, `match` or `not_match` element: a token or a list.
type Element<'v> = starlark::values::Value<'v>;

fn collector<'a>(eval: &'a Evaluator) -> anyhow::Result<&'a Collector> {
    eval.extra
        .and_then(|extra| extra.downcast_ref::<Collector>())
        .ok_or_else(|| anyhow::anyhow!("rules builtins called outside a rules file"))
}

/// Where the builtin being called is, for the rule it makes: the line of
/// the statement at the file's top level, and when that calls a function,
/// the line inside it as well (probe 223: every rule a helper made had the
/// helper's line, in errors and as its id; review 229: with the call's line
/// alone, the rules of one call shared one).
fn origin_here(collector: &Collector, eval: &Evaluator) -> RuleOrigin {
    let line = outermost_line(&eval.call_stack()).unwrap_or(0);
    let inner = eval
        .call_stack_top_location()
        .map(|span| span.resolve_span().begin.line + 1);
    RuleOrigin {
        file: collector.file.clone(),
        line,
        within: inner.filter(|&inner| inner != line),
    }
}

fn outermost_line(stack: &starlark::eval::CallStack) -> Option<usize> {
    stack
        .frames
        .iter()
        .find_map(|frame| frame.location.as_ref())
        .map(|span| span.resolve_span().begin.line + 1)
}

fn strings(value: Value, what: &str) -> anyhow::Result<Vec<String>> {
    if let Some(text) = value.unpack_str() {
        return Ok(vec![text.to_owned()]);
    }
    let list = starlark::values::list::ListRef::from_value(value).ok_or_else(|| {
        anyhow::anyhow!(
            "{what}: expected a string or a list of strings, got {}",
            value.get_type()
        )
    })?;
    list.iter()
        .map(|item| {
            item.unpack_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("{what}: expected strings, got {}", item.get_type()))
        })
        .collect()
}

/// `alternatives` in their order, each once (probe 223: `[["id", "id"]]`
/// was two rules, listed twice wherever it matched).
fn without_repeats(alternatives: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    alternatives
        .into_iter()
        .filter(|alternative| seen.insert(alternative.clone()))
        .collect()
}

/// An example: a list of tokens, or a string split as a shell would; its
/// program's `~/` expanded, and an absolute path read, as the pattern's
/// are (review 239: `/usr/bin//rm` in both no longer matched).
fn example_tokens(value: Value, home: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let mut tokens = match value.unpack_str() {
        Some(text) => shlex::split(text)
            .ok_or_else(|| anyhow::anyhow!("example {text:?} is not a well-formed command line"))?,
        None => strings(value, "example")?,
    };
    if let Some(program) = tokens.first_mut() {
        if program.starts_with("~/") || program.starts_with('/') {
            *program = program_name(program, home)?;
        }
    }
    Ok(tokens)
}

/// `path` with a leading `~/` replaced by `home`; as written otherwise.
fn expand_home(path: &str, home: Option<&Path>) -> anyhow::Result<PathBuf> {
    match path.strip_prefix("~/") {
        Some(rest) => Ok(home
            .ok_or_else(|| anyhow::anyhow!("{path:?}: HOME is not set"))?
            .join(rest)),
        None => Ok(PathBuf::from(path)),
    }
}

/// A pattern's program: a bare name, matched against the name of the
/// program a session runs, or an absolute path (`~/` expanded), matched
/// against its canonical path. A session decides on the absolute path of
/// the file it opened, never on a path as the command spelled it, so a
/// relative path (`./prog`, `bin/tool`, `~user/bin/x`) would never match:
/// refused rather than loaded as a rule that does nothing.
fn program_name(program: &str, home: Option<&Path>) -> anyhow::Result<String> {
    if program.is_empty() {
        anyhow::bail!("pattern[0] must name a program");
    }
    if !program.chars().any(std::path::is_separator) {
        return Ok(program.to_owned());
    }
    let path = expand_home(program, home)?;
    // `/usr/bin/git` is not absolute on Windows, nor `C:/Tools/x.exe` here,
    // where each never matches either; refusing them would refuse a rules
    // file shared between the two.
    if !(path.is_absolute() || path.starts_with("/") || has_a_drive(program)) {
        let hint = if program.starts_with('~') {
            " (`~` is expanded only as `~/`, the home directory)"
        } else {
            ""
        };
        anyhow::bail!(
            "pattern[0] {program:?} is a relative path{hint}, which a session never matches: \
             it decides on the absolute, canonical path of the program it runs; write a bare \
             name (matched against the program's name) or the absolute path"
        );
    }
    // As a session compares it: `/usr/bin//rm` and `/usr/bin/./rm` are
    // `/usr/bin/rm` (probe 238: a `forbidden` rule written so never
    // matched); `..` stays, as a link may lie before it, and so does a
    // last `/`, which names a directory lint warns of.
    let mut path: PathBuf = path.components().collect();
    if program.ends_with('/') && !path.to_string_lossy().ends_with('/') {
        path.as_mut_os_string().push("/");
    }
    path.into_os_string()
        .into_string()
        .map_err(|path| anyhow::anyhow!("pattern[0] {:?} is not UTF-8", path.to_string_lossy()))
}

/// Whether `program` begins with a Windows drive (`C:/`, `C:\\`).
fn has_a_drive(program: &str) -> bool {
    let bytes = program.as_bytes();
    bytes.len() > 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'/' | b'\\')
}

/// A rule's `decision`: `allow` when absent.
fn decision_or_allow(decision: Option<&str>) -> anyhow::Result<RuleDecision> {
    match decision {
        None => Ok(RuleDecision::Allow),
        Some(text) => RuleDecision::parse(text).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown decision {text:?}: expected \"allow\", \"prompt\" or \"forbidden\""
            )
        }),
    }
}

// Starlark keyword arguments become Rust parameters, one each.
#[allow(clippy::too_many_arguments)]
#[starlark_module]
fn rules_builtins(builder: &mut GlobalsBuilder) {
    /// `prefix_rule(pattern=[...], decision="allow", justification=None,
    /// match=[], not_match=[], execution=None, exact=False)`.
    fn prefix_rule<'v>(
        #[starlark(require = named)] pattern: UnpackList<Element<'v>>,
        #[starlark(require = named)] decision: Option<&str>,
        #[starlark(require = named)] justification: Option<&str>,
        #[starlark(require = named)] r#match: Option<UnpackList<Element<'v>>>,
        #[starlark(require = named)] not_match: Option<UnpackList<Element<'v>>>,
        #[starlark(require = named)] execution: Option<&str>,
        #[starlark(require = named, default = false)] exact: bool,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        let collector = collector(eval)?;
        let origin = origin_here(collector, eval);
        let decision = decision_or_allow(decision)?;
        let mut elements = pattern.items.into_iter();
        let first = elements
            .next()
            .ok_or_else(|| anyhow::anyhow!("pattern must not be empty"))?;
        let programs = strings(first, "pattern[0]")?
            .iter()
            .map(|program| program_name(program, collector.home.as_deref()))
            .collect::<anyhow::Result<Vec<String>>>()?;
        let programs = without_repeats(programs);
        let mut rest = Vec::new();
        for (index, element) in elements.enumerate() {
            let choices = without_repeats(strings(element, &format!("pattern[{}]", index + 1))?);
            rest.push(match choices.len() {
                0 => anyhow::bail!("pattern[{}] has no alternatives", index + 1),
                1 => PatternToken::Exact(choices.into_iter().next().unwrap_or_default()),
                _ => PatternToken::AnyOf(choices),
            });
        }
        if programs.is_empty() {
            anyhow::bail!("pattern[0] must name a program");
        }
        if justification.is_some_and(|text| text.trim().is_empty()) {
            anyhow::bail!("justification must not be empty");
        }
        let execution = execution.map(|text| {
            if text.is_empty() {
                Err(anyhow::anyhow!("execution must not be empty"))
            } else {
                Ok(RuleExecution::parse(text))
            }
        });
        let execution = execution.transpose()?;
        if execution.is_some() && decision == RuleDecision::Forbidden {
            anyhow::bail!("execution has no meaning on a forbidden rule");
        }
        let mut new_rules = RuleSet::default();
        for program in programs {
            new_rules.add_rule(PrefixRule {
                program,
                rest: rest.clone(),
                exact,
                decision,
                justification: justification.map(str::to_owned),
                execution: execution.clone(),
                origin: origin.clone(),
            });
        }
        // Examples are checked against this rule alone, so that a file
        // documents what each rule does.
        for example in r#match.map(|list| list.items).unwrap_or_default() {
            let tokens = example_tokens(example, collector.home.as_deref())?;
            if new_rules
                .check(&tokens, MatchOptions::default())
                .matched
                .is_empty()
            {
                anyhow::bail!("match example {tokens:?} does not match this rule");
            }
        }
        for example in not_match.map(|list| list.items).unwrap_or_default() {
            let tokens = example_tokens(example, collector.home.as_deref())?;
            if !new_rules
                .check(&tokens, MatchOptions::default())
                .matched
                .is_empty()
            {
                anyhow::bail!("not_match example {tokens:?} matches this rule");
            }
        }
        collector.rules.borrow_mut().merge(new_rules);
        Ok(NoneType)
    }

    /// `network_rule(host="**.crates.io", protocol="https", port=443,
    /// decision="allow", justification=None)`.
    fn network_rule<'v>(
        #[starlark(require = named)] host: &str,
        #[starlark(require = named)] protocol: Option<&str>,
        #[starlark(require = named)] port: Option<i32>,
        #[starlark(require = named)] decision: Option<&str>,
        #[starlark(require = named)] justification: Option<&str>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        let collector = collector(eval)?;
        let origin = origin_here(collector, eval);
        let decision = decision_or_allow(decision)?;
        let host: execgate_network_proxy::DomainPattern = host
            .parse()
            .map_err(|error| anyhow::anyhow!("host: {error}"))?;
        let protocol = protocol
            .map(|text| {
                crate::network::parse_protocol(text).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown protocol {text:?}: expected \"https\", \"http\" or \"socks5-tcp\""
                    )
                })
            })
            .transpose()?;
        let port = port
            .map(|number| {
                u16::try_from(number)
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or_else(|| anyhow::anyhow!("port {number} is not from 1 to 65535"))
            })
            .transpose()?;
        // Narrowed by a port or a protocol, it is a rule ("no plain mail
        // anywhere"); bare, it is restricted networking written as one.
        if host == execgate_network_proxy::DomainPattern::Everything
            && decision == RuleDecision::Forbidden
            && port.is_none()
            && protocol.is_none()
        {
            anyhow::bail!(
                "a forbidden rule on host \"*\" would forbid every destination; use restricted \
                 networking instead, or narrow it with a port or a protocol"
            );
        }
        if justification.is_some_and(|text| text.trim().is_empty()) {
            anyhow::bail!("justification must not be empty");
        }
        collector
            .rules
            .borrow_mut()
            .add_network_rule(crate::network::NetworkRule {
                host,
                protocol,
                port,
                decision,
                justification: justification.map(str::to_owned),
                origin,
            });
        Ok(NoneType)
    }

    /// `host_executable(name="git", paths=["/usr/bin/git", "~/bin/git"])`.
    fn host_executable<'v>(
        #[starlark(require = named)] name: &str,
        #[starlark(require = named)] paths: UnpackList<&'v str>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        let collector = collector(eval)?;
        let origin = origin_here(collector, eval);
        if name.is_empty() || name.contains('/') {
            anyhow::bail!("host_executable name {name:?} must be a bare program name");
        }
        let mut resolved = Vec::new();
        for path in paths.items {
            let path = expand_home(path, collector.home.as_deref())?;
            if !path.is_absolute() {
                anyhow::bail!("host_executable path {} must be absolute", path.display());
            }
            if !path
                .file_name()
                .and_then(|file| file.to_str())
                .is_some_and(|file| names_the_program(file, name))
            {
                anyhow::bail!(
                    "host_executable path {} does not end in {name:?}",
                    path.display()
                );
            }
            resolved.push(path);
        }
        collector
            .rules
            .borrow_mut()
            .add_host_executable(name.to_owned(), resolved, &origin);
        Ok(NoneType)
    }
}

/// Whether a pinned path's file name `file` is the program `name`: the
/// same name; on Windows, which ignores case and runs `whoami.exe` as
/// `whoami`, the same name in any case, with or without its extension.
fn names_the_program(file: &str, name: &str) -> bool {
    if cfg!(windows) {
        let file = crate::fold_windows_name(file);
        let name = crate::fold_windows_name(name);
        file == name
            || std::path::Path::new(&file)
                .file_stem()
                .is_some_and(|stem| *stem == *name)
    } else {
        file == name
    }
}
