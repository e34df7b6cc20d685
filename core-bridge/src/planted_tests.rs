//! The table and its rule, on real directories: `w/` plays what the
//! sandbox can write, `ro/` what it cannot.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{home_variables, in_table, planted_home, planted_instructions, Request};

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

/// `{w}` and `{ro}` replaced in each argument, and `{sp}` by a blank.
fn check(place: &Place, program: &str, args: &str, cwd: &Path, env: &[&str]) -> bool {
    let expand = |text: &str| {
        text.replace("{w}", place.w.to_str().unwrap())
            .replace("{ro}", place.ro.to_str().unwrap())
            .replace("{sp}", " ")
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
            writable_roots: std::slice::from_ref(&writable_root),
        },
        &|path: &Path| path.starts_with(&writable_root),
    )
    .is_some()
}

/// (program, arguments, cwd, environment, refused)
type Case<'a> = (&'a str, &'a str, &'a Path, &'a [&'a str], bool);

#[test]
fn the_table_refuses_exactly_what_the_sandbox_could_have_planted() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let (root, usr) = (Path::new("/"), Path::new("/usr"));
    // Links the host made, where the sandbox cannot write: `..` after one
    // is taken from where it leads (as after `/var/run -> /run`).
    std::os::unix::fs::symlink("/usr", ro.join("up")).unwrap();
    // One into `w/` one level down: among the working directory's own
    // entries, it would refuse every case run there.
    std::fs::create_dir(ro.join("links")).unwrap();
    std::os::unix::fs::symlink(&w, ro.join("links/to-w")).unwrap();
    let cases: &[Case<'_>] = &[
        ("/usr/bin/git", "status", &ro, &[], false),
        ("/usr/bin/git", "status", &w, &[], true),
        ("/usr/lib/git-core/git-upload-pack", ".", &w, &[], true),
        ("/usr/bin/git", "-C {w} status", &ro, &[], true),
        ("/usr/bin/git", "-C{w} status", &ro, &[], true),
        ("/usr/bin/git", "--git-dir={w}/repo status", &ro, &[], true),
        (
            "/usr/bin/git",
            "--work-tree {w}/new/deeper status",
            &ro,
            &[],
            true,
        ),
        ("/usr/bin/git", "-c core.pager=true log", &ro, &[], true),
        ("/usr/bin/git", "log -c", &ro, &[], false),
        ("/usr/bin/git", "status", &ro, &["HOME={w}"], true),
        // A relative home is wherever git is when it reads it (the top of
        // the work tree, `-C`'s directory): never trusted.
        ("/usr/bin/git", "status", &ro, &["HOME=../w"], true),
        ("/usr/bin/git", "status", &ro, &["HOME=."], true),
        (
            "/usr/bin/git",
            "status",
            &ro,
            &["XDG_CONFIG_HOME={w}/cfg"],
            true,
        ),
        (
            "/usr/bin/git",
            "status",
            &ro,
            &["XDG_CONFIG_HOME=../w/cfg"],
            true,
        ),
        ("/usr/bin/make", "", &ro, &[], false),
        ("/usr/bin/make", "-f {w}/Makefile", &ro, &[], true),
        ("/usr/bin/make", "--directory={w}", &ro, &[], true),
        ("/usr/bin/make", "--eval=x:", &ro, &[], true),
        // A descriptor or `/proc`, however spelled (regression: only the
        // absolute spelling was caught), and a walk through a place the
        // sandbox can write, wherever its `..` leads.
        ("/usr/bin/make", "-f proc/self/fd/7", root, &[], true),
        ("/usr/bin/make", "-f ../dev/fd/7", usr, &[], true),
        ("/usr/bin/make", "-f ../../proc/self/fd/7", usr, &[], true),
        ("/usr/bin/make", "-f /dev/../proc/self/fd/7", &ro, &[], true),
        ("/usr/bin/make", "-C proc/self/fd/8", root, &[], true),
        ("/usr/bin/make", "-f {w}/../ro/Makefile", &ro, &[], true),
        ("/usr/bin/make", "-f ../ro/Makefile", &ro, &[], false),
        ("/usr/bin/make", "-f {ro}/up/../dev/fd/7", &ro, &[], true),
        ("/usr/bin/make", "-f up/../dev/fd/7", &ro, &[], true),
        ("/usr/bin/make", "-f links/to-w/Makefile", &ro, &[], true),
        ("/usr/bin/make", "-f up/share/Makefile", &ro, &[], false),
        // npm's global config under `PREFIX` (regression: not looked at).
        (
            "/usr/lib/node_modules/npm/bin/npm-cli.js",
            "run build",
            &ro,
            &["PREFIX={w}/p"],
            true,
        ),
        (
            "/usr/lib/node_modules/npm/bin/npm-cli.js",
            "test",
            &w,
            &[],
            true,
        ),
        ("/usr/bin/npm", "--prefix {w} test", &ro, &[], true),
        // npm replaces `${NAME}` in its options with the variable, which
        // the sandbox sets (a probe's `TZ=tmp/ws npm install
        // --prefix=/${TZ}` ran the workspace's package.json outside).
        ("/usr/bin/npm", "install --prefix=/${TZ}", &ro, &[], true),
        (
            "/usr/bin/npm",
            "test --userconfig=/${TZ}/.npmrc",
            &ro,
            &[],
            true,
        ),
        ("/usr/bin/npm", "test -- ${X}", &ro, &[], true),
        ("/usr/bin/npm", "install --prefix /${TZ}", &ro, &[], true),
        ("/usr/bin/npm", "test -- $X", &ro, &[], false),
        ("/usr/bin/cargo", "build", &w, &[], true),
        (
            "/usr/bin/cargo",
            "--config build.rustc-wrapper=x build",
            &ro,
            &[],
            true,
        ),
        (
            "/usr/bin/cargo",
            "build --manifest-path {w}/Cargo.toml",
            &ro,
            &[],
            true,
        ),
        ("/usr/bin/pip3", "install ./pkg", &w, &[], true),
        ("/usr/bin/pip3", "install {w}/pkg", &ro, &[], true),
        ("/usr/bin/pip3", "install requests", &ro, &[], false),
        ("/usr/bin/python3.11", "-m http.server", &w, &[], true),
        ("/usr/bin/python3", "{w}/setup.py", &ro, &[], true),
        // The program text's arguments may name what it reads.
        ("/usr/bin/python3", "-c pass {w}", &ro, &[], true),
        ("/usr/bin/python3", "-c pass", &ro, &[], false),
        ("/usr/bin/bash", "{w}/script.sh", &ro, &[], true),
        ("/usr/bin/bash", "-c true {w}/script.sh", &ro, &[], true),
        ("/usr/bin/bash", "script.sh", &w, &[], true),
        ("/usr/bin/bash", "-c true", &w, &[], false),
        ("/usr/bin/perl", "-e 1", &w, &[], false),
        ("/usr/bin/node", "-e 1", &w, &[], true),
        ("/usr/share/maven/bin/mvn", "-v", &w, &[], true),
        (
            "/usr/share/maven/bin/mvn",
            "-f {w}/pom.xml package",
            &ro,
            &[],
            true,
        ),
        ("/usr/bin/gradle", "-p {w} build", &ro, &[], true),
        ("/usr/bin/go", "generate ./...", &w, &[], true),
        ("/usr/bin/go", "build", &ro, &[], false),
        ("/usr/bin/cmake", "--build build", &w, &[], true),
        ("/usr/bin/ninja", "-C {w}/build", &ro, &[], true),
        ("/usr/bin/just", "--justfile {w}/justfile", &ro, &[], true),
        ("/usr/bin/rake", "", &w, &[], true),
        ("/usr/bin/bundle", "exec rspec", &w, &[], true),
        ("/usr/bin/composer", "install", &w, &[], true),
        ("/usr/bin/poetry", "install", &w, &[], true),
        ("/usr/bin/uv", "run x", &w, &[], true),
        ("/usr/bin/tox", "", &w, &[], true),
        ("/usr/bin/pre-commit", "run", &w, &[], true),
        ("/usr/bin/deno", "task build", &w, &[], true),
        ("/usr/bin/bun", "run build", &w, &[], true),
        ("/usr/bin/zsh", "-c true", &ro, &["HOME={w}"], true),
    ];
    assert_eq!(failures(&place, cases), Vec::<String>::new());
}

/// The cases (program, arguments, refused) run from `cwd` that the check
/// decides otherwise.
fn failures_in(place: &Place, cwd: &Path, cases: &[(&str, &str, bool)]) -> Vec<String> {
    cases
        .iter()
        .filter(|(program, args, refused)| check(place, program, args, cwd, &[]) != *refused)
        .map(|(program, args, refused)| format!("{program} {args}: expected refused={refused}"))
        .collect()
}

/// The cases that are not as expected, described.
fn failures(place: &Place, cases: &[Case<'_>]) -> Vec<String> {
    cases
        .iter()
        .filter(|(program, args, cwd, env, refused)| {
            check(place, program, args, cwd, env) != *refused
        })
        .map(|(program, args, cwd, env, refused)| {
            format!(
                "{program} {args} in {} with {env:?}: expected refused={refused}",
                cwd.display()
            )
        })
        .collect()
}

/// Review findings: an option with a separate value, a `+` option, a
/// clustered option or an unknown one must not make the walk stop at, or
/// skip, the word that names what the sandbox planted; git's instruction
/// options after its subcommand are refused.
#[test]
fn the_walk_is_not_misled_by_option_values_clusters_or_subcommands() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let refused = |program: &'static str, args: &'static str| -> Case<'static> {
        (program, args, Path::new(""), &[], true)
    };
    let allowed = |program: &'static str, args: &'static str| -> Case<'static> {
        (program, args, Path::new(""), &[], false)
    };
    let from_ro: Vec<Case<'static>> = vec![
        refused("/usr/bin/python3", "-W ignore {w}/evil.py"),
        refused("/usr/bin/python3", "-Wignore {w}/evil.py"),
        refused("/usr/bin/python3", "-X dev {w}/evil.py"),
        refused("/usr/bin/python3", "-B -X dev {w}/evil.py"),
        refused("/usr/bin/python3", "/usr/lib/tool.py {w}/data"),
        refused("/usr/bin/python3", "-m pip install {w}/pkg"),
        refused("/usr/bin/python3.11", "-mpip install {w}/pkg"),
        refused("/usr/bin/python3", "-m pip install -r {w}/requirements.txt"),
        refused("/usr/bin/python3", "-m pip install --editable={w}/pkg"),
        refused("/usr/bin/python3", "-m python3 -m pip install {w}/pkg"),
        refused("/usr/bin/bash", "+x {w}/evil.sh"),
        refused("/usr/bin/bash", "-o posix {w}/evil.sh"),
        refused("/usr/bin/bash", "+o posix {w}/evil.sh"),
        refused("/usr/bin/bash", "/usr/bin/tool.sh {w}/input"),
        refused("/usr/bin/ruby", "-r json {w}/evil.rb"),
        refused("/usr/bin/ruby", "-C {w} evil.rb"),
        refused("/usr/bin/perl", "-x{w}/dir script"),
        // A probe escalated a script the sandbox wrote through perl's
        // other name, a hard link (canonical as it is); Debian's ruby is
        // `ruby3.1` by its canonical path. Versioned names are their
        // interpreter's.
        refused("/usr/bin/perl5.36.0", "{w}/tool.pl"),
        refused("/usr/bin/ruby3.1", "{w}/evil.rb"),
        refused("/usr/bin/node18", "{w}/evil.js"),
        refused("/usr/bin/ksh93", "{w}/evil.sh"),
        refused("/usr/bin/bash-5.2", "{w}/evil.sh"),
        refused("/usr/bin/node", "--input-type module {w}/evil.js"),
        refused("/usr/bin/git", "--namespace x -C {w}/evil status"),
        refused("/usr/bin/git", "--attr-source HEAD -C {w} status"),
        refused("/usr/bin/git", "--list-cmds=main -C {w} status"),
        refused("/usr/bin/git", "--super-prefix x/ -C {w} status"),
        refused("/usr/bin/git", "--shallow-file {w}/shallow log"),
        refused(
            "/usr/bin/git",
            "--no-pager --namespace x -c core.pager=x log",
        ),
        refused("/usr/bin/git", "--config-env core.pager=PAGER log"),
        refused("/usr/bin/git", "--exec-path={w} status"),
        refused("/usr/bin/git", "--an-option-from-tomorrow x -C {w} status"),
        refused(
            "/usr/bin/git",
            "clone -c core.hooksPath={w}/h https://example.org/r",
        ),
        refused(
            "/usr/bin/git",
            "clone --config core.hooksPath=x https://example.org/r",
        ),
        refused(
            "/usr/bin/git",
            "clone --template={w}/tpl https://example.org/r",
        ),
        refused("/usr/bin/git", "clone -u cmd https://example.org/r"),
        refused(
            "/usr/bin/git",
            "clone --upload-pack=cmd https://example.org/r",
        ),
        refused(
            "/usr/bin/git",
            "init --template /usr/share/git-core/templates",
        ),
        refused("/usr/bin/git", "fetch --upload-pack cmd origin"),
        refused("/usr/bin/git", "pull --upload-pack=cmd"),
        refused("/usr/bin/git", "push --receive-pack=cmd"),
        refused("/usr/bin/git", "push --exec cmd origin"),
        refused("/usr/bin/git", "rebase -x cmd main"),
        refused("/usr/bin/git", "rebase -xcmd main"),
        refused("/usr/bin/git", "rebase --exec=cmd main"),
        refused("/usr/bin/git", "difftool -x cmd"),
        refused("/usr/bin/git", "difftool --extcmd=cmd"),
        // Probe 165: with no tool named, git picks vimdiff, whose `:!`
        // took its keys from the sandbox.
        refused("/usr/bin/git", "difftool --no-index a b"),
        refused("/usr/bin/git", "mergetool"),
        refused("/usr/lib/git-core/git-difftool", "HEAD~1"),
        refused("/usr/bin/git", "mergetool -t x"),
        refused("/usr/bin/git", "submodule foreach cmd"),
        refused("/usr/bin/git", "submodule --quiet foreach cmd"),
        refused("/usr/bin/git", "bisect run cmd"),
        refused("/usr/bin/git", "status {w}/file"),
        refused("/usr/lib/git-core/git-rebase", "--exec cmd main"),
        refused("/usr/bin/make", "-sf {w}/evil.mk"),
        refused("/usr/bin/make", "-kC {w}"),
        refused("/usr/bin/make", "-sC {w}/sub"),
        refused("/usr/bin/make", "CC={w}/evil"),
        // `-j`, `-l` and `-O` take a value only attached (or, for `-j`
        // and `-l`, a number after them): the next word is no value to
        // skip (a probe's `make install -j -f{w}/evil.mk` was escalated).
        refused("/usr/bin/make", "install -j -f{w}/evil.mk"),
        refused("/usr/bin/make", "-l -f {w}/evil.mk"),
        refused("/usr/bin/make", "-O -f{w}/evil.mk"),
        refused("/usr/bin/make", "-sj -f{w}/evil.mk"),
        refused("/usr/bin/make", "-j -C {w}"),
        // A `~` these programs expand, which the check would read as a
        // name in the working directory (a review's `make -C '~/proj'`,
        // `git push '~/ws'`, `npm --prefix=~/x`).
        refused("/usr/bin/make", "-C ~/proj"),
        refused("/usr/bin/make", "-f~/proj/Makefile"),
        refused("/usr/bin/git", "push ~/ws HEAD:refs/heads/x"),
        refused("/usr/bin/git", "push ~user/ws HEAD"),
        refused("/usr/bin/npm", "--prefix=~/x install"),
        refused("/usr/bin/pip", "install --find-links=~/wheels tool"),
        allowed("/usr/bin/git", "log HEAD~1"),
        // npm reads `file:~/pkg` from the home too (carried from a review).
        refused("/usr/bin/npm", "install file:~/pkg"),
        refused("/usr/bin/npm", "install tool@file:~/pkg"),
        // No user name holds a blank: `~ tweak` names no home (a review's
        // false refusal of a commit message).
        allowed("/usr/bin/git", "commit -m ~{sp}tweak"),
        allowed("/usr/bin/git", "commit --message=~{sp}done"),
        allowed("/usr/bin/git", "commit -m~{sp}tweak"),
        refused("/usr/bin/git", "push ~user/{sp}ws HEAD"),
        refused("/usr/bin/git", "push ~ HEAD"),
        refused("/usr/bin/make", "-C ~user"),
        // perl's and ruby's letters whose value is only ever attached
        // (a review's `perl -i -I{w}/lib` loaded the planted library).
        refused("/usr/bin/perl", "-i -I{w}/lib /usr/share/tool.pl"),
        refused("/usr/bin/perl", "-x -I{w}/lib /usr/share/tool.pl"),
        refused("/usr/bin/perl", "-d -I{w}/lib /usr/share/tool.pl"),
        refused("/usr/bin/perl", "-x{w} /usr/share/tool.pl"),
        refused("/usr/bin/ruby", "-W -C{w} evil.rb"),
        refused("/usr/bin/ruby", "-i -r{w}/lib/x /usr/lib/tool.rb"),
        allowed("/usr/bin/perl", "-i.bak -MData::Dumper /usr/share/tool.pl"),
        // Standard input and other descriptors are the sandbox's to fill,
        // wherever the working directory is.
        refused("/usr/bin/make", "test -f -"),
        refused("/usr/bin/make", "-f /dev/stdin"),
        refused("/usr/bin/make", "-f /dev/fd/0"),
        refused("/usr/bin/make", "--file=/proc/self/fd/0"),
        refused("/usr/bin/make", "-f /proc/thread-self/fd/3"),
        refused("/usr/bin/make", "-f /proc/1/cwd/Makefile"),
        allowed("/usr/bin/git", "-C /usr/share status"),
        allowed("/usr/bin/git", "--namespace x status"),
        allowed("/usr/bin/git", "-p log -c"),
        allowed("/usr/bin/git", "--no-pager log --format=%H"),
        allowed("/usr/bin/git", "commit -am message"),
        allowed("/usr/bin/git", "clone https://example.org/r dest"),
        allowed("/usr/bin/git", "rebase main"),
        allowed("/usr/bin/git", "submodule update --init"),
        allowed(
            "/usr/bin/python3",
            "-W ignore /usr/lib/python3/dist-packages/tool.py",
        ),
        allowed("/usr/bin/python3", "-X dev -c pass"),
        allowed("/usr/bin/python3", "-m pip install requests"),
        allowed("/usr/bin/python3", "-m http.server 8000"),
        allowed("/usr/bin/bash", "-o posix /usr/bin/tool.sh"),
        allowed("/usr/bin/bash", "+x /usr/bin/tool.sh"),
        allowed("/usr/bin/ruby", "-r json /usr/lib/tool.rb"),
        allowed("/usr/bin/make", "-sf /usr/share/tool.mk"),
        allowed("/usr/bin/make", "-kC /usr/share all"),
        allowed("/usr/bin/make", "-j4 -Oline -l2 -C /usr/share all"),
        allowed("/usr/bin/make", "-j 4 -C /usr/share all"),
        // A variable set on make's command line is what its recipes run
        // (`CFLAGS='-O2; id'`): an instruction, whatever its name.
        refused("/usr/bin/make", "CFLAGS=-O2"),
        // `-` as an operand is not a file read (`git checkout -`).
        allowed("/usr/bin/git", "checkout -"),
    ];
    let mut cases: Vec<Case<'_>> = from_ro
        .into_iter()
        .map(|(program, args, _, env, refused)| (program, args, ro.as_path(), env, refused))
        .collect();
    cases.extend([
        // Flags a shell knows hide nothing, even where it runs in a place
        // the sandbox can write.
        (
            "/usr/bin/bash",
            "-ex /usr/bin/tool.sh",
            w.as_path(),
            &[][..],
            false,
        ),
    ]);
    assert_eq!(failures(&place, &cases), Vec::<String>::new());
}

/// Every word is judged, and a request's words are the sandbox's: one of
/// 4 MiB with two million components must not cost a lookup per
/// component (parent by parent, that took hours).
#[test]
fn a_huge_argument_is_judged_in_few_lookups() {
    let place = place();
    let word = "a/".repeat(2 << 20);
    let argv = [
        OsString::from("pip3"),
        OsString::from("install"),
        OsString::from(word),
    ];
    let started = std::time::Instant::now();
    let refusal = planted_instructions(
        &Request {
            program: Path::new("/usr/bin/pip3"),
            argv: &argv,
            cwd: &place.ro,
            env: &[],
            writable_roots: std::slice::from_ref(&place.w),
        },
        &|path: &Path| path.starts_with(&place.w),
    );
    let took = started.elapsed();
    assert_eq!(refusal, None);
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}

/// `python -m python -m ...` is not followed module by module: a request
/// full of them must not exhaust the stack.
#[test]
fn a_chain_of_python_dash_m_is_judged_without_recursing() {
    let place = place();
    let argv: Vec<OsString> = std::iter::once("python3")
        .chain(std::iter::repeat_n(["-m", "python3"], 20_000).flatten())
        .map(OsString::from)
        .collect();
    let refusal = planted_instructions(
        &Request {
            program: Path::new("/usr/bin/python3"),
            argv: &argv,
            cwd: &place.ro,
            env: &[],
            writable_roots: std::slice::from_ref(&place.w),
        },
        &|path: &Path| path.starts_with(&place.w),
    );
    assert_eq!(refusal, None);
}

/// A review found: with grants taking the session's environment, nothing
/// checked whether a grant let the sandbox write under the real home (a
/// `"~/.local" = "write"` grant, then a planted `.pth` that a later
/// escalated python script loads). An escalation with grants is refused
/// when a per-user configuration place under the home, or an XDG base
/// directory, is writable.
#[test]
fn a_home_whose_configuration_the_sandbox_can_write_refuses_grants() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let home = ro.join("home");
    std::fs::create_dir_all(home.join(".local")).unwrap();
    std::fs::create_dir_all(home.join("projects")).unwrap();
    let refused = |variables: &[(&str, PathBuf)], writable_root: &Path| {
        let writable = |path: &Path| path.starts_with(writable_root);
        planted_home(variables, &ro, &writable, &[writable_root.to_path_buf()]).is_some()
    };
    let home_only = [("HOME", home.clone())];
    // A project under the home: nothing it reads there is writable.
    assert!(!refused(&home_only, &home.join("projects")));
    assert!(refused(&home_only, &home.join(".local")));
    assert!(refused(&home_only, &home.join(".local/lib")));
    assert!(refused(&home_only, &home));
    // From a probe: places whose files name commands to run.
    for place in [".aws", ".kube", ".docker", ".gradle", ".cargo", ".zshrc"] {
        assert!(refused(&home_only, &home.join(place)), "{place}");
    }
    assert!(refused(&[("XDG_CONFIG_HOME", w.join("cfg"))], &w));
    assert!(!refused(&[("XDG_CONFIG_HOME", ro.join("cfg"))], &w));
}

/// A last read found the places judged from this process's `HOME`, while
/// escalations take the session's (an embedder's environment policy may
/// set it elsewhere): both are judged now.
#[test]
fn the_homes_judged_are_the_sessions_and_this_processs() {
    let session = [
        (OsString::from("HOME"), OsString::from("/srv/agent-home")),
        (
            OsString::from("XDG_CONFIG_HOME"),
            OsString::from("/srv/cfg"),
        ),
        (OsString::from("LANG"), OsString::from("C.UTF-8")),
    ];
    let variables = home_variables(&session);
    assert!(variables.contains(&("HOME", PathBuf::from("/srv/agent-home"))));
    assert!(variables.contains(&("XDG_CONFIG_HOME", PathBuf::from("/srv/cfg"))));
    if let Some(own) = std::env::var_os("HOME") {
        assert!(variables.contains(&("HOME", PathBuf::from(own))));
    }
    assert!(variables.iter().all(|(name, _)| *name != "LANG"));
}

/// A probe ran an allowed `git status` unsandboxed from a repository the
/// sandbox could not write, whose submodule lay in a writable root below:
/// git ran the `core.fsmonitor` the sandbox had written into the
/// submodule's repository. A program that searches upwards is refused
/// when a writable root lies inside the project it works on.
#[test]
fn a_writable_root_inside_the_project_refuses_its_readers() {
    let place = place();
    let project = place.ro.join("P");
    let writable = project.join("sub");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join("docs")).unwrap();
    std::fs::create_dir_all(writable.join("lib")).unwrap();
    let outside = place.ro.join("Q");
    std::fs::create_dir_all(outside.join("build")).unwrap();
    let refused = |program: &str, args: &[&str], cwd: &Path, root: &Path| {
        let argv: Vec<OsString> = std::iter::once(program)
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        let root = root.to_path_buf();
        planted_instructions(
            &Request {
                program: Path::new(program),
                argv: &argv,
                cwd,
                env: &[],
                writable_roots: std::slice::from_ref(&root),
            },
            &|path: &Path| path.starts_with(&root),
        )
        .is_some()
    };
    // A Cargo workspace without a repository: its top is its Cargo.toml's.
    let workspace = place.ro.join("cw");
    std::fs::create_dir_all(workspace.join("a")).unwrap();
    std::fs::create_dir_all(workspace.join("b")).unwrap();
    std::fs::write(workspace.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::write(workspace.join("a/Cargo.toml"), "").unwrap();
    // A marker above a repository does not widen it.
    let outer = place.ro.join("outer");
    std::fs::create_dir_all(outer.join("repo/.git")).unwrap();
    std::fs::create_dir_all(outer.join("side")).unwrap();
    std::fs::write(outer.join("package.json"), "{}").unwrap();
    let project_str = project.to_str().unwrap();
    std::fs::write(project.join("tool.py"), "").unwrap();
    std::fs::write(project.join("app.js"), "").unwrap();
    let (tool, app) = (
        format!("{project_str}/tool.py"),
        format!("{project_str}/app.js"),
    );
    let looped = place.ro.join("loop");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let looped = looped.to_str().unwrap().to_owned();
    std::fs::write(project.join("Cargo.toml"), "").unwrap();
    let manifest = format!("--manifest-path={project_str}/Cargo.toml");
    let work_tree = format!("--work-tree={project_str}");
    // (program, arguments, cwd, writable root, refused)
    let cases: &[(&str, &[&str], &Path, &Path, bool)] = &[
        ("git", &["status"], &project, &writable, true),
        ("git", &["status"], &project.join("docs"), &writable, true),
        (
            "git",
            &["-C", project_str, "status"],
            &outside,
            &writable,
            true,
        ),
        ("git", &["status"], &project, &place.w, false),
        ("git", &[&work_tree, "status"], &outside, &writable, true),
        ("cargo", &["build", &manifest], &outside, &writable, true),
        ("cargo", &["build", &manifest], &outside, &place.w, false),
        ("make", &[], &outside, &outside.join("build"), true),
        (
            "python3",
            &["-m", "pytest"],
            &outside,
            &outside.join("build"),
            true,
        ),
        ("make", &[], &outside, &writable, false),
        // A script, a package directory, named from elsewhere.
        ("python3", &[&tool, "-v"], &outside, &writable, true),
        (
            "python3",
            &["-c", "pass", project_str],
            &outside,
            &writable,
            false,
        ),
        ("node", &[&app], &outside, &writable, true),
        ("pip", &["install", project_str], &outside, &writable, true),
        ("pip", &["install", "requests"], &outside, &writable, false),
        // A directory that cannot be resolved is refused, not passed.
        ("make", &["-C", &looped], &outside, &place.w, true),
        ("git", &["-C", &looped, "status"], &outside, &place.w, true),
        (
            "cargo",
            &["test"],
            &workspace.join("a"),
            &workspace.join("b"),
            true,
        ),
        (
            "git",
            &["status"],
            &outer.join("repo"),
            &outer.join("side"),
            false,
        ),
        ("npm", &["test"], &outer, &outer.join("side"), true),
        ("ls", &["-R"], &project, &writable, false),
    ];
    for (program, args, cwd, root, expected) in cases {
        assert_eq!(
            refused(program, args, cwd, root),
            *expected,
            "{program} {args:?} in {} with {} writable",
            cwd.display(),
            root.display()
        );
    }
}

/// A re-probe got around the instruction options with their prefixes
/// (`--upload-pa`, `--node-opt`, `--ev`), which git, npm and GNU make take
/// for the options, and a path hidden in an unknown option's value that is
/// itself an option (`--node-opt=--require=/w/x.js`).
#[test]
fn abbreviated_options_and_nested_values_are_judged() {
    let place = place();
    let ro = place.ro.clone();
    // (program, arguments, refused)
    let cases = [
        ("git", "ls-remote --upload-pa=sh {ro}", true),
        ("git", "ls-remote --upload-pack=sh {ro}", true),
        ("git", "fetch --upload-p sh origin", true),
        ("git", "ls-remote --heads {ro}", false),
        ("make", "--ev=x:=1", true),
        ("make", "--directory={ro}", false),
        ("npm", "test --node-opt=--require={ro}/x.js", true),
        ("npm", "test --foo=--require={w}/x.js", true),
        ("npm", "test --foo=--require={ro}/x.js", false),
    ];
    for (program, args, refused) in cases {
        assert_eq!(
            check(&place, program, args, &ro, &[]),
            refused,
            "{program} {args}"
        );
    }
}

/// A re-probe's `~/.gitconfig` included a file in a writable root, whose
/// `core.fsmonitor` an unsandboxed `git status` ran. What git's
/// configuration files include, and what the repository's own includes,
/// is judged as they are.
#[test]
fn what_git_configuration_includes_is_judged() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let home = ro.join("home");
    let repo = ro.join("repo");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let env = format!("HOME={}", home.display());
    let refused = |gitconfig: &str, repo_config: &str| {
        std::fs::write(home.join(".gitconfig"), gitconfig).unwrap();
        std::fs::write(repo.join(".git/config"), repo_config).unwrap();
        check(&place, "git", "status", &repo, &[&env])
    };
    let w = w.display();
    assert!(!refused("[user]\n\tname = a\n", ""));
    assert!(refused(&format!("[include]\n\tpath = {w}/inc.cfg\n"), ""));
    assert!(refused(
        &format!("[includeIf \"gitdir:~/x/\"]\n  PATH = \"{w}/inc.cfg\"\n"),
        ""
    ));
    assert!(refused("", &format!("[include]\npath={w}/inc.cfg\n")));
    // Relative to the including file, and on through what it includes.
    std::fs::write(home.join("more.cfg"), format!("[include]\npath = {w}/x\n")).unwrap();
    assert!(refused("[include]\npath = more.cfg\n", ""));
    std::fs::write(home.join("more.cfg"), "[core]\neditor = vi\n").unwrap();
    assert!(!refused("[include]\npath = more.cfg\n", ""));
    // Any value naming a file by an absolute path (hooks, commands).
    assert!(refused(&format!("[core]\n\thooksPath = {w}/hooks\n"), ""));
    assert!(refused(
        "",
        &format!("[core]\nsshCommand = \"{w}/ssh -v\"\n")
    ));
    let ro = ro.display();
    assert!(!refused(&format!("[core]\nhooksPath = {ro}/hooks\n"), ""));
    assert!(!refused(&format!("[safe]\n\tdirectory = {w}\n"), ""));
    // Probe 138: the same file by another name (a hard link a dotfiles
    // checkout made) in a writable root: the sandbox rewrote it there, and
    // an unsandboxed `git status` ran its `core.fsmonitor`. A file outside
    // the system's directories with other names counts as writable.
    assert!(!refused("[user]\n\tname = a\n", ""));
    std::fs::hard_link(home.join(".gitconfig"), place.w.join("gitconfig")).unwrap();
    assert!(refused("[user]\n\tname = a\n", ""));
}

/// A second re-probe reached a repository's configuration that the check
/// never read: one named with `-C` or `--git-dir` (its config included a
/// file in a writable root), and one a `.git` file points to (`gitdir:`,
/// a worktree), in a writable root or naming a planted fsmonitor.
#[test]
fn the_repository_git_is_sent_to_is_judged_too() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let plain = ro.join("A");
    let including = ro.join("B");
    for repo in [&plain, &including] {
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(repo.join(".git/config"), "[core]\n\tbare = false\n").unwrap();
    }
    std::fs::write(
        including.join(".git/config"),
        format!("[include]\n\tpath = {}/inc.cfg\n", w.display()),
    )
    .unwrap();
    // A worktree whose git directory is in a writable root, and one whose
    // git directory is B's.
    let (pointing_out, pointing_at_b) = (ro.join("W1"), ro.join("W2"));
    std::fs::create_dir_all(&pointing_out).unwrap();
    std::fs::create_dir_all(&pointing_at_b).unwrap();
    std::fs::write(
        pointing_out.join(".git"),
        format!("gitdir: {}/evil.git\n", w.display()),
    )
    .unwrap();
    std::fs::write(
        pointing_at_b.join(".git"),
        format!("gitdir: {}/.git\n", including.display()),
    )
    .unwrap();
    let b = including.to_str().unwrap();
    let b_git = format!("--git-dir={b}/.git");
    // (arguments, cwd, refused)
    let cases: &[(&str, &Path, bool)] = &[
        ("status", &plain, false),
        ("status", &including, true),
        ("-C ../B status", &plain, true),
        ("-C B status", &ro, true),
        (&b_git, &ro, true),
        ("status", &pointing_out, true),
        ("status", &pointing_at_b, true),
        ("-C A status", &ro, false),
    ];
    for (args, cwd, refused) in cases {
        let args = if args.starts_with("--git-dir") {
            format!("{args} status")
        } else {
            (*args).to_owned()
        };
        assert_eq!(
            check(&place, "git", &args, cwd, &[]),
            *refused,
            "git {args} in {}",
            cwd.display()
        );
    }
}

/// From a review of the fixes above: a FIFO where git's configuration is
/// looked for hung the check (and a server worker) for good; a long option
/// taken for a directory moved where the next words were judged from; a
/// workspace member that is a submodule stopped the search for the
/// workspace; a chain of links `-C` resolved whole was never refused for
/// being unresolvable; a worktree's common directory and some spellings of
/// git configuration were not read.
#[test]
fn what_a_review_of_the_project_checks_found() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    // A FIFO as the requester's ~/.gitconfig: judged without waiting.
    let home = w.join("h");
    std::fs::create_dir_all(&home).unwrap();
    nix::unistd::mkfifo(&home.join(".gitconfig"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let env = format!("HOME={}", home.display());
    let (sender, judged) = std::sync::mpsc::channel();
    let (w_root, ro_dir) = (w.clone(), ro.clone());
    std::thread::spawn(move || {
        let writable = |path: &Path| path.starts_with(&w_root);
        let argv = [OsString::from("git"), OsString::from("status")];
        let env = [OsString::from(env)];
        let refusal = planted_instructions(
            &Request {
                program: Path::new("/usr/bin/git"),
                argv: &argv,
                cwd: &ro_dir,
                env: &env,
                writable_roots: std::slice::from_ref(&w_root),
            },
            &writable,
        );
        let _ = sender.send(refusal.is_some());
    });
    let refused = judged.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(refused, Ok(true), "the check waits on a FIFO");

    // npm may not take `--dir` (or `--pre`) for a directory: what follows
    // is judged from where it starts too.
    std::fs::create_dir_all(ro.join("proj")).unwrap();
    std::fs::create_dir_all(ro.join("a/b")).unwrap();
    std::fs::create_dir_all(w.join("pkg")).unwrap();
    for option in ["--dir", "--pre"] {
        let args = format!("install {option} {{ro}}/a/b ../../w/pkg");
        assert!(check(&place, "npm", &args, &ro.join("proj"), &[]), "{args}");
    }

    // A chain of 41 links, each fine, that no `realpath` resolves.
    std::os::unix::fs::symlink(".", ro.join("s")).unwrap();
    let chain = vec!["s"; 41].join("/");
    assert!(check(&place, "make", &format!("-C {chain}"), &ro, &[]));
    assert!(!check(&place, "make", "-C s/s", &ro, &[]));
}

/// A workspace whose member is a submodule, with another member writable.
#[test]
fn a_workspace_member_that_is_a_submodule_sees_the_workspace() {
    let place = place();
    let workspace = place.ro.join("ws");
    std::fs::create_dir_all(workspace.join(".git")).unwrap();
    std::fs::create_dir_all(workspace.join("a")).unwrap();
    std::fs::write(workspace.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::write(workspace.join("a/Cargo.toml"), "").unwrap();
    std::fs::write(workspace.join("a/.git"), "gitdir: ../.git/modules/a\n").unwrap();
    let writable = workspace.join("b");
    std::fs::create_dir_all(&writable).unwrap();
    let argv = [OsString::from("cargo"), OsString::from("build")];
    let refusal = planted_instructions(
        &Request {
            program: Path::new("/usr/bin/cargo"),
            argv: &argv,
            cwd: &workspace.join("a"),
            env: &[],
            writable_roots: std::slice::from_ref(&writable),
        },
        &|path: &Path| path.starts_with(&writable),
    );
    assert!(refusal.is_some());
}

/// git configuration as git reads it: a key on its section's line, a
/// shell alias, an option's value, a comment after a value; a worktree's
/// common directory.
#[test]
fn git_configuration_is_read_in_its_other_spellings() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let repo = ro.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let refused = |config: &str| {
        std::fs::write(repo.join(".git/config"), config).unwrap();
        check(&place, "git", "status", &repo, &[])
    };
    let w = w.display();
    assert!(refused(&format!("[include] path = {w}/inc\n")));
    assert!(refused(&format!("[alias]\n\tx = !{w}/x.sh\n")));
    assert!(refused(&format!(
        "[core]\n\tpager = less --lesskey-src={w}/k\n"
    )));
    std::fs::write(ro.join("more.cfg"), format!("[core]\nhooksPath = {w}/h\n")).unwrap();
    assert!(refused(&format!(
        "[include]\n\tpath = {}/more.cfg ; a comment\n",
        ro.display()
    )));
    assert!(!refused("[core]\n\tbare = false # a comment\n"));
    assert!(!refused(&format!("# hooksPath = {w}/h\n; path = {w}/x\n")));

    // A worktree: its .git file points at a git directory whose commondir
    // is the main repository's, whose configuration names a planted hook.
    let main = ro.join("main");
    std::fs::create_dir_all(main.join(".git/worktrees/wt")).unwrap();
    std::fs::write(main.join(".git/worktrees/wt/commondir"), "../..\n").unwrap();
    std::fs::write(main.join(".git/worktrees/wt/HEAD"), "ref: refs/heads/x\n").unwrap();
    std::fs::write(
        main.join(".git/config"),
        format!("[core]\nhooksPath = {w}/hooks\n"),
    )
    .unwrap();
    let worktree = ro.join("wt");
    std::fs::create_dir_all(&worktree).unwrap();
    std::fs::write(
        worktree.join(".git"),
        format!("gitdir: {}/.git/worktrees/wt\n", main.display()),
    )
    .unwrap();
    assert!(check(&place, "git", "status", &worktree, &[]));
}

/// From a review: a `package.json` left in the home made the home the top
/// of every project under it, and every escalated build there was refused
/// for any writable root in the home. A home is no project's top, unless
/// it is a repository (and the home is this process's, not the
/// requester's, whose `HOME` the sandbox chooses).
#[test]
fn a_marker_in_the_home_does_not_make_it_a_project() {
    let place = place();
    let home = place.ro.join("home");
    let (scratch, work) = (home.join("scratch"), home.join("work"));
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(home.join("package.json"), "{}").unwrap();
    let roots = std::slice::from_ref(&work);
    let within = |homes: &[PathBuf]| {
        super::writable_root_under_top(&super::project_layers(&scratch, homes), roots)
    };
    assert_eq!(within(std::slice::from_ref(&home)), None);
    // Another home: the package.json makes this directory a project.
    assert_eq!(within(&[PathBuf::from("/nonexistent")]), Some(&work));
    std::fs::create_dir_all(home.join(".git")).unwrap();
    assert_eq!(within(std::slice::from_ref(&home)), Some(&work));
}

/// A second quick review: git's `\\"` is no quote, so a comment cut there
/// hid a path; a work tree holding files named like a git directory's was
/// taken for one; a bare repository above, `config.worktree`, continued
/// lines and a `]` inside a header's quotes were not read; and options'
/// values were judged only from where the walk had moved.
#[test]
fn git_configuration_as_git_reads_it_and_options_from_both_places() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let repo = ro.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let refused_with = |config: &str, worktree: &str| {
        std::fs::write(repo.join(".git/config"), config).unwrap();
        std::fs::write(repo.join(".git/config.worktree"), worktree).unwrap();
        check(&place, "git", "status", &repo, &[])
    };
    let w_text = w.display().to_string();
    assert!(refused_with(
        &format!("[core]\n\tpager = \"\\\" ; {w_text}/evil #\"\n"),
        ""
    ));
    assert!(refused_with(
        &format!("[core]\n\tsshCommand = ssh -i \\\n{w_text}/key\n"),
        ""
    ));
    assert!(refused_with(
        "",
        &format!("[core]\nhooksPath = {w_text}/h\n")
    ));
    std::fs::write(
        ro.join("inc.cfg"),
        format!("[core]\nhooksPath = {w_text}/h\n"),
    )
    .unwrap();
    assert!(refused_with(
        &format!(
            "[includeIf \"onbranch:a]b\"] path = {}/inc.cfg\n",
            ro.display()
        ),
        ""
    ));
    // Files named HEAD and config in the work tree: its .git still counts.
    std::fs::write(repo.join("HEAD"), "x").unwrap();
    std::fs::write(repo.join("config"), "").unwrap();
    assert!(refused_with(
        &format!("[core]\nhooksPath = {w_text}/h\n"),
        ""
    ));
    assert!(!refused_with("[core]\n\tbare = false\n", ""));

    // A directory inside a bare repository.
    let bare = ro.join("bare.git");
    for dir in ["objects", "refs/heads"] {
        std::fs::create_dir_all(bare.join(dir)).unwrap();
    }
    std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(
        bare.join("config"),
        format!("[core]\nhooksPath = {w_text}/h\n"),
    )
    .unwrap();
    assert!(check(&place, "git", "status", &bare.join("refs"), &[]));

    // npm resolves --userconfig from where it runs, whatever --prefix says.
    std::fs::create_dir_all(ro.join("proj")).unwrap();
    std::fs::create_dir_all(ro.join("a/b")).unwrap();
    let args = "--prefix {ro}/a/b --userconfig ../../w/npmrc install";
    assert!(check(&place, "npm", args, &ro.join("proj"), &[]), "{args}");
}

/// A link the host left in a project the sandbox cannot write, leading
/// into a writable root (`Makefile.inc -> /w/x`, `.git/hooks -> /w/hooks`,
/// `sub -> /w`): the program follows it and reads what the sandbox wrote
/// there. Links among the entries of the working directory, of the
/// project's top, and of the git directory (its `hooks` and `info` too)
/// are judged; links that stay out of writable roots are not refused.
#[test]
fn a_link_in_the_project_into_a_writable_root_is_judged() {
    // (link, where it points: `{w}` or `{ro}` first, program, arguments,
    // working directory, from the project, refused)
    let cases: &[(&str, &str, &str, &str, &str, bool)] = &[
        ("Makefile.inc", "{w}/x", "make", "", ".", true),
        ("sub", "{w}", "cargo", "build", ".", true),
        ("sub", "{w}/deeper/not-yet", "cargo", "build", ".", true),
        (
            ".gitattributes",
            "{w}/attributes",
            "git",
            "status",
            ".",
            true,
        ),
        (".gitmodules", "{w}/modules", "git", "status", "docs", true),
        (".git/config", "{w}/config", "git", "status", ".", true),
        (
            ".git/hooks",
            "{w}/hooks",
            "git",
            "commit -m x",
            "docs",
            true,
        ),
        (
            ".git/hooks/pre-commit",
            "{w}/pc",
            "git",
            "commit -m x",
            ".",
            true,
        ),
        (".git/info/attributes", "{w}/a", "git", "diff", ".", true),
        ("docs/local.mk", "{w}/local.mk", "make", "", "docs", true),
        (
            "helper.py",
            "{w}/helper.py",
            "python3",
            "tool.py",
            ".",
            true,
        ),
        // From elsewhere, through an option or an operand.
        ("Makefile.inc", "{w}/x", "make", "-C {p}", "{ro}/Q", true),
        (
            "helper.py",
            "{w}/helper.py",
            "python3",
            "{p}/tool.py",
            "{ro}/Q",
            true,
        ),
        (
            "Makefile.inc",
            "{w}/x",
            "git",
            "-C {p} status",
            "{ro}/Q",
            true,
        ),
        // Links that stay where the sandbox cannot write.
        ("Makefile.inc", "{ro}/x", "make", "", ".", false),
        ("lib", "/usr/lib", "cargo", "build", ".", false),
        (".git/hooks", "{ro}/hooks", "git", "commit -m x", ".", false),
        ("docs/local.mk", "{w}/local.mk", "make", "", ".", false),
    ];
    let mut failed = Vec::new();
    for (link, target, program, args, cwd, refused) in cases {
        let place = place();
        let project = place.ro.join("P");
        for dir in [".git/hooks", ".git/info", "docs", "../Q"] {
            std::fs::create_dir_all(project.join(dir)).unwrap();
        }
        std::fs::create_dir_all(place.ro.join("hooks")).unwrap();
        std::fs::write(project.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(project.join(".git/config"), "[core]\n\tbare = false\n").unwrap();
        std::fs::write(project.join("Makefile"), "include Makefile.inc\n").unwrap();
        std::fs::write(project.join("tool.py"), "import helper\n").unwrap();
        let expand = |text: &str| {
            text.replace("{w}", place.w.to_str().unwrap())
                .replace("{ro}", place.ro.to_str().unwrap())
                .replace("{p}", project.to_str().unwrap())
        };
        let at = project.join(link);
        let _ = std::fs::remove_file(&at);
        let _ = std::fs::remove_dir(&at);
        std::os::unix::fs::symlink(expand(target), &at).unwrap();
        let cwd = project.join(expand(cwd));
        if check(&place, program, &expand(args), &cwd, &[]) != *refused {
            failed.push(format!(
                "{program} {args} in {} with {link} -> {target}: expected refused={refused}",
                cwd.display()
            ));
        }
    }
    assert_eq!(failed, Vec::<String>::new());
}

/// `git init --separate-git-dir` and `git clone --separate-git-dir` name
/// the repository git then works in, and `git push`, `fetch`, `pull`,
/// `ls-remote` and `clone` run git in the repository a local path names
/// (`receive-pack` runs its hooks): each is judged as a repository, as
/// `--git-dir` is, not only as a path.
#[test]
fn a_repository_a_subcommand_names_is_judged_as_one() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    for (name, config) in [
        ("A", "[core]\n\tbare = false\n".to_owned()),
        (
            "B",
            format!("[include]\n\tpath = {}/inc.cfg\n", w.display()),
        ),
    ] {
        let repo = ro.join(name);
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(repo.join(".git/config"), config).unwrap();
    }
    // A bare repository whose hooks directory leads into a writable root.
    let bare = ro.join("C.git");
    for dir in ["objects", "refs/heads"] {
        std::fs::create_dir_all(bare.join(dir)).unwrap();
    }
    std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(bare.join("config"), "[core]\n\tbare = true\n").unwrap();
    std::os::unix::fs::symlink(w.join("hooks"), bare.join("hooks")).unwrap();
    let work = ro.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // (arguments, refused)
    let cases = [
        ("init --separate-git-dir {ro}/B/.git", true),
        ("init --separate-git-dir={ro}/B/.git", true),
        ("init --separate-git={ro}/B/.git", true),
        (
            "clone --separate-git-dir {ro}/B/.git https://example.org/r d",
            true,
        ),
        ("init --separate-git-dir {ro}/A/.git", false),
        ("init --separate-git-dir {ro}/new.git", false),
        ("push {ro}/C.git main", true),
        ("push file://{ro}/C.git main", true),
        ("fetch {ro}/B", true),
        ("pull {ro}/B main", true),
        ("ls-remote {ro}/B", true),
        ("clone {ro}/B d", true),
        ("clone {ro}/A d", false),
        ("push {ro}/A main", false),
        ("push origin main", false),
        ("fetch https://example.org/r", false),
        // From a re-probe and a review: an option's value before the
        // address, an address with a host, an option naming it, and an
        // address attached to an option.
        ("fetch --depth 1 {ro}/B", true),
        ("clone -b main {ro}/B d", true),
        ("push -o ci.skip {ro}/C.git main", true),
        ("fetch --multiple origin {ro}/B", true),
        ("push file://localhost{ro}/C.git main", true),
        ("push --repo={ro}/C.git", true),
        ("push --repo {ro}/C.git", true),
        ("archive --remote=file://{ro}/B HEAD", true),
        ("archive --remote={ro}/B HEAD", true),
        ("fetch --depth 1 {ro}/A", false),
        ("push file://localhost{ro}/A main", false),
    ];
    let failed: Vec<String> = cases
        .iter()
        .filter(|(args, refused)| check(&place, "git", args, &work, &[]) != *refused)
        .map(|(args, refused)| format!("git {args}: expected refused={refused}"))
        .collect();
    assert_eq!(failed, Vec::<String>::new());
}

/// git interpolates a path value's `~user/` through the password database
/// and `%(prefix)/` from its runtime prefix; both were taken for paths
/// relative to the including file (or, in other values, not judged).
#[test]
fn git_paths_from_another_users_home_or_the_prefix_are_judged() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    // Another user's home that exists and is not this process's: it plays
    // a place the sandbox can write.
    let own_home = std::env::var_os("HOME").map(PathBuf::from);
    let (user, other_home) = ["daemon", "bin", "sys", "nobody", "root"]
        .iter()
        .find_map(|name| {
            let user = nix::unistd::User::from_name(name).ok()??;
            let usable = user.dir.is_dir()
                && user.dir != Path::new("/")
                && own_home
                    .as_ref()
                    .is_none_or(|own| !own.starts_with(&user.dir));
            usable.then(|| (name.to_string(), std::fs::canonicalize(&user.dir).unwrap()))
        })
        .expect("a user whose home exists and is not this process's");
    let repo = ro.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let refused = |config: &str, program: &str| {
        std::fs::write(repo.join(".git/config"), config).unwrap();
        let argv = [OsString::from("git"), OsString::from("status")];
        let writable = |path: &Path| path.starts_with(&w) || path.starts_with(&other_home);
        planted_instructions(
            &Request {
                program: Path::new(program),
                argv: &argv,
                cwd: &repo,
                env: &[],
                writable_roots: std::slice::from_ref(&w),
            },
            &writable,
        )
        .is_some()
    };
    let git = "/usr/bin/git";
    assert!(refused(
        &format!("[include]\n\tpath = ~{user}/inc.cfg\n"),
        git
    ));
    assert!(refused(
        &format!("[core]\n\thooksPath = ~{user}/hooks\n"),
        git
    ));
    assert!(refused(&format!("[include]\n\tpath = ~{user}\n"), git));
    assert!(!refused(
        "[include]\n\tpath = ~no-such-user-here/inc.cfg\n",
        git
    ));
    // `%(prefix)/` is the prefix of wherever git runs from (and the usual
    // ones): a place under it the sandbox can write refuses.
    let prefix = ro.join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::os::unix::fs::symlink(w.join("share"), prefix.join("share")).unwrap();
    let prefixed_git = prefix.join("bin/git");
    let prefixed_git = prefixed_git.to_str().unwrap();
    let including = "[include]\n\tpath = %(prefix)/share/inc.cfg\n";
    assert!(refused(including, prefixed_git));
    assert!(refused(
        "[core]\n\thooksPath = %(prefix)/share/hooks\n",
        prefixed_git
    ));
    assert!(!refused(including, git));
    // What a file under the prefix includes is followed on.
    std::fs::create_dir_all(prefix.join("etc")).unwrap();
    std::fs::write(
        prefix.join("etc/inc.cfg"),
        format!("[core]\nhooksPath = {}/h\n", w.display()),
    )
    .unwrap();
    assert!(refused(
        "[include]\n\tpath = %(prefix)/etc/inc.cfg\n",
        prefixed_git
    ));
    // git 2.52's optional includes.
    assert!(refused(
        &format!("[include]\n\tpath = :(optional)~{user}/inc.cfg\n"),
        git
    ));
}

/// git found as `libexec/git-core/git-*` or `lib/git-core/git-*` reads
/// its prefix's `etc/gitconfig`, not one under `libexec` or `lib`.
#[test]
fn gits_prefix_is_found_from_its_helpers_too() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let prefix = ro.join("prefix");
    std::fs::create_dir_all(prefix.join("libexec/git-core")).unwrap();
    std::fs::create_dir_all(prefix.join("etc")).unwrap();
    std::fs::write(
        prefix.join("etc/gitconfig"),
        format!("[core]\nhooksPath = {}/h\n", w.display()),
    )
    .unwrap();
    let program = prefix.join("libexec/git-core/git-upload-pack");
    assert!(check(&place, program.to_str().unwrap(), ".", &ro, &[]));
}

/// From a re-probe: an allowed git wrote its own configuration (`git config
/// alias.st '!cmd'`, `git remote add`), which the next allowed git ran;
/// make ran what a variable given on its command line said
/// (`.SHELLFLAGS=`, `SHELL=`, `CC=`); npm took `-c` for `--call`; and
/// python's `-X pycache_prefix=` was not judged. Each is refused, and what
/// only reads is not.
#[test]
fn writing_configuration_and_setting_variables_are_instructions() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    std::fs::create_dir_all(ro.join(".git")).unwrap();
    std::fs::write(ro.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    // (program, arguments, refused)
    let cases = [
        ("/usr/bin/git", "config alias.st !id", true),
        ("/usr/bin/git", "config --global core.pager less", true),
        ("/usr/bin/git", "config set alias.st x", true),
        ("/usr/bin/git", "config --add remote.o.url /x", true),
        ("/usr/bin/git", "config --unset core.hooksPath", true),
        ("/usr/bin/git", "config -e", true),
        ("/usr/bin/git", "config edit", true),
        ("/usr/bin/git", "remote add x file:///tmp/r.git", true),
        ("/usr/bin/git", "remote set-url origin /tmp/r.git", true),
        ("/usr/bin/git", "submodule add /tmp/r.git sub", true),
        ("/usr/bin/git", "config user.name", false),
        ("/usr/bin/git", "config get user.name", false),
        ("/usr/bin/git", "config --get-regexp alias", false),
        (
            "/usr/bin/git",
            "config --get-all remote.origin.url x",
            false,
        ),
        ("/usr/bin/git", "config --list", false),
        ("/usr/bin/git", "config list", false),
        ("/usr/bin/git", "remote -v", false),
        ("/usr/bin/make", ".SHELLFLAGS=-c", true),
        ("/usr/bin/make", "SHELL=/bin/sh", true),
        ("/usr/bin/make", "CC=cc all", true),
        ("/usr/bin/make", "-E x", true),
        ("/usr/bin/make", "all", false),
        ("/usr/bin/make", "-j4 all install", false),
        ("/usr/bin/npm", "exec -c id", true),
        ("/usr/bin/npm", "exec --script_shell=/bin/sh x", true),
        ("/usr/bin/npm", "ci", false),
        ("/usr/bin/python3", "-X pycache_prefix={w}/c -V", true),
        ("/usr/bin/python3", "-X importtime -V", false),
    ];
    assert_eq!(failures_in(&place, &ro, &cases), Vec::<String>::new());
    let _ = w;
}

/// Probe 165: `npm exec -- bash`, `npm x`, `npx bash` ran the host's bash
/// on the sandbox's input, where `npm exec -c` was refused. npm takes any
/// unique prefix of a subcommand (`npm exe`), so only the names it lists
/// exactly pass; yarn and pnpm run the project's scripts by name, and
/// refuse their runners.
#[test]
fn package_managers_that_run_what_they_are_given_are_refused() {
    let place = place();
    let ro = place.ro.clone();
    std::fs::write(ro.join("package.json"), "{}").unwrap();
    // (program, arguments, refused)
    let cases = [
        ("/usr/bin/npm", "exec -- bash", true),
        ("/usr/bin/npm", "x bash", true),
        ("/usr/bin/npm", "exe -- bash", true),
        ("/usr/bin/npm", "explore left-pad -- sh", true),
        ("/usr/bin/npm", "init create-evil", true),
        ("/usr/bin/npm", "cr evil", true),
        ("/usr/bin/npm", "-- exec bash", true),
        ("/usr/bin/npm", "--loglevel silent exec bash", true),
        (
            "/usr/lib/node_modules/npm/bin/npm-cli.js",
            "exec -- bash",
            true,
        ),
        ("/usr/lib/node_modules/npm/bin/npx-cli.js", "bash", true),
        ("/usr/bin/npx", "--yes cowsay hi", true),
        ("/usr/bin/yarn", "dlx evil", true),
        ("/usr/bin/yarn", "exec bash", true),
        ("/usr/bin/yarn", "node -e 1", true),
        ("/usr/bin/pnpm", "exec bash", true),
        ("/usr/bin/pnpm", "dlx evil", true),
        ("/usr/bin/pnpm", "--filter web exec bash", true),
        ("/usr/bin/yarn", "workspace web exec bash", true),
        ("/usr/bin/yarn", "workspace web build", false),
        // Review 35: an unknown option's value taken for the subcommand;
        // writers of what a later npm runs; pnpm's fallback to a shell
        // command; the names corepack's shims and pnpm's scripts have.
        ("/usr/bin/npm", "-m test exec -- bash", true),
        ("/usr/bin/npm", "--mess test exec -- bash", true),
        ("/usr/bin/npm", "--preid test x -- bash", true),
        ("/usr/bin/npm", "pkg set scripts.x=id", true),
        ("/usr/bin/npm", "config set editor vi", true),
        ("/usr/bin/npm", "set editor vi", true),
        ("/usr/bin/npm", "login --scope=@x --registry=http://x", true),
        ("/usr/bin/npm", "-g install left-pad", false),
        ("/usr/bin/npm", "--silent run build", false),
        ("/usr/lib/pnpm/bin/pnpm.cjs", "bash", true),
        ("/usr/lib/pnpm/bin/pnpm.cjs", "perl -e 1", true),
        ("/usr/lib/pnpm/bin/pnpm.cjs", "run build", false),
        (
            "/usr/lib/node_modules/corepack/dist/corepack.js",
            "npm exec -- bash",
            true,
        ),
        (
            "/usr/lib/node_modules/corepack/dist/pnpm.js",
            "exec bash",
            true,
        ),
        ("/usr/lib/node_modules/corepack/dist/npm.js", "x bash", true),
        ("/usr/lib/node_modules/corepack/dist/npx.js", "bash", true),
        ("/usr/bin/yarn", "config set yarnPath /x.js", true),
        ("/usr/bin/yarn", "plugin import https://x/p.js", true),
        // Review 35b: an option's value taken for the command; pnpm's
        // `--config.NAME`; names a package or a script may have.
        ("/usr/bin/pnpm", "--store-dir test bash", true),
        ("/usr/bin/pnpm", "--modules-dir test bash", true),
        ("/usr/bin/pnpm", "--unknown test bash", true),
        (
            "/usr/bin/pnpm",
            "--config.node-options=--import=x test",
            true,
        ),
        ("/usr/bin/pnpm", "test --config.script-shell=/bin/sh", true),
        ("/usr/bin/yarn", "--modules-folder test sh", true),
        ("/usr/bin/pnpm", "--filter web run build", false),
        ("/usr/bin/pnpm", "-F web build", true),
        ("/usr/bin/pnpm", "-r test", false),
        ("/usr/bin/npm", "install config", false),
        ("/usr/bin/npm", "run init", false),
        ("/usr/bin/npm", "run build -- exec", false),
        ("/usr/bin/yarn", "install --frozen-lockfile", false),
        ("/usr/bin/corepack", "npm exec bash", true),
        ("/usr/bin/corepack", "yarn build", true),
        ("/usr/bin/npm", "install", false),
        ("/usr/bin/npm", "i", false),
        ("/usr/bin/npm", "run build", false),
        ("/usr/bin/npm", "--loglevel silent test", false),
        ("/usr/bin/npm", "-w pkg run build", false),
        ("/usr/bin/npx", "--version", false),
        // A script by name: `yarn run build`.
        ("/usr/bin/yarn", "build", true),
        ("/usr/bin/yarn", "run build", false),
        ("/usr/bin/yarn", "install", false),
        ("/usr/bin/pnpm", "test", false),
        ("/usr/bin/corepack", "enable", false),
    ];
    assert_eq!(failures_in(&place, &ro, &cases), Vec::<String>::new());
}

/// From a review and a re-probe: a link to a directory above a writable
/// root, a git directory with a writable root inside it, a plain `.git`
/// directory's `commondir`, and a submodule's git directory whose
/// configuration names a writable place were not judged.
#[test]
fn what_lies_beyond_a_repository_is_judged() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let git_directory = |dir: &Path, config: &str| {
        for sub in ["objects", "refs/heads"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(dir.join("config"), config).unwrap();
    };
    let including = format!("[include]\n\tpath = {}/inc.cfg\n", w.display());
    // (a repository's name, how it is set up)
    let parent = ro.join("parent");
    std::fs::create_dir_all(&parent).unwrap();
    std::os::unix::fs::symlink(w.parent().unwrap(), parent.join("sub")).unwrap();
    let hooks_writable = ro.join("separate");
    std::fs::create_dir_all(&hooks_writable).unwrap();
    std::fs::write(
        hooks_writable.join(".git"),
        format!("gitdir: {}\n", w.display()),
    )
    .unwrap();
    let common = ro.join("common");
    git_directory(&common.join(".git"), "");
    git_directory(&ro.join("common-target"), &including);
    std::fs::write(common.join(".git/commondir"), "../../common-target\n").unwrap();
    let module = ro.join("module");
    git_directory(&module.join(".git"), "");
    git_directory(&module.join(".git/modules/lib/inner"), &including);
    let clean = ro.join("clean");
    git_directory(&clean.join(".git"), "");
    git_directory(&clean.join(".git/modules/lib"), "");
    for (directory, refused) in [
        (&parent, true),
        (&hooks_writable, true),
        (&common, true),
        (&module, true),
        (&clean, false),
    ] {
        assert_eq!(
            check(&place, "/usr/bin/git", "status", directory, &[]),
            refused,
            "{}",
            directory.display()
        );
    }
}

/// From a second re-probe: an instruction letter after a letter the walk
/// does not know in a cluster (`clone -qu CMD`, `rebase -qx CMD`), a
/// subcommand the table does not know (an alias `rb = rebase`,
/// `submodule--helper foreach`), a `git config` write with `--getx` for a
/// value or after `--`, and `file:` URLs to pip and npm all got through.
#[test]
fn clusters_unknown_subcommands_read_modes_and_file_urls_are_judged() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    std::fs::create_dir_all(ro.join(".git")).unwrap();
    std::fs::write(ro.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::create_dir_all(w.join("evil")).unwrap();
    // (program, arguments, refused)
    let cases = [
        ("/usr/bin/git", "clone -qu cmd /r d", true),
        ("/usr/bin/git", "rebase -qx cmd --root", true),
        ("/usr/bin/git", "difftool -yx cmd", true),
        ("/usr/bin/git", "grep -nOcmd hi", true),
        ("/usr/bin/git", "submodule--helper foreach cmd", true),
        ("/usr/bin/git", "rb -x cmd --root", true),
        ("/usr/bin/git", "lfs pull", true),
        ("/usr/bin/git-lfs", "pull", true),
        (
            "/usr/bin/git",
            "config --global --comment --getx core.fsmonitor cmd",
            true,
        ),
        // A review: `--get` as `--comment`'s value is no mode.
        ("/usr/bin/git", "config --comment --get alias.zz !cmd", true),
        ("/usr/bin/git", "config --type bool --get core.bare", false),
        // A last review: an abbreviated value option before `--get`, and a
        // `file:` URL as a path option's value.
        ("/usr/bin/git", "config --comm --get alias.x !cmd", true),
        ("/usr/bin/pip3", "install -r file://{w}/req.txt", true),
        ("/usr/bin/pip3", "install -e file://{w}/evil", true),
        ("/usr/bin/git", "push --repo=file://{w}/%72epo", true),
        ("/usr/bin/git", "init-db --template {ro}", true),
        ("/usr/bin/git", "hash-object x", false),
        ("/usr/bin/git", "ls-remote file://{w}/%72.git", true),
        ("/usr/bin/pip3", "install file://{w}/%65vil", true),
        ("/usr/bin/git", "config --global -- core.pager --getx", true),
        ("/usr/bin/git", "config --get core.pager", false),
        ("/usr/bin/git", "config --get-regexp alias x", false),
        ("/usr/bin/git", "rebase -q main", false),
        ("/usr/bin/git", "cherry-pick -x abc", false),
        ("/usr/bin/git", "log --oneline", false),
        ("/usr/bin/pip3", "install file://{w}/evil", true),
        ("/usr/bin/pip3", "install file://localhost{w}/evil", true),
        ("/usr/bin/pip3", "install -i file://{w}/simple x", true),
        ("/usr/bin/pip3", "install evil@file://{w}/evil", true),
        ("/usr/bin/npm", "pack file:{w}/evil", true),
        ("/usr/bin/npm", "install git+file://{w}/evil", true),
        ("/usr/bin/pip3", "install file:///usr/share/doc", false),
        // A third probe: a path option after an unknown letter, and npm's
        // other command options.
        ("/usr/bin/make", "-mf{w}/evil.mk", true),
        ("/usr/bin/make", "-mC{w}", true),
        ("/usr/bin/perl", "-lI{w} {ro}/tool.pl", true),
        ("/usr/bin/pip3", "install -qr{w}/req.txt", true),
        ("/usr/bin/pip3", "install -q requests", false),
        // Clusters people write, from the last review: allowed.
        ("/usr/bin/perl", "-lne print {ro}/x", false),
        ("/usr/bin/perl", "-wle print", false),
        ("/usr/bin/perl", "-0pe s/a/b/", false),
        ("/usr/bin/perl", "-MData::Dumper -e 1", false),
        ("/usr/bin/perl", "-MIO::Handle -e 1", false),
        ("/usr/bin/perl", "-Mlib={w} {ro}/tool.pl", true),
        ("/usr/bin/perl", "-l0I{w} {ro}/tool.pl", true),
        ("/usr/bin/pip3", "install -Ur {ro}/req.txt", false),
        ("/usr/bin/pip3", "install -qe {ro}", false),
        ("/usr/bin/pip3", "install -Ur{w}/req.txt", true),
        ("/usr/bin/python3", "-Ximporttime -c 1", false),
        ("/usr/bin/python3", "-Xpycache_prefix={w} -c 1", true),
        ("/usr/bin/zsh", "-dfc true", false),
        ("/usr/bin/make", "-Wfoo.c all", false),
        ("/usr/bin/make", "-sj4 -O all", false),
        ("/usr/bin/ruby", "-W:no-deprecated {ro}/x.rb", false),
        ("/usr/bin/make", "-sj4 all", false),
        ("/usr/bin/npm", "--editor=vi config edit", true),
        ("/usr/bin/npm", "explore x --shell=sh", true),
        ("/usr/bin/npm", "init --init-module={w}/init.js", true),
        ("/usr/bin/rustup", "run stable sh -c id", true),
        ("/usr/bin/rustup", "toolchain link mine {ro}", true),
        ("/usr/bin/rustup", "show", false),
        ("/usr/bin/rustup", "update stable", false),
        ("/usr/bin/cargo", "build --release", false),
        ("/usr/bin/node", "--inspect=127.0.0.1:9229 {ro}/x.js", true),
        ("/usr/bin/node", "--inspect-brk {ro}/x.js", true),
        ("/usr/bin/npm", "install left-pad", false),
    ];
    assert_eq!(failures_in(&place, &ro, &cases), Vec::<String>::new());
}

#[test]
fn versioned_names_are_their_interpreters_and_only_those() {
    for (program, known) in [
        ("/usr/bin/perl5.36.0", true),
        ("/usr/bin/ruby3.1", true),
        ("/usr/bin/python3.11", true),
        ("/usr/bin/python3.12", true),
        ("/usr/bin/ksh93", true),
        ("/usr/bin/tclsh8.6", false),
        ("/usr/bin/sha256sum", false),
        ("/usr/bin/makeinfo", false),
        ("/usr/bin/perldoc", false),
        ("/usr/bin/shred", false),
        ("/usr/bin/nodejs-x", false),
        ("/usr/bin/perl.", false),
        ("/usr/bin/perl-", false),
    ] {
        assert_eq!(in_table(Path::new(program)), known, "{program}");
    }
}

/// Probe 114: `filter-branch --setup` is evaluated as a shell command,
/// and git's options that name a file it writes (`log --output`,
/// `format-patch -o`) let a rule on a subcommand that only reads write
/// anywhere with the user's rights: a repository's `.git/config`, whose
/// `core.fsmonitor` the next escalated `git status` then runs.
#[test]
fn git_writes_where_an_option_names_are_refused() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    std::fs::create_dir_all(ro.join(".git")).unwrap();
    std::fs::write(ro.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    // (program, arguments, refused)
    let cases = [
        ("/usr/bin/git", "filter-branch --setup id HEAD", true),
        ("/usr/bin/git", "filter-branch --setup=id HEAD", true),
        ("/usr/bin/git", "filter-branch -d /tmp/x HEAD", true),
        ("/usr/bin/git", "log -1 --output=.git/config", true),
        ("/usr/bin/git", "log -1 --output .git/config", true),
        // git takes no cut of its diff options: `--outp` is refused by git.
        ("/usr/bin/git", "log -1 --outp=.git/config", false),
        ("/usr/bin/git", "show --output={ro}/x HEAD", true),
        ("/usr/bin/git", "diff --output=x", true),
        ("/usr/bin/git", "diff-tree --output=x HEAD", true),
        ("/usr/bin/git", "range-diff --output=x a...b", true),
        ("/usr/bin/git", "whatchanged --output=x", true),
        ("/usr/bin/git", "format-patch -o /tmp/x HEAD~1", true),
        ("/usr/bin/git", "format-patch -o/tmp/x HEAD~1", true),
        (
            "/usr/bin/git",
            "format-patch --output-directory=/tmp/x HEAD~1",
            true,
        ),
        ("/usr/bin/git", "format-patch -1 --output=x", true),
        ("/usr/bin/git", "archive -o /tmp/x.tar HEAD", true),
        ("/usr/bin/git", "archive --output=/tmp/x.tar HEAD", true),
        ("/usr/bin/git", "bugreport -o /tmp/x", true),
        ("/usr/bin/git", "diagnose --output-directory /tmp/x", true),
        (
            "/usr/bin/git",
            "fast-export --export-marks=/tmp/m HEAD",
            true,
        ),
        ("/usr/bin/git", "fast-import --export-marks=/tmp/m", true),
        ("/usr/bin/git", "read-tree --index-output=/tmp/i HEAD", true),
        ("/usr/bin/git", "checkout-index -a --prefix=/tmp/x/", true),
        ("/usr/lib/git-core/git-log", "--output=x", true),
        // Review 115: other subcommands that write where their arguments
        // say, and a cut that git's parser takes.
        ("/usr/bin/git", "read-tree --index-o=/tmp/i HEAD", true),
        ("/usr/bin/git", "mailinfo .git/config /dev/null", true),
        ("/usr/bin/git", "mailsplit -o/tmp/x", true),
        ("/usr/bin/git", "index-pack -o /tmp/x.pack --stdin", true),
        ("/usr/bin/git", "bundle create /tmp/x.bundle HEAD", true),
        ("/usr/bin/git", "worktree add /tmp/x", true),
        ("/usr/bin/git", "worktree move wt /tmp/x", true),
        ("/usr/bin/git", "pack-objects /tmp/x", true),
        ("/usr/bin/git", "merge-file a b c", true),
        ("/usr/bin/git", "apply --unsafe-paths", true),
        // Review 116: more of them.
        ("/usr/bin/git", "read-tree --index=/tmp/i HEAD", true),
        ("/usr/bin/git", "read-tree --i=/tmp/i HEAD", true),
        ("/usr/bin/git", "fast-import --quiet", true),
        ("/usr/bin/git", "index-pack --stdin /tmp/w1.pack", true),
        ("/usr/bin/git", "index-pack --keep=x /tmp/w2.pack", true),
        ("/usr/bin/git", "repack -a -d --filter-to=/tmp/p", true),
        ("/usr/bin/git", "repack -a -d", false),
        // Re-probe 117: their parser takes cuts of `--output-directory`,
        // and repack's `--filter` is an option of its own.
        ("/usr/bin/git", "bugreport --o=/tmp/x", true),
        ("/usr/bin/git", "bugreport -s x --outp /tmp/x", true),
        ("/usr/bin/git", "diagnose --o=/tmp/x", true),
        ("/usr/bin/git", "repack -a -d --filter=blob:none", false),
        ("/usr/bin/git", "repack -a -d --filter-t=/tmp/p", true),
        ("/usr/bin/git", "interpret-trailers --in-place /tmp/x", true),
        ("/usr/bin/git", "interpret-trailers --trailer a=b", false),
        ("/usr/bin/git", "read-tree HEAD", false),
        ("/usr/bin/git", "bundle verify x.bundle", false),
        ("/usr/bin/git", "worktree list", false),
        ("/usr/bin/git", "pack-objects --stdout", false),
        ("/usr/bin/git", "apply --index --check", false),
        ("/usr/bin/git", "stash pop --index", false),
        ("/usr/bin/git", "checkout-index --index -a", false),
        ("/usr/bin/git", "log --ex", false),
        ("/usr/bin/git", "log -1 --oneline", false),
        ("/usr/bin/git", "show HEAD", false),
        ("/usr/bin/git", "diff --stat", false),
        ("/usr/bin/git", "format-patch --stdout -1", false),
        ("/usr/bin/git", "archive --format=tar HEAD", false),
        // Other subcommands' `-o` is not an output: push's is an option
        // for the server, commit's is `--only`, ls-files's `--others`.
        ("/usr/bin/git", "commit -o -m msg x", false),
        ("/usr/bin/git", "ls-files -o", false),
        ("/usr/bin/git", "status --short", false),
    ];
    assert_eq!(failures_in(&place, &ro, &cases), Vec::<String>::new());
    let _ = w;
}

/// Probe 114: terraform ran a planted `local-exec` provisioner, and a
/// provider binary the sandbox put in `.terraform/`, unsandboxed.
#[test]
fn infrastructure_tools_read_their_working_directory() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let cases: &[Case<'_>] = &[
        ("/usr/bin/terraform", "plan", &w, &[], true),
        (
            "/usr/local/bin/terraform",
            "apply -auto-approve",
            &w,
            &[],
            true,
        ),
        ("/usr/bin/tofu", "init", &w, &[], true),
        ("/usr/bin/terragrunt", "plan", &w, &[], true),
        ("/usr/bin/terraform", "plan", &ro, &[], false),
        ("/usr/bin/terraform", "-chdir={w} plan", &ro, &[], true),
        ("/usr/bin/terraform", "plan {w}", &ro, &[], true),
    ];
    assert_eq!(failures(&place, cases), Vec::<String>::new());
}

/// Probe 122: programs that read what they run from their working
/// directory, or run git in repositories their global config lists, were
/// not in the table: `scalar run all` ran a planted `uploadpack`, `javac`
/// an annotation processor on its class path (`.`), autoconf a planted
/// `configure.ac`, prove a `.proverc`, unsandboxed.
#[test]
fn jdk_tools_git_front_ends_and_script_build_tools_are_judged() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let cases: &[Case<'_>] = &[
        (
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/javac",
            "-d {ro} {ro}/Hello.java",
            &w,
            &[],
            true,
        ),
        (
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/javac",
            "-d {ro} {ro}/Hello.java",
            &ro,
            &[],
            false,
        ),
        (
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
            "Hello",
            &w,
            &[],
            true,
        ),
        ("/usr/bin/jshell", "", &w, &[], true),
        ("/usr/bin/autoconf", "", &w, &[], true),
        ("/usr/bin/autoreconf", "-i", &w, &[], true),
        ("/usr/bin/prove", "{ro}/t.t", &w, &[], true),
        ("/usr/bin/prove", "{ro}/t.t", &ro, &[], false),
        (
            "/usr/bin/make-first-existing-target",
            "clean",
            &w,
            &[],
            true,
        ),
        // scalar runs git in every enlistment ~/.gitconfig lists, wherever
        // it runs: only what runs nothing passes.
        ("/usr/local/bin/scalar", "run all", &ro, &[], true),
        ("/usr/local/bin/scalar", "register", &ro, &[], true),
        (
            "/usr/local/bin/scalar",
            "-c core.fsmonitor=x list",
            &ro,
            &[],
            true,
        ),
        ("/usr/local/bin/scalar", "frobnicate", &ro, &[], true),
        ("/usr/local/bin/scalar", "list", &ro, &[], false),
        ("/usr/local/bin/scalar", "list", &w, &[], true),
        // Review 123: from a read-only directory, what the JDK loads from
        // a writable one: an argument file, a class path's later entry, an
        // agent.
        ("/usr/bin/java", "@{w}/args", &ro, &[], true),
        ("/usr/bin/javac", "@{ro}/args", &ro, &[], true),
        ("/usr/bin/java", "-cp {ro}:{w}/classes Evil", &ro, &[], true),
        (
            "/usr/bin/java",
            "-javaagent:{w}/agent.jar=x -version",
            &ro,
            &[],
            true,
        ),
        (
            "/usr/bin/javac",
            "-processorpath {ro}/a.jar:{w}/b.jar X.java",
            &ro,
            &[],
            true,
        ),
        (
            "/usr/bin/java",
            "-cp {ro}/a.jar:{ro}/b.jar Main",
            &ro,
            &[],
            false,
        ),
    ];
    assert_eq!(failures(&place, cases), Vec::<String>::new());
}

/// Review 123: `scalar help` runs `git help`, which runs the man viewer
/// `~/.gitconfig` names: scalar reads git's configuration as git does.
#[test]
fn scalar_reads_gits_configuration() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    let home = format!("HOME={}", w.display());
    let cases: &[Case<'_>] = &[
        ("/usr/bin/scalar", "help", &ro, &[&home], true),
        ("/usr/bin/scalar", "list", &ro, &[&home], true),
        ("/usr/bin/git", "help scalar", &ro, &[&home], true),
    ];
    assert_eq!(failures(&place, cases), Vec::<String>::new());
}

/// Review 124: splitting judged words on `:` dropped pieces judged whole
/// before (a path through a name with `:` in it, a second `file:` URL),
/// and `-javaagent:P` names all of `P`, `:` included.
#[test]
fn a_word_is_judged_whole_and_piece_by_piece() {
    let place = place();
    let (ro, w) = (place.ro.clone(), place.w.clone());
    // A host-made link whose name holds a `:`, into the writable root.
    std::fs::create_dir(ro.join("c")).unwrap();
    std::os::unix::fs::symlink(&w, ro.join("c/a:b")).unwrap();
    let cases: &[Case<'_>] = &[
        (
            "/usr/bin/java",
            "-javaagent:{ro}/c/a:b/agent.jar -version",
            &ro,
            &[],
            true,
        ),
        (
            "/usr/bin/java",
            "-agentpath:{ro}/c/a:b/lib.so -version",
            &ro,
            &[],
            true,
        ),
        (
            "/usr/bin/npm",
            "--node-options=--require{sp}{ro}/c/a:b/evil.js --version",
            &ro,
            &[],
            true,
        ),
        (
            "/usr/bin/pip",
            "install x{sp}@{sp}file:///usr{sp}y{sp}@{sp}file://localhost{w}/pkg",
            &ro,
            &[],
            true,
        ),
        (
            "/usr/bin/java",
            "-javaagent:{ro}/c/agent.jar -version",
            &ro,
            &[],
            false,
        ),
    ];
    assert_eq!(failures(&place, cases), Vec::<String>::new());
}

/// Probe 128: a refusal for what an argument names said the program
/// "reads its script from" the working directory, without the argument: a
/// skill's script named `dash2`, taken for dash by its name, was refused
/// for `dash2 hello`, and the message read as if its own script were in the
/// working directory. It names the argument judged.
#[test]
fn a_refusal_for_an_argument_names_the_argument() {
    let place = place();
    let writable_root = place.w.clone();
    let refusal = |program: &str, args: &[&str]| {
        let argv: Vec<OsString> = std::iter::once(program)
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        planted_instructions(
            &Request {
                program: Path::new(program),
                argv: &argv,
                cwd: &place.w,
                env: &[],
                writable_roots: std::slice::from_ref(&writable_root),
            },
            &|path: &Path| path.starts_with(&writable_root),
        )
    };
    let w = place.w.display();
    assert_eq!(
        refusal("/usr/local/bin/dash2", &["hello"]).as_deref(),
        Some(
            format!(
                "escalation refused: dash2 reads its script from {w} (its argument hello), \
                 which the sandbox can write"
            )
            .as_str()
        )
    );
    assert_eq!(
        refusal("/usr/bin/perl", &["-I", "lib x", "/bin/true"]).as_deref(),
        Some(
            format!(
                "escalation refused: perl reads its script from {w} (its argument \"lib x\"), \
                 which the sandbox can write"
            )
            .as_str()
        )
    );
}

/// The same for an argument too long to name whole: its start.
#[test]
fn a_long_argument_is_named_by_its_start() {
    assert_eq!(super::shown(b"hello"), "hello");
    assert_eq!(super::shown(b"a\x1bb"), "\"a\\u{1b}b\"");
    let long = [b'x'; 100];
    assert_eq!(
        super::shown(&long),
        format!("{}... (100 bytes)", "x".repeat(80))
    );
}
