//! execgate's rules language: which programs leave the sandbox, which need
//! a person's approval, and which never run.
//!
//! Rules files are Starlark, in the syntax of codex's execpolicy `.rules`
//! files, so that a codex rules file gives the same decisions here:
//!
//! ```text
//! host_executable(name = "git", paths = ["/usr/bin/git"])
//! prefix_rule(
//!     pattern = ["git", ["status", "diff", "log"]],
//!     decision = "allow",                # "allow" (default), "prompt", "forbidden"
//!     justification = "read-only git",
//!     match = [["git", "status"], "git log -1"],
//!     not_match = ["git push"],
//! )
//! ```
//!
//! A pattern is a program then arguments; each element is a token or a
//! list of alternatives, and the rule matches any command line that starts
//! with it. The program is a bare name or an absolute path (`~/` is
//! `$HOME`); a relative path, which a session never sees, is a load
//! error. Two extensions, in the same syntax: `exact = True` (no further
//! arguments) and `execution = "unsandboxed" | "turn-default" | PROFILE`
//! (what an allowed or approved command runs as; `unsandboxed` when
//! absent). `match` and `not_match` examples are checked against their
//! rule when the file loads: a failing one is a load error naming the file
//! and line.
//!
//! `network_rule(host = ..., protocol = ..., port = ..., decision = ...)`
//! decides connections from a `limited` sandbox through execgate's proxy
//! ([`RuleSet::check_network`]); see the `network` module.
//!
//! Matching ([`RuleSet::check`]) looks up the first token exactly; only
//! when asked ([`MatchOptions::resolve_host_executables`]) does an
//! absolute path fall back to its basename's rules: all of them if
//! `host_executable` lists that path for the name (or lists nothing for
//! it), else only the `forbidden` ones (a pin keeps what the name's rules
//! loosen to its paths, not what they forbid). The strictest matching
//! decision wins: `forbidden` > `prompt` > `allow`. [`lint`] names
//! `allow` and `prompt` rules on programs that run
//! whatever their arguments say; [`lint_with`] also rules that never match
//! or cannot run, from what its caller found on the machine and in the
//! config (non-canonical or missing paths, names not in `PATH`, undefined
//! profiles); both name tokens only a look-alike matches.
//!
//! This crate decides nothing about a live session: it never runs or
//! resolves a program. What a decision means for an exec (the sandbox,
//! approvals, skills) is `core-bridge`'s policy.

mod check;
mod lint;
mod load;
mod network;
mod rule;

pub use check::{CheckReport, NetworkCheckReport};
pub use execgate_network_proxy::{Destination, DomainPattern, Protocol};
pub use lint::{
    is_dynamic_loader, lint, lint_with, runs_as_itself, LintContext, LintFinding, PathState,
    Severity,
};
pub use load::LoadError;
pub use network::{NetworkEvaluation, NetworkRule};
pub use rule::{
    fold_windows_name, Evaluation, HostExecutable, MatchOptions, PrefixRule, RuleDecision,
    RuleExecution, RuleMatch, RuleOrigin, RuleSet,
};

#[cfg(test)]
mod tests;
