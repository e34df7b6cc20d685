//! `execgate.exe` on Windows, run for real (under Wine in CI): the rules
//! decide on the resolved program, the command runs with the restricted
//! token, the audit record names the sandbox, and what the backend cannot
//! enforce is refused. Wine enforces no token or DACL, so nothing here
//! shows a write being denied: that is `scripts/windows-smoke.ps1`'s part.

#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const PROFILES: &str = r#"
[profiles.offline]
extends = "workspace-write"
windows_network = "best-effort"
[profiles.rule-offline]
extends = "workspace-write"
windows_network = "best-effort"
[profiles.rule-strict]
extends = "offline"
windows_network = "refuse"
"#;

const RULES: &str = r#"
prefix_rule(pattern = ["cmd", "/d", "/c", "exit 9"], decision = "forbidden", justification = "no nines")
prefix_rule(pattern = ["whoami"], decision = "allow")
prefix_rule(pattern = ["cmd", "/d", "/c", "set&rem", "unsandboxed"], decision = "allow")
prefix_rule(pattern = ["cmd", "/d", "/c", "echo", "rule-offline"], decision = "allow", execution = "rule-offline")
prefix_rule(pattern = ["cmd", "/d", "/c", "echo", "rule-strict"], decision = "allow", execution = "rule-strict")
"#;

/// Wine reports no token restricted, so every run here says it accepts
/// that (`EXECGATE_WINE_UNENFORCED_TOKEN`, honoured under Wine only) but
/// the one that shows the refusal.
fn execgate(dir: &Path, args: &[&str]) -> Output {
    execgate_with(dir, args, &[("EXECGATE_WINE_UNENFORCED_TOKEN", "1")])
}

fn execgate_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    std::fs::write(dir.join("profiles.toml"), PROFILES).unwrap();
    std::fs::write(dir.join("team.rules"), RULES).unwrap();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_execgate"));
    command.current_dir(dir);
    command.env("LOCALAPPDATA", dir.join("state"));
    own_temp(&mut command, dir);
    command.env_remove("EXECGATE_WINE_UNENFORCED_TOKEN");
    // The private desktop is skipped under SSH: only the test that says
    // so sets these.
    command.env_remove("SSH_CONNECTION");
    command.env_remove("SSH_CLIENT");
    command.envs(env.iter().copied());
    if args.first() == Some(&"run") {
        command
            .args(["run", "--profiles"])
            .arg(dir.join("profiles.toml"));
        command.arg("--rules").arg(dir.join("team.rules"));
        command.arg("--cwd").arg(&ws);
        command.args(&args[1..]);
    } else {
        command.args(args);
    }
    output_of(&mut command)
}

/// `command`'s output. Wine's `CreateProcess` once failed with
/// `ERROR_INTERNAL_ERROR` (1359) in a fresh prefix (a fresh CI's first
/// run; the same tests passed when run again): that failure, which is
/// Wine's and not what any test here checks, is tried again, twice at
/// most. Any other failure, or a third, fails the test.
fn output_of(command: &mut Command) -> Output {
    const WINE_INTERNAL_ERROR: i32 = 1359;
    let mut tries = 1;
    loop {
        match command.output() {
            Err(error) if error.raw_os_error() == Some(WINE_INTERNAL_ERROR) && tries < 3 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            result => return result.unwrap(),
        }
    }
}

/// A `%TEMP%` of the test's own beside its state directory: the test's
/// directory is in Wine's `%TEMP%`, which every sandbox can write, and a
/// state directory there is refused.
fn own_temp(command: &mut Command, dir: &Path) {
    let temp = dir.join("temp");
    std::fs::create_dir_all(&temp).unwrap();
    command.env("TEMP", &temp).env("TMP", &temp);
}

fn audit(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("state").join("execgate").join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `execgate run` in the offline profile with the `rules` file added.
fn run_offline_with(dir: &Path, rules: &Path, argv: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--profile",
        "offline",
        "--rules",
        rules.to_str().unwrap(),
        "--",
    ];
    args.extend_from_slice(argv);
    execgate(dir, &args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn a_program_runs_with_the_restricted_token_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let output = execgate(
        dir.path(),
        &[
            "run",
            "--profile",
            "offline",
            "--",
            "cmd",
            "/d",
            "/c",
            "echo hi& exit 4",
        ],
    );
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "hi");
    assert!(
        text(&output.stderr).contains("best effort"),
        "{}",
        text(&output.stderr)
    );
    let records = audit(dir.path());
    let last = records.last().unwrap();
    // Decided and recorded before it ran, then its end; in the Linux
    // records' shape, which `execgate audit` reads (a probe: it read none).
    let decision = &records[records.len() - 2];
    assert_eq!(decision["event"]["action"], "decision");
    assert_eq!(last["event"]["action"], "exit");
    assert_eq!(decision["session_id"], last["session_id"]);
    assert!(
        humantime::parse_rfc3339(last["@timestamp"].as_str().unwrap()).is_ok(),
        "{last}"
    );
    assert_eq!(last["execgate"]["sandbox"], "windows-restricted-token");
    assert_eq!(last["execgate"]["decision"], "run");
    assert_eq!(last["process"]["exit_code"], 4);
    assert!(last["process"]["executable"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .ends_with(r"\cmd.exe"));
    // The capability SIDs were kept for the next run.
    assert!(dir
        .path()
        .join("state")
        .join("execgate")
        .join("windows-capability-sids")
        .exists());
}

#[test]
fn a_forbidden_program_is_denied_on_its_resolved_path() {
    let dir = tempfile::tempdir().unwrap();
    let output = execgate(
        dir.path(),
        &[
            "run",
            "--profile",
            "offline",
            "--",
            "cmd",
            "/d",
            "/c",
            "exit 9",
        ],
    );
    assert_eq!(output.status.code(), Some(126), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("no nines"));
    let last = audit(dir.path()).pop().unwrap();
    assert_eq!(last["execgate"]["decision"], "deny");
    assert!(last["rule"]["id"].as_str().unwrap().contains("team.rules"));

    // Probe 168: a rule's id named its file as it was spelled; it is the
    // canonical path, as on Linux.
    std::fs::write(
        dir.path().join("other.rules"),
        "prefix_rule(pattern = [\"whoami\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let output = execgate(
        dir.path(),
        &[
            "run",
            "--profile",
            "offline",
            "--rules",
            ".\\other.rules",
            "--",
            "whoami",
        ],
    );
    assert_eq!(output.status.code(), Some(126), "{}", text(&output.stderr));
    let id = audit(dir.path()).pop().unwrap()["rule"]["id"].clone();
    let id = id.as_str().unwrap();
    assert!(
        id.ends_with("other.rules:1") && !id.starts_with('.') && id.contains(":\\"),
        "{id}"
    );
}

#[test]
fn what_the_token_cannot_enforce_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // workspace-write restricts the network and does not opt in.
    let output = execgate(dir.path(), &["run", "--", "cmd", "/d", "/c", "echo no"]);
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).contains("best-effort"),
        "{}",
        text(&output.stderr)
    );
    assert!(text(&output.stdout).is_empty());
    let output = execgate(
        dir.path(),
        &[
            "run",
            "--profile",
            "read-only",
            "--",
            "cmd",
            "/d",
            "/c",
            "echo no",
        ],
    );
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
}

/// Regression: `:cwd = write` from the home (or above it) made the whole
/// profile writable: startup scripts, `.ssh`, `.gitconfig`, which run
/// outside the sandbox later. Refused, as on Linux; below the home is a
/// project and runs.
#[test]
fn a_writable_working_directory_cannot_hold_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("project")).unwrap();
    let args = [
        "run",
        "--profile",
        "offline",
        "--",
        "cmd",
        "/d",
        "/c",
        "echo ran",
    ];
    let home_at = |home: &Path| {
        let home = home.to_str().unwrap().replace('/', "\\").to_uppercase();
        execgate_with(
            dir.path(),
            &args,
            &[
                ("EXECGATE_WINE_UNENFORCED_TOKEN", "1"),
                ("USERPROFILE", home.as_str()),
            ],
        )
    };
    for (case, home) in [
        ("the home", ws.clone()),
        ("above the home", ws.join("project")),
    ] {
        let output = home_at(&home);
        assert_eq!(
            output.status.code(),
            Some(125),
            "{case}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains("holds your home directory"),
            "{case}: {}",
            text(&output.stderr)
        );
        assert!(text(&output.stdout).is_empty(), "{case}");
        let last = audit(dir.path()).pop().unwrap();
        assert_eq!(last["execgate"]["decision"], "deny", "{case}: {last}");
    }
    let output = home_at(dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "ran");
}

/// Regression: a token Windows did not report restricted (Wine's, or one
/// with no restricting SID) ran the command unconfined. It is refused
/// unless the Wine-only opt-in is set, and then every record says so. On
/// Windows the token is restricted: the command runs, opt-in or not, and
/// nothing says it is unconfined.
#[test]
fn a_token_that_is_not_restricted_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "--profile",
        "offline",
        "--",
        "cmd",
        "/d",
        "/c",
        "echo ran",
    ];
    let output = execgate_with(dir.path(), &args, &[]);
    if !execgate_core_bridge::sandbox::windows::running_under_wine() {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(text(&output.stdout).trim(), "ran");
        let output = execgate(dir.path(), &args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(
            !text(&output.stderr).contains("not enforced"),
            "{}",
            text(&output.stderr)
        );
        return;
    }
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("IsTokenRestricted is false"),
        "{}",
        text(&output.stderr)
    );
    assert!(text(&output.stdout).is_empty());
    let output = execgate(dir.path(), &args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("the token is not enforced"),
        "{}",
        text(&output.stderr)
    );
    let last = audit(dir.path()).pop().unwrap();
    assert!(last["execgate"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|warning| warning.as_str().unwrap().contains("not enforced")));
}

/// Regression (BatBadBut, CVE-2024-24576): arguments for a batch file were
/// escaped with `^` for cmd's first parse only, so a batch file that
/// expands `%*` (npm.cmd does) ran `a&echo INJECTED`'s second command.
/// Through cmd.exe (Wine's, in CI; not yet Windows' own), every hostile
/// argument reaches the batch file as one quoted word and nothing else
/// runs.
#[test]
fn batch_file_arguments_run_no_command_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("show.bat"),
        "@echo off\r\necho all=%*\r\necho one=%1\r\necho two=%2\r\n",
    )
    .unwrap();
    // Without white space too (`echo.X` prints X): an argument with none
    // was not even quoted.
    let hostile = [
        "a&echo.INJECTED-amp",
        "a&echo INJECTED-amp-spaced",
        "b|echo.INJECTED-pipe",
        "c\"&echo.INJECTED-quote",
        "\"&echo INJECTED-quote-first",
        "d)&echo.INJECTED-paren",
        "(e)&echo.INJECTED-parens",
        "e^&echo.INJECTED-caret",
        "f>injected-file",
        "g<nul&echo.INJECTED-lt",
        "h!x!&echo.INJECTED-bang",
        "trailing\\",
        "trailing\\\"&echo.INJECTED-backslash-quote",
        "two words",
        "",
    ];
    for argument in hostile {
        let mut args = vec!["run", "--profile", "offline", "--", r".\show.bat"];
        args.extend([argument, "second&echo.INJECTED-second"]);
        let output = execgate(dir.path(), &args);
        let stdout = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{argument:?}: {stdout}{}",
            text(&output.stderr)
        );
        let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
        assert!(
            !lines.iter().any(|line| line.starts_with("INJECTED")),
            "{argument:?} ran a command: {stdout}"
        );
        assert!(lines[0].starts_with("all="), "{argument:?}: {stdout}");
        assert_eq!(
            lines[2], "two=\"second&echo.INJECTED-second\"",
            "{argument:?}: {stdout}"
        );
        assert!(!ws.join("injected-file").exists(), "{argument:?}");
    }
}

/// Regression: the cmd.exe that runs a batch file was found through
/// PATH, where a directory the sandbox can write may come first. A
/// `cmd.exe` planted there (a copy of execgate.exe, which would reject
/// cmd's options) is not the one that runs.
#[test]
fn a_batch_file_runs_with_the_systems_cmd_not_one_on_path() {
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_execgate"), planted.join("cmd.exe")).unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("hello.bat"), "@echo off\r\necho from-batch\r\n").unwrap();
    let path = format!(
        "{};{}",
        planted.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for args in [
        &["run", "--profile", "offline", "--", r".\hello.bat"][..],
        &[
            "run",
            "--profile",
            "offline",
            "--shell",
            "cmd",
            "--",
            "echo from-script",
        ][..],
    ] {
        let output = execgate_with(
            dir.path(),
            args,
            &[("PATH", &path), ("EXECGATE_WINE_UNENFORCED_TOKEN", "1")],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(
            text(&output.stdout).contains("from-"),
            "{}",
            text(&output.stdout)
        );
        let last = audit(dir.path()).pop().unwrap();
        if args.contains(&"--shell") {
            let program = last["process"]["executable"]
                .as_str()
                .unwrap()
                .to_lowercase();
            assert!(program.ends_with(r"\system32\cmd.exe"), "{program}");
        }
    }
}

/// Regression: children searched their current directory first for
/// programs run by name, and an unsandboxed one kept PATH entries the
/// sandbox can write (and relative ones). Every child now gets
/// `NoDefaultCurrentDirectoryInExePath=1`; one beyond the sandbox, a PATH
/// without those entries and a warning naming them.
#[test]
fn children_never_search_the_working_directory_and_escalations_get_a_clean_path() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let venv = ws.join("venv-scripts");
    std::fs::create_dir_all(&venv).unwrap();
    let path = format!(
        "{};relative-bin;{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("PATH", path.as_str()),
        ("EXECGATE_WINE_UNENFORCED_TOKEN", "1"),
    ];
    let variable = |stdout: &str, name: &str| {
        stdout
            .lines()
            .find_map(|line| {
                let (key, value) = line.trim_end().split_once('=')?;
                key.eq_ignore_ascii_case(name).then(|| value.to_owned())
            })
            .unwrap_or_default()
    };
    let sandboxed = [
        "run",
        "--profile",
        "offline",
        "--",
        "cmd",
        "/d",
        "/c",
        "set",
    ];
    let output = execgate_with(dir.path(), &sandboxed, &env);
    let stdout = text(&output.stdout);
    assert_eq!(
        variable(&stdout, "NoDefaultCurrentDirectoryInExePath"),
        "1",
        "{stdout}"
    );
    // In the sandbox, PATH is the caller's: what the sandbox wrote, it runs
    // in the sandbox.
    assert!(
        variable(&stdout, "PATH").contains("venv-scripts"),
        "{stdout}"
    );

    let unsandboxed = [
        "run",
        "--profile",
        "offline",
        "--",
        "cmd",
        "/d",
        "/c",
        "set&rem",
        "unsandboxed",
    ];
    let output = execgate_with(dir.path(), &unsandboxed, &env);
    let stdout = text(&output.stdout);
    assert_eq!(
        variable(&stdout, "NoDefaultCurrentDirectoryInExePath"),
        "1",
        "{stdout}"
    );
    let child_path = variable(&stdout, "PATH");
    assert!(!child_path.contains("venv-scripts"), "{child_path}");
    assert!(
        !child_path.split(';').any(|entry| entry == "relative-bin"),
        "{child_path}"
    );
    assert!(!child_path.is_empty());
    assert!(
        text(&output.stderr).contains("left out of PATH"),
        "{}",
        text(&output.stderr)
    );
    let last = audit(dir.path()).pop().unwrap();
    assert_eq!(last["execgate"]["execution"], "unsandboxed");
}

/// Regression: PATH entries were compared with the writable roots as
/// text, so a writable directory spelled another way (a trailing dot or
/// space on a component, which Windows drops; a junction, `subst`, an 8.3
/// name) stayed in an escalation's PATH. Each entry is resolved to its
/// canonical path and both spellings are compared.
#[test]
fn an_escalations_path_leaves_out_writable_entries_however_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("tools")).unwrap();
    let ws_text = ws.to_str().unwrap().to_owned();
    let dotted = format!("{ws_text}.\\tools");
    let spaced = format!("{ws_text} \\tools");
    let missing = format!("{ws_text}.\\not-yet");
    let path = format!(
        "{dotted};{spaced};{missing};{}",
        std::env::var("PATH").unwrap_or_default()
    );
    // %TEMP% elsewhere, so that only the working directory's own
    // spellings hold these entries.
    let temp = dir.path().join("temp");
    std::fs::create_dir_all(&temp).unwrap();
    let temp = temp.to_str().unwrap();
    let env = [
        ("PATH", path.as_str()),
        ("TEMP", temp),
        ("TMP", temp),
        ("EXECGATE_WINE_UNENFORCED_TOKEN", "1"),
    ];
    let unsandboxed = [
        "run",
        "--profile",
        "offline",
        "--",
        "cmd",
        "/d",
        "/c",
        "set&rem",
        "unsandboxed",
    ];
    let output = execgate_with(dir.path(), &unsandboxed, &env);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let child_path = stdout
        .lines()
        .find_map(|line| {
            let (key, value) = line.trim_end().split_once('=')?;
            key.eq_ignore_ascii_case("PATH").then(|| value.to_owned())
        })
        .unwrap_or_default();
    for entry in [&dotted, &spaced, &missing] {
        assert!(
            !child_path.split(';').any(|kept| kept == entry.as_str()),
            "{entry} kept: {child_path}"
        );
    }
    assert!(!child_path.is_empty());
}

/// Regression: a program the sandbox could have written, resolved in the
/// working directory, in a writable `PATH` entry or in `%TEMP%`, was
/// escalated unsandboxed by a rule on its name (`whoami`). It runs in
/// place, in the sandbox, and stderr and the audit record say why.
#[test]
fn a_program_the_sandbox_could_write_is_not_escalated() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let venv = ws.join("venv-scripts");
    let temp = dir.path().join("temp");
    for at in [&venv, &temp] {
        std::fs::create_dir_all(at).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_execgate"), at.join("whoami.exe")).unwrap();
    }
    std::fs::copy(env!("CARGO_BIN_EXE_execgate"), ws.join("whoami.exe")).unwrap();
    let path = format!(
        "{};{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let temp_program = temp.join("WHOAMI.EXE").display().to_string();
    let temp_text = temp.display().to_string();
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (r".\WhoAmI.exe", &[]),
        ("whoami", &[("PATH", &path)]),
        (&temp_program, &[("TEMP", &temp_text), ("TMP", &temp_text)]),
    ];
    for (program, extra) in cases {
        let mut env = vec![("EXECGATE_WINE_UNENFORCED_TOKEN", "1")];
        env.extend_from_slice(extra);
        let args = ["run", "--profile", "offline", "--", program, "--version"];
        let output = execgate_with(dir.path(), &args, &env);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{program}: {stderr}");
        assert!(
            stderr.contains("runs in place, in the sandbox: escalation refused: ")
                && stderr.contains("is writable from the sandbox"),
            "{program}: {stderr}"
        );
        let last = audit(dir.path()).pop().unwrap();
        assert_eq!(last["execgate"]["decision"], "run", "{program}: {last}");
        assert_eq!(last["execgate"]["sandbox"], "windows-restricted-token");
        assert_eq!(last["execgate"]["decided_by"], "rule");
        assert!(
            last["execgate"]["note"]
                .as_str()
                .unwrap()
                .contains("writable from the sandbox"),
            "{last}"
        );
    }
}

/// Regression: a command that could not be decided (not found) left no
/// record, and one the planner or the quoting refused was recorded as
/// `decision: run, outcome: success` before its error. Each is now one
/// record, listed with the denials.
#[test]
fn commands_refused_before_they_run_are_recorded_as_denials() {
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "not found",
            &["run", "--profile", "offline", "--", "no-such-program-here"],
            "not found",
        ),
        (
            "a network the planner cannot restrict",
            &["run", "--", "cmd", "/d", "/c", "echo no"],
            "best-effort",
        ),
        (
            "a batch argument cmd cannot be given",
            &["run", "--profile", "offline", "--", r".\show.bat", "100%"],
            "%",
        ),
    ];
    for (case, args, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("show.bat"), "@echo off\r\necho %*\r\n").unwrap();
        let output = execgate(dir.path(), args);
        assert_eq!(
            output.status.code(),
            Some(125),
            "{case}: {}",
            text(&output.stderr)
        );
        assert!(text(&output.stdout).is_empty(), "{case}");
        let records = audit(dir.path());
        assert_eq!(records.len(), 1, "{case}: {records:?}");
        let record = &records[0];
        assert_eq!(record["event"]["action"], "error", "{case}: {record}");
        assert_eq!(record["event"]["outcome"], "failure", "{case}: {record}");
        assert_eq!(record["execgate"]["decision"], "deny", "{case}: {record}");
        assert_eq!(
            record["execgate"]["decided_by"], "server",
            "{case}: {record}"
        );
        assert!(
            record["execgate"]["reason"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{case}: {record}"
        );
        assert_eq!(record["execgate"]["reason"], record["error"], "{case}");
        assert!(!record["process"]["args"].as_array().unwrap().is_empty());
    }
}

/// Regression: a stdin that could not be read, and output that could not
/// be written, ended `execgate run` with no audit record of the command.
/// The first is refused and recorded with the denials; the second ran, and
/// its end is recorded with a warning that its output was not passed on.
#[test]
fn stdin_and_output_errors_are_audited() {
    let command = |dir: &Path, stdin: std::fs::File, stdout: std::fs::File| {
        std::fs::write(dir.join("profiles.toml"), PROFILES).unwrap();
        std::fs::write(dir.join("team.rules"), RULES).unwrap();
        let ws = dir.join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_execgate"));
        own_temp(&mut command, dir);
        command
            .env("LOCALAPPDATA", dir.join("state"))
            .env("EXECGATE_WINE_UNENFORCED_TOKEN", "1")
            .env_remove("SSH_CONNECTION")
            .env_remove("SSH_CLIENT")
            .args(["run", "--profiles"])
            .arg(dir.join("profiles.toml"))
            .arg("--rules")
            .arg(dir.join("team.rules"))
            .arg("--cwd")
            .arg(&ws)
            .args(["--profile", "offline", "--", "cmd", "/d", "/c", "echo out"])
            .stdin(stdin)
            .stdout(stdout);
        output_of(&mut command)
    };
    // A handle opened for writing only cannot be read, and one opened for
    // reading only cannot be written.
    let dir = tempfile::tempdir().unwrap();
    let write_only = std::fs::File::create(dir.path().join("in")).unwrap();
    let sink = std::fs::File::create(dir.path().join("out")).unwrap();
    let output = command(dir.path(), write_only, sink);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("cannot read stdin"));
    let records = audit(dir.path());
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["event"]["action"], "error");
    assert_eq!(records[0]["execgate"]["decision"], "deny");
    assert!(records[0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot read stdin"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        "",
        "it did not run"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in"), "").unwrap();
    std::fs::write(dir.path().join("out"), "").unwrap();
    let stdin = std::fs::File::open(dir.path().join("in")).unwrap();
    let read_only = std::fs::File::open(dir.path().join("out")).unwrap();
    let output = command(dir.path(), stdin, read_only);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("cannot write the command's output"),
        "{}",
        text(&output.stderr)
    );
    let last = audit(dir.path()).pop().unwrap();
    assert_eq!(last["event"]["action"], "exit", "{last}");
    assert_eq!(last["process"]["exit_code"], 0, "{last}");
    assert!(
        last["execgate"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|warning| warning
                .as_str()
                .unwrap()
                .contains("cannot write the command's output")),
        "{last}"
    );
}

/// Regression: a record was written with `writeln!` on an unbuffered
/// file, in many write calls, so records of concurrent runs could
/// interleave. Each is one write call of the whole line now: every line of
/// concurrent runs parses.
#[test]
fn records_of_concurrent_runs_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    execgate(
        dir.path(),
        &[
            "run",
            "--profile",
            "offline",
            "--",
            "cmd",
            "/d",
            "/c",
            "exit 9",
        ],
    );
    // Long arguments make long records, written in many pieces before.
    let long: Vec<String> = (0..24)
        .map(|n| format!("{n}{}", "x\"y".repeat(300)))
        .collect();
    let runs: Vec<std::process::Child> = (0..8)
        .map(|_| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_execgate"));
            command.env("LOCALAPPDATA", dir.path().join("state"));
            own_temp(&mut command, dir.path());
            command.env("EXECGATE_WINE_UNENFORCED_TOKEN", "1");
            command
                .args(["run", "--profiles"])
                .arg(dir.path().join("profiles.toml"));
            command.arg("--rules").arg(dir.path().join("team.rules"));
            command.arg("--cwd").arg(dir.path().join("ws"));
            command.args(["--profile", "offline", "--", "cmd", "/d", "/c", "exit 9"]);
            command.args(&long);
            command.stdout(std::process::Stdio::null());
            command.stderr(std::process::Stdio::null());
            command.spawn().unwrap()
        })
        .collect();
    for mut run in runs {
        assert_eq!(run.wait().unwrap().code(), Some(126));
    }
    let log = std::fs::read_to_string(
        dir.path()
            .join("state")
            .join("execgate")
            .join("audit.jsonl"),
    )
    .unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 9, "{log}");
    for line in lines {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("{error}: an interleaved line of {} bytes", line.len()));
        assert_eq!(record["execgate"]["decision"], "deny");
    }
}

/// Regression: under SSH the private desktop was skipped without a word.
/// The command's stderr and its records say so.
#[test]
fn a_skipped_private_desktop_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "--profile",
        "offline",
        "--",
        "cmd",
        "/d",
        "/c",
        "echo hi",
    ];
    let output = execgate_with(
        dir.path(),
        &args,
        &[
            ("EXECGATE_WINE_UNENFORCED_TOKEN", "1"),
            ("SSH_CONNECTION", "192.0.2.1 50000 192.0.2.2 22"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("no private desktop: SSH_CONNECTION or SSH_CLIENT is set"),
        "{}",
        text(&output.stderr)
    );
    // One sentence, spaced as written (a lost line continuation left runs
    // of spaces in it).
    assert!(
        text(&output.stderr).contains(
            "the command runs on the session's desktop, with the job's UI limits (no clipboard, \
             no other processes' windows"
        ),
        "{}",
        text(&output.stderr)
    );
    assert!(
        !text(&output.stderr).contains("  "),
        "{}",
        text(&output.stderr)
    );
    for record in audit(dir.path()) {
        assert!(
            record["execgate"]["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|warning| warning.as_str().unwrap().contains("no private desktop")),
            "{record}"
        );
    }
    let output = execgate(dir.path(), &args);
    assert!(!text(&output.stderr).contains("no private desktop"));
}

/// Regression: a rule's profile's own `windows_network` was ignored; the
/// session's alone decided. For a command run with a rule's profile, the
/// profile's own setting wins when it has one.
#[test]
fn a_rules_profile_decides_its_own_windows_network() {
    let dir = tempfile::tempdir().unwrap();
    // The session (workspace-write) refuses its restricted network; the
    // rule's profile opts in to best effort for its command.
    let output = execgate(
        dir.path(),
        &["run", "--", "cmd", "/d", "/c", "echo", "rule-offline"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "rule-offline");
    assert!(text(&output.stderr).contains("best effort"));
    let last = audit(dir.path()).pop().unwrap();
    // As Linux records say it (probe 168), the grants listed.
    assert_eq!(last["execgate"]["execution"], "permissions", "{last}");
    assert!(
        last["execgate"]["grants"]
            .as_array()
            .is_some_and(|grants| !grants.is_empty()),
        "{last}"
    );
    // The session opts in; the rule's profile refuses for its command.
    let output = execgate(
        dir.path(),
        &[
            "run",
            "--profile",
            "offline",
            "--",
            "cmd",
            "/d",
            "/c",
            "echo",
            "rule-strict",
        ],
    );
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(text(&output.stdout).is_empty());
    assert!(text(&output.stderr).contains("cannot block the network"));
}

#[test]
fn a_cmd_script_is_decided_as_cmd_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let output = execgate(
        dir.path(),
        &[
            "run",
            "--profile",
            "offline",
            "--shell",
            "cmd",
            "--",
            "echo a& echo b",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).split_whitespace().collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(text(&output.stderr).contains("not decided one by one"));
    let last = audit(dir.path()).pop().unwrap();
    assert!(last["execgate"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("not decided one by one"));
}

#[test]
fn an_unsandboxed_rule_runs_with_the_callers_token() {
    let dir = tempfile::tempdir().unwrap();
    let output = execgate(dir.path(), &["run", "--profile", "offline", "--", "whoami"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let last = audit(dir.path()).pop().unwrap();
    assert_eq!(last["execgate"]["execution"], "unsandboxed");
    assert_eq!(last["execgate"]["sandbox"], "none");
}

#[test]
fn doctor_reports_token_acl_job_and_desktop() {
    let dir = tempfile::tempdir().unwrap();
    let output = execgate(dir.path(), &["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["sandbox"], "windows-restricted-token");
    assert_eq!(report["ACL composition"], "ok");
    assert_eq!(report["job objects (kill on close)"], "ok");
    assert_eq!(report["private desktop"], "ok");
    assert!(report["restricted token"].as_str().unwrap().len() > 2);
}

/// Probe 125: a sandbox that could write execgate's state directory could
/// put the user's own SID (or a group's) among the capability SIDs, and a
/// later run's token would then write wherever the user can. Such a run
/// is refused.
#[test]
fn a_sandbox_that_could_write_the_state_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ws").join("state");
    let output = execgate_with(
        dir.path(),
        &["run", "--", "cmd", "/d", "/c", "echo ran"],
        &[
            ("EXECGATE_WINE_UNENFORCED_TOKEN", "1"),
            ("LOCALAPPDATA", state.to_str().unwrap()),
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(!text(&output.stdout).contains("ran"));
    assert!(
        stderr.contains("state directory") && stderr.contains("is writable from the sandbox"),
        "{stderr}"
    );
}

/// Probe 146: Windows names files without regard to case, and rules were
/// matched by the spelling on disk: `forbidden` on `whoami.exe` passed
/// over `WHOAMI.EXE`, and on `C:\Windows\System32\...` over
/// `C:\windows\system32\...`. A pin written as the README writes one
/// (`name = "whoami"`, a path ending in `whoami.exe`) was refused, and one
/// on `whoami.exe` did not keep a rule on `whoami` to its paths: a
/// look-alike elsewhere ran unsandboxed.
#[test]
fn rules_and_pins_name_programs_whatever_their_case() {
    let dir = tempfile::tempdir().unwrap();
    let system = Path::new(&std::env::var_os("SystemRoot").unwrap()).join("system32");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let look_alike = bin.join("WHOAMI.EXE");
    std::fs::copy(system.join("whoami.exe"), &look_alike).unwrap();
    let upper_system = system.to_str().unwrap().to_uppercase();
    let look_alike = look_alike.to_str().unwrap().to_owned();
    let forbidden: [(String, &str); 4] = [
        (r#"["whoami.exe"]"#.into(), &look_alike),
        (r#"["WhoAmI"]"#.into(), "whoami"),
        (
            format!(r#"["{}\\WHOAMI.EXE"]"#, upper_system.replace('\\', "\\\\")),
            "whoami",
        ),
        (
            format!(r#"["{}/whoami.exe"]"#, upper_system.replace('\\', "/")),
            "whoami",
        ),
    ];
    for (pattern, program) in &forbidden {
        let rules = dir.path().join("case.rules");
        std::fs::write(
            &rules,
            format!("prefix_rule(pattern = {pattern}, decision = \"forbidden\")\n"),
        )
        .unwrap();
        let output = run_offline_with(dir.path(), &rules, &[program]);
        assert_eq!(
            output.status.code(),
            Some(126),
            "{pattern} {program}: {}",
            text(&output.stderr)
        );
    }
    let pinned = system.join("whoami.exe");
    let pinned = pinned.to_str().unwrap().replace('\\', "\\\\");
    for pin in ["whoami", "WHOAMI.exe"] {
        let rules = dir.path().join("pin.rules");
        std::fs::write(
            &rules,
            format!(
                "host_executable(name = \"{pin}\", paths = [\"{pinned}\"])\n\
                 prefix_rule(pattern = [\"whoami\"], decision = \"allow\", execution = \"unsandboxed\")\n"
            ),
        )
        .unwrap();
        // The look-alike runs in place; the pinned one is escalated, as the
        // rule says.
        for (program, decision) in [(look_alike.as_str(), "run"), ("whoami", "escalate")] {
            let output = run_offline_with(dir.path(), &rules, &[program]);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "{pin} {program}: {stderr}");
            let last = audit(dir.path()).pop().unwrap();
            assert_eq!(last["execgate"]["decision"], decision, "{pin}: {last}");
        }
    }
}

/// Probe 146: an audit log named inside a writable root (the workspace)
/// was not warned of, and a command there appended a forged record. As on
/// Linux, the session warns.
#[test]
fn an_audit_log_the_sandbox_can_write_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    for (log, warned) in [
        (ws.join("audit.jsonl"), true),
        (dir.path().join("audit.jsonl"), false),
    ] {
        let output = execgate(
            dir.path(),
            &[
                "run",
                "--profile",
                "offline",
                "--audit-log",
                log.to_str().unwrap(),
                "--",
                "cmd",
                "/d",
                "/c",
                "exit 0",
            ],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert_eq!(
            stderr.contains(&format!(
                "the audit log {} is in reach of this session's sandbox",
                log.display()
            )),
            warned,
            "{stderr}"
        );
    }
    // Relative, from execgate's own directory (the workspace, here), in a
    // directory not made yet: no ancestor of it was there to judge (a
    // review).
    let mut command = Command::new(env!("CARGO_BIN_EXE_execgate"));
    own_temp(&mut command, dir.path());
    command
        .current_dir(&ws)
        .env("LOCALAPPDATA", dir.path().join("state"))
        .env("EXECGATE_WINE_UNENFORCED_TOKEN", "1")
        .arg("run")
        .arg("--profiles")
        .arg(dir.path().join("profiles.toml"))
        .args([
            "--profile",
            "offline",
            "--audit-log",
            r"new\audit.jsonl",
            "--",
        ])
        .args(["cmd", "/d", "/c", "exit 0"]);
    let output = output_of(&mut command);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(r"the audit log new\audit.jsonl is in reach"),
        "{stderr}"
    );
}

/// Probe 146: refusals that led nowhere. `:root = write` pointed to the
/// `danger-full-access` profile, which is refused too, in words that did
/// not read as a refusal; the network's named a key, not where to set it
/// (Windows reads no config file).
#[test]
fn refusals_say_what_runs_instead() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str]| {
        let output = execgate(dir.path(), args);
        assert_eq!(output.status.code(), Some(125), "{args:?}");
        text(&output.stderr)
    };
    let unsandboxed = refused(&[
        "run",
        "--profile",
        "danger-full-access",
        "--",
        "cmd",
        "/d",
        "/c",
        "exit 0",
    ]);
    assert!(
        unsandboxed.contains("runs no session without a sandbox")
            && unsandboxed.contains(r#"execution = "unsandboxed""#),
        "{unsandboxed}"
    );
    let network = refused(&["run", "--", "cmd", "/d", "/c", "exit 0"]);
    assert!(
        network.contains("--profiles FILE --profile NAME"),
        "{network}"
    );
    // Said once, not once by the error and again by its cause.
    let missing = dir.path().join("missing.rules");
    let missing = refused(&["run", "--rules", missing.to_str().unwrap(), "--", "whoami"]);
    assert_eq!(missing.matches("(os error 2)").count(), 1, "{missing}");
}

/// Probe 146: a batch file in the working directory was "not found on
/// PATH", with no word that the directory is not searched; a rule naming
/// a profile that is not defined was not named.
#[test]
fn what_cannot_be_found_says_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("t.bat"), "@echo hi\r\n").unwrap();
    let output = execgate(dir.path(), &["run", "--profile", "offline", "--", "t.bat"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains(r"name it by its path (.\t.bat)"),
        "{stderr}"
    );
    // By its name without the extension too, as PATH is searched.
    let output = execgate(dir.path(), &["run", "--profile", "offline", "--", "t"]);
    let stderr = text(&output.stderr);
    assert!(stderr.contains(r"name it by its path (.\t)"), "{stderr}");
    let rules = dir.path().join("profile.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"whoami\"], decision = \"allow\", execution = \"nowhere\")\n",
    )
    .unwrap();
    let output = run_offline_with(dir.path(), &rules, &["whoami"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("profile.rules:1"), "{stderr}");
}
