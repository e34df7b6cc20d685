//! The server's decoder of what wrappers send: a byte stream cut into frames
//! by their headers, each body decoded. Nothing may panic, and whatever
//! decodes must encode back to exactly the bytes it came from: the encoding
//! is canonical, so a request cannot mean two things.

#![no_main]

use execgate_protocol::{decode_client, encode_client, frame_body_len, FRAME_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|stream: &[u8]| {
    let mut rest = stream;
    while let Some((header, after)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() {
        let Ok(len) = frame_body_len(*header) else {
            return;
        };
        let Some((body, after)) = after.split_at_checked(len) else {
            return;
        };
        if let Ok(message) = decode_client(body) {
            let encoded = encode_client(&message)
                .unwrap_or_else(|error| panic!("a decoded message does not encode again: {error}"));
            assert_eq!(&encoded[..FRAME_HEADER_LEN], header);
            assert_eq!(&encoded[FRAME_HEADER_LEN..], body);
        }
        rest = after;
    }
});
