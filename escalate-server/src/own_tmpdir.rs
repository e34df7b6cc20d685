//! A temporary directory of one escalation with grants: made for it, given
//! to it as `TMPDIR` and as a writable root, and removed when it ends.
//!
//! Programs write what they then run into `TMPDIR` (pip unpacks a package
//! and runs its `setup.py` there). In the temporary directory the session's
//! sandbox shares, the sandbox could swap it first and have it run with the
//! escalation's grants. This one lies in a directory no sandbox of the
//! session can write, and no other escalation is granted it. It must never
//! be made where the session's sandbox can write, nor outlive its
//! escalation by more than the removal's own time.

use std::path::{Path, PathBuf};

/// The directory, removed with everything in it when dropped.
#[derive(Debug)]
pub(crate) struct OwnTmpdir(PathBuf);

impl OwnTmpdir {
    /// Makes `root/<request_id>`, readable and writable by its owner only,
    /// in a `root` that is this user's directory and no one else's to
    /// write. One left by an earlier escalation of the same number is
    /// refused, not reused: what is in it is not this escalation's.
    pub(crate) fn create(root: &Path, request_id: u64) -> Result<OwnTmpdir, String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let private = std::fs::symlink_metadata(root).is_ok_and(|meta| {
            meta.is_dir()
                && meta.uid() == nix::unistd::geteuid().as_raw()
                && meta.mode() & 0o022 == 0
        });
        if !private {
            return Err(format!(
                "not escalated: {} is not a directory of this user that only it can write, \
                 for escalations' temporary directories",
                root.display()
            ));
        }
        let path = root.join(request_id.to_string());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|error| {
                format!(
                    "cannot make the escalation's temporary directory {}: {error}",
                    path.display()
                )
            })?;
        Ok(OwnTmpdir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for OwnTmpdir {
    /// Removed on a thread of its own: what the escalation left there may
    /// be a large tree on a slow disk, which must hold up no session, and
    /// a runtime shutting down would not run a blocking task.
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.0);
        let remove = move || {
            if let Err(error) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), %error, "an escalation's temporary directory was not removed");
            }
        };
        let remover = std::thread::Builder::new().name("execgate-tmp-removal".into());
        if let Err(unstarted) = remover.spawn(remove.clone()) {
            tracing::warn!(%unstarted, "removing an escalation's temporary directory here");
            remove();
        }
    }
}

/// Removes `path` and everything in it, never through a link; directories
/// the escalation left without write permission (`cp -r` of a read-only
/// tree) are made writable by their owner first.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            make_directories_writable(path);
            std::fs::remove_dir_all(path)
        }
        removed => removed,
    }
}

/// Adds the owner's permissions to every directory in `top`, walked by
/// `lstat` (a link is not a directory here). Nothing of the escalation
/// runs any more that could swap one for a link meanwhile: its sandbox
/// ended with it.
fn make_directories_writable(top: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![top.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&directory) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode() | 0o700;
        let _ = std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(mode));
        for entry in std::fs::read_dir(&directory)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn made_private_refused_when_taken_and_removed_with_its_contents() {
        let root = tempfile::tempdir().unwrap();
        let own = OwnTmpdir::create(root.path(), 7).unwrap();
        let path = own.path().to_path_buf();
        assert_eq!(mode(&path), 0o700);
        // What the escalation left: a read-only directory, and a link out.
        std::fs::create_dir_all(path.join("build/locked")).unwrap();
        std::fs::write(path.join("build/locked/setup.py"), "").unwrap();
        std::fs::set_permissions(
            path.join("build/locked"),
            std::fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path().join("kept");
        std::fs::write(&outside, "").unwrap();
        std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), path.join("link")).unwrap();
        assert!(OwnTmpdir::create(root.path(), 7).is_err());
        drop(own);
        let gone = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !path.exists()
        });
        assert!(gone);
        assert!(outside.exists());
        assert_eq!(mode(elsewhere.path()), 0o500, "the link was followed");
        std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    /// A review: a directory the escalation made read-only (`cp -r` of a
    /// read-only tree) kept the whole directory, for every later session's
    /// clean-up to fail on too. Its owner's permissions are added first.
    #[test]
    fn read_only_directories_are_made_removable_and_links_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let locked = root.path().join("a/b");
        std::fs::create_dir_all(&locked).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("a/link")).unwrap();
        for directory in [&locked, &root.path().join("a")] {
            std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
        make_directories_writable(root.path());
        assert_eq!(mode(&locked), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(elsewhere.path()), 0o500);
        std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    /// The directory they are made in must be this user's alone: one
    /// others can write could hold what they planted under the next name.
    #[test]
    fn a_root_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = OwnTmpdir::create(root.path(), 1).unwrap_err();
        assert!(refused.contains("only it can write"), "{refused}");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(OwnTmpdir::create(&link, 1).is_err());
    }
}
