//! Where a session's processes are kept, so that all of them can be killed:
//! when the session is dropped or cancelled, and when the process that owns
//! the server dies without dropping anything (`SIGKILL`, a crash).
//!
//! Two mechanisms, chosen once per process:
//!
//! - **cgroup** (cgroup v2, a hierarchy this process may write to: root, or
//!   a delegated subtree): the server makes `execgate-PID` beside itself in
//!   its own cgroup, one child cgroup per session, and below that one per
//!   command ([`CommandCgroup`]). A command's shell joins its cgroup, and
//!   the escalations its processes ask for are started in it (`clone3`
//!   with `CLONE_INTO_CGROUP`, or join it by a write where the kernel
//!   cannot), all before they execute; sandboxes kept ready ahead of their
//!   command start in the session's. `cgroup.kill` then reaches every
//!   process of a command, or of the session, however it left its process
//!   group or session.
//! - **process groups** (anything else): the server tells the warden the
//!   process group of every escalated child it has not reaped. A process
//!   that leaves its group (`setsid`) is not reached when the owner dies.
//!
//! Either way a warden process watches the server (the exec wrapper started
//! with `--warden`, see `exec-wrapper/src/warden.rs`): it holds the read end
//! of a pipe whose only write end the server holds, and when that closes
//! (or the server's pidfd says it has ended) it kills what is left. `EXECGATE_SCOPE=cgroup` makes a missing cgroup an
//! error; `EXECGATE_SCOPE=process-groups` chooses the fallback.
//!
//! This module must never let a session start without a warden, and never
//! tell the warden about a group after its leader has been reaped (its
//! number could then name an unrelated process).

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use execgate_protocol::{WardenRecord, WARDEN_FLAG};
use nix::fcntl::OFlag;
use nix::sys::wait::{waitid, Id, WaitPidFlag};

use crate::sys::{self, SpawnPlan};

/// The variable that chooses the mechanism: `cgroup`, `process-groups`, or
/// unset (a cgroup where possible).
pub const ENV_SCOPE: &str = "EXECGATE_SCOPE";

/// How a process's sessions are kept killable, as [`scope_support`]
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeSupport {
    /// Sessions get cgroups below this directory.
    Cgroup(PathBuf),
    /// Only process groups, and why no cgroup.
    ProcessGroups {
        why: String,
        /// The machine offers cgroups, but a limit refused one
        /// (`cgroup.max.descendants`, `cgroup.max.depth`, memory): the
        /// fallback was not chosen, and a user should hear of it.
        limited: bool,
    },
    /// Neither, as [`ENV_SCOPE`] asks: sessions refuse to start, and why.
    Refused(String),
}

/// Why this process's sessions get no cgroup.
#[derive(Debug, Clone)]
struct NoCgroup {
    why: String,
    limited: bool,
}

impl NoCgroup {
    fn chosen() -> NoCgroup {
        NoCgroup {
            why: format!("{ENV_SCOPE}=process-groups"),
            limited: false,
        }
    }

    fn because(why: impl Into<String>) -> NoCgroup {
        NoCgroup {
            why: why.into(),
            limited: false,
        }
    }

    fn support(self) -> ScopeSupport {
        ScopeSupport::ProcessGroups {
            why: self.why,
            limited: self.limited,
        }
    }
}

/// Why a session's scope could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    #[error("cannot start the warden ({wrapper}): {source}")]
    Warden { wrapper: PathBuf, source: io::Error },
    #[error("{ENV_SCOPE}=cgroup, but no cgroup can be made: {0}")]
    CgroupRequired(String),
    #[error("cannot make the session's cgroup {path}: {source}")]
    SessionCgroup { path: PathBuf, source: io::Error },
    #[error("{ENV_SCOPE} must be `cgroup` or `process-groups`, not {0:?}")]
    BadSetting(String),
}

/// This process's warden and the cgroup (if any) its sessions live in.
struct Warden {
    /// The write end of the warden's pipe; the warden sees end of file when
    /// this process is gone.
    pipe: OwnedFd,
    cgroup: Result<PathBuf, NoCgroup>,
    pid: i32,
    /// Readable once the warden has exited, whoever reaps it.
    pidfd: OwnedFd,
}

impl Warden {
    fn alive(&self) -> bool {
        !crate::sys::has_ended(self.pidfd.as_fd())
    }
}

static WARDEN: Mutex<Option<Arc<Warden>>> = Mutex::new(None);

/// The pid of this process's warden, if one was started: a child of this
/// process that must be left alone (it ends by itself when we do, after
/// removing the sessions' cgroups).
pub fn warden_pid() -> Option<i32> {
    WARDEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|warden| warden.pid)
}

/// What this process uses, or would use, to scope its sessions: the
/// cgroup it made, or the one it could make now (made and removed again).
pub fn scope_support() -> ScopeSupport {
    if let Some(warden) = WARDEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        return match &warden.cgroup {
            Ok(path) => ScopeSupport::Cgroup(path.clone()),
            Err(no_cgroup) => no_cgroup.clone().support(),
        };
    }
    // As a session would choose (probe 163: a setting sessions refuse was
    // reported as a cgroup).
    match choose_cgroup() {
        Ok(Ok(path)) => {
            let _ = std::fs::remove_dir(&path);
            ScopeSupport::Cgroup(path)
        }
        Ok(Err(no_cgroup)) => no_cgroup.support(),
        Err(refused) => ScopeSupport::Refused(refused.to_string()),
    }
}

/// One session's part: its cgroup, or the warden to tell about groups.
pub(crate) struct Scope {
    warden: Arc<Warden>,
    cgroup: Option<Arc<Cgroup>>,
    /// The commands' cgroups below the session's.
    commands: Arc<Mutex<Commands>>,
    /// Whether the session has said that a command got no cgroup.
    told_no_command_cgroup: std::sync::atomic::AtomicBool,
    /// The session cgroup's path as `/proc/PID/cgroup` names it, to find
    /// whose command an asker is.
    relative: Option<String>,
    commands_made: std::sync::atomic::AtomicU64,
    /// Who wants the session frozen: the cgroup is frozen while anyone
    /// does.
    holds: std::sync::Mutex<FreezeHolds>,
}

/// The reasons a session is frozen, each held on its own: a job stopped
/// or sent to the background, and an approval asked on its terminal. One
/// letting go never thaws what the other still holds.
#[derive(Debug, Default, Clone, Copy)]
struct FreezeHolds {
    job: bool,
    asking: usize,
}

impl FreezeHolds {
    fn any(self) -> bool {
        self.job || self.asking > 0
    }

    /// The holds once `reason` has come.
    fn after(mut self, reason: FreezeReason) -> FreezeHolds {
        match reason {
            FreezeReason::Job(frozen) => self.job = frozen,
            FreezeReason::Asking(true) => self.asking += 1,
            FreezeReason::Asking(false) => self.asking = self.asking.saturating_sub(1),
        }
        self
    }
}

/// Why [`Scope::hold`] is called.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FreezeReason {
    /// The owner follows a terminal job ([`crate::Session::freeze`]).
    Job(bool),
    /// A question on the terminal starts (`true`) or ends (`false`).
    Asking(bool),
}

/// A cgroup a process can be started in, or join.
pub(crate) struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, open for writing: a process joins by writing `0`.
    procs: OwnedFd,
    /// The cgroup's directory, for starting children in it
    /// (`CLONE_INTO_CGROUP`) rather than moving them there.
    handle: OwnedFd,
}

impl Cgroup {
    /// Makes the cgroup `dir` and opens what a process needs to join it.
    fn make(dir: PathBuf) -> io::Result<Cgroup> {
        std::fs::create_dir(&dir)?;
        let open = |path: &Path, flags: OFlag| {
            nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).map_err(io::Error::from)
        };
        let opened = open(
            &dir.join("cgroup.procs"),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        )
        .and_then(|procs| {
            let handle = open(
                &dir,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            )?;
            Ok((procs, handle))
        });
        match opened {
            Ok((procs, handle)) => Ok(Cgroup { dir, procs, handle }),
            Err(error) => {
                let _ = std::fs::remove_dir(&dir);
                Err(error)
            }
        }
    }

    /// The descriptor a new process writes `0` to, to join the cgroup.
    pub(crate) fn procs(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// The cgroup's directory, for `CLONE_INTO_CGROUP`: a child started in
    /// the cgroup need not be moved there, and a move waits for an RCU
    /// grace period (3-4 ms per sandboxed escalation measured,
    /// BENCHMARKS.md).
    pub(crate) fn handle(&self) -> RawFd {
        self.handle.as_raw_fd()
    }

    fn kill(&self) -> io::Result<()> {
        std::fs::write(self.dir.join("cgroup.kill"), "1")
    }
}

/// The cgroups of a session's commands.
#[derive(Default)]
struct Commands {
    /// By name, while their [`CommandCgroup`] lives: an escalation its
    /// command asks for starts in it.
    live: std::collections::HashMap<String, std::sync::Weak<Cgroup>>,
    /// Those whose removal the kernel refused, tried again as each command
    /// starts: what a command left still runs there, or was killed and
    /// had not yet exited (probe 208: one killed command in five left an
    /// empty cgroup until the session ended).
    left: Vec<PathBuf>,
}

impl Commands {
    /// Removes the cgroups left that have emptied since.
    fn remove_emptied(&mut self) {
        self.left.retain(|dir| {
            std::fs::remove_dir(dir).is_err_and(|error| error.raw_os_error() == Some(libc::EBUSY))
        });
    }
}

/// One command's cgroup, below its session's: its shell joins it before it
/// executes, and the escalations its processes ask for start in it. So
/// [`CommandCgroup::kill`] reaches every process of the command, however it
/// left its parent, process group or session, and whether escalated or not
/// (probe 206: without a sandbox's pid namespace, a daemon a command left
/// and the child an escalated program put in a session of its own outlived
/// the command's stop, its timeout and its kill, until the session ended).
///
/// Dropping the last clone removes the cgroup if it is empty; what a
/// command left running stays in it, and goes with the session. Clones
/// share the one cgroup.
#[derive(Clone)]
pub struct CommandCgroup(Arc<CommandCgroupInner>);

struct CommandCgroupInner {
    cgroup: Arc<Cgroup>,
    name: String,
    /// Its path as `/proc/PID/cgroup` names it.
    relative: Option<String>,
    commands: Arc<Mutex<Commands>>,
}

impl std::fmt::Debug for CommandCgroup {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_tuple("CommandCgroup")
            .field(&self.0.cgroup.dir)
            .finish()
    }
}

impl CommandCgroup {
    /// Kills every process in the command's cgroup at once, as the kernel
    /// does for `cgroup.kill`: a process forking meanwhile takes its child
    /// with it. Fails where the cgroup cannot be written.
    pub fn kill(&self) -> io::Result<()> {
        self.0.cgroup.kill()
    }

    /// The key of the command among `commands` whose cgroup, or one below
    /// it, holds the process `pid` now: the command that process is part
    /// of, whatever its parents, process group or session.
    pub fn holding<'a, K>(
        pid: i32,
        commands: impl IntoIterator<Item = (K, &'a CommandCgroup)>,
    ) -> Option<K> {
        let mut commands = commands.into_iter().peekable();
        commands.peek()?;
        let its = cgroup_of(pid)?;
        commands
            .find(|(_, command)| command.holds(&its))
            .map(|(key, _)| key)
    }

    /// Whether the cgroup `path` (as `/proc/PID/cgroup` names it) is the
    /// command's, or one below it.
    fn holds(&self, path: &str) -> bool {
        let Some(own) = self.0.relative.as_deref() else {
            return false;
        };
        path.strip_prefix(own)
            .is_some_and(|below| below.is_empty() || below.starts_with('/'))
    }

    pub(crate) fn cgroup(&self) -> &Arc<Cgroup> {
        &self.0.cgroup
    }
}

/// The cgroup v2 of the process `pid`, as `/proc/PID/cgroup` names it.
fn cgroup_of(pid: i32) -> Option<String> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    own.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

impl Drop for CommandCgroupInner {
    fn drop(&mut self) {
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        commands.live.remove(&self.name);
        // Refused (`EBUSY`) while a process the command left runs, or one
        // killed is still exiting: tried again later, and the session's
        // end kills what is left and removes the cgroup.
        if let Err(error) = std::fs::remove_dir(&self.cgroup.dir) {
            if error.raw_os_error() == Some(libc::EBUSY) {
                commands.left.push(self.cgroup.dir.clone());
            }
        }
    }
}

impl Scope {
    /// The scope for a new session, starting this process's warden first if
    /// none runs.
    pub(crate) fn new(session_id: &str, wrapper: &Path) -> Result<Scope, ScopeError> {
        let warden = warden(wrapper)?;
        let cgroup = match &warden.cgroup {
            Ok(parent) => {
                let dir = parent.join(format!("session-{session_id}"));
                match Cgroup::make(dir.clone()) {
                    Ok(cgroup) => Some(Arc::new(cgroup)),
                    Err(source) => return Err(ScopeError::SessionCgroup { path: dir, source }),
                }
            }
            Err(_) => None,
        };
        let relative = cgroup.as_ref().and_then(|cgroup| {
            let relative = cgroup.dir.strip_prefix(cgroup2_mount()?).ok()?;
            Some(format!("/{}", relative.to_str()?))
        });
        Ok(Scope {
            warden,
            cgroup,
            commands: Arc::default(),
            told_no_command_cgroup: std::sync::atomic::AtomicBool::new(false),
            relative,
            commands_made: std::sync::atomic::AtomicU64::new(0),
            holds: std::sync::Mutex::default(),
        })
    }

    /// The session's cgroup, which its spares and whatever no command
    /// asked for join.
    pub(crate) fn cgroup(&self) -> Option<&Arc<Cgroup>> {
        self.cgroup.as_ref()
    }

    /// A cgroup of its own for a command of the session, below the
    /// session's. `None` without a session cgroup, or when the kernel
    /// refuses one more (`cgroup.max.descendants`, `cgroup.max.depth`):
    /// the command then joins the session's, and is stopped by its
    /// processes as without a cgroup; the first refusal is a warning.
    pub(crate) fn command_cgroup(&self) -> Option<CommandCgroup> {
        let session = self.cgroup.as_ref()?;
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_emptied();
        let number = self
            .commands_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("command-{number}");
        let cgroup = Cgroup::make(session.dir.join(&name))
            .inspect_err(|error| {
                let first = !self
                    .told_no_command_cgroup
                    .swap(true, std::sync::atomic::Ordering::Relaxed);
                if first {
                    tracing::warn!(
                        cgroup = %session.dir.display(),
                        %error,
                        "no cgroup of its own for a command (a limit on cgroups?): it joins its \
                         session's, and a stop, a timeout or a kill reaches only its processes' \
                         tree and group; what left both (setsid) runs on until the session ends"
                    );
                } else {
                    tracing::debug!(%error, "no cgroup for a command; it joins its session's");
                }
            })
            .ok()?;
        let cgroup = Arc::new(cgroup);
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live
            .insert(name.clone(), Arc::downgrade(&cgroup));
        Some(CommandCgroup(Arc::new(CommandCgroupInner {
            cgroup,
            relative: self
                .relative
                .as_ref()
                .map(|relative| format!("{relative}/{name}")),
            name,
            commands: self.commands.clone(),
        })))
    }

    /// Where an escalation the process `requester` asked for starts: in
    /// the cgroup of the command it belongs to, when that command's
    /// [`CommandCgroup`] still lives; else the session's.
    pub(crate) fn cgroup_for(&self, requester: i32) -> Option<Arc<Cgroup>> {
        let session = self.cgroup.as_ref()?;
        let command = self.relative.as_deref().and_then(|relative| {
            let path = cgroup_of(requester)?;
            // Its command's, or one below it (probe 208: where the cgroup
            // file system can be written, a process may make one).
            let below = path.strip_prefix(relative)?.strip_prefix('/')?;
            let name = below.split('/').next()?;
            self.commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .live
                .get(name)?
                .upgrade()
        });
        Some(command.unwrap_or_else(|| session.clone()))
    }

    /// The warden's pipe, when the warden must be told each escalated
    /// child's group (no cgroup): the child writes its own record before it
    /// executes, so no window is left between its start and the record.
    pub(crate) fn warden_pipe(&self) -> Option<RawFd> {
        match self.cgroup {
            Some(_) => None,
            None => Some(self.warden.pipe.as_raw_fd()),
        }
    }

    /// Whether an escalated child may start: not once the warden has gone
    /// (killed from outside), since nothing would then kill the child if
    /// this process died.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.warden.alive() {
            return Ok(());
        }
        Err(format!(
            "the session's warden (pid {}) has gone, so nothing would end an escalated child \
             if this process died: escalations are refused in this session (a new session \
             starts a new warden)",
            self.warden.pid
        ))
    }

    /// Tells the warden that the group `pgid` leads is about to be reaped.
    pub(crate) fn untrack(&self, pgid: i32) {
        if self.cgroup.is_none() {
            let record = WardenRecord::Untrack(pgid).encode();
            // One write of fewer than PIPE_BUF bytes: whole or not at all.
            let _ = nix::unistd::write(&self.warden.pipe, &record);
        }
    }

    /// Freezes every process in the session's cgroup while any reason
    /// holds, thaws it once none does; `false` when the session has none.
    pub(crate) fn hold(&self, reason: FreezeReason) -> io::Result<bool> {
        let Some(cgroup) = &self.cgroup else {
            return Ok(false);
        };
        let mut holds = self
            .holds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let wanted = holds.after(reason);
        let written = if wanted.any() != holds.any() {
            std::fs::write(
                cgroup.dir.join("cgroup.freeze"),
                if wanted.any() { "1" } else { "0" },
            )
        } else {
            Ok(())
        };
        // A hold let go of is gone even if the thaw failed: counted on, it
        // would keep every later thaw from being written.
        let letting_go = matches!(
            reason,
            FreezeReason::Job(false) | FreezeReason::Asking(false)
        );
        if written.is_ok() || letting_go {
            *holds = wanted;
        }
        written.map(|()| true)
    }

    /// Waits (up to `limit`) until every process of the session's cgroup
    /// is frozen: writing `cgroup.freeze` only starts it. `false` when it
    /// is not frozen by then.
    pub(crate) fn wait_frozen(&self, limit: std::time::Duration) -> bool {
        let Some(cgroup) = &self.cgroup else {
            return false;
        };
        let deadline = std::time::Instant::now() + limit;
        loop {
            let events = std::fs::read_to_string(cgroup.dir.join("cgroup.events"));
            if events.is_ok_and(|events| events.lines().any(|line| line == "frozen 1")) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// How many processes the session's cgroup and those below it hold:
    /// its shells, escalated programs and whatever they started, however
    /// they left their process groups; not the server's own
    /// ([`is_machinery`]).
    /// `None` without a cgroup, or when its processes cannot be read.
    pub(crate) fn processes(&self, machinery: &[(u64, u64)]) -> Option<usize> {
        let cgroup = self.cgroup.as_ref()?;
        let server = file_identity(Path::new("/proc/self/exe"));
        let mut count = 0;
        for dir in execgate_protocol::cgroup_tree(&cgroup.dir).ok()? {
            match std::fs::read_to_string(dir.join("cgroup.procs")) {
                Ok(procs) => {
                    count += procs
                        .lines()
                        .filter(|pid| !is_machinery(pid, machinery, server))
                        .count();
                }
                // Removed since it was listed: its processes have exited.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return None,
            }
        }
        Some(count)
    }

    /// Kills every process in the session's cgroup (nothing without one).
    pub(crate) fn kill_all(&self) {
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.kill();
        }
    }
}

/// Whether process `pid` is the server's machinery rather than something a
/// session's command left: a process running one of `machinery` (bubblewrap
/// and the sandbox helper, by device and inode: the sandboxes themselves,
/// spares kept ready or starting among them), or a clone of this process
/// not yet executed, which runs `server`'s program and shares our memory
/// (an escalation or a spare between its clone into the cgroup and its
/// exec). A process gone meanwhile, or dying (its program already let go),
/// was killed by nobody: it counts as none.
fn is_machinery(pid: &str, machinery: &[(u64, u64)], server: Option<(u64, u64)>) -> bool {
    let Some(program) = file_identity(Path::new(&format!("/proc/{pid}/exe"))) else {
        return true;
    };
    if machinery.contains(&program) {
        return true;
    }
    if Some(program) != server {
        return false;
    }
    let Ok(pid) = pid.parse() else {
        return false;
    };
    // Only a clone of ours shares our memory; an escalated program that
    // is our binary (`execgate` escalated as a command) does not. Without
    // `kcmp`, a child of ours running our program is taken as a clone.
    match crate::sys::shares_our_memory(pid) {
        Some(shared) => shared,
        None => crate::lineage::parent_pid(pid) == i32::try_from(std::process::id()).ok(),
    }
}

/// A file's device and inode, links followed.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|file| (file.dev(), file.ino()))
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Some(cgroup) = &self.cgroup else {
            return;
        };
        let _ = cgroup.kill();
        // Killed processes leave the cgroup as they exit; what is still
        // there after a moment is left for the warden to remove.
        for _ in 0..50 {
            match execgate_protocol::remove_cgroup_tree(&cgroup.dir) {
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                _ => return,
            }
        }
    }
}

/// This process's warden, started on first use, and again if it was
/// killed (with the cgroup it had).
fn warden(wrapper: &Path) -> Result<Arc<Warden>, ScopeError> {
    let mut slot = WARDEN.lock().unwrap_or_else(PoisonError::into_inner);
    let previous_cgroup = match slot.as_ref() {
        Some(warden) if warden.alive() => return Ok(warden.clone()),
        Some(warden) => {
            // Our child, which nothing else waits for: a zombie until this
            // process ends otherwise, one more for each warden replaced
            // (probe 198). Gone already when a subreaper's loop took it.
            let _ = waitid(
                Id::PIDFd(warden.pidfd.as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            );
            Some(warden.cgroup.clone())
        }
        None => None,
    };
    let cgroup = match previous_cgroup {
        // A killed warden's cgroup, made again if it was removed.
        Some(Ok(_)) => {
            Ok(process_cgroup().map_err(|no_cgroup| ScopeError::CgroupRequired(no_cgroup.why))?)
        }
        Some(Err(no_cgroup)) => Err(no_cgroup),
        None => choose_cgroup()?,
    };
    let warden =
        start_warden(wrapper, cgroup.as_ref().ok().map(PathBuf::as_path)).map_err(|source| {
            if let Ok(cgroup) = &cgroup {
                let _ = std::fs::remove_dir(cgroup);
            }
            ScopeError::Warden {
                wrapper: wrapper.to_path_buf(),
                source,
            }
        })?;
    let (pipe, pid, pidfd) = warden;
    let warden = Arc::new(Warden {
        pipe,
        cgroup,
        pid,
        pidfd,
    });
    *slot = Some(warden.clone());
    Ok(warden)
}

/// The process's cgroup as `EXECGATE_SCOPE` asks, or why process groups.
fn choose_cgroup() -> Result<Result<PathBuf, NoCgroup>, ScopeError> {
    Ok(match std::env::var(ENV_SCOPE).as_deref() {
        Ok("process-groups") => Err(NoCgroup::chosen()),
        Ok("cgroup") => {
            Ok(process_cgroup().map_err(|no_cgroup| ScopeError::CgroupRequired(no_cgroup.why))?)
        }
        Ok(other) if !other.is_empty() => return Err(ScopeError::BadSetting(other.into())),
        _ => process_cgroup().inspect_err(|no_cgroup| {
            if no_cgroup.limited {
                tracing::warn!(why = %no_cgroup.why, "no cgroup for sessions; process groups only");
            } else {
                tracing::info!(why = %no_cgroup.why, "no cgroup for sessions; process groups only");
            }
        }),
    })
}

/// Starts the warden; returns the write end of its pipe, its pid and a
/// pidfd for it.
fn start_warden(wrapper: &Path, cgroup: Option<&Path>) -> io::Result<(OwnedFd, i32, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let executable = std::fs::File::open(wrapper)?;
    let mut argv: Vec<OsString> = vec!["execgate-warden".into(), WARDEN_FLAG.into(), "3".into()];
    if let Some(cgroup) = cgroup {
        argv.push(cgroup.as_os_str().to_owned());
    }
    let argv = argv
        .into_iter()
        .map(|arg| CString::new(arg.as_bytes()).map_err(io::Error::other))
        .collect::<io::Result<Vec<_>>>()?;
    let plan: SpawnPlan<OwnedFd> = SpawnPlan {
        executable: executable.into(),
        argv,
        env: Vec::new(),
        cwd: nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?,
        fds: vec![(read, 3)],
        niceness: 0,
        cgroup: None,
        warden_pipe: None,
        network: None,
        own_session: false,
        inheritance: None,
    };
    let pid = sys::spawn(&plan).map_err(|failure| failure.error)?;
    // The warden is our child until we die and exits only after us, unless
    // it is killed; then it stays a zombie (a pid held, nothing else) until
    // we exit or someone reaps it.
    let pidfd = sys::pidfd_open(pid)?;
    Ok((write, pid, pidfd))
}

/// Makes `execgate-PID` in this process's own cgroup v2 and checks that it
/// can be killed; the error says why not.
fn process_cgroup() -> Result<PathBuf, NoCgroup> {
    let mount =
        cgroup2_mount().ok_or_else(|| NoCgroup::because("no cgroup v2 hierarchy is mounted"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|error| NoCgroup::because(format!("cannot read /proc/self/cgroup: {error}")))?;
    let own = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| NoCgroup::because("this process is in no cgroup v2"))?;
    let parent = mount.join(own.trim_start_matches('/'));
    remove_abandoned(&parent);
    let dir = parent.join(format!("execgate-{}", std::process::id()));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            return Err(NoCgroup {
                why: format!("cannot create {}: {error}", dir.display()),
                // What the kernel answers past `cgroup.max.descendants` or
                // `cgroup.max.depth`, or short of memory.
                limited: matches!(
                    error.raw_os_error(),
                    Some(libc::EAGAIN | libc::ENOSPC | libc::ENOMEM)
                ),
            });
        }
    }
    if !dir.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&dir);
        return Err(NoCgroup::because(
            "the kernel has no cgroup.kill (Linux 5.14 or later)",
        ));
    }
    Ok(dir)
}

/// Removes the empty `execgate-PID` cgroups in `parent` of processes that
/// no longer exist: their warden was killed before it could. A cgroup that
/// still holds a process is left alone (the kernel refuses to remove it).
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("execgate-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = execgate_protocol::remove_cgroup_tree(&entry.path());
    }
}

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // `ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE ...`
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount_point = before.split_whitespace().nth(4)?;
        // Octal escapes (`\040` for a space) are rare in mount points of
        // cgroup2; one that has them is not ours to guess at.
        (!mount_point.contains('\\')).then(|| PathBuf::from(mount_point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's freeze and the questions' holds are counted apart: the end
    /// of a question never thaws a job stopped meanwhile, nor a job's
    /// `fg` a question still on the terminal.
    #[test]
    fn freeze_holds_thaw_only_once_none_is_left() {
        use FreezeReason::{Asking, Job};
        let cases: [(&[FreezeReason], bool); 6] = [
            (&[Asking(true)], true),
            (&[Asking(true), Asking(false)], false),
            (&[Asking(true), Job(true), Asking(false)], true),
            (&[Job(true), Asking(true), Job(false)], true),
            (&[Asking(true), Asking(true), Asking(false)], true),
            (&[Asking(false), Asking(true)], true),
        ];
        for (reasons, frozen) in cases {
            let holds = reasons
                .iter()
                .fold(FreezeHolds::default(), |holds, reason| holds.after(*reason));
            assert_eq!(holds.any(), frozen, "{reasons:?}");
        }
    }

    /// A clone of the server not yet executed is the server's; a child
    /// that has executed a program is not, even the server's own (an
    /// escalated `execgate`), nor one whose program is machinery.
    #[test]
    fn a_clone_before_its_exec_is_machinery() {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::{ForkResult, Pid};
        let server = file_identity(Path::new("/proc/self/exe"));
        // Killed however the test ends: a child left sleeping would hold
        // the test harness's output open. Declared after the clone's stack,
        // so dropped before it.
        struct Reaped(Pid);
        impl Drop for Reaped {
            fn drop(&mut self) {
                let _ = kill(self.0, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(self.0, None);
            }
        }
        // The clone's code: it reads nothing of ours (no closure, no
        // argument) and only sleeps until the test kills it.
        extern "C" fn sleep_until_killed(_: *mut libc::c_void) -> libc::c_int {
            loop {
                // SAFETY: pause(2) takes nothing and touches no memory.
                unsafe { libc::pause() };
            }
        }
        let mut stack = vec![0u8; 64 * 1024];
        // The stack grows down from its end, 16-byte aligned.
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
        // SAFETY: the clone shares our memory, as spawn's does until it
        // executes, on a stack of its own that outlives it (it is reaped,
        // by `_cloned`'s drop, before `stack` is dropped), and runs a
        // function that reads no memory of ours.
        let cloned = unsafe {
            libc::clone(
                sleep_until_killed,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::SIGCHLD,
                std::ptr::null_mut(),
            )
        };
        assert!(cloned > 0, "clone: {}", std::io::Error::last_os_error());
        let cloned = Pid::from_raw(cloned);
        let _cloned = Reaped(cloned);
        // SAFETY: the child only sleeps (nanosleep(2), async-signal-safe,
        // no allocation and no lock) until the test kills it.
        let forked = match unsafe { nix::unistd::fork() }.unwrap() {
            ForkResult::Child => loop {
                std::thread::sleep(std::time::Duration::from_secs(30));
            },
            ForkResult::Parent { child } => child,
        };
        let _forked = Reaped(forked);
        // spawn returns once the exec has succeeded.
        let mut executed = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // Not a case that passes by the clone having died, nor by a kernel
        // that cannot tell.
        assert_eq!(crate::sys::shares_our_memory(cloned.as_raw()), Some(true));
        assert_eq!(crate::sys::shares_our_memory(forked.as_raw()), Some(false));
        let (cloned_pid, forked_pid) = (cloned.to_string(), forked.to_string());
        let executed_pid = executed.id().to_string();
        let sleep = [file_identity(Path::new("/bin/sleep")).unwrap()];
        let none = [];
        // pid, machinery, is machinery
        let cases = [
            (cloned_pid.as_str(), &none[..], true),
            // Our program in memory of its own: as an escalated `execgate`.
            (&forked_pid, &none, false),
            (&executed_pid, &none, false),
            (&executed_pid, &sleep, true),
            ("0", &none, true),
        ];
        for (pid, machinery, expected) in cases {
            assert_eq!(is_machinery(pid, machinery, server), expected, "{pid}");
        }
        let _ = executed.kill();
        let _ = executed.wait();
    }
}
