use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::*;

fn request() -> ExecRequest {
    ExecRequest {
        path: "/usr/bin/printf".into(),
        argv: vec![
            "printf".into(),
            OsString::from_vec(b"\xff\xfe not utf-8".to_vec()),
            "line\nbreak \"quoted\" \x1b[31m".into(),
            "".into(),
        ],
        cwd: OsString::from_vec(b"/tmp/\xc3\x28".to_vec()).into(),
        env: vec!["PATH=/bin".into(), "NO_EQUALS_SIGN".into()],
    }
}

fn body(frame: &[u8]) -> &[u8] {
    let header = [frame[0], frame[1], frame[2], frame[3]];
    assert_eq!(
        frame_body_len(header).unwrap(),
        frame.len() - FRAME_HEADER_LEN
    );
    &frame[FRAME_HEADER_LEN..]
}

#[test]
fn client_messages_round_trip_losslessly() {
    let messages = [
        ClientMessage::Request(request()),
        ClientMessage::Descriptors(vec![0, 1, 2, 3, 63]),
        ClientMessage::Descriptors(vec![]),
        ClientMessage::Signal(2),
    ];
    for message in messages {
        let frame = encode_client(&message).unwrap();
        assert_eq!(decode_client(body(&frame)).unwrap(), message);
    }
}

#[test]
fn server_messages_round_trip() {
    let messages = [
        ServerMessage::Run,
        ServerMessage::Escalate,
        ServerMessage::Deny {
            reason: "forbidden by rule".into(),
        },
        ServerMessage::SpawnFailed {
            reason: "no such directory".into(),
            exit_status: 127,
        },
        ServerMessage::Started { pid: 4242 },
        ServerMessage::Exited(Termination::Exited(3)),
        ServerMessage::Exited(Termination::Signaled {
            signal: 15,
            core_dumped: false,
        }),
        ServerMessage::Exited(Termination::Signaled {
            signal: 11,
            core_dumped: true,
        }),
    ];
    for message in messages {
        let frame = encode_server(&message).unwrap();
        assert_eq!(decode_server(body(&frame)).unwrap(), message);
    }
}

#[test]
fn every_truncation_of_a_request_is_refused() {
    let frame = encode_client(&ClientMessage::Request(request())).unwrap();
    let full = body(&frame);
    for len in 0..full.len() {
        assert_eq!(
            decode_client(&full[..len]),
            Err(DecodeError::Truncated),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut frame = encode_client(&ClientMessage::Signal(1)).unwrap();
    frame.push(0);
    assert_eq!(
        decode_client(&frame[FRAME_HEADER_LEN..]),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
}

#[test]
fn hostile_fields_are_refused() {
    let cases: &[(&[u8], DecodeError)] = &[
        (&[0x7f], DecodeError::UnknownTag { tag: 0x7f }),
        (&[TAG_RUN], DecodeError::UnknownTag { tag: TAG_RUN }),
        // A list count far larger than the bytes present.
        (
            &[TAG_DESCRIPTORS, 0xff, 0xff, 0xff, 0xff],
            DecodeError::Truncated,
        ),
        (
            &[TAG_DESCRIPTORS, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            DecodeError::InvalidValue {
                field: "descriptor number",
                value: -1,
            },
        ),
        // A probe's `i32::MAX` overflowed the numbers the server adds above
        // the ones it is sent.
        (
            &[TAG_DESCRIPTORS, 1, 0, 0, 0, 0xc0, 0xff, 0xff, 0x7f],
            DecodeError::InvalidValue {
                field: "descriptor number",
                value: i64::from(DESCRIPTOR_NUMBER_LIMIT),
            },
        ),
        // A path with an embedded NUL could never come from a real exec.
        (
            &[TAG_REQUEST, 3, 0, 0, 0, b'/', 0, b'x'],
            DecodeError::NulByte { field: "path" },
        ),
        // An empty argv.
        (
            &[
                TAG_REQUEST,
                1,
                0,
                0,
                0,
                b'/',
                0,
                0,
                0,
                0,
                1,
                0,
                0,
                0,
                b'/',
                0,
                0,
                0,
                0,
            ],
            DecodeError::EmptyArgv,
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(&decode_client(input).unwrap_err(), expected, "{input:?}");
    }
    assert_eq!(
        decode_server(&[TAG_DENY, 1, 0, 0, 0, 0xff]),
        Err(DecodeError::NotUtf8 { field: "reason" })
    );
    assert_eq!(
        decode_server(&[TAG_EXITED, 9, 0, 0, 0, 0, 0]),
        Err(DecodeError::InvalidValue {
            field: "termination kind",
            value: 9,
        })
    );
}

#[test]
fn oversized_frames_are_refused_both_ways() {
    assert_eq!(
        frame_body_len(((MAX_FRAME_LEN + 1) as u32).to_le_bytes()),
        Err(DecodeError::TooLarge {
            len: MAX_FRAME_LEN + 1
        })
    );
    let huge = ExecRequest {
        argv: vec![OsString::from("x".repeat(MAX_FRAME_LEN))],
        ..request()
    };
    assert!(matches!(
        encode_client(&ClientMessage::Request(huge)),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn a_request_encoded_from_borrowed_parts_decodes_to_those_parts() {
    let argv: [&[u8]; 3] = [b"printf", b"\xff not utf-8", b""];
    let env: [&[u8]; 2] = [b"PATH=/bin", b"NO_EQUALS_SIGN"];
    let frame = encode_request(
        b"/usr/bin/printf",
        argv.iter().copied(),
        b"/tmp/\xc3\x28",
        env.iter().copied(),
    )
    .unwrap();
    let ClientMessage::Request(request) = decode_client(body(&frame)).unwrap() else {
        panic!("not a request");
    };
    assert_eq!(request.path, Path::new("/usr/bin/printf"));
    assert_eq!(
        request.argv,
        argv.map(|arg| OsString::from_vec(arg.to_vec()))
    );
    assert_eq!(request.cwd.as_os_str().as_bytes(), b"/tmp/\xc3\x28");
    assert_eq!(
        request.env,
        env.map(|entry| OsString::from_vec(entry.to_vec()))
    );

    // No environment at all is a valid request too.
    let frame = encode_request(
        b"/bin/true",
        [&b"true"[..]].into_iter(),
        b"/",
        [].into_iter(),
    );
    assert!(decode_client(body(&frame.unwrap())).is_ok());

    // Too large for a frame: refused before anything is copied.
    let big = vec![b'x'; MAX_FRAME_LEN];
    assert!(matches!(
        encode_request(
            b"/bin/true",
            [&b"true"[..]].into_iter(),
            b"/",
            [&big[..]].into_iter()
        ),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn parts_that_read_differently_the_second_time_make_no_frame() {
    let walks = std::cell::Cell::new(0);
    let argv = std::iter::once(()).map(|()| {
        walks.set(walks.get() + 1);
        if walks.get() == 1 {
            &b"true"[..]
        } else {
            &b"true --longer"[..]
        }
    });
    assert!(matches!(
        encode_request(b"/bin/true", argv, b"/", std::iter::empty()),
        Err(DecodeError::LengthMismatch { .. })
    ));
}
