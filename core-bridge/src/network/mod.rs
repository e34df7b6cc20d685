//! The managed network of `limited` sandboxes: the proxy host that serves
//! each sandbox's link (`host.rs`), and the decisions it asks for
//! (`decide.rs`: the profile's lists, the session's network rules, its
//! answers for the session, its approver; every decision recorded before
//! the connection is made).

use std::sync::{Arc, OnceLock};

use execgate_escalate_server::sandbox::ResolvedPolicy;
use execgate_escalate_server::{EventReporter, SandboxOrigin};
use execgate_rules::RuleSet;

use crate::policy::ExecPolicy;

mod decide;
mod host;

pub(crate) use decide::*;
pub use host::OnNetworkDenial;
pub(crate) use host::{ProxyHost, SandboxNetworkFactory};

/// The deciders of a session's sandboxes: rules and approver from the
/// session's exec policy (none: every undecided destination is denied),
/// one cache of answers for the whole session, and the session's audit
/// log once it has started (`reporter`).
pub(crate) fn sandbox_networks(
    policy: Option<&ExecPolicy>,
    reporter: Arc<OnceLock<EventReporter>>,
) -> SandboxNetworkFactory {
    let rules = policy.map_or_else(|| Arc::new(RuleSet::default()), ExecPolicy::rules);
    let approver = policy.map(ExecPolicy::approver);
    let cache = Arc::new(match policy {
        Some(policy) => NetworkCache::new(policy.approval_clock()),
        None => NetworkCache::default(),
    });
    Box::new(move |resolved: &ResolvedPolicy, origin: SandboxOrigin| {
        let mut decider = NetworkDecider::new(
            resolved.network_lists().domains.clone(),
            rules.clone(),
            approver.clone(),
            cache.clone(),
        );
        if let Some(reporter) = reporter.get() {
            decider = decider.recording_to(reporter.clone());
        }
        let request_id = match origin {
            SandboxOrigin::Escalation { request_id, .. } => Some(request_id),
            SandboxOrigin::Shell => None,
        };
        (Arc::new(decider), request_id)
    })
}
