//! Sandboxes started ahead of their escalation's command.
//!
//! A sandbox's start is mostly bubblewrap's (namespaces, mounts: about
//! 6.5 ms here), and a `TurnDefault` escalation's sandbox is the same for
//! every command of a session: the session's policy, resolved once at its
//! start. So after a session's first such escalation the server keeps
//! [`KEPT`] spares: sandboxes started, confined, and waiting on a socket
//! for their command (`execgate_sandbox::hand_order`). An escalation takes
//! one, and another starts in the background.
//!
//! A spare runs one command and ends with it: escalations share no view
//! or process, exactly as when each starts its own. With a `restricted`
//! network they share one namespace, an empty network namespace made once
//! per session ([`Spares`]): bubblewrap making one per sandbox cost about
//! a millisecond of CPU each.
//! A spare that is not ready in time, or ended before, is killed, and the
//! escalation starts its sandbox afresh (where its errors are seen).
//!
//! Any other sandboxed escalation (a `Permissions` one, the session's
//! first `TurnDefault` one, one that found no kept spare) starts a spare
//! of its own policy and hands it its command at once
//! ([`start_for_one`]): bubblewrap keeps the standard streams it was
//! started with until the sandbox ends, and a spare's are `/dev/null`, so
//! the command's pipes end when the command closes them. Only such a
//! spare may have a `limited` network: its link to the proxy belongs to
//! one sandbox. When a spare fails (before it was ready, so its errors
//! went nowhere), the command has more descriptors than an order carries,
//! or a limited network's spare cannot be linked to a proxy, the sandbox
//! is started with its command, and bubblewrap holds its streams.
//!
//! This module must never hand a spare a second command, give a kept one
//! to any escalation but a `TurnDefault` one of its own session, start one
//! in a network namespace but its own or its session's empty one (kept
//! spares only), or leave one running or unreaped after its session.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use execgate_sandbox::{NetworkPolicy, SpareOrder};
use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::conversation::c_strings;
use crate::scope::Scope;
use crate::session::Shared;
use crate::sys::{self, SpawnPlan};

/// Spares kept per session. Two, so that back-to-back escalations find
/// one ready while the one started after the last is still starting.
pub(crate) const KEPT: usize = 2;
/// How long an escalation waits for a kept spare that is still starting
/// before it starts its own sandbox instead.
const READY_WITHIN: Duration = Duration::from_secs(5);
/// How long an escalation waits for the sandbox started for it: as long
/// as a start takes (one started afresh would take as long), within
/// reason.
const ONE_READY_WITHIN: Duration = Duration::from_secs(60);
/// The helper's control socket, in bubblewrap and in the helper.
const CONTROL_FD: i32 = 3;
/// A limited network's link to the proxy, likewise.
const PROXY_LINK_FD: i32 = 4;

/// A sandbox waiting for its command.
pub(crate) struct Spare {
    /// bubblewrap's pid, the leader of the spare's process group.
    pub(crate) pid: i32,
    pub(crate) pidfd: Arc<OwnedFd>,
    control: OwnedFd,
    /// How long its order waits for it to be ready.
    ready_within: Duration,
}

/// A session's spares.
#[derive(Default)]
pub(crate) struct Spares {
    state: Mutex<State>,
    /// The empty network namespace the spares of a `restricted` policy
    /// start in (see `Launcher::spares_may_share_network` for what they
    /// then share), made at the first one's start; `None` inside when the
    /// server may not make one (without `CAP_SYS_ADMIN`), and each spare's
    /// bubblewrap makes its own as before.
    network: OnceLock<Option<OwnedFd>>,
    /// Held while killed spares are reaped, so that a caller of
    /// [`Spares::reap`] returns once every one is, whoever took it. Its
    /// own `Arc`: the reaper thread of [`Spares::reap_after_end`] lets go
    /// of the session only while it still holds it.
    reaping: Arc<Mutex<()>>,
    /// The thread of [`Spares::reap_after_end`], joined by
    /// [`Spares::reap`]: the session's state must not be let go last by
    /// it, after the session's drop has returned.
    reaper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Spare>,
    /// Groups of spares taken and being handed their command.
    handing: Vec<i32>,
    starting: usize,
    /// The session has ended: no spare is kept any more.
    closed: bool,
}

impl Spares {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The oldest spare, the most likely to be ready; none once the
    /// session has ended. Until [`Spares::handed`], closing kills it too.
    pub(crate) fn take(&self) -> Option<Spare> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let spare = state.ready.pop_front()?;
        state.handing.push(spare.pid);
        Some(spare)
    }

    /// Counts the sandbox `pid`, started for one escalation, among those
    /// being handed their command, so that closing kills it too. False
    /// once the session has ended: it must not run anything.
    fn adopt(&self, pid: i32) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.handing.push(pid);
        true
    }

    /// The spare `pid` has its command, or was discarded.
    pub(crate) fn handed(&self, pid: i32) {
        self.lock().handing.retain(|&handing| handing != pid);
    }

    /// Kills every spare, those being handed a command included; none is
    /// kept from now on.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let groups = state.ready.iter().map(|spare| spare.pid);
        for group in groups.chain(state.handing.iter().copied()) {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }

    /// Reaps the spares [`Spares::close`] killed (after any being reaped
    /// by another thread meanwhile).
    pub(crate) fn reap(&self, scope: &Scope) {
        let reaper = self
            .reaper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reaper) = reaper {
            let _ = reaper.join();
        }
        let _reaping = self.reaping.lock().unwrap_or_else(PoisonError::into_inner);
        self.reap_held(scope);
    }

    /// [`Spares::reap`], with `reaping` held by the caller.
    fn reap_held(&self, scope: &Scope) {
        let spares: Vec<Spare> = self.lock().ready.drain(..).collect();
        for spare in spares {
            reap(spare, scope);
        }
    }

    /// [`Spares::reap`] on a thread of its own, once a session has ended
    /// (its spares killed): a session cancelled and kept by its owner kept
    /// them as zombies until its drop. Without a thread, the drop reaps
    /// them.
    pub(crate) fn reap_after_end(shared: &Arc<Shared>) {
        let spares = &shared.children.spares;
        let mut reaper_slot = spares.reaper.lock().unwrap_or_else(PoisonError::into_inner);
        // One thread reaps them all: no spare is kept after the end.
        if reaper_slot.is_some() || spares.lock().ready.is_empty() {
            return;
        }
        let (reaper, reaping) = (shared.clone(), shared.children.spares.reaping.clone());
        let spawned = std::thread::Builder::new()
            .name("execgate-reaper".into())
            .spawn(move || {
                let _reaping = reaping.lock().unwrap_or_else(PoisonError::into_inner);
                reaper.children.spares.reap_held(&reaper.children.scope);
                // Before `reaping` is let go: a drop of the session waiting
                // for it then drops the session's state itself, on its own
                // thread, as it did before this thread.
                drop(reaper);
            });
        match spawned {
            Ok(reaper) => *reaper_slot = Some(reaper),
            Err(error) => {
                tracing::warn!(%error, "no thread to reap a session's spares on; its drop will")
            }
        }
    }

    /// The namespace a spare of `policy` starts in, if it is not the one
    /// bubblewrap makes.
    fn network(
        &self,
        launcher: &execgate_sandbox::Launcher,
        policy: &execgate_sandbox::ResolvedPolicy,
    ) -> Option<BorrowedFd<'_>> {
        if !launcher.spares_may_share_network(policy) {
            return None;
        }
        let made = self.network.get_or_init(|| {
            sys::empty_network()
                .inspect_err(
                    |error| tracing::debug!(%error, "spares make their own network namespaces"),
                )
                .ok()
        });
        made.as_ref().map(AsFd::as_fd)
    }

    /// How many to start now, counted as starting.
    fn reserve(&self) -> usize {
        let mut state = self.lock();
        if state.closed {
            return 0;
        }
        let wanted = KEPT.saturating_sub(state.ready.len() + state.starting);
        state.starting += wanted;
        wanted
    }

    /// Keeps a spare that has started, or gives it back killed when the
    /// session has ended since.
    fn settle(&self, started: Result<Spare, String>) -> Option<Spare> {
        let mut state = self.lock();
        state.starting -= 1;
        match started {
            Ok(spare) if !state.closed => state.ready.push_back(spare),
            Ok(spare) => {
                let _ = killpg(Pid::from_raw(spare.pid), Signal::SIGKILL);
                return Some(spare);
            }
            Err(reason) => tracing::warn!(%reason, "cannot start a spare sandbox"),
        }
        None
    }
}

/// Starts spares until the session keeps [`KEPT`], on the spawner's
/// thread (see `spawner.rs`: a sandbox dies with the thread that
/// started it). Returns at once.
pub(crate) fn replenish(shared: &Arc<Shared>) {
    for _ in 0..shared.children.spares.reserve() {
        let starter = shared.clone();
        let submitted = crate::spawner::submit(move || {
            let started = start(&starter);
            if let Some(late) = starter.children.spares.settle(started) {
                reap_elsewhere(late, &starter);
            }
        });
        if let Err(reason) = submitted {
            shared.children.spares.settle(Err(reason));
        }
    }
}

/// Reaps a killed spare on a thread of its own: called on the spawner's
/// thread, which must never wait on anything but a start, unless no other
/// thread can be had.
fn reap_elsewhere(killed: Spare, shared: &Arc<Shared>) {
    let slot = Arc::new(Mutex::new(Some(killed)));
    let (theirs, reaper) = (slot.clone(), shared.clone());
    let spawned = std::thread::Builder::new()
        .name("execgate-reaper".into())
        .spawn(move || {
            if let Some(killed) = lock_slot(&theirs).take() {
                reap(killed, &reaper.children.scope);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no thread to reap a spare on; reaping it here");
        if let Some(killed) = lock_slot(&slot).take() {
            reap(killed, &shared.children.scope);
        }
    }
}

/// Whether escalations under `policy` may take a spare: the session's
/// own resolved policy, without a link to the proxy (which belongs to one
/// command).
pub(crate) fn serves(shared: &Shared, policy: &Arc<execgate_sandbox::ResolvedPolicy>) -> bool {
    shared
        .sandbox
        .as_ref()
        .and_then(|sandbox| sandbox.resolved_default.as_ref())
        .is_some_and(|default| Arc::ptr_eq(default, policy))
        && policy.network() != NetworkPolicy::Limited
}

fn start(shared: &Shared) -> Result<Spare, String> {
    shared.children.scope.check()?;
    let sandbox = shared
        .sandbox
        .as_ref()
        .ok_or("the session has no sandbox")?;
    let policy = sandbox
        .resolved_default
        .as_ref()
        .ok_or("the session's sandbox is not enforced by execgate")?;
    let launcher = &sandbox.launcher;
    let network = shared.children.spares.network(launcher, policy);
    // Kept for whichever command comes: in the session's cgroup.
    let cgroup = shared.children.scope.cgroup().cloned();
    launch(shared, launcher, policy, network, None, cgroup)
}

/// Starts a sandbox of `policy` for one escalation that found no spare
/// (or that no spare serves), to be handed its command at once with
/// [`hand`]. So bubblewrap, which keeps the standard streams it started
/// with until the sandbox ends, never holds the command's: a pipe's reader
/// sees its end when the command closes it. A `limited` network needs
/// `proxy_link`, this sandbox's own. It starts in the cgroup of the
/// command the process `requester` is part of, as an unsandboxed
/// escalation does. Call on the spawner's thread, as [`replenish`] does.
pub(crate) fn start_for_one(
    shared: &Arc<Shared>,
    launcher: &execgate_sandbox::Launcher,
    policy: &execgate_sandbox::ResolvedPolicy,
    proxy_link: Option<OwnedFd>,
    requester: i32,
) -> Result<Spare, String> {
    shared.children.scope.check()?;
    // bubblewrap makes its network namespace: the session's empty one is
    // its kept spares' alone.
    let cgroup = shared.children.scope.cgroup_for(requester);
    let mut spare = launch(shared, launcher, policy, None, proxy_link, cgroup)?;
    spare.ready_within = ONE_READY_WITHIN;
    if !shared.children.spares.adopt(spare.pid) {
        let _ = killpg(Pid::from_raw(spare.pid), Signal::SIGKILL);
        reap_elsewhere(spare, shared);
        return Err("the session has ended".into());
    }
    Ok(spare)
}

fn launch(
    shared: &Shared,
    launcher: &execgate_sandbox::Launcher,
    policy: &execgate_sandbox::ResolvedPolicy,
    network: Option<BorrowedFd<'_>>,
    proxy_link: Option<OwnedFd>,
    cgroup: Option<Arc<crate::scope::Cgroup>>,
) -> Result<Spare, String> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| format!("socketpair: {errno}"))?;
    let bwrap = std::fs::File::open(launcher.bwrap())
        .map_err(|error| format!("cannot open {}: {error}", launcher.bwrap().display()))?;
    let mut argv = vec![launcher.bwrap().as_os_str().to_owned()];
    let link_number = proxy_link.as_ref().map(|_| PROXY_LINK_FD);
    argv.extend(launcher.spare_arguments(policy, CONTROL_FD, link_number, network.is_some()));
    // Its standard streams until it has its command's: bubblewrap and the
    // helper must not find 0-2 free for files of their own.
    let null = || -> Result<OwnedFd, String> {
        std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|error| format!("cannot open /dev/null: {error}"))
    };
    let mut fds = vec![
        (null()?, 0),
        (null()?, 1),
        (null()?, 2),
        (theirs, CONTROL_FD),
    ];
    fds.extend(proxy_link.map(|link| (link, PROXY_LINK_FD)));
    let plan: SpawnPlan<OwnedFd> = SpawnPlan {
        executable: bwrap.into(),
        argv: c_strings(argv)?,
        env: Vec::new(),
        cwd: nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|errno| format!("cannot open /: {errno}"))?,
        fds,
        niceness: shared.config.shell_niceness,
        cgroup,
        warden_pipe: shared.children.scope.warden_pipe(),
        network: network.map(|network| network.as_raw_fd()),
        own_session: false,
        inheritance: None,
    };
    let pid = sys::spawn(&plan).map_err(|failure| failure.error.to_string())?;
    match sys::pidfd_open(pid) {
        Ok(pidfd) => Ok(Spare {
            pid,
            pidfd: Arc::new(pidfd),
            control: ours,
            ready_within: READY_WITHIN,
        }),
        Err(error) => {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            shared.children.scope.untrack(pid);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            Err(format!("cannot watch the spare: {error}"))
        }
    }
}

/// What an escalation tells a spare, besides the descriptors of its plan.
pub(crate) struct Command {
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<OsString>,
    pub(crate) cwd: PathBuf,
    pub(crate) cwd_identity: (u64, u64),
    pub(crate) exec_fd: i32,
}

/// A spare that took its command.
pub(crate) struct Handed {
    pub(crate) pid: i32,
    pub(crate) pidfd: Arc<OwnedFd>,
    /// Where its init says, as it ends, that the command died of a signal
    /// ([`execgate_sandbox::reported_end`]), or that its exec failed.
    pub(crate) control: OwnedFd,
}

/// Hands `command`, with `plan`'s descriptors, to `spare`: one of `spares`
/// taken for it, or started for it ([`start_for_one`]). On failure the
/// spare is killed and reaped, and the escalation starts a sandbox with its
/// command. Blocks: call off the reactor.
pub(crate) fn hand(
    spare: Spare,
    plan: &SpawnPlan,
    command: &Command,
    spares: &Spares,
    scope: &Scope,
) -> Result<Handed, String> {
    let fds: Vec<_> = plan
        .fds
        .iter()
        .map(|(fd, number)| (fd.as_fd(), *number))
        .collect();
    let inheritance = match &plan.inheritance {
        Some(inheritance) => inheritance.as_ref().clone(),
        None => execgate_sandbox::Inheritance::of(std::process::id() as i32)
            .map_err(|error| format!("cannot read the server's umask and limits: {error}"))?,
    };
    let order = SpareOrder {
        cwd: &command.cwd,
        cwd_identity: command.cwd_identity,
        argv: &command.argv,
        env: &command.env,
        exec_fd: command.exec_fd,
        fds: &fds,
        inheritance: &inheritance,
    };
    // A spare killed since it said it was ready (from outside, or by its
    // session's end) would take the order and run nothing; one whose end
    // is already seen is passed over.
    let handed = if sys::has_ended(spare.pidfd.as_fd()) {
        Err("the spare sandbox has ended".to_owned())
    } else {
        execgate_sandbox::hand_order(spare.control.as_fd(), &order, spare.ready_within)
            .map_err(|error| error.to_string())
    };
    if let Err(error) = handed {
        let _ = killpg(Pid::from_raw(spare.pid), Signal::SIGKILL);
        // No longer closing's to kill before it is reaped: once reaped,
        // its number may name another group.
        spares.handed(spare.pid);
        reap(spare, scope);
        return Err(error);
    }
    spares.handed(spare.pid);
    Ok(Handed {
        pid: spare.pid,
        pidfd: spare.pidfd,
        control: spare.control,
    })
}

/// Waits for a killed spare. Its group is forgotten by the warden first:
/// once reaped, the number may be given to another process.
fn reap(spare: Spare, scope: &Scope) {
    scope.untrack(spare.pid);
    let _ = waitid(Id::PIDFd(spare.pidfd.as_fd()), WaitPidFlag::WEXITED);
}

fn lock_slot(slot: &Mutex<Option<Spare>>) -> MutexGuard<'_, Option<Spare>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
