//! The proxy's host: one per session, serving every `limited` sandbox of
//! it (shells and sandboxed escalations alike).
//!
//! For each limited sandbox the server starts, it asks for a link
//! ([`NetworkBridge::open`]): a socket pair whose one end goes to the
//! sandbox's helper. The helper listens on the sandbox's own loopback and
//! sends that listener back, with a pidfd of itself. From then on this host
//! accepts the sandbox's connections in the session's process, decides each
//! one on its destination and relays it; when the pidfd says the sandbox
//! has ended, or the session ends, the listener is closed (it holds the
//! sandbox's network namespace).
//!
//! A connection that waited for a person and was then denied cancels the
//! sandbox's command ([`OnNetworkDenial::Cancel`], the default): the
//! sandbox's first process is killed, which ends its pid namespace, and
//! the run that started it reports `network denied: HOST:PORT (reason)`.
//!
//! This module must never accept a connection from anything but a
//! sandbox's own listener, relay a connection without a decision, or keep
//! a listener after its sandbox has ended.

use std::future::Future;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::socket::{getsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use execgate_escalate_server::sandbox::{ResolvedPolicy, LISTENER_MESSAGE};
use execgate_escalate_server::{NetworkBridge, SandboxOrigin};
use execgate_network_proxy::{
    serve_connection, ConnectRequest, ConnectionOutcome, ConnectionReport, Decider, Verdict,
};

use super::decide::{NetworkConnection, NetworkDecider, NetworkDecision};
use execgate_protocol::recv_with_fds;

/// What happens when a connection is denied after it was held for a
/// person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnNetworkDenial {
    /// Kill the sandbox's command and report `network denied: ...`.
    #[default]
    Cancel,
    /// Only fail that connection (the client gets a 403 or a SOCKS
    /// refusal), and let the command go on.
    FailConnection,
}

/// Makes the decider of one sandbox (its profile's lists; the session's
/// rules, approver, cache and audit log), and says which request the
/// sandbox belongs to (an escalation's) when that is known.
pub(crate) type SandboxNetworkFactory =
    Box<dyn Fn(&ResolvedPolicy, SandboxOrigin) -> (Arc<NetworkDecider>, Option<u64>) + Send + Sync>;

/// A sandbox ended for a denied connection.
struct Denial {
    /// Its first process's pid and its ancestors' (an escalation's: its
    /// requester's too), those that were still the processes they were
    /// when it linked.
    pids: Vec<u32>,
    at: std::time::Instant,
    message: String,
}

/// Connections of one sandbox in flight at most: past it, the sandbox's
/// next connection waits in its listener's backlog until one ends (each
/// holds up to [`DESCRIPTORS_PER_RELAY`] of the session process's
/// descriptors).
const CONNECTIONS_PER_SANDBOX: usize = 256;

/// The client's socket, the upstream's, and a pipe each way to splice
/// through.
const DESCRIPTORS_PER_RELAY: u64 = 6;

/// Connections of every sandbox of this process in flight at most: as many
/// as half its descriptor limit holds. A probe's sandbox held 200 idle
/// tunnels under a limit of 1024, and the server could no longer open a
/// request's executable or working directory: every sandbox's decisions
/// failed while the tunnels stood.
/// Also returns how many that is: one sandbox takes at most half of them
/// (a review: one sandbox holding them all left every other sandbox's
/// connections waiting, other sessions' in the same process included),
/// and the last quarter goes only to sandboxes that hold none.
/// Past the bound, a sandbox's connection is closed as it comes.
fn process_connections() -> (Arc<tokio::sync::Semaphore>, usize) {
    static CONNECTIONS: std::sync::OnceLock<(Arc<tokio::sync::Semaphore>, usize)> =
        std::sync::OnceLock::new();
    CONNECTIONS
        .get_or_init(|| {
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(1024, |(soft, _hard)| soft);
            let connections = usize::try_from(limit / 2 / DESCRIPTORS_PER_RELAY)
                .unwrap_or(usize::MAX)
                .clamp(2, 1 << 20);
            (
                Arc::new(tokio::sync::Semaphore::new(connections)),
                connections,
            )
        })
        .clone()
}

/// How long a denial waits to be taken by the run it ended.
const DENIAL_KEPT: std::time::Duration = std::time::Duration::from_secs(600);

/// The session's proxy host.
pub(crate) struct ProxyHost {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    networks: SandboxNetworkFactory,
    on_denial: OnNetworkDenial,
    /// Sandboxes ended for a denied connection: the pids, in this process's
    /// namespace, of the sandbox's first process and its ancestors when it
    /// linked, and the message for the run.
    denials: Mutex<Vec<Denial>>,
    ended: CancellationToken,
    /// Every connection being served, each until its record is written.
    connections: TaskTracker,
}

impl ProxyHost {
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        networks: SandboxNetworkFactory,
        on_denial: OnNetworkDenial,
    ) -> ProxyHost {
        ProxyHost {
            inner: Arc::new(Inner {
                runtime,
                networks,
                on_denial,
                denials: Mutex::default(),
                ended: CancellationToken::new(),
                connections: TaskTracker::new(),
            }),
        }
    }

    /// Stops serving every sandbox (the session ended).
    pub(crate) fn shut_down(&self) {
        self.inner.ended.cancel();
    }

    /// Waits, after [`ProxyHost::shut_down`], until every connection has
    /// ended and been recorded, for [`RECORDS_GRACE`] at most: the
    /// session's process may exit next, and a connection's record with it
    /// (probe 211: a session's end lost some of its allowed connections'
    /// closes). The session's end ends them at once: relays, and
    /// connections being decided or made.
    pub(crate) async fn connections_recorded(&self) {
        let connections = &self.inner.connections;
        connections.close();
        if tokio::time::timeout(RECORDS_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = connections.len(),
                "the session ended with connections whose records are not written yet"
            );
        }
    }

    /// Why the sandbox started by process `pid` (a shell's bubblewrap)
    /// since `started` was ended for a denied connection, if it was. The
    /// time tells a later process that got the same pid from the one the
    /// denial was about.
    pub(crate) fn take_denial(&self, pid: u32, started: std::time::Instant) -> Option<String> {
        let mut denials = self
            .inner
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let found = denials
            .iter()
            .position(|denial| denial.at >= started && denial.pids.contains(&pid))?;
        Some(denials.swap_remove(found).message)
    }
}

impl Drop for ProxyHost {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl NetworkBridge for ProxyHost {
    fn open(&self, policy: &ResolvedPolicy, origin: SandboxOrigin) -> io::Result<OwnedFd> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        set_nonblocking(&ours)?;
        let (decider, request_id) = (self.inner.networks)(policy, origin);
        // An escalation's sandbox is not the asking shell's descendant:
        // the requester's ancestry ties a denial that ends it to the
        // command that asked (probe 162: killed, and nothing said why).
        let requester = match origin {
            SandboxOrigin::Escalation { requester, .. } => {
                u32::try_from(requester).ok().map(ancestry_of)
            }
            SandboxOrigin::Shell => None,
        };
        let inner = self.inner.clone();
        // Tracked with the connections: it may be between an accept and
        // the connection's task when the session's end is waited for.
        let serving = async move {
            let serving = serve_sandbox(&inner, ours, decider, request_id, requester);
            if let Err(error) = serving.await {
                tracing::warn!(%error, ?origin, "a limited sandbox's proxy link failed");
            }
        };
        self.inner
            .connections
            .spawn_on(serving, &self.inner.runtime);
        Ok(theirs)
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// One sandbox: its listener, until the sandbox or the session ends.
async fn serve_sandbox(
    inner: &Arc<Inner>,
    link: OwnedFd,
    decider: Arc<NetworkDecider>,
    request_id: Option<u64>,
    requester: Option<Vec<(u32, Option<u64>)>>,
) -> io::Result<()> {
    // The session's end waits for this task: it does not wait for a
    // sandbox that has yet to link (one the end kills only after).
    let linked = tokio::select! {
        biased;
        () = inner.ended.cancelled() => return Ok(()),
        linked = receive_listener(link) => linked?,
    };
    let Some((listener, pidfd)) = linked else {
        // The sandbox never linked (it failed to start, or was not started).
        return Ok(());
    };
    let mut ancestors = ancestors_of(&pidfd);
    ancestors.extend(requester.into_iter().flatten());
    let sandbox = Arc::new(Sandbox { ancestors, pidfd });
    let ended = crate::sys::watch_owned(sandbox.pidfd.try_clone()?)?;
    // Its relays outlive it by [`RELAYS_GRACE`] at most: an upstream that
    // never closes must not hold them (and this process's descriptors)
    // after it.
    // The session's end ends them at once.
    let relays_end = inner.ended.child_token();
    let _ending = EndRelays(relays_end.clone());
    let (in_process, process_bound) = process_connections();
    let own_bound = CONNECTIONS_PER_SANDBOX.min(process_bound / 2);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(own_bound));
    // The process's last quarter is kept for sandboxes that hold none:
    // with half each, two sandboxes more than the first took the rest, and
    // every other sandbox's connections were closed unread (probe 241).
    let kept_for_first = process_bound / 4;
    loop {
        // Ends first: after them, no connection is taken.
        let permit = tokio::select! {
            biased;
            () = inner.ended.cancelled() => return Ok(()),
            _ = ended.readable() => return Ok(()),
            permit = in_flight.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { return Ok(()) };
        tokio::select! {
            biased;
            () = inner.ended.cancelled() => return Ok(()),
            // A pidfd turns readable when its process has exited.
            _ = ended.readable() => return Ok(()),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        stream
                    }
                    Err(error) => {
                        // Out of descriptors, most likely: let some close.
                        tracing::warn!(%error, "cannot accept a sandbox's connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (inner, sandbox) = (inner.clone(), sandbox.clone());
                let connection = decider.connection(request_id);
                let relays_end = relays_end.clone();
                // Taken once there is a connection, so that a sandbox
                // waiting for one holds none; none left, the connection is
                // closed at once rather than held waiting, a descriptor
                // the bound does not count (reviews).
                // This connection's own permit is the one taken.
                let holds_none = in_flight.available_permits() + 1 == own_bound;
                let process_permit = if holds_none || in_process.available_permits() > kept_for_first {
                    in_process.clone().try_acquire_owned().ok()
                } else {
                    None
                };
                let Some(process_permit) = process_permit else {
                    // Unread, so refused as a request that could not be
                    // read is: on the record (probe 180: nothing said it).
                    let reason = "this process's relays are all in use (ulimit -n bounds them)";
                    tracing::warn!("a sandbox's connection was closed: {reason}");
                    connection.closed(&ConnectionReport {
                        request: None,
                        outcome: ConnectionOutcome::Refused {
                            reason: reason.to_owned(),
                        },
                    });
                    continue;
                };
                let connections = inner.connections.clone();
                connections.spawn(async move {
                    serve_one(&inner, stream, connection, &sandbox, &relays_end).await;
                    drop((permit, process_permit));
                });
            }
        }
    }
}

/// How long a session's end waits for its connections' records: ending
/// them takes a shutdown of their sockets and one record each.
const RECORDS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a sandbox's relays may go on after it has ended: long enough
/// to pass on what its last writes left in the sockets.
const RELAYS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends a sandbox's relays [`RELAYS_GRACE`] after it stops being served
/// (they end with the session anyway: the token is the session's child).
struct EndRelays(CancellationToken);

impl Drop for EndRelays {
    fn drop(&mut self) {
        let relays = self.0.clone();
        // Dropped outside a runtime (the runtime itself going away): its
        // tasks, relays included, go with it.
        if let (false, Ok(runtime)) = (relays.is_cancelled(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(RELAYS_GRACE) => relays.cancel(),
                    () = relays.cancelled() => {}
                }
            });
        }
    }
}

/// The sandbox's first process: the helper, which became the command or,
/// when calls are supervised, the command's supervisor. Either way its end
/// is the sandbox's.
struct Sandbox {
    pidfd: OwnedFd,
    /// Its pid and its ancestors' in this process's namespace, with when
    /// each started, for [`ProxyHost::take_denial`].
    ancestors: Vec<(u32, Option<u64>)>,
}

impl Sandbox {
    /// The ancestors that are still the processes they were when the
    /// sandbox linked: a pid of one that ended since may be another
    /// command's now (review 35), which must not take this denial.
    fn still_running(&self) -> Vec<u32> {
        self.ancestors
            .iter()
            .filter(|(pid, started)| started.is_some() && start_time(*pid) == *started)
            .map(|(pid, _)| *pid)
            .collect()
    }
}

async fn serve_one(
    inner: &Inner,
    stream: tokio::net::TcpStream,
    connection: NetworkConnection,
    sandbox: &Sandbox,
    relays_end: &CancellationToken,
) {
    let deciding = EndingOnLateDenial {
        connection: &connection,
        inner,
        sandbox,
        relays_end,
    };
    let report = serve_connection(stream, &deciding).await;
    connection.closed(&report);
}

/// The connection's decider, which ends the sandbox on a late denial
/// before the proxy answers the client: nothing of the command runs on
/// after hearing it was refused.
struct EndingOnLateDenial<'a> {
    connection: &'a NetworkConnection,
    inner: &'a Inner,
    sandbox: &'a Sandbox,
    relays_end: &'a CancellationToken,
}

impl Decider for EndingOnLateDenial<'_> {
    fn decide<'a>(
        &'a self,
        request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async move {
            let verdict = self.connection.decide(request).await;
            if let Some(NetworkDecision {
                verdict: Verdict::Deny { reason },
                asked_person: true,
                ..
            }) = self.connection.decision()
            {
                if self.inner.on_denial == OnNetworkDenial::Cancel {
                    let message = format!(
                        "network denied: {}:{} ({reason})",
                        request.destination, request.port
                    );
                    end_sandbox(self.inner, self.sandbox, message).await;
                }
            }
            verdict
        })
    }

    fn relay_ends(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.relays_end.cancelled())
    }

    fn refuses_address(
        &self,
        request: &ConnectRequest,
        address: std::net::IpAddr,
    ) -> Option<String> {
        self.connection.refuses_address(request, address)
    }
}

/// Kills the sandbox's first process, which ends its pid namespace and
/// every process in it, and keeps `message` for the run that started it.
/// Records why the sandbox ends, and ends it: the connection's refusal is
/// answered only once every process in it is gone (its init reaps them
/// all before it can be reaped itself), so the command cannot go on for a
/// moment after the answer (a test saw its next line printed).
async fn end_sandbox(inner: &Inner, sandbox: &Sandbox, message: String) {
    {
        let mut denials = inner.denials.lock().unwrap_or_else(PoisonError::into_inner);
        // Denials no run took (long-lived processes, escalations) go.
        denials.retain(|denial| denial.at.elapsed() < DENIAL_KEPT);
        denials.push(Denial {
            pids: sandbox.still_running(),
            at: std::time::Instant::now(),
            message,
        });
    }
    if let Err(error) =
        rustix::process::pidfd_send_signal(&sandbox.pidfd, rustix::process::Signal::KILL)
    {
        tracing::warn!(%error, "cannot end a sandbox whose connection was denied");
        return;
    }
    let ended = sandbox
        .pidfd
        .try_clone()
        .and_then(crate::sys::watch_owned)
        .map(|watched| async move {
            let _ = watched.readable().await;
        });
    match ended {
        Ok(ended) => {
            if tokio::time::timeout(SANDBOX_END_WAIT, ended).await.is_err() {
                tracing::warn!("a sandbox whose connection was denied took over 2 s to end");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot wait for a denied sandbox's end"),
    }
}

/// How long a late denial waits for its sandbox to end before it answers.
const SANDBOX_END_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for the helper's message: the listener and the helper's pidfd.
/// `None` when the link closed without one.
async fn receive_listener(link: OwnedFd) -> io::Result<Option<(tokio::net::TcpListener, OwnedFd)>> {
    let link = crate::sys::watch_owned(link)?;
    let mut buffer = [0u8; 64];
    let received = loop {
        let mut ready = link.readable().await?;
        match ready.try_io(|link| recv_with_fds(link.get_ref().as_fd(), &mut buffer)) {
            Ok(received) => break received?,
            Err(_would_block) => continue,
        }
    };
    if received.len == 0 && received.fds.is_empty() {
        return Ok(None);
    }
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if buffer.get(..received.len) != Some(LISTENER_MESSAGE) || received.truncated {
        return Err(invalid(
            "the sandbox sent something other than its listener",
        ));
    }
    let [listener, pidfd]: [OwnedFd; 2] = received
        .fds
        .try_into()
        .map_err(|_| invalid("the sandbox's listener came without its pidfd"))?;
    if !getsockopt(&listener, sockopt::AcceptConn)? {
        return Err(invalid("the sandbox sent a socket that is not listening"));
    }
    let listener = StdTcpListener::from(listener);
    listener.set_nonblocking(true)?;
    Ok(Some((tokio::net::TcpListener::from_std(listener)?, pidfd)))
}

/// The pid a pidfd refers to, and its parent's and grandparent's (for the
/// shell: the sandbox's init, which is the helper, and bubblewrap), read
/// while they are alive.
fn ancestors_of(pidfd: &OwnedFd) -> Vec<(u32, Option<u64>)> {
    let first = status_field(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()), "Pid:");
    chain_from(first, 4)
}

/// `pid` and its ancestors, up to the command's shell's sandbox and the
/// session's process: an escalation's requester runs in that sandbox,
/// below a few shells at most.
fn ancestry_of(pid: u32) -> Vec<(u32, Option<u64>)> {
    // Not this process and above: every sandbox of the session has them.
    let mut chain = chain_from(Some(pid), 64);
    if let Some(own) = chain.iter().position(|(pid, _)| *pid == std::process::id()) {
        chain.truncate(own);
    }
    chain
}

/// `first` and its parents, `most` of them at most, short of init, each
/// with when it started.
fn chain_from(first: Option<u32>, most: usize) -> Vec<(u32, Option<u64>)> {
    let mut pids = Vec::new();
    let mut next = first;
    while let Some(pid) = next.filter(|pid| *pid > 1 && pids.len() < most) {
        pids.push((pid, start_time(pid)));
        next = status_field(format!("/proc/{pid}/status"), "PPid:");
    }
    pids
}

/// When process `pid` started (`/proc/PID/stat`'s 22nd field, in clock
/// ticks since boot): with the pid, it names one process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's name, which may hold blanks and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A number from a `/proc` status-like file's line that starts `prefix`.
fn status_field(path: String, prefix: &str) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review 35: a denial was tied to bare pids, which an ended process
    /// leaves to the next. A pid counts only while its start time is the
    /// one seen when the sandbox linked.
    #[test]
    fn an_ancestor_that_ended_is_not_kept() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap_or_else(|error| panic!("sleep: {error}"));
        let own = std::process::id();
        let started = start_time(own);
        assert!(started.is_some());
        assert_eq!(start_time(own), started, "a start time is stable");
        let sandbox = |ancestors| Sandbox {
            pidfd: rustix::process::pidfd_open(
                rustix::process::Pid::from_raw(own as i32).unwrap_or_else(|| panic!("pid")),
                rustix::process::PidfdFlags::empty(),
            )
            .unwrap_or_else(|error| panic!("pidfd_open: {error}")),
            ancestors,
        };
        let alive = sandbox(vec![(child.id(), start_time(child.id())), (own, started)]);
        assert_eq!(alive.still_running(), [child.id(), own]);
        child.kill().unwrap_or_else(|error| panic!("kill: {error}"));
        child.wait().unwrap_or_else(|error| panic!("wait: {error}"));
        // Gone (or another process by that pid): not kept.
        assert_eq!(alive.still_running(), [own]);
        // Another process's start time under the same pid: not kept.
        let other = sandbox(vec![(own, started.map(|time| time + 1))]);
        assert!(other.still_running().is_empty());
    }
}
