//! A pseudo-terminal for one process: the master end stays here
//! (non-blocking, close-on-exec from birth), the slave end becomes the
//! process's standard streams and controlling terminal.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::pty::PtyMaster;
use tokio::io::unix::AsyncFd;

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

    /// Writes `bytes`, as typed, until all are written or the terminal has
    /// taken nothing for `patience` (its input queue is full: the process
    /// does not read it). Returns how many bytes were written.
    pub(crate) async fn write_within(
        &self,
        bytes: &[u8],
        patience: std::time::Duration,
    ) -> io::Result<usize> {
        let mut written = 0;
        while written < bytes.len() {
            let Ok(ready) = tokio::time::timeout(patience, self.fd.writable()).await else {
                break;
            };
            match ready?.try_io(|fd| {
                nix::unistd::write(fd.get_ref(), &bytes[written..]).map_err(io::Error::from)
            }) {
                Ok(Ok(count)) => written += count,
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue,
            }
        }
        Ok(written)
    }

    pub(crate) fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        sys::set_window_size(self.fd.get_ref().as_fd(), rows, cols)
    }
}
