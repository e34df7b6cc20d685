//! The one thread that starts escalated children.
//!
//! bubblewrap's `--die-with-parent` (`PR_SET_PDEATHSIG`) fires when the
//! *thread* that created the process ends, not its process. tokio's
//! blocking threads end after ten idle seconds, so a sandboxed escalation
//! started on one was killed ten seconds into a quiet session. Sandboxes
//! (escalations' and spares') are started here instead, on a thread that
//! lives as long as the process: its end is the server's.
//!
//! Starts are serialized. Each one returns as soon as bubblewrap has
//! executed (the clone is vfork-style), so a start waits behind others for
//! a fraction of a millisecond each. Unsandboxed children are not started
//! here: their start waits for their own executable, which may sit on a
//! slow mount.
//!
//! This module must never run a job that waits on anything but a child's
//! start, and never end its thread.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::OnceLock;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on the spawner thread and waits for its result. `Err` says
/// why it did not run to the end.
pub(crate) async fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (done, result) = oneshot::channel();
    submit(move || {
        let _ = done.send(job());
    })?;
    result
        .await
        .map_err(|_| "the start of the child failed on the spawner thread".to_owned())
}

/// Runs `job` on the spawner thread, without waiting for it. `Err` says
/// why it will not run.
pub(crate) fn submit(job: impl FnOnce() + Send + 'static) -> Result<(), String> {
    jobs()?
        .send(Box::new(job))
        .map_err(|_| "the spawner thread has ended".to_owned())
}

fn jobs() -> Result<&'static mpsc::Sender<Job>, String> {
    static JOBS: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("execgate-spawner".into())
            .spawn(move || {
                for job in receiver {
                    // A panicking job drops its answer (the caller hears of
                    // it); the thread, which children's lives hang on, goes on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map(|_| sender)
            .map_err(|error| format!("cannot start the spawner thread: {error}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_one_lasting_thread_and_a_panic_does_not_end_it() {
        let first = run(|| std::thread::current().id()).await.unwrap();
        assert!(run(|| -> () { panic!("a job that panics") }).await.is_err());
        let second = run(|| std::thread::current().id()).await.unwrap();
        assert_eq!(first, second);
        assert_ne!(first, std::thread::current().id());
    }
}
