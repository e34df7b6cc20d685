//! The CLI's telemetry output: `tracing` events (decisions, escalated
//! spawns, sandbox starts, approval waits) printed to stderr as text or
//! JSON lines, filtered by `EXECGATE_LOG` (tracing-subscriber's `EnvFilter`
//! syntax, e.g. `execgate=info` or `execgate::decision=info,warn`).
//!
//! Nothing is printed unless asked for: without `EXECGATE_LOG` and
//! `--log-format`, no subscriber is installed, so a session's stderr is
//! the command's own. `--log-format` alone shows `info` and above.
//!
//! The lines go through [`crate::stderr`]'s queue: a thread that logs never
//! waits on stderr, which the sandboxed command can suspend (it shares the
//! terminal), and a line that cannot be queued is dropped and counted.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

/// The variable holding the filter.
pub const LOG_VARIABLE: &str = "EXECGATE_LOG";

#[derive(clap::Args)]
pub struct LogArgs {
    /// Print telemetry events to stderr in this format (filtered by
    /// EXECGATE_LOG, default `info`).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber the arguments and `EXECGATE_LOG` ask for.
pub fn init(args: &LogArgs) -> Result<()> {
    let filter = std::env::var(LOG_VARIABLE).ok();
    if filter.is_none() && args.log_format.is_none() {
        return Ok(());
    }
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(&filter)
            .with_context(|| format!("{LOG_VARIABLE}={filter:?} is not a valid filter"))?,
        None => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::stderr::EventWriter::default);
    let installed = match args.log_format.unwrap_or(LogFormat::Text) {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed
        .map_err(|error| anyhow::anyhow!(error))
        .context("cannot install the log output")
}
