//! The backend's Win32 calls, run for real. In CI they run under Wine,
//! which makes the calls and honours pipes, jobs and desktops, but
//! enforces neither restricted tokens nor file DACLs: the tests at the end
//! that need enforcement are `#[ignore]`d and run on a real Windows
//! machine with `cargo test -p execgate-sandbox -- --ignored windows::`
//! (or `scripts/windows-smoke.ps1`).

use std::ffi::OsString;
use std::os::windows::ffi::OsStrExt;
use std::time::Duration;

use super::*;
use crate::windows_plan::{
    command_line, environment_block, Inheritance, SidStore, WindowsContext, WindowsNetwork,
};
use crate::PermissionProfile;

/// Set in the environment of this test binary when it is started as a
/// child by the tests below: what to do instead of running tests.
const ROLE: &str = "EXECGATE_WINDOWS_TEST_ROLE";

fn units(text: &std::ffi::OsStr) -> Vec<u16> {
    text.encode_wide().collect()
}

fn environment(extra: &[(&str, &str)]) -> Vec<u16> {
    let mut pairs: Vec<(Vec<u16>, Vec<u16>)> = std::env::vars_os()
        .filter(|(name, _)| {
            !extra
                .iter()
                .any(|(extra, _)| name.to_string_lossy().eq_ignore_ascii_case(extra))
        })
        .map(|(name, value)| (units(&name), units(&value)))
        .collect();
    pairs.extend(extra.iter().map(|(name, value)| (wide(name), wide(value))));
    environment_block(&pairs).unwrap()
}

fn cwd() -> Vec<u16> {
    units(std::env::current_dir().unwrap().as_os_str())
}

fn cmd_exe() -> Vec<u16> {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| OsString::from(r"C:\windows"));
    let mut path = units(&root);
    path.extend(wide(r"\system32\cmd.exe"));
    path
}

/// A token of one capability SID. Under Wine, which reports no token
/// restricted, it is accepted as not enforced: these tests show the
/// calls, pipes, jobs and desktops, not confinement.
fn token_for_one_root() -> RestrictedToken {
    let sid = CapabilitySid::random().unwrap();
    RestrictedToken::create(
        &TokenPlan {
            flags: mask::DISABLE_MAX_PRIVILEGE | mask::LUA_TOKEN | mask::WRITE_RESTRICTED,
            launch_sid: sid,
            restricting_sids: vec![sid],
            default_dacl: vec![
                DefaultDaclEntry::TokenUser,
                DefaultDaclEntry::Capability(sid),
            ],
        },
        UnenforcedToken::RunUnderWine,
    )
    .unwrap()
}

/// Regression: the backend computed whether the token was restricted and
/// nobody looked; a token with no restricting SID (which Windows makes
/// unrestricted) ran the command with writes unconfined.
#[test]
fn a_token_windows_does_not_report_restricted_is_refused() {
    let sid = CapabilitySid::random().unwrap();
    let unrestricted = TokenPlan {
        flags: mask::DISABLE_MAX_PRIVILEGE | mask::LUA_TOKEN | mask::WRITE_RESTRICTED,
        launch_sid: sid,
        restricting_sids: vec![],
        default_dacl: vec![DefaultDaclEntry::TokenUser],
    };
    assert!(matches!(
        RestrictedToken::create(&unrestricted, UnenforcedToken::Refuse),
        Err(WindowsError::TokenNotRestricted)
    ));
    // The way through for Wine's tests does not exist on Windows.
    let under_wine = RestrictedToken::create(&unrestricted, UnenforcedToken::RunUnderWine);
    if sys::running_under_wine() {
        assert_eq!(
            under_wine.unwrap().enforcement(),
            TokenEnforcement::NotEnforcedUnderWine
        );
    } else {
        assert!(matches!(under_wine, Err(WindowsError::TokenNotRestricted)));
    }
}

/// `Running::start`, tried again (twice at most) when `CreateProcessAsUserW`
/// fails with `ERROR_INTERNAL_ERROR` (1359): Wine sometimes answers so
/// in a fresh prefix (a fresh CI's first runs). Any other failure, or
/// this one a third time, fails the test.
fn start<'a>(command: impl Fn() -> Command<'a>) -> Running {
    const WINE_INTERNAL_ERROR: u32 = 1359;
    let mut tries = 1;
    loop {
        match Running::start(command()) {
            Err(WindowsError::Win32(Win32Error {
                call: "CreateProcessAsUserW",
                code: WINE_INTERNAL_ERROR,
            })) if tries < 3 && sys::running_under_wine() => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            result => return result.unwrap(),
        }
    }
}

/// Where a `parent` child writes its grandchild's pid.
const PID_FILE: &str = "EXECGATE_WINDOWS_TEST_PID_FILE";

/// This test binary, started again in `role` (see `child_role`).
fn this_binary_in_role(role: &str, pid_file: &str, token: TokenChoice<'_>) -> Running {
    let exe = units(std::env::current_exe().unwrap().as_os_str());
    let line = command_line(&[
        exe.clone(),
        wide("--exact"),
        wide("windows::tests::child_role"),
        wide("--ignored"),
        wide("--nocapture"),
    ])
    .unwrap();
    start(|| Command {
        token,
        application: Some(exe.clone()),
        command_line: line.clone(),
        environment: environment(&[(ROLE, role), (PID_FILE, pid_file)]),
        current_directory: cwd(),
        desktop: None,
        stdin: Vec::new(),
    })
}

/// Not a test: what this binary does when a test starts it as a child.
/// `sleep` sleeps ten minutes (longer than any test waits, so only a kill
/// ends it in time); `parent` starts a `sleep` grandchild, writes its pid
/// to the pid file and sleeps; `open-for-write` fails if it can open the
/// process whose pid the pid file holds to write its memory or end it.
#[test]
#[ignore = "started as a child by the job-object tests"]
fn child_role() {
    let sleep = || std::thread::sleep(Duration::from_secs(600));
    match std::env::var(ROLE).as_deref() {
        Ok("sleep") => sleep(),
        Ok("open-for-write") => {
            let pid_file = std::env::var_os(PID_FILE).unwrap();
            let pid: u32 = std::fs::read_to_string(pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(!sys::can_open_for_write(pid), "opened process {pid}");
        }
        Ok("parent") => {
            let mut grandchild = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "windows::tests::child_role", "--ignored"])
                .env(ROLE, "sleep")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pid_file = std::env::var_os(PID_FILE).unwrap();
            std::fs::write(
                format!("{}.partial", pid_file.to_string_lossy()),
                grandchild.id().to_string(),
            )
            .unwrap();
            std::fs::rename(format!("{}.partial", pid_file.to_string_lossy()), &pid_file).unwrap();
            sleep();
            // Only reached if nothing killed the job.
            let _ = grandchild.kill();
            let _ = grandchild.wait();
        }
        _ => {}
    }
}

/// Regression: a Ctrl-C ended execgate at once, before it removed the
/// temporary ACEs of the command. The console handler ends the command's
/// job instead and keeps this process: the wait returns and what follows
/// it runs. (Called directly: a console event would reach every test.)
#[test]
fn a_console_interrupt_ends_the_job_and_keeps_this_process() {
    use windows_sys::Win32::System::Console::{CTRL_CLOSE_EVENT, CTRL_C_EVENT};
    let running = this_binary_in_role("sleep", "", TokenChoice::Caller);
    running.end_on_console_interrupt().unwrap();
    // SAFETY: the handler takes an event number and nothing else.
    assert_eq!(unsafe { sys::on_console_ctrl(CTRL_CLOSE_EVENT) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { sys::on_console_ctrl(CTRL_C_EVENT) }, 1);
    let finished = running.wait(Duration::from_secs(60)).unwrap();
    assert!(!finished.timed_out, "{finished:?}");
    assert_eq!(finished.exit_code, KILLED_EXIT_CODE);
}

/// The profile directory comes from Windows for this process's user: an
/// existing directory below a volume's root, whatever `USERPROFILE` says.
#[test]
fn the_profile_directory_windows_reports_is_a_directory() {
    let profile = profile_directory().unwrap();
    assert!(profile.is_absolute(), "{}", profile.display());
    assert!(profile.is_dir(), "{}", profile.display());
    assert!(profile.parent().is_some(), "{}", profile.display());
}

#[test]
fn plan_masks_are_the_windows_constants() {
    use windows_sys::Win32::Foundation::GENERIC_WRITE;
    use windows_sys::Win32::Security::{
        CONTAINER_INHERIT_ACE, DISABLE_MAX_PRIVILEGE, LUA_TOKEN, OBJECT_INHERIT_ACE,
        WRITE_RESTRICTED,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        DELETE, FILE_APPEND_DATA, FILE_DELETE_CHILD, FILE_GENERIC_EXECUTE, FILE_GENERIC_READ,
        FILE_GENERIC_WRITE, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA, FILE_WRITE_EA,
    };
    assert_eq!(
        [
            mask::FILE_GENERIC_READ,
            mask::FILE_GENERIC_WRITE,
            mask::FILE_GENERIC_EXECUTE,
            mask::DELETE,
            mask::FILE_DELETE_CHILD,
            mask::FILE_WRITE_DATA,
            mask::FILE_APPEND_DATA,
            mask::FILE_WRITE_EA,
            mask::FILE_WRITE_ATTRIBUTES,
            mask::GENERIC_WRITE,
        ],
        [
            FILE_GENERIC_READ,
            FILE_GENERIC_WRITE,
            FILE_GENERIC_EXECUTE,
            DELETE,
            FILE_DELETE_CHILD,
            FILE_WRITE_DATA,
            FILE_APPEND_DATA,
            FILE_WRITE_EA,
            FILE_WRITE_ATTRIBUTES,
            GENERIC_WRITE,
        ]
    );
    assert_eq!(
        [
            mask::DISABLE_MAX_PRIVILEGE,
            mask::LUA_TOKEN,
            mask::WRITE_RESTRICTED
        ],
        [DISABLE_MAX_PRIVILEGE, LUA_TOKEN, WRITE_RESTRICTED]
    );
    assert_eq!(
        [
            u32::from(mask::OBJECT_INHERIT_ACE),
            u32::from(mask::CONTAINER_INHERIT_ACE)
        ],
        [OBJECT_INHERIT_ACE, CONTAINER_INHERIT_ACE]
    );
}

#[test]
fn quoting_round_trips_through_command_line_to_argv() {
    let cases: &[&[&str]] = &[
        &["prog", "a", "b c", ""],
        &[
            r"C:\Program Files\x.exe",
            r#"say "hi""#,
            r"C:\dir\",
            r"C:\my dir\",
        ],
        &["prog", r#"a\"b"#, r"a\\b", "tab\tin", r#"\\""#, r"\"],
        &["prog", "héllo wörld", "日本"],
    ];
    for argv in cases {
        let argv: Vec<Vec<u16>> = argv.iter().map(|arg| wide(arg)).collect();
        let line = command_line(&argv).unwrap();
        assert_eq!(
            split_command_line(&line).unwrap(),
            argv,
            "{}",
            String::from_utf16_lossy(&line)
        );
    }
}

#[test]
fn acl_composition_puts_denies_first_with_masks_and_inheritance() {
    let mut sids = SidStore::default();
    let root = WinPath::parse(r"C:\work").unwrap();
    let probe = |_: &WinPath| PathKind::Missing;
    let context = WindowsContext {
        cwd: root.clone(),
        temp_dirs: vec![],
        workspace_roots: vec![],
        homes: vec![],
        probe: &probe,
        canonical: &|_: &WinPath| None,
    };
    let plan = WindowsPlan::new(
        &PermissionProfile::preset("workspace-write").unwrap(),
        None,
        &context,
        WindowsNetwork::BestEffort,
        &mut sids,
    )
    .unwrap();
    // One DACL holding the root's allow and `.agents`'s deny, in the plan's
    // order reversed: composition must still put the deny first.
    let mut aces: Vec<AcePlan> = plan
        .aces
        .iter()
        .filter(|ace| ace.path == root || ace.path.file_name() == Some(".agents"))
        .cloned()
        .collect();
    aces.reverse();
    let sid = plan.roots[0].sid.to_string();
    let read_back = compose_acl(&aces).unwrap();
    assert_eq!(
        read_back,
        vec![
            AceRecord {
                ace_type: DENIED_ACE,
                flags: 0x3,
                mask: mask::DENY_WRITE,
                sid: sid.clone()
            },
            AceRecord {
                ace_type: ALLOWED_ACE,
                flags: 0x3,
                mask: mask::ROOT_ALLOW,
                sid
            },
        ]
    );
    let file_deny = AcePlan {
        inheritance: Inheritance::None,
        ..aces[1].clone()
    };
    assert_eq!(compose_acl(&[file_deny]).unwrap()[0].flags, 0);
}

/// What keeps DACLs from growing run after run, shown on a DACL composed
/// in memory (Wine stores none on files): every ACE of a plan is found in
/// the DACL that holds it; a narrower mask, another SID, other inheritance
/// or an inherited copy are not taken for it.
#[test]
fn aces_already_in_a_dacl_are_recognized_for_reuse() {
    let sid = CapabilitySid::random().unwrap();
    let ace = AcePlan {
        path: WinPath::parse(r"C:\work").unwrap(),
        kind: AceKind::Allow,
        sid,
        mask: mask::ROOT_ALLOW,
        inheritance: Inheritance::FoldersAndFiles,
        lifetime: AceLifetime::Kept,
    };
    let deny = AcePlan {
        kind: AceKind::Deny,
        mask: mask::DENY_WRITE,
        ..ace.clone()
    };
    let present = compose_acl(&[ace.clone(), deny.clone()]).unwrap();
    assert!(already_there(&present, &ace));
    assert!(already_there(&present, &deny));
    let other_sid = AcePlan {
        sid: CapabilitySid::random().unwrap(),
        ..ace.clone()
    };
    let file_only = AcePlan {
        inheritance: Inheritance::None,
        ..ace.clone()
    };
    let narrower = compose_acl(&[AcePlan {
        mask: mask::FILE_GENERIC_READ,
        ..ace.clone()
    }])
    .unwrap();
    let mut inherited = present.clone();
    for record in &mut inherited {
        record.flags |= INHERITED_ACE;
    }
    assert!(!already_there(&present, &other_sid));
    assert!(!already_there(&present, &file_only));
    assert!(!already_there(&narrower, &ace));
    assert!(!already_there(&inherited, &ace));
}

#[test]
fn restricted_token_runs_a_process_with_pipes_and_exit_code() {
    let token = token_for_one_root();
    let running = start(|| Command {
        token: TokenChoice::Restricted(&token),
        application: Some(cmd_exe()),
        command_line: crate::windows_plan::cmd_script_line(
            &cmd_exe(),
            &wide("set /p LINE=& call echo got %LINE%& echo to-stderr 1>&2& exit /b 7"),
        )
        .unwrap(),
        environment: environment(&[]),
        current_directory: cwd(),
        desktop: None,
        stdin: b"hello\r\n".to_vec(),
    });
    let finished = running.wait(Duration::from_secs(60)).unwrap();
    assert_eq!(finished.exit_code, 7, "{finished:?}");
    assert_eq!(
        String::from_utf8_lossy(&finished.stdout).trim(),
        "got hello"
    );
    assert_eq!(
        String::from_utf8_lossy(&finished.stderr).trim(),
        "to-stderr"
    );
    assert!(!finished.timed_out);
}

/// Regression: the job limited nothing of the user interface, so a
/// sandboxed command (on the user's desktop when the private one is
/// skipped under SSH) could read the clipboard, use other processes'
/// window handles, change system parameters or log the user off. Every
/// job carries the eight UI limits.
#[test]
fn every_job_carries_the_ui_limits() {
    assert_eq!(
        sys::JOB_UI_LIMITS,
        0xFF,
        "all eight JOB_OBJECT_UILIMIT_* flags"
    );
    // Made with them, or not at all.
    let job = sys::kill_on_close_job().unwrap();
    match sys::job_ui_limits(&job) {
        Ok(limits) => assert_eq!(limits, sys::JOB_UI_LIMITS),
        // Wine 8 accepts the limits but cannot report them
        // (ERROR_INVALID_FUNCTION); Windows must.
        Err(error) => assert!(sys::running_under_wine(), "{error}"),
    }
}

#[test]
fn a_timeout_terminates_the_job() {
    let token = token_for_one_root();
    let started = std::time::Instant::now();
    let finished = this_binary_in_role("sleep", "", TokenChoice::Restricted(&token))
        .wait(Duration::from_millis(1500))
        .unwrap();
    assert!(finished.timed_out);
    assert_eq!(finished.exit_code, KILLED_EXIT_CODE);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn killing_the_job_ends_the_child_and_its_grandchild() {
    let token = token_for_one_root();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let running = this_binary_in_role(
        "parent",
        &pid_file.to_string_lossy(),
        TokenChoice::Restricted(&token),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let grandchild: u32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never started its grandchild"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let child = running.pid;
    assert!(!process_has_ended(child) && !process_has_ended(grandchild));
    running.kill().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(process_has_ended(child) && process_has_ended(grandchild)) {
        assert!(
            std::time::Instant::now() < deadline,
            "child or grandchild survived the job"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        running.wait(Duration::from_secs(10)).unwrap().exit_code,
        KILLED_EXIT_CODE
    );
}

/// Session-scoped cancellation: dropping the command (its job handle with
/// it, as when execgate itself dies) ends the whole tree through
/// `KILL_ON_JOB_CLOSE`, with no call to terminate anything.
#[test]
fn closing_the_job_ends_the_child_and_its_grandchild() {
    let token = token_for_one_root();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let running = this_binary_in_role(
        "parent",
        &pid_file.to_string_lossy(),
        TokenChoice::Restricted(&token),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let grandchild: u32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never started its grandchild"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let child = running.pid;
    drop(running);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(process_has_ended(child) && process_has_ended(grandchild)) {
        assert!(
            std::time::Instant::now() < deadline,
            "child or grandchild outlived the closed job"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_child_runs_on_a_private_desktop() {
    let token = token_for_one_root();
    let desktop = PrivateDesktop::create(&token_sids(&token)).unwrap();
    assert!(desktop.qualified_name.starts_with(r"winsta0\execgate-"));
    let finished = start(|| Command {
        token: TokenChoice::Restricted(&token),
        application: Some(cmd_exe()),
        command_line: crate::windows_plan::cmd_script_line(&cmd_exe(), &wide("exit /b 3")).unwrap(),
        environment: environment(&[]),
        current_directory: cwd(),
        desktop: Some(&desktop),
        stdin: Vec::new(),
    })
    .wait(Duration::from_secs(60))
    .unwrap();
    assert_eq!(finished.exit_code, 3);
}

fn token_sids(_token: &RestrictedToken) -> Vec<CapabilitySid> {
    vec![CapabilitySid::random().unwrap()]
}

#[test]
fn doctor_probe_finds_token_acl_job_and_desktop_support() {
    let report = WindowsReport::probe();
    assert!(report.restricted_token.is_ok(), "{report:?}");
    assert!(report.acl_composition.is_ok(), "{report:?}");
    assert!(report.job_objects.is_ok(), "{report:?}");
    assert!(report.private_desktop.is_ok(), "{report:?}");
}

// Enforcement: only a real Windows machine shows these (Wine stores no
// file DACLs and ignores restricting SIDs).

/// A workspace-write plan for a fresh directory, applied.
fn applied_plan(root: &std::path::Path, state: &std::path::Path) -> (WindowsPlan, AclReport) {
    let root = WinPath::parse(&root.to_string_lossy()).unwrap();
    let probe_fn = |path: &WinPath| probe(path);
    let context = WindowsContext {
        cwd: root,
        temp_dirs: vec![],
        workspace_roots: vec![],
        homes: vec![],
        probe: &probe_fn,
        canonical: &|_: &WinPath| None,
    };
    let mut sids = SidStore::load(state).unwrap();
    let plan = WindowsPlan::new(
        &PermissionProfile::preset("workspace-write").unwrap(),
        None,
        &context,
        WindowsNetwork::BestEffort,
        &mut sids,
    )
    .unwrap();
    sids.save(state).unwrap();
    let report = apply_acls(&plan).unwrap();
    (plan, report)
}

fn run_restricted(plan: &WindowsPlan, cwd: &std::path::Path, script: &str) -> Finished {
    let token = RestrictedToken::create(&plan.token, UnenforcedToken::Refuse).unwrap();
    start(|| Command {
        token: TokenChoice::Restricted(&token),
        application: Some(cmd_exe()),
        command_line: crate::windows_plan::cmd_script_line(&cmd_exe(), &wide(script)).unwrap(),
        environment: environment(&[]),
        current_directory: units(cwd.as_os_str()),
        desktop: None,
        stdin: Vec::new(),
    })
    .wait(Duration::from_secs(60))
    .unwrap()
}

#[test]
#[ignore = "enforcement: real Windows only (Wine enforces no token or DACL)"]
fn enforcement_a_write_outside_the_roots_is_denied() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (plan, _) = applied_plan(root.path(), state.path());
    let inside = run_restricted(&plan, root.path(), "echo x> inside.txt");
    assert_eq!(inside.exit_code, 0, "{inside:?}");
    let target = outside.path().join("outside.txt");
    let denied = run_restricted(
        &plan,
        root.path(),
        &format!("echo x> \"{}\"", target.display()),
    );
    assert_ne!(denied.exit_code, 0, "{denied:?}");
    assert!(!target.exists());
}

#[test]
#[ignore = "enforcement: real Windows only (Wine enforces no token or DACL)"]
fn enforcement_git_is_not_writable() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(".git")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let (plan, _) = applied_plan(root.path(), state.path());
    let denied = run_restricted(&plan, root.path(), "echo x> .git\\config");
    assert_ne!(denied.exit_code, 0, "{denied:?}");
    assert!(!root.path().join(".git").join("config").exists());
    let created = run_restricted(&plan, root.path(), "mkdir .agents\\x");
    assert_ne!(created.exit_code, 0, "{created:?}");
}

/// A profile with no writable root (`read-only`) writes nowhere: not its
/// working directory, not `%TEMP%`. Its token's only restricting SID is
/// the launch's, which no file ACE grants.
#[test]
#[ignore = "enforcement: real Windows only (Wine enforces no token or DACL)"]
fn enforcement_a_read_only_profile_writes_nowhere() {
    let root = tempfile::tempdir().unwrap();
    let probe_fn = |path: &WinPath| probe(path);
    let context = WindowsContext {
        cwd: WinPath::parse(&root.path().to_string_lossy()).unwrap(),
        temp_dirs: vec![],
        workspace_roots: vec![],
        homes: vec![],
        probe: &probe_fn,
        canonical: &|_: &WinPath| None,
    };
    let plan = WindowsPlan::new(
        &PermissionProfile::preset("read-only").unwrap(),
        None,
        &context,
        WindowsNetwork::BestEffort,
        &mut SidStore::default(),
    )
    .unwrap();
    assert!(plan.roots.is_empty(), "{:?}", plan.roots);
    let temp = std::env::temp_dir().join(format!("execgate-ro-{}", std::process::id()));
    let denied = run_restricted(
        &plan,
        root.path(),
        &format!("echo x> here.txt & echo x> \"{}\"", temp.display()),
    );
    assert!(!root.path().join("here.txt").exists(), "{denied:?}");
    assert!(!temp.exists(), "{denied:?}");
}

/// Two sandboxes that share a root (and so its SID, as every run shares
/// `%TEMP%`'s) cannot open each other's processes for write: what a
/// command creates admits the user and its own launch SID only.
#[test]
#[ignore = "enforcement: real Windows only (Wine enforces no token)"]
fn enforcement_one_sandbox_cannot_open_anothers_process() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (plan, _) = applied_plan(root.path(), state.path());
    let (other, _) = applied_plan(root.path(), state.path());
    assert_eq!(plan.roots, other.roots);
    assert_ne!(plan.token.launch_sid, other.token.launch_sid);
    let target_token = RestrictedToken::create(&plan.token, UnenforcedToken::Refuse).unwrap();
    let target = this_binary_in_role("sleep", "", TokenChoice::Restricted(&target_token));
    let pid_file = root.path().join("target.pid");
    std::fs::write(&pid_file, target.pid.to_string()).unwrap();
    let opener_token = RestrictedToken::create(&other.token, UnenforcedToken::Refuse).unwrap();
    let opener = this_binary_in_role(
        "open-for-write",
        &pid_file.to_string_lossy(),
        TokenChoice::Restricted(&opener_token),
    )
    .wait(Duration::from_secs(60))
    .unwrap();
    target.kill().unwrap();
    assert_eq!(opener.exit_code, 0, "{opener:?}");
}

/// Regression: a root's allow granted `FILE_DELETE_CHILD`, so the sandbox
/// could rename `.git` away (its own deny of `DELETE` notwithstanding) and
/// put one of its own in its place. Renaming it fails; deleting an
/// ordinary file still works through the inherited `DELETE`.
#[test]
#[ignore = "enforcement: real Windows only (Wine enforces no token or DACL)"]
fn enforcement_git_cannot_be_renamed_away() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(".git")).unwrap();
    std::fs::write(root.path().join("old.txt"), "x").unwrap();
    let state = tempfile::tempdir().unwrap();
    let (plan, _) = applied_plan(root.path(), state.path());
    let renamed = run_restricted(&plan, root.path(), "move .git moved-git");
    assert!(root.path().join(".git").is_dir(), "{renamed:?}");
    assert!(!root.path().join("moved-git").exists(), "{renamed:?}");
    let renamed = run_restricted(&plan, root.path(), "ren .agents moved-agents");
    assert!(root.path().join(".agents").is_dir(), "{renamed:?}");
    let deleted = run_restricted(&plan, root.path(), "del old.txt");
    assert_eq!(deleted.exit_code, 0, "{deleted:?}");
    assert!(!root.path().join("old.txt").exists(), "{deleted:?}");
}

/// A root's allow of an earlier version (with `FILE_DELETE_CHILD`) is not
/// taken as already there: it is revoked and placed anew, or `GRANT_ACCESS`
/// would keep what it granted beyond the plan. A deny that denies more is
/// reused.
#[test]
fn an_allow_that_grants_more_than_planned_is_replaced() {
    let sid = CapabilitySid::from_parts([1, 2, 3, 4]);
    let ace = |kind, mask| AcePlan {
        path: WinPath::parse(r"C:\work").unwrap(),
        kind,
        sid,
        mask,
        inheritance: crate::windows_plan::Inheritance::FoldersAndFiles,
        lifetime: AceLifetime::Kept,
    };
    let record = |ace_type, mask| AceRecord {
        ace_type,
        flags: 0x3,
        mask,
        sid: sid.to_string(),
    };
    let allow = ace(AceKind::Allow, mask::ROOT_ALLOW);
    let older = record(0, mask::ROOT_ALLOW | mask::FILE_DELETE_CHILD);
    assert!(!already_there(std::slice::from_ref(&older), &allow));
    assert_eq!(stale_allows(&[older], &[&allow]), vec![&allow]);
    let same = record(0, mask::ROOT_ALLOW);
    assert!(already_there(std::slice::from_ref(&same), &allow));
    let deny = ace(AceKind::Deny, mask::DENY_WRITE);
    let wider = record(1, mask::DENY_WRITE | 0x8);
    assert!(already_there(&[wider], &deny));
    assert!(stale_allows(&[record(1, 0x2)], &[&deny]).is_empty());
}

#[test]
#[ignore = "enforcement: real Windows only (Wine stores no file DACLs)"]
fn enforcement_aces_are_reused_and_temporary_ones_removed() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (plan, first) = applied_plan(root.path(), state.path());
    assert!(first.added > 0);
    let (again, second) = applied_plan(root.path(), state.path());
    assert_eq!(plan.aces, again.aces);
    assert_eq!(second.added, 0, "{second:?}");
    let mut temporary = plan.clone();
    for ace in &mut temporary.aces {
        ace.lifetime = AceLifetime::Temporary;
    }
    assert!(remove_temporary_acls(&temporary).unwrap() > 0);
    let (_, third) = applied_plan(root.path(), state.path());
    assert!(third.added > 0, "{third:?}");
}

/// A plan whose only ACEs are temporary allows, one per path, of one SID.
fn plan_with_temporary_aces(paths: &[&std::path::Path]) -> WindowsPlan {
    let state = tempfile::tempdir().unwrap();
    let (mut plan, _) = {
        let root = tempfile::tempdir().unwrap();
        applied_plan(root.path(), state.path())
    };
    // Nothing else to place: no protected directory of that plan's root.
    plan.protected.clear();
    let sid = CapabilitySid::random().unwrap();
    plan.aces = paths
        .iter()
        .map(|path| AcePlan {
            path: WinPath::parse(&path.to_string_lossy()).unwrap(),
            kind: AceKind::Allow,
            sid,
            mask: mask::ROOT_ALLOW,
            inheritance: Inheritance::FoldersAndFiles,
            lifetime: AceLifetime::Temporary,
        })
        .collect();
    plan
}

/// Regression: removing temporary ACEs stopped at its first failure, so
/// one path it could not clear kept every later grant in place. Every
/// one is tried, and each failure is reported.
#[test]
fn removing_temporary_aces_tries_every_one_and_reports_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let exists = dir.path().join("b-exists");
    std::fs::create_dir(&exists).unwrap();
    let (first, last) = (dir.path().join("a-missing"), dir.path().join("c-missing"));
    let plan = plan_with_temporary_aces(&[&first, &exists, &last]);
    match remove_temporary_acls(&plan) {
        Err(WindowsError::TemporaryAcesLeft(left)) => {
            assert_eq!(left.len(), 2, "{left:?}");
            assert!(left[0].contains("a-missing"), "{left:?}");
            assert!(left[1].contains("c-missing"), "{left:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// Regression: ACEs placed before a failure part-way through placing them
/// (or before any other failure ahead of the removal) were never removed.
/// Placing fails with the removal already tried, and says what was left.
#[test]
fn a_failure_while_placing_aces_removes_the_temporary_ones() {
    let dir = tempfile::tempdir().unwrap();
    let exists = dir.path().join("a-exists");
    std::fs::create_dir(&exists).unwrap();
    let missing = dir.path().join("z-missing");
    let plan = plan_with_temporary_aces(&[&exists, &missing]);
    let placed = PlacedAces::place(&plan);
    match placed {
        Err(WindowsError::CleanupFailed { error, cleanup }) => {
            assert!(error.to_string().contains("z-missing"), "{error}");
            // Only the path that never existed is left; the one placed
            // was cleared.
            match *cleanup {
                WindowsError::TemporaryAcesLeft(left) => {
                    assert_eq!(left.len(), 1, "{left:?}");
                    assert!(left[0].contains("z-missing"), "{left:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("placed ACEs on a missing path"),
    };
}

#[test]
#[ignore = "enforcement: real Windows only (Wine stores no file DACLs)"]
fn enforcement_a_failed_placement_leaves_no_temporary_ace() {
    let dir = tempfile::tempdir().unwrap();
    let exists = dir.path().join("a-exists");
    std::fs::create_dir(&exists).unwrap();
    let plan = plan_with_temporary_aces(&[&exists, &dir.path().join("z-missing")]);
    assert!(PlacedAces::place(&plan).is_err());
    let current = sys::named_dacl(&units(exists.as_os_str())).unwrap();
    // SAFETY: the DACL lives inside `current`.
    let present = unsafe { sys::acl_entries(current.dacl) }.unwrap();
    let sid = plan.aces[0].sid.to_string();
    assert!(!present.iter().any(|ace| ace.sid == sid), "{present:?}");
}
