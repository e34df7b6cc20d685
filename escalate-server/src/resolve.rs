//! From the path a request names to the file the server checked, and from
//! that file to what an escalation executes.
//!
//! The executable is opened once, and both the decision (device, inode,
//! canonical path) and the escalated exec (`execveat` on the same
//! descriptor) use that one open file, so nothing can be swapped in between.
//!
//! Paths come from the requester and are resolved in the server's own
//! mount namespace, never through a magic link (`/proc/PID/fd/N`,
//! `/proc/PID/cwd`, `/proc/PID/root`, `/proc/self/...`): those lead into
//! other namespaces (a sandbox's private `/dev/shm`, whose contents the
//! sandbox chose) and to the server's own descriptors, where a path no
//! longer names what the host sees under it. Nothing is opened for more
//! than a path (`O_PATH`) until it is known to be a regular file or a
//! directory: opening a device can act on it (a watchdog arms, a tape
//! rewinds).
//! The same holds for an escalated script (its interpreter reads it through
//! the checked descriptor, `/dev/fd/N`) and for the working directory
//! (opened when the request is read, checked against the requester's own,
//! and entered by descriptor).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use execgate_protocol::{looks_like_shell_text, parse_shebang, SHEBANG_LIMIT};
use execgate_sandbox::openat2_settled;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, AT_FDCWD};

use crate::policy::{ResolvedExecutable, WorkingDirectory};

/// Why a requested path does not name an executable the server can check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error("{path:?} is not an absolute path")]
    NotAbsolute { path: PathBuf },
    #[error("cannot open {path:?}: {source}{}", why_not_here(path, source))]
    Open { path: PathBuf, source: io::Error },
    #[error("{path:?} is not a regular file")]
    NotRegularFile { path: PathBuf },
    #[error("{path:?} is not executable")]
    NotExecutable { path: PathBuf },
    #[error("interpreter {interpreter:?} of {script:?} was not found in PATH")]
    InterpreterNotFound {
        script: PathBuf,
        interpreter: OsString,
    },
    #[error("{script:?} runs through more interpreters of interpreters than the kernel follows")]
    TooManyInterpreters { script: PathBuf },
    #[error("{script:?}: exec format error: its #! line names no interpreter")]
    NoInterpreter { script: PathBuf },
}

impl ResolveError {
    /// The status zsh ends with for the exec this stands for
    /// ([`execgate_protocol::exec_failure_status`] of the kernel's error):
    /// 127 for a file or interpreter that is not there, else 126.
    pub(crate) fn exec_status(&self) -> u8 {
        let errno = match self {
            ResolveError::Open { source, .. } => source.raw_os_error().unwrap_or(libc::EACCES),
            ResolveError::InterpreterNotFound { .. } => libc::ENOENT,
            ResolveError::TooManyInterpreters { .. } => libc::ELOOP,
            ResolveError::NoInterpreter { .. } => libc::ENOEXEC,
            ResolveError::NotAbsolute { .. }
            | ResolveError::NotRegularFile { .. }
            | ResolveError::NotExecutable { .. } => libc::EACCES,
        };
        execgate_protocol::exec_failure_status(errno)
    }
}

/// What to add to a message about `path` that the server could not open
/// where a sandbox could: its `/dev` and `/run` are its own, and a
/// `/proc` link to a process's files is one the server never follows
/// (the kernel's "too many levels of symbolic links" says it poorly; in
/// a sandbox's own `/proc`, looked up from outside, `self` is no
/// process there: "no such file").
fn why_not_here(path: &Path, error: &io::Error) -> &'static str {
    if path.starts_with("/dev") || path.starts_with("/run") {
        " (a sandbox has its own /dev and /run, which execgate does not see from \
         outside: run programs from the workspace or the temporary directory)"
    } else if path.starts_with("/proc")
        && matches!(error.raw_os_error(), Some(libc::ELOOP | libc::ENOENT))
    {
        " (a /proc link to a process's root, directory or descriptors, which execgate \
         does not follow: run the program by its own path)"
    } else {
        ""
    }
}

/// Why a sandboxed requester's executable cannot be checked from outside
/// its sandbox: it lies in the sandbox's own `/dev` (a tmpfs of bubblewrap's
/// making, whose `/dev/shm` the sandbox can write), where the host's file
/// of the same name, if any, is another file. `path` as requested and
/// `canonical` as the server resolved it (a link in the workspace to
/// `/dev/shm/x` resolves to the host's).
pub(crate) fn sandbox_own_path(path: &Path, canonical: &Path) -> Option<String> {
    [path, canonical]
        .into_iter()
        .find(|each| each.starts_with("/dev"))
        .map(|inside| {
            format!(
                "{} is in the sandbox's own /dev, which execgate does not see from outside: \
                 run programs from the workspace or the temporary directory",
                inside.display()
            )
        })
}

/// An executable, opened and identified.
pub(crate) struct OpenedExecutable {
    pub(crate) file: File,
    pub(crate) resolved: ResolvedExecutable,
}

impl OpenedExecutable {
    /// The checked file, open for reading: the descriptor reopened, never
    /// the path (a regular file, so opening it does nothing else; without
    /// waiting, should someone hold a lease on it). Only an escalation
    /// reads: a `Run` never needs to.
    fn readable(&self) -> io::Result<File> {
        File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/self/fd/{}", fd_number(&self.file)))
    }

    /// The file's first bytes, for `#!` handling.
    fn head(&self) -> Vec<u8> {
        let mut head = vec![0u8; SHEBANG_LIMIT];
        let len = self
            .readable()
            .and_then(|file| file.read_at(&mut head, 0))
            .unwrap_or(0);
        head.truncate(len);
        head
    }

    /// What an interpreter reads the script through, at `/dev/fd/N`: open
    /// for reading, as perl and gawk read the descriptor itself rather
    /// than reopen the path.
    fn script(&self) -> Result<OwnedFd, ResolveError> {
        self.readable()
            .map(OwnedFd::from)
            .map_err(|source| ResolveError::Open {
                path: self.resolved.canonical_path.clone(),
                source,
            })
    }
}

/// Opens `path` for nothing but a path (`O_PATH`, close-on-exec), following
/// symbolic links but no magic link.
fn open_path(path: &Path, flags: OFlag) -> io::Result<File> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(File::from(openat2_settled(AT_FDCWD, path, how)?))
}

/// Refuses a `path` that is not absolute; otherwise makes the error for a
/// failure to open it.
fn absolute_or_refused(
    path: &Path,
) -> Result<impl Fn(io::Error) -> ResolveError + Copy + '_, ResolveError> {
    if !path.is_absolute() {
        return Err(ResolveError::NotAbsolute {
            path: path.to_owned(),
        });
    }
    Ok(move |source| ResolveError::Open {
        path: path.to_owned(),
        source,
    })
}

/// Opens `path` and identifies the file it names.
pub(crate) fn open_executable(path: &Path) -> Result<OpenedExecutable, ResolveError> {
    let open_error = absolute_or_refused(path)?;
    let file = open_path(path, OFlag::empty()).map_err(open_error)?;
    let meta = file.metadata().map_err(open_error)?;
    if !meta.is_file() {
        return Err(ResolveError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    if meta.mode() & 0o111 == 0 {
        return Err(ResolveError::NotExecutable {
            path: path.to_owned(),
        });
    }
    let canonical_path =
        std::fs::read_link(format!("/proc/self/fd/{}", fd_number(&file))).map_err(open_error)?;
    Ok(OpenedExecutable {
        resolved: ResolvedExecutable {
            requested_path: path.to_owned(),
            canonical_path,
            device: meta.dev(),
            inode: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        },
        file,
    })
}

/// The path the shell found, its directory resolved where the path climbs
/// (`..`), its last name kept: the link the program was found by, named as
/// a rule names it (`/usr/lib/../bin/awk` and `../bin/awk` run from
/// `/usr/lib` are `/usr/bin/awk`, a link a `forbidden` rule may name).
/// `None` for a path that does not climb, or whose directory the server
/// cannot open. A path that climbs is rare: a request's path costs a scan
/// of its names, and nothing more, on the way to every other decision.
pub fn climbing_path_resolved(path: &Path) -> Option<PathBuf> {
    if !path.components().any(|name| name == Component::ParentDir) {
        return None;
    }
    let name = path.file_name()?;
    let directory = open_path(path.parent()?, OFlag::O_DIRECTORY).ok()?;
    let directory = std::fs::read_link(format!("/proc/self/fd/{}", fd_number(&directory))).ok()?;
    Some(directory.join(name))
}

fn fd_number(file: &File) -> i32 {
    use std::os::fd::AsRawFd;
    file.as_raw_fd()
}

/// Opens the directory a request names, close-on-exec and for nothing but
/// `fchdir` (`O_PATH`), and checks that it is the requester's working
/// directory: the same directory (device and inode) as `/proc/PID/cwd` of
/// the process the kernel says sent the request. A path the sandbox
/// swapped, or a directory the server cannot see, is an error.
pub(crate) fn open_working_directory(
    cwd: &Path,
    requester_pid: i32,
) -> Result<(OwnedFd, WorkingDirectory), String> {
    if cwd.as_os_str().is_empty() {
        // The shell could not name it: removed, or out of its reach.
        return Err("the working directory has no name (removed?): cd to one that exists".into());
    }
    if !cwd.is_absolute() {
        return Err(format!("working directory {cwd:?} is not an absolute path"));
    }
    let directory = open_path(cwd, OFlag::O_DIRECTORY)
        .map_err(|error| format!("cannot open working directory {}: {error}", cwd.display()))?;
    let held = directory.metadata().map_err(|error| {
        format!(
            "cannot identify working directory {}: {error}",
            cwd.display()
        )
    })?;
    let actual = std::fs::metadata(format!("/proc/{requester_pid}/cwd"))
        .map_err(|error| format!("cannot identify the requester's working directory: {error}"))?;
    if (held.dev(), held.ino()) != (actual.dev(), actual.ino()) {
        return Err(format!(
            "{} is not the requester's working directory (moved, replaced, or not visible \
             outside its sandbox)",
            cwd.display()
        ));
    }
    let canonical_path = std::fs::read_link(format!("/proc/self/fd/{}", fd_number(&directory)))
        .map_err(|error| format!("cannot name working directory {}: {error}", cwd.display()))?;
    Ok((
        directory.into(),
        WorkingDirectory {
            canonical_path,
            device: held.dev(),
            inode: held.ino(),
        },
    ))
}

/// The file a sandboxed requester sees at the path it asked for.
pub(crate) struct SeenByRequester {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl SeenByRequester {
    /// Whether it is `executable`, the file the server opened at that path.
    pub(crate) fn is(&self, executable: &ResolvedExecutable) -> bool {
        (self.device, self.inode) == (executable.device, executable.inode)
    }

    /// Why a request whose file is another in the server's view is refused.
    pub(crate) fn not_this_file(&self) -> String {
        format!(
            "{} is another file outside the sandbox than inside it: a sandboxed shell can \
             only ask for the programs it sees",
            self.path.display()
        )
    }
}

/// Looks `path` up in a sandboxed requester's view: from its root
/// (`/proc/PID/root`), with links kept inside it. A request may name a
/// file that the server finds at that path and the sandbox cannot see (in
/// a directory its profile hides, under the host's `/run` beneath the
/// sandbox's own), which no shell there could have run. It fails as the
/// server's own open would, so that the answer says nothing of what the
/// host has where the sandbox sees nothing. The lookup only identifies:
/// what is decided on and run is always the file the server opens.
pub(crate) fn seen_by_requester(
    path: &Path,
    requester_pid: i32,
    requester: Option<&io::Result<OwnedFd>>,
) -> Result<SeenByRequester, ResolveError> {
    let open_error = absolute_or_refused(path)?;
    let root = nix::fcntl::open(
        format!("/proc/{requester_pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| open_error(errno.into()))?;
    // The pid named the requester when its root was opened only if the
    // requester is still there after: a pid is not taken again before its
    // process has ended (review 40: one the sandbox left could name an
    // escalated program of the host's by then).
    if let Some(pinned) = requester {
        let still_there = pinned
            .as_ref()
            .map(|pidfd| !crate::sys::has_ended(pidfd.as_fd()));
        if !matches!(still_there, Ok(true)) {
            return Err(open_error(io::Error::from_raw_os_error(libc::ESRCH)));
        }
    }
    let inside = path.strip_prefix("/").unwrap_or(path);
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let seen = openat2_settled(root.as_fd(), inside, how)
        .map_err(io::Error::from)
        .and_then(|file| File::from(file).metadata())
        .map_err(open_error)?;
    Ok(SeenByRequester {
        path: path.to_owned(),
        device: seen.dev(),
        inode: seen.ino(),
    })
}

/// What an escalation executes: a checked binary and its argv.
pub(crate) struct LaunchPlan {
    pub(crate) executable: OwnedFd,
    pub(crate) argv: Vec<OsString>,
    /// The scripts the interpreters read through their checked
    /// descriptors (the command's first, then an interpreter that is a
    /// script itself): each must be open, inheritable, at the number
    /// `argv` names it by.
    pub(crate) scripts: Vec<(OwnedFd, RawFd)>,
}

/// The most scripts one exec runs through, the command's included: as
/// many as the kernel follows (`ELOOP` past them; review 43).
const MOST_SCRIPTS: usize = 5;

/// Where a launch plan finds `#!` interpreters.
pub(crate) struct InterpreterLookup<'a> {
    /// Where the command's own relative interpreter is looked up when the
    /// working directory has none, as zsh does (an inner script's is the
    /// kernel's: from `cwd` alone).
    pub(crate) search_path: &'a OsStr,
    /// The escalation's working directory.
    pub(crate) cwd: &'a Path,
    /// The sandboxed requester whose view every interpreter must be seen
    /// in (its pid), for an escalation that runs in its sandbox: one its
    /// profile hides is not there for it (review 43).
    pub(crate) seen_by: Option<i32>,
}

/// Turns the checked file into what the kernel would have run for it.
///
/// A binary runs through its descriptor. A `#!` script runs through its
/// interpreter (when relative, found from the working directory, then in
/// `search_path`, as zsh does), which is
/// opened and checked the same way, and reads the script through the
/// descriptor the decision was made on, as `/dev/fd/{script_number}` (what
/// the kernel does for `execveat` on a script): never re-opened by path,
/// where it could have been replaced since. The script's `$0` is that name.
/// An interpreter that is a `#!` script itself runs through its own, as
/// the kernel follows them (probe 195), reading itself the same way at the
/// next number. A text file without `#!` runs under `/bin/sh` the same
/// way, as zsh would run it. A binary's `argv[0]` is its canonical path.
pub(crate) fn launch_plan(
    opened: OpenedExecutable,
    argv: &[OsString],
    lookup: &InterpreterLookup<'_>,
    script_number: RawFd,
) -> Result<LaunchPlan, ResolveError> {
    let script = opened.resolved.canonical_path.clone();
    let mut scripts = Vec::new();
    // What follows the program's name: the command's arguments, with each
    // script and its `#!` line's argument put before them as it is passed.
    let mut tail: Vec<OsString> = argv.iter().skip(1).cloned().collect();
    let mut program_name = None;
    let mut current = opened;
    loop {
        let head = current.head();
        let Some(shebang) = parse_shebang(&head) else {
            // The kernel refuses a `#!` naming nothing (ENOEXEC), and so
            // does zsh: it is no text for `/bin/sh` (probe 139: it ran so,
            // unsandboxed).
            if head.starts_with(b"#!") {
                return Err(ResolveError::NoInterpreter {
                    script: current.resolved.canonical_path.clone(),
                });
            }
            break;
        };
        let path_of_script = current.resolved.canonical_path.clone();
        if scripts.len() == MOST_SCRIPTS {
            return Err(ResolveError::TooManyInterpreters {
                script: script.clone(),
            });
        }
        let interpreter = if Path::new(&shebang.interpreter).is_absolute() {
            open_seen(Path::new(&shebang.interpreter), lookup.seen_by)?
        } else if !scripts.is_empty() {
            // An inner script's: the kernel's alone, from the directory.
            open_seen(&lookup.cwd.join(&shebang.interpreter), lookup.seen_by)?
        } else {
            // The command's own: the kernel's from the directory, then, as
            // zsh does when that finds nothing, each directory of `PATH`;
            // each where the requester sees it (review 44).
            std::iter::once(lookup.cwd.to_owned())
                .chain(std::env::split_paths(lookup.search_path).filter(|dir| dir.is_absolute()))
                .find_map(|dir| open_seen(&dir.join(&shebang.interpreter), lookup.seen_by).ok())
                .ok_or_else(|| ResolveError::InterpreterNotFound {
                    script: path_of_script,
                    interpreter: shebang.interpreter.clone(),
                })?
        };
        let number = script_number + scripts.len() as RawFd;
        scripts.push((current.script()?, number));
        let by_descriptor = OsString::from(format!("/dev/fd/{number}"));
        tail = shebang
            .argument
            .into_iter()
            .chain(std::iter::once(by_descriptor))
            .chain(tail)
            .collect();
        program_name = Some(shebang.interpreter);
        current = interpreter;
    }
    if let Some(name) = program_name {
        // The last interpreter, as its `#!` line named it; the kernel
        // refuses one that is neither a binary nor a script (ENOEXEC).
        return Ok(LaunchPlan {
            executable: current.file.into(),
            argv: std::iter::once(name).chain(tail).collect(),
            scripts,
        });
    }
    let head = current.head();
    if !head.starts_with(b"\x7fELF") && looks_like_shell_text(&head) {
        let shell = open_seen(Path::new("/bin/sh"), lookup.seen_by)?;
        scripts.push((current.script()?, script_number));
        let by_descriptor = OsString::from(format!("/dev/fd/{script_number}"));
        let new_argv = [OsString::from("sh"), by_descriptor]
            .into_iter()
            .chain(tail)
            .collect();
        return Ok(LaunchPlan {
            executable: shell.file.into(),
            argv: new_argv,
            scripts,
        });
    }
    // argv[0] is the canonical path, not what the request said: programs
    // that dispatch on their name (git's `git-upload-pack`, busybox)
    // would otherwise run what the rules never saw.
    let argv = std::iter::once(script.into_os_string())
        .chain(tail)
        .collect();
    Ok(LaunchPlan {
        executable: current.file.into(),
        argv,
        scripts,
    })
}

/// Opens the interpreter at `path`, which must be the file the sandboxed
/// requester `seen_by` sees there, if any: else it is not there, as for
/// a program run in place.
fn open_seen(path: &Path, seen_by: Option<i32>) -> Result<OpenedExecutable, ResolveError> {
    // The requester's view first: where it sees nothing, the answer says
    // nothing of what the host has there (review 44: "not executable",
    // "not a regular file" told a hidden path apart from a missing one).
    let seen = seen_by
        .map(|pid| seen_by_requester(path, pid, None))
        .transpose()?;
    let opened = open_executable(path)?;
    match seen {
        Some(seen) if !seen.is(&opened.resolved) => Err(ResolveError::Open {
            path: path.to_owned(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        }),
        _ => Ok(opened),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{climbing_path_resolved, open_working_directory};

    /// Probe 238: only a path that climbs is resolved, and only its
    /// directory: the link it ends in is kept.
    #[test]
    fn a_path_that_climbs_has_its_directory_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("real/bin")).unwrap();
        std::os::unix::fs::symlink("real", base.join("linked")).unwrap();
        std::os::unix::fs::symlink("/bin/true", base.join("real/bin/tool")).unwrap();
        let cases = [
            ("real/bin/tool", None),
            ("real/bin/../bin/tool", Some("real/bin/tool")),
            ("linked/bin/../bin/tool", Some("real/bin/tool")),
            ("real/bin/..", None),
            ("missing/../bin/tool", None),
        ];
        for (path, resolved) in cases {
            assert_eq!(
                climbing_path_resolved(&base.join(path)),
                resolved.map(|resolved| base.join(resolved)),
                "{path}"
            );
        }
    }

    /// Review 44: how deep scripts of scripts are followed, and where an
    /// inner script's relative interpreter is found (the kernel's way).
    #[test]
    fn scripts_of_scripts_are_followed_as_the_kernel_follows_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        let write = |name: &str, text: String| {
            let path = cwd.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        // s0 runs under /bin/sh; each sN under s(N-1).
        write("s0", "#!/bin/sh\n".into());
        for level in 1..6 {
            write(
                &format!("s{level}"),
                format!("#!{}\n", cwd.join(format!("s{}", level - 1)).display()),
            );
        }
        write("relative-inner", "#!cat\n".into());
        write(
            "outer-of-relative",
            format!("#!{}\n", cwd.join("relative-inner").display()),
        );
        write("own-relative", "#!s0\n".into());
        let lookup = super::InterpreterLookup {
            search_path: std::ffi::OsStr::new("/usr/bin:/bin"),
            cwd: &cwd,
            seen_by: None,
        };
        let plan = |name: &str| {
            let opened = super::open_executable(&cwd.join(name)).unwrap();
            super::launch_plan(opened, &[name.into()], &lookup, 10)
        };
        // Five scripts (s4 down to s0) run; six do not.
        assert_eq!(plan("s4").unwrap().scripts.len(), 5);
        let too_deep = plan("s5").err().unwrap();
        assert!(matches!(
            too_deep,
            super::ResolveError::TooManyInterpreters { .. }
        ));
        assert_eq!(too_deep.exec_status(), 127);
        // An inner `#!cat` is looked for in the directory, not in `PATH`.
        let relative = plan("outer-of-relative").err().unwrap();
        assert_eq!(relative.exec_status(), 127, "{relative}");
        // The command's own relative interpreter: the directory's first.
        let own = plan("own-relative").unwrap();
        assert_eq!(own.scripts.len(), 2);
        assert_eq!(own.argv[0], "/bin/sh");
    }

    #[test]
    fn a_working_directory_is_held_only_when_it_is_the_requesters() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let own = std::env::current_dir().unwrap();
        assert_ne!(own, Path::new("/"), "the test needs a cwd other than /");
        let (_, held) = open_working_directory(&own, pid).unwrap();
        assert_eq!(held.canonical_path, std::fs::canonicalize(&own).unwrap());
        let error = open_working_directory(Path::new("/"), pid).unwrap_err();
        assert!(
            error.contains("is not the requester's working directory"),
            "{error}"
        );
        let error = open_working_directory(Path::new("relative"), pid).unwrap_err();
        assert!(error.contains("not an absolute path"), "{error}");
        let error = open_working_directory(Path::new("/no/such/dir-execgate"), pid).unwrap_err();
        assert!(error.contains("cannot open"), "{error}");
    }
}
