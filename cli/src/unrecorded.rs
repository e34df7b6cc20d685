//! What `on_failure = "warn"` says on stderr: the session goes on when its
//! audit records cannot be written, and the person at the terminal must
//! know that what runs now leaves no record. Never turns a failure into a
//! success or the reverse: it only watches the sink it wraps.

use std::sync::atomic::{AtomicU64, Ordering};

use execgate_core_bridge::server::{AuditSink, SessionEvent};

/// An audit sink that says on stderr when its records start failing, and
/// how many were lost when they are written again.
pub struct SaysWhenUnrecorded<S> {
    inner: S,
    /// Records lost since the last one written.
    lost: AtomicU64,
}

impl<S> SaysWhenUnrecorded<S> {
    pub fn new(inner: S) -> Self {
        SaysWhenUnrecorded {
            inner,
            lost: AtomicU64::new(0),
        }
    }
}

impl<S: AuditSink> AuditSink for SaysWhenUnrecorded<S> {
    fn record(&self, session_id: &str, event: &SessionEvent) -> Result<(), String> {
        let recorded = self.inner.record(session_id, event);
        match &recorded {
            Err(reason) => {
                if self.lost.fetch_add(1, Ordering::SeqCst) == 0 {
                    crate::stderr::line(&format!(
                        "execgate: warning: the audit log cannot be written ({reason}); going \
                         on without records, as on_failure = \"warn\" says"
                    ));
                }
            }
            Ok(()) => {
                let lost = self.lost.swap(0, Ordering::SeqCst);
                if lost > 0 {
                    crate::stderr::line(&format!(
                        "execgate: the audit log is written again; {lost} record(s) were lost"
                    ));
                }
            }
        }
        recorded
    }

    fn waits_for_disk(&self, event: &SessionEvent) -> bool {
        self.inner.waits_for_disk(event)
    }
}
