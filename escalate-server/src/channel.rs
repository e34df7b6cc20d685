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

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{recv, send, MsgFlags};

use execgate_protocol::{
    decode_client, encode_server, frame_body_len, send_without_waiting, ClientMessage,
    ServerMessage, FRAME_HEADER_LEN,
};
use tokio::io::Interest;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::conversation::ConversationError;

pub(crate) enum Channel {
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
        Ok(Channel::Plain(std::os::unix::net::UnixStream::from(
            private,
        )))
    }

    /// The socket, for questions to the kernel about its peer.
    pub(crate) fn socket(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Channel::Plain(plain) => Some(plain.as_fd()),
            Channel::Async(stream) => Some(stream.as_fd()),
            Channel::Lost => None,
        }
    }

    fn asynchronous(&mut self) -> io::Result<&mut UnixStream> {
        if matches!(self, Channel::Plain(_)) {
            if let Channel::Plain(plain) = std::mem::replace(self, Channel::Lost) {
                plain.set_nonblocking(true)?;
                *self = Channel::Async(UnixStream::from_std(plain)?);
            }
        }
        match self {
            Channel::Async(stream) => Ok(stream),
            _ => Err(lost()),
        }
    }

    /// Reads one whole frame: what is already there without waiting, the
    /// rest through tokio. Never reads past the frame.
    pub(crate) async fn read_frame(&mut self) -> Result<ClientMessage, ConversationError> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        self.fill(&mut header).await?;
        let mut body = vec![0u8; frame_body_len(header)?];
        self.fill(&mut body).await?;
        Ok(decode_client(&body)?)
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
        let Channel::Plain(plain) = self else {
            return Ok(0);
        };
        let mut filled = 0;
        while filled < buffer.len() {
            match recv(
                plain.as_raw_fd(),
                &mut buffer[filled..],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => return Err(ConversationError::Closed),
                Ok(n) => filled += n,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(io::Error::from(errno).into()),
            }
        }
        Ok(filled)
    }

    /// Sends one frame: as much as the socket takes now, the rest through
    /// tokio.
    pub(crate) async fn send(&mut self, message: &ServerMessage) -> io::Result<()> {
        let frame = encode_server(message).map_err(io::Error::other)?;
        let mut sent = 0;
        if let Channel::Plain(plain) = self {
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

    /// The socket's two halves, for a conversation that goes on.
    pub(crate) fn into_split(mut self) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        self.asynchronous()?;
        match self {
            Channel::Async(stream) => Ok(stream.into_split()),
            _ => Err(lost()),
        }
    }
}

/// Fills `buffer` from a socket tokio watches. Every read is `MSG_DONTWAIT`:
/// the requester made this socket and may keep a copy of our end, whose
/// file flags it shares, so `O_NONBLOCK` is its to clear; a read that
/// waited in the kernel would hold a worker thread of the server for as
/// long as it likes. The client hanging up first is
/// [`ConversationError::Closed`].
pub(crate) async fn read_exact(
    stream: &UnixStream,
    buffer: &mut [u8],
) -> Result<(), ConversationError> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = stream
            .async_io(Interest::READABLE, || {
                recv(
                    stream.as_raw_fd(),
                    &mut buffer[filled..],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)
            })
            .await?;
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
            let message = channel.read_frame().await.unwrap();
            assert!(
                matches!(&message, ClientMessage::Request(request) if request.env.len() == 64),
                "{early}: {message:?}"
            );
            let client = writer.join().unwrap();
            answer_and_check_what_follows(channel, client).await;
        }
    }

    /// The usual case: the whole request, and more after it, is there when
    /// the server looks. It is read without tokio, and only the frame.
    #[tokio::test]
    async fn a_request_already_there_is_read_without_the_reactor() {
        let (mut client, server) = PlainStream::pair().unwrap();
        client.write_all(&request_frame()).unwrap();
        client.write_all(b"after").unwrap();
        let mut channel = Channel::new(server.into()).unwrap();
        let message = channel.read_frame().await.unwrap();
        assert!(matches!(message, ClientMessage::Request(_)));
        assert!(matches!(channel, Channel::Plain(_)), "moved to tokio");
        answer_and_check_what_follows(channel, client).await;
    }

    /// Answers `Run`; the client gets it, and "after" is still unread.
    async fn answer_and_check_what_follows(mut channel: Channel, mut client: PlainStream) {
        channel.send(&ServerMessage::Run).await.unwrap();
        let (reader, _) = channel.into_split().unwrap();
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
            channel.read_frame().await,
            Err(ConversationError::Closed)
        ));
    }
}
