//! Finding the programs a session needs: the patched zsh, the exec wrapper
//! and the sandbox helper.
//!
//! The order, first match wins:
//! 1. an environment override per tool (`EXECGATE_ZSH`, ...);
//! 2. the build tree: the wrapper and helper beside the running binary, the
//!    zsh where `scripts/build-zsh.sh` puts it (`target/zsh/bin/zsh` for
//!    `target/debug/execgate`). The static musl builds of the wrapper and
//!    helper (`scripts/build-wrapper`, in
//!    `target/x86_64-unknown-linux-musl/release/`) are taken instead of the
//!    ones beside the binary when they were built from the same sources:
//!    each binary carries the key of its sources (`exec-wrapper/tools_key.rs`)
//!    after its tool's name (`execgate-tools-key:wrapper:`), checked here,
//!    when the tools are located; a stale one is passed over, not paired
//!    with a newer `execgate`, and an override naming the other tool, of
//!    any build, is refused;
//! 3. the installed layout: `../libexec/execgate/` relative to the binary
//!    (`/usr/bin/execgate` uses `/usr/libexec/execgate/`), with the zsh at
//!    `zsh/bin/zsh` there;
//! 4. the package's own place, `/usr/libexec/execgate/`: an agent that
//!    embeds this library runs from wherever its author put it.
//!
//! A layout is taken only when every tool it must supply is there: mixing a
//! build tree's wrapper with an installed zsh would pair parts of two
//! different builds.

use std::path::{Path, PathBuf};

use crate::BridgeError;

/// The three programs a session runs, by absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub zsh: PathBuf,
    pub wrapper: PathBuf,
    pub sandbox_helper: PathBuf,
}

/// Overrides, checked first.
pub const ENV_ZSH: &str = "EXECGATE_ZSH";
pub const ENV_WRAPPER_BINARY: &str = "EXECGATE_WRAPPER_BINARY";
pub const ENV_SANDBOX_HELPER: &str = "EXECGATE_SANDBOX_HELPER";

/// Where the tools of a lookup came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolsOrigin {
    /// Every tool was named by an environment override.
    Environment,
    /// A cargo target directory: beside the binary.
    BuildTree,
    /// A package: `../libexec/execgate/` relative to the binary.
    Installed,
}

impl ToolsOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolsOrigin::Environment => "environment",
            ToolsOrigin::BuildTree => "build tree",
            ToolsOrigin::Installed => "installed",
        }
    }
}

/// A successful lookup: the tools and which layout supplied them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedTools {
    pub tools: Tools,
    /// The layout of the tools not overridden (`Environment` when all were).
    pub origin: ToolsOrigin,
    /// The wrapper or helper an override takes from another build of
    /// execgate, with the variable that names it: parts of two builds,
    /// which a caller should warn of. Found by
    /// [`Tools::locate_with_origin`]; [`Tools::discover`] leaves it empty.
    pub from_other_builds: Vec<(&'static str, PathBuf)>,
}

/// The directory of installed tools, relative to the binary's directory.
pub const INSTALLED_TOOLS_DIR: &str = "../libexec/execgate";

/// Where the Debian package installs the tools.
pub const PACKAGE_TOOLS_DIR: &str = "/usr/libexec/execgate";

/// Where `scripts/build-wrapper` leaves the static musl builds, relative to
/// a build tree's binary directory (`target/debug`, `target/release`).
const FAST_BUILD_DIR: &str = "../x86_64-unknown-linux-musl/release";

/// The keys of the sources of this build's wrapper and helper, as their
/// binaries carry them.
const WRAPPER_KEY: &str = env!("EXECGATE_WRAPPER_TOOLS_KEY");
const HELPER_KEY: &str = env!("EXECGATE_HELPER_TOOLS_KEY");

/// The build tree's `name`: the fast build's when it carries `key`, else
/// the one beside the binary.
fn build_tree_tool(dir: &Path, name: &str, key: &str) -> PathBuf {
    let fast = dir.join(FAST_BUILD_DIR).join(name);
    if carries_key(&fast, key) {
        fast
    } else {
        dir.join(name)
    }
}

/// What the patched zsh carries that no other program does: the patch's
/// own message, its format compiled in. Kept reversed: written as it reads,
/// every binary that links this crate would carry it too (two halves were
/// stored side by side).
fn zsh_patch_marker() -> String {
    "e% :s% repparw cexe eht nur tonnac :etagcexe"
        .chars()
        .rev()
        .collect()
}

/// What every build's key starts with: a file without it is no build's
/// wrapper or helper.
fn tools_key_marker() -> &'static str {
    WRAPPER_KEY
        .find(':')
        .map_or(WRAPPER_KEY, |colon| &WRAPPER_KEY[..=colon])
}

/// What every build's key of the tool `key` keys starts with: the marker
/// and the tool's name (`execgate-tools-key:wrapper:`).
fn tool_key_marker(key: &str) -> &str {
    key.rfind(':').map_or(key, |colon| &key[..=colon])
}

/// Whether the file at `path` carries `key` (reading it whole).
fn carries_key(path: &Path, key: &str) -> bool {
    std::fs::read(path).is_ok_and(|bytes| holds_key(&bytes, key))
}

fn holds_key(bytes: &[u8], key: &str) -> bool {
    memchr::memmem::find(bytes, key.as_bytes()).is_some()
}

/// What an override names, for the tool this build keys `key`.
#[derive(Debug, Clone, Copy)]
enum Maker {
    /// This build's tool.
    This,
    /// Another build's: it carries some build's key.
    Another,
    /// Not the tool: why.
    Not(&'static str),
}

/// The other tool, as a reason to refuse it: this build's and another's.
struct OtherTool {
    key: &'static str,
    this_builds: &'static str,
    another_builds: &'static str,
}

impl OtherTool {
    /// The tool other than the one this build keys `key`.
    fn than(key: &str) -> OtherTool {
        match key {
            WRAPPER_KEY => OtherTool {
                key: HELPER_KEY,
                this_builds: "it is this build's sandbox helper",
                another_builds: "it is another build's sandbox helper",
            },
            _ => OtherTool {
                key: WRAPPER_KEY,
                this_builds: "it is this build's exec wrapper",
                another_builds: "it is another build's exec wrapper",
            },
        }
    }
}

/// A file's identity, as far as a verdict on what it holds is kept: its
/// change time too (a writer can set the modification time back, not
/// that).
type Identity = (u64, u64, u64, i64, i64, i64, i64);

/// `judge` of the file at `path`, remembered in `last` while the file
/// there stays the same (reading a tool whole takes milliseconds, and
/// every session start asks); `None` when there is no file to judge.
fn judged<T: Copy>(
    last: &std::sync::Mutex<Option<(PathBuf, Identity, T)>>,
    path: &Path,
    judge: impl FnOnce(&Path) -> T,
) -> Option<T> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok().filter(|meta| meta.is_file())?;
    let identity = (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    );
    let mut last = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*last {
        Some((known_path, known, verdict)) if known_path == path && *known == identity => {
            Some(*verdict)
        }
        _ => {
            let verdict = judge(path);
            *last = Some((path.to_path_buf(), identity, verdict));
            Some(verdict)
        }
    }
}

/// What the file at `path` is (reading it once), for the tool this build
/// keys `key`, whose other tool is `other`.
fn made_by(path: &Path, key: &str, other: &OtherTool) -> Maker {
    let Ok(bytes) = std::fs::read(path) else {
        return Maker::Not("no build of execgate made it");
    };
    let carries = |key: &str| holds_key(&bytes, key);
    let tool = |key| carries(tool_key_marker(key));
    match (tool(key), tool(other.key)) {
        // Only what links execgate's library carries both tools' keys.
        (true, true) => {
            Maker::Not("it is a program built with execgate's library, such as execgate itself")
        }
        (true, false) if carries(key) => Maker::This,
        (true, false) => Maker::Another,
        (false, true) if carries(other.key) => Maker::Not(other.this_builds),
        (false, true) => Maker::Not(other.another_builds),
        // A build from before keys named their tool: it can only be taken
        // at its word.
        (false, false) if carries(tools_key_marker()) => Maker::Another,
        (false, false) => Maker::Not("no build of execgate made it"),
    }
}

impl Tools {
    /// Finds the tools for the binary `exe`, in the order of the module doc.
    pub fn locate_from(exe: &Path) -> Result<Tools, BridgeError> {
        let env = |name: &str| std::env::var_os(name);
        let located = Tools::discover(exe, env)?;
        located.tools.check_overrides_with(env)?;
        Ok(located.tools)
    }

    /// [`Tools::locate_from`], saying which layout supplied the tools.
    /// `env` reads an override by name (`std::env::var_os` outside tests).
    pub fn discover(
        exe: &Path,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<LocatedTools, BridgeError> {
        Tools::discover_with_package(exe, env, Path::new(PACKAGE_TOOLS_DIR))
    }

    /// [`Tools::discover`], with the package's place given (tests keep
    /// what this machine has installed out of their lookups).
    fn discover_with_package(
        exe: &Path,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
        package: &Path,
    ) -> Result<LocatedTools, BridgeError> {
        let dir = exe.parent().unwrap_or(Path::new("/"));
        let installed = dir.join(INSTALLED_TOOLS_DIR);
        let installed_in = |root: &Path| Tools {
            zsh: root.join("zsh/bin/zsh"),
            wrapper: root.join("execgate-exec-wrapper"),
            sandbox_helper: root.join("execgate-sandbox-helper"),
        };
        // Each with the installation's directory, where it is one.
        let layouts = [
            (
                ToolsOrigin::BuildTree,
                Tools {
                    zsh: dir.join("../zsh/bin/zsh"),
                    wrapper: build_tree_tool(dir, "execgate-exec-wrapper", WRAPPER_KEY),
                    sandbox_helper: build_tree_tool(dir, "execgate-sandbox-helper", HELPER_KEY),
                },
                None,
            ),
            (
                ToolsOrigin::Installed,
                installed_in(&installed),
                Some(clean(&installed)),
            ),
            (
                ToolsOrigin::Installed,
                installed_in(package),
                Some(clean(package)),
            ),
        ];
        let overrides = [ENV_ZSH, ENV_WRAPPER_BINARY, ENV_SANDBOX_HELPER].map(&env);
        // Named by the variable that named it, not as a layout's.
        for (variable, path) in [ENV_ZSH, ENV_WRAPPER_BINARY, ENV_SANDBOX_HELPER]
            .into_iter()
            .zip(&overrides)
        {
            if let Some(path) = path.as_deref().map(Path::new) {
                if !path.exists() {
                    return Err(BridgeError::NoOverriddenTool {
                        variable,
                        path: path.to_path_buf(),
                    });
                }
            }
        }
        if let [Some(zsh), Some(wrapper), Some(sandbox_helper)] = &overrides {
            let tools = Tools {
                zsh: clean(Path::new(zsh)),
                wrapper: clean(Path::new(wrapper)),
                sandbox_helper: clean(Path::new(sandbox_helper)),
            };
            tools.check()?;
            return Ok(LocatedTools {
                tools,
                origin: ToolsOrigin::Environment,
                from_other_builds: Vec::new(),
            });
        }
        let [zsh_override, wrapper_override, helper_override] = overrides;
        let mut first_problem = None;
        // An installation's directory that is there, with something missing
        // from it: the one to name (not the build tree's advice).
        let mut broken_installation = None;
        for (origin, layout, installation) in layouts {
            let pick = |over: &Option<std::ffi::OsString>, default: &Path| {
                clean(over.as_deref().map_or(default, Path::new))
            };
            let tools = Tools {
                zsh: pick(&zsh_override, &layout.zsh),
                wrapper: pick(&wrapper_override, &layout.wrapper),
                sandbox_helper: pick(&helper_override, &layout.sandbox_helper),
            };
            match tools.check() {
                Ok(()) => {
                    return Ok(LocatedTools {
                        tools,
                        origin,
                        from_other_builds: Vec::new(),
                    })
                }
                Err(problem) => {
                    if let (
                        Some(dir),
                        None,
                        BridgeError::NoZsh(missing) | BridgeError::MissingTool(missing),
                    ) = (&installation, &broken_installation, &problem)
                    {
                        if dir.is_dir() {
                            broken_installation = Some(BridgeError::IncompleteInstallation {
                                missing: missing.clone(),
                                installation: dir.clone(),
                            });
                        }
                    }
                    first_problem.get_or_insert(problem);
                }
            }
        }
        if let Some(broken) = broken_installation {
            return Err(broken);
        }
        // Every layout lacks something: name the build tree's missing tool
        // and where an installed one would be.
        Err(match first_problem {
            Some(BridgeError::NoZsh(path)) => BridgeError::NoTools {
                missing: path,
                installed: clean(&installed),
                package: clean(package),
            },
            Some(BridgeError::MissingTool(path)) => BridgeError::NoTools {
                missing: path,
                installed: clean(&installed),
                package: clean(package),
            },
            Some(other) => other,
            None => BridgeError::NoTools {
                missing: dir.to_path_buf(),
                installed: clean(&installed),
                package: clean(package),
            },
        })
    }

    /// Whether `zsh` is the patched one, which asks before every program
    /// it runs: any other shell runs them all unasked. Reads the file (6
    /// MiB, a few milliseconds) once per process while it stays the same
    /// file: every session start asks.
    pub fn zsh_is_patched(&self) -> bool {
        static LAST_READ: std::sync::Mutex<Option<(PathBuf, Identity, bool)>> =
            std::sync::Mutex::new(None);
        judged(&LAST_READ, &self.zsh, |zsh| {
            carries_key(zsh, &zsh_patch_marker())
        })
        .unwrap_or(false)
    }

    /// Refuses a wrapper or helper that no build of execgate made as that
    /// tool, whoever named it (probe 198: a hand-built `Tools` with
    /// `/bin/true` as the helper ran nothing, and every command "exited
    /// 0"). One of another build passes, as for an override.
    pub(crate) fn check_made(&self) -> Result<(), BridgeError> {
        static LAST_WRAPPER: std::sync::Mutex<Option<(PathBuf, Identity, Maker)>> =
            std::sync::Mutex::new(None);
        static LAST_HELPER: std::sync::Mutex<Option<(PathBuf, Identity, Maker)>> =
            std::sync::Mutex::new(None);
        let tools = [
            (&self.wrapper, WRAPPER_KEY, "exec wrapper", &LAST_WRAPPER),
            (
                &self.sandbox_helper,
                HELPER_KEY,
                "sandbox helper",
                &LAST_HELPER,
            ),
        ];
        for (path, key, what, last) in tools {
            let judged = judged(last, path, |path| made_by(path, key, &OtherTool::than(key)));
            // Named by the caller: not "missing from beside this binary".
            let not_a_file = || match path.exists() {
                true => Maker::Not("it is not a file"),
                false => Maker::Not("nothing is there"),
            };
            match judged.unwrap_or_else(not_a_file) {
                Maker::Not(why) => {
                    return Err(BridgeError::NotTheTool {
                        path: path.clone(),
                        what,
                        why,
                    })
                }
                Maker::This | Maker::Another => {}
            }
        }
        Ok(())
    }

    /// Whether the wrapper was built from this build's sources.
    pub fn wrapper_is_current(&self) -> bool {
        carries_key(&self.wrapper, WRAPPER_KEY)
    }

    /// Whether the sandbox helper was built from this build's sources.
    pub fn sandbox_helper_is_current(&self) -> bool {
        carries_key(&self.sandbox_helper, HELPER_KEY)
    }

    /// Every tool is a file.
    fn check(&self) -> Result<(), BridgeError> {
        if !self.zsh.is_file() {
            return Err(BridgeError::NoZsh(self.zsh.clone()));
        }
        for path in [&self.wrapper, &self.sandbox_helper] {
            if !path.is_file() {
                return Err(BridgeError::MissingTool(path.clone()));
            }
        }
        Ok(())
    }

    /// [`Tools::locate_from`] the running binary.
    pub fn locate() -> Result<Tools, BridgeError> {
        Tools::locate_with_origin().map(|located| located.tools)
    }

    /// [`Tools::discover`] for the running binary and the real environment.
    pub fn locate_with_origin() -> Result<LocatedTools, BridgeError> {
        let exe = std::env::current_exe().map_err(|error| BridgeError::Io {
            what: "cannot find the running binary".into(),
            source: error,
        })?;
        let mut located = Tools::discover(&exe, |name| std::env::var_os(name))?;
        located.from_other_builds = located.tools.check_overrides()?;
        Ok(located)
    }

    /// Refuses a wrapper or helper an override names that no build of
    /// execgate made (a probe's `/usr/bin/true` as the helper ran nothing
    /// and exited 0). One of another build passes, returned with the
    /// variable that names it: comparing builds is what an override is
    /// for (`scripts/bench-files`). The zsh is checked as every session
    /// checks it (patched or not).
    pub fn check_overrides(&self) -> Result<Vec<(&'static str, PathBuf)>, BridgeError> {
        self.check_overrides_with(|name| std::env::var_os(name))
    }

    /// [`Tools::check_overrides`], with `env` reading the overrides.
    fn check_overrides_with(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Vec<(&'static str, PathBuf)>, BridgeError> {
        let mut from_other_builds = Vec::new();
        for (variable, path, key, what) in self.overridden(env) {
            match made_by(path, key, &OtherTool::than(key)) {
                Maker::This => {}
                Maker::Another => from_other_builds.push((variable, path.clone())),
                Maker::Not(why) => {
                    return Err(BridgeError::ForeignTool {
                        variable,
                        path: path.clone(),
                        what,
                        why,
                    })
                }
            }
        }
        Ok(from_other_builds)
    }

    /// The wrapper and helper, where `env` overrides them: the variable,
    /// the path, the key of this build's tool and what it is.
    fn overridden(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> impl Iterator<Item = (&'static str, &PathBuf, &'static str, &'static str)> {
        [
            (
                ENV_WRAPPER_BINARY,
                &self.wrapper,
                WRAPPER_KEY,
                "exec wrapper",
            ),
            (
                ENV_SANDBOX_HELPER,
                &self.sandbox_helper,
                HELPER_KEY,
                "sandbox helper",
            ),
        ]
        .into_iter()
        .filter(move |(variable, ..)| env(variable).is_some())
    }

    /// The zsh's module and function directories (`PREFIX/lib/zsh`,
    /// `PREFIX/share/zsh`, where `scripts/build-zsh.sh` installs them), those
    /// that exist. zsh has their paths compiled in; a sandbox must let the
    /// shell read them whatever the profile (`:minimal` has only `/usr`).
    pub fn zsh_library_dirs(&self) -> Vec<PathBuf> {
        let Some(prefix) = self.zsh.parent().and_then(Path::parent) else {
            return Vec::new();
        };
        ["lib/zsh", "share/zsh"]
            .iter()
            .map(|relative| prefix.join(relative))
            .filter(|dir| dir.is_dir())
            .collect()
    }
}

/// Absolute and without `..`, following symlinks as far as the path
/// exists (a missing tool is named by where it would be).
fn clean(path: &Path) -> PathBuf {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return canonical;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => clean(parent).join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes `relative` (and its directories) under `root`, as a file.
    fn file(root: &Path, relative: &str) -> PathBuf {
        let path = root.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, b"").unwrap();
        path
    }

    /// Lays out a build tree under `root` (`usr/debug`, `usr/zsh`); its
    /// `execgate`.
    fn build_tree(root: &Path) -> PathBuf {
        file(root, "usr/debug/execgate-exec-wrapper");
        file(root, "usr/debug/execgate-sandbox-helper");
        file(root, "usr/zsh/bin/zsh");
        file(root, "usr/debug/execgate")
    }

    /// [`Tools::discover`] without what this machine has installed.
    fn discover(
        exe: &Path,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<LocatedTools, BridgeError> {
        Tools::discover_with_package(exe, env, Path::new("/nonexistent/execgate-package"))
    }

    /// From a probe: an agent embedding the library, built anywhere, did
    /// not find the package's tools in `/usr/libexec/execgate`.
    #[test]
    fn the_package_is_found_from_any_binary() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let package = root.join("usr/libexec/execgate");
        for tool in [
            "execgate-exec-wrapper",
            "execgate-sandbox-helper",
            "zsh/bin/zsh",
        ] {
            file(root, &format!("usr/libexec/execgate/{tool}"));
        }
        let exe = file(root, "home/agent/target/release/agent");
        let located = Tools::discover_with_package(&exe, no_env, &package).unwrap();
        assert_eq!(located.origin, ToolsOrigin::Installed);
        assert_eq!(located.tools.wrapper, package.join("execgate-exec-wrapper"));
    }

    fn no_env(_: &str) -> Option<std::ffi::OsString> {
        None
    }

    /// Probe 118: `EXECGATE_ZSH=/nonexistent` was reported as missing
    /// "from the build tree"; it is named by the variable that named it.
    #[test]
    fn an_override_that_names_nothing_is_named_by_its_variable() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = build_tree(&root);
        for variable in [ENV_ZSH, ENV_WRAPPER_BINARY, ENV_SANDBOX_HELPER] {
            let error = discover(&exe, |name| {
                (name == variable).then(|| "/nonexistent/tool".into())
            })
            .err()
            .unwrap()
            .to_string();
            assert!(
                error.starts_with(&format!(
                    "{variable} names /nonexistent/tool, which does not exist"
                )),
                "{error}"
            );
        }
    }

    /// From a probe of the package: with a tool gone from an installation,
    /// the message named a "build tree" under /usr and told a user to build
    /// the workspace. It names the installation and what to do now.
    #[test]
    fn an_incomplete_installation_is_named_as_one() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "usr/bin/execgate");
        file(&root, "usr/libexec/execgate/execgate-sandbox-helper");
        file(&root, "usr/libexec/execgate/zsh/bin/zsh");
        let error = discover(&exe, no_env).err().unwrap().to_string();
        assert!(
            error.contains(&format!(
                "installation in {} is incomplete: {} is missing",
                root.join("usr/libexec/execgate").display(),
                root.join("usr/libexec/execgate/execgate-exec-wrapper")
                    .display()
            )) && error.contains("reinstall the package"),
            "{error}"
        );
        // Nothing installed: the build tree's advice, as before.
        let bare = tempfile::tempdir().unwrap();
        let exe = file(bare.path(), "home/dev/target/debug/execgate");
        let error = discover(&exe, no_env).err().unwrap().to_string();
        assert!(error.contains("build the workspace"), "{error}");
    }

    #[test]
    fn build_tree_is_preferred_to_the_installed_layout() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = build_tree(&root);
        file(&root, "usr/libexec/execgate/execgate-exec-wrapper");
        file(&root, "usr/libexec/execgate/execgate-sandbox-helper");
        file(&root, "usr/libexec/execgate/zsh/bin/zsh");
        let located = discover(&exe, no_env).unwrap();
        assert_eq!(located.origin, ToolsOrigin::BuildTree);
        assert_eq!(located.tools.zsh, root.join("usr/zsh/bin/zsh"));
    }

    /// Makes `relative` under `root`, as a file holding `contents`.
    fn file_with(root: &Path, relative: &str, contents: &str) -> PathBuf {
        let path = file(root, relative);
        std::fs::write(&path, format!("\0ELF...{contents}...")).unwrap();
        path
    }

    #[test]
    fn the_fast_build_is_taken_only_when_built_from_the_same_sources() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "target/debug/execgate");
        file(&root, "target/debug/execgate-exec-wrapper");
        file(&root, "target/debug/execgate-sandbox-helper");
        file(&root, "target/zsh/bin/zsh");
        let fast = "target/x86_64-unknown-linux-musl/release";
        let stale = "execgate-tools-key:0000";
        // (wrapper's contents, helper's contents) → (fast wrapper, fast helper)
        let cases = [
            (None, None, false, false),
            (Some(WRAPPER_KEY), Some(HELPER_KEY), true, true),
            (Some(WRAPPER_KEY), None, true, false),
            (Some(stale), Some(HELPER_KEY), false, true),
            // Each carries the other's key: neither is this build's.
            (Some(HELPER_KEY), Some(WRAPPER_KEY), false, false),
        ];
        for (wrapper, helper, fast_wrapper, fast_helper) in cases {
            let _ = std::fs::remove_dir_all(root.join(fast));
            if let Some(key) = wrapper {
                file_with(&root, &format!("{fast}/execgate-exec-wrapper"), key);
            }
            if let Some(key) = helper {
                file_with(&root, &format!("{fast}/execgate-sandbox-helper"), key);
            }
            let tools = discover(&exe, no_env).unwrap().tools;
            let expected = |is_fast: bool, name: &str| {
                root.join(if is_fast { fast } else { "target/debug" })
                    .join(name)
            };
            let case = format!("{wrapper:?} {helper:?}");
            assert_eq!(
                tools.wrapper,
                expected(fast_wrapper, "execgate-exec-wrapper"),
                "{case}"
            );
            assert_eq!(tools.wrapper_is_current(), fast_wrapper, "{case}");
            assert_eq!(
                tools.sandbox_helper,
                expected(fast_helper, "execgate-sandbox-helper"),
                "{case}"
            );
            assert_eq!(tools.sandbox_helper_is_current(), fast_helper, "{case}");
        }
    }

    /// Review 121: an override naming this build's other tool, or a
    /// program built with this library (execgate itself), carries this
    /// build's key and was taken for the tool, or for another build's; each
    /// failed later with a confusing message. They are refused, saying what
    /// they are.
    #[test]
    fn an_override_is_judged_by_which_tool_of_which_build_it_is() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let other_wrapper = "execgate-tools-key:wrapper:0000";
        let other_helper = "execgate-tools-key:helper:0000";
        // A build from before keys named their tool.
        let older_build = "execgate-tools-key:0000";
        // (contents of the wrapper named, what the check says)
        let cases = [
            (vec![WRAPPER_KEY], Ok(false)),
            (vec![other_wrapper], Ok(true)),
            (vec![older_build], Ok(true)),
            (vec![HELPER_KEY], Err("this build's sandbox helper")),
            // Review 124: taken for another build's wrapper, it failed on
            // its arguments.
            (vec![other_helper], Err("another build's sandbox helper")),
            (vec![WRAPPER_KEY, HELPER_KEY], Err("execgate itself")),
            (vec![other_wrapper, other_helper], Err("execgate itself")),
            (vec!["no key"], Err("no build of execgate made it")),
        ];
        for (index, (keys, expected)) in cases.into_iter().enumerate() {
            let wrapper = file_with(&root, &format!("w{index}"), &keys.join(" "));
            let tools = Tools {
                zsh: root.join("zsh"),
                wrapper: wrapper.clone(),
                sandbox_helper: root.join("helper"),
            };
            let env = |name: &str| (name == ENV_WRAPPER_BINARY).then(|| wrapper.clone().into());
            match (tools.check_overrides_with(env), expected) {
                (Ok(others), Ok(another_build)) => {
                    assert_eq!(!others.is_empty(), another_build, "{keys:?}")
                }
                (Err(error), Err(why)) => {
                    assert!(error.to_string().contains(why), "{keys:?}: {error}")
                }
                (got, _) => panic!("{keys:?}: {got:?}"),
            }
        }
    }

    /// The lists the build scripts hash (`exec-wrapper/tools_sources.rs`).
    mod sources {
        #![allow(dead_code)]
        include!("../../exec-wrapper/tools_sources.rs");
        pub(super) const WRAPPER: &[&str] = WRAPPER_SOURCES;
        pub(super) const HELPER: &[&str] = HELPER_SOURCES;
    }

    /// The workspace crates (by directory) `package` is built from.
    fn workspace_crates_of(package: &str) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let root = root.canonicalize().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = std::process::Command::new(cargo)
            .args(["tree", "--offline", "--locked", "--prefix", "none"])
            .args(["--edges", "normal,build", "--package", package])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let prefix = format!("({}/", root.display());
        let mut crates: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| Some(line.split_once(&prefix)?.1.split_once(')')?.0.to_owned()))
            .collect();
        crates.sort();
        crates.dedup();
        crates
    }

    #[test]
    fn tools_keys_cover_every_workspace_crate_the_tools_use() {
        assert_eq!(
            workspace_crates_of("execgate-exec-wrapper"),
            sources::WRAPPER
        );
        assert_eq!(workspace_crates_of("execgate-sandbox"), sources::HELPER);
    }

    #[test]
    fn installed_layout_is_found_relative_to_the_binary() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "usr/bin/execgate");
        file(&root, "usr/libexec/execgate/execgate-exec-wrapper");
        file(&root, "usr/libexec/execgate/execgate-sandbox-helper");
        file(&root, "usr/libexec/execgate/zsh/bin/zsh");
        let located = discover(&exe, no_env).unwrap();
        assert_eq!(
            located,
            LocatedTools {
                tools: Tools {
                    zsh: root.join("usr/libexec/execgate/zsh/bin/zsh"),
                    wrapper: root.join("usr/libexec/execgate/execgate-exec-wrapper"),
                    sandbox_helper: root.join("usr/libexec/execgate/execgate-sandbox-helper"),
                },
                origin: ToolsOrigin::Installed,
                from_other_builds: Vec::new(),
            }
        );
    }

    #[test]
    fn incomplete_build_tree_is_not_mixed_with_the_installed_tools() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        // A build tree with a wrapper but no zsh next to a full install.
        let exe = file(&root, "usr/bin/execgate");
        file(&root, "usr/bin/execgate-exec-wrapper");
        file(&root, "usr/libexec/execgate/execgate-exec-wrapper");
        file(&root, "usr/libexec/execgate/execgate-sandbox-helper");
        file(&root, "usr/libexec/execgate/zsh/bin/zsh");
        let located = discover(&exe, no_env).unwrap();
        assert_eq!(located.origin, ToolsOrigin::Installed);
        assert_eq!(
            located.tools.wrapper,
            root.join("usr/libexec/execgate/execgate-exec-wrapper")
        );
    }

    #[test]
    fn overrides_come_first() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "usr/bin/execgate");
        file(&root, "usr/libexec/execgate/execgate-exec-wrapper");
        file(&root, "usr/libexec/execgate/execgate-sandbox-helper");
        file(&root, "usr/libexec/execgate/zsh/bin/zsh");
        let other_zsh = file(&root, "elsewhere/zsh");
        let env = |name: &str| (name == ENV_ZSH).then(|| other_zsh.clone().into_os_string());
        let located = discover(&exe, env).unwrap();
        assert_eq!(located.origin, ToolsOrigin::Installed);
        assert_eq!(located.tools.zsh, other_zsh);
    }

    #[test]
    fn nothing_found_names_both_places() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "usr/bin/execgate");
        let error = discover(&exe, no_env).unwrap_err().to_string();
        assert!(error.contains(&root.join("usr/zsh/bin/zsh").display().to_string()));
        assert!(error.contains("libexec/execgate"), "{error}");
    }
}
