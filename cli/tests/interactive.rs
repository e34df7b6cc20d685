//! `execgate shell` as a person uses it: in a real terminal (tmux, keys sent
//! with `send-keys`, the screen read back with `capture-pane`), with a
//! `.zshrc` that uses zsh's function library (compinit, promptinit, colors,
//! vcs_info), Tab completion, the prompt marker, and the start and end lines.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A `.zshrc` a new user might copy from a tutorial.
const TUTORIAL_ZSHRC: &str = "\
autoload -U compinit && compinit
autoload -U promptinit && promptinit
prompt adam1
autoload -U colors && colors
autoload -Uz vcs_info
precmd() { vcs_info }
RC_READ=yes
";

/// A tmux server of its own, its socket in a directory of its own: killed
/// and removed on drop (tmux leaves the socket file of a killed server
/// behind, and every later sandbox start would cover it with a bind mount).
struct Terminal {
    socket: String,
    _socket_dir: tempfile::TempDir,
}

impl Terminal {
    /// Starts `command` (a `sh -c` string) in a 200x50 terminal.
    fn start(command: &str, cwd: &Path) -> Terminal {
        let socket_dir = tempfile::tempdir().unwrap();
        let socket = socket_dir
            .path()
            .join(format!("tmux-{}", unique()))
            .to_str()
            .unwrap()
            .to_owned();
        let status = Command::new("tmux")
            .args(["-S", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "200", "-y", "50", "-c"])
            .arg(cwd)
            .arg(command)
            .status()
            .expect("tmux is installed by scripts/setup-debian.sh");
        assert!(status.success());
        Terminal {
            socket,
            _socket_dir: socket_dir,
        }
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-S", &self.socket, "send-keys", "-t", "0"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args(["-S", &self.socket, "capture-pane", "-p", "-J", "-t", "0"])
            .args(["-S", "-200"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen holds `text` `times` times; fails with the
    /// screen after 20 s.
    fn wait_for(&self, text: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} (x{times}) never appeared; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .status();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A home with `zshrc` and a git workspace holding one file, under
/// /var/tmp (outside the checkout, not under the sandbox-writable /tmp).
fn home(zshrc: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("execgate-shell")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(dir.path().join(".zshrc"), zshrc).unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    assert!(Command::new("git")
        .args(["init", "-q"])
        .current_dir(&ws)
        .status()
        .unwrap()
        .success());
    std::fs::write(ws.join("quarterly-report.txt"), "").unwrap();
    (dir, ws)
}

/// The `sh -c` line that runs `execgate shell ARGS` with `home` as HOME,
/// then says how it ended and stays on screen.
fn shell_command(home: &Path, args: &str) -> String {
    let binary = env!("CARGO_BIN_EXE_execgate");
    let home = home.display();
    format!(
        "env -u ZDOTDIR HOME={home} XDG_CONFIG_HOME={home}/no-config \
         XDG_STATE_HOME={home}/state \
         {binary} shell {args}; echo execgate-exit=$?; sleep 60"
    )
}

/// What zsh prints when a `.zshrc` cannot find the function library or a
/// prompt theme, and other signs of a broken startup.
const STARTUP_ERRORS: [&str; 6] = [
    "function definition file not found",
    "command not found",
    "no such file",
    "not found",
    "error",
    "prompt theme",
];

#[test]
fn a_tutorial_zshrc_works_and_tab_completes_commands_and_files() {
    let (home, ws) = home(TUTORIAL_ZSHRC);
    let terminal = Terminal::start(&shell_command(home.path(), ""), &ws);
    let screen = terminal.wait_for("[execgate:workspace-write]", 1);
    assert!(
        screen.contains("execgate: shell in profile workspace-write; rules: none"),
        "{screen}"
    );
    assert!(screen.contains("audit log:"), "{screen}");

    // A file name, then a command name, completed by Tab.
    terminal.keys(&["ls quarterly-re", "Tab"]);
    terminal.wait_for("ls quarterly-report.txt", 1);
    terminal.keys(&["Enter"]);
    terminal.wait_for("quarterly-report.txt", 2);
    terminal.keys(&["whoam", "Tab"]);
    terminal.wait_for("whoami", 1);
    terminal.keys(&[
        " && print -r -- rc=$RC_READ profile=$EXECGATE_PROFILE",
        "Enter",
    ]);
    let screen = terminal.wait_for("rc=yes profile=workspace-write", 1);
    assert!(
        screen.contains("\nroot\nrc=yes"),
        "whoami did not run: {screen}"
    );

    terminal.keys(&["exit", "Enter"]);
    let screen = terminal.wait_for("execgate-exit=0", 1);
    let summary = screen
        .lines()
        .find(|line| line.starts_with("execgate: shell ended: "))
        .unwrap_or_else(|| panic!("no summary line: {screen}"));
    // vcs_info runs git before every prompt: several commands decided,
    // nothing escalated or denied without rules.
    assert!(
        summary.ends_with(" escalated, 0 denied") && summary.contains(" 0 escalated"),
        "{summary}"
    );
    let lowered = screen.to_lowercase();
    for error in STARTUP_ERRORS {
        assert!(!lowered.contains(error), "{error:?} on screen:\n{screen}");
    }
}

#[test]
fn no_rcs_quiet_and_no_prompt_marker() {
    let (home, ws) = home(TUTORIAL_ZSHRC);
    let terminal = Terminal::start(
        &shell_command(home.path(), "--no-rcs --quiet --no-prompt-marker"),
        &ws,
    );
    terminal.keys(&[
        "print -r -- rc=${RC_READ:-unread} profile=$EXECGATE_PROFILE",
        "Enter",
    ]);
    terminal.wait_for("rc=unread profile=workspace-write", 1);
    terminal.keys(&["exit 3", "Enter"]);
    let screen = terminal.wait_for("execgate-exit=3", 1);
    for absent in [
        "[execgate:",
        "execgate: shell in profile",
        "execgate: shell ended",
    ] {
        assert!(!screen.contains(absent), "{absent:?} on screen:\n{screen}");
    }
}

#[test]
fn the_marker_can_be_turned_off_from_the_zshrc() {
    let (home, ws) = home("EXECGATE_PROMPT_MARKER=0\nPS1='ready> '\n");
    let terminal = Terminal::start(&shell_command(home.path(), ""), &ws);
    terminal.wait_for("ready> ", 1);
    terminal.keys(&["print -r -- right=${RPROMPT:-empty}", "Enter"]);
    let screen = terminal.wait_for("right=empty", 1);
    assert!(!screen.contains("[execgate:"), "{screen}");
    terminal.keys(&["exit", "Enter"]);
    terminal.wait_for("execgate-exit=0", 1);
}

#[test]
fn the_function_library_and_modules_are_readable_in_a_minimal_profile() {
    let (home, ws) = home("");
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.bare]\nfilesystem = { \":minimal\" = \"read\", \":cwd\" = \"write\" }\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--profile", "bare", "--config"])
        .arg(&config)
        .args([
            "--",
            "autoload -U colors && colors && zmodload zsh/datetime && print -r -- ok $+functions[colors] ${+EPOCHSECONDS}",
        ])
        .current_dir(&ws)
        .env("XDG_STATE_HOME", home.path().join("state"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        (output.status.code(), stdout.trim()),
        (Some(0), "ok 1 1"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
