//! Capability SIDs: one random `S-1-5-21-a-b-c-d` per writable root, kept
//! in execgate's state directory so the ACEs granted to a root are found
//! and reused by the next run instead of piling up.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{WinPath, WindowsPlanError};

/// The file under the state directory that maps roots to their SIDs.
pub const CAPABILITY_SID_FILE: &str = "windows-capability-sids";

/// A SID in the domain form `S-1-5-21-a-b-c-d` with random sub-authorities,
/// owned by no account: it means "the capability to write this root" and
/// is only ever held as a restricting SID of an execgate token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapabilitySid([u32; 4]);

impl CapabilitySid {
    /// A fresh SID from the operating system's random source.
    pub fn random() -> Result<CapabilitySid, WindowsPlanError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|error| WindowsPlanError::Random(error.to_string()))?;
        let mut parts = [0u32; 4];
        for (part, chunk) in parts.iter_mut().zip(bytes.chunks_exact(4)) {
            *part = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(CapabilitySid(parts))
    }

    pub fn from_parts(parts: [u32; 4]) -> CapabilitySid {
        CapabilitySid(parts)
    }

    /// Parses `S-1-5-21-a-b-c-d`; any other SID is refused, so a tampered
    /// state file cannot make a well-known group (Everyone, the logon SID)
    /// a restricting SID.
    pub fn parse(text: &str) -> Option<CapabilitySid> {
        let rest = text.strip_prefix("S-1-5-21-")?;
        let mut parts = [0u32; 4];
        let mut fields = rest.split('-');
        for part in &mut parts {
            let field = fields.next()?;
            if field.is_empty() || !field.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            *part = field.parse().ok()?;
        }
        fields.next().is_none().then_some(CapabilitySid(parts))
    }
}

impl fmt::Display for CapabilitySid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "S-1-5-21-{a}-{b}-{c}-{d}")
    }
}

/// Roots and their capability SIDs, as persisted: one `SID<TAB>ROOT-KEY`
/// line per root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidStore {
    by_root: BTreeMap<String, CapabilitySid>,
    changed: bool,
}

impl SidStore {
    /// Parses the persisted form; a malformed line is an error, not skipped:
    /// a lost SID would leave its ACEs behind and grow the DACLs.
    pub fn parse(text: &str, origin: &Path) -> Result<SidStore, WindowsPlanError> {
        let mut by_root = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = line.split_once('\t').and_then(|(sid, root)| {
                Some((CapabilitySid::parse(sid)?, WinPath::parse(root).ok()?))
            });
            let Some((sid, root)) = parsed else {
                return Err(WindowsPlanError::SidStore {
                    file: origin.to_path_buf(),
                    reason: format!("line {} is not `SID<TAB>ROOT`", number + 1),
                });
            };
            by_root.insert(root.key(), sid);
        }
        Ok(SidStore {
            by_root,
            changed: false,
        })
    }

    /// Reads `state_dir/windows-capability-sids`; a missing file is an
    /// empty store.
    pub fn load(state_dir: &Path) -> Result<SidStore, WindowsPlanError> {
        let file = state_dir.join(CAPABILITY_SID_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => SidStore::parse(&text, &file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(SidStore::default()),
            Err(error) => Err(WindowsPlanError::SidStore {
                file,
                reason: error.to_string(),
            }),
        }
    }

    /// Writes the store if a SID was added, through a temporary file and a
    /// rename so a crash never leaves half a file. Of two first runs at
    /// once, the last rename wins: the other's new SIDs are made again by
    /// its next run, and their ACEs stay behind.
    pub fn save(&mut self, state_dir: &Path) -> Result<(), WindowsPlanError> {
        if !self.changed {
            return Ok(());
        }
        let file = state_dir.join(CAPABILITY_SID_FILE);
        let failed = |error: std::io::Error| WindowsPlanError::SidStore {
            file: file.clone(),
            reason: error.to_string(),
        };
        std::fs::create_dir_all(state_dir).map_err(failed)?;
        // One partial file per process: two first runs at once must not
        // write into one file and leave it malformed for every later run.
        let partial: PathBuf = state_dir.join(format!(
            "{CAPABILITY_SID_FILE}.{}.partial",
            std::process::id()
        ));
        std::fs::write(&partial, self.to_text()).map_err(failed)?;
        std::fs::rename(&partial, &file).map_err(failed)?;
        self.changed = false;
        Ok(())
    }

    /// The persisted form.
    pub fn to_text(&self) -> String {
        self.by_root
            .iter()
            .map(|(root, sid)| format!("{sid}\t{root}\n"))
            .collect()
    }

    /// The SID of `root`, made and remembered on first use.
    pub fn sid_for(&mut self, root: &WinPath) -> Result<CapabilitySid, WindowsPlanError> {
        if let Some(sid) = self.by_root.get(&root.key()) {
            return Ok(*sid);
        }
        let sid = CapabilitySid::random()?;
        self.insert(root, sid);
        Ok(sid)
    }

    /// Records `sid` for `root` (tests and migrations).
    pub fn insert(&mut self, root: &WinPath, sid: CapabilitySid) {
        self.by_root.insert(root.key(), sid);
        self.changed = true;
    }

    /// Whether a SID was added since loading.
    pub fn is_changed(&self) -> bool {
        self.changed
    }
}
