//! `ShellSession::metrics()`: a session's counters, by outcome, execution
//! and failure, from real decisions in a sandboxed session.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;

use execgate_core_bridge::server::{Decision, Execution};
use execgate_core_bridge::{ExecOptions, RunOptions, ShellSession, ShellSessionConfig, Tools};

use super::*;

fn tools() -> Tools {
    Tools {
        zsh: zsh(),
        wrapper: wrapper(),
        sandbox_helper: sandbox_helper(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_decisions_escalations_and_denials() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[
        ("/usr/bin/uname", escalate()),
        ("/usr/bin/id", Decision::Escalate(Execution::TurnDefault)),
        (
            "/usr/bin/rm",
            Decision::Deny {
                reason: "no".into(),
            },
        ),
    ]);
    let mut config = ShellSessionConfig::new(dir.path(), tools(), policy);
    config.profile_name = "workspace-write".into();
    let session = ShellSession::start(config).unwrap();
    assert_eq!(session.metrics().decided(), 0);
    let outcome = session
        .run(
            "/bin/true; /bin/true; uname -s; id -u; rm -f x; print $EXECGATE_PROFILE",
            RunOptions::default(),
        )
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(
        outcome.stdout, b"Linux\n0\nworkspace-write\n",
        "{outcome:?}"
    );
    let metrics = session.metrics();
    assert_eq!(
        (
            metrics.decided_run,
            metrics.decided_escalate,
            metrics.decided_deny,
            metrics.decided()
        ),
        (2, 2, 1, 5),
        "{metrics:?}"
    );
    assert_eq!(
        metrics.escalations_by_execution,
        BTreeMap::from([("turn-default", 1), ("unsandboxed", 1)])
    );
    assert_eq!(
        (metrics.sandbox, metrics.profile.as_str()),
        ("bubblewrap", "workspace-write")
    );
    assert_eq!(metrics.spawn_failures, 0);
    assert!(metrics.sandbox_start_failures.is_empty());
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_that_cannot_start_is_counted_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = ShellSessionConfig::new(dir.path(), tools(), policy_by_path(&[]));
    let session = ShellSession::start(config).unwrap();
    // The working directory vanishes: the shell cannot start in it.
    drop(dir);
    let error = session
        .run("/bin/true", RunOptions::default())
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    let metrics = session.metrics();
    assert_eq!(
        metrics.sandbox_start_failures.values().sum::<u64>(),
        1,
        "{error}: {metrics:?}"
    );
    let reason = metrics.sandbox_start_failures.keys().next().unwrap();
    assert!(reason.contains("No such file"), "{reason}");
    // Probe 163: said so that the user can act, and a long-lived
    // process's shell is counted as a command's is.
    assert!(reason.contains("the directory is gone"), "{reason}");
    let error = session
        .exec_command("/bin/true", ExecOptions::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("the directory is gone"),
        "{error}"
    );
    let metrics = session.metrics();
    assert_eq!(
        metrics.sandbox_start_failures.values().sum::<u64>(),
        2,
        "{metrics:?}"
    );
    session.shutdown().await;
}

/// A session in `workspace-write` in a fresh `ws`, with read on a
/// sibling directory `granted` besides: (the temporary directory, `ws`,
/// `granted`, the session).
fn session_granted_a_directory(
    policy: std::sync::Arc<dyn execgate_core_bridge::server::Policy>,
    audit: Option<&Path>,
) -> (tempfile::TempDir, PathBuf, PathBuf, ShellSession) {
    use execgate_audit::{AuditLog, RecordOptions, Rotation, SessionAudit};
    use execgate_core_bridge::server::sandbox::{parse_target, Access, PermissionProfile};
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let (ws, granted) = (root.join("ws"), root.join("granted"));
    std::fs::create_dir(&ws).unwrap();
    std::fs::create_dir(&granted).unwrap();
    let mut config = ShellSessionConfig::new(&ws, tools(), policy);
    let mut profile = PermissionProfile::preset("workspace-write").unwrap();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    file_system
        .push(
            parse_target(granted.to_str().unwrap(), None).unwrap(),
            Access::Read,
        )
        .unwrap();
    config.profile = profile;
    config.audit = audit.map(|log| {
        let log = Arc::new(AuditLog::open(log, Rotation::default()).unwrap());
        Arc::new(SessionAudit::new(log, RecordOptions::default())) as _
    });
    (dir, ws, granted, ShellSession::start(config).unwrap())
}

/// Probe 192: bubblewrap's own failure to set a sandbox up (here: a
/// directory the profile grants, removed since the session began) exits
/// 1, as the command's failure would. It is told apart (bubblewrap's
/// status lines report no exit): a run fails saying so, a long-lived
/// process ends with 125 and says so, and both are counted and recorded
/// in the audit log, each with its command (the log held no trace of
/// them). A command's own exit status 1 stays the command's.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_bubblewrap_cannot_set_up_is_told_from_the_commands_failure() {
    use execgate_core_bridge::{BridgeError, CommandStatus, ExecResponse};
    // Outside every root the sandbox can write.
    let logs = tempfile::Builder::new()
        .prefix("execgate-log")
        .tempdir_in("/var/tmp")
        .unwrap();
    let log = logs.path().join("audit.jsonl");
    let (_dir, _, granted, session) = session_granted_a_directory(policy_by_path(&[]), Some(&log));
    let own_failure = session
        .run("exit 1", RunOptions::default())
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(own_failure.status, CommandStatus::Exited(1));
    std::fs::remove_dir(&granted).unwrap();
    let error = session
        .run("print ran", RunOptions::default())
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(
        matches!(error, BridgeError::SandboxNotSetUp { .. }),
        "{error:?}"
    );
    let said = error.to_string();
    assert!(said.contains("nothing ran"), "{said}");
    assert!(said.contains(granted.to_str().unwrap()), "{said}");
    let metrics = session.metrics();
    assert_eq!(
        metrics.sandbox_start_failures.values().sum::<u64>(),
        1,
        "{metrics:?}"
    );
    let response = session
        .exec_command("print ran", ExecOptions::default())
        .await
        .unwrap();
    let ExecResponse::Exited(exited) = response else {
        panic!("still running: {response:?}")
    };
    assert_eq!(exited.status, CommandStatus::Exited(125));
    let stderr = String::from_utf8_lossy(&exited.output.stderr);
    assert!(stderr.contains("could not set the sandbox up"), "{stderr}");
    assert!(!String::from_utf8_lossy(&exited.output.stdout).contains("ran"));
    // Counted as `run`'s is (review 41).
    assert_eq!(
        session
            .metrics()
            .sandbox_start_failures
            .values()
            .sum::<u64>(),
        2
    );
    // Recorded before either failure was told.
    let records = execgate_audit::read_records(&log).unwrap();
    let not_started: Vec<_> = records
        .iter()
        .filter(|record| record.event.action == "error")
        .map(|record| {
            let args = record.process.args.as_deref().unwrap_or_default();
            let command = args.last().map(execgate_audit::Bytes::lossy);
            (command.unwrap_or_default(), record.error.clone())
        })
        .collect();
    assert_eq!(not_started.len(), 2, "{records:#?}");
    for (command, error) in &not_started {
        assert!(command.ends_with("print ran"), "{command}");
        let error = error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("the command's shell did not start"),
            "{error}"
        );
        assert!(error.contains("nothing ran"), "{error}");
    }
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escalations_sandbox_bubblewrap_cannot_set_up_is_told_from_the_commands_failure() {
    let policy = policy_by_path(&[("/usr/bin/env", Decision::Escalate(Execution::TurnDefault))]);
    let (_dir, ws, granted, session) = session_granted_a_directory(policy, None);
    let go = ws.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // One shell, started while the grant is there; its escalations start
    // (or are handed) sandboxes after it is gone.
    let script = ": > ready; read -r line < go; for i in 1 2 3 4; do /usr/bin/env true; \
                  print -r -- \"status $?\"; done";
    let handle = session.run(script, RunOptions::default()).unwrap();
    let (gone, ready) = (granted.clone(), ws.join("ready"));
    tokio::task::spawn_blocking(move || {
        // Bounded: a shell that never started fails the test, not hangs it
        // (review 43).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the shell never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::remove_dir(&gone).unwrap();
        // Opened without waiting for a reader, which the shell is about to be.
        let mut fifo = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&go)
            {
                Ok(fifo) => break fifo,
                Err(error) if error.raw_os_error() == Some(libc::ENXIO) => {
                    assert!(std::time::Instant::now() < deadline, "the shell never read");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => panic!("cannot open the FIFO: {error}"),
            }
        };
        std::io::Write::write_all(&mut fifo, b"go\n").unwrap();
    })
    .await
    .unwrap();
    let outcome = handle.wait().await.unwrap();
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    let statuses: Vec<&str> = stdout.lines().collect();
    assert_eq!(statuses.len(), 4, "{stdout}{stderr}");
    // A spare set up before the grant went may run the first; no status
    // is bubblewrap's 1, and the sandboxes started since ran nothing.
    assert!(
        statuses
            .iter()
            .all(|status| ["status 0", "status 126"].contains(status)),
        "{stdout}{stderr}"
    );
    assert_eq!(statuses[3], "status 126", "{stdout}{stderr}");
    assert!(stderr.contains("bwrap: "), "{stderr}");
    assert!(session.metrics().spawn_failures >= 1);
    session.shutdown().await;
}
