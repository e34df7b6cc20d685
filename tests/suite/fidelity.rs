//! Shell fidelity: the patched zsh under a session that runs everything in
//! place behaves exactly as the stock zsh built from the same source.
//!
//! Each case runs once under `target/zsh-stock/bin/zsh` and once under the
//! patched zsh in a session, each in a fresh copy of the same fixture
//! directory, and compares stdout, stderr and how the shell ended. The
//! number of requests the server decided is checked too, so that a case
//! cannot pass by never reaching the wrapper. spine.rs holds the other side:
//! that each exec reaches the server exactly once, with the right path.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use super::*;

/// The unpatched zsh `scripts/build-zsh.sh --stock` builds from the same
/// source. Missing is a failure, never a skip.
fn stock_zsh() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/zsh-stock/bin/zsh");
    assert!(
        path.exists(),
        "stock zsh not found at {}: run scripts/build-zsh.sh --stock first",
        path.display()
    );
    path
}

fn write_file(path: &Path, text: &[u8], mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The fixture every case starts from, created afresh for each run.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let at = |name: &str| root.join(name);
    fs::create_dir_all(at("bin/sub")).unwrap();
    fs::create_dir_all(at("sub")).unwrap();
    fs::create_dir(at("adir")).unwrap();
    write_file(&at("no-shebang"), b"echo \"no-shebang: $0 $*\"\n", 0o755);
    write_file(
        &at("bin/myinterp"),
        b"#!/bin/sh\necho \"myinterp: $0 | $*\"\n",
        0o755,
    );
    write_file(&at("rel-shebang"), b"#!myinterp -x\necho unused\n", 0o755);
    write_file(
        &at("sub/interp"),
        b"#!/bin/sh\necho \"sub/interp: $0 | $*\"\n",
        0o755,
    );
    write_file(&at("cwd-shebang"), b"#!sub/interp\n", 0o755);
    write_file(&at("bad-interp"), b"#!/no/such/interp-execgate\n", 0o755);
    write_file(
        &at("binary-junk"),
        b"\x7fELF\x00\x00\x00junk\x00\x01",
        0o755,
    );
    write_file(&at("textinterp"), b"echo text-without-shebang\n", 0o755);
    write_file(&at("text-interp-script"), b"#!./textinterp\n", 0o755);
    write_file(&at("rel-shebang-spaces"), b"#!myinterp  -x  y \n", 0o755);
    write_file(&at("rel-shebang-tab"), b"#!myinterp\t-x\n", 0o755);
    let long = format!("#!{}\necho unused\n", "/x".repeat(70));
    write_file(&at("long-shebang"), long.as_bytes(), 0o755);
    write_file(&at("empty-shebang"), b"#!\necho unused\n", 0o755);
    // Binary by the test on the kernel's 256 bytes, text by zsh's 128.
    let mut late_nul = vec![b'X'; 150];
    late_nul.push(0);
    write_file(&at("late-nul"), &late_nul, 0o755);
    write_file(&at("not-executable"), b"echo should-not-run\n", 0o644);
    write_file(
        &at("tool-here"),
        b"#!/bin/sh\necho \"tool-here: $0\"\n",
        0o755,
    );
    write_file(
        &at("bin/sub/pdtool"),
        b"#!/bin/sh\necho \"pdtool: $0 $*\"\n",
        0o755,
    );
    symlink("/usr/bin/printenv", at("pe")).unwrap();
    (dir, root)
}

/// How a shell ended and what it printed, with the fixture's path replaced
/// by `<dir>` so that runs in different directories compare equal.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn observed(output: ShellOutput, root: &Path) -> Observed {
    let root = root.to_string_lossy();
    Observed {
        status: output.status,
        stdout: output.stdout.replace(&*root, "<dir>"),
        stderr: output.stderr.replace(&*root, "<dir>"),
    }
}

/// `zsh -f -c SCRIPT` with argv[0] `zsh` (it names the shell in error
/// messages) and the same small environment for both shells.
fn shell_command(zsh: &Path, script: &str, root: &Path) -> Command {
    let mut command = Command::new(zsh);
    command
        .arg0("zsh")
        .arg("-f")
        .arg("-c")
        .arg(script)
        .current_dir(root)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", root)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

async fn run_stock(script: &str) -> Observed {
    let (_dir, root) = fixture();
    let child = tokio::process::Command::from(shell_command(&stock_zsh(), script, &root))
        .kill_on_drop(true)
        .spawn()
        .expect("stock zsh starts");
    observed(finish(child).await, &root)
}

async fn run_patched(script: &str) -> (Observed, Recorder) {
    let (_dir, root) = fixture();
    let (mut session, recorder) = start_session(policy_by_path(&[]));
    let mut command = shell_command(&zsh(), script, &root);
    session.prepare_shell(&mut command);
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .expect("patched zsh starts");
    session.shell_spawned();
    let output = finish(child).await;
    session.shutdown().await;
    (observed(output, &root), recorder)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_patched_shell_under_a_session_behaves_as_stock_zsh() {
    // (what, script, execs the server must decide under the patched shell)
    let cases: &[(&str, &str, usize)] = &[
        (
            "no_hash_cmds",
            "setopt no_hash_cmds; ls -d /; ls -d /; print status=$?",
            2,
        ),
        (
            "no_hash_cmds, command missing",
            "setopt no_hash_cmds; no-such-execgate; print status=$?",
            0,
        ),
        (
            "command_not_found_handler",
            "command_not_found_handler() { print -r -- \"handler: $*\"; return 42 }
            no-such-execgate a b; print status=$?",
            0,
        ),
        (
            "command_not_found_handler running a program",
            "command_not_found_handler() { /bin/echo \"handler: $*\"; return 3 }
            no-such-execgate x; print status=$?",
            1,
        ),
        ("not found: 127", "no-such-execgate; print status=$?", 0),
        // Probe 167: each PATH candidate passed over un-metafied the
        // arguments once more; a byte 0x83 (in `σ`, `у`, katakana) came
        // out mangled, or cut the argument short.
        (
            "a Meta byte in an argument, past a relative PATH entry",
            "PATH=no-such-dir:$PATH; expr 'σ у データ'; print status=$?",
            1,
        ),
        (
            "a Meta byte in an argument, with no_hash_cmds",
            "setopt no_hash_cmds; expr 'σ у' x; print status=$?",
            1,
        ),
        (
            "a Meta byte in a command's name, not found",
            "setopt no_hash_cmds; $'\\x83'nosuch-execgate; print status=$?",
            0,
        ),
        (
            "script without #!, by path",
            "./no-shebang arg; print status=$?",
            1,
        ),
        (
            "script without #!, through PATH",
            "PATH=$PWD:$PATH; no-shebang arg; print status=$?",
            1,
        ),
        (
            "#! with a relative interpreter found in PATH",
            "PATH=$PWD/bin:$PATH; ./rel-shebang arg; print status=$?",
            1,
        ),
        (
            "#! with spaces around the argument",
            "PATH=$PWD/bin:$PATH; ./rel-shebang-spaces arg; print status=$?",
            1,
        ),
        (
            "#! with a tab after the interpreter",
            "PATH=$PWD/bin:$PATH; ./rel-shebang-tab arg; print status=$?",
            1,
        ),
        (
            "#! line longer than zsh reads",
            "./long-shebang; print status=$?",
            1,
        ),
        (
            "#! naming no interpreter",
            "./empty-shebang; print status=$?",
            1,
        ),
        (
            "no #!, first NUL beyond what zsh reads",
            "./late-nul; print status=$?",
            1,
        ),
        (
            "#! with an interpreter relative to the directory",
            "./cwd-shebang arg; print status=$?",
            1,
        ),
        (
            "#! with a missing interpreter",
            "./bad-interp; print status=$?",
            1,
        ),
        ("exec format error", "./binary-junk; print status=$?", 1),
        (
            "exec format error through PATH",
            "PATH=$PWD:$PATH; binary-junk; print status=$?",
            1,
        ),
        (
            "exec format error, hash name=path",
            "hash jj=$PWD/binary-junk; jj; print status=$?",
            1,
        ),
        (
            "exec format error under exec -a",
            "(exec -a other ./binary-junk); print status=$?",
            1,
        ),
        (
            "exec format error on the second line",
            "print one\n./binary-junk",
            1,
        ),
        (
            "#! naming an interpreter of no known format",
            "./text-interp-script; print status=$?",
            1,
        ),
        (
            "bad interpreter inside a function",
            "f() {\n  :\n  ./bad-interp\n}\nf; print status=$?",
            1,
        ),
        (
            "bad interpreter in a sourced file",
            "print -r -- ./bad-interp > sourced.zsh; . ./sourced.zsh; print status=$?",
            1,
        ),
        (
            "126: permission denied",
            "./not-executable; print status=$?",
            0,
        ),
        ("126: a directory", "./adir; print status=$?", 0),
        ("127: no such file", "./nope; print status=$?", 0),
        (
            "non-executable file in PATH",
            "PATH=$PWD:/usr/bin; not-executable; print status=$?",
            0,
        ),
        ("exec -c", "export FOO=bar; exec -c /usr/bin/env", 1),
        (
            "exec -c in a subshell",
            "(exec -c /usr/bin/env); print status=$?",
            1,
        ),
        (
            "exec -a",
            "exec -a my-name /usr/bin/cat /proc/self/cmdline",
            1,
        ),
        (
            "exec -a in a subshell",
            "(exec -a my-name cat /proc/self/cmdline); print",
            1,
        ),
        ("exec -l", "(exec -l cat /proc/self/cmdline); print", 1),
        ("ARGV0", "ARGV0=other cat /proc/self/cmdline; print", 1),
        (
            "hash name=path",
            "hash mine=/usr/bin/cat; mine /proc/self/cmdline; print; whence mine",
            1,
        ),
        (
            "hash name=path to a missing file",
            "hash gone=/no/such/file-execgate; gone; print status=$?",
            0,
        ),
        (
            "PATH with .",
            "PATH=.:/usr/bin; tool-here; cd adir; tool-here; print status=$?",
            1,
        ),
        (
            "PATH with an empty entry at the end",
            "PATH=/usr/bin:; tool-here; print status=$?",
            1,
        ),
        (
            "PATH with an empty entry in the middle",
            "PATH=/usr/bin::/bin; tool-here; print status=$?",
            1,
        ),
        (
            "PATH with an empty entry first",
            "PATH=:/usr/bin; tool-here; print status=$?",
            1,
        ),
        (
            "PATH_DIRS",
            "setopt path_dirs; PATH=$PWD/bin:$PATH; sub/pdtool a; print status=$?",
            1,
        ),
        (
            "no PATH_DIRS",
            "PATH=$PWD/bin:$PATH; sub/pdtool a; print status=$?",
            0,
        ),
        (
            "command -p",
            "PATH=/nonexistent; command -p ls -d /; print status=$?",
            1,
        ),
        (
            "command -p, command missing",
            "PATH=/nonexistent; command -p no-such-execgate; print status=$?",
            0,
        ),
        (
            "exec as the last command of zsh -c",
            "print -n x; /bin/sh -c 'exit 3'",
            1,
        ),
        (
            "last command of zsh -c killed by a signal",
            "/bin/sh -c 'kill -TERM $$'",
            1,
        ),
        ("explicit exec", "exec /bin/sh -c 'exit 5'", 1),
        (
            "status of a child killed by a signal",
            "/bin/sh -c 'kill -KILL $$'; print status=$?",
            1,
        ),
        (
            "$_ after a command",
            "ls -d / >/dev/null; print -r -- $_",
            1,
        ),
        ("$_ in the environment, through PATH", "printenv _", 1),
        (
            "$_ in the environment, relative path",
            "./pe _; print status=$?",
            1,
        ),
        (
            "$_ in the environment, hash name=path",
            "hash show=/usr/bin/printenv; show _; print status=$?",
            1,
        ),
        ("$_ with exec -c", "exec -c /usr/bin/printenv _", 1),
        ("a pipeline", "print abc | tr a-c x-z", 1),
        (
            // zsh tries /usr/bin/ls, then /bin/ls: one file under two
            // names, one exec, decided once.
            "an argument too long, the program under two PATH names",
            "ls ${(l:200000::a:)}; print status=$?",
            1,
        ),
        (
            // Hashed as printenv, found in PATH as pe, a link to it: a
            // name of its own, which rules on names may forbid, is asked
            // about again.
            "an argument too long, the program hashed and found under another name",
            "PATH=$PWD:$PATH; hash pe=/usr/bin/printenv; pe ${(l:200000::a:)}; print status=$?",
            2,
        ),
        (
            "an argument too long, the program under one PATH name",
            "PATH=/usr/bin; ls ${(l:200000::a:)}; print status=$?",
            1,
        ),
    ];
    // Every case runs; the differences are reported together.
    let mut differences = Vec::new();
    for (what, script, execs) in cases {
        let stock = run_stock(script).await;
        let (patched, recorder) = run_patched(script).await;
        if patched != stock {
            differences.push(format!(
                "{what}: `{script}`\n  stock:   {stock:?}\n  patched: {patched:?}"
            ));
        }
        if recorder.decided().len() != *execs || !recorder.refusals().is_empty() {
            differences.push(format!(
                "{what}: `{script}`: expected {execs} requests decided, got {:?}, refused {:?}",
                recorder.decided_programs(),
                recorder.refusals()
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// An interactive zsh on a pseudo-terminal that a test types into.
struct Terminal {
    child: std::process::Child,
    master: fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

/// Longest wait for the shell to react to one keystroke or command.
const TERMINAL_WAIT: Duration = Duration::from_secs(30);

impl Terminal {
    /// Starts `zsh -f -i +Z` (interactive, no line editor) as the session
    /// leader of a new pseudo-terminal, under `session` when one is given.
    fn start(zsh: &Path, root: &Path, session: Option<&mut Session>) -> Terminal {
        let pty = nix::pty::openpty(None, None).unwrap();
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .unwrap();
        }
        // setsid(1) makes the shell a session leader and (--ctty) gives it
        // the terminal on its stdin as controlling terminal.
        let mut command = Command::new("setsid");
        command
            .arg("--ctty")
            .arg(zsh)
            .args(["-f", "-i", "+Z"])
            .current_dir(root)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", root)
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave));
        let child = match session {
            Some(session) => {
                session.prepare_shell(&mut command);
                let child = command.spawn().unwrap();
                session.shell_spawned();
                child
            }
            None => command.spawn().unwrap(),
        };
        // The command (and with it the parent's copies of the slave) is gone:
        // reading the master ends once the shell and its jobs have closed it.
        drop(command);
        let master = fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut source = master.try_clone().unwrap();
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = std::io::Read::read(&mut source, &mut buffer) {
                if count == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..count]);
            }
        });
        Terminal {
            child,
            master,
            output,
            reader,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn type_text(&mut self, text: &str) {
        std::io::Write::write_all(&mut self.master, text.as_bytes()).unwrap();
    }

    /// Waits until `done` holds; `what` names it if it never does.
    fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + TERMINAL_WAIT;
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never happened; output so far:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the output holds `needle` `count` times.
    fn wait_for(&self, needle: &str, count: usize) {
        self.wait_until(&format!("{needle:?} (x{count}) from the shell"), || {
            self.text().matches(needle).count() >= count
        });
    }

    /// Types a command line followed by a marker the shell computes (so the
    /// echo of the typed line does not count) and waits for the marker.
    fn command(&mut self, line: &str, step: usize) {
        self.type_text(&format!("{line}; print -r -- step$(({step}))done\n"));
        self.wait_for(&format!("step{step}done"), 1);
    }

    /// Waits until `pid`'s process group owns the terminal.
    fn wait_for_foreground(&self, pid: i32) {
        // state ppid pgrp session tty_nr tpgid ...
        self.wait_until(&format!("job {pid} in the foreground"), || {
            stat_fields(pid).unwrap()[5] == pid.to_string()
        });
    }

    /// Types `exit` and returns everything the terminal showed.
    fn finish(mut self) -> (ExitStatus, String) {
        self.type_text("exit\n");
        let deadline = std::time::Instant::now() + TERMINAL_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the shell did not exit; output:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(self.master);
        self.reader.join().unwrap();
        let text = String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned();
        (status, text)
    }
}

/// `sleep 100 &`, `jobs`, `fg`, Ctrl-Z, `bg`, `kill`, in an interactive shell;
/// returns how the shell ended and the transcript with the job's pid
/// replaced by `PID` and carriage returns dropped.
fn job_control_transcript(
    zsh: &Path,
    session: Option<(&mut Session, &Recorder)>,
) -> (ExitStatus, String) {
    let (_dir, root) = fixture();
    let (session, recorder) = session.unzip();
    let mut terminal = Terminal::start(zsh, &root, session);
    // No prompt and no PROMPT_SP padding from here on: when they appear
    // relative to the echo of the next typed line is up to the scheduler.
    terminal.command("PS1=''; unsetopt prompt_sp prompt_cr", 1);
    terminal.type_text("sleep 100 &\n");
    terminal.wait_for("[1] ", 1);
    terminal.command("jobs", 2);
    let text = terminal.text();
    let pid: i32 = text[text.find("[1] ").unwrap() + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Under a session the job's process asks the server before it executes
    // `sleep`: stopped and killed before it asked (a loaded machine), it
    // would leave no decision. Stock zsh's job is waited for as far.
    match recorder {
        Some(recorder) => terminal.wait_until("the job's decision", || {
            !recorder.decided_programs().is_empty()
        }),
        None => terminal.wait_until("the job's exec", || {
            fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "zsh\n"
        }),
    }
    terminal.type_text("fg\n");
    terminal.wait_for_foreground(pid);
    // Ctrl-Z: the terminal stops the foreground job, the shell takes over.
    terminal.type_text("\x1a");
    terminal.wait_for("suspended", 1);
    terminal.command("jobs", 3);
    terminal.command("bg", 4);
    terminal.command("jobs", 5);
    // When the shell reports the killed job, relative to anything typed
    // after `kill`, is up to the scheduler: wait for the report, type
    // nothing else but `exit`.
    terminal.type_text("kill %1\n");
    terminal.wait_for("terminated", 1);
    let (status, text) = terminal.finish();
    // From the end of the first step: before it, the default prompt raced
    // with the echo of the first line.
    let text = &text[text.find("step1done").unwrap()..];
    // The terminal echoes Ctrl-Z as `^Z` when it sends the signal; where
    // the echo lands beside the shell's report is the scheduler's to say
    // (a fresh-clone run had stock zsh's after its next line).
    (
        status,
        text.replace(&pid.to_string(), "PID")
            .replace('\r', "")
            .replace("^Z", ""),
    )
}

// The session's workers run on the runtime; the terminal is driven from the
// test's own thread, blocking, which leaves them free.
#[tokio::test(flavor = "multi_thread")]
async fn job_control_in_an_interactive_shell_behaves_as_stock_zsh() {
    let (stock_status, stock) = job_control_transcript(&stock_zsh(), None);
    let (mut session, recorder) = start_session(policy_by_path(&[]));
    let (patched_status, patched) = job_control_transcript(&zsh(), Some((&mut session, &recorder)));
    session.shutdown().await;
    assert_eq!(patched, stock);
    assert_eq!(patched_status.code(), stock_status.code());
    // The comparison means something only if the job really went through
    // each state, and through the server.
    for state in ["suspended", "running", "continued", "terminated  sleep 100"] {
        assert!(stock.contains(state), "{state}: {stock}");
    }
    assert_eq!(recorder.decided_programs(), ["/usr/bin/sleep"]);
}

/// The same with `sleep` escalated: its stand-in stops as the job would
/// (a probe saw `suspended (signal)` and 147, a `SIGSTOP`, where stock zsh
/// says `suspended` for the terminal's `SIGTSTP`).
#[tokio::test(flavor = "multi_thread")]
async fn job_control_of_an_escalated_program_behaves_as_stock_zsh() {
    let (stock_status, stock) = job_control_transcript(&stock_zsh(), None);
    let (mut session, recorder) =
        start_session(policy_by_path(&[("/usr/bin/sleep", super::escalate())]));
    let (patched_status, patched) = job_control_transcript(&zsh(), Some((&mut session, &recorder)));
    session.shutdown().await;
    assert_eq!(patched, stock);
    assert_eq!(patched_status.code(), stock_status.code());
    assert_eq!(recorder.decided_programs(), ["/usr/bin/sleep"]);
}
