//! The CLI's telemetry output: `tracing` events (decisions, escalated
//! spawns, sandbox starts, approval waits) printed to stderr as text or
//! JSON lines, filtered by `EXECGATE_LOG` (tracing-subscriber's `EnvFilter`
//! syntax, e.g. `execgate=info` or `execgate::decision=info,warn`).
//!
//! Nothing is printed unless asked for: without `EXECGATE_LOG` and
//! `--log-format`, no subscriber is installed, so a session's stderr is
//! the command's own. `--log-format` alone shows execgate's events at
//! `info` and above, and other crates' warnings.
//!
//! The lines go through [`crate::stderr`]'s queue: a thread that logs never
//! waits on stderr, which the sandboxed command can suspend (it shares the
//! terminal), and a line that cannot be queued is dropped and counted.
//!
//! stderr is the command's too: what it writes there lands between the
//! events, and can look like one (probe 163 forged a decision, and broke
//! the line of a real one). `--log-file` keeps the events apart, in a
//! file of their own that the command is not handed; the session warns
//! when its sandbox could write that file.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// The variable holding the filter.
pub const LOG_VARIABLE: &str = "EXECGATE_LOG";

#[derive(clap::Args)]
pub struct LogArgs {
    /// Print telemetry events to stderr in this format (filtered by
    /// EXECGATE_LOG, default `execgate=info,warn`).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    /// Append telemetry events to this file (made with mode 0600) instead of
    /// stderr, where the command's own lines mix with them. Alone, it
    /// means `--log-format text`.
    #[arg(long, global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

/// The file events go to, once [`init`] opened one.
static LOG_FILE: OnceLock<PathBuf> = OnceLock::new();

/// The file telemetry events are appended to, if not stderr: sessions warn
/// when their sandbox can write it.
pub fn file() -> Option<&'static Path> {
    LOG_FILE.get().map(PathBuf::as_path)
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber the arguments and `EXECGATE_LOG` ask for.
pub fn init(args: &LogArgs) -> Result<()> {
    let filter = std::env::var(LOG_VARIABLE).ok();
    if filter.is_none() && args.log_format.is_none() && args.log_file.is_none() {
        return Ok(());
    }
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(&filter)
            .with_context(|| format!("{LOG_VARIABLE}={filter:?} is not a valid filter"))?,
        // execgate's own events; other crates' (the MCP SDK's) only when
        // they warn: at `info` and below they print the traffic itself.
        None => EnvFilter::new("execgate=info,warn"),
    };
    let format = args.log_format.unwrap_or(LogFormat::Text);
    let (writer, ansi) = match &args.log_file {
        None if format == LogFormat::Json => (
            BoxMakeWriter::new(crate::stderr::EventWriter::json),
            std::io::stderr().is_terminal(),
        ),
        None => (
            BoxMakeWriter::new(crate::stderr::EventWriter::default),
            std::io::stderr().is_terminal(),
        ),
        Some(path) => {
            let file = open_log_file(path)?;
            let _ = LOG_FILE.set(path.clone());
            (BoxMakeWriter::new(Mutex::new(file)), false)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed
        .map_err(|error| anyhow::anyhow!(error))
        .context("cannot install the log output")
}

/// Opens `path` to append events to: a regular file, made if missing
/// (mode 0600), never followed through a link at its name.
fn open_log_file(path: &Path) -> Result<File> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: a FIFO at the name is opened, and refused below,
    // rather than waited on.
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .with_context(|| {
            format!(
                "cannot open the log file {} (--log-file): name a regular file in a \
                 directory you can write, not a link",
                path.display()
            )
        })?;
    let kind = file
        .metadata()
        .with_context(|| format!("cannot read the log file {}", path.display()))?
        .file_type();
    if !kind.is_file() {
        anyhow::bail!(
            "the log file {} (--log-file) is not a regular file: name a file, not a \
             FIFO or a device, whose writes could block the session",
            path.display()
        );
    }
    Ok(file)
}
