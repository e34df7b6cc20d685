//! The planner's cases, table-driven: paths, quoting, environment blocks,
//! refusals, roots and their SIDs, ACEs and the token.

use std::collections::BTreeMap;

use super::*;
use crate::profile::{FileSystemPolicy, FsEntry};

fn path(text: &str) -> WinPath {
    WinPath::parse(text).unwrap()
}

fn narrow(units: &[u16]) -> String {
    String::from_utf16(units).unwrap()
}

#[test]
fn windows_paths_parse_to_one_normal_form() {
    let cases: &[(&str, Option<&str>)] = &[
        (r"C:\work", Some(r"C:\work")),
        (r"c:/work/./src/../lib/", Some(r"C:\work\lib")),
        (r"C:\", Some(r"C:\")),
        ("D:", None),
        (r"C:\..\..", Some(r"C:\")),
        (r"\\?\C:\Work", Some(r"C:\Work")),
        (r"\\Server\Share\dir", Some(r"\\server\share\dir")),
        (r"\\?\UNC\server\share\x", Some(r"\\server\share\x")),
        (r"work\src", None),
        (r"\work", None),
        ("C:work", None),
        (r"\\server", None),
        (r"\\.\NUL", None),
        ("/usr/bin", None),
        (r"C:\a:b", None),
        ("C:\\a\0b", None),
    ];
    for (input, expected) in cases {
        let parsed = WinPath::parse(input).ok().map(|parsed| parsed.to_string());
        assert_eq!(parsed.as_deref(), *expected, "{input:?}");
    }
}

#[test]
fn windows_paths_compare_without_case_and_by_component() {
    assert_eq!(path(r"C:\Work\SRC"), path(r"c:\work\src"));
    assert!(path(r"C:\Work\src\x").starts_with(&path(r"c:\WORK")));
    assert!(path(r"C:\work").starts_with(&path(r"C:\work")));
    assert!(!path(r"C:\workspace").starts_with(&path(r"C:\work")));
    assert!(!path(r"D:\work\x").starts_with(&path(r"C:\work")));
    assert!(path(r"C:\x").starts_with(&path(r"C:\")));
    assert!(path(r"C:\x").join("..").is_err());
    assert!(path(r"C:\x").join(r"a\b").is_err());
    assert_eq!(path(r"C:\Ärger").key(), path(r"c:\äRGER").key());
    // Win32 drops a component's trailing dots and spaces when it opens it.
    assert!(path(r"C:\ws\.git.\hooks").starts_with(&path(r"C:\ws\.git")));
    assert!(path(r"C:\ws\.git .\hooks").starts_with(&path(r"C:\ws\.GIT")));
    assert!(path(r"C:\ws\.git\hooks").starts_with(&path(r"C:\ws\.git..")));
    assert_eq!(path(r"C:\ws.\x"), path(r"C:\ws\x"));
    assert!(!path(r"C:\ws\.gitx\hooks").starts_with(&path(r"C:\ws\.git")));
}

/// `CommandLineToArgvW`'s rules (the 2008 C runtime's), written from its
/// documentation to check quoting by a round trip.
fn split_command_line(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut args = Vec::new();
    let mut index = 0;
    // The program name: up to white space, or quoted without escapes.
    let mut program = String::new();
    if chars.first() == Some(&'"') {
        index = 1;
        while index < chars.len() && chars[index] != '"' {
            program.push(chars[index]);
            index += 1;
        }
        index += 1;
    } else {
        while index < chars.len() && chars[index] != ' ' && chars[index] != '\t' {
            program.push(chars[index]);
            index += 1;
        }
    }
    args.push(program);
    loop {
        while index < chars.len() && (chars[index] == ' ' || chars[index] == '\t') {
            index += 1;
        }
        if index >= chars.len() {
            return args;
        }
        let mut argument = String::new();
        let mut quoted = false;
        while index < chars.len() {
            let c = chars[index];
            if c == '\\' {
                let start = index;
                while index < chars.len() && chars[index] == '\\' {
                    index += 1;
                }
                let count = index - start;
                if index < chars.len() && chars[index] == '"' {
                    argument.extend(std::iter::repeat_n('\\', count / 2));
                    if count % 2 == 1 {
                        argument.push('"');
                        index += 1;
                    }
                } else {
                    argument.extend(std::iter::repeat_n('\\', count));
                }
                continue;
            }
            if c == '"' {
                if quoted && chars.get(index + 1) == Some(&'"') {
                    argument.push('"');
                    index += 2;
                    continue;
                }
                quoted = !quoted;
                index += 1;
                continue;
            }
            if !quoted && (c == ' ' || c == '\t') {
                break;
            }
            argument.push(c);
            index += 1;
        }
        args.push(argument);
    }
}

#[test]
fn command_lines_quote_as_command_line_to_argv_splits() {
    let cases: &[(&[&str], &str)] = &[
        (&["prog", "a", "b"], "prog a b"),
        (&["prog", ""], r#"prog """#),
        (&["prog", "a b"], r#"prog "a b""#),
        (&["prog", r#"say "hi""#], r#"prog "say \"hi\"""#),
        (&["prog", r"C:\dir\"], r"prog C:\dir\"),
        (&["prog", r"C:\my dir\"], r#"prog "C:\my dir\\""#),
        (&["prog", r#"a\"b"#], r#"prog "a\\\"b""#),
        (&["prog", r"a\\b"], r"prog a\\b"),
        (&["prog", "tab\there"], "prog \"tab\there\""),
        (
            &[r"C:\Program Files\x.exe", "-v"],
            r#""C:\Program Files\x.exe" -v"#,
        ),
    ];
    for (argv, expected) in cases {
        let argv: Vec<Vec<u16>> = argv.iter().map(|arg| wide(arg)).collect();
        let line = narrow(&command_line(&argv).unwrap());
        assert_eq!(line, *expected);
        let back: Vec<Vec<u16>> = split_command_line(&line)
            .iter()
            .map(|arg| wide(arg))
            .collect();
        assert_eq!(back, argv, "round trip of {line:?}");
    }
}

#[test]
fn command_lines_refuse_what_cannot_be_spelled() {
    let cases: &[&[&str]] = &[&[], &[""], &["pro\"g"], &["prog", "a\0b"]];
    for argv in cases {
        let argv: Vec<Vec<u16>> = argv.iter().map(|arg| wide(arg)).collect();
        assert!(
            matches!(command_line(&argv), Err(WindowsPlanError::BadCommand(_))),
            "{argv:?}"
        );
    }
}

#[test]
fn batch_arguments_are_quoted_for_cmd_or_refused() {
    let cmd = wide(r"C:\Windows\System32\cmd.exe");
    let prefix = r"C:\Windows\System32\cmd.exe /d /s /v:off /c ";
    let cases: &[(&[&str], Option<&str>)] = &[
        (
            &["build.bat", "a&b", "x|y"],
            Some(r#"""build.bat" "a&b" "x|y"""#),
        ),
        (
            &["build.bat", "two words", "(x)", ""],
            Some(r#"""build.bat" "two words" "(x)" """"#),
        ),
        (
            &[r"C:\my tools\b.cmd", r#"q"uote"#, "^!<>"],
            Some(r##"""C:\my tools\b.cmd" "q""uote" "^!<>"""##),
        ),
        (
            &["build.bat", "plain-arg_1.txt", r"C:\dir\", r#"a\"b"#],
            Some(r#"""build.bat" plain-arg_1.txt "C:\dir\\" "a\\""b"""#),
        ),
        (
            &["build.bat", "a,b;c=d"],
            Some(r#"""build.bat" "a,b;c=d"""#),
        ),
        (&["build.bat", "100%"], None),
        (&["build.bat", "%PATH%"], None),
        (&["build.bat", "a\nb"], None),
        (&["build.bat", "a\rb"], None),
        (&["build.bat", "a\0b"], None),
        (&["bu\"ild.bat"], None),
        (&[""], None),
    ];
    for (argv, expected) in cases {
        let argv: Vec<Vec<u16>> = argv.iter().map(|arg| wide(arg)).collect();
        let line = cmd_command_line(&cmd, &argv).ok().map(|line| narrow(&line));
        let expected = expected.map(|rest| format!("{prefix}{rest}"));
        assert_eq!(line, expected, "{argv:?}");
    }
}

/// What cmd runs of a line after `/s /c`: the metacharacters it reads
/// outside quotes (it toggles quoting at every `"`; `^` escapes outside
/// quotes only for its first reading, so it is counted too).
fn cmd_metacharacters_outside_quotes(line: &str) -> Vec<char> {
    let mut quoted = false;
    let mut found = Vec::new();
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '&' | '|' | '<' | '>' | '(' | ')' | '^' | '!' | '%' | '\n' | '\r' if !quoted => {
                found.push(c)
            }
            _ => {}
        }
    }
    found
}

/// Regression (BatBadBut, CVE-2024-24576): `x&evil.exe` was escaped `x^&evil.exe`,
/// which cmd's first reading turns back into `x&evil.exe` for a batch file
/// that expands `%*`. Every hostile argument now stays inside quotes in
/// both readings, and a program the batch file passes `%*` on to gets
/// exactly the arguments given.
#[test]
fn hostile_batch_arguments_never_stand_outside_quotes() {
    let cmd = wide(r"C:\Windows\System32\cmd.exe");
    let corpus = [
        "x&evil.exe",
        "x|evil.exe",
        "x<in",
        "x>out",
        "x^&evil.exe",
        "(x)&evil.exe",
        r#"x"&evil.exe"#,
        r#""&evil.exe"#,
        r#"x\"&evil.exe"#,
        r#"x\\"&evil.exe"#,
        "x!PATH!&evil.exe",
        r"trailing\",
        r"trailing\\",
        "two words&evil.exe",
        "tab\there",
        "",
        "\u{85}x",
        "plain",
    ];
    for argument in corpus {
        let argv = [wide("t.bat"), wide(argument), wide("second")];
        let line = narrow(&cmd_command_line(&cmd, &argv).unwrap());
        let (_, after) = line.split_once(" /c ").unwrap();
        // `/s`: cmd strips exactly the first and the last quote.
        let inner = &after[1..after.len() - 1];
        assert_eq!(
            cmd_metacharacters_outside_quotes(inner),
            Vec::<char>::new(),
            "{argument:?}: {line}"
        );
        // The batch file's `%*` on a program's command line.
        let passed_on = format!("program {}", inner.split_once(' ').unwrap().1);
        assert_eq!(
            split_command_line(&passed_on)[1..],
            [argument.to_owned(), "second".to_owned()],
            "{argument:?}: {line}"
        );
    }
}

#[test]
fn scripts_go_to_cmd_verbatim_and_to_pwsh_encoded() {
    let line = cmd_script_line(&wide("cmd.exe"), &wide("echo a & echo b")).unwrap();
    assert_eq!(narrow(&line), r#"cmd.exe /d /s /c "echo a & echo b""#);
    let line = pwsh_script_line(&wide("pwsh.exe"), &wide("Write-Output 'hé'")).unwrap();
    // Base64 of the UTF-16LE script.
    assert_eq!(
        narrow(&line),
        "pwsh.exe -NoLogo -NoProfile -NonInteractive -EncodedCommand \
         VwByAGkAdABlAC0ATwB1AHQAcAB1AHQAIAAnAGgA6QAnAA=="
    );
    assert!(cmd_script_line(&wide("cmd.exe"), &wide("a\0b")).is_err());
}

#[test]
fn environment_blocks_are_sorted_without_case_and_refuse_ambiguity() {
    let block = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(Vec<u16>, Vec<u16>)> = pairs
            .iter()
            .map(|(name, value)| (wide(name), wide(value)))
            .collect();
        environment_block(&pairs).map(|block| narrow(&block))
    };
    assert_eq!(
        block(&[
            ("path", "x"),
            ("A", "1"),
            ("_U", "2"),
            ("=C:", r"C:\"),
            ("b", "")
        ])
        .unwrap(),
        "=C:=C:\\\0A=1\0b=\0path=x\0_U=2\0\0"
    );
    assert_eq!(block(&[]).unwrap(), "\0\0");
    for bad in [
        &[("Path", "a"), ("PATH", "b")][..],
        &[("", "x")],
        &[("A=B", "x")],
        &[("A", "x\0y")],
    ] {
        assert!(
            matches!(block(bad), Err(WindowsPlanError::BadEnvironment(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn capability_sids_are_domain_sids_and_nothing_else() {
    let sid = CapabilitySid::random().unwrap();
    assert_eq!(CapabilitySid::parse(&sid.to_string()), Some(sid));
    assert_ne!(sid, CapabilitySid::random().unwrap());
    for bad in [
        "S-1-1-0",
        "S-1-5-5-0-12345",
        "S-1-5-21-1-2-3",
        "S-1-5-21-1-2-3-4-5",
        "S-1-5-21-1-2-3-x",
        "S-1-5-21-1-2-3-+4",
        "S-1-5-21-1-2-3-4294967296",
    ] {
        assert_eq!(CapabilitySid::parse(bad), None, "{bad}");
    }
}

#[test]
fn sid_store_persists_and_refuses_a_tampered_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SidStore::load(dir.path()).unwrap();
    let sid = store.sid_for(&path(r"C:\Work")).unwrap();
    assert!(store.is_changed());
    store.save(dir.path()).unwrap();
    let mut again = SidStore::load(dir.path()).unwrap();
    assert_eq!(again.sid_for(&path(r"c:\work")).unwrap(), sid);
    assert!(!again.is_changed());

    for tampered in [
        "S-1-1-0\tC:\\work\n",
        "garbage\n",
        "S-1-5-21-1-2-3-4\trelative\n",
    ] {
        std::fs::write(dir.path().join(CAPABILITY_SID_FILE), tampered).unwrap();
        assert!(
            matches!(
                SidStore::load(dir.path()),
                Err(WindowsPlanError::SidStore { .. })
            ),
            "{tampered:?}"
        );
    }
}

/// A context at `C:\work` with `%TEMP%` at `C:\Users\u\AppData\Local\Temp`
/// and what the table says exists.
fn plan_with(
    profile: &PermissionProfile,
    additional: Option<&PermissionProfile>,
    workspace_roots: &[&str],
    existing: &[(&str, PathKind)],
    network: WindowsNetwork,
    sids: &mut SidStore,
) -> Result<WindowsPlan, WindowsPlanError> {
    let probe = probe_of(existing);
    let context = context_at(r"C:\work", workspace_roots, &[], &probe);
    WindowsPlan::new(profile, additional, &context, network, sids)
}

/// What a probe of the disk answers, from a table of what exists.
fn probe_of(existing: &[(&str, PathKind)]) -> impl Fn(&WinPath) -> PathKind {
    let existing: BTreeMap<String, PathKind> = existing
        .iter()
        .map(|(at, kind)| (path(at).key(), *kind))
        .collect();
    move |at: &WinPath| {
        existing
            .get(&at.key())
            .copied()
            .unwrap_or(PathKind::Missing)
    }
}

/// A context at `cwd`, with `%TEMP%` at `C:\Users\u\AppData\Local\Temp`.
fn context_at<'probe>(
    cwd: &str,
    workspace_roots: &[&str],
    homes: &[&str],
    probe: &'probe dyn Fn(&WinPath) -> PathKind,
) -> WindowsContext<'probe> {
    WindowsContext {
        cwd: path(cwd),
        temp_dirs: vec![path(r"C:\Users\u\AppData\Local\Temp")],
        workspace_roots: workspace_roots.iter().map(|root| path(root)).collect(),
        homes: homes.iter().map(|home| path(home)).collect(),
        probe,
        canonical: &|_: &WinPath| None,
    }
}

fn managed(entries: &[(FsTarget, Access)], network: NetworkPolicy) -> PermissionProfile {
    PermissionProfile::Managed {
        file_system: FileSystemPolicy {
            entries: entries
                .iter()
                .map(|(target, access)| FsEntry {
                    target: target.clone(),
                    access: *access,
                })
                .collect(),
        },
        network,
        network_lists: Default::default(),
    }
}

fn special(root: SpecialRoot) -> FsTarget {
    FsTarget::Special(root)
}

#[test]
fn profiles_the_token_cannot_enforce_are_refused() {
    let root_read = (special(SpecialRoot::Root), Access::Read);
    let cwd_write = (special(SpecialRoot::Cwd), Access::Write);
    let cases: Vec<(&str, PermissionProfile, WindowsNetwork, &str)> = vec![
        (
            "reads narrower than the disk",
            managed(std::slice::from_ref(&cwd_write), NetworkPolicy::Enabled),
            WindowsNetwork::Refuse,
            "cannot restrict reads",
        ),
        (
            ":minimal",
            managed(
                &[
                    (special(SpecialRoot::Minimal), Access::Read),
                    cwd_write.clone(),
                ],
                NetworkPolicy::Enabled,
            ),
            WindowsNetwork::Refuse,
            ":minimal",
        ),
        (
            "a none entry",
            managed(
                &[
                    root_read.clone(),
                    (special(SpecialRoot::Tmpdir), Access::None),
                ],
                NetworkPolicy::Enabled,
            ),
            WindowsNetwork::Refuse,
            ":tmpdir = none",
        ),
        (
            "a deny glob",
            managed(
                &[
                    root_read.clone(),
                    (FsTarget::DenyGlob("**/*.env".into()), Access::None),
                ],
                NetworkPolicy::Enabled,
            ),
            WindowsNetwork::Refuse,
            "**/*.env",
        ),
        (
            "restricted network without the opt-in",
            PermissionProfile::preset("workspace-write").unwrap(),
            WindowsNetwork::Refuse,
            "best-effort",
        ),
        (
            ":root = write",
            managed(
                &[(special(SpecialRoot::Root), Access::Write)],
                NetworkPolicy::Enabled,
            ),
            WindowsNetwork::Refuse,
            r#"execution = "unsandboxed""#,
        ),
        (
            "external sandbox",
            PermissionProfile::External {
                network: NetworkPolicy::Enabled,
            },
            WindowsNetwork::BestEffort,
            "external",
        ),
        (
            "unsandboxed",
            PermissionProfile::Disabled,
            WindowsNetwork::BestEffort,
            "runs no session without a sandbox",
        ),
    ];
    for (name, profile, network, expected) in cases {
        let error = plan_with(&profile, None, &[], &[], network, &mut SidStore::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{name}: {error}");
    }
    // A read-restricting grant arriving with additional permissions is
    // refused the same way.
    let base = managed(&[root_read, cwd_write], NetworkPolicy::Enabled);
    let extra = managed(
        &[(FsTarget::DenyGlob("*.pem".into()), Access::None)],
        NetworkPolicy::Enabled,
    );
    assert!(matches!(
        plan_with(
            &base,
            Some(&extra),
            &[],
            &[],
            WindowsNetwork::Refuse,
            &mut SidStore::default()
        ),
        Err(WindowsPlanError::ReadsRestricted(_))
    ));
}

#[test]
fn workspace_write_plans_roots_protected_names_aces_and_token() {
    let mut sids = SidStore::default();
    let (cwd, temp) = (path(r"C:\work"), path(r"C:\Users\u\AppData\Local\Temp"));
    let (cwd_sid, temp_sid) = (
        CapabilitySid::from_parts([1, 1, 1, 1]),
        CapabilitySid::from_parts([2, 2, 2, 2]),
    );
    sids.insert(&cwd, cwd_sid);
    sids.insert(&temp, temp_sid);
    let plan = plan_with(
        &PermissionProfile::preset("workspace-write").unwrap(),
        None,
        &[],
        &[
            (r"C:\work\.git", PathKind::File),
            (r"C:\work\.agents", PathKind::Directory),
        ],
        WindowsNetwork::BestEffort,
        &mut sids,
    )
    .unwrap();

    assert_eq!(
        plan.roots,
        vec![
            WritableRoot {
                path: temp.clone(),
                sid: temp_sid,
                lifetime: AceLifetime::Kept
            },
            WritableRoot {
                path: cwd.clone(),
                sid: cwd_sid,
                lifetime: AceLifetime::Kept
            },
        ]
    );
    let protected: Vec<(String, PathKind)> = plan
        .protected
        .iter()
        .map(|item| (item.path.to_string(), item.found))
        .collect();
    assert_eq!(
        protected,
        vec![
            // A missing `.git` stays creatable: `git init` must work.
            (
                r"C:\Users\u\AppData\Local\Temp\.agents".to_owned(),
                PathKind::Missing
            ),
            (
                r"C:\Users\u\AppData\Local\Temp\.execgate".to_owned(),
                PathKind::Missing
            ),
            (r"C:\work\.git".to_owned(), PathKind::File),
            (r"C:\work\.agents".to_owned(), PathKind::Directory),
            (r"C:\work\.execgate".to_owned(), PathKind::Missing),
        ]
    );
    let deny = |at: &str, sid, inheritance| AcePlan {
        path: path(at),
        kind: AceKind::Deny,
        sid,
        mask: mask::DENY_WRITE,
        inheritance,
        lifetime: AceLifetime::Kept,
    };
    let allow = |at: &WinPath, sid| AcePlan {
        path: at.clone(),
        kind: AceKind::Allow,
        sid,
        mask: mask::ROOT_ALLOW,
        inheritance: Inheritance::FoldersAndFiles,
        lifetime: AceLifetime::Kept,
    };
    let both = Inheritance::FoldersAndFiles;
    assert_eq!(
        plan.aces,
        vec![
            deny(r"C:\Users\u\AppData\Local\Temp\.agents", temp_sid, both),
            deny(r"C:\Users\u\AppData\Local\Temp\.execgate", temp_sid, both),
            // A `.git` file (a worktree's) is denied without inheritance.
            deny(r"C:\work\.git", cwd_sid, Inheritance::None),
            deny(r"C:\work\.agents", cwd_sid, both),
            deny(r"C:\work\.execgate", cwd_sid, both),
            allow(&temp, temp_sid),
            allow(&cwd, cwd_sid),
        ]
    );
    assert_eq!(
        plan.token,
        TokenPlan {
            flags: 0x1 | 0x4 | 0x8,
            launch_sid: plan.token.launch_sid,
            restricting_sids: {
                let mut sids = vec![cwd_sid, temp_sid, plan.token.launch_sid];
                sids.sort();
                sids
            },
            default_dacl: vec![
                DefaultDaclEntry::TokenUser,
                DefaultDaclEntry::Capability(plan.token.launch_sid),
            ],
        }
    );
    assert!(![cwd_sid, temp_sid].contains(&plan.token.launch_sid));
    let NetworkPlan::BestEffort { environment } = &plan.network else {
        panic!("best effort expected");
    };
    let names: Vec<&str> = environment.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "NO_PROXY",
            "PIP_NO_INDEX",
            "CARGO_NET_OFFLINE",
            "NPM_CONFIG_OFFLINE",
            "GIT_ALLOW_PROTOCOL"
        ]
    );
    assert!(plan.network.warning().is_some());
}

/// Regression: a root's allow ACE granted `FILE_DELETE_CHILD`, with which
/// NTFS lets a child be deleted or renamed through its parent even when
/// the child denies `DELETE`: `.git`, `.agents` and `.execgate` could be
/// renamed away and replaced. Allows grant `DELETE` (inherited, so each
/// child can still be deleted) and never `FILE_DELETE_CHILD`; denies keep
/// both.
#[test]
fn a_roots_allow_never_grants_delete_child() {
    let profile = managed(
        &[
            (special(SpecialRoot::Root), Access::Read),
            (special(SpecialRoot::Cwd), Access::Write),
            (special(SpecialRoot::Tmpdir), Access::Write),
            (special(SpecialRoot::WorkspaceRoots), Access::Write),
        ],
        NetworkPolicy::Enabled,
    );
    let plan = plan_with(
        &profile,
        None,
        &[r"D:\cache"],
        &[(r"C:\work\.git", PathKind::Directory)],
        WindowsNetwork::Refuse,
        &mut SidStore::default(),
    )
    .unwrap();
    let masks: Vec<(String, AceKind, u32)> = plan
        .aces
        .iter()
        .map(|ace| (ace.path.to_string(), ace.kind, ace.mask))
        .collect();
    // read | write | execute | DELETE; the deny: write data, append,
    // write EA, write attributes, DELETE, FILE_DELETE_CHILD.
    let allow = 0x0013_01BF;
    let deny = 0x0001_0156;
    assert_eq!(
        masks,
        vec![
            (
                r"C:\Users\u\AppData\Local\Temp\.agents".to_owned(),
                AceKind::Deny,
                deny
            ),
            (
                r"C:\Users\u\AppData\Local\Temp\.execgate".to_owned(),
                AceKind::Deny,
                deny
            ),
            (r"C:\work\.git".to_owned(), AceKind::Deny, deny),
            (r"C:\work\.agents".to_owned(), AceKind::Deny, deny),
            (r"C:\work\.execgate".to_owned(), AceKind::Deny, deny),
            (r"D:\cache\.agents".to_owned(), AceKind::Deny, deny),
            (r"D:\cache\.execgate".to_owned(), AceKind::Deny, deny),
            (
                r"C:\Users\u\AppData\Local\Temp".to_owned(),
                AceKind::Allow,
                allow
            ),
            (r"C:\work".to_owned(), AceKind::Allow, allow),
            (r"D:\cache".to_owned(), AceKind::Allow, allow),
        ]
    );
    assert_eq!(mask::ROOT_ALLOW & mask::FILE_DELETE_CHILD, 0);
    assert_eq!(mask::ROOT_ALLOW & mask::DELETE, mask::DELETE);
}

#[test]
fn a_missing_git_stays_creatable_but_agents_is_created_first() {
    let plan = plan_with(
        &PermissionProfile::preset("workspace-write").unwrap(),
        None,
        &[],
        &[],
        WindowsNetwork::BestEffort,
        &mut SidStore::default(),
    )
    .unwrap();
    let names: Vec<&str> = plan
        .protected
        .iter()
        .filter(|item| item.path.starts_with(&path(r"C:\work")))
        .filter_map(|item| item.path.file_name())
        .collect();
    assert_eq!(names, [".agents", ".execgate"]);
    assert!(!plan
        .aces
        .iter()
        .any(|ace| ace.path.file_name() == Some(".git")));
}

#[test]
fn the_token_never_restricts_with_everyone_or_the_logon_sid() {
    // Restricting SIDs are typed as capability SIDs: S-1-5-21 domain SIDs
    // with four sub-authorities, which neither Everyone (S-1-1-0) nor a
    // logon SID (S-1-5-5-x-y) is. The plan holds exactly the roots' SIDs.
    let mut sids = SidStore::default();
    let plan = plan_with(
        &PermissionProfile::preset("workspace-write").unwrap(),
        None,
        &[r"D:\shared"],
        &[],
        WindowsNetwork::BestEffort,
        &mut sids,
    )
    .unwrap();
    let mut root_sids: Vec<CapabilitySid> = plan.roots.iter().map(|root| root.sid).collect();
    assert_eq!(root_sids.len(), 3);
    root_sids.push(plan.token.launch_sid);
    root_sids.sort();
    assert_eq!(plan.token.restricting_sids, root_sids);
    for sid in &plan.token.restricting_sids {
        assert!(sid.to_string().starts_with("S-1-5-21-"));
    }
}

/// Regression: a profile with no writable root made an empty list of
/// restricting SIDs, and `CreateRestrictedToken` with none returns a token
/// that is not restricted: `read-only` wrote anywhere.
#[test]
fn a_profile_with_no_writable_root_still_has_a_restricting_sid() {
    let read_only = managed(
        &[(special(SpecialRoot::Root), Access::Read)],
        NetworkPolicy::Enabled,
    );
    let cases = [
        (read_only, WindowsNetwork::Refuse),
        (
            PermissionProfile::preset("read-only").unwrap(),
            WindowsNetwork::BestEffort,
        ),
    ];
    for (profile, network) in cases {
        let plan = plan_with(&profile, None, &[], &[], network, &mut SidStore::default()).unwrap();
        assert!(plan.roots.is_empty(), "{plan:?}");
        assert_eq!(plan.token.restricting_sids, vec![plan.token.launch_sid]);
        assert!(
            plan.aces.is_empty(),
            "the launch SID is granted no file ACE"
        );
    }
    // Fresh for every launch.
    let twice: Vec<CapabilitySid> = (0..2)
        .map(|_| {
            plan_with(
                &PermissionProfile::preset("workspace-write").unwrap(),
                None,
                &[],
                &[],
                WindowsNetwork::BestEffort,
                &mut SidStore::default(),
            )
            .unwrap()
            .token
            .launch_sid
        })
        .collect();
    assert_ne!(twice[0], twice[1]);
}

/// Regression: the default DACL granted every capability SID, so two
/// `workspace-write` runs (which share `%TEMP%`'s SID) could open each
/// other's processes for write. Only the user and the launch SID now.
#[test]
fn the_default_dacl_admits_the_user_and_this_launch_only() {
    let mut sids = SidStore::default();
    let plan = |sids: &mut SidStore| {
        plan_with(
            &PermissionProfile::preset("workspace-write").unwrap(),
            None,
            &[r"D:\shared"],
            &[],
            WindowsNetwork::BestEffort,
            sids,
        )
        .unwrap()
    };
    let (first, second) = (plan(&mut sids), plan(&mut sids));
    for plan in [&first, &second] {
        assert_eq!(
            plan.token.default_dacl,
            vec![
                DefaultDaclEntry::TokenUser,
                DefaultDaclEntry::Capability(plan.token.launch_sid)
            ]
        );
    }
    // The two share their roots' SIDs, and nothing of either's DACL.
    assert_eq!(first.roots, second.roots);
    assert!(!second
        .token
        .default_dacl
        .contains(&DefaultDaclEntry::Capability(first.token.launch_sid)));
}

#[test]
fn a_path_belongs_to_the_most_specific_root() {
    let mut sids = SidStore::default();
    let plan = plan_with(
        &PermissionProfile::preset("workspace-write").unwrap(),
        None,
        &[r"D:\all", r"C:\work\sub", r"C:\Work\sub\deeper"],
        &[(r"C:\work\sub\.git", PathKind::Directory)],
        WindowsNetwork::BestEffort,
        &mut sids,
    );
    // The table checks which root each path lands in.
    let plan = plan.unwrap();
    let cases = [
        (r"C:\work\sub\deeper\x\y", Some(r"C:\Work\sub\deeper")),
        (r"C:\work\sub\x", Some(r"C:\work\sub")),
        (r"c:\WORK\subway", Some(r"C:\work")),
        (r"C:\work", Some(r"C:\work")),
        (r"D:\ALL\x", Some(r"D:\all")),
        (r"C:\elsewhere", None),
        (r"D:\elsewhere", None),
    ];
    for (at, expected) in cases {
        let found = plan.root_for(&path(at)).map(|root| root.path.to_string());
        assert_eq!(found.as_deref(), expected, "{at}");
    }
    // A protected name inside a nested root is denied with the SID of the
    // root that holds it.
    let sub_git = plan
        .aces
        .iter()
        .find(|ace| ace.path == path(r"C:\work\sub\.git"))
        .unwrap();
    assert_eq!(
        sub_git.sid,
        plan.root_for(&path(r"C:\work\sub")).unwrap().sid
    );
    assert_eq!(sub_git.kind, AceKind::Deny);
}

#[test]
fn sids_are_reused_across_plans_so_aces_do_not_pile_up() {
    let mut sids = SidStore::default();
    let profile = PermissionProfile::preset("workspace-write").unwrap();
    let first = plan_with(
        &profile,
        None,
        &[],
        &[],
        WindowsNetwork::BestEffort,
        &mut sids,
    )
    .unwrap();
    let second = plan_with(
        &profile,
        None,
        &[],
        &[],
        WindowsNetwork::BestEffort,
        &mut sids,
    )
    .unwrap();
    assert_eq!(first.aces, second.aces);
    let text = sids.to_text();
    let reloaded = SidStore::parse(&text, std::path::Path::new("x")).unwrap();
    assert_eq!(reloaded.to_text(), text);
}

#[test]
fn additional_write_roots_are_temporary_and_base_roots_kept() {
    let mut sids = SidStore::default();
    let base = managed(
        &[
            (special(SpecialRoot::Root), Access::Read),
            (special(SpecialRoot::Cwd), Access::Write),
        ],
        NetworkPolicy::Enabled,
    );
    let extra = managed(
        &[
            (special(SpecialRoot::Tmpdir), Access::Write),
            (special(SpecialRoot::Cwd), Access::Write),
        ],
        NetworkPolicy::Enabled,
    );
    let plan = plan_with(
        &base,
        Some(&extra),
        &[],
        &[],
        WindowsNetwork::Refuse,
        &mut sids,
    )
    .unwrap();
    let lifetimes: Vec<(String, AceLifetime)> = plan
        .roots
        .iter()
        .map(|root| (root.path.to_string(), root.lifetime))
        .collect();
    assert_eq!(
        lifetimes,
        vec![
            (
                r"C:\Users\u\AppData\Local\Temp".to_owned(),
                AceLifetime::Temporary
            ),
            (r"C:\work".to_owned(), AceLifetime::Kept),
        ]
    );
    assert!(plan
        .aces
        .iter()
        .filter(|ace| ace
            .path
            .starts_with(&path(r"C:\Users\u\AppData\Local\Temp")))
        .all(|ace| ace.lifetime == AceLifetime::Temporary));
    assert_eq!(plan.network, NetworkPlan::Enabled);
}

/// Paths in profiles are host paths: only a Windows build can hold
/// `C:\...` in an `AbsolutePath`, so these cases run under Wine in CI.
#[cfg(windows)]
#[test]
fn read_carve_outs_and_explicit_protected_paths() {
    use crate::profile::AbsolutePath;
    let at = |text: &str| FsTarget::Path(AbsolutePath::new(text, None).unwrap());
    let mut sids = SidStore::default();
    let profile = managed(
        &[
            (special(SpecialRoot::Root), Access::Read),
            (special(SpecialRoot::Cwd), Access::Write),
            (at(r"C:\work\vendor"), Access::Read),
            (at(r"C:\work\vendor\gen"), Access::Write),
            (at(r"C:\work\.execgate"), Access::Write),
            (at(r"C:\elsewhere"), Access::Read),
        ],
        NetworkPolicy::Enabled,
    );
    let plan = plan_with(
        &profile,
        None,
        &[],
        &[(r"C:\work\vendor", PathKind::Directory)],
        WindowsNetwork::Refuse,
        &mut sids,
    )
    .unwrap();
    let cwd_sid = plan.root_for(&path(r"C:\work")).unwrap().sid;
    let vendor = plan
        .aces
        .iter()
        .find(|ace| ace.path == path(r"C:\work\vendor"))
        .unwrap();
    assert_eq!((vendor.kind, vendor.sid), (AceKind::Deny, cwd_sid));
    assert!(plan
        .aces
        .iter()
        .any(|ace| ace.path == path(r"C:\work\vendor\gen") && ace.kind == AceKind::Allow));
    // Named writable by the profile: not protected.
    assert!(!plan
        .aces
        .iter()
        .any(|ace| ace.path == path(r"C:\work\.execgate") && ace.kind == AceKind::Deny));
    assert!(!plan
        .aces
        .iter()
        .any(|ace| ace.path == path(r"C:\elsewhere")));
}

/// Regression: an escalation beyond the sandbox kept the caller's `PATH`,
/// so `.venv\Scripts` or a relative entry first in it let a program the
/// sandbox planted run unsandboxed by name.
#[test]
fn path_beyond_the_sandbox_leaves_out_writable_and_relative_entries() {
    let profile = PermissionProfile::preset("workspace-write").unwrap();
    let probe = |_: &WinPath| PathKind::Missing;
    let context = context_at(r"C:\work", &[], &[], &probe);
    let writable = sandbox_writable_paths(&[&profile], &context).unwrap();
    assert_eq!(
        writable,
        vec![path(r"C:\Users\u\AppData\Local\Temp"), path(r"C:\work")]
    );
    let caller_path = [
        r"C:\work\.venv\Scripts",
        ".",
        "bin",
        r"C:\Windows\system32",
        "",
        r"c:\WORK\node_modules\.bin",
        r"C:\Users\u\AppData\Local\Temp\x",
        r#""C:\Program Files\Git\cmd""#,
        r"C:\workspace",
    ]
    .join(";");
    let as_spelled = |dir: &WinPath| PathEntryFound::Canonical(dir.clone());
    let (kept, dropped) = path_beyond_sandbox(&caller_path, &writable, &as_spelled);
    assert_eq!(
        kept,
        r#"C:\Windows\system32;"C:\Program Files\Git\cmd";C:\workspace"#
    );
    assert_eq!(
        dropped,
        [
            r"C:\work\.venv\Scripts",
            ".",
            "bin",
            r"c:\WORK\node_modules\.bin",
            r"C:\Users\u\AppData\Local\Temp\x"
        ]
    );
}

/// Regression: PATH entries were compared with the writable roots as
/// text only, so `C:\work` spelled through `subst`, a junction, an 8.3
/// name or a trailing dot stayed in an escalation's PATH. Each entry is
/// judged as spelled and as resolved on disk; one that exists but cannot
/// be resolved is left out; one with nothing on its way is judged as
/// spelled.
#[test]
fn path_beyond_the_sandbox_judges_each_entry_as_resolved_on_disk() {
    let writable = [path(r"C:\work")];
    let on_disk: BTreeMap<String, PathEntryFound> = [
        (r"S:\bin", PathEntryFound::Canonical(path(r"C:\work\bin"))),
        (
            r"C:\link\bin",
            PathEntryFound::Canonical(path(r"C:\work\bin")),
        ),
        (
            r"C:\WORK~1\bin",
            PathEntryFound::Canonical(path(r"C:\work\bin")),
        ),
        (
            r"C:\work.\bin",
            PathEntryFound::Canonical(path(r"C:\work\bin")),
        ),
        (
            r"S:\later",
            PathEntryFound::Canonical(path(r"C:\work\later")),
        ),
        (r"C:\locked", PathEntryFound::Unresolvable),
        (r"Q:\absent", PathEntryFound::Nowhere),
        (
            r"C:\Windows\System32",
            PathEntryFound::Canonical(path(r"C:\Windows\System32")),
        ),
        // Spelled under the root, leading out of it: the sandbox can
        // re-point the junction, so the spelling decides.
        (
            r"C:\work\junction",
            PathEntryFound::Canonical(path(r"C:\Windows")),
        ),
    ]
    .into_iter()
    .map(|(entry, found)| (path(entry).key(), found))
    .collect();
    let resolve = |dir: &WinPath| {
        on_disk
            .get(&dir.key())
            .cloned()
            .unwrap_or(PathEntryFound::Unresolvable)
    };
    let caller_path = [
        r"S:\bin",
        r"C:\link\bin",
        r"C:\WORK~1\bin",
        r"C:\work.\bin",
        r"S:\later",
        r"C:\locked",
        r"Q:\absent",
        r"C:\Windows\System32",
        r"C:\work\junction",
    ]
    .join(";");
    let (kept, dropped) = path_beyond_sandbox(&caller_path, &writable, &resolve);
    assert_eq!(kept, r"Q:\absent;C:\Windows\System32");
    assert_eq!(
        dropped,
        [
            r"S:\bin",
            r"C:\link\bin",
            r"C:\WORK~1\bin",
            r"C:\work.\bin",
            r"S:\later",
            r"C:\locked",
            r"C:\work\junction",
        ]
    );
    // A quoted entry holding `;` is split first: each piece is judged.
    let (kept, dropped) =
        path_beyond_sandbox(r#""C:\work;x";C:\Windows\System32"#, &writable, &resolve);
    assert_eq!(kept, r"C:\Windows\System32");
    assert_eq!(dropped, [r#""C:\work"#, r#"x""#]);
}

/// Regression: a program the sandbox could have written (`.\git.exe` in
/// the working directory, a tool in `%TEMP%` or `.venv\Scripts`) was
/// escalated beyond the sandbox by a rule on its name. Such an escalation
/// is refused, whatever the case of the spelling, and says why.
#[test]
fn an_escalated_program_the_sandbox_could_write_is_refused() {
    let sandbox = [path(r"C:\work"), path(r"C:\Users\u\AppData\Local\Temp")];
    let granted = [path(r"D:\cache")];
    let cases: &[(&str, Option<&str>)] = &[
        (r"C:\work\git.exe", Some("writable from the sandbox")),
        (
            r"c:\WORK\.venv\Scripts\pip.exe",
            Some("writable from the sandbox"),
        ),
        (
            r"C:\USERS\U\APPDATA\LOCAL\TEMP\x\tool.exe",
            Some("writable from the sandbox"),
        ),
        (
            r"d:\Cache\bin\npm.cmd",
            Some("writable by a grant this session made"),
        ),
        (r"C:\Windows\System32\whoami.exe", None),
        (r"C:\workspace\git.exe", None),
        (r"C:\Program Files\Git\cmd\git.exe", None),
    ];
    for (program, expected) in cases {
        let refusal = escalation_refusal(&path(program), &sandbox, &granted);
        match (expected, &refusal) {
            (None, None) => {}
            (Some(how), Some(refusal)) => {
                assert!(
                    refusal.starts_with("escalation refused: ") && refusal.contains(how),
                    "{program}: {refusal}"
                );
                assert!(refusal.contains(&path(program).to_string()), "{refusal}");
            }
            (None, Some(_)) | (Some(_), None) => {
                panic!("{program}: expected {expected:?}, got {refusal:?}")
            }
        }
    }
}

/// Regression: the planner let `:cwd = write` start inside `.git`, at a
/// volume's root, or at the home or above it (all the user's startup
/// files writable), and a writable root inside a root's `.git` silently
/// took that `.git`'s protection away, also when spelled with a trailing
/// dot or space or an 8.3 name. Each is refused, as on Linux.
#[test]
fn working_directories_and_roots_that_would_open_git_or_a_volume_are_refused() {
    let root_read = (special(SpecialRoot::Root), Access::Read);
    let cwd_write = (special(SpecialRoot::Cwd), Access::Write);
    let cwd_read = (special(SpecialRoot::Cwd), Access::Read);
    // Profile paths are host paths (a Windows build's only); workspace
    // roots stand here for any further writable root.
    let roots_write = (special(SpecialRoot::WorkspaceRoots), Access::Write);
    let with = |more: Vec<(FsTarget, Access)>| {
        let mut entries = vec![root_read.clone()];
        entries.extend(more);
        managed(&entries, NetworkPolicy::Enabled)
    };
    // (case, working directory, profile, workspace roots, refusal or None)
    type Case<'a> = (
        &'a str,
        &'a str,
        PermissionProfile,
        &'a [&'a str],
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "a project",
            r"C:\work",
            with(vec![cwd_write.clone()]),
            &[],
            None,
        ),
        (
            "inside .git",
            r"C:\work\.git\hooks",
            with(vec![cwd_write.clone()]),
            &[],
            Some("is inside .git"),
        ),
        (
            ".git spelled in upper case with a trailing dot",
            r"C:\work\.GIT.",
            with(vec![cwd_write.clone()]),
            &[],
            Some("is inside .git"),
        ),
        (
            "inside .git, read only",
            r"C:\work\.git",
            with(vec![cwd_read.clone()]),
            &[],
            None,
        ),
        (
            "a drive root",
            r"D:\",
            with(vec![cwd_write.clone()]),
            &[],
            Some("the root of its volume"),
        ),
        (
            "a share root",
            r"\\server\share",
            with(vec![cwd_write.clone()]),
            &[],
            Some("the root of its volume"),
        ),
        (
            "a drive root, read only",
            r"D:\",
            with(vec![cwd_read.clone()]),
            &[],
            None,
        ),
        (
            "a root inside the working directory's .git",
            r"C:\work",
            with(vec![cwd_write.clone(), roots_write.clone()]),
            &[r"C:\work\.git\hooks"],
            Some(r"C:\work\.git\hooks is inside C:\work\.git"),
        ),
        (
            "the working directory's .git itself",
            r"C:\work",
            with(vec![cwd_write.clone(), roots_write.clone()]),
            &[r"c:\WORK\.Git"],
            Some("is inside"),
        ),
        (
            "a root inside .git spelled with a trailing dot",
            r"C:\work",
            with(vec![cwd_write.clone(), roots_write.clone()]),
            &[r"C:\work\.git.\hooks"],
            Some(r"is inside C:\work\.git"),
        ),
        (
            "a root inside .git spelled with a trailing space",
            r"C:\work",
            with(vec![cwd_write.clone(), roots_write.clone()]),
            &[r"C:\work\.git \hooks"],
            Some(r"is inside C:\work\.git"),
        ),
        (
            "a root inside .git spelled with its 8.3 name",
            r"C:\work",
            with(vec![cwd_write.clone(), roots_write.clone()]),
            &[r"C:\work\GIT~1\hooks"],
            Some(r"C:\work\.git\hooks is inside C:\work\.git"),
        ),
        (
            "a workspace root inside another root's .git",
            r"C:\work",
            with(vec![cwd_write.clone(), roots_write.clone()]),
            &[r"C:\work\.git\modules\sub"],
            Some("is inside"),
        ),
        (
            "the home",
            r"C:\Users\me",
            with(vec![cwd_write.clone()]),
            &[],
            Some("holds your home directory"),
        ),
        (
            "the home, spelled in another case",
            r"c:\USERS\ME",
            with(vec![cwd_write.clone()]),
            &[],
            Some("holds your home directory"),
        ),
        (
            "above the home",
            r"C:\Users",
            with(vec![cwd_write.clone()]),
            &[],
            Some("holds your home directory"),
        ),
        (
            "above the profile Windows reports",
            r"D:\Profiles",
            with(vec![cwd_write.clone()]),
            &[],
            Some("holds your home directory"),
        ),
        (
            "the home, read only",
            r"C:\Users\me",
            with(vec![cwd_read.clone()]),
            &[],
            None,
        ),
        (
            "a project in the home",
            r"C:\Users\me\src\app",
            with(vec![cwd_write.clone()]),
            &[],
            None,
        ),
        (
            "a sibling whose name extends the home's",
            r"C:\Users\meg",
            with(vec![cwd_write.clone()]),
            &[],
            None,
        ),
        (
            ".execgate named writable is meant",
            r"C:\work",
            with(vec![cwd_write.clone(), roots_write.clone()]),
            &[r"C:\work\.execgate"],
            None,
        ),
    ];
    // An 8.3 name, as Windows resolves it for the backend.
    let canonical = |at: &WinPath| {
        (at.key() == path(r"C:\work\GIT~1\hooks").key()).then(|| path(r"C:\work\.git\hooks"))
    };
    for (case, cwd, profile, workspace_roots, refusal) in cases {
        let probe = |_: &WinPath| PathKind::Directory;
        let context = WindowsContext {
            cwd: path(cwd),
            temp_dirs: vec![],
            workspace_roots: workspace_roots.iter().map(|root| path(root)).collect(),
            homes: vec![path(r"C:\Users\Me"), path(r"D:\Profiles\me")],
            probe: &probe,
            canonical: &canonical,
        };
        let planned = WindowsPlan::new(
            &profile,
            None,
            &context,
            WindowsNetwork::Refuse,
            &mut SidStore::default(),
        );
        match (refusal, planned) {
            (None, Ok(_)) => {}
            (Some(expected), Err(error)) => {
                assert!(error.to_string().contains(expected), "{case}: {error}")
            }
            (None, Err(error)) => panic!("{case}: refused: {error}"),
            (Some(expected), Ok(plan)) => {
                panic!("{case}: planned, expected {expected:?}: {:?}", plan.roots)
            }
        }
    }
}

/// A plan of `profile` at `cwd`, with the homes and what exists given.
fn plan_in(
    profile: &PermissionProfile,
    cwd: &str,
    workspace_roots: &[&str],
    homes: &[&str],
    existing: &[(&str, PathKind)],
) -> Result<WindowsPlan, WindowsPlanError> {
    let probe = probe_of(existing);
    let context = context_at(cwd, workspace_roots, homes, &probe);
    let mut sids = SidStore::default();
    WindowsPlan::new(profile, None, &context, WindowsNetwork::Refuse, &mut sids)
}

/// Whether `plan` denies renaming or deleting the directory `at` itself.
fn denies_delete(plan: &WindowsPlan, at: &str) -> bool {
    plan.aces.iter().any(|ace| {
        ace.kind == AceKind::Deny && ace.path == path(at) && ace.mask & mask::DELETE != 0
    })
}

/// Probe 125: a read-only path two levels below a writable root, or the
/// `.git` of a root inside another root, was denied writes on itself
/// only: the directories between kept the outer root's `DELETE`, and
/// NTFS lets a directory be renamed without looking below it, so the
/// sandbox renamed one away and made a new path in its place (on Linux,
/// the mount there makes the rename fail). Each directory between is
/// denied `DELETE`, on itself only.
#[test]
fn the_directories_above_a_protected_path_cannot_be_renamed() {
    let cwd_read = managed(
        &[
            (special(SpecialRoot::Root), Access::Read),
            (special(SpecialRoot::WorkspaceRoots), Access::Write),
            (special(SpecialRoot::Cwd), Access::Read),
        ],
        NetworkPolicy::Enabled,
    );
    let existing = [
        (r"C:\ws\cfg", PathKind::Directory),
        (r"C:\ws\cfg\locked", PathKind::Directory),
    ];
    let plan = plan_in(&cwd_read, r"C:\ws\cfg\locked", &[r"C:\ws"], &[], &existing).unwrap();
    assert!(denies_delete(&plan, r"C:\ws\cfg"), "{:#?}", plan.aces);
    assert!(denies_delete(&plan, r"C:\ws\cfg\locked"));
    assert!(!denies_delete(&plan, r"C:\ws"), "the root itself");
    // Only the directory itself: what it holds stays deletable.
    assert!(plan
        .aces
        .iter()
        .filter(|ace| ace.path == path(r"C:\ws\cfg"))
        .all(|ace| ace.inheritance == Inheritance::None));

    let nested = managed(
        &[
            (special(SpecialRoot::Root), Access::Read),
            (special(SpecialRoot::WorkspaceRoots), Access::Write),
        ],
        NetworkPolicy::Enabled,
    );
    let existing = [(r"C:\proj\lib\.git", PathKind::Directory)];
    let plan = plan_in(
        &nested,
        r"C:\elsewhere",
        &[r"C:\proj", r"C:\proj\lib"],
        &[],
        &existing,
    )
    .unwrap();
    assert!(denies_delete(&plan, r"C:\proj\lib"), "{:#?}", plan.aces);
    assert!(!denies_delete(&plan, r"C:\proj"));
}

/// Probe 125: `:cwd = write` at a volume's root was refused, the same
/// root as a workspace root was not.
#[test]
fn a_volume_root_is_never_a_writable_root() {
    let workspace = managed(
        &[
            (special(SpecialRoot::Root), Access::Read),
            (special(SpecialRoot::WorkspaceRoots), Access::Write),
        ],
        NetworkPolicy::Enabled,
    );
    for root in [r"D:\", r"\\server\share"] {
        let refused = plan_in(&workspace, r"C:\work", &[root], &[], &[]);
        assert!(
            matches!(refused, Err(WindowsPlanError::VolumeRootWritable { .. })),
            "{root}: {refused:?}"
        );
    }
}

/// Probe 125: `\\localhost\c$\Users\u` is the home by another name: the
/// planner's checks (the home, the state directory, the protected names)
/// compare paths by name, and a share of this machine, or any drive's
/// administrative share, named the same folders unrecognised. Refused as
/// a writable root.
#[test]
fn a_share_of_this_machine_or_an_administrative_share_is_never_writable() {
    let workspace = managed(
        &[
            (special(SpecialRoot::Root), Access::Read),
            (special(SpecialRoot::WorkspaceRoots), Access::Write),
        ],
        NetworkPolicy::Enabled,
    );
    for root in [
        r"\\localhost\c$\Users\u",
        r"\\LOCALHOST\Users\u\proj",
        r"\\127.0.0.1\share\proj",
        r"\\[::1]\share\proj",
        r"\\?\UNC\localhost\c$\proj",
        r"\\fileserver\d$\proj",
    ] {
        let refused = plan_in(&workspace, r"C:\work", &[root], &[], &[]);
        assert!(
            matches!(refused, Err(WindowsPlanError::LocalShareWritable { .. })),
            "{root}: {refused:?}"
        );
    }
    let remote = plan_in(&workspace, r"C:\work", &[r"\\fileserver\proj\x"], &[], &[]);
    assert!(remote.is_ok(), "{remote:?}");
}

/// Probe 125: `D:` is the drive's current directory to Windows, not its
/// root; the planner took it for `D:\`.
#[test]
fn a_bare_drive_is_refused_as_drive_relative() {
    assert!(WinPath::parse("D:").is_err());
    assert!(WinPath::parse(r"D:\").is_ok());
}

/// Probe 125: NTFS upper-cases a name unit by unit (`ß` stays `ß`); full
/// Unicode upper-casing made `straße` and `STRASSE` one path, one root and
/// one SID.
#[test]
fn names_fold_one_character_at_a_time_as_ntfs_does() {
    assert_ne!(path(r"C:\work\straße"), path(r"C:\work\STRASSE"));
    assert_ne!(path("C:\\work\\\u{fb00}"), path(r"C:\work\FF"));
    assert_eq!(path(r"C:\work\Ärger"), path(r"C:\work\äRGER"));
}

/// Probe 125: a program that reads its command line in the ANSI code page
/// sees what Windows' best-fit mapping makes of it: U+3000 as a blank,
/// U+FF02 as a quote, so one argument the rules judged became several.
/// An argument with any non-ASCII character is quoted, and one with a
/// character that maps to a quote or a backslash is refused; typographic
/// quotes, which the common code pages hold, pass (review 127: a commit
/// message with them was refused).
#[test]
fn arguments_survive_the_ansi_code_pages_best_fit() {
    let line = command_line(&[wide("prog.exe"), wide("--safe\u{3000}--danger")]).unwrap();
    assert_eq!(narrow(&line), "prog.exe \"--safe\u{3000}--danger\"");
    let quoted = "say \u{201c}hi\u{201d} \u{201e}ho\u{201c}";
    let line = command_line(&[wide("git.exe"), wide("-m"), wide(quoted)]).unwrap();
    assert_eq!(narrow(&line), format!("git.exe -m \"{quoted}\""));
    for lookalike in ['\u{ff02}', '\u{ff3c}', '\u{2033}', '\u{a5}'] {
        let argument = format!("x{lookalike} --danger {lookalike}");
        assert!(
            command_line(&[wide("prog.exe"), wide(&argument)]).is_err(),
            "{argument:?}"
        );
        assert!(
            cmd_command_line(
                &wide(r"C:\Windows\System32\cmd.exe"),
                &[wide(r"C:\b.bat"), wide(&argument)]
            )
            .is_err(),
            "{argument:?} to a batch file"
        );
    }
}
