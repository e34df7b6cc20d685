//! What a session reports as it works: the raw material for audit logs and
//! for the events an agent shows its user.

use std::sync::Arc;
use std::time::Duration;

use execgate_protocol::Termination;

use crate::policy::{Decision, ExecContext, Provenance};

/// Receives a session's events, synchronously, on the worker that produced
/// them: keep it quick (hand off to a channel for slow work).
pub type EventSink = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// Keeps the durable record of a session's events (the audit log). Called
/// synchronously before the event's effect: a decision is recorded before
/// it is carried out. An error for a [`SessionEvent::Decided`] makes the
/// server deny the request (see [`AuditFailure`]).
pub trait AuditSink: Send + Sync {
    fn record(&self, session_id: &str, event: &SessionEvent) -> Result<(), String>;
}

/// What the server does when a decision cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFailure {
    /// Deny the request, saying why: nothing runs unrecorded.
    #[default]
    Deny,
    /// Carry the decision out anyway and log a warning.
    Warn,
}

/// One thing that happened in a session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A request was decided. Emitted before the decision takes effect.
    Decided {
        request: Arc<ExecContext>,
        decision: Decision,
        provenance: Provenance,
    },
    /// An escalated child is running.
    Started { request_id: u64, pid: i32 },
    /// An escalation was decided but the child could not be started.
    SpawnFailed { request_id: u64, reason: String },
    /// An escalated child ended.
    Exited {
        request_id: u64,
        pid: i32,
        termination: Termination,
        run_time: Duration,
    },
    /// A request that could not be decided (malformed, oversized, wrong
    /// peer, unresolvable): it was denied. `request_id` is `None` when the
    /// request never got as far as having one.
    RequestRefused {
        request_id: Option<u64>,
        reason: String,
    },
    /// The session ended; `running` escalated children were still running
    /// and are being killed.
    Ended { reason: SessionEnd, running: usize },
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// Its owner shut it down, cancelled or dropped it.
    Closed,
    /// Its owner received this signal and ended it.
    Signal(i32),
}
