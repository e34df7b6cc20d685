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
use std::sync::{Mutex, PoisonError};

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

fn jobs() -> Result<mpsc::Sender<Job>, String> {
    static JOBS: Starter = Starter::new();
    JOBS.sender(start_thread)
}

/// The spawner thread's queue, started at the first job. A start that
/// failed is tried again at the next job (probe 237: a command that used
/// up the pid limit at the first sandboxed escalation left every later
/// one of the process failing, "cannot start the spawner thread").
struct Starter(Mutex<Option<mpsc::Sender<Job>>>);

impl Starter {
    const fn new() -> Starter {
        Starter(Mutex::new(None))
    }

    fn sender(
        &self,
        start: impl FnOnce(mpsc::Receiver<Job>) -> std::io::Result<()>,
    ) -> Result<mpsc::Sender<Job>, String> {
        let mut started = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = started.as_ref() {
            return Ok(sender.clone());
        }
        let (sender, receiver) = mpsc::channel::<Job>();
        start(receiver).map_err(|error| format!("cannot start the spawner thread: {error}"))?;
        *started = Some(sender.clone());
        Ok(sender)
    }
}

fn start_thread(receiver: mpsc::Receiver<Job>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("execgate-spawner".into())
        .spawn(move || {
            for job in receiver {
                // A panicking job drops its answer (the caller hears of
                // it); the thread, which children's lives hang on, goes on.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            }
        })
        .map(drop)
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

    #[test]
    fn a_thread_that_could_not_start_is_started_at_the_next_job() {
        let starter = Starter::new();
        let failed = starter.sender(|_| Err(std::io::Error::from_raw_os_error(nix::libc::EAGAIN)));
        assert!(failed.is_err_and(|why| why.starts_with("cannot start the spawner thread")));
        let sender = starter.sender(start_thread).unwrap();
        let (done, result) = mpsc::channel();
        sender
            .send(Box::new(move || done.send(7).unwrap()))
            .unwrap();
        assert_eq!(result.recv().unwrap(), 7);
        // Started once: the next job goes to the same thread.
        let again = starter.sender(|_| panic!("started twice")).unwrap();
        assert!(again.send(Box::new(|| ())).is_ok());
    }
}
