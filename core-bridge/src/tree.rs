//! Process trees as `/proc` shows them: what a process descends from, and
//! what descends from a command's first process, to stop the command
//! whole. It never signals a process by its number alone: each is pinned
//! by a pidfd, taken while it is still the child of the parent it was
//! found under.

use std::os::fd::OwnedFd;

use execgate_escalate_server::CommandCgroup;

/// What a process descends from: its parents ([`ancestry`]), then its
/// process group's leader, which a command's first process is (probe 206:
/// a job started as `( (...) & )` is left by its parent, and a question it
/// asked was no command's: a stop killed the command's group, unsaid, and
/// what the command had started in other groups ran on).
pub(crate) fn lineage(pid: i32) -> Vec<u32> {
    let mut lineage = ancestry(pid);
    let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
        .ok()
        .and_then(|group| u32::try_from(group.as_raw()).ok())
        .filter(|group| *group != std::process::id() && !lineage.contains(group));
    lineage.extend(group);
    lineage
}

/// A process and its parents, as `/proc` names them, nearest first; as
/// far as they can be read, and below this process (the commands it
/// started are its children).
fn ancestry(pid: i32) -> Vec<u32> {
    let own = std::process::id();
    let mut chain = Vec::new();
    if !proc_is_ours() {
        return chain;
    }
    let mut next = u32::try_from(pid).ok();
    while let Some(pid) = next.filter(|pid| *pid > 1 && *pid != own && chain.len() < 64) {
        chain.push(pid);
        next = parent_of(pid);
    }
    chain
}

/// Whether `/proc` shows this process's pid namespace: its pids are the
/// ones this process signals (review 47: in a namespace whose `/proc` was
/// its parent's, another process's pids were taken for the command's).
fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|link| link.to_str()?.parse::<u32>().ok())
        == Some(std::process::id())
}

/// Whether the process `pidfd` names has not ended (a pidfd turns readable
/// as its process ends, whoever reaps it).
pub(crate) fn still_running(pidfd: &OwnedFd) -> bool {
    use std::os::fd::AsFd;
    !execgate_escalate_server::has_ended(pidfd.as_fd())
}

/// Every process descended from `root`, as `/proc` shows them now, each
/// with its parent, parents before their children.
fn descendants(root: u32) -> Vec<(u32, u32)> {
    if !proc_is_ours() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = vec![];
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, of) in &parents {
            if of == parent && !found.iter().any(|(known, _)| *known == pid) {
                found.push((pid, parent));
                frontier.push(pid);
            }
        }
    }
    found
}

/// The parent of process `pid`, as `/proc` names it.
fn parent_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parent_in_stat(&stat))
}

/// The parent's pid in a `/proc/PID/stat` line: the second field after
/// the name, which may hold spaces and parentheses itself.
fn parent_in_stat(stat: &str) -> Option<u32> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Kills a command's first process, `root` (pinned by `pidfd`), and every
/// process descended from it, as one. Each is stopped first, and `/proc`
/// is read again until it shows none not yet stopped; then all are
/// killed. Killed one by one, parents first, a child its parent's end had
/// moved to init was missed; children first, a shell saw its child end
/// and went on (CI: an unsandboxed `zsh -c` printed after its inner shell
/// was killed). Nothing is done once `root` has ended: what it left is no
/// longer found by its parents.
pub(crate) fn kill_tree(root: u32, pidfd: &OwnedFd) {
    use rustix::process::{pidfd_send_signal, Signal};
    if !still_running(pidfd) {
        return;
    }
    let _ = pidfd_send_signal(pidfd, Signal::STOP);
    let hold = |pid: u32, parent: u32| {
        let pidfd = pin(pid)?;
        if parent_of(pid) != Some(parent) {
            return None;
        }
        let _ = pidfd_send_signal(&pidfd, Signal::STOP);
        Some((pid, pidfd))
    };
    let mut held: Vec<(u32, OwnedFd)> = Vec::new();
    // Stopped processes start no others: a few reads find every one. Only
    // a child of a process already held is taken, and only while the root
    // is still the one pinned (review 207: a root reaped by another and
    // its number taken mid-walk would lead to a stranger's children).
    for _ in 0..8 {
        let mut found = false;
        for (pid, parent) in descendants(root) {
            let known = |number: u32| held.iter().any(|(held, _)| *held == number);
            if known(pid) || !(parent == root || known(parent)) || !still_running(pidfd) {
                continue;
            }
            if let Some(process) = hold(pid, parent) {
                held.push(process);
                found = true;
            }
        }
        if !found {
            break;
        }
    }
    let _ = pidfd_send_signal(pidfd, Signal::KILL);
    for (_, pidfd) in &held {
        let _ = pidfd_send_signal(pidfd, Signal::KILL);
    }
}

/// Kills a command whole while its first process, the leader of group
/// `pgid`, is not reaped: its cgroup, which holds every process of it
/// however it left its tree, group or session, escalated ones too; without
/// one, every process descended from it, pinned by `root`
/// ([`kill_tree`]). Then what is left in its group (probe 206: a timeout or
/// a cancel killed only the group, and what the command had started in
/// others ran on until the session ended).
pub(crate) fn kill_command(
    root: Option<&OwnedFd>,
    pgid: Option<i32>,
    cgroup: Option<&CommandCgroup>,
) {
    let killed = cgroup.is_some_and(|cgroup| cgroup.kill().is_ok());
    if let Some((root, pid)) = root.zip(pgid).filter(|_| !killed) {
        kill_tree(pid.unsigned_abs(), root);
    }
    kill_group(pgid);
}

/// Kills process group `pgid`: a command's, whose leader is not reaped,
/// or whose id no other group can have taken while a member lives.
pub(crate) fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A pidfd for the process `pid`: the process itself from then on, whatever
/// takes its number later. Taken while the caller knows the number is its
/// (its child, not yet reaped; one whose parent is checked after).
pub(crate) fn pin(pid: u32) -> Option<OwnedFd> {
    let process = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(process, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_name_with_parentheses() {
        assert_eq!(
            parent_in_stat("4242 (a) (b) c) S 17 4242 4242 0 -1"),
            Some(17)
        );
        assert_eq!(parent_in_stat("4242 (x S"), None);
    }
}
