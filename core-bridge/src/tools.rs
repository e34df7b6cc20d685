//! Finding the programs a session needs: the patched zsh, the exec wrapper
//! and the sandbox helper.
//!
//! The order, first match wins:
//! 1. an environment override per tool (`EXECGATE_ZSH`, ...);
//! 2. the build tree: the wrapper and helper beside the running binary, the
//!    zsh where `scripts/build-zsh.sh` puts it (`target/zsh/bin/zsh` for
//!    `target/debug/execgate`);
//! 3. the installed layout: `../libexec/execgate/` relative to the binary
//!    (`/usr/bin/execgate` uses `/usr/libexec/execgate/`), with the zsh at
//!    `zsh/bin/zsh` there.
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
}

/// The directory of installed tools, relative to the binary's directory.
pub const INSTALLED_TOOLS_DIR: &str = "../libexec/execgate";

impl Tools {
    /// Finds the tools for the binary `exe`, in the order of the module doc.
    pub fn locate_from(exe: &Path) -> Result<Tools, BridgeError> {
        Tools::discover(exe, |name| std::env::var_os(name)).map(|located| located.tools)
    }

    /// [`Tools::locate_from`], saying which layout supplied the tools.
    /// `env` reads an override by name (`std::env::var_os` outside tests).
    pub fn discover(
        exe: &Path,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<LocatedTools, BridgeError> {
        let dir = exe.parent().unwrap_or(Path::new("/"));
        let installed = dir.join(INSTALLED_TOOLS_DIR);
        let layouts = [
            (
                ToolsOrigin::BuildTree,
                Tools {
                    zsh: dir.join("../zsh/bin/zsh"),
                    wrapper: dir.join("execgate-exec-wrapper"),
                    sandbox_helper: dir.join("execgate-sandbox-helper"),
                },
            ),
            (
                ToolsOrigin::Installed,
                Tools {
                    zsh: installed.join("zsh/bin/zsh"),
                    wrapper: installed.join("execgate-exec-wrapper"),
                    sandbox_helper: installed.join("execgate-sandbox-helper"),
                },
            ),
        ];
        let overrides = [ENV_ZSH, ENV_WRAPPER_BINARY, ENV_SANDBOX_HELPER].map(&env);
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
            });
        }
        let [zsh_override, wrapper_override, helper_override] = overrides;
        let mut first_problem = None;
        for (origin, layout) in layouts {
            let pick = |over: &Option<std::ffi::OsString>, default: &Path| {
                clean(over.as_deref().map_or(default, Path::new))
            };
            let tools = Tools {
                zsh: pick(&zsh_override, &layout.zsh),
                wrapper: pick(&wrapper_override, &layout.wrapper),
                sandbox_helper: pick(&helper_override, &layout.sandbox_helper),
            };
            match tools.check() {
                Ok(()) => return Ok(LocatedTools { tools, origin }),
                Err(problem) => {
                    first_problem.get_or_insert(problem);
                }
            }
        }
        // Every layout lacks something: name the build tree's missing tool
        // and where an installed one would be.
        Err(match first_problem {
            Some(BridgeError::NoZsh(path)) => BridgeError::NoTools {
                missing: path,
                installed: clean(&installed),
            },
            Some(BridgeError::MissingTool(path)) => BridgeError::NoTools {
                missing: path,
                installed: clean(&installed),
            },
            Some(other) => other,
            None => BridgeError::NoTools {
                missing: dir.to_path_buf(),
                installed: clean(&installed),
            },
        })
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
        Tools::discover(&exe, |name| std::env::var_os(name))
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

    fn no_env(_: &str) -> Option<std::ffi::OsString> {
        None
    }

    #[test]
    fn build_tree_is_preferred_to_the_installed_layout() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "usr/debug/execgate");
        file(&root, "usr/debug/execgate-exec-wrapper");
        file(&root, "usr/debug/execgate-sandbox-helper");
        file(&root, "usr/zsh/bin/zsh");
        file(&root, "usr/libexec/execgate/execgate-exec-wrapper");
        file(&root, "usr/libexec/execgate/execgate-sandbox-helper");
        file(&root, "usr/libexec/execgate/zsh/bin/zsh");
        let located = Tools::discover(&exe, no_env).unwrap();
        assert_eq!(located.origin, ToolsOrigin::BuildTree);
        assert_eq!(located.tools.zsh, root.join("usr/zsh/bin/zsh"));
    }

    #[test]
    fn installed_layout_is_found_relative_to_the_binary() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "usr/bin/execgate");
        file(&root, "usr/libexec/execgate/execgate-exec-wrapper");
        file(&root, "usr/libexec/execgate/execgate-sandbox-helper");
        file(&root, "usr/libexec/execgate/zsh/bin/zsh");
        let located = Tools::discover(&exe, no_env).unwrap();
        assert_eq!(
            located,
            LocatedTools {
                tools: Tools {
                    zsh: root.join("usr/libexec/execgate/zsh/bin/zsh"),
                    wrapper: root.join("usr/libexec/execgate/execgate-exec-wrapper"),
                    sandbox_helper: root.join("usr/libexec/execgate/execgate-sandbox-helper"),
                },
                origin: ToolsOrigin::Installed,
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
        let located = Tools::discover(&exe, no_env).unwrap();
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
        let located = Tools::discover(&exe, env).unwrap();
        assert_eq!(located.origin, ToolsOrigin::Installed);
        assert_eq!(located.tools.zsh, other_zsh);
    }

    #[test]
    fn nothing_found_names_both_places() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let exe = file(&root, "usr/bin/execgate");
        let error = Tools::discover(&exe, no_env).unwrap_err().to_string();
        assert!(error.contains(&root.join("usr/zsh/bin/zsh").display().to_string()));
        assert!(error.contains("libexec/execgate"), "{error}");
    }
}
