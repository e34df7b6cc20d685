//! Serving one request: from the private socket a hello carried to the
//! decision, and for an escalation, to the child's end.

use futures_util::FutureExt as _;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use execgate_protocol::{
    decode_client, exec_failure_status, recv_with_fds_without_waiting, ClientMessage, ExecRequest,
    ServerMessage, Termination, FORWARDED_SIGNALS, FRAME_HEADER_LEN, MAX_PASSED_FDS,
};
use execgate_sandbox::{
    AbsolutePath, Access, FsTarget, Inheritance, Launcher, NetworkPolicy, PermissionProfile,
    ReportedEnd, ResolvedPolicy,
};

use crate::network::SandboxOrigin;
use crate::own_tmpdir::OwnTmpdir;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use tokio::io::Interest;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::channel::{self, Channel, StoppedWaiting};
use crate::closer::SafeClose;
use crate::environment::{escalated_environment, ChildPlace};
use crate::events::{RefusedRequest, SessionEvent};
use crate::policy::{Decision, ExecContext, Execution, PeerCredentials, PendingQuestion, Verdict};
use crate::resolve::{
    launch_plan, open_executable, open_working_directory, sandbox_own_path, seen_by_requester,
    InterpreterLookup, LaunchPlan, OpenedExecutable,
};
use crate::session::{LiveChild, Shared};
use crate::spare;
use crate::spawner;
use crate::sys::{self, SharedFd, SpawnFailure, SpawnPlan, SpawnStage};

/// Why a conversation ended before a decision could be carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConversationError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client sent no request in time")]
    Timeout,
    #[error("malformed frame: {0}")]
    Malformed(#[from] execgate_protocol::DecodeError),
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    #[error("{0}")]
    Busy(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub(crate) async fn serve_request(
    shared: Arc<Shared>,
    private: OwnedFd,
    cancel: CancellationToken,
) {
    let received = Instant::now();
    let request_id = shared.next_request_id();
    let refusal =
        |reason: String, requester: Option<PeerCredentials>, asked: Option<Arc<RefusedRequest>>| {
            // Debug: the session's event sink reports it (core-bridge's
            // telemetry as `execgate::decision`); twice was noise.
            tracing::debug!(session = %shared.id, request_id, %reason, "request refused");
            SessionEvent::RequestRefused {
                request_id: Some(request_id),
                reason,
                requester,
                asked,
            }
        };
    let peer = match sys::peer_credentials(&private) {
        Ok(peer) => peer,
        Err(error) => {
            return shared.emit(refusal(
                format!("cannot read peer credentials: {error}"),
                None,
                None,
            ))
        }
    };
    let refuse = |reason: String| shared.emit(refusal(reason, Some(peer), None));
    // A refusal that names what was asked: its record may be large, and is
    // written as a decision's is, the request's bytes held until then.
    let refuse_asked = |reason: String, asked: RefusedRequest| {
        shared.emit_off_serving_thread(refusal(reason, Some(peer), Some(Arc::new(asked))))
    };
    let mut channel = match Channel::new(private) {
        Ok(channel) => channel,
        Err(error) => return refuse(format!("cannot serve the request socket: {error}")),
    };

    let server_uid = nix::unistd::geteuid().as_raw();
    if peer.uid != server_uid {
        let reason = format!(
            "requester uid {} is not the session's uid {server_uid}",
            peer.uid
        );
        deny(&shared, &mut channel, &cancel, &reason).await;
        return refuse(reason);
    }

    // Read before the decision: what grants it could have known of.
    let grants_seen = shared.grants_made.load(Ordering::SeqCst);
    let parent_request_id = shared
        .lineage
        .parent_of(peer.pid, || channel.socket().and_then(sys::peer_parent_pid));

    let frame = tokio::select! {
        // Numbered, so recorded: a reader of the log sees no request
        // missing (`execgate audit` names numbers with no record).
        () = cancel.cancelled() => {
            return refuse("the session ended before the request was read".into());
        }
        frame = tokio::time::timeout(
            shared.config.request_timeout,
            channel.read_frame(&shared.frames_being_read),
        ) => {
            frame.unwrap_or(Err(ConversationError::Timeout))
        }
    };
    let request_read = Instant::now();
    // The request's bytes count in the session's budget until it is
    // decided, a person's answer included, and recorded.
    let (request, held_request) = match frame.and_then(|(message, held)| match message {
        ClientMessage::Request(request) => Ok((request, held)),
        _ => Err(ConversationError::Unexpected("expected a request")),
    }) {
        Ok(request) => request,
        Err(error) => {
            let reason = match error {
                ConversationError::Busy(_) => format!("request refused: {error}"),
                _ => format!("malformed request: {error}"),
            };
            deny(&shared, &mut channel, &cancel, &reason).await;
            return refuse(reason);
        }
    };
    // A requester may be in one of the session's sandboxes once one has
    // started. What it asks for must then be a file it sees (probe 187: a
    // request written by hand escalated a program its profile hid),
    // looked up there first, so that the answer says no more of the
    // host's files than the sandbox sees. Its own `/dev` is not the
    // host's: a file there is not the one the server would find at its
    // path.
    let sandboxed = shared.requesters_may_be_sandboxed();
    // What the requester's pid names in `/proc` is the requester's only
    // while this shows it has not ended (a pid is not taken again before).
    let pinned = sandboxed
        .then(|| channel.socket().and_then(sys::peer_pidfd_if_available))
        .flatten();
    let checked = sandboxed
        .then(|| seen_by_requester(&request.path, peer.pid, pinned.as_ref()))
        .transpose()
        .and_then(|seen| Ok((seen, open_executable(&request.path)?)))
        .map_err(|error| error.to_string())
        .and_then(|(seen, opened)| {
            if shared.sandbox.is_some() {
                let canonical = &opened.resolved.canonical_path;
                if let Some(why) = sandbox_own_path(&request.path, canonical) {
                    return Err(why);
                }
            }
            match seen {
                Some(seen) if !seen.is(&opened.resolved) => Err(seen.not_this_file()),
                _ => Ok(opened),
            }
        });
    let opened = match checked {
        Ok(opened) => opened,
        Err(error) => {
            let reason = format!("cannot check the executable: {error}");
            deny(&shared, &mut channel, &cancel, &reason).await;
            let asked = RefusedRequest {
                path: request.path,
                executable: None,
                argv: request.argv,
                cwd: request.cwd,
                question: None,
            };
            return refuse_asked(reason, asked).await;
        }
    };
    let ExecRequest { argv, cwd, env, .. } = request;
    // Held from now on: an escalation starts in this directory even if
    // the path is swapped while the policy (or a person) decides.
    // Named from now on as the server found it: a name the requester
    // chose (a link to the directory) would otherwise key approvals, show
    // in questions and go to the record while the command runs elsewhere.
    let mut held_cwd = open_working_directory(&cwd, peer.pid);
    if let Some(Ok(pidfd)) = &pinned {
        // Probe 210: checked as the root's look-up is.
        if held_cwd.is_ok() && sys::has_ended(pidfd.as_fd()) {
            held_cwd = Err("the requester ended while its working directory was checked".into());
        }
    }
    // Held no longer than the checks: an escalation may run long.
    drop(pinned);
    let (held_directory, working_directory, cwd) = match held_cwd {
        Ok((held, identified)) => {
            let canonical = identified.canonical_path.clone();
            (Some(held), Ok(identified), canonical)
        }
        Err(reason) => (None, Err(reason), cwd),
    };
    let context = Arc::new(ExecContext {
        session_id: shared.id.clone(),
        request_id,
        parent_request_id,
        peer,
        executable: opened.resolved.clone(),
        argv,
        cwd,
        working_directory,
        env,
        received,
        request_read,
        sandbox: shared
            .sandbox
            .as_ref()
            .and_then(|sandbox| sandbox.resolved_default.clone()),
        escalation_env: shared.escalation_env.clone(),
        question: PendingQuestion::default(),
    });

    // What a refused request was, for its record.
    let asked = || RefusedRequest {
        path: context.executable.requested_path.clone(),
        executable: Some(context.executable.clone()),
        argv: context.argv.clone(),
        cwd: context.cwd.clone(),
        question: context.question.waiting(),
    };
    // A policy that panics decides nothing: the request is refused and
    // recorded as such, and the session serves on (probe 173: its
    // connection was closed, unanswered and unrecorded). The policy's
    // state is its own; nothing of the server's is left half-changed.
    let mut policy_deciding = std::pin::pin!(std::panic::AssertUnwindSafe(async {
        shared.config.policy.decide(&context).await
    })
    .catch_unwind());
    // Each poll runs on the thread that serves every session: one that
    // holds it long (a policy or approver that blocks) is warned of.
    let mut deciding = std::pin::pin!(std::future::poll_fn(|cx| {
        let polled = std::time::Instant::now();
        let verdict = std::future::Future::poll(policy_deciding.as_mut(), cx);
        shared.warn_if_the_decision_blocked(polled.elapsed(), &context.executable.canonical_path);
        verdict
    }));
    // Most decisions are made at the first poll; only one that waits (for a
    // person) watches the requester, whose socket must then join the
    // reactor.
    let verdict = match deciding.as_mut().now_or_never() {
        Some(verdict) => verdict,
        None => {
            // Its command was killed or its call cancelled while a person
            // was being asked (or it broke the protocol), or the session
            // ended: the question is withdrawn (the approver's future
            // dropped), an answer that comes later decides and caches
            // nothing, and the request is recorded as refused.
            let reason = tokio::select! {
                verdict = &mut deciding => Ok(verdict),
                () = cancel.cancelled() => Err("the session ended before the decision"),
                stopped = channel.stopped_waiting() => Err(match stopped {
                    StoppedWaiting::HungUp => "the requester went away before the decision",
                    StoppedWaiting::SentMore => "the requester sent more before the decision",
                }),
            };
            match reason {
                Ok(verdict) => verdict,
                // Gone at the person's own answer (a stop kills the
                // command): the decision is awaited, and recorded as made.
                // The session's end waits for it too (the stop's kill, in
                // bounded time): `execgate run` ends its session once the
                // stopped command has, and the record was "the session
                // ended before the decision" then.
                Err(_) if context.question.was_answered() => deciding.await,
                Err(reason) => {
                    return refuse_asked(reason.to_owned(), asked()).await;
                }
            }
        }
    };
    let Ok(verdict) = verdict else {
        let reason = "the policy failed (it panicked)";
        deny(&shared, &mut channel, &cancel, reason).await;
        return refuse_asked(reason.to_owned(), asked()).await;
    };
    let Verdict {
        decision,
        provenance,
    } = verdict;
    let decided = SessionEvent::Decided {
        request: context.clone(),
        decision: decision.clone(),
        provenance,
    };
    let recorded = shared.record_off_serving_thread(decided).await;
    drop(held_request);
    if let Err(error) = recorded {
        let reason = crate::events::unrecorded_denial(&error);
        deny(&shared, &mut channel, &cancel, &reason).await;
        return;
    }
    let reply = match decision {
        Decision::Run => {
            // The program keeps the wrapper's pid.
            shared.lineage.record(peer.pid, request_id);
            ServerMessage::Run
        }
        Decision::Deny { reason } => ServerMessage::Deny { reason },
        Decision::Escalate(execution) => {
            match launch_for(
                &shared,
                &execution,
                opened,
                held_directory,
                &context,
                grants_seen,
            )
            .await
            {
                Ok(launch) => {
                    let (reader, writer, _socket) = match channel.into_split() {
                        Ok(halves) => halves,
                        Err(error) => {
                            return refuse(format!("cannot serve the request socket: {error}"))
                        }
                    };
                    return escalate(&shared, &context, launch, reader, writer, cancel).await;
                }
                Err(reason) => {
                    shared.emit(SessionEvent::SpawnFailed {
                        request_id,
                        reason: reason.clone(),
                    });
                    ServerMessage::Deny { reason }
                }
            }
        }
    };
    answer(&shared, &mut channel, &cancel, &reply).await;
}

/// What an approved escalation starts from: the checked executable, the
/// held working directory and the sandbox, if any.
struct Launch {
    opened: OpenedExecutable,
    directory: OwnedFd,
    sandbox: SandboxPlan,
    /// It may do more than the session's sandbox (unsandboxed, or with
    /// grants): it must not run what the sandbox planted.
    beyond_the_sandbox: bool,
    /// [`Shared::grants_made`] as the decision found it, and what this
    /// escalation adds to it itself.
    grants_seen: u64,
    grants_own: u64,
    /// With grants, its own `TMPDIR`, removed when this is dropped.
    own_tmpdir: Option<OwnTmpdir>,
}

/// Everything an escalation needs before the wrapper hands its descriptors
/// over, or why it cannot happen: without a held working directory it
/// does not run at all (never in whatever directory the path names now).
async fn launch_for(
    shared: &Arc<Shared>,
    execution: &Execution,
    opened: OpenedExecutable,
    held_directory: Option<OwnedFd>,
    context: &ExecContext,
    grants_seen: u64,
) -> Result<Launch, String> {
    // What the sandbox's profile or a deny glob hides is a file no shell
    // there could run, though its mounts show it (a file a glob matches,
    // made after the sandbox started; review 40).
    if let Some(policy) = context.sandbox.as_deref() {
        let executable = &context.executable;
        if policy.access(&executable.canonical_path) == Access::None
            || policy.glob_denies(&executable.requested_path)
        {
            return Err(format!(
                "not escalated: the sandbox's profile hides {}: a sandboxed shell can only ask \
                 for the programs it can run",
                executable.requested_path.display()
            ));
        }
    }
    let (directory, cwd) = match (held_directory, &context.working_directory) {
        (Some(directory), Ok(checked)) => (directory, checked.canonical_path.clone()),
        (_, Err(reason)) => return Err(format!("not escalated: {reason}")),
        (None, Ok(_)) => return Err("not escalated: the working directory is not held".into()),
    };
    let (sandbox, own_tmpdir, grants_own) =
        sandbox_for(shared, execution, context.request_id, cwd).await?;
    Ok(Launch {
        opened,
        directory,
        sandbox,
        beyond_the_sandbox: *execution != Execution::TurnDefault,
        grants_seen,
        grants_own,
        own_tmpdir,
    })
}

/// Where an escalated child runs: `None` unconfined, else the launcher and
/// the resolved policy of its sandbox.
type SandboxPlan = Option<(Launcher, Arc<ResolvedPolicy>)>;

/// The sandbox an escalation in `cwd` runs in, with grants the temporary
/// directory of its own it is granted and whether its grants were new ones
/// ([`Shared::granted`]), or why it cannot run at all: a sandboxed
/// execution never falls back to running unsandboxed, and never starts in
/// a working directory its sandbox hides (where the sandbox's own check
/// would fail without saying why).
async fn sandbox_for(
    shared: &Arc<Shared>,
    execution: &Execution,
    request_id: u64,
    cwd: std::path::PathBuf,
) -> Result<(SandboxPlan, Option<OwnTmpdir>, u64), String> {
    let extra = match execution {
        Execution::Unsandboxed => return Ok((None, None, 0)),
        Execution::TurnDefault => None,
        Execution::Permissions(extra) => Some(extra.clone()),
    };
    if shared.sandbox.is_none() {
        return Err(format!(
            "{execution:?} escalations need a sandbox, and this session has none \
             configured; refusing rather than running unsandboxed"
        ));
    }
    // Resolving extra grants walks the file system (deny globs).
    let worker = shared.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        let sandbox = worker.sandbox.as_ref()?;
        let (extra, own_tmpdir) = match (extra, &worker.config.granted_tmpdirs) {
            (Some(extra), Some(root)) => match with_own_tmpdir(extra, root, request_id) {
                Ok((extra, own_tmpdir)) => (Some(extra), Some(own_tmpdir)),
                Err(reason) => return Some(Err(reason)),
            },
            (extra, _) => (extra, None),
        };
        Some(
            sandbox
                .policy_with(extra.as_ref(), own_tmpdir.as_ref().map(OwnTmpdir::path))
                .and_then(|policy| {
                    if let Some(policy) = &policy {
                        policy.check_working_directory(&cwd)?;
                    }
                    Ok(policy)
                })
                .map(|policy| policy.map(|policy| (sandbox.launcher.clone(), policy)))
                .map(|plan| (plan, own_tmpdir))
                .map_err(|error| format!("the sandbox cannot be set up: {error}")),
        )
    })
    .await
    .map_err(|error| format!("sandbox resolution failed: {error}"))?;
    match resolved {
        Some(Ok((plan, own_tmpdir))) => {
            let new_grants = match (execution, &plan) {
                (Execution::Permissions(_), Some((_, policy))) => shared.granted(policy),
                _ => 0,
            };
            Ok((plan, own_tmpdir, new_grants))
        }
        Some(Err(reason)) => Err(reason),
        None => Err("the session has no sandbox".into()),
    }
}

/// `extra` granting, besides, a temporary directory made for this
/// escalation in `root`.
fn with_own_tmpdir(
    mut extra: PermissionProfile,
    root: &Path,
    request_id: u64,
) -> Result<(PermissionProfile, OwnTmpdir), String> {
    let own_tmpdir = OwnTmpdir::create(root, request_id)?;
    if let PermissionProfile::Managed { file_system, .. } = &mut extra {
        AbsolutePath::new(own_tmpdir.path(), None)
            .and_then(|path| file_system.push(FsTarget::Path(path), Access::Write))
            .map_err(|error| format!("the sandbox cannot be set up: {error}"))?;
    }
    Ok((extra, own_tmpdir))
}

/// Answers `Deny`; a requester that has gone away misses nothing.
async fn deny(shared: &Shared, channel: &mut Channel, cancel: &CancellationToken, reason: &str) {
    let denial = ServerMessage::Deny {
        reason: reason.to_owned(),
    };
    answer(shared, channel, cancel, &denial).await;
}

/// Sends the decision, giving up after the request timeout or when the
/// session ends: a requester that does not read its answer must not keep
/// this task, and the session's shutdown, waiting.
async fn answer(
    shared: &Shared,
    channel: &mut Channel,
    cancel: &CancellationToken,
    message: &ServerMessage,
) {
    tokio::select! {
        () = cancel.cancelled() => {}
        _ = tokio::time::timeout(shared.config.request_timeout, channel.send(message)) => {}
    }
}

// Every read and write of a request socket goes through `channel`'s, which
// never wait in the kernel: the requester shares the socket's file flags.
async fn send(writer: &mut OwnedWriteHalf, message: &ServerMessage) -> io::Result<()> {
    let frame = crate::channel::encode_answer(message)?;
    channel::write_all(writer.as_ref(), &frame).await
}

/// [`send`] for at most the request timeout, and not past the session's
/// end: a requester that stops reading (and can fill the socket's buffer
/// itself, through its copy of our end) must not keep an escalation's task
/// from watching the child it started.
async fn send_within(
    shared: &Shared,
    cancel: &CancellationToken,
    writer: &mut OwnedWriteHalf,
    message: &ServerMessage,
) -> io::Result<()> {
    tokio::select! {
        () = cancel.cancelled() => Err(io::Error::other("the session ended")),
        sent = tokio::time::timeout(shared.config.request_timeout, send(writer, message)) => {
            sent.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
        }
    }
}

async fn read_frame(reader: &mut OwnedReadHalf) -> Result<ClientMessage, ConversationError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    channel::read_exact(reader.as_ref(), &mut header).await?;
    let mut body = vec![0u8; channel::small_frame_len(header)?];
    channel::read_exact(reader.as_ref(), &mut body).await?;
    Ok(decode_client(&body)?)
}

/// Reads the descriptors frame: the descriptors ride on its first bytes, so
/// the header is read with `recvmsg` and the body with plain reads. What
/// it receives is closed by the [`closer`](crate::closer) threads, however
/// this ends.
async fn read_descriptors(
    reader: &mut OwnedReadHalf,
) -> Result<Vec<(SafeClose, RawFd)>, ConversationError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    let mut fds = Vec::new();
    let stream: &UnixStream = reader.as_ref();
    while filled < header.len() {
        let received = stream
            .async_io(Interest::READABLE, || {
                recv_with_fds_without_waiting(stream.as_fd(), &mut header[filled..])
            })
            .await?;
        if received.len == 0 {
            return Err(ConversationError::Closed);
        }
        let too_many = fds.len() + received.fds.len() > MAX_PASSED_FDS;
        fds.extend(received.fds.into_iter().map(SafeClose::sent));
        if too_many {
            return Err(ConversationError::Unexpected("too many descriptors"));
        }
        // The control buffer holds as many as a message carries: what the
        // kernel held back, it could not put in this process's table
        // (probes 237, 240: this was called too many descriptors sent).
        if received.truncated {
            return Err(ConversationError::Busy(
                "the server has as many files open as its limit allows (ulimit -n), and \
                 could not take the program's descriptors; try again when fewer commands run",
            ));
        }
        filled += received.len;
    }
    let mut body = vec![0u8; channel::small_frame_len(header)?];
    channel::read_exact(reader.as_ref(), &mut body).await?;
    let ClientMessage::Descriptors(numbers) = decode_client(&body)? else {
        return Err(ConversationError::Unexpected("expected descriptors"));
    };
    if numbers.len() != fds.len() {
        return Err(ConversationError::Unexpected(
            "descriptor numbers do not match the descriptors sent",
        ));
    }
    let mut seen = numbers.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != numbers.len() {
        return Err(ConversationError::Unexpected(
            "a descriptor number appears twice",
        ));
    }
    Ok(fds.into_iter().zip(numbers).collect())
}

/// Runs an approved escalation: takes the descriptors, starts the child,
/// relays signals, reports its end. The child is killed if the wrapper goes
/// away or the session is cancelled.
async fn escalate(
    shared: &Arc<Shared>,
    context: &Arc<ExecContext>,
    mut launch: Launch,
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    cancel: CancellationToken,
) {
    let request_id = context.request_id;
    let fail = |not_started: NotStarted| {
        shared.emit(SessionEvent::SpawnFailed {
            request_id,
            reason: not_started.reason.clone(),
        });
        ServerMessage::SpawnFailed {
            reason: not_started.reason,
            exit_status: not_started.exit_status,
        }
    };
    if send_within(shared, &cancel, &mut writer, &ServerMessage::Escalate)
        .await
        .is_err()
    {
        // Recorded as decided: the record says why nothing started.
        fail(NotStarted::from(match cancel.is_cancelled() {
            true => "the session ended before the descriptors were handed over",
            false => "the requester went away before it handed its descriptors over",
        }));
        return;
    }
    let fds = tokio::select! {
        () = cancel.cancelled() => {
            fail("the session ended before the descriptors were handed over".into());
            return;
        }
        fds = tokio::time::timeout(shared.config.request_timeout, read_descriptors(&mut reader)) => {
            fds.unwrap_or(Err(ConversationError::Timeout))
        }
    };
    let fds = match fds {
        Ok(fds) => fds,
        Err(error) => {
            let reply = fail(format!("bad descriptor hand-over: {error}").into());
            let _ = send_within(shared, &cancel, &mut writer, &reply).await;
            return;
        }
    };
    // A sandbox with grants that started since the decision may have
    // written what this escalation runs, reads or finds in its PATH: the
    // checks were made without it. It runs nothing; asked again, it is
    // decided knowing of the grant.
    let grants_since = shared
        .grants_made
        .load(Ordering::SeqCst)
        .saturating_sub(launch.grants_seen);
    if launch.beyond_the_sandbox && grants_since > launch.grants_own {
        let reply = fail(
            "not started: a sandbox with grants started after this was decided and may have \
             changed what it runs; run it again"
                .into(),
        );
        let _ = send_within(shared, &cancel, &mut writer, &reply).await;
        return;
    }
    let sandboxed = launch.sandbox.is_some();
    // Kept until the child has ended, then removed.
    let own_tmpdir = launch.own_tmpdir.take();
    let own_tmpdir_path = own_tmpdir.as_ref().map(OwnTmpdir::path);
    let (plan, order, pending_link) =
        match spawn_plan(shared, context, launch, fds, own_tmpdir_path) {
            Ok(planned) => planned,
            Err(not_started) => {
                let _ = send_within(shared, &cancel, &mut writer, &fail(not_started)).await;
                return;
            }
        };
    let started = Instant::now();
    // Counted by the session's end from here until listed.
    let starting = shared.children.starting();
    // A session that ended before this starts nothing.
    if cancel.is_cancelled() {
        fail("the session ended before the child started".into());
        return;
    }
    let spare_served = order.as_ref().is_some_and(|order| order.kept);
    let taken = match order {
        Some(order) => waiting_sandbox(shared, &order)
            .await
            .map(|spare| (order.command, spare)),
        None => None,
    };
    // Whether bubblewrap set up the sandbox it was started with (not a
    // spare's: a spare that was not set up is never handed anything).
    let mut set_up_watch = None;
    // The child a spare runs, or the plan to start one with.
    let handed = match taken {
        Some((command, spare)) => {
            let spare_pid = spare.pid;
            // Recorded before it runs anything, as a started child is.
            shared.lineage.record(spare_pid, request_id);
            let holder = shared.clone();
            let handed = tokio::task::spawn_blocking(move || {
                let children = &holder.children;
                // On success the plan's descriptors close here, off the
                // reactor.
                spare::hand(spare, &plan, &command, &children.spares, &children.scope).map_err(
                    |reason| {
                        tracing::warn!(session = %holder.id, request_id, %reason, "a spare sandbox was not used");
                        holder.lineage.forget(spare_pid, request_id);
                        Box::new(plan)
                    },
                )
            })
            .await;
            match handed {
                Ok(handed) => handed,
                Err(join_error) => {
                    let reason = format!("spawn task failed: {join_error}");
                    let _ = send_within(shared, &cancel, &mut writer, &fail(reason.into())).await;
                    return;
                }
            }
        }
        None => Err(Box::new(plan)),
    };
    let (pid, pidfd, spare_control) = match handed {
        Ok(spare::Handed {
            pid,
            pidfd,
            control,
        }) => (pid, pidfd, Some(control)),
        // A session that ended meanwhile starts nothing more.
        Err(_) if cancel.is_cancelled() => {
            fail("the session ended before the child started".into());
            return;
        }
        Err(plan) => {
            let mut report = None;
            let started = match with_proxy_link(shared, context, *plan, pending_link)
                .and_then(|plan| reporting_back(plan, sandboxed))
            {
                Ok((plan, ours)) => {
                    report = ours;
                    let (plan, watch) = watching_set_up(plan, sandboxed);
                    set_up_watch = watch;
                    start_child(shared, context, plan, sandboxed).await
                }
                Err(reason) => Err(reason.into()),
            };
            match started {
                // Its sandbox reports back as a spare's does.
                Ok((pid, pidfd)) => (pid, pidfd, report),
                Err(not_started) => {
                    let _ = send_within(shared, &cancel, &mut writer, &fail(not_started)).await;
                    return;
                }
            }
        }
    };
    if spare_served {
        spare::replenish(shared);
    }
    starting.listed(
        request_id,
        LiveChild {
            pid,
            pidfd: pidfd.clone(),
            sandboxed,
            relay: Default::default(),
        },
    );
    shared.emit(SessionEvent::Started { request_id, pid });
    let mut wrapper_present = send_within(
        shared,
        &cancel,
        &mut writer,
        &ServerMessage::Started { pid },
    )
    .await
    .is_ok();
    if !wrapper_present {
        // Its stand-in went (or stopped reading) before it could hear of
        // the child: nobody waits for it, and no list shows it.
        shared.children.signal(request_id, Signal::SIGKILL);
    }

    let termination = match watch_child(
        shared,
        context,
        pidfd,
        reader,
        &mut wrapper_present,
        cancel.clone(),
    )
    .await
    {
        Ok(termination) => termination,
        Err(error) => {
            tracing::error!(session = %shared.id, request_id, %error, "lost track of an escalated child");
            shared.children.signal(request_id, Signal::SIGKILL);
            Termination::Signaled {
                signal: Signal::SIGKILL as i32,
                core_dumped: false,
            }
        }
    };
    let termination = match (termination, &spare_control) {
        (Termination::Exited(code), Some(control)) => {
            match execgate_sandbox::reported_end(control.as_fd(), code) {
                Some(ReportedEnd::Signaled {
                    signal,
                    core_dumped,
                }) => Termination::Signaled {
                    signal,
                    core_dumped,
                },
                // Its start was recorded when the spare took it: the
                // record says that nothing ran after all (probe 195).
                Some(ReportedEnd::ExecFailed { errno }) => {
                    shared.emit(SessionEvent::SpawnFailed {
                        request_id,
                        reason: format!(
                            "cannot execute {}: {}; nothing ran",
                            context.executable.canonical_path.display(),
                            nix::errno::Errno::from_raw(errno).desc()
                        ),
                    });
                    termination
                }
                Some(ReportedEnd::NotRun { why }) => {
                    shared.emit(SessionEvent::SpawnFailed {
                        request_id,
                        reason: format!("cannot run it in its sandbox: {why}; nothing ran"),
                    });
                    termination
                }
                None => termination,
            }
        }
        _ => termination,
    };
    drop(spare_control);
    // bubblewrap's 1 for a sandbox it could not set up is not the
    // command's: the command did not run, as for any escalation that
    // could not start.
    let told = match (&set_up_watch, termination) {
        (Some(watch), Termination::Exited(1)) if watch.set_up_failed() => {
            shared.emit(SessionEvent::SpawnFailed {
                request_id,
                reason: SANDBOX_NOT_SET_UP.into(),
            });
            Termination::Exited(EXIT_NOT_SET_UP)
        }
        _ => termination,
    };
    shared.emit(SessionEvent::Exited {
        request_id,
        pid,
        termination,
        run_time: started.elapsed(),
    });
    if wrapper_present {
        let _ = send_within(shared, &cancel, &mut writer, &ServerMessage::Exited(told)).await;
    }
}

/// The least descriptor number above every one of `fds`' numbers and the
/// standard streams.
fn above_every(fds: &[(SafeClose, RawFd)]) -> RawFd {
    fds.iter()
        .map(|(_, number)| *number)
        .max()
        .unwrap_or(2)
        .max(2)
        + 1
}

/// `plan` with a socket its sandbox's helper says on, as a spare does on
/// its control socket, that the command died of a signal or did not run
/// (`--report-fd`, among the helper's options); our end of it. Not for an
/// unsandboxed plan.
fn reporting_back(
    mut plan: SpawnPlan,
    sandboxed: bool,
) -> Result<(SpawnPlan, Option<OwnedFd>), String> {
    if !sandboxed {
        return Ok((plan, None));
    }
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| format!("socketpair: {errno}"))?;
    let number = above_every(&plan.fds);
    let helper_options = helper_options_at(&plan.argv, |arg| arg.as_bytes())
        .ok_or("the sandbox command line has no helper to report back")?;
    let number_text = CString::new(number.to_string()).map_err(|error| error.to_string())?;
    plan.argv.splice(
        helper_options..helper_options,
        [CString::from(c"--report-fd"), number_text],
    );
    plan.fds.push((SafeClose::own(theirs), number));
    Ok((plan, Some(ours)))
}

/// Why an escalation whose sandbox bubblewrap could not set up ran
/// nothing (bubblewrap's own line is on the command's standard error).
const SANDBOX_NOT_SET_UP: &str = "bubblewrap could not set the sandbox up, so nothing ran; if a \
     path it hides was removed or replaced as it started, run the command again; if a path it \
     grants is gone, start a new session";

/// What the requester ends with for such an escalation: as for one that
/// could not be started.
const EXIT_NOT_SET_UP: i32 = EXIT_NOT_STARTED as i32;

/// `plan` with bubblewrap told to report its set-up
/// ([`execgate_sandbox::SandboxStart`]), for a sandboxed one; unwatched
/// when it cannot be (a requester's file-size limit too small for the
/// report): bubblewrap's failure then reads as the command's status 1.
fn watching_set_up(
    mut plan: SpawnPlan,
    sandboxed: bool,
) -> (SpawnPlan, Option<execgate_sandbox::SandboxStart>) {
    if !sandboxed {
        return (plan, None);
    }
    let size_limit = plan
        .inheritance
        .as_ref()
        .map_or(libc::RLIM_INFINITY, |inheritance| {
            inheritance.file_size_limit()
        });
    let Ok((watch, bubblewraps)) =
        execgate_sandbox::SandboxStart::under_file_size_limit(size_limit)
    else {
        return (plan, None);
    };
    // Above every descriptor the plan places, its link to a proxy's too.
    let number = above_every(&plan.fds);
    let Ok(number_text) = CString::new(number.to_string()) else {
        return (plan, None);
    };
    // After bubblewrap's own path: its options come first.
    plan.argv
        .splice(1..1, [CString::from(c"--json-status-fd"), number_text]);
    plan.fds.push((SafeClose::own(bubblewraps), number));
    (plan, Some(watch))
}

/// A sandbox waiting for `order`'s command: a kept spare when one serves
/// it and is ready, else one started for it now. `None` when none could be
/// started: the escalation then starts its sandbox with the command (where
/// its errors are seen).
async fn waiting_sandbox(shared: &Arc<Shared>, order: &SandboxOrder) -> Option<spare::Spare> {
    if order.kept {
        if let Some(spare) = shared.children.spares.take() {
            return Some(spare);
        }
    }
    // A link of its own, never among the command's descriptors.
    let proxy_link = if order.policy.network() == NetworkPolicy::Limited {
        Some(escalation_link(
            shared,
            &order.policy,
            order.request_id,
            order.requester,
        )?)
    } else {
        None
    };
    let (starter, launcher, policy) =
        (shared.clone(), order.launcher.clone(), order.policy.clone());
    let requester = order.requester;
    let started = spawner::run(move || {
        spare::start_for_one(&starter, &launcher, &policy, proxy_link, requester)
    })
    .await;
    match started.and_then(|started| started) {
        Ok(spare) => Some(spare),
        Err(reason) => {
            tracing::warn!(session = %shared.id, %reason, "cannot start a sandbox ahead of its command");
            None
        }
    }
}

/// The number a limited sandbox started with its command finds its link to
/// the proxy at: opened only for that start, as a spare opens its own.
struct PendingLink {
    number: RawFd,
    policy: Arc<ResolvedPolicy>,
}

/// `plan` with its link to the proxy, if its sandbox needs one; an error
/// when it cannot be had (the sandbox would refuse to run anything).
fn with_proxy_link(
    shared: &Shared,
    context: &ExecContext,
    mut plan: SpawnPlan,
    pending: Option<PendingLink>,
) -> Result<SpawnPlan, String> {
    if let Some(pending) = pending {
        let link = escalation_link(
            shared,
            &pending.policy,
            context.request_id,
            context.peer.pid,
        )
        .ok_or("cannot link the limited sandbox to execgate's proxy; nothing was run")?;
        plan.fds.push((SafeClose::own(link), pending.number));
    }
    Ok(plan)
}

/// A new link to the proxy for one sandbox of escalation `request_id`
/// (whose `policy` is limited); `None` when none can be had.
fn escalation_link(
    shared: &Shared,
    policy: &ResolvedPolicy,
    request_id: u64,
    requester: i32,
) -> Option<OwnedFd> {
    let origin = SandboxOrigin::Escalation {
        request_id,
        requester,
    };
    crate::session::network_link(shared, policy, origin)
}

/// Starts the child `plan` describes. It is recorded as soon as it exists:
/// its own requests may arrive before this task runs again. A sandbox is
/// started on the spawner's thread, whose end bubblewrap's
/// `--die-with-parent` watches; an unsandboxed child on a blocking thread
/// (its start waits for its executable, which may sit on a slow mount, and
/// must hold up no other session).
async fn start_child(
    shared: &Arc<Shared>,
    context: &ExecContext,
    plan: SpawnPlan,
    sandboxed: bool,
) -> Result<(i32, Arc<OwnedFd>), NotStarted> {
    let request_id = context.request_id;
    let recorder = shared.clone();
    let start = move || {
        let spawned = sys::spawn(&plan);
        if let Ok(pid) = spawned {
            recorder.lineage.record(pid, request_id);
        }
        (spawned, plan)
    };
    let spawned = if sandboxed {
        let (spawned, plan) = spawner::run(start).await?;
        close_elsewhere(plan);
        spawned
    } else {
        tokio::task::spawn_blocking(move || start().0)
            .await
            .map_err(|join_error| format!("spawn task failed: {join_error}"))?
    };
    let pid = spawned.map_err(|failure| NotStarted {
        reason: describe_spawn_failure(&failure, context),
        exit_status: match failure.stage {
            SpawnStage::Exec => {
                exec_failure_status(failure.error.raw_os_error().unwrap_or(libc::ENOENT))
            }
            _ => EXIT_NOT_STARTED,
        },
    })?;
    match sys::pidfd_open(pid) {
        Ok(pidfd) => Ok((pid, Arc::new(pidfd))),
        Err(error) => {
            // Cannot watch it, so it must not run.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            shared.children.scope.untrack(pid);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Err(format!("cannot watch the child: {error}").into())
        }
    }
}

/// Why an escalation started nothing, and what its requester ends with.
struct NotStarted {
    reason: String,
    exit_status: u8,
}

/// What a requester ends with for an escalation that started nothing, but
/// for an exec that failed ([`exec_failure_status`]): a command that
/// could not be executed.
const EXIT_NOT_STARTED: u8 = 126;

impl From<String> for NotStarted {
    fn from(reason: String) -> NotStarted {
        NotStarted {
            reason,
            exit_status: EXIT_NOT_STARTED,
        }
    }
}

impl From<&str> for NotStarted {
    fn from(reason: &str) -> NotStarted {
        NotStarted::from(reason.to_owned())
    }
}

/// Drops a used plan on a blocking thread: closing what the requester
/// handed over (a file on a FUSE mount, say) can wait, and must hold up
/// neither the serving thread nor the spawner's.
fn close_elsewhere(plan: SpawnPlan) {
    drop(tokio::task::spawn_blocking(move || drop(plan)));
}

/// How a sandboxed escalation gets a sandbox that bubblewrap started
/// without the command's descriptors: what to order it, and from which
/// launcher and policy to start one.
struct SandboxOrder {
    command: spare::Command,
    request_id: u64,
    /// The process that asked ([`SandboxOrigin::Escalation`]).
    requester: i32,
    /// A kept spare of the session may serve it (`spare::serves`).
    kept: bool,
    launcher: Launcher,
    policy: Arc<ResolvedPolicy>,
}

/// The child's plan; for a sandboxed escalation, also what to order a
/// sandbox started ahead of its command (a spare), when one may run it
/// (one with a held working directory), and for a limited network the
/// link the plan's sandbox needs (see [`with_proxy_link`]).
fn spawn_plan(
    shared: &Shared,
    context: &ExecContext,
    launch: Launch,
    mut fds: Vec<(SafeClose, RawFd)>,
    granted_tmpdir: Option<&Path>,
) -> Result<(SpawnPlan, Option<SandboxOrder>, Option<PendingLink>), NotStarted> {
    shared.children.scope.check()?;
    let Launch {
        opened,
        directory,
        sandbox,
        beyond_the_sandbox,
        ..
    } = launch;
    // Numbers above every forwarded descriptor: the scripts interpreters
    // read by descriptor, then (sandboxed) the file the helper executes.
    let script_number = above_every(&fds);
    let sandboxed = sandbox.is_some();
    // A child in the session's own sandbox runs what it finds there with
    // no more than the sandbox has; one outside it or with grants must not
    // find what the sandbox planted, nor what an escalation with grants
    // could have.
    let path = if beyond_the_sandbox {
        shared.path_beyond_the_sandbox()
    } else {
        shared.config.escalation_path.clone()
    };
    let path = path.as_os_str();
    let lookup = InterpreterLookup {
        search_path: path,
        cwd: &context.cwd,
        seen_by: (sandboxed && !beyond_the_sandbox).then_some(context.peer.pid),
    };
    let mut launch =
        launch_plan(opened, &context.argv, &lookup, script_number).map_err(|error| NotStarted {
            exit_status: error.exec_status(),
            reason: error.to_string(),
        })?;
    // Above the scripts (at least one number, for a stable layout).
    let after_scripts = script_number + launch.scripts.len().max(1) as RawFd;
    for (script, number) in launch.scripts.drain(..) {
        fds.push((SafeClose::own(script), number));
    }
    let env = escalated_environment(
        &context.env,
        &ChildPlace {
            path,
            sandboxed,
            beyond_the_sandbox,
            base: &shared.config.escalation_env,
            own_tmpdir: match sandboxed {
                false => shared.config.unsandboxed_tmpdir.as_deref(),
                true => granted_tmpdir,
            },
            cwd: context
                .working_directory
                .as_ref()
                .ok()
                .map(|directory| directory.canonical_path.as_path()),
        },
    );
    let (mut order, mut pending_link) = (None, None);
    if let Some((launcher, policy)) = sandbox {
        shared.starting_a_sandbox();
        // bubblewrap starts the inner helper, which executes the checked
        // file through its descriptor, passed at a number above every
        // forwarded one.
        let exec_number = after_scripts;
        let bwrap = std::fs::File::open(launcher.bwrap())
            .map_err(|error| format!("cannot open {}: {error}", launcher.bwrap().display()))?;
        // The link to the proxy of a limited network, above that; without
        // a proxy, the helper says so and runs nothing.
        let link_number = exec_number + 1;
        let linked = policy.network() == NetworkPolicy::Limited && shared.config.network.is_some();
        let mut argv = vec![launcher.bwrap().as_os_str().to_owned()];
        argv.extend(launcher.arguments(
            &policy,
            &context.cwd,
            Some(exec_number),
            linked.then_some(link_number),
            &launch.argv,
        ));
        require_held_directory(&mut argv, context)?;
        fds.push((SafeClose::own(launch.executable), exec_number));
        let spare_may_run = fds.len() <= execgate_sandbox::MOST_DESCRIPTORS;
        if let (true, Ok(directory)) = (spare_may_run, &context.working_directory) {
            order = Some(SandboxOrder {
                command: spare::Command {
                    argv: launch.argv.clone(),
                    env: env.clone(),
                    cwd: context.cwd.clone(),
                    cwd_identity: (directory.device, directory.inode),
                    exec_fd: exec_number,
                },
                request_id: context.request_id,
                requester: context.peer.pid,
                kept: spare::serves(shared, &policy),
                launcher: launcher.clone(),
                policy: policy.clone(),
            });
        }
        if linked {
            pending_link = Some(PendingLink {
                number: link_number,
                policy: policy.clone(),
            });
        }
        launch = LaunchPlan {
            executable: bwrap.into(),
            argv,
            scripts: Vec::new(),
        };
    }
    let plan = SpawnPlan {
        executable: launch.executable,
        argv: c_strings(launch.argv)?,
        env: c_strings(env)?,
        cwd: directory,
        fds,
        niceness: shared.config.shell_niceness,
        // Its command's, so that stopping the command stops it and what
        // it starts, in any session of their own.
        cgroup: shared.children.scope.cgroup_for(context.peer.pid),
        warden_pipe: shared.children.scope.warden_pipe(),
        network: None,
        own_session: !sandboxed,
        // What the shell set for its commands (`umask 077`, `ulimit`,
        // `trap '' INT`), as the program would have inherited it.
        inheritance: Some(Box::new(Inheritance::of(context.peer.pid).map_err(
            |error| format!("cannot read the requester's umask and limits: {error}"),
        )?)),
    };
    Ok((plan, order, pending_link))
}

/// `items` as C strings, for `execve`.
pub(crate) fn c_strings(items: Vec<OsString>) -> Result<Vec<CString>, String> {
    items
        .into_iter()
        .map(|item| CString::new(item.into_vec()).map_err(|e| e.to_string()))
        .collect()
}

/// bubblewrap enters the working directory by path, inside its new view:
/// the inner helper must then find itself in the directory the decision
/// was made on (`--check . DEV:INO`), or run nothing. The check goes among
/// the helper's options ([`helper_options_at`]).
fn require_held_directory(argv: &mut Vec<OsString>, context: &ExecContext) -> Result<(), String> {
    let Ok(directory) = &context.working_directory else {
        return Err("not escalated: the working directory is not held".into());
    };
    let helper_options = helper_options_at(argv, |arg| arg.as_encoded_bytes())
        .ok_or("the sandbox command line has no helper to check the working directory")?;
    let check = [
        OsString::from("--check"),
        OsString::from("."),
        OsString::from(format!("{}:{}", directory.device, directory.inode)),
    ];
    argv.splice(helper_options..helper_options, check);
    Ok(())
}

/// Where the helper's options begin in a sandbox's command line: right
/// after the `--` that ends bubblewrap's (whose own arguments hold no
/// bare `--`: its paths are absolute) and the helper's path.
fn helper_options_at<T>(argv: &[T], bytes: impl Fn(&T) -> &[u8]) -> Option<usize> {
    argv.iter()
        .position(|arg| bytes(arg) == b"--")
        .map(|separator| separator + 2)
        .filter(|position| *position <= argv.len())
}

fn describe_spawn_failure(failure: &SpawnFailure, context: &ExecContext) -> String {
    let what = match failure.stage {
        SpawnStage::Fork => "cannot create the process".to_owned(),
        SpawnStage::ProcessGroup => "cannot create a process group".to_owned(),
        SpawnStage::Descriptors => "cannot place the descriptors".to_owned(),
        SpawnStage::Priority => "cannot lower the priority".to_owned(),
        SpawnStage::Scope => "cannot join the session's scope".to_owned(),
        SpawnStage::Network => "cannot enter the sandbox's network".to_owned(),
        SpawnStage::Limits => "cannot set the requester's limits".to_owned(),
        SpawnStage::WorkingDirectory => {
            format!("cannot change to directory {}", context.cwd.display())
        }
        SpawnStage::Exec => format!(
            "cannot execute {}",
            context.executable.canonical_path.display()
        ),
    };
    format!("{what}: {}", failure.error)
}

/// Whether a conversation's error is its stand-in going away (a stand-in
/// killed with data unread resets its socket), not a malformed frame.
fn stand_in_gone(error: &ConversationError) -> bool {
    match error {
        ConversationError::Closed => true,
        ConversationError::Io(error) => matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

/// Waits for the child's end while relaying the wrapper's signals. If the
/// wrapper goes away or the session is cancelled, the child's process group
/// is killed and the wait goes on until it is reaped.
async fn watch_child(
    shared: &Shared,
    context: &ExecContext,
    pidfd: Arc<OwnedFd>,
    mut reader: OwnedReadHalf,
    wrapper_present: &mut bool,
    cancel: CancellationToken,
) -> io::Result<Termination> {
    let request_id = context.request_id;
    let exited = sys::register_shared(SharedFd(pidfd), Interest::READABLE)?;
    // The stand-in is watched itself, not only through its socket: a
    // forged hand-over can give the child the socket's other end, which
    // then never reads as closed, and the child outlived its command with
    // nothing left to stop it but the session's end (probe 217).
    let stand_in = match sys::requester_pidfd(reader.as_ref().as_fd(), context.peer.pid) {
        Ok(pidfd) => Some(sys::register_owned(pidfd, Interest::READABLE)?),
        Err(error) => {
            shared.emit(SessionEvent::RequestRefused {
                request_id: Some(request_id),
                reason: format!(
                    "the stand-in is gone, or cannot be watched ({error}): the child was killed"
                ),
                requester: Some(context.peer),
                asked: None,
            });
            None
        }
    };
    // One that cannot be watched counts as ended at once.
    let stand_in_ended = async {
        match &stand_in {
            Some(pidfd) => pidfd.readable().await.map(drop),
            None => Ok(()),
        }
    };
    tokio::pin!(stand_in_ended);
    // Frames are read on their own task so that a half-read frame is never
    // dropped by the select below.
    let (frames_tx, mut frames) = mpsc::channel(16);
    let reader_task = tokio::spawn(async move {
        loop {
            let frame = read_frame(&mut reader).await;
            let end = frame.is_err();
            if frames_tx.send(frame).await.is_err() || end {
                return;
            }
        }
    });
    let mut killed = false;
    // Each said once per escalation: a stand-in's frames are the
    // sandbox's to send, and a flood of them filled a log at a core's
    // speed (probe 237).
    let (mut ignored_signal_said, mut unexpected_frame_said) = (false, false);
    // When an escalation that got `SIGTSTP` is stopped for sure
    // (see `Children::stop_after_tstp`); a `SIGCONT` first calls it off.
    let mut stop_due: Option<tokio::time::Instant> = None;
    let termination = async {
        loop {
            let stop_at = stop_due;
            tokio::select! {
                () = cancel.cancelled(), if !killed => {
                    shared.children.signal(request_id, Signal::SIGKILL);
                    killed = true;
                }
                () = tokio::time::sleep_until(stop_at.unwrap_or_else(tokio::time::Instant::now)), if stop_at.is_some() => {
                    stop_due = None;
                    shared.children.stop_after_tstp(request_id);
                }
                guard = exited.readable() => {
                    let mut guard = guard?;
                    match shared.children.try_reap(request_id) {
                        Some(status) => return Ok(termination_of(status)),
                        None => guard.clear_ready(),
                    }
                }
                _ = &mut stand_in_ended, if *wrapper_present => {
                    // Gone, as a stand-in whose socket closed is.
                    *wrapper_present = false;
                    shared.children.signal(request_id, Signal::SIGKILL);
                    killed = true;
                }
                frame = frames.recv(), if *wrapper_present => match frame {
                    Some(Ok(ClientMessage::Signal(signo))) => {
                        match Signal::try_from(signo) {
                            Ok(signal) if FORWARDED_SIGNALS.contains(&signo) => {
                                shared.children.signal(request_id, signal);
                                match signal {
                                    Signal::SIGTSTP => {
                                        stop_due = Some(tokio::time::Instant::now() + STOP_AFTER_TSTP);
                                    }
                                    Signal::SIGCONT => stop_due = None,
                                    _ => {}
                                }
                            }
                            _ if !ignored_signal_said => {
                                ignored_signal_said = true;
                                tracing::warn!(
                                    session = %shared.id, request_id, signo,
                                    "ignoring a signal no stand-in forwards (said once for this escalation)"
                                );
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) if !unexpected_frame_said => {
                        unexpected_frame_said = true;
                        tracing::warn!(
                            session = %shared.id, request_id,
                            "ignoring an unexpected frame (said once for this escalation)"
                        );
                    }
                    Some(Ok(_)) => {}
                    ended @ (Some(Err(_)) | None) => {
                        // Not a stand-in that went away: said, as any
                        // malformed conversation is (probe 140: the child
                        // was killed and no record said why).
                        if let Some(Err(error)) = &ended {
                            if !stand_in_gone(error) {
                                shared.emit(SessionEvent::RequestRefused {
                                    request_id: Some(request_id),
                                    reason: format!(
                                        "the stand-in's conversation broke while the child ran \
                                         ({error}): the child was killed"
                                    ),
                                    requester: Some(context.peer),
                                    asked: None,
                                });
                            }
                        }
                        // Either way nobody waits for this child.
                        *wrapper_present = false;
                        shared.children.signal(request_id, Signal::SIGKILL);
                        killed = true;
                    }
                },
            }
        }
    }
    .await;
    // The reader's half is dropped before this returns, so that the
    // request socket's last reference is the one its conversation retires
    // (see `channel::RequestSocket`), never a half dropped later, whenever
    // the runtime gets to the cancelled task.
    reader_task.abort();
    let _ = reader_task.await;
    termination
}

/// How long an escalation has to act on `SIGTSTP` (a program
/// that handles it restores the terminal) before it is stopped anyway.
const STOP_AFTER_TSTP: Duration = Duration::from_millis(100);

fn termination_of(status: WaitStatus) -> Termination {
    match status {
        WaitStatus::Exited(_, code) => Termination::Exited(code),
        WaitStatus::Signaled(_, signal, core_dumped) => Termination::Signaled {
            signal: signal as i32,
            core_dumped,
        },
        // waitid(WEXITED) reports nothing else for a reaped child.
        _ => Termination::Signaled {
            signal: Signal::SIGKILL as i32,
            core_dumped: false,
        },
    }
}
