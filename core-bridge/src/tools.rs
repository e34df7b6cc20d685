//! Finding the programs a session needs: the patched zsh, the exec wrapper
//! and the sandbox helper.

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

impl Tools {
    /// Finds the tools from environment overrides, else beside `exe` (the
    /// running binary): the wrapper and helper in the same directory, the
    /// patched zsh where `scripts/build-zsh.sh` puts it relative to a cargo
    /// target directory (`target/zsh/bin/zsh` for `target/debug/execgate`).
    pub fn locate_from(exe: &Path) -> Result<Tools, BridgeError> {
        let dir = exe.parent().unwrap_or(Path::new("/"));
        let pick = |variable: &str, default: PathBuf| {
            std::env::var_os(variable).map_or(default, PathBuf::from)
        };
        let zsh = pick(ENV_ZSH, dir.join("../zsh/bin/zsh"));
        let tools = Tools {
            zsh: clean(&zsh),
            wrapper: clean(&pick(ENV_WRAPPER_BINARY, dir.join("execgate-exec-wrapper"))),
            sandbox_helper: clean(&pick(
                ENV_SANDBOX_HELPER,
                dir.join("execgate-sandbox-helper"),
            )),
        };
        if !tools.zsh.is_file() {
            return Err(BridgeError::NoZsh(tools.zsh));
        }
        for path in [&tools.wrapper, &tools.sandbox_helper] {
            if !path.is_file() {
                return Err(BridgeError::MissingTool(path.clone()));
            }
        }
        Ok(tools)
    }

    /// [`Tools::locate_from`] the running binary.
    pub fn locate() -> Result<Tools, BridgeError> {
        let exe = std::env::current_exe().map_err(|error| BridgeError::Io {
            what: "cannot find the running binary".into(),
            source: error,
        })?;
        Tools::locate_from(&exe)
    }
}

/// Absolute and without `..`, following symlinks where the path exists.
fn clean(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
