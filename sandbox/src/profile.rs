//! The permission model: profiles as users write them, before any path is
//! resolved.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use execgate_network_proxy::{DomainList, ListDecision};

use crate::SandboxError;

/// Names under every writable root that stay read-only unless a profile
/// names them explicitly: git metadata (hooks and config run code) and our
/// own and agents' configuration. Both backends protect them.
pub const PROTECTED_NAMES: [&str; 3] = [".git", ".agents", ".execgate"];

/// What a file-system entry grants. At equal specificity the strictest
/// wins: `None` beats `Write` beats `Read` (the declaration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Write,
    None,
}

/// Roots whose location depends on the machine or the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecialRoot {
    /// `/`.
    Root,
    /// The platform's read roots for running programs (`/usr`, `/etc`, ...).
    Minimal,
    /// The session's working directory.
    Cwd,
    /// The temporary directory (`$TMPDIR`, else `/tmp`).
    Tmpdir,
    /// The session's workspace roots.
    WorkspaceRoots,
}

impl SpecialRoot {
    fn parse(text: &str) -> Option<SpecialRoot> {
        Some(match text {
            ":root" => SpecialRoot::Root,
            ":minimal" => SpecialRoot::Minimal,
            ":cwd" => SpecialRoot::Cwd,
            ":tmpdir" => SpecialRoot::Tmpdir,
            ":workspace_roots" => SpecialRoot::WorkspaceRoots,
            _ => return None,
        })
    }
}

/// An absolute, lexically normal path (no `.`, no `..`, no trailing `/`).
/// Relative input only becomes one against a stated base.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbsolutePath(PathBuf);

impl AbsolutePath {
    /// `path` if it is absolute, else `path` joined to `base`; `..` is
    /// resolved lexically. Relative input without a base is an error.
    pub fn new(path: impl AsRef<Path>, base: Option<&Path>) -> Result<Self, SandboxError> {
        Ok(AbsolutePath(normalized(
            &joined(path.as_ref(), base)?,
            false,
        )))
    }

    /// A path as a profile or a file of permissions writes it: as
    /// [`AbsolutePath::new`], except that on Unix a `..` goes up from where
    /// the path before it leads, through links, as the kernel reads it
    /// (probe 174: in a config reached through a link, `../team.rules`
    /// was the kernel's file and `"../secret.txt" = "none"` hid another).
    /// Where that part does not exist, `..` is resolved lexically.
    pub fn written(path: impl AsRef<Path>, base: Option<&Path>) -> Result<Self, SandboxError> {
        let joined = joined(path.as_ref(), base)?;
        Ok(AbsolutePath(normalized(&joined, cfg!(unix))))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

/// `path` if it is absolute, else `path` joined to `base`, which must be.
fn joined(path: &Path, base: Option<&Path>) -> Result<PathBuf, SandboxError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    match base {
        Some(base) if base.is_absolute() => Ok(base.join(path)),
        _ => Err(SandboxError::RelativePath(path.to_path_buf())),
    }
}

/// An absolute path without `.` or `..`. With `through_links`, a `..`
/// goes up from where the path before it leads (links followed, where it
/// exists), else from its text.
fn normalized(path: &Path, through_links: bool) -> PathBuf {
    // Windows paths keep their drive or share (`Prefix`); on Unix the
    // first component of an absolute path is always the root.
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::ParentDir => {
                if through_links {
                    if let Ok(real) = std::fs::canonicalize(&normal) {
                        normal = real;
                    }
                }
                normal.pop();
            }
            Component::Prefix(_) | Component::RootDir => normal.push(component.as_os_str()),
            Component::CurDir => {}
        }
    }
    normal
}

impl fmt::Display for AbsolutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

/// What a file-system entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FsTarget {
    Path(AbsolutePath),
    Special(SpecialRoot),
    /// A glob of files that must not be read, read as a `.gitignore` line
    /// (see `DenyGlobMatcher` in `resolve.rs`).
    /// Only valid with [`Access::None`].
    DenyGlob(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FsEntry {
    pub target: FsTarget,
    pub access: Access,
}

/// As a profile names it: a path, a special root (`:cwd`) or a glob.
impl std::fmt::Display for FsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsTarget::Path(path) => write!(f, "{path}"),
            FsTarget::Special(root) => f.write_str(root.as_str()),
            FsTarget::DenyGlob(glob) => f.write_str(glob),
        }
    }
}

/// File-system grants, in no particular order: precedence comes from
/// specificity, not position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSystemPolicy {
    pub entries: Vec<FsEntry>,
}

impl FileSystemPolicy {
    /// Adds an entry, refusing a deny glob with any access but `None`.
    pub fn push(&mut self, target: FsTarget, access: Access) -> Result<(), SandboxError> {
        if let FsTarget::DenyGlob(glob) = &target {
            if access != Access::None {
                return Err(SandboxError::GlobNotDeny(glob.clone()));
            }
        }
        let entry = FsEntry { target, access };
        if !self.entries.contains(&entry) {
            self.entries.push(entry);
        }
        Ok(())
    }
}

/// How far a sandbox reaches on the network, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum NetworkPolicy {
    /// A network namespace of its own with nothing in it, and no socket
    /// family but `AF_UNIX`.
    #[default]
    Restricted,
    /// A network namespace of its own whose only way out is execgate's
    /// proxy, which decides every connection on its destination
    /// ([`NetworkLists`], then rules and approvals).
    Limited,
    /// The host's network.
    Enabled,
}

impl NetworkPolicy {
    /// As written in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::Restricted => "restricted",
            NetworkPolicy::Limited => "limited",
            NetworkPolicy::Enabled => "enabled",
        }
    }
}

/// What a `limited` network may reach without asking: the `domains` table
/// the proxy decides connections on, and the host Unix sockets the sandbox
/// may connect to (`unix_sockets`; every other host socket stays out of
/// reach). Meaningless, and refused in profiles, for other modes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkLists {
    pub domains: DomainList,
    pub unix_sockets: Vec<(AbsolutePath, ListDecision)>,
}

impl NetworkLists {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.unix_sockets.is_empty()
    }

    /// The host sockets the sandbox may connect to: allowed by an entry
    /// and denied by none.
    pub fn allowed_unix_sockets(&self) -> impl Iterator<Item = &AbsolutePath> {
        self.unix_sockets.iter().filter_map(|(path, decision)| {
            let denied = self
                .unix_sockets
                .contains(&(path.clone(), ListDecision::Deny));
            (*decision == ListDecision::Allow && !denied).then_some(path)
        })
    }

    /// Both lists' entries (extra grants); a deny entry of either wins.
    pub fn union(&self, other: &NetworkLists) -> NetworkLists {
        let mut unix_sockets = self.unix_sockets.clone();
        for entry in &other.unix_sockets {
            if !unix_sockets.contains(entry) {
                unix_sockets.push(entry.clone());
            }
        }
        NetworkLists {
            domains: self.domains.union(&other.domains),
            unix_sockets,
        }
    }

    /// The allow entries `granted` holds too, and every deny entry.
    pub fn intersection(&self, granted: &NetworkLists) -> NetworkLists {
        let mut unix_sockets: Vec<_> = self
            .unix_sockets
            .iter()
            .filter(|entry| entry.1 == ListDecision::Deny || granted.unix_sockets.contains(entry))
            .cloned()
            .collect();
        for entry in &granted.unix_sockets {
            if entry.1 == ListDecision::Deny && !unix_sockets.contains(entry) {
                unix_sockets.push(entry.clone());
            }
        }
        NetworkLists {
            domains: self.domains.intersection(&granted.domains),
            unix_sockets,
        }
    }
}

/// How commands are confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionProfile {
    /// Confined by execgate's sandbox.
    Managed {
        file_system: FileSystemPolicy,
        network: NetworkPolicy,
        /// What a `limited` network reaches without asking; empty for
        /// the other modes.
        network_lists: NetworkLists,
    },
    /// No sandbox at all.
    Disabled,
    /// Something outside execgate supplies the sandbox; only the network
    /// setting is recorded.
    External { network: NetworkPolicy },
}

/// The presets' names, which [`PermissionProfile::preset`] knows.
const READ_ONLY: &str = "read-only";
const WORKSPACE_WRITE: &str = "workspace-write";
const DANGER_FULL_ACCESS: &str = "danger-full-access";
const PRESET_NAMES: [&str; 3] = [READ_ONLY, WORKSPACE_WRITE, DANGER_FULL_ACCESS];

impl PermissionProfile {
    /// A built-in profile: `read-only`, `workspace-write` or
    /// `danger-full-access`.
    pub fn preset(name: &str) -> Option<PermissionProfile> {
        let special = |root, access| FsEntry {
            target: FsTarget::Special(root),
            access,
        };
        let managed = |entries: Vec<FsEntry>| PermissionProfile::Managed {
            file_system: FileSystemPolicy { entries },
            network: NetworkPolicy::Restricted,
            network_lists: NetworkLists::default(),
        };
        Some(match name {
            READ_ONLY => managed(vec![special(SpecialRoot::Root, Access::Read)]),
            WORKSPACE_WRITE => managed(vec![
                special(SpecialRoot::Root, Access::Read),
                special(SpecialRoot::Cwd, Access::Write),
                special(SpecialRoot::Tmpdir, Access::Write),
                special(SpecialRoot::WorkspaceRoots, Access::Write),
            ]),
            DANGER_FULL_ACCESS => PermissionProfile::Disabled,
            _ => return None,
        })
    }

    /// The same grants, with every path as it resolves now (links
    /// followed, see `resolved`): what a grant means when it is made.
    /// [`PermissionProfile::moved_from`] later tells whether a path still
    /// means that.
    pub fn pinned(&self) -> PermissionProfile {
        let mut pinned = self.clone();
        if let PermissionProfile::Managed { file_system, .. } = &mut pinned {
            for entry in &mut file_system.entries {
                entry.target = resolved(entry.target.clone());
            }
        }
        pinned
    }

    /// The first of this profile's paths that `policy`, resolved from it,
    /// did not take as written (a link now on its way), and where it led:
    /// for a [`pinned`](PermissionProfile::pinned) profile, a grant the
    /// sandbox pointed elsewhere.
    #[cfg(target_os = "linux")]
    pub fn moved_from(&self, policy: &crate::ResolvedPolicy) -> Option<(PathBuf, PathBuf)> {
        let PermissionProfile::Managed { file_system, .. } = self else {
            return None;
        };
        file_system.entries.iter().find_map(|entry| {
            let FsTarget::Path(path) = &entry.target else {
                return None;
            };
            let path = path.as_path();
            if policy.rules().iter().any(|rule| rule.path == path) {
                return None;
            }
            let now = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            Some((path.to_path_buf(), now))
        })
    }

    /// The union of both profiles' grants: what an escalation with
    /// additional permissions runs with. Denials of either stay denials
    /// at their own specificity; a disabled side disables the result.
    pub fn merged_with(&self, additional: &PermissionProfile) -> PermissionProfile {
        use PermissionProfile::*;
        match (self, additional) {
            (Disabled, _) | (_, Disabled) => Disabled,
            (
                Managed {
                    file_system,
                    network,
                    network_lists,
                },
                Managed {
                    file_system: more,
                    network: more_network,
                    network_lists: more_lists,
                },
            ) => {
                let mut merged = file_system.clone();
                for entry in &more.entries {
                    if !merged.entries.contains(entry) {
                        merged.entries.push(entry.clone());
                    }
                }
                Managed {
                    file_system: merged,
                    network: (*network).max(*more_network),
                    network_lists: network_lists.union(more_lists),
                }
            }
            (
                Managed {
                    file_system,
                    network,
                    network_lists,
                },
                External { network: more },
            ) => Managed {
                file_system: file_system.clone(),
                network: (*network).max(*more),
                network_lists: network_lists.clone(),
            },
            (External { network }, External { network: more } | Managed { network: more, .. }) => {
                External {
                    network: (*network).max(*more),
                }
            }
        }
    }

    /// Keeps of `requested` only what `granted` also grants: entries present
    /// in both, denials from either, the narrower network.
    pub fn intersected_with(&self, granted: &PermissionProfile) -> PermissionProfile {
        use PermissionProfile::*;
        match (self, granted) {
            (Disabled, other) | (other, Disabled) => other.clone(),
            (
                Managed {
                    file_system,
                    network,
                    network_lists,
                },
                Managed {
                    file_system: other,
                    network: other_network,
                    network_lists: other_lists,
                },
            ) => {
                let mut kept = FileSystemPolicy::default();
                for entry in &file_system.entries {
                    if entry.access == Access::None || other.entries.contains(entry) {
                        kept.entries.push(entry.clone());
                    }
                }
                for entry in &other.entries {
                    if entry.access == Access::None && !kept.entries.contains(entry) {
                        kept.entries.push(entry.clone());
                    }
                }
                Managed {
                    file_system: kept,
                    network: (*network).min(*other_network),
                    network_lists: network_lists.intersection(other_lists),
                }
            }
            (Managed { network, .. } | External { network }, External { network: other })
            | (External { network }, Managed { network: other, .. }) => External {
                network: (*network).min(*other),
            },
        }
    }
}

impl SpecialRoot {
    /// As written in profiles: `:root`, `:cwd`...
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialRoot::Root => ":root",
            SpecialRoot::Minimal => ":minimal",
            SpecialRoot::Cwd => ":cwd",
            SpecialRoot::Tmpdir => ":tmpdir",
            SpecialRoot::WorkspaceRoots => ":workspace_roots",
        }
    }
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::None => "none",
        }
    }
}

impl PermissionProfile {
    /// The grants, one line each (`TARGET=ACCESS`, then `network=...`), for
    /// prompts and audit records.
    pub fn grants(&self) -> Vec<String> {
        let network = |network: &NetworkPolicy| format!("network={}", network.as_str());
        match self {
            PermissionProfile::Managed {
                file_system,
                network: net,
                network_lists,
            } => {
                let files = file_system
                    .entries
                    .iter()
                    .map(|entry| format!("{}={}", entry.target, entry.access.as_str()));
                let domains = network_lists.domains.entries().map(|(pattern, decision)| {
                    format!("domain:{pattern}={}", decision_name(decision))
                });
                let sockets = network_lists.unix_sockets.iter().map(|(path, decision)| {
                    format!("unix_socket:{path}={}", decision_name(*decision))
                });
                files
                    .chain(std::iter::once(network(net)))
                    .chain(domains)
                    .chain(sockets)
                    .collect()
            }
            PermissionProfile::Disabled => vec!["sandbox=disabled".into()],
            PermissionProfile::External { network: net } => {
                vec!["sandbox=external".into(), network(net)]
            }
        }
    }

    /// [`grants`](Self::grants) of a profile added to a session's (a
    /// request's, a skill's): without `network=restricted`, which adds
    /// nothing, where the session's own network holds (probe 235: a
    /// question read "the session's sandbox plus: network=restricted" for
    /// a command that kept the host's network).
    pub fn added_grants(&self) -> Vec<String> {
        let restricted = format!("network={}", NetworkPolicy::Restricted.as_str());
        let mut grants = self.grants();
        if matches!(self, PermissionProfile::Managed { .. }) {
            grants.retain(|grant| *grant != restricted);
        }
        grants
    }
}

fn decision_name(decision: ListDecision) -> &'static str {
    match decision {
        ListDecision::Allow => "allow",
        ListDecision::Deny => "deny",
    }
}

/// Grants on top of a session's profile, as a skill declares them
/// (`permissions.toml` in its directory) or a caller requests them for one
/// command:
///
/// ```toml
/// justification = "writes the release notes"
/// network = "enabled"
/// filesystem = { "../notes" = "write", "/opt/cache" = "read" }
/// ```
///
/// Relative paths resolve against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalPermissions {
    /// A `Managed` profile holding only the extra entries.
    pub profile: PermissionProfile,
    pub justification: Option<String>,
    /// Each write grant that a link on its path led elsewhere when it was
    /// read: the path as written, and where it leads (what `profile`
    /// grants). A link where a sandbox could write may have been made by
    /// an earlier one, so whoever starts a session is told.
    pub write_grants_through_links: Vec<(PathBuf, PathBuf)>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdditionalSpec {
    justification: Option<String>,
    #[serde(default)]
    filesystem: BTreeMap<String, AccessSpec>,
    network: Option<toml::Value>,
}

impl AdditionalPermissions {
    /// Parses the TOML above; `origin` names the file in errors and is the
    /// base for relative paths.
    pub fn from_toml(text: &str, origin: Option<&Path>) -> Result<Self, SandboxError> {
        let spec: AdditionalSpec = parse_toml(text, origin)?;
        let base = origin.and_then(Path::parent);
        let mut file_system = FileSystemPolicy::default();
        let mut write_grants_through_links = Vec::new();
        for (target, access) in &spec.filesystem {
            let access = Access::from(*access);
            let parsed = parse_target(target, base)?;
            let as_text = match access {
                Access::None => hidden_as_text_too(target, base, &parsed),
                _ => None,
            };
            let real = resolved(parsed.clone());
            if let (FsTarget::Path(written), FsTarget::Path(real), Access::Write) =
                (&parsed, &real, access)
            {
                if written != real {
                    write_grants_through_links.push((
                        written.as_path().to_path_buf(),
                        real.as_path().to_path_buf(),
                    ));
                }
            }
            file_system.push(real, access)?;
            if let Some(as_text) = as_text {
                file_system.push(resolved(as_text), access)?;
            }
        }
        let mut network = NetworkPolicy::Restricted;
        let mut network_lists = NetworkLists::default();
        if let Some(value) = &spec.network {
            NetworkSetting::parse(value, base)
                .and_then(|setting| setting.apply(&mut network, &mut network_lists))
                .map_err(|reason| SandboxError::Config {
                    file: origin_name(origin),
                    reason,
                })?;
        }
        Ok(AdditionalPermissions {
            profile: PermissionProfile::Managed {
                file_system,
                network,
                network_lists,
            },
            justification: spec.justification,
            write_grants_through_links,
        })
    }

    /// Reads and parses a permissions file.
    pub fn load(file: &Path) -> Result<Self, SandboxError> {
        let text = std::fs::read_to_string(file).map_err(|error| SandboxError::Config {
            file: file.display().to_string(),
            reason: error.to_string(),
        })?;
        // Relative entries are relative to the file's directory, which a
        // relative name does not give.
        let file = std::path::absolute(file).map_err(|error| SandboxError::Config {
            file: file.display().to_string(),
            reason: error.to_string(),
        })?;
        Self::from_toml(&text, Some(&file))
    }
}

/// A TOML document of type `T`; errors name `origin`.
fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: Option<&Path>,
) -> Result<T, SandboxError> {
    toml::from_str(text).map_err(|error| SandboxError::Config {
        file: origin_name(origin),
        reason: error.to_string(),
    })
}

/// A TOML document's origin as errors name it.
fn origin_name(origin: Option<&Path>) -> String {
    origin.map_or_else(|| "<inline>".to_owned(), |path| path.display().to_string())
}

impl From<AccessSpec> for Access {
    fn from(spec: AccessSpec) -> Access {
        match spec {
            AccessSpec::Read => Access::Read,
            AccessSpec::Write => Access::Write,
            AccessSpec::None => Access::None,
        }
    }
}

/// One profile as written in TOML.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    extends: Option<String>,
    /// Path, special root (`:cwd`) or deny glob, to `read`, `write` or
    /// `none`.
    #[serde(default)]
    filesystem: BTreeMap<String, AccessSpec>,
    /// `"restricted"`, `"limited"`, `"enabled"`, or a table with `mode`,
    /// `domains` and `unix_sockets` ([`NetworkSetting`]).
    network: Option<toml::Value>,
    /// `"best-effort"`: on Windows, run a restricted-network profile with
    /// proxy variables pointing nowhere instead of refusing it.
    windows_network: Option<WindowsNetworkSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum WindowsNetworkSpec {
    Refuse,
    BestEffort,
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum AccessSpec {
    Read,
    Write,
    None,
}

/// A `network` setting as written: a mode, or a table
///
/// ```toml
/// [profiles.build.network]
/// mode = "limited"
/// domains = { "crates.io" = "allow", "**.github.com" = "allow", "evil.example" = "deny" }
/// unix_sockets = { "/var/run/docker.sock" = "allow" }
/// ```
///
/// A table without `mode` keeps the mode it extends. Lists only mean
/// something to a `limited` network and are refused with any other mode.
struct NetworkSetting {
    mode: Option<NetworkPolicy>,
    lists: NetworkLists,
}

impl NetworkSetting {
    fn parse(value: &toml::Value, base: Option<&Path>) -> Result<NetworkSetting, String> {
        let mode = |value: &toml::Value| match value.as_str() {
            Some("restricted") => Ok(NetworkPolicy::Restricted),
            Some("limited") => Ok(NetworkPolicy::Limited),
            Some("enabled") => Ok(NetworkPolicy::Enabled),
            _ => Err(format!(
                "network mode {value} is none of \"restricted\", \"limited\", \"enabled\""
            )),
        };
        let table = match value {
            toml::Value::Table(table) => table,
            _ => {
                return Ok(NetworkSetting {
                    mode: Some(mode(value)?),
                    lists: NetworkLists::default(),
                })
            }
        };
        let entries = |key: &str| -> Result<Vec<(String, ListDecision)>, String> {
            let Some(value) = table.get(key) else {
                return Ok(Vec::new());
            };
            let toml::Value::Table(entries) = value else {
                return Err(format!(
                    "network.{key} must be a table of \"allow\" or \"deny\""
                ));
            };
            entries
                .iter()
                .map(|(name, decision)| {
                    let decision = decision
                        .as_str()
                        .ok_or_else(|| {
                            format!("network.{key}.{name:?} must be \"allow\" or \"deny\"")
                        })?
                        .parse::<ListDecision>()
                        .map_err(|error| format!("network.{key}.{name:?}: {error}"))?;
                    Ok((name.clone(), decision))
                })
                .collect()
        };
        if let Some(key) = table
            .keys()
            .find(|key| !["mode", "domains", "unix_sockets"].contains(&key.as_str()))
        {
            return Err(format!(
                "unknown key network.{key} (expected mode, domains, unix_sockets)"
            ));
        }
        let domains = entries("domains")?;
        let domains = DomainList::new(
            domains
                .iter()
                .map(|(pattern, decision)| (pattern.as_str(), *decision)),
        )
        .map_err(|error| format!("network.domains: {error}"))?;
        let unix_sockets = entries("unix_sockets")?
            .into_iter()
            .map(|(path, decision)| {
                AbsolutePath::written(&path, base)
                    .map(|path| (path, decision))
                    .map_err(|error| format!("network.unix_sockets: {error}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(NetworkSetting {
            mode: table.get("mode").map(mode).transpose()?,
            lists: NetworkLists {
                domains,
                unix_sockets,
            },
        })
    }

    /// Sets this on top of an inherited mode and lists.
    fn apply(self, mode: &mut NetworkPolicy, lists: &mut NetworkLists) -> Result<(), String> {
        if let Some(own) = self.mode {
            *mode = own;
        }
        if *mode != NetworkPolicy::Limited {
            if !self.lists.is_empty() {
                return Err(format!(
                    "network.domains and network.unix_sockets need mode = \"limited\" (the mode is \"{}\")",
                    mode.as_str()
                ));
            }
            // Inherited lists mean nothing once the mode is not limited.
            *lists = NetworkLists::default();
            return Ok(());
        }
        *lists = lists.union(&self.lists);
        Ok(())
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profiles: BTreeMap<String, ProfileSpec>,
}

/// [`ProfilesFile`] inside a document with other tables.
#[derive(Debug, serde::Deserialize)]
struct ProfilesWithin {
    #[serde(default)]
    profiles: BTreeMap<String, ProfileSpec>,
}

/// What a rule's `execution` means besides a profile's name (the rules
/// crate reads them first): no profile may take these names.
const EXECUTION_KEYWORDS: [&str; 2] = ["unsandboxed", "turn-default"];

/// Named profiles loaded from TOML, on top of the presets.
///
/// ```toml
/// [profiles.build]
/// extends = "workspace-write"
/// network = "enabled"
/// filesystem = { "/opt/cache" = "write", "../shared" = "read", "**/*.env" = "none" }
/// ```
///
/// Relative paths resolve against the directory of the file that declared
/// them. Neither a preset's name nor a rule's execution keyword
/// (`unsandboxed`, `turn-default`) names a loaded profile.
#[derive(Debug, Default)]
pub struct ProfileSet {
    specs: BTreeMap<String, (ProfileSpec, Option<PathBuf>)>,
}

impl ProfileSet {
    /// Adds the profiles of one TOML document; `origin` is the file it came
    /// from (its directory is the base for relative paths).
    pub fn add_toml(&mut self, text: &str, origin: Option<&Path>) -> Result<(), SandboxError> {
        let file: ProfilesFile = parse_toml(text, origin)?;
        self.add(file.profiles, origin)
    }

    /// Adds the `[profiles]` of a larger TOML document (a config file, whose
    /// other tables its reader checks), so that an error points at the
    /// document's own line.
    pub fn add_toml_within(
        &mut self,
        text: &str,
        origin: Option<&Path>,
    ) -> Result<(), SandboxError> {
        let file: ProfilesWithin = parse_toml(text, origin)?;
        self.add(file.profiles, origin)
    }

    /// Adds `profiles`, none of which may take a preset's name: a loaded
    /// profile of that name would shadow the preset, and "read-only" in a
    /// session's records would mean whatever the file said. Nor a rule's
    /// execution keyword, which a rule naming it would mean instead.
    fn add(
        &mut self,
        profiles: BTreeMap<String, ProfileSpec>,
        origin: Option<&Path>,
    ) -> Result<(), SandboxError> {
        if let Some(name) = profiles
            .keys()
            .find(|name| PermissionProfile::preset(name).is_some())
        {
            return Err(SandboxError::Config {
                file: origin_name(origin),
                reason: format!(
                    "[profiles.{name}]: \"{name}\" is a preset's name, which a profile cannot \
                     take (the audit log and the rules name profiles, and \"{name}\" must mean \
                     the preset there); name yours otherwise, with extends = \"{name}\" to \
                     start from the preset"
                ),
            });
        }
        if let Some(name) = profiles
            .keys()
            .find(|name| EXECUTION_KEYWORDS.contains(&name.as_str()))
        {
            return Err(SandboxError::Config {
                file: origin_name(origin),
                reason: format!(
                    "[profiles.{name}]: \"{name}\" is a rule's execution keyword, which a \
                     profile cannot take (a rule's `execution = \"{name}\"` means the keyword, \
                     never the profile, and so do the audit log's records); name yours otherwise"
                ),
            });
        }
        let base = origin.and_then(Path::parent).map(Path::to_path_buf);
        for (profile, spec) in profiles {
            self.specs.insert(profile, (spec, base.clone()));
        }
        Ok(())
    }

    /// The names of the loaded profiles (not the presets).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }

    /// Every name [`ProfileSet::get`] knows, the presets first, for a
    /// message.
    fn known(&self) -> String {
        PRESET_NAMES
            .into_iter()
            .chain(self.names())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The named profile (a preset or a loaded one), with `extends` chains
    /// followed.
    pub fn get(&self, name: &str) -> Result<PermissionProfile, SandboxError> {
        self.get_inner(name, 0)
    }

    /// Whether the named profile (or one it extends) opts in to a
    /// best-effort network restriction on Windows
    /// (`windows_network = "best-effort"`); the nearest setting wins.
    pub fn windows_network_best_effort(&self, name: &str) -> bool {
        self.windows_network(name) == Some(crate::windows_plan::WindowsNetwork::BestEffort)
    }

    /// The named profile's own `windows_network` (or that of the nearest
    /// profile it extends that sets one); `None` when none does, so that
    /// a rule's profile can leave the choice to the session's.
    pub fn windows_network(&self, name: &str) -> Option<crate::windows_plan::WindowsNetwork> {
        let mut current = Some(name);
        for _ in 0..=16 {
            let (spec, _) = current.and_then(|name| self.specs.get(name))?;
            if let Some(setting) = spec.windows_network {
                return Some(match setting {
                    WindowsNetworkSpec::BestEffort => {
                        crate::windows_plan::WindowsNetwork::BestEffort
                    }
                    WindowsNetworkSpec::Refuse => crate::windows_plan::WindowsNetwork::Refuse,
                });
            }
            current = spec.extends.as_deref();
        }
        None
    }

    fn get_inner(&self, name: &str, depth: usize) -> Result<PermissionProfile, SandboxError> {
        if depth > 16 {
            return Err(SandboxError::ExtendsCycle(name.to_owned()));
        }
        let Some((spec, base)) = self.specs.get(name) else {
            return PermissionProfile::preset(name).ok_or_else(|| SandboxError::UnknownProfile {
                name: name.to_owned(),
                known: self.known(),
            });
        };
        let mut profile = match &spec.extends {
            Some(parent) => self
                .get_inner(parent, depth + 1)
                .map_err(|error| match error {
                    SandboxError::UnknownProfile {
                        name: parent,
                        known,
                    } => SandboxError::UnknownParent {
                        profile: name.to_owned(),
                        parent,
                        known,
                    },
                    other => other,
                })?,
            None => PermissionProfile::Managed {
                file_system: FileSystemPolicy::default(),
                network: NetworkPolicy::Restricted,
                network_lists: NetworkLists::default(),
            },
        };
        let PermissionProfile::Managed {
            file_system,
            network,
            network_lists,
        } = &mut profile
        else {
            return Err(SandboxError::Config {
                file: name.to_owned(),
                reason: "only a sandboxed profile can be extended".into(),
            });
        };
        // The profile's own entry on a target replaces its parent's, so
        // that it can narrow what it extends (`":cwd" = "read"`); where
        // grants are merged, the wider wins instead.
        let mut own: Vec<FsEntry> = Vec::new();
        let mut hidden_as_text: Vec<FsTarget> = Vec::new();
        for (text, access) in &spec.filesystem {
            let entry = FsEntry {
                target: parse_target(text, base.as_deref())?,
                access: Access::from(*access),
            };
            if entry.access == Access::None {
                hidden_as_text.extend(hidden_as_text_too(text, base.as_deref(), &entry.target));
            }
            match own.iter().find(|other| other.target == entry.target) {
                Some(other) if other.access != entry.access => {
                    return Err(SandboxError::Config {
                        file: format!("profile {name}"),
                        reason: format!(
                            "{text:?} names {} again, with other access ({} and {}): \
                             say it once",
                            entry.target,
                            other.access.as_str(),
                            entry.access.as_str()
                        ),
                    })
                }
                Some(_) => {}
                None => own.push(entry),
            }
        }
        // Where the profile says nothing else of them.
        for target in hidden_as_text {
            if !own.iter().any(|entry| entry.target == target) {
                own.push(FsEntry {
                    target,
                    access: Access::None,
                });
            }
        }
        file_system
            .entries
            .retain(|inherited| !own.iter().any(|entry| entry.target == inherited.target));
        for entry in own {
            file_system.push(entry.target, entry.access)?;
        }
        if let Some(value) = &spec.network {
            NetworkSetting::parse(value, base.as_deref())
                .and_then(|setting| setting.apply(network, network_lists))
                .map_err(|reason| SandboxError::Config {
                    file: format!("profile {name}"),
                    reason,
                })?;
        }
        Ok(profile)
    }
}

/// A path target as it resolves now, symbolic links followed (those of
/// its longest part that exists; the rest, not there yet, as written):
/// what a request asks for is what the person approving it is shown, what
/// the audit log records and what is granted, not a link that points
/// somewhere else (or may later).
fn resolved(target: FsTarget) -> FsTarget {
    let FsTarget::Path(path) = target else {
        return target;
    };
    let whole = path.as_path();
    let canonical = whole.ancestors().find_map(|existing| {
        let canonical = std::fs::canonicalize(existing).ok()?;
        let rest = whole.strip_prefix(existing).ok()?;
        Some(canonical.join(rest))
    });
    match canonical.map(|canonical| AbsolutePath::new(canonical, None)) {
        Some(Ok(canonical)) => FsTarget::Path(canonical),
        _ => FsTarget::Path(path),
    }
}

/// `:name` is a special root, text with glob characters a deny glob,
/// anything else a path (relative to `base`). A leading `~/` is the home
/// directory, as in a shell: taken as a name under `base` it would
/// silently grant or hide nothing.
pub fn parse_target(text: &str, base: Option<&Path>) -> Result<FsTarget, SandboxError> {
    parse_target_read(text, base, |text, base| AbsolutePath::written(text, base))
}

/// [`parse_target`], with `read` making a path of the text.
fn parse_target_read(
    text: &str,
    base: Option<&Path>,
    read: fn(&str, Option<&Path>) -> Result<AbsolutePath, SandboxError>,
) -> Result<FsTarget, SandboxError> {
    if text.starts_with(':') {
        return SpecialRoot::parse(text)
            .map(FsTarget::Special)
            .ok_or_else(|| SandboxError::UnknownSpecialRoot(text.to_owned()));
    }
    if text.is_empty() {
        return Err(SandboxError::EmptyPath);
    }
    let written = text;
    let expanded = expand_home(text)?;
    let text = expanded.as_deref().unwrap_or(text);
    if text.contains(['*', '?', '[']) {
        return deny_glob(text).map(FsTarget::DenyGlob);
    }
    // Probe 133: `"/etc/passwd " = "none"` hid nothing, and only warned
    // that it does not exist (a glob's blanks are refused by `deny_glob`).
    if text.trim() != text {
        return Err(SandboxError::BlanksAroundPath(written.to_owned()));
    }
    Ok(FsTarget::Path(read(text, base)?))
}

/// For a path `parse_target` read through links at a `..` (`target`): the
/// path as text would read it, where that is another one. A `"none"`
/// entry hides both, so that a config written when `..` was read as text
/// hides no less now (review 36: `"../../secrets"` in a linked config
/// directory).
///
/// For a `"none"` glob, a glob for the name its text spells, brackets
/// and all ([`spelt_by_glob_text`]).
fn hidden_as_text_too(text: &str, base: Option<&Path>, target: &FsTarget) -> Option<FsTarget> {
    if matches!(target, FsTarget::DenyGlob(_)) {
        return spelt_by_glob_text(text);
    }
    parse_target_read(text, base, |text, base| AbsolutePath::new(text, base))
        .ok()
        .filter(|as_text| as_text != target)
}

/// For a glob whose text does not match itself (a class, `[1]`; an
/// alternation, `{a,b}`), the glob that matches the name it spells, read
/// as a glob is (relative: under each writable root): probe 218's
/// `"/srv/creds[1]" = "none"`, a pasted path, read `[1]` as a class,
/// hid `creds1`, and left `creds[1]` readable, with nothing said (only
/// `"none"` takes a glob). Hiding it too hides more, never less; being a
/// glob, it judges real paths and follows no link (review 220: the path,
/// followed, let a sandbox make a link by that name and hide `/usr` from
/// every later session). `[[]` still writes a bracket of a glob's own.
fn spelt_by_glob_text(text: &str) -> Option<FsTarget> {
    let expanded = expand_home(text).ok()?;
    let text = expanded.as_deref().unwrap_or(text);
    if !text.contains(['[', '{']) {
        return None;
    }
    deny_glob(&literal_glob(text)).ok().map(FsTarget::DenyGlob)
}

/// A glob that matches `text` and nothing else: each character a glob
/// reads otherwise in a class of its own.
pub(crate) fn literal_glob(text: &str) -> String {
    let mut glob = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            // Not `!` or `]`: literal outside a class, and `[!]` opens a
            // negated one.
            '*' | '?' | '[' | '{' | '}' | '\\' | ' ' => {
                glob.push('[');
                glob.push(character);
                glob.push(']');
            }
            other => glob.push(other),
        }
    }
    glob
}

/// A deny glob as it is matched, or why it would hide nothing. Globs are
/// matched against normalized paths, where no `.`, `..` or empty component
/// is left: a glob with one would silently hide nothing. A trailing `/`
/// (a `.gitignore` line's "directories only") is dropped: the name is
/// hidden whether it is a directory or a file, which hides more, never
/// less.
fn deny_glob(text: &str) -> Result<String, SandboxError> {
    let bad = |reason: &str| SandboxError::BadGlob {
        glob: text.to_owned(),
        reason: reason.to_owned(),
    };
    let gitignore_reads_otherwise = match text {
        _ if text.starts_with('!') => Some("a leading `!` (in .gitignore, a negation) is not read"),
        _ if text.starts_with('#') => Some("a leading `#` (in .gitignore, a comment) is not read"),
        _ if text.trim() != text => Some("blanks around it (which .gitignore trims) are kept"),
        _ => None,
    };
    if let Some(reason) = gitignore_reads_otherwise {
        return Err(bad(&format!(
            "{reason}: the glob would hide only names spelt so; a glob only hides, so write \
             it without them"
        )));
    }
    let trimmed = text.trim_end_matches('/');
    let relative = trimmed.strip_prefix('/').unwrap_or(trimmed);
    // Alternatives (`{a,b}`) are components too: `{sub/..,x}` holds `..`.
    let alternatives =
        |part: &str| -> Vec<String> { part.split(['{', '}', ',']).map(str::to_owned).collect() };
    let bad_component = relative.split('/').any(|component| {
        matches!(component, "" | "." | "..")
            || (component.contains(['{', '}', ','])
                && alternatives(component)
                    .iter()
                    .any(|part| matches!(part.as_str(), "." | "..")))
    });
    if bad_component {
        return Err(bad(
            "it has a `.`, `..` or empty component, which no path it is matched against \
             has, so it would hide nothing; write the glob without it (a glob with a `/` \
             is already taken from each writable root)",
        ));
    }
    globset::Glob::new(trimmed).map_err(|error| bad(&error.to_string()))?;
    Ok(trimmed.to_owned())
}

/// `~` or `~/...` with the home directory in front; `None` for text that
/// does not start with `~`.
fn expand_home(text: &str) -> Result<Option<String>, SandboxError> {
    let Some(rest) = text.strip_prefix('~') else {
        return Ok(None);
    };
    let refused = |reason| SandboxError::Home {
        entry: text.to_owned(),
        reason,
    };
    if !rest.is_empty() && !rest.starts_with(['/', '\\']) {
        return Err(refused("`~user` is not expanded"));
    }
    let home = std::env::home_dir()
        .filter(|home| home.is_absolute())
        .ok_or_else(|| refused("no home directory is known (HOME)"))?;
    let home = home
        .to_str()
        .ok_or_else(|| refused("the home directory's name is not UTF-8"))?;
    Ok(Some(format!("{home}{rest}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probe 118: an unknown profile's message listed only the presets,
    /// and one that `extends` named nothing did not say which profile
    /// did.
    #[test]
    fn an_unknown_profile_is_named_with_every_known_one() {
        let mut profiles = ProfileSet::default();
        profiles
            .add_toml_within("[profiles.mine]\nextends = \"nosuch\"\n", None)
            .unwrap();
        let error = profiles.get("mine").unwrap_err().to_string();
        assert_eq!(
            error,
            "profile \"mine\" extends an unknown profile \"nosuch\" (known: read-only, \
             workspace-write, danger-full-access, mine)"
        );
        let error = profiles.get("other").unwrap_err().to_string();
        assert!(error.ends_with("danger-full-access, mine)"), "{error}");
    }

    /// Probe 174: in a config reached through a link, `..` was resolved
    /// as text: `"../secret.txt" = "none"` hid a file the kernel's
    /// `../secret.txt` is not, and a `..` write grant went elsewhere.
    #[cfg(unix)]
    #[test]
    fn a_written_parent_is_the_kernels() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(root.join("real/sub"), root.join("link")).unwrap();
        let link = root.join("link");
        for (written, base, expected) in [
            (
                "../secret.txt",
                Some(link.as_path()),
                root.join("real/secret.txt"),
            ),
            ("./a/../b", Some(link.as_path()), root.join("link/b")),
            ("../../x", Some(link.as_path()), root.join("x")),
            ("missing/../y", Some(root.as_path()), root.join("y")),
        ] {
            assert_eq!(
                AbsolutePath::written(written, base).unwrap().as_path(),
                expected,
                "{written}"
            );
        }
        let absolute = format!("{}/link/../data", root.display());
        assert_eq!(
            AbsolutePath::written(&absolute, None).unwrap().as_path(),
            root.join("real/data")
        );
        // A profile's `"none"` hides the path as text read it too, so that
        // a config written for that reading hides no less (review 36);
        // a grant takes the kernel's alone.
        let mut set = ProfileSet::default();
        set.add_toml(
            "[profiles.p]\nextends = \"workspace-write\"\n\
             filesystem = { \"../secret.txt\" = \"none\", \"../data\" = \"write\" }\n",
            Some(&link.join("config.toml")),
        )
        .unwrap();
        let PermissionProfile::Managed { file_system, .. } = set.get("p").unwrap() else {
            panic!("a managed profile");
        };
        let named = |path: PathBuf, access: Access| {
            file_system.entries.iter().any(|entry| {
                entry.target == FsTarget::Path(AbsolutePath::new(&path, None).unwrap())
                    && entry.access == access
            })
        };
        assert!(named(root.join("real/secret.txt"), Access::None));
        assert!(named(root.join("secret.txt"), Access::None));
        assert!(named(root.join("real/data"), Access::Write));
        assert!(!named(root.join("data"), Access::Write));
        // No `..`: as written, links and all.
        assert_eq!(
            AbsolutePath::written("link/b", Some(&root))
                .unwrap()
                .as_path(),
            root.join("link/b")
        );
    }

    // Unix paths: not absolute on Windows.
    #[cfg(unix)]
    #[test]
    fn relative_paths_need_a_base() {
        assert!(AbsolutePath::new("a/b", None).is_err());
        assert_eq!(
            AbsolutePath::new("../x/./y", Some(Path::new("/repo/sub")))
                .unwrap()
                .as_path(),
            Path::new("/repo/x/y")
        );
        assert_eq!(
            AbsolutePath::new("/a/../../b/", None).unwrap().as_path(),
            Path::new("/b")
        );
    }

    /// Windows paths keep their drive or share through normalization.
    #[cfg(windows)]
    #[test]
    fn windows_paths_keep_their_prefix() {
        let cases = [
            (r"C:\work\..\x\.\y", None, r"C:\x\y"),
            (r"..\b", Some(r"C:\repo\sub"), r"C:\repo\b"),
            (r"C:\..\..", None, r"C:\"),
            (r"\\server\share\a\..\b", None, r"\\server\share\b"),
        ];
        for (input, base, expected) in cases {
            let path = AbsolutePath::new(input, base.map(Path::new)).unwrap();
            assert_eq!(path.as_path(), Path::new(expected), "{input}");
        }
        assert!(AbsolutePath::new(r"\work", None).is_err());
    }

    #[test]
    fn a_tilde_is_the_home_directory() {
        let home = std::env::home_dir().unwrap();
        let base = Path::new("/etc/execgate");
        assert_eq!(
            parse_target("~/.ssh", Some(base)).unwrap(),
            FsTarget::Path(AbsolutePath::new(home.join(".ssh"), None).unwrap())
        );
        assert_eq!(
            parse_target("~/**/*.key", Some(base)).unwrap(),
            FsTarget::DenyGlob(format!("{}/**/*.key", home.display()))
        );
        let error = parse_target("~root/.ssh", Some(base)).unwrap_err();
        assert!(
            error.to_string().contains("`~user` is not expanded"),
            "{error}"
        );
        // Only a leading `~` is the home directory (a base absolute on
        // every platform: this runs under Wine too).
        let base = std::env::current_dir().unwrap();
        assert_eq!(
            parse_target("a~/b", Some(&base)).unwrap(),
            FsTarget::Path(AbsolutePath::new(base.join("a~").join("b"), None).unwrap())
        );
    }

    #[test]
    fn deny_globs_only_deny() {
        let mut policy = FileSystemPolicy::default();
        assert!(policy
            .push(FsTarget::DenyGlob("**/*.env".into()), Access::Read)
            .is_err());
        assert!(policy
            .push(FsTarget::DenyGlob("**/*.env".into()), Access::None)
            .is_ok());
    }

    /// A probe found globs that silently hid nothing: `"./*.env"`,
    /// `"sub/../x/*.key"` and `"secret*/"` never matched a path. The first
    /// two are refused, the last hides the name as a file or a directory.
    #[test]
    fn globs_that_could_hide_nothing_are_refused_or_read_as_meant() {
        let glob = |text: &str| match parse_target(text, None) {
            Ok(FsTarget::DenyGlob(glob)) => Ok(glob),
            Ok(other) => panic!("{text}: {other:?}"),
            Err(error) => Err(error.to_string()),
        };
        for refused in [
            "./*.env",
            "sub/../x/*.key",
            "a//*.key",
            "/home/*/./.ssh",
            "*.env/..",
            "{sub/..,x}/*.key",
            "{.,x}/*.key",
        ] {
            let error = glob(refused).expect_err(refused);
            assert!(error.contains("would hide nothing"), "{refused}: {error}");
        }
        assert_eq!(glob("secret*/").as_deref(), Ok("secret*"));
        assert_eq!(glob("/home/*/.ssh/").as_deref(), Ok("/home/*/.ssh"));
        assert_eq!(glob("**/.git*").as_deref(), Ok("**/.git*"));
        assert_eq!(glob(".*.env").as_deref(), Ok(".*.env"));
        // Probe 131: what `.gitignore` reads otherwise (a negation, a
        // comment, blanks it trims) hid nothing, silently.
        for refused in ["!*.env", "#*.env", "*.env ", " *.env"] {
            let error = glob(refused).expect_err(refused);
            assert!(error.contains(".gitignore"), "{refused:?}: {error}");
        }
        // A path of nothing granted the config file's directory.
        let error = parse_target("", Some(Path::new("/etc/execgate")))
            .expect_err("an empty path was taken");
        assert!(error.to_string().contains("empty"), "{error}");
    }

    // Unix paths: not absolute on Windows.
    #[cfg(unix)]
    #[test]
    fn profiles_load_with_extends_and_file_relative_paths() {
        let mut set = ProfileSet::default();
        set.add_toml(
            r#"
            [profiles.build]
            extends = "workspace-write"
            network = "enabled"
            filesystem = { "cache" = "write", "**/*.env" = "none", ":minimal" = "read" }
            [profiles.tight]
            extends = "build"
            network = "restricted"
            "#,
            Some(Path::new("/etc/execgate/profiles.toml")),
        )
        .unwrap();
        let PermissionProfile::Managed {
            file_system,
            network,
            ..
        } = set.get("build").unwrap()
        else {
            panic!("managed");
        };
        assert_eq!(network, NetworkPolicy::Enabled);
        assert!(file_system.entries.contains(&FsEntry {
            target: FsTarget::Path(AbsolutePath::new("/etc/execgate/cache", None).unwrap()),
            access: Access::Write,
        }));
        assert!(file_system.entries.contains(&FsEntry {
            target: FsTarget::Special(SpecialRoot::Cwd),
            access: Access::Write,
        }));
        let PermissionProfile::Managed { network, .. } = set.get("tight").unwrap() else {
            panic!("managed");
        };
        assert_eq!(network, NetworkPolicy::Restricted);
    }

    /// Probe 131: a profile could not narrow what it extends: `":cwd" =
    /// "read"` over workspace-write's `:cwd` write, or `area = "read"` over
    /// a parent's `area` write, left both entries, and write won (as it
    /// does where two grants are merged). The profile's own entry replaces
    /// its parent's on the same target; one table naming a path twice
    /// with different access (`"/tmp"` and `"/tmp/"`) is refused.
    #[cfg(unix)]
    #[test]
    fn a_profile_replaces_what_it_extends_on_the_same_target() {
        let mut set = ProfileSet::default();
        set.add_toml(
            r#"
            [profiles.reader]
            extends = "workspace-write"
            filesystem = { ":cwd" = "read" }
            [profiles.area]
            extends = "workspace-write"
            filesystem = { "/srv/area" = "write", "/srv/other" = "none" }
            [profiles.area-read]
            extends = "area"
            filesystem = { "/srv/area" = "read", "/srv/other" = "read" }
            "#,
            None,
        )
        .unwrap();
        let entries = |name: &str| match set.get(name).unwrap() {
            PermissionProfile::Managed { file_system, .. } => file_system.entries,
            _ => panic!("managed"),
        };
        let access_of = |name: &str, target: FsTarget| -> Vec<Access> {
            entries(name)
                .into_iter()
                .filter(|entry| entry.target == target)
                .map(|entry| entry.access)
                .collect()
        };
        let path = |text: &str| FsTarget::Path(AbsolutePath::new(text, None).unwrap());
        assert_eq!(
            access_of("reader", FsTarget::Special(SpecialRoot::Cwd)),
            [Access::Read]
        );
        assert_eq!(access_of("area-read", path("/srv/area")), [Access::Read]);
        assert_eq!(access_of("area-read", path("/srv/other")), [Access::Read]);
        assert_eq!(access_of("area", path("/srv/area")), [Access::Write]);
        let mut twice = ProfileSet::default();
        let error = twice
            .add_toml(
                r#"
            [profiles.twice]
            extends = "read-only"
            filesystem = { "/tmp" = "write", "/tmp/" = "read" }
            "#,
                None,
            )
            .and_then(|()| twice.get("twice").map(|_| ()))
            .expect_err("a path named twice with different access loaded");
        assert!(error.to_string().contains("/tmp"), "{error}");
    }

    #[test]
    fn windows_network_opt_in_is_inherited_and_overridable() {
        let mut set = ProfileSet::default();
        set.add_toml(
            r#"
            [profiles.offline]
            extends = "workspace-write"
            windows_network = "best-effort"
            [profiles.child]
            extends = "offline"
            [profiles.strict]
            extends = "offline"
            windows_network = "refuse"
            "#,
            None,
        )
        .unwrap();
        let cases = [
            ("offline", true),
            ("child", true),
            ("strict", false),
            ("workspace-write", false),
            ("unknown", false),
        ];
        for (name, expected) in cases {
            assert_eq!(set.windows_network_best_effort(name), expected, "{name}");
        }
        // Set, or left to whoever uses the profile.
        use crate::windows_plan::WindowsNetwork;
        let settings = [
            ("child", Some(WindowsNetwork::BestEffort)),
            ("strict", Some(WindowsNetwork::Refuse)),
            ("workspace-write", None),
        ];
        for (name, expected) in settings {
            assert_eq!(set.windows_network(name), expected, "{name}");
        }
        assert!(set
            .add_toml("[profiles.x]\nwindows_network = \"maybe\"\n", None)
            .is_err());
    }

    #[test]
    fn config_errors_name_the_problem() {
        let cases = [
            ("[profiles.a]\nbogus = 1\n", "bogus"),
            (
                "[profiles.a]\nfilesystem = { \"x\" = \"read\" }\n",
                "relative",
            ),
            (
                "[profiles.a]\nfilesystem = { \"*.env\" = \"read\" }\n",
                "deny glob",
            ),
            (
                "[profiles.a]\nfilesystem = { \":home\" = \"read\" }\n",
                ":home",
            ),
            ("[profiles.a]\nextends = \"a\"\n", "extends"),
            (
                "[profiles.a]\nextends = \"danger-full-access\"\n",
                "extended",
            ),
            // A probe's config redefined the presets, silently.
            (
                "[profiles.read-only]\nfilesystem = { \"/\" = \"write\" }\n",
                "[profiles.read-only]: \"read-only\" is a preset's name",
            ),
            (
                "[profiles.a]\n[profiles.workspace-write]\nnetwork = \"enabled\"\n",
                "[profiles.workspace-write]: \"workspace-write\" is a preset's name",
            ),
            (
                "[profiles.danger-full-access]\n",
                "[profiles.danger-full-access]: \"danger-full-access\" is a preset's name",
            ),
            // A probe's rule `execution = "unsandboxed"`, meant for its
            // profile of that name, ran its command with no sandbox.
            (
                "[profiles.unsandboxed]\nextends = \"read-only\"\n",
                "[profiles.unsandboxed]: \"unsandboxed\" is a rule's execution keyword",
            ),
            (
                "[profiles.a]\nfilesystem = { \"/etc/passwd \" = \"none\" }\n",
                "blanks around its path",
            ),
            (
                "[profiles.a]\nfilesystem = { \" /etc/shadow\" = \"none\" }\n",
                "blanks around its path",
            ),
            (
                "[profiles.turn-default]\n",
                "[profiles.turn-default]: \"turn-default\" is a rule's execution keyword",
            ),
        ];
        for (text, expected) in cases {
            let mut set = ProfileSet::default();
            let error = set
                .add_toml(text, None)
                .and_then(|()| set.get("a").map(drop))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    // Unix paths: not absolute on Windows.
    #[cfg(unix)]
    #[test]
    fn merge_is_a_union_and_intersection_never_widens() {
        let base = PermissionProfile::preset("read-only").unwrap();
        let mut extra = FileSystemPolicy::default();
        extra
            .push(
                FsTarget::Path(AbsolutePath::new("/data", None).unwrap()),
                Access::Write,
            )
            .unwrap();
        extra
            .push(
                FsTarget::Path(AbsolutePath::new("/srv", None).unwrap()),
                Access::Write,
            )
            .unwrap();
        let requested = PermissionProfile::Managed {
            file_system: extra,
            network: NetworkPolicy::Enabled,
            network_lists: NetworkLists::default(),
        };
        let merged = base.merged_with(&requested);
        let PermissionProfile::Managed {
            file_system,
            network,
            ..
        } = &merged
        else {
            panic!("managed");
        };
        assert_eq!(file_system.entries.len(), 3);
        assert_eq!(*network, NetworkPolicy::Enabled);

        let mut partial = FileSystemPolicy::default();
        partial
            .push(
                FsTarget::Path(AbsolutePath::new("/data", None).unwrap()),
                Access::Write,
            )
            .unwrap();
        let granted = PermissionProfile::Managed {
            file_system: partial.clone(),
            network: NetworkPolicy::Restricted,
            network_lists: NetworkLists::default(),
        };
        assert_eq!(
            requested.intersected_with(&granted),
            PermissionProfile::Managed {
                file_system: partial,
                network: NetworkPolicy::Restricted,
                network_lists: NetworkLists::default(),
            }
        );
    }

    // Unix paths: the sockets a limited network names are Unix sockets, and
    // Windows refuses a limited network anyway.
    #[cfg(unix)]
    #[test]
    fn network_settings_are_read_as_mode_or_table() {
        let profiles = r#"
            [profiles.old]
            network = "enabled"

            [profiles.build]
            extends = "workspace-write"
            [profiles.build.network]
            mode = "limited"
            domains = { "Crates.IO." = "allow", "**.github.com" = "allow", "evil.example" = "deny" }
            unix_sockets = { "/var/run/docker.sock" = "allow" }

            [profiles.more]
            extends = "build"
            network = { domains = { "pypi.org" = "allow" } }

            [profiles.open]
            extends = "build"
            network = "enabled"
        "#;
        let mut set = ProfileSet::default();
        set.add_toml(profiles, Some(Path::new("/etc/execgate/config.toml")))
            .unwrap();
        let grants = |name: &str| set.get(name).unwrap().grants();
        assert!(grants("old").contains(&"network=enabled".to_owned()));
        let build = grants("build");
        for line in [
            "network=limited",
            "domain:evil.example=deny",
            "domain:crates.io=allow",
            "domain:**.github.com=allow",
            "unix_socket:/var/run/docker.sock=allow",
        ] {
            assert!(build.contains(&line.to_owned()), "{line} in {build:?}");
        }
        let more = grants("more");
        assert!(
            more.contains(&"domain:pypi.org=allow".to_owned()),
            "{more:?}"
        );
        assert!(
            more.contains(&"domain:crates.io=allow".to_owned()),
            "{more:?}"
        );
        // Lists end with the limited mode.
        assert!(!grants("open")
            .iter()
            .any(|line| line.starts_with("domain:")));

        let refused = [
            (
                "[profiles.x.network]\ndomains = { \"a.example\" = \"allow\" }\n",
                "need mode = \"limited\"",
            ),
            (
                "[profiles.x.network]\nmode = \"limited\"\ndomains = { \"*\" = \"deny\" }\n",
                "bare `*`",
            ),
            (
                "[profiles.x.network]\nmode = \"limited\"\ndomains = { \"a.example\" = \"maybe\" }\n",
                "neither",
            ),
            ("[profiles.x]\nnetwork = \"open\"\n", "none of"),
            (
                "[profiles.x.network]\nmode = \"limited\"\nports = [80]\n",
                "unknown key network.ports",
            ),
            (
                "[profiles.x.network]\nmode = \"limited\"\ndomains = { \"*.1.2.3.4\" = \"allow\" }\n",
                "not a domain pattern",
            ),
        ];
        for (text, expected) in refused {
            let mut set = ProfileSet::default();
            set.add_toml(text, None).unwrap();
            let error = set.get("x").unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn requested_networks_keep_only_what_was_granted() {
        let requested = AdditionalPermissions::from_toml(
            "[network]\nmode = \"limited\"\ndomains = { \"crates.io\" = \"allow\", \"pypi.org\" = \"allow\" }\n",
            None,
        )
        .unwrap()
        .profile;
        let granted = AdditionalPermissions::from_toml(
            "network = { mode = \"limited\", domains = { \"pypi.org\" = \"allow\" } }\n",
            None,
        )
        .unwrap()
        .profile;
        let kept = requested.intersected_with(&granted).grants();
        assert!(kept.contains(&"network=limited".to_owned()), "{kept:?}");
        assert!(
            kept.contains(&"domain:pypi.org=allow".to_owned()),
            "{kept:?}"
        );
        assert!(
            !kept.contains(&"domain:crates.io=allow".to_owned()),
            "{kept:?}"
        );

        let session = PermissionProfile::preset("workspace-write").unwrap();
        let merged = session.merged_with(&requested).grants();
        assert!(merged.contains(&"network=limited".to_owned()), "{merged:?}");
        assert!(
            merged.contains(&"domain:crates.io=allow".to_owned()),
            "{merged:?}"
        );
    }

    /// A requested path that is a symbolic link is granted, shown and
    /// recorded as where it leads when the request is read: never a link
    /// whose target the approver did not see.
    #[cfg(unix)]
    #[test]
    fn requested_paths_are_granted_as_they_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let skill = dir.path().join("skill");
        std::fs::create_dir(&skill).unwrap();
        std::os::unix::fs::symlink(&elsewhere, skill.join("data")).unwrap();
        let file = skill.join("permissions.toml");
        let text = "filesystem = { \"data\" = \"write\", \"data/new\" = \"read\", \
                    \"missing\" = \"read\" }\n";
        let grants = AdditionalPermissions::from_toml(text, Some(&file))
            .unwrap()
            .profile
            .grants();
        let elsewhere = std::fs::canonicalize(&elsewhere).unwrap();
        assert!(
            grants.contains(&format!("{}=write", elsewhere.display())),
            "{grants:?}"
        );
        // What does not exist yet is where it would be made.
        assert!(
            grants.contains(&format!("{}=read", elsewhere.join("new").display())),
            "{grants:?}"
        );
        let skill = std::fs::canonicalize(&skill).unwrap();
        assert!(
            grants.contains(&format!("{}=read", skill.join("missing").display())),
            "{grants:?}"
        );
    }

    #[test]
    fn added_grants_leave_out_a_network_that_adds_nothing() {
        // Absolute on Windows too.
        let cache = std::env::temp_dir().join("cache");
        let files = AdditionalPermissions::from_toml(
            &format!(
                "filesystem = {{ {:?} = \"write\" }}\n",
                cache.display().to_string()
            ),
            None,
        )
        .unwrap();
        // (Windows names it by its verbatim path.)
        let added = files.profile.added_grants();
        assert!(
            matches!(added.as_slice(), [only] if only.ends_with("cache=write")),
            "{added:?}"
        );
        assert!(files
            .profile
            .grants()
            .contains(&"network=restricted".to_owned()));
        let network = AdditionalPermissions::from_toml("network = \"enabled\"\n", None).unwrap();
        assert_eq!(network.profile.added_grants(), ["network=enabled"]);
    }
}
