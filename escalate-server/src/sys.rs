//! The server's raw OS calls: starting an escalated child (a `vfork`-style
//! clone, descriptor placement, `execveat` on the checked file), pidfds, and
//! letting the shell inherit the session socket. Everything between the
//! clone and `exec` is async-signal-safe: the child shares the server's
//! memory until it executes, so it may only make raw system calls on memory
//! prepared before the clone, and must not run any signal handler of ours.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::ptr;
use std::sync::OnceLock;

use nix::fcntl::OFlag;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::socket::{getsockopt, sockopt};

use execgate_protocol::WardenRecord;

use crate::closer::SafeClose;
use crate::policy::PeerCredentials;

/// The kernel's view of who is on the other end of a unix socket.
pub(crate) fn peer_credentials(socket: &OwnedFd) -> io::Result<PeerCredentials> {
    let creds = getsockopt(socket, sockopt::PeerCredentials)?;
    // The kernel's answer for a socket that was never connected (pid 0,
    // uid and gid -1): not a requester of another user (probe 140).
    if creds.pid() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "the request socket is not connected to anything",
        ));
    }
    Ok(PeerCredentials {
        pid: creds.pid(),
        uid: creds.uid(),
        gid: creds.gid(),
    })
}

/// Whether this kernel hands out a socket peer's pidfd (`SO_PEERPIDFD`,
/// Linux 6.5) and tells a process's parent through its pidfd
/// (`PIDFD_GET_INFO`, 6.13). Probed once, on a socket pair of our own, so
/// that nothing a requester does can change the answer.
pub(crate) fn pidfd_info_available() -> bool {
    static PROBED: OnceLock<bool> = OnceLock::new();
    *PROBED.get_or_init(|| {
        std::os::unix::net::UnixStream::pair()
            .and_then(|(ours, _theirs)| peer_pidfd(ours.as_fd()))
            .and_then(|pidfd| parent_through(pidfd.as_fd()))
            .is_ok()
    })
}

/// The parent pid of the process at the other end of `socket`, as the
/// kernel reports it through a pidfd for that very process: no `/proc`
/// lookup, and no pid that could name a successor. `None` where the kernel
/// cannot tell ([`pidfd_info_available`]); the caller reads `/proc`.
pub(crate) fn peer_parent_pid(socket: BorrowedFd<'_>) -> Option<io::Result<i32>> {
    pidfd_info_available()
        .then(|| peer_pidfd(socket).and_then(|pidfd| parent_through(pidfd.as_fd())))
}

/// The current parent of the process behind `pidfd`; `None` where the
/// kernel cannot tell.
pub(crate) fn pidfd_parent(pidfd: BorrowedFd<'_>) -> Option<io::Result<i32>> {
    pidfd_info_available().then(|| parent_through(pidfd))
}

/// Whether an error of [`peer_parent_pid`] or [`pidfd_parent`] means that
/// the process has ended (Linux before 6.16 says `EINVAL` for a socket
/// peer already reaped).
pub(crate) fn process_gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ESRCH | libc::EINVAL))
}

/// A pidfd for the process at the other end of `socket`, where the kernel
/// hands them out ([`pidfd_info_available`]): what a pid of it names can
/// be checked to be that process still.
pub(crate) fn peer_pidfd_if_available(socket: BorrowedFd<'_>) -> Option<io::Result<OwnedFd>> {
    pidfd_info_available().then(|| peer_pidfd(socket))
}

fn peer_pidfd(socket: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(getsockopt(&socket, sockopt::PeerPidfd)?)
}

/// A pidfd for the process at the other end of the request socket
/// `socket`, whose pid is `pid`: the kernel's (`SO_PEERPIDFD`, Linux 6.5).
/// A kernel without it: one opened by the pid, which may name another
/// process if the requester was reaped and its pid taken again since (the
/// kernel's peer credentials keep the number). An error: it has ended
/// (review 222: `EINVAL` from a kernel before 6.16, for a reaped peer,
/// was taken for a kernel without the option, and its pid opened).
pub(crate) fn requester_pidfd(socket: BorrowedFd<'_>, pid: i32) -> io::Result<OwnedFd> {
    match peer_pidfd(socket) {
        Err(error) if error.raw_os_error() == Some(libc::ENOPROTOOPT) => pidfd_open(pid),
        given => given,
    }
}

fn parent_through(pidfd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: all-zero is a valid pidfd_info (integers only); the ioctl
    // fills at most the struct's size, which the request number encodes.
    let mut info: libc::pidfd_info = unsafe { std::mem::zeroed() };
    info.mask = u64::from(libc::PIDFD_INFO_PID);
    // SAFETY: as above; `info` lives across the call.
    let got = unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            libc::PIDFD_GET_INFO,
            ptr::addr_of_mut!(info),
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(info.ppid).map_err(io::Error::other)
}

/// A new network namespace with nothing in it, not even a running
/// loopback: what a `restricted` sandbox gets, made once and entered by
/// many (see `spare.rs`). Needs `CAP_SYS_ADMIN`; without it, each sandbox
/// has bubblewrap make its own.
pub(crate) fn empty_network() -> io::Result<OwnedFd> {
    // On a thread of its own, which ends with it: a namespace unshared is
    // the calling thread's, and no other thread of the server may ever be
    // in one but the host's, or children it starts would be too.
    std::thread::Builder::new()
        .name("execgate-netns".into())
        .spawn(|| {
            let identity = |stat: nix::sys::stat::FileStat| (stat.st_dev, stat.st_ino);
            let host = identity(nix::sys::stat::stat("/proc/thread-self/ns/net")?);
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            let namespace = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net")?);
            // What a sandbox without bubblewrap's own namespace gets: never
            // the one it was made from.
            if identity(nix::sys::stat::fstat(&namespace)?) == host {
                return Err(io::Error::other(
                    "unshare left the host's network namespace",
                ));
            }
            Ok(namespace)
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace's thread panicked")))
}

/// A pidfd for `pid`: a child of ours that has not been reaped yet, or any
/// process, which the caller then checks is still the one it meant.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // Neither 0 (this process) nor a negative number names a process here.
    let pid = rustix::process::Pid::from_raw(pid.max(0))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Sends `SIGKILL` to the process `pidfd` names: it, whatever its
/// process group, and never another that took its number.
pub(crate) fn pidfd_kill(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::process::pidfd_send_signal(
        pidfd,
        rustix::process::Signal::KILL,
    )?)
}

/// Whether the process `pidfd` names has ended (its pidfd reads ready),
/// or cannot be told to run on (the poll failed).
pub fn has_ended(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [nix::poll::PollFd::new(pidfd, nix::poll::PollFlags::POLLIN)];
    loop {
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            // A signal cut it: asked again, not taken for an end.
            Err(nix::errno::Errno::EINTR) => continue,
            polled => return !matches!(polled, Ok(0)),
        }
    }
}

/// Whether every holder of the other end of the connected socket
/// `socket` has closed it (or it cannot be polled), as the socket says now:
/// a Unix stream or seqpacket socket whose peer is gone polls `POLLHUP`.
pub(crate) fn hung_up(socket: BorrowedFd<'_>) -> bool {
    use nix::poll::PollFlags;
    let mut fds = [nix::poll::PollFd::new(socket, PollFlags::POLLIN)];
    loop {
        return match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(0) => false,
            Ok(_) => fds[0]
                .revents()
                .is_none_or(|events| events.contains(PollFlags::POLLHUP)),
            // Cut by a signal (review 207: a SIGCHLD ended a live socket's
            // session).
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => true,
        };
    }
}

/// Sends `signal` to the process `pidfd` names, never another that took
/// its number.
pub(crate) fn pidfd_signal(
    pidfd: BorrowedFd<'_>,
    signal: nix::sys::signal::Signal,
) -> io::Result<()> {
    let signal = rustix::process::Signal::from_named_raw(signal as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, signal)?)
}

/// Whether process `pid` shares this process's memory, as a child
/// [`spawn`] cloned does until it executes (`kcmp` with `KCMP_VM`). `None`
/// when the kernel cannot tell (built without `kcmp`, or a seccomp filter
/// or a non-dumpable `pid` refuses it), or `pid` has gone.
pub(crate) fn shares_our_memory(pid: i32) -> Option<bool> {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp only compares two processes' kernel objects; it reads
    // no memory of ours and takes no pointer.
    let compared = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(std::process::id() as i32),
            libc::c_long::from(pid),
            KCMP_VM,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    (compared >= 0).then_some(compared == 0)
}

/// Marks every descriptor from `first` up close-on-exec: `close_range`
/// with `CLOSE_RANGE_CLOEXEC` (Linux 5.11). Async-signal-safe, allocates
/// nothing: for a child between fork and exec too, where an error must
/// stop the exec (there is no other way to mark every descriptor there).
fn close_on_exec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets the
    // close-on-exec flag of descriptors in the range; it closes nothing.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if marked != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn close_on_exec_from_3() -> io::Result<()> {
    close_on_exec_from(3)
}

/// How this process's children are reaped by the kernel as they end, if
/// they are (`SIGCHLD` ignored, or `SA_NOCLDWAIT`): nothing can then wait
/// for them, and a program it starts inherits an ignored signal across its
/// exec (bubblewrap, which then never sees its own child end; probe 198).
pub(crate) fn children_reaped_unwaited() -> Option<crate::session::ChildrenReaped> {
    use crate::session::ChildrenReaped;
    let current = current_action(libc::SIGCHLD)?;
    if current.sa_sigaction == libc::SIG_IGN {
        Some(ChildrenReaped::Ignored)
    } else if current.sa_flags & libc::SA_NOCLDWAIT != 0 {
        Some(ChildrenReaped::NoChildWait)
    } else {
        None
    }
}

/// What `signal` does now in this process; `None` if it cannot be read.
fn current_action(signal: libc::c_int) -> Option<libc::sigaction> {
    // SAFETY: all zeros is a valid `sigaction` (SIG_DFL, no flags).
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with no new action, sigaction only writes the current one
    // into `current`, a live local value of the type it writes.
    if unsafe { libc::sigaction(signal, ptr::null(), &mut current) } == -1 {
        return None;
    }
    Some(current)
}

/// Whether `signal` is ignored in this process: as its parent left it,
/// before this process takes it over (`nohup`'s `SIGHUP`, a script's
/// background job's `SIGINT`).
pub fn is_ignored(signal: i32) -> bool {
    current_action(signal).is_some_and(|current| current.sa_sigaction == libc::SIG_IGN)
}

/// Gives `SIGCHLD` its default action, for a program whose parent ignored
/// it (ignored signals survive exec): see [`children_reaped_unwaited`].
/// Call it first thing in `main`, before any thread or handler.
pub fn wait_for_children() -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours in signal context.
    unsafe { sigaction(Signal::SIGCHLD, &default) }?;
    Ok(())
}

/// Ends this process by `signal`'s default action (for a program that
/// was ended by it and has cleaned up: its parent then sees a death by
/// the signal, as a shell needs to stop at a Ctrl-C), with no core: it
/// did not crash. Returns if that action does not end a process, or
/// could not be given.
pub fn die_of(signal: i32) {
    use nix::sys::resource::{setrlimit, Resource};
    use nix::sys::signal::{raise, sigaction, SaFlags, SigAction, SigHandler, Signal};
    let Ok(signal) = Signal::try_from(signal) else {
        return;
    };
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    // A core handler behind a pipe (systemd-coredump) takes no heed of
    // the limit (review 222).
    let _ = nix::sys::prctl::set_dumpable(false);
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours in signal context.
    if unsafe { sigaction(signal, &default) }.is_err() {
        return;
    }
    let mut only = SigSet::empty();
    only.add(signal);
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
    // To this thread: delivered before `raise` returns.
    let _ = raise(signal);
}

/// Makes every descriptor this process has from 3 up close-on-exec, so
/// that none it inherited without the flag from whoever started it (a
/// shell's `3<secret`, a harness's pipe) reaches a program it starts: a
/// sandbox must get only what its profile grants. Call it first thing in
/// `main`, before anything is started.
pub fn close_inherited_descriptors_on_exec() -> io::Result<()> {
    if close_on_exec_from_3().is_ok() {
        return Ok(());
    }
    // A kernel before 5.11: one flag at a time, for each descriptor open.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in open {
        // SAFETY: fcntl(F_SETFD) only sets a descriptor's flags; the
        // listing's own descriptor, closed by now, fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Lets only the descriptors chosen afterwards (by [`inherit_in_child`]
/// and the like, whose hooks run after this one) and the standard streams
/// reach the program `command` executes: register it first.
pub(crate) fn inherit_only_chosen_in_child(command: &mut std::process::Command) {
    // SAFETY: the hook runs between fork and exec, and is
    // async-signal-safe and allocates nothing (`close_on_exec_from_3`).
    unsafe { command.pre_exec(close_on_exec_from_3) };
}

/// Makes `fd` survive into the program `command` executes (and only that
/// one: the parent's copy stays close-on-exec).
pub(crate) fn inherit_in_child(command: &mut std::process::Command, fd: RawFd) {
    let clear_cloexec = move || {
        // SAFETY: fcntl(F_SETFD) is async-signal-safe and only changes the
        // flags of a descriptor this process owns.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes one
    // async-signal-safe call, allocating nothing.
    unsafe { command.pre_exec(clear_cloexec) };
}

/// [`inherit_in_child`] for a descriptor the command then owns: it is
/// closed in this process when `command` is dropped.
pub(crate) fn inherit_owned_in_child(command: &mut std::process::Command, fd: OwnedFd) {
    let number = fd.as_raw_fd();
    let clear_cloexec = move || {
        // Kept alive by the closure, which lives as long as the command.
        let _owned = &fd;
        // SAFETY: as in `inherit_in_child`: one async-signal-safe fcntl on
        // a descriptor this process owns.
        if unsafe { libc::fcntl(number, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: as in `inherit_in_child`.
    unsafe { command.pre_exec(clear_cloexec) };
}

/// [`inherit_owned_in_child`] at descriptor `number` in the child (where
/// this process may have another descriptor, closed-on-exec, that the
/// child's copy replaces).
pub(crate) fn inherit_owned_at(command: &mut std::process::Command, fd: OwnedFd, number: RawFd) {
    let own = fd.as_raw_fd();
    let put = move || {
        // Kept alive by the closure, which lives as long as the command.
        let _owned = &fd;
        // SAFETY: dup2 is async-signal-safe and only changes this (the
        // forked child's) descriptor table; the new descriptor is not
        // close-on-exec. `own` is open here (the closure owns it) and is
        // never `number`, which this process holds open too.
        if unsafe { libc::dup2(own, number) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes one
    // async-signal-safe call, allocating nothing.
    unsafe { command.pre_exec(put) };
}

/// Makes the program `command` executes join the cgroup whose
/// `cgroup.procs` is open at `procs`, before it executes.
pub(crate) fn join_cgroup_in_child(
    command: &mut std::process::Command,
    procs: RawFd,
    owner: impl Send + Sync + 'static,
) {
    let join = move || {
        // What keeps `procs` open lives as long as the hook (bench: a
        // caller dropped the command's cgroup before the spawn, and the
        // number, reused by std's exec-error pipe, got the `0`).
        let _owner = &owner;
        // SAFETY: write is async-signal-safe; the buffer is a static string
        // and the descriptor stays open in the child until exec.
        if unsafe { libc::write(procs, c"0".as_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes one
    // async-signal-safe call, allocating nothing.
    unsafe { command.pre_exec(join) };
}

/// Starts the program `command` executes with no signal blocked, whatever
/// the spawning thread blocks: a process that keeps the terminal from
/// stopping it (execgate's CLI blocks `SIGTTIN` and `SIGTTOU`) would
/// otherwise pass that on to the shell and every program it runs, whose
/// background jobs then fail to read the terminal instead of stopping
/// (probe 164).
pub(crate) fn empty_signal_mask_in_child(command: &mut std::process::Command) {
    let unblock = || {
        // SAFETY: sigemptyset and sigprocmask are async-signal-safe; the
        // set lives on this (the forked child's) stack.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes two
    // async-signal-safe calls, allocating nothing.
    unsafe { command.pre_exec(unblock) };
}

/// Makes the program `command` executes `niceness` steps nicer than we are.
pub(crate) fn lower_priority_in_child(command: &mut std::process::Command, niceness: u8) {
    let lower = move || lower_priority(niceness);
    // SAFETY: the hook runs between fork and exec and makes two
    // async-signal-safe system calls, allocating nothing.
    unsafe { command.pre_exec(lower) };
}

/// `nice(niceness)`, with its error told apart from a result of -1.
fn lower_priority(niceness: u8) -> io::Result<()> {
    // SAFETY: getpriority and setpriority only read and set this process's
    // scheduling priority.
    unsafe {
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        if current == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        let lower = (current + i32::from(niceness)).min(19);
        if libc::setpriority(libc::PRIO_PROCESS, 0, lower) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What [`ask_for_short_slices`] found the thread's policy to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slices {
    /// A normal policy: short slices were asked for.
    Asked,
    /// A real-time policy: it already runs before every normal thread.
    RealTime,
    /// `SCHED_IDLE`, inherited from whatever started the thread: it runs
    /// only when nothing else wants a CPU, and no slice changes that.
    Idle,
}

/// `struct sched_attr` up to its first version's end (`SCHED_ATTR_SIZE_VER0`);
/// the kernel reads and writes no further than the size it is told.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Asks the kernel to give the calling thread slices of `slice` (EEVDF's
/// custom slice, `sched_attr::sched_runtime` for the normal policies, Linux
/// 6.12; clamped to 0.1-100 ms): a thread that asks for short slices gets
/// early deadlines, so it runs soon after it wakes, at its usual weight.
/// Its policy and niceness stay as they are, so no privilege is needed, and
/// threads and processes it creates start with the default slice
/// (`SCHED_FLAG_RESET_ON_FORK`; the same flag starts them at niceness 0 if
/// the thread's was negative). Earlier kernels accept and ignore it. A
/// thread under another policy is left as it is (see [`Slices`]).
pub(crate) fn ask_for_short_slices(slice: std::time::Duration) -> io::Result<Slices> {
    const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
    let mut attr = scheduling()?;
    if attr.policy == libc::SCHED_IDLE as u32 {
        return Ok(Slices::Idle);
    }
    if attr.policy != libc::SCHED_OTHER as u32 && attr.policy != libc::SCHED_BATCH as u32 {
        return Ok(Slices::RealTime);
    }
    attr.size = SCHED_ATTR_SIZE_VER0;
    attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    attr.flags |= SCHED_FLAG_RESET_ON_FORK;
    // SAFETY: sched_setattr reads `attr.size` bytes, the size of `attr`, and
    // changes only the calling thread's scheduling.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Slices::Asked)
}

/// The slice the calling thread runs with.
#[cfg(test)]
pub(crate) fn current_slice() -> io::Result<std::time::Duration> {
    Ok(std::time::Duration::from_nanos(scheduling()?.runtime))
}

const SCHED_ATTR_SIZE_VER0: u32 = 48;

/// The calling thread's scheduling attributes.
fn scheduling() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    // SAFETY: sched_getattr writes at most `SCHED_ATTR_SIZE_VER0` bytes,
    // the size of `attr`, about the calling thread (pid 0).
    let read = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            SCHED_ATTR_SIZE_VER0,
            0,
        )
    };
    if read != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr)
}

/// Where starting a child failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpawnStage {
    Fork,
    ProcessGroup,
    Descriptors,
    WorkingDirectory,
    Priority,
    Scope,
    Network,
    Limits,
    Exec,
}

/// A child start that failed, with the errno of the failing call.
#[derive(Debug)]
pub(crate) struct SpawnFailure {
    pub(crate) stage: SpawnStage,
    pub(crate) error: io::Error,
}

/// Everything the child needs, prepared before the clone. An escalation's
/// descriptors came from its requester, so it plans with [`SafeClose`]
/// ones, closed where that cannot wait when the plan is dropped (see
/// [`crate::closer`]).
pub(crate) struct SpawnPlan<Fd: AsRawFd = SafeClose> {
    /// The checked executable, opened close-on-exec.
    pub(crate) executable: OwnedFd,
    pub(crate) argv: Vec<CString>,
    pub(crate) env: Vec<CString>,
    /// The working directory the decision was made on, held since the
    /// request was read (`O_PATH`, close-on-exec).
    pub(crate) cwd: OwnedFd,
    /// Received descriptors and the numbers the child must see them at.
    pub(crate) fds: Vec<(Fd, RawFd)>,
    /// How much nicer than the server the child runs.
    pub(crate) niceness: u8,
    /// The cgroup the child is started in (`clone3` with
    /// `CLONE_INTO_CGROUP`) when the kernel can, and joins by a write to
    /// its `cgroup.procs` before it executes when it cannot: its
    /// command's, or its session's.
    pub(crate) cgroup: Option<std::sync::Arc<crate::scope::Cgroup>>,
    /// The warden's pipe: the child tells the warden its own process group
    /// before it executes (when the session has no cgroup).
    pub(crate) warden_pipe: Option<RawFd>,
    /// A network namespace the child enters before it executes.
    pub(crate) network: Option<RawFd>,
    /// A session of its own (`setsid`), not only a process group: no
    /// controlling terminal, so that reading or writing the terminal it is
    /// handed never stops it (it is never the terminal's foreground group,
    /// and `SIGTTIN` would stop it for good). As a sandboxed escalation's
    /// sandbox has (bubblewrap's `--new-session`, which must start one
    /// itself: false for bubblewrap).
    pub(crate) own_session: bool,
    /// The requester's umask, limits and ignored signals, made no looser
    /// than the server's: an escalation's. `None` keeps the server's (its
    /// own helpers, a spare sandbox, which takes its command's with the
    /// order).
    pub(crate) inheritance: Option<Box<execgate_sandbox::Inheritance>>,
}

/// Starts the child in its own process group, with exactly the planned
/// descriptors open, and returns its pid once `execveat` has succeeded.
pub(crate) fn spawn<Fd: AsRawFd>(plan: &SpawnPlan<Fd>) -> Result<i32, SpawnFailure> {
    let argv = null_terminated(&plan.argv);
    let env = null_terminated(&plan.env);
    let targets: Vec<RawFd> = plan.fds.iter().map(|(_, target)| *target).collect();
    let mut kept_below_floor = targets.clone();
    kept_below_floor.sort_unstable();
    kept_below_floor.dedup();
    let sources: Vec<RawFd> = plan.fds.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    let mut moved: Vec<RawFd> = vec![-1; plan.fds.len()];
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| SpawnFailure {
            stage: SpawnStage::Fork,
            error: errno.into(),
        })?;
    // Above every descriptor number the child juggles, so that moving one
    // there never overwrites another.
    let floor = targets
        .iter()
        .chain(&sources)
        .chain([plan.executable.as_raw_fd(), report_write.as_raw_fd()].iter())
        .copied()
        .max()
        .unwrap_or(2)
        + 1;
    let mut child = ChildSetup {
        executable: plan.executable.as_raw_fd(),
        argv: argv.as_ptr(),
        env: env.as_ptr(),
        cwd: plan.cwd.as_raw_fd(),
        sources: &sources,
        targets: &targets,
        kept_below_floor: &kept_below_floor,
        moved: &mut moved,
        report: report_write.as_raw_fd(),
        floor,
        niceness: plan.niceness,
        cgroup_procs: plan.cgroup.as_ref().map_or(-1, |cgroup| cgroup.procs()),
        warden_pipe: plan.warden_pipe.unwrap_or(-1),
        network: plan.network.unwrap_or(-1),
        own_session: plan.own_session,
        inheritance: plan.inheritance.as_deref(),
    };
    let mut stack = vec![0u8; CHILD_STACK_BYTES];

    // Not `fork`: copying the page tables of a large, multi-threaded server
    // (and the copy-on-write faults after it) cost about 0.9 ms per child
    // on the reference machine. The child borrows our memory instead
    // (CLONE_VM) and this thread waits until it has executed or exited
    // (CLONE_VFORK). Our signal handlers must not run in it: signals stay
    // blocked across the clone, the child resets every disposition before
    // unblocking, and this thread gets its mask back afterwards. (glibc
    // keeps its two internal signals, 32 and 33, unblockable and their
    // handlers in place; those act only on a signal the process sent
    // itself, which the child never does.)
    let mut saved = SigSet::empty();
    if let Err(errno) = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut saved),
    ) {
        return Err(SpawnFailure {
            stage: SpawnStage::Fork,
            error: errno.into(),
        });
    }
    let mut clone_error = io::Error::from_raw_os_error(0);
    let mut pid = -1;
    if let Some(cgroup) = &plan.cgroup {
        // Started inside the cgroup: nothing to move, so the child skips
        // the `cgroup.procs` write.
        child.cgroup_procs = -1;
        match clone_vfork_into_cgroup(&mut stack, &mut child, cgroup.handle()) {
            Ok(started) => pid = started,
            // An older kernel (no clone3 or no CLONE_INTO_CGROUP) or a
            // cgroup that refuses it: the child joins by writing instead.
            Err(errno) => {
                child.cgroup_procs = cgroup.procs();
                clone_error = errno.into();
            }
        }
    }
    if pid == -1 {
        // SAFETY: as for `clone_vfork_into_cgroup`: the stack is ours and
        // outlives the child's use of it (this thread is suspended until
        // the child executes or exits; the stack grows down from its end,
        // 16-byte aligned). `start_child` gets a pointer to `child`, which
        // lives on this frame for as long, and never returns. The child
        // makes only async-signal-safe system calls on memory prepared
        // above.
        pid = unsafe {
            let top = stack.as_mut_ptr().add(CHILD_STACK_BYTES);
            let top = top.sub(top as usize % 16);
            libc::clone(
                start_child,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut child).cast(),
            )
        };
        clone_error = io::Error::last_os_error();
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
    drop(stack);
    if pid == -1 {
        return Err(SpawnFailure {
            stage: SpawnStage::Fork,
            error: clone_error,
        });
    }
    drop(report_write);
    match read_report(&report_read) {
        None => Ok(pid),
        Some(failure) => {
            // The child has exited with 127. If it told the warden its
            // group before failing, the warden must forget it before the
            // number is freed.
            if let Some(pipe) = plan.warden_pipe {
                let record = WardenRecord::Untrack(pid).encode();
                // SAFETY: a write of a stack buffer to a descriptor the
                // session holds open for as long as `plan` lives.
                let _ = unsafe { libc::write(pipe, record.as_ptr().cast(), record.len()) };
            }
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Err(failure)
        }
    }
}

/// The child's stack while it shares our memory: it only makes a few
/// system calls, far less than this.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// `clone3`'s argument block (`struct clone_args`, the kernel's UAPI; the
/// first 11 fields, `CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), not in every libc crate version.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The `vfork`-style clone of [`spawn`], with the child started inside the
/// cgroup `cgroup` (a directory descriptor) instead of moved there after:
/// a move (`cgroup.procs`) takes the kernel's threadgroup lock for
/// writing, which waits for an RCU grace period, milliseconds on a busy
/// machine. glibc has no `clone3` wrapper for a child that runs a function
/// on its own stack, hence the few instructions of
/// `execgate_clone3_run`. Returns the child's pid; the errno when the
/// kernel refuses (ENOSYS before 5.3, E2BIG / EINVAL without
/// `CLONE_INTO_CGROUP`, or a cgroup that cannot take processes).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn clone_vfork_into_cgroup(
    stack: &mut [u8],
    child: &mut ChildSetup<'_>,
    cgroup: RawFd,
) -> Result<i32, nix::errno::Errno> {
    let Ok(cgroup) = u64::try_from(cgroup) else {
        return Err(nix::errno::Errno::EBADF);
    };
    let base = stack.as_mut_ptr() as u64;
    // The kernel starts the child at `stack + stack_size`; keep that
    // 16-byte aligned as the ABI wants at a call.
    let top = (base + stack.len() as u64) & !15;
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: base,
        stack_size: top - base,
        cgroup,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed. The child
    // runs `start_child` on `stack`, which outlives its use (CLONE_VFORK
    // suspends this thread until the child executes or exits), with a
    // pointer to `child`, alive on the caller's frame for as long; it
    // never returns, and makes only async-signal-safe system calls on
    // memory prepared before the clone. Signals are blocked by the caller.
    let result = unsafe {
        execgate_clone3_run(
            &raw mut args,
            std::mem::size_of::<CloneArgs>(),
            start_child,
            (child as *mut ChildSetup<'_>).cast(),
        )
    };
    if result < 0 {
        let errno = i32::try_from(-result).unwrap_or(libc::EINVAL);
        return Err(nix::errno::Errno::from_raw(errno));
    }
    i32::try_from(result).map_err(|_| nix::errno::Errno::EOVERFLOW)
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn clone_vfork_into_cgroup(
    _stack: &mut [u8],
    _child: &mut ChildSetup<'_>,
    _cgroup: RawFd,
) -> Result<i32, nix::errno::Errno> {
    Err(nix::errno::Errno::ENOSYS)
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
extern "C" {
    /// `clone3(args, size)`; in the child (on the stack `args` names),
    /// `exit(run(arg))`. Returns the child's pid or `-errno`.
    fn execgate_clone3_run(
        args: *mut CloneArgs,
        size: usize,
        run: extern "C" fn(*mut libc::c_void) -> libc::c_int,
        arg: *mut libc::c_void,
    ) -> i64;
}

// The kernel gives the child the parent's registers but `rax` (0) and
// `rsp` (the new stack); `syscall` itself clobbers `rcx` and `r11`, so the
// function and its argument travel in `r8` and `r9`. The child must not
// return into the parent's frames: it calls `run` and exits with its
// result (start_child never returns; the exit is a guard).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
std::arch::global_asm!(
    ".pushsection .text.execgate_clone3_run,\"ax\",@progbits",
    ".globl execgate_clone3_run",
    ".hidden execgate_clone3_run",
    ".type execgate_clone3_run,@function",
    ".p2align 4",
    "execgate_clone3_run:",
    "    mov r8, rdx",
    "    mov r9, rcx",
    "    mov eax, 435",
    "    syscall",
    "    test rax, rax",
    "    jz 2f",
    "    ret",
    "2:",
    "    xor ebp, ebp",
    "    mov rdi, r9",
    "    call r8",
    "    mov edi, eax",
    "    mov eax, 60",
    "    syscall",
    "    ud2",
    ".size execgate_clone3_run, .-execgate_clone3_run",
    ".popsection",
);

extern "C" fn start_child(setup: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` passes a pointer to its `ChildSetup`, which stays
    // alive and untouched while its thread is suspended by CLONE_VFORK.
    let setup = unsafe { &mut *setup.cast::<ChildSetup<'_>>() };
    setup.run()
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// Reads the child's failure report: nothing (end of file) means the exec
/// succeeded and closed the pipe.
fn read_report(report: &OwnedFd) -> Option<SpawnFailure> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(report, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if filled < buf.len() {
        return None;
    }
    let stage = match buf[0] {
        1 => SpawnStage::ProcessGroup,
        2 => SpawnStage::Descriptors,
        3 => SpawnStage::WorkingDirectory,
        5 => SpawnStage::Priority,
        6 => SpawnStage::Scope,
        7 => SpawnStage::Network,
        8 => SpawnStage::Limits,
        _ => SpawnStage::Exec,
    };
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Some(SpawnFailure {
        stage,
        error: io::Error::from_raw_os_error(errno),
    })
}

struct ChildSetup<'a> {
    executable: RawFd,
    argv: *const *const libc::c_char,
    env: *const *const libc::c_char,
    cwd: RawFd,
    sources: &'a [RawFd],
    targets: &'a [RawFd],
    /// `targets` sorted, without repeats: what stays open below `floor`.
    kept_below_floor: &'a [RawFd],
    moved: &'a mut [RawFd],
    report: RawFd,
    floor: RawFd,
    niceness: u8,
    /// -1 for none.
    cgroup_procs: RawFd,
    /// -1 for none.
    warden_pipe: RawFd,
    /// -1 for none.
    network: RawFd,
    own_session: bool,
    inheritance: Option<&'a execgate_sandbox::Inheritance>,
}

impl ChildSetup<'_> {
    /// Runs in the cloned child. Only raw, async-signal-safe calls.
    fn run(&mut self) -> ! {
        // SAFETY: every call in this block is an async-signal-safe system
        // call on descriptors this process holds and on memory that was
        // allocated before the clone and is not freed while the child
        // shares it.
        unsafe {
            let grouped = if self.own_session {
                libc::setsid() >= 0
            } else {
                libc::setpgid(0, 0) == 0
            };
            if !grouped {
                self.fail(1);
            }
            // Into the session's scope before anything else can happen:
            // from here on, nothing this child becomes outlives the session.
            if self.cgroup_procs >= 0
                && libc::write(self.cgroup_procs, c"0".as_ptr().cast(), 1) != 1
            {
                self.fail(6);
            }
            if self.warden_pipe >= 0 {
                let record = WardenRecord::Track(libc::getpid()).encode();
                if libc::write(self.warden_pipe, record.as_ptr().cast(), record.len())
                    != record.len() as isize
                {
                    self.fail(6);
                }
            }
            if self.network >= 0 && libc::setns(self.network, libc::CLONE_NEWNET) != 0 {
                self.fail(7);
            }
            // While the held directory's descriptor cannot have been
            // overwritten by a forwarded one.
            if libc::fchdir(self.cwd) != 0 {
                self.fail(3);
            }
            if self.niceness > 0 && lower_priority(self.niceness).is_err() {
                self.fail(5);
            }
            // Lift the executable and the report pipe above the targets.
            let executable = libc::fcntl(self.executable, libc::F_DUPFD_CLOEXEC, self.floor);
            let report = libc::fcntl(self.report, libc::F_DUPFD_CLOEXEC, self.floor);
            if executable < 0 || report < 0 {
                self.fail(2);
            }
            self.report = report;
            for (i, source) in self.sources.iter().enumerate() {
                let fd = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, self.floor);
                if fd < 0 {
                    self.fail(2);
                }
                self.moved[i] = fd;
            }
            for (moved, target) in self.moved.iter().zip(self.targets) {
                // dup2 leaves the new descriptor inheritable.
                if libc::dup2(*moved, *target) < 0 {
                    self.fail(2);
                }
            }
            // Close whatever else sits below the floor (descriptors the
            // server itself inherited without close-on-exec), and mark
            // everything above it close-on-exec.
            // One close_range per gap between the targets rather than a
            // close per number: zsh's descriptors sit near 255, so the
            // floor is there, and closing each number below it cost about
            // 250 system calls per escalation.
            let mut gap_start: RawFd = 0;
            for kept in self.kept_below_floor {
                if *kept > gap_start {
                    close_range(gap_start, *kept - 1);
                }
                gap_start = *kept + 1;
            }
            if self.floor > gap_start {
                close_range(gap_start, self.floor - 1);
            }
            if close_on_exec_from(self.floor).is_err() {
                self.fail(2);
            }
            // Signal dispositions and mask as a fresh process has them: the
            // server ignores SIGPIPE, and ignored signals survive exec. But
            // for what the requester ignores, with its umask and limits.
            let ignored = self
                .inheritance
                .map_or(0, |inheritance| inheritance.ignored);
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            for signal in 1..32 {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    let action = match ignored & (1 << (signal - 1)) {
                        0 => &default,
                        _ => &ignore,
                    };
                    libc::sigaction(signal, action, ptr::null_mut());
                }
            }
            // The real-time ones by system call: glibc's `sigaction`
            // refuses the two it keeps (32 and 33), which a server started
            // by `posix_spawn` has ignored. The kernel's `struct
            // sigaction`, all zeros, is SIG_DFL with an empty mask.
            let kernel_default = [0u64; 4];
            for signal in 32..=64 {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    kernel_default.as_ptr(),
                    ptr::null_mut::<u64>(),
                    8usize,
                );
            }
            // No looser than the server as it is now, either: what it read
            // of itself is from its first escalation, and its owner may
            // have lowered its limits or tightened its umask since.
            if let Some(inheritance) = self.inheritance {
                let current_umask = libc::umask(0);
                libc::umask(inheritance.umask as libc::mode_t | current_umask);
                for &(resource, soft, hard) in &inheritance.limits {
                    let mut current = [0u64; 2];
                    if libc::syscall(
                        libc::SYS_prlimit64,
                        0,
                        resource,
                        ptr::null::<u64>(),
                        current.as_mut_ptr(),
                    ) != 0
                    {
                        self.fail(8);
                    }
                    let limit = execgate_sandbox::Inheritance::no_looser(
                        (soft, hard),
                        (current[0], current[1]),
                    );
                    if libc::syscall(
                        libc::SYS_prlimit64,
                        0,
                        resource,
                        limit.as_ptr(),
                        ptr::null_mut::<u64>(),
                    ) != 0
                    {
                        self.fail(8);
                    }
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
            libc::execveat(
                executable,
                c"".as_ptr(),
                self.argv.cast_mut().cast(),
                self.env.cast_mut().cast(),
                libc::AT_EMPTY_PATH,
            );
            self.fail(4)
        }
    }

    fn fail(&self, stage: u8) -> ! {
        // SAFETY: __errno_location, write and _exit are async-signal-safe;
        // the buffer lives on this stack frame.
        unsafe {
            let errno = *libc::__errno_location();
            let mut buf = [0u8; 8];
            buf[0] = stage;
            buf[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(self.report, buf.as_ptr().cast(), buf.len());
            libc::_exit(127)
        }
    }
}

/// Closes the descriptors `first..=last`; in the cloned child.
///
/// # Safety
///
/// Nothing in the range may be in use by anyone else sharing the
/// descriptor table (the cloned child has its own).
unsafe fn close_range(first: RawFd, last: RawFd) {
    // SAFETY: close_range only closes descriptors in the range (the
    // caller's promise) and has no other effect; an empty range (a closed
    // one) is a no-op. Before Linux 5.9 it fails with ENOSYS: fall back to
    // one close per number.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0 as libc::c_uint,
        ) != 0
        {
            for fd in first..=last {
                libc::close(fd);
            }
        }
    }
}

/// A descriptor shared between owners; open while any owner holds it.
pub(crate) struct SharedFd(pub(crate) std::sync::Arc<OwnedFd>);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers an owned descriptor with the tokio reactor.
pub(crate) fn register_owned(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes the OwnedFd, which keeps the descriptor open
    // and unchanged until the AsyncFd is dropped.
    Ok(unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }?)
}

/// Registers a shared descriptor with the tokio reactor.
pub(crate) fn register_shared(
    fd: SharedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<SharedFd>> {
    // SAFETY: the AsyncFd holds one of the Arc's references, so the
    // descriptor stays open and unchanged until the AsyncFd is dropped.
    Ok(unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }?)
}

/// Bytes waiting in a socket's receive queue (`FIONREAD`), a Unix stream
/// socket's out-of-band byte included.
pub(crate) fn bytes_queued(socket: BorrowedFd<'_>) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to
    // one.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's (major, minor).
    fn kernel_version() -> (u32, u32) {
        let release =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("the kernel's release");
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse().unwrap_or(0));
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
    }

    #[test]
    fn a_peers_parent_comes_from_its_pidfd() {
        // Both ends are ours: the peer is this process.
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let parent = nix::unistd::getppid().as_raw();
        match peer_parent_pid(ours.as_fd()) {
            Some(result) => assert_eq!(result.expect("the peer's parent"), parent),
            None => assert!(
                kernel_version() < (6, 13),
                "Linux 6.13 has SO_PEERPIDFD and PIDFD_GET_INFO"
            ),
        }
        assert_eq!(pidfd_info_available(), kernel_version() >= (6, 13));
    }
}
