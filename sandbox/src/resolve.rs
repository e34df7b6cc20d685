//! From a profile to concrete paths: special roots placed, paths made
//! canonical, protected names added under writable roots, deny globs
//! expanded. The result answers "may this profile read / write this path?"
//! and is what the backend enforces.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use crate::profile::{
    AbsolutePath, Access, FsTarget, NetworkLists, NetworkPolicy, PermissionProfile, SpecialRoot,
    PROTECTED_NAMES,
};
use crate::{MountAliases, SandboxError};

/// The platform's read roots for running programs (`:minimal`).
pub const MINIMAL_ROOTS: [&str; 7] = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32"];

/// Deny-glob expansion limits: a directory deeper than this under a root,
/// or more matches than this, fail the launch.
pub const GLOB_MAX_DEPTH: usize = 16;
pub const GLOB_MAX_MATCHES: usize = 4096;
/// Directory entries examined per launch before expansion fails closed.
pub const GLOB_MAX_VISITED: usize = 200_000;

/// Where a session is: what the special roots stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxContext {
    pub cwd: PathBuf,
    pub workspace_roots: Vec<PathBuf>,
    pub tmpdir: PathBuf,
}

impl SandboxContext {
    /// A context for `cwd`, with `$TMPDIR` (else `/tmp`) as the temp dir and
    /// no extra workspace roots.
    pub fn new(cwd: impl Into<PathBuf>) -> Self {
        SandboxContext {
            cwd: cwd.into(),
            workspace_roots: Vec::new(),
            tmpdir: std::env::var_os("TMPDIR")
                .and_then(|dir| plausible_tmpdir(Path::new(&dir)))
                .unwrap_or_else(|| PathBuf::from("/tmp")),
        }
    }
}

/// The first directory on the way to `dir` (itself included) that the
/// sandbox cannot pass through although this process can: root's, by
/// capabilities the sandbox drops, where the mode bits let user id 0 no
/// search (`x`). Any other user has none to drop. ACLs are not read.
fn unsearchable_without_capabilities(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let gid = nix::unistd::getegid().as_raw();
    let groups = nix::unistd::getgroups().unwrap_or_default();
    dir.ancestors()
        .find(|step| {
            let Ok(meta) = fs::metadata(step) else {
                return false;
            };
            let search = if meta.uid() == 0 {
                0o100
            } else if meta.gid() == gid || groups.iter().any(|group| group.as_raw() == meta.gid()) {
                0o010
            } else {
                0o001
            };
            meta.mode() & search == 0
        })
        .map(Path::to_path_buf)
}

/// The git directory `dir` is in, looked for as git looks for a
/// repository: up from `dir`, a directory with a `.git` is a work tree's
/// (the search ends there: a worktree kept inside a bare repository, whose
/// `.git` is protected as every `.git` is), and one with a `HEAD` file
/// beside `objects` and `refs` directories is a git directory itself.
fn git_directory_holding(dir: &Path) -> Option<&Path> {
    for step in dir.ancestors() {
        if fs::symlink_metadata(step.join(".git")).is_ok() {
            return None;
        }
        if step.join("HEAD").is_file()
            && step.join("objects").is_dir()
            && step.join("refs").is_dir()
        {
            return Some(step);
        }
    }
    None
}

/// Whether `cwd` is one of `homes` or a directory above one.
fn holds_a_home(cwd: &Path, homes: &[PathBuf]) -> bool {
    homes.iter().any(|home| home.starts_with(cwd))
}

/// This process's home directories, canonical: `$HOME`, and the one the
/// user database names for its user (they may differ, and either is where
/// a login reads its startup files).
fn homes() -> Vec<PathBuf> {
    let from_passwd = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|user| user.dir);
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .chain(from_passwd)
        .filter(|home| home.is_absolute())
        .filter_map(|home| fs::canonicalize(home).ok())
        .filter(|home| home != Path::new("/"))
        .collect()
}

/// `$TMPDIR` becomes a writable root, so it is taken only when it looks
/// like a temp dir: an existing directory whose own name is `tmp` or
/// `temp`, starts with `tmp.`, `tmp-` or `tmp_` (mktemp's names), or ends
/// with `-tmp`, `_tmp` or `.tmp`. `TMPDIR=/`, `TMPDIR=$HOME` or a directory
/// named `templates` would otherwise open far more than a temp dir.
fn plausible_tmpdir(dir: &Path) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(dir).ok()?;
    let name = canonical
        .file_name()?
        .to_string_lossy()
        .to_ascii_lowercase();
    let looks_temporary = ["tmp", "temp", "tmpdir"].contains(&name.as_str())
        || ["tmp.", "tmp-", "tmp_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        || ["-tmp", "_tmp", ".tmp"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
    (canonical.is_dir() && looks_temporary).then_some(canonical)
}

/// One concrete grant or denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: Access,
    /// False when the path did not exist at resolution: it can be queried
    /// but nothing can be mounted on it.
    pub exists: bool,
    /// Device and inode at resolution. Inside every sandbox the helper
    /// checks the path is still this file: a root swapped for a symlink
    /// between resolution and launch makes the launch fail.
    pub identity: Option<(u64, u64)>,
}

/// What deny-glob expansion found. Where it would stop (past
/// [`GLOB_MAX_DEPTH`], [`GLOB_MAX_VISITED`], [`GLOB_MAX_MATCHES`]) the
/// resolution fails instead: a match past a bound would stay readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobExpansion {
    pub matched: usize,
    pub visited: usize,
}

/// A managed profile made concrete for one context.
#[derive(Debug, Clone)]
pub struct ResolvedPolicy {
    rules: Vec<PathRule>,
    /// Only `:minimal` is readable, not `/`.
    minimal_only: bool,
    deny_globs: Vec<String>,
    deny_set: DenyGlobMatcher,
    /// Where the deny globs are searched for at the start: the writable
    /// roots and each absolute glob's literal start.
    glob_roots: Vec<PathBuf>,
    /// Roots relative deny globs apply under: the writable roots only.
    relative_glob_roots: Vec<PathBuf>,
    denied_files: Vec<PathBuf>,
    expansion: GlobExpansion,
    /// Unix sockets of other programs in the temp dir (X11, ssh-agent, ...)
    /// with the host's network: connecting to a pathname socket is not
    /// something Landlock below ABI 9 controls, nor is `connect` supervised
    /// there, so the backend covers them.
    host_sockets: Vec<PathBuf>,
    network: NetworkPolicy,
    network_lists: NetworkLists,
    /// The host sockets a limited network may connect to, as found on the
    /// host at resolution.
    unix_sockets: Vec<AllowedSocket>,
    /// What its special roots stood for.
    context: SandboxContext,
    /// Writable roots of this sandbox alone inside a directory every
    /// sandbox has hidden (see [`crate::Launcher::hide`]).
    private_roots: Vec<PathBuf>,
    /// The temporary directory, when it is written but is not where the
    /// command works: no `.git` may be made at its top, which would make a
    /// repository of every directory below it that has none.
    no_repository_at: Option<PathBuf>,
    /// Other names the host's mounts give the writable roots, as they were
    /// when first asked (by [`ResolvedPolicy::may_write`]): what the
    /// sandbox writes through a root, a program outside may read through a
    /// bind mount of it. Read only when asked: most sandboxes never are,
    /// and a host's mount table can be long.
    aliases: std::sync::OnceLock<MountAliases>,
}

/// A host socket a limited network may connect to: its path and the
/// (device, inode) it had at resolution.
type AllowedSocket = (PathBuf, (u64, u64));

impl ResolvedPolicy {
    /// Resolves a managed profile. `Disabled` and `External` profiles have
    /// nothing to resolve and are refused here.
    pub fn resolve(
        profile: &PermissionProfile,
        context: &SandboxContext,
    ) -> Result<ResolvedPolicy, SandboxError> {
        let PermissionProfile::Managed {
            file_system,
            network,
            network_lists,
        } = profile
        else {
            return Err(SandboxError::NotManaged);
        };
        let mut rules: Vec<PathRule> = Vec::new();
        let mut deny_globs = Vec::new();
        let mut minimal = false;
        let writable_root = file_system.entries.iter().any(|entry| {
            entry.target == FsTarget::Special(SpecialRoot::Root) && entry.access == Access::Write
        });
        for entry in &file_system.entries {
            match &entry.target {
                FsTarget::Path(path) => add_rule(&mut rules, path.as_path(), entry.access),
                FsTarget::DenyGlob(glob) => deny_globs.push(glob.clone()),
                FsTarget::Special(SpecialRoot::Root) => {
                    add_rule(&mut rules, Path::new("/"), entry.access);
                }
                FsTarget::Special(SpecialRoot::Minimal) => {
                    minimal = true;
                    for root in MINIMAL_ROOTS {
                        if Path::new(root).exists() {
                            add_rule(&mut rules, Path::new(root), entry.access);
                        }
                    }
                }
                FsTarget::Special(SpecialRoot::Cwd) => {
                    let cwd =
                        fs::canonicalize(&context.cwd).unwrap_or_else(|_| context.cwd.clone());
                    if entry.access == Access::Write {
                        // Started from `/` by mistake, a workspace profile
                        // would make the whole file system writable
                        // (unless the profile says so itself, with `:root`).
                        if cwd == Path::new("/") && !writable_root {
                            return Err(SandboxError::WritableFileSystem);
                        }
                        // Started from the home (or above it), it would
                        // make writable what runs outside the sandbox at
                        // the next login or terminal: the user's dotfiles.
                        if !writable_root && holds_a_home(&cwd, &homes()) {
                            return Err(SandboxError::WritableHome(context.cwd.clone()));
                        }
                        // Started inside `.git`, it would make writable
                        // what it keeps read-only below every writable
                        // root: hooks and config that run code outside the
                        // sandbox later.
                        if cwd.components().any(|part| part.as_os_str() == ".git") {
                            return Err(SandboxError::ProtectedWorkingDirectory {
                                cwd: context.cwd.clone(),
                                name: ".git",
                            });
                        }
                        // So would a git directory of another name (a bare
                        // repository, a `--separate-git-dir`): what git
                        // run on it later runs its hooks (probe 190).
                        if let Some(git_dir) = git_directory_holding(&cwd) {
                            return Err(SandboxError::GitDirectoryWorkingDirectory {
                                cwd: context.cwd.clone(),
                                git_dir: git_dir.to_path_buf(),
                            });
                        }
                    }
                    add_rule(&mut rules, &context.cwd, entry.access)
                }
                FsTarget::Special(SpecialRoot::Tmpdir) => {
                    add_rule(&mut rules, &context.tmpdir, entry.access)
                }
                FsTarget::Special(SpecialRoot::WorkspaceRoots) => {
                    for root in &context.workspace_roots {
                        add_rule(&mut rules, root, entry.access);
                    }
                }
            }
        }

        // Readable as the entry that wins on `/` says (`:root` none and
        // read merged: none), so that `:minimal` is then what is readable.
        let readable_root = rules
            .iter()
            .any(|rule| rule.path == Path::new("/") && rule.access != Access::None);
        // Protected names under writable roots, unless named explicitly.
        let explicit: Vec<PathBuf> = rules.iter().map(|rule| rule.path.clone()).collect();
        let writable: Vec<PathBuf> = rules
            .iter()
            .filter(|rule| rule.access == Access::Write && rule.exists)
            .map(|rule| rule.path.clone())
            .collect();
        for root in &writable {
            for name in PROTECTED_NAMES {
                let path = root.join(name);
                // A link is no directory to mount read-only: the sandbox
                // could write through it, replace it, or make what it
                // leads to (probes did each, and the user's own git then
                // ran the hooks). In the working directory, where the
                // user's git runs, it is refused rather than half kept (a
                // `.git` file, `gitdir: PATH`, is protected with its
                // gitdir); elsewhere (the temporary directory anyone may
                // put a link in) it is left as it was. The sandbox cannot
                // make one there (the supervisor).
                let is_link = fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_symlink());
                let in_working_directory =
                    fs::canonicalize(&context.cwd).is_ok_and(|cwd| cwd == *root);
                let named = explicit.contains(&path)
                    || fs::canonicalize(&path).is_ok_and(|target| explicit.contains(&target));
                if is_link && in_working_directory && !named {
                    return Err(SandboxError::ProtectedNameIsLink {
                        target: fs::read_link(&path).unwrap_or_default(),
                        path,
                    });
                }
                let is_real = fs::symlink_metadata(&path).is_ok_and(|meta| !meta.is_symlink());
                if explicit.contains(&path) || !is_real {
                    continue;
                }
                add_rule(&mut rules, &path, Access::Read);
                if let Some(gitdir) = gitdir_pointer(&path) {
                    // A worktree's git directory, and the repository's
                    // whose hooks and config it shares (`commondir`).
                    let common = common_dir(&gitdir);
                    for dir in std::iter::once(gitdir).chain(common) {
                        let dir_writable = writable.iter().any(|root| dir.starts_with(root));
                        if dir_writable && !explicit.contains(&dir) {
                            add_rule(&mut rules, &dir, Access::Read);
                        }
                    }
                }
            }
        }
        rules.sort_by(|a, b| {
            depth(&a.path)
                .cmp(&depth(&b.path))
                .then(a.path.cmp(&b.path))
        });

        // The kernel, and so the view and the supervisor, know a file by
        // its real path: an absolute glob whose literal start is reached
        // through a link names its files there too (review 34: one
        // written through a link hid nothing).
        let through_links: Vec<String> = deny_globs
            .iter()
            .filter_map(|glob| glob_at_real_start(glob))
            .filter(|real| !deny_globs.contains(real))
            .collect();
        deny_globs.extend(through_links);
        let deny_set = DenyGlobMatcher::new(&deny_globs)
            .map_err(|(glob, reason)| SandboxError::BadGlob { glob, reason })?;
        // Relative globs apply under the writable roots; an absolute glob
        // is also searched from its literal start, wherever that is, so
        // that what it names is covered in the view, not only refused by
        // the query API. A start of `/` hits the search limits: refused.
        let relative_glob_roots = writable.clone();
        let mut glob_roots = writable;
        // Searched from where they really are: a file found by a link's
        // path would be covered at a path outside the view.
        for base in deny_globs.iter().filter_map(|glob| literal_base(glob)) {
            let Ok(base) = fs::canonicalize(&base) else {
                continue;
            };
            if !glob_roots.iter().any(|root| base.starts_with(root)) {
                glob_roots.push(base);
            }
        }
        let mut policy = ResolvedPolicy {
            minimal_only: minimal && !readable_root,
            glob_roots,
            relative_glob_roots,
            rules,
            deny_globs,
            deny_set,
            denied_files: Vec::new(),
            expansion: GlobExpansion::default(),
            host_sockets: Vec::new(),
            network: *network,
            network_lists: network_lists.clone(),
            unix_sockets: Vec::new(),
            context: context.clone(),
            private_roots: Vec::new(),
            no_repository_at: None,
            aliases: std::sync::OnceLock::new(),
        };
        let tmpdir = fs::canonicalize(&context.tmpdir).unwrap_or_else(|_| context.tmpdir.clone());
        let works_there = fs::canonicalize(&context.cwd).is_ok_and(|cwd| cwd == tmpdir)
            || context.workspace_roots.contains(&tmpdir);
        let tmpdir_written = policy
            .rules
            .iter()
            .any(|rule| rule.exists && rule.access == Access::Write && rule.path == tmpdir);
        if tmpdir_written && !works_there {
            policy.no_repository_at = Some(tmpdir);
        }
        policy.expand_deny_globs()?;
        policy.unix_sockets = policy.check_allowed_sockets()?;
        // Only with the host's network: a restricted or limited sandbox's
        // supervisor refuses every host socket it connects to, and a cover
        // is a mount on a name any host program may remove while the
        // sandbox starts, which fails the start (CI: a test's socket).
        if policy.network == NetworkPolicy::Enabled && policy.can_read(&context.tmpdir) {
            policy.host_sockets = sockets_under(&context.tmpdir, 2);
            // A socket the profile allows stays where it is.
            let allowed: Vec<PathBuf> = policy
                .allowed_unix_sockets()
                .map(|(path, _)| path.to_path_buf())
                .collect();
            policy
                .host_sockets
                .retain(|socket| !allowed.contains(socket));
        }
        Ok(policy)
    }

    /// Concrete rules, shallowest first.
    pub fn rules(&self) -> &[PathRule] {
        &self.rules
    }

    /// Where it was resolved: what `:cwd`, `:tmpdir` and
    /// `:workspace_roots` stood for.
    pub fn context(&self) -> &SandboxContext {
        &self.context
    }

    /// `extra` as a sandbox with it added to this one gets it, for a person
    /// and a record to read (probe 156: a skill's `:cwd` was shown under
    /// the directory the script was called from, and its narrower network
    /// under a session with a wider one): `:cwd`, `:tmpdir` and
    /// `:workspace_roots` named by the paths they stand for here, and the
    /// network the two reach together. Not for enforcing: the special
    /// roots keep checks of their own when resolved.
    pub fn granted_with(&self, extra: &PermissionProfile) -> PermissionProfile {
        let PermissionProfile::Managed {
            file_system,
            network,
            network_lists,
        } = extra
        else {
            return extra.clone();
        };
        let mut shown = crate::FileSystemPolicy::default();
        for entry in &file_system.entries {
            let paths: Vec<&Path> = match &entry.target {
                FsTarget::Special(SpecialRoot::Cwd) => vec![&self.context.cwd],
                FsTarget::Special(SpecialRoot::Tmpdir) => vec![&self.context.tmpdir],
                FsTarget::Special(SpecialRoot::WorkspaceRoots) => self
                    .context
                    .workspace_roots
                    .iter()
                    .map(PathBuf::as_path)
                    .collect(),
                _ => {
                    let _ = shown.push(entry.target.clone(), entry.access);
                    continue;
                }
            };
            for path in paths {
                // As resolving it names it (`add_rule`).
                let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                if let Ok(path) = AbsolutePath::new(&path, None) {
                    let _ = shown.push(FsTarget::Path(path), entry.access);
                }
            }
        }
        let network = (*network).max(self.network);
        let network_lists = match network {
            // Every destination: no list narrows it.
            NetworkPolicy::Enabled => NetworkLists::default(),
            _ => network_lists.union(&self.network_lists),
        };
        PermissionProfile::Managed {
            file_system: shown,
            network,
            network_lists,
        }
    }

    /// Shows `root`, one of this policy's writable roots, inside a
    /// directory the launcher hides from every sandbox: this sandbox's own
    /// (an escalation's temporary directory). Not a writable root of the
    /// policy: nothing is shown.
    pub fn show_private_root(&mut self, root: PathBuf) {
        if self.may_write(&root) {
            self.private_roots.push(root);
        }
    }

    /// The roots [`ResolvedPolicy::show_private_root`] showed.
    pub fn private_roots(&self) -> &[PathBuf] {
        &self.private_roots
    }

    /// The writable root at whose top no `.git` may be made, if any.
    pub fn no_repository_at(&self) -> Option<&Path> {
        self.no_repository_at.as_deref()
    }

    pub fn network(&self) -> NetworkPolicy {
        self.network
    }

    /// What a `limited` network reaches without asking (empty otherwise).
    pub fn network_lists(&self) -> &NetworkLists {
        &self.network_lists
    }

    /// The host Unix sockets a `limited` sandbox may connect to, with the
    /// (device, inode) each had at resolution: the helper connects only to
    /// that socket, whatever the path shows later.
    pub fn allowed_unix_sockets(&self) -> impl Iterator<Item = (&Path, (u64, u64))> {
        self.unix_sockets
            .iter()
            .map(|(path, identity)| (path.as_path(), *identity))
    }

    /// The allowed sockets that exist now. Each must be a socket itself (a
    /// symlink would let whoever controls it point the grant at any host
    /// socket) outside every writable root (where the sandbox could put
    /// one of its choosing).
    fn check_allowed_sockets(&self) -> Result<Vec<AllowedSocket>, SandboxError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if self.network != NetworkPolicy::Limited {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for path in self.network_lists.allowed_unix_sockets() {
            let path = path.as_path();
            let refuse = |reason: &str| SandboxError::Config {
                file: format!("unix_sockets entry {}", path.display()),
                reason: reason.to_owned(),
            };
            if self.may_write(path) {
                return Err(refuse(
                    "it is under a writable root, where the sandbox could put a socket (or a \
                     link to one) of its choosing; allow a socket outside the writable roots",
                ));
            }
            let Ok(meta) = fs::symlink_metadata(path) else {
                // Not there (yet): nothing to reach.
                continue;
            };
            if !meta.file_type().is_socket() {
                return Err(refuse(
                    "it is not a socket (a symbolic link is not followed); name the socket itself",
                ));
            }
            // Through a link on the way: the writable-root check above read
            // the path as written, and the sandbox's view could not show it
            // (probe 162: bubblewrap's bare "Can't create file").
            let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            if real != path {
                return Err(refuse(&format!(
                    "a symbolic link on the way leads it to {}; name the socket by that path",
                    real.display()
                )));
            }
            found.push((path.to_path_buf(), (meta.dev(), meta.ino())));
        }
        Ok(found)
    }

    /// Only the `:minimal` roots (and explicit grants) are visible, not `/`.
    pub fn minimal_only(&self) -> bool {
        self.minimal_only
    }

    /// Files the deny globs matched at resolution.
    pub fn denied_files(&self) -> &[PathBuf] {
        &self.denied_files
    }

    /// Sockets found in the temp dir at resolution, to be made unreachable:
    /// with the host's network only (elsewhere, the supervisor refuses to
    /// connect to any socket bound outside the sandbox).
    pub fn host_sockets(&self) -> &[PathBuf] {
        &self.host_sockets
    }

    pub fn glob_expansion(&self) -> &GlobExpansion {
        &self.expansion
    }

    pub fn deny_globs(&self) -> &[String] {
        &self.deny_globs
    }

    /// The roots relative deny globs apply under: the writable roots.
    pub fn relative_glob_roots(&self) -> &[PathBuf] {
        &self.relative_glob_roots
    }

    /// What the profile allows on `path` (absolute; canonicalize it first
    /// when it may contain symlinks): the most specific rule wins, a
    /// stricter one at equal depth, and a deny glob overrides any grant.
    pub fn access(&self, path: &Path) -> Access {
        let Ok(path) = AbsolutePath::new(path, None) else {
            return Access::None;
        };
        let path = path.as_path();
        if self.is_glob_denied(path) {
            return Access::None;
        }
        self.rule_access(path)
    }

    /// What the path rules alone grant, deny globs left out.
    pub(crate) fn rule_access(&self, path: &Path) -> Access {
        self.rules
            .iter()
            .filter(|rule| path.starts_with(&rule.path))
            .max_by(|a, b| {
                depth(&a.path)
                    .cmp(&depth(&b.path))
                    .then(a.access.cmp(&b.access))
            })
            .map_or(Access::None, |rule| rule.access)
    }

    /// Whether something in the sandbox could have created or changed
    /// `path`. Unlike [`can_write`](Self::can_write), a deny glob does not
    /// make this false: it hides files that existed at start, and one
    /// created later under a writable root is writable.
    /// A path the host's mounts show under another name counts by each
    /// of its names (see [`MountAliases`]).
    pub fn may_write(&self, path: &Path) -> bool {
        let Ok(path) = AbsolutePath::new(path, None) else {
            return true;
        };
        let path = path.as_path();
        let by_name = |path: &Path| {
            !self.denied_files.iter().any(|file| file == path)
                && self.rule_access(path) == Access::Write
        };
        if by_name(path) {
            return true;
        }
        // Mounts that cannot be read leave every path possibly written
        // under another name: fail closed.
        match self.aliases() {
            Some(aliases) => aliases.other_names(path).any(|other| by_name(&other)),
            None => true,
        }
    }

    /// The writable roots' other names, read once they can be (`None`
    /// while the mounts cannot be read: asked again next time).
    fn aliases(&self) -> Option<&MountAliases> {
        if let Some(aliases) = self.aliases.get() {
            return Some(aliases);
        }
        let written: Vec<PathBuf> = self
            .rules
            .iter()
            .filter(|rule| rule.access == Access::Write)
            .map(|rule| rule.path.clone())
            .collect();
        let aliases = MountAliases::of(&written);
        if aliases.unknown() {
            return None;
        }
        Some(self.aliases.get_or_init(|| aliases))
    }

    /// Refuses a working directory the sandbox hides: bubblewrap would
    /// fail to change into it (or land in an empty directory covering
    /// it), saying so in its own words. One a deny glob matches is refused
    /// too: the sandbox would start in it and could open nothing there,
    /// not even the directory itself.
    pub fn check_working_directory(&self, cwd: &Path) -> Result<(), SandboxError> {
        let canonical = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
        let Ok(canonical) = AbsolutePath::new(&canonical, None) else {
            return Err(SandboxError::HiddenWorkingDirectory(cwd.to_path_buf()));
        };
        let canonical = canonical.as_path();
        // Probe 190: bubblewrap's "Can't chdir" and exit status 1, which
        // read as the command's own failure.
        if let Some(own) = ["/dev", "/proc"]
            .into_iter()
            .find(|own| canonical.starts_with(own))
        {
            return Err(SandboxError::SandboxOwnWorkingDirectory {
                cwd: cwd.to_path_buf(),
                own,
            });
        }
        if let Some(closed) = unsearchable_without_capabilities(canonical) {
            return Err(SandboxError::UnsearchableWorkingDirectory {
                cwd: cwd.to_path_buf(),
                closed,
            });
        }
        if self.rule_access(canonical) == Access::None {
            return Err(SandboxError::HiddenWorkingDirectory(cwd.to_path_buf()));
        }
        if self.is_glob_denied(canonical) {
            return Err(SandboxError::DeniedWorkingDirectory {
                cwd: cwd.to_path_buf(),
                globs: self.deny_globs.join(", "),
            });
        }
        Ok(())
    }

    pub fn can_read(&self, path: &Path) -> bool {
        self.access(path) != Access::None
    }

    pub fn can_write(&self, path: &Path) -> bool {
        self.access(path) == Access::Write
    }

    /// Whether a deny glob hides `path` (absolute, canonical), whatever
    /// the rules grant there.
    pub fn glob_denies(&self, path: &Path) -> bool {
        self.is_glob_denied(path)
    }

    fn is_glob_denied(&self, path: &Path) -> bool {
        if self.deny_globs.is_empty() {
            return false;
        }
        self.denied_files.iter().any(|file| file == path)
            || self.deny_set.denies(path, &self.relative_glob_roots)
    }

    /// Finds the existing files the deny globs match under the writable
    /// roots, so that the backend can cover each one.
    fn expand_deny_globs(&mut self) -> Result<(), SandboxError> {
        if self.deny_globs.is_empty() {
            return Ok(());
        }
        let mut found = Vec::new();
        for root in self.glob_roots.clone() {
            self.walk(&root, &root, 0, &mut found)?;
        }
        found.sort();
        found.dedup();
        self.expansion.matched = found.len();
        self.denied_files = found;
        Ok(())
    }

    fn walk(
        &mut self,
        root: &Path,
        dir: &Path,
        level: usize,
        found: &mut Vec<PathBuf>,
    ) -> Result<(), SandboxError> {
        if level > GLOB_MAX_DEPTH {
            // A match deeper down would stay readable: refuse instead.
            return Err(SandboxError::GlobLimit(format!(
                "{} lies more than {GLOB_MAX_DEPTH} levels below {}",
                dir.display(),
                root.display()
            )));
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            self.expansion.visited += 1;
            if self.expansion.visited > GLOB_MAX_VISITED {
                return Err(SandboxError::GlobLimit(format!(
                    "more than {GLOB_MAX_VISITED} entries under {}",
                    root.display()
                )));
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            // A symlink is neither covered nor followed: its target is
            // covered where it lives, or not readable at all. Covering
            // the link would hide its target under another name, and a
            // dangling one (which any sandbox can plant in the shared
            // temp dir) would stop every later sandbox from starting.
            if !kind.is_dir()
                && !kind.is_symlink()
                && self.deny_set.denies(&path, &self.relative_glob_roots)
            {
                found.push(path.clone());
                if found.len() > GLOB_MAX_MATCHES {
                    return Err(SandboxError::GlobLimit(format!(
                        "more than {GLOB_MAX_MATCHES} files match {}",
                        self.deny_globs.join(", ")
                    )));
                }
            }
            if kind.is_dir() {
                self.walk(root, &path, level + 1, found)?;
            }
        }
        Ok(())
    }
}

/// The directory an absolute glob starts in: its components up to the
/// first with a glob character. `None` for a relative glob.
fn literal_base(glob: &str) -> Option<PathBuf> {
    if !glob.starts_with('/') {
        return None;
    }
    let mut base = PathBuf::from("/");
    for component in glob.split('/').filter(|part| !part.is_empty()) {
        if component.contains(['*', '?', '[', '{']) {
            return Some(base);
        }
        base.push(component);
    }
    // No glob character at all: the path's directory.
    base.parent().map(Path::to_path_buf)
}

/// An absolute glob written from the real path of its literal start (of
/// the part of it that exists: a directory made later is found by its
/// real path too), when a link on the way leads elsewhere; `None` when
/// none does, or when the real path holds a character a glob reads
/// otherwise.
fn glob_at_real_start(glob: &str) -> Option<String> {
    let base = literal_base(glob)?;
    let (existing, real) = base
        .ancestors()
        .find_map(|place| Some((place, fs::canonicalize(place).ok()?)))?;
    let rest = glob.strip_prefix(existing.to_str()?)?;
    let real = real.to_str()?;
    if real == existing.to_str()? || real.contains(['*', '?', '[', '{', '\\', '!']) {
        return None;
    }
    let separator = if real.ends_with('/') || rest.starts_with('/') {
        ""
    } else {
        "/"
    };
    Some(format!("{real}{separator}{rest}"))
}

/// Unix sockets in `dir` and its subdirectories down to `levels`, without
/// following symlinks.
fn sockets_under(dir: &Path, levels: usize) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_socket() {
            found.push(entry.path());
        } else if kind.is_dir() && levels > 1 {
            found.extend(sockets_under(&entry.path(), levels - 1));
        }
    }
    found
}

/// Adds a rule; the same path twice keeps the stricter access.
fn add_rule(rules: &mut Vec<PathRule>, path: &Path, access: Access) {
    let rule = canonical_rule(path, access);
    match rules.iter_mut().find(|existing| existing.path == rule.path) {
        Some(existing) => existing.access = existing.access.max(rule.access),
        None => rules.push(rule),
    }
}

fn depth(path: &Path) -> usize {
    path.components().count()
}

/// The canonical form of `path` when it exists, else its lexical form.
fn canonical_rule(path: &Path, access: Access) -> PathRule {
    use std::os::unix::fs::MetadataExt;
    match fs::canonicalize(path) {
        Ok(canonical) => PathRule {
            identity: fs::metadata(&canonical)
                .ok()
                .map(|meta| (meta.dev(), meta.ino())),
            path: canonical,
            access,
            exists: true,
        },
        Err(_) => PathRule {
            path: AbsolutePath::new(path, None)
                .map(|p| p.as_path().to_path_buf())
                .unwrap_or_else(|_| path.to_path_buf()),
            access,
            exists: false,
            identity: None,
        },
    }
}

/// For a `.git` file of a linked worktree or submodule, the git directory
/// its `gitdir:` line points to.
fn gitdir_pointer(dot_git: &Path) -> Option<PathBuf> {
    if dot_git.file_name() != Some(OsStr::new(".git")) || !dot_git.is_file() {
        return None;
    }
    let text = fs::read_to_string(dot_git).ok()?;
    let target = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    let base = dot_git.parent()?;
    AbsolutePath::new(target, Some(base))
        .ok()
        .map(|path| path.as_path().to_path_buf())
}

/// For a linked worktree's git directory, the repository's own (its
/// `commondir` file, relative to it or absolute), which holds the hooks
/// and config every worktree of it runs.
fn common_dir(gitdir: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(gitdir.join("commondir")).ok()?;
    let named = text.lines().next()?.trim_end();
    if named.is_empty() {
        return None;
    }
    let path = gitdir.join(named);
    Some(fs::canonicalize(&path).unwrap_or(path))
}

/// The patterns a deny glob stands for, read as `.gitignore` reads its
/// lines: one without a `/` matches a name at any depth (`*.env` is
/// `**/*.env`), and whatever a glob matches, everything under it is
/// matched too (`**/private` hides the files inside). `*` never crosses a
/// `/`, `**` does.
fn deny_glob_patterns(glob: &str) -> [String; 2] {
    let anchored = if glob.contains('/') {
        glob.to_owned()
    } else {
        format!("**/{glob}")
    };
    [format!("{anchored}/**"), anchored]
}

/// Deny globs compiled: an absolute one (`/home/*/.ssh`) judges absolute
/// paths, a relative one only paths under the roots it is given (the
/// writable roots), never the rest of the file system (`*.conf` must not
/// hide `/etc/resolv.conf`).
#[derive(Debug, Clone)]
pub(crate) struct DenyGlobMatcher {
    absolute: globset::GlobSet,
    relative: globset::GlobSet,
    /// The globs' ways: [`DenyGlobMatcher::on_the_way`].
    ways_absolute: globset::GlobSet,
    ways_relative: globset::GlobSet,
}

/// The paths a late file a glob matches is reached by (its directories,
/// and the file or directory it matches): what the host writes through
/// them, a link there would take to a name no glob matches. Up to the
/// first named component, a wildcard matches whatever the real path holds
/// there, so a way begins at it; after one, a wildcard's place is a way
/// too (`a/**/b/*.key`: `a`, `a/**`, `a/**/b`, `a/**/b/*.key`: a link
/// anywhere under `a` would take the file out from under it).
fn way_patterns(glob: &str) -> Vec<String> {
    let anchored = if glob.contains('/') {
        glob.to_owned()
    } else {
        format!("**/{glob}")
    };
    let components: Vec<&str> = anchored.split('/').collect();
    let wildcard = |component: &str| {
        !component.is_empty() && component.chars().all(|c| matches!(c, '*' | '?'))
    };
    let first_named = components
        .iter()
        .position(|component| !component.is_empty() && !wildcard(component));
    let Some(first_named) = first_named else {
        return Vec::new();
    };
    (first_named + 1..=components.len())
        .map(|end| components[..end].join("/"))
        .collect()
}

impl DenyGlobMatcher {
    /// Compiles `globs`; the error names the glob and why.
    pub(crate) fn new(globs: &[String]) -> Result<DenyGlobMatcher, (String, String)> {
        let (mut absolute, mut relative) = (
            globset::GlobSetBuilder::new(),
            globset::GlobSetBuilder::new(),
        );
        let (mut ways_absolute, mut ways_relative) = (
            globset::GlobSetBuilder::new(),
            globset::GlobSetBuilder::new(),
        );
        let compile = |glob: &String, pattern: &str| {
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|error| (glob.clone(), error.to_string()))
        };
        for glob in globs {
            let (set, ways) = match glob.starts_with('/') {
                true => (&mut absolute, &mut ways_absolute),
                false => (&mut relative, &mut ways_relative),
            };
            for pattern in deny_glob_patterns(glob) {
                set.add(compile(glob, &pattern)?);
            }
            for pattern in way_patterns(glob) {
                ways.add(compile(glob, &pattern)?);
            }
        }
        let build = |set: globset::GlobSetBuilder| {
            set.build()
                .map_err(|error| (globs.join(", "), error.to_string()))
        };
        Ok(DenyGlobMatcher {
            absolute: build(absolute)?,
            relative: build(relative)?,
            ways_absolute: build(ways_absolute)?,
            ways_relative: build(ways_relative)?,
        })
    }

    /// Whether `path` (absolute) lies on a glob's way (see
    /// [`way_patterns`]): no link may be put there.
    pub(crate) fn on_the_way(&self, path: &Path, roots: &[PathBuf]) -> bool {
        self.ways_absolute.is_match(path)
            || roots
                .iter()
                .filter_map(|root| path.strip_prefix(root).ok())
                .any(|relative| self.ways_relative.is_match(relative))
    }

    /// Whether `path` (absolute) is denied, relative globs judging it
    /// relative to each of `roots` it lies under.
    pub(crate) fn denies(&self, path: &Path, roots: &[PathBuf]) -> bool {
        self.absolute.is_match(path)
            || roots
                .iter()
                .filter_map(|root| path.strip_prefix(root).ok())
                .any(|relative| self.relative.is_match(relative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::FileSystemPolicy;

    #[test]
    fn deny_globs_read_as_gitignore_reads_them() {
        let root = PathBuf::from("/w");
        let matches = |glob: &str, path: &str| {
            DenyGlobMatcher::new(&[glob.to_owned()])
                .unwrap()
                .denies(&root.join(path), std::slice::from_ref(&root))
        };
        // (glob, path relative to a writable root, matched)
        let cases = [
            ("*.env", ".env", true),
            ("*.env", "sub/deep/nested.env", true),
            ("*.env", "sub/env", false),
            ("*.env", "sub/x.env/inside", true),
            ("**/private", "private", true),
            ("**/private", "a/private/key", true),
            ("**/private", "a/privateer/key", false),
            // Relative globs judge only what lies under a root.
            ("*.conf", "/etc/resolv.conf", false),
            ("**/*.conf", "/etc/resolv.conf", false),
            ("config/*.key", "config/a.key", true),
            ("config/*.key", "sub/config/a.key", false),
            ("config/*.key", "config/sub/a.key", false),
            ("/home/*/.ssh", "/home/u/.ssh/id_rsa", true),
            ("/home/*/.ssh", "/home/u/v/.ssh/id_rsa", false),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(glob, path, matched)| matches(glob, path) != *matched)
            .collect();
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[test]
    fn a_globs_way_is_each_named_directory_and_what_it_matches() {
        let root = PathBuf::from("/w");
        let on_the_way = |glob: &str, path: &str| {
            DenyGlobMatcher::new(&[glob.to_owned()])
                .unwrap()
                .on_the_way(&root.join(path), std::slice::from_ref(&root))
        };
        // (glob, path relative to a writable root, on its way)
        let cases = [
            ("config/*.key", "config", true),
            ("config/*.key", "config/a.key", true),
            ("config/*.key", "configs", false),
            ("config/*.key", "sub/config", false),
            ("[v]ault", "vault", true),
            ("[v]ault", "deep/down/vault", true),
            ("[v]ault", "deep", false),
            ("*.env", "a/.env", true),
            ("*.env", "a", false),
            ("a/**/b/*.key", "a", true),
            ("a/**/b/*.key", "a/x/y/b", true),
            // A review: a link at a/x took the host's a/x/b/k.key out.
            ("a/**/b/*.key", "a/x", true),
            ("a/**/b/*.key", "c/x", false),
            // Wildcards before the first name match wherever a link leads.
            ("*/secrets/*.key", "x", false),
            ("*/secrets/*.key", "x/secrets", true),
            ("/w/secrets/deep/*.key", "secrets", true),
            ("/w/secrets/deep/*.key", "secrets/deep", true),
            ("/w/secrets/deep/*.key", "secrets/other", false),
            ("/w/secrets/deep/*.key", "/", false),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(glob, path, on)| on_the_way(glob, path) != *on)
            .collect();
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    fn managed(entries: &[(&str, Access)]) -> PermissionProfile {
        let mut file_system = FileSystemPolicy::default();
        for (target, access) in entries {
            let target = crate::profile::parse_target(target, None).unwrap();
            file_system.push(target, *access).unwrap();
        }
        PermissionProfile::Managed {
            file_system,
            network: NetworkPolicy::Restricted,
            network_lists: NetworkLists::default(),
        }
    }

    /// Probe 131: `:root` read and `:root` none together (a profile's
    /// parent and itself, or merged grants) hid `/`, and `:minimal` with
    /// it: `:minimal` was not taken as what stays readable, as `:root`
    /// read had been seen. What wins on `/` decides.
    #[test]
    fn root_hidden_by_the_entry_that_wins_leaves_minimal_readable() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let profile = managed(&[
            (":root", Access::Read),
            (":root", Access::None),
            (":minimal", Access::Read),
            (":cwd", Access::Write),
        ]);
        let policy = ResolvedPolicy::resolve(&profile, &SandboxContext::new(&root)).unwrap();
        assert!(policy.minimal_only());
        let read_root = managed(&[(":root", Access::Read), (":minimal", Access::Read)]);
        let policy = ResolvedPolicy::resolve(&read_root, &SandboxContext::new(&root)).unwrap();
        assert!(!policy.minimal_only());
    }

    #[test]
    fn most_specific_wins_and_stricter_breaks_ties() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        for sub in ["repo/a/b/c", "repo/other"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        let repo = root.join("repo");
        let text = |p: &Path| p.to_str().unwrap().to_owned();
        let profile = managed(&[
            (":root", Access::Read),
            (&text(&repo), Access::Write),
            (&text(&repo.join("a")), Access::None),
            (&text(&repo.join("a/b")), Access::Write),
            (&text(&repo.join("other")), Access::Write),
            (&text(&repo.join("other")), Access::None),
        ]);
        let policy = ResolvedPolicy::resolve(&profile, &SandboxContext::new(&root)).unwrap();
        // (path, access)
        let cases = [
            ("/usr/bin/ls", Access::Read),
            ("repo/x", Access::Write),
            ("repo/a", Access::None),
            ("repo/a/x", Access::None),
            ("repo/a/b", Access::Write),
            ("repo/a/b/c/d", Access::Write),
            ("repo/other/f", Access::None),
            ("repo/a/b/../x", Access::None),
        ];
        for (path, expected) in cases {
            let path = if path.starts_with('/') {
                PathBuf::from(path)
            } else {
                root.join(path)
            };
            assert_eq!(policy.access(&path), expected, "{}", path.display());
        }
    }

    /// A working directory that is a home, or above one, is not made
    /// writable by `:cwd`; below it is a project.
    #[test]
    fn a_writable_working_directory_cannot_hold_a_home() {
        let homes = [PathBuf::from("/home/ann"), PathBuf::from("/srv/users/bob")];
        for (cwd, holds) in [
            ("/home/ann", true),
            ("/home", true),
            ("/srv/users", true),
            ("/home/ann/project", false),
            ("/home/annex", false),
            ("/srv/users/bobby", false),
            ("/var/tmp", false),
        ] {
            assert_eq!(holds_a_home(Path::new(cwd), &homes), holds, "{cwd}");
        }
    }

    /// A workspace profile started from `/` would make the whole file
    /// system writable; read access from there is fine.
    #[test]
    fn a_writable_working_directory_cannot_be_the_root() {
        let workspace_write = managed(&[(":root", Access::Read), (":cwd", Access::Write)]);
        let error = ResolvedPolicy::resolve(&workspace_write, &SandboxContext::new("/"))
            .err()
            .unwrap();
        assert!(matches!(error, SandboxError::WritableFileSystem), "{error}");
        let read_only = managed(&[(":root", Access::Read), (":cwd", Access::Read)]);
        assert!(ResolvedPolicy::resolve(&read_only, &SandboxContext::new("/")).is_ok());
        let everything = managed(&[(":root", Access::Write), (":cwd", Access::Write)]);
        assert!(ResolvedPolicy::resolve(&everything, &SandboxContext::new("/")).is_ok());
    }

    /// `.git` stays read-only below a writable working directory; started
    /// inside it, a workspace profile would make it writable: refused.
    /// Read access from there is fine.
    #[test]
    fn a_writable_working_directory_cannot_be_inside_a_protected_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("ws/.git/hooks")).unwrap();
        let hooks = root.join("ws/.git/hooks");
        let workspace_write = managed(&[(":root", Access::Read), (":cwd", Access::Write)]);
        let error = ResolvedPolicy::resolve(&workspace_write, &SandboxContext::new(&hooks))
            .err()
            .unwrap();
        assert!(
            matches!(
                error,
                SandboxError::ProtectedWorkingDirectory { name: ".git", .. }
            ),
            "{error}"
        );
        let read_only = managed(&[(":root", Access::Read), (":cwd", Access::Read)]);
        assert!(ResolvedPolicy::resolve(&read_only, &SandboxContext::new(&hooks)).is_ok());
        assert!(
            ResolvedPolicy::resolve(&workspace_write, &SandboxContext::new(root.join("ws")))
                .is_ok()
        );
    }

    /// Probe 190: started in the host's `/dev/shm`, or as root in a
    /// directory whose mode lets only root's capabilities in, the sandbox
    /// failed in bubblewrap's words with status 1, as if the command had.
    #[test]
    fn a_working_directory_the_sandbox_cannot_enter_is_refused_saying_why() {
        let workspace_write = managed(&[(":root", Access::Read), (":cwd", Access::Write)]);
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let policy =
            ResolvedPolicy::resolve(&workspace_write, &SandboxContext::new(shm.path())).unwrap();
        let error = policy.check_working_directory(shm.path()).unwrap_err();
        assert!(
            matches!(
                error,
                SandboxError::SandboxOwnWorkingDirectory { own: "/dev", .. }
            ),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let closed = root.join("closed");
        let ws = closed.join("ws");
        fs::create_dir_all(&ws).unwrap();
        let policy = ResolvedPolicy::resolve(&workspace_write, &SandboxContext::new(&ws)).unwrap();
        assert!(policy.check_working_directory(&ws).is_ok());
        fs::set_permissions(&closed, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let checked = policy.check_working_directory(&ws);
        fs::set_permissions(&closed, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        if nix::unistd::geteuid().is_root() {
            let error = checked.unwrap_err();
            assert!(
                matches!(&error, SandboxError::UnsearchableWorkingDirectory { closed: at, .. } if *at == closed),
                "{error}"
            );
        }
    }

    /// Probe 190: a bare repository as the working directory (or a
    /// directory in it) was writable: the sandbox planted a hook that the
    /// host's next `git push` to it ran. A git directory by any name (a
    /// bare one, a `--separate-git-dir`) is refused as `.git` is.
    #[test]
    fn a_writable_working_directory_cannot_be_inside_a_git_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let bare = root.join("proj.git");
        for sub in ["objects", "refs", "hooks"] {
            fs::create_dir_all(bare.join(sub)).unwrap();
        }
        fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let workspace_write = managed(&[(":root", Access::Read), (":cwd", Access::Write)]);
        for cwd in [bare.clone(), bare.join("hooks")] {
            let error = ResolvedPolicy::resolve(&workspace_write, &SandboxContext::new(&cwd))
                .err()
                .unwrap();
            assert!(
                matches!(&error, SandboxError::GitDirectoryWorkingDirectory { git_dir, .. } if *git_dir == bare),
                "{error}"
            );
        }
        let read_only = managed(&[(":root", Access::Read), (":cwd", Access::Read)]);
        assert!(ResolvedPolicy::resolve(&read_only, &SandboxContext::new(&bare)).is_ok());
        // A work tree, a worktree kept inside the bare repository (review
        // 40: `git worktree add main` there), and a directory with only
        // some of a git directory's parts, are not one.
        fs::create_dir_all(bare.join("main")).unwrap();
        fs::write(bare.join("main/.git"), "gitdir: ../worktrees/main\n").unwrap();
        assert!(
            ResolvedPolicy::resolve(&workspace_write, &SandboxContext::new(bare.join("main")))
                .is_ok()
        );
        fs::create_dir_all(root.join("tree/.git")).unwrap();
        fs::create_dir_all(root.join("notes/refs")).unwrap();
        fs::write(root.join("notes/HEAD"), "").unwrap();
        for cwd in ["tree", "notes"] {
            assert!(ResolvedPolicy::resolve(
                &workspace_write,
                &SandboxContext::new(root.join(cwd))
            )
            .is_ok());
        }
    }

    /// The working directory must be visible, and no deny glob may match
    /// it: a person at the terminal found the shell started in a directory
    /// `**/secret` matched, where even `ls` was refused.
    #[test]
    fn a_working_directory_is_checked_for_visibility_and_against_deny_globs() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("ws/secrets/sub")).unwrap();
        fs::create_dir_all(root.join("ws/public")).unwrap();
        // Relative globs apply under writable roots: the workspace is one.
        let workspace = root.join("ws");
        let policy_in = |cwd: &Path, glob: &str| {
            ResolvedPolicy::resolve(
                &managed(&[
                    (":minimal", Access::Read),
                    (":cwd", Access::Write),
                    (workspace.to_str().unwrap(), Access::Write),
                    (glob, Access::None),
                ]),
                &SandboxContext::new(cwd),
            )
            .unwrap()
        };
        // (working directory, deny glob, refused)
        let cases = [
            ("ws/public", "**/secrets/**", false),
            ("ws/public", "*.env", false),
            ("ws/secrets/sub", "**/secrets/**", true),
            ("ws/secrets", "**/secrets", true),
            ("ws/secrets", "secret*", true),
            ("ws/secrets/sub", "*.env", false),
        ];
        for (cwd, glob, refused) in cases {
            let cwd = root.join(cwd);
            let checked = policy_in(&cwd, glob).check_working_directory(&cwd);
            match refused {
                true => assert!(
                    matches!(checked, Err(SandboxError::DeniedWorkingDirectory { .. })),
                    "{cwd:?} {glob}: {checked:?}"
                ),
                false => assert!(checked.is_ok(), "{cwd:?} {glob}: {checked:?}"),
            }
        }
        let inside = root.join("ws/secrets/sub");
        let error = policy_in(&inside, "*.env")
            .check_working_directory(&root)
            .unwrap_err();
        assert!(
            matches!(error, SandboxError::HiddenWorkingDirectory(_)),
            "{error}"
        );
    }

    #[test]
    fn protected_names_stay_read_only_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join(".git/hooks")).unwrap();
        fs::create_dir_all(root.join(".execgate")).unwrap();
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(root.join("elsewhere/gitdir")).unwrap();
        fs::write(root.join("sub/.git"), "gitdir: ../elsewhere/gitdir\n").unwrap();
        let policy = ResolvedPolicy::resolve(
            &managed(&[(":root", Access::Read), (":cwd", Access::Write)]),
            &SandboxContext::new(&root),
        )
        .unwrap();
        assert!(policy.can_write(&root.join("file")));
        assert!(!policy.can_write(&root.join(".git/hooks/pre-commit")));
        assert!(!policy.can_write(&root.join(".execgate/x")));
        // Not there at resolution: nothing to protect (see the README's gaps).
        assert!(policy.can_write(&root.join(".agents/x")));
        // Only directly under a writable root.
        assert!(policy.can_write(&root.join("sub/.git")));

        // A linked worktree: the pointer file and the directory it names.
        let worktree = ResolvedPolicy::resolve(
            &managed(&[(":root", Access::Read), (":cwd", Access::Write)]),
            &SandboxContext::new(root.join("sub")),
        )
        .unwrap();
        assert!(!worktree.can_write(&root.join("sub/.git")));
        assert!(worktree.can_write(&root.join("sub/file")));
        let with_gitdir = ResolvedPolicy::resolve(
            &managed(&[
                (":root", Access::Read),
                (":cwd", Access::Write),
                (root.join("elsewhere").to_str().unwrap(), Access::Write),
            ]),
            &SandboxContext::new(root.join("sub")),
        )
        .unwrap();
        assert!(!with_gitdir.can_write(&root.join("elsewhere/gitdir/config")));
        assert!(with_gitdir.can_write(&root.join("elsewhere/other")));
        // Probe 131: a worktree's gitdir names the repository whose hooks
        // and config it shares (`commondir`): kept read-only too.
        fs::create_dir_all(root.join("elsewhere/main.git/hooks")).unwrap();
        fs::write(root.join("elsewhere/gitdir/commondir"), "../main.git\n").unwrap();
        let with_common = ResolvedPolicy::resolve(
            &managed(&[
                (":root", Access::Read),
                (":cwd", Access::Write),
                (root.join("elsewhere").to_str().unwrap(), Access::Write),
            ]),
            &SandboxContext::new(root.join("sub")),
        )
        .unwrap();
        assert!(!with_common.can_write(&root.join("elsewhere/main.git/hooks/pre-commit")));
        assert!(with_common.can_write(&root.join("elsewhere/other")));

        let git = root.join(".git");
        let explicit = managed(&[
            (":root", Access::Read),
            (":cwd", Access::Write),
            (git.to_str().unwrap(), Access::Write),
        ]);
        let policy = ResolvedPolicy::resolve(&explicit, &SandboxContext::new(&root)).unwrap();
        assert!(policy.can_write(&root.join(".git/config")));

        // A `.git` link: no directory to mount read-only, so no sandbox
        // (a probe wrote hooks through one, others replaced it or made
        // what it led to).
        let linked = root.join("linked");
        fs::create_dir_all(linked.join("repo.git/hooks")).unwrap();
        std::os::unix::fs::symlink("repo.git", linked.join(".git")).unwrap();
        let refused = ResolvedPolicy::resolve(
            &managed(&[(":root", Access::Read), (":cwd", Access::Write)]),
            &SandboxContext::new(&linked),
        );
        assert!(
            matches!(&refused, Err(SandboxError::ProtectedNameIsLink { path, .. })
                if *path == linked.join(".git")),
            "{refused:?}"
        );
        // In another writable root (a shared temporary directory, where
        // anyone may put one) it is left as it was.
        let elsewhere = ResolvedPolicy::resolve(
            &managed(&[
                (":root", Access::Read),
                (":cwd", Access::Write),
                (linked.to_str().unwrap(), Access::Write),
            ]),
            &SandboxContext::new(&root),
        );
        assert!(elsewhere.is_ok(), "{elsewhere:?}");
    }

    #[test]
    fn deny_globs_are_expanded_and_queried() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("a/b")).unwrap();
        for file in [".env", "a/b/prod.env", "a/keep.txt"] {
            fs::write(root.join(file), "x").unwrap();
        }
        let policy = ResolvedPolicy::resolve(
            &managed(&[
                (":root", Access::Read),
                (":cwd", Access::Write),
                ("**/*.env", Access::None),
            ]),
            &SandboxContext::new(&root),
        )
        .unwrap();
        assert_eq!(
            policy.denied_files(),
            [root.join(".env"), root.join("a/b/prod.env")]
        );
        assert!(!policy.can_read(&root.join("a/b/prod.env")));
        assert!(!policy.can_read(&root.join("later/new.env")));
        assert!(policy.can_read(&root.join("a/keep.txt")));
        // Denied reads do not hide what the sandbox could have written.
        assert!(!policy.can_write(&root.join("later/new.env")));
        assert!(policy.may_write(&root.join("later/new.env")));
        assert!(!policy.may_write(&root.join("a/b/prod.env")));
    }

    #[test]
    fn absolute_deny_globs_outside_writable_roots_are_expanded() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let (ws, secrets) = (root.join("ws"), root.join("secrets"));
        fs::create_dir_all(&ws).unwrap();
        fs::create_dir_all(secrets.join("deep")).unwrap();
        for file in ["deep/id.key", "notes.txt"] {
            fs::write(secrets.join(file), "x").unwrap();
        }
        let glob = format!("{}/**/*.key", secrets.display());
        let policy = ResolvedPolicy::resolve(
            &managed(&[
                (":root", Access::Read),
                (":cwd", Access::Write),
                (glob.as_str(), Access::None),
            ]),
            &SandboxContext::new(&ws),
        )
        .unwrap();
        assert_eq!(policy.denied_files(), [secrets.join("deep/id.key")]);
        assert!(policy.can_read(&secrets.join("notes.txt")));
        assert_eq!(literal_base("/a/b*/c"), Some(PathBuf::from("/a")));
        assert_eq!(literal_base("**/*.env"), None);
        assert_eq!(literal_base("/**/*.key"), Some(PathBuf::from("/")));
    }

    #[test]
    fn a_glob_through_a_link_is_also_written_from_where_it_leads() {
        let dir = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(dir.path()).unwrap().join("real");
        fs::create_dir(&real).unwrap();
        let link = real.with_file_name("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let glob = format!("{}/sub/*.pem", link.display());
        assert_eq!(
            glob_at_real_start(&glob),
            Some(format!("{}/sub/*.pem", real.display()))
        );
        assert_eq!(
            glob_at_real_start(&format!("{}/*.pem", real.display())),
            None
        );
        assert_eq!(glob_at_real_start("**/*.pem"), None);
        assert_eq!(glob_at_real_start("/no/such/dir/*.pem"), None);
        // Made later below the link: found by its real path.
        let later = format!("{}/later/*.pem", link.display());
        assert_eq!(
            glob_at_real_start(&later),
            Some(format!("{}/later/*.pem", real.display()))
        );
    }

    #[test]
    fn too_many_glob_matches_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        for i in 0..=GLOB_MAX_MATCHES {
            fs::write(root.join(format!("{i}.key")), "").unwrap();
        }
        let error = ResolvedPolicy::resolve(
            &managed(&[(":cwd", Access::Write), ("*.key", Access::None)]),
            &SandboxContext::new(&root),
        )
        .unwrap_err();
        assert!(matches!(error, SandboxError::GlobLimit(_)), "{error}");
    }

    /// A probe found a relative glob applied under an absolute glob's
    /// start too: `*.cnf` beside `/etc/ssl/nothing*` hid
    /// `/etc/ssl/openssl.cnf`. Relative globs judge only what lies under
    /// the writable roots.
    #[test]
    fn relative_globs_stay_under_the_writable_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let (ws, outside) = (root.join("ws"), root.join("outside"));
        fs::create_dir(&ws).unwrap();
        fs::create_dir(&outside).unwrap();
        for file in [
            ws.join("a.cnf"),
            outside.join("b.cnf"),
            outside.join("nothing"),
        ] {
            fs::write(file, "").unwrap();
        }
        let absolute = format!("{}/nothing*", outside.display());
        let policy = ResolvedPolicy::resolve(
            &managed(&[
                (":root", Access::Read),
                (":cwd", Access::Write),
                ("*.cnf", Access::None),
                (&absolute, Access::None),
            ]),
            &SandboxContext::new(&ws),
        )
        .unwrap();
        assert!(!policy.can_read(&ws.join("a.cnf")));
        assert!(policy.can_read(&outside.join("b.cnf")));
        assert!(!policy.can_read(&outside.join("nothing")));
        assert_eq!(policy.relative_glob_roots(), std::slice::from_ref(&ws));
    }

    /// A probe planted `host.env -> /etc/hostname` in the shared temp
    /// dir: with `*.env` denied, every later sandbox failed to start
    /// (bubblewrap cannot cover a link's path), and `link.env ->
    /// readme.txt` hid `readme.txt`. Links are not covered.
    #[test]
    fn links_named_like_a_deny_glob_are_not_covered() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::write(root.join("readme.txt"), "").unwrap();
        fs::write(root.join("real.env"), "").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("host.env")).unwrap();
        std::os::unix::fs::symlink("readme.txt", root.join("link.env")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", root.join("gone.env")).unwrap();
        // A socket is covered, as a file is (a review found the first fix
        // skipping everything but regular files).
        let _socket = std::os::unix::net::UnixListener::bind(root.join("agent.env")).unwrap();
        let policy = ResolvedPolicy::resolve(
            &managed(&[
                (":root", Access::Read),
                (":cwd", Access::Write),
                ("*.env", Access::None),
            ]),
            &SandboxContext::new(&root),
        )
        .unwrap();
        assert_eq!(
            policy.denied_files(),
            [root.join("agent.env"), root.join("real.env")]
        );
        assert!(policy.can_read(&root.join("readme.txt")));
    }

    #[test]
    fn only_a_plausible_tmpdir_becomes_writable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let named = dir.path().join("my-tmp");
        std::fs::create_dir(&named).expect("mkdir");
        let templates = dir.path().join("templates");
        std::fs::create_dir(&templates).expect("mkdir");
        let canonical = std::fs::canonicalize(&named).expect("canonical");
        // (TMPDIR, what is taken)
        let cases = [
            (named.as_path(), Some(canonical.as_path())),
            (Path::new("/"), None),
            (templates.as_path(), None),
            (Path::new("/etc"), None),
            (Path::new("/root"), None),
            (Path::new("relative-tmp"), None),
            (Path::new("/nonexistent/tmp"), None),
        ];
        for (tmpdir, expected) in cases {
            assert_eq!(
                plausible_tmpdir(tmpdir).as_deref(),
                expected,
                "{}",
                tmpdir.display()
            );
        }
    }

    #[test]
    fn presets_resolve() {
        let context = SandboxContext::new("/tmp");
        let read_only =
            ResolvedPolicy::resolve(&PermissionProfile::preset("read-only").unwrap(), &context)
                .unwrap();
        assert!(read_only.can_read(Path::new("/etc/passwd")));
        assert!(!read_only.can_write(Path::new("/tmp/x")));
        let workspace = ResolvedPolicy::resolve(
            &PermissionProfile::preset("workspace-write").unwrap(),
            &context,
        )
        .unwrap();
        assert!(workspace.can_write(Path::new("/tmp/x")));
        assert!(!workspace.can_write(Path::new("/etc/x")));
        assert!(ResolvedPolicy::resolve(&PermissionProfile::Disabled, &context).is_err());
    }
}
