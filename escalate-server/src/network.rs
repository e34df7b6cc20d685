//! The hook through which a sandbox with a `limited` network reaches
//! execgate's proxy. The server does not proxy anything itself: whoever
//! embeds it (core-bridge) hosts the proxy and decides connections; the
//! server only asks for a link whenever it starts a limited sandbox (the
//! shell's, or a sandboxed escalation's) and hands it to the sandbox's
//! helper. Without a bridge, a limited sandbox's helper refuses to run
//! anything: the network is never opened wider than the profile says.

use std::io;
use std::os::fd::OwnedFd;

use execgate_sandbox::ResolvedPolicy;

/// Which sandbox a link serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxOrigin {
    /// A shell of the session (one-shot, long-lived or interactive).
    Shell,
    /// The sandbox of an escalated request.
    Escalation {
        request_id: u64,
        /// The process that asked (its pid in the server's namespace):
        /// its ancestry ties the sandbox to the command whose shell asked,
        /// which is told of a connection's denial that ended the sandbox.
        requester: i32,
    },
}

/// Hosts the proxy for a session's limited sandboxes.
pub trait NetworkBridge: Send + Sync {
    /// A link for one sandbox with `policy` (whose network is limited):
    /// the returned socket is the sandbox's end. The bridge keeps the
    /// other end, on which the sandbox's helper sends the listener its
    /// connections arrive on (and the helper's pidfd, which says when the
    /// sandbox has ended).
    fn open(&self, policy: &ResolvedPolicy, origin: SandboxOrigin) -> io::Result<OwnedFd>;
}
