//! A request's private socket, used without the reactor for as long as the
//! conversation does not have to wait on it.
//!
//! The client writes its request before the hello that hands the socket
//! over, so the request is nearly always there in full when the server
//! takes the socket; and the answer to it fits the socket's empty buffer.
//! A `Run` or `Deny` then costs two plain reads and one write: no
//! registration with the reactor and no turn through it. Anything that has
//! to wait (a request still arriving, an escalation's conversation) moves
//! the socket to tokio, with the bytes already read.
//!
//! The requester made this socket and may keep a copy of the server's end,
//! whose file flags (`O_NONBLOCK`) it shares and can change. So no read or
//! write here may ever wait in the kernel: each one is `MSG_DONTWAIT`, and
//! what has to wait waits in tokio. Every read and write of a request
//! socket, the escalation's conversation included, goes through this
//! module.
//!
//! Nor may a close: descriptors sent with bytes a read takes are taken
//! too, refused, and left to the [`closer`](crate::closer) threads, and so
//! is a socket left with anything queued when the conversation ends.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::socket::{send, MsgFlags};

use execgate_protocol::{
    decode_client, encode_server, frame_body_len, recv_with_fds_without_waiting,
    send_without_waiting, ClientMessage, ServerMessage, FRAME_HEADER_LEN,
};
use tokio::io::Interest;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::closer;
use crate::conversation::ConversationError;

pub(crate) struct Channel(Socket);

/// The most of a reason an answer carries. A denial may quote what the
/// request named (a path of megabytes, its control characters escaped),
/// and one too long for a frame would leave the requester with a closed
/// socket for its answer.
const MOST_REASON_BYTES: usize = 16 * 1024;

/// `message` as a frame, its reason cut short, saying by how much, when
/// it is longer than [`MOST_REASON_BYTES`].
pub(crate) fn encode_answer(message: &ServerMessage) -> io::Result<Vec<u8>> {
    let cut = |reason: &str| {
        let mut end = MOST_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes more)", &reason[..end], reason.len() - end)
    };
    let shortened = match message {
        ServerMessage::Deny { reason } if reason.len() > MOST_REASON_BYTES => {
            Some(ServerMessage::Deny {
                reason: cut(reason),
            })
        }
        ServerMessage::SpawnFailed {
            reason,
            exit_status,
        } if reason.len() > MOST_REASON_BYTES => Some(ServerMessage::SpawnFailed {
            reason: cut(reason),
            exit_status: *exit_status,
        }),
        _ => None,
    };
    encode_server(shortened.as_ref().unwrap_or(message)).map_err(io::Error::other)
}

/// The longest frame of an escalation's conversation (descriptor numbers,
/// a signal): such messages are a few bytes.
pub(crate) const SMALL_FRAME: usize = 64 << 10;

/// What the session's requests being read may hold, together. A request
/// may be 4 MiB; without a bound, a sandboxed process holding thousands of
/// requests half-sent made the server (the agent) hold gigabytes (of large
/// ones, or of many small ones), and the kernel's out-of-memory killer
/// would pick it, ending every session it serves. Only the session that
/// holds it all is refused; the shell's own requests are a few KiB each.
pub(crate) const FRAMES_BEING_READ_LIMIT: usize = 64 << 20;

/// The bytes of the request frames being read, session-wide.
#[derive(Default)]
pub(crate) struct FramesBeingRead(AtomicUsize);

impl FramesBeingRead {
    /// Holds `len` bytes until the guard is dropped; a frame that does not
    /// fit is refused.
    pub(crate) fn hold(&self, len: usize) -> Result<HeldFrame<'_>, ConversationError> {
        self.take(len)?;
        Ok(HeldFrame { frames: self, len })
    }

    /// Counts `len` more bytes, if they fit.
    fn take(&self, len: usize) -> Result<(), ConversationError> {
        let before = self.0.fetch_add(len, Ordering::Relaxed);
        if before + len > FRAMES_BEING_READ_LIMIT {
            self.0.fetch_sub(len, Ordering::Relaxed);
            return Err(ConversationError::Busy(
                "the session's other requests being read hold the 64 MiB allowed; try \
                 again when they are done",
            ));
        }
        Ok(())
    }
}

/// Bytes of a frame, held in [`FramesBeingRead`] while it is read.
pub(crate) struct HeldFrame<'a> {
    frames: &'a FramesBeingRead,
    len: usize,
}

impl HeldFrame<'_> {
    /// Holds `more` bytes too; refused as [`FramesBeingRead::hold`] is.
    fn grow(&mut self, more: usize) -> Result<(), ConversationError> {
        self.frames.take(more)?;
        self.len += more;
        Ok(())
    }
}

/// How much of a frame's body is held before its bytes arrive: the rest
/// is held as they do. A probe's sixteen requests that each claimed
/// 4 MiB in a header and sent nothing held the whole budget, and every
/// exec of the session was refused.
const HELD_AHEAD: usize = 64 << 10;

impl Drop for HeldFrame<'_> {
    fn drop(&mut self) {
        self.frames.0.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// A frame of the escalation's conversation (descriptor numbers, a
/// signal) has no business being long: its body's length, or an error.
pub(crate) fn small_frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, ConversationError> {
    match frame_body_len(header)? {
        len if len <= SMALL_FRAME => Ok(len),
        _ => Err(ConversationError::Unexpected(
            "a frame too long for its message",
        )),
    }
}

/// How a requester stopped waiting for its answer.
pub(crate) enum StoppedWaiting {
    HungUp,
    SentMore,
}

enum Socket {
    Plain(std::os::unix::net::UnixStream),
    Async(UnixStream),
    /// Moving to tokio failed; every use is an error.
    Lost,
}

impl Channel {
    /// The socket a hello carried. Plain reads and writes never wait
    /// (`MSG_DONTWAIT`), so the socket is left as it came until tokio
    /// takes it: one system call fewer for every `Run`.
    pub(crate) fn new(private: OwnedFd) -> io::Result<Channel> {
        Ok(Channel(Socket::Plain(
            std::os::unix::net::UnixStream::from(private),
        )))
    }

    /// The socket, for questions to the kernel about its peer.
    pub(crate) fn socket(&self) -> Option<BorrowedFd<'_>> {
        match &self.0 {
            Socket::Plain(plain) => Some(plain.as_fd()),
            Socket::Async(stream) => Some(stream.as_fd()),
            Socket::Lost => None,
        }
    }

    fn asynchronous(&mut self) -> io::Result<&mut UnixStream> {
        if let Socket::Plain(plain) = &self.0 {
            plain.set_nonblocking(true)?;
            if let Socket::Plain(plain) = std::mem::replace(&mut self.0, Socket::Lost) {
                // Fails only when the reactor cannot register the socket
                // (out of memory, or of epoll watches), and then closes
                // it here: the one close of a request socket not retired.
                self.0 = Socket::Async(UnixStream::from_std(plain)?);
            }
        }
        match &mut self.0 {
            Socket::Async(stream) => Ok(stream),
            _ => Err(lost()),
        }
    }

    /// Reads one whole frame: what is already there without waiting, the
    /// rest through tokio. Never reads past the frame. Its body is held
    /// against `being_read`, the session's budget, for as long as the
    /// guard returned with it lives: the request it holds lives on in
    /// what is decided.
    pub(crate) async fn read_frame<'b>(
        &mut self,
        being_read: &'b FramesBeingRead,
    ) -> Result<(ClientMessage, HeldFrame<'b>), ConversationError> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        self.fill(&mut header).await?;
        let len = frame_body_len(header)?;
        let first = len.min(HELD_AHEAD);
        let mut held = being_read.hold(first)?;
        let mut body = vec![0u8; first];
        self.fill(&mut body).await?;
        while body.len() < len {
            let start = body.len();
            let more = (len - start).min(HELD_AHEAD);
            held.grow(more)?;
            body.resize(start + more, 0);
            self.fill(&mut body[start..]).await?;
        }
        Ok((decode_client(&body)?, held))
    }

    /// Fills `buffer`: what has arrived without waiting, the rest through
    /// tokio. The client hanging up first is [`ConversationError::Closed`].
    async fn fill(&mut self, buffer: &mut [u8]) -> Result<(), ConversationError> {
        let filled = self.read_waiting(buffer)?;
        if filled < buffer.len() {
            read_exact(self.asynchronous()?, &mut buffer[filled..]).await?;
        }
        Ok(())
    }

    /// Fills as much of `buffer` as has arrived, while the socket is plain.
    fn read_waiting(&mut self, buffer: &mut [u8]) -> Result<usize, ConversationError> {
        let Socket::Plain(plain) = &self.0 else {
            return Ok(0);
        };
        let mut filled = 0;
        while filled < buffer.len() {
            match read_some(plain.as_fd(), &mut buffer[filled..]) {
                Ok(0) => return Err(ConversationError::Closed),
                Ok(n) => filled += n,
                Err(ConversationError::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    break
                }
                Err(error) => return Err(error),
            }
        }
        Ok(filled)
    }

    /// Sends one frame: as much as the socket takes now, the rest through
    /// tokio.
    pub(crate) async fn send(&mut self, message: &ServerMessage) -> io::Result<()> {
        let frame = encode_answer(message)?;
        let mut sent = 0;
        if let Socket::Plain(plain) = &self.0 {
            while sent < frame.len() {
                match send_without_waiting(plain.as_fd(), &frame[sent..])? {
                    0 => break,
                    n => sent += n,
                }
            }
        }
        if sent < frame.len() {
            write_all(self.asynchronous()?, &frame[sent..]).await?;
        }
        Ok(())
    }

    /// Returns once the requester stops waiting for its answer: it hangs
    /// up (its end closed: the command was killed, its call cancelled) or
    /// sends anything more, which no requester does before its answer.
    pub(crate) async fn stopped_waiting(&mut self) -> StoppedWaiting {
        // A socket tokio could not take is closed: as good as hung up.
        let Ok(stream) = self.asynchronous() else {
            return StoppedWaiting::HungUp;
        };
        loop {
            if stream.readable().await.is_err() {
                return StoppedWaiting::HungUp;
            }
            let mut byte = [0u8; 1];
            let peeked = stream.try_io(Interest::READABLE, || {
                let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
                nix::sys::socket::recv(stream.as_raw_fd(), &mut byte, flags)
                    .map_err(io::Error::from)
            });
            match peeked {
                Ok(0) => return StoppedWaiting::HungUp,
                Ok(_) => return StoppedWaiting::SentMore,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return StoppedWaiting::HungUp,
            }
        }
    }

    /// The socket's two halves, for a conversation that goes on, and a
    /// reference to it that the caller keeps until both halves are gone:
    /// dropped last, it retires the socket as a [`Channel`] does.
    pub(crate) fn into_split(
        mut self,
    ) -> io::Result<(OwnedReadHalf, OwnedWriteHalf, RequestSocket)> {
        let stream = self.asynchronous()?;
        // On failure the channel, whole, retires the socket as it drops.
        let last = RequestSocket(Some(stream.as_fd().try_clone_to_owned()?));
        match std::mem::replace(&mut self.0, Socket::Lost) {
            Socket::Async(stream) => {
                let (reader, writer) = stream.into_split();
                Ok((reader, writer, last))
            }
            _ => Err(lost()),
        }
    }
}

/// Whatever the requester queued on the socket and the server never read
/// is closed with the socket's last close: see [`closer::retire`].
impl Drop for Channel {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.0, Socket::Lost) {
            Socket::Plain(plain) => closer::retire(plain.into()),
            Socket::Async(stream) => match stream.into_std() {
                Ok(plain) => closer::retire(plain.into()),
                Err(error) => tracing::warn!(%error, "request socket not deregistered"),
            },
            Socket::Lost => {}
        }
    }
}

/// A request socket's last reference in the server, once its halves are
/// gone: retires it when dropped.
pub(crate) struct RequestSocket(Option<OwnedFd>);

impl Drop for RequestSocket {
    fn drop(&mut self) {
        if let Some(socket) = self.0.take() {
            closer::retire(socket);
        }
    }
}

/// One read that never waits. Descriptors sent with the bytes are refused:
/// only the descriptors frame of an escalation carries any, and
/// [`read_descriptors`](crate::conversation) reads that one itself.
fn read_some(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> Result<usize, ConversationError> {
    let received = recv_with_fds_without_waiting(socket, buffer)?;
    if !received.fds.is_empty() || received.truncated {
        closer::close_later(received.fds);
        return Err(ConversationError::Unexpected(
            "descriptors sent outside the hand-over",
        ));
    }
    Ok(received.len)
}

/// Fills `buffer` from a socket tokio watches. Every read is `MSG_DONTWAIT`:
/// the requester made this socket and may keep a copy of our end, whose
/// file flags it shares, so `O_NONBLOCK` is its to clear; a read that
/// waited in the kernel would hold the thread every session is served on
/// for as long as it likes. The client hanging up first is
/// [`ConversationError::Closed`].
pub(crate) async fn read_exact(
    stream: &UnixStream,
    buffer: &mut [u8],
) -> Result<(), ConversationError> {
    let mut filled = 0;
    while filled < buffer.len() {
        let mut refused = None;
        let read = stream
            .async_io(Interest::READABLE, || {
                match read_some(stream.as_fd(), &mut buffer[filled..]) {
                    Ok(read) => Ok(read),
                    Err(ConversationError::Io(error)) => Err(error),
                    Err(other) => {
                        refused = Some(other);
                        Ok(0)
                    }
                }
            })
            .await?;
        if let Some(error) = refused {
            return Err(error);
        }
        if read == 0 {
            return Err(ConversationError::Closed);
        }
        filled += read;
    }
    Ok(())
}

/// Writes all of `bytes` to a socket tokio watches, each write
/// `MSG_DONTWAIT` (see [`read_exact`]).
pub(crate) async fn write_all(stream: &UnixStream, bytes: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        sent += stream
            .async_io(Interest::WRITABLE, || {
                send(
                    stream.as_raw_fd(),
                    &bytes[sent..],
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                )
                .map_err(io::Error::from)
            })
            .await?;
    }
    Ok(())
}

fn lost() -> io::Error {
    io::Error::other("the request socket could not be watched")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream as PlainStream;
    use std::time::Duration;

    use execgate_protocol::{decode_server, encode_client, ExecRequest};

    use super::*;

    fn request_frame() -> Vec<u8> {
        encode_client(&ClientMessage::Request(ExecRequest {
            path: "/usr/bin/true".into(),
            argv: vec!["true".into()],
            cwd: "/".into(),
            env: vec!["A=1".into(); 64],
        }))
        .unwrap()
    }

    /// The frame reaches the server's end in pieces: the bytes there
    /// before the server looks, then the rest after a pause, then more.
    /// Each way gives the same request, and what follows the frame stays
    /// unread.
    #[tokio::test]
    async fn a_request_is_read_whole_however_it_arrives() {
        let frame = request_frame();
        let cases = [
            0,                // nothing yet
            2,                // part of the header
            FRAME_HEADER_LEN, // the header alone
            frame.len() - 1,  // all but the last byte
        ];
        for early in cases {
            let (mut client, server) = PlainStream::pair().unwrap();
            client.write_all(&frame[..early]).unwrap();
            let mut channel = Channel::new(server.into()).unwrap();
            let rest = frame[early..].to_vec();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                client.write_all(&rest).unwrap();
                client.write_all(b"after").unwrap();
                client
            });
            let message = channel
                .read_frame(&FramesBeingRead::default())
                .await
                .unwrap()
                .0;
            assert!(
                matches!(&message, ClientMessage::Request(request) if request.env.len() == 64),
                "{early}: {message:?}"
            );
            let client = writer.join().unwrap();
            answer_and_check_what_follows(channel, client).await;
        }
    }

    /// A probe held 250 requests of 4 MiB half-sent, and a re-probe 18,000
    /// of 64 KiB, and the server held over a gigabyte. Frames being read
    /// share a session-wide budget, whatever their size.
    #[test]
    fn frames_being_read_share_a_budget() {
        let being_read = FramesBeingRead::default();
        for size in [4 << 20, 64 << 10] {
            let held: Vec<_> = (0..FRAMES_BEING_READ_LIMIT / size)
                .map(|_| being_read.hold(size).unwrap())
                .collect();
            assert!(matches!(
                being_read.hold(size),
                Err(ConversationError::Busy(_))
            ));
            assert!(matches!(
                being_read.hold(1),
                Err(ConversationError::Busy(_))
            ));
            drop(held);
            assert!(being_read.hold(size).is_ok());
            assert_eq!(being_read.0.load(Ordering::Relaxed), 0);
        }
    }

    /// Probe 237: sixteen requests that each claimed 4 MiB in a header
    /// and sent nothing held the session's whole budget. A frame holds its
    /// bytes as they arrive, a first 64 KiB ahead of them.
    #[tokio::test]
    async fn a_frame_holds_its_bytes_as_they_arrive() {
        let being_read = FramesBeingRead::default();
        let (mut client, server) = PlainStream::pair().unwrap();
        let claimed: [u8; FRAME_HEADER_LEN] = ((4u32 << 20) - 16).to_le_bytes();
        client.write_all(&claimed).unwrap();
        let mut channel = Channel::new(OwnedFd::from(server)).unwrap();
        let reading = channel.read_frame(&being_read);
        tokio::pin!(reading);
        let waited = tokio::time::timeout(Duration::from_millis(50), reading.as_mut()).await;
        assert!(waited.is_err());
        assert_eq!(being_read.0.load(Ordering::Relaxed), HELD_AHEAD);
        drop(client);
        assert!(reading.await.is_err());
        assert_eq!(being_read.0.load(Ordering::Relaxed), 0);
    }

    /// A frame past 64 KiB is read whole, held by its length once read,
    /// and gives it all back; one the budget cannot take to its end is
    /// refused and holds nothing after (review 239).
    #[tokio::test]
    async fn a_long_frame_is_held_by_its_length_and_given_back() {
        let long = ClientMessage::Request(ExecRequest {
            path: "/usr/bin/true".into(),
            argv: vec!["true".into()],
            cwd: "/".into(),
            env: vec![format!("BIG={}", "x".repeat(200 << 10)).into()],
        });
        let frame = encode_client(&long).unwrap();
        let body_len = frame.len() - FRAME_HEADER_LEN;
        let being_read = FramesBeingRead::default();
        let (mut client, server) = PlainStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            client.write_all(&frame).unwrap();
            client
        });
        let mut channel = Channel::new(server.into()).unwrap();
        let (message, held) = channel.read_frame(&being_read).await.unwrap();
        assert_eq!(message, long);
        assert_eq!(being_read.0.load(Ordering::Relaxed), body_len);
        drop(held);
        assert_eq!(being_read.0.load(Ordering::Relaxed), 0);
        drop(writer.join().unwrap());
        // The budget all but full: refused on the way, nothing held.
        let most = being_read
            .hold(FRAMES_BEING_READ_LIMIT - 100 * 1024)
            .unwrap();
        let (mut client, server) = PlainStream::pair().unwrap();
        let frame = encode_client(&long).unwrap();
        let writer = std::thread::spawn(move || {
            let _ = client.write_all(&frame);
        });
        let mut channel = Channel::new(server.into()).unwrap();
        assert!(matches!(
            channel.read_frame(&being_read).await,
            Err(ConversationError::Busy(_))
        ));
        drop(channel);
        writer.join().unwrap();
        drop(most);
        assert_eq!(being_read.0.load(Ordering::Relaxed), 0);
    }

    /// The usual case: the whole request, and more after it, is there when
    /// the server looks. It is read without tokio, and only the frame.
    #[tokio::test]
    async fn a_request_already_there_is_read_without_the_reactor() {
        let (mut client, server) = PlainStream::pair().unwrap();
        client.write_all(&request_frame()).unwrap();
        client.write_all(b"after").unwrap();
        let mut channel = Channel::new(server.into()).unwrap();
        let message = channel
            .read_frame(&FramesBeingRead::default())
            .await
            .unwrap()
            .0;
        assert!(matches!(message, ClientMessage::Request(_)));
        assert!(matches!(channel.0, Socket::Plain(_)), "moved to tokio");
        answer_and_check_what_follows(channel, client).await;
    }

    /// Answers `Run`; the client gets it, and "after" is still unread.
    async fn answer_and_check_what_follows(mut channel: Channel, mut client: PlainStream) {
        channel.send(&ServerMessage::Run).await.unwrap();
        let (reader, _, _socket) = channel.into_split().unwrap();
        let mut after = [0u8; 5];
        read_exact(reader.as_ref(), &mut after).await.unwrap();
        assert_eq!(&after, b"after");
        let mut header = [0u8; FRAME_HEADER_LEN];
        client.read_exact(&mut header).unwrap();
        let mut body = vec![0u8; frame_body_len(header).unwrap()];
        client.read_exact(&mut body).unwrap();
        assert!(matches!(decode_server(&body), Ok(ServerMessage::Run)));
    }

    /// The socket comes as the client made it, blocking: a plain read
    /// must still return at once with what is there (here, nothing).
    #[test]
    fn a_plain_read_never_waits() {
        let (_client, server) = PlainStream::pair().unwrap();
        // Were the read to wait, it would give up only after this.
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut channel = Channel::new(server.into()).unwrap();
        let started = std::time::Instant::now();
        let mut buffer = [0u8; FRAME_HEADER_LEN];
        assert_eq!(channel.read_waiting(&mut buffer).unwrap(), 0);
        assert!(started.elapsed() < Duration::from_secs(10), "it waited");
    }

    #[tokio::test]
    async fn a_client_gone_before_its_request_is_closed_not_an_error() {
        let (client, server) = PlainStream::pair().unwrap();
        drop(client);
        let mut channel = Channel::new(server.into()).unwrap();
        assert!(matches!(
            channel
                .read_frame(&FramesBeingRead::default())
                .await
                .map(|(message, _)| message),
            Err(ConversationError::Closed)
        ));
    }
}
