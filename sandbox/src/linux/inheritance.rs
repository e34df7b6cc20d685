//! What a program gets from the process that executes it beside its
//! descriptors, environment and directory: its umask, its resource limits
//! and the signals it ignores. An escalated program is started by the
//! server, not by the shell that asked for it, so the server reads these
//! from the requester and passes them on, never looser than its own: the
//! umask keeps the server's bits too, and each limit is the lower of the
//! two (a sandbox could otherwise have an unsandboxed program make files
//! anyone may write). Ignored signals pass as they are, but for `SIGCHLD`:
//! the others only keep the program from being ended by a signal it could
//! ignore itself, where an ignored `SIGCHLD` has the kernel reap its
//! children unwaited, and a program that waits for them reads a failure as
//! a success (probe 228: Python's `subprocess` gives 0 for a child it
//! cannot wait for). zsh never starts a command with it ignored (`trap ''
//! CHLD` does nothing); another program in the sandbox that asks the
//! server itself could.

use std::io;

/// The limits passed on: every one the kernel has (as numbers: glibc and
/// musl type them differently, so the cast is needed on one of them).
#[allow(clippy::unnecessary_cast)]
const LIMITS: [u32; 16] = [
    libc::RLIMIT_CPU as u32,
    libc::RLIMIT_FSIZE as u32,
    libc::RLIMIT_DATA as u32,
    libc::RLIMIT_STACK as u32,
    libc::RLIMIT_CORE as u32,
    libc::RLIMIT_RSS as u32,
    libc::RLIMIT_NPROC as u32,
    libc::RLIMIT_NOFILE as u32,
    libc::RLIMIT_MEMLOCK as u32,
    libc::RLIMIT_AS as u32,
    libc::RLIMIT_LOCKS as u32,
    libc::RLIMIT_SIGPENDING as u32,
    libc::RLIMIT_MSGQUEUE as u32,
    libc::RLIMIT_NICE as u32,
    libc::RLIMIT_RTPRIO as u32,
    libc::RLIMIT_RTTIME as u32,
];

/// Signals 1 to 31, as bits.
const STANDARD_SIGNALS: u64 = (1 << 31) - 1;

/// The ignored signals passed on: the standard ones but `SIGCHLD` (signal
/// `n` is bit `n - 1`).
const PASSED_ON_IGNORED: u64 = STANDARD_SIGNALS & !(1 << (libc::SIGCHLD - 1));

/// A umask, resource limits and ignored signals to start a program with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inheritance {
    pub umask: u32,
    /// Bit `n - 1` for signal `n`.
    pub ignored: u64,
    /// (resource, soft, hard), `RLIM_INFINITY` for none.
    pub limits: Vec<(u32, u64, u64)>,
}

impl Inheritance {
    /// What process `pid` would pass on, made no looser than this
    /// process's own. An error when `pid` cannot be read (gone, or not
    /// this user's).
    pub fn of(pid: i32) -> io::Result<Inheritance> {
        let ours = Self::ours()?;
        let theirs = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let mut limits = Vec::with_capacity(LIMITS.len());
        for (resource, our_soft, our_hard) in ours.limits.iter().copied() {
            let [soft, hard] =
                Inheritance::no_looser(super::sys::limit_of(pid, resource)?, (our_soft, our_hard));
            limits.push((resource, soft, hard));
        }
        Ok(Inheritance {
            umask: (status_field(&theirs, "Umask:", 8).ok_or_else(missing)? as u32 | ours.umask)
                & 0o777,
            // The standard signals only: glibc leaves two real-time ones
            // of its own ignored in the programs it starts (see the
            // helper's `stop_ignoring_startup_signals`).
            ignored: status_field(&theirs, "SigIgn:", 16).ok_or_else(missing)? & PASSED_ON_IGNORED,
            limits,
        })
    }

    /// The limit `asked` (soft, hard) made no looser than `bound`: each
    /// the lower, the soft one no higher than the hard one. Allocates
    /// nothing: a child between clone and exec calls it too.
    pub fn no_looser(asked: (u64, u64), bound: (u64, u64)) -> [u64; 2] {
        let hard = asked.1.min(bound.1);
        [asked.0.min(bound.0).min(hard), hard]
    }

    /// This process's own umask and limits, read once: what it passes on
    /// is never looser than what it had when it first passed anything,
    /// and the process that applies it clamps it again to what it
    /// inherited: this process's as they were when it was started (for a
    /// spare sandbox, started ahead of its command, that may be earlier).
    fn ours() -> io::Result<&'static Inheritance> {
        static OURS: std::sync::OnceLock<Inheritance> = std::sync::OnceLock::new();
        if let Some(ours) = OURS.get() {
            return Ok(ours);
        }
        let status = std::fs::read_to_string("/proc/self/status")?;
        let mut limits = Vec::with_capacity(LIMITS.len());
        for resource in LIMITS {
            let (soft, hard) = super::sys::limit_of(0, resource)?;
            limits.push((resource, soft, hard));
        }
        let ours = Inheritance {
            umask: status_field(&status, "Umask:", 8).ok_or_else(missing)? as u32,
            ignored: 0,
            limits,
        };
        Ok(OURS.get_or_init(|| ours))
    }

    /// The soft file-size limit it passes on, in bytes (`RLIM_INFINITY`
    /// for none).
    pub fn file_size_limit(&self) -> u64 {
        self.limits
            .iter()
            .find(|(resource, _, _)| *resource == super::started::FILE_SIZE)
            .map_or(libc::RLIM_INFINITY, |(_, soft, _)| *soft)
    }

    /// Puts these into effect in this process, before it executes the
    /// program (what cannot be set, a limit above a hard one, fails).
    pub fn apply(&self) -> io::Result<()> {
        super::sys::apply_inheritance(self)
    }

    pub(crate) fn encode(&self, into: &mut Vec<u8>) {
        into.extend_from_slice(&self.umask.to_le_bytes());
        into.extend_from_slice(&self.ignored.to_le_bytes());
        into.extend_from_slice(&(self.limits.len() as u32).to_le_bytes());
        for (resource, soft, hard) in &self.limits {
            into.extend_from_slice(&resource.to_le_bytes());
            into.extend_from_slice(&soft.to_le_bytes());
            into.extend_from_slice(&hard.to_le_bytes());
        }
    }

    /// Reads what [`Inheritance::encode`] wrote at the front of `bytes`,
    /// and returns the rest.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(Inheritance, &[u8])> {
        let (umask, rest) = bytes.split_first_chunk::<4>()?;
        let (ignored, rest) = rest.split_first_chunk::<8>()?;
        let (count, mut rest) = rest.split_first_chunk::<4>()?;
        let count = u32::from_le_bytes(*count) as usize;
        if count > LIMITS.len() {
            return None;
        }
        let mut limits = Vec::with_capacity(count);
        for _ in 0..count {
            let (resource, after) = rest.split_first_chunk::<4>()?;
            let (soft, after) = after.split_first_chunk::<8>()?;
            let (hard, after) = after.split_first_chunk::<8>()?;
            limits.push((
                u32::from_le_bytes(*resource),
                u64::from_le_bytes(*soft),
                u64::from_le_bytes(*hard),
            ));
            rest = after;
        }
        let inheritance = Inheritance {
            umask: u32::from_le_bytes(*umask) & 0o777,
            ignored: u64::from_le_bytes(*ignored),
            limits,
        };
        Some((inheritance, rest))
    }
}

fn missing() -> io::Error {
    io::Error::other("no Umask or SigIgn in /proc/PID/status")
}

/// The number after `name` on its line of a `/proc/PID/status`, in `radix`.
fn status_field(status: &str, name: &str, radix: u32) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    u64::from_str_radix(line[name.len()..].trim(), radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_passes_on_no_looser_than_this_one() {
        let own = Inheritance::of(std::process::id() as i32).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status_field(&status, "Umask:", 8).unwrap() as u32;
        assert_eq!(own.umask, umask);
        assert_eq!(own.limits.len(), LIMITS.len());
        assert!(own.limits.iter().all(|(_, soft, hard)| soft <= hard));
        let mut encoded = Vec::new();
        own.encode(&mut encoded);
        encoded.push(7);
        let (decoded, rest) = Inheritance::decode(&encoded).unwrap();
        assert_eq!((decoded, rest), (own, &[7u8][..]));
        assert!(Inheritance::decode(&encoded[..10]).is_none());
    }

    /// Probe 228: an ignored `SIGCHLD` reached an unsandboxed program,
    /// whose `subprocess` then read a failed child as a success.
    #[test]
    fn an_ignored_sigchld_is_not_passed_on_and_other_ignored_signals_are() {
        // dash does not ignore `SIGCHLD` at `trap ''`; perl does.
        let mut child = std::process::Command::new("perl")
            .args([
                "-e",
                "$SIG{CHLD} = 'IGNORE'; $SIG{PIPE} = 'IGNORE'; exec 'sleep', '30'",
            ])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let status = || std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !status().starts_with("Name:\tsleep") && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let theirs = status_field(&status(), "SigIgn:", 16).unwrap();
        let passed = Inheritance::of(pid).unwrap().ignored;
        child.kill().unwrap();
        child.wait().unwrap();
        let bit = |signal: libc::c_int| 1u64 << (signal - 1);
        assert_ne!(theirs & bit(libc::SIGCHLD), 0, "{theirs:x}");
        assert_eq!(passed & bit(libc::SIGCHLD), 0, "{passed:x}");
        assert_ne!(passed & bit(libc::SIGPIPE), 0, "{passed:x}");
    }

    #[test]
    fn status_fields_are_read_in_their_radix() {
        let status = "Name:\tzsh\nUmask:\t0077\nSigIgn:\t0000000000000006\n";
        assert_eq!(status_field(status, "Umask:", 8), Some(0o77));
        assert_eq!(status_field(status, "SigIgn:", 16), Some(6));
        assert_eq!(status_field(status, "SigCgt:", 16), None);
    }
}
