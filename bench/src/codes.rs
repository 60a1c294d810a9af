//! `bench codes`: verification codes on the embedded SQLite store, where every issue and every
//! verify is a durable write.
//!
//! 1. Codes issued per second against raw sends per second: wrk on
//!    `POST /api/verification-codes` and on `POST /api/messages`, distinct phones, same
//!    connections and duration, alternating rounds (the median ratio holds on a shared
//!    machine), mock connector with its outbox discarded. The gap is the store's commit rate.
//! 2. Codes issued and verified per second by 16 workers, each reading its code back from the
//!    host's outbox (where the mock connector writes), with the latency of the issue and of the verify calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{median, post, run_wrk_posting, start_host, Recipients, Server, WrkResult};

/// Issued codes per second over raw sends per second: an issue is a send plus one durable
/// write, so group commit must keep it within half of a bare send.
pub(crate) const ISSUED_OVER_RAW_TARGET: f64 = 0.5;
/// Issued + verified pairs per second (two durable writes each), 16 workers: three times the
/// 1,624 pairs/s measured before group commit (BENCHMARKS.md, 2026-11-26).
pub(crate) const CODE_PAIRS_PER_SECOND_TARGET: f64 = 3.0 * 1624.0;

/// What [`bench_codes`] measured.
pub(crate) struct CodesMeasurement {
    pub issued_over_raw: f64,
    pub pairs_per_second: f64,
    pub workers: u32,
}

pub(crate) fn bench_codes(
    release: &Path,
    duration_secs: u64,
    connections: u32,
) -> Result<CodesMeasurement, String> {
    let issued_over_raw = measure_issued_against_raw(release, duration_secs, connections)?;
    let workers = connections.min(16);
    let host = start_host(release, true)?;
    let outbox = host.outbox_path()?;
    println!("verification codes, {workers} workers, {duration_secs}s, embedded SQLite store, mock connector writing its outbox");
    let pairs_per_second = measure_code_pairs(&host, &outbox, duration_secs, workers)?;
    Ok(CodesMeasurement {
        issued_over_raw,
        pairs_per_second,
        workers,
    })
}

/// Alternating rounds of wrk issuing codes and wrk sending raw messages on one host; prints
/// each round and returns the median ratio issued/raw.
fn measure_issued_against_raw(
    release: &Path,
    duration_secs: u64,
    connections: u32,
) -> Result<f64, String> {
    let host = start_host(release, false)?;
    let issue = |seconds| {
        run_wrk_posting(
            &host.url,
            "/api/verification-codes",
            r#"{"phone": "{phone}"}"#,
            seconds,
            connections,
            Recipients::Distinct,
        )
    };
    let send = |seconds| {
        run_wrk_posting(
            &host.url,
            "/api/messages",
            r#"{"to": "{phone}", "type": "SignIn", "payload": {"code": "123456"}}"#,
            seconds,
            connections,
            Recipients::Distinct,
        )
    };
    let rounds = if duration_secs <= 1 { 1 } else { 3 };
    if rounds > 1 {
        // Warm-up: the phones' limiter entries, the store's pages.
        issue(1)?;
        send(1)?;
    }
    println!("codes issued vs raw sends, distinct phones, wrk -t2 -c{connections} -d{duration_secs}s, {rounds} rounds alternating, mock connector, outbox discarded");
    println!("| round | route | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|---|");
    let (mut ratios, mut failed) = (Vec::new(), 0);
    for round in 1..=rounds {
        let issued = issue(duration_secs)?;
        let raw = send(duration_secs)?;
        for (route, result) in [
            ("POST /api/verification-codes", &issued),
            ("POST /api/messages", &raw),
        ] {
            print_wrk_row(round, route, result);
        }
        ratios.push(issued.requests_per_second / raw.requests_per_second);
        failed += issued.failed + raw.failed;
    }
    let ratio = median(ratios);
    println!("ratio issued/raw (requests/s), median of {rounds}: {ratio:.2}");
    if failed > 0 {
        return Err(format!("{failed} requests failed"));
    }
    Ok(ratio)
}

fn print_wrk_row(round: u32, route: &str, result: &WrkResult) {
    println!(
        "| {round} | {route} | {:.0} | {:.3} | {:.3} | {} |",
        result.requests_per_second, result.p50_ms, result.p99_ms, result.failed
    );
}

/// Follows the host's outbox and hands each worker the code sent to its phone.
struct CodeMailbox {
    latest: Mutex<HashMap<String, String>>,
    arrived: Condvar,
}

fn follow_outbox(outbox: PathBuf, mailbox: Arc<CodeMailbox>, stop: Arc<AtomicBool>) {
    crate::outbox::follow_outbox(outbox, stop, Duration::from_micros(200), |updates| {
        mailbox
            .latest
            .lock()
            .map(|mut latest| latest.extend(updates))
            .ok();
        mailbox.arrived.notify_all();
    });
}

/// The wall time of each issue and each verify call of one worker.
#[derive(Default)]
struct CallLatencies {
    issue: Vec<Duration>,
    verify: Vec<Duration>,
}

/// Issues and verifies codes from `workers` threads for `duration_secs`; prints the pairs per
/// second and the latency of the issue and verify calls, and returns the pairs per second.
pub(crate) fn measure_code_pairs(
    host: &Server,
    outbox: &Path,
    duration_secs: u64,
    workers: u32,
) -> Result<f64, String> {
    let outbox = outbox.to_owned();
    let mailbox = Arc::new(CodeMailbox {
        latest: Mutex::new(HashMap::new()),
        arrived: Condvar::new(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (mailbox, stop, outbox) = (Arc::clone(&mailbox), Arc::clone(&stop), outbox.clone());
        std::thread::spawn(move || follow_outbox(outbox, mailbox, stop))
    };
    let verified = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(duration_secs);
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let (mailbox, verified, failures, url) = (
                Arc::clone(&mailbox),
                Arc::clone(&verified),
                Arc::clone(&failures),
                host.url.clone(),
            );
            std::thread::spawn(move || {
                let mut latencies = CallLatencies::default();
                // 201-555-01xx: numbers a strict validator accepts, one per worker.
                let phone = format!("+1201555{:04}", 100 + worker);
                let mut previous = String::new();
                while Instant::now() < deadline {
                    let issue_started = Instant::now();
                    let issued = post(&url, "/api/verification-codes", &json!({"phone": phone}));
                    latencies.issue.push(issue_started.elapsed());
                    if issued.0 != 204 {
                        failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let Ok(latest) = mailbox.latest.lock() else {
                        break;
                    };
                    let wait = mailbox.arrived.wait_timeout_while(
                        latest,
                        Duration::from_secs(5),
                        |latest| latest.get(&phone).is_none_or(|code| *code == previous),
                    );
                    let Ok((latest, _)) = wait else { break };
                    let code = latest.get(&phone).cloned().unwrap_or_default();
                    drop(latest);
                    previous = code.clone();
                    let body = json!({"phone": phone, "verificationCode": code});
                    let verify_started = Instant::now();
                    let verify_status = post(&url, "/api/verification-codes/verify", &body).0;
                    latencies.verify.push(verify_started.elapsed());
                    if verify_status == 204 {
                        verified.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut latencies = CallLatencies::default();
    for handle in handles {
        if let Ok(worker) = handle.join() {
            latencies.issue.extend(worker.issue);
            latencies.verify.extend(worker.verify);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = follower.join();
    let pairs = verified.load(Ordering::Relaxed);
    let pairs_per_second = pairs as f64 / elapsed;
    println!(
        "issued + verified: {pairs} pairs, {pairs_per_second:.0} pairs/s, failures: {}",
        failures.load(Ordering::Relaxed)
    );
    for (call, samples) in [
        ("issue", &mut latencies.issue),
        ("verify", &mut latencies.verify),
    ] {
        println!(
            "{call} latency: p50 {:.2} ms, p99 {:.2} ms ({} calls)",
            percentile_ms(samples, 0.5),
            percentile_ms(samples, 0.99),
            samples.len()
        );
    }
    if failures.load(Ordering::Relaxed) > 0 {
        return Err("some code requests failed".to_owned());
    }
    Ok(pairs_per_second)
}

/// The `fraction` percentile of `samples` (sorted in place), in milliseconds; NaN for none.
fn percentile_ms(samples: &mut [Duration], fraction: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
    samples
        .get(index.min(samples.len().saturating_sub(1)))
        .map(|sample| sample.as_secs_f64() * 1000.0)
        .unwrap_or(f64::NAN)
}
