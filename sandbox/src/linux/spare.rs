//! A sandbox started ahead of its command: the order that completes it.
//!
//! bubblewrap takes most of a sandbox's start (namespaces, mounts), and
//! none of that depends on the command. A spare is a sandbox started with
//! [`crate::Launcher::spare_arguments`]: its helper confines itself as for
//! any command (no-new-privs, Landlock, seccomp, the supervisor), writes
//! one byte, [`READY`], on its inherited control socket, and waits there
//! for the order: the command's working directory (by path, inside the
//! view, and the identity it must have), arguments, environment, and
//! descriptors with the numbers they must have. It places them, enters
//! the directory, checks it, and executes the descriptor named for that.
//!
//! One spare runs one command: it is never reused, so escalations share
//! no mount view or process, and no namespace but the empty network one
//! their server may start them in (see `Launcher::spare_arguments`).
//!
//! Nothing here may give the command anything the order did not: the
//! control socket and the spare's own standard streams are closed before
//! it runs (the socket by the exec itself: until then it is kept, above
//! the command's descriptors, to say that the exec failed). The sandbox's
//! init (the supervisor, non-dumpable, so out of the command's reach)
//! keeps its own copy of the control socket for one message: that the
//! command died of a signal. [`reported_end`] reads either.

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::inheritance::Inheritance;
use nix::cmsg_space;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned,
    MsgFlags, UnixAddr,
};
use nix::sys::time::TimeVal;

use super::sys;

/// What the helper writes once it is confined and waits for its order.
pub const READY: u8 = b'R';
/// What the sandbox's init writes, before it ends, when the command died
/// of a signal: this byte, the signal and whether it dumped core. Its own
/// exit status, and bubblewrap's after it, can only say 128 plus the
/// signal.
const SIGNALED: u8 = b'S';
/// What the helper writes when the exec of the command failed, before it
/// exits with a shell's status for that: this byte and the `errno`
/// (4 bytes, little-endian). Its exit status alone reads as the
/// command's own.
const EXEC_FAILED: u8 = b'E';
/// What the helper writes when it could not complete the sandbox for the
/// command it took (its directory replaced, its descriptors not placed),
/// before it exits 126: this byte and why, cut to [`MOST_WHY`] bytes.
const NOT_RUN: u8 = b'N';
/// The most of a [`NOT_RUN`] report's reason.
const MOST_WHY: usize = 240;
const MAGIC: &[u8; 8] = b"EXSPARE1";
/// Arguments and environment together, at most (the wire protocol's
/// frames are at most 4 MiB).
const MOST_BODY: usize = 8 << 20;
/// Descriptors one `SCM_RIGHTS` message carries, at most.
pub const MOST_DESCRIPTORS: usize = 253;

/// What a spare needs to become its command's sandbox.
#[derive(Debug)]
pub struct SpareOrder<'a> {
    /// The working directory, by its path inside the view.
    pub cwd: &'a Path,
    /// (device, inode) it must have there: the directory the decision was
    /// made in.
    pub cwd_identity: (u64, u64),
    pub argv: &'a [OsString],
    /// `NAME=VALUE` entries.
    pub env: &'a [OsString],
    /// The number, among `fds`' targets, of the file to execute.
    pub exec_fd: RawFd,
    /// Each descriptor and the number it gets.
    pub fds: &'a [(BorrowedFd<'a>, RawFd)],
    /// The umask, limits and ignored signals to start it with.
    pub inheritance: &'a Inheritance,
}

/// Waits up to `within` for the spare behind `control` to say it is ready,
/// then sends it `order`. An error means the spare ran nothing and must be
/// killed: it ended before it was ready (its own errors went nowhere, so
/// start the sandbox afresh to see them), or it did not answer in time.
pub fn hand_order(
    control: BorrowedFd<'_>,
    order: &SpareOrder<'_>,
    within: Duration,
) -> io::Result<()> {
    if order.fds.len() > MOST_DESCRIPTORS {
        return Err(io::Error::other("too many descriptors for a spare sandbox"));
    }
    let mut ready = [PollFd::new(control, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(within).unwrap_or(PollTimeout::MAX);
    if poll(&mut ready, timeout)? == 0 {
        return Err(io::Error::other("the spare sandbox was not ready in time"));
    }
    let mut byte = [0u8; 1];
    match recv(control.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT)? {
        1 if byte[0] == READY => {}
        0 => {
            return Err(io::Error::other(
                "the spare sandbox ended before it was ready",
            ))
        }
        1 if byte[0] == SIGNALED => {
            return Err(io::Error::other(
                "the spare sandbox was killed before it was ready",
            ))
        }
        _ => {
            return Err(io::Error::other(
                "the spare sandbox said something unexpected",
            ))
        }
    }
    let message = encode(order)?;
    let timeout = TimeVal::new(within.as_secs().try_into().unwrap_or(i64::MAX), 0);
    setsockopt(&control, sockopt::SendTimeout, &timeout)?;
    let fds: Vec<RawFd> = order.fds.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    let mut sent = sendmsg::<UnixAddr>(
        control.as_raw_fd(),
        &[IoSlice::new(&message)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    while sent < message.len() {
        sent += send(
            control.as_raw_fd(),
            &message[sent..],
            MsgFlags::MSG_NOSIGNAL,
        )?;
    }
    Ok(())
}

fn encode(order: &SpareOrder<'_>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    body.extend_from_slice(&order.exec_fd.to_le_bytes());
    put_count(&mut body, order.fds.len())?;
    for (_, target) in order.fds {
        body.extend_from_slice(&target.to_le_bytes());
    }
    put_bytes(&mut body, order.cwd.as_os_str().as_bytes())?;
    body.extend_from_slice(&order.cwd_identity.0.to_le_bytes());
    body.extend_from_slice(&order.cwd_identity.1.to_le_bytes());
    for list in [order.argv, order.env] {
        put_count(&mut body, list.len())?;
        for item in list {
            put_bytes(&mut body, item.as_bytes())?;
        }
    }
    order.inheritance.encode(&mut body);
    if body.len() > MOST_BODY {
        return Err(io::Error::other(
            "the command is too large for a spare sandbox",
        ));
    }
    let mut message = MAGIC.to_vec();
    put_count(&mut message, body.len())?;
    message.extend(body);
    Ok(message)
}

fn put_count(into: &mut Vec<u8>, count: usize) -> io::Result<()> {
    let count = u32::try_from(count).map_err(|_| io::Error::other("too large"))?;
    into.extend_from_slice(&count.to_le_bytes());
    Ok(())
}

fn put_bytes(into: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    put_count(into, bytes.len())?;
    into.extend_from_slice(bytes);
    Ok(())
}

/// The command a spare was ordered to run, its descriptors in place and
/// its working directory entered.
pub(crate) struct Ordered {
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) exec_fd: RawFd,
    pub(crate) inheritance: Inheritance,
}

/// The helper's report that the exec of the command failed with `errno`.
fn exec_failure_report(errno: i32) -> [u8; 5] {
    let [a, b, c, d] = errno.to_le_bytes();
    [EXEC_FAILED, a, b, c, d]
}

/// Says on `report` that the exec of the command taken failed with
/// `errno`.
pub(crate) fn say_exec_failed(report: &OwnedFd, errno: i32) {
    say(report, &exec_failure_report(errno));
}

/// Says on `report` that the command taken will not run, and `why`.
pub(crate) fn say_not_run(report: &OwnedFd, why: &str) {
    let mut end = why.len().min(MOST_WHY);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    let mut said = vec![NOT_RUN];
    said.extend_from_slice(&why.as_bytes()[..end]);
    say(report, &said);
}

/// One report, at once or not at all: the helper is about to exit.
fn say(report: &OwnedFd, said: &[u8]) {
    let _ = send(
        report.as_raw_fd(),
        said,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    );
}

/// The init's report that the command died of `signal`.
pub(crate) fn signal_report(signal: i32, core_dumped: bool) -> [u8; 3] {
    [
        SIGNALED,
        u8::try_from(signal).unwrap_or(0),
        u8::from(core_dumped),
    ]
}

/// How a spare's command ended, when its sandbox's exit code does not say
/// it all: what the spare said on its control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportedEnd {
    /// The command died of `signal` (the exit code is 128 plus it).
    Signaled { signal: i32, core_dumped: bool },
    /// The command never ran: its exec failed with `errno` (the exit code
    /// is a shell's for that, 126 or 127).
    ExecFailed { errno: i32 },
    /// The command never ran: the sandbox could not be completed for it,
    /// for the reason given (the exit code is 126).
    NotRun { why: String },
}

/// How a spare's command ended, from the spare's `control` socket once its
/// sandbox has ended with `exit_code`: the signal (and whether it dumped
/// core) the sandbox's init said the command died of, or the error its
/// exec failed with, when that is what the exit code stands for. `None`
/// when it said nothing: the command exited with that code.
pub fn reported_end(control: BorrowedFd<'_>, exit_code: i32) -> Option<ReportedEnd> {
    let mut report = [0u8; 1 + MOST_WHY];
    let read = recv(control.as_raw_fd(), &mut report, MsgFlags::MSG_DONTWAIT).ok()?;
    match report[..read] {
        [SIGNALED, signal, core @ (0 | 1)]
            if signal > 0 && exit_code == 128 + i32::from(signal) =>
        {
            Some(ReportedEnd::Signaled {
                signal: i32::from(signal),
                core_dumped: core == 1,
            })
        }
        [EXEC_FAILED, a, b, c, d] if matches!(exit_code, 126 | 127) => {
            Some(ReportedEnd::ExecFailed {
                errno: i32::from_le_bytes([a, b, c, d]),
            })
        }
        [NOT_RUN, ref why @ ..] if exit_code == 126 => Some(ReportedEnd::NotRun {
            why: String::from_utf8_lossy(why).into_owned(),
        }),
        _ => None,
    }
}

/// The helper's side: says it is ready on `control`, takes the order,
/// closes `control`, places the descriptors, enters the directory and
/// checks that it is the one the decision was made in. Once the order is
/// read, `report` holds the control socket again, close-on-exec and above
/// every descriptor placed: where to say that the command taken does not
/// run ([`say_not_run`], [`say_exec_failed`]).
pub(crate) fn take_order(control: RawFd, report: &mut Option<OwnedFd>) -> Result<Ordered, String> {
    let control = sys::take_inherited(control)
        .map_err(|errno| format!("the spare's control socket is not open: {errno}"))?;
    let broken =
        |error: &dyn std::fmt::Display| format!("the spare's order was not received: {error}");
    send(control.as_raw_fd(), &[READY], MsgFlags::MSG_NOSIGNAL).map_err(|e| broken(&e))?;
    let (head, received) = read_head(&control).map_err(|e| broken(&e))?;
    let length = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    if &head[..8] != MAGIC || length > MOST_BODY {
        return Err(broken(&"not an order"));
    }
    let mut body = vec![0u8; length];
    read_exact(&control, &mut body).map_err(|e| broken(&e))?;
    let order = decode(&body).ok_or_else(|| broken(&"malformed"))?;
    if order.targets.len() != received.len() || !order.targets.contains(&order.exec_fd) {
        return Err(broken(&"its descriptors do not match it"));
    }
    // Above every number placed, so that placing cannot close it; without
    // it (a descriptor limit below that), a command that does not run is
    // not said to the server.
    *report = sys::duplicate_above(&control, above_targets(&order.targets)).ok();
    drop(control);
    place(received, &order.targets)
        .map_err(|errno| format!("cannot place the descriptors: {errno}"))?;
    std::env::set_current_dir(&order.cwd).map_err(|error| {
        format!(
            "cannot change to directory {}: {error}",
            order.cwd.display()
        )
    })?;
    super::helper::require_same_files(&[(PathBuf::from("."), order.cwd_identity)])?;
    let mut env: Vec<(OsString, OsString)> = order
        .env
        .into_iter()
        .map(|entry| {
            let bytes = entry.into_vec();
            match bytes.iter().position(|&b| b == b'=') {
                Some(at) => (
                    OsString::from_vec(bytes[..at].to_vec()),
                    OsString::from_vec(bytes[at + 1..].to_vec()),
                ),
                None => (OsString::from_vec(bytes), OsString::new()),
            }
        })
        .collect();
    // As bubblewrap's `--chdir` does for a sandbox started for its command.
    env.retain(|(name, _)| name != "PWD");
    env.push(("PWD".into(), order.cwd.into_os_string()));
    Ok(Ordered {
        argv: order.argv,
        env,
        exec_fd: order.exec_fd,
        inheritance: order.inheritance,
    })
}

/// The order's fixed head, and every descriptor that came with it.
fn read_head(control: &OwnedFd) -> nix::Result<([u8; 12], Vec<OwnedFd>)> {
    let mut head = [0u8; 12];
    let mut filled = 0;
    let mut fds = Vec::new();
    let mut space = cmsg_space!([RawFd; MOST_DESCRIPTORS]);
    while filled < head.len() {
        let mut buffer = [IoSliceMut::new(&mut head[filled..])];
        let message = recvmsg::<UnixAddr>(
            control.as_raw_fd(),
            &mut buffer,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received.into_iter().map(sys::own_received));
            }
        }
        if message.bytes == 0 {
            return Err(nix::Error::ECONNRESET);
        }
        filled += message.bytes;
    }
    Ok((head, fds))
}

fn read_exact(control: &OwnedFd, mut into: &mut [u8]) -> nix::Result<()> {
    while !into.is_empty() {
        match nix::unistd::read(control, into)? {
            0 => return Err(nix::Error::ECONNRESET),
            read => into = &mut into[read..],
        }
    }
    Ok(())
}

struct Decoded {
    exec_fd: RawFd,
    targets: Vec<RawFd>,
    cwd: PathBuf,
    cwd_identity: (u64, u64),
    argv: Vec<OsString>,
    env: Vec<OsString>,
    inheritance: Inheritance,
}

/// Reads an order's body front to back; `None` past its end.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.0.split_first_chunk::<N>()?;
        self.0 = tail;
        Some(*head)
    }

    fn count(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take()?) as usize)
    }

    fn bytes(&mut self) -> Option<OsString> {
        let length = self.count()?;
        let (head, tail) = self.0.split_at_checked(length)?;
        self.0 = tail;
        Some(OsString::from_vec(head.to_vec()))
    }
}

fn decode(body: &[u8]) -> Option<Decoded> {
    let mut body = Body(body);
    let exec_fd = i32::from_le_bytes(body.take()?);
    let count = body.count()?;
    let mut targets = Vec::with_capacity(count.min(MOST_DESCRIPTORS));
    for _ in 0..count {
        targets.push(i32::from_le_bytes(body.take()?));
    }
    let cwd = PathBuf::from(body.bytes()?);
    let device = u64::from_le_bytes(body.take()?);
    let inode = u64::from_le_bytes(body.take()?);
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        for _ in 0..body.count()? {
            list.push(body.bytes()?);
        }
    }
    let [argv, env] = lists;
    let (inheritance, rest) = Inheritance::decode(body.0)?;
    body.0 = rest;
    let mut sorted = targets.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let valid = body.0.is_empty()
        && !argv.is_empty()
        && sorted.len() == targets.len()
        && targets.iter().all(|&target| target >= 0);
    valid.then_some(Decoded {
        exec_fd,
        targets,
        cwd,
        cwd_identity: (device, inode),
        argv,
        env,
        inheritance,
    })
}

/// Gives each received descriptor its number. They first move above every
/// target, so that placing one never closes another; the spare's own
/// standard streams (`/dev/null`) go unless the order replaces them.
/// The least number above every target and the standard streams.
fn above_targets(targets: &[RawFd]) -> RawFd {
    targets.iter().copied().max().unwrap_or(2).max(2) + 1
}

fn place(received: Vec<OwnedFd>, targets: &[RawFd]) -> nix::Result<()> {
    let above = above_targets(targets);
    let moved: Vec<OwnedFd> = received
        .iter()
        .map(|fd| sys::duplicate_above(fd, above))
        .collect::<nix::Result<_>>()?;
    drop(received);
    for standard in 0..=2 {
        if !targets.contains(&standard) {
            sys::close_number(standard);
        }
    }
    // Standard error first: a later failure is then told to the
    // requester, as a sandbox started for its command would tell it.
    let mut placing: Vec<(&OwnedFd, RawFd)> = moved.iter().zip(targets.iter().copied()).collect();
    placing.sort_by_key(|&(_, target)| target != 2);
    for (fd, target) in placing {
        sys::duplicate_onto(fd, target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_taken_only_as_the_exit_code_it_stands_for() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        use std::os::fd::AsFd;
        type Case<'a> = (&'a [u8], i32, Option<ReportedEnd>);
        let signaled = |signal, core_dumped| {
            Some(ReportedEnd::Signaled {
                signal,
                core_dumped,
            })
        };
        let cases: &[Case] = &[
            (&signal_report(15, false), 143, signaled(15, false)),
            (&signal_report(11, true), 139, signaled(11, true)),
            (
                &exec_failure_report(libc::E2BIG),
                127,
                Some(ReportedEnd::ExecFailed { errno: libc::E2BIG }),
            ),
            (
                &exec_failure_report(libc::EACCES),
                126,
                Some(ReportedEnd::ExecFailed {
                    errno: libc::EACCES,
                }),
            ),
            // A code no failed exec ends with: the command's own.
            (&exec_failure_report(libc::E2BIG), 1, None),
            (
                b"Nits directory was replaced",
                126,
                Some(ReportedEnd::NotRun {
                    why: "its directory was replaced".into(),
                }),
            ),
            (b"Nits directory was replaced", 127, None),
            (b"E\x07\x00\x00", 127, None),
            // The code says otherwise: the report is not the command's.
            (&signal_report(15, false), 0, None),
            (&signal_report(15, false), 142, None),
            (b"", 143, None),
            (b"S\x0f", 143, None),
            (b"S\x0f\x02", 143, None),
            (b"S\x0f\x00\x00", 143, None),
            (b"S\x00\x00", 128, None),
            (b"R\x0f\x00", 143, None),
        ];
        for (written, code, expected) in cases {
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .unwrap();
            if !written.is_empty() {
                send(theirs.as_raw_fd(), written, MsgFlags::empty()).unwrap();
            }
            drop(theirs);
            assert_eq!(
                reported_end(ours.as_fd(), *code),
                *expected,
                "{written:?} with exit code {code}"
            );
        }
    }

    #[test]
    fn an_order_decodes_to_what_was_encoded_and_nothing_shorter_decodes() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let fds = [
            (std::os::fd::AsFd::as_fd(&null), 0),
            (std::os::fd::AsFd::as_fd(&null), 9),
        ];
        let argv = [OsString::from("/bin/echo"), OsString::from("a b")];
        let env = [OsString::from("A=1=2"), OsString::from("B=")];
        let order = SpareOrder {
            cwd: Path::new("/work/dir"),
            cwd_identity: (7, 42),
            argv: &argv,
            env: &env,
            exec_fd: 9,
            fds: &fds,
            inheritance: &Inheritance {
                umask: 0o77,
                ignored: 6,
                limits: vec![(7, 200, 4096)],
            },
        };
        let message = encode(&order).unwrap();
        assert_eq!(&message[..8], MAGIC);
        let body = &message[12..];
        let decoded = decode(body).unwrap();
        assert_eq!(decoded.exec_fd, 9);
        assert_eq!(decoded.targets, [0, 9]);
        assert_eq!(decoded.cwd, Path::new("/work/dir"));
        assert_eq!(decoded.cwd_identity, (7, 42));
        assert_eq!(decoded.argv, argv);
        assert_eq!(decoded.env, env);
        assert_eq!(&decoded.inheritance, order.inheritance);
        for cut in 0..body.len() {
            assert!(
                decode(&body[..cut]).is_none(),
                "a body cut at {cut} decoded"
            );
        }
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(decode(&longer).is_none());
    }
}
