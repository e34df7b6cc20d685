//! Case b0: the patched zsh asking a server that does nothing but answer
//! `Run`. No identity checks, no policy, no audit record, no reactor: one
//! blocking thread reads the hello and the request and writes the answer.
//! What b costs over b0 is the server's work; what b0 costs over a is the
//! design's floor on this machine (the client's socket, the hello, the
//! request and one round trip), which no server can go under.
//!
//! For P1's one shell only: the shell's end of the socket is inheritable
//! from its creation (so every shell started meanwhile would get it too),
//! the shell joins no session cgroup (b's does, once, at its start), and
//! the thread answers one request at a time, trusting the shell to send
//! each whole.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::thread::JoinHandle;

use anyhow::Result;
use execgate_protocol::{
    accept_hello, encode_server, read_frame, recv_with_fds, send_all, ServerMessage, ENV_SOCKET_FD,
    ENV_WRAPPER,
};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// The answering thread of one shell, which ends when the shell (and all it
/// started) has closed its end of the session socket.
pub(crate) struct Floor {
    shell_end: Option<OwnedFd>,
    answering: JoinHandle<()>,
}

impl Floor {
    /// The command that starts the shell, and its answering thread.
    pub(crate) fn start(
        zsh: &Path,
        wrapper: &Path,
        args: &[OsString],
    ) -> Result<(std::process::Command, Floor)> {
        // Inheritable as created: the bench starts nothing else while the
        // case runs, and drops its copy once the shell has started.
        let (server_end, shell_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )?;
        fcntl(&server_end, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        let mut command = std::process::Command::new(zsh);
        command
            .args(args)
            .env(ENV_WRAPPER, wrapper)
            .env(ENV_SOCKET_FD, shell_end.as_raw_fd().to_string());
        let answering = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn(move || answer_run(&server_end))?;
        let floor = Floor {
            shell_end: Some(shell_end),
            answering,
        };
        Ok((command, floor))
    }

    /// Once the shell is spawned: the bench's copy of its end goes.
    pub(crate) fn shell_spawned(&mut self) {
        self.shell_end = None;
    }

    pub(crate) fn join(self) {
        drop(self.shell_end);
        let _ = self.answering.join();
    }
}

fn answer_run(session: &OwnedFd) {
    let Ok(run) = encode_server(&ServerMessage::Run) else {
        return;
    };
    let mut buffer = [0u8; 64];
    while let Ok(mut received) = recv_with_fds(session.as_fd(), &mut buffer) {
        if received.len == 0 && received.fds.is_empty() {
            return;
        }
        let Ok(private) = accept_hello(&buffer, &mut received) else {
            continue;
        };
        if read_frame(private.as_fd()).is_ok() {
            let _ = send_all(private.as_fd(), &run);
        }
    }
}
