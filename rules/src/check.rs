//! The JSON `execgate policy check` prints: the shape of `codex execpolicy
//! check`, plus the rule's origin and execution.

use serde::Serialize;

use crate::network::NetworkEvaluation;
use crate::rule::Evaluation;

/// `{"matchedRules": [{"prefixRuleMatch": {...}}], "decision": "..."}`;
/// `decision` is absent when nothing matched.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub matched_rules: Vec<MatchedRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// Ours, with `--as-run`: the program decided on, as resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Ours, with `--as-run`: what the command runs as when allowed or
    /// approved: the execution of the deciding rule that confines most
    /// ([`Evaluation::deciding_rule`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedRule {
    pub prefix_rule_match: PrefixRuleMatch,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefixRuleMatch {
    pub matched_prefix: Vec<String>,
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_program: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// Ours: `file:line`.
    pub rule: String,
    /// Ours: what an allowed or approved command runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

impl From<&Evaluation> for CheckReport {
    fn from(evaluation: &Evaluation) -> CheckReport {
        CheckReport {
            matched_rules: evaluation
                .matched
                .iter()
                .map(|rule| MatchedRule {
                    prefix_rule_match: PrefixRuleMatch {
                        matched_prefix: rule.matched_prefix.clone(),
                        decision: rule.decision.as_str(),
                        resolved_program: rule
                            .resolved_program
                            .as_ref()
                            .map(|path| path.display().to_string()),
                        justification: rule.justification.clone(),
                        rule: rule.origin.to_string(),
                        execution: rule.execution.as_ref().map(ToString::to_string),
                    },
                })
                .collect(),
            decision: evaluation.decision().map(|decision| decision.as_str()),
            program: None,
            execution: None,
        }
    }
}

impl CheckReport {
    /// With what a session adds: the program decided on, and what the
    /// command runs as when allowed or approved.
    pub fn as_run(evaluation: &Evaluation, program: Option<String>) -> CheckReport {
        CheckReport {
            program,
            execution: evaluation
                .deciding_rule()
                .filter(|rule| rule.decision != crate::RuleDecision::Forbidden)
                .map(|rule| {
                    rule.execution
                        .as_ref()
                        .map_or_else(|| "unsandboxed".to_owned(), ToString::to_string)
                }),
            ..CheckReport::from(evaluation)
        }
    }
}

/// `execgate policy check --network`: the same shape, with
/// `networkRuleMatch` entries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkCheckReport {
    pub matched_rules: Vec<MatchedNetworkRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// What a session does beyond the rules' decision, when it differs
    /// (an allowed address a session refuses all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedNetworkRule {
    pub network_rule_match: NetworkRuleMatch,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleMatch {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// `file:line`.
    pub rule: String,
}

impl From<&NetworkEvaluation> for NetworkCheckReport {
    fn from(evaluation: &NetworkEvaluation) -> NetworkCheckReport {
        NetworkCheckReport {
            matched_rules: evaluation
                .matched
                .iter()
                .map(|rule| MatchedNetworkRule {
                    network_rule_match: NetworkRuleMatch {
                        host: rule.host.to_string(),
                        protocol: rule.protocol.map(|protocol| protocol.to_string()),
                        port: rule.port,
                        decision: rule.decision.as_str(),
                        justification: rule.justification.clone(),
                        rule: rule.origin.to_string(),
                    },
                })
                .collect(),
            decision: evaluation.decision().map(|decision| decision.as_str()),
            note: None,
        }
    }
}
