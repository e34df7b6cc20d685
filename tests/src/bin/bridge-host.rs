//! An agent in miniature: a process that embeds `core-bridge`, runs one
//! command whose `sleep`s are escalated out of the sandbox, prints the
//! escalated children's pids once they run, and then waits to be killed.
//!
//! `bridge-host ZSH WRAPPER SANDBOX-HELPER WORKSPACE SECONDS` prints
//! `started PID PID` on stdout. It takes no signal over: `SIGTERM`,
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
    let [zsh, wrapper, helper, workspace, seconds] = args.as_slice() else {
        eprintln!("usage: bridge-host ZSH WRAPPER SANDBOX-HELPER WORKSPACE SECONDS");
        return ExitCode::from(2);
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
    runtime.block_on(async move {
        let session = match ShellSession::start(config) {
            Ok(session) => session,
            Err(error) => {
                eprintln!("bridge-host: {error}");
                return ExitCode::from(1);
            }
        };
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
