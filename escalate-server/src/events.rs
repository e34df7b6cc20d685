//! What a session reports as it works: the raw material for audit logs and
//! for the events an agent shows its user.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use execgate_network_proxy::{ConnectRequest, ConnectionOutcome, ConnectionReport, Verdict};
use execgate_protocol::Termination;

use crate::policy::{Decision, ExecContext, PeerCredentials, Provenance, RuleRef};

/// A refused request as its requester sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRequest {
    /// The path the requester resolved.
    pub path: std::path::PathBuf,
    /// The executable the server found there, when it got that far (the
    /// requester went away while a person was asked).
    pub executable: Option<crate::policy::ResolvedExecutable>,
    pub argv: Vec<std::ffi::OsString>,
    /// As the requester said it.
    pub cwd: std::path::PathBuf,
    /// The rule whose question for a person was pending when the request
    /// was withdrawn (its requester gone, its session ended), and how long
    /// the question had waited: `None` when nobody was asked.
    pub question: Option<(Option<RuleRef>, Duration)>,
}

/// Receives a session's events, synchronously, mostly on the one thread
/// every session of the process is served on: keep it quick (hand off to a
/// channel for slow work), or every session's decisions wait.
pub type EventSink = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// Keeps the durable record of a session's events (the audit log). Called
/// synchronously before the event's effect: a decision is recorded before
/// it is carried out. An error for a [`SessionEvent::Decided`] makes the
/// server deny the request (see [`AuditFailure`]).
pub trait AuditSink: Send + Sync {
    fn record(&self, session_id: &str, event: &SessionEvent) -> Result<(), String>;

    /// The files the records go to, for a sink that writes files: the
    /// log first, then its lock and older files. The sandboxes of a
    /// session that records here are shown none of them (core-bridge
    /// hides them as the session starts): the records are the
    /// reviewers', and a sandbox that could open a lock could hold it.
    fn log_files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// Whether recording `event` waits for the disk (a synced write). The
    /// server records a [`SessionEvent::Decided`] that does on a blocking
    /// thread, not on the thread every session's decisions share. Other
    /// events are recorded where they happen, that thread included: a sink
    /// should sync only decisions.
    fn waits_for_disk(&self, event: &SessionEvent) -> bool {
        let _ = event;
        false
    }
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
    /// The session began: recorded before its shell can ask anything, so
    /// that a reviewer knows what every later record ran under.
    Began {
        /// The name its owner gave its profile, if any.
        profile: Option<String>,
        /// Its sandbox, as its grants (`sandbox=disabled` when there is
        /// none).
        sandbox: Vec<String>,
        /// Where the grants' special roots lead: `:cwd=PATH`,
        /// `:tmpdir=PATH`, and `:workspace_roots=PATH` for each (empty
        /// without a sandbox). Probe 190: a reviewer could not tell which
        /// directory `:tmpdir=write` made writable.
        roots: Vec<String>,
    },
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
        /// The process that asked, from its socket's peer credentials, once
        /// they were read: a hello refused on the session socket has none
        /// (a datagram does not say who sent it).
        requester: Option<PeerCredentials>,
        /// What it asked for, when it got as far as being read: as sent,
        /// unchecked (the executable could not be, or the request would not
        /// have been refused).
        asked: Option<Arc<RefusedRequest>>,
    },
    /// The session ended; `running` escalated children were still running
    /// or being started, and are being killed, with every process in the
    /// session's cgroup: `processes` of them, escalated programs, their
    /// descendants and shells alike, bubblewrap and the sandbox helper left
    /// out (`None` where sessions have no cgroup). `requests`: how many
    /// requests it numbered, each recorded (decided, refused or left
    /// undecided), some perhaps after this.
    Ended {
        reason: SessionEnd,
        running: usize,
        processes: Option<usize>,
        requests: u64,
    },
    /// A connection through the managed network's proxy was decided (before
    /// it is made) or has closed.
    Network(NetworkEvent),
    /// A command's shell did not start: it could not be spawned, or
    /// bubblewrap could not set its sandbox up, or the session would not
    /// start it (ended, a command too long, a grant not recorded). Nothing
    /// of the command ran; the log says so, with the command, where it
    /// would otherwise hold no trace of it.
    ShellNotStarted {
        /// Which shell: `command` (a one-shot run), `process` (a
        /// long-lived one) or `interactive`.
        kind: &'static str,
        /// The shell's argument vector (`zsh -f -c -- COMMAND`).
        argv: Vec<std::ffi::OsString>,
        cwd: std::path::PathBuf,
        /// Why, as the caller was told.
        reason: String,
    },
    /// A command's caller asked extra grants for its shell (an agent's
    /// `request_permissions`, `execgate run --request-permissions`), and
    /// the approver answered. Recorded before the shell starts, with or
    /// without them.
    PermissionsRequested {
        /// The shell's argument vector (`zsh -f -c COMMAND`).
        argv: Vec<std::ffi::OsString>,
        cwd: std::path::PathBuf,
        /// What the shell starts with on top of the session's sandbox
        /// (narrowed, if the approver granted part); what was asked for
        /// when declined.
        grants: execgate_sandbox::PermissionProfile,
        granted: bool,
        /// Why the caller asked, in its words.
        justification: Option<String>,
        provenance: Provenance,
    },
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

/// One connection through a `limited` sandbox's proxy, at one of two
/// moments: when it was decided ([`NetworkStage::Decided`], recorded before
/// the proxy connects, so that an unrecordable decision refuses the
/// connection) and, for allowed connections, when it closed
/// ([`NetworkStage::Closed`], with the address reached and the bytes
/// relayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEvent {
    pub stage: NetworkStage,
    /// What the client asked for; `None` when its request could not be read
    /// (the outcome is then [`NetworkOutcome::Refused`]).
    pub request: Option<ConnectRequest>,
    /// The address connected to, once there is one.
    pub address: Option<IpAddr>,
    pub outcome: NetworkOutcome,
    /// `None` when nothing was decided (a request that could not be read).
    pub decided_by: Option<NetworkDecidedBy>,
    /// Why it was denied, unreachable or refused.
    pub reason: Option<String>,
    /// The command whose process opened the connection, when known.
    pub request_id: Option<u64>,
    /// On [`NetworkStage::Closed`] after relaying: the client's payload
    /// each way.
    pub bytes: Option<RelayedBytes>,
}

/// When a [`NetworkEvent`] was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkStage {
    Decided,
    Closed,
}

/// How a connection went (or, when decided, what was decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkOutcome {
    Allowed,
    Denied,
    /// Allowed, but no permitted address could be reached.
    Unreachable,
    /// The client sent something the proxy does not serve.
    Refused,
}

impl NetworkOutcome {
    /// `allowed`, `denied`, `unreachable` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkOutcome::Allowed => "allowed",
            NetworkOutcome::Denied => "denied",
            NetworkOutcome::Unreachable => "unreachable",
            NetworkOutcome::Refused => "refused",
        }
    }
}

/// Bytes relayed through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayedBytes {
    /// From the client to the destination.
    pub sent: u64,
    /// From the destination to the client.
    pub received: u64,
}

/// What decided a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkDecidedBy {
    /// An entry of the profile's `domains` table, as written there.
    List { pattern: String },
    /// A `network_rule` that allows or forbids.
    Rule(RuleRef),
    /// A person answered; `rule` is the `prompt` rule that asked, if one did.
    User {
        rule: Option<RuleRef>,
        waited: Duration,
    },
    /// An earlier "for the session" answer.
    SessionCache { rule: Option<RuleRef> },
    /// Nothing decided and no person asked: denied (or, with an approver
    /// that approves everything by itself, for tests, allowed).
    Default { rule: Option<RuleRef> },
}

impl NetworkDecidedBy {
    /// `list`, `rule`, `user`, `session-cache` or `default`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NetworkDecidedBy::List { .. } => "list",
            NetworkDecidedBy::Rule(_) => "rule",
            NetworkDecidedBy::User { .. } => "user",
            NetworkDecidedBy::SessionCache { .. } => "session-cache",
            NetworkDecidedBy::Default { .. } => "default",
        }
    }

    /// The rule involved: the one that decided, or the `prompt` rule that
    /// asked.
    pub fn rule(&self) -> Option<&RuleRef> {
        match self {
            NetworkDecidedBy::List { .. } => None,
            NetworkDecidedBy::Rule(rule) => Some(rule),
            NetworkDecidedBy::User { rule, .. }
            | NetworkDecidedBy::SessionCache { rule }
            | NetworkDecidedBy::Default { rule } => rule.as_ref(),
        }
    }
}

impl NetworkEvent {
    /// The decision about `request`, before the proxy acts on it.
    pub fn decided(
        request: &ConnectRequest,
        verdict: &Verdict,
        decided_by: &NetworkDecidedBy,
        request_id: Option<u64>,
    ) -> NetworkEvent {
        let (outcome, reason) = match verdict {
            Verdict::Allow(_) => (NetworkOutcome::Allowed, None),
            Verdict::Deny { reason } => (NetworkOutcome::Denied, Some(reason.clone())),
        };
        NetworkEvent {
            stage: NetworkStage::Decided,
            request: Some(request.clone()),
            address: None,
            outcome,
            decided_by: Some(decided_by.clone()),
            reason,
            request_id,
            bytes: None,
        }
    }

    /// How a connection ended; `decided_by` is what decided it (`None` when
    /// the request could not be read, so nothing was decided).
    pub fn closed(
        report: &ConnectionReport,
        decided_by: Option<&NetworkDecidedBy>,
        request_id: Option<u64>,
    ) -> NetworkEvent {
        let (outcome, address, reason, bytes) = match &report.outcome {
            ConnectionOutcome::Relayed {
                address,
                bytes_sent,
                bytes_received,
            } => (
                NetworkOutcome::Allowed,
                Some(address.ip()),
                None,
                Some(RelayedBytes {
                    sent: *bytes_sent,
                    received: *bytes_received,
                }),
            ),
            ConnectionOutcome::Denied { reason } => {
                (NetworkOutcome::Denied, None, Some(reason.clone()), None)
            }
            ConnectionOutcome::Unreachable { reason } => (
                NetworkOutcome::Unreachable,
                None,
                Some(reason.clone()),
                None,
            ),
            ConnectionOutcome::Refused { reason } => {
                (NetworkOutcome::Refused, None, Some(reason.clone()), None)
            }
        };
        NetworkEvent {
            stage: NetworkStage::Closed,
            request: report.request.clone(),
            address,
            outcome,
            decided_by: decided_by.cloned(),
            reason,
            request_id,
            bytes,
        }
    }
}

/// Reports a session's events from tasks that do not hold the
/// [`Session`](crate::Session) (the network proxy's connections): records
/// each in the audit log, then hands it to the event sink, as the session
/// does with its own. Keeps working after the session has ended, so that
/// a connection closing late is still recorded.
#[derive(Clone)]
pub struct EventReporter {
    session_id: Arc<str>,
    audit: Option<Arc<dyn AuditSink>>,
    events: Option<EventSink>,
    audit_failure: AuditFailure,
}

impl EventReporter {
    /// A reporter for session `session_id` (usually from
    /// [`Session::event_reporter`](crate::Session::event_reporter)).
    pub fn new(
        session_id: &str,
        audit: Option<Arc<dyn AuditSink>>,
        events: Option<EventSink>,
        audit_failure: AuditFailure,
    ) -> EventReporter {
        EventReporter {
            session_id: session_id.into(),
            audit,
            events,
            audit_failure,
        }
    }

    /// Records `event`, then reports it. An error means the audit log
    /// could not be written and the session's [`AuditFailure`] is `Deny`:
    /// the caller must not carry out what the event records.
    pub fn report(&self, event: &SessionEvent) -> Result<(), String> {
        record_and_report(
            &self.session_id,
            self.audit.as_deref(),
            self.events.as_ref(),
            self.audit_failure,
            event,
        )
    }
}

/// Records `event` in `audit`, then hands it to `events`; an audit error
/// is returned unless `audit_failure` says to warn and go on. The one way
/// a session's events are reported, from its workers or its proxy.
pub(crate) fn record_and_report(
    session_id: &str,
    audit: Option<&dyn AuditSink>,
    events: Option<&EventSink>,
    audit_failure: AuditFailure,
    event: &SessionEvent,
) -> Result<(), String> {
    let recorded = match audit {
        Some(audit) => audit.record(session_id, event),
        None => Ok(()),
    };
    if let Some(sink) = events {
        // A decision whose record failed is turned into a denial by the
        // caller (unless told to warn): the sink is told the denial.
        match (&recorded, audit_failure) {
            (Err(error), AuditFailure::Deny) => match overturned(event, error) {
                Some(denial) => sink(&denial),
                None => sink(event),
            },
            _ => sink(event),
        }
    }
    match (recorded, audit_failure) {
        (Err(reason), AuditFailure::Warn) => {
            tracing::warn!(session = %session_id, %reason, "audit log write failed; going on");
            Ok(())
        }
        (result, _) => result,
    }
}

/// Why a decision that could not be recorded is denied: nothing goes
/// ahead unrecorded. `error` says why the record failed.
pub fn unrecorded_denial(error: &str) -> String {
    format!("cannot write the audit log ({error}); nothing goes ahead unrecorded")
}

/// `event` as it ends when its record failed: a decision to let something
/// go ahead, turned into a denial. `None` for events that are not such a
/// decision (what happened still happened).
fn overturned(event: &SessionEvent, error: &str) -> Option<SessionEvent> {
    match event {
        SessionEvent::Decided {
            request,
            decision,
            provenance,
        } if !matches!(decision, Decision::Deny { .. }) => Some(SessionEvent::Decided {
            request: request.clone(),
            decision: Decision::Deny {
                reason: unrecorded_denial(error),
            },
            provenance: provenance.clone(),
        }),
        SessionEvent::Network(network)
            if network.stage == NetworkStage::Decided
                && network.outcome == NetworkOutcome::Allowed =>
        {
            Some(SessionEvent::Network(NetworkEvent {
                outcome: NetworkOutcome::Denied,
                reason: Some(unrecorded_denial(error)),
                ..network.clone()
            }))
        }
        _ => None,
    }
}

impl std::fmt::Debug for EventReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReporter")
            .field("session_id", &self.session_id)
            .field("audit_failure", &self.audit_failure)
            .finish_non_exhaustive()
    }
}
