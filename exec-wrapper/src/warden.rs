//! The warden: the wrapper started once per server process as
//! `WRAPPER --warden FD [CGROUP-DIR]`, so that nothing a session escalated
//! outlives the process that owns it, however that process ends (a crash,
//! `SIGKILL`, an agent killed by its own supervisor).
//!
//! It reads the server's [`WardenRecord`]s from the pipe at `FD` until the
//! server has gone: end of file, since the server holds the only write end
//! (close-on-exec), or its pidfd (the warden is its child) readable,
//! should another process have opened that write end through the server's
//! `/proc/PID/fd` and held it. Then it kills everything in
//! `CGROUP-DIR` (the server's cgroup, one child cgroup per session) with
//! `cgroup.kill`, kills the process groups still tracked, removes the
//! cgroups and exits. While the server lives it only sleeps in `poll`.
//!
//! It must never signal a group the server did not name or has untracked,
//! and never outlive the cleanup. It ignores the signals a terminal or a
//! process-group kill aimed at the server would send it: it is in a process
//! group of its own, and ends only with its server.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use execgate_protocol::{WardenRecord, WARDEN_RECORD_LEN};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::sys;

/// How long the warden waits for a killed cgroup to empty before removing
/// it anyway fails and it gives up.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// How many reads of the pipe the warden makes, at most, once the server's
/// pidfd says it has ended: more than a full pipe's worth of records.
const DRAIN_READS: usize = 64 * 1024;

/// The warden's whole life; `arguments` are the wrapper's own, `--warden`
/// first after the program name.
pub(crate) fn watch(arguments: &[OsString]) -> ! {
    let Some(fd) = arguments
        .get(2)
        .and_then(|fd| fd.to_str())
        .and_then(|fd| fd.parse::<RawFd>().ok())
        .and_then(sys::borrow_open_fd)
    else {
        crate::fail("warden: usage: --warden FD [CGROUP-DIR]")
    };
    let cgroup = arguments.get(3).map(PathBuf::from);
    sys::ignore_termination_signals();

    let server = sys::pidfd_of_parent();

    let mut records = Records::default();
    loop {
        let (records_ready, server_gone) = wait(fd, server.as_ref().map(AsFd::as_fd));
        if records_ready && !records.read_from(fd) {
            break;
        }
        if server_gone {
            // Another process outside the sandboxes may hold the pipe's
            // write end open (through the server's `/proc/PID/fd`), so
            // no end of file would come: take what the server wrote
            // before it ended, and no more than it could have.
            for _ in 0..DRAIN_READS {
                if !readable_now(fd) || !records.read_from(fd) {
                    break;
                }
            }
            break;
        }
    }

    if let Some(cgroup) = &cgroup {
        // Recursive: every session's cgroup below the server's, and every
        // process in them, however it left its process group or session.
        let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
    }
    for pgid in records.groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    if let Some(cgroup) = &cgroup {
        remove_when_empty(cgroup);
    }
    std::process::exit(0)
}

/// The process groups the server named, and a record read in part.
#[derive(Default)]
struct Records {
    groups: Vec<i32>,
    record: [u8; WARDEN_RECORD_LEN],
    filled: usize,
}

impl Records {
    /// Reads what the pipe holds (it must not block: the pipe was polled
    /// readable); false once the pipe says the server is gone.
    fn read_from(&mut self, fd: BorrowedFd<'_>) -> bool {
        let read = loop {
            match nix::unistd::read(fd, &mut self.record[self.filled..]) {
                Err(nix::errno::Errno::EINTR) => continue,
                // Anything else means the server is no longer there to
                // talk to.
                Ok(0) | Err(_) => return false,
                Ok(read) => break read,
            }
        };
        self.filled += read;
        if self.filled < WARDEN_RECORD_LEN {
            return true;
        }
        self.filled = 0;
        match WardenRecord::decode(&self.record) {
            Some(WardenRecord::Track(pgid)) => self.groups.push(pgid),
            Some(WardenRecord::Untrack(pgid)) => {
                if let Some(index) = self.groups.iter().position(|tracked| *tracked == pgid) {
                    self.groups.swap_remove(index);
                }
            }
            None => {}
        }
        true
    }
}

/// Sleeps until the pipe has something to read (a record, or its end) or
/// the server's pidfd says it has ended; says which.
fn wait(pipe: BorrowedFd<'_>, server: Option<BorrowedFd<'_>>) -> (bool, bool) {
    // `POLLNVAL`: a pipe that is not open reads as the server gone, as
    // `read`'s `EBADF` did, rather than spinning.
    let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
    // The server's pidfd, or the pipe twice (no allocation: the warden
    // lives as long as its server, on the wrapper's bump arena).
    let mut fds = [
        PollFd::new(pipe, PollFlags::POLLIN),
        PollFd::new(server.unwrap_or(pipe), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            // Polling two valid descriptors does not fail otherwise; if it
            // did, reading the pipe is what the warden did before pidfds.
            Err(_) => return (true, false),
        }
        let is_ready =
            |fd: &PollFd<'_>| fd.revents().is_some_and(|events| events.intersects(ready));
        let records_ready = is_ready(&fds[0]);
        let server_gone = server.is_some() && is_ready(&fds[1]);
        if records_ready || server_gone {
            return (records_ready, server_gone);
        }
    }
}

/// Whether the pipe has something to read now.
fn readable_now(pipe: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(pipe, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1..))
}

/// Removes `cgroup` and the sessions' cgroups below it (and any a program
/// made below those) once the killed processes have left them.
fn remove_when_empty(cgroup: &Path) {
    let deadline = Instant::now() + EMPTY_WAIT;
    loop {
        let populated = std::fs::read_to_string(cgroup.join("cgroup.events"))
            .map(|events| events.lines().any(|line| line == "populated 1"))
            .unwrap_or(false);
        if !populated || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = execgate_protocol::remove_cgroup_tree(cgroup);
}
