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
