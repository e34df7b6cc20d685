//! A subcommand's output on stdout (`audit`, `policy`, `doctor`).
//!
//! `println!` panics when a write fails (`> /dev/full`: exit 101 and a
//! backtrace), and `std::io::Stdout` takes a write that fails with `EBADF`
//! (a standard output open for reading only) for done. Here a failed
//! write is an error that names standard output, which `main` prints on
//! one line before it exits 125. A reader that went away (`| head`:
//! `EPIPE`, SIGPIPE being ignored by Rust programs) is no error: the rest
//! is dropped quietly and the command ends with the status it decided
//! (lint's 1 for its findings included).

use std::io::{self, Write};

use anyhow::{Context, Result};

/// Runs `print` on stdout ([`writer`]), then flushes it.
pub fn stdout(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let mut out = writer()?;
    match print(&mut out).and_then(|()| out.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("cannot write to standard output"),
    }
}

/// Whether `error` is, at its root, a reader that went away.
#[cfg(unix)]
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|error| error.kind() == io::ErrorKind::BrokenPipe)
}

/// Standard output, buffered, through a descriptor of its own (a `dup` of
/// 1, so that a write failing with `EBADF` is an error, not done), once it
/// is known to be open for writing: output that could not go anywhere
/// fails before anything is done.
#[cfg(unix)]
pub fn writer() -> Result<io::BufWriter<std::fs::File>> {
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let flags = nix::fcntl::fcntl(stdout.as_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .context("cannot write to standard output")?;
    if flags & nix::libc::O_ACCMODE == nix::libc::O_RDONLY {
        return Err(io::Error::from_raw_os_error(nix::libc::EBADF))
            .context("cannot write to standard output: it is open for reading only");
    }
    let own = stdout
        .as_fd()
        .try_clone_to_owned()
        .context("cannot write to standard output")?;
    Ok(io::BufWriter::new(std::fs::File::from(own)))
}

/// Standard output, locked.
#[cfg(windows)]
pub fn writer() -> Result<io::StdoutLock<'static>> {
    Ok(io::stdout().lock())
}
