//! Limited networks, through the real zsh, sandbox and proxy: ordinary
//! tools reach an allowed origin through the proxy, everything else is
//! refused with a reason, and nothing in the sandbox has another way out.
//!
//! Every origin here is a server this test starts on the host's loopback;
//! no test sends a packet anywhere else (the addresses that stand for "the
//! outside" are never routed: the sandbox's namespace has no route, and
//! the proxy refuses them before connecting).

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use execgate_audit::{read_records, AuditLog, RecordOptions, Rotation, SessionAudit};
use execgate_core_bridge::rules::RuleSet;
use execgate_core_bridge::server::sandbox::ProfileSet;
use execgate_core_bridge::{
    ApprovalAnswer, ApprovalFuture, ApprovalRequest, Approver, DenyAll, ExecPolicy,
    ExecPolicyConfig, NetworkApprovalRequest, OnNetworkDenial, RunOutcome, ShellSession,
    ShellSessionConfig, SkillRegistry, Tools,
};
use execgate_escalate_server::{AuditSink, NetworkStage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::policy::{run, text, Place};
use super::*;

/// A static file server on the host's loopback: the "internet" of these
/// tests. Counts the requests it answered.
struct Origin {
    port: u16,
    served: Arc<AtomicUsize>,
    _root: tempfile::TempDir,
}

impl Origin {
    async fn start(files: &[(&str, &[u8])]) -> Origin {
        let root = tempfile::tempdir().unwrap();
        for (path, body) in files {
            let file = root.path().join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, body).unwrap();
        }
        Origin::serve(root).await
    }

    async fn serve(root: tempfile::TempDir) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let (counter, dir) = (served.clone(), root.path().to_path_buf());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (counter, dir) = (counter.clone(), dir.clone());
                tokio::spawn(async move { serve_file(stream, &dir, &counter).await });
            }
        });
        Origin {
            port,
            served,
            _root: root,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

async fn serve_file(mut stream: tokio::net::TcpStream, root: &Path, served: &AtomicUsize) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let file = root.join(path);
    let file = if file.is_dir() {
        file.join("index.html")
    } else {
        file
    };
    let reply = match (path.contains(".."), fs::read(&file)) {
        (false, Ok(body)) => {
            served.fetch_add(1, Ordering::SeqCst);
            let kind = if file.extension().is_some_and(|ext| ext == "html") {
                "text/html"
            } else {
                "application/octet-stream"
            };
            let mut reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            reply.extend(body);
            reply
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// A wheel pip accepts for download.
fn toy_wheel() -> Vec<u8> {
    let output = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import io, sys, zipfile\n\
             b = io.BytesIO()\n\
             with zipfile.ZipFile(b, 'w') as z:\n\
             \x20   z.writestr('egtoy/__init__.py', '')\n\
             \x20   z.writestr('egtoy-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: egtoy\\nVersion: 1.0\\n')\n\
             \x20   z.writestr('egtoy-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
             \x20   z.writestr('egtoy-1.0.dist-info/RECORD', '')\n\
             sys.stdout.buffer.write(b.getvalue())",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

/// A bare repository served over git's dumb HTTP protocol.
fn served_repository(root: &Path) {
    let work = root.join("work");
    fs::create_dir_all(&work).unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", root)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&work, &["init", "-q", "-b", "main"]);
    fs::write(work.join("README"), "fetched through the proxy\n").unwrap();
    git(&work, &["add", "README"]);
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "one",
        ],
    );
    git(root, &["clone", "-q", "--bare", "work", "repo.git"]);
    git(&root.join("repo.git"), &["update-server-info"]);
}

const PROFILES: &str = r#"
[profiles.net]
extends = "workspace-write"
[profiles.net.network]
mode = "limited"
domains = { "127.0.0.1" = "allow", "localhost" = "allow", "evil.example" = "deny", "**.denied.example" = "deny" }

[profiles.more]
network = { mode = "limited", domains = { "127.0.0.2" = "allow" } }

[profiles.wide]
network = "enabled"

[profiles.wild]
extends = "workspace-write"
network = { mode = "limited", domains = { "**.localhost" = "allow" } }

[profiles.shut]
extends = "workspace-write"
network = { mode = "limited", domains = { "localhost" = "allow", "127.0.0.1" = "deny", "::1" = "deny" } }
"#;

/// A session in profile `name` of [`PROFILES`].
fn limited_session(place: &Place, name: &str, approver: impl Approver) -> ShellSession {
    limited_session_with(place, name, approver, Arc::new(RuleSet::default()), None)
}

fn limited_session_with(
    place: &Place,
    name: &str,
    approver: impl Approver,
    rules: Arc<RuleSet>,
    recorder: Option<&Recorder>,
) -> ShellSession {
    limited_session_from(PROFILES, place, name, approver, rules, recorder)
}

fn limited_session_from(
    profiles_toml: &str,
    place: &Place,
    name: &str,
    approver: impl Approver,
    rules: Arc<RuleSet>,
    recorder: Option<&Recorder>,
) -> ShellSession {
    let mut config = limited_config(profiles_toml, place, name, approver, rules, recorder);
    // These sessions probe several destinations in one command: one the
    // approver declines must not end the command (the late-denial test
    // keeps the default).
    config.on_network_denial = OnNetworkDenial::FailConnection;
    ShellSession::start(config).unwrap()
}

fn limited_config(
    profiles_toml: &str,
    place: &Place,
    name: &str,
    approver: impl Approver,
    rules: Arc<RuleSet>,
    recorder: Option<&Recorder>,
) -> ShellSessionConfig {
    let mut profiles = ProfileSet::default();
    profiles.add_toml(profiles_toml, None).unwrap();
    let profile = profiles.get(name).unwrap();
    let policy = ExecPolicy::new(ExecPolicyConfig {
        rules,
        skills: SkillRegistry::default(),
        profiles: Arc::new(profiles),
        approver: Arc::new(approver),
    })
    .unwrap();
    let tools = Tools {
        zsh: zsh(),
        wrapper: wrapper(),
        sandbox_helper: sandbox_helper(),
    };
    let mut config = ShellSessionConfig::with_exec_policy(&place.ws, tools, policy);
    config.profile = profile;
    config.profile_name = name.into();
    config.events = recorder.map(Recorder::sink);
    config
}

/// `script` with the origin's port as `{port}`, loopback sent through the
/// proxy (the test's origins are on the host's loopback, which the
/// sandbox's own loopback is not).
async fn run_proxied(session: &ShellSession, origin: &Origin, script: &str) -> RunOutcome {
    let script = format!(
        "export NO_PROXY= no_proxy= npm_config_noproxy= PIP_DISABLE_PIP_VERSION_CHECK=1\n{}",
        script.replace("{port}", &origin.port.to_string())
    );
    run(session, &script).await
}

#[tokio::test(flavor = "multi_thread")]
async fn ordinary_tools_reach_an_allowed_origin_through_the_proxy() {
    let wheel = toy_wheel();
    let root = tempfile::tempdir().unwrap();
    served_repository(root.path());
    for (path, body) in [
        ("hello.txt", b"hello through the proxy\n".as_slice()),
        (
            "simple/egtoy/index.html",
            b"<html><body><a href=\"../../files/egtoy-1.0-py3-none-any.whl\">egtoy-1.0-py3-none-any.whl</a></body></html>",
        ),
        ("files/egtoy-1.0-py3-none-any.whl", &wheel),
    ] {
        let file = root.path().join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, body).unwrap();
    }
    let origin = Origin::serve(root).await;
    let place = Place::new();
    let session = limited_session(&place, "net", DenyAll);

    let outcome = run_proxied(
        &session,
        &origin,
        r#"set -e
curl -sS http://127.0.0.1:{port}/hello.txt
curl -sS --proxytunnel http://localhost:{port}/hello.txt
/usr/bin/python3 -c 'import urllib.request; print(urllib.request.urlopen("http://localhost:{port}/hello.txt").read().decode().strip(), "(urllib)")'
git clone -q http://127.0.0.1:{port}/repo.git cloned && cat cloned/README
/usr/bin/python3 -m pip download -q --no-deps --no-cache-dir --index-url http://127.0.0.1:{port}/simple/ --trusted-host 127.0.0.1 -d wheels egtoy
ls wheels
"#,
    )
    .await;
    let stdout = text(&outcome.stdout);
    assert_eq!(
        outcome.status.code(),
        0,
        "{stdout}\n{}",
        text(&outcome.stderr)
    );
    for expected in [
        "hello through the proxy\nhello through the proxy\n",
        "hello through the proxy (urllib)",
        "fetched through the proxy",
        "egtoy-1.0-py3-none-any.whl",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_destinations_get_a_reason_and_no_connection() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    let session = limited_session(&place, "net", DenyAll);
    let outcome = run_proxied(
        &session,
        &origin,
        // (what, command): each prints the status line or body it got.
        r#"
for url in http://evil.example/ http://api.denied.example:8080/ http://127.0.0.2:{port}/hello.txt http://2130706434:{port}/hello.txt 'http://[::ffff:127.0.0.2]:{port}/hello.txt'; do
  curl -s -o /dev/stderr -w "$url %{http_code}\n" "$url"
done
curl -s -o /dev/null -w "tunnel %{http_connect}\n" --proxytunnel http://evil.example/
curl -s -o /dev/null -w "socks %{exitcode}\n" --proxy socks5h://${EXECGATE_PROXY#http://} http://evil.example/
"#,
    )
    .await;
    let (stdout, stderr) = (text(&outcome.stdout), text(&outcome.stderr));
    for line in [
        "http://evil.example/ 403",
        "http://api.denied.example:8080/ 403",
        "http://127.0.0.2:{port}/hello.txt 403",
        "http://2130706434:{port}/hello.txt 403",
        "http://[::ffff:127.0.0.2]:{port}/hello.txt 403",
        "tunnel 403",
        // curl: "proxy handshake error" for a SOCKS refusal.
        "socks 97",
    ] {
        let line = line.replace("{port}", &origin.port.to_string());
        assert!(stdout.contains(&line), "{line:?} in {stdout}\n{stderr}");
    }
    for reason in [
        "network denied: evil.example:80",
        "network denied: api.denied.example:8080",
        "network denied: 127.0.0.2:",
    ] {
        assert!(stderr.contains(reason), "{reason:?} in {stderr}");
    }
    assert_eq!(origin.served(), 0, "nothing reached the origin");

    // A wildcard names no address: loopback behind it stays refused.
    let wild = limited_session(&place, "wild", DenyAll);
    let outcome = run_proxied(
        &wild,
        &origin,
        "curl -s -w ' %{http_code}' http://localhost:{port}/hello.txt",
    )
    .await;
    let stdout = text(&outcome.stdout);
    assert!(stdout.ends_with(" 403"), "{stdout}");
    assert!(stdout.contains("not public"), "{stdout}");
    assert_eq!(origin.served(), 0);
    session.shutdown().await;
    wild.shutdown().await;
}

/// A probe (108): a deny entry or a `forbidden` rule on an address shut
/// only the address as written: a name that resolved to it (the README's
/// `1.1.1.99.nip.io`) reached it, as the session's proxy asked the
/// connection's decider, which did not pass the question on, and was told
/// nothing refused it.
#[tokio::test(flavor = "multi_thread")]
async fn an_address_shut_by_an_entry_or_a_rule_is_shut_for_its_names() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    let forbidden = RuleSet::parse(
        Path::new("shut.rules"),
        "network_rule(host = \"127.0.0.1\", decision = \"forbidden\", justification = \"not here\")\n\
         network_rule(host = \"::1\", decision = \"forbidden\", justification = \"not here\")\n",
    )
    .unwrap();
    let by_entry = limited_session(&place, "shut", DenyAll);
    let by_rule = limited_session_with(&place, "net", DenyAll, Arc::new(forbidden), None);
    for (session, reason) in [
        (
            &by_entry,
            "127.0.0.1, denied by domains entry \"127.0.0.1\"",
        ),
        (
            &by_rule,
            "127.0.0.1, forbidden by network rule at shut.rules:1: not here",
        ),
    ] {
        let outcome = run_proxied(
            session,
            &origin,
            "curl -s -w ' %{http_code}' http://localhost:{port}/hello.txt",
        )
        .await;
        let (stdout, stderr) = (text(&outcome.stdout), text(&outcome.stderr));
        assert!(stdout.ends_with(" 403"), "{stdout}\n{stderr}");
        assert!(stdout.contains(reason), "{reason:?} in {stdout}\n{stderr}");
    }
    assert_eq!(origin.served(), 0, "the shut address was reached by name");
    by_entry.shutdown().await;
    by_rule.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn programs_that_ignore_the_proxy_have_no_way_out() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    // A host service on loopback and a host socket, neither the proxy.
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let service_port = service.local_addr().unwrap().port();
    let place = Place::new();
    let host_socket = place.outside.join("host.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&host_socket).unwrap();
    // And an abstract socket of the host's network namespace.
    let abstract_name = format!("execgate-network-test-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&address).unwrap()
    };
    let session = limited_session(&place, "net", DenyAll);
    let script = format!(
        r#"
curl -s --noproxy '*' --max-time 5 http://127.0.0.1:{{port}}/hello.txt; echo "direct $?"
/usr/bin/python3 - <<'EOF'
import socket
def attempt(what, make, use):
    try:
        s = make()
        use(s)
        print(what, "reached")
    except OSError as error:
        print(what, "failed", error.errno)
inet = lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)
attempt("host-service", inet, lambda s: s.connect(("127.0.0.1", {service_port})))
attempt("outside", inet, lambda s: s.connect(("192.0.2.1", 80)))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), lambda s: s.sendto(b"x", ("127.0.0.1", 53)))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), lambda s: None)
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW), lambda s: None)
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW), lambda s: None)
attempt("sctp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132), lambda s: None)
attempt("seqpacket", lambda: socket.socket(socket.AF_INET6, socket.SOCK_SEQPACKET), lambda s: None)
attempt("inet-packet", lambda: socket.socket(socket.AF_INET, 10), lambda s: None)
attempt("host-socket", lambda: socket.socket(socket.AF_UNIX), lambda s: s.connect("{host_socket}"))
attempt("host-abstract", lambda: socket.socket(socket.AF_UNIX), lambda s: s.connect("\0{abstract_name}"))
try:
    socket.getaddrinfo("example.org", 80)
    print("dns reached")
except OSError as error:
    print("dns failed")
EOF
"#,
        host_socket = host_socket.display()
    );
    let outcome = run_proxied(&session, &origin, &script).await;
    let stdout = text(&outcome.stdout);
    let stderr = text(&outcome.stderr);
    for line in [
        "direct 7",
        "host-service failed 111",
        "outside failed 101",
        "udp failed 1",
        "raw failed 1",
        "packet failed 1",
        "netlink failed 1",
        "sctp failed 1",
        "seqpacket failed 1",
        "inet-packet failed 1",
        "host-socket failed 13",
        "host-abstract failed 111",
        "dns failed",
    ] {
        assert!(stdout.contains(line), "{line:?} in {stdout}\n{stderr}");
    }
    assert!(!stdout.contains("reached"), "{stdout}");
    assert_eq!(origin.served(), 0);
    drop(service);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn escalations_carry_their_own_network() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    // curl escalated into the session's sandbox (TurnDefault) or into it
    // plus the `more` profile's grants (Permissions); env unsandboxed.
    let escalations = |curl: &str| {
        format!(
            "prefix_rule(pattern = [\"curl\"], decision = \"allow\", execution = \"{curl}\")\n\
             prefix_rule(pattern = [\"env\"], decision = \"allow\")\n\
             prefix_rule(pattern = [\"printenv\"], decision = \"allow\", execution = \"wide\")\n"
        )
    };
    let script = r#"
shell_proxy=$EXECGATE_PROXY
# A sandbox of its own, whose helper replaced the shell's proxy variables
# with its own proxy's (the shell's address means nothing in the new
# sandbox's namespace).
curl --noproxy '' -sS -w ' %{http_code}\n' http://127.0.0.1:{port}/hello.txt
# 127.0.0.2 is only in the `more` profile's list; nothing listens there, so
# the proxy, once it allows it, fails to connect (502).
curl -s -o /dev/null -w 'other %{http_code}\n' http://127.0.0.2:{port}/
# Unsandboxed: the host's network, and none of the sandbox's proxy
# variables, which would point at nothing (or at a host service).
echo "unsandboxed $(env | grep -cF -- "${shell_proxy#http://}")"
# A sandbox with the host's network: none either.
echo "enabled $(printenv | grep -cF -- "${shell_proxy#http://}")"
"#;
    for (execution, other) in [("turn-default", "403"), ("more", "502")] {
        let recorder = Recorder::default();
        let rules = place.rules(&escalations(execution));
        let session = limited_session_with(&place, "net", DenyAll, rules, Some(&recorder));
        let outcome = run_proxied(&session, &origin, script).await;
        let (stdout, stderr) = (text(&outcome.stdout), text(&outcome.stderr));
        let escalated: Vec<String> = super::policy::provenances(&recorder)
            .into_iter()
            .filter(|(_, decision, ..)| decision.starts_with("escalate"))
            .map(|(program, decision, ..)| format!("{program} {decision}"))
            .collect();
        let other = format!("other {other}\n");
        for line in ["hello\n 200\n", &other, "unsandboxed 0\n", "enabled 0\n"] {
            assert!(
                stdout.contains(line),
                "{execution}: {line:?} in {stdout}\n{stderr}\n{escalated:#?}"
            );
        }
        assert_eq!(escalated.len(), 4, "{escalated:?}");
        session.shutdown().await;
    }
}

/// A limited network's escalation, like every sandboxed one, runs in a
/// sandbox started before it is handed the command's descriptors (with a
/// link to the proxy of its own): the reader of a pipe the command closes
/// sees its end then, not when the sandbox ends (bubblewrap keeps the
/// streams it was started with).
#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_a_limited_escalation_closes_ends_for_its_reader() {
    let place = Place::new();
    let rules = place.rules(
        "prefix_rule(pattern = [\"dash\"], decision = \"allow\", execution = \"turn-default\")\n",
    );
    let recorder = Recorder::default();
    let session = limited_session_with(&place, "net", DenyAll, rules, Some(&recorder));
    let script = format!(
        "{}; cat result; dash -c 'ls -l /proc/$$/fd'",
        pipe_closed_early("dash")
    );
    let outcome = run(&session, &script).await;
    session.shutdown().await;
    let escalated = super::policy::provenances(&recorder)
        .into_iter()
        .filter(|(_, decision, ..)| decision.starts_with("escalate"))
        .count();
    assert_eq!(escalated, 2, "dash was escalated");
    let stdout = text(&outcome.stdout);
    assert!(
        stdout.starts_with("seen\n"),
        "{stdout}{}",
        text(&outcome.stderr)
    );
    // What the shell passed on, and no link to the proxy among it.
    assert!(stdout.contains(" 1 -> pipe:"), "{stdout}");
    assert!(!stdout.contains("socket:"), "{stdout}");
}

/// Profile `sock`: workspace-write, limited, allowed to reach `socket`.
fn socket_profile(socket: &Path) -> String {
    format!(
        "[profiles.sock]\nextends = \"workspace-write\"\n\
         network = {{ mode = \"limited\", unix_sockets = {{ \"{}\" = \"allow\" }} }}\n",
        socket.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_host_sockets_a_profile_allows_are_reachable() {
    let place = Place::new();
    let (allowed, other) = (
        place.outside.join("allowed.sock"),
        place.outside.join("other.sock"),
    );
    let listeners = [&allowed, &other].map(|path| {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let _ =
                    stream.and_then(|mut stream| std::io::Write::write_all(&mut stream, b"pong"));
            }
        })
    });
    let session = limited_session_from(
        &socket_profile(&allowed),
        &place,
        "sock",
        DenyAll,
        Arc::new(RuleSet::default()),
        None,
    );
    let script = format!(
        r#"/usr/bin/python3 - <<'EOF'
import socket
for name in ("{allowed}", "{other}"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(name)
        print(name.rsplit("/", 1)[1], s.recv(4).decode())
    except OSError as error:
        print(name.rsplit("/", 1)[1], "failed", error.errno)
EOF
"#,
        allowed = allowed.display(),
        other = other.display()
    );
    let outcome = run(&session, &script).await;
    let (stdout, stderr) = (text(&outcome.stdout), text(&outcome.stderr));
    assert!(stdout.contains("allowed.sock pong"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("other.sock failed 13"),
        "{stdout}\n{stderr}"
    );
    session.shutdown().await;
    drop(listeners);
}

/// A limited sandbox without a proxy to reach runs nothing: the network is
/// never opened wider than the profile says, and the error says why. The
/// same for an escalation into a limited network: no spare can be linked
/// to a proxy either, so its sandbox is started with its command, and the
/// helper says why on the command's own stderr.
#[tokio::test(flavor = "multi_thread")]
async fn a_limited_sandbox_without_a_proxy_runs_nothing() {
    use execgate_escalate_server::sandbox::{NetworkPolicy, PermissionProfile};
    use execgate_escalate_server::{Decision, Execution};
    let mut profiles = ProfileSet::default();
    profiles.add_toml(PROFILES, None).unwrap();
    let limited = PermissionProfile::Managed {
        file_system: Default::default(),
        network: NetworkPolicy::Limited,
        network_lists: Default::default(),
    };
    let escalated = [(
        "/usr/bin/touch",
        Decision::Escalate(Execution::Permissions(limited)),
    )];
    // The escalation server alone: no core-bridge, so no proxy host.
    for (shell_profile, policy) in [
        ("net", policy_by_path(&[])),
        ("workspace-write", policy_by_path(&escalated)),
    ] {
        let place = Place::new();
        let (output, _) = run_sandboxed(
            policy,
            profiles.get(shell_profile).unwrap(),
            &format!("touch {}/ran", place.ws.display()),
            &place.ws,
        )
        .await;
        assert_eq!(
            output.status.code(),
            Some(126),
            "{shell_profile}: {output:?}"
        );
        assert!(
            output
                .stderr
                .contains("a limited network needs execgate's proxy, and none was linked"),
            "{shell_profile}: {output:?}"
        );
        assert!(!place.ws.join("ran").exists(), "{shell_profile}");
    }
}

/// Answers exec questions no, network questions with `answer` after
/// `delay`, and counts the network questions.
#[derive(Clone)]
struct NetworkAnswers {
    asked: Arc<Mutex<Vec<String>>>,
    answer: ApprovalAnswer,
    delay: Duration,
}

impl NetworkAnswers {
    fn new(answer: ApprovalAnswer, delay: Duration) -> NetworkAnswers {
        NetworkAnswers {
            asked: Arc::default(),
            answer,
            delay,
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Approver for NetworkAnswers {
    fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(std::future::ready(ApprovalAnswer::Decline))
    }

    fn approve_network<'a>(&'a self, request: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(async move {
            self.asked.lock().unwrap().push(format!(
                "{}:{} {}",
                request.destination, request.port, request.protocol
            ));
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecided_destination_is_asked_about_once_per_answer() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    // 127.0.0.2 is in no list: a person decides. Loopback origins on
    // 127.0.0.1 answer there too.
    let fetch = "curl -s -o /dev/null -w '%{http_code}\\n' http://127.0.0.2:{port}/hello.txt";
    let twice_at_once = format!("{fetch} & {fetch} & wait\n{fetch}\n");
    let cases = [
        // (answer, status lines, questions asked)
        (ApprovalAnswer::ApproveOnce, "502", 2),
        (ApprovalAnswer::ApproveForSession, "502", 1),
        (ApprovalAnswer::Decline, "403", 2),
        (ApprovalAnswer::DeclineForSession, "403", 1),
    ];
    for (answer, status, questions) in cases {
        // Slow enough that the two concurrent requests meet in flight, on
        // a slow machine too (review 205: 300 ms was not, now and then).
        let approver = NetworkAnswers::new(answer.clone(), Duration::from_millis(1500));
        let mut session_config = limited_config(
            PROFILES,
            &place,
            "net",
            approver.clone(),
            Arc::new(RuleSet::default()),
            None,
        );
        session_config.on_network_denial = OnNetworkDenial::FailConnection;
        let session = ShellSession::start(session_config).unwrap();
        let outcome = run_proxied(&session, &origin, &twice_at_once).await;
        let stdout = text(&outcome.stdout);
        // Allowed, the proxy connects to 127.0.0.2, where nothing listens.
        assert_eq!(
            stdout,
            format!("{status}\n{status}\n{status}\n"),
            "{answer:?}: {}",
            text(&outcome.stderr)
        );
        let asked = approver.asked();
        assert_eq!(asked.len(), questions, "{answer:?}: {asked:?}");
        assert!(asked[0].starts_with("127.0.0.2:"), "{asked:?}");
        assert!(asked[0].ends_with(" http"), "{asked:?}");
        session.shutdown().await;
    }
    assert_eq!(origin.served(), 0);
}

/// A session with the `net` profile whose every network question a person
/// declines after `delay`: a late denial, which ends the command.
fn declining_session(place: &Place, delay: Duration) -> (ShellSession, NetworkAnswers) {
    let approver = NetworkAnswers::new(ApprovalAnswer::Decline, delay);
    let session = ShellSession::start(limited_config(
        PROFILES,
        place,
        "net",
        approver.clone(),
        Arc::new(RuleSet::default()),
        None,
    ))
    .unwrap();
    (session, approver)
}

/// The reason a command ended for the connection to `origin` a person
/// declined; `output` is shown if it is not.
fn assert_declined(reason: Option<String>, origin: &Origin, output: &[u8]) {
    let expected = format!(
        "network denied: 127.0.0.2:{} (declined by the user)",
        origin.port
    );
    assert_eq!(
        reason.as_deref(),
        Some(expected.as_str()),
        "{}",
        text(output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_denial_ends_the_command_and_everything_it_started() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    let (session, approver) = declining_session(&place, Duration::from_millis(500));
    // A background job with an argument no other process has.
    let marker = format!("{}.{}", 600, std::process::id());
    let script = format!(
        "sleep {marker} &\n\
         curl -s http://127.0.0.2:{{port}}/hello.txt\n\
         echo still-running > {ws}/after\n",
        ws = place.ws.display()
    );
    let outcome = run_proxied(&session, &origin, &script).await;
    assert_declined(outcome.network_denied, &origin, &outcome.stderr);
    assert!(
        !place.ws.join("after").exists(),
        "the command went on after the denial"
    );
    assert_eq!(approver.asked().len(), 1);
    assert!(
        !process_with_args(&["sleep", &marker]),
        "a process of the denied command survived"
    );
    session.shutdown().await;
}

/// Probe 162: an escalation in a limited profile's sandbox of its own,
/// ended for a connection a person declined, was killed and nothing said
/// why: its sandbox is no descendant of the command's shell. The command
/// is told, as for its own sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_denial_that_ends_an_escalation_says_why() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    let approver = NetworkAnswers::new(ApprovalAnswer::Decline, Duration::from_millis(100));
    let rules = RuleSet::parse(
        Path::new("curl.rules"),
        "prefix_rule(pattern = [\"curl\"], decision = \"allow\", execution = \"net\")\n",
    )
    .unwrap();
    let session = ShellSession::start(limited_config(
        PROFILES,
        &place,
        "net",
        approver.clone(),
        Arc::new(rules),
        None,
    ))
    .unwrap();
    let script = "curl -s http://127.0.0.2:{port}/hello.txt; echo status=$?\n";
    let outcome = run_proxied(&session, &origin, script).await;
    // The escalation was killed; the shell went on.
    assert!(
        text(&outcome.stdout).contains("status=137"),
        "{}",
        text(&outcome.stderr)
    );
    assert_declined(outcome.network_denied, &origin, &outcome.stderr);
    session.shutdown().await;
}

/// From a probe of `execgate mcp`: a command that unified exec started,
/// ended for a connection a person denied, came back as "exited with
/// status 137" and no reason. It says why, as `run` does.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_denial_says_why_to_unified_exec_too() {
    use execgate_core_bridge::{ExecOptions, ExecResponse};
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    let (session, _) = declining_session(&place, Duration::from_millis(100));
    let script = format!(
        "export NO_PROXY= no_proxy=\ncurl -s http://127.0.0.2:{}/hello.txt\necho went on\n",
        origin.port
    );
    let options = ExecOptions {
        yield_time: Duration::from_secs(10),
        ..ExecOptions::default()
    };
    let ExecResponse::Exited(exited) = session.exec_command(&script, options).await.unwrap() else {
        panic!("still running after 10 s");
    };
    assert_declined(exited.network_denied, &origin, &exited.output.stdout);
    assert!(!text(&exited.output.stdout).contains("went on"));
    session.shutdown().await;
}

/// Whether a process runs with exactly these arguments.
fn process_with_args(args: &[&str]) -> bool {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|entry| fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| cmdline == wanted))
}

/// A session in profile `net` of [`PROFILES`] (the default reaction to
/// a late denial) that records to the audit log `log`, through the sink
/// `sink` makes of it.
fn audited_net_session(
    place: &Place,
    log: &Path,
    sink: impl FnOnce(Arc<dyn AuditSink>) -> Arc<dyn AuditSink>,
) -> ShellSession {
    let mut config = limited_config(
        PROFILES,
        place,
        "net",
        DenyAll,
        Arc::new(RuleSet::default()),
        None,
    );
    let audit = Arc::new(AuditLog::open(log, Rotation::default()).unwrap());
    config.audit = Some(sink(Arc::new(SessionAudit::new(
        audit,
        RecordOptions::default(),
    ))));
    ShellSession::start(config).unwrap()
}

/// An audit sink that takes a second over each connection's close, as a
/// log whose lock another writer holds would.
struct SlowCloses(Arc<dyn AuditSink>);

impl AuditSink for SlowCloses {
    fn record(&self, session_id: &str, event: &SessionEvent) -> Result<(), String> {
        if matches!(event, SessionEvent::Network(network) if network.stage == NetworkStage::Closed)
        {
            std::thread::sleep(Duration::from_secs(1));
        }
        self.0.record(session_id, event)
    }

    fn log_files(&self) -> Vec<std::path::PathBuf> {
        self.0.log_files()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_connection_is_in_the_audit_log() {
    let origin = Origin::start(&[("hello.txt", b"hello\n")]).await;
    let place = Place::new();
    let log = place.root.join("audit.jsonl");
    let session = audited_net_session(&place, &log, |sink| sink);
    let outcome = run_proxied(
        &session,
        &origin,
        "curl -s http://127.0.0.1:{port}/hello.txt; curl -s -o /dev/null http://evil.example/",
    )
    .await;
    assert_eq!(text(&outcome.stdout), "hello\n");
    session.shutdown().await;
    let mut records: Vec<_> = read_records(&log)
        .unwrap()
        .into_iter()
        .filter(|record| record.destination.is_some())
        .collect();
    // A connection's close is recorded when the proxy sees it end, which
    // under load may come after the next command's decision: in the order
    // of each destination's own records.
    records.sort_by_key(|record| record.destination.as_ref().map(|d| d.address.clone()));
    let summary: Vec<String> = records
        .iter()
        .map(|record| {
            let destination = record.destination.as_ref().unwrap();
            let decision = record.execgate.as_ref().unwrap();
            format!(
                "{} {}:{} {} {} {} {:?}/{:?}",
                record.event.action,
                destination.address,
                destination.port,
                record.network.as_ref().unwrap().protocol,
                decision.decided_by,
                decision.network_outcome.as_deref().unwrap_or("-"),
                record.source.as_ref().and_then(|source| source.bytes),
                destination.bytes,
            )
        })
        .collect();
    let port = origin.port;
    assert_eq!(summary.len(), 3, "{summary:#?}");
    assert_eq!(
        summary[0],
        format!("network-decision 127.0.0.1:{port} http list allowed None/None")
    );
    assert!(
        summary[1].starts_with(&format!(
            "network-close 127.0.0.1:{port} http list allowed Some("
        )),
        "{summary:#?}"
    );
    assert_eq!(
        summary[2],
        "network-decision evil.example:80 http list denied None/None"
    );
    let close = records[1].destination.as_ref().unwrap();
    assert_eq!(close.ip.as_deref(), Some("127.0.0.1"));
    assert!(close.bytes.unwrap() > "hello\n".len() as u64);
}

/// Probe 211: a connection the session's end caught still connecting (an
/// upstream whose backlog is full answers nothing) lost its record: the
/// proxy waited up to its connect timeout, and the session's process could
/// exit first. The session's end ends it at once, and `shutdown` returns
/// once it is recorded, even where recording takes a while (review 213:
/// with a quick log, the record was there without the wait).
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_sessions_end_catches_is_recorded() {
    // Backlog 1, filled: a further connection's handshake goes unanswered.
    let upstream = tokio::net::TcpSocket::new_v4().unwrap();
    upstream.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let upstream = upstream.listen(1).unwrap();
    let port = upstream.local_addr().unwrap().port();
    let mut queued = Vec::new();
    loop {
        let attempt = tokio::net::TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(Duration::from_millis(300), attempt).await {
            Ok(stream) => queued.push(stream.unwrap()),
            Err(_) => break,
        }
    }
    let place = Place::new();
    let log = place.root.join("audit.jsonl");
    let session = audited_net_session(&place, &log, |sink| Arc::new(SlowCloses(sink)));
    let script =
        format!("export NO_PROXY= no_proxy=\ncurl -s -m 1 http://127.0.0.1:{port}/; echo curl=$?");
    let outcome = run(&session, &script).await;
    assert_eq!(
        text(&outcome.stdout),
        "curl=28\n",
        "{}",
        text(&outcome.stderr)
    );
    session.shutdown().await;
    let closes: Vec<String> = read_records(&log)
        .unwrap()
        .into_iter()
        .filter(|record| record.event.action == "network-close")
        .map(|record| {
            let decision = record.execgate.unwrap();
            format!(
                "{} {:?} {:?}",
                record.destination.unwrap().port,
                decision.network_outcome,
                decision.reason
            )
        })
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(
        closes[0].starts_with(&format!("{port} "))
            && closes[0].contains("its sandbox or its session ended before a connection was made"),
        "{closes:?}"
    );
    drop(queued);
}

/// An allowed socket must be the socket itself, out of the sandbox's
/// reach: a symlink (which bubblewrap would follow) or a path under a
/// writable root would let the sandbox point the grant at any host socket.
#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_socket_the_sandbox_could_replace_is_refused() {
    let place = Place::new();
    let host_socket = place.outside.join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&host_socket).unwrap();
    let link = place.outside.join("dev.sock");
    std::os::unix::fs::symlink(&host_socket, &link).unwrap();
    let in_workspace = place.ws.join("ws.sock");
    let _other = std::os::unix::net::UnixListener::bind(&in_workspace).unwrap();
    // Probe 162: a link on the way (to the workspace here) read as outside
    // the writable roots, and bubblewrap failed on it with a bare message.
    let workspace_link = place.outside.join("ws-link");
    std::os::unix::fs::symlink(&place.ws, &workspace_link).unwrap();
    let through_link = workspace_link.join("ws.sock");
    for (path, reason) in [
        (&link, "it is not a socket"),
        (&in_workspace, "it is under a writable root"),
        (&through_link, "a symbolic link on the way leads it to"),
    ] {
        let config = limited_config(
            &socket_profile(path),
            &place,
            "sock",
            DenyAll,
            Arc::new(RuleSet::default()),
            None,
        );
        let error = ShellSession::start(config)
            .err()
            .expect("the session is refused");
        assert!(error.to_string().contains(reason), "{path:?}: {error}");
    }
}

/// Set in the process that runs [`held_tunnels_leave_descriptors_for_decisions`]
/// under a descriptor limit of its own.
const FEW_DESCRIPTORS: &str = "EXECGATE_TEST_FEW_DESCRIPTORS";

/// A probe's sandbox held 200 idle tunnels under a descriptor limit of
/// 1024: six descriptors each in the session's process, and the server
/// could no longer open a request's executable or working directory, for
/// every sandbox of the session. The relays of a process hold at most half
/// its limit; the connections past that wait in the sandbox's backlog, and
/// the shell's commands are decided as before. Runs alone, in a process
/// whose limit is 512 (the limit is read once per process).
#[test]
fn held_tunnels_leave_descriptors_for_decisions() {
    if std::env::var_os(FEW_DESCRIPTORS).is_some() {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(hold_tunnels_and_decide());
        return;
    }
    let _alone = super::DESCRIPTORS_IN_FLIGHT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    super::rerun_under_descriptor_limit(
        "suite::network::held_tunnels_leave_descriptors_for_decisions",
        "512:512",
        FEW_DESCRIPTORS,
    );
}

async fn hold_tunnels_and_decide() {
    const TUNNELS: usize = 120;
    // Half of 512, six descriptors a relay, of which one sandbox takes
    // half.
    const RELAYS: usize = 512 / 2 / 6 / 2;
    // An origin that takes connections and never answers: each tunnel
    // stands until the sandbox closes it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let place = Place::new();
    let recorder = Recorder::default();
    let session = limited_session_with(
        &place,
        "net",
        DenyAll,
        Arc::new(RuleSet::default()),
        Some(&recorder),
    );
    // The tunnels are asked for one after another; after a while each
    // has its answer or still waits for one. The commands run while they
    // stand.
    let script = format!(
        "python3 -c '
import os, select, socket, time
proxy = os.environ[\"HTTP_PROXY\"].split(\"//\")[1].rstrip(\"/\")
host, port = proxy.rsplit(\":\", 1)
tunnels = []
for _ in range({TUNNELS}):
    s = socket.create_connection((host, int(port)))
    s.sendall(b\"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n\")
    tunnels.append(s)
    select.select([s], [], [], 0.05)
time.sleep(2)
answers = [t.recv(12) if select.select([t], [], [], 0)[0] else b\"waiting\" for t in tunnels]
open(\"answers\", \"w\").write(\" \".join(sorted(set(\"%s=%d\" % (a.decode(), answers.count(a)) for a in answers))))
time.sleep(60)
' &
while [ ! -e answers ]; do sleep 0.1; done
for i in $(seq 20); do /usr/bin/true || echo failed $?; done; echo done
kill $!"
    );
    let outcome = run(&session, &script).await;
    assert_eq!(text(&outcome.stdout), "done\n", "{}", text(&outcome.stderr));
    let answers = fs::read_to_string(place.ws.join("answers")).unwrap();
    assert_eq!(
        answers,
        format!("HTTP/1.1 200={RELAYS} waiting={}", TUNNELS - RELAYS)
    );
    session.shutdown().await;
    held.abort();
    let decided = recorder.decided();
    let trues: Vec<_> = decided
        .iter()
        .filter(|request| request.executable.canonical_path == Path::new("/usr/bin/true"))
        .collect();
    assert_eq!(trues.len(), 20);
    for request in trues {
        assert!(
            request.working_directory.is_ok(),
            "{:?}",
            request.working_directory
        );
    }
}
