//! Unit tests: records from events, the log file, reading back.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use execgate_escalate_server::{
    AuditSink, Decision, ExecContext, Execution, PeerCredentials, RefusedRequest,
    ResolvedExecutable, RuleRef, SessionEvent, Termination,
};

use crate::*;

fn request(argv: Vec<OsString>) -> Arc<ExecContext> {
    Arc::new(ExecContext {
        session_id: "s1".into(),
        request_id: 7,
        parent_request_id: None,
        peer: PeerCredentials {
            pid: 42,
            uid: 1000,
            gid: 1000,
        },
        executable: ResolvedExecutable {
            requested_path: "/bin/ls".into(),
            canonical_path: "/usr/bin/ls".into(),
            device: 1,
            inode: 2,
            mode: 0o100755,
            uid: 0,
            gid: 0,
        },
        argv,
        cwd: "/work".into(),
        working_directory: Err("not held in this test".into()),
        env: vec![
            "HOME=/root".into(),
            "API_TOKEN=s3cret".into(),
            "LANG=C".into(),
        ],
        received: std::time::Instant::now(),
        request_read: std::time::Instant::now(),
        sandbox: None,
        escalation_env: Arc::from([]),
        question: Default::default(),
    })
}

fn decided(argv: Vec<OsString>, decision: Decision) -> SessionEvent {
    SessionEvent::Decided {
        request: request(argv),
        decision,
        provenance: Default::default(),
    }
}

#[test]
fn hostile_arguments_round_trip_on_one_line() {
    let hostile: Vec<OsString> = vec![
        "ls".into(),
        "two\nlines".into(),
        "\"quoted\" and \\".into(),
        "\u{1b}[31mred\u{1b}[0m".into(),
        "{\"event\":{\"action\":\"forged\"}}".into(),
        OsString::from_vec(vec![0xff, 0xfe, b'x', 0x80]),
        "tab\there\r".into(),
    ];
    let record = AuditRecord::of(
        &decided(hostile.clone(), Decision::Run),
        "s1",
        SystemTime::now(),
        &RecordOptions::default(),
    );
    let line = serde_json::to_string(&record).unwrap();
    assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'));
    let back: AuditRecord = serde_json::from_str(&line).unwrap();
    let args: Vec<Vec<u8>> = back
        .process
        .args
        .unwrap()
        .iter()
        .map(|arg| arg.to_bytes().unwrap())
        .collect();
    let expected: Vec<Vec<u8>> = hostile.into_iter().map(OsString::into_vec).collect();
    assert_eq!(args, expected);
    assert!(
        line.contains("\"base64\""),
        "the non-UTF-8 argument is marked"
    );
    assert_eq!(back.event.action, "decision");
}

#[test]
fn each_event_becomes_its_record() {
    let options = RecordOptions::default();
    // (event, action, outcome, decision, execution)
    let cases = [
        (
            decided(vec!["ls".into()], Decision::Run),
            "decision",
            "success",
            Some("run"),
            None,
        ),
        (
            decided(
                vec!["rm".into()],
                Decision::Deny {
                    reason: "no".into(),
                },
            ),
            "decision",
            "failure",
            Some("deny"),
            None,
        ),
        (
            decided(
                vec!["id".into()],
                Decision::Escalate(Execution::Unsandboxed),
            ),
            "decision",
            "success",
            Some("escalate"),
            Some("unsandboxed"),
        ),
        (
            decided(
                vec!["id".into()],
                Decision::Escalate(Execution::TurnDefault),
            ),
            "decision",
            "success",
            Some("escalate"),
            Some("turn-default"),
        ),
        (
            SessionEvent::RequestRefused {
                request_id: None,
                reason: "bad frame".into(),
                requester: None,
                asked: None,
            },
            "error",
            "failure",
            None,
            None,
        ),
    ];
    for (event, action, outcome, decision, execution) in cases {
        let record = AuditRecord::of(&event, "s1", SystemTime::now(), &options);
        assert_eq!(record.event.action, action);
        assert_eq!(record.event.outcome, outcome);
        assert_eq!(
            record.execgate.as_ref().map(|f| f.decision.as_str()),
            decision
        );
        assert_eq!(
            record
                .execgate
                .as_ref()
                .and_then(|f| f.execution.as_deref()),
            execution
        );
    }
}

/// A malformed request's record named no requester, though the server
/// had its peer credentials: a reviewer could not tell who sent it. It is
/// not a denial (nothing was read to deny).
#[test]
fn a_malformed_request_names_its_requester() {
    let options = RecordOptions::new(Vec::new(), &[]).unwrap();
    let event = SessionEvent::RequestRefused {
        request_id: Some(5),
        reason: "malformed request: unknown message tag 127".into(),
        requester: Some(PeerCredentials {
            pid: 4242,
            uid: 1000,
            gid: 1000,
        }),
        asked: None,
    };
    let record = AuditRecord::of(&event, "s1", SystemTime::now(), &options);
    let requester = record.requester.as_ref().map(|peer| (peer.pid, peer.uid));
    assert_eq!(requester, Some((4242, 1000)));
    assert_eq!(record.event.action, "error");
    assert!(record.execgate.is_none());
}

/// A probe found a request refused before its decision (a magic-link
/// path) recorded with nothing but the reason: no arguments, and not among
/// the denials. It is a denial, with what it asked for.
#[test]
fn a_refused_request_is_a_denial_with_what_it_asked() {
    let options = RecordOptions::new(Vec::new(), &["*s3cret*".into()]).unwrap();
    let asked = RefusedRequest {
        path: "/proc/self/exe".into(),
        executable: None,
        argv: vec!["zsh".into(), "-c".into(), "s3cret".into()],
        cwd: "/work".into(),
        question: None,
    };
    let event = SessionEvent::RequestRefused {
        request_id: Some(3),
        reason: "cannot check the executable: /proc/self/exe".into(),
        requester: Some(PeerCredentials {
            pid: 42,
            uid: 1000,
            gid: 1000,
        }),
        asked: Some(Arc::new(asked)),
    };
    let record = AuditRecord::of(&event, "s1", SystemTime::now(), &options);
    assert_eq!(record.event.action, "error");
    let args: Vec<String> = record
        .process
        .args
        .iter()
        .flatten()
        .map(Bytes::lossy)
        .collect();
    assert_eq!(args, ["zsh", "-c", "[REDACTED]"]);
    assert_eq!(record.redacted_args, Some(vec![2]));
    assert_eq!(
        record.requester.as_ref().map(|requester| requester.pid),
        Some(42)
    );
    let filter = Filter {
        decision: Some("deny".into()),
        ..Filter::default()
    };
    assert!(filter.matches(&record));
    let summary = Summary::of([&record]);
    assert_eq!(summary.denials.len(), 1, "{summary:?}");
    // Probe 160: told from an argument written `[REDACTED]`.
    assert!(
        summary.denials[0].contains(": zsh -c <redacted argument> ("),
        "{summary:?}"
    );
    assert!(record.process.executable.is_none() && record.file.is_none());

    // Refused when its requester went away while a person was asked: the
    // executable was checked, and is recorded.
    let checked = request(vec!["ls".into()]);
    let event = SessionEvent::RequestRefused {
        request_id: Some(4),
        reason: "the requester went away before the decision".into(),
        requester: Some(checked.peer),
        asked: Some(Arc::new(RefusedRequest {
            path: "/bin/ls".into(),
            executable: Some(checked.executable.clone()),
            argv: vec!["ls".into()],
            cwd: "/work".into(),
            // Probe 159: the rule that asked, and the question's wait.
            question: Some((
                Some(RuleRef {
                    id: "team.rules:3".into(),
                    justification: Some("listing needs a yes".into()),
                }),
                Duration::from_millis(1500),
            )),
        })),
    };
    let record = AuditRecord::of(&event, "s1", SystemTime::now(), &options);
    assert_eq!(
        record.rule.as_ref().map(|rule| rule.id.as_str()),
        Some("team.rules:3")
    );
    let decided = record.execgate.as_ref().expect("decision fields");
    assert_eq!(
        (decided.decision.as_str(), decided.approval_ms),
        ("deny", Some(1500))
    );
    assert_eq!(
        record
            .process
            .executable
            .as_ref()
            .map(Bytes::lossy)
            .as_deref(),
        Some("/usr/bin/ls")
    );
    assert_eq!(record.file.as_ref().map(|file| file.inode), Some(2));
    let filter = Filter {
        program: Some(Filter::program_glob("ls").unwrap()),
        ..Filter::default()
    };
    assert!(filter.matches(&record));
}

/// `--program ls` keeps the start and exit of the escalations it keeps
/// (they name no program), `--exit-code` applies to those; a run of other
/// programs' records stays out.
#[test]
fn a_kept_escalation_keeps_its_start_and_exit() {
    let options = RecordOptions::default();
    let escalated = decided(
        vec!["ls".into()],
        Decision::Escalate(Execution::Unsandboxed),
    );
    let started = SessionEvent::Started {
        request_id: 7,
        pid: 99,
    };
    let exited = |code| SessionEvent::Exited {
        request_id: 7,
        pid: 99,
        termination: Termination::Exited(code),
        run_time: Duration::from_millis(5),
    };
    let record = |event: &SessionEvent| AuditRecord::of(event, "s1", SystemTime::now(), &options);
    let log = [
        record(&escalated),
        record(&started),
        record(&exited(1)),
        record(&started),
        record(&exited(1)),
    ];
    let kept = |filter: Filter| -> Vec<&str> {
        let mut filter = RequestFilter::new(filter);
        log.iter()
            .filter(|record| filter.matches(record))
            .map(|record| record.event.action.as_str())
            .collect()
    };
    let ls = || Some(Filter::program_glob("ls").unwrap());
    assert_eq!(
        kept(Filter {
            program: ls(),
            ..Filter::default()
        }),
        // The second start and exit follow no kept decision (the first
        // exit ended that escalation).
        ["decision", "start", "exit"]
    );
    assert_eq!(
        kept(Filter {
            program: ls(),
            exit_code: Some(1),
            ..Filter::default()
        }),
        ["exit"]
    );
    assert_eq!(
        kept(Filter {
            program: Some(Filter::program_glob("git").unwrap()),
            ..Filter::default()
        }),
        Vec::<&str>::new()
    );
    assert_eq!(kept(Filter::default()).len(), 5);
}

#[test]
fn exit_codes_and_signals_stay_apart() {
    let options = RecordOptions::default();
    let exited = |termination| SessionEvent::Exited {
        request_id: 1,
        pid: 99,
        termination,
        run_time: Duration::from_millis(1500),
    };
    let record = AuditRecord::of(
        &exited(Termination::Exited(3)),
        "s",
        SystemTime::now(),
        &options,
    );
    assert_eq!(
        (record.process.exit_code, record.process.signal),
        (Some(3), None)
    );
    assert_eq!(record.process.run_time, Some(1.5));
    let record = AuditRecord::of(
        &exited(Termination::Signaled {
            signal: 15,
            core_dumped: false,
        }),
        "s",
        SystemTime::now(),
        &options,
    );
    assert_eq!(
        (record.process.exit_code, record.process.signal),
        (None, Some(15))
    );
}

#[test]
fn environment_names_only_and_redaction_is_marked() {
    let mut redact = globset::GlobSetBuilder::new();
    redact.add(globset::Glob::new("--password=*").unwrap());
    let options = RecordOptions {
        env_values: vec!["LANG".into()],
        redact_args: redact.build().unwrap(),
        sync_escalations: false,
    };
    let record = AuditRecord::of(
        &decided(
            // argv[0] is the shell's to set (`exec -a`), a secret too
            // (probe 135: it was never redacted).
            vec![
                "--password=opensesame".into(),
                "--password=hunter2".into(),
                "bob".into(),
            ],
            Decision::Run,
        ),
        "s1",
        SystemTime::now(),
        &options,
    );
    let line = serde_json::to_string(&record).unwrap();
    assert!(
        !line.contains("hunter2") && !line.contains("s3cret") && !line.contains("opensesame"),
        "{line}"
    );
    assert_eq!(record.redacted_args, Some(vec![0, 1]));
    let env = record.environment.unwrap();
    assert_eq!(env["LANG"], Some(Bytes::Text("C".into())));
    assert_eq!(env["API_TOKEN"], None);
    assert!(env.contains_key("HOME"));
}

/// A session's records reuse the environment they recorded last only while
/// the shell sends the same one: any change, a value the options record
/// included, shows in the next record.
#[test]
fn each_record_has_its_own_requests_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path, Rotation::default()).unwrap());
    let options = RecordOptions {
        env_values: vec!["LANG".into()],
        ..RecordOptions::default()
    };
    let audit = SessionAudit::new(log, options);
    let with_env = |env: &[&str]| {
        let mut request = (*request(vec!["ls".into()])).clone();
        request.env = env.iter().map(OsString::from).collect();
        SessionEvent::Decided {
            request: Arc::new(request),
            decision: Decision::Run,
            provenance: Default::default(),
        }
    };
    let sent: [&[&str]; 5] = [
        &["HOME=/root", "LANG=C"],
        &["HOME=/root", "LANG=C"],
        &["HOME=/root", "LANG=C.UTF-8"],
        &["HOME=/root", "LANG=C.UTF-8", "EXTRA=1"],
        &["HOME=/root", "LANG=C"],
    ];
    for env in sent {
        audit.record("s1", &with_env(env)).unwrap();
    }
    let recorded: Vec<Vec<(String, Option<String>)>> = read_records(&path)
        .unwrap()
        .into_iter()
        .map(|record| {
            record
                .environment
                .unwrap()
                .iter()
                .map(|(name, value)| (name.clone(), value.as_ref().map(Bytes::lossy)))
                .collect()
        })
        .collect();
    let c = |lang: &str| ("LANG".to_owned(), Some(lang.to_owned()));
    let home = ("HOME".to_owned(), None);
    assert_eq!(
        recorded,
        [
            vec![home.clone(), c("C")],
            vec![home.clone(), c("C")],
            vec![home.clone(), c("C.UTF-8")],
            vec![("EXTRA".to_owned(), None), home.clone(), c("C.UTF-8")],
            vec![home, c("C")],
        ]
    );
}

fn all_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".lock") {
            continue;
        }
        lines.extend(
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    lines
}

#[test]
fn concurrent_writers_with_rotation_keep_every_record_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Enough old files to keep every record (about 40 rotations), and not
    // so many that each rotation, which looks for every one of them under
    // the exclusive lock, keeps the other writers waiting: with 10,000, a
    // writer on a loaded machine waited past the lock's 1 s limit.
    let rotation = Rotation {
        max_bytes: 16 * 1024,
        keep: 400,
    };
    // Separate logs stand for separate processes (each has its own file
    // descriptions and lock); two threads share each log, as a server's
    // sessions share one.
    let logs: Vec<Arc<AuditLog>> = (0..4)
        .map(|_| Arc::new(AuditLog::open(&path, rotation).unwrap()))
        .collect();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let log = logs[writer % logs.len()].clone();
            std::thread::spawn(move || {
                for n in 0..250 {
                    let argv = vec!["w".into(), format!("{writer}-{n}").into()];
                    let record = AuditRecord::of(
                        &decided(argv, Decision::Run),
                        "s",
                        SystemTime::now(),
                        &RecordOptions::default(),
                    );
                    log.append(&record, n % 50 == 0).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    // A writer that opens the log while another's line is half written
    // (rotation makes them reopen it often here) takes that line for a
    // cut one and ends it: a line of only the cut mark after it, which
    // readers skip.
    let lines: Vec<String> = all_lines(dir.path())
        .into_iter()
        .filter(|line| !line.is_empty() && line != " (cut)")
        .collect();
    assert_eq!(lines.len(), 2000);
    let mut seen: Vec<String> = lines
        .iter()
        .map(|line| {
            let record: AuditRecord = serde_json::from_str(line).expect("a whole record per line");
            record.process.args.unwrap()[1].lossy()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 2000, "every record exactly once");
    let rotated = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(rotated > 3, "the test must rotate: {rotated} files");
}

/// Probe 203: the files a session hides were looked for one by one up to
/// `keep`, and a large `keep` held every session's start; review 47: with
/// the first missing one ending them, a gap left the rest shown. They are
/// the directory's files of the log's name and a number up to `keep`.
#[test]
fn the_logs_files_are_its_older_ones_up_to_keep_gaps_and_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let rotation = Rotation {
        max_bytes: 64 << 10,
        keep: usize::MAX,
    };
    let log = AuditLog::open(&path, rotation).unwrap();
    for n in [3, 12, 1] {
        std::fs::write(rotated_path(&path, n), "").unwrap();
    }
    std::fs::write(dir.path().join("a.jsonl.old"), "").unwrap();
    std::fs::write(dir.path().join("b.jsonl.2"), "").unwrap();
    let older = |keep: usize| {
        let log = AuditLog::open(
            &path,
            Rotation {
                max_bytes: 64 << 10,
                keep,
            },
        )
        .unwrap();
        log.files().split_off(2)
    };
    assert_eq!(log.files()[..2], [path.clone(), lock_path(&path)]);
    assert_eq!(
        older(usize::MAX),
        [1, 3, 12].map(|n| rotated_path(&path, n))
    );
    assert_eq!(older(10), [1, 3].map(|n| rotated_path(&path, n)));
}

#[test]
fn rotation_keeps_the_configured_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let log = AuditLog::open(
        &path,
        Rotation {
            max_bytes: 2048,
            keep: 2,
        },
    )
    .unwrap();
    for _ in 0..100 {
        let record = AuditRecord::of(
            &decided(vec!["x".into()], Decision::Run),
            "s",
            SystemTime::now(),
            &RecordOptions::default(),
        );
        log.append(&record, false).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.jsonl", "a.jsonl.1", "a.jsonl.2", "a.jsonl.lock"]);
}

/// The log and its lock file are regular files, reached through the
/// directory opened with the log: a symbolic link or a FIFO planted at
/// their names (by a command whose sandbox can write that directory) is
/// refused, not followed; a directory renamed on the way to the log, with
/// another put in its place, does not move the records.
#[test]
fn the_log_stays_in_the_directory_it_was_opened_in_and_follows_no_link() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "").unwrap();

    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("a.jsonl");
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let error = AuditLog::open(&path, Rotation::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("symbolic link"), "{error}");
    std::fs::remove_file(&path).unwrap();

    std::os::unix::fs::symlink(&victim, logs.join("a.jsonl.lock")).unwrap();
    let error = AuditLog::open(&path, Rotation::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("a.jsonl.lock") && error.contains("symbolic link"),
        "{error}"
    );
    std::fs::remove_file(logs.join("a.jsonl.lock")).unwrap();
    std::fs::remove_file(&path).unwrap();

    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let error = AuditLog::open(&path, Rotation::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a regular file"), "{error}");
    std::fs::remove_file(&path).unwrap();

    let log = AuditLog::open(&path, Rotation::default()).unwrap();
    log.append(&run_record(), false).unwrap();
    // The directory moves away; a new one at its path sends its log
    // elsewhere.
    let moved = dir.path().join("moved");
    std::fs::rename(&logs, &moved).unwrap();
    std::fs::create_dir(&logs).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    log.append(&run_record(), false).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"");
    assert_eq!(read_records(&moved.join("a.jsonl")).unwrap().len(), 2);
    // Even once the log itself is replaced by a link (in the directory
    // held open), it is refused rather than followed.
    std::fs::rename(moved.join("a.jsonl"), moved.join("old")).unwrap();
    std::os::unix::fs::symlink(&victim, moved.join("a.jsonl")).unwrap();
    assert!(log.append(&run_record(), false).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"");

    assert!(AuditLog::open(
        PathBuf::from("/nonexistent/dir/a.jsonl"),
        Rotation::default()
    )
    .is_err());
}

/// Anyone who can open the lock file can hold it (a sandboxed process
/// that can read the log's directory, say): an append then fails after a
/// bounded wait instead of waiting in the kernel for as long as it likes.
#[test]
fn a_lock_held_elsewhere_fails_the_append_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let log = AuditLog::open(&path, Rotation::default()).unwrap();
    let record = AuditRecord::of(
        &decided(vec!["x".into()], Decision::Run),
        "s",
        SystemTime::now(),
        &RecordOptions::default(),
    );
    // A read-only descriptor is enough to lock a file.
    let holder = std::fs::File::open(dir.path().join("a.jsonl.lock")).unwrap();
    holder.lock().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(
            log.append(&record, false)
                .map_err(|error| error.to_string()),
        );
    });
    let appended = finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the append waited for the lock with no end");
    let error = appended.expect_err("appended under a lock held elsewhere");
    assert!(error.contains("held the lock"), "{error}");
    assert!(all_lines(dir.path()).is_empty());
    drop(holder);
}

/// A writer that keeps the lock shared (another busy server, or anyone who
/// can open the lock file) leaves no moment for the exclusive lock a
/// rotation needs. The records still go in, past the size limit, up to
/// twice it; past that a record waits for the rotation as for any lock,
/// and fails without it. The rotation happens with the first record
/// after the holder lets go.
#[test]
fn a_rotation_put_off_by_a_lock_held_elsewhere_refuses_no_record_until_twice_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let record = AuditRecord::of(
        &decided(vec!["x".into()], Decision::Run),
        "s",
        SystemTime::now(),
        &RecordOptions::default(),
    );
    let mut line = serde_json::to_vec(&record).unwrap();
    line.push(b'\n');
    let line = line.len() as u64;
    let path = dir.path().join("a.jsonl");
    let rotation = Rotation {
        max_bytes: 5 * line,
        keep: 2,
    };
    let log = AuditLog::open(&path, rotation).unwrap();
    let holder = std::fs::File::open(dir.path().join("a.jsonl.lock")).unwrap();
    holder.lock_shared().unwrap();
    for _ in 0..10 {
        log.append(&record, false).expect("a record refused");
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10 * line);
    assert!(!dir.path().join("a.jsonl.1").exists());
    let error = log
        .append(&record, false)
        .expect_err("the log grew past twice its limit")
        .to_string();
    assert!(error.contains("held the lock"), "{error}");
    assert_eq!(all_lines(dir.path()).len(), 10);

    drop(holder);
    log.append(&record, false).unwrap();
    assert!(dir.path().join("a.jsonl.1").exists());
    assert_eq!(all_lines(dir.path()).len(), 11);
}

#[test]
fn reading_filters_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let log = AuditLog::open(&path, Rotation::default()).unwrap();
    let events = [
        decided(vec!["ls".into()], Decision::Run),
        decided(
            vec!["rm".into(), "-rf".into()],
            Decision::Deny {
                reason: "no".into(),
            },
        ),
        decided(
            vec!["id".into()],
            Decision::Escalate(Execution::Unsandboxed),
        ),
    ];
    for event in &events {
        log.append(
            &AuditRecord::of(event, "s1", SystemTime::now(), &RecordOptions::default()),
            false,
        )
        .unwrap();
    }
    let records = read_records(&path).unwrap();
    assert_eq!(records.len(), 3);
    let filter = Filter {
        decision: Some("deny".into()),
        ..Filter::default()
    };
    assert_eq!(records.iter().filter(|r| filter.matches(r)).count(), 1);
    let filter = Filter {
        program: Some(Filter::program_glob("l*").unwrap()),
        ..Filter::default()
    };
    assert_eq!(
        records.iter().filter(|r| filter.matches(r)).count(),
        3,
        "all are /usr/bin/ls here"
    );
    let summary = Summary::of(&records);
    assert_eq!(summary.escalations.len(), 1);
    assert_eq!(summary.denials.len(), 1);
    assert_eq!(summary.per_rule["none"], 3);

    std::fs::write(&path, "{\"not\": \"a record\"}\n").unwrap();
    let error = read_records(&path).unwrap_err().to_string();
    assert!(error.contains("a.jsonl:1"), "{error}");
}

/// Probe 112: the summary joined arguments with blanks, so `id 'a b' c`
/// and `id a 'b c'` read alike, an argument could imitate the execution
/// shown after it, and a byte that is not UTF-8 read as U+FFFD.
#[test]
fn the_summary_shows_each_argument_whole() {
    use std::os::unix::ffi::OsStringExt;
    let escalated = |argv: Vec<OsString>| {
        let event = decided(argv, Decision::Escalate(Execution::Unsandboxed));
        AuditRecord::of(
            &event,
            "s1",
            SystemTime::UNIX_EPOCH,
            &RecordOptions::default(),
        )
    };
    let records = [
        escalated(vec!["ls".into(), "a b".into(), "c".into()]),
        escalated(vec!["ls".into(), "a".into(), "b c".into()]),
        escalated(vec!["ls".into(), "--x (turn-default)".into()]),
        escalated(vec![
            "ls".into(),
            "".into(),
            "say \"hi\"".into(),
            "back\\slash".into(),
        ]),
        escalated(vec!["ls".into(), OsString::from_vec(b"bad\xff".to_vec())]),
        escalated(vec!["ls".into(), "bad\u{fffd}".into()]),
    ];
    let summary = Summary::of(&records);
    let shown: Vec<&str> = summary
        .escalations
        .iter()
        .map(|line| line.split_once(": ").map_or("", |(_, args)| args))
        .collect();
    assert_eq!(
        shown,
        [
            "ls \"a b\" c (unsandboxed)",
            "ls a \"b c\" (unsandboxed)",
            "ls \"--x (turn-default)\" (unsandboxed)",
            "ls \"\" \"say \\\"hi\\\"\" \"back\\\\slash\" (unsandboxed)",
            "ls \"bad\\xff\" (unsandboxed)",
            "ls bad\u{fffd} (unsandboxed)",
        ]
    );
}

/// Probe 128: the summary listed a skill's script escalated with its
/// grants as `(permissions)`, without the grants or the skill: a reviewer
/// reading it could not tell what the script could write. An escalation
/// shows its grants and its note, as a grant given to a shell does.
#[test]
fn the_summary_shows_an_escalations_grants_and_note() {
    let mut record = AuditRecord::of(
        &decided(
            vec!["ls".into(), "now".into()],
            Decision::Escalate(Execution::Unsandboxed),
        ),
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let fields = record.execgate.as_mut().unwrap();
    fields.execution = Some("permissions".into());
    fields.grants = Some(vec!["/srv/out=write".into(), "network=limited".into()]);
    fields.note = Some("script of skill deploy".into());
    let plain = AuditRecord::of(
        &decided(
            vec!["ls".into()],
            Decision::Escalate(Execution::Unsandboxed),
        ),
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let summary = Summary::of([&record, &plain]);
    let shown: Vec<&str> = summary
        .escalations
        .iter()
        .map(|line| line.split_once(": ").map_or("", |(_, args)| args))
        .collect();
    assert_eq!(
        shown,
        [
            "ls now (permissions: /srv/out=write, \
             network=limited; script of skill deploy)",
            "ls (unsandboxed)",
        ]
    );
}

/// A base64 argument that does not decode (a damaged or edited log) was
/// shown as an empty argument, by the summary and by `execgate audit`'s
/// table alike: it is shown as the recorded text, marked.
#[test]
fn an_argument_whose_base64_does_not_decode_is_shown_as_recorded() {
    let mut record = AuditRecord::of(
        &decided(
            vec!["ls".into()],
            Decision::Escalate(Execution::Unsandboxed),
        ),
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let damaged = Bytes::Encoded {
        base64: "not*base64".into(),
    };
    assert_eq!(damaged.to_bytes(), None);
    assert_eq!(damaged.shown(), Err("not*base64"));
    record.process.args.as_mut().unwrap().push(damaged);
    let summary = Summary::of([&record]);
    assert_eq!(
        summary.escalations[0]
            .split_once(": ")
            .map(|(_, args)| args),
        Some("ls <base64 that does not decode: not*base64> (unsandboxed)")
    );
}
/// Probe 157: the summary joined `argv[0]` to the arguments unmarked, so
/// `exec -a date uname -s` read as `date -s` run unsandboxed. A name that
/// is not the program's is shown as the name it ran under.
#[test]
fn the_summary_marks_the_name_a_program_ran_under() {
    let record = AuditRecord::of(
        &decided(
            vec!["date".into(), "-s".into()],
            Decision::Escalate(Execution::Unsandboxed),
        ),
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let summary = Summary::of([&record]);
    assert!(
        summary.escalations[0].ends_with(" /usr/bin/ls (as date): -s (unsandboxed)"),
        "{summary:?}"
    );
}

/// Review 119: with `sync = "escalations"`, a grant given to a command's
/// shell (which widens its sandbox as an escalation does) was not synced
/// before the shell started.
#[test]
fn a_grant_to_a_commands_shell_is_synced_as_an_escalation_is() {
    use execgate_escalate_server::sandbox::PermissionProfile;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path().join("a.jsonl"), Rotation::default()).unwrap());
    let options = RecordOptions {
        sync_escalations: true,
        ..RecordOptions::default()
    };
    let audit = SessionAudit::new(log, options);
    let requested = |granted| SessionEvent::PermissionsRequested {
        argv: vec!["zsh".into()],
        cwd: "/".into(),
        grants: PermissionProfile::Disabled,
        granted,
        justification: None,
        provenance: Default::default(),
    };
    assert!(audit.waits_for_disk(&requested(true)));
    assert!(!audit.waits_for_disk(&requested(false)));
}

/// A command whose shell did not start (bubblewrap could not set its
/// sandbox up) is an `error` with the command and why, decided by nobody,
/// and counted with the errors, not as anything that ran or was denied.
#[test]
fn a_shell_that_did_not_start_is_an_error_with_its_command() {
    let record = AuditRecord::of(
        &SessionEvent::ShellNotStarted {
            kind: "command",
            argv: vec![
                "zsh".into(),
                "-f".into(),
                "-c".into(),
                "--".into(),
                "make".into(),
            ],
            cwd: "/work".into(),
            reason: "bubblewrap could not set the sandbox up, so nothing ran".into(),
        },
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    assert_eq!(
        (record.event.action.as_str(), record.event.outcome.as_str()),
        ("error", "failure")
    );
    let args = record.process.args.as_deref().unwrap_or_default();
    assert_eq!(args.last().map(Bytes::lossy).as_deref(), Some("make"));
    assert_eq!(record.process.args_count, Some(5));
    let cwd = record.process.working_directory.as_ref().map(Bytes::lossy);
    assert_eq!(cwd.as_deref(), Some("/work"));
    assert_eq!(
        record.error.as_deref(),
        Some(
            "the command's shell did not start: bubblewrap could not set the sandbox up, so \
             nothing ran"
        )
    );
    assert!(record.request_id.is_none() && record.execgate.is_none());
    let summary = Summary::of([&record]);
    assert_eq!(summary.errors, 1, "{summary:?}");
    assert!(summary.denials.is_empty() && summary.escalations.is_empty());
}

fn run_record() -> AuditRecord {
    AuditRecord::of(
        &decided(vec!["ls".into()], Decision::Run),
        "s1",
        SystemTime::now(),
        &RecordOptions::default(),
    )
}

/// A writer that died mid-line (a crash, a full disk) leaves a cut line
/// at the end: the next record must start a line of its own, not be
/// merged into it, and reading must go on past the cut line.
#[test]
fn a_record_after_a_cut_line_starts_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let first = serde_json::to_string(&run_record()).unwrap();
    std::fs::write(&path, format!("{first}\n{{\"@timestamp\":\"2026-12-")).unwrap();
    let log = AuditLog::open(&path, Rotation::default()).unwrap();
    log.append(&run_record(), false).unwrap();
    log.append(&run_record(), false).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    let read = read_log(&path).unwrap();
    assert_eq!(read.records.len(), 3);
    let [skipped] = read.skipped.as_slice() else {
        panic!("{:?}", read.skipped);
    };
    assert!(skipped.to_string().contains("a.jsonl:2"), "{skipped}");
    // The strict reading names the same line.
    let error = read_records(&path).unwrap_err().to_string();
    assert!(error.contains("a.jsonl:2"), "{error}");
}

/// Regression (a probe of the audit log): a record cut just before its
/// newline (a full disk) is whole JSON; the next writer ended the line
/// with a newline, and the record of a command that was denied read as
/// one that ran. A cut line stays a cut line.
#[test]
fn a_record_cut_before_its_newline_is_not_read_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let cut = serde_json::to_string(&run_record()).unwrap();
    std::fs::write(&path, &cut).unwrap();
    let log = AuditLog::open(&path, Rotation::default()).unwrap();
    log.append(&run_record(), false).unwrap();
    let read = read_log(&path).unwrap();
    assert_eq!(read.records.len(), 1);
    let [skipped] = read.skipped.as_slice() else {
        panic!("{:?}", read.skipped);
    };
    assert!(skipped.to_string().contains("a.jsonl:1"), "{skipped}");
    // Nobody wrote after it (the disk still full): still a cut line, not
    // the record it would parse as.
    std::fs::write(&path, format!("{cut}\n{cut}")).unwrap();
    let read = read_log(&path).unwrap();
    assert_eq!(read.records.len(), 1);
    let [skipped] = read.skipped.as_slice() else {
        panic!("{:?}", read.skipped);
    };
    let skipped = skipped.to_string();
    assert!(
        skipped.contains("a.jsonl:2") && skipped.contains("cut short"),
        "{skipped}"
    );
    // A mark after another writer's whole line, alone on its line, is no
    // fault (a review: it was reported as one).
    let whole = serde_json::to_string(&run_record()).unwrap();
    std::fs::write(&path, format!("{whole}\n (cut)\n{whole}\n")).unwrap();
    let read = read_log(&path).unwrap();
    assert_eq!((read.records.len(), read.skipped.len()), (2, 0));
}

#[test]
fn reading_goes_on_past_lines_that_are_not_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let record = serde_json::to_string(&run_record()).unwrap();
    // Another writer's record, appended right after a line cut short.
    let after_cut = format!("{{\"@timestamp\":\"2026-12-{record}");
    let lines = [
        record.as_str(),
        "{\"unknown\":\"record\"}",
        record.as_str(),
        "\u{ff}\u{fe} not even UTF-8",
        "",
        record.as_str(),
        after_cut.as_str(),
    ];
    let mut bytes = lines.join("\n").into_bytes();
    // A line cut in the middle of a character.
    bytes.extend_from_slice(b"\n\xe2\x82\n");
    std::fs::write(&path, bytes).unwrap();
    let read = read_log(&path).unwrap();
    assert_eq!(read.records.len(), 4);
    let skipped: Vec<String> = read.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    for (found, line) in skipped.iter().zip([2, 4, 7, 8]) {
        assert!(found.contains(&format!("a.jsonl:{line}:")), "{found}");
    }
    assert!(skipped[2].contains("whole record (kept)"), "{}", skipped[2]);
}

/// Probe 183: a record written after a cut line was lost when its
/// environment held a variable named `@timestamp`, sorted first: reading
/// took that object, inside the record, for the record's start.
#[test]
fn a_record_after_a_cut_line_is_kept_whatever_its_environment_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut context = (*request(vec!["ls".into()])).clone();
    context.env.push("@timestamp=1".into());
    let event = SessionEvent::Decided {
        request: Arc::new(context),
        decision: Decision::Run,
        provenance: Default::default(),
    };
    let record = AuditRecord::of(&event, "s1", SystemTime::now(), &RecordOptions::default());
    let record = serde_json::to_string(&record).unwrap();
    assert!(
        record.contains("\"environment\":{\"@timestamp\""),
        "{record}"
    );
    std::fs::write(&path, format!("{{\"@timestamp\":\"2026-12-{record}\n")).unwrap();
    let read = read_log(&path).unwrap();
    assert_eq!(read.records.len(), 1, "{:?}", read.skipped);
    let [skipped] = read.skipped.as_slice() else {
        panic!("{:?}", read.skipped);
    };
    assert!(
        skipped.to_string().contains("whole record (kept)"),
        "{skipped}"
    );
}

/// A line longer than any record (written by someone with the log's
/// permissions) is reported and read past, not held in memory whole; the
/// records around it are read. A line of exactly the limit is read.
#[test]
fn a_line_longer_than_any_record_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let record = serde_json::to_string(&run_record()).unwrap();
    let mut bytes = format!("{record}\n").into_bytes();
    bytes.resize(bytes.len() + LONGEST_LINE + 1, b'x');
    bytes.push(b'\n');
    bytes.extend_from_slice(record.as_bytes());
    bytes.push(b'\n');
    bytes.resize(bytes.len() + LONGEST_LINE, b' ');
    bytes.push(b'\n');
    bytes.extend_from_slice(record.as_bytes());
    bytes.push(b'\n');
    std::fs::write(&path, bytes).unwrap();
    let read = read_log(&path).unwrap();
    assert_eq!(read.records.len(), 3);
    let [skipped] = read.skipped.as_slice() else {
        panic!("{:?}", read.skipped);
    };
    assert!(
        skipped
            .to_string()
            .contains("a.jsonl:2: not an audit record: longer than 64 MiB"),
        "{skipped}"
    );
}

/// A file still being written (`--follow`): a last line without its
/// newline is held back until it is whole, a long line is reported once
/// however many reads it spans, and once the file is finished a cut last
/// line is reported.
#[test]
fn a_growing_file_is_read_a_whole_line_at_a_time() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let record = serde_json::to_string(&run_record()).unwrap();
    let (first, rest) = record.split_at(record.len() / 2);
    let mut writer = std::fs::File::create(&path).unwrap();
    let mut lines = LogLines::new(std::fs::File::open(&path).unwrap(), &path).growing();
    let read = |lines: &mut LogLines<std::fs::File>| -> Vec<Result<(), String>> {
        lines
            .by_ref()
            .map(|line| line.unwrap().map(drop).map_err(|error| error.to_string()))
            .collect()
    };
    writer.write_all(first.as_bytes()).unwrap();
    assert!(read(&mut lines).is_empty());
    writeln!(writer, "{rest}").unwrap();
    assert_eq!(read(&mut lines), [Ok(())]);

    writer.write_all(&vec![b'x'; LONGEST_LINE]).unwrap();
    assert!(read(&mut lines).is_empty());
    writer.write_all(b"xx").unwrap();
    let long = read(&mut lines);
    let [Err(long)] = long.as_slice() else {
        panic!("the long line is not reported once");
    };
    assert!(long.contains("longer than 64 MiB"), "{long}");
    writer.write_all(b"xxx\n").unwrap();
    writeln!(writer, "{record}").unwrap();
    assert_eq!(read(&mut lines), [Ok(())]);

    writer.write_all(first.as_bytes()).unwrap();
    assert!(read(&mut lines).is_empty());
    lines.finished();
    let cut = read(&mut lines);
    let [Err(cut)] = cut.as_slice() else {
        panic!("the cut line is not reported");
    };
    assert!(cut.contains("not an audit record"), "{cut}");
}

#[test]
fn time_bounds_compare_instants_whatever_their_offset() {
    let record = run_record();
    let at = |text: &str| Filter::time_bound(text).unwrap();
    // The record's own time, written three ways, is within both bounds.
    let stamp = humantime::parse_rfc3339(&record.timestamp).unwrap();
    let utc = humantime::format_rfc3339_nanos(stamp).to_string();
    let plus_one = shift_offset(&utc, "+01:00", 3600);
    let minus_five = shift_offset(&utc, "-05:00", -5 * 3600);
    for bound in [&utc, &plus_one, &minus_five] {
        let filter = Filter {
            since: Some(at(bound)),
            until: Some(at(bound)),
            ..Filter::default()
        };
        assert!(
            filter.matches(&record),
            "{bound} against {}",
            record.timestamp
        );
    }
    let later = Filter {
        since: Some(stamp + Duration::from_secs(1)),
        ..Filter::default()
    };
    assert!(!later.matches(&record));
    // A record's own time at another offset (another tool's, or edited)
    // is the same instant, not left out of every bounded query (probe 135).
    let mut shifted = record.clone();
    shifted.timestamp = plus_one.clone();
    assert_eq!(shifted.time(), Some(stamp));
    let around = Filter {
        since: Some(stamp),
        until: Some(stamp),
        ..Filter::default()
    };
    assert!(around.matches(&shifted), "{}", shifted.timestamp);
    assert_eq!(at("2026-12-01T14:09:40+01:00"), at("2026-12-01T13:09:40Z"));
    assert_eq!(at("2026-12-01t13:09:40.5z"), at("2026-12-01T13:09:40.500Z"));
    for wrong in [
        "yesterday",
        "2026-12-01",
        "2026-12-01T13:09:40",
        "garbage",
        "2026-12-01T13:09:40+1",
    ] {
        let error = Filter::time_bound(wrong).unwrap_err().to_string();
        assert!(error.contains("RFC 3339"), "{wrong}: {error}");
    }
}

/// `utc` (`...Z`) as the same instant at `offset` (`+hh:mm`), `seconds`
/// east of UTC.
fn shift_offset(utc: &str, offset: &str, seconds: i64) -> String {
    let instant = humantime::parse_rfc3339(utc).unwrap();
    let local = if seconds >= 0 {
        instant + Duration::from_secs(seconds.unsigned_abs())
    } else {
        instant - Duration::from_secs(seconds.unsigned_abs())
    };
    let text = humantime::format_rfc3339_nanos(local).to_string();
    format!("{}{offset}", text.trim_end_matches('Z'))
}

fn connect_request(host: &str, port: u16) -> execgate_network_proxy::ConnectRequest {
    execgate_network_proxy::ConnectRequest {
        destination: execgate_network_proxy::Destination::parse(host).unwrap(),
        port,
        protocol: execgate_network_proxy::Protocol::Https,
    }
}

/// A decision, and for allowed ones the close after relaying.
fn network_events() -> Vec<SessionEvent> {
    use execgate_escalate_server::{NetworkDecidedBy, NetworkEvent, RuleRef};
    use execgate_network_proxy::{
        ConnectionOutcome, ConnectionReport, NonPublicAddresses, Verdict,
    };
    let crates = connect_request("crates.io", 443);
    let by_list = NetworkDecidedBy::List {
        pattern: "crates.io".into(),
    };
    let by_rule = NetworkDecidedBy::Rule(RuleRef {
        id: "team.rules:4".into(),
        justification: Some("paste site".into()),
    });
    let by_user = NetworkDecidedBy::User {
        rule: None,
        waited: Duration::from_millis(1500),
    };
    let allowed = Verdict::Allow(NonPublicAddresses::Refuse);
    let denied = |reason: &str| Verdict::Deny {
        reason: reason.into(),
    };
    let events = vec![
        NetworkEvent::decided(&crates, &allowed, &by_list, Some(7)),
        NetworkEvent::closed(
            &ConnectionReport {
                request: Some(crates.clone()),
                outcome: ConnectionOutcome::Relayed {
                    address: "192.0.2.10:443".parse().unwrap(),
                    bytes_sent: 517,
                    bytes_received: 40960,
                },
            },
            Some(&by_list),
            Some(7),
        ),
        NetworkEvent::decided(
            &connect_request("paste.example", 443),
            &denied("forbidden by network rule at team.rules:4: paste site"),
            &by_rule,
            Some(8),
        ),
        NetworkEvent::decided(&connect_request("[::1]", 8080), &allowed, &by_user, None),
        NetworkEvent::closed(
            &ConnectionReport {
                request: Some(connect_request("[::1]", 8080)),
                outcome: ConnectionOutcome::Denied {
                    reason: "[::1] is not public".into(),
                },
            },
            Some(&by_user),
            None,
        ),
        NetworkEvent::closed(
            &ConnectionReport {
                request: None,
                outcome: ConnectionOutcome::Refused {
                    reason: "the client sent nothing".into(),
                },
            },
            None,
            None,
        ),
    ];
    events.into_iter().map(SessionEvent::Network).collect()
}

#[test]
fn network_events_become_ecs_records() {
    let records: Vec<serde_json::Value> = network_events()
        .iter()
        .map(|event| {
            let record = AuditRecord::of(event, "s1", SystemTime::UNIX_EPOCH, &Default::default());
            let mut value = serde_json::to_value(&record).unwrap();
            let object = value.as_object_mut().unwrap();
            for always in ["@timestamp", "session_id", "process"] {
                object.remove(always);
            }
            value
        })
        .collect();
    let expected = serde_json::json!([
        {
            "event": {"action": "network-decision", "outcome": "success"},
            "request_id": 7,
            "destination": {"address": "crates.io", "domain": "crates.io", "port": 443},
            "network": {"protocol": "https"},
            "execgate": {"decision": "allow", "decided_by": "list", "list_entry": "crates.io",
                         "network_outcome": "allowed"}
        },
        {
            "event": {"action": "network-close", "outcome": "success"},
            "request_id": 7,
            "destination": {"address": "crates.io", "domain": "crates.io", "ip": "192.0.2.10",
                            "port": 443, "bytes": 40960},
            "source": {"bytes": 517},
            "network": {"protocol": "https"},
            "execgate": {"decision": "allow", "decided_by": "list", "list_entry": "crates.io",
                         "network_outcome": "allowed"}
        },
        {
            "event": {"action": "network-decision", "outcome": "failure"},
            "request_id": 8,
            "destination": {"address": "paste.example", "domain": "paste.example", "port": 443},
            "network": {"protocol": "https"},
            "execgate": {"decision": "deny", "decided_by": "rule", "network_outcome": "denied",
                         "reason": "forbidden by network rule at team.rules:4: paste site"},
            "rule": {"id": "team.rules:4", "justification": "paste site"}
        },
        {
            "event": {"action": "network-decision", "outcome": "success"},
            "destination": {"address": "[::1]", "ip": "::1", "port": 8080},
            "network": {"protocol": "https"},
            "execgate": {"decision": "allow", "decided_by": "user", "approval_ms": 1500,
                         "network_outcome": "allowed"}
        },
        {
            "event": {"action": "network-close", "outcome": "failure"},
            "destination": {"address": "[::1]", "ip": "::1", "port": 8080},
            "network": {"protocol": "https"},
            "execgate": {"decision": "allow", "decided_by": "user", "approval_ms": 1500,
                         "network_outcome": "denied", "reason": "[::1] is not public"}
        },
        {
            "event": {"action": "network-close", "outcome": "failure"},
            "execgate": {"network_outcome": "refused", "reason": "the client sent nothing"}
        },
    ]);
    assert_eq!(serde_json::Value::Array(records), expected);
}

#[test]
fn network_records_read_back_filter_and_count_per_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let log = AuditLog::open(&path, Rotation::default()).unwrap();
    let exec = decided(vec!["ls".into()], Decision::Run);
    let mut written = Vec::new();
    for event in std::iter::once(&exec).chain(network_events().iter()) {
        let record = AuditRecord::of(event, "s1", SystemTime::now(), &RecordOptions::default());
        log.append(&record, false).unwrap();
        written.push(record);
    }
    let records = read_records(&path).unwrap();
    assert_eq!(records, written);
    let network = Filter {
        network: true,
        ..Filter::default()
    };
    let kept: Vec<&str> = records
        .iter()
        .filter(|record| network.matches(record))
        .map(|record| record.event.action.as_str())
        .collect();
    assert_eq!(
        kept,
        [
            NETWORK_DECISION,
            NETWORK_CLOSE,
            NETWORK_DECISION,
            NETWORK_DECISION,
            NETWORK_CLOSE,
            NETWORK_CLOSE
        ]
    );
    let denials = Filter {
        network: true,
        decision: Some("deny".into()),
        ..Filter::default()
    };
    // The denial, and the connection refused at connect time after an
    // allow.
    let denied: Vec<(&str, Option<&str>)> = records
        .iter()
        .filter(|r| denials.matches(r))
        .map(|r| {
            (
                r.event.action.as_str(),
                r.execgate.as_ref().unwrap().network_outcome.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        denied,
        [
            (NETWORK_DECISION, Some("denied")),
            (NETWORK_CLOSE, Some("denied"))
        ]
    );

    let summary = Summary::of(&records);
    let counts = |pairs: &[(&str, usize)]| -> std::collections::BTreeMap<String, usize> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };
    let expected: std::collections::BTreeMap<String, _> = [
        ("crates.io".to_owned(), counts(&[("allowed", 1)])),
        ("paste.example".to_owned(), counts(&[("denied", 1)])),
        (
            "[::1]".to_owned(),
            counts(&[("allowed", 1), ("denied-at-connect", 1)]),
        ),
        ("?".to_owned(), counts(&[("refused", 1)])),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary.per_host, expected);
    // The exec record alone is counted per program.
    assert_eq!(summary.per_program.len(), 1);
    assert_eq!(summary.per_rule["team.rules:4"], 1);
    assert_eq!(summary.denials.len(), 3, "{:?}", summary.denials);
}

/// Regression: a decision's record gave the working directory the
/// requester claimed with nothing to say the server could not confirm it
/// (a sandbox could claim any path, `/proc/PID/fd/N` among them). The
/// reason now goes with it; a confirmed one has none.
#[test]
fn an_unconfirmed_working_directory_is_recorded_as_such() {
    let unconfirmed = decided(vec!["ls".into()], Decision::Run);
    let record = AuditRecord::of(
        &unconfirmed,
        "s1",
        SystemTime::now(),
        &RecordOptions::default(),
    );
    let fields = record.execgate.as_ref().unwrap();
    assert_eq!(
        fields.working_directory_unverified.as_deref(),
        Some("not held in this test")
    );
    let mut confirmed = request(vec!["ls".into()]);
    Arc::get_mut(&mut confirmed).unwrap().working_directory =
        Ok(execgate_escalate_server::WorkingDirectory {
            canonical_path: "/work".into(),
            device: 1,
            inode: 3,
        });
    let confirmed = SessionEvent::Decided {
        request: confirmed,
        decision: Decision::Run,
        provenance: Default::default(),
    };
    let record = AuditRecord::of(
        &confirmed,
        "s1",
        SystemTime::now(),
        &RecordOptions::default(),
    );
    assert_eq!(record.execgate.unwrap().working_directory_unverified, None);
    let line = serde_json::to_string(&record.process).unwrap();
    assert!(line.contains("\"working_directory\":\"/work\""), "{line}");
}

/// A probe pushed every older record out of the log in 20 s, from inside
/// the sandbox, with requests of megabytes of arguments in a loop. A
/// session records at most half of what the log keeps; its end is still
/// recorded, and another session's records before it are still there.
#[test]
fn a_session_records_at_most_half_of_what_the_log_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let rotation = Rotation {
        max_bytes: 64 << 10,
        keep: 3,
    };
    let log = Arc::new(AuditLog::open(&path, rotation).unwrap());
    let earlier = SessionAudit::new(log.clone(), RecordOptions::default());
    let witness = decided(vec!["witness".into()], Decision::Run);
    earlier.record("earlier", &witness).unwrap();

    let flood = SessionAudit::new(log.clone(), RecordOptions::default());
    let big = decided(vec!["x".repeat(4 << 10).into()], Decision::Run);
    let recorded = (0..1000)
        .take_while(|_| flood.record("flood", &big).is_ok())
        .count();
    let error = flood.record("flood", &big).unwrap_err();
    assert!(error.contains("half of what the log keeps"), "{error}");
    // Shares are by session: another session through the same sink
    // records on.
    flood.record("another", &witness).unwrap();
    // Half of 4 x 64 KiB, in records of a little over 4 KiB.
    assert!((25..=32).contains(&recorded), "{recorded}");
    let ended = SessionEvent::Ended {
        reason: execgate_escalate_server::SessionEnd::Closed,
        running: 0,
        processes: Some(0),
        requests: 0,
    };
    flood.record("flood", &ended).unwrap();

    let mut sessions = Vec::new();
    for file in std::iter::once(path.clone()).chain((1..=3).map(|n| rotated_path(&path, n))) {
        if let Ok(read) = read_log(&file) {
            sessions.extend(read.records.into_iter().map(|record| record.session_id));
        }
    }
    assert!(sessions.iter().any(|session| session == "earlier"));
}

/// A log of `keep` + 1 files of 64 KiB, full of records of earlier
/// sessions (short enough to stay within their shares), and `attack`
/// run on it by one session. Fails if the attack pushed out more earlier
/// records than the bound: half of the files, and the file being written
/// when the session began (whose room its writers had taken).
fn at_most_half_pushed_out(keep: usize, attack: impl FnOnce(&Arc<SessionAudit>)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let rotation = Rotation {
        max_bytes: 64 << 10,
        keep,
    };
    let log = Arc::new(AuditLog::open(&path, rotation).unwrap());
    let earlier = SessionAudit::new(log.clone(), RecordOptions::default());
    let witness = decided(vec!["w".repeat(400).into()], Decision::Run);
    let whole_history = ((keep + 1) * (64 << 10)) / 600;
    for n in 0..whole_history {
        earlier
            .record(&format!("earlier-{}", n / 50), &witness)
            .unwrap();
    }
    let count_earlier = || {
        let mut count = 0;
        for file in std::iter::once(path.clone()).chain((1..=keep).map(|n| rotated_path(&path, n)))
        {
            if let Ok(read) = read_log(&file) {
                count += read
                    .records
                    .iter()
                    .filter(|record| record.session_id.starts_with("earlier-"))
                    .count();
            }
        }
        count
    };
    let before = count_earlier();
    let per_file = read_log(&rotated_path(&path, keep)).unwrap().records.len();
    attack(&Arc::new(SessionAudit::new(log, RecordOptions::default())));
    let pushed_out = before - count_earlier();
    // Half of the keep + 1 files, rounded down, and one.
    let bound = per_file * (keep.div_ceil(2) + 1);
    assert!(
        pushed_out <= bound,
        "{pushed_out} of {before} earlier records pushed out, {per_file} a file: more than {bound}"
    );
}

fn ended() -> SessionEvent {
    SessionEvent::Ended {
        reason: execgate_escalate_server::SessionEnd::Closed,
        running: 0,
        processes: Some(0),
        requests: 0,
    }
}

/// A probe's records were each a little over half a file: every one of
/// them rotated the log, which then kept one record per file, so a share
/// counted in bytes let one session rotate every older file out. A
/// rotation charges the session whose record caused it with the room the
/// rotated file left unused, so that its share counts files too.
#[test]
fn records_of_half_a_file_push_out_at_most_half_of_the_files() {
    let big = decided(vec!["x".repeat(33 << 10).into()], Decision::Run);
    at_most_half_pushed_out(7, |flood| {
        let recorded = (0..100)
            .take_while(|_| flood.record("flood", &big).is_ok())
            .count();
        assert!(recorded > 0);
    });
}

/// A review: a session's end dropped its count, so the records written
/// after it (refusals of the questions it left open, exits of the
/// children it killed) began a share of their own.
#[test]
fn records_after_a_sessions_end_count_against_its_share() {
    let big = decided(vec!["x".repeat(4 << 10).into()], Decision::Run);
    at_most_half_pushed_out(3, |flood| {
        while flood.record("flood", &big).is_ok() {}
        flood.record("flood", &ended()).unwrap();
        let error = flood.record("flood", &big).unwrap_err();
        assert!(error.contains("the rest of its share"), "{error}");
    });
}

/// A review: records written at once each saw the same room left in the
/// session's share, and together went far past it.
#[test]
fn records_written_at_once_take_no_more_than_the_share() {
    at_most_half_pushed_out(7, |flood| {
        std::thread::scope(|scope| {
            for n in 0..16 {
                let flood = flood.clone();
                scope.spawn(move || {
                    let big = decided(vec![format!("{n}").repeat(9 << 10).into()], Decision::Run);
                    while flood.record("flood", &big).is_ok() {}
                });
            }
        });
    });
}

/// A review: the end of a session that had spent its share still rotated
/// the log, one file more than the share (with `keep = 1`, every earlier
/// record). The end is recorded, and rotates nothing under twice the
/// file's limit.
#[test]
fn a_sessions_end_is_recorded_and_rotates_nothing() {
    let rotation = Rotation {
        max_bytes: 64 << 10,
        keep: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let end_line = {
        let path = dir.path().join("end.jsonl");
        let log = Arc::new(AuditLog::open(&path, rotation).unwrap());
        SessionAudit::new(log, RecordOptions::default())
            .record("flood", &ended())
            .unwrap();
        std::fs::metadata(&path).unwrap().len()
    };
    // Small records, of sizes until one leaves too little room for the
    // end's: the share (one file here) is spent as the file fills.
    let mut judged = false;
    for size in 100..400 {
        let path = dir.path().join(format!("{size}.jsonl"));
        let log = Arc::new(AuditLog::open(&path, rotation).unwrap());
        let flood = SessionAudit::new(log, RecordOptions::default());
        let small = decided(vec!["x".repeat(size).into()], Decision::Run);
        while flood.record("flood", &small).is_ok() {}
        let before = std::fs::metadata(&path).unwrap();
        if before.len() + end_line <= rotation.max_bytes {
            continue;
        }
        judged = true;
        flood.record("flood", &ended()).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(after.ino(), before.ino(), "the end rotated the log");
        let last = read_log(&path).unwrap().records.pop().unwrap();
        assert_eq!(last.event.action, "session-end");
        break;
    }
    assert!(judged, "no record size left the file too full for the end");
}

/// A probe (105): records refused past a session's share left no trace in
/// the log (only a line on stderr), so `execgate audit` counted 54 of 100
/// escalations with nothing to say the rest were missing. The session's
/// end says how many of its records were not written.
#[test]
fn a_sessions_end_counts_the_records_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lost.jsonl");
    let rotation = Rotation {
        max_bytes: 64 << 10,
        keep: 1,
    };
    let log = Arc::new(AuditLog::open(&path, rotation).unwrap());
    let flood = SessionAudit::new(log.clone(), RecordOptions::default());
    let big = decided(vec!["x".repeat(4 << 10).into()], Decision::Run);
    while flood.record("flood", &big).is_ok() {}
    for _ in 0..4 {
        assert!(flood.record("flood", &big).is_err());
    }
    flood.record("flood", &ended()).unwrap();
    // Another session lost nothing: its end says nothing of it.
    flood.record("quiet", &ended()).unwrap();
    let records = read_log(&path).unwrap().records;
    let end_of = |session: &str| {
        records
            .iter()
            .find(|record| record.session_id == session && record.event.action == "session-end")
            .and_then(|record| record.session.clone())
            .unwrap()
    };
    assert_eq!(end_of("flood").lost_records, Some(5));
    assert_eq!(end_of("quiet").lost_records, None);
}

/// Probe 156: an escalation whose sandbox could not be set up ran nothing
/// (the command was denied, 126), yet the summary listed it with the
/// escalations and counted no denial.
#[test]
fn the_summary_counts_an_escalation_that_never_started_as_a_denial() {
    let escalated = AuditRecord::of(
        &decided(
            vec!["ls".into(), "-l".into()],
            Decision::Escalate(Execution::Unsandboxed),
        ),
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let failed = AuditRecord::of(
        &SessionEvent::SpawnFailed {
            request_id: 7,
            reason: "the sandbox cannot be set up".into(),
        },
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let other_session = AuditRecord::of(
        &SessionEvent::SpawnFailed {
            request_id: 7,
            reason: "another session's".into(),
        },
        "s2",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let summary = Summary::of([&escalated, &other_session]);
    assert_eq!(summary.escalations.len(), 1, "{summary:?}");
    // Review 34b: one that started stays an escalation, whatever error
    // its request has later (its conversation broken while it ran).
    let started = AuditRecord::of(
        &SessionEvent::Started {
            request_id: 7,
            pid: 4242,
        },
        "s1",
        SystemTime::UNIX_EPOCH,
        &RecordOptions::default(),
    );
    let summary = Summary::of([&escalated, &started, &failed]);
    assert_eq!(summary.escalations.len(), 1, "{summary:?}");
    assert!(summary.denials.is_empty(), "{summary:?}");
    let summary = Summary::of([&escalated, &failed]);
    assert!(summary.escalations.is_empty(), "{summary:?}");
    let [denial] = summary.denials.as_slice() else {
        panic!("one denial: {summary:?}");
    };
    assert!(
        denial.ends_with("(not started: the sandbox cannot be set up)"),
        "{denial}"
    );
    let counts = &summary.per_program["/usr/bin/ls"];
    assert_eq!(counts.get("deny"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("escalate"), None, "{counts:?}");
    assert_eq!(summary.errors, 1);
}

/// Probe 168: a Windows run writes its decision, then its exit with the
/// decision repeated and a status past `i32::MAX` (a Ctrl-C's 0xC000013A):
/// the exit was skipped as no record, and the run counted twice.
#[test]
fn a_windows_runs_records_read_and_count_once() {
    let lines = [
        r#"{"@timestamp":"2026-12-05T01:00:00Z","session_id":"windows-1-a","event":{"action":"decision","outcome":"success"},"process":{"executable":"C:\\w\\hostname.exe","args":["hostname"]},"execgate":{"decision":"escalate","execution":"unsandboxed","decided_by":"rule"}}"#,
        r#"{"@timestamp":"2026-12-05T01:00:01Z","session_id":"windows-1-a","event":{"action":"exit","outcome":"failure"},"process":{"executable":"C:\\w\\hostname.exe","args":["hostname"],"exit_code":3221225786},"execgate":{"decision":"escalate","execution":"unsandboxed","decided_by":"rule"}}"#,
    ];
    let records: Vec<AuditRecord> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records[1].process.exit_code, Some(-1073741510));
    let summary = Summary::of(records.iter());
    assert_eq!(summary.escalations.len(), 1, "{summary:?}");
}

/// Probe 242: a record of many pages is written in one call, but a reader
/// can find the file ending in its middle; `execgate audit` reported it
/// as a cut line, and failed. The end of a line is looked for once more
/// while the file grows; only then is a line without it cut.
#[test]
fn a_line_being_written_as_the_file_is_read_is_not_a_cut_line() {
    /// Gives `first`, then the end of the file once, then `rest`.
    struct Arriving {
        parts: std::collections::VecDeque<Vec<u8>>,
    }
    impl std::io::Read for Arriving {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(part) = self.parts.pop_front() else {
                return Ok(0);
            };
            let len = part.len().min(buf.len());
            buf[..len].copy_from_slice(&part[..len]);
            if len < part.len() {
                self.parts.push_front(part[len..].to_vec());
            }
            Ok(len)
        }
    }
    let record = serde_json::to_string(&run_record()).unwrap();
    let (first, rest) = record.split_at(record.len() / 2);
    let file = Arriving {
        parts: [
            first.as_bytes().to_vec(),
            Vec::new(),
            format!("{rest}\n").into_bytes(),
        ]
        .into(),
    };
    let path = std::path::Path::new("a.jsonl");
    let read: Vec<Result<(), String>> = LogLines::new(file, path)
        .map(|line| line.unwrap().map(drop).map_err(|error| error.to_string()))
        .collect();
    assert_eq!(read, [Ok(())]);
}
