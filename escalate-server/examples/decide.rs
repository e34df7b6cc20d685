//! Runs one zsh command string under a session whose shell is sandboxed
//! (`workspace-write` on the current directory) and prints every decision:
//! `rm` is denied, `id` escalated unsandboxed, everything else runs in place,
//! inside the sandbox.
//!
//! `cargo run --example decide -- WRAPPER SANDBOX-HELPER ZSH 'COMMAND'`
//! (after `cargo build --workspace --bins` and `scripts/build-zsh.sh`:
//! `target/debug/execgate-exec-wrapper target/debug/execgate-sandbox-helper
//! target/zsh/bin/zsh`).

use std::process::ExitCode;
use std::sync::Arc;

use execgate_escalate_server::sandbox::{Launcher, PermissionProfile, SandboxContext};
use execgate_escalate_server::{
    Decision, ExecContext, Execution, Session, SessionConfig, SessionEvent, SessionSandbox,
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
        SessionEvent::Decided {
            request, decision, ..
        } => eprintln!(
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
    let [wrapper, helper, zsh, command] = args.as_slice() else {
        eprintln!("usage: decide WRAPPER SANDBOX-HELPER ZSH 'COMMAND'");
        return ExitCode::from(2);
    };
    let launcher = match Launcher::new(helper) {
        Ok(launcher) => launcher,
        Err(error) => {
            eprintln!("decide: {error}");
            return ExitCode::from(2);
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut config = SessionConfig::new(wrapper, Arc::new(decide));
    config.events = Some(Arc::new(show));
    config.sandbox = Some(SessionSandbox {
        launcher,
        turn_default: PermissionProfile::preset("workspace-write")
            .unwrap_or(PermissionProfile::Disabled),
        context: SandboxContext::new(cwd),
    });
    let mut session = match Session::start(config) {
        Ok(session) => session,
        Err(error) => {
            eprintln!("decide: {error}");
            return ExitCode::from(2);
        }
    };
    let mut shell =
        session.shell_command(zsh.as_ref(), &["-f".into(), "-c".into(), command.clone()]);
    session.seal_shell_command(&mut shell);
    let shell = tokio::process::Command::from(shell.command).spawn();
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
