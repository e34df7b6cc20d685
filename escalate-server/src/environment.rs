//! The environment an escalated child gets.
//!
//! The requester's environment is untrusted: anything in the sandbox can set
//! a variable that makes an escalated program load or run code of its
//! choosing. Such variables are removed (the list below is the reference;
//! README.md's security model summarizes it), the session's own plumbing is
//! removed, and `PATH` is replaced by the session's escalation `PATH`,
//! for a child that may do more than the session's sandbox (unsandboxed,
//! or with grants) without the directories the sandbox can write
//! ([`path_outside`]), so that an escalated program that runs others by
//! name cannot be pointed at binaries planted in one.
//!
//! A child in the session's own sandbox (`TurnDefault`) keeps the shell's
//! editors and pagers: what they start runs in that same sandbox.
//!
//! A child beyond the session's sandbox (unsandboxed, or with a profile's
//! or a skill's grants) gets less of the request: only the variables of
//! [`UNSANDBOXED_KEPT`]. The rest comes from the session's configured
//! escalation environment (the caller's own, shaped by its environment
//! policy; by default `HOME`, the XDG directories, `USER`, `LOGNAME`,
//! `SHELL` and `TMPDIR` of the server). Too many programs read
//! configuration, and so commands to run, from places a variable names
//! (`HOME=/work/h git status` reads `/work/h/.gitconfig`); a list of what to
//! remove cannot keep up.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use execgate_sandbox::ResolvedPolicy;

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
    "PYTHONUSERBASE",
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
    // Libraries' own configuration that names code to load: OpenSSL's
    // providers and engines (pip, curl, node through `nodejs_conf`).
    "OPENSSL_CONF",
    "OPENSSL_CONF_INCLUDE",
    "OPENSSL_MODULES",
    "OPENSSL_ENGINES",
    // Other libraries' modules and configuration with code in it.
    "KRB5_CONFIG",
    "SASL_PATH",
    "GIO_EXTRA_MODULES",
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

/// The editor a child beyond the sandbox gets from git: one that says why
/// it refuses. git runs it with `sh -c`, the file to edit after it.
pub(crate) const REFUSING_EDITOR: &str = "echo 'execgate: a program escalated out of the \
     sandbox starts no editor (the sandbox could type into it); give git the message with -m \
     or -F' >&2; false";

/// The editors and pagers of a child beyond the sandbox. Its standard
/// input and output are the requester's, which the sandbox chooses: an
/// editor or pager started on them (git's for `commit`, `rebase -i`,
/// `bugreport`; `less` reads its keys from standard error without a
/// terminal) would take commands from the sandbox, and vim's `:!` or
/// less's `!` would run them outside it. So no editor, and `cat`.
const EDITORS_AND_PAGERS: &[(&str, &str)] = &[
    ("GIT_EDITOR", REFUSING_EDITOR),
    ("GIT_SEQUENCE_EDITOR", REFUSING_EDITOR),
    ("EDITOR", "false"),
    ("VISUAL", "false"),
    ("GIT_PAGER", "cat"),
    ("PAGER", "cat"),
    ("MANPAGER", "cat"),
];

/// Whether `name` chooses an editor or a pager. A child in the session's
/// own sandbox keeps the shell's: what it starts runs in that sandbox, as
/// it would in place (a probe's `turn-default` git, without the
/// `GIT_EDITOR` it was given, started vi on a pipe, which drew on it and
/// failed).
fn is_editor_or_pager(name: &OsStr) -> bool {
    EDITORS_AND_PAGERS
        .iter()
        .any(|(editor, _)| name.as_bytes() == editor.as_bytes())
}

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

/// What a child beyond the sandbox (unsandboxed, or with grants) keeps of
/// the request's environment (and `LC_*`): how to talk to the user, and
/// only with a value that names no file ([`names_no_file`]).
pub const UNSANDBOXED_KEPT: &[&str] = &[
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TZ",
    "NO_COLOR",
    "COLUMNS",
    "LINES",
];

/// Whether a kept variable's value names no file. glibc reads a message
/// catalog from a `LANGUAGE` or `LC_*` value with a `/` in it (a probe had
/// an unsandboxed `uname --help` print the format string of a catalog the
/// sandbox wrote: its stack, then a write through `%n`), a time zone from
/// an absolute `TZ` or one with `..` in it, and terminfo names no
/// directories. Locale, terminal and colour names have no `/`; `TZ` keeps
/// zone names (`Europe/Paris`, read under the session's `TZDIR`) and POSIX
/// rules (`CET-1CEST,M3.5.0/2`).
fn names_no_file(name: &[u8], value: &[u8]) -> bool {
    if name != b"TZ" {
        return !value.contains(&b'/');
    }
    let zone = value.strip_prefix(b":").unwrap_or(value);
    !zone.starts_with(b"/") && !zone.split(|&byte| byte == b'/').any(|part| part == b"..")
}

/// Whether a child beyond the sandbox keeps the request's `name=value`:
/// one of [`UNSANDBOXED_KEPT`] or `LC_*`, with a value that names no file.
fn kept_beyond_the_sandbox(name: &[u8], value: &[u8]) -> bool {
    (UNSANDBOXED_KEPT.iter().any(|kept| name == kept.as_bytes()) || name.starts_with(b"LC_"))
        && names_no_file(name, value)
}

/// The names of the request's variables that a child beyond the sandbox
/// runs without, though the shell set them since the session started: not
/// kept and not as the session's escalation environment `base` has them.
/// Not what the shell or execgate set for every command, which no one
/// chose for this program: zsh's bookkeeping (`PWD`, `OLDPWD`, `SHLVL`,
/// `_`, and the `HOME` and `LOGNAME` it sets when they are not), `PATH`,
/// `TMPDIR` (the child gets one of its own), the session's plumbing and
/// the proxy variables of a limited sandbox (one with grants gets its
/// own). A probe's `export CFLAGS=-O2; make`, escalated, built with no
/// `CFLAGS`, and nothing said so.
pub fn left_out_beyond_the_sandbox(
    requested: &[OsString],
    base: &[(OsString, OsString)],
) -> Vec<OsString> {
    const SET_FOR_EVERY_COMMAND: &[&[u8]] = &[
        b"PATH", b"PWD", b"OLDPWD", b"SHLVL", b"_", b"HOME", b"LOGNAME", b"TMPDIR",
    ];
    // Proxy variables are execgate's where its marker says so; else the
    // user's own (a corporate `HTTPS_PROXY`).
    let proxied = requested.iter().any(|entry| {
        entry
            .as_bytes()
            .strip_prefix(execgate_sandbox::PROXY_MARKER.as_bytes())
            .is_some_and(|rest| rest.starts_with(b"="))
    });
    let mut left_out: Vec<OsString> = requested
        .iter()
        .filter_map(|entry| {
            let bytes = entry.as_bytes();
            let eq = bytes.iter().position(|&b| b == b'=')?;
            let (name, value) = (&bytes[..eq], &bytes[eq + 1..]);
            let as_the_session_has = base.iter().any(|(base_name, base_value)| {
                base_name.as_bytes() == name && base_value.as_bytes() == value
            });
            let execgates = name.starts_with(b"EXECGATE_")
                || (proxied && execgate_sandbox::is_proxy_variable(OsStr::from_bytes(name)));
            let passed_or_not_chosen = kept_beyond_the_sandbox(name, value)
                || as_the_session_has
                || SET_FOR_EVERY_COMMAND.contains(&name)
                || execgates;
            (!passed_or_not_chosen).then(|| OsStr::from_bytes(name).to_owned())
        })
        .collect();
    left_out.sort();
    left_out.dedup();
    left_out
}

/// Taken from the server's environment for a child beyond the sandbox
/// when the session configures nothing else.
const FROM_SERVER: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_DIRS",
    "XDG_DATA_DIRS",
];

/// `path` without the directories `sandbox` could have put a program in
/// (a writable root, or below one: a project's `.venv/bin` or
/// `node_modules/.bin`) and without relative entries (the escalated
/// child's working directory may be one). An escalated program that runs
/// others by name (`#!/usr/bin/env python3`, `execvp`, shims) must not be
/// pointed at what the sandbox planted. Returns the path and the
/// directories left out.
pub(crate) fn path_outside(path: &OsStr, sandbox: &ResolvedPolicy) -> (OsString, Vec<PathBuf>) {
    path_without(path, |dir| sandbox.may_write(dir))
}

/// `path` without relative entries and the directories `writable` says a
/// sandbox could have put a program in (as written or resolved), and the
/// directories left out.
pub(crate) fn path_without(
    path: &OsStr,
    writable: impl Fn(&Path) -> bool,
) -> (OsString, Vec<PathBuf>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for dir in std::env::split_paths(path) {
        let canonical = std::fs::canonicalize(&dir);
        let planted = !dir.is_absolute()
            || writable(&dir)
            || canonical.is_ok_and(|canonical| writable(&canonical));
        if planted {
            dropped.push(dir);
        } else {
            kept.push(dir);
        }
    }
    // Joining fails only on a `:` inside an entry, which splitting removed.
    let kept = std::env::join_paths(kept).unwrap_or_default();
    (kept, dropped)
}

/// The default escalation environment: [`FROM_SERVER`]'s variables.
pub(crate) fn server_defaults() -> Vec<(OsString, OsString)> {
    FROM_SERVER
        .iter()
        .filter_map(|name| Some((OsString::from(name), std::env::var_os(name)?)))
        .collect()
}

/// Builds an escalated child's environment: for a child in the session's
/// own sandbox, the requester's entries without injection variables; for
/// one beyond it (unsandboxed, or with grants), the requester's harmless
/// entries and the session's `base`: the shell could have pointed any
/// other variable at what it planted (`GIT_TEST_FSMONITOR`,
/// `PYTHONPYCACHEPREFIX`, `npm_config_script_shell`, a `HOME` in the
/// workspace), for whatever the program runs. A child given a temporary
/// directory of its own (`own_tmpdir`) gets it for `TMPDIR`: not the
/// sandbox's, where the shell could swap what the child writes there.
pub(crate) fn escalated_environment(
    requested: &[OsString],
    child: &ChildPlace<'_>,
) -> Vec<OsString> {
    let ChildPlace {
        path,
        sandboxed,
        beyond_the_sandbox,
        base,
        own_tmpdir,
        cwd,
    } = *child;
    let name_of = |entry: &OsString| -> Option<OsString> {
        let bytes = entry.as_bytes();
        let eq = bytes.iter().position(|&b| b == b'=')?;
        Some(OsStr::from_bytes(&bytes[..eq]).to_owned())
    };
    let kept_unsandboxed = |name: &OsStr, entry: &OsString| {
        kept_beyond_the_sandbox(name.as_bytes(), &entry.as_bytes()[name.len() + 1..])
    };
    // Entries without `=` are not variables at all; nothing reads them.
    let mut env: Vec<OsString> = requested
        .iter()
        .filter(|entry| {
            let Some(name) = name_of(entry) else {
                return false;
            };
            // The marker of a limited sandbox's proxy variables: the
            // helper of a child in the same sandbox replaces or removes
            // them by it. One beyond it starts from the session's
            // variables, which the shell's marker does not describe.
            (sandboxed && !beyond_the_sandbox && name == execgate_sandbox::PROXY_MARKER)
                || match beyond_the_sandbox {
                    true => kept_unsandboxed(&name, entry),
                    false => {
                        name.as_bytes() != b"PATH"
                            && (!is_injection_variable(&name) || is_editor_or_pager(&name))
                    }
                }
        })
        .cloned()
        .collect();
    if beyond_the_sandbox {
        let taken: Vec<OsString> = env.iter().filter_map(name_of).collect();
        for (name, value) in base {
            // Where the session started, not where the child does (a
            // probe's read-only Makefile ran `$(PWD)/hook.sh` from the
            // workspace): its own, below.
            if name.as_bytes() == b"PATH"
                || name.as_bytes() == b"PWD"
                || name.as_bytes() == b"OLDPWD"
                || is_injection_variable(name)
                || name.is_empty()
                || name.as_bytes().contains(&b'=')
                || taken.contains(name)
            {
                continue;
            }
            let mut entry = name.clone();
            entry.push("=");
            entry.push(value);
            env.push(entry);
        }
    }
    if beyond_the_sandbox {
        for (name, value) in EDITORS_AND_PAGERS {
            env.push(format!("{name}={value}").into());
        }
    }
    if let Some(tmpdir) = own_tmpdir {
        env.retain(|entry| !entry.as_bytes().starts_with(b"TMPDIR="));
        let mut entry = OsString::from("TMPDIR=");
        entry.push(tmpdir);
        env.push(entry);
    }
    if let Some(cwd) = cwd.filter(|_| beyond_the_sandbox) {
        let mut pwd = OsString::from("PWD=");
        pwd.push(cwd);
        env.push(pwd);
    }
    let mut path_entry = OsString::from("PATH=");
    path_entry.push(path);
    env.push(path_entry);
    env
}

/// Where an escalated child runs, as far as its environment goes.
#[derive(Clone, Copy)]
pub(crate) struct ChildPlace<'a> {
    /// Its `PATH`.
    pub(crate) path: &'a OsStr,
    /// In a sandbox (the session's, or one with grants).
    pub(crate) sandboxed: bool,
    /// Able to do more than the session's sandbox: unsandboxed, or with
    /// grants.
    pub(crate) beyond_the_sandbox: bool,
    /// What a child beyond the sandbox starts from (the session's
    /// escalation environment).
    pub(crate) base: &'a [(OsString, OsString)],
    /// Its own temporary directory, if it has one.
    pub(crate) own_tmpdir: Option<&'a Path>,
    /// The canonical path of the directory it starts in, as the server
    /// checked it (its `PWD` beyond the sandbox; none when unknown).
    pub(crate) cwd: Option<&'a Path>,
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
            "OPENSSL_CONF=/tmp/ocnf",
            "OPENSSL_MODULES=/tmp",
            "EXECGATE_SOCKET_FD=64",
            "PATH=/tmp/planted:/usr/bin",
            "LANG=C.UTF-8",
            "NO_EQUALS",
            "GIT_AUTHOR_NAME=someone",
            "GIT_EDITOR=nano",
            "PAGER=most",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let env = escalated_environment(
            &requested,
            &ChildPlace {
                path: OsStr::new("/usr/bin:/bin"),
                sandboxed: true,
                beyond_the_sandbox: false,
                base: &[],
                own_tmpdir: None,
                cwd: Some(Path::new("/ws")),
            },
        );
        let expected: Vec<OsString> = [
            "HOME=/root",
            "LANG=C.UTF-8",
            "GIT_AUTHOR_NAME=someone",
            "GIT_EDITOR=nano",
            "PAGER=most",
            "PATH=/usr/bin:/bin",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(env, expected);

        // Unsandboxed: only the kept names from the request; HOME and the
        // like from the server.
        let mut requested = requested;
        requested.push("HOME=/work/planted-home".into());
        requested.push("LC_ALL=C".into());
        let env = escalated_environment(
            &requested,
            &ChildPlace {
                path: OsStr::new("/usr/bin:/bin"),
                sandboxed: false,
                beyond_the_sandbox: true,
                base: &server_defaults(),
                own_tmpdir: None,
                cwd: Some(Path::new("/ws")),
            },
        );
        let names: Vec<String> = env
            .iter()
            .map(|entry| {
                entry
                    .to_string_lossy()
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert!(names.iter().all(|name| name == "LANG"
            || name == "LC_ALL"
            || name == "PATH"
            || name == "PWD"
            || EDITORS_AND_PAGERS.iter().any(|(set, _)| set == name)
            || FROM_SERVER.contains(&name.as_str())));
        assert!(names.contains(&"LC_ALL".to_owned()));
        // With grants (sandboxed, beyond the session's sandbox): the same,
        // and not the shell's proxy marker either.
        let mut with_marker = requested.clone();
        with_marker.push(format!("{}=1", execgate_sandbox::PROXY_MARKER).into());
        let granted = escalated_environment(
            &with_marker,
            &ChildPlace {
                path: OsStr::new("/usr/bin:/bin"),
                sandboxed: true,
                beyond_the_sandbox: true,
                base: &server_defaults(),
                own_tmpdir: None,
                cwd: Some(Path::new("/ws")),
            },
        );
        let unsandboxed = escalated_environment(
            &requested,
            &ChildPlace {
                path: OsStr::new("/usr/bin:/bin"),
                sandboxed: false,
                beyond_the_sandbox: true,
                base: &server_defaults(),
                own_tmpdir: None,
                cwd: Some(Path::new("/ws")),
            },
        );
        assert_eq!(granted, unsandboxed);
        assert!(!names.contains(&"GIT_AUTHOR_NAME".to_owned()));
        let home = std::env::var_os("HOME").map(|home| {
            let mut entry = OsString::from("HOME=");
            entry.push(home);
            entry
        });
        assert_eq!(
            env.iter()
                .find(|entry| entry.as_bytes().starts_with(b"HOME=")),
            home.as_ref()
        );
    }

    #[test]
    fn what_a_child_beyond_the_sandbox_runs_without_is_what_the_shell_set() {
        let requested: Vec<OsString> = [
            "HOME=/root",
            "USER=someone",
            "CFLAGS=-O2",
            "LANG=C.UTF-8",
            "LANGUAGE=/ws/catalog",
            "PWD=/ws",
            "SHLVL=2",
            "LOGNAME=root",
            "PATH=/ws/bin:/usr/bin",
            "EXECGATE_SOCKET_FD=64",
            "AWS_PROFILE=prod",
            "TMPDIR=/tmp/sandbox",
            "HTTPS_PROXY=http://127.0.0.1:4000",
            "EXECGATE_PROXY=http://127.0.0.1:4000",
            "NO_EQUALS",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let base: Vec<(OsString, OsString)> = [("HOME", "/root"), ("USER", "other")]
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect();
        // Without execgate's marker, a proxy variable is the user's.
        let unmarked: Vec<OsString> = requested
            .iter()
            .filter(|entry| !entry.as_bytes().starts_with(b"EXECGATE_PROXY="))
            .cloned()
            .collect();
        assert!(left_out_beyond_the_sandbox(&unmarked, &base).contains(&"HTTPS_PROXY".into()));
        // `USER` differs from the session's; `LANGUAGE` names a file.
        assert_eq!(
            left_out_beyond_the_sandbox(&requested, &base),
            ["AWS_PROFILE", "CFLAGS", "LANGUAGE", "USER"]
        );
    }

    /// Re-probe 117: an unsandboxed `git bugreport` (or `rebase -i`)
    /// started the host's vim, which read its keys from the sandbox's
    /// pipe on its standard input: `:!cmd` ran outside the sandbox.
    #[test]
    fn a_child_beyond_the_sandbox_gets_no_editor_and_no_pager() {
        let requested: Vec<OsString> = ["EDITOR=vim", "LANG=C"]
            .iter()
            .map(OsString::from)
            .collect();
        let value = |env: &[OsString], name: &str| {
            let prefix = format!("{name}=");
            env.iter().find_map(|entry| {
                entry
                    .to_str()?
                    .strip_prefix(prefix.as_str())
                    .map(str::to_owned)
            })
        };
        for (sandboxed, beyond_the_sandbox) in [(false, true), (true, true), (true, false)] {
            let env = escalated_environment(
                &requested,
                &ChildPlace {
                    path: OsStr::new("/usr/bin:/bin"),
                    sandboxed,
                    beyond_the_sandbox,
                    base: &[],
                    own_tmpdir: None,
                    cwd: None,
                },
            );
            let got: Vec<Option<String>> = [
                "GIT_EDITOR",
                "GIT_SEQUENCE_EDITOR",
                "EDITOR",
                "VISUAL",
                "GIT_PAGER",
                "PAGER",
                "MANPAGER",
            ]
            .iter()
            .map(|name| value(&env, name))
            .collect();
            let refusing = Some(REFUSING_EDITOR.to_owned());
            let want = match beyond_the_sandbox {
                true => vec![
                    refusing.clone(),
                    refusing,
                    Some("false".into()),
                    Some("false".into()),
                    Some("cat".into()),
                    Some("cat".into()),
                    Some("cat".into()),
                ],
                // In the session's sandbox, the shell's own: what it starts
                // runs in that sandbox.
                false => vec![None, None, Some("vim".into()), None, None, None, None],
            };
            assert_eq!(
                got, want,
                "sandboxed {sandboxed}, beyond {beyond_the_sandbox}"
            );
        }
    }

    /// A probe had an unsandboxed `uname --help` read a message catalog
    /// the sandbox wrote, through `LANGUAGE=../../../tmp/x`: a kept
    /// variable whose value names a file is not kept.
    #[test]
    fn kept_variables_name_no_file() {
        // (entry, kept beyond the sandbox)
        let cases = [
            ("LANG=C.UTF-8", true),
            ("LANGUAGE=de:en", true),
            ("LC_ALL=de_DE.UTF-8@euro", true),
            ("TERM=xterm-256color", true),
            ("TZ=Europe/Paris", true),
            ("TZ=:Asia/Tokyo", true),
            ("TZ=CET-1CEST,M3.5.0/2,M10.5.0/3", true),
            ("LANGUAGE=../../../../tmp/x", false),
            ("LC_MESSAGES=/tmp/x", false),
            ("LANG=./planted", false),
            ("TERM=../../tmp/terminfo", false),
            ("TZ=/tmp/zone", false),
            ("TZ=:/tmp/zone", false),
            ("TZ=Europe/../../../tmp/zone", false),
        ];
        for (entry, kept) in cases {
            let env = escalated_environment(
                &[OsString::from(entry)],
                &ChildPlace {
                    path: OsStr::new("/usr/bin:/bin"),
                    sandboxed: false,
                    beyond_the_sandbox: true,
                    base: &[],
                    own_tmpdir: None,
                    cwd: Some(Path::new("/ws")),
                },
            );
            assert_eq!(
                env.iter().any(|found| found == entry),
                kept,
                "{entry}: {env:?}"
            );
        }
    }

    /// A child with a temporary directory of its own gets it, never the
    /// shell's (the sandbox's, which it could fill); one in the session's
    /// sandbox keeps the sandbox's.
    #[test]
    fn children_beyond_the_sandbox_get_their_own_tmpdir() {
        let requested = [OsString::from("TMPDIR=/work/planted")];
        let own = Path::new("/run/session/tmp");
        let tmpdirs = |env: Vec<OsString>| -> Vec<OsString> {
            env.into_iter()
                .filter(|entry| entry.as_bytes().starts_with(b"TMPDIR="))
                .collect()
        };
        let base = [(OsString::from("TMPDIR"), OsString::from("/server/tmp"))];
        let place = |sandboxed, beyond_the_sandbox, own_tmpdir| ChildPlace {
            path: OsStr::new("/usr/bin:/bin"),
            sandboxed,
            beyond_the_sandbox,
            base: &base,
            own_tmpdir,
            cwd: Some(Path::new("/ws")),
        };
        // (sandboxed, beyond the sandbox, own temporary directory, TMPDIR)
        let cases = [
            (false, true, Some(own), "TMPDIR=/run/session/tmp"),
            (true, true, Some(own), "TMPDIR=/run/session/tmp"),
            (true, false, None, "TMPDIR=/work/planted"),
        ];
        for (sandboxed, beyond, own_tmpdir, expected) in cases {
            let env = escalated_environment(&requested, &place(sandboxed, beyond, own_tmpdir));
            assert_eq!(tmpdirs(env), [expected], "{sandboxed} {beyond}");
        }
    }

    /// A probe: a child beyond the sandbox got the `PWD` of wherever the
    /// session started (the writable workspace), and a read-only Makefile's
    /// `$(PWD)/hook.sh` ran what the sandbox wrote there. It gets its own.
    #[test]
    fn a_child_beyond_the_sandbox_gets_its_own_pwd() {
        let base = [
            (OsString::from("PWD"), OsString::from("/workspace")),
            (OsString::from("OLDPWD"), OsString::from("/workspace/old")),
        ];
        // The shell's `PWD` may be a link the sandbox can point elsewhere:
        // the child's is the canonical path the server checked.
        let requested = [OsString::from("PWD=/workspace/link-to-project")];
        let place = |sandboxed, beyond_the_sandbox| ChildPlace {
            path: OsStr::new("/usr/bin:/bin"),
            sandboxed,
            beyond_the_sandbox,
            base: &base,
            own_tmpdir: None,
            cwd: Some(Path::new("/ro/project")),
        };
        let pwds = |env: Vec<OsString>| -> Vec<OsString> {
            env.into_iter()
                .filter(|entry| {
                    entry.as_bytes().starts_with(b"PWD=")
                        || entry.as_bytes().starts_with(b"OLDPWD=")
                })
                .collect()
        };
        for beyond in [place(false, true), place(true, true)] {
            assert_eq!(
                pwds(escalated_environment(&requested, &beyond)),
                ["PWD=/ro/project"]
            );
        }
        assert_eq!(
            pwds(escalated_environment(&requested, &place(true, false))),
            ["PWD=/workspace/link-to-project"]
        );
    }
}
