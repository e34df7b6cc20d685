//! Closing what requesters sent, on threads that may wait.
//!
//! Closing a file can wait in the kernel. The last close of a TCP socket
//! with `SO_LINGER` set and data still unsent waits up to its linger time;
//! the last close of a Unix socket closes every descriptor still queued on
//! it, with the same effect, and theirs in turn. A requester chooses the
//! files it sends and what it queues on the sockets it shares with us. A
//! close done on the thread every session is served on, or by one of
//! tokio's blocking threads (which every session shares, and whose number
//! is bounded), could then be held for as long as the requester likes, and
//! with that thread held no session is served.
//!
//! So a descriptor a requester sent is closed where it is dropped only when
//! its kind cannot wait on the requester (a file, a pipe, `/dev/null` and
//! its kin, a pseudo-terminal: what an escalated command's standard
//! streams nearly always are), and by a few threads that do nothing else
//! otherwise (sockets above all); a request socket the
//! server is done with goes to them whenever anything is left in its queue.
//! One thread serves; another starts only when every one has been held by
//! a single close for [`HELD`], up to [`MOST_THREADS`]. When all of them
//! are held, descriptors wait their turn: the server keeps them open
//! (descriptors held too long, never a decision held up).
//!
//! This module must never block its caller, and never read, write or
//! otherwise use a descriptor it is given: it only looks at its kind, and
//! closes it.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::socket::{shutdown, Shutdown};
use nix::sys::stat::{fstat, major, SFlag};

/// Threads that close, at most. Each one a requester holds (with a socket
/// that lingers) is one fewer; past these, descriptors queue.
const MOST_THREADS: usize = 8;
/// How long one close takes before its thread counts as held.
const HELD: Duration = Duration::from_millis(100);
/// A close needs very little stack.
const STACK_SIZE: usize = 64 << 10;

/// A descriptor that is closed, when dropped, where that cannot wait, and
/// by the closer threads otherwise.
#[derive(Debug)]
pub(crate) struct SafeClose {
    fd: Option<OwnedFd>,
    /// Closed where dropped: its kind's last close cannot wait.
    here: bool,
}

impl SafeClose {
    /// One a requester sent.
    pub(crate) fn sent(fd: OwnedFd) -> SafeClose {
        let here = closes_without_waiting(fd.as_fd());
        SafeClose { fd: Some(fd), here }
    }

    /// One the server opened itself, travelling with sent ones.
    pub(crate) fn own(fd: OwnedFd) -> SafeClose {
        SafeClose {
            fd: Some(fd),
            here: true,
        }
    }
}

impl AsFd for SafeClose {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            // Only `drop` takes the descriptor out, and nothing can borrow
            // a value being dropped.
            None => unreachable!("a descriptor is used after its drop"),
        }
    }
}

impl AsRawFd for SafeClose {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for SafeClose {
    fn drop(&mut self) {
        if !self.here {
            close_later(self.fd.take());
        }
    }
}

/// Kinds whose last close returns at once, or waits on nothing a
/// requester serves: regular files and directories (a FUSE file's is
/// flushed by its server, which a sandbox cannot start), pipes, the memory
/// devices (`/dev/null`, `/dev/zero`, `/dev/urandom`; major 1) and
/// pseudo-terminal ends (`/dev/ptmx`, `/dev/pts/N`: majors 136-143). Not
/// sockets, whose last close lingers or closes what is queued on them, and
/// not other devices (a serial line waits for its output to drain). These
/// are closed where they are dropped, so that what an escalated command
/// wrote to a pipe or held locked is never held open behind a closer
/// thread.
fn closes_without_waiting(fd: BorrowedFd<'_>) -> bool {
    let Ok(stat) = fstat(fd) else {
        return false;
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if [SFlag::S_IFREG, SFlag::S_IFDIR, SFlag::S_IFIFO].contains(&kind) {
        return true;
    }
    if kind != SFlag::S_IFCHR {
        return false;
    }
    let ptmx = nix::sys::stat::makedev(5, 2);
    matches!(major(stat.st_rdev), 1 | 136..=143) || stat.st_rdev == ptmx
}

/// Hands `fds` to the closer threads. Never waits.
pub(crate) fn close_later(fds: impl IntoIterator<Item = OwnedFd>) {
    let mut fds = fds.into_iter().peekable();
    if fds.peek().is_none() {
        return;
    }
    let closers = closer();
    let mut state = closers.lock();
    state.pending.extend(fds);
    if state.idle == 0 && state.threads < MOST_THREADS && state.all_held() {
        let number = state.threads;
        let started = std::thread::Builder::new()
            .name("execgate-closer".into())
            .stack_size(STACK_SIZE)
            .spawn(move || closer().work(number));
        match started {
            Ok(_) => {
                state.threads += 1;
                state.closing_since[number] = None;
            }
            // The descriptors wait for a thread that exists, or the next
            // call's attempt to start one.
            Err(error) => tracing::warn!(%error, "cannot start a closer thread"),
        }
    }
    drop(state);
    closers.ready.notify_one();
}

/// Closes a request socket the server is done with. What the requester
/// queued on it and the server never read is closed with its last close,
/// so reading is shut first (nothing more can be queued), and a socket
/// with anything left in its queue goes to the closer threads. An empty
/// one, nearly always, is closed here.
pub(crate) fn retire(socket: OwnedFd) {
    if left_queued(socket.as_fd()) {
        close_later([socket]);
    } else {
        drop(socket);
    }
}

/// Shuts `socket` for reading, then tells whether anything is left in its
/// queue: `FIONREAD` counts an out-of-band byte too, which a peek skips.
/// Any doubt counts as something left.
fn left_queued(socket: BorrowedFd<'_>) -> bool {
    let _ = shutdown(socket.as_raw_fd(), Shutdown::Read);
    !matches!(crate::sys::bytes_queued(socket), Ok(0))
}

struct Closer {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    pending: VecDeque<OwnedFd>,
    threads: usize,
    idle: usize,
    /// When each thread started the close it is in, if it is in one.
    closing_since: [Option<Instant>; MOST_THREADS],
}

impl State {
    /// Every thread is in a close that has taken [`HELD`] already (true
    /// when there is no thread yet).
    fn all_held(&self) -> bool {
        self.closing_since[..self.threads]
            .iter()
            .all(|since| since.is_some_and(|since| since.elapsed() >= HELD))
    }
}

fn closer() -> &'static Closer {
    static CLOSER: OnceLock<Closer> = OnceLock::new();
    CLOSER.get_or_init(|| Closer {
        state: Mutex::default(),
        ready: Condvar::new(),
    })
}

impl Closer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn work(&self, number: usize) {
        let mut state = self.lock();
        loop {
            match state.pending.pop_front() {
                Some(fd) => {
                    state.closing_since[number] = Some(Instant::now());
                    drop(state);
                    drop(fd);
                    state = self.lock();
                    state.closing_since[number] = None;
                }
                None => {
                    state.idle += 1;
                    state = self
                        .ready
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    state.idle -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    use nix::sys::socket::{recv, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

    use super::*;

    fn stream_pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    /// Waits until `fd`'s peer is closed (its read end sees the end).
    fn closed_soon(ours: &OwnedFd) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut byte = [0u8; 1];
        while Instant::now() < deadline {
            match recv(ours.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return true,
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        false
    }

    #[test]
    fn a_sent_socket_is_closed_by_a_closer_thread() {
        let (ours, theirs) = stream_pair();
        drop(SafeClose::sent(theirs));
        assert!(closed_soon(&ours));
    }

    #[test]
    fn kinds_whose_close_cannot_wait_are_closed_where_they_are_dropped() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let file: OwnedFd = std::fs::File::open("/proc/self/status").unwrap().into();
        let (socket, _) = stream_pair();
        let here = |fd: OwnedFd| SafeClose::sent(fd).here;
        assert!(here(read));
        assert!(here(write));
        assert!(here(null));
        assert!(here(file));
        assert!(!here(socket));
    }

    #[test]
    fn a_retired_socket_with_something_queued_is_still_closed() {
        for queued in [false, true] {
            let (ours, theirs) = stream_pair();
            let (carried, kept) = stream_pair();
            if queued {
                execgate_protocol::send_with_fds(ours.as_fd(), b"x", &[carried.as_fd()]).unwrap();
            }
            drop(carried);
            retire(theirs);
            assert!(closed_soon(&ours), "queued: {queued}");
            // What was queued on it went with it.
            assert!(closed_soon(&kept), "queued: {queued}");
        }
    }

    #[test]
    fn an_out_of_band_byte_is_left_queued() {
        let (ours, theirs) = stream_pair();
        let sent = nix::sys::socket::send(ours.as_raw_fd(), b"x", MsgFlags::MSG_OOB);
        assert_eq!(sent, Ok(1));
        assert!(left_queued(theirs.as_fd()));
        let (_, empty) = stream_pair();
        assert!(!left_queued(empty.as_fd()));
    }

    #[test]
    fn nothing_can_be_queued_on_a_retired_socket() {
        let (ours, theirs) = stream_pair();
        let copy = theirs.try_clone().unwrap();
        retire(theirs);
        // A copy keeps the socket open; reading is still shut.
        let sent = nix::sys::socket::send(
            ours.as_raw_fd(),
            b"x",
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
        assert_eq!(sent, Err(nix::errno::Errno::EPIPE));
        drop(copy);
    }
}
