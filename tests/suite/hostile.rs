//! The escalation server under hostile input: 100,000 malformed, truncated,
//! oversized and out-of-order requests and descriptor floods through a real
//! session socket. The server must deny and record every one, keep no
//! descriptor it was handed, and still serve the real shell afterwards.
//!
//! Counting descriptors is a process-wide measurement, so the test re-runs
//! itself alone in a process of its own (the other tests of this binary
//! open and close descriptors on their own threads).

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use execgate_audit::{read_records, AuditLog, RecordOptions, Rotation, SessionAudit};
use execgate_escalate_server::{Decision, SessionConfig, SessionEvent};
use execgate_protocol::{
    decode_client, decode_server, encode_client, read_frame, send_all, send_with_fds,
    ClientMessage, ExecRequest, FrameIoError, ServerMessage, FRAME_HEADER_LEN, HELLO,
    MAX_FRAME_LEN, MAX_PASSED_FDS,
};
use nix::errno::Errno;
use nix::sys::socket::{
    setsockopt, shutdown, socket, socketpair, sockopt, AddressFamily, Shutdown, SockFlag, SockType,
};
use nix::sys::time::TimeVal;

use super::*;

/// Requests in the flood, the silent ones included.
const REQUESTS: usize = 100_000;
/// Clients that open a request and never send a byte: the server must time
/// them out, not wait for them.
const SILENT: usize = 200;
/// Threads sending the flood (the server's own threads need the cores too).
const CLIENT_THREADS: usize = 3;
/// Set in the process that runs the flood.
const ALONE: &str = "EXECGATE_TEST_HOSTILE_ALONE";
/// The program the test policy escalates: its requests reach the
/// descriptor hand-over, where the flood then misbehaves.
const ESCALATED: &str = "/usr/bin/true";

#[test]
fn a_flood_of_hostile_requests_is_denied_recorded_and_leaks_no_descriptor() {
    if std::env::var_os(ALONE).is_some() {
        flood();
        return;
    }
    let _alone = super::DESCRIPTORS_IN_FLIGHT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name =
        "suite::hostile::a_flood_of_hostile_requests_is_denied_recorded_and_leaks_no_descriptor";
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the flood did not run: {stdout}"
    );
    // What the flood measured, for the log.
    for line in stdout
        .lines()
        .filter_map(|line| line.split_once("hostile: "))
    {
        println!("hostile: {}", line.1);
    }
}

/// One kind of bad request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    // Bad hellos on the session socket: refused before any conversation.
    HelloWithoutDescriptor,
    HelloWithTwoDescriptors,
    HelloWithHundredsOfDescriptors,
    BadMagic,
    ShortMagic,
    OversizedDatagram,
    EmptyDatagram,
    DatagramSocketAttached,
    FileAttached,
    // A good hello, then a bad conversation: answered `Deny`.
    GarbageTag,
    TruncatedRequest,
    LengthAtU32Max,
    LengthJustOverTheLimit,
    LongBodyPromisedNeverSent,
    TrailingBytes,
    SignalFirst,
    DescriptorsFirstWithHundredsAttached,
    NothingSent,
    RandomBytes,
    EmptyArgv,
    NulInPath,
    MissingProgram,
    RelativePath,
    HeaderDribbledThenGone,
    // Conversations nobody can be answered on.
    PeerAlreadyGone,
    UnconnectedSocket,
    // A good request for an escalated program, then a bad hand-over:
    // answered `Escalate`, then `SpawnFailed`; nothing starts.
    FewerNumbersThanDescriptors,
    HundredsOfDescriptorsOnEveryByte,
    DuplicateNumbers,
    NegativeNumber,
    RequestAgain,
    SignalInsteadOfDescriptors,
    GoneAfterTheRequest,
    TruncatedHandOver,
}

const KINDS: [Hostile; 34] = [
    Hostile::HelloWithoutDescriptor,
    Hostile::HelloWithTwoDescriptors,
    Hostile::HelloWithHundredsOfDescriptors,
    Hostile::BadMagic,
    Hostile::ShortMagic,
    Hostile::OversizedDatagram,
    Hostile::EmptyDatagram,
    Hostile::DatagramSocketAttached,
    Hostile::FileAttached,
    Hostile::GarbageTag,
    Hostile::TruncatedRequest,
    Hostile::LengthAtU32Max,
    Hostile::LengthJustOverTheLimit,
    Hostile::LongBodyPromisedNeverSent,
    Hostile::TrailingBytes,
    Hostile::SignalFirst,
    Hostile::DescriptorsFirstWithHundredsAttached,
    Hostile::NothingSent,
    Hostile::RandomBytes,
    Hostile::EmptyArgv,
    Hostile::NulInPath,
    Hostile::MissingProgram,
    Hostile::RelativePath,
    Hostile::HeaderDribbledThenGone,
    Hostile::PeerAlreadyGone,
    Hostile::UnconnectedSocket,
    Hostile::FewerNumbersThanDescriptors,
    Hostile::HundredsOfDescriptorsOnEveryByte,
    Hostile::DuplicateNumbers,
    Hostile::NegativeNumber,
    Hostile::RequestAgain,
    Hostile::SignalInsteadOfDescriptors,
    Hostile::GoneAfterTheRequest,
    Hostile::TruncatedHandOver,
];

/// How far a request gets, and so what the server must answer and record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Refused at the hello: a `RequestRefused` without a request id.
    Hello,
    /// Refused in the conversation: `Deny`, and a `RequestRefused` with an
    /// id.
    Conversation { answerable: bool },
    /// Decided `Escalate`, then refused at the hand-over: `SpawnFailed`.
    HandOver,
}

impl Hostile {
    fn reach(self) -> Reach {
        match self {
            Hostile::HelloWithoutDescriptor
            | Hostile::HelloWithTwoDescriptors
            | Hostile::HelloWithHundredsOfDescriptors
            | Hostile::BadMagic
            | Hostile::ShortMagic
            | Hostile::OversizedDatagram
            | Hostile::EmptyDatagram
            | Hostile::DatagramSocketAttached
            | Hostile::FileAttached => Reach::Hello,
            Hostile::GarbageTag
            | Hostile::TruncatedRequest
            | Hostile::LengthAtU32Max
            | Hostile::LengthJustOverTheLimit
            | Hostile::LongBodyPromisedNeverSent
            | Hostile::TrailingBytes
            | Hostile::SignalFirst
            | Hostile::DescriptorsFirstWithHundredsAttached
            | Hostile::NothingSent
            | Hostile::RandomBytes
            | Hostile::EmptyArgv
            | Hostile::NulInPath
            | Hostile::MissingProgram
            | Hostile::RelativePath
            | Hostile::HeaderDribbledThenGone => Reach::Conversation { answerable: true },
            Hostile::PeerAlreadyGone | Hostile::UnconnectedSocket => {
                Reach::Conversation { answerable: false }
            }
            Hostile::FewerNumbersThanDescriptors
            | Hostile::HundredsOfDescriptorsOnEveryByte
            | Hostile::DuplicateNumbers
            | Hostile::NegativeNumber
            | Hostile::RequestAgain
            | Hostile::SignalInsteadOfDescriptors
            | Hostile::GoneAfterTheRequest
            | Hostile::TruncatedHandOver => Reach::HandOver,
        }
    }
}

/// The kind of the `index`th request (after the silent ones).
fn kind_of(index: usize) -> Hostile {
    KINDS[index % KINDS.len()]
}

fn request_frame(path: &str, argv: &[&str]) -> Vec<u8> {
    // The requester's real directory: the server holds it by descriptor
    // and refuses to escalate from a claimed one.
    request_frame_in(path, argv, std::env::current_dir().unwrap())
}

fn request_frame_in(path: &str, argv: &[&str], cwd: PathBuf) -> Vec<u8> {
    encode_client(&ClientMessage::Request(ExecRequest {
        path: path.into(),
        argv: argv.iter().map(|arg| os(arg)).collect(),
        cwd,
        env: vec![os("PATH=/usr/bin:/bin")],
    }))
    .unwrap()
}

fn frame(message: &ClientMessage) -> Vec<u8> {
    encode_client(message).unwrap()
}

/// A small deterministic generator: the flood is the same on every run.
fn noise(seed: usize, len: usize) -> Vec<u8> {
    let mut state = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A hello datagram; the server may already have refused an earlier part
/// of the same request, so send errors on private sockets are ignored, but
/// the session socket must always take a datagram.
fn hello(session: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) {
    send_with_fds(session, data, fds).unwrap();
}

/// Opens a conversation: a good hello whose private socket is returned.
fn open(session: BorrowedFd<'_>) -> OwnedFd {
    let (mine, theirs) = stream_pair();
    hello(session, HELLO, &[theirs.as_fd()]);
    // Replies wait at most this long: a missing one fails, never hangs.
    setsockopt(&mine, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).unwrap();
    mine
}

/// Bytes the server may stop reading at any point (that is its right).
fn say(private: &OwnedFd, bytes: &[u8]) {
    let _ = send_all(private.as_fd(), bytes);
}

fn say_with(private: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let _ = send_with_fds(private.as_fd(), bytes, fds);
}

/// Ends what we send; the server then reads the end of the stream.
fn done(private: &OwnedFd) {
    let _ = shutdown(private.as_raw_fd(), Shutdown::Write);
}

/// Fixed inputs every client thread shares.
struct Material {
    escalated_request: Vec<u8>,
    missing_program: Vec<u8>,
    relative_path: Vec<u8>,
    empty_argv: Vec<u8>,
    nul_in_path: Vec<u8>,
    /// A file to attach hundreds of times over.
    filler: OwnedFd,
}

impl Material {
    fn new() -> Material {
        let escalated_request = request_frame(ESCALATED, &["true"]);
        let mut nul_in_path = escalated_request.clone();
        // The path's bytes start after the header, the tag and its length.
        nul_in_path[4 + 1 + 4 + 5] = 0;
        Material {
            escalated_request,
            missing_program: request_frame("/no/such/program", &["x"]),
            relative_path: request_frame("usr/bin/true", &["true"]),
            empty_argv: request_frame(ESCALATED, &[]),
            nul_in_path,
            filler: fs::File::open("/dev/null").unwrap().into(),
        }
    }

    fn many(&self, count: usize) -> Vec<BorrowedFd<'_>> {
        vec![self.filler.as_fd(); count]
    }
}

/// Sends the `index`th hostile request; returns the socket its replies
/// come on when there is one.
fn send_hostile(
    index: usize,
    kind: Hostile,
    session: BorrowedFd<'_>,
    material: &Material,
) -> Option<OwnedFd> {
    let (_, stream) = stream_pair();
    let flood = material.many(MAX_PASSED_FDS);
    let private = match kind {
        Hostile::HelloWithoutDescriptor => {
            hello(session, HELLO, &[]);
            return None;
        }
        Hostile::HelloWithTwoDescriptors => {
            let (_, other) = stream_pair();
            hello(session, HELLO, &[stream.as_fd(), other.as_fd()]);
            return None;
        }
        Hostile::HelloWithHundredsOfDescriptors => {
            let mut fds = flood;
            fds[0] = stream.as_fd();
            hello(session, HELLO, &fds);
            return None;
        }
        Hostile::BadMagic => {
            hello(session, b"EXGT\x02\x00", &[stream.as_fd()]);
            return None;
        }
        Hostile::ShortMagic => {
            hello(session, &HELLO[..4], &[stream.as_fd()]);
            return None;
        }
        Hostile::OversizedDatagram => {
            let mut datagram = HELLO.to_vec();
            datagram.extend(noise(index, 100));
            hello(session, &datagram, &[stream.as_fd()]);
            return None;
        }
        Hostile::EmptyDatagram => {
            hello(session, b"", &[]);
            return None;
        }
        Hostile::DatagramSocketAttached => {
            let (_, datagram) = socketpair(
                AddressFamily::Unix,
                SockType::Datagram,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .unwrap();
            hello(session, HELLO, &[datagram.as_fd()]);
            return None;
        }
        Hostile::FileAttached => {
            hello(session, HELLO, &[material.filler.as_fd()]);
            return None;
        }
        Hostile::PeerAlreadyGone => {
            hello(session, HELLO, &[stream.as_fd()]);
            return None;
        }
        Hostile::UnconnectedSocket => {
            let unconnected = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            hello(session, HELLO, &[unconnected.as_fd()]);
            return None;
        }
        Hostile::GarbageTag
        | Hostile::TruncatedRequest
        | Hostile::LengthAtU32Max
        | Hostile::LengthJustOverTheLimit
        | Hostile::LongBodyPromisedNeverSent
        | Hostile::TrailingBytes
        | Hostile::SignalFirst
        | Hostile::DescriptorsFirstWithHundredsAttached
        | Hostile::NothingSent
        | Hostile::RandomBytes
        | Hostile::EmptyArgv
        | Hostile::NulInPath
        | Hostile::MissingProgram
        | Hostile::RelativePath
        | Hostile::HeaderDribbledThenGone
        | Hostile::FewerNumbersThanDescriptors
        | Hostile::HundredsOfDescriptorsOnEveryByte
        | Hostile::DuplicateNumbers
        | Hostile::NegativeNumber
        | Hostile::RequestAgain
        | Hostile::SignalInsteadOfDescriptors
        | Hostile::GoneAfterTheRequest
        | Hostile::TruncatedHandOver => open(session),
    };
    let request = &material.escalated_request;
    match kind {
        Hostile::GarbageTag => {
            let mut bytes = request.clone();
            bytes[4] = 0x7e;
            say(&private, &bytes);
        }
        Hostile::TruncatedRequest => say(&private, &request[..request.len() / 2]),
        Hostile::LengthAtU32Max => say(&private, &u32::MAX.to_le_bytes()),
        Hostile::LengthJustOverTheLimit => {
            say(&private, &(MAX_FRAME_LEN as u32 + 1).to_le_bytes());
        }
        Hostile::LongBodyPromisedNeverSent => {
            say(&private, &(MAX_FRAME_LEN as u32).to_le_bytes());
            say(&private, &request[4..]);
        }
        Hostile::TrailingBytes => {
            let mut bytes = request.clone();
            let body_len = (bytes.len() - 4 + 3) as u32;
            bytes[..4].copy_from_slice(&body_len.to_le_bytes());
            bytes.extend_from_slice(b"xyz");
            say(&private, &bytes);
        }
        Hostile::SignalFirst => say(&private, &frame(&ClientMessage::Signal(15))),
        Hostile::DescriptorsFirstWithHundredsAttached => {
            let numbers = (3..3 + MAX_PASSED_FDS as i32).collect();
            say_with(
                &private,
                &frame(&ClientMessage::Descriptors(numbers)),
                &flood,
            );
        }
        Hostile::NothingSent => {}
        Hostile::RandomBytes => {
            let mut body = noise(index, 1 + index % 300);
            if decode_client(&body).is_ok() {
                body[0] = 0x7e;
            }
            let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
            bytes.extend(body);
            say(&private, &bytes);
        }
        Hostile::EmptyArgv => say(&private, &material.empty_argv),
        Hostile::NulInPath => say(&private, &material.nul_in_path),
        Hostile::MissingProgram => say(&private, &material.missing_program),
        Hostile::RelativePath => say(&private, &material.relative_path),
        Hostile::HeaderDribbledThenGone => {
            for byte in &request[..7] {
                say(&private, std::slice::from_ref(byte));
            }
        }
        Hostile::FewerNumbersThanDescriptors => {
            say(&private, request);
            say_with(
                &private,
                &frame(&ClientMessage::Descriptors(vec![0, 1])),
                &flood,
            );
        }
        Hostile::HundredsOfDescriptorsOnEveryByte => {
            say(&private, request);
            let descriptors = frame(&ClientMessage::Descriptors(vec![0]));
            for byte in &descriptors[..4] {
                say_with(&private, std::slice::from_ref(byte), &flood);
            }
            say(&private, &descriptors[4..]);
        }
        Hostile::DuplicateNumbers => {
            say(&private, request);
            say_with(
                &private,
                &frame(&ClientMessage::Descriptors(vec![1, 1])),
                &material.many(2),
            );
        }
        Hostile::NegativeNumber => {
            say(&private, request);
            let mut descriptors = frame(&ClientMessage::Descriptors(vec![1]));
            let at = descriptors.len() - 4;
            descriptors[at..].copy_from_slice(&(-1i32).to_le_bytes());
            say_with(&private, &descriptors, &material.many(1));
        }
        Hostile::RequestAgain => {
            say(&private, request);
            say(&private, request);
        }
        Hostile::SignalInsteadOfDescriptors => {
            say(&private, request);
            say(&private, &frame(&ClientMessage::Signal(9)));
        }
        Hostile::GoneAfterTheRequest => say(&private, request),
        Hostile::TruncatedHandOver => {
            say(&private, request);
            let descriptors = frame(&ClientMessage::Descriptors(vec![1]));
            say_with(&private, &descriptors[..2], &material.many(1));
        }
        Hostile::HelloWithoutDescriptor
        | Hostile::HelloWithTwoDescriptors
        | Hostile::HelloWithHundredsOfDescriptors
        | Hostile::BadMagic
        | Hostile::ShortMagic
        | Hostile::OversizedDatagram
        | Hostile::EmptyDatagram
        | Hostile::DatagramSocketAttached
        | Hostile::FileAttached
        | Hostile::PeerAlreadyGone
        | Hostile::UnconnectedSocket => unreachable!("handled above"),
    }
    done(&private);
    Some(private)
}

/// Every frame the server sent until it closed the conversation.
fn replies(private: &OwnedFd) -> Result<Vec<ServerMessage>, String> {
    let mut messages = Vec::new();
    loop {
        match read_frame(private.as_fd()) {
            Ok(body) => messages.push(decode_server(&body).map_err(|e| e.to_string())?),
            Err(FrameIoError::Closed) => return Ok(messages),
            // The server closed with our bytes unread: the kernel reports
            // that instead of the end of the stream, after its replies.
            Err(FrameIoError::Io(error))
                if error.raw_os_error() == Some(Errno::ECONNRESET as i32) =>
            {
                return Ok(messages)
            }
            Err(error) => return Err(format!("after {messages:?}: {error}")),
        }
    }
}

/// Checks the replies to one hostile request.
fn check_replies(kind: Hostile, private: Option<OwnedFd>) {
    let Some(private) = private else {
        return;
    };
    let replies = replies(&private).unwrap_or_else(|error| panic!("{kind:?}: {error}"));
    let as_expected = matches!(
        (kind.reach(), replies.as_slice()),
        (
            Reach::Conversation { answerable: true },
            [ServerMessage::Deny { .. }]
        ) | (
            Reach::HandOver,
            [ServerMessage::Escalate, ServerMessage::SpawnFailed { .. }]
        )
    );
    assert!(as_expected, "{kind:?} was answered {replies:?}");
}

fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

fn flood() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _runtime_context = runtime.enter();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_path = audit_dir.path().join("audit.jsonl");
    let audit_log = AuditLog::open(
        &audit_path,
        Rotation {
            max_bytes: 1 << 40,
            keep: 1,
        },
    )
    .unwrap();
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[(ESCALATED, escalate())]));
    config.events = Some(recorder.sink());
    config.audit = Some(Arc::new(SessionAudit::new(
        Arc::new(audit_log),
        RecordOptions::default(),
    )));
    config.request_timeout = Duration::from_secs(1);
    let mut session = Session::start(config).unwrap();
    let material = Material::new();
    let before = open_descriptors();
    let started = Instant::now();

    // The silent clients first: they are timed out while the flood runs.
    let session_socket = session.shell_socket().unwrap();
    let silent: Vec<OwnedFd> = (0..SILENT).map(|_| open(session_socket)).collect();
    let flooded = REQUESTS - SILENT;
    std::thread::scope(|scope| {
        for thread in 0..CLIENT_THREADS {
            let material = &material;
            scope.spawn(move || {
                for index in (thread..flooded).step_by(CLIENT_THREADS) {
                    let kind = kind_of(index);
                    let private = send_hostile(index, kind, session_socket, material);
                    check_replies(kind, private);
                }
            });
        }
    });
    for private in silent {
        let replies = replies(&private).unwrap();
        assert!(
            matches!(replies.as_slice(), [ServerMessage::Deny { reason }] if reason.contains("in time")),
            "a silent client was answered {replies:?}"
        );
    }
    let sent = started.elapsed();

    // What the server must have recorded, by how far each request got.
    let reaches: Vec<Reach> = (0..flooded).map(|index| kind_of(index).reach()).collect();
    let at_hello = reaches.iter().filter(|r| **r == Reach::Hello).count();
    let at_hand_over = reaches.iter().filter(|r| **r == Reach::HandOver).count();
    let in_conversation = REQUESTS - at_hello - at_hand_over;
    let terminal = |events: &[SessionEvent]| {
        events
            .iter()
            .filter(|event| {
                matches!(
                    event,
                    SessionEvent::RequestRefused { .. } | SessionEvent::SpawnFailed { .. }
                )
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while terminal(&recorder.events()) < REQUESTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every descriptor the flood handed over is closed again.
    let mut after = open_descriptors();
    while after != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = open_descriptors();
    }
    let settled = started.elapsed();
    assert_eq!(after, before, "descriptors open before and after the flood");

    let events = recorder.events();
    // Probe 140: an empty datagram was recorded as the socket closed by
    // every sender, an unconnected socket as a requester of uid -1.
    let misleading: Vec<&String> = events
        .iter()
        .filter_map(|event| match event {
            SessionEvent::RequestRefused { reason, .. }
                if reason.contains("closed by every sender")
                    || reason.contains("uid 4294967295") =>
            {
                Some(reason)
            }
            _ => None,
        })
        .collect();
    assert!(
        misleading.is_empty(),
        "{} such reasons, the first {:?}",
        misleading.len(),
        misleading.first()
    );
    let mut refused_at_hello = 0;
    let mut refused_in_conversation = 0;
    let mut spawn_failed = 0;
    let mut decided = 0;
    for event in &events {
        match event {
            SessionEvent::RequestRefused {
                request_id: None, ..
            } => refused_at_hello += 1,
            SessionEvent::RequestRefused {
                request_id: Some(_),
                ..
            } => refused_in_conversation += 1,
            SessionEvent::SpawnFailed { .. } => spawn_failed += 1,
            SessionEvent::Decided {
                decision, request, ..
            } => {
                assert!(
                    matches!(decision, Decision::Escalate(_))
                        && request.executable.canonical_path == Path::new(ESCALATED),
                    "a hostile request was decided {decision:?}: {request:?}"
                );
                decided += 1;
            }
            SessionEvent::Started { .. } | SessionEvent::Exited { .. } => {
                panic!("a hostile request started something: {event:?}")
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(
        (
            refused_at_hello,
            refused_in_conversation,
            decided,
            spawn_failed
        ),
        (at_hello, in_conversation, at_hand_over, at_hand_over),
        "(refused at the hello, refused in the conversation, decided, spawn failed)"
    );
    // The audit log holds the same: one failure record per request, and
    // every decision (and the session's start, which is no request's).
    let records = read_records(&audit_path).unwrap();
    assert_eq!(records.len(), events.len() + 1);
    assert_eq!(records[0].event.action, "session-start");
    let failures = records
        .iter()
        .filter(|record| record.event.action == "error" && record.event.outcome == "failure")
        .count();
    assert_eq!(failures, REQUESTS);
    println!(
        "hostile: {REQUESTS} requests sent and answered in {:.1} s, settled in {:.1} s; \
         {at_hello} refused at the hello, {in_conversation} in the conversation, \
         {at_hand_over} at the descriptor hand-over; {before} descriptors before and after",
        sent.as_secs_f64(),
        settled.as_secs_f64()
    );

    // The real shell is still served: a command in place and an escalation.
    let workspace = tempfile::tempdir().unwrap();
    let output = runtime.block_on(async {
        let child = spawn_zsh(
            &mut session,
            "/bin/echo still-served; /usr/bin/true && /bin/echo escalated",
            workspace.path(),
        );
        let output = finish(child).await;
        session.shutdown().await;
        output
    });
    assert_eq!(
        output.stdout, "still-served\nescalated\n",
        "{}",
        output.stderr
    );
    assert_eq!(recorder.started_pids().len(), 1);
}

/// A requester that never reads its answer must not hold up the session:
/// an answer too large for the socket's buffer (a denial quoting a 1 MiB
/// path) is given up when the session ends.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_nobody_reads_does_not_hold_up_the_session() {
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[]));
    // Longer than the test waits: only the session's end can free it.
    config.request_timeout = Duration::from_secs(600);
    let session = Session::start(config).unwrap();
    let private = open(session.shell_socket().unwrap());
    let long_relative_path = "x".repeat(1 << 20);
    say(&private, &request_frame(&long_relative_path, &["x"]));
    // Let the server read the request and fill the socket with its denial.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shutdown = tokio::time::timeout(Duration::from_secs(20), session.shutdown()).await;
    assert!(shutdown.is_ok(), "the session waited for an unread answer");
    drop(private);
}

/// Regression: a request could name its executable or its working
/// directory through a magic link (`/proc/PID/fd/N`, `/proc/PID/cwd`), and
/// those lead into other mount namespaces. A sandbox's private `/dev/shm`,
/// reached through a descriptor of it that an escalated child held, was
/// taken for the host's `/dev/shm`, and a Makefile planted there ran
/// unsandboxed. The server resolves a request's paths without magic links:
/// such a request is denied, and nothing escalates from such a directory.
#[tokio::test(flavor = "multi_thread")]
async fn paths_through_magic_links_name_nothing() {
    let session = Session::start(SessionConfig::new(
        wrapper(),
        policy_by_path(&[(ESCALATED, escalate())]),
    ))
    .unwrap();
    let socket = session.shell_socket().unwrap();
    let pid = std::process::id();
    let escalated = fs::File::open(ESCALATED).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let ask = |path: &str, cwd: &Path| {
        let private = open(socket);
        say(&private, &request_frame_in(path, &["true"], cwd.to_owned()));
        done(&private);
        replies(&private).unwrap()
    };
    // The same requests, named plainly, escalate.
    assert!(matches!(
        ask(ESCALATED, &cwd).as_slice(),
        [ServerMessage::Escalate, ..]
    ));
    let through_links = [
        // The executable, through the requester's descriptor of it.
        (
            format!("/proc/{pid}/fd/{}", escalated.as_raw_fd()),
            cwd.clone(),
        ),
        (
            format!("/proc/self/fd/{}", escalated.as_raw_fd()),
            cwd.clone(),
        ),
        // The working directory, through the requester's own link to it.
        (
            ESCALATED.to_owned(),
            PathBuf::from(format!("/proc/{pid}/cwd")),
        ),
        (
            ESCALATED.to_owned(),
            Path::new(&format!("/proc/{pid}/root")).join(cwd.strip_prefix("/").unwrap()),
        ),
    ];
    for (path, cwd) in through_links {
        let replies = ask(&path, &cwd);
        assert!(
            matches!(replies.as_slice(), [ServerMessage::Deny { .. }]),
            "{path} in {}: {replies:?}",
            cwd.display()
        );
    }
    session.shutdown().await;
}

/// The server's end of a request socket shares its file flags with any
/// copy the requester keeps. A requester that clears `O_NONBLOCK` on its
/// copy mid-conversation, then stops sending, must not block the thread
/// sessions are served on: with it blocked, no session is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_that_makes_the_servers_socket_blocking_stalls_nothing() {
    let policy = policy_by_path(&[(ESCALATED, escalate())]);
    let mut config = SessionConfig::new(wrapper(), policy);
    config.request_timeout = Duration::from_secs(600);
    let session = Session::start(config).unwrap();
    let session_socket = session.shell_socket().unwrap();
    let descriptors = frame(&ClientMessage::Descriptors(vec![0]));
    let filler: OwnedFd = fs::File::open("/dev/null").unwrap().into();
    // Two such requesters: one would be enough to block the serving thread.
    let hostile: Vec<(OwnedFd, OwnedFd)> = (0..2)
        .map(|_| {
            let (mine, theirs) = stream_pair();
            setsockopt(&mine, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).unwrap();
            say(&mine, &request_frame(ESCALATED, &["true"]));
            hello(session_socket, HELLO, &[theirs.as_fd()]);
            let escalate = read_frame(mine.as_fd()).expect("an answer");
            assert!(matches!(
                decode_server(&escalate),
                Ok(ServerMessage::Escalate)
            ));
            // The server's end, as it shares flags with our copy.
            let flags = nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
            flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
            nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
            // Half of the descriptors frame: the server reads on.
            say_with(&mine, &descriptors[..FRAME_HEADER_LEN], &[filler.as_fd()]);
            (mine, theirs)
        })
        .collect();
    // A plain request, from a thread that does not need the runtime.
    let socket = session_socket.try_clone_to_owned().unwrap();
    let answered = std::thread::spawn(move || {
        let private = open(socket.as_fd());
        say(&private, &request_frame("/bin/echo", &["echo"]));
        read_frame(private.as_fd()).map(|body| decode_server(&body))
    })
    .join()
    .unwrap();
    // Free whatever is blocked before judging, so that a failure ends.
    drop(hostile);
    assert!(
        matches!(answered, Ok(Ok(ServerMessage::Run))),
        "the session stopped answering: {answered:?}"
    );
    let shutdown = tokio::time::timeout(Duration::from_secs(20), session.shutdown()).await;
    assert!(shutdown.is_ok(), "the session did not end");
}

/// A requester that fills the server's send buffer (writing into its copy
/// of the server's end, whose buffer is charged to that end) and never
/// reads must not keep the escalation's task from watching its child:
/// after the request timeout, the child is watched and its end recorded
/// without the requester.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_whose_requester_reads_nothing_is_still_watched() {
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[(ESCALATED, escalate())]));
    config.events = Some(recorder.sink());
    config.request_timeout = Duration::from_secs(1);
    let session = Session::start(config).unwrap();
    let (mine, theirs) = stream_pair();
    setsockopt(&mine, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).unwrap();
    say(&mine, &request_frame(ESCALATED, &["true"]));
    hello(session.shell_socket().unwrap(), HELLO, &[theirs.as_fd()]);
    let escalate = read_frame(mine.as_fd()).expect("an answer");
    assert!(matches!(
        decode_server(&escalate),
        Ok(ServerMessage::Escalate)
    ));
    // Fill what the server's end may have in flight (it is non-blocking
    // now: the server made it so).
    let filler = vec![0u8; 64 << 10];
    let fill = || {
        nix::sys::socket::send(
            theirs.as_raw_fd(),
            &filler,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
    };
    while fill().is_ok() {}
    let null: OwnedFd = fs::File::open("/dev/null").unwrap().into();
    say_with(
        &mine,
        &frame(&ClientMessage::Descriptors(vec![0, 1, 2])),
        &[null.as_fd(), null.as_fd(), null.as_fd()],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        let exited = recorder
            .events()
            .iter()
            .any(|event| matches!(event, SessionEvent::Exited { .. }));
        if exited || Instant::now() > deadline {
            break exited;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop((mine, theirs));
    assert!(exited, "the child's end was never recorded");
    let shutdown = tokio::time::timeout(Duration::from_secs(20), session.shutdown()).await;
    assert!(shutdown.is_ok(), "the session did not end");
}

/// A requester relays to its escalated child only what a stand-in
/// forwards (`FORWARDED_SIGNALS`): a `SIGSTOP` would stop the child behind
/// the stand-in's back, which waits for its end. A forwarded signal still
/// reaches it.
#[tokio::test(flavor = "multi_thread")]
async fn a_requester_cannot_send_its_escalation_a_signal_no_stand_in_forwards() {
    let (session, recorder) = start_session(policy_by_path(&[("/usr/bin/dash", escalate())]));
    let dir = tempfile::tempdir().unwrap();
    let (mark, ready) = (dir.path().join("usr1"), dir.path().join("ready"));
    let trap = format!(
        "trap 'echo > {}' USR1; echo > {}; while :; do /usr/bin/sleep 0.05; done",
        mark.display(),
        ready.display()
    );
    let mine = handed_over(&session, "/usr/bin/dash", &["dash", "-c", &trap]);
    let pid = recorder.wait_for_started(1).await[0];
    // Started is not yet trapping: a SIGUSR1 before the trap ended dash
    // (CI at 4b88c3b).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready.exists(), "the escalated dash never set its trap");
    say(&mine, &frame(&ClientMessage::Signal(libc::SIGSTOP)));
    // Frames are relayed in order: the trap runs only if the child was not
    // stopped before this one came.
    say(&mine, &frame(&ClientMessage::Signal(libc::SIGUSR1)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mark.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = state.rsplit_once(") ").unwrap().1.chars().next();
    assert!(
        mark.exists() && !matches!(state, Some('T' | 't')),
        "the child was stopped: state {state:?}"
    );
    say(&mine, &frame(&ClientMessage::Signal(libc::SIGTERM)));
    let termination = exited(&recorder, Duration::from_secs(20)).await;
    drop(mine);
    assert_eq!(
        termination,
        Some(execgate_protocol::Termination::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false
        }),
        "a forwarded signal still reaches it"
    );
    session.shutdown().await;
}

/// Probe 217: a requester that handed its escalated child the other end
/// of its own request socket (a forged hand-over) left the child running
/// after it was gone, its command ended: the socket never read as closed,
/// the child holding it. The requester itself is watched.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_whose_requester_is_gone_ends_though_its_socket_lives_on() {
    let (session, recorder) = start_session(policy_by_path(&[("/usr/bin/sleep", escalate())]));
    let (mut requester, mine, theirs) = pair_made_by_another_process();
    asked_to_escalate(
        &session,
        &mine,
        theirs,
        "/usr/bin/sleep",
        &["sleep", "60.217"],
    );
    let null: OwnedFd = fs::File::open("/dev/null").unwrap().into();
    say_with(
        &mine,
        &frame(&ClientMessage::Descriptors(vec![0, 1, 2, 3])),
        &[null.as_fd(), null.as_fd(), null.as_fd(), mine.as_fd()],
    );
    let started = read_frame(mine.as_fd()).expect("an answer");
    assert!(
        matches!(decode_server(&started), Ok(ServerMessage::Started { .. })),
        "{:?}",
        decode_server(&started)
    );
    // The child's copy is now the socket's last one, and its requester
    // ends.
    drop(mine);
    drop(requester.stdin.take());
    assert!(requester.wait().unwrap().success());
    let termination = exited(&recorder, Duration::from_secs(20)).await;
    session.shutdown().await;
    assert_eq!(
        termination,
        Some(KILLED),
        "the child outlived its requester"
    );
}

/// A connected pair of stream sockets made by another process (a request
/// socket's peer credentials name it), which keeps none of them and ends
/// when its stdin does.
fn pair_made_by_another_process() -> (std::process::Child, OwnedFd, OwnedFd) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let maker = "import array, socket, sys\n\
                 out = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
                 out.connect(sys.argv[1])\n\
                 a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)\n\
                 fds = array.array('i', [a.fileno(), b.fileno()])\n\
                 out.sendmsg([b'p'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])\n\
                 a.close(); b.close(); out.close()\n\
                 sys.stdin.read()\n";
    let maker = std::process::Command::new("python3")
        .args(["-c", maker])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (connection, _) = listener.accept().unwrap();
    let mut byte = [0u8; 1];
    let received = execgate_protocol::recv_with_fds(connection.as_fd(), &mut byte).unwrap();
    let [mine, theirs]: [OwnedFd; 2] = received.fds.try_into().unwrap();
    (maker, mine, theirs)
}

/// Longer than a request waits for its answer in
/// [`a_descriptor_whose_close_waits_stalls_nothing`], short enough that a
/// close which does wait (ours, should the server have let go of its copy
/// first) ends soon.
const LINGER: Duration = Duration::from_secs(10);

/// Where a requester can put a descriptor the server ends up closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planted {
    /// Beside the private socket in the hello.
    OnTheHelloBeside,
    /// In the hello, in place of the private socket.
    OnTheHelloInstead,
    /// On the request's own bytes (a request carries none).
    OnTheRequest,
    /// On bytes sent after the request, which the server never reads: they
    /// are still queued on its end when it closes the socket.
    QueuedAfterTheRequest,
    /// On a descriptors frame that does not match its descriptors.
    OnABadHandOver,
}

/// A TCP socket whose last close waits for as long as its linger time
/// ([`LINGER`]): `SO_LINGER` is on and data its peer never reads is still
/// unsent. Dropping the peer (its data unread, so the connection is reset)
/// ends that wait.
fn lingering_socket() -> (OwnedFd, std::net::TcpStream) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    socket.set_nonblocking(true).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while socket.write(&chunk).is_ok() {}
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: LINGER.as_secs() as i32,
    };
    setsockopt(&socket, sockopt::Linger, &linger).unwrap();
    (socket.into(), peer)
}

/// Queues refused hellos ahead of the next one, so that the server reads
/// a planted hello some milliseconds after it is sent: long after we have
/// let go of our copy of what it carries.
fn keep_the_accept_loop_busy(session: BorrowedFd<'_>) {
    for _ in 0..200 {
        hello(session, b"EXGT\x02\x00", &[]);
    }
}

/// Drops our copy of a planted socket (or of a socket with one queued on
/// it); `false` when that waited, which means ours was the last: the
/// server had let go of its copy first, and the attempt showed nothing.
fn let_go(lingering: OwnedFd) -> bool {
    let started = Instant::now();
    drop(lingering);
    started.elapsed() < LINGER / 2
}

/// Closing a file can wait in the kernel: the last close of a TCP socket
/// with `SO_LINGER` and unsent data waits for its linger time. A requester
/// that sends such sockets wherever the server would close them must not
/// stall the thread sessions are served on, or the session's accept loop:
/// with it stalled, no session is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_whose_close_waits_stalls_nothing() {
    let mut done = Vec::new();
    use Planted::*;
    let planted_all = [
        OnTheHelloBeside,
        OnTheHelloInstead,
        OnTheRequest,
        QueuedAfterTheRequest,
        OnABadHandOver,
    ];
    // An attempt where the server let go of a copy before we did shows
    // nothing (see `let_go`); it is tried again.
    for (planted, attempt) in planted_all
        .iter()
        .flat_map(|planted| (1..=3).map(move |attempt| (*planted, attempt)))
    {
        if done.contains(&planted) {
            continue;
        }
        let mut conclusive = true;
        let policy = policy_by_path(&[(ESCALATED, escalate())]);
        let mut config = SessionConfig::new(wrapper(), policy);
        config.request_timeout = Duration::from_secs(600);
        let session = Session::start(config).unwrap();
        let session_socket = session.shell_socket().unwrap();
        let mut peers = Vec::new();
        let mut kept = Vec::new();
        // Two: one would be enough to stall the serving thread.
        for _ in 0..2 {
            // Ours is dropped the moment it is sent, while the server
            // still has its copy to close.
            let (lingering, peer) = lingering_socket();
            peers.push(peer);
            let (mine, theirs) = stream_pair();
            setsockopt(&mine, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).unwrap();
            let request = request_frame(ESCALATED, &["true"]);
            match planted {
                OnTheHelloBeside => {
                    say(&mine, &request);
                    keep_the_accept_loop_busy(session_socket);
                    hello(session_socket, HELLO, &[theirs.as_fd(), lingering.as_fd()]);
                    conclusive &= let_go(lingering);
                    conclusive &= let_go(theirs);
                }
                OnTheHelloInstead => {
                    keep_the_accept_loop_busy(session_socket);
                    hello(session_socket, HELLO, &[lingering.as_fd()]);
                    conclusive &= let_go(lingering);
                }
                OnTheRequest => {
                    say_with(&mine, &request, &[lingering.as_fd()]);
                    conclusive &= let_go(lingering);
                    keep_the_accept_loop_busy(session_socket);
                    hello(session_socket, HELLO, &[theirs.as_fd()]);
                    // Its queue holds the planted socket until the server
                    // reads it: ours must not be the last copy either.
                    conclusive &= let_go(theirs);
                }
                QueuedAfterTheRequest => {
                    let run = request_frame("/bin/echo", &["echo"]);
                    say(&mine, &run);
                    say_with(&mine, b"x", &[lingering.as_fd()]);
                    conclusive &= let_go(lingering);
                    keep_the_accept_loop_busy(session_socket);
                    hello(session_socket, HELLO, &[theirs.as_fd()]);
                    conclusive &= let_go(theirs);
                }
                OnABadHandOver => {
                    say(&mine, &request);
                    hello(session_socket, HELLO, &[theirs.as_fd()]);
                    let answer = read_frame(mine.as_fd()).expect("an answer");
                    assert!(matches!(
                        decode_server(&answer),
                        Ok(ServerMessage::Escalate)
                    ));
                    // The header carries the descriptor; the server holds
                    // it until the body shows the frame is wrong, so ours
                    // is let go before the body is sent.
                    let numbers = frame(&ClientMessage::Descriptors(vec![0, 1]));
                    let (header, body) = numbers.split_at(FRAME_HEADER_LEN);
                    say_with(&mine, header, &[lingering.as_fd()]);
                    conclusive &= let_go(lingering);
                    say(&mine, body);
                }
            }
            kept.push(mine);
        }
        // A plain request, from a thread that does not need the runtime.
        let socket = session_socket.try_clone_to_owned().unwrap();
        let answered = std::thread::spawn(move || {
            let private = open(socket.as_fd());
            let wait = TimeVal::new(LINGER.as_secs() as i64 / 2, 0);
            setsockopt(&private, sockopt::ReceiveTimeout, &wait).unwrap();
            say(&private, &request_frame("/bin/echo", &["echo"]));
            read_frame(private.as_fd()).map(|body| decode_server(&body))
        })
        .join()
        .unwrap();
        // Release every waiting close before judging, so that a failure
        // ends.
        drop(peers);
        drop(kept);
        if conclusive {
            done.push(planted);
            assert!(
                matches!(answered, Ok(Ok(ServerMessage::Run))),
                "{planted:?}: the session stopped answering: {answered:?}"
            );
        } else {
            eprintln!("{planted:?}: attempt {attempt} showed nothing, the server let go first");
            assert!(attempt < 3, "{planted:?}: the server always let go first");
        }
        let shutdown = tokio::time::timeout(Duration::from_secs(20), session.shutdown()).await;
        assert!(shutdown.is_ok(), "{planted:?}: the session did not end");
    }
}

/// A policy that asks a person who never answers, and counts the
/// questions it asked and those dropped.
struct Asking(Arc<Questions>);

#[derive(Default)]
struct Questions {
    asked: std::sync::atomic::AtomicUsize,
    withdrawn: std::sync::atomic::AtomicUsize,
}

impl Questions {
    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn withdrawn(&self) -> usize {
        self.withdrawn.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct Dropped(Arc<Questions>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0
            .withdrawn
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl execgate_escalate_server::Policy for Asking {
    fn decide<'a>(
        &'a self,
        _request: &'a execgate_escalate_server::ExecContext,
    ) -> execgate_escalate_server::DecisionFuture<'a> {
        self.0
            .asked
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dropped = Dropped(self.0.clone());
        Box::pin(async move {
            let _dropped = dropped;
            std::future::pending().await
        })
    }
}

/// A probe kept its question open after its requester ended by sending
/// one byte more than its request first (the server stopped watching a
/// requester that had sent anything). A requester sends nothing before
/// its answer: one that does, or hangs up, ends the decision, and the
/// question with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_requester_that_stops_waiting_ends_its_question() {
    let withdrawn = Arc::new(Questions::default());
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper(), Arc::new(Asking(withdrawn.clone())));
    config.events = Some(recorder.sink());
    let session = Session::start(config).unwrap();
    let socket = session.shell_socket().unwrap();
    let (one_more, hung_up) = (open(socket), open(socket));
    say(&one_more, &request_frame("/usr/bin/true", &["true"]));
    say(&one_more, b"x");
    say(&hung_up, &request_frame("/usr/bin/true", &["true"]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(hung_up);
    for _ in 0..250 {
        if withdrawn.withdrawn() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(withdrawn.withdrawn(), 2);
    let mut refusals = recorder.refusals();
    refusals.sort();
    assert_eq!(
        refusals,
        [
            "the requester sent more before the decision",
            "the requester went away before the decision"
        ]
    );
    drop(one_more);
    session.shutdown().await;
}

/// A session ended while a person was still asked about a request: the
/// question went with it, and the log said nothing of the request, though
/// it was read and checked. Its end is recorded as a refusal.
#[tokio::test(flavor = "multi_thread")]
async fn a_question_open_at_the_sessions_end_is_recorded_as_refused() {
    let withdrawn = Arc::new(Questions::default());
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper(), Arc::new(Asking(withdrawn.clone())));
    config.events = Some(recorder.sink());
    let session = Session::start(config).unwrap();
    let asking = open(session.shell_socket().unwrap());
    say(&asking, &request_frame("/usr/bin/true", &["true"]));
    for _ in 0..250 {
        if withdrawn.asked() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(withdrawn.asked(), 1, "the question was never asked");
    tokio::time::timeout(Duration::from_secs(20), session.shutdown())
        .await
        .expect("the session did not end");
    assert_eq!(withdrawn.withdrawn(), 1);
    assert_eq!(
        recorder.refusals(),
        ["the session ended before the decision"]
    );
    drop(asking);
}

/// The same for an escalation decided and recorded whose requester had
/// not handed its descriptors over yet: the log showed the decision and
/// nothing after it, as if the child were still to start.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_waiting_for_descriptors_at_the_sessions_end_is_recorded_as_not_started() {
    let (session, recorder) = start_session(policy_by_path(&[(ESCALATED, escalate())]));
    let (mine, theirs) = stream_pair();
    setsockopt(&mine, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).unwrap();
    say(&mine, &request_frame(ESCALATED, &["true"]));
    hello(session.shell_socket().unwrap(), HELLO, &[theirs.as_fd()]);
    drop(theirs);
    let escalate = read_frame(mine.as_fd()).expect("an answer");
    assert!(matches!(
        decode_server(&escalate),
        Ok(ServerMessage::Escalate)
    ));
    tokio::time::timeout(Duration::from_secs(20), session.shutdown())
        .await
        .expect("the session did not end");
    let not_started = recorder.spawn_failures();
    assert_eq!(
        not_started,
        ["the session ended before the descriptors were handed over"]
    );
    drop(mine);
}

/// A review: an escalation decided and recorded whose requester had gone
/// before the server could say so left the decision as the last word.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_whose_requester_left_before_its_answer_is_recorded_as_not_started() {
    let (session, recorder) = start_session(policy_by_path(&[(ESCALATED, escalate())]));
    let (mine, theirs) = stream_pair();
    say(&mine, &request_frame(ESCALATED, &["true"]));
    hello(session.shell_socket().unwrap(), HELLO, &[theirs.as_fd()]);
    drop((mine, theirs));
    let deadline = Instant::now() + Duration::from_secs(20);
    let not_started = loop {
        let not_started = recorder.spawn_failures();
        if !not_started.is_empty() || Instant::now() > deadline {
            break not_started;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Which one depends on whether the answer still fit in the socket.
    assert!(
        matches!(
            not_started.as_slice(),
            [reason] if reason == "the requester went away before it handed its descriptors over"
                || reason.starts_with("bad descriptor hand-over")
        ),
        "{not_started:?}"
    );
    session.shutdown().await;
}

/// A probe named its working directory through a symbolic link to the
/// directory it ran in: the server held the right directory, but the
/// approval's key, the question and the audit record took the name as
/// sent, so an answer "for the session" in one directory covered another,
/// and the record named a place the command never ran in. What policies
/// and records see is the directory the server checked, by its canonical
/// name.
#[tokio::test(flavor = "multi_thread")]
async fn a_working_directory_is_named_as_the_server_checked_it() {
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[]));
    config.events = Some(recorder.sink());
    let session = Session::start(config).unwrap();
    let links = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let claimed = links.path().join("elsewhere");
    std::os::unix::fs::symlink(&cwd, &claimed).unwrap();
    let private = open(session.shell_socket().unwrap());
    say(
        &private,
        &request_frame_in("/usr/bin/true", &["true"], claimed),
    );
    done(&private);
    assert!(matches!(
        replies(&private).unwrap().as_slice(),
        [ServerMessage::Run]
    ));
    session.shutdown().await;
    let decided = recorder.decided();
    let [request] = decided.as_slice() else {
        panic!("one decision: {decided:?}");
    };
    let canonical = fs::canonicalize(&cwd).unwrap();
    assert_eq!(request.cwd, canonical);
    assert_eq!(
        request.working_directory.as_ref().unwrap().canonical_path,
        canonical
    );
}

/// A probe's requester handed its descriptors over and hung up before the
/// server could say the child had started: the child ran on, unsandboxed,
/// until the session's end, and no list showed it. A child whose stand-in
/// cannot hear that it started has nobody waiting for it: it is killed.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_whose_requester_left_before_it_started_is_killed() {
    let (session, recorder) = start_session(policy_by_path(&[("/usr/bin/sleep", escalate())]));
    drop(handed_over(&session, "/usr/bin/sleep", &["sleep", "1000"]));
    recorder.wait_for_started(1).await;
    let termination = exited(&recorder, Duration::from_secs(10)).await;
    assert_eq!(
        termination,
        Some(KILLED),
        "the child outlived its requester"
    );
    session.shutdown().await;
}

/// A requester's side of an escalation of `path` with `argv`, up to its
/// descriptors handed over (three of `/dev/null`): the request socket.
fn handed_over(session: &Session, path: &str, argv: &[&str]) -> OwnedFd {
    let (mine, theirs) = stream_pair();
    asked_to_escalate(session, &mine, theirs, path, argv);
    let null: OwnedFd = fs::File::open("/dev/null").unwrap().into();
    say_with(
        &mine,
        &frame(&ClientMessage::Descriptors(vec![0, 1, 2])),
        &[null.as_fd(), null.as_fd(), null.as_fd()],
    );
    mine
}

/// Asks `session` on a private socket (`mine`, `theirs`) to run `path`,
/// which its policy escalates: answered `Escalate`, it waits for the
/// descriptors.
fn asked_to_escalate(
    session: &Session,
    mine: &OwnedFd,
    theirs: OwnedFd,
    path: &str,
    argv: &[&str],
) {
    setsockopt(mine, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).unwrap();
    say(mine, &request_frame(path, argv));
    hello(session.shell_socket().unwrap(), HELLO, &[theirs.as_fd()]);
    drop(theirs);
    let escalate = read_frame(mine.as_fd()).expect("an answer");
    assert!(
        matches!(decode_server(&escalate), Ok(ServerMessage::Escalate)),
        "{:?}",
        decode_server(&escalate)
    );
}

/// How a child the server killed ends.
const KILLED: execgate_protocol::Termination = execgate_protocol::Termination::Signaled {
    signal: libc::SIGKILL,
    core_dumped: false,
};

/// How the first escalated child that ended did, waiting up to `patience`.
async fn exited(recorder: &Recorder, patience: Duration) -> Option<execgate_protocol::Termination> {
    let deadline = Instant::now() + patience;
    loop {
        let ended = recorder.events().into_iter().find_map(|event| match event {
            SessionEvent::Exited { termination, .. } => Some(termination),
            _ => None,
        });
        if ended.is_some() || Instant::now() > deadline {
            return ended;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Probe 113: every shell of a session shared one socket, so one process
/// that shut it for writing (`shutdown(fd, SHUT_WR)`, which no holder can
/// undo) cut every later shell of the session off from the server. Each
/// shell now gets a socket of its own; the one that shut its socket has
/// only itself to blame.
#[tokio::test(flavor = "multi_thread")]
async fn a_shell_that_shuts_its_socket_cuts_off_no_other_shell() {
    let dir = tempfile::tempdir().unwrap();
    let (session, recorder) = start_session(policy_by_path(&[]));
    let shell = |script: &str| {
        let mut command = std::process::Command::new(zsh());
        command
            .args(["-f", "-c", script])
            .current_dir(dir.path())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        session.prepare_shell(&mut command);
        tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("zsh starts")
    };
    let shut = "/usr/bin/python3 -c 'import os, socket; \
                socket.socket(fileno=os.dup(int(os.environ[\"EXECGATE_SOCKET_FD\"]))).shutdown(socket.SHUT_WR)'";
    let first = finish(shell(shut)).await;
    assert_eq!(first.code(), Some(0), "{}", first.stderr);
    let second = finish(shell("/usr/bin/true && echo reached")).await;
    assert_eq!(
        (second.code(), second.stdout.trim()),
        (Some(0), "reached"),
        "{}",
        second.stderr
    );
    assert!(
        recorder
            .decided_programs()
            .iter()
            .any(|program| program == "/usr/bin/true"),
        "{:?}",
        recorder.decided_programs()
    );
}

/// Probe 113: a denial quoting what the request named (a path of
/// megabytes of control characters, each escaped in the reason) was too
/// long to send, and the requester got a closed socket instead of its
/// answer. It gets the denial, its reason cut short.
#[tokio::test(flavor = "multi_thread")]
async fn a_denial_too_long_to_send_is_cut_short_not_dropped() {
    let (session, _recorder) = start_session(policy_by_path(&[]));
    let path = format!("/{}", "\u{1}".repeat(3_000_000));
    let private = open(session.shell_socket().unwrap());
    say(&private, &request_frame(&path, &["x"]));
    done(&private);
    let replies = tokio::task::spawn_blocking(move || replies(&private))
        .await
        .unwrap();
    match replies.as_deref() {
        Ok([ServerMessage::Deny { reason }]) => assert!(
            reason.len() <= 17 * 1024 && reason.ends_with("bytes more)"),
            "{} bytes: {}",
            reason.len(),
            &reason[reason.len().saturating_sub(200)..]
        ),
        other => panic!("{:?}", other.map(|replies| replies.len())),
    }
}

/// Review 115: with a socket of its own for every shell, the `Command` a
/// caller kept after spawning its one shell held that socket's other end,
/// and `finished()` waited on it (`session-host` lost 10 s a run). The
/// first shell takes the session's own socket, as before.
#[tokio::test(flavor = "multi_thread")]
async fn finished_does_not_wait_for_a_kept_command() {
    let dir = tempfile::tempdir().unwrap();
    let (mut session, _recorder) = start_session(policy_by_path(&[]));
    let mut command = std::process::Command::new(zsh());
    command
        .args(["-f", "-c", "/usr/bin/true"])
        .current_dir(dir.path())
        .stdin(Stdio::null());
    session.prepare_shell(&mut command);
    let mut child = command.spawn().expect("zsh starts");
    session.shell_spawned();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), session.finished())
        .await
        .expect("finished() returned while the command was kept");
    drop(command);
}

/// Probe 140: a malformed frame while an escalated child ran killed the
/// child, as a stand-in that went away does, and nothing recorded why.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_frame_while_the_child_runs_is_recorded() {
    let (session, recorder) = start_session(policy_by_path(&[("/usr/bin/dash", escalate())]));
    let mine = handed_over(
        &session,
        "/usr/bin/dash",
        &["dash", "-c", "/usr/bin/sleep 20"],
    );
    recorder.wait_for_started(1).await;
    say(&mine, &[4, 0, 0, 0, 0x7f, b'b', b'a', b'd']);
    let termination = exited(&recorder, Duration::from_secs(20)).await;
    drop(mine);
    assert_eq!(termination, Some(KILLED));
    let reasons: Vec<String> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::RequestRefused {
                request_id: Some(1),
                reason,
                ..
            } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(
        matches!(reasons.as_slice(), [reason] if reason.contains("broke while the child ran")),
        "{reasons:?}"
    );
    session.shutdown().await;
}

/// A malformed request's record named no requester: a reviewer could not
/// tell which process sent it, though the server had read its peer
/// credentials (a probe's flood came from somewhere in the sandbox).
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_request_names_the_process_that_sent_it() {
    let (session, recorder) = start_session(policy_by_path(&[]));
    let private = open(session.shell_socket().unwrap());
    say(&private, &[4, 0, 0, 0, 0x7f, b'b', b'a', b'd']);
    done(&private);
    assert!(matches!(
        read_frame(private.as_fd()).map(|body| decode_server(&body)),
        Ok(Ok(ServerMessage::Deny { .. }))
    ));
    // Recorded once its denial is sent: the end waits for it.
    session.shutdown().await;
    let requesters: Vec<_> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::RequestRefused { requester, .. } => Some(requester.map(|peer| peer.pid)),
            _ => None,
        })
        .collect();
    assert_eq!(requesters, [Some(std::process::id() as i32)]);
}
