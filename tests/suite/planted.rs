//! An allowed program never runs what the sandbox planted (issue 14, point
//! 2), through the real zsh in the real sandbox:
//!
//! - a program that reads its instructions from files (git's repository,
//!   a Makefile, `package.json`, a cargo build script, `setup.py`, a
//!   script) is not escalated when the sandbox could have written them: it
//!   runs in place, and the decision's note says why. One test per planted
//!   mechanism; each plants a command that writes outside the sandbox,
//!   which only an escalation could do.
//! - an escalated command starts in the directory the decision was made
//!   on, and an escalated script is the file that was checked, even when
//!   the path is swapped during a slow approval.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use execgate_core_bridge::{ApprovalAnswer, ApprovalReason, ApprovalRequest};

use super::policy::{provenances, run, text, Place, Setup};
use super::*;

/// Runs `script` (with `{ws}`, `{outside}` replaced) in a workspace-write
/// session under `rules`, and checks that nothing was written to
/// `{outside}/planted` and that every decision a rule made on `program` (a
/// canonical path's basename) was refused with a note naming what it
/// reads.
async fn planted_command_stays_in_the_sandbox(rules: &str, script: &str, program: &str) {
    let place = Place::new();
    let recorder = Recorder::default();
    let session = Setup::rules(place.rules(rules)).start(&place, &recorder);
    let outcome = run(&session, &place.script(script)).await;
    session.shutdown().await;
    let planted = place.outside.join("planted");
    let decisions = provenances(&recorder);
    assert!(
        !planted.exists(),
        "the planted command ran outside the sandbox; decisions: {decisions:#?}\nstdout: {}\nstderr: {}",
        text(&outcome.stdout),
        text(&outcome.stderr)
    );
    let refused: Vec<_> = decisions
        .iter()
        .filter(|decided| decided.0.rsplit('/').next() == Some(program) && decided.3.is_some())
        .collect();
    assert!(
        !refused.is_empty()
            && refused.iter().all(|decided| decided.1 == "run"
                && decided
                    .4
                    .as_deref()
                    .is_some_and(|note| note.starts_with("escalation refused: ")
                        && note.contains("which the sandbox can write"))),
        "{program} was not refused with a reason: {decisions:#?}\nstderr: {}",
        text(&outcome.stderr)
    );
}

/// A fresh repository in a new directory of the workspace, with `setup`
/// run in it (in place, inside the sandbox).
fn repository(setup: &str) -> String {
    format!(
        "mkdir {{ws}}/sub && cd {{ws}}/sub && git init -q && \
         git config user.email t@example.org && git config user.name t && {setup}"
    )
}

const GIT_STATUS: &str = r#"prefix_rule(pattern = ["git", "status"])"#;

#[tokio::test(flavor = "multi_thread")]
async fn git_status_does_not_run_a_planted_fsmonitor() {
    planted_command_stays_in_the_sandbox(
        GIT_STATUS,
        &repository("git config core.fsmonitor 'touch {outside}/planted; true' && git status"),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_commit_does_not_run_a_planted_hook() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["git", "commit"])"#,
        &repository(
            "printf '#!/bin/sh\\ntouch {outside}/planted\\n' > .git/hooks/pre-commit && \
             chmod +x .git/hooks/pre-commit && git commit -q --allow-empty -m x",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_commit_does_not_run_a_planted_editor() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["git", "commit"])"#,
        &repository(
            "git config core.editor 'touch {outside}/planted; true' && git commit -q --allow-empty",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_log_does_not_run_a_planted_pager() {
    // git pages only to a terminal: `script` gives the nested (patched,
    // still asking) zsh one.
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["git", "log"])"#,
        &repository(&format!(
            "git commit -q --allow-empty -m x && git config core.pager 'touch {{outside}}/planted; cat' && \
             SHELL={zsh} script -qec 'git log' /dev/null",
            zsh = zsh().display()
        )),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_diff_does_not_run_a_planted_external_diff() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["git", "diff"])"#,
        &repository(
            "echo a > file && git add file && git commit -q -m x && echo b > file && \
             git config diff.external 'touch {outside}/planted; true' && git diff",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_add_does_not_run_a_filter_driver_planted_through_gitattributes() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["git", "add"])"#,
        &repository(
            "echo '* filter=planted' > .gitattributes && \
             git config filter.planted.clean 'touch {outside}/planted; cat' && \
             echo a > file && git add file",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_status_does_not_run_config_planted_through_include_path() {
    planted_command_stays_in_the_sandbox(
        GIT_STATUS,
        &repository(
            "printf '[core]\\n\\tfsmonitor = touch {outside}/planted; true\\n' > ../planted.cfg && \
             git config include.path {ws}/planted.cfg && git status",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_status_does_not_run_config_planted_through_include_if() {
    planted_command_stays_in_the_sandbox(
        GIT_STATUS,
        &repository(
            "printf '[core]\\n\\tfsmonitor = touch {outside}/planted; true\\n' > ../planted.cfg && \
             git config 'includeIf.gitdir:{ws}/.path' {ws}/planted.cfg && git status",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_status_in_a_repository_planted_in_the_temp_dir_stays_in_the_sandbox() {
    planted_command_stays_in_the_sandbox(
        GIT_STATUS,
        "cd $(mktemp -d) && git init -q && \
         git config core.fsmonitor 'touch {outside}/planted; true' && git status",
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_status_in_a_repository_nested_in_the_workspaces_stays_in_the_sandbox() {
    // The workspace is a repository of its own (its .git read-only in the
    // sandbox); the sandbox nests one below it, and plants in the outer
    // one's worktree a config the inner one includes.
    let place = Place::new();
    let init = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&place.ws)
        .status()
        .unwrap();
    assert!(init.success());
    let recorder = Recorder::default();
    let session = Setup::rules(place.rules(GIT_STATUS)).start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script(
            "git status >/dev/null; print outer=$?; mkdir -p a/b && cd a/b && git init -q && \
             git config core.fsmonitor 'touch {outside}/planted; true' && git status >/dev/null; \
             print inner=$?",
        ),
    )
    .await;
    session.shutdown().await;
    assert!(
        !place.outside.join("planted").exists(),
        "{}",
        text(&outcome.stderr)
    );
    let decisions = provenances(&recorder);
    let git: Vec<_> = decisions
        .iter()
        .filter(|d| d.0.ends_with("/git") && d.3.is_some())
        .collect();
    assert_eq!(git.len(), 2, "{decisions:#?}");
    for decided in git {
        assert_eq!(decided.1, "run", "{decisions:#?}");
        let note = decided.4.clone().unwrap_or_default();
        assert!(
            note.contains(&format!("from {}", place.ws.display())),
            "{note}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn git_dash_c_naming_a_planted_repository_stays_in_the_sandbox() {
    // From a directory the sandbox cannot write, `git -C` points at one it
    // can.
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["git"])"#,
        &repository(
            "git config core.fsmonitor 'touch {outside}/planted; true' && cd / && \
             git -C {ws}/sub status",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_namespace_does_not_hide_a_dash_c_naming_a_planted_repository() {
    // `--namespace` takes the next word: a walk that did not know it took
    // `x` for the subcommand and never saw `-C`.
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["git"])"#,
        &repository(
            "git config core.fsmonitor 'touch {outside}/planted; true' && cd / && \
             git --namespace x -C {ws}/sub status",
        ),
        "git",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_plus_option_does_not_hide_a_planted_script() {
    // `+x` is an option, not the script; the walk once judged it and
    // stopped.
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["bash"])"#,
        "print 'touch {outside}/planted' > {ws}/evil.sh && cd / && bash +x {ws}/evil.sh",
        "bash",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_dash_m_pip_does_not_build_a_planted_package() {
    // `-m pip` hands the rest to pip, whose operands are packages it
    // builds; the walk once stopped at `pip`.
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["python3.11", "-m", "pip"])"#,
        "mkdir {ws}/pkg && print 'open(\"{outside}/planted\", \"w\")\nimport setuptools\nsetuptools.setup(name=\"p\")' > {ws}/pkg/setup.py && \
         cd / && /usr/bin/python3 -m pip install -q --dry-run --no-deps --no-index --no-build-isolation --break-system-packages {ws}/pkg",
        "python3.11",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn make_does_not_run_a_planted_makefile() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["make"])"#,
        "printf 'all:\\n\\ttouch {outside}/planted\\n' > Makefile && make",
        "make",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn npm_does_not_run_planted_package_scripts() {
    // npm is a node script; the rules see its canonical name.
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["npm-cli.js", "test"])"#,
        r#"print -r -- '{"name": "p", "version": "1.0.0", "scripts": {"test": "touch {outside}/planted"}}' > package.json && npm test"#,
        "npm-cli.js",
    )
    .await;
}

/// The toolchain's own cargo (the rustup proxy dispatches on its name).
fn cargo() -> PathBuf {
    let output = std::process::Command::new("rustup")
        .args(["which", "cargo"])
        .output()
        .expect("rustup runs");
    assert!(output.status.success());
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

#[tokio::test(flavor = "multi_thread")]
async fn cargo_does_not_run_a_planted_build_script() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["cargo", "build"])"#,
        &format!(
            "mkdir -p src && print '[package]\\nname = \"p\"\\nversion = \"0.1.0\"\\nedition = \"2021\"' > Cargo.toml && \
             print 'fn main() {{}}' > src/main.rs && \
             print 'fn main() {{ let _ = std::fs::write(\"{{outside}}/planted\", \"\"); }}' > build.rs && \
             {cargo} build -q --offline",
            cargo = cargo().display()
        ),
        "cargo",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_does_not_run_a_planted_setup_py() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["python3.11", "setup.py"])"#,
        "print 'open(\"{outside}/planted\", \"w\")' > setup.py && /usr/bin/python3 setup.py",
        "python3.11",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pip_does_not_build_a_planted_package() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["pip3", "install"])"#,
        "mkdir pkg && print 'open(\"{outside}/planted\", \"w\")\nimport setuptools\nsetuptools.setup(name=\"p\")' > pkg/setup.py && \
         /usr/bin/pip3 install -q --dry-run --no-deps --no-index --no-build-isolation --break-system-packages ./pkg",
        "pip3",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_does_not_run_a_planted_script() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["dash", "deploy.sh"])"#,
        "print 'touch {outside}/planted' > deploy.sh && dash deploy.sh",
        "dash",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maven_does_not_run_a_planted_jvm_config() {
    // A JVM option in .mvn/jvm.config names a command to run.
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["mvn"])"#,
        "mkdir .mvn && print '#!/bin/sh\ntouch {outside}/planted' > planted.sh && chmod +x planted.sh && \
         print -- '-Xmx3m -XX:OnOutOfMemoryError={ws}/planted.sh' > .mvn/jvm.config && mvn -v -o",
        "mvn",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_does_not_run_a_planted_script() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["node", "build.js"])"#,
        "print 'require(\"fs\").writeFileSync(\"{outside}/planted\", \"\")' > build.js && node build.js",
        "node",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn perl_does_not_run_a_planted_script() {
    planted_command_stays_in_the_sandbox(
        r#"prefix_rule(pattern = ["perl"])"#,
        "mkdir -p {ws}/scripts && print 'open(my $f, \">\", \"{outside}/planted\");' > {ws}/scripts/gen.pl && \
         cd / && perl {ws}/scripts/gen.pl",
        "perl",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn programs_not_in_the_table_are_still_escalated_from_the_workspace() {
    let place = Place::new();
    let recorder = Recorder::default();
    let session =
        Setup::rules(place.rules(r#"prefix_rule(pattern = ["touch"])"#)).start(&place, &recorder);
    let outcome = run(&session, &place.script("touch {outside}/escalated")).await;
    session.shutdown().await;
    assert!(
        place.outside.join("escalated").exists(),
        "{}",
        text(&outcome.stderr)
    );
    let decisions = provenances(&recorder);
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].1, "escalate Unsandboxed");
    assert_eq!(decisions[0].4, None);
}

/// Writes an executable script `name` in `{outside}`, where the sandbox
/// cannot write, and a rule that escalates it.
fn escalated_script(place: &Place, name: &str, text: &str) -> String {
    let path = place.outside.join(name);
    fs::write(&path, place.script(text)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    format!("prefix_rule(pattern = [\"{}\"])\n", path.display())
}

/// Regression (a probe of skills, then a review): a script's `#!` line was
/// checked for the interpreter it names only; `env -S npx tsx` then ran
/// the `tsx` the sandbox put in `node_modules/.bin`, escalated. What the
/// line runs is judged as if escalated itself: through `env`, through a
/// program that runs another (`nice make`), through a program that is a
/// script itself, and a bare runner by the configuration it reads.
#[tokio::test(flavor = "multi_thread")]
async fn a_script_whose_interpreter_reads_the_workspace_stays_in_the_sandbox() {
    let place = Place::new();
    let tools = [
        ("ts-tool", "#!/usr/bin/env -S npx --no tsx\n"),
        (
            "make-tool",
            "#!/usr/bin/make -f\nall: ; @echo built\n-include local.mk\n",
        ),
        ("nice-tool", "#!/usr/bin/env -S nice make -s\n"),
        ("nested-tool", "#!/usr/bin/env {outside}/make-tool\n"),
        // A wrapper the check does not know, and a login shell.
        ("prlimit-tool", "#!/usr/bin/env -S prlimit make -s\n"),
        ("login-tool", "#!/bin/bash -l\ntrue\n"),
        // An interpreter the check does not know, wherever it runs: awk
        // runs the program its arguments name.
        ("awk-tool", "#!/usr/bin/awk -f\nBEGIN {}\n"),
    ];
    let rules: String = tools
        .iter()
        .map(|(name, text)| escalated_script(&place, name, text))
        .collect();
    let recorder = Recorder::default();
    let session = Setup::rules(place.rules(&rules)).start(&place, &recorder);
    let plant = "#!/bin/sh\ntouch {outside}/planted\n";
    let outcome = run(
        &session,
        &place.script(&format!(
            "mkdir -p node_modules/.bin && print -r -- '{{\"name\": \"p\", \"version\": \"1.0.0\"}}' > package.json \
             && printf '{plant}' > node_modules/.bin/tsx && chmod +x node_modules/.bin/tsx \
             && printf 'all: ; touch {{outside}}/planted\\n' > local.mk && cp local.mk Makefile; \
             {{outside}}/ts-tool; {{outside}}/make-tool; {{outside}}/nice-tool; {{outside}}/nested-tool; \
             {{outside}}/prlimit-tool; {{outside}}/login-tool; \
             print -r -- 'BEGIN {{ system(\"touch {{outside}}/planted\") }}' > evil.awk; \
             (cd {{outside}} && ./awk-tool -f {{ws}}/evil.awk)"
        )),
    )
    .await;
    session.shutdown().await;
    let decisions = provenances(&recorder);
    assert!(
        !place.outside.join("planted").exists(),
        "the planted program ran escalated: {decisions:#?}\nstderr: {}",
        text(&outcome.stderr)
    );
    for (tool, reason) in [
        ("ts-tool", "which the sandbox can write"),
        ("make-tool", "which the sandbox can write"),
        ("nice-tool", "runs another program"),
        ("nested-tool", "which the check does not know"),
        ("prlimit-tool", "which the check does not know"),
        ("awk-tool", "which the check does not know"),
        ("login-tool", "options the check does not follow"),
    ] {
        let refused = decisions.iter().find(|decided| decided.0.ends_with(tool));
        assert!(
            refused.is_some_and(|decided| decided.1 == "run"
                && decided.4.as_deref().is_some_and(
                    |note| note.starts_with("escalation refused") && note.contains(reason)
                )),
            "{tool} was not refused for {reason:?}: {decisions:#?}\nstderr: {}",
            text(&outcome.stderr)
        );
    }
}

/// From a review: a script a rule lets out, with another name (a hard
/// link) in the workspace, was rewritten through it from the sandbox and
/// ran unsandboxed. Outside the system's directories, a program with
/// other names is not escalated.
#[tokio::test(flavor = "multi_thread")]
async fn a_script_with_another_name_in_the_workspace_stays_in_the_sandbox() {
    let place = Place::new();
    let rules = escalated_script(&place, "linked-tool", "#!/bin/sh\necho tool ran\n");
    fs::hard_link(place.outside.join("linked-tool"), place.ws.join("link.sh")).unwrap();
    let recorder = Recorder::default();
    let session = Setup::rules(place.rules(&rules)).start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script("print -r -- 'touch {outside}/planted' >> link.sh; {outside}/linked-tool"),
    )
    .await;
    session.shutdown().await;
    let decisions = provenances(&recorder);
    assert!(
        !place.outside.join("planted").exists(),
        "{decisions:#?}\nstderr: {}",
        text(&outcome.stderr)
    );
    let note = decisions
        .iter()
        .find(|decided| decided.0.ends_with("linked-tool"))
        .and_then(|decided| decided.4.clone())
        .unwrap_or_default();
    assert!(note.contains("hard links"), "{decisions:#?}");
}

/// From a review: a bare `#!/usr/bin/env zsh` script, escalated with the
/// session's home in the workspace, ran the `~/.zshenv` the sandbox put
/// there. A bare runner is still judged by the configuration it reads,
/// in the home the escalated child gets.
#[tokio::test(flavor = "multi_thread")]
async fn a_bare_runner_is_judged_by_its_configuration() {
    let place = Place::new();
    let rules = escalated_script(
        &place,
        "zsh-tool",
        "#!/usr/bin/env zsh\nprint zsh-tool ran\n",
    );
    let recorder = Recorder::default();
    let mut setup = Setup::rules(place.rules(&rules));
    setup.env_set = vec![("HOME".into(), place.ws.display().to_string())];
    let session = setup.start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script("print -r -- 'touch {outside}/planted' > .zshenv; {outside}/zsh-tool"),
    )
    .await;
    session.shutdown().await;
    let decisions = provenances(&recorder);
    assert!(!place.outside.join("planted").exists(), "{decisions:#?}");
    let note = decisions
        .iter()
        .find(|decided| decided.0.ends_with("zsh-tool"))
        .and_then(|decided| decided.4.clone())
        .unwrap_or_default();
    assert!(
        note.starts_with("escalation refused") && note.contains(".zshenv"),
        "{decisions:#?}\nstderr: {}",
        text(&outcome.stderr)
    );
}

/// What the interpreter check leaves escalated: a script run by python or
/// a shell, named bare (through `env` too) or with options that name no
/// code, reads its script, not the workspace it is run from; its own
/// arguments are its own (a review found `#!/bin/sh -e` with an argument
/// refused).
#[tokio::test(flavor = "multi_thread")]
async fn scripts_run_by_a_bare_interpreter_are_escalated_from_the_workspace() {
    let place = Place::new();
    let rules = escalated_script(
        &place,
        "py-tool",
        // Not `env python3`: where PATH finds a version manager's shim
        // first (a bash script that reads `.python-version` here), that
        // is refused, rightly.
        "#!/usr/bin/python3 -u\nopen('{outside}/py-ran', 'w')\n",
    ) + &escalated_script(
        &place,
        "sh-tool",
        "#!/usr/bin/env -S sh -e\ntouch {outside}/sh-ran\n",
    );
    let recorder = Recorder::default();
    let session = Setup::rules(place.rules(&rules)).start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script("touch notes; {outside}/py-tool; {outside}/sh-tool notes"),
    )
    .await;
    session.shutdown().await;
    for ran in ["py-ran", "sh-ran"] {
        assert!(
            place.outside.join(ran).exists(),
            "{ran}: {:#?}\nstderr: {}",
            provenances(&recorder),
            text(&outcome.stderr)
        );
    }
}

/// A directory `d` in the workspace that the approver swaps, while it
/// decides, for a symlink to `elsewhere`: the command must run in the
/// original (`d.orig`) or not at all.
async fn cwd_swapped_during_approval(execution: &str) -> (Place, ShellOutputText) {
    let place = Place::new();
    let (d, orig, elsewhere) = (
        place.ws.join("d"),
        place.ws.join("d.orig"),
        place.ws.join("elsewhere"),
    );
    fs::create_dir(&d).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    let rules = place.rules(&format!(
        r#"prefix_rule(pattern = ["touch"], decision = "prompt", execution = "{execution}")"#
    ));
    let approver = move |_request: ApprovalRequest| {
        let (d, orig, elsewhere) = (d.clone(), orig.clone(), elsewhere.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            fs::rename(&d, &orig).unwrap();
            symlink(&elsewhere, &d).unwrap();
            ApprovalAnswer::ApproveOnce
        }
    };
    let recorder = Recorder::default();
    let session = Setup::rules(rules)
        .approver(approver)
        .start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script("cd {ws}/d && touch created; print status=$?"),
    )
    .await;
    session.shutdown().await;
    let output = ShellOutputText {
        stdout: text(&outcome.stdout),
        stderr: text(&outcome.stderr),
    };
    (place, output)
}

struct ShellOutputText {
    stdout: String,
    stderr: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsandboxed_escalation_runs_in_the_directory_it_was_decided_on() {
    let (place, output) = cwd_swapped_during_approval("unsandboxed").await;
    assert!(
        !place.ws.join("elsewhere/created").exists(),
        "the escalated command followed the swapped path: {}",
        output.stderr
    );
    assert!(
        place.ws.join("d.orig/created").exists(),
        "{} {}",
        output.stdout,
        output.stderr
    );
    assert_eq!(output.stdout, "status=0\n", "{}", output.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_escalation_runs_in_the_directory_it_was_decided_on_or_not_at_all() {
    let (place, output) = cwd_swapped_during_approval("turn-default").await;
    assert!(
        !place.ws.join("elsewhere/created").exists(),
        "the escalated command followed the swapped path: {}",
        output.stderr
    );
    // bubblewrap enters the directory by path: the helper finds it is not
    // the one decided on and runs nothing.
    assert!(!place.ws.join("d.orig/created").exists());
    assert_ne!(output.stdout, "status=0\n", "{}", output.stderr);
    assert!(
        output.stderr.contains("no longer the file or directory"),
        "{}",
        output.stderr
    );
}

/// Regression (found in review): an escalated script's interpreter was
/// handed the checked descriptor as it was opened, for its path only
/// (`O_PATH`). Interpreters that reopen `/dev/fd/N` read it; perl, which
/// reads the descriptor itself, read nothing and ran an empty script.
#[tokio::test(flavor = "multi_thread")]
async fn escalated_scripts_are_read_whatever_their_interpreter() {
    let place = Place::new();
    let scripts = [
        ("sh", "#!/bin/sh\necho sh ran\n"),
        ("perl", "#!/usr/bin/perl\nprint \"perl ran\\n\";\n"),
        ("python", "#!/usr/bin/python3\nprint('python ran')\n"),
    ];
    let mut rules = String::new();
    for (name, text) in scripts {
        let path = place.outside.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        rules.push_str(&format!(
            "prefix_rule(pattern = [\"{}\"])\n",
            path.display()
        ));
    }
    let recorder = Recorder::default();
    let session = Setup::rules(place.rules(&rules)).start(&place, &recorder);
    // From a directory the sandbox cannot write: python would read its
    // modules from the working directory.
    let outcome = run(
        &session,
        &place.script("cd {outside} && {outside}/sh; {outside}/perl; {outside}/python"),
    )
    .await;
    session.shutdown().await;
    assert_eq!(
        text(&outcome.stdout),
        "sh ran\nperl ran\npython ran\n",
        "{}",
        text(&outcome.stderr)
    );
    let decisions: Vec<(String, Option<String>)> = provenances(&recorder)
        .into_iter()
        .map(|p| (p.1, p.4))
        .collect();
    assert!(
        decisions
            .iter()
            .all(|(decision, _)| decision == "escalate Unsandboxed"),
        "{decisions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escalated_script_is_the_file_that_was_checked() {
    let place = Place::new();
    let script = place.outside.join("tool.sh");
    let write_script = |path: &Path, text: &str| {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_script(&script, "#!/bin/sh\necho checked\n");
    let rules = place.rules(&format!(
        r#"prefix_rule(pattern = ["{}"], decision = "prompt")"#,
        script.display()
    ));
    let swapped = script.clone();
    let approver = move |_request: ApprovalRequest| {
        let swapped = swapped.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            fs::rename(&swapped, swapped.with_extension("orig")).unwrap();
            fs::write(&swapped, "#!/bin/sh\necho swapped\n").unwrap();
            fs::set_permissions(&swapped, fs::Permissions::from_mode(0o755)).unwrap();
            ApprovalAnswer::ApproveOnce
        }
    };
    let recorder = Recorder::default();
    let session = Setup::rules(rules)
        .approver(approver)
        .start(&place, &recorder);
    let outcome = run(&session, &format!("{}", script.display())).await;
    session.shutdown().await;
    assert_eq!(
        text(&outcome.stdout),
        "checked\n",
        "{}",
        text(&outcome.stderr)
    );
    let decisions = provenances(&recorder);
    assert_eq!(decisions[0].1, "escalate Unsandboxed", "{decisions:#?}");
}

/// A probe found: a script escalated with a profile's grants (not in the
/// table, so its own name was judged) took the sandboxed shell's `HOME`,
/// which the shell had pointed into the workspace, and its `python3`
/// loaded a `.pth` file planted there, with the grants; a second probe
/// did the same with variables no list removed (`GIT_TEST_FSMONITOR`,
/// `PYTHONPYCACHEPREFIX`). An escalation with grants now takes the
/// session's environment, as an unsandboxed one does: what the shell
/// exported never reaches it.
#[tokio::test(flavor = "multi_thread")]
async fn a_script_escalated_with_grants_takes_nothing_the_shell_exported() {
    let place = Place::new();
    let tools = place.root.join("tools");
    fs::create_dir(&tools).unwrap();
    let script = tools.join("report.py");
    let source = place.script(
        "#!/usr/bin/python3\nimport os, sys\n\
         open('{outside}/granted-' + sys.argv[1], 'w').write(\
         os.environ.get('HOME', '') + ' ' + str('PLANTED_VARIABLE' in os.environ))\n",
    );
    fs::write(&script, source).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let mut setup =
        Setup::rules(place.rules(r#"prefix_rule(pattern = ["report.py"], execution = "grant")"#));
    let grant = format!(
        "[profiles.grant]\nextends = \"workspace-write\"\nfilesystem = {{ \"{}\" = \"write\" }}\n",
        place.outside.display()
    );
    setup.profiles.add_toml(&grant, None).unwrap();
    let recorder = Recorder::default();
    let session = setup.start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script(&format!(
            "export HOME={{ws}}/home PLANTED_VARIABLE=1; \
             site=$(/usr/bin/python3 -c 'import site; print(site.getusersitepackages())') && \
             mkdir -p $site && \
             print -r -- 'import os; open(\"{{outside}}/planted\", \"w\")' > $site/planted.pth && \
             {script} run",
            script = script.display()
        )),
    )
    .await;
    session.shutdown().await;
    let decisions = provenances(&recorder);
    let stderr = text(&outcome.stderr);
    let granted = fs::read_to_string(place.outside.join("granted-run")).unwrap_or_else(|_| {
        panic!("the script did not escalate with its grants: {decisions:#?}\n{stderr}")
    });
    assert!(
        !place.outside.join("planted").exists(),
        "the planted .pth ran with the grants: {decisions:#?}\n{stderr}"
    );
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(granted, format!("{home} False"), "{decisions:#?}");
}

/// Probe 142: a `prompt` rule whose escalation was refused (the script is
/// in the writable workspace) ran the command in place, unasked, even when
/// every question was declined. The person is now asked about running it
/// in the session's sandbox: declined, it does not run; approved, it runs
/// in place, and the note says why it was not escalated either way.
#[tokio::test(flavor = "multi_thread")]
async fn a_prompted_command_that_cannot_leave_the_sandbox_is_still_asked_about() {
    for (answer, decision, output) in [
        (ApprovalAnswer::Decline, "deny", "status=126\n"),
        (ApprovalAnswer::ApproveOnce, "run", "ran\nstatus=0\n"),
    ] {
        let place = Place::new();
        let tool = place.ws.join("tool.sh");
        fs::write(&tool, "#!/bin/sh\necho ran\n").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        let rules = place.rules(r#"prefix_rule(pattern = ["tool.sh"], decision = "prompt")"#);
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let questions = Arc::clone(&asked);
        let approver = move |request: ApprovalRequest| {
            let refused = match &request.reason {
                ApprovalReason::RuleInPlace { refused, .. } => refused.clone(),
                other => format!("{other:?}"),
            };
            questions
                .lock()
                .unwrap()
                .push((request.execution.clone(), refused));
            let answer = answer.clone();
            async move { answer }
        };
        let recorder = Recorder::default();
        let session = Setup::rules(rules)
            .approver(approver)
            .start(&place, &recorder);
        let outcome = run(&session, "./tool.sh; print status=$?").await;
        session.shutdown().await;
        let decisions = provenances(&recorder);
        assert_eq!(text(&outcome.stdout), output, "{decisions:#?}");
        // The question says why it would not leave the sandbox.
        let asked = asked.lock().unwrap();
        assert!(
            matches!(asked.as_slice(), [(execgate_core_bridge::server::Execution::TurnDefault, refused)]
                if refused.starts_with("escalation refused: ")),
            "{asked:?}"
        );
        let [(_, decided, _, _, Some(note))] = decisions.as_slice() else {
            panic!("one decision with a note: {decisions:#?}");
        };
        assert_eq!(decided, decision);
        assert!(
            note.starts_with("escalation refused: ") && note.contains("writable from the sandbox"),
            "{note}"
        );
    }
}

/// Probe 227: an escalation runs its program under the canonical path, so
/// one found by a link of another name ran as another program (`xzcat`,
/// escalated as `xz`, compressed the file it was to print, and printed
/// nothing), and one found by a link where the sandbox writes lost what
/// that place sets up (a virtual environment's `bin/python` ran as the
/// system's). Each runs in place, as the shell found it, with a note;
/// the program by its own name is still escalated.
#[tokio::test(flavor = "multi_thread")]
async fn a_program_found_by_another_name_or_a_writable_link_runs_in_place() {
    let place = Place::new();
    let text_file = place.ws.join("data");
    fs::write(&text_file, "one\ntwo\n").unwrap();
    let compressed = std::process::Command::new("xz")
        .arg("-k")
        .arg(&text_file)
        .status()
        .unwrap();
    assert!(compressed.success());
    fs::rename(place.ws.join("data.xz"), place.ws.join("packed")).unwrap();
    fs::create_dir(place.ws.join("bin")).unwrap();
    symlink("/usr/bin/id", place.ws.join("bin/id")).unwrap();
    // Review 230: the writable place reached through a link to it.
    symlink(&place.ws, place.root.join("alias")).unwrap();
    // A script by its name less an extension, and by another.
    let tools = place.outside.join("tools");
    fs::create_dir(&tools).unwrap();
    fs::write(tools.join("greet-cli.sh"), "#!/bin/sh\necho \"$0\"\n").unwrap();
    fs::set_permissions(
        tools.join("greet-cli.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink("greet-cli.sh", tools.join("greet")).unwrap();
    symlink("greet-cli.sh", tools.join("hello")).unwrap();
    let rules = place.rules(&format!(
        r#"prefix_rule(pattern = ["xz"], execution = "unsandboxed")
prefix_rule(pattern = ["id"], execution = "unsandboxed")
prefix_rule(pattern = ["{}"], execution = "turn-default")"#,
        tools.join("greet-cli.sh").display()
    ));
    let recorder = Recorder::default();
    let session = Setup::rules(rules).start(&place, &recorder);
    let outcome = run(
        &session,
        &place.script(&format!(
            "cd {{ws}}; xzcat packed; {{ws}}/bin/id -u; {root}/alias/bin/id -u; /usr/bin/id -u; \
             {{outside}}/tools/greet; {{outside}}/tools/hello",
            root = place.root.display()
        )),
    )
    .await;
    session.shutdown().await;
    let decisions = provenances(&recorder);
    let stdout = text(&outcome.stdout);
    assert!(stdout.starts_with("one\ntwo\n"), "{stdout}: {decisions:#?}");
    assert!(place.ws.join("packed").exists(), "{decisions:#?}");
    assert!(!place.ws.join("packed.xz").exists(), "{decisions:#?}");
    let decided: Vec<(&str, &str, Option<&str>)> = decisions
        .iter()
        .map(|decided| (decided.0.as_str(), decided.1.as_str(), decided.4.as_deref()))
        .collect();
    let [(xz, "run", Some(by_name)), (link, "run", Some(in_writable)), (_, "run", Some(through_alias)), (id, escalated, None), (_, greet, None), (_, "run", Some(script_by_name))] =
        decided.as_slice()
    else {
        panic!("{decided:#?}");
    };
    assert_eq!(
        (*xz, *link, *id),
        ("/usr/bin/xz", "/usr/bin/id", "/usr/bin/id")
    );
    assert!(escalated.starts_with("escalate"), "{escalated}");
    assert!(greet.starts_with("escalate"), "{greet}");
    assert!(
        through_alias.contains("writable from the sandbox"),
        "{through_alias}"
    );
    assert!(
        script_by_name.contains("by another name"),
        "{script_by_name}"
    );
    // The escalated script reads itself as /dev/fd/N; the one in place by
    // the name it was run by.
    assert!(
        stdout.ends_with(&format!("/dev/fd/3\n{}\n", tools.join("hello").display())),
        "{stdout}"
    );
    assert!(
        by_name.starts_with("escalation refused: ") && by_name.contains("by another name"),
        "{by_name}"
    );
    assert!(
        in_writable.starts_with("escalation refused: ")
            && in_writable.contains("writable from the sandbox"),
        "{in_writable}"
    );
}
