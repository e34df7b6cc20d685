//! Rules, approvals, skills and requested permissions, through the real
//! zsh in the real sandbox: what is allowed leaves the sandbox, and nothing
//! else does.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use execgate_audit::{read_records, AuditLog, RecordOptions, Rotation, SessionAudit};
use execgate_core_bridge::rules::RuleSet;
use execgate_core_bridge::server::sandbox::{AdditionalPermissions, PermissionProfile, ProfileSet};
use execgate_core_bridge::server::{DecidedBy, SessionEvent};
use execgate_core_bridge::{
    ApprovalAnswer, ApprovalReason, ApprovalRequest, Approver, BridgeError, DenyAll, ExecPolicy,
    ExecPolicyConfig, RunOptions, RunOutcome, ShellSession, ShellSessionConfig, SkillRegistry,
    Tools,
};

use super::*;

/// A workspace and a directory outside it, under /var/tmp (read-only in
/// the sandbox, unlike /tmp).
pub(super) struct Place {
    _dir: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) ws: PathBuf,
    pub(super) outside: PathBuf,
}

impl Place {
    pub(super) fn new() -> Place {
        let dir = tempfile::Builder::new()
            .prefix("execgate-policy")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let (ws, outside) = (root.join("ws"), root.join("outside"));
        fs::create_dir(&ws).unwrap();
        fs::create_dir(&outside).unwrap();
        Place {
            _dir: dir,
            root,
            ws,
            outside,
        }
    }

    pub(super) fn rules(&self, source: &str) -> Arc<RuleSet> {
        let file = self.root.join("test.rules");
        fs::write(&file, source).unwrap();
        Arc::new(RuleSet::load(&[&file]).unwrap())
    }

    /// `{outside}` and `{ws}` replaced.
    pub(super) fn script(&self, text: &str) -> String {
        text.replace("{outside}", self.outside.to_str().unwrap())
            .replace("{ws}", self.ws.to_str().unwrap())
    }
}

/// Counts the questions and answers each with `answer`, after `delay`.
#[derive(Clone)]
struct Scripted {
    asked: Arc<Mutex<Vec<ApprovalRequest>>>,
    answer: ApprovalAnswer,
    delay: Duration,
}

impl Scripted {
    fn new(answer: ApprovalAnswer) -> Scripted {
        Scripted {
            asked: Arc::default(),
            answer,
            delay: Duration::ZERO,
        }
    }

    fn asked(&self) -> Vec<ApprovalRequest> {
        self.asked.lock().unwrap().clone()
    }
}

impl Approver for Scripted {
    fn approve<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> execgate_core_bridge::ApprovalFuture<'a> {
        Box::pin(async move {
            self.asked.lock().unwrap().push(request.clone());
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        })
    }
}

pub(super) struct Setup {
    rules: Arc<RuleSet>,
    approver: Arc<dyn Approver>,
    skills: SkillRegistry,
    pub(super) profiles: ProfileSet,
    audit: Option<PathBuf>,
    /// Set by the session's environment policy (and so in what escalated
    /// children start from).
    pub(super) env_set: Vec<(String, String)>,
    /// The session's own sandbox; its default when `None`.
    profile: Option<PermissionProfile>,
}

impl Setup {
    pub(super) fn rules(rules: Arc<RuleSet>) -> Setup {
        Setup {
            rules,
            approver: Arc::new(DenyAll),
            skills: SkillRegistry::default(),
            profiles: ProfileSet::default(),
            audit: None,
            env_set: Vec::new(),
            profile: None,
        }
    }

    /// Its commands run with no sandbox: nothing (no pid namespace) ends
    /// a process of theirs with their shell.
    pub(super) fn unsandboxed(mut self) -> Setup {
        self.profile = Some(PermissionProfile::Disabled);
        self
    }

    pub(super) fn approver(mut self, approver: impl Approver) -> Setup {
        self.approver = Arc::new(approver);
        self
    }

    pub(super) fn start(self, place: &Place, recorder: &Recorder) -> ShellSession {
        let policy = ExecPolicy::new(ExecPolicyConfig {
            rules: self.rules,
            skills: self.skills,
            profiles: Arc::new(self.profiles),
            approver: self.approver,
        })
        .unwrap();
        let tools = Tools {
            zsh: zsh(),
            wrapper: wrapper(),
            sandbox_helper: sandbox_helper(),
        };
        let mut config = ShellSessionConfig::with_exec_policy(&place.ws, tools, policy);
        config.events = Some(recorder.sink());
        // Set by the session's environment policy: trusted, unlike what
        // the shell exports.
        config.env.set.insert("POLICY_SET".into(), "yes".into());
        config.env.set.extend(self.env_set);
        if let Some(profile) = self.profile {
            config.profile = profile;
        }
        if let Some(log) = self.audit {
            let log = Arc::new(AuditLog::open(log, Rotation::default()).unwrap());
            config.audit = Some(Arc::new(SessionAudit::new(log, RecordOptions::default())));
        }
        ShellSession::start(config).unwrap()
    }
}

pub(super) async fn run(session: &ShellSession, script: &str) -> RunOutcome {
    run_with(session, script, RunOptions::default()).await
}

async fn run_with(session: &ShellSession, script: &str, options: RunOptions) -> RunOutcome {
    let options = RunOptions {
        timeout: Some(Duration::from_secs(60)),
        ..options
    };
    session.run(script, options).unwrap().wait().await.unwrap()
}

/// Options that ask for `profile` beyond the session's, with
/// `justification`.
fn requesting(profile: PermissionProfile, justification: Option<&str>) -> RunOptions {
    RunOptions {
        request_permissions: Some(AdditionalPermissions {
            profile,
            justification: justification.map(str::to_owned),
            write_grants_through_links: Vec::new(),
        }),
        ..RunOptions::default()
    }
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// (program, decision, decided_by, rule id, note) of one decision.
pub(super) type Decided = (String, String, DecidedBy, Option<String>, Option<String>);

/// Every decision, in order.
pub(super) fn provenances(recorder: &Recorder) -> Vec<Decided> {
    recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::Decided {
                request,
                decision,
                provenance,
            } => Some((
                request.executable.canonical_path.display().to_string(),
                match decision {
                    Decision::Run => "run".to_owned(),
                    Decision::Escalate(execution) => format!("escalate {execution:?}"),
                    Decision::Deny { .. } => "deny".to_owned(),
                    other => format!("{other:?}"),
                },
                provenance.decided_by,
                provenance.rule.map(|rule| rule.id),
                provenance.note,
            )),
            _ => None,
        })
        .collect()
}

/// From a probe: a denial named the program as the shell found it
/// (`/usr/bin/awk`), and the rule it quoted was on another name (`mawk`):
/// the name the rule matched is said too.
#[tokio::test(flavor = "multi_thread")]
async fn a_denial_names_the_program_the_rule_matched() {
    let place = Place::new();
    let canonical = fs::canonicalize("/usr/bin/awk").unwrap();
    assert_ne!(canonical, Path::new("/usr/bin/awk"), "awk is a link here");
    let name = canonical.file_name().unwrap().to_str().unwrap();
    let rules = place.rules(&format!(
        "prefix_rule(pattern = [\"{name}\"], decision = \"forbidden\", justification = \"no awk\")\n"
    ));
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(&session, "/usr/bin/awk 1 </dev/null; print status=$?").await;
    assert_eq!(text(&outcome.stdout), "status=126\n");
    let stderr = text(&outcome.stderr);
    assert!(
        stderr.contains(&format!(
            "denied: /usr/bin/awk: forbidden by {}:1 (as {}): no awk",
            place.root.join("test.rules").display(),
            canonical.display()
        )),
        "{stderr}"
    );
}

/// Probe 142: `forbidden` on `awk` (or `python3`) never matched, the
/// program being `mawk` (`python3.11`) by its canonical path. The name the
/// shell found it by forbids it too, by path as by `PATH`; the canonical
/// name's allow does not loosen it.
#[tokio::test(flavor = "multi_thread")]
async fn a_forbidden_rule_on_the_name_found_holds_for_the_program_it_links_to() {
    let place = Place::new();
    let canonical = fs::canonicalize("/usr/bin/awk").unwrap();
    assert_ne!(canonical, Path::new("/usr/bin/awk"), "awk is a link here");
    let name = canonical.file_name().unwrap().to_str().unwrap();
    let rules = place.rules(&format!(
        "prefix_rule(pattern = [\"awk\"], decision = \"forbidden\", justification = \"no awk\")\n\
         prefix_rule(pattern = [\"{name}\"], decision = \"allow\", execution = \"turn-default\")\n"
    ));
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        &format!(
            "awk 'BEGIN {{ print 1 }}'; print status=$?; /usr/bin/awk 'BEGIN {{ print 2 }}'; \
             print status=$?; {} 'BEGIN {{ print 3 }}'; print status=$?",
            canonical.display()
        ),
    )
    .await;
    assert_eq!(
        text(&outcome.stdout),
        "status=126\nstatus=126\n3\nstatus=0\n",
        "{}",
        text(&outcome.stderr)
    );
    // The rule matched the name found: the canonical name is not said.
    let stderr = text(&outcome.stderr);
    assert!(
        stderr.contains(&format!(
            "denied: /usr/bin/awk: forbidden by {}:1: no awk\n",
            place.root.join("test.rules").display()
        )),
        "{stderr}"
    );
}

/// Probe 238: a `forbidden` rule on a link's path was passed over when the
/// path the shell found climbed to it through `..` (`/usr/lib/../bin/awk`,
/// or `../bin/awk` from `/usr/lib`, or a `PATH` entry written so).
#[tokio::test(flavor = "multi_thread")]
async fn a_forbidden_rule_on_a_link_holds_when_the_path_found_climbs_to_it() {
    let place = Place::new();
    let canonical = fs::canonicalize("/usr/bin/awk").unwrap();
    assert_ne!(canonical, Path::new("/usr/bin/awk"), "awk is a link here");
    let rules = place.rules(
        "prefix_rule(pattern = [\"/usr/bin/awk\"], decision = \"forbidden\", justification = \"no awk\")\n\
         prefix_rule(pattern = [\"/usr/lib/../bin/env\"], decision = \"forbidden\")\n",
    );
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        "/usr/lib/../bin/awk 'BEGIN { print 1 }'; print status=$?; \
         (cd /usr/lib && ../bin/awk 'BEGIN { print 2 }'); print status=$?; \
         (PATH=/usr/lib/../bin; awk 'BEGIN { print 3 }'); print status=$?; \
         /usr/lib/../bin/env echo 4; print status=$?",
    )
    .await;
    // A rule written on the climbing path holds as written (review 243).
    assert_eq!(
        text(&outcome.stdout),
        "status=126\nstatus=126\nstatus=126\nstatus=126\n",
        "{}",
        text(&outcome.stderr)
    );
    let stderr = text(&outcome.stderr);
    assert!(
        stderr.contains("denied: /usr/lib/../bin/awk: forbidden by ")
            && stderr.contains("test.rules:1: no awk"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_commands_leave_the_sandbox_forbidden_ones_do_not_run() {
    let place = Place::new();
    let rules = place.rules(
        r#"
prefix_rule(pattern = ["touch"], decision = "allow", justification = "touch anything")
prefix_rule(pattern = ["rm"], decision = "forbidden", justification = "nothing gets deleted")
"#,
    );
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    fs::write(place.outside.join("keep"), "").unwrap();
    let outcome = run(
        &session,
        &place.script(
            "touch {outside}/allowed; print touch=$?; mkdir {outside}/dir; print mkdir=$?; \
             rm -f {outside}/keep; print rm=$?",
        ),
    )
    .await;
    assert_eq!(
        text(&outcome.stdout),
        "touch=0\nmkdir=1\nrm=126\n",
        "{}",
        text(&outcome.stderr)
    );
    assert!(place.outside.join("allowed").exists());
    assert!(!place.outside.join("dir").exists());
    assert!(place.outside.join("keep").exists());
    let stderr = text(&outcome.stderr);
    assert!(
        stderr.contains("forbidden by ") && stderr.contains("test.rules:3: nothing gets deleted"),
        "{stderr}"
    );
    let rules_file = place.root.join("test.rules").display().to_string();
    assert_eq!(
        provenances(&recorder),
        [
            (
                "/usr/bin/touch".into(),
                "escalate Unsandboxed".into(),
                DecidedBy::Rule,
                Some(format!("{rules_file}:2")),
                None
            ),
            (
                "/usr/bin/mkdir".into(),
                "run".into(),
                DecidedBy::Default,
                None,
                None
            ),
            (
                "/usr/bin/rm".into(),
                "deny".into(),
                DecidedBy::Rule,
                Some(format!("{rules_file}:3")),
                None
            ),
        ]
    );
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_ask_the_approver_and_its_answer_holds() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    for (answer, expected, exists) in [
        (ApprovalAnswer::ApproveOnce, "0", true),
        (ApprovalAnswer::Decline, "126", false),
    ] {
        let recorder = Recorder::default();
        let approver = Scripted::new(answer.clone());
        let session = Setup::rules(rules.clone())
            .approver(approver.clone())
            .start(&place, &recorder);
        let target = place.outside.join(format!("{answer:?}"));
        let outcome = run(&session, &format!("touch {}; print $?", target.display())).await;
        assert_eq!(
            text(&outcome.stdout),
            format!("{expected}\n"),
            "{}",
            text(&outcome.stderr)
        );
        assert_eq!(target.exists(), exists, "{answer:?}");
        let asked = approver.asked();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].program, Path::new("/usr/bin/touch"));
        assert!(matches!(asked[0].reason, ApprovalReason::Rule(_)));
        let decided = provenances(&recorder);
        assert_eq!(decided[0].2, DecidedBy::User);
        session.shutdown().await;
    }
}

/// `script` (`{ws}` and `{outside}` replaced) run where `touch` asks and
/// a person answers "for the session": how each `touch` was decided, and
/// the directory each question named.
async fn touches_approved_for_session(
    place: &Place,
    script: &str,
) -> (Vec<DecidedBy>, Vec<PathBuf>) {
    let (by, asked, _) = touches_approved_for_session_noted(place, script).await;
    (by, asked)
}

/// [`touches_approved_for_session`], with each decision's note.
async fn touches_approved_for_session_noted(
    place: &Place,
    script: &str,
) -> (Vec<DecidedBy>, Vec<PathBuf>, Vec<Option<String>>) {
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let recorder = Recorder::default();
    let approver = Scripted::new(ApprovalAnswer::ApproveForSession);
    let session = Setup::rules(rules)
        .approver(approver.clone())
        .start(place, &recorder);
    let outcome = run(&session, &place.script(script)).await;
    assert_eq!(outcome.status.code(), 0, "{}", text(&outcome.stderr));
    session.shutdown().await;
    let touches: Vec<_> = provenances(&recorder)
        .into_iter()
        .filter(|decided| decided.0.ends_with("/touch"))
        .collect();
    let by = touches.iter().map(|decided| decided.2).collect();
    let notes = touches.into_iter().map(|decided| decided.4).collect();
    let asked = approver
        .asked()
        .into_iter()
        .map(|asked| asked.cwd)
        .collect();
    (by, asked, notes)
}

#[tokio::test(flavor = "multi_thread")]
async fn session_approvals_cover_exactly_what_was_approved() {
    let place = Place::new();
    let (by, asked, notes) = touches_approved_for_session_noted(
        &place,
        "touch {outside}/a; touch {outside}/a; touch {outside}/b",
    )
    .await;
    // `touch a` asked once, then came from the cache; `touch b` asked anew.
    assert_eq!(asked.len(), 2);
    assert_eq!(
        by,
        [DecidedBy::User, DecidedBy::SessionCache, DecidedBy::User]
    );
    // Probe 184: an answer for the session read as one for once.
    let standing = Some("approved for the rest of the session".to_owned());
    assert_eq!(notes[0], standing, "{notes:?}");
    assert_eq!(notes[2], standing, "{notes:?}");
}

/// An approval for the session covers the directory it was given in, not
/// its name: a directory made later under the same name (a probe swapped
/// one for a link) is asked about anew, and the question names the
/// directory by its canonical path, not by the link the shell went through.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_approval_covers_the_directory_not_its_name() {
    let place = Place::new();
    let (by, asked) = touches_approved_for_session(
        &place,
        "mkdir {ws}/d && cd {ws}/d && touch {outside}/a && touch {outside}/a && cd {ws} && \
         mv d d.old && mkdir d && cd d && touch {outside}/a && \
         ln -s {ws}/d {ws}/link && cd {ws}/link && touch {outside}/a",
    )
    .await;
    assert_eq!(
        by,
        [
            DecidedBy::User,
            DecidedBy::SessionCache,
            DecidedBy::User,
            DecidedBy::SessionCache
        ]
    );
    assert_eq!(asked, [place.ws.join("d"), place.ws.join("d")]);
}

/// A probe found: an MCP call cancelled while its approval was asked
/// killed the command, but the question stayed, and a late "for the
/// session" answer was recorded as a decision and cached, so the next
/// identical command escalated without asking. The server now stops
/// deciding when the requester hangs up: the approver's future is dropped,
/// the request is recorded as refused, and nothing is cached.
#[tokio::test(flavor = "multi_thread")]
async fn a_question_whose_requester_went_away_is_withdrawn_and_caches_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    struct Withdrawn(Arc<AtomicBool>);
    impl Drop for Withdrawn {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let (asked, withdrawn) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let approver = {
        let (asked, withdrawn) = (asked.clone(), withdrawn.clone());
        move |_request: ApprovalRequest| {
            let first = asked.fetch_add(1, Ordering::SeqCst) == 0;
            let guard = Withdrawn(withdrawn.clone());
            async move {
                let _guard = guard;
                if first {
                    // A person who answers "for the session", too late.
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    return ApprovalAnswer::ApproveForSession;
                }
                ApprovalAnswer::Decline
            }
        }
    };
    let recorder = Recorder::default();
    let session = Setup::rules(rules)
        .approver(approver)
        .start(&place, &recorder);
    let script = place.script("touch {outside}/a");
    let cancel = tokio_util::sync::CancellationToken::new();
    let options = RunOptions {
        cancel: cancel.clone(),
        ..RunOptions::default()
    };
    let handle = session.run(&script, options).unwrap();
    while asked.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let outcome = handle.wait().await.unwrap();
    assert!(outcome.cancelled);
    // The server sees the hang-up at once, not after the answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        withdrawn.load(Ordering::SeqCst),
        "the question was not withdrawn"
    );
    let refusals = recorder.refusals();
    assert_eq!(
        refusals,
        ["the requester went away before the decision"],
        "{:?}",
        recorder.events()
    );
    // Probe 159: recorded with the rule that asked and the question's wait.
    let questions: Vec<_> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::RequestRefused {
                asked: Some(asked), ..
            } => asked.question.clone(),
            _ => None,
        })
        .collect();
    match questions.as_slice() {
        [(Some(rule), waited)] => {
            assert!(rule.id.ends_with(":1"), "{rule:?}");
            assert!(*waited < Duration::from_secs(3), "{waited:?}");
        }
        other => panic!("the withdrawn question is not recorded: {other:?}"),
    }
    assert!(
        provenances(&recorder).is_empty(),
        "{:?}",
        provenances(&recorder)
    );
    // Asked again, not taken from a cache.
    let outcome = run(&session, &script).await;
    assert_eq!(outcome.status.code(), 126, "{}", text(&outcome.stderr));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert!(!place.outside.join("a").exists());
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_requests_pending_together_share_one_prompt() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let recorder = Recorder::default();
    let mut approver = Scripted::new(ApprovalAnswer::ApproveOnce);
    approver.delay = Duration::from_millis(1500);
    let session = Setup::rules(rules)
        .approver(approver.clone())
        .start(&place, &recorder);
    let script = place.script(
        "touch {outside}/same & touch {outside}/same & touch {outside}/same & wait; print done",
    );
    let outcome = run(&session, &script).await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    assert_eq!(approver.asked().len(), 1);
    assert_eq!(recorder.decided().len(), 3);
    assert!(place.outside.join("same").exists());
    // Probe 128: the records read as three answers of a person. The two
    // that took the one asked say so.
    let notes: Vec<Option<String>> = provenances(&recorder)
        .into_iter()
        .map(|decided| decided.4)
        .collect();
    let shared = notes
        .iter()
        .filter(|note| {
            note.as_deref() == Some("the answer to an identical request asked at the same time")
        })
        .count();
    assert_eq!(shared, 2, "{notes:?}");
    session.shutdown().await;
}

/// Probe 234: every request that took an identical one's answer was
/// recorded as waiting as long as the one asked, though it joined the
/// question later. Each waited from its own request.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_joins_a_question_waits_from_its_own_request() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let recorder = Recorder::default();
    let mut approver = Scripted::new(ApprovalAnswer::ApproveOnce);
    approver.delay = Duration::from_millis(2500);
    let session = Setup::rules(rules)
        .approver(approver.clone())
        .start(&place, &recorder);
    let script =
        place.script("touch {outside}/same & sleep 1; touch {outside}/same & wait; print done");
    let outcome = run(&session, &script).await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    assert_eq!(approver.asked().len(), 1);
    let waits: Vec<(bool, Duration)> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::Decided { provenance, .. } => Some((
                provenance
                    .note
                    .is_some_and(|note| note.contains("identical request")),
                provenance.approval_wait?,
            )),
            _ => None,
        })
        .collect();
    let ([(false, asked), (true, joined)] | [(true, joined), (false, asked)]) = waits[..] else {
        panic!("one asked, one joined: {waits:?}");
    };
    assert!(joined < asked, "{waits:?}");
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_time_does_not_count_against_the_timeout() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let recorder = Recorder::default();
    let mut approver = Scripted::new(ApprovalAnswer::ApproveOnce);
    approver.delay = Duration::from_millis(2500);
    let session = Setup::rules(rules)
        .approver(approver.clone())
        .start(&place, &recorder);
    let options = RunOptions {
        timeout: Some(Duration::from_millis(1500)),
        ..RunOptions::default()
    };
    let script = place.script("touch {outside}/slow; print approved=$?");
    let outcome = session.run(&script, options).unwrap().wait().await.unwrap();
    assert!(!outcome.timed_out, "{}", text(&outcome.stderr));
    assert_eq!(text(&outcome.stdout), "approved=0\n");
    // The timeout still applies to the command's own time.
    let options = RunOptions {
        timeout: Some(Duration::from_millis(500)),
        ..RunOptions::default()
    };
    let outcome = session
        .run("sleep 5", options)
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(outcome.timed_out);
    session.shutdown().await;
}

/// Probe 153: one command's question stopped every command's timeout in
/// the session (the approval clock was the session's): a command that asks
/// nothing times out on time while another's question waits.
#[tokio::test(flavor = "multi_thread")]
async fn another_commands_question_does_not_hold_a_timeout() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let recorder = Recorder::default();
    let mut approver = Scripted::new(ApprovalAnswer::ApproveOnce);
    approver.delay = Duration::from_secs(20);
    let session = Setup::rules(rules)
        .approver(approver.clone())
        .start(&place, &recorder);
    let asking = session
        .run(&place.script("touch {outside}/slow"), RunOptions::default())
        .unwrap();
    // Its question is asked before the other command starts.
    let until = Instant::now() + Duration::from_secs(10);
    while approver.asked().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(approver.asked().len(), 1);
    let options = RunOptions {
        timeout: Some(Duration::from_millis(500)),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let outcome = session
        .run("sleep 30", options)
        .unwrap()
        .wait()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(outcome.timed_out);
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(asking);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executable_the_sandbox_can_write_is_not_escalated() {
    let place = Place::new();
    let copy = place.ws.join("touch");
    fs::copy("/usr/bin/touch", &copy).unwrap();
    let script_file = place.ws.join("helper.sh");
    fs::write(&script_file, "#!/bin/sh\ntouch \"$1\"\n").unwrap();
    fs::set_permissions(
        &script_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rules = place.rules(&format!(
        "prefix_rule(pattern = [\"{}\"])\nprefix_rule(pattern = [\"{}\"])\n",
        copy.display(),
        script_file.display()
    ));
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script("./touch {outside}/copied; print copy=$?; ./helper.sh {outside}/script; print script=$?"),
    )
    .await;
    assert_eq!(
        text(&outcome.stdout),
        "copy=1\nscript=1\n",
        "{}",
        text(&outcome.stderr)
    );
    assert!(!place.outside.join("copied").exists());
    let refused: Vec<String> = provenances(&recorder)
        .into_iter()
        .filter_map(|p| p.4)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|note| note.contains("writable from the sandbox")),
        "{refused:?}"
    );
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn argv0_cannot_name_the_program_a_rule_allows() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"])"#);
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script(
            "exec -a touch mkdir {outside}/a 2>/dev/null & wait; \
             ARGV0=touch mkdir {outside}/b 2>/dev/null; \
             hash touch=/usr/bin/mkdir; touch {outside}/c 2>/dev/null; unhash touch; \
             touch {outside}/real; print done",
        ),
    )
    .await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    for spoofed in ["a", "b", "c"] {
        assert!(!place.outside.join(spoofed).exists(), "{spoofed} escaped");
    }
    // The allowed program itself does leave the sandbox: the test can fail.
    assert!(place.outside.join("real").exists());
    let programs: Vec<(String, String)> = provenances(&recorder)
        .into_iter()
        .map(|p| (p.0, p.1))
        .collect();
    assert_eq!(
        programs,
        [
            ("/usr/bin/mkdir".into(), "run".into()),
            ("/usr/bin/mkdir".into(), "run".into()),
            ("/usr/bin/mkdir".into(), "run".into()),
            ("/usr/bin/touch".into(), "escalate Unsandboxed".into()),
        ]
    );
    session.shutdown().await;
}

fn skill(place: &Place, name: &str, permissions: Option<&str>) -> PathBuf {
    skill_in(&place.root.join("skills"), name, permissions)
}

/// A skill `name` in `skills`, whose `scripts/write.sh` touches its
/// arguments.
fn skill_in(skills: &Path, name: &str, permissions: Option<&str>) -> PathBuf {
    let dir = skills.join(name);
    fs::create_dir_all(dir.join("scripts")).unwrap();
    fs::write(dir.join("SKILL.md"), format!("---\nname: {name}\n---\n")).unwrap();
    if let Some(permissions) = permissions {
        fs::write(dir.join("permissions.toml"), permissions).unwrap();
    }
    let script = dir.join("scripts/write.sh");
    fs::write(&script, "#!/bin/sh\ntouch \"$@\"\n").unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread")]
async fn skill_scripts_run_sandboxed_with_exactly_their_declared_grants() {
    let place = Place::new();
    let granted = place.outside.join("granted");
    fs::create_dir(&granted).unwrap();
    let plain = skill(&place, "plain", None);
    let writer = skill(
        &place,
        "writer",
        Some("filesystem = { \"../../outside/granted\" = \"write\" }\n"),
    );
    // A rule that would let anything out must not apply to skill scripts.
    let rules = place.rules("prefix_rule(pattern = [\"/bin/sh\"])\n");
    let nothing = AdditionalPermissions::from_toml("", None).unwrap().profile;
    for (answer, expected) in [
        (
            ApprovalAnswer::ApproveForSession,
            "plain=1 granted=0 again=0 other=1\n",
        ),
        (
            ApprovalAnswer::Decline,
            "plain=1 granted=126 again=126 other=126\n",
        ),
        // Part of the grants (here: none of them) is all the script gets.
        (
            ApprovalAnswer::ApprovePartly(nothing),
            "plain=1 granted=1 again=1 other=1\n",
        ),
    ] {
        let recorder = Recorder::default();
        let approver = Scripted::new(answer.clone());
        let mut setup = Setup::rules(rules.clone()).approver(approver.clone());
        setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
        let session = setup.start(&place, &recorder);
        let _ = fs::remove_file(granted.join("ok"));
        let script = format!(
            "{plain} {outside}/plain; p=$?; {writer} {granted}/ok; g=$?; {writer} {granted}/ok; a=$?; \
             {writer} {outside}/other; print plain=$p granted=$g again=$a other=$?",
            plain = plain.display(),
            writer = writer.display(),
            outside = place.outside.display(),
            granted = granted.display(),
        );
        let outcome = run(&session, &script).await;
        assert_eq!(
            text(&outcome.stdout),
            expected,
            "{answer:?}: {}",
            text(&outcome.stderr)
        );
        assert!(!place.outside.join("plain").exists());
        assert!(!place.outside.join("other").exists());
        let asked = approver.asked();
        match answer {
            // Asked once for the script; the rest came from the cache.
            ApprovalAnswer::ApproveForSession => {
                assert_eq!(asked.len(), 1);
                assert!(granted.join("ok").exists());
            }
            _ => assert_eq!(asked.len(), 3),
        }
        assert!(matches!(&asked[0].reason, ApprovalReason::Skill { name, .. } if name == "writer"));
        assert!(asked[0].permissions.is_some());
        let decided = provenances(&recorder);
        let by: Vec<&DecidedBy> = decided.iter().map(|p| &p.2).collect();
        assert_eq!(*by[0], DecidedBy::Skill, "{by:?}");
        // Every decision on a skill's script names the skill, whoever
        // answered (regression: with grants, none did).
        let notes: Vec<Option<&str>> = decided.iter().map(|p| p.4.as_deref()).collect();
        assert_eq!(notes[0], Some("script of skill plain"), "{notes:?}");
        for note in &notes[1..4] {
            assert!(
                note.is_some_and(|note| note.starts_with("script of skill writer")),
                "{notes:?}"
            );
        }
        session.shutdown().await;
    }
}

/// Probe 137: a skill without permissions was escalated to a sandbox of
/// the session's kind, where its script ran as `/dev/fd/N`: `$0` named no
/// directory, and `. "$(dirname "$0")/lib.sh"` failed. It runs in place,
/// as its author ran it, decided by the skill.
#[tokio::test(flavor = "multi_thread")]
async fn a_skill_without_permissions_runs_in_place_under_its_own_name() {
    let place = Place::new();
    let script = skill(&place, "plain", None);
    let scripts = script.parent().unwrap();
    fs::write(scripts.join("lib.sh"), "echo lib-loaded\n").unwrap();
    fs::write(
        &script,
        "#!/bin/sh\necho \"0=$0\"\n. \"$(dirname \"$0\")/lib.sh\"\n",
    )
    .unwrap();
    let recorder = Recorder::default();
    let mut setup = Setup::rules(place.rules(""));
    setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
    let session = setup.start(&place, &recorder);
    let outcome = run(&session, &script.display().to_string()).await;
    assert_eq!(
        text(&outcome.stdout),
        format!("0={}\nlib-loaded\n", script.display()),
        "{}",
        text(&outcome.stderr)
    );
    let decided = provenances(&recorder);
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0].2, DecidedBy::Skill, "{decided:?}");
    assert_eq!(decided[0].1, "run", "{decided:?}");
    session.shutdown().await;
}

/// A session with no rules and one skill, `writer`, whose script may write
/// `outside/granted` once `approver` agrees: the session, the script and
/// that directory.
fn writer_skill_session(place: &Place, approver: &Scripted) -> (ShellSession, PathBuf, PathBuf) {
    let granted = place.outside.join("granted");
    fs::create_dir(&granted).unwrap();
    let writer = skill(
        place,
        "writer",
        Some("filesystem = { \"../../outside/granted\" = \"write\" }\n"),
    );
    let mut setup = Setup::rules(Arc::new(RuleSet::default())).approver(approver.clone());
    setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
    (setup.start(place, &Recorder::default()), writer, granted)
}

/// From a probe: a skill's question about a harmless run, from a
/// directory the server could not hold, answered "once", let another run
/// of the script, with other arguments nobody saw, run with the grants
/// (the two waited for one answer). Each run is asked about as it is, and
/// one that cannot start is asked about not at all.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_once_approves_only_the_run_the_person_saw() {
    let place = Place::new();
    let mut approver = Scripted::new(ApprovalAnswer::ApproveOnce);
    approver.delay = Duration::from_millis(800);
    let (session, writer, granted) = writer_skill_session(&place, &approver);
    let script = format!(
        "(cd /run && {writer} {granted}/shown) & sleep 0.3; {writer} {granted}/unseen & wait; print done",
        writer = writer.display(),
        granted = granted.display(),
    );
    let outcome = run(&session, &script).await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    let asked: Vec<String> = approver
        .asked()
        .iter()
        .map(|request| format!("{:?} in {}", request.argv, request.cwd.display()))
        .collect();
    for name in ["shown", "unseen"] {
        let made = granted.join(name);
        if made.exists() {
            assert!(
                asked
                    .iter()
                    .any(|question| question.contains(made.to_str().unwrap())),
                "{name} ran with the grants unseen: {asked:?}"
            );
        }
    }
    assert!(
        !asked.iter().any(|question| question.ends_with(" in /run")),
        "asked about a run that could not start: {asked:?}"
    );
    assert!(
        granted.join("unseen").exists(),
        "{asked:?}: {}",
        text(&outcome.stderr)
    );
    session.shutdown().await;
}

/// From a probe: two runs of a skill's script at once, approved, both
/// refused to start ("a sandbox with grants started after this was
/// decided"): each counted the other's sandbox, though neither could
/// write anything the policy had not counted as writable before it
/// decided. Both run.
#[tokio::test(flavor = "multi_thread")]
async fn runs_of_a_granted_skill_at_once_both_start() {
    let place = Place::new();
    let approver = Scripted::new(ApprovalAnswer::ApproveOnce);
    let (session, writer, granted) = writer_skill_session(&place, &approver);
    let script = format!(
        "{writer} {granted}/a & {writer} {granted}/b & {writer} {granted}/c & wait; print done",
        writer = writer.display(),
        granted = granted.display(),
    );
    let outcome = run(&session, &script).await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    for name in ["a", "b", "c"] {
        assert!(
            granted.join(name).exists(),
            "{name}: {}",
            text(&outcome.stderr)
        );
    }
    session.shutdown().await;
}

/// From a probe of `execgate mcp`: a client whose prompt failed left a
/// record saying no person was asked, beside a reason saying nobody
/// answered. The record says the question was for a person.
#[tokio::test(flavor = "multi_thread")]
async fn a_question_nobody_answered_is_recorded_as_asked() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let approver = Scripted::new(ApprovalAnswer::Unanswered {
        reason: "the client's elicitation request failed".into(),
    });
    let recorder = Recorder::default();
    let session = Setup::rules(rules)
        .approver(approver.clone())
        .start(&place, &recorder);
    let outcome = run(&session, &place.script("touch {outside}/x; print $?")).await;
    assert_eq!(text(&outcome.stdout), "126\n", "{}", text(&outcome.stderr));
    assert_eq!(approver.asked().len(), 1);
    let decided = provenances(&recorder);
    let touch = decided
        .iter()
        .find(|decided| decided.0.ends_with("/touch"))
        .unwrap();
    assert_eq!(
        touch.4.as_deref(),
        Some("the question was for a person, and no answer came"),
        "{decided:?}"
    );
    session.shutdown().await;
}

/// A probe (109): one `ExecPolicy` in two sessions (a cloned
/// `ShellSessionConfig`) shared what is one session's: what the first
/// session's grants may write was counted against its directory alone, and
/// the second's escalated `make` ran a makefile its sandbox had written
/// through a grant; an approval "for the session" outlived the session it
/// was given in. A policy serves one session: the second start is refused,
/// with what to do.
#[tokio::test(flavor = "multi_thread")]
async fn an_exec_policy_serves_one_session() {
    let place = Place::new();
    let policy = ExecPolicy::new(ExecPolicyConfig {
        rules: place.rules(""),
        skills: SkillRegistry::default(),
        profiles: Arc::new(ProfileSet::default()),
        approver: Arc::new(DenyAll),
    })
    .unwrap();
    let tools = Tools {
        zsh: zsh(),
        wrapper: wrapper(),
        sandbox_helper: sandbox_helper(),
    };
    let config = ShellSessionConfig::with_exec_policy(&place.ws, tools.clone(), policy.clone());
    // A start that fails after the claim leaves the policy free.
    let mut without_zsh = config.clone();
    without_zsh.tools.zsh = place.ws.join("no-zsh");
    assert!(matches!(
        ShellSession::start(without_zsh),
        Err(BridgeError::NoZsh(_))
    ));
    let first = ShellSession::start(config.clone()).unwrap();
    // Put in another session as its policy by hand (a review's way round
    // the claim), it decides nothing there once its own session asked.
    let outcome = run(&first, "/usr/bin/true; print $?").await;
    assert_eq!(text(&outcome.stdout), "0\n", "{}", text(&outcome.stderr));
    let by_hand =
        ShellSession::start(ShellSessionConfig::new(&place.ws, tools, Arc::new(policy))).unwrap();
    let outcome = run(&by_hand, "/usr/bin/true; print $?").await;
    assert_eq!(text(&outcome.stdout), "126\n", "{}", text(&outcome.stderr));
    assert!(
        text(&outcome.stderr).contains("build one ExecPolicy per session"),
        "{}",
        text(&outcome.stderr)
    );
    by_hand.shutdown().await;
    let Err(error) = ShellSession::start(config.clone()) else {
        panic!("a second session started with the first one's policy");
    };
    assert!(
        error.to_string().contains("build one per session"),
        "{error}"
    );
    first.shutdown().await;
    let Err(error) = ShellSession::start(config) else {
        panic!("a session started with an ended one's policy");
    };
    assert!(matches!(error, BridgeError::PolicyInUse), "{error}");
}

/// An approver that panics (an embedder's bug).
struct Panicking;

impl Approver for Panicking {
    fn approve<'a>(
        &'a self,
        _: &'a execgate_core_bridge::ApprovalRequest,
    ) -> execgate_core_bridge::ApprovalFuture<'a> {
        Box::pin(async {
            if std::hint::black_box(true) {
                panic!("an approver's bug");
            }
            ApprovalAnswer::ApproveOnce
        })
    }
}

/// A probe (109): an approver that panicked took its request's handling
/// with it: the command failed closed, and the audit log had no record of
/// the request at all. The question is now unanswered, and recorded so.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_approver_declines_on_the_record() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let recorder = Recorder::default();
    let session = Setup::rules(rules)
        .approver(Panicking)
        .start(&place, &recorder);
    let outcome = run(&session, &place.script("touch {outside}/x; print $?")).await;
    let stderr = text(&outcome.stderr);
    assert_eq!(text(&outcome.stdout), "126\n", "{stderr}");
    assert!(stderr.contains("the approver failed"), "{stderr}");
    let denied = recorder.events().into_iter().find_map(|event| match event {
        SessionEvent::Decided {
            request,
            decision: Decision::Deny { reason },
            ..
        } if request.executable.canonical_path.ends_with("touch") => Some(reason),
        _ => None,
    });
    assert!(
        denied
            .as_deref()
            .is_some_and(|reason| reason.contains("the approver failed")),
        "{denied:?}"
    );
    assert!(!place.outside.join("x").exists());
    session.shutdown().await;
}

/// A skill the sandbox can write is refused its grants: its script runs
/// in place, and the record says whose script it was and why (regression:
/// the refusal's record did not name the skill).
#[tokio::test(flavor = "multi_thread")]
async fn a_skill_the_sandbox_can_write_runs_in_place_and_says_so() {
    let place = Place::new();
    let script = skill_in(
        &place.ws.join("skills"),
        "planted",
        Some("filesystem = { \"../../../outside\" = \"write\" }\n"),
    );
    let recorder = Recorder::default();
    let mut setup =
        Setup::rules(place.rules("")).approver(Scripted::new(ApprovalAnswer::ApproveOnce));
    setup.skills = SkillRegistry::load(&[place.ws.join("skills")]).unwrap();
    let session = setup.start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script(&format!(
            "{} {{outside}}/x 2>/dev/null; print done",
            script.display()
        )),
    )
    .await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    assert!(!place.outside.join("x").exists());
    let decided = provenances(&recorder);
    assert_eq!(decided[0].1, "run", "{decided:?}");
    let note = decided[0].4.as_deref().unwrap_or_default();
    assert!(
        note.starts_with("script of skill planted; escalation refused:"),
        "{note}"
    );
    session.shutdown().await;
}

/// From a probe: a skill's question answered by no person (`--approval
/// approve` or `deny`) was recorded as decided by `default`, the session's
/// policy without rules; it is the skill's.
#[tokio::test(flavor = "multi_thread")]
async fn a_skills_question_answered_by_no_person_is_recorded_as_the_skills() {
    let place = Place::new();
    let script = skill(
        &place,
        "unasked",
        Some("filesystem = { \"../../outside\" = \"write\" }\n"),
    );
    for approver in [
        Arc::new(execgate_core_bridge::ApproveAll) as Arc<dyn Approver>,
        Arc::new(DenyAll),
    ] {
        let recorder = Recorder::default();
        let mut setup = Setup::rules(place.rules(""));
        setup.approver = approver;
        setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
        let session = setup.start(&place, &recorder);
        let outcome = run(
            &session,
            &format!("{} {}/x", script.display(), place.ws.display()),
        )
        .await;
        session.shutdown().await;
        let decided = provenances(&recorder);
        assert_eq!(decided.len(), 1, "{decided:?}: {}", text(&outcome.stderr));
        assert_eq!(decided[0].2, DecidedBy::Skill, "{decided:?}");
    }
}

/// Probe 128: a `forbidden` rule on a skill's script (with arguments it
/// must not get) was passed over: a skill's script was decided as the
/// skill's before any rule was read, and ran with its grants once
/// approved. A `forbidden` rule holds for it as for any program; other
/// rules still do not (the skill's question decides).
#[tokio::test(flavor = "multi_thread")]
async fn a_forbidden_rule_holds_for_a_skills_script() {
    let place = Place::new();
    let script = skill(
        &place,
        "guarded",
        Some("filesystem = { \"../../outside\" = \"write\" }\n"),
    );
    let rules = place.rules(&format!(
        "prefix_rule(pattern = [\"{}\", \"--delete\"], decision = \"forbidden\")\n",
        script.display()
    ));
    let recorder = Recorder::default();
    let mut setup = Setup::rules(rules);
    setup.approver = Arc::new(execgate_core_bridge::ApproveAll);
    setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
    let session = setup.start(&place, &recorder);
    let outcome = run(
        &session,
        &format!(
            "{script} --delete {outside}/deleted; print forbidden=$?; \
             {script} {outside}/kept; print allowed=$?",
            script = script.display(),
            outside = place.outside.display()
        ),
    )
    .await;
    session.shutdown().await;
    assert_eq!(
        text(&outcome.stdout),
        "forbidden=126\nallowed=0\n",
        "{}",
        text(&outcome.stderr)
    );
    assert!(!place.outside.join("deleted").exists());
    assert!(place.outside.join("kept").exists());
    let decided = provenances(&recorder);
    assert_eq!(decided[0].2, DecidedBy::Rule, "{decided:?}");
    assert_eq!(decided[1].2, DecidedBy::Skill, "{decided:?}");
}

/// Regression (a probe of skills): a skill script with another name (a
/// hard link) in the workspace was rewritten through it from the sandbox,
/// and then ran with the skill's grants once approved. A script with
/// other names is not escalated.
#[tokio::test(flavor = "multi_thread")]
async fn a_skill_script_with_another_name_runs_in_place() {
    let place = Place::new();
    let script = skill(
        &place,
        "linked",
        Some("filesystem = { \"../../outside\" = \"write\" }\n"),
    );
    fs::hard_link(&script, place.ws.join("shared.sh")).unwrap();
    let recorder = Recorder::default();
    let mut setup =
        Setup::rules(place.rules("")).approver(Scripted::new(ApprovalAnswer::ApproveOnce));
    setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
    let session = setup.start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script(&format!(
            "print -r -- 'touch {{outside}}/rewritten' >> shared.sh; {} {{outside}}/x 2>/dev/null; \
             print done",
            script.display()
        )),
    )
    .await;
    session.shutdown().await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    assert!(!place.outside.join("rewritten").exists());
    assert!(!place.outside.join("x").exists());
    let decided = provenances(&recorder);
    let note = decided
        .iter()
        .find(|decided| decided.0.ends_with("write.sh"))
        .and_then(|decided| decided.4.clone())
        .unwrap_or_default();
    assert!(note.contains("hard links"), "{decided:?}");
}

/// Regression: what an approved skill may write was not counted as
/// writable from the sandbox, as requested permissions are. The sandbox
/// rewrote, through the skill, a script a rule lets out, and the script
/// then ran unsandboxed. What every skill may write counts from the
/// session's first decision on.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_granted_skill_may_write_is_never_trusted_by_an_escalation() {
    let place = Place::new();
    let granted = place.outside.join("granted");
    fs::create_dir(&granted).unwrap();
    let publish = granted.join("publish.sh");
    fs::write(
        &publish,
        "#!/bin/sh
touch \"$1\"\n",
    )
    .unwrap();
    fs::set_permissions(
        &publish,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let writer = skill(
        &place,
        "writer",
        Some("filesystem = { \"../../outside/granted\" = \"write\" }\n"),
    );
    let rules = place.rules(&format!(
        "prefix_rule(pattern = [\"{}\"])\n",
        publish.display()
    ));
    let script = place.script(&format!(
        "{publish} {{outside}}/before; {writer} {granted}/ok; {publish} {{outside}}/after \
         2>/dev/null; print done",
        publish = publish.display(),
        writer = writer.display(),
        granted = granted.display(),
    ));
    // Without the skill the rule lets the script out: the test can fail.
    let recorder = Recorder::default();
    let session = Setup::rules(rules.clone()).start(&place, &recorder);
    let outcome = run(&session, &script).await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    session.shutdown().await;
    assert!(place.outside.join("before").exists());
    assert!(place.outside.join("after").exists());
    for made in ["before", "after"] {
        fs::remove_file(place.outside.join(made)).unwrap();
    }
    // With it, never: not after the skill wrote there, nor before (a
    // decision made before a grant is used may still be carried out
    // after it).
    let recorder = Recorder::default();
    let mut setup = Setup::rules(rules).approver(Scripted::new(ApprovalAnswer::ApproveForSession));
    setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
    let session = setup.start(&place, &recorder);
    let outcome = run(&session, &script).await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    assert!(granted.join("ok").exists());
    assert!(!place.outside.join("before").exists());
    assert!(!place.outside.join("after").exists());
    let decided = provenances(&recorder);
    let decisions: Vec<&str> = decided.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(decisions[0], "run", "{decisions:?}");
    assert_eq!(decisions[2], "run", "{decisions:?}");
    // Said as it is: the grant could write it, not the sandbox (a probe
    // was told a system binary was writable from the sandbox).
    let why = decided[2].4.as_deref().unwrap_or_default();
    assert!(
        why.contains("is writable under a grant this session knows of"),
        "{why}"
    );
    session.shutdown().await;
}

/// Regression: a skill's declared paths were resolved again at each
/// escalation, so the sandbox, which could write the declared directory's
/// parent, replaced the directory with a link to somewhere else, and the
/// script wrote there with the grant. A grant is pinned when the skill
/// loads; one that now leads elsewhere runs nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_granted_path_the_sandbox_points_elsewhere_grants_nothing() {
    let place = Place::new();
    let target = place.outside.join("target");
    fs::create_dir(&target).unwrap();
    fs::create_dir(place.ws.join("out")).unwrap();
    let writer = skill(
        &place,
        "writer",
        Some(&format!(
            "filesystem = {{ \"{}\" = \"write\" }}\n",
            place.ws.join("out").display()
        )),
    );
    let recorder = Recorder::default();
    let mut setup =
        Setup::rules(place.rules("")).approver(Scripted::new(ApprovalAnswer::ApproveForSession));
    setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
    let session = setup.start(&place, &recorder);
    let script = place.script(&format!(
        "{writer} {{ws}}/out/first; print first=$?; mv {{ws}}/out {{ws}}/out.real && \
         ln -s {target} {{ws}}/out && {writer} {{ws}}/out/second 2>/dev/null; print second=$?",
        writer = writer.display(),
        target = target.display(),
    ));
    let outcome = run(&session, &script).await;
    let stdout = text(&outcome.stdout);
    assert!(stdout.starts_with("first=0\nsecond="), "{stdout}");
    assert_ne!(stdout, "first=0\nsecond=0\n", "{}", text(&outcome.stderr));
    assert!(place.ws.join("out.real/first").exists());
    assert!(
        !target.join("second").exists(),
        "the grant followed the link"
    );
    session.shutdown().await;
}

/// Regression (found in review): counting a rule profile's grants as
/// writable from the sandbox took its special roots other than `:cwd` for
/// `/`, so after one escalation in a profile that extends
/// `workspace-write`, every escalation out of the sandbox was refused as
/// writable from it. A grant counts as what it resolves to, where the
/// session's sandboxes resolve it.
#[tokio::test(flavor = "multi_thread")]
async fn a_profiles_grants_count_as_what_they_are_not_the_whole_file_system() {
    let place = Place::new();
    let rules = place.rules(
        r#"
prefix_rule(pattern = ["touch"], execution = "build")
prefix_rule(pattern = ["mkdir"])
"#,
    );
    let mut setup = Setup::rules(rules);
    setup
        .profiles
        .add_toml("[profiles.build]\nextends = \"workspace-write\"\n", None)
        .unwrap();
    let recorder = Recorder::default();
    let session = setup.start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script("touch {ws}/built; mkdir {outside}/made; print done"),
    )
    .await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    assert!(place.ws.join("built").exists());
    let decisions: Vec<String> = provenances(&recorder).into_iter().map(|p| p.1).collect();
    assert!(
        place.outside.join("made").exists(),
        "the escalation after the profile's was refused: {decisions:?}"
    );
    session.shutdown().await;
}

/// Review 34b: a `prompt` rule's profile was shown to the person with its
/// own grants as written (`:cwd`, its own network), not as the command
/// gets them added to the session's sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_rules_profile_is_shown_as_the_command_gets_it() {
    let place = Place::new();
    let rules = place
        .rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt", execution = "build")"#);
    let mut setup = Setup::rules(rules);
    setup
        .profiles
        .add_toml(
            "[profiles.build]\nextends = \"read-only\"\nfilesystem = { \":cwd\" = \"write\" }\n",
            None,
        )
        .unwrap();
    let approver = Scripted::new(ApprovalAnswer::Decline);
    let recorder = Recorder::default();
    let session = setup.approver(approver.clone()).start(&place, &recorder);
    run(&session, &place.script("touch {ws}/built")).await;
    let asked = approver.asked();
    let [question] = asked.as_slice() else {
        panic!("one question: {asked:?}");
    };
    let grants = question.permissions.as_ref().unwrap().grants();
    let cwd = fs::canonicalize(&place.ws).unwrap();
    assert!(
        grants.contains(&format!("{}=write", cwd.display())),
        "{grants:?}"
    );
    assert!(
        !grants.iter().any(|grant| grant.starts_with(":cwd")),
        "{grants:?}"
    );
    session.shutdown().await;
}

/// From a review: what an unsandboxed escalation kept in its temporary
/// directory (a token, a key it unpacked) was readable from the sandbox,
/// which sees the session's directory. The directory is hidden from every
/// sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn what_an_escalation_keeps_in_its_tmpdir_the_sandbox_cannot_read() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["dash"])"#);
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        "tmp=$(dash -c 'echo secret > \"$TMPDIR/token\"; echo \"$TMPDIR\"')\n\
         print -r -- $tmp\n\
         cat $tmp/token 2>/dev/null; print read=$?",
    )
    .await;
    let stdout = text(&outcome.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let [tmpdir, read] = lines[..] else {
        panic!("{stdout}\n{}", text(&outcome.stderr));
    };
    assert!(tmpdir.contains("/execgate-zsh"), "{tmpdir}");
    assert_eq!(
        fs::read_to_string(std::path::Path::new(tmpdir).join("token")).unwrap(),
        "secret\n"
    );
    assert_eq!(read, "read=1", "the sandbox read the escalation's file");
    session.shutdown().await;
}

/// From a second re-probe: another session's escalations' temporary
/// directories (and the rest of its directory) were readable from this
/// session's sandbox, through the sessions' directory every sandbox saw.
/// A sandbox sees only its own session's directory there.
#[tokio::test(flavor = "multi_thread")]
async fn another_sessions_directory_is_not_seen() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["dash"])"#);
    let (recorder, other_recorder) = (Recorder::default(), Recorder::default());
    let other = Setup::rules(rules.clone()).start(&place, &other_recorder);
    let outcome = run(
        &other,
        "dash -c 'echo secret > \"$TMPDIR/token\"; echo \"$TMPDIR\"'",
    )
    .await;
    let theirs = text(&outcome.stdout).trim().to_owned();
    assert!(theirs.contains("/execgate-zsh"), "{theirs}");
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        &format!(
            "cat {theirs}/token 2>/dev/null; print read=$?\n\
             ls {} 2>/dev/null | wc -l",
            std::path::Path::new(&theirs)
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .display()
        ),
    )
    .await;
    assert_eq!(
        text(&outcome.stdout),
        "read=1\n0\n",
        "{}",
        text(&outcome.stderr)
    );
    session.shutdown().await;
    other.shutdown().await;
}

/// From a review: a session started from an unsandboxed escalation works
/// in the outer session's temporary directory, inside the sessions'
/// directory every sandbox sees empty: its sandboxes lost their working
/// directory. A policy's own roots there are shown again.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_working_in_another_sessions_directory_starts() {
    use std::os::unix::fs::DirBuilderExt;
    let sessions = PathBuf::from(format!("/var/tmp/execgate-{}", nix::unistd::getuid()));
    match fs::DirBuilder::new().mode(0o700).create(&sessions) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => panic!("{error}"),
    }
    let dir = tempfile::Builder::new()
        .prefix("nested-")
        .tempdir_in(&sessions)
        .unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let (ws, outside) = (root.join("ws"), root.join("outside"));
    fs::create_dir(&ws).unwrap();
    fs::create_dir(&outside).unwrap();
    let place = Place {
        _dir: dir,
        root,
        ws,
        outside,
    };
    let recorder = Recorder::default();
    let session = Setup::rules(Arc::new(RuleSet::default())).start(&place, &recorder);
    let outcome = run(&session, "pwd; echo made > x; cat x").await;
    assert_eq!(
        text(&outcome.stdout),
        format!("{}\nmade\n", place.ws.display()),
        "{}",
        text(&outcome.stderr)
    );
    session.shutdown().await;
}

/// An escalation with grants shared the sandbox's `TMPDIR`, where the
/// shell could swap what it wrote there before it ran it with its grants.
/// It gets one of its own, which it may write and the shell may not, gone
/// when it ends.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_with_grants_gets_a_temporary_directory_of_its_own() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["dash"], execution = "build")"#);
    let mut setup = Setup::rules(rules);
    setup
        .profiles
        .add_toml(
            // With the sessions' directory under a writable root, which its
            // read-only bind must not hide the escalation's directory in.
            "[profiles.build]\nextends = \"workspace-write\"\n\
             filesystem = { \"/var/tmp\" = \"write\" }\n",
            None,
        )
        .unwrap();
    let recorder = Recorder::default();
    let session = setup.start(&place, &recorder);
    let outcome = run(
        &session,
        "dash -c 'echo \"$TMPDIR\"; echo written > \"$TMPDIR/f\" && cat \"$TMPDIR/f\"'\n\
         print -r -- $TMPDIR\n\
         mkdir $(dirname $(dash -c 'echo $TMPDIR'))/planted 2>/dev/null; print shell=$?",
    )
    .await;
    let stdout = text(&outcome.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let [own, written, shells, shell_wrote] = lines[..] else {
        panic!("{stdout}\n{}", text(&outcome.stderr));
    };
    assert_eq!(written, "written", "{}", text(&outcome.stderr));
    assert_ne!(own, shells);
    assert!(
        own.contains("/execgate-zsh") && own.contains("/granted/"),
        "{own}"
    );
    assert_eq!(
        shell_wrote, "shell=1",
        "the shell wrote where grants get their TMPDIR"
    );
    // Removed off the serving thread, after the escalation's answer.
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        !std::path::Path::new(own).exists()
    });
    assert!(gone, "{own} outlived its escalation");
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requested_permissions_are_cut_to_what_the_approver_grants() {
    let place = Place::new();
    let (a, b) = (place.outside.join("a"), place.outside.join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    let requested = AdditionalPermissions::from_toml(
        &format!(
            "justification = \"needs both\"\nfilesystem = {{ \"{}\" = \"write\", \"{}\" = \"write\" }}\n",
            a.display(),
            b.display()
        ),
        None,
    )
    .unwrap();
    let only_a = AdditionalPermissions::from_toml(
        &format!(
            "filesystem = {{ \"{}\" = \"write\", \"/etc\" = \"write\" }}\n",
            a.display()
        ),
        None,
    )
    .unwrap();
    let recorder = Recorder::default();
    let approver = Scripted::new(ApprovalAnswer::ApprovePartly(only_a.profile));
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .approver(approver.clone())
        .start(&place, &recorder);
    let options = RunOptions {
        request_permissions: Some(requested),
        ..RunOptions::default()
    };
    let script = place.script(
        "touch {outside}/a/x; print a=$?; touch {outside}/b/x; print b=$?; touch /etc/execgate-x; print etc=$?",
    );
    let outcome = run_with(&session, &script, options).await;
    assert_eq!(
        text(&outcome.stdout),
        "a=0\nb=1\netc=1\n",
        "{}",
        text(&outcome.stderr)
    );
    let asked = approver.asked();
    assert_eq!(asked.len(), 1);
    assert!(matches!(
        &asked[0].reason,
        ApprovalReason::RequestedPermissions { justification: Some(why) } if why == "needs both"
    ));
    // Without a grant, the same command stays in the session's profile.
    let approver = Scripted::new(ApprovalAnswer::Decline);
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .approver(approver)
        .start(&place, &recorder);
    let options = requesting(
        PermissionProfile::preset("danger-full-access").unwrap(),
        None,
    );
    let outcome = run_with(
        &session,
        &place.script("touch {outside}/b/y; print b=$?"),
        options,
    )
    .await;
    assert_eq!(text(&outcome.stdout), "b=1\n");
}

/// The requests for grants recorded: whether each was granted, and its note.
fn permission_requests(recorder: &Recorder) -> Vec<(bool, Option<String>)> {
    recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::PermissionsRequested {
                granted,
                provenance,
                ..
            } => Some((granted, provenance.note)),
            _ => None,
        })
        .collect()
}

/// Probe 201: `Abort` at a program's question killed only the asking
/// process's group: behind `timeout` (its child in a group of its own) or
/// `setsid` the command went on, asked again, and nothing said it had
/// been stopped. The whole command stops, and its outcome says why,
/// in its sandbox or with none (CI: without a pid namespace to end them
/// together, processes killed one by one let a shell see its child end
/// and go on, or a child left by its killed parent was missed).
#[tokio::test(flavor = "multi_thread")]
async fn an_abort_at_a_question_stops_the_whole_command() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["id"], decision = "prompt")"#);
    let shapes = [
        "id -u; print -r -- after",
        "timeout 20 zsh -f -c 'id -u; print -r -- inner-after'; print -r -- after=$?",
        "setsid -w zsh -f -c 'id -u'; print -r -- after=$?",
        "zsh -f -c 'zsh -f -c \"id -u; print -r -- inner-after\"; print -r -- after=$?'; print -r -- after=$?",
        // Left by its parent: found by its process group (probe 206); it
        // asks once `timeout`'s child, which must not outlive the stop, runs
        // (review 207).
        "timeout 20 sleep 70.0625 & ( (sleep 0.5; id -u; print -r -- inner-after) & ); sleep 5; print -r -- after",
        // Left by its parent and out of its group: found by its cgroup
        // (probe 206: no command was found, and the command went on).
        "( (setsid -f zsh -f -c 'sleep 0.5; id -u; print -r -- inner-after') & ); sleep 5; print -r -- after",
    ];
    for (shape, sandboxed) in shapes
        .iter()
        .flat_map(|shape| [(shape, true), (shape, false)])
    {
        let case = format!("{shape} (sandboxed: {sandboxed})");
        let recorder = Recorder::default();
        let approver = Scripted::new(ApprovalAnswer::Abort);
        let setup = Setup::rules(rules.clone()).approver(approver.clone());
        let setup = if sandboxed {
            setup
        } else {
            setup.unsandboxed()
        };
        let session = setup.start(&place, &recorder);
        let ran_on = place.ws.join("ran-on");
        let script = format!("{shape}; touch {}; id -g", ran_on.display());
        let options = RunOptions {
            timeout: Some(Duration::from_secs(60)),
            ..RunOptions::default()
        };
        let outcome = session.run(&script, options).unwrap().wait().await.unwrap();
        // Killed by the stop, not by the session's end.
        let left = still_running_after_a_while("sleep 70.0625").await;
        session.shutdown().await;
        assert!(left.is_empty(), "{case}: {left:?} ran on");
        assert!(outcome.aborted, "{case}: {outcome:?}");
        assert!(
            !text(&outcome.stdout).contains("after"),
            "{case}: {outcome:?}"
        );
        assert!(!ran_on.exists(), "{case}: the command went on");
        assert_eq!(approver.asked().len(), 1, "{case}: asked again");
        // Recorded as the person's stop, never as the requester gone
        // (probe 219: the stop's own kill won the race, mostly).
        let stops: Vec<Decided> = provenances(&recorder)
            .into_iter()
            .filter(|decided| decided.1 == "deny")
            .collect();
        let id = fs::canonicalize("/usr/bin/id").unwrap();
        assert_eq!(stops.len(), 1, "{case}: {stops:?}");
        assert_eq!(stops[0].0, id.display().to_string(), "{case}");
        assert_eq!(stops[0].2, DecidedBy::User, "{case}");
        let withdrawn = recorder.events().into_iter().any(|event| {
            matches!(event, SessionEvent::RequestRefused { reason, .. }
                if reason.contains("before the decision"))
        });
        assert!(!withdrawn, "{case}: recorded as withdrawn");
    }
}

/// The processes whose command line is `cmdline` still there after up to
/// 5 s: a killed process may take a moment to go.
async fn still_running_after_a_while(cmdline: &str) -> Vec<i32> {
    let mut left = super::sandbox::processes_named(cmdline);
    for _ in 0..250 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = super::sandbox::processes_named(cmdline);
    }
    left
}

/// The processes whose command line is `cmdline` once at least `count`
/// run, waiting up to 20 s: a start may be slow on a busy machine.
async fn running_at_least(cmdline: &str, count: usize) -> Vec<i32> {
    let mut running = super::sandbox::processes_named(cmdline);
    for _ in 0..1000 {
        if running.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        running = super::sandbox::processes_named(cmdline);
    }
    running
}

/// Probe 206: a command stopped by its timeout, or a process killed by
/// its caller, was killed by its process group alone: without a sandbox's
/// pid namespace, what it had started in other groups (`timeout`'s child,
/// `setsid`'s) ran on until the session ended. It is killed whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_or_a_kill_stops_the_whole_command_without_a_sandbox() {
    let place = Place::new();
    let recorder = Recorder::default();
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .unsandboxed()
        .start(&place, &recorder);
    let script = "timeout 60 sleep 70.125 & setsid sleep 70.125 & sleep 30";
    let options = RunOptions {
        timeout: Some(Duration::from_secs(2)),
        ..RunOptions::default()
    };
    let outcome = session.run(script, options).unwrap().wait().await.unwrap();
    assert!(outcome.timed_out, "{outcome:?}");
    let after_timeout = still_running_after_a_while("sleep 70.125").await;
    let script = "timeout 60 sleep 70.1875 & setsid sleep 70.1875 & sleep 30";
    let started = session
        .exec_command(
            script,
            execgate_core_bridge::ExecOptions {
                yield_time: Duration::from_millis(1500),
                ..execgate_core_bridge::ExecOptions::default()
            },
        )
        .await
        .unwrap();
    let execgate_core_bridge::ExecResponse::Running(running) = started else {
        panic!("ended: {started:?}");
    };
    // Both started, however slowly (review 207).
    assert_eq!(running_at_least("sleep 70.1875", 2).await.len(), 2);
    session.kill(running.process_id).await.unwrap();
    let after_kill = still_running_after_a_while("sleep 70.1875").await;
    session.shutdown().await;
    assert!(
        after_timeout.is_empty(),
        "{after_timeout:?} outlived the timeout"
    );
    assert!(after_kill.is_empty(), "{after_kill:?} outlived the kill");
}

/// Probe 206's "Not done": without a sandbox's pid namespace, what a
/// command left outside its tree and its process group outlived its stop
/// (a timeout, a cancel), until the session ended: a daemon
/// (`(setsid cmd &)`), and the child an escalated program put in a session
/// of its own. Each command has a cgroup of its own, and its escalated
/// programs start in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_takes_what_a_command_left_outside_its_tree_and_group() {
    let place = Place::new();
    let recorder = Recorder::default();
    let unsandboxed = Setup::rules(Arc::new(RuleSet::default()))
        .unsandboxed()
        .start(&place, &recorder);
    let rules = place.rules(r#"prefix_rule(pattern = ["setsid"], decision = "allow")"#);
    let sandboxed = Setup::rules(rules).start(&place, &recorder);
    let cases = [
        (
            &unsandboxed,
            "(setsid sleep 70.3125 &); sleep 30",
            "sleep 70.3125",
        ),
        (&sandboxed, "setsid sleep 70.375; sleep 30", "sleep 70.375"),
    ];
    let mut outlived = Vec::new();
    for (session, script, left) in cases {
        let options = RunOptions {
            timeout: Some(Duration::from_secs(60)),
            ..RunOptions::default()
        };
        let cancel = options.cancel.clone();
        let handle = session.run(script, options).unwrap();
        // Stopped once what it left runs, however slowly it started.
        assert!(
            !running_at_least(left, 1).await.is_empty(),
            "{script}: not started"
        );
        cancel.cancel();
        let outcome = handle.wait().await.unwrap();
        assert!(outcome.cancelled, "{script}: {outcome:?}");
        let after = still_running_after_a_while(left).await;
        for pid in &after {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !after.is_empty() {
            outlived.push((script, after));
        }
    }
    unsandboxed.shutdown().await;
    sandboxed.shutdown().await;
    assert!(outlived.is_empty(), "outlived the stop: {outlived:?}");
}

/// The directory of the cgroup that `/proc/PID/cgroup` names `own` (its
/// `0::` line's path), one below the `execgate-PID` this process makes.
fn cgroup_directory(own: &str) -> std::path::PathBuf {
    let execgate_escalate_server::ScopeSupport::Cgroup(parent) =
        execgate_escalate_server::scope_support()
    else {
        panic!("this machine has a cgroup for sessions; the test needs it");
    };
    // Where `execgate-PID` is made, as a path and as processes name it.
    let (mount, _) = parent.to_str().unwrap().rsplit_once("/execgate-").unwrap();
    let (_, below) = own.split_once("/execgate-").unwrap();
    std::path::PathBuf::from(format!("{mount}/execgate-{below}"))
}

/// The escalations a command asks for start in its cgroup, one of its own
/// below its session's, which its `kill` reaches; the cgroup is removed
/// once the command has ended with nothing left in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_commands_escalations_start_in_a_cgroup_of_its_own() {
    let place = Place::new();
    let recorder = Recorder::default();
    let rules = place.rules(r#"prefix_rule(pattern = ["cat"], decision = "allow")"#);
    let session = Setup::rules(rules).start(&place, &recorder);
    let script = "cat /proc/self/cgroup; cat /proc/self/cgroup";
    let mut cgroups = Vec::new();
    for _ in 0..2 {
        let outcome = session
            .run(script, RunOptions::default())
            .unwrap()
            .wait()
            .await
            .unwrap();
        let stdout = text(&outcome.stdout);
        let lines: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("0::"))
            .collect();
        assert_eq!(lines.len(), 2, "{outcome:?}");
        assert_eq!(lines[0], lines[1], "{outcome:?}");
        let (session_part, command_part) = lines[0].rsplit_once('/').unwrap();
        assert!(command_part.starts_with("command-"), "{lines:?}");
        assert!(
            session_part
                .rsplit('/')
                .next()
                .unwrap()
                .starts_with("session-"),
            "{lines:?}"
        );
        // Ended, with nothing left in it: removed.
        let dir = cgroup_directory(lines[0]);
        assert!(!dir.exists(), "{} is left", dir.display());
        assert!(dir.parent().unwrap().exists(), "{}", dir.display());
        cgroups.push(lines[0].to_owned());
    }
    session.shutdown().await;
    assert_ne!(cgroups[0], cgroups[1]);
}

/// Review 209: a sandbox started for one escalation started in the
/// session's cgroup, so a question asked inside it was no command's. It
/// starts in its command's, as an unsandboxed escalation does (a sandbox
/// kept ready ahead of its command stays in the session's).
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_started_for_one_escalation_is_its_commands() {
    let place = Place::new();
    let recorder = Recorder::default();
    let rules = place.rules(
        r#"prefix_rule(pattern = ["sleep"], decision = "allow", execution = "turn-default")"#,
    );
    let session = Setup::rules(rules).start(&place, &recorder);
    let options = RunOptions {
        timeout: Some(Duration::from_secs(60)),
        ..RunOptions::default()
    };
    let cancel = options.cancel.clone();
    let handle = session.run("sleep 70.4375", options).unwrap();
    // As the sandbox's helper executes it: by its path.
    let escalated = running_at_least("/usr/bin/sleep 70.4375", 1).await;
    let cgroups: Vec<String> = escalated
        .iter()
        .map(|pid| fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default())
        .collect();
    cancel.cancel();
    let outcome = handle.wait().await.unwrap();
    session.shutdown().await;
    assert_eq!(escalated.len(), 1, "{outcome:?}");
    let own = unified_cgroup(&cgroups[0]).unwrap_or_default();
    let command = own.rsplit('/').next().unwrap_or_default();
    assert!(command.starts_with("command-"), "{own}");
}

/// Probe 208: a killed command's cgroup was removed at once, while its
/// processes were still exiting: one unified process in five left an
/// empty cgroup until the session ended. It goes by the next command's
/// start.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_commands_cgroup_goes_once_its_processes_have() {
    let place = Place::new();
    let recorder = Recorder::default();
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .unsandboxed()
        .start(&place, &recorder);
    // Processes forking all the while: killed, they take a moment to go.
    // The cgroup is printed first, well within the yield.
    let script = "while read -r own; do [[ $own == 0::* ]] && print -r -- $own; \
                  done < /proc/self/cgroup; sleep 1; \
                  repeat 4 { (while :; do setsid -f sleep 60.5; done) & }; wait";
    let mut killed = Vec::new();
    for _ in 0..5 {
        let options = execgate_core_bridge::ExecOptions {
            yield_time: Duration::from_millis(1500),
            ..execgate_core_bridge::ExecOptions::default()
        };
        let started = session.exec_command(script, options).await.unwrap();
        let execgate_core_bridge::ExecResponse::Running(running) = started else {
            panic!("ended: {started:?}");
        };
        session.kill(running.process_id).await.unwrap();
        let stdout = text(&running.output.stdout);
        let own = stdout
            .trim()
            .strip_prefix("0::")
            .unwrap_or_else(|| panic!("{running:?}"));
        killed.push(cgroup_directory(own));
    }
    let _ = still_running_after_a_while("sleep 60.5").await;
    // Removed at a command's start; one still emptying then is tried
    // again at the next (ci-131: the last killed one was still emptying on
    // a busy machine). A few commands, never the session's end, must do.
    let mut left: Vec<_> = killed.clone();
    for _ in 0..20 {
        let outcome = session
            .run("true", RunOptions::default())
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(outcome.status.code(), 0, "{outcome:?}");
        left.retain(|dir| dir.exists());
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    session.shutdown().await;
    assert!(left.is_empty(), "left: {left:?}");
}

/// Probe 206: two commands asked the same question, shared, and the
/// person's stop killed both. The command the person was shown stops; the
/// other is declined and goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_at_a_shared_question_stops_only_the_command_asked_about() {
    let place = Place::new();
    let rules = place.rules(r#"prefix_rule(pattern = ["touch"], decision = "prompt")"#);
    let recorder = Recorder::default();
    let mut approver = Scripted::new(ApprovalAnswer::Abort);
    // Long enough for both to be asking at once.
    approver.delay = Duration::from_millis(2000);
    let session = Setup::rules(rules)
        .approver(approver.clone())
        .start(&place, &recorder);
    let script = place.script("touch {outside}/same; print -r -- went on");
    let options = || RunOptions {
        timeout: Some(Duration::from_secs(60)),
        ..RunOptions::default()
    };
    let first = session.run(&script, options()).unwrap();
    let second = session.run(&script, options()).unwrap();
    let (first, second) = tokio::join!(first.wait(), second.wait());
    session.shutdown().await;
    let outcomes = [first.unwrap(), second.unwrap()];
    assert_eq!(approver.asked().len(), 1, "{outcomes:?}");
    let stopped: Vec<_> = outcomes.iter().filter(|outcome| outcome.aborted).collect();
    let declined: Vec<_> = outcomes.iter().filter(|outcome| !outcome.aborted).collect();
    assert_eq!((stopped.len(), declined.len()), (1, 1), "{outcomes:?}");
    assert!(text(&stopped[0].stdout).is_empty(), "{outcomes:?}");
    assert_eq!(text(&declined[0].stdout), "went on\n", "{outcomes:?}");
    assert!(
        text(&declined[0].stderr).contains("who stopped the command that asked the same question"),
        "{outcomes:?}"
    );
    assert!(!place.outside.join("same").exists());
}

/// Probe 201: a command's requests for grants were each asked, however
/// many were identical and pending together, and "for the session"
/// approved only once. Identical ones in flight share one question, and
/// one approved for the session is not asked again.
#[tokio::test(flavor = "multi_thread")]
async fn requests_for_grants_are_asked_as_programs_questions_are() {
    let place = Place::new();
    let recorder = Recorder::default();
    let mut approver = Scripted::new(ApprovalAnswer::ApproveForSession);
    approver.delay = Duration::from_millis(500);
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .approver(approver.clone())
        .start(&place, &recorder);
    let granted = place.outside.join("granted");
    std::fs::create_dir(&granted).unwrap();
    let options = || RunOptions {
        timeout: Some(Duration::from_secs(60)),
        ..requesting(super::sandbox::write_grant(&granted), None)
    };
    let script = format!("print -r -- x >> {}/log", granted.display());
    let together: Vec<_> = (0..3)
        .map(|_| session.run(&script, options()).unwrap())
        .collect();
    for run in together {
        assert_eq!(
            run.wait().await.unwrap().status,
            execgate_core_bridge::CommandStatus::Exited(0)
        );
    }
    let again = session
        .run(&script, options())
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(again.status, execgate_core_bridge::CommandStatus::Exited(0));
    session.shutdown().await;
    assert_eq!(approver.asked().len(), 1);
    assert_eq!(
        std::fs::read_to_string(granted.join("log")).unwrap(),
        "x\n".repeat(4)
    );
    let deciders: Vec<DecidedBy> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::PermissionsRequested { provenance, .. } => Some(provenance.decided_by),
            _ => None,
        })
        .collect();
    assert_eq!(deciders.len(), 4, "{deciders:?}");
    assert_eq!(deciders[3], DecidedBy::SessionCache, "{deciders:?}");
}

/// Probe 201: a grant in the sessions' directory, which every sandbox sees
/// empty, failed at the sandbox's start, saying the path had been replaced
/// since, and the record said it was made. It is refused, saying why, and
/// recorded as not made.
#[tokio::test(flavor = "multi_thread")]
async fn a_grant_in_the_sessions_directory_is_refused_as_such() {
    let place = Place::new();
    let recorder = Recorder::default();
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .approver(Scripted::new(ApprovalAnswer::ApproveOnce))
        .start(&place, &recorder);
    let sessions = std::path::PathBuf::from(format!(
        "/var/tmp/execgate-{}",
        nix::unistd::getuid().as_raw()
    ));
    let options = requesting(super::sandbox::write_grant(&sessions), None);
    let outcome = session.run("true", options).unwrap().wait().await;
    session.shutdown().await;
    let error = match outcome {
        Ok(outcome) => panic!("it ran: {outcome:?}"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("every sandbox sees empty"), "{error}");
    let requests = permission_requests(&recorder);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(!requests[0].0, "{requests:?}");
}

/// Probe 201: a request for grants nobody answered was recorded without
/// why ("no tty", an approver that panicked), as a program's question is.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_grants_nobody_answered_is_recorded_with_why() {
    let place = Place::new();
    let recorder = Recorder::default();
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .approver(Scripted::new(ApprovalAnswer::Unanswered {
            reason: "no tty".into(),
        }))
        .start(&place, &recorder);
    let options = requesting(
        PermissionProfile::preset("danger-full-access").unwrap(),
        None,
    );
    let outcome = session.run("true", options).unwrap().wait().await.unwrap();
    session.shutdown().await;
    assert!(outcome.permissions_declined);
    let requests = permission_requests(&recorder);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0]
            .1
            .as_deref()
            .is_some_and(|note| note.contains("nobody answered (no tty)")),
        "{requests:?}"
    );
}

/// Probe 128: a person who stopped the command at the question for its
/// grants (Ctrl-C, `!`) left no record of the request: a decline was
/// recorded, an abort was not. It is recorded as not granted, saying so,
/// and nothing runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_grants_stopped_at_its_question_is_recorded() {
    let place = Place::new();
    let recorder = Recorder::default();
    let session = Setup::rules(Arc::new(RuleSet::default()))
        .approver(Scripted::new(ApprovalAnswer::Abort))
        .start(&place, &recorder);
    let options = RunOptions {
        timeout: Some(Duration::from_secs(60)),
        ..requesting(
            PermissionProfile::preset("danger-full-access").unwrap(),
            Some("all of it"),
        )
    };
    let ran = place.outside.join("ran");
    let script = format!("touch {}", ran.display());
    let outcome = session.run(&script, options).unwrap().wait().await;
    // A person's answer, not a failure to start (review 129).
    let failures = session.metrics().sandbox_start_failures;
    session.shutdown().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        matches!(outcome, Err(BridgeError::Aborted)),
        "{:?}",
        outcome.map(|done| text(&done.stderr))
    );
    assert!(!ran.exists());
    let requests = permission_requests(&recorder);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(!requests[0].0);
    assert!(
        requests[0]
            .1
            .as_deref()
            .is_some_and(|note| note.contains("stopped at the question")),
        "{requests:?}"
    );
}

/// Review 129: a request for grants whose question was still open when
/// its run was cancelled, or its session ended, left no record of it,
/// though a person had been asked. It is recorded as not granted, saying
/// what ended it, and nothing runs. Probe 224: the caller heard "the
/// approver aborted the command" either way.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_grants_ended_at_its_question_is_recorded() {
    for ended_by in ["cancel", "dropped handle", "session end"] {
        let place = Place::new();
        let recorder = Recorder::default();
        let approver = Scripted {
            delay: Duration::from_secs(3600),
            ..Scripted::new(ApprovalAnswer::ApproveOnce)
        };
        let session = Setup::rules(Arc::new(RuleSet::default()))
            .approver(approver.clone())
            .start(&place, &recorder);
        let cancel = tokio_util::sync::CancellationToken::new();
        let options = RunOptions {
            cancel: cancel.clone(),
            ..requesting(
                PermissionProfile::preset("danger-full-access").unwrap(),
                None,
            )
        };
        let ran = place.outside.join("ran");
        let handle = session
            .run(&format!("touch {}", ran.display()), options)
            .unwrap();
        for _ in 0..250 {
            if !approver.asked().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(approver.asked().len(), 1, "{ended_by}: never asked");
        let expected = match ended_by {
            "cancel" => {
                cancel.cancel();
                // The caller's cancel, as any other, not a person's abort
                // (probe 224).
                let outcome = handle.wait().await.unwrap();
                assert!(outcome.cancelled && !outcome.aborted, "{outcome:?}");
                session.shutdown().await;
                "the command was cancelled at the question"
            }
            "dropped handle" => {
                drop(handle);
                for _ in 0..250 {
                    let recorded = recorder
                        .events()
                        .iter()
                        .any(|event| matches!(event, SessionEvent::PermissionsRequested { .. }));
                    if recorded {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                session.shutdown().await;
                "the command was cancelled at the question"
            }
            _ => {
                session.shutdown().await;
                let outcome = handle.wait().await;
                assert!(
                    matches!(outcome, Err(BridgeError::SessionEnded)),
                    "{ended_by}: {outcome:?}"
                );
                "the session ended at the question"
            }
        };
        assert!(!ran.exists(), "{ended_by}");
        let requests = permission_requests(&recorder);
        assert_eq!(requests, [(false, Some(expected.to_owned()))], "{ended_by}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_decision_path_has_its_audit_record() {
    let place = Place::new();
    let rules = place.rules(
        r#"
prefix_rule(pattern = ["touch"], decision = "allow", justification = "ok")
prefix_rule(pattern = ["mkdir"], decision = "prompt")
prefix_rule(pattern = ["rm"], decision = "forbidden")
"#,
    );
    let log = place.root.join("audit.jsonl");
    let writer = skill(&place, "plain", None);
    let answers = Arc::new(AtomicUsize::new(0));
    let counter = answers.clone();
    // Approve the first prompt for the session, decline the next.
    let approver = move |_request: ApprovalRequest| {
        let turn = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if turn == 0 {
                ApprovalAnswer::ApproveForSession
            } else {
                ApprovalAnswer::Decline
            }
        }
    };
    let recorder = Recorder::default();
    let mut setup = Setup::rules(rules).approver(approver);
    setup.skills = SkillRegistry::load(&[place.root.join("skills")]).unwrap();
    setup.audit = Some(log.clone());
    let session = setup.start(&place, &recorder);
    let script = place.script(&format!(
        "touch {{outside}}/t; mkdir {{outside}}/m1; mkdir {{outside}}/m1 2>/dev/null; \
         mkdir {{outside}}/m2 2>/dev/null; rm -f x 2>/dev/null; {writer} {{ws}}/w; ls >/dev/null; true",
        writer = writer.display(),
    ));
    let _ = run(&session, &script).await;
    session.shutdown().await;
    let records = read_records(&log).unwrap();
    let decided: Vec<(String, String, Option<String>)> = records
        .iter()
        .filter(|record| record.event.action == "decision")
        .map(|record| {
            let fields = record.execgate.as_ref().unwrap();
            (
                fields.decision.clone(),
                fields.decided_by.clone(),
                record
                    .rule
                    .as_ref()
                    .map(|rule| rule.id.rsplit(':').next().unwrap().to_owned()),
            )
        })
        .collect();
    let expected: Vec<(String, String, Option<String>)> = [
        ("escalate", "rule", Some("2")),
        ("escalate", "user", Some("3")),
        ("escalate", "session-cache", Some("3")),
        ("deny", "user", Some("3")),
        ("deny", "rule", Some("4")),
        // A skill without permissions runs in place (probe 137).
        ("run", "skill", None),
        ("run", "default", None),
    ]
    .into_iter()
    .map(|(d, by, rule)| (d.to_owned(), by.to_owned(), rule.map(str::to_owned)))
    .collect();
    assert_eq!(decided[..expected.len()], expected[..], "{decided:?}");
    let approved = records
        .iter()
        .find(|record| {
            record
                .execgate
                .as_ref()
                .is_some_and(|f| f.decided_by == "user")
        })
        .unwrap();
    assert!(approved.execgate.as_ref().unwrap().approval_ms.is_some());
    assert_eq!(recorder.decided().len(), decided.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn escalated_programs_get_their_own_name_and_a_clean_environment() {
    let place = Place::new();
    let rules = place.rules(
        r#"
prefix_rule(pattern = ["dash"], execution = "turn-default")
prefix_rule(pattern = ["env"])
"#,
    );
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        "ARGV0=git-upload-pack dash -c 'echo $0'; \
         HOME=/planted GIT_AUTHOR_NAME=x LANG=C.UTF-8 POLICY_SET=changed env",
    )
    .await;
    let stdout = text(&outcome.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("/usr/bin/dash"),
        "{stdout}\n{}",
        text(&outcome.stderr)
    );
    let env: Vec<&str> = lines.collect();
    let home = format!("HOME={}", std::env::var("HOME").unwrap());
    assert!(env.contains(&home.as_str()), "{env:?}");
    assert!(env.contains(&"LANG=C.UTF-8"), "{env:?}");
    assert!(env.contains(&"POLICY_SET=yes"), "{env:?}");
    assert!(
        !env.iter().any(|entry| entry.starts_with("GIT_AUTHOR_NAME")),
        "{env:?}"
    );
    // A temporary directory of its own, which no sandbox can write (a
    // re-probe swapped the setup.py an escalated pip unpacked in the
    // TMPDIR it shared with the sandbox).
    let tmpdir = env
        .iter()
        .find_map(|entry| entry.strip_prefix("TMPDIR="))
        .unwrap_or_else(|| panic!("{env:?}"));
    assert!(
        tmpdir.contains("/execgate-zsh") && tmpdir.ends_with("/tmp"),
        "{tmpdir}"
    );
    assert!(
        !env.iter().any(|entry| entry.starts_with("EXECGATE")),
        "{env:?}"
    );
    session.shutdown().await;
}
