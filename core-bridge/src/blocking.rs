//! Blocking work done off the runtime's threads, and done all the same when
//! no thread can be had for it.
//!
//! Tokio's blocking pool starts a thread for work when none is idle. When
//! the kernel refuses one (the process, its user or its cgroup at its
//! limit of processes: a fork bomb in the sandbox does it), the pool
//! panics if it has no thread at all, and otherwise queues the work behind
//! threads that may never come free, for good: it starts threads only as
//! work is handed to it (probe 237: a call whose shell could not start
//! was never answered). Work handed over here runs on the pool when it
//! can, and on the caller's thread when it cannot, which holds up the
//! runtime for as long as the work takes: only what a caller must wait for
//! anyway, and short (a record written), belongs here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long work may wait in the pool's queue before it is taken back
/// and done in place: a pool that can start threads starts one at once.
const QUEUED_AT_MOST: Duration = Duration::from_secs(1);

/// Runs `work` on the blocking pool, or on this thread when the pool can
/// start no thread for it; a panic in `work` is the caller's.
pub(crate) async fn off_the_runtime<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // Whoever takes it first runs it: the pool's thread, or this one.
    let slot = Arc::new(Mutex::new(Some(work)));
    let take = |slot: &Mutex<Option<F>>| slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    let theirs = Arc::clone(&slot);
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::spawn_blocking(move || take(&theirs).map(|work| work()))
    }));
    let Ok(mut handle) = spawned else {
        // No thread, and none can start (tokio's panic, said on stderr).
        return match take(&slot) {
            Some(work) => work(),
            None => unreachable!("work is never handed to a pool that panicked"),
        };
    };
    let joined = match tokio::time::timeout(QUEUED_AT_MOST, &mut handle).await {
        Ok(joined) => joined,
        Err(_queued) => match take(&slot) {
            Some(work) => return work(),
            // Started meanwhile: it finishes there.
            None => handle.await,
        },
    };
    match joined {
        Ok(Some(done)) => done,
        // Taken back after all (the timeout above) and done in place.
        Ok(None) => unreachable!("work taken back is never awaited in the pool"),
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => unreachable!("a blocking task is never cancelled"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::off_the_runtime;

    /// Work queued behind a thread that never comes free is done in place
    /// (the pool is full here; in probe 237 no thread could start).
    #[test]
    fn work_queued_behind_busy_threads_is_done_in_place() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        runtime.block_on(async {
            let busy = tokio::task::spawn_blocking(move || released.recv());
            let here = std::thread::current().id();
            let ran_on = off_the_runtime(|| std::thread::current().id()).await;
            assert_eq!(ran_on, here);
            // With a thread to spare, the pool's.
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            let ran_on = off_the_runtime(|| std::thread::current().id()).await;
            assert_ne!(ran_on, here);
        });
    }
}
