//! `--plugin-isolation process` end to end: a fixture plugin misbehaves as its config says
//! (segfault, abort, stack overflow, endless loop, unbounded allocation, a file, a socket, a
//! thread, a program, stdin), one behaviour per test. Each time the host keeps serving (its
//! health, another plugin's connector), the offending send gets a clear 502 naming what
//! happened, nothing reaches the provider, and the worker is replaced.

use std::time::Duration;

use e2e_tests::{
    plugin_file, CaptureServer, HostFolders, TestHost, ADMIN_KEY, SEND_KEY, UNLIMITED_FLOOD_FLAGS,
};
use serde_json::{json, Value};

const PHONE: &str = "+12015550123";
const MISBEHAVING: &str = "misbehaving-test-connector";

fn isolated_host(extra: &[&str]) -> TestHost {
    let mut args = vec![
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--plugin-isolation",
        "process",
        "--plugin-call-timeout-ms",
        "500",
        "--protection",
        "off",
    ];
    args.extend_from_slice(&UNLIMITED_FLOOD_FLAGS);
    args.extend_from_slice(extra);
    HostFolders::new(&[
        (
            "misbehaving.so",
            &plugin_file("fixture_misbehaving_connector"),
        ),
        ("http.so", &plugin_file("http_sms")),
    ])
    .start_with_args(&args)
}

fn send(host: &TestHost) -> (u16, Value) {
    host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "424242"}})),
    )
}

fn create(host: &TestHost, factory_id: &str, config: Value) -> String {
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": factory_id, "config": config}),
    );
    assert_eq!(status, 200, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

fn plugin_row(host: &TestHost, factory_id: &str) -> Value {
    let (status, files) = host.get("/api/plugins");
    assert_eq!(status, 200, "{files}");
    files
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["factoryId"] == factory_id && row["status"] == "loaded")
        .cloned()
        .unwrap_or_else(|| panic!("no loaded row for {factory_id}: {files}"))
}

/// The whole check for one behaviour at the first step: `reason` is a part of what the
/// answer and `/api/plugins` say happened.
fn contained(behaviour: &str, reason: &str) {
    let provider = CaptureServer::start(200, "{}");
    let host = isolated_host(&[]);
    let well_behaved = create(
        &host,
        "http-sms",
        json!({"endpoint": format!("{}/send", provider.url)}),
    );
    let misbehaving = create(
        &host,
        MISBEHAVING,
        json!({"endpoint": format!("{}/send", provider.url), "behaviour": behaviour}),
    );

    for attempt in 1..=2 {
        let (status, error) = send(&host);
        assert_eq!(status, 502, "send {attempt}: {error}");
        assert_eq!(error["code"], "connector.general", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("again on a fresh worker") && message.contains(reason),
            "send {attempt} names what happened ({reason}): {error}"
        );
        assert_eq!(
            error["data"]["providerAccepted"], false,
            "nothing was sent: {error}"
        );
    }
    assert_eq!(provider.requests().len(), 0, "nothing reached the provider");

    // The host serves on: its health, and another plugin's connector.
    let (status, health) = host.get("/health");
    assert_eq!(status, 200, "{health}");
    let row = plugin_row(&host, MISBEHAVING);
    assert_eq!(row["isolation"], "process", "{row}");
    assert!(
        row["workers"]["restarts"].as_u64().unwrap() >= 2,
        "each failed call was replaced: {row}"
    );
    assert!(
        row["workers"]["lastCrash"]["reason"]
            .as_str()
            .unwrap()
            .contains(reason),
        "{row}"
    );
    assert_eq!(
        host.post(
            &format!("/api/connectors/{well_behaved}/enable"),
            &json!({})
        )
        .0,
        200
    );
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(provider.requests().len(), 1);
    assert_eq!(plugin_row(&host, "http-sms")["isolation"], "process");

    // A fresh worker serves the misbehaving plugin's config checks (a worker was replaced,
    // the plugin is not refused for good).
    assert_eq!(
        host.post(&format!("/api/connectors/{misbehaving}/enable"), &json!({}))
            .0,
        200
    );
    assert!(host.log().contains("a plugin worker failed during a call"));
}

#[test]
fn a_segfault_is_contained() {
    contained("segfault", "SIGSEGV");
}

#[test]
fn an_abort_is_contained() {
    contained("abort", "SIGABRT");
}

#[test]
fn a_stack_overflow_is_contained() {
    contained("stack_overflow", "stack overflow");
}

#[test]
fn an_endless_loop_is_killed_at_the_deadline() {
    contained("loop", "did not answer within 500 ms");
}

#[test]
fn an_unbounded_allocation_stops_at_the_memory_limit() {
    contained("allocate", "memory allocation of 67108864 bytes failed");
}

#[test]
fn opening_a_file_kills_the_worker() {
    contained("open_file", "SIGSYS");
}

#[test]
fn opening_a_socket_kills_the_worker() {
    contained("open_socket", "SIGSYS");
}

#[test]
fn spawning_a_thread_kills_the_worker() {
    contained("spawn_thread", "SIGSYS");
}

#[test]
fn running_a_program_kills_the_worker() {
    contained("exec", "SIGSYS");
}

#[test]
fn reading_stdin_kills_the_worker() {
    // The frames have descriptors of their own; stdin is /dev/null and reading it is refused.
    contained("read_stdin", "SIGSYS");
}

/// A worker that dies reading the provider's answer: the request went out, so the replay
/// computes the same step on a fresh worker from the same answer (it never sends again);
/// when that fails too, the provider may have the message.
#[test]
fn a_crash_after_the_request_went_out_never_sends_twice() {
    let provider = CaptureServer::start(200, "{}");
    let host = isolated_host(&[]);
    create(
        &host,
        MISBEHAVING,
        json!({"endpoint": format!("{}/send", provider.url), "behaviour": "abort", "stage": "resume"}),
    );
    let (status, error) = send(&host);
    assert_eq!(
        (
            status,
            error["code"].clone(),
            error["data"]["providerContacted"].clone()
        ),
        (504, json!("connector.outcome_unknown"), json!(true)),
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("SIGABRT"),
        "{error}"
    );
    assert_eq!(provider.requests().len(), 1, "the request went out once");
}

/// A worker that dies on a step is replaced and the step replayed on the fresh one: the
/// send succeeds, once.
#[test]
fn a_step_replayed_on_a_fresh_worker_succeeds_and_sends_once() {
    let provider = CaptureServer::start(200, "{}");
    let host = isolated_host(&["--plugin-workers", "1"]);
    create(
        &host,
        MISBEHAVING,
        json!({"endpoint": format!("{}/send", provider.url), "behaviour": "crash_every_second_step"}),
    );
    for sent_count in 1..=4 {
        let (status, sent) = send(&host);
        assert_eq!(status, 200, "{sent}");
        assert_eq!(provider.requests().len(), sent_count);
    }
    let row = plugin_row(&host, MISBEHAVING);
    assert!(row["workers"]["restarts"].as_u64().unwrap() >= 1, "{row}");
    assert!(
        row["workers"]["lastCrash"]["reason"]
            .as_str()
            .unwrap()
            .contains("SIGABRT"),
        "{row}"
    );
    assert_eq!(row["workers"]["workers"], 1, "{row}");
    // The replacements come back within the backoff: a send after them is not refused.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(send(&host).0, 200);
}

/// A caller that goes away during an endless loop (its request cancelled) hands the call's
/// deadline to the pool, which still kills the worker at it: the calls queued behind are not
/// held up for ever. In the host's library, one worker, two connectors of the same build.
#[test]
fn a_loop_whose_caller_went_away_is_still_killed_at_its_deadline() {
    use connector_host::isolation::pool::WorkerSettings;
    use connector_host::plugins::loader::PluginLoader;
    use plugin_api::{SendContext, SmsMessage, TemplateType};

    let scratch = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let copies = scratch.path().to_owned();
    runtime.block_on(async move {
        let instances = tokio::task::spawn_blocking(move || {
            let loader =
                PluginLoader::new(copies, None)
                    .unwrap()
                    .with_workers(Some(WorkerSettings {
                        executable: e2e_tests::host_binary(),
                        workers_per_build: 1,
                        call_timeout: Duration::from_millis(500),
                        load_timeout: Duration::from_secs(10),
                        memory_limit_bytes: 1 << 30,
                    }));
            let plugin = loader
                .load(&plugin_file("fixture_misbehaving_connector"))
                .unwrap();
            let endpoint = "http://127.0.0.1:9/send";
            let looping = plugin
                .module
                .instantiate(&json!({"endpoint": endpoint, "behaviour": "loop"}))
                .unwrap();
            let behaving = plugin
                .module
                .instantiate(&json!({"endpoint": endpoint, "behaviour": "none"}))
                .unwrap();
            (plugin, looping, behaving)
        })
        .await
        .unwrap();
        let (plugin, looping, behaving) = instances;
        let message = SmsMessage::new(PHONE, TemplateType::SignIn, json!({"code": "1"}));
        let context = SendContext::new("01a24e0c-6a74-709c-84c5-47b6ac7453b3", None);

        // The loop's caller gives up long before the deadline.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            looping.start(&message, &context, None),
        )
        .await;
        assert!(gave_up.is_err(), "the loop answered: {gave_up:?}");
        // Queued behind the loop on the only worker: answered by a fresh one.
        let step = tokio::time::timeout(
            Duration::from_secs(10),
            behaving.start(&message, &context, None),
        )
        .await
        .expect("the call behind the abandoned loop was answered");
        assert!(step.is_ok(), "{step:?}");
        let health = plugin.module.worker_health().expect("a worker pool");
        let reason = health
            .last_crash
            .map(|crash| crash.reason)
            .unwrap_or_default();
        assert!(
            reason.contains("did not answer within 500 ms"),
            "killed at the loop's deadline: {reason}"
        );
    });
}

/// A host with one worker per build and the fixture live, behaving: its provider, the host
/// and the provider's endpoint (for console tests of misbehaving configs on the same build).
fn one_worker_sending_well() -> (CaptureServer, TestHost, String) {
    let provider = CaptureServer::start(200, "{}");
    let host = isolated_host(&["--plugin-workers", "1"]);
    let endpoint = format!("{}/send", provider.url);
    create(
        &host,
        MISBEHAVING,
        json!({"endpoint": endpoint, "behaviour": "none"}),
    );
    (provider, host, endpoint)
}

/// A send queued on a worker behind an endless loop (a console test of a bad config, same
/// build, one worker) was never begun: it goes to a fresh worker, its deadline unspent and
/// its replay unused, and is sent once. The loop alone fails, at its own deadline.
#[test]
fn a_send_queued_behind_an_endless_loop_is_answered_by_a_fresh_worker() {
    let (provider, host, endpoint) = one_worker_sending_well();
    assert_eq!(send(&host).0, 200);
    for round in 1..=3 {
        let (looped, sent) = std::thread::scope(|scope| {
            let looping = scope.spawn(|| {
                host.post(
                    &format!("/api/connectors/{MISBEHAVING}/test"),
                    &json!({"phone": PHONE, "config": {"endpoint": endpoint, "behaviour": "loop"}}),
                )
            });
            // The loop is on the worker by now; the send queues behind it.
            std::thread::sleep(Duration::from_millis(150));
            let sent = send(&host);
            (looping.join().unwrap(), sent)
        });
        assert!(looped.0 >= 400, "round {round}: {looped:?}");
        assert!(
            looped
                .1
                .to_string()
                .contains("did not answer within 500 ms"),
            "round {round}: {looped:?}"
        );
        assert_eq!(sent.0, 200, "round {round}: {}", sent.1);
        assert_eq!(provider.requests().len(), 1 + round, "sent once each");
    }
}

/// A worker that died is replaced in the background, without waiting for the next call:
/// the pool is back to strength before a send needs it.
#[test]
fn a_crashed_worker_is_replaced_before_the_next_call() {
    let (provider, host, endpoint) = one_worker_sending_well();
    let (status, body) = host.post(
        &format!("/api/connectors/{MISBEHAVING}/test"),
        &json!({"phone": PHONE, "config": {"endpoint": endpoint, "behaviour": "segfault"}}),
    );
    assert!(
        status >= 400 && body.to_string().contains("SIGSEGV"),
        "{status} {body}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let workers = plugin_row(&host, MISBEHAVING)["workers"].clone();
        let replaced = workers["running"] == 1 && workers["restarts"].as_u64() >= Some(2);
        if replaced || std::time::Instant::now() > deadline {
            break workers;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(workers["running"], 1, "replaced without a call: {workers}");
    assert!(workers["restarts"].as_u64().unwrap() >= 2, "{workers}");
    assert_eq!(provider.requests().len(), 0);
}

/// A plugin that prints to stdout (a vendor's debugging): the worker's frames have a pipe of
/// their own, so the output goes to the host's log and the send succeeds.
#[test]
fn a_plugin_printing_to_stdout_does_not_break_its_worker() {
    let provider = CaptureServer::start(200, "{}");
    let host = isolated_host(&[]);
    create(
        &host,
        MISBEHAVING,
        json!({"endpoint": format!("{}/send", provider.url), "behaviour": "print"}),
    );
    for sent_count in 1..=3 {
        let (status, sent) = send(&host);
        assert_eq!(status, 200, "{sent}");
        assert_eq!(provider.requests().len(), sent_count);
    }
    host.log_eventually(|log| log.contains("debug output from the plugin"));
    assert_eq!(plugin_row(&host, MISBEHAVING)["workers"]["restarts"], 0);
}

/// The worker processes of `host` and the private copies (`<sha256>.so`) each has mapped.
fn workers_and_their_builds(host: &TestHost) -> Vec<(u32, Vec<String>)> {
    let host_pid = host.pid().to_string();
    let mut workers = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The field after the parenthesised name: state, then the parent's pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if parent.as_deref() != Some(host_pid.as_str())
            || !String::from_utf8_lossy(&cmdline).contains("plugin-worker")
        {
            continue;
        }
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let mut builds: Vec<String> = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .filter(|path| path.contains("plugin-copies"))
            .map(|path| {
                path.rsplit('/')
                    .next()
                    .unwrap_or(path)
                    .trim_end_matches(".so")
                    .to_owned()
            })
            .collect();
        builds.dedup();
        workers.push((pid, builds));
    }
    workers
}

/// An upgrade retires the old build: once nothing serves from it, its workers end (and
/// their memory with them), which in-process, where libraries are never unloaded, cannot be.
#[test]
fn a_retired_build_s_workers_end() {
    let host = isolated_host(&[]);
    let provider = CaptureServer::start(200, "{}");
    create(
        &host,
        "http-sms",
        json!({"endpoint": format!("{}/send", provider.url)}),
    );
    assert_eq!(send(&host).0, 200);
    let old_build = plugin_row(&host, "http-sms")["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let mapping_old = |host: &TestHost| {
        workers_and_their_builds(host)
            .into_iter()
            .filter(|(_, builds)| builds.contains(&old_build))
            .count()
    };
    assert!(
        mapping_old(&host) >= 1,
        "{:?}",
        workers_and_their_builds(&host)
    );

    // A new build of the same factory: http-sms with bytes appended (another digest, the same
    // code), renamed over the file.
    let next = host.folders().scratch_path("http-next.so");
    let mut content = std::fs::read(plugin_file("http_sms")).unwrap();
    content.extend_from_slice(b"\0another build");
    std::fs::write(&next, content).unwrap();
    let temporary = host.plugins_dir.join(".http.so.tmp");
    std::fs::copy(&next, &temporary).unwrap();
    std::fs::rename(&temporary, host.plugins_dir.join("http.so")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row = plugin_row(&host, "http-sms");
        if row["sha256"] != old_build.as_str() && mapping_old(&host) == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old build's workers still run: {row} {:?}",
            workers_and_their_builds(&host)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, sent) = send(&host);
    assert_eq!(
        status, 200,
        "the live connector moved to the new build: {sent}"
    );
    assert_eq!(provider.requests().len(), 2);
}
