//! The wire format between execgate's exec wrapper and its escalation server.
//!
//! This crate is the contract both ends build against: message types, their
//! byte encoding, framing and size limits, descriptor passing, and the `#!`
//! rules both ends apply the same way. It is synchronous and small on
//! purpose: the wrapper links it into a small binary that runs on every
//! exec, so it must never pull in an async runtime, allocate needlessly or
//! panic on input. Every byte that arrives is untrusted: decoding returns a
//! typed [`DecodeError`] for anything malformed, truncated or oversized.
//!
//! # One request
//!
//! ```text
//!  exec wrapper                                   escalation server
//!  ------------                                   -----------------
//!  socketpair(STREAM) -> (mine, theirs)
//!  sendmsg(session socket, HELLO, [theirs])  ---> recvmsg: one stream socket
//!  write Request{path, argv, cwd, env}       ---> decode, resolve, decide
//!                                            <--- Run | Deny{reason} | Escalate
//!  Run:  execve in place (inside the shell's sandbox)
//!  Deny: "execgate: denied: PATH: REASON", exit 126
//!  Escalate:
//!  sendmsg(Descriptors{numbers}, [fds...])   ---> spawn with fds at those numbers
//!                                            <--- Started{pid} | SpawnFailed{reason, exit_status}
//!  Signal{signo} (any number of times)       ---> kill(-pgid, signo)
//!                                            <--- Exited(Termination)
//!  exit with the code, or die of the same signal
//! ```
//!
//! The session socket is a `SOCK_SEQPACKET` socket shared by every process of
//! the session; it carries only [`HELLO`] datagrams, each with one private
//! stream socket attached. Everything else travels on that private socket,
//! one per request, so parallel pipelines never share a conversation, and the
//! server takes the requester's pid and uid from the kernel (`SO_PEERCRED`),
//! not from the message.
//!
//! # Frames
//!
//! A frame is a little-endian `u32` body length followed by the body: one tag
//! byte and the fields of that message. Byte strings are a `u32` length and
//! the raw bytes (paths, arguments and environment entries are bytes, so
//! nothing that is not UTF-8 is lost); lists are a `u32` count and the items.
//! No frame body may exceed [`MAX_FRAME_LEN`].
//!
//! # The shell's side
//!
//! The wrapper's command line is
//! `WRAPPER SOCKET-FD ABSOLUTE-PATH EXEC-PATH MESSAGE-PREFIX NAME ARGV0 ARGS...`
//! with the environment the command would have had; see [`WrapperArgs`].
//! The patched zsh executes no wrapper: its forked child asks and, on
//! `Escalate`, stands in for the command with the wrapper's code, given
//! that same command line.
//!
//! # The warden's side
//!
//! A server also starts the wrapper once as its warden, which kills the
//! process groups the server names if the server dies; see [`WardenRecord`].
//!
//! Tested by unit tests beside each module (round trips, every truncation
//! point, hostile lengths), end to end through the real zsh in `tests/`
//! (which also floods a live session with hostile requests), and by a
//! libFuzzer target for every decoder in `fuzz/` (`scripts/fuzz`, run by
//! `scripts/test`).
//!
//! Unix only (descriptor passing over a Unix socket): empty elsewhere.
#![cfg(unix)]
#![deny(unsafe_op_in_unsafe_fn)]

mod codec;
mod fdpass;
mod message;
mod shebang;
mod warden;
mod wrapper_args;

pub use codec::{
    decode_client, decode_server, encode_client, encode_request, encode_server, frame_body_len,
    DecodeError, DESCRIPTOR_NUMBER_LIMIT, FRAME_HEADER_LEN, MAX_FRAME_LEN,
};
pub use fdpass::{
    accept_hello, read_frame, recv_with_fds, recv_with_fds_without_waiting, send_all, send_hello,
    send_with_fds, send_without_waiting, FrameIoError, HelloError, Received, HELLO, MAX_PASSED_FDS,
};
pub use message::{
    exec_failure_status, ClientMessage, ExecRequest, ServerMessage, Termination, FORWARDED_SIGNALS,
};
pub use shebang::{looks_like_shell_text, parse_shebang, Shebang, SHEBANG_LIMIT};
pub use warden::{cgroup_tree, remove_cgroup_tree, WardenRecord, WARDEN_FLAG, WARDEN_RECORD_LEN};
pub use wrapper_args::{WrapperArgs, WrapperArgsError, ENV_SOCKET_FD, ENV_WRAPPER};
