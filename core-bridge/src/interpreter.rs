//! What an escalated script's `#!` line goes on to run: the interpreter the
//! kernel starts, and through `env`, the program `env` then looks up in
//! `PATH`, each with the arguments it gets. The planted check judges that
//! program as if it had been escalated itself (a skill's
//! `#!/usr/bin/env -S npx tsx` runs the `tsx` the sandbox put in
//! `node_modules/.bin`).
//!
//! It never guesses: an `env` line it cannot follow (an assignment, a
//! changed directory, quoting, a `PATH` with a relative entry before the
//! program) is a refusal, not a pass.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The program a script's `#!` line runs in the end, and its arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Interpreted {
    /// Absolute: the interpreter, or the program `env` found in `PATH`.
    pub(crate) program: PathBuf,
    /// `argv` as that program receives it (`argv[0]` as named).
    pub(crate) argv: Vec<OsString>,
    /// Whether the line names nothing but the program: a script runner
    /// (python, node, a shell) then reads its script, not the directory.
    pub(crate) bare: bool,
}

/// What `interpreter` (absolute, as the `#!` line names it; `canonical`,
/// resolved) runs for `script` with `args` (the script's own arguments,
/// without `argv[0]`). `path` is where `env` looks programs up.
pub(crate) fn interpreted(
    interpreter: &Path,
    canonical: &Path,
    argument: Option<&OsStr>,
    script: &Path,
    args: &[OsString],
    path: Option<&OsStr>,
) -> Result<Interpreted, String> {
    let mut argv = vec![interpreter.as_os_str().to_owned()];
    argv.extend(argument.map(OsStr::to_owned));
    argv.push(script.as_os_str().to_owned());
    argv.extend(args.iter().cloned());
    // By either name: a link named env to a multi-call binary runs as env,
    // and so does env under another name.
    let is_env = |path: &Path| path.file_name() == Some(OsStr::new("env"));
    if !is_env(interpreter) && !is_env(canonical) {
        return Ok(Interpreted {
            program: canonical.to_path_buf(),
            bare: argument.is_none(),
            argv,
        });
    }
    let (named, rest) = env_command(&argv[1..])?;
    let program = look_up(&named, path)?;
    if program.file_name() == Some(OsStr::new("env")) {
        return Err("env runs env again, which the check does not follow".into());
    }
    // What follows the program is the script and its arguments, or more
    // words of the line first.
    let bare = rest.len() == 1 + args.len();
    let mut argv = vec![named];
    argv.extend(rest);
    Ok(Interpreted {
        program,
        argv,
        bare,
    })
}

/// The program `env` runs and what follows it, from `env`'s arguments.
fn env_command(words: &[OsString]) -> Result<(OsString, Vec<OsString>), String> {
    let mut words: Vec<OsString> = words.to_vec();
    let mut at = 0;
    let cannot_follow =
        |word: &OsStr| format!("env is given {word:?}, which the check does not follow");
    while let Some(word) = words.get(at).cloned() {
        let bytes = word.as_bytes();
        let split = match bytes {
            b"-S" | b"--split-string" => {
                let Some(string) = words.get(at + 1).cloned() else {
                    return Err(cannot_follow(&word));
                };
                words.drain(at..at + 2);
                Some(string)
            }
            _ if bytes.starts_with(b"--split-string=") => {
                words.remove(at);
                Some(OsStr::from_bytes(&bytes[b"--split-string=".len()..]).to_owned())
            }
            _ if bytes.starts_with(b"-S") => {
                words.remove(at);
                Some(OsStr::from_bytes(&bytes[2..]).to_owned())
            }
            _ => None,
        };
        if let Some(string) = split {
            let parts = split_string(&string)?;
            words.splice(at..at, parts);
            continue;
        }
        match bytes {
            b"-i" | b"--ignore-environment" | b"-" | b"-0" | b"--null" | b"-v" | b"--debug" => {
                at += 1;
            }
            b"-u" | b"--unset" => at += 2,
            _ if bytes.starts_with(b"--unset=") => at += 1,
            _ if bytes.starts_with(b"-u") && bytes.len() > 2 => at += 1,
            b"--" => {
                at += 1;
                break;
            }
            _ if bytes.starts_with(b"-") || bytes.contains(&b'=') => {
                return Err(cannot_follow(&word));
            }
            _ => break,
        }
    }
    let Some(named) = words.get(at).cloned() else {
        return Err("env is given no program".into());
    };
    if named.as_bytes().contains(&b'=') {
        return Err(cannot_follow(&named));
    }
    Ok((named, words.split_off(at + 1)))
}

/// `env -S`'s string as words, when it holds nothing but words and blanks:
/// its quotes, escapes and `${NAME}` are not followed.
fn split_string(string: &OsStr) -> Result<Vec<OsString>, String> {
    let bytes = string.as_bytes();
    if bytes
        .iter()
        .any(|b| matches!(b, b'\'' | b'"' | b'\\' | b'$' | b'#'))
    {
        return Err(format!(
            "env -S is given {string:?}, whose quoting the check does not follow"
        ));
    }
    Ok(bytes
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty())
        .map(|word| OsStr::from_bytes(word).to_owned())
        .collect())
}

/// Where `env` finds `named`: itself when it holds a `/` (absolute only),
/// else the first executable file of that name in `path`.
fn look_up(named: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, String> {
    let named_path = Path::new(named);
    if named.as_bytes().contains(&b'/') {
        return match named_path.is_absolute() {
            true => Ok(named_path.to_path_buf()),
            false => Err(format!(
                "env runs {}, a relative path: from wherever it runs",
                named_path.display()
            )),
        };
    }
    let path = path.unwrap_or_default();
    for directory in std::env::split_paths(path) {
        // An empty or relative entry is looked in from the working
        // directory, which the sandbox may write or choose.
        if !directory.is_absolute() {
            return Err(format!(
                "env looks {} up in a PATH with a relative entry ({:?})",
                named_path.display(),
                directory
            ));
        }
        let candidate = directory.join(named);
        let executable = std::fs::metadata(&candidate)
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0);
        if executable {
            return Ok(candidate);
        }
    }
    Err(format!(
        "env runs {}, which is not found in PATH",
        named_path.display()
    ))
}

/// Whether `program` (canonical), given a script and nothing more, reads
/// that script and not the directory it runs in: its entry in the planted
/// table judges the directory for what it does with `-c`, `-m` and the like.
pub(crate) fn reads_only_its_script(program: &Path) -> bool {
    let Some(name) = program.file_name().and_then(OsStr::to_str) else {
        return false;
    };
    const RUNNERS: [&str; 10] = [
        "node", "nodejs", "perl", "ruby", "sh", "bash", "dash", "zsh", "ksh", "mksh",
    ];
    RUNNERS.contains(&name)
        || ["python", "python2", "python3"].contains(&name)
        || name.starts_with("python2.")
        || name.starts_with("python3.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<OsString> {
        text.split(' ')
            .filter(|word| !word.is_empty())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn what_a_line_runs() {
        let path = Some(OsStr::new("/usr/bin:/bin"));
        // (interpreter, its argument, the script's arguments) -> (program,
        // argv after argv[0], bare)
        let cases: &[(&str, Option<&str>, &str, &str, &str, bool)] = &[
            ("/usr/bin/python3", None, "a b", "/usr/bin/python3", "/s a b", true),
            ("/usr/bin/python3", Some("-u"), "", "/usr/bin/python3", "-u /s", false),
            ("/usr/bin/make", Some("-f"), "all", "/usr/bin/make", "-f /s all", false),
            ("/usr/bin/env", Some("sh"), "x", "/usr/bin/sh", "/s x", true),
            ("/usr/bin/env", Some("-S sh -e"), "", "/usr/bin/sh", "-e /s", false),
            ("/usr/bin/env", Some("-Ssh  -e"), "", "/usr/bin/sh", "-e /s", false),
            ("/usr/bin/env", Some("--split-string=sh -e"), "", "/usr/bin/sh", "-e /s", false),
            ("/usr/bin/env", Some("-S -i -u HOME sh"), "", "/usr/bin/sh", "/s", true),
            ("/usr/bin/env", Some("-S -- sh"), "", "/usr/bin/sh", "/s", true),
            ("/usr/bin/env", Some("-S /bin/sh -e"), "", "/bin/sh", "-e /s", false),
        ];
        for &(interpreter, argument, args, program, argv, bare) in cases {
            let got = interpreted(
                Path::new(interpreter),
                Path::new(interpreter),
                argument.map(OsStr::new),
                Path::new("/s"),
                &words(args),
                path,
            )
            .unwrap_or_else(|error| panic!("{interpreter} {argument:?}: {error}"));
            assert_eq!(got.program, Path::new(program), "{interpreter} {argument:?}");
            assert_eq!(&got.argv[1..], words(argv), "{interpreter} {argument:?}");
            assert_eq!(got.bare, bare, "{interpreter} {argument:?}");
        }
    }

    #[test]
    fn what_the_check_does_not_follow_is_refused() {
        let path = Some(OsStr::new("/usr/bin:/bin"));
        let cases = [
            // Assignments, a directory change, other options.
            "-S NODE_OPTIONS=-r./x node",
            "-S -C /tmp sh",
            "--chdir=/tmp sh",
            "-a name sh",
            "-S -a name sh",
            // Quoting env -S interprets.
            "-S sh -c 'x'",
            "-S sh ${HOME}",
            // No program, an unknown one, a relative one, env again.
            "-S -i -u",
            "no-such-program-here",
            "./tool",
            "env",
        ];
        for argument in cases {
            let got = interpreted(
                Path::new("/usr/bin/env"),
                Path::new("/usr/bin/env"),
                Some(OsStr::new(argument)),
                Path::new("/s"),
                &[],
                path,
            );
            assert!(got.is_err(), "{argument:?}: {got:?}");
        }
        // A relative PATH entry before the program: env would look there.
        for relative in [":/usr/bin", ".:/usr/bin", "bin:/usr/bin"] {
            let got = interpreted(
                Path::new("/usr/bin/env"),
                Path::new("/usr/bin/env"),
                Some(OsStr::new("sh")),
                Path::new("/s"),
                &[],
                Some(OsStr::new(relative)),
            );
            assert!(got.is_err(), "{relative}: {got:?}");
        }
    }
}
