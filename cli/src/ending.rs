//! How `execgate run` and `execgate shell` end when they are told to from
//! outside: `SIGTERM`, `SIGHUP`, `SIGINT`, `SIGQUIT`, `SIGUSR1`, `SIGUSR2`
//! and `SIGALRM` (every catchable signal whose default action ends a
//! process, but for the faults and `SIGPIPE`) end the session (every
//! escalated child killed and reaped, the end recorded in the audit log)
//! and execgate ends by the same signal once that is done (a status of
//! 128 + the signal's number, no core). And how `run` on a
//! terminal follows its job ([`TerminalJob`]): the command runs only while
//! execgate is in the foreground.
//!
//! In `execgate shell` the terminal's Ctrl-C and Ctrl-\ belong to the
//! shell's jobs: a `SIGINT` or `SIGQUIT` that arrives while this process's
//! group holds the terminal's foreground (so the terminal sent it to
//! everyone in the group) is let pass; one sent to this process from
//! elsewhere ends the session.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::termios::{tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Whether a terminal's Ctrl-C ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalInterrupt {
    /// `execgate run`: the command has its own process group, so an
    /// interrupt that reaches us is meant for the whole run.
    Ends,
    /// `execgate shell`: the interrupt is for the shell's foreground job.
    BelongsToShell,
}

/// The signals that end a session, taken over from their default actions.
/// One ignored when execgate started stays so (probe 217: `nohup execgate
/// run` ended at a hang-up; a script's `execgate run &`, whose `SIGINT`
/// its shell ignores, ended at one that came after the take-over, where
/// one that came before it was lost): `None`.
pub struct EndSignals {
    terminate: Option<Signal>,
    hangup: Option<Signal>,
    interrupt: Option<Signal>,
    quit: Option<Signal>,
    /// `SIGUSR1`, `SIGUSR2`, `SIGALRM`: their default action would end
    /// execgate with nothing recorded and the children left to the warden
    /// (a probe).
    user1: Option<Signal>,
    user2: Option<Signal>,
    alarm: Option<Signal>,
    terminal_interrupt: TerminalInterrupt,
    /// `SIGXFSZ`, taken over only so that it ends nothing: under a file
    /// size limit (`ulimit -f`), the audit log's write that passes it
    /// would kill execgate with the session's children left to their
    /// fate, where the write's error (`EFBIG`) denies one command and
    /// says why (a probe). A handler, not an ignored signal: commands
    /// start with the default action, as they would without execgate.
    _file_size: Signal,
}

impl EndSignals {
    pub fn new(terminal_interrupt: TerminalInterrupt) -> Result<EndSignals> {
        Ok(EndSignals {
            terminate: take_over_unless_ignored(SignalKind::terminate(), "SIGTERM")?,
            hangup: take_over_unless_ignored(SignalKind::hangup(), "SIGHUP")?,
            interrupt: take_over_unless_ignored(SignalKind::interrupt(), "SIGINT")?,
            quit: take_over_unless_ignored(SignalKind::quit(), "SIGQUIT")?,
            user1: take_over_unless_ignored(SignalKind::user_defined1(), "SIGUSR1")?,
            user2: take_over_unless_ignored(SignalKind::user_defined2(), "SIGUSR2")?,
            alarm: take_over_unless_ignored(SignalKind::alarm(), "SIGALRM")?,
            terminal_interrupt,
            _file_size: take_over(
                SignalKind::from_raw(nix::sys::signal::Signal::SIGXFSZ as i32),
                "SIGXFSZ",
            )?,
        })
    }

    /// Waits for a signal that ends the session and returns its number;
    /// [`ended_by`] says it from then on.
    pub async fn recv(&mut self) -> i32 {
        let signal = self.next_ending().await;
        ended_as_by(signal);
        signal
    }

    async fn next_ending(&mut self) -> i32 {
        loop {
            tokio::select! {
                () = next(&mut self.terminate) => return nix::sys::signal::Signal::SIGTERM as i32,
                () = next(&mut self.hangup) => return nix::sys::signal::Signal::SIGHUP as i32,
                () = next(&mut self.interrupt) => {
                    if self.terminal_interrupt == TerminalInterrupt::Ends || !from_terminal() {
                        return nix::sys::signal::Signal::SIGINT as i32;
                    }
                }
                () = next(&mut self.quit) => {
                    if self.terminal_interrupt == TerminalInterrupt::Ends || !from_terminal() {
                        return nix::sys::signal::Signal::SIGQUIT as i32;
                    }
                }
                () = next(&mut self.user1) => return nix::sys::signal::Signal::SIGUSR1 as i32,
                () = next(&mut self.user2) => return nix::sys::signal::Signal::SIGUSR2 as i32,
                () = next(&mut self.alarm) => return nix::sys::signal::Signal::SIGALRM as i32,
            }
        }
    }
}

/// The signal [`EndSignals::recv`] last returned; 0 before one came.
static ENDED_BY: AtomicI32 = AtomicI32::new(0);

/// The signal that ended this process's session, if one did. Once
/// everything is cleaned up and recorded, `main` ends by it too, so that a
/// parent shell sees a death by the signal, as it would of `zsh -c`, and
/// not a status it takes for a signal handled (probe 219: one Ctrl-C did
/// not stop a bash loop around `execgate run`, which went on to the next).
pub fn ended_by() -> Option<i32> {
    Some(ENDED_BY.load(Ordering::SeqCst)).filter(|&signal| signal != 0)
}

/// Says that `signal` ended the session, as [`EndSignals::recv`] does for
/// one it received: `execgate run`'s command aborted by an interrupt key
/// at a question (`SIGINT`: the person pressed Ctrl-C, `SIGQUIT`: Ctrl-\;
/// review 220: a bash loop took the abort's 137 for a command's end and
/// went on).
pub fn ended_as_by(signal: i32) {
    ENDED_BY.store(signal, Ordering::SeqCst);
}

/// A signal's stream, its default action replaced.
fn take_over(kind: SignalKind, name: &str) -> Result<Signal> {
    signal(kind).with_context(|| format!("cannot take over {name}"))
}

/// [`take_over`], but for a signal ignored now, which is left so.
fn take_over_unless_ignored(kind: SignalKind, name: &str) -> Result<Option<Signal>> {
    match execgate_core_bridge::server::is_ignored(kind.as_raw_value()) {
        true => Ok(None),
        false => take_over(kind, name).map(Some),
    }
}

/// The next delivery of `signal`; never, for one not taken over.
async fn next(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Keeps the terminal from stopping this process: blocks `SIGTTOU` and
/// `SIGTTIN` in the calling thread, and so in every thread started after
/// it (the session's shells start with an empty mask: `prepare_shell`;
/// escalated children too). Call before the runtime starts.
///
/// A sandboxed shell takes the terminal's foreground for its own jobs, so
/// execgate is a background group while its session runs. Stopped there
/// (by its own line on stderr with `stty tostop`), it would let the
/// caller's shell take the terminal back while the sandbox runs on, free to
/// take the foreground itself and read what is typed to that shell. With
/// both blocked, a write from the background goes through and a read
/// fails (`EIO`) instead.
pub fn never_stopped_by_the_terminal() {
    let mut stops = SigSet::empty();
    stops.add(nix::sys::signal::Signal::SIGTTOU);
    stops.add(nix::sys::signal::Signal::SIGTTIN);
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stops), None);
}

/// Whether this process's group holds the foreground of the terminal that
/// is standard input: `None` when standard input is no terminal (or its
/// foreground cannot be read).
fn in_the_foreground() -> Option<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    tcgetpgrp(stdin.as_fd())
        .ok()
        .map(|group| group == getpgrp())
}

/// Whether standard input is a terminal whose foreground group is another
/// than this process's.
pub fn in_the_background_of_its_terminal() -> bool {
    in_the_foreground() == Some(false)
}

/// Whether an interrupt just received most likely came from the terminal:
/// this process's group is the terminal's foreground group.
fn from_terminal() -> bool {
    in_the_foreground() == Some(true)
}

/// The terminal as the session found it, put back as it ends: its modes
/// (line editing, echo, the interrupt key), which a shell's programs or a
/// command change through any standard stream that is the terminal, and
/// the status flags (`O_NONBLOCK`, `O_ASYNC`) of those streams, whose open
/// file description the caller's shell shares.
pub struct TerminalState {
    /// The first standard stream that is this process's controlling
    /// terminal (0, 1 or 2), its modes, and whether this process's group
    /// held its foreground.
    modes: Option<(usize, Termios, bool)>,
    /// By stream: 0, 1, 2.
    status_flags: [Option<OFlag>; 3],
}

/// The status flags a command may leave changed for the caller's shell.
const SHARED_FLAGS: OFlag = OFlag::O_NONBLOCK.union(OFlag::O_ASYNC);

/// `act` on standard stream `index` (0, 1 or 2), if it is a terminal.
fn on_terminal<R>(index: usize, act: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stream = match index {
        0 => stdin.as_fd(),
        1 => stdout.as_fd(),
        _ => stderr.as_fd(),
    };
    stream.is_terminal().then(|| act(stream))
}

impl TerminalState {
    pub fn save() -> TerminalState {
        let flags_of = |index| {
            on_terminal(index, |stream| fcntl(stream, FcntlArg::F_GETFL).ok())
                .flatten()
                .map(OFlag::from_bits_truncate)
        };
        TerminalState {
            // Only the controlling terminal has a foreground group to ask.
            modes: (0..3).find_map(|index| {
                on_terminal(index, |stream| {
                    let foreground = tcgetpgrp(stream).ok()? == getpgrp();
                    Some((index, tcgetattr(stream).ok()?, foreground))
                })
                .flatten()
            }),
            status_flags: [flags_of(0), flags_of(1), flags_of(2)],
        }
    }

    /// Takes the terminal's foreground back from the killed shell's group
    /// and restores what was saved, when this process held the foreground
    /// as it saved them (never taking it from another's). Call only on the
    /// way out: it leaves `SIGTTOU` blocked in this thread (as
    /// [`never_stopped_by_the_terminal`] has it anyway).
    pub fn restore(&self) {
        let Some((index, modes, true)) = &self.modes else {
            return;
        };
        on_terminal(*index, |terminal| {
            block_ttou();
            let _ = tcsetpgrp(terminal, getpgrp());
            let _ = tcsetattr(terminal, SetArg::TCSANOW, modes);
        });
        self.restore_status_flags();
    }

    /// [`TerminalState::restore`] after `execgate run`, whose command never
    /// had the foreground: only while execgate has it (in the background,
    /// the terminal is the foreground program's), and the foreground is
    /// left where it is.
    pub fn restore_after_run(&self) {
        let Some((index, modes, _)) = &self.modes else {
            return;
        };
        on_terminal(*index, |terminal| {
            if tcgetpgrp(terminal).is_ok_and(|group| group == getpgrp()) {
                self.restore_status_flags();
                block_ttou();
                let _ = tcsetattr(terminal, SetArg::TCSANOW, modes);
            }
        });
    }

    /// Puts back `O_NONBLOCK` and `O_ASYNC` as they were, the other flags
    /// as they are.
    fn restore_status_flags(&self) {
        for (index, saved) in self.status_flags.iter().enumerate() {
            let Some(saved) = saved else {
                continue;
            };
            on_terminal(index, |stream| {
                let Ok(now) = fcntl(stream, FcntlArg::F_GETFL).map(OFlag::from_bits_truncate)
                else {
                    return;
                };
                let wanted = (now - SHARED_FLAGS) | (*saved & SHARED_FLAGS);
                if wanted != now {
                    let _ = fcntl(stream, FcntlArg::F_SETFL(wanted));
                }
            });
        }
    }
}

/// Blocks `SIGTTOU` in this thread: a background group may then set the
/// terminal's modes and take its foreground.
fn block_ttou() {
    let mut ttou = SigSet::empty();
    ttou.add(nix::sys::signal::Signal::SIGTTOU);
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
}

/// Job control for `execgate run` on a terminal.
///
/// The command runs in a sandbox with a session of its own (bubblewrap's
/// `--new-session`, so that it cannot push input into the terminal), which
/// puts it outside the terminal's job control: Ctrl-Z would stop only
/// execgate, and a command left running while the shell has the terminal
/// back could read what is typed there (a password for `sudo` included),
/// with no `SIGTTIN` to stop it. So `run` follows its own job: Ctrl-Z
/// freezes the session's processes (its cgroup's freezer) before execgate
/// stops, and while another group has the terminal (`&`, `bg`; `timeout`
/// without `--foreground`) the command waits for the foreground: not
/// started yet, or frozen.
pub struct TerminalJob {
    /// The terminal, as one of the standard streams holds it.
    terminal: std::os::fd::OwnedFd,
    stop: Signal,
    resume: Signal,
}

/// What happened to execgate's job.
pub enum JobEvent {
    /// Ctrl-Z (`SIGTSTP`): stop, as a job does.
    Stop,
    /// `SIGCONT`: `fg` or `bg`.
    Resumed,
    /// Time to look again: a running background job brought back by `fg`
    /// gets the terminal, no signal.
    Look,
}

/// Where execgate's job stands on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPlace {
    /// Execgate's group has the terminal.
    Foreground,
    /// Another group has it (the shell at its prompt, another job; or
    /// `timeout`, which runs its command in a group of its own): what is
    /// typed is for someone else.
    Background,
    /// A prompt of ours took it for a moment, from the background: as it
    /// was.
    Prompting,
    /// No terminal any more (hung up): nothing to protect.
    Gone,
}

/// How often a waiting job looks whether it is in the foreground again.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl TerminalJob {
    /// `None` when no standard stream is this process's controlling
    /// terminal: there is no job control to follow.
    pub fn new() -> Result<Option<TerminalJob>> {
        use std::os::fd::BorrowedFd;
        let streams = [
            std::io::stdin().as_fd().try_clone_to_owned(),
            std::io::stdout().as_fd().try_clone_to_owned(),
            std::io::stderr().as_fd().try_clone_to_owned(),
        ];
        let controlling =
            |fd: BorrowedFd<'_>| nix::unistd::isatty(fd).unwrap_or(false) && tcgetpgrp(fd).is_ok();
        let Some(terminal) = streams
            .into_iter()
            .flatten()
            .find(|fd| controlling(fd.as_fd()))
        else {
            return Ok(None);
        };
        Ok(Some(TerminalJob {
            terminal,
            stop: take_over(SignalKind::from_raw(nix::libc::SIGTSTP), "SIGTSTP")?,
            resume: take_over(SignalKind::from_raw(nix::libc::SIGCONT), "SIGCONT")?,
        }))
    }

    pub fn place(&self) -> JobPlace {
        if crate::prompt::PROMPT_HOLDS_FOREGROUND.load(std::sync::atomic::Ordering::SeqCst) {
            return JobPlace::Prompting;
        }
        match tcgetpgrp(self.terminal.as_fd()) {
            Ok(group) if group == getpgrp() => JobPlace::Foreground,
            Ok(_) => JobPlace::Background,
            Err(_) => JobPlace::Gone,
        }
    }

    /// The next thing to act on: a signal, or time to look again.
    pub async fn next(&mut self) -> JobEvent {
        tokio::select! {
            _ = self.stop.recv() => JobEvent::Stop,
            _ = self.resume.recv() => JobEvent::Resumed,
            () = tokio::time::sleep(LOOK_EVERY) => JobEvent::Look,
        }
    }

    /// Stops this process as `SIGTSTP`'s default action would (with
    /// `SIGSTOP`: the handler stays), and returns once it is continued. Not
    /// when nothing would continue it: adopted by init, its shell gone.
    pub fn stop_self() {
        if nix::unistd::getppid().as_raw() != 1 {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
        }
    }
}
