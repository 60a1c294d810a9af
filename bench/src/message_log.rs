//! The `message-log` scenario: what the message log costs a send. The same wrk load (random
//! US numbers) through the mock connector against a host that logs every send and builds
//! its delivery-report URL (`--public-url`), and one with `--message-log off`, alternating
//! rounds. Each logged send queues its message before the send and its outcome after; the
//! log's writer writes what is queued in batches (one job of the SQLite writer per batch).

use std::path::Path;

use serde_json::{json, Value};

use crate::{compare_alternating, start_host_with_args, Comparison, Recipients, Server, MOCK};

/// The target: sends/s with the log at least this share of sends/s without.
pub(crate) const LOGGED_OVER_OFF_TARGET: f64 = 0.9;

fn mock_config() -> Value {
    json!({"templates": [{"usageType": "Generic", "content": "Your verification code is {{code}}."}], "outbox": false})
}

fn host(release: &Path, args: &[&str]) -> Result<Server, String> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    start_host_with_args(release, None, "libmock_sms.so", MOCK, &mock_config(), &args)
}

/// The per-recipient limit and the protection out of the way, as in the other send benchmarks.
const NOTHING_REFUSED: [&str; 4] = [
    "--max-sends-per-recipient=4000000000",
    "--resend-cooldown-secs=0",
    "--send-window-secs=1",
    "--protection=off",
];

pub(crate) fn bench_message_log(
    release: &Path,
    duration_secs: u64,
    connections: u32,
) -> Result<Comparison, String> {
    let mut logged_args = NOTHING_REFUSED.to_vec();
    logged_args.push("--public-url=https://sms.example.com");
    let logged = host(release, &logged_args)?;
    let mut off_args = NOTHING_REFUSED.to_vec();
    off_args.push("--message-log=off");
    let off = host(release, &off_args)?;
    println!("POST /api/messages, random US numbers: the message log on (with report URLs) vs off");
    compare_alternating(
        ("logged", &logged),
        ("off", &off),
        duration_secs,
        connections,
        Recipients::Spread,
    )
}
