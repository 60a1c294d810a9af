//! `bench postgres`: what sharing one PostgreSQL costs and gives. Sends/s and code pairs/s on
//! PostgreSQL against the embedded SQLite store (alternating rounds, distinct recipients, as
//! real traffic is: the shared limiter locks per phone), two hosts on one database against
//! one, and how long a change on one host takes to be served by the other (200 changes).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::postgres::PostgresCluster;
use e2e_tests::SharedDatabase;
use serde_json::{json, Value};

use crate::codes::measure_code_pairs;
use crate::{
    median, post, process_cpu_seconds, run_wrk_with, start_host_on, Recipients, Server, MOCK,
};

fn requests_and_cpu(
    server: &Server,
    duration_secs: u64,
    connections: u32,
) -> Result<(f64, f64, u64), String> {
    let cpu_before = process_cpu_seconds(server.child.id())?;
    let load = run_wrk_with(
        &server.url,
        duration_secs,
        connections,
        Recipients::Distinct,
    )?;
    let cpu = process_cpu_seconds(server.child.id())? - cpu_before;
    let requests = load.requests_per_second * duration_secs as f64;
    Ok((
        load.requests_per_second,
        cpu * 1e6 / requests.max(1.0),
        load.failed,
    ))
}

fn served_connector(url: &str) -> Option<String> {
    let mut response = ureq::get(format!("{url}/health")).call().ok()?;
    let health: Value = response.body_mut().read_json().ok()?;
    health["live"]["connectorId"].as_str().map(str::to_owned)
}

fn percentile_ms(samples: &mut [Duration], fraction: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
    samples[index.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

pub fn bench_postgres(release: &Path, duration_secs: u64, connections: u32) -> Result<(), String> {
    let cluster = Arc::new(PostgresCluster::start());
    let database = SharedDatabase::create(&cluster);

    // Sends: one SQLite host against one PostgreSQL host, alternating rounds.
    let sqlite_host = start_host_on(release, false, None)?;
    let postgres_host = start_host_on(release, false, Some(&database))?;
    for server in [&sqlite_host, &postgres_host] {
        run_wrk_with(&server.url, 1, connections, Recipients::Distinct)?;
    }
    let rounds = if duration_secs <= 1 { 1 } else { 3 };
    println!("POST /api/messages to 10,000 distinct phones, wrk -t2 -c{connections} -d{duration_secs}s, {rounds} rounds alternating, mock connector");
    println!("| round | store | requests/s | failed | server CPU µs/request |");
    println!("|---|---|---|---|---|");
    let mut ratios = Vec::new();
    let mut failed = 0;
    for round in 1..=rounds {
        let sqlite = requests_and_cpu(&sqlite_host, duration_secs, connections)?;
        let postgres = requests_and_cpu(&postgres_host, duration_secs, connections)?;
        for (name, (requests, cpu, failures)) in [("SQLite", sqlite), ("PostgreSQL", postgres)] {
            println!("| {round} | {name} | {requests:.0} | {failures} | {cpu:.1} |");
        }
        ratios.push(postgres.0 / sqlite.0);
        failed += sqlite.2 + postgres.2;
    }
    println!(
        "ratio PostgreSQL/SQLite (sends/s), median of {rounds}: {:.2}",
        median(ratios)
    );
    drop(sqlite_host);

    // Two hosts on the database against the one.
    let second_host = start_host_on(release, false, Some(&database))?;
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            run_wrk_with(
                &postgres_host.url,
                duration_secs,
                connections,
                Recipients::Distinct,
            )
        });
        let second = scope.spawn(|| {
            run_wrk_with(
                &second_host.url,
                duration_secs,
                connections,
                Recipients::Distinct,
            )
        });
        (first.join(), second.join())
    });
    let first = first.map_err(|_| "wrk thread panicked")??;
    let second = second.map_err(|_| "wrk thread panicked")??;
    println!(
        "two PostgreSQL hosts at once: {:.0} + {:.0} = {:.0} sends/s (one host above; both share this machine's 2 cores with PostgreSQL and wrk)",
        first.requests_per_second,
        second.requests_per_second,
        first.requests_per_second + second.requests_per_second
    );
    failed += first.failed + second.failed;

    // Propagation: a change on one host, served by the other.
    let changes = if duration_secs <= 1 { 20 } else { 200 };
    let mut delays = Vec::with_capacity(changes);
    for change in 0..changes {
        let config = json!({"templates": [{"usageType": "Generic", "content": format!("change {change} {{{{code}}}}")}], "outbox": false});
        let (status, body) = post(
            &postgres_host.url,
            "/api/connectors",
            &json!({"connectorId": MOCK, "config": config}),
        );
        let id = body["id"]
            .as_str()
            .filter(|_| status == 200)
            .ok_or_else(|| format!("change {change} failed: {status} {body}"))?
            .to_owned();
        let started = Instant::now();
        while served_connector(&second_host.url).as_deref() != Some(id.as_str()) {
            if started.elapsed() > Duration::from_secs(5) {
                return Err(format!("the second host never served change {change}"));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        delays.push(started.elapsed());
    }
    println!(
        "propagation over {changes} changes (LISTEN/NOTIFY): p50 {:.1} ms, p99 {:.1} ms",
        percentile_ms(&mut delays, 0.5),
        percentile_ms(&mut delays, 0.99)
    );
    drop(second_host);
    drop(postgres_host);

    // Code pairs: issue + verify, on each store.
    let workers = connections.min(16);
    let sqlite_codes = start_host_on(release, true, None)?;
    let sqlite_outbox = sqlite_codes.outbox_path()?;
    println!("verification codes, {workers} workers, {duration_secs}s, SQLite:");
    let sqlite_pairs = measure_code_pairs(&sqlite_codes, &sqlite_outbox, duration_secs, workers)?;
    drop(sqlite_codes);
    let postgres_codes = start_host_on(release, true, Some(&database))?;
    let postgres_outbox = postgres_codes.outbox_path()?;
    println!("verification codes, {workers} workers, {duration_secs}s, PostgreSQL:");
    let postgres_pairs =
        measure_code_pairs(&postgres_codes, &postgres_outbox, duration_secs, workers)?;
    println!(
        "ratio PostgreSQL/SQLite (code pairs/s): {:.2}",
        postgres_pairs / sqlite_pairs.max(f64::MIN_POSITIVE)
    );
    if failed > 0 {
        return Err(format!("{failed} sends failed"));
    }
    Ok(())
}
