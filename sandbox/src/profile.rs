//! The permission model: profiles as users write them, before any path is
//! resolved.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

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
        let path = path.as_ref();
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            match base {
                Some(base) if base.is_absolute() => base.join(path),
                _ => return Err(SandboxError::RelativePath(path.to_path_buf())),
            }
        };
        // Windows paths keep their drive or share (`Prefix`); on Unix the
        // first component of an absolute path is always the root.
        let mut normal = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::Normal(part) => normal.push(part),
                Component::ParentDir => {
                    normal.pop();
                }
                Component::Prefix(_) | Component::RootDir => normal.push(component.as_os_str()),
                Component::CurDir => {}
            }
        }
        Ok(AbsolutePath(normal))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
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
    /// A git-style glob (`**/*.env`) of files that must not be read.
    /// Only valid with [`Access::None`].
    DenyGlob(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FsEntry {
    pub target: FsTarget,
    pub access: Access,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum NetworkPolicy {
    #[default]
    Restricted,
    Enabled,
}

/// How commands are confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionProfile {
    /// Confined by execgate's sandbox.
    Managed {
        file_system: FileSystemPolicy,
        network: NetworkPolicy,
    },
    /// No sandbox at all.
    Disabled,
    /// Something outside execgate supplies the sandbox; only the network
    /// setting is recorded.
    External { network: NetworkPolicy },
}

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
        };
        Some(match name {
            "read-only" => managed(vec![special(SpecialRoot::Root, Access::Read)]),
            "workspace-write" => managed(vec![
                special(SpecialRoot::Root, Access::Read),
                special(SpecialRoot::Cwd, Access::Write),
                special(SpecialRoot::Tmpdir, Access::Write),
                special(SpecialRoot::WorkspaceRoots, Access::Write),
            ]),
            "danger-full-access" => PermissionProfile::Disabled,
            _ => return None,
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
                },
                Managed {
                    file_system: more,
                    network: more_network,
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
                }
            }
            (
                Managed {
                    file_system,
                    network,
                },
                External { network: more },
            ) => Managed {
                file_system: file_system.clone(),
                network: (*network).max(*more),
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
                },
                Managed {
                    file_system: other,
                    network: other_network,
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
        let network = |network: &NetworkPolicy| match network {
            NetworkPolicy::Enabled => "network=enabled".to_owned(),
            NetworkPolicy::Restricted => "network=restricted".to_owned(),
        };
        match self {
            PermissionProfile::Managed {
                file_system,
                network: net,
            } => file_system
                .entries
                .iter()
                .map(|entry| {
                    let target = match &entry.target {
                        FsTarget::Path(path) => path.to_string(),
                        FsTarget::Special(root) => root.as_str().to_owned(),
                        FsTarget::DenyGlob(glob) => glob.clone(),
                    };
                    format!("{target}={}", entry.access.as_str())
                })
                .chain(std::iter::once(network(net)))
                .collect(),
            PermissionProfile::Disabled => vec!["sandbox=disabled".into()],
            PermissionProfile::External { network: net } => {
                vec!["sandbox=external".into(), network(net)]
            }
        }
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
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdditionalSpec {
    justification: Option<String>,
    #[serde(default)]
    filesystem: BTreeMap<String, AccessSpec>,
    network: Option<NetworkSpec>,
}

impl AdditionalPermissions {
    /// Parses the TOML above; `origin` names the file in errors and is the
    /// base for relative paths.
    pub fn from_toml(text: &str, origin: Option<&Path>) -> Result<Self, SandboxError> {
        let spec: AdditionalSpec = parse_toml(text, origin)?;
        let base = origin.and_then(Path::parent);
        let mut file_system = FileSystemPolicy::default();
        for (target, access) in &spec.filesystem {
            let access = Access::from(*access);
            file_system.push(parse_target(target, base)?, access)?;
        }
        Ok(AdditionalPermissions {
            profile: PermissionProfile::Managed {
                file_system,
                network: match spec.network {
                    Some(NetworkSpec::Enabled) => NetworkPolicy::Enabled,
                    Some(NetworkSpec::Restricted) | None => NetworkPolicy::Restricted,
                },
            },
            justification: spec.justification,
        })
    }

    /// Reads and parses a permissions file.
    pub fn load(file: &Path) -> Result<Self, SandboxError> {
        let text = std::fs::read_to_string(file).map_err(|error| SandboxError::Config {
            file: file.display().to_string(),
            reason: error.to_string(),
        })?;
        Self::from_toml(&text, Some(file))
    }
}

/// A TOML document of type `T`; errors name `origin`.
fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: Option<&Path>,
) -> Result<T, SandboxError> {
    toml::from_str(text).map_err(|error| SandboxError::Config {
        file: origin.map_or_else(|| "<inline>".to_owned(), |path| path.display().to_string()),
        reason: error.to_string(),
    })
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
    network: Option<NetworkSpec>,
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

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum NetworkSpec {
    Restricted,
    Enabled,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profiles: BTreeMap<String, ProfileSpec>,
}

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
/// them.
#[derive(Debug, Default)]
pub struct ProfileSet {
    specs: BTreeMap<String, (ProfileSpec, Option<PathBuf>)>,
}

impl ProfileSet {
    /// Adds the profiles of one TOML document; `origin` is the file it came
    /// from (its directory is the base for relative paths).
    pub fn add_toml(&mut self, text: &str, origin: Option<&Path>) -> Result<(), SandboxError> {
        let file: ProfilesFile = parse_toml(text, origin)?;
        let base = origin.and_then(Path::parent).map(Path::to_path_buf);
        for (profile, spec) in file.profiles {
            self.specs.insert(profile, (spec, base.clone()));
        }
        Ok(())
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
        let mut current = Some(name);
        for _ in 0..=16 {
            let Some((spec, _)) = current.and_then(|name| self.specs.get(name)) else {
                return false;
            };
            if let Some(setting) = spec.windows_network {
                return setting == WindowsNetworkSpec::BestEffort;
            }
            current = spec.extends.as_deref();
        }
        false
    }

    fn get_inner(&self, name: &str, depth: usize) -> Result<PermissionProfile, SandboxError> {
        if depth > 16 {
            return Err(SandboxError::ExtendsCycle(name.to_owned()));
        }
        let Some((spec, base)) = self.specs.get(name) else {
            return PermissionProfile::preset(name)
                .ok_or_else(|| SandboxError::UnknownProfile(name.to_owned()));
        };
        let mut profile = match &spec.extends {
            Some(parent) => self.get_inner(parent, depth + 1)?,
            None => PermissionProfile::Managed {
                file_system: FileSystemPolicy::default(),
                network: NetworkPolicy::Restricted,
            },
        };
        let PermissionProfile::Managed {
            file_system,
            network,
        } = &mut profile
        else {
            return Err(SandboxError::Config {
                file: name.to_owned(),
                reason: "only a sandboxed profile can be extended".into(),
            });
        };
        for (target, access) in &spec.filesystem {
            let access = Access::from(*access);
            file_system.push(parse_target(target, base.as_deref())?, access)?;
        }
        if let Some(spec_network) = spec.network {
            *network = match spec_network {
                NetworkSpec::Restricted => NetworkPolicy::Restricted,
                NetworkSpec::Enabled => NetworkPolicy::Enabled,
            };
        }
        Ok(profile)
    }
}

/// `:name` is a special root, text with glob characters a deny glob,
/// anything else a path (relative to `base`).
pub fn parse_target(text: &str, base: Option<&Path>) -> Result<FsTarget, SandboxError> {
    if text.starts_with(':') {
        return SpecialRoot::parse(text)
            .map(FsTarget::Special)
            .ok_or_else(|| SandboxError::UnknownSpecialRoot(text.to_owned()));
    }
    if text.contains(['*', '?', '[']) {
        globset::Glob::new(text).map_err(|error| SandboxError::BadGlob {
            glob: text.to_owned(),
            reason: error.to_string(),
        })?;
        return Ok(FsTarget::DenyGlob(text.to_owned()));
    }
    Ok(FsTarget::Path(AbsolutePath::new(text, base)?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn deny_globs_only_deny() {
        let mut policy = FileSystemPolicy::default();
        assert!(policy
            .push(FsTarget::DenyGlob("**/*.env".into()), Access::Read)
            .is_err());
        assert!(policy
            .push(FsTarget::DenyGlob("**/*.env".into()), Access::None)
            .is_ok());
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
        };
        let merged = base.merged_with(&requested);
        let PermissionProfile::Managed {
            file_system,
            network,
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
        };
        assert_eq!(
            requested.intersected_with(&granted),
            PermissionProfile::Managed {
                file_system: partial,
                network: NetworkPolicy::Restricted,
            }
        );
    }
}
