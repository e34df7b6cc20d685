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
    /// The words the line gives the program before the script.
    pub(crate) options: Vec<OsString>,
}

/// What `interpreter` (absolute, as the `#!` line names it; `canonical`,
/// resolved) runs for `script` with `args` (the script's own arguments,
/// without `argv[0]`). `path` is where `env` looks programs up: the
/// `PATH` the escalated child gets.
pub(crate) fn interpreted(
    interpreter: &Path,
    canonical: &Path,
    argument: Option<&OsStr>,
    script: &Path,
    args: &[OsString],
    path: &OsStr,
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
            options: argument.map(OsStr::to_owned).into_iter().collect(),
            argv,
        });
    }
    let command = env_command(&argv[1..])?;
    // glibc's search path when env was told to clear PATH.
    let path = match command.clears_path {
        true => OsStr::new("/bin:/usr/bin"),
        false => path,
    };
    let program = look_up(&command.program, path)?;
    if program == script {
        return Err("env runs the script itself again, which the check does not follow".into());
    }
    if program.file_name() == Some(OsStr::new("env")) {
        return Err("env runs env again, which the check does not follow".into());
    }
    // What follows the program is the script and its arguments, or more
    // words of the line first.
    let options_end = command.rest.len().saturating_sub(1 + args.len());
    let options = command.rest[..options_end].to_vec();
    let mut argv = vec![command.program];
    argv.extend(command.rest);
    Ok(Interpreted {
        program,
        argv,
        options,
    })
}

/// What `env` is told to run.
struct EnvCommand {
    program: OsString,
    rest: Vec<OsString>,
    /// `-i` or `-u PATH`: the program is looked up in the default path.
    clears_path: bool,
}

/// The program `env` runs and what follows it, from `env`'s arguments
/// (GNU coreutils' options; what else it takes is refused).
fn env_command(words: &[OsString]) -> Result<EnvCommand, String> {
    let mut words: Vec<OsString> = words.to_vec();
    let mut clears_path = false;
    let mut at = 0;
    let cannot_follow =
        |word: &OsStr| format!("env is given {word:?}, which the check does not follow");
    while let Some(word) = words.get(at).cloned() {
        let bytes = word.as_bytes();
        // A string to split, and how many words it takes from here.
        let mut split: Option<(OsString, usize)> = None;
        match bytes {
            b"--" => {
                at += 1;
                break;
            }
            b"-" | b"--ignore-environment" => {
                clears_path = true;
                at += 1;
            }
            b"--null" | b"--debug" => at += 1,
            b"--unset" => {
                clears_path |= words.get(at + 1).is_some_and(|name| name == "PATH");
                at += 2;
            }
            b"--split-string" => {
                let string = words.get(at + 1).ok_or_else(|| cannot_follow(&word))?;
                split = Some((string.clone(), 2));
            }
            _ if bytes.starts_with(b"--unset=") => {
                clears_path |= &bytes[b"--unset=".len()..] == b"PATH";
                at += 1;
            }
            _ if bytes.starts_with(b"--split-string=") => {
                split = Some((
                    OsStr::from_bytes(&bytes[b"--split-string=".len()..]).into(),
                    1,
                ));
            }
            // A cluster of short options: `-i`, `-0`, `-v` alone, `-u` and
            // `-S` taking the rest of the word or the next one.
            [b'-', cluster @ ..] if !cluster.is_empty() && cluster[0] != b'-' => {
                let mut taken = 1;
                for (index, &option) in cluster.iter().enumerate() {
                    let rest = &cluster[index + 1..];
                    match option {
                        b'i' => clears_path = true,
                        b'0' | b'v' => {}
                        b'u' | b'S' => {
                            let value = match rest.is_empty() {
                                false => OsStr::from_bytes(rest).to_owned(),
                                true => {
                                    taken = 2;
                                    words
                                        .get(at + 1)
                                        .cloned()
                                        .ok_or_else(|| cannot_follow(&word))?
                                }
                            };
                            match option {
                                b'u' => clears_path |= value == "PATH",
                                _ => split = Some((value, taken)),
                            }
                            break;
                        }
                        _ => return Err(cannot_follow(&word)),
                    }
                }
                if split.is_none() {
                    at += taken;
                }
            }
            _ if bytes.starts_with(b"-") || bytes.contains(&b'=') => {
                return Err(cannot_follow(&word));
            }
            _ => break,
        }
        if let Some((string, taken)) = split {
            let parts = split_string(&string)?;
            words.splice(at..at + taken, parts);
        }
    }
    let Some(program) = words.get(at).cloned() else {
        return Err("env is given no program".into());
    };
    if program.as_bytes().contains(&b'=') {
        return Err(cannot_follow(&program));
    }
    Ok(EnvCommand {
        program,
        rest: words.split_off(at + 1),
        clears_path,
    })
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
    // env splits on the blanks of C's isspace, vertical tab included.
    Ok(bytes
        .split(|b| b.is_ascii_whitespace() || *b == 0x0b)
        .filter(|word| !word.is_empty())
        .map(|word| OsStr::from_bytes(word).to_owned())
        .collect())
}

/// Where `env` finds `named`: itself when it holds a `/` (absolute only),
/// else the first executable file of that name in `path` (relative entries
/// are none of the escalated child's).
fn look_up(named: &OsStr, path: &OsStr) -> Result<PathBuf, String> {
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
    for directory in std::env::split_paths(path).filter(|dir| dir.is_absolute()) {
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

/// Programs that run another program named in their arguments (a `#!`
/// line's `env -S nice make` runs make): the check would judge the
/// wrapper, not what it runs.
const RUNS_ANOTHER: [&str; 22] = [
    "nice",
    "nohup",
    "timeout",
    "stdbuf",
    "setsid",
    "ionice",
    "taskset",
    "chrt",
    "flock",
    "xargs",
    "time",
    "unshare",
    "nsenter",
    "chroot",
    "setpriv",
    "runuser",
    "su",
    "sudo",
    "doas",
    "systemd-run",
    "busybox",
    "catchsegv",
];

/// Why the check cannot judge what `program` (canonical) runs: it runs
/// another program it is given.
pub(crate) fn runs_another(program: &Path) -> Option<String> {
    let name = program.file_name()?.to_str()?;
    (RUNS_ANOTHER.contains(&name) || execgate_rules::is_dynamic_loader(name))
        .then(|| format!("it runs {name}, which runs another program the check does not follow"))
}

/// A script runner: a program that, given a script, reads that script,
/// its own configuration and its modules, as its family does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runner {
    /// Imports from the script's directory (`sys.path[0]`).
    Python,
    /// Requires from `node_modules` in the script's directory and above.
    Node,
    Perl,
    Ruby,
    Shell,
}

impl Runner {
    /// `program`'s family, by its canonical name.
    pub(crate) fn of(program: &Path) -> Option<Runner> {
        let name = program.file_name()?.to_str()?;
        Some(match name {
            "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" => Runner::Shell,
            "perl" => Runner::Perl,
            "ruby" => Runner::Ruby,
            "node" | "nodejs" => Runner::Node,
            _ if ["python", "python2", "python3"].contains(&name)
                || name.starts_with("python2.")
                || name.starts_with("python3.") =>
            {
                Runner::Python
            }
            _ => return None,
        })
    }

    /// Whether, given a script after `options`, it reads that script and
    /// not the directory it runs in, stdin or anything the options name:
    /// options from a list known to load nothing (a review found `-l`,
    /// `-i`, `-o shinstdin`, node's `-C` each running what the sandbox
    /// wrote). Its entry in the planted table judges the directory for
    /// what it does with the rest.
    pub(crate) fn reads_only_its_script(self, options: &[OsString]) -> bool {
        // Short options that load nothing, per family; a shell's `-o NAME`
        // only with a name from the list.
        // Not ksh's `-E` (reads `$ENV`) nor mksh's `-T` (takes a value).
        let (letters, shell): (&[u8], bool) = match self {
            Runner::Shell => (b"aefhnuvxBCHP", true),
            Runner::Perl => (b"wWXTtUsl", false),
            Runner::Ruby => (b"wWvU", false),
            Runner::Node => (b"", false),
            Runner::Python => (b"bBdEIOPqRsSuvx", false),
        };
        const SHELL_OPTIONS: [&str; 9] = [
            "errexit",
            "nounset",
            "pipefail",
            "xtrace",
            "verbose",
            "noglob",
            "noclobber",
            "noexec",
            "allexport",
        ];
        const NODE_OPTIONS: [&str; 8] = [
            "--no-warnings",
            "--no-deprecation",
            "--trace-warnings",
            "--trace-deprecation",
            "--throw-deprecation",
            "--pending-deprecation",
            "--enable-source-maps",
            "--use-strict",
        ];
        const NODE_VALUES: [&str; 4] = [
            "--max-old-space-size=",
            "--stack-size=",
            "--unhandled-rejections=",
            "--no-warnings=",
        ];
        // bash's, which read less.
        const SHELL_LONG: [&str; 2] = ["--noprofile", "--norc"];
        let mut words = options.iter();
        while let Some(word) = words.next() {
            let Some(word) = word.to_str() else {
                return false;
            };
            let known = match word.as_bytes() {
                _ if self == Runner::Node => {
                    NODE_OPTIONS.contains(&word)
                        || NODE_VALUES.iter().any(|prefix| {
                            word.strip_prefix(prefix).is_some_and(|value| {
                                value.bytes().all(|b| b.is_ascii_alphanumeric())
                            })
                        })
                }
                // A shell's `-` ends its options (`#!/bin/sh -`).
                b"-" if shell => true,
                _ if shell && SHELL_LONG.contains(&word) => true,
                // `+` clusters are a shell's; python reads `+u` as a file.
                [b'+', ..] if !shell => false,
                [b'-' | b'+', cluster @ ..] if !cluster.is_empty() && cluster[0] != b'-' => {
                    let (cluster, named) = match (shell, cluster.split_last()) {
                        (true, Some((b'o', rest))) => (rest, true),
                        _ => (cluster, false),
                    };
                    let letters_known = cluster.iter().all(|option| letters.contains(option));
                    let name_known = !named
                        || words
                            .next()
                            .and_then(|name| name.to_str())
                            .is_some_and(|name| SHELL_OPTIONS.contains(&name));
                    letters_known && name_known
                }
                _ => false,
            };
            if !known {
                return false;
            }
        }
        true
    }
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

    const PATH: &str = "/usr/bin:/bin";

    #[test]
    fn what_a_line_runs() {
        // (interpreter, its argument, the script's arguments) -> (program,
        // argv after argv[0], the words before the script)
        type Case<'a> = (&'a str, Option<&'a str>, &'a str, &'a str, &'a str, &'a str);
        let cases: &[Case] = &[
            (
                "/usr/bin/python3",
                None,
                "a b",
                "/usr/bin/python3",
                "/s a b",
                "",
            ),
            (
                "/usr/bin/python3",
                Some("-u"),
                "",
                "/usr/bin/python3",
                "-u /s",
                "-u",
            ),
            (
                "/usr/bin/make",
                Some("-f"),
                "all",
                "/usr/bin/make",
                "-f /s all",
                "-f",
            ),
            ("/usr/bin/env", Some("sh"), "x", "/usr/bin/sh", "/s x", ""),
            (
                "/usr/bin/env",
                Some("-S sh -e"),
                "",
                "/usr/bin/sh",
                "-e /s",
                "-e",
            ),
            (
                "/usr/bin/env",
                Some("-Ssh  -e"),
                "",
                "/usr/bin/sh",
                "-e /s",
                "-e",
            ),
            (
                "/usr/bin/env",
                Some("-S sh\u{b}-e"),
                "",
                "/usr/bin/sh",
                "-e /s",
                "-e",
            ),
            (
                "/usr/bin/env",
                Some("--split-string=sh -e"),
                "",
                "/usr/bin/sh",
                "-e /s",
                "-e",
            ),
            (
                "/usr/bin/env",
                Some("-S -i -u HOME sh"),
                "",
                "/bin/sh",
                "/s",
                "",
            ),
            (
                "/usr/bin/env",
                Some("-S -- sh"),
                "",
                "/usr/bin/sh",
                "/s",
                "",
            ),
            (
                "/usr/bin/env",
                Some("-vS sh -e"),
                "a",
                "/usr/bin/sh",
                "-e /s a",
                "-e",
            ),
            ("/usr/bin/env", Some("-iS sh"), "", "/bin/sh", "/s", ""),
            (
                "/usr/bin/env",
                Some("-S -u PATH sh"),
                "",
                "/bin/sh",
                "/s",
                "",
            ),
            (
                "/usr/bin/env",
                Some("-S /bin/sh -e"),
                "",
                "/bin/sh",
                "-e /s",
                "-e",
            ),
        ];
        for &(interpreter, argument, args, program, argv, options) in cases {
            let got = interpreted(
                Path::new(interpreter),
                Path::new(interpreter),
                argument.map(OsStr::new),
                Path::new("/s"),
                &words(args),
                OsStr::new(PATH),
            )
            .unwrap_or_else(|error| panic!("{interpreter} {argument:?}: {error}"));
            assert_eq!(
                got.program,
                Path::new(program),
                "{interpreter} {argument:?}"
            );
            assert_eq!(&got.argv[1..], words(argv), "{interpreter} {argument:?}");
            assert_eq!(got.options, words(options), "{interpreter} {argument:?}");
        }
    }

    #[test]
    fn what_the_check_does_not_follow_is_refused() {
        let cases = [
            // Assignments, a directory change, other options.
            "-S NODE_OPTIONS=-r./x node",
            "-S -C /tmp sh",
            "--chdir=/tmp sh",
            "-a name sh",
            "-S -a name sh",
            "-iC/tmp sh",
            // Quoting env -S interprets.
            "-S sh -c 'x'",
            "-S sh ${HOME}",
            // No program but the script itself; none; an unknown one, a
            // relative one, env again.
            "-S -i",
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
                OsStr::new(PATH),
            );
            assert!(got.is_err(), "{argument:?}: {got:?}");
        }
    }

    #[test]
    fn runners_with_options_that_name_no_code_read_their_script_only() {
        let python = Path::new("/usr/bin/python3.11");
        let cases: &[(&Path, &str, bool)] = &[
            (python, "", true),
            (python, "-u", true),
            (python, "-I -B", true),
            (python, "-m pip", false),
            (python, "-uc", false),
            (python, "-i", false),
            (python, "-Wignore", false),
            (python, "--check-hash-based-pycs always", false),
            (Path::new("/usr/bin/dash"), "-e", true),
            (Path::new("/usr/bin/bash"), "-euo pipefail", true),
            (Path::new("/usr/bin/bash"), "-o errexit -x", true),
            (Path::new("/usr/bin/zsh"), "-o shinstdin", false),
            (Path::new("/usr/bin/bash"), "-l", false),
            (Path::new("/usr/bin/bash"), "-i", false),
            (Path::new("/usr/bin/bash"), "--login", false),
            (Path::new("/usr/bin/bash"), "-c", false),
            (Path::new("/usr/bin/bash"), "--rcfile", false),
            (Path::new("/usr/bin/bash"), "--noprofile --norc", true),
            (Path::new("/usr/bin/dash"), "-", true),
            (python, "+u", false),
            (Path::new("/usr/bin/ksh"), "-E", false),
            (Path::new("/usr/bin/perl"), "-w -T", true),
            (Path::new("/usr/bin/perl"), "-Mstrict", false),
            (Path::new("/usr/bin/node"), "--no-warnings", true),
            (
                Path::new("/usr/bin/node"),
                "--no-warnings=ExperimentalWarning",
                true,
            ),
            (
                Path::new("/usr/bin/node"),
                "--max-old-space-size=4096",
                true,
            ),
            (Path::new("/usr/bin/node"), "--require", false),
            (Path::new("/usr/bin/node"), "-C", false),
            (Path::new("/usr/bin/node"), "--inspect", false),
            (Path::new("/usr/bin/node"), "--import=./x.mjs", false),
        ];
        for &(program, options, bare) in cases {
            let runner = Runner::of(program).unwrap();
            assert_eq!(
                runner.reads_only_its_script(&words(options)),
                bare,
                "{} {options}",
                program.display()
            );
        }
        assert_eq!(Runner::of(Path::new("/usr/bin/make")), None);
        assert!(runs_another(Path::new("/usr/bin/nice")).is_some());
        assert!(runs_another(Path::new("/usr/bin/make")).is_none());
        // Probe 126: the dynamic loader runs the program it is given.
        for loader in [
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/lib/ld-linux-aarch64.so.1",
            "/lib/ld-musl-x86_64.so.1",
            "/usr/bin/ld.so",
            // Review 127: glibc before 2.34, s390x and POWER.
            "/lib/x86_64-linux-gnu/ld-2.31.so",
            "/lib64/ld64.so.2",
            // Review 129: MIPS and 32-bit POWER, glibc 2.3.
            "/lib/ld.so.1",
            "/lib/ld-2.3.6.so",
        ] {
            assert!(runs_another(Path::new(loader)).is_some(), "{loader}");
        }
        assert!(runs_another(Path::new("/usr/bin/ld")).is_none());
        assert!(runs_another(Path::new("/usr/lib/ld-2.x.so")).is_none());
    }
}
