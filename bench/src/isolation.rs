//! The `isolation` scenario: what `--plugin-isolation process` costs.
//!
//! - A step's round trip: the mock connector's first step called through its worker process
//!   (frame out, the worker computes, frame back) against the same call in this process,
//!   20,000 each in alternating blocks; the added p99.
//! - The forward path: `POST /api/messages` through http-sms to a local sink, a host with
//!   plugins in workers against one with plugins in-process, alternating wrk rounds.
//! - Replacement: a worker that crashes during a call (the misbehaving fixture's
//!   `crash_every_second_step`) is replaced and the call replayed; the time of such a call.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_host::isolation::pool::WorkerSettings;
use connector_host::plugins::loader::PluginLoader;
use connector_host::plugins::module::PluginInstance;
use plugin_api::{SendContext, SmsMessage, TemplateType};
use serde_json::json;

use crate::{compare_alternating, spawn_server, start_host_with_args, Recipients};

/// The targets.
pub(crate) const STEP_P99_ADDED_TARGET_US: f64 = 10.0;
pub(crate) const FORWARD_RATIO_TARGET: f64 = 0.9;
pub(crate) const REPLACED_TARGET_MS: f64 = 1000.0;

pub(crate) struct IsolationResult {
    pub step_p99_added_us: f64,
    pub forward_ratio: f64,
    pub replaced_ms: f64,
}

fn settings(release: &Path) -> WorkerSettings {
    WorkerSettings {
        executable: release.join("connector-host"),
        workers_per_build: 1,
        call_timeout: Duration::from_secs(1),
        load_timeout: Duration::from_secs(10),
        memory_limit_bytes: 1 << 30,
    }
}

/// A connector of `library` (a file in `release`), through workers or in this process.
async fn connector(
    release: &Path,
    scratch: &Path,
    library: &str,
    config: serde_json::Value,
    workers: Option<WorkerSettings>,
) -> Result<Arc<PluginInstance>, String> {
    let copies = scratch.join(if workers.is_some() {
        "workers"
    } else {
        "in-process"
    });
    let path = release.join(library);
    tokio::task::spawn_blocking(move || {
        let loader = PluginLoader::new(copies, None)
            .map_err(|error| error.to_string())?
            .with_workers(workers);
        let plugin = loader.load(&path).map_err(|error| error.to_string())?;
        plugin
            .module
            .instantiate(&config)
            .map(Arc::new)
            .map_err(|error| error.message)
    })
    .await
    .map_err(|error| error.to_string())?
}

/// This machine's floor for any pipe-based isolation: 64 bytes to `cat` and back, blocking,
/// `calls` times; (p50, p99).
fn pipe_floor(calls: usize) -> Result<(Duration, Duration), String> {
    use std::io::{Read, Write};
    let mut cat = Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start cat: {error}"))?;
    let (Some(mut input), Some(mut output)) = (cat.stdin.take(), cat.stdout.take()) else {
        return Err("cat's pipes were not set up".to_owned());
    };
    let mut frame = [7u8; 64];
    let mut timings = Vec::with_capacity(calls);
    for call in 0..calls + 1000 {
        let started = Instant::now();
        input.write_all(&frame).map_err(|error| error.to_string())?;
        output
            .read_exact(&mut frame)
            .map_err(|error| error.to_string())?;
        if call >= 1000 {
            timings.push(started.elapsed());
        }
    }
    drop(input);
    let _ = cat.wait();
    timings.sort();
    Ok((percentile(&timings, 0.5), percentile(&timings, 0.99)))
}

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    let index = ((sorted.len() as f64 * share) as usize).min(sorted.len().saturating_sub(1));
    sorted[index]
}

async fn step_round_trip(release: &Path, scratch: &Path, calls: usize) -> Result<f64, String> {
    let config = json!({"templates": [{"usageType": "Generic", "content": "Your code is {{code}}."}], "outbox": false});
    let in_process = connector(release, scratch, "libmock_sms.so", config.clone(), None).await?;
    let in_workers = connector(
        release,
        scratch,
        "libmock_sms.so",
        config,
        Some(settings(release)),
    )
    .await?;
    let message = SmsMessage::new(
        "+12015550123",
        TemplateType::SignIn,
        json!({"code": "123456", "locale": "en"}),
    );
    let context = SendContext::new("01a24e0c-6a74-709c-84c5-47b6ac7453b3", None);
    let mut timings: [Vec<Duration>; 2] = [Vec::with_capacity(calls), Vec::with_capacity(calls)];
    // Warm both up, then alternate blocks so a neighbour's burst lands on both.
    for (side, instance) in [&in_process, &in_workers].into_iter().enumerate() {
        for _ in 0..1000 {
            instance
                .start(&message, &context, None)
                .await
                .map_err(|error| format!("{error:?}"))?;
        }
        let _ = side;
    }
    for _ in 0..calls / 1000 {
        for (side, instance) in [&in_process, &in_workers].into_iter().enumerate() {
            for _ in 0..1000 {
                let started = Instant::now();
                let step = instance.start(&message, &context, None).await;
                timings[side].push(started.elapsed());
                step.map_err(|error| format!("{error:?}"))?;
            }
        }
    }
    let [mut local, mut remote] = timings;
    local.sort();
    remote.sort();
    let (floor_p50, floor_p99) = pipe_floor(calls)?;
    println!("| step of the mock connector | p50 | p99 | calls |");
    println!("|---|---|---|---|");
    println!(
        "| (this machine's pipe floor: 64 bytes to `cat` and back, blocking) | {:.1} µs | {:.1} µs | {calls} |",
        floor_p50.as_secs_f64() * 1e6,
        floor_p99.as_secs_f64() * 1e6
    );
    for (name, sorted) in [("in-process", &local), ("through its worker", &remote)] {
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {} |",
            percentile(sorted, 0.5).as_secs_f64() * 1e6,
            percentile(sorted, 0.99).as_secs_f64() * 1e6,
            sorted.len()
        );
    }
    Ok((percentile(&remote, 0.99).as_secs_f64() - percentile(&local, 0.99).as_secs_f64()) * 1e6)
}

async fn replacement(release: &Path, scratch: &Path, crashes: usize) -> Result<f64, String> {
    let sink = "http://127.0.0.1:9/send";
    let crashing = connector(
        release,
        scratch,
        "libfixture_misbehaving_connector.so",
        json!({"endpoint": sink, "behaviour": "crash_every_second_step"}),
        Some(settings(release)),
    )
    .await?;
    let message = SmsMessage::new("+12015550123", TemplateType::SignIn, json!({"code": "1"}));
    let context = SendContext::new("01a24e0c-6a74-709c-84c5-47b6ac7453b3", None);
    let mut replaced = Vec::with_capacity(crashes);
    // A fresh worker's first step succeeds, its second crashes and is replayed on a new one.
    crashing
        .start(&message, &context, None)
        .await
        .map_err(|error| format!("{error:?}"))?;
    for _ in 0..crashes {
        let started = Instant::now();
        crashing
            .start(&message, &context, None)
            .await
            .map_err(|error| format!("the replay failed: {error:?}"))?;
        replaced.push(started.elapsed());
    }
    replaced.sort();
    let worst = replaced.last().copied().unwrap_or_default();
    println!(
        "a crashed worker replaced and its call replayed: median {:.0} ms, worst {:.0} ms of {crashes}",
        percentile(&replaced, 0.5).as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    Ok(worst.as_secs_f64() * 1e3)
}

pub(crate) fn bench_isolation(
    release: &Path,
    duration_secs: u64,
    connections: u32,
) -> Result<IsolationResult, String> {
    let scratch = tempfile::tempdir().map_err(|error| error.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let calls = if duration_secs <= 1 { 2_000 } else { 20_000 };
    // On a runtime worker thread, as the host's request handlers run (not on the thread
    // that blocks on the runtime, which every answer would have to wake).
    let (release_dir, scratch_dir) = (release.to_owned(), scratch.path().to_owned());
    let crashes = if duration_secs <= 1 { 3 } else { 20 };
    let (step_p99_added_us, replaced_ms) = runtime
        .block_on(runtime.spawn(async move {
            let added = step_round_trip(&release_dir, &scratch_dir, calls).await?;
            let replaced = replacement(&release_dir, &scratch_dir, crashes).await?;
            Ok::<_, String>((added, replaced))
        }))
        .map_err(|error| error.to_string())??;
    drop(runtime);

    let sink = spawn_server(Command::new(release.join("sms-sink")), None)?;
    let config = json!({"endpoint": format!("{}/sms", sink.url)});
    let limits: Vec<String> = [
        "--max-sends-per-recipient=4000000000",
        "--resend-cooldown-secs=0",
        "--send-window-secs=1",
        "--protection=off",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut isolated_args = limits.clone();
    isolated_args.push("--plugin-isolation=process".to_owned());
    let isolated = start_host_with_args(
        release,
        None,
        "libhttp_sms.so",
        "http-sms",
        &config,
        &isolated_args,
    )?;
    let in_process = start_host_with_args(
        release,
        None,
        "libhttp_sms.so",
        "http-sms",
        &config,
        &limits,
    )?;
    println!("POST /api/messages through http-sms to a local sink: plugins in worker processes vs in-process");
    let forward = compare_alternating(
        ("process", &isolated),
        ("in-process", &in_process),
        duration_secs,
        connections,
        Recipients::Spread,
    )?;
    Ok(IsolationResult {
        step_p99_added_us,
        forward_ratio: forward.throughput_ratio,
        replaced_ms,
    })
}
