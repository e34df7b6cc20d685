//! `execgate audit`: what reviewers read the log with.

use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::output::{bytes_escaped, debug_escaped, json_terminal_safe};
use anyhow::{bail, Context, Result};
use execgate_audit::{
    open_log_file, read_each, rotated_path, AuditError, AuditRecord, Filter, LogLines,
    RequestFilter, RequestGaps, Summary,
};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Log files to read, as one history. Default: the config file's
    /// `[audit] log` (else the default audit log) and its rotated files
    /// (LOG.1, LOG.2, ...), oldest first.
    files: Vec<PathBuf>,
    /// Config file whose `[audit] log` is read when no file is given.
    /// Default: $XDG_CONFIG_HOME/execgate/config.toml (a missing default
    /// file is fine).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print matching records as JSON, one object per line: a record this
    /// version wrote comes back unchanged; fields it does not know are
    /// left out.
    #[arg(long)]
    json: bool,
    /// Count decisions per program, per network host and per rule; list
    /// escalations and denials.
    #[arg(long)]
    summary: bool,
    /// Only connections through the managed network's proxy.
    #[arg(long)]
    network: bool,
    /// Keep reading as records are appended, from the log's end; when it
    /// rotates, what was still unread in the files rotated is read first.
    #[arg(long, short, conflicts_with = "summary")]
    follow: bool,
    /// Only this session's records (its id, as `session-start` and the
    /// table show it).
    #[arg(long)]
    session: Option<String>,
    /// run, escalate or deny; for connections allow or deny (deny takes in
    /// connections refused at connect time, after an allow).
    #[arg(long, value_parser = ["run", "escalate", "deny", "allow"])]
    decision: Option<String>,
    /// A glob on the program's path or file name: its canonical path, the
    /// path asked for, or the name it was run by (argv[0]: `--program
    /// unxz` finds xz run as unxz, and `exec -a cat id` shows under cat).
    /// A Windows record's paths are matched without regard to case, `\`
    /// a separator.
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
        Err(error) if crate::output::is_broken_pipe(&error) => Ok(0),
        shown => shown,
    }
}

fn show(args: AuditArgs) -> Result<i32> {
    let filter = Filter {
        session: args.session.clone(),
        decision: args.decision.clone(),
        program: args
            .program
            .as_deref()
            .map(Filter::program_glob)
            .transpose()?,
        rule: args.rule.iter().flat_map(|id| rule_ids(id)).collect(),
        since: args.since,
        until: args.until,
        exit_code: args.exit_code,
        network: args.network,
    };
    // Before anything is read: output that could not go anywhere is an
    // error, not an empty listing.
    let mut out = crate::output::writer()?;
    let configured_log = if args.files.is_empty() {
        let configured = crate::config::Config::load(args.config.as_deref())?
            .audit
            .log;
        Some(match configured {
            Some(log) => log,
            None => default_log_path()?,
        })
    } else {
        None
    };
    if args.follow {
        let file = match (&configured_log, args.files.as_slice()) {
            (Some(log), _) => log,
            (None, [file]) => file,
            (None, _) => bail!("--follow reads exactly one file"),
        };
        return follow(file, filter, args.json, &mut out);
    }
    // Records are taken as they are read, one line at a time: a long
    // history is never held whole, only what a summary counts or, for
    // files that must be put in order first, the records that match.
    let mut listing = Listing {
        out: &mut out,
        json: args.json,
        summary: args.summary.then(Summary::default),
    };
    let mut skipped = 0;
    let mut malformed = |error: AuditError| {
        warn(&format!("execgate: {error} (skipped)"));
        skipped += 1;
    };
    let bounded = filter.since.is_some() || filter.until.is_some();
    let session_asked = filter.session.clone();
    let mut session_seen = false;
    let mut filter = RequestFilter::new(filter);
    let mut beginnings = Beginnings::default();
    let mut gaps = RequestGaps::default();
    let mut untimed = 0;
    let mut each = |line: Result<AuditRecord, AuditError>| -> Result<()> {
        if let Ok(record) = &line {
            beginnings.see(record);
            gaps.see(record);
            if bounded && record.time().is_none() {
                untimed += 1;
            }
            session_seen |= session_asked.as_deref() == Some(record.session_id.as_str());
        }
        match line {
            Ok(record) if filter.matches(&record) => listing.add(&record)?,
            // A session's end the filter leaves out (`--program git`)
            // still says what of the session was not written.
            Ok(record) if filter.matches_sessions_and_time(&record) => {
                if let Some(summary) = &mut listing.summary {
                    summary.add_lost(&record);
                }
            }
            Ok(_) => {}
            Err(error) => malformed(error),
        }
        Ok(())
    };
    let mut missing = None;
    let mut unreadable = Vec::new();
    match (&configured_log, args.files.as_slice()) {
        // The rotation's own order: `<log>.N` (oldest) to `<log>.1`, then
        // the log.
        (Some(log), _) => {
            let (files, numbers, unreadable_files) = settled_history(log)?;
            missing = missing_rotated_files(log, &numbers);
            unreadable = unreadable_files;
            if files.is_empty() {
                // Neither the log nor a rotated file: say why it cannot be read.
                match open_log_file(log) {
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                        "no audit log at {} yet: sessions make it with their first record \
                         (`execgate audit FILE` reads another, `--follow` waits for it)",
                        log.display()
                    ),
                    opened => opened.with_context(|| format!("cannot open {}", log.display()))?,
                };
            }
            for (path, file) in files {
                read_each(file, &path, &mut each)?;
            }
        }
        (None, paths) => {
            // Rotated files named in any order (`audit.jsonl*` lists the
            // newest first) make one history: the files ordered by their
            // first record's time (a file with none last), each file's
            // records in the order written (which a stepped clock can
            // leave out of time order). Each is read up to its first
            // record, then, in that order, on from there: the filter sees
            // a decision before the exit that follows it in a later file.
            let mut logs = Vec::new();
            let mut named = Vec::new();
            for path in paths {
                let file = open(path)?;
                // `a.jsonl ./a.jsonl`: one history holds a file once.
                let identity = identity_of(&file.metadata()?);
                if let Some(first) = named.iter().find(|(seen, _)| *seen == identity) {
                    let (_, first): &(_, &PathBuf) = first;
                    warn(&format!(
                        "execgate: {} is {}, named before: read once",
                        path.display(),
                        first.display()
                    ));
                    continue;
                }
                named.push((identity, path));
                let mut lines = LogLines::new(file, path);
                let mut first = None;
                for line in lines.by_ref() {
                    match line? {
                        Ok(record) => {
                            first = Some(record);
                            break;
                        }
                        Err(error) => each(Err(error))?,
                    }
                }
                let time = first.as_ref().and_then(AuditRecord::time);
                logs.push(((first.is_none(), time), first, lines));
            }
            logs.sort_by_key(|(order, _, _)| *order);
            for (_, first, lines) in logs {
                for line in first.map(|record| Ok(Ok(record))).into_iter().chain(lines) {
                    each(line?)?;
                }
            }
        }
    }
    listing.finish()?;
    beginnings.warn();
    let skipped_requests = warn_of_gaps(&gaps);
    if let (Some(session), false) = (&session_asked, session_seen) {
        warn(&format!(
            "execgate: no record of session {} was read (`execgate audit` lists the sessions, \
             in its second column)",
            escape_controls(session)
        ));
    }
    if untimed > 0 {
        warn(&format!(
            "execgate: {untimed} record(s) have an @timestamp that is not an RFC 3339 time, \
             and are left out by --since and --until (execgate writes none such: edited, or \
             another tool's)"
        ));
    }
    for problem in &unreadable {
        warn(problem);
    }
    if skipped > 0 {
        warn(&format!(
            "execgate: {skipped} line(s) are not audit records and were skipped (listed above)"
        ));
        return Ok(SKIPPED_LINES);
    }
    if let Some(missing) = missing {
        warn(&missing);
        return Ok(SKIPPED_LINES);
    }
    if !unreadable.is_empty() {
        return Ok(SKIPPED_LINES);
    }
    // Records missing as surely as a rotated file is (probe 144: a
    // script read 0 after the warning).
    if skipped_requests {
        return Ok(SKIPPED_LINES);
    }
    Ok(0)
}

/// What to say of the rotated files missing between the log and its
/// oldest one: rotation renames each file one number up and leaves no
/// gap, so a missing number is a file removed, and its records with it.
fn missing_rotated_files(log: &Path, numbers: &[usize]) -> Option<String> {
    let oldest = *numbers.last()?;
    let missing: Vec<String> = (1..oldest)
        .filter(|n| numbers.binary_search(n).is_err())
        .map(|n| rotated_path(log, n).display().to_string())
        .collect();
    (!missing.is_empty()).then(|| {
        let (is, it, was) = match missing.len() {
            1 => ("is", "it", "was"),
            _ => ("are", "they", "were"),
        };
        format!(
            "execgate: {} {is} missing among the log's rotated files (up to {}): rotation \
             leaves no gap, so {it} {was} removed, by hand or to remove records; the records \
             {it} held are not shown",
            missing.join(", "),
            rotated_path(log, oldest).display(),
        )
    })
}

/// The sessions whose records read begin after their `session-start`:
/// the history holds only part of them, the rest rotated away or in a
/// file not named, and a reviewer should know it.
#[derive(Default)]
struct Beginnings {
    seen: std::collections::HashSet<String>,
    cut: Vec<String>,
    out_of_order: Vec<String>,
}

impl Beginnings {
    fn see(&mut self, record: &AuditRecord) {
        if !self.seen.insert(record.session_id.clone()) {
            // Its start after its other records: not cut, but out of order
            // (probe 144: a reversed log named both sessions as cut).
            if record.event.action == "session-start" {
                if let Some(at) = self.cut.iter().position(|id| *id == record.session_id) {
                    self.out_of_order.push(self.cut.remove(at));
                }
            }
            return;
        }
        // Windows sessions are one command each, with no `session-start`.
        let windows = record.session_id.starts_with("windows-");
        if record.event.action != "session-start" && !windows {
            self.cut.push(record.session_id.clone());
        }
    }

    fn warn(&self) {
        if !self.out_of_order.is_empty() {
            warn(&format!(
                "execgate: {} session(s) have records read before their start (the records \
                 are not in the order written: files named out of order, or the log edited): {}",
                self.out_of_order.len(),
                first_few(&self.out_of_order, |id| escape_controls(id))
            ));
        }
        let (count, whose) = match self.cut.len() {
            0 => return,
            1 => (
                "1 session".to_owned(),
                "whose start is not among them (its older records were",
            ),
            n => (
                format!("{n} sessions"),
                "whose starts are not among them (their older records were",
            ),
        };
        warn(&format!(
            "execgate: the records read begin within {count} {whose} rotated away, are in a \
             file not read, or were never written: a session's end counts what it lost): {}",
            first_few(&self.cut, |id| escape_controls(id))
        ));
    }
}

/// How many of a list a warning names; `...` stands for the rest.
const NAMED: usize = 5;

/// The first [`NAMED`] of `items`, each as `show` writes it, joined, and
/// `...` when there are more.
fn first_few<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let mut shown: Vec<String> = items.iter().take(NAMED).map(show).collect();
    if items.len() > NAMED {
        shown.push("...".into());
    }
    shown.join(", ")
}

/// Names the ended sessions whose records skip request numbers: each a
/// record removed, or in a file not read.
fn warn_of_gaps(gaps: &RequestGaps) -> bool {
    let gaps = gaps.gaps();
    for session in gaps.iter().take(NAMED) {
        let missing = first_few(&session.missing, |&(first, last)| match first == last {
            true => first.to_string(),
            false => format!("{first}-{last}"),
        });
        let more_than_lost = match session.lost {
            0 => String::new(),
            lost => format!(
                ", {} in all, more than the {lost} records its end says were not written",
                session.count()
            ),
        };
        warn(&format!(
            "execgate: session {} has no record of request {missing}{more_than_lost} (a session \
             records every request it numbers: removed from the log, or in a file not read)",
            escape_controls(&session.session_id),
        ));
    }
    if gaps.len() > NAMED {
        warn(&format!(
            "execgate: {} more sessions skip request numbers",
            gaps.len() - NAMED
        ));
    }
    !gaps.is_empty()
}

/// A rule id as typed, and with its file's canonical path (as sessions
/// record it) when that differs.
fn rule_ids(id: &str) -> Vec<String> {
    let mut ids = vec![id.to_owned()];
    if let Some((file, line)) = id.rsplit_once(':') {
        if let Ok(canonical) = std::fs::canonicalize(file) {
            let canonical = format!("{}:{line}", canonical.display());
            if canonical != id {
                ids.push(canonical);
            }
        }
    }
    ids
}

fn open(path: &Path) -> Result<File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::unix::fs::OpenOptionsExt;
    let opened = || -> std::io::Result<File> {
        // Without a writer, opening a FIFO waits for one, for good (probe
        // 166); opened non-blocking, it reads to its end at once then.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(path)?;
        let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
        fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
        Ok(file)
    };
    opened().with_context(|| format!("cannot open {}", path.display()))
}

/// Where the matching records go: printed as they come, or counted into
/// a summary printed at the end.
struct Listing<'a, W: Write> {
    out: &'a mut W,
    json: bool,
    summary: Option<Summary>,
}

impl<W: Write> Listing<'_, W> {
    fn add(&mut self, record: &AuditRecord) -> Result<()> {
        match &mut self.summary {
            Some(summary) => {
                summary.add(record);
                Ok(())
            }
            None => {
                print_record(self.out, record, self.json).context("cannot write to standard output")
            }
        }
    }

    fn finish(self) -> Result<()> {
        if let Some(summary) = &self.summary {
            if self.json {
                let json = serde_json::to_string_pretty(summary)?;
                writeln!(self.out, "{}", json_terminal_safe(json))?;
            } else {
                print_summary(self.out, summary)?;
            }
        }
        self.out.flush().context("cannot write to standard output")
    }
}

/// A line for stderr, which may be closed: the listing goes on.
fn warn(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn print_record(out: &mut impl Write, record: &AuditRecord, json: bool) -> Result<()> {
    if json {
        writeln!(
            out,
            "{}",
            json_terminal_safe(serde_json::to_string(record)?)
        )?;
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
    // Quoted where a space would hide where the path ends, and with the
    // name it was run by when that is another (`unxz` runs `xz`, which
    // then decompresses: a probe read the line as compressing).
    let shown_program = {
        let shown = record
            .process
            .executable
            .as_ref()
            .map_or_else(String::new, quoted_bytes);
        let run_as = record
            .process
            .args
            .as_ref()
            .and_then(|args| args.first())
            .filter(|first| {
                let first = first.lossy();
                !first.is_empty() && !execgate_audit::names_the_program(&first, &program)
            });
        match run_as {
            Some(_) if record.is_redacted(0) => {
                format!("{shown} (as {})", execgate_audit::REDACTED_SHOWN)
            }
            Some(name) => format!("{shown} (as \"{}\")", shown_bytes(name)),
            None => shown,
        }
    };
    // Arguments are shown with control characters escaped (a log line must
    // not be able to rewrite the reviewer's terminal), and quoted where a
    // space or nothing would hide where one ends (`escape_debug` escapes
    // the quotes inside).
    let args: String = record
        .process
        .args
        .as_ref()
        .map(|args| {
            args.iter()
                .enumerate()
                .skip(1)
                .map(|(index, arg)| match record.is_redacted(index) {
                    true => execgate_audit::REDACTED_SHOWN.to_owned(),
                    false => quoted_bytes(arg),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let rule = record.rule.as_ref().map_or("-", |rule| rule.id.as_str());
    // Who, where it was not the rule as written or the default: a person's
    // approval read as a rule's (probe 219).
    let decider = record
        .execgate
        .as_ref()
        .map_or("", |fields| fields.decided_by.as_str());
    let rule = match decider {
        "" | "rule" | "default" => rule.to_owned(),
        by => format!("{rule} by {by}"),
    };
    let outcome = match (
        record.process.exit_code,
        record.process.signal,
        &record.error,
    ) {
        _ if record.session.is_some() => session_end(record),
        (Some(code), _, _) => format!("exit {code}"),
        (_, Some(signal), _) => format!("signal {signal}"),
        (_, _, Some(error)) => debug_escaped(error),
        // What the command's shell could do beyond the session's sandbox.
        _ if record.event.action == execgate_audit::PERMISSIONS_REQUEST => {
            let fields = record.execgate.as_ref();
            let grants = fields
                .and_then(|fields| fields.grants.as_deref())
                .unwrap_or_default()
                .join(", ");
            let note = fields
                .and_then(|fields| fields.note.as_deref())
                .map(|note| format!("; {note}"))
                .unwrap_or_default();
            escape_controls(&format!("{}: grants {grants}{note}", record.event.outcome))
        }
        _ => decision_outcome(record),
    };
    // The request's number ties an escalation's start and exit, which name
    // no program, to its decision.
    let request = record
        .request_id
        .map_or_else(String::new, |id| format!("#{id}"));
    writeln!(
        out,
        "{}  {}{request}  {:<8} {:<8} {} {}  [{}]  {}",
        escape_controls(&record.timestamp),
        escape_controls(&record.session_id),
        escape_controls(&record.event.action),
        escape_controls(decision),
        shown_program,
        args,
        escape_controls(&rule),
        outcome
    )?;
    Ok(())
}

/// A decision's outcome column: for an escalation, how it ran (an
/// unsandboxed child and one in a sandbox with grants read alike
/// otherwise) and where; for a denial, why (a `forbidden` rule and a
/// person's no read alike otherwise; probe 160); and why a decision is not
/// what its rule asked for (an escalation refused, so the command ran in
/// place).
fn decision_outcome(record: &AuditRecord) -> String {
    let mut shown = escape_controls(&record.event.outcome);
    let Some(fields) = record.execgate.as_ref() else {
        return shown;
    };
    if fields.decision == "escalate" {
        let how = escape_controls(fields.execution.as_deref().unwrap_or("?"));
        match fields.grants.as_ref().filter(|grants| !grants.is_empty()) {
            // Each grant quoted where its path could pass for more than
            // one (review 34c: `a b), network=enabled (x=write`).
            Some(grants) => {
                let grants: Vec<String> = grants.iter().map(|grant| quoted_grant(grant)).collect();
                shown.push_str(&format!(" ({how}: {})", grants.join(", ")));
            }
            None => shown.push_str(&format!(" ({how})")),
        }
        // Where it ran: the server's own finding. A directory it could not
        // verify is the requester's word, and nothing was escalated from
        // it (review 34c).
        if let Some(directory) = &record.process.working_directory {
            match &fields.working_directory_unverified {
                None => shown.push_str(&format!(" in {}", quoted_bytes(directory))),
                Some(why) => shown.push_str(&format!(
                    " from {}, unverified ({}): not run",
                    quoted_bytes(directory),
                    escape_controls(why)
                )),
            }
        }
    } else if let Some(why) = &fields.working_directory_unverified {
        // A run or a denial asked from a directory that is not the
        // requester's: moved meanwhile, or a request a program wrote
        // itself (probe 214: the table showed it as the shell's).
        let directory = record.process.working_directory.as_ref();
        let directory = directory.map(quoted_bytes).unwrap_or_default();
        shown.push_str(&format!(
            " from {directory}, unverified ({})",
            escape_controls(why)
        ));
    }
    let why = [fields.reason.as_deref(), fields.note.as_deref()];
    for (index, text) in why.into_iter().flatten().enumerate() {
        let separator = if index == 0 { ": " } else { "; " };
        shown.push_str(separator);
        shown.push_str(&escape_controls(text));
    }
    shown
}

/// A grant (`PATH=ACCESS`, `network=...`) as the table shows it: in
/// quotes, escaped, where a blank, a comma or a parenthesis could make it
/// read as more than one.
pub(crate) fn quoted_grant(grant: &str) -> String {
    let plain = !grant.is_empty()
        && !grant.contains(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '"'));
    match plain {
        true => escape_controls(grant),
        false => format!("\"{}\"", grant.escape_debug()),
    }
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
    // The command whose process opened it, as exec records say theirs
    // (probe 162: a denial that ended an escalation named none).
    let request = record
        .request_id
        .map_or_else(String::new, |id| format!("#{id}"));
    // The host and reasons came through the sandbox: escaped.
    writeln!(
        out,
        "{}  {}{request}  {:<16} {:<8} {}  [{}]  {}",
        escape_controls(&record.timestamp),
        escape_controls(&record.session_id),
        escape_controls(&record.event.action),
        escape_controls(decision),
        escape_controls(&target),
        escape_controls(&decided_by),
        escape_controls(&detail)
    )?;
    Ok(())
}

/// An argument (or a path) as the table shows it: [`shown_bytes`], in
/// quotes where a blank or nothing would hide where it ends (the marker
/// of base64 that does not decode stays unquoted, as no argument is).
fn quoted_bytes(bytes: &execgate_audit::Bytes) -> String {
    let shown = shown_bytes(bytes);
    let plain =
        bytes.shown().is_err() || !(shown.is_empty() || shown.contains(char::is_whitespace));
    match plain {
        true => shown,
        false => format!("\"{shown}\""),
    }
}

/// Recorded bytes as the table shows them ([`bytes_escaped`]).
fn shown_bytes(bytes: &execgate_audit::Bytes) -> String {
    match bytes.shown() {
        Ok(bytes) => bytes_escaped(&bytes),
        // Unquoted with blanks, which no argument is shown as.
        Err(recorded) => execgate_audit::undecodable(recorded),
    }
}

/// A log's text on one line of the table.
fn escape_controls(text: &str) -> String {
    crate::output::terminal_safe(text, crate::output::Lines::Escaped)
}

/// A `session-start` or `session-end` record's outcome column: what the
/// session ran under, or how it ended.
fn session_end(record: &AuditRecord) -> String {
    let Some(session) = &record.session else {
        return String::new();
    };
    let Some(killed) = session.running_children else {
        let profile = session.profile.as_deref().unwrap_or("(unnamed)");
        let grants: Vec<String> = session
            .sandbox
            .iter()
            .map(|grant| quoted_grant(grant))
            .collect();
        return format!(
            "profile {}: {}",
            escape_controls(profile),
            grants.join(", ")
        );
    };
    let mut ending = match session.signal {
        Some(signal) => format!("ended by signal {signal}, {killed} running killed"),
        None => format!("closed, {killed} running killed"),
    };
    if let Some(processes) = session.processes_killed {
        ending.push_str(&format!(", {processes} process(es) in all"));
    }
    match session.lost_records {
        Some(lost) => format!("{ending}, {lost} record(s) not written"),
        None => ending,
    }
}

fn print_summary(out: &mut impl Write, summary: &Summary) -> Result<()> {
    writeln!(out, "decisions per program:")?;
    for (program, counts) in &summary.per_program {
        let counts: Vec<String> = counts
            .iter()
            .map(|(d, n)| format!("{} {n}", escape_controls(d)))
            .collect();
        // The summary quotes and escapes what needs it (`Summary`'s
        // arguments): only controls are left to escape here.
        writeln!(out, "  {}  {}", escape_controls(program), counts.join(", "))?;
    }
    if !summary.per_host.is_empty() {
        writeln!(out, "connections per host:")?;
        for (host, counts) in &summary.per_host {
            let counts: Vec<String> = counts
                .iter()
                .map(|(o, n)| format!("{} {n}", escape_controls(o)))
                .collect();
            writeln!(out, "  {}  {}", debug_escaped(host), counts.join(", "))?;
        }
    }
    writeln!(out, "decisions per rule:")?;
    for (rule, count) in &summary.per_rule {
        writeln!(out, "  {}  {count}", escape_controls(rule))?;
    }
    writeln!(out, "escalations ({}):", summary.escalations.len())?;
    for line in &summary.escalations {
        writeln!(out, "  {}", escape_controls(line))?;
    }
    writeln!(out, "denials ({}):", summary.denials.len())?;
    for line in &summary.denials {
        writeln!(out, "  {}", escape_controls(line))?;
    }
    writeln!(out, "errors: {}", summary.errors)?;
    if summary.lost > 0 {
        writeln!(
            out,
            "records not written: {} (the sessions' ends count them: a session's share of \
             the log spent, or a write that failed)",
            summary.lost
        )?;
    }
    if summary.unrecognised > 0 {
        writeln!(
            out,
            "decisions of an unrecognised value: {} (execgate writes run, escalate and deny, \
             and allow or deny for a command's grants: edited, or another tool's; counted per \
             program above)",
            summary.unrecognised
        )?;
    }
    Ok(())
}

/// A file's device and inode: what names it across renames.
type Identity = (u64, u64);

fn identity_of(meta: &std::fs::Metadata) -> Identity {
    (meta.dev(), meta.ino())
}

/// The identity of the file at `path` now, if there is one.
fn identity_at(path: &Path) -> Option<Identity> {
    std::fs::metadata(path).ok().map(|meta| identity_of(&meta))
}

/// The N of every rotated file `<log>.N` there is, smallest (newest)
/// first. From the directory's entries, so that a gap (a file removed by
/// hand) hides none past it, and files past `keep` (left by a larger
/// `keep` before) are found too; probed one by one from 1 where the
/// directory cannot be listed.
fn rotated_numbers(log: &Path) -> Vec<usize> {
    use std::os::unix::ffi::OsStrExt;
    let Some(name) = log.file_name() else {
        return Vec::new();
    };
    let dir = match log.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut numbers: Vec<usize> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let entry_name = entry.file_name();
                let suffix = entry_name
                    .as_bytes()
                    .strip_prefix(name.as_bytes())?
                    .strip_prefix(b".")?;
                // As the rotation writes them: decimal, no leading zero.
                if suffix.first() == Some(&b'0') || !suffix.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(suffix).ok()?.parse().ok()
            })
            .collect(),
        Err(_) => (1..)
            .take_while(|&n| std::fs::symlink_metadata(rotated_path(log, n)).is_ok())
            .collect(),
    };
    numbers.sort_unstable();
    numbers
}

/// How many times a look at the log's files is taken again when a
/// rotation came in the middle of it.
const LOOKS: usize = 50;

/// The log and its rotated files that there are, oldest first, each open:
/// one history. The files are opened, then their names looked at again: a
/// rotation in between (which renames every file) would have had one read
/// twice or missed, so then the whole look is taken again.
fn history(log: &Path) -> Result<History> {
    let (files, _, unreadable) = settled_history(log)?;
    for problem in unreadable {
        warn(&problem);
    }
    Ok(files)
}

/// The log's files, oldest first, each open, with the name it was opened by.
type History = Vec<(PathBuf, File)>;

/// [`history`], the numbers of the rotated files found (smallest first),
/// as one settled look saw them, and why rotated files that could not be
/// opened were left out (probe 166: a FIFO or a link at one name hid the
/// whole history).
fn settled_history(log: &Path) -> Result<(History, Vec<usize>, Vec<String>)> {
    for _ in 0..LOOKS {
        let numbers = rotated_numbers(log);
        let mut paths: Vec<PathBuf> = numbers
            .iter()
            .rev()
            .map(|&n| rotated_path(log, n))
            .collect();
        paths.push(log.to_owned());
        let mut opened = Vec::new();
        let mut seen = Vec::new();
        let mut unreadable = Vec::new();
        for path in paths {
            match open_log_file(&path) {
                Ok(file) => {
                    seen.push(Some(identity_of(&file.metadata()?)));
                    opened.push((path, file));
                }
                // Renamed in a rotation since the directory was listed,
                // or the log itself not there (yet).
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => seen.push(None),
                // A rotated file: the rest of the history is still read.
                Err(error) if path != log => {
                    seen.push(identity_at(&path));
                    unreadable.push(format!(
                        "execgate: {} cannot be read ({error}); its records are not shown, \
                         the rest are",
                        path.display()
                    ));
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot open {}", path.display()))
                }
            }
        }
        let settled = rotated_numbers(log) == numbers
            && numbers
                .iter()
                .rev()
                .map(|&n| identity_at(&rotated_path(log, n)))
                .chain([identity_at(log)])
                .eq(seen);
        if settled {
            return Ok((opened, numbers, unreadable));
        }
    }
    bail!(
        "{} rotated during each of {LOOKS} attempts to read it",
        log.display()
    )
}

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Whether a file read to its end may still grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileEnd {
    /// The log: a last line without its newline is being written; it is
    /// left for later.
    Growing,
    /// Rotated: no writer appends to it any more (writers append under the
    /// log's shared lock, to the file at its name; rotation renames under
    /// the exclusive one), so a last line without its newline was cut
    /// short, and is reported as such.
    Final,
}

/// How many of a followed file's first bytes `--follow` keeps, to tell an
/// append from a rewrite: a record's first bytes hold its time.
const HEAD_LEN: usize = 64;

/// A file `--follow` reads, by its descriptor, and the name it was
/// opened by (for the messages about its lines).
struct Followed {
    lines: LogLines<File>,
    path: PathBuf,
    /// Its first bytes as last seen (up to [`HEAD_LEN`]).
    head: Vec<u8>,
}

impl Followed {
    fn new(path: PathBuf, file: File) -> Followed {
        Followed {
            lines: LogLines::new(file, &path).growing(),
            path,
            head: Vec::new(),
        }
    }

    /// Whether the file was truncated or rewritten in place since the last
    /// look: it is shorter than what was read of it, or its first bytes
    /// changed. Appends change neither.
    fn rewritten(&mut self) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        let mut file = self.lines.file();
        let read_up_to = file.stream_position()?;
        if file.metadata()?.len() < read_up_to {
            return Ok(true);
        }
        let mut head = [0; HEAD_LEN];
        let mut got = 0;
        while got < HEAD_LEN {
            match file.read_at(&mut head[got..], got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        if !head[..got].starts_with(&self.head) {
            return Ok(true);
        }
        self.head = head[..got].to_vec();
        Ok(false)
    }

    /// The same file, to be read again from its start.
    fn again_from_its_start(&self) -> std::io::Result<Followed> {
        let file = self.lines.file().try_clone()?;
        (&file).seek(std::io::SeekFrom::Start(0))?;
        Ok(Followed::new(self.path.clone(), file))
    }

    /// Prints the matching records from where the reading stands to the
    /// file's end.
    fn print_to_end(
        &mut self,
        end: FileEnd,
        filter: &mut RequestFilter,
        json: bool,
        out: &mut impl Write,
    ) -> Result<()> {
        if end == FileEnd::Final {
            self.lines.finished();
        }
        for line in self.lines.by_ref() {
            match line? {
                Ok(record) if filter.matches(&record) => {
                    print_record(out, &record, json).context("cannot write to standard output")?
                }
                Ok(_) => {}
                // Its line number counts from where the following
                // started, which says nothing: the reason alone.
                Err(AuditError::Malformed { reason, .. }) => warn(&format!(
                    "execgate: {}: a line that is not an audit record (skipped): {reason}",
                    self.path.display()
                )),
                Err(error) => return Err(error.into()),
            }
        }
        out.flush().context("cannot write to standard output")
    }
}

/// What became of the file `--follow` reads.
enum Successor {
    /// Nothing yet: it is still the log (or the log that replaces it is
    /// not there yet).
    NotYet,
    /// It was rotated; this is the file rotated right after it (complete),
    /// or the log.
    Next(Followed),
    /// It was deleted (rotated past `keep`) before the file rotated after
    /// it could be found.
    Deleted,
    /// It is neither the log nor a rotated file any more (moved away).
    Gone,
}

/// Finds the file that came after `followed` in `log`'s history: where
/// `followed` is now, by device and inode (`<log>.K`), then `<log>.K-1` (or
/// the log, for K = 1), opened, and checked to have been that while
/// `followed` was still `<log>.K` (a rotation moves every file).
fn successor(log: &Path, followed: &File) -> Result<Successor> {
    let pause = || std::thread::sleep(Duration::from_millis(10));
    for _ in 0..LOOKS {
        let ours = followed.metadata()?;
        let id = identity_of(&ours);
        if identity_at(log) == Some(id) {
            return Ok(Successor::NotYet);
        }
        if ours.nlink() == 0 {
            return Ok(Successor::Deleted);
        }
        let Some(at) = rotated_numbers(log)
            .into_iter()
            .find(|&n| identity_at(&rotated_path(log, n)) == Some(id))
        else {
            // In the middle of a rotation's renames, or moved away.
            pause();
            continue;
        };
        let next = match at {
            1 => log.to_owned(),
            _ => rotated_path(log, at - 1),
        };
        match open_log_file(&next) {
            Ok(file) if identity_at(&rotated_path(log, at)) == Some(id) => {
                return Ok(Successor::Next(Followed::new(next, file)));
            }
            // Rotated again meanwhile: look again.
            Ok(_) => {}
            // In the middle of a rotation's renames, or the new log not
            // created yet.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => pause(),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot open {}", next.display()))
            }
        }
    }
    let ours = followed.metadata()?;
    Ok(if identity_at(log).is_none() {
        Successor::NotYet
    } else if ours.nlink() == 0 {
        Successor::Deleted
    } else {
        Successor::Gone
    })
}

/// Prints matching records as they are appended, from the current end.
/// When the log rotates, the rest of the file followed is read, then each
/// file rotated after it, oldest first, then the new log: every record
/// once, and a warning for what could not be read.
fn follow(log: &Path, filter: Filter, json: bool, out: &mut impl Write) -> Result<i32> {
    let filter = &mut RequestFilter::new(filter);
    let mut waited = false;
    let mut file = loop {
        match open_log_file(log) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if !waited {
                    warn(&format!(
                        "execgate: no audit log at {} yet: waiting for a session to make it",
                        log.display()
                    ));
                    waited = true;
                }
                std::thread::sleep(FOLLOW_POLL);
            }
            opened => {
                break opened.with_context(|| format!("cannot open {}", log.display()))?;
            }
        }
    };
    // A log that was not there when the following began is read whole.
    if !waited {
        file.seek(std::io::SeekFrom::End(0))?;
    }
    let mut followed = Followed::new(log.to_owned(), file);
    loop {
        // Before reading on: a rewritten file read on from where the
        // reading stood would start in the middle of some line.
        if followed.rewritten()? {
            warn(&format!(
                "execgate: {}: truncated or rewritten in place while it was followed \
                 (by `copytruncate`, by hand, or to remove records): records written to \
                 it since the last look and before the rewrite may be missing here; \
                 reading it again from its start",
                followed.path.display(),
            ));
            followed = followed.again_from_its_start()?;
        }
        followed.print_to_end(FileEnd::Growing, filter, json, out)?;
        match successor(log, followed.lines.file())? {
            Successor::NotYet => std::thread::sleep(FOLLOW_POLL),
            Successor::Next(next) => {
                followed.print_to_end(FileEnd::Final, filter, json, out)?;
                // A rotated file is read whole at the loop's next turn,
                // which then finds the one after it.
                followed = next;
            }
            Successor::Deleted => {
                followed.print_to_end(FileEnd::Final, filter, json, out)?;
                let mut files = history(log)?;
                while files.is_empty() {
                    // Removed, log and all: wait for a writer to make it anew.
                    std::thread::sleep(FOLLOW_POLL);
                    files = history(log)?;
                }
                let oldest = files.first().map(|(path, _)| path.display().to_string());
                // How many files went is not known: the rotations that
                // deleted the followed file may or may not have deleted
                // others after it.
                warn(&format!(
                    "execgate: {}: the file followed (opened as {}) was read to its end, \
                     then deleted: by hand, or by more than `keep` rotations between two \
                     looks, which may also have deleted files rotated between it and {} \
                     before they could be read (their records would be missing here)",
                    log.display(),
                    followed.path.display(),
                    oldest.as_deref().unwrap_or("the log"),
                ));
                let (path, file) = files.pop().context("no log file left")?;
                for (path, file) in files {
                    Followed::new(path, file).print_to_end(FileEnd::Final, filter, json, out)?;
                }
                followed = Followed::new(path, file);
            }
            Successor::Gone => {
                warn(&format!(
                    "execgate: {}: {} is neither the log nor one of its rotated files any \
                     more; going on with the log, from its start",
                    log.display(),
                    followed.path.display(),
                ));
                match open_log_file(log) {
                    Ok(file) => followed = Followed::new(log.to_owned(), file),
                    Err(_) => std::thread::sleep(FOLLOW_POLL),
                }
            }
        }
    }
}
