//! Whether bubblewrap set a sandbox up.
//!
//! When bubblewrap cannot set the view up (a path it must mount removed
//! or replaced by another process meanwhile), it prints its own message
//! and exits 1: the status of a command that ran and failed. Its status
//! descriptor (`--json-status-fd`) tells them apart: bubblewrap writes an
//! `exit-code` object there when the process it started inside the
//! sandbox (the helper, then the command) exits, and only if it got as far
//! as executing it. Once bubblewrap has ended, a status with no such
//! object is a sandbox that ran nothing.
//!
//! This is bubblewrap's own word, not the helper's: a helper of another
//! build cannot make a command that ran read as one that did not. The
//! descriptor does not reach the command (bubblewrap keeps it to itself).
//!
//! The status goes to a file in memory, not a pipe: bubblewrap gives up
//! the sandbox when it cannot write its first line, and a pipe whose
//! reader went (a caller that does not watch) would make it. A file's
//! writes count against the file-size limit, so under a limit too small
//! for bubblewrap's lines (review 42: `SIGXFSZ` killed it) nothing is
//! watched, and a failed set-up reads as exit status 1 again.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use nix::sys::memfd::{memfd_create, MFdFlags};

/// What bubblewrap's status object for an exit says first.
const EXIT_CODE: &[u8] = b"\"exit-code\"";

/// `RLIMIT_FSIZE`: a `c_int` on musl, a `u32` on glibc.
#[allow(clippy::unnecessary_cast)]
pub(crate) const FILE_SIZE: u32 = libc::RLIMIT_FSIZE as u32;

/// The most of bubblewrap's status read, and the least file-size limit
/// it is watched under: ample for its two objects (under 300 bytes).
const MOST_STATUS: usize = 64 * 1024;

/// The file in memory a sandbox's bubblewrap writes its status lines to.
#[derive(Debug)]
pub struct SandboxStart {
    status: std::fs::File,
}

impl SandboxStart {
    /// The watch, and a descriptor of the same file to give bubblewrap as
    /// its status descriptor (close-on-exec: make it inheritable in the
    /// child alone, at the number
    /// [`Launcher::command`](crate::Launcher::command) is given).
    pub fn new() -> std::io::Result<(SandboxStart, OwnedFd)> {
        let (size_limit, _) = super::sys::limit_of(0, FILE_SIZE)?;
        SandboxStart::under_file_size_limit(size_limit)
    }

    /// As [`SandboxStart::new`], for a bubblewrap that will run under the
    /// file-size limit `size_limit` (bytes), not this process's: an
    /// escalation's, which runs under its requester's
    /// ([`Inheritance::file_size_limit`](crate::Inheritance::file_size_limit)).
    pub fn under_file_size_limit(size_limit: u64) -> std::io::Result<(SandboxStart, OwnedFd)> {
        if size_limit < MOST_STATUS as u64 {
            return Err(std::io::Error::other(format!(
                "the file-size limit ({size_limit} bytes) is too small for bubblewrap's status"
            )));
        }
        let status = memfd_create(c"execgate-sandbox-status", MFdFlags::MFD_CLOEXEC)?;
        let bubblewraps = status.try_clone()?;
        Ok((
            SandboxStart {
                status: status.into(),
            },
            bubblewraps,
        ))
    }

    /// Asked once bubblewrap has ended: whether it reported no exit, so
    /// that it set nothing up, or started nothing in what it set up.
    pub fn set_up_failed(&self) -> bool {
        let mut said = vec![0u8; MOST_STATUS];
        let mut length = 0;
        while length < said.len() {
            match self.status.read_at(&mut said[length..], length as u64) {
                Ok(0) => break,
                Ok(read) => length += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                // Unreadable: nothing can be told.
                Err(_) => return false,
            }
        }
        !said[..length]
            .windows(EXIT_CODE.len())
            .any(|window| window == EXIT_CODE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_status_without_an_exit_tells_a_failed_set_up() {
        let cases = [
            ("", true),
            ("{ \"child-pid\": 7 }\n", true),
            ("{ \"child-pid\": 7 }\n{ \"exit-code\": 1 }\n", false),
        ];
        for (status, failed) in cases {
            let (start, bubblewraps) = SandboxStart::new().unwrap();
            nix::unistd::write(&bubblewraps, status.as_bytes()).unwrap();
            drop(bubblewraps);
            assert_eq!(start.set_up_failed(), failed, "{status:?}");
        }
    }
}
