//! Whether a sandbox got as far as its helper.
//!
//! bubblewrap sets the view up before it runs the helper, and when that
//! fails (a path it must mount removed or replaced by another process
//! meanwhile) it prints its own message and exits 1: the status of a
//! command that ran and failed. The caller cannot tell them apart by the
//! status, so the helper says it started: the launcher's caller passes it
//! the write end of a pipe, named in its environment
//! ([`STARTED_FD_VARIABLE`]); the helper writes one byte there first
//! thing, and closes it. A pipe at its end with no byte in it, once the
//! command has ended, is a sandbox that never ran the helper, and so ran
//! nothing at all.
//!
//! The helper never passes the descriptor or the variable on to the
//! command.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::sys;

/// The variable that names the helper's descriptor for its start byte.
pub const STARTED_FD_VARIABLE: &str = "EXECGATE_SANDBOX_STARTED_FD";

/// What the helper writes.
const STARTED: u8 = b'S';

/// The caller's end of the pipe a sandbox's helper says it started on.
#[derive(Debug)]
pub struct SandboxStart {
    watch: OwnedFd,
}

impl SandboxStart {
    /// A pipe: the watch, and the end to give the helper (both
    /// close-on-exec: make the helper's inheritable in the child alone).
    pub fn pipe() -> std::io::Result<(SandboxStart, OwnedFd)> {
        let (watch, helpers) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok((SandboxStart { watch }, helpers))
    }

    /// Asked once the command has ended: whether its sandbox ended before
    /// the helper ran (every copy of the helper's end closed, no byte).
    /// `false` when that cannot be told (a copy still open somewhere).
    pub fn never_reached_the_helper(&self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(self.watch.as_fd(), &mut byte) {
                Ok(0) => return true,
                Err(Errno::EINTR) => continue,
                Ok(_) | Err(_) => return false,
            }
        }
    }
}

/// In the helper, first: writes the start byte to the descriptor the
/// environment names, if it is a pipe of ours, and closes it. Without the
/// variable (a spare, a launcher's caller that does not watch) nothing.
pub(crate) fn tell_started() {
    let Some(number) = std::env::var_os(STARTED_FD_VARIABLE)
        .and_then(|value| value.to_str()?.parse::<i32>().ok())
        .filter(|&number| number > 2)
    else {
        return;
    };
    let Some(pipe) = sys::take_inherited_pipe(number) else {
        return;
    };
    // A full pipe or a reader gone: the caller learns nothing, which it
    // reads as "started".
    let _ = nix::unistd::write(pipe.as_fd(), &[STARTED]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_closed_without_the_byte_never_reached_the_helper() {
        let (start, helpers) = SandboxStart::pipe().unwrap();
        assert!(!start.never_reached_the_helper(), "the end is still open");
        drop(helpers);
        assert!(start.never_reached_the_helper());
        let (start, helpers) = SandboxStart::pipe().unwrap();
        nix::unistd::write(helpers.as_fd(), &[STARTED]).unwrap();
        drop(helpers);
        assert!(!start.never_reached_the_helper());
    }
}
