//! Reading the log back: parsing, filtering, summarising. What
//! `execgate audit` prints is built from these.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use globset::{Glob, GlobMatcher};

use crate::record::AuditRecord;
use crate::AuditError;

/// Every record in `path`, in order. A line that is not a record is an
/// error naming the file and line: a reviewer must not miss one silently.
pub fn read_records(path: &Path) -> Result<Vec<AuditRecord>, AuditError> {
    let file = std::fs::File::open(path).map_err(|source| AuditError::Io {
        what: format!("cannot open {}", path.display()),
        source,
    })?;
    let mut records = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| AuditError::Io {
            what: format!("cannot read {}", path.display()),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|error| AuditError::Malformed {
            file: path.display().to_string(),
            line: index + 1,
            reason: error.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Which records to keep. Empty fields match everything.
#[derive(Debug, Default)]
pub struct Filter {
    pub session: Option<String>,
    /// `run`, `escalate` or `deny`.
    pub decision: Option<String>,
    /// A glob on the executable's canonical path (or its file name when
    /// the glob has no `/`).
    pub program: Option<GlobMatcher>,
    /// A `file:line` rule id.
    pub rule: Option<String>,
    /// RFC 3339 bounds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Exit records with this exit code.
    pub exit_code: Option<i32>,
    /// Only connections through the proxy (`network-decision` and
    /// `network-close` records).
    pub network: bool,
}

impl Filter {
    /// Compiles a program glob for [`Filter::program`].
    pub fn program_glob(pattern: &str) -> Result<GlobMatcher, AuditError> {
        Glob::new(pattern)
            .map(|glob| glob.compile_matcher())
            .map_err(|error| AuditError::Pattern {
                pattern: pattern.to_owned(),
                reason: error.to_string(),
            })
    }

    pub fn matches(&self, record: &AuditRecord) -> bool {
        let decision = record
            .execgate
            .as_ref()
            .map(|fields| fields.decision.as_str());
        let executable = record.process.executable.as_ref().map(|path| path.lossy());
        let time_ok = |bound: &Option<String>, after: bool| {
            bound.as_ref().is_none_or(|bound| {
                // RFC 3339 timestamps in UTC compare as strings.
                if after {
                    record.timestamp.as_str() >= bound.as_str()
                } else {
                    record.timestamp.as_str() <= bound.as_str()
                }
            })
        };
        self.session
            .as_ref()
            .is_none_or(|id| &record.session_id == id)
            && self
                .decision
                .as_deref()
                .is_none_or(|wanted| decision == Some(wanted))
            && self.program.as_ref().is_none_or(|glob| {
                executable.as_ref().is_some_and(|path| {
                    let name = Path::new(path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned());
                    glob.is_match(path) || name.is_some_and(|name| glob.is_match(name))
                })
            })
            && self
                .rule
                .as_ref()
                .is_none_or(|id| record.rule.as_ref().is_some_and(|rule| &rule.id == id))
            && time_ok(&self.since, true)
            && time_ok(&self.until, false)
            && self
                .exit_code
                .is_none_or(|code| record.process.exit_code == Some(code))
            && (!self.network || record.is_network())
    }
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
}

impl Summary {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Summary {
        let mut summary = Summary::default();
        for record in records {
            if record.event.action == "error" {
                summary.errors += 1;
            }
            let Some(fields) = &record.execgate else {
                continue;
            };
            if record.is_network() {
                summary.add_network(record, fields);
                continue;
            }
            let program = record
                .process
                .executable
                .as_ref()
                .map_or_else(|| "?".to_owned(), |path| path.lossy());
            *summary
                .per_program
                .entry(program.clone())
                .or_default()
                .entry(fields.decision.clone())
                .or_default() += 1;
            let rule = record
                .rule
                .as_ref()
                .map_or_else(|| "none".to_owned(), |rule| rule.id.clone());
            *summary.per_rule.entry(rule).or_default() += 1;
            let args = record
                .process
                .args
                .as_ref()
                .map(|args| {
                    args.iter()
                        .map(|arg| arg.lossy())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let line = format!(
                "{} {} {program}: {args}",
                record.timestamp, record.session_id
            );
            match fields.decision.as_str() {
                "escalate" => summary.escalations.push(format!(
                    "{line} ({})",
                    fields.execution.as_deref().unwrap_or("?")
                )),
                "deny" => summary.denials.push(format!(
                    "{line} ({})",
                    fields.reason.as_deref().unwrap_or("")
                )),
                _ => {}
            }
        }
        summary
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
