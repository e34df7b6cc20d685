//! Signals relayed to a sandboxed escalation. bubblewrap passes none on, so
//! the server signals the sandbox's pid-namespace init's process group,
//! where the program runs, at once, on the calling thread: one `killpg`.
//! A process that left that group (`timeout` moves its command to a group
//! of its own, probe 182) is reached by walking the processes below init,
//! off the serving thread (the walk reads `/proc` for each of them), in the
//! order the signals came, with a bounded number waiting per escalation.
//!
//! It must never signal a process outside the sandbox: each process the
//! walk found is signalled through a pidfd, opened and then checked to
//! have a parent among those found (or init), so a number that another
//! process took meanwhile is passed over.

use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgid, Pid};

use crate::sys;

/// Signals waiting for their walk, per escalation. They are merged as the
/// kernel merges pending signals (the same one twice waits once; a
/// `SIGCONT` drops the stop signals waiting, a stop signal the `SIGCONT`),
/// and past this a signal reaches init's group only: a flood of relayed
/// signals must not queue work without bound.
const WAITING_AT_MOST: usize = 16;

/// The most processes one walk signals, and the most `/proc` files it
/// reads: a bound on the work one signal makes, however many processes or
/// threads the sandbox makes.
const PROCESSES_AT_MOST: usize = 1024;
const READS_AT_MOST: usize = 4096;

/// How many walks a `SIGSTOP` makes at most: a process forked while one
/// walk ran is found by the next, until one finds nothing new.
const STOP_WALKS: usize = 3;

/// One sandboxed escalation's relay.
#[derive(Default)]
pub(crate) struct Relay {
    state: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    signals: VecDeque<Signal>,
    /// The sandbox's init, and its pidfd from the first signal on: a walk
    /// that comes after the sandbox's end must not list the children of
    /// another process that took its number.
    init: Option<(i32, Arc<OwnedFd>)>,
    /// A walk is under way or queued: it takes the signals that wait.
    walking: bool,
}

impl Waiting {
    /// Queues `signal`, merged with those waiting; whether it waits.
    fn add(&mut self, signal: Signal) -> bool {
        let stops = [
            Signal::SIGSTOP,
            Signal::SIGTSTP,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
        ];
        if signal == Signal::SIGCONT {
            self.signals.retain(|waiting| !stops.contains(waiting));
        } else if stops.contains(&signal) {
            self.signals.retain(|waiting| *waiting != Signal::SIGCONT);
        }
        if self.signals.contains(&signal) || self.signals.len() == WAITING_AT_MOST {
            return false;
        }
        self.signals.push_back(signal);
        true
    }
}

impl Relay {
    /// Sends `signal` to the sandbox whose pid-namespace init is `init`:
    /// its group now, the processes below it in other groups soon.
    pub(crate) fn send(self: &Arc<Self>, init: i32, signal: Signal) {
        let _ = killpg(Pid::from_raw(init), signal);
        let mut waiting = self.lock();
        let init = match &waiting.init {
            Some(known) => known.clone(),
            None => {
                let Ok(init_fd) = sys::pidfd_open(init) else {
                    return;
                };
                waiting.init.insert((init, Arc::new(init_fd))).clone()
            }
        };
        if !waiting.add(signal) || waiting.walking {
            return;
        }
        waiting.walking = true;
        drop(waiting);
        let relay = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || relay.walk_waiting(init))),
            Err(_) => relay.walk_waiting(init),
        }
    }

    fn walk_waiting(&self, (init, init_fd): (i32, Arc<OwnedFd>)) {
        loop {
            let signal = {
                let mut waiting = self.lock();
                match waiting.signals.pop_front() {
                    Some(signal) => signal,
                    None => {
                        waiting.walking = false;
                        return;
                    }
                }
            };
            signal_outside_group(init, &init_fd, signal);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Signals the processes below `init` (`init_fd`) that are not in its
/// process group, which `killpg` reached. A process that changed group
/// since may get the signal twice, or not at all (`timeout` moves to a
/// group of its own as it starts).
fn signal_outside_group(init: i32, init_fd: &OwnedFd, signal: Signal) {
    let Ok(group) = getpgid(Some(Pid::from_raw(init))) else {
        return;
    };
    let walks = if signal == Signal::SIGSTOP {
        STOP_WALKS
    } else {
        1
    };
    let mut signalled = HashSet::new();
    for _ in 0..walks {
        let below = processes_below(init);
        // Listed while init ran: not another process's children.
        if sys::has_ended(init_fd.as_fd()) {
            return;
        }
        let mut known: HashSet<i32> = below.iter().copied().collect();
        known.insert(init);
        let mut new = false;
        for pid in below {
            if signalled.contains(&pid) {
                continue;
            }
            let Ok(pidfd) = sys::pidfd_open(pid) else {
                continue;
            };
            // Still below init, not a number another process took since.
            let parent = crate::lineage::parent_pid(pid);
            if !parent.is_some_and(|parent| known.contains(&parent)) {
                continue;
            }
            signalled.insert(pid);
            new = true;
            if getpgid(Some(Pid::from_raw(pid))) != Ok(group) {
                let _ = sys::pidfd_signal(pidfd.as_fd(), signal);
            }
        }
        if !new {
            break;
        }
    }
}

/// The processes below `init`, each parent before its children, from
/// every thread's `/proc/PID/task/TID/children` (a thread's children are
/// listed with it), within [`PROCESSES_AT_MOST`] and [`READS_AT_MOST`].
fn processes_below(init: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut unread = vec![init];
    let mut reads = 0;
    while let Some(parent) = unread.pop() {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for thread in threads.flatten() {
            reads += 1;
            if reads > READS_AT_MOST {
                return found;
            }
            let Ok(children) = std::fs::read_to_string(thread.path().join("children")) else {
                continue;
            };
            for child in children
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
            {
                if found.len() == PROCESSES_AT_MOST {
                    return found;
                }
                found.push(child);
                unread.push(child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals waiting for their walk are merged as the kernel merges
    /// pending ones, and bounded (review 39: a full queue dropped a
    /// `SIGCONT`, leaving processes stopped).
    #[test]
    fn waiting_signals_merge_as_pending_ones_do() {
        use Signal::*;
        // sent, waiting after
        let cases: [(&[Signal], &[Signal]); 6] = [
            (&[SIGTSTP, SIGCONT], &[SIGCONT]),
            (&[SIGCONT, SIGSTOP], &[SIGSTOP]),
            (&[SIGINT, SIGINT, SIGWINCH, SIGWINCH], &[SIGINT, SIGWINCH]),
            (
                &[SIGINT, SIGTSTP, SIGTERM, SIGCONT],
                &[SIGINT, SIGTERM, SIGCONT],
            ),
            (
                &[
                    SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGWINCH,
                    SIGURG, SIGPROF, SIGVTALRM, SIGXCPU, SIGXFSZ, SIGIO, SIGSYS, SIGTRAP,
                ],
                &[
                    SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGWINCH,
                    SIGURG, SIGPROF, SIGVTALRM, SIGXCPU, SIGXFSZ, SIGIO, SIGSYS,
                ],
            ),
            // A full queue still takes a `SIGCONT` in the place of the
            // stop signals it drops.
            (
                &[
                    SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGWINCH,
                    SIGURG, SIGPROF, SIGVTALRM, SIGXCPU, SIGXFSZ, SIGIO, SIGTSTP, SIGCONT,
                ],
                &[
                    SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGWINCH,
                    SIGURG, SIGPROF, SIGVTALRM, SIGXCPU, SIGXFSZ, SIGIO, SIGCONT,
                ],
            ),
        ];
        for (sent, expected) in cases {
            let mut waiting = Waiting::default();
            for signal in sent {
                waiting.add(*signal);
            }
            let after: Vec<Signal> = waiting.signals.iter().copied().collect();
            assert_eq!(after, expected, "{sent:?}");
        }
    }

    /// What a walk asks before it uses what it listed: whether init has
    /// ended (its number may be another process's then).
    #[test]
    fn has_ended_tells_a_running_process_from_an_ended_one() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let pidfd = sys::pidfd_open(pid).unwrap();
        assert!(!sys::has_ended(pidfd.as_fd()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(sys::has_ended(pidfd.as_fd()));
    }
}
