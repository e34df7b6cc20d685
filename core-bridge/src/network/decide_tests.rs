//! The decider against real rules files, real lists, scripted approvers,
//! and, for recording, the real proxy on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use execgate_escalate_server::{AuditFailure, AuditSink, NetworkStage};
use execgate_network_proxy::{ConnectionOutcome, Destination, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::approval::{ApprovalFuture, ApprovalRequest};

const RULES: &str = r#"
network_rule(host = "**.crates.io", protocol = "https", port = 443, justification = "cargo fetch")
network_rule(host = "paste.example", decision = "forbidden", justification = "paste site")
network_rule(host = "*.example.org", decision = "prompt", justification = "ask first")
network_rule(host = "**.example.net", decision = "allow")
network_rule(host = "*.example.net", decision = "prompt")
network_rule(host = "bad.example.net", decision = "forbidden")
network_rule(host = "evil.example", decision = "allow")
network_rule(host = "127.0.0.1", port = 8081, decision = "forbidden", justification = "admin port")
"#;

fn rules() -> Arc<RuleSet> {
    Arc::new(RuleSet::parse(Path::new("test.rules"), RULES).unwrap())
}

fn lists() -> DomainList {
    DomainList::new([
        ("evil.example", ListDecision::Deny),
        ("127.0.0.1", ListDecision::Allow),
        ("*.github.com", ListDecision::Allow),
    ])
    .unwrap()
}

/// Answers every network question with `answer` after `delay`, counting
/// the questions; declines exec questions.
struct Scripted {
    answer: ApprovalAnswer,
    delay: Duration,
    asked: AtomicUsize,
    questions: Mutex<Vec<NetworkApprovalRequest>>,
}

impl Scripted {
    fn new(answer: ApprovalAnswer, delay: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            answer,
            delay,
            asked: AtomicUsize::new(0),
            questions: Mutex::new(Vec::new()),
        })
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl Approver for Scripted {
    fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(std::future::ready(ApprovalAnswer::Decline))
    }

    fn approve_network<'a>(&'a self, request: &'a NetworkApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.questions.lock().unwrap().push(request.clone());
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        })
    }
}

fn request(host: &str, port: u16, protocol: Protocol) -> ConnectRequest {
    ConnectRequest {
        destination: Destination::parse(host).unwrap(),
        port,
        protocol,
    }
}

fn decider(approver: Option<Arc<dyn Approver>>, cache: Arc<NetworkCache>) -> NetworkDecider {
    NetworkDecider::new(lists(), rules(), approver, cache)
}

/// A decision as the table compares it: verdict, who decided, the rule's
/// line, whether a person was asked.
type Summary = (Verdict, &'static str, Option<String>, bool);

fn summary(decision: &NetworkDecision) -> Summary {
    (
        decision.verdict.clone(),
        decision.decided_by.as_str(),
        decision.decided_by.rule().map(|rule| rule.id.clone()),
        decision.asked_person,
    )
}

fn allow(non_public: NonPublicAddresses) -> Verdict {
    Verdict::Allow(non_public)
}

fn deny(reason: &str) -> Verdict {
    Verdict::Deny {
        reason: reason.into(),
    }
}

fn rule(line: usize) -> Option<String> {
    Some(format!("test.rules:{line}"))
}

#[tokio::test]
async fn lists_then_rules_then_the_approver_decide() {
    use NonPublicAddresses::{Permit, Refuse};
    use Protocol::{Http, Https, Socks5Tcp};
    let once = ApprovalAnswer::ApproveOnce;
    let decline = ApprovalAnswer::Decline;
    // (host, port, protocol, the approver's answer, expected, questions)
    let cases: Vec<(&str, u16, Protocol, ApprovalAnswer, Summary, usize)> = vec![
        // The list first: its deny wins over a rule that allows.
        (
            "EVIL.example.",
            443,
            Https,
            once.clone(),
            (
                deny("denied by domains entry \"evil.example\""),
                "list",
                None,
                false,
            ),
            0,
        ),
        // A forbidden rule wins over a list entry that allows the host.
        // (Regression: the list decided first, and the rule was never read.)
        (
            "127.0.0.1",
            8081,
            Http,
            once.clone(),
            (
                deny("forbidden by network rule at test.rules:9: admin port"),
                "rule",
                rule(9),
                false,
            ),
            0,
        ),
        // Only an exact entry lets non-public addresses through.
        (
            "127.0.0.1",
            8080,
            Http,
            decline.clone(),
            (allow(Permit), "list", None, false),
            0,
        ),
        (
            "0x7f000001",
            80,
            Http,
            decline.clone(),
            (allow(Permit), "list", None, false),
            0,
        ),
        (
            "api.github.com",
            443,
            Https,
            decline.clone(),
            (allow(Refuse), "list", None, false),
            0,
        ),
        // Rules: forbidden, with its justification.
        (
            "paste.example",
            443,
            Https,
            once.clone(),
            (
                deny("forbidden by network rule at test.rules:3: paste site"),
                "rule",
                rule(3),
                false,
            ),
            0,
        ),
        // An allow rule never opens non-public addresses.
        (
            "static.crates.io",
            443,
            Https,
            decline.clone(),
            (allow(Refuse), "rule", rule(2), false),
            0,
        ),
        // Port and protocol narrow a rule: this is another question.
        (
            "static.crates.io",
            80,
            Http,
            decline.clone(),
            (deny("declined by the user"), "user", None, true),
            1,
        ),
        // forbidden wins over prompt over allow.
        (
            "bad.example.net",
            443,
            Https,
            once.clone(),
            (
                deny("forbidden by network rule at test.rules:7"),
                "rule",
                rule(7),
                false,
            ),
            0,
        ),
        (
            "ok.example.net",
            443,
            Https,
            once.clone(),
            (allow(Refuse), "user", rule(6), true),
            1,
        ),
        (
            "example.net",
            443,
            Https,
            decline.clone(),
            (allow(Refuse), "rule", rule(5), false),
            0,
        ),
        // A prompt rule asks; so does nothing deciding.
        (
            "www.example.org",
            443,
            Https,
            once.clone(),
            (allow(Refuse), "user", rule(4), true),
            1,
        ),
        (
            "www.example.org",
            443,
            Https,
            decline.clone(),
            (deny("declined by the user"), "user", rule(4), true),
            1,
        ),
        (
            "unknown.example",
            1080,
            Socks5Tcp,
            once.clone(),
            (allow(Refuse), "user", None, true),
            1,
        ),
        (
            "unknown.example",
            443,
            Https,
            ApprovalAnswer::Abort,
            (deny("aborted by the user"), "user", None, true),
            1,
        ),
        (
            "unknown.example",
            443,
            Https,
            ApprovalAnswer::ApprovePartly(
                execgate_escalate_server::sandbox::PermissionProfile::Disabled,
            ),
            (
                deny("declined by the user (a partial answer to a network question)"),
                "user",
                None,
                true,
            ),
            1,
        ),
        // A person who saw an address allowed that address, private or
        // not; one who saw a name allowed the name, not what it may
        // resolve to.
        (
            "10.0.0.1",
            80,
            Http,
            once.clone(),
            (allow(Permit), "user", None, true),
            1,
        ),
        (
            "intranet.example",
            80,
            Http,
            once.clone(),
            (allow(Refuse), "user", None, true),
            1,
        ),
    ];
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (host, port, protocol, answer, expected, questions) in cases {
        let approver = Scripted::new(answer, Duration::ZERO);
        let decider = decider(Some(approver.clone()), Arc::default());
        let decision = decider.decide(&request(host, port, protocol)).await;
        got.push((host, port, summary(&decision), approver.asked()));
        want.push((host, port, expected, questions));
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn without_an_approver_undecided_destinations_are_denied_saying_why() {
    let decider = decider(None, Arc::default());
    let decision = decider
        .decide(&request("www.example.org", 443, Protocol::Https))
        .await;
    assert_eq!(
        summary(&decision),
        (
            deny(
                "no list entry or network rule allows www.example.org:443 (https), and nobody \
                 can be asked (no approver)"
            ),
            "default",
            rule(4),
            false
        )
    );
    // What the lists and rules decide does not need anyone.
    let listed = decider
        .decide(&request("api.github.com", 443, Protocol::Https))
        .await;
    assert_eq!(listed.verdict, allow(NonPublicAddresses::Refuse));
}

#[tokio::test]
async fn an_approver_that_knows_no_network_question_declines() {
    let closure = |_: ApprovalRequest| async { ApprovalAnswer::ApproveOnce };
    let decision = decider(Some(Arc::new(closure)), Arc::default())
        .decide(&request("unknown.example", 443, Protocol::Https))
        .await;
    assert_eq!(decision.verdict, deny("declined by the user"));
    assert_eq!(decision.decided_by.as_str(), "user");
    // DenyAll asks no one: its denial is not a user's.
    let decision = decider(Some(Arc::new(crate::DenyAll)), Arc::default())
        .decide(&request("unknown.example", 443, Protocol::Https))
        .await;
    assert_eq!(
        decision.verdict,
        deny(
            "no list entry or network rule allows unknown.example:443 (https), and nobody is \
             asked in this session (its approver declines every request)"
        )
    );
    assert_eq!(decision.decided_by.as_str(), "default");
    assert!(!decision.asked_person);
    // A person's approver that could not put the question: no one's answer.
    let lost = |_: NetworkApprovalRequest| async {
        ApprovalAnswer::Unanswered {
            reason: "no terminal".into(),
        }
    };
    let decision = decider(Some(Arc::new(NetworkOnly(lost))), Arc::default())
        .decide(&request("unknown.example", 443, Protocol::Https))
        .await;
    assert_eq!(
        decision.verdict,
        deny("declined: nobody answered (no terminal)")
    );
    assert_eq!(decision.decided_by.as_str(), "default");
    let decision = decider(Some(Arc::new(crate::ApproveAll)), Arc::default())
        .decide(&request("unknown.example", 443, Protocol::Https))
        .await;
    assert_eq!(decision.verdict, allow(NonPublicAddresses::Refuse));
}

/// Probe 231: an address declined for the session was reached through
/// any name that resolves to it.
#[tokio::test]
async fn an_address_declined_for_the_session_is_refused_whatever_name_leads_there() {
    let approver = Scripted::new(ApprovalAnswer::DeclineForSession, Duration::ZERO);
    let decider = decider(Some(approver.clone()), Arc::new(NetworkCache::default()));
    let address: IpAddr = "203.0.113.7".parse().unwrap();
    let name = request("mirror.example", 443, Protocol::Https);
    assert_eq!(decider.refuses_address(&name, address), None);
    let asked = decider
        .decide(&request("203.0.113.7", 443, Protocol::Https))
        .await;
    assert_eq!(approver.asked(), 1);
    assert!(matches!(asked.verdict, Verdict::Deny { .. }), "{asked:?}");
    for address in ["203.0.113.7", "::ffff:203.0.113.7"] {
        let refused = decider.refuses_address(&name, address.parse().unwrap());
        assert!(
            refused
                .as_deref()
                .is_some_and(|why| why.ends_with("declined by the user for this session")),
            "{address}: {refused:?}"
        );
    }
    // Another address, under the same name, is not.
    assert_eq!(
        decider.refuses_address(&name, "203.0.113.8".parse().unwrap()),
        None
    );
}

/// An allowance for the session covers the host, protocol and port the
/// person saw; a denial covers the host on every protocol and port (a probe
/// asked again through SOCKS, `CONNECT` and other ports, each question
/// another chance for a tired "yes"). Both hold in every sandbox of the
/// session, and in no other session.
#[tokio::test]
async fn session_answers_are_kept_for_every_sandbox_a_denial_for_the_whole_host() {
    let declined = "declined by the user for this session (unknown.example on every port)";
    // The answer, its verdict, and the questions asked once port 80 and
    // SOCKS were tried too.
    for (answer, verdict, asked_with_others) in [
        (
            ApprovalAnswer::ApproveForSession,
            allow(NonPublicAddresses::Refuse),
            3,
        ),
        (ApprovalAnswer::DeclineForSession, deny(declined), 1),
    ] {
        let approver = Scripted::new(answer.clone(), Duration::ZERO);
        let cache = Arc::new(NetworkCache::default());
        let first = decider(Some(approver.clone()), cache.clone());
        // Another sandbox of the same session, with a list of its own.
        let second = NetworkDecider::new(
            DomainList::default(),
            rules(),
            Some(approver.clone()),
            cache.clone(),
        );
        let https = request("unknown.example", 443, Protocol::Https);
        let asked = first.decide(&https).await;
        let first_verdict = match &answer {
            ApprovalAnswer::DeclineForSession => deny("declined by the user for this session"),
            _ => verdict.clone(),
        };
        assert_eq!(summary(&asked), (first_verdict, "user", None, true));
        let cached = second.decide(&https).await;
        assert_eq!(
            summary(&cached),
            (verdict.clone(), "session-cache", None, false),
            "{answer:?}"
        );
        assert_eq!(approver.asked(), 1);
        second
            .decide(&request("unknown.example", 80, Protocol::Http))
            .await;
        second
            .decide(&request("unknown.example", 443, Protocol::Socks5Tcp))
            .await;
        assert_eq!(approver.asked(), asked_with_others, "{answer:?}");
        // Another host is another question.
        second
            .decide(&request("other.example", 443, Protocol::Https))
            .await;
        assert_eq!(approver.asked(), asked_with_others + 1, "{answer:?}");
        // A new session asks again.
        decider(Some(approver.clone()), Arc::default())
            .decide(&https)
            .await;
        assert_eq!(approver.asked(), asked_with_others + 2, "{answer:?}");
    }
}

#[tokio::test]
async fn a_once_answer_is_not_kept() {
    let approver = Scripted::new(ApprovalAnswer::ApproveOnce, Duration::ZERO);
    let decider = decider(Some(approver.clone()), Arc::default());
    let https = request("unknown.example", 443, Protocol::Https);
    decider.decide(&https).await;
    let again = decider.decide(&https).await;
    assert_eq!(again.decided_by.as_str(), "user");
    assert_eq!(approver.asked(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_are_asked_once() {
    const CONCURRENT: usize = 16;
    let approver = Scripted::new(ApprovalAnswer::ApproveOnce, Duration::from_millis(300));
    let cache = Arc::new(NetworkCache::default());
    let decider = Arc::new(decider(Some(approver.clone()), cache.clone()));
    let mut tasks = Vec::new();
    for index in 0..CONCURRENT {
        let decider = decider.clone();
        // Half through a second sandbox's decider: one session, one question.
        let other = NetworkDecider::new(
            DomainList::default(),
            rules(),
            Some(approver.clone()),
            cache.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let https = request("Unknown.Example.", 443, Protocol::Https);
            if index % 2 == 0 {
                decider.decide(&https).await
            } else {
                other.decide(&https).await
            }
        }));
    }
    // Port 80 at the same time: its own question.
    let port_80 = request("unknown.example", 80, Protocol::Http);
    let http = decider.decide(&port_80);
    let (http, results) = tokio::join!(http, async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    });
    assert_eq!(approver.asked(), 2);
    assert!(http.asked_person);
    for decision in results {
        assert_eq!(
            summary(&decision),
            (allow(NonPublicAddresses::Refuse), "user", None, true)
        );
    }
    let mut ports: Vec<u16> = approver
        .questions
        .lock()
        .unwrap()
        .iter()
        .map(|question| question.port)
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [80, 443]);
    // Nothing left pending: the next request is a new question.
    assert!(lock(&cache.pending).is_empty());
    decider
        .decide(&request("unknown.example", 443, Protocol::Https))
        .await;
    assert_eq!(approver.asked(), 3);
}

#[tokio::test(start_paused = true)]
async fn approval_time_pauses_the_sessions_clock() {
    let clock = ApprovalClock::default();
    let approver = Scripted::new(ApprovalAnswer::ApproveOnce, Duration::from_secs(5));
    let decider = decider(Some(approver), Arc::new(NetworkCache::new(clock.clone())));
    decider
        .decide(&request("unknown.example", 443, Protocol::Https))
        .await;
    // A list decision asks nobody and pauses nothing.
    decider
        .decide(&request("api.github.com", 443, Protocol::Https))
        .await;
    assert_eq!(clock.paused(), Duration::from_secs(5));
}

/// Keeps every network event it is given, and checks at each decision
/// that the origin has not been connected to yet.
struct Recorder {
    events: Mutex<Vec<execgate_escalate_server::NetworkEvent>>,
    origin: std::net::TcpListener,
    fail: bool,
}

impl AuditSink for Recorder {
    fn record(&self, _session: &str, event: &SessionEvent) -> Result<(), String> {
        let SessionEvent::Network(event) = event else {
            return Ok(());
        };
        if event.stage == NetworkStage::Decided {
            let accepted = self.origin.accept();
            assert!(
                matches!(&accepted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
                "the proxy connected before its decision was recorded: {accepted:?}"
            );
        }
        self.events.lock().unwrap().push(event.clone());
        if self.fail {
            Err("disk full".into())
        } else {
            Ok(())
        }
    }
}

/// Sends `CONNECT` for the origin through `connection`, then `ping`; the
/// proxy's report and what the client read.
async fn connect_through(
    connection: &NetworkConnection,
    origin: std::net::SocketAddr,
) -> (ConnectionReport, String) {
    let (mut client, proxy_end) = tokio::io::duplex(4096);
    let client_side = async {
        client
            .write_all(format!("CONNECT {origin} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0u8; 64];
        let read = client.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
        if answer.starts_with("HTTP/1.1 200") {
            client.write_all(b"ping").await.unwrap();
        }
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
        answer + &String::from_utf8_lossy(&rest)
    };
    let (report, answer) = tokio::join!(
        execgate_network_proxy::serve_connection(proxy_end, connection),
        client_side
    );
    (report, answer)
}

fn recording_decider(recorder: Arc<Recorder>, failure: AuditFailure) -> Arc<NetworkDecider> {
    let reporter = EventReporter::new("s1", Some(recorder), None, failure);
    Arc::new(decider(None, Arc::default()).recording_to(reporter))
}

#[tokio::test]
async fn decisions_are_recorded_before_connecting_and_closes_with_bytes() {
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    origin.set_nonblocking(true).unwrap();
    let address = origin.local_addr().unwrap();
    let recorder = Arc::new(Recorder {
        events: Mutex::new(Vec::new()),
        origin: origin.try_clone().unwrap(),
        fail: false,
    });
    let decider = recording_decider(recorder.clone(), AuditFailure::Deny);
    let connection = decider.connection(Some(7));
    let serve = connect_through(&connection, address);
    let echo = async {
        let listener = tokio::net::TcpListener::from_std(origin).unwrap();
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut ping = Vec::new();
        stream.read_to_end(&mut ping).await.unwrap();
        stream.write_all(b"pong!").await.unwrap();
        ping
    };
    let ((report, answer), ping) = tokio::join!(serve, echo);
    assert_eq!(ping, b"ping");
    assert!(answer.ends_with("pong!"), "{answer}");
    connection.closed(&report);
    let events = recorder.events.lock().unwrap().clone();
    let decided_by = NetworkDecidedBy::List {
        pattern: "127.0.0.1".into(),
    };
    let asked = request("127.0.0.1", address.port(), Protocol::Https);
    assert_eq!(
        events,
        [
            NetworkEvent::decided(
                &asked,
                &allow(NonPublicAddresses::Permit),
                &decided_by,
                Some(7)
            ),
            NetworkEvent::closed(
                &ConnectionReport {
                    request: Some(asked.clone()),
                    outcome: ConnectionOutcome::Relayed {
                        address,
                        bytes_sent: 4,
                        bytes_received: 5,
                    },
                },
                Some(&decided_by),
                Some(7)
            ),
        ]
    );
    // A denied connection: its decision record says all.
    let recorder_events = recorder.events.lock().unwrap().len();
    let denied = decider.connection(None);
    let (report, answer) = connect_through(&denied, "127.0.0.2:9".parse().unwrap()).await;
    denied.closed(&report);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let events = recorder.events.lock().unwrap().clone();
    assert_eq!(events.len(), recorder_events + 1);
    assert_eq!(
        events.last().map(|event| (event.stage, event.outcome)),
        Some((
            NetworkStage::Decided,
            execgate_escalate_server::NetworkOutcome::Denied
        ))
    );
}

#[tokio::test]
async fn a_decision_that_cannot_be_recorded_is_denied_unless_told_to_warn() {
    for (failure, connected) in [(AuditFailure::Deny, false), (AuditFailure::Warn, true)] {
        let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        origin.set_nonblocking(true).unwrap();
        let address = origin.local_addr().unwrap();
        let recorder = Arc::new(Recorder {
            events: Mutex::new(Vec::new()),
            origin: origin.try_clone().unwrap(),
            fail: true,
        });
        let decider = recording_decider(recorder, failure);
        let connection = decider.connection(None);
        let listener = tokio::net::TcpListener::from_std(origin.try_clone().unwrap()).unwrap();
        let serve = connect_through(&connection, address);
        tokio::pin!(serve);
        // The origin closes what it accepts, so that the relay ends.
        let (report, answer, accepted) = tokio::select! {
            (report, answer) = &mut serve => (report, answer, false),
            accepted = listener.accept() => {
                drop(accepted);
                let (report, answer) = serve.await;
                (report, answer, true)
            }
        };
        assert_eq!(accepted, connected, "{failure:?}: {answer}");
        assert!(origin.accept().is_err());
        if connected {
            assert!(matches!(report.outcome, ConnectionOutcome::Relayed { .. }));
        } else {
            assert_eq!(
                report.outcome,
                ConnectionOutcome::Denied {
                    reason: execgate_escalate_server::unrecorded_denial("disk full")
                }
            );
            assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        }
    }
}

/// An approver that answers network questions with `F`, and declines the
/// rest.
struct NetworkOnly<F>(F);

impl<F, Fut> Approver for NetworkOnly<F>
where
    F: Fn(NetworkApprovalRequest) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ApprovalAnswer> + Send + 'static,
{
    fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> crate::ApprovalFuture<'a> {
        Box::pin(std::future::ready(ApprovalAnswer::Decline))
    }

    fn approve_network<'a>(
        &'a self,
        request: &'a NetworkApprovalRequest,
    ) -> crate::ApprovalFuture<'a> {
        Box::pin((self.0)(request.clone()))
    }
}

/// As for execs, a sandbox cannot keep more than [`QUESTIONS_IN_FLIGHT`]
/// distinct questions waiting: one name each under an allowed wildcard's
/// parent would otherwise be a question each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_past_the_bound_are_not_put() {
    use crate::approval::QUESTIONS_IN_FLIGHT;
    let approver = Scripted::new(ApprovalAnswer::ApproveOnce, Duration::from_secs(600));
    let decider = Arc::new(decider(Some(approver.clone()), Arc::default()));
    let waiting: Vec<_> = (0..QUESTIONS_IN_FLIGHT)
        .map(|index| {
            let decider = decider.clone();
            tokio::spawn(async move {
                decider
                    .decide(&request(&format!("h{index}.example"), 443, Protocol::Https))
                    .await
            })
        })
        .collect();
    // One is put; the others wait their turn.
    while lock(&decider.cache.pending).len() < QUESTIONS_IN_FLIGHT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = decider
        .decide(&request("one-more.example", 443, Protocol::Https))
        .await;
    assert_eq!(
        summary(&refused).0,
        deny(&format!(
            "declined: nobody answered (not asked: {QUESTIONS_IN_FLIGHT} questions of this \
             session already wait for an answer)"
        ))
    );
    assert_eq!(approver.asked(), 1);
    // Given up (their clients hung up), they no longer count: a review
    // found them kept for the session, and the bound then shut every
    // later question.
    for question in waiting {
        question.abort();
        let _ = question.await;
    }
    let approver = Scripted::new(ApprovalAnswer::ApproveOnce, Duration::ZERO);
    let decider = NetworkDecider::new(
        DomainList::default(),
        rules(),
        Some(approver.clone()),
        decider.cache.clone(),
    );
    let asked = decider
        .decide(&request("one-more.example", 443, Protocol::Https))
        .await;
    assert_eq!(asked.decided_by.as_str(), "user");
    assert_eq!(approver.asked(), 1);
}

/// A review: questions about a host on other ports, waiting their turn
/// while the person denied the host for the session, were put after it
/// all the same. Questions go one at a time; one the session's answer
/// settled meanwhile is not put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_settled_while_they_waited_are_not_put() {
    let approver = Scripted::new(
        ApprovalAnswer::DeclineForSession,
        Duration::from_millis(200),
    );
    let decider = Arc::new(decider(Some(approver.clone()), Arc::default()));
    let asks: Vec<_> = [
        (443, Protocol::Https),
        (80, Protocol::Http),
        (443, Protocol::Socks5Tcp),
    ]
    .into_iter()
    .map(|(port, protocol)| {
        let decider = decider.clone();
        tokio::spawn(async move {
            decider
                .decide(&request("pushy.example", port, protocol))
                .await
        })
    })
    .collect();
    let mut by = Vec::new();
    for ask in asks {
        let decision = ask.await.unwrap();
        assert!(
            matches!(decision.verdict, Verdict::Deny { .. }),
            "{decision:?}"
        );
        by.push(decision.decided_by.as_str());
    }
    by.sort_unstable();
    assert_eq!(by, ["session-cache", "session-cache", "user"]);
    assert_eq!(approver.asked(), 1);
}

/// A probe reached an address a `forbidden` rule named through a name
/// that resolved to it. A rule or a deny entry on an address shuts it
/// whatever name leads there; the same name to another port goes on.
#[tokio::test]
async fn a_rule_or_entry_on_an_address_holds_for_names_that_resolve_to_it() {
    let ask = |entries: Vec<(&'static str, ListDecision)>, port: u16| async move {
        let decider = NetworkDecider::new(
            DomainList::new(entries).unwrap(),
            rules(),
            None,
            Arc::default(),
        );
        let (mut client, proxy_end) = tokio::io::duplex(4096);
        let connect = format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n");
        client.write_all(connect.as_bytes()).await.unwrap();
        let report = execgate_network_proxy::serve_connection(proxy_end, &decider).await;
        report.outcome
    };
    let localhost = ("localhost", ListDecision::Allow);
    let outcome = ask(vec![localhost], 8081).await;
    assert!(
        matches!(&outcome, ConnectionOutcome::Denied { reason }
            if reason.contains("127.0.0.1, forbidden by network rule at test.rules:9: admin port")),
        "{outcome:?}"
    );
    let outcome = ask(vec![localhost, ("127.0.0.1", ListDecision::Deny)], 8082).await;
    assert!(
        matches!(&outcome, ConnectionOutcome::Denied { reason }
            if reason.contains("127.0.0.1, denied by domains entry \"127.0.0.1\"")),
        "{outcome:?}"
    );
    // Port 8082 is no rule's: tried, and nothing listens there.
    let outcome = ask(vec![localhost], 8082).await;
    assert!(
        matches!(&outcome, ConnectionOutcome::Unreachable { .. }),
        "{outcome:?}"
    );
}
