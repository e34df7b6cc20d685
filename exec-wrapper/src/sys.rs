//! The wrapper's raw OS calls: the few places where a descriptor number or a
//! pointer from outside Rust's ownership model is turned into a safe value.

use std::ffi::{CStr, OsString};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{
    raise, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};

/// Borrows a descriptor the shell handed down by number, if it is open.
pub(crate) fn borrow_open_fd(fd: RawFd) -> Option<BorrowedFd<'static>> {
    if fd < 0 {
        return None;
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; an invalid number
    // fails with EBADF and has no other effect.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above), and the wrapper never
    // closes descriptors it did not create (`let_go_of_streams` replaces
    // some, in one step), so it stays open for the rest of the process's
    // life.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Whether standard input is the terminal of this process's session while
/// its job is in the background: a program of the job that read it would
/// be stopped (`SIGTTIN`), where an escalated one, leading a session of its
/// own, would read what is typed to the shell.
pub(crate) fn input_is_the_terminal_in_the_background() -> bool {
    terminal_foreground().is_some_and(|foreground| foreground != nix::unistd::getpgrp().as_raw())
}

/// Whether this process's job holds the foreground of its session's
/// terminal (standard input).
pub(crate) fn holds_the_terminal() -> bool {
    terminal_foreground().is_some_and(|foreground| foreground == nix::unistd::getpgrp().as_raw())
}

/// The foreground process group of the terminal on standard input, if it
/// is this session's terminal.
fn terminal_foreground() -> Option<libc::pid_t> {
    // SAFETY: `tcgetpgrp` only reads the terminal's foreground group; on a
    // descriptor that is not this session's terminal (or not open) it
    // fails (ENOTTY, EBADF) and has no other effect.
    let foreground = unsafe { libc::tcgetpgrp(0) };
    (foreground > 0).then_some(foreground)
}

/// Points each of `numbers` that is a pipe or a socket at `/dev/null`.
/// Once the escalated child has its own copies, the reader of such a pipe
/// must see its end when the child closes it, as when the command runs in
/// place, not when its stand-in exits. Terminals and files stay: holding
/// them shows nowhere. Standard error stays too unless it is standard
/// output's pipe (`2>&1`): the stand-in's own late messages go there.
///
/// Each is told apart by its `/proc/self/fd` link (`pipe:[…]`,
/// `socket:[…]`), which touches no file system a file may hang on;
/// without `/proc`, nothing is let go of.
pub(crate) fn let_go_of_streams(numbers: &[RawFd]) {
    let stream = |fd: RawFd| {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let link = link.into_os_string().into_string().ok()?;
        (link.starts_with("pipe:[") || link.starts_with("socket:[")).then_some(link)
    };
    let output = stream(1);
    let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    for &number in numbers {
        let link = match number {
            1 => output.clone(),
            _ => stream(number),
        };
        let Some(link) = link else {
            continue;
        };
        if number == 2 && output.as_ref() != Some(&link) {
            continue;
        }
        // SAFETY: dup2 swaps the open file behind `number`, a descriptor the
        // child now has its own copy of, for /dev/null in one step. No
        // `BorrowedFd` of it is alive (the hand-over's were dropped), and
        // the number stays open, as `borrow_open_fd` requires.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), number) };
    }
}

/// Descriptors a program executed now would inherit: open and not
/// close-on-exec, in ascending order, without `except`.
pub(crate) fn inheritable_fds(except: Option<RawFd>) -> std::io::Result<Vec<RawFd>> {
    open_fds(false, except)
}

/// Open descriptors whose close-on-exec flag is `close_on_exec`, in
/// ascending order, without `except`. Listed first and checked after, so
/// that the listing's own descriptor, closed by then, is never among them.
fn open_fds(close_on_exec: bool, except: Option<RawFd>) -> std::io::Result<Vec<RawFd>> {
    let mut listed = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        {
            listed.push(fd);
        }
    }
    listed.retain(|&fd| {
        // SAFETY: F_GETFD only reads flags; a descriptor closed since the
        // listing (the directory's own) fails with EBADF and is left out.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        Some(fd) != except && flags >= 0 && (flags & libc::FD_CLOEXEC != 0) == close_on_exec
    });
    listed.sort_unstable();
    Ok(listed)
}

/// Closes every close-on-exec descriptor but `keep`, as the execve of a
/// wrapper would have: for the shell's forked child that stands in for an
/// escalated command instead, so that what the shell opened close-on-exec
/// (a `zsystem flock` lock, `sysopen -o cloexec`) is let go as with any
/// other command.
pub(crate) fn close_what_exec_would_close(keep: RawFd) -> std::io::Result<()> {
    for fd in open_fds(true, Some(keep))? {
        // SAFETY: the shell's descriptors, which nothing in this process
        // uses again: the stand-in never returns to zsh, and owns nothing
        // yet but `keep`.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The C `main`'s argument vector as owned strings.
///
/// # Safety
///
/// `argv` must point to `argc` pointers to NUL-terminated strings.
pub(crate) unsafe fn arguments(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
) -> Vec<OsString> {
    let count = usize::try_from(argc).unwrap_or(0);
    let mut arguments = Vec::with_capacity(count);
    for index in 0..count {
        // SAFETY: the caller guarantees `argc` valid entries; a NULL entry
        // (which the C standard allows only at argv[argc]) ends the walk.
        let entry = unsafe { *argv.add(index) };
        if entry.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated string that lives for the
        // whole process.
        arguments.push(OsString::from_vec(
            unsafe { CStr::from_ptr(entry) }.to_bytes().to_vec(),
        ));
    }
    arguments
}

// The C library's environment array. Declared here because the `libc`
// crate exposes it for glibc but not for musl, which the static wrapper
// links; both C libraries define the symbol.
extern "C" {
    static environ: *const *const libc::c_char;
}

/// The environment exactly as the process received it, entries without `=`
/// and repeated names included (std's accessors drop both).
pub(crate) fn environment() -> Vec<OsString> {
    let mut entries = Vec::new();
    // SAFETY: `environ` is the C library's NULL-terminated array of
    // NUL-terminated strings; the wrapper is single-threaded and never
    // modifies its environment, so the array is stable while we read it.
    unsafe {
        let mut cursor = environ;
        while !cursor.is_null() && !(*cursor).is_null() {
            entries.push(OsString::from_vec(
                CStr::from_ptr(*cursor).to_bytes().to_vec(),
            ));
            cursor = cursor.add(1);
        }
    }
    entries
}

/// Ends the process by `signal`, as the escalated child ended, so the shell
/// reports 128+n. Falls back to exiting 128+n for a signal whose default
/// action does not terminate.
pub(crate) fn die_of(signal: i32) -> ! {
    if let Ok(signal) = Signal::try_from(signal) {
        // The child already dumped core if it was going to; the wrapper's
        // own core would only be noise.
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing the default disposition runs no handler code.
        let _ = unsafe { sigaction(signal, &default) };
        let mut only = SigSet::empty();
        only.add(signal);
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
        let _ = raise(signal);
    }
    exit_now(128 + signal)
}

/// Ends the process now: no `atexit` handlers, no flush of C stdio
/// buffers. The wrapper has nothing buffered; a shell's forked child that
/// carries an escalation on holds copies of the shell's buffers, which are
/// the shell's to write, once.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Puts every signal that has a handler back to its default action, as an
/// execve would (ignored signals stay ignored), real-time ones included:
/// for a shell's forked child that carries an escalation on, with the
/// shell's handlers still installed.
pub(crate) fn reset_handled_signals() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a query only (no new action); `current` is writable.
        let queried = unsafe { libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr()) };
        if queried != 0 {
            continue;
        }
        // SAFETY: zero-initialised, then filled in by the kernel.
        let mut action = unsafe { current.assume_init() };
        if action.sa_sigaction != libc::SIG_DFL && action.sa_sigaction != libc::SIG_IGN {
            action.sa_sigaction = libc::SIG_DFL;
            action.sa_flags = 0;
            // SAFETY: installs the default disposition, which runs no
            // handler code; `action` is a valid sigaction.
            unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        }
    }
}

/// Ignores the signals that a terminal, or a kill aimed at the server's
/// process group or session, would send the warden: it must end only with
/// its server.
pub(crate) fn ignore_termination_signals() {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGPIPE,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        // SAFETY: ignoring a signal installs no handler code.
        let _ = unsafe { sigaction(signal, &ignore) };
    }
}

/// Whether `conversation` is a socket; if so it is made close-on-exec, so
/// that it is not handed over with the command's descriptors.
pub(crate) fn check_conversation(conversation: &OwnedFd) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let is_socket = nix::sys::stat::fstat(conversation)
        .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFSOCK);
    is_socket && fcntl(conversation, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_ok()
}

/// glibc's `__xpg_strerror_r` (std's `strerror_r`, behind every
/// `io::Error` message) for the static wrapper binary, which defines it so
/// that the linker does not take glibc's: that one translates through
/// gettext, and with it come iconv, the locale loader and `dlopen`, about
/// 30 KiB of the static binary (P4 caps it at 1 MiB). The texts are nix's
/// table of the same C library messages; untranslated, as the wrapper
/// never set a locale anyway.
///
/// # Safety
///
/// `buffer` must be valid for writes of `length` bytes.
pub unsafe fn describe_errno_into(
    errnum: libc::c_int,
    buffer: *mut libc::c_char,
    length: libc::size_t,
) -> libc::c_int {
    if length == 0 {
        return libc::ERANGE;
    }
    let text = nix::errno::Errno::from_raw(errnum).desc().as_bytes();
    let copied = text.len().min(length - 1);
    // SAFETY: `copied + 1 <= length` bytes of `buffer`, which the caller
    // guarantees writable; `text` is a distinct static string.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buffer.cast::<u8>(), copied);
        *buffer.add(copied) = 0;
    }
    if copied < text.len() {
        libc::ERANGE
    } else {
        0
    }
}

/// glibc's `__assert_fail` for the static wrapper binary, defined there for
/// the reason given at [`describe_errno_into`] (glibc's prints through
/// `printf` and gettext): a failed assertion inside glibc says so and
/// aborts, as glibc's does, without the file and line.
pub fn abort_on_failed_assertion() -> ! {
    let message = b"execgate: internal C library assertion failed\n";
    // SAFETY: writes a static buffer to stderr; abort has no preconditions.
    unsafe {
        libc::write(libc::STDERR_FILENO, message.as_ptr().cast(), message.len());
        libc::abort()
    }
}

/// The monotonic clock, read by the system call itself: the vDSO's
/// `clock_gettime` would page in the kernel's clock data in every forked
/// child of the patched zsh that asks (a fault each), for a clock read a
/// few hundred times at most.
pub(crate) fn monotonic_now() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the one we own; with
    // CLOCK_MONOTONIC it cannot fail.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut now) };
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A pidfd for this process's parent, the warden's server, or `None` when
/// the parent has already gone (this process was handed to another
/// parent) or the kernel gives none.
pub(crate) fn pidfd_of_parent() -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let parent = nix::unistd::getppid();
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent.as_raw(), 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the descriptor was just returned to us by the kernel, and
    // nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The parent's pid cannot name another process while the parent
    // lives; if it died before the pidfd was made, this process has a new
    // parent by now, and the pidfd may name a stranger.
    (nix::unistd::getppid() == parent).then_some(pidfd)
}
