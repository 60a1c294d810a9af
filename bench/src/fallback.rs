//! The `fallback` scenario: what a send costs once the breaker is open. One host's live
//! connector is the HTTP gateway pointed where nothing listens, with the mock as its standby
//! and the breaker opened (a cool-off longer than the run): every send goes straight to the
//! standby. The other host's live connector is the same mock. Same wrk load, alternating
//! rounds; the target is on the p99 the open breaker adds.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    compare_alternating, get, install, post, start_host_with_args, Comparison, Recipients, Server,
    MOCK,
};

/// The target: the p99 an open breaker adds, in ms.
pub(crate) const P99_ADDED_TARGET_MS: f64 = 5.0;

fn mock_config() -> Value {
    json!({"templates": [{"usageType": "Generic", "content": "Your verification code is {{code}}."}], "outbox": false})
}

const NOTHING_REFUSED: [&str; 8] = [
    "--max-sends-per-recipient=4000000000",
    "--resend-cooldown-secs=0",
    "--send-window-secs=1",
    "--protection=off",
    "--message-log=off",
    "--fallback-after-failures=1",
    "--fallback-cool-off-secs=3600",
    "--request-timeout-secs=2",
];

fn host(release: &Path) -> Result<Server, String> {
    let args: Vec<String> = NOTHING_REFUSED
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    start_host_with_args(release, None, "libmock_sms.so", MOCK, &mock_config(), &args)
}

/// The mock (live since start-up) becomes the standby of an HTTP gateway connector whose
/// provider is down, and one send opens the breaker.
fn open_the_breaker(release: &Path, host: &Server) -> Result<(), String> {
    let (_, live) = get(&host.url, "/api/connectors");
    let mock_id = live[0]["id"]
        .as_str()
        .ok_or_else(|| format!("no live mock: {live}"))?
        .to_owned();
    install(
        &release.join("libhttp_sms.so"),
        &host.plugins_dir()?,
        "libhttp_sms.so",
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&host.url, "/api/connector-factories/http-sms").0 != 200 {
        if Instant::now() > deadline {
            return Err("the HTTP gateway plugin was not picked up".to_owned());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| error.to_string())?
        .port();
    let (status, body) = post(
        &host.url,
        "/api/connectors",
        &json!({"connectorId": "http-sms", "config": {"endpoint": format!("http://127.0.0.1:{closed_port}/send")}}),
    );
    if status != 200 {
        return Err(format!(
            "cannot create the gateway connector: {status} {body}"
        ));
    }
    let (status, body) = post(
        &host.url,
        &format!("/api/connectors/{mock_id}/fallback"),
        &json!({}),
    );
    if status != 200 {
        return Err(format!("cannot mark the fallback: {status} {body}"));
    }
    let (status, body) = post(
        &host.url,
        "/api/messages",
        &json!({"to": "+12015550123", "payload": {"code": "123456"}}),
    );
    if status != 200 || body["fallbackReason"] != "unreachable" {
        return Err(format!("the first send did not fail over: {status} {body}"));
    }
    let (_, health) = get(&host.url, "/health");
    if health["fallback"]["breaker"]["state"] != "open" {
        return Err(format!("the breaker is not open: {health}"));
    }
    Ok(())
}

pub(crate) fn bench_fallback(
    release: &Path,
    duration_secs: u64,
    connections: u32,
) -> Result<Comparison, String> {
    let open = host(release)?;
    open_the_breaker(release, &open)?;
    let mock_live = host(release)?;
    println!("POST /api/messages, random US numbers: breaker open (the standby mock sends) vs the mock live");
    compare_alternating(
        ("breaker open", &open),
        ("mock live", &mock_live),
        duration_secs,
        connections,
        Recipients::Spread,
    )
}
