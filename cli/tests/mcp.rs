//! `execgate mcp` against the official MCP Python SDK (installed in
//! target/venv-mcp by scripts/setup-python.sh): tests/mcp/client.py
//! initializes, lists tools, runs and types into processes, answers
//! elicitations (accept and decline, for a command and for a connection
//! from its limited sandbox), makes denied and malformed calls,
//! then disconnects (and, with a second server, sends SIGTERM) and checks
//! that every process is gone, escalated children included.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn the_official_python_client_passes_every_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("EXECGATE_MCP_PYTHON").map_or_else(
        || root.join("target/venv-mcp/bin/python"),
        std::path::PathBuf::from,
    );
    assert!(
        python.exists(),
        "the MCP Python SDK is not installed at {}: run scripts/setup-python.sh",
        python.display()
    );
    let binary = env!("CARGO_BIN_EXE_execgate");
    let (dir, ws) = workspace();
    std::fs::write(ws.join("precious"), "keep").unwrap();
    // The session's profile is limited: the client checks a network
    // question too. A late denial only fails the connection, so that the
    // client sees the proxy's 403.
    let config = dir.path().join("config/execgate");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        "default_profile = \"fetch\"\non_network_denial = \"fail-connection\"\n\
         [profiles.fetch]\nextends = \"workspace-write\"\nnetwork = \"limited\"\n",
    )
    .unwrap();
    let rules = dir.path().join("mcp.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"touch\"], decision = \"prompt\", \
         justification = \"touching needs a person\")\n\
         prefix_rule(pattern = [\"rm\"], decision = \"forbidden\", \
         justification = \"never remove files here\")\n\
         prefix_rule(pattern = [\"sleep\", [\"1234.5\", \"1234.7\"]], decision = \"allow\")\n",
    )
    .unwrap();
    let output = Command::new(&python)
        .arg(root.join("tests/mcp/client.py"))
        .arg(binary)
        .arg(&ws)
        .arg(&rules)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "{stdout}\n{stderr}"
    );
}

/// A temporary directory with a `ws` workspace in it, not under /tmp,
/// which the default profile makes writable.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    (dir, ws)
}

/// `execgate mcp` on pipes, started in `cwd` with the config file of
/// `dir` (none), its audit log there, `args` and `env` added; its stdin,
/// and its stdout by lines.
fn mcp_server(
    dir: &Path,
    cwd: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .arg("mcp")
        .args(args)
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdin = server.stdin.take().unwrap();
    let stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    (server, stdin, stdout)
}

/// `execgate mcp` with `args` and `env` added and one rules file holding
/// `rule`, in a workspace of its own: its directory (kept while the test
/// runs, with the audit log), the workspace, the server, its stdin and its
/// stdout.
fn server_with_rule(
    rule: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::process::Child,
    std::process::ChildStdin,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let (dir, ws) = workspace();
    let rules = dir.path().join("one.rules");
    std::fs::write(&rules, rule).unwrap();
    let mut all_args = vec!["--rules".as_ref(), rules.as_os_str()];
    all_args.extend_from_slice(args);
    let (server, stdin, stdout) = mcp_server(dir.path(), &ws, &all_args, env);
    (dir, ws, server, stdin, stdout)
}

/// A rule that prompts for `touch`.
const TOUCH_PROMPTS: &str = "prefix_rule(pattern = [\"touch\"], decision = \"prompt\")\n";

/// Writes the handshake, offering the client `capabilities`, then
/// `messages`.
fn say_after_handshake(stdin: &mut impl std::io::Write, capabilities: &str, messages: &[String]) {
    let initialize = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{capabilities},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
    );
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned();
    for message in [&initialize, &initialized].into_iter().chain(messages) {
        writeln!(stdin, "{message}").unwrap();
    }
}

/// An `exec_command` call.
fn exec_call(id: u32, cmd: &str, yield_time_ms: u32) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {
            "name": "exec_command",
            "arguments": {"cmd": cmd, "yield_time_ms": yield_time_ms},
        },
    })
    .to_string()
}

/// A client that stops reading (closes its end of the server's stdout)
/// has gone, even while something still holds the server's stdin: the
/// server ends, and every process of its session with it.
#[test]
fn a_client_that_stops_reading_ends_the_session() {
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    let (mut server, mut stdin, mut stdout) = mcp_server(dir.path(), dir.path(), &[], &[]);
    say_after_handshake(&mut stdin, "{}", &[exec_call(2, "sleep 9317", 250)]);
    let line = read_until(&mut stdout, &["\"id\":2"], &mut Vec::new());
    assert!(line.contains("process_id"), "{line}");
    drop(stdout);
    let started = std::time::Instant::now();
    wait_for_the_end(&mut server, started, 10);
    drop(stdin);
    let left = Command::new("pgrep")
        .args(["-f", "sleep 9317"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// `execgate mcp` without a session cgroup, with a rule that lets
/// `setsid` out ([`server_with_rule`]).
fn setsid_server() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::process::Child,
    std::process::ChildStdin,
    std::io::BufReader<std::process::ChildStdout>,
) {
    server_with_rule(
        "prefix_rule(pattern = [\"setsid\"])\n",
        &[],
        &[("EXECGATE_SCOPE", "process-groups")],
    )
}

/// A probe found, without a session cgroup: an unsandboxed escalation's
/// `setsid` child outlived `execgate mcp`, however it ended; and after the
/// client closed standard input, a call still in flight kept the session
/// (and its escalations) going for 5 s more. The server is the reaper of
/// what its session leaves, and the end of its input ends the session
/// at once.
#[test]
fn the_end_of_input_ends_everything_at_once_without_a_cgroup() {
    use std::io::Write;
    let (_dir, ws, mut server, mut stdin, mut stdout) = setsid_server();
    let setsid = exec_call(2, "setsid -f sleep 9318; print started", 2000);
    say_after_handshake(&mut stdin, "{}", &[setsid]);
    let line = read_until(&mut stdout, &["\"id\":2"], &mut Vec::new());
    assert!(line.contains("started"), "{line}");
    let sleeping = || {
        let found = Command::new("pgrep")
            .args(["-f", "sleep 9318"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&found.stdout).into_owned()
    };
    assert!(!sleeping().is_empty(), "the escalated setsid did not start");
    // A call in flight: it would go on for 30 s.
    let looping = "while :; do print x >> ticks; /usr/bin/true; done";
    writeln!(stdin, "{}", exec_call(3, looping, 30000)).unwrap();
    let ticks = ws.join("ticks");
    let size = || std::fs::metadata(&ticks).map_or(0, |meta| meta.len());
    while size() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(stdin);
    let closed = std::time::Instant::now();
    wait_for_the_end(&mut server, closed, 10);
    let took = closed.elapsed();
    let left = size();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(size(), left, "the loop still runs");
    assert_eq!(sleeping(), "", "the setsid child outlived the server");
    // rmcp's own wait for calls in flight is 5 s.
    assert!(
        took < std::time::Duration::from_secs(3),
        "the server took {took:?} to end"
    );
}

/// A probe found: at the client's disconnect the server killed its
/// processes one by one, each waiting 0.5 s for output that an escaped
/// escalated child kept open, and heard no signal meanwhile (32 s for a
/// full table). They are killed at once now, and a killed process's
/// output is not waited for.
#[test]
fn the_end_of_input_does_not_wait_for_escaped_children_one_by_one() {
    use std::io::Write;
    let (_dir, _ws, mut server, mut stdin, mut stdout) = setsid_server();
    say_after_handshake(&mut stdin, "{}", &[]);
    const PROCESSES: u32 = 10;
    for id in 2..2 + PROCESSES {
        let call = exec_call(id, "setsid -f sleep 9321; sleep 9322", 250);
        writeln!(stdin, "{call}").unwrap();
        let line = read_until(&mut stdout, &[&format!("\"id\":{id}")], &mut Vec::new());
        assert!(line.contains("process_id"), "{line}");
    }
    drop(stdin);
    let closed = std::time::Instant::now();
    wait_for_the_end(&mut server, closed, 20);
    let took = closed.elapsed();
    let left = Command::new("pgrep")
        .args(["-f", "sleep 932[12]"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
    // One by one, with the wait, took 0.5 s for each.
    assert!(
        took < std::time::Duration::from_secs(3),
        "the server took {took:?} to end"
    );
}

/// From a probe: binary output came back with its bytes replaced by
/// U+FFFD, and nothing said so. The answer says `not_utf8`.
#[test]
fn output_that_is_not_utf8_is_flagged() {
    use std::io::Write;
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    let (mut server, mut stdin, mut stdout) = mcp_server(dir.path(), dir.path(), &[], &[]);
    say_after_handshake(&mut stdin, "{}", &[exec_call(2, "printf 'a\\377b'", 5000)]);
    let binary = read_until(&mut stdout, &["\"id\":2"], &mut Vec::new());
    writeln!(stdin, "{}", exec_call(3, "printf 'text'", 5000)).unwrap();
    let text = read_until(&mut stdout, &["\"id\":3"], &mut Vec::new());
    drop(stdin);
    let _ = server.wait();
    assert!(binary.contains("\"not_utf8\":true"), "{binary}");
    assert!(!text.contains("not_utf8"), "{text}");
}

/// A command killed by a signal is said to be, with the signal, not
/// only as its status 128 plus it: in the session's sandbox too, whose
/// own status is that number.
#[test]
fn a_command_killed_by_a_signal_says_which() {
    use std::io::Write;
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    let (mut server, mut stdin, mut stdout) = mcp_server(dir.path(), dir.path(), &[], &[]);
    say_after_handshake(&mut stdin, "{}", &[exec_call(2, "kill -TERM $$", 5000)]);
    let killed = read_until(&mut stdout, &["\"id\":2"], &mut Vec::new());
    writeln!(stdin, "{}", exec_call(3, "exit 143", 5000)).unwrap();
    let exited = read_until(&mut stdout, &["\"id\":3"], &mut Vec::new());
    drop(stdin);
    let _ = server.wait();
    let killed: serde_json::Value = serde_json::from_str(&killed).unwrap();
    let result = &killed["result"];
    assert_eq!(result["structuredContent"]["signal"], 15, "{killed}");
    assert_eq!(result["structuredContent"]["exit_code"], 143, "{killed}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|text| text.contains("killed by signal 15 (status 143)")),
        "{killed}"
    );
    let exited: serde_json::Value = serde_json::from_str(&exited).unwrap();
    let result = &exited["result"];
    assert!(
        result["structuredContent"].get("signal").is_none(),
        "{exited}"
    );
    assert_eq!(result["structuredContent"]["exit_code"], 143, "{exited}");
}

/// Probe 118: an argument the server does not know was dropped without a
/// word: `"cwd": "sub"` (the name other tools give `workdir`) ran the
/// command in the session's directory, where the caller meant another.
/// The call is refused, naming the field, and nothing runs.
#[test]
fn an_argument_the_server_does_not_know_refuses_the_call() {
    use std::io::Write;
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let (mut server, mut stdin, mut stdout) = mcp_server(dir.path(), dir.path(), &[], &[]);
    let call = |id: u32, name: &str, arguments: serde_json::Value| {
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        })
        .to_string()
    };
    say_after_handshake(
        &mut stdin,
        "{}",
        &[call(
            2,
            "exec_command",
            serde_json::json!({"cmd": "touch ran", "cwd": "sub"}),
        )],
    );
    let refused = read_until(&mut stdout, &["\"id\":2"], &mut Vec::new());
    writeln!(
        stdin,
        "{}",
        call(
            3,
            "write_stdin",
            serde_json::json!({"process_id": 1, "text": "y"})
        )
    )
    .unwrap();
    let refused_stdin = read_until(&mut stdout, &["\"id\":3"], &mut Vec::new());
    writeln!(
        stdin,
        "{}",
        call(4, "list_processes", serde_json::json!({"all": true}))
    )
    .unwrap();
    let refused_list = read_until(&mut stdout, &["\"id\":4"], &mut Vec::new());
    writeln!(
        stdin,
        "{}",
        call(5, "list_processes", serde_json::json!({}))
    )
    .unwrap();
    let listed = read_until(&mut stdout, &["\"id\":5"], &mut Vec::new());
    drop(stdin);
    let _ = server.wait();
    assert!(refused.contains("unknown field `cwd`"), "{refused}");
    assert!(!dir.path().join("ran").exists() && !dir.path().join("sub/ran").exists());
    assert!(
        refused_stdin.contains("unknown field `text`"),
        "{refused_stdin}"
    );
    assert!(
        refused_list.contains("unknown field `all`"),
        "{refused_list}"
    );
    assert!(listed.contains("\"processes\""), "{listed}");
}

/// Waits for the server to end, for at most `seconds` from `since`.
fn wait_for_the_end(server: &mut std::process::Child, since: std::time::Instant, seconds: u64) {
    while server.try_wait().unwrap().is_none() {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(seconds),
            "the server still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Reads lines from the server until one contains every part of `wanted`.
fn read_until(
    stdout: &mut impl std::io::BufRead,
    wanted: &[&str],
    seen: &mut Vec<String>,
) -> String {
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the server ended; it said {seen:#?}"
        );
        seen.push(line.clone());
        if wanted.iter().all(|part| line.contains(part)) {
            return line;
        }
    }
}

/// A probe found: a call cancelled while its approval was being elicited
/// left the question with the client, and a late "session" answer was
/// recorded and cached, so the next identical command escalated without
/// asking. The server withdraws the question (`notifications/cancelled`
/// for its elicitation) and a late answer changes nothing: the same
/// command is asked about again.
#[test]
fn a_cancelled_call_withdraws_its_question() {
    use std::io::Write;
    let (dir, _ws, mut server, mut stdin, mut stdout) = server_with_rule(TOUCH_PROMPTS, &[], &[]);
    let mut seen = Vec::new();
    // A server that never says what is awaited fails the test, not hangs it.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let (done, pid) = (done.clone(), server.id());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(20));
            if !done.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        })
    };
    let touch = dir.path().join("touched");
    let call = |id: u32| exec_call(id, &format!("touch {}", touch.display()), 20000);
    say_after_handshake(&mut stdin, r#"{"elicitation":{}}"#, &[call(2)]);
    let asked = read_until(&mut stdout, &["elicitation/create"], &mut seen);
    let question: serde_json::Value = serde_json::from_str(&asked).unwrap();
    let question_id = question["id"].clone();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":2}}}}"#
    )
    .unwrap();
    let withdrawn = read_until(&mut stdout, &["notifications/cancelled"], &mut seen);
    let withdrawn: serde_json::Value = serde_json::from_str(&withdrawn).unwrap();
    assert_eq!(withdrawn["params"]["requestId"], question_id, "{seen:#?}");
    // The late answer, for the session.
    let late = serde_json::json!({
        "jsonrpc": "2.0",
        "id": question_id,
        "result": {"action": "accept", "content": {"grant": "session"}},
    });
    writeln!(stdin, "{late}").unwrap();
    writeln!(stdin, "{}", call(3)).unwrap();
    let asked_again = read_until(&mut stdout, &["elicitation/create"], &mut seen);
    let again: serde_json::Value = serde_json::from_str(&asked_again).unwrap();
    let decline = serde_json::json!({
        "jsonrpc": "2.0",
        "id": again["id"],
        "result": {"action": "decline"},
    });
    writeln!(stdin, "{decline}").unwrap();
    read_until(&mut stdout, &["\"id\":3"], &mut seen);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(stdin);
    let _ = server.wait();
    drop(watchdog);
    assert!(!touch.exists(), "{seen:#?}");
}

/// Probe 118: `--approval deny` said "deny everything", yet a client
/// with elicitation was still asked, and its accept ran the command. Said
/// outright, `--approval` answers alone: the client is not asked.
#[test]
fn approval_deny_is_not_overruled_by_an_eliciting_client() {
    use std::io::Write;
    let (dir, _ws, mut server, mut stdin, mut stdout) = server_with_rule(
        TOUCH_PROMPTS,
        &["--approval".as_ref(), "deny".as_ref()],
        &[],
    );
    let touch = dir.path().join("touched");
    let call = exec_call(2, &format!("touch {}", touch.display()), 20000);
    say_after_handshake(&mut stdin, r#"{"elicitation":{}}"#, &[call]);
    let mut seen = Vec::new();
    // Whatever the server asks is accepted, as the probe's client did.
    let answered = loop {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(read > 0, "the server ended; it said {seen:#?}");
        seen.push(line.clone());
        if !line.contains("elicitation/create") {
            if line.contains("\"id\":2") {
                break line;
            }
            continue;
        }
        let question: serde_json::Value = serde_json::from_str(&line).unwrap();
        let accept = serde_json::json!({
            "jsonrpc": "2.0",
            "id": question["id"],
            "result": {"action": "accept", "content": {"grant": "once"}},
        });
        writeln!(stdin, "{accept}").unwrap();
    };
    drop(stdin);
    let _ = server.wait();
    assert!(!touch.exists(), "{seen:#?}");
    assert!(
        !seen.iter().any(|line| line.contains("elicitation/create")),
        "the client was asked: {seen:#?}"
    );
    assert!(answered.contains("denied"), "{answered}");
}

/// A probe (106): a client that closed its input after a ping had the
/// session's end recorded now and then as ended by signal 9, which no one
/// sent: a handler still holding the session when the server ended it.
/// The end of the input is a close, every time.
#[test]
fn a_closed_input_is_recorded_as_a_close() {
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    for _ in 0..20 {
        let (mut server, mut stdin, mut stdout) = mcp_server(dir.path(), dir.path(), &[], &[]);
        say_after_handshake(
            &mut stdin,
            "{}",
            &[r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.to_owned()],
        );
        read_until(&mut stdout, &["\"id\":2"], &mut Vec::new());
        drop(stdin);
        assert!(server.wait().unwrap().success());
    }
    let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let ends: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("\"session-end\""))
        .collect();
    assert_eq!(ends.len(), 20, "{log}");
    for end in ends {
        assert!(
            end.contains("\"end_reason\":\"closed\"") && !end.contains("\"signal\""),
            "{end}"
        );
    }
}

/// A probe (106): a line that is JSON but that the transport cannot take
/// (nested deeper than it reads, a lone surrogate in a string) or that is
/// not UTF-8 was dropped with no reply and no word, and its client waited
/// forever. The server says on stderr that it dropped one, and why; the
/// next message is answered.
#[test]
fn a_message_the_transport_cannot_read_is_said_on_stderr() {
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .arg("mcp")
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl"))
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{{"x":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let surrogate = r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"x":"\ud800"}}"#;
    say_after_handshake(
        &mut stdin,
        "{}",
        &[
            deep,
            surrogate.to_owned(),
            r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#.to_owned(),
        ],
    );
    std::io::Write::write_all(
        &mut stdin,
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"\xff\"}\n",
    )
    .unwrap();
    std::io::Write::write_all(
        &mut stdin,
        b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}\n",
    )
    .unwrap();
    // Answered in either order.
    let mut seen = Vec::new();
    while !["\"id\":4", "\"id\":6"]
        .iter()
        .all(|id| seen.iter().any(|line: &String| line.contains(id)))
    {
        read_until(&mut stdout, &["\"result\""], &mut seen);
    }
    drop(stdin);
    let output = server.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("was dropped unanswered").count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("recursion limit"), "{stderr}");
    // serde_json's words for a lone surrogate.
    assert!(stderr.contains("hex escape"), "{stderr}");
    assert!(stderr.contains("UTF-8"), "{stderr}");
}

/// Probe 134: a notification sent before `initialize` ended the server
/// (exit 125, the handshake failed on it) and the `initialize` after it
/// went unanswered. It is dropped, said on stderr, and the session goes on.
#[test]
fn a_notification_before_initialize_is_not_the_end_of_the_server() {
    let (dir, ws) = workspace();
    let (server, mut stdin, mut stdout) = mcp_server(dir.path(), &ws, &[], &[]);
    std::io::Write::write_all(
        &mut stdin,
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
    )
    .unwrap();
    say_after_handshake(&mut stdin, "{}", &[exec_call(2, "echo still-here", 2000)]);
    let mut seen = Vec::new();
    read_until(&mut stdout, &["still-here"], &mut seen);
    drop(stdin);
    let output = server.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
}

/// Probe 215: a malformed `initialize` (no `clientInfo`) was taken for the
/// handshake, and the notification after it ended the server (exit 125);
/// and a request carrying its own protocol version in `_meta` ran a tool
/// with no handshake at all, where a cancel was dropped. Both are answered
/// with errors, nothing runs, and the handshake after them works.
#[test]
fn a_malformed_initialize_or_a_handshake_in_meta_starts_nothing() {
    use std::io::Write;
    let (dir, ws) = workspace();
    let (server, mut stdin, mut stdout) = mcp_server(dir.path(), &ws, &[], &[]);
    let inline = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {
            "name": "exec_command",
            "arguments": {"cmd": "touch inline"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2025-11-25",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });
    let lines = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.to_owned(),
        inline.to_string(),
    ];
    for line in &lines {
        writeln!(stdin, "{line}").unwrap();
    }
    let mut seen = Vec::new();
    read_until(&mut stdout, &[r#""id":1"#, r#""error""#], &mut seen);
    read_until(&mut stdout, &[r#""id":2"#, r#""result""#], &mut seen);
    read_until(&mut stdout, &[r#""id":3"#, r#""error""#], &mut seen);
    say_after_handshake(&mut stdin, "{}", &[exec_call(4, "echo still-here", 2000)]);
    read_until(&mut stdout, &["still-here"], &mut seen);
    drop(stdin);
    let output = server.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{seen:#?}");
    assert!(!ws.join("inline").exists(), "{seen:#?}");
}

/// Probe 215: a reply could pass the 16 MiB line an rmcp client reads
/// (25 MB: 2 MB of control bytes each way, each a six-byte escape, twice
/// over, under a large `max_output_bytes`). The output is cut to 1 MiB.
#[test]
fn a_reply_stays_under_the_line_a_client_reads() {
    let (dir, ws) = workspace();
    let (server, mut stdin, mut stdout) = mcp_server(dir.path(), &ws, &[], &[]);
    let call = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "exec_command",
            "arguments": {
                "cmd": "head -c 2000000 /dev/zero | tr '\\0' '\\1'; \
                        head -c 2000000 /dev/zero | tr '\\0' '\\1' >&2",
                "yield_time_ms": 20000,
                "max_output_bytes": 100_000_000,
            },
        },
    });
    say_after_handshake(&mut stdin, "{}", &[call.to_string()]);
    let mut seen = Vec::new();
    let reply = read_until(&mut stdout, &[r#""id":2"#], &mut seen);
    assert!(reply.len() < 16 << 20, "{} bytes", reply.len());
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let structured = &reply["result"]["structuredContent"];
    let kept = structured["stdout"].as_str().unwrap_or_default().len()
        + structured["stderr"].as_str().unwrap_or_default().len();
    assert!(
        ((1 << 20) - 16..=1 << 20).contains(&kept),
        "{kept} bytes kept"
    );
    drop(stdin);
    assert_eq!(server.wait_with_output().unwrap().status.code(), Some(0));
}

/// Probe 159: a cancelled `write_stdin` went on to its end, took the
/// process's output and exit status into an answer nobody read, and
/// forgot the process: the next poll found no such process.
#[test]
fn a_cancelled_poll_leaves_the_output_for_the_next() {
    use std::io::Write;
    let (_dir, _ws, mut server, mut stdin, mut stdout) = server_with_rule("", &[], &[]);
    let mut seen = Vec::new();
    say_after_handshake(
        &mut stdin,
        "{}",
        &[exec_call(2, "sleep 1; echo IMPORTANT; exit 3", 300)],
    );
    let started = read_until(&mut stdout, &["\"id\":2"], &mut seen);
    let started: serde_json::Value = serde_json::from_str(&started).unwrap();
    let process_id = started["result"]["structuredContent"]["process_id"].clone();
    assert!(process_id.is_u64(), "{started}");
    let poll = |id: u32, yield_time_ms: u32| {
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {
                "name": "write_stdin",
                "arguments": {"process_id": process_id, "yield_time_ms": yield_time_ms},
            },
        })
        .to_string()
    };
    writeln!(stdin, "{}", poll(3, 5000)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":3}}}}"#
    )
    .unwrap();
    // Past the command's end, and past the cancelled poll's own yield.
    std::thread::sleep(std::time::Duration::from_millis(5500));
    writeln!(stdin, "{}", poll(4, 1000)).unwrap();
    let answer = read_until(&mut stdout, &["\"id\":4"], &mut seen);
    drop(stdin);
    let _ = server.wait();
    assert!(answer.contains("IMPORTANT"), "{seen:#?}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["exit_code"], 3,
        "{answer}"
    );
}

/// A cgroup of the pids controller, made for one test and removed after
/// it: processes moved into it, then held to the number they have.
struct PidsLimit {
    dir: std::path::PathBuf,
}

impl PidsLimit {
    fn new(name: &str) -> PidsLimit {
        // cgroup v1 (this project's machines), else v2's own hierarchy.
        let v1 = Path::new("/sys/fs/cgroup/pids");
        let v2 = Path::new("/sys/fs/cgroup");
        let root = if v1.join("tasks").exists() {
            v1
        } else if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|name| name == "pids"))
        {
            v2
        } else {
            panic!("no cgroup hierarchy with the pids controller here: mount one");
        };
        let dir = root.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        PidsLimit { dir }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Nothing more may start: not a process, not a thread.
    fn hold(&self) {
        let current = std::fs::read_to_string(self.dir.join("pids.current")).unwrap();
        std::fs::write(self.dir.join("pids.max"), current.trim()).unwrap();
    }

    fn lift(&self) {
        std::fs::write(self.dir.join("pids.max"), "max").unwrap();
    }
}

impl Drop for PidsLimit {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("pids.max"), "max");
        for _ in 0..500 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Probe 237: with no process or thread to be had (the pids limit
/// reached), a call whose shell could not start was never answered, not
/// even once the limit was lifted: its failure's record waited for a
/// thread of tokio's blocking pool, queued behind the one that watched
/// the client's end for good.
#[test]
fn a_call_is_answered_when_no_process_can_start() {
    use std::io::Write;
    let (dir, ws) = workspace();
    let limit = PidsLimit::new("execgate-mcp-test");
    let (mut server, mut stdin, stdout) = mcp_server(dir.path(), &ws, &[], &[]);
    limit.add(server.id());
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout) {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let answer = |id: &str| loop {
        let line = said
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("no answer in 30 s");
        if line.contains(id) {
            return line;
        }
    };
    say_after_handshake(&mut stdin, "{}", &[exec_call(2, "print warm", 5000)]);
    let line = answer("\"id\":2");
    assert!(line.contains("warm"), "{line}");
    limit.hold();
    // Past tokio's default keep-alive (10 s), after which the blocking
    // pool's idle threads ended (they stay now), and none can start again.
    std::thread::sleep(std::time::Duration::from_secs(12));
    writeln!(stdin, "{}", exec_call(3, "print never", 1000)).unwrap();
    let line = answer("\"id\":3");
    limit.lift();
    assert!(!line.contains("never"), "{line}");
    assert!(line.contains("cannot start the shell"), "{line}");
    drop(stdin);
    wait_for_the_end(&mut server, std::time::Instant::now(), 10);
}
