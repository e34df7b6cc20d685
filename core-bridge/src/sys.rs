//! core-bridge's raw OS calls: making a started shell the session leader of
//! its own terminal, setting a terminal's size, and watching a PTY's master
//! end from tokio. Everything that runs
//! between fork and exec is async-signal-safe.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;

/// Makes the program `command` executes the leader of a new session whose
/// controlling terminal is its standard input (a PTY's slave end), with
/// the terminal's SIGINT and SIGQUIT ignored (the shell inside restores
/// them for itself and its commands).
pub(crate) fn own_terminal_in_child(command: &mut std::process::Command) {
    let take_terminal = || {
        // SAFETY: setsid, ioctl(TIOCSCTTY) and signal are async-signal-safe,
        // take no memory of ours, and act on the child only.
        unsafe {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            for signal in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(signal, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec, makes async-signal-safe
    // calls only and allocates nothing.
    unsafe { command.pre_exec(take_terminal) };
}

/// Sets the size of the terminal whose master (or slave) end is `terminal`;
/// its foreground process group gets SIGWINCH.
pub(crate) fn set_window_size(terminal: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points
    // at a live local value; the descriptor is borrowed, so open.
    if unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `master` registered with tokio's reactor.
pub(crate) fn watch_pty_master(
    master: nix::pty::PtyMaster,
) -> io::Result<tokio::io::unix::AsyncFd<nix::pty::PtyMaster>> {
    // SAFETY: a PtyMaster owns its descriptor from creation to drop and
    // always answers the same one from as_raw_fd; the AsyncFd owns it now.
    unsafe { tokio::io::unix::AsyncFd::register(master) }.map_err(io::Error::from)
}

/// `fd` (a proxy link or a pidfd) registered with tokio's reactor.
pub(crate) fn watch_owned(
    fd: std::os::fd::OwnedFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an OwnedFd owns its descriptor from creation to drop and
    // always answers the same one from as_raw_fd; the AsyncFd owns it now.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(io::Error::from)
}
