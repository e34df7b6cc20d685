//! Programs that read what to run from files, and the check that keeps
//! them from leaving the sandbox when the sandbox could have written those
//! files.
//!
//! An allowed `git status` runs what the repository's config says
//! (`core.fsmonitor`, hooks, `core.pager`, `diff.external`, filter
//! drivers, included config files); `make` runs its Makefile, `npm` its
//! `package.json` scripts, `cargo` its build scripts and `.cargo/config.toml`,
//! `pip` a package's `setup.py`, `mvn` its `.mvn/jvm.config`, an interpreter
//! its script. Escalating such a
//! program out of the sandbox escalates whatever those files say, so
//! [`planted_instructions`] names the first place the sandbox could have
//! planted them, and the policy refuses the escalation (the exec runs in
//! place, inside the sandbox).
//!
//! The rule is deliberately simple, so that it is easy to explain and hard
//! to get wrong:
//!
//! - Programs that search their working directory (and for most, its
//!   ancestors: git's repository discovery, cargo's workspace and config
//!   search, npm's package root, Python's `sys.path`) are refused when the
//!   working directory or any ancestor up to `/` is writable from the
//!   sandbox: a repository, Makefile or `package.json` could have been
//!   created there, even during an approval.
//! - Arguments that name another directory or file to read (`git -C`,
//!   `--git-dir`, `make -f`, `npm --prefix`, `cargo --manifest-path`, a
//!   script operand, ...) are refused the same way, and arguments that are
//!   instructions themselves (`git -c`, `cargo --config`, `make --eval`)
//!   are refused outright.
//! - Per-user and system configuration files the program reads
//!   (`~/.gitconfig`, `~/.npmrc`, `~/.cargo/config.toml`, ...) are checked
//!   for both the server's home and the one the request names.
//! - When the escalated program takes the requester's environment (a
//!   sandboxed escalation with extra grants), variables that point it at
//!   other files or commands (`GIT_*`, `MAKEFLAGS`, `npm_config_*`,
//!   `CARGO_*`, `PIP_*`, `PYTHON*`) refuse it too.
//!
//! A path that does not exist is judged by its nearest existing ancestor:
//! what the sandbox cannot create cannot be planted. Programs not in the
//! table keep their behaviour. The table matches the canonical path's
//! basename, as the rules do.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One program (or family) that reads its instructions from files.
struct InstructionReader {
    /// Canonical basenames it is known by.
    names: &'static [&'static str],
    /// Basename prefixes: `git-` for git's own commands, `python3.` for
    /// versioned interpreters.
    prefixes: &'static [&'static str],
    /// What it reads, for the refusal note.
    reads: &'static str,
    /// Searches its working directory and each ancestor.
    searches_upwards: bool,
    /// Options whose value is a directory it then works in (and searches
    /// from); relative paths after them are taken from there.
    directory_options: &'static [&'static str],
    /// Options whose value names a file or directory it reads.
    path_options: &'static [&'static str],
    /// Options whose value is an instruction itself (a config value that
    /// can name a command).
    instruction_options: &'static [&'static str],
    /// Options whose value is the program text (`-c`, `-e`): no script
    /// operand follows.
    inline_options: &'static [&'static str],
    /// Its options end at the first operand (git's global options).
    options_end_at_operand: bool,
    /// Its first operand is a file of instructions: a script.
    script_operand: bool,
    /// Every operand may be a local path it builds and runs (`pip install
    /// ./pkg`).
    path_operands: bool,
    /// Configuration files: `~/` from a home directory, `xdg:` from the
    /// XDG config directory, `$NAME/` from a variable, `@prefix/` from the
    /// program's installation prefix, or absolute.
    config_files: &'static [&'static str],
    /// Variables (by prefix) that point it at other files or commands.
    environment: &'static [&'static str],
}

const NONE: &[&str] = &[];

const READER: InstructionReader = InstructionReader {
    names: NONE,
    prefixes: NONE,
    reads: "",
    searches_upwards: false,
    directory_options: NONE,
    path_options: NONE,
    instruction_options: NONE,
    inline_options: NONE,
    options_end_at_operand: false,
    script_operand: false,
    path_operands: false,
    config_files: NONE,
    environment: NONE,
};

/// The table: what each program reads instructions from.
const READERS: &[InstructionReader] = &[
    InstructionReader {
        names: &["git"],
        prefixes: &["git-"],
        reads: "its repository (config, hooks, attributes, submodules)",
        searches_upwards: true,
        directory_options: &["-C"],
        path_options: &["--git-dir", "--work-tree"],
        instruction_options: &["-c", "--config-env", "--exec-path"],
        options_end_at_operand: true,
        config_files: &[
            "~/.gitconfig",
            "xdg:git/config",
            "xdg:git/attributes",
            "/etc/gitconfig",
            "@prefix/etc/gitconfig",
        ],
        environment: &["GIT_"],
        ..READER
    },
    InstructionReader {
        names: &["make", "gmake", "remake"],
        reads: "its makefiles",
        searches_upwards: true,
        directory_options: &["-C", "--directory"],
        path_options: &["-f", "--file", "--makefile", "-I", "--include-dir"],
        instruction_options: &["--eval"],
        environment: &["MAKEFILES", "MAKEFLAGS", "GNUMAKEFLAGS", "MFLAGS"],
        ..READER
    },
    InstructionReader {
        names: &[
            "npm",
            "npx",
            "npm-cli.js",
            "npx-cli.js",
            "yarn",
            "yarnpkg",
            "yarn.js",
            "pnpm",
            "pnpx",
            "pnpm.cjs",
            "corepack",
        ],
        reads: "package.json scripts and .npmrc",
        searches_upwards: true,
        directory_options: &["-C", "--dir", "--cwd", "--prefix"],
        path_options: &["--userconfig", "--globalconfig"],
        instruction_options: &["--call", "--node-options", "--script-shell"],
        path_operands: true,
        config_files: &[
            "~/.npmrc",
            "~/.yarnrc",
            "~/.yarnrc.yml",
            "xdg:pnpm/rc",
            "/etc/npmrc",
            "/usr/etc/npmrc",
            "/usr/local/etc/npmrc",
        ],
        environment: &["npm_config_", "NPM_CONFIG_", "YARN_", "PNPM_", "COREPACK_"],
        ..READER
    },
    InstructionReader {
        names: &["cargo", "rustup"],
        prefixes: &["cargo-"],
        reads: "Cargo.toml, build scripts, .cargo/config.toml and rust-toolchain files",
        searches_upwards: true,
        directory_options: &["-C"],
        path_options: &["--manifest-path", "--lockfile-path", "--path"],
        instruction_options: &["--config", "-Z"],
        config_files: &[
            "~/.cargo/config.toml",
            "~/.cargo/config",
            "$CARGO_HOME/config.toml",
            "$CARGO_HOME/config",
            "~/.rustup/settings.toml",
            "$RUSTUP_HOME/settings.toml",
        ],
        environment: &["CARGO_", "RUSTC", "RUSTFLAGS", "RUSTDOCFLAGS", "RUSTUP_"],
        ..READER
    },
    InstructionReader {
        names: &["mvn", "mvnDebug", "mvnw", "gradle", "gradlew", "ant", "sbt"],
        reads: "its build files (pom.xml, .mvn/jvm.config, build.gradle, build.xml)",
        searches_upwards: true,
        directory_options: &["-p", "--project-dir"],
        path_options: &[
            "-f",
            "--file",
            "-s",
            "--settings",
            "-gs",
            "--global-settings",
            "-t",
            "--toolchains",
            "-b",
            "--build-file",
            "-c",
            "--settings-file",
            "-I",
            "--init-script",
            "-g",
            "--gradle-user-home",
            "-buildfile",
        ],
        config_files: &[
            "~/.mavenrc",
            "/etc/mavenrc",
            "/usr/local/etc/mavenrc",
            "~/.m2",
            "~/.gradle",
            "~/.ant",
            "~/.sbt",
        ],
        environment: &["MAVEN_", "M2_", "GRADLE_", "ANT_", "SBT_", "JAVA_"],
        ..READER
    },
    InstructionReader {
        // Build tools and task runners that read the project they find in
        // (or above) their working directory, and run what it says.
        names: &[
            "go",
            "cmake",
            "ninja",
            "meson",
            "scons",
            "just",
            "rake",
            "bundle",
            "bundler",
            "composer",
            "poetry",
            "uv",
            "pipenv",
            "tox",
            "nox",
            "pre-commit",
            "deno",
            "bun",
        ],
        reads: "the project files it finds from its working directory",
        searches_upwards: true,
        directory_options: &["-C", "--directory", "--project", "--cwd"],
        path_options: &["-f", "--file", "--justfile", "--config", "-c", "--rakefile"],
        path_operands: true,
        environment: &[
            "GO",
            "CMAKE_",
            "BUNDLE_",
            "COMPOSER",
            "POETRY_",
            "UV_",
            "TOX_",
            "PRE_COMMIT",
        ],
        ..READER
    },
    InstructionReader {
        names: &["pip", "pip3"],
        prefixes: &["pip3."],
        reads: "the packages it builds (setup.py, pyproject.toml) and pip.conf",
        searches_upwards: true,
        path_options: &[
            "-r",
            "--requirement",
            "-c",
            "--constraint",
            "-e",
            "--editable",
            "-f",
            "--find-links",
            "--src",
        ],
        path_operands: true,
        config_files: &[
            "xdg:pip/pip.conf",
            "~/.pip/pip.conf",
            "/etc/pip.conf",
            "/etc/xdg/pip/pip.conf",
            "~/.pyenv/version",
            "$PYENV_ROOT/version",
        ],
        environment: &["PIP_", "PYTHON", "VIRTUAL_ENV", "PYENV"],
        ..READER
    },
    InstructionReader {
        names: &["python", "python2", "python3"],
        prefixes: &["python3.", "python2."],
        reads: "its script and modules (sys.path starts in the working directory)",
        searches_upwards: true,
        inline_options: &["-c", "-m"],
        script_operand: true,
        config_files: &["~/.local/lib", "~/.pyenv/version", "$PYENV_ROOT/version"],
        environment: &["PYTHON", "PYENV"],
        ..READER
    },
    InstructionReader {
        names: &["node", "nodejs"],
        reads: "its script and the modules it requires (node_modules up the tree)",
        searches_upwards: true,
        path_options: &["-r", "--require", "--import", "--loader"],
        inline_options: &["-e", "--eval", "-p", "--print"],
        script_operand: true,
        ..READER
    },
    InstructionReader {
        names: &["perl", "ruby"],
        reads: "its script",
        path_options: &["-I"],
        inline_options: &["-e", "-E"],
        script_operand: true,
        ..READER
    },
    InstructionReader {
        names: &["sh", "bash", "dash", "ksh", "mksh"],
        reads: "its script",
        inline_options: &["-c"],
        script_operand: true,
        ..READER
    },
    InstructionReader {
        names: &["zsh"],
        reads: "its script and ~/.zshenv",
        inline_options: &["-c"],
        script_operand: true,
        config_files: &["~/.zshenv", "/etc/zsh/zshenv", "/etc/zshenv"],
        ..READER
    },
];

/// The program's entry in the table, by its canonical path's basename.
fn reader_of(program: &Path) -> Option<&'static InstructionReader> {
    let name = program.file_name()?.to_str()?;
    READERS.iter().find(|reader| {
        reader.names.contains(&name)
            || reader
                .prefixes
                .iter()
                .any(|prefix| name.starts_with(prefix) && name.len() > prefix.len())
    })
}

/// What the check needs to know about one request.
pub(crate) struct Request<'a> {
    /// The canonical path of the executable.
    pub(crate) program: &'a Path,
    pub(crate) argv: &'a [OsString],
    /// The canonical path of the directory it runs in.
    pub(crate) cwd: &'a Path,
    /// The requester's environment (`NAME=value`).
    pub(crate) env: &'a [OsString],
    /// The escalated program gets (a filtered copy of) the requester's
    /// environment, not the session's.
    pub(crate) takes_requester_environment: bool,
}

/// Why escalating `request` would run instructions the sandbox could have
/// planted, or `None` when it would not (or the program is not in the
/// table). `writable` says whether the sandbox could create or change a
/// path (already resolved).
pub(crate) fn planted_instructions(
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let reader = reader_of(request.program)?;
    let name = request
        .program
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let refused = |place: &Path, how: &str| {
        Some(format!(
            "escalation refused: {name} reads {} from {}{how}, which the sandbox can write",
            reader.reads,
            place.display()
        ))
    };
    if reader.searches_upwards {
        if let Some(place) = writable_place(request.cwd, request.cwd, writable) {
            return refused(&place, "");
        }
    }
    if let Some(reason) = arguments_refusal(reader, request, writable, &refused) {
        return Some(reason);
    }
    for file in reader.config_files {
        for candidate in config_candidates(file, request) {
            if let Some(place) = writable_place(&candidate, request.cwd, writable) {
                return refused(&place, &format!(" (for {})", candidate.display()));
            }
        }
    }
    if request.takes_requester_environment {
        for entry in request.env {
            let entry = entry.as_bytes();
            let variable = entry.split(|byte| *byte == b'=').next().unwrap_or(entry);
            if reader
                .environment
                .iter()
                .any(|prefix| variable.starts_with(prefix.as_bytes()))
            {
                return Some(format!(
                    "escalation refused: {name} would take {} from the sandbox's environment, \
                     which can point it at other files or commands",
                    String::from_utf8_lossy(variable)
                ));
            }
        }
    }
    None
}

/// Walks the arguments as the program would read them.
fn arguments_refusal(
    reader: &InstructionReader,
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
    refused: &dyn Fn(&Path, &str) -> Option<String>,
) -> Option<String> {
    let name = request
        .program
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let mut base = request.cwd.to_path_buf();
    let mut args = request.argv.iter().skip(1);
    let mut options_done = false;
    let mut first_operand = true;
    while let Some(arg) = args.next() {
        let text = arg.as_bytes();
        if !options_done && text == b"--" {
            options_done = true;
            continue;
        }
        if !options_done && text.starts_with(b"-") && text.len() > 1 {
            let mut value_of = |options: &[&str]| -> Option<OsString> {
                options.iter().find_map(|option| {
                    option_value(arg, option).map(|value| value.or_else(|| args.next().cloned()))
                })?
            };
            if let Some(option) = reader
                .instruction_options
                .iter()
                .find(|option| option_value(arg, option).is_some())
            {
                return Some(format!(
                    "escalation refused: {name} {option} gives it instructions to run outside \
                     the sandbox"
                ));
            }
            if let Some(directory) = value_of(reader.directory_options) {
                if let Some(place) = writable_place(Path::new(&directory), &base, writable) {
                    return refused(&place, "");
                }
                base = base.join(&directory);
                continue;
            }
            if let Some(path) = value_of(reader.path_options) {
                if let Some(place) = writable_place(Path::new(&path), &base, writable) {
                    return refused(&place, "");
                }
                continue;
            }
            if value_of(reader.inline_options).is_some() {
                // The program text is an argument, which the rule matched.
                first_operand = false;
            }
            continue;
        }
        if reader.options_end_at_operand {
            options_done = true;
        }
        let is_script = reader.script_operand && first_operand;
        first_operand = false;
        if is_script || reader.path_operands {
            if let Some(place) = writable_place(Path::new(arg), &base, writable) {
                return refused(&place, "");
            }
        }
        if reader.script_operand && !reader.path_operands {
            // The script's own arguments are its business.
            break;
        }
    }
    None
}

/// `Some(None)`: `arg` is `option` and its value is the next argument;
/// `Some(Some(value))`: the value is attached (`--opt=value`, `-Ovalue`).
fn option_value(arg: &OsStr, option: &str) -> Option<Option<OsString>> {
    let arg = arg.as_bytes();
    let option = option.as_bytes();
    if arg == option {
        return Some(None);
    }
    let rest = arg.strip_prefix(option)?;
    if option.starts_with(b"--") {
        let value = rest.strip_prefix(b"=")?;
        return Some(Some(OsStr::from_bytes(value).to_owned()));
    }
    // A short option with its value attached (`-C/dir`).
    (option.len() == 2).then(|| Some(OsStr::from_bytes(rest).to_owned()))
}

/// Where a configuration file entry points, for every home the program
/// might use: the server's and the one in the request.
fn config_candidates(file: &str, request: &Request<'_>) -> Vec<PathBuf> {
    let requested = |name: &str| -> Option<PathBuf> {
        request.env.iter().find_map(|entry| {
            let value = entry.as_bytes().strip_prefix(name.as_bytes())?;
            let value = value.strip_prefix(b"=")?;
            Some(PathBuf::from(OsStr::from_bytes(value)))
        })
    };
    let variable = |name: &str| -> Vec<PathBuf> {
        std::env::var_os(name)
            .map(PathBuf::from)
            .into_iter()
            .chain(requested(name))
            .filter(|path| path.is_absolute())
            .collect()
    };
    let homes = variable("HOME");
    if let Some(relative) = file.strip_prefix("~/") {
        return homes.iter().map(|home| home.join(relative)).collect();
    }
    if let Some(relative) = file.strip_prefix("xdg:") {
        let mut bases = variable("XDG_CONFIG_HOME");
        bases.extend(homes.iter().map(|home| home.join(".config")));
        return bases.iter().map(|base| base.join(relative)).collect();
    }
    if let Some(rest) = file.strip_prefix('$') {
        let (name, relative) = rest.split_once('/').unwrap_or((rest, ""));
        return variable(name)
            .iter()
            .map(|base| base.join(relative))
            .collect();
    }
    if let Some(relative) = file.strip_prefix("@prefix/") {
        // /usr/local/bin/git reads /usr/local/etc/gitconfig.
        return request
            .program
            .parent()
            .and_then(Path::parent)
            .map(|prefix| prefix.join(relative))
            .into_iter()
            .collect();
    }
    vec![PathBuf::from(file)]
}

/// The first place at or above `path` (relative to `base`) the sandbox
/// could write, symlinks resolved. A path that does not exist is judged by
/// its nearest existing ancestor; one that cannot be resolved at all
/// counts as writable.
fn writable_place(path: &Path, base: &Path, writable: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let full = base.join(path);
    let mut candidate = full.as_path();
    let existing = loop {
        if let Ok(canonical) = std::fs::canonicalize(candidate) {
            break canonical;
        }
        match candidate.parent() {
            Some(parent) => candidate = parent,
            None => return Some(full),
        }
    };
    existing
        .ancestors()
        .find(|ancestor| writable(ancestor))
        .map(Path::to_path_buf)
}

#[cfg(test)]
#[path = "planted_tests.rs"]
mod tests;
