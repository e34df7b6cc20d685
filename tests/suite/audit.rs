//! The audit log, through the real zsh: every decision has its record.

use std::os::unix::ffi::OsStrExt;

use execgate_audit::{read_records, AuditLog, AuditRecord, RecordOptions, Rotation, SessionAudit};
use execgate_escalate_server::{AuditFailure, Decision, SessionEvent};

use super::*;

fn audited_session(
    policy: Arc<dyn execgate_escalate_server::Policy>,
    log: &Path,
    failure: AuditFailure,
) -> (Session, Recorder) {
    audited_session_rotating(policy, log, failure, Rotation::default())
}

fn audited_session_rotating(
    policy: Arc<dyn execgate_escalate_server::Policy>,
    log: &Path,
    failure: AuditFailure,
    rotation: Rotation,
) -> (Session, Recorder) {
    let recorder = Recorder::default();
    let mut config = SessionConfig::new(wrapper(), policy);
    config.events = Some(recorder.sink());
    let log = Arc::new(AuditLog::open(log, rotation).unwrap());
    config.audit = Some(Arc::new(SessionAudit::new(log, RecordOptions::default())));
    config.audit_failure = failure;
    (Session::start(config).unwrap(), recorder)
}

/// A log every append to fails (`EFBIG`): a sparse file as large as its
/// file system allows (the log must be a regular file: `/dev/full` is
/// refused). Never to be rotated.
fn log_at_the_largest_size(dir: &Path) -> PathBuf {
    let log = dir.join("audit.jsonl");
    let file = std::fs::File::create(&log).unwrap();
    let (mut fits, mut too_big) = (0u64, i64::MAX as u64 + 1);
    while too_big - fits > 1 {
        let size = fits + (too_big - fits) / 2;
        match file.set_len(size) {
            Ok(()) => fits = size,
            Err(_) => too_big = size,
        }
    }
    file.set_len(fits).unwrap();
    log
}

fn decisions(records: &[AuditRecord]) -> Vec<(u64, String)> {
    let mut found: Vec<_> = records
        .iter()
        .filter(|record| record.event.action == "decision")
        .map(|record| {
            (
                record.request_id.unwrap(),
                record.execgate.as_ref().unwrap().decision.clone(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn every_decision_and_exit_has_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let policy = policy_by_path(&[
        ("/usr/bin/id", escalate()),
        (
            "/usr/bin/rm",
            Decision::Deny {
                reason: "no rm".into(),
            },
        ),
        ("/usr/bin/dash", escalate()),
    ]);
    let (mut session, recorder) = audited_session(policy, &log, AuditFailure::Deny);
    let script =
        "id -u >/dev/null; rm -f x; ls >/dev/null; sh -c 'kill -TERM $$'; sh -c 'exit 4'; true";
    let child = spawn_zsh(&mut session, script, dir.path());
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.code(), Some(0), "{}", output.stderr);

    let records = read_records(&log).unwrap();
    let expected: Vec<(u64, String)> = {
        let mut pairs: Vec<_> = recorder
            .events()
            .iter()
            .filter_map(|event| match event {
                SessionEvent::Decided {
                    request, decision, ..
                } => Some((
                    request.request_id,
                    match decision {
                        Decision::Run => "run",
                        Decision::Deny { .. } => "deny",
                        _ => "escalate",
                    }
                    .to_owned(),
                )),
                _ => None,
            })
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(expected.len(), 5);
    assert_eq!(decisions(&records), expected);
    // Exits: id 0, sh killed by SIGTERM (a signal, not 143), sh 4.
    let exits: Vec<(Option<i32>, Option<i32>)> = records
        .iter()
        .filter(|record| record.event.action == "exit")
        .map(|record| (record.process.exit_code, record.process.signal))
        .collect();
    assert_eq!(exits, [(Some(0), None), (None, Some(15)), (Some(4), None)]);
    let denial = records
        .iter()
        .find(|record| {
            record
                .execgate
                .as_ref()
                .is_some_and(|f| f.decision == "deny")
        })
        .unwrap();
    assert_eq!(
        denial.execgate.as_ref().unwrap().reason.as_deref(),
        Some("no rm")
    );
    assert_eq!(
        denial.process.executable.as_ref().unwrap().lossy(),
        "/usr/bin/rm"
    );
    assert!(denial.requester.as_ref().unwrap().pid > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_arguments_from_the_shell_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (mut session, recorder) = audited_session(policy_by_path(&[]), &log, AuditFailure::Deny);
    let script = r#"/bin/echo $'two\nlines' '"q"' $'\e[31mred' $'\xff\xfe' '{"event":{"action":"forged"}}' >/dev/null"#;
    let child = spawn_zsh(&mut session, script, dir.path());
    finish(child).await;
    session.shutdown().await;
    let text = std::fs::read_to_string(&log).unwrap();
    // The session's start, the decision, then the session's end.
    assert_eq!(text.lines().count(), 3, "{text}");
    let records = read_records(&log).unwrap();
    assert_eq!(records[0].event.action, "session-start");
    assert_eq!(records[2].event.action, "session-end");
    let recorded: Vec<Vec<u8>> = records[1]
        .process
        .args
        .as_ref()
        .unwrap()
        .iter()
        .map(|arg| arg.to_bytes().unwrap())
        .collect();
    let asked: Vec<Vec<u8>> = recorder.decided()[0]
        .argv
        .iter()
        .map(|arg| arg.as_bytes().to_vec())
        .collect();
    assert_eq!(recorded, asked);
    assert_eq!(asked[4], [0xff, 0xfe]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rogue_request_is_recorded_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (session, _) = audited_session(policy_by_path(&[]), &log, AuditFailure::Deny);
    let socket = session.shell_socket().unwrap();
    execgate_protocol::send_with_fds(socket, b"garbage", &[]).unwrap();
    for _ in 0..200 {
        if read_records(&log).is_ok_and(|records| records.len() > 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    session.shutdown().await;
    let records = read_records(&log).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].event.action, "session-start");
    assert_eq!(records[1].event.action, "error");
    assert_eq!(records[2].event.action, "session-end");
    assert!(records[1].error.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_log_runs_nothing_unless_told_to_warn() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let never = Rotation {
        max_bytes: u64::MAX,
        keep: 1,
    };
    let (mut session, recorder) =
        audited_session_rotating(policy_by_path(&[]), &log, AuditFailure::Deny, never);
    // Once the session has started (its start recorded).
    assert_eq!(log_at_the_largest_size(dir.path()), log);
    let child = spawn_zsh(&mut session, "touch marker; print status=$?", dir.path());
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=126\n");
    assert!(
        output.stderr.contains("cannot write the audit log"),
        "{}",
        output.stderr
    );
    assert!(!dir.path().join("marker").exists());
    // Overturned: whoever watches the session is told the denial.
    let decisions: Vec<Decision> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::Decided { decision, .. } => Some(decision),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&decisions[..], [Decision::Deny { reason }] if reason.contains("cannot write the audit log")),
        "{decisions:?}"
    );

    let (mut session, recorder) =
        audited_session_rotating(policy_by_path(&[]), &log, AuditFailure::Warn, never);
    let child = spawn_zsh(&mut session, "touch marker; print status=$?", dir.path());
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=0\n");
    assert!(dir.path().join("marker").exists());
    assert_eq!(recorder.decided().len(), 1);

    // A session whose start cannot be recorded does not start.
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[]));
    let audit = Arc::new(AuditLog::open(&log, never).unwrap());
    config.audit = Some(Arc::new(SessionAudit::new(audit, RecordOptions::default())));
    config.audit_failure = AuditFailure::Deny;
    assert!(matches!(
        Session::start(config),
        Err(execgate_escalate_server::StartError::Unrecorded(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn many_shells_at_once_make_exactly_one_record_per_decision() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let shells = 64;
    let mut sessions = Vec::new();
    let mut children = Vec::new();
    for _ in 0..shells {
        let (mut session, recorder) =
            audited_session(policy_by_path(&[]), &log, AuditFailure::Deny);
        children.push(spawn_zsh(&mut session, "repeat 10 /bin/true", dir.path()));
        sessions.push((session, recorder));
    }
    for child in children {
        assert_eq!(finish(child).await.code(), Some(0));
    }
    let mut decided = 0;
    for (session, recorder) in sessions {
        session.shutdown().await;
        decided += recorder.decided().len();
    }
    assert_eq!(decided, shells * 10);
    let records = read_records(&log).unwrap();
    let ends = records
        .iter()
        .filter(|record| record.event.action == "session-end")
        .count();
    let starts = records
        .iter()
        .filter(|record| record.event.action == "session-start")
        .count();
    assert_eq!(ends, shells, "one end per session");
    assert_eq!(starts, shells, "one start per session");
    assert_eq!(records.len() - ends - starts, decided);
}

#[tokio::test(flavor = "multi_thread")]
async fn execs_of_a_nested_shell_point_at_the_exec_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let policy = policy_by_path(&[]);
    let (mut session, _recorder) = audited_session(policy, &log, AuditFailure::Deny);
    let zsh = zsh();
    // Request 2 starts a nested shell in place; it forks for its first
    // command (3) and runs its last one in its own process (4). Request 5
    // is the outer shell's again.
    let script = format!(
        "/bin/true; {zsh} -fc '/bin/echo a >/dev/null; /bin/echo b >/dev/null'; /bin/true",
        zsh = zsh.display()
    );
    let child = spawn_zsh(&mut session, &script, dir.path());
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.code(), Some(0), "{}", output.stderr);
    let records = read_records(&log).unwrap();
    let lineage: Vec<(u64, Option<u64>, String)> = records
        .iter()
        .filter(|record| record.event.action == "decision")
        .map(|record| {
            let args = record.process.args.as_ref().unwrap();
            let last = match args.last().unwrap() {
                execgate_audit::Bytes::Text(text) => text.clone(),
                other => format!("{other:?}"),
            };
            (record.request_id.unwrap(), record.parent_request_id, last)
        })
        .collect();
    assert_eq!(
        lineage
            .iter()
            .map(|(id, parent, _)| (*id, *parent))
            .collect::<Vec<_>>(),
        [(1, None), (2, None), (3, Some(2)), (4, Some(2)), (5, None)],
        "{lineage:?}"
    );
}

/// Which thread recorded each decision, by the decision's name.
struct ThreadsOfRecords {
    inner: SessionAudit,
    threads: Mutex<Vec<(String, String)>>,
}

impl execgate_escalate_server::AuditSink for ThreadsOfRecords {
    fn record(&self, session_id: &str, event: &SessionEvent) -> Result<(), String> {
        if let SessionEvent::Decided { decision, .. } = event {
            let kind = match decision {
                Decision::Run => "run",
                Decision::Escalate(_) => "escalate",
                _ => "other",
            };
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            self.threads.lock().unwrap().push((kind.to_owned(), thread));
        }
        self.inner.record(session_id, event)
    }

    fn waits_for_disk(&self, event: &SessionEvent) -> bool {
        self.inner.waits_for_disk(event)
    }
}

/// Sessions share one serving thread, so a record that waits for the disk
/// (`sync = "escalations"`) is written beside it, not on it: there it
/// would hold every session's decisions for an `fdatasync`.
#[tokio::test(flavor = "multi_thread")]
async fn a_synced_record_is_written_off_the_thread_sessions_share() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(AuditLog::open(dir.path().join("audit.jsonl"), Rotation::default()).unwrap());
    let options = RecordOptions {
        sync_escalations: true,
        ..RecordOptions::default()
    };
    let audit = Arc::new(ThreadsOfRecords {
        inner: SessionAudit::new(log, options),
        threads: Mutex::default(),
    });
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[("/usr/bin/id", escalate())]));
    config.audit = Some(audit.clone());
    let mut session = Session::start(config).unwrap();
    let child = spawn_zsh(&mut session, "id -u >/dev/null; /bin/true", dir.path());
    assert_eq!(finish(child).await.code(), Some(0));
    session.shutdown().await;
    let threads = audit.threads.lock().unwrap().clone();
    let [(first, escalated), (second, ran)] = threads.as_slice() else {
        panic!("two decisions expected: {threads:?}");
    };
    assert_eq!((first.as_str(), second.as_str()), ("escalate", "run"));
    assert_eq!(ran, "execgate-sessions");
    assert_ne!(escalated, "execgate-sessions");
}
