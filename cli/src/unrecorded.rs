//! What execgate says on stderr when its session's audit records cannot be
//! written: with `on_failure = "warn"` the session goes on, and the person
//! at the terminal must know that what runs now leaves no record; with
//! `deny`, decisions are refused with the reason, but a record of what
//! already happened (a child's exit, the session's end) fails silently
//! otherwise. Never turns a failure into a success or the reverse: it only
//! watches the sink it wraps.

use std::sync::atomic::{AtomicU64, Ordering};

use execgate_core_bridge::server::{AuditSink, SessionEvent};

/// An audit sink that says on stderr when its records start failing, and
/// how many were lost when they are written again.
pub struct SaysWhenUnrecorded<S> {
    inner: S,
    /// Records lost since the last one written.
    lost: AtomicU64,
    /// Records lost in all, as the session's end counts them.
    lost_in_all: AtomicU64,
    /// What the session does meanwhile, as the warning says it.
    meanwhile: &'static str,
}

impl<S> SaysWhenUnrecorded<S> {
    /// `goes_on`: the session carries decisions out unrecorded
    /// (`on_failure = "warn"`) rather than refusing them.
    pub fn new(inner: S, goes_on: bool) -> Self {
        SaysWhenUnrecorded {
            inner,
            lost: AtomicU64::new(0),
            lost_in_all: AtomicU64::new(0),
            meanwhile: if goes_on {
                "going on without records, as on_failure = \"warn\" says"
            } else {
                "every command that asks is refused meanwhile, as on_failure = \"deny\" says \
                 (one already running goes on, its end unrecorded)"
            },
        }
    }
}

impl<S: AuditSink> AuditSink for SaysWhenUnrecorded<S> {
    fn record(&self, session_id: &str, event: &SessionEvent) -> Result<(), String> {
        let recorded = self.inner.record(session_id, event);
        match &recorded {
            Err(reason) => {
                self.lost_in_all.fetch_add(1, Ordering::SeqCst);
                if self.lost.fetch_add(1, Ordering::SeqCst) == 0 {
                    crate::stderr::line(&format!(
                        "execgate: warning: the audit log cannot be written ({reason}); {}",
                        self.meanwhile
                    ));
                }
            }
            // The session's end is written whatever its share left: that
            // one says nothing of the records before it (probe 176 read
            // "written again" as recording resumed), and its count is the
            // session's, as the record's `lost_records` (review 37).
            Ok(()) if matches!(event, SessionEvent::Ended { .. }) => {
                let lost = self.lost_in_all.load(Ordering::SeqCst);
                if lost > 0 {
                    crate::stderr::line(&format!(
                        "execgate: the session ended with {lost} record(s) in all not in the \
                         audit log"
                    ));
                }
            }
            // A load first: every decision's record passes here.
            Ok(()) if self.lost.load(Ordering::Relaxed) > 0 => {
                let lost = self.lost.swap(0, Ordering::SeqCst);
                if lost > 0 {
                    crate::stderr::line(&format!(
                        "execgate: the audit log is written again; {lost} record(s) were lost"
                    ));
                }
            }
            Ok(()) => {}
        }
        recorded
    }

    fn waits_for_disk(&self, event: &SessionEvent) -> bool {
        self.inner.waits_for_disk(event)
    }

    fn log_files(&self) -> Vec<std::path::PathBuf> {
        self.inner.log_files()
    }
}
