//! The table and its rule, on real directories: `w/` plays what the
//! sandbox can write, `ro/` what it cannot.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{planted_instructions, Request};

struct Place {
    _dir: tempfile::TempDir,
    ro: PathBuf,
    w: PathBuf,
}

fn place() -> Place {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let (ro, w) = (root.join("ro"), root.join("w"));
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&w).unwrap();
    Place { _dir: dir, ro, w }
}

/// `{w}` and `{ro}` replaced in each argument.
fn check(
    place: &Place,
    program: &str,
    args: &str,
    cwd: &Path,
    env: &[&str],
    own_env: bool,
) -> bool {
    let expand = |text: &str| {
        text.replace("{w}", place.w.to_str().unwrap())
            .replace("{ro}", place.ro.to_str().unwrap())
    };
    let argv: Vec<OsString> = std::iter::once(OsString::from(program))
        .chain(
            args.split_whitespace()
                .map(|arg| OsString::from(expand(arg))),
        )
        .collect();
    let env: Vec<OsString> = env
        .iter()
        .map(|entry| OsString::from(expand(entry)))
        .collect();
    let writable_root = place.w.clone();
    planted_instructions(
        &Request {
            program: Path::new(program),
            argv: &argv,
            cwd,
            env: &env,
            takes_requester_environment: own_env,
        },
        &|path: &Path| path.starts_with(&writable_root),
    )
    .is_some()
}

/// (program, arguments, cwd, environment, takes the requester's, refused)
type Case<'a> = (&'a str, &'a str, &'a Path, &'a [&'a str], bool, bool);

#[test]
fn the_table_refuses_exactly_what_the_sandbox_could_have_planted() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let cases: &[Case<'_>] = &[
        ("/usr/bin/git", "status", &ro, &[], false, false),
        ("/usr/bin/git", "status", &w, &[], false, true),
        (
            "/usr/lib/git-core/git-upload-pack",
            ".",
            &w,
            &[],
            false,
            true,
        ),
        ("/usr/bin/git", "-C {w} status", &ro, &[], false, true),
        ("/usr/bin/git", "-C{w} status", &ro, &[], false, true),
        (
            "/usr/bin/git",
            "--git-dir={w}/repo status",
            &ro,
            &[],
            false,
            true,
        ),
        (
            "/usr/bin/git",
            "--work-tree {w}/new/deeper status",
            &ro,
            &[],
            false,
            true,
        ),
        (
            "/usr/bin/git",
            "-c core.pager=true log",
            &ro,
            &[],
            false,
            true,
        ),
        ("/usr/bin/git", "log -c", &ro, &[], false, false),
        ("/usr/bin/git", "status", &ro, &["HOME={w}"], false, true),
        (
            "/usr/bin/git",
            "status",
            &ro,
            &["XDG_CONFIG_HOME={w}/cfg"],
            false,
            true,
        ),
        ("/usr/bin/git", "status", &ro, &["GIT_TRACE=1"], true, true),
        (
            "/usr/bin/git",
            "status",
            &ro,
            &["GIT_TRACE=1"],
            false,
            false,
        ),
        ("/usr/bin/make", "", &ro, &[], false, false),
        ("/usr/bin/make", "-f {w}/Makefile", &ro, &[], false, true),
        ("/usr/bin/make", "--directory={w}", &ro, &[], false, true),
        ("/usr/bin/make", "--eval=x:", &ro, &[], false, true),
        ("/usr/bin/make", "", &ro, &["MAKEFLAGS=-f/x"], true, true),
        (
            "/usr/lib/node_modules/npm/bin/npm-cli.js",
            "test",
            &w,
            &[],
            false,
            true,
        ),
        ("/usr/bin/npm", "--prefix {w} test", &ro, &[], false, true),
        ("/usr/bin/cargo", "build", &w, &[], false, true),
        (
            "/usr/bin/cargo",
            "--config build.rustc-wrapper=x build",
            &ro,
            &[],
            false,
            true,
        ),
        (
            "/usr/bin/cargo",
            "build --manifest-path {w}/Cargo.toml",
            &ro,
            &[],
            false,
            true,
        ),
        ("/usr/bin/pip3", "install ./pkg", &w, &[], false, true),
        ("/usr/bin/pip3", "install {w}/pkg", &ro, &[], false, true),
        ("/usr/bin/pip3", "install requests", &ro, &[], false, false),
        (
            "/usr/bin/python3.11",
            "-m http.server",
            &w,
            &[],
            false,
            true,
        ),
        ("/usr/bin/python3", "{w}/setup.py", &ro, &[], false, true),
        ("/usr/bin/python3", "-c pass {w}", &ro, &[], false, false),
        ("/usr/bin/bash", "{w}/script.sh", &ro, &[], false, true),
        (
            "/usr/bin/bash",
            "-c true {w}/script.sh",
            &ro,
            &[],
            false,
            false,
        ),
        ("/usr/bin/bash", "script.sh", &w, &[], false, true),
        ("/usr/bin/bash", "-c true", &w, &[], false, false),
        ("/usr/bin/perl", "-e 1", &w, &[], false, false),
        ("/usr/bin/node", "-e 1", &w, &[], false, true),
        ("/usr/share/maven/bin/mvn", "-v", &w, &[], false, true),
        (
            "/usr/share/maven/bin/mvn",
            "-f {w}/pom.xml package",
            &ro,
            &[],
            false,
            true,
        ),
        (
            "/usr/bin/mvn",
            "package",
            &ro,
            &["MAVEN_OPTS=-Dx"],
            true,
            true,
        ),
        ("/usr/bin/gradle", "-p {w} build", &ro, &[], false, true),
        ("/usr/bin/go", "generate ./...", &w, &[], false, true),
        ("/usr/bin/go", "build", &ro, &[], false, false),
        ("/usr/bin/cmake", "--build build", &w, &[], false, true),
        ("/usr/bin/ninja", "-C {w}/build", &ro, &[], false, true),
        (
            "/usr/bin/just",
            "--justfile {w}/justfile",
            &ro,
            &[],
            false,
            true,
        ),
        ("/usr/bin/rake", "", &w, &[], false, true),
        ("/usr/bin/bundle", "exec rspec", &w, &[], false, true),
        ("/usr/bin/composer", "install", &w, &[], false, true),
        ("/usr/bin/poetry", "install", &w, &[], false, true),
        ("/usr/bin/uv", "run x", &w, &[], false, true),
        ("/usr/bin/tox", "", &w, &[], false, true),
        ("/usr/bin/pre-commit", "run", &w, &[], false, true),
        ("/usr/bin/deno", "task build", &w, &[], false, true),
        ("/usr/bin/bun", "run build", &w, &[], false, true),
        ("/usr/bin/zsh", "-c true", &ro, &["HOME={w}"], false, true),
        ("/usr/bin/touch", "{w}/x", &w, &["GIT_DIR=x"], true, false),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter(|(program, args, cwd, env, own, refused)| {
            check(&place, program, args, cwd, env, *own) != *refused
        })
        .map(|(program, args, cwd, env, _, refused)| {
            format!(
                "{program} {args} in {} with {env:?}: expected refused={refused}",
                cwd.display()
            )
        })
        .collect();
    assert_eq!(failures, Vec::<String>::new());
}
