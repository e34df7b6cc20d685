//! The server → warden channel: how a server tells its warden which
//! process groups to kill if the server dies.
//!
//! The warden is the exec wrapper started as `WRAPPER --warden FD
//! [CGROUP-DIR]` with the read end of a pipe at `FD`. The server holds the
//! write end and nothing else does, so the warden reads end of file exactly
//! when the server has gone, however it went. Each record is
//! [`WARDEN_RECORD_LEN`] bytes: an opcode (`+` track, `-` untrack) and a
//! little-endian `i32` process group id. Records are shorter than
//! `PIPE_BUF`, so concurrent writers never interleave them.

/// The wrapper's first argument that makes it the warden.
pub const WARDEN_FLAG: &str = "--warden";

/// The length of one record on the warden's pipe.
pub const WARDEN_RECORD_LEN: usize = 5;

/// One instruction to the warden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WardenRecord {
    /// Kill this process group if the server dies.
    Track(i32),
    /// The group's leader is about to be reaped: forget it, so that its
    /// number, once free, is never signalled.
    Untrack(i32),
}

impl WardenRecord {
    pub fn encode(self) -> [u8; WARDEN_RECORD_LEN] {
        let (op, pgid) = match self {
            WardenRecord::Track(pgid) => (b'+', pgid),
            WardenRecord::Untrack(pgid) => (b'-', pgid),
        };
        let mut record = [0; WARDEN_RECORD_LEN];
        record[0] = op;
        record[1..].copy_from_slice(&pgid.to_le_bytes());
        record
    }

    /// `None` for an unknown opcode or a group id that could never be one
    /// (0, negative or 1: signalling those would reach far more than a
    /// session's children).
    pub fn decode(record: &[u8; WARDEN_RECORD_LEN]) -> Option<WardenRecord> {
        let pgid = i32::from_le_bytes([record[1], record[2], record[3], record[4]]);
        if pgid <= 1 {
            return None;
        }
        match record[0] {
            b'+' => Some(WardenRecord::Track(pgid)),
            b'-' => Some(WardenRecord::Untrack(pgid)),
            _ => None,
        }
    }
}

/// How deep and how many cgroups [`cgroup_tree`] looks for below the one
/// it starts at: a program that made more is left what it made beyond them
/// (the kernel caps neither by default).
const CGROUP_TREE_DEPTH: usize = 32;
const CGROUP_TREE_SIZE: usize = 1024;

/// The cgroup `dir` and the cgroups below it, breadth first (every cgroup
/// before those below it), within [`CGROUP_TREE_DEPTH`] and
/// [`CGROUP_TREE_SIZE`]. Only the cgroup file system's own directories: a
/// root program may have mounted another file system inside its cgroup.
/// Not on any exec's path: it walks directories, which allocates.
pub fn cgroup_tree(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::symlink_metadata(dir)?.dev();
    // No recursion: the depth is the program's.
    let mut found = vec![(dir.to_path_buf(), 0)];
    let mut next = 0;
    while let Some((parent, depth)) = found.get(next).cloned() {
        next += 1;
        if depth == CGROUP_TREE_DEPTH || found.len() == CGROUP_TREE_SIZE {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if found.len() == CGROUP_TREE_SIZE {
                break;
            }
            let ours = entry.file_type().is_ok_and(|kind| kind.is_dir())
                && entry.metadata().is_ok_and(|meta| meta.dev() == device);
            if ours {
                found.push((entry.path(), depth + 1));
            }
        }
    }
    Ok(found.into_iter().map(|(dir, _)| dir).collect())
}

/// Removes the cgroup `dir` and the cgroups below it ([`cgroup_tree`]),
/// deepest first: the server at a session's end and the warden at the
/// server's both remove trees a program started unsandboxed as root may
/// have added to (a container tool makes cgroups below its own). A cgroup
/// that still holds a process stays, as does every cgroup above it: the
/// kernel refuses to remove either. The error is `dir`'s own removal's.
pub fn remove_cgroup_tree(dir: &std::path::Path) -> std::io::Result<()> {
    for below in cgroup_tree(dir)?.iter().skip(1).rev() {
        let _ = std::fs::remove_dir(below);
    }
    std::fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On plain directories, which `rmdir` removes only when empty, as it
    /// removes cgroups only when they have none below them: the walk
    /// goes deepest first, and stops at its bounds.
    #[test]
    fn a_cgroup_tree_goes_deepest_first_within_bounds() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("session");
        let deep: std::path::PathBuf = (0..CGROUP_TREE_DEPTH).map(|_| "d").collect();
        std::fs::create_dir_all(tree.join(&deep)).unwrap();
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        remove_cgroup_tree(&tree).unwrap();
        assert!(!tree.exists());

        std::fs::create_dir_all(tree.join(&deep).join("beyond")).unwrap();
        assert!(remove_cgroup_tree(&tree).is_err());
        assert!(tree.join(&deep).join("beyond").exists());
    }

    #[test]
    fn records_round_trip_and_dangerous_groups_are_refused() {
        for record in [WardenRecord::Track(4242), WardenRecord::Untrack(i32::MAX)] {
            assert_eq!(WardenRecord::decode(&record.encode()), Some(record));
        }
        for pgid in [0, 1, -1, i32::MIN] {
            assert_eq!(
                WardenRecord::decode(&WardenRecord::Track(pgid).encode()),
                None
            );
        }
        let mut unknown = WardenRecord::Track(7).encode();
        unknown[0] = b'?';
        assert_eq!(WardenRecord::decode(&unknown), None);
    }
}
