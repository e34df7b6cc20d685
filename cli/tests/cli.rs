//! The `execgate` binary, run for real: the patched zsh, the wrapper and the
//! sandbox helper beside it (`cargo build --workspace --bins`, which
//! `scripts/test` runs first).

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `program` with `args` in `ws`, its standard streams piped, no user
/// config.
fn spawn_piped(ws: &Path, program: &str, args: &[&str]) -> std::process::Child {
    Command::new(program)
        .args(args)
        .current_dir(ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn execgate(cwd: &Path, args: &[&str]) -> Output {
    execgate_with_env(cwd, args, &[])
}

fn execgate_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let binary = env!("CARGO_BIN_EXE_execgate");
    let dir = Path::new(binary).parent().unwrap();
    for sibling in ["execgate-exec-wrapper", "execgate-sandbox-helper"] {
        assert!(
            dir.join(sibling).exists(),
            "{sibling} is not built beside execgate: run cargo build --workspace --bins"
        );
    }
    Command::new(binary)
        .args(args)
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", cwd.join("no-config"))
        .env("XDG_STATE_HOME", cwd.join("state"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `execgate args` from `ws`, in a mount namespace of the test's own where
/// `from` is shown at `to` too (a bind mount, as container volumes often
/// are), made before execgate starts.
fn execgate_with_bind_mount(ws: &Path, from: &Path, to: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
        .args(["sh", from.to_str().unwrap(), to.to_str().unwrap()])
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(args)
        .current_dir(ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `PATH` of one directory in `dir` that holds an executable file for
/// each of `names`, so that lint finds them there as programs of their own
/// name (what they are on this machine is no business of the test).
fn path_with_programs(dir: &Path, names: &[&str]) -> String {
    let bin = dir.join("fake-path");
    std::fs::create_dir_all(&bin).unwrap();
    for name in names {
        let program = bin.join(name);
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    bin.to_str().unwrap().to_owned()
}

/// Held by the tests that run a session under a low descriptor limit or
/// put many descriptors in flight: the kernel counts a user's descriptors
/// in flight over Unix sockets against the sender's `RLIMIT_NOFILE`, so a
/// flood not yet read fails another session's hellos with `ETOOMANYREFS`
/// (the flood's own session failed so, once, on a slower machine).
fn descriptors_in_flight() -> std::sync::MutexGuard<'static, ()> {
    static DESCRIPTORS_IN_FLIGHT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DESCRIPTORS_IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A git workspace in /var/tmp: not under /tmp, which the default profile
/// makes writable, nor the checkout, which may lie anywhere.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("execgate-cli")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    assert!(Command::new("git")
        .args(["init", "-q"])
        .current_dir(&ws)
        .status()
        .unwrap()
        .success());
    (dir, ws)
}

/// A skill named `name` in `skills/` under `dir`, with an empty
/// `scripts/` and `permissions` as its `permissions.toml`.
fn skill_with(dir: &Path, name: &str, permissions: &str) -> PathBuf {
    let skill = dir.join("skills").join(name);
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(skill.join("SKILL.md"), format!("---\nname: {name}\n---\n")).unwrap();
    std::fs::write(skill.join("permissions.toml"), permissions).unwrap();
    skill
}

#[test]
fn the_main_job_runs_git_and_refuses_the_write_outside() {
    let (dir, ws) = workspace();
    let output = execgate(
        &ws,
        &[
            "run",
            "--",
            "git status --short --branch && touch ../outside",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("No commits yet"),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stderr).contains("Read-only file system"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("outside").exists());
}

#[test]
fn exit_statuses_pass_through() {
    let (_dir, ws) = workspace();
    // (command, status)
    let cases = [
        ("exit 3", 3),
        ("true", 0),
        ("/bin/sh -c 'kill -TERM $$'", 143),
        ("no-such-cmd-x", 127),
    ];
    for (command, status) in cases {
        let output = execgate(&ws, &["run", "--", command]);
        assert_eq!(
            output.status.code(),
            Some(status),
            "{command}: {}",
            text(&output.stderr)
        );
    }
}

/// An option's value is the next word, whatever it starts with, as getopt
/// takes it: clap took `-dash` for an option and told the user to write
/// `-- -dash`, which makes it the command. The command's words are still
/// only those after the options, and `--` is no value.
#[test]
fn an_options_value_may_start_with_a_dash() {
    let (_dir, ws) = workspace();
    std::fs::create_dir(ws.join("-dash")).unwrap();
    std::fs::write(
        ws.join("-x.rules"),
        "prefix_rule(pattern = [\"id\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let output = execgate(
        &ws,
        &[
            "run", "--cwd", "-dash", "--rules", "-x.rules", "--", "pwd; id",
        ],
    );
    assert_eq!(output.status.code(), Some(126), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("{}\n", ws.join("-dash").display())
    );
    // A word that is no option's value is still not taken for the command.
    let output = execgate(&ws, &["run", "-x", "--", "true"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let output = execgate(&ws, &["run", "--", "-x"]);
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    // Nor is `--` a value: an option missing one is an error, not a run
    // (review 213: the audit log went to a file named `--`).
    let output = execgate(&ws, &["run", "--audit-log", "--", "echo", "ran"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert!(!ws.join("--").exists());
}

/// Probe 164: execgate blocks `SIGTTIN` and `SIGTTOU` so that the terminal
/// never stops it; the shell and what it runs in place inherited the mask,
/// and a background job reading the terminal failed instead of stopping.
/// Sandboxed or not, the shell starts with nothing blocked.
#[test]
fn the_shell_starts_with_no_signal_blocked() {
    let (_dir, ws) = workspace();
    for profile in ["danger-full-access", "workspace-write"] {
        let output = execgate(
            &ws,
            &[
                "run",
                "--profile",
                profile,
                "--",
                "grep SigBlk /proc/self/status; /bin/grep SigBlk /proc/$$/status",
            ],
        );
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(
            stdout.matches("SigBlk:\t0000000000000000").count(),
            2,
            "{profile}: {stdout}"
        );
    }
}

#[test]
fn danger_full_access_drops_the_sandbox_but_keeps_interception() {
    let (dir, ws) = workspace();
    let output = execgate(
        &ws,
        &[
            "run",
            "--verbose",
            "--profile",
            "danger-full-access",
            "--",
            "touch ../outside",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(dir.path().join("outside").exists());
    assert!(
        text(&output.stderr).contains("/usr/bin/touch"),
        "{}",
        text(&output.stderr)
    );
    // The session's start in words (probe 136: a debug dump).
    assert!(
        text(&output.stderr)
            .contains("execgate: session started (profile danger-full-access; sandbox "),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[profiles.x]\nextendz = \"read-only\"\n").unwrap();
    let output = execgate(
        &ws,
        &["run", "--config", config.to_str().unwrap(), "--", "true"],
    );
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("extendz") && stderr.contains("config.toml"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.toml");
    let output = execgate(
        &ws,
        &["run", "--config", missing.to_str().unwrap(), "--", "true"],
    );
    assert_eq!(output.status.code(), Some(125));
    assert!(text(&output.stderr).contains("missing.toml"));

    // Probe 142: it said neither where profiles are defined nor which
    // config file was read.
    let output = execgate(&ws, &["run", "--profile", "no-such-profile", "--", "true"]);
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unknown profile \"no-such-profile\"")
            && stderr.contains("no config file was read; define it as [profiles.no-such-profile]"),
        "{stderr}"
    );
    // Probe 142: a top-level key below a table was reported as that
    // table's unknown key, with the table's keys listed.
    for (text, key, table) in [
        (
            "[profiles.net]\nextends = \"workspace-write\"\nrules = [\"cfg.rules\"]\n",
            "rules",
            "profiles.net",
        ),
        ("[audit]\nkeep = 3\nskills = [\"x\"]\n", "skills", "audit"),
    ] {
        std::fs::write(&config, text).unwrap();
        let output = execgate(
            &ws,
            &["run", "--config", config.to_str().unwrap(), "--", "true"],
        );
        assert_eq!(output.status.code(), Some(125));
        let stderr = self::text(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "`{key}` is a top-level key, but it comes after the [{table}] header"
            )),
            "{stderr}"
        );
    }
    std::fs::write(&config, "").unwrap();
    let config_arg = config.to_str().unwrap();
    for command in ["run", "sandbox"] {
        let output = execgate(
            &ws,
            &[
                command,
                "--config",
                config_arg,
                "--profile",
                "nope",
                "--",
                "true",
            ],
        );
        assert_eq!(output.status.code(), Some(125));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "define it as [profiles.nope] in {config_arg}, or pass the config file"
            )),
            "{command}: {stderr}"
        );
    }

    // A profile's error names the file's own line (it named a line of the
    // profiles written out again, past the file's end).
    std::fs::write(
        &config,
        "rules = []\n[profiles.x]\nextends = \"read-only\"\nfilesystem = { \"/tmp\" = \"rw\" }\n",
    )
    .unwrap();
    let output = execgate(
        &ws,
        &["run", "--config", config.to_str().unwrap(), "--", "true"],
    );
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("line 4") && stderr.contains("\"/tmp\" = \"rw\""),
        "{stderr}"
    );
}

/// A profile that hides the working directory is refused before anything
/// starts, saying what to change (bubblewrap's own words were "Can't chdir
/// to ...: No such file or directory", with exit status 1).
#[test]
fn a_profile_that_hides_the_working_directory_is_refused() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.p]\nfilesystem = { \":minimal\" = \"read\" }\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for command in ["run", "sandbox"] {
        let output = execgate(
            &ws,
            &[command, "--config", config, "--profile", "p", "--", "true"],
        );
        assert_eq!(output.status.code(), Some(125), "{command}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("is hidden in the sandbox") && stderr.contains(":cwd"),
            "{command}: {stderr}"
        );
    }
}

/// Probe 131: a profile's write grant on a path that an earlier sandbox
/// had made a link (`cache -> secrets`) wrote wherever the link led, and
/// nothing said so. The grant still follows it (links the user made are
/// meant), but the warning names where it leads.
#[test]
fn a_write_grant_through_a_link_says_where_it_leads() {
    let (dir, ws) = workspace();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let cache = dir.path().join("cache");
    std::os::unix::fs::symlink(&secrets, &cache).unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.p]\nextends = \"workspace-write\"\nfilesystem = {{ {:?} = \"write\", \
             {:?} = \"write\" }}\n",
            cache.display().to_string(),
            plain.display().to_string()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = execgate(
        &ws,
        &["run", "--config", config, "--profile", "p", "--", "true"],
    );
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("through a link"))
        .collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    let real = std::fs::canonicalize(&secrets).unwrap();
    assert!(
        warned[0].contains(&cache.display().to_string())
            && warned[0].contains(&real.display().to_string()),
        "{stderr}"
    );
}

/// Regression (a probe of `execgate shell`): started in the home, a
/// workspace profile made the home writable, and the sandbox rewrote the
/// shell's startup files. Below the home is a project, as before.
#[test]
fn a_writable_working_directory_cannot_be_the_home() {
    let (_dir, ws) = workspace();
    let home = ws.to_str().unwrap();
    for command in ["run", "sandbox"] {
        let output = execgate_with_env(&ws, &[command, "--", "true"], &[("HOME", home)]);
        assert_eq!(output.status.code(), Some(125), "{command}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("holds your home directory"),
            "{command}: {stderr}"
        );
        let output = execgate_with_env(
            &ws,
            &[command, "--profile", "read-only", "--", "true"],
            &[("HOME", home)],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command}: {}",
            text(&output.stderr)
        );
    }
    let project = ws.join("project");
    std::fs::create_dir(&project).unwrap();
    let output = execgate_with_env(&project, &["run", "--", "true"], &[("HOME", home)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// Regression (a probe of the audit log): with the config home in the
/// workspace, a command wrote `default_profile = "danger-full-access"` to
/// the default config file, made or not yet, and the next session ran
/// unsandboxed. The config's directory is read-only in the sandbox; one
/// named with `--config` is too, where the sandbox could write it.
/// Probe 118: `EXECGATE_SANDBOX_HELPER=/usr/bin/true` ran nothing and
/// exited 0, without a word: an override must name the tool of this
/// build, as `execgate doctor` checks.
#[test]
fn an_override_that_is_not_this_builds_tool_stops_the_command() {
    let (_dir, ws) = workspace();
    for variable in ["EXECGATE_SANDBOX_HELPER", "EXECGATE_WRAPPER_BINARY"] {
        let output = execgate_with_env(
            &ws,
            &["run", "--", "exit 3"],
            &[(variable, "/usr/bin/true")],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{variable}: {stderr}");
        assert!(
            stderr.contains(&format!("{variable} names /usr/bin/true, which is not")),
            "{variable}: {stderr}"
        );
    }
    // Another build's helper runs, as comparing builds needs, and is
    // warned of (review 119: scripts/bench-files' BEFORE_HELPER).
    let binary = Path::new(env!("CARGO_BIN_EXE_execgate"));
    let mut helper = std::fs::read(binary.with_file_name("execgate-sandbox-helper")).unwrap();
    let marker = b"execgate-tools-key:helper:";
    let key = helper
        .windows(marker.len())
        .position(|window| window == marker)
        .unwrap()
        + marker.len();
    helper[key] = if helper[key] == b'0' { b'1' } else { b'0' };
    let other = ws.join("other-helper");
    std::fs::write(&other, helper).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = execgate_with_env(
        &ws,
        &["run", "--", "exit 3"],
        &[("EXECGATE_SANDBOX_HELPER", other.to_str().unwrap())],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("which another build of execgate made"),
        "{stderr}"
    );
    // Review 124: named as the wrapper, it was taken for another build's
    // wrapper, and failed on its arguments.
    let output = execgate_with_env(
        &ws,
        &["run", "--", "exit 3"],
        &[("EXECGATE_WRAPPER_BINARY", other.to_str().unwrap())],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("it is another build's sandbox helper"),
        "{stderr}"
    );
}

/// Probe 118: a default config file that could not be read (a link to
/// nothing, a link in a loop, a directory on the way that is a link to
/// nothing) was taken for no config at all: the command ran in the default
/// profile, without the config's rules, and nothing said so. Only nothing
/// at all at its path means no config.
#[test]
fn a_default_config_that_cannot_be_read_stops_the_command() {
    let (_dir, ws) = workspace();
    let marker = ws.join("ran");
    let command = format!("touch {}", marker.display());
    type Make = fn(&Path);
    let cases: [(&str, Make); 3] = [
        ("a link to nothing", |home| {
            std::fs::create_dir_all(home.join("execgate")).unwrap();
            std::os::unix::fs::symlink(
                "/nonexistent/config.toml",
                home.join("execgate/config.toml"),
            )
            .unwrap();
        }),
        ("a link in a loop", |home| {
            std::fs::create_dir_all(home.join("execgate")).unwrap();
            std::os::unix::fs::symlink("config.toml", home.join("execgate/config.toml")).unwrap();
        }),
        ("its directory a link to nothing", |home| {
            std::fs::create_dir_all(home).unwrap();
            std::os::unix::fs::symlink("/nonexistent/execgate", home.join("execgate")).unwrap();
        }),
    ];
    for (index, (case, make)) in cases.into_iter().enumerate() {
        let home = ws.join(format!("config-home-{index}"));
        make(&home);
        let output = execgate_with_env(
            &ws,
            &["run", "--", &command],
            &[("XDG_CONFIG_HOME", home.to_str().unwrap())],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{case}: {stderr}");
        assert!(!marker.exists(), "{case}: the command ran");
        assert!(
            stderr.contains("cannot read config file") && stderr.contains("config.toml"),
            "{case}: {stderr}"
        );
        let lint = execgate_with_env(
            &ws,
            &["policy", "lint"],
            &[("XDG_CONFIG_HOME", home.to_str().unwrap())],
        );
        assert_eq!(
            lint.status.code(),
            Some(125),
            "{case}: {}",
            text(&lint.stdout)
        );
    }
    // Nothing there at all is no config.
    let output = execgate_with_env(
        &ws,
        &["run", "--", &command],
        &[("XDG_CONFIG_HOME", ws.join("empty-home").to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(marker.exists());
}

/// Probe 151: what a later session loads, changed from a sandbox without
/// a warning at the first session's start: a config file with another
/// name (a hard link) in the workspace; a skill that a skills directory
/// links to and that is not there yet, made by a command; a `ZDOTDIR` in
/// the workspace not made yet; and, under `execgate sandbox`, a `ZDOTDIR`
/// in the workspace at all. Each is warned of.
#[test]
fn what_later_sessions_load_from_the_sandboxs_reach_is_warned_of() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let config_home = base.join("config-home");
    std::fs::create_dir_all(config_home.join("execgate")).unwrap();
    let config = config_home.join("execgate/config.toml");
    let skills = base.join("skills");
    std::fs::create_dir_all(skills.join("real")).unwrap();
    std::fs::write(
        skills.join("real/SKILL.md"),
        "---\nname: real\ndescription: r\n---\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(ws.join("later"), skills.join("later")).unwrap();
    std::fs::write(
        &config,
        format!("skills = [{:?}]\n", skills.display().to_string()),
    )
    .unwrap();
    std::fs::hard_link(&config, ws.join("notes.toml")).unwrap();
    let zdotdir = ws.join("zd");
    let env = [
        ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
        ("ZDOTDIR", zdotdir.to_str().unwrap()),
    ];
    let output = execgate_with_env(&ws, &["run", "--", "true"], &env);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for expected in [
        format!("{} has another name (a hard link)", config.display()),
        format!(
            "{} is a link to {}, which is not there yet and which this session's sandbox can make",
            skills.join("later").display(),
            ws.join("later").display()
        ),
        format!(
            "{} can be made from this session's sandbox",
            zdotdir.display()
        ),
    ] {
        assert!(stderr.contains(&expected), "{expected}: {stderr}");
    }
    // An audit log with another name in the workspace.
    let log = base.join("logs/audit.jsonl");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "").unwrap();
    std::fs::hard_link(&log, ws.join("log-copy.jsonl")).unwrap();
    let output = execgate_with_env(
        &ws,
        &["run", "--audit-log", log.to_str().unwrap(), "--", "true"],
        &env,
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("the audit log {} has another name", log.display())),
        "{stderr}"
    );
    // A rules file that a rule's profile can write.
    let policy = base.join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    let rules = policy.join("r.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"tee\"], decision = \"allow\", execution = \"pw\")\n",
    )
    .unwrap();
    let granting = base.join("granting.toml");
    std::fs::write(
        &granting,
        format!(
            "[profiles.pw]\nextends = \"workspace-write\"\nfilesystem = {{ {:?} = \"write\" }}\n",
            policy.display().to_string()
        ),
    )
    .unwrap();
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--config",
            granting.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--",
            "true",
        ],
        &env,
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{} is writable", rules.display()))
            && stderr.contains("the commands a rule runs in the profile \"pw\""),
        "{stderr}"
    );
    std::fs::create_dir(&zdotdir).unwrap();
    let output = execgate_with_env(&ws, &["sandbox", "--", "true"], &env);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is writable from this session's sandbox",
            zdotdir.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_config_file_is_out_of_the_sandboxs_reach() {
    let (dir, ws) = workspace();
    let config_home = ws.join("config-home");
    let default = config_home.join("execgate/config.toml");
    let overwrite = |path: &Path| {
        format!(
            "mkdir -p {dir} ; print -r -- 'default_profile = \"danger-full-access\"' > {path}",
            dir = path.parent().unwrap().display(),
            path = path.display()
        )
    };
    let config_home_env = [("XDG_CONFIG_HOME", config_home.to_str().unwrap())];
    // Not made yet, then made by the user.
    for made in [false, true] {
        if made {
            std::fs::write(&default, "rules = []\n").unwrap();
        }
        let output = execgate_with_env(&ws, &["run", "--", &overwrite(&default)], &config_home_env);
        assert_ne!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("read-only file system"),
            "{}",
            text(&output.stderr)
        );
        let written = std::fs::read_to_string(&default).unwrap_or_default();
        assert!(!written.contains("danger"), "made: {made}: {written}");
    }
    let named = ws.join("execgate.toml");
    std::fs::write(&named, "rules = []\n").unwrap();
    let output = execgate(
        &ws,
        &["run", "--config", "execgate.toml", "--", &overwrite(&named)],
    );
    assert_ne!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&named).unwrap(), "rules = []\n");
    // A review: with --config, the default one (what every later session
    // without it reads) was left writable.
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--config",
            "execgate.toml",
            "--",
            &overwrite(&default),
        ],
        &config_home_env,
    );
    assert_ne!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!std::fs::read_to_string(&default)
        .unwrap()
        .contains("danger"));

    // Probe 133: the default config a link (dotfiles) to a file the
    // sandbox could write: its directory was kept, the file it leads to
    // was not, and a command switched later sessions to
    // danger-full-access. Both are kept.
    let team = ws.join("team-config.toml");
    std::fs::write(&team, "rules = []\n").unwrap();
    std::fs::remove_file(&default).unwrap();
    std::os::unix::fs::symlink(&team, &default).unwrap();
    let output = execgate_with_env(&ws, &["run", "--", &overwrite(&team)], &config_home_env);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&team).unwrap(), "rules = []\n");
    std::fs::remove_file(&default).unwrap();

    // Through a link the sandbox could replace, it cannot be kept: it is
    // warned of (a review swapped such a link for its own config).
    let real = ws.join("real.toml");
    std::fs::write(&real, "rules = []\n").unwrap();
    std::os::unix::fs::symlink(&real, ws.join("link.toml")).unwrap();
    let output = execgate(&ws, &["run", "--config", "link.toml", "--", "true"]);
    assert!(
        text(&output.stderr).contains("reached through the link"),
        "{}",
        text(&output.stderr)
    );

    // Probe 147: a link to a link the sandbox could re-point (a dotfiles
    // chain): only the first link and the last file were looked at, and a
    // command re-pointed the middle one, without a warning, to a config of
    // its own. Every link followed is looked at.
    let dots = dir.path().join("keep/dots");
    std::fs::create_dir_all(&dots).unwrap();
    std::fs::write(dots.join("real.toml"), "rules = []\n").unwrap();
    let middle = ws.join("middle.toml");
    std::os::unix::fs::symlink(dots.join("real.toml"), &middle).unwrap();
    std::os::unix::fs::symlink(&middle, &default).unwrap();
    let named = dir.path().join("keep/named.toml");
    std::os::unix::fs::symlink(&middle, &named).unwrap();
    // A review: with `--config` naming another file, the default one (what
    // later sessions without it read) was not warned of, nor the rules it
    // names.
    let plain = dir.path().join("keep/plain.toml");
    std::fs::write(&plain, "rules = []\n").unwrap();
    let later = ws.join("later.rules");
    std::fs::write(&later, "").unwrap();
    std::fs::write(
        dots.join("real.toml"),
        format!("rules = [{:?}]\n", later.display().to_string()),
    )
    .unwrap();
    let output = execgate_with_env(
        &ws,
        &["run", "--config", plain.to_str().unwrap(), "--", "true"],
        &config_home_env,
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is writable from this session's sandbox",
            later.display()
        )),
        "{stderr}"
    );
    for (args, warned) in [
        (&["run", "--", "true"][..], &default),
        (
            &["run", "--config", named.to_str().unwrap(), "--", "true"],
            &named,
        ),
        (
            &["run", "--config", plain.to_str().unwrap(), "--", "true"],
            &default,
        ),
    ] {
        let output = execgate_with_env(&ws, args, &config_home_env);
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{} is reached through the link {}, which this session's sandbox can replace",
                warned.display(),
                middle.display()
            )),
            "{args:?}: {stderr}"
        );
    }
}

/// Probe 137: a skill's grant on the directory of the `--config` file let
/// its script rewrite the config (`default_profile =
/// "danger-full-access"`), and the next session ran unsandboxed. The file
/// is kept read-only under grants too.
#[test]
fn a_skills_grant_does_not_reach_the_config_file() {
    let (dir, ws) = workspace();
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    let config = cfg.join("config.toml");
    std::fs::write(&config, "").unwrap();
    let skill = skill_with(
        dir.path(),
        "cfgw",
        &format!(
            "filesystem = {{ {:?} = \"write\" }}\n",
            cfg.display().to_string()
        ),
    );
    let script = skill.join("scripts/w.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho 'default_profile = \"danger-full-access\"' >> {}\ntouch {}/note\n",
            config.display(),
            cfg.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The per-user configuration outside the workspace, or the
    // escalation is refused for it.
    let config_home = dir.path().join("no-config");
    let state_home = dir.path().join("state");
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--skills",
            dir.path().join("skills").to_str().unwrap(),
            "--approval",
            "approve",
            "--",
            script.to_str().unwrap(),
        ],
        &[
            ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
            ("XDG_STATE_HOME", state_home.to_str().unwrap()),
        ],
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "", "{stderr}");
    // The grant itself holds beside it.
    assert!(cfg.join("note").exists(), "{stderr}");
}

/// Probe 232: a skill granted write access over the rules rewrote them,
/// and the next session ran what they then allowed; nothing warned of the
/// grant, as a rule's profile's is warned of.
#[test]
fn a_skills_grant_over_the_rules_is_warned_of() {
    let (dir, ws) = workspace();
    let proj = dir.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    let rules = proj.join("team.rules");
    std::fs::write(&rules, "").unwrap();
    let skill = skill_with(
        dir.path(),
        "saver",
        &format!(
            "filesystem = {{ {:?} = \"write\" }}\n",
            proj.display().to_string()
        ),
    );
    let skills = dir.path().join("skills");
    let args = [
        "--rules",
        rules.to_str().unwrap(),
        "--skills",
        skills.to_str().unwrap(),
    ];
    let mut run = vec!["run"];
    run.extend(args);
    run.extend(["--", "true"]);
    let output = execgate(&ws, &run);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warning = format!(
        "execgate: warning: {} is writable from this session's sandbox, so the scripts of \
         skill \"saver\", which are granted it, could change the policy of later sessions",
        rules.display()
    );
    assert!(stderr.contains(&warning), "{stderr}");
    // Lint says so too, for the config's rules and skills.
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "rules = [{:?}]\nskills = [{:?}]\n",
            rules.display().to_string(),
            skills.display().to_string()
        ),
    )
    .unwrap();
    let output = execgate(
        &ws,
        &["policy", "lint", "--config", config.to_str().unwrap()],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");
    // And `policy check --as-run` says a skill's script is the skill's.
    let script = skill.join("scripts/save.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = execgate(
        &ws,
        &[
            "policy",
            "check",
            "--as-run",
            "--config",
            config.to_str().unwrap(),
            "--",
            script.to_str().unwrap(),
        ],
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "execgate: {} is a script of skill saver: a session decides it by the skill, not \
             by these rules (but for forbidden ones): a person is asked, and it runs with the \
             skill's grants where it may leave the sandbox",
            std::fs::canonicalize(&script).unwrap().display()
        )),
        "{stderr}"
    );
}

/// Probe 232: one skill's grant under `~/.cache` kept every skill's script
/// in place, without its grants, and nothing said why.
#[test]
fn a_grant_where_programs_read_their_configuration_is_warned_of() {
    let (dir, ws) = workspace();
    let home = dir.path().join("home");
    let cache = home.join(".cache/cacheskill");
    std::fs::create_dir_all(&cache).unwrap();
    skill_with(
        dir.path(),
        "cache",
        "filesystem = { \"~/.cache/cacheskill\" = \"write\" }\n",
    );
    let skills = dir.path().join("skills");
    let env = [("HOME", home.to_str().unwrap())];
    let output = execgate_with_env(
        &ws,
        &["run", "--skills", skills.to_str().unwrap(), "--", "true"],
        &env,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warning = format!(
        "execgate: warning: skill cache: programs read their per-user configuration from {}, \
         and the sandbox or a grant can write {}: so, in a session that knows of this grant, \
         no command with grants",
        home.join(".cache").display(),
        cache.display()
    );
    assert!(stderr.contains(&warning), "{stderr}");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("skills = [{:?}]\n", skills.display().to_string()),
    )
    .unwrap();
    let output = execgate_with_env(
        &ws,
        &["policy", "lint", "--config", config.to_str().unwrap()],
        &env,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");
    // Review 233: a grant above those places (the home itself) reaches
    // them too.
    let above = dir.path().join("above");
    std::fs::create_dir(&above).unwrap();
    skill_with(&above, "home", "filesystem = { \"~\" = \"write\" }\n");
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--skills",
            above.join("skills").to_str().unwrap(),
            "--",
            "true",
        ],
        &env,
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr
            .contains("execgate: warning: skill home: programs read their per-user configuration"),
        "{stderr}"
    );
}

/// Regression (a probe of skills): a skill's name reached the terminal
/// in a start-up warning as it was written, escape sequences and all.
/// execgate's own lines escape what they quote.
#[test]
fn a_skills_name_cannot_write_to_the_terminal() {
    let (dir, ws) = workspace();
    let skill = dir.path().join("skills/esc");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        // (`: ` would make YAML read a mapping, which is refused.)
        "---\nname: esc\u{1b}[2K\rexecgate - skill verified\n---\n",
    )
    .unwrap();
    std::fs::write(
        skill.join("permissions.toml"),
        "filesystem = { \"/nonexistent-execgate-grant\" = \"write\" }\n",
    )
    .unwrap();
    let skills = dir.path().join("skills");
    let output = execgate(
        &ws,
        &["run", "--skills", skills.to_str().unwrap(), "--", "true"],
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    // A newline in a name starts no line of its own (a review's skill
    // directory forged an `execgate:` line so).
    let forging = dir.path().join("skills/sk\nexecgate: approved");
    std::fs::create_dir_all(forging.join("scripts")).unwrap();
    std::fs::write(forging.join("SKILL.md"), "# no name\n").unwrap();
    std::fs::write(
        forging.join("permissions.toml"),
        "filesystem = { \"/nonexistent-execgate-grant\" = \"write\" }\n",
    )
    .unwrap();
    let output = execgate(
        &ws,
        &["run", "--skills", forging.to_str().unwrap(), "--", "true"],
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("approved"), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|line| !line.starts_with("execgate: approved")),
        "{stderr}"
    );
}

/// Regression (a probe of the audit log): under a file size limit, the
/// audit write that passed it killed execgate (`SIGXFSZ`), and the
/// session's end went unrecorded. The write fails instead: that command
/// is denied, and execgate ends as the command did.
/// Regression (a probe): with `on_failure = "warn"`, records that could
/// not be written were said only to `--log-format`: the person at the
/// terminal did not know that what ran left no record. Once, when they
/// start failing, not once per command.
#[test]
fn a_warned_audit_failure_is_said_on_stderr_once() {
    let (dir, ws) = workspace();
    let log = dir.path().join("log/audit.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[audit]\non_failure = \"warn\"\n").unwrap();
    let output = Command::new("prlimit")
        .arg("--fsize=3000")
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--config", config.to_str().unwrap()])
        .args(["--audit-log", log.to_str().unwrap(), "--"])
        .arg("for i in 1 2 3 4 5 6; do /usr/bin/true; done; print -r -- ended")
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&output.stdout), "ended\n", "{stderr}");
    assert_eq!(
        stderr.matches("the audit log cannot be written").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("going on without records"), "{stderr}");
}

/// Review 42: bubblewrap's status lines go to a file in memory, whose
/// writes count against the file-size limit: under a tiny one, `SIGXFSZ`
/// killed bubblewrap, so a command that ran and exited 1 read as killed,
/// or nothing ran and nothing said why. There, the set-up is not watched.
#[test]
fn a_tiny_file_size_limit_does_not_end_the_sandbox() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[audit]\non_failure = \"warn\"\n").unwrap();
    for limit in ["0", "150", "200"] {
        let output = Command::new("prlimit")
            .arg(format!("--fsize={limit}"))
            .arg(env!("CARGO_BIN_EXE_execgate"))
            .args(["run", "--config", config.to_str().unwrap(), "--"])
            .arg("print -r -- ran; exit 1")
            .current_dir(&ws)
            .env("XDG_CONFIG_HOME", ws.join("no-config"))
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{limit}: {stderr}");
        assert_eq!(text(&output.stdout), "ran\n", "{limit}: {stderr}");
    }
}

/// Regression (a probe): under a low descriptor limit every command
/// failed with a message that named something else ("started without an
/// execgate session"), and `run` exited 0. It is refused up front now.
#[test]
fn a_low_descriptor_limit_is_refused_up_front() {
    let _limit = descriptors_in_flight();
    let (_dir, ws) = workspace();
    for (limit, code) in [("64", Some(125)), ("256", Some(0))] {
        let output = Command::new("prlimit")
            .arg(format!("--nofile={limit}"))
            .arg(env!("CARGO_BIN_EXE_execgate"))
            .args(["run", "--", "/usr/bin/true"])
            .current_dir(&ws)
            .env("XDG_CONFIG_HOME", ws.join("no-config"))
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), code, "{limit}: {stderr}");
        assert_eq!(
            stderr.contains("the descriptor limit (ulimit -n) is 64"),
            limit == "64",
            "{limit}: {stderr}"
        );
    }
}

/// Past `cgroup.max.descendants`, the server fell back to process groups
/// with only a telemetry event nobody sees by default: a session weaker
/// than the machine offers, without a word. It is warned of.
#[test]
fn a_session_without_a_cgroup_by_a_limit_is_warned_of() {
    let (_dir, ws) = workspace();
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|line| line.contains(" - cgroup2 "))
        .map(|line| PathBuf::from(line.split(' ').nth(4).unwrap()))
        .expect("a cgroup v2 hierarchy");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap();
    let limited = mount
        .join(own.trim_start_matches('/'))
        .join(format!("execgate-cli-limit-{}", std::process::id()));
    std::fs::create_dir(&limited).unwrap();
    std::fs::write(limited.join("cgroup.max.descendants"), "0").unwrap();
    let procs = limited.join("cgroup.procs");
    let run = |scope: Option<&str>| {
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                "echo 0 > \"$1\" && exec \"$2\" run -- /usr/bin/true",
                "sh",
            ])
            .arg(&procs)
            .arg(env!("CARGO_BIN_EXE_execgate"))
            .current_dir(&ws)
            .env("XDG_CONFIG_HOME", ws.join("no-config"))
            .env_remove("EXECGATE_SCOPE");
        if let Some(scope) = scope {
            command.env("EXECGATE_SCOPE", scope);
        }
        command.output().unwrap()
    };
    let warned = run(None);
    // Asked for, a cgroup is required: no warning that says to ask.
    let required = run(Some("cgroup"));
    // The warden leaves the cgroup when it sees execgate gone.
    for _ in 0..500 {
        if std::fs::remove_dir(&limited).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let stderr = text(&warned.stderr);
    assert_eq!(warned.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("execgate: warning: no cgroup for this session (cannot create")
            && stderr.contains("EXECGATE_SCOPE=cgroup"),
        "{stderr}"
    );
    let stderr = text(&required.stderr);
    assert_eq!(required.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("EXECGATE_SCOPE=cgroup, but no cgroup can be made")
            && !stderr.contains("warning"),
        "{stderr}"
    );
    assert!(!limited.exists(), "the test's cgroup was left behind");
}

#[test]
fn a_file_size_limit_denies_commands_and_kills_nothing() {
    let (dir, ws) = workspace();
    let log = dir.path().join("log/audit.jsonl");
    let output = Command::new("prlimit")
        .arg("--fsize=3000")
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--audit-log", log.to_str().unwrap(), "--"])
        .arg("for i in 1 2 3 4 5 6; do /usr/bin/true; done; print -r -- ended")
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{:?}: {stderr}",
        output.status
    );
    assert_eq!(text(&output.stdout), "ended\n", "{stderr}");
    assert!(stderr.contains("cannot write the audit log"), "{stderr}");
    assert_eq!(
        stderr
            .matches("every command that asks is refused meanwhile")
            .count(),
        1,
        "{stderr}"
    );
    // Past the limit already, the session's first record cannot be
    // written: it does not start, and says so (a review: it was killed).
    let output = Command::new("prlimit")
        .arg("--fsize=3000")
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--audit-log", log.to_str().unwrap(), "--", "true"])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(
        output.status.code().is_some(),
        "{:?}: {stderr}",
        output.status
    );
    assert!(stderr.contains("cannot be recorded"), "{stderr}");
}

/// Regression (a probe of the audit log): a log named through a link the
/// sandbox could replace drew no warning; the probe pointed the link at
/// its own directory, and `execgate audit` read forged records. So for a
/// rules file.
#[test]
fn a_replaceable_link_on_the_way_to_the_log_or_rules_is_warned_of() {
    let (dir, ws) = workspace();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("team.rules"), "").unwrap();
    std::os::unix::fs::symlink(&real, ws.join("logs")).unwrap();
    let log = ws.join("logs/audit.jsonl");
    let rules = ws.join("logs/team.rules");
    let output = execgate(
        &ws,
        &[
            "run",
            "--audit-log",
            log.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for named in [&log, &rules] {
        assert!(
            stderr
                .lines()
                .any(|line| line.contains(&*named.to_string_lossy())
                    && line.contains("reached through the link")),
            "{}: {stderr}",
            named.display()
        );
    }
    // Probe 166: a link at the log's own name is refused, and not warned
    // of as followed first.
    let linked = ws.join("linked.jsonl");
    std::os::unix::fs::symlink(real.join("team.rules"), &linked).unwrap();
    let output = execgate(
        &ws,
        &["run", "--audit-log", linked.to_str().unwrap(), "--", "true"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("never followed"), "{stderr}");
    assert!(!stderr.contains("reached through the link"), "{stderr}");
}

/// Regression (a probe of the audit log): a log in a directory that
/// holds the working directory was in the sandbox's view: a command read
/// every session's records, and held the lock from a read-only view, so
/// that every session sharing the log was refused everything. Its files
/// are hidden.
#[test]
fn a_log_beside_the_work_is_hidden_file_by_file() {
    let (dir, ws) = workspace();
    let log = dir.path().join("audit.jsonl");
    let output = execgate(
        &ws,
        &[
            "run",
            "--audit-log",
            log.to_str().unwrap(),
            "--",
            "cat ../audit.jsonl && print read; flock -n ../audit.jsonl.lock true && print locked; \
             print -r -- end",
        ],
    );
    let stdout = text(&output.stdout);
    assert_eq!(stdout, "end\n", "{}", text(&output.stderr));
    // The work itself is not hidden.
    assert!(std::fs::read_to_string(&log).unwrap().contains("cat"));
}

/// From a probe: the table showed `/usr/bin/xz -f f.xz` for `unxz -f
/// f.xz` (reads as compressing), and `--program unxz` found nothing. The
/// name a program was run by is shown and matched.
#[test]
fn the_audit_table_shows_and_finds_the_name_a_program_was_run_by() {
    let (_dir, ws) = workspace();
    let output = execgate(&ws, &["run", "--", "ARGV0=renamed /usr/bin/true"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = execgate(&ws, &["audit", "--program", "renamed"]);
    let table = text(&output.stdout);
    assert!(
        table.contains("/usr/bin/true (as \"renamed\")"),
        "{table:?}: {}",
        text(&output.stderr)
    );
}

/// From a probe: the Windows backend's records had a number for a time
/// and no session, and `execgate audit` read none of them. They are
/// written in the Linux records' shape now (`cli/src/windows.rs`); this
/// is one as it writes it.
#[test]
fn audit_reads_the_windows_backends_records() {
    let (dir, ws) = workspace();
    let log = dir.path().join("windows.jsonl");
    let record = |action: &str, exit: &str| {
        format!(
            r#"{{"@timestamp":"2026-12-02T14:00:00.123456789Z","session_id":"windows-42-abc","event":{{"action":"{action}","outcome":"success"}},"process":{{"executable":"C:\\Windows\\System32\\cmd.exe","args":["cmd","/d","/c","echo hi"],"working_directory":"C:\\work","exit_code":{exit}}},"execgate":{{"decision":"run","execution":null,"reason":null,"decided_by":"default","sandbox":"windows-restricted-token","warnings":[]}},"rule":null,"error":null}}"#
        )
    };
    std::fs::write(
        &log,
        format!("{}\n{}\n", record("decision", "null"), record("exit", "4")),
    )
    .unwrap();
    let output = execgate(&ws, &["audit", log.to_str().unwrap()]);
    let table = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("exit 4") && !table.contains("(as"),
        "{table}"
    );
    // Probe 146: `--program cmd.exe` found nothing (the name was taken
    // after the last `/`), nor the path as Windows writes it (`\` escaped
    // the glob). Windows paths are matched as Windows names files.
    for (pattern, found) in [
        ("cmd.exe", true),
        ("CMD.EXE", true),
        (r"C:\Windows\System32\cmd.exe", true),
        (r"c:\windows\system32\*.exe", true),
        ("C:/Windows/System32/cmd.exe", true),
        ("*.exe", true),
        ("ls", false),
    ] {
        let output = execgate(&ws, &["audit", "--program", pattern, log.to_str().unwrap()]);
        let table = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(table.contains("decision"), found, "{pattern}: {table}");
    }
}

/// Regression: the shipped example config set `[env] exclude` to four of
/// the built-in patterns, and `exclude` replaces the built-in list: a
/// session run with it, as the README says to, passed `*CREDENTIAL*`,
/// `*AUTH*` and `*PASSWD*` names on. Every built-in pattern still applies.
#[test]
fn the_example_config_keeps_every_built_in_secret_pattern() {
    let (_dir, ws) = workspace();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config.toml");
    let env = [
        ("MY_API_KEY", "s"),
        ("GITHUB_TOKEN", "s"),
        ("AWS_SECRET", "s"),
        ("DB_PASSWORD", "s"),
        ("MY_CREDENTIAL", "s"),
        ("NPM_AUTH", "s"),
        ("DB_PASSWD", "s"),
        ("MYSQL_PWD", "s"),
        ("GITHUB_PAT", "s"),
        ("DATABASE_URL", "s"),
        ("PLAIN_VARIABLE", "kept"),
    ];
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--config",
            example.to_str().unwrap(),
            "--",
            "env | grep -E 'KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH|PASSWD|_PWD=|_PAT=|_URL=|PLAIN' | sort",
        ],
        &env,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&output.stdout), "PLAIN_VARIABLE=kept\n", "{stderr}");
}

#[test]
fn a_config_profile_is_used() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(
        &config,
        "[profiles.more]\nextends = \"workspace-write\"\nfilesystem = { \"extra\" = \"write\" }\n",
    )
    .unwrap();
    // Named relative to the working directory: its entries are still
    // relative to its own directory.
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            "../config.toml",
            "--profile",
            "more",
            "--",
            "touch ../extra/ok",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(extra.join("ok").exists());
}

/// From a probe: a `none` entry for a file that did not exist yet hid
/// nothing, and the file the host made during the session was read; a
/// relative one (`".env"`, as in a `.gitignore`) named a file beside the
/// config file, not in the work. Neither said a word; a `write` entry on
/// a missing path did. Both are warned of, with the glob that covers a
/// file made later.
#[test]
fn a_hidden_path_that_does_not_exist_is_warned_of() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    let late = ws.join("late.secret");
    std::fs::write(
        &config,
        format!(
            "[profiles.hiding]\nextends = \"workspace-write\"\nfilesystem = {{ \"{}\" = \"none\", \".env\" = \"none\", \"*.pem\" = \"none\" }}\n",
            late.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            config,
            "--profile",
            "hiding",
            "--",
            "true",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warned = |path: &std::path::Path, glob: &str| {
        stderr.contains(&format!(
            "execgate: warning: the profile hides {}, which does not exist",
            path.display()
        )) && stderr.contains(glob)
    };
    assert!(
        warned(&late, &format!("{}/[l]ate.secret", ws.display())),
        "{stderr}"
    );
    assert!(warned(&dir.path().join(".env"), "[.]env"), "{stderr}");
    // A glob is not a path: nothing to say of it.
    assert!(!stderr.contains("*.pem"), "{stderr}");
}

#[test]
fn doctor_reports_json() {
    let (_dir, ws) = workspace();
    let output = execgate(&ws, &["doctor", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["sandbox_ready"], true);
    assert_eq!(report["zsh_patched"], true);
    assert_eq!(report["zsh_current"], true, "the build is from this source");
    // Whichever build of each it takes (cargo's beside it, or the static
    // musl one), it is one of these sources.
    assert_eq!(report["wrapper_current"], true, "{report}");
    assert_eq!(report["sandbox_helper_current"], true, "{report}");
    assert!(report["landlock_abi"].as_u64().unwrap() >= 3);
    assert_eq!(report["user_namespaces"], true);
}

/// Probe 131: with a default config that cannot be read, `doctor` exited
/// 125 (an error of its own) and `doctor --json` 1, and the report said
/// `sandbox_ready: true` and nothing of whether the machine is ready. Both
/// exit 1, as for any problem found, and the report says `ready`.
#[test]
fn doctor_exits_alike_and_says_ready_with_a_broken_config() {
    let (dir, ws) = workspace();
    let config_home = config_home_with(dir.path(), "default_profile = \"nosuch\"\n");
    let config_home = config_home.to_str().unwrap();
    let env = [("XDG_CONFIG_HOME", config_home)];
    let plain = execgate_with_env(&ws, &["doctor"], &env);
    let json = execgate_with_env(&ws, &["doctor", "--json"], &env);
    assert_eq!(plain.status.code(), Some(1), "{}", text(&plain.stderr));
    assert!(
        text(&plain.stdout).contains("ready             no"),
        "{}",
        text(&plain.stdout)
    );
    assert_eq!(json.status.code(), Some(1), "{}", text(&json.stderr));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["ready"], false, "{report}");
    assert!(report["config_problem"].is_string(), "{report}");
    let fine = execgate(&ws, &["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&fine.stdout).unwrap();
    assert_eq!(report["ready"], true, "{report}");
}

/// `XDG_CONFIG_HOME` under `dir` whose default config file is `config`.
fn config_home_with(dir: &Path, config: &str) -> PathBuf {
    let config_home = dir.join("config-home");
    std::fs::create_dir_all(config_home.join("execgate")).unwrap();
    std::fs::write(config_home.join("execgate/config.toml"), config).unwrap();
    config_home
}

/// Probe 163: `doctor` said `ready yes` where every session refused to
/// start: a scope setting sessions refuse, a default config whose rules
/// file is missing, an audit log's directory that cannot be made. Each is
/// a problem now, said as the session says it.
#[test]
fn doctor_finds_what_stops_every_session() {
    let (dir, ws) = workspace();
    let config_home = config_home_with(dir.path(), "rules = [\"missing.rules\"]\n");
    let state_file = dir.path().join("state-file");
    std::fs::write(&state_file, "").unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("EXECGATE_SCOPE", "bogus")], "EXECGATE_SCOPE"),
        (
            &[("XDG_CONFIG_HOME", config_home.to_str().unwrap())],
            "missing.rules",
        ),
        (
            &[("XDG_STATE_HOME", state_file.to_str().unwrap())],
            "is a file, not a directory",
        ),
    ];
    for (env, problem) in cases {
        let doctor = execgate_with_env(&ws, &["doctor"], env);
        let stdout = text(&doctor.stdout);
        assert_eq!(doctor.status.code(), Some(1), "{env:?}: {stdout}");
        assert!(
            stdout.contains("ready             no") && stdout.contains(problem),
            "{env:?}: {stdout}"
        );
        // And a session does refuse.
        let run = execgate_with_env(&ws, &["run", "--", "true"], env);
        assert_eq!(run.status.code(), Some(125), "{env:?}");
    }
}

/// A review: `execgate sandbox`, for debugging a profile, took
/// `workspace-write` whatever the config's `default_profile`, so it tried
/// another profile than the sessions it was debugging.
#[test]
fn sandbox_takes_the_configs_default_profile() {
    let (dir, ws) = workspace();
    let config = dir.path().join("default.toml");
    std::fs::write(&config, "default_profile = \"read-only\"\n").unwrap();
    let config = config.to_str().unwrap();
    let output = execgate(
        &ws,
        &[
            "sandbox",
            "--config",
            config,
            "--",
            "/bin/sh",
            "-c",
            "touch made",
        ],
    );
    assert_ne!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!ws.join("made").exists());
    let output = execgate(
        &ws,
        &[
            "sandbox",
            "--config",
            config,
            "--profile",
            "workspace-write",
            "--",
            "/bin/sh",
            "-c",
            "touch made",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(ws.join("made").exists());
}

#[test]
fn sandbox_runs_one_program_in_a_profile() {
    let (dir, ws) = workspace();
    // The audit log outside the workspace: a log it could reach is warned of.
    let state = dir.path().join("state");
    let state_env = [("XDG_STATE_HOME", state.to_str().unwrap())];
    let execgate = |ws: &Path, args: &[&str]| execgate_with_env(ws, args, &state_env);
    let output = execgate(
        &ws,
        &["sandbox", "--profile", "read-only", "--", "touch", "x"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(!ws.join("x").exists());
    let output = execgate(
        &ws,
        &[
            "sandbox",
            "--profile",
            "workspace-write",
            "--",
            "touch",
            "x",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(ws.join("x").exists());
    // A program that is not there: the sandbox stood, the lookup failed,
    // and it is said as a shell says it.
    let output = execgate(&ws, &["sandbox", "--", "no-such-program-here"]);
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        "execgate: command not found: no-such-program-here\n"
    );
    // An empty name is no program (not a directory on the PATH).
    let output = execgate(&ws, &["sandbox", "--", ""]);
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "execgate: command not found: \n");
    // One that is there, whose interpreter is not.
    let script = ws.join("script");
    std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = execgate(
        &ws,
        &["sandbox", "--profile", "workspace-write", "--", "./script"],
    );
    // zsh's status for a bad interpreter (probe 195).
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("./script: its interpreter or loader is not in the sandbox"),
        "{}",
        text(&output.stderr)
    );
}

/// `run` with `leading` arguments and the zsh command `script`, and
/// `sandbox` with the same arguments running `script` in `/bin/sh`: the
/// same protections must hold for both.
fn in_a_session_and_in_sandbox(leading: &[&str], script: &str) -> [Vec<String>; 2] {
    let owned = |words: &[&str]| {
        words
            .iter()
            .map(|word| (*word).to_owned())
            .collect::<Vec<_>>()
    };
    let mut run = owned(&["run"]);
    run.extend(owned(leading));
    run.extend(owned(&["--", script]));
    let mut sandbox = owned(&["sandbox"]);
    sandbox.extend(owned(leading));
    sandbox.extend(owned(&["--", "/bin/sh", "-c", script]));
    [run, sandbox]
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Regression (a probe of `execgate sandbox`): a config file named with
/// `--config` inside the workspace was writable from `execgate sandbox`,
/// read-only from a session with the same profile; a program could choose
/// every later session's profile, rules and audit log.
#[test]
fn sandbox_keeps_a_named_config_read_only_as_a_session_does() {
    let (_dir, ws) = workspace();
    let config = ws.join("my.toml");
    std::fs::write(&config, "rules = []\n").unwrap();
    let script = "echo '# x' >> my.toml && echo written; true";
    for args in in_a_session_and_in_sandbox(&["--config", "my.toml"], script) {
        let output = execgate(&ws, &as_strs(&args));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert_eq!(
            text(&output.stdout),
            "",
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            "rules = []\n",
            "{args:?}"
        );
    }
}

/// Regression (a probe of `execgate sandbox`): the default config's
/// directory inside the workspace was writable from `execgate sandbox`,
/// read-only from a session, whether it was made yet or not.
#[test]
fn sandbox_keeps_the_default_config_read_only_as_a_session_does() {
    let (_dir, ws) = workspace();
    let config_home = ws.join("config-home");
    let default = config_home.join("execgate/config.toml");
    let script = format!(
        "mkdir -p {dir} ; echo 'default_profile = \"danger-full-access\"' > {path} && \
         echo written; true",
        dir = default.parent().unwrap().display(),
        path = default.display()
    );
    let config_home_env = [("XDG_CONFIG_HOME", config_home.to_str().unwrap())];
    for made in [false, true] {
        if made {
            std::fs::write(&default, "rules = []\n").unwrap();
        }
        for args in in_a_session_and_in_sandbox(&[], &script) {
            let output = execgate_with_env(&ws, &as_strs(&args), &config_home_env);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
            assert_eq!(text(&output.stdout), "", "{args:?}, made: {made}: {stderr}");
            let written = std::fs::read_to_string(&default).unwrap_or_default();
            assert!(
                !written.contains("danger"),
                "{args:?}, made: {made}: {written}"
            );
        }
    }
}

/// Regression (a probe of `execgate sandbox`): the audit log inside the
/// workspace, the default one or the one a config names, was writable from
/// `execgate sandbox` (a program could forge records), hidden from a
/// session.
#[test]
fn sandbox_hides_the_audit_log_as_a_session_does() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[audit]\nlog = \"ws/logs/audit.jsonl\"\n").unwrap();
    let config = config.to_str().unwrap();
    // (arguments before the command, the log as the command names it)
    let cases: [(&[&str], &str); 2] = [
        (&[], "state/execgate/audit.jsonl"),
        (&["--config", config], "logs/audit.jsonl"),
    ];
    for (leading, log) in cases {
        // The log exists, made by an earlier session.
        let mut first = leading.to_vec();
        first.insert(0, "run");
        first.extend(["--", "true"]);
        let output = execgate(&ws, &first);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let script = format!(
            "echo '{{}}' >> {log} && echo written; cat {log} 2>/dev/null && echo read; true"
        );
        for args in in_a_session_and_in_sandbox(leading, &script) {
            let output = execgate(&ws, &as_strs(&args));
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
            assert_eq!(text(&output.stdout), "", "{args:?}: {stderr}");
            let records = std::fs::read_to_string(ws.join(log)).unwrap();
            assert!(
                !records.lines().any(|line| line == "{}"),
                "{args:?}: {records}"
            );
        }
    }
}

/// Probe 173, review 36: a config's `[env] set` (or an agent's
/// environment) naming `LD_PRELOAD` loaded the library into bubblewrap,
/// outside every sandbox, and into the helper before its confinement; the
/// library could be one the sandbox wrote. It reaches the program alone.
#[test]
fn loader_variables_reach_the_sandboxed_program_alone() {
    let (dir, ws) = workspace();
    let marker = ws.join("loaded-into");
    let source = ws.join("mark.c");
    std::fs::write(
        &source,
        format!(
            "#define MARKER \"{}\"\n{}",
            marker.display(),
            include_str!("../../tests/fixtures/loaded-into.c")
        ),
    )
    .unwrap();
    let library = ws.join("mark.so");
    assert!(Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .unwrap()
        .success());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[env]\nset = {{ LD_PRELOAD = \"{}\" }}\n",
            library.display()
        ),
    )
    .unwrap();
    for args in in_a_session_and_in_sandbox(&["--config", config.to_str().unwrap()], "true") {
        let _ = std::fs::remove_file(&marker);
        let output = execgate(&ws, &as_strs(&args));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&output.stderr)
        );
        let loaded = std::fs::read_to_string(&marker).unwrap_or_default();
        assert!(
            !loaded.is_empty()
                && loaded
                    .lines()
                    .all(|exe| !exe.ends_with("/bwrap") && !exe.contains("sandbox-helper")),
            "{args:?}: loaded into {loaded:?}"
        );
    }
}

/// Regression (a probe of `execgate sandbox`): it passed its caller's
/// whole environment on, credentials included, and applied no `[env]`
/// section; a session drops names that look like secrets and applies it.
#[test]
fn sandbox_filters_the_environment_as_a_session_does() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[env]\ninherit = \"core\"\nset = { CI_MODE = \"1\" }\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let env = [
        ("MY_API_KEY", "s"),
        ("GITHUB_TOKEN", "t"),
        ("DB_PASSWORD", "p"),
        ("SOME_CREDENTIAL", "c"),
        ("PLAIN_VARIABLE", "kept"),
    ];
    let script = "env | grep -E 'KEY|TOKEN|PASSWORD|CREDENTIAL|PLAIN|CI_MODE' | sort; true";
    // (arguments before the command, what the command sees)
    let cases: [(&[&str], &str); 2] = [
        (&[], "PLAIN_VARIABLE=kept\n"),
        (&["--config", config], "CI_MODE=1\n"),
    ];
    for (leading, expected) in cases {
        for args in in_a_session_and_in_sandbox(leading, script) {
            let output = execgate_with_env(&ws, &as_strs(&args), &env);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
            assert_eq!(text(&output.stdout), expected, "{args:?}: {stderr}");
        }
    }
}

/// `[env] exclude = []` turns the dropping of secrets off: every
/// credential in the caller's environment reaches the commands. A session
/// (and `execgate sandbox`) says so at its start; not where `inherit` or
/// `include_only` keep such names out anyway. A list of its own that
/// leaves built-in patterns out is named with the variables that pass
/// because of it (a probe's `["*TOKEN*"]` let `AWS_SECRET_ACCESS_KEY`
/// through, unsaid), and only then: a variable the config sets itself is
/// its own choice, and so is one an `include_only` pattern names; one
/// passed by `include_only = ["*"]` is not (review 104).
#[test]
fn an_env_exclude_that_lets_credentials_pass_is_warned_of() {
    let (dir, ws) = workspace();
    let empty = "[env] exclude is empty";
    let partial = "exclude replaces the built-in patterns";
    let by_any = "include_only passes AWS_SECRET_ACCESS_KEY";
    let caller = [("AWS_SECRET_ACCESS_KEY", "s3cr3t"), ("GH_TOKEN", "t")];
    // (the config's [env], the warning expected, if any)
    let cases = [
        ("exclude = []\n", Some(empty)),
        ("exclude = [\"*TOKEN*\"]\n", Some(partial)),
        ("exclude = [\"*TOKEN*\", \"*SECRET*\"]\n", None),
        (
            "exclude = [\"*TOKEN*\"]\ninclude_only = [\"PATH\", \"GH_*\"]\n",
            None,
        ),
        (
            "exclude = [\"*TOKEN*\"]\nset = { AWS_SECRET_ACCESS_KEY = \"x\" }\n",
            None,
        ),
        ("inherit = \"core\"\nexclude = []\n", None),
        ("exclude = []\ninclude_only = [\"PATH\"]\n", None),
        // Named in include_only: chosen (a review).
        (
            "exclude = [\"*TOKEN*\"]\ninclude_only = [\"PATH\", \"AWS_*\"]\n",
            None,
        ),
        // Passed by a pattern that names nothing: not chosen (review 104).
        (
            "exclude = [\"*TOKEN*\"]\ninclude_only = [\"*\"]\n",
            Some(by_any),
        ),
        (
            "exclude = []\ninclude_only = [\"PATH\", \"*_*\"]\n",
            Some(by_any),
        ),
    ];
    for (section, warning) in cases {
        let config = dir.path().join("config.toml");
        std::fs::write(&config, format!("[env]\n{section}")).unwrap();
        for args in in_a_session_and_in_sandbox(&["--config", config.to_str().unwrap()], "true") {
            // The caller's environment alone: cargo's own (CARGO_PKG_AUTHORS)
            // and the machine's would pass too.
            let output = Command::new(env!("CARGO_BIN_EXE_execgate"))
                .args(&args)
                .current_dir(&ws)
                .env_clear()
                .envs(["PATH", "HOME"].map(|name| (name, std::env::var_os(name).unwrap())))
                .env("XDG_CONFIG_HOME", ws.join("no-config"))
                .env("XDG_STATE_HOME", ws.join("state"))
                .envs(caller)
                .output()
                .unwrap();
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
            for text in [empty, partial, by_any] {
                assert_eq!(
                    stderr.contains(text),
                    warning == Some(text),
                    "{section}{args:?}: {stderr}"
                );
            }
            if warning == Some(partial) {
                assert!(
                    stderr.contains("AWS_SECRET_ACCESS_KEY") && !stderr.contains("GH_TOKEN"),
                    "{section}{args:?}: {stderr}"
                );
            }
            assert!(!stderr.contains("s3cr3t"), "{section}{args:?}: {stderr}");
        }
    }
}

/// This user's id, and a file in the sessions' directory (made by a
/// session run from `ws`) that no sandbox may see.
fn sessions_dir_with_a_marker(ws: &Path) -> (u32, tempfile::NamedTempFile) {
    use std::os::unix::fs::MetadataExt;
    let output = execgate(ws, &["run", "--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let uid = std::fs::metadata(ws).unwrap().uid();
    let marker = tempfile::Builder::new()
        .prefix("cli-test-marker-")
        .tempfile_in(format!("/var/tmp/execgate-{uid}"))
        .unwrap();
    (uid, marker)
}

/// `execgate sandbox` sees the sessions' directory empty, as every
/// session's sandbox does: the zsh of a running session, and what its
/// unsandboxed escalations keep in their temporary directories, are out of
/// its reach (it could read them, and swap that zsh where it can write
/// `/var/tmp`).
#[test]
fn sandbox_hides_the_sessions_directory_as_a_session_does() {
    let (_dir, ws) = workspace();
    let (uid, marker) = sessions_dir_with_a_marker(&ws);
    let name = marker.path().file_name().unwrap().to_str().unwrap();
    let script = format!("ls -a /var/tmp/execgate-{uid}; true");
    for args in in_a_session_and_in_sandbox(&[], &script) {
        let output = execgate(&ws, &as_strs(&args));
        let stdout = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(stdout.contains(".."), "{args:?}: {stdout}");
        assert!(!stdout.contains(name), "{args:?}: {stdout}");
    }
}

/// Probe 247: the sessions' directory was hidden by its path alone. Where
/// a mount shows `/var/tmp` under a place the sandbox writes too (older
/// hardening guides make `/var/tmp` a bind mount of `/tmp`; here, a
/// directory of the workspace), a sandbox swapped another session's zsh through the other
/// name. It is hidden by each name the mounts give it.
#[test]
fn the_sessions_directory_is_hidden_by_every_name_a_mount_gives_it() {
    let (_dir, ws) = workspace();
    let (uid, marker) = sessions_dir_with_a_marker(&ws);
    let sessions = PathBuf::from(format!("/var/tmp/execgate-{uid}"));
    let name = marker.path().file_name().unwrap().to_str().unwrap();
    let alias = ws.join("var-tmp");
    std::fs::create_dir(&alias).unwrap();
    let planted = tempfile::Builder::new()
        .prefix("cli-test-planted-")
        .make_in(&sessions, |_| Ok(()))
        .unwrap();
    let planted_name = planted.path().file_name().unwrap().to_str().unwrap();
    let script = format!(
        "ls -a var-tmp/execgate-{uid}; touch var-tmp/execgate-{uid}/{planted_name}; \
         echo touched=$?"
    );
    for args in in_a_session_and_in_sandbox(&[], &script) {
        let output = execgate_with_bind_mount(&ws, Path::new("/var/tmp"), &alias, &as_strs(&args));
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains(".."),
            "{args:?}: {stdout}{}",
            text(&output.stderr)
        );
        assert!(!stdout.contains(name), "{args:?}: {stdout}");
        assert!(stdout.contains("touched=1"), "{args:?}: {stdout}");
        assert!(!planted.path().exists(), "{args:?}: {stdout}");
    }
}

/// Probe 247: a directory a profile hides (`none`) was read under a second
/// name the host's mounts gave it (the same file system mounted twice, a
/// bind mount). Hidden under each name, in a session and in `execgate
/// sandbox`.
#[test]
fn a_hidden_directory_is_hidden_by_every_name_a_mount_gives_it() {
    let (dir, ws) = workspace();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("secret")).unwrap();
    std::fs::write(data.join("secret/key"), "s3cr3t\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "default_profile = \"hiding\"\n[profiles.hiding]\nextends = \"workspace-write\"\n\
             filesystem = {{ {:?} = \"none\" }}\n",
            data.join("secret").display().to_string()
        ),
    )
    .unwrap();
    let alias = ws.join("alias");
    std::fs::create_dir(&alias).unwrap();
    let script = format!(
        "cat {}/secret/key alias/secret/key; ls -A alias/secret; echo done",
        data.display()
    );
    let leading = ["--config", config.to_str().unwrap()];
    for args in in_a_session_and_in_sandbox(&leading, &script) {
        let output = execgate_with_bind_mount(&ws, &data, &alias, &as_strs(&args));
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains("done"),
            "{args:?}: {stdout}{}",
            text(&output.stderr)
        );
        assert!(!stdout.contains("s3cr3t"), "{args:?}: {stdout}");
        assert!(!stdout.contains("key"), "{args:?}: {stdout}");
    }
}

#[test]
fn version_and_completions() {
    let (_dir, ws) = workspace();
    let output = execgate(&ws, &["--version"]);
    assert!(text(&output.stdout).starts_with("execgate "));
    let output = execgate(&ws, &["completions", "zsh"]);
    assert!(text(&output.stdout).contains("#compdef execgate"));
}

/// Probe 219: the man pages said nothing of exit statuses, the keys that
/// answer a question, the environment or files. `execgate(1)` does; every
/// command has its page.
#[test]
fn the_man_pages_say_statuses_keys_environment_and_files() {
    let (dir, ws) = workspace();
    let pages = dir.path().join("man");
    let output = execgate(&ws, &["man", pages.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let main = std::fs::read_to_string(pages.join("execgate.1")).unwrap();
    for wanted in [
        ".SH \"EXIT STATUS\"",
        ".SH QUESTIONS",
        ".SH ENVIRONMENT",
        ".SH FILES",
        "EXECGATE_LOG",
        "execgate/config.toml",
        "execgate/audit.jsonl",
        "Ctrl\\-C",
    ] {
        assert!(main.contains(wanted), "no {wanted:?} in {main}");
    }
    for page in ["run", "shell", "sandbox", "audit", "policy-check", "mcp"] {
        assert!(pages.join(format!("execgate-{page}.1")).is_file(), "{page}");
    }
}

/// Pids of processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<String> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (cmdline == wanted).then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

#[test]
fn nothing_started_by_run_outlives_it() {
    let (_dir, ws) = workspace();
    for (profile, duration) in [
        ("workspace-write", "1001.25"),
        ("danger-full-access", "1002.25"),
    ] {
        // The last one leaves the process group, and the session (setsid):
        // only the end of `run` itself can catch it.
        let script = format!(
            "sleep {duration} & sleep {duration} & setsid sleep {duration} & sleep 0.3; print started"
        );
        let output = execgate(&ws, &["run", "--profile", profile, "--", &script]);
        assert_eq!(
            text(&output.stdout),
            "started\n",
            "{}",
            text(&output.stderr)
        );
        let left = processes_running(&["sleep", duration]);
        assert!(
            left.is_empty(),
            "{profile}: background jobs survived: {left:?}"
        );
    }
}

/// Tries the terminal requests the sandbox denies, and says for each
/// whether it was denied (EPERM) or done.
const TERMINAL_IOCTLS: &str = r#"import fcntl, struct, termios
for name, request, argument in [
    ("tiocsti", termios.TIOCSTI, b"x"),
    # N_TTY, the discipline it has: harmless if it is allowed.
    ("tiocsetd", 0x5423, struct.pack("i", 0)),
    # Probe 120: exclusive mode outlived the sandbox (this terminal is
    # the test's own).
    ("tiocexcl", termios.TIOCEXCL, b""),
]:
    try:
        fcntl.ioctl(0, request, argument)
        print("allowed-" + name)
    except PermissionError:
        print("denied-" + name)
"#;

#[test]
fn an_interactive_shell_on_a_terminal() {
    let (_dir, ws) = workspace();
    let binary = env!("CARGO_BIN_EXE_execgate");
    // Denied by the sandbox, not failed for another reason: typing into
    // the terminal, and setting its line discipline (to the one it has).
    std::fs::write(ws.join("terminal-ioctls.py"), TERMINAL_IOCTLS).unwrap();
    // `script` gives the shell a pseudo-terminal and types our input.
    let input = "print -r -- $((6*7))\n\
                 /bin/echo via-wrapper\n\
                 /usr/bin/python3 terminal-ioctls.py\n\
                 sleep 100 & jobs; kill %1; wait\n\
                 exit 5\n";
    let mut child = Command::new("script")
        .args(["-qec", &format!("{binary} shell --verbose"), "/dev/null"])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("ZDOTDIR", &ws)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let seen = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(5),
        "{seen}\n{}",
        text(&output.stderr)
    );
    for expected in [
        "42",
        "via-wrapper",
        "-> Run",
        "denied-tiocsti",
        "denied-tiocsetd",
        "denied-tiocexcl",
        "running",
    ] {
        assert!(seen.contains(expected), "{expected:?} missing from: {seen}");
    }
}

/// Probe 120: what a command run on a terminal set on it (no echo, no
/// line editing, so no Ctrl-C; a non-blocking descriptor, which the
/// caller's shell shares) stayed after `execgate run`. What the sandbox
/// does to the terminal stays there, as for `execgate shell`.
#[test]
fn a_run_leaves_the_terminal_as_it_found_it() {
    let (_dir, ws) = workspace();
    std::fs::write(
        ws.join("check.sh"),
        r#""$1" run -- 'stty -echo -icanon; python3 -c "import fcntl, os; fcntl.fcntl(0, fcntl.F_SETFL, fcntl.fcntl(0, fcntl.F_GETFL) | os.O_NONBLOCK)"'
echo "status=$?"
stty -a | tr ' ;' '\n\n' | grep -x -e echo -e -echo -e icanon -e -icanon
python3 -c 'import fcntl, os; print("nonblock" if fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK else "blocking")'
# Review 123: with standard input elsewhere, the terminal is standard output.
"$1" run -- 'stty -echo <&1' </dev/null
stty -a | tr ' ;' '\n\n' | grep -x -e echo -e -echo | sed 's/^/second-/'
"#,
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_execgate");
    let output = Command::new("script")
        .args(["-qec", &format!("sh check.sh {binary}"), "/dev/null"])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let seen = text(&output.stdout);
    assert!(seen.contains("status=0"), "{seen}");
    for expected in ["\necho", "\nicanon", "blocking", "second-echo"] {
        assert!(seen.contains(expected), "{expected:?} missing from: {seen}");
    }
}

/// A run left in the background of a terminal (`&`, or Ctrl-Z then `bg`)
/// would still hold the terminal, outside its job control (the sandbox has
/// a session of its own), and could read what is typed to the shell: it
/// waits, frozen, until `fg` brings it back.
#[test]
fn a_run_in_the_background_of_a_terminal_waits_for_the_foreground() {
    let (dir, ws) = workspace();
    let binary = env!("CARGO_BIN_EXE_execgate");
    let input = format!(
        "{binary} run --audit-log {log} -- 'touch ran' &\n\
         sleep 2; echo \"state-$(test -e ran && echo ran || echo waited)\"\n\
         fg\n\
         echo \"state-$(test -e ran && echo ran-after-fg)\"\n\
         exit\n",
        log = dir.path().join("audit.jsonl").display()
    );
    // A watchdog: a command that never thaws must fail the test, not hang it.
    let mut child = spawn_piped(
        &ws,
        "timeout",
        &[
            "60",
            "script",
            "-qec",
            "bash --norc --noprofile -i",
            "/dev/null",
        ],
    );
    // Held open until the shell exits: at its end `script` ends the session.
    let mut typing = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut typing, input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    drop(typing);
    let seen = text(&output.stdout);
    assert!(seen.contains("state-waited"), "{seen}");
    assert!(seen.contains("state-ran-after-fg"), "{seen}");
    assert!(
        seen.contains("waits until it is brought back (fg)"),
        "{seen}"
    );
}

/// A review (107): the server read its own umask and limits once, at its
/// first escalation; lowered after that (by its owner, or here by
/// `prlimit` from outside), every later escalation failed to start
/// ("cannot set the requester's limits: Operation not permitted"), asking
/// for the limit as it was. Each escalation now starts no looser than the
/// server as it is then.
#[test]
fn limits_lowered_after_the_first_escalation_reach_the_next() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("cat.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"cat\"], decision = \"allow\")\n\
         prefix_rule(pattern = [\"cat\", \"/proc/self/limits\"], decision = \"allow\", \
         execution = \"turn-default\")\n\
         prefix_rule(pattern = [\"head\"], decision = \"allow\")\n",
    )
    .unwrap();
    let fifo = dir.path().join("go");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let child = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--rules", rules.to_str().unwrap(), "--"])
        .arg(format!(
            "cat {fifo} >/dev/null; cat /proc/self/limits; head -n 50 /proc/self/limits",
            fifo = fifo.display()
        ))
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first `cat` is escalated and waits on the fifo: the server has
    // read its own limits once it runs.
    let waiting = format!("^(/usr/bin/)?cat {}$", fifo.display());
    let escalated = (0..1000).any(|_| {
        // Its whole command line: the session's own shell and execgate
        // name the fifo too.
        let found = Command::new("pgrep")
            .args(["-f", &waiting])
            .output()
            .unwrap();
        !found.stdout.is_empty() || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            false
        }
    });
    assert!(escalated, "the first escalation never ran");
    let lowered = Command::new("prlimit")
        .args(["--pid", &child.id().to_string(), "--rttime=4242:4242"])
        .status()
        .unwrap();
    assert!(lowered.success());
    std::fs::write(&fifo, "go\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    let rttime: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("Max realtime timeout"))
        .collect();
    // The turn-default escalation (sandboxed), then an unsandboxed one.
    assert_eq!(rttime.len(), 2, "{stdout}{}", text(&output.stderr));
    for line in rttime {
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>()[3..5],
            ["4242", "4242"],
            "{stdout}"
        );
    }
}

/// A probe (106): an unsandboxed child that left a process behind
/// (`setsid sleep &`) and exited; the session's end killed the process,
/// and its record said `running_children: 0`, as if nothing had been
/// killed. It now counts every process left in the session's cgroup.
#[test]
fn a_sessions_end_counts_the_processes_it_killed() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("sh.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"dash\"], decision = \"allow\")\n",
    )
    .unwrap();
    // A duration no other test's `sleep` has, to find it by.
    let marker = format!("sleep 300.{}", std::process::id());
    let log = dir.path().join("audit.jsonl");
    let output = execgate(
        &ws,
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--audit-log",
            log.to_str().unwrap(),
            "--",
            &format!(
                "/usr/bin/dash -c 'setsid {marker} >/dev/null 2>&1 </dev/null & echo started'"
            ),
        ],
    );
    assert_eq!(
        text(&output.stdout),
        "started\n",
        "{}",
        text(&output.stderr)
    );
    let records = std::fs::read_to_string(&log).unwrap();
    let end: serde_json::Value = serde_json::from_str(records.lines().last().unwrap()).unwrap();
    assert_eq!(end["event"]["action"], "session-end", "{end}");
    let stderr = text(&output.stderr);
    assert_eq!(end["session"]["running_children"], 0, "{end}\n{stderr}");
    assert_eq!(
        end["session"]["processes_killed"], 1,
        "{end}\n{stderr}\n{records}"
    );
    let table = text(&execgate(&ws, &["audit", log.to_str().unwrap()]).stdout);
    assert!(
        table.contains("closed, 0 running killed, 1 process(es) in all"),
        "{table}"
    );
    // The session's own spare sandboxes, kept for the next turn-default
    // escalation, are not something left behind (a review counted them).
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"cat\"], decision = \"allow\", execution = \"turn-default\")\n",
    )
    .unwrap();
    let spares_log = dir.path().join("spares.jsonl");
    let output = execgate(
        &ws,
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--audit-log",
            spares_log.to_str().unwrap(),
            "--",
            "cat /dev/null; print ok",
        ],
    );
    assert_eq!(text(&output.stdout), "ok\n", "{}", text(&output.stderr));
    let spares_records = std::fs::read_to_string(&spares_log).unwrap();
    let spares_end: serde_json::Value =
        serde_json::from_str(spares_records.lines().last().unwrap()).unwrap();
    assert_eq!(
        spares_end["session"]["processes_killed"], 0,
        "{spares_records}"
    );
    // Killed as the session ended; gone once the kernel has reaped it.
    let gone = (0..200).any(|_| {
        let left = Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap();
        left.stdout.is_empty() || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            false
        }
    });
    assert!(gone, "{marker} outlived its session");
}

#[test]
fn every_run_is_audited_and_audit_reads_it_back() {
    let (_dir, ws) = workspace();
    let output = execgate(
        &ws,
        &[
            "run",
            "--",
            "ls >/dev/null; id -u >/dev/null; touch $'bad\\e[31mname' 'two words'",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let log = ws.join("state/execgate/audit.jsonl");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // The session's start (what it ran under), three decisions, then its
    // end.
    assert_eq!(records.len(), 5);
    assert_eq!(records[0]["event"]["action"], "session-start");
    assert_eq!(records[0]["session"]["profile"], "workspace-write");
    assert!(
        records[0]["session"]["sandbox"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(":cwd=write")),
        "{}",
        records[0]
    );
    // Where `:cwd` and `:tmpdir` led (probe 190).
    let roots = records[0]["session"]["roots"].as_array().unwrap();
    assert!(
        roots.contains(&serde_json::json!(format!(":cwd={}", ws.display())))
            && roots.iter().any(|root| root
                .as_str()
                .is_some_and(|root| root.starts_with(":tmpdir=/"))),
        "{}",
        records[0]
    );
    assert_eq!(records[4]["event"]["action"], "session-end");
    assert_eq!(records[4]["session"]["end_reason"], "closed");

    let output = execgate(&ws, &["audit", "--json", "--program", "id"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["process"]["executable"], "/usr/bin/id");
    assert_eq!(lines[0]["execgate"]["decision"], "run");

    // The table escapes control characters from arguments.
    let output = execgate(&ws, &["audit", "--program", "touch"]);
    let table = text(&output.stdout);
    assert!(
        table.contains("/usr/bin/touch") && !table.contains('\u{1b}'),
        "{table:?}"
    );
    // and quotes where a space would hide an argument's end.
    assert!(table.contains("\"two words\""), "{table:?}");

    let output = execgate(&ws, &["audit", "--summary", "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["per_rule"]["none"], 3);

    let output = execgate(&ws, &["audit", "--decision", "deny"]);
    assert_eq!(text(&output.stdout), "");
    // A usage error, as a bad --since is.
    let output = execgate(&ws, &["audit", "--decision", "maybe"]);
    assert_eq!(output.status.code(), Some(2));
    // A session with no record is said to have none (probe 135: nothing
    // at all, as for one whose records matched nothing else).
    let output = execgate(&ws, &["audit", "--session", "nosuch"]);
    assert!(
        text(&output.stderr).contains("no record of session nosuch"),
        "{}",
        text(&output.stderr)
    );

    let bad = ws.join("bad.jsonl");
    std::fs::write(&bad, "not json\n").unwrap();
    let output = execgate(&ws, &["audit", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("bad.jsonl:1"),
        "{}",
        text(&output.stderr)
    );
}

/// What a reviewer meets after a crash and in a configured setup: the
/// config file's log is the one read, a line cut short hides nothing
/// around it (and the next record does not merge into it), time bounds
/// are instants whatever their offset, and a reader that goes away early
/// is no error.
#[test]
fn audit_reads_the_configured_log_past_a_cut_line_by_instant() {
    let (_dir, ws) = workspace();
    let log = ws.join("custom.jsonl");
    let config = ws.join("no-config/execgate");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        format!("[audit]\nlog = {:?}\n", log.to_str().unwrap()),
    )
    .unwrap();
    let output = execgate(&ws, &["run", "--", "id -u >/dev/null"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // A writer that died mid-line.
    let mut cut = std::fs::read(&log).unwrap();
    cut.extend_from_slice(b"{\"@timestamp\":\"2026-12-");
    std::fs::write(&log, cut).unwrap();
    let output = execgate(&ws, &["run", "--", "ls >/dev/null"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    let output = execgate(&ws, &["audit", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("custom.jsonl:4: not an audit record"),
        "{}",
        text(&output.stderr)
    );
    let records: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let programs: Vec<&str> = records
        .iter()
        .filter_map(|record| record["process"]["executable"].as_str())
        .collect();
    assert_eq!(programs, ["/usr/bin/id", "/usr/bin/ls"]);

    // The `ls` decision's own time, written at +01:00, bounds it in.
    let ls = records
        .iter()
        .find(|record| record["process"]["executable"] == "/usr/bin/ls")
        .unwrap();
    let stamp = ls["@timestamp"].as_str().unwrap();
    // An offset written out, not a zone name: no time zone data needed.
    let output = Command::new("date")
        .args(["-d", stamp, "+%Y-%m-%dT%H:%M:%S.%N%:z"])
        .env("TZ", "EXG-1")
        .output()
        .unwrap();
    let plus_one = text(&output.stdout).trim().to_owned();
    assert!(plus_one.ends_with("+01:00"), "{plus_one}");
    for bound in ["--since", "--until"] {
        let output = execgate(
            &ws,
            &[
                "audit",
                "--json",
                "--program",
                "ls",
                bound,
                &plus_one,
                log.to_str().unwrap(),
            ],
        );
        assert_eq!(
            text(&output.stdout).lines().count(),
            1,
            "{bound} {plus_one}: {}",
            text(&output.stderr)
        );
    }
    let output = execgate(&ws, &["audit", "--since", "yesterday"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("RFC 3339"),
        "{}",
        text(&output.stderr)
    );

    // Rotated files in the order a glob lists them (newest first) read
    // as one history, oldest first.
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|line| line.ends_with('}'))
        .map(str::to_owned)
        .collect();
    let (older, newer) = (ws.join("a.jsonl.1"), ws.join("a.jsonl"));
    std::fs::write(&older, format!("{}\n", lines[..2].join("\n"))).unwrap();
    std::fs::write(&newer, format!("{}\n", lines[2..].join("\n"))).unwrap();
    let output = execgate(
        &ws,
        &[
            "audit",
            "--json",
            newer.to_str().unwrap(),
            older.to_str().unwrap(),
        ],
    );
    let programs: Vec<String> = text(&output.stdout)
        .lines()
        .filter_map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["process"]["executable"].as_str().map(str::to_owned)
        })
        .collect();
    assert_eq!(programs, ["/usr/bin/id", "/usr/bin/ls"]);

    // `execgate audit | head -0`: the reader is gone before anything is written.
    let mut reading = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["audit", log.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(reading.stdout.take());
    let output = reading.wait_with_output().unwrap();
    assert!(
        !text(&output.stderr).contains("Broken pipe"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn an_audit_log_that_cannot_be_opened_runs_nothing() {
    let (dir, ws) = workspace();
    let output = execgate(
        &ws,
        &[
            "run",
            "--audit-log",
            "/proc/execgate-no/audit.jsonl",
            "--",
            "touch ../marker",
        ],
    );
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).contains("audit log"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("marker").exists());
}

/// A command whose sandbox can write a directory on the way to the log
/// (here the workspace holds `var/log/`) tries to move that directory away
/// and plant a link to a file it cannot write where the log was: the log's
/// directory is a mount of the sandbox's view (hidden), so the directory
/// holding it does not move, the session's records still go to the log it
/// opened, and the session warned at its start that the log was in reach.
#[test]
fn a_sandboxed_command_cannot_divert_the_audit_log() {
    let (dir, ws) = workspace();
    std::fs::create_dir_all(ws.join("var/log")).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "").unwrap();
    let script = format!(
        "zmodload zsh/files; {{ mv var var.old && mkdir -p var/log && \
         ln -s {victim} var/log/audit.jsonl }} 2>/dev/null || /bin/echo not-moved; \
         /bin/echo diverted-or-not",
        victim = victim.display()
    );
    let output = execgate(
        &ws,
        &["run", "--audit-log", "var/log/audit.jsonl", "--", &script],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("is in reach of this session's sandbox"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"",
        "nothing went through the link"
    );
    assert_eq!(text(&output.stdout), "not-moved\ndiverted-or-not\n");
    let log = std::fs::read_to_string(ws.join("var/log/audit.jsonl")).unwrap();
    assert!(
        log.contains("diverted-or-not") && log.contains("session-end"),
        "{log}"
    );

    // A bare name is a log in the working directory, which the sandbox
    // writes: warned about too.
    let output = execgate(&ws, &["run", "--audit-log", "here.jsonl", "--", "true"]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("is in reach of this session's sandbox"),
        "{stderr}"
    );
    assert!(ws.join("here.jsonl").exists());
}

/// A descriptor execgate's caller left open without close-on-exec (here
/// fd 7, opened by the calling shell) reaches no command: not the shell of
/// `run`, not the program of `sandbox`.
#[test]
fn descriptors_the_caller_left_open_reach_no_command() {
    let (_dir, ws) = workspace();
    // Builtins only: a program the policy refused would look closed too.
    // (In sh, a failed redirection of a special builtin ends the shell.)
    let in_zsh = "if { : <&7 } 2>/dev/null; then echo open; else echo closed; fi";
    let in_sh = "if command : 2>/dev/null <&7; then echo open; else echo closed; fi";
    for args in [
        vec!["run", "--", in_zsh],
        vec!["sandbox", "--", "/bin/sh", "-c", in_sh],
    ] {
        let output = Command::new("bash")
            .arg("-c")
            .arg(r#"exec 7</etc/hostname; exec "$@""#)
            .arg("bash")
            .arg(env!("CARGO_BIN_EXE_execgate"))
            .args(&args)
            .current_dir(&ws)
            .env("XDG_CONFIG_HOME", ws.join("no-config"))
            .env("XDG_STATE_HOME", ws.join("state"))
            .output()
            .unwrap();
        assert_eq!(
            text(&output.stdout),
            "closed\n",
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

const TEAM_RULES: &str = r#"
prefix_rule(pattern = ["touch"], decision = "prompt", justification = "writes files")
prefix_rule(pattern = ["rm"], decision = "forbidden", justification = "use git clean")
prefix_rule(pattern = ["python3"], decision = "allow")
"#;

/// A refused escalation runs the command in place, where it may fail for
/// want of what it was to be given: the terminal says why (only the audit
/// log did), and the audit table shows the note.
#[test]
fn a_refused_escalation_says_why_on_stderr_and_in_the_table() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("tool.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"tool.sh\"])\n").unwrap();
    let tool = ws.join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\ntouch ../outside\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = execgate(
        &ws,
        &["run", "--rules", rules.to_str().unwrap(), "--", "./tool.sh"],
    );
    let stderr = text(&output.stderr);
    assert!(!dir.path().join("outside").exists(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "execgate: {} runs in place, in the sandbox: escalation refused: ",
            tool.display()
        )) && stderr.contains("is writable from the sandbox"),
        "{stderr}"
    );
    let log = ws.join("state/execgate/audit.jsonl");
    let table = text(&execgate(&ws, &["audit", log.to_str().unwrap()]).stdout);
    assert!(table.contains("success: escalation refused: "), "{table}");
}

/// Regression (a probe): what the server cannot see is said for what it
/// is: a program in the sandbox's own /dev/shm ("No such file" of a file
/// just made), a working directory that was removed (`""` is not an
/// absolute path).
#[test]
fn requests_the_server_cannot_follow_say_why() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("true.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"true\"])\n").unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--",
            "cp /usr/bin/true /dev/shm/t; /dev/shm/t; print shm=$?; \
             mkdir gone; cd gone; rmdir ../gone; /usr/bin/true; print gone=$?; \
             cd ..; /proc/self/root/usr/bin/true; print root=$?",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(
        text(&output.stdout),
        "shm=126\ngone=126\nroot=126\n",
        "{stderr}"
    );
    // A probe (105): "Too many levels of symbolic links" alone.
    assert!(
        stderr.contains("a /proc link to a process's root"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a sandbox has its own /dev and /run"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the working directory has no name"),
        "{stderr}"
    );
}

/// Regression (a probe): a `.git` the sandbox made at the top of the
/// temporary directory took in every directory below it without a
/// repository of its own, for the user's git outside the sandbox too (its
/// `core.fsmonitor` ran there). None can be made there; below it, and in
/// the workspace, `git init` works.
#[test]
fn no_repository_can_be_made_at_the_top_of_the_temporary_directory() {
    let (dir, ws) = workspace();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--",
            "mkdir $TMPDIR/.git; print top=$?; mkdir $TMPDIR/x $TMPDIR/x/.git; print below=$?; \
             mkdir sub sub/.git; print workspace=$?",
        ],
        &[("TMPDIR", tmp.to_str().unwrap())],
    );
    let stderr = text(&output.stderr);
    assert_eq!(
        text(&output.stdout),
        "top=1\nbelow=0\nworkspace=0\n",
        "{stderr}"
    );
    assert!(!tmp.join(".git").exists());
}

/// Regression (a probe of the package): a `ZDOTDIR` inside the workspace
/// took a `.zshrc` line from the sandbox, which the user's own zsh ran
/// later, with no word from execgate.
#[test]
fn a_startup_directory_in_reach_of_the_sandbox_is_warned_of() {
    let (_dir, ws) = workspace();
    let dotdir = ws.join("dot");
    std::fs::create_dir(&dotdir).unwrap();
    let warning = "could plant what your own shell runs at its next start";
    let output = execgate_with_env(
        &ws,
        &["run", "--", "true"],
        &[("ZDOTDIR", dotdir.to_str().unwrap())],
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{} is writable", dotdir.display())) && stderr.contains(warning),
        "{stderr}"
    );
    let output = execgate(&ws, &["run", "--", "true"]);
    assert!(!text(&output.stderr).contains(warning));
    // From a probe: a profile that grants one startup file alone.
    let home = ws.parent().unwrap().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join(".zshrc"), "").unwrap();
    let config = ws.parent().unwrap().join("zshrc.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.rc]\nextends = \"workspace-write\"\nfilesystem = {{ \"{}\" = \"write\" }}\n",
            home.join(".zshrc").display()
        ),
    )
    .unwrap();
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--profile",
            "rc",
            "--",
            "true",
        ],
        &[("HOME", home.to_str().unwrap())],
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{} is writable", home.join(".zshrc").display()))
            && stderr.contains(warning),
        "{stderr}"
    );
}

/// `--program` keeps the start and exit of the escalations it keeps, also
/// when the exit is in a rotated file named before the decision's (as
/// `audit.jsonl*` names them, newest first): a review found the exit
/// dropped when files were read in the order named.
#[test]
fn audit_keeps_an_escalations_exit_across_files_named_in_any_order() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("true.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"true\"])\n").unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--",
            "/bin/true; print done",
        ],
    );
    assert_eq!(text(&output.stdout), "done\n", "{}", text(&output.stderr));
    let log = std::fs::read_to_string(ws.join("state/execgate/audit.jsonl")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let decision = lines
        .iter()
        .position(|line| line.contains("\"decision\":\"escalate\""))
        .unwrap();
    let (old, new) = (
        dir.path().join("audit.jsonl.1"),
        dir.path().join("audit.jsonl"),
    );
    std::fs::write(&old, lines[..=decision].join("\n") + "\n").unwrap();
    std::fs::write(&new, lines[decision + 1..].join("\n") + "\n").unwrap();
    let listed = execgate(
        &ws,
        &[
            "audit",
            "--program",
            "true",
            new.to_str().unwrap(),
            old.to_str().unwrap(),
        ],
    );
    let table = text(&listed.stdout);
    let actions: Vec<&str> = table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    assert_eq!(actions, ["decision", "start", "exit"], "{table}");
}

#[test]
fn approval_modes_decide_prompts_and_rules_deny_with_their_justification() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(&rules, TEAM_RULES).unwrap();
    let rules = rules.to_str().unwrap();
    // (mode, exit status, whether ../outside is created)
    for (mode, code, created) in [("deny", 126, false), ("approve", 0, true)] {
        let output = execgate(
            &ws,
            &[
                "run",
                "--rules",
                rules,
                "--approval",
                mode,
                "--",
                "touch ../outside",
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(code),
            "{mode}: {}",
            text(&output.stderr)
        );
        assert_eq!(dir.path().join("outside").exists(), created, "{mode}");
    }
    // Not a terminal, no --approval: prompts are declined, by no one: the
    // record says so rather than crediting a person.
    let _ = std::fs::remove_file(dir.path().join("outside"));
    let output = execgate(&ws, &["run", "--rules", rules, "--", "touch ../outside"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(126), "{stderr}");
    assert!(
        stderr.contains("nobody is asked in this session"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(ws.join("state/execgate/audit.jsonl")).unwrap();
    let touch = log
        .lines()
        .rev()
        .find(|line| line.contains("\"touch\""))
        .unwrap();
    assert!(touch.contains("\"decided_by\":\"rule\""), "{touch}");
    let output = execgate(&ws, &["run", "--rules", rules, "--", "rm -rf ."]);
    assert_eq!(output.status.code(), Some(126));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("team.rules:3: use git clean"), "{stderr}");
}

#[test]
fn a_broken_rules_file_runs_nothing_and_names_file_and_line() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("bad.rules");
    std::fs::write(
        &rules,
        "\nprefix_rule(pattern = [\"ls\"], decision = \"sometimes\")\n",
    )
    .unwrap();
    let output = execgate(
        &ws,
        &["run", "--rules", rules.to_str().unwrap(), "--", "touch ran"],
    );
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad.rules:2:") && stderr.contains("sometimes"),
        "{stderr}"
    );
    assert!(!ws.join("ran").exists());
    // A missing one: the reason, once.
    let missing = dir.path().join("missing.rules");
    let output = execgate(
        &ws,
        &[
            "run",
            "--rules",
            missing.to_str().unwrap(),
            "--",
            "touch ran",
        ],
    );
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert!(!ws.join("ran").exists());
}

/// `policy check` checks the command line as written (as codex does);
/// `--as-run` decides as a session does, on the program found in PATH and
/// canonicalized, where a rule for the exact path comes first. They
/// disagree when a basename rule and an exact-path rule do, and `run`
/// follows the second.
#[test]
fn policy_check_as_run_decides_on_the_resolved_program() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("prec.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"uname\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"/usr/bin/uname\"], decision = \"allow\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let decision = |args: &[&str]| {
        let mut all = vec!["policy", "check", "--rules", rules];
        all.extend(args);
        let output = execgate(&ws, &all);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        report["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(decision(&["--", "uname", "-a"]), "forbidden");
    assert_eq!(decision(&["--as-run", "--", "uname", "-a"]), "allow");
    // /bin is a link to /usr/bin here: canonicalized, it is the same file.
    assert_eq!(decision(&["--as-run", "--", "/bin/uname", "-a"]), "allow");
    let output = execgate(
        &ws,
        &[
            "run",
            "--verbose",
            "--rules",
            rules,
            "--",
            "uname -a >/dev/null",
        ],
    );
    assert!(
        text(&output.stderr).contains("\"/usr/bin/uname\" [\"uname\", \"-a\"] -> Escalate"),
        "{}",
        text(&output.stderr)
    );
}

/// Regression: a probe pinned `git` to `/usr/bin/git` and forbade `git
/// push`; a session ran the git `PATH` found first (`/usr/local/bin/git`)
/// with no rule matching, while plain `policy check` said forbidden. A pin
/// narrows what the rules on its name allow, not what they forbid.
#[test]
fn a_pin_does_not_take_forbidden_rules_away_from_other_programs_of_its_name() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let bin = base.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let git = bin.join("git");
    std::fs::write(&git, "#!/bin/sh\necho ran git \"$@\"\n").unwrap();
    std::fs::set_permissions(&git, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pin = base.join("pin.rules");
    std::fs::write(
        &pin,
        "host_executable(name = \"git\", paths = [\"/usr/bin/git\"])\n",
    )
    .unwrap();
    let nopush = base.join("nopush.rules");
    std::fs::write(
        &nopush,
        "prefix_rule(pattern = [\"git\", \"push\"], decision = \"forbidden\", \
         justification = \"no push\")\n",
    )
    .unwrap();
    let (pin, nopush) = (pin.to_str().unwrap(), nopush.to_str().unwrap());
    let search_path = format!("{}:/usr/bin:/bin", bin.display());
    let env = [("PATH", search_path.as_str())];

    let output = execgate_with_env(
        &ws,
        &[
            "policy", "check", "--as-run", "--rules", pin, "--rules", nopush, "--", "git", "push",
        ],
        &env,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["decision"], "forbidden", "{json}");
    assert_eq!(
        json["matchedRules"][0]["prefixRuleMatch"]["resolvedProgram"],
        git.to_str().unwrap()
    );

    let output = execgate_with_env(
        &ws,
        &["run", "--rules", pin, "--rules", nopush, "--", "git push"],
        &env,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(126), "{stderr}");
    assert!(
        stderr.contains(&format!("forbidden by {nopush}:1: no push")),
        "{stderr}"
    );
    assert!(!text(&output.stdout).contains("ran git"));
}

/// A probe's plain `policy check -- python3` said forbidden for a name a
/// session never matches: `python3` is a link to `python3.11`, and a
/// session decides on the canonical path's name. Check says so on stderr.
/// From a probe: `--as-run` looked the program up in the caller's PATH,
/// while a session's shell gets the one the config's `[env]` makes, and
/// so said forbidden where the session ran another program in place.
#[test]
fn policy_check_as_run_looks_in_the_sessions_path() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let sessions = path_with_programs(&base, &["tool"]);
    let config = base.join("path.toml");
    std::fs::write(
        &config,
        format!("[env]\nset = {{ PATH = \"{sessions}\" }}\n"),
    )
    .unwrap();
    let rules = base.join("tool.rules");
    std::fs::write(
        &rules,
        format!("prefix_rule(pattern = [\"{sessions}/tool\"], decision = \"forbidden\")\n"),
    )
    .unwrap();
    let output = execgate_with_env(
        &ws,
        &[
            "policy",
            "check",
            "--rules",
            rules.to_str().unwrap(),
            "--as-run",
            "--config",
            config.to_str().unwrap(),
            "--",
            "tool",
        ],
        &[("PATH", "/usr/bin:/bin")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["decision"], "forbidden", "{report}");
}

/// Probe 149: `policy check --as-run` against what a session decides.
/// A program found by a relative path that links to another name missed
/// the `forbidden` rule on the name found; a `/proc` link was resolved in
/// the checking process, where a session refuses it; `command id` and
/// `time id` were called builtins that never ask, where a session decides
/// on `id`; and the `PATH` lookup saw directories the session's sandbox
/// hides, where the session's shell finds the program further on.
#[test]
fn policy_check_as_run_decides_as_a_session_does() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    std::os::unix::fs::symlink("/usr/bin/mawk", ws.join("awk-link")).unwrap();
    let rules = base.join("check.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"awk-link\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"id\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec![
            "policy",
            "check",
            "--as-run",
            "--rules",
            rules.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let output = execgate_with_env(&ws, &all, env);
        let report = serde_json::from_slice::<serde_json::Value>(&output.stdout).ok();
        (output.status.code(), report, text(&output.stderr))
    };
    for argv in [
        &["--", "./awk-link", "BEGIN{}"][..],
        &["--", "command", "id"],
        &["--", "time", "id"],
        &["--", "exec", "-a", "other", "id"],
        &["--", "builtin", "exec", "-la", "other", "id"],
        // Probe 223: the name follows the first `a`, in the word if
        // anything is left of it.
        &["--", "exec", "-aa", "id", "uname"],
        &["--", "exec", "-ala", "id"],
        &["--", "noglob", "-", "command", "--", "id"],
        // Probe 157: zsh reads modifiers after `exec`, and after `builtin`
        // every one of them.
        &["--", "exec", "command", "id"],
        &["--", "exec", "noglob", "id"],
        &["--", "exec", "-", "id"],
        &["--", "exec", "exec", "id"],
        &["--", "exec", "builtin", "command", "id"],
        &["--", "builtin", "noglob", "id"],
        &["--", "builtin", "-", "id"],
        &["--", "builtin", "builtin", "exec", "id"],
        // Probe 223: reserved words, assignments and `nocorrect` come
        // before the modifiers.
        &["--", "FOO=1", "id"],
        &["--", "!", "id"],
        &["--", "time", "!", "id"],
        &[
            "--",
            "!",
            "time",
            "A[1]=x",
            "nocorrect",
            "B+=y",
            "nocorrect",
            "id",
        ],
        &["--", "nocorrect", "nocorrect", "id"],
        &["--", "FOO=1", "noglob", "exec", "id"],
        // Review 229.
        &["--", "!", "time", "!", "id"],
        &["--", "é=1", "id"],
    ] {
        let (code, report, stderr) = check(argv, &[]);
        assert_eq!(code, Some(0), "{argv:?}: {stderr}");
        let decision = report.as_ref().map(|report| report["decision"].clone());
        assert_eq!(decision, Some("forbidden".into()), "{argv:?}: {stderr}");
        assert!(!stderr.contains("never asks"), "{argv:?}: {stderr}");
    }
    // A review: past `command` or `exec` the next word is a program, even
    // `time`; `exec -la NAME` runs what follows NAME. Review 34b: past any
    // modifier, `time` is no reserved word.
    for (argv, program) in [
        (&["--", "command", "time", "id"][..], "/usr/bin/time"),
        (&["--", "noglob", "time", "id"], "/usr/bin/time"),
        (&["--", "builtin", "noglob", "time", "id"], "/usr/bin/time"),
        (&["--", "exec", "-la", "id", "uname"], "/usr/bin/uname"),
        (&["--", "exec", "-aa", "uname", "id"], "/usr/bin/uname"),
        (&["--", "time", "time", "id"], "/usr/bin/time"),
    ] {
        let (code, report, stderr) = check(argv, &[]);
        assert_eq!(code, Some(0), "{argv:?}: {stderr}");
        let report = report.unwrap();
        assert_eq!(report["program"], program, "{argv:?}: {report}");
        assert_ne!(report["decision"], "forbidden", "{argv:?}: {report}");
        assert!(!stderr.contains("is a zsh builtin"), "{argv:?}: {stderr}");
    }
    // zsh's parse errors run nothing; a search path set before the
    // command is where zsh looks.
    for argv in [
        &["--", "FOO=1", "time", "id"][..],
        &["--", "nocorrect", "!", "id"],
        &["--", "!", "!", "id"],
    ] {
        let (code, _, stderr) = check(argv, &[]);
        assert_ne!(code, Some(0), "{argv:?}: {stderr}");
        assert!(stderr.contains("cannot parse"), "{argv:?}: {stderr}");
    }
    // Review 229: a search path the check cannot read as zsh does is
    // refused, not passed over.
    for assignment in [
        "PATH=~/bin:/usr/bin",
        "path[1]=/x",
        "PATH=\"/x\":/usr/bin",
        "path=/x",
    ] {
        let (code, _, stderr) = check(&["--", assignment, "id"], &[]);
        assert_ne!(code, Some(0), "{assignment}: {stderr}");
        assert!(
            stderr.contains("written out literally"),
            "{assignment}: {stderr}"
        );
    }
    let (code, _, stderr) = check(&["--", "noglob", "FOO=1", "id"], &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("FOO=1 is not found"), "{stderr}");
    let (code, _, stderr) = check(&["--", "PATH=/nonexistent", "id"], &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("not found in the session's PATH (/nonexistent)"),
        "{stderr}"
    );
    let (code, report, stderr) = check(&["--", "path=(/nonexistent /bin)", "id"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report.unwrap()["program"], "/usr/bin/id", "{stderr}");
    let (code, _, stderr) = check(&["--", "command", "-pv", "id"], &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("runs nothing"), "{stderr}");
    let (code, _, stderr) = check(&["--", "/proc/self/exe", "--version"], &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("a /proc link"), "{stderr}");

    // A PATH entry the session's profile does not show: the session's
    // shell finds the next one.
    let hidden = base.join("hidden-bin");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::copy("/usr/bin/true", hidden.join("id")).unwrap();
    let config = base.join("minimal.toml");
    std::fs::write(
        &config,
        format!(
            "default_profile = \"min\"\n[profiles.min]\n\
             filesystem = {{ \":minimal\" = \"read\", \":cwd\" = \"write\" }}\n\
             [env]\nset = {{ PATH = \"{}:/usr/bin:/bin\" }}\n",
            hidden.display()
        ),
    )
    .unwrap();
    let (code, report, stderr) = check(&["--config", config.to_str().unwrap(), "--", "id"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = report.unwrap();
    assert_eq!(report["program"], "/usr/bin/id", "{report}: {stderr}");
    assert_eq!(report["decision"], "forbidden", "{report}");
}

/// Probe 227: `xzcat` is `xz` by another name, which a session does not
/// escalate as `xz` (it would compress what it was to print); `--as-run`
/// said nothing of it.
#[test]
fn policy_check_as_run_says_a_program_of_another_name_runs_in_place() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("xz.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"xz\"], execution = \"unsandboxed\")\n",
    )
    .unwrap();
    let check = |program: &str| {
        let output = execgate(
            &ws,
            &[
                "policy",
                "check",
                "--as-run",
                "--rules",
                rules.to_str().unwrap(),
                "--",
                program,
                "packed",
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        text(&output.stderr)
    };
    let stderr = check("xzcat");
    assert!(
        stderr.starts_with(
            "execgate: in a session this command runs in place, in the sandbox: escalation \
             refused: /usr/bin/xzcat is /usr/bin/xz by another name"
        ),
        "{stderr}"
    );
    assert!(!check("xz").contains("by another name"));
}

/// Without `--rules`, `policy check` said only that `--rules` was
/// missing: nothing pointed to `--as-run`, which takes a session's rules.
#[test]
fn policy_check_without_rules_names_both_sources_of_rules() {
    let (_dir, ws) = workspace();
    let output = execgate(&ws, &["policy", "check", "--", "ls"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--rules <FILE>|--as-run"), "{stderr}");
}

#[test]
fn policy_check_says_when_a_session_decides_on_another_name() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let search_path = path_with_programs(&base, &["tool3.11", "plain"]);
    let real = Path::new(&search_path).join("tool3.11");
    let link = Path::new(&search_path).join("tool3");
    std::os::unix::fs::symlink("tool3.11", &link).unwrap();
    let rules = base.join("names.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [[\"tool3\", \"plain\"]], decision = \"forbidden\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let check = |args: &[&str]| {
        let mut all = vec!["policy", "check", "--rules", rules];
        all.extend(args);
        let output = execgate_with_env(&ws, &all, &[("PATH", &search_path)]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (report["decision"].clone(), text(&output.stderr))
    };
    let (decision, stderr) = check(&["--", "tool3", "-x"]);
    assert_eq!(decision, "forbidden");
    assert_eq!(
        stderr,
        format!(
            "execgate: tool3 is {} here, which resolves to {}: a session decides on tool3.11, \
             and of the rules on tool3 only the forbidden ones hold for it, where the shell \
             finds it as tool3; --as-run decides as a session does\n",
            link.display(),
            real.display()
        )
    );
    // As a session decides it: no rule on tool3.11, and the forbidden one
    // on the name found (probe 142: it never held).
    let (decision, stderr) = check(&["--as-run", "--", "tool3", "-x"]);
    assert_eq!(decision, "forbidden");
    assert_eq!(stderr, "");
    // A program of its own name.
    let (decision, stderr) = check(&["--", "plain"]);
    assert_eq!(decision, "forbidden");
    assert_eq!(stderr, "");
}

#[test]
fn policy_check_prints_codex_shaped_json_and_lint_flags_escape_hatches() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(&rules, TEAM_RULES).unwrap();
    let rules = rules.to_str().unwrap();
    let output = execgate(
        &ws,
        &[
            "policy",
            "check",
            "--rules",
            rules,
            "--resolve-host-executables",
            "--",
            "/usr/bin/rm",
            "-rf",
            "x",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["decision"], "forbidden");
    let matched = &json["matchedRules"][0]["prefixRuleMatch"];
    assert_eq!(matched["matchedPrefix"], serde_json::json!(["rm"]));
    assert_eq!(matched["resolvedProgram"], "/usr/bin/rm");
    assert_eq!(matched["justification"], "use git clean");
    assert_eq!(matched["rule"], format!("{rules}:3"));
    let output = execgate(&ws, &["policy", "check", "--rules", rules, "--", "ls"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json, serde_json::json!({"matchedRules": []}));

    // `python3` a program of its own name: what it is here (a link to
    // python3.11, say) is another lint's business.
    let search_path = path_with_programs(dir.path(), &["touch", "rm", "python3"]);
    let output = execgate_with_env(
        &ws,
        &["policy", "lint", "--rules", rules],
        &[("PATH", &search_path)],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!("{rules}:4: warning: allow on python3")),
        "{stdout}"
    );
    // And the forbidden `rm` a `zmodload zsh/files` sidesteps.
    assert!(
        stdout.contains(&format!("{rules}:3: warning: rm is also a builtin")),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}

/// A DNS responder for [`a_name_is_resolved_as_decided_not_as_the_search_list_makes_it`]:
/// `priv.allowed.test.corp.example` is 127.0.0.9, every other name does not
/// exist.
const DNS_RESPONDER: &str = r#"
import socket, struct
names = {b"priv.allowed.test.corp.example": bytes([127, 0, 0, 9])}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
while True:
    q, peer = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1 : i + 1 + q[i]])
        i += 1 + q[i]
    name = b".".join(labels).lower()
    qtype = struct.unpack(">H", q[i + 1 : i + 3])[0]
    question = q[12 : i + 5]
    ip = names.get(name)
    answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + ip if ip and qtype == 1 else b""
    flags = 0x8180 | (0 if ip else 3)
    header = q[:2] + struct.pack(">HHHHH", flags, 1, 1 if answers else 0, 0, 0)
    s.sendto(header + question + answers, peer)
"#;

/// A probe (108): the proxy resolved a name through the C library, which
/// tries the names its search list makes of it: an exact entry for a name
/// that does not resolve (`priv.allowed.test`) reached a loopback service
/// as `priv.allowed.test.corp.example`, and `db` under `*` reached a denied
/// `db.corp.example`. In a network and mount namespace of the test's own
/// (its resolver configuration, a DNS responder and the service on its
/// loopback), the name is resolved as decided, and nothing is reached.
#[test]
fn a_name_is_resolved_as_decided_not_as_the_search_list_makes_it() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(base.join("responder.py"), DNS_RESPONDER).unwrap();
    std::fs::create_dir_all(base.join("www")).unwrap();
    std::fs::write(base.join("www/index.html"), "reached\n").unwrap();
    std::fs::write(
        base.join("config.toml"),
        "[profiles.lim]\nextends = \"workspace-write\"\nnetwork = { mode = \"limited\", \
         domains = { \"priv.allowed.test\" = \"allow\" } }\n",
    )
    .unwrap();
    let script = r#"
set -e
base=$1 execgate=$2
ip link set lo up
printf 'search corp.example\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$base/resolv.conf"
printf '127.0.0.1 localhost\n' > "$base/hosts"
mount --bind "$base/resolv.conf" /etc/resolv.conf
mount --bind "$base/hosts" /etc/hosts
# Killed with this shell, however it ends (the test's own kill included).
setpriv --pdeathsig KILL python3 "$base/responder.py" & dns=$!
setpriv --pdeathsig KILL python3 -m http.server --bind 127.0.0.9 8080 -d "$base/www" \
    >/dev/null 2>&1 & web=$!
trap 'kill $dns $web' EXIT
for _ in $(seq 200); do
    getent ahosts priv.allowed.test >/dev/null && curl -s http://127.0.0.9:8080/ >/dev/null && break
    sleep 0.1
done
# The resolver, as the C library's users get it, goes through the list.
getent ahosts priv.allowed.test | head -n 1
"$execgate" run --config "$base/config.toml" --profile lim --approval deny --     'curl -s -w " %{http_code}
" http://priv.allowed.test:8080/' || true
"#;
    let output = Command::new("unshare")
        .args([
            "--fork",
            "--kill-child",
            "--mount",
            "--net",
            "bash",
            "-c",
            script,
            "script",
        ])
        .arg(&base)
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        stdout.starts_with("127.0.0.9 "),
        "the namespace's resolver: {stdout}\n{stderr}"
    );
    assert!(!stdout.contains("reached"), "{stdout}\n{stderr}");
    // The proxy's answer, as curl prints it: its body, then the status.
    assert!(
        stdout.contains("cannot resolve priv.allowed.test") && stdout.ends_with(" 502\n"),
        "{stdout}\n{stderr}"
    );
}

/// A probe (108): `check --network` left out the config's rules even with
/// `--as-run`, and said nothing: it reported no rule for a destination the
/// team's file forbids, which a session refused.
#[test]
fn policy_check_network_takes_the_configs_rules_as_a_command_check_does() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(base.join("execgate")).unwrap();
    std::fs::write(
        base.join("execgate/team.rules"),
        "network_rule(host = \"evil.example\", decision = \"forbidden\")\n",
    )
    .unwrap();
    let config = base.join("execgate/config.toml");
    std::fs::write(&config, "rules = [\"team.rules\"]\n").unwrap();
    let empty = base.join("empty.rules");
    std::fs::write(&empty, "").unwrap();
    let home = [("XDG_CONFIG_HOME", base.to_str().unwrap())];
    let check = |args: &[&str]| {
        let mut all = vec!["policy", "check"];
        all.extend(args);
        all.extend(["--network", "evil.example:443"]);
        let output = execgate_with_env(&ws, &all, &home);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (report["decision"].clone(), text(&output.stderr))
    };
    let config = config.to_str().unwrap();
    for args in [
        &["--as-run"][..],
        &["--as-run", "--config", config],
        &["--as-run", "--rules", empty.to_str().unwrap()],
    ] {
        let (decision, stderr) = check(args);
        assert_eq!(decision, "forbidden", "{args:?}: {stderr}");
    }
    let (decision, stderr) = check(&["--rules", empty.to_str().unwrap()]);
    assert_eq!(decision, serde_json::Value::Null);
    assert!(
        stderr.contains("--as-run adds them as a session does"),
        "{stderr}"
    );
}

#[test]
fn policy_check_network_reports_the_deciding_network_rules() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("net.rules");
    std::fs::write(
        &rules,
        "network_rule(host = \"**.crates.io\", protocol = \"https\", port = 443)\n\
         network_rule(host = \"*\", decision = \"prompt\")\n\
         network_rule(host = \"evil.example\", decision = \"forbidden\", justification = \"no\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let check = |target: &str, protocol: &str| {
        let output = execgate(
            &ws,
            &[
                "policy",
                "check",
                "--rules",
                rules,
                "--network",
                target,
                "--protocol",
                protocol,
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let json = check("static.crates.io:443", "https");
    assert_eq!(
        json["decision"], "prompt",
        "the strictest matching rule wins: {json}"
    );
    assert_eq!(
        json["matchedRules"][0]["networkRuleMatch"]["host"],
        "**.crates.io"
    );
    assert_eq!(
        json["matchedRules"][0]["networkRuleMatch"]["rule"],
        format!("{rules}:1")
    );
    let json = check("EVIL.example.:80", "http");
    assert_eq!(json["decision"], "forbidden");
    assert_eq!(
        json["matchedRules"][1]["networkRuleMatch"]["justification"],
        "no"
    );
    let output = execgate(
        &ws,
        &[
            "policy",
            "check",
            "--rules",
            rules,
            "--network",
            "1.2.3.999:80",
        ],
    );
    assert_ne!(output.status.code(), Some(0));
    assert!(
        text(&output.stderr).contains("not an IPv4 address"),
        "{}",
        text(&output.stderr)
    );
    // --protocol means nothing for a command line: refused, not ignored
    // (probe 177).
    let output = execgate(
        &ws,
        &[
            "policy",
            "check",
            "--rules",
            rules,
            "--protocol",
            "http",
            "--",
            "ls",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert!(
        text(&output.stderr).contains("'--protocol <PROTOCOL>' cannot be used with"),
        "{}",
        text(&output.stderr)
    );

    let output = execgate(&ws, &["policy", "lint", "--rules", rules]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains(&format!("{rules}:2: warning: prompt on every host")));

    // Probe 162: `allow` for an address every session refuses all the
    // same says so.
    let allowing = dir.path().join("lan.rules");
    std::fs::write(
        &allowing,
        "network_rule(host = \"10.1.2.3\", decision = \"allow\")\n\
         network_rule(host = \"93.184.215.14\", decision = \"allow\")\n",
    )
    .unwrap();
    let allowing = allowing.to_str().unwrap();
    for (target, note) in [
        ("10.1.2.3:443", Some("10.1.2.3 is a private address")),
        ("93.184.215.14:443", None),
    ] {
        let output = execgate(
            &ws,
            &["policy", "check", "--rules", allowing, "--network", target],
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["decision"], "allow", "{json}");
        match note {
            Some(note) => assert!(
                json["note"]
                    .as_str()
                    .is_some_and(|text| text.starts_with(note)),
                "{json}"
            ),
            None => assert!(json["note"].is_null(), "{json}"),
        }
    }
}

/// Review 119: a grant the approver gave was recorded as given before the
/// shell's sandbox was known to start with it: one that cannot be made (a
/// deny glob past its depth, a command too long) left an `allow` record for
/// a command that never ran; review 121: then none at all. The answer is
/// recorded as a grant not made, and why.
#[test]
fn a_grant_that_cannot_be_made_is_recorded_as_not_made() {
    let (dir, ws) = workspace();
    // Under a writable root, where the sandbox could make a key file.
    let mut deep = ws.join("deep");
    for _ in 0..20 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    // One argument of execgate's each, joined into one past the kernel's
    // bound on an argument.
    let part = "x".repeat(60_000);
    let cases = [
        (
            "filesystem = { \"ws/deep/**/*.key\" = \"none\" }\n",
            vec!["echo ran"],
            "deny globs cannot be enforced",
        ),
        (
            "filesystem = { \"ws\" = \"write\" }\n",
            vec!["true", &part, &part, &part],
            "the command is 180007 bytes",
        ),
        // Probe 235: run in an empty directory, where a profile that hides
        // the working directory is refused.
        (
            "filesystem = { \"ws\" = \"none\" }\n",
            vec!["echo ran"],
            "is hidden in the sandbox",
        ),
    ];
    for (index, (request, command, why)) in cases.into_iter().enumerate() {
        let request_file = dir.path().join(format!("request-{index}.toml"));
        std::fs::write(&request_file, request).unwrap();
        let log = dir.path().join(format!("audit-{index}.jsonl"));
        let mut args = vec![
            "run",
            "--approval",
            "approve",
            "--audit-log",
            log.to_str().unwrap(),
            "--request-permissions",
            request_file.to_str().unwrap(),
            "--",
        ];
        args.extend(command);
        let output = execgate(&ws, &args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{why}: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(!text(&output.stdout).contains("ran"));
        let requests = records_of(&log, "permissions-request");
        let [record] = requests.as_slice() else {
            panic!("{why}: one record of the answer: {requests:?}");
        };
        assert_eq!(record["event"]["outcome"], "failure", "{record}");
        assert_eq!(record["execgate"]["decision"], "deny", "{record}");
        let note = record["execgate"]["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("granted, but not made: ") && note.contains(why),
            "{record}"
        );
        // Said once (review 216: a shell-not-started `error` said it
        // again, with the whole command).
        let errors = records_of(&log, "error");
        assert!(errors.is_empty(), "{why}: {errors:?}");
    }
}

/// Probe 133: a request's grant on a path that is not there was given
/// without a word, where a profile's or a skill's is warned of.
#[test]
fn a_requested_grant_on_nothing_is_warned_of() {
    let (dir, ws) = workspace();
    let request = dir.path().join("request.toml");
    std::fs::write(&request, "filesystem = { \"no-such-dir/x\" = \"write\" }\n").unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--approval",
            "approve",
            "--request-permissions",
            request.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("the permissions request grants write access to")
            && stderr.contains("no-such-dir/x, which does not exist"),
        "{stderr}"
    );
}

/// Probe 235: a skills directory in the working directory's `.agents`,
/// which every sandbox there keeps read-only (a mount point: it cannot be
/// replaced, nor `.agents` moved), was said to be replaceable.
#[test]
fn skills_in_the_workspaces_agents_are_not_said_to_be_replaceable() {
    let (_dir, ws) = workspace();
    let skill = ws.join(".agents/skills/deploy");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(skill.join("SKILL.md"), "---\nname: deploy\n---\n").unwrap();
    let output = execgate(&ws, &["run", "--skills", ".agents/skills", "--", "true"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(".agents"), "{stderr}");
}

/// Probe 227: `export CFLAGS=-O2; make`, escalated out of the sandbox,
/// built without `CFLAGS`, and nothing said so (by design: such a program
/// gets the session's environment). It is said now, each name once per
/// session; not for what the program keeps (`LANG`), nor for one in the
/// session's own sandbox, which gets the shell's, nor for what execgate set
/// for every command (a limited network's proxy variables, review 236).
#[test]
fn an_escalation_beyond_the_sandbox_says_which_variables_it_runs_without() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("env.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"env\"], decision = \"allow\")\n\
         prefix_rule(pattern = [\"printenv\"], decision = \"allow\", execution = \"turn-default\")\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.lim]\nextends = \"workspace-write\"\nnetwork = { mode = \"limited\" }\n",
    )
    .unwrap();
    let script = "LANG=C env >/dev/null; AWS_PROFILE=prod printenv AWS_PROFILE; \
                  export AWS_PROFILE=prod; env | grep -c AWS_PROFILE; env >/dev/null; \
                  CFLAGS=-O2 env >/dev/null";
    let note = |program: &str, names: &str| {
        format!(
            "execgate: note: {program}, escalated unsandboxed, runs without variables the shell \
             set: {names} (a program escalated beyond the session's sandbox gets the session's \
             environment, not the shell's; pass what it needs as arguments where it takes them)"
        )
    };
    for profile in ["workspace-write", "lim"] {
        let output = execgate(
            &ws,
            &[
                "run",
                "--config",
                config.to_str().unwrap(),
                "--profile",
                profile,
                "--rules",
                rules.to_str().unwrap(),
                "--",
                script,
            ],
        );
        let stderr = text(&output.stderr);
        assert_eq!(text(&output.stdout), "prod\n0\n", "{profile}: {stderr}");
        let notes: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("execgate: note: "))
            .collect();
        assert_eq!(
            notes,
            [note("env", "AWS_PROFILE"), note("env", "CFLAGS")],
            "{profile}: {stderr}"
        );
    }
}

/// Probe 232: a skill's script with a hard link elsewhere, or with a `#!`
/// line and no execute permission, loaded without a word and then never
/// got the skill's grants. Both are warned of as the session starts and by
/// lint; a helper module without `#!` and a script as it should be are not.
#[test]
fn a_skills_scripts_that_never_get_its_grants_are_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, ws) = workspace();
    let skill = skill_with(dir.path(), "saver", "network = \"enabled\"\n");
    let scripts = skill.join("scripts");
    let write_script = |name: &str, text: &str, mode: u32| {
        let path = scripts.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    write_script("good.sh", "#!/bin/sh\necho ok\n", 0o755);
    let helpers = write_script("helpers.py", "def f(): pass\n", 0o644);
    std::fs::hard_link(&helpers, dir.path().join("helpers-copy.py")).unwrap();
    let unexecutable = write_script("save.sh", "#!/bin/sh\necho saved\n", 0o644);
    let linked = write_script("backup.sh", "#!/bin/sh\necho backed\n", 0o755);
    std::fs::hard_link(&linked, dir.path().join("backup-copy.sh")).unwrap();
    let skills = dir.path().join("skills");
    let session = execgate(
        &ws,
        &["run", "--skills", skills.to_str().unwrap(), "--", "true"],
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("skills = [{:?}]\n", skills.display().to_string()),
    )
    .unwrap();
    let lint = execgate(
        &ws,
        &["policy", "lint", "--config", config.to_str().unwrap()],
    );
    for (what, output) in [("session", session), ("lint", lint)] {
        let stderr = text(&output.stderr);
        let said = |path: &Path, why: &str| {
            stderr.contains(&format!(
                "execgate: warning: skill saver: its script {} {why}",
                path.display()
            ))
        };
        assert!(
            said(&unexecutable, "has a #! line but no execute permission"),
            "{what}: {stderr}"
        );
        assert!(
            said(&linked, "has 2 names (hard links)"),
            "{what}: {stderr}"
        );
        assert!(
            !stderr.contains("good.sh") && !stderr.contains("helpers.py"),
            "{what}: {stderr}"
        );
    }
}

/// Probes 232 and 235: a request's grant over the rules, per-user
/// configuration, the shell's startup files or the repository's `.git`
/// was given without a word, where a skill's or a profile's is warned of;
/// and the next session, which does not know of the request, trusted what
/// the command wrote there (a granted `~/.config` took a git
/// `core.fsmonitor` that the next session's escalated git ran on the host).
#[test]
fn a_requested_grant_over_what_later_sessions_trust_is_warned_of() {
    let (dir, ws) = workspace();
    let proj = dir.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    let rules = proj.join("team.rules");
    std::fs::write(&rules, "").unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config")).unwrap();
    std::fs::write(home.join(".zshrc"), "").unwrap();
    let git = std::fs::canonicalize(ws.join(".git")).unwrap();
    let cases = [
        (
            proj.clone(),
            format!(
                "execgate: warning: {} is writable from this session's sandbox, so the \
                 command, with the permissions it requests, could change the policy of later \
                 sessions",
                rules.display()
            ),
        ),
        (
            home.join(".config"),
            "execgate: warning: the permissions request: programs read their per-user \
             configuration from"
                .to_owned(),
        ),
        (
            home.join(".zshrc"),
            format!(
                "execgate: warning: {} is writable from this session's sandbox, so the \
                 commands run here could plant what your own shell runs at its next start",
                home.join(".zshrc").display()
            ),
        ),
        (
            git.join("hooks"),
            format!(
                "execgate: warning: the permissions request grants write access to {}, in \
                 the repository's {}",
                git.join("hooks").display(),
                git.display()
            ),
        ),
        // Probe 244: two levels above `.git`, which is kept read-only only
        // directly below a writable root (in a read-only session, below).
        (
            std::fs::canonicalize(dir.path()).unwrap(),
            format!(
                "execgate: warning: the permissions request grants write access to {}, above \
                 the repository's {}",
                std::fs::canonicalize(dir.path()).unwrap().display(),
                git.display()
            ),
        ),
    ];
    let last = cases.len() - 1;
    for (index, (granted, warning)) in cases.into_iter().enumerate() {
        let profile = if index == last {
            "read-only"
        } else {
            "workspace-write"
        };
        let name = format!("request-{index}.toml");
        let request = write_request(dir.path(), &name, &granted.display().to_string());
        let output = execgate_with_env(
            &ws,
            &[
                "run",
                "--profile",
                profile,
                "--approval",
                "deny",
                "--rules",
                rules.to_str().unwrap(),
                "--request-permissions",
                request.to_str().unwrap(),
                "--",
                "true",
            ],
            &[
                ("HOME", home.to_str().unwrap()),
                ("XDG_CONFIG_HOME", home.join(".config").to_str().unwrap()),
            ],
        );
        let stderr = text(&output.stderr);
        assert!(stderr.contains(&warning), "{}: {stderr}", granted.display());
        // Where the session writes the repository's own directory, its
        // `.git` is kept read-only: nothing to warn of (review 245).
        assert_eq!(
            stderr.contains("above the repository's"),
            index == last,
            "{stderr}"
        );
    }
}

/// `DIR/NAME`: a permissions request for write access to `granted`.
fn write_request(dir: &Path, name: &str, granted: &str) -> PathBuf {
    let request = dir.join(name);
    std::fs::write(
        &request,
        format!("filesystem = {{ {granted:?} = \"write\" }}\n"),
    )
    .unwrap();
    request
}

/// Probe 244: a request for write access to a directory on `PATH` (or
/// above one, or to a program in one) was granted without a word, though
/// what the command plants there runs outside any sandbox in the user's
/// own shell and in later sessions. Control: a grant beside it.
#[test]
fn a_requested_grant_on_a_path_directory_is_warned_of() {
    let (dir, ws) = workspace();
    let tools = std::fs::canonicalize(dir.path()).unwrap().join("tools");
    let bin = tools.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("tool"), "").unwrap();
    let beside = tools.join("share");
    std::fs::create_dir(&beside).unwrap();
    let below = bin.join("sub");
    std::fs::create_dir(&below).unwrap();
    let path = format!("relative/bin:{}:/usr/bin:/bin", bin.display());
    let cases = [
        (bin.clone(), String::new(), true),
        (
            tools.clone(),
            format!(", which holds {}", bin.display()),
            true,
        ),
        (bin.join("tool"), format!(", in {}", bin.display()), true),
        (beside, String::new(), false),
        // The shell does not look below a directory on `PATH`.
        (below, String::new(), false),
    ];
    for (index, (granted, relation, warned)) in cases.into_iter().enumerate() {
        let name = format!("request-{index}.toml");
        let request = write_request(dir.path(), &name, &granted.display().to_string());
        let output = execgate_with_env(
            &ws,
            &[
                "run",
                "--approval",
                "deny",
                "--request-permissions",
                request.to_str().unwrap(),
                "--",
                "true",
            ],
            &[("PATH", &path)],
        );
        let stderr = text(&output.stderr);
        let warning = format!(
            "execgate: warning: the permissions request grants write access to {}{relation}, \
             a directory on PATH",
            granted.display(),
        );
        assert_eq!(
            stderr.contains(&warning),
            warned,
            "{}: {stderr}",
            granted.display()
        );
        assert_eq!(
            stderr.matches("a directory on PATH").count(),
            usize::from(warned),
            "{stderr}"
        );
    }
}

/// Probe 235: a request to allow a host the session's profile denies was
/// shown, granted and recorded, and the connection refused, with no word:
/// the session's deny entry holds.
#[test]
fn a_requested_host_the_profile_denies_is_warned_of() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.lim]\nextends = \"workspace-write\"\n\
         network = { mode = \"limited\", domains = { \"evil.test\" = \"deny\" } }\n",
    )
    .unwrap();
    let request = dir.path().join("request.toml");
    std::fs::write(
        &request,
        "network = { mode = \"limited\", domains = { \"evil.test\" = \"allow\", \
         \"good.test\" = \"allow\" } }\n",
    )
    .unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--profile",
            "lim",
            "--approval",
            "deny",
            "--request-permissions",
            request.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "execgate: warning: the permissions request allows evil.test, which the profile lim \
             denies: a deny entry holds over every allow entry, so nothing is granted there"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("allows good.test"), "{stderr}");
}

#[test]
fn requested_permissions_widen_one_command_only_when_granted() {
    let (dir, ws) = workspace();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let request = dir.path().join("request.toml");
    std::fs::write(
        &request,
        "justification = \"publish the build\"\nfilesystem = { \"shared\" = \"write\" }\n",
    )
    .unwrap();
    let request = request.to_str().unwrap();
    let log = dir.path().join("audit.jsonl");
    for (mode, code) in [("deny", 1), ("approve", 0)] {
        let output = execgate(
            &ws,
            &[
                "run",
                "--approval",
                mode,
                "--audit-log",
                log.to_str().unwrap(),
                "--request-permissions",
                request,
                "--",
                "touch ../shared/out",
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(code),
            "{mode}: {}",
            text(&output.stderr)
        );
        // A declined request is said, not only seen in the command's failure.
        assert_eq!(
            text(&output.stderr).contains("requested permissions were declined"),
            mode == "deny",
            "{mode}: {}",
            text(&output.stderr)
        );
    }
    assert!(shared.join("out").exists());
    // Probe 118: a grant given to a command's shell left nothing in the
    // audit log, which then read as if the write could not have happened.
    let requests = records_of(&log, "permissions-request");
    let [declined, granted] = requests.as_slice() else {
        panic!("one record per request: {requests:?}");
    };
    let shared = std::fs::canonicalize(&shared).unwrap();
    for (record, outcome) in [(declined, "failure"), (granted, "success")] {
        assert_eq!(record["event"]["outcome"], outcome, "{record}");
        assert_eq!(record["execgate"]["decided_by"], "default", "{record}");
        assert_eq!(
            record["process"]["args"]
                .as_array()
                .unwrap()
                .last()
                .unwrap(),
            "touch ../shared/out",
            "{record}"
        );
        assert_eq!(
            record["execgate"]["justification"], "publish the build",
            "{record}"
        );
        assert!(
            record["execgate"]["grants"]
                .as_array()
                .unwrap()
                .contains(&format!("{}=write", shared.display()).into()),
            "{record}"
        );
    }
    // The summary lists the grant given with the escalations, and (probe
    // 160) the one declined with the denials.
    let summary = execgate(&ws, &["audit", "--summary", log.to_str().unwrap()]);
    let summary = text(&summary.stdout);
    for listed in [
        format!(
            "a command's shell: \"touch ../shared/out\" (grants {}=write",
            shared.display()
        ),
        format!(
            "a command's shell: \"touch ../shared/out\" (grants asked, not given: {}=write",
            shared.display()
        ),
    ] {
        assert!(summary.contains(&listed), "{listed}: {summary}");
    }
    let denials = summary
        .lines()
        .find(|line| line.starts_with("denials"))
        .unwrap_or_default();
    assert!(denials.contains("(1)"), "{summary}");
}

#[test]
fn approval_prompts_on_the_terminal_of_an_interactive_shell() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(&rules, TEAM_RULES).unwrap();
    let binary = env!("CARGO_BIN_EXE_execgate");
    // Each line is typed once what it answers, or follows, is on the
    // terminal: the prompt discards keys typed before its question (review
    // 205: typed on a timer, a slow machine's late question lost its
    // answer). Ctrl-C at the prompt aborts the command that asked, not the
    // session (regression: it reached the shell's own sandbox, in
    // execgate's process group while the prompt held the terminal, and
    // ended it). `$((1))` prints what its echo does not show.
    // A line that answers nothing says so before the choices again (probe
    // 219: they were repeated with no word why).
    let steps: [(&str, &str, usize); 11] = [
        ("touch ../first; print -r -- step$((1))", "[y] once", 1),
        ("a", "step1", 1),
        ("touch ../first; print again=$?", "again=0", 1),
        ("touch ../second", "[y] once", 2),
        ("maybe", "execgate: not an answer", 1),
        ("n", "execgate: denied", 1),
        ("print second=$?", "second=126", 1),
        // The choices were drawn again after "maybe".
        ("touch ../third", "[y] once", 4),
        ("\x03", "aborting the job that asked", 1),
        ("print third=$?", "third=137", 1),
        ("exit", "", 0),
    ];
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{binary} shell --rules {}", rules.display()),
            "/dev/null",
        ])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .env("ZDOTDIR", &ws)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let shown = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = std::thread::spawn({
        let shown = shown.clone();
        let mut stdout = child.stdout.take().unwrap();
        move || {
            let mut buf = [0u8; 4096];
            while let Ok(read @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
                shown.lock().unwrap().extend_from_slice(&buf[..read]);
            }
        }
    });
    let shown_text = || String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    for (line, then, times) in steps {
        std::io::Write::write_all(&mut stdin, format!("{line}\n").as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while shown_text().matches(then).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {then:?} after {line:?}: {}",
                shown_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let seen = shown_text();
    assert_eq!(status.code(), Some(0), "{seen}\n{stderr}");
    assert_eq!(seen.matches("approval needed").count(), 3, "{seen}");
    // What was left set on the terminal is undone before each question (the
    // reset ends with bracketed paste off),
    // and the line of the keys says what they approve.
    assert_eq!(
        seen.replace('\r', "")
            .matches("\x1b[?2004l\n\x1b[J\x1b#5execgate: approval needed")
            .count(),
        3,
        "{seen:?}"
    );
    assert!(
        seen.contains("run /usr/bin/touch with 1 argument? [y] once"),
        "{seen}"
    );
    assert!(seen.contains("team.rules:2: writes files"), "{seen}");
    assert!(seen.contains("again=0"), "{seen}");
    assert!(seen.contains("second=126"), "{seen}");
    // Killed with its process group, as `!` does, and said (probe 118:
    // only the status 137 told).
    assert!(seen.contains("third=137"), "{seen}");
    assert_eq!(
        seen.matches("execgate: aborting the job that asked")
            .count(),
        1,
        "{seen}"
    );
    assert!(dir.path().join("first").exists());
    assert!(!dir.path().join("second").exists());
    assert!(!dir.path().join("third").exists());
}

/// A log other users can change is no record: a session warns when the
/// log's file, its directory or one above is open to them (by its mode, or
/// by its owner),
/// and not for a sticky directory such as `/tmp`, where they cannot
/// remove or rename what is not theirs.
#[test]
fn a_log_other_users_can_change_is_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let nobody = |path: &Path| std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    type Setup = fn(&Path, &Path, &dyn Fn(&Path, u32), &dyn Fn(&Path));
    let cases: [(Setup, Option<&str>); 7] = [
        (|_, _, _, _| {}, None),
        (|_, log, mode, _| mode(log, 0o666), Some("mode 0666")),
        (|_, log, _, owner| owner(log), Some("uid 65534")),
        (|dir, _, mode, _| mode(dir, 0o777), Some("mode 0777")),
        (|dir, _, mode, _| mode(dir, 0o1777), None),
        // Probe 246: a directory above the log's, another user's or open to
        // them, lets them move the log's directory away.
        (
            |dir, _, _, owner| owner(dir.parent().unwrap()),
            Some("the directory above it"),
        ),
        (
            |dir, _, mode, _| mode(dir.parent().unwrap(), 0o777),
            Some("the directory above it"),
        ),
    ];
    for (setup, warned) in cases {
        let (dir, ws) = workspace();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        set_mode(&logs, 0o700);
        let log = logs.join("audit.jsonl");
        std::fs::write(&log, "").unwrap();
        set_mode(&log, 0o600);
        setup(&logs, &log, &set_mode, &nobody);
        let output = execgate(
            &ws,
            &[
                "run",
                "--audit-log",
                log.to_str().unwrap(),
                "--",
                "/bin/true",
            ],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        match warned {
            Some(why) => assert!(
                stderr.contains("can be changed by other users") && stderr.contains(why),
                "{why}: {stderr}"
            ),
            None => assert!(!stderr.contains("other users"), "{stderr}"),
        }
    }
}

/// Probe 166: a log and lock file found open to others were kept so,
/// silently: others read every record, and held the lock to stop every
/// session sharing the log. The lock is made owner-only; a log others can
/// read, and a lock file of another user's, are warned of.
#[test]
fn a_log_and_lock_open_to_others_are_closed_or_warned_of() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (dir, ws) = workspace();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (log, lock) = (logs.join("audit.jsonl"), logs.join("audit.jsonl.lock"));
    for file in [&log, &lock] {
        std::fs::write(file, "").unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let run = || {
        let output = execgate(
            &ws,
            &[
                "run",
                "--audit-log",
                log.to_str().unwrap(),
                "--",
                "/bin/true",
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        text(&output.stderr)
    };
    let stderr = run();
    assert!(
        stderr.contains("can be read by other users (mode 0644)"),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
    std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
    let stderr = run();
    assert!(
        stderr.contains("lock file") && stderr.contains("belongs to uid 65534"),
        "{stderr}"
    );
}

/// The default log's directories are made owner-only, whatever the umask:
/// under a umask of 000 they were made mode 0777.
#[test]
fn the_default_logs_directories_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, ws) = workspace();
    let state = dir.path().join("state-home");
    let output = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" run -- /bin/true"])
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    for made in [state.clone(), state.join("execgate")] {
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}", made.display());
    }
}

#[test]
fn audit_follow_goes_on_across_a_rotation() {
    let (dir, ws) = workspace();
    let recorded = dir.path().join("recorded.jsonl");
    let output = execgate(
        &ws,
        &[
            "run",
            "--audit-log",
            recorded.to_str().unwrap(),
            "--",
            "/bin/echo one; /bin/echo two",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines: Vec<String> = std::fs::read_to_string(&recorded)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.len() >= 2);
    let live = dir.path().join("live.jsonl");
    std::fs::write(&live, "").unwrap();
    let mut follower = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["audit", "--follow", "--json", live.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pause = || std::thread::sleep(std::time::Duration::from_millis(600));
    let append = |line: &str| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    };
    pause();
    append(&lines[0]);
    pause();
    // Rotate as the log does: rename, then a new file.
    std::fs::rename(&live, dir.path().join("live.jsonl.1")).unwrap();
    std::fs::write(&live, "").unwrap();
    append(&lines[1]);
    pause();
    pause();
    follower.kill().unwrap();
    let output = follower.wait_with_output().unwrap();
    let seen = text(&output.stdout);
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [lines[0].as_str(), lines[1].as_str()],
        "{seen}"
    );
}

/// `execgate audit --follow --json LOG`, on a log that exists, given time
/// to open it and reach its end.
fn follow_json(log: &Path) -> std::process::Child {
    let follower = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["audit", "--follow", "--json", log.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    follower
}

/// Appends a refused request numbered `id` through the audit crate's own
/// writer, which rotates as configured.
fn append_refused(log: &execgate_audit::AuditLog, id: u64) {
    use execgate_audit::{AuditRecord, RecordOptions};
    use execgate_core_bridge::server::SessionEvent;
    let event = SessionEvent::RequestRefused {
        request_id: Some(id),
        reason: format!("refused {id}"),
        requester: None,
        asked: None,
    };
    let record = AuditRecord::of(
        &event,
        "s1",
        std::time::SystemTime::now(),
        &RecordOptions::default(),
    );
    log.append(&record, false).unwrap();
}

/// Stops `child` (SIGSTOP) while `during` runs, then lets it go on: what
/// `during` does happens, for the child, between two of its looks.
fn while_stopped(child: &std::process::Child, during: impl FnOnce()) {
    use nix::sys::signal::{kill, Signal};
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    during();
    kill(pid, Signal::SIGCONT).unwrap();
}

/// The request ids of a follower's `--json` lines, once it has had time
/// to read what was written, and what it said on stderr.
fn followed_ids(mut follower: std::process::Child) -> (Vec<u64>, String) {
    std::thread::sleep(std::time::Duration::from_millis(1200));
    follower.kill().unwrap();
    let output = follower.wait_with_output().unwrap();
    let ids = text(&output.stdout)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["request_id"].as_u64().unwrap()
        })
        .collect();
    (ids, text(&output.stderr))
}

/// Records appended to the followed file just before it rotates, and whole
/// files rotated between two looks, are read (in order, each once) before
/// the new log is. With `keep` too small for the rotations between two
/// looks, files are deleted before the follower could read them: it says
/// so, and shows all that is left.
#[test]
fn audit_follow_reads_every_file_rotated_between_two_looks() {
    use execgate_audit::{AuditLog, Rotation};
    // (keep, the records shown, whether a file was deleted unread). With
    // keep = 1, 2 goes to the followed file's successor, which 3's
    // rotation moves to audit.jsonl.1 and 4's deletes.
    for (keep, shown, deleted) in [(8, &[1, 2, 3, 4, 5][..], false), (1, &[1, 3, 4, 5], true)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        // Every record but the first starts a file of its own.
        let log = AuditLog::open(&path, Rotation { max_bytes: 1, keep }).unwrap();
        let follower = follow_json(&path);
        append_refused(&log, 1);
        std::thread::sleep(std::time::Duration::from_millis(600));
        while_stopped(&follower, || {
            for id in 2..=4 {
                append_refused(&log, id);
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(600));
        append_refused(&log, 5);
        let (ids, stderr) = followed_ids(follower);
        assert_eq!(ids, shown, "keep {keep}: {stderr}");
        if deleted {
            assert!(
                stderr.contains("audit.jsonl.1") && stderr.contains("deleted"),
                "{stderr}"
            );
        } else {
            assert_eq!(stderr, "");
        }
    }
}

/// A log truncated in place under a follower (by `copytruncate`, by hand,
/// or by someone covering tracks) is said to be, and read again from its
/// start: whether it is shorter than what was read of it when the follower
/// looks, or has grown past that again with other records.
#[test]
fn audit_follow_says_when_the_log_was_truncated_and_reads_it_again() {
    use execgate_audit::{AuditLog, Rotation};
    for after in [&[3][..], &[3, 4, 5, 6]] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(
            &path,
            Rotation {
                max_bytes: 1 << 20,
                keep: 1,
            },
        )
        .unwrap();
        let follower = follow_json(&path);
        append_refused(&log, 1);
        append_refused(&log, 2);
        std::thread::sleep(std::time::Duration::from_millis(600));
        while_stopped(&follower, || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            for &id in after {
                append_refused(&log, id);
            }
        });
        let (ids, stderr) = followed_ids(follower);
        let expected: Vec<u64> = [1, 2].iter().chain(after).copied().collect();
        assert_eq!(ids, expected, "{stderr}");
        assert!(stderr.contains("truncated or rewritten"), "{stderr}");
        assert!(!stderr.contains("not an audit record"), "{stderr}");
    }
}

/// Rotation leaves no gap among a log's numbered files: one missing in
/// the middle was removed, and its records with it. The reader says which
/// and exits 1, as for lines that are not records; the files there are
/// still read.
#[test]
fn audit_says_which_rotated_file_is_missing_from_the_middle() {
    use execgate_audit::{AuditLog, Rotation};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Every record but the first starts a file of its own.
    let log = AuditLog::open(
        &path,
        Rotation {
            max_bytes: 1,
            keep: 8,
        },
    )
    .unwrap();
    for id in 1..=4 {
        append_refused(&log, id);
    }
    // audit.jsonl.3 holds 1, .2 holds 2, .1 holds 3, the log 4.
    std::fs::remove_file(dir.path().join("audit.jsonl.2")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[audit]\nlog = {:?}\n", path)).unwrap();
    let read = || {
        let output = Command::new(env!("CARGO_BIN_EXE_execgate"))
            .args(["audit", "--json", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        let ids: Vec<u64> = text(&output.stdout)
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["request_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        (ids, stderr, output.status.code())
    };
    let (ids, stderr, code) = read();
    assert_eq!(ids, [1, 3, 4], "{stderr}");
    assert!(
        stderr.contains("audit.jsonl.2") && stderr.contains("missing"),
        "{stderr}"
    );
    assert_eq!(code, Some(1), "{stderr}");
    // Probe 166: a FIFO (or a link) at a rotated file's name hid the whole
    // history. That file is named, the rest read.
    nix::unistd::mkfifo(
        &dir.path().join("audit.jsonl.2"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (ids, stderr, code) = read();
    assert_eq!(ids, [1, 3, 4], "{stderr}");
    assert!(stderr.contains("audit.jsonl.2 cannot be read"), "{stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    // Named, a FIFO with no writer held the reader for good.
    let mut named = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .arg("audit")
        .arg(dir.path().join("audit.jsonl.2"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while named.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            named.kill().unwrap();
            panic!("execgate audit FIFO still waits");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The user's case, for real: sessions write a log that rotates under a
/// follower, and a reviewer reads it afterwards without naming files.
/// Every record is followed, once, and the whole history read back,
/// the denial in a rotated file included.
#[test]
fn audit_without_a_file_reads_the_rotated_files_and_follow_misses_none() {
    let (dir, ws) = workspace();
    let logs = dir.path().join("log");
    let log = logs.join("audit.jsonl");
    let rules = dir.path().join("deny.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"uname\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "rules = [{:?}]\n[audit]\nlog = {:?}\nmax_bytes = 65536\n",
            rules.to_str().unwrap(),
            log.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = execgate(&ws, &["run", "--config", config, "--", "uname; /bin/true"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let before = std::fs::read_to_string(&log).unwrap().lines().count();

    // Into files: a pipe read only at the end would fill and stop it.
    let (followed_out, followed_err) = (dir.path().join("f.out"), dir.path().join("f.err"));
    let mut follower = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["audit", "--config", config, "--follow", "--json"])
        .stdout(std::fs::File::create(&followed_out).unwrap())
        .stderr(std::fs::File::create(&followed_err).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    // About 16 KiB a session: a rotation every fourth one.
    for _ in 0..16 {
        let output = execgate(
            &ws,
            &[
                "run",
                "--config",
                config,
                "--",
                "for i in {1..12}; do /bin/true h$i; done",
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    std::thread::sleep(std::time::Duration::from_millis(1000));
    follower.kill().unwrap();
    follower.wait().unwrap();

    // The history on disk, oldest file first.
    let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name()?.to_str()?.to_owned();
            let number = match name.strip_prefix("audit.jsonl") {
                Some("") => 0,
                Some(suffix) => suffix.strip_prefix('.')?.parse().ok()?,
                None => return None,
            };
            Some((number, path))
        })
        .collect();
    files.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
    assert!(files.len() >= 3, "{files:?}");
    let history: Vec<String> = files
        .iter()
        .flat_map(|(_, path)| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        history
            .iter()
            .filter(|line| line.contains("\"h12\""))
            .count(),
        16
    );
    // Lines compared by their time stamps (unique here): whole, they
    // would fill the screen.
    let stamps = |lines: &[&str]| -> Vec<String> {
        lines
            .iter()
            .map(|line| {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                record["@timestamp"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let history: Vec<&str> = history.iter().map(String::as_str).collect();
    let output = execgate(&ws, &["audit", "--config", config, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let read = text(&output.stdout);
    let read_lines: Vec<&str> = read.lines().collect();
    assert_eq!(stamps(&read_lines), stamps(&history));
    assert_eq!(read_lines, history);
    let output = execgate(
        &ws,
        &["audit", "--config", config, "--json", "--decision", "deny"],
    );
    let denied: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(denied.len(), 1, "{}", text(&output.stderr));
    assert_eq!(denied[0]["process"]["executable"], "/usr/bin/uname");

    let followed = std::fs::read_to_string(&followed_out).unwrap();
    let followed_lines: Vec<&str> = followed.lines().collect();
    assert_eq!(
        stamps(&followed_lines),
        stamps(&history[before..]),
        "{}",
        std::fs::read_to_string(&followed_err).unwrap()
    );
    assert_eq!(followed_lines, history[before..]);
}

/// Output that cannot be written is an error (standard output open for
/// reading only: every write fails with `EBADF`, which `std::io::Stdout`
/// takes for done); a reader that goes away is not (see above).
#[test]
fn audit_fails_when_its_standard_output_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    network_log(&log);
    let binary = env!("CARGO_BIN_EXE_execgate");
    let audit = |redirect: &str| {
        Command::new("sh")
            .args([
                "-c",
                &format!("exec \"$0\" audit --json \"$1\" {redirect}"),
                binary,
                log.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    // (A closed descriptor 1, `>&-`, is /dev/null by the time execgate
    // runs: Rust's runtime opens it there.)
    {
        let redirect = "1</dev/null";
        let output = audit(redirect);
        assert_eq!(
            output.status.code(),
            Some(125),
            "{redirect}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains("standard output"),
            "{redirect}: {}",
            text(&output.stderr)
        );
    }
    let output = audit(">/dev/null");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// Whether `pid` is still a live (not zombie) process whose command line
/// is exactly `argv`.
fn still_running(pid: i32, argv: &[&str]) -> bool {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .unwrap_or("");
    cmdline == wanted && state != "Z"
}

/// The records of the audit log `audit` whose action is `action` (none
/// while there is no log; a line being written is left out).
fn records_of(audit: &Path, action: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["event"]["action"] == action)
        .collect()
}

/// The pids of the escalated children started so far, from the audit log.
fn started_pids(audit: &Path) -> Vec<i32> {
    records_of(audit, "start")
        .into_iter()
        .filter_map(|record| record["process"]["pid"].as_i64())
        .map(|pid| i32::try_from(pid).unwrap())
        .collect()
}

/// `execgate run` holding two escalated, unsandboxed children, ended by
/// `signal` from outside, `rounds` times: each time the exit status names
/// the signal, the audit log records the session's end by it, and no child
/// is left running a second later, checked by pid and by command line.
/// With a cgroup, the second child is `setsid sleep`: a process in a
/// session of its own, which only the cgroup reaches once `run` is killed.
fn signalled_run_leaves_nothing(signal: nix::sys::signal::Signal, scope: &str, rounds: u32) {
    use std::time::{Duration, Instant};
    let (dir, ws) = workspace();
    let rules = dir.path().join("sleep.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"sleep\"])\nprefix_rule(pattern = [\"setsid\"])\n",
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_execgate");
    for round in 0..rounds {
        let audit = dir.path().join(format!("audit-{round}.jsonl"));
        // Unique to this test: parallel tests look for their own sleeps.
        let offset = if scope == "cgroup" { 0 } else { 100 };
        let duration = format!("{}.{round}", 3000 + offset + signal as i32);
        let leaver = if scope == "cgroup" { "setsid " } else { "" };
        let script = format!("sleep {duration} & {leaver}sleep {duration} & wait");
        let mut run = Command::new(binary)
            .args(["run", "--rules"])
            .arg(&rules)
            .arg("--audit-log")
            .arg(&audit)
            .args(["--", &script])
            .current_dir(&ws)
            .env("XDG_CONFIG_HOME", ws.join("no-config"))
            .env("EXECGATE_SCOPE", scope)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let pids = loop {
            let pids = started_pids(&audit);
            if pids.len() == 2 {
                break pids;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: children did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let run_pid = nix::unistd::Pid::from_raw(i32::try_from(run.id()).unwrap());
        nix::sys::signal::kill(run_pid, signal).unwrap();
        let status = run.wait().unwrap();
        if signal == nix::sys::signal::Signal::SIGKILL {
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(9)
            );
        } else {
            // Ended by the signal, once the session is (probe 219: a bash
            // loop took an exit with 130 for a Ctrl-C handled, and went
            // on), with no core.
            let ended = std::os::unix::process::ExitStatusExt::signal(&status);
            assert_eq!(ended, Some(signal as i32), "round {round}: {status}");
            assert!(
                !std::os::unix::process::ExitStatusExt::core_dumped(&status),
                "round {round}: {status}"
            );
            let log = std::fs::read_to_string(&audit).unwrap();
            assert!(
                log.lines().any(|line| line.contains("\"session-end\"")
                    && line.contains(&format!("\"signal\":{}", signal as i32))),
                "round {round}: no session-end record: {log}"
            );
        }
        // By pid (the children the audit log names), and by command line
        // (what `setsid` started under a pid of its own). After SIGKILL the
        // warden kills them in its own time: 1 s was too short on a slow
        // machine for the same wait in tests/suite/lifetime.rs (ci-75).
        let deadline = Instant::now() + Duration::from_secs(5);
        let survivors = loop {
            let mut survivors: Vec<String> = pids
                .iter()
                .copied()
                .filter(|pid| {
                    still_running(*pid, &["/usr/bin/sleep", &duration])
                        || still_running(*pid, &["sleep", &duration])
                })
                .map(|pid| pid.to_string())
                .collect();
            survivors.extend(processes_running(&["sleep", &duration]));
            survivors.extend(processes_running(&["/usr/bin/sleep", &duration]));
            if survivors.is_empty() || Instant::now() >= deadline {
                break survivors;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            survivors.is_empty(),
            "{scope}, round {round}: {signal} left {survivors:?} running after a second"
        );
    }
}

/// Probe 217: a signal ignored when execgate started (`nohup`'s `SIGHUP`,
/// the `SIGINT` a script's shell ignores for its background jobs) was
/// taken over all the same: a hang-up ended a `nohup execgate run`. It
/// stays ignored, as it would for any program the shell started.
#[test]
fn a_signal_ignored_at_the_start_stays_ignored() {
    use std::time::{Duration, Instant};
    let (_dir, ws) = workspace();
    let binary = env!("CARGO_BIN_EXE_execgate");
    for (signal, name) in [
        (nix::sys::signal::Signal::SIGHUP, "HUP"),
        (nix::sys::signal::Signal::SIGINT, "INT"),
    ] {
        let started = ws.join(format!("started-{name}"));
        let script = format!(
            "trap '' {name}; exec {binary} run -- 'touch {}; sleep 1; echo done'",
            started.display()
        );
        let run = Command::new("bash")
            .args(["-c", &script])
            .current_dir(&ws)
            .env("XDG_CONFIG_HOME", ws.join("no-config"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !started.exists() {
            assert!(
                Instant::now() < deadline,
                "{name}: the command did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(run.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
        let output = run.wait_with_output().unwrap();
        assert_eq!(
            (output.status.code(), text(&output.stdout).as_str()),
            (Some(0), "done\n"),
            "{name}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn sigterm_of_run_ends_the_session_and_kills_its_escalated_children() {
    signalled_run_leaves_nothing(nix::sys::signal::Signal::SIGTERM, "cgroup", 20);
}

#[test]
fn sigint_of_run_ends_the_session_and_kills_its_escalated_children() {
    signalled_run_leaves_nothing(nix::sys::signal::Signal::SIGINT, "cgroup", 20);
}

#[test]
fn sighup_of_run_ends_the_session_and_kills_its_escalated_children() {
    signalled_run_leaves_nothing(nix::sys::signal::Signal::SIGHUP, "cgroup", 20);
}

/// A probe: Ctrl-\ (`SIGQUIT`), and `SIGUSR1`, `SIGUSR2` or `SIGALRM` from
/// outside, killed `execgate run` by their default action: no
/// `session-end` record, and each escalated child's start without its
/// exit. They end the session as `SIGTERM` does.
#[test]
fn other_ending_signals_of_run_end_the_session_too() {
    use nix::sys::signal::Signal;
    for signal in [
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
    ] {
        signalled_run_leaves_nothing(signal, "cgroup", 2);
    }
}

#[test]
fn sigkill_of_run_leaves_no_escalated_child() {
    signalled_run_leaves_nothing(nix::sys::signal::Signal::SIGKILL, "cgroup", 20);
}

#[test]
fn without_a_cgroup_the_warden_still_kills_the_escalated_groups() {
    use nix::sys::signal::Signal;
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        signalled_run_leaves_nothing(signal, "process-groups", 5);
    }
}

/// The pids of processes whose command line starts with `program` and
/// contains every one of `parts`.
fn pids_with(program: &str, parts: &[&str]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline =
                String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).ok()?)
                    .replace('\0', " ");
            (cmdline.starts_with(program) && parts.iter().all(|part| cmdline.contains(part)))
                .then_some(pid)
        })
        .collect()
}

#[test]
fn signals_sent_to_an_interactive_shell_end_its_session() {
    use nix::sys::signal::Signal;
    use std::time::{Duration, Instant};
    let (dir, ws) = workspace();
    let rules = dir.path().join("sleep.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"sleep\"])\n").unwrap();
    let binary = env!("CARGO_BIN_EXE_execgate");
    for (round, signal) in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT]
        .into_iter()
        .enumerate()
    {
        let audit = dir.path().join(format!("shell-{round}.jsonl"));
        let seconds = format!("5005.{round}");
        let mut terminal = Command::new("script")
            .args([
                "-qec",
                &format!(
                    "{binary} shell --rules {} --audit-log {}",
                    rules.display(),
                    audit.display()
                ),
                "/dev/null",
            ])
            .current_dir(&ws)
            .env("XDG_CONFIG_HOME", ws.join("no-config"))
            .env("ZDOTDIR", &ws)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = terminal.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, format!("sleep {seconds} &\n").as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let pids = loop {
            let pids = started_pids(&audit);
            if !pids.is_empty() {
                break pids;
            }
            assert!(Instant::now() < deadline, "{signal}: sleep did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let audit_text = audit.display().to_string();
        // execgate itself runs threads; a child it forked that has not
        // executed yet (or the terminal's shell that started it) does not.
        let owner: Vec<i32> = pids_with(binary, &[" shell ", &audit_text])
            .into_iter()
            .filter(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
            })
            .collect();
        assert_eq!(owner.len(), 1, "{owner:?}");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(owner[0]), signal).unwrap();
        drop(stdin);
        let output = terminal.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(128 + signal as i32),
            "{signal}: {}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        let log = std::fs::read_to_string(&audit).unwrap();
        assert!(
            log.lines().any(|line| line.contains("\"session-end\"")
                && line.contains(&format!("\"signal\":{}", signal as i32))),
            "{signal}: {log}"
        );
        assert!(
            !still_running(pids[0], &["/usr/bin/sleep", &seconds]),
            "{signal}: the escalated sleep outlived the shell's session"
        );
    }
}

/// Probe 198: a parent that ignored `SIGCHLD` passed that on across its
/// exec, and `execgate run` hung once its command had ended (bubblewrap,
/// inheriting it, never saw its own child end).
#[test]
fn a_parent_that_ignores_sigchld_does_not_hang_a_run() {
    let (_dir, ws) = workspace();
    let output = Command::new("timeout")
        .args(["60", "perl", "-e", "$SIG{CHLD} = 'IGNORE'; exec @ARGV"])
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--", "print hi; exit 3"])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(output.stdout, b"hi\n", "{stderr}");
}

/// A warden killed from outside cannot keep its promise, so the session
/// refuses further escalations (and says why) instead of starting children
/// that nothing would end if `execgate` died.
#[test]
fn a_killed_warden_stops_escalations() {
    use std::io::BufRead;
    let (dir, ws) = workspace();
    let rules = dir.path().join("sleep.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"sleep\"])\n").unwrap();
    let go = ws.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let binary = env!("CARGO_BIN_EXE_execgate");
    let mut run = Command::new(binary)
        .args(["run", "--rules"])
        .arg(&rules)
        .args([
            "--",
            "sleep 0.01 && print first; : < go; sleep 0.01; print status=$?",
        ])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(run.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "first\n");
    let owner = run.id().to_string();
    let warden = pids_with("execgate-warden", &[])
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rfind(')')
                    .and_then(|end| stat[end + 1..].split_whitespace().nth(1))
                    == Some(owner.as_str())
            })
        })
        .expect("execgate runs a warden");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(warden),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // kill() returns before the warden has died; the promise is about a
    // warden that has gone (a zombie or reaped), so wait for that.
    let gone = || {
        std::fs::read_to_string(format!("/proc/{warden}/stat")).map_or(true, |stat| {
            stat.rfind(')')
                .and_then(|end| stat[end + 1..].split_whitespace().next())
                == Some("Z")
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gone() {
        assert!(
            std::time::Instant::now() < deadline,
            "the warden outlived SIGKILL"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::write(&go, b"").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    run.wait().unwrap();
    assert_eq!(rest, "status=126\n", "{stderr}");
    assert!(stderr.contains("warden"), "{stderr}");

    // Nobody removed the dead owner's cgroup; the next execgate does.
    let doctor = execgate(&ws, &["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(report["session_scope"], "cgroup", "{report}");
    let probe = Path::new(report["session_scope_detail"].as_str().unwrap());
    let abandoned = probe.parent().unwrap().join(format!("execgate-{owner}"));
    assert!(!abandoned.exists(), "{} was left", abandoned.display());
}

/// A log holding connections through the proxy beside other records,
/// written by the audit crate itself.
fn network_log(path: &Path) {
    use execgate_audit::{AuditLog, AuditRecord, RecordOptions, Rotation};
    use execgate_core_bridge::server::{
        NetworkDecidedBy, NetworkEvent, RuleRef, SessionEnd, SessionEvent,
    };
    use execgate_network_proxy::{
        ConnectRequest, ConnectionOutcome, ConnectionReport, Destination, NonPublicAddresses,
        Protocol, Verdict,
    };
    let request = |host: &str, port, protocol| ConnectRequest {
        destination: Destination::parse(host).unwrap(),
        port,
        protocol,
    };
    let crates = request("crates.io", 443, Protocol::Https);
    let by_list = NetworkDecidedBy::List {
        pattern: "**.crates.io".into(),
    };
    let by_rule = NetworkDecidedBy::Rule(RuleRef {
        id: "team.rules:2".into(),
        justification: Some("paste site".into()),
    });
    let allowed = Verdict::Allow(NonPublicAddresses::Refuse);
    let events = [
        SessionEvent::RequestRefused {
            request_id: Some(1),
            reason: "malformed request".into(),
            requester: None,
            asked: None,
        },
        SessionEvent::Network(NetworkEvent::decided(&crates, &allowed, &by_list, Some(2))),
        SessionEvent::Network(NetworkEvent::closed(
            &ConnectionReport {
                request: Some(crates.clone()),
                outcome: ConnectionOutcome::Relayed {
                    address: "127.0.0.1:443".parse().unwrap(),
                    bytes_sent: 300,
                    bytes_received: 9000,
                },
            },
            Some(&by_list),
            Some(2),
        )),
        SessionEvent::Network(NetworkEvent::decided(
            &request("crates.io", 80, Protocol::Http),
            &allowed,
            &by_list,
            Some(3),
        )),
        SessionEvent::Network(NetworkEvent::decided(
            &request("paste.example", 443, Protocol::Https),
            &Verdict::Deny {
                reason: "forbidden by network rule at team.rules:2: paste site".into(),
            },
            &by_rule,
            Some(4),
        )),
        SessionEvent::Network(NetworkEvent::closed(
            &ConnectionReport {
                request: None,
                outcome: ConnectionOutcome::Refused {
                    reason: "not HTTP: \u{1b}[2J".into(),
                },
            },
            None,
            None,
        )),
        SessionEvent::Ended {
            reason: SessionEnd::Closed,
            running: 0,
            processes: None,
            requests: 0,
        },
    ];
    let log = AuditLog::open(path, Rotation::default()).unwrap();
    for event in &events {
        let record = AuditRecord::of(
            event,
            "s1",
            std::time::SystemTime::now(),
            &RecordOptions::default(),
        );
        log.append(&record, false).unwrap();
    }
}

#[test]
fn audit_network_shows_only_connections_and_summary_counts_them_per_host() {
    let (dir, ws) = workspace();
    let log = dir.path().join("network.jsonl");
    network_log(&log);
    let log = log.to_str().unwrap();

    let output = execgate(&ws, &["audit", "--network", "--json", log]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let actions: Vec<String> = text(&output.stdout)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["event"]["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "network-decision",
            "network-close",
            "network-decision",
            "network-decision",
            "network-close"
        ]
    );

    let output = execgate(&ws, &["audit", "--network", log]);
    let table = text(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[1].contains("https crates.io:443")
            && lines[1].contains("[domains \"**.crates.io\"]")
            && lines[1].contains("via 127.0.0.1, 300 bytes sent, 9000 received"),
        "{table}"
    );
    assert!(
        lines[3].contains("deny") && lines[3].contains("[team.rules:2]"),
        "{table}"
    );
    // A reason the sandbox's client chose cannot drive the terminal.
    assert!(!table.contains('\u{1b}'), "{table:?}");

    let output = execgate(&ws, &["audit", "--network", "--decision", "deny", log]);
    assert_eq!(text(&output.stdout).lines().count(), 1);

    let output = execgate(&ws, &["audit", "--summary", "--json", log]);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        summary["per_host"],
        serde_json::json!({
            "crates.io": {"allowed": 2},
            "paste.example": {"denied": 1},
            "?": {"refused": 1}
        })
    );
    let output = execgate(&ws, &["audit", "--summary", log]);
    let table = text(&output.stdout);
    assert!(
        table.contains("connections per host:\n")
            && table.contains("  crates.io  allowed 2\n")
            && table.contains("  paste.example  denied 1\n"),
        "{table}"
    );
}

/// The audit log is the reviewers': a sandboxed command sees an empty
/// directory where it lies (so it cannot read it, nor hold its lock),
/// even with the log inside the writable working directory, as here.
#[test]
fn the_sandbox_sees_no_audit_log() {
    let (_dir, ws) = workspace();
    let output = execgate(
        &ws,
        &[
            "run",
            "--",
            "ls -A state/execgate; cat state/execgate/audit.jsonl.lock && echo readable",
        ],
    );
    let stdout = text(&output.stdout);
    assert!(!stdout.contains("audit"), "{stdout}");
    assert!(!stdout.contains("readable"), "{stdout}");
    // The log itself was written, outside the sandbox.
    let log = std::fs::read_to_string(ws.join("state/execgate/audit.jsonl")).unwrap();
    assert!(log.contains("\"decision\""), "{log}");
}

/// `execgate ARGS` with stdout going to `stdout` (stderr captured).
fn execgate_writing_to(cwd: &Path, args: &[&str], stdout: std::process::Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(args)
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", cwd.join("no-config"))
        .env("XDG_STATE_HOME", cwd.join("state"))
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

/// Regression: a rule or a `host_executable` pin on a symlink, or a rule
/// on a name found in `PATH` as a link to a program of another name, never
/// matches (a session decides on the canonical path, and never follows the
/// rule's link), and lint said nothing about it.
#[test]
fn policy_lint_names_symlinks_and_missing_paths_a_session_never_sees() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    // As Debian's /usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk.
    let mawk = base.join("mawk");
    std::fs::write(&mawk, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&mawk, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let alternative = base.join("alternative-awk");
    std::os::unix::fs::symlink(&mawk, &alternative).unwrap();
    let awk = base.join("awk");
    std::os::unix::fs::symlink(&alternative, &awk).unwrap();
    let (awk, mawk) = (awk.to_str().unwrap(), mawk.to_str().unwrap());
    let missing = base.join("no-such-program");
    let missing = missing.to_str().unwrap();
    let rules = base.join("paths.rules");
    std::fs::write(
        &rules,
        format!(
            "prefix_rule(pattern = [\"{awk}\"], decision = \"forbidden\")\n\
             host_executable(name = \"awk\", paths = [\"{awk}\"])\n\
             prefix_rule(pattern = [\"{missing}\"], decision = \"forbidden\")\n\
             prefix_rule(pattern = [\"{mawk}\", \"-f\"], decision = \"forbidden\")\n\
             prefix_rule(pattern = [\"awk\"], decision = \"forbidden\")\n\
             prefix_rule(pattern = [\"{missing}\\nwarning: fake\"], decision = \"forbidden\")\n"
        ),
    )
    .unwrap();
    let rules = rules.to_str().unwrap();

    // Matching does not follow the rule's link, but a `forbidden` rule on
    // the path as found holds (probe 142), and so does one on its name.
    let output = execgate(
        &ws,
        &["policy", "check", "--rules", rules, "--as-run", "--", awk],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["decision"], "forbidden", "{json}");
    // Run as mawk, nothing on awk reaches it.
    let output = execgate(
        &ws,
        &["policy", "check", "--rules", rules, "--as-run", "--", mawk],
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["decision"], serde_json::Value::Null, "{json}");
    // Found by a path that climbs to the link, as a session decides (probe
    // 238: the rule on the link was passed over).
    std::fs::create_dir(base.join("sub")).unwrap();
    let climbing = format!("{}/sub/../awk", base.display());
    let on_the_link = base.join("link.rules");
    std::fs::write(
        &on_the_link,
        format!("prefix_rule(pattern = [\"{awk}\"], decision = \"forbidden\")\n"),
    )
    .unwrap();
    let on_the_link = on_the_link.to_str().unwrap();
    let output = execgate(
        &ws,
        &[
            "policy",
            "check",
            "--rules",
            on_the_link,
            "--as-run",
            "--",
            &climbing,
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["decision"], "forbidden", "{json}");

    // `awk` as the shell finds it in this `PATH`.
    let search_path = base.to_str().unwrap();
    let output = execgate_with_env(
        &ws,
        &["policy", "lint", "--rules", rules],
        &[("PATH", search_path)],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!(
                "{rules}:1: warning: {awk} is a symlink to {mawk}: a session decides on the \
                 canonical path, so this rule forbids it only when it is run by this path; \
                 write \"{mawk}\" to forbid it however it is run [{awk}]"
            ),
            format!(
                "{rules}:2: warning: host_executable path {awk} is a symlink to {mawk}: a \
                 session decides on the canonical path, named mawk, so neither this pin nor \
                 the allow and prompt rules on awk ever match it; pin host_executable(name = \"mawk\", paths = \
                 [\"{mawk}\"]) and write the rules on mawk, or write them on \"{mawk}\" \
                 [host_executable name=awk path={awk}]"
            ),
            format!(
                "{rules}:3: warning: {missing} does not exist on this machine: a session never \
                 sees it here [{missing}]"
            ),
            format!(
                "{rules}:5: warning: awk is {awk} here, which resolves to {mawk}, named mawk: \
                 this rule forbids it where the shell finds it as awk, not when it is run as \
                 mawk or by another link; write it on mawk (or \"{mawk}\") to forbid it by \
                 every name [awk]"
            ),
            // A line break in a pattern is shown escaped: the finding
            // stays one line, and no line of it passes for another's.
            format!(
                "{rules}:6: warning: {missing}\\nwarning: fake does not exist on this \
                 machine: a session never sees it here [{missing}\\nwarning: fake]"
            ),
            format!(
                "{rules}:6: warning: program \"{missing}\\nwarning: fake\" has whitespace in \
                 its name, so this rule matches no program as the shell splits a command \
                 line; a pattern takes one word per token (write [\"git\", \"push\"], not \
                 [\"git push\"]) [{missing}\\nwarning: fake]"
            ),
        ],
    );
    assert!(
        text(&output.stderr).contains("6 warning(s), 0 error(s)"),
        "{}",
        text(&output.stderr)
    );
}

/// Probe 126: lint said a rule on `ld-linux-x86-64.so.2` matches nothing,
/// as no file of that name is in `PATH`; but `ld.so` in `PATH` is a link
/// to it, and a session, which looks rules up by the program's own name,
/// matches the rule when `ld.so` runs. A name reached through a link in
/// `PATH` is found; one reached nowhere is still named.
#[test]
fn policy_lint_finds_a_program_reached_only_through_a_link_in_path() {
    let (dir, ws) = workspace();
    let real = dir.path().join("lib").join("real-tool-9");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let search_path = path_with_programs(dir.path(), &[]);
    std::os::unix::fs::symlink(&real, Path::new(&search_path).join("tool")).unwrap();
    let rules = dir.path().join("linked.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"real-tool-9\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"real-tool-8\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let output = execgate_with_env(
        &ws,
        &["policy", "lint", "--rules", rules],
        &[("PATH", &search_path)],
    );
    let stdout = text(&output.stdout);
    let warned: Vec<&str> = stdout
        .lines()
        .map(|line| line.split(": warning: ").next().unwrap_or_default())
        .collect();
    assert_eq!(warned, [format!("{rules}:2")], "{stdout}");
    assert!(
        stdout.contains("\"real-tool-8\" is not found in PATH"),
        "{stdout}"
    );
}

/// A probe's rules on `gti`, `"rm "` and a Cyrillic `rм` passed lint with
/// exit 0: none matches what a person types. Lint names each, the first
/// from the `PATH` it runs with.
#[test]
fn policy_lint_names_programs_not_in_path_and_look_alike_tokens() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("typos.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"gti\", \"push\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"rm\", \"-rf \"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"r\u{43c}\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"git\", \"push\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let search_path = path_with_programs(dir.path(), &["git", "rm", "r\u{43c}"]);
    let output = execgate_with_env(
        &ws,
        &["policy", "lint", "--rules", rules],
        &[("PATH", &search_path)],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let warned: Vec<&str> = stdout
        .lines()
        // The forbidden `rm` a `zmodload zsh/files` sidesteps: another
        // test's.
        .filter(|line| !line.contains("zmodload"))
        .map(|line| line.split(": warning: ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        warned,
        [
            format!("{rules}:1"),
            format!("{rules}:2"),
            format!("{rules}:3")
        ],
        "{stdout}"
    );
    assert!(stdout.contains("\"gti\" is not found in PATH"), "{stdout}");
    assert!(
        stdout.contains("argument \"-rf \" has leading or trailing"),
        "{stdout}"
    );
    assert!(stdout.contains("(U+043C)"), "{stdout}");
}

/// Regression: `execution = "nett"` (a typo) passed lint with exit 0, and
/// `execgate run` then refused the rules. The profiles are the config's
/// (--config, else the default file) and the presets.
#[test]
fn policy_lint_reports_execution_profiles_that_are_not_defined() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("profiles.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"cargo\", \"fetch\"], execution = \"net\")\n\
         prefix_rule(pattern = [\"cargo\", \"fetch\"], execution = \"nett\")\n\
         prefix_rule(pattern = [\"uname\"], execution = \"read-only\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.net]\nextends = \"workspace-write\"\nnetwork = \"enabled\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // `cargo` a program of its own name: what it is here (rustup's link,
    // say) is another lint's business.
    let search_path = path_with_programs(dir.path(), &["cargo", "uname"]);
    let lint = |args: &[&str]| execgate_with_env(&ws, args, &[("PATH", &search_path)]);

    let output = lint(&["policy", "lint", "--rules", rules, "--config", config]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    // A preset is a profile: read-only is defined, and only said to
    // confine nothing.
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "{rules}:2: error: execution = \"nett\" cannot be used: unknown profile \"nett\""
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{rules}:3: warning: execution = \"read-only\" confines nothing"
        )),
        "{stdout}"
    );
    assert!(
        text(&output.stderr).contains("1 warning(s), 1 error(s)"),
        "{}",
        text(&output.stderr)
    );
    let output = lint(&[
        "policy", "lint", "--rules", rules, "--config", config, "--json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let first_line = output.stdout.split(|byte| *byte == b'\n').next().unwrap();
    let finding: serde_json::Value = serde_json::from_slice(first_line).unwrap();
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["rule"], format!("{rules}:2"));

    // The default config counts as --config does.
    let default = ws.join("no-config/execgate");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::copy(config, default.join("config.toml")).unwrap();
    let output = lint(&["policy", "lint", "--rules", rules]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert_eq!(text(&output.stdout).lines().count(), 2);
    std::fs::remove_file(default.join("config.toml")).unwrap();

    // Without a config, only the presets are profiles.
    let output = lint(&["policy", "lint", "--rules", rules]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("{rules}:1: error: execution = \"net\"")),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

/// Probe 223: plain `policy check -- /usr/bin/id` said "no match", nothing
/// more, where a session falls back to the rules on `id` and forbids it.
#[test]
fn policy_check_of_a_path_says_when_rules_name_its_name() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("id.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"id\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let check =
        |program: &str| execgate(&ws, &["policy", "check", "--rules", rules, "--", program]);
    let output = check("/usr/bin/id");
    assert_eq!(text(&output.stdout).trim(), r#"{"matchedRules":[]}"#);
    assert!(
        text(&output.stderr).contains("no rule on /usr/bin/id matches, but rules name id"),
        "{}",
        text(&output.stderr)
    );
    let output = check("/usr/bin/uname");
    assert_eq!(text(&output.stderr), "");
}

/// Probe 223: a rules file whose evaluation takes long held `run`,
/// `check` and `lint` with no word of why.
#[test]
fn rules_slow_to_evaluate_are_said_to_be_what_execgate_waits_for() {
    use std::io::BufRead;
    let (dir, ws) = workspace();
    let rules = dir.path().join("slow.rules");
    std::fs::write(&rules, "x = [0 for i in range(1000000000) if False]\n").unwrap();
    // Bounded, so that it fails rather than hangs where nothing is said.
    let mut lint = spawn_piped(
        &ws,
        "timeout",
        &[
            "60",
            env!("CARGO_BIN_EXE_execgate"),
            "policy",
            "lint",
            "--rules",
            rules.to_str().unwrap(),
        ],
    );
    let stderr = std::io::BufReader::new(lint.stderr.take().unwrap());
    let first = stderr
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    // `timeout` passes a SIGTERM on to execgate; a SIGKILL would not.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(lint.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    lint.wait().unwrap();
    assert!(
        first.starts_with(&format!(
            "execgate: the rules ({}) are still being evaluated after 3 s",
            rules.display()
        )),
        "{first}"
    );
}

/// Probe 223: `policy lint --config C --rules F` linted F alone, so a
/// project's `allow` on a path that undoes the config's `forbidden` on
/// the name linted clean, where a session loads both and escalates.
#[test]
fn policy_lint_reads_the_configs_rules_with_the_named_ones() {
    let (dir, ws) = workspace();
    let team = dir.path().join("team.rules");
    std::fs::write(
        &team,
        "prefix_rule(pattern = [\"id\", \"-u\"], decision = \"forbidden\", \
         justification = \"team: never\")\n",
    )
    .unwrap();
    let project = dir.path().join("project.rules");
    std::fs::write(
        &project,
        "prefix_rule(pattern = [\"/usr/bin/id\"], decision = \"allow\")\n",
    )
    .unwrap();
    let config = dir.path().join("team.toml");
    std::fs::write(&config, format!("rules = [{:?}]\n", team.display())).unwrap();
    let (config, project, team) = (
        config.to_str().unwrap(),
        project.to_str().unwrap(),
        team.to_str().unwrap(),
    );
    let output = execgate(
        &ws,
        &["policy", "lint", "--config", config, "--rules", project],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("forbidden on id") && stdout.contains(project),
        "{stdout}"
    );
    // A file named both ways is read once.
    let output = execgate(
        &ws,
        &["policy", "lint", "--config", config, "--rules", team],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
}

/// Regression: `policy lint --config FILE` refused a config that lists no
/// rules ("no rules files", exit 125), though the README presents it for
/// checking a config's profiles. Without rules it checks the profiles
/// alone; with neither rules nor a config there is nothing to lint.
#[test]
fn policy_lint_checks_a_configs_profiles_without_rules() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    let lint = |args: &[&str]| execgate(&ws, args);
    std::fs::write(
        &config,
        "[profiles.net]\nextends = \"workspace-write\"\nnetwork = \"enabled\"\n\
         [profiles.quiet]\nextends = \"read-only\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = lint(&["policy", "lint", "--config", config]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&output.stdout), "", "{stderr}");
    assert!(stderr.contains("no rules files"), "{stderr}");
    assert!(stderr.contains("2 profile(s)"), "{stderr}");

    // Probe 133: what a session warns of at its start (a path hidden or
    // granted that is not there) linted clean.
    std::fs::write(
        config,
        "[profiles.x]\nextends = \"workspace-write\"\n\
         filesystem = { \"/nonexistent/foo\" = \"none\", \"/nonexistent/bar\" = \"read\" }\n",
    )
    .unwrap();
    let output = lint(&["policy", "lint", "--config", config]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("profile x hides /nonexistent/foo")
            && stderr.contains("/nonexistent/bar, which does not exist")
            && stderr.contains("2 warning(s)"),
        "{stderr}"
    );

    // A mistake in a profile is found, naming the file.
    std::fs::write(config, "[profiles.x]\nnetwork = \"limitted\"\n").unwrap();
    let output = lint(&["policy", "lint", "--config", config]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("limitted") && stderr.contains(config),
        "{stderr}"
    );

    // No rules and no config: nothing to lint.
    let output = lint(&["policy", "lint"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("nothing to lint"), "{stderr}");
}

/// Regression: `policy check`, `policy lint` and `doctor` panicked (exit
/// 101, a backtrace) when stdout could not be written. Now: one line on
/// stderr and exit 125, as `execgate audit`; a reader that went away is
/// no error, and the status is the one the command decided.
#[test]
fn policy_and_doctor_say_when_stdout_cannot_be_written() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(&rules, TEAM_RULES).unwrap();
    let rules = rules.to_str().unwrap();
    let commands: [&[&str]; 6] = [
        &["policy", "check", "--rules", rules, "--", "rm", "-rf", "x"],
        &[
            "policy",
            "check",
            "--rules",
            rules,
            "--network",
            "crates.io:443",
        ],
        &["policy", "lint", "--rules", rules],
        &["doctor"],
        &["doctor", "--json"],
        &["completions", "bash"],
    ];
    for args in commands {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = execgate_writing_to(&ws, args, full.into());
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{args:?}: {stderr}");
        assert!(
            stderr.ends_with(
                "execgate: cannot write to standard output: No space left on device (os error \
                 28)\n"
            ),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // Open for reading only: every write fails with EBADF.
        let read_only = std::fs::File::open("/dev/null").unwrap();
        let output = execgate_writing_to(&ws, args, read_only.into());
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{args:?}: {stderr}");
        assert!(
            stderr.contains("open for reading only"),
            "{args:?}: {stderr}"
        );
    }
    // (command, its status; doctor's depends on the machine: 0 or 1)
    for (args, status) in [
        (commands[0], &[0][..]),
        (commands[2], &[1]),
        (commands[4], &[0, 1]),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = execgate_writing_to(&ws, args, writer.into());
        let stderr = text(&output.stderr);
        let code = output.status.code().unwrap();
        assert!(status.contains(&code), "{args:?}: {code}: {stderr}");
        assert!(!stderr.contains("standard output"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Every field of a log is shown escaped, in the table and the summary: a
/// log is read from wherever a reviewer got it, and one field left raw
/// (concealed text, a cleared screen, a line reordered) hides or rewrites
/// the genuine records around it. (Regression: the time, session, action,
/// decision and rule were printed as they were, and a network record's
/// reason kept bidirectional controls.)
#[test]
fn no_field_of_a_log_reaches_the_terminal_raw() {
    let (dir, ws) = workspace();
    let log = dir.path().join("handed.jsonl");
    let exec = serde_json::json!({
        "@timestamp": "2026-12-01T10:00:00Z\u{1b}[8m",
        "event": {"action": "decision\u{1b}[2J", "outcome": "success\r"},
        "session_id": "s\u{1b}[H",
        "process": {"executable": "/usr/bin/true", "args": ["true"]},
        "execgate": {"decision": "run\u{1b}[2K", "decided_by": "rule"},
        "rule": {"id": "team.rules:1\u{202e}"}
    });
    let connection = serde_json::json!({
        "@timestamp": "2026-12-01T10:00:01Z",
        "event": {"action": "network-decision", "outcome": "failure"},
        "session_id": "s",
        "request_id": 3,
        "process": {},
        "destination": {"address": "moc.live\u{202e}", "port": 443},
        "network": {"protocol": "https"},
        "execgate": {"decision": "deny", "decided_by": "proxy", "reason": "`\u{202e}moc.live` is not ASCII"}
    });
    std::fs::write(&log, format!("{exec}\n{connection}\n")).unwrap();
    let log = log.to_str().unwrap();
    for args in [
        vec!["audit", log],
        vec!["audit", "--network", log],
        vec!["audit", "--summary", log],
    ] {
        let output = execgate(&ws, &args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let shown = text(&output.stdout);
        assert!(shown.lines().count() >= 1, "{args:?}: nothing shown");
        for raw in ['\u{1b}', '\r', '\u{202e}'] {
            assert!(!shown.contains(raw), "{args:?}: {raw:?} in {shown:?}");
        }
    }
    // Probe 162: a connection names its command, as an exec record does.
    let output = execgate(&ws, &["audit", "--network", log]);
    assert!(
        text(&output.stdout).contains("  s#3  network-decision"),
        "{}",
        text(&output.stdout)
    );
}

/// Probe 112: in the table, a byte that is not UTF-8 read as U+FFFD, so
/// two programs (or arguments) that differ there looked the same; in the
/// summary, arguments were joined with blanks and not quoted.
#[test]
fn the_audit_table_and_summary_tell_arguments_apart() {
    let (dir, ws) = workspace();
    let log = dir.path().join("handed.jsonl");
    let record = |executable: serde_json::Value, args: serde_json::Value| {
        serde_json::json!({
            "@timestamp": "2026-12-01T10:00:00Z",
            "event": {"action": "decision", "outcome": "success"},
            "session_id": "s",
            "process": {"executable": executable, "args": args},
            "execgate": {"decision": "escalate", "decided_by": "rule", "execution": "unsandboxed"},
        })
    };
    // b"/w/bad\xff" and b"bad\xff", encoded as the log encodes bytes.
    let lines = [
        record(
            serde_json::json!({"base64": "L3cvYmFk/w=="}),
            serde_json::json!([{"base64": "YmFk/w=="}, "a b", "c"]),
        ),
        record(
            serde_json::json!("/w/bad\u{fffd}"),
            serde_json::json!(["bad\u{fffd}", "a", "b c"]),
        ),
    ];
    let text_of = |args: &[&str]| text(&execgate(&ws, args).stdout);
    std::fs::write(&log, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let log = log.to_str().unwrap();
    let table = text_of(&["audit", log]);
    assert!(table.contains("/w/bad\\xff"), "{table}");
    assert!(table.contains("/w/bad\u{fffd} "), "{table}");
    let summary = text_of(&["audit", "--summary", log]);
    assert!(
        summary.contains("\"bad\\xff\" \"a b\" c (unsandboxed)"),
        "{summary}"
    );
    assert!(
        summary.contains("bad\u{fffd} a \"b c\" (unsandboxed)"),
        "{summary}"
    );
}

/// Probe 219: the table showed a person's approval, an earlier one for
/// the session and a rule's alike, as the rule that asked; only `--json`
/// told who decided.
#[test]
fn the_audit_table_says_who_decided_where_no_rule_did_alone() {
    let (dir, ws) = workspace();
    let log = dir.path().join("handed.jsonl");
    let record = |decided_by: &str, rule: Option<&str>| {
        serde_json::json!({
            "@timestamp": "2026-12-01T10:00:00Z",
            "event": {"action": "decision", "outcome": "success"},
            "session_id": "s",
            "process": {"executable": "/usr/bin/git", "args": ["git", decided_by]},
            "execgate": {"decision": "escalate", "decided_by": decided_by, "execution": "unsandboxed"},
            "rule": rule.map(|id| serde_json::json!({"id": id})),
        })
    };
    let lines = [
        record("rule", Some("team.rules:2")),
        record("user", Some("team.rules:3")),
        record("session-cache", Some("team.rules:3")),
        record("default", None),
        record("skill", None),
    ];
    let written: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&log, written).unwrap();
    let table = text(&execgate(&ws, &["audit", log.to_str().unwrap()]).stdout);
    for (argument, shown) in [
        ("rule", "[team.rules:2]"),
        ("user", "[team.rules:3 by user]"),
        ("session-cache", "[team.rules:3 by session-cache]"),
        ("default", "[-]"),
        ("skill", "[- by skill]"),
    ] {
        let line = table
            .lines()
            .find(|line| line.contains(&format!("git {argument} ")))
            .unwrap_or_default();
        assert!(line.contains(shown), "{argument}: {table}");
    }
}

/// Probe 112: a history whose older files were rotated away began in the
/// middle of a session, and nothing said so.
#[test]
fn audit_says_when_the_records_begin_within_a_session() {
    let (dir, ws) = workspace();
    let log = dir.path().join("handed.jsonl");
    let record = |session: &str, action: &str, request: Option<u64>| {
        serde_json::json!({
            "@timestamp": "2026-12-01T10:00:00Z",
            "event": {"action": action, "outcome": "success"},
            "session_id": session,
            "request_id": request,
            "process": {"executable": "/usr/bin/true", "args": ["true"]},
            "execgate": {"decision": "run", "decided_by": "default"},
        })
    };
    // Review 115: a refused hello (an `error` with no request number)
    // first read as a Windows session's record.
    let refused_hello = serde_json::json!({
        "@timestamp": "2026-12-01T10:00:00Z",
        "event": {"action": "error", "outcome": "failure"},
        "session_id": "hello-first",
        "process": {},
        "error": "malformed hello",
    });
    let lines = [
        record("whole", "session-start", None),
        record("whole", "decision", Some(1)),
        record("cut", "decision", Some(3)),
        record("cut", "decision", Some(4)),
        refused_hello,
        record("hello-first", "decision", Some(2)),
        record("windows-12-ab", "decision", None),
    ];
    let written: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&log, written).unwrap();
    let log = log.to_str().unwrap();
    for args in [
        vec!["audit", log],
        vec!["audit", "--summary", log],
        vec!["audit", "--program", "nothing-matches", log],
    ] {
        let output = execgate(&ws, &args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let stderr = text(&output.stderr);
        assert_eq!(
            stderr.trim_end(),
            "execgate: the records read begin within 2 sessions whose starts are not \
             among them (their older records were rotated away, are in a file not read, or \
             were never written: a session's end counts what it lost): cut, hello-first",
            "{args:?}"
        );
    }
}

/// While a question is on the terminal, the session's processes are
/// frozen: none can draw over it (another program or host in its place) or
/// take the keys that answer it. (Regression: a background job of the
/// command redrew the question's lines while it waited for the answer.)
#[test]
fn the_session_is_frozen_while_a_question_is_asked() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(&rules, TEAM_RULES).unwrap();
    let binary = env!("CARGO_BIN_EXE_execgate");
    let command = "sleep 1000.125 & touch ../asked";
    let line = format!(
        "{binary} run --rules {} --audit-log {} -- '{command}'",
        rules.display(),
        dir.path().join("audit.jsonl").display()
    );
    let mut child = spawn_piped(&ws, "script", &["-qec", &line, "/dev/null"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let frozen = loop {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the question never froze the session: {}",
                text(&output.stdout)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        // The session's cgroup, through a process in it: the sandboxed
        // shell running the command (execgate itself has it among its
        // arguments too, outside).
        let session = pids_running("sleep 1000.125 & touch ../asked")
            .into_iter()
            .filter_map(|pid| {
                let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
                let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
                path.contains("/session-")
                    .then(|| cgroup2_mount().join(path.trim_start_matches('/')))
            })
            .next();
        let Some(dir) = session else { continue };
        let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        if events.lines().any(|line| line == "frozen 1") {
            break dir;
        }
    };
    // Typed once the question is out: keys typed before it are the
    // command's, and the prompt discards them.
    let mut stdout = child.stdout.take().unwrap();
    let (chunks, seen_chunks) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read @ 1..) = std::io::Read::read(&mut stdout, &mut buffer) {
            if chunks.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !text(&seen).contains("[!] abort the command") {
        match seen_chunks.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => {
                let _ = child.kill();
                panic!("the question never came: {}", text(&seen));
            }
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"n\n").unwrap();
    drop(stdin);
    child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(seen_chunks.try_iter().flatten());
    let seen = text(&seen);
    assert!(seen.contains("approval needed"), "{seen}");
    assert!(seen.contains("declined by the approver"), "{seen}");
    assert!(!dir.path().join("asked").exists());
    assert!(!frozen.exists(), "the session's cgroup outlived it");
}

/// The pids of the processes with `arg` among their arguments.
fn pids_running(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let seen = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            seen.split(|&byte| byte == 0)
                .any(|seen| seen == arg.as_bytes())
                .then_some(pid)
        })
        .collect()
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` beside v1 controllers).
fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
        })
        .expect("a cgroup v2 hierarchy is mounted")
}

/// `--verbose` and the text telemetry show a program's path quoted and
/// escaped: the sandbox names its own files, and a path with a newline and
/// a whole forged line in it must not print as two lines, nor drive the
/// terminal. (Regression: both printed the path as it was.)
#[test]
fn verbose_lines_and_telemetry_escape_the_program_path() {
    let (_dir, ws) = workspace();
    let forged = "n\n2026-12-01T00:00:00Z INFO decision=\"deny\" program=curl\n\u{1b}[2J";
    std::fs::create_dir(ws.join(forged)).unwrap();
    std::fs::copy("/bin/true", ws.join(forged).join("t")).unwrap();
    let output = execgate_with_env(
        &ws,
        &["run", "--verbose", "--log-format", "text", "--", "n*/t"],
        &[("EXECGATE_LOG", "info")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("n\\n2026-12-01"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    assert!(
        !stderr
            .lines()
            .any(|line| line.starts_with("2026-12-01T00:00:00Z")),
        "{stderr}"
    );
}

/// A probe's `TMPDIR=/var/tmp/job` was not made writable (its name does
/// not look like a temporary directory's), and every `mktemp` in the
/// sandbox failed, silently. The shell gets the temporary directory the
/// sandbox writes, with a warning.
#[test]
fn a_tmpdir_the_sandbox_does_not_take_is_replaced_with_a_warning() {
    let (dir, ws) = workspace();
    let job = dir.path().join("job");
    std::fs::create_dir(&job).unwrap();
    let output = execgate_with_env(
        &ws,
        &["run", "--", "echo \"$TMPDIR\"; mktemp -u"],
        &[("TMPDIR", job.to_str().unwrap())],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("/tmp\n/tmp/"), "{stdout}");
    assert!(
        stderr.contains("is not the sandbox's temporary directory"),
        "{stderr}"
    );

    let taken = dir.path().join("tmp.job");
    std::fs::create_dir(&taken).unwrap();
    let output = execgate_with_env(
        &ws,
        &["run", "--", "echo \"$TMPDIR\""],
        &[("TMPDIR", taken.to_str().unwrap())],
    );
    assert_eq!(text(&output.stdout).trim(), taken.to_str().unwrap());
    assert!(!text(&output.stderr).contains("temporary directory"));
}

/// From a probe: `--follow` on a log no session had made yet failed (a
/// fresh user), a file named twice was read twice (every count doubled),
/// and `--follow --summary` ignored `--summary`.
#[test]
fn audit_waits_for_a_log_to_follow_and_reads_a_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.jsonl");
    let follower = follow_json(&path);
    let log = execgate_audit::AuditLog::open(&path, execgate_audit::Rotation::default()).unwrap();
    append_refused(&log, 1);
    append_refused(&log, 2);
    let (ids, stderr) = followed_ids(follower);
    assert_eq!(ids, [1, 2], "{stderr}");
    assert!(
        stderr.contains("waiting for a session to make it"),
        "{stderr}"
    );

    let twice = path.with_file_name(".").join("later.jsonl");
    let output = execgate(
        dir.path(),
        &[
            "audit",
            "--json",
            path.to_str().unwrap(),
            twice.to_str().unwrap(),
        ],
    );
    assert_eq!(text(&output.stdout).lines().count(), 2);
    assert!(text(&output.stderr).contains("named before: read once"));

    let output = execgate(
        dir.path(),
        &["audit", "--follow", "--summary", path.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

/// A probe's rules forbade `echo`, `printf` and `kill`: a session never
/// asks about zsh builtins, yet `policy check --as-run` answered
/// "forbidden" and lint said nothing. Lint warns, and check says so.
#[test]
fn rules_on_zsh_builtins_are_named_by_lint_and_check() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("builtins.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"git\", \"push\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"echo\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"kill\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let output = execgate(&ws, &["policy", "lint", "--rules", rules]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let warned: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("is a zsh builtin"))
        .collect();
    assert_eq!(warned.len(), 2, "{stdout}");
    assert!(warned[0].contains(":2: warning: echo"), "{stdout}");
    assert!(warned[1].contains(":3: warning: kill"), "{stdout}");

    let output = execgate(
        &ws,
        &[
            "policy", "check", "--as-run", "--rules", rules, "--", "echo", "hi",
        ],
    );
    assert!(text(&output.stderr).contains("echo is a zsh builtin"));
    let output = execgate(
        &ws,
        &[
            "policy", "check", "--as-run", "--rules", rules, "--", "git", "push",
        ],
    );
    assert!(!text(&output.stderr).contains("builtin"));
}

/// A probe found a rule recorded under its file as typed (`../t1.rules:4`),
/// so one rule had other ids in other sessions, and `audit --rule` found
/// it only as typed then. Sessions record rules files by absolute path,
/// and `--rule` takes a relative file from where it is run.
#[test]
fn rule_ids_name_their_file_wherever_the_session_started() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("deny.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"uname\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let log = dir.path().join("audit.jsonl");
    let log = log.to_str().unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--audit-log",
            log,
            "--rules",
            "../deny.rules",
            "--",
            "uname",
        ],
    );
    assert_eq!(output.status.code(), Some(126), "{}", text(&output.stderr));
    let id = format!("{}:1", rules.display());
    let recorded = std::fs::read_to_string(log).unwrap();
    assert!(recorded.contains(&format!("\"id\":\"{id}\"")), "{recorded}");
    for (cwd, typed) in [
        (dir.path(), "deny.rules:1"),
        (ws.as_path(), "../deny.rules:1"),
        (ws.as_path(), id.as_str()),
    ] {
        let output = execgate(cwd, &["audit", "--json", "--rule", typed, log]);
        assert_eq!(text(&output.stdout).lines().count(), 1, "{typed}");
    }
}

/// From a probe: `policy check --as-run` answered "allow, unsandboxed"
/// for a `git status` that the session then ran in place (its repository
/// was writable from the sandbox). Check says a session may still refuse
/// such an escalation; not for what stays in the sandbox.
#[test]
fn check_as_run_says_an_escalation_may_still_be_refused() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("escalate.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"git\", \"status\"], decision = \"allow\", execution = \"unsandboxed\")\n\
         prefix_rule(pattern = [\"git\", \"log\"], decision = \"allow\", execution = \"turn-default\")\n\
         prefix_rule(pattern = [\"git\", \"push\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    for (argv, noted) in [
        (["git", "status"], true),
        (["git", "log"], false),
        (["git", "push"], false),
    ] {
        let mut args = vec!["policy", "check", "--as-run", "--rules", rules, "--"];
        args.extend(argv);
        let output = execgate(&ws, &args);
        let stderr = text(&output.stderr);
        assert_eq!(
            stderr.contains("still refused"),
            noted,
            "{argv:?}: {stderr}"
        );
    }
}

/// From a probe: a write grant on a directory that does not exist, and a
/// `unix_sockets` entry with no socket, started a session without a word,
/// and granted nothing.
#[test]
fn grants_that_name_nothing_are_warned_about() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    let missing = dir.path().join("missing");
    let socket = dir.path().join("none.sock");
    std::fs::write(
        &config,
        format!(
            "[profiles.y]\nextends = \"workspace-write\"\nfilesystem = {{ {:?} = \"write\" }}\n\
             network = {{ mode = \"limited\", unix_sockets = {{ {:?} = \"allow\" }} }}\n",
            missing.to_str().unwrap(),
            socket.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = execgate(
        &ws,
        &["run", "--config", config, "--profile", "y", "--", "true"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "write access to {}, which does not exist",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("entry {} names no socket", socket.display())),
        "{stderr}"
    );
    let output = execgate(&ws, &["run", "--", "true"]);
    let stderr = text(&output.stderr);
    assert!(
        !stderr.contains("does not exist") && !stderr.contains("names no"),
        "{stderr}"
    );
}

/// From a probe of skills: a skill a skills directory links to from a
/// writable workspace loaded without the warning the directory itself
/// would have had, and a skill's grant on nothing was granted silently.
#[test]
fn skills_are_warned_about_as_loaded() {
    let (dir, ws) = workspace();
    let skills = dir.path().join("skills");
    let planted = ws.join("planted");
    let granting = skills.join("granting");
    for skill in [&planted, &granting] {
        std::fs::create_dir_all(skill.join("scripts")).unwrap();
    }
    std::fs::write(planted.join("SKILL.md"), "---\nname: planted\n---\n").unwrap();
    std::fs::write(granting.join("SKILL.md"), "---\nname: granting\n---\n").unwrap();
    let missing = dir.path().join("missing");
    std::fs::write(
        granting.join("permissions.toml"),
        format!(
            "filesystem = {{ {:?} = \"write\" }}\n",
            missing.to_str().unwrap()
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(&planted, skills.join("linked")).unwrap();
    let output = execgate(
        &ws,
        &["run", "--skills", skills.to_str().unwrap(), "--", "true"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is writable from this session's sandbox",
            planted.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "skill granting grants write access to {}, which does not exist",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&skills.display().to_string()), "{stderr}");
}

/// A probe (106): a skill's `#!/usr/bin/env python3` script, where the
/// PATH finds a version manager's shim (a shell script) first,
/// was refused for what python3 reads ("sys.path starts in the working
/// directory"), where it is the shim that reads its choice from there
/// (`.python-version`). The refusal names the shim, and what passes.
#[test]
fn a_refusal_through_a_shim_names_the_shim() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let shims = base.join("pyenv/shims");
    std::fs::create_dir_all(&shims).unwrap();
    let shim = shims.join("python3");
    std::fs::write(&shim, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
    let skill = base.join("skills/pyskill");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::create_dir_all(base.join("notes")).unwrap();
    std::fs::write(skill.join("SKILL.md"), "---\nname: pyskill\n---\n").unwrap();
    std::fs::write(
        skill.join("permissions.toml"),
        "filesystem = { \"../../notes\" = \"write\" }\n",
    )
    .unwrap();
    let script = skill.join("scripts/hello.py");
    std::fs::write(&script, "#!/usr/bin/env python3\nprint('hello')\n").unwrap();
    for program in [&shim, &script] {
        std::fs::set_permissions(program, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    // Escalated children get the caller's PATH (the session's shell's is
    // the sandbox's to change); per-user configuration and the log are
    // where the sandbox cannot write.
    let caller_path = format!("{}:/usr/bin:/bin", shims.display());
    let (config_home, state_home) = (base.join("no-config"), base.join("state"));
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--skills",
            skill.to_str().unwrap(),
            "--approval",
            "approve",
            "--",
            script.to_str().unwrap(),
        ],
        &[
            ("PATH", &caller_path),
            ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
            ("XDG_STATE_HOME", state_home.to_str().unwrap()),
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(text(&output.stdout), "hello\n", "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}'s #! line runs {}, a script standing in for python3",
            script.display(),
            shim.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("a #! line that names the interpreter's own path"),
        "{stderr}"
    );
}

/// A probe replaced the execgate its next session ran: installed where the
/// session's sandbox could write, it was the sandbox's to change. An
/// installed execgate says so when a session starts (a build tree is a
/// developer's, and the README says it).
#[test]
fn an_installation_the_sandbox_can_write_is_warned_about() {
    let (_dir, ws) = workspace();
    let binary = Path::new(env!("CARGO_BIN_EXE_execgate"));
    let built = binary.parent().unwrap();
    let installed = ws.join("opt");
    let tools = installed.join("libexec/execgate");
    std::fs::create_dir_all(installed.join("bin")).unwrap();
    std::fs::create_dir_all(&tools).unwrap();
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    copy(binary, &installed.join("bin/execgate"));
    for tool in ["execgate-exec-wrapper", "execgate-sandbox-helper"] {
        copy(&built.join(tool), &tools.join(tool));
    }
    copy(&built.join("../zsh"), &tools.join("zsh"));
    let output = Command::new(installed.join("bin/execgate"))
        .args(["run", "--profile", "workspace-write", "--", "true"])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("install execgate outside the writable roots"))
        .collect();
    assert_eq!(warned.len(), 4, "{stderr}");
    assert!(
        warned[0].starts_with(&format!(
            "execgate: warning: {}/bin/execgate is writable from this session's sandbox",
            installed.display()
        )),
        "{stderr}"
    );
}

/// A probe: where the host shows the workspace under a second path (a bind
/// mount, as container volumes often are), the sandbox wrote a Makefile
/// through the workspace and ran an escalated `make` from the other name,
/// which the check by path took for a place it could not write: the
/// Makefile ran unsandboxed. Both names are judged now. The mount is made
/// in a mount namespace of the test's own (`unshare -m`), which execgate
/// runs in.
#[test]
fn a_workspace_shown_under_another_name_is_still_the_sandboxs() {
    let (dir, ws) = workspace();
    let alias = dir.path().join("alias");
    std::fs::create_dir(&alias).unwrap();
    let marker = dir.path().join("ran-outside");
    let rules = dir.path().join("make.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"make\"], decision = \"allow\", execution = \"unsandboxed\")\n",
    )
    .unwrap();
    let script = format!(
        "printf 'all:\\n\\ttouch {marker}\\n' > Makefile; cd {alias} && make",
        marker = marker.display(),
        alias = alias.display()
    );
    let output = execgate_with_bind_mount(
        &ws,
        &ws,
        &alias,
        &["run", "--rules", rules.to_str().unwrap(), "--", &script],
    );
    let stderr = text(&output.stderr);
    assert!(!marker.exists(), "{stderr}");
    assert!(
        stderr.contains("make runs in place, in the sandbox: escalation refused"),
        "{stderr}"
    );
}

/// The same for a link the sandbox made, run from the other name: it runs
/// in place, as one found by a link where the sandbox writes does. (The
/// check of where it was found and the check of an escalation leaving the
/// sandbox judge by one answer, review 233.)
#[test]
fn a_link_in_the_workspace_shown_under_another_name_runs_in_place() {
    let (dir, ws) = workspace();
    let alias = dir.path().join("alias");
    std::fs::create_dir(&alias).unwrap();
    let rules = dir.path().join("id.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"id\"], decision = \"allow\", execution = \"turn-default\")\n",
    )
    .unwrap();
    let script = format!(
        "mkdir tools && ln -s /usr/bin/id tools/id && cd {alias}/tools && ./id -u",
        alias = alias.display()
    );
    let output = execgate_with_bind_mount(
        &ws,
        &ws,
        &alias,
        &["run", "--rules", rules.to_str().unwrap(), "--", &script],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("runs in place, in the sandbox: escalation refused"),
        "{stderr}"
    );
}

/// Review 236: a place a grant the session knows of can write, shown
/// under another name by a bind mount, was judged by its granted name alone
/// when the program was found there by a link: an `id` linked there ran
/// escalated as `/usr/bin/id`. The check knows the mounts' other names of
/// the grants too now.
#[test]
fn a_link_in_a_granted_place_shown_under_another_name_runs_in_place() {
    let (dir, ws) = workspace();
    let granted = std::fs::canonicalize(dir.path()).unwrap().join("granted");
    std::fs::create_dir_all(granted.join("tools")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/id", granted.join("tools/id")).unwrap();
    let alias = dir.path().join("alias");
    std::fs::create_dir(&alias).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.gp]\nfilesystem = {{ {:?} = \"write\" }}\n",
            granted.display().to_string()
        ),
    )
    .unwrap();
    let rules = dir.path().join("id.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"id\"], decision = \"allow\", execution = \"turn-default\")\n\
         prefix_rule(pattern = [\"touch\"], decision = \"allow\", execution = \"gp\")\n",
    )
    .unwrap();
    let script = format!("cd {}/tools && ./id -u", alias.display());
    let output = execgate_with_bind_mount(
        &ws,
        &granted,
        &alias,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--",
            &script,
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("runs in place, in the sandbox: escalation refused"),
        "{stderr}"
    );
}

/// A probe: an escalated program is started by the server, and took the
/// server's umask, limits and signal dispositions, not what the shell set
/// for its commands: `umask 077` before writing a secret, `ulimit -n` and
/// `trap '' TERM` were lost. It gets the shell's now, never looser than
/// the server's, unsandboxed and in a sandbox of its own (a spare's).
#[test]
fn an_escalation_keeps_the_shells_umask_limits_and_ignored_signals() {
    let (dir, ws) = workspace();
    for execution in ["unsandboxed", "turn-default"] {
        let rules = dir.path().join(format!("{execution}.rules"));
        std::fs::write(
            &rules,
            format!(
                "prefix_rule(pattern = [\"dash\"], decision = \"allow\", execution = \"{execution}\")\n"
            ),
        )
        .unwrap();
        let script = "umask 077; dash -c 'umask; : > private'; ulimit -n 200; \
            dash -c 'ulimit -n'; (trap '' TERM USR1; dash -c 'grep SigIgn /proc/self/status'); \
            stat -c %a private; rm private";
        let output = execgate(
            &ws,
            &[
                "run",
                "-v",
                "--rules",
                rules.to_str().unwrap(),
                "--",
                script,
            ],
        );
        let stdout = text(&output.stdout);
        assert_eq!(
            text(&output.stderr).matches("-> Escalate").count(),
            3,
            "{}",
            text(&output.stderr)
        );
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["0077", "200", "SigIgn:\t0000000000004200", "600"],
            "{execution}: {}",
            text(&output.stderr)
        );
    }
}

/// An escalation the shell's `ulimit -n` leaves too few descriptors for
/// does not run, and says why: "lost the escalation server" (what the
/// stand-in said when its own signal descriptor could not be opened)
/// sent a user looking for a server that was there.
#[test]
fn an_escalation_short_of_descriptors_says_so() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("dash.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"dash\"], decision = \"allow\", execution = \"unsandboxed\")\n",
    )
    .unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--",
            "ulimit -n 5; dash -c 'echo ran'",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(126), "{stderr}");
    assert_eq!(text(&output.stdout), "", "{stderr}");
    assert!(
        stderr.contains("Too many open files") && stderr.contains("not running /usr/bin/dash"),
        "{stderr}"
    );
    assert!(!stderr.contains("escalation server"), "{stderr}");
}

/// A program escalated unsandboxed as root may make cgroups of its own
/// below its session's (a container tool does). They go with the session:
/// a probe found the session's cgroup and the server's left behind, the
/// kernel refusing to remove a cgroup that has others below it.
#[test]
fn cgroups_made_below_a_session_go_with_it() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("dash.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"dash\"], decision = \"allow\", execution = \"unsandboxed\")\n",
    )
    .unwrap();
    let mount = cgroup2_mount();
    // Two levels, the process moved into the deepest: it is killed with
    // the session, and what it made is removed.
    let script = format!(
        "dash -c 'c={}$(sed -n \"s/^0:://p\" /proc/self/cgroup); echo $c; \
         mkdir -p $c/made/deeper && echo $$ > $c/made/deeper/cgroup.procs && sleep 1000'",
        mount.display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--rules", rules.to_str().unwrap(), "--", &script])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let session = PathBuf::from(line.trim());
    let deeper = session.join("made/deeper");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(deeper.join("cgroup.procs")).is_ok_and(|procs| !procs.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "{}", deeper.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    let server = session.parent().unwrap().to_path_buf();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !session.exists(),
        "{} outlived its session",
        session.display()
    );
    assert!(!server.exists(), "{} outlived its server", server.display());
}

/// A probe (105): `policy check --as-run` left out the config's own
/// rules, which a session loads before `--rules`, and said "runs in place"
/// of a command the session escalated unsandboxed; it took a profile
/// `run` refuses; it read a bare `zsh` as `PATH`'s, where a session runs
/// its own; and it did not say which program it decided on, or which of
/// several matching rules' `execution` applies.
#[test]
fn policy_check_as_run_decides_with_the_sessions_rules_profiles_and_zsh() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let user = base.join("user.rules");
    std::fs::write(
        &user,
        "prefix_rule(pattern = [\"id\"], decision = \"allow\", execution = \"unsandboxed\")\n\
         prefix_rule(pattern = [\"id\", \"-u\"], decision = \"allow\", execution = \"turn-default\")\n\
         prefix_rule(pattern = [\"/usr/bin/zsh\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let config = base.join("config.toml");
    std::fs::write(&config, "rules = [\"user.rules\"]\n").unwrap();
    let empty = base.join("empty.rules");
    std::fs::write(&empty, "").unwrap();
    let (config, empty) = (config.to_str().unwrap(), empty.to_str().unwrap());
    let check = |args: &[&str]| {
        let mut all = vec!["policy", "check", "--as-run", "--config", config];
        all.extend(args);
        let output = execgate(&ws, &all);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    // The config's rules, with --rules and without.
    for args in [
        &["--rules", empty, "--", "id", "-u"][..],
        &["--", "id", "-u"],
    ] {
        let report = check(args);
        assert_eq!(report["decision"], "allow", "{report}");
        assert_eq!(report["program"], "/usr/bin/id", "{report}");
        // Of the two allow rules, the one whose execution confines most.
        assert_eq!(report["execution"], "turn-default", "{report}");
    }
    let output = execgate(
        &ws,
        &[
            "run", "--config", config, "--rules", empty, "-v", "--", "id -u",
        ],
    );
    assert!(
        text(&output.stderr).contains("-> Escalate(TurnDefault)"),
        "{}",
        text(&output.stderr)
    );
    // A session's `zsh` is its own, never the PATH's.
    let report = check(&["--", "zsh", "-fc", "true"]);
    assert_ne!(report["decision"], "forbidden", "{report}");
    assert_ne!(report["program"], "/usr/bin/zsh", "{report}");
    // A profile `run` refuses, `check --as-run` refuses too.
    let undefined = base.join("undefined.rules");
    std::fs::write(
        &undefined,
        "prefix_rule(pattern = [\"id\"], execution = \"nosuch\")\n",
    )
    .unwrap();
    for command in [
        vec!["run", "--rules", undefined.to_str().unwrap(), "--", "id"],
        vec![
            "policy",
            "check",
            "--as-run",
            "--rules",
            undefined.to_str().unwrap(),
            "--",
            "id",
        ],
    ] {
        let output = execgate(&ws, &command);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{command:?}: {stderr}");
        assert!(
            stderr.contains("\"nosuch\", which is not defined"),
            "{stderr}"
        );
    }
    // Without --as-run, the named files alone, and a line saying the
    // config's are left out.
    std::fs::create_dir_all(base.join("execgate")).unwrap();
    std::fs::copy(base.join("config.toml"), base.join("execgate/config.toml")).unwrap();
    std::fs::copy(&user, base.join("execgate/user.rules")).unwrap();
    let output = execgate_with_env(
        &ws,
        &["policy", "check", "--rules", empty, "--", "id"],
        &[("XDG_CONFIG_HOME", base.to_str().unwrap())],
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["matchedRules"], serde_json::json!([]), "{report}");
    assert!(
        text(&output.stderr).contains("--as-run adds them as a session does"),
        "{}",
        text(&output.stderr)
    );
}

/// A probe (105): `policy check` refused a command line with an argument
/// that is not UTF-8 (a clap error), where a session decides on it: such
/// an argument matches no pattern token, and the rules before it still
/// match.
#[test]
fn policy_check_takes_arguments_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let (dir, ws) = workspace();
    let rules = dir.path().join("git.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"git\"], decision = \"prompt\")\n\
         prefix_rule(pattern = [\"git\", \"push\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"br\xffnch");
    for (arguments, decision) in [(&["git"][..], "prompt"), (&["git", "push"], "forbidden")] {
        for as_run in [false, true] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_execgate"));
            command
                .args(["policy", "check", "--rules"])
                .arg(&rules)
                .args(as_run.then_some("--as-run"))
                .arg("--")
                .args(arguments)
                .arg(not_utf8)
                .current_dir(&ws)
                .env("XDG_CONFIG_HOME", ws.join("no-config"));
            let output = command.output().unwrap();
            assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(report["decision"], decision, "{arguments:?} {report}");
        }
    }
}

/// A probe (105): `check --as-run -- ./dir` reported the rules on `dir`,
/// where a session's shell says "permission denied" and asks nothing: zsh
/// hands on only regular files it may execute. Check says so, and decides
/// nothing.
#[test]
fn policy_check_as_run_says_what_a_session_never_runs() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("tool.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"tool\"], decision = \"allow\")\n",
    )
    .unwrap();
    std::fs::create_dir(ws.join("tool")).unwrap();
    std::fs::create_dir(ws.join("plain")).unwrap();
    std::fs::write(ws.join("plain/tool"), "#!/bin/sh\necho ran\n").unwrap();
    for (program, why) in [
        ("./tool", "is a directory"),
        ("./plain/tool", "is not executable"),
    ] {
        let ran = execgate(
            &ws,
            &["run", "--rules", rules.to_str().unwrap(), "--", program],
        );
        assert_eq!(ran.status.code(), Some(126), "{}", text(&ran.stderr));
        assert!(
            text(&ran.stderr).contains("permission denied"),
            "{}",
            text(&ran.stderr)
        );
        let output = execgate(
            &ws,
            &[
                "policy",
                "check",
                "--as-run",
                "--rules",
                rules.to_str().unwrap(),
                "--",
                program,
            ],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{stderr}");
        assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
        assert!(stderr.contains(why), "{stderr}");
        assert!(
            stderr.contains("zsh says \"permission denied\" and asks no rule"),
            "{stderr}"
        );
    }
}

/// A probe (105): with `on_failure = "warn"`, a session past its share of
/// the log ran on unrecorded, and the log itself said nothing of it:
/// `audit --summary` counted what was written as if it were all. The
/// session's end counts its records that were not written, and the
/// summary and the table say so.
#[test]
fn records_not_written_are_counted_at_the_sessions_end() {
    let (dir, ws) = workspace();
    let log = dir.path().join("log/audit.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[audit]\non_failure = \"warn\"\nmax_bytes = 65536\nkeep = 1\n",
    )
    .unwrap();
    let log = log.to_str().unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--audit-log",
            log,
            "--",
            "repeat 300 /usr/bin/true; print -r -- ended",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(text(&output.stdout), "ended\n", "{stderr}");
    assert!(stderr.contains("going on without records"), "{stderr}");
    let summary = text(&execgate(&ws, &["audit", "--summary", log]).stdout);
    let lost: u64 = summary
        .lines()
        .find_map(|line| line.strip_prefix("records not written: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    let written = summary
        .lines()
        .find_map(|line| line.trim().strip_prefix("/usr/bin/true  run "))
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(lost > 0, "{summary}");
    assert_eq!(written + lost, 300, "{summary}");
    let table = text(&execgate(&ws, &["audit", log]).stdout);
    assert!(
        table.contains(&format!("{lost} record(s) not written")),
        "{table}"
    );
    // A filter that keeps no session's end keeps the count (a review).
    let filtered = text(
        &execgate(
            &ws,
            &["audit", "--summary", "--program", "/usr/bin/true", log],
        )
        .stdout,
    );
    assert!(
        filtered.contains(&format!("records not written: {lost} ")),
        "{filtered}"
    );
}

/// A probe (105): after `zmodload zsh/files`, `rm -rf d` ran as a builtin
/// of the sandboxed shell, with no decision and no record, while lint said
/// nothing of the rule forbidding `rm`; and `rm -rf ~/`, `ls $HOME` as
/// pattern tokens match only what a person would have to quote, as the
/// shell expands them first: the rules never fire.
#[test]
fn lint_names_module_builtins_and_tokens_the_shell_expands() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("expanded.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"rm\", \"-rf\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"ls\", \"-d\", \"~/\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"ls\", [\"$HOME\", \"${HOME}/x\"]], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"awk\", \"{print $1}\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"git\", \"show\", \"HEAD~1\"], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"rm\", [\"*\", \"**\", \"=rm\"]], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"grep\", [\"a=b\", \"{}\", \"x{1}\", \"foo.*bar\", \"SELECT * FROM t\", \
         \"*.rs\", \"{name,id}\", \"https://x/?a=1\"]], decision = \"forbidden\")\n",
    )
    .unwrap();
    let output = execgate(&ws, &["policy", "lint", "--rules", rules.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let at = |line: usize| -> Vec<&str> {
        stdout
            .lines()
            .filter(|finding| finding.contains(&format!(":{line}: warning: ")))
            .collect()
    };
    assert!(
        at(1)
            .iter()
            .any(|finding| finding.contains("zmodload zsh/files")),
        "{stdout}"
    );
    assert!(
        at(2).iter().any(|finding| finding.contains("\"~/\"")),
        "{stdout}"
    );
    assert_eq!(
        at(3)
            .iter()
            .filter(|finding| finding.contains("the shell expands"))
            .count(),
        2,
        "{stdout}"
    );
    // `$1` and `HEAD~1` are what a person writes quoted or as they are.
    assert!(
        at(4).iter().all(|finding| !finding.contains("expands")),
        "{stdout}"
    );
    assert!(at(5).is_empty(), "{stdout}");
    // Probe 223: `*` read as "any argument" and zsh's `=cmd` never fired.
    assert_eq!(
        at(6)
            .iter()
            .filter(|finding| finding.contains("the shell expands"))
            .count(),
        3,
        "{stdout}"
    );
    // Review 225: patterns the programs read themselves, written quoted
    // as the rules have them, are no mistake.
    assert!(at(7).is_empty(), "{stdout}");
}

/// A probe (105): lint looked programs up in the caller's `PATH`, not the
/// one the config's `[env]` gives a session's shell; and a pin that leaves
/// out the program that `PATH` finds first passed lint silently, while a
/// session ran that program in place, the allow and prompt rules on its
/// name out of reach.
#[test]
fn lint_looks_in_the_sessions_path_and_names_a_pin_it_leaves_out() {
    let (dir, ws) = workspace();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let sessions = path_with_programs(&base, &["git", "tool"]);
    let config = base.join("config.toml");
    std::fs::write(
        &config,
        format!("[env]\nset = {{ PATH = \"{sessions}:/usr/bin:/bin\" }}\n"),
    )
    .unwrap();
    let rules = base.join("pin.rules");
    std::fs::write(
        &rules,
        "host_executable(name = \"git\", paths = [\"/usr/bin/git\"])\n\
         prefix_rule(pattern = [\"git\", \"push\"], decision = \"prompt\", execution = \"turn-default\")\n\
         prefix_rule(pattern = [\"tool\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let output = execgate_with_env(
        &ws,
        &[
            "policy",
            "lint",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
        &[("PATH", "/usr/bin:/bin")],
    );
    let stdout = text(&output.stdout);
    // `tool` is in the session's PATH only.
    assert!(!stdout.contains("\"tool\" is not found"), "{stdout}");
    let pin = stdout
        .lines()
        .find(|line| line.contains(":1: warning: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        pin.contains(&format!("{sessions}/git")) && pin.contains("leave out"),
        "{stdout}"
    );
}

/// A probe (105): `--approval ask` without a terminal declined with the
/// kernel's "No such device or address (os error 6)". It says what is
/// missing, and what scripts use instead.
#[test]
fn asking_without_a_terminal_says_so() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(&rules, TEAM_RULES).unwrap();
    let output = Command::new("setsid")
        .arg("--wait")
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args([
            "run",
            "--approval",
            "ask",
            "--rules",
            rules.to_str().unwrap(),
        ])
        .args(["--", "touch made"])
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("execgate has no terminal: --approval ask needs one"),
        "{stderr}"
    );
    assert!(!stderr.contains("os error 6"), "{stderr}");
}

/// Probe 126: without a sandbox (`danger-full-access`), a `forbidden` rule
/// stops only what the shell itself executes: `env id`, a script's `#!`
/// line, a copy or `ld.so` run the program without asking, and nothing
/// said so. A session that has such rules and no sandbox warns of it; one
/// with a sandbox, where what escapes the rules stays in it, does not.
#[test]
fn forbidden_rules_without_a_sandbox_are_warned_of() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"id\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    // Review 127: a sandbox that can write `/` holds nothing either.
    // Review 129: and through a link to `/`.
    let root_link = dir.path().join("root-link");
    std::os::unix::fs::symlink("/", &root_link).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.everything]\nextends = \"workspace-write\"\nfilesystem = {{ \"/\" = \"write\" }}\n\
             [profiles.linked]\nextends = \"workspace-write\"\nfilesystem = {{ {:?} = \"write\" }}\n",
            root_link.display().to_string()
        ),
    )
    .unwrap();
    let warning = "forbidden rules stop only what the shell itself executes";
    for (profile, warned) in [
        ("danger-full-access", true),
        ("everything", true),
        ("linked", true),
        ("workspace-write", false),
    ] {
        let output = execgate(
            &ws,
            &[
                "run",
                "--config",
                config.to_str().unwrap(),
                "--profile",
                profile,
                "--rules",
                rules.to_str().unwrap(),
                "--",
                "env id -u",
            ],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{profile}: {stderr}");
        assert_eq!(stderr.contains(warning), warned, "{profile}: {stderr}");
    }
}

/// A session numbers its requests and records each: records removed from
/// the middle of its history (by whoever could write the log) leave a gap
/// that `execgate audit` names, in a listing and in a summary.
#[test]
fn audit_names_the_requests_a_session_has_no_record_of() {
    let (dir, ws) = workspace();
    let log = dir.path().join("gaps.jsonl");
    let log_arg = log.to_str().unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--audit-log",
            log_arg,
            "--",
            "/bin/true 1; /bin/true 2; /bin/true 3; /bin/true 4",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let whole = std::fs::read_to_string(&log).unwrap();
    let output = execgate(&ws, &["audit", log_arg]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stderr), "", "a whole history has no gap");

    let session = serde_json::from_str::<serde_json::Value>(whole.lines().next().unwrap()).unwrap()
        ["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Probe 144: the last request removed (no later record brackets it:
    // the end says how many there were), and the exit status (1, as for a
    // rotated file missing).
    for (removed, named) in [(&[2, 3][..], "2-3"), (&[4][..], "4")] {
        let edited: String = whole
            .lines()
            .filter(|line| {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                !record["request_id"]
                    .as_u64()
                    .is_some_and(|id| removed.contains(&id))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(
            edited.lines().count(),
            whole.lines().count() - removed.len()
        );
        std::fs::write(&log, edited).unwrap();
        for args in [vec!["audit", log_arg], vec!["audit", "--summary", log_arg]] {
            let output = execgate(&ws, &args);
            assert_eq!(output.status.code(), Some(1), "{args:?}");
            assert_eq!(
                text(&output.stderr).trim_end(),
                format!(
                    "execgate: session {session} has no record of request {named} (a session \
                     records every request it numbers: removed from the log, or in a file not \
                     read)"
                ),
                "{args:?}"
            );
        }
    }
    // Read in reverse, its start comes after its other records: out of
    // order, not cut short (probe 144).
    let reversed: String = whole
        .lines()
        .rev()
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&log, reversed).unwrap();
    let output = execgate(&ws, &["audit", log_arg]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("have records read before their start") && !stderr.contains("begin within"),
        "{stderr}"
    );
}

/// A decision of a value execgate never writes (`allow` for a program,
/// `Escalate`) was counted under its program and said nothing: a summary
/// now counts such decisions on a line of their own.
#[test]
fn audit_summary_counts_decisions_of_an_unrecognised_value() {
    let (dir, ws) = workspace();
    let log = dir.path().join("edited.jsonl");
    let record = |request: u64, decision: &str| {
        serde_json::json!({
            "@timestamp": "2026-12-01T10:00:00Z",
            "event": {"action": "decision", "outcome": "success"},
            "session_id": "s",
            "request_id": request,
            "process": {"executable": "/usr/bin/curl", "args": ["curl"]},
            "execgate": {"decision": decision, "decided_by": "rule"},
        })
    };
    let lines = [
        record(1, "run"),
        record(2, "allow"),
        record(3, "Escalate"),
        record(4, "deny"),
    ];
    let written: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&log, written).unwrap();
    let output = execgate(&ws, &["audit", "--summary", log.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let summary = text(&output.stdout);
    assert!(
        summary.contains("  /usr/bin/curl  Escalate 1, allow 1, deny 1, run 1\n"),
        "{summary}"
    );
    assert!(
        summary.contains("\ndecisions of an unrecognised value: 2 (execgate writes run, "),
        "{summary}"
    );

    let permissions = serde_json::json!({
        "@timestamp": "2026-12-01T10:00:00Z",
        "event": {"action": "permissions-request", "outcome": "success"},
        "session_id": "s",
        "process": {"args": ["zsh", "-c", "make"]},
        "execgate": {"decision": "allow", "decided_by": "user", "grants": ["/opt=write"]},
    });
    std::fs::write(&log, format!("{}\n{permissions}\n", record(1, "run"))).unwrap();
    let output = execgate(&ws, &["audit", "--summary", log.to_str().unwrap()]);
    let summary = text(&output.stdout);
    assert!(!summary.contains("unrecognised"), "{summary}");
}

/// The kernel refuses a descriptor to a sender whose user has more in
/// flight over Unix sockets than the sender's `ulimit -n` (`ETOOMANYREFS`),
/// and a program in the sandbox can hold that many, unread, on a socket
/// pair of its own: every command then failed with "Too many references:
/// cannot splice". It still fails, and says why.
#[test]
fn descriptors_held_in_flight_are_named_when_they_stop_a_command() {
    let _flood = descriptors_in_flight();
    let (_dir, ws) = workspace();
    std::fs::write(
        ws.join("hold.py"),
        r#"import array, os, resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
mine, theirs = socket.socketpair()
nulls = array.array("i", [os.open("/dev/null", os.O_RDONLY) for _ in range(200)])
for _ in range(2):
    mine.sendmsg([b"held"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, nulls)])
for fd in nulls:
    os.close(fd)
print("held", flush=True)
sys.stdin.read()
"#,
    )
    .unwrap();
    let output = Command::new("prlimit")
        .arg("--nofile=256:")
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--"])
        .arg(
            "coproc python3 hold.py; read -p line; /usr/bin/true; print -r -- $line $?; \
             coproc exit; wait; /usr/bin/true; print -r -- released $?",
        )
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(text(&output.stdout), "held 126\nreleased 0\n", "{stderr}");
    assert!(
        stderr.contains(
            "execgate: cannot hand the request to the escalation server: more descriptors \
             of this user are in flight over Unix sockets than this process's descriptor \
             limit (ulimit -n) allows; not running /usr/bin/true"
        ),
        "{stderr}"
    );
}

/// Probe 140: hellos carrying more descriptors than the server had room
/// for left it holding those the kernel did install (`MSG_CTRUNC`), for
/// good: at a limit of 256, every later command of the session failed with
/// "lost the escalation server".
#[test]
fn descriptors_sent_past_the_servers_limit_are_not_kept() {
    let _flood = descriptors_in_flight();
    let (_dir, ws) = workspace();
    std::fs::write(
        ws.join("flood.py"),
        r#"import array, fcntl, os, resource, socket, struct, termios, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
session = socket.socket(fileno=os.dup(int(os.environ["EXECGATE_SOCKET_FD"])))
nulls = array.array("i", [os.open("/dev/null", os.O_RDONLY) for _ in range(253)])
for _ in range(3):
    session.sendmsg([b"EXGT\x01\x00"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, nulls)])
# Until the server has read them, these descriptors count against the
# next sender's limit (ETOOMANYREFS): wait until the socket's queue is
# empty, as the flood's sender could.
deadline = time.monotonic() + 30
while struct.unpack("i", fcntl.ioctl(session, termios.TIOCOUTQ, bytes(4)))[0]:
    if time.monotonic() > deadline:
        raise SystemExit("the server never read the flood")
    time.sleep(0.01)
"#,
    )
    .unwrap();
    let output = Command::new("prlimit")
        .arg("--nofile=256:")
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--"])
        .arg("python3 flood.py; for i in 1 2 3; do /usr/bin/true || print failed; done; print -r -- ended")
        .current_dir(&ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"))
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(text(&output.stdout), "ended\n", "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// Probe 140: under `-v`, an escalation's start and end, and a request
/// refused, were debug dumps (`RequestRefused { request_id: None, ... }`);
/// an empty datagram was called the socket's close.
#[test]
fn verbose_output_says_starts_ends_and_refusals_in_words() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("true.rules");
    std::fs::write(&rules, "prefix_rule(pattern = [\"/usr/bin/true\"])\n").unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "-v",
            "--rules",
            rules.to_str().unwrap(),
            "--",
            "/usr/bin/true; /usr/bin/python3 -c 'import os, socket; \
             socket.socket(fileno=int(os.environ[\"EXECGATE_SOCKET_FD\"])).send(b\"\")'; \
             /usr/bin/sleep 0.2",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for expected in [
        "execgate: request 1 started, pid ",
        "execgate: request 1 (pid ",
        " s: exit status 0\n",
        "execgate: a request on the session socket refused: an empty datagram, not a hello\n",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    assert!(!stderr.contains(" { "), "{stderr}");
}

/// `execgate sandbox` in `ws`, with `config`'s `profile`, running `program`.
fn in_profile(ws: &Path, config: &str, profile: &str, program: &[&str]) -> Output {
    let mut args = vec!["sandbox", "--config", config, "--profile", profile, "--"];
    args.extend_from_slice(program);
    execgate(ws, &args)
}

/// Probe 154: a directory the profile hides showed, under its empty tmpfs,
/// the names of the files a deny glob matched in it (each covered by
/// `/dev/null`, with the directories on their way): a hidden directory
/// must show nothing of what it holds, and its names least of all.
#[test]
fn a_hidden_directory_shows_nothing_of_the_denied_files_in_it() {
    let (dir, ws) = workspace();
    let private = ws.join("private");
    std::fs::create_dir_all(private.join("hr")).unwrap();
    std::fs::write(private.join("acquisition-of-acme.secret"), "x").unwrap();
    std::fs::write(private.join("hr/layoffs.secret"), "z").unwrap();
    std::fs::write(private.join("notes.txt"), "y").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.h]\nextends = \"workspace-write\"\n\
             filesystem = {{ \"**/*.secret\" = \"none\", {:?} = \"none\" }}\n",
            private.to_str().unwrap()
        ),
    )
    .unwrap();
    let output = in_profile(
        &ws,
        config.to_str().unwrap(),
        "h",
        &["find", private.to_str().unwrap()],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(stdout, format!("{}\n", private.display()), "{stdout}");
}

/// Probe 154: a profile granting a file that one of its deny globs
/// matches refused every start with "is no longer the directory the
/// policy was made for (replaced or moved since)". The glob holds (a deny
/// glob holds over every grant), the sandbox starts, and `policy lint`
/// says the grant gives nothing.
#[test]
fn a_grant_on_a_file_a_deny_glob_matches_gives_nothing_and_is_warned_of() {
    let (dir, ws) = workspace();
    std::fs::write(ws.join("api.secret"), "TOPSECRET").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.reader]\nextends = \"workspace-write\"\n\
             filesystem = {{ \"**/*.secret\" = \"none\", {:?} = \"read\" }}\n",
            ws.join("api.secret").to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = in_profile(&ws, config, "reader", &["cat", "api.secret"]);
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("cannot enforce"), "{stderr}");
    assert!(stderr.contains("api.secret: Permission denied"), "{stderr}");
    assert!(!text(&output.stdout).contains("TOPSECRET"));
    // Said as the sandbox starts, as lint says it (probe 203: only lint
    // did), and as a session starts.
    let warned = |stderr: &str| {
        stderr.contains("the profile grants read access to")
            && stderr.contains("which a deny glob of its own matches")
    };
    assert!(warned(&stderr), "{stderr}");
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            config,
            "--profile",
            "reader",
            "--",
            "true",
        ],
    );
    let stderr = text(&output.stderr);
    assert!(warned(&stderr), "{stderr}");
    let output = execgate(&ws, &["policy", "lint", "--config", config]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("profile reader grants read access to")
            && stderr.contains("api.secret")
            && stderr.contains("deny glob"),
        "{stderr}"
    );
    assert_ne!(output.status.code(), Some(0), "{stderr}");
}

/// Probe 154: a rule's profile granting a path the session's profile
/// hides grants nothing there (an escalation keeps the session's
/// denials), and neither `policy lint` nor the session's start said so.
#[test]
fn a_rules_grant_on_a_path_the_session_hides_is_warned_of() {
    let (dir, ws) = workspace();
    let refdata = dir.path().join("refdata");
    std::fs::create_dir(&refdata).unwrap();
    std::fs::write(refdata.join("table.txt"), "REFERENCE").unwrap();
    let rules = dir.path().join("team.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"/usr/bin/cat\"], decision = \"allow\", execution = \"withref\")\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "default_profile = \"session\"\nrules = [{rules:?}]\n\
             [profiles.session]\nextends = \"workspace-write\"\nfilesystem = {{ {refdata:?} = \"none\" }}\n\
             [profiles.withref]\nextends = \"workspace-write\"\nfilesystem = {{ {refdata:?} = \"write\" }}\n",
            rules = rules.to_str().unwrap(),
            refdata = refdata.to_str().unwrap(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let warned = |stderr: &str| {
        stderr.contains("profile withref grants write access to")
            && stderr.contains("which the profile session hides")
    };
    let output = execgate(&ws, &["policy", "lint", "--config", config]);
    let stderr = text(&output.stderr);
    assert!(warned(&stderr), "{stderr}");
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    let log = dir.path().join("audit.jsonl");
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            config,
            "--audit-log",
            log.to_str().unwrap(),
            "--",
            &format!("cat {}/table.txt", refdata.display()),
        ],
    );
    let stderr = text(&output.stderr);
    assert!(warned(&stderr), "{stderr}");
    assert!(!text(&output.stdout).contains("REFERENCE"));
}

/// Probe 154: under a supervisor (deny globs), which opens files on the
/// program's behalf from the sandbox's root, a program that had jailed
/// itself with `chroot` read the sandbox's files instead of its jail's.
/// `chroot` is refused wherever a supervisor resolves paths (creations
/// and connections too), plainly; elsewhere it works as the kernel does.
#[test]
fn chroot_is_refused_where_a_supervisor_opens_files() {
    let (dir, ws) = workspace();
    std::fs::create_dir(ws.join("jail")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.g]\nextends = \"workspace-write\"\nfilesystem = { \"**/*.secret\" = \"none\" }\n\
         [profiles.free]\nextends = \"read-only\"\nnetwork = \"enabled\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    std::fs::write(ws.join("jail/inside"), "").unwrap();
    // In the program itself: an `unshare` program's exec would lose the
    // capabilities a user namespace gave it.
    let script = "import ctypes, os\n\
                  libc = ctypes.CDLL(None, use_errno=True)\n\
                  libc.unshare(0x10000000)\n\
                  if libc.chroot(b'jail') != 0:\n    print('chroot:', os.strerror(ctypes.get_errno()))\n\
                  else:\n    print('jailed:', sorted(os.listdir('/')))\n";
    let jailed = |profile: &str| {
        let output = in_profile(&ws, config, profile, &["python3", "-c", script]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    // No supervisor: nothing is opened on the program's behalf.
    assert_eq!(jailed("free"), "jailed: ['inside']\n");
    // One that watches creations and connections only, and one that
    // watches every open (deny globs).
    assert_eq!(
        jailed("workspace-write"),
        "chroot: Operation not permitted\n"
    );
    assert_eq!(jailed("g"), "chroot: Operation not permitted\n");
}

/// Review 34: an absolute deny glob whose literal start is reached through
/// a link hid nothing: the files found were recorded by the link's path,
/// covered there (outside the view), and the supervisor matched the real
/// path against the glob as written.
#[test]
fn a_deny_glob_reached_through_a_link_hides_what_it_names() {
    let (dir, ws) = workspace();
    let real = dir.path().join("ref");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("k.pem"), "PRIVATE").unwrap();
    std::fs::write(real.join("open.txt"), "OPEN").unwrap();
    let link = dir.path().join("lnk");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.g]\nextends = \"workspace-write\"\nfilesystem = {{ {:?} = \"none\" }}\n",
            format!("{}/*.pem", link.display())
        ),
    )
    .unwrap();
    for path in [link.join("k.pem"), real.join("k.pem")] {
        let output = in_profile(
            &ws,
            config.to_str().unwrap(),
            "g",
            &[
                "cat",
                path.to_str().unwrap(),
                link.join("open.txt").to_str().unwrap(),
            ],
        );
        let stdout = text(&output.stdout);
        assert!(!stdout.contains("PRIVATE"), "{}: {stdout}", path.display());
        assert!(stdout.contains("OPEN"), "{}", text(&output.stderr));
    }
}

/// Probe 218: a `"none"` entry naming a path with `[` in it (pasted, not
/// meant as a glob) was read as a glob whose `[1]` is a class: it hid
/// `creds1`, and `creds[1]` stayed readable, in a sandbox and in a
/// session, with nothing said. The name the text spells is hidden too,
/// where the glob applies (a relative one: under the writable roots;
/// review 220: not beside the config file).
#[test]
fn a_hidden_path_with_brackets_in_its_name_is_hidden() {
    let (dir, ws) = workspace();
    let creds = dir.path().join("creds[1]");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("token"), "TOKEN").unwrap();
    let old_keys = ws.join("sub/keys [old]");
    std::fs::create_dir(ws.join("sub")).unwrap();
    std::fs::create_dir(&old_keys).unwrap();
    std::fs::write(old_keys.join("id"), "OLDKEY").unwrap();
    std::fs::write(dir.path().join("creds1"), "CLASS").unwrap();
    std::fs::write(dir.path().join("open.txt"), "OPEN").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.g]\nextends = \"workspace-write\"\n\
             filesystem = {{ {:?} = \"none\", \"keys [old]\" = \"none\" }}\n",
            creds.display().to_string()
        ),
    )
    .unwrap();
    let files = [
        creds.join("token"),
        old_keys.join("id"),
        dir.path().join("creds1"),
        dir.path().join("open.txt"),
    ];
    let files: Vec<&str> = files.iter().map(|file| file.to_str().unwrap()).collect();
    let mut program = vec!["cat"];
    program.extend(&files);
    let in_sandbox = in_profile(&ws, config.to_str().unwrap(), "g", &program);
    let quoted: Vec<String> = files.iter().map(|file| format!("'{file}'")).collect();
    let command = format!("cat {}", quoted.join(" "));
    let in_session = execgate(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--profile",
            "g",
            "--",
            &command,
        ],
    );
    for (way, output) in [("sandbox", in_sandbox), ("run", in_session)] {
        let stdout = text(&output.stdout);
        let stderr = text(&output.stderr);
        assert!(!stdout.contains("TOKEN"), "{way}: {stdout}");
        assert!(!stdout.contains("OLDKEY"), "{way}: {stdout}");
        // The glob still reads as one.
        assert!(!stdout.contains("CLASS"), "{way}: {stdout}");
        assert!(stdout.contains("OPEN"), "{way}: {stderr}");
    }
}

/// Probe 218: a relative glob whose start passes a link in the workspace
/// (`conf` -> a directory elsewhere) does not hide the files through it,
/// and nothing said so.
#[test]
fn a_relative_glob_through_a_link_is_warned_of() {
    let (dir, ws) = workspace();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, ws.join("conf")).unwrap();
    std::fs::create_dir(ws.join("keys")).unwrap();
    // Into the same workspace, under another name (review 222: not warned
    // of, as a link into a writable root, and nothing was hidden).
    std::fs::create_dir(ws.join("realconf")).unwrap();
    std::os::unix::fs::symlink(ws.join("realconf"), ws.join("conf2")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[profiles.g]\nextends = \"workspace-write\"\n\
         filesystem = { \"conf/*.key\" = \"none\", \"keys/*.key\" = \"none\", \
         \"conf2/*.key\" = \"none\" }\n",
    )
    .unwrap();
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--profile",
            "g",
            "--",
            "true",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warning = format!(
        "the profile's glob conf/*.key does not reach through {}, a link",
        ws.join("conf").display()
    );
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(
        stderr.contains("glob conf2/*.key does not reach"),
        "{stderr}"
    );
    assert!(!stderr.contains("keys/*.key"), "{stderr}");
}

/// Probe 181: a command that starts with `-` or `+` was taken by zsh as
/// its options ("bad option string"), where `policy check --as-run`
/// decides it as a command (`- cmd` is zsh's precommand modifier).
#[test]
fn run_takes_a_command_that_starts_with_a_dash_as_a_command() {
    let (_dir, ws) = workspace();
    for (command, status, stdout, stderr_has) in [
        ("- echo hi", 0, "hi\n", None),
        ("-", 0, "", None),
        ("+x", 127, "", Some("command not found: +x")),
    ] {
        let output = execgate(&ws, &["run", "--", command]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{command}: {stderr}");
        assert_eq!(text(&output.stdout), stdout, "{command}: {stderr}");
        match stderr_has {
            Some(said) => assert!(stderr.contains(said), "{command}: {stderr}"),
            // The shell said nothing (the workspace holds the audit log,
            // which execgate warns of).
            None => assert!(
                stderr
                    .lines()
                    .all(|line| line.starts_with("execgate: warning:")),
                "{command}: {stderr}"
            ),
        }
    }
}

/// Review 34: `/run` is hidden by an empty tmpfs, not by a rule, and the
/// files a deny glob matched there still showed in it by name (each
/// covered by `/dev/null`, with the directories on its way).
#[test]
fn run_shows_nothing_of_the_denied_files_in_it() {
    let (dir, ws) = workspace();
    let secrets = tempfile::Builder::new()
        .prefix("execgate-cli-secrets")
        .tempdir_in("/run")
        .unwrap();
    std::fs::create_dir(secrets.path().join("sub")).unwrap();
    std::fs::write(secrets.path().join("sub/key.secret"), "S").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.g]\nextends = \"workspace-write\"\nfilesystem = {{ {:?} = \"none\" }}\n",
            format!("{}/**/*.secret", secrets.path().display())
        ),
    )
    .unwrap();
    let output = in_profile(&ws, config.to_str().unwrap(), "g", &["find", "/run"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!stdout.contains("execgate-cli-secrets"), "{stdout}");
}

/// Review 34: a grant held back by the rule's own profile was blamed on
/// the session's, and `policy lint` warned of it twice; a directory a glob
/// matches was said to be hidden, with advice that does not help. Probe
/// 156: `policy lint` warned of no skill's grants.
#[test]
fn held_back_grants_are_blamed_on_what_holds_them_back_once() {
    let (dir, ws) = workspace();
    let refdata = dir.path().join("ref");
    std::fs::create_dir_all(&refdata).unwrap();
    std::fs::write(refdata.join("k.pem"), "K").unwrap();
    // Under the workspace, where the session's relative glob applies.
    std::fs::create_dir_all(ws.join("secrets")).unwrap();
    let rules = dir.path().join("team.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"/usr/bin/cat\"], decision = \"allow\", execution = \"withpem\")\n",
    )
    .unwrap();
    let skill = dir.path().join("skills/notes");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(skill.join("SKILL.md"), "---\nname: notes\n---\n").unwrap();
    std::fs::write(
        skill.join("permissions.toml"),
        format!("filesystem = {{ {:?} = \"read\" }}\n", ws.join("secrets")),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "default_profile = \"session\"\nrules = [{rules:?}]\nskills = [{skills:?}]\n\
             [profiles.session]\nextends = \"workspace-write\"\nfilesystem = {{ \"**/secrets\" = \"none\" }}\n\
             [profiles.withpem]\nextends = \"workspace-write\"\n\
             filesystem = {{ {pem_glob:?} = \"none\", {pem:?} = \"read\" }}\n",
            rules = rules.to_str().unwrap(),
            skills = dir.path().join("skills").to_str().unwrap(),
            pem_glob = format!("{}/*.pem", refdata.display()),
            pem = refdata.join("k.pem").to_str().unwrap(),
        ),
    )
    .unwrap();
    let output = execgate(
        &ws,
        &["policy", "lint", "--config", config.to_str().unwrap()],
    );
    let stderr = text(&output.stderr);
    let own = "profile withpem grants read access to";
    assert_eq!(stderr.matches(own).count(), 1, "{stderr}");
    assert!(
        stderr.contains("which a deny glob of its own matches"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skill notes grants read access to")
            && stderr.contains("which a deny glob of the profile session matches"),
        "{stderr}"
    );
    assert!(!stderr.contains("grant a path below it"), "{stderr}");
    assert!(stderr.contains(", 2 warning(s)"), "{stderr}");
}

/// Probe 162: a rule's profile with `network = "enabled"` took its commands
/// past the session's limited network (its deny entries and forbidden
/// network rules), and nothing said so. Session start and lint warn.
#[test]
fn a_rule_profile_that_enables_the_network_is_warned_of() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("team.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"wget\"], decision = \"allow\", execution = \"open\")\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "default_profile = \"lim\"\n\
         [profiles.lim]\nextends = \"workspace-write\"\n\
         [profiles.lim.network]\nmode = \"limited\"\ndomains = { \"evil.test\" = \"deny\" }\n\
         [profiles.open]\nnetwork = \"enabled\"\n",
    )
    .unwrap();
    let (config, rules) = (config.to_str().unwrap(), rules.to_str().unwrap());
    let warning = "profile open enables the network, so the commands it runs connect directly, \
                   past this session's limited network (lim)";
    let run = execgate(
        &ws,
        &["run", "--config", config, "--rules", rules, "--", "true"],
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(
        text(&run.stderr).matches(warning).count(),
        1,
        "{}",
        text(&run.stderr)
    );
    let lint = execgate(
        &ws,
        &["policy", "lint", "--config", config, "--rules", rules],
    );
    assert!(
        text(&lint.stderr).contains(warning),
        "{}",
        text(&lint.stderr)
    );
    // Where the session's network is not limited, there is nothing to pass.
    let restricted = execgate(
        &ws,
        &[
            "run",
            "--config",
            config,
            "--profile",
            "workspace-write",
            "--rules",
            rules,
            "--",
            "true",
        ],
    );
    assert!(
        !text(&restricted.stderr).contains(warning),
        "{}",
        text(&restricted.stderr)
    );
}

/// Probe 156: a skill's `:cwd` grant was shown and recorded as `:cwd`
/// under the directory the script was called from, while it granted the
/// session's directory; and its narrower network was shown under a session
/// whose wider one the script got. Both are shown and recorded as the
/// script gets them.
#[test]
fn a_skills_grants_are_recorded_as_the_script_gets_them() {
    let (dir, ws) = workspace();
    std::fs::create_dir(ws.join("sub")).unwrap();
    let skill = dir.path().join("skills/notes");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(skill.join("SKILL.md"), "---\nname: notes\n---\n").unwrap();
    std::fs::write(
        skill.join("permissions.toml"),
        "filesystem = { \":cwd\" = \"write\" }\n\
         network = { mode = \"limited\", domains = { \"pypi.org\" = \"allow\" } }\n",
    )
    .unwrap();
    let script = skill.join("scripts/t.sh");
    std::fs::write(&script, "#!/bin/sh\ntrue\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "default_profile = \"open\"\n[profiles.open]\nextends = \"read-only\"\nnetwork = \"enabled\"\n",
    )
    .unwrap();
    let log = dir.path().join("audit.jsonl");
    // The per-user configuration outside what `:cwd` grants, or the
    // escalation is refused for it.
    let (config_home, state) = (dir.path().join("no-config"), dir.path().join("state"));
    let env = [
        ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
        ("XDG_STATE_HOME", state.to_str().unwrap()),
    ];
    let output = execgate_with_env(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--skills",
            dir.path().join("skills").to_str().unwrap(),
            "--approval",
            "approve",
            "--audit-log",
            log.to_str().unwrap(),
            "--",
            &format!("cd sub && {}", script.display()),
        ],
        &env,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let escalations: Vec<_> = records_of(&log, "decision")
        .into_iter()
        .filter(|record| record["execgate"]["decision"] == "escalate")
        .collect();
    let [record] = escalations.as_slice() else {
        panic!("one escalation: {escalations:?}: {}", text(&output.stderr));
    };
    let grants: Vec<&str> = record["execgate"]["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|grant| grant.as_str())
        .collect();
    let ws = std::fs::canonicalize(&ws).unwrap();
    assert_eq!(
        grants,
        [
            format!("{}=write", ws.display()).as_str(),
            "network=enabled"
        ],
        "{record}"
    );
}

/// Probe 160: the table showed an unsandboxed escalation and one in a
/// sandbox with grants alike, did not say where either ran, and showed a
/// `forbidden` rule's denial and a person's alike, without the reason.
#[test]
fn the_audit_table_says_how_and_where_an_escalation_ran_and_why_a_denial() {
    let (dir, ws) = workspace();
    std::fs::create_dir(ws.join("a")).unwrap();
    let rules = dir.path().join("r.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"touch\"], decision = \"allow\")\n\
         prefix_rule(pattern = [\"rm\", \"-rf\"], decision = \"forbidden\", justification = \"no trees\")\n",
    )
    .unwrap();
    let log = dir.path().join("audit.jsonl");
    let log = log.to_str().unwrap();
    let rules = rules.to_str().unwrap();
    execgate(
        &ws,
        &[
            "run",
            "--rules",
            rules,
            "--audit-log",
            log,
            "--",
            "cd a && touch stamp; rm -rf x",
        ],
    );
    let table = text(&execgate(&ws, &["audit", log]).stdout);
    let ws = std::fs::canonicalize(&ws).unwrap();
    let escalated = format!("success (unsandboxed) in {}", ws.join("a").display());
    assert!(
        table
            .lines()
            .any(|line| line.contains("/usr/bin/touch") && line.ends_with(&escalated)),
        "{table}"
    );
    assert!(
        table.lines().any(|line| line.contains(" deny ")
            && line.contains("failure: ")
            && line.contains("no trees")),
        "{table}"
    );
}

/// Probe 160: a rule's profile whose write grant a link leads elsewhere
/// (one an earlier sandbox could have made) was warned of by `policy lint`
/// only; the session whose escalation then wrote there said nothing.
#[test]
fn a_rules_write_grant_through_a_link_is_warned_of_at_the_start() {
    let (dir, ws) = workspace();
    let secret = dir.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::os::unix::fs::symlink(&secret, ws.join("out")).unwrap();
    let rules = dir.path().join("r.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"cp\"], decision = \"allow\", execution = \"outw\")\n\
         prefix_rule(pattern = [\"mv\"], decision = \"allow\", execution = \"outw2\")\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "rules = [{:?}]\n[profiles.outw]\nextends = \"workspace-write\"\n\
             filesystem = {{ {:?} = \"write\" }}\n\
             [profiles.outw2]\nextends = \"outw\"\n",
            rules.to_str().unwrap(),
            ws.join("out").to_str().unwrap()
        ),
    )
    .unwrap();
    let output = execgate(
        &ws,
        &["run", "--config", config.to_str().unwrap(), "--", "true"],
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("profile outw grants write access to") && stderr.contains("through a link"),
        "{stderr}"
    );
    // Review 34c: once, not again for a profile that only inherits it.
    assert_eq!(stderr.matches("through a link").count(), 1, "{stderr}");
}

/// Checks that a session's start under `config`, and `policy lint` of it,
/// each say `expected` once.
fn warned_once_at_the_start_and_by_lint(ws: &Path, config: &Path, expected: &str) {
    for args in [
        &["run", "--config", config.to_str().unwrap(), "--", "true"][..],
        &["policy", "lint", "--config", config.to_str().unwrap()],
    ] {
        let output = execgate(ws, args);
        let stderr = text(&output.stderr);
        assert_eq!(stderr.matches(expected).count(), 1, "{args:?}: {stderr}");
    }
}

/// A rule's profile granting a path that does not exist, or hiding one,
/// was warned of by `policy lint` only; the session said nothing, and its
/// escalations had no grant there. `execgate sandbox --profile`, which
/// debugs a profile, warned of nothing in it either.
#[test]
fn a_rules_grant_on_a_missing_path_is_warned_of_at_the_start() {
    let (dir, ws) = workspace();
    let rules = dir.path().join("r.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"cp\"], decision = \"allow\", execution = \"gone\")\n",
    )
    .unwrap();
    let missing = dir.path().join("not-made-yet");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "rules = [{:?}]\n[profiles.gone]\nextends = \"workspace-write\"\n\
             filesystem = {{ {:?} = \"write\" }}\n",
            rules.to_str().unwrap(),
            missing.to_str().unwrap()
        ),
    )
    .unwrap();
    let expected = format!(
        "profile gone grants write access to {}, which does not exist",
        missing.display()
    );
    warned_once_at_the_start_and_by_lint(&ws, &config, &expected);
    // `execgate sandbox`, which debugs a profile, said nothing of its own.
    let output = execgate(
        &ws,
        &[
            "sandbox",
            "--config",
            config.to_str().unwrap(),
            "--profile",
            "gone",
            "--",
            "true",
        ],
    );
    let stderr = text(&output.stderr);
    let expected = format!(
        "the profile grants write access to {}, which does not exist",
        missing.display()
    );
    assert_eq!(stderr.matches(&expected).count(), 1, "{stderr}");
}

/// Probe 181: a skill's write grant that a link led elsewhere was granted
/// where the link led, with no warning: its permissions are read
/// resolved, so the check on the grants could never see the link.
/// `policy lint` says it too.
#[test]
fn a_skills_write_grant_through_a_link_is_warned_of() {
    let (dir, ws) = workspace();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, ws.join("notes")).unwrap();
    let skill = dir.path().join("skills/nt");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(skill.join("SKILL.md"), "---\nname: nt\n---\n").unwrap();
    std::fs::write(
        skill.join("permissions.toml"),
        format!(
            "filesystem = {{ {:?} = \"write\" }}\n",
            ws.join("notes").to_str().unwrap()
        ),
    )
    .unwrap();
    let skills = dir.path().join("skills");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("skills = [{:?}]\n", skills.to_str().unwrap()),
    )
    .unwrap();
    let expected = format!(
        "skill nt grants write access to {}, which leads to {} through a link",
        ws.join("notes").display(),
        elsewhere.display()
    );
    warned_once_at_the_start_and_by_lint(&ws, &config, &expected);
}

/// Probe 160: an argument redacted by `[audit] redact_args` and one given
/// as the text `[REDACTED]` read alike in the table and the summary.
#[test]
fn a_redacted_argument_reads_otherwise_than_one_written_so() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[audit]\nredact_args = [\"*secret*\"]\n").unwrap();
    let log = dir.path().join("audit.jsonl");
    let log = log.to_str().unwrap();
    execgate(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--audit-log",
            log,
            "--",
            "/usr/bin/true '[REDACTED]'; /usr/bin/true --secret=hunter2",
        ],
    );
    let table = text(&execgate(&ws, &["audit", log]).stdout);
    assert!(table.contains("/usr/bin/true [REDACTED]  ["), "{table}");
    assert!(
        table.contains("/usr/bin/true <redacted argument>  ["),
        "{table}"
    );
    assert!(!table.contains("hunter2"), "{table}");
}

/// Review 34c: in the table's new last column, a grant's path could pass
/// for other grants, and a working directory the server could not verify
/// (the requester's word; nothing was escalated from it) read as where
/// the escalation ran.
#[test]
fn the_audit_table_quotes_grants_and_marks_an_unverified_directory() {
    let (dir, ws) = workspace();
    let log = dir.path().join("handed.jsonl");
    let record = |grants: serde_json::Value, unverified: Option<&str>| {
        serde_json::json!({
            "@timestamp": "2026-12-01T10:00:00Z",
            "event": {"action": "decision", "outcome": "success"},
            "session_id": "s",
            "process": {"executable": "/usr/bin/uname", "args": ["uname"], "working_directory": "/dev/shm/home"},
            "execgate": {
                "decision": "escalate", "decided_by": "rule", "execution": "permissions",
                "grants": grants, "working_directory_unverified": unverified,
            },
        })
    };
    let lines = [
        // Probe 238: a session's grants read as more grants.
        serde_json::json!({
            "@timestamp": "2026-12-01T09:59:59Z",
            "event": {"action": "session-start", "outcome": "success"},
            "session_id": "s",
            "process": {},
            "session": {"profile": "odd", "sandbox": ["/w/x, network=enabled=write", "network=restricted"]},
        }),
        record(
            serde_json::json!(["/o/a b), network=enabled (x=write", "network=restricted"]),
            None,
        ),
        record(serde_json::json!([]), Some("not the requester's directory")),
        // Probe 214: a request a program wrote itself, from a directory
        // not its own, read as the shell's in the table; and `--json`
        // passed its 8-bit CSI and right-to-left override on raw.
        serde_json::json!({
            "@timestamp": "2026-12-01T10:00:01Z",
            "event": {"action": "decision", "outcome": "success"},
            "session_id": "s",
            "process": {
                "executable": "/usr/bin/git",
                "args": ["git", "push", "\u{9b}2J", "a\u{202e}b"],
                "working_directory": "/elsewhere",
            },
            "execgate": {
                "decision": "run", "decided_by": "default",
                "working_directory_unverified": "not the requester's directory",
            },
        }),
    ];
    let lines = lines.map(|line| line.to_string()).join("\n");
    std::fs::write(&log, format!("{lines}\n")).unwrap();
    let table = text(&execgate(&ws, &["audit", log.to_str().unwrap()]).stdout);
    assert!(
        table.contains("success from /elsewhere, unverified (not the requester's directory)"),
        "{table}"
    );
    assert!(
        table.contains(r#"profile odd: "/w/x, network=enabled=write", network=restricted"#),
        "{table}"
    );
    let json = text(&execgate(&ws, &["audit", "--json", log.to_str().unwrap()]).stdout);
    assert!(json.contains(r#""\u009b2J","a\u202eb""#), "{json}");
    assert!(!json.contains(['\u{9b}', '\u{202e}']), "{json}");
    assert!(
        table.contains(
            "(permissions: \"/o/a b), network=enabled (x=write\", network=restricted) in /dev/shm/home"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "(permissions) from /dev/shm/home, unverified (not the requester's directory): not run"
        ),
        "{table}"
    );
}

/// A session that has spent its share of the log has its commands refused,
/// and its end, written whatever the share left, says how many records
/// were not written in all rather than that the log is written again
/// (probe 176, review 37).
#[test]
fn a_session_past_its_share_says_what_it_lost_at_its_end() {
    let (dir, ws) = workspace();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[audit]\nmax_bytes = 65536\nkeep = 1\n").unwrap();
    let log = dir.path().join("audit.jsonl");
    let output = execgate(
        &ws,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--audit-log",
            log.to_str().unwrap(),
            "--",
            // A large request is refused first, then small ones fit again
            // until they too are refused: the end counts them all.
            "b=${(l:30000::y:)}; until ! /bin/true $b 2>/dev/null; do :; done; refused=1; \
             for i in {1..200}; do /bin/true 2>/dev/null || ((refused++)); done; print $refused",
        ],
    );
    let stderr = text(&output.stderr);
    let refused: u64 = text(&output.stdout).trim().parse().unwrap();
    assert!(refused > 0, "{stderr}");
    assert!(stderr.contains("this session has taken"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the session ended with {refused} record(s) in all not in the audit log"
        )),
        "{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .last()
            .unwrap_or("")
            .contains("written again"),
        "{stderr}"
    );
}

/// `execgate run -- command` under `ulimit -n 256` (the process has 21
/// relays, each sandbox 10), in `ws`, in a limited profile that allows
/// 127.0.0.6, with `curl` escalated `turn-default` (a sandbox of its own
/// each), recording to `dir`'s `audit.jsonl`.
fn relays_limited_run(dir: &Path, ws: &Path, command: &str) -> Command {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[profiles.lim]\nextends = \"workspace-write\"\n[profiles.lim.network]\n\
         mode = \"limited\"\ndomains = { \"127.0.0.6\" = \"allow\" }\n",
    )
    .unwrap();
    let rules = dir.join("curl.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"curl\"], decision = \"allow\", execution = \"turn-default\")\n",
    )
    .unwrap();
    let mut run = Command::new("sh");
    run.args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_execgate"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--rules")
        .arg(&rules)
        .args(["--profile", "lim", "--approval", "deny", "--audit-log"])
        .arg(dir.join("audit.jsonl"))
        .args(["--", command])
        .current_dir(ws)
        .env("XDG_CONFIG_HOME", ws.join("no-config"))
        .env("XDG_STATE_HOME", ws.join("state"));
    run
}

/// A connection the proxy closes unread because this process's relays are
/// all in use is recorded as refused, with why (probe 180: nothing said
/// so, on the record or off it). `ulimit -n 256` leaves the process 21
/// relays and each sandbox 10; three escalations' sandboxes ask for 30.
#[test]
fn a_connection_past_the_processs_relays_is_refused_on_the_record() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (dir, ws) = workspace();
    // An allowed server that holds what it accepts, answering nothing.
    let listener = std::net::TcpListener::bind("127.0.0.6:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let log = dir.path().join("audit.jsonl");
    let command = format!(
        "for i in 1 2 3; do curl -s --parallel --parallel-immediate --parallel-max 10 -m 3 \
         'http://127.0.0.6:{port}/'$i'/[1-10]' -o /dev/null & done; wait"
    );
    let output = relays_limited_run(dir.path(), &ws, &command)
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    let records = std::fs::read_to_string(&log).unwrap();
    let refused = records
        .lines()
        .filter(|line| line.contains("network-close") && line.contains("relays are all in use"))
        .count();
    let relayed = accepted.load(Ordering::SeqCst);
    assert!(refused > 0, "{stderr}\n{records}");
    assert_eq!(refused + relayed, 30, "{stderr}\n{records}");
}

/// Probe 241: one sandbox took at most half of the process's relays, but
/// two more took the other half, and every other sandbox's connections
/// were closed unread. A sandbox that holds none still gets one: the last
/// quarter is kept for first connections. `ulimit -n 256` leaves the
/// process 21 relays and each sandbox 10; three escalations' sandboxes
/// hold 10 connections each to a server that never answers, then a
/// fourth asks one that does.
#[test]
fn a_sandbox_holding_no_relay_gets_one_while_others_hold_the_rest() {
    use std::io::{Read, Write};
    let (dir, ws) = workspace();
    let holding = std::net::TcpListener::bind("127.0.0.6:0").unwrap();
    let held_port = holding.local_addr().unwrap().port();
    let (accepted, held) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in holding.incoming().flatten() {
            kept.push(stream);
            let _ = accepted.send(());
        }
    });
    let answering = std::net::TcpListener::bind("127.0.0.6:0").unwrap();
    let answer_port = answering.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in answering.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nanswered",
            );
        }
    });
    let log = dir.path().join("audit.jsonl");
    std::fs::write(ws.join("go"), "").unwrap();
    // The fourth waits until the others hold what they can: `held`
    // counts the connections the holding server accepted.
    let command = format!(
        "for i in 1 2 3; do curl -s --parallel --parallel-immediate --parallel-max 10 -m 20 \
         'http://127.0.0.6:{held_port}/'$i'/[1-10]' >/dev/null 2>&1 & holding+=($!); done; \
         while [[ -e go ]]; do sleep 0.1; done; \
         curl -s -m 10 http://127.0.0.6:{answer_port}/; print; kill $holding; wait"
    );
    let run = relays_limited_run(dir.path(), &ws, &command)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // At least what the first two sandboxes may hold, then a moment for
    // the rest to be taken or refused.
    for _ in 0..16 {
        held.recv_timeout(std::time::Duration::from_secs(20))
            .expect("the holding connections were never made");
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::remove_file(ws.join("go")).unwrap();
    let output = run.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    let records = std::fs::read_to_string(&log).unwrap();
    assert!(
        records.contains("relays are all in use"),
        "the others were held back: {stderr}\n{records}"
    );
    assert_eq!(text(&output.stdout), "answered\n", "{stderr}\n{records}");
}

/// For a grant on `path`: a permissions request for write access to it,
/// and rules that escalate `tee` into `profile` (which grants it), in
/// `dir`.
fn grant_files(dir: &Path, path: &str, profile: &str) -> (PathBuf, PathBuf) {
    let request = write_request(dir, "request.toml", path);
    let rules = dir.join("tee.rules");
    std::fs::write(
        &rules,
        format!(
            "prefix_rule(pattern = [\"tee\"], decision = \"allow\", execution = {profile:?})\n"
        ),
    )
    .unwrap();
    (request, rules)
}

/// `execgate args` in `ws` with per-user configuration and state in `dir`,
/// outside the workspace: grants then leave the sandbox.
fn execgate_configured_outside(dir: &Path, ws: &Path, args: &[&str]) -> Output {
    let (config_home, state_home) = (dir.join("config"), dir.join("state"));
    execgate_with_env(
        ws,
        args,
        &[
            ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
            ("XDG_STATE_HOME", state_home.to_str().unwrap()),
        ],
    )
}

/// Probe 242: a grant on the audit log's file (asked for with
/// `--request-permissions`, or a rule's profile's) was more particular
/// than the `none` that hides the log's directory, and so won: a command
/// emptied the log, every earlier session's records with it, and wrote
/// what it liked there. Such a grant is refused, as one in the sessions'
/// directory is, and the log stays whole.
#[test]
fn a_grant_on_the_audit_log_is_refused() {
    let (dir, ws) = workspace();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = std::fs::canonicalize(&logs).unwrap().join("audit.jsonl");
    let log_arg = log.to_str().unwrap();
    let (request, rules) = grant_files(dir.path(), log_arg, "logw");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\nlog = {log_arg:?}\n[profiles.logw]\nextends = \"workspace-write\"\n\
             filesystem = {{ {log_arg:?} = \"write\" }}\n"
        ),
    )
    .unwrap();
    let forge = format!("print forged | tee -a {log_arg}");
    // Refused, saying why, and nothing forged in the log: its records.
    let refused_and_unwritten = |output: Output| {
        let stderr = text(&output.stderr);
        assert_ne!(output.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{log_arg} cannot be granted: it is the audit log's"
            )),
            "{stderr}"
        );
        let records = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!records.lines().any(|line| line == "forged"), "{records}");
        records
    };
    let runs: [&[&str]; 3] = [
        &[
            "--approval",
            "approve",
            "--request-permissions",
            request.to_str().unwrap(),
        ],
        &[
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
        // The session's own profile (review 243, probe 244): the session
        // does not start.
        &["--config", config.to_str().unwrap(), "--profile", "logw"],
    ];
    for (index, extra) in runs.into_iter().enumerate() {
        let mut args = vec!["run", "--audit-log", log_arg];
        args.extend_from_slice(extra);
        args.extend(["--", &forge]);
        let records = refused_and_unwritten(execgate_configured_outside(dir.path(), &ws, &args));
        // Nothing was emptied either: the first two sessions started.
        assert_eq!(
            records.matches("\"session-start\"").count(),
            index.min(1) + 1,
            "{records}"
        );
    }
    // `execgate sandbox`, which records nothing, hides the log as well.
    let append = format!("echo forged >> {log_arg}");
    let output = in_profile(
        &ws,
        config.to_str().unwrap(),
        "logw",
        &["sh", "-c", &append],
    );
    refused_and_unwritten(output);
}

/// Probe 244: the `--config` file is kept read-only (`=read`), but a grant
/// on the file itself (asked for, or a rule's profile's) was as particular
/// and wider, and won: a command wrote `danger-full-access` into it, and
/// the next session ran unsandboxed. Such a grant is refused.
#[test]
fn a_grant_on_the_config_file_is_refused() {
    let (dir, ws) = workspace();
    let team = dir.path().join("team");
    std::fs::create_dir(&team).unwrap();
    let config = std::fs::canonicalize(&team).unwrap().join("config.toml");
    let config_arg = config.to_str().unwrap();
    let text_before = format!(
        "[profiles.notes]\nextends = \"workspace-write\"\n\
         filesystem = {{ {config_arg:?} = \"write\" }}\n"
    );
    std::fs::write(&config, &text_before).unwrap();
    let (request, rules) = grant_files(dir.path(), config_arg, "notes");
    let rewrite = format!("print 'default_profile = \"danger-full-access\"' | tee -a {config_arg}");
    let runs: [&[&str]; 2] = [
        &[
            "--approval",
            "approve",
            "--request-permissions",
            request.to_str().unwrap(),
        ],
        &["--rules", rules.to_str().unwrap()],
    ];
    for extra in runs {
        let mut args = vec!["run", "--config", config_arg];
        args.extend_from_slice(extra);
        args.extend(["--", &rewrite]);
        let output = execgate_configured_outside(dir.path(), &ws, &args);
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{config_arg} cannot be granted: it is the config's"
            )),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), text_before);
    }
}
