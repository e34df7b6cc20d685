//! A pseudo-terminal for one process: the master end stays here
//! (non-blocking, close-on-exec from birth), the slave end becomes the
//! process's standard streams and controlling terminal.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::pty::PtyMaster;
use tokio::io::unix::AsyncFd;

/// How often typing looks again at a full terminal that was hung up and
/// has been reopened.
const HUNG_UP_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);

use crate::sys;

/// The rows and columns a terminal starts with.
pub const DEFAULT_TERMINAL_SIZE: (u16, u16) = (24, 80);

/// The master end, readable and writable from tokio.
pub(crate) struct Master {
    fd: AsyncFd<PtyMaster>,
}

/// Opens a PTY of `rows` x `cols`. Both ends are close-on-exec, so no other
/// child started meanwhile (an escalated one, another shell) inherits them.
pub(crate) fn open(rows: u16, cols: u16) -> io::Result<(Master, File)> {
    let master = nix::pty::posix_openpt(
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
    )?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    // std opens close-on-exec; O_NOCTTY keeps it from becoming ours.
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(name)?;
    sys::set_window_size(master.as_fd(), rows, cols)?;
    Ok((
        Master {
            fd: sys::watch_pty_master(master)?,
        },
        slave,
    ))
}

/// A write to the terminal failed after `written` bytes went in.
#[derive(Debug)]
pub(crate) struct TypingFailed {
    pub(crate) written: usize,
    pub(crate) source: io::Error,
}

impl Master {
    /// Reads what the process wrote; `Ok(0)` once no process holds the
    /// slave end any more (the kernel answers EIO then).
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Err(error)) if error.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes `bytes`, as typed, until all are written or `patience` has
    /// passed (the process reads too little, or nothing: its input queue
    /// stays full). Returns how many bytes were written, also when a write
    /// fails. A terminal no process holds any more fails at once: the
    /// kernel then reports the master writable while every write would
    /// wait, and tokio keeps it ready for good once it saw the hang-up, so
    /// waiting for room would turn into a busy loop.
    pub(crate) async fn write_within(
        &self,
        bytes: &[u8],
        patience: std::time::Duration,
    ) -> Result<usize, TypingFailed> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut written = 0;
        while written < bytes.len() && tokio::time::Instant::now() < deadline {
            let failed = |source| TypingFailed { written, source };
            let Ok(ready) = tokio::time::timeout_at(deadline, self.fd.writable()).await else {
                break;
            };
            let mut ready = ready.map_err(failed)?;
            let seen_hung_up = ready.ready().is_write_closed();
            match ready.try_io(|fd| {
                nix::unistd::write(fd.get_ref(), &bytes[written..]).map_err(io::Error::from)
            }) {
                Ok(Ok(count)) => written += count,
                Ok(Err(error)) => return Err(failed(error)),
                Err(_would_block) if seen_hung_up => {
                    if self.hung_up() {
                        return Err(failed(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "no process has the terminal open any more",
                        )));
                    }
                    // Reopened since (the hang-up is over), and full:
                    // tokio still says ready, so look again a little later.
                    let later = tokio::time::Instant::now() + HUNG_UP_RECHECK;
                    tokio::time::sleep_until(later.min(deadline)).await;
                }
                Err(_would_block) => {}
            }
        }
        Ok(written)
    }

    /// Whether no process holds the terminal now (the kernel's hang-up).
    fn hung_up(&self) -> bool {
        let mut poll = [PollFd::new(self.fd.get_ref().as_fd(), PollFlags::POLLOUT)];
        nix::poll::poll(&mut poll, PollTimeout::ZERO).is_ok()
            && poll[0]
                .revents()
                .is_some_and(|events| events.contains(PollFlags::POLLHUP))
    }

    pub(crate) fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        sys::set_window_size(self.fd.get_ref().as_fd(), rows, cols)
    }
}
