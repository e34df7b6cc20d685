//! Which request a request came from: a nested shell's execs point at the
//! exec that started that shell.
//!
//! Derived from process ancestry the kernel reports, never from the
//! request: a program run in place keeps the wrapper's pid, and an escalated
//! child has the pid the server gave it, so each decision records the pid
//! its program runs as. A later request whose requester descends from such
//! a pid names that decision as its parent. Best effort: a recorded pid
//! reused after its program ended can point at the wrong parent, which the
//! audit schema says.
//!
//! Every request walks this ancestry, and its `/proc/PID/stat` reads were
//! a fifth of the server's work per request. The requester's parent now
//! comes from a pidfd for the requester, which the request socket gives
//! (where the kernel can: else `/proc`). The processes above it (its
//! shell, the shell's parent) are the same ones request after request:
//! their parents are remembered, each with a pidfd that says whether the
//! pid still names the process it was read from. A remembered process
//! keeps the parent it had when first read, even if it has been reparented
//! since: that one started it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError};

use crate::sys;

/// How many programs are remembered; the oldest are forgotten first.
const REMEMBERED: usize = 4096;
/// How far up the requester's ancestry the search goes.
const MAX_DEPTH: usize = 8;
/// How many ancestors' parents are remembered (one pidfd each).
const REMEMBERED_ANCESTORS: usize = 64;

#[derive(Default)]
pub(crate) struct Lineage {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    request_by_pid: HashMap<i32, u64>,
    order: VecDeque<i32>,
    ancestors: HashMap<i32, Ancestor>,
}

/// A process above some requester, and its parent when it was read.
struct Ancestor {
    /// Readable once the process has ended, and its pid may name another.
    pidfd: OwnedFd,
    parent: i32,
}

impl Lineage {
    /// `pid` runs the program `request_id` decided.
    pub(crate) fn record(&self, pid: i32, request_id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.request_by_pid.insert(pid, request_id).is_none() {
            inner.order.push_back(pid);
        }
        while inner.order.len() > REMEMBERED {
            if let Some(oldest) = inner.order.pop_front() {
                inner.request_by_pid.remove(&oldest);
            }
        }
    }

    /// The request whose program is `requester` or its nearest recorded
    /// ancestor. The requester itself counts: a shell run in place that
    /// executes its last command without forking asks from its own pid.
    ///
    /// `requester_parent` is the requester's parent as its pidfd told it,
    /// `None` where the kernel cannot tell (then `/proc` is read).
    pub(crate) fn parent_of(
        &self,
        requester: i32,
        requester_parent: Option<io::Result<i32>>,
    ) -> Option<u64> {
        if self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .request_by_pid
            .is_empty()
        {
            return None;
        }
        // Above the server itself lies nothing a session started.
        let server = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let mut pid = requester;
        for depth in 0..MAX_DEPTH {
            if pid <= 1 || pid == server {
                return None;
            }
            let found = self
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .request_by_pid
                .get(&pid)
                .copied();
            if found.is_some() {
                return found;
            }
            // The requester itself is new each time: not worth remembering.
            pid = if depth == 0 {
                match &requester_parent {
                    Some(Ok(parent)) => *parent,
                    Some(Err(_)) => return None,
                    None => parent_pid(pid)?,
                }
            } else {
                self.ancestor_parent(pid)?
            };
        }
        None
    }

    /// The parent of `pid`, remembered from an earlier request while the
    /// process lives, else read and remembered.
    fn ancestor_parent(&self, pid: i32) -> Option<i32> {
        {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(ancestor) = inner.ancestors.get(&pid) {
                if !sys::has_ended(&ancestor.pidfd) {
                    return Some(ancestor.parent);
                }
                inner.ancestors.remove(&pid);
            }
        }
        // The pidfd first: if the process still lives after the read, the
        // line read was its own and not a successor's with the same pid.
        let pidfd = sys::pidfd_open(pid).ok();
        let parent = parent_pid(pid)?;
        if let Some(pidfd) = pidfd.filter(|pidfd| !sys::has_ended(pidfd)) {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if inner.ancestors.len() >= REMEMBERED_ANCESTORS {
                inner
                    .ancestors
                    .retain(|_, ancestor| !sys::has_ended(&ancestor.pidfd));
            }
            if inner.ancestors.len() < REMEMBERED_ANCESTORS {
                inner.ancestors.insert(pid, Ancestor { pidfd, parent });
            }
        }
        Some(parent)
    }
}

/// The parent of `pid`, from `/proc/PID/stat`: one `read` of the line's
/// start (this runs for every request; `read_to_string` would stat the
/// file and read it in five pieces).
fn parent_pid(pid: i32) -> Option<i32> {
    let mut stat = [0u8; 512];
    let len = File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut file| file.read(&mut stat))
        .ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses,
    // and the fields after it hold none.
    let stat = &stat[..len];
    let after_comm = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let ppid = after_comm
        .split(|&b| b == b' ')
        .filter(|field| !field.is_empty())
        .nth(1)?;
    std::str::from_utf8(ppid).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first child `pid` has, once it has one.
    fn first_child(pid: i32) -> i32 {
        let children = format!("/proc/{pid}/task/{pid}/children");
        for _ in 0..500 {
            let child = std::fs::read_to_string(&children)
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse::<i32>().ok());
            if let Some(child) = child {
                return child;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{pid} started no child");
    }

    #[test]
    fn the_nearest_recorded_ancestor_is_the_parent() {
        // A shell (standing for a program run in place) with a child of its
        // own (standing for the wrapper it starts).
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .expect("sh");
        let shell_pid = shell.id() as i32;
        let wrapper = first_child(shell_pid);
        let lineage = Lineage::default();
        assert_eq!(lineage.parent_of(wrapper, None), None);
        lineage.record(shell_pid, 7);
        assert_eq!(lineage.parent_of(wrapper, None), Some(7));
        // The requester itself is the nearest.
        lineage.record(wrapper, 9);
        assert_eq!(lineage.parent_of(wrapper, None), Some(9));
        // The search stops at the server: its own ancestors are not looked at.
        let me = std::process::id() as i32;
        lineage.record(parent_pid(me).expect("a parent"), 11);
        assert_eq!(lineage.parent_of(me, None), None);
        let _ = shell.kill();
        let _ = shell.wait();
    }

    #[test]
    fn the_requesters_parent_from_its_pidfd_is_taken_as_given() {
        let lineage = Lineage::default();
        lineage.record(4_000_000, 3);
        // Any process but the server's own stands for the requester.
        let requester = nix::unistd::getppid().as_raw();
        // Its parent as the pidfd told it, not as /proc says.
        assert_eq!(lineage.parent_of(requester, Some(Ok(4_000_000))), Some(3));
        // A requester the kernel no longer knows has no parent.
        let gone = Some(Err(io::Error::from_raw_os_error(libc::ESRCH)));
        assert_eq!(lineage.parent_of(requester, gone), None);
    }

    #[test]
    fn an_ancestor_is_read_once_and_forgotten_when_it_ends() {
        // outer shell -> inner shell -> sleep: the requester is the sleep,
        // the inner shell the ancestor remembered.
        let mut outer = std::process::Command::new("sh")
            .args(["-c", "sh -c 'sleep 5 & wait' & wait"])
            .spawn()
            .expect("sh");
        let outer_pid = outer.id() as i32;
        let inner_pid = first_child(outer_pid);
        let requester = first_child(inner_pid);
        let lineage = Lineage::default();
        lineage.record(outer_pid, 7);
        assert_eq!(lineage.parent_of(requester, None), Some(7));
        let remembered = |pid| {
            let inner = lineage.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.ancestors.get(&pid).map(|ancestor| ancestor.parent)
        };
        assert_eq!(remembered(inner_pid), Some(outer_pid));
        // Asked again, the remembered parent gives the same answer.
        assert_eq!(lineage.parent_of(requester, None), Some(7));
        // Once the inner shell has ended, its pid names nothing remembered.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(inner_pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the inner shell");
        for _ in 0..500 {
            if std::fs::metadata(format!("/proc/{inner_pid}")).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(lineage.ancestor_parent(inner_pid), None);
        assert_eq!(remembered(inner_pid), None);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(requester),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = outer.kill();
        let _ = outer.wait();
    }

    #[test]
    fn old_entries_are_forgotten() {
        let lineage = Lineage::default();
        for pid in 0..(REMEMBERED as i32 + 10) {
            lineage.record(pid + 100_000, 1);
        }
        let inner = lineage.inner.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(inner.request_by_pid.len(), REMEMBERED);
        assert!(!inner.request_by_pid.contains_key(&100_000));
    }
}
