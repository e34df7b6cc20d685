//! `Escalate`: the server runs the command; the wrapper stands in for it.
//!
//! The wrapper stays in the shell's job in the child's place: it hands over
//! its descriptors, forwards the signals a job receives, stops when the
//! child is stopped by the terminal, and ends the way the child ended.

use std::os::fd::{AsFd, BorrowedFd, RawFd};

use execgate_protocol::{
    send_with_fds, ClientMessage, ServerMessage, Termination, WrapperArgs, FORWARDED_SIGNALS,
    MAX_PASSED_FDS,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{raise, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::server::{send_past_descriptors_in_flight, Conversation, WrapperError};
use crate::{refuse, report, shown, sys, EXIT_CANNOT_RUN};

pub(crate) fn escalate(args: &WrapperArgs, conversation: Conversation) -> ! {
    match stand_in(args, &conversation) {
        Ok(Termination::Exited(code)) => sys::exit_now(code),
        Ok(Termination::Signaled { signal, .. }) => sys::die_of(signal),
        Err(Failure::BeforeStart(error)) => refuse(&args.path, &error),
        Err(Failure::SpawnFailed {
            reason,
            exit_status,
        }) => {
            report(&format!("cannot start {}: {reason}", shown(&args.path)));
            sys::exit_now(i32::from(exit_status))
        }
        Err(Failure::AfterStart(error)) => {
            report(&format!("{error} while {} was running", shown(&args.path)));
            sys::exit_now(EXIT_CANNOT_RUN)
        }
    }
}

enum Failure {
    BeforeStart(WrapperError),
    /// Nothing ran; the server says what to end with (zsh's status for the
    /// exec that failed, or 126).
    SpawnFailed {
        reason: String,
        exit_status: u8,
    },
    AfterStart(WrapperError),
}

fn stand_in(args: &WrapperArgs, conversation: &Conversation) -> Result<Termination, Failure> {
    // Block the forwarded signals before the child exists, so that none
    // arriving in between is lost: they queue for the signalfd instead.
    let mut mask = SigSet::empty();
    for signal in FORWARDED_SIGNALS
        .into_iter()
        .filter_map(|n| Signal::try_from(n).ok())
    {
        mask.add(signal);
    }
    mask.thread_block().map_err(|errno| {
        Failure::BeforeStart(WrapperError::stand_in("block the signals it forwards")(
            errno.into(),
        ))
    })?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|errno| {
            Failure::BeforeStart(WrapperError::stand_in("open its signal descriptor")(
                errno.into(),
            ))
        })?;

    let handed = hand_over_descriptors(args, conversation).map_err(Failure::BeforeStart)?;
    match conversation.receive().map_err(Failure::BeforeStart)? {
        ServerMessage::Started { .. } => sys::let_go_of_streams(&handed),
        ServerMessage::SpawnFailed {
            reason,
            exit_status,
        } => {
            return Err(Failure::SpawnFailed {
                reason,
                exit_status,
            })
        }
        other => {
            return Err(Failure::BeforeStart(WrapperError::UnexpectedReply(
                other.name().to_owned(),
            )))
        }
    }
    conversation
        .wait_without_timeout()
        .map_err(Failure::AfterStart)?;
    relay_until_exit(conversation, &signals).map_err(Failure::AfterStart)
}

/// Sends the server every descriptor the command would inherit; returns
/// their numbers.
fn hand_over_descriptors(
    args: &WrapperArgs,
    conversation: &Conversation,
) -> Result<Vec<RawFd>, WrapperError> {
    let numbers = sys::inheritable_fds(args.socket_fd)
        .map_err(WrapperError::stand_in("list its descriptors"))?;
    if numbers.len() > MAX_PASSED_FDS {
        return Err(WrapperError::stand_in("hand its descriptors over")(
            std::io::Error::other(format!(
                "{} open descriptors, more than the {MAX_PASSED_FDS} that can be handed over",
                numbers.len()
            )),
        ));
    }
    // Started in the background with the terminal as its input, it gets
    // `/dev/null` there, as a non-interactive shell's background jobs do:
    // in a session of its own, nothing would stop it reading what is typed
    // to the shell.
    let quiet_input = match sys::input_is_the_terminal_in_the_background() {
        true => Some(
            std::fs::File::open("/dev/null")
                .map_err(WrapperError::stand_in("open /dev/null for its input"))?,
        ),
        false => None,
    };
    let fds: Vec<BorrowedFd<'_>> = numbers
        .iter()
        .filter_map(|&fd| match (fd, &quiet_input) {
            (0, Some(null)) => Some(null.as_fd()),
            _ => sys::borrow_open_fd(fd),
        })
        .collect();
    if fds.len() != numbers.len() {
        return Err(WrapperError::stand_in("hand its descriptors over")(
            std::io::Error::other("a descriptor closed while listing"),
        ));
    }
    let frame = execgate_protocol::encode_client(&ClientMessage::Descriptors(numbers.clone()))
        .map_err(WrapperError::RequestTooLarge)?;
    send_past_descriptors_in_flight(
        || send_with_fds(conversation.socket(), &frame, &fds),
        WrapperError::Lost,
    )?;
    Ok(numbers)
}

fn relay_until_exit(
    conversation: &Conversation,
    signals: &SignalFd,
) -> Result<Termination, WrapperError> {
    loop {
        let mut fds = [
            PollFd::new(conversation.socket(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(WrapperError::Lost(errno.into())),
        }
        let server_ready = fds[0].any().unwrap_or(false);
        let signal_ready = fds[1].any().unwrap_or(false);
        if signal_ready {
            forward_pending(conversation, signals)?;
        }
        if server_ready {
            match conversation.receive()? {
                ServerMessage::Exited(termination) => return Ok(termination),
                other => return Err(WrapperError::UnexpectedReply(other.name().to_owned())),
            }
        }
    }
}

fn forward_pending(conversation: &Conversation, signals: &SignalFd) -> Result<(), WrapperError> {
    while let Ok(Some(info)) = signals.read_signal() {
        let signo = info.ssi_signo as RawFd;
        conversation.send(&ClientMessage::Signal(signo))?;
        if signo == Signal::SIGTSTP as i32 {
            // The child stops; so does its stand-in, so that the shell sees
            // the job stopped, by the terminal's signal as stock zsh would
            // ("suspended", 148; `SIGSTOP` read "suspended (signal)").
            // `fg`/`bg` continue us, and the SIGCONT that comes with them
            // is forwarded on the next turn.
            // Only where a shell's job control sees it: the kernel drops
            // it in an orphaned process group, which `SIGSTOP` stops.
            if sys::holds_the_terminal() {
                let mut only = SigSet::empty();
                only.add(Signal::SIGTSTP);
                let _ = only.thread_unblock();
                let _ = raise(Signal::SIGTSTP);
                let _ = only.thread_block();
            } else {
                let _ = raise(Signal::SIGSTOP);
            }
        }
    }
    Ok(())
}
