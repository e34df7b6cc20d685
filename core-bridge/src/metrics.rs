//! Per-session counters and the `tracing` telemetry of a session.
//!
//! Every session event passes through [`Telemetry::observe`] before the
//! caller's own sink: it counts the event in the session's [`Metrics`] and
//! emits a `tracing` event carrying the sandbox type, the profile, the
//! decision and who decided, so operators and agents can filter and
//! aggregate them (`EXECGATE_LOG`, `--log-format json` in the CLI). It must
//! never block or fail: it runs on the decision path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use execgate_escalate_server::sandbox::PermissionProfile;
use execgate_escalate_server::{Decision, Execution, Provenance, SessionEvent};

/// A snapshot of one session's counters ([`crate::ShellSession::metrics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// The session's sandbox: `bubblewrap`, `none` or `external`.
    pub sandbox: &'static str,
    /// The session's profile name.
    pub profile: String,
    /// Decisions that ran the program in place, in the sandbox.
    pub decided_run: u64,
    /// Decisions that escalated the program (started by the server).
    pub decided_escalate: u64,
    /// Decisions that denied the program.
    pub decided_deny: u64,
    /// Escalations by where they ran: `unsandboxed`, `turn-default`,
    /// `permissions`.
    pub escalations_by_execution: BTreeMap<&'static str, u64>,
    /// Escalations decided whose child could not be started.
    pub spawn_failures: u64,
    /// Requests refused before a decision (malformed, wrong peer, ...).
    pub requests_refused: u64,
    /// Shells (and with them their sandboxes) that could not be started,
    /// by reason.
    pub sandbox_start_failures: BTreeMap<String, u64>,
    /// Decisions a person was asked for, and the time they took in total.
    pub approvals: u64,
    pub approval_wait: Duration,
}

impl Metrics {
    /// Every decision, whatever its outcome.
    pub fn decided(&self) -> u64 {
        self.decided_run + self.decided_escalate + self.decided_deny
    }
}

/// The session's counters and the labels its telemetry carries.
#[derive(Clone)]
pub(crate) struct Telemetry {
    counters: Arc<Mutex<Metrics>>,
    /// `bubblewrap` for a managed profile, `none` for a disabled one.
    sandbox_type: &'static str,
    profile: Arc<str>,
    session: Arc<str>,
}

impl Metrics {
    fn count_approval(&mut self, wait: Duration) {
        self.approvals += 1;
        self.approval_wait += wait;
    }
}

impl Telemetry {
    pub(crate) fn new(profile: &PermissionProfile, profile_name: &str) -> Telemetry {
        let sandbox_type = sandbox_type(profile);
        let counters = Metrics {
            sandbox: sandbox_type,
            profile: profile_name.to_owned(),
            ..Metrics::default()
        };
        Telemetry {
            counters: Arc::new(Mutex::new(counters)),
            sandbox_type,
            profile: profile_name.into(),
            session: Arc::from(""),
        }
    }

    /// Names the session in every event from now on.
    pub(crate) fn set_session(&mut self, id: &str) {
        self.session = id.into();
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts and traces one session event.
    pub(crate) fn observe(&self, event: &SessionEvent) {
        let (sandbox, profile) = (self.sandbox_type, &*self.profile);
        match event {
            SessionEvent::Decided {
                request,
                decision,
                provenance,
            } => {
                let outcome = {
                    let mut counters = self.lock();
                    if let Some(wait) = provenance.approval_wait {
                        counters.count_approval(wait);
                    }
                    match decision {
                        Decision::Run => {
                            counters.decided_run += 1;
                            "run"
                        }
                        Decision::Escalate(execution) => {
                            counters.decided_escalate += 1;
                            *counters
                                .escalations_by_execution
                                .entry(execution_name(execution))
                                .or_default() += 1;
                            "escalate"
                        }
                        Decision::Deny { .. } => {
                            counters.decided_deny += 1;
                            "deny"
                        }
                        // `Decision` is non-exhaustive: an outcome added later.
                        _ => "other",
                    }
                };
                if let Some(wait) = provenance.approval_wait {
                    self.approval_answered(provenance, wait);
                }
                let execution = match decision {
                    Decision::Escalate(execution) => execution_name(execution),
                    _ => "",
                };
                tracing::info!(
                    target: "execgate::decision",
                    session = %self.session,
                    sandbox,
                    profile,
                    decision = outcome,
                    execution,
                    decided_by = provenance.decided_by.as_str(),
                    rule = provenance.rule.as_ref().map(|rule| rule.id.as_str()).unwrap_or(""),
                    // Joins an escalation's start and end (probe 163).
                    request_id = request.request_id,
                    // A string field, so that the formatter quotes and
                    // escapes it: the sandbox names its own programs.
                    program = request.executable.canonical_path.to_string_lossy().as_ref(),
                    // Why it is not what the rule asked for (an escalation
                    // refused, grants narrowed), as the record says.
                    note = provenance.note.as_deref().unwrap_or(""),
                    "exec decided"
                );
            }
            SessionEvent::Started { request_id, pid } => tracing::info!(
                target: "execgate::escalation",
                session = %self.session,
                sandbox,
                profile,
                request_id,
                pid,
                "escalated child started"
            ),
            SessionEvent::SpawnFailed { request_id, reason } => {
                self.lock().spawn_failures += 1;
                tracing::warn!(
                    target: "execgate::escalation",
                    session = %self.session,
                    sandbox,
                    profile,
                    request_id,
                    reason = reason.as_str(),
                    "escalated child could not be started"
                );
            }
            SessionEvent::Exited {
                request_id,
                pid,
                termination,
                run_time,
            } => tracing::info!(
                target: "execgate::escalation",
                session = %self.session,
                sandbox,
                profile,
                request_id,
                pid,
                termination = ?termination,
                run_time_ms = u64::try_from(run_time.as_millis()).unwrap_or(u64::MAX),
                "escalated child ended"
            ),
            SessionEvent::RequestRefused {
                request_id, reason, ..
            } => {
                self.lock().requests_refused += 1;
                tracing::warn!(
                    target: "execgate::decision",
                    session = %self.session,
                    sandbox,
                    profile,
                    request_id = request_id.unwrap_or(0),
                    reason = reason.as_str(),
                    "request refused"
                );
            }
            SessionEvent::Ended {
                reason,
                running,
                processes,
                requests,
            } => tracing::info!(
                target: "execgate::session",
                session = %self.session,
                sandbox,
                profile,
                reason = ?reason,
                running,
                processes,
                requests,
                "session ended"
            ),
            SessionEvent::PermissionsRequested {
                granted,
                provenance,
                ..
            } => {
                tracing::info!(
                    target: "execgate::approval",
                    session = %self.session,
                    sandbox,
                    profile,
                    granted,
                    decided_by = provenance.decided_by.as_str(),
                    note = provenance.note.as_deref().unwrap_or(""),
                    "permissions requested for a command"
                );
                if let Some(wait) = provenance.approval_wait {
                    self.lock().count_approval(wait);
                    self.approval_answered(provenance, wait);
                }
            }
            SessionEvent::ShellNotStarted { kind, reason, .. } => {
                *self
                    .lock()
                    .sandbox_start_failures
                    .entry(reason.clone())
                    .or_default() += 1;
                tracing::error!(
                    target: "execgate::sandbox",
                    session = %self.session,
                    sandbox,
                    profile,
                    shell = kind,
                    reason = reason.as_str(),
                    "sandboxed shell could not be started"
                );
            }
            // `SessionEvent` is non-exhaustive: an event added later.
            other => tracing::debug!(target: "execgate::session", event = ?other, "session event"),
        }
    }

    /// Traces an approval a person answered after `wait`.
    fn approval_answered(&self, provenance: &Provenance, wait: Duration) {
        tracing::info!(
            target: "execgate::approval",
            session = %self.session,
            sandbox = self.sandbox_type,
            profile = &*self.profile,
            decided_by = provenance.decided_by.as_str(),
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "approval answered"
        );
    }

    /// Traces a shell (and its sandbox) starting.
    pub(crate) fn shell_started(&self, kind: &'static str, pid: Option<u32>) {
        tracing::info!(
            target: "execgate::sandbox",
            session = %self.session,
            sandbox = self.sandbox_type,
            profile = &*self.profile,
            shell = kind,
            pid = pid.unwrap_or(0),
            "sandboxed shell started"
        );
    }
}

fn sandbox_type(profile: &PermissionProfile) -> &'static str {
    match profile {
        PermissionProfile::Managed { .. } => "bubblewrap",
        PermissionProfile::Disabled => "none",
        PermissionProfile::External { .. } => "external",
    }
}

fn execution_name(execution: &Execution) -> &'static str {
    match execution {
        Execution::Unsandboxed => "unsandboxed",
        Execution::TurnDefault => "turn-default",
        Execution::Permissions(_) => "permissions",
        // `Execution` is non-exhaustive: a way of running added later.
        _ => "other",
    }
}
