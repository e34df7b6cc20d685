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
use std::fs::File;
use std::io::Read;
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
            pid = parent_pid(pid)?;
        }
        None
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

    #[test]
    fn the_nearest_recorded_ancestor_is_the_parent() {
        // A shell (standing for a program run in place) with a child of its
        // own (standing for the wrapper it starts).
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .expect("sh");
        let shell_pid = shell.id() as i32;
        let children = format!("/proc/{shell_pid}/task/{shell_pid}/children");
        let mut wrapper = None;
        for _ in 0..200 {
            wrapper = std::fs::read_to_string(&children)
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse::<i32>().ok());
            if wrapper.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let wrapper = wrapper.expect("the shell's child");
        let lineage = Lineage::default();
        assert_eq!(lineage.parent_of(wrapper), None);
        lineage.record(shell_pid, 7);
        assert_eq!(lineage.parent_of(wrapper), Some(7));
        // The requester itself is the nearest.
        lineage.record(wrapper, 9);
        assert_eq!(lineage.parent_of(wrapper), Some(9));
        // The search stops at the server: its own ancestors are not looked at.
        let me = std::process::id() as i32;
        lineage.record(parent_pid(me).expect("a parent"), 11);
        assert_eq!(lineage.parent_of(me), None);
        let _ = shell.kill();
        let _ = shell.wait();
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
