//! An agent in miniature: a process that embeds `core-bridge`, runs one
//! command whose `sleep`s are escalated out of the sandbox, prints the
//! escalated children's pids once they run, and then waits to be killed.
//!
//! `bridge-host ZSH WRAPPER SANDBOX-HELPER WORKSPACE SECONDS` prints
//! `started PID PID` on stdout. With a sixth argument, `drop-session` or
//! `drop-handle`, it instead runs a loop that appends to `WORKSPACE/ticks`,
//! drops the session (keeping the run's handle) or the run's handle, and
//! prints whether the loop stopped (`stopped`, else `running`), then for
//! `drop-session` whether the kept handle's wait ended (`ended`, else
//! `hung`). With `replace-warden`, it kills the process's warden, starts
//! a second session (which starts another), and prints whether the first
//! warden was reaped (`reaped`, else `zombie`). It takes no signal over: `SIGTERM`,
//! `SIGINT` and `SIGHUP` end it by their default action, as they would an
//! agent that never thought about them, and `SIGKILL` ends it however it
//! was written. The lifetime suite checks that no escalated child outlives
//! it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use execgate_core_bridge::server::{Decision, ExecContext, Execution, SessionEvent};
use execgate_core_bridge::{RunOptions, ShellSession, ShellSessionConfig, Tools};

/// Gives the signals the lifetime suite sends their default action, as an
/// agent that never thought about them has, whatever this process
/// inherited: a test run started in the background of a non-interactive
/// shell inherits `SIGINT` and `SIGQUIT` ignored.
fn default_signal_actions() {
    for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: SIG_DFL installs no handler, so none of our code runs in
        // signal context; this runs first in main, before any thread.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

fn main() -> ExitCode {
    default_signal_actions();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (zsh, wrapper, helper, workspace, seconds, drop) = match args.as_slice() {
        [zsh, wrapper, helper, workspace, seconds] => {
            (zsh, wrapper, helper, workspace, seconds, None)
        }
        [zsh, wrapper, helper, workspace, seconds, drop] => (
            zsh,
            wrapper,
            helper,
            workspace,
            seconds,
            Some(drop.as_str()),
        ),
        _ => {
            eprintln!("usage: bridge-host ZSH WRAPPER SANDBOX-HELPER WORKSPACE SECONDS [drop-session|drop-handle|replace-warden]");
            return ExitCode::from(2);
        }
    };
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("bridge-host: cannot start a runtime");
        return ExitCode::from(1);
    };
    let started: Arc<Mutex<Vec<i32>>> = Arc::default();
    let recorded = started.clone();
    let tools = Tools {
        zsh: PathBuf::from(zsh),
        wrapper: PathBuf::from(wrapper),
        sandbox_helper: PathBuf::from(helper),
    };
    let policy = Arc::new(|request: &ExecContext| {
        if request.executable.canonical_path.ends_with("sleep") {
            Decision::Escalate(Execution::Unsandboxed)
        } else {
            Decision::Run
        }
    });
    let mut config = ShellSessionConfig::new(workspace, tools, policy);
    config.events = Some(Arc::new(move |event: &SessionEvent| {
        if let SessionEvent::Started { pid, .. } = event {
            recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(*pid);
        }
    }));
    let second_config = config.clone();
    runtime.block_on(async move {
        let session = match ShellSession::start(config) {
            Ok(session) => session,
            Err(error) => {
                eprintln!("bridge-host: {error}");
                return ExitCode::from(1);
            }
        };
        if drop == Some("replace-warden") {
            return replaced_warden(session, second_config).await;
        }
        if let Some(what) = drop {
            return dropped(session, workspace, what).await;
        }
        let command = format!("sleep {seconds} & sleep {seconds} & wait");
        let _run = match session.run(&command, RunOptions::default()) {
            Ok(run) => run,
            Err(error) => {
                eprintln!("bridge-host: {error}");
                return ExitCode::from(1);
            }
        };
        loop {
            let pids = started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if pids.len() >= 2 {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "started {} {}", pids[0], pids[1]);
                let _ = out.flush();
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Until a signal ends the process.
        std::future::pending::<ExitCode>().await
    })
}

/// Runs a loop in `session`, drops the session or the run's handle, and
/// says what became of the loop (and of the kept handle's wait).
async fn dropped(session: ShellSession, workspace: &str, what: &str) -> ExitCode {
    let ticks = std::path::Path::new(workspace).join("ticks");
    let size = || std::fs::metadata(&ticks).map_or(0, |meta| meta.len());
    let command = "while :; do print x >> ticks; /usr/bin/true; done";
    let run = match session.run(command, RunOptions::default()) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("bridge-host: {error}");
            return ExitCode::from(1);
        }
    };
    while size() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut out = std::io::stdout();
    let kept = match what {
        "drop-session" => {
            drop(session);
            Some(run)
        }
        _ => {
            // As `tokio::time::timeout(.., run.wait())` does.
            let _ = tokio::time::timeout(Duration::from_millis(100), run.wait()).await;
            None
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = size();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = size() == before;
    let _ = writeln!(out, "{}", if stopped { "stopped" } else { "running" });
    if let Some(run) = kept {
        let ended = tokio::time::timeout(Duration::from_secs(5), run.wait()).await;
        let _ = writeln!(out, "{}", if ended.is_ok() { "ended" } else { "hung" });
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// Kills the warden `session` started, starts a second session, and says
/// whether the first warden was reaped.
async fn replaced_warden(session: ShellSession, second: ShellSessionConfig) -> ExitCode {
    let Some(warden) = execgate_core_bridge::server::warden_pid() else {
        eprintln!("bridge-host: the session started no warden");
        return ExitCode::from(1);
    };
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{warden}/stat")).ok()?;
        let end = stat.rfind(')')?;
        stat[end + 1..].split_whitespace().next().map(str::to_owned)
    };
    // SAFETY: a signal to our own child, which this process has not reaped.
    unsafe { libc::kill(warden, libc::SIGKILL) };
    while state().is_some_and(|state| state != "Z") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    session.shutdown().await;
    let session = match ShellSession::start(second) {
        Ok(session) => session,
        Err(error) => {
            eprintln!("bridge-host: {error}");
            return ExitCode::from(1);
        }
    };
    let replaced = execgate_core_bridge::server::warden_pid().is_some_and(|pid| pid != warden);
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{} {}",
        if state().is_none() {
            "reaped"
        } else {
            "zombie"
        },
        if replaced { "replaced" } else { "kept" }
    );
    let _ = out.flush();
    session.shutdown().await;
    ExitCode::SUCCESS
}
