//! The `soak` scenario: for the whole duration, sends at full speed (wrk) while the live
//! connector is swapped every 100 ms and its plugin upgraded every 5 s (alternating two
//! builds); failed requests must stay 0 and RSS flat (sampled every 30 s).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::plugins::resident_set_kib;
use crate::{install, post, run_wrk, start_host, MOCK};

pub fn soak(release: &Path, duration_secs: u64, connections: u32) -> Result<(), String> {
    let host = start_host(release, false)?;
    let pid = host.child.id();
    let plugins = host.plugins_dir()?;
    let config =
        json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": false});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = post(
            &host.url,
            "/api/connectors",
            &json!({"connectorId": MOCK, "config": config}),
        );
        ids.push(
            body["id"]
                .as_str()
                .filter(|_| status == 200)
                .ok_or(format!("create failed: {body}"))?
                .to_owned(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (swaps, swap_failures, upgrades) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let rss = Arc::new(Mutex::new(vec![(0u64, resident_set_kib(pid))]));
    let started = Instant::now();
    let mut workers = Vec::new();
    {
        let (url, stop, swaps, swap_failures) = (
            host.url.clone(),
            Arc::clone(&stop),
            Arc::clone(&swaps),
            Arc::clone(&swap_failures),
        );
        workers.push(std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = post(
                    &url,
                    &format!("/api/connectors/{}/enable", ids[round % 2]),
                    &json!({}),
                );
                let counter = if status == 200 {
                    &swaps
                } else {
                    &swap_failures
                };
                counter.fetch_add(1, Ordering::Relaxed);
                round += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    {
        let (stop, upgrades) = (Arc::clone(&stop), Arc::clone(&upgrades));
        let builds = [
            release.join("libfixture_mock_sms_next.so"),
            release.join("libmock_sms.so"),
        ];
        workers.push(std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(5));
                if install(&builds[round % 2], &plugins, "libmock_sms.so").is_ok() {
                    upgrades.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        }));
    }
    {
        let (stop, rss) = (Arc::clone(&stop), Arc::clone(&rss));
        workers.push(std::thread::spawn(move || {
            let mut next_sample = Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) {
                if started.elapsed() >= next_sample {
                    rss.lock()
                        .map(|mut samples| {
                            samples.push((next_sample.as_secs(), resident_set_kib(pid)))
                        })
                        .ok();
                    next_sample += Duration::from_secs(30);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    let load = run_wrk(&host.url, duration_secs, connections);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let load = load?;
    let samples: Vec<String> = rss
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .map(|(second, kib)| format!("{second}s: {kib}"))
        .collect();
    println!(
        "soak {duration_secs}s: {:.0} sends/s, p50 {:.3} ms, p99 {:.3} ms, failed sends {}; {} swaps ({} failed); {} upgrades",
        load.requests_per_second,
        load.p50_ms,
        load.p99_ms,
        load.failed,
        swaps.load(Ordering::Relaxed),
        swap_failures.load(Ordering::Relaxed),
        upgrades.load(Ordering::Relaxed)
    );
    println!("RSS (KiB) over time: {}", samples.join(", "));
    if load.failed + swap_failures.load(Ordering::Relaxed) > 0 {
        return Err("requests failed during the soak".to_owned());
    }
    Ok(())
}
