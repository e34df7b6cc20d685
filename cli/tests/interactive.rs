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

    /// The pid of the `execgate` the pane's `sh -c` started.
    fn execgate_pid(&self) -> i32 {
        let output = Command::new("tmux")
            .args(["-S", &self.socket, "display-message", "-p", "-t", "0"])
            .arg("#{pane_pid}")
            .output()
            .unwrap();
        let shell = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .unwrap()
            .split_whitespace()
            .map(|pid| pid.parse().unwrap())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "execgate")
            })
            .unwrap_or_else(|| panic!("no execgate under the pane's shell {shell}"))
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

/// Regression test: with `stty tostop`, execgate's own lines, written
/// while the sandboxed shell holds the terminal's foreground, must not stop
/// it: stopped, it would hand the terminal back to the caller's shell while
/// the sandbox runs on (a probe's sandboxed program then took the
/// foreground and read what was typed to that shell).
#[test]
fn execgate_is_not_stopped_by_its_own_lines_from_the_background() {
    let (home, ws) = home("");
    // An escalation refused with a note on stderr: the program the rule
    // allows is a copy the sandbox can write.
    std::fs::copy("/usr/bin/uname", ws.join("uname")).unwrap();
    let rules = home.path().join("uname.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"uname\"])\n").unwrap();
    // Started from an interactive shell, as a person does: execgate is a
    // job of its own there, a group the shell stops and resumes.
    let terminal = Terminal::start("exec bash --norc --noprofile -i", &ws);
    let command = shell_command(
        home.path(),
        &format!("--no-rcs --verbose --rules {}", rules.display()),
    );
    terminal.keys(&[&format!("stty tostop; {command}"), "Enter"]);
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&["./uname; print -r -- ran-$?", "Enter"]);
    let screen = terminal.wait_for("ran-0", 1);
    assert!(screen.contains("escalation refused"), "{screen}");
    terminal.keys(&["exit 4", "Enter"]);
    let screen = terminal.wait_for("execgate-exit=4", 1);
    assert!(screen.contains("execgate: shell ended"), "{screen}");
}

/// Regression test (a probe): an unsandboxed escalation that reads the
/// terminal was in a process group of its own in execgate's session, never
/// the terminal's foreground, and stopped for good at its first read
/// (`SIGTTIN`). It leads a session of its own now, as a sandboxed one does.
#[test]
fn an_unsandboxed_escalation_reads_the_terminal() {
    let (home, ws) = home("");
    let rules = home.path().join("head.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"head\"])\n").unwrap();
    let terminal = Terminal::start(
        &run_command(
            home.path(),
            "",
            &format!(
                "--verbose --rules {} -- 'head -n1; print -r -- read=$?'",
                rules.display()
            ),
        ),
        &ws,
    );
    terminal.wait_for("Escalate(Unsandboxed)", 1);
    terminal.keys(&["typed-line", "Enter"]);
    let screen = terminal.wait_for("read=0", 1);
    assert_eq!(screen.matches("typed-line").count(), 2, "{screen}");
    assert_eq!(
        exit_status(home.path(), Duration::from_secs(60), &terminal),
        "0"
    );
}

/// Regression test (a probe): an escalated program in a session of its own
/// is never stopped by the terminal, so one started in the background read
/// what was typed to the shell (`cat > stolen &` took the next lines). One
/// started in the background with the terminal as its input gets
/// `/dev/null` instead, as a non-interactive shell's background jobs do.
#[test]
fn an_escalation_started_in_the_background_does_not_read_the_terminal() {
    let (home, ws) = home("");
    let rules = home.path().join("cat.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"cat\"], decision = \"allow\", execution = \"unsandboxed\")\n",
    )
    .unwrap();
    let stolen = ws.join("stolen");
    let terminal = Terminal::start(
        &shell_command(
            home.path(),
            &format!("--no-rcs --quiet --rules {}", rules.display()),
        ),
        &ws,
    );
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&[&format!("cat > {} &", stolen.display()), "Enter"]);
    std::thread::sleep(Duration::from_millis(1500));
    terminal.keys(&["print ran=$((40+2))", "Enter"]);
    terminal.wait_for("ran=42", 1);
    terminal.keys(&[
        "wait; print size=$(wc -c < ",
        &stolen.display().to_string(),
        ")",
        "Enter",
    ]);
    let screen = terminal.wait_for("size=", 2);
    assert!(screen.contains("size=0"), "{screen}");
    terminal.keys(&["exit", "Enter"]);
    terminal.wait_for("execgate-exit=0", 1);
}

/// Regression test (a probe): a program the interactive shell `exec`ed
/// and Ctrl-Z stopped (with its stand-in) had nothing above it to see the
/// stop or continue it: the session held the terminal, stopped for good.
/// The sandbox's init continues it.
#[test]
fn ctrl_z_of_a_program_the_shell_execed_does_not_wedge_the_session() {
    let (home, ws) = home("");
    let rules = home.path().join("sleep.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"sleep\"])\n").unwrap();
    let terminal = Terminal::start(
        &shell_command(
            home.path(),
            &format!("--no-rcs --rules {}", rules.display()),
        ),
        &ws,
    );
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&["exec sleep 2", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    terminal.keys(&["C-z"]);
    terminal.wait_for("execgate-exit=0", 1);
}

/// Regression test (a review): started in the background of a terminal
/// (`execgate shell &`), the sandboxed shell took the terminal's foreground
/// from the caller's shell. It refuses to start there.
#[test]
fn the_shell_does_not_start_in_the_background() {
    let (home, ws) = home("");
    let terminal = Terminal::start("exec bash --norc --noprofile -i", &ws);
    let command = shell_command(home.path(), "--no-rcs").replace("; sleep 60", "");
    terminal.keys(&[
        &format!("{{ {command}; }} & sleep 2; echo still-$((40+2))"),
        "Enter",
    ]);
    terminal.wait_for("execgate-exit=125", 1);
    let screen = terminal.wait_for("still-42", 1);
    assert!(
        screen.contains("started in the background of its terminal")
            && !screen.contains("[execgate:"),
        "{screen}"
    );
}

/// Regression test: terminal modes set inside the shell (no echo) do not
/// outlive it (a probe's outer shell was left without echo).
#[test]
fn the_terminal_modes_are_given_back_as_they_were() {
    let (home, ws) = home("");
    let command = shell_command(home.path(), "--no-rcs").replace(
        "; sleep 60",
        "; case $(stty) in *-echo*) echo modes-echo-off;; *) echo modes-echo-on;; esac; sleep 60",
    );
    let terminal = Terminal::start(&command, &ws);
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&["stty -echo; exit", "Enter"]);
    let screen = terminal.wait_for("modes-echo-", 1);
    assert!(screen.contains("modes-echo-on"), "{screen}");
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

/// What a sandboxed command runs to suspend the terminal's output: from
/// then on every write to the terminal waits in the kernel until someone
/// resumes it (`TCOON`), whoever writes.
const SUSPEND_OUTPUT: &str = "\
import sys, termios
termios.tcflow(sys.stderr.fileno(), termios.TCOOFF)
";

/// A home as [`home`] makes, with `suspend-output.py` in the workspace and
/// `prompt.rules`, which asks before `touch`.
fn suspending_home() -> (tempfile::TempDir, PathBuf) {
    let (dir, ws) = home("");
    std::fs::write(ws.join("suspend-output.py"), SUSPEND_OUTPUT).unwrap();
    std::fs::write(
        dir.path().join("prompt.rules"),
        "prefix_rule(pattern = [\"touch\"], decision = \"prompt\")\n",
    )
    .unwrap();
    (dir, ws)
}

/// The `sh -c` line that runs `VARIABLES execgate run ARGS` with `home` as
/// HOME, writes its exit status into `home/exit` (the terminal's output may
/// be suspended: the screen cannot be relied on) and on screen, and stays.
fn run_command(home: &Path, variables: &str, args: &str) -> String {
    let binary = env!("CARGO_BIN_EXE_execgate");
    let home = home.display();
    format!(
        "env -u ZDOTDIR -u EXECGATE_LOG HOME={home} XDG_CONFIG_HOME={home}/no-config \
         XDG_STATE_HOME={home}/state {variables} \
         {binary} run {args}; echo $? > {home}/exit.tmp; mv {home}/exit.tmp {home}/exit; \
         echo execgate-exit=$(cat {home}/exit); sleep 60"
    )
}

/// The exit status `execgate run` wrote into `home/exit`; fails after
/// `limit` (a hang detector, not a speed target: the old behaviour never
/// ends at all).
fn exit_status(home: &Path, limit: Duration, terminal: &Terminal) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(status) = std::fs::read_to_string(home.join("exit")) {
            return status.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "execgate run did not end within {limit:?}; the screen:\n{}",
            terminal.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Regression test: a command that suspended the terminal's output
/// (`tcflow(TCOOFF)`) and then asks for an approval still gets its prompt
/// shown (the prompt resumes the output: the terminal is the person's who
/// answers), and the answer is taken.
#[test]
fn a_prompt_is_shown_after_the_command_suspended_the_terminals_output() {
    let (home, ws) = suspending_home();
    let rules = home.path().join("prompt.rules");
    let terminal = Terminal::start(
        &run_command(
            home.path(),
            "",
            &format!(
                "--rules {} -- '/usr/bin/python3 suspend-output.py; touch ../approved; \
                 print touched=$?'",
                rules.display()
            ),
        ),
        &ws,
    );
    terminal.wait_for("[!] abort the command", 1);
    terminal.keys(&["y", "Enter"]);
    let screen = terminal.wait_for("execgate-exit=", 1);
    assert!(screen.contains("touched=0"), "{screen}");
    assert_eq!(
        exit_status(home.path(), Duration::from_secs(60), &terminal),
        "0"
    );
    assert!(home.path().join("approved").exists(), "{screen}");
}

/// Probe 246: without a session cgroup nothing freezes the command while
/// a question is up, and a background job of it took the keys that
/// answer, or drew another program's question over the one asked. Such a
/// question is not asked: it is declined, and the message says why. A
/// permissions request is still asked: it comes before the command runs.
#[test]
fn a_question_is_not_asked_where_the_session_cannot_be_frozen() {
    let (home, ws) = suspending_home();
    let rules = home.path().join("prompt.rules");
    let request = home.path().join("request.toml");
    std::fs::write(
        &request,
        format!(
            "filesystem = {{ {:?} = \"read\" }}\n",
            ws.display().to_string()
        ),
    )
    .unwrap();
    let terminal = Terminal::start(
        &run_command(
            home.path(),
            "EXECGATE_SCOPE=process-groups",
            &format!(
                "--rules {} --request-permissions {} -- 'touch ../approved; print touched=$?'",
                rules.display(),
                request.display()
            ),
        ),
        &ws,
    );
    terminal.wait_for("grant the permissions above to this command?", 1);
    terminal.keys(&["n", "Enter"]);
    let screen = terminal.wait_for("execgate-exit=", 1);
    assert!(screen.contains("touched=126"), "{screen}");
    assert!(
        screen.contains("cannot ask on the terminal (the session has no cgroup to freeze"),
        "{screen}"
    );
    assert!(!screen.contains("run /usr/bin/touch"), "{screen}");
    assert!(!home.path().join("approved").exists(), "{screen}");
}

/// Regression test: `execgate run` ended by a signal while its prompt waits
/// for a key exits without one: the prompt's thread must not hold the
/// runtime's shutdown.
#[test]
fn a_run_ended_while_its_prompt_waits_exits_without_an_answer() {
    let (home, ws) = suspending_home();
    let rules = home.path().join("prompt.rules");
    let terminal = Terminal::start(
        &run_command(
            home.path(),
            "",
            &format!("--rules {} -- 'touch ../approved'", rules.display()),
        ),
        &ws,
    );
    terminal.wait_for("[!] abort the command", 1);
    let run = terminal.execgate_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        exit_status(home.path(), Duration::from_secs(60), &terminal),
        "143"
    );
    assert!(!home.path().join("approved").exists());
}

/// Review 220: Ctrl-C at a question of `execgate run` aborted the command
/// and execgate exited 137, which a shell's loop around it took for the
/// command's own end, and went on. It ends by the key's signal, as a run
/// interrupted by a signal does (bash, which did not get the key's
/// signal itself, reports 128 + the signal and goes on to write it):
/// Ctrl-\ ended it by `SIGINT` too, where a shell tells a quit apart. `!`
/// ends it as the killed command did: 137.
#[test]
fn an_abort_at_a_question_ends_the_run_as_its_key_says() {
    let cases: [(&[&str], &str); 3] = [
        (&["C-c"], "130"),
        (&["C-\\"], "131"),
        (&["!", "Enter"], "137"),
    ];
    for (keys, status) in cases {
        let (home, ws) = suspending_home();
        let rules = home.path().join("prompt.rules");
        let script = home.path().join("run.bash");
        let run = run_command(
            home.path(),
            "",
            &format!("--rules {} -- 'touch ../approved'", rules.display()),
        );
        std::fs::write(&script, run).unwrap();
        let terminal = Terminal::start(&format!("bash {}", script.display()), &ws);
        terminal.wait_for("[!] abort the command", 1);
        terminal.keys(keys);
        assert_eq!(
            exit_status(home.path(), Duration::from_secs(60), &terminal),
            status,
            "{keys:?}"
        );
        assert!(!home.path().join("approved").exists());
        // What the abort stops is the run's whole command, and said so.
        assert!(
            terminal
                .screen()
                .contains("execgate: aborting the command and everything it started"),
            "{}",
            terminal.screen()
        );
    }
}

/// Regression test: with the terminal's output suspended by the command,
/// execgate's own lines on stderr (`EXECGATE_LOG` events, `--verbose`
/// decisions) must not stall the escalation server that writes them, nor
/// keep `execgate run` from ending.
#[test]
fn logging_while_the_command_suspended_the_terminals_output_does_not_stall_the_run() {
    let (home, ws) = suspending_home();
    let terminal = Terminal::start(
        &run_command(
            home.path(),
            "EXECGATE_LOG=debug",
            "--verbose -- '/usr/bin/python3 suspend-output.py; /bin/true; /bin/true; exit 7'",
        ),
        &ws,
    );
    assert_eq!(
        exit_status(home.path(), Duration::from_secs(60), &terminal),
        "7"
    );
}

/// Probe 219: `suspend` in the shell did nothing, silently (the shell went
/// on at once). It says why and fails; `builtin suspend` is zsh's still.
#[test]
fn suspend_in_the_shell_says_it_cannot() {
    let (home, ws) = home("");
    let terminal = Terminal::start(&shell_command(home.path(), "--no-rcs"), &ws);
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&["suspend; print status=$?", "Enter"]);
    terminal.wait_for("status=1", 1);
    assert!(
        terminal
            .screen()
            .contains("execgate: suspend: a shell in execgate's sandbox cannot be suspended"),
        "{}",
        terminal.screen()
    );
    terminal.keys(&["exit", "Enter"]);
}

/// Regression test (a probe): at `exit`, zsh sends a suspended job
/// `SIGHUP` and `SIGCONT`, and a job that traps the hang-up cleans up (an
/// editor saves its buffer). The sandbox's init ended with the shell, and
/// the kernel killed the job before it could run its trap.
#[test]
fn a_suspended_job_runs_its_hang_up_trap_at_exit() {
    let (home, ws) = home("");
    std::fs::write(
        ws.join("editor.sh"),
        "trap 'echo saved > saved.txt; exit 0' HUP\necho editing\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    let terminal = Terminal::start(&shell_command(home.path(), "--no-rcs"), &ws);
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&["sh editor.sh", "Enter"]);
    terminal.wait_for("editing", 1);
    terminal.keys(&["C-z"]);
    terminal.wait_for("suspended", 1);
    // The first `exit` only warns of the suspended job.
    terminal.keys(&["exit", "Enter"]);
    terminal.wait_for("you have suspended jobs", 1);
    terminal.keys(&["exit", "Enter"]);
    let screen = terminal.wait_for("execgate-exit=", 1);
    assert_eq!(
        std::fs::read_to_string(ws.join("saved.txt"))
            .ok()
            .as_deref(),
        Some("saved\n"),
        "{screen}"
    );
}

/// At `exit`, a suspended escalated job is hung up as one in the sandbox
/// is: its stand-in passes the hang-up on, and the program ends of it
/// (it was killed, `SIGKILL`, when the sandbox ended under its stand-in).
#[test]
fn a_suspended_escalated_job_is_hung_up_at_exit() {
    let (home, ws) = home("");
    let rules = home.path().join("sleep.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"sleep\"])\n").unwrap();
    let terminal = Terminal::start(
        &shell_command(
            home.path(),
            &format!("--no-rcs --rules {}", rules.display()),
        ),
        &ws,
    );
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&["sleep 100", "Enter"]);
    // Ctrl-Z once the escalated sleep runs, as its start record says.
    let log = home.path().join("state/execgate/audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).is_ok_and(|log| log.contains(r#""action":"start""#)) {
        assert!(Instant::now() < deadline, "the escalation never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    terminal.keys(&["C-z"]);
    terminal.wait_for("suspended", 1);
    terminal.keys(&["exit", "Enter"]);
    terminal.wait_for("you have suspended jobs", 1);
    terminal.keys(&["exit", "Enter"]);
    let screen = terminal.wait_for("execgate-exit=", 1);
    let log = std::fs::read_to_string(&log).unwrap();
    let ends: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["event"]["action"] == "exit")
        .collect();
    assert_eq!(ends.len(), 1, "{log}\n{screen}");
    assert_eq!(ends[0]["process"]["signal"], 1, "{log}\n{screen}");
}

/// A job that outlives the shell and would read the terminal: it ignores
/// the hang-up and the terminal's stop signals, waits for the shell's end,
/// takes the terminal's foreground and reads what is typed.
const TERMINAL_THIEF: &str = r#"
import os, signal, time
for ignored in (signal.SIGHUP, signal.SIGTTOU, signal.SIGTTIN):
    signal.signal(ignored, signal.SIG_IGN)
log = open("stolen.txt", "a", buffering=1)
parent = os.getppid()
log.write("waiting\n")
while os.getppid() == parent:
    time.sleep(0.005)
terminal = os.open("/dev/tty", os.O_RDWR)
try:
    os.tcsetpgrp(terminal, os.getpgrp())
    log.write("took the terminal\n")
except OSError as error:
    log.write("refused %d\n" % error.errno)
os.set_blocking(terminal, False)
end = time.time() + 2
while time.time() < end:
    try:
        log.write("read %r\n" % os.read(terminal, 100))
    except BlockingIOError:
        time.sleep(0.005)
    except OSError as error:
        log.write("read failed %d\n" % error.errno)
        break
"#;

/// Review 40: in the jobs' half second after `exit`, a job that ignored
/// the hang-up took the terminal's foreground and read the line the user
/// typed to the shell the terminal went back to. Once the shell has
/// ended, the sandbox's init holds the foreground and refuses it to the
/// rest of the sandbox.
#[test]
fn nothing_left_after_exit_takes_the_terminal() {
    let (home, ws) = home("");
    std::fs::write(ws.join("thief.py"), TERMINAL_THIEF).unwrap();
    let command = shell_command(home.path(), "--no-rcs").replace(
        "; sleep 60",
        "; read line; echo \"outer-read=$line\"; sleep 60",
    );
    let terminal = Terminal::start(&command, &ws);
    terminal.wait_for("[execgate:", 1);
    terminal.keys(&["python3 thief.py &!", "Enter"]);
    let log = ws.join("stolen.txt");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).is_ok_and(|log| log.contains("waiting")) {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    terminal.keys(&["exit", "Enter"]);
    // Typed once the shell has gone (the job has seen its parent change),
    // in the jobs' half second.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .is_ok_and(|log| log.contains("took the terminal") || log.contains("refused"))
    {
        assert!(Instant::now() < deadline, "the shell never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    terminal.keys(&["typed-for-outer", "Enter"]);
    let screen = terminal.wait_for("outer-read=", 1);
    let stolen = std::fs::read_to_string(&log).unwrap();
    assert!(
        screen.contains("outer-read=typed-for-outer") && !stolen.contains("typed-for-outer"),
        "{stolen}\n{screen}"
    );
}
