//! The inner stage, run by bubblewrap inside the view: it checks that no
//! capability is left, sets no-new-privs, adds Landlock as a second layer
//! and a seccomp filter, then executes the target. Any failure to confine
//! stops here with exit status 126: the target never runs half-confined.
//! A target that cannot be executed in the finished sandbox is reported as
//! a shell reports it (126, or 127 when nothing by its name is there).
//!
//! When something must be decided per call (a restricted network, writable
//! roots, deny globs), it first forks the supervisor (`supervisor.rs`). As
//! the pid namespace's init (bubblewrap's `--as-pid-1`) it forks in any
//! case: the parent stays init, with nothing to watch, and the target,
//! which as init would ignore every signal it has no handler for, is not.
//!
//! On x86-64, a first filter fails every x32 system call (call numbers with
//! bit 30 set) with ENOSYS: x32 shares the x86-64 audit architecture, so
//! the other filters, which match x86-64 numbers, would let them all pass.
//!
//! `execgate-sandbox-helper [--read PATH]... [--write PATH]...
//! [--no-repository-at PATH]... [--deny-glob GLOB]... [--glob-root PATH]... [--restrict-network |
//! --limited-network FD [--allow-unix-socket PATH]...] ([--exec-fd N] --
//! ARGV0 ARGS... | --spare FD)`
//!
//! With `--spare`, the helper confines itself first, then takes its
//! command from the socket `FD` (`spare.rs`).
//!
//! With a limited network, the view's network namespace is as empty as a
//! restricted one's, but for loopback. The helper listens there on
//! `127.0.0.1` and hands that listening socket, over the inherited socket
//! `FD`, to execgate's proxy outside, which then accepts the sandbox's
//! connections itself: no process of the sandbox relays them, and nothing
//! in the sandbox can reach the proxy's side. The proxy variables that
//! ordinary tools read point at that address.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use landlock::{
    Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::doctor::{REQUIRED_LANDLOCK_ABI, SCOPES_LANDLOCK_ABI};
use super::proxy_link;
use super::spare;
use super::supervisor::{self, DenyGlobs, Supervision};
use super::sys;

/// Exit status when the sandbox cannot be completed (as for a command that
/// cannot be executed).
pub const SETUP_FAILED: u8 = 126;

#[derive(Debug, Default)]
struct HelperArgs {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    /// Writable roots where no `.git` may be made.
    no_repository_at: Vec<PathBuf>,
    restrict_network: bool,
    /// `Some(None)`: limited, but the launcher had no link to a proxy.
    limited_network: Option<Option<RawFd>>,
    /// Paths and the (device, inode) they had on the host.
    allowed_unix_sockets: Vec<(PathBuf, (u64, u64))>,
    deny_globs: Vec<String>,
    glob_roots: Vec<PathBuf>,
    exec_fd: Option<RawFd>,
    /// A spare's control socket: the command comes from there.
    spare: Option<RawFd>,
    /// For a sandbox started with its command: where to say, as a spare
    /// does on its control socket, that the command died of a signal, or
    /// did not run (see `spare::reported_end`).
    report: Option<RawFd>,
    /// Paths that must be the file (device, inode) the policy was resolved
    /// on.
    checks: Vec<(PathBuf, (u64, u64))>,
    /// A sandbox on the caller's terminal: the supervisor guards its
    /// foreground, and the jobs hung up at the shell's end are given time
    /// to end.
    job_control: bool,
    argv: Vec<OsString>,
}

/// A descriptor number given as `name`'s value.
fn parse_fd(name: &str, value: OsString) -> Result<RawFd, String> {
    value
        .to_str()
        .and_then(|fd| fd.parse().ok())
        .ok_or(format!("bad {name}"))
}

/// `DEV:INO`.
fn parse_identity(text: &std::ffi::OsStr) -> Option<(u64, u64)> {
    let (device, inode) = text.to_str()?.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<HelperArgs, String> {
    let mut parsed = HelperArgs::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.to_str() {
            Some("--read") => parsed.read.push(value("--read")?.into()),
            Some("--write") => parsed.write.push(value("--write")?.into()),
            Some("--no-repository-at") => parsed
                .no_repository_at
                .push(value("--no-repository-at")?.into()),
            Some("--restrict-network") => parsed.restrict_network = true,
            Some("--job-control") => parsed.job_control = true,
            Some("--limited-network") => {
                let link = value("--limited-network")?;
                parsed.limited_network = Some(match link.to_str() {
                    Some("none") => None,
                    link => Some(
                        link.and_then(|fd| fd.parse().ok())
                            .ok_or("bad --limited-network")?,
                    ),
                });
            }
            Some("--allow-unix-socket") => {
                let path = PathBuf::from(value("--allow-unix-socket")?);
                let identity = parse_identity(&value("--allow-unix-socket")?)
                    .ok_or("bad --allow-unix-socket identity")?;
                parsed.allowed_unix_sockets.push((path, identity));
            }
            Some("--deny-glob") => {
                let glob = value("--deny-glob")?;
                let glob = glob.to_str().ok_or("a deny glob is not UTF-8")?;
                parsed.deny_globs.push(glob.to_owned());
            }
            Some("--glob-root") => parsed.glob_roots.push(value("--glob-root")?.into()),
            Some("--check") => {
                let path = PathBuf::from(value("--check")?);
                let identity = parse_identity(&value("--check")?).ok_or("bad --check identity")?;
                parsed.checks.push((path, identity));
            }
            Some("--exec-fd") => parsed.exec_fd = Some(parse_fd("--exec-fd", value("--exec-fd")?)?),
            Some("--spare") => parsed.spare = Some(parse_fd("--spare", value("--spare")?)?),
            Some("--report-fd") => {
                parsed.report = Some(parse_fd("--report-fd", value("--report-fd")?)?);
            }
            Some("--") => {
                parsed.argv = args.collect();
                break;
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if parsed.spare.is_some() && parsed.report.is_some() {
        return Err("a spare reports on its control socket".into());
    }
    match (&parsed.spare, parsed.argv.is_empty()) {
        (None, true) => return Err("no program to run".into()),
        (Some(_), false) => return Err("a spare takes its program from its order".into()),
        _ => {}
    }
    Ok(parsed)
}

/// The helper binary's whole life. Returns only on failure.
pub fn helper_main() -> std::process::ExitCode {
    // Where to say that the command will not run, once there is one: a
    // spare's control socket once it has taken its order, or the report
    // socket of a sandbox started with its command. The server recorded
    // the command's start already.
    let mut report = None;
    let Err(failure) = parse(std::env::args_os().skip(1))
        .map_err(Failure::Confine)
        .and_then(|args| confine_and_exec(&args, &mut report));
    // SIGPIPE was set back to its default for the target: a closed stderr
    // must not turn this report into a death by signal.
    let _ = sys::ignore_signal(nix::sys::signal::Signal::SIGPIPE);
    if let Some(report) = &report {
        match &failure {
            Failure::Confine(reason) => spare::say_not_run(report, reason),
            Failure::Execute { errno, .. } => spare::say_exec_failed(report, *errno as i32),
        }
    }
    match failure {
        Failure::Confine(reason) => {
            eprintln!("execgate: cannot enforce the sandbox: {reason}; nothing was run");
            std::process::ExitCode::from(SETUP_FAILED)
        }
        // The sandbox stands; the program is what failed, reported as a
        // shell reports it.
        Failure::Execute {
            program,
            errno: nix::Error::ENOENT,
            absent: true,
        } => {
            // Named by whoever asked for it: escaped, it cannot move the
            // cursor or start a line that passes for another.
            let program = program.to_string_lossy().escape_debug().to_string();
            if program.contains('/') {
                eprintln!("execgate: {program}: No such file or directory");
            } else {
                eprintln!("execgate: command not found: {program}");
            }
            std::process::ExitCode::from(NOT_FOUND)
        }
        Failure::Execute {
            program,
            errno: nix::Error::ENOENT,
            ..
        } => {
            eprintln!(
                "execgate: cannot execute {}: its interpreter or loader is not in the sandbox \
                 (No such file or directory); a profile reads the system's programs and \
                 libraries with `extends = \"read-only\"` or `\":minimal\" = \"read\"`",
                program.to_string_lossy().escape_debug()
            );
            std::process::ExitCode::from(NOT_FOUND)
        }
        Failure::Execute { program, errno, .. } => {
            eprintln!(
                "execgate: cannot execute {}: {}",
                program.to_string_lossy().escape_debug(),
                errno.desc()
            );
            std::process::ExitCode::from(execgate_protocol::exec_failure_status(errno as i32))
        }
    }
}

/// Exit status when the program is not found (as a shell's).
const NOT_FOUND: u8 = 127;

/// Why the helper did not become its target.
enum Failure {
    /// The sandbox could not be completed.
    Confine(String),
    /// The sandbox is in place, and executing the target failed.
    Execute {
        program: std::ffi::OsString,
        errno: nix::Error,
        /// Nothing by its name is there (looked up as the exec did, in
        /// `PATH` unless it has a slash); not for a target given as a
        /// descriptor.
        absent: bool,
    },
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::Confine(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Failure {
        Failure::Confine(reason.to_owned())
    }
}

fn confine_and_exec(
    args: &HelperArgs,
    report: &mut Option<std::os::fd::OwnedFd>,
) -> Result<std::convert::Infallible, Failure> {
    // First: any failure after this is said on it.
    if let Some(fd) = args.report {
        *report = Some(take_report(fd)?);
    }
    require_no_capabilities()?;
    require_same_files(&args.checks)?;
    let network = match args.limited_network {
        Some(link) => {
            let link =
                link.ok_or("a limited network needs execgate's proxy, and none was linked")?;
            SocketFilter::Limited {
                proxy: proxy_link::hand_over_listener(link)?,
            }
        }
        None if args.restrict_network => SocketFilter::UnixOnly,
        None => SocketFilter::Host,
    };
    nix::sys::prctl::set_no_new_privs().map_err(|errno| format!("no_new_privs: {errno}"))?;
    apply_landlock(args)?;
    refuse_x32()?;
    let deny = if args.deny_globs.is_empty() {
        None
    } else {
        Some(DenyGlobs::new(&args.deny_globs, args.glob_roots.clone())?)
    };
    let mut supervision = Supervision::new(
        network.confines_connect(),
        &args.write,
        &args.no_repository_at,
        deny,
    );
    supervision.allow_sockets(socket_identities(&args.allowed_unix_sockets)?);
    if args.job_control {
        supervision.guard_terminal();
    }
    supervision.know_own_network(supervisor::OwnNetwork {
        cookie: own_network_cookie(),
        makes_inet: matches!(network, SocketFilter::Limited { .. }),
    });
    // A sandbox started for an escalated program executes the file the
    // server checked, or takes it from its order.
    let sandbox_of = match args.spare.or(args.exec_fd) {
        Some(_) => supervisor::SandboxOf::Escalation,
        None => supervisor::SandboxOf::Shell,
    };
    if supervision.is_needed() {
        let program = supervisor::notifying_program(&supervision)?;
        // The parent serves and never comes back here.
        let hand_over =
            supervisor::fork_supervisor(supervision, sandbox_of, args.spare.or(args.report))?;
        // First, while the seccomp() call is still allowed: the filter
        // installed after it forbids new listeners.
        let listener = sys::install_notifying_filter(&program)
            .map_err(|errno| format!("seccomp listener: {errno}"))?;
        apply_seccomp(&network, Supervised::Yes)?;
        hand_over.send(listener)?;
    } else {
        if nix::unistd::getpid().as_raw() == 1 {
            // As the pid namespace's init (bubblewrap's `--as-pid-1`), the
            // target would ignore every signal it has no handler for, and
            // take in every orphan. A parent stays init instead: it reaps
            // and exits as the target does, as a supervisor with nothing to
            // watch.
            drop(supervisor::fork_supervisor(
                supervision,
                sandbox_of,
                args.spare.or(args.report),
            )?);
        }
        apply_seccomp(&network, Supervised::No)?;
    }
    let (argv, inherited_env, exec_fd, inheritance) = match args.spare {
        Some(control) => {
            let order = spare::take_order(control, report)?;
            (
                order.argv,
                order.env,
                Some(order.exec_fd),
                Some(order.inheritance),
            )
        }
        // Started for its command: what it inherited is the requester's,
        // with the loader's variables carried past bubblewrap and this
        // helper's start under their names again.
        None => (
            args.argv.clone(),
            super::carried::restore(std::env::vars_os()),
            args.exec_fd,
            None,
        ),
    };
    let program = argv[0].clone();
    let argv: Vec<CString> = argv
        .into_iter()
        .map(|arg| CString::new(arg.into_vec()))
        .collect::<Result<_, _>>()
        .map_err(|_| "an argument contains a NUL byte".to_owned())?;
    let proxy = match &network {
        SocketFilter::Limited { proxy } => Some(proxy.as_str()),
        SocketFilter::UnixOnly | SocketFilter::Host => None,
    };
    let env: Vec<CString> = proxy_link::environment(inherited_env.into_iter(), proxy)
        .into_iter()
        .filter_map(|(name, value)| {
            let mut entry = name.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            CString::new(entry).ok()
        })
        .collect();
    sys::stop_ignoring_startup_signals();
    if let Some(inheritance) = inheritance {
        inheritance
            .apply()
            .map_err(|error| format!("cannot take the requester's umask and limits: {error}"))?;
    }
    let errno = match exec_fd {
        Some(fd) => sys::execute_inherited_fd(fd, &argv, &env),
        None => match nix::unistd::execvpe(&argv[0], &argv, &env) {
            Ok(never) => match never {},
            Err(errno) => errno,
        },
    };
    let absent =
        exec_fd.is_none() && errno == nix::Error::ENOENT && !exists_in_path(&program, &env);
    Err(Failure::Execute {
        program,
        errno,
        absent,
    })
}

/// The report descriptor `fd` the launcher passed, closed by the exec of
/// the command: it is the helper's alone.
fn take_report(fd: RawFd) -> Result<std::os::fd::OwnedFd, String> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let report = sys::take_inherited(fd).map_err(|errno| format!("--report-fd {fd}: {errno}"))?;
    fcntl(&report, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|errno| format!("--report-fd {fd}: {errno}"))?;
    Ok(report)
}

/// The cookie of the sandbox's network namespace, read from a socket made
/// here; `None` where the kernel cannot say.
fn own_network_cookie() -> Option<u64> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;
    let probe = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    sys::network_cookie(probe.as_fd()).ok()
}

/// Whether a file named `program` exists where `execvpe` looked for it:
/// the name itself when it has a slash, else each directory of the
/// environment's `PATH` (or the C library's default). An empty name names
/// nothing (joined to a directory, it would name the directory).
fn exists_in_path(program: &std::ffi::OsStr, env: &[CString]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if program.is_empty() {
        return false;
    }
    if program.as_bytes().contains(&b'/') {
        return std::path::Path::new(program).exists();
    }
    let path = env
        .iter()
        .find_map(|entry| entry.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"/bin:/usr/bin");
    path.split(|&byte| byte == b':').any(|dir| {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        std::path::Path::new(std::ffi::OsStr::from_bytes(dir))
            .join(program)
            .exists()
    })
}

/// What `socket()` may make.
enum SocketFilter {
    /// The host's network: anything.
    Host,
    /// A restricted network: Unix stream sockets only.
    UnixOnly,
    /// A limited network: also inet sockets, which can only reach loopback,
    /// where the proxy listens at `proxy` (`127.0.0.1:PORT`).
    Limited { proxy: String },
}

impl SocketFilter {
    /// Whether `connect` goes through the supervisor (pathname Unix sockets
    /// of the host are refused unless allowed).
    fn confines_connect(&self) -> bool {
        !matches!(self, SocketFilter::Host)
    }
}

/// (device, inode) of each allowed host socket, which the view must show
/// at its path as the very socket the policy was resolved on.
fn socket_identities(sockets: &[(PathBuf, (u64, u64))]) -> Result<Vec<(u64, u64)>, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    sockets
        .iter()
        .map(|(path, identity)| {
            let meta = std::fs::symlink_metadata(path)
                .map_err(|error| format!("allowed socket {}: {error}", path.display()))?;
            if !meta.file_type().is_socket() || (meta.dev(), meta.ino()) != *identity {
                return Err(format!(
                    "allowed socket {} is not the socket the policy was resolved on",
                    path.display()
                ));
            }
            Ok(*identity)
        })
        .collect()
}

/// The view must hold the files the policy was resolved on: a path swapped
/// for a symlink (or another directory) since then was mounted from
/// somewhere else, and nothing may run in that view.
pub(crate) fn require_same_files(checks: &[(PathBuf, (u64, u64))]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for (path, (device, inode)) in checks {
        let meta = std::fs::metadata(path)
            .map_err(|error| format!("{} is missing from the view: {error}", path.display()))?;
        if (meta.dev(), meta.ino()) != (*device, *inode) {
            return Err(format!(
                "{} is no longer the file or directory the policy was made for (replaced or moved since; a session started now takes the new one)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// bubblewrap was told to drop every capability; check that it did, so a
/// root-started sandbox never runs with privileges.
fn require_no_capabilities() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|error| format!("cannot read /proc/self/status: {error}"))?;
    for field in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        let value = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .map(str::trim)
            .ok_or(format!("no {field} in /proc/self/status"))?;
        if u64::from_str_radix(value, 16) != Ok(0) {
            return Err(format!(
                "capabilities left inside the sandbox ({field} {value})"
            ));
        }
    }
    Ok(())
}

fn apply_landlock(args: &HelperArgs) -> Result<(), String> {
    let abi = sys::landlock_abi().unwrap_or(0);
    if abi < REQUIRED_LANDLOCK_ABI {
        return Err(format!(
            "Landlock ABI {abi} is below the required {REQUIRED_LANDLOCK_ABI}"
        ));
    }
    let fs_abi = ABI::V3;
    let landlock_error = |error: &dyn std::fmt::Display| format!("Landlock: {error}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(fs_abi))
        .map_err(|e| landlock_error(&e))?;
    if abi >= SCOPES_LANDLOCK_ABI {
        ruleset = ruleset
            .scope(Scope::from_all(ABI::V6))
            .map_err(|e| landlock_error(&e))?;
    }
    let mut created = ruleset.create().map_err(|e| landlock_error(&e))?;
    let grants = args
        .read
        .iter()
        .map(|path| (path.as_path(), AccessFs::from_read(fs_abi)))
        .chain(
            args.write
                .iter()
                .map(|path| (path.as_path(), AccessFs::from_all(fs_abi))),
        )
        .chain([
            (std::path::Path::new("/dev"), AccessFs::from_all(fs_abi)),
            (std::path::Path::new("/proc"), AccessFs::from_read(fs_abi)),
        ]);
    for (path, mut access) in grants {
        let is_dir = path.is_dir();
        let fd =
            PathFd::new(path).map_err(|e| format!("Landlock rule for {}: {e}", path.display()))?;
        if !is_dir {
            access &= AccessFs::from_file(fs_abi);
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("Landlock rule for {}: {e}", path.display()))?;
    }
    let status = created.restrict_self().map_err(|e| landlock_error(&e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("Landlock is only {:?}", status.ruleset));
    }
    Ok(())
}

/// Whether a supervisor answers some calls, and what the filter must then
/// add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Supervised {
    No,
    Yes,
}

/// Denies what the mount view and Landlock cannot: kernel interfaces that
/// reach other processes' memory or make sockets without `socket()`, the
/// user's keyrings, detached copies of mounts (the new mount API), terminal
/// requests that act outside the sandbox,
/// out-of-band data (`MSG_OOB`), and,
/// with a restricted network, every socket family but AF_UNIX and datagram
/// sockets (a Unix one reaches a host socket by `sendto`, without the
/// `connect` the supervisor checks), and `sendto` with an address. A
/// limited network also allows inet
/// stream sockets, and still no datagram or raw ones: UDP (DNS included)
/// and raw packets have nowhere to go but the proxy, which does not take
/// them. No set-user-ID or set-group-ID bit (`set_id_bit_rules`), and no
/// `openat2` (ENOSYS). Under a supervisor, no new seccomp listener (a
/// later filter's listener would receive the calls first and could let
/// them through).
fn apply_seccomp(network: &SocketFilter, supervised: Supervised) -> Result<(), String> {
    let seccomp_error = |error: &dyn std::fmt::Display| format!("seccomp: {error}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for syscall in [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        // The kernel keeps keyrings per uid, which the sandbox shares with
        // its user: linked by serial number into the sandbox's own, a host
        // key reads; one added outlives the session; `request_key` has the
        // host run `/sbin/request-key` (a name lookup, say) for it.
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        // A detached copy of a mount (in a user namespace of its own): a
        // directory in it has a path the supervisor cannot read back
        // (`/` for the workspace), so its checks by path passed what they
        // refuse (probe 170: a late deny-glob file read, `.agents` made,
        // the workspace's parent moved). `mount` itself Landlock refuses.
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fspick,
    ] {
        // An empty rule list matches every call.
        rules.insert(syscall, Vec::new());
    }
    // Typing into the terminal's input queue would run commands outside
    // the sandbox, in whatever reads the terminal next; a line discipline
    // set on it (`N_NULL`) would outlive the sandbox and leave the caller's
    // terminal deaf and mute, past what `stty sane` repairs; so would
    // exclusive mode, where every later open of it but root's fails (a
    // password prompt's, an editor's).
    let mut ioctl_rules = Vec::new();
    // The request's type differs between C libraries (`c_ulong` in glibc,
    // `c_int` in musl); both numbers are small and positive.
    for request in [
        libc::TIOCSTI,
        libc::TIOCLINUX,
        libc::TIOCSETD,
        libc::TIOCEXCL,
    ] {
        #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
        let request = u64::try_from(request)
            .map_err(|_| seccomp_error(&format!("ioctl request {request} is negative")))?;
        let is_request =
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
                .map_err(|e| seccomp_error(&e))?;
        ioctl_rules.push(SeccompRule::new(vec![is_request]).map_err(|e| seccomp_error(&e))?);
    }
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    // Out-of-band data: on a Unix stream socket, a byte that an ordinary
    // read skips and drops, with the descriptors it carries, closing them
    // in the reader's thread. Sent on a request socket, that reader is the
    // escalation server, and a descriptor whose close waits (a lingering
    // TCP socket) would hold it. TCP's urgent data goes with it.
    for (syscall, flags_argument) in [
        (libc::SYS_sendto, 3),
        (libc::SYS_sendmsg, 2),
        (libc::SYS_sendmmsg, 3),
    ] {
        let out_of_band = SeccompCondition::new(
            flags_argument,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::MSG_OOB as u64),
            libc::MSG_OOB as u64,
        )
        .map_err(|e| seccomp_error(&e))?;
        rules.insert(
            syscall,
            vec![SeccompRule::new(vec![out_of_band]).map_err(|e| seccomp_error(&e))?],
        );
    }
    let mut set_id = set_id_bit_rules(false).map_err(|e| seccomp_error(&e))?;
    if supervised == Supervised::No {
        set_id.extend(set_id_bit_rules(true).map_err(|e| seccomp_error(&e))?);
    }
    for (syscall, rules_of_call) in set_id {
        rules.entry(syscall).or_default().extend(rules_of_call);
    }
    if network.confines_connect() {
        // A datagram sent to an address given with the call goes where it
        // says, on a socket made outside and handed in (probe 189), which
        // `connect`'s check never sees; the sockets made here have no use
        // for one (a Unix stream socket refuses it, and a limited
        // network's inet sockets are TCP). `sendmsg`'s address lies behind
        // a pointer, which no filter reads.
        // An address of length 0 is none (review 40).
        let to_an_address = [(4, SeccompCmpArgLen::Qword), (5, SeccompCmpArgLen::Dword)]
            .into_iter()
            .map(|(argument, length)| {
                SeccompCondition::new(argument, length, SeccompCmpOp::Ne, 0)
                    .map_err(|e| seccomp_error(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules
            .entry(libc::SYS_sendto)
            .or_default()
            .push(SeccompRule::new(to_an_address).map_err(|e| seccomp_error(&e))?);
        let limited = matches!(network, SocketFilter::Limited { .. });
        for syscall in [libc::SYS_socket, libc::SYS_socketpair] {
            // Allowed families: Unix, and for a limited network inet (its
            // namespace only has loopback, where the proxy listens).
            let allowed: &[i32] = if limited && syscall == libc::SYS_socket {
                &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6]
            } else {
                &[libc::AF_UNIX]
            };
            let mut socket_rules = Vec::new();
            let others = allowed
                .iter()
                .map(|family| {
                    SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Ne,
                        *family as u64,
                    )
                    .map_err(|e| seccomp_error(&e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            socket_rules.push(SeccompRule::new(others).map_err(|e| seccomp_error(&e))?);
            // AF_UNIX SOCK_RAW is a datagram socket too. The type argument
            // carries SOCK_NONBLOCK / SOCK_CLOEXEC above the type bits.
            const SOCK_TYPE_MASK: u64 = 0xf;
            for kind in [libc::SOCK_DGRAM, libc::SOCK_RAW] {
                let is_datagram = SeccompCondition::new(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK),
                    kind as u64,
                )
                .map_err(|e| seccomp_error(&e))?;
                socket_rules
                    .push(SeccompRule::new(vec![is_datagram]).map_err(|e| seccomp_error(&e))?);
            }
            if limited && syscall == libc::SYS_socket {
                socket_rules.extend(inet_beyond_tcp().map_err(|e| seccomp_error(&e))?);
            }
            rules.insert(syscall, socket_rules);
        }
    }
    if supervised == Supervised::Yes {
        let new_listener = SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER),
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        )
        .map_err(|e| seccomp_error(&e))?;
        rules.insert(
            libc::SYS_seccomp,
            vec![SeccompRule::new(vec![new_listener]).map_err(|e| seccomp_error(&e))?],
        );
        // The supervisor opens files on the program's behalf from the
        // sandbox's root: after a `chroot` of the program's own (in a user
        // namespace it made) it would open the sandbox's files where the
        // program means its jail's (probe 154). Refused, plainly, instead.
        rules.insert(libc::SYS_chroot, Vec::new());
    }
    // `openat2`'s flags and mode lie behind a pointer, which no filter
    // reads: a created file's set-ID bits, and with a supervisor the
    // creations it watches, would pass unseen. Programs take ENOSYS for an
    // older kernel and fall back to `openat`.
    apply_errno_filter(libc::SYS_openat2, libc::ENOSYS)?;
    let program = compile_filter(rules, SeccompAction::Errno(libc::EPERM as u32))?;
    seccompiler::apply_filter(&program).map_err(|e| seccomp_error(&e))
}

/// Rules matching calls that would give a file the set-user-ID or
/// set-group-ID bit: `chmod` and its kin (`mode_changes`), and files
/// created with either bit (`open` and `openat` with `O_CREAT` or
/// `O_TMPFILE`, `creat`, `mknod`). The sandbox's own mounts are `nosuid`,
/// the host's are not: a session run as root made a set-user-ID root
/// program in its workspace that any user of the machine could then run as
/// root. The sandbox holds no capability, so its files are only ever its
/// own user's to mark. (`openat2`, whose mode the filter cannot read, is
/// refused apart.) A filter cannot tell a directory, where the bits are
/// harmless and inherited, from a file: under a supervisor the mode
/// changes go to it (`supervisor::chmod`), which lets directories have
/// them; without one they are refused.
pub(crate) fn set_id_bit_rules(
    mode_changes: bool,
) -> Result<Vec<(i64, Vec<SeccompRule>)>, seccompiler::BackendError> {
    let set_id_bits = [libc::S_ISUID as u64, libc::S_ISGID as u64];
    let arg =
        |index, op, value: u64| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    // A rule per bit (a filter cannot test "any of these bits" at once),
    // each with `creating`'s conditions too.
    let with_bits = |mode_argument: u8, creating: &[(u8, u64)]| {
        set_id_bits
            .iter()
            .map(|&bit| {
                let mut conditions = vec![arg(mode_argument, SeccompCmpOp::MaskedEq(bit), bit)?];
                for &(index, flag) in creating {
                    conditions.push(arg(index, SeccompCmpOp::MaskedEq(flag), flag)?);
                }
                SeccompRule::new(conditions)
            })
            .collect::<Result<Vec<_>, _>>()
    };
    if mode_changes {
        let mut rules = vec![
            (libc::SYS_fchmod, with_bits(1, &[])?),
            (libc::SYS_fchmodat, with_bits(2, &[])?),
            (libc::SYS_fchmodat2, with_bits(2, &[])?),
        ];
        #[cfg(target_arch = "x86_64")]
        rules.push((libc::SYS_chmod, with_bits(1, &[])?));
        return Ok(rules);
    }
    // The mode of `open` is read only with these flags: without them the
    // register holds whatever the caller left there.
    let creations = |flags_argument: u8, mode_argument: u8| {
        let mut rules = with_bits(mode_argument, &[(flags_argument, libc::O_CREAT as u64)])?;
        rules.extend(with_bits(
            mode_argument,
            &[(flags_argument, libc::O_TMPFILE as u64)],
        )?);
        Ok::<_, seccompiler::BackendError>(rules)
    };
    let mut rules = vec![
        (libc::SYS_mknodat, with_bits(2, &[])?),
        (libc::SYS_openat, creations(2, 3)?),
    ];
    // The calls newer architectures left out.
    #[cfg(target_arch = "x86_64")]
    rules.extend([
        (libc::SYS_creat, with_bits(1, &[])?),
        (libc::SYS_mknod, with_bits(1, &[])?),
        (libc::SYS_open, creations(1, 2)?),
    ]);
    Ok(rules)
}

/// Rules matching inet sockets other than TCP streams: the other socket
/// types (the datagram and raw ones are refused for every family already)
/// and any protocol but 0 and TCP (SCTP streams, for one), which would only
/// widen the kernel code a limited sandbox reaches.
fn inet_beyond_tcp() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    const SOCK_TYPE_MASK: u64 = 0xf;
    // The obsolete packet type (libc deprecates its name), which the kernel
    // turns into a packet socket.
    const SOCK_PACKET: i32 = 10;
    let arg =
        |index, op, value: u64| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    let mut matched = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let is_family = || arg(0, SeccompCmpOp::Eq, family as u64);
        for kind in [
            libc::SOCK_RDM,
            libc::SOCK_SEQPACKET,
            libc::SOCK_DCCP,
            SOCK_PACKET,
        ] {
            matched.push(SeccompRule::new(vec![
                is_family()?,
                arg(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), kind as u64)?,
            ])?);
        }
        matched.push(SeccompRule::new(vec![
            is_family()?,
            arg(2, SeccompCmpOp::Ne, 0)?,
            arg(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64)?,
        ])?);
    }
    Ok(matched)
}

/// A filter for this machine's architecture that lets every call through
/// but those `rules` match, which get `on_match`.
pub(crate) fn compile_filter(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_match: SeccompAction,
) -> Result<BpfProgram, String> {
    let seccomp_error = |error: &dyn std::fmt::Display| format!("seccomp: {error}");
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| seccomp_error(&e))?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, arch)
        .map_err(|e| seccomp_error(&e))?;
    filter.try_into().map_err(|e| seccomp_error(&e))
}

/// Installs the x32 refusal (before every other filter, the supervisor's
/// included). Where x32 does not exist, there is nothing to refuse.
fn refuse_x32() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        seccompiler::apply_filter(&x32_refusing_program())
            .map_err(|error| format!("seccomp (x32 refusal): {error}"))?;
    }
    Ok(())
}

/// `AUDIT_ARCH_X86_64` (linux/audit.h: `EM_X86_64`, 64-bit, little-endian;
/// not in libc).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// `__X32_SYSCALL_BIT` (asm/unistd.h): set in every x32 call number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A filter that fails every x32 call with ENOSYS (what a kernel without
/// x32 answers) and kills a process calling with another architecture than
/// x86-64 (i386 through `int 0x80`), as the other filters do. seccompiler
/// cannot say "every number from N up", so it is written out: ERRNO takes
/// precedence over USER_NOTIF and ALLOW whatever the filters' order, so an
/// x32 `open` or `connect` never reaches the supervisor either.
#[cfg(target_arch = "x86_64")]
fn x32_refusing_program() -> BpfProgram {
    let statement = |code: u32, k: u32| seccompiler::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| seccompiler::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load_word = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let arch_offset = std::mem::offset_of!(libc::seccomp_data, arch) as u32;
    let nr_offset = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
    let ret = libc::BPF_RET | libc::BPF_K;
    vec![
        statement(load_word, arch_offset),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH_X86_64,
            1,
            0,
        ),
        statement(ret, libc::SECCOMP_RET_KILL_PROCESS),
        statement(load_word, nr_offset),
        jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            X32_SYSCALL_BIT,
            0,
            1,
        ),
        statement(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        statement(ret, libc::SECCOMP_RET_ALLOW),
    ]
}

/// A filter of its own for a call that fails with another errno than EPERM
/// (seccompiler gives one filter one action).
fn apply_errno_filter(syscall: i64, errno: i32) -> Result<(), String> {
    let seccomp_error = |error: &dyn std::fmt::Display| format!("seccomp: {error}");
    let rules = BTreeMap::from([(syscall, Vec::new())]);
    let program = compile_filter(rules, SeccompAction::Errno(errno as u32))?;
    seccompiler::apply_filter(&program).map_err(|e| seccomp_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_command_line_the_launcher_builds() {
        let args = [
            "--read",
            "/usr",
            "--write",
            "/w",
            "--restrict-network",
            "--exec-fd",
            "7",
            "--",
            "ls",
            "-l",
        ];
        let parsed = parse(args.iter().map(OsString::from)).unwrap();
        assert_eq!(parsed.read, [PathBuf::from("/usr")]);
        assert_eq!(parsed.write, [PathBuf::from("/w")]);
        assert!(parsed.restrict_network);
        assert_eq!(parsed.exec_fd, Some(7));
        assert_eq!(parsed.argv, [OsString::from("ls"), OsString::from("-l")]);
        for bad in [
            &["--read"][..],
            &["--"][..],
            &["--bogus", "--", "x"][..],
            &["--exec-fd", "x", "--", "y"][..],
        ] {
            assert!(parse(bad.iter().map(OsString::from)).is_err(), "{bad:?}");
        }
    }

    /// Runs a classic-BPF seccomp program on one call, as the kernel does,
    /// for the instructions these filters use (load a word of
    /// `seccomp_data`, compare with a constant, return a constant).
    #[cfg(target_arch = "x86_64")]
    fn run_filter(program: &[seccompiler::sock_filter], arch: u32, nr: u32) -> u32 {
        let word_at = |offset: u32| match offset as usize {
            offset if offset == std::mem::offset_of!(libc::seccomp_data, nr) => nr,
            offset if offset == std::mem::offset_of!(libc::seccomp_data, arch) => arch,
            other => panic!("the program reads seccomp_data at {other}"),
        };
        let mut accumulator = 0u32;
        let mut pc = 0usize;
        loop {
            let instruction = &program[pc];
            let code = u32::from(instruction.code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    accumulator = word_at(instruction.k);
                }
                c if c == libc::BPF_RET | libc::BPF_K => return instruction.k,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K
                    || c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K =>
                {
                    let taken = if c & 0xf0 == libc::BPF_JEQ {
                        accumulator == instruction.k
                    } else {
                        accumulator >= instruction.k
                    };
                    pc += usize::from(if taken {
                        instruction.jt
                    } else {
                        instruction.jf
                    });
                }
                other => panic!("unexpected BPF instruction {other:#x}"),
            }
        }
    }

    /// The kernel on this machine has no x32 (CONFIG_X86_X32_ABI unset), so
    /// an x32 call fails with ENOSYS with or without the filter: what the
    /// filter decides is checked by running its program on the calls.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_calls_fail_with_enosys_and_x86_64_calls_pass() {
        let program = x32_refusing_program();
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let x86_64 = AUDIT_ARCH_X86_64;
        let i386 = 0x4000_0003;
        let cases = [
            (x86_64, libc::SYS_getpid as u32),
            (x86_64, libc::SYS_openat as u32),
            (x86_64, X32_SYSCALL_BIT - 1),
            (x86_64, X32_SYSCALL_BIT | libc::SYS_openat as u32),
            (x86_64, X32_SYSCALL_BIT | libc::SYS_connect as u32),
            (x86_64, X32_SYSCALL_BIT),
            (x86_64, u32::MAX),
            (i386, 5),
        ];
        let decided: Vec<u32> = cases
            .iter()
            .map(|&(arch, nr)| run_filter(&program, arch, nr))
            .collect();
        let allow = libc::SECCOMP_RET_ALLOW;
        assert_eq!(
            decided,
            [
                allow,
                allow,
                allow,
                enosys,
                enosys,
                enosys,
                enosys,
                libc::SECCOMP_RET_KILL_PROCESS
            ]
        );
    }
}
