//! Runs an arbitrary command inside an execgate session whose policy runs
//! every exec in place, and counts what the server decided.
//!
//! `session-host WRAPPER REPORT PROGRAM [ARGS...]` starts a session with
//! `WRAPPER` as the exec wrapper, runs `PROGRAM ARGS...` with the session's
//! socket and `EXECGATE_*` variables inherited (so every patched zsh it
//! starts, however deep, latches them and asks this server), waits for it,
//! writes the counts to `REPORT` and exits as the program did.
//!
//! `scripts/zsh-parity.sh` runs zsh's own `make check` under it: way 3 of the
//! parity check. The counts prove that the execs really went through the
//! server: `decided` requests were answered `Run`, `refused` requests were
//! denied because they could not be decided (malformed, wrong peer,
//! unresolvable); under a permissive policy the latter must stay zero.
//!
//! The report is plain `key value` lines: `decided N`, `refused N`,
//! `programs N` (distinct canonical paths decided), then one
//! `refusal REASON` line per refusal.

use execgate_audit::{AuditLog, RecordOptions, Rotation, SessionAudit};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use execgate_escalate_server::{Decision, ExecContext, Session, SessionConfig, SessionEvent};

/// How long to wait, after the program exits, for requests still in flight
/// (from background processes that outlived it) before cancelling.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Tally {
    decided: u64,
    programs: HashSet<PathBuf>,
    refusals: Vec<String>,
}

impl Tally {
    fn record(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Decided { request, .. } => {
                self.decided += 1;
                if !self.programs.contains(&request.executable.canonical_path) {
                    self.programs
                        .insert(request.executable.canonical_path.clone());
                }
            }
            SessionEvent::RequestRefused { reason, .. } => self.refusals.push(reason.clone()),
            SessionEvent::Started { .. }
            | SessionEvent::SpawnFailed { .. }
            | SessionEvent::Exited { .. } => {}
            // `SessionEvent` is non-exhaustive: events added later are not counted.
            _ => {}
        }
    }

    fn report(&self) -> String {
        let mut text = format!(
            "decided {}\nrefused {}\nprograms {}\n",
            self.decided,
            self.refusals.len(),
            self.programs.len()
        );
        for reason in &self.refusals {
            text.push_str(&format!("refusal {}\n", reason.replace('\n', " ")));
        }
        text
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let [wrapper, report, program, rest @ ..] = args.as_slice() else {
        eprintln!("usage: session-host WRAPPER REPORT PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("session-host: no runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let code = runtime.block_on(host(report, wrapper, program, rest, Arc::clone(&tally)));
    let tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(error) = std::fs::write(report, tally.report()) {
        eprintln!(
            "session-host: cannot write {}: {error}",
            PathBuf::from(report).display()
        );
        return ExitCode::from(2);
    }
    eprintln!(
        "session-host: {} execs decided Run ({} distinct programs), {} refused",
        tally.decided,
        tally.programs.len(),
        tally.refusals.len()
    );
    code
}

async fn host(
    report: &OsString,
    wrapper: &OsString,
    program: &OsString,
    args: &[OsString],
    tally: Arc<Mutex<Tally>>,
) -> ExitCode {
    let policy = Arc::new(|_: &ExecContext| Decision::Run);
    let mut config = SessionConfig::new(wrapper, policy);
    // The audit log is on, as in real sessions: every decision is written
    // (and a decision that cannot be is denied) before it takes effect.
    let mut log_path = PathBuf::from(report).into_os_string();
    log_path.push(".audit.jsonl");
    match AuditLog::open(PathBuf::from(log_path), Rotation::default()) {
        Ok(log) => {
            config.audit = Some(Arc::new(SessionAudit::new(
                Arc::new(log),
                RecordOptions::default(),
            )))
        }
        Err(error) => {
            eprintln!("session-host: {error}");
            return ExitCode::from(2);
        }
    }
    config.events = Some(Arc::new(move |event: &SessionEvent| {
        tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(event)
    }));
    let mut session = match Session::start(config) {
        Ok(session) => session,
        Err(error) => {
            eprintln!("session-host: {error}");
            return ExitCode::from(2);
        }
    };
    let mut command = std::process::Command::new(program);
    command.args(args);
    session.prepare_shell(&mut command);
    let child = command.spawn();
    session.shell_spawned();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            eprintln!(
                "session-host: cannot start {}: {error}",
                PathBuf::from(program).display()
            );
            return ExitCode::from(2);
        }
    };
    let status = tokio::task::spawn_blocking(move || child.wait()).await;
    if tokio::time::timeout(DRAIN, session.finished())
        .await
        .is_err()
    {
        eprintln!(
            "session-host: the session socket is still held {} s after the program exited; cancelling",
            DRAIN.as_secs()
        );
    }
    session.shutdown().await;
    match status {
        Ok(Ok(status)) => exit_code(status),
        Ok(Err(error)) => {
            eprintln!("session-host: waiting for the program: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("session-host: waiting for the program: {error}");
            ExitCode::from(2)
        }
    }
}

/// The program's exit code, or 128 + the signal that ended it, as a shell
/// would report it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 2,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}
