//! Runs one zsh command string under a session and prints every decision:
//! `rm` is denied, `id` escalated unsandboxed, everything else runs in place.
//!
//! `cargo run --example decide -- WRAPPER ZSH 'COMMAND'`
//! (`scripts/demo` fills in the first two).

use std::process::ExitCode;
use std::sync::Arc;

use execgate_escalate_server::{
    Decision, ExecContext, Execution, Session, SessionConfig, SessionEvent,
};

fn decide(request: &ExecContext) -> Decision {
    match request
        .executable
        .canonical_path
        .file_name()
        .and_then(|name| name.to_str())
    {
        Some("rm") => Decision::Deny {
            reason: "this demo's policy denies rm".into(),
        },
        Some("id") => Decision::Escalate(Execution::Unsandboxed),
        _ => Decision::Run,
    }
}

fn show(event: &SessionEvent) {
    match event {
        SessionEvent::Decided { request, decision } => eprintln!(
            "[execgate] {} {:?} -> {decision:?}",
            request.executable.canonical_path.display(),
            request.argv,
        ),
        SessionEvent::Exited {
            pid, termination, ..
        } => {
            eprintln!("[execgate] escalated pid {pid} ended: {termination:?}")
        }
        other => eprintln!("[execgate] {other:?}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [wrapper, zsh, command] = args.as_slice() else {
        eprintln!("usage: decide WRAPPER ZSH 'COMMAND'");
        return ExitCode::from(2);
    };
    let mut config = SessionConfig::new(wrapper, Arc::new(decide));
    config.events = Some(Arc::new(show));
    let mut session = match Session::start(config) {
        Ok(session) => session,
        Err(error) => {
            eprintln!("decide: {error}");
            return ExitCode::from(2);
        }
    };
    let mut shell = std::process::Command::new(zsh);
    shell.arg("-f").arg("-c").arg(command);
    session.prepare_shell(&mut shell);
    let shell = tokio::process::Command::from(shell).spawn();
    session.shell_spawned();
    let status = match shell {
        Ok(mut shell) => shell.wait().await,
        Err(error) => {
            eprintln!("decide: cannot start {}: {error}", zsh.to_string_lossy());
            return ExitCode::from(2);
        }
    };
    session.shutdown().await;
    match status.ok().and_then(|status| status.code()) {
        Some(code) => ExitCode::from(code as u8),
        None => ExitCode::FAILURE,
    }
}
