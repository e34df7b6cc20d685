//! `network_rule`: which destinations a `limited` sandbox reaches through
//! execgate's proxy without asking, with a person's approval, or never.
//!
//! ```text
//! network_rule(host = "**.crates.io", protocol = "https", port = 443,
//!              decision = "allow", justification = "cargo fetch")
//! ```
//!
//! `host` takes the forms of a profile's `domains` table (`example.com`,
//! `*.example.com`, `**.example.com`, an address, or `*`); `protocol`
//! (`https`, `http`, `socks5-tcp`) and `port` narrow the rule and match
//! anything when absent. As with prefix rules, the strictest matching
//! decision wins.

use execgate_network_proxy::{Destination, DomainPattern, Protocol};

use crate::rule::{RuleDecision, RuleOrigin};

/// One `network_rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRule {
    pub host: DomainPattern,
    /// `None`: any protocol.
    pub protocol: Option<Protocol>,
    /// `None`: any port.
    pub port: Option<u16>,
    pub decision: RuleDecision,
    pub justification: Option<String>,
    pub origin: RuleOrigin,
}

impl NetworkRule {
    fn matches(&self, destination: &Destination, port: u16, protocol: Protocol) -> bool {
        // `*` names no address, so that an allow on it opens none; a
        // forbidden rule on it shuts addresses too, or writing the address
        // would reach what it forbids (a review's `1.2.3.4:25` past a rule
        // against mail anywhere).
        let host = match (&self.host, self.decision) {
            (DomainPattern::Everything, RuleDecision::Forbidden) => true,
            _ => self.host.matches(destination),
        };
        host && self.port.is_none_or(|own| own == port)
            && self.protocol.is_none_or(|own| own == protocol)
    }
}

/// The network rules that matched one connection, in load order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkEvaluation {
    pub matched: Vec<NetworkRule>,
}

impl NetworkEvaluation {
    /// The strictest decision among the matches; `None` when none matched.
    pub fn decision(&self) -> Option<RuleDecision> {
        self.matched.iter().map(|rule| rule.decision).max()
    }

    /// The first loaded rule with the strictest decision.
    pub fn deciding_rule(&self) -> Option<&NetworkRule> {
        let decision = self.decision()?;
        self.matched.iter().find(|rule| rule.decision == decision)
    }
}

pub(crate) fn evaluate(
    rules: &[NetworkRule],
    destination: &Destination,
    port: u16,
    protocol: Protocol,
) -> NetworkEvaluation {
    NetworkEvaluation {
        matched: rules
            .iter()
            .filter(|rule| rule.matches(destination, port, protocol))
            .cloned()
            .collect(),
    }
}

pub(crate) fn parse_protocol(text: &str) -> Option<Protocol> {
    match text {
        "https" => Some(Protocol::Https),
        "http" => Some(Protocol::Http),
        "socks5-tcp" => Some(Protocol::Socks5Tcp),
        _ => None,
    }
}
