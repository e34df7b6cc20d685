//! The log file: appends that never interleave, rotation that never loses
//! a record.
//!
//! Every record is one `write(2)` of one whole line to a file opened with
//! `O_APPEND`, so writers in several processes never interleave. Writers
//! hold a shared `flock` on `<log>.lock` while they append and check that
//! their descriptor is still the file at the log's path (reopening if it
//! was rotated); rotation takes the lock exclusively. So no record is ever
//! written to a file after it was rotated away.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use execgate_escalate_server::{AuditSink, Decision, SessionEvent};
use nix::fcntl::{Flock, FlockArg};

use crate::record::{AuditRecord, RecordOptions};
use crate::AuditError;

/// When to rotate and how many old files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a record would take the file past this size.
    pub max_bytes: u64,
    /// Old files kept as `<log>.1` (newest) to `<log>.N`.
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 64 << 20,
            keep: 8,
        }
    }
}

/// An audit log file. Cheap to share: clone the `Arc`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    lock_path: PathBuf,
    rotation: Rotation,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log at `path`.
    pub fn open(path: impl Into<PathBuf>, rotation: Rotation) -> Result<AuditLog, AuditError> {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let file = open_append(&path)?;
        Ok(AuditLog {
            lock_path: lock_path.into(),
            rotation,
            file: Mutex::new(file),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line. With `durable`, the line is on disk
    /// (`fdatasync`) when this returns.
    pub fn append(&self, record: &AuditRecord, durable: bool) -> Result<(), AuditError> {
        let mut line =
            serde_json::to_vec(record).map_err(|error| AuditError::Encode(error.to_string()))?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lock_file = open_lock(&self.lock_path)?;
        let mut shared = Flock::lock(lock_file, FlockArg::LockShared)
            .map_err(|(_, errno)| self.io("cannot lock", errno.into()))?;
        if !same_file(&file, &self.path) {
            *file = open_append(&self.path)?;
        }
        let size = file
            .metadata()
            .map_err(|error| self.io("cannot stat", error))?
            .len();
        if size > 0 && size + line.len() as u64 > self.rotation.max_bytes {
            drop(shared);
            self.rotate()?;
            shared = Flock::lock(open_lock(&self.lock_path)?, FlockArg::LockShared)
                .map_err(|(_, errno)| self.io("cannot lock", errno.into()))?;
            *file = open_append(&self.path)?;
        }
        let written = file
            .write(&line)
            .map_err(|error| self.io("cannot write", error))?;
        if written != line.len() {
            return Err(self.io(
                "short write",
                std::io::Error::new(std::io::ErrorKind::WriteZero, "the record was cut"),
            ));
        }
        if durable {
            file.sync_data()
                .map_err(|error| self.io("cannot sync", error))?;
        }
        drop(shared);
        Ok(())
    }

    /// `<log>` → `<log>.1` → ... → `<log>.keep` (dropped), under the
    /// exclusive lock, unless another writer rotated first.
    fn rotate(&self) -> Result<(), AuditError> {
        let _exclusive = Flock::lock(open_lock(&self.lock_path)?, FlockArg::LockExclusive)
            .map_err(|(_, errno)| self.io("cannot lock", errno.into()))?;
        let size = std::fs::metadata(&self.path)
            .map(|meta| meta.len())
            .unwrap_or(0);
        if size < self.rotation.max_bytes / 2 {
            return Ok(()); // Someone else just rotated.
        }
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.rotation.keep == 0 {
            return std::fs::remove_file(&self.path)
                .map_err(|error| self.io("cannot rotate", error));
        }
        for n in (1..self.rotation.keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))
                    .map_err(|error| self.io("cannot rotate", error))?;
            }
        }
        std::fs::rename(&self.path, numbered(1)).map_err(|error| self.io("cannot rotate", error))
    }

    fn io(&self, what: &str, source: std::io::Error) -> AuditError {
        AuditError::Io {
            what: format!("{what} {}", self.path.display()),
            source,
        }
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| AuditError::Io {
            what: format!("cannot open {}", path.display()),
            source,
        })
}

fn open_lock(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| AuditError::Io {
            what: format!("cannot open {}", path.display()),
            source,
        })
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// The session-facing side: turns events into records and appends them.
/// Escalation decisions are synced to disk before the server acts on them.
pub struct SessionAudit {
    log: Arc<AuditLog>,
    options: RecordOptions,
}

impl SessionAudit {
    pub fn new(log: Arc<AuditLog>, options: RecordOptions) -> Self {
        SessionAudit { log, options }
    }
}

impl AuditSink for SessionAudit {
    fn record(&self, session_id: &str, event: &SessionEvent) -> Result<(), String> {
        let record = AuditRecord::of(event, session_id, SystemTime::now(), &self.options);
        let durable = matches!(
            event,
            SessionEvent::Decided {
                decision: Decision::Escalate(_),
                ..
            }
        );
        self.log
            .append(&record, durable)
            .map_err(|error| error.to_string())
    }
}
