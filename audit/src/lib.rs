//! execgate's audit log: one JSON object per line for every exec decision,
//! every escalated child's start and end, every request that could not be
//! decided, and every connection a `limited` sandbox makes through the
//! proxy (its decision, and for allowed ones its end with the bytes
//! relayed).
//!
//! [`SessionAudit`] plugs into a session (`SessionConfig::audit`); the
//! server records each decision before carrying it out and, by default,
//! denies what it cannot record. [`AuditLog`] is the file: one `write` per
//! line with `O_APPEND`, so concurrent sessions never interleave; a record is
//! written before its decision is carried out, and escalation decisions can
//! be synced to disk too (`RecordOptions::sync_escalations`); size-based
//! rotation never drops a record a writer holds. Field names follow the
//! Elastic Common Schema where it has one; `SCHEMA.md` lists them all.
//!
//! Records are built from the server's resolved view, never from what a
//! request claims: the executable is the canonical path the decision was
//! made on, the requester comes from the socket's peer credentials.
//! Arguments are lossless (non-UTF-8 ones as marked base64), environment
//! values are kept only for configured names, and configured argument
//! patterns are redacted, with the record saying which. JSON escaping keeps
//! control characters, newlines and quotes in any field from breaking or
//! forging a line.
//!
//! This crate must never let a record be lost silently: every failure to
//! write is an error the caller sees. (An error the kernel meets later,
//! writing cached pages back to disk, is seen only by a sync: configure
//! `sync_escalations` where that matters.)
//!
//! Unix only for now (its records are built from the escalation server's
//! events); the Windows backend writes its own records in the same form.
#![cfg(unix)]

mod dir;
mod gaps;
mod log;
mod read;
mod record;

pub use dir::open_log_file;
pub use gaps::{RequestGaps, SessionGaps};
pub use log::{lock_path, rotated_path, AuditLog, Rotation, SessionAudit};
pub use read::{
    names_the_program, read_each, read_log, read_records, Filter, LogLines, ProgramGlob, ReadLog,
    RequestFilter, Summary, LONGEST_LINE,
};
pub use record::{
    undecodable, AuditRecord, Bytes, DecisionFields, DestinationFields, Environment, EventFields,
    FileIdentity, NetworkFields, ProcessFields, RecordOptions, Requester, RuleFields,
    SessionFields, SourceFields, NETWORK_CLOSE, NETWORK_DECISION, PERMISSIONS_REQUEST,
    REDACTED_SHOWN,
};

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("{file}:{line}: not an audit record: {reason}")]
    Malformed {
        file: String,
        line: usize,
        reason: String,
    },
    #[error(
        "{text:?} is not an RFC 3339 time (for example 2026-12-01T13:09:40Z or \
         2026-12-01T14:09:40+01:00)"
    )]
    Time { text: String },
    #[error("bad pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("the record would take {charge} bytes of the log's history, past the {allowance} left to its writer")]
    PastAllowance { charge: u64, allowance: u64 },
}

#[cfg(test)]
mod tests;
