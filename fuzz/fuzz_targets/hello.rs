//! The hello datagram, both ways: through a real `SOCK_SEQPACKET` socket
//! with real descriptors of several kinds attached (the server's path), and
//! as a `Received` built by hand with any length and flags (the public API).
//! Nothing may panic; an accepted hello is exactly `HELLO` with one unix
//! stream socket.

#![no_main]

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use execgate_protocol::{accept_hello, recv_with_fds, send_with_fds, Received, HELLO};
use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// The session server's receive buffer size (escalate-server's session.rs).
const SERVER_BUFFER: usize = 64;

fn pair(kind: SockType) -> Option<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC).ok()
}

/// Descriptors to attach, chosen by the input: stream, datagram and
/// seqpacket sockets, a file, repeated or not.
fn descriptors(choice: u8) -> Option<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    for bit in 0..8 {
        if choice & (1 << bit) == 0 {
            continue;
        }
        let fd = match bit % 4 {
            0 => pair(SockType::Stream)?.1,
            1 => pair(SockType::Datagram)?.1,
            2 => pair(SockType::SeqPacket)?.1,
            _ => File::open("/dev/null").ok()?.into(),
        };
        fds.push(fd);
    }
    Some(fds)
}

fuzz_target!(|input: &[u8]| {
    let [choice, claimed_len, flags, datagram @ ..] = input else {
        return;
    };

    // By hand: any length, any flags, a buffer of any size.
    let mut by_hand = Received {
        len: usize::from(*claimed_len),
        fds: Vec::new(),
        truncated: flags & 1 != 0,
    };
    if let Ok(_private) = accept_hello(datagram, &mut by_hand) {
        panic!("a hello without a descriptor was accepted");
    }

    // Through the kernel, as the server receives it.
    let Some((client, server)) = pair(SockType::SeqPacket) else {
        return;
    };
    let Some(fds) = descriptors(*choice) else {
        return;
    };
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    if send_with_fds(client.as_fd(), datagram, &borrowed).is_err() {
        return;
    }
    let mut buf = [0u8; SERVER_BUFFER];
    let Ok(mut received) = recv_with_fds(server.as_fd(), &mut buf) else {
        return;
    };
    if accept_hello(&buf, &mut received).is_ok() {
        assert_eq!(datagram, HELLO, "accepted a hello with the wrong bytes");
        assert_eq!(
            fds.len(),
            1,
            "accepted a hello with {} descriptors",
            fds.len()
        );
    }
});
