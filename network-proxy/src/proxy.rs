//! The proxy: HTTP (absolute-form requests and `CONNECT`) and SOCKS5
//! `CONNECT`, on whatever stream the sandbox's bridge hands over (SOCKS4
//! and SOCKS4a are refused at once). Every connection is decided before a
//! byte leaves, and the address it goes to is the one that was checked.

use futures_util::FutureExt as _;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::address::{classify_from_here, AddressClass, NonPublicRange};
use crate::host::Destination;

/// How the client asked: the protocol names of `network_rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// An absolute-form HTTP request, forwarded by the proxy.
    Http,
    /// An HTTP `CONNECT` tunnel (what clients use for TLS).
    Https,
    /// A SOCKS5 `CONNECT`.
    Socks5Tcp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Socks5Tcp => "socks5-tcp",
        })
    }
}

/// One connection a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectRequest {
    pub destination: Destination,
    pub port: u16,
    pub protocol: Protocol,
}

/// Whether an allowed destination may still end at a non-public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonPublicAddresses {
    /// Refused: the destination was allowed by a wildcard, a rule or a
    /// person who saw the name, not the address it resolves to.
    Refuse,
    /// Permitted: a list entry names this destination exactly.
    Permit,
}

/// What the decider says about a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(NonPublicAddresses),
    Deny { reason: String },
}

/// Decides connections: the profile's lists, the rules, the approver.
pub trait Decider: Send + Sync {
    fn decide<'a>(
        &'a self,
        request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

    /// Resolves when a connection must end whatever its ends do (its
    /// client's sandbox has gone, or its session): an upstream that never
    /// closes would otherwise hold the relay, and its descriptors, for
    /// good. The relay then shuts both sockets and reports what it
    /// relayed; a decision still waiting is withdrawn (its future
    /// dropped), and a connection still being made is given up, each
    /// reported as ended so. The default never resolves.
    fn relay_ends(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }

    /// Why `address`, one that `request`'s allowed name resolved to, must
    /// not be reached all the same: a rule or list entry that names the
    /// address itself. No default: a decider that wraps another must pass
    /// the question on (one that did not let names reach what the rules
    /// shut, a probe found), and one that refuses none says so.
    fn refuses_address(&self, request: &ConnectRequest, address: IpAddr) -> Option<String>;
}

/// How one connection ended, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionReport {
    /// `None` when the client's request could not be read.
    pub request: Option<ConnectRequest>,
    pub outcome: ConnectionOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionOutcome {
    /// Connected to `address`; the byte counts are the client's payload in
    /// each direction once the connection closed.
    Relayed {
        address: SocketAddr,
        bytes_sent: u64,
        bytes_received: u64,
    },
    Denied {
        reason: String,
    },
    /// Allowed, but no checked address could be reached.
    Unreachable {
        reason: String,
    },
    /// The client sent something the proxy does not serve.
    Refused {
        reason: String,
    },
}

/// The longest HTTP request head the proxy reads.
const MAX_HEAD: usize = 32 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Each direction's relay buffer: large enough that a bulk download costs
/// few system calls per megabyte (tokio's default is 8 KiB).
const RELAY_BUFFER: usize = 128 * 1024;

/// Serves one client connection to its end and says how it went.
pub async fn serve_connection<S>(client: S, decider: &dyn Decider) -> ConnectionReport
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut client = tokio::io::BufReader::new(client);
    let first = match read_in_time(decider, peek_byte(&mut client), "no request").await {
        Ok(Ok(Some(byte))) => byte,
        Ok(Ok(None)) => return refused(None, "the client sent nothing"),
        Ok(Err(error)) => return refused(None, &format!("cannot read the request: {error}")),
        Err(reason) => return refused(None, &reason),
    };
    match first {
        SOCKS_VERSION => serve_socks(client, decider).await,
        SOCKS4_VERSION => refuse_socks4(client).await,
        _ => serve_http(client, decider).await,
    }
}

/// What `reading` reads, unless [`REQUEST_TIMEOUT`] passes first ("the
/// client sent `missing` in time") or the connection must end
/// ([`Decider::relay_ends`]: a session's end waits for its connections'
/// records, and a client that sends nothing must not hold it).
async fn read_in_time<T>(
    decider: &dyn Decider,
    reading: impl Future<Output = T>,
    missing: &str,
) -> Result<T, String> {
    tokio::select! {
        biased;
        () = decider.relay_ends() => Err(ENDED_BEFORE.replace("{what}", "its request was read")),
        read = tokio::time::timeout(REQUEST_TIMEOUT, reading) => {
            read.map_err(|_| format!("the client sent {missing} in time"))
        }
    }
}

/// Returns once the client has closed its end with nothing more sent;
/// never when it has sent more (a pipelined request, a body), which is
/// read in its turn.
async fn hung_up<S: AsyncRead + Unpin>(client: &mut tokio::io::BufReader<S>) {
    use tokio::io::AsyncBufReadExt;
    match client.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

async fn peek_byte<S: AsyncRead + Unpin>(
    client: &mut tokio::io::BufReader<S>,
) -> io::Result<Option<u8>> {
    use tokio::io::AsyncBufReadExt;
    Ok(client.fill_buf().await?.first().copied())
}

fn refused(request: Option<ConnectRequest>, reason: &str) -> ConnectionReport {
    ConnectionReport {
        request,
        outcome: ConnectionOutcome::Refused {
            reason: reason.to_owned(),
        },
    }
}

/// Decides `request`, then connects to the first of its addresses that the
/// verdict permits. The address connected to is the one checked: a name is
/// resolved once, here, so an answer that changes between the decision and
/// the connection cannot slip a non-public address through.
/// A client that hangs up while the decision waits (for a person) ends
/// it: the question is withdrawn (the decider's future dropped), and an
/// answer that comes later decides and caches nothing. One that sent more
/// than its request first (a body) is not watched.
async fn decide_and_connect<S: AsyncRead + Unpin>(
    request: &ConnectRequest,
    decider: &dyn Decider,
    client: &mut tokio::io::BufReader<S>,
) -> Result<(TcpStream, SocketAddr), ConnectionOutcome> {
    let mut deciding = std::pin::pin!(decider.decide(request));
    // Most decisions are made at the first poll: only one that waits (for
    // a person) watches the client, which then must not half-close.
    let verdict = match deciding.as_mut().now_or_never() {
        Some(verdict) => verdict,
        None => tokio::select! {
            biased;
            verdict = &mut deciding => verdict,
            () = hung_up(client) => {
                return Err(ConnectionOutcome::Refused {
                    reason: "the client went away before the decision".to_owned(),
                })
            }
            () = decider.relay_ends() => {
                return Err(ConnectionOutcome::Refused {
                    reason: ENDED_BEFORE.replace("{what}", "the decision"),
                })
            }
        },
    };
    let non_public = match verdict {
        Verdict::Allow(non_public) => non_public,
        Verdict::Deny { reason } => return Err(ConnectionOutcome::Denied { reason }),
    };
    // An upstream that does not answer (a full backlog) holds the
    // connection up to `CONNECT_TIMEOUT`: its end, and its record, must
    // not wait that long after its sandbox's (probe 211: the session's
    // process exited first, and the record was lost).
    tokio::select! {
        biased;
        connected = connect_allowed(request, non_public, decider) => connected,
        () = decider.relay_ends() => Err(ConnectionOutcome::Unreachable {
            reason: ENDED_BEFORE.replace("{what}", "a connection was made"),
        }),
    }
}

/// Why a connection ended on [`Decider::relay_ends`] before `{what}`.
const ENDED_BEFORE: &str = "its sandbox or its session ended before {what}";

/// Connects to the first of `request`'s addresses that `non_public`
/// and the decider permit.
async fn connect_allowed(
    request: &ConnectRequest,
    non_public: NonPublicAddresses,
    decider: &dyn Decider,
) -> Result<(TcpStream, SocketAddr), ConnectionOutcome> {
    let addresses: Vec<SocketAddr> = match &request.destination {
        Destination::Address(address) => vec![SocketAddr::new(*address, request.port)],
        Destination::Name(name) => {
            match crate::resolve::resolve(name.as_str(), request.port).await {
                Ok(found) => found,
                Err(error) => {
                    return Err(ConnectionOutcome::Unreachable {
                        reason: format!("cannot resolve {name}: {error}"),
                    })
                }
            }
        }
    };
    let mut last_problem = format!("{} resolves to no address", request.destination);
    let mut refused_ranges = Vec::new();
    let mut refused_by_name = Vec::new();
    for address in addresses {
        // A name may resolve to `0.0.0.0`: judged, and reached, as the
        // loopback address it stands for.
        let address = SocketAddr::new(crate::host::reached(address.ip()), address.port());
        if non_public == NonPublicAddresses::Refuse {
            if let AddressClass::NonPublic(range) = classify_from_here(address.ip()) {
                refused_ranges.push(format!("{} is {range}", address.ip()));
                continue;
            }
        }
        // A rule or entry on the address holds for every name of it.
        if let Destination::Name(_) = &request.destination {
            if let Some(reason) = decider.refuses_address(request, address.ip()) {
                refused_by_name.push(reason);
                continue;
            }
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                // An address this machine took after the check above: the
                // kernel connected it to itself.
                let reached = stream.peer_addr().unwrap_or(address);
                let to_itself = stream
                    .local_addr()
                    .is_ok_and(|local| local.ip() == reached.ip());
                if to_itself && non_public == NonPublicAddresses::Refuse {
                    let range = NonPublicRange::ThisMachine;
                    refused_ranges.push(format!("{} is {range}", address.ip()));
                    continue;
                }
                // Heads and small replies go out at once, not after a
                // delayed acknowledgement.
                let _ = stream.set_nodelay(true);
                // Recorded as the peer that answered: `0.0.0.0`, allowed,
                // is this machine's loopback.
                return Ok((stream, reached));
            }
            Ok(Err(error)) => last_problem = format!("cannot connect to {address}: {error}"),
            Err(_) => last_problem = format!("connecting to {address} timed out"),
        }
    }
    if !refused_by_name.is_empty() {
        return Err(ConnectionOutcome::Denied {
            reason: format!(
                "{} resolves to {}",
                request.destination,
                refused_by_name.join("; ")
            ),
        });
    }
    if !refused_ranges.is_empty() {
        return Err(ConnectionOutcome::Denied {
            reason: format!(
                "{} is not public ({}); only a list entry naming it exactly allows that",
                request.destination,
                refused_ranges.join(", ")
            ),
        });
    }
    Err(ConnectionOutcome::Unreachable {
        reason: last_problem,
    })
}

/// Relays `client` and `upstream` both ways until both have ended, or
/// the decider says the relay ends ([`Decider::relay_ends`]). What the
/// client sent past its request (a TLS hello right behind `CONNECT`) goes
/// first.
async fn relay<S>(
    client: tokio::io::BufReader<S>,
    mut upstream: TcpStream,
    request: ConnectRequest,
    address: SocketAddr,
    decider: &dyn Decider,
) -> ConnectionReport
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let ahead = client.buffer().len();
    #[cfg(target_os = "linux")]
    let sockets = {
        use std::os::fd::AsRawFd;
        let client = (client.get_ref() as &dyn std::any::Any)
            .downcast_ref::<TcpStream>()
            .map(AsRawFd::as_raw_fd);
        (client, upstream.as_raw_fd())
    };
    let counts = RelayCounts::default();
    let relayed = async {
        if ahead > 0 {
            upstream.write_all(client.buffer()).await?;
            counts.sent.fetch_add(ahead as u64, Ordering::Relaxed);
        }
        let mut client = client.into_inner();
        #[cfg(target_os = "linux")]
        if let Some(tcp) = (&mut client as &mut dyn std::any::Any).downcast_mut::<TcpStream>() {
            return crate::splice::relay(tcp, &upstream, &counts).await;
        }
        tokio::io::copy_bidirectional_with_sizes(
            &mut Counted {
                stream: &mut client,
                written: &counts.received,
            },
            &mut Counted {
                stream: &mut upstream,
                written: &counts.sent,
            },
            RELAY_BUFFER,
            RELAY_BUFFER,
        )
        .await
        .map(|_| ())
    };
    tokio::pin!(relayed);
    // What went through is counted as it goes, and stands however the
    // relay ends (a reset ends it with an error).
    tokio::select! {
        _ = &mut relayed => {}
        () = decider.relay_ends() => {
            // Both ends shut: each direction reads its end and the relay
            // finishes with its counts. The sockets live in `relayed`,
            // still held here.
            #[cfg(target_os = "linux")]
            {
                use nix::sys::socket::{shutdown, Shutdown};
                let (client, upstream) = sockets;
                let _ = shutdown(upstream, Shutdown::Both);
                if let Some(client) = client {
                    let _ = shutdown(client, Shutdown::Both);
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), relayed).await;
        }
    };
    ConnectionReport {
        request: Some(request),
        outcome: ConnectionOutcome::Relayed {
            address,
            bytes_sent: counts.sent.load(Ordering::Relaxed),
            bytes_received: counts.received.load(Ordering::Relaxed),
        },
    }
}

/// The bytes a relay has delivered each way so far.
#[derive(Default)]
pub(crate) struct RelayCounts {
    /// To the destination, from the client.
    pub(crate) sent: AtomicU64,
    /// To the client, from the destination.
    pub(crate) received: AtomicU64,
}

/// A stream whose writes are counted into `written`.
struct Counted<'a, S> {
    stream: &'a mut S,
    written: &'a AtomicU64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream).poll_read(context, buffer)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut *self.stream).poll_write(context, buffer);
        if let std::task::Poll::Ready(Ok(count)) = written {
            self.written.fetch_add(count as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream).poll_shutdown(context)
    }
}

// HTTP.

async fn serve_http<S>(
    mut client: tokio::io::BufReader<S>,
    decider: &dyn Decider,
) -> ConnectionReport
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let head = match read_in_time(decider, read_head(&mut client), "no complete request").await {
        Ok(Ok(head)) => head,
        Ok(Err(reason)) => {
            let _ = respond(&mut client, 400, "Bad Request", &reason).await;
            return refused(None, &reason);
        }
        Err(reason) => return refused(None, &reason),
    };
    let parsed = match parse_http_request(&head) {
        Ok(parsed) => parsed,
        Err(reason) => {
            let _ = respond(&mut client, 400, "Bad Request", &reason).await;
            return refused(None, &reason);
        }
    };
    let upstream = match decide_and_connect(&parsed.request, decider, &mut client).await {
        Ok(upstream) => upstream,
        Err(outcome) => {
            let (code, text, what, reason) = match &outcome {
                ConnectionOutcome::Denied { reason } => {
                    (403, "Forbidden", "network denied", reason)
                }
                ConnectionOutcome::Unreachable { reason } => {
                    (502, "Bad Gateway", "unreachable", reason)
                }
                ConnectionOutcome::Refused { reason } => (400, "Bad Request", "refused", reason),
                ConnectionOutcome::Relayed { .. } => {
                    (502, "Bad Gateway", "unreachable", &String::new())
                }
            };
            let message = format!(
                "execgate: {what}: {}:{}: {reason}",
                parsed.request.destination, parsed.request.port
            );
            let _ = respond(&mut client, code, text, &message).await;
            return ConnectionReport {
                request: Some(parsed.request),
                outcome,
            };
        }
    };
    let (mut upstream, address) = upstream;
    let greeting = match &parsed.forward {
        Some(forward) => upstream.write_all(forward).await,
        None => {
            client
                .get_mut()
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
        }
    };
    if let Err(error) = greeting {
        return ConnectionReport {
            request: Some(parsed.request),
            outcome: ConnectionOutcome::Unreachable {
                reason: format!("the connection closed at once: {error}"),
            },
        };
    }
    // What the client sent after its head (a body, a TLS hello) is still in
    // the buffer: the BufReader relays it first.
    let forwarded = parsed.forward.as_ref().map_or(0, Vec::len) as u64;
    let mut report = relay(client, upstream, parsed.request, address, decider).await;
    // The head sent upstream is the client's too (its request line, its
    // headers), as rewritten.
    if let ConnectionOutcome::Relayed { bytes_sent, .. } = &mut report.outcome {
        *bytes_sent += forwarded;
    }
    report
}

/// Reads up to the blank line that ends an HTTP head.
async fn read_head<S: AsyncRead + Unpin>(
    client: &mut tokio::io::BufReader<S>,
) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut head = Vec::new();
    loop {
        let before = head.len();
        // Never more than one byte past the limit: a line without its end
        // must not grow the head in this process (outside the sandbox) for
        // as long as the client keeps sending.
        let room = (MAX_HEAD + 1 - head.len()) as u64;
        let read = (&mut *client)
            .take(room)
            .read_until(b'\n', &mut head)
            .await
            .map_err(|error| format!("cannot read the request: {error}"))?;
        if read == 0 {
            return Err("the client closed the connection inside its request".into());
        }
        if head.len() > MAX_HEAD {
            return Err(format!("the request head is longer than {MAX_HEAD} bytes"));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(head);
        }
    }
}

struct HttpRequest {
    request: ConnectRequest,
    /// The head to send upstream for a forwarded request; `None` for a
    /// `CONNECT` tunnel.
    forward: Option<Vec<u8>>,
}

/// Headers that belong to the hop between client and proxy.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

fn parse_http_request(head: &[u8]) -> Result<HttpRequest, String> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(error) => return Err(format!("the request is not HTTP: {error}")),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err("the request has no method or target".into());
    };
    if method == "CONNECT" {
        let (destination, port) =
            Destination::parse_authority(target, None).map_err(|error| error.to_string())?;
        return Ok(HttpRequest {
            request: ConnectRequest {
                destination,
                port,
                protocol: Protocol::Https,
            },
            forward: None,
        });
    }
    let Some(rest) = strip_prefix_ignore_case(target, "http://") else {
        return Err(format!(
            "`{}` is not an absolute http:// URL; use CONNECT for TLS and other protocols",
            crate::host::shown(target)
        ));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    // Credentials in the URL are the client's business with the origin; the
    // decision is on the host after them.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (destination, port) =
        Destination::parse_authority(authority, Some(80)).map_err(|error| error.to_string())?;
    // The decided authority names the origin's virtual host too: a `Host`
    // of the client's choosing could reach another site behind the same
    // address (a CDN's), which nothing decided.
    // In the client's version: a 1.0 client cannot read what an origin may
    // answer a 1.1 request with (a chunked body).
    let version = match request.version {
        Some(0) => "1.0",
        _ => "1.1",
    };
    let mut forward =
        format!("{method} {path} HTTP/{version}\r\nHost: {authority}\r\n").into_bytes();
    // The headers a `Connection` header names are this hop's too (RFC 9110
    // 7.6.1), meant for the proxy and not the origin (probe 180).
    let named_hop_headers: Vec<String> = request
        .headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("connection"))
        .flat_map(|header| header.value.split(|&byte| byte == b','))
        .map(|name| String::from_utf8_lossy(name.trim_ascii()).to_ascii_lowercase())
        .collect();
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        if HOP_HEADERS.contains(&name.as_str())
            || name == "host"
            || named_hop_headers.contains(&name)
        {
            continue;
        }
        forward.extend_from_slice(header.name.as_bytes());
        forward.extend_from_slice(b": ");
        forward.extend_from_slice(header.value);
        forward.extend_from_slice(b"\r\n");
    }
    // One request per upstream connection: the connection was decided for
    // this destination, and closing after it keeps the relay a plain copy.
    forward.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(HttpRequest {
        request: ConnectRequest {
            destination,
            port,
            protocol: Protocol::Http,
        },
        forward: Some(forward),
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut tokio::io::BufReader<S>,
    code: u16,
    text: &str,
    message: &str,
) -> io::Result<()> {
    let body = format!("{message}\n");
    let response = format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let stream = client.get_mut();
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

// SOCKS5 (RFC 1928), without authentication: the bridge is reachable only
// from inside the sandbox it serves.

const SOCKS_VERSION: u8 = 5;
const SOCKS_NO_AUTHENTICATION: u8 = 0;
const SOCKS_NO_ACCEPTABLE_METHOD: u8 = 0xff;
const SOCKS_CONNECT: u8 = 1;
const SOCKS_UDP_ASSOCIATE: u8 = 3;
const REPLY_SUCCEEDED: u8 = 0;
const REPLY_GENERAL_FAILURE: u8 = 1;
const REPLY_NOT_ALLOWED: u8 = 2;
const REPLY_HOST_UNREACHABLE: u8 = 4;
const REPLY_COMMAND_NOT_SUPPORTED: u8 = 7;
const REPLY_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;

async fn serve_socks<S>(
    mut client: tokio::io::BufReader<S>,
    decider: &dyn Decider,
) -> ConnectionReport
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let reading = read_socks_request(&mut client);
    let request = match read_in_time(decider, reading, "no complete SOCKS request").await {
        Ok(Ok(request)) => request,
        Ok(Err((reply, reason))) => {
            if let Some(reply) = reply {
                let _ = socks_reply(&mut client, reply).await;
            }
            return refused(None, &reason);
        }
        Err(reason) => return refused(None, &reason),
    };
    match decide_and_connect(&request, decider, &mut client).await {
        Ok((upstream, address)) => {
            if let Err(error) = socks_reply(&mut client, REPLY_SUCCEEDED).await {
                return ConnectionReport {
                    request: Some(request),
                    outcome: ConnectionOutcome::Unreachable {
                        reason: format!("the client went away: {error}"),
                    },
                };
            }
            relay(client, upstream, request, address, decider).await
        }
        Err(outcome) => {
            let reply = match outcome {
                ConnectionOutcome::Denied { .. } => REPLY_NOT_ALLOWED,
                ConnectionOutcome::Unreachable { .. } => REPLY_HOST_UNREACHABLE,
                ConnectionOutcome::Refused { .. } | ConnectionOutcome::Relayed { .. } => {
                    REPLY_GENERAL_FAILURE
                }
            };
            let _ = socks_reply(&mut client, reply).await;
            ConnectionReport {
                request: Some(request),
                outcome,
            }
        }
    }
}

type SocksFailure = (Option<u8>, String);

async fn read_socks_request<S>(
    client: &mut tokio::io::BufReader<S>,
) -> Result<ConnectRequest, SocksFailure>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let io = |error: io::Error| (None, format!("cannot read the SOCKS request: {error}"));
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await.map_err(io)?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    client.read_exact(&mut methods).await.map_err(io)?;
    if !methods.contains(&SOCKS_NO_AUTHENTICATION) {
        let _ = client
            .get_mut()
            .write_all(&[SOCKS_VERSION, SOCKS_NO_ACCEPTABLE_METHOD])
            .await;
        return Err((
            None,
            "the SOCKS client offers no method without authentication".into(),
        ));
    }
    client
        .get_mut()
        .write_all(&[SOCKS_VERSION, SOCKS_NO_AUTHENTICATION])
        .await
        .map_err(io)?;
    let mut header = [0u8; 4];
    client.read_exact(&mut header).await.map_err(io)?;
    let [version, command, _reserved, address_type] = header;
    if version != SOCKS_VERSION {
        return Err((
            Some(REPLY_GENERAL_FAILURE),
            format!("SOCKS version {version} is not 5"),
        ));
    }
    let destination = match address_type {
        1 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets).await.map_err(io)?;
            Destination::address(IpAddr::from(octets))
        }
        4 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets).await.map_err(io)?;
            Destination::address(IpAddr::from(octets))
        }
        3 => {
            let mut length = [0u8; 1];
            client.read_exact(&mut length).await.map_err(io)?;
            let mut name = vec![0u8; usize::from(length[0])];
            client.read_exact(&mut name).await.map_err(io)?;
            let name = String::from_utf8(name).map_err(|_| {
                (
                    Some(REPLY_GENERAL_FAILURE),
                    "the SOCKS host name is not UTF-8".to_owned(),
                )
            })?;
            Destination::parse(&name)
                .map_err(|error| (Some(REPLY_GENERAL_FAILURE), error.to_string()))?
        }
        other => {
            return Err((
                Some(REPLY_ADDRESS_TYPE_NOT_SUPPORTED),
                format!("SOCKS address type {other} is not supported"),
            ))
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await.map_err(io)?;
    let port = u16::from_be_bytes(port);
    match command {
        SOCKS_CONNECT if port != 0 => Ok(ConnectRequest {
            destination,
            port,
            protocol: Protocol::Socks5Tcp,
        }),
        SOCKS_CONNECT => Err((
            Some(REPLY_GENERAL_FAILURE),
            "port 0 is no destination".into(),
        )),
        SOCKS_UDP_ASSOCIATE => Err((
            Some(REPLY_COMMAND_NOT_SUPPORTED),
            "SOCKS UDP ASSOCIATE is refused: a limited sandbox has TCP through the proxy only"
                .into(),
        )),
        other => Err((
            Some(REPLY_COMMAND_NOT_SUPPORTED),
            format!("SOCKS command {other} is not supported; only CONNECT is"),
        )),
    }
}

// SOCKS4 and SOCKS4a: refused at once. Read as HTTP, such a request has no
// line end, and its client would wait for an answer until it gave up.

const SOCKS4_VERSION: u8 = 4;
/// SOCKS4's "request rejected or failed".
const SOCKS4_REJECTED: u8 = 0x5b;
/// How long the request is read after the refusal: for the record, and so
/// that the close finds nothing unread (closing a socket with unread bytes
/// resets the connection, and the client may lose the refusal with it).
const SOCKS4_LINGER: Duration = Duration::from_secs(1);
/// The longest user id or SOCKS4a host name read, its NUL included.
const SOCKS4_MAX_FIELD: u64 = 256;

async fn refuse_socks4<S>(mut client: tokio::io::BufReader<S>) -> ConnectionReport
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stream = client.get_mut();
    let _ = stream
        .write_all(&[0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0])
        .await;
    let _ = stream.shutdown().await;
    let asked = match tokio::time::timeout(SOCKS4_LINGER, read_socks4_request(&mut client)).await {
        Ok(Some((destination, port))) => format!(" (the client asked for {destination}:{port})"),
        Ok(None) | Err(_) => String::new(),
    };
    refused(
        None,
        &format!(
            "SOCKS4 is not served{asked}; use SOCKS5 (ALL_PROXY) or HTTP (HTTP_PROXY, \
             HTTPS_PROXY)"
        ),
    )
}

/// The destination of a SOCKS4 or SOCKS4a request, once it has arrived
/// whole and names one the proxy can read.
async fn read_socks4_request<S: AsyncRead + Unpin>(
    client: &mut tokio::io::BufReader<S>,
) -> Option<(Destination, u16)> {
    let mut header = [0u8; 8];
    client.read_exact(&mut header).await.ok()?;
    let [_version, _command, port_high, port_low, a, b, c, d] = header;
    let _user_id = read_socks4_field(client).await?;
    // SOCKS4a: 0.0.0.x (x not 0) says a host name follows the user id.
    let destination = if [a, b, c] == [0, 0, 0] && d != 0 {
        let name = read_socks4_field(client).await?;
        Destination::parse(std::str::from_utf8(&name).ok()?).ok()?
    } else {
        Destination::address(IpAddr::from([a, b, c, d]))
    };
    Some((destination, u16::from_be_bytes([port_high, port_low])))
}

/// One NUL-terminated field, without its NUL.
async fn read_socks4_field<S: AsyncRead + Unpin>(
    client: &mut tokio::io::BufReader<S>,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncBufReadExt;
    let mut field = Vec::new();
    (&mut *client)
        .take(SOCKS4_MAX_FIELD)
        .read_until(0, &mut field)
        .await
        .ok()?;
    field.pop().filter(|last| *last == 0)?;
    Some(field)
}

async fn socks_reply<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut tokio::io::BufReader<S>,
    reply: u8,
) -> io::Result<()> {
    // The bound address is not meaningful through the bridge: all zeros.
    client
        .get_mut()
        .write_all(&[SOCKS_VERSION, reply, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
}

/// What a profile's `domains` list says about `request`, if it decides it:
/// a deny entry denies, naming the entry; an allow entry allows, and lets a
/// non-public address through only when it names the destination exactly.
pub fn list_verdict(list: &crate::DomainList, request: &ConnectRequest) -> Option<Verdict> {
    let found = list.decide(&request.destination)?;
    Some(match found.decision {
        crate::ListDecision::Deny => Verdict::Deny {
            reason: format!("the profile's domains list denies `{}`", found.pattern),
        },
        crate::ListDecision::Allow if found.is_explicit() => {
            Verdict::Allow(NonPublicAddresses::Permit)
        }
        crate::ListDecision::Allow => Verdict::Allow(NonPublicAddresses::Refuse),
    })
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
