//! execgate's own lines on stderr (telemetry events, `--verbose`
//! decisions, the prompt's failures, the start and end lines), written so
//! that no thread of ours ever waits on stderr.
//!
//! Under `execgate run` and `execgate shell` the sandboxed command shares
//! execgate's terminal and can suspend its output (`tcflow(TCOOFF)`): every
//! write to it then blocks in the kernel until someone resumes it. A line
//! written there by a tokio worker of the escalation server would stall the
//! server, and with it the command's next exec. So [`line`] and
//! [`EventWriter`] only put lines into a bounded queue, and one thread of
//! this module's own writes them out: that thread may block, nothing else
//! does. A line that finds the queue full is dropped and counted, and the
//! count is printed once stderr takes lines again. At exit, [`drain`] waits
//! for the queue for as long as stderr keeps taking lines, and gives up
//! after [`PATIENCE`] without progress: lines still queued then are lost
//! (there is nowhere left to say so).
//!
//! The writer thread writes with `write(2)` on descriptor 2, not through
//! `std::io::stderr()`, whose lock it would otherwise hold while blocked.
//! Descriptor 2 itself is left as it is: it is shared with the sandboxed
//! command, so making it non-blocking would change the command's writes.
//!
//! Tested by `cli/tests/interactive.rs` (a run logging with the terminal's
//! output suspended) and `cli/tests/telemetry.rs` (the lines, whole).

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;

/// Lines the queue holds before it drops new ones: ample for any burst of
/// events, bounded memory when stderr takes nothing for a long time.
const CAPACITY: usize = 8192;

/// How long [`drain`] waits without a line written before it gives up.
pub const PATIENCE: Duration = Duration::from_secs(2);

/// Writes `text` and a newline to stderr, without waiting, its controls
/// and format characters escaped and its further lines indented: our
/// lines quote names that come with a repository or a skill (a probe's
/// skill name erased and forged lines; a review's, with a newline, started
/// a line of its own with `execgate:`).
pub fn line(text: &str) {
    let text = crate::output::terminal_safe(text, crate::output::Lines::Kept).replace('\n', "\n  ");
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(b'\n');
    queue().push(bytes);
}

/// One `tracing` event's output, queued whole when dropped (the
/// subscriber formats an event, writes it, and drops the writer). Pass
/// `EventWriter::default` as the subscriber's writer (`EventWriter::json`
/// for JSON lines).
#[derive(Default)]
pub struct EventWriter {
    bytes: Vec<u8>,
    /// JSON lines, whose strings serde leaves with the characters a
    /// terminal acts on (probe 238: a program's name with a right-to-left
    /// override or an 8-bit CSI, raw on stderr): written as JSON escapes.
    json: bool,
}

impl EventWriter {
    pub fn json() -> EventWriter {
        EventWriter {
            bytes: Vec::new(),
            json: true,
        }
    }
}

impl std::io::Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.bytes);
        let bytes = match (self.json, String::from_utf8(bytes)) {
            (true, Ok(text)) => crate::output::json_terminal_safe(text).into_bytes(),
            (_, Ok(text)) => text.into_bytes(),
            (_, Err(not_text)) => not_text.into_bytes(),
        };
        queue().push(bytes);
    }
}

/// Waits until the lines queued so far are written, or until stderr has
/// taken none for [`PATIENCE`]. Call before the process exits.
pub fn drain() {
    let Some(queue) = QUEUE.get() else {
        return;
    };
    let shared = &queue.shared;
    let mut counts = shared.counts.lock().unwrap_or_else(PoisonError::into_inner);
    let target = counts.queued;
    let mut written = counts.written;
    let mut since = Instant::now();
    while counts.written < target {
        let waited = since.elapsed();
        if waited >= PATIENCE {
            return;
        }
        counts = shared
            .changed
            .wait_timeout(counts, PATIENCE - waited)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if counts.written != written {
            written = counts.written;
            since = Instant::now();
        }
    }
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE.get_or_init(Queue::start)
}

/// The sending side, and what the writer thread reports.
struct Queue {
    /// `None` when no writer thread could be started: lines are then
    /// written by whoever sends them, as `eprintln!` would.
    sender: Option<SyncSender<Vec<u8>>>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    counts: Mutex<Counts>,
    changed: Condvar,
    /// Lines dropped since the writer last said so.
    dropped: AtomicU64,
}

/// Lines taken into the queue, and lines done with (written, or failed
/// for good).
#[derive(Default)]
struct Counts {
    queued: u64,
    written: u64,
}

impl Queue {
    fn start() -> Queue {
        let shared = Arc::new(Shared::default());
        let (sender, receiver) = sync_channel(CAPACITY);
        let writer_shared = shared.clone();
        let started = std::thread::Builder::new()
            .name("execgate-stderr".into())
            .spawn(move || write_out(&receiver, &writer_shared));
        Queue {
            sender: started.is_ok().then_some(sender),
            shared,
        }
    }

    fn push(&self, bytes: Vec<u8>) {
        let Some(sender) = &self.sender else {
            write_all(&bytes);
            return;
        };
        // Counted under the lock, so that `drain` knows what to wait for.
        let mut counts = self
            .shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match sender.try_send(bytes) {
            Ok(()) => counts.queued += 1,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The writer thread: writes each line whole, in order, blocking as long
/// as stderr does.
fn write_out(receiver: &Receiver<Vec<u8>>, shared: &Shared) {
    while let Ok(bytes) = receiver.recv() {
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            write_all(
                format!("execgate: {dropped} lines for stderr were dropped while it took none\n")
                    .as_bytes(),
            );
        }
        write_all(&bytes);
        shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .written += 1;
        shared.changed.notify_all();
    }
}

/// Writes `bytes` to descriptor 2; a line stderr refuses (closed, a
/// reader gone) is lost, as `eprintln!` would lose it.
fn write_all(mut bytes: &[u8]) {
    let stderr = std::io::stderr();
    while !bytes.is_empty() {
        match nix::unistd::write(stderr.as_fd(), bytes) {
            Ok(0) => return,
            Ok(written) => bytes = &bytes[written..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}
