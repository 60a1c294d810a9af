//! Operations behind a load balancer: two hosts on one PostgreSQL behind HAProxy (Debian's
//! `haproxy`, configured with the README's snippet), restarted one by one with SIGTERM while
//! clients send and verify codes through HAProxy, and PostgreSQL restarted in the middle.
//! Also: a host started while PostgreSQL is down waits for it; a send in flight at SIGTERM
//! finishes; `--shutdown-timeout-secs` bounds the exit. Needs PostgreSQL and HAProxy
//! (`scripts/install-counterparts`), whatever `E2E_STORE` says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::{
    free_port, plugin_file, wait_for_port, CaptureServer, HostFolders, KillOnDrop, SharedDatabase,
    TestHost, ADMIN_KEY, SEND_KEY, UNLIMITED_FLOOD_FLAGS,
};
use serde_json::{json, Value};

const MOCK: &str = "mock-short-message-service";
const PHONE: &str = "+12015550123";
/// Above HAProxy's `inter 200ms` × `fall 2` with room for a loaded machine.
const DRAIN_GRACE_SECS: &str = "3";

/// The README's HAProxy snippet (the one `haproxy` block), as an operator would copy it.
fn readme_haproxy_snippet() -> String {
    let readme =
        std::fs::read_to_string(e2e_tests::workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find("```haproxy\n")
        .expect("a haproxy block in the README")
        + 11;
    let end = start + readme[start..].find("```").expect("the block's end");
    // Indented inside a list item.
    readme[start..end]
        .lines()
        .map(|line| line.strip_prefix("   ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The snippet with only the addresses and the check interval changed, checked by
/// `haproxy -c` (valid, no warning) and started in the foreground.
fn start_haproxy(scratch: &Path, front_port: u16, host_ports: [u16; 2]) -> KillOnDrop {
    let snippet = readme_haproxy_snippet();
    for expected in [
        "option httpchk GET /ready",
        "http-check expect status 200",
        "option redispatch",
        "retries 3",
        "timeout server",
    ] {
        assert!(
            snippet.contains(expected),
            "the README's snippet lacks {expected:?}"
        );
    }
    let config = snippet
        .replace("bind :8080", &format!("bind 127.0.0.1:{front_port}"))
        .replace("inter 1s", "inter 200ms")
        .replace("10.0.0.11:3001", &format!("127.0.0.1:{}", host_ports[0]))
        .replace("10.0.0.12:3001", &format!("127.0.0.1:{}", host_ports[1]))
        .replace("    server c 10.0.0.13:3001\n", "");
    assert!(!config.contains("10.0.0."), "{config}");
    let path = scratch.join("haproxy.cfg");
    std::fs::write(&path, format!("{config}\n")).expect("write haproxy.cfg");
    let checked = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run haproxy -c (scripts/install-counterparts installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success(), "{said}\n{config}");
    assert!(!said.contains("WARNING"), "haproxy -c warns: {said}");
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let haproxy = KillOnDrop(child);
    assert!(
        wait_for_port(front_port, Duration::from_secs(10)),
        "haproxy did not listen"
    );
    haproxy
}

fn host_args(port: u16) -> Vec<String> {
    let mut args: Vec<String> = [
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--drain-grace-secs",
        DRAIN_GRACE_SECS,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(UNLIMITED_FLOOD_FLAGS.iter().map(|arg| arg.to_string()));
    args.extend(["--listen".to_owned(), format!("127.0.0.1:{port}")]);
    args
}

fn start_host(folders: HostFolders, port: u16) -> TestHost {
    let args = host_args(port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    folders.start_with_args(&args)
}

/// SIGTERM, then (bounded polling) the process's own exit; its folders back.
fn stop_with_sigterm(mut host: TestHost) -> HostFolders {
    let killed = Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    // Draining: not ready, yet still accepting (the listener stays open for the grace).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = host
            .try_request("GET", "/ready", None, None)
            .expect("the listener accepts during the drain grace");
        if ready.0 == 503 {
            assert_eq!(ready.1["failed"], "draining", "{}", ready.1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never turned 503: {}",
            ready.1
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, health) = host
        .try_request("GET", "/health", None, None)
        .expect("the listener accepts during the drain grace");
    assert_eq!(status, 200, "{health}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while host.is_running() {
        assert!(
            Instant::now() < deadline,
            "the host did not exit after SIGTERM:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = host.log();
    assert!(
        log.contains("draining: /ready answers 503") && log.contains("drained:"),
        "the drain is not logged:\n{log}"
    );
    host.kill()
}

/// Outbox lines, skipping a line being written right now.
fn outbox_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// One answer through HAProxy: status, content type, body.
struct Answer {
    status: u16,
    json: bool,
    body: String,
}

impl Answer {
    fn code(&self) -> Option<String> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .get("code")?
            .as_str()
            .map(str::to_owned)
    }

    /// The host's own JSON `503 store.unavailable` (never HAProxy's HTML page).
    fn is_store_unavailable(&self) -> bool {
        self.status == 503 && self.json && self.code().as_deref() == Some("store.unavailable")
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Answer, String> {
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(url)
        .header("Authorization", format!("Bearer {SEND_KEY}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .map_err(|error| error.to_string())?;
    let mut response = agent.run(request).map_err(|error| error.to_string())?;
    let json = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|error| error.to_string())?;
    Ok(Answer { status, json, body })
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Codes of sends answered 200.
    sent: BTreeSet<String>,
    /// Phones whose code was issued and then verified (both 204).
    verified: BTreeSet<String>,
    /// Anything but success outside the database restart.
    failures: Vec<String>,
    /// Answers during the database restart that are not the host's JSON 503.
    wrong_during_outage: Vec<String>,
    answered_during_outage: usize,
    answers: usize,
}

/// A client thread: sends with unique codes, and every third round a code issued to a phone
/// of its own and verified, all through HAProxy.
fn client(
    client: usize,
    front: String,
    outboxes: Arc<Mutex<Vec<std::path::PathBuf>>>,
    stop: Arc<AtomicBool>,
    outage: Arc<AtomicBool>,
    next_phone: Arc<AtomicUsize>,
    tally: Arc<Mutex<Tally>>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut round = 0usize;
    // Judges one answer: outside the outage only success counts.
    let judge = |what: &str, during_outage: bool, answer: &Result<Answer, String>, ok: u16| {
        let mut tally = tally.lock().unwrap();
        tally.answers += 1;
        match answer {
            Ok(answer) if answer.status == ok => return true,
            Ok(answer) if during_outage && answer.is_store_unavailable() => {
                tally.answered_during_outage += 1;
            }
            Ok(answer) => {
                let line = format!("{what}: {} {} {}", answer.status, answer.json, answer.body);
                if during_outage {
                    tally.wrong_during_outage.push(line);
                } else {
                    tally.failures.push(line);
                }
            }
            Err(error) => {
                let line = format!("{what}: no answer: {error}");
                if during_outage {
                    tally.wrong_during_outage.push(line);
                } else {
                    tally.failures.push(line);
                }
            }
        }
        false
    };
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let code = format!("{:06}", client * 100_000 + round);
        let during = outage.load(Ordering::Relaxed);
        let answer = post(
            &agent,
            &format!("{front}/api/messages"),
            &json!({"to": PHONE, "payload": {"code": code}}),
        );
        let during = during || outage.load(Ordering::Relaxed);
        if judge("send", during, &answer, 200) {
            tally.lock().unwrap().sent.insert(code);
        }
        if round % 3 != 0 {
            continue;
        }
        let phone = format!(
            "+1201555{:04}",
            1000 + next_phone.fetch_add(1, Ordering::Relaxed)
        );
        let during = outage.load(Ordering::Relaxed);
        let issued = post(
            &agent,
            &format!("{front}/api/verification-codes"),
            &json!({"phone": phone}),
        );
        let during = during || outage.load(Ordering::Relaxed);
        if !judge("issue", during, &issued, 204) {
            continue;
        }
        // The code, from whichever host's outbox it went to (bounded polling).
        let deadline = Instant::now() + Duration::from_secs(30);
        let issued_code = loop {
            let paths = outboxes.lock().unwrap().clone();
            let found = paths
                .iter()
                .flat_map(|path| outbox_lines(path))
                .find_map(|line| {
                    (line["to"] == phone.as_str() || line["phone"] == phone.as_str())
                        .then(|| line["payload"]["code"].as_str().map(str::to_owned))
                        .flatten()
                });
            if let Some(code) = found {
                break code;
            }
            assert!(Instant::now() < deadline, "no outbox line for {phone}");
            std::thread::sleep(Duration::from_millis(20));
        };
        // A verify refused with 503 during the outage consumed nothing: tried again.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let during = outage.load(Ordering::Relaxed);
            let verified = post(
                &agent,
                &format!("{front}/api/verification-codes/verify"),
                &json!({"phone": phone, "verificationCode": issued_code}),
            );
            let during = during || outage.load(Ordering::Relaxed);
            if judge("verify", during, &verified, 204) {
                tally.lock().unwrap().verified.insert(phone.clone());
                break;
            }
            let refused_by_outage = verified.as_ref().is_ok_and(Answer::is_store_unavailable);
            if !refused_by_outage || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Until at least one more line than `before` is in `outbox`: HAProxy sends this host
/// traffic (bounded polling).
fn wait_for_traffic(outbox: &Path, before: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox_lines(outbox).len() <= before {
        assert!(
            Instant::now() < deadline,
            "HAProxy never sent {what} traffic"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rolling_restart_behind_haproxy_fails_no_request_and_loses_or_doubles_no_send() {
    let database = SharedDatabase::on_new_cluster();
    let ports = [free_port(), free_port()];
    let plugins = [("mock.so", plugin_file("mock_sms"))];
    let plugins: Vec<(&str, &Path)> = plugins
        .iter()
        .map(|(name, path)| (*name, path.as_path()))
        .collect();
    let mut hosts: Vec<Option<TestHost>> = ports
        .iter()
        .map(|port| {
            Some(start_host(
                HostFolders::on_database(&plugins, &database),
                *port,
            ))
        })
        .collect();
    let first = hosts[0].as_ref().unwrap();
    let (status, created) = first.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": {
            "templates": [{"usageType": "Generic", "content": "code {{code}}"}],
            "outbox": true,
        }}),
    );
    assert_eq!(status, 200, "{created}");
    for host in hosts.iter().flatten() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while host.request("GET", "/ready", None, None).1["checks"]["liveConnector"] != "ready" {
            assert!(Instant::now() < deadline, "the connector is not live");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let outbox_paths: Vec<std::path::PathBuf> = hosts
        .iter()
        .flatten()
        .map(|host| host.folders().outbox_path())
        .collect();

    let scratch = tempfile::tempdir().expect("scratch");
    let front_port = free_port();
    let _haproxy = start_haproxy(scratch.path(), front_port, ports);
    let front = format!("http://127.0.0.1:{front_port}");

    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next_phone = Arc::new(AtomicUsize::new(0));
    let outboxes = Arc::new(Mutex::new(outbox_paths.clone()));
    let clients: Vec<_> = (0..4)
        .map(|index| {
            let (front, outboxes, stop, outage, next_phone, tally) = (
                front.clone(),
                Arc::clone(&outboxes),
                Arc::clone(&stop),
                Arc::clone(&outage),
                Arc::clone(&next_phone),
                Arc::clone(&tally),
            );
            std::thread::spawn(move || {
                client(index, front, outboxes, stop, outage, next_phone, tally)
            })
        })
        .collect();
    // Both hosts take traffic before anything restarts.
    for path in &outbox_paths {
        wait_for_traffic(path, 0, "a host");
    }

    let restart = |hosts: &mut Vec<Option<TestHost>>, index: usize| {
        let folders = stop_with_sigterm(hosts[index].take().unwrap());
        let before = outbox_lines(&outbox_paths[index]).len();
        let host = start_host(folders, ports[index]);
        assert_eq!(host.request("GET", "/ready", None, None).0, 200);
        hosts[index] = Some(host);
        // HAProxy has found it ready and sends it traffic again before the next step.
        wait_for_traffic(&outbox_paths[index], before, "the restarted host");
    };

    restart(&mut hosts, 0);

    // PostgreSQL stopped (as a crash would) and started again: the hosts stay in HAProxy
    // (/ready stays 200) and answer 503 store.unavailable in JSON themselves meanwhile.
    outage.store(true, Ordering::Relaxed);
    database.cluster.stop();
    for host in hosts.iter().flatten() {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, health) = host.request("GET", "/health", None, None);
            assert_eq!(status, 200, "{health}");
            if health["store"] == "unavailable" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the outage is not seen: {health}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, ready) = host.request("GET", "/ready", None, None);
        assert_eq!(
            status, 200,
            "a database outage must not take the host out: {ready}"
        );
    }
    // Clients get the hosts' JSON 503 through HAProxy, not HAProxy's own page.
    let seen = tally.lock().unwrap().answered_during_outage;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.lock().unwrap().answered_during_outage < seen + 20 {
        assert!(Instant::now() < deadline, "no JSON 503 through HAProxy");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The hosts' log says which database, in words.
    for host in hosts.iter().flatten() {
        let log = host.log();
        assert!(
            log.contains("cannot reach PostgreSQL at 127.0.0.1:"),
            "{log}"
        );
        assert!(
            !log.contains("Error occurred while creating a new object"),
            "{log}"
        );
    }
    database.cluster.restart();
    // Back once each host answers ten sends in a row (connections broken by the restart are
    // gone from its pool by then).
    for host in hosts.iter().flatten() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut in_a_row = 0;
        while in_a_row < 10 {
            let (status, body) = host.request(
                "POST",
                "/api/messages",
                Some(SEND_KEY),
                Some(&json!({"to": PHONE, "payload": {"code": "999999"}})),
            );
            in_a_row = if status == 200 { in_a_row + 1 } else { 0 };
            assert!(
                Instant::now() < deadline,
                "the host did not recover: {body}"
            );
            if status != 200 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let (status, health) = host.request("GET", "/health", None, None);
        assert_eq!((status, health["store"].as_str()), (200, Some("ok")));
    }
    outage.store(false, Ordering::Relaxed);

    restart(&mut hosts, 1);
    // Some more traffic through both.
    let counts: Vec<usize> = outbox_paths
        .iter()
        .map(|path| outbox_lines(path).len())
        .collect();
    for (path, before) in outbox_paths.iter().zip(counts) {
        wait_for_traffic(path, before, "a host");
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }

    let tally = tally.lock().unwrap();
    eprintln!(
        "answers: {}, sends 200: {}, codes verified: {}, JSON 503 during the database restart: {}",
        tally.answers,
        tally.sent.len(),
        tally.verified.len(),
        tally.answered_during_outage
    );
    assert!(
        tally.failures.is_empty(),
        "{} requests failed over the host restarts: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(5)]
    );
    assert!(
        tally.wrong_during_outage.is_empty(),
        "during the database restart, answers other than the host's JSON 503: {:?}",
        &tally.wrong_during_outage[..tally.wrong_during_outage.len().min(5)]
    );
    assert!(tally.sent.len() > 20 && !tally.verified.is_empty());

    // Every send answered 200 is in the outboxes exactly once; no send went out twice.
    let mut sends: BTreeMap<String, usize> = BTreeMap::new();
    let mut issued: BTreeMap<String, usize> = BTreeMap::new();
    for path in &outbox_paths {
        for line in e2e_tests::outbox_lines(path) {
            let code = line["payload"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if line["to"] == PHONE {
                *sends.entry(code).or_default() += 1;
            } else {
                let phone = line["to"].as_str().unwrap_or_default().to_owned();
                *issued.entry(phone).or_default() += 1;
            }
        }
    }
    let doubled: Vec<_> = sends
        .iter()
        .filter(|(code, count)| **count > 1 && code.as_str() != "999999")
        .collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
    let lost: Vec<_> = tally
        .sent
        .iter()
        .filter(|code| !sends.contains_key(*code))
        .collect();
    assert!(lost.is_empty(), "answered 200 but never sent: {lost:?}");
    let issued_twice: Vec<_> = issued.iter().filter(|(_, count)| **count > 1).collect();
    assert!(issued_twice.is_empty(), "{issued_twice:?}");
    for phone in &tally.verified {
        assert_eq!(issued.get(phone), Some(&1), "{phone}");
    }
}

/// A host started while PostgreSQL is down does not exit: it waits, naming the database's
/// host and port, answers `/health` and `/ready` (503 `starting`) and everything else with a
/// JSON 503 meanwhile, and serves once the database is back.
#[test]
fn a_host_started_while_postgres_is_down_waits_for_it_and_names_it() {
    let database = SharedDatabase::on_new_cluster();
    database.cluster.stop();
    let folders = HostFolders::on_database(&[("mock.so", &plugin_file("mock_sms"))], &database);
    let log_path = folders.scratch_path("host.log");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let starting = std::thread::spawn(move || {
        folders.start_with_args(&[
            "--admin-key",
            ADMIN_KEY,
            "--send-key",
            SEND_KEY,
            "--listen",
            &listen,
        ])
    });
    let target = database
        .url
        .split('@')
        .nth(1)
        .or_else(|| database.url.strip_prefix("postgres://"))
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in the URL")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = format!("cannot reach PostgreSQL at {target}");
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        // Two attempts logged: it waits rather than exits.
        if log.matches(&expected).count() >= 2 {
            assert!(!log.contains("db error\""), "{log}");
            assert!(
                !log.contains("Error occurred while creating a new object"),
                "{log}"
            );
            break;
        }
        assert!(!starting.is_finished(), "the host ended:\n{log}");
        assert!(
            Instant::now() < deadline,
            "no attempt naming {target}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Listening meanwhile: alive, not ready, and every other request a JSON 503.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str| {
        let mut response = agent
            .get(format!("http://127.0.0.1:{port}{path}"))
            .call()
            .expect("the host answers while it starts");
        let body: Value = response.body_mut().read_json().expect("JSON");
        (response.status().as_u16(), body)
    };
    let (status, health) = get("/health");
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("starting")),
        "{health}"
    );
    let (status, ready) = get("/ready");
    assert_eq!(
        (status, ready["failed"].as_str()),
        (503, Some("starting")),
        "{ready}"
    );
    let front = format!("http://127.0.0.1:{port}");
    let answer = post(
        &agent,
        &format!("{front}/api/messages"),
        &json!({"to": PHONE, "payload": {"code": "123456"}}),
    )
    .expect("an answer");
    assert!(
        answer.is_store_unavailable(),
        "{} {}",
        answer.status,
        answer.body
    );

    database.cluster.restart();
    let host = starting.join().expect("the host started");
    assert_eq!(host.request("GET", "/ready", None, None).0, 200);
    let (status, health) = host.request("GET", "/health", None, None);
    assert_eq!(
        (status, health["store"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    assert!(host.log().contains("PostgreSQL is reachable"));
}

const REQUEST_BUILDING: &str = "request-building-test-connector";

/// A host (its own store, no balancer) whose live connector sends to `provider`.
fn host_sending_to(provider: &CaptureServer, extra_args: &[&str]) -> TestHost {
    let folders =
        HostFolders::new(&[("rb.so", &plugin_file("fixture_request_building_connector"))]);
    let mut args = vec!["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY];
    args.extend_from_slice(extra_args);
    let host = folders.start_with_args(&args);
    let config = json!({
        "endpoint": format!("{}/sms", provider.url),
        "authorization": "Bearer provider-token",
        "templates": [{"usageType": "Generic", "content": "{{code}}"}]
    });
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": REQUEST_BUILDING, "config": config}),
    );
    assert_eq!(status, 200, "{body}");
    host
}

/// A send on its own thread; its status, or why there was none.
fn send_in_background(host: &TestHost) -> std::thread::JoinHandle<Result<u16, String>> {
    let url = format!("{}/api/messages", host.base_url);
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        post(
            &agent,
            &url,
            &json!({"to": PHONE, "payload": {"code": "123456"}}),
        )
        .map(|answer| answer.status)
    })
}

/// Until the provider has the request: the send is in flight.
fn until_in_flight(provider: &CaptureServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while provider.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the send never reached the provider"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then (bounded polling) the exit; the log.
fn sigterm_and_wait_for_exit(host: &mut TestHost) -> String {
    let killed = Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while host.is_running() {
        assert!(Instant::now() < deadline, "no exit:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    host.log()
}

/// SIGTERM with a send in flight: the send finishes (200, not cut), then the host exits and
/// says what it drained.
#[test]
fn sigterm_lets_a_send_in_flight_finish() {
    let provider = CaptureServer::start_with_delay(200, "{}", Duration::from_secs(2));
    let mut host = host_sending_to(&provider, &["--drain-grace-secs", "0"]);
    let sending = send_in_background(&host);
    until_in_flight(&provider);
    let log = sigterm_and_wait_for_exit(&mut host);
    assert_eq!(sending.join().unwrap(), Ok(200), "{log}");
    assert!(
        log.contains("drained: every request in flight finished")
            && log.contains("in_flight_at_stop=1"),
        "{log}"
    );
}

/// A send that outlasts `--shutdown-timeout-secs` does not keep the host from exiting.
#[test]
fn the_shutdown_timeout_bounds_the_exit() {
    let provider = CaptureServer::start_with_delay(200, "{}", Duration::from_secs(60));
    let mut host = host_sending_to(
        &provider,
        &[
            "--drain-grace-secs",
            "0",
            "--shutdown-timeout-secs",
            "1",
            "--request-timeout-secs",
            "60",
            "--api-request-timeout-secs",
            "90",
        ],
    );
    let sending = send_in_background(&host);
    until_in_flight(&provider);
    let log = sigterm_and_wait_for_exit(&mut host);
    assert!(
        log.contains("requests still running after --shutdown-timeout-secs"),
        "{log}"
    );
    // The client learns it by a closed connection, not a hang.
    assert!(sending.join().unwrap().is_err());
}
