//! `execgate audit`: what reviewers read the log with.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use execgate_audit::{parse_line, read_log, AuditRecord, Filter, Summary};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Log files to read. Default: the config file's `[audit] log`, else
    /// the default audit log.
    files: Vec<PathBuf>,
    /// Config file whose `[audit] log` is read when no file is given.
    /// Default: $XDG_CONFIG_HOME/execgate/config.toml (a missing default
    /// file is fine).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print matching records unchanged, one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Count decisions per program, per network host and per rule; list
    /// escalations and denials.
    #[arg(long)]
    summary: bool,
    /// Only connections through the managed network's proxy.
    #[arg(long)]
    network: bool,
    /// Keep reading as records are appended.
    #[arg(long, short)]
    follow: bool,
    #[arg(long)]
    session: Option<String>,
    /// run, escalate or deny; for connections allow or deny.
    #[arg(long)]
    decision: Option<String>,
    /// A glob on the program's path or file name.
    #[arg(long)]
    program: Option<String>,
    /// A rule id (`file:line`).
    #[arg(long)]
    rule: Option<String>,
    /// Only records at or after this RFC 3339 time (for example
    /// 2026-12-01T13:09:40Z or 2026-12-01T14:09:40+01:00).
    #[arg(long, value_parser = time_bound)]
    since: Option<SystemTime>,
    /// Only records at or before this RFC 3339 time.
    #[arg(long, value_parser = time_bound)]
    until: Option<SystemTime>,
    /// Exit records with this exit code.
    #[arg(long)]
    exit_code: Option<i32>,
}

/// `$XDG_STATE_HOME/execgate/audit.jsonl`, else `~/.local/state/...`.
pub fn default_log_path() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")));
    match base {
        Some(base) => Ok(base.join("execgate/audit.jsonl")),
        None => bail!("neither XDG_STATE_HOME nor HOME is set; pass --audit-log FILE"),
    }
}

fn time_bound(text: &str) -> Result<SystemTime, String> {
    Filter::time_bound(text).map_err(|error| error.to_string())
}

/// Exit status when some lines were not records (they are reported, and
/// the records around them shown).
const SKIPPED_LINES: i32 = 1;

pub fn run(args: AuditArgs) -> Result<i32> {
    match show(args) {
        // The reader went away (`execgate audit | head`): nothing to say.
        Err(error) if is_broken_pipe(&error) => Ok(0),
        shown => shown,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
}

fn show(args: AuditArgs) -> Result<i32> {
    if let Some(decision) = &args.decision {
        if !["run", "escalate", "deny", "allow"].contains(&decision.as_str()) {
            bail!("--decision must be run, escalate, deny or allow, not {decision:?}");
        }
    }
    let filter = Filter {
        session: args.session.clone(),
        decision: args.decision.clone(),
        program: args
            .program
            .as_deref()
            .map(Filter::program_glob)
            .transpose()?,
        rule: args.rule.clone(),
        since: args.since,
        until: args.until,
        exit_code: args.exit_code,
        network: args.network,
    };
    let files = if args.files.is_empty() {
        let configured = crate::config::Config::load(args.config.as_deref())?
            .audit
            .log;
        vec![match configured {
            Some(log) => log,
            None => default_log_path()?,
        }]
    } else {
        args.files.clone()
    };
    if args.follow {
        let [file] = files.as_slice() else {
            bail!("--follow reads exactly one file");
        };
        return follow(file, &filter, args.json);
    }
    let mut logs = Vec::new();
    let mut skipped = 0;
    for file in &files {
        let read = read_log(file)?;
        for malformed in &read.skipped {
            warn(&format!("execgate: {malformed} (skipped)"));
        }
        skipped += read.skipped.len();
        logs.push(read.records);
    }
    // Rotated files named in any order (`audit.jsonl*` lists the newest
    // first) make one history: the files ordered by their first record's
    // time (a file with none last), each file's records in the order
    // written (which a stepped clock can leave out of time order).
    logs.sort_by_cached_key(|records| {
        let first = records.first().and_then(AuditRecord::time);
        (first.is_none(), first)
    });
    let records: Vec<AuditRecord> = logs.into_iter().flatten().collect();
    let matching: Vec<&AuditRecord> = records
        .iter()
        .filter(|record| filter.matches(record))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.summary {
        let summary = Summary::of(matching.iter().copied());
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
        } else {
            print_summary(&mut out, &summary)?;
        }
    } else {
        for record in matching {
            print_record(&mut out, record, args.json)?;
        }
    }
    out.flush()?;
    if skipped > 0 {
        warn(&format!(
            "execgate: {skipped} line(s) are not audit records and were skipped (listed above)"
        ));
        return Ok(SKIPPED_LINES);
    }
    Ok(0)
}

/// A line for stderr, which may be closed: the listing goes on.
fn warn(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn print_record(out: &mut impl Write, record: &AuditRecord, json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(record)?)?;
        return Ok(());
    }
    if record.is_network() {
        return print_connection(out, record);
    }
    let decision = record
        .execgate
        .as_ref()
        .map_or("", |fields| fields.decision.as_str());
    let program = record
        .process
        .executable
        .as_ref()
        .map_or_else(String::new, |path| path.lossy());
    // Arguments are shown with control characters escaped: a log line must
    // not be able to rewrite the reviewer's terminal.
    let args: String = record
        .process
        .args
        .as_ref()
        .map(|args| {
            args.iter()
                .skip(1)
                .map(|arg| arg.lossy().escape_debug().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let rule = record.rule.as_ref().map_or("-", |rule| rule.id.as_str());
    let outcome = match (
        record.process.exit_code,
        record.process.signal,
        &record.error,
    ) {
        _ if record.session.is_some() => session_end(record),
        (Some(code), _, _) => format!("exit {code}"),
        (_, Some(signal), _) => format!("signal {signal}"),
        (_, _, Some(error)) => error.escape_debug().to_string(),
        _ => record.event.outcome.clone(),
    };
    writeln!(
        out,
        "{}  {}  {:<8} {:<8} {} {}  [{}]  {}",
        record.timestamp,
        record.session_id,
        record.event.action,
        decision,
        program.escape_debug(),
        args,
        rule,
        outcome
    )?;
    Ok(())
}

/// A connection's line: what was asked, what decided, how it went.
fn print_connection(out: &mut impl Write, record: &AuditRecord) -> Result<()> {
    let fields = record.execgate.as_ref();
    let decision = fields.map_or("", |fields| fields.decision.as_str());
    let target = match (&record.destination, &record.network) {
        (Some(destination), Some(network)) => format!(
            "{} {}:{}",
            network.protocol, destination.address, destination.port
        ),
        _ => "?".to_owned(),
    };
    let decided_by = match (fields, &record.rule) {
        (_, Some(rule)) => rule.id.clone(),
        (Some(fields), None) => match &fields.list_entry {
            Some(entry) => format!("domains \"{entry}\""),
            None if fields.decided_by.is_empty() => "-".to_owned(),
            None => fields.decided_by.clone(),
        },
        (None, None) => "-".to_owned(),
    };
    let outcome = fields
        .and_then(|fields| fields.network_outcome.as_deref())
        .unwrap_or(record.event.outcome.as_str());
    let mut detail = outcome.to_owned();
    if let Some(reason) = fields.and_then(|fields| fields.reason.as_deref()) {
        detail = format!("{detail}: {reason}");
    }
    if let (Some(sent), Some(received)) = (
        record.source.as_ref().and_then(|source| source.bytes),
        record
            .destination
            .as_ref()
            .and_then(|destination| destination.bytes),
    ) {
        let ip = record
            .destination
            .as_ref()
            .and_then(|destination| destination.ip.as_deref())
            .unwrap_or("?");
        detail = format!("{detail} via {ip}, {sent} bytes sent, {received} received");
    }
    // The host and reasons came through the sandbox: escaped.
    writeln!(
        out,
        "{}  {}  {:<16} {:<8} {}  [{}]  {}",
        record.timestamp,
        record.session_id,
        record.event.action,
        decision,
        escape_controls(&target),
        escape_controls(&decided_by),
        escape_controls(&detail)
    )?;
    Ok(())
}

/// `text` with control characters escaped (and nothing else: quotes in
/// a list entry stay readable).
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A `session-end` record's outcome column.
fn session_end(record: &AuditRecord) -> String {
    let Some(end) = &record.session else {
        return String::new();
    };
    let killed = end.running_children;
    match end.signal {
        Some(signal) => format!("ended by signal {signal}, {killed} running killed"),
        None => format!("closed, {killed} running killed"),
    }
}

fn print_summary(out: &mut impl Write, summary: &Summary) -> Result<()> {
    writeln!(out, "decisions per program:")?;
    for (program, counts) in &summary.per_program {
        let counts: Vec<String> = counts.iter().map(|(d, n)| format!("{d} {n}")).collect();
        writeln!(out, "  {}  {}", program.escape_debug(), counts.join(", "))?;
    }
    if !summary.per_host.is_empty() {
        writeln!(out, "connections per host:")?;
        for (host, counts) in &summary.per_host {
            let counts: Vec<String> = counts.iter().map(|(o, n)| format!("{o} {n}")).collect();
            writeln!(out, "  {}  {}", host.escape_debug(), counts.join(", "))?;
        }
    }
    writeln!(out, "decisions per rule:")?;
    for (rule, count) in &summary.per_rule {
        writeln!(out, "  {rule}  {count}")?;
    }
    writeln!(out, "escalations ({}):", summary.escalations.len())?;
    for line in &summary.escalations {
        writeln!(out, "  {}", line.escape_debug())?;
    }
    writeln!(out, "denials ({}):", summary.denials.len())?;
    for line in &summary.denials {
        writeln!(out, "  {}", line.escape_debug())?;
    }
    writeln!(out, "errors: {}", summary.errors)?;
    Ok(())
}

/// Whether `path` now names another file than `open` (the log rotated).
fn rotated(open: &std::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(current)) => (open.dev(), open.ino()) != (current.dev(), current.ino()),
        _ => false,
    }
}

/// Prints matching records as they are appended, from the current end.
fn follow(file: &std::path::Path, filter: &Filter, json: bool) -> Result<i32> {
    use std::io::{BufRead, Seek};
    let mut reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    reader.seek(std::io::SeekFrom::End(0))?;
    // Bytes, not UTF-8: a line cut inside a character is one line skipped.
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
            // Nothing (or half a line) yet: come back for the rest.
            let back = line.len() as i64;
            reader.seek_relative(-back)?;
            std::thread::sleep(Duration::from_millis(200));
            // Rotated: everything of the old file has been read (a writer
            // never appends to a rotated file), so go on with the new one.
            if line.is_empty() && rotated(reader.get_ref(), file) {
                if let Ok(fresh) = std::fs::File::open(file) {
                    reader = std::io::BufReader::new(fresh);
                }
            }
            continue;
        }
        let parsed = parse_line(&line);
        if let Some(reason) = parsed.malformed {
            warn(&format!(
                "execgate: {}: a line that is not an audit record (skipped): {reason}",
                file.display()
            ));
        }
        if let Some(record) = parsed.record.filter(|record| filter.matches(record)) {
            print_record(&mut std::io::stdout().lock(), &record, json)?;
        }
    }
}
