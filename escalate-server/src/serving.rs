//! The one thread every session in the process is served on.
//!
//! A decision sits on the path of every exec a shell makes, and its shells
//! are what it competes with for a CPU. On the embedder's runtime it
//! waited behind the embedder's own tasks, and with more than one worker
//! each worker was one more thread queued behind the shells: with 64 shells
//! on two CPUs, a tenth of the decisions took more than a millisecond to
//! come out. Sessions are served here instead: on one thread, with a
//! current-thread runtime, which asks the kernel for short slices
//! ([`sys::ask_for_short_slices`]) so that it runs soon after a request
//! wakes it, at its usual weight and without any privilege. A kernel
//! without custom slices (before 6.12) ignores the request; the thread of
//! its own still helps.
//!
//! Blocking work (resolving a sandbox, a hand-over, an unsandboxed start, a
//! synced audit record) goes to this runtime's blocking threads, which get
//! the default slice.
//!
//! This module must never end the thread: tasks of live sessions run on
//! it. Whatever a task does on it, every session waits for, so the tasks
//! keep long waits off it. What can still hold it, known and bounded or
//! left to the embedder: opening a request's executable and working
//! directory (a hung network mount holds the open), an audit record
//! waiting for another process's lock on the log (a second or two), the
//! embedder's policy, approver and event callbacks (which must not call
//! `block_in_place`: this runtime has one thread; a task they spawn runs
//! here too).

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::sys;

/// The slice asked for: the kernel's minimum. A decision takes a few tens
/// of microseconds of CPU.
const SLICE: Duration = Duration::from_micros(100);

/// The serving runtime, started by the first session that needs it.
pub(crate) fn handle() -> io::Result<Handle> {
    static HANDLE: Mutex<Option<Handle>> = Mutex::new(None);
    let mut handle = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*handle {
        return Ok(handle.clone());
    }
    let runtime = keep_blocking_threads(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("execgate-blocking"),
    )?;
    let started = runtime.handle().clone();
    std::thread::Builder::new()
        .name("execgate-sessions".into())
        .spawn(move || {
            match sys::ask_for_short_slices(SLICE) {
                Ok(sys::Slices::Asked | sys::Slices::RealTime) => {}
                Ok(sys::Slices::Idle) => tracing::warn!(
                    "sessions are served under SCHED_IDLE, inherited from the process that \
                     started them: decisions wait until nothing else wants a CPU"
                ),
                Err(error) => {
                    tracing::debug!(%error, "sessions are served with the default slice");
                }
            }
            runtime.block_on(std::future::pending::<()>());
        })?;
    *handle = Some(started.clone());
    Ok(started)
}

/// How long an idle blocking thread of a runtime built with
/// [`keep_blocking_threads`] waits for work: for the runtime's life.
const BLOCKING_THREADS_KEPT: Duration = Duration::from_secs(u32::MAX as u64);

/// Builds a runtime whose blocking pool always has a thread: its threads
/// stay once started, and one starts at once. Tokio's pool panics when it
/// has none and none can start (the process, its user or its cgroup at
/// its limit of processes: a fork bomb in a sandbox), which aborts a
/// release build and every session with it (review 243); with one, it
/// queues the work until a thread is free.
pub fn keep_blocking_threads(
    builder: &mut tokio::runtime::Builder,
) -> io::Result<tokio::runtime::Runtime> {
    let runtime = builder.thread_keep_alive(BLOCKING_THREADS_KEPT).build()?;
    drop(runtime.spawn_blocking(|| ()));
    Ok(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_share_one_thread_that_asks_for_short_slices() {
        let (first, second) = (handle().unwrap(), handle().unwrap());
        let on = |handle: &Handle| {
            let (sender, receiver) = std::sync::mpsc::channel();
            handle.spawn(async move {
                let slice = sys::current_slice().unwrap();
                sender.send((std::thread::current().id(), slice)).unwrap()
            });
            receiver.recv().unwrap()
        };
        let (thread, slice) = on(&first);
        assert_eq!(on(&second).0, thread);
        assert_ne!(thread, std::thread::current().id());
        // Linux 6.12 and later, as every machine this is tested on.
        assert_eq!(slice, SLICE);
        // What the thread starts gets the default slice again.
        let (sender, receiver) = std::sync::mpsc::channel();
        first.spawn(async move {
            let started = std::thread::spawn(sys::current_slice).join().unwrap();
            sender.send(started.unwrap()).unwrap()
        });
        let default = receiver.recv().unwrap();
        assert!(default > SLICE, "{default:?}");
    }
}
