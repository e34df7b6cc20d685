//! The proxy against real loopback servers started by each test, through an
//! in-memory client stream (the bridge's part is tested end to end).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;

use super::*;
use crate::{DomainList, ListDecision};

/// Decides with a domains list; what the list leaves open is denied.
struct ListDecider {
    list: DomainList,
    asked: Mutex<Vec<ConnectRequest>>,
}

impl ListDecider {
    fn new(entries: &[(&str, ListDecision)]) -> Arc<ListDecider> {
        Arc::new(ListDecider {
            list: DomainList::new(entries.iter().copied()).unwrap_or_else(|e| panic!("{e}")),
            asked: Mutex::new(Vec::new()),
        })
    }
}

impl Decider for ListDecider {
    fn decide<'a>(
        &'a self,
        request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        self.asked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(request.clone());
        Box::pin(async move {
            list_verdict(&self.list, request).unwrap_or(Verdict::Deny {
                reason: "no entry allows it".into(),
            })
        })
    }

    fn refuses_address(&self, _: &ConnectRequest, _: std::net::IpAddr) -> Option<String> {
        None
    }
}

/// An origin on 127.0.0.1 that records the first request head it gets and
/// answers `reply`, or echoes when `reply` is empty.
async fn origin(reply: &'static [u8]) -> (u16, Arc<Mutex<Vec<u8>>>) {
    origin_on("127.0.0.1:0", reply).await
}

/// [`origin`], listening on `address`.
async fn origin_on(address: &str, reply: &'static [u8]) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                loop {
                    let read = stream.read(&mut buffer).await.unwrap_or(0);
                    if read == 0 {
                        break;
                    }
                    if let Ok(mut seen) = record.lock() {
                        seen.extend_from_slice(&buffer[..read]);
                    }
                    if reply.is_empty() {
                        if stream.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    } else {
                        let _ = stream.write_all(reply).await;
                        break;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Starts the proxy on one end of an in-memory stream; returns the other
/// end and the report to come.
fn proxy(decider: Arc<dyn Decider>) -> (DuplexStream, tokio::task::JoinHandle<ConnectionReport>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let report = tokio::spawn(async move { serve_connection(server, decider.as_ref()).await });
    (client, report)
}

/// Long enough for a loaded machine; a proxy that relays what it should
/// have refused keeps the stream open and fails here instead of hanging.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

async fn read_to_end(client: DuplexStream) -> String {
    String::from_utf8_lossy(&read_bytes_to_end(client).await).into_owned()
}

async fn read_bytes_to_end(mut client: DuplexStream) -> Vec<u8> {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, client.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("the proxy kept the connection open: {answer:?}"))
        .unwrap_or_else(|e| panic!("{e}"));
    answer
}

async fn finished(report: tokio::task::JoinHandle<ConnectionReport>) -> ConnectionReport {
    tokio::time::timeout(PATIENCE, report)
        .await
        .unwrap_or_else(|_| panic!("the proxy did not finish the connection"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn an_absolute_form_request_is_forwarded_in_origin_form_without_proxy_headers() {
    // Without the headers only this hop reads: the proxy's, `Connection`'s
    // and those it names (probe 180: `X-Hop` reached the origin).
    let (port, seen) = origin(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
    let decider = ListDecider::new(&[("127.0.0.1", ListDecision::Allow)]);
    let (mut client, report) = proxy(decider.clone());
    let request = format!(
        "GET http://user:secret@127.0.0.1:{port}/crates/index?q=1#frag HTTP/1.1\r\n\
         Host: other-site.example\r\nProxy-Authorization: Basic eDp5\r\n\
         Proxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\n\
         X-Hop: for the proxy\r\nAccept: */*\r\n\r\n"
    );
    client
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = read_to_end(client).await;
    assert!(answer.ends_with("hello"), "{answer}");
    // The origin sees the decided authority as its virtual host, whatever
    // `Host` the client sent.
    let seen =
        String::from_utf8_lossy(&seen.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert_eq!(
        seen,
        format!("GET /crates/index?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
    );
    let report = finished(report).await;
    // The head sent upstream counts as sent (it was not counted).
    let sent = seen.len() as u64;
    assert!(
        matches!(report.outcome, ConnectionOutcome::Relayed { bytes_received, bytes_sent, .. } if bytes_received > 0 && bytes_sent == sent),
        "{report:?}"
    );
    assert_eq!(
        report
            .request
            .map(|r| (r.destination.to_string(), r.port, r.protocol)),
        Some(("127.0.0.1".to_owned(), port, Protocol::Http))
    );
}

#[tokio::test]
async fn connect_tunnels_bytes_both_ways_and_counts_them() {
    let (port, _) = origin(b"").await;
    let (mut client, report) = proxy(ListDecider::new(&[("localhost", ListDecision::Allow)]));
    let connect =
        format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\nearly");
    client
        .write_all(connect.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answer = vec![0u8; 44];
    client
        .read_exact(&mut answer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        &answer[..39],
        b"HTTP/1.1 200 Connection established\r\n\r\n"
    );
    assert_eq!(
        &answer[39..],
        b"early",
        "bytes sent after the head reach the origin"
    );
    client
        .write_all(b"ping")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut echo = [0u8; 4];
    client
        .read_exact(&mut echo)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&echo, b"ping");
    drop(client);
    let report = finished(report).await;
    assert!(
        matches!(
            report.outcome,
            ConnectionOutcome::Relayed { bytes_sent: 9, bytes_received: 9, address } if address.ip().is_loopback()
        ),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_denied_host_gets_403_with_the_reason_and_no_connection() {
    let decider = ListDecider::new(&[
        ("**.example.com", ListDecision::Allow),
        ("evil.example.com", ListDecision::Deny),
    ]);
    let (mut client, report) = proxy(decider);
    client
        .write_all(b"CONNECT EVIL.example.com.:443 HTTP/1.1\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = read_to_end(client).await;
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(
        answer.contains("execgate: network denied: evil.example.com:443: the profile's domains list denies `evil.example.com`"),
        "{answer}"
    );
    assert!(matches!(
        finished(report).await.outcome,
        ConnectionOutcome::Denied { .. }
    ));
}

#[tokio::test]
async fn non_public_addresses_need_an_entry_naming_them_exactly() {
    let (port, seen) = origin(b"").await;
    // Every spelling of loopback, with only a wildcard allowing: refused
    // before any connection. A wildcard names no address; a name it allows
    // is refused for what it resolves to.
    for (host, reason) in [
        ("127.0.0.1", "no entry allows it"),
        ("2130706433", "no entry allows it"),
        ("0x7f.1", "no entry allows it"),
        ("[::1]", "no entry allows it"),
        ("[::ffff:127.0.0.1]", "no entry allows it"),
        ("localhost", "is a loopback address"),
    ] {
        let (mut client, report) = proxy(ListDecider::new(&[("*", ListDecision::Allow)]));
        let connect = format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n");
        client
            .write_all(connect.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_to_end(client).await;
        assert!(
            answer.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{host}: {answer}"
        );
        assert!(answer.contains(reason), "{host}: {answer}");
        assert!(
            matches!(
                finished(report).await.outcome,
                ConnectionOutcome::Denied { .. }
            ),
            "{host}"
        );
    }
    assert!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).is_empty(),
        "nothing reached the origin"
    );
}

#[tokio::test]
async fn socks5_connect_by_name_is_decided_and_relayed() {
    let (port, _) = origin(b"").await;
    let decider = ListDecider::new(&[("localhost", ListDecision::Allow)]);
    let (mut client, report) = proxy(decider.clone());
    client
        .write_all(&[5, 1, 0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut choice = [0u8; 2];
    client
        .read_exact(&mut choice)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(choice, [5, 0]);
    let mut request = vec![5, 1, 0, 3, 9];
    request.extend_from_slice(b"LOCALHOST");
    request.extend_from_slice(&port.to_be_bytes());
    client
        .write_all(&request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut reply = [0u8; 10];
    client
        .read_exact(&mut reply)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply[1], 0, "succeeded");
    client
        .write_all(b"hi")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut echo = [0u8; 2];
    client
        .read_exact(&mut echo)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&echo, b"hi");
    drop(client);
    let report = finished(report).await;
    assert_eq!(
        report
            .request
            .map(|r| (r.destination.to_string(), r.protocol)),
        Some(("localhost".to_owned(), Protocol::Socks5Tcp))
    );
}

#[tokio::test]
async fn socks5_refusals_answer_with_the_protocol_reply_codes() {
    // (request after the greeting, expected reply code)
    let cases: &[(&[u8], u8)] = &[
        (
            &[5, 3, 0, 1, 127, 0, 0, 1, 0, 53],
            REPLY_COMMAND_NOT_SUPPORTED,
        ),
        (
            &[5, 2, 0, 1, 127, 0, 0, 1, 0, 80],
            REPLY_COMMAND_NOT_SUPPORTED,
        ),
        (&[5, 1, 0, 9, 0, 0], REPLY_ADDRESS_TYPE_NOT_SUPPORTED),
        (&[5, 1, 0, 1, 10, 0, 0, 1, 0, 80], REPLY_NOT_ALLOWED),
    ];
    for (request, code) in cases {
        let (mut client, report) = proxy(ListDecider::new(&[]));
        client
            .write_all(&[5, 1, 0])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .write_all(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_bytes_to_end(client).await;
        assert_eq!(answer.get(3), Some(code), "{request:?}: {answer:?}");
        let report = finished(report).await;
        assert!(
            !matches!(report.outcome, ConnectionOutcome::Relayed { .. }),
            "{report:?}"
        );
    }
}

#[tokio::test]
async fn requests_the_proxy_cannot_read_get_400() {
    let cases: &[&[u8]] = &[
        b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET https://example.com/ HTTP/1.1\r\n\r\n",
        b"CONNECT example.com HTTP/1.1\r\n\r\n",
        b"CONNECT example.com:0 HTTP/1.1\r\n\r\n",
        b"CONNECT [::1:443 HTTP/1.1\r\n\r\n",
        b"CONNECT 1.2.3.999:443 HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ];
    for request in cases {
        let decider = ListDecider::new(&[("*", ListDecision::Allow)]);
        let (mut client, report) = proxy(decider.clone());
        client
            .write_all(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_to_end(client).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{request:?}: {answer}"
        );
        assert!(matches!(
            finished(report).await.outcome,
            ConnectionOutcome::Refused { .. }
        ));
        assert!(decider
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty());
    }
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let (mut client, report) = proxy(ListDecider::new(&[("*", ListDecision::Allow)]));
    let writer = tokio::spawn(async move {
        let _ = client
            .write_all(b"GET http://example.com/ HTTP/1.1\r\n")
            .await;
        let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
        for _ in 0..40 {
            if client.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        client
    });
    assert!(
        matches!(finished(report).await.outcome, ConnectionOutcome::Refused { ref reason } if reason.contains("longer than"))
    );
    drop(writer.await);
}

/// The same tunnel with a TCP client, as the sandbox's connections are:
/// on Linux the relay is `splice(2)`; a megabyte each way, counted, and a
/// half-close passed on.
#[tokio::test]
async fn a_tcp_client_is_relayed_whole_both_ways() {
    let (port, _) = origin(b"").await;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy_address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let decider = ListDecider::new(&[("localhost", ListDecision::Allow)]);
    let report = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        serve_connection(stream, decider.as_ref()).await
    });
    let mut client = tokio::net::TcpStream::connect(proxy_address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let connect = format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\nearly");
    client
        .write_all(connect.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let (mut reader, mut writer) = client.into_split();
    let sending = payload.clone();
    let writing = tokio::spawn(async move {
        writer
            .write_all(&sending)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Half-closed: the origin's echo ends once it has all of it.
        writer.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    });
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("the relay did not end"))
        .unwrap_or_else(|e| panic!("{e}"));
    writing.await.unwrap_or_else(|e| panic!("{e}"));
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    assert_eq!(&answer[..established.len()], established);
    assert_eq!(&answer[established.len()..established.len() + 5], b"early");
    assert!(
        answer[established.len() + 5..] == payload[..],
        "the echo came back whole"
    );
    let report = finished(report).await;
    let expected = payload.len() as u64 + 5;
    assert!(
        matches!(
            report.outcome,
            ConnectionOutcome::Relayed { bytes_sent, bytes_received, .. }
                if bytes_sent == expected && bytes_received == expected
        ),
        "{report:?}"
    );
}

/// Probe 130: an HTTP/1.0 request was forwarded as HTTP/1.1, so the origin
/// could answer in what a 1.0 client cannot read (a chunked body). It goes
/// on in the version it came in.
#[tokio::test]
async fn a_forwarded_request_keeps_its_http_version() {
    for version in ["1.0", "1.1"] {
        let (port, seen) = origin(b"HTTP/1.0 200 OK\r\n\r\nhello").await;
        let decider = ListDecider::new(&[("127.0.0.1", ListDecision::Allow)]);
        let (mut client, report) = proxy(decider.clone());
        let request = format!("GET http://127.0.0.1:{port}/x HTTP/{version}\r\n\r\n");
        client
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_to_end(client).await;
        assert!(answer.ends_with("hello"), "{answer}");
        let seen =
            String::from_utf8_lossy(&seen.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        assert!(
            seen.starts_with(&format!("GET /x HTTP/{version}\r\n")),
            "{seen}"
        );
        finished(report).await;
    }
}

/// Probe 130: a relay that ended in an error (the client reset its
/// connection, or went away while the origin still wrote to it) was
/// recorded as 0 bytes each way, however much had gone through: a
/// sandboxed command could send megabytes to an allowed host and leave a
/// record of none. What went through is counted, whichever way it ends:
/// with a TCP client (`splice`) and with another kind of stream.
#[tokio::test]
async fn a_relay_that_ends_in_an_error_keeps_its_counts() {
    let payload = vec![7u8; 64 * 1024];
    for tcp in [true, false] {
        let (port, seen) = origin(b"").await;
        let decider = ListDecider::new(&[("localhost", ListDecision::Allow)]);
        let connect = format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n");
        let arrived = || async {
            for _ in 0..1000 {
                if seen.lock().map(|seen| seen.len()).unwrap_or(0) >= payload.len() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the origin did not get the payload");
        };
        let report = match tcp {
            true => {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
                let decider = decider.clone();
                let report = tokio::spawn(async move {
                    let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
                    serve_connection(stream, decider.as_ref()).await
                });
                let mut client = tokio::net::TcpStream::connect(address)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                client
                    .write_all(connect.as_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                client
                    .write_all(&payload)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                arrived().await;
                // A reset, not a close: the relay's read fails. (With no
                // time to linger, dropping it blocks nothing.)
                #[allow(deprecated)]
                client
                    .set_linger(Some(std::time::Duration::ZERO))
                    .unwrap_or_else(|e| panic!("{e}"));
                drop(client);
                report
            }
            false => {
                let (mut client, report) = proxy(decider.clone());
                client
                    .write_all(connect.as_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                client
                    .write_all(&payload)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                arrived().await;
                // Gone while the echo is written to it: the relay's write
                // fails.
                drop(client);
                report
            }
        };
        let report = finished(report).await;
        assert!(
            matches!(
                report.outcome,
                ConnectionOutcome::Relayed { bytes_sent, .. } if bytes_sent == payload.len() as u64
            ),
            "tcp {tcp}: {report:?}"
        );
    }
}

/// Regression: a request line without its end was read whole, however
/// long, before the head's limit was checked: a sandboxed client grew the
/// proxy's process (outside the sandbox) by gigabytes in a second.
#[tokio::test]
async fn an_endless_request_line_is_refused_at_the_heads_limit() {
    let endless = tokio::io::repeat(b'A').take(64 << 20);
    let mut client = tokio::io::BufReader::new(endless);
    let error = read_head(&mut client).await.err().unwrap();
    assert!(error.contains("longer than"), "{error}");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    // What was read is the limit and a buffer's worth, not the stream.
    assert!(rest.len() > (64 << 20) - 2 * MAX_HEAD, "{}", rest.len());
}

/// Allows everything, or, with `decides` false, never decides; its
/// connections end when `ends` is notified.
struct EndingDecider {
    decides: bool,
    ends: tokio::sync::Notify,
}

impl Decider for EndingDecider {
    fn decide<'a>(
        &'a self,
        _: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        if !self.decides {
            return Box::pin(std::future::pending());
        }
        Box::pin(std::future::ready(Verdict::Allow(
            NonPublicAddresses::Permit,
        )))
    }

    fn relay_ends(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.ends.notified())
    }

    fn refuses_address(&self, _: &ConnectRequest, _: std::net::IpAddr) -> Option<String> {
        None
    }
}

/// Regression: an upstream that never closes held its relay (and four
/// descriptors) after the client had gone, for good, beyond the end of
/// the client's sandbox. The decider can now end it, and the relay reports
/// what it relayed. Through TCP on both sides, as the proxy's host serves.
#[tokio::test]
async fn a_relay_the_decider_ends_finishes_though_its_upstream_never_closes() {
    let sticky = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sticky_port = sticky.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = sticky.accept().await {
            held.push(stream);
        }
    });
    let decider = Arc::new(EndingDecider {
        decides: true,
        ends: tokio::sync::Notify::new(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let serving = decider.clone();
    let report = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve_connection(stream, serving.as_ref()).await
    });
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port))
        .await
        .unwrap();
    client
        .write_all(format!("CONNECT 127.0.0.1:{sticky_port} HTTP/1.1\r\n\r\nhi").as_bytes())
        .await
        .unwrap();
    let mut answer = [0u8; 39];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 Connection established\r\n\r\n");
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!report.is_finished(), "the relay ended before it was told");
    decider.ends.notify_one();
    let report = finished(report).await;
    assert!(
        matches!(
            report.outcome,
            ConnectionOutcome::Relayed { bytes_sent: 2, .. }
        ),
        "{report:?}"
    );
    held.abort();
}

/// A connection whose sandbox or session ends while its request is still
/// being read, or while it is being decided, ends then and says so: a
/// session's end waits for its connections' records (review 213: a client
/// that sent nothing held it for the whole wait).
#[tokio::test]
async fn a_connection_ends_with_its_sandbox_before_its_request_or_its_decision() {
    let cases = [
        (&b""[..], "before its request was read"),
        (
            &b"CONNECT undecided.example:443 HTTP/1.1\r\n\r\n"[..],
            "before the decision",
        ),
    ];
    for (head, ended) in cases {
        let decider = Arc::new(EndingDecider {
            decides: false,
            ends: tokio::sync::Notify::new(),
        });
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = decider.clone();
        let report = tokio::spawn(async move { serve_connection(server, serving.as_ref()).await });
        client.write_all(head).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!report.is_finished(), "{ended}: ended before it was told");
        decider.ends.notify_one();
        let report = finished(report).await;
        assert!(
            matches!(&report.outcome, ConnectionOutcome::Refused { reason } if reason.ends_with(ended)),
            "{report:?}"
        );
        drop(client);
    }
}

/// Asks a person who never answers; says when its question was dropped.
struct NeverAnswers {
    withdrawn: Arc<std::sync::atomic::AtomicBool>,
}

struct Withdrawn(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Withdrawn {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Decider for NeverAnswers {
    fn decide<'a>(
        &'a self,
        _request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        let guard = Withdrawn(self.withdrawn.clone());
        Box::pin(async move {
            let _guard = guard;
            std::future::pending().await
        })
    }

    fn refuses_address(&self, _: &ConnectRequest, _: std::net::IpAddr) -> Option<String> {
        None
    }
}

/// A probe found: a client killed while a person was asked about its
/// connection left the question open, and a late "for the session" answer
/// was recorded and cached. The client's hang-up ends the decision.
#[tokio::test]
async fn a_client_that_hangs_up_while_a_person_is_asked_withdraws_the_question() {
    for head in [
        &b"CONNECT undecided.example:443 HTTP/1.1\r\nHost: undecided.example:443\r\n\r\n"[..],
        &[
            5, 1, 0, 5, 1, 0, 3, 17, b'u', b'n', b'd', b'e', b'c', b'i', b'd', b'e', b'd', b'.',
            b'e', b'x', b'a', b'm', b'p', b'l', b'e', 1, 187,
        ][..],
    ] {
        let withdrawn = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let decider = Arc::new(NeverAnswers {
            withdrawn: withdrawn.clone(),
        });
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let report = tokio::spawn(async move { serve_connection(server, decider.as_ref()).await });
        client.write_all(head).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!withdrawn.load(std::sync::atomic::Ordering::SeqCst));
        drop(client);
        let report = finished(report).await;
        assert!(
            matches!(&report.outcome, ConnectionOutcome::Refused { reason } if reason.contains("went away")),
            "{report:?}"
        );
        assert!(withdrawn.load(std::sync::atomic::Ordering::SeqCst));
    }
}

/// A client that half-closes after its request, decided at once, is
/// relayed as before (a review found the hang-up watch refusing it about
/// half the time): only a decision still pending watches the client.
#[tokio::test]
async fn a_client_that_half_closes_after_a_decided_request_is_relayed() {
    for _ in 0..20 {
        let (port, _) = origin(b"").await;
        let (mut client, report) = proxy(ListDecider::new(&[("localhost", ListDecision::Allow)]));
        let connect =
            format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
        client.write_all(connect.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        let answer = read_to_end(client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let report = finished(report).await;
        assert!(
            matches!(report.outcome, ConnectionOutcome::Relayed { .. }),
            "{report:?}"
        );
    }
}

/// Regression: with 1.1.1.99 denied, `http://[::ffff:1.1.1.99]/` got
/// through, and was asked about as `[::ffff:1.1.1.99]`: a v4-mapped
/// address is its IPv4 address whichever way the client asks.
#[tokio::test]
async fn a_v4_mapped_destination_is_decided_as_its_ipv4_address() {
    let mut socks_mapped = vec![5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    socks_mapped.extend_from_slice(&[1, 1, 1, 99, 0, 80]);
    let mut socks_named = vec![5, 1, 0, 3, 15];
    socks_named.extend_from_slice(b"::ffff:1.1.1.99");
    socks_named.extend_from_slice(&[0, 80]);
    let denied = ConnectionOutcome::Denied {
        reason: "the profile's domains list denies `1.1.1.99`".into(),
    };
    // (how the client asks, the bytes after a SOCKS5 greeting or the HTTP
    // head, the port asked for)
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "http",
            b"GET http://[::ffff:1.1.1.99]/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            80,
        ),
        (
            "connect",
            b"CONNECT [::FFFF:0101:0163]:443 HTTP/1.1\r\n\r\n".to_vec(),
            443,
        ),
        ("socks5 address", socks_mapped, 80),
        ("socks5 name", socks_named, 80),
    ];
    let mut got = Vec::new();
    for (how, request, _) in &cases {
        let decider = ListDecider::new(&[("1.1.1.99", ListDecision::Deny)]);
        let (mut client, report) = proxy(decider.clone());
        if how.starts_with("socks5") {
            client
                .write_all(&[5, 1, 0])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        client
            .write_all(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_bytes_to_end(client).await;
        let report = finished(report).await;
        let asked: Vec<String> = decider
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|request| format!("{}:{}", request.destination, request.port))
            .collect();
        let reported = report
            .request
            .map(|request| format!("{}:{}", request.destination, request.port));
        let told = if how.starts_with("socks5") {
            format!("SOCKS reply {:?}", answer.get(3))
        } else {
            let answer = String::from_utf8_lossy(&answer);
            answer.lines().last().unwrap_or_default().to_owned()
        };
        got.push((*how, asked, reported, report.outcome, told));
    }
    let want: Vec<_> = cases
        .iter()
        .map(|(how, _, port)| {
            let told = if how.starts_with("socks5") {
                format!("SOCKS reply {:?}", Some(&REPLY_NOT_ALLOWED))
            } else {
                format!(
                    "execgate: network denied: 1.1.1.99:{port}: the profile's domains list \
                     denies `1.1.1.99`"
                )
            };
            (
                *how,
                vec![format!("1.1.1.99:{port}")],
                Some(format!("1.1.1.99:{port}")),
                denied.clone(),
                told,
            )
        })
        .collect();
    assert_eq!(got, want);
}

/// Regression: a SOCKS4 request was read as an HTTP head that never
/// ended; the client hung until it gave up, and the record said it closed
/// inside its request. It is refused at once, as SOCKS4 says "rejected".
#[tokio::test]
async fn socks4_requests_are_refused_at_once() {
    let mut socks4a = vec![4, 1, 1, 187, 0, 0, 0, 1];
    socks4a.extend_from_slice(b"me\0Crates.IO\0");
    let advice = "; use SOCKS5 (ALL_PROXY) or HTTP (HTTP_PROXY, HTTPS_PROXY)";
    // (request, the reason recorded)
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            vec![4, 1, 0, 80, 1, 1, 1, 99, 0],
            format!("SOCKS4 is not served (the client asked for 1.1.1.99:80){advice}"),
        ),
        (
            socks4a,
            format!("SOCKS4 is not served (the client asked for crates.io:443){advice}"),
        ),
        // Not all of it: refused all the same, without a destination.
        (vec![4, 1, 0, 80], format!("SOCKS4 is not served{advice}")),
    ];
    let mut got = Vec::new();
    for (request, _) in &cases {
        let decider = ListDecider::new(&[("*", ListDecision::Allow)]);
        let (mut client, report) = proxy(decider.clone());
        client
            .write_all(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // At once: well before any request timeout, with the client still
        // there.
        let mut reply = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut reply),
        )
        .await
        .unwrap_or_else(|_| panic!("{request:?}: no refusal in time: {reply:?}"))
        .unwrap_or_else(|e| panic!("{e}"));
        let report = finished(report).await;
        let asked = decider
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        got.push((reply, report, asked));
    }
    let want: Vec<_> = cases
        .iter()
        .map(|(_, reason)| {
            (
                vec![0, 0x5b, 0, 0, 0, 0, 0, 0],
                ConnectionReport {
                    request: None,
                    outcome: ConnectionOutcome::Refused {
                        reason: reason.clone(),
                    },
                },
                0,
            )
        })
        .collect();
    assert_eq!(got, want);
}

/// Allows every destination as a wildcard or a person who saw only the
/// name would: non-public addresses refused.
#[cfg(target_os = "linux")]
struct AllowsNamesOnly;

#[cfg(target_os = "linux")]
impl Decider for AllowsNamesOnly {
    fn decide<'a>(
        &'a self,
        _request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async { Verdict::Allow(NonPublicAddresses::Refuse) })
    }

    fn refuses_address(&self, _: &ConnectRequest, _: std::net::IpAddr) -> Option<String> {
        None
    }
}

/// A probe reached services listening on every address (`0.0.0.0`)
/// through a name under an allowed wildcard that resolved to the machine's
/// own public address: only non-public ranges were refused. This
/// machine's own addresses are refused as loopback is, and the peer
/// recorded for an allowed `0.0.0.0` is the loopback address that
/// answered. Run in a network namespace of its own (the test thread's),
/// where loopback carries a public address.
#[cfg(target_os = "linux")]
#[test]
fn this_machines_own_public_address_is_refused_like_loopback() {
    const OWN: &str = "100.128.0.5";
    let probe = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("a network namespace of its own (as root): {e}"));
        for command in [
            &["link", "set", "lo", "up"][..],
            &["address", "add", &format!("{OWN}/32"), "dev", "lo"],
        ] {
            let status = std::process::Command::new("ip")
                .args(command)
                .status()
                .unwrap_or_else(|e| panic!("ip (iproute2): {e}"));
            assert!(status.success(), "ip {command:?}");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async {
            // Listening on every address, as the services the probe reached.
            let (port, _) = origin_on("0.0.0.0:0", b"").await;
            let ask = |host: &'static str, decider: Arc<dyn Decider>| async move {
                let (mut client, report) = proxy(decider);
                let connect = format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n");
                client
                    .write_all(connect.as_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut head = [0u8; 12];
                client
                    .read_exact(&mut head)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                drop(client);
                let report = finished(report).await;
                (String::from_utf8_lossy(&head).into_owned(), report.outcome)
            };
            let (head, outcome) = ask(OWN, Arc::new(AllowsNamesOnly)).await;
            assert_eq!(head, "HTTP/1.1 403");
            assert!(
                matches!(&outcome, ConnectionOutcome::Denied { reason }
                    if reason.contains("this machine's own address")),
                "{outcome:?}"
            );
            // Named exactly, it is reached: the refusal was the address's.
            let exact = ListDecider::new(&[(OWN, ListDecision::Allow)]);
            let (head, outcome) = ask(OWN, exact).await;
            assert_eq!(head, "HTTP/1.1 200");
            assert!(
                matches!(outcome, ConnectionOutcome::Relayed { address, .. }
                    if address.ip().to_string() == OWN),
                "{outcome:?}"
            );
            // `0.0.0.0` is decided as the loopback it reaches: allowed by
            // an entry for 127.0.0.1, and shut by a deny entry on it
            // (probe 162 reached a service shut on 127.0.0.1 this way).
            let loopback = ListDecider::new(&[("127.0.0.1", ListDecision::Allow)]);
            let (head, outcome) = ask("0.0.0.0", loopback.clone()).await;
            assert_eq!(head, "HTTP/1.1 200");
            assert!(
                matches!(outcome, ConnectionOutcome::Relayed { address, .. }
                    if address.ip().to_string() == "127.0.0.1"),
                "{outcome:?}"
            );
            let asked = loopback.asked.lock().unwrap_or_else(|p| p.into_inner())[0]
                .destination
                .to_string();
            assert_eq!(asked, "127.0.0.1");
            let shut = ListDecider::new(&[
                ("127.0.0.1", ListDecision::Deny),
                ("*", ListDecision::Allow),
            ]);
            let (head, outcome) = ask("0.0.0.0", shut).await;
            assert_eq!(head, "HTTP/1.1 403", "{outcome:?}");
        });
    });
    probe
        .join()
        .unwrap_or_else(|_| panic!("the probe thread failed"));
}

/// Review 243: a request whose target is not an absolute URL was refused
/// quoting the whole target (30 KiB records and answers).
#[test]
fn a_long_target_is_quoted_cut_short() {
    let target = "a".repeat(30_000);
    let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    let Err(reason) = parse_http_request(head.as_bytes()) else {
        panic!("a target that is not a URL was taken");
    };
    assert!(reason.len() < 500, "{reason}");
    assert!(reason.contains("(30000 bytes)"), "{reason}");
}
