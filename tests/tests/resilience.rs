//! Hostile and heavy load, end to end on loopback: slowloris clients under `ulimit -n 1024`,
//! slow readers and clients sending a cheap request every 8 s against a full connection
//! table, a body sent a byte a second, far more concurrent sends than `--max-in-flight`, a stalled
//! provider beside a healthy one, and a host out of descriptors. Every attack is bounded in
//! count and time; deadlines are generous (shared machines), never speed targets.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{
    plugin_file, CaptureServer, HostFolders, TestHost, ADMIN_KEY, FLOOD_FLAGS, SEND_KEY,
};
use serde_json::{json, Value};

const REQUEST_BUILDING: &str = "request-building-test-connector";

/// Raises this process's soft open file limit to its hard limit: the attacks below hold more
/// than 1,024 sockets.
fn raise_own_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raise the open file limit");
}

fn request_building_folders() -> HostFolders {
    HostFolders::new(&[("rb.so", &plugin_file("fixture_request_building_connector"))])
}

fn start(folders: HostFolders, extra_args: &[&str]) -> TestHost {
    let mut args = vec![
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--max-sends-per-recipient",
        "1000000",
    ];
    args.extend_from_slice(extra_args);
    folders.start_with_args(&args)
}

/// Makes a request-building connector sending to `provider_url` live.
fn use_provider(host: &TestHost, provider_url: &str) {
    let config = json!({
        "endpoint": format!("{provider_url}/sms"),
        "authorization": "Bearer provider-token",
        "templates": [{"usageType": "Generic", "content": "{{code}}"}]
    });
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": REQUEST_BUILDING, "config": config}),
    );
    assert_eq!(status, 200, "{body}");
}

/// The host's `host:port`.
fn address(host: &TestHost) -> String {
    host.base_url.trim_start_matches("http://").to_owned()
}

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
    took: Duration,
}

/// One send on a fresh connection of its own (no pooled connection from before an attack).
fn send_on_a_new_connection(host: &TestHost, code: &str) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let started = Instant::now();
    let mut response = agent
        .post(format!("{}/api/messages", host.base_url))
        .header("Authorization", format!("Bearer {SEND_KEY}"))
        .send_json(json!({"to": "+12015550123", "payload": {"code": code}}))
        .expect("an HTTP answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = response.body_mut().read_to_string().expect("a body");
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        retry_after,
        took: started.elapsed(),
    }
}

/// Connections that each send part of a request head, then nothing (slowloris).
fn open_slowloris_connections(address: &str, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(address).ok()?;
            // A refused or evicted connection may fail here: it is closed already, keep it.
            let _ = stream.write_all(b"POST /api/messages HTTP/1.1\r\nHost: x\r\n");
            Some(stream)
        })
        .collect()
}

/// Whether the other end closed `stream` by `deadline` (EOF or reset), reading what it sends.
fn closed_by(mut stream: &TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

fn metric(host: &TestHost, line_start: &str) -> f64 {
    let (status, metrics) = host.request("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn slowloris_under_ulimit_1024_neither_starves_sends_nor_keeps_its_connections() {
    raise_own_open_file_limit();
    let provider = CaptureServer::start(200, r#"{"id": "provider-1"}"#);
    let mut folders = request_building_folders();
    folders.open_file_limit = Some(1024);
    // Long enough that "not starved" (well below it) holds on a loaded machine too.
    let header_read_timeout = Duration::from_secs(10);
    let host = start(folders, &["--header-read-timeout-secs", "10"]);
    use_provider(&host, &provider.url);

    let attack = open_slowloris_connections(&address(&host), 1100);
    let attack_opened = Instant::now();
    assert!(attack.len() >= 1000, "only {} connected", attack.len());

    // A client arriving in the middle of the attack, on a connection of its own, through a
    // provider that needs a descriptor of its own.
    let answer = send_on_a_new_connection(&host, "111111");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.took < header_read_timeout / 2,
        "a send during the attack took {:?}",
        answer.took
    );
    assert_eq!(provider.requests().len(), 1);

    // Every attacking connection is closed by the host: evicted for a newcomer, or at the
    // header read timeout (with slack for a loaded machine).
    let deadline = attack_opened + header_read_timeout + Duration::from_secs(3);
    let still_open = attack
        .iter()
        .filter(|stream| !closed_by(stream, deadline))
        .count();
    assert_eq!(still_open, 0, "attacking connections left open by the host");

    let (status, health) = host.request("GET", "/health", None, None);
    assert_eq!(status, 200, "{health}");
    let log = host.log();
    assert!(log.contains("open file limit"), "{log}");
    assert!(log.contains("max_connections=448"), "{log}");
    assert!(
        metric(&host, "http_connections_evicted_total")
            + metric(&host, "http_timeouts_total{kind=\"head\"}")
            >= 1000.0
    );
    assert_eq!(metric(&host, "http_accept_errors_total"), 0.0);
}

#[test]
fn a_body_sent_a_byte_a_second_is_cut_off_by_the_body_read_timeout() {
    let host = start(
        request_building_folders(),
        &["--body-read-timeout-secs", "2"],
    );
    let mut stream = TcpStream::connect(address(&host)).expect("connect");
    let body = r#"{"to": "+12015550123", "payload": {"code": "123456"}}"#;
    write!(
        stream,
        "POST /api/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SEND_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("the head");
    let head_sent = Instant::now();
    let mut trickle = stream.try_clone().expect("clone");
    let dripping = std::thread::spawn(move || {
        for byte in body.bytes().take(20) {
            if trickle.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let took = head_sent.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request.timeout""#), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(12),
        "cut off after {took:?}, with the body timeout at 2 s (and 20 s of body left)"
    );
    dripping.join().expect("the dripping client");
    assert_eq!(
        metric(&host, "http_timeouts_total{kind=\"body\"}"),
        1.0,
        "counted"
    );

    // Without a key, the host neither waits for the body nor holds a slot for it: 401 at once.
    let mut keyless = TcpStream::connect(address(&host)).expect("connect");
    write!(
        keyless,
        "POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("the head");
    keyless
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let asked = Instant::now();
    let mut refusal = [0u8; 12];
    keyless.read_exact(&mut refusal).expect("an answer");
    assert_eq!(&refusal, b"HTTP/1.1 401");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "answered after {:?}, before any body byte",
        asked.elapsed()
    );
}

#[test]
fn far_more_concurrent_sends_than_max_in_flight_are_shed_at_once_and_the_host_recovers() {
    let stall = Duration::from_secs(3);
    let provider =
        CaptureServer::start_concurrent_with_delay(200, r#"{"id": "provider-1"}"#, stall);
    let host = Arc::new(start(
        request_building_folders(),
        &["--max-in-flight", "4", "--max-vendor-concurrency", "100"],
    ));
    use_provider(&host, &provider.url);

    let senders: Vec<_> = (0..40)
        .map(|index| {
            let host = Arc::clone(&host);
            std::thread::spawn(move || send_on_a_new_connection(&host, &format!("{index:06}")))
        })
        .collect();
    // While the admitted sends stall at the provider, the probes still answer.
    assert_eq!(provider.requests_once(4).len(), 4, "four sends admitted");
    let started = Instant::now();
    let (status, health) = host.request("GET", "/health", None, None);
    assert_eq!(status, 200, "{health}");
    assert_eq!(metric(&host, "http_requests_in_flight"), 4.0);
    assert!(
        started.elapsed() < stall,
        "/health waited for the stalled sends"
    );

    let answers: Vec<Answer> = senders
        .into_iter()
        .map(|sender| sender.join().expect("a sender"))
        .collect();
    let sent: Vec<&Answer> = answers
        .iter()
        .filter(|answer| answer.status == 200)
        .collect();
    let shed: Vec<&Answer> = answers
        .iter()
        .filter(|answer| answer.status == 503)
        .collect();
    assert_eq!(sent.len() + shed.len(), 40, "only 200 or 503");
    assert!(sent.len() >= 4, "{} sent", sent.len());
    assert!(shed.len() >= 20, "{} shed", shed.len());
    for answer in &shed {
        assert_eq!(answer.body["code"], "server.overloaded", "{}", answer.body);
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
        assert!(
            answer.took < stall,
            "a shed request waited {:?}, as long as the stalled ones",
            answer.took
        );
    }
    // Each admitted send reached the provider exactly once; no shed one reached it.
    let mut codes: Vec<String> = provider
        .requests()
        .iter()
        .map(|request| request.body.clone())
        .collect();
    assert_eq!(codes.len(), sent.len());
    codes.sort();
    codes.dedup();
    assert_eq!(
        codes.len(),
        sent.len(),
        "a message reached the provider twice"
    );

    assert_eq!(metric(&host, "http_requests_in_flight"), 0.0);
    assert_eq!(metric(&host, "http_requests_shed_total"), shed.len() as f64);
    let answer = send_on_a_new_connection(&host, "999999");
    assert_eq!(answer.status, 200, "the host recovers: {}", answer.body);

    // The OpenAPI document names these answers.
    let (_, document) = host.get("/api/openapi.json");
    let responses = &document["paths"]["/api/messages"]["post"]["responses"];
    let unavailable = responses["503"]["description"].as_str().unwrap_or_default();
    for code in [
        "server.overloaded",
        "server.timeout",
        "connector.busy",
        "store.unavailable",
    ] {
        assert!(unavailable.contains(code), "{unavailable}");
    }
    assert!(responses["408"]["description"]
        .as_str()
        .is_some_and(|text| text.contains("request.timeout")));
}

#[test]
fn a_stalled_provider_cannot_starve_sends_through_a_healthy_connector() {
    let stalled = CaptureServer::start_concurrent_with_delay(
        200,
        r#"{"id": "late"}"#,
        Duration::from_secs(8),
    );
    let healthy = CaptureServer::start(200, r#"{"id": "on-time"}"#);
    // 17 sends to one prefix within seconds: a load, not users.
    let flags: Vec<&str> = [
        "--max-in-flight",
        "8",
        "--max-vendor-concurrency",
        "3",
        "--request-timeout-secs",
        "5",
    ]
    .into_iter()
    .chain(FLOOD_FLAGS)
    .collect();
    let host = Arc::new(start(request_building_folders(), &flags));
    use_provider(&host, &stalled.url);
    // More stalled sends than --max-in-flight: without a per-connector limit they would hold
    // every slot.
    let stalled_senders: Vec<_> = (0..12)
        .map(|index| {
            let host = Arc::clone(&host);
            std::thread::spawn(move || send_on_a_new_connection(&host, &format!("{index:06}")))
        })
        .collect();
    // Every stalled send decided before the switch: three at the provider, nine refused busy.
    assert_eq!(stalled.requests_once(3).len(), 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stalled_senders
        .iter()
        .filter(|sender| sender.is_finished())
        .count()
        < 9
    {
        assert!(
            Instant::now() < deadline,
            "the nine busy answers never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    use_provider(&host, &healthy.url);
    for index in 0..5 {
        let answer = send_on_a_new_connection(&host, &format!("7{index:05}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["providerMessageId"], "on-time");
        assert!(
            answer.took < Duration::from_secs(4),
            "took {:?}",
            answer.took
        );
    }
    assert_eq!(healthy.requests().len(), 5);

    let answers: Vec<Answer> = stalled_senders
        .into_iter()
        .map(|sender| sender.join().expect("a sender"))
        .collect();
    let busy = answers
        .iter()
        .filter(|answer| answer.status == 503 && answer.body["code"] == "connector.busy")
        .count();
    // The stalled provider read each request and never answered: maybe sent, so 504.
    let timed_out = answers
        .iter()
        .filter(|answer| answer.status == 504 && answer.body["code"] == "connector.outcome_unknown")
        .count();
    assert_eq!(busy + timed_out, 12, "only busy or provider timeouts");
    assert_eq!(timed_out, 3, "three sends held the stalled connector");
    assert!(answers
        .iter()
        .filter(|answer| answer.status == 503)
        .all(|answer| answer.retry_after.as_deref() == Some("1")
            && answer.took < Duration::from_secs(4)));
    assert_eq!(
        stalled.requests().len(),
        3,
        "each held send reached it once"
    );
}

#[test]
fn a_host_out_of_descriptors_keeps_accepting_once_they_are_back() {
    raise_own_open_file_limit();
    let provider = CaptureServer::start(200, r#"{"id": "provider-1"}"#);
    let mut folders = request_building_folders();
    folders.open_file_limit = Some(256);
    // Past what the descriptors allow: accept itself fails (EMFILE) during the attack.
    let host = start(
        folders,
        &[
            "--header-read-timeout-secs",
            "2",
            "--max-connections",
            "1000",
        ],
    );
    use_provider(&host, &provider.url);
    let attack = open_slowloris_connections(&address(&host), 400);
    let attack_opened = Instant::now();

    // Once header read timeouts give descriptors back, a new client is served.
    let deadline = attack_opened + Duration::from_secs(20);
    let answer = loop {
        let answer = send_on_a_new_connection(&host, "222222");
        if answer.status == 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(answer.status, 200, "{}", answer.body);
    let still_open = attack
        .iter()
        .filter(|stream| !closed_by(stream, deadline))
        .count();
    assert_eq!(still_open, 0);
    let accept_errors = metric(&host, "http_accept_errors_total");
    assert!(
        accept_errors >= 1.0,
        "the attack never ran the host out of descriptors"
    );
    // A paused loop, not a spinning one: a handful of errors a second at most.
    assert!(accept_errors < 1000.0, "{accept_errors} accept errors");
    let (status, _) = host.request("GET", "/health", None, None);
    assert_eq!(status, 200);
}

/// A request on a fresh connection of its own, read whole within `wait`: its status and body,
/// or why there was none (refused, closed before an answer, no answer in time).
fn get_on_a_new_connection(
    address: &str,
    path: &str,
    wait: Duration,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(address).map_err(|error| format!("connect: {error}"))?;
    stream
        .set_read_timeout(Some(wait))
        .map_err(|error| error.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| format!("send: {error}"))?;
    let mut answer = Vec::new();
    if let Err(error) = stream.read_to_end(&mut answer) {
        if answer.is_empty() {
            return Err(format!("no answer: {error}"));
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A metric read on a new connection (the test host's pooled one may have been evicted).
fn metric_on_a_new_connection(address: &str, line_start: &str) -> f64 {
    let (status, metrics) =
        get_on_a_new_connection(address, "/metrics", Duration::from_secs(15)).expect("the metrics");
    assert_eq!(status, 200);
    metrics
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Hostile clients holding `count` connections the way an attacker would, each reconnecting
/// as soon as it finds its connection closed, until [`Attackers::stop`].
struct Attackers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    reconnections: Arc<std::sync::atomic::AtomicU64>,
    worker: Option<std::thread::JoinHandle<Vec<TcpStream>>>,
}

/// How one kind of attacker opens its connection, and what it does at each tick (`false`: the
/// host closed it).
trait Attack: Send + 'static {
    fn open(&self, address: &str) -> Option<TcpStream>;
    fn tick(&self, stream: &mut TcpStream) -> bool;
    const TICK: Duration;
}

impl Attackers {
    fn start<A: Attack>(address: &str, count: usize, attack: A) -> Attackers {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let mut streams: Vec<Option<TcpStream>> =
            (0..count).map(|_| attack.open(address)).collect();
        assert!(
            streams.iter().all(Option::is_some),
            "every attacker connected"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let reconnections = Arc::new(AtomicU64::new(0));
        let worker = {
            let (stop, reconnections, address) = (
                Arc::clone(&stop),
                Arc::clone(&reconnections),
                address.to_owned(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let tick = Instant::now();
                    for stream in streams.iter_mut() {
                        if !stream.as_mut().is_some_and(|stream| attack.tick(stream)) {
                            *stream = attack.open(&address);
                            reconnections.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(A::TICK.saturating_sub(tick.elapsed()));
                }
                streams.into_iter().flatten().collect()
            })
        };
        Attackers {
            stop,
            reconnections,
            worker: Some(worker),
        }
    }

    /// Stops reconnecting; the connections still open are handed back, untouched.
    fn stop(mut self) -> Vec<TcpStream> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.worker
            .take()
            .map(|worker| worker.join().expect("the attackers"))
            .unwrap_or_default()
    }

    fn reconnections(&self) -> u64 {
        self.reconnections
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Attackers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The largest file the host serves without a key.
const LARGE_RESPONSE_PATH: &str = "/console/assets/config-form.js";

/// Pipelines many requests for a large response and never reads an answer; at each tick
/// pipelines one more (a write that fails means the host closed the connection).
struct SlowReader;

impl Attack for SlowReader {
    const TICK: Duration = Duration::from_millis(500);

    fn open(&self, address: &str) -> Option<TcpStream> {
        let mut stream = TcpStream::connect(address).ok()?;
        stream.set_nonblocking(true).ok()?;
        let request = format!("GET {LARGE_RESPONSE_PATH} HTTP/1.1\r\nHost: x\r\n\r\n");
        // Tens of megabytes of answers, far past every socket buffer; whatever fits is sent.
        let requests = request.repeat(2000);
        let mut sent = 0;
        while sent < requests.len() {
            match stream.write(&requests.as_bytes()[sent..]) {
                Ok(0) | Err(_) => break,
                Ok(count) => sent += count,
            }
        }
        Some(stream)
    }

    fn tick(&self, stream: &mut TcpStream) -> bool {
        let request = format!("GET {LARGE_RESPONSE_PATH} HTTP/1.1\r\nHost: x\r\n\r\n");
        // Non-blocking: a full socket (WouldBlock) is the point, not a closed connection.
        match stream.write_all(request.as_bytes()) {
            Ok(()) => true,
            Err(error) => error.kind() == ErrorKind::WouldBlock,
        }
    }
}

/// Sends one cheap request every 8 s (under the 10 s header read timeout) and reads its
/// answer, holding its connection open.
struct CheapRequestEvery8Seconds;

impl Attack for CheapRequestEvery8Seconds {
    const TICK: Duration = Duration::from_secs(8);

    fn open(&self, address: &str) -> Option<TcpStream> {
        let mut stream = TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        self.tick(&mut stream).then_some(stream)
    }

    fn tick(&self, stream: &mut TcpStream) -> bool {
        if stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_err()
        {
            return false;
        }
        // The answer is small: one read takes it whole.
        let mut answer = [0u8; 4096];
        matches!(stream.read(&mut answer), Ok(count) if count > 0)
    }
}

/// New clients, `/health` included, each on a connection of its own, while an attack holds
/// every slot: each must be answered (no speed target: a generous wait for a loaded machine).
fn new_clients_are_answered(address: &str, rounds: u32, pause: Duration) {
    for round in 0..rounds {
        for path in ["/health", "/console"] {
            let answer = get_on_a_new_connection(address, path, Duration::from_secs(10));
            assert!(
                matches!(answer, Ok((200, _))),
                "round {round}: {path} on a new connection during the attack: {answer:?}"
            );
        }
        std::thread::sleep(pause);
    }
}

#[test]
fn slow_readers_neither_lock_out_new_clients_nor_keep_their_connections() {
    let host = start(
        request_building_folders(),
        &[
            "--max-connections",
            "16",
            "--response-write-timeout-secs",
            "3",
        ],
    );
    let address = address(&host);
    let attack = Attackers::start(&address, 16, SlowReader);
    // Let the host take each attacker's first request and fill the socket buffers.
    std::thread::sleep(Duration::from_secs(2));

    new_clients_are_answered(&address, 5, Duration::from_secs(1));

    // The host closes the stalled connections itself: at the write timeout, or evicted for a
    // newcomer; the attackers keep reconnecting, and are closed again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_on_a_new_connection(&address, "http_timeouts_total{kind=\"write\"}") < 16.0 {
        assert!(
            Instant::now() < deadline,
            "stalled response writes not timed out"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(attack.reconnections() >= 16, "{}", attack.reconnections());

    // Once the attackers stop reconnecting, the connections they hold (still unread) are
    // closed by the host within the write timeout (with slack for a loaded machine).
    let held = attack.stop();
    assert_eq!(held.len(), 16);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric_on_a_new_connection(&address, "http_connections_open") > 2.0 {
        assert!(
            Instant::now() < deadline,
            "stalled connections left open by the host"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(held);
    let (status, health) = host.request("GET", "/health", None, None);
    assert_eq!(status, 200, "{health}");
}

#[test]
fn clients_sending_a_cheap_request_every_8_s_cannot_hold_every_slot() {
    let host = start(request_building_folders(), &["--max-connections", "16"]);
    let address = address(&host);
    let attack = Attackers::start(&address, 16, CheapRequestEvery8Seconds);
    std::thread::sleep(Duration::from_secs(1));

    // Over two of the attackers' rounds, every new client is answered.
    new_clients_are_answered(&address, 8, Duration::from_secs(2));

    // Each newcomer evicted the attacker idle longest (or took the slot a newcomer before it
    // freed, while that attacker had not reconnected yet).
    assert!(metric_on_a_new_connection(&address, "http_connections_evicted_total") >= 1.0);
    assert!(attack.reconnections() >= 1, "the attackers were evicted");
    drop(attack);
}
