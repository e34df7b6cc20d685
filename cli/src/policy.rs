//! `execgate policy check|lint`: what the rules say, without running
//! anything.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use execgate_core_bridge::rules::{
    lint, CheckReport, Destination, MatchOptions, NetworkCheckReport, Protocol, RuleSet,
};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Print, as JSON, the rules that match a command line and the decision
    /// (the shape of `codex execpolicy check`, plus each rule's file:line
    /// and execution).
    Check {
        /// A rules file; repeat to merge several, in order.
        #[arg(long = "rules", value_name = "FILE", required = true)]
        rules: Vec<PathBuf>,
        /// Let an absolute program path match its basename's rules (only
        /// paths `host_executable` lists, where it lists any).
        #[arg(long)]
        resolve_host_executables: bool,
        /// Decide as `execgate run` does: a program without a slash looked
        /// up in PATH, its path canonicalized (symlinks resolved), then the
        /// rules of that exact path, else its basename's (implies
        /// --resolve-host-executables).
        #[arg(long)]
        as_run: bool,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
        /// Check a connection instead of a command line: the
        /// `network_rule`s that match HOST:PORT (`[v6]:PORT` for IPv6).
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "argv")]
        network: Option<String>,
        /// With --network: how the connection is made.
        #[arg(long, value_enum, default_value = "https", requires = "network")]
        protocol: NetworkProtocol,
        /// The command line: program first.
        #[arg(
            trailing_var_arg = true,
            required_unless_present = "network",
            value_name = "ARGV"
        )]
        argv: Vec<String>,
    },
    /// Warn about allow and prompt rules on programs that run whatever
    /// their arguments say (interpreters, shells, command runners), and
    /// about network rules open to every host. Exits 1 when there are
    /// warnings.
    Lint {
        /// A rules file; repeat for several. Default: the config file's.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per warning.
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
    println!("{json}");
    Ok(())
}

pub fn run(command: PolicyCommand) -> Result<i32> {
    match command {
        PolicyCommand::Check {
            rules,
            network: Some(network),
            protocol,
            pretty,
            ..
        } => {
            let rules = RuleSet::load(&rules)?;
            let (destination, port) = Destination::parse_authority(&network, None)?;
            let protocol = match protocol {
                NetworkProtocol::Https => Protocol::Https,
                NetworkProtocol::Http => Protocol::Http,
                NetworkProtocol::Socks5Tcp => Protocol::Socks5Tcp,
            };
            let evaluation = rules.check_network(&destination, port, protocol);
            print_json(&NetworkCheckReport::from(&evaluation), pretty)?;
            Ok(0)
        }
        PolicyCommand::Check {
            rules,
            resolve_host_executables,
            as_run,
            pretty,
            mut argv,
            network: None,
            ..
        } => {
            let rules = RuleSet::load(&rules)?;
            if as_run {
                if let Some(program) = argv.first_mut() {
                    *program = program_as_run(program)?;
                }
            }
            let evaluation = rules.check(
                &argv,
                MatchOptions {
                    resolve_host_executables: resolve_host_executables || as_run,
                },
            );
            print_json(&CheckReport::from(&evaluation), pretty)?;
            Ok(0)
        }
        PolicyCommand::Lint {
            rules,
            config,
            json,
        } => {
            let files = if rules.is_empty() {
                Config::load(config.as_deref())?.rules
            } else {
                rules
            };
            if files.is_empty() {
                bail!("no rules files: pass --rules FILE or list them under `rules` in the config file");
            }
            let rules = RuleSet::load(&files)?;
            let warnings = lint(&rules);
            for warning in &warnings {
                if json {
                    let object = serde_json::json!({
                        "rule": warning.origin.to_string(),
                        "pattern": warning.pattern,
                        "message": warning.message,
                    });
                    println!("{object}");
                } else {
                    println!("{warning}");
                }
            }
            if !json {
                eprintln!(
                    "execgate: {} rule(s) in {} file(s), {} warning(s)",
                    rules.len(),
                    files.len(),
                    warnings.len()
                );
            }
            Ok(i32::from(!warnings.is_empty()))
        }
    }
}

/// Loads rules for a session, with errors that say which file.
pub fn load_rules(files: &[PathBuf]) -> Result<RuleSet> {
    RuleSet::load(files).context("the rules cannot be loaded; nothing runs until they are fixed")
}

/// `program` as a session's server sees it: looked up in `PATH` when it has
/// no slash, then canonicalized.
fn program_as_run(program: &str) -> Result<String> {
    let found = if program.contains('/') {
        PathBuf::from(program)
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| {
                candidate
                    .metadata()
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
            .with_context(|| format!("{program} is not found in PATH"))?
    };
    let canonical = std::fs::canonicalize(&found)
        .with_context(|| format!("cannot resolve {}", found.display()))?;
    canonical
        .into_os_string()
        .into_string()
        .map_err(|path| anyhow::anyhow!("{} is not UTF-8", path.to_string_lossy()))
}
