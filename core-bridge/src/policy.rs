//! The policy users configure: rules files, approvals, skills.
//!
//! For each exec, in order:
//!
//! 1. A script in a registered skill's `scripts/` is a skill script,
//!    whatever the rules say but `forbidden`, which holds for it too:
//!    without declared permissions it runs in the session's sandbox
//!    (`Escalate(TurnDefault)`, no prompt: it gains nothing); with them, it
//!    needs approval and then runs with exactly those grants on top
//!    (`Permissions`).
//! 2. Otherwise the rules decide, matched on the canonical executable path
//!    (with `host_executable` resolution) and the argv after it; `argv[0]`
//!    is never looked at. No match: `Run`. `forbidden`: `Deny` with the
//!    justification. `allow`: escalate with the rule's execution. `prompt`:
//!    ask the approver (or the session cache), then escalate or deny.
//!
//! An escalation that would leave the sandbox (`Unsandboxed` or extra
//! grants) is refused, and the exec runs in place instead, when the
//! sandbox could have written the executable or the interpreter its `#!`
//! line names: otherwise the shell could swap in a program of its own. It
//! is refused too when the program reads what to run from files the
//! sandbox could have planted (a git repository, a Makefile, a script; the
//! table is in `planted.rs`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use execgate_escalate_server::sandbox::{
    Access, FsTarget, MountAliases, PermissionProfile, ProfileSet, ResolvedPolicy, SandboxContext,
    SpecialRoot,
};
use execgate_escalate_server::{
    DecidedBy, Decision, DecisionFuture, ExecContext, Execution, Policy, Provenance, RuleRef,
    Verdict,
};
use execgate_rules::{MatchOptions, RuleDecision, RuleExecution, RuleSet};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::approval::{
    nobody_answered, too_many_questions, too_many_waiting, ApprovalAnswer, ApprovalClock,
    ApprovalReason, ApprovalRequest, Approver, CommandToStop, DenyAll, WaitingForAnswer,
    NOBODY_IS_ASKED, QUESTIONS_IN_FLIGHT, REQUESTS_WAITING,
};
use crate::interpreter::{interpreted, runs_another, Runner};
use crate::planted::{
    home_variables, in_table, planted_configuration, planted_home, planted_instructions,
    Request as PlantedRequest,
};
use crate::skills::{Skill, SkillRegistry};
use crate::BridgeError;

/// What an [`ExecPolicy`] is built from.
#[derive(Clone)]
pub struct ExecPolicyConfig {
    pub rules: Arc<RuleSet>,
    pub skills: SkillRegistry,
    /// Named profiles a rule's `execution` may name.
    pub profiles: Arc<ProfileSet>,
    pub approver: Arc<dyn Approver>,
}

impl Default for ExecPolicyConfig {
    /// No rules, no skills, every approval declined: everything runs in
    /// place, in the sandbox.
    fn default() -> Self {
        ExecPolicyConfig {
            rules: Arc::new(RuleSet::default()),
            skills: SkillRegistry::default(),
            profiles: Arc::new(ProfileSet::default()),
            approver: Arc::new(DenyAll),
        }
    }
}

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("{rule}: execution names profile {name:?}, which is not defined ({reason}); define it under [profiles.{name}] in the config file (in a library, in ExecPolicyConfig's profiles)")]
    UnknownProfile {
        rule: String,
        name: String,
        reason: String,
    },
    #[error("{rule}: execution names profile {name:?}, which is not a sandbox; write execution = \"unsandboxed\" if that is meant")]
    UnsandboxedProfile { rule: String, name: String },
}

/// Rules, skills and approvals as a session [`Policy`]. Cheap to clone:
/// clones share the session cache and the pending prompts. One serves one
/// session: its approvals for the session, its approval clock and what its
/// grants may write are that session's, and a second session started with
/// it (or a clone) is refused ([`BridgeError::PolicyInUse`]).
#[derive(Clone)]
pub struct ExecPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Arc<RuleSet>,
    skills: SkillRegistry,
    /// The profiles rules name, resolved once.
    executions: HashMap<String, PermissionProfile>,
    approver: Arc<dyn Approver>,
    clock: ApprovalClock,
    /// "Approve for the session" answers.
    approved: Mutex<HashSet<ApprovalKey>>,
    /// Prompts in flight: identical requests wait for the same answer.
    pending: Mutex<HashMap<QuestionKey, SharedAnswer>>,
    /// What shells granted more permissions could write, beyond the
    /// session's own view: they hold the session socket too.
    granted_write_roots: Mutex<Vec<PathBuf>>,
    /// Set once what every grant known in advance (skills, rules'
    /// profiles) may write has been counted in `granted_write_roots`.
    known_grants_counted: tokio::sync::OnceCell<()>,
    /// Set while a session starts with it, and for good once one has.
    claimed: std::sync::atomic::AtomicBool,
    /// The session it decides for: the first that asked.
    session: std::sync::OnceLock<String>,
}

/// A policy claimed by a session being started: released if the start
/// fails, kept once the session runs ([`SessionClaim::keep`]).
pub(crate) struct SessionClaim(Option<ExecPolicy>);

impl SessionClaim {
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for SessionClaim {
    fn drop(&mut self) {
        if let Some(policy) = self.0.take() {
            policy
                .inner
                .claimed
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// One answer, and how long it took, for everyone waiting on it.
type SharedAnswer = Arc<OnceCell<(ApprovalAnswer, std::time::Duration)>>;

/// What an approval is for. Exact: same file (path and identity), same
/// arguments, same directory, same execution; a skill's by skill and
/// script. A session approval never covers anything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ApprovalKey {
    Command {
        program: PathBuf,
        device: u64,
        inode: u64,
        args: Vec<OsString>,
        cwd: PathBuf,
        /// The working directory's device and inode: the same directory,
        /// not one made later under its name (unless its file system gives
        /// the new one the old one's inode number, as ext4 may after
        /// `rmdir` and `mkdir`).
        directory: Option<(u64, u64)>,
        execution: String,
    },
    Skill {
        skill: String,
        script: PathBuf,
        device: u64,
        inode: u64,
    },
    /// A command's request for grants ([`RunOptions::request_permissions`](crate::RunOptions)):
    /// the same command text, in the same directory, for the same grants.
    Grants {
        command: String,
        cwd: PathBuf,
        directory: Option<(u64, u64)>,
        grants: String,
    },
}

/// What identical questions in flight share one answer by: the approval,
/// and the run the question shows (arguments, directory), which a skill's
/// approval leaves out. An answer "once" approves the run the person saw
/// (a probe had one question about a harmless run answer for another run
/// of the same script, with other arguments, that nobody saw).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QuestionKey {
    approval: ApprovalKey,
    argv: Vec<OsString>,
    cwd: PathBuf,
}

impl ExecPolicy {
    /// Checks that every profile the rules name exists.
    pub fn new(config: ExecPolicyConfig) -> Result<ExecPolicy, PolicyError> {
        let mut executions = HashMap::new();
        for rule in config.rules.rules() {
            if let Some(RuleExecution::Profile(name)) = &rule.execution {
                let profile =
                    config
                        .profiles
                        .get(name)
                        .map_err(|error| PolicyError::UnknownProfile {
                            rule: rule.origin.to_string(),
                            name: name.clone(),
                            reason: error.to_string(),
                        })?;
                if !matches!(profile, PermissionProfile::Managed { .. }) {
                    return Err(PolicyError::UnsandboxedProfile {
                        rule: rule.origin.to_string(),
                        name: name.clone(),
                    });
                }
                // Pinned now, before any sandbox runs: a path the sandbox
                // later points elsewhere refuses the escalation.
                executions.insert(name.clone(), profile.pinned());
            }
        }
        Ok(ExecPolicy {
            inner: Arc::new(Inner {
                rules: config.rules,
                skills: config.skills,
                executions,
                approver: Arc::new(crate::approval::Contained(config.approver)),
                clock: ApprovalClock::default(),
                approved: Mutex::new(HashSet::new()),
                pending: Mutex::new(HashMap::new()),
                granted_write_roots: Mutex::new(Vec::new()),
                known_grants_counted: tokio::sync::OnceCell::new(),
                claimed: std::sync::atomic::AtomicBool::new(false),
                session: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Claims the policy for the session being started, unless another
    /// session has it.
    pub(crate) fn claim(&self) -> Result<SessionClaim, BridgeError> {
        if self
            .inner
            .claimed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(BridgeError::PolicyInUse);
        }
        Ok(SessionClaim(Some(self.clone())))
    }

    /// Time spent waiting for approvals, for timeouts that exclude it.
    pub fn approval_clock(&self) -> ApprovalClock {
        self.inner.clock.clone()
    }

    /// The rules, for the network decisions of the session's sandboxes.
    pub(crate) fn rules(&self) -> Arc<RuleSet> {
        self.inner.rules.clone()
    }

    /// The approver, for the questions the network proxy asks.
    pub(crate) fn approver(&self) -> Arc<dyn Approver> {
        self.inner.approver.clone()
    }

    /// Asks whether one command may run with `requested` on top of the
    /// session's profile. Returns what it runs with (the requested grants
    /// the approver kept: all, part, or `None` for none) and who decided.
    pub(crate) async fn grant_permissions(
        &self,
        shell: &Path,
        command: &str,
        cwd: &Path,
        requested: &PermissionProfile,
        justification: Option<String>,
    ) -> PermissionsAnswer {
        let request = ApprovalRequest {
            program: shell.to_path_buf(),
            argv: vec![
                shell.as_os_str().to_owned(),
                "-f".into(),
                "-c".into(),
                "--".into(),
                command.into(),
            ],
            cwd: cwd.to_path_buf(),
            reason: ApprovalReason::RequestedPermissions { justification },
            execution: Execution::Permissions(requested.clone()),
            permissions: Some(requested.clone()),
        };
        // As a program's question (probe 201: each was asked, uncapped, and
        // "for the session" approved once): identical ones in flight share
        // one question, at most 16 wait, and one approved for the session
        // is not asked again.
        use std::os::unix::fs::MetadataExt;
        let key = ApprovalKey::Grants {
            command: command.to_owned(),
            cwd: cwd.to_path_buf(),
            directory: std::fs::metadata(cwd)
                .ok()
                .map(|meta| (meta.dev(), meta.ino())),
            grants: format!("{requested:?}"),
        };
        let cached = self
            .inner
            .approved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key);
        if cached {
            self.inner.writable_through(write_roots(requested, cwd));
            return PermissionsAnswer {
                granted: Some(requested.clone()),
                provenance: Provenance {
                    decided_by: DecidedBy::SessionCache,
                    ..Provenance::default()
                },
                aborted: false,
            };
        }
        let question = QuestionKey {
            approval: key.clone(),
            argv: request.argv.clone(),
            cwd: request.cwd.clone(),
        };
        let (answer, waited, shared) = self.inner.ask(Some(question), &request, None).await;
        let mut provenance = self.inner.answered(&answer, waited, None);
        if shared {
            provenance.note_after(SHARED_ANSWER);
        }
        let granted = match answer {
            ApprovalAnswer::ApproveOnce => requested.clone(),
            ApprovalAnswer::ApproveForSession => {
                self.inner
                    .approved
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key);
                if provenance.decided_by == DecidedBy::User {
                    provenance.note_before(STANDING_ANSWER);
                }
                requested.clone()
            }
            ApprovalAnswer::ApprovePartly(granted) => {
                provenance.note = Some("grants narrowed by the approver".into());
                requested.intersected_with(&granted)
            }
            ApprovalAnswer::Decline | ApprovalAnswer::DeclineForSession => {
                return PermissionsAnswer {
                    granted: None,
                    provenance,
                    aborted: false,
                };
            }
            // Why, as for a program's question (probe 201: the reason was
            // dropped, "no tty" and a panicking approver alike).
            ApprovalAnswer::Unanswered { reason } => {
                let why = nobody_answered(&reason);
                provenance.note_after(why);
                return PermissionsAnswer {
                    granted: None,
                    provenance,
                    aborted: false,
                };
            }
            // Only the command the person was shown stops (probe 206).
            ApprovalAnswer::Abort if shared => {
                provenance.note_after(STOPPED_ANOTHER);
                return PermissionsAnswer {
                    granted: None,
                    provenance,
                    aborted: false,
                };
            }
            // Recorded as the answer it is, then the command stops.
            ApprovalAnswer::Abort => {
                provenance.note = Some("the command was stopped at the question".into());
                return PermissionsAnswer {
                    granted: None,
                    provenance,
                    aborted: true,
                };
            }
        };
        self.inner.writable_through(write_roots(&granted, cwd));
        PermissionsAnswer {
            granted: Some(granted),
            provenance,
            aborted: false,
        }
    }
}

/// The approver's answer to a command's request for extra grants.
pub(crate) struct PermissionsAnswer {
    /// What the command's shell runs with on top of the session's
    /// profile; `None` when declined or stopped.
    pub(crate) granted: Option<PermissionProfile>,
    pub(crate) provenance: Provenance,
    /// The person stopped the command at the question: nothing runs.
    pub(crate) aborted: bool,
}

impl ExecPolicy {
    /// Counts `root`, where the session makes each escalation with grants
    /// a temporary directory of its own, as writable by grants: what a
    /// sandbox with grants leaves there must not be what a later
    /// escalation runs.
    pub(crate) fn count_granted_tmpdirs(&self, root: &Path) {
        self.inner.writable_through(vec![root.to_path_buf()]);
    }

    /// What every grant known in advance lets a sandbox write, resolved in
    /// `context`: the server counts it from the start, as this policy
    /// does before its first decision.
    pub(crate) fn known_grant_roots(&self, context: &SandboxContext) -> Vec<PathBuf> {
        self.inner
            .known_grants()
            .iter()
            .flat_map(|granted| granted_write_paths(granted, context))
            .collect()
    }
}

impl Policy for ExecPolicy {
    fn decide<'a>(&'a self, request: &'a ExecContext) -> DecisionFuture<'a> {
        Box::pin(async move {
            // One session's: the first that asks. A policy put in another
            // session's config by hand (not through `exec_policy`, which
            // the start claims) decides nothing there.
            let serving = self
                .inner
                .session
                .get_or_init(|| request.session_id.clone());
            if *serving != request.session_id {
                return Decision::Deny {
                    reason: format!(
                        "this session's policy serves another session ({serving}): build one \
                         ExecPolicy per session"
                    ),
                }
                .into();
            }
            if let Some(view) = request.sandbox.as_deref() {
                // Not counted, an escalation's checks would not see what a
                // grant lets the sandbox write: nothing is decided then.
                if let Err(reason) = self.inner.count_known_grants(view).await {
                    return Decision::Deny { reason }.into();
                }
            }
            // Every grant a decision here can make (a skill's, a rule's
            // profile, or part of one) is counted there, in advance.
            self.inner.decide(request).await
        })
    }
}

impl Inner {
    /// Counts what every grant the session knows of in advance (each
    /// skill's, each rule's profile) may write as writable from the
    /// sandbox, once, before the first decision: a grant used later must
    /// not have let the sandbox write what an escalation decided (or
    /// already running) before it then reads. Requested permissions are
    /// counted as they are granted.
    async fn count_known_grants(&self, view: &ResolvedPolicy) -> Result<(), String> {
        self.known_grants_counted
            .get_or_try_init(|| async {
                let profiles = self.known_grants();
                let context = view.context().clone();
                // Resolving may walk the file system (deny globs).
                let paths = tokio::task::spawn_blocking(move || {
                    profiles
                        .iter()
                        .flat_map(|granted| granted_write_paths(granted, &context))
                        .collect()
                })
                .await
                .map_err(|error| {
                    format!("cannot count what the session's grants may write: {error}")
                })?;
                self.writable_through(paths);
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Every grant known in advance: each skill's, each rule's profile.
    fn known_grants(&self) -> Vec<PermissionProfile> {
        self.skills
            .skills()
            .iter()
            .filter_map(|skill| skill.permissions.clone())
            .chain(self.executions.values().cloned())
            .collect()
    }

    /// Counts `paths`, which a grant lets a sandboxed command write, as
    /// writable from the sandbox for every later escalation's checks: the
    /// command holds the session socket, and its files may be what they
    /// run.
    fn writable_through(&self, paths: Vec<PathBuf>) {
        let mut roots = self
            .granted_write_roots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for root in paths {
            // As written and as resolved now: the checks compare canonical
            // paths.
            let canonical = std::fs::canonicalize(&root).ok();
            for root in std::iter::once(root).chain(canonical) {
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
        }
    }

    async fn decide(self: &Arc<Self>, request: &ExecContext) -> Verdict {
        let program = &request.executable.canonical_path;
        let mut argv: Vec<OsString> = Vec::with_capacity(request.argv.len().max(1));
        argv.push(program.as_os_str().to_owned());
        argv.extend(request.argv.iter().skip(1).cloned());
        // A `forbidden` rule on the name the shell found the program by
        // (`python3`, a link to `python3.11`) holds too (probe 142), on a
        // path that climbed to it too (probe 238).
        let requested = &request.executable.requested_path;
        let climbed = execgate_escalate_server::climbing_path_resolved(requested);
        let evaluation = self.rules.check_os_as_found_either(
            &argv,
            requested.as_os_str(),
            climbed.as_deref().map(Path::as_os_str),
            MatchOptions {
                resolve_host_executables: true,
            },
        );
        let deciding = evaluation.deciding_rule();
        // A skill's script is the skill's to decide, but for a `forbidden`
        // rule, which holds for every program (probe 128: one on a
        // script's `--delete` was passed over).
        let forbidden = deciding.is_some_and(|rule| rule.decision == RuleDecision::Forbidden);
        if let Some(skill) = self.skills.owner_of(program).filter(|_| !forbidden) {
            return self.decide_skill(skill, request).await;
        }
        let Some(rule) = deciding else {
            return Decision::Run.into();
        };
        let rule_ref = RuleRef {
            id: rule.origin.to_string(),
            justification: rule.justification.clone(),
        };
        let by_rule = Provenance {
            decided_by: DecidedBy::Rule,
            rule: Some(rule_ref.clone()),
            ..Provenance::default()
        };
        let execution = match &rule.execution {
            None | Some(RuleExecution::Unsandboxed) => Execution::Unsandboxed,
            Some(RuleExecution::TurnDefault) => Execution::TurnDefault,
            Some(RuleExecution::Profile(name)) => match self.executions.get(name) {
                Some(profile) => Execution::Permissions(profile.clone()),
                None => {
                    return Verdict {
                        decision: Decision::Deny {
                            reason: format!("rule {} names unknown profile {name:?}", rule_ref.id),
                        },
                        provenance: by_rule,
                    }
                }
            },
        };
        let refused = match rule.decision {
            RuleDecision::Forbidden => None,
            _ => {
                self.refusal_elsewhere(request, &execution, OtherNames::InSystemDirectories)
                    .await
            }
        };
        let question = |execution: &Execution, refused: Option<&str>| {
            let key = ApprovalKey::Command {
                program: program.clone(),
                device: request.executable.device,
                inode: request.executable.inode,
                args: request.argv.iter().skip(1).cloned().collect(),
                cwd: request.cwd.clone(),
                directory: request
                    .working_directory
                    .as_ref()
                    .ok()
                    .map(|directory| (directory.device, directory.inode)),
                execution: format!("{execution:?}"),
            };
            let approval = ApprovalRequest {
                program: program.clone(),
                argv: request.argv.clone(),
                cwd: request.cwd.clone(),
                reason: match refused {
                    Some(refused) => ApprovalReason::RuleInPlace {
                        rule: rule_ref.clone(),
                        refused: refused.to_owned(),
                    },
                    None => ApprovalReason::Rule(rule_ref.clone()),
                },
                execution: execution.clone(),
                // As the command gets them (review 34b: a profile's own
                // narrower network was shown under a session's wider one).
                permissions: match execution {
                    Execution::Permissions(profile) => Some(as_granted(request, profile)),
                    _ => None,
                },
            };
            (key, approval)
        };
        match (rule.decision, refused) {
            (RuleDecision::Allow, Some(refused)) => return run_instead(by_rule, refused),
            // A prompt is a person's yes before the command runs at all:
            // where it cannot leave the sandbox, the person is asked about
            // running it in place, in the session's sandbox (probe 142: a
            // `prompt` on `git push` ran unasked from a workspace).
            (RuleDecision::Prompt, Some(refused)) => {
                let (key, approval) = question(&Execution::TurnDefault, Some(&refused));
                let verdict = self
                    .approved_or_asked(
                        request,
                        key,
                        approval,
                        Execution::TurnDefault,
                        Some(rule_ref),
                    )
                    .await;
                return in_place_once_approved(verdict, refused);
            }
            _ => {}
        }
        match rule.decision {
            RuleDecision::Forbidden => Verdict {
                decision: Decision::Deny {
                    // A rule that matched the program by its canonical
                    // path: named when the shell's differs (`awk`, a link
                    // to `mawk`), or the message shows a name no rule has.
                    // One on the name found needs nothing more.
                    reason: {
                        // By the path the rule matched, or its name was
                        // resolved from.
                        let by_canonical_path = rule.resolved_program.as_deref()
                            == Some(program.as_path())
                            || rule
                                .matched_prefix
                                .first()
                                .is_some_and(|first| Path::new(first) == program.as_path());
                        let renamed = request.executable.requested_path != *program;
                        let matched = match renamed && by_canonical_path {
                            false => String::new(),
                            true => format!(" (as {})", program.display()),
                        };
                        match &rule_ref.justification {
                            Some(why) => format!("forbidden by {}{matched}: {why}", rule_ref.id),
                            None => format!("forbidden by {}{matched}", rule_ref.id),
                        }
                    },
                },
                provenance: by_rule,
            },
            RuleDecision::Allow => Verdict {
                decision: Decision::Escalate(execution),
                provenance: by_rule,
            },
            RuleDecision::Prompt => {
                let (key, approval) = question(&execution, None);
                self.approved_or_asked(request, key, approval, execution, Some(rule_ref))
                    .await
            }
        }
    }

    /// A skill script's verdict, whose record says whose script it was,
    /// whoever decided.
    async fn decide_skill(self: &Arc<Self>, skill: &Skill, request: &ExecContext) -> Verdict {
        let mut verdict = self.decide_skill_script(skill, request).await;
        // Answered by no person (`--approval approve` or `deny`): the
        // skill's question, not the session's policy without rules (a probe
        // read `default` and looked for a rule that was not there).
        if verdict.provenance.decided_by == DecidedBy::Default {
            verdict.provenance.decided_by = DecidedBy::Skill;
        }
        let of_skill = format!("script of skill {}", skill.name);
        verdict.provenance.note = Some(match verdict.provenance.note.take() {
            Some(note) => format!("{of_skill}; {note}"),
            None => of_skill,
        });
        verdict
    }

    async fn decide_skill_script(
        self: &Arc<Self>,
        skill: &Skill,
        request: &ExecContext,
    ) -> Verdict {
        let Some(grants) = &skill.permissions else {
            // The session's sandbox: nothing gained, nothing to ask, and
            // run in place, as its author ran it (probe 137: escalated to
            // a sandbox of the same kind, a script's `$0` was `/dev/fd/N`,
            // and `$(dirname "$0")/lib.sh` was not found).
            return Verdict {
                decision: Decision::Run,
                provenance: Provenance {
                    decided_by: DecidedBy::Skill,
                    ..Provenance::default()
                },
            };
        };
        let execution = Execution::Permissions(grants.clone());
        if let Some(refused) = self
            .refusal_elsewhere(request, &execution, OtherNames::Refused)
            .await
        {
            return run_instead(
                Provenance {
                    decided_by: DecidedBy::Skill,
                    ..Provenance::default()
                },
                refused,
            );
        }
        let key = ApprovalKey::Skill {
            skill: skill.name.clone(),
            script: request.executable.canonical_path.clone(),
            device: request.executable.device,
            inode: request.executable.inode,
        };
        let approval = ApprovalRequest {
            program: request.executable.canonical_path.clone(),
            argv: request.argv.clone(),
            cwd: request.cwd.clone(),
            reason: ApprovalReason::Skill {
                name: skill.name.clone(),
                script: request.executable.canonical_path.clone(),
                justification: skill.justification.clone(),
            },
            execution: execution.clone(),
            // As the script gets them: `:cwd` is the session's directory,
            // not the one it was called from (probe 156).
            permissions: Some(as_granted(request, grants)),
        };
        self.approved_or_asked(request, key, approval, execution, None)
            .await
    }

    /// [`Inner::refusal`] on a blocking thread: it walks the file system
    /// as far as the request's arguments lead (bounded, but far), reads
    /// configuration files and may ask the password database, and must
    /// hold up no other request of the session's serving thread.
    async fn refusal_elsewhere(
        self: &Arc<Self>,
        request: &ExecContext,
        execution: &Execution,
        other_names: OtherNames,
    ) -> Option<String> {
        let leaves = leaves_the_sandbox(request, execution);
        let found_elsewhere =
            request.executable.requested_path != request.executable.canonical_path;
        if !leaves && !found_elsewhere {
            return None;
        }
        let (inner, request, execution) = (Arc::clone(self), request.clone(), execution.clone());
        tokio::task::spawn_blocking(move || {
            let granted = inner
                .granted_write_roots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            // Read once, and only when a check needs it: `./tool` asks
            // nothing of the mounts (review 236).
            let places = std::cell::OnceCell::new();
            let places_now = || {
                places
                    .get_or_init(|| WritablePlaces::of(request.sandbox.as_deref(), granted.clone()))
            };
            // Any escalation, into the session's own sandbox too: it runs
            // the program under its canonical path. Where the mounts cannot
            // be read, every place counts as writable.
            let found = request.cwd.join(&request.executable.requested_path);
            let program = &request.executable.canonical_path;
            let writable = |path: &Path| {
                places_now()
                    .as_ref()
                    .map_or(true, |places| places.writable(path))
            };
            if let Some(refused) = found_by_another_name(&found, program, &writable) {
                return Some(refused);
            }
            if !leaves {
                return None;
            }
            let places = match places_now() {
                Ok(places) => places,
                Err(refused) => return Some(refused.clone()),
            };
            let in_the_system = in_the_system(&request.executable.canonical_path);
            if other_names == OtherNames::Refused || !in_the_system {
                if let Some(refused) = other_names_refusal(&request) {
                    return Some(refused);
                }
            }
            inner.refusal(&request, &execution, places)
        })
        .await
        .unwrap_or_else(|error| {
            Some(format!(
                "escalation refused: its check did not finish: {error}"
            ))
        })
    }

    /// Why this escalation, which leaves the sandbox, must not happen: it
    /// would leave with a file the sandbox could have written (the
    /// program, or the interpreter its `#!` line names), or one that
    /// cannot be checked.
    fn refusal(
        &self,
        request: &ExecContext,
        execution: &Execution,
        places: &WritablePlaces<'_>,
    ) -> Option<String> {
        places.view?;
        let writable = |path: &Path| places.writable(path);
        // Said as it is: a probe was told a system binary was "writable from
        // the sandbox" when a skill's grant of `/` could write it.
        let writable_how = |paths: &[&Path]| match paths
            .iter()
            .any(|path| places.by_the_sandbox(path))
        {
            true => "writable from the sandbox",
            false => {
                "writable under a grant this session knows of (a skill's or a rule's profile's, \
                 known from its start, or one a command was given)"
            }
        };
        let program = &request.executable.canonical_path;
        if writable(program) {
            return Some(format!(
                "escalation refused: {} is {}",
                program.display(),
                writable_how(&[program])
            ));
        }
        let writable_roots = places.roots();
        if let Some(planted) =
            self.planted(request, program, &request.argv, &writable, &writable_roots)
        {
            return Some(planted);
        }
        if matches!(execution, Execution::Permissions(_)) {
            let cwd = match &request.working_directory {
                Ok(directory) => directory.canonical_path.as_path(),
                Err(_) => Path::new("/"),
            };
            if let Some(planted) = planted_home(
                &home_variables(&request.escalation_env),
                cwd,
                &writable,
                &writable_roots,
            ) {
                return Some(planted);
            }
        }
        self.script_refusal(request, &writable, &writable_how, &writable_roots)
    }

    /// Why an escalated script must not leave the sandbox: what its `#!`
    /// line runs in the end (through `env`, a program found in the `PATH`
    /// the child gets, and the `#!` lines of programs that are scripts
    /// themselves, as the kernel follows them), judged as if it were
    /// escalated itself. `None` for a program with no `#!` line.
    fn script_refusal(
        &self,
        request: &ExecContext,
        writable: &dyn Fn(&Path) -> bool,
        writable_how: &dyn Fn(&[&Path]) -> &'static str,
        writable_roots: &[PathBuf],
    ) -> Option<String> {
        let program = &request.executable.canonical_path;
        let shebang = match shebang_of(program) {
            Ok(None) => return None,
            Ok(Some(shebang)) => shebang,
            Err(error) => {
                return Some(format!(
                    "escalation refused: cannot read {} to check its #! line: {error}",
                    program.display()
                ))
            }
        };
        let (interpreter, canonical) = match interpreter_of(program, &shebang) {
            Ok(found) => found,
            Err(refused) => return Some(refused),
        };
        if writable(&canonical) || writable(&interpreter) {
            return Some(format!(
                "escalation refused: {}'s interpreter {} is {}",
                program.display(),
                canonical.display(),
                writable_how(&[&canonical, &interpreter])
            ));
        }
        let child_path = std::env::join_paths(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .filter(|dir| dir.is_absolute() && !writable(dir)),
        )
        .unwrap_or_default();
        let (mut interpreter, mut canonical, mut shebang, mut script) =
            (interpreter, canonical, shebang, program.clone());
        let mut args = request.argv.get(1..).unwrap_or_default().to_vec();
        // The kernel follows five scripts of scripts, the command's among
        // them (the launch plan does too: review 44).
        for _ in 0..5 {
            let interpreted = match interpreted(
                &interpreter,
                &canonical,
                shebang.argument.as_deref(),
                &script,
                &args,
                &child_path,
            ) {
                Ok(interpreted) => interpreted,
                Err(why) => {
                    return Some(format!(
                        "escalation refused: {}'s #! line: {why}",
                        program.display()
                    ))
                }
            };
            let runs = match std::fs::canonicalize(&interpreted.program) {
                Ok(runs) if !writable(&runs) && !writable(&interpreted.program) => runs,
                Ok(runs) => {
                    return Some(format!(
                        "escalation refused: {}'s #! line runs {}, which is {}",
                        program.display(),
                        runs.display(),
                        writable_how(&[&runs, &interpreted.program])
                    ))
                }
                Err(error) => {
                    return Some(format!(
                        "escalation refused: {}'s #! line runs {}: {error}",
                        program.display(),
                        interpreted.program.display()
                    ))
                }
            };
            if let Some(why) = runs_another(&runs) {
                return Some(format!(
                    "escalation refused: {}'s #! line: {why}",
                    program.display()
                ));
            }
            // The program written through another name (a review rewrote
            // a script's interpreter through its hard link).
            if !in_the_system(&runs) {
                if let Some(refused) = other_names_of(&runs) {
                    return Some(refused);
                }
            }
            let inner = match shebang_of(&runs) {
                Ok(inner) => inner,
                Err(error) => {
                    return Some(format!(
                        "escalation refused: cannot read {} to check its #! line: {error}",
                        runs.display()
                    ))
                }
            };
            // A runner that is a script itself (a version manager's shim)
            // is judged whole; a bare one by what it reads beyond its
            // script only; a program the table does not know, and no
            // runner, is refused wherever it runs (fail closed: `env -S
            // prlimit make` ran a planted makefile, and `awk -f` the
            // program its arguments named, reviews found).
            let refused = match (Runner::of(&runs), &inner) {
                (Some(runner), None) if runner.reads_only_its_script(&interpreted.options) => self
                    .planted_configuration(request, &runs, writable, writable_roots)
                    .or_else(|| modules_refusal(runner, &runs, &script, writable)),
                // `bash -l`, `python3 -i`: what they read besides is theirs
                // to know.
                (Some(_), None) => Some(format!(
                    "escalation refused: {}'s #! line gives {} options the check does not \
                     follow",
                    program.display(),
                    runs.display()
                )),
                // A script named as a program the table knows: a version
                // manager's shim, judged as that program, which the
                // refusal must say (a probe's pyenv shim was refused for
                // what python3 reads).
                (_, Some(_)) if in_table(&runs) => self
                    .planted(request, &runs, &interpreted.argv, writable, writable_roots)
                    .map(|refused| stand_in_refusal(program, &runs, &refused)),
                _ if in_table(&runs) => {
                    self.planted(request, &runs, &interpreted.argv, writable, writable_roots)
                }
                _ => Some(format!(
                    "escalation refused: {}'s #! line runs {}, which the check does not \
                     know: what it reads besides (files its arguments name, its own \
                     configuration) cannot be judged",
                    program.display(),
                    runs.display()
                )),
            };
            if refused.is_some() {
                return refused;
            }
            // No `#!` line: the program the kernel runs at last.
            let inner = inner?;
            (interpreter, canonical) = match interpreter_of(&runs, &inner) {
                Ok(found) => found,
                Err(refused) => return Some(refused),
            };
            args = interpreted.argv[1..].to_vec();
            shebang = inner;
            script = runs;
        }
        Some(format!(
            "escalation refused: {}'s #! lines lead through more interpreters than the kernel follows",
            program.display()
        ))
    }

    /// Why the program would run instructions the sandbox could have
    /// planted (only for programs the table in `planted.rs` knows).
    fn planted(
        &self,
        request: &ExecContext,
        program: &Path,
        argv: &[OsString],
        writable: &dyn Fn(&Path) -> bool,
        writable_roots: &[PathBuf],
    ) -> Option<String> {
        let cwd = match &request.working_directory {
            Ok(directory) => directory.canonical_path.as_path(),
            // The server will not escalate it anyway; say why here too.
            Err(reason) => {
                return planted_instructions(
                    &PlantedRequest {
                        program,
                        argv,
                        cwd: Path::new("/"),
                        env: &request.env,
                        writable_roots,
                    },
                    &|_| true,
                )
                .map(|_| format!("escalation refused: cannot tell where it would run: {reason}"))
            }
        };
        planted_instructions(
            &PlantedRequest {
                program,
                argv,
                cwd,
                env: &request.env,
                writable_roots,
            },
            writable,
        )
    }

    /// [`planted_configuration`] for `program`, where the request runs.
    fn planted_configuration(
        &self,
        request: &ExecContext,
        program: &Path,
        writable: &dyn Fn(&Path) -> bool,
        writable_roots: &[PathBuf],
    ) -> Option<String> {
        let cwd = match &request.working_directory {
            Ok(directory) => directory.canonical_path.as_path(),
            Err(_) => Path::new("/"),
        };
        // The environment the escalated child starts from, not what the
        // shell exported (a `HOME` the sandbox chose is not the child's).
        let env: Vec<OsString> = request
            .escalation_env
            .iter()
            .map(|(name, value)| {
                let mut entry = name.clone();
                entry.push("=");
                entry.push(value);
                entry
            })
            .collect();
        planted_configuration(
            &PlantedRequest {
                program,
                argv: &request.argv,
                cwd,
                env: &env,
                writable_roots,
            },
            writable,
        )
    }

    /// The session cache, else the approver.
    async fn approved_or_asked(
        &self,
        request: &ExecContext,
        key: ApprovalKey,
        approval: ApprovalRequest,
        execution: Execution,
        rule: Option<RuleRef>,
    ) -> Verdict {
        // Nobody is asked about what cannot happen: an escalation from a
        // working directory the server could not hold does not start,
        // whatever the answer. (A prompted command asked about as the
        // session's sandbox runs in place, where no directory is held.)
        let runs_in_place = matches!(approval.reason, ApprovalReason::RuleInPlace { .. });
        if let (Err(reason), false) = (&request.working_directory, runs_in_place) {
            return Verdict {
                decision: Decision::Deny {
                    reason: format!("not escalated: {reason}"),
                },
                provenance: Provenance {
                    decided_by: match rule {
                        Some(_) => DecidedBy::Rule,
                        None => DecidedBy::Default,
                    },
                    rule,
                    note: Some("no one was asked: the escalation could not start".into()),
                    ..Provenance::default()
                },
            };
        }
        let cached = self
            .approved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key);
        if cached {
            return Verdict {
                decision: Decision::Escalate(execution),
                provenance: Provenance {
                    decided_by: DecidedBy::SessionCache,
                    rule,
                    ..Provenance::default()
                },
            };
        }
        let question = QuestionKey {
            approval: key.clone(),
            argv: approval.argv.clone(),
            cwd: approval.cwd.clone(),
        };
        // Said before the question goes out: if the request is withdrawn
        // while it waits, its record still names the rule that asked.
        request.question.asked(rule.clone());
        let (answer, waited, shared) = self
            .ask(Some(question), &approval, Some(request.peer.pid))
            .await;
        let mut provenance = self.answered(&answer, waited, rule);
        if shared {
            // One answer, one keypress, for every identical request that
            // was pending: the record says which were not the one asked
            // (probe 128 read five approvals by a person, one of them given).
            provenance.note_after(SHARED_ANSWER);
        }
        let person = provenance.decided_by == DecidedBy::User;
        let declined = if person {
            "declined by the approver".to_owned()
        } else {
            format!("declined: {NOBODY_IS_ASKED}")
        };
        let decision = match answer {
            ApprovalAnswer::ApproveForSession => {
                self.approved
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key);
                // Probe 184: one not used again left no trace of standing.
                if person {
                    provenance.note_before(STANDING_ANSWER);
                }
                Decision::Escalate(execution)
            }
            ApprovalAnswer::ApproveOnce => Decision::Escalate(execution),
            // Part of the grants: only those, never the rest.
            ApprovalAnswer::ApprovePartly(granted) => match execution {
                Execution::Permissions(asked) => {
                    Decision::Escalate(Execution::Permissions(asked.intersected_with(&granted)))
                }
                // Nothing to take part of: declined.
                _ => Decision::Deny {
                    reason: "declined by the approver (a partial answer to a whole request)".into(),
                },
            },
            ApprovalAnswer::Decline | ApprovalAnswer::DeclineForSession => {
                Decision::Deny { reason: declined }
            }
            ApprovalAnswer::Unanswered { reason } => Decision::Deny {
                reason: nobody_answered(&reason),
            },
            // The command the person was shown stops; another that shared
            // its question is only declined (probe 206: one stop killed
            // every command that had asked the same).
            ApprovalAnswer::Abort if shared => Decision::Deny {
                reason: STOPPED_ANOTHER.into(),
            },
            ApprovalAnswer::Abort => {
                // The stop makes the asker go away: not a withdrawal.
                request.question.answered();
                // Off the thread that serves every session's decisions:
                // the kill may wait on a command's start and walk `/proc`.
                // Done before the asker hears its answer all the same.
                let (clock, asker) = (self.clock.clone(), request.peer.pid);
                let stopping = tokio::task::spawn_blocking(move || abort_command(&clock, asker));
                if stopping.await.is_err() {
                    tracing::warn!("stopping a command at a person's answer failed");
                }
                Decision::Deny {
                    reason: "aborted by the approver".into(),
                }
            }
        };
        Verdict {
            decision,
            provenance,
        }
    }

    /// Who decided, given the approver's `answer` after `waited`, to a
    /// question `rule` (if any) asked. Answered by no one (`DenyAll`,
    /// `ApproveAll`): the rule's (or the default's) decision, not a
    /// person's.
    fn answered(
        &self,
        answer: &ApprovalAnswer,
        waited: std::time::Duration,
        rule: Option<RuleRef>,
    ) -> Provenance {
        let person =
            self.approver.asks_a_person() && !matches!(answer, ApprovalAnswer::Unanswered { .. });
        Provenance {
            decided_by: match (person, &rule) {
                (true, _) => DecidedBy::User,
                (false, Some(_)) => DecidedBy::Rule,
                (false, None) => DecidedBy::Default,
            },
            rule,
            approval_wait: person.then_some(waited),
            // A question for a person may go unanswered (no terminal, a
            // client whose prompt failed): no person decided, yet the
            // approver is not one that answers alone.
            note: match (person, self.approver.asks_a_person()) {
                (true, _) => None,
                (false, true) => Some("the question was for a person, and no answer came".into()),
                (false, false) => {
                    Some("no person was asked: the session's approver answers alone".into())
                }
            },
        }
    }

    /// Asks the approver, once for identical requests in flight. Returns
    /// the answer, how long it took, and whether it was another request's:
    /// one identical to this one, pending at the same time, whose question
    /// this one shared.
    /// `requester`: the process that asked, whose command's clock the
    /// question holds (`None`: every command's).
    async fn ask(
        &self,
        key: Option<QuestionKey>,
        approval: &ApprovalRequest,
        requester: Option<i32>,
    ) -> (ApprovalAnswer, std::time::Duration, bool) {
        let _pending = self.clock.pending(requester);
        let asked_here = std::sync::atomic::AtomicBool::new(false);
        let ask = || async {
            asked_here.store(true, std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            let answer = self.approver.approve(approval).await;
            (answer, started.elapsed())
        };
        let Some(key) = key else {
            let (answer, waited) = ask().await;
            return (answer, waited, false);
        };
        let cell = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if !pending.contains_key(&key) && pending.len() >= QUESTIONS_IN_FLIGHT {
                let answer = ApprovalAnswer::Unanswered {
                    reason: too_many_questions(),
                };
                return (answer, std::time::Duration::ZERO, false);
            }
            // Each waits with the server's descriptors of its request: a
            // thousand identical ones held all but three of 1024 while
            // their question stayed open (probe 237).
            let waiting: usize = pending
                .values()
                .map(|cell| Arc::strong_count(cell).saturating_sub(1))
                .sum();
            if waiting >= REQUESTS_WAITING {
                let answer = ApprovalAnswer::Unanswered {
                    reason: too_many_waiting(),
                };
                return (answer, std::time::Duration::ZERO, false);
            }
            pending.entry(key.clone()).or_default().clone()
        };
        let mut waiting = WaitingForAnswer::new(&self.pending, key, cell);
        let joined = Instant::now();
        let (answer, asked_for) = waiting.cell.get_or_init(ask).await.clone();
        waiting.answered = true;
        let shared = !asked_here.load(std::sync::atomic::Ordering::Relaxed);
        // A request that joined a question waited from then, not for as
        // long as the question was asked (probe 234: twenty records said
        // the first one's time).
        let waited = match shared {
            true => joined.elapsed(),
            false => asked_for,
        };
        (answer, waited, shared)
    }
}

/// Why a request is declined whose question another command asked, and
/// the person stopped that command.
const STOPPED_ANOTHER: &str =
    "declined by the approver, who stopped the command that asked the same question";

/// The note of a decision that took the answer to an identical request
/// pending at the same time.
const SHARED_ANSWER: &str = "the answer to an identical request asked at the same time";

/// The note on a decision a person approved for the rest of the session:
/// the same request later is decided by that answer (`session-cache`).
const STANDING_ANSWER: &str = "approved for the rest of the session";

/// Whether an escalation takes a program that has other names (hard
/// links): for a skill's script, which its grants follow by where it
/// lies, they are refused; for a rule's, outside the system's directories,
/// whose programs have such names of their own (`/usr/bin/perl`,
/// `gunzip`) that no session can write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OtherNames {
    InSystemDirectories,
    Refused,
}

/// Where a distribution installs programs.
const SYSTEM_DIRECTORIES: [&str; 8] = [
    "/usr/",
    "/bin/",
    "/sbin/",
    "/lib/",
    "/lib64/",
    "/opt/",
    "/nix/store/",
    "/snap/",
];

/// Whether `program` (canonical) lies where programs are installed
/// (`/usr/local` too: git built there has 143 names; a workspace under
/// `/usr` goes unchecked, a limit the README states).
pub(crate) fn in_the_system(program: &Path) -> bool {
    SYSTEM_DIRECTORIES
        .iter()
        .any(|dir| program.starts_with(dir))
}

/// [`other_names_refusal`] for an interpreter, by path.
fn other_names_of(program: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(program) {
        // A directory's links are its entries' (probe 167: `#!/etc` was
        // refused as a file of 74 names).
        Ok(meta) if !meta.is_file() => Some(format!(
            "escalation refused: {} is not a file that can be executed",
            program.display()
        )),
        Ok(meta) if meta.nlink() > 1 => Some(format!(
            "escalation refused: {} has {} names (hard links); the sandbox might write it \
             through another",
            program.display(),
            meta.nlink()
        )),
        Ok(_) => None,
        Err(error) => Some(format!(
            "escalation refused: {}: {error}",
            program.display()
        )),
    }
}

/// `refused` (the refusal of `runs` as the program of its name) for a
/// `#!` line that leads to `runs`, a script standing in for that program.
fn stand_in_refusal(program: &Path, runs: &Path, refused: &str) -> String {
    let name = runs
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    format!(
        "escalation refused: {}'s #! line runs {}, a script standing in for {name} (a \
         version manager's shim, which may choose what runs from files in the working \
         directory and those above), judged as {name}: {}; a #! line that names the \
         interpreter's own path is judged by its script alone",
        program.display(),
        runs.display(),
        refused
            .strip_prefix("escalation refused: ")
            .unwrap_or(refused)
    )
}

/// Why a bare runner would still load what the sandbox wrote: node
/// requires from `node_modules` in its script's directory and every one
/// above; python imports from its script's directory.
fn modules_refusal(
    runner: Runner,
    runs: &Path,
    script: &Path,
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let directory = script.parent()?;
    let reaches: Vec<&Path> = match runner {
        Runner::Node => directory.ancestors().collect(),
        Runner::Python => vec![directory],
        Runner::Perl | Runner::Ruby | Runner::Shell => Vec::new(),
    };
    let found = reaches.into_iter().find(|place| writable(place))?;
    Some(format!(
        "escalation refused: {} loads modules from {}, which the sandbox can write",
        runs.file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
        found.display()
    ))
}

/// Why a program with other names is not escalated: the check of what the
/// sandbox can write goes by path, and a hard link in a writable root (a
/// package manager's link mode, `cp -al`) is the same file under a name
/// it can write through (a probe rewrote an approved skill script so).
/// System programs have such names (`/usr/bin/perl`, `gunzip`): not for
/// them.
fn other_names_refusal(request: &ExecContext) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let program = &request.executable.canonical_path;
    match std::fs::metadata(program) {
        Ok(meta)
            if meta.dev() == request.executable.device
                && meta.ino() == request.executable.inode
                && meta.nlink() <= 1 =>
        {
            None
        }
        Ok(meta) if meta.nlink() > 1 => Some(format!(
            "escalation refused: {} has {} names (hard links); the sandbox might write it \
             through another",
            program.display(),
            meta.nlink()
        )),
        Ok(_) => Some(format!(
            "escalation refused: {} was replaced since it was checked",
            program.display()
        )),
        Err(error) => Some(format!(
            "escalation refused: {}: {error}",
            program.display()
        )),
    }
}

/// Why an escalation must not run the program the shell found through a
/// link: it runs under its canonical path (`argv[0]` included, so that a
/// program that acts by its name runs what the rules saw; a script reads
/// itself as `/dev/fd/N`), which is not what the shell was asked for
/// (probe 227) when
///
/// - the link sits where the sandbox can write, by its path or as the
///   kernel resolves it (a virtual environment's `bin/python`, whose
///   interpreter finds its environment by the path it is run by): run
///   under its canonical path, it is the system's interpreter with the
///   system's packages;
/// - the link's name is not the program's but for a version or a target
///   triple the program's has ([`execgate_rules::runs_as_itself`]: `xzcat`
///   to `xz`, `view` to `vim.basic`, `pkill` to `pgrep`): the program may
///   act by that name (`xz` run as `xz` compressed the file `xzcat` was to
///   print). A script also goes by its name with an extension or a part
///   after a dash (`npm` to `npm-cli.js`), but not by another
///   (`xzegrep` to `xzgrep`, which reads its mode from `$0`: review 230).
///
/// Either runs in place, as the shell found it. `found` is the absolute
/// path the shell found, `program` its canonical path, `writable` whether
/// the session's sandbox (or a grant it made) can write a path.
pub fn found_by_another_name(
    found: &Path,
    program: &Path,
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    // `/w/./id` is `/w/id`.
    let found: PathBuf = found.components().collect();
    if found == program {
        return None;
    }
    let place = found.parent().unwrap_or(Path::new("/"));
    let writable_place = match std::fs::canonicalize(place) {
        Ok(resolved) => writable(place) || writable(&resolved),
        // Where it cannot be told, as if it were.
        Err(_) => true,
    };
    if writable_place {
        return Some(format!(
            "escalation refused: {} leads to {} from a directory writable from the sandbox, \
             and an escalation would run {} without what that place sets up (a virtual \
             environment's python, its environment); run {} itself to escalate it",
            found.display(),
            program.display(),
            program.display(),
            program.display()
        ));
    }
    let found_name = found.file_name().unwrap_or_default();
    let name = program.file_name().unwrap_or_default().to_string_lossy();
    let as_itself = found_name
        .to_str()
        .is_some_and(|found_name| execgate_rules::runs_as_itself(found_name, program));
    if as_itself {
        return None;
    }
    let refused = |why: &str| {
        Some(format!(
            "escalation refused: {} is {} by another name, and {why}; run {} itself to \
             escalate it",
            found.display(),
            program.display(),
            program.display(),
        ))
    };
    match shebang_of(program) {
        Ok(Some(_)) => {
            let its_own = found_name.to_str().is_some_and(|found_name| {
                name.strip_prefix(found_name)
                    .is_some_and(|rest| rest.starts_with(['.', '-', '_']))
            });
            match its_own {
                true => None,
                false => refused(
                    "a script may act by the name it is run by, where an escalated one reads \
                     itself as /dev/fd/N",
                ),
            }
        }
        Ok(None) => refused(&format!(
            "a program may act by the name it is run by, where an escalation runs it as {name}"
        )),
        Err(error) => Some(format!(
            "escalation refused: cannot read {} to check its #! line: {error}",
            program.display()
        )),
    }
}

/// Where the session's sandbox and the grants the session knows of can
/// write, by every name the host's mounts give a path: a bind mount shows
/// the same files under another name, which a check by path must know (a
/// probe's make ran a Makefile the sandbox wrote, from the workspace's
/// other mount point). The mounts as they are now, at each decision. One
/// answer for every check of an escalation: the link it was found by, the
/// program, what it runs and reads.
struct WritablePlaces<'a> {
    view: Option<&'a ResolvedPolicy>,
    granted: Vec<PathBuf>,
    roots: Vec<PathBuf>,
    aliases: MountAliases,
}

impl<'a> WritablePlaces<'a> {
    /// `Err` says why nothing can be escalated: the mounts cannot be read.
    fn of(view: Option<&'a ResolvedPolicy>, granted: Vec<PathBuf>) -> Result<Self, String> {
        let roots: Vec<PathBuf> = view
            .iter()
            .flat_map(|view| view.rules())
            .filter(|rule| rule.access == Access::Write)
            .map(|rule| rule.path.clone())
            .chain(granted.iter().cloned())
            .collect();
        let aliases = MountAliases::of(&roots);
        if aliases.unknown() {
            return Err(
                "escalation refused: the host's mounts cannot be read now, so the \
                 check cannot know every name the sandbox writes under; run it again"
                    .to_owned(),
            );
        }
        Ok(Self {
            view,
            granted,
            roots,
            aliases,
        })
    }

    /// Whether the session's sandbox can write `path`, by any of its names.
    fn by_the_sandbox(&self, path: &Path) -> bool {
        self.view.is_some_and(|view| {
            view.may_write(path)
                || self
                    .aliases
                    .other_names(path)
                    .any(|name| view.may_write(&name))
        })
    }

    /// Whether the sandbox or a grant the session knows of can write
    /// `path`, by any of its names.
    fn writable(&self, path: &Path) -> bool {
        self.by_the_sandbox(path) || self.aliases.under_any(path, &self.granted)
    }

    /// The writable roots, and the other names of what they hold.
    fn roots(&self) -> Vec<PathBuf> {
        self.roots
            .iter()
            .cloned()
            .chain(self.aliases.aliases().map(Path::to_path_buf))
            .collect()
    }
}

/// Whether `execution` takes the request out of its sandbox: not in the
/// session's own (`TurnDefault`), and not where there is no sandbox to
/// leave (the shell runs unconfined anyway).
fn leaves_the_sandbox(request: &ExecContext, execution: &Execution) -> bool {
    *execution != Execution::TurnDefault && request.sandbox.is_some()
}

/// A prompted command whose escalation was refused, asked about as the
/// session's sandbox: approved, it runs in place (that sandbox, the shell's
/// own descriptors and environment); declined, it does not run. The record
/// says why it was not escalated either way.
fn in_place_once_approved(verdict: Verdict, refused: String) -> Verdict {
    let Verdict {
        decision,
        mut provenance,
    } = verdict;
    provenance.note_before(refused);
    Verdict {
        decision: match decision {
            Decision::Escalate(_) => Decision::Run,
            other => other,
        },
        provenance,
    }
}

fn run_instead(mut provenance: Provenance, why: String) -> Verdict {
    provenance.note = Some(why);
    Verdict {
        decision: Decision::Run,
        provenance,
    }
}

/// The interpreter `script`'s `#!` line names, as written and resolved;
/// `Err` is the refusal of one that is relative or cannot be resolved.
fn interpreter_of(
    script: &Path,
    shebang: &execgate_protocol::Shebang,
) -> Result<(PathBuf, PathBuf), String> {
    let interpreter = PathBuf::from(&shebang.interpreter);
    if !interpreter.is_absolute() {
        return Err(format!(
            "escalation refused: {} names a relative #! interpreter {}",
            script.display(),
            interpreter.display()
        ));
    }
    match std::fs::canonicalize(&interpreter) {
        Ok(canonical) => Ok((interpreter, canonical)),
        Err(error) => Err(format!(
            "escalation refused: {}'s interpreter {}: {error}",
            script.display(),
            interpreter.display()
        )),
    }
}

/// The `#!` line of `program` (`Ok(None)`: none).
fn shebang_of(program: &Path) -> std::io::Result<Option<execgate_protocol::Shebang>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut head = Vec::with_capacity(execgate_protocol::SHEBANG_LIMIT);
    // Never waiting: on a FIFO put in its place, nor on a lease.
    std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(program)?
        .take(execgate_protocol::SHEBANG_LIMIT as u64)
        .read_to_end(&mut head)?;
    Ok(execgate_protocol::parse_shebang(&head))
}

/// The roots a granted profile lets a shell write, as far as they can be
/// told without the session's context: special roots other than `:cwd`
/// count as everything.
/// The paths `granted` lets a sandbox write, resolved in `context` (its
/// special roots where the session's sandboxes have them). None when it
/// cannot be resolved: then the server cannot resolve the escalation's
/// sandbox either, and nothing runs with it.
fn granted_write_paths(granted: &PermissionProfile, context: &SandboxContext) -> Vec<PathBuf> {
    ResolvedPolicy::resolve(granted, context)
        .map(|policy| {
            policy
                .rules()
                .iter()
                .filter(|rule| rule.access == Access::Write)
                .map(|rule| rule.path.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn write_roots(granted: &PermissionProfile, cwd: &Path) -> Vec<PathBuf> {
    match granted {
        PermissionProfile::Managed { file_system, .. } => file_system
            .entries
            .iter()
            .filter(|entry| entry.access == Access::Write)
            .map(|entry| match &entry.target {
                FsTarget::Path(path) => path.as_path().to_path_buf(),
                FsTarget::Special(SpecialRoot::Cwd) => cwd.to_path_buf(),
                _ => PathBuf::from("/"),
            })
            .collect(),
        _ => vec![PathBuf::from("/")],
    }
}

/// `extra` as a person is shown it and a record names it: as the
/// command gets it, added to the session's sandbox
/// ([`ResolvedPolicy::granted_with`]); as written when there is none.
fn as_granted(request: &ExecContext, extra: &PermissionProfile) -> PermissionProfile {
    request
        .sandbox
        .as_ref()
        .map_or_else(|| extra.clone(), |session| session.granted_with(extra))
}

/// Stops the command that asked, whole: the command the asking process is
/// part of, which a person means (probe 201: only
/// the asker's own group was killed, and a command behind `timeout` or
/// `setsid` went on, and asked again); the asker's own group where no
/// command is known (a program a sandbox kept ahead of its escalation
/// runs, or, without cgroups, one an escalation started). Never our group.
fn abort_command(clock: &ApprovalClock, pid: i32) {
    use nix::unistd::{getpgid, getpgrp, Pid};
    let group = match clock.abort(pid).and_then(|command| {
        let group = i32::try_from(command.pid).ok()?;
        Some((group, command))
    }) {
        Some((group, command)) => {
            // Each process of it, before the asker hears its answer: killed
            // by its group alone, the command's sandbox ends as its init
            // follows bubblewrap, and a shell there could see its child end
            // first and go on (`timeout`'s caller printed).
            let CommandToStop { pidfd, cgroup, .. } = command;
            crate::tree::kill_command(Some(&pidfd), Some(group), cgroup.as_ref());
            Pid::from_raw(group)
        }
        None => match getpgid(Some(Pid::from_raw(pid))) {
            Ok(group) => group,
            Err(_) => return,
        },
    };
    if group != getpgrp() && group.as_raw() > 1 {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::approval::ApprovalFuture;
    use std::time::Duration;

    /// Probe 167: a `#!` line naming a directory was refused as a file of
    /// as many names as the directory has links.
    #[test]
    fn a_directory_is_no_file_of_many_names() {
        let dir = tempfile::tempdir().unwrap();
        let refused = other_names_of(dir.path()).unwrap();
        assert!(refused.contains("is not a file"), "{refused}");
        let file = dir.path().join("tool");
        std::fs::write(&file, "").unwrap();
        assert_eq!(other_names_of(&file), None);
        std::fs::hard_link(&file, dir.path().join("other")).unwrap();
        assert!(other_names_of(&file).unwrap().contains("2 names"));
    }

    /// Never answers: its questions are given up by their requesters.
    struct Silent;

    /// The question about an unsandboxed `touch ARG` in `/ws`, and its key.
    fn touch_question(arg: &str) -> (QuestionKey, ApprovalRequest) {
        let argv: Vec<OsString> = vec!["touch".into(), arg.into()];
        let request = ApprovalRequest {
            program: "/usr/bin/touch".into(),
            argv: argv.clone(),
            cwd: "/ws".into(),
            reason: ApprovalReason::RequestedPermissions {
                justification: None,
            },
            execution: Execution::Unsandboxed,
            permissions: None,
        };
        let key = QuestionKey {
            approval: ApprovalKey::Command {
                program: request.program.clone(),
                device: 1,
                inode: 2,
                args: argv.clone(),
                cwd: request.cwd.clone(),
                directory: Some((3, 4)),
                execution: "Unsandboxed".into(),
            },
            argv,
            cwd: request.cwd.clone(),
        };
        (key, request)
    }

    impl Approver for Silent {
        fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> ApprovalFuture<'a> {
            Box::pin(std::future::pending())
        }
    }

    /// A probe's sandbox raised 6,600 distinct questions in seconds. Past
    /// [`QUESTIONS_IN_FLIGHT`] waiting at once, a new one is not put; one
    /// that joins a question already waiting still waits for its answer.
    /// From a review: a bare node script, whose own directory the sandbox
    /// could not write, required a module the sandbox put in the
    /// `node_modules` of a directory above it.
    #[test]
    fn bare_runners_do_not_load_modules_the_sandbox_wrote() {
        let writable = |path: &Path| path == Path::new("/w");
        let script = Path::new("/w/scripts/deploy.js");
        let node = Path::new("/usr/bin/node");
        assert!(modules_refusal(Runner::Node, node, script, &writable).is_some());
        // Python reads the script's own directory only.
        assert!(modules_refusal(Runner::Python, node, script, &writable).is_none());
        let in_writable = Path::new("/w/deploy.py");
        assert!(modules_refusal(Runner::Python, node, in_writable, &writable).is_some());
        assert!(modules_refusal(Runner::Shell, node, in_writable, &writable).is_none());
    }

    /// Probe 224: the error told a library's author only of a config file.
    #[test]
    fn a_rule_on_an_undefined_profile_says_where_profiles_are_defined() {
        let rules = RuleSet::parse(
            Path::new("lib.rules"),
            "prefix_rule(pattern = [\"tool\"], execution = \"build\")\n",
        )
        .unwrap();
        let error = ExecPolicy::new(ExecPolicyConfig {
            rules: Arc::new(rules),
            ..ExecPolicyConfig::default()
        })
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
        assert!(
            error.starts_with("lib.rules:1: execution names profile \"build\""),
            "{error}"
        );
        assert!(
            error.ends_with("in ExecPolicyConfig's profiles)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn questions_past_the_bound_are_not_put() {
        let policy = ExecPolicy::new(ExecPolicyConfig {
            approver: Arc::new(Silent),
            ..ExecPolicyConfig::default()
        })
        .unwrap();
        let question = |index: usize| touch_question(&format!("{index}"));
        let inner = &policy.inner;
        let questions: Vec<_> = (0..=QUESTIONS_IN_FLIGHT).map(question).collect();
        let mut waiting: Vec<_> = questions[..QUESTIONS_IN_FLIGHT]
            .iter()
            .map(|(key, request)| Box::pin(inner.ask(Some(key.clone()), request, None)))
            .collect();
        for question in &mut waiting {
            let polled = tokio::time::timeout(Duration::from_millis(1), question.as_mut()).await;
            assert!(polled.is_err());
        }
        let (key, request) = &questions[QUESTIONS_IN_FLIGHT];
        let (answer, ..) = inner.ask(Some(key.clone()), request, None).await;
        assert!(
            matches!(&answer, ApprovalAnswer::Unanswered { reason } if reason.contains("already wait")),
            "{answer:?}"
        );
        // The same question as one waiting joins it.
        let (key, request) = &questions[0];
        let joined = tokio::time::timeout(
            Duration::from_millis(10),
            inner.ask(Some(key.clone()), request, None),
        )
        .await;
        assert!(joined.is_err(), "{joined:?}");
        // One gone, a new one is put.
        waiting.pop();
        let (key, request) = &questions[QUESTIONS_IN_FLIGHT];
        let put = tokio::time::timeout(
            Duration::from_millis(10),
            inner.ask(Some(key.clone()), request, None),
        )
        .await;
        assert!(put.is_err(), "{put:?}");
    }

    /// Probe 237: a thousand identical requests joined one question and
    /// held all but three of the server's 1024 descriptors while it stayed
    /// open. Past [`REQUESTS_WAITING`] waiting at once, joiners included,
    /// a request is declined unasked; one gone, another may wait.
    #[tokio::test]
    async fn requests_past_the_bound_do_not_wait() {
        let policy = ExecPolicy::new(ExecPolicyConfig {
            approver: Arc::new(Silent),
            ..ExecPolicyConfig::default()
        })
        .unwrap();
        let (key, request) = touch_question("same");
        let inner = &policy.inner;
        let mut waiting: Vec<_> = (0..REQUESTS_WAITING)
            .map(|_| Box::pin(inner.ask(Some(key.clone()), &request, None)))
            .collect();
        for question in &mut waiting {
            let polled = tokio::time::timeout(Duration::from_millis(1), question.as_mut()).await;
            assert!(polled.is_err());
        }
        // Answered at once; waiting, it would time out here.
        let (answer, ..) = tokio::time::timeout(
            Duration::from_secs(5),
            inner.ask(Some(key.clone()), &request, None),
        )
        .await
        .expect("declined unasked");
        assert!(
            matches!(&answer, ApprovalAnswer::Unanswered { reason } if reason.contains("requests of this session already wait")),
            "{answer:?}"
        );
        waiting.pop();
        let joined = tokio::time::timeout(
            Duration::from_millis(10),
            inner.ask(Some(key.clone()), &request, None),
        )
        .await;
        assert!(joined.is_err(), "{joined:?}");
    }

    /// A review: a question whose requesters all went away stayed among
    /// those in flight for the session; one still awaited by another
    /// requester stays, for it.
    #[tokio::test]
    async fn a_question_leaves_when_its_last_requester_goes() {
        let policy = ExecPolicy::new(ExecPolicyConfig {
            approver: Arc::new(Silent),
            ..ExecPolicyConfig::default()
        })
        .unwrap();
        let (key, request) = touch_question("x");
        let inner = &policy.inner;
        let in_flight = || inner.pending.lock().unwrap().len();
        let ask = || inner.ask(Some(key.clone()), &request, None);
        let given_up = tokio::time::timeout(Duration::from_millis(10), ask()).await;
        assert!(given_up.is_err());
        assert_eq!(in_flight(), 0);
        // Two wait; one goes: the question stays for the other.
        let mut first = Box::pin(ask());
        let mut second = Box::pin(ask());
        for waiting in [&mut first, &mut second] {
            let polled = tokio::time::timeout(Duration::from_millis(1), waiting.as_mut()).await;
            assert!(polled.is_err());
        }
        drop(first);
        assert_eq!(in_flight(), 1);
        drop(second);
        assert_eq!(in_flight(), 0);
    }
}
