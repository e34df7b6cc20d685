//! Shared harness for the end-to-end suites.

mod audit;
mod bridge;
mod confine;
mod fastpath;
mod fidelity;
mod hostile;
mod lifetime;
mod metrics;
mod network;
mod planted;
mod policy;
mod sandbox;
mod spine;
mod unified;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use execgate_escalate_server::{
    Decision, ExecContext, Execution, Session, SessionConfig, SessionEvent,
};

/// The exec wrapper built from this workspace's current code
/// (`EXECGATE_TEST_WRAPPER` overrides it for a copy another user can run).
pub fn wrapper() -> PathBuf {
    std::env::var_os("EXECGATE_TEST_WRAPPER").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_e2e-exec-wrapper")),
        PathBuf::from,
    )
}

/// Keeps the last warnings of the servers this process runs, and adds them
/// to a failing test's report: a spare that could not be used, say, is told
/// only there. The servers' threads are the process's (the serving thread,
/// the spawner), not a test's, so the harness's capture would give each
/// warning to whichever test started them; these are every test's, each
/// naming its session. Every test runs zsh, so [`zsh`] calls it.
fn report_server_warnings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_ansi(false)
            .with_writer(|| RecentWarnings)
            .try_init();
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            let recent = recent_warnings().iter().cloned().collect::<String>();
            if !recent.is_empty() {
                eprintln!("the servers' last warnings in this process (any test's):\n{recent}");
            }
        }));
    });
}

/// How many warnings [`report_server_warnings`] keeps.
const WARNINGS_KEPT: usize = 40;

fn recent_warnings() -> std::sync::MutexGuard<'static, std::collections::VecDeque<String>> {
    static RECENT: Mutex<std::collections::VecDeque<String>> =
        Mutex::new(std::collections::VecDeque::new());
    RECENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The cgroup v2 path in `proc_cgroup`, text as `/proc/PID/cgroup` has
/// it (its `0::` line).
pub fn unified_cgroup(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
}

/// The recent warnings (of [`WARNINGS_KEPT`]) that name the session `id`.
pub fn server_warnings_of(id: &str) -> Vec<String> {
    recent_warnings()
        .iter()
        .filter(|warning| warning.contains(&format!("session={id}")))
        .cloned()
        .collect()
}

/// Where the servers' warnings go: [`recent_warnings`], one event a write.
struct RecentWarnings;

impl std::io::Write for RecentWarnings {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut recent = recent_warnings();
        if recent.len() == WARNINGS_KEPT {
            recent.pop_front();
        }
        recent.push_back(String::from_utf8_lossy(bytes).into_owned());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The patched zsh: `EXECGATE_ZSH`, or the one `scripts/build-zsh.sh` builds.
/// Missing is a failure, never a skip.
pub fn zsh() -> PathBuf {
    report_server_warnings();
    let path = std::env::var_os("EXECGATE_ZSH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/zsh/bin/zsh"));
    assert!(
        path.exists(),
        "patched zsh not found at {}: run scripts/build-zsh.sh first",
        path.display()
    );
    path
}

/// Held by the tests that put many descriptors in flight over Unix
/// sockets (the hostile flood) or run under a low descriptor limit (held
/// tunnels): the kernel counts a user's descriptors in flight against the
/// sender's `RLIMIT_NOFILE`, and the second's hellos failed with
/// `ETOOMANYREFS` while the first ran beside it.
pub static DESCRIPTORS_IN_FLIGHT: Mutex<()> = Mutex::new(());

/// Runs the test `name` (its full path) again, alone, in a process of its
/// own under the descriptor limit `nofile` (`SOFT:HARD`), with `marker`
/// set for it to see, and checks that it ran there and passed: a limit is
/// read once per process, and must not reach the tests beside it.
pub fn rerun_under_descriptor_limit(name: &str, nofile: &str, marker: &str) {
    let output = std::process::Command::new("prlimit")
        .arg(format!("--nofile={nofile}"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(marker, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "it did not run: {stdout}");
}

/// Every event a session emitted, in order.
#[derive(Default, Clone)]
pub struct Recorder(Arc<Mutex<Vec<SessionEvent>>>);

impl Recorder {
    /// An event sink that records into this recorder.
    pub fn sink(&self) -> execgate_escalate_server::EventSink {
        let recorder = self.clone();
        Arc::new(move |event: &SessionEvent| recorder.0.lock().unwrap().push(event.clone()))
    }

    /// The events of requests and escalated children: everything but the
    /// session's own start and end ([`Recorder::ends`] lists the ends).
    pub fn events(&self) -> Vec<SessionEvent> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|event| {
                !matches!(
                    event,
                    SessionEvent::Ended { .. } | SessionEvent::Began { .. }
                )
            })
            .cloned()
            .collect()
    }

    /// How the session ended, once per end recorded.
    pub fn ends(&self) -> Vec<execgate_escalate_server::SessionEnd> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter_map(|event| match event {
                SessionEvent::Ended { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    /// Canonical paths of the decided requests, in arrival order.
    pub fn decided_programs(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|event| match event {
                SessionEvent::Decided { request, .. } => Some(
                    request
                        .executable
                        .canonical_path
                        .to_string_lossy()
                        .into_owned(),
                ),
                _ => None,
            })
            .collect()
    }

    pub fn decided(&self) -> Vec<Arc<ExecContext>> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                SessionEvent::Decided { request, .. } => Some(request),
                _ => None,
            })
            .collect()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                SessionEvent::RequestRefused { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// Why escalations could not start, in order.
    pub fn spawn_failures(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                SessionEvent::SpawnFailed { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    pub fn started_pids(&self) -> Vec<i32> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                SessionEvent::Started { pid, .. } => Some(pid),
                _ => None,
            })
            .collect()
    }

    /// Waits until `count` escalated children have started.
    pub async fn wait_for_started(&self, count: usize) -> Vec<i32> {
        match self.started_within_10s(count).await {
            Some(pids) => pids,
            None => panic!(
                "fewer than {count} escalated children started: {:?}",
                self.events()
            ),
        }
    }

    /// [`Recorder::wait_for_started`] for the children of `shell`: if they
    /// do not start, the panic says what became of the shell (killed
    /// then), and what it wrote to its standard error.
    pub async fn wait_for_started_by(
        &self,
        count: usize,
        shell: &mut tokio::process::Child,
    ) -> Vec<i32> {
        use tokio::io::AsyncReadExt;
        if let Some(pids) = self.started_within_10s(count).await {
            return pids;
        }
        let running = shell.try_wait();
        let tree = shell.id().map(process_tree).unwrap_or_default();
        let _ = shell.start_kill();
        // Read piece by piece, so that what came before a timeout stays
        // (review 127: `read_to_string` keeps it until the end).
        let mut stderr = Vec::new();
        if let Some(mut pipe) = shell.stderr.take() {
            let mut piece = [0u8; 4096];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while let Ok(Ok(read)) = tokio::time::timeout_at(deadline, pipe.read(&mut piece)).await
            {
                if read == 0 {
                    break;
                }
                stderr.extend_from_slice(&piece[..read]);
            }
        }
        let stderr = String::from_utf8_lossy(&stderr);
        panic!(
            "fewer than {count} escalated children started: {:?}\n\
             the shell, before it was killed: {running:?}, its processes: {tree:#?}; \
             its stderr: {stderr}",
            self.events()
        );
    }

    async fn started_within_10s(&self, count: usize) -> Option<Vec<i32>> {
        for _ in 0..500 {
            let pids = self.started_pids();
            if pids.len() >= count {
                return Some(pids);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// The fields of `/proc/PROCESS/stat` after the parenthesised command name
/// (state, ppid, pgrp, session, ...), while the process exists. `process`
/// is a pid, or `self` or `thread-self`.
pub fn stat_fields(process: impl std::fmt::Display) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
    Some(
        stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// `root` and its descendants, each as its pid, state, kernel wait channel
/// and command line: what a stalled shell was doing.
fn process_tree(root: u32) -> Vec<String> {
    use std::fs;
    let read = |pid: &str, file: &str| fs::read_to_string(format!("/proc/{pid}/{file}")).ok();
    let stats: Vec<(String, String, String)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            let mut fields = stat_fields(&pid)?.into_iter();
            let state = fields.next()?;
            Some((pid, state, fields.next()?))
        })
        .collect();
    let mut tree = vec![root.to_string()];
    let mut described = Vec::new();
    while let Some(pid) = tree.pop() {
        let Some((_, state, _)) = stats.iter().find(|(each, ..)| *each == pid) else {
            continue;
        };
        let wchan = read(&pid, "wchan").unwrap_or_default();
        let cmdline = read(&pid, "cmdline").unwrap_or_default().replace('\0', " ");
        described.push(format!("{pid} {state} {wchan} {cmdline}"));
        tree.extend(
            stats
                .iter()
                .filter(|(_, _, parent)| *parent == pid)
                .map(|(child, ..)| child.clone()),
        );
    }
    described
}

/// A policy that decides by canonical path; everything else runs in place.
/// A pipeline whose writer, `program -c` (a shell), writes a line to the
/// pipe, closes its standard output and waits up to 10 s for its reader to
/// have seen the pipe's end: it writes `seen` to the file `result` and
/// exits 0, or `not-seen` and exits 1. The probe of every test that an
/// escalation's pipes end when the program closes them.
pub fn pipe_closed_early(program: &str) -> String {
    format!(
        "{program} -c 'echo hi; exec >&-; \
         for i in $(seq 100); do [ -e eof ] && {{ echo seen >result; exit 0; }}; sleep 0.1; done; \
         echo not-seen >result; exit 1' | {{ cat >/dev/null; touch eof; }}"
    )
}

pub fn policy_by_path(rules: &[(&str, Decision)]) -> Arc<dyn execgate_escalate_server::Policy> {
    let rules: HashMap<PathBuf, Decision> = rules
        .iter()
        .map(|(path, decision)| (PathBuf::from(path), decision.clone()))
        .collect();
    Arc::new(move |request: &ExecContext| {
        rules
            .get(&request.executable.canonical_path)
            .cloned()
            .unwrap_or(Decision::Run)
    })
}

pub fn escalate() -> Decision {
    Decision::Escalate(Execution::Unsandboxed)
}

/// A session with a recorder attached.
pub fn start_session(policy: Arc<dyn execgate_escalate_server::Policy>) -> (Session, Recorder) {
    start_session_with(policy, wrapper())
}

pub fn start_session_with(
    policy: Arc<dyn execgate_escalate_server::Policy>,
    wrapper: PathBuf,
) -> (Session, Recorder) {
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper, policy);
    config.events = Some(recorder.sink());
    (Session::start(config).expect("session starts"), recorder)
}

/// A patched zsh running `script` under `session`, started but not awaited.
pub fn spawn_zsh(session: &mut Session, script: &str, cwd: &Path) -> tokio::process::Child {
    spawn_zsh_with(session, script, cwd, |_| {})
}

/// [`spawn_zsh`], with `adjust` changing the shell's command first (its
/// environment, say).
pub fn spawn_zsh_with(
    session: &mut Session,
    script: &str,
    cwd: &Path,
    adjust: impl FnOnce(&mut std::process::Command),
) -> tokio::process::Child {
    let mut command = std::process::Command::new(zsh());
    command
        .arg("-f")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    adjust(&mut command);
    session.prepare_shell(&mut command);
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .expect("zsh starts");
    session.shell_spawned();
    child
}

#[derive(Debug)]
pub struct ShellOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ShellOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Waits for a shell (at most 60 s) and collects its output.
pub async fn finish(child: tokio::process::Child) -> ShellOutput {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("shell finished within 60 s")
        .expect("shell output");
    ShellOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `script` in a fresh session under `policy`, in `cwd`.
pub async fn run(
    policy: Arc<dyn execgate_escalate_server::Policy>,
    script: &str,
    cwd: &Path,
) -> (ShellOutput, Recorder) {
    let (mut session, recorder) = start_session(policy);
    let child = spawn_zsh(&mut session, script, cwd);
    let output = finish(child).await;
    session.shutdown().await;
    (output, recorder)
}

pub fn os(text: &str) -> OsString {
    OsString::from(text)
}

/// True while `pid` exists at all (a zombie counts: it was not reaped).
pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Copies `files` (source, name) into a fresh directory under `/var/tmp`
/// that every user can enter, each copy executable by all: what a test
/// runs as another user must not depend on where the checkout is (a clone
/// in root's mode-700 home is out of every other user's reach).
pub fn stage_for_other_users(files: &[(&Path, &str)]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let stage = tempfile::Builder::new()
        .prefix("execgate-staged")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(stage.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (from, name) in files {
        let to = stage.path().join(name);
        // Copied by another process: a copy written here is open for
        // writing in every child another test thread forks meanwhile,
        // until that child executes, and executing the copy then fails
        // with ETXTBSY (seen in CI).
        let copied = std::process::Command::new("cp")
            .arg("--")
            .args([*from, to.as_path()])
            .status()
            .unwrap_or_else(|error| panic!("cannot stage {}: {error}", from.display()));
        assert!(copied.success(), "cannot stage {}", from.display());
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    stage
}

/// Removes a directory the test made outside its temporary directory.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A connected pair of stream sockets, close-on-exec: a private
/// connection as the wrapper makes one.
pub fn stream_pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

/// The unprivileged user `scripts/setup-debian.sh` creates.
pub const UNPRIVILEGED_USER: &str = "execgate-ci";

/// This test binary and the wrapper, helper and zsh it runs, staged where
/// [`UNPRIVILEGED_USER`] can run them: bubblewrap started by root and by an
/// ordinary user take different paths, so suites run again as that user.
pub struct UnprivilegedRun {
    pub stage: tempfile::TempDir,
    user: nix::unistd::User,
    test_binary: PathBuf,
    wrapper: PathBuf,
    helper: PathBuf,
    zsh: PathBuf,
}

impl UnprivilegedRun {
    pub fn stage() -> UnprivilegedRun {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test stages files as root (CI runs as root)"
        );
        let user = nix::unistd::User::from_name(UNPRIVILEGED_USER)
            .unwrap()
            .unwrap_or_else(|| panic!("no user {UNPRIVILEGED_USER}: run scripts/setup-debian.sh"));
        let test_binary = std::env::current_exe().unwrap();
        let (wrapper, helper, zsh) = (wrapper(), sandbox_helper(), zsh());
        let stage = stage_for_other_users(&[
            (&test_binary, "e2e"),
            (&wrapper, "wrapper"),
            (&helper, "helper"),
            (&zsh, "zsh"),
        ]);
        let staged = |name: &str| stage.path().join(name);
        let run = UnprivilegedRun {
            test_binary: staged("e2e"),
            wrapper: staged("wrapper"),
            helper: staged("helper"),
            zsh: staged("zsh"),
            stage,
            user,
        };
        run.hand_over(&[run.stage.path()]);
        run
    }

    /// Makes `paths` the user's own, mode 755.
    pub fn hand_over(&self, paths: &[&Path]) {
        use std::os::unix::fs::PermissionsExt;
        for path in paths {
            nix::unistd::chown(*path, Some(self.user.uid), Some(self.user.gid)).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// Runs the staged test binary as the user with `args` (test filters)
    /// and `env`, in the stage, and returns its output once it succeeded.
    pub fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> String {
        let output = std::process::Command::new("setpriv")
            .args(["--reuid", UNPRIVILEGED_USER, "--regid", UNPRIVILEGED_USER])
            .args(["--clear-groups", "--"])
            .arg(&self.test_binary)
            .args(args)
            .arg("--test-threads=1")
            .env("EXECGATE_TEST_WRAPPER", &self.wrapper)
            .env("EXECGATE_TEST_HELPER", &self.helper)
            .env("EXECGATE_ZSH", &self.zsh)
            .envs(env.iter().map(|(name, value)| (*name, *value)))
            .env("HOME", self.stage.path())
            .current_dir(self.stage.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        stdout
    }
}

/// The sandbox's inner helper built from this workspace's current code
/// (`EXECGATE_TEST_HELPER` overrides it, as for the wrapper).
pub fn sandbox_helper() -> PathBuf {
    std::env::var_os("EXECGATE_TEST_HELPER").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_e2e-sandbox-helper")),
        PathBuf::from,
    )
}

/// A session whose shell and sandboxed escalations run in `profile`, with
/// `cwd` as the session's working directory.
pub fn start_sandboxed_session(
    policy: Arc<dyn execgate_escalate_server::Policy>,
    profile: execgate_escalate_server::sandbox::PermissionProfile,
    cwd: &Path,
) -> (Session, Recorder) {
    use execgate_escalate_server::sandbox::{Launcher, SandboxContext};
    use execgate_escalate_server::SessionSandbox;
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper(), policy);
    config.events = Some(recorder.sink());
    config.sandbox = Some(SessionSandbox {
        launcher: Launcher::new(sandbox_helper()).expect("this machine can sandbox"),
        turn_default: profile,
        context: SandboxContext::new(cwd),
    });
    (Session::start(config).expect("session starts"), recorder)
}

/// The session's shell (inside its sandbox) running `script` in `cwd`.
pub fn spawn_session_shell(
    session: &mut Session,
    script: &str,
    cwd: &Path,
) -> tokio::process::Child {
    let mut command = session.shell_command(&zsh(), &[os("-f"), os("-c"), os(script)]);
    command
        .current_dir(cwd)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    session.seal_shell_command(&mut command);
    let child = tokio::process::Command::from(command.command)
        .kill_on_drop(true)
        .spawn()
        .expect("the sandboxed shell starts");
    session.shell_spawned();
    child
}

/// Runs `script` in a sandboxed session's shell and collects its output.
pub async fn run_sandboxed(
    policy: Arc<dyn execgate_escalate_server::Policy>,
    profile: execgate_escalate_server::sandbox::PermissionProfile,
    script: &str,
    cwd: &Path,
) -> (ShellOutput, Recorder) {
    let (mut session, recorder) = start_sandboxed_session(policy, profile, cwd);
    let child = spawn_session_shell(&mut session, script, cwd);
    let output = finish(child).await;
    session.shutdown().await;
    (output, recorder)
}

/// `DIR/NAME.so`, built with `cc` from the C `source`.
pub fn shared_library(dir: &Path, name: &str, source: &str) -> PathBuf {
    let file = dir.join(format!("{name}.c"));
    std::fs::write(&file, source).unwrap();
    let library = dir.join(format!("{name}.so"));
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&file)
        .status()
        .unwrap();
    assert!(built.success(), "cc could not build {}", library.display());
    library
}
