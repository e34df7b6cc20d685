//! `--otlp-endpoint`: a session's counters reach an OTLP/HTTP receiver that
//! decodes them with the OpenTelemetry project's own protobuf definitions
//! (`tests/otlp/receiver.py`, run in the venv `scripts/test-otlp` makes
//! under target/). Built only with `--features otlp`.

#![cfg(all(unix, feature = "otlp"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The venv's python: `scripts/test-otlp` installs opentelemetry-proto there.
fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/otlp-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test-otlp, which installs opentelemetry-proto there",
        python.display()
    );
    python
}

/// The receiver, killed on drop.
struct Receiver {
    child: std::process::Child,
    port: u16,
}

impl Receiver {
    fn start(out: &Path) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/receiver.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        Receiver { child, port }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RULES: &str = r#"
prefix_rule(pattern = ["uname"], decision = "allow", execution = "unsandboxed")
prefix_rule(pattern = ["rm"], decision = "forbidden", justification = "no")
"#;

#[test]
fn session_counters_reach_an_otlp_receiver() {
    let dir = tempfile::Builder::new()
        .prefix("execgate-otlp")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let rules = dir.path().join("demo.rules");
    std::fs::write(&rules, RULES).unwrap();
    let received = dir.path().join("received.jsonl");
    let receiver = Receiver::start(&received);
    let output = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--approval", "deny", "--otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{}/v1/metrics", receiver.port))
        .arg("--rules")
        .arg(&rules)
        .args([
            "--",
            "/bin/true; /bin/true; uname -s; rm -f nothing; exit 0",
        ])
        .current_dir(&ws)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(receiver);
    let points: Vec<serde_json::Value> = std::fs::read_to_string(&received)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let value = |name: &str, key: &str, label: &str| {
        points
            .iter()
            .find(|point| {
                point["name"] == name && (key.is_empty() || point["attributes"][key] == label)
            })
            .unwrap_or_else(|| panic!("no {name} {key}={label} in {points:#?}"))
    };
    for (outcome, count) in [("run", 2), ("escalate", 1), ("deny", 1)] {
        let point = value("execgate.decisions", "decision", outcome);
        assert_eq!(point["value"], count, "{point}");
        assert_eq!(point["kind"], "sum");
        assert_eq!(point["monotonic"], true);
        assert_eq!(point["service"], "execgate");
        assert_eq!(point["attributes"]["sandbox"], "bubblewrap");
        assert_eq!(point["attributes"]["profile"], "workspace-write");
    }
    assert_eq!(
        value("execgate.escalations", "execution", "unsandboxed")["value"],
        1
    );
    assert_eq!(value("execgate.spawn_failures", "", "")["value"], 0);
    assert!(
        points.iter().all(|point| point.get("error").is_none()),
        "{points:#?}"
    );
}

#[test]
fn an_unreachable_endpoint_is_reported_and_does_not_change_the_status() {
    let dir = tempfile::Builder::new()
        .prefix("execgate-otlp")
        .tempdir_in("/var/tmp")
        .unwrap();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{port}/v1/metrics"))
        .args(["--", "exit 3"])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("metrics were not exported"), "{stderr}");
}
