//! The crate's only raw system calls.

/// The kernel's Landlock ABI version, or `None` when Landlock is off.
pub(crate) fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag,
    // landlock_create_ruleset only returns a number; no memory is touched.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).ok().filter(|&v| v > 0)
}

/// Executes the inherited descriptor `fd` (the file the escalation server
/// checked) with `argv` and `env`. Returns only on failure.
pub(crate) fn execute_inherited_fd(
    fd: std::os::fd::RawFd,
    argv: &[std::ffi::CString],
    env: &[std::ffi::CString],
) -> nix::Error {
    use nix::fcntl::{fcntl, AtFlags, FcntlArg, FdFlag};
    if fd < 0 {
        return nix::Error::EBADF;
    }
    // SAFETY: the launcher passes the number of a descriptor it arranged to
    // be open in this process; we only borrow it until exec, and fcntl
    // reports EBADF if it is not open after all.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    // The target must not inherit its own executable's descriptor.
    if let Err(errno) = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
        return errno;
    }
    match nix::unistd::execveat(fd, c"", argv, env, AtFlags::AT_EMPTY_PATH) {
        Ok(never) => match never {},
        Err(errno) => errno,
    }
}

/// Forks the helper. The child continues the caller's code.
pub(crate) fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: the helper is single-threaded when it forks (no thread is ever
    // started before), so the child cannot inherit a lock held by another
    // thread; it only installs filters, sends one descriptor and executes.
    unsafe { nix::unistd::fork() }
}

/// Installs `program` as a seccomp filter whose `SECCOMP_RET_USER_NOTIF`
/// results go to the returned listener (close-on-exec). no_new_privs must
/// already be set.
pub(crate) fn install_notifying_filter(
    program: &[seccompiler::sock_filter],
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let len = u16::try_from(program.len()).map_err(|_| nix::Error::E2BIG)?;
    let fprog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter is #[repr(C)] with the kernel's layout
        // (u16, u8, u8, u32), the same as libc's.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `program`, which outlives the call; the kernel
    // copies the filter before returning.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            // Once the supervisor has a call, only a fatal signal interrupts
            // it: a restarted call would be done twice (O_CREAT|O_EXCL
            // failing the second time, say).
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            &fprog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    let fd = std::os::fd::RawFd::try_from(fd).map_err(|_| nix::Error::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether the kernel's notification structures have the sizes this code
/// was built with (they have not changed since Linux 5.0; a mismatch fails
/// closed rather than let the kernel write past a buffer).
pub(crate) fn notification_sizes_match() -> bool {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: SECCOMP_GET_NOTIF_SIZES writes one seccomp_notif_sizes into
    // the valid, exclusively borrowed `sizes`.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    result == 0
        && usize::from(sizes.seccomp_notif) == std::mem::size_of::<libc::seccomp_notif>()
        && usize::from(sizes.seccomp_notif_resp) == std::mem::size_of::<libc::seccomp_notif_resp>()
        && usize::from(sizes.seccomp_data) == std::mem::size_of::<libc::seccomp_data>()
}

/// Waits for the next notification on `listener`.
pub(crate) fn receive_notification(
    listener: std::os::fd::BorrowedFd<'_>,
) -> nix::Result<libc::seccomp_notif> {
    use std::os::fd::AsRawFd;
    // SAFETY: seccomp_notif is plain data; all-zero is valid and is what
    // the kernel requires of the buffer.
    let mut notification: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the buffer has the size the kernel uses (checked by
    // notification_sizes_match before serving) and is exclusively borrowed.
    let result = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notification as *mut libc::seccomp_notif,
        )
    };
    if result < 0 {
        return Err(nix::Error::last());
    }
    Ok(notification)
}

/// Whether notification `id` still stands (its thread has not died or been
/// interrupted): checked after reading the thread's memory, so that what
/// was read belonged to it.
pub(crate) fn notification_is_valid(listener: std::os::fd::BorrowedFd<'_>, id: u64) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: the ioctl reads one u64 from a valid pointer.
    let result = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        )
    };
    result == 0
}

/// Ends notification `id`: the system call returns `value`, or fails with
/// the errno.
pub(crate) fn respond(
    listener: std::os::fd::BorrowedFd<'_>,
    id: u64,
    outcome: Result<i64, nix::Error>,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let (val, error) = match outcome {
        Ok(value) => (value, 0),
        Err(errno) => (0, -(errno as i32)),
    };
    let response = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags: 0,
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp from a valid pointer.
    let result = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &response as *const libc::seccomp_notif_resp,
        )
    };
    if result < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// Ends notification `id` by installing `fd` in the caller's table: the
/// system call returns the new descriptor's number.
pub(crate) fn respond_with_descriptor(
    listener: std::os::fd::BorrowedFd<'_>,
    id: u64,
    fd: std::os::fd::BorrowedFd<'_>,
    close_on_exec: bool,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let request = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: if close_on_exec {
            libc::O_CLOEXEC as u32
        } else {
            0
        },
    };
    // SAFETY: the ioctl reads one seccomp_notif_addfd from a valid pointer;
    // the kernel duplicates `fd`, which stays ours.
    let result = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD,
            &request as *const libc::seccomp_notif_addfd,
        )
    };
    if result < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// A pidfd for the thread `tid` (not only a thread-group leader).
pub(crate) fn open_thread_pidfd(tid: libc::pid_t) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // PIDFD_THREAD (Linux 6.9) is O_EXCL.
    let flags = libc::O_EXCL as libc::c_uint;
    // SAFETY: pidfd_open takes two integers and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, flags) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    let fd = std::os::fd::RawFd::try_from(fd).map_err(|_| nix::Error::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// A duplicate (close-on-exec) of descriptor `fd` of the thread `pidfd`
/// refers to.
pub(crate) fn take_descriptor(
    pidfd: std::os::fd::BorrowedFd<'_>,
    fd: std::os::fd::RawFd,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: pidfd_getfd takes integers and returns a new descriptor.
    let new = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if new < 0 {
        return Err(nix::Error::last());
    }
    let new = std::os::fd::RawFd::try_from(new).map_err(|_| nix::Error::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}

/// `connect(2)` with an address given as raw `sockaddr` bytes.
pub(crate) fn connect_raw(socket: std::os::fd::BorrowedFd<'_>, address: &[u8]) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let mut storage = zeroed_storage();
    if address.len() > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(nix::Error::EINVAL);
    }
    // SAFETY: `address` fits in `storage` (checked above); the regions are
    // distinct.
    unsafe {
        std::ptr::copy_nonoverlapping(
            address.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            address.len(),
        );
    }
    let len = libc::socklen_t::try_from(address.len()).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: storage holds `len` initialized bytes of address.
    let result = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
            len,
        )
    };
    if result < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// The cookie of the network namespace `socket` was made in
/// (`SO_NETNS_COOKIE`, Linux 5.14): equal for two sockets exactly when
/// their namespaces are the same.
pub(crate) fn network_cookie(socket: std::os::fd::BorrowedFd<'_>) -> nix::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut cookie: u64 = 0;
    let mut length = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `length` bytes, the size of
    // `cookie`, there, and the new length into `length`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast::<libc::c_void>(),
            &mut length,
        )
    };
    if result < 0 {
        return Err(nix::Error::last());
    }
    Ok(cookie)
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The kernel's `struct unix_diag_req` (linux/unix_diag.h; not in libc).
#[repr(C)]
struct UnixDiagRequest {
    sdiag_family: u8,
    sdiag_protocol: u8,
    pad: u16,
    udiag_states: u32,
    udiag_ino: u32,
    udiag_show: u32,
    udiag_cookie: [u32; 2],
}

#[repr(C)]
struct DiagDumpMessage {
    header: libc::nlmsghdr,
    request: UnixDiagRequest,
}

/// Raw replies of a `SOCK_DIAG_BY_FAMILY` dump of this network namespace's
/// Unix sockets with their file-system identity (`UDIAG_SHOW_VFS`), one
/// buffer per `recv`.
pub(crate) fn dump_unix_sockets() -> nix::Result<Vec<Vec<u8>>> {
    use nix::sys::socket::{socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
    use std::os::fd::AsRawFd;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_VFS: u32 = 0x02;
    let netlink = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let message = DiagDumpMessage {
        header: libc::nlmsghdr {
            nlmsg_len: std::mem::size_of::<DiagDumpMessage>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        request: UnixDiagRequest {
            sdiag_family: libc::AF_UNIX as u8,
            sdiag_protocol: 0,
            pad: 0,
            udiag_states: u32::MAX,
            udiag_ino: 0,
            udiag_show: UDIAG_SHOW_VFS,
            udiag_cookie: [u32::MAX; 2],
        },
    };
    // SAFETY: `message` is #[repr(C)] plain data without padding holes
    // (16 + 24 bytes); viewing it as bytes for the length of the value is
    // sound.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&message as *const DiagDumpMessage).cast::<u8>(),
            std::mem::size_of::<DiagDumpMessage>(),
        )
    };
    nix::sys::socket::send(netlink.as_raw_fd(), bytes, MsgFlags::empty())?;
    let mut replies = Vec::new();
    loop {
        let mut buffer = vec![0u8; 32 * 1024];
        let received = nix::sys::socket::recv(netlink.as_raw_fd(), &mut buffer, MsgFlags::empty())?;
        if received == 0 {
            return Err(nix::Error::EPROTO);
        }
        buffer.truncate(received);
        let done = netlink_dump_done(&buffer)?;
        replies.push(buffer);
        if done {
            return Ok(replies);
        }
        if replies.len() > 4096 {
            return Err(nix::Error::E2BIG);
        }
    }
}

/// Whether a netlink reply buffer ends the dump; an error message fails.
fn netlink_dump_done(buffer: &[u8]) -> nix::Result<bool> {
    let mut offset = 0;
    while offset + 16 <= buffer.len() {
        let field = |at: usize| -> [u8; 4] {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&buffer[offset + at..offset + at + 4]);
            bytes
        };
        let len = u32::from_ne_bytes(field(0)) as usize;
        let kind = u16::from_ne_bytes([buffer[offset + 4], buffer[offset + 5]]);
        if kind == libc::NLMSG_DONE as u16 {
            return Ok(true);
        }
        if kind == libc::NLMSG_ERROR as u16 {
            return Err(nix::Error::EPROTO);
        }
        if len < 16 {
            return Err(nix::Error::EPROTO);
        }
        offset += (len + 3) & !3;
    }
    Ok(false)
}

/// Makes the process ignore `signal` (inherited by no one: the supervisor
/// calls it after forking the target).
pub(crate) fn ignore_signal(signal: nix::sys::signal::Signal) -> nix::Result<()> {
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety
    // question arises.
    unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigIgn) }.map(drop)
}

/// Restores the default action for `signal`, so that raising it ends the
/// process as it ended the target.
pub(crate) fn default_signal(signal: nix::sys::signal::Signal) -> nix::Result<()> {
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) }.map(drop)
}

/// Signals ignored here that the target must not inherit ignored (an
/// ignored signal stays ignored across execve): SIGPIPE, which Rust's
/// start-up ignores in the helper itself, and glibc's two internal
/// signals (32 and 33), which glibc's `posix_spawn` leaves ignored in the
/// programs it starts, bubblewrap and so the helper among them. Programs
/// started outside a sandbox by the same callers get them at their
/// defaults.
const NOT_INHERITED_IGNORED: [libc::c_int; 3] = [libc::SIGPIPE, 32, 33];

/// Puts [`NOT_INHERITED_IGNORED`] back to their default action, just
/// before the target is executed. By system call: the C libraries'
/// `sigaction` refuses the signals they keep for themselves (32 and 33),
/// which nothing in this process uses before it executes the target.
pub(crate) fn stop_ignoring_startup_signals() {
    // The kernel's `struct sigaction`, all zeros: SIG_DFL, no flags, no
    // restorer, an empty mask (32 bytes cover every 64-bit layout).
    let default = [0u64; 4];
    for signal in NOT_INHERITED_IGNORED {
        // SAFETY: rt_sigaction reads one kernel sigaction from `default`,
        // which outlives the call, and writes nothing (no old action
        // asked for); SIG_DFL installs no handler code. The last argument
        // is the kernel's signal set size, 8 bytes.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
}

/// Owns a descriptor `recvmsg` just installed in this process.
pub(crate) fn own_received(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the kernel created this descriptor for us in the SCM_RIGHTS
    // message just received; nothing else refers to it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Takes ownership of descriptor `fd`, which the launcher arranged to be
/// open in this process for us alone (the link to the proxy), or EBADF.
pub(crate) fn take_inherited(fd: std::os::fd::RawFd) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with
    // EBADF for a number that is not open, and touches nothing else.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(nix::Error::EBADF);
    }
    // SAFETY: the descriptor is open (checked above), and the launcher's
    // contract is that nothing else in this process refers to it: it was
    // passed for this helper to use once and close.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// A pidfd for this process: it stays valid across `execve`, and turns
/// readable when the process (the sandbox's first, whose end is the
/// sandbox's) has exited.
pub(crate) fn own_pidfd() -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the kernel just created this descriptor (close-on-exec) for us
    // alone.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) })
}

/// renameat2(2), which nix wraps on glibc only and the musl that Rust
/// links lacks (the helper is also built with musl, `scripts/build-wrapper`).
pub(crate) fn renameat2(
    old_dir: std::os::fd::BorrowedFd<'_>,
    old_name: &std::ffi::CStr,
    new_dir: std::os::fd::BorrowedFd<'_>,
    new_name: &std::ffi::CStr,
    flags: libc::c_uint,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both names are NUL-terminated strings and both descriptors
    // are open for the whole call; the kernel reads nothing else.
    let result = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            old_dir.as_raw_fd(),
            old_name.as_ptr(),
            new_dir.as_raw_fd(),
            new_name.as_ptr(),
            flags,
        )
    };
    nix::errno::Errno::result(result).map(drop)
}

/// A close-on-exec copy of `fd` at the lowest free number from `above` up.
pub(crate) fn duplicate_above(
    fd: &std::os::fd::OwnedFd,
    above: std::os::fd::RawFd,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor, which nothing
    // else refers to yet; it is owned from here on.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
    nix::errno::Errno::result(copy).map(|copy| unsafe {
        // SAFETY: `copy` was just created for us (see above).
        std::os::fd::OwnedFd::from_raw_fd(copy)
    })
}

/// Makes number `target` a copy of `fd` that stays open across `execve`:
/// a spare's command inherits it there. Whatever `target` was is closed.
pub(crate) fn duplicate_onto(
    fd: &std::os::fd::OwnedFd,
    target: std::os::fd::RawFd,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: called by the spare's helper just before it executes. At
    // that point the helper owns no descriptor but the received ones, which
    // `spare::place` moved above every target, and its standard streams,
    // which no object owns (std's handles borrow them); so no object of
    // this process refers to `target`, and replacing it breaks no
    // ownership.
    nix::errno::Errno::result(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// Closes number `fd` (a standard stream the spare's command must not
/// inherit), if it is open.
pub(crate) fn close_number(fd: std::os::fd::RawFd) {
    // SAFETY: called only for 0, 1 and 2 in the spare's helper before it
    // executes, which has no object owning them (its standard streams are
    // `/dev/null`, left unused).
    unsafe { libc::close(fd) };
}

/// Closes every descriptor from 3 up but those in `keep`: what the
/// supervisor, the target's parent and the sandbox's init, inherited for
/// the target. Held there, a pipe or a lock the target closes would stay
/// open until it ends.
pub(crate) fn close_inherited_except(keep: &[std::os::fd::RawFd]) {
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        // SAFETY: called by the supervisor right after the fork, before it
        // opens anything. The helper's objects that own descriptors belong
        // to the frames it left for `supervise`, which never returns or
        // unwinds (it exits), so none is used or closed again.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    };
    let mut kept: Vec<libc::c_uint> = keep
        .iter()
        .filter_map(|&fd| libc::c_uint::try_from(fd).ok())
        .filter(|&fd| fd > 2)
        .collect();
    kept.sort_unstable();
    let mut first = 3;
    for fd in kept {
        if fd > first {
            close_range(first, fd - 1);
        }
        first = first.max(fd + 1);
    }
    close_range(first, libc::c_uint::MAX);
}

/// A resource limit of process `pid` (0: this one): (soft, hard).
pub(crate) fn limit_of(pid: libc::pid_t, resource: u32) -> std::io::Result<(u64, u64)> {
    let [soft, hard] = prlimit(pid, resource, None)?;
    Ok((soft, hard))
}

/// `prlimit64`: sets `new` (soft, hard) when given; returns the limit as it
/// was.
fn prlimit(pid: libc::pid_t, resource: u32, new: Option<[u64; 2]>) -> std::io::Result<[u64; 2]> {
    // The kernel's `struct rlimit64`: soft, hard.
    let mut old = [0u64; 2];
    let new_ptr = new.as_ref().map_or(std::ptr::null(), |new| new.as_ptr());
    // SAFETY: prlimit64 reads one rlimit64 from `new_ptr` when it is not
    // null and writes one into `old`; both outlive the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            pid,
            resource,
            new_ptr,
            old.as_mut_ptr(),
        )
    };
    match result {
        0 => Ok(old),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Puts `inheritance` into effect in this process: its umask, its limits,
/// and its ignored signals (those `nix` names: the standard ones). Never
/// looser than this process already is: what the server had when it
/// started this sandbox, which may be tighter than what it read of itself
/// at its first escalation (a spare sandbox, started ahead, has the
/// server's of that time).
pub(crate) fn apply_inheritance(inheritance: &super::Inheritance) -> std::io::Result<()> {
    use nix::sys::stat::{umask, Mode};
    let current_umask = umask(Mode::empty());
    umask(Mode::from_bits_truncate(inheritance.umask as libc::mode_t) | current_umask);
    for &(resource, soft, hard) in &inheritance.limits {
        let [current_soft, current_hard] = prlimit(0, resource, None)?;
        let limit = super::Inheritance::no_looser((soft, hard), (current_soft, current_hard));
        prlimit(0, resource, Some(limit))?;
    }
    for number in 1..=64 {
        if inheritance.ignored & (1 << (number - 1)) == 0 {
            continue;
        }
        if let Ok(signal) = nix::sys::signal::Signal::try_from(number) {
            if !matches!(
                signal,
                nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGSTOP
            ) {
                ignore_signal(signal)?;
            }
        }
    }
    Ok(())
}
