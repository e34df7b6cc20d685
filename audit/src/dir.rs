//! The log's directory, held open for the log's life.
//!
//! Every open, stat, rename and removal of the log's files is relative to
//! this descriptor, never a path looked up again: a command whose sandbox
//! can write a directory on the way to the log (rename it, put another in
//! its place) cannot send the records anywhere else. A name that is a
//! symbolic link, or anything but a regular file (a FIFO someone reads, a
//! device), is refused, never followed or written; `execgate audit` opens
//! the log's files by the same rule ([`open_log_file`]).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

#[derive(Debug)]
pub(crate) struct LogDir {
    fd: OwnedFd,
    /// As given, for messages.
    path: PathBuf,
}

/// How a file of the log is opened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access {
    /// Appended to and read (the log: its last byte is checked).
    AppendAndRead,
    /// Appended to only (a log whose mode lets us write it only).
    Append,
    /// Written (the lock file, never written to but `flock`ed).
    Write,
}

impl LogDir {
    /// Opens the directory at `path` (symbolic links on the way followed:
    /// they are the user's choice, made before any command ran).
    pub(crate) fn open(path: &Path) -> io::Result<LogDir> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = openat(
            AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(LogDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens (creating, mode 0600) the regular file `name`.
    pub(crate) fn open_file(&self, name: &OsStr, access: Access) -> io::Result<File> {
        let access = match access {
            Access::AppendAndRead => OFlag::O_RDWR | OFlag::O_APPEND,
            Access::Append => OFlag::O_WRONLY | OFlag::O_APPEND,
            Access::Write => OFlag::O_WRONLY,
        };
        open_regular(&self.fd, name, access | OFlag::O_CREAT)
    }

    /// The (device, inode) of `name` itself, a symbolic link not followed.
    pub(crate) fn identity(&self, name: &OsStr) -> io::Result<(u64, u64)> {
        let stat = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok((stat.st_dev, stat.st_ino))
    }

    /// The size of `name`, a symbolic link not followed.
    pub(crate) fn size(&self, name: &OsStr) -> io::Result<u64> {
        let stat = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(stat.st_size.try_into().unwrap_or(0))
    }

    pub(crate) fn exists(&self, name: &OsStr) -> bool {
        self.identity(name).is_ok()
    }

    pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(renameat(&self.fd, from, &self.fd, to)?)
    }

    pub(crate) fn remove(&self, name: &OsStr) -> io::Result<()> {
        Ok(unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)?)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens a file of the log (the log or a rotated one) at `path` to read
/// it, as its writer opens them: never through a symbolic link at its
/// name, never waiting on a FIFO, and only a regular file.
pub fn open_log_file(path: &Path) -> io::Result<File> {
    open_regular(AT_FDCWD, path, OFlag::O_RDONLY)
}

/// `openat(dir, name, flags)` for a file of the log: a symbolic link at
/// `name` refused, not followed; anything but a regular file refused.
fn open_regular<P: ?Sized + nix::NixPath>(
    dir: impl std::os::fd::AsFd,
    name: &P,
    flags: OFlag,
) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO must not wait for a reader; it is
    // refused below. It changes nothing for a regular file.
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let fd =
        openat(dir, name, flags, Mode::from_bits_truncate(0o600)).map_err(|errno| match errno {
            Errno::ELOOP => io::Error::other(
                "it is a symbolic link, which is never followed: the audit log and its lock \
                 file must be regular files",
            ),
            Errno::ENXIO => not_regular(),
            errno => errno.into(),
        })?;
    if SFlag::from_bits_truncate(fstat(&fd)?.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(not_regular());
    }
    Ok(File::from(fd))
}

fn not_regular() -> io::Error {
    io::Error::other(
        "it is not a regular file (a FIFO, a socket, a device or a directory): the audit \
         log and its lock file must be regular files",
    )
}
