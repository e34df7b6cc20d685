//! Blocking work done off the runtime's threads, and done all the same when
//! no thread can be had for it.
//!
//! Tokio's blocking pool starts a thread for work when none is idle. When
//! the kernel refuses one (the process, its user or its cgroup at its
//! limit of processes: a fork bomb in the sandbox does it), the pool
//! panics if it has no thread at all (which aborts a release build), and
//! otherwise queues the work until one of its threads comes free (probe
//! 237: queued behind a thread that never did, a call whose shell could
//! not start was never answered). The runtimes this crate's callers build
//! keep their blocking threads
//! (`execgate_escalate_server::keep_blocking_threads`), so the pool never
//! panics; work that must finish now (a record of something that did not
//! happen, which its caller waits for) gets a thread of its own here
//! instead, or runs on the caller's when none can start, holding up the
//! runtime for as long as it takes: only short work belongs here.

use std::sync::{Arc, Mutex, PoisonError};

/// Runs `work` on a thread of its own, or on this one when no thread can
/// start; `None` if it panicked (said by the panic hook).
pub(crate) async fn off_the_runtime<T, F>(work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // A thread that cannot start drops what it was given: the work stays
    // here, for this thread to take back.
    let slot = Arc::new(Mutex::new(Some(work)));
    let take = |slot: &Mutex<Option<F>>| slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    let (done, result) = tokio::sync::oneshot::channel();
    let theirs = Arc::clone(&slot);
    let started = std::thread::Builder::new()
        .name("execgate-blocking".into())
        .spawn(move || {
            if let Some(work) = take(&theirs) {
                let _ = done.send(work());
            }
        });
    match started {
        Ok(_) => result.await.ok(),
        Err(_) => take(&slot).map(|work| work()),
    }
}

#[cfg(test)]
mod tests {
    use super::off_the_runtime;

    /// The work runs once, on a thread of its own, and its panic is the
    /// caller's `None`.
    #[test]
    fn work_runs_on_a_thread_of_its_own() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let here = std::thread::current().id();
            let ran_on = off_the_runtime(|| std::thread::current().id()).await;
            assert!(ran_on.is_some_and(|ran_on| ran_on != here));
            let panicked = off_the_runtime(|| -> u8 { panic!("on purpose") }).await;
            assert_eq!(panicked, None);
        });
    }
}
