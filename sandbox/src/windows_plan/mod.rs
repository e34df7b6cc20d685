//! The Windows backend's plan, computed in pure Rust on every platform:
//! from a [`PermissionProfile`] and where the session is, which roots are
//! writable (each with its own capability SID), which ACEs to place, which
//! token to make, how to spell the command line and the environment, and
//! which profiles to refuse. Nothing here touches the machine: facts the
//! plan needs (does `.git` exist, is it a file) come in through
//! [`WindowsContext`], so every case is a table-driven unit test on Linux.
//! The Win32 code that applies a plan lives in `windows/` (`cfg(windows)`).
//!
//! # What a write-restricted token can and cannot enforce
//!
//! `CreateRestrictedToken(WRITE_RESTRICTED)` makes Windows run a second
//! access check, against the restricting SIDs only, for write access. With
//! the capability SIDs as the only restricting SIDs, the command can write
//! where an ACE grants one of them, nowhere else; reads are not checked a
//! second time. So a profile that restricts reads, or the network, cannot
//! be enforced by this backend, and is refused ([`WindowsPlanError`]).

mod cmdline;
mod path;
mod sid;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use cmdline::{
    cmd_command_line, cmd_script_line, command_line, environment_block, pwsh_script_line, wide,
};
pub use path::WinPath;
pub use sid::{CapabilitySid, SidStore, CAPABILITY_SID_FILE};

use crate::profile::{
    Access, FsTarget, NetworkPolicy, PermissionProfile, SpecialRoot, PROTECTED_NAMES,
};

/// What the audit log and `doctor` call this backend.
pub const WINDOWS_SANDBOX_NAME: &str = "windows-restricted-token";

/// Access-mask bits (winnt.h), spelled here so the plan is pure; the
/// backend's tests check them against `windows-sys`.
pub mod mask {
    pub const FILE_READ_DATA: u32 = 0x0001;
    pub const FILE_WRITE_DATA: u32 = 0x0002;
    pub const FILE_APPEND_DATA: u32 = 0x0004;
    pub const FILE_READ_EA: u32 = 0x0008;
    pub const FILE_WRITE_EA: u32 = 0x0010;
    pub const FILE_EXECUTE: u32 = 0x0020;
    pub const FILE_DELETE_CHILD: u32 = 0x0040;
    pub const FILE_READ_ATTRIBUTES: u32 = 0x0080;
    pub const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
    pub const DELETE: u32 = 0x0001_0000;
    pub const READ_CONTROL: u32 = 0x0002_0000;
    pub const SYNCHRONIZE: u32 = 0x0010_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    pub const FILE_GENERIC_READ: u32 =
        READ_CONTROL | FILE_READ_DATA | FILE_READ_ATTRIBUTES | FILE_READ_EA | SYNCHRONIZE;
    pub const FILE_GENERIC_WRITE: u32 = READ_CONTROL
        | FILE_WRITE_DATA
        | FILE_WRITE_ATTRIBUTES
        | FILE_WRITE_EA
        | FILE_APPEND_DATA
        | SYNCHRONIZE;
    pub const FILE_GENERIC_EXECUTE: u32 =
        READ_CONTROL | FILE_READ_ATTRIBUTES | FILE_EXECUTE | SYNCHRONIZE;
    /// What a root's capability SID is granted, inherited by everything
    /// below. No `FILE_DELETE_CHILD`: on NTFS it lets a child be deleted
    /// or renamed through its parent even when the child denies `DELETE`,
    /// so `.git`, `.agents` and `.execgate` could be renamed away and
    /// replaced. Each child keeps `DELETE` through the inherited ACE, so
    /// ordinary deletes still work.
    pub const ROOT_ALLOW: u32 =
        FILE_GENERIC_READ | FILE_GENERIC_WRITE | FILE_GENERIC_EXECUTE | DELETE;
    /// What a protected name or a read-only carve-out denies. `READ_CONTROL`
    /// and `SYNCHRONIZE` are left out: denying them would stop reads too.
    pub const DENY_WRITE: u32 = FILE_WRITE_DATA
        | FILE_APPEND_DATA
        | FILE_WRITE_EA
        | FILE_WRITE_ATTRIBUTES
        | DELETE
        | FILE_DELETE_CHILD;

    /// Token flags for `CreateRestrictedToken`.
    pub const DISABLE_MAX_PRIVILEGE: u32 = 0x1;
    pub const LUA_TOKEN: u32 = 0x4;
    pub const WRITE_RESTRICTED: u32 = 0x8;

    /// ACE inheritance: to sub-folders and files.
    pub const OBJECT_INHERIT_ACE: u8 = 0x1;
    pub const CONTAINER_INHERIT_ACE: u8 = 0x2;
}

/// Why a profile cannot be planned for Windows. Every variant says what to
/// change.
/// Where the refusals of an unsandboxed session point.
const UNSANDBOXED_BY_RULE: &str = "a rule with `execution = \"unsandboxed\"` runs the commands \
                                   it matches with your own token";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowsPlanError {
    #[error(
        "the Windows backend cannot restrict reads (a write-restricted token only checks \
         writes): {0}; use a profile that reads `:root`"
    )]
    ReadsRestricted(String),
    #[error(
        "the Windows backend cannot block the network of one process; in a profile of your \
         own (`--profiles FILE --profile NAME`: Windows reads no config file), set `network = \
         \"enabled\"`, or `windows_network = \"best-effort\"` to accept proxy variables that \
         point nowhere in place of a block"
    )]
    NetworkRestricted,
    #[error(
        "the Windows backend has no managed proxy: a `limited` network cannot be enforced; set \
         `network = \"enabled\"` or run this profile on Linux"
    )]
    NetworkLimited,
    #[error(
        "`:root = write` leaves writes unrestricted, which the Windows backend does not do for a \
         session; {UNSANDBOXED_BY_RULE}"
    )]
    RootWritable,
    #[error(
        "the working directory {cwd} is the root of its volume: `:cwd = write` would make all \
         of it writable, as `:root = write` would; start in a project directory (--cwd)"
    )]
    VolumeRootWorkingDirectory { cwd: String },
    #[error(
        "the writable root {root} is the root of its volume, which would make all of it \
         writable, as `:root = write` would; name a directory on it"
    )]
    VolumeRootWritable { root: String },
    #[error(
        "the writable root {root} is on a share of this machine, or a drive's administrative \
         share: it names local folders by another name, which the checks of what must stay \
         read-only (the home, execgate's state) would not recognise; name the folder by its \
         drive path"
    )]
    LocalShareWritable { root: String },
    #[error(
        "the working directory {cwd} holds your home directory, and the profile makes the \
         working directory writable: the commands run here could rewrite your PowerShell \
         profile, .ssh and .gitconfig, which run outside the sandbox later; start from a project \
         directory (--cwd), or, if that is meant, use a profile of your own that grants the \
         home by its path instead of \":cwd\" = \"write\""
    )]
    WritableHome { cwd: String },
    #[error(
        "the working directory {cwd} is inside .git, which workspace profiles keep read-only \
         (its hooks and config run code outside the sandbox later); start from the workspace \
         (--cwd)"
    )]
    ProtectedWorkingDirectory { cwd: String },
    #[error(
        "the writable root {root} is inside {git}, which stays read-only below the writable root \
         {owner} (its hooks and config run code outside the sandbox later); write elsewhere"
    )]
    WritableInsideGit {
        root: String,
        git: String,
        owner: String,
    },
    #[error("{0}")]
    NotManaged(&'static str),
    #[error(
        "the Windows backend runs no session without a sandbox (a profile without one, such as \
         `danger-full-access`, is refused); {UNSANDBOXED_BY_RULE}"
    )]
    Unsandboxed,
    #[error("bad Windows path {path:?}: {reason}")]
    BadPath { path: String, reason: String },
    #[error("cannot run this command on Windows: {0}")]
    BadCommand(String),
    #[error("bad environment variable {0:?}")]
    BadEnvironment(String),
    #[error("capability SIDs in {}: {reason}", file.display())]
    SidStore { file: PathBuf, reason: String },
    #[error("no random source for a capability SID: {0}")]
    Random(String),
}

/// What is on disk at a path the plan protects (the backend asks the file
/// system; tests answer from a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    File,
    Directory,
}

/// Where a session is on Windows: what the special roots stand for.
pub struct WindowsContext<'facts> {
    pub cwd: WinPath,
    /// `%TEMP%` and `%TMP%` (one entry when they agree).
    pub temp_dirs: Vec<WinPath>,
    pub workspace_roots: Vec<WinPath>,
    /// The user's home directories, canonical: `%USERPROFILE%` and the
    /// profile directory Windows reports for the token (they may differ).
    /// A writable working directory may not hold one.
    pub homes: Vec<WinPath>,
    /// Answers what exists at a path.
    pub probe: &'facts dyn Fn(&WinPath) -> PathKind,
    /// The canonical path of a profile's path (`GetFinalPathNameByHandleW`:
    /// 8.3 names, junctions, `subst` and trailing dots resolved; for one
    /// that does not exist yet, through its nearest existing ancestor), or
    /// `None` when it does not resolve and is taken as spelled.
    pub canonical: &'facts dyn Fn(&WinPath) -> Option<WinPath>,
}

/// What to do with a profile's restricted network on Windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowsNetwork {
    /// Refuse a restricted-network profile (the default: fail closed).
    #[default]
    Refuse,
    /// The profile says `windows_network = "best-effort"`: run, with
    /// environment variables that make common tools stay offline.
    BestEffort,
}

/// How long an ACE stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AceLifetime {
    /// A root of the session's profile: kept, and reused by the next run.
    Kept,
    /// Granted for one command (additional permissions): removed after it.
    Temporary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AceKind {
    Allow,
    Deny,
}

/// Whether the ACE is inherited below the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Inheritance {
    /// Folders and files below (`OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE`).
    FoldersAndFiles,
    /// The object only (a file).
    None,
}

impl Inheritance {
    pub fn flags(self) -> u8 {
        match self {
            Inheritance::FoldersAndFiles => mask::OBJECT_INHERIT_ACE | mask::CONTAINER_INHERIT_ACE,
            Inheritance::None => 0,
        }
    }
}

/// One ACE to place on a path's DACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AcePlan {
    pub path: WinPath,
    pub kind: AceKind,
    pub sid: CapabilitySid,
    pub mask: u32,
    pub inheritance: Inheritance,
    pub lifetime: AceLifetime,
}

/// A writable root and its capability SID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritableRoot {
    pub path: WinPath,
    pub sid: CapabilitySid,
    pub lifetime: AceLifetime,
}

/// Something under a writable root that must stay read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedPath {
    pub path: WinPath,
    /// What is there now; a missing `.agents` or `.execgate` is created as
    /// an empty directory before the command starts, so it cannot create
    /// it itself (a missing `.git` is not planned at all).
    pub found: PathKind,
    pub reason: ProtectionReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectionReason {
    /// `.git`, `.agents`, `.execgate`.
    ProtectedName,
    /// The profile reads this path under a writable root.
    ReadOnlyCarveOut,
}

/// Who gets access through the token's default DACL (the DACL of objects
/// the command creates without one, such as its pipes and threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDaclEntry {
    /// The user the token belongs to (its `TokenUser`, known at run time).
    TokenUser,
    Capability(CapabilitySid),
}

/// The restricted token to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPlan {
    /// `DISABLE_MAX_PRIVILEGE | LUA_TOKEN | WRITE_RESTRICTED`.
    pub flags: u32,
    /// A capability SID of this launch alone, fresh for every command and
    /// granted no file ACE. It keeps the restricting SIDs from ever being
    /// empty: `CreateRestrictedToken` with none makes a token that is not
    /// restricted at all, so a profile with no writable root (`read-only`)
    /// would write anywhere its user can.
    pub launch_sid: CapabilitySid,
    /// The roots' capability SIDs and the launch SID, nothing else: adding
    /// the logon SID or Everyone would let writes through wherever those
    /// have access.
    pub restricting_sids: Vec<CapabilitySid>,
    /// The token user and the launch SID, no root's SID.
    pub default_dacl: Vec<DefaultDaclEntry>,
}

/// How the network is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPlan {
    /// The profile enables the network.
    Enabled,
    /// The profile restricts it and opted in to best effort: these
    /// variables are set, nothing is blocked.
    BestEffort { environment: Vec<(String, String)> },
}

/// Where proxy variables point in best-effort mode: the discard port on
/// loopback, where nothing normally listens.
pub const DEAD_PROXY: &str = "http://127.0.0.1:9";

impl NetworkPlan {
    fn best_effort() -> NetworkPlan {
        let mut environment: Vec<(String, String)> = [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ]
        .iter()
        .map(|name| ((*name).to_owned(), DEAD_PROXY.to_owned()))
        .collect();
        // Names differing only by case are one variable on Windows.
        environment.retain(|(name, _)| name.chars().all(|c| !c.is_ascii_lowercase()));
        environment.extend(
            [
                ("NO_PROXY", ""),
                ("PIP_NO_INDEX", "1"),
                ("CARGO_NET_OFFLINE", "true"),
                ("NPM_CONFIG_OFFLINE", "true"),
                ("GIT_ALLOW_PROTOCOL", "file"),
            ]
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        NetworkPlan::BestEffort { environment }
    }

    /// The line audit records and `doctor` carry about the network, if any.
    pub fn warning(&self) -> Option<&'static str> {
        match self {
            NetworkPlan::Enabled => None,
            NetworkPlan::BestEffort { .. } => Some(
                "network restriction is best effort on Windows: proxy variables point nowhere, \
                 but a program can still open sockets",
            ),
        }
    }
}

/// Everything the backend does for one command, decided before it does
/// any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsPlan {
    /// Most specific first.
    pub roots: Vec<WritableRoot>,
    pub protected: Vec<ProtectedPath>,
    /// Deny ACEs first, then allows (the canonical order, which
    /// `SetEntriesInAclW` also produces).
    pub aces: Vec<AcePlan>,
    pub token: TokenPlan,
    pub network: NetworkPlan,
}

impl WindowsPlan {
    /// Plans `profile` for `context`. `additional` holds grants for this
    /// command only: its writable roots get [`AceLifetime::Temporary`] ACEs.
    pub fn new(
        profile: &PermissionProfile,
        additional: Option<&PermissionProfile>,
        context: &WindowsContext<'_>,
        network_choice: WindowsNetwork,
        sids: &mut SidStore,
    ) -> Result<WindowsPlan, WindowsPlanError> {
        let merged;
        let effective = match additional {
            Some(more) => {
                merged = profile.merged_with(more);
                &merged
            }
            None => profile,
        };
        let (file_system, network) = match effective {
            PermissionProfile::Managed {
                file_system,
                network,
                ..
            } => (file_system, *network),
            PermissionProfile::Disabled => return Err(WindowsPlanError::Unsandboxed),
            PermissionProfile::External { .. } => {
                return Err(WindowsPlanError::NotManaged(
                    "an external sandbox is not something the Windows backend can provide",
                ))
            }
        };
        let network = match (network, network_choice) {
            (NetworkPolicy::Enabled, _) => NetworkPlan::Enabled,
            (NetworkPolicy::Restricted, WindowsNetwork::BestEffort) => NetworkPlan::best_effort(),
            (NetworkPolicy::Restricted, WindowsNetwork::Refuse) => {
                return Err(WindowsPlanError::NetworkRestricted)
            }
            (NetworkPolicy::Limited, _) => return Err(WindowsPlanError::NetworkLimited),
        };

        let temporary_keys: Vec<String> = match additional {
            Some(PermissionProfile::Managed { file_system, .. }) => {
                let mut keys = Vec::new();
                for entry in &file_system.entries {
                    if entry.access == Access::Write {
                        keys.extend(targets(&entry.target, context)?.iter().map(WinPath::key));
                    }
                }
                keys
            }
            Some(PermissionProfile::Disabled | PermissionProfile::External { .. }) | None => {
                Vec::new()
            }
        };
        let in_base = |path: &WinPath| -> Result<bool, WindowsPlanError> {
            let PermissionProfile::Managed { file_system, .. } = profile else {
                return Ok(false);
            };
            for entry in &file_system.entries {
                if entry.access == Access::Write && targets(&entry.target, context)?.contains(path)
                {
                    return Ok(true);
                }
            }
            Ok(false)
        };

        let mut reads_root = false;
        let mut writable: Vec<WinPath> = Vec::new();
        let mut read_only: Vec<WinPath> = Vec::new();
        for entry in &file_system.entries {
            match (&entry.target, entry.access) {
                (FsTarget::DenyGlob(glob), _) => {
                    return Err(WindowsPlanError::ReadsRestricted(format!(
                        "deny glob {glob:?}"
                    )))
                }
                (FsTarget::Special(SpecialRoot::Minimal), _) => {
                    return Err(WindowsPlanError::ReadsRestricted(
                        "`:minimal` reads only the system's roots".into(),
                    ))
                }
                (target, Access::None) => {
                    return Err(WindowsPlanError::ReadsRestricted(format!(
                        "{} = none",
                        describe(target)
                    )))
                }
                (FsTarget::Special(SpecialRoot::Root), Access::Write) => {
                    return Err(WindowsPlanError::RootWritable)
                }
                (FsTarget::Special(SpecialRoot::Root), Access::Read) => reads_root = true,
                (FsTarget::Special(SpecialRoot::Cwd), Access::Write) => {
                    // Started at `D:\` or `\\server\share\` by mistake, a
                    // workspace profile would write the whole volume.
                    if context.cwd.depth() == 0 {
                        return Err(WindowsPlanError::VolumeRootWorkingDirectory {
                            cwd: context.cwd.to_string(),
                        });
                    }
                    // Started from the home (or above it), it would make
                    // writable what runs outside the sandbox later: the
                    // user's PowerShell profile, `.ssh`, `.gitconfig`.
                    if holds_a_home(&context.cwd, &context.homes) {
                        return Err(WindowsPlanError::WritableHome {
                            cwd: context.cwd.to_string(),
                        });
                    }
                    // Started inside `.git`, it would make writable what
                    // every writable root keeps read-only.
                    if context.cwd.has_component(".git") {
                        return Err(WindowsPlanError::ProtectedWorkingDirectory {
                            cwd: context.cwd.to_string(),
                        });
                    }
                    writable.push(context.cwd.clone());
                }
                (target, Access::Write) => writable.extend(targets(target, context)?),
                (target, Access::Read) => read_only.extend(targets(target, context)?),
            }
        }
        if !reads_root {
            return Err(WindowsPlanError::ReadsRestricted(
                "the profile does not read `:root`".into(),
            ));
        }

        writable.sort();
        writable.dedup();
        // A workspace root or a profile's path at `D:\` would write the
        // whole volume, as `:cwd` there would.
        if let Some(volume) = writable.iter().find(|path| path.depth() == 0) {
            return Err(WindowsPlanError::VolumeRootWritable {
                root: volume.to_string(),
            });
        }
        if let Some(share) = writable
            .iter()
            .find(|path| path.is_local_or_administrative_share())
        {
            return Err(WindowsPlanError::LocalShareWritable {
                root: share.to_string(),
            });
        }
        // Most specific first, so `root_for` takes the first that holds a
        // path.
        writable.sort_by(|left, right| right.depth().cmp(&left.depth()).then(left.cmp(right)));
        let mut roots = Vec::new();
        for path in writable {
            let lifetime = if temporary_keys.contains(&path.key()) && !in_base(&path)? {
                AceLifetime::Temporary
            } else {
                AceLifetime::Kept
            };
            roots.push(WritableRoot {
                sid: sids.sid_for(&path)?,
                path,
                lifetime,
            });
        }

        let mut protected = Vec::new();
        for root in &roots {
            for name in PROTECTED_NAMES {
                let path = root.path.join(name)?;
                let inside = roots.iter().find(|other| other.path.starts_with(&path));
                match (inside, name) {
                    // A writable root in `.git` would take its protection
                    // away without a word: hooks and config there run code
                    // outside the sandbox later.
                    (Some(inside), ".git") => {
                        return Err(WindowsPlanError::WritableInsideGit {
                            root: inside.path.to_string(),
                            git: path.to_string(),
                            owner: root.path.to_string(),
                        })
                    }
                    // A profile that names `.agents` or `.execgate` (or
                    // something in it) writable means it.
                    (Some(_), _) => continue,
                    (None, _) => {}
                }
                if protected
                    .iter()
                    .any(|seen: &ProtectedPath| seen.path == path)
                {
                    continue;
                }
                let found = (context.probe)(&path);
                // A missing `.git` stays creatable (`git init` must work, as
                // on Linux); the others are created empty before the
                // command starts so that it cannot create them.
                if found == PathKind::Missing && name == ".git" {
                    continue;
                }
                protected.push(ProtectedPath {
                    found,
                    path,
                    reason: ProtectionReason::ProtectedName,
                });
            }
        }
        read_only.sort();
        read_only.dedup();
        for path in read_only {
            let Some(owner) = root_for(&roots, &path) else {
                continue; // Outside every writable root: already read-only.
            };
            if owner.path == path {
                continue; // The same path granted write: write wins here.
            }
            if protected.iter().any(|seen| seen.path == path) {
                continue;
            }
            protected.push(ProtectedPath {
                found: (context.probe)(&path),
                path,
                reason: ProtectionReason::ReadOnlyCarveOut,
            });
        }

        let mut aces = Vec::new();
        for item in &protected {
            let Some(owner) = root_for(&roots, &item.path) else {
                continue;
            };
            if item.reason == ProtectionReason::ReadOnlyCarveOut && item.found == PathKind::Missing
            {
                // Nothing to protect yet, and nothing is created for a
                // carve-out: the root's own grant applies once it exists.
                // Linux treats a missing carve-out the same way.
                continue;
            }
            aces.push(AcePlan {
                path: item.path.clone(),
                kind: AceKind::Deny,
                sid: owner.sid,
                mask: mask::DENY_WRITE,
                inheritance: match item.found {
                    PathKind::File => Inheritance::None,
                    PathKind::Directory | PathKind::Missing => Inheritance::FoldersAndFiles,
                },
                lifetime: owner.lifetime,
            });
        }
        // NTFS renames a directory without looking below it: each
        // directory between the outermost writable root holding a
        // protected path and that path is denied `DELETE` on itself alone,
        // or the sandbox could rename one away and make a new path where
        // the protected one was (on Linux, the mount there makes the
        // rename fail).
        let mut above_protected: Vec<AcePlan> = Vec::new();
        for item in &protected {
            let Some(owner) = root_for(&roots, &item.path) else {
                continue;
            };
            // Only on the way to what exists: an ACE needs its directory.
            if item.found == PathKind::Missing {
                continue;
            }
            let Some(outermost) = roots
                .iter()
                .filter(|root| item.path.starts_with(&root.path))
                .min_by_key(|root| root.path.depth())
            else {
                continue;
            };
            let mut between = item.path.parent();
            while let Some(directory) = between {
                if directory.depth() <= outermost.path.depth() {
                    break;
                }
                if !above_protected.iter().any(|ace| ace.path == directory) {
                    above_protected.push(AcePlan {
                        path: directory.clone(),
                        kind: AceKind::Deny,
                        sid: owner.sid,
                        mask: mask::DELETE,
                        inheritance: Inheritance::None,
                        lifetime: owner.lifetime,
                    });
                }
                between = directory.parent();
            }
        }
        aces.extend(above_protected);
        for root in &roots {
            aces.push(AcePlan {
                path: root.path.clone(),
                kind: AceKind::Allow,
                sid: root.sid,
                mask: mask::ROOT_ALLOW,
                inheritance: Inheritance::FoldersAndFiles,
                lifetime: root.lifetime,
            });
        }

        let launch_sid = CapabilitySid::random()?;
        let mut restricting_sids: Vec<CapabilitySid> = roots
            .iter()
            .map(|root| root.sid)
            .chain(std::iter::once(launch_sid))
            .collect();
        restricting_sids.sort();
        restricting_sids.dedup();
        // The objects the command creates (its processes, threads, pipes)
        // admit the user and this launch only: a root's SID is shared by
        // every run that writes that root (all of `%TEMP%`'s), and granting
        // it here would let one sandbox open another's processes for write.
        let default_dacl = vec![
            DefaultDaclEntry::TokenUser,
            DefaultDaclEntry::Capability(launch_sid),
        ];
        Ok(WindowsPlan {
            roots,
            protected,
            aces,
            token: TokenPlan {
                flags: mask::DISABLE_MAX_PRIVILEGE | mask::LUA_TOKEN | mask::WRITE_RESTRICTED,
                launch_sid,
                restricting_sids,
                default_dacl,
            },
            network,
        })
    }

    /// The writable root that holds `path`: the most specific one.
    pub fn root_for(&self, path: &WinPath) -> Option<&WritableRoot> {
        root_for(&self.roots, path)
    }
}

/// Every path the sandbox can write under `profiles` in `context`: their
/// write entries, special roots included. An escalation beyond the sandbox
/// must not trust what lies there (a program, a `PATH` entry), for the
/// session's profile and for every grant known in advance.
pub fn sandbox_writable_paths(
    profiles: &[&PermissionProfile],
    context: &WindowsContext<'_>,
) -> Result<Vec<WinPath>, WindowsPlanError> {
    let mut writable = Vec::new();
    for profile in profiles {
        if let PermissionProfile::Managed { file_system, .. } = profile {
            for entry in &file_system.entries {
                if entry.access == Access::Write {
                    writable.extend(targets(&entry.target, context)?);
                }
            }
        }
    }
    writable.sort();
    writable.dedup();
    Ok(writable)
}

/// Why an escalation beyond the sandbox (unsandboxed, or with a rule's
/// grants) must not run `program`, a canonical path: the sandbox, or a
/// grant known in advance, could have written it (`.\git.exe` in the
/// working directory, a tool in `%TEMP%` or in `.venv\Scripts`), and a
/// rule on its name would then run what the sandbox planted. The command
/// runs in place, in the session's sandbox, with this as its note, as on
/// Linux. Paths compare without regard to case, as Windows does.
pub fn escalation_refusal(
    program: &WinPath,
    sandbox_writable: &[WinPath],
    granted_writable: &[WinPath],
) -> Option<String> {
    let under = |roots: &[WinPath]| roots.iter().any(|root| program.starts_with(root));
    let how = if under(sandbox_writable) {
        "writable from the sandbox"
    } else if under(granted_writable) {
        "writable by a grant this session made (a rule's profile)"
    } else {
        return None;
    };
    Some(format!("escalation refused: {program} is {how}"))
}

/// What the backend found at a `PATH` entry, for [`path_beyond_sandbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathEntryFound {
    /// The entry's canonical path (`GetFinalPathNameByHandleW`: junctions,
    /// `subst` drives, 8.3 names and trailing dots resolved). For an entry
    /// that does not exist yet: its nearest existing ancestor's canonical
    /// path with the missing names after it, since the sandbox could
    /// create them.
    Canonical(WinPath),
    /// Nothing on its way exists, not even its volume: judged as spelled.
    Nowhere,
    /// It exists but could not be resolved (access denied, a broken
    /// link): left out, as what it leads to is unknown.
    Unresolvable,
}

/// A `PATH` value for a child beyond the sandbox: without relative entries
/// (searched from wherever the child stands) and without directories
/// under `writable`, where the sandbox could have planted a program the
/// child then runs by name. Each entry is judged both as spelled and as
/// `resolve` finds it on disk, so that a writable directory spelled
/// through a junction, `subst`, an 8.3 name or a trailing dot is left out
/// too. Returns the value kept and the entries left out (for a warning).
pub fn path_beyond_sandbox(
    path: &str,
    writable: &[WinPath],
    resolve: &dyn Fn(&WinPath) -> PathEntryFound,
) -> (String, Vec<String>) {
    let under_writable = |dir: &WinPath| writable.iter().any(|root| dir.starts_with(root));
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    // Split on every `;`, quoted or not: a quoted entry holding `;` falls
    // apart into pieces judged one by one (a piece left relative is left
    // out), never into a directory that was not judged.
    for entry in path.split(';').filter(|entry| !entry.is_empty()) {
        let keep = match WinPath::parse(entry.trim_matches('"')) {
            Ok(dir) if under_writable(&dir) => false,
            Ok(dir) => match resolve(&dir) {
                PathEntryFound::Canonical(canonical) => !under_writable(&canonical),
                PathEntryFound::Nowhere => true,
                PathEntryFound::Unresolvable => false,
            },
            Err(_) => false,
        };
        if keep {
            kept.push(entry);
        } else {
            dropped.push(entry.to_owned());
        }
    }
    (kept.join(";"), dropped)
}

/// Whether `cwd` is one of `homes` or a directory above one, compared
/// without regard to case, as Windows does.
fn holds_a_home(cwd: &WinPath, homes: &[WinPath]) -> bool {
    homes.iter().any(|home| home.starts_with(cwd))
}

fn root_for<'roots>(roots: &'roots [WritableRoot], path: &WinPath) -> Option<&'roots WritableRoot> {
    roots
        .iter()
        .filter(|root| path.starts_with(&root.path))
        .max_by_key(|root| root.path.depth())
}

fn describe(target: &FsTarget) -> String {
    match target {
        FsTarget::Path(path) => path.to_string(),
        FsTarget::Special(root) => root.as_str().to_owned(),
        FsTarget::DenyGlob(glob) => glob.clone(),
    }
}

/// The Windows paths a target stands for in `context`.
fn targets(
    target: &FsTarget,
    context: &WindowsContext<'_>,
) -> Result<Vec<WinPath>, WindowsPlanError> {
    Ok(match target {
        FsTarget::Path(path) => vec![WinPath::parse(&path.as_path().to_string_lossy())?],
        FsTarget::Special(SpecialRoot::Cwd) => vec![context.cwd.clone()],
        FsTarget::Special(SpecialRoot::Tmpdir) => context.temp_dirs.clone(),
        FsTarget::Special(SpecialRoot::WorkspaceRoots) => context.workspace_roots.clone(),
        FsTarget::Special(SpecialRoot::Root | SpecialRoot::Minimal) | FsTarget::DenyGlob(_) => {
            Vec::new()
        }
    }
    .into_iter()
    // Compared and granted as Windows opens them: `C:\ws\GIT~1\hooks` is
    // `C:\ws\.git\hooks`.
    .map(|path| (context.canonical)(&path).unwrap_or(path))
    .collect())
}
