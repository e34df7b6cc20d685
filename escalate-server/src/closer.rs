//! Closing what requesters sent, on threads that may wait.
//!
//! Closing a file can wait in the kernel. The last close of a TCP socket
//! with `SO_LINGER` set and data still unsent waits up to its linger time;
//! the last close of a Unix socket closes every descriptor still queued on
//! it, with the same effect, and theirs in turn. A requester chooses the
//! files it sends and what it queues on the sockets it shares with us. A
//! close done by a tokio worker, or by one of tokio's blocking threads
//! (which every session shares, and whose number is bounded), could then be
//! held for as long as the requester likes, and with the workers held no
//! session is served.
//!
//! So every descriptor a requester sent is closed here, by a few threads
//! that do nothing else, and a request socket the server is done with is
//! closed here whenever anything is left in its queue. When every closer
//! thread is held, descriptors wait their turn: the server keeps them open
//! (descriptors held too long, never a decision held up).
//!
//! This module must never block its caller, and never read, write or
//! otherwise use a descriptor it is given: it only closes them.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use nix::sys::socket::{recv, shutdown, MsgFlags, Shutdown};

/// Threads that close, at most. Each one a requester holds (with a socket
/// that lingers) is one fewer; past these, descriptors queue.
const MOST_THREADS: usize = 8;
/// A close needs very little stack.
const STACK_SIZE: usize = 64 << 10;

/// A descriptor whose close, when it is dropped, is left to the closer
/// threads: one a requester sent, or one that travels with such ones.
#[derive(Debug)]
pub(crate) struct Deferred(Option<OwnedFd>);

impl From<OwnedFd> for Deferred {
    fn from(fd: OwnedFd) -> Deferred {
        Deferred(Some(fd))
    }
}

impl AsFd for Deferred {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            Some(fd) => fd.as_fd(),
            // Only `drop` takes the descriptor out, and nothing can borrow
            // a value being dropped.
            None => unreachable!("a deferred descriptor is used after its drop"),
        }
    }
}

impl AsRawFd for Deferred {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        close_later(self.0.take());
    }
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
    if state.idle == 0 && state.threads < MOST_THREADS {
        let started = std::thread::Builder::new()
            .name("execgate-closer".into())
            .stack_size(STACK_SIZE)
            .spawn(|| closer().work());
        match started {
            Ok(_) => state.threads += 1,
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
    let _ = shutdown(socket.as_raw_fd(), Shutdown::Read);
    let mut probe = [0u8; 1];
    // Shut for reading, an empty queue reads as the end of the stream.
    let peeked = recv(
        socket.as_raw_fd(),
        &mut probe,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    );
    if peeked == Ok(0) {
        drop(socket);
    } else {
        close_later([socket]);
    }
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

    fn work(&self) {
        let mut state = self.lock();
        loop {
            match state.pending.pop_front() {
                Some(fd) => {
                    drop(state);
                    drop(fd);
                    state = self.lock();
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

    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

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
    fn a_deferred_descriptor_is_closed_by_a_closer_thread() {
        let (ours, theirs) = stream_pair();
        drop(Deferred::from(theirs));
        assert!(closed_soon(&ours));
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
