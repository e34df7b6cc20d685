use std::path::Path;

use crate::{lint, CheckReport, MatchOptions, RuleDecision, RuleExecution, RuleSet};

fn rules(source: &str) -> RuleSet {
    match RuleSet::parse(Path::new("test.rules"), source) {
        Ok(set) => set,
        Err(error) => panic!("{error}"),
    }
}

fn decision(set: &RuleSet, argv: &str, resolve: bool) -> Option<RuleDecision> {
    let argv = shlex::split(argv).unwrap_or_default();
    set.check(
        &argv,
        MatchOptions {
            resolve_host_executables: resolve,
        },
    )
    .decision()
}

const README_EXAMPLE: &str = r#"
host_executable(name = "git", paths = ["/usr/bin/git"])
prefix_rule(
    pattern = ["git", ["status", "diff", "log"]],
    decision = "allow",
    justification = "read-only git",
    match = [["git", "status"], "git log -1"],
    not_match = ["git push"],
)
prefix_rule(pattern = ["git", "push"], decision = "prompt", justification = "publishes work")
prefix_rule(pattern = ["git", "push", "--force"], decision = "forbidden", justification = "rewrites shared history")
prefix_rule(pattern = ["rm", "-rf", "/"], decision = "forbidden")
prefix_rule(pattern = ["cargo", "fmt"], exact = True, execution = "turn-default")
prefix_rule(pattern = ["curl"], decision = "prompt", execution = "network")
prefix_rule(pattern = ["ls"])
"#;

#[test]
fn decisions_table() {
    let set = rules(README_EXAMPLE);
    let cases: &[(&str, bool, Option<RuleDecision>)] = &[
        ("git status", false, Some(RuleDecision::Allow)),
        ("git diff --stat", false, Some(RuleDecision::Allow)),
        ("git log -1", false, Some(RuleDecision::Allow)),
        ("git commit", false, None),
        ("git", false, None),
        ("git push origin", false, Some(RuleDecision::Prompt)),
        // Strictest wins: prompt and forbidden both match.
        ("git push --force", false, Some(RuleDecision::Forbidden)),
        ("rm -rf /", false, Some(RuleDecision::Forbidden)),
        ("rm -rf /tmp", false, None),
        ("cargo fmt", false, Some(RuleDecision::Allow)),
        ("cargo fmt --all", false, None),
        ("ls -la", false, Some(RuleDecision::Allow)),
        // The exact token first: absolute paths need resolution...
        ("/usr/bin/git status", false, None),
        // ...pinned by host_executable for git,
        ("/usr/bin/git status", true, Some(RuleDecision::Allow)),
        ("/home/eve/bin/git status", true, None),
        // ...and open for names host_executable says nothing about.
        ("/bin/ls", true, Some(RuleDecision::Allow)),
        // A relative path never falls back.
        ("./ls", true, None),
        ("", false, None),
    ];
    for (argv, resolve, expected) in cases {
        assert_eq!(
            decision(&set, argv, *resolve),
            *expected,
            "{argv} (resolve: {resolve})"
        );
    }
}

/// Probe 238: a rule whose path had `//` or `/./` in it never matched the
/// path a session decides on; `..` is kept (a link may lie before it).
#[test]
fn a_rules_path_is_read_as_a_session_compares_it() {
    let set = rules(
        r#"
prefix_rule(pattern = ["/usr/bin//rm", "-rf"], decision = "forbidden", match = ["/usr/bin//rm -rf /"])
prefix_rule(pattern = ["/usr/./bin/touch"], decision = "allow")
prefix_rule(pattern = ["/opt/x/../tool"], decision = "allow")
"#,
    );
    assert_eq!(
        decision(&set, "/usr/bin/rm -rf /", false),
        Some(RuleDecision::Forbidden)
    );
    assert_eq!(
        decision(&set, "/usr/bin/touch a", false),
        Some(RuleDecision::Allow)
    );
    assert_eq!(
        decision(&set, "/opt/x/../tool", false),
        Some(RuleDecision::Allow)
    );
    assert_eq!(decision(&set, "/opt/tool", false), None);
}

#[test]
fn deciding_rule_carries_execution_and_origin() {
    let set = rules(README_EXAMPLE);
    let evaluation = set.check(&["cargo", "fmt"], MatchOptions::default());
    let rule = evaluation.deciding_rule().expect("a match");
    assert_eq!(rule.execution, Some(RuleExecution::TurnDefault));
    assert_eq!(rule.origin.to_string(), "test.rules:13");
    let curl = set.check(&["curl", "x"], MatchOptions::default());
    assert_eq!(
        curl.deciding_rule().and_then(|rule| rule.execution.clone()),
        Some(RuleExecution::Profile("network".into()))
    );
}

#[test]
fn least_privileged_execution_wins_among_equals() {
    let set = rules(
        r#"
prefix_rule(pattern = ["make"], execution = "unsandboxed")
prefix_rule(pattern = ["make", "test"], execution = "turn-default")
"#,
    );
    let evaluation = set.check(&["make", "test"], MatchOptions::default());
    assert_eq!(evaluation.matched.len(), 2);
    assert_eq!(
        evaluation
            .deciding_rule()
            .and_then(|rule| rule.execution.clone()),
        Some(RuleExecution::TurnDefault)
    );
}

#[test]
fn alternatives_in_first_position_make_one_rule_each() {
    let set = rules(r#"prefix_rule(pattern = [["rg", "grep"], "-n"], decision = "allow")"#);
    assert_eq!(set.len(), 2);
    assert_eq!(
        decision(&set, "grep -n x", false),
        Some(RuleDecision::Allow)
    );
    assert_eq!(decision(&set, "rg -n x", false), Some(RuleDecision::Allow));
    assert_eq!(decision(&set, "rg x", false), None);
}

#[cfg(unix)]
#[test]
fn non_utf8_arguments_match_no_token() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let set = rules(r#"prefix_rule(pattern = ["echo", "\ufffd"])"#);
    let argv = [OsString::from("echo"), OsString::from_vec(vec![0xff])];
    assert!(set
        .check_os(&argv, MatchOptions::default())
        .matched
        .is_empty());
}

#[test]
fn files_merge_in_order_and_keep_their_origins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("a.rules");
    let second = dir.path().join("b.rules");
    std::fs::write(
        &first,
        r#"prefix_rule(pattern = ["git"], decision = "allow")"#,
    )
    .expect("write");
    std::fs::write(
        &second,
        "\nprefix_rule(pattern = [\"git\", \"push\"], decision = \"forbidden\")",
    )
    .expect("write");
    let set = RuleSet::load(&[&first, &second]).expect("load");
    let evaluation = set.check(&["git", "push"], MatchOptions::default());
    let origins: Vec<String> = evaluation
        .matched
        .iter()
        .map(|m| m.origin.to_string())
        .collect();
    assert_eq!(
        origins,
        [
            format!("{}:1", first.display()),
            format!("{}:2", second.display())
        ]
    );
    assert_eq!(evaluation.decision(), Some(RuleDecision::Forbidden));
}

#[test]
fn bad_files_name_file_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("prefix_rule(pattern = [\"ls\"]\n", 2, "Parse error"),
        ("\n\nprefix_rule(pattern = [\"ls\"], match = [\"cat x\"])", 3, "does not match"),
        ("\nprefix_rule(pattern = [\"git\"], not_match = [\"git push\"])", 2, "matches this rule"),
        ("prefix_rule(pattern = [\"ls\"], decision = \"maybe\")", 1, "unknown decision"),
        ("prefix_rule(pattern = [])", 1, "must not be empty"),
        ("prefix_rule(pattern = [\"ls\", 3])", 1, "expected"),
        ("prefix_rule(pattern = [\"ls\"], colour = \"red\")", 1, "colour"),
        ("\n\n\n\nhost_executable(name = \"git\", paths = [\"bin/git\"])", 5, "absolute"),
        ("host_executable(name = \"git\", paths = [\"/usr/bin/python3\"])", 1, "does not end"),
        ("prefix_rule(pattern = [\"rm\"], decision = \"forbidden\", execution = \"unsandboxed\")", 1, "no meaning"),
        // A session decides on an absolute path: a relative one never
        // matches (a probe's rules on these loaded and did nothing).
        ("\nprefix_rule(pattern = [\"./prog\"], decision = \"forbidden\")", 2, "pattern[0] \"./prog\" is a relative path"),
        ("prefix_rule(pattern = [\"bin/tool\"], decision = \"forbidden\")", 1, "write a bare name"),
        ("prefix_rule(pattern = [[\"rm\", \"../rm\"], \"-rf\"], decision = \"forbidden\")", 1, "\"../rm\" is a relative path"),
        ("prefix_rule(pattern = [\"~eve/bin/x\"], decision = \"forbidden\")", 1, "expanded only as `~/`"),
        // A probe (105): starlark's own words asked for `set_loader`.
        ("\nload(\"x.rules\", \"y\")\n", 2, "each rules file stands alone"),
    ];
    for (source, line, needle) in cases {
        let error = RuleSet::parse(Path::new("bad.rules"), source).expect_err(source);
        let text = error.to_string();
        assert_eq!(error.line(), Some(*line), "{source}: {text}");
        assert!(text.starts_with(&format!("bad.rules:{line}: ")), "{text}");
        assert!(text.contains(needle), "{source}: {text}");
    }
}

#[test]
fn check_report_has_the_codex_shape() {
    let set = rules(README_EXAMPLE);
    let argv = ["/usr/bin/git", "status"];
    let report = CheckReport::from(&set.check(
        &argv,
        MatchOptions {
            resolve_host_executables: true,
        },
    ));
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "matchedRules": [{"prefixRuleMatch": {
                "matchedPrefix": ["git", "status"],
                "decision": "allow",
                "resolvedProgram": "/usr/bin/git",
                "justification": "read-only git",
                "rule": "test.rules:3",
            }}],
            "decision": "allow",
        })
    );
    let none = CheckReport::from(&set.check(&["true"], MatchOptions::default()));
    assert_eq!(
        serde_json::to_value(&none).expect("json"),
        serde_json::json!({"matchedRules": []})
    );
}

#[test]
fn lint_names_escape_hatches() {
    let set = rules(
        r#"
prefix_rule(pattern = ["python3"], decision = "prompt")
prefix_rule(pattern = ["bash", "-c"])
prefix_rule(pattern = ["/usr/bin/env"])
prefix_rule(pattern = ["find", "."])
prefix_rule(pattern = ["git", "-c"])
prefix_rule(pattern = ["git"])
prefix_rule(pattern = ["git", "status"], execution = "turn-default")
prefix_rule(pattern = ["npm", ["ci", "run"]])
prefix_rule(pattern = ["npm", "ci"])
prefix_rule(pattern = ["make"], decision = "forbidden")
prefix_rule(pattern = ["ls"])
prefix_rule(pattern = ["git", "log"])
prefix_rule(pattern = ["npm-cli.js"])
prefix_rule(pattern = ["npx-cli.js", "--version"], exact = True)
prefix_rule(pattern = ["/usr/lib/node_modules/npm/bin/npx-cli.js"])
prefix_rule(pattern = ["npm", "explore"])
prefix_rule(pattern = ["split"])
prefix_rule(pattern = ["dbus-run-session"])
"#,
    );
    let warned: Vec<usize> = lint(&set)
        .iter()
        .map(|warning| warning.origin.line)
        .collect();
    // Line 13: git unsandboxed, whatever the subcommand. Probe 165: the
    // names npm's and npx's scripts run under (14, 16), and npm's other
    // runners (17). Probe 167: `split --filter`, `dbus-run-session`.
    assert_eq!(warned, [2, 3, 4, 5, 6, 7, 9, 13, 14, 15, 16, 17, 18, 19]);
}

/// A probe found `forbidden` on `perl` dead beside `allow` on
/// `/usr/bin/perl`: the path's rules come first. Lint names a rule on a
/// name that a weaker rule on a path of that name shadows, where one
/// command line can match both.
#[test]
fn lint_names_rules_on_a_name_that_a_path_rule_shadows() {
    let set = rules(
        r#"
prefix_rule(pattern = ["/usr/bin/perl"])
prefix_rule(pattern = ["perl"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/git", "status"])
prefix_rule(pattern = ["git", "push"], decision = "forbidden")
prefix_rule(pattern = ["git", ["status", "log"], "-p"], decision = "prompt")
prefix_rule(pattern = ["/usr/bin/tar", "-x"], exact = True, decision = "prompt")
prefix_rule(pattern = ["tar", "-x", "-f"], decision = "forbidden")
prefix_rule(pattern = ["tar"], decision = "forbidden")
prefix_rule(pattern = ["ls"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/ruby"])
prefix_rule(pattern = ["/usr/bin/ruby", "-e"], decision = "forbidden")
prefix_rule(pattern = ["ruby", "-e"], decision = "forbidden")
"#,
    );
    let shadowed: Vec<(usize, String)> = lint(&set)
        .into_iter()
        .filter(|finding| finding.message.contains("does not apply"))
        .map(|finding| (finding.origin.line, finding.message))
        .collect();
    let lines: Vec<usize> = shadowed.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [3, 6, 9], "{shadowed:#?}");
    assert!(
        shadowed[0].1.starts_with(
            "forbidden on perl does not apply to /usr/bin/perl where the allow rule at "
        ),
        "{}",
        shadowed[0].1
    );
}

const NETWORK_RULES: &str = r#"
network_rule(host = "**.crates.io", protocol = "https", port = 443, justification = "cargo fetch")
network_rule(host = "*.github.com", decision = "prompt")
network_rule(host = "gist.github.com", decision = "forbidden", justification = "paste site")
network_rule(host = "127.0.0.1", protocol = "http", port = 8080)
network_rule(host = "*", protocol = "socks5-tcp", decision = "prompt")
network_rule(host = "1.1.1.99", decision = "forbidden")
network_rule(host = "[::ffff:1.1.1.98]", decision = "forbidden")
network_rule(host = "*", port = 25, decision = "forbidden", justification = "no mail")
"#;

#[test]
fn network_rules_decide_on_host_protocol_and_port() {
    use execgate_network_proxy::{Destination, Protocol};
    let set = rules(NETWORK_RULES);
    let check = |host: &str, port: u16, protocol: Protocol| {
        let destination = Destination::parse(host).unwrap_or_else(|error| panic!("{error}"));
        let evaluation = set.check_network(&destination, port, protocol);
        (
            evaluation.decision(),
            evaluation.deciding_rule().map(|rule| rule.origin.line),
        )
    };
    /// (host, port, protocol, decision, line of the deciding rule)
    type Case = (
        &'static str,
        u16,
        Protocol,
        Option<RuleDecision>,
        Option<usize>,
    );
    let cases: &[Case] = &[
        (
            "crates.io",
            443,
            Protocol::Https,
            Some(RuleDecision::Allow),
            Some(2),
        ),
        (
            "static.crates.io",
            443,
            Protocol::Https,
            Some(RuleDecision::Allow),
            Some(2),
        ),
        (
            "CRATES.IO.",
            443,
            Protocol::Https,
            Some(RuleDecision::Allow),
            Some(2),
        ),
        // Port and protocol narrow the rule: 80 and http are other questions.
        ("crates.io", 80, Protocol::Https, None, None),
        ("crates.io", 443, Protocol::Http, None, None),
        (
            "api.github.com",
            443,
            Protocol::Https,
            Some(RuleDecision::Prompt),
            Some(3),
        ),
        ("github.com", 443, Protocol::Https, None, None),
        // Strictest wins.
        (
            "gist.github.com",
            443,
            Protocol::Https,
            Some(RuleDecision::Forbidden),
            Some(4),
        ),
        (
            "127.1",
            8080,
            Protocol::Http,
            Some(RuleDecision::Allow),
            Some(5),
        ),
        (
            "example.org",
            22,
            Protocol::Socks5Tcp,
            Some(RuleDecision::Prompt),
            Some(6),
        ),
        ("example.org", 443, Protocol::Https, None, None),
        // A forbidden rule on every host, narrowed by its port (a probe's
        // "no plain mail anywhere" was refused at load).
        (
            "example.org",
            25,
            Protocol::Socks5Tcp,
            Some(RuleDecision::Forbidden),
            Some(9),
        ),
        // Addresses too: `*` names none for an allow, but what a forbidden
        // rule on every host shuts, writing the address does not reach.
        (
            "9.9.9.9",
            25,
            Protocol::Http,
            Some(RuleDecision::Forbidden),
            Some(9),
        ),
        (
            "[::ffff:9.9.9.9]",
            25,
            Protocol::Https,
            Some(RuleDecision::Forbidden),
            Some(9),
        ),
        ("9.9.9.9", 26, Protocol::Http, None, None),
        // A v4-mapped address is its IPv4 address, asked for or written
        // in a rule (regression: `[::ffff:1.1.1.99]` matched no rule).
        (
            "[::ffff:1.1.1.99]",
            80,
            Protocol::Http,
            Some(RuleDecision::Forbidden),
            Some(7),
        ),
        (
            "::ffff:0101:0163",
            443,
            Protocol::Https,
            Some(RuleDecision::Forbidden),
            Some(7),
        ),
        (
            "1.1.1.98",
            443,
            Protocol::Socks5Tcp,
            Some(RuleDecision::Forbidden),
            Some(8),
        ),
        // IPv4-compatible is another (IPv6) address, refused as
        // non-public by the proxy instead.
        ("[::1.1.1.99]", 80, Protocol::Http, None, None),
    ];
    for (host, port, protocol, decision, line) in cases {
        assert_eq!(
            check(host, *port, *protocol),
            (*decision, *line),
            "{host}:{port} {protocol}"
        );
    }
}

#[test]
fn malformed_network_rules_name_their_line() {
    let cases = [
        (
            "network_rule(host = \"foo*.com\")",
            "host: `foo*.com` is not a domain pattern",
        ),
        (
            "network_rule(host = \"a.com\", protocol = \"ftp\")",
            "unknown protocol \"ftp\"",
        ),
        (
            "network_rule(host = \"a.com\", port = 0)",
            "port 0 is not from 1 to 65535",
        ),
        (
            "network_rule(host = \"a.com\", port = 70000)",
            "port 70000 is not from 1 to 65535",
        ),
        (
            "network_rule(host = \"a.com\", decision = \"maybe\")",
            "unknown decision \"maybe\"",
        ),
        (
            "network_rule(host = \"*\", decision = \"forbidden\")",
            "would forbid every destination",
        ),
        (
            "network_rule(host = \"a.com\", justification = \" \")",
            "justification must not be empty",
        ),
    ];
    for (source, expected) in cases {
        let error = match RuleSet::parse(Path::new("net.rules"), &format!("\n{source}\n")) {
            Ok(_) => panic!("{source} loaded"),
            Err(error) => error.to_string(),
        };
        assert!(error.starts_with("net.rules:2: "), "{source}: {error}");
        assert!(error.contains(expected), "{source}: {error}");
    }
}

#[test]
fn lint_names_network_rules_open_to_every_host() {
    let set = rules(NETWORK_RULES);
    let warnings: Vec<String> = lint(&set).iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            "test.rules:6: warning: prompt on every host: the sandbox reaches the whole network \
              through the proxy; name the hosts instead [network_rule host=*]"
                .to_owned()
        ]
    );
}

/// Regression: `protocol = "http"` on a forbidden rule read as closing
/// the host, and the client reached it by CONNECT or SOCKS5 instead: the
/// client, not the rule, picks the protocol. Lint says so.
#[test]
fn lint_names_forbidden_network_rules_narrowed_by_protocol() {
    let set = rules(
        r#"
network_rule(host = "paste.example", protocol = "http", decision = "forbidden")
network_rule(host = "**.paste.example", protocol = "https", port = 443, decision = "forbidden")
network_rule(host = "paste.example", port = 80, decision = "forbidden")
network_rule(host = "crates.io", protocol = "https", decision = "allow")
network_rule(host = "api.example", protocol = "socks5-tcp", decision = "prompt")
"#,
    );
    let warnings: Vec<String> = lint(&set).iter().map(ToString::to_string).collect();
    let warning = |line: usize, host: &str, protocol: &str| {
        format!(
            "test.rules:{line}: warning: forbidden for protocol = \"{protocol}\" only: the \
             client in the sandbox picks how it asks the proxy (an http:// request is \
             \"http\", CONNECT \"https\", SOCKS5 \"socks5-tcp\"), so it reaches {host} the \
             other ways; leave protocol out to forbid it [network_rule host={host} \
             protocol={protocol}]"
        )
    };
    assert_eq!(
        warnings,
        vec![
            warning(2, "paste.example", "http"),
            warning(3, "**.paste.example", "https"),
        ]
    );
}

/// A machine where `/usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk`,
/// `/bin` is a link to `/usr/bin` and comes first in `PATH`, and only `net`
/// is a profile.
struct FakeMachine;

impl crate::LintContext for FakeMachine {
    fn check_profile(&self, name: &str) -> Result<(), String> {
        match name {
            "net" => Ok(()),
            "danger-full-access" => Err("not sandboxed".into()),
            _ => Err(format!("unknown profile {name:?}")),
        }
    }

    fn inspect_path(&self, path: &Path) -> crate::PathState {
        use crate::PathState;
        match path.to_str().unwrap_or_default() {
            "/usr/bin/awk" => PathState::Symlink {
                canonical: "/usr/bin/mawk".into(),
            },
            "/bin/git" => PathState::NotCanonical {
                canonical: "/usr/bin/git".into(),
            },
            "/usr/bin/mawk" | "/usr/bin/git" | "/usr/bin/python3.11" => PathState::Canonical,
            "/opt/pyenv/shims/python3.11" | "/opt/pyenv/shims/python3" => PathState::Canonical,
            "/usr/bin/python3" => PathState::Symlink {
                canonical: "/usr/bin/python3.11".into(),
            },
            "/locked/tool" => PathState::Unknown {
                reason: "Permission denied".into(),
            },
            "/usr/bin/" => PathState::Directory,
            _ => PathState::Missing,
        }
    }

    fn find_program(&self, name: &str) -> Option<std::path::PathBuf> {
        match name {
            "awk" => Some("/usr/bin/awk".into()),
            "git" => Some("/bin/git".into()),
            "mawk" => Some("/usr/bin/mawk".into()),
            "python3.11" | "python3" => Some(Path::new("/opt/pyenv/shims").join(name)),
            "cargo" | "ls" => Some(Path::new("/usr/bin").join(name)),
            _ => None,
        }
    }
}

/// Regression: a rule or pin on a symlink, or a rule on a name that is a
/// link to a program of another name, never matched (a session decides
/// on the canonical path) and lint said nothing.
#[test]
fn lint_with_names_paths_a_session_never_sees() {
    let set = rules(
        r#"
prefix_rule(pattern = ["/usr/bin/awk"], decision = "forbidden")
host_executable(name = "awk", paths = ["/usr/bin/awk"])
host_executable(name = "git", paths = ["/bin/git", "/usr/bin/git"])
prefix_rule(pattern = ["/usr/bin/mawk"], decision = "forbidden")
prefix_rule(pattern = ["/opt/none/tool"], decision = "prompt")
prefix_rule(pattern = ["/locked/tool"], decision = "forbidden")
prefix_rule(pattern = ["awk"], decision = "forbidden")
prefix_rule(pattern = ["git", "push"], decision = "forbidden")
prefix_rule(pattern = ["mawk"], decision = "forbidden")
prefix_rule(pattern = ["nowhere"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/awk", "-W"], decision = "prompt")
prefix_rule(pattern = ["/usr/bin/"], decision = "forbidden")
"#,
    );
    let findings: Vec<String> = crate::lint_with(&set, &FakeMachine)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        findings,
        [
            "test.rules:2: warning: /usr/bin/awk is a symlink to /usr/bin/mawk: a session \
             decides on the canonical path, so this rule forbids it only when it is run by \
             this path; write \"/usr/bin/mawk\" to forbid it however it is run [/usr/bin/awk]",
            "test.rules:3: warning: host_executable path /usr/bin/awk is a symlink to \
             /usr/bin/mawk: a session decides on the canonical path, named mawk, so neither \
             this pin nor the allow and prompt rules on awk ever match it; pin host_executable(name = \"mawk\", \
             paths = [\"/usr/bin/mawk\"]) and write the rules on mawk, or write them on \
             \"/usr/bin/mawk\" [host_executable name=awk path=/usr/bin/awk]",
            "test.rules:4: warning: host_executable path /bin/git resolves to /usr/bin/git: a \
             session decides on the canonical path, so the allow and prompt rules on git never \
             match it; pin /usr/bin/git instead [host_executable name=git path=/bin/git]",
            "test.rules:6: warning: /opt/none/tool does not exist on this machine: a session \
             never sees it here [/opt/none/tool]",
            "test.rules:7: warning: /locked/tool cannot be looked at (Permission denied): lint \
             cannot tell whether a session sees it [/locked/tool]",
            "test.rules:8: warning: awk is /usr/bin/awk here, which resolves to /usr/bin/mawk, \
             named mawk: this rule forbids it where the shell finds it as awk, not when it is \
             run as mawk or by another link; write it on mawk (or \"/usr/bin/mawk\") to forbid \
             it by every name [awk]",
            "test.rules:11: warning: \"nowhere\" is not found in PATH here (a misspelling?); \
             a session matches it only where a program of that name is run, by a path outside \
             PATH or where one is installed [nowhere]",
            // Probe 223: it matches the path as found, but never asks.
            "test.rules:12: warning: /usr/bin/awk is a symlink to /usr/bin/mawk: a session \
             decides on the canonical path, so this rule never asks as written; write \
             \"/usr/bin/mawk\" instead [/usr/bin/awk -W]",
            "test.rules:12: warning: prompt on awk: awk's system() runs any command \
             [/usr/bin/awk -W]",
            "test.rules:13: warning: /usr/bin/ is a directory: a session runs files, and \
             never decides on it [/usr/bin/]",
        ]
    );
    // Without a context, none of that: the rules crate resolves nothing.
    let alone: Vec<String> = lint(&set).iter().map(ToString::to_string).collect();
    assert_eq!(alone, [findings[8].clone()]);
}

/// Probe 187: a rule on `/usr/bin/python3.11` never matched `python3.11 -c`
/// typed in the shell (a pyenv shim came first in `PATH`), and lint said
/// nothing. A path that `PATH` finds by its name, itself or through a link
/// (`/bin/git`), is not warned of; a rule on a link is, besides the link.
#[test]
fn lint_with_names_a_path_rule_whose_name_path_finds_elsewhere() {
    let set = rules(
        r#"
prefix_rule(pattern = ["/usr/bin/python3.11", "-c"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/mawk"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/git", "push"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/python3", "-c"], decision = "forbidden")
"#,
    );
    let findings: Vec<String> = crate::lint_with(&set, &FakeMachine)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        findings,
        [
            "test.rules:2: warning: python3.11 in PATH here is /opt/pyenv/shims/python3.11, not \
             /usr/bin/python3.11: a command that runs python3.11 by its name runs that file, and \
             this rule does not match it; write a rule on \"/opt/pyenv/shims/python3.11\" too, \
             or run the program by its path [/usr/bin/python3.11 -c]",
            // Review 40: a link's canonical path is no better.
            "test.rules:5: warning: /usr/bin/python3 is a symlink to /usr/bin/python3.11: a \
             session decides on the canonical path, so this rule forbids it only when it is run \
             by this path; write \"/usr/bin/python3.11\" to forbid it however it is run; \
             besides, python3 in PATH here is /opt/pyenv/shims/python3, not \
             /usr/bin/python3.11: a command that runs python3 by its name runs that file, and \
             this rule does not match it; write a rule on \"/opt/pyenv/shims/python3\" too, or \
             run the program by its path [/usr/bin/python3 -c]",
        ]
    );
}

/// Regression: `execution = "nett"` passed lint, and `execgate run` then
/// refused the rules.
#[test]
fn lint_with_reports_undefined_execution_profiles_as_errors() {
    let set = rules(
        r#"
prefix_rule(pattern = ["cargo", "fetch"], execution = "net")
prefix_rule(pattern = ["cargo", "fetch"], execution = "nett")
prefix_rule(pattern = ["ls"], execution = "danger-full-access")
prefix_rule(pattern = ["ls", "-l"], execution = "turn-default")
prefix_rule(pattern = ["python3"], execution = "nett")
"#,
    );
    let findings: Vec<(usize, crate::Severity, String)> = crate::lint_with(&set, &FakeMachine)
        .into_iter()
        .map(|finding| (finding.origin.line, finding.severity, finding.message))
        .collect();
    let refused = |profile: &str, reason: &str| {
        format!(
            "execution = \"{profile}\" cannot be used: {reason}; a session refuses to start \
             with these rules"
        )
    };
    assert_eq!(
        findings,
        [
            (
                3,
                crate::Severity::Error,
                refused("nett", "unknown profile \"nett\"")
            ),
            (
                4,
                crate::Severity::Error,
                refused("danger-full-access", "not sandboxed")
            ),
            (
                6,
                crate::Severity::Warning,
                "allow on python3: an interpreter runs any code".into()
            ),
            (
                6,
                crate::Severity::Error,
                refused("nett", "unknown profile \"nett\"")
            ),
        ]
    );
}

/// A machine whose profiles' `domains` allow `127.0.0.1`,
/// `api.example.com`, `**.crates.io` and `*.github.com`.
struct ListsMachine;

impl crate::LintContext for ListsMachine {
    fn check_profile(&self, _: &str) -> Result<(), String> {
        Ok(())
    }

    fn inspect_path(&self, _: &Path) -> crate::PathState {
        crate::PathState::Canonical
    }

    fn find_program(&self, _: &str) -> Option<std::path::PathBuf> {
        None
    }

    fn allowed_domains(&self) -> Vec<(String, crate::DomainPattern)> {
        [
            "127.0.0.1",
            "api.example.com",
            "**.crates.io",
            "*.github.com",
        ]
        .into_iter()
        .map(|entry| {
            let pattern: crate::DomainPattern = entry.parse().unwrap();
            ("profile \"lim\"'s domains entry".to_owned(), pattern)
        })
        .collect()
    }
}

/// A `forbidden` network rule decides before the `domains` lists, so one
/// that covers what an allow entry names closes it; lint says so. A rule
/// narrower than the entry, or one that does not forbid, is not flagged.
#[test]
fn lint_names_forbidden_rules_that_close_an_allowed_domains_entry() {
    let cases = [
        (
            r#"network_rule(host = "127.0.0.1", decision = "forbidden")"#,
            Some("forbids what profile \"lim\"'s domains entry \"127.0.0.1\" allows"),
        ),
        (
            r#"network_rule(host = "**.example.com", decision = "forbidden")"#,
            Some("forbids what profile \"lim\"'s domains entry \"api.example.com\" allows"),
        ),
        (
            r#"network_rule(host = "**.crates.io", decision = "forbidden")"#,
            Some("forbids what profile \"lim\"'s domains entry \"**.crates.io\" allows"),
        ),
        // One port of an allowed host: what rules are for.
        (
            r#"network_rule(host = "127.0.0.1", port = 8081, decision = "forbidden")"#,
            None,
        ),
        // One protocol: not the entry's business, but the client picks
        // the protocol (below).
        (
            r#"network_rule(host = "**.crates.io", protocol = "http", decision = "forbidden")"#,
            Some("forbidden for protocol = \"http\" only"),
        ),
        (
            r#"network_rule(host = "bad.github.com", decision = "forbidden")"#,
            None,
        ),
        // From a probe: the domains lists decide before a prompt rule, so
        // nobody is asked (and `policy check --network` said prompt).
        (
            r#"network_rule(host = "api.example.com", decision = "prompt")"#,
            Some("asks about what profile \"lim\"'s domains entry \"api.example.com\" allows"),
        ),
        (
            r#"network_rule(host = "other.example", decision = "prompt")"#,
            None,
        ),
        (
            r#"network_rule(host = "other.example", decision = "forbidden")"#,
            None,
        ),
    ];
    for (source, expected) in cases {
        let set = rules(source);
        let findings: Vec<String> = crate::lint_with(&set, &ListsMachine)
            .iter()
            .map(ToString::to_string)
            .collect();
        match expected {
            Some(expected) => assert!(
                findings.len() == 1 && findings[0].contains(expected),
                "{source}: {findings:?}"
            ),
            None => assert!(findings.is_empty(), "{source}: {findings:?}"),
        }
    }
}

/// Regression: a probe pinned `git` to `/usr/bin/git` and forbade `git
/// push`, and a session ran `/usr/local/bin/git push` (the git `PATH` found
/// first) with no rule matching. A pin keeps what a rule on the name would
/// loosen (allow, prompt) to the pinned paths; `forbidden` on the name
/// applies to every program of that name.
#[test]
fn a_pin_narrows_what_rules_on_its_name_allow_not_what_they_forbid() {
    let set = rules(
        r#"
host_executable(name = "git", paths = ["/usr/bin/git"])
prefix_rule(pattern = ["git", "status"])
prefix_rule(pattern = ["git", "fetch"], decision = "prompt")
prefix_rule(pattern = ["git", "push"], decision = "forbidden", justification = "no push")
prefix_rule(pattern = ["git", ["push", "pull"]], decision = "prompt")
"#,
    );
    let cases: &[(&str, Option<RuleDecision>)] = &[
        ("/usr/bin/git status", Some(RuleDecision::Allow)),
        ("/usr/bin/git fetch", Some(RuleDecision::Prompt)),
        ("/usr/bin/git push", Some(RuleDecision::Forbidden)),
        ("/usr/local/bin/git status", None),
        ("/usr/local/bin/git fetch", None),
        ("/usr/local/bin/git pull", None),
        ("/usr/local/bin/git push", Some(RuleDecision::Forbidden)),
        (
            "/home/eve/bin/git push --force",
            Some(RuleDecision::Forbidden),
        ),
    ];
    for (argv, expected) in cases {
        assert_eq!(decision(&set, argv, true), *expected, "{argv}");
    }
    // Only the forbidden rule is reported for an unpinned path: the
    // prompt on `git push` does not reach it.
    let evaluation = set.check(
        &["/usr/local/bin/git", "push"],
        MatchOptions {
            resolve_host_executables: true,
        },
    );
    let lines: Vec<usize> = evaluation.matched.iter().map(|m| m.origin.line).collect();
    assert_eq!(lines, [5]);
    assert_eq!(
        evaluation.matched[0].resolved_program.as_deref(),
        Some(Path::new("/usr/local/bin/git"))
    );
}

/// `~/` is the home directory in a pattern's program, as in a
/// `host_executable` path (a probe's `["~/bin/x"]` was taken as a relative
/// path, and never matched); its examples are read the same way.
#[test]
fn a_programs_home_prefix_is_the_home_directory() {
    let source = r#"
host_executable(name = "git", paths = ["~/bin/git"])
prefix_rule(pattern = ["~/bin/x", "run"], decision = "forbidden", match = ["~/bin/x run"])
prefix_rule(pattern = [["~/bin/y", "y"]], decision = "prompt", match = [["~/bin/y"], "y"])
"#;
    let set = RuleSet::parse_with_home(Path::new("home.rules"), source, Some("/home/eve".into()))
        .unwrap_or_else(|error| panic!("{error}"));
    let mut programs: Vec<&str> = set.rules().map(|rule| rule.program()).collect();
    programs.sort_unstable();
    assert_eq!(programs, ["/home/eve/bin/x", "/home/eve/bin/y", "y"]);
    assert_eq!(
        set.host_executable("git"),
        Some(&[std::path::PathBuf::from("/home/eve/bin/git")][..])
    );
    assert_eq!(
        decision(&set, "/home/eve/bin/x run", false),
        Some(RuleDecision::Forbidden)
    );
    let error =
        RuleSet::parse_with_home(Path::new("home.rules"), source, None).expect_err("no home");
    assert_eq!(error.line(), Some(2), "{error}");
    assert!(error.to_string().contains("HOME is not set"), "{error}");
}

/// A probe's rules on `"rm "`, `"-rf "`, a Cyrillic `rм` and `rm` with a
/// zero-width space passed lint, and matched nothing a person types.
#[test]
fn lint_names_tokens_only_a_look_alike_matches() {
    let set = rules(
        "
prefix_rule(pattern = [\"rm \", \"-rf\"], decision = \"forbidden\")
prefix_rule(pattern = [\"rm\", \"-rf \"], decision = \"forbidden\")
prefix_rule(pattern = [[\"rm\", \"unlink\"], [\" -r\", \"-f\"]], decision = \"forbidden\")
prefix_rule(pattern = [\"r\u{43c}\"], decision = \"forbidden\")
prefix_rule(pattern = [\"rm\u{200b}\"], decision = \"forbidden\")
prefix_rule(pattern = [\"/usr/bin/\u{440}m\"], decision = \"forbidden\")
prefix_rule(pattern = [\"git push\"], decision = \"forbidden\")
prefix_rule(pattern = [\"git\", \"commit\", \"-m\", \"fix the bug\"], decision = \"forbidden\")
prefix_rule(pattern = [\"rm\", \"-rf\"], decision = \"forbidden\")
prefix_rule(pattern = [\"grep\", \" \"], decision = \"forbidden\")
prefix_rule(pattern = [\"/opt/My Tool/run tool\"], decision = \"forbidden\")
prefix_rule(pattern = [\"C:/Tools/x.exe\"], decision = \"forbidden\")
",
    );
    let findings: Vec<(usize, String)> = lint(&set)
        .into_iter()
        .map(|finding| (finding.origin.line, finding.message))
        .collect();
    let whitespace_in = |program: &str| {
        format!(
            "program {program:?} has whitespace in its name, so this rule matches no program \
             as the shell splits a command line; a pattern takes one word per token (write \
             [\"git\", \"push\"], not [\"git push\"])"
        )
    };
    let argument = |token: &str, word: &str| {
        format!(
            "argument {token:?} has leading or trailing whitespace: it matches only an \
             argument quoted with that whitespace, never the word {word:?}"
        )
    };
    let strange = |program: &str, code: &str| {
        format!(
            "program {program:?} has characters that are not printable ASCII ({code}): a \
             look-alike or invisible character, so this rule matches only a program whose \
             name has it too, never the ASCII name it resembles"
        )
    };
    assert_eq!(
        findings,
        [
            (2, whitespace_in("rm ")),
            (3, argument("-rf ", "-rf")),
            (4, argument(" -r", "-r")),
            (5, strange("r\u{43c}", "U+043C")),
            (6, strange("rm\u{200b}", "U+200B")),
            (7, strange("/usr/bin/\u{440}m", "U+0440")),
            (8, whitespace_in("git push")),
        ]
    );
}

/// A probe's rule on `gti` (for `git`) passed lint: a bare name found
/// nowhere in the lint context's `PATH` is named.
#[test]
fn lint_with_names_programs_not_found_in_path() {
    let set = rules(
        r#"
prefix_rule(pattern = ["gti", "push"], decision = "forbidden")
prefix_rule(pattern = ["git", "push"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/git", "push"], decision = "forbidden")
"#,
    );
    let findings: Vec<(usize, String)> = crate::lint_with(&set, &FakeMachine)
        .into_iter()
        .map(|finding| (finding.origin.line, finding.message))
        .collect();
    assert_eq!(
        findings,
        [(
            2,
            "\"gti\" is not found in PATH here (a misspelling?); a session matches it only \
             where a program of that name is run, by a path outside PATH or where one is \
             installed"
                .to_owned()
        )]
    );
}

/// Lint's programs that run any code knew `python3.11` but not the
/// versioned names of other interpreters it tells users about, nor common
/// command runners (a probe's list).
#[test]
fn lint_names_versioned_interpreters_and_command_runners() {
    // (program, the reason lint gives; None for no warning)
    let cases: &[(&str, Option<&str>)] = &[
        ("perl5.36.0", Some("an interpreter runs any code")),
        ("ruby3.1", Some("an interpreter runs any code")),
        ("tclsh8.6", Some("an interpreter runs any code")),
        ("lua5.4", Some("an interpreter runs any code")),
        ("php8.2", Some("an interpreter runs any code")),
        ("node18", Some("an interpreter runs any code")),
        ("python3.11", Some("an interpreter runs any code")),
        ("/usr/bin/pypy3", Some("an interpreter runs any code")),
        ("bash5.2", Some("a shell runs any command")),
        (
            "systemd-run",
            Some("systemd-run runs the program its arguments name"),
        ),
        (
            "setpriv",
            Some("setpriv runs the program its arguments name"),
        ),
        (
            "prlimit",
            Some("prlimit runs the program its arguments name"),
        ),
        ("chrt", Some("chrt runs the program its arguments name")),
        (
            "taskset",
            Some("taskset runs the program its arguments name"),
        ),
        ("ionice", Some("ionice runs the program its arguments name")),
        ("bwrap", Some("bwrap runs the program its arguments name")),
        (
            "runuser",
            Some("runuser runs a shell command or the program its arguments name"),
        ),
        ("su", Some("su runs a shell command its arguments name")),
        (
            "capsh",
            Some("capsh runs a shell command or the program its arguments name"),
        ),
        (
            "run-parts",
            Some("run-parts runs every program in the directory its arguments name"),
        ),
        // Probe 223: canonical names, which sessions see, under their
        // target triple or with Python's ABI letter; runners lint did not
        // know.
        (
            "x86_64-linux-gnu-nm",
            Some("binutils load the plugin --plugin names"),
        ),
        (
            "/usr/bin/x86_64-linux-gnu-ld.bfd",
            Some("binutils load the plugin --plugin names"),
        ),
        (
            "aarch64-linux-gnu-ar",
            Some("binutils load the plugin --plugin names"),
        ),
        (
            "perl5.36-x86_64-linux-gnu",
            Some("an interpreter runs any code"),
        ),
        ("python3.6m", Some("an interpreter runs any code")),
        ("wish8.6", Some("an interpreter runs any code")),
        ("ipython3", Some("an interpreter runs any code")),
        (
            "setarch",
            Some("setarch runs the program its arguments name"),
        ),
        (
            "ssh-agent",
            Some("ssh-agent runs the program its arguments name"),
        ),
        ("choom", Some("choom runs the program its arguments name")),
        (
            "logsave",
            Some("logsave runs the program its arguments name"),
        ),
        (
            "sotruss",
            Some("sotruss runs the program its arguments name"),
        ),
        ("perf", Some("perf runs the program its arguments name")),
        (
            "tmux",
            Some("tmux runs shell commands, in a server that outlives the command"),
        ),
        (
            "msgexec",
            Some("msgexec runs the program its arguments name"),
        ),
        // Review 225: what the last round's list left out.
        (
            "wine-stable",
            Some("wine runs any program, Unix ones too (start /unix)"),
        ),
        ("wine64", Some("wine runs any program, Unix ones too (start /unix)")),
        (
            "wineapploader",
            Some("wine runs any program, Unix ones too (start /unix)"),
        ),
        (
            "valgrind.bin",
            Some("valgrind runs the program its arguments name"),
        ),
        (
            "jdb",
            Some("the JDK runs classes and annotation processors from its class path, which starts in its working directory"),
        ),
        (
            "gprofng",
            Some("gprofng runs the program its arguments name"),
        ),
        // Review 225: other Debian triples, and the more pagers.
        (
            "mips64el-linux-gnuabi64-nm",
            Some("binutils load the plugin --plugin names"),
        ),
        (
            "powerpc64-linux-gnu-ld.bfd",
            Some("binutils load the plugin --plugin names"),
        ),
        ("zmore", Some("more runs shell commands (!)")),
        // Review 226: the rest of Debian's binutils cross triples.
        (
            "mipsisa64r6-linux-gnuabin32-nm",
            Some("binutils load the plugin --plugin names"),
        ),
        (
            "ia64-linux-gnu-nm",
            Some("binutils load the plugin --plugin names"),
        ),
        ("x86_64-linux-gnu-readelf", None),
        ("x86_64-linux-gnu", None),
        ("arm-none", None),
        ("sha256sum", None),
        // Not a version: what follows the name is not digits and dots
        // from a digit on.
        ("python3-config", None),
        ("perl.", None),
        ("nodemon", None),
        ("sha256sum", None),
        ("ls", None),
        ("2to3", None),
    ];
    for (program, reason) in cases {
        let set = rules(&format!("prefix_rule(pattern = [{program:?}])"));
        let name = program.rsplit('/').next().unwrap_or_default();
        let messages: Vec<String> = lint(&set)
            .into_iter()
            .map(|finding| finding.message)
            .collect();
        let expected: Vec<String> = reason
            .iter()
            .map(|reason| format!("allow on {name}: {reason}"))
            .collect();
        assert_eq!(messages, expected, "{program}");
    }
}

/// Probe 114: narrow-looking rules on programs whose options run
/// commands (`tar -tf` with `--checkpoint-action=exec`, `sort
/// --compress-program=sh`, `gcc -wrapper`) passed lint without a word.
#[test]
fn lint_names_programs_whose_options_run_commands() {
    // (pattern, the reason lint gives)
    let cases: &[(&str, &str)] = &[
        (
            r#""tar", "-tf""#,
            "tar runs commands through --to-command, -I (--use-compress-program), \
             --checkpoint-action=exec and --rsh-command",
        ),
        (
            r#""sort""#,
            "sort runs the program --compress-program names",
        ),
        (
            r#""rsync""#,
            "rsync runs the commands -e (--rsh) and --rsync-path name",
        ),
        (r#""scp""#, "scp runs the program -S names"),
        (
            r#""zip""#,
            "zip runs the command -TT (--unzip-command) names",
        ),
        (r#""diff3""#, "diff3 runs the program --diff-program names"),
        (
            r#""man""#,
            "man runs the pager -P and the preprocessors it is told to",
        ),
        (r#""less""#, "less runs shell commands (!, |, LESSOPEN)"),
        (r#""vim""#, "an editor runs shell commands"),
        // What lint advises writing a rule on `vim` as (review 115).
        (r#""vim.basic""#, "an editor runs shell commands"),
        (
            r#""docker""#,
            "docker runs containers that can mount and change the host",
        ),
        (
            r#""apt-get""#,
            "apt-get runs the commands its -o options name",
        ),
        (
            r#""terraform""#,
            "terraform runs the provisioners and providers its configuration names",
        ),
        (
            r#""gcc", "-c""#,
            "a compiler runs the programs -wrapper, -B, -fplugin, -specs and @file name",
        ),
        (
            r#""/usr/bin/x86_64-linux-gnu-gcc-12""#,
            "a compiler runs the programs -wrapper, -B, -fplugin, -specs and @file name",
        ),
        (
            r#""clang++""#,
            "a compiler runs the programs -wrapper, -B, -fplugin, -specs and @file name",
        ),
        // Review 225: where the alternatives of `x86_64-w64-mingw32-gcc`
        // lead, which lint advises writing the rule on.
        (
            r#""x86_64-w64-mingw32-gcc-12-win32""#,
            "a compiler runs the programs -wrapper, -B, -fplugin, -specs and @file name",
        ),
        (
            r#""x86_64-w64-mingw32-gcc-posix""#,
            "a compiler runs the programs -wrapper, -B, -fplugin, -specs and @file name",
        ),
        // Probe 122: each ran code of the sandbox's unsandboxed, under an
        // exact rule lint said nothing of.
        (
            r#""sqlite3", "-readonly""#,
            "sqlite3 runs shell commands (.shell, .system) and loads extensions",
        ),
        (
            r#""openssl", "x509""#,
            "openssl loads the engines and providers its options name",
        ),
        (r#""nm""#, "binutils load the plugin --plugin names"),
        (
            r#""javac""#,
            "the JDK runs classes and annotation processors from its class path, \
             which starts in its working directory",
        ),
        (r#""ed""#, "ed runs shell commands (!)"),
        // Probe 126: `ld.so PROGRAM` runs the program.
        (
            r#""/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2""#,
            "the dynamic loader runs the program named in its arguments",
        ),
        (
            r#""ld.so""#,
            "the dynamic loader runs the program named in its arguments",
        ),
    ];
    for (pattern, reason) in cases {
        let set = rules(&format!("prefix_rule(pattern = [{pattern}])"));
        let program: &str = pattern.split('"').nth(1).unwrap_or_default();
        let name = program.rsplit('/').next().unwrap_or_default();
        let messages: Vec<String> = lint(&set)
            .into_iter()
            .map(|finding| finding.message)
            .collect();
        assert_eq!(
            messages,
            vec![format!("allow on {name}: {reason}")],
            "{pattern}"
        );
    }
    // Names that only contain one of them.
    for program in ["tarball", "gcc-ar-wrapper-x", "sorted", "mandb", "ld-tool"] {
        let set = rules(&format!("prefix_rule(pattern = [{program:?}])"));
        assert_eq!(lint(&set), Vec::new(), "{program}");
    }
}

/// A probe's `execution = "read-only"` read as confinement and passed
/// lint: a rule's profile only adds grants to the session's sandbox.
#[test]
fn lint_names_execution_presets_that_promise_confinement() {
    let set = rules(
        r#"
prefix_rule(pattern = ["curl"], execution = "read-only")
prefix_rule(pattern = ["make"], decision = "prompt", execution = "workspace-write")
prefix_rule(pattern = ["ls"], execution = "turn-default")
prefix_rule(pattern = ["cargo", "fetch"], execution = "net")
"#,
    );
    let findings: Vec<(usize, String)> = lint(&set)
        .into_iter()
        .filter(|finding| finding.message.starts_with("execution"))
        .map(|finding| (finding.origin.line, finding.message))
        .collect();
    let confines_nothing = |name: &str, grants: &str| {
        format!(
            "execution = \"{name}\" confines nothing: a rule's profile only adds its grants \
             ({grants}) to the session's sandbox, and never takes any away; write execution = \
             \"turn-default\" to run in the session's sandbox as it is, or name a profile for \
             the grants it adds"
        )
    };
    assert_eq!(
        findings,
        [
            (
                2,
                confines_nothing("read-only", "reading the whole file system")
            ),
            (
                3,
                confines_nothing(
                    "workspace-write",
                    "reading the whole file system and writing the working directory, the \
                     temporary directory and the workspace roots"
                )
            ),
        ]
    );
}

/// A probe (105): a second rules file's pin widened the first's (pins
/// merge), and the session's record named only the allow rule, whose
/// justification read "only /usr/bin/uname". Lint names the pins of one
/// name that come from more than one file.
#[test]
fn lint_names_pins_of_one_name_from_several_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let team = dir.path().join("team.rules");
    let project = dir.path().join("project.rules");
    std::fs::write(
        &team,
        "host_executable(name = \"uname\", paths = [\"/usr/bin/uname\"])\n\
         prefix_rule(pattern = [\"uname\"], execution = \"unsandboxed\")\n",
    )
    .expect("write");
    std::fs::write(
        &project,
        "host_executable(name = \"uname\", paths = [\"/opt/x/uname\"])\n\
         host_executable(name = \"git\", paths = [\"/usr/bin/git\"])\n",
    )
    .expect("write");
    let set = RuleSet::load(&[&team, &project]).expect("load");
    let findings: Vec<String> = lint(&set)
        .iter()
        .map(ToString::to_string)
        .filter(|finding| finding.contains("pins"))
        .collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].starts_with(&format!("{}:1: warning: ", project.display()))
            && findings[0].contains(&team.display().to_string()),
        "{findings:?}"
    );
    let alone = RuleSet::load(&[&team]).expect("load");
    assert!(lint(&alone).iter().all(|f| !f.to_string().contains("pins")));
}

/// Probe 142: `forbidden` on `python3` never matched the program a
/// session decides on, `/usr/bin/python3.11`: the name the shell found it
/// by forbids it too, and never loosens anything.
#[test]
fn a_forbidden_rule_on_the_name_found_forbids_the_canonical_program() {
    let set = rules(
        r#"
prefix_rule(pattern = ["python3"], decision = "forbidden")
prefix_rule(pattern = ["python3.11", "-V"], decision = "allow")
prefix_rule(pattern = ["awk"], decision = "allow")
prefix_rule(pattern = ["/usr/bin/nawk"], decision = "forbidden")
prefix_rule(pattern = ["uname"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/uname"], decision = "allow")
prefix_rule(pattern = ["/usr/local/bin/uname"], decision = "forbidden")
"#,
    );
    let options = MatchOptions {
        resolve_host_executables: true,
    };
    // (canonical argv, path as found, decision)
    let cases: &[(&[&str], &str, Option<RuleDecision>)] = &[
        (
            &["/usr/bin/python3.11", "-c", "1"],
            "/usr/bin/python3",
            Some(RuleDecision::Forbidden),
        ),
        (
            &["/usr/bin/python3.11", "-V"],
            "/usr/bin/python3",
            Some(RuleDecision::Forbidden),
        ),
        (
            &["/usr/bin/python3.11", "-V"],
            "/usr/bin/python3.11",
            Some(RuleDecision::Allow),
        ),
        (
            &["/usr/bin/python3.11", "-c", "1"],
            "/usr/bin/python3.11",
            None,
        ),
        // The name found allows nothing the canonical path does not.
        (&["/usr/bin/mawk", "1"], "/usr/bin/awk", None),
        (
            &["/usr/bin/mawk", "1"],
            "/usr/bin/nawk",
            Some(RuleDecision::Forbidden),
        ),
        // The path as found, however it is spelled (probe 144).
        (
            &["/usr/bin/mawk", "1"],
            "/usr/bin/./nawk",
            Some(RuleDecision::Forbidden),
        ),
        (
            &["/usr/bin/mawk", "1"],
            "/usr//bin/nawk",
            Some(RuleDecision::Forbidden),
        ),
        // Under the same name, the exact path's allow still comes first.
        (&["/usr/bin/uname"], "/bin/uname", Some(RuleDecision::Allow)),
        (
            &["/usr/bin/uname"],
            "/usr/local/bin/uname",
            Some(RuleDecision::Forbidden),
        ),
    ];
    // A program path that is not UTF-8 still has its name (probe 144).
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let program = std::ffi::OsStr::from_bytes(b"/tmp/\xff/python3");
        let evaluation = set.check_os(&[program, std::ffi::OsStr::new("-c")], options);
        assert_eq!(evaluation.decision(), Some(RuleDecision::Forbidden));
        let found = std::ffi::OsStr::from_bytes(b"/tmp/\xff/python3");
        let evaluation = set.check_os_as_found(&["/usr/bin/python3.11", "-c"], found, options);
        assert_eq!(evaluation.decision(), Some(RuleDecision::Forbidden));
    }
    // Found by a path that climbs: a rule on it as written, or on it with
    // its directory resolved, forbids (review 243: the one written with
    // `..` stopped holding when only the resolved one was looked at).
    let climbing = std::ffi::OsStr::new("/usr/local/../local/bin/uname");
    let resolved = std::ffi::OsStr::new("/usr/local/bin/uname");
    for (found, resolved) in [(climbing, Some(resolved)), (resolved, None)] {
        let evaluation =
            set.check_os_as_found_either(&["/usr/bin/uname"], found, resolved, options);
        assert_eq!(
            evaluation.decision(),
            Some(RuleDecision::Forbidden),
            "{found:?}"
        );
    }
    for (argv, found, expected) in cases {
        let evaluation = set.check_os_as_found(argv, std::ffi::OsStr::new(found), options);
        assert_eq!(
            evaluation.decision(),
            *expected,
            "{argv:?} found as {found}"
        );
    }
}

/// Windows ignores case (probe 146: `forbidden` on `whoami.exe` passed
/// over `WHOAMI.EXE`): folded, rules and pins name programs in any case
/// and with either slash, and the first loaded of two rules that fold to
/// one program still decides among equals.
#[test]
fn rules_folded_for_windows_name_programs_in_any_case() {
    let set = rules(
        r#"
prefix_rule(pattern = ["WhoAmI"], decision = "allow")
prefix_rule(pattern = ["whoami", "/all"], decision = "forbidden")
prefix_rule(pattern = ["C:/Windows/System32/PING.EXE"], decision = "prompt")
prefix_rule(pattern = ["WHOAMI", "x"], decision = "prompt", justification = "first")
prefix_rule(pattern = ["whoami", "x"], decision = "prompt", justification = "second")
host_executable(name = "Tool", paths = ["/Opt/Tool"])
host_executable(name = "Nowhere", paths = [])
"#,
    )
    .folded_for_windows();
    // A pin to no path survives the folding (a review: it was dropped,
    // and the rules on its name reached every program of that name).
    assert_eq!(set.host_executable("nowhere"), Some(&[][..]));
    assert_eq!(decision(&set, "whoami", false), Some(RuleDecision::Allow));
    assert_eq!(
        decision(&set, "whoami /all", false),
        Some(RuleDecision::Forbidden)
    );
    let ping = set.check(&[r"c:\windows\system32\ping.exe"], MatchOptions::default());
    assert_eq!(ping.decision(), Some(RuleDecision::Prompt));
    let first = set.check(&["whoami", "x"], MatchOptions::default());
    let justification = first
        .deciding_rule()
        .and_then(|rule| rule.justification.as_deref());
    assert_eq!(justification, Some("first"));
    assert_eq!(
        set.host_executable("tool"),
        Some(&[std::path::PathBuf::from(r"\opt\tool")][..])
    );
    assert_eq!(set.len(), 5);
}

/// Review 47: a rules file that is a FIFO (no writer) held every command,
/// `doctor` too, and `/dev/zero` was read until memory ran out.
#[cfg(unix)]
#[test]
fn a_rules_file_is_read_only_from_a_file_of_a_rules_files_size() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("team.rules");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let error = RuleSet::load(&[&fifo]).err().unwrap().to_string();
    assert!(error.contains("FIFO"), "{error}");
    let error = RuleSet::load(&["/dev/zero"]).err().unwrap().to_string();
    assert!(error.contains("larger than 16 MiB"), "{error}");
}

/// Probe 223: a rule made through a helper function was given the helper's
/// line, in its errors and as its origin (the audit log's rule id), so
/// every rule the helper made shared one.
#[test]
fn rules_made_through_a_helper_carry_the_line_that_called_it() {
    let source = "def deny(program, example):\n    \
                  prefix_rule(pattern = [program], decision = \"forbidden\", match = [example])\n\
                  \n\
                  deny(\"rm\", \"rm -rf /\")\n\
                  deny(\"cat\", \"cat x\")\n";
    let set = RuleSet::parse(Path::new("helper.rules"), source).unwrap();
    let lines: Vec<usize> = ["rm", "cat"]
        .iter()
        .map(|program| {
            let evaluation = set.check(&[*program, "x"], MatchOptions::default());
            evaluation
                .deciding_rule()
                .map_or(0, |rule| rule.origin.line)
        })
        .collect();
    assert_eq!(lines, [4, 5]);
    // Review 229: with the call's line alone, two rules one call made
    // shared an id.
    let pairs = "def pair(p):\n    \
                 prefix_rule(pattern = [p, \"-a\"], decision = \"forbidden\")\n    \
                 prefix_rule(pattern = [p, \"-b\"], decision = \"prompt\")\n\
                 pair(\"cat\")\n";
    let set = RuleSet::parse(Path::new("pairs.rules"), pairs).unwrap();
    let ids: Vec<String> = ["-a", "-b"]
        .iter()
        .map(|option| {
            let evaluation = set.check(&["cat", *option], MatchOptions::default());
            evaluation
                .deciding_rule()
                .map_or_else(String::new, |rule| rule.origin.to_string())
        })
        .collect();
    assert_eq!(ids, ["pairs.rules:4 (line 2)", "pairs.rules:4 (line 3)"]);
    let bad = format!("{source}\ndeny(\"ls\", \"cat x\")\n");
    let error = RuleSet::parse(Path::new("helper.rules"), &bad).expect_err("a bad example");
    assert_eq!(error.line(), Some(7), "{error}");
    assert!(error.to_string().contains("does not match"), "{error}");
    assert!(
        error
            .to_string()
            .contains("(at line 2, in a function called here)"),
        "{error}"
    );
}

/// Probe 223: an alternative written twice made two rules, each listed
/// wherever the command matched.
#[test]
fn an_alternative_written_twice_is_one() {
    let set = rules(
        "prefix_rule(pattern = [[\"id\", \"id\"]], decision = \"forbidden\")\n\
         prefix_rule(pattern = [\"rm\", [\"-r\", \"-r\"]], decision = \"forbidden\")\n",
    );
    assert_eq!(set.len(), 2);
    for argv in [&["id"][..], &["rm", "-r"]] {
        let evaluation = set.check(argv, MatchOptions::default());
        assert_eq!(evaluation.matched.len(), 1, "{argv:?}: {evaluation:?}");
    }
}

/// Probe 227: names of one program but for a version or a target triple,
/// and names of another program that acts by them; review 230: a found
/// name that adds a version or a triple of its own (`ping6`, `linux32`, a
/// cross compiler) is not the program's.
#[test]
fn a_program_runs_as_itself_only_by_its_name_less_a_version_or_triple() {
    for (found, canonical, same) in [
        ("python3", "/usr/bin/python3.11", true),
        ("python", "/usr/bin/python3.11", true),
        ("python3.6", "/usr/bin/python3.6m", true),
        ("gcc", "/usr/bin/x86_64-linux-gnu-gcc-12", true),
        ("gcc-12", "/usr/bin/x86_64-linux-gnu-gcc-12", true),
        (
            "x86_64-linux-gnu-gcc",
            "/usr/bin/x86_64-linux-gnu-gcc-12",
            true,
        ),
        ("nm", "/usr/bin/x86_64-linux-gnu-nm", true),
        ("FileCheck-14", "/usr/lib/llvm-14/bin/FileCheck", true),
        ("llvm-ar-14", "/usr/lib/llvm-14/bin/llvm-ar", true),
        ("wish", "/usr/bin/wish8.6", true),
        ("id", "/usr/bin/id", true),
        ("llvm-ar-15", "/usr/lib/llvm-14/bin/llvm-ar", false),
        ("ping6", "/usr/bin/ping", false),
        ("linux32", "/usr/bin/linux64", false),
        ("base32", "/usr/bin/base64", false),
        (
            "aarch64-linux-gnu-clang",
            "/usr/lib/llvm-14/bin/clang-14",
            false,
        ),
        (
            "i686-linux-gnu-gcc",
            "/usr/bin/x86_64-linux-gnu-gcc-12",
            false,
        ),
        ("xzcat", "/usr/bin/xz", false),
        ("unxz", "/usr/bin/xz", false),
        ("view", "/usr/bin/vim.basic", false),
        ("rbash", "/usr/bin/bash", false),
        ("pkill", "/usr/bin/pgrep", false),
        ("pidof", "/usr/sbin/killall5", false),
        ("git-upload-pack", "/usr/bin/git", false),
        ("llvm-ranlib", "/usr/lib/llvm-14/bin/llvm-ar", false),
        ("cc", "/usr/bin/x86_64-linux-gnu-gcc-12", false),
        ("cargo", "/root/.cargo/bin/rustup", false),
        ("md5sum", "/usr/bin/md5sum.textutils", false),
    ] {
        assert_eq!(
            crate::runs_as_itself(found, Path::new(canonical)),
            same,
            "{found} {canonical}"
        );
    }
}

/// Probe 227: lint told a rule writer that a rule on the canonical name
/// covers every name that leads there, which a session escalates only
/// where the name is the program's but for a version or a triple (the
/// other case, `python3` to `python3.11`, keeps its words: see
/// `a_program_runs_as_itself_only_by_its_name_less_a_version_or_triple`).
#[test]
fn lint_says_a_link_of_another_name_is_not_escalated_by_the_programs_rules() {
    let set = rules(
        r#"
prefix_rule(pattern = ["awk", "-W", "version"])
"#,
    );
    let findings: Vec<String> = crate::lint_with(&set, &FakeMachine)
        .iter()
        .map(ToString::to_string)
        .filter(|finding| finding.contains("resolves to"))
        .collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0].contains(
            "never matches it; and a program may act by the name it is run by, so a session \
             escalates mawk only when it is run as mawk: run as awk, it runs in place"
        ),
        "{}",
        findings[0]
    );
}
