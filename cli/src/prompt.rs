//! Approval prompts on the terminal.
//!
//! The prompt talks to `/dev/tty`, not stdout or stderr, which belong to
//! the command. While it waits, the command that asked is blocked in the
//! wrapper, so nothing of the shell's own output interleaves; one prompt is
//! shown at a time. An interactive shell's job owns the terminal meanwhile:
//! the prompt takes the foreground for itself and hands it back after.
//!
//! The command shares the terminal and can suspend its output
//! (`tcflow(TCOOFF)`), after which every write to it would wait. The prompt
//! resumes the output before it writes, writes without blocking, and
//! declines if the question cannot be written within [`WRITE_DEADLINE`].
//! Reading the answer waits for the person for as long as they take, but
//! stops when the request is abandoned (its session ended).

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use execgate_core_bridge::server::{Execution, QuestionFreezeError, QuestionFreezer, RuleRef};
use execgate_core_bridge::{
    ApprovalAnswer, ApprovalFuture, ApprovalReason, ApprovalRequest, Approver,
    NetworkApprovalRequest,
};
use execgate_network_proxy::{classify_from_here, AddressClass, Destination};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::termios::{
    tcflow, tcflush, tcgetattr, tcsetattr, FlowArg, FlushArg, InputFlags, LocalFlags, OutputFlags,
    SetArg, SpecialCharacterIndices, Termios,
};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp};

/// Asks on the controlling terminal.
pub struct TerminalApprover {
    one_at_a_time: tokio::sync::Mutex<()>,
    freezer: FreezerSlot,
    aborts: AbortScope,
}

/// How the approver freezes its session while it asks: set once the
/// session has started.
pub type FreezerSlot = Arc<OnceLock<QuestionFreezer>>;

/// Why a question is not asked in a session without a cgroup.
const UNFROZEN: &str = "the session has no cgroup to freeze its processes with, which share \
     this terminal and could draw another question over this one or take the keys that answer \
     it; run execgate where it can make one (as root, or in a delegated cgroup v2 subtree: \
     execgate doctor says which), or answer with --approval";

/// How long the session's processes may take to freeze before a question.
const FREEZE_LIMIT: Duration = Duration::from_secs(2);

impl TerminalApprover {
    pub fn new(freezer: FreezerSlot, aborts: AbortScope) -> TerminalApprover {
        TerminalApprover {
            one_at_a_time: tokio::sync::Mutex::default(),
            freezer,
            aborts,
        }
    }
}

impl Approver for TerminalApprover {
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        let lines = describe(request, Length::Cut);
        let whole = describe(request, Length::Whole);
        let (asks, choices) = exec_question(request);
        let question = Question {
            title: "approval needed",
            whole: (whole != lines).then_some(whole),
            lines,
            asks,
            choices,
            before_the_command: matches!(
                request.reason,
                ApprovalReason::RequestedPermissions { .. }
            ),
        };
        Box::pin(self.ask_in_turn(question))
    }

    fn approve_network<'a>(&'a self, request: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        let question = Question {
            title: "network access needed",
            lines: describe_network(request),
            whole: None,
            asks: format!(
                "connect to {} port {}?",
                shown_within(request.destination.to_string().as_ref(), PATH_SHOWN),
                request.port
            ),
            choices: NETWORK_CHOICES,
            before_the_command: false,
        };
        Box::pin(self.ask_in_turn(question))
    }
}

/// The question could not be put on the terminal: declined, as no one's
/// answer, and said (not with `eprintln!`: stderr may be the very terminal
/// that takes no output).
fn cannot_ask(error: &dyn std::fmt::Display) -> ApprovalAnswer {
    crate::stderr::line(&format!(
        "execgate: cannot ask on the terminal ({error}); declined"
    ));
    ApprovalAnswer::Unanswered {
        reason: format!("cannot ask on the terminal: {error}"),
    }
}

/// The answer to a question withdrawn before it was answered: nobody
/// waits for it any more, and nobody gave one.
fn withdrawn_unasked() -> ApprovalAnswer {
    ApprovalAnswer::Unanswered {
        reason: "the question was withdrawn before an answer".into(),
    }
}

impl TerminalApprover {
    /// Asks `question` once the prompts before it are answered.
    async fn ask_in_turn(&self, question: Question) -> ApprovalAnswer {
        let (_turn, queued) = match self.one_at_a_time.try_lock() {
            Ok(turn) => (turn, false),
            Err(_) => (self.one_at_a_time.lock().await, true),
        };
        // The write end lives as long as this future: once the request is
        // abandoned (its session ended or was dropped), the prompt's thread
        // sees the pipe close and stops waiting for a key. That thread is
        // one of the sessions' blocking threads (the approver is asked on
        // the thread sessions are served on), not the caller runtime's.
        let (abandoned, asking) = match std::io::pipe() {
            Ok(pipe) => pipe,
            Err(error) => return cannot_ask(&error),
        };
        let freezer = self.freezer.get().cloned();
        let aborts = self.aborts;
        let answer = tokio::task::spawn_blocking(move || {
            // Before the session is frozen: a frozen requester is seen gone
            // only if it was killed.
            match queued.then(|| abandoned_within(abandoned.as_fd(), QUEUED_GRACE)) {
                Some(Ok(true)) => return withdrawn_unasked(),
                Some(Err(error)) => return cannot_ask(&error),
                Some(Ok(false)) | None => {}
            }
            // The session's processes share the terminal: frozen, none can
            // draw over the question or take the keys that answer it. With
            // one that would not freeze, or none to freeze with, nobody is
            // asked (probe 246: without a cgroup, a background job of the
            // command took the answer's keys, and drew another program's
            // question over one for `tee`, which the answer let out).
            let _hold = match freezer.map(|freezer| freezer.hold(FREEZE_LIMIT)) {
                Some(Ok(hold)) => Some(hold),
                None | Some(Err(QuestionFreezeError::Unsupported))
                    if question.before_the_command =>
                {
                    None
                }
                None | Some(Err(QuestionFreezeError::Unsupported)) => return cannot_ask(&UNFROZEN),
                Some(Err(error)) => return cannot_ask(&error),
            };
            match ask(&question, aborts, abandoned.as_fd()) {
                Ok(Asked::Answered(answer)) => answer,
                // Nobody waits for the answer any more; nobody gave one
                // (probe 152: recorded as a person's decline).
                Ok(Asked::Abandoned) => withdrawn_unasked(),
                Err(error) => cannot_ask(&error),
            }
        })
        .await
        .unwrap_or_else(|error| cannot_ask(&error));
        drop(asking);
        answer
    }
}

/// What an answer that aborts stops, as the line written then says
/// (probe 152: "its processes are killed" was read as all of them).
#[derive(Debug, Clone, Copy)]
pub enum AbortScope {
    /// `execgate run`: the whole command.
    WholeCommand,
    /// `execgate shell`: the job that asked (the shell goes on, but for a
    /// `$(...)` typed at its prompt, which runs in the shell's own group:
    /// review 225).
    Job,
}

impl AbortScope {
    /// Written when the answer aborts.
    fn aborting(self) -> &'static str {
        match self {
            AbortScope::WholeCommand => {
                "execgate: aborting the command and everything it started\r\n"
            }
            AbortScope::Job => "execgate: aborting the job that asked\r\n",
        }
    }
}

/// The signal of the key that answered a question with an abort (0: none,
/// or `!`).
static ABORTED_BY_THE_KEY_OF: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The signal whose key (Ctrl-C: `SIGINT`, Ctrl-\: `SIGQUIT`) a person
/// aborted a command with at a question; `None` for `!`, or no abort.
pub fn abort_key_signal() -> Option<i32> {
    Some(ABORTED_BY_THE_KEY_OF.load(std::sync::atomic::Ordering::SeqCst))
        .filter(|&signal| signal != 0)
}

/// Written before the choices again after a line that answers nothing (a
/// typo, Ctrl-Z shown as `^Z`): repeated alone, they did not say why
/// (probe 219).
const NOT_AN_ANSWER: &str =
    "\x1b#5  execgate: not an answer: type the letter in brackets of one, then Enter\x1b[K\r\n";

/// Written when a question on the terminal is withdrawn: what is typed
/// next is the shell's, not an answer.
const WITHDRAWN: &str =
    "\r\nexecgate: question withdrawn: the command that asked is gone; nothing to answer\r\n";

/// How long a question that waited for its turn waits more before it is
/// drawn, for its requester to be seen gone: a pipeline aborted at the
/// question before it is killed whole, and its other questions are
/// withdrawn a moment later (probe 184: one was drawn below the shell's
/// next prompt, and its answer went to the shell).
const QUEUED_GRACE: Duration = Duration::from_millis(150);

/// How long writing the question (or the choices again, after an answer
/// that is none of them) may take before the request is declined.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// How a prompt ended.
enum Asked {
    Answered(ApprovalAnswer),
    /// The request was abandoned before an answer.
    Abandoned,
}

/// One prompt: what it is about, and the keys that answer it.
struct Question {
    title: &'static str,
    lines: Vec<String>,
    /// The question itself, on the line of the choices: what is approved
    /// stays beside the keys that approve it, however far the lines above
    /// scroll.
    asks: String,
    /// The lines uncut, when `lines` cut something: `v` shows them.
    whole: Option<Vec<String>>,
    choices: &'static [Choice],
    /// Asked before any process of the command runs (a permissions
    /// request): there is nothing to freeze yet.
    before_the_command: bool,
}

impl Question {
    /// What is written: the whole question, and the line of choices alone
    /// (written again after an answer that is none of them).
    fn text(&self) -> (String, String) {
        let mut labels: Vec<&str> = self.choices.iter().map(|choice| choice.label).collect();
        if self.whole.is_some() {
            labels.push(VIEW_LABEL);
        }
        // Each line single-width, and everything right of it and, at the
        // end, below it erased: nothing the command drew around the
        // question (a fake one below, an answer beside it) stays on the
        // screen with it.
        let choices = format!("\x1b#5  {} {}: \x1b[J", self.asks, labels.join("  "));
        let mut text = format!(
            "{TERMINAL_RESET}\r\n\x1b[J\x1b#5execgate: {}\x1b[K\r\n",
            self.title
        );
        for line in &self.lines {
            text.push_str(&format!("\x1b#5  {line}\x1b[K\r\n"));
        }
        text.push_str(&choices);
        (text, choices)
    }
}

/// The key that shows a question's lines uncut, and what the prompt calls
/// it.
const VIEW_KEY: &str = "v";
const VIEW_LABEL: &str = "[v] view it whole";

/// A key (and its spellings), what the prompt calls it, what it answers.
#[derive(Clone, Copy)]
struct Choice {
    keys: &'static [&'static str],
    label: &'static str,
    answer: fn() -> ApprovalAnswer,
}

/// The answer Ctrl-C (or Ctrl-\\) gives: abort where `choices` offer it;
/// a decline where they do not (probe 206: at a network question it said
/// it aborted the command, and only the connection was denied).
fn interrupted(choices: &[Choice]) -> ApprovalAnswer {
    let aborts = choices
        .iter()
        .any(|choice| matches!((choice.answer)(), ApprovalAnswer::Abort));
    match aborts {
        true => ApprovalAnswer::Abort,
        false => ApprovalAnswer::Decline,
    }
}

/// Empty input declines: a stray Enter must not approve.
const EXEC_CHOICES: &[Choice] = &[
    Choice {
        keys: &["y", "Y", "yes"],
        label: "[y] once",
        answer: || ApprovalAnswer::ApproveOnce,
    },
    Choice {
        keys: &["a", "A"],
        label: "[a] this command, for the session",
        answer: || ApprovalAnswer::ApproveForSession,
    },
    Choice {
        keys: &["n", "N", "no", ""],
        label: "[n] decline",
        answer: || ApprovalAnswer::Decline,
    },
    Choice {
        keys: &["!"],
        label: "[!] abort the command",
        answer: || ApprovalAnswer::Abort,
    },
];

/// A skill's script: what the session's answer covers is the script,
/// whatever its arguments and wherever it runs (probe 128: "this command"
/// read as the arguments shown).
const SKILL_CHOICES: &[Choice] = &[
    EXEC_CHOICES[0],
    Choice {
        keys: &["a", "A"],
        label: "[a] this script, any arguments, for the session",
        answer: || ApprovalAnswer::ApproveForSession,
    },
    EXEC_CHOICES[2],
    EXEC_CHOICES[3],
];

/// Grants asked for one command's shell: declined, the command still runs,
/// without them, and no answer is kept for the session.
const GRANT_CHOICES: &[Choice] = &[
    Choice {
        keys: &["y", "Y", "yes"],
        label: "[y] grant them",
        answer: || ApprovalAnswer::ApproveOnce,
    },
    Choice {
        keys: &["n", "N", "no", ""],
        label: "[n] decline: it runs without them",
        answer: || ApprovalAnswer::Decline,
    },
    EXEC_CHOICES[3],
];

const NETWORK_CHOICES: &[Choice] = &[
    Choice {
        keys: &["y", "Y", "yes"],
        label: "[y] allow once",
        answer: || ApprovalAnswer::ApproveOnce,
    },
    Choice {
        keys: &["a", "A"],
        label: "[a] allow for this session",
        answer: || ApprovalAnswer::ApproveForSession,
    },
    Choice {
        keys: &["n", "N", "no", ""],
        label: "[n] deny",
        answer: || ApprovalAnswer::Decline,
    },
    Choice {
        keys: &["d", "D"],
        label: "[d] deny this host for this session",
        answer: || ApprovalAnswer::DeclineForSession,
    },
];

/// The answer `line` (as typed, with its newline) gives, if it is one.
fn answer_of(choices: &[Choice], line: &str) -> Option<ApprovalAnswer> {
    let typed = line.trim();
    choices
        .iter()
        .find(|choice| choice.keys.contains(&typed))
        .map(|choice| (choice.answer)())
}

/// `text` as a person may safely read it: control characters (that could
/// move the cursor or rewrite the screen), Unicode's format characters
/// (bidirectional controls that reorder the line, zero-width ones that
/// hide), quotes and backslashes escaped, as `escape_debug` does, and each
/// byte that is not UTF-8 as `\xNN` (probe 128: shown as U+FFFD, it read as
/// a name that holds U+FFFD itself); the audit table shows arguments the
/// same way.
fn shown(text: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    crate::output::bytes_escaped(text.as_bytes())
}

/// The most characters of a path (the program, the directory) a prompt
/// shows at first.
const PATH_SHOWN: usize = 200;
/// About the most characters of a rule's or skill's name or justification
/// it shows: they come with a rules file or a skill, and a padded one
/// could scroll the real lines off and stand forged ones in their place.
const REASON_SHOWN: usize = 300;
/// About the most characters of all arguments together it shows at first:
/// each argument gets its share, its start and end kept. Padding could
/// otherwise scroll the facts that matter off the screen, and what
/// scrolled in their place would be the command's own text. What was cut,
/// `v` shows.
const ARGUMENTS_SHOWN: usize = 1000;
/// Arguments shown at most before the rest are counted, not shown: the
/// first ones and the last ones. `v` shows them all.
const ARGUMENTS_FIRST: usize = 12;
const ARGUMENTS_LAST: usize = 4;
/// About the length of the marker that stands for what was cut.
const CUT_MARKER: usize = 40;

/// How much of a command a description shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Long arguments and paths cut in the middle (and said so).
    Cut,
    /// Everything.
    Whole,
}

/// [`shown`], its middle cut out past `limit` characters (and said so).
fn shown_within(text: &std::ffi::OsStr, limit: usize) -> String {
    let shown = shown(text);
    let count = shown.chars().count();
    // The marker takes about 40 characters: cutting fewer saves nothing.
    if count <= limit.saturating_add(CUT_MARKER) {
        return shown;
    }
    let kept = limit / 2;
    let head: String = shown.chars().take(kept).collect();
    let tail: String = shown.chars().skip(count - kept).collect();
    format!(
        "{head}[... {} characters not shown ...]{tail}",
        count - 2 * kept
    )
}

/// A shown path, quoted when a space in it would blur where it ends.
fn quoted_if_spaced(shown: String) -> String {
    if shown.is_empty() || shown.contains(' ') {
        format!("'{shown}'")
    } else {
        shown
    }
}

/// The question on the line of an exec prompt's choices, and the choices,
/// as what is asked: a command, a skill's script, grants for a command.
fn exec_question(request: &ApprovalRequest) -> (String, &'static [Choice]) {
    if let ApprovalReason::RequestedPermissions { .. } = request.reason {
        return (
            "grant the permissions above to this command?".to_owned(),
            GRANT_CHOICES,
        );
    }
    let count = request.argv.len().saturating_sub(1);
    let asks = format!(
        "run {} with {count} argument{}?",
        quoted_if_spaced(shown_within(request.program.as_os_str(), PATH_SHOWN)),
        if count == 1 { "" } else { "s" }
    );
    match request.reason {
        ApprovalReason::Skill { .. } => (asks, SKILL_CHOICES),
        _ => (asks, EXEC_CHOICES),
    }
}

/// The line that names the rule a question comes from, and its
/// justification.
fn because_of_rule(rule: &RuleRef) -> String {
    match &rule.justification {
        Some(why) => format!(
            "because  rule {}: {}",
            shown_within(rule.id.as_ref(), REASON_SHOWN),
            shown_within(why.as_ref(), REASON_SHOWN)
        ),
        None => format!(
            "because  rule {}",
            shown_within(rule.id.as_ref(), REASON_SHOWN)
        ),
    }
}

/// What the prompt shows: one fact per line.
pub fn describe(request: &ApprovalRequest, length: Length) -> Vec<String> {
    let (path_limit, argument_limit) = match length {
        Length::Cut => {
            let count = request
                .argv
                .len()
                .saturating_sub(1)
                .clamp(1, ARGUMENTS_FIRST + ARGUMENTS_LAST);
            (PATH_SHOWN, ARGUMENTS_SHOWN / count)
        }
        Length::Whole => (usize::MAX, usize::MAX),
    };
    let mut lines = Vec::new();
    let arguments = request.argv.get(1..).unwrap_or_default();
    let hidden = match length {
        Length::Cut => arguments
            .len()
            .saturating_sub(ARGUMENTS_FIRST + ARGUMENTS_LAST),
        Length::Whole => 0,
    };
    let mut args = String::new();
    for (index, arg) in arguments.iter().enumerate() {
        if hidden > 0 && (ARGUMENTS_FIRST..ARGUMENTS_FIRST + hidden).contains(&index) {
            if index == ARGUMENTS_FIRST {
                args.push_str(&format!(" [... {hidden} arguments not shown ...]"));
            }
            continue;
        }
        args.push_str(&format!(" '{}'", shown_within(arg, argument_limit)));
    }
    lines.push(format!(
        "run      {}{args}",
        quoted_if_spaced(shown_within(request.program.as_os_str(), path_limit)),
    ));
    lines.push(format!(
        "in       {}",
        quoted_if_spaced(shown_within(request.cwd.as_os_str(), path_limit))
    ));
    lines.push(match &request.reason {
        ApprovalReason::Rule(rule) | ApprovalReason::RuleInPlace { rule, .. } => {
            because_of_rule(rule)
        }
        ApprovalReason::Skill {
            name,
            justification,
            ..
        } => format!(
            "because  it is a script of skill {}, which declares permissions{}",
            shown_within(name.as_ref(), REASON_SHOWN),
            justification
                .as_ref()
                .map(|why| format!(": {}", shown_within(why.as_ref(), REASON_SHOWN)))
                .unwrap_or_default()
        ),
        ApprovalReason::RequestedPermissions { justification } => format!(
            "because  the command asks for more permissions{}",
            justification
                .as_ref()
                .map(|why| format!(": {}", shown_within(why.as_ref(), REASON_SHOWN)))
                .unwrap_or_default()
        ),
        other => format!("because  {other:?}"),
    });
    // Why a prompted command would not leave the sandbox (probe 144: the
    // question said "in the session's sandbox", and not why).
    if let ApprovalReason::RuleInPlace { refused, .. } = &request.reason {
        lines.push(format!(
            "note     {}",
            shown_within(refused.as_ref(), REASON_SHOWN)
        ));
    }
    lines.push(match &request.execution {
        Execution::Unsandboxed => "as       unsandboxed (outside the sandbox)".to_owned(),
        Execution::TurnDefault => "as       in the session's sandbox".to_owned(),
        Execution::Permissions(_) => "as       in the session's sandbox plus:".to_owned(),
        other => format!("as       {other:?}"),
    });
    if let Some(grants) = &request.permissions {
        for grant in grants.added_grants() {
            lines.push(format!(
                "           {}",
                shown_within(grant.as_ref(), PATH_SHOWN)
            ));
        }
    }
    lines
}

/// What the network prompt shows: the destination exactly as it will be
/// decided (canonical), the protocol and the port, and why it asks.
pub fn describe_network(request: &NetworkApprovalRequest) -> Vec<String> {
    let mut lines = vec![
        format!(
            "connect  {}",
            shown(request.destination.to_string().as_ref())
        ),
        format!("port     {}", request.port),
        format!(
            "using    {}",
            match request.protocol.to_string().as_str() {
                "https" => "https (an HTTP CONNECT tunnel, usually TLS)".to_owned(),
                "http" => "http (a plain HTTP request)".to_owned(),
                other => other.to_owned(),
            }
        ),
    ];
    // An address outside the public internet is reached from the host:
    // say so, for a loopback address looks like the sandbox's own.
    if let Destination::Address(address) = &request.destination {
        if let AddressClass::NonPublic(range) = classify_from_here(*address) {
            lines.push(format!(
                "note     {range}, reached from this machine (not from inside the sandbox)"
            ));
        }
    }
    lines.push(match &request.rule {
        Some(rule) => because_of_rule(rule),
        None => "because  no domains entry or network rule decides it".to_owned(),
    });
    lines
}

fn ask(
    question: &Question,
    aborts: AbortScope,
    abandoned: BorrowedFd<'_>,
) -> std::io::Result<Asked> {
    // An open file description of our own: O_NONBLOCK on it does not reach
    // the command's descriptors for the same terminal.
    let tty = File::options()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open("/dev/tty")
        .map_err(|error| match error.raw_os_error() {
            // The kernel's words for it: "No such device or address".
            Some(code) if code == nix::errno::Errno::ENXIO as i32 => std::io::Error::other(
                "execgate has no terminal: --approval ask needs one; in scripts use \
                 --approval deny (or approve)",
            ),
            _ => error,
        })?;
    let _foreground = Foreground::take(&tty);
    let modes = SaneModes::set(&tty);
    // Keys typed before the question (meant for the command) must not
    // answer it.
    let _ = tcflush(tty.as_fd(), FlushArg::TCIFLUSH);
    // The command may have suspended the terminal's output (TCOOFF), which
    // would hold the question back, and the request with it, until someone
    // resumed it. The terminal is the person's who answers, and the prompt
    // must reach them: resume it. It stays resumed, since whether it was
    // suspended cannot be read back. A command that suspends it again
    // before the question is out gets the request declined at the deadline.
    // Off then on: a stop by the stop key (which a terminal's reply to a
    // query can carry, with a stop key the command chose) is undone too.
    let _ = tcflow(tty.as_fd(), FlowArg::TCOOFF);
    let _ = tcflow(tty.as_fd(), FlowArg::TCOON);
    let (mut text, choices) = question.text();
    let mut keys = Keys {
        ends: modes.interrupts.clone(),
        ..Keys::default()
    };
    loop {
        if let Ready::Abandoned = write_by(&tty, text.as_bytes(), abandoned, WRITE_DEADLINE)? {
            let _ = write_by(&tty, WITHDRAWN.as_bytes(), abandoned, WRITE_DEADLINE);
            return Ok(Asked::Abandoned);
        }
        let line = match keys.line(&tty, abandoned)? {
            Typed::Line(line) => line,
            Typed::End => return Ok(Asked::Answered(ApprovalAnswer::Decline)),
            Typed::HungUp => {
                return Ok(Asked::Answered(ApprovalAnswer::Unanswered {
                    reason: "the terminal hung up during the question".into(),
                }))
            }
            Typed::Abandoned => {
                let _ = write_by(&tty, WITHDRAWN.as_bytes(), abandoned, WRITE_DEADLINE);
                return Ok(Asked::Abandoned);
            }
        };
        let interrupt_key = line.bytes().find(|key| modes.interrupts.contains(key));
        let answer = match interrupt_key {
            Some(_) => Some(interrupted(question.choices)),
            None => answer_of(question.choices, &line),
        };
        if let Some(answer) = answer {
            if matches!(answer, ApprovalAnswer::Abort) {
                // The command's end (killed: status 137) does not say why.
                // An interrupt key ended no line: the echoed `^C` has the
                // cursor after it.
                let aborting = match interrupt_key {
                    Some(key) => {
                        ABORTED_BY_THE_KEY_OF
                            .store(modes.signal_of(key), std::sync::atomic::Ordering::SeqCst);
                        format!("\r\n{}", aborts.aborting())
                    }
                    None => aborts.aborting().to_owned(),
                };
                let _ = write_by(&tty, aborting.as_bytes(), abandoned, WRITE_DEADLINE);
            }
            return Ok(Asked::Answered(answer));
        }
        text = match (&question.whole, line.trim()) {
            (Some(whole), VIEW_KEY) => whole
                .iter()
                .map(|line| format!("\x1b#5  {line}\x1b[K\r\n"))
                .chain([choices.clone()])
                .collect(),
            _ => format!("{NOT_AN_ANSWER}{choices}"),
        };
    }
}

/// Written before a question: undoes what the command may have left set on
/// the terminal to hide the question, show another in its place, or keep
/// the answer from being typed. An unfinished string (a `DCS` would take
/// the whole question in), a held synchronized update, text
/// attributes (concealed, colours alike), the character set (a line
/// drawing set shown for letters), the colour palette, a scroll region
/// (the cursor kept where it is: `DECSTBM` homes it), wrapping
/// (off, a long line's end is never shown), insert mode, a hidden cursor;
/// key encodings that would send `y` and Enter as escape sequences. What a
/// terminal does not know it ignores. A line editor sets its own again.
const TERMINAL_RESET: &str = concat!(
    "\x18\x1b\\",  // any string (DCS, OSC, APC) ended
    "\x1b<\x1b%G", // ANSI mode (not VT52); UTF-8, so no 8-bit controls
    "\x1b[?2026l", // a synchronized update ended
    "\x1b[0m",     // attributes
    "\x1b(B\x0f",  // G0 is ASCII, and in use
    // The palette and default colours; the Linux console's palette.
    "\x1b]104\x07\x1b]110\x07\x1b]111\x07\x1b]R\x1b\\",
    // The whole screen scrolls, with no left and right margins; the cursor
    // stays where it was (a change of origin mode would move it home,
    // where the command knows the question would land; with the whole
    // screen as the region, origin mode moves nothing).
    "\x1b[?69l\x1b7\x1b[r\x1b8",
    "\x1b[?7h\x1b[4l\x1b[?25h", // wrapping, replace mode, cursor shown
    // Keys as typed: the keyboard unlocked, the keypad numeric, no kitty
    // keyboard flags, modifyOtherKeys, win32 input, focus or mouse
    // reports, or paste brackets around the answer.
    "\x1b[2l\x1b>\x1b[=0;1u\x1b[>4;0m\x1b[?9001l\x1b[?1004l",
    "\x1b[?9l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l",
);

/// What waiting on the terminal came to.
enum Ready {
    Ready,
    Abandoned,
}

/// Until when [`wait_until`] waits for the terminal.
#[derive(Clone, Copy)]
enum Until {
    Deadline(Instant),
    /// The person's answer: they take the time they need.
    Answered,
}

/// Waits until `tty` has one of `events` (or hung up), or the request is
/// abandoned; `TimedOut` once `until`'s deadline passes.
fn wait_until(
    tty: &File,
    events: PollFlags,
    abandoned: BorrowedFd<'_>,
    until: Until,
) -> std::io::Result<Ready> {
    loop {
        let timeout = match until {
            Until::Answered => PollTimeout::NONE,
            Until::Deadline(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        ErrorKind::TimedOut,
                        "the terminal took no output for a while (suspended?)",
                    ));
                }
                // Rounded up: a timeout truncated to 0 ms would spin.
                PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [
            PollFd::new(tty.as_fd(), events),
            PollFd::new(abandoned, PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
        if fds[1].any().unwrap_or(false) {
            return Ok(Ready::Abandoned);
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(Ready::Ready);
        }
    }
}

/// Whether the request is abandoned (the pipe's write end closed) within
/// `grace`.
fn abandoned_within(abandoned: BorrowedFd<'_>, grace: Duration) -> std::io::Result<bool> {
    let until = Instant::now() + grace;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(abandoned, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(ready) => return Ok(ready > 0),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Writes all of `bytes` to `tty` (non-blocking) within `deadline`.
fn write_by(
    mut tty: &File,
    mut bytes: &[u8],
    abandoned: BorrowedFd<'_>,
    deadline: Duration,
) -> std::io::Result<Ready> {
    let until = Until::Deadline(Instant::now() + deadline);
    while !bytes.is_empty() {
        match tty.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if let Ready::Abandoned = wait_until(tty, PollFlags::POLLOUT, abandoned, until)? {
                    return Ok(Ready::Abandoned);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(Ready::Ready)
}

/// What the person typed.
enum Typed {
    /// A line, with its newline.
    Line(String),
    /// End of input (Ctrl-D on an empty line).
    End,
    /// The terminal hung up: nobody is there to answer.
    HungUp,
    Abandoned,
}

/// Keys read from the terminal and not yet taken as a line.
#[derive(Default)]
struct Keys {
    pending: Vec<u8>,
    /// Keys that end a line besides the newline (the terminal's extra
    /// end-of-line keys).
    ends: Vec<u8>,
}

impl Keys {
    /// The next line typed on `tty` (non-blocking), however long it takes.
    fn line(&mut self, mut tty: &File, abandoned: BorrowedFd<'_>) -> std::io::Result<Typed> {
        loop {
            let end = self
                .pending
                .iter()
                .position(|byte| *byte == b'\n' || self.ends.contains(byte));
            if let Some(end) = end {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Typed::Line(String::from_utf8_lossy(&line).into_owned()));
            }
            let mut buffer = [0; 256];
            match tty.read(&mut buffer) {
                Ok(0) if self.pending.is_empty() && hung_up(tty) => return Ok(Typed::HungUp),
                Ok(0) if self.pending.is_empty() => return Ok(Typed::End),
                // The last line, without a newline.
                Ok(0) => {
                    let line = std::mem::take(&mut self.pending);
                    return Ok(Typed::Line(String::from_utf8_lossy(&line).into_owned()));
                }
                Ok(read) => self.pending.extend_from_slice(&buffer[..read]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    if let Ready::Abandoned =
                        wait_until(tty, PollFlags::POLLIN, abandoned, Until::Answered)?
                    {
                        return Ok(Typed::Abandoned);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Whether `tty` has hung up (its other end closed), as opposed to an
/// end of input typed on it: both read as nothing.
fn hung_up(tty: &File) -> bool {
    let mut polled = [PollFd::new(tty.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut polled, PollTimeout::ZERO), Ok(ready) if ready > 0)
        && polled[0]
            .revents()
            .is_some_and(|events| events.contains(PollFlags::POLLHUP))
}

/// Line editing and echo on, whatever the command left (raw mode, no echo),
/// and the command's modes back afterwards.
///
/// No signal comes from the keyboard meanwhile: the foreground is
/// execgate's process group, and under `execgate shell` the shell's own
/// sandbox (bubblewrap, the helper) is in it, so a Ctrl-C there would end
/// the session. The interrupt and quit keys end the line instead, and
/// abort the command that asked, as `!` does.
struct SaneModes<'a> {
    tty: &'a File,
    saved: Option<Termios>,
    /// The interrupt and quit keys (Ctrl-C, Ctrl-\), as the terminal had
    /// them.
    interrupts: Vec<u8>,
    /// The interrupt key alone (0: disabled).
    interrupt: u8,
}

impl<'a> SaneModes<'a> {
    fn set(tty: &'a File) -> SaneModes<'a> {
        use SpecialCharacterIndices::{
            VDISCARD, VEOF, VEOL, VEOL2, VERASE, VINTR, VKILL, VLNEXT, VQUIT, VREPRINT, VSTART,
            VSTOP, VWERASE,
        };
        let saved = tcgetattr(tty.as_fd()).ok();
        let mut interrupts = Vec::new();
        let mut interrupt = 0;
        if let Some(mut modes) = saved.clone() {
            // Control keys echo as `^X`, never raw (an arrow key would move
            // the cursor over the question); no external line discipline
            // takes the line editing away.
            modes.local_flags |= LocalFlags::ICANON
                | LocalFlags::ECHO
                | LocalFlags::IEXTEN
                | LocalFlags::ECHOCTL
                | LocalFlags::ECHOE
                | LocalFlags::ECHOK
                | LocalFlags::ECHOKE;
            modes
                .local_flags
                .remove(LocalFlags::ISIG | LocalFlags::EXTPROC);
            // Enter (CR) and Ctrl-J (NL) both end the line, whatever a
            // line editor left set; letters arrive and show as typed (the
            // command shares the terminal, and could have had them shown
            // in upper case, or stripped).
            modes.input_flags |= InputFlags::ICRNL;
            // (nix names no `IUCLC`.)
            let upper_case_in = InputFlags::from_bits_retain(nix::libc::IUCLC);
            modes
                .input_flags
                .remove(InputFlags::INLCR | InputFlags::IGNCR | InputFlags::ISTRIP | upper_case_in);
            modes.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
            modes.output_flags.remove(
                OutputFlags::OLCUC | OutputFlags::OCRNL | OutputFlags::ONLRET | OutputFlags::ONOCR,
            );
            let keys = &mut modes.control_chars;
            // The editing keys a terminal starts with: the command could
            // have made `y` the end of file, the erase key or the stop key.
            for (key, default) in [
                (VEOF, 0x04),
                (VERASE, 0x7f),
                (VKILL, 0x15),
                (VWERASE, 0x17),
                (VLNEXT, 0x16),
                (VREPRINT, 0x12),
                (VSTART, 0x11),
                (VSTOP, 0x13),
                (VDISCARD, 0x0f),
            ] {
                keys[key as usize] = default;
            }
            // One that is no control key, or ends a line, was set by the
            // command to turn every answer into an abort: the terminal's
            // usual one instead. A key of 0 is a disabled one.
            for (key, usual) in [(VINTR, 0x03), (VQUIT, 0x1c)] {
                let set = keys[key as usize];
                if set >= 0x20 || set == b'\n' || set == b'\r' {
                    keys[key as usize] = usual;
                }
            }
            interrupt = keys[VINTR as usize];
            interrupts = [keys[VINTR as usize], keys[VQUIT as usize]]
                .into_iter()
                .filter(|&key| key != 0)
                .collect();
            (keys[VEOL as usize], keys[VEOL2 as usize]) =
                (keys[VINTR as usize], keys[VQUIT as usize]);
            let _ = tcsetattr(tty.as_fd(), SetArg::TCSANOW, &modes);
        }
        SaneModes {
            tty,
            saved,
            interrupts,
            interrupt,
        }
    }

    /// The signal `key`, one of `interrupts`, sends where a command reads
    /// the terminal: the interrupt key's wins where both are one.
    fn signal_of(&self, key: u8) -> i32 {
        match key == self.interrupt {
            true => nix::libc::SIGINT,
            false => nix::libc::SIGQUIT,
        }
    }
}

impl Drop for SaneModes<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(self.tty.as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Set while a prompt holds the terminal's foreground that it took (from
/// the background): `execgate run`'s job is not in the foreground for
/// that (see `ending::TerminalJob`).
pub static PROMPT_HOLDS_FOREGROUND: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Holds the terminal's foreground for this process group, and gives it
/// back when dropped.
struct Foreground<'a> {
    tty: &'a File,
    previous: Option<nix::unistd::Pid>,
    /// The thread's mask before `SIGTTOU` was blocked.
    mask: Option<SigSet>,
}

impl<'a> Foreground<'a> {
    fn take(tty: &'a File) -> Foreground<'a> {
        // With SIGTTOU blocked (in this thread), a background process may
        // set the foreground group instead of being stopped.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut mask = SigSet::empty();
        let mask = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut mask))
            .ok()
            .map(|()| mask);
        let previous = tcgetpgrp(tty.as_fd())
            .ok()
            .filter(|group| *group != getpgrp());
        if previous.is_some() {
            PROMPT_HOLDS_FOREGROUND.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tcsetpgrp(tty.as_fd(), getpgrp());
        }
        Foreground {
            tty,
            previous,
            mask,
        }
    }
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            let _ = tcsetpgrp(self.tty.as_fd(), previous);
            PROMPT_HOLDS_FOREGROUND.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        // The thread goes back to the blocking pool: leave its mask as found.
        if let Some(mask) = &self.mask {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use execgate_core_bridge::rules::Protocol;

    /// Probe 128: "[a] this command, for the session" read, for a skill's
    /// script, as the arguments shown (the answer covers the script with
    /// any arguments), and for grants asked for a command's shell as one
    /// kept for the session (it was not); and the grants' question asked
    /// to "run" the shell, whichever answer.
    #[test]
    fn each_question_offers_what_its_answer_covers() {
        let request = |reason| ApprovalRequest {
            program: std::path::PathBuf::from("/usr/bin/touch"),
            argv: vec!["touch".into(), "x".into()],
            cwd: std::path::PathBuf::from("/ws"),
            reason,
            execution: Execution::TurnDefault,
            permissions: None,
        };
        let labels = |reason| {
            let (asks, choices) = exec_question(&request(reason));
            let labels: Vec<&str> = choices.iter().map(|choice| choice.label).collect();
            (asks, labels.join("  "))
        };
        let skill = ApprovalReason::Skill {
            name: "notes".into(),
            script: std::path::PathBuf::from("/skills/notes/scripts/run.sh"),
            justification: None,
        };
        let (_, skill) = labels(skill);
        assert!(
            skill.contains("[a] this script, any arguments, for the session"),
            "{skill}"
        );
        let (asks, grant) = labels(ApprovalReason::RequestedPermissions {
            justification: None,
        });
        assert_eq!(asks, "grant the permissions above to this command?");
        assert_eq!(
            grant,
            "[y] grant them  [n] decline: it runs without them  [!] abort the command"
        );
        let (_, rule) = labels(ApprovalReason::Rule(RuleRef {
            id: "r:1".into(),
            justification: None,
        }));
        assert!(rule.contains("[a] this command, for the session"), "{rule}");
    }

    /// Probe 128: a byte that is not UTF-8 and a U+FFFD read alike in a
    /// question, as they did in the audit table before.
    #[test]
    fn a_question_shows_bytes_that_are_not_utf8_apart_from_their_stand_in() {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"p\xffq");
        let stand_in = std::ffi::OsStr::new("p\u{fffd}q");
        assert_eq!(shown(bad), "p\\xffq");
        assert_eq!(shown(stand_in), "p\u{fffd}q");
    }
    use execgate_core_bridge::server::RuleRef;
    use nix::fcntl::{fcntl, FcntlArg};

    /// A pseudo-terminal: its master, and its slave opened non-blocking as
    /// the prompt opens `/dev/tty`.
    fn terminal() -> (File, File) {
        let pty = nix::pty::openpty(None, None).unwrap();
        fcntl(&pty.slave, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        (File::from(pty.master), File::from(pty.slave))
    }

    /// Regression test: with the terminal's output suspended (as a command
    /// sharing it can do), writing the question gives up at its deadline
    /// instead of waiting for someone to resume it; it stops when the
    /// request is abandoned; and it goes through once output is resumed.
    #[test]
    fn writing_the_question_to_a_suspended_terminal_gives_up() {
        let (mut master, tty) = terminal();
        let (abandoned, asking) = std::io::pipe().unwrap();
        tcflow(tty.as_fd(), FlowArg::TCOOFF).unwrap();
        let error = write_by(
            &tty,
            b"question",
            abandoned.as_fd(),
            Duration::from_millis(200),
        )
        .err()
        .unwrap();
        assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");

        tcflow(tty.as_fd(), FlowArg::TCOON).unwrap();
        let written = write_by(&tty, b"question", abandoned.as_fd(), WRITE_DEADLINE).unwrap();
        assert!(matches!(written, Ready::Ready));
        let mut shown = [0; 8];
        master.read_exact(&mut shown).unwrap();
        assert_eq!(&shown, b"question");

        tcflow(tty.as_fd(), FlowArg::TCOOFF).unwrap();
        drop(asking);
        let written = write_by(&tty, b"question", abandoned.as_fd(), WRITE_DEADLINE).unwrap();
        assert!(matches!(written, Ready::Abandoned));
    }

    /// The answer is read line by line from a non-blocking terminal, for as
    /// long as it takes, until the request is abandoned.
    #[test]
    fn answers_are_read_line_by_line_until_the_request_is_abandoned() {
        let (mut master, tty) = terminal();
        let (abandoned, asking) = std::io::pipe().unwrap();
        let typist = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            master.write_all(b"maybe\n").unwrap();
            master.write_all(b"y\n").unwrap();
            master
        });
        let mut keys = Keys::default();
        let mut lines = Vec::new();
        for _ in 0..2 {
            match keys.line(&tty, abandoned.as_fd()).unwrap() {
                Typed::Line(line) => lines.push(line),
                Typed::End | Typed::HungUp | Typed::Abandoned => panic!("no line"),
            }
        }
        assert_eq!(lines, ["maybe\n", "y\n"]);
        let _master = typist.join().unwrap();
        drop(asking);
        assert!(matches!(
            keys.line(&tty, abandoned.as_fd()).unwrap(),
            Typed::Abandoned
        ));
    }

    /// Probe 152: a terminal that hung up during the question read as
    /// Ctrl-D, a person's decline, and was recorded as one. Ctrl-D is still
    /// the person's; a hang-up is nobody's answer.
    #[test]
    fn a_hang_up_is_not_taken_for_ctrl_d() {
        let (abandoned, _asking) = std::io::pipe().unwrap();
        let (mut master, tty) = terminal();
        master.write_all(b"\x04").unwrap();
        assert!(matches!(
            Keys::default().line(&tty, abandoned.as_fd()).unwrap(),
            Typed::End
        ));
        drop(master);
        assert!(matches!(
            Keys::default().line(&tty, abandoned.as_fd()).unwrap(),
            Typed::HungUp
        ));
    }

    /// Regression: Ctrl-C at the prompt was a signal to execgate's process
    /// group, which under `execgate shell` holds the shell's own sandbox,
    /// and ended the session. While the prompt holds the terminal, the
    /// interrupt and quit keys end the line instead (the prompt takes them
    /// as an abort), and the modes come back afterwards.
    #[test]
    fn interrupt_keys_end_the_answer_instead_of_signalling() {
        let (mut master, tty) = terminal();
        let (abandoned, _asking) = std::io::pipe().unwrap();
        assert!(tcgetattr(tty.as_fd())
            .unwrap()
            .local_flags
            .contains(LocalFlags::ISIG));
        {
            let modes = SaneModes::set(&tty);
            let set = tcgetattr(tty.as_fd()).unwrap();
            assert!(!set.local_flags.contains(LocalFlags::ISIG));
            assert_eq!(modes.interrupts, [0x03, 0x1c]);
            let mut keys = Keys {
                ends: modes.interrupts.clone(),
                ..Keys::default()
            };
            for typed in [&b"y\x03"[..], b"\x1c"] {
                master.write_all(typed).unwrap();
                match keys.line(&tty, abandoned.as_fd()).unwrap() {
                    Typed::Line(line) => assert_eq!(line.as_bytes(), typed),
                    Typed::End | Typed::HungUp | Typed::Abandoned => panic!("no line"),
                }
            }
        }
        assert!(tcgetattr(tty.as_fd())
            .unwrap()
            .local_flags
            .contains(LocalFlags::ISIG));
    }

    /// Regression: the command shares the terminal and could set its modes
    /// so that `y` ended the file (a decline), stopped the output, or
    /// showed the question in upper case. The prompt sets the keys and the
    /// letters' handling it reads with, and gives the command's back.
    #[test]
    fn the_prompt_reads_with_the_keys_a_terminal_starts_with() {
        use SpecialCharacterIndices::{VEOF, VSTOP};
        let (_master, tty) = terminal();
        let mut hostile = tcgetattr(tty.as_fd()).unwrap();
        hostile.control_chars[VEOF as usize] = b'y';
        hostile.control_chars[VSTOP as usize] = b'y';
        hostile.control_chars[SpecialCharacterIndices::VINTR as usize] = b'y';
        hostile.output_flags |= OutputFlags::OLCUC;
        hostile.local_flags |= LocalFlags::EXTPROC;
        hostile.local_flags.remove(LocalFlags::ECHOCTL);
        tcsetattr(tty.as_fd(), SetArg::TCSANOW, &hostile).unwrap();
        {
            let modes = SaneModes::set(&tty);
            let set = tcgetattr(tty.as_fd()).unwrap();
            assert_eq!(set.control_chars[VEOF as usize], 0x04);
            assert_eq!(set.control_chars[VSTOP as usize], 0x13);
            assert!(!set.output_flags.contains(OutputFlags::OLCUC));
            assert!(!set.local_flags.contains(LocalFlags::EXTPROC));
            assert!(set.local_flags.contains(LocalFlags::ECHOCTL));
            // `y` is no interrupt key while asking.
            assert_eq!(modes.interrupts[0], 0x03);
        }
        let back = tcgetattr(tty.as_fd()).unwrap();
        assert_eq!(back.control_chars[VEOF as usize], b'y');
        assert!(back.output_flags.contains(OutputFlags::OLCUC));
    }

    #[test]
    fn the_network_question_names_host_protocol_and_port() {
        let request = NetworkApprovalRequest {
            destination: Destination::parse("Registry.NPMjs.org.").unwrap(),
            protocol: Protocol::Https,
            port: 443,
            rule: Some(RuleRef {
                id: "team.rules:9".into(),
                justification: Some("npm\u{1b}[1A".into()),
            }),
        };
        assert_eq!(
            describe_network(&request),
            [
                "connect  registry.npmjs.org",
                "port     443",
                "using    https (an HTTP CONNECT tunnel, usually TLS)",
                "because  rule team.rules:9: npm\\u{1b}[1A",
            ]
        );
        let unruled = NetworkApprovalRequest {
            destination: Destination::parse("::1").unwrap(),
            protocol: Protocol::Socks5Tcp,
            port: 8080,
            rule: None,
        };
        assert_eq!(
            describe_network(&unruled),
            [
                "connect  [::1]",
                "port     8080",
                "using    socks5-tcp",
                "note     a loopback address, reached from this machine (not from inside the sandbox)",
                "because  no domains entry or network rule decides it",
            ]
        );
    }

    #[test]
    fn typed_answers_map_to_their_choices() {
        let cases = [
            (NETWORK_CHOICES, "y\n", Some(ApprovalAnswer::ApproveOnce)),
            (
                NETWORK_CHOICES,
                "a\n",
                Some(ApprovalAnswer::ApproveForSession),
            ),
            (NETWORK_CHOICES, "\n", Some(ApprovalAnswer::Decline)),
            (
                NETWORK_CHOICES,
                "d\n",
                Some(ApprovalAnswer::DeclineForSession),
            ),
            // No abort for a connection: ask again.
            (NETWORK_CHOICES, "!\n", None),
            (NETWORK_CHOICES, "maybe\n", None),
            (EXEC_CHOICES, "!\n", Some(ApprovalAnswer::Abort)),
            (EXEC_CHOICES, " yes \n", Some(ApprovalAnswer::ApproveOnce)),
            (EXEC_CHOICES, "d\n", None),
        ];
        for (choices, typed, expected) in cases {
            assert_eq!(answer_of(choices, typed), expected, "{typed:?}");
        }
    }

    #[test]
    fn an_interrupt_aborts_only_where_abort_is_a_choice() {
        assert_eq!(interrupted(EXEC_CHOICES), ApprovalAnswer::Abort);
        assert_eq!(interrupted(GRANT_CHOICES), ApprovalAnswer::Abort);
        assert_eq!(interrupted(NETWORK_CHOICES), ApprovalAnswer::Decline);
    }

    /// Probe 144: a prompted command that cannot leave the sandbox was
    /// asked about "in the session's sandbox", and not why.
    #[test]
    fn a_question_about_running_in_place_says_why() {
        let request = ApprovalRequest {
            program: "/usr/bin/git".into(),
            argv: vec!["git".into(), "push".into()],
            cwd: "/ws".into(),
            reason: ApprovalReason::RuleInPlace {
                rule: RuleRef {
                    id: "team.rules:3".into(),
                    justification: Some("talks to the remote".into()),
                },
                refused: "escalation refused: git reads its repository from /ws/.git, which \
                          the sandbox can write"
                    .into(),
            },
            execution: Execution::TurnDefault,
            permissions: None,
        };
        assert_eq!(
            describe(&request, Length::Whole)[2..],
            [
                "because  rule team.rules:3: talks to the remote",
                "note     escalation refused: git reads its repository from /ws/.git, which the \
                 sandbox can write",
                "as       in the session's sandbox",
            ]
        );
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let request = ApprovalRequest {
            program: "/ws/\u{1b}[2Jmake".into(),
            argv: vec![
                "make".into(),
                "ok\n  run      /bin/true".into(),
                "\u{1b}]0;x\u{7}".into(),
            ],
            cwd: "/ws/\r".into(),
            reason: ApprovalReason::Rule(RuleRef {
                id: "team.rules:3".into(),
                justification: Some("builds\u{1b}[1A".into()),
            }),
            execution: Execution::Unsandboxed,
            permissions: None,
        };
        let lines = describe(&request, Length::Cut);
        for line in &lines {
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
        assert_eq!(
            lines[0],
            "run      /ws/\\u{1b}[2Jmake 'ok\\n  run      /bin/true' '\\u{1b}]0;x\\u{7}'"
        );
        // Nor can bidirectional controls reorder what a person reads, or
        // zero-width characters hide in it.
        let reordering = ApprovalRequest {
            argv: vec!["make".into(), "safe\u{202e}txt.exe\u{200b}".into()],
            ..request
        };
        assert_eq!(
            describe(&reordering, Length::Cut)[0],
            "run      /ws/\\u{1b}[2Jmake 'safe\\u{202e}txt.exe\\u{200b}'"
        );
        // A skill's justification is shown, as safely (a probe found it
        // read and never shown).
        let skill = ApprovalRequest {
            reason: ApprovalReason::Skill {
                name: "notes".into(),
                script: "/skills/notes/scripts/write.sh".into(),
                justification: Some("writes notes\u{1b}[1A".into()),
            },
            ..reordering
        };
        assert_eq!(
            describe(&skill, Length::Cut)[2],
            "because  it is a script of skill notes, which declares permissions: \
             writes notes\\u{1b}[1A"
        );
        // Nor can a padded one scroll the real lines off (a probe's
        // justification of 5,400 spaces and forged lines).
        let padded = ApprovalRequest {
            reason: ApprovalReason::Skill {
                name: "n".repeat(5000),
                script: "/skills/notes/scripts/write.sh".into(),
                justification: Some(format!("notes{}run /bin/true", " ".repeat(5400))),
            },
            ..skill
        };
        let because = &describe(&padded, Length::Cut)[2];
        assert!(
            because.chars().count() < 2 * REASON_SHOWN + 200,
            "{because}"
        );
    }

    /// Probe 184: a question that waited for its turn was drawn although
    /// its requester had gone (its pipeline killed at the question before
    /// it), below the shell's next prompt. Such a question first waits
    /// [`QUEUED_GRACE`] for its withdrawal, and ends its wait as that comes.
    #[test]
    fn a_queued_questions_grace_ends_at_its_withdrawal() {
        let (abandoned, asking) = std::io::pipe().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(asking);
        });
        let waited = Instant::now();
        assert!(abandoned_within(abandoned.as_fd(), QUEUED_GRACE).unwrap());
        assert!(waited.elapsed() < QUEUED_GRACE);
        closer.join().unwrap();
        let (abandoned, _asking) = std::io::pipe().unwrap();
        assert!(!abandoned_within(abandoned.as_fd(), Duration::from_millis(10)).unwrap());
    }

    /// Regression: a command could hide the real question and show another
    /// in its place: leave the terminal concealing text (`ESC [8m`) after
    /// printing a fake prompt, or pad an argument until the real `run` line
    /// scrolled away. The question now resets the terminal's state first,
    /// cuts long arguments and paths, and says what it approves on the line
    /// of the keys.
    #[test]
    fn a_command_cannot_hide_the_question_or_push_it_away() {
        let padding = format!("{}  run      /usr/bin/touch notes.txt", " ".repeat(3500));
        let mut argv = vec!["touch".into(), "/ws/target".into(), padding.into()];
        argv.extend((0..100).map(|n| format!("{n:>150}").into()));
        let request = ApprovalRequest {
            program: "/usr/bin/touch".into(),
            argv,
            cwd: "/ws".into(),
            reason: ApprovalReason::Rule(RuleRef {
                id: "team.rules:3".into(),
                justification: None,
            }),
            execution: Execution::TurnDefault,
            permissions: None,
        };
        let lines = describe(&request, Length::Cut);
        let whole = describe(&request, Length::Whole);
        let (asks, choices) = exec_question(&request);
        let question = Question {
            title: "approval needed",
            whole: (whole != lines).then_some(whole),
            lines,
            asks,
            choices,
            before_the_command: false,
        };
        let (text, choices) = question.text();
        assert!(text.starts_with(TERMINAL_RESET), "{text:?}");
        // An unfinished string ends first; nothing around the question's
        // lines stays on the screen.
        assert!(TERMINAL_RESET.starts_with("\x18\x1b\\\x1b<\x1b%G"));
        assert!(!TERMINAL_RESET.contains("?6l"), "moves the cursor home");
        assert!(text.contains("\r\n\x1b[J"), "{text:?}");
        assert!(choices.ends_with(": \x1b[J"), "{choices:?}");
        assert!(TERMINAL_RESET.contains("\x1b[0m") && TERMINAL_RESET.contains("\x1b[?7h"));
        assert_eq!(
            choices,
            "\x1b#5  run /usr/bin/touch with 102 arguments? \
             [y] once  [a] this command, for the session  [n] decline  [!] abort the command  \
             [v] view it whole: \x1b[J"
        );
        // Every argument is there, each cut to its share: none is left out
        // (a target hidden among padding would be).
        let run = &question.lines[0];
        assert!(
            run.starts_with("run      /usr/bin/touch '/ws/target' '"),
            "{run}"
        );
        assert!(run.contains("[... 3473 characters not shown ...]"), "{run}");
        // The first and the last are shown, the middle counted: padding
        // cannot push the first off the screen.
        assert_eq!(run.matches(" '").count(), 16, "{run}");
        assert!(run.contains(" [... 86 arguments not shown ...] "), "{run}");
        // An odd share: the count is of what was cut.
        assert!(
            shown_within("y".repeat(200).as_ref(), 61).contains("[... 140 characters"),
            "{}",
            shown_within("y".repeat(200).as_ref(), 61)
        );
        assert!(run.ends_with("99'"), "{run}");
        // An argument a little over its share is shown whole: the marker
        // would be longer than what it cut.
        assert_eq!(shown_within("x".repeat(70).as_ref(), 62), "x".repeat(70));
        // `v` shows them whole.
        let whole = question.whole.as_ref().expect("something was cut");
        assert!(whole[0].contains(&" ".repeat(3500)), "{}", whole[0]);
        assert!(!whole[0].contains("not shown"), "{}", whole[0]);
        assert_eq!(
            quoted_if_spaced("/ws/a b/tool".into()),
            "'/ws/a b/tool'",
            "a space would blur where the program ends"
        );
        let long_path = format!("/ws/{}/tool", "d".repeat(1000));
        let shown = shown_within(long_path.as_ref(), PATH_SHOWN);
        assert!(
            shown.starts_with("/ws/ddd") && shown.ends_with("ddd/tool"),
            "{shown}"
        );
        assert_eq!(shown_within("short".as_ref(), PATH_SHOWN), "short");
    }
}
