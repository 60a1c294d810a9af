//! The `protection` scenario: what the SMS-pumping protection costs a send, and how much
//! memory a sustained flood to distinct numbers leaves behind.
//!
//! - **Cost**: the same wrk load (random US mobile numbers over ~12,000 prefixes, each from a
//!   random public IPv4 address given as `ip`) against a host in `enforce` and one with
//!   `--protection off`, alternating rounds. In `enforce` every layer is on and counting, with
//!   the velocity and first-seen thresholds raised so that nothing is refused: a refused send
//!   is cheaper than one that goes out and would flatter the ratio.
//! - **Memory**: a flood of the same load for six times `--duration-secs` against a host with
//!   the default protection (`enforce`, default thresholds, `--allowed-countries US`), then
//!   one with `--protection off`: RSS every 10 seconds, requests answered, and how many were
//!   refused. The protection's maps are capped (100,000 keys per layer); with it off, the
//!   per-recipient window holds every number sent to in the last `--send-window-secs`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::plugins::resident_set_kib;
use crate::{
    compare_alternating, get, run_wrk_with, start_host_with_args, Comparison, Recipients, Server,
    MOCK,
};

/// The target: sends/s in `enforce` at least this share of sends/s with it off.
pub(crate) const ENFORCE_OVER_OFF_TARGET: f64 = 0.8;

fn mock_config() -> Value {
    json!({"templates": [{"usageType": "Generic", "content": "Your verification code is {{code}}."}], "outbox": false})
}

fn host(release: &Path, args: &[&str]) -> Result<Server, String> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    start_host_with_args(release, None, "libmock_sms.so", MOCK, &mock_config(), &args)
}

/// Every layer counting, nothing refused; the per-recipient limit out of the way as in the
/// other send benchmarks.
const COUNTING_NOTHING_REFUSED: [&str; 8] = [
    "--allowed-countries=US",
    "--max-sends-per-recipient=4000000000",
    "--resend-cooldown-secs=0",
    "--send-window-secs=1",
    "--ip-velocity-max=4000000000",
    "--prefix-velocity-max=4000000000",
    "--first-seen-country-max=4000000000",
    "--daily-budget-per-country=4000000000000",
];

pub(crate) fn bench_protection(
    release: &Path,
    duration_secs: u64,
    connections: u32,
) -> Result<Comparison, String> {
    let enforce = host(release, &COUNTING_NOTHING_REFUSED)?;
    let mut off_args = COUNTING_NOTHING_REFUSED.to_vec();
    off_args.push("--protection=off");
    let off = host(release, &off_args)?;
    println!("POST /api/messages with `ip`, random US numbers and addresses: protection enforce (every layer counting, nothing refused) vs off");
    let comparison = compare_alternating(
        ("enforce", &enforce),
        ("off", &off),
        duration_secs,
        connections,
        Recipients::Spread,
    )?;
    drop((enforce, off));

    let flood_secs = duration_secs * 6;
    println!("\nflood: {flood_secs} s of sends to distinct numbers, wrk -t2 -c{connections}, RSS every 10 s (KiB)");
    println!("| protection | requests/s | refused | RSS at start | RSS over the flood | RSS at end | blocks listed |");
    println!("|---|---|---|---|---|---|---|");
    for (label, args) in [
        ("enforce, defaults", vec!["--allowed-countries=US"]),
        ("off", vec!["--allowed-countries=US", "--protection=off"]),
    ] {
        let server = host(release, &args)?;
        flood(&server, label, flood_secs, connections)?;
    }
    Ok(comparison)
}

/// One flood against `server`: wrk for `secs` while a thread samples RSS.
fn flood(server: &Server, label: &str, secs: u64, connections: u32) -> Result<(), String> {
    let pid = server.child.id();
    let start_kib = resident_set_kib(pid);
    let sampler = std::thread::spawn(move || {
        let started = Instant::now();
        let mut samples = Vec::new();
        while started.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_secs(10).min(Duration::from_secs(secs)));
            samples.push(resident_set_kib(pid));
        }
        samples
    });
    let load = run_wrk_with(&server.url, secs, connections, Recipients::Spread)?;
    let samples = sampler.join().map_err(|_| "the RSS sampler panicked")?;
    // Let the host finish what wrk left in flight before the last reading.
    std::thread::sleep(Duration::from_secs(1));
    let end_kib = resident_set_kib(pid);
    let blocks = get(&server.url, "/api/protection").1["blocks"]
        .as_array()
        .map_or(0, Vec::len);
    let requests = load.requests_per_second * secs as f64;
    println!(
        "| {label} | {:.0} | {} of {:.0} ({:.1} %) | {start_kib} | {} | {end_kib} | {blocks} |",
        load.requests_per_second,
        load.failed,
        requests,
        load.failed as f64 * 100.0 / requests.max(1.0),
        samples
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(())
}
