//! The managed network of `limited` sandboxes: the proxy host that serves
//! them (`host.rs`).

use std::sync::Arc;

use execgate_escalate_server::sandbox::ResolvedPolicy;
use execgate_escalate_server::SandboxOrigin;
use execgate_network_proxy::{list_verdict, ConnectRequest, ConnectionReport, DomainList, Verdict};

use crate::policy::ExecPolicy;

mod host;

pub use host::OnNetworkDenial;
pub(crate) use host::{
    HostDecision, HostDecisionFuture, ProxyHost, SandboxNetwork, SandboxNetworkFactory,
};

/// The deciders of a session's sandboxes.
pub(crate) fn sandbox_networks(_policy: Option<ExecPolicy>) -> SandboxNetworkFactory {
    Box::new(|policy: &ResolvedPolicy, _origin: SandboxOrigin| {
        Arc::new(ListsOnly {
            lists: policy.network_lists().domains.clone(),
        }) as Arc<dyn SandboxNetwork>
    })
}

struct ListsOnly {
    lists: DomainList,
}

impl SandboxNetwork for ListsOnly {
    fn decide<'a>(&'a self, request: &'a ConnectRequest) -> HostDecisionFuture<'a> {
        let verdict = list_verdict(&self.lists, request).unwrap_or(Verdict::Deny {
            reason: "not in the profile's domains".into(),
        });
        Box::pin(std::future::ready(HostDecision {
            verdict,
            asked_person: false,
        }))
    }

    fn closed(&self, report: &ConnectionReport, _decision: Option<&HostDecision>) {
        tracing::info!(?report, "proxied connection ended");
    }
}
