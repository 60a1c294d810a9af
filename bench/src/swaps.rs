//! The `swaps` scenario: sends at full speed (wrk) while the live connector is changed (create,
//! enable, PATCH in turn) 100 times a second, then as fast as the API answers, against the
//! same load without swaps; then RSS across thousands of swaps between two loaded connectors.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::plugins::resident_set_kib;
use crate::{post, run_wrk, start_host, WrkResult, MOCK};

fn mock_config(marker: u64) -> Value {
    json!({"templates": [{"usageType": "Generic", "content": format!("Your code is {{{{code}}}} ({marker})")}], "outbox": false})
}

fn create(url: &str, marker: u64) -> Result<String, String> {
    let (status, body) = post(
        url,
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": mock_config(marker)}),
    );
    match (status, body["id"].as_str()) {
        (200, Some(id)) => Ok(id.to_owned()),
        _ => Err(format!("create failed: {status} {body}")),
    }
}

/// Live-connector changes at most this often in the paced run: 1,000 in a 10-second run,
/// the count. (The unpaced run after it is a stress test beyond that.)
const PACED_SWAPS_PER_SECOND: u32 = 100;

struct LoadDuringSwaps {
    load: WrkResult,
    swaps: u64,
    swap_failures: u64,
}

/// Runs wrk while another thread changes the live connector (create, enable, PATCH in turn),
/// `swaps_per_second` at most, or as fast as the API answers when `None`.
fn load_during_swaps(
    url: &str,
    (first, second): (&str, &str),
    swaps_per_second: Option<u32>,
    duration_secs: u64,
    connections: u32,
) -> Result<LoadDuringSwaps, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swap_failures = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (url, stop, swaps, swap_failures) = (
            url.to_owned(),
            Arc::clone(&stop),
            Arc::clone(&swaps),
            Arc::clone(&swap_failures),
        );
        let (first, second) = (first.to_owned(), second.to_owned());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(rate) = swaps_per_second {
                    let due = started + Duration::from_secs_f64(round as f64 / f64::from(rate));
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                let target = if round % 2 == 1 { &second } else { &first };
                let status = match round % 3 {
                    0 => create(&url, round).map(|_| 200).unwrap_or(0),
                    1 => {
                        post(
                            &url,
                            &format!("/api/connectors/{target}/enable"),
                            &json!({}),
                        )
                        .0
                    }
                    _ => {
                        crate::patch(
                            &url,
                            &format!("/api/connectors/{target}"),
                            &json!({"config": mock_config(round)}),
                        )
                        .0
                    }
                };
                if status == 200 {
                    swaps.fetch_add(1, Ordering::Relaxed);
                } else {
                    swap_failures.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        })
    };
    let load = run_wrk(url, duration_secs, connections);
    stop.store(true, Ordering::Relaxed);
    let _ = swapper.join();
    Ok(LoadDuringSwaps {
        load: load?,
        swaps: swaps.load(Ordering::Relaxed),
        swap_failures: swap_failures.load(Ordering::Relaxed),
    })
}

pub fn bench_swaps(
    release: &Path,
    duration_secs: u64,
    connections: u32,
    rss_swaps: u64,
) -> Result<(), String> {
    let host = start_host(release, false)?;
    let first = create(&host.url, 0)?;
    let second = create(&host.url, 1)?;

    let steady = run_wrk(&host.url, duration_secs, connections)?;
    let pair = (first.as_str(), second.as_str());
    let paced = load_during_swaps(
        &host.url,
        pair,
        Some(PACED_SWAPS_PER_SECOND),
        duration_secs,
        connections,
    )?;
    let unpaced = load_during_swaps(&host.url, pair, None, duration_secs, connections)?;

    println!("POST /api/messages during live-connector swaps (create, enable, PATCH in turn), wrk -c{connections} -d{duration_secs}s");
    println!("| load | requests/s | p50 ms | p99 ms | failed | p99 / steady p99 |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| steady | {:.0} | {:.3} | {:.3} | {} | |",
        steady.requests_per_second, steady.p50_ms, steady.p99_ms, steady.failed
    );
    for (label, run) in [
        (format!("{PACED_SWAPS_PER_SECOND} swaps/s"), &paced),
        ("as fast as the API answers".to_owned(), &unpaced),
    ] {
        println!(
            "| during {} swaps, {label} | {:.0} | {:.3} | {:.3} | {} | {:.2} |",
            run.swaps,
            run.load.requests_per_second,
            run.load.p50_ms,
            run.load.p99_ms,
            run.load.failed,
            run.load.p99_ms / steady.p99_ms
        );
    }

    // RSS across many swaps between the same two loaded connectors.
    let pid = host.child.id();
    let mut rss = vec![(0u64, resident_set_kib(pid))];
    for round in 1..=rss_swaps {
        let target = if round % 2 == 0 { &first } else { &second };
        let (status, body) = post(
            &host.url,
            &format!("/api/connectors/{target}/enable"),
            &json!({}),
        );
        if status != 200 {
            return Err(format!("enable failed: {status} {body}"));
        }
        if round % (rss_swaps / 4).max(1) == 0 {
            rss.push((round, resident_set_kib(pid)));
        }
    }
    let samples: Vec<String> = rss
        .iter()
        .map(|(round, kib)| format!("{round}: {kib} KiB"))
        .collect();
    println!(
        "RSS across {rss_swaps} swaps between two loaded connectors: {}",
        samples.join(", ")
    );

    let failed_sends = paced.load.failed + unpaced.load.failed;
    let failed_swaps = paced.swap_failures + unpaced.swap_failures;
    if failed_sends + failed_swaps > 0 {
        return Err(format!(
            "{failed_sends} sends and {failed_swaps} swaps failed"
        ));
    }
    Ok(())
}
