//! The outer stage: a bubblewrap command line that builds the view a
//! resolved policy describes, then starts the inner helper inside it.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use super::doctor::{self, SCOPES_LANDLOCK_ABI};
use super::sys;
use crate::profile::{Access, NetworkPolicy};
use crate::resolve::{PathRule, ResolvedPolicy, MINIMAL_ROOTS};
use crate::SandboxError;

/// Where bubblewrap is looked for: absolute paths only, never `PATH` and
/// never the working directory.
pub const BWRAP_PATHS: [&str; 2] = ["/usr/bin/bwrap", "/usr/local/bin/bwrap"];

/// Host directories hidden behind an empty tmpfs unless a profile grants
/// something inside them: they hold the sockets of host services (D-Bus,
/// Docker, systemd, user session buses).
pub const HIDDEN_SERVICE_DIRS: [&str; 2] = ["/run", "/var/run"];

/// Starts programs inside sandboxes. Made once per session; cheap to clone.
#[derive(Debug, Clone)]
pub struct Launcher {
    bwrap: PathBuf,
    helper: PathBuf,
    exposed: Vec<PathBuf>,
    hidden: Vec<PathBuf>,
    /// Places no grant may reach beyond an access, with what they are.
    kept: Vec<(PathBuf, &'static str, Access)>,
    terminal: Terminal,
}

/// Whether sandboxed programs keep the caller's terminal session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Terminal {
    /// A new session without a controlling terminal (`--new-session`): the
    /// default, for commands.
    #[default]
    Detached,
    /// The caller's session and terminal, for an interactive shell that
    /// needs job control. Typing into the terminal (`TIOCSTI`), changing
    /// its line discipline (`TIOCSETD`) and exclusive mode (`TIOCEXCL`)
    /// stay denied by the seccomp filter either way.
    Shared,
}

impl Launcher {
    /// A launcher using the system's bubblewrap and the inner `helper`
    /// binary. Fails, naming the reason, when this machine cannot enforce
    /// the sandbox (no bubblewrap, no user namespaces, Landlock ABI below 3,
    /// no seccomp).
    pub fn new(helper: impl Into<PathBuf>) -> Result<Launcher, SandboxError> {
        let report = doctor::MachineReport::probe();
        report.require()?;
        let bwrap = report.bwrap.clone().ok_or(SandboxError::NoBubblewrap)?;
        Launcher::with_bwrap(bwrap, helper)
    }

    /// A launcher with an explicit bubblewrap; the machine is not probed.
    pub fn with_bwrap(
        bwrap: impl Into<PathBuf>,
        helper: impl Into<PathBuf>,
    ) -> Result<Launcher, SandboxError> {
        let (bwrap, helper) = (bwrap.into(), helper.into());
        for path in [&bwrap, &helper] {
            if !path.is_absolute() || !path.is_file() {
                return Err(SandboxError::MissingBinary(path.clone()));
            }
        }
        Ok(Launcher {
            bwrap,
            helper,
            exposed: Vec::new(),
            hidden: Vec::new(),
            kept: Vec::new(),
            terminal: Terminal::Detached,
        })
    }

    /// Makes `path` (a file the sandboxed programs must run, such as the
    /// exec wrapper) readable inside every sandbox, whatever the profile.
    pub fn expose(&mut self, path: impl Into<PathBuf>) {
        self.exposed.push(path.into());
    }

    /// Makes the directory `path` empty in every sandbox, but for the
    /// exposed paths inside it (the sessions' directory, but for this
    /// session's) and a policy's private root inside it
    /// ([`ResolvedPolicy::show_private_root`]); one inside an exposed
    /// directory (a session's private directory) is hidden in it.
    pub fn hide(&mut self, path: impl Into<PathBuf>) {
        self.hidden.push(path.into());
    }

    /// The directory [`Launcher::hide`] empties that holds `path` (or is
    /// it), if one does: a grant there would grant nothing a sandbox sees.
    pub fn hidden_over(&self, path: &Path) -> Option<&Path> {
        self.hidden
            .iter()
            .find(|hidden| path.starts_with(hidden))
            .map(PathBuf::as_path)
    }

    /// Keeps every grant wider than `most` from `path` (a file or a
    /// directory), `what` it is saying why (`"the audit log's"`, hidden:
    /// [`Access::None`]; `"the config's"`, read-only: [`Access::Read`]): a
    /// profile keeps it so, but a grant as particular or more would win.
    pub fn keep_from_grants(&mut self, path: impl Into<PathBuf>, what: &'static str, most: Access) {
        self.kept.push((path.into(), what, most));
    }

    /// The place [`Launcher::keep_from_grants`] keeps that holds `path` (or
    /// is it), with what it is and the most a grant there may give.
    pub fn kept_over(&self, path: &Path) -> Option<(&Path, &'static str, Access)> {
        self.kept
            .iter()
            .find(|(kept, _, _)| path.starts_with(kept))
            .map(|(kept, what, most)| (kept.as_path(), *what, *most))
    }

    /// Sets how sandboxed programs relate to the caller's terminal.
    pub fn set_terminal(&mut self, terminal: Terminal) {
        self.terminal = terminal;
    }

    pub fn bwrap(&self) -> &Path {
        &self.bwrap
    }

    /// The helper that runs first inside every sandbox.
    pub fn helper(&self) -> &Path {
        &self.helper
    }

    /// bubblewrap's arguments (its own `argv[0]` excluded) that run `argv`
    /// inside `policy` with `cwd` as working directory. With `exec_fd`, the
    /// inner helper executes that inherited descriptor (the file the
    /// escalation server checked); otherwise it looks `argv[0]` up in
    /// `PATH` inside the view. A `limited` network needs `network_fd`, an
    /// inherited socket on which the helper hands the proxy its listener
    /// (see [`crate::LISTENER_MESSAGE`]); without one the helper refuses to run
    /// anything.
    ///
    /// The sandbox dies with the *thread* that starts bubblewrap
    /// (`--die-with-parent` is `PR_SET_PDEATHSIG`): start it from one that
    /// lives as long as the sandbox should, never from a pool's thread
    /// that may end when idle.
    pub fn arguments(
        &self,
        policy: &ResolvedPolicy,
        cwd: &Path,
        exec_fd: Option<RawFd>,
        network_fd: Option<RawFd>,
        argv: &[OsString],
    ) -> Vec<OsString> {
        let command = Command::Now {
            cwd,
            exec_fd,
            report_fd: None,
            argv,
        };
        self.build(policy, network_fd, command)
    }

    /// bubblewrap's arguments for a spare: a sandbox of `policy` started
    /// ahead of its command, whose helper confines itself and then takes
    /// the command (working directory, arguments, environment, descriptors)
    /// from the inherited socket `control_fd` ([`crate::hand_order`]). A
    /// `limited` network needs `network_fd`, as for [`Launcher::arguments`]:
    /// a link to the proxy belongs to one sandbox, so such a spare is
    /// started for a command known already.
    ///
    /// With `in_prepared_network`, for a policy that
    /// [`Launcher::spares_may_share_network`], the caller starts bubblewrap
    /// inside an empty network namespace it made for the session's spares
    /// rather than having bubblewrap create one: a new namespace is about
    /// a millisecond of a sandbox's start. It must never be the host's:
    /// bubblewrap does not unshare it. For any other policy the flag is
    /// ignored.
    pub fn spare_arguments(
        &self,
        policy: &ResolvedPolicy,
        control_fd: RawFd,
        network_fd: Option<RawFd>,
        in_prepared_network: bool,
    ) -> Vec<OsString> {
        let command = Command::Spare {
            control_fd,
            in_prepared_network,
        };
        self.build(policy, network_fd, command)
    }

    /// Whether the spares of `policy` may start in one empty network
    /// namespace, shared by a session's spares: a `restricted` network,
    /// where a sandbox makes no socket but a Unix stream one, on a kernel
    /// whose Landlock keeps abstract Unix sockets to the sandbox that made
    /// them. Spares of one session can then reach each other's pathname
    /// sockets (the supervisor allows those bound in the sandbox's network
    /// namespace), and see them in `/proc/net`.
    pub fn spares_may_share_network(&self, policy: &ResolvedPolicy) -> bool {
        policy.network() == NetworkPolicy::Restricted
            && sys::landlock_abi().is_some_and(|abi| abi >= SCOPES_LANDLOCK_ABI)
    }

    fn build(
        &self,
        policy: &ResolvedPolicy,
        network_fd: Option<RawFd>,
        command: Command<'_>,
    ) -> Vec<OsString> {
        let mut args = Args::default();
        args.push(["--die-with-parent"]);
        if self.terminal == Terminal::Detached {
            args.push(["--new-session"]);
        }
        args.push([
            "--unshare-user",
            "--unshare-pid",
            // The helper is the namespace's init: no process of
            // bubblewrap's between it and bubblewrap, one fewer to start and
            // to wait for when the command ends. The helper keeps a parent
            // as init whatever the policy (`helper.rs`).
            "--as-pid-1",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop",
            "ALL",
        ]);
        let in_prepared_network = matches!(
            command,
            Command::Spare {
                in_prepared_network: true,
                ..
            }
        ) && self.spares_may_share_network(policy);
        if policy.network() != NetworkPolicy::Enabled && !in_prepared_network {
            args.push(["--unshare-net"]);
        }

        let root = policy
            .rules()
            .iter()
            .find(|rule| rule.path == Path::new("/"));
        match root.map(|rule| rule.access) {
            Some(Access::Write) => args.bind("--bind", Path::new("/")),
            Some(Access::Read) => args.bind("--ro-bind", Path::new("/")),
            // An empty root: only what the rules bind appears.
            Some(Access::None) | None => {}
        }
        if policy.minimal_only() {
            // Merged-/usr systems: /bin and friends are symlinks to recreate.
            for link in MINIMAL_ROOTS {
                if let Ok(target) = std::fs::read_link(link) {
                    args.push_os([
                        OsString::from("--symlink"),
                        target.into_os_string(),
                        OsString::from(link),
                    ]);
                }
            }
        }
        args.push(["--dev", "/dev", "--proc", "/proc"]);
        for dir in HIDDEN_SERVICE_DIRS.iter().map(Path::new) {
            if is_real_directory(dir) {
                args.push_os(["--tmpfs".into(), dir.as_os_str().to_owned()]);
            }
        }

        for rule in policy.rules() {
            let path = rule.path.as_path();
            if path == Path::new("/")
                || !rule.exists
                || path.starts_with("/proc")
                || path.starts_with("/dev")
            {
                continue;
            }
            args.mount_rule(path, rule.access);
        }
        args.cover_other_names_of_hidden(policy);
        args.cover_files(policy, |_| true);
        // A hidden directory that holds exposed ones (the sessions'
        // directory, holding this session's) is covered before they are
        // bound in it; one inside an exposed directory (the session's
        // private one) after it. The later mount is the one the sandbox
        // sees, and the policy's own roots inside come last.
        let (holding, inside): (Vec<&PathBuf>, Vec<&PathBuf>) =
            self.hidden.iter().partition(|hidden| {
                self.exposed
                    .iter()
                    .any(|exposed| exposed.starts_with(hidden) && exposed != *hidden)
            });
        for hidden in &holding {
            if hidden.is_dir() {
                args.cover(hidden);
            }
        }
        self.rebind_inside(policy, &holding, &mut args);
        let exposed = self.exposed.iter().chain([&self.helper]);
        for path in exposed_needing_binds(policy, exposed, &self.hidden) {
            args.bind("--ro-bind", path);
        }
        for hidden in inside {
            if hidden.is_dir() {
                args.cover(hidden);
            }
        }
        for root in policy.private_roots() {
            if root.is_dir() {
                args.bind("--bind", root);
            }
        }
        // Allowed host sockets, wherever they are (`/run` is covered).
        for (socket, _) in policy.allowed_unix_sockets() {
            args.bind("--ro-bind", socket);
        }
        // Covering tmpfs mounts turn read-only only now, after re-grants
        // inside them got their mount points.
        let remounts = std::mem::take(&mut args.remounts);
        for path in remounts {
            args.push_os(["--remount-ro".into(), path]);
        }
        if let Command::Now { cwd, .. } = command {
            args.push_os(["--chdir".into(), cwd.as_os_str().to_owned()]);
        }

        args.push_os(["--".into(), self.helper.clone().into_os_string()]);
        if self.terminal == Terminal::Shared {
            args.push(["--job-control"]);
        }
        // A rule on a file a deny glob matches grants nothing: the file is
        // covered (a deny glob holds over every grant), and its cover is
        // neither granted nor checked as the file.
        let granted = |rule: &&PathRule| {
            rule.exists
                && rule.access != Access::None
                && !policy.denied_files().contains(&rule.path)
        };
        for rule in policy.rules().iter().filter(granted) {
            let flag = if rule.access == Access::Write {
                "--write"
            } else {
                "--read"
            };
            args.push_os([flag.into(), rule.path.clone().into_os_string()]);
        }
        if let Some(root) = policy.no_repository_at() {
            args.push_os(["--no-repository-at".into(), root.as_os_str().to_owned()]);
        }
        for path in self.exposed.iter().chain([&self.helper]) {
            args.push_os(["--read".into(), path.clone().into_os_string()]);
        }
        for rule in policy.rules().iter().filter(granted) {
            if let Some((device, inode)) = rule.identity {
                args.push_os([
                    "--check".into(),
                    rule.path.clone().into_os_string(),
                    format!("{device}:{inode}").into(),
                ]);
            }
        }
        match policy.network() {
            NetworkPolicy::Restricted => args.push(["--restrict-network"]),
            NetworkPolicy::Limited => {
                let link = network_fd.map_or_else(|| "none".to_owned(), |fd| fd.to_string());
                args.push_os(["--limited-network".into(), link.into()]);
                for (socket, (device, inode)) in policy.allowed_unix_sockets() {
                    args.push_os([
                        "--allow-unix-socket".into(),
                        socket.as_os_str().to_owned(),
                        format!("{device}:{inode}").into(),
                    ]);
                }
            }
            NetworkPolicy::Enabled => {}
        }
        // The supervisor matches files opened after launch against these.
        for glob in policy.deny_globs() {
            args.push_os(["--deny-glob".into(), glob.into()]);
        }
        for path in std::mem::take(&mut args.gone) {
            if let Some(glob) = exact_glob(&path) {
                args.push_os(["--deny-glob".into(), OsString::from(glob)]);
            }
        }
        if !policy.deny_globs().is_empty() {
            for root in policy.relative_glob_roots() {
                args.push_os(["--glob-root".into(), root.clone().into_os_string()]);
            }
        }
        match command {
            Command::Now {
                exec_fd,
                report_fd,
                argv,
                ..
            } => {
                if let Some(fd) = exec_fd {
                    args.push_os(["--exec-fd".into(), fd.to_string().into()]);
                }
                if let Some(fd) = report_fd {
                    args.push_os(["--report-fd".into(), fd.to_string().into()]);
                }
                args.push(["--"]);
                args.items.extend(argv.iter().cloned());
            }
            Command::Spare { control_fd, .. } => {
                args.push_os(["--spare".into(), control_fd.to_string().into()]);
            }
        }
        args.items
    }

    /// A command that runs `argv` inside `policy`: bubblewrap, then the
    /// inner helper, then `argv[0]` looked up in `PATH` inside the view.
    /// bubblewrap writes its status lines to `watch.status_fd`, and the
    /// helper says on the socket `watch.report_fd` how its command ended
    /// when its exit code cannot (a death by signal, an exec that failed:
    /// [`reported_end`](crate::reported_end)); the command must inherit
    /// both. See [`SandboxStart`](crate::SandboxStart).
    pub fn command(
        &self,
        policy: &ResolvedPolicy,
        cwd: &Path,
        network_fd: Option<RawFd>,
        watch: CommandWatch,
        argv: &[OsString],
    ) -> std::process::Command {
        let mut command = std::process::Command::new(&self.bwrap);
        if let Some(fd) = watch.status_fd {
            command.arg("--json-status-fd").arg(fd.to_string());
        }
        let now = Command::Now {
            cwd,
            exec_fd: None,
            report_fd: watch.report_fd,
            argv,
        };
        command.args(self.build(policy, network_fd, now));
        command
    }

    /// Call last, before spawning a command this launcher made (a no-op on
    /// any other): the loader's variables of its environment (`LD_PRELOAD`,
    /// `GCONV_PATH`...) go to the sandbox's command under other names, so
    /// that bubblewrap and the helper, which start before the sandbox's
    /// confinement does, load nothing they name. The command gets them
    /// back. Its environment must be explicit (`env_clear`, then `envs`):
    /// one it would inherit is removed, not carried.
    pub fn seal_environment(&self, command: &mut std::process::Command) {
        if command.get_program() == self.bwrap.as_os_str() {
            super::carried::carry(command);
        }
    }
}

/// The descriptors through which a sandbox started with its command tells
/// its caller how it started and ended ([`Launcher::command`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandWatch {
    /// bubblewrap's status descriptor (`--json-status-fd`).
    pub status_fd: Option<RawFd>,
    /// The helper's report socket (`--report-fd`).
    pub report_fd: Option<RawFd>,
}

/// What the helper runs: a command known now, or one a spare is told of
/// later.
enum Command<'a> {
    Now {
        cwd: &'a Path,
        exec_fd: Option<RawFd>,
        report_fd: Option<RawFd>,
        argv: &'a [OsString],
    },
    Spare {
        control_fd: RawFd,
        /// Started inside a network namespace prepared for the policy.
        in_prepared_network: bool,
    },
}

/// A deny glob that matches `path` (absolute, canonical) and nothing else:
/// each character a glob reads otherwise in a class of its own. `None` for
/// a path that is not UTF-8, which no glob can name; its sandbox then
/// shows what is made there later, as for a path hidden that did not
/// exist at the session's start.
fn exact_glob(path: &Path) -> Option<String> {
    Some(crate::profile::literal_glob(path.to_str()?))
}

#[derive(Default)]
struct Args {
    items: Vec<OsString>,
    remounts: Vec<OsString>,
    /// Paths to cover that were gone when the arguments were made: hidden
    /// by name instead, by the helper's supervisor ([`exact_glob`]).
    gone: Vec<PathBuf>,
}

impl Args {
    fn push<const N: usize>(&mut self, items: [&str; N]) {
        self.items.extend(items.iter().map(OsString::from));
    }

    fn push_os<const N: usize>(&mut self, items: [OsString; N]) {
        self.items.extend(items);
    }

    fn bind(&mut self, how: &str, path: &Path) {
        let path = path.as_os_str().to_owned();
        self.push_os([how.into(), path.clone(), path]);
    }

    /// Shows `path` as a rule with `access` has it: bound writable or
    /// read-only, or covered.
    fn mount_rule(&mut self, path: &Path, access: Access) {
        match access {
            Access::Write => self.bind("--bind", path),
            Access::Read => self.bind("--ro-bind", path),
            Access::None => self.cover(path),
        }
    }

    /// Covers what `policy` hides (its `none` entries) under each other
    /// name the host's mounts give it, where the view shows that name
    /// (probe 247: a directory hidden by its path was read through a
    /// second mount of its file system; probe 244: the audit log's through
    /// a bind mount of the state directory). A name a mount gives it after
    /// this is not known.
    fn cover_other_names_of_hidden(&mut self, policy: &ResolvedPolicy) {
        let hidden: Vec<PathBuf> = policy
            .rules()
            .iter()
            .filter(|rule| rule.exists && rule.access == Access::None)
            .map(|rule| rule.path.clone())
            .collect();
        let aliases = super::aliases::MountAliases::of(&hidden);
        for alias in aliases.aliases() {
            if !hidden_by_a_directory(policy, alias) {
                self.cover_if_there(alias);
            }
        }
    }

    /// Covers the files `policy` hides (denied files, host sockets) that
    /// `within` selects. Not those the view shows nothing of: an empty
    /// tmpfs over their directory hides them, and a mount point made in it
    /// for a cover would show the file's name (probe 154, review 34).
    fn cover_files(&mut self, policy: &ResolvedPolicy, within: impl Fn(&Path) -> bool) {
        for file in policy.denied_files().iter().filter(|file| within(file)) {
            if !hidden_by_a_directory(policy, file) {
                self.cover(file);
            }
        }
        // A host socket gone since is not hidden by name: no `open` of a
        // socket succeeds, and a name in the globs would send every open
        // of the sandbox to its supervisor (review 39).
        for socket in policy.host_sockets().iter().filter(|file| within(file)) {
            if !hidden_by_a_directory(policy, socket) {
                self.cover_if_there(socket);
            }
        }
    }

    /// Makes `path` unreadable: an empty read-only tmpfs on a directory, the
    /// empty `/dev/null` on anything else. A path gone since the policy was
    /// resolved (a session's sandboxes start from the policy it resolved at
    /// its start) is hidden by name instead, as a deny glob hides a file
    /// made later: bubblewrap would make an empty file or directory there
    /// to mount on, on the host where the parent is writable, or fail to
    /// start where it is not.
    fn cover(&mut self, path: &Path) {
        if !self.cover_if_there(path) {
            self.gone.push(path.to_path_buf());
        }
    }

    /// [`Args::cover`] for a path that is there; whether it was.
    fn cover_if_there(&mut self, path: &Path) -> bool {
        let Ok(found) = std::fs::metadata(path) else {
            return false;
        };
        let target = path.as_os_str().to_owned();
        if found.is_dir() {
            self.push_os(["--tmpfs".into(), target.clone()]);
            self.remounts.push(target);
        } else {
            self.push_os(["--ro-bind".into(), "/dev/null".into(), target]);
        }
        true
    }
}

impl Launcher {
    /// Binds again the policy's own roots that a hidden directory holding
    /// exposed ones covered (`holding`), outside what is exposed or hidden
    /// there (a review: a session started from an unsandboxed escalation
    /// works in the outer session's temporary directory, which its
    /// sandboxes lost), with the rules below them in depth order, as the
    /// view's own, and covers again what the policy hides inside them. A
    /// root at or above a hidden or exposed path is not bound again: it
    /// would show what the hiding hides, over what is exposed.
    fn rebind_inside(&self, policy: &ResolvedPolicy, holding: &[&PathBuf], args: &mut Args) {
        let covered = |path: &Path| {
            holding.iter().any(|hidden| path.starts_with(hidden))
                && !self
                    .hidden
                    .iter()
                    .chain(&self.exposed)
                    .any(|kept| kept.starts_with(path))
                && !self.exposed.iter().any(|exposed| path.starts_with(exposed))
        };
        let shown: Vec<&Path> = policy
            .rules()
            .iter()
            .filter(|rule| rule.exists && rule.access != Access::None && covered(&rule.path))
            .map(|rule| rule.path.as_path())
            .collect();
        let inside_shown = |path: &Path| shown.iter().any(|root| path.starts_with(root));
        let mut again: Vec<&PathRule> = policy
            .rules()
            .iter()
            .filter(|rule| rule.exists && inside_shown(&rule.path))
            .collect();
        again.sort_by_key(|rule| rule.path.components().count());
        for rule in again {
            args.mount_rule(&rule.path, rule.access);
        }
        args.cover_files(policy, inside_shown);
    }
}

/// Whether an empty tmpfs over a directory on the way hides `path`: one
/// the rules hide, or a hidden service directory (`/run`) that no rule at
/// or below it shows again there.
fn hidden_by_a_directory(policy: &ResolvedPolicy, path: &Path) -> bool {
    if policy.rule_access(path) == Access::None {
        return true;
    }
    HIDDEN_SERVICE_DIRS
        .iter()
        .map(Path::new)
        .filter(|dir| path.starts_with(dir) && is_real_directory(dir))
        .any(|dir| {
            !policy.rules().iter().any(|rule| {
                rule.exists
                    && rule.access != Access::None
                    && rule.path.starts_with(dir)
                    && path.starts_with(&rule.path)
            })
        })
}

/// A directory, not a link to one: what bubblewrap's `--tmpfs` covers.
fn is_real_directory(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir())
}

/// The exposed files (the wrapper, zsh, the helper) that need a bind mount
/// of their own, each once: not those the view already shows read-only at
/// the same path. Each bind costs bubblewrap a mount, a remount and a
/// parse of the whole mount table (measured: P1 d, BENCHMARKS.md), and a
/// sandbox per escalation pays it every time.
fn exposed_needing_binds<'a>(
    policy: &ResolvedPolicy,
    exposed: impl Iterator<Item = &'a PathBuf>,
    hidden: &[PathBuf],
) -> Vec<&'a PathBuf> {
    let mut needed: Vec<&PathBuf> = Vec::new();
    for path in exposed {
        let in_hidden = hidden.iter().any(|hidden| path.starts_with(hidden));
        if !needed.contains(&path) && (in_hidden || !already_visible_read_only(policy, path)) {
            needed.push(path);
        }
    }
    needed
}

/// Whether `path` shows in the view, read-only, without a bind of its own:
/// the deepest rule above it grants exactly `Read` and is bound (not under
/// `/proc` or `/dev`, which bubblewrap mounts afresh), nothing covers it
/// (a hidden service directory, a denied file, a host socket), and the path
/// is canonical (a symlink on the way could lead elsewhere than the rules
/// say). Anything else keeps its bind: a file under a writable root must
/// still be bound read-only.
fn already_visible_read_only(policy: &ResolvedPolicy, path: &Path) -> bool {
    if std::fs::canonicalize(path).ok().as_deref() != Some(path) {
        return false;
    }
    let covered = |cover: &PathBuf| path.starts_with(cover);
    if HIDDEN_SERVICE_DIRS.iter().any(|dir| path.starts_with(dir))
        || policy.denied_files().iter().any(covered)
        || policy.host_sockets().iter().any(covered)
    {
        return false;
    }
    let deepest = policy
        .rules()
        .iter()
        .filter(|rule| path.starts_with(&rule.path))
        .max_by_key(|rule| rule.path.components().count());
    match deepest {
        Some(rule) => {
            rule.access == Access::Read
                && rule.exists
                && !rule.path.starts_with("/proc")
                && !rule.path.starts_with("/dev")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::profile::{parse_target, FileSystemPolicy, PermissionProfile};
    use crate::resolve::SandboxContext;

    fn resolved(entries: &[(&str, Access)], cwd: &Path) -> ResolvedPolicy {
        let mut file_system = FileSystemPolicy::default();
        for (target, access) in entries {
            file_system
                .push(parse_target(target, None).unwrap(), *access)
                .unwrap();
        }
        let profile = PermissionProfile::Managed {
            file_system,
            network: NetworkPolicy::Restricted,
            network_lists: Default::default(),
        };
        ResolvedPolicy::resolve(&profile, &SandboxContext::new(cwd)).unwrap()
    }

    fn binds_of(arguments: &[OsString], path: &Path) -> usize {
        arguments
            .windows(3)
            .filter(|w| w[0] == "--ro-bind" && w[1] == path.as_os_str() && w[2] == path.as_os_str())
            .count()
    }

    /// Review 38: a hidden file gone when a later sandbox of the session
    /// starts is hidden by name by its supervisor, not left uncovered (or
    /// made again by bubblewrap's cover, as before).
    #[test]
    fn a_hidden_path_gone_at_the_start_is_hidden_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = std::fs::canonicalize(dir.path()).unwrap();
        let helper = workspace.join("helper");
        std::fs::write(&helper, "").unwrap();
        let secret = workspace.join("secret.env");
        std::fs::write(&secret, "s").unwrap();
        let policy = resolved(
            &[
                (":root", Access::Read),
                (":cwd", Access::Write),
                (secret.to_str().unwrap(), Access::None),
            ],
            &workspace,
        );
        let launcher = Launcher::with_bwrap("/usr/bin/bwrap", &helper).unwrap();
        let cover = |arguments: &[OsString]| {
            arguments
                .windows(3)
                .any(|w| w[0] == "--ro-bind" && w[1] == "/dev/null" && w[2] == secret.as_os_str())
        };
        let globs = |arguments: &[OsString]| -> Vec<String> {
            arguments
                .windows(2)
                .filter(|w| w[0] == "--deny-glob")
                .map(|w| w[1].to_str().unwrap().to_owned())
                .collect()
        };
        let arguments = launcher.arguments(&policy, &workspace, None, None, &["true".into()]);
        assert!(cover(&arguments), "{arguments:?}");
        assert!(globs(&arguments).is_empty(), "{arguments:?}");
        std::fs::remove_file(&secret).unwrap();
        let arguments = launcher.arguments(&policy, &workspace, None, None, &["true".into()]);
        assert!(!cover(&arguments), "{arguments:?}");
        let globs = globs(&arguments);
        let matcher = crate::resolve::DenyGlobMatcher::new(&globs).unwrap();
        assert!(matcher.denies(&secret, &[]), "{globs:?}");
        assert!(
            !matcher.denies(&workspace.join("secret.envx"), &[]),
            "{globs:?}"
        );
    }

    /// A sandbox on the caller's terminal (an interactive shell, a `tty`
    /// command) tells its init to hang up the shell's jobs when the shell
    /// ends; a detached command's does not.
    #[test]
    fn only_a_shared_terminals_sandbox_waits_for_the_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = std::fs::canonicalize(dir.path()).unwrap();
        let helper = workspace.join("helper");
        std::fs::write(&helper, "").unwrap();
        let policy = resolved(
            &[(":root", Access::Read), (":cwd", Access::Write)],
            &workspace,
        );
        let mut launcher = Launcher::with_bwrap("/usr/bin/bwrap", &helper).unwrap();
        for (terminal, job_control) in [(Terminal::Detached, false), (Terminal::Shared, true)] {
            launcher.set_terminal(terminal);
            let arguments = launcher.arguments(&policy, &workspace, None, None, &["zsh".into()]);
            let start = arguments
                .windows(2)
                .position(|w| w[0] == "--" && w[1] == helper.as_os_str())
                .unwrap();
            let helpers_own = arguments[start + 2..].iter().take_while(|arg| *arg != "--");
            assert_eq!(
                helpers_own.clone().any(|arg| arg == "--job-control"),
                job_control,
                "{terminal:?}: {arguments:?}"
            );
        }
    }

    /// Review 39: a host socket gone since the policy was resolved is not
    /// hidden by name (every open would go to the supervisor, and no open
    /// of a socket succeeds): nothing is there to cover. Only a sandbox
    /// with the host's network covers one at all: elsewhere its supervisor
    /// refuses to connect to it, and a socket removed while bubblewrap
    /// mounted its cover failed the start (CI, at d1e37a7).
    #[test]
    fn a_host_socket_gone_at_the_start_is_neither_covered_nor_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (workspace, tmpdir) = (root.join("ws"), root.join("tmp"));
        std::fs::create_dir(&workspace).unwrap();
        std::fs::create_dir(&tmpdir).unwrap();
        let helper = workspace.join("helper");
        std::fs::write(&helper, "").unwrap();
        let socket = tmpdir.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let mut file_system = FileSystemPolicy::default();
        for (target, access) in [(":root", Access::Read), (":cwd", Access::Write)] {
            file_system
                .push(parse_target(target, None).unwrap(), access)
                .unwrap();
        }
        let profile = |network| PermissionProfile::Managed {
            file_system: file_system.clone(),
            network,
            network_lists: Default::default(),
        };
        let mut context = SandboxContext::new(&workspace);
        context.tmpdir = tmpdir.clone();
        for confined in [NetworkPolicy::Restricted, NetworkPolicy::Limited] {
            let policy = ResolvedPolicy::resolve(&profile(confined), &context).unwrap();
            assert_eq!(policy.host_sockets(), [] as [PathBuf; 0], "{confined:?}");
        }
        let profile = profile(NetworkPolicy::Enabled);
        let policy = ResolvedPolicy::resolve(&profile, &context).unwrap();
        assert_eq!(policy.host_sockets(), std::slice::from_ref(&socket));
        let launcher = Launcher::with_bwrap("/usr/bin/bwrap", &helper).unwrap();
        let named = |arguments: &[OsString]| arguments.iter().any(|arg| arg == socket.as_os_str());
        let arguments = launcher.arguments(&policy, &workspace, None, None, &["true".into()]);
        assert!(named(&arguments), "{arguments:?}");
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
        let arguments = launcher.arguments(&policy, &workspace, None, None, &["true".into()]);
        assert!(!named(&arguments), "{arguments:?}");
        assert!(
            !arguments.iter().any(|arg| arg == "--deny-glob"),
            "{arguments:?}"
        );
    }

    /// A name a glob would read otherwise is matched as it is, and only it.
    #[test]
    fn an_exact_glob_matches_its_path_alone() {
        let cases = [
            ("/w/a*b", &["/w/axb", "/w/ab"][..]),
            ("/w/q?", &["/w/qx"]),
            ("/w/[x]", &["/w/x"]),
            ("/w/{a,b}", &["/w/a", "/w/b"]),
            ("/w/back\\slash", &["/w/backslash"]),
            ("/w/!bang]", &["/w/bang]"]),
            ("/w/trailing space ", &["/w/trailing space"]),
            ("/w/**/x", &["/w/a/x", "/w/x"]),
        ];
        for (path, others) in cases {
            let glob = exact_glob(Path::new(path)).unwrap();
            let matcher =
                crate::resolve::DenyGlobMatcher::new(std::slice::from_ref(&glob)).unwrap();
            assert!(matcher.denies(Path::new(path), &[]), "{path}: {glob}");
            for other in others {
                assert!(!matcher.denies(Path::new(other), &[]), "{other}: {glob}");
            }
        }
    }

    #[test]
    fn exposed_files_are_bound_once_and_only_where_the_view_lacks_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let workspace = root.join("ws");
        let tools = root.join("tools");
        let hidden = root.join("hidden");
        for sub in [&workspace, &tools, &hidden] {
            std::fs::create_dir_all(sub).unwrap();
        }
        let file = |dir: &Path, name: &str| {
            let path = dir.join(name);
            std::fs::write(&path, "").unwrap();
            path
        };
        let helper = file(&tools, "helper");
        let readable = file(&tools, "wrapper");
        let writable = file(&workspace, "wrapper-in-workspace");
        let covered = file(&hidden, "zsh");
        let link = root.join("link-to-tools");
        std::os::unix::fs::symlink(&tools, &link).unwrap();
        let through_link = link.join("wrapper");

        let mut launcher = Launcher::with_bwrap("/usr/bin/bwrap", &helper).unwrap();
        for path in [&readable, &readable, &writable, &covered, &through_link] {
            launcher.expose(path.clone());
        }
        let policy = resolved(
            &[
                (":root", Access::Read),
                (":cwd", Access::Write),
                (hidden.to_str().unwrap(), Access::None),
            ],
            &workspace,
        );
        let arguments = launcher.arguments(&policy, &workspace, None, None, &["true".into()]);
        // Readable at the same path through the root's bind: no bind.
        assert_eq!(binds_of(&arguments, &readable), 0, "{arguments:?}");
        assert_eq!(binds_of(&arguments, &helper), 0, "{arguments:?}");
        // Under a writable root: still bound read-only, once.
        assert_eq!(binds_of(&arguments, &writable), 1, "{arguments:?}");
        // Under a covered directory, or named through a symlink: bound.
        assert_eq!(binds_of(&arguments, &covered), 1, "{arguments:?}");
        assert_eq!(binds_of(&arguments, &through_link), 1, "{arguments:?}");

        // A hidden directory inside an exposed one is empty, but for a
        // private root of the policy, bound writable after both; another
        // writable root there is not shown (a review: re-binding every one
        // opened the session's directory to any grant inside it).
        let session = root.join("session");
        let hidden = session.join("granted");
        let own_tmp = hidden.join("1");
        let others = hidden.join("2");
        for dir in [&own_tmp, &others] {
            std::fs::create_dir_all(dir).unwrap();
        }
        launcher.expose(session.clone());
        launcher.hide(hidden.clone());
        let mut granted = resolved(
            &[
                (":root", Access::Read),
                (own_tmp.to_str().unwrap(), Access::Write),
                (others.to_str().unwrap(), Access::Write),
                (session.to_str().unwrap(), Access::Write),
            ],
            &workspace,
        );
        granted.show_private_root(own_tmp.clone());
        let arguments = launcher.arguments(&granted, &workspace, None, None, &["true".into()]);
        let position = |flag: &str, path: &Path| {
            arguments
                .windows(3)
                .rposition(|w| w[0] == flag && w[1] == path.as_os_str() && w[2] == path.as_os_str())
        };
        let session_read_only = position("--ro-bind", &session).unwrap();
        let covered = arguments
            .windows(2)
            .rposition(|w| w[0] == "--tmpfs" && w[1] == hidden.as_os_str())
            .unwrap();
        assert!(covered > session_read_only, "{arguments:?}");
        assert!(
            position("--bind", &own_tmp).is_some_and(|at| at > covered),
            "{arguments:?}"
        );
        assert!(
            position("--bind", &others).is_none_or(|at| at <= covered),
            "{arguments:?}"
        );

        // A directory holding exposed ones is hidden before they are bound;
        // the policy's own roots there (a nested session's working and
        // temporary directories, in another session's) are bound again
        // after it, and what the policy hides in them hidden again.
        let sessions = root.join("sessions");
        let this_session = sessions.join("this");
        let outer_tmp = sessions.join("outer/private/tmp");
        let secret = outer_tmp.join("secret");
        for dir in [&this_session, &secret] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let mut nested = Launcher::with_bwrap("/usr/bin/bwrap", &helper).unwrap();
        nested.hide(sessions.clone());
        nested.expose(this_session.clone());
        let policy = resolved(
            &[
                (":root", Access::Read),
                (outer_tmp.to_str().unwrap(), Access::Write),
                (secret.to_str().unwrap(), Access::None),
            ],
            &workspace,
        );
        let arguments = nested.arguments(&policy, &workspace, None, None, &["true".into()]);
        let last = |flag: &str, path: &Path| {
            arguments
                .windows(2)
                .rposition(|w| w[0] == flag && w[1] == path.as_os_str())
        };
        let sessions_hidden = last("--tmpfs", &sessions).unwrap();
        let this_shown = last("--ro-bind", &this_session).unwrap();
        let outer_shown = last("--bind", &outer_tmp).unwrap();
        let secret_hidden = last("--tmpfs", &secret).unwrap();
        assert!(
            sessions_hidden < this_shown && sessions_hidden < outer_shown,
            "{arguments:?}"
        );
        assert!(outer_shown < secret_hidden, "{arguments:?}");
        // A root at or above the hidden directory is not bound again over
        // it (a last review: it would show every session's directory).
        let policy = resolved(
            &[
                (":root", Access::Read),
                (sessions.to_str().unwrap(), Access::Write),
            ],
            &workspace,
        );
        let arguments = nested.arguments(&policy, &workspace, None, None, &["true".into()]);
        let sessions_hidden = arguments
            .windows(2)
            .rposition(|w| w[0] == "--tmpfs" && w[1] == sessions.as_os_str())
            .unwrap();
        assert!(
            !arguments[sessions_hidden..]
                .windows(2)
                .any(|w| w[0] == "--bind" && w[1] == sessions.as_os_str()),
            "{arguments:?}"
        );

        // With only the minimal roots, nothing above shows: each is bound,
        // duplicates once.
        let minimal = resolved(
            &[(":minimal", Access::Read), (":cwd", Access::Write)],
            &workspace,
        );
        let arguments = launcher.arguments(&minimal, &workspace, None, None, &["true".into()]);
        assert_eq!(binds_of(&arguments, &readable), 1, "{arguments:?}");
        assert_eq!(binds_of(&arguments, &helper), 1, "{arguments:?}");
    }

    /// A spare started inside a prepared namespace must not get bubblewrap's
    /// own; every other `restricted` sandbox must.
    #[test]
    fn only_a_spare_in_a_prepared_network_skips_unsharing_it() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("helper");
        std::fs::write(&helper, "").unwrap();
        let launcher = Launcher::with_bwrap("/usr/bin/bwrap", &helper).unwrap();
        let policy = resolved(&[(":root", Access::Read)], dir.path());
        let unshares = |arguments: Vec<OsString>| arguments.iter().any(|a| a == "--unshare-net");
        assert!(unshares(launcher.spare_arguments(&policy, 3, None, false)));
        assert_eq!(
            unshares(launcher.spare_arguments(&policy, 3, None, true)),
            !launcher.spares_may_share_network(&policy)
        );
        // This machine's kernel has Landlock's scopes (CI's too).
        assert!(launcher.spares_may_share_network(&policy));
        let now = launcher.arguments(&policy, dir.path(), None, None, &["true".into()]);
        assert!(unshares(now));
        let limited = PermissionProfile::Managed {
            file_system: FileSystemPolicy::default(),
            network: NetworkPolicy::Limited,
            network_lists: Default::default(),
        };
        let limited = ResolvedPolicy::resolve(&limited, &SandboxContext::new(dir.path())).unwrap();
        assert!(!launcher.spares_may_share_network(&limited));
        assert!(unshares(launcher.spare_arguments(
            &limited,
            3,
            Some(4),
            true
        )));
    }
}
