//! A subcommand's output on stdout, for `policy` and `doctor`.
//!
//! `println!` panics when a write fails (`> /dev/full`: exit 101 and a
//! backtrace). Here a failed write is an error that names standard output,
//! which `main` prints on one line before it exits 125, as `execgate audit`
//! does. A reader that went away (`| head`: `EPIPE`, SIGPIPE being ignored
//! by Rust programs) is no error: the rest is dropped quietly and the
//! command ends with the status it decided (lint's 1 for its findings
//! included).

use std::io::{self, Write};

use anyhow::{Context, Result};

/// Runs `print` on stdout, locked for the whole output, then flushes it.
pub fn stdout(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let mut out = io::stdout().lock();
    match print(&mut out).and_then(|()| out.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("cannot write to standard output"),
    }
}
