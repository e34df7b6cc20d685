//! The fast path (issue 19): the patched zsh's child asks the server itself
//! and executes a `Run` command directly; the wrapper runs only for
//! `Escalate`, handed the conversation. Every way the answer can go wrong
//! still ends in 126 with nothing run.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use execgate_protocol::{
    accept_hello, encode_server, read_frame, recv_with_fds, send_all, ServerMessage, ENV_SOCKET_FD,
    ENV_WRAPPER,
};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::*;

/// A wrapper that logs its arguments (one line per start) and executes the
/// real one: shows which commands went through a wrapper at all.
fn logging_wrapper(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("wrapper.log");
    let path = dir.join("logging-wrapper");
    fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            wrapper().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    (path, log)
}

/// Neither a `Run` nor an `Escalate` executes the wrapper: the shell's
/// forked child runs the one and stands in for the other itself.
#[tokio::test(flavor = "multi_thread")]
async fn neither_a_run_nor_an_escalation_executes_the_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let (logging, log) = logging_wrapper(dir.path());
    // The process's warden is started with the first session's wrapper,
    // executed by descriptor, which a script cannot be: a session with the
    // real wrapper first (no test kills this process's warden).
    let (warm, _) = start_session(policy_by_path(&[]));
    let policy = policy_by_path(&[("/usr/bin/false", escalate())]);
    let (mut session, recorder) = start_session_with(policy, logging);
    let script = "/usr/bin/true; print run=$?; /usr/bin/false; print escalated=$?";
    let output = finish(spawn_zsh(&mut session, script, dir.path())).await;
    session.shutdown().await;
    warm.shutdown().await;
    assert_eq!(output.stdout, "run=0\nescalated=1\n", "{}", output.stderr);
    assert_eq!(
        recorder.decided_programs(),
        ["/usr/bin/true", "/usr/bin/false"]
    );
    assert_eq!(recorder.started_pids().len(), 1);
    let log = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(log, "", "the wrapper was started");
}

/// The shell's child that stands in for an escalated command is left as an
/// executed wrapper would be: no handler of the shell's installed for any
/// signal, and none of its close-on-exec descriptors open (an execve resets
/// the one and closes the other; the stand-in must do both itself). A lock
/// the shell took close-on-exec would otherwise stay held by the stand-in
/// while the command runs.
#[tokio::test(flavor = "multi_thread")]
async fn the_shells_child_stands_in_with_nothing_an_exec_would_have_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened close-on-exec");
    fs::write(&opened, "").unwrap();
    let policy = policy_by_path(&[("/usr/bin/sleep", escalate())]);
    let (mut session, recorder) = start_session(policy);
    let script = format!(
        "zmodload zsh/system && sysopen -o cloexec -r -u fd '{}' && \
         trap 'print caught' USR1 ALRM CHLD PIPE && /usr/bin/sleep 1000",
        opened.display()
    );
    let shell = spawn_zsh(&mut session, &script, dir.path());
    recorder.wait_for_started(1).await;
    let stand_in = recorder.decided()[0].peer.pid;
    let status = fs::read_to_string(format!("/proc/{stand_in}/status")).unwrap();
    let open: Vec<_> = fs::read_dir(format!("/proc/{stand_in}/fd"))
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .collect();
    session.shutdown().await;
    let _ = finish(shell).await;
    let caught = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .map(str::trim);
    assert_eq!(caught, Some("0000000000000000"), "{status}");
    assert!(!open.contains(&opened), "{open:?}");
}

/// How the fake server treats the one request it gets.
#[derive(Debug, Clone, Copy)]
enum Broken {
    /// The session socket's other end is closed before the shell starts.
    Gone,
    /// Reads the request and closes without a word.
    ClosesWithoutAnswer,
    /// Answers a frame with an unknown tag.
    Garbage,
    /// Announces 10 bytes and sends 2.
    Truncated,
    /// Announces a frame larger than any the protocol allows.
    Oversized,
    /// Answers with a message that is no decision.
    NoDecision,
    /// Reads the request and says nothing for longer than the shell's
    /// reply timeout (`EXECGATE_REPLY_TIMEOUT_MS` in its environment).
    Silent,
}

/// The reply timeout the shells of these tests get, in milliseconds.
const REPLY_TIMEOUT_MS: u64 = 300;

/// The patched zsh's child against a server end this test plays, which
/// misbehaves as `broken` says.
async fn against_broken_server(broken: Broken, dir: &Path) -> ShellOutput {
    let (server_end, shell_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    // Inheritable copy for the shell, closed here once it started.
    let inherited: OwnedFd = nix::unistd::dup(shell_end.as_fd()).unwrap();
    drop(shell_end);
    let server = match broken {
        Broken::Gone => {
            drop(server_end);
            None
        }
        _ => Some(std::thread::spawn(move || serve_badly(&server_end, broken))),
    };
    let child = tokio::process::Command::new(zsh())
        .args(["-f", "-c", "/usr/bin/touch marker; print status=$?"])
        .current_dir(dir)
        .env(ENV_WRAPPER, wrapper())
        .env(ENV_SOCKET_FD, inherited.as_raw_fd().to_string())
        .env("EXECGATE_REPLY_TIMEOUT_MS", REPLY_TIMEOUT_MS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(inherited);
    let output = finish(child).await;
    if let Some(server) = server {
        server.join().unwrap();
    }
    output
}

fn serve_badly(server_end: &OwnedFd, broken: Broken) {
    let mut buf = [0u8; 64];
    let mut received = recv_with_fds(server_end.as_fd(), &mut buf).unwrap();
    let private = accept_hello(&buf, &mut received).unwrap();
    read_frame(private.as_fd()).unwrap();
    let reply: Vec<u8> = match broken {
        Broken::Gone | Broken::ClosesWithoutAnswer => return,
        Broken::Silent => {
            std::thread::sleep(std::time::Duration::from_millis(REPLY_TIMEOUT_MS * 5));
            return;
        }
        Broken::Garbage => vec![1, 0, 0, 0, 0xff],
        Broken::Truncated => vec![10, 0, 0, 0, 0x82, 0],
        Broken::Oversized => vec![0xff, 0xff, 0xff, 0x7f],
        Broken::NoDecision => encode_server(&ServerMessage::Started { pid: 1 }).unwrap(),
    };
    send_all(private.as_fd(), &reply).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_server_lets_the_shell_run_nothing() {
    // (how the server fails, what the refusal says)
    let cases = [
        (Broken::Gone, "cannot reach the escalation server"),
        (
            Broken::ClosesWithoutAnswer,
            "closed the connection without an answer",
        ),
        (Broken::Garbage, "malformed answer"),
        (Broken::Truncated, "malformed answer"),
        (Broken::Oversized, "malformed answer"),
        (Broken::NoDecision, "unexpected answer"),
        (Broken::Silent, "did not answer in time"),
    ];
    for (broken, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = against_broken_server(broken, dir.path()).await;
        assert_eq!(
            output.stdout, "status=126\n",
            "{broken:?}: {}",
            output.stderr
        );
        assert!(
            output.stderr.starts_with("execgate: ")
                && output.stderr.contains(reason)
                && output.stderr.contains("not running /usr/bin/touch"),
            "{broken:?}: {}",
            output.stderr
        );
        assert!(
            !dir.path().join("marker").exists(),
            "{broken:?}: the command ran"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conversation_is_not_handed_to_the_escalated_child() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/ls", escalate())]);
    // The escalated ls lists what its descriptors are: the shell's (the
    // session socket excluded, as always), and the directory it reads;
    // neither the session's socket nor the conversation's.
    let (output, _) = run(policy, "/usr/bin/ls -l /proc/self/fd", dir.path()).await;
    assert!(output.stdout.contains(" 0 -> "), "{}", output.stderr);
    assert!(!output.stdout.contains("socket:"), "{}", output.stdout);
}

/// zsh's `$PWD` is what the shell believes, not where it is: once the
/// directory it is in has been renamed, a relative command named from
/// there must still be decided on the file execve runs, not on whatever
/// now sits at the old name (here a symbolic link to `/usr/bin`).
#[tokio::test(flavor = "multi_thread")]
async fn a_relative_command_is_decided_on_the_real_working_directory_not_pwd() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let planted = root.join("a");
    fs::create_dir(&planted).unwrap();
    let program = planted.join("true");
    fs::write(&program, "#!/bin/sh\necho planted ran\n").unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    let moved = root.join("b").join("true");
    let moved_text = moved.display().to_string();
    let policy = policy_by_path(&[(
        moved_text.as_str(),
        Decision::Deny {
            reason: "planted".into(),
        },
    )]);
    let script = "cd a && /usr/bin/mv ../a ../b && /usr/bin/ln -s /usr/bin ../a && \
                  ./true; print status=$?";
    let (output, recorder) = run(policy, script, &root).await;
    assert!(!output.stdout.contains("planted ran"), "{}", output.stdout);
    assert_eq!(output.stdout, "status=126\n", "{}", output.stderr);
    assert!(
        recorder.decided_programs().contains(&moved_text),
        "{:?}",
        recorder.decided_programs()
    );
}
