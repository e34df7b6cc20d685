//! One conversation with the escalation server.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use execgate_protocol::{
    decode_server, encode_client, read_frame, send_all, send_hello, send_without_waiting,
    ClientMessage, DecodeError, ExecRequest, FrameIoError, ServerMessage, WrapperArgs,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::sched_yield;
use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::time::TimeVal;

use crate::sys;

/// How long the wrapper waits for the server's answers before it gives up
/// and runs nothing. The server answers long before this even while a
/// person is asked to approve (it times approvals out itself); the limit
/// exists so that a wedged server cannot hang the shell forever.
const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Overrides [`DEFAULT_REPLY_TIMEOUT`], in milliseconds. Shortening it can
/// only make commands fail sooner, never run.
const ENV_REPLY_TIMEOUT_MS: &str = "EXECGATE_REPLY_TIMEOUT_MS";

/// How long the wrapper polls for the decision before it sleeps on it. On
/// a virtual machine a CPU that has gone idle takes about 0.1 ms to wake
/// again, as long as a `Run` decision takes; polling keeps this CPU awake
/// for the answer. Each turn yields the CPU to anything else runnable, and
/// the shell that started the wrapper is waiting for it anyway. Bounded in
/// time, not in turns: on a busy machine a turn lasts as long as the other
/// tasks run, and a poller that stayed runnable for long would compete
/// with the server for the CPU it needs to answer (P2's decision p99 went
/// from 1 to 2-5 ms with a bound of 1200 turns).
const DECISION_POLL: Duration = Duration::from_micros(400);

/// How long a send refused for the descriptors in flight is tried again.
/// The kernel counts every descriptor of this user that sits in a Unix
/// socket, unread, against the sender's `RLIMIT_NOFILE` (`ETOOMANYREFS`):
/// a burst of hellos the server has not read yet clears within a
/// millisecond or so; descriptors a program holds unread on a socket of its
/// own never do, and the command does not run.
const IN_FLIGHT_PATIENCE: Duration = Duration::from_millis(100);

/// Everything that stops the wrapper from getting an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WrapperError {
    #[error(
        "no session socket: this shell was started without an execgate session \
         (EXECGATE_SOCKET_FD missing or invalid)"
    )]
    NoSession,
    #[error("descriptor {fd} is not an open session socket")]
    SessionSocketClosed { fd: i32 },
    #[error("cannot reach the escalation server: {0}")]
    Unreachable(#[source] io::Error),
    /// `ETOOMANYREFS`, for longer than [`IN_FLIGHT_PATIENCE`].
    #[error(
        "cannot hand the request to the escalation server: more descriptors of this \
         user are in flight over Unix sockets than this process's descriptor limit \
         (ulimit -n) allows"
    )]
    TooManyInFlight,
    #[error("the request is too large to send: {0}")]
    RequestTooLarge(#[source] DecodeError),
    #[error("the escalation server did not answer in time")]
    Timeout,
    #[error("the escalation server closed the connection without an answer")]
    NoAnswer,
    #[error("malformed answer from the escalation server: {0}")]
    Malformed(String),
    #[error("unexpected answer from the escalation server: {0}")]
    UnexpectedReply(String),
    #[error("lost the escalation server: {0}")]
    Lost(#[source] io::Error),
    /// What failed was the stand-in's own set-up, not the server (a low
    /// `ulimit -n`, for one).
    #[error("the stand-in cannot {step}: {error}")]
    StandIn {
        step: &'static str,
        #[source]
        error: io::Error,
    },
}

impl WrapperError {
    /// A failure of the stand-in's own `step`.
    pub(crate) fn stand_in(step: &'static str) -> impl FnOnce(io::Error) -> WrapperError {
        move |error| WrapperError::StandIn { step, error }
    }
}

/// The private socket of one request.
pub(crate) struct Conversation {
    socket: OwnedFd,
}

impl Conversation {
    /// Takes over a conversation another process opened and got the
    /// decision on (the patched zsh's child, on `Escalate`).
    pub(crate) fn adopt(socket: OwnedFd) -> Self {
        Conversation { socket }
    }

    pub(crate) fn into_socket(self) -> OwnedFd {
        self.socket
    }

    pub(crate) fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }

    pub(crate) fn send(&self, message: &ClientMessage) -> Result<(), WrapperError> {
        let frame = encode_client(message).map_err(WrapperError::RequestTooLarge)?;
        send_all(self.socket.as_fd(), &frame).map_err(WrapperError::Lost)
    }

    pub(crate) fn receive(&self) -> Result<ServerMessage, WrapperError> {
        let body = read_frame(self.socket.as_fd()).map_err(|error| match error {
            FrameIoError::Closed => WrapperError::NoAnswer,
            FrameIoError::Io(error) if is_timeout(&error) => WrapperError::Timeout,
            FrameIoError::Io(error) => WrapperError::Lost(error),
            other => WrapperError::Malformed(other.to_string()),
        })?;
        decode_server(&body).map_err(|error| WrapperError::Malformed(error.to_string()))
    }

    /// Returns when an answer is waiting or `limit` has passed.
    fn poll_briefly(&self, limit: Duration) {
        let start = sys::monotonic_now();
        while sys::monotonic_now().saturating_sub(start) < limit {
            let mut ready = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            if poll(&mut ready, PollTimeout::ZERO) != Ok(0) {
                return;
            }
            let _ = sched_yield();
        }
    }

    /// After the child started, answers may take as long as the child runs.
    pub(crate) fn wait_without_timeout(&self) -> Result<(), WrapperError> {
        setsockopt(&self.socket, sockopt::ReceiveTimeout, &TimeVal::new(0, 0))
            .map_err(|errno| WrapperError::Lost(errno.into()))
    }
}

/// Opens a conversation, sends the request and reads the decision.
pub(crate) fn ask(args: &WrapperArgs) -> Result<(Conversation, ServerMessage), WrapperError> {
    let request = ExecRequest {
        path: args.path.clone(),
        argv: args.argv.clone(),
        cwd: std::env::current_dir().unwrap_or_default(),
        env: sys::environment(),
    };
    let frame =
        encode_client(&ClientMessage::Request(request)).map_err(WrapperError::RequestTooLarge)?;
    let timeout = std::env::var_os(ENV_REPLY_TIMEOUT_MS);
    ask_for(args.socket_fd, frame, reply_timeout(timeout.as_deref()))
}

/// The reply timeout the environment `env` sets (its last setting), for a
/// request asked on behalf of a command that is not this process.
pub(crate) fn reply_timeout_in<'a>(env: impl Iterator<Item = &'a [u8]>) -> Duration {
    // No `format!` for "NAME=": its machinery would be paged in by every
    // forked child that asks.
    let setting = env
        .filter_map(|entry| {
            entry
                .strip_prefix(ENV_REPLY_TIMEOUT_MS.as_bytes())?
                .strip_prefix(b"=")
        })
        .last();
    reply_timeout(setting.map(OsStr::from_bytes))
}

/// [`ask`] for a request the caller encoded (`frame`, header included):
/// the patched zsh's child encodes its own, before it executes anything.
pub(crate) fn ask_for(
    socket_fd: Option<RawFd>,
    frame: Vec<u8>,
    reply_timeout: Duration,
) -> Result<(Conversation, ServerMessage), WrapperError> {
    let session = socket_fd.ok_or(WrapperError::NoSession)?;
    let session =
        sys::borrow_open_fd(session).ok_or(WrapperError::SessionSocketClosed { fd: session })?;

    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| WrapperError::Unreachable(errno.into()))?;
    let timeout = TimeVal::new(
        reply_timeout.as_secs() as _,
        reply_timeout.subsec_micros() as _,
    );
    setsockopt(&mine, sockopt::ReceiveTimeout, &timeout)
        .map_err(|errno| WrapperError::Unreachable(errno.into()))?;
    // The request goes into the private socket before the hello announces
    // it: the server then finds all of it (unless it exceeds the socket's
    // buffer) the moment it takes the socket, however long this process
    // waits for a CPU in between, as it does behind many busy shells.
    let early = send_without_waiting(mine.as_fd(), &frame).map_err(WrapperError::Unreachable)?;
    send_past_descriptors_in_flight(
        || send_hello(session, theirs.as_fd()),
        |error| match error.raw_os_error() {
            Some(libc::ENOTSOCK) | Some(libc::EBADF) => WrapperError::SessionSocketClosed {
                fd: socket_fd.unwrap_or(-1),
            },
            _ if is_timeout(&error) => WrapperError::Timeout,
            _ => WrapperError::Unreachable(error),
        },
    )?;
    drop(theirs);

    let conversation = Conversation { socket: mine };
    let sent = send_all(conversation.socket(), &frame[early..]).map_err(WrapperError::Lost);
    if sent.is_ok() {
        conversation.poll_briefly(DECISION_POLL);
    }
    // The server may refuse a peer before reading its request and close
    // (a different uid, say): show that reason rather than the broken pipe.
    match (sent, conversation.receive()) {
        (Ok(()), decision) => Ok((conversation, decision?)),
        (Err(_), Ok(denial @ ServerMessage::Deny { .. })) => Ok((conversation, denial)),
        (Err(error), _) => Err(error),
    }
}

/// The reply timeout `EXECGATE_REPLY_TIMEOUT_MS` sets, if it is set.
fn reply_timeout(setting: Option<&OsStr>) -> Duration {
    setting
        .and_then(|ms| ms.to_str())
        .and_then(|ms| ms.parse().ok())
        // 0 would mean no timeout at all to the socket: the shortest is 1 ms.
        .map_or(DEFAULT_REPLY_TIMEOUT, |ms: u64| {
            Duration::from_millis(ms.max(1))
        })
}

/// `send`, tried again for up to [`IN_FLIGHT_PATIENCE`] while the kernel
/// refuses it for the descriptors in flight, then
/// [`WrapperError::TooManyInFlight`]; any other failure as `failed` says.
pub(crate) fn send_past_descriptors_in_flight(
    mut send: impl FnMut() -> io::Result<()>,
    failed: impl FnOnce(io::Error) -> WrapperError,
) -> Result<(), WrapperError> {
    const PAUSE: Duration = Duration::from_millis(2);
    let start = sys::monotonic_now();
    // Counted as well as timed: a clock that does not move (a seccomp
    // policy of someone else's that fails `clock_gettime`) ends it too.
    let mut tries = IN_FLIGHT_PATIENCE.as_millis() / PAUSE.as_millis();
    loop {
        match send() {
            Err(error)
                if error.raw_os_error() == Some(libc::ETOOMANYREFS)
                    && tries > 0
                    && sys::monotonic_now().saturating_sub(start) < IN_FLIGHT_PATIENCE =>
            {
                tries -= 1;
                std::thread::sleep(PAUSE);
            }
            Err(error) if error.raw_os_error() == Some(libc::ETOOMANYREFS) => {
                return Err(WrapperError::TooManyInFlight)
            }
            result => return result.map_err(failed),
        }
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
