//! One audit record: what a session event becomes on disk.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use execgate_escalate_server::sandbox::ResolvedPolicy;
use execgate_escalate_server::{
    Decision, ExecContext, Execution, NetworkDecidedBy, NetworkEvent, NetworkOutcome, NetworkStage,
    Provenance, SessionEnd, SessionEvent, Termination,
};
use execgate_network_proxy::Destination;
use globset::GlobSet;
use serde::{Deserialize, Serialize};

/// A byte string as recorded: text when it is UTF-8, else base64 and
/// marked so, so that every argument round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    Text(String),
    Encoded { base64: String },
}

impl Bytes {
    pub fn of(bytes: &[u8]) -> Bytes {
        match std::str::from_utf8(bytes) {
            Ok(text) => Bytes::Text(text.to_owned()),
            Err(_) => Bytes::Encoded {
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
        }
    }

    /// The original bytes; `None` for base64 that does not decode.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Bytes::Text(text) => Some(text.as_bytes().to_vec()),
            Bytes::Encoded { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .ok(),
        }
    }

    /// The bytes a reader is shown; for base64 that does not decode (a
    /// damaged or edited log), `Err` with the text recorded, which a
    /// reader shows with [`undecodable`], as no argument could be shown.
    pub fn shown(&self) -> Result<std::borrow::Cow<'_, [u8]>, &str> {
        match self {
            Bytes::Text(text) => Ok(text.as_bytes().into()),
            Bytes::Encoded { base64 } => self.to_bytes().map(Into::into).ok_or(base64),
        }
    }

    /// For display: lossy text ([`undecodable`] for base64 that does not
    /// decode).
    pub fn lossy(&self) -> String {
        match self.shown() {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(recorded) => undecodable(recorded),
        }
    }
}

/// How a reader shows base64 that does not decode: unquoted and with
/// blanks, which `execgate audit` and its summary never show an argument
/// as (one with blanks is quoted), so an argument cannot imitate it.
pub fn undecodable(recorded: &str) -> String {
    format!("<base64 that does not decode: {}>", recorded.escape_debug())
}

/// A request's environment as recorded: every variable's name, and the
/// value of those `RecordOptions::env_values` names.
pub type Environment = BTreeMap<String, Option<Bytes>>;

/// `event.*`: what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFields {
    /// `decision`, `exit` or `error`.
    pub action: String,
    /// `success` (allowed to run, or ran), `failure` (denied, refused,
    /// could not start).
    pub outcome: String,
}

/// `process.*`: the program, as the server resolved it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Bytes>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<Bytes>,
    /// The escalated child's pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "signed_exit_code"
    )]
    pub exit_code: Option<i32>,
    /// The terminating signal, never folded into `exit_code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_dumped: Option<bool>,
    /// Seconds the escalated child ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_time: Option<f64>,
}

/// The identity of the file the decision was made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub requested_path: Bytes,
    pub device: u64,
    pub inode: u64,
    /// Octal, as `ls` would think of it (`100755`).
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
}

/// Who asked, from the socket's peer credentials (never from the request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub pid: i32,
    pub uid: u32,
}

/// How a decision was reached. Rules and approvals fill in the rule and
/// who decided; the default policy leaves them `None` / `default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionFields {
    /// `run`, `escalate` or `deny`; for connections `allow` or `deny`.
    /// Empty (and absent on disk) when nothing was decided: a proxy request
    /// that could not be read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decision: String,
    /// For `escalate`: `unsandboxed`, `turn-default` or `permissions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// For `permissions`: the extra grants (`path=access`, `network=...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `rule`, `user`, `session-cache`, `skill`, `list` (connections) or
    /// `default`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decided_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_ms: Option<u64>,
    /// Why the decision is not what the rule asked for, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For connections decided by a profile's `domains` list: the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_entry: Option<String>,
    /// For connections: `allowed`, `denied`, `unreachable` or `refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_outcome: Option<String>,
    /// Why `process.working_directory` is only what the requester said:
    /// the server could not confirm it is the requester's own (absent when
    /// it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory_unverified: Option<String>,
    /// On `permissions-request`: why the caller asked, in its words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

impl DecisionFields {
    /// `decision`, made as `provenance` says; nothing else.
    fn by(decision: &str, provenance: &Provenance) -> DecisionFields {
        DecisionFields {
            decision: decision.into(),
            execution: None,
            grants: None,
            reason: None,
            decided_by: provenance.decided_by.as_str().into(),
            approval_ms: provenance.approval_wait.map(millis),
            note: provenance.note.clone(),
            list_entry: None,
            network_outcome: None,
            working_directory_unverified: None,
            justification: None,
        }
    }
}

/// `destination.*`: where a connection through the proxy went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationFields {
    /// The destination as the client named it, canonical: a lowercase
    /// name without trailing dot, an IPv4 address, or `[v6]`.
    pub address: String,
    /// The name, when the client gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The address connected to (or the address the client gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub port: u16,
    /// Bytes from the destination to the client, on `network-close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// `source.*`: the sandboxed client's side of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFields {
    /// Bytes from the client to the destination, on `network-close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// `network.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFields {
    /// `http`, `https` (a `CONNECT` tunnel) or `socks5-tcp`.
    pub protocol: String,
}

/// `rule.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFields {
    /// `file:line`.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// `session.*`, on `session-start` and `session-end` records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFields {
    /// At the start: the name of its profile, if it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// At the start: its sandbox, as its grants (`sandbox=disabled` for
    /// none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandbox: Vec<String>,
    /// At the start: where its sandbox's special roots lead (`:cwd=PATH`,
    /// `:tmpdir=PATH`, `:workspace_roots=PATH`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<String>,
    /// At the end: `closed` (its owner ended it) or `signal` (its owner
    /// was signalled).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end_reason: String,
    /// The signal that ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// At the end: escalated children still running, which were killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_children: Option<usize>,
    /// At the end: the processes still in the session (its shells,
    /// escalated programs and what they started, however they left their
    /// process groups; not bubblewrap and the sandbox helper, nor the
    /// server's own children not yet executed), which were killed; absent
    /// where sessions have no cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes_killed: Option<usize>,
    /// At the end: records of the session that could not be written (its
    /// share of the log spent, a write failed), when there were any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_records: Option<u64>,
    /// At the end: how many requests it numbered (1 to this), each
    /// recorded, decided or not; one under way then may be recorded after
    /// the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub event: EventFields,
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u64>,
    /// The request whose program the requester descends from (a nested
    /// shell's command), from process ancestry; best effort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_request_id: Option<u64>,
    pub process: ProcessFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execgate: Option<DecisionFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionFields>,
    /// Environment: names only, values for configured names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Arc<Environment>>,
    /// Indexes into `process.args` whose values were replaced by
    /// `[REDACTED]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted_args: Option<Vec<usize>>,
    /// For `error` records: why the request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For connections through the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkFields>,
}

/// `event.action` of a connection's decision, written before the proxy
/// connects.
pub const NETWORK_DECISION: &str = "network-decision";
/// `event.action` of an allowed connection's end (or of a proxy request
/// that could not be read).
pub const NETWORK_CLOSE: &str = "network-close";
/// `event.action` of extra grants a command's caller asked for its shell,
/// written before the shell starts.
pub const PERMISSIONS_REQUEST: &str = "permissions-request";

/// What goes into records beyond the event itself.
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    /// Environment variables whose values are recorded (the rest: names).
    pub env_values: Vec<String>,
    /// Arguments matching any of these (globs) are redacted.
    pub redact_args: GlobSet,
    /// Sync escalation decisions to disk (`fdatasync`) before the server
    /// acts on them. Off by default: every record is written (it is in the
    /// kernel's page cache, so a crash of the server loses nothing) before
    /// its effect, and only a crash of the whole machine can lose the last
    /// moments, as with auditd's default. A sync costs about 0.4 ms per
    /// escalation on the reference machine.
    pub sync_escalations: bool,
}

impl RecordOptions {
    /// Values recorded for `env_values`; arguments matching any of
    /// `redact_args` (globs, case-insensitive: `*token*`) redacted.
    pub fn new(env_values: Vec<String>, redact_args: &[String]) -> Result<Self, crate::AuditError> {
        let mut set = globset::GlobSetBuilder::new();
        for pattern in redact_args {
            let glob = globset::GlobBuilder::new(pattern)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|error| crate::AuditError::Pattern {
                    pattern: pattern.clone(),
                    reason: error.to_string(),
                })?;
            set.add(glob);
        }
        let redact_args = set.build().map_err(|error| crate::AuditError::Pattern {
            pattern: redact_args.join(", "),
            reason: error.to_string(),
        })?;
        Ok(RecordOptions {
            env_values,
            redact_args,
            sync_escalations: false,
        })
    }
}

pub(crate) const REDACTED: &str = "[REDACTED]";

/// How the table and the summary show a redacted argument: with a blank,
/// which an argument's own text is quoted for, so that no argument reads
/// as a redaction (probe 160: `[REDACTED]` given as an argument did).
pub const REDACTED_SHOWN: &str = "<redacted argument>";

/// The identity of the file a decision was made on.
fn file_identity(identity: &execgate_escalate_server::ResolvedExecutable) -> FileIdentity {
    FileIdentity {
        requested_path: Bytes::of(identity.requested_path.as_os_str().as_bytes()),
        device: identity.device,
        inode: identity.inode,
        mode: format!("{:o}", identity.mode),
        uid: identity.uid,
        gid: identity.gid,
    }
}

/// A request's arguments (redacted where `options` say, the indices noted
/// in `record`) and working directory.
fn asked_process(
    record: &mut AuditRecord,
    argv: &[std::ffi::OsString],
    cwd: &std::path::Path,
    options: &RecordOptions,
) -> ProcessFields {
    let mut redacted = Vec::new();
    let args = argv
        .iter()
        .enumerate()
        .map(|(index, arg)| {
            // argv[0] too: the shell sets it as it is told (`exec -a`), and
            // the program is named by the executable's own fields.
            if options.redact_args.is_match(arg.to_string_lossy().as_ref()) {
                redacted.push(index);
                Bytes::Text(REDACTED.into())
            } else {
                Bytes::of(arg.as_bytes())
            }
        })
        .collect();
    if !redacted.is_empty() {
        record.redacted_args = Some(redacted);
    }
    ProcessFields {
        args: Some(args),
        args_count: Some(argv.len()),
        working_directory: Some(Bytes::of(cwd.as_os_str().as_bytes())),
        ..ProcessFields::default()
    }
}

impl AuditRecord {
    /// The record of `event`, stamped `now`.
    pub fn of(
        event: &SessionEvent,
        session_id: &str,
        now: SystemTime,
        options: &RecordOptions,
    ) -> AuditRecord {
        Self::of_with(event, session_id, now, options, |request| {
            Arc::new(environment(&request.env, options))
        })
    }

    /// [`AuditRecord::of`], with a decision's environment recorded by
    /// `environment_of` (which may give one recorded before).
    pub(crate) fn of_with(
        event: &SessionEvent,
        session_id: &str,
        now: SystemTime,
        options: &RecordOptions,
        environment_of: impl FnOnce(&Arc<ExecContext>) -> Arc<Environment>,
    ) -> AuditRecord {
        let mut record = AuditRecord {
            timestamp: humantime::format_rfc3339_nanos(now).to_string(),
            event: EventFields {
                action: "error".into(),
                outcome: "failure".into(),
            },
            session_id: session_id.to_owned(),
            request_id: None,
            parent_request_id: None,
            process: ProcessFields::default(),
            file: None,
            requester: None,
            execgate: None,
            rule: None,
            session: None,
            environment: None,
            redacted_args: None,
            error: None,
            destination: None,
            source: None,
            network: None,
        };
        match event {
            SessionEvent::Decided {
                request,
                decision,
                provenance,
            } => {
                let (name, execution, grants, reason, outcome) =
                    describe(decision, request.sandbox.as_deref());
                record.event = EventFields {
                    action: "decision".into(),
                    outcome: outcome.into(),
                };
                record.request_id = Some(request.request_id);
                record.parent_request_id = request.parent_request_id;
                record.process = ProcessFields {
                    executable: Some(Bytes::of(
                        request.executable.canonical_path.as_os_str().as_bytes(),
                    )),
                    ..asked_process(&mut record, &request.argv, &request.cwd, options)
                };
                record.file = Some(file_identity(&request.executable));
                record.requester = Some(Requester {
                    pid: request.peer.pid,
                    uid: request.peer.uid,
                });
                record.execgate = Some(DecisionFields {
                    execution,
                    grants,
                    reason,
                    working_directory_unverified: request.working_directory.as_ref().err().cloned(),
                    ..DecisionFields::by(name, provenance)
                });
                record.rule = provenance.rule.as_ref().map(|rule| RuleFields {
                    id: rule.id.clone(),
                    justification: rule.justification.clone(),
                });
                record.environment = Some(environment_of(request));
            }
            SessionEvent::Exited {
                request_id,
                pid,
                termination,
                run_time,
            } => {
                record.event = EventFields {
                    action: "exit".into(),
                    outcome: match termination {
                        Termination::Exited(0) => "success".into(),
                        _ => "failure".into(),
                    },
                };
                record.request_id = Some(*request_id);
                record.process.pid = Some(*pid);
                record.process.run_time = Some(run_time.as_secs_f64());
                match termination {
                    Termination::Exited(code) => record.process.exit_code = Some(*code),
                    Termination::Signaled {
                        signal,
                        core_dumped,
                    } => {
                        record.process.signal = Some(*signal);
                        record.process.core_dumped = Some(*core_dumped);
                    }
                }
            }
            SessionEvent::Started { request_id, pid } => {
                record.event = EventFields {
                    action: "start".into(),
                    outcome: "success".into(),
                };
                record.request_id = Some(*request_id);
                record.process.pid = Some(*pid);
            }
            SessionEvent::SpawnFailed { request_id, reason } => {
                record.request_id = Some(*request_id);
                record.error = Some(reason.clone());
            }
            SessionEvent::RequestRefused {
                request_id,
                reason,
                requester,
                asked,
            } => {
                record.request_id = *request_id;
                record.error = Some(reason.clone());
                record.requester = requester.map(|peer| Requester {
                    pid: peer.pid,
                    uid: peer.uid,
                });
                // A request read and then refused was denied: it is listed
                // with the denials, with what it asked for.
                if let Some(asked) = asked {
                    record.process = asked_process(&mut record, &asked.argv, &asked.cwd, options);
                    if let Some(identity) = &asked.executable {
                        record.process.executable =
                            Some(Bytes::of(identity.canonical_path.as_os_str().as_bytes()));
                        record.file = Some(file_identity(identity));
                    }
                    // Withdrawn while a person was asked: the rule that
                    // asked, and how long its question waited.
                    let (rule, waited) = asked.question.clone().unzip();
                    record.rule = rule.flatten().map(|rule| RuleFields {
                        id: rule.id,
                        justification: rule.justification,
                    });
                    record.execgate = Some(DecisionFields {
                        decision: "deny".into(),
                        execution: None,
                        grants: None,
                        reason: Some(reason.clone()),
                        decided_by: "server".into(),
                        approval_ms: waited.map(millis),
                        note: None,
                        list_entry: None,
                        network_outcome: None,
                        working_directory_unverified: None,
                        justification: None,
                    });
                }
            }
            SessionEvent::Ended {
                reason,
                running,
                processes,
                requests,
            } => {
                let (end_reason, signal) = match reason {
                    SessionEnd::Closed => ("closed", None),
                    SessionEnd::Signal(signal) => ("signal", Some(*signal)),
                    // A future kind of end is still recorded, by its name.
                    other => {
                        record.error = Some(format!("unrecognised end: {other:?}"));
                        ("other", None)
                    }
                };
                record.event = EventFields {
                    action: "session-end".into(),
                    outcome: if signal.is_some() {
                        "failure"
                    } else {
                        "success"
                    }
                    .into(),
                };
                record.session = Some(SessionFields {
                    end_reason: end_reason.into(),
                    signal,
                    running_children: Some(*running),
                    processes_killed: *processes,
                    requests: Some(*requests),
                    ..SessionFields::default()
                });
            }
            SessionEvent::Began {
                profile,
                sandbox,
                roots,
            } => {
                record.event = EventFields {
                    action: "session-start".into(),
                    outcome: "success".into(),
                };
                record.session = Some(SessionFields {
                    profile: profile.clone(),
                    sandbox: sandbox.clone(),
                    roots: roots.clone(),
                    ..SessionFields::default()
                });
            }
            SessionEvent::Network(event) => network(&mut record, event),
            SessionEvent::PermissionsRequested {
                argv,
                cwd,
                grants,
                granted,
                justification,
                provenance,
            } => {
                record.event = EventFields {
                    action: PERMISSIONS_REQUEST.into(),
                    outcome: if *granted { "success" } else { "failure" }.into(),
                };
                record.process = asked_process(&mut record, argv, cwd, options);
                record.execgate = Some(DecisionFields {
                    grants: Some(grants.added_grants()),
                    justification: justification.clone(),
                    ..DecisionFields::by(if *granted { "allow" } else { "deny" }, provenance)
                });
            }
            // An `error` with the command that never ran, and why.
            SessionEvent::ShellNotStarted {
                argv, cwd, reason, ..
            } => {
                record.process = asked_process(&mut record, argv, cwd, options);
                record.error = Some(format!("the command's shell did not start: {reason}"));
            }
            // A future event kind is still recorded, as an error to look at.
            other => record.error = Some(format!("unrecognised event: {other:?}")),
        }
        record
    }
}

impl AuditRecord {
    /// When it was recorded; `None` when `@timestamp` is not an RFC 3339
    /// time (at any offset).
    pub fn time(&self) -> Option<std::time::SystemTime> {
        // Written in UTC, read so first (no copy of the text); at any
        // other offset as the bounds are.
        humantime::parse_rfc3339(&self.timestamp)
            .or_else(|_| crate::Filter::time_bound(&self.timestamp))
            .ok()
    }

    /// Whether the argument at `index` (0 is `argv[0]`) was redacted:
    /// recorded as `[REDACTED]`, which an argument may also have been.
    pub fn is_redacted(&self, index: usize) -> bool {
        self.redacted_args
            .as_ref()
            .is_some_and(|redacted| redacted.contains(&index))
    }

    /// Whether this records a connection through the proxy.
    pub fn is_network(&self) -> bool {
        matches!(self.event.action.as_str(), NETWORK_DECISION | NETWORK_CLOSE)
    }

    /// Whether this records a connection the proxy refused at connect
    /// time, after an `allow` (the name resolved to a non-public address
    /// the decision did not permit).
    pub fn denied_at_connect(&self) -> bool {
        self.event.action == NETWORK_CLOSE
            && self
                .execgate
                .as_ref()
                .is_some_and(|fields| fields.network_outcome.as_deref() == Some("denied"))
    }
}

fn network(record: &mut AuditRecord, event: &NetworkEvent) {
    record.event = EventFields {
        action: match event.stage {
            NetworkStage::Decided => NETWORK_DECISION,
            NetworkStage::Closed => NETWORK_CLOSE,
        }
        .into(),
        outcome: match event.outcome {
            NetworkOutcome::Allowed => "success",
            NetworkOutcome::Denied | NetworkOutcome::Unreachable | NetworkOutcome::Refused => {
                "failure"
            }
        }
        .into(),
    };
    record.request_id = event.request_id;
    let bytes = event.bytes;
    if let Some(request) = &event.request {
        let (domain, literal) = match &request.destination {
            Destination::Name(name) => (Some(name.to_string()), None),
            Destination::Address(address) => (None, Some(address.to_string())),
        };
        record.destination = Some(DestinationFields {
            address: request.destination.to_string(),
            domain,
            ip: event.address.map(|ip| ip.to_string()).or(literal),
            port: request.port,
            bytes: bytes.map(|bytes| bytes.received),
        });
        record.network = Some(NetworkFields {
            protocol: request.protocol.to_string(),
        });
    }
    if let Some(bytes) = bytes {
        record.source = Some(SourceFields {
            bytes: Some(bytes.sent),
        });
    }
    let decided_by = event.decided_by.as_ref();
    // A close record carries the decision it followed: allow.
    let decision = match (event.stage, event.outcome, decided_by) {
        (_, _, None) => "",
        (NetworkStage::Decided, NetworkOutcome::Allowed, _) | (NetworkStage::Closed, _, _) => {
            "allow"
        }
        (NetworkStage::Decided, _, _) => "deny",
    };
    record.execgate = Some(DecisionFields {
        decision: decision.into(),
        execution: None,
        grants: None,
        reason: event.reason.clone(),
        decided_by: decided_by.map_or("", NetworkDecidedBy::as_str).into(),
        approval_ms: match decided_by {
            Some(NetworkDecidedBy::User { waited, .. }) => Some(millis(*waited)),
            _ => None,
        },
        note: None,
        list_entry: match decided_by {
            Some(NetworkDecidedBy::List { pattern }) => Some(pattern.clone()),
            _ => None,
        },
        network_outcome: Some(event.outcome.as_str().into()),
        working_directory_unverified: None,
        justification: None,
    });
    record.rule = decided_by
        .and_then(NetworkDecidedBy::rule)
        .map(|rule| RuleFields {
            id: rule.id.clone(),
            justification: rule.justification.clone(),
        });
}

type Described = (
    &'static str,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    &'static str,
);

/// What `decision` records; grants as they add to `session` (the
/// session's sandbox, when there is one).
fn describe(decision: &Decision, session: Option<&ResolvedPolicy>) -> Described {
    match decision {
        Decision::Run => ("run", None, None, None, "success"),
        Decision::Deny { reason } => ("deny", None, None, Some(reason.clone()), "failure"),
        Decision::Escalate(Execution::Unsandboxed) => (
            "escalate",
            Some("unsandboxed".into()),
            None,
            None,
            "success",
        ),
        Decision::Escalate(Execution::TurnDefault) => (
            "escalate",
            Some("turn-default".into()),
            None,
            None,
            "success",
        ),
        Decision::Escalate(Execution::Permissions(profile)) => (
            "escalate",
            Some("permissions".into()),
            Some(session.map_or_else(
                || profile.grants(),
                |session| session.granted_with(profile).grants(),
            )),
            None,
            "success",
        ),
        other => ("unknown", None, None, Some(format!("{other:?}")), "failure"),
    }
}

pub(crate) fn environment(entries: &[OsString], options: &RecordOptions) -> Environment {
    entries
        .iter()
        .filter_map(|entry| {
            let bytes = entry.as_bytes();
            let split = bytes.iter().position(|&b| b == b'=')?;
            let name = String::from_utf8_lossy(&bytes[..split]).into_owned();
            let value = options
                .env_values
                .contains(&name)
                .then(|| Bytes::of(&bytes[split + 1..]));
            Some((name, value))
        })
        .collect()
}

/// A wait in whole milliseconds, as records give it.
fn millis(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

/// An exit code as written: signed, or as a Windows record of an earlier
/// build wrote a status past `i32::MAX` (a DWORD: 0xC000013A for a Ctrl-C),
/// read as the same status, signed (probe 168: such a record was skipped).
fn signed_exit_code<'de, D>(deserializer: D) -> Result<Option<i32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let code: Option<i64> = serde::Deserialize::deserialize(deserializer)?;
    code.map(|code| {
        i32::try_from(code)
            .or_else(|_| u32::try_from(code).map(|status| i32::from_ne_bytes(status.to_ne_bytes())))
            .map_err(|_| D::Error::custom(format!("exit code {code} is out of range")))
    })
    .transpose()
}
