//! Who decides each connection a `limited` sandbox makes through the proxy,
//! who is asked, and what is recorded.
//!
//! For every [`ConnectRequest`] (host, protocol, port), in order:
//!
//! 1. A `forbidden` `network_rule` denies, whatever else would allow: a
//!    rule can forbid one port of a host a `domains` entry allows.
//! 2. The profile's `domains` list. A deny entry denies; an allow entry
//!    allows, and lets a non-public address through only when it names the
//!    destination exactly.
//! 3. The other `network_rule`s: `prompt` wins over `allow`. An
//!    `allow` rule never opens non-public addresses (a rule names hosts by
//!    pattern, not the addresses they resolve to).
//! 4. The session's earlier "for the session" answers ([`NetworkCache`]).
//! 5. The approver, for a `prompt` rule or when nothing decided. Without
//!    one, the connection is denied, saying nobody could be asked.
//!    Identical questions (same host, protocol and port) in flight at once
//!    are asked once; while one waits, every command's timeout stands
//!    still (the session's [`ApprovalClock`]: a connection is not traced
//!    to the command that made it).
//!
//! A person or a cached answer allows the name they saw, never a non-public
//! address it may resolve to.
//!
//! Each decision is recorded ([`SessionEvent::Network`]) before the proxy
//! acts on it: if the audit log cannot take it and the session says
//! [`AuditFailure::Deny`](execgate_escalate_server::AuditFailure), the
//! connection is denied. An allowed connection gets a second record when it
//! closes, with the address reached and the bytes relayed.
//!
//! This module must never allow on an answer it does not understand: any
//! answer other than the two approvals declines.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use execgate_escalate_server::{
    EventReporter, NetworkDecidedBy, NetworkEvent, RuleRef, SessionEvent,
};
use execgate_network_proxy::{
    ConnectRequest, ConnectionReport, Decider, Destination, DomainList, ListDecision,
    NonPublicAddresses, Verdict,
};
use execgate_rules::{RuleDecision, RuleSet};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::approval::{
    nobody_answered, too_many_questions, ApprovalAnswer, ApprovalClock, Approver,
    NetworkApprovalRequest, WaitingForAnswer, NOBODY_IS_ASKED, QUESTIONS_IN_FLIGHT,
};

/// A session's network answers, shared by every sandbox of the session:
/// the "for the session" answers, and the questions waiting for one.
#[derive(Debug, Default)]
pub(crate) struct NetworkCache {
    clock: ApprovalClock,
    /// Allowed for the session: the host, protocol and port the person saw.
    allowed: Mutex<HashSet<ConnectRequest>>,
    /// Denied for the session: the host, on every protocol and port. Keyed
    /// as narrowly as an allowance, a denial let a probe ask again about
    /// the same host through SOCKS, `CONNECT` and other ports, each one
    /// another chance for a tired "yes".
    denied: Mutex<HashSet<Destination>>,
    pending: Mutex<HashMap<ConnectRequest, SharedAnswer>>,
    /// Held while a question is put: one at a time, as a person answers
    /// them.
    asking: tokio::sync::Mutex<()>,
}

/// One answer, and how long it took, for everyone waiting on it; `None`
/// when the question was settled by the session's answer to another while
/// it waited its turn.
type SharedAnswer = Arc<OnceCell<Option<(ApprovalAnswer, Duration)>>>;

impl NetworkCache {
    /// A cache whose questions pause `clock` (the session's approval clock,
    /// so that command timeouts exclude the time a person takes).
    pub(crate) fn new(clock: ApprovalClock) -> NetworkCache {
        NetworkCache {
            clock,
            ..NetworkCache::default()
        }
    }

    /// What an answer "for the session" already says of `request`.
    fn session_answer(&self, request: &ConnectRequest) -> Option<Verdict> {
        if lock(&self.denied).contains(&request.destination) {
            return Some(Verdict::Deny {
                reason: format!(
                    "declined by the user for this session ({} on every port)",
                    request.destination
                ),
            });
        }
        lock(&self.allowed)
            .contains(request)
            .then(|| approved(request))
    }
}

/// A decision and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkDecision {
    pub verdict: Verdict,
    pub decided_by: NetworkDecidedBy,
    /// The connection was held while a person was asked.
    pub asked_person: bool,
}

impl NetworkDecision {
    /// The record written before the proxy acts on this decision.
    pub(crate) fn decided_event(
        &self,
        request: &ConnectRequest,
        request_id: Option<u64>,
    ) -> SessionEvent {
        SessionEvent::Network(NetworkEvent::decided(
            request,
            &self.verdict,
            &self.decided_by,
            request_id,
        ))
    }

    /// The record written when the connection this decision allowed has
    /// closed.
    pub(crate) fn closed_event(
        &self,
        report: &ConnectionReport,
        request_id: Option<u64>,
    ) -> SessionEvent {
        SessionEvent::Network(NetworkEvent::closed(
            report,
            Some(&self.decided_by),
            request_id,
        ))
    }
}

/// Decides the connections of one sandbox (one profile's `domains` list),
/// with the session's rules, approver and cache.
pub(crate) struct NetworkDecider {
    lists: DomainList,
    rules: Arc<RuleSet>,
    approver: Option<Arc<dyn Approver>>,
    cache: Arc<NetworkCache>,
    reporter: Option<EventReporter>,
}

impl NetworkDecider {
    pub(crate) fn new(
        lists: DomainList,
        rules: Arc<RuleSet>,
        approver: Option<Arc<dyn Approver>>,
        cache: Arc<NetworkCache>,
    ) -> NetworkDecider {
        NetworkDecider {
            lists,
            rules,
            approver,
            cache,
            reporter: None,
        }
    }

    /// Records every decision (and every close of an allowed connection)
    /// through `reporter`, the session's audit log and event sink.
    pub(crate) fn recording_to(mut self, reporter: EventReporter) -> NetworkDecider {
        self.reporter = Some(reporter);
        self
    }

    /// Decides `request`: lists, rules, the session cache, the approver.
    /// Records nothing; [`NetworkDecider::connection`] does.
    pub(crate) async fn decide(&self, request: &ConnectRequest) -> NetworkDecision {
        let evaluation =
            self.rules
                .check_network(&request.destination, request.port, request.protocol);
        let deciding_rule = evaluation.deciding_rule().map(|rule| {
            let rule_ref = RuleRef {
                id: rule.origin.to_string(),
                justification: rule.justification.clone(),
            };
            (rule.decision, rule_ref)
        });
        if let Some((RuleDecision::Forbidden, rule_ref)) = deciding_rule {
            let reason = match &rule_ref.justification {
                Some(why) => format!("forbidden by network rule at {}: {why}", rule_ref.id),
                None => format!("forbidden by network rule at {}", rule_ref.id),
            };
            return NetworkDecision {
                verdict: Verdict::Deny { reason },
                decided_by: NetworkDecidedBy::Rule(rule_ref),
                asked_person: false,
            };
        }
        if let Some(found) = self.lists.decide(&request.destination) {
            let verdict = match found.decision {
                ListDecision::Deny => Verdict::Deny {
                    reason: format!("denied by domains entry \"{}\"", found.pattern),
                },
                ListDecision::Allow if found.is_explicit() => {
                    Verdict::Allow(NonPublicAddresses::Permit)
                }
                ListDecision::Allow => Verdict::Allow(NonPublicAddresses::Refuse),
            };
            return NetworkDecision {
                verdict,
                decided_by: NetworkDecidedBy::List {
                    pattern: found.pattern.to_string(),
                },
                asked_person: false,
            };
        }
        let prompt_rule = match deciding_rule {
            None => None,
            Some((RuleDecision::Allow, rule_ref)) => {
                return NetworkDecision {
                    verdict: Verdict::Allow(NonPublicAddresses::Refuse),
                    decided_by: NetworkDecidedBy::Rule(rule_ref),
                    asked_person: false,
                };
            }
            Some((_, rule_ref)) => Some(rule_ref),
        };
        self.cached_or_asked(request, prompt_rule).await
    }

    /// The session's earlier answer, else the approver's, asked once for
    /// identical questions in flight and one question at a time: a
    /// question that waited its turn while another settled it (a denial of
    /// its host for the session) is not put.
    async fn cached_or_asked(
        &self,
        request: &ConnectRequest,
        rule: Option<RuleRef>,
    ) -> NetworkDecision {
        let (answer, waited, approver) = loop {
            let (cell, approver) = {
                // Under the pending lock, a question is either still
                // pending or its session answer is already in `allowed` or
                // `denied` (put there before the question leaves
                // `pending`): never asked twice.
                let mut pending = lock(&self.cache.pending);
                if let Some(verdict) = self.cache.session_answer(request) {
                    return NetworkDecision {
                        verdict,
                        decided_by: NetworkDecidedBy::SessionCache { rule },
                        asked_person: false,
                    };
                }
                let Some(approver) = &self.approver else {
                    return NetworkDecision {
                        verdict: Verdict::Deny {
                            reason: format!(
                                "no list entry or network rule allows {}:{} ({}), and nobody \
                                 can be asked (no approver)",
                                request.destination, request.port, request.protocol
                            ),
                        },
                        decided_by: NetworkDecidedBy::Default { rule },
                        asked_person: false,
                    };
                };
                if !pending.contains_key(request) && pending.len() >= QUESTIONS_IN_FLIGHT {
                    return NetworkDecision {
                        verdict: Verdict::Deny {
                            reason: nobody_answered(&too_many_questions()),
                        },
                        decided_by: NetworkDecidedBy::Default { rule },
                        asked_person: false,
                    };
                }
                let cell = pending.entry(request.clone()).or_default().clone();
                (cell, approver.clone())
            };
            let question = NetworkApprovalRequest {
                destination: request.destination.clone(),
                protocol: request.protocol,
                port: request.port,
                rule: rule.clone(),
            };
            let mut waiting = WaitingForAnswer::new(&self.cache.pending, request.clone(), cell);
            let asked = {
                let _paused = self.cache.clock.pending(None);
                waiting
                    .cell
                    .get_or_init(|| async {
                        let _turn = self.cache.asking.lock().await;
                        if self.cache.session_answer(request).is_some() {
                            return None;
                        }
                        let started = Instant::now();
                        let answer = approver.approve_network(&question).await;
                        match answer {
                            ApprovalAnswer::ApproveForSession => {
                                lock(&self.cache.allowed).insert(request.clone());
                            }
                            ApprovalAnswer::DeclineForSession => {
                                lock(&self.cache.denied).insert(request.destination.clone());
                            }
                            _ => {}
                        }
                        Some((answer, started.elapsed()))
                    })
                    .await
                    .clone()
            };
            waiting.answered = true;
            drop(waiting);
            // Settled while it waited its turn: the session's answer, above.
            if let Some((answer, waited)) = asked {
                break (answer, waited, approver);
            }
        };
        let person = approver.asks_a_person();
        let unanswered = matches!(answer, ApprovalAnswer::Unanswered { .. });
        let verdict = match answer {
            ApprovalAnswer::ApproveOnce | ApprovalAnswer::ApproveForSession => approved(request),
            ApprovalAnswer::Unanswered { reason } => Verdict::Deny {
                reason: nobody_answered(&reason),
            },
            // Answered by no one (`DenyAll`): not a user's.
            _ if !person => Verdict::Deny {
                reason: format!(
                    "no list entry or network rule allows {}:{} ({}), and {NOBODY_IS_ASKED}",
                    request.destination, request.port, request.protocol
                ),
            },
            ApprovalAnswer::Decline => Verdict::Deny {
                reason: "declined by the user".into(),
            },
            ApprovalAnswer::DeclineForSession => Verdict::Deny {
                reason: "declined by the user for this session".into(),
            },
            ApprovalAnswer::Abort => Verdict::Deny {
                reason: "aborted by the user".into(),
            },
            // A grant of permissions answers no network question.
            ApprovalAnswer::ApprovePartly(_) => Verdict::Deny {
                reason: "declined by the user (a partial answer to a network question)".into(),
            },
        };
        if !person || unanswered {
            return NetworkDecision {
                verdict,
                decided_by: NetworkDecidedBy::Default { rule },
                asked_person: false,
            };
        }
        NetworkDecision {
            verdict,
            decided_by: NetworkDecidedBy::User { rule, waited },
            asked_person: true,
        }
    }

    /// Decides and records: the record is written before the verdict is
    /// returned, and a decision that cannot be recorded (with
    /// `AuditFailure::Deny`) becomes a denial.
    async fn decide_recorded(
        &self,
        request: &ConnectRequest,
        request_id: Option<u64>,
    ) -> NetworkDecision {
        let mut decision = self.decide(request).await;
        if let Some(reporter) = &self.reporter {
            if let Err(error) = reporter.report(&decision.decided_event(request, request_id)) {
                decision.verdict = Verdict::Deny {
                    reason: execgate_escalate_server::unrecorded_denial(&error),
                };
            }
        }
        decision
    }

    /// A decider for one connection, opened by the command `request_id`
    /// (when the bridge could tell): give it to `serve_connection`, then
    /// call [`NetworkConnection::closed`] with the report.
    pub(crate) fn connection(self: &Arc<Self>, request_id: Option<u64>) -> NetworkConnection {
        NetworkConnection {
            decider: self.clone(),
            request_id,
            decision: Mutex::new(None),
        }
    }
}

/// Verdicts only, recording each decision (without a request id); for one
/// connection with its request id and its close recorded, use
/// [`NetworkDecider::connection`].
impl Decider for NetworkDecider {
    fn decide<'a>(
        &'a self,
        request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async move { self.decide_recorded(request, None).await.verdict })
    }

    /// A `forbidden` rule, a deny entry or a person's denial for the
    /// session on the address a name resolved to: they shut the address,
    /// whatever name leads there (a probe reached a forbidden address
    /// through a name under an allowed wildcard; probe 231 an address
    /// declined for the session through names that resolve to it).
    fn refuses_address(&self, request: &ConnectRequest, address: IpAddr) -> Option<String> {
        let literal = Destination::Address(address.to_canonical());
        if lock(&self.cache.denied).contains(&literal) {
            return Some(format!("{address}, declined by the user for this session"));
        }
        let evaluation = self
            .rules
            .check_network(&literal, request.port, request.protocol);
        if let Some(rule) = evaluation
            .deciding_rule()
            .filter(|rule| rule.decision == RuleDecision::Forbidden)
        {
            return Some(match &rule.justification {
                Some(why) => format!(
                    "{address}, forbidden by network rule at {}: {why}",
                    rule.origin
                ),
                None => format!("{address}, forbidden by network rule at {}", rule.origin),
            });
        }
        self.lists
            .decide(&literal)
            .filter(|found| found.decision == ListDecision::Deny)
            .map(|found| format!("{address}, denied by domains entry \"{}\"", found.pattern))
    }
}

/// One connection's decider: records its decision with the request id and
/// keeps it for the record written when the connection closes.
pub(crate) struct NetworkConnection {
    decider: Arc<NetworkDecider>,
    request_id: Option<u64>,
    decision: Mutex<Option<NetworkDecision>>,
}

impl NetworkConnection {
    /// What was decided, once it was.
    pub(crate) fn decision(&self) -> Option<NetworkDecision> {
        lock(&self.decision).clone()
    }

    /// Records how the connection ended: for an allowed connection, the
    /// address reached and the bytes relayed (or why it could not be
    /// made); for a request that could not be read, why. A denied
    /// connection's decision record says all there is. The connection is
    /// over, so a failure to record is logged, not returned.
    pub(crate) fn closed(&self, report: &ConnectionReport) {
        let Some(reporter) = &self.decider.reporter else {
            return;
        };
        let event = match self.decision() {
            Some(decision) if matches!(decision.verdict, Verdict::Allow(_)) => {
                decision.closed_event(report, self.request_id)
            }
            Some(_) => return,
            None => SessionEvent::Network(NetworkEvent::closed(report, None, self.request_id)),
        };
        if let Err(error) = reporter.report(&event) {
            tracing::error!(%error, "cannot record a closed network connection");
        }
    }
}

impl Decider for NetworkConnection {
    fn decide<'a>(
        &'a self,
        request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async move {
            let decision = self.decider.decide_recorded(request, self.request_id).await;
            let verdict = decision.verdict.clone();
            *lock(&self.decision) = Some(decision);
            verdict
        })
    }

    fn refuses_address(&self, request: &ConnectRequest, address: IpAddr) -> Option<String> {
        self.decider.refuses_address(request, address)
    }
}

/// What a person's allow lets through. They saw the destination as the
/// client named it: an address itself (loopback or private included) is
/// what they allowed; a name may resolve anywhere, so its non-public
/// answers stay refused, as for a wildcard.
fn approved(request: &ConnectRequest) -> Verdict {
    match request.destination {
        Destination::Address(_) => Verdict::Allow(NonPublicAddresses::Permit),
        Destination::Name(_) => Verdict::Allow(NonPublicAddresses::Refuse),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
