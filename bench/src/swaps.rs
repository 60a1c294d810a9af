//! The `swaps` scenario: sends at full speed (wrk) while the live connector is changed as fast
//! as the API allows (create, enable, PATCH in turn), against the same load without swaps;
//! then RSS across thousands of swaps between two loaded connectors.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::plugins::resident_set_kib;
use crate::{post, run_wrk, start_host, MOCK};

fn mock_config(marker: u64) -> Value {
    json!({"templates": [{"usageType": "Generic", "content": format!("Your code is {{{{code}}}} ({marker})")}], "outbox": null})
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

pub fn bench_swaps(
    release: &Path,
    duration_secs: u64,
    connections: u32,
    rss_swaps: u64,
) -> Result<(), String> {
    let host = start_host(release, None)?;
    let first = create(&host.url, 0)?;
    let second = create(&host.url, 1)?;

    let steady = run_wrk(&host.url, duration_secs, connections)?;

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swap_failures = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (url, stop, swaps, swap_failures) = (
            host.url.clone(),
            Arc::clone(&stop),
            Arc::clone(&swaps),
            Arc::clone(&swap_failures),
        );
        let (first, second) = (first.clone(), second.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let target = if round % 2 == 0 { &first } else { &second };
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
    let during = run_wrk(&host.url, duration_secs, connections)?;
    stop.store(true, Ordering::Relaxed);
    let _ = swapper.join();
    let swap_count = swaps.load(Ordering::Relaxed);

    println!("POST /api/messages during live-connector swaps (create, enable, PATCH in turn), wrk -c{connections} -d{duration_secs}s");
    println!("| load | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|");
    println!(
        "| steady | {:.0} | {:.3} | {:.3} | {} |",
        steady.requests_per_second, steady.p50_ms, steady.p99_ms, steady.failed
    );
    println!(
        "| during {swap_count} swaps | {:.0} | {:.3} | {:.3} | {} |",
        during.requests_per_second, during.p50_ms, during.p99_ms, during.failed
    );
    println!(
        "p99 during swaps / steady p99: {:.2}",
        during.p99_ms / steady.p99_ms
    );

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

    let failures = during.failed + swap_failures.load(Ordering::Relaxed);
    if failures > 0 {
        return Err(format!(
            "{} sends and {} swaps failed",
            during.failed,
            swap_failures.load(Ordering::Relaxed)
        ));
    }
    Ok(())
}
