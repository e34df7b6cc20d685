//! The wrapper's side: server frames read from a real stream socket with
//! the blocking reader the wrapper uses, then decoded. Nothing may panic,
//! and a decoded message must survive encoding and decoding unchanged.

#![no_main]

use std::os::fd::AsFd;

use execgate_protocol::{decode_server, encode_server, read_frame, send_all};
use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

fuzz_target!(|stream: &[u8]| {
    let Ok((server, wrapper)) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) else {
        return;
    };
    // libFuzzer's inputs (4 KiB by default) fit in a socket buffer, so this
    // write does not wait for a reader.
    if send_all(server.as_fd(), stream).is_err() {
        return;
    }
    drop(server);
    while let Ok(body) = read_frame(wrapper.as_fd()) {
        if let Ok(message) = decode_server(&body) {
            let encoded = encode_server(&message)
                .unwrap_or_else(|error| panic!("a decoded message does not encode again: {error}"));
            assert_eq!(decode_server(&encoded[4..]).as_ref(), Ok(&message));
        }
    }
});
