//! Socket I/O both ends share: the hello datagram, descriptor passing, and
//! blocking frame reads for the wrapper.
//!
//! Received descriptors are close-on-exec from the moment they exist
//! (`MSG_CMSG_CLOEXEC`), and owned (`OwnedFd`) from the moment `recvmsg`
//! returns, so none can leak into a child or be forgotten.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    getsockname, getsockopt, send, sendmsg, sockopt, ControlMessage, MsgFlags, SockType, UnixAddr,
};

use crate::codec::{frame_body_len, DecodeError, FRAME_HEADER_LEN};

/// The datagram that opens a request on the session socket: a magic and the
/// protocol version. It carries exactly one descriptor, the server's end of
/// the request's private stream socket.
pub const HELLO: &[u8; 6] = b"EXGT\x01\x00";

/// The most descriptors one `SCM_RIGHTS` message may carry (Linux's
/// `SCM_MAX_FD`).
pub const MAX_PASSED_FDS: usize = 253;

/// What one `recvmsg` delivered.
#[derive(Debug)]
pub struct Received {
    /// Bytes written into the caller's buffer; 0 means end of stream.
    pub len: usize,
    /// Descriptors that came with those bytes, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The kernel dropped data or descriptors that did not fit.
    pub truncated: bool,
}

/// Why a hello datagram was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    #[error("the session socket was closed by every sender")]
    Closed,
    #[error("hello datagram has the wrong magic or version")]
    BadMagic,
    #[error("hello datagram was truncated")]
    Truncated,
    #[error("hello datagram carries {count} descriptors, expected exactly one")]
    WrongDescriptorCount { count: usize },
    #[error("the descriptor in the hello datagram is not a unix stream socket")]
    NotUnixStream,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameIoError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer closed the connection in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Sends every byte, retrying on `EINTR`. `MSG_NOSIGNAL`: a closed peer is an
/// error to report, never a `SIGPIPE`.
pub fn send_all(sock: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match send(sock.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

/// Sends as much of `bytes` as the socket takes now, without waiting for
/// room; returns how much that was (0 when its buffer is full).
pub fn send_without_waiting(sock: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match send(
            sock.as_raw_fd(),
            bytes,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Sends `bytes` with `fds` attached to the first byte, then the rest.
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot pass {} descriptors (at most {MAX_PASSED_FDS})",
                fds.len()
            ),
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            if raw.is_empty() { &[] } else { &cmsgs },
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    };
    send_all(sock, &bytes[sent..])
}

/// Opens a request on the session socket by handing over `private_end`.
pub fn send_hello(session: BorrowedFd<'_>, private_end: BorrowedFd<'_>) -> io::Result<()> {
    send_with_fds(session, HELLO, &[private_end])
}

/// One `recvmsg`, descriptors received close-on-exec. The socket's blocking
/// mode is the caller's: a non-blocking socket reports `WouldBlock`.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    recv_with_fds_flagged(sock, buf, MsgFlags::empty())
}

/// [`recv_with_fds`] that never waits, whatever the socket's mode
/// (`MSG_DONTWAIT`; nothing there is `WouldBlock`): for a socket whose file
/// flags another process shares and may change.
pub fn recv_with_fds_without_waiting(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    recv_with_fds_flagged(sock, buf, MsgFlags::MSG_DONTWAIT)
}

fn recv_with_fds_flagged(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: MsgFlags,
) -> io::Result<Received> {
    CONTROL.with_borrow_mut(|control| receive_into(sock, buf, flags, control))
}

thread_local! {
    /// Room for everything the kernel may add to the descriptors: the
    /// sender's credentials, its pidfd and its security label, which a
    /// peer sharing the socket can ask for (`SO_PASSCRED`, `SO_PASSPIDFD`,
    /// `SO_PASSSEC`). Descriptors that did not fit would be closed by the
    /// kernel, in this thread. Made once per thread: a few KiB allocated
    /// for each message cost the server a measurable share of a `Run`
    /// (glibc tidies its free lists before each such allocation).
    /// Held as `u64`s: the kernel and the `CMSG_*` macros read and write
    /// `cmsghdr`s in it, which need its alignment.
    static CONTROL: std::cell::RefCell<Vec<u64>> = std::cell::RefCell::new(vec![
        0;
        nix::cmsg_space!(
            [RawFd; MAX_PASSED_FDS],
            libc::ucred,
            RawFd,
            [u8; SECURITY_LABEL_ROOM]
        )
        .len()
        .div_ceil(8)
    ]);
}

/// One `recvmsg` with `control` as its control buffer. Written on libc's
/// `recvmsg` and `CMSG_*` rather than nix's, whose iterator refuses a
/// message with `MSG_CTRUNC`: the kernel sets it when it ran out of room,
/// in the buffer or in the receiver's descriptor table, after installing
/// the descriptors that fitted, and those must be owned (to be closed) as
/// any others.
// `msg_controllen` and `cmsg_len` are `size_t` in glibc, `socklen_t` in musl.
#[allow(clippy::unnecessary_cast)]
fn receive_into(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: MsgFlags,
    control: &mut [u64],
) -> io::Result<Received> {
    // SAFETY: the same memory as bytes: initialized `u64`s are valid `u8`s,
    // and the borrow is the only one for as long as `control` is.
    let control: &mut [u8] = unsafe {
        std::slice::from_raw_parts_mut(control.as_mut_ptr().cast(), size_of_val(control))
    };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let (len, header) = loop {
        // SAFETY: an all-zero `msghdr` is a valid one: no address, no
        // buffers, no control (musl's padding fields included).
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = control.len() as _;
        let flags = (MsgFlags::MSG_CMSG_CLOEXEC | flags).bits();
        // SAFETY: the one iovec and the control buffer point into buffers
        // borrowed mutably for the whole call, with their true lengths.
        let received = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut header, flags) };
        match usize::try_from(received) {
            Ok(len) => break (len, header),
            Err(_) if Errno::last() == Errno::EINTR => continue,
            Err(_) => return Err(Errno::last().into()),
        }
    };
    let control_end =
        control.as_ptr() as usize + (header.msg_controllen as usize).min(control.len());
    let mut fds = Vec::new();
    // SAFETY: the buffer is aligned for `cmsghdr` (`u64`s); `CMSG_FIRSTHDR`
    // and `CMSG_NXTHDR` return a header that lies whole within the
    // `msg_controllen` bytes the kernel wrote, or null.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&header) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is such a header (above).
        let (level, kind, cmsg_len) = unsafe {
            (
                (*cmsg).cmsg_level,
                (*cmsg).cmsg_type,
                (*cmsg).cmsg_len as usize,
            )
        };
        // SAFETY: `CMSG_DATA` and `CMSG_LEN` only compute addresses and
        // sizes; the data is read below within `control_end` only.
        let (data, header_len) = unsafe { (libc::CMSG_DATA(cmsg), libc::CMSG_LEN(0) as usize) };
        let data_len = cmsg_len
            .saturating_sub(header_len)
            .min(control_end.saturating_sub(data as usize));
        let passes_fds =
            level == libc::SOL_SOCKET && (kind == libc::SCM_RIGHTS || kind == SCM_PIDFD);
        let count = if passes_fds {
            data_len / size_of::<RawFd>()
        } else {
            0
        };
        for index in 0..count {
            // SAFETY: the descriptor lies within the data the kernel wrote
            // (`data_len`), maybe unaligned in the byte buffer.
            let fd = unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(index)) };
            if fd < 0 {
                continue;
            }
            // SAFETY: the kernel has just installed `fd` in our table for
            // this message; nothing else in the process knows it exists.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            match kind {
                libc::SCM_RIGHTS => fds.push(owned),
                // The sender's pidfd, which the socket's other users may
                // have asked for: owned only to be closed, which never
                // waits for a pidfd.
                _ => drop(owned),
            }
        }
        // SAFETY: as for `CMSG_FIRSTHDR`, from a header it returned.
        cmsg = unsafe { libc::CMSG_NXTHDR(&header, cmsg) };
    }
    let truncated = header.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0;
    Ok(Received {
        len,
        fds,
        truncated,
    })
}

/// Linux's `SCM_PIDFD` (since 6.5): the sender's pidfd, added to every
/// message when the receiving socket has `SO_PASSPIDFD`. Not named by the
/// `libc` crate yet.
const SCM_PIDFD: libc::c_int = 4;

/// Room for an `SCM_SECURITY` label (`SO_PASSSEC`).
const SECURITY_LABEL_ROOM: usize = 4096;

/// Checks a received hello datagram and takes the private socket it
/// carried out of `received`. The descriptors left in `received` are the
/// caller's to close: a server closes what a requester sent where a close
/// that waits (a lingering socket) holds up nothing.
pub fn accept_hello(data: &[u8], received: &mut Received) -> Result<OwnedFd, HelloError> {
    if received.len == 0 && received.fds.is_empty() {
        return Err(HelloError::Closed);
    }
    // A length past the buffer is a truncation the caller did not flag.
    let Some(datagram) = data.get(..received.len).filter(|_| !received.truncated) else {
        return Err(HelloError::Truncated);
    };
    if datagram != HELLO {
        return Err(HelloError::BadMagic);
    }
    let [private] = received.fds.as_slice() else {
        return Err(HelloError::WrongDescriptorCount {
            count: received.fds.len(),
        });
    };
    let is_stream = matches!(getsockopt(private, sockopt::SockType), Ok(SockType::Stream));
    let is_unix = getsockname::<UnixAddr>(private.as_raw_fd()).is_ok();
    if !(is_stream && is_unix) {
        return Err(HelloError::NotUnixStream);
    }
    Ok(received.fds.remove(0))
}

/// Reads one frame body from a blocking socket.
pub fn read_frame(sock: BorrowedFd<'_>) -> Result<Vec<u8>, FrameIoError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    if !read_exact(sock, &mut header)? {
        return Err(FrameIoError::Closed);
    }
    let mut body = vec![0u8; frame_body_len(header)?];
    if !read_exact(sock, &mut body)? {
        return Err(FrameIoError::Truncated);
    }
    Ok(body)
}

/// Fills `buf`. `Ok(false)` when the stream ended before the first byte;
/// an end in the middle is `Truncated`.
fn read_exact(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<bool, FrameIoError> {
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(sock, &mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(FrameIoError::Truncated),
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(io::Error::from(errno).into()),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::sys::socket::{socketpair, AddressFamily, SockFlag};

    use super::*;

    fn pair(kind: SockType) -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC).unwrap()
    }

    /// Probe 140: descriptors the kernel installed before it ran out of
    /// room (a control buffer too small, or the receiver's descriptor
    /// limit) came with `MSG_CTRUNC`, were never owned, and stayed open
    /// for good: a few such messages used up a server's descriptors.
    #[test]
    fn descriptors_of_a_truncated_message_are_owned() {
        let (sender, receiver) = pair(SockType::SeqPacket);
        let (_a, b) = pair(SockType::Stream);
        let five = [b.as_fd(); 5];
        send_with_fds(sender.as_fd(), HELLO, &five).unwrap();
        let mut buf = [0u8; 64];
        let mut room_for_two = vec![0u64; nix::cmsg_space!([RawFd; 2]).len().div_ceil(8)];
        let received = receive_into(
            receiver.as_fd(),
            &mut buf,
            MsgFlags::empty(),
            &mut room_for_two,
        )
        .expect("a truncated message is still received");
        assert!(received.truncated);
        assert_eq!(received.fds.len(), 2);
        for fd in &received.fds {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0);
        }
    }

    #[test]
    fn hello_carries_one_private_stream_socket() {
        let (session_client, session_server) = pair(SockType::SeqPacket);
        let (_mine, theirs) = pair(SockType::Stream);
        send_hello(session_client.as_fd(), theirs.as_fd()).unwrap();
        let mut buf = [0u8; 64];
        let mut received = recv_with_fds(session_server.as_fd(), &mut buf).unwrap();
        let private = accept_hello(&buf, &mut received).unwrap();
        let flags = nix::fcntl::fcntl(&private, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(
            nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC),
            "received descriptors must be close-on-exec"
        );
    }

    #[test]
    fn hello_with_a_datagram_socket_is_refused() {
        let (session_client, session_server) = pair(SockType::SeqPacket);
        let (_mine, theirs) = pair(SockType::Datagram);
        send_hello(session_client.as_fd(), theirs.as_fd()).unwrap();
        let mut buf = [0u8; 64];
        let mut received = recv_with_fds(session_server.as_fd(), &mut buf).unwrap();
        assert!(matches!(
            accept_hello(&buf, &mut received),
            Err(HelloError::NotUnixStream)
        ));
    }

    #[test]
    fn hello_without_descriptor_or_with_bad_magic_is_refused() {
        let (client, server) = pair(SockType::SeqPacket);
        let mut buf = [0u8; 64];
        send_all(client.as_fd(), HELLO).unwrap();
        let mut received = recv_with_fds(server.as_fd(), &mut buf).unwrap();
        assert!(matches!(
            accept_hello(&buf, &mut received),
            Err(HelloError::WrongDescriptorCount { count: 0 })
        ));
        let (_mine, theirs) = pair(SockType::Stream);
        send_with_fds(client.as_fd(), b"EXGT\x02\x00", &[theirs.as_fd()]).unwrap();
        let mut received = recv_with_fds(server.as_fd(), &mut buf).unwrap();
        assert!(matches!(
            accept_hello(&buf, &mut received),
            Err(HelloError::BadMagic)
        ));
    }

    /// Found by the `hello` fuzz target: a length past the end of the
    /// buffer (a `Received` is public, so any caller can build one) panicked
    /// on slicing instead of being refused.
    #[test]
    fn hello_whose_length_exceeds_its_buffer_is_refused_not_a_panic() {
        let (_mine, theirs) = pair(SockType::Stream);
        let mut received = Received {
            len: HELLO.len() + 1,
            fds: vec![theirs],
            truncated: false,
        };
        assert!(matches!(
            accept_hello(&HELLO[..], &mut received),
            Err(HelloError::Truncated)
        ));
    }

    /// A peer that shares the socket can ask the kernel to add its pidfd
    /// (`SO_PASSPIDFD`) or its credentials (`SO_PASSCRED`) to every
    /// message: neither may cost the receiver a descriptor, nor the room
    /// of the ones passed.
    #[test]
    fn what_a_peer_has_the_kernel_add_is_neither_kept_nor_in_the_way() {
        let (client, server) = pair(SockType::Stream);
        let on: libc::c_int = 1;
        for option in [libc::SO_PASSPIDFD, libc::SO_PASSCRED] {
            // SAFETY: a valid socket and a pointer to an int of that size.
            let set = unsafe {
                libc::setsockopt(
                    server.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    std::ptr::from_ref(&on).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(set, 0, "setsockopt {option}");
        }
        let pidfds = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().contains("pidfd"))
                .count()
        };
        let before = pidfds();
        let null = std::fs::File::open("/dev/null").unwrap();
        let many = vec![null.as_fd(); MAX_PASSED_FDS];
        send_with_fds(client.as_fd(), b"x", &many).unwrap();
        let mut buf = [0u8; 1];
        let received = recv_with_fds(server.as_fd(), &mut buf).unwrap();
        assert_eq!(received.fds.len(), MAX_PASSED_FDS);
        assert!(!received.truncated);
        drop(received);
        assert_eq!(pidfds(), before, "a pidfd was kept");
    }

    #[test]
    fn closed_session_socket_reads_as_closed() {
        let (client, server) = pair(SockType::SeqPacket);
        drop(client);
        let mut buf = [0u8; 64];
        let mut received = recv_with_fds(server.as_fd(), &mut buf).unwrap();
        assert!(matches!(
            accept_hello(&buf, &mut received),
            Err(HelloError::Closed)
        ));
    }

    #[test]
    fn read_frame_reports_truncation_and_clean_close() {
        let (a, b) = pair(SockType::Stream);
        send_all(a.as_fd(), &[5, 0, 0, 0, 1, 2]).unwrap();
        drop(a);
        assert!(matches!(
            read_frame(b.as_fd()),
            Err(FrameIoError::Truncated)
        ));
        let (a, b) = pair(SockType::Stream);
        drop(a);
        assert!(matches!(read_frame(b.as_fd()), Err(FrameIoError::Closed)));
    }

    #[test]
    fn read_frame_refuses_oversized_length_before_allocating() {
        let (a, b) = pair(SockType::Stream);
        send_all(a.as_fd(), &u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(
            read_frame(b.as_fd()),
            Err(FrameIoError::Decode(DecodeError::TooLarge { .. }))
        ));
    }
}
