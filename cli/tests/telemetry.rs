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
