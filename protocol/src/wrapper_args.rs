//! The exec wrapper's command line, as the patched zsh builds it (for the
//! stand-in it runs in its own child on `Escalate`).

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::path::PathBuf;

/// Environment variable naming the exec wrapper; the patched zsh latches it
/// at start-up.
pub const ENV_WRAPPER: &str = "EXECGATE_WRAPPER";
/// Environment variable naming the inherited session socket's descriptor.
pub const ENV_SOCKET_FD: &str = "EXECGATE_SOCKET_FD";

/// `WRAPPER SOCKET-FD ABSOLUTE-PATH EXEC-PATH MESSAGE-PREFIX NAME ARGV0
/// ARGS...`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapperArgs {
    /// The session socket; `None` when the shell had none to give (`-1`).
    pub socket_fd: Option<RawFd>,
    /// The absolute path of the program to execute (a relative candidate
    /// joined to the shell's `$PWD`): what the server decides on.
    pub path: PathBuf,
    /// The path exactly as zsh would have passed it to execve, relative for
    /// a relative `PATH` entry: what an in-place run executes, so that a
    /// script sees the same `$0` as under stock zsh.
    pub exec_path: PathBuf,
    /// How zsh would begin a message about this command (`zsh:3: `, or
    /// `zsh: ` at an interactive prompt). The wrapper starts its replay of
    /// zsh's own exec failures (bad interpreter, exec format error) with
    /// it, so that they read exactly as under stock zsh. Messages of
    /// execgate's own (denials, refusals) keep `execgate: `.
    pub message_prefix: OsString,
    /// The command's name as zsh's messages give it: the word typed (or
    /// the `hash` name), not `argv[0]`, which `exec -a` and `ARGV0` change.
    pub command_name: OsString,
    /// The program's argument vector, `argv[0]` included.
    pub argv: Vec<OsString>,
}

/// Why the wrapper's command line is not one the patched zsh would build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WrapperArgsError {
    #[error(
        "usage: execgate-exec-wrapper SOCKET-FD ABSOLUTE-PATH EXEC-PATH MESSAGE-PREFIX NAME \
         ARGV0 [ARGS...] \
         (the patched zsh starts it; it is not meant to be run by hand)"
    )]
    Usage,
    #[error("session socket descriptor {0:?} is not a number")]
    BadSocketFd(OsString),
    #[error("program path {0:?} is not absolute")]
    RelativePath(PathBuf),
}

impl WrapperArgs {
    /// Parses the wrapper's own argv (its `argv[0]` first).
    pub fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Self, WrapperArgsError> {
        let _wrapper = args.next().ok_or(WrapperArgsError::Usage)?;
        let fd = args.next().ok_or(WrapperArgsError::Usage)?;
        let path = PathBuf::from(args.next().ok_or(WrapperArgsError::Usage)?);
        let exec_path = PathBuf::from(args.next().ok_or(WrapperArgsError::Usage)?);
        let message_prefix = args.next().ok_or(WrapperArgsError::Usage)?;
        let command_name = args.next().ok_or(WrapperArgsError::Usage)?;
        let argv: Vec<OsString> = args.collect();
        if argv.is_empty() {
            return Err(WrapperArgsError::Usage);
        }
        if !path.is_absolute() {
            return Err(WrapperArgsError::RelativePath(path));
        }
        Ok(WrapperArgs {
            socket_fd: parse_fd(&fd)?,
            path,
            exec_path,
            message_prefix,
            command_name,
            argv,
        })
    }
}

fn parse_fd(text: &OsStr) -> Result<Option<RawFd>, WrapperArgsError> {
    let bad = || WrapperArgsError::BadSocketFd(text.to_owned());
    let number: i64 = text.to_str().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    match number {
        -1 => Ok(None),
        0..=0x7fff_ffff => Ok(Some(number as RawFd)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<WrapperArgs, WrapperArgsError> {
        WrapperArgs::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_what_zsh_passes() {
        assert_eq!(
            parse(&[
                "w",
                "64",
                "/tmp/bin/ls",
                "bin/ls",
                "zsh:2: ",
                "dir",
                "ls",
                "-l"
            ]),
            Ok(WrapperArgs {
                socket_fd: Some(64),
                path: "/tmp/bin/ls".into(),
                exec_path: "bin/ls".into(),
                message_prefix: "zsh:2: ".into(),
                command_name: "dir".into(),
                argv: vec!["ls".into(), "-l".into()],
            })
        );
        assert_eq!(
            parse(&["w", "-1", "/bin/ls", "/bin/ls", "zsh: ", "x", "x"])
                .unwrap()
                .socket_fd,
            None
        );
    }

    #[test]
    fn refuses_anything_else() {
        assert_eq!(parse(&["w"]), Err(WrapperArgsError::Usage));
        assert_eq!(
            parse(&["w", "3", "/bin/ls", "/bin/ls"]),
            Err(WrapperArgsError::Usage)
        );
        // Everything up to the name, but no argv.
        assert_eq!(
            parse(&["w", "3", "/bin/ls", "/bin/ls", "zsh: ", "ls"]),
            Err(WrapperArgsError::Usage)
        );
        let bad_fd = |fd| parse(&["w", fd, "/bin/ls", "/bin/ls", "zsh: ", "ls", "ls"]);
        assert!(matches!(bad_fd("x"), Err(WrapperArgsError::BadSocketFd(_))));
        assert!(matches!(
            bad_fd("-2"),
            Err(WrapperArgsError::BadSocketFd(_))
        ));
        assert!(matches!(
            parse(&["w", "3", "ls", "ls", "zsh: ", "ls", "ls"]),
            Err(WrapperArgsError::RelativePath(_))
        ));
    }
}
