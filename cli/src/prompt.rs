//! Approval prompts on the terminal.
//!
//! The prompt talks to `/dev/tty`, not stdout or stderr, which belong to
//! the command. While it waits, the command that asked is blocked in the
//! wrapper, so nothing of the shell's own output interleaves; one prompt is
//! shown at a time. An interactive shell's job owns the terminal meanwhile:
//! the prompt takes the foreground for itself and hands it back after.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;

use execgate_core_bridge::server::Execution;
use execgate_core_bridge::{
    ApprovalAnswer, ApprovalFuture, ApprovalReason, ApprovalRequest, Approver,
    NetworkApprovalRequest,
};
use execgate_network_proxy::{classify, AddressClass, Destination};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::termios::{
    tcflush, tcgetattr, tcsetattr, FlushArg, InputFlags, LocalFlags, OutputFlags, SetArg, Termios,
};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp};

/// Asks on the controlling terminal.
#[derive(Default)]
pub struct TerminalApprover {
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Approver for TerminalApprover {
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        let question = Question {
            title: "approval needed",
            lines: describe(request),
            choices: EXEC_CHOICES,
        };
        Box::pin(self.ask_in_turn(question))
    }

    fn approve_network<'a>(&'a self, request: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        let question = Question {
            title: "network access needed",
            lines: describe_network(request),
            choices: NETWORK_CHOICES,
        };
        Box::pin(self.ask_in_turn(question))
    }
}

impl TerminalApprover {
    /// Asks `question` once the prompts before it are answered.
    async fn ask_in_turn(&self, question: Question) -> ApprovalAnswer {
        let _turn = self.one_at_a_time.lock().await;
        tokio::task::spawn_blocking(move || match ask(&question) {
            Ok(answer) => answer,
            Err(error) => {
                eprintln!("execgate: cannot ask on the terminal ({error}); declined");
                ApprovalAnswer::Decline
            }
        })
        .await
        .unwrap_or(ApprovalAnswer::Decline)
    }
}

/// One prompt: what it is about, and the keys that answer it.
struct Question {
    title: &'static str,
    lines: Vec<String>,
    choices: &'static [Choice],
}

/// A key (and its spellings), what the prompt calls it, what it answers.
struct Choice {
    keys: &'static [&'static str],
    label: &'static str,
    answer: fn() -> ApprovalAnswer,
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
        label: "[a] for this session",
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
        label: "[d] deny for this session",
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

/// Text from the request as the terminal may show it: control characters
/// (escape sequences that could redraw the prompt, newlines that could fake
/// a line) are escaped. The sandboxed shell chooses arguments, directory
/// names and, through them, paths.
fn shown(text: &std::ffi::OsStr) -> String {
    text.to_string_lossy()
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// What the prompt shows: one fact per line.
pub fn describe(request: &ApprovalRequest) -> Vec<String> {
    let mut lines = Vec::new();
    let args: Vec<String> = request
        .argv
        .iter()
        .skip(1)
        .map(|arg| format!("'{}'", shown(arg)))
        .collect();
    lines.push(format!(
        "run      {} {}",
        shown(request.program.as_os_str()),
        args.join(" ")
    ));
    lines.push(format!("in       {}", shown(request.cwd.as_os_str())));
    lines.push(match &request.reason {
        ApprovalReason::Rule(rule) => match &rule.justification {
            Some(why) => format!(
                "because  rule {}: {}",
                shown(rule.id.as_ref()),
                shown(why.as_ref())
            ),
            None => format!("because  rule {}", shown(rule.id.as_ref())),
        },
        ApprovalReason::Skill { name, .. } => format!(
            "because  it is a script of skill {}, which declares permissions",
            shown(name.as_ref())
        ),
        ApprovalReason::RequestedPermissions { justification } => format!(
            "because  the command asks for more permissions{}",
            justification
                .as_ref()
                .map(|why| format!(": {}", shown(why.as_ref())))
                .unwrap_or_default()
        ),
        other => format!("because  {other:?}"),
    });
    lines.push(match &request.execution {
        Execution::Unsandboxed => "as       unsandboxed (outside the sandbox)".to_owned(),
        Execution::TurnDefault => "as       in the session's sandbox".to_owned(),
        Execution::Permissions(_) => "as       in the session's sandbox plus:".to_owned(),
        other => format!("as       {other:?}"),
    });
    if let Some(grants) = &request.permissions {
        for grant in grants.grants() {
            lines.push(format!("           {}", shown(grant.as_ref())));
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
        if let AddressClass::NonPublic(range) = classify(*address) {
            lines.push(format!(
                "note     {range}, reached from this machine (not from inside the sandbox)"
            ));
        }
    }
    lines.push(match &request.rule {
        Some(rule) => match &rule.justification {
            Some(why) => format!(
                "because  rule {}: {}",
                shown(rule.id.as_ref()),
                shown(why.as_ref())
            ),
            None => format!("because  rule {}", shown(rule.id.as_ref())),
        },
        None => "because  no domains entry or network rule decides it".to_owned(),
    });
    lines
}

fn ask(question: &Question) -> std::io::Result<ApprovalAnswer> {
    let tty = File::options().read(true).write(true).open("/dev/tty")?;
    let _foreground = Foreground::take(&tty);
    let _modes = SaneModes::set(&tty);
    // Keys typed before the question (meant for the command) must not
    // answer it.
    let _ = tcflush(tty.as_fd(), FlushArg::TCIFLUSH);
    let mut out = &tty;
    write!(out, "\r\nexecgate: {}\r\n", question.title)?;
    for line in &question.lines {
        write!(out, "  {line}\r\n")?;
    }
    let labels: Vec<&str> = question.choices.iter().map(|choice| choice.label).collect();
    let mut reader = BufReader::new(&tty);
    loop {
        write!(out, "  {}: ", labels.join("  "))?;
        out.flush()?;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(ApprovalAnswer::Decline);
        }
        if let Some(answer) = answer_of(question.choices, &line) {
            return Ok(answer);
        }
    }
}

/// Line editing and echo on, whatever the command left (raw mode, no echo),
/// and the command's modes back afterwards.
struct SaneModes<'a> {
    tty: &'a File,
    saved: Option<Termios>,
}

impl<'a> SaneModes<'a> {
    fn set(tty: &'a File) -> SaneModes<'a> {
        let saved = tcgetattr(tty.as_fd()).ok();
        if let Some(mut modes) = saved.clone() {
            modes.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG;
            modes.input_flags |= InputFlags::ICRNL;
            modes.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
            let _ = tcsetattr(tty.as_fd(), SetArg::TCSANOW, &modes);
        }
        SaneModes { tty, saved }
    }
}

impl Drop for SaneModes<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(self.tty.as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Holds the terminal's foreground for this process group, and gives it
/// back when dropped.
struct Foreground<'a> {
    tty: &'a File,
    previous: Option<nix::unistd::Pid>,
}

impl<'a> Foreground<'a> {
    fn take(tty: &'a File) -> Foreground<'a> {
        // With SIGTTOU blocked (in this thread), a background process may
        // set the foreground group instead of being stopped.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
        let previous = tcgetpgrp(tty.as_fd())
            .ok()
            .filter(|group| *group != getpgrp());
        if previous.is_some() {
            let _ = tcsetpgrp(tty.as_fd(), getpgrp());
        }
        Foreground { tty, previous }
    }
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            let _ = tcsetpgrp(self.tty.as_fd(), previous);
        }
        // The thread goes back to the blocking pool: leave its mask as found.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&ttou), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use execgate_core_bridge::rules::Protocol;
    use execgate_core_bridge::server::RuleRef;

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
        let lines = describe(&request);
        for line in &lines {
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
        assert_eq!(
            lines[0],
            "run      /ws/\\u{1b}[2Jmake 'ok\\n  run      /bin/true' '\\u{1b}]0;x\\u{7}'"
        );
    }
}
