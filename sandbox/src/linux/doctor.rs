//! What this machine offers the sandbox, and whether that is enough.

use std::fs;
use std::path::PathBuf;

use super::bwrap::BWRAP_PATHS;
use super::sys;
use crate::SandboxError;

/// The lowest Landlock ABI the file-system rules need (`TRUNCATE`).
pub const REQUIRED_LANDLOCK_ABI: u32 = 3;
/// The ABI that adds the abstract-unix-socket and signal scopes, applied
/// when the kernel has it.
pub const SCOPES_LANDLOCK_ABI: u32 = 6;

/// A snapshot of the kernel and tools the sandbox relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineReport {
    pub kernel: String,
    /// `None` when Landlock is not enabled.
    pub landlock_abi: Option<u32>,
    /// Whether this process may create user namespaces.
    pub user_namespaces: bool,
    pub seccomp: bool,
    /// What the sandbox's supervisor needs: seccomp user notification in
    /// the layout it was built for, and pidfds for threads (Linux 6.9;
    /// killable notification waits, Linux 5.19, come with it).
    pub seccomp_supervisor: bool,
    pub bwrap: Option<PathBuf>,
    pub bwrap_version: Option<String>,
}

impl MachineReport {
    pub fn probe() -> MachineReport {
        let read = |path: &str| fs::read_to_string(path).map(|text| text.trim().to_owned());
        let user_namespaces = read("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|max| max.parse::<u64>().ok())
            .is_some_and(|max| max > 0)
            && read("/proc/sys/kernel/unprivileged_userns_clone")
                .map_or(true, |v| v == "1" || nix::unistd::geteuid().is_root());
        let bwrap = BWRAP_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file());
        let bwrap_version = bwrap.as_ref().and_then(|path| {
            let output = std::process::Command::new(path)
                .arg("--version")
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        });
        MachineReport {
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            landlock_abi: sys::landlock_abi(),
            user_namespaces,
            seccomp: read("/proc/self/status")
                .is_ok_and(|status| status.lines().any(|line| line.starts_with("Seccomp:"))),
            seccomp_supervisor: sys::notification_sizes_match()
                && sys::open_thread_pidfd(nix::unistd::gettid().as_raw()).is_ok(),
            bwrap,
            bwrap_version,
        }
    }

    /// Everything a managed profile needs, or the first thing missing.
    pub fn require(&self) -> Result<(), SandboxError> {
        if self.bwrap.is_none() {
            return Err(SandboxError::NoBubblewrap);
        }
        if !self.user_namespaces {
            return Err(SandboxError::Unsupported(
                "user namespaces are disabled (see /proc/sys/user/max_user_namespaces and \
                 kernel.unprivileged_userns_clone)"
                    .into(),
            ));
        }
        match self.landlock_abi {
            Some(abi) if abi >= REQUIRED_LANDLOCK_ABI => {}
            Some(abi) => {
                return Err(SandboxError::Unsupported(format!(
                    "Landlock ABI {abi} is below the required {REQUIRED_LANDLOCK_ABI} (Linux 6.2)"
                )))
            }
            None => {
                return Err(SandboxError::Unsupported(
                    "Landlock is not enabled in this kernel (add it to the lsm= boot parameter)"
                        .into(),
                ))
            }
        }
        if !self.seccomp {
            return Err(SandboxError::Unsupported(
                "the kernel has no seccomp".into(),
            ));
        }
        if !self.seccomp_supervisor {
            return Err(SandboxError::Unsupported(
                "the kernel lacks seccomp user notification or thread pidfds (Linux 6.9), \
                 which the sandbox's supervisor needs"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI and development machines must be able to sandbox; a machine that
    /// cannot is a failed setup, not a skipped test.
    #[test]
    fn this_machine_provides_what_the_sandbox_needs() {
        let report = MachineReport::probe();
        assert_eq!(
            report.require().map_err(|e| e.to_string()),
            Ok(()),
            "{report:?}"
        );
        assert!(report
            .bwrap_version
            .is_some_and(|v| v.starts_with("bubblewrap")));
        assert!(!report.kernel.is_empty());
    }

    #[test]
    fn missing_parts_are_named() {
        let good = MachineReport {
            kernel: "6.1".into(),
            landlock_abi: Some(7),
            user_namespaces: true,
            seccomp: true,
            seccomp_supervisor: true,
            bwrap: Some("/usr/bin/bwrap".into()),
            bwrap_version: Some("bubblewrap 0.8.0".into()),
        };
        assert!(good.require().is_ok());
        // (change, words the error must contain)
        type Change = fn(&mut MachineReport);
        let cases: [(Change, &str); 6] = [
            (|r| r.bwrap = None, "bubblewrap"),
            (|r| r.user_namespaces = false, "user namespaces"),
            (|r| r.landlock_abi = Some(2), "ABI 2"),
            (|r| r.landlock_abi = None, "Landlock is not enabled"),
            (|r| r.seccomp = false, "seccomp"),
            (|r| r.seccomp_supervisor = false, "thread pidfds"),
        ];
        for (change, words) in cases {
            let mut report = good.clone();
            change(&mut report);
            let error = report.require().unwrap_err().to_string();
            assert!(error.contains(words), "{error}");
        }
    }
}
