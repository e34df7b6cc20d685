//! The warden: the wrapper started once per server process as
//! `WRAPPER --warden FD [CGROUP-DIR]`, so that nothing a session escalated
//! outlives the process that owns it, however that process ends (a crash,
//! `SIGKILL`, an agent killed by its own supervisor).
//!
//! It reads the server's [`WardenRecord`]s from the pipe at `FD` until end
//! of file, which comes exactly when the server has gone: the server holds
//! the only write end, close-on-exec. Then it kills everything in
//! `CGROUP-DIR` (the server's cgroup, one child cgroup per session) with
//! `cgroup.kill`, kills the process groups still tracked, removes the
//! cgroups and exits. While the server lives it only sleeps in `read`.
//!
//! It must never signal a group the server did not name or has untracked,
//! and never outlive the cleanup. It ignores the signals a terminal or a
//! process-group kill aimed at the server would send it: it is in a process
//! group of its own, and ends only with its server.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use execgate_protocol::{WardenRecord, WARDEN_RECORD_LEN};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::sys;

/// How long the warden waits for a killed cgroup to empty before removing
/// it anyway fails and it gives up.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

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

    let mut groups: Vec<i32> = Vec::new();
    let mut record = [0u8; WARDEN_RECORD_LEN];
    let mut filled = 0;
    loop {
        match nix::unistd::read(fd, &mut record[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(nix::errno::Errno::EINTR) => continue,
            // Anything else means the server is no longer there to talk to.
            Err(_) => break,
        }
        if filled < WARDEN_RECORD_LEN {
            continue;
        }
        filled = 0;
        match WardenRecord::decode(&record) {
            Some(WardenRecord::Track(pgid)) => groups.push(pgid),
            Some(WardenRecord::Untrack(pgid)) => {
                if let Some(index) = groups.iter().position(|tracked| *tracked == pgid) {
                    groups.swap_remove(index);
                }
            }
            None => {}
        }
    }

    if let Some(cgroup) = &cgroup {
        // Recursive: every session's cgroup below the server's, and every
        // process in them, however it left its process group or session.
        let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
    }
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    if let Some(cgroup) = &cgroup {
        remove_when_empty(cgroup);
    }
    std::process::exit(0)
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
