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
//! a fifth of the server's work per request. Where the kernel can tell a
//! process's parent through a pidfd (Linux 6.13), no `/proc` file is read:
//! the requester's pidfd comes with the request socket, and the processes
//! above it (its shell, the shell's parent), the same request after
//! request, are remembered by pidfd. A pidfd names one process whatever
//! becomes of its pid, and the parent it tells is the current one.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use crate::sys;

/// How many programs are remembered; the oldest are forgotten first.
const REMEMBERED: usize = 4096;
/// How far up the requester's ancestry the search goes.
const MAX_DEPTH: usize = 8;
/// How many ancestors are remembered (one pidfd each); the oldest are
/// forgotten first.
const REMEMBERED_ANCESTORS: usize = 64;

#[derive(Default)]
pub(crate) struct Lineage {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    request_by_pid: HashMap<i32, u64>,
    order: VecDeque<i32>,
    /// Processes above requesters, by pid, each with a pidfd for it.
    ancestors: HashMap<i32, OwnedFd>,
    ancestor_order: VecDeque<i32>,
}

impl Inner {
    fn remember_ancestor(&mut self, pid: i32, pidfd: OwnedFd) {
        if self.ancestors.insert(pid, pidfd).is_none() {
            self.ancestor_order.push_back(pid);
        }
        while self.ancestor_order.len() > REMEMBERED_ANCESTORS {
            if let Some(oldest) = self.ancestor_order.pop_front() {
                self.ancestors.remove(&oldest);
            }
        }
    }

    fn forget_ancestor(&mut self, pid: i32) {
        self.ancestors.remove(&pid);
        self.ancestor_order.retain(|&remembered| remembered != pid);
    }
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

    /// `pid` never ran the program `request_id` decided after all (a spare
    /// sandbox that failed before its command): its record goes, so that
    /// a process given the number later is not taken for its descendant.
    pub(crate) fn forget(&self, pid: i32, request_id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.request_by_pid.get(&pid) == Some(&request_id) {
            inner.request_by_pid.remove(&pid);
            inner.order.retain(|&remembered| remembered != pid);
        }
    }

    /// The request whose program is `requester` or its nearest recorded
    /// ancestor. The requester itself counts: a shell run in place that
    /// executes its last command without forking asks from its own pid.
    ///
    /// `requester_parent` asks the kernel for the requester's parent
    /// through its pidfd (`None` where it cannot tell: `/proc` is read);
    /// it is called only when some program has been recorded.
    pub(crate) fn parent_of(
        &self,
        requester: i32,
        requester_parent: impl FnOnce() -> Option<io::Result<i32>>,
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
        let mut requester_parent = Some(requester_parent);
        let mut pid = requester;
        for _ in 0..MAX_DEPTH {
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
            // The requester is new each time: not worth remembering.
            pid = match requester_parent.take() {
                Some(ask) => match ask() {
                    Some(Ok(parent)) => parent,
                    Some(Err(error)) if sys::process_gone(&error) => return None,
                    _ => parent_pid(pid)?,
                },
                None => self.ancestor_parent(pid)?,
            };
        }
        None
    }

    /// The current parent of `pid`, a process above some requester: asked
    /// through the pidfd remembered for it, else through a new one, which
    /// is remembered; from `/proc` where the kernel cannot tell.
    fn ancestor_parent(&self, pid: i32) -> Option<i32> {
        {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            match inner
                .ancestors
                .get(&pid)
                .and_then(|pidfd| sys::pidfd_parent(pidfd.as_fd()))
            {
                Some(Ok(parent)) => return Some(parent),
                // It has ended: the pid may name another process now.
                Some(Err(_)) => inner.forget_ancestor(pid),
                None => {}
            }
        }
        let Ok(pidfd) = sys::pidfd_open(pid) else {
            return parent_pid(pid);
        };
        match sys::pidfd_parent(pidfd.as_fd()) {
            Some(Ok(parent)) => {
                self.inner
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remember_ancestor(pid, pidfd);
                Some(parent)
            }
            Some(Err(error)) if sys::process_gone(&error) => None,
            _ => parent_pid(pid),
        }
    }
}

/// The parent of `pid`, from `/proc/PID/stat`: one `read` of the line's
/// start (this runs for every request; `read_to_string` would stat the
/// file and read it in five pieces).
pub(crate) fn parent_pid(pid: i32) -> Option<i32> {
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
        assert_eq!(lineage.parent_of(wrapper, || None), None);
        lineage.record(shell_pid, 7);
        assert_eq!(lineage.parent_of(wrapper, || None), Some(7));
        // The requester itself is the nearest.
        lineage.record(wrapper, 9);
        assert_eq!(lineage.parent_of(wrapper, || None), Some(9));
        // The search stops at the server: its own ancestors are not looked at.
        let me = std::process::id() as i32;
        lineage.record(parent_pid(me).expect("a parent"), 11);
        assert_eq!(lineage.parent_of(me, || None), None);
        // A record forgotten for another request stays; for its own, goes.
        lineage.forget(wrapper, 7);
        assert_eq!(lineage.parent_of(wrapper, || None), Some(9));
        lineage.forget(wrapper, 9);
        assert_eq!(lineage.parent_of(wrapper, || None), Some(7));
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
        assert_eq!(
            lineage.parent_of(requester, || Some(Ok(4_000_000))),
            Some(3)
        );
        // A requester that has ended has no parent.
        let gone = || Some(Err(io::Error::from_raw_os_error(libc::ESRCH)));
        assert_eq!(lineage.parent_of(requester, gone), None);
        // Any other failure falls back to /proc.
        let real_parent = parent_pid(requester).expect("the requester's parent");
        lineage.record(real_parent, 5);
        let failed = || Some(Err(io::Error::from_raw_os_error(libc::EMFILE)));
        assert_eq!(lineage.parent_of(requester, failed), Some(5));
        assert_eq!(lineage.parent_of(requester, || None), Some(5));
    }

    #[test]
    fn an_ancestor_is_remembered_by_pidfd_and_forgotten_when_it_ends() {
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
        assert_eq!(lineage.parent_of(requester, || None), Some(7));
        let remembered = |pid| {
            let inner = lineage.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.ancestors.contains_key(&pid)
        };
        // Remembered only where the kernel tells parents through pidfds.
        assert_eq!(remembered(inner_pid), sys::pidfd_info_available());
        // Asked again, the remembered pidfd gives the same answer.
        assert_eq!(lineage.parent_of(requester, || None), Some(7));
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
        assert!(!remembered(inner_pid));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(requester),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = outer.kill();
        let _ = outer.wait();
    }

    #[test]
    fn the_oldest_ancestors_are_forgotten_first() {
        let lineage = Lineage::default();
        let mut inner = lineage.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for pid in 0..(REMEMBERED_ANCESTORS as i32 + 3) {
            let pidfd = sys::pidfd_open(std::process::id() as i32).expect("a pidfd");
            inner.remember_ancestor(pid + 100_000, pidfd);
        }
        assert_eq!(inner.ancestors.len(), REMEMBERED_ANCESTORS);
        assert_eq!(inner.ancestor_order.len(), REMEMBERED_ANCESTORS);
        assert!(!inner.ancestors.contains_key(&100_002));
        assert!(inner.ancestors.contains_key(&100_003));
        inner.forget_ancestor(100_003);
        assert!(!inner.ancestor_order.contains(&100_003));
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
