//! `Run`: execute the command in place, with zsh's fallbacks.
//!
//! The patched zsh hands over before its own `#!` and `/bin/sh` fallbacks
//! (running them there would bypass the server), so they are replayed here,
//! on the same path string zsh would have used. Their failures are reported
//! in zsh's own words, behind the message prefix zsh passed (`zsh:1: `), so
//! that they read as under stock zsh.

use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use execgate_protocol::{looks_like_shell_text, parse_shebang, WrapperArgs, SHEBANG_LIMIT};
use nix::errno::Errno;
use nix::unistd::execv;

use crate::EXIT_CANNOT_RUN;

/// Exit status for "not found", as in zsh.
const EXIT_NOT_FOUND: i32 = 127;

pub(crate) fn run_in_place(args: &WrapperArgs) -> ! {
    let errno = exec(args.exec_path.as_os_str(), &args.argv);
    let head = read_head(&args.exec_path);
    let shebang = parse_shebang(&head);
    // The remaining arguments follow the script's path, as zsh passes them.
    let script_args = || {
        std::iter::once(args.exec_path.clone().into_os_string())
            .chain(args.argv.iter().skip(1).cloned())
    };
    match (errno, &shebang) {
        (Errno::ENOEXEC, None) if looks_like_shell_text(&head) => {
            let argv: Vec<OsString> = std::iter::once("sh".into()).chain(script_args()).collect();
            exec(OsStr::new("/bin/sh"), &argv);
        }
        (Errno::ENOEXEC | Errno::ENOENT, Some(shebang)) => {
            let mut argv = vec![shebang.interpreter.clone()];
            argv.extend(shebang.argument.clone());
            argv.extend(script_args());
            if errno == Errno::ENOEXEC {
                // As zsh: try the interpreter itself; if that fails too, the
                // script's own error is reported below.
                exec(&shebang.interpreter, &argv);
            } else {
                if !shebang.interpreter.as_bytes().starts_with(b"/") {
                    if let Some(found) = search_path(&shebang.interpreter) {
                        exec(found.as_os_str(), &argv);
                    }
                }
                report_as_zsh(
                    args,
                    &[
                        args.exec_path.as_os_str().as_bytes(),
                        b": bad interpreter: ",
                        shebang.interpreter.as_bytes(),
                        b": ",
                        describe(errno).as_bytes(),
                    ],
                );
                std::process::exit(EXIT_NOT_FOUND)
            }
        }
        _ => {}
    }
    report_as_zsh(
        args,
        &[
            describe(errno).as_bytes(),
            b": ",
            args.command_name.as_bytes(),
        ],
    );
    std::process::exit(match errno {
        Errno::EACCES | Errno::ENOEXEC => EXIT_CANNOT_RUN,
        _ => EXIT_NOT_FOUND,
    })
}

/// Prints one of zsh's own exec failure messages as zsh would: behind the
/// prefix it passed, in one write.
fn report_as_zsh(args: &WrapperArgs, parts: &[&[u8]]) {
    let mut line = args.message_prefix.as_bytes().to_vec();
    for part in parts {
        line.extend_from_slice(part);
    }
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
}

/// execv; returns only on failure.
fn exec(path: &OsStr, argv: &[OsString]) -> Errno {
    let (Ok(path), Ok(argv)) = (
        CString::new(path.as_bytes()),
        argv.iter()
            .map(|arg| CString::new(arg.as_bytes()))
            .collect::<Result<Vec<_>, _>>(),
    ) else {
        // Arguments reached us as C strings, so none can hold a NUL.
        return Errno::EINVAL;
    };
    match execv(&path, &argv) {
        Err(errno) => errno,
        Ok(never) => match never {},
    }
}

fn read_head(path: &Path) -> Vec<u8> {
    let mut head = Vec::with_capacity(SHEBANG_LIMIT);
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(SHEBANG_LIMIT as u64).read_to_end(&mut head);
    }
    head
}

/// Looks a relative `#!` interpreter up in `PATH`, as zsh's `pathprog` does.
fn search_path(name: &OsStr) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
        && std::fs::metadata(path).is_ok_and(|meta| meta.is_file())
}

/// zsh's `%e`: the system's message with a lowercase first letter.
fn describe(errno: Errno) -> String {
    let text = std::io::Error::from(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
