//! An escalation server in its own process, for the test that kills one
//! mid-session: `e2e-server WRAPPER ZSH SCRIPT` starts a session whose
//! policy runs everything in place, runs `ZSH -f -c SCRIPT` under it with
//! this process's stdio and current directory, and exits with the shell.

use std::process::ExitCode;
use std::sync::Arc;

use execgate_escalate_server::{Decision, ExecContext, Session, SessionConfig};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [wrapper, zsh, script] = args.as_slice() else {
        eprintln!("usage: e2e-server WRAPPER ZSH SCRIPT");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("e2e-server: no runtime: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let policy = Arc::new(|_: &ExecContext| Decision::Run);
        let mut session = match Session::start(SessionConfig::new(wrapper, policy)) {
            Ok(session) => session,
            Err(error) => {
                eprintln!("e2e-server: {error}");
                return ExitCode::from(2);
            }
        };
        let mut command = std::process::Command::new(zsh);
        command.arg("-f").arg("-c").arg(script);
        session.prepare_shell(&mut command);
        let child = command.spawn();
        session.shell_spawned();
        let status = match child {
            Ok(mut child) => tokio::task::spawn_blocking(move || child.wait()).await,
            Err(error) => {
                eprintln!("e2e-server: cannot start zsh: {error}");
                return ExitCode::from(2);
            }
        };
        match status {
            Ok(Ok(status)) if status.success() => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    })
}
