//! What the sandbox's supervisor decides, through the real zsh: host Unix
//! sockets anywhere in the readable tree stay unreachable with a restricted
//! network while the sandbox's own sockets work; deny globs cover files
//! that appear after launch; `.agents` and `.execgate` cannot be created
//! under a writable root while `git init` keeps working.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use execgate_escalate_server::sandbox::{
    parse_target, Access, Launcher, PermissionProfile, SandboxContext,
};
use execgate_escalate_server::SessionSandbox;

use super::*;

const SECRET: &str = "TOPSECRET-confine";

/// A workspace (the session's working directory) in /var/tmp, which the
/// profiles leave read-only, and a fake home beside it.
struct Place {
    _dir: tempfile::TempDir,
    ws: PathBuf,
    home: PathBuf,
}

impl Place {
    fn new() -> Place {
        let base = std::env::var_os("EXECGATE_TEST_TMPDIR")
            .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("confine")
            .tempdir_in(base)
            .unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let (ws, home) = (root.join("ws"), root.join("home"));
        for sub in [&ws, &home] {
            fs::create_dir_all(sub).unwrap();
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        Place {
            _dir: dir,
            ws,
            home,
        }
    }

    /// workspace-write with `**/*.env` denied.
    fn profile_with_env_denied(&self) -> PermissionProfile {
        let mut profile = PermissionProfile::preset("workspace-write").unwrap();
        let PermissionProfile::Managed { file_system, .. } = &mut profile else {
            unreachable!()
        };
        file_system
            .push(parse_target("**/*.env", None).unwrap(), Access::None)
            .unwrap();
        profile
    }
}

/// A Unix listener the test (outside the sandbox) binds at `path`.
struct HostListener {
    name: &'static str,
    path: PathBuf,
    listener: UnixListener,
}

impl HostListener {
    fn bind(name: &'static str, path: PathBuf) -> HostListener {
        let parent = path.parent().unwrap();
        fs::create_dir_all(parent).unwrap();
        // Readable by the sandbox: otherwise refusing proves nothing.
        fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        HostListener {
            name,
            path,
            listener,
        }
    }

    fn was_reached(&self) -> bool {
        !matches!(self.listener.accept(), Err(ref error) if error.kind() == ErrorKind::WouldBlock)
    }
}

/// Python that connects to `path` and prints `NAME:connected` or
/// `NAME:refused:ERRNO`.
fn connect_attempt(name: &str, path: &str) -> String {
    format!(
        "python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print(\"{name}:connected\")
except OSError as e:
    print(\"{name}:refused:\" + str(e.errno))' {path}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn host_unix_sockets_anywhere_are_unreachable_with_a_restricted_network() {
    let place = Place::new();
    // Only root can make a directory in /var/lib; an unprivileged run gets
    // one made for it.
    let var_lib_base = std::env::var_os("EXECGATE_TEST_VAR_LIB")
        .map_or_else(|| PathBuf::from("/var/lib"), PathBuf::from);
    let var_lib = var_lib_base.join(format!(
        "execgate-confine-{}-{}",
        std::process::id(),
        place
            .ws
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    ));
    let _cleanup = RemoveOnDrop(var_lib.clone());
    let listeners = [
        HostListener::bind("ssh", place.home.join(".ssh/control.sock")),
        HostListener::bind("dotdir", place.home.join(".local/agent/agent.sock")),
        HostListener::bind("varlib", var_lib.join("service.sock")),
        HostListener::bind("workspace", place.ws.join("host.sock")),
    ];
    let mut script = String::new();
    for listener in &listeners {
        let path = listener.path.to_str().unwrap();
        // The socket is there to see: only the connection is refused.
        script.push_str(&format!(
            "[[ -S {path} ]] && print {}:visible\n",
            listener.name
        ));
        script.push_str(&connect_attempt(listener.name, path));
    }
    // Relative, and through a symlink the sandbox makes.
    script.push_str(&connect_attempt("relative", "host.sock"));
    script.push_str(&format!(
        "ln -s {} link.sock\n",
        listeners[0].path.to_str().unwrap()
    ));
    script.push_str(&connect_attempt("symlink", "link.sock"));
    script.push_str(&connect_attempt("proc-cwd", "/proc/self/cwd/host.sock"));
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        PermissionProfile::preset("workspace-write").unwrap(),
        &script,
        &place.ws,
    )
    .await;
    let mut expected = String::new();
    for listener in &listeners {
        expected.push_str(&format!(
            "{}:visible\n{}:refused:13\n",
            listener.name, listener.name
        ));
    }
    expected.push_str("relative:refused:13\nsymlink:refused:13\nproc-cwd:refused:13\n");
    assert_eq!(output.stdout, expected, "{}", output.stderr);
    for listener in &listeners {
        assert!(!listener.was_reached(), "{} was reached", listener.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_datagram_sockets_are_unreachable_with_a_restricted_network() {
    let place = Place::new();
    let path = place.home.join(".dgram/log.sock");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    receiver.set_nonblocking(true).unwrap();
    let script = format!(
        "python3 -c 'import socket,sys
for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
    try:
        s=socket.socket(socket.AF_UNIX, kind); s.sendto(b\"x\", sys.argv[1]); print(\"sent\")
    except OSError as e:
        print(\"refused:\" + str(e.errno))
try:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM); a.sendto(b\"x\", sys.argv[1]); print(\"sent\")
except OSError as e:
    print(\"refused:\" + str(e.errno))' {}",
        path.display()
    );
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        PermissionProfile::preset("workspace-write").unwrap(),
        &script,
        &place.ws,
    )
    .await;
    assert_eq!(
        output.stdout, "refused:1\nrefused:1\nrefused:1\n",
        "{}",
        output.stderr
    );
    let mut buffer = [0u8; 8];
    assert!(receiver.recv(&mut buffer).is_err(), "a datagram arrived");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandboxs_own_sockets_keep_working() {
    let place = Place::new();
    // A server bound in the temp dir and one in the workspace, each
    // reached by absolute and relative paths; an abstract one; a
    // socketpair; and a stream socketpair's fd passing.
    let script = r#"python3 -c '
import os, socket, tempfile
def pair(address, connect_to):
    server = socket.socket(socket.AF_UNIX)
    server.bind(address); server.listen(1)
    client = socket.socket(socket.AF_UNIX); client.connect(connect_to)
    peer, _ = server.accept(); client.sendall(b"ping"); return peer.recv(4).decode()
with tempfile.TemporaryDirectory() as tmp:
    print("tmp", pair(tmp + "/s.sock", tmp + "/s.sock"))
print("workspace", pair("ws.sock", os.getcwd() + "/ws.sock"))
os.mkdir("sub"); os.chdir("sub")
print("relative", pair("r.sock", "r.sock"))
print("abstract", pair("\0execgate-confine-abstract", "\0execgate-confine-abstract"))
a, b = socket.socketpair(); a.sendall(b"pong"); print("socketpair", b.recv(4).decode())
'
"#;
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        PermissionProfile::preset("workspace-write").unwrap(),
        script,
        &place.ws,
    )
    .await;
    assert_eq!(
        output.stdout, "tmp ping\nworkspace ping\nrelative ping\nabstract ping\nsocketpair pong\n",
        "{}",
        output.stderr
    );
    assert_eq!(output.code(), Some(0), "{}", output.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_and_execgate_cannot_be_created_under_a_writable_root() {
    let place = Place::new();
    let script = r#"
        mkdir .agents; print mkdir=$?
        touch .execgate; print touch=$?
        mkdir d; mv d .agents; print mv=$?
        ln -s /tmp .execgate; print symlink=$?
        print x > f; ln f .agents; print link=$?
        mkfifo .execgate; print mkfifo=$?
        ln -s .agents dangling && touch dangling; print dangling=$?
        mkdir sub/.agents 2>/dev/null || { mkdir sub && mkdir sub/.agents; }; print nested=$?
        mkdir $TMPDIR/.agents; print tmpdir=$?
        git init -q; print git=$?
        print x > tracked; git add tracked && git -c user.email=a@b -c user.name=n commit -qm m; print commit=$?
        ls -A | sort | tr '\n' ' '; print
    "#;
    // A temp dir of the test's own: a failure must not leave a `.agents`
    // in the machine's /tmp.
    let tmpdir = place.ws.parent().unwrap().join("tmp");
    fs::create_dir(&tmpdir).unwrap();
    let mut context = SandboxContext::new(&place.ws);
    context.tmpdir = tmpdir.clone();
    let mut config = SessionConfig::new(wrapper(), policy_by_path(&[]));
    config.sandbox = Some(SessionSandbox {
        launcher: Launcher::new(sandbox_helper()).unwrap(),
        turn_default: PermissionProfile::preset("workspace-write").unwrap(),
        context,
    });
    let mut session = Session::start(config).unwrap();
    let mut command = session.shell_command(&zsh(), &[os("-f"), os("-c"), os(script)]);
    command
        .current_dir(&place.ws)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TMPDIR", &tmpdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = tokio::process::Command::from(command.command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    session.shell_spawned();
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(
        output.stdout,
        "mkdir=1\ntouch=1\nmv=1\nsymlink=1\nlink=1\nmkfifo=1\ndangling=1\nnested=0\ntmpdir=1\n\
         git=0\ncommit=0\n.git d dangling f sub tracked \n",
        "{}",
        output.stderr
    );
    for name in [".agents", ".execgate"] {
        assert!(!place.ws.join(name).exists(), "{name} was created");
        assert!(
            !tmpdir.join(name).exists(),
            "{name} was created in the temp dir"
        );
    }
    assert!(place.ws.join(".git/HEAD").exists());
}

/// The sandboxed script waits for `marker`, then runs `then`.
fn after_marker(marker: &Path, then: &str) -> String {
    format!(
        "for i in {{1..500}}; do [[ -e {} ]] && break; sleep 0.02; done\n{then}",
        marker.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_glob_file_the_host_creates_after_launch_is_unreadable() {
    let place = Place::new();
    let marker = place.ws.join("marker");
    let script = after_marker(
        &marker,
        "cat late.env; print cat=$?
         cat sub/deeper.env; print nested=$?
         mv late.env moved.txt; print mv=$?; cat moved.txt 2>/dev/null
         ln late.env linked.txt; print ln=$?; cat linked.txt 2>/dev/null
         ln -s late.env sym.txt; cat sym.txt; print symlink=$?
         print overwritten > sym.txt; print truncate=$?
         cat /proc/self/cwd/late.env; print proc=$?
         cp late.env copy.txt; print cp=$?
         python3 -c 'import os; os.open(\"late.env\", os.O_RDONLY)' 2>/dev/null; print python=$?
         print notes; cat notes.txt",
    );
    fs::write(place.ws.join("notes.txt"), "readable\n").unwrap();
    let (mut session, _) = start_sandboxed_session(
        policy_by_path(&[]),
        place.profile_with_env_denied(),
        &place.ws,
    );
    let child = spawn_session_shell(&mut session, &script, &place.ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::write(place.ws.join("late.env"), SECRET).unwrap();
    fs::create_dir(place.ws.join("sub")).unwrap();
    fs::write(place.ws.join("sub/deeper.env"), SECRET).unwrap();
    fs::write(&marker, "").unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    assert!(
        !output.stdout.contains(SECRET) && !output.stderr.contains(SECRET),
        "{}",
        output.stdout
    );
    assert_eq!(
        output.stdout,
        "cat=1\nnested=1\nmv=1\nln=1\nsymlink=1\ntruncate=1\nproc=1\ncp=1\npython=1\nnotes\nreadable\n",
        "{}",
        output.stderr
    );
    assert_eq!(
        fs::read_to_string(place.ws.join("late.env")).unwrap(),
        SECRET
    );
}

/// A probe found `"*.env"` hiding only `.env` files directly in a
/// writable root, and `"**/private"` refusing the directory's listing but
/// not the files in it. Deny globs read as `.gitignore` lines: a glob
/// without `/` matches at any depth, and a matched directory hides what is
/// under it, files there from the start and files made later alike; but
/// only under the writable roots (`*.conf` must not hide `/etc`'s).
#[tokio::test(flavor = "multi_thread")]
async fn deny_globs_match_names_at_any_depth_and_what_is_under_a_matched_directory() {
    let place = Place::new();
    let mut profile = PermissionProfile::preset("workspace-write").unwrap();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    for glob in ["*.env", "**/private", "*.conf"] {
        file_system
            .push(parse_target(glob, None).unwrap(), Access::None)
            .unwrap();
    }
    for dir in ["sub/deep", "a/private"] {
        fs::create_dir_all(place.ws.join(dir)).unwrap();
    }
    for file in [".env", "sub/.env", "sub/deep/nested.env", "a/private/key"] {
        fs::write(place.ws.join(file), SECRET).unwrap();
    }
    fs::write(place.ws.join("sub/notes.txt"), "readable\n").unwrap();
    let marker = place.ws.join("marker");
    let script = after_marker(
        &marker,
        "for f in .env sub/.env sub/deep/nested.env a/private/key sub/deep/late.env a/private/late; do
           cat $f 2>/dev/null; print $f=$?
         done
         cat sub/notes.txt
         cat /etc/host.conf > /dev/null; print etc=$?",
    );
    let (mut session, _) = start_sandboxed_session(policy_by_path(&[]), profile, &place.ws);
    let child = spawn_session_shell(&mut session, &script, &place.ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::write(place.ws.join("sub/deep/late.env"), SECRET).unwrap();
    fs::write(place.ws.join("a/private/late"), SECRET).unwrap();
    fs::write(&marker, "").unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    assert!(!output.stdout.contains(SECRET), "{}", output.stdout);
    assert_eq!(
        output.stdout,
        ".env=1\nsub/.env=1\nsub/deep/nested.env=1\na/private/key=1\n\
         sub/deep/late.env=1\na/private/late=1\nreadable\netc=0\n",
        "{}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_glob_file_made_inside_the_sandbox_is_neither_written_nor_read() {
    let place = Place::new();
    let script = format!(
        "print {SECRET} > made.env; print write=$?; cat made.env; print read=$?
         print {SECRET} > plain.txt; mv plain.txt renamed.env; print rename=$?
         cat renamed.env; print renamed=$?"
    );
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        place.profile_with_env_denied(),
        &script,
        &place.ws,
    )
    .await;
    assert!(!output.stdout.contains(SECRET), "{}", output.stdout);
    assert_eq!(
        output.stdout, "write=1\nread=1\nrename=1\nrenamed=1\n",
        "{}",
        output.stderr
    );
    assert!(!place.ws.join("made.env").exists());
}

/// Opens are done by the supervisor when there are deny globs; one that
/// blocks (a FIFO waiting for its writer) must not hold up the others.
#[tokio::test(flavor = "multi_thread")]
async fn blocking_opens_under_deny_globs_do_not_hold_up_the_sandbox() {
    let place = Place::new();
    let script = "mkfifo p1 p2
        cat p1 > out1 & cat p2 > out2 &
        sleep 0.2; print one > p1; print two > p2; wait
        cat out1 out2; print -r -- $(umask) ; print x > made; stat -c %a made";
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        place.profile_with_env_denied(),
        script,
        &place.ws,
    )
    .await;
    assert_eq!(output.stdout, "one\ntwo\n022\n644\n", "{}", output.stderr);
}

/// A review: under deny globs an open that creates made its file first and
/// opened it after, so a file made read-only could not be opened for
/// writing (git's objects: `git add` failed), `O_CREAT` opened a directory
/// and `O_CREAT | O_EXCL` followed a dangling link. The file is opened by
/// the call that made it, as the kernel does.
#[tokio::test(flavor = "multi_thread")]
async fn opens_that_create_under_deny_globs_behave_as_the_kernels() {
    let place = Place::new();
    let script = r#"git init -q repo && cd repo && print hi > a && git add a; print add=$?
        print x > ro; chmod 444 ro; cp ro ro2; print cp=$?; cd ..
        mkdir d; ln -s made dangling; python3 -c '
import errno, os
for name, flags in [("d", os.O_RDONLY | os.O_CREAT), ("dangling", os.O_WRONLY | os.O_CREAT | os.O_EXCL)]:
    try:
        os.close(os.open(name, flags)); print(name + "=opened")
    except OSError as error:
        print(name + "=" + errno.errorcode[error.errno])
print("made=%s" % os.path.lexists("made"))
'"#;
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        place.profile_with_env_denied(),
        script,
        &place.ws,
    )
    .await;
    assert_eq!(
        output.stdout, "add=0\ncp=0\nd=EISDIR\ndangling=EEXIST\nmade=False\n",
        "{}",
        output.stderr
    );
}

/// A glob on a directory (`private/**`) matches by where a file is, so
/// moving the directory would carry a late file out from under it.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_holding_a_denied_late_file_cannot_be_renamed_away() {
    let place = Place::new();
    let mut profile = PermissionProfile::preset("workspace-write").unwrap();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    file_system
        .push(parse_target("private/**", None).unwrap(), Access::None)
        .unwrap();
    fs::create_dir(place.ws.join("private")).unwrap();
    let marker = place.ws.join("marker");
    let script = after_marker(
        &marker,
        "cat private/key.txt; print cat=$?
         mv private public; print mv=$?; cat public/key.txt 2>/dev/null; print moved=$?
         mkdir empty; mv empty elsewhere; print plain=$?",
    );
    let (mut session, _) = start_sandboxed_session(policy_by_path(&[]), profile, &place.ws);
    let child = spawn_session_shell(&mut session, &script, &place.ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::write(place.ws.join("private/key.txt"), SECRET).unwrap();
    fs::write(&marker, "").unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    assert!(!output.stdout.contains(SECRET), "{}", output.stdout);
    assert_eq!(
        output.stdout, "cat=1\nmv=1\nmoved=1\nplain=0\n",
        "{}",
        output.stderr
    );
}

/// A probe put a symbolic link where a glob's directory would be made
/// (`config` for `config/*.key`, `vault` for `[v]ault`), or where its file
/// would (`config/a.key`): the host's late file went through it to a name
/// no glob matched, and the sandbox read it there. No link can be put on a
/// glob's way, by `symlink`, `rename` or `link`; a directory still can.
/// A review: nor can a file be linked or moved to a name a glob denies
/// (the host's later write in place would be read through its other
/// name), nor a directory on a glob's way be moved (a host program
/// working in it would write into the new name). Nor can a directory be
/// moved where a file in it would have a denied name (a third review: the
/// file's other name, or a descriptor kept open, reads the host's write).
#[tokio::test(flavor = "multi_thread")]
async fn no_link_can_be_put_where_a_glob_would_match_a_late_file() {
    let place = Place::new();
    let mut profile = PermissionProfile::preset("workspace-write").unwrap();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    for glob in ["config/*.key", "[v]ault", "held/*.key"] {
        file_system
            .push(parse_target(glob, None).unwrap(), Access::None)
            .unwrap();
    }
    let marker = place.ws.join("marker");
    let script = after_marker(
        &marker,
        "mkdir elsewhere
         ln -s elsewhere config; print symlink=$?
         ln -s elsewhere vault; print name=$?
         ln -s elsewhere other; mv other config; print rename=$?
         ln other config 2>/dev/null; print link=$?
         mkdir config; ln -s ../elsewhere/a.key config/a.key; print file=$?
         rmdir config; print directory=$?
         mkdir -p x/y; ln -s ../../elsewhere/a.key x/y/a.key; mv x/y config; print carried=$?
         mkdir -p z; ln -s ../elsewhere z/link; mv z deeper; print plain=$?
         mkdir config; touch mine; ln mine config/a.key; print hard=$?
         mv mine config/b.key; print onto=$?
         mv config moved; print away=$?
         mkdir h; touch kept; ln kept h/c.key; mv h held; print carried_link=$?
         rm -rf held; mkdir h2; print > h2/c.key; mv h2 held; print carried_file=$?",
    );
    let (mut session, _) = start_sandboxed_session(policy_by_path(&[]), profile, &place.ws);
    let child = spawn_session_shell(&mut session, &script, &place.ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::write(&marker, "").unwrap();
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(
        output.stdout,
        "symlink=1\nname=1\nrename=1\nlink=1\nfile=1\ndirectory=0\ncarried=1\nplain=0\nhard=1\nonto=1\naway=1\ncarried_link=1\ncarried_file=1\n",
        "{}",
        output.stderr
    );
}

/// A review: the check that no link in a directory lands on a glob's way
/// when the directory is moved walked it first, and a second process could
/// add a link in it after the walk, before the move. One process here adds
/// and removes `d/sub`, a link, as fast as it can; another moves `d` to
/// `a` (the way of `a/sub/*.key`), and counts the moves that carried the
/// link. A second review did the same with a file made by `open`, kept
/// open, and carried to `held/c.key`, a denied name the host writes: its
/// descriptor read what the host wrote. A name is made, or a directory
/// moved, one at a time.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_slips_into_a_directory_while_its_move_is_checked() {
    let place = Place::new();
    let mut profile = PermissionProfile::preset("workspace-write").unwrap();
    let PermissionProfile::Managed { file_system, .. } = &mut profile else {
        unreachable!()
    };
    for glob in ["a/sub/*.key", "held/*.key"] {
        file_system
            .push(parse_target(glob, None).unwrap(), Access::None)
            .unwrap();
    }
    let script = r#"mkdir elsewhere; python3 -c '
import os, sys, time

def make_link():
    os.symlink("../elsewhere", "d/sub")
    os.unlink("d/sub")

def make_file():
    fd = os.open("d/c.key", os.O_CREAT | os.O_RDWR)
    if "/held/" in os.readlink("/proc/self/fd/%d" % fd):
        print("kept a descriptor at a denied name")
    os.close(fd)
    os.unlink("d/c.key")

for (to, make) in [("a", make_link), ("held", make_file)]:
    os.mkdir("d")
    deadline = time.monotonic() + 2
    if os.fork() == 0:
        while time.monotonic() < deadline:
            try:
                make()
            except OSError:
                pass
        os._exit(0)
    moved = refused = carried = 0
    while time.monotonic() < deadline:
        try:
            os.rename("d", to)
        except OSError:
            refused += 1
            continue
        moved += 1
        # A name may also land in the moved directory just after: one made
        # through the directory as the other process found it.
        while True:
            for name in os.listdir(to):
                carried += 1
                try:
                    os.unlink(os.path.join(to, name))
                except OSError:
                    pass
            try:
                os.rmdir(to)
                break
            except OSError:
                pass
        os.mkdir("d")
    os.wait()
    os.rmdir("d") if os.path.isdir("d") and not os.listdir("d") else None
    print("%s: carried=%d both=%s" % (to, carried, moved > 0 and refused > 0))
'"#;
    let (mut session, _) = start_sandboxed_session(policy_by_path(&[]), profile, &place.ws);
    let child = spawn_session_shell(&mut session, script, &place.ws);
    let output = finish(child).await;
    session.shutdown().await;
    assert_eq!(
        output.stdout, "a: carried=0 both=True\nheld: carried=0 both=True\n",
        "{}",
        output.stderr
    );
}

/// Python that, given the supervisor's pid, tries to open the `mem` file of
/// every one of its threads (found by `stat`) by every name (`/proc/TID`, `/proc/PID/task/TID`,
/// `/proc/TID/task/TID`, a symlink, a directory descriptor) for writing,
/// for reading with `O_CREAT` (supervised under writable roots) and for
/// reading alone (supervised under deny globs), then prints what opened,
/// and whether the shell (the target) is dumpable, as the supervisor needs.
const SUPERVISOR_MEM_ATTEMPTS: &str = r#"python3 -c '
import os, sys
supervisor = sys.argv[1]
# Not listed: under deny globs the supervisor refuses to open its own
# task directory, but stat is not watched.
tids = [str(tid) for tid in range(1, 32768)
        if os.path.lexists("/proc/%s/task/%d" % (supervisor, tid))]
print("threads:" + ("several" if len(tids) >= 2 else str(len(tids))))
names = []
for tid in tids:
    names += ["/proc/%s/mem" % tid, "/proc/%s/task/%s/mem" % (supervisor, tid),
              "/proc/%s/task/%s/mem" % (tid, tid)]
    os.symlink("/proc/%s/mem" % tid, "mem-link-" + tid)
    names.append("mem-link-" + tid)
flag_sets = {"rw-creat": os.O_RDWR | os.O_CREAT, "ro-creat": os.O_RDONLY | os.O_CREAT,
             "ro": os.O_RDONLY}
opened = []
for name in names:
    if not os.path.lexists(name):
        opened.append("missing:" + name)
    for label, flags in flag_sets.items():
        try:
            os.close(os.open(name, flags)); opened.append(label + ":" + name)
        except OSError:
            pass
for tid in tids:
    try:
        directory = os.open("/proc/%s" % tid, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        # Refused already (under deny globs, where this open is watched).
        continue
    for label, flags in flag_sets.items():
        try:
            os.close(os.open("mem", flags, dir_fd=directory)); opened.append(label + ":dirfd:" + tid)
        except OSError:
            pass
print("opened:" + " ".join(opened))
try:
    os.close(os.open("/proc/%d/mem" % os.getppid(), os.O_RDONLY)); print("shell:dumpable")
except OSError as error:
    print("shell:not dumpable:%d" % error.errno)
' $PPID
print x > made; print create=$?
"#;

/// The supervisor opens files on the sandbox's behalf, and its own /proc
/// entries are open to it: `/proc/TID/mem` of a worker thread, handed to
/// the sandbox, would let it rewrite the supervisor's code. Every thread of
/// the supervisor (the shell's parent), by every name, stays closed, with
/// writable roots alone and with deny globs (every open supervised); the
/// shell itself stays supervisable (dumpable after its exec).
#[tokio::test(flavor = "multi_thread")]
async fn no_thread_of_the_supervisor_can_be_opened_through_it() {
    let place = Place::new();
    // With `/` writable, Landlock allows writing under /proc too: only the
    // supervisor's own check stands between the sandbox and its code.
    let mut root_writable = PermissionProfile::preset("workspace-write").unwrap();
    let PermissionProfile::Managed { file_system, .. } = &mut root_writable else {
        unreachable!()
    };
    file_system
        .push(parse_target(":root", None).unwrap(), Access::Write)
        .unwrap();
    let profiles = [
        (
            "writable roots",
            PermissionProfile::preset("workspace-write").unwrap(),
        ),
        ("deny globs", place.profile_with_env_denied()),
        ("writable /", root_writable),
    ];
    let mut outcomes = Vec::new();
    let mut expected = Vec::new();
    for (name, profile) in profiles {
        for leftover in fs::read_dir(&place.ws).unwrap() {
            fs::remove_file(leftover.unwrap().path()).unwrap();
        }
        let (output, _) = run_sandboxed(
            policy_by_path(&[]),
            profile,
            SUPERVISOR_MEM_ATTEMPTS,
            &place.ws,
        )
        .await;
        outcomes.push((name, output.stdout, output.stderr));
        expected.push((
            name,
            "threads:several\nopened:\nshell:dumpable\ncreate=0\n".to_owned(),
        ));
    }
    let stdouts: Vec<_> = outcomes
        .iter()
        .map(|(name, stdout, _)| (*name, stdout.clone()))
        .collect();
    assert_eq!(stdouts, expected, "{outcomes:#?}");
}

/// This suite again as an unprivileged user (bubblewrap started by root and
/// by an ordinary user take different paths): the test binary re-runs
/// itself, staged where that user can reach it.
#[test]
fn the_supervisor_holds_for_an_unprivileged_user() {
    let run = UnprivilegedRun::stage();
    let places = run.stage.path().join("places");
    fs::create_dir(&places).unwrap();
    let var_lib = PathBuf::from(format!(
        "/var/lib/execgate-unprivileged-{}",
        std::process::id()
    ));
    let _cleanup = RemoveOnDrop(var_lib.clone());
    fs::create_dir_all(&var_lib).unwrap();
    run.hand_over(&[&places, &var_lib]);
    let stdout = run.run(
        &[
            "suite::confine::",
            "--skip",
            "the_supervisor_holds_for_an_unprivileged_user",
        ],
        &[
            ("EXECGATE_TEST_TMPDIR", &places),
            ("EXECGATE_TEST_VAR_LIB", &var_lib),
        ],
    );
    // Every test of this file, but this one.
    let source = include_str!("confine.rs");
    let tests = source
        .lines()
        .filter(|line| line.starts_with("#[tokio::test") || line.starts_with("#[test]"))
        .count()
        - 1;
    assert!(
        stdout.contains(&format!("test result: ok. {tests} passed")),
        "the suite did not run in full ({tests} tests): {stdout}"
    );
}

/// Probe 170: in a user and mount namespace of its own, a sandboxed
/// program cloned the workspace's mount (`open_tree`): a directory there
/// read back as `/`, and the supervisor's checks by path passed a late
/// deny-glob file, `.agents`, a move of the workspace's parent. And, with
/// no namespace at all, a rename raced by an exchange (`x` swapped with a
/// link between the check and the move) made `.git` a link. The first is
/// refused (EPERM), the second cannot happen: a rename runs alone.
#[tokio::test(flavor = "multi_thread")]
async fn no_detached_mount_copy_and_no_git_link_by_a_race() {
    let place = Place::new();
    let evil = place.ws.parent().unwrap().join("evil");
    fs::create_dir(&evil).unwrap();
    let script = format!(
        r#"python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:
    # CLONE_NEWUSER | CLONE_NEWNS, then OPEN_TREE_CLONE | AT_RECURSIVE.
    libc.unshare(0x10000000 | 0x20000)
    fd = libc.syscall(428, -100, b".", 1 | 0x8000)
    print("open_tree", fd if fd < 0 else "fd", ctypes.get_errno() if fd < 0 else 0, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
os.mkdir("x")
os.symlink("{evil}", "l")
swapper = os.fork()
if swapper == 0:
    while True:
        libc.syscall(316, -100, b"x", -100, b"l", 2)
won = False
for _ in range(2000):
    try:
        os.rename("x", ".git")
    except OSError:
        continue
    if os.path.islink(".git"):
        won = True
        break
    os.rename(".git", "x")
os.kill(swapper, 9)
os.waitpid(swapper, 0)
print("git link", won)
'"#,
        evil = evil.display()
    );
    let (output, _) = run_sandboxed(
        policy_by_path(&[]),
        PermissionProfile::preset("workspace-write").unwrap(),
        &script,
        &place.ws,
    )
    .await;
    assert_eq!(
        output.stdout, "open_tree -1 1\ngit link False\n",
        "{}",
        output.stderr
    );
    assert!(!fs::symlink_metadata(place.ws.join(".git")).is_ok_and(|meta| meta.is_symlink()));
}
