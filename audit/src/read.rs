//! Reading the log back: parsing, filtering, summarising. What
//! `execgate audit` prints is built from these.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobMatcher};

use crate::record::{AuditRecord, Bytes};
use crate::AuditError;

/// Every record in `path`, in order. A line that is not a record is an
/// error naming the file and line: a reviewer must not miss one silently.
/// [`read_log`] reads past such lines instead.
pub fn read_records(path: &Path) -> Result<Vec<AuditRecord>, AuditError> {
    let log = read_log(path)?;
    match log.skipped.into_iter().next() {
        Some(malformed) => Err(malformed),
        None => Ok(log.records),
    }
}

/// What [`read_log`] found in a log file.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReadLog {
    /// Every record, in order.
    pub records: Vec<AuditRecord>,
    /// The lines that are not records (one cut short by a crash, say), as
    /// [`AuditError::Malformed`], each naming the file and line: skipped,
    /// to be reported, never to be dropped silently.
    pub skipped: Vec<AuditError>,
}

/// Every record in `path`, in order, and every line that is not one.
pub fn read_log(path: &Path) -> Result<ReadLog, AuditError> {
    let file = std::fs::File::open(path).map_err(|source| AuditError::Io {
        what: format!("cannot open {}", path.display()),
        source,
    })?;
    ReadLog::read(file, path)
}

impl ReadLog {
    /// Every record in `file`, already open (a rotated log is read from
    /// the descriptor that was checked to be it, not by a name a rotation
    /// may have given another file since), from where it stands to its
    /// end; `path` names it in errors.
    pub fn read(file: impl std::io::Read, path: &Path) -> Result<ReadLog, AuditError> {
        let mut log = ReadLog::default();
        read_each(file, path, |line| {
            match line {
                Ok(record) => log.records.push(record),
                Err(malformed) => log.skipped.push(malformed),
            }
            Ok::<_, AuditError>(())
        })?;
        Ok(log)
    }
}

/// The longest line read as a record. A request is at most 4 MiB and its
/// JSON at most six times that (`\u00XX` for a control byte), so no record
/// the log's writer makes comes near it; a longer line is reported and
/// skipped without being held in memory.
pub const LONGEST_LINE: usize = 64 << 20;

/// Hands `each`, in order, every record in `file` and every line that is
/// not one (as [`AuditError::Malformed`], naming `path` and the line),
/// holding one line at a time: a reader of a long history keeps only what
/// it wants. Stops at the first error `each` returns.
pub fn read_each<E: From<AuditError>>(
    file: impl std::io::Read,
    path: &Path,
    mut each: impl FnMut(Result<AuditRecord, AuditError>) -> Result<(), E>,
) -> Result<(), E> {
    for line in LogLines::new(file, path) {
        each(line?)?;
    }
    Ok(())
}

/// How long a reader waits for more of a line the file ends inside, each
/// time, and in all: a writer's one call for a record of megabytes takes
/// well under the first.
const LOOK_AGAIN_AFTER: Duration = Duration::from_millis(20);
const LOOK_AGAIN_AT_MOST: Duration = Duration::from_secs(1);

/// A log's records, one line read at a time, as an iterator: each item is
/// a record or a line that is not one (`Ok(Err(AuditError::Malformed))`,
/// naming the file and line); `Err` ends the reading (the file could not
/// be read).
///
/// A file still being written is read with [`LogLines::growing`]: a last
/// line without its newline is held back (the writer is in the middle of
/// it) and the iterator ends there; called again once the file has grown,
/// it goes on from that line.
pub struct LogLines<R> {
    reader: std::io::BufReader<R>,
    path: std::path::PathBuf,
    number: usize,
    /// The line being read; between calls, a growing file's unfinished
    /// last line.
    line: Vec<u8>,
    /// A record recovered from after a cut line, given after the cut
    /// line's report.
    recovered: Option<Box<AuditRecord>>,
    /// In a line too long to be a record, to be read past up to its end.
    skipping: bool,
    growing: bool,
    /// How long the end of the line being read has been waited for.
    waited: Duration,
}

impl<R: std::io::Read> LogLines<R> {
    pub fn new(file: R, path: &Path) -> LogLines<R> {
        LogLines {
            reader: std::io::BufReader::new(file),
            path: path.to_owned(),
            number: 0,
            line: Vec::new(),
            recovered: None,
            skipping: false,
            growing: false,
            waited: Duration::ZERO,
        }
    }

    /// Waits `pause` for more of a line the file ends inside, unless it
    /// has waited [`LOOK_AGAIN_AT_MOST`] already: true when it waited.
    fn looks_again(&mut self, pause: Duration) -> bool {
        if self.waited >= LOOK_AGAIN_AT_MOST {
            return false;
        }
        std::thread::sleep(pause);
        self.waited += pause;
        true
    }

    /// Reads a file that a writer may still be appending to (see above).
    /// Its line numbers count from where `file` stood.
    pub fn growing(mut self) -> LogLines<R> {
        self.growing = true;
        self
    }

    /// The file will not grow any more: a last line without its newline
    /// was cut short, and is reported as a cut line.
    pub fn finished(&mut self) {
        self.growing = false;
    }

    /// The file being read.
    pub fn file(&self) -> &R {
        self.reader.get_ref()
    }

    fn malformed(&self, reason: String) -> AuditError {
        AuditError::Malformed {
            file: self.path.display().to_string(),
            line: self.number,
            reason,
        }
    }

    fn cannot_read(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            what: format!("cannot read {}", self.path.display()),
            source,
        }
    }
}

impl<R: std::io::Read> Iterator for LogLines<R> {
    type Item = Result<Result<AuditRecord, AuditError>, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.recovered.take() {
            return Some(Ok(Ok(*record)));
        }
        loop {
            if self.skipping {
                match skip_line(&mut self.reader) {
                    Ok(true) => self.skipping = false,
                    // The file ends inside the long line: a growing one
                    // will go on with it.
                    Ok(false) => {
                        self.skipping = self.growing;
                        return None;
                    }
                    Err(error) => return Some(Err(self.cannot_read(error))),
                }
            }
            // Bytes, not UTF-8 lines: a line cut in the middle of a
            // character is one malformed line, not the end of the reading.
            let room = (LONGEST_LINE + 1).saturating_sub(self.line.len());
            let read = (&mut self.reader)
                .take(room as u64)
                .read_until(b'\n', &mut self.line);
            let grew = match read {
                Ok(read) => read > 0,
                Err(error) => return Some(Err(self.cannot_read(error))),
            };
            if self.line.is_empty() {
                return None;
            }
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            } else if self.line.len() > LONGEST_LINE {
                self.number += 1;
                self.line.clear();
                self.skipping = true;
                let reason = format!("longer than {} MiB: not read", LONGEST_LINE >> 20);
                return Some(Ok(Err(self.malformed(reason))));
            } else if self.growing {
                // Half a line: the rest is still to be written.
                return None;
            } else if grew && self.looks_again(LOOK_AGAIN_AFTER) {
                // A record of many pages is written in one call, but a
                // reader can find the file ending inside it (probe 242: a
                // live log's last record reported as cut): looked for again
                // for as long as the file grows.
                continue;
            } else {
                // The file ends inside this line: its writer stopped before
                // the newline (a full disk, a crash), so its record was never
                // whole, even where what was written parses (a denied
                // command's record cut one byte short would read as one
                // that ran).
                self.number += 1;
                self.line.clear();
                let reason = "cut short: the file ends before this line's newline".to_owned();
                return Some(Ok(Err(self.malformed(reason))));
            }
            self.waited = Duration::ZERO;
            self.number += 1;
            let parsed = parse_line(&self.line);
            self.line.clear();
            match (parsed.malformed, parsed.record) {
                (Some(reason), record) => {
                    self.recovered = record.map(Box::new);
                    return Some(Ok(Err(self.malformed(reason))));
                }
                (None, Some(record)) => return Some(Ok(Ok(record))),
                // A blank line.
                (None, None) => continue,
            }
        }
    }
}

/// Reads past the rest of a line without keeping it: true when its end
/// was found, false when the file's came first (a line still being
/// written, or cut).
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<bool> {
    loop {
        let buffered = reader.fill_buf()?;
        if buffered.is_empty() {
            return Ok(false);
        }
        match buffered.iter().position(|&byte| byte == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(true);
            }
            None => {
                let len = buffered.len();
                reader.consume(len);
            }
        }
    }
}

/// What one line of a log holds.
#[derive(Debug)]
struct ParsedLine {
    record: Option<AuditRecord>,
    /// Why the line is not one whole record, if it is not.
    malformed: Option<String>,
}

/// Reads one line of a log; a blank one holds nothing. A writer that was
/// appending when another died mid-line put its record right after the
/// cut one, on the same line: that record is recovered (it starts at the
/// line's last `{"@timestamp"` that reads as a whole record), and the cut
/// part is reported as malformed.
fn parse_line(line: &[u8]) -> ParsedLine {
    // Blank lines are skipped (see SCHEMA.md): neither record nor fault;
    // so is a cut mark alone on its line, which a writer that saw another
    // writer's line half written put after it.
    if line.trim_ascii().is_empty() || line.trim_ascii() == b"(cut)" {
        return ParsedLine {
            record: None,
            malformed: None,
        };
    }
    let error = match serde_json::from_slice(line) {
        Ok(record) => {
            return ParsedLine {
                record: Some(record),
                malformed: None,
            }
        }
        Err(error) => error,
    };
    // The last start that reads as a whole record: one inside the record
    // does not (probe 183: a variable named `@timestamp` in a requester's
    // environment opens the record's `environment` object so).
    const START: &[u8] = b"{\"@timestamp\"";
    let appended = line
        .windows(START.len())
        .enumerate()
        .rev()
        .filter(|&(start, window)| start > 0 && window == START)
        .find_map(|(start, _)| serde_json::from_slice(&line[start..]).ok());
    match appended {
        Some(record) => ParsedLine {
            record: Some(record),
            malformed: Some(
                "a cut line, then a whole record (kept) written after it on the same line"
                    .to_owned(),
            ),
        },
        None => ParsedLine {
            record: None,
            malformed: Some(error.to_string()),
        },
    }
}

/// A `--program` glob, matched against a path or its file name. A path
/// the Windows backend recorded (`C:\...`, `\\server\...`) is matched as
/// Windows names files: without regard to case, `/` as `\`, its name
/// after the last `\`, and a `\` in the glob a separator, not an escape.
#[derive(Debug, Clone)]
pub struct ProgramGlob {
    posix: GlobMatcher,
    windows: GlobMatcher,
}

impl ProgramGlob {
    /// Whether `path`, or its file name, matches.
    pub fn is_match(&self, path: &str) -> bool {
        if is_windows_path(path) {
            let path = path.replace('/', "\\");
            let name = path.rsplit('\\').next();
            return self.windows.is_match(&path)
                || name.is_some_and(|name| self.windows.is_match(name));
        }
        let name = Path::new(path).file_name().and_then(|name| name.to_str());
        self.posix.is_match(path) || name.is_some_and(|name| self.posix.is_match(name))
    }
}

/// `C:\...` or `\\server\...`: a path only Windows writes.
fn is_windows_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    path.starts_with("\\\\")
        || (bytes.len() > 2
            && bytes[0].is_ascii_alphabetic()
            && bytes[1] == b':'
            && matches!(bytes[2], b'\\' | b'/'))
}

/// Which records to keep. Empty fields match everything.
#[derive(Debug, Default)]
pub struct Filter {
    pub session: Option<String>,
    /// `run`, `escalate` or `deny`; for connections `allow` or `deny`.
    /// `deny` keeps connections refused at connect time too.
    pub decision: Option<String>,
    /// A glob on the executable's canonical path, the path as requested,
    /// or the name it was run by (each, or its file name).
    pub program: Option<ProgramGlob>,
    /// `file:line` rule ids, any of which matches (the rules file as
    /// written, and its canonical path: sessions record their rules files
    /// so, older logs as they were typed).
    pub rule: Vec<String>,
    /// Time bounds, inclusive: [`Filter::time_bound`] reads them.
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Exit records with this exit code.
    pub exit_code: Option<i32>,
    /// Only connections through the proxy (`network-decision` and
    /// `network-close` records).
    pub network: bool,
}

impl Filter {
    /// Compiles a program glob for [`Filter::program`].
    pub fn program_glob(pattern: &str) -> Result<ProgramGlob, AuditError> {
        let compiled = |builder: &mut GlobBuilder| {
            builder
                .build()
                .map(|glob| glob.compile_matcher())
                .map_err(|error| AuditError::Pattern {
                    pattern: pattern.to_owned(),
                    reason: error.to_string(),
                })
        };
        let windows_pattern = pattern.replace('/', "\\");
        Ok(ProgramGlob {
            posix: compiled(&mut GlobBuilder::new(pattern))?,
            windows: compiled(
                GlobBuilder::new(&windows_pattern)
                    .case_insensitive(true)
                    .backslash_escape(false),
            )?,
        })
    }

    /// Reads an RFC 3339 time for [`Filter::since`] or [`Filter::until`]:
    /// in UTC (`Z`) or at any offset (`+01:00`), with or without fractions
    /// of a second. Anything else is an error, never a bound compared as
    /// text.
    pub fn time_bound(text: &str) -> Result<SystemTime, AuditError> {
        let wrong = || AuditError::Time {
            text: text.to_owned(),
        };
        let upper = text.to_ascii_uppercase();
        let (time, offset) = match upper.strip_suffix('Z') {
            Some(time) => (time, 0),
            None => {
                let split = upper.len().checked_sub(6).ok_or_else(wrong)?;
                let (time, offset) = (upper.get(..split), upper.get(split..));
                (
                    time.ok_or_else(wrong)?,
                    utc_offset(offset.ok_or_else(wrong)?).ok_or_else(wrong)?,
                )
            }
        };
        let local = humantime::parse_rfc3339(&format!("{time}Z")).map_err(|_| wrong())?;
        let shift = Duration::from_secs(offset.unsigned_abs());
        let utc = if offset >= 0 {
            local.checked_sub(shift)
        } else {
            local.checked_add(shift)
        };
        utc.ok_or_else(wrong)
    }

    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.matches_own(record) && self.matches_decision(record)
    }

    /// Whether `record` is of the sessions and the time the filter names,
    /// whatever else it asks: what a summary counts a session's lost
    /// records over (`--program git` keeps no session's end).
    pub fn matches_sessions_and_time(&self, record: &AuditRecord) -> bool {
        let within_time = (self.since.is_none() && self.until.is_none())
            || record.time().is_some_and(|time| {
                self.since.is_none_or(|since| time >= since)
                    && self.until.is_none_or(|until| time <= until)
            });
        within_time
            && self
                .session
                .as_ref()
                .is_none_or(|id| &record.session_id == id)
    }

    /// What any record can be judged on by itself: session, time, exit
    /// code, network.
    fn matches_own(&self, record: &AuditRecord) -> bool {
        // A record whose time cannot be read is outside every bound.
        self.matches_sessions_and_time(record)
            && self
                .exit_code
                .is_none_or(|code| record.process.exit_code == Some(code))
            && (!self.network || record.is_network())
    }

    /// What only a decision names: the decision, the program, the rule.
    fn matches_decision(&self, record: &AuditRecord) -> bool {
        let decision = record
            .execgate
            .as_ref()
            .map(|fields| fields.decision.as_str());
        let executable = record.process.executable.as_ref().map(|path| path.lossy());
        self.decision.as_deref().is_none_or(|wanted| {
            decision == Some(wanted) || (wanted == "deny" && record.denied_at_connect())
        }) && self.program.as_ref().is_none_or(|glob| {
            // The canonical path, the path as requested, and the name it
            // was run by (`--program unxz` finds `xz` run as `unxz`).
            let run_as = record
                .process
                .args
                .as_ref()
                .and_then(|args| args.first())
                .map(|first| first.lossy());
            let requested = record.file.as_ref().map(|file| file.requested_path.lossy());
            let matched = [executable.as_ref(), requested.as_ref(), run_as.as_ref()]
                .into_iter()
                .flatten()
                .any(|path| glob.is_match(path));
            matched
        }) && (self.rule.is_empty()
            || record
                .rule
                .as_ref()
                .is_some_and(|rule| self.rule.contains(&rule.id)))
    }

    /// Whether this filter names anything only a decision has.
    fn names_decisions(&self) -> bool {
        self.decision.is_some() || self.program.is_some() || !self.rule.is_empty()
    }
}

/// A [`Filter`] over a log read in order, which also keeps what followed a
/// kept escalation (its start, its exit, a failure to start): those name no
/// program, rule or decision of their own, and `--program git` without
/// them would lose every escalated git's exit status.
#[derive(Debug)]
pub struct RequestFilter {
    filter: Filter,
    /// (session, request) of the escalations kept so far.
    escalations: std::collections::HashSet<(String, u64)>,
}

impl RequestFilter {
    /// See [`Filter::matches_sessions_and_time`].
    pub fn matches_sessions_and_time(&self, record: &AuditRecord) -> bool {
        self.filter.matches_sessions_and_time(record)
    }

    pub fn new(filter: Filter) -> RequestFilter {
        RequestFilter {
            filter,
            escalations: std::collections::HashSet::new(),
        }
    }

    pub fn matches(&mut self, record: &AuditRecord) -> bool {
        let Some(fields) = &record.execgate else {
            // A start or an exit: kept when its escalation's decision was
            // (and the filter names anything that only a decision has).
            let key = record
                .request_id
                .map(|request| (record.session_id.clone(), request));
            let follows = self.filter.names_decisions()
                && key.as_ref().is_some_and(|key| {
                    // Its exit (or failure to start) is the last there is.
                    let last = matches!(record.event.action.as_str(), "exit" | "error");
                    match last {
                        true => self.escalations.remove(key),
                        false => self.escalations.contains(key),
                    }
                });
            return (follows || !self.filter.names_decisions()) && self.filter.matches_own(record);
        };
        // `--program git --exit-code 1` keeps the exits of git's
        // escalations: the decision is remembered for what it decided.
        if let (true, Some(request)) = (fields.decision == "escalate", record.request_id) {
            if self.filter.matches_decision(record) {
                self.escalations
                    .insert((record.session_id.clone(), request));
            }
        }
        self.filter.matches(record)
    }
}

/// Seconds east of UTC for an offset written `+hh:mm` or `-hh:mm`.
fn utc_offset(offset: &str) -> Option<i64> {
    let bytes = offset.as_bytes();
    let sign = match bytes.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = offset.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
    (bytes.get(3) == Some(&b':') && bytes.len() == 6 && hours < 24 && minutes < 60)
        .then_some(sign * (hours * 3600 + minutes * 60))
}

/// Decisions counted per program, per destination host and per rule, and
/// every escalation and denial listed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    /// program → decision → count.
    pub per_program: BTreeMap<String, BTreeMap<String, usize>>,
    /// Connections through the proxy: destination host → count per
    /// outcome. Decisions count as `allowed` or `denied`; an allowed
    /// connection that then failed counts again as `unreachable` or
    /// `denied-at-connect` (a non-public address the decision did not
    /// permit).
    pub per_host: BTreeMap<String, BTreeMap<String, usize>>,
    /// rule id (or `none`) → count.
    pub per_rule: BTreeMap<String, usize>,
    pub escalations: Vec<String>,
    pub denials: Vec<String>,
    pub errors: usize,
    /// Records the sessions' ends say were not written.
    pub lost: u64,
    /// Decisions of a value execgate does not write (`run`, `escalate` and
    /// `deny`; `allow` and `deny` for a command's grants): edited, or
    /// another tool's.
    pub unrecognised: usize,
    /// The escalations listed, by session and request: where in
    /// `escalations` each is, and its program, until an error says it
    /// never started.
    #[serde(skip)]
    listed: HashMap<(String, u64), (usize, String)>,
}

impl Summary {
    /// Counts in the records `record`, a session's end, says were not
    /// written: for every end of the sessions a summary covers, whether
    /// the filter keeps the end itself or not.
    pub fn add_lost(&mut self, record: &AuditRecord) {
        if let Some(lost) = record.session.as_ref().and_then(|s| s.lost_records) {
            self.lost = self.lost.saturating_add(lost);
        }
    }

    pub fn of<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Summary {
        let mut summary = Summary::default();
        for record in records {
            summary.add(record);
        }
        summary
    }

    /// Counts one more record in.
    pub fn add(&mut self, record: &AuditRecord) {
        if record.event.action == "error" {
            self.errors += 1;
            self.not_started(record);
        }
        // Started: an error later (its conversation broken while the child
        // ran) does not unmake it (review 34b).
        if record.event.action == "start" {
            if let Some(request_id) = record.request_id {
                self.listed.remove(&(record.session_id.clone(), request_id));
            }
        }
        self.add_lost(record);
        let Some(fields) = &record.execgate else {
            return;
        };
        if record.is_network() {
            self.add_network(record, fields);
            return;
        }
        // A decision counts once, by its own record: an exit, or a failure
        // to start, that repeats it (Windows records do) is not another
        // (probe 168: one run counted twice). A refusal is its own.
        let repeated = match record.event.action.as_str() {
            "exit" => true,
            "error" => fields.decision != "deny",
            _ => false,
        };
        if repeated {
            return;
        }
        if record.event.action == crate::PERMISSIONS_REQUEST {
            // Not a program's decision: grants a command's shell started
            // with, listed with the escalations when given, and with the
            // denials when declined or not made (probe 160: listed nowhere).
            let args = record.process.args.as_deref().unwrap_or_default();
            let command = args.last().map(shown_argument).unwrap_or_default();
            let line = format!(
                "{} {} a command's shell: {command}",
                record.timestamp, record.session_id
            );
            let grants = fields.grants.as_deref().unwrap_or_default().join(", ");
            match fields.decision.as_str() {
                "allow" => self.escalations.push(format!("{line} (grants {grants})")),
                "deny" => {
                    let note = fields
                        .note
                        .as_deref()
                        .map(|note| format!("; {note}"))
                        .unwrap_or_default();
                    self.denials
                        .push(format!("{line} (grants asked, not given: {grants}{note})"));
                }
                _ => self.unrecognised += 1,
            }
            return;
        }
        let program = record
            .process
            .executable
            .as_ref()
            .map_or_else(|| "?".to_owned(), shown_argument);
        *self
            .per_program
            .entry(program.clone())
            .or_default()
            .entry(fields.decision.clone())
            .or_default() += 1;
        let program_key = program.clone();
        let rule = record
            .rule
            .as_ref()
            .map_or_else(|| "none".to_owned(), |rule| rule.id.clone());
        *self.per_rule.entry(rule).or_default() += 1;
        // With the name it was run by when that is another (probe 157:
        // `exec -a date uname -s` read as `date -s` run unsandboxed).
        let recorded = record.process.args.as_deref().unwrap_or_default();
        let shown = |index: usize| match record.is_redacted(index) {
            true => crate::REDACTED_SHOWN.to_owned(),
            false => shown_argument(&recorded[index]),
        };
        let run_as = recorded.first().filter(|first| {
            let first = first.lossy();
            let executable = record.process.executable.as_ref().map(|path| path.lossy());
            !first.is_empty()
                && executable.is_some_and(|executable| !names_the_program(&first, &executable))
        });
        let (program, first_shown) = match run_as {
            Some(_) => (format!("{program} (as {})", shown(0)), 1),
            None => (program, 0),
        };
        let args = (first_shown..recorded.len())
            .map(shown)
            .collect::<Vec<_>>()
            .join(" ");
        let line = format!(
            "{} {} {program}: {args}",
            record.timestamp, record.session_id
        );
        match fields.decision.as_str() {
            "escalate" => {
                // What it could do beyond the sandbox, and why (a skill's
                // script names its skill in the note).
                let mut how = fields.execution.as_deref().unwrap_or("?").to_owned();
                if let Some(grants) = fields.grants.as_ref().filter(|g| !g.is_empty()) {
                    how = format!("{how}: {}", grants.join(", "));
                }
                if let Some(note) = &fields.note {
                    how = format!("{how}; {note}");
                }
                if let Some(request_id) = record.request_id {
                    let at = (self.escalations.len(), program_key.clone());
                    self.listed
                        .insert((record.session_id.clone(), request_id), at);
                }
                self.escalations.push(format!("{line} ({how})"))
            }
            "deny" => self.denials.push(format!(
                "{line} ({})",
                fields.reason.as_deref().unwrap_or("")
            )),
            "run" => {}
            _ => self.unrecognised += 1,
        }
    }

    /// An escalation whose start failed (probe 156: its sandbox could not
    /// be set up, and nothing ran) is listed and counted with the denials,
    /// with why: it ran nothing, beyond the sandbox or in it.
    fn not_started(&mut self, record: &AuditRecord) {
        let Some(request_id) = record.request_id else {
            return;
        };
        let key = (record.session_id.clone(), request_id);
        let Some((at, program)) = self.listed.remove(&key) else {
            return;
        };
        let line = self.escalations.remove(at);
        for (index, _) in self.listed.values_mut() {
            if *index > at {
                *index -= 1;
            }
        }
        if let Some(counts) = self.per_program.get_mut(&program) {
            if let Some(escalated) = counts.get_mut("escalate") {
                *escalated = escalated.saturating_sub(1);
            }
            counts.retain(|_, count| *count > 0);
            *counts.entry("deny".into()).or_default() += 1;
        }
        let why = record.error.as_deref().unwrap_or("?");
        self.denials.push(format!("{line} (not started: {why})"));
    }

    fn add_network(&mut self, record: &AuditRecord, fields: &crate::DecisionFields) {
        let outcome = fields.network_outcome.as_deref().unwrap_or("?");
        let counted = match (record.event.action.as_str(), outcome) {
            (crate::NETWORK_DECISION, outcome) => outcome,
            (_, "unreachable") => "unreachable",
            (_, "denied") => "denied-at-connect",
            (_, "refused") => "refused",
            // A connection that closed as allowed was counted at its
            // decision.
            _ => return,
        };
        let host = record
            .destination
            .as_ref()
            .map_or_else(|| "?".to_owned(), |destination| destination.address.clone());
        *self
            .per_host
            .entry(host.clone())
            .or_default()
            .entry(counted.to_owned())
            .or_default() += 1;
        if record.event.action == crate::NETWORK_DECISION {
            let rule = record
                .rule
                .as_ref()
                .map_or_else(|| "none".to_owned(), |rule| rule.id.clone());
            *self.per_rule.entry(rule).or_default() += 1;
        }
        if counted != "allowed" {
            let (port, protocol) = match (&record.destination, &record.network) {
                (Some(destination), Some(network)) => {
                    (destination.port.to_string(), network.protocol.as_str())
                }
                _ => ("?".to_owned(), "?"),
            };
            self.denials.push(format!(
                "{} {} network {host}:{port} ({protocol}): {counted} ({})",
                record.timestamp,
                record.session_id,
                fields.reason.as_deref().unwrap_or("")
            ));
        }
    }
}

/// An argument (or a program's path) as the summary lists it: as it is
/// when it is plain text, else in double quotes, with `"` and `\`
/// escaped and each byte that is not UTF-8 as `\xNN`. So `a b` given as
/// one argument, an argument that imitates what the summary writes after
/// it, and a byte that U+FFFD stands for are all told apart.
fn shown_argument(arg: &Bytes) -> String {
    let bytes = match arg.shown() {
        Ok(bytes) => bytes,
        Err(recorded) => return crate::undecodable(recorded),
    };
    let plain = std::str::from_utf8(&bytes).ok().filter(|text| {
        !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')
    });
    if let Some(text) = plain {
        return text.to_owned();
    }
    let mut shown = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if matches!(c, '"' | '\\') {
                shown.push('\\');
            }
            shown.push(c);
        }
        for byte in chunk.invalid() {
            shown.push_str(&format!("\\x{byte:02x}"));
        }
    }
    shown.push('"');
    shown
}

/// Whether `argv[0]` names `program` itself: its path or its file name,
/// or for a Windows record, either without case and `.exe`.
pub fn names_the_program(first: &str, program: &str) -> bool {
    let file_name = program.rsplit(['/', '\\']).next().unwrap_or(program);
    if first == program || first == file_name {
        return true;
    }
    let windows = program.contains('\\');
    let stem = file_name
        .len()
        .checked_sub(4)
        .filter(|&at| {
            file_name.is_char_boundary(at) && file_name[at..].eq_ignore_ascii_case(".exe")
        })
        .map_or(file_name, |at| &file_name[..at]);
    windows
        && [program, file_name, stem]
            .iter()
            .any(|name| first.eq_ignore_ascii_case(name))
}
