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
    /// Makes `root/<request_id>`, readable and writable by its owner only.
    /// One left by an earlier escalation of the same number is refused, not
    /// reused: what is in it is not this escalation's.
    pub(crate) fn create(root: &Path, request_id: u64) -> Result<OwnTmpdir, String> {
        use std::os::unix::fs::DirBuilderExt;
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
    /// Removed off the serving thread when there is a runtime: what the
    /// escalation left there may be a large tree on a slow disk.
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.0);
        let remove = move || {
            // `remove_dir_all` does not follow links the escalation left.
            if let Err(error) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), %error, "an escalation's temporary directory was not removed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn made_private_refused_when_taken_and_removed_with_its_contents() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let own = OwnTmpdir::create(root.path(), 7).unwrap();
        let path = own.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // What the escalation left, a link out of it included.
        std::fs::create_dir(path.join("build")).unwrap();
        std::fs::write(path.join("build/setup.py"), "").unwrap();
        let outside = root.path().join("kept");
        std::fs::write(&outside, "").unwrap();
        std::os::unix::fs::symlink(root.path(), path.join("link")).unwrap();
        assert!(OwnTmpdir::create(root.path(), 7).is_err());
        drop(own);
        assert!(!path.exists());
        assert!(outside.exists());
    }
}
