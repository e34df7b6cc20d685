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

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// How many programs are remembered; the oldest are forgotten first.
const REMEMBERED: usize = 4096;
/// How far up the requester's ancestry the search goes.
const MAX_DEPTH: usize = 8;

#[derive(Default)]
pub(crate) struct Lineage {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    request_by_pid: HashMap<i32, u64>,
    order: VecDeque<i32>,
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
    pub(crate) fn parent_of(&self, requester: i32) -> Option<u64> {
        let mut pid = requester;
        for _ in 0..MAX_DEPTH {
            if pid <= 1 {
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
            pid = parent_pid(pid)?;
        }
        None
    }
}

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_recorded_ancestor_is_the_parent() {
        let lineage = Lineage::default();
        let me = std::process::id() as i32;
        // This test process's parent stands for the program of request 7.
        let parent = parent_pid(me).expect("a parent");
        assert_eq!(lineage.parent_of(me), None);
        lineage.record(parent, 7);
        assert_eq!(lineage.parent_of(me), Some(7));
        // The requester itself is the nearest.
        lineage.record(me, 9);
        assert_eq!(lineage.parent_of(me), Some(9));
        // Asking again from the same pid replaces the earlier program.
        lineage.record(me, 11);
        assert_eq!(lineage.parent_of(me), Some(11));
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
