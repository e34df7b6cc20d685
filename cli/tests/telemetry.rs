//! `--log-format text|json` and `EXECGATE_LOG`: every decision, escalated
//! spawn and sandbox start as a `tracing` event carrying the sandbox type,
//! the profile, the decision and who decided.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const RULES: &str = r#"
prefix_rule(pattern = ["uname"], decision = "allow", execution = "unsandboxed")
prefix_rule(pattern = ["rm"], decision = "forbidden", justification = "no")
"#;

fn run(args: &[&str], log_filter: Option<&str>) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("execgate-telemetry")
        .tempdir_in("/var/tmp")
        .unwrap();
    let rules = dir.path().join("t.rules");
    std::fs::write(&rules, RULES).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_execgate"));
    command
        .args(args)
        .args(["run", "--approval", "deny", "--rules"])
        .arg(&rules)
        .args(["--", "/bin/true; uname -s; rm -f x; exit 0"])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .env_remove("EXECGATE_LOG");
    if let Some(filter) = log_filter {
        command.env("EXECGATE_LOG", filter);
    }
    (command.output().unwrap(), dir)
}

#[test]
fn json_events_carry_sandbox_profile_decision_and_decider() {
    let (output, _dir) = run(&["--log-format", "json"], Some("execgate=info"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let decisions: Vec<(String, String, String)> = events
        .iter()
        .filter(|event| event["target"] == "execgate::decision")
        .map(|event| {
            assert_eq!(event["sandbox"], "bubblewrap", "{event}");
            assert_eq!(event["profile"], "workspace-write", "{event}");
            (
                event["program"].as_str().unwrap().to_owned(),
                event["decision"].as_str().unwrap().to_owned(),
                event["decided_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let owned = |(a, b, c): (&str, &str, &str)| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        decisions,
        [
            ("/usr/bin/true", "run", "default"),
            ("/usr/bin/uname", "escalate", "rule"),
            ("/usr/bin/rm", "deny", "rule"),
        ]
        .map(owned),
        "{stderr}"
    );
    // Probe 163: the escalation's decision and start join on request_id,
    // and the end counts the session's requests.
    let request_of = |message: &str, program: Option<&str>| {
        events
            .iter()
            .find(|event| {
                event["message"] == message
                    && program.is_none_or(|program| event["program"] == program)
            })
            .map(|event| event["request_id"].clone())
    };
    let escalated = request_of("exec decided", Some("/usr/bin/uname"));
    assert!(escalated.as_ref().is_some_and(|id| id.is_u64()), "{stderr}");
    assert_eq!(escalated, request_of("escalated child started", None));
    let ended = events
        .iter()
        .find(|event| event["message"] == "session ended")
        .unwrap();
    assert_eq!(ended["requests"], 3, "{stderr}");
    for message in [
        "sandboxed shell started",
        "escalated child started",
        "escalated child ended",
        "session ended",
    ] {
        assert!(
            events.iter().any(|event| event["message"] == message),
            "{message:?} missing: {stderr}"
        );
    }
}

#[test]
fn the_filter_selects_targets_and_nothing_is_logged_unasked() {
    let (output, _dir) = run(&["--log-format", "text"], Some("execgate::escalation=info"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("escalated child started"), "{stderr}");
    assert!(!stderr.contains("exec decided"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes on a pipe: {stderr}"
    );

    let (output, _dir) = run(&[], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("exec decided"), "{stderr}");
    assert!(!stderr.contains("INFO"), "{stderr}");

    let (output, _dir) = run(&[], Some("execgate=[bad"));
    assert_eq!(output.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&output.stderr).contains("EXECGATE_LOG"));
}

/// Probe 163: on stderr, the command's own lines mix with the events, and
/// one can pass for an event (or break a real one's line). `--log-file`
/// keeps the events apart, in a file the command is not handed; a session
/// whose sandbox could write it says so, and a link at its name is refused.
#[test]
fn a_log_file_holds_the_events_and_nothing_the_command_writes() {
    let dir = tempfile::Builder::new()
        .prefix("execgate-telemetry")
        .tempdir_in("/var/tmp")
        .unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    let rules = dir.path().join("t.rules");
    std::fs::write(&rules, RULES).unwrap();
    let forged = r#"{"message":"exec decided","decision":"run","program":"/usr/bin/ls"}"#;
    let session = |log: &std::path::Path, profile: &str| {
        Command::new(env!("CARGO_BIN_EXE_execgate"))
            .args(["--log-format", "json", "--log-file"])
            .arg(log)
            .args(["run", "--approval", "deny", "--profile", profile, "--rules"])
            .arg(&rules)
            .arg("--")
            .arg(format!(
                "printf '{{\"x\":\"' >&2; rm -f x; echo '{forged}' >&2; /bin/true"
            ))
            .current_dir(&workspace)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
            .env_remove("EXECGATE_LOG")
            .output()
            .unwrap()
    };

    let log = dir.path().join("events.jsonl");
    let output = session(&log, "read-only");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("exec decided\",\"session"), "{stderr}");
    assert!(!stderr.contains("log file"), "{stderr}");
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}")))
        .collect();
    let decided: Vec<&str> = events
        .iter()
        .filter(|event| event["target"] == "execgate::decision")
        .map(|event| event["program"].as_str().unwrap())
        .collect();
    assert_eq!(decided, ["/usr/bin/rm", "/usr/bin/true"], "{text}");
    assert!(!text.contains("/usr/bin/ls"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // One the sandbox can write: warned of.
    let inside = workspace.join("events.jsonl");
    let output = session(&inside, "workspace-write");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("could write lines of their own into it"),
        "{stderr}"
    );

    // A link at its name: refused, before anything runs.
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&log, &link).unwrap();
    let output = session(&link, "read-only");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("not a link"), "{stderr}");
}

/// Probe 163: on a build without OTLP, `--otlp-endpoint` was clap's bare
/// "unexpected argument"; it says which build has it, and runs nothing.
#[cfg(not(feature = "otlp"))]
#[test]
fn otlp_on_a_build_without_it_says_how_to_get_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args([
            "--otlp-endpoint",
            "http://127.0.0.1:9/v1/metrics",
            "run",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("--features otlp"), "{stderr}");
}

/// Probe 238: JSON events on stderr carried a program's name with a
/// right-to-left override and an 8-bit CSI raw, where the text format and
/// `execgate audit --json` escape them. They are JSON escapes now: the
/// same value, which a terminal does not act on.
#[test]
fn json_events_on_stderr_escape_what_a_terminal_acts_on() {
    let dir = tempfile::Builder::new()
        .prefix("execgate-telemetry")
        .tempdir_in("/var/tmp")
        .unwrap();
    let script = "cp /bin/true \"./a\u{202e}b\u{9b}2J\" && \"./a\u{202e}b\u{9b}2J\"";
    let output = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args([
            "--log-format",
            "json",
            "run",
            "--approval",
            "deny",
            "--",
            script,
        ])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .env("EXECGATE_LOG", "execgate=info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(['\u{202e}', '\u{9b}']), "{stderr}");
    let programs: Vec<String> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| Some(event["program"].as_str()?.to_owned()))
        .collect();
    assert!(
        programs
            .iter()
            .any(|program| program.ends_with("/a\u{202e}b\u{9b}2J")),
        "{programs:?}"
    );
}
