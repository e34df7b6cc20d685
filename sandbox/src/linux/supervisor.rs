//! The supervisor: a parent process inside the sandbox that answers the
//! system calls the mount view and Landlock cannot decide, for the target
//! and everything it starts.
//!
//! The helper forks once confinement (no-new-privs, Landlock, the x32
//! refusal) is in place, having made itself non-dumpable first (so the
//! sandbox, which has no capabilities, can never read or write the
//! supervisor's memory nor take its descriptors; the target's exec makes
//! the target dumpable again). The child installs a seccomp filter that
//! sends the watched calls here (`SECCOMP_RET_USER_NOTIF`), hands the
//! listener over, then executes the target. The parent keeps the same
//! Landlock domain, mount view and network namespace, is not under the
//! notifying filter, ignores the catchable termination signals, serves
//! notifications, and exits as the target did. Nothing it opens for the
//! target may be one of its own /proc entries (`refuse_supervisor_proc`):
//! to itself, its own `mem` is open.
//!
//! It never answers "continue": the target's memory can change between the
//! check and the kernel reading it again. It does the call itself with the
//! values it checked (the target's descriptors taken with `pidfd_getfd`,
//! paths resolved from the target's working directory) and returns the
//! result, an opened file through `SECCOMP_IOCTL_NOTIF_ADDFD`.
//!
//! What it watches:
//! - with a restricted network, `connect`: a pathname Unix socket is
//!   connected only when its inode is bound by a socket of the sandbox's own
//!   network namespace (a `sock_diag` dump; a session's spares may share
//!   one, `Launcher::spares_may_share_network`), and through the descriptor that
//!   was checked; a host listener anywhere in the tree is refused (EACCES).
//!   Datagram Unix sockets, which reach a host socket by `sendto` without
//!   `connect`, cannot be created at all (seccomp, in the helper). A
//!   socket of another network namespace (made outside and handed in) is
//!   connected to nothing (EACCES).
//! - in a sandbox on the caller's terminal, `ioctl(TIOCSPGRP)`: the shell's
//!   `tcsetpgrp`, done here while it lives and refused once it has ended
//!   ([`TerminalForeground`]).
//! - under writable roots, creating `.agents` or `.execgate` (mkdir, mknod,
//!   symlink, link, rename targets, `open` with `O_CREAT`) fails with EACCES;
//!   `.git` stays creatable, but not as a link (symlink, or link or rename
//!   of one): a link there cannot be kept read-only, and one in the working
//!   directory refuses the next session (`ResolvedPolicy`). Renaming a
//!   directory that holds a writable root, a root of deny globs or a mount
//!   of the sandbox's view fails with EBUSY: under its new name, what these
//!   checks find by path would be out of their sight.
//! - a mode change with a set-ID bit (`chmod` and its kin): done here for
//!   a directory, refused for anything else (EPERM).
//! - with deny globs, every `open`: the path of what was opened is matched
//!   against the globs, and `link`/`rename` sources, which could give a
//!   denied file another name. `openat2` answers ENOSYS (libc falls back).
//!
//! A rename runs alone among the calls that make names (an `open` that
//! creates makes its file first), deny globs or not, so that no directory
//! moves between a name's check by its path and its making, and nothing is
//! swapped for a link between a rename's look at what it moves and the
//! move (probe 170 made `.git` a link so).
//!
//! The helper, and so the supervisor, is the pid namespace's init
//! (bubblewrap's `--as-pid-1`): a signal sent from inside the sandbox does
//! not stop or kill it, not even `SIGSTOP` or `SIGKILL` (a resource limit
//! lowered with `prlimit` still can). As init it also reaps the sandbox's
//! orphans, and its end ends every process of the sandbox. It keeps none of
//! the descriptors inherited for the target. If it dies, the kernel fails
//! every watched call with ENOSYS and the target is killed (parent-death
//! signal): closed, not open.
//!
//! Tested end to end in `tests/suite/confine.rs`.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::resolve::DenyGlobMatcher;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
};

use super::sys;

/// Names that cannot be created directly under a writable root unless the
/// profile names them. `.git` is not among them: `git init` must work.
pub const UNCREATABLE_NAMES: [&str; 2] = [".agents", ".execgate"];

/// Deny globs as the helper receives them: the patterns and the roots that
/// relative patterns apply under.
pub(crate) struct DenyGlobs {
    matcher: DenyGlobMatcher,
    roots: Vec<PathBuf>,
}

impl DenyGlobs {
    pub(crate) fn new(globs: &[String], roots: Vec<PathBuf>) -> Result<DenyGlobs, String> {
        let matcher = DenyGlobMatcher::new(globs)
            .map_err(|(glob, error)| format!("deny glob {glob:?}: {error}"))?;
        Ok(DenyGlobs { matcher, roots })
    }

    /// As `ResolvedPolicy::access` matches.
    fn denies(&self, path: &Path) -> bool {
        self.matcher.denies(path, &self.roots)
    }

    fn on_the_way(&self, path: &Path) -> bool {
        self.matcher.on_the_way(path, &self.roots)
    }
}

/// What the supervisor enforces for one sandbox.
pub(crate) struct Supervision {
    /// Whether `connect` is decided here (restricted and limited networks).
    restrict_network: bool,
    /// An interactive shell's sandbox: the terminal's foreground is set
    /// here (see [`TerminalForeground`]).
    guards_terminal: bool,
    /// Which sockets the sandbox makes itself: a socket made outside it
    /// (handed in) is connected to nothing.
    own_network: OwnNetwork,
    /// Host sockets a limited network may connect to: (device, inode) as
    /// `stat` gives them, taken when the sandbox started.
    allowed_sockets: Vec<(u64, u64)>,
    /// `ROOT/.agents` and `ROOT/.execgate` for each writable root, unless
    /// the profile grants that path itself; `ROOT/.git` for each root no
    /// repository may be made at the top of.
    uncreatable: Vec<PathBuf>,
    deny: Option<DenyGlobs>,
    /// Taken alone by a rename, shared by the calls that make names (`symlink`, `link`, `mkdir`, `mknod`, `open` that
    /// creates): each checks a name by the path to it and makes it
    /// through the directory found on the way, and a directory moved in
    /// between (by another of the sandbox's threads, on another worker)
    /// would put the name at a path nobody checked, or move a link or a
    /// file in after the move's own look inside (reviews' second processes
    /// did both, thousands of times in three seconds). Nothing that waits
    /// on another process (a FIFO's open) is done under it.
    names_made: std::sync::RwLock<()>,
}

impl Supervision {
    /// `no_repository_at`: writable roots where `.git` cannot be made
    /// either (the temporary directory: a repository at its top would take
    /// in every directory below it that has none of its own, for the user's
    /// git outside the sandbox too).
    pub(crate) fn new(
        restrict_network: bool,
        writable_roots: &[PathBuf],
        no_repository_at: &[PathBuf],
        deny: Option<DenyGlobs>,
    ) -> Supervision {
        let uncreatable = writable_roots
            .iter()
            .flat_map(|root| UNCREATABLE_NAMES.map(|name| root.join(name)))
            .chain(
                no_repository_at
                    .iter()
                    .filter(|root| writable_roots.contains(root))
                    .map(|root| root.join(".git")),
            )
            .filter(|path| !writable_roots.contains(path))
            .collect();
        Supervision {
            restrict_network,
            guards_terminal: false,
            own_network: OwnNetwork::default(),
            allowed_sockets: Vec::new(),
            uncreatable,
            deny,
            names_made: std::sync::RwLock::new(()),
        }
    }

    /// Lets `connect` reach these host sockets too (a limited network's
    /// `unix_sockets`).
    pub(crate) fn allow_sockets(&mut self, identities: Vec<(u64, u64)>) {
        self.allowed_sockets = identities;
    }

    /// Tells which sockets the sandbox makes itself (see [`OwnNetwork`]).
    pub(crate) fn know_own_network(&mut self, own_network: OwnNetwork) {
        self.own_network = own_network;
    }

    /// Whether `socket`, of `family`, was made in the sandbox. One made
    /// outside it, in the host's network namespace, and handed in (probe
    /// 189: by an escalation with the network, over a socketpair the
    /// shell gave it) would reach from the sandbox what the sandbox
    /// cannot, for as long as the shell keeps it.
    fn made_here(&self, socket: BorrowedFd<'_>, family: Option<u16>) -> bool {
        match (self.own_network.cookie, sys::network_cookie(socket)) {
            (Some(own), Ok(its)) => own == its,
            // A kernel that cannot say: the families the sandbox can make.
            _ => {
                family == Some(libc::AF_UNIX as u16)
                    || family == Some(libc::AF_UNSPEC as u16)
                    || (self.own_network.makes_inet
                        && [libc::AF_INET, libc::AF_INET6]
                            .iter()
                            .any(|inet| family == Some(*inet as u16)))
            }
        }
    }

    /// Sets the terminal's foreground here, for an interactive shell's
    /// sandbox (see [`TerminalForeground`]).
    pub(crate) fn guard_terminal(&mut self) {
        self.guards_terminal = true;
    }

    /// Whether there is anything to supervise at all.
    pub(crate) fn is_needed(&self) -> bool {
        self.restrict_network || self.guards_terminal || self.watches_creation()
    }

    fn watches_creation(&self) -> bool {
        !self.uncreatable.is_empty() || self.deny.is_some()
    }
}

/// The sockets a sandbox with a confined network makes itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OwnNetwork {
    /// The cookie of the sandbox's network namespace; `None` on a kernel
    /// without `SO_NETNS_COOKIE` (before 5.14).
    pub(crate) cookie: Option<u64>,
    /// Inet sockets too (a limited network's, for its proxy), not only
    /// Unix ones.
    pub(crate) makes_inet: bool,
}

/// Marks the rules whose action becomes `SECCOMP_RET_USER_NOTIF`:
/// seccompiler has no such action, so the program is built with this
/// "trace" value and patched.
const NOTIFY_MARK: u32 = 0x5e5e;

/// The filter whose matches go to the supervisor.
pub(crate) fn notifying_program(supervision: &Supervision) -> Result<BpfProgram, String> {
    let seccomp_error = |error: &dyn std::fmt::Display| format!("seccomp: {error}");
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = Default::default();
    if supervision.restrict_network {
        rules.insert(libc::SYS_connect, Vec::new());
    }
    if supervision.guards_terminal {
        // The request's type differs between C libraries (`c_ulong` in
        // glibc, `c_int` in musl); compared as the 32 bits the kernel reads.
        #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
        let request =
            u64::try_from(libc::TIOCSPGRP).map_err(|_| seccomp_error(&"TIOCSPGRP is negative"))?;
        let set_foreground =
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
                .map_err(|e| seccomp_error(&e))?;
        rules.insert(
            libc::SYS_ioctl,
            vec![SeccompRule::new(vec![set_foreground]).map_err(|e| seccomp_error(&e))?],
        );
    }
    // A set-ID bit in a mode change: allowed here for directories only
    // (see the helper's `set_id_bit_rules`).
    let mode_changes = super::helper::set_id_bit_rules(true).map_err(|e| seccomp_error(&e))?;
    rules.extend(mode_changes);
    if supervision.watches_creation() {
        for syscall in creating_syscalls() {
            rules.insert(syscall, Vec::new());
        }
        if supervision.deny.is_some() {
            for syscall in opening_syscalls() {
                rules.insert(syscall, Vec::new());
            }
        } else {
            // Only opens that may create a file.
            for (flags_argument, syscall) in opening_syscalls_with_flags() {
                let creates = SeccompCondition::new(
                    flags_argument,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(libc::O_CREAT as u64),
                    libc::O_CREAT as u64,
                )
                .map_err(|e| seccomp_error(&e))?;
                let rule = SeccompRule::new(vec![creates]).map_err(|e| seccomp_error(&e))?;
                rules.insert(syscall, vec![rule]);
            }
            for syscall in always_creating_opens() {
                rules.insert(syscall, Vec::new());
            }
        }
    }
    let mut program = super::helper::compile_filter(rules, SeccompAction::Trace(NOTIFY_MARK))?;
    const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let marked = libc::SECCOMP_RET_TRACE | NOTIFY_MARK;
    let mut patched = 0;
    for instruction in &mut program {
        if instruction.code == BPF_RET_K && instruction.k == marked {
            instruction.k = libc::SECCOMP_RET_USER_NOTIF;
            patched += 1;
        }
    }
    if patched == 0 {
        return Err("seccomp: the notifying filter has no notifying rule".into());
    }
    Ok(program)
}

#[cfg(target_arch = "x86_64")]
fn creating_syscalls() -> Vec<i64> {
    vec![
        libc::SYS_mkdir,
        libc::SYS_mkdirat,
        libc::SYS_mknod,
        libc::SYS_mknodat,
        libc::SYS_symlink,
        libc::SYS_symlinkat,
        libc::SYS_link,
        libc::SYS_linkat,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn creating_syscalls() -> Vec<i64> {
    vec![
        libc::SYS_mkdirat,
        libc::SYS_mknodat,
        libc::SYS_symlinkat,
        libc::SYS_linkat,
        libc::SYS_renameat,
        libc::SYS_renameat2,
    ]
}

#[cfg(target_arch = "x86_64")]
fn opening_syscalls() -> Vec<i64> {
    vec![libc::SYS_open, libc::SYS_openat, libc::SYS_creat]
}

#[cfg(not(target_arch = "x86_64"))]
fn opening_syscalls() -> Vec<i64> {
    vec![libc::SYS_openat]
}

#[cfg(target_arch = "x86_64")]
fn opening_syscalls_with_flags() -> Vec<(u8, i64)> {
    vec![(1, libc::SYS_open), (2, libc::SYS_openat)]
}

#[cfg(not(target_arch = "x86_64"))]
fn opening_syscalls_with_flags() -> Vec<(u8, i64)> {
    vec![(2, libc::SYS_openat)]
}

#[cfg(target_arch = "x86_64")]
fn always_creating_opens() -> Vec<i64> {
    vec![libc::SYS_creat]
}

#[cfg(not(target_arch = "x86_64"))]
fn always_creating_opens() -> Vec<i64> {
    Vec::new()
}

/// The child's end of the hand-over: after installing the notifying
/// filter, it sends the listener to the supervisor through this.
pub(crate) struct HandOver {
    socket: OwnedFd,
}

impl HandOver {
    /// Sends the listener and drops both descriptors: the target must never
    /// hold the listener (it could answer its own notifications).
    pub(crate) fn send(self, listener: OwnedFd) -> Result<(), String> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let fds = [listener.as_raw_fd()];
        let message = [ControlMessage::ScmRights(&fds)];
        let payload = [std::io::IoSlice::new(b"L")];
        sendmsg::<()>(
            self.socket.as_raw_fd(),
            &payload,
            &message,
            MsgFlags::empty(),
            None,
        )
        .map_err(|errno| format!("cannot hand the seccomp listener over: {errno}"))?;
        drop(listener);
        Ok(())
    }
}

/// Whose sandbox it is: what its init does when the target stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxOf {
    /// A session's shell (or `execgate sandbox`'s program). No job control
    /// above the sandbox sees it stop (a program the interactive shell
    /// `exec`ed, stopped by Ctrl-Z, would hold the terminal stopped for
    /// good): the init continues it.
    Shell,
    /// An escalated program: its stand-in stops and continues it, and a
    /// program that stops itself there (nano, mutt) must stay stopped.
    Escalation,
}

/// What the supervisor, the sandbox's init, does once its target ends:
/// its own end ends every process left in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Ends at once.
    AtOnce,
    /// An interactive shell's sandbox. A terminal's shell ends and its
    /// jobs are hung up: zsh hangs up its running ones, and the kernel
    /// those that are suspended, continuing them (their process group is
    /// orphaned). Here the sandbox's init stays their parent in the
    /// terminal's session, so nothing is orphaned: what is left is hung up
    /// and continued here, and gets [`JOBS_GRACE`] to run its hang-up
    /// handlers (an editor saves its buffer) before the sandbox ends,
    /// sooner once nothing is left.
    AfterTheJobs,
}

/// The terminal's foreground process group in an interactive shell's
/// sandbox, which the shell sets for its jobs (`tcsetpgrp`). Every
/// `TIOCSPGRP` of the sandbox comes here and is done here, under this lock,
/// while the shell lives; once it has ended, the supervisor takes the
/// foreground for a group of its own, so that nothing left in the sandbox
/// can read the terminal, and refuses every later one (EPERM). Without
/// that, a job that ignores the hang-up could take the terminal in the
/// jobs' half second (review 40) and read what the user types to the
/// shell the terminal goes back to.
struct TerminalForeground {
    shell_ended: std::sync::Mutex<bool>,
}

static TERMINAL_FOREGROUND: TerminalForeground = TerminalForeground {
    shell_ended: std::sync::Mutex::new(false),
};

impl TerminalForeground {
    /// `tcsetpgrp(terminal, group)` for the sandbox, while the shell
    /// lives. Done by the supervisor, which ignores `SIGTTOU`: a caller in
    /// the background that does not is not stopped, as the kernel would
    /// stop it.
    fn set(&self, terminal: BorrowedFd<'_>, group: libc::pid_t) -> Result<(), Errno> {
        let ended = self
            .shell_ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *ended {
            return Err(Errno::EPERM);
        }
        nix::unistd::tcsetpgrp(terminal, Pid::from_raw(group))
    }

    /// The shell has ended: no `TIOCSPGRP` of the sandbox is done from now
    /// on, and the foreground is a group of the supervisor's own. `None`
    /// when it cannot be taken (no terminal): then nothing may outlive the
    /// shell.
    fn take(&self) -> Option<(OwnedFd, Pid)> {
        let mut ended = self
            .shell_ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *ended = true;
        let terminal = nix::fcntl::open(
            "/dev/tty",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).ok()?;
        let own = nix::unistd::getpgrp();
        nix::unistd::tcsetpgrp(terminal.as_fd(), own).ok()?;
        Some((terminal, own))
    }
}

/// How long the jobs of an interactive shell's sandbox may take to end
/// after the shell.
const JOBS_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Forks. In the parent, serves `supervision` until the child (the target
/// of a sandbox of `sandbox_of`) ends and exits as it did (never returns), having said on `report_to`
/// (a spare's control socket, which the child takes its order from, or the
/// report socket of a sandbox started with its command) that it died of a
/// signal, when it did. In the child, returns the hand-over.
pub(crate) fn fork_supervisor(
    supervision: Supervision,
    sandbox_of: SandboxOf,
    report_to: Option<RawFd>,
) -> Result<HandOver, String> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    if !sys::notification_sizes_match() {
        return Err("the kernel's seccomp notification layout is not the one expected".into());
    }
    let (parent_end, child_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| format!("socketpair: {errno}"))?;
    // Non-dumpable before the fork, not after it in the parent: the child
    // could execute the target first, which could then open the
    // supervisor's /proc/PID/mem. The target's exec makes it dumpable again
    // (the supervisor must read its memory and take its descriptors).
    nix::sys::prctl::set_dumpable(false).map_err(|errno| format!("PR_SET_DUMPABLE: {errno}"))?;
    // Signals stay blocked until the supervisor ignores them: one arriving
    // in between would kill it and leave the target unsupervised.
    let mut saved_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::all()),
        Some(&mut saved_mask),
    )
    .map_err(|errno| format!("sigprocmask: {errno}"))?;
    match sys::fork().map_err(|errno| format!("fork: {errno}"))? {
        ForkResult::Child => {
            drop(parent_end);
            // If the supervisor dies, so does the target.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|errno| format!("PR_SET_PDEATHSIG: {errno}"))?;
            // The target starts with the mask the helper had.
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved_mask), None)
                .map_err(|errno| format!("sigprocmask: {errno}"))?;
            Ok(HandOver { socket: child_end })
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            supervise(
                supervision,
                (child, sandbox_of),
                parent_end,
                &saved_mask,
                report_to,
            )
        }
    }
}

/// Signals that would end the supervisor before the target: ignored, so
/// that a signal to the whole process group reaches the target and the
/// supervisor reports how it ended.
const IGNORED_SIGNALS: [Signal; 10] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGPIPE,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn supervise(
    supervision: Supervision,
    (child, sandbox_of): (Pid, SandboxOf),
    channel: OwnedFd,
    saved_mask: &SigSet,
    report_to: Option<RawFd>,
) -> ! {
    // The terminal's guard and the jobs' grace go together.
    let ending = if supervision.guards_terminal {
        Ending::AfterTheJobs
    } else {
        Ending::AtOnce
    };
    let mut kept = vec![channel.as_raw_fd()];
    kept.extend(report_to);
    sys::close_inherited_except(&kept);
    let report_to = report_to.and_then(|fd| sys::take_inherited(fd).ok());
    let setup = || -> Result<Option<OwnedFd>, String> {
        for signal in IGNORED_SIGNALS {
            sys::ignore_signal(signal).map_err(|errno| format!("ignoring {signal}: {errno}"))?;
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(saved_mask), None)
            .map_err(|errno| format!("sigprocmask: {errno}"))?;
        // Workers run concurrently: each applies the target's umask to the
        // mode itself instead of switching the process-wide one.
        nix::sys::stat::umask(Mode::empty());
        Ok(receive_listener(&channel))
    };
    let listener = match setup() {
        Ok(listener) => listener,
        Err(reason) => {
            eprintln!("execgate: cannot supervise the sandbox: {reason}; nothing was run");
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            std::process::exit(i32::from(super::helper::SETUP_FAILED));
        }
    };
    drop(channel);
    if let Some(listener) = listener {
        let shared = std::sync::Arc::new(Workers {
            supervision,
            listener,
            total: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
        });
        for _ in 0..INITIAL_WORKERS {
            if Workers::spawn(&shared).is_err() {
                // No worker: the calls wait; killing the target is the
                // closed way out.
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            }
        }
    }
    exit_as((child, sandbox_of), report_to.as_ref(), ending)
}

/// Workers started at once; more start whenever all are busy, so that a
/// call that blocks (opening a FIFO, connecting to a full backlog) never
/// holds up the others.
const INITIAL_WORKERS: usize = 1;
/// The most workers: as many calls can be blocked at once.
const MAX_WORKERS: usize = 256;

/// What the worker threads share: every one receives from the listener.
struct Workers {
    supervision: Supervision,
    listener: OwnedFd,
    total: AtomicUsize,
    busy: AtomicUsize,
}

impl Workers {
    fn spawn(shared: &std::sync::Arc<Workers>) -> std::io::Result<()> {
        let worker = std::sync::Arc::clone(shared);
        shared.total.fetch_add(1, Ordering::SeqCst);
        let started = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || worker.serve());
        if started.is_err() {
            shared.total.fetch_sub(1, Ordering::SeqCst);
        }
        started.map(drop)
    }

    fn serve(self: std::sync::Arc<Self>) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            let events = fds[0].revents().unwrap_or(PollFlags::empty());
            if !events.contains(PollFlags::POLLIN) {
                if events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    // Nothing is under the filter any more; the main
                    // thread exits with the target.
                    return;
                }
                continue;
            }
            let notification = match sys::receive_notification(self.listener.as_fd()) {
                Ok(notification) => notification,
                // Another worker took it, or the caller went away.
                Err(Errno::EINTR | Errno::ENOENT | Errno::EAGAIN) => continue,
                Err(_) => return,
            };
            let busy = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
            let total = self.total.load(Ordering::SeqCst);
            if busy >= total && total < MAX_WORKERS {
                let _ = Workers::spawn(&self);
            }
            answer(&self.supervision, self.listener.as_fd(), &notification);
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The listener, or `None` when the child ended before sending it (it
/// reported why itself).
fn receive_listener(channel: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut buffer = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        channel.as_raw_fd(),
        &mut buffer,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut received = None;
    for control in message.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            for fd in fds {
                let owned = sys::own_received(fd);
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    received
}

/// Waits for the target and ends the same way: its exit code, or its
/// signal raised again here (as the pid namespace's init, which a signal it
/// raises itself cannot end, exit status 128 plus the signal, and bubblewrap
/// passes on no more: the signal is said on `report_to` first). Reaps every
/// other child on the way: as init, it inherits the sandbox's orphans. A
/// shell's stopped target is continued ([`SandboxOf`]). After an interactive
/// shell, what is left is hung up first ([`Ending`]).
fn exit_as(
    (child, sandbox_of): (Pid, SandboxOf),
    report_to: Option<&OwnedFd>,
    ending: Ending,
) -> ! {
    let ended = loop {
        match nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WUNTRACED)) {
            Ok(status) if status.pid() != Some(child) => continue,
            Ok(WaitStatus::Stopped(..)) => {
                if sandbox_of == SandboxOf::Shell {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGCONT);
                }
            }
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break status,
            Err(Errno::EINTR) => continue,
            Ok(_) => continue,
            Err(_) => std::process::exit(i32::from(super::helper::SETUP_FAILED)),
        }
    };
    if let (WaitStatus::Signaled(_, signal, core_dumped), Some(report_to)) = (ended, report_to) {
        let _ = nix::sys::socket::send(
            report_to.as_raw_fd(),
            &super::spare::signal_report(signal as i32, core_dumped),
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        );
    }
    if ending == Ending::AfterTheJobs {
        if let Some(terminal) = TERMINAL_FOREGROUND.take() {
            // As the pid namespace's init, -1 is every other process of
            // the sandbox.
            let everyone_else = Pid::from_raw(-1);
            let _ = nix::sys::signal::kill(everyone_else, Signal::SIGHUP);
            let _ = nix::sys::signal::kill(everyone_else, Signal::SIGCONT);
            reap_until_none_is_left(JOBS_GRACE, &terminal);
        }
    }
    match ended {
        WaitStatus::Signaled(_, signal, _) => {
            let _ = sys::default_signal(signal);
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_UNBLOCK,
                Some(&SigSet::from(signal)),
                None,
            );
            let _ = nix::sys::signal::raise(signal);
            std::process::exit(128 + signal as i32);
        }
        WaitStatus::Exited(_, code) => std::process::exit(code),
        _ => std::process::exit(i32::from(super::helper::SETUP_FAILED)),
    }
}

/// Reaps the sandbox's processes as they end, until none is left or
/// `grace` has passed, or the terminal's foreground is no longer the
/// supervisor's group (`terminal`: a call the supervisor let through
/// just before the shell ended).
fn reap_until_none_is_left(grace: std::time::Duration, terminal: &(OwnedFd, Pid)) {
    use nix::sys::wait::WaitPidFlag;
    let deadline = std::time::Instant::now() + grace;
    let (terminal, own) = terminal;
    while std::time::Instant::now() < deadline
        && nix::unistd::tcgetpgrp(terminal.as_fd()) == Ok(*own)
    {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            // ECHILD: none is left.
            Err(_) => return,
        }
    }
}

/// What a watched call returns.
enum Answer {
    Value(i64),
    Descriptor { fd: OwnedFd, close_on_exec: bool },
}

fn answer(supervision: &Supervision, listener: BorrowedFd<'_>, notification: &libc::seccomp_notif) {
    let outcome = Target::new(listener, notification)
        .and_then(|target| handle(supervision, &target, notification));
    let id = notification.id;
    let _ = match outcome {
        Ok(Answer::Value(value)) => sys::respond(listener, id, Ok(value)),
        Ok(Answer::Descriptor { fd, close_on_exec }) => {
            match sys::respond_with_descriptor(listener, id, fd.as_fd(), close_on_exec) {
                Ok(()) => Ok(()),
                Err(errno) => sys::respond(listener, id, Err(errno)),
            }
        }
        Err(errno) => sys::respond(listener, id, Err(errno)),
    };
}

fn handle(
    supervision: &Supervision,
    target: &Target<'_>,
    notification: &libc::seccomp_notif,
) -> Result<Answer, Errno> {
    let nr = i64::from(notification.data.nr);
    let args = notification.data.args;
    let call = Call {
        supervision,
        target,
    };
    #[cfg(target_arch = "x86_64")]
    {
        let cwd = libc::AT_FDCWD as u64;
        match nr {
            libc::SYS_mkdir => return call.mkdir(cwd, args[0], args[1]),
            libc::SYS_mknod => return call.mknod(cwd, args[0], args[1], args[2]),
            libc::SYS_symlink => return call.symlink(args[0], cwd, args[1]),
            libc::SYS_link => return call.link(cwd, args[0], cwd, args[1], 0),
            libc::SYS_rename => return call.rename(cwd, args[0], cwd, args[1], 0),
            libc::SYS_open => return call.open(cwd, args[0], args[1], args[2]),
            libc::SYS_chmod => return call.chmod(cwd, args[0], args[1], 0),
            libc::SYS_creat => {
                let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
                return call.open(cwd, args[0], flags, args[1]);
            }
            _ => {}
        }
    }
    match nr {
        libc::SYS_connect => call.connect(args[0], args[1], args[2]),
        libc::SYS_mkdirat => call.mkdir(args[0], args[1], args[2]),
        libc::SYS_mknodat => call.mknod(args[0], args[1], args[2], args[3]),
        libc::SYS_symlinkat => call.symlink(args[0], args[1], args[2]),
        libc::SYS_linkat => call.link(args[0], args[1], args[2], args[3], args[4]),
        libc::SYS_renameat => call.rename(args[0], args[1], args[2], args[3], 0),
        libc::SYS_renameat2 => call.rename(args[0], args[1], args[2], args[3], args[4]),
        libc::SYS_openat => call.open(args[0], args[1], args[2], args[3]),
        libc::SYS_fchmod => call.fchmod(args[0], args[1]),
        libc::SYS_fchmodat => call.chmod(args[0], args[1], args[2], 0),
        libc::SYS_fchmodat2 => call.chmod(args[0], args[1], args[2], args[3]),
        libc::SYS_ioctl if args[1] as u32 == libc::TIOCSPGRP as u32 => {
            call.set_foreground(args[0], args[2])
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// The thread that made a watched call.
struct Target<'a> {
    listener: BorrowedFd<'a>,
    id: u64,
    tid: libc::pid_t,
    pidfd: std::cell::OnceCell<OwnedFd>,
}

/// Longest path read from a target (the kernel's PATH_MAX, NUL included).
const PATH_MAX: usize = 4096;

impl<'a> Target<'a> {
    fn new(listener: BorrowedFd<'a>, notification: &libc::seccomp_notif) -> Result<Self, Errno> {
        let tid = libc::pid_t::try_from(notification.pid).map_err(|_| Errno::ESRCH)?;
        // Every handler calls `confirm` after its last look at the thread
        // (memory, /proc, pidfd), which makes what it saw the notifier's.
        Ok(Target {
            listener,
            id: notification.id,
            tid,
            pidfd: std::cell::OnceCell::new(),
        })
    }

    /// The thread's pidfd, opened when first needed.
    fn pidfd(&self) -> Result<BorrowedFd<'_>, Errno> {
        if let Some(pidfd) = self.pidfd.get() {
            return Ok(pidfd.as_fd());
        }
        let opened = sys::open_thread_pidfd(self.tid)?;
        Ok(self.pidfd.get_or_init(|| opened).as_fd())
    }

    /// Fails unless the notification still stands: what was read from the
    /// thread's memory or /proc was the notifying thread's.
    fn confirm(&self) -> Result<(), Errno> {
        if sys::notification_is_valid(self.listener, self.id) {
            Ok(())
        } else {
            Err(Errno::ESRCH)
        }
    }

    fn read_memory(&self, address: u64, buffer: &mut [u8]) -> Result<usize, Errno> {
        use nix::sys::uio::{process_vm_readv, RemoteIoVec};
        let base = usize::try_from(address).map_err(|_| Errno::EFAULT)?;
        let remote = [RemoteIoVec {
            base,
            len: buffer.len(),
        }];
        let mut local = [std::io::IoSliceMut::new(buffer)];
        process_vm_readv(Pid::from_raw(self.tid), &mut local, &remote).map_err(|errno| {
            if errno == Errno::ESRCH {
                errno
            } else {
                Errno::EFAULT
            }
        })
    }

    fn read_bytes(&self, address: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut buffer = vec![0u8; len];
        if len > 0 && self.read_memory(address, &mut buffer)? != len {
            return Err(Errno::EFAULT);
        }
        Ok(buffer)
    }

    /// A NUL-terminated string at `address`, read a page at a time so that
    /// a string ending just before unmapped memory is still read.
    fn read_path(&self, address: u64) -> Result<CString, Errno> {
        const PAGE: u64 = 4096;
        if address == 0 {
            return Err(Errno::EFAULT);
        }
        let mut bytes = Vec::new();
        let mut next = address;
        while bytes.len() < PATH_MAX {
            let until_page_end = PAGE - next % PAGE;
            let want = until_page_end.min((PATH_MAX - bytes.len()) as u64) as usize;
            let mut chunk = vec![0u8; want];
            let got = self.read_memory(next, &mut chunk)?;
            if got == 0 {
                return Err(Errno::EFAULT);
            }
            chunk.truncate(got);
            if let Some(end) = chunk.iter().position(|&byte| byte == 0) {
                bytes.extend_from_slice(&chunk[..end]);
                return CString::new(bytes).map_err(|_| Errno::EINVAL);
            }
            bytes.extend_from_slice(&chunk);
            next += got as u64;
        }
        Err(Errno::ENAMETOOLONG)
    }

    fn descriptor(&self, fd: u64) -> Result<OwnedFd, Errno> {
        // The kernel reads descriptor arguments as int.
        let fd = fd as u32 as i32;
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        sys::take_descriptor(self.pidfd()?, fd).map_err(|errno| match errno {
            Errno::EBADF => Errno::EBADF,
            Errno::ESRCH => Errno::ESRCH,
            // Anything else (a target made non-dumpable, say): refused.
            _ => Errno::EACCES,
        })
    }

    fn cwd(&self) -> Result<OwnedFd, Errno> {
        nix::fcntl::open(
            format!("/proc/{}/cwd", self.tid).as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| Errno::EACCES)
    }

    /// A directory-descriptor argument: `AT_FDCWD` is the target's working
    /// directory.
    fn directory(&self, fd: u64) -> Result<OwnedFd, Errno> {
        if fd as u32 as i32 == libc::AT_FDCWD {
            self.cwd()
        } else {
            self.descriptor(fd)
        }
    }

    fn status_field(&self, field: &str) -> Result<String, Errno> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.tid))
            .map_err(|_| Errno::ESRCH)?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .map(|value| value.trim().to_owned())
            .ok_or(Errno::ESRCH)
    }

    fn umask(&self) -> Result<Mode, Errno> {
        let text = self.status_field("Umask:")?;
        let bits = u32::from_str_radix(&text, 8).map_err(|_| Errno::ESRCH)?;
        Ok(Mode::from_bits_truncate(bits as libc::mode_t))
    }

    fn tgid(&self) -> Result<libc::pid_t, Errno> {
        self.status_field("Tgid:")?
            .parse()
            .map_err(|_| Errno::ESRCH)
    }
}

/// Where a path argument starts resolving.
enum Start {
    /// Resolve `path` from `base` (`None` for an absolute path), never
    /// following magic links.
    At {
        base: Option<OwnedFd>,
        path: CString,
    },
    /// Open this descriptor of the target again (`/dev/stdin`,
    /// `/proc/self/fd/N`).
    Reopen(OwnedFd),
}

/// A would-be directory entry: the directory (opened, so that the call
/// uses the one checked) and the final name.
struct Location {
    parent: OwnedFd,
    parent_path: PathBuf,
    name: OsString,
    /// The final name as given, trailing slashes kept.
    name_as_given: CString,
}

impl Location {
    fn path(&self) -> PathBuf {
        self.parent_path.join(&self.name)
    }
}

struct Call<'a> {
    supervision: &'a Supervision,
    target: &'a Target<'a>,
}

impl Call<'_> {
    /// The resolution start of path argument `path` relative to directory
    /// argument `dirfd`. `/proc/self`, `/proc/thread-self`, `/dev/fd` and
    /// `/dev/std*` mean the target's, not the supervisor's.
    fn start(&self, dirfd: u64, path: &CStr) -> Result<Start, Errno> {
        let bytes = path.to_bytes();
        if !bytes.starts_with(b"/") {
            return Ok(Start::At {
                base: Some(self.target.directory(dirfd)?),
                path: path.to_owned(),
            });
        }
        let names_the_target = strip_dir(bytes, b"/proc").is_some() || bytes.starts_with(b"/dev/");
        if !names_the_target {
            return Ok(Start::At {
                base: None,
                path: path.to_owned(),
            });
        }
        let base = None;
        let fixed: Option<(u64, &[u8])> = match bytes {
            b"/dev/stdin" => Some((0, b"")),
            b"/dev/stdout" => Some((1, b"")),
            b"/dev/stderr" => Some((2, b"")),
            _ => None,
        };
        if let Some((fd, _)) = fixed {
            return Ok(Start::Reopen(self.target.descriptor(fd)?));
        }
        let tgid = self.target.tgid()?;
        let own_dirs = [
            b"/proc/self".to_vec(),
            b"/proc/thread-self".to_vec(),
            format!("/proc/{tgid}").into_bytes(),
            format!("/proc/{}", self.target.tid).into_bytes(),
            format!("/proc/{tgid}/task/{}", self.target.tid).into_bytes(),
        ];
        for dir in &own_dirs {
            let Some(rest) = strip_dir(bytes, dir) else {
                continue;
            };
            if let Some(after) = strip_dir(rest, b"/fd") {
                if !after.iter().all(|&byte| byte == b'/') {
                    return self.descriptor_start(after);
                }
            }
            if let Some(after) = strip_dir(rest, b"/cwd") {
                let path = relative_rest(after)?;
                return Ok(Start::At {
                    base: Some(self.target.cwd()?),
                    path,
                });
            }
            let own = if dir.as_slice() == b"/proc/thread-self" {
                format!("/proc/{tgid}/task/{}", self.target.tid)
            } else {
                format!("/proc/{tgid}")
            };
            let mut rewritten = own.into_bytes();
            rewritten.extend_from_slice(rest);
            return Ok(Start::At {
                base,
                path: CString::new(rewritten).map_err(|_| Errno::EINVAL)?,
            });
        }
        if let Some(after) = strip_dir(bytes, b"/dev/fd") {
            if after.iter().all(|&byte| byte == b'/') {
                // The directory itself: the target's.
                return Ok(Start::At {
                    base,
                    path: CString::new(format!("/proc/{tgid}/fd")).map_err(|_| Errno::EINVAL)?,
                });
            }
            return self.descriptor_start(after);
        }
        Ok(Start::At {
            base,
            path: path.to_owned(),
        })
    }

    /// `/N` or `/N/rest` after an `fd` directory: descriptor N of the
    /// target, reopened or resolved from.
    fn descriptor_start(&self, after: &[u8]) -> Result<Start, Errno> {
        let after = after.strip_prefix(b"/").ok_or(Errno::ENOENT)?;
        let (number, rest) = match after.iter().position(|&byte| byte == b'/') {
            Some(slash) => (&after[..slash], &after[slash..]),
            None => (after, &b""[..]),
        };
        let number: u64 = std::str::from_utf8(number)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or(Errno::ENOENT)?;
        let fd = self.target.descriptor(number).map_err(|errno| {
            if errno == Errno::EBADF {
                Errno::ENOENT
            } else {
                errno
            }
        })?;
        if rest.iter().all(|&byte| byte == b'/') {
            return Ok(Start::Reopen(fd));
        }
        Ok(Start::At {
            base: Some(fd),
            path: relative_rest(rest)?,
        })
    }

    /// The directory entry a creating call names.
    fn locate(&self, start: Start) -> Result<Location, Errno> {
        let Start::At { base, path } = start else {
            // A descriptor is not a name to create.
            return Err(Errno::EEXIST);
        };
        let bytes = path.as_bytes();
        let trimmed_len = bytes
            .iter()
            .rposition(|&byte| byte != b'/')
            .map_or(0, |last| last + 1);
        if trimmed_len == 0 {
            return Err(if bytes.is_empty() {
                Errno::ENOENT
            } else {
                Errno::EEXIST
            });
        }
        let trimmed = &bytes[..trimmed_len];
        let (directory, name) = match trimmed.iter().rposition(|&byte| byte == b'/') {
            Some(0) => (&b"/"[..], &trimmed[1..]),
            Some(slash) => (&trimmed[..slash], &trimmed[slash + 1..]),
            None => (&b"."[..], trimmed),
        };
        let parent = open_beneath_magic(
            base_fd(&base),
            &CString::new(directory).map_err(|_| Errno::EINVAL)?,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        let parent_path = real_path(parent.as_fd())?;
        let name_as_given =
            CString::new(&bytes[trimmed_len - name.len()..]).map_err(|_| Errno::EINVAL)?;
        Ok(Location {
            parent,
            parent_path,
            name: OsStr::from_bytes(name).to_owned(),
            name_as_given,
        })
    }

    fn refuse_uncreatable(&self, location: &Location) -> Result<(), Errno> {
        let is_protected_name = UNCREATABLE_NAMES
            .iter()
            .chain(&[".git"])
            .any(|name| location.name == OsStr::new(name));
        if is_protected_name && self.supervision.uncreatable.contains(&location.path()) {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// A directory being renamed must hold nothing this supervisor or the
    /// mount view finds by path: a writable root (whose `.agents` no one
    /// may create), a root deny globs hang from, a mount of the sandbox's
    /// view (a writable root bound inside another, a read-only `.git`, the
    /// tools). Moved, each would be out of the checks' sight under its new
    /// name. A probe moved the parent of its workspace aside, created
    /// `.agents` in the workspace under its new name, read a late file a
    /// glob relative to the workspace denied, and moved it back; another
    /// moved the execgate binaries' directory aside and put its own in
    /// their place. Refused as the kernel refuses to rename a mount point
    /// (EBUSY).
    fn refuse_moving_anchors(&self, location: &Location) -> Result<(), Errno> {
        let is_directory = names_a(location, libc::S_IFDIR);
        if !is_directory {
            return Ok(());
        }
        let path = location.path();
        let writable_roots = self
            .supervision
            .uncreatable
            .iter()
            .filter_map(|name| name.parent());
        let deny_roots = self
            .supervision
            .deny
            .iter()
            .flat_map(|deny| deny.roots.iter().map(PathBuf::as_path));
        if writable_roots
            .chain(deny_roots)
            .any(|anchor| anchor.starts_with(&path))
        {
            return Err(Errno::EBUSY);
        }
        // Unreadable, the mount table could hold anything.
        let mounts = std::fs::read("/proc/self/mountinfo").map_err(|_| Errno::EBUSY)?;
        let holds_a_mount = mounts
            .split(|&byte| byte == b'\n')
            .filter_map(|line| line.split(|&byte| byte == b' ').nth(4))
            .any(|mount_point| {
                Path::new(OsStr::from_bytes(&super::aliases::unescape_mount_field(
                    mount_point,
                )))
                .starts_with(&path)
            });
        if holds_a_mount {
            return Err(Errno::EBUSY);
        }
        Ok(())
    }

    /// A link named `.git` directly under a writable root: a sandbox could
    /// point the user's own git wherever it likes, and a session started
    /// there would refuse to run (`SandboxError::ProtectedNameIsLink`).
    /// `git init` and a `gitdir:` file are made as before.
    fn refuse_git_link(&self, location: &Location) -> Result<(), Errno> {
        let at_a_root = self
            .supervision
            .uncreatable
            .iter()
            .any(|name| name.parent() == Some(location.parent_path.as_path()));
        if location.name == OsStr::new(".git") && at_a_root {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// [`Call::refuse_git_link`] for a link or rename onto `location` of
    /// `source`, when it is a link itself.
    fn refuse_git_link_from(
        &self,
        source: BorrowedFd<'_>,
        location: &Location,
    ) -> Result<(), Errno> {
        let stat = nix::sys::stat::fstat(source)?;
        if stat.st_mode & libc::S_IFMT == libc::S_IFLNK {
            self.refuse_git_link(location)?;
        }
        Ok(())
    }

    /// A symbolic link where a glob would match a late file, or on the way
    /// to one (`config` for `config/*.key`): what the host writes there
    /// would go through it to a name no glob matches, readable.
    fn refuse_link_on_a_globs_way(&self, location: &Location) -> Result<(), Errno> {
        match &self.supervision.deny {
            Some(deny) if deny.on_the_way(&location.path()) => Err(Errno::EACCES),
            _ => Ok(()),
        }
    }

    /// Held while a name is checked by its path and made: no directory on
    /// the way moves meanwhile (see [`Supervision::names_made`]).
    fn no_move_meanwhile(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        let guard = self.supervision.names_made.read();
        guard.unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Held by a rename, from its first look through the move (see
    /// [`Supervision::names_made`]), with or without deny globs: another
    /// rename (an exchange) or a new link made between a rename's look at
    /// what it moves and the move would put a link where it refuses one
    /// (probe 170 made `.git` a link so).
    fn alone(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        let guard = self.supervision.names_made.write();
        guard.unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A directory on a glob's way stays where it is (EBUSY, as for the
    /// anchors): a host program working in it would write its late file
    /// into the directory's new name, which no glob matches.
    fn refuse_moving_a_globs_way(&self, location: &Location) -> Result<(), Errno> {
        let Some(deny) = &self.supervision.deny else {
            return Ok(());
        };
        let is_directory = names_a(location, libc::S_IFDIR);
        match is_directory && deny.on_the_way(&location.path()) {
            true => Err(Errno::EBUSY),
            false => Ok(()),
        }
    }

    /// What `opened` is now, judged by the globs.
    fn refuse_denied_real_path(&self, opened: BorrowedFd<'_>) -> Result<(), Errno> {
        let path = real_path(opened)?;
        // A file unlinked since it was opened reads "PATH (deleted)"; the
        // name it was opened by is what the globs judge.
        let bytes = path.as_os_str().as_bytes();
        let name = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
        self.refuse_denied(Path::new(OsStr::from_bytes(name)))
    }

    fn refuse_denied(&self, path: &Path) -> Result<(), Errno> {
        match &self.supervision.deny {
            Some(deny) if path.is_absolute() && deny.denies(path) => Err(Errno::EACCES),
            _ => Ok(()),
        }
    }

    /// `mode` as the kernel would create with it in the target: less the
    /// target's umask (the supervisor's own is zero). A set-user-ID or
    /// set-group-ID bit is refused, as the sandbox's seccomp filter refuses
    /// it for the calls it sees (see the helper's `set_id_bit_rules`).
    fn creation_mode(&self, mode: u64) -> Result<Mode, Errno> {
        if mode & u64::from(libc::S_ISUID | libc::S_ISGID) != 0 {
            return Err(Errno::EPERM);
        }
        let requested = Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t);
        Ok(requested & !self.target.umask()?)
    }

    /// The entry a path ending in `location` finally names once symlinks in
    /// its last component are followed (as `open` would), so that checks
    /// judge where a file would be created or truncated.
    fn follow_final_symlinks(&self, mut location: Location) -> Result<Location, Errno> {
        // The kernel's limit on symlinks followed in one lookup.
        const MAX_LINKS: usize = 40;
        for _ in 0..MAX_LINKS {
            let stat = nix::sys::stat::fstatat(
                location.parent.as_fd(),
                location.name.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            let is_symlink =
                matches!(stat, Ok(ref stat) if stat.st_mode & libc::S_IFMT == libc::S_IFLNK);
            if !is_symlink {
                return Ok(location);
            }
            let target =
                nix::fcntl::readlinkat(location.parent.as_fd(), location.name.as_os_str())?;
            let target = CString::new(target.into_vec()).map_err(|_| Errno::EINVAL)?;
            location = self.locate(Start::At {
                base: Some(location.parent),
                path: target,
            })?;
        }
        Err(Errno::ELOOP)
    }

    /// A rename source, going to `to`: neither it nor, for a directory,
    /// anything in it may match a deny glob, here or there (a glob such as
    /// `private/**` matches by place, and moving the directory would move
    /// the file out from under it), and no link in it may land on a glob's
    /// way (see
    /// [`Call::refuse_link_on_a_globs_way`]). A tree too large to search is
    /// refused with EXDEV, on which `mv` copies file by file, each copy an
    /// open the globs are checked on.
    fn refuse_denied_beneath(&self, location: &Location, to: &Path) -> Result<(), Errno> {
        let Some(deny) = &self.supervision.deny else {
            return Ok(());
        };
        let path = location.path();
        self.refuse_denied(&path)?;
        let directory = match nix::fcntl::openat(
            location.parent.as_fd(),
            location.name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(directory) => directory,
            // Not a directory (or nothing there): the name was the check.
            Err(_) => return Ok(()),
        };
        refuse_supervisor_proc(directory.as_fd())?;
        let through = PathBuf::from(format!("/proc/self/fd/{}", directory.as_raw_fd()));
        let mut budget = RENAME_SEARCH_LIMIT;
        let mut pending = vec![(PathBuf::new(), 0usize)];
        while let Some((relative, depth)) = pending.pop() {
            let entries = std::fs::read_dir(through.join(&relative)).map_err(|_| Errno::EXDEV)?;
            for entry in entries {
                let entry = entry.map_err(|_| Errno::EXDEV)?;
                budget = budget.checked_sub(1).ok_or(Errno::EXDEV)?;
                let inner = relative.join(entry.file_name());
                // Nor may anything in it land on a denied name: a file's
                // other name, or a descriptor kept open, would read what
                // the host writes there in place.
                if deny.denies(&path.join(&inner)) || deny.denies(&to.join(&inner)) {
                    return Err(Errno::EACCES);
                }
                let is_link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
                if is_link && deny.on_the_way(&to.join(&inner)) {
                    return Err(Errno::EACCES);
                }
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                if is_dir {
                    if depth >= crate::resolve::GLOB_MAX_DEPTH {
                        return Err(Errno::EXDEV);
                    }
                    pending.push((inner, depth + 1));
                }
            }
        }
        Ok(())
    }

    fn mkdir(&self, dirfd: u64, path: u64, mode: u64) -> Result<Answer, Errno> {
        // A directory's set-ID bits grant nothing (the set-group-ID one
        // passes the group on), and `mkdir` keeps neither from its mode
        // anyway: dropped, not refused (`cp -r` of such a directory).
        let mode = mode & !u64::from(libc::S_ISUID | libc::S_ISGID);
        let path = self.target.read_path(path)?;
        let start = self.start(dirfd, &path)?;
        let mode = self.creation_mode(mode)?;
        self.target.confirm()?;
        let _no_move = self.no_move_meanwhile();
        let location = self.locate(start)?;
        self.refuse_uncreatable(&location)?;
        nix::sys::stat::mkdirat(
            location.parent.as_fd(),
            location.name_as_given.as_c_str(),
            mode,
        )?;
        Ok(Answer::Value(0))
    }

    fn mknod(&self, dirfd: u64, path: u64, mode: u64, device: u64) -> Result<Answer, Errno> {
        let path = self.target.read_path(path)?;
        let start = self.start(dirfd, &path)?;
        let kind = nix::sys::stat::SFlag::from_bits_truncate(mode as libc::mode_t & libc::S_IFMT);
        let permissions = self.creation_mode(mode)?;
        self.target.confirm()?;
        let _no_move = self.no_move_meanwhile();
        let location = self.locate(start)?;
        self.refuse_uncreatable(&location)?;
        self.refuse_denied(&location.path())?;
        nix::sys::stat::mknodat(
            location.parent.as_fd(),
            location.name_as_given.as_c_str(),
            kind,
            permissions,
            device as u32 as libc::dev_t,
        )?;
        Ok(Answer::Value(0))
    }

    fn symlink(&self, contents: u64, dirfd: u64, path: u64) -> Result<Answer, Errno> {
        let contents = self.target.read_path(contents)?;
        let path = self.target.read_path(path)?;
        let start = self.start(dirfd, &path)?;
        self.target.confirm()?;
        let _no_move = self.no_move_meanwhile();
        let location = self.locate(start)?;
        self.refuse_uncreatable(&location)?;
        self.refuse_git_link(&location)?;
        self.refuse_link_on_a_globs_way(&location)?;
        nix::unistd::symlinkat(
            contents.as_c_str(),
            location.parent.as_fd(),
            location.name_as_given.as_c_str(),
        )?;
        Ok(Answer::Value(0))
    }

    /// `fchmodat2`, and `chmod` and `fchmodat` as it, for a mode with a
    /// set-ID bit (only those come here): a directory may have them (they
    /// are harmless there, and the set-group-ID one is inherited, so tools
    /// pass it back in every mode they set), anything else may not.
    fn chmod(&self, dirfd: u64, path: u64, mode: u64, flags: u64) -> Result<Answer, Errno> {
        let flags = flags as u32 as i32;
        if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Err(Errno::EINVAL);
        }
        let path = self.target.read_path(path)?;
        let file = if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            match dirfd as u32 as i32 {
                libc::AT_FDCWD => self.target.cwd()?,
                _ => self.target.descriptor(dirfd)?,
            }
        } else {
            let start = self.start(dirfd, &path)?;
            let follow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
                OFlag::O_NOFOLLOW
            } else {
                OFlag::empty()
            };
            open_start(start, OFlag::O_PATH | follow, Mode::empty())?
        };
        self.target.confirm()?;
        self.chmod_directory(file.as_fd(), mode)
    }

    /// `fchmod` with a set-ID bit: as [`Call::chmod`], on the target's
    /// descriptor.
    fn fchmod(&self, fd: u64, mode: u64) -> Result<Answer, Errno> {
        let file = self.target.descriptor(fd)?;
        // As the kernel: `fchmod` takes no `O_PATH` descriptor.
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
        if flags & libc::O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        self.target.confirm()?;
        self.chmod_directory(file.as_fd(), mode)
    }

    fn chmod_directory(&self, file: BorrowedFd<'_>, mode: u64) -> Result<Answer, Errno> {
        refuse_supervisor_proc(file)?;
        let stat = nix::sys::stat::fstat(file)?;
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {}
            // What the kernel answers for a link's own mode.
            libc::S_IFLNK => return Err(Errno::EOPNOTSUPP),
            _ => return Err(Errno::EPERM),
        }
        // Through the descriptor the check was made on (an `O_PATH` one,
        // which `fchmod` does not take).
        nix::sys::stat::fchmodat(
            AT_FDCWD,
            format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
            Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
        Ok(Answer::Value(0))
    }

    fn link(
        &self,
        old_dirfd: u64,
        old_path: u64,
        new_dirfd: u64,
        new_path: u64,
        flags: u64,
    ) -> Result<Answer, Errno> {
        let flags = flags as u32 as i32;
        if flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Err(Errno::EINVAL);
        }
        let old_path = self.target.read_path(old_path)?;
        let new_path = self.target.read_path(new_path)?;
        // The source, opened as the call would find it; what is linked is
        // this very file, through its descriptor.
        let source = if old_path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            self.target.descriptor(old_dirfd)?
        } else {
            let start = self.start(old_dirfd, &old_path)?;
            let follow = if flags & libc::AT_SYMLINK_FOLLOW != 0 {
                OFlag::empty()
            } else {
                OFlag::O_NOFOLLOW
            };
            open_start(start, OFlag::O_PATH | follow, Mode::empty())?
        };
        let new_start = self.start(new_dirfd, &new_path)?;
        self.target.confirm()?;
        let _no_move = self.no_move_meanwhile();
        let location = self.locate(new_start)?;
        self.refuse_uncreatable(&location)?;
        self.refuse_git_link_from(source.as_fd(), &location)?;
        // A name a glob denies is not made, as `open` would not create it:
        // a file linked there ahead of the host's write would be read
        // through its other name.
        self.refuse_denied(&location.path())?;
        if nix::sys::stat::fstat(source.as_fd())
            .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
        {
            self.refuse_link_on_a_globs_way(&location)?;
        }
        self.refuse_denied(&real_path(source.as_fd())?)?;
        refuse_supervisor_proc(source.as_fd())?;
        let source_link = format!("/proc/self/fd/{}", source.as_raw_fd());
        nix::unistd::linkat(
            AT_FDCWD,
            source_link.as_str(),
            location.parent.as_fd(),
            location.name_as_given.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )?;
        Ok(Answer::Value(0))
    }

    fn rename(
        &self,
        old_dirfd: u64,
        old_path: u64,
        new_dirfd: u64,
        new_path: u64,
        flags: u64,
    ) -> Result<Answer, Errno> {
        let flags = flags as u32;
        let old_path = self.target.read_path(old_path)?;
        let new_path = self.target.read_path(new_path)?;
        let old_start = self.start(old_dirfd, &old_path)?;
        let new_start = self.start(new_dirfd, &new_path)?;
        self.target.confirm()?;
        // Alone: what it moves may be a directory, whose contents it looks
        // at, and under which other calls find their paths.
        let _alone = self.alone();
        let old = self.locate(old_start)?;
        let new = self.locate(new_start)?;
        self.refuse_uncreatable(&new)?;
        self.refuse_denied(&new.path())?;
        self.refuse_denied_beneath(&old, &new.path())?;
        self.refuse_moving_anchors(&old)?;
        self.refuse_moving_a_globs_way(&old)?;
        if is_link(&old) {
            self.refuse_git_link(&new)?;
            self.refuse_link_on_a_globs_way(&new)?;
        }
        if flags & libc::RENAME_EXCHANGE != 0 {
            // Both names move.
            self.refuse_uncreatable(&old)?;
            if is_link(&new) {
                self.refuse_git_link(&old)?;
                self.refuse_link_on_a_globs_way(&old)?;
            }
            self.refuse_denied(&old.path())?;
            self.refuse_denied_beneath(&new, &old.path())?;
            self.refuse_moving_a_globs_way(&new)?;
            self.refuse_moving_anchors(&new)?;
        }
        let known = libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE | libc::RENAME_WHITEOUT;
        if flags & !known != 0 {
            return Err(Errno::EINVAL);
        }
        sys::renameat2(
            old.parent.as_fd(),
            old.name_as_given.as_c_str(),
            new.parent.as_fd(),
            new.name_as_given.as_c_str(),
            flags,
        )?;
        Ok(Answer::Value(0))
    }

    fn open(&self, dirfd: u64, path: u64, flags: u64, mode: u64) -> Result<Answer, Errno> {
        let flags = flags as u32 as i32;
        let path = self.target.read_path(path)?;
        let start = self.start(dirfd, &path)?;
        // `O_PATH` ignores `O_CREAT`; with `O_DIRECTORY` it is EINVAL, as
        // kernels since 6.4 answer (older ones made a regular file, which
        // here would be a name made outside the checks).
        let creates = flags & libc::O_CREAT != 0 && flags & libc::O_PATH == 0;
        if creates && flags & libc::O_DIRECTORY != 0 {
            return Err(Errno::EINVAL);
        }
        // `O_CREAT | O_EXCL` never follows a final link: EEXIST.
        let exclusive = creates && flags & libc::O_EXCL != 0;
        let mode = if creates || flags & libc::O_TMPFILE == libc::O_TMPFILE {
            self.creation_mode(mode)?
        } else {
            Mode::empty()
        };
        self.target.confirm()?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let mut final_component_checked = false;
        let mut made_first = false;
        let start = match start {
            Start::At { base, path } if creates || (writes && self.supervision.deny.is_some()) => {
                let no_move = match creates {
                    true => Some(self.no_move_meanwhile()),
                    false => None,
                };
                // Checked by name before anything is created or truncated;
                // a final symlink is followed here, not by the kernel, so
                // that a dangling `x -> .agents` creates nothing unchecked.
                let location = self.locate(Start::At { base, path })?;
                let location = if flags & libc::O_NOFOLLOW != 0 || exclusive {
                    location
                } else {
                    self.follow_final_symlinks(location)?
                };
                if creates {
                    self.refuse_uncreatable(&location)?;
                }
                self.refuse_denied(&location.path())?;
                final_component_checked = true;
                // Under deny globs a file that is not there is made and
                // opened here, with no directory moving meanwhile; one that
                // is there is opened after, as it is found then: an open
                // may wait for another process (a FIFO's), which must not
                // hold up the sandbox's renames.
                if no_move.is_some() {
                    match create_first(&location, flags, mode)? {
                        Some(made) => {
                            self.refuse_denied_real_path(made.as_fd())?;
                            return Ok(Answer::Descriptor {
                                fd: made,
                                close_on_exec: flags & libc::O_CLOEXEC != 0,
                            });
                        }
                        None if is_directory(&location) => return Err(Errno::EISDIR),
                        None => made_first = true,
                    }
                }
                drop(no_move);
                Start::At {
                    base: Some(location.parent),
                    path: location.name_as_given,
                }
            }
            other => other,
        };
        let mut how = OFlag::from_bits_truncate(flags & OPEN_FLAGS);
        how.remove(OFlag::O_CLOEXEC);
        let mut mode = mode;
        if made_first {
            // It was there: one removed since is not made again, outside
            // the lock: the open fails (ENOENT). (`openat2` takes a mode
            // only with `O_CREAT`.)
            how.remove(OFlag::O_CREAT | OFlag::O_EXCL);
            mode = Mode::empty();
        }
        if how.contains(OFlag::O_PATH) {
            // `openat2` refuses any other flag beside `O_PATH` (`open`
            // ignores them). The kernel hands no `O_PATH` descriptor over
            // (`SECCOMP_IOCTL_NOTIF_ADDFD` takes none), so such an open
            // still fails, with EBADF: README says so.
            how &= OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
        } else {
            how.insert(OFlag::O_NOCTTY);
        }
        if final_component_checked {
            // What was checked is what is opened: a symlink put there since
            // fails the open (ELOOP).
            how.insert(OFlag::O_NOFOLLOW);
        }
        let opened = open_start(start, how, mode)?;
        if self.supervision.deny.is_some() {
            self.refuse_denied_real_path(opened.as_fd())?;
        }
        Ok(Answer::Descriptor {
            fd: opened,
            close_on_exec: flags & libc::O_CLOEXEC != 0,
        })
    }

    fn connect(&self, socket: u64, address: u64, length: u64) -> Result<Answer, Errno> {
        let length = usize::try_from(length as u32).map_err(|_| Errno::EINVAL)?;
        if length > std::mem::size_of::<libc::sockaddr_storage>() {
            return Err(Errno::EINVAL);
        }
        let address = self.target.read_bytes(address, length)?;
        let socket = self.target.descriptor(socket)?;
        let family = address
            .get(..2)
            .map(|bytes| u16::from_ne_bytes([bytes[0], bytes[1]]));
        if !self.supervision.made_here(socket.as_fd(), family) {
            return Err(Errno::EACCES);
        }
        let is_pathname =
            family == Some(libc::AF_UNIX as u16) && address.get(2).is_some_and(|&first| first != 0);
        if !is_pathname {
            self.target.confirm()?;
            // Abstract addresses belong to the sandbox's own network
            // namespace (shared only by a session's spares, and only where
            // Landlock scopes them to each sandbox), as does the socket
            // (`made_here`): inet, for a limited network, reaches only its
            // loopback. Connected with the bytes checked.
            sys::connect_raw(socket.as_fd(), &address)?;
            return Ok(Answer::Value(0));
        }
        let path_bytes = &address[2..];
        let end = path_bytes
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(path_bytes.len());
        let path = CString::new(&path_bytes[..end]).map_err(|_| Errno::EINVAL)?;
        // The last look at the thread (its working directory, its Tgid,
        // its descriptors): confirmed after it.
        let start = self.start(libc::AT_FDCWD as u32 as u64, &path)?;
        self.target.confirm()?;
        let endpoint = open_start(start, OFlag::O_PATH, Mode::empty())?;
        let stat = nix::sys::stat::fstat(endpoint.as_fd())?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(Errno::ECONNREFUSED);
        }
        let allowed = self
            .supervision
            .allowed_sockets
            .contains(&(stat.st_dev, stat.st_ino));
        if !allowed && !sandbox_socket_inodes()?.contains(&kernel_identity(&stat)) {
            // Bound outside the sandbox: a host service.
            return Err(Errno::EACCES);
        }
        let mut checked = Vec::with_capacity(2 + 32);
        checked.extend_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        checked.extend_from_slice(format!("/proc/self/fd/{}", endpoint.as_raw_fd()).as_bytes());
        checked.push(0);
        sys::connect_raw(socket.as_fd(), &checked)?;
        Ok(Answer::Value(0))
    }

    /// `ioctl(fd, TIOCSPGRP, &group)`: see [`TerminalForeground`].
    fn set_foreground(&self, fd: u64, group: u64) -> Result<Answer, Errno> {
        let bytes = self
            .target
            .read_bytes(group, std::mem::size_of::<libc::pid_t>())?;
        let group = libc::pid_t::from_ne_bytes(bytes.try_into().map_err(|_| Errno::EFAULT)?);
        let terminal = self.target.descriptor(fd)?;
        self.target.confirm()?;
        TERMINAL_FOREGROUND.set(terminal.as_fd(), group)?;
        Ok(Answer::Value(0))
    }
}

/// Makes and opens, with the caller's `flags`, the regular file an `open`
/// with `O_CREAT` would make at `location`, if nothing is there: `None`
/// then (unless `O_EXCL` asks for EEXIST). Never follows a link. Opened by
/// the call that made it, as the kernel would (a file made read-only is
/// still opened for writing: git's objects).
fn create_first(location: &Location, flags: i32, mode: Mode) -> Result<Option<OwnedFd>, Errno> {
    let mut how = OFlag::from_bits_truncate(flags & OPEN_FLAGS);
    how.remove(OFlag::O_CLOEXEC);
    how.insert(
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
    );
    match nix::fcntl::openat(
        location.parent.as_fd(),
        location.name_as_given.as_c_str(),
        how,
        mode,
    ) {
        Ok(made) => Ok(Some(made)),
        Err(Errno::EEXIST) if flags & libc::O_EXCL == 0 => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Whether `location` names a directory (not following a link).
fn is_directory(location: &Location) -> bool {
    names_a(location, libc::S_IFDIR)
}

/// Whether `location` names a symbolic link.
fn is_link(location: &Location) -> bool {
    names_a(location, libc::S_IFLNK)
}

/// Whether `location` names a file of `kind` (`S_IFDIR`, ...), not
/// following a link.
fn names_a(location: &Location, kind: libc::mode_t) -> bool {
    nix::sys::stat::fstatat(
        location.parent.as_fd(),
        location.name.as_os_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == kind)
}

/// Entries searched under a directory being renamed before the rename is
/// refused with EXDEV.
const RENAME_SEARCH_LIMIT: usize = 20_000;

/// The open flags passed on (`openat2` refuses unknown bits that `open`
/// ignores).
const OPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_ASYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC
    | libc::O_SYNC
    | libc::O_PATH
    | libc::O_TMPFILE;

/// `rest` after a `/proc/PID/fd` or `/cwd` prefix, as a relative path.
fn relative_rest(rest: &[u8]) -> Result<CString, Errno> {
    let trimmed: &[u8] = {
        let start = rest
            .iter()
            .position(|&byte| byte != b'/')
            .unwrap_or(rest.len());
        &rest[start..]
    };
    let path = if trimmed.is_empty() {
        &b"."[..]
    } else {
        trimmed
    };
    CString::new(path).map_err(|_| Errno::EINVAL)
}

/// `path` without the leading directory `dir`, when `path` is `dir` or
/// lies under it.
fn strip_dir<'p>(path: &'p [u8], dir: &[u8]) -> Option<&'p [u8]> {
    let rest = path.strip_prefix(dir)?;
    (rest.is_empty() || rest.starts_with(b"/")).then_some(rest)
}

/// Opens what `start` names. Magic links are not followed, except the one
/// to the target's own descriptor being reopened: through the supervisor's
/// /proc they would lead to its own descriptors.
fn open_start(start: Start, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
    let opened = match start {
        Start::At { base, path } => return open_beneath_magic(base_fd(&base), &path, flags, mode),
        Start::Reopen(fd) => {
            let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).mode(mode);
            openat2_settled(AT_FDCWD, link.as_str(), how)?
        }
    };
    refuse_supervisor_proc(opened.as_fd())?;
    Ok(opened)
}

/// The directory a path resolves from: `AT_FDCWD` stands for "absolute
/// path" only (the supervisor's working directory is never the target's).
fn base_fd(base: &Option<OwnedFd>) -> BorrowedFd<'_> {
    match base {
        Some(fd) => fd.as_fd(),
        None => AT_FDCWD,
    }
}

fn open_beneath_magic(
    base: BorrowedFd<'_>,
    path: &CStr,
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let opened = openat2_settled(base, path, how)?;
    refuse_supervisor_proc(opened.as_fd())?;
    Ok(opened)
}

/// `openat2`, asked again while it answers `EAGAIN`: a mount or rename
/// anywhere on the machine raced the lookup, and the kernel asks the
/// caller to retry (review 222's run: sandboxes starting in another process
/// made the supervisor's and the escalation server's lookups fail now and
/// then, and an exec was denied). Gives up after 100 tries with `EAGAIN`.
pub fn openat2_settled<P: ?Sized + nix::NixPath>(
    base: BorrowedFd<'_>,
    path: &P,
    how: OpenHow,
) -> Result<OwnedFd, Errno> {
    const TRIES: usize = 100;
    let mut tries = 1;
    loop {
        match nix::fcntl::openat2(base, path, how) {
            Err(Errno::EAGAIN) if tries < TRIES => tries += 1,
            opened => return opened,
        }
    }
}

/// The supervisor may open its own /proc entries (`mem` among them: its
/// code, writable wherever Landlock lets /proc be written); the sandbox may
/// not, so nothing opened on its behalf may belong to one of its threads,
/// whichever name reached it: `/proc/PID`, `/proc/TID` of a worker,
/// `/proc/N/task/TID`, a symlink or a directory descriptor leading there.
///
/// Other processes' entries pass: the supervisor has the sandbox's
/// credentials and Landlock domain, so for them it can open nothing the
/// sandbox could not open itself (and `ps`, `cat /proc/$$/status` keep
/// working under deny globs, where every open comes here).
fn refuse_supervisor_proc(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let on_proc = nix::sys::statfs::fstatfs(fd)
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
        .map_err(|_| Errno::EACCES)?;
    if !on_proc {
        return Ok(());
    }
    let path = real_path(fd)?;
    // bubblewrap mounts procfs at /proc and Landlock forbids mounting in
    // the sandbox, so procfs anywhere else is not understood: refused.
    let inside = path.strip_prefix("/proc").map_err(|_| Errno::EACCES)?;
    let mut components = inside.components().map(|component| component.as_os_str());
    let process = components.next();
    let thread = match components.next() {
        Some(task) if task == "task" => components.next(),
        _ => None,
    };
    for id in [process, thread].into_iter().flatten() {
        if is_supervisor_thread(id)? {
            return Err(Errno::EACCES);
        }
    }
    Ok(())
}

/// Whether the /proc entry `id` is a thread of the supervisor: the main one
/// or a worker (only threads of this process are found under
/// /proc/self/task). The supervisor's threads live until the target has
/// ended, so a number that named one when a file was opened still does.
fn is_supervisor_thread(id: &OsStr) -> Result<bool, Errno> {
    let bytes = id.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Ok(false);
    }
    match std::fs::symlink_metadata(Path::new("/proc/self/task").join(id)) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        // Cannot tell: refused.
        Err(_) => Err(Errno::EACCES),
    }
}

/// What the kernel says `fd` is (its path, when it has one).
fn real_path(fd: BorrowedFd<'_>) -> Result<PathBuf, Errno> {
    nix::fcntl::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str())
        .map(|path| PathBuf::from(OsString::from_vec(path.into_vec())))
        .map_err(|_| Errno::EACCES)
}

/// Device (the kernel's internal encoding, as `sock_diag` reports it) and
/// inode of a file.
fn kernel_identity(stat: &libc::stat) -> (u32, u64) {
    let major = libc::major(stat.st_dev);
    let minor = libc::minor(stat.st_dev);
    ((major << 20) | (minor & 0xfffff), stat.st_ino)
}

/// (device, inode) of every pathname socket bound in this network
/// namespace: the sandbox's own, since a restricted sandbox has its own.
fn sandbox_socket_inodes() -> Result<Vec<(u32, u64)>, Errno> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UNIX_DIAG_VFS: u16 = 1;
    let replies = sys::dump_unix_sockets().map_err(|_| Errno::EACCES)?;
    let mut found = Vec::new();
    let u16_at = |bytes: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_ne_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
    };
    let u32_at = |bytes: &[u8], at: usize| -> Option<u32> {
        let slice = bytes.get(at..at + 4)?;
        Some(u32::from_ne_bytes([slice[0], slice[1], slice[2], slice[3]]))
    };
    for reply in &replies {
        let mut offset = 0;
        while let (Some(len), Some(kind)) = (u32_at(reply, offset), u16_at(reply, offset + 4)) {
            let len = len as usize;
            if len < 16 || offset + len > reply.len() {
                break;
            }
            if kind == SOCK_DIAG_BY_FAMILY {
                let message = &reply[offset..offset + len];
                // nlmsghdr (16) + unix_diag_msg (16), then attributes.
                let mut attribute = 32;
                while let (Some(attribute_len), Some(attribute_kind)) =
                    (u16_at(message, attribute), u16_at(message, attribute + 2))
                {
                    let attribute_len = usize::from(attribute_len);
                    if attribute_len < 4 {
                        break;
                    }
                    if attribute_kind == UNIX_DIAG_VFS {
                        if let (Some(inode), Some(device)) = (
                            u32_at(message, attribute + 4),
                            u32_at(message, attribute + 8),
                        ) {
                            found.push((device, u64::from(inode)));
                        }
                    }
                    attribute += (attribute_len + 3) & !3;
                }
            }
            offset += (len + 3) & !3;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncreatable_paths_skip_explicit_grants() {
        let roots = [PathBuf::from("/w"), PathBuf::from("/w/.agents")];
        let supervision = Supervision::new(false, &roots, &[], None);
        assert_eq!(
            supervision.uncreatable,
            [
                PathBuf::from("/w/.execgate"),
                PathBuf::from("/w/.agents/.agents"),
                PathBuf::from("/w/.agents/.execgate"),
            ]
        );
        // A repository's top only where asked, and only at a writable root.
        let roots = [PathBuf::from("/w"), PathBuf::from("/tmp")];
        let asked = [PathBuf::from("/tmp"), PathBuf::from("/r")];
        let supervision = Supervision::new(false, &roots, &asked, None);
        assert_eq!(
            supervision.uncreatable,
            [
                PathBuf::from("/w/.agents"),
                PathBuf::from("/w/.execgate"),
                PathBuf::from("/tmp/.agents"),
                PathBuf::from("/tmp/.execgate"),
                PathBuf::from("/tmp/.git"),
            ]
        );
    }

    #[test]
    fn paths_under_a_directory_are_split_off() {
        assert_eq!(
            strip_dir(b"/proc/self/fd/3", b"/proc/self"),
            Some(&b"/fd/3"[..])
        );
        assert_eq!(strip_dir(b"/proc/self", b"/proc/self"), Some(&b""[..]));
        assert_eq!(strip_dir(b"/proc/selfish", b"/proc/self"), None);
        assert_eq!(relative_rest(b"//a/b").unwrap().as_bytes(), b"a/b");
        assert_eq!(relative_rest(b"").unwrap().as_bytes(), b".");
    }

    #[test]
    fn the_notifying_filter_notifies() {
        let supervision = Supervision::new(true, &[PathBuf::from("/w")], &[], None);
        let program = notifying_program(&supervision).unwrap();
        assert!(program
            .iter()
            .any(|instruction| instruction.k == libc::SECCOMP_RET_USER_NOTIF));
    }
}
