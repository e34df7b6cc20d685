//! core-bridge: one-shot commands through the zsh-fork path, in a
//! sandboxed session.

use std::time::Instant;

use execgate_core_bridge::{
    BridgeError, CommandStatus, EnvInherit, EnvPolicy, OutputChunk, RunOptions, RunOutcome,
    ShellSession, ShellSessionConfig, Tools,
};

use super::*;

fn tools() -> Tools {
    Tools {
        zsh: zsh(),
        wrapper: wrapper(),
        sandbox_helper: sandbox_helper(),
    }
}

/// Runs `script` in `session` and waits for its end.
async fn run_to_end(session: &ShellSession, script: &str, options: RunOptions) -> RunOutcome {
    session.run(script, options).unwrap().wait().await.unwrap()
}

fn session_in(cwd: &Path, recorder: &Recorder, env: EnvPolicy) -> ShellSession {
    let mut config = ShellSessionConfig::new(cwd, tools(), policy_by_path(&[]));
    config.events = Some(recorder.sink());
    config.env = env;
    ShellSession::start(config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn output_streams_as_separate_chunks_and_the_status_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let mut handle = session
        .run(
            "print out1; print -u2 err1; sleep 0.2; print out2; exit 4",
            RunOptions::default(),
        )
        .unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = handle.next_chunk().await {
        chunks.push(chunk);
    }
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status, CommandStatus::Exited(4));
    assert_eq!(outcome.stdout, b"out1\nout2\n");
    assert_eq!(outcome.stderr, b"err1\n");
    assert!(
        chunks.contains(&OutputChunk::Stderr(b"err1\n".to_vec())),
        "{chunks:?}"
    );
    // out2 came after the sleep: a chunk of its own.
    assert!(
        chunks.contains(&OutputChunk::Stdout(b"out2\n".to_vec())),
        "{chunks:?}"
    );
    assert!(!outcome.truncated && !outcome.timed_out && !outcome.cancelled);
    assert_eq!(recorder.decided_programs(), ["/usr/bin/sleep"]);

    let outcome = run_to_end(&session, "kill -TERM $$", RunOptions::default()).await;
    assert_eq!(outcome.status.code(), 143);
    session.shutdown().await;
}

/// A sandboxed shell that dies of a signal ends its sandbox with the exit
/// status 128 plus it, the status of an `exit` with that code; the
/// sandbox's init says which it was, as an unsandboxed shell's status does.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_shell_killed_by_a_signal_is_told_from_one_exiting_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let cases = [
        ("kill -TERM $$", CommandStatus::Signaled(15)),
        ("kill -KILL $$", CommandStatus::Signaled(9)),
        ("exit 143", CommandStatus::Exited(143)),
        // The shell lives on and exits with its child's status.
        (
            "/bin/sh -c 'kill -KILL $$'; exit $?",
            CommandStatus::Exited(137),
        ),
    ];
    for (script, expected) in cases {
        let outcome = run_to_end(&session, script, RunOptions::default()).await;
        assert_eq!(outcome.status, expected, "{script}");
        assert!(!outcome.cancelled && !outcome.timed_out, "{script}");
    }
    // Review 45: with the report socket, the sandbox's init took the shell
    // for an escalation and left it stopped, for good: no job control
    // above the sandbox sees the stop.
    let options = RunOptions {
        timeout: Some(Duration::from_secs(20)),
        ..RunOptions::default()
    };
    let outcome = run_to_end(&session, "kill -STOP $$; print -r -- went on", options).await;
    assert_eq!(outcome.status, CommandStatus::Exited(0));
    assert_eq!(outcome.stdout, b"went on\n");
    session.shutdown().await;
}

/// Probe 198: `run` from a thread outside any runtime panicked ("there is
/// no reactor running"); the runtime the session started in follows the
/// command.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_can_be_run_from_a_thread_outside_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let handle = std::thread::scope(|scope| {
        scope
            .spawn(|| session.run("print -r -- from a thread; exit 5", RunOptions::default()))
            .join()
            .unwrap()
    })
    .unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status, CommandStatus::Exited(5));
    assert_eq!(outcome.stdout, b"from a thread\n");
    session.shutdown().await;
}

/// Probe 224: a command whose session's runtime shut down under it, and
/// one run after, ended in "the command's task failed".
#[test]
fn a_command_of_a_session_whose_runtime_ended_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let first = tokio::runtime::Runtime::new().unwrap();
    let session = first.block_on(async { session_in(dir.path(), &recorder, EnvPolicy::default()) });
    let running = session.run("sleep 30", RunOptions::default()).unwrap();
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.shutdown_background();
        let started = Instant::now();
        let outcome = running.wait().await;
        assert!(
            matches!(outcome, Err(BridgeError::RuntimeEnded)),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let later = session
            .run("true", RunOptions::default())
            .unwrap()
            .wait()
            .await;
        assert!(matches!(later, Err(BridgeError::RuntimeEnded)), "{later:?}");
        session.shutdown().await;
    });
}

/// Probe 198: a hand-built `Tools` was not checked: with `/bin/true` as
/// the helper every command "exited 0" and nothing ran; with the wrapper
/// and helper swapped every command failed naming neither. A session
/// takes only tools some build of execgate made as those tools.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_refuses_tools_no_build_made() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = [
        (
            "/bin/true",
            "sandbox helper",
            "no build of execgate made it",
        ),
        (
            "swapped",
            "exec wrapper",
            "it is this build's sandbox helper",
        ),
    ];
    for (case, what, why) in wrong {
        let mut tools = tools();
        match case {
            "/bin/true" => tools.sandbox_helper = "/bin/true".into(),
            _ => std::mem::swap(&mut tools.wrapper, &mut tools.sandbox_helper),
        }
        let config = ShellSessionConfig::new(dir.path(), tools, policy_by_path(&[]));
        let error = match ShellSession::start(config) {
            Ok(_) => panic!("{case}: the session started"),
            Err(error) => error,
        };
        assert!(
            matches!(&error, BridgeError::NotTheTool { what: named, why: said, .. }
                if *named == what && *said == why),
            "{case}: {error:?}"
        );
    }
}

/// Set in the process that runs
/// [`a_session_under_a_low_descriptor_limit_is_refused_saying_why`] under
/// that limit.
const LOW_DESCRIPTOR_LIMIT: &str = "EXECGATE_TEST_LOW_DESCRIPTOR_LIMIT";

/// Probe 224: under `ulimit -n 64` a library session started, and every
/// program was denied, "started without an execgate session" (the CLI
/// refused such a limit up front). The session refuses to start, naming
/// the limit. Runs in a process of its own, under that limit.
#[test]
fn a_session_under_a_low_descriptor_limit_is_refused_saying_why() {
    if std::env::var_os(LOW_DESCRIPTOR_LIMIT).is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _in_it = runtime.enter();
        let dir = tempfile::tempdir().unwrap();
        let config = ShellSessionConfig::new(dir.path(), tools(), policy_by_path(&[]));
        let error = ShellSession::start(config).err();
        assert!(
            matches!(
                error,
                Some(BridgeError::Session(
                    execgate_escalate_server::StartError::TooFewDescriptors(64)
                ))
            ),
            "{error:?}"
        );
        assert!(error.unwrap().to_string().contains("ulimit -n"));
        return;
    }
    rerun_under_descriptor_limit(
        "suite::bridge::a_session_under_a_low_descriptor_limit_is_refused_saying_why",
        "64:4096",
        LOW_DESCRIPTOR_LIMIT,
    );
}

/// Probe 198: a library session's audit log was shown to its sandboxes
/// (only `execgate` hid it): a sandboxed command read the records, and
/// held the log's lock, so that every escalation, and every session
/// sharing the log, was refused. A session hides the log it records to.
#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_sandboxes_see_nothing_of_its_audit_log() {
    use execgate_audit::{AuditLog, RecordOptions, Rotation, SessionAudit};
    let dir = tempfile::tempdir().unwrap();
    // Outside every writable root of the sandbox.
    let logs = tempfile::Builder::new()
        .prefix("execgate-log")
        .tempdir_in("/var/tmp")
        .unwrap();
    let log =
        Arc::new(AuditLog::open(logs.path().join("audit.jsonl"), Rotation::default()).unwrap());
    let mut config = ShellSessionConfig::new(dir.path(), tools(), policy_by_path(&[]));
    config.audit = Some(Arc::new(SessionAudit::new(log, RecordOptions::default())));
    let session = ShellSession::start(config).unwrap();
    let script = format!(
        "print -r -- seen: $(ls -A {0}); exec 3< {0}/audit.jsonl.lock && print -r -- opened",
        logs.path().display()
    );
    let outcome = run_to_end(&session, &script, RunOptions::default()).await;
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert_eq!(outcome.stdout, b"seen:\n", "{stderr}");
    assert_ne!(outcome.status, CommandStatus::Exited(0), "{stderr}");
    session.shutdown().await;
    // Recorded all the same.
    let records = std::fs::read_to_string(logs.path().join("audit.jsonl")).unwrap();
    assert!(records.contains("\"session-start\""), "{records}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_or_a_cancellation_ends_the_command_and_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let started = Instant::now();
    let options = RunOptions {
        timeout: Some(Duration::from_millis(300)),
        ..RunOptions::default()
    };
    let outcome = run_to_end(&session, "sleep 30 & sleep 30", options).await;
    assert!(outcome.timed_out);
    assert!(
        matches!(outcome.status, CommandStatus::Signaled(9)),
        "{:?}",
        outcome.status
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    let options = RunOptions::default();
    let cancel = options.cancel.clone();
    let handle = session.run("sleep 30", options).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    let outcome = handle.wait().await.unwrap();
    assert!(outcome.cancelled);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_beyond_the_cap_is_dropped_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let options = RunOptions {
        output_limit: 1000,
        ..RunOptions::default()
    };
    let outcome = run_to_end(
        &session,
        "head -c 100000 /dev/zero; print -u2 tail",
        options,
    )
    .await;
    assert_eq!(outcome.status, CommandStatus::Exited(0));
    assert!(outcome.truncated);
    assert_eq!(outcome.stdout.len() + outcome.stderr.len(), 1000);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_policy_shapes_the_shell_and_zsh_on_path_is_patched() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let env = EnvPolicy {
        inherit: EnvInherit::Core,
        set: [("EXECGATE_TEST_SET".to_owned(), "given".to_owned())].into(),
        ..EnvPolicy::default()
    };
    // Cargo gives the test process this variable; `core` must drop it.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    let session = session_in(dir.path(), &recorder, env);
    let script = "print -r -- ${EXECGATE_TEST_SET:-unset} ${CARGO_PKG_NAME:-unset}; \
                  zsh -fc '/bin/echo nested'";
    let outcome = run_to_end(&session, script, RunOptions::default()).await;
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        "given unset\nnested\n"
    );
    // The nested shell asked the same session about its own command.
    assert!(recorder
        .decided_programs()
        .contains(&"/usr/bin/echo".to_owned()));
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_that_left_the_group_cannot_hold_run_open() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let mut config = ShellSessionConfig::new(dir.path(), tools(), policy_by_path(&[]));
    config.events = Some(recorder.sink());
    // Without a sandbox, nothing (no pid namespace) ends a setsid'ed
    // process with the shell; it keeps stdout open.
    config.profile = execgate_escalate_server::sandbox::PermissionProfile::Disabled;
    let session = ShellSession::start(config).unwrap();
    let started = Instant::now();
    let outcome = session
        .run(
            "print before; setsid sleep 37.25 & sleep 0.5; print after",
            RunOptions::default(),
        )
        .unwrap()
        .wait()
        .await
        .unwrap();
    let waited = started.elapsed();
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 37.25"])
        .status();
    assert_eq!(outcome.stdout, b"before\nafter\n");
    assert!(outcome.truncated, "the cut output is flagged");
    // Not the 37 seconds the holder lives.
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    session.shutdown().await;
}

/// Every session keeps the link to its patched zsh (and its startup files)
/// in a private directory under /var/tmp, read-only inside its own
/// sandbox. A sandbox whose writable roots take in /var/tmp (a session
/// started there) must not be able to replace another session's: that
/// session would run the planted program as its shell, with its own
/// grants.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_cannot_replace_the_zsh_of_another_session() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let victim = session_in(dir.path(), &recorder, EnvPolicy::default());
    let found = victim
        .run("print -rn -- $path[1]", RunOptions::default())
        .unwrap()
        .wait()
        .await
        .unwrap();
    let victim_dir = String::from_utf8(found.stdout).unwrap();
    assert!(victim_dir.starts_with("/var/tmp/"), "{victim_dir}");

    let attacker = session_in(
        Path::new("/var/tmp"),
        &Recorder::default(),
        EnvPolicy::default(),
    );
    let plant = format!(
        "print '#!/bin/sh\\necho planted shell' > {victim_dir}/planted && \
         chmod +x {victim_dir}/planted && mv -f {victim_dir}/planted {victim_dir}/zsh"
    );
    let planted = attacker
        .run(&plant, RunOptions::default())
        .unwrap()
        .wait()
        .await
        .unwrap();
    attacker.shutdown().await;

    let outcome = victim
        .run("print still patched", RunOptions::default())
        .unwrap()
        .wait()
        .await
        .unwrap();
    victim.shutdown().await;
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        "still patched\n",
        "{}",
        String::from_utf8_lossy(&outcome.stderr)
    );
    assert_ne!(planted.status, CommandStatus::Exited(0));
}

/// A descriptor the embedding process holds without close-on-exec (an
/// agent's open file, a harness's pipe) does not reach the sandboxed
/// shell: the sandbox gets only what its profile grants.
#[tokio::test(flavor = "multi_thread")]
async fn descriptors_the_embedder_left_inheritable_stay_out_of_the_shell() {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;

    let dir = tempfile::tempdir().unwrap();
    let inheritable = open("/etc/hostname", OFlag::O_RDONLY, Mode::empty()).unwrap();
    let number = inheritable.as_raw_fd();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let script =
        format!("if {{ : <&{number} }} 2>/dev/null; then print open; else print closed; fi");
    let outcome = run_to_end(&session, &script, RunOptions::default()).await;
    assert_eq!(outcome.stdout, b"closed\n", "{:?}", outcome.stderr);
    drop(inheritable);
}

/// A probe (109): a session started with a shell that is not the patched
/// zsh (Debian's, `/bin/sh`) ran every program in place, with no
/// decision: no rule held, and its audit log showed an empty session. It
/// is refused at its start.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_with_an_unpatched_shell_is_refused_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut tools = tools();
    tools.zsh = "/bin/sh".into();
    let config = ShellSessionConfig::new(dir.path(), tools, policy_by_path(&[]));
    let Err(error) = ShellSession::start(config) else {
        panic!("a session started with /bin/sh as its zsh");
    };
    let message = error.to_string();
    assert!(
        message.contains("/bin/sh is not the patched zsh"),
        "{message}"
    );
    // A path with nothing there is a missing zsh, not the wrong one.
    let mut tools = self::tools();
    tools.zsh = dir.path().join("no-zsh");
    let config = ShellSessionConfig::new(dir.path(), tools, policy_by_path(&[]));
    let Err(error) = ShellSession::start(config) else {
        panic!("a session started with no zsh");
    };
    assert!(matches!(error, BridgeError::NoZsh(_)), "{error}");
}

/// A probe (109): an event callback that panicked took the request's
/// handling with it: the escalation never started, and the log kept a
/// lone `decision`. The session goes on past the callback's panic.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_event_callback_does_not_stop_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ShellSessionConfig::new(
        dir.path(),
        tools(),
        policy_by_path(&[("/usr/bin/uname", escalate())]),
    );
    config.events = Some(Arc::new(|event: &SessionEvent| {
        if matches!(event, SessionEvent::Decided { .. }) {
            panic!("an embedder's bug");
        }
    }));
    let session = ShellSession::start(config).unwrap();
    let outcome = run_to_end(&session, "uname -s; print done", RunOptions::default()).await;
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        "Linux\ndone\n",
        "{}",
        String::from_utf8_lossy(&outcome.stderr)
    );
    session.shutdown().await;
}

/// A probe (109): after `cancel()`, `run` started a shell in the ended
/// session and returned its exit status 0 (every program it ran failed
/// closed, unrecorded); and a command that `cancel()` ended said
/// `cancelled: false`, as if killed by someone else.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_session_says_so_and_runs_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let handle = session.run("sleep 30", RunOptions::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    session.cancel();
    let outcome = handle.wait().await.unwrap();
    assert!(outcome.cancelled, "{outcome:?}");
    let refused = match session.run("echo ran", RunOptions::default()) {
        Ok(handle) => Err(handle.wait().await),
        Err(error) => Ok(error),
    };
    assert!(
        matches!(refused, Ok(BridgeError::SessionEnded)),
        "{refused:?}"
    );
    session.shutdown().await;
}

/// A probe started a session in a regular file: it started, and every
/// command then failed with "cannot start the shell: Not a directory".
/// Refused at the start instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_in_a_file_is_refused_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let config = ShellSessionConfig::new(&file, tools(), policy_by_path(&[]));
    let Err(error) = ShellSession::start(config) else {
        panic!("a session started in a file");
    };
    assert!(
        error.to_string().contains("working directory") && error.to_string().contains("directory"),
        "{error}"
    );
}

/// A probe's 128 KiB command failed with the kernel's "Argument list too
/// long": the error now says what limits it and what to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_past_the_argument_limit_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let session = session_in(dir.path(), &recorder, EnvPolicy::default());
    let command = format!(": {}", "x".repeat(200 * 1024));
    let error = session
        .run(&command, RunOptions::default())
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("write it to a script file and run that"),
        "{error}"
    );
    // Under the limit, it runs.
    let command = format!(": {}; print ran", "x".repeat(100 * 1024));
    let outcome = run_to_end(&session, &command, RunOptions::default()).await;
    assert_eq!(outcome.stdout, b"ran\n");
    session.shutdown().await;
}
