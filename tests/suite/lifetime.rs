//! Nothing escalated outlives its session, however the process that owns
//! it ends: an agent embedding core-bridge (`bridge-host`) killed by
//! `SIGTERM`, `SIGINT`, `SIGHUP` (default actions: it takes none over) and
//! `SIGKILL`, twenty times each, with a cgroup and with process groups
//! only. The CLI's own signal handling is tested in `cli/tests/cli.rs`.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::*;

/// Whether `pid` still runs (a zombie does not) with `sleep SECONDS` as its
/// command line.
fn sleep_runs(pid: i32, seconds: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let zombie = stat_fields(pid).is_some_and(|fields| fields[0] == "Z");
    cmdline.ends_with(format!("sleep\0{seconds}\0").as_bytes()) && !zombie
}

/// The write end of `owner`'s warden pipe, opened through
/// `/proc/OWNER/fd` as any process of the user outside the sandboxes (an
/// unsandboxed escalation among them) can.
fn open_warden_pipe(owner: i32) -> std::fs::File {
    let warden = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            stat_fields(pid).is_some_and(|fields| fields[1] == owner.to_string())
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .starts_with(b"execgate-warden\0")
        })
        .expect("the owner has a warden");
    let pipe = std::fs::read_link(format!("/proc/{warden}/fd/3")).unwrap();
    let held = std::fs::read_dir(format!("/proc/{owner}/fd"))
        .unwrap()
        .filter_map(|entry| Some(entry.ok()?.path()))
        .find(|fd| std::fs::read_link(fd).is_ok_and(|target| target == pipe))
        .expect("the owner holds its warden's pipe");
    std::fs::OpenOptions::new().write(true).open(held).unwrap()
}

fn embedding_owner_killed_leaves_nothing(signal: Signal, scope: &str, rounds: u32) {
    owner_killed_leaves_nothing(signal, scope, rounds, false);
}

/// With `hold_warden_pipe`, the test holds the warden's pipe open while
/// the owner is killed.
fn owner_killed_leaves_nothing(signal: Signal, scope: &str, rounds: u32, hold_warden_pipe: bool) {
    let host = env!("CARGO_BIN_EXE_bridge-host");
    let workspace = tempfile::tempdir().unwrap();
    for round in 0..rounds {
        let offset =
            if scope == "cgroup" { 0 } else { 100 } + if hold_warden_pipe { 200 } else { 0 };
        let seconds = format!("{}.{round}", 4000 + offset + signal as i32);
        let mut owner = Command::new(host)
            .arg(zsh())
            .arg(wrapper())
            .arg(sandbox_helper())
            .arg(workspace.path())
            .arg(&seconds)
            .env("EXECGATE_SCOPE", scope)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(owner.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pids: Vec<i32> = line
            .strip_prefix("started ")
            .unwrap_or_else(|| panic!("round {round}: bridge-host said {line:?}"))
            .split_whitespace()
            .map(|pid| pid.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2);
        // A child reported started may be a moment from its exec (seen
        // once under a full suite's load).
        let running_by = Instant::now() + Duration::from_secs(5);
        while !pids.iter().all(|pid| sleep_runs(*pid, &seconds)) {
            assert!(
                Instant::now() < running_by,
                "round {round}: {pids:?} do not run sleep"
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        let owner_pid = i32::try_from(owner.id()).unwrap();
        let _held = hold_warden_pipe.then(|| open_warden_pipe(owner_pid));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(owner_pid), signal).unwrap();
        // A bounded wait: an owner that survives the signal fails the test
        // rather than hanging it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = owner.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = owner.kill();
                panic!("{scope}, round {round}: the owner outlived {signal}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(signal as i32),
            "round {round}"
        );
        // The warden kills them as it sees the owner end, on its own time:
        // a fresh CI run's full suite once took past a second (ci-75).
        let deadline = Instant::now() + Duration::from_secs(5);
        let survivors = loop {
            let survivors: Vec<i32> = pids
                .iter()
                .copied()
                .filter(|pid| sleep_runs(*pid, &seconds))
                .collect();
            if survivors.is_empty() || Instant::now() >= deadline {
                break survivors;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            survivors.is_empty(),
            "{scope}, round {round}: {signal} of the owner left {survivors:?} running after 5 s"
        );
    }
}

/// What `bridge-host ... drop-session|drop-handle|replace-warden` reports
/// under `scope`.
fn dropped_run(what: &str, scope: &str) -> String {
    let workspace = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bridge-host"))
        .arg(zsh())
        .arg(wrapper())
        .arg(sandbox_helper())
        .arg(workspace.path())
        .arg("0")
        .arg(what)
        .env("EXECGATE_SCOPE", scope)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A probe found, without a session cgroup: a dropped `ShellSession` left
/// its `run()`'s shell running (every exec then failing closed, so the loop
/// spun) and the kept handle's `wait()` hung; and a dropped `RunHandle`
/// (the future of a timed-out `wait()`) left its command running. Each now
/// ends the command, with a cgroup or without.
#[test]
fn dropping_a_session_or_a_run_handle_ends_the_command() {
    for scope in ["process-groups", "cgroup"] {
        assert_eq!(
            dropped_run("drop-session", scope),
            "stopped\nended\n",
            "{scope}"
        );
        assert_eq!(dropped_run("drop-handle", scope), "stopped\n", "{scope}");
    }
}

/// Probe 198: an embedding program that ignored `SIGCHLD` had every
/// command hang (bubblewrap inherited it, and never saw its child end);
/// its children are reaped unwaited, so a session refuses to start, and
/// says why.
#[test]
fn a_session_refuses_to_start_where_children_cannot_be_waited_for() {
    let workspace = tempfile::tempdir().unwrap();
    let output = Command::new("timeout")
        .args(["60", "perl", "-e", "$SIG{CHLD} = 'IGNORE'; exec @ARGV"])
        .arg(env!("CARGO_BIN_EXE_bridge-host"))
        .arg(zsh())
        .arg(wrapper())
        .arg(sandbox_helper())
        .arg(workspace.path())
        .args(["0", "drop-handle"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ignores SIGCHLD"), "{stderr}");
}

/// Probe 198: a warden killed from outside stayed a zombie child of the
/// embedding program for its whole life, one more for each warden a new
/// session started in its place.
#[test]
fn a_replaced_warden_is_reaped() {
    for scope in ["process-groups", "cgroup"] {
        assert_eq!(
            dropped_run("replace-warden", scope),
            "reaped replaced\n",
            "{scope}"
        );
    }
}

#[test]
fn an_embedding_owner_killed_by_sigterm_leaves_no_escalated_child() {
    embedding_owner_killed_leaves_nothing(Signal::SIGTERM, "cgroup", 20);
}

#[test]
fn an_embedding_owner_killed_by_sigint_leaves_no_escalated_child() {
    embedding_owner_killed_leaves_nothing(Signal::SIGINT, "cgroup", 20);
}

#[test]
fn an_embedding_owner_killed_by_sighup_leaves_no_escalated_child() {
    embedding_owner_killed_leaves_nothing(Signal::SIGHUP, "cgroup", 20);
}

#[test]
fn an_embedding_owner_killed_by_sigkill_leaves_no_escalated_child() {
    embedding_owner_killed_leaves_nothing(Signal::SIGKILL, "cgroup", 20);
}

#[test]
fn an_embedding_owner_without_a_cgroup_leaves_no_escalated_child() {
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        embedding_owner_killed_leaves_nothing(signal, "process-groups", 5);
    }
}

/// A probe (171): a process outside every sandbox could open the warden's
/// pipe through the owner's `/proc/PID/fd` and hold it; the warden then
/// never saw the owner end, and what the session escalated outlived it.
/// The warden watches its owner's pidfd too.
#[test]
fn an_owner_whose_warden_pipe_is_held_open_leaves_no_escalated_child() {
    for scope in ["cgroup", "process-groups"] {
        owner_killed_leaves_nothing(Signal::SIGKILL, scope, 3, true);
    }
}

/// A probe (109): escalations being started as a session ended were
/// neither counted in its end's `running_children` nor stopped: their
/// `start` records came after `session-end`, one said 0 running. Each
/// child started after the end is one the end counted, and is killed.
#[tokio::test(flavor = "multi_thread")]
async fn what_starts_as_a_session_ends_is_counted_and_killed() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..12u64 {
        let (mut session, recorder) =
            start_session(policy_by_path(&[("/usr/bin/sleep", escalate())]));
        let shells: Vec<_> = (0..6)
            .map(|_| {
                spawn_zsh(
                    &mut session,
                    "while :; do /usr/bin/sleep 0.01; done",
                    dir.path(),
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + 17 * round)).await;
        session.shutdown().await;
        drop(shells);
        let events = recorder.0.lock().unwrap().clone();
        let end = events
            .iter()
            .position(|event| matches!(event, SessionEvent::Ended { .. }))
            .expect("the session's end is recorded");
        let SessionEvent::Ended { running, .. } = &events[end] else {
            unreachable!()
        };
        let started_after: Vec<u64> = events[end..]
            .iter()
            .filter_map(|event| match event {
                SessionEvent::Started { request_id, .. } => Some(*request_id),
                _ => None,
            })
            .collect();
        assert!(
            started_after.len() <= *running,
            "round {round}: {} started after the end, which counted {running} running",
            started_after.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_records_its_end_once_and_says_how() {
    let (session, recorder) = start_session(policy_by_path(&[]));
    session.terminate(Signal::SIGTERM as i32);
    session.cancel();
    session.shutdown().await;
    assert_eq!(
        recorder.ends(),
        [execgate_escalate_server::SessionEnd::Signal(15)]
    );

    let (session, recorder) = start_session(policy_by_path(&[]));
    drop(session);
    assert_eq!(
        recorder.ends(),
        [execgate_escalate_server::SessionEnd::Closed]
    );
}

/// An escalated child runs in its session's cgroup (started there with `CLONE_INTO_CGROUP` since issue 19, joined by
/// a write before): the cgroup that kills it with the session.
#[tokio::test(flavor = "multi_thread")]
async fn escalated_children_run_in_their_sessions_cgroup() {
    let execgate_escalate_server::ScopeSupport::Cgroup(parent) =
        execgate_escalate_server::scope_support()
    else {
        panic!("this machine has a cgroup for sessions; the test needs it");
    };
    let parent = parent.to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/cat", escalate())]);
    let (output, recorder) = run(policy, "cat /proc/self/cgroup", dir.path()).await;
    assert!(!recorder.started_pids().is_empty(), "nothing escalated");
    let unified = unified_cgroup(&output.stdout)
        .unwrap_or_else(|| panic!("no cgroup v2 line: {} / {}", output.stdout, output.stderr));
    let session = unified.rsplit('/').next().unwrap_or_default();
    assert!(
        session.starts_with("session-"),
        "{unified} (parent {parent})"
    );
}

/// A shell's command, taken out of its `ShellCommand` and spawned after
/// the rest was dropped, still joins its command's cgroup: the benchmark
/// did so, and its spawn panicked (the cgroup's descriptor was closed, and
/// its number, reused by the standard library's exec-error pipe, got the
/// join's write).
#[tokio::test(flavor = "multi_thread")]
async fn a_shell_spawned_after_its_cgroup_handle_was_dropped_joins_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut session, _recorder) = start_sandboxed_session(
        policy_by_path(&[]),
        execgate_escalate_server::sandbox::PermissionProfile::preset("workspace-write").unwrap(),
        dir.path(),
    );
    let mut command = session
        .shell_command(
            &zsh(),
            &[os("-f"), os("-c"), os("print -r -- started; sleep 0.5")],
        )
        .command;
    command
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .expect("the shell starts");
    session.shell_spawned();
    // bubblewrap, the shell's sandbox, runs until the shell ends.
    let joined = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id().unwrap()));
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "started\n", "{output:?}");
    let joined = joined.unwrap();
    let command = unified_cgroup(&joined)
        .and_then(|own| own.rsplit('/').next())
        .unwrap_or_default();
    assert!(command.starts_with("command-"), "{joined}");
}
