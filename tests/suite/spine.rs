//! The spine: patched zsh -> exec wrapper -> escalation server.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use execgate_escalate_server::{Decision, ExecContext, Execution};
use execgate_protocol::{encode_client, send_all, send_with_fds, ClientMessage, HELLO};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use super::*;

fn run_everything() -> Arc<dyn execgate_escalate_server::Policy> {
    policy_by_path(&[])
}

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory with a `#!` script, a script without `#!` and a tool in a
/// relative PATH entry.
fn scripts_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_executable(
        &dir.path().join("with-shebang"),
        "#!/bin/sh\necho shebang-ran\n",
    );
    write_executable(&dir.path().join("no-shebang"), "echo no-shebang-ran\n");
    fs::create_dir(dir.path().join("bin")).unwrap();
    write_executable(&dir.path().join("bin/tool"), "#!/bin/sh\necho tool-ran\n");
    fs::create_dir(dir.path().join("sub")).unwrap();
    write_executable(
        &dir.path().join("sub/pathdirs-tool"),
        "#!/bin/sh\necho pathdirs-ran\n",
    );
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn every_external_exec_reaches_the_server_exactly_once() {
    // (what, script, programs the server must see in any order, stdout)
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("simple command", "/usr/bin/true", &["/usr/bin/true"], ""),
        (
            "PATH lookup",
            "sleep 0; echo $?",
            &["/usr/bin/sleep"],
            "0\n",
        ),
        (
            "pipeline",
            "echo a | tr a b | cat",
            &["/usr/bin/tr", "/usr/bin/cat"],
            "b\n",
        ),
        (
            "subshell",
            "(sleep 0; sleep 0)",
            &["/usr/bin/sleep", "/usr/bin/sleep"],
            "",
        ),
        (
            "command substitution",
            "print -r -- $(basename /a/x)",
            &["/usr/bin/basename"],
            "x\n",
        ),
        (
            "process substitution",
            "cat <(/bin/echo sub)",
            &["/usr/bin/cat", "/usr/bin/echo"],
            "sub\n",
        ),
        ("exec", "exec /bin/echo done", &["/usr/bin/echo"], "done\n"),
        ("command -p", "command -p sleep 0", &["/usr/bin/sleep"], ""),
        (
            "hashed command",
            "hash -r; sleep 0; sleep 0; sleep 0",
            &["/usr/bin/sleep", "/usr/bin/sleep", "/usr/bin/sleep"],
            "",
        ),
        (
            "hash name=path",
            "hash mine=/usr/bin/printf; mine ok",
            &["/usr/bin/printf"],
            "ok",
        ),
        (
            "no_hash_cmds",
            "setopt no_hash_cmds; sleep 0; sleep 0",
            &["/usr/bin/sleep", "/usr/bin/sleep"],
            "",
        ),
        (
            "relative PATH entry",
            "PATH=bin:$PATH; tool",
            &["<dir>/bin/tool"],
            "tool-ran\n",
        ),
        (
            "path_dirs",
            "setopt path_dirs; PATH=.:$PATH; sub/pathdirs-tool",
            &["<dir>/sub/pathdirs-tool"],
            "pathdirs-ran\n",
        ),
        (
            "script with #!",
            "./with-shebang",
            &["<dir>/with-shebang"],
            "shebang-ran\n",
        ),
        (
            "script without #!",
            "./no-shebang",
            &["<dir>/no-shebang"],
            "no-shebang-ran\n",
        ),
        ("builtins only", "echo hi; print -r x; :", &[], "hi\nx\n"),
    ];
    for (what, script, expected, stdout) in cases {
        let dir = scripts_dir();
        let root = fs::canonicalize(dir.path()).unwrap();
        let (output, recorder) = run(run_everything(), script, &root).await;
        assert_eq!(output.code(), Some(0), "{what}: {}", output.stderr);
        assert_eq!(output.stdout, *stdout, "{what}");
        let mut seen = recorder.decided_programs();
        seen.sort();
        let mut expected: Vec<String> = expected
            .iter()
            .map(|path| path.replace("<dir>", &root.to_string_lossy()))
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "{what}");
        assert!(
            recorder.refusals().is_empty(),
            "{what}: {:?}",
            recorder.refusals()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_command_never_reaches_the_server_and_the_handler_runs() {
    let dir = tempfile::tempdir().unwrap();
    let script = "command_not_found_handler() { print -r -- \"handled:$1\"; return 127 }
        no-such-command-execgate arg; print status=$?";
    let (output, recorder) = run(run_everything(), script, dir.path()).await;
    assert_eq!(
        output.stdout,
        "handled:no-such-command-execgate\nstatus=127\n"
    );
    assert!(recorder.events().is_empty(), "{:?}", recorder.events());

    // Without a handler: zsh's own message and 127, still no request.
    let (output, recorder) = run(run_everything(), "no-such-command-execgate", dir.path()).await;
    assert_eq!(output.code(), Some(127));
    assert!(output
        .stderr
        .contains("command not found: no-such-command-execgate"));
    assert!(recorder.events().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_sees_the_true_executable_whatever_argv0_says() {
    let dir = tempfile::tempdir().unwrap();
    // (script, requested path, canonical path, argv)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "ARGV0=x /bin/echo a",
            "/bin/echo",
            "/usr/bin/echo",
            &["x", "a"],
        ),
        (
            "exec -a x /usr/bin/echo a",
            "/usr/bin/echo",
            "/usr/bin/echo",
            &["x", "a"],
        ),
        (
            "hash ls=/bin/echo; ls a",
            "/bin/echo",
            "/usr/bin/echo",
            &["ls", "a"],
        ),
    ];
    for (script, requested, canonical, argv) in cases {
        let (output, recorder) = run(run_everything(), script, dir.path()).await;
        assert_eq!(output.stdout, "a\n", "{script}: {}", output.stderr);
        let decided = recorder.decided();
        assert_eq!(decided.len(), 1, "{script}");
        let request = &decided[0];
        assert_eq!(
            request.executable.requested_path,
            Path::new(requested),
            "{script}"
        );
        assert_eq!(
            request.executable.canonical_path,
            Path::new(canonical),
            "{script}"
        );
        let argv: Vec<_> = argv.iter().map(|arg| os(arg)).collect();
        assert_eq!(request.argv, argv, "{script}");
        assert_eq!(request.cwd, dir.path(), "{script}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_prints_the_reason_and_exits_126_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[(
        "/usr/bin/touch",
        Decision::Deny {
            reason: "touch is not allowed here".into(),
        },
    )]);
    let (output, _) = run(policy, "touch marker; print status=$?", dir.path()).await;
    assert_eq!(output.stdout, "status=126\n");
    assert_eq!(
        output.stderr,
        "execgate: denied: /usr/bin/touch: touch is not allowed here\n"
    );
    assert!(!dir.path().join("marker").exists());
}

/// A probe denied a program at a path of its making, with an escape
/// sequence, a right-to-left override and a line break in it: the message
/// put them on the terminal as they were. execgate's own lines show what
/// the sandbox chose escaped, on one line.
#[tokio::test(flavor = "multi_thread")]
async fn a_denial_shows_the_path_the_sandbox_chose_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let odd = base.join("e\u{1b}[31mRED\u{202e}\nexecgate: fake");
    std::fs::create_dir(&odd).unwrap();
    let program = odd.join("true");
    std::fs::copy("/usr/bin/true", &program).unwrap();
    let policy = policy_by_path(&[(
        program.to_str().unwrap(),
        Decision::Deny {
            reason: "not \"this\" one".into(),
        },
    )]);
    let script = format!("'{}'; print status=$?", program.display());
    let (output, _) = run(policy, &script, &base).await;
    assert_eq!(output.stdout, "status=126\n");
    assert_eq!(
        output.stderr,
        format!(
            "execgate: denied: {}/e\\u{{1b}}[31mRED\\u{{202e}}\\nexecgate: fake/true: \
             not \"this\" one\n",
            base.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxed_escalations_are_refused_without_a_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let extra = execgate_escalate_server::sandbox::PermissionProfile::preset("read-only").unwrap();
    for execution in [Execution::TurnDefault, Execution::Permissions(extra)] {
        let policy = policy_by_path(&[("/usr/bin/touch", Decision::Escalate(execution))]);
        let (output, _) = run(policy, "touch marker; print status=$?", dir.path()).await;
        assert_eq!(output.stdout, "status=126\n");
        assert!(
            output.stderr.contains("need a sandbox"),
            "{}",
            output.stderr
        );
        assert!(!dir.path().join("marker").exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_unsandboxed_child_gets_the_shells_descriptors_and_its_status_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[
        ("/usr/bin/tr", escalate()),
        ("/usr/bin/cat", escalate()),
        ("/usr/bin/dash", escalate()),
        ("/usr/bin/ls", escalate()),
    ]);
    // (what, script, stdout, stderr contains)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "stdin and stdout",
            "print hello | tr a-z A-Z",
            "HELLO\n",
            "",
        ),
        (
            "stderr",
            "ls /no-such-dir-execgate; print status=$?",
            "status=2\n",
            "/no-such-dir-execgate",
        ),
        (
            "here-document",
            "tr a-z A-Z <<EOF\nheredoc\nEOF",
            "HEREDOC\n",
            "",
        ),
        (
            "process substitution",
            "cat <(print from-sub)",
            "from-sub\n",
            "",
        ),
        (
            "extra descriptor",
            "sh -c 'echo on-three >&3' 3>fd3.txt; cat fd3.txt",
            "on-three\n",
            "",
        ),
        (
            "exit code",
            "sh -c 'exit 7'; print status=$?",
            "status=7\n",
            "",
        ),
        (
            "working directory",
            "mkdir -p deeper; cd deeper; sh -c 'pwd'",
            "<dir>/deeper\n",
            "",
        ),
    ];
    let root = fs::canonicalize(dir.path()).unwrap();
    for (what, script, stdout, stderr) in cases {
        let (output, recorder) = run(policy.clone(), script, &root).await;
        let stdout = stdout.replace("<dir>", &root.to_string_lossy());
        assert_eq!(output.stdout, stdout, "{what}: {}", output.stderr);
        assert!(output.stderr.contains(stderr), "{what}: {}", output.stderr);
        assert!(
            !recorder.started_pids().is_empty(),
            "{what}: nothing escalated"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn escalated_children_see_a_cleaned_environment_and_no_session_socket() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/env", escalate())]);
    let script = "export LD_PRELOAD=/tmp/evil.so BASH_ENV=/tmp/evil GIT_DIR=/tmp KEEP=x LANG=C
        env";
    let (output, _) = run(policy, script, dir.path()).await;
    let names: Vec<&str> = output
        .stdout
        .lines()
        .filter_map(|line| line.split('=').next())
        .collect();
    // Unsandboxed: only the short list of harmless names passes.
    assert!(names.contains(&"LANG"), "{}", output.stdout);
    for injected in [
        "LD_PRELOAD",
        "BASH_ENV",
        "GIT_DIR",
        "EXECGATE_WRAPPER",
        "EXECGATE_SOCKET_FD",
        "KEEP",
    ] {
        assert!(!names.contains(&injected), "{injected} reached the child");
    }
}

/// The reader of a pipe an escalated program writes to sees its end when
/// the program closes it, as when the program runs in place, not only when
/// the program exits: its stand-in lets go of the pipes it handed over.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_an_escalated_program_closes_ends_for_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/dash", escalate())]);
    let script = format!(
        "{}\nprint status=$pipestatus; cat result",
        pipe_closed_early("dash")
    );
    let (output, _) = run(policy, &script, dir.path()).await;
    assert_eq!(output.stdout, "status=0 0\nseen\n", "{}", output.stderr);
}

/// Runs `sleep 1000` escalated, sends `signal` to the process `target`
/// picks, and returns what the shell printed afterwards.
async fn interrupt_escalated_sleep(
    target: impl Fn(&ExecContext, i32) -> i32,
    signal: Signal,
) -> ShellOutput {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/sleep", escalate())]);
    let (mut session, recorder) = start_session(policy);
    let child = spawn_zsh(&mut session, "sleep 1000; print status=$?", dir.path());
    let pids = recorder.wait_for_started(1).await;
    let request = recorder.decided().remove(0);
    kill(Pid::from_raw(target(&request, pids[0])), signal).unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    assert!(!process_exists(pids[0]));
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_escalated_child_shows_as_its_signal_in_the_shell() {
    let output = interrupt_escalated_sleep(|_, child| child, Signal::SIGTERM).await;
    assert_eq!(output.stdout, "status=143\n", "{}", output.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_to_the_wrapper_is_forwarded_to_the_escalated_child() {
    // Ctrl-C reaches the foreground process group, which holds the wrapper
    // (the peer the server saw), not the escalated child.
    let output = interrupt_escalated_sleep(|request, _| request.peer.pid, Signal::SIGINT).await;
    assert_eq!(output.stdout, "status=130\n", "{}", output.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_pipelines_at_once_through_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/tr", escalate())]);
    let script = "for i in {1..16}; do
            { /bin/echo line$i | tr a-z A-Z | cat > out$i } &
        done
        wait";
    let (output, recorder) = run(policy, script, dir.path()).await;
    assert_eq!(output.code(), Some(0), "{}", output.stderr);
    for i in 1..=16 {
        let text = fs::read_to_string(dir.path().join(format!("out{i}"))).unwrap();
        assert_eq!(text, format!("LINE{i}\n"));
    }
    assert_eq!(recorder.decided().len(), 48);
    assert_eq!(recorder.started_pids().len(), 16);
    assert!(recorder.refusals().is_empty(), "{:?}", recorder.refusals());
}

fn socket_inode(fd: impl AsFd) -> u64 {
    let file = fs::File::from(fd.as_fd().try_clone_to_owned().unwrap());
    file.metadata().unwrap().ino()
}

/// The socket inodes among `pid`'s open descriptors.
fn sockets_of(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("socket:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_session_kills_and_reaps_every_escalated_child() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/sleep", escalate())]);
    let (mut session, recorder) = start_session(policy);
    let shell_socket = format!("socket:[{}]", socket_inode(session.shell_socket().unwrap()));
    let mut shell = spawn_zsh(
        &mut session,
        "sleep 1000 & sleep 1000 & sleep 1000 & wait",
        dir.path(),
    );
    let pids = recorder.wait_for_started(3).await;
    for &pid in &pids {
        assert!(process_exists(pid));
        let sockets = sockets_of(pid);
        assert!(
            !sockets.contains(&shell_socket),
            "session socket leaked into {pid}"
        );
        assert!(
            sockets.is_empty(),
            "server sockets leaked into {pid}: {sockets:?}"
        );
    }
    drop(session);
    for &pid in &pids {
        assert!(
            !process_exists(pid),
            "escalated child {pid} survived the session"
        );
    }
    // The shell's wrappers see their children's end.
    let status = tokio::time::timeout(Duration::from_secs(30), shell.wait()).await;
    assert!(
        status.is_ok(),
        "the shell did not finish after the session ended"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_the_session_kills_a_childs_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_by_path(&[("/usr/bin/dash", escalate())]);
    let (mut session, recorder) = start_session(policy);
    let _shell = spawn_zsh(
        &mut session,
        "sh -c 'sleep 1000 & echo $! > grandchild; wait'",
        dir.path(),
    );
    recorder.wait_for_started(1).await;
    let grandchild_file = dir.path().join("grandchild");
    let mut grandchild = None;
    for _ in 0..500 {
        if let Ok(text) = fs::read_to_string(&grandchild_file) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                grandchild = Some(pid);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grandchild = grandchild.expect("the escalated shell started its child");
    session.shutdown().await;
    // The grandchild is not ours to reap; give init a moment to.
    for _ in 0..100 {
        if !process_exists(grandchild) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the escalated child's own child {grandchild} survived");
}

/// Fail closed: in each case the command must not run, and the marker it
/// would create must not appear.
#[tokio::test(flavor = "multi_thread")]
async fn the_shell_cannot_get_around_the_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let deny_touch = || {
        policy_by_path(&[(
            "/usr/bin/touch",
            Decision::Deny {
                reason: "no touching".into(),
            },
        )])
    };
    // (what, script, stderr contains)
    let cases: &[(&str, &str, &str)] = &[
        (
            "variables unset",
            "unset EXECGATE_WRAPPER EXECGATE_SOCKET_FD; touch marker; print status=$?",
            "execgate: denied: /usr/bin/touch",
        ),
        (
            "variables redirected",
            "EXECGATE_WRAPPER=/bin/true EXECGATE_SOCKET_FD=0 touch marker; print status=$?",
            "execgate: denied: /usr/bin/touch",
        ),
        (
            "empty environment",
            "(exec -c touch marker); print status=$?",
            "execgate: denied: /usr/bin/touch",
        ),
        (
            "socket closed",
            "fd=$EXECGATE_SOCKET_FD; exec {fd}>&-; touch marker; print status=$?",
            "execgate:",
        ),
        (
            "socket replaced by a file",
            "fd=$EXECGATE_SOCKET_FD; exec {fd}>&-
            repeat 100 { exec {fd}>decoy; [[ $fd == $EXECGATE_SOCKET_FD ]] && break }
            [[ $fd == $EXECGATE_SOCKET_FD ]] || exit 3
            touch marker; print status=$?",
            "execgate:",
        ),
        // Probe 214: a listener of the command's own there would answer
        // Run to everything, and record nothing.
        (
            "socket replaced by another socket",
            "zmodload zsh/net/socket && zsocket -l $PWD/other.sock || exit 4
            fd=$EXECGATE_SOCKET_FD; exec {fd}>&-
            repeat 100 { exec {fd}>decoy; [[ $fd == $EXECGATE_SOCKET_FD ]] && break }
            exec {fd}>&-
            zsocket $PWD/other.sock && exec {fd}>&$REPLY
            [[ $fd == $EXECGATE_SOCKET_FD ]] || exit 3
            touch marker; print status=$?",
            "execgate: descriptor 64 is no longer the session socket (replaced); not running \
             /usr/bin/touch",
        ),
    ];
    for (what, script, stderr) in cases {
        let (output, _) = run(deny_touch(), script, dir.path()).await;
        assert_eq!(output.stdout, "status=126\n", "{what}: {}", output.stderr);
        assert!(output.stderr.contains(stderr), "{what}: {}", output.stderr);
        assert!(
            !dir.path().join("marker").exists(),
            "{what}: the command ran"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wrapper_started_by_hand_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let marker = marker.to_str().unwrap();
    let touch = [
        "/usr/bin/touch",
        "/usr/bin/touch",
        "zsh:1: ",
        "touch",
        "touch",
        marker,
    ];
    // (what, socket descriptor argument)
    let cases = [
        ("no session", "-1"),
        ("not a socket", "0"),
        ("closed", "77"),
    ];
    for (what, fd) in cases {
        let output = std::process::Command::new(wrapper())
            .arg(fd)
            .args(touch)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(126), "{what}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("execgate: "), "{what}: {stderr}");
        assert!(!Path::new(marker).exists(), "{what}: the command ran");
    }
    let output = std::process::Command::new(wrapper()).output().unwrap();
    assert_eq!(output.status.code(), Some(126));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_wrapper_fails_the_command_without_running_it() {
    let dir = tempfile::tempdir().unwrap();
    let wrapper_copy = dir.path().join("wrapper");
    fs::copy(wrapper(), &wrapper_copy).unwrap();
    let (mut session, recorder) = start_session_with(run_everything(), wrapper_copy.clone());
    fs::remove_file(&wrapper_copy).unwrap();
    let child = spawn_zsh(&mut session, "touch marker; print status=$?", dir.path());
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=126\n", "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("execgate: cannot run the exec wrapper"),
        "{}",
        output.stderr
    );
    assert!(!dir.path().join("marker").exists());
    assert!(recorder.events().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_session_lets_nothing_run() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = "/usr/bin/true && print > started; : < go; touch marker; print status=$?";
    // session-host: a server in its own process, so that it can be killed.
    // Without a cgroup, so that its warden leaves the shell alive (it kills
    // only escalated children then) and the shell's next command must fail
    // closed on its own; with one, the shell dies with the server
    // (suite::lifetime).
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-host"))
        .env("EXECGATE_SCOPE", "process-groups")
        .arg(wrapper())
        .arg(dir.path().join("report"))
        .arg(zsh())
        .args(["-f", "-c", script])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = dir.path().join("started");
    for _ in 0..500 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.exists(),
        "the first command did not run under the server"
    );
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    // The server is gone; let the orphaned shell go on.
    let go_writer = tokio::task::spawn_blocking(move || fs::write(go, b""));
    let stdout = server.stdout.take().unwrap();
    let stderr = server.stderr.take().unwrap();
    let read_all = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text)
            .await
            .unwrap();
        text
    };
    let (stdout, stderr) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(read_all(Box::new(stdout)), read_all(Box::new(stderr)))
    })
    .await
    .expect("the orphaned shell finished");
    go_writer.await.unwrap().unwrap();
    assert_eq!(stdout, "status=126\n", "{stderr}");
    assert!(stderr.contains("execgate: "), "{stderr}");
    assert!(!dir.path().join("marker").exists());
}

/// Sends `data` with `fds` as one hello datagram on the session socket.
fn send_hello_datagram(session: &Session, data: &[u8], fds: &[&OwnedFd]) {
    let socket = session.shell_socket().unwrap();
    let fds: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
    send_with_fds(socket, data, &fds).unwrap();
}

/// Opens a private connection and sends `bytes` on it, then closes it.
fn rogue_conversation(session: &Session, bytes: &[u8]) {
    let (mine, theirs) = stream_pair();
    send_hello_datagram(session, HELLO, &[&theirs]);
    drop(theirs);
    // The server may close early on a bad header; that is its right.
    let _ = send_all(mine.as_fd(), bytes);
    drop(mine);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rogue_client_is_refused_and_the_session_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (mut session, recorder) = start_session(run_everything());

    // Hellos that are not hellos.
    let (_, stream_end) = stream_pair();
    let (_, other_end) = stream_pair();
    let (_, datagram_end) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let file: OwnedFd = fs::File::open("/dev/null").unwrap().into();
    send_hello_datagram(&session, b"HELLO!", &[&stream_end]);
    send_hello_datagram(&session, HELLO, &[]);
    send_hello_datagram(&session, HELLO, &[&stream_end, &other_end]);
    send_hello_datagram(&session, HELLO, &[&datagram_end]);
    send_hello_datagram(&session, HELLO, &[&file]);
    send_hello_datagram(&session, &[0xff; 40], &[&stream_end]);

    // Conversations with bad frames.
    let valid_request = encode_client(&ClientMessage::Request(execgate_protocol::ExecRequest {
        path: "/usr/bin/true".into(),
        argv: vec![os("true")],
        cwd: "/".into(),
        env: vec![],
    }))
    .unwrap();
    let mut garbage_tag = valid_request.clone();
    garbage_tag[4] = 0x7e;
    let truncated = &valid_request[..valid_request.len() / 2];
    let oversized = u32::MAX.to_le_bytes();
    let mut trailing = valid_request.clone();
    let body_len = u32::from_le_bytes(trailing[..4].try_into().unwrap()) + 3;
    trailing[..4].copy_from_slice(&body_len.to_le_bytes());
    trailing.extend_from_slice(b"xyz");
    let missing_file = encode_client(&ClientMessage::Request(execgate_protocol::ExecRequest {
        path: "/no/such/program".into(),
        argv: vec![os("x")],
        cwd: "/".into(),
        env: vec![],
    }))
    .unwrap();
    let relative_path = encode_client(&ClientMessage::Request(execgate_protocol::ExecRequest {
        path: "usr/bin/true".into(),
        argv: vec![os("true")],
        cwd: "/".into(),
        env: vec![],
    }))
    .unwrap();
    let wrong_message = encode_client(&ClientMessage::Signal(15)).unwrap();
    let bad_frames: [&[u8]; 8] = [
        &garbage_tag,
        truncated,
        &oversized,
        &trailing,
        &missing_file,
        &relative_path,
        &wrong_message,
        b"",
    ];
    for frame in bad_frames {
        rogue_conversation(&session, frame);
    }

    // A refused request gets a Deny it can read.
    let (mine, theirs) = stream_pair();
    send_hello_datagram(&session, HELLO, &[&theirs]);
    send_all(mine.as_fd(), &garbage_tag).unwrap();
    let reply = execgate_protocol::read_frame(mine.as_fd()).unwrap();
    let reply = execgate_protocol::decode_server(&reply).unwrap();
    assert!(
        matches!(reply, execgate_protocol::ServerMessage::Deny { .. }),
        "{reply:?}"
    );

    let expected_refusals = 6 + bad_frames.len() + 1;
    for _ in 0..500 {
        if recorder.refusals().len() >= expected_refusals {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refusals = recorder.refusals();
    assert_eq!(refusals.len(), expected_refusals, "{refusals:#?}");
    assert!(recorder.decided().is_empty(), "a rogue request was decided");

    // The real shell is still served.
    let child = spawn_zsh(&mut session, "/bin/echo still-served", dir.path());
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "still-served\n", "{}", output.stderr);
    assert_eq!(recorder.decided_programs(), ["/usr/bin/echo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_from_another_uid_is_denied() {
    // Root can speak as another user; the test runs as root in CI.
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (CI runs as root)");
    }
    // The other user runs a copy of the wrapper staged where it can reach
    // it (the checkout may sit in a mode-700 home), and could write the
    // marker if the request were wrongly run: the denial is what stops it.
    let stage = stage_for_other_users(&[(&wrapper(), "wrapper")]);
    let marker_dir = stage.path().join("writable");
    fs::create_dir(&marker_dir).unwrap();
    fs::set_permissions(&marker_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let marker = marker_dir.join("marker");
    let (mut session, recorder) = start_session(run_everything());
    let socket_fd = session.shell_socket().unwrap().as_raw_fd();
    let mut command = std::process::Command::new(stage.path().join("wrapper"));
    command
        .arg(socket_fd.to_string())
        .args([
            "/usr/bin/touch",
            "/usr/bin/touch",
            "zsh:1: ",
            "touch",
            "touch",
        ])
        .arg(&marker)
        .current_dir(stage.path());
    session.prepare_shell(&mut command);
    std::os::unix::process::CommandExt::uid(&mut command, 65534);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    session.shell_spawned();
    session.shutdown().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(126), "{stderr}");
    assert!(stderr.contains("is not the session's uid"), "{stderr}");
    assert!(!marker.exists());
    assert_eq!(recorder.refusals().len(), 1);
}

#[test]
fn the_patched_zsh_without_a_wrapper_behaves_like_zsh() {
    let dir = tempfile::tempdir().unwrap();
    write_executable(&dir.path().join("no-shebang"), "echo no-shebang-ran\n");
    let output = std::process::Command::new(zsh())
        .args([
            "-f",
            "-c",
            "./no-shebang; /bin/echo plain; no-such-cmd-execgate",
        ])
        .current_dir(dir.path())
        .env_remove("EXECGATE_WRAPPER")
        .env_remove("EXECGATE_SOCKET_FD")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "no-shebang-ran\nplain\n"
    );
    assert_eq!(output.status.code(), Some(127));
}

#[tokio::test]
async fn the_shell_and_escalated_commands_run_as_much_nicer_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    // `nice` prints its own niceness: once run in place, once escalated
    // (the server starts that one itself), and zsh's own from /proc.
    let escalate_nice = policy_by_path(&[("/usr/bin/nice", escalate())]);
    // Niceness is per thread: this one's is what the shell starts from.
    let base: i32 = stat_fields("thread-self").unwrap()[16].parse().unwrap();
    assert!(
        base + 7 <= 19,
        "niceness {base} leaves no room to go 7 lower"
    );
    // (niceness, policy, whether `nice` is escalated)
    for (niceness, policy, escalated) in [
        (0u8, run_everything(), false),
        (7, run_everything(), false),
        (7, escalate_nice, true),
    ] {
        let mut config = SessionConfig::new(wrapper(), policy.clone());
        let recorder = Recorder::default();
        config.events = Some(recorder.sink());
        config.shell_niceness = niceness;
        let mut session = Session::start(config).expect("session starts");
        let child = spawn_zsh(
            &mut session,
            r#"nice; read -r s < /proc/$$/stat; echo ${${=s##*\) }[17]}"#,
            dir.path(),
        );
        let output = finish(child).await;
        session.shutdown().await;
        assert_eq!(recorder.started_pids().len(), usize::from(escalated));
        let expected = (base + i32::from(niceness)).to_string();
        let lines: Vec<&str> = output.stdout.lines().collect();
        assert_eq!(lines, [&expected, &expected], "{}", output.stderr);
    }
}

/// A shared library built from `source` in `dir`, whose constructor
/// creates the file `marker`.
fn library_that_marks(dir: &Path, name: &str, marker: &Path, more: &str) -> std::path::PathBuf {
    shared_library(
        dir,
        name,
        &format!(
            "#include <stdio.h>\n\
             __attribute__((constructor)) static void planted(void) {{\n\
             FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f); }}\n{more}",
            marker.display()
        ),
    )
}

/// Probe 126: a command wrote a shared library with `print` (a builtin),
/// pointed `module_path` at it and ran `zmodload`: its constructor ran in
/// the session's zsh, which asked nothing and recorded nothing. A shell
/// that asks loads modules from its own module directory alone; its own
/// modules still load.
#[tokio::test(flavor = "multi_thread")]
async fn a_module_from_where_module_path_says_is_not_loaded() {
    let dir = scripts_dir();
    let marker = dir.path().join("constructor-ran");
    library_that_marks(dir.path(), "planted", &marker, "");
    let script = format!(
        "zmodload zsh/datetime && print own=$(( EPOCHSECONDS > 0 )); \
         module_path=({}); zmodload planted 2>/dev/null; print planted=$?",
        dir.path().display()
    );
    let (output, recorder) = run(run_everything(), &script, dir.path()).await;
    assert_eq!(output.stdout, "own=1\nplanted=1\n", "{}", output.stderr);
    assert!(!marker.exists(), "the planted module's constructor ran");
    assert!(recorder.decided().is_empty());
}

/// Review 127: a command pointed `GCONV_PATH` at a conversion module it
/// wrote and `LOCPATH` at a locale naming that module's character set,
/// then set `LC_CTYPE`: glibc loaded the module into the session's zsh at
/// its next conversion, undecided and unrecorded. A shell that asks reads
/// glibc's conversion modules' configuration as it latches, before any
/// command can change where it is read from.
#[tokio::test(flavor = "multi_thread")]
async fn a_conversion_module_a_command_names_is_not_loaded_into_the_shell() {
    let dir = scripts_dir();
    let marker = dir.path().join("constructor-ran");
    let modules = dir.path().join("gconv");
    fs::create_dir(&modules).unwrap();
    library_that_marks(
        &modules,
        "PLANTED",
        &marker,
        "int gconv_init(void *s) { return 1; }\n\
         int gconv(void *a, const unsigned char **b, const unsigned char *c, \
         unsigned char **d, void *e, int f, int g) { return 1; }\n",
    );
    // C.UTF-8's character type, its character set's name changed.
    let ctype = fs::read("/usr/lib/locale/C.utf8/LC_CTYPE").unwrap();
    let at = ctype
        .windows(6)
        .position(|window| window == b"UTF-8\0")
        .unwrap();
    let mut planted = ctype.clone();
    planted[at..at + 5].copy_from_slice(b"PLANT");
    let locale = dir.path().join("locales/X");
    fs::create_dir_all(&locale).unwrap();
    fs::write(locale.join("LC_CTYPE"), planted).unwrap();
    fs::write(
        modules.join("gconv-modules"),
        "module PLANT// INTERNAL PLANTED 1\nmodule INTERNAL PLANT// PLANTED 1\n",
    )
    .unwrap();
    let script = format!(
        "export GCONV_PATH={} LOCPATH={}; LC_CTYPE=X; \
         (print -r -- $'\\u00e9') >/dev/null 2>&1; print done",
        modules.display(),
        dir.path().join("locales").display()
    );
    let (mut session, recorder) = start_session(run_everything());
    // No conversion before the command's: the shell starts in the C
    // locale, as sessions started by CI or a service do.
    let child = spawn_zsh_with(&mut session, &script, dir.path(), |command| {
        command
            .env_remove("LANG")
            .env_remove("LC_ALL")
            .env_remove("LC_CTYPE");
    });
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "done\n", "{}", output.stderr);
    assert!(
        !marker.exists(),
        "the planted conversion module ran in the shell"
    );
    assert!(recorder.decided().is_empty());
}

/// Probe 139: an escalated script whose `#!` line names no interpreter
/// (`#!` alone, or blanks) ran under `/bin/sh`, outside the sandbox, where
/// the kernel and stock zsh refuse it (exec format error, 126). Nothing
/// runs, and the status is zsh's.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalated_script_whose_shebang_names_nothing_does_not_run() {
    let dir = scripts_dir();
    for (name, text) in [("bare", "#!\necho ran\n"), ("blanks", "#!  \t\necho ran\n")] {
        let script = dir.path().join(name);
        write_executable(&script, text);
        let canonical = fs::canonicalize(&script).unwrap();
        let policy = policy_by_path(&[(canonical.to_str().unwrap(), escalate())]);
        let command = format!("{}; print rc=$?", script.display());
        let (output, recorder) = run(policy, &command, dir.path()).await;
        assert_eq!(output.stdout, "rc=126\n", "{name}: {}", output.stderr);
        assert!(
            output.stderr.contains("names no interpreter"),
            "{name}: {}",
            output.stderr
        );
        assert_eq!(recorder.decided().len(), 1, "{name}");
    }
}

/// Probe 173: a policy that panicked closed the request's connection with
/// no answer and no record ("closed the connection without an answer").
/// The request is refused with why, recorded, and the session serves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_panics_refuses_the_request_on_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let policy: Arc<dyn execgate_escalate_server::Policy> = Arc::new(|request: &ExecContext| {
        if request.executable.canonical_path == Path::new("/usr/bin/true") {
            panic!("a policy's bug");
        }
        Decision::Run
    });
    let script = "/usr/bin/true; print rc=$?; /bin/echo after";
    let (output, recorder) = run(policy, script, dir.path()).await;
    assert_eq!(output.stdout, "rc=126\nafter\n", "{}", output.stderr);
    assert!(
        output.stderr.contains("the policy failed (it panicked)"),
        "{}",
        output.stderr
    );
    assert_eq!(
        recorder.refusals(),
        ["the policy failed (it panicked)"],
        "{:?}",
        recorder.events()
    );
    assert_eq!(recorder.decided_programs(), ["/usr/bin/echo"]);
}

/// A policy that blocks holds every session's decisions on the one serving
/// thread (the `Policy` trait says so); an embedder learnt of it only by
/// its sessions' slowness. A decision that holds the thread for 100 ms or
/// more at once, at its first poll or after awaiting, is warned of, once a
/// session, naming the program.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_blocks_the_serving_thread_is_warned_of_once() {
    /// Blocks on `/usr/bin/true`, after awaiting once if `awaits_first`.
    struct Blocking {
        awaits_first: bool,
    }
    impl execgate_escalate_server::Policy for Blocking {
        fn decide<'a>(
            &'a self,
            request: &'a ExecContext,
        ) -> execgate_escalate_server::DecisionFuture<'a> {
            Box::pin(async move {
                if request.executable.canonical_path == Path::new("/usr/bin/true") {
                    if self.awaits_first {
                        tokio::task::yield_now().await;
                    }
                    std::thread::sleep(Duration::from_millis(150));
                }
                Decision::Run.into()
            })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for awaits_first in [false, true] {
        let (mut session, _recorder) = start_session(Arc::new(Blocking { awaits_first }));
        let id = session.id().to_owned();
        let child = spawn_zsh(
            &mut session,
            "/bin/echo quick; /usr/bin/true; /usr/bin/true",
            dir.path(),
        );
        let output = finish(child).await;
        session.shutdown().await;
        assert_eq!(output.stdout, "quick\n", "{}", output.stderr);
        let warnings = server_warnings_of(&id);
        assert_eq!(
            warnings.len(),
            1,
            "awaits first: {awaits_first}: {warnings:?}"
        );
        assert!(
            warnings[0].contains("deciding held the thread that serves every session's requests")
                && warnings[0].contains("program=\"/usr/bin/true\""),
            "awaits first: {awaits_first}: {warnings:?}"
        );
    }
}

/// Probe 195: an escalated program whose exec failed ended with 126
/// whatever the error, where zsh ends with 127 for all but a file it found
/// and could not execute (no permission, an unknown format). Unsandboxed
/// (the server's exec) and in the session's sandbox (the helper's), the
/// status is zsh's; the control case, a file of no known format, stays 126.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalated_exec_that_fails_ends_with_zshs_status() {
    use execgate_escalate_server::sandbox::PermissionProfile;
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let at = |name: &str| root.join(name);
    for name in ["long", "busy"] {
        fs::copy("/bin/true", at(name)).unwrap();
    }
    write_executable(&at("bad-interp"), "#!/no/such/interp-execgate\necho ran\n");
    fs::write(at("junk"), b"\x7fELF\x00\x00\x00junk\x00\x01").unwrap();
    fs::set_permissions(at("junk"), fs::Permissions::from_mode(0o755)).unwrap();
    // Open for writing while it is executed: ETXTBSY.
    let _writer = fs::OpenOptions::new()
        .append(true)
        .open(at("busy"))
        .unwrap();
    let cases = [
        ("long", "long=${(l:200000::x:)}; ./long $long", "127"),
        ("busy", "./busy", "127"),
        ("bad-interp", "./bad-interp", "127"),
        ("junk", "./junk", "126"),
    ];
    for execution in [Execution::Unsandboxed, Execution::TurnDefault] {
        let rules: Vec<(String, Decision)> = cases
            .iter()
            .map(|(name, _, _)| {
                let path = at(name).to_str().unwrap().to_owned();
                (path, Decision::Escalate(execution.clone()))
            })
            .collect();
        let rules: Vec<(&str, Decision)> = rules
            .iter()
            .map(|(path, decision)| (path.as_str(), decision.clone()))
            .collect();
        let script: String = cases
            .iter()
            .map(|(name, command, _)| format!("{command}; print -r -- \"{name} $?\"; "))
            .collect();
        let (output, recorder) = match execution {
            Execution::TurnDefault => {
                let profile = PermissionProfile::preset("workspace-write").unwrap();
                run_sandboxed(policy_by_path(&rules), profile, &script, &root).await
            }
            _ => run(policy_by_path(&rules), &script, &root).await,
        };
        let expected: String = cases
            .iter()
            .map(|(name, _, status)| format!("{name} {status}\n"))
            .collect();
        assert_eq!(output.stdout, expected, "{execution:?}: {}", output.stderr);
        assert!(!output.stderr.contains("ran"), "{}", output.stderr);
        // Recorded as not run, whether it failed in the server's exec or
        // (a spare sandbox's start recorded before) in the helper's.
        let failures = recorder.spawn_failures();
        assert_eq!(failures.len(), cases.len(), "{execution:?}: {failures:?}");
        for named in ["/long", "/busy", "/no/such/interp-execgate", "/junk"] {
            assert!(
                failures.iter().any(|failure| failure.contains(named)),
                "{execution:?} {named}: {failures:?}"
            );
        }
    }
}

/// Probe 195: an escalated script whose `#!` interpreter is a script
/// itself failed to start (126), where the kernel, and so stock zsh, runs
/// it through the inner script's own interpreter. It runs so, each script
/// read through its checked descriptor, in the session's sandbox and
/// unsandboxed alike (no judging policy here: the core bridge's refuses
/// that beyond the sandbox).
#[tokio::test(flavor = "multi_thread")]
async fn an_escalated_script_whose_interpreter_is_a_script_runs_as_the_kernel_runs_it() {
    use execgate_escalate_server::sandbox::PermissionProfile;
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let inner = root.join("inner");
    write_executable(
        &inner,
        "#!/bin/sh -e\nprintf 'inner got:'; printf ' [%s]' \"$@\"; echo\n",
    );
    let outer = root.join("outer");
    write_executable(&outer, &format!("#!{} -x\necho body\n", inner.display()));
    let script = "./outer one 'two words'; print -r -- \"status $?\"";
    for execution in [Execution::Unsandboxed, Execution::TurnDefault] {
        let rules = [(
            outer.to_str().unwrap(),
            Decision::Escalate(execution.clone()),
        )];
        let (output, recorder) = match execution {
            Execution::TurnDefault => {
                let profile = PermissionProfile::preset("workspace-write").unwrap();
                run_sandboxed(policy_by_path(&rules), profile, script, &root).await
            }
            _ => run(policy_by_path(&rules), script, &root).await,
        };
        // As the kernel passes them: the inner script, the outer's `#!`
        // argument, the outer script, then the command's arguments; each
        // script by the descriptor it was checked through.
        let words: Vec<&str> = output.stdout.split(' ').collect();
        assert_eq!(words[0], "inner", "{execution:?}: {}", output.stderr);
        assert!(
            output.stdout.contains("[-x] [/dev/fd/")
                && output.stdout.ends_with("] [one] [two words]\nstatus 0\n"),
            "{execution:?}: {}{}",
            output.stdout,
            output.stderr
        );
        assert!(recorder.spawn_failures().is_empty(), "{execution:?}");
        assert_eq!(recorder.started_pids().len(), 1, "{execution:?}");
    }
}

/// Review 43: a spare that took its command and then could not run it
/// (its working directory replaced since the decision) said so only on
/// the command's standard error; the record said it started and exited
/// 126. The record now says that nothing ran, and why; review 44: so
/// does a sandbox started with its command (250 more descriptors than a
/// spare can take), which checks its directory before anything else.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_that_cannot_run_its_command_says_so_on_the_record() {
    use execgate_escalate_server::sandbox::PermissionProfile;
    for (way, before) in [
        ("a spare", ""),
        (
            "a sandbox started with it",
            "for i in {1..250}; do exec {fd}</dev/null; done; ",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let work = root.join("work");
        fs::create_dir(&work).unwrap();
        let replaced = work.clone();
        // Decided, then replaced: the directory held for the decision is
        // no longer the one at its path when the sandbox enters it.
        let policy: Arc<dyn execgate_escalate_server::Policy> =
            Arc::new(move |request: &ExecContext| {
                if request.executable.canonical_path != Path::new("/usr/bin/env") {
                    return Decision::Run;
                }
                fs::rename(&replaced, replaced.with_extension("old")).unwrap();
                fs::create_dir(&replaced).unwrap();
                Decision::Escalate(Execution::TurnDefault)
            });
        let profile = PermissionProfile::preset("workspace-write").unwrap();
        let script = format!("cd work && {before}/usr/bin/env true; print -r -- \"status $?\"");
        let (output, recorder) = run_sandboxed(policy, profile, &script, &root).await;
        assert_eq!(output.stdout, "status 126\n", "{way}: {}", output.stderr);
        let failures = recorder.spawn_failures();
        assert_eq!(failures.len(), 1, "{way}: {failures:?}");
        assert!(
            failures[0].contains("nothing ran") && failures[0].contains("no longer"),
            "{way}: {failures:?}"
        );
    }
}

/// Review 43: a turn-default escalation looked its script's `#!`
/// interpreter up on the host, so an interpreter the sandbox hides (under
/// `/run`) ran in the sandbox, its text readable there. Run in place, the
/// script finds no interpreter (127); escalated into the same sandbox, so
/// it does.
#[tokio::test(flavor = "multi_thread")]
async fn a_turn_default_script_does_not_run_an_interpreter_its_sandbox_hides() {
    use execgate_escalate_server::sandbox::PermissionProfile;
    let hidden = tempfile::Builder::new()
        .prefix("execgate-hidden-interpreter")
        .tempdir_in("/run")
        .unwrap();
    let inner = hidden.path().join("inner");
    write_executable(&inner, "#!/bin/sh\necho hidden-ran\n");
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let outer = root.join("outer");
    write_executable(&outer, &format!("#!{}\necho body\n", inner.display()));
    let rules = [(
        outer.to_str().unwrap(),
        Decision::Escalate(Execution::TurnDefault),
    )];
    let profile = PermissionProfile::preset("workspace-write").unwrap();
    let script = "./outer; print -r -- \"status $?\"";
    let (output, recorder) = run_sandboxed(policy_by_path(&rules), profile, script, &root).await;
    assert_eq!(output.stdout, "status 127\n", "{}", output.stderr);
    let failures = recorder.spawn_failures();
    assert!(
        failures.len() == 1 && failures[0].contains("No such file"),
        "{failures:?}"
    );
}

/// Review 43: an escalation whose sandbox is started with it (no spare
/// can take more descriptors than one message carries) had no way to say
/// that its program's exec failed (recorded as started, then exit 126)
/// or that it died of a signal (exit 143). Its helper now reports back as
/// a spare's does.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_started_with_its_command_reports_back_as_a_spare_does() {
    use execgate_escalate_server::sandbox::PermissionProfile;
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::write(root.join("junk"), b"\x7fELF\x00\x00\x00junk\x00\x01").unwrap();
    fs::set_permissions(root.join("junk"), fs::Permissions::from_mode(0o755)).unwrap();
    write_executable(&root.join("die"), "#!/bin/sh\nkill -TERM $$\n");
    let paths = [root.join("junk"), root.join("die")];
    let rules: Vec<(&str, Decision)> = paths
        .iter()
        .map(|path| {
            (
                path.to_str().unwrap(),
                Decision::Escalate(Execution::TurnDefault),
            )
        })
        .collect();
    // 250 more descriptors: with the file to execute, more than a spare
    // takes.
    let script = "for i in {1..250}; do exec {fd}</dev/null; done; \
                  ./junk; print -r -- \"junk $?\"; ./die; print -r -- \"die $?\"";
    let profile = PermissionProfile::preset("workspace-write").unwrap();
    let (output, recorder) = run_sandboxed(policy_by_path(&rules), profile, script, &root).await;
    assert_eq!(output.stdout, "junk 126\ndie 143\n", "{}", output.stderr);
    let failures = recorder.spawn_failures();
    assert!(
        failures.len() == 1 && failures[0].contains("Exec format error"),
        "{failures:?}"
    );
    let ends: Vec<execgate_protocol::Termination> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::Exited { termination, .. } => Some(termination),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends.last(),
        Some(&execgate_protocol::Termination::Signaled {
            signal: 15,
            core_dumped: false
        }),
        "{ends:?}"
    );
}
