//! execgate's sandbox: one permission model, enforced on Linux by
//! bubblewrap, seccomp and Landlock together.
//!
//! A [`PermissionProfile`] says what commands may touch: file-system entries
//! (a path, a special root such as `:cwd`, or a deny glob) with access
//! `read`, `write` or `none`, and whether the network is `restricted`,
//! `limited` (only through execgate's proxy, which decides each connection
//! on the profile's [`NetworkLists`], rules and approvals) or `enabled`. Presets (`read-only`, `workspace-write`,
//! `danger-full-access`) cover the common cases; [`ProfileSet`] loads named
//! profiles from TOML with `extends`.
//!
//! [`ResolvedPolicy::resolve`] makes a profile concrete for a
//! [`SandboxContext`]: canonical paths, protected names (`.git`, `.agents`,
//! `.execgate`) read-only under writable roots, deny globs expanded. It
//! answers [`ResolvedPolicy::can_read`] and [`ResolvedPolicy::can_write`]
//! for tools that touch files directly: the most specific entry wins, and at
//! equal specificity `none` beats `write` beats `read`.
//!
//! # Enforcement
//!
//! [`Launcher`] builds a bubblewrap command: the mount view (root read-only
//! or only the `:minimal` roots, writable roots bound read-write, carve-outs
//! bound read-only on top, denied files covered by an empty file and denied
//! directories by an empty tmpfs, `/run` hidden), new user, pid, ipc and uts
//! namespaces (and network unless enabled), every capability dropped, and
//! a fresh `/proc`. Inside, the helper ([`helper_main`]) checks that no
//! capability is left, sets no-new-privs, adds Landlock (ABI 3 or later
//! required; the ABI 6 scopes for abstract unix sockets and signals when the
//! kernel has them) and a seccomp filter (no `ptrace`, `process_vm_*`,
//! `io_uring_*`, no keyrings, no `TIOCSTI`/`TIOCLINUX` terminal injection,
//! no `TIOCSETD`/`TIOCEXCL` that would outlive it; with a
//! restricted network, no socket family but `AF_UNIX` and no datagram
//! `AF_UNIX` socket; with a limited one, also inet sockets as TCP streams),
//! then executes the target. A limited sandbox's helper first listens on
//! the sandbox's own loopback and hands that listener to the proxy over an
//! inherited link (`linux/proxy_link.rs`): the proxy accepts the sandbox's
//! connections itself. What must be decided call
//! by call is left to a supervisor, the helper's parent half after a fork
//! (`linux/supervisor.rs`): with a restricted or limited network, `connect`
//! to a pathname socket succeeds only for a socket bound inside the sandbox
//! (or, limited, one the profile's `unix_sockets` allows); under
//! writable roots, `.agents` and `.execgate` cannot be created; with deny
//! globs, every open is matched against them, whenever the file appeared.
//!
//! The crate must never weaken a profile it cannot enforce: a missing
//! bubblewrap, disabled user namespaces, an old Landlock, a deny glob that
//! matches too much are errors that name the reason, and nothing runs.
//! [`MachineReport`] tells what the machine provides.
//!
//! What it does not cover is listed in the README's security model.

//!
//! # Windows
//!
//! On Windows there is no patched zsh and no bubblewrap: [`windows_plan`]
//! plans a restricted-token run (pure Rust, built and tested everywhere)
//! and `windows` applies it with Win32 calls (`cfg(windows)`). The Linux
//! modules are `cfg(target_os = "linux")`.

// The Linux backend.
// Enforcement, one directory per platform; the profile model and the
// Windows planner compile everywhere.
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod resolve;

mod profile;
// The Windows backend.
#[cfg(windows)]
pub mod windows;
pub mod windows_plan;

use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
pub use linux::{
    hand_order, helper_main, is_proxy_variable, openat2_settled, reported_end, CommandWatch,
    Inheritance, Launcher, MachineReport, MountAliases, ReportedEnd, SandboxStart, SpareOrder,
    Terminal, BWRAP_PATHS, HIDDEN_SERVICE_DIRS, LISTENER_MESSAGE, MOST_DESCRIPTORS, PROXY_MARKER,
    REQUIRED_LANDLOCK_ABI, SCOPES_LANDLOCK_ABI, SETUP_FAILED, UNCREATABLE_NAMES,
};
pub use profile::{
    parse_target, AbsolutePath, Access, AdditionalPermissions, FileSystemPolicy, FsEntry, FsTarget,
    NetworkLists, NetworkPolicy, PermissionProfile, ProfileSet, SpecialRoot, PROTECTED_NAMES,
};
#[cfg(target_os = "linux")]
pub use resolve::{
    GlobExpansion, PathRule, ResolvedPolicy, SandboxContext, GLOB_MAX_DEPTH, GLOB_MAX_MATCHES,
    GLOB_MAX_VISITED, MINIMAL_ROOTS,
};

/// Why a profile cannot be loaded, resolved or enforced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    #[error(
        "path {0:?} is relative and nothing says what it is relative to; use an absolute path"
    )]
    RelativePath(PathBuf),
    #[error("{entry:?}: {reason}; write the path in full")]
    Home { entry: String, reason: &'static str },
    #[error("deny glob {0:?} can only have access `none`")]
    GlobNotDeny(String),
    #[error("bad glob {glob:?}: {reason}")]
    BadGlob { glob: String, reason: String },
    #[error(
        "a filesystem entry names an empty path (\"\"); write \".\" for the config file's \
         own directory"
    )]
    EmptyPath,
    #[error(
        "a filesystem entry {0:?} has blanks around its path, which are part of the name, so \
         it would name another file than the one meant; write it without them"
    )]
    BlanksAroundPath(String),
    #[error("deny globs cannot be enforced: {0}; narrow the glob or the writable roots")]
    GlobLimit(String),
    #[error(
        "unknown special root {0:?} (known: :root, :minimal, :cwd, :tmpdir, :workspace_roots)"
    )]
    UnknownSpecialRoot(String),
    #[error("unknown profile {name:?} (known: {known})")]
    UnknownProfile { name: String, known: String },
    #[error("profile {profile:?} extends an unknown profile {parent:?} (known: {known})")]
    UnknownParent {
        profile: String,
        parent: String,
        known: String,
    },
    #[error("profile {0:?} extends itself, directly or through others")]
    ExtendsCycle(String),
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },
    #[error("this profile is not sandboxed by execgate; there is nothing to resolve")]
    NotManaged,
    #[error("bubblewrap not found at [\"/usr/bin/bwrap\", \"/usr/local/bin/bwrap\"]; install Debian's `bubblewrap` package")]
    NoBubblewrap,
    #[error("{} is missing or not an absolute path to a file", .0.display())]
    MissingBinary(PathBuf),
    #[error("this machine cannot enforce the sandbox: {0}")]
    Unsupported(String),
    #[error(
        "the working directory {} is hidden in the sandbox: the profile grants no access to \
         it; grant it (for example \":cwd\" = \"read\") or start from a directory the \
         profile shows",
        .0.display()
    )]
    HiddenWorkingDirectory(PathBuf),
    #[error(
        "the working directory {} is under {own}, which every sandbox replaces with its own: \
         start from a directory elsewhere{}",
        .cwd.display(),
        if *own == "/dev" { " (a tmpfs of your own mounted outside /dev works)" } else { "" }
    )]
    SandboxOwnWorkingDirectory { cwd: PathBuf, own: &'static str },
    #[error(
        "the working directory {} cannot be entered in the sandbox: {} lets root pass only by \
         its capabilities (its mode gives user id 0 no search permission), and the sandbox \
         drops them; give it search permission (chmod), or start from a directory root can \
         enter by its mode",
        .cwd.display(),
        .closed.display()
    )]
    UnsearchableWorkingDirectory { cwd: PathBuf, closed: PathBuf },
    #[error(
        "the working directory {} matches a deny glob of the profile ({globs}): nothing in it \
         could be opened, the directory itself included; start from another directory or \
         narrow the glob",
        .cwd.display()
    )]
    DeniedWorkingDirectory { cwd: PathBuf, globs: String },
    #[error(
        "{} is a symbolic link (to {}), which the sandbox cannot keep read-only: through it, \
         or in its place, the commands run here could plant what your own tools run later \
         (git's hooks, an agent's instructions); if it is yours, make it a real directory, or \
         for `.git` a file that says `gitdir: ` and the repository's path (git reads those, \
         and the sandbox keeps both read-only); if you did not make it, do not trust what it \
         leads to",
        .path.display(),
        .target.display()
    )]
    ProtectedNameIsLink { path: PathBuf, target: PathBuf },
    #[error(
        "the working directory is /, and the profile makes the working directory \
         writable: that would be the whole file system; start from the workspace (--cwd), \
         or choose danger-full-access if the whole file system is meant"
    )]
    WritableFileSystem,
    #[error(
        "the working directory {} holds your home directory, and the profile makes the \
         working directory writable: the commands run here could rewrite your shell's startup \
         files, ~/.ssh and ~/.gitconfig, which run outside the sandbox later; start from a \
         project directory (--cwd), or, if that is meant, use a profile of your own that \
         grants the home by its path instead of \":cwd\" = \"write\"",
        .0.display()
    )]
    WritableHome(PathBuf),
    #[error(
        "the working directory {} is inside {name}, which workspace profiles keep read-only \
         (what it holds can run code outside the sandbox later); start from the workspace \
         (--cwd), or grant that path by name in the profile",
        .cwd.display()
    )]
    ProtectedWorkingDirectory { cwd: PathBuf, name: &'static str },
    #[error(
        "the working directory {} is inside the git directory {} (a bare repository, or \
         one kept apart from its work tree): writable, its hooks and config would run code \
         outside the sandbox when git is next used on it; start from a work tree (--cwd), \
         or grant that path by name in the profile",
        .cwd.display(),
        .git_dir.display()
    )]
    GitDirectoryWorkingDirectory { cwd: PathBuf, git_dir: PathBuf },
    #[error("{}", grant_moved(.path, .now))]
    GrantMoved { path: PathBuf, now: PathBuf },
    #[error(
        "{} cannot be granted: it lies in {}, which every sandbox sees empty (execgate keeps \
         its sessions' own files there)",
        .path.display(),
        .hidden.display()
    )]
    GrantHidden { path: PathBuf, hidden: PathBuf },
    #[error(
        "{} cannot be granted: it is {what} ({}), which no sandbox may reach",
        .path.display(),
        .kept.display()
    )]
    GrantKept {
        path: PathBuf,
        kept: PathBuf,
        what: &'static str,
    },
}

/// Why a grant is not made: its path no longer leads where it did when it
/// was granted. Looked at again to be named, a path being swapped may lead
/// to itself by then (probe 189: "X now leads to X").
fn grant_moved(path: &Path, now: &Path) -> String {
    let what = if now == path {
        format!("{} was replaced, or a link put on its way", path.display())
    } else {
        format!(
            "{} now leads to {}: a link was put on its way",
            path.display(),
            now.display()
        )
    };
    format!("{what} since it was granted, so nothing runs with the grant")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probe 189: a granted directory swapped in a loop was named as
    /// leading to itself.
    #[test]
    fn a_moved_grant_is_named_for_what_it_became() {
        let moved = |now: &str| {
            SandboxError::GrantMoved {
                path: PathBuf::from("/w/out"),
                now: PathBuf::from(now),
            }
            .to_string()
        };
        assert_eq!(
            moved("/etc"),
            "/w/out now leads to /etc: a link was put on its way since it was granted, so \
             nothing runs with the grant"
        );
        assert_eq!(
            moved("/w/out"),
            "/w/out was replaced, or a link put on its way since it was granted, so nothing \
             runs with the grant"
        );
    }
}
