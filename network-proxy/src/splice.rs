//! The relay on Linux: bytes go from one TCP socket to the other through a
//! pipe with `splice(2)`, never entering this process. A bulk download
//! through the proxy then costs two system calls per chunk and no copy.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::proxy::RelayCounts;

/// Bytes moved per `splice` call at most: what the pipe holds.
const CHUNK: usize = 1 << 20;
/// The pipe's size, as large as an unprivileged process may make it by
/// default (`/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: i32 = 1 << 20;

/// Relays both ways until both directions have ended, adding the bytes
/// delivered each way to `counts` as they go: they stand when a direction
/// fails (a reset), which ends the relay.
pub(crate) async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    counts: &RelayCounts,
) -> io::Result<()> {
    tokio::try_join!(
        one_way(client, upstream, &counts.sent),
        one_way(upstream, client, &counts.received)
    )
    .map(|_| ())
}

async fn one_way(from: &TcpStream, to: &TcpStream, total: &AtomicU64) -> io::Result<()> {
    let (pipe_read, pipe_write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // A larger pipe moves more per call (the default holds 64 KiB); where
    // the system refuses, the default does.
    let _ = fcntl(&pipe_write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        let moved = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                Ok(splice(from, None, &pipe_write, None, CHUNK, flags)?)
            }) {
                Ok(moved) => break moved,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        };
        if moved == 0 {
            // The sender is done: so is the receiver's input.
            let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
            return Ok(());
        }
        let mut left = moved;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe_read, None, to, None, left, flags)?)
            }) {
                Ok(written) => {
                    left -= written;
                    total.fetch_add(written as u64, Ordering::Relaxed);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }
}
