//! Byte encoding of frames. Encoders size the buffer first and allocate once;
//! decoders bound every length by the bytes actually present, so a hostile
//! length field can never make them allocate more than the frame holds.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::message::{ClientMessage, ExecRequest, ServerMessage, Termination};

/// Bytes in a frame header (the body length).
pub const FRAME_HEADER_LEN: usize = 4;

/// The largest frame body either end accepts: 4 MiB. Linux limits argv and
/// environment together to a quarter of the stack limit (2 MiB by default),
/// so every real request fits.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// No descriptor has a number at or above this: Linux's ceiling for
/// `fs.nr_open` (`INT_MAX` rounded down to a multiple of 64). The server
/// numbers what it adds to an escalation above the numbers it is sent.
pub const DESCRIPTOR_NUMBER_LIMIT: i32 = i32::MAX & !63;

const TAG_REQUEST: u8 = 0x01;
const TAG_DESCRIPTORS: u8 = 0x02;
const TAG_SIGNAL: u8 = 0x03;
const TAG_RUN: u8 = 0x81;
const TAG_DENY: u8 = 0x82;
const TAG_ESCALATE: u8 = 0x83;
const TAG_STARTED: u8 = 0x84;
const TAG_SPAWN_FAILED: u8 = 0x85;
const TAG_EXITED: u8 = 0x86;

const TERMINATION_EXITED: u8 = 0;
const TERMINATION_SIGNALED: u8 = 1;

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge { len: usize },
    #[error("frame is truncated")]
    Truncated,
    #[error("frame has {count} bytes after its last field")]
    TrailingBytes { count: usize },
    #[error("unknown message tag {tag:#04x}")]
    UnknownTag { tag: u8 },
    #[error("{field} contains a NUL byte")]
    NulByte { field: &'static str },
    #[error("{field} is not valid UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("invalid {field}: {value}")]
    InvalidValue { field: &'static str, value: i64 },
    #[error("empty argument vector")]
    EmptyArgv,
    #[error("frame body of {actual} bytes, where its header says {declared}")]
    LengthMismatch { declared: usize, actual: usize },
}

/// Reads the body length from a frame header, refusing oversized frames.
pub fn frame_body_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::TooLarge { len });
    }
    Ok(len)
}

/// Encodes a client frame, header included.
pub fn encode_client(message: &ClientMessage) -> Result<Vec<u8>, DecodeError> {
    match message {
        ClientMessage::Request(request) => encode_request(
            request.path.as_os_str().as_bytes(),
            request.argv.iter().map(|arg| arg.as_bytes()),
            request.cwd.as_os_str().as_bytes(),
            request.env.iter().map(|entry| entry.as_bytes()),
        ),
        ClientMessage::Descriptors(numbers) => {
            let mut out = Frame::with_body_len(1 + 4 + 4 * numbers.len())?;
            out.u8(TAG_DESCRIPTORS);
            out.u32(numbers.len() as u32);
            for number in numbers {
                out.i32(*number);
            }
            out.finish()
        }
        ClientMessage::Signal(signal) => {
            let mut out = Frame::with_body_len(1 + 4)?;
            out.u8(TAG_SIGNAL);
            out.i32(*signal);
            out.finish()
        }
    }
}

/// Encodes a request frame, header included, from borrowed parts: the
/// frame `encode_client` gives for the [`ExecRequest`] of the same bytes,
/// with no copy of them but the frame (the patched zsh's forked child
/// encodes straight from its C strings). `argv` and `env` are walked
/// twice: once to size the frame, once to fill it.
pub fn encode_request<'a>(
    path: &[u8],
    argv: impl Iterator<Item = &'a [u8]> + Clone,
    cwd: &[u8],
    env: impl Iterator<Item = &'a [u8]> + Clone,
) -> Result<Vec<u8>, DecodeError> {
    let (argc, argv_len) = list_size(argv.clone());
    let (envc, env_len) = list_size(env.clone());
    let body_len = 1 + 4 + path.len() + argv_len + 4 + cwd.len() + env_len;
    let mut out = Frame::with_body_len(body_len)?;
    out.u8(TAG_REQUEST);
    out.bytes(path);
    out.list(argc, argv);
    out.bytes(cwd);
    out.list(envc, env);
    out.finish()
}

/// Encodes a server frame, header included.
pub fn encode_server(message: &ServerMessage) -> Result<Vec<u8>, DecodeError> {
    let body_len = match message {
        ServerMessage::Run | ServerMessage::Escalate => 1,
        ServerMessage::Deny { reason } => 1 + 4 + reason.len(),
        ServerMessage::SpawnFailed { reason, .. } => 1 + 4 + reason.len() + 1,
        ServerMessage::Started { .. } => 1 + 4,
        ServerMessage::Exited(_) => 1 + 1 + 4 + 1,
    };
    let mut out = Frame::with_body_len(body_len)?;
    match message {
        ServerMessage::Run => out.u8(TAG_RUN),
        ServerMessage::Escalate => out.u8(TAG_ESCALATE),
        ServerMessage::Deny { reason } => {
            out.u8(TAG_DENY);
            out.bytes(reason.as_bytes());
        }
        ServerMessage::SpawnFailed {
            reason,
            exit_status,
        } => {
            out.u8(TAG_SPAWN_FAILED);
            out.bytes(reason.as_bytes());
            out.u8(*exit_status);
        }
        ServerMessage::Started { pid } => {
            out.u8(TAG_STARTED);
            out.i32(*pid);
        }
        ServerMessage::Exited(termination) => {
            out.u8(TAG_EXITED);
            match termination {
                Termination::Exited(code) => {
                    out.u8(TERMINATION_EXITED);
                    out.i32(*code);
                    out.u8(0);
                }
                Termination::Signaled {
                    signal,
                    core_dumped,
                } => {
                    out.u8(TERMINATION_SIGNALED);
                    out.i32(*signal);
                    out.u8(u8::from(*core_dumped));
                }
            }
        }
    }
    out.finish()
}

/// Decodes a client frame body (without its header).
pub fn decode_client(body: &[u8]) -> Result<ClientMessage, DecodeError> {
    let mut input = Reader::new(body)?;
    let message = match input.u8()? {
        TAG_REQUEST => {
            let path = PathBuf::from(input.os_string("path")?);
            let argv = input.os_list("argv")?;
            let cwd = PathBuf::from(input.os_string("cwd")?);
            let env = input.os_list("env")?;
            if argv.is_empty() {
                return Err(DecodeError::EmptyArgv);
            }
            ClientMessage::Request(ExecRequest {
                path,
                argv,
                cwd,
                env,
            })
        }
        TAG_DESCRIPTORS => {
            let count = input.count(4)?;
            let mut numbers = Vec::with_capacity(count);
            for _ in 0..count {
                let number = input.i32()?;
                if !(0..DESCRIPTOR_NUMBER_LIMIT).contains(&number) {
                    return Err(DecodeError::InvalidValue {
                        field: "descriptor number",
                        value: number.into(),
                    });
                }
                numbers.push(number);
            }
            ClientMessage::Descriptors(numbers)
        }
        TAG_SIGNAL => ClientMessage::Signal(input.i32()?),
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    input.finish()?;
    Ok(message)
}

/// Decodes a server frame body (without its header).
pub fn decode_server(body: &[u8]) -> Result<ServerMessage, DecodeError> {
    let mut input = Reader::new(body)?;
    let message = match input.u8()? {
        TAG_RUN => ServerMessage::Run,
        TAG_ESCALATE => ServerMessage::Escalate,
        TAG_DENY => ServerMessage::Deny {
            reason: input.string("reason")?,
        },
        TAG_SPAWN_FAILED => ServerMessage::SpawnFailed {
            reason: input.string("reason")?,
            exit_status: input.u8()?,
        },
        TAG_STARTED => ServerMessage::Started { pid: input.i32()? },
        TAG_EXITED => {
            let kind = input.u8()?;
            let value = input.i32()?;
            let core = input.u8()?;
            match kind {
                TERMINATION_EXITED => ServerMessage::Exited(Termination::Exited(value)),
                TERMINATION_SIGNALED => ServerMessage::Exited(Termination::Signaled {
                    signal: value,
                    core_dumped: core != 0,
                }),
                other => {
                    return Err(DecodeError::InvalidValue {
                        field: "termination kind",
                        value: other.into(),
                    })
                }
            }
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    input.finish()?;
    Ok(message)
}

/// A list's item count and encoded length (its count and every item's
/// length prefix included).
fn list_size<'a>(items: impl Iterator<Item = &'a [u8]>) -> (usize, usize) {
    items.fold((0, 4), |(count, len), item| {
        (count + 1, len + 4 + item.len())
    })
}

struct Frame(Vec<u8>);

impl Frame {
    fn with_body_len(body_len: usize) -> Result<Self, DecodeError> {
        if body_len > MAX_FRAME_LEN {
            return Err(DecodeError::TooLarge { len: body_len });
        }
        let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + body_len);
        buf.extend_from_slice(&(body_len as u32).to_le_bytes());
        Ok(Frame(buf))
    }

    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn i32(&mut self, value: i32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        self.u32(value.len() as u32);
        self.0.extend_from_slice(value);
    }

    fn list<'a>(&mut self, count: usize, items: impl Iterator<Item = &'a [u8]>) {
        self.u32(count as u32);
        for item in items {
            self.bytes(item);
        }
    }

    /// The frame, once its body is as long as its header says: parts
    /// that read differently the second time (`encode_request`'s
    /// iterators) must not make a frame the peer would misread.
    fn finish(self) -> Result<Vec<u8>, DecodeError> {
        let declared = u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]) as usize;
        let actual = self.0.len() - FRAME_HEADER_LEN;
        if actual != declared {
            return Err(DecodeError::LengthMismatch { declared, actual });
        }
        Ok(self.0)
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Result<Self, DecodeError> {
        if body.len() > MAX_FRAME_LEN {
            return Err(DecodeError::TooLarge { len: body.len() });
        }
        Ok(Reader { rest: body })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        let bytes = self.take(4)?;
        Ok(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A list count, refused when the remaining bytes cannot hold that many
    /// items of at least `min_item_len` bytes each.
    fn count(&mut self, min_item_len: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > self.rest.len() / min_item_len {
            return Err(DecodeError::Truncated);
        }
        Ok(count)
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        if bytes.contains(&0) {
            return Err(DecodeError::NulByte { field });
        }
        Ok(bytes)
    }

    fn os_string(&mut self, field: &'static str) -> Result<OsString, DecodeError> {
        Ok(OsString::from_vec(self.bytes(field)?.to_vec()))
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        std::str::from_utf8(self.bytes(field)?)
            .map(str::to_owned)
            .map_err(|_| DecodeError::NotUtf8 { field })
    }

    fn os_list(&mut self, field: &'static str) -> Result<Vec<OsString>, DecodeError> {
        let count = self.count(4)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.os_string(field)?);
        }
        Ok(items)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
