//! `execgate mcp`: an MCP server over stdio whose tools run long-lived
//! processes (unified exec) in one execgate session: the same config file,
//! profiles, rules, skills and audit log as `execgate run`.
//!
//! Approvals become MCP elicitation requests when the client supports
//! them (the program, its arguments, the directory, the rule and its
//! justification, the grants; the answer maps to once, session, stop (the
//! whole command) or decline); a client without elicitation is declined.
//! `--approval approve|deny` answers alone, without asking the client.
//! Network destinations a `limited` sandbox asks for are elicited the same
//! way (host, protocol, port; allow once or for the session, deny once or
//! for the session).
//!
//! It must never run a command outside the session's sandbox and policy,
//! write anything but protocol messages to stdout, exit on a bad request,
//! or leave a process running once the client has gone (stdin at its end)
//! or SIGTERM, SIGINT or SIGHUP has come.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use execgate_core_bridge::{
    ApprovalAnswer, ApprovalFuture, ApprovalReason, ApprovalRequest, ApproveAll, Approver,
    CommandStatus, DenyAll, ExecError, ExecOptions, ExecResponse, ExecStdio,
    NetworkApprovalRequest, ProcessId, ProcessState, ShellSession,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema, EnumSchema};
use rmcp::schemars::JsonSchema;
use rmcp::service::{ElicitationMode, Peer, RequestContext, RoleServer};
use rmcp::{tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::json;

use crate::ending::{EndSignals, TerminalInterrupt};
use crate::{ApprovalMode, SessionArgs};

#[derive(clap::Args)]
pub struct McpArgs {
    #[command(flatten)]
    session: SessionArgs,
}

/// The client's elicitation failed (or went unanswered): nobody answered.
fn elicitation_lost() -> ApprovalAnswer {
    ApprovalAnswer::Unanswered {
        reason: "the client's elicitation request failed".into(),
    }
}

/// Resolves once the client can no longer read what the server writes
/// (the read end of standard output closed): it has gone, even if
/// standard input is still held open (by a process it left behind, say).
async fn client_stopped_reading() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let gone = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
    // A thread of its own, not one of tokio's blocking pool: held there
    // for good, it made the pool queue other work behind it when no thread
    // could start, and that work never ran (probe 237).
    let (told, watched) = tokio::sync::oneshot::channel();
    let watch = move || loop {
        let stdout = std::io::stdout();
        // No event asked for: only an error or a hang-up wakes it (a
        // regular file or a terminal never does).
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_)
                if fds[0]
                    .revents()
                    .is_some_and(|events| events.intersects(gone)) =>
            {
                return true
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            // Cannot watch: the client's end is left to stdin's.
            Err(_) => return false,
        }
    };
    let started = std::thread::Builder::new()
        .name("execgate-client-watch".into())
        .spawn(move || told.send(watch()));
    // Without the thread, the client's end is left to stdin's too.
    if started.is_err() || !matches!(watched.await, Ok(true)) {
        std::future::pending::<()>().await;
    }
}

/// Serves MCP on stdin and stdout until the client goes or a signal ends
/// the session.
pub fn serve(args: McpArgs) -> Result<i32> {
    let peer: Arc<OnceLock<Peer<RoleServer>>> = Arc::default();
    // Never on a terminal: stdin is the client's. `ask` (the default) is
    // the person behind the client, by elicitation, and a client without
    // it is declined; `deny` and `approve`, said outright, answer alone,
    // so that no client overrules an operator's `deny`.
    let approver: Arc<dyn Approver> = match args.session.approval {
        Some(ApprovalMode::Approve) => {
            // Before this release, a client with elicitation was still asked.
            crate::stderr::line(
                "execgate mcp: warning: --approval approve: every approval (prompt rules, \
                 skills' permissions, network questions) is granted without asking the client",
            );
            Arc::new(ApproveAll)
        }
        Some(ApprovalMode::Deny) => Arc::new(DenyAll),
        Some(ApprovalMode::Ask) | None => Arc::new(ElicitingApprover { peer: peer.clone() }),
    };
    let (session_config, _labels) = args.session.session_config_approved_by(approver)?;
    let runtime = execgate_core_bridge::server::keep_blocking_threads(
        tokio::runtime::Builder::new_multi_thread().enable_all(),
    )
    .context("cannot start the async runtime")?;
    let code = runtime.block_on(async move {
        // Before the session, whose first record may pass a file size limit.
        let mut signals = EndSignals::new(TerminalInterrupt::Ends)?;
        let session = Arc::new(ShellSession::start(session_config)?);
        crate::warn_if_cgroup_refused_by_a_limit();
        let server = ExecServer {
            session: session.clone(),
            tool_router: ExecServer::tool_router(),
        };
        let (input, output) = rmcp::transport::stdio_pipes();
        let input = UntilEnd::new(input);
        let input_ended = input.ended.clone();
        let service = tokio::select! {
            service = server.serve((input, output)) => {
                service.context("the MCP handshake failed")?
            }
            signal = signals.recv() => {
                session.terminate(signal);
                return Ok::<i32, anyhow::Error>(128 + signal);
            }
        };
        let _ = peer.set(service.peer().clone());
        let cancel = service.cancellation_token();
        let code = tokio::select! {
            _ = service.waiting() => 0,
            // rmcp lets calls in flight run up to 5 s more after the input
            // ends: the client has gone, and so do the session's processes,
            // now.
            () = input_ended.cancelled() => {
                cancel.cancel();
                0
            }
            () = client_stopped_reading() => {
                cancel.cancel();
                0
            }
            signal = signals.recv() => {
                cancel.cancel();
                session.terminate(signal);
                128 + signal
            }
        };
        // Every process of the session goes, escalated children included:
        // all at once, and a signal meanwhile ends the session by force
        // (a probe's host sent SIGTERM while the kills went one by one,
        // and nothing heard it).
        let mut kills = tokio::task::JoinSet::new();
        for process in session.list() {
            let session = session.clone();
            kills.spawn(async move {
                let _ = session.kill(process.process_id).await;
            });
        }
        let code = tokio::select! {
            () = async { while kills.join_next().await.is_some() {} } => code,
            signal = signals.recv() => {
                session.terminate(signal);
                kills.shutdown().await;
                128 + signal
            }
        };
        match Arc::try_unwrap(session) {
            Ok(session) => session.shutdown().await,
            // A tool call (or the service, winding down) still holds it:
            // end it now, without waiting for its children to be reaped
            // (the warden removes what is left once this process has
            // gone). Recorded as what it is, a close, unless a signal
            // ended it above (a probe found "signal 9" recorded, sent by
            // no one).
            Err(session) => session.cancel(),
        }
        Ok(code)
    });
    // A read still pending on stdin must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Standard input, which says when it has ended (the client has gone, or
/// asks the server to stop, as MCP's stdio transport has it), and hands
/// the transport whole lines it can read, and only those. A line it
/// cannot take is dropped here, and said on stderr: one too long for it
/// (a probe's client waited forever for its answer), or one it cannot read
/// (not UTF-8, not JSON, nested deeper than it reads, a lone surrogate in
/// a string). Given one, the transport held back the next message until
/// more input came, and sometimes lost it (a probe's).
struct UntilEnd<R> {
    input: R,
    ended: tokio_util::sync::CancellationToken,
    /// The line being read, while it is no longer than the transport takes.
    line: Vec<u8>,
    /// Bytes of the line being read so far (more than `line` holds once
    /// it is too long).
    line_length: usize,
    /// Whole lines checked, with their newlines, not yet handed on.
    ready: Vec<u8>,
    /// How much of `ready` has been handed on.
    handed: usize,
    /// The input has ended: it is not read again.
    at_end: bool,
    /// The client's `initialize` request has been handed on.
    initialize_seen: bool,
}

/// Why a message was dropped unanswered.
enum Dropped {
    TooLong,
    Unreadable(String),
    /// A notification or a response before the `initialize` request,
    /// which would end the transport's handshake, and the server with it.
    BeforeInitialize,
}

impl<R> UntilEnd<R> {
    fn new(input: R) -> UntilEnd<R> {
        UntilEnd {
            input,
            ended: tokio_util::sync::CancellationToken::new(),
            line: Vec::new(),
            line_length: 0,
            ready: Vec::new(),
            handed: 0,
            at_end: false,
            initialize_seen: false,
        }
    }

    /// Takes `read` into the lines being read: whole lines that can be
    /// read go to `ready`; the others are dropped, and returned. The
    /// transport takes a line of up to `limit` bytes, its newline
    /// included.
    fn take_in(&mut self, read: &[u8], limit: usize) -> Vec<Dropped> {
        let mut dropped = Vec::new();
        let mut rest = read;
        loop {
            let newline = rest.iter().position(|&byte| byte == b'\n');
            let part = &rest[..newline.unwrap_or(rest.len())];
            let before = self.line_length;
            self.line_length = before.saturating_add(part.len());
            if self.line_length < limit {
                self.line.extend_from_slice(part);
            } else if before < limit {
                dropped.push(Dropped::TooLong);
                self.line = Vec::new();
            }
            let Some(at) = newline else {
                return dropped;
            };
            self.end_line(&mut dropped, limit);
            rest = &rest[at + 1..];
        }
    }

    /// The line being read has ended: it is handed on, or dropped.
    fn end_line(&mut self, dropped: &mut Vec<Dropped>, limit: usize) {
        if self.line_length < limit {
            match unreadable(&self.line) {
                Some(Unreadable::Blank) => {}
                Some(Unreadable::Because(reason)) => dropped.push(Dropped::Unreadable(reason)),
                None if !self.initialize_seen && !self.may_come_first() => {
                    dropped.push(Dropped::BeforeInitialize);
                }
                None => {
                    self.ready.extend_from_slice(&self.line);
                    self.ready.push(b'\n');
                }
            }
        }
        if self.line.capacity() > 1 << 20 {
            self.line = Vec::new();
        }
        self.line.clear();
        self.line_length = 0;
    }

    /// Whether the line being read may come before the client's
    /// `initialize` request: anything but a notification or a response
    /// (an object without an `id`, or without a `method`), which the
    /// transport's handshake takes for a broken one, ending the server (a
    /// probe's). A request (`ping`, or one that is not JSON-RPC) gets its
    /// answer, an error where it is one. Notes the `initialize` request:
    /// one the transport takes as such. A malformed one (no `clientInfo`)
    /// is answered with an error while the transport still waits for
    /// `initialize` (probe 215: the notification after it passed, and
    /// ended the server).
    fn may_come_first(&mut self) -> bool {
        use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
        #[derive(serde::Deserialize)]
        struct Head {
            id: Option<serde::de::IgnoredAny>,
            method: Option<serde_json::Value>,
        }
        let line = without_byte_order_mark(&self.line);
        let Ok(head) = serde_json::from_slice::<Head>(line) else {
            // Not an object: not a message the handshake takes either.
            return true;
        };
        match (head.id, head.method) {
            (Some(_), Some(method)) => {
                // An `initialize` the transport cannot take too (review
                // 216: malformed, with the version in `_meta`, it started
                // that lifecycle).
                self.without_inline_lifecycle();
                let line = without_byte_order_mark(&self.line);
                self.initialize_seen = method == "initialize"
                    && matches!(
                        serde_json::from_slice::<ClientJsonRpcMessage>(line),
                        Ok(JsonRpcMessage::Request(request))
                            if matches!(request.request, ClientRequest::InitializeRequest(_))
                    );
                true
            }
            _ => false,
        }
    }

    /// The line being read, a request before `initialize`, without the
    /// protocol version its `_meta` may carry, which starts a lifecycle
    /// with no handshake in the transport (a draft of MCP's): tools ran,
    /// and every later notification was dropped here, a cancel with them,
    /// so a cancelled command ran to its end (probe 215). Without it, the
    /// transport answers with an error and still waits for `initialize`.
    fn without_inline_lifecycle(&mut self) {
        const INLINE_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
        let line = without_byte_order_mark(&self.line);
        let Ok(mut message) = serde_json::from_slice::<serde_json::Value>(line) else {
            return;
        };
        let meta = message
            .pointer_mut("/params/_meta")
            .and_then(serde_json::Value::as_object_mut);
        if meta.and_then(|meta| meta.remove(INLINE_VERSION)).is_some() {
            if let Ok(rewritten) = serde_json::to_vec(&message) {
                self.line = rewritten;
            }
        }
    }
}

enum Unreadable {
    /// Nothing but blanks: skipped without a word.
    Blank,
    Because(String),
}

/// `line` without the byte order mark the transport skips (Windows
/// clients send one).
fn without_byte_order_mark(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// Why the transport cannot read `line` as a message, if it cannot: what
/// it decodes into holds UTF-8 strings and has serde_json's nesting limit.
/// It skips a byte order mark first (Windows clients send one), and so
/// does this; the line is walked, not built.
fn unreadable(line: &[u8]) -> Option<Unreadable> {
    let line = without_byte_order_mark(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Some(Unreadable::Blank);
    }
    match std::str::from_utf8(line) {
        Err(error) => Some(Unreadable::Because(format!("it is not UTF-8 ({error})"))),
        Ok(text) => {
            let walked = serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| ());
            // Walking does not check that a string's escapes make
            // characters (a lone surrogate, `\ud800`), nor how deep the
            // value nests (serde_json builds at most 128 levels): those are
            // found by building the value, only for a line that may hold
            // them.
            let built = || serde_json::from_str::<serde_json::Value>(text).map(|_| ());
            let read = match walked {
                Ok(()) if text.contains("\\u") || nests_deep(text.as_bytes()) => built(),
                walked => walked,
            };
            read.err().map(|error| {
                Unreadable::Because(format!("it is not JSON the transport reads ({error})"))
            })
        }
    }
}

/// Whether `json` opens 64 or more arrays or objects inside one another
/// (outside strings): deep enough to be worth building.
fn nests_deep(json: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                if depth >= 64 {
                    return true;
                }
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            (false, _, _) => {}
        }
    }
    false
}

fn say_dropped(dropped: Vec<Dropped>, limit: usize) {
    for dropped in dropped {
        crate::stderr::line(&match dropped {
            Dropped::TooLong => format!(
                "execgate mcp: a message longer than {} MiB was dropped unanswered: the MCP \
                 transport takes lines up to that size; send less at a time",
                limit >> 20
            ),
            Dropped::Unreadable(reason) => format!(
                "execgate mcp: a message was dropped unanswered: {reason}; its caller gets no \
                 reply"
            ),
            Dropped::BeforeInitialize => "execgate mcp: a notification or response before the \
                 client's initialize request was dropped: the handshake starts with initialize"
                .to_owned(),
        });
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for UntilEnd<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if buffer.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let limit = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;
        let mut chunk = [0u8; 16 << 10];
        // Until there is a whole line to hand on, or the input ends (an
        // empty read would tell the transport it has).
        while self.handed == self.ready.len() {
            // What one long message grew stays only as long as it is used.
            if self.ready.capacity() > 1 << 20 {
                self.ready = Vec::new();
            }
            self.ready.clear();
            self.handed = 0;
            if self.at_end {
                return Poll::Ready(Ok(()));
            }
            let mut read = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut self.input).poll_read(context, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // A last line without its newline is no message: the
                    // client went in the middle of it.
                    if self.line_length > 0 {
                        crate::stderr::line(
                            "execgate mcp: the input ended in the middle of a message, which \
                             was dropped",
                        );
                    }
                    self.at_end = true;
                    self.ended.cancel();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    let filled = read.filled().len();
                    let dropped = self.take_in(&chunk[..filled], limit);
                    say_dropped(dropped, limit);
                }
            }
        }
        let UntilEnd { ready, handed, .. } = &mut *self;
        let amount = buffer.remaining().min(ready.len() - *handed);
        buffer.put_slice(&ready[*handed..*handed + amount]);
        *handed += amount;
        Poll::Ready(Ok(()))
    }
}

/// An approval's text is shown whole up to this many characters; past it
/// (arguments the sandboxed command chose, padded so that the directory
/// and the execution would come megabytes later), as the terminal prompt
/// first shows it: long arguments cut in the middle, the middle ones
/// counted.
const WHOLE_DESCRIPTION: usize = 4000;

fn elicited_description(request: &ApprovalRequest) -> String {
    use crate::prompt::{describe, Length};
    let whole = describe(request, Length::Whole).join("\n");
    if whole.chars().count() <= WHOLE_DESCRIPTION {
        return whole;
    }
    format!(
        "{}\n(shortened: the whole command line is {} characters; decline unless the part \
         shown is enough to decide)",
        describe(request, Length::Cut).join("\n"),
        whole.chars().count()
    )
}

/// Asks the MCP client (elicitation); a client without it is declined
/// ([`DenyAll`]).
struct ElicitingApprover {
    peer: Arc<OnceLock<Peer<RoleServer>>>,
}

/// The elicitation form: one choice, `grant`, saying what "session"
/// covers for this request (a skill's approval covers its script whatever
/// the arguments).
fn approval_form(reason: &ApprovalReason) -> Result<ElicitationSchema, &'static str> {
    let description = match reason {
        ApprovalReason::Skill { .. } => {
            "once: this run, and identical ones that wait for this answer with it; session: this \
             script of the skill, with any arguments, for the rest of the session; stop: refuse, \
             and stop the whole command that asked"
        }
        _ => {
            "once: this run, and identical ones that wait for this answer with it; session: this \
             exact command for the rest of the session; stop: refuse, and stop the whole command \
             that asked"
        }
    };
    let grant = EnumSchema::builder(vec!["once".into(), "session".into(), "stop".into()])
        .description(description)
        .build();
    ElicitationSchema::builder()
        .required_enum_schema("grant", grant)
        .build()
}

/// What an accepted form answered.
#[derive(Debug, Deserialize)]
struct ApprovalForm {
    grant: Grant,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Grant {
    Once,
    Session,
    /// The terminal prompt's `!`: the command that asked is stopped whole.
    Stop,
}

/// The network elicitation form: one choice, `decision`.
fn network_form() -> Result<ElicitationSchema, &'static str> {
    let decision = EnumSchema::builder(vec![
        "allow-once".into(),
        "allow-session".into(),
        "deny".into(),
        "deny-session".into(),
    ])
    .description(
        "allow-once: this connection only; allow-session: this host, protocol and port for the \
         rest of the session; deny: this connection; deny-session: this host on every port, \
         without asking again",
    )
    .build();
    ElicitationSchema::builder()
        .required_enum_schema("decision", decision)
        .build()
}

/// What an accepted network form answered.
#[derive(Debug, Deserialize)]
struct NetworkForm {
    decision: NetworkChoice,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum NetworkChoice {
    AllowOnce,
    AllowSession,
    Deny,
    DenySession,
}

/// The answer an elicitation result gives to a network question: only an
/// accepted form with a readable choice allows.
fn network_answer(action: ElicitationAction, content: Option<serde_json::Value>) -> ApprovalAnswer {
    let form = content.and_then(|content| serde_json::from_value::<NetworkForm>(content).ok());
    match (action, form) {
        (ElicitationAction::Accept, Some(NetworkForm { decision })) => match decision {
            NetworkChoice::AllowOnce => ApprovalAnswer::ApproveOnce,
            NetworkChoice::AllowSession => ApprovalAnswer::ApproveForSession,
            NetworkChoice::Deny => ApprovalAnswer::Decline,
            NetworkChoice::DenySession => ApprovalAnswer::DeclineForSession,
        },
        (ElicitationAction::Accept, None) => unreadable_acceptance(
            "decision = \"allow-once\", \"allow-session\", \"deny\" or \"deny-session\"",
        ),
        // Declined or cancelled.
        _ => ApprovalAnswer::Decline,
    }
}

/// An accepted form whose content is not the form's: nobody's answer (not
/// a user's refusal), and it allows nothing.
fn unreadable_acceptance(expected: &str) -> ApprovalAnswer {
    ApprovalAnswer::Unanswered {
        reason: format!(
            "the client accepted the form without a readable answer (expected {expected})"
        ),
    }
}

impl ElicitingApprover {
    /// The peer, when it can answer form elicitations.
    fn eliciting_peer(&self) -> Option<&Peer<RoleServer>> {
        self.peer.get().filter(|peer| {
            peer.supported_elicitation_modes()
                .contains(&ElicitationMode::Form)
        })
    }

    /// Sends one form; `None` (and a line on stderr) when it could not be
    /// asked.
    async fn elicit(
        peer: &Peer<RoleServer>,
        message: String,
        form: Result<ElicitationSchema, &'static str>,
    ) -> Option<rmcp::model::ElicitResult> {
        let asked = match form {
            Ok(requested_schema) => Self::ask_withdrawably(
                peer,
                ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message,
                    requested_schema,
                },
            )
            .await
            .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_owned()),
        };
        match asked {
            Ok(result) => Some(result),
            // Lost: not approved either, and the log says why.
            Err(error) => {
                eprintln!("execgate mcp: the approval could not be asked ({error}): declined");
                None
            }
        }
    }
}

impl ElicitingApprover {
    /// Sends the elicitation; if this future is dropped before the answer
    /// (the server stopped deciding: the command's call was cancelled),
    /// tells the client the question is withdrawn
    /// (`notifications/cancelled`), so that it stops asking a person.
    async fn ask_withdrawably(
        peer: &Peer<RoleServer>,
        params: ElicitRequestParams,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ServiceError> {
        use rmcp::model::{ClientResult, ElicitRequest, ServerRequest};
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        let handle = peer
            .send_cancellable_request(request, rmcp::service::PeerRequestOptions::no_options())
            .await?;
        let mut withdrawn = Withdrawn {
            peer: peer.clone(),
            id: Some(handle.id.clone()),
        };
        let answered = handle.await_response().await;
        withdrawn.id = None;
        match answered? {
            ClientResult::ElicitResult(result) => Ok(result),
            _ => Err(rmcp::ServiceError::UnexpectedResponse),
        }
    }
}

/// Withdraws an elicitation still unanswered when dropped.
struct Withdrawn {
    peer: Peer<RoleServer>,
    id: Option<rmcp::model::RequestId>,
}

impl Drop for Withdrawn {
    fn drop(&mut self) {
        use rmcp::model::{CancelledNotification, CancelledNotificationParam};
        let Some(id) = self.id.take() else {
            return;
        };
        let notification = CancelledNotification::new(CancelledNotificationParam::new(
            Some(id),
            Some("the command that asked has ended".into()),
        ));
        let peer = self.peer.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = peer.send_notification(notification.into()).await;
            });
        }
    }
}

impl Approver for ElicitingApprover {
    /// A person answers through the client's elicitation; without it,
    /// nobody is asked.
    fn asks_a_person(&self) -> bool {
        self.eliciting_peer().is_some()
    }

    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(async move {
            let Some(peer) = self.eliciting_peer() else {
                return DenyAll.approve(request).await;
            };
            let message = format!(
                "execgate asks before this runs:\n{}\nAccept with grant = once or session, or \
                 stop to end the whole command; decline to refuse.",
                elicited_description(request)
            );
            let Some(answer) = Self::elicit(peer, message, approval_form(&request.reason)).await
            else {
                return elicitation_lost();
            };
            let form = answer
                .content
                .and_then(|content| serde_json::from_value::<ApprovalForm>(content).ok());
            match (answer.action, form) {
                (ElicitationAction::Accept, Some(ApprovalForm { grant: Grant::Once })) => {
                    ApprovalAnswer::ApproveOnce
                }
                (
                    ElicitationAction::Accept,
                    Some(ApprovalForm {
                        grant: Grant::Session,
                    }),
                ) => ApprovalAnswer::ApproveForSession,
                (ElicitationAction::Accept, Some(ApprovalForm { grant: Grant::Stop })) => {
                    ApprovalAnswer::Abort
                }
                (ElicitationAction::Accept, None) => {
                    unreadable_acceptance("grant = \"once\", \"session\" or \"stop\"")
                }
                // Declined or cancelled.
                _ => ApprovalAnswer::Decline,
            }
        })
    }

    fn approve_network<'a>(&'a self, request: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(async move {
            let Some(peer) = self.eliciting_peer() else {
                return DenyAll.approve_network(request).await;
            };
            let message = format!(
                "execgate asks before a sandboxed command connects:\n{}\nAccept with decision = \
                 allow-once, allow-session, deny or deny-session; decline to deny.",
                crate::prompt::describe_network(request).join("\n")
            );
            match Self::elicit(peer, message, network_form()).await {
                Some(answer) => network_answer(answer.action, answer.content),
                None => elicitation_lost(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe's client sent a message over the transport's limit and
    /// waited forever: it is dropped unanswered, and now said so, once for
    /// each such line, however it arrives in reads; the lines that can be
    /// read are handed on whole, and blank ones are skipped.
    #[test]
    fn lines_past_the_transports_limit_are_counted_once_each() {
        let mut input = UntilEnd::new(());
        // (read, lines it makes pass a limit of 5 bytes, the newline's
        // included)
        let reads: [(&[u8], usize); 7] = [
            (b"123\n", 0),
            (b"1234", 0),
            (b"5", 1),
            (b"678\n12345678\n12", 1),
            (b"345678", 1),
            (b"9\n42\n", 0),
            (b"\n \n7", 0),
        ];
        for (read, passed) in reads {
            let dropped = input.take_in(read, 5);
            assert!(dropped
                .iter()
                .all(|dropped| matches!(dropped, Dropped::TooLong)));
            assert_eq!(dropped.len(), passed, "{read:?}");
        }
        assert_eq!(input.ready, b"123\n42\n");
        assert_eq!(input.line, b"7");
        // The transport's limit counts the newline (a review).
        let mut input = UntilEnd::new(());
        assert_eq!(input.take_in(b"1234\n", 4).len(), 1);
        assert_eq!(input.take_in(b"123\n", 4).len(), 0);
        assert_eq!(input.ready, b"123\n");
    }

    /// Probe 215: a request before `initialize` whose `_meta` carries a
    /// protocol version started a lifecycle of the transport's with no
    /// handshake. The version is taken out, the rest left as it was.
    #[test]
    fn a_request_before_initialize_starts_no_lifecycle_of_its_own() {
        let mut input = UntilEnd::new(());
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exec_command","arguments":{"cmd":"true"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        let dropped = input.take_in(&[line.as_slice(), b"\n"].concat(), 1 << 20);
        assert!(dropped.is_empty());
        let passed: serde_json::Value = serde_json::from_slice(&input.ready).unwrap();
        assert_eq!(
            passed["params"]["_meta"],
            json!({"io.modelcontextprotocol/clientCapabilities": {}})
        );
        assert_eq!(passed["params"]["arguments"]["cmd"], "true");
        assert!(!input.initialize_seen);
        // Review 216: a malformed `initialize` too.
        let mut input = UntilEnd::new(());
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        input.take_in(&[line.as_slice(), b"\n"].concat(), 1 << 20);
        let passed: serde_json::Value = serde_json::from_slice(&input.ready).unwrap();
        assert_eq!(
            passed["params"]["_meta"],
            json!({"io.modelcontextprotocol/clientCapabilities": {}})
        );
        assert!(!input.initialize_seen);
    }

    /// Probe 134: a notification or a response before `initialize` ended
    /// the server (the transport's handshake failed on it). They are
    /// dropped until the `initialize` request; requests pass (they are
    /// answered), and after it everything does.
    #[test]
    fn only_requests_come_before_initialize() {
        let mut input = UntilEnd::new(());
        let lines: [(&[u8], bool); 9] = [
            (
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                false,
            ),
            (br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false),
            (br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#, true),
            (b"42", true),
            // Probe 215: one the transport cannot take as its handshake
            // (no `clientInfo`) is answered with an error, and it still
            // waits for `initialize`.
            (
                br#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{}}"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                true,
            ),
            (br#"{"jsonrpc":"2.0","id":4,"result":{}}"#, true),
        ];
        for (line, passes) in lines {
            let before = input.ready.len();
            let dropped = input.take_in(&[line, b"\n"].concat(), 1 << 20);
            assert_eq!(
                input.ready.len() > before,
                passes,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(
                dropped
                    .iter()
                    .any(|dropped| matches!(dropped, Dropped::BeforeInitialize)),
                !passes
            );
        }
    }

    /// What the transport reads and what it does not, as the filter
    /// judges it: a byte order mark is skipped, as rmcp skips it (a
    /// review); a lone surrogate is found without building the value.
    #[test]
    fn lines_are_judged_as_the_transport_reads_them() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let shallow = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(unreadable(deep.as_bytes()).is_some());
        assert!(unreadable(shallow.as_bytes()).is_none());
        let cases: [(&[u8], bool); 6] = [
            (
                b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}",
                true,
            ),
            (br#"{"jsonrpc":"2.0","method":"ping","id":1}"#, true),
            (br#"{"x":"\ud800"}"#, false),
            (b"{\"x\":\"\xff\"}", false),
            (b"{\"x\":", false),
            (b"  ", false),
        ];
        for (line, readable) in cases {
            assert_eq!(unreadable(line).is_none(), readable, "{line:?}");
        }
    }

    /// A probe made the question 1.8 MB, the directory and the execution
    /// after all of it.
    #[test]
    fn a_long_command_line_is_elicited_shortened_with_every_fact() {
        let padding = "x".repeat(100_000);
        let mut argv: Vec<std::ffi::OsString> = vec!["touch".into()];
        argv.extend(std::iter::repeat_n(padding.clone().into(), 18));
        let request = ApprovalRequest {
            program: "/usr/bin/touch".into(),
            argv,
            cwd: "/work".into(),
            reason: ApprovalReason::RequestedPermissions {
                justification: None,
            },
            execution: execgate_core_bridge::server::Execution::Unsandboxed,
            permissions: None,
        };
        let text = elicited_description(&request);
        assert!(
            text.chars().count() < 3 * WHOLE_DESCRIPTION,
            "{}",
            text.len()
        );
        for fact in [
            "in       /work",
            "as       unsandboxed",
            "2 arguments not shown",
        ] {
            assert!(text.contains(fact), "{fact}: {text}");
        }
        assert!(text.contains("the whole command line is 1800"), "{text}");
        let short = ApprovalRequest {
            argv: vec!["touch".into(), "a".into()],
            ..request
        };
        assert!(!elicited_description(&short).contains("shortened"));
    }

    #[test]
    fn network_elicitation_answers_map_and_fail_closed() {
        let accepted = |decision: &str| {
            network_answer(
                ElicitationAction::Accept,
                Some(json!({ "decision": decision })),
            )
        };
        assert_eq!(accepted("allow-once"), ApprovalAnswer::ApproveOnce);
        assert_eq!(accepted("allow-session"), ApprovalAnswer::ApproveForSession);
        assert_eq!(accepted("deny"), ApprovalAnswer::Decline);
        assert_eq!(accepted("deny-session"), ApprovalAnswer::DeclineForSession);
        // Accepted, but not the form's answer (a probe sent the exec
        // form's `grant`): nobody's answer, not the user's refusal.
        for unreadable in [
            Some(json!({ "decision": "always" })),
            Some(json!({ "grant": "once" })),
            None,
        ] {
            assert!(matches!(
                network_answer(ElicitationAction::Accept, unreadable),
                ApprovalAnswer::Unanswered { .. }
            ));
        }
        for action in [ElicitationAction::Decline, ElicitationAction::Cancel] {
            assert_eq!(
                network_answer(action, Some(json!({ "decision": "allow-once" }))),
                ApprovalAnswer::Decline
            );
        }
        assert!(network_form().is_ok());
    }
}

#[derive(Clone)]
struct ExecServer {
    session: Arc<ShellSession>,
    tool_router: ToolRouter<ExecServer>,
}

// An argument not known here is refused, not dropped: `cwd` for
// `workdir` would run the command where the caller did not mean.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct ExecCommandArgs {
    /// The command line, run by zsh (`zsh -c`) in the session's sandbox.
    cmd: String,
    /// Working directory: absolute, or relative to the session's.
    workdir: Option<String>,
    /// Run on a pseudo-terminal (needed to write to stdin later).
    tty: Option<bool>,
    /// How long to wait for output before answering (250-30000 ms;
    /// default 10000).
    yield_time_ms: Option<u64>,
    /// Bytes of the command's output returned at most (cut in the
    /// middle); default 65536, at most 1048576. A byte that is not UTF-8
    /// comes back as U+FFFD, three bytes in the reply (and `not_utf8`
    /// says so).
    max_output_bytes: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct WriteStdinArgs {
    process_id: u32,
    /// Typed into the terminal ("\u0003" is Ctrl-C); empty: only read.
    chars: Option<String>,
    /// How long to wait for output (250-30000 ms; default 250).
    yield_time_ms: Option<u64>,
    /// Bytes of the process's output returned at most, as for
    /// exec_command; default 65536, at most 1048576.
    max_output_bytes: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct ProcessArgs {
    process_id: u32,
}

/// A tool that takes no arguments refuses any.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct NoArgs {}

const DEFAULT_MAX_OUTPUT: usize = 64 * 1024;

/// The most of a call's output returned, whatever it asks: a byte takes
/// up to six in the reply (a control byte's JSON escape), and the output
/// comes twice (text and structured content), so that a reply stays under
/// the 16 MiB line an rmcp client reads (probe 215: 25 MB, which such a
/// client never finished reading).
const MOST_OUTPUT: usize = 1 << 20;

/// The output a call asked for (`max_output_bytes`), within bounds.
fn output_cap(asked: Option<usize>) -> usize {
    asked.unwrap_or(DEFAULT_MAX_OUTPUT).min(MOST_OUTPUT)
}

#[tool_router]
impl ExecServer {
    #[tool(
        description = "Run a command in execgate's sandboxed shell (every program the shell \
                       executes is decided by policy). Answers with its output once it exits, or after \
                       yield_time_ms with a process_id to poll or type into with write_stdin."
    )]
    async fn exec_command(
        &self,
        Parameters(args): Parameters<ExecCommandArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let defaults = ExecOptions::default();
        let options = ExecOptions {
            workdir: args.workdir.map(Into::into),
            stdio: match args.tty {
                Some(true) => ExecStdio::Terminal,
                Some(false) | None => ExecStdio::Pipes,
            },
            yield_time: args
                .yield_time_ms
                .map_or(defaults.yield_time, Duration::from_millis),
            max_output_bytes: output_cap(args.max_output_bytes),
            ..defaults
        };
        // A cancelled call (`notifications/cancelled`) drops the command's
        // call, which kills it (`ShellSession::exec_command`); the answer
        // goes nowhere.
        tokio::select! {
            response = self.session.exec_command(&args.cmd, options) => answer(response),
            () = context.ct.cancelled() => CallToolResult::error(vec![ContentBlock::text(
                "execgate: cancelled: the command was killed",
            )]),
        }
    }

    #[tool(
        description = "Type chars into a process started with tty = true (empty: only read \
                       its new output), then answer as exec_command does."
    )]
    async fn write_stdin(
        &self,
        Parameters(args): Parameters<WriteStdinArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let chars = args.chars.unwrap_or_default();
        let yield_time = Duration::from_millis(args.yield_time_ms.unwrap_or(250));
        // A cancelled poll types all its input, then stops waiting before
        // it takes what it would answer (probe 159: the output and the exit
        // status went to an answer nobody read; review 34c: dropped, the
        // call could cut its input short): the process, which the client
        // knows by its id, runs on, and the next poll gets them.
        answer(
            self.session
                .write_stdin_unless_cancelled(
                    ProcessId(args.process_id),
                    chars.as_bytes(),
                    yield_time,
                    output_cap(args.max_output_bytes),
                    &context.ct,
                )
                .await,
        )
    }

    #[tool(
        description = "Kill a process and everything it started, escalated programs and what \
                       left its process group (setsid) included, where the session has cgroups."
    )]
    async fn kill_process(&self, Parameters(args): Parameters<ProcessArgs>) -> CallToolResult {
        let process_id = ProcessId(args.process_id);
        match self.session.kill(process_id).await {
            Ok(()) => {
                CallToolResult::structured(json!({ "process_id": process_id.0, "killed": true }))
            }
            Err(error) => tool_error(&error),
        }
    }

    #[tool(
        description = "List the session's processes: id, command, start, running (and whether \
                       waiting on an approval) or exit status."
    )]
    async fn list_processes(&self, Parameters(NoArgs {}): Parameters<NoArgs>) -> CallToolResult {
        let processes: Vec<serde_json::Value> = self
            .session
            .list()
            .into_iter()
            .map(|info| {
                let started = info
                    .started
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                let (running, exit_code) = match info.state {
                    ProcessState::Running => (true, None),
                    ProcessState::Exited(status) => (false, Some(status.code())),
                };
                json!({
                    "process_id": info.process_id.0,
                    "command": info.command,
                    "started_unix": started,
                    "running": running,
                    "awaiting_approval": info.awaiting_approval,
                    "exit_code": exit_code,
                })
            })
            .collect();
        CallToolResult::structured(json!({ "processes": processes }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ExecServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("execgate", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .with_instructions(
                "Runs shell commands in execgate's sandbox; every program they execute is \
                 decided by the session's rules. Long-lived processes keep running between \
                 calls: poll them with write_stdin.",
            )
    }

    // Approvals are asked as elicitation requests while a tool call waits:
    // the revisions that still allow requests from the server.
    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }
}

/// A tool result: text for people, structured content for programs.
fn answer(result: Result<ExecResponse, ExecError>) -> CallToolResult {
    let response = match result {
        Ok(response) => response,
        Err(error) => return tool_error(&error),
    };
    let output = response.output();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    let mut structured = json!({
        "process_id": response.process_id().0,
        "stdout": stdout,
        "stderr": stderr,
        "omitted_bytes": output.omitted_bytes,
    });
    // Bytes that are not UTF-8 are shown as U+FFFD: say so, for a client
    // would otherwise take the text for the output (a probe's binary
    // output came back 125 characters replaced, unflagged).
    let replaced = [&output.stdout, &output.stderr]
        .iter()
        .any(|bytes| std::str::from_utf8(bytes).is_err());
    if replaced {
        structured["not_utf8"] = json!(true);
    }
    let (summary, wall_time, denied) = match &response {
        ExecResponse::Exited(exited) => {
            structured["running"] = json!(false);
            structured["exit_code"] = json!(exited.status.code());
            // The wrapper's refusal: a tool error, its reason in the text.
            let denial = stderr
                .lines()
                .chain(stdout.lines())
                .find(|line| line.starts_with("execgate: denied: "))
                .map(str::to_owned)
                .filter(|_| exited.status.code() == 126);
            // Ended for a connection a person denied: say so, as `run` does.
            let network = exited
                .network_denied
                .as_ref()
                .map(|denied| format!("execgate: {denied}"));
            let mut summary = match exited.status {
                CommandStatus::Signaled(signal) => {
                    structured["signal"] = json!(signal);
                    format!(
                        "killed by signal {signal} (status {})",
                        exited.status.code()
                    )
                }
                CommandStatus::Exited(code) => format!("exited with status {code}"),
            };
            if exited.aborted {
                structured["aborted"] = json!(true);
                summary = format!("aborted at a question, and {summary}");
            }
            (summary, exited.wall_time, network.or(denial))
        }
        ExecResponse::Running(running) => {
            structured["running"] = json!(true);
            structured["awaiting_approval"] = json!(running.awaiting_approval);
            (
                format!(
                    "still running as process {}{}",
                    running.process_id,
                    if running.awaiting_approval {
                        " (waiting for an approval)"
                    } else {
                        ""
                    }
                ),
                running.wall_time,
                None,
            )
        }
    };
    structured["wall_time_ms"] = json!(wall_time.as_millis() as u64);
    // The call's own time (probe 188: "exited after 0 ms" read as the run
    // time of a process a poll found ended).
    let mut text = format!("{summary}; this call took {} ms", wall_time.as_millis());
    if output.omitted_bytes > 0 {
        text.push_str(&format!("; {} bytes omitted", output.omitted_bytes));
    }
    if let Some(denial) = &denied {
        text = format!("{denial}\n{text}");
    }
    for (name, stream) in [("stdout", &stdout), ("stderr", &stderr)] {
        if !stream.is_empty() {
            text.push_str(&format!("\n--- {name}\n{stream}"));
        }
    }
    let mut result = CallToolResult::structured(structured);
    result.content = vec![ContentBlock::text(text)];
    if denied.is_some() {
        result.is_error = Some(true);
    }
    result
}

fn tool_error(error: &ExecError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("execgate: {error}"))])
}
