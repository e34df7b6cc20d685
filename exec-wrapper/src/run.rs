//! `Run`: execute the command in place, with zsh's fallbacks.
//!
//! The patched zsh hands over before its own `#!` and `/bin/sh` fallbacks
//! (running them there would bypass the server), so they are replayed here,
//! on the same path string zsh would have used.

use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use execgate_protocol::{looks_like_shell_text, parse_shebang, WrapperArgs, SHEBANG_LIMIT};
use nix::errno::Errno;
use nix::unistd::execv;

use crate::{report, EXIT_CANNOT_RUN};

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
                exec(&shebang.interpreter, &argv);
            } else if !shebang.interpreter.as_bytes().starts_with(b"/") {
                if let Some(found) = search_path(&shebang.interpreter) {
                    exec(found.as_os_str(), &argv);
                }
            }
            report(&format!(
                "{}: bad interpreter: {}: {}",
                args.exec_path.display(),
                Path::new(&shebang.interpreter).display(),
                describe(errno)
            ));
            std::process::exit(EXIT_NOT_FOUND)
        }
        _ => {}
    }
    report(&format!(
        "{}: {}",
        describe(errno),
        args.exec_path.display()
    ));
    std::process::exit(match errno {
        Errno::EACCES | Errno::ENOEXEC => EXIT_CANNOT_RUN,
        _ => EXIT_NOT_FOUND,
    })
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
