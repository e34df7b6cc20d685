//! The environment an escalated child gets.
//!
//! The requester's environment is untrusted: anything in the sandbox can set
//! a variable that makes an escalated program load or run code of its
//! choosing. Such variables are removed (the list below is the reference;
//! README.md's security model summarizes it), the session's own plumbing is
//! removed, and `PATH` is replaced by the session's escalation `PATH`, so
//! that an escalated program that runs others by name cannot be pointed at
//! binaries planted in a directory the sandbox can write.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Variables removed by exact name.
const REMOVED_NAMES: &[&str] = &[
    // Shell start-up and behaviour.
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PROMPT_COMMAND",
    "PS4",
    "IFS",
    "CDPATH",
    "ZDOTDIR",
    // git: configuration and helpers that run commands.
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_EXEC_PATH",
    "GIT_TEMPLATE_DIR",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "GIT_EDITOR",
    "GIT_PAGER",
    "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND",
    "GIT_SEQUENCE_EDITOR",
    // Programs other programs run on the user's behalf.
    "PAGER",
    "MANPAGER",
    "EDITOR",
    "VISUAL",
    "BROWSER",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "LESSOPEN",
    "LESSCLOSE",
    // Interpreters' module paths and start-up hooks.
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5LIB",
    "PERLLIB",
    "PERL5OPT",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    // The C library's loader and locale machinery.
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCPATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "TERMINFO",
    "TERMINFO_DIRS",
];

/// Variables removed by prefix.
const REMOVED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "BASH_FUNC_",
    "GIT_CONFIG",
    "MALLOC_",
    // The session's own plumbing: an escalated child is outside the session.
    "EXECGATE_",
];

/// True when `name` is removed from an escalated child's environment.
pub fn is_injection_variable(name: &OsStr) -> bool {
    let name = name.as_bytes();
    REMOVED_NAMES
        .iter()
        .any(|removed| name == removed.as_bytes())
        || REMOVED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix.as_bytes()))
}

/// Builds an escalated child's environment from the requester's entries.
pub(crate) fn escalated_environment(requested: &[OsString], path: &OsStr) -> Vec<OsString> {
    let mut env: Vec<OsString> = requested
        .iter()
        .filter(|entry| {
            let bytes = entry.as_bytes();
            let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
                // Not a variable at all; nothing reads it, drop it.
                return false;
            };
            let name = OsStr::from_bytes(&bytes[..eq]);
            name.as_bytes() != b"PATH" && !is_injection_variable(name)
        })
        .cloned()
        .collect();
    let mut path_entry = OsString::from("PATH=");
    path_entry.push(path);
    env.push(path_entry);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_injection_variables_and_replaces_path() {
        let requested: Vec<OsString> = [
            "HOME=/root",
            "LD_PRELOAD=/tmp/evil.so",
            "LD_LIBRARY_PATH=/tmp",
            "BASH_ENV=/tmp/rc",
            "BASH_FUNC_ls%%=() { evil; }",
            "GIT_CONFIG_COUNT=1",
            "GIT_CONFIG_KEY_0=core.fsmonitor",
            "GIT_CONFIG_PARAMETERS='alias.x=!sh'",
            "GIT_SSH_COMMAND=evil",
            "PYTHONPATH=/tmp",
            "NODE_OPTIONS=--require /tmp/x.js",
            "EXECGATE_SOCKET_FD=64",
            "PATH=/tmp/planted:/usr/bin",
            "LANG=C.UTF-8",
            "NO_EQUALS",
            "GIT_AUTHOR_NAME=someone",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let env = escalated_environment(&requested, OsStr::new("/usr/bin:/bin"));
        let expected: Vec<OsString> = [
            "HOME=/root",
            "LANG=C.UTF-8",
            "GIT_AUTHOR_NAME=someone",
            "PATH=/usr/bin:/bin",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(env, expected);
    }
}
