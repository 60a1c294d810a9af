//! The `plugins` scenario: drop-in latency, and upgrades of the live connector's plugin
//! alternating two builds, with pick-up time, failed sends and RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{agent, install, post, start_host, ADMIN_KEY};

fn get(base_url: &str, path: &str) -> Value {
    match agent()
        .get(format!("{base_url}{path}"))
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .call()
    {
        Ok(mut response) => response.body_mut().read_json().unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

pub(crate) fn resident_set_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")
                    .and_then(|value| value.split_whitespace().next()?.parse().ok())
            })
        })
        .unwrap_or(0)
}

fn is_reported(base_url: &str, name: &str) -> bool {
    get(base_url, "/api/plugins")
        .as_array()
        .is_some_and(|reports| {
            reports.iter().any(|report| {
                report["path"]
                    .as_str()
                    .is_some_and(|path| path.ends_with(&format!("/{name}")))
            })
        })
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

pub fn bench_plugins(release: &Path, upgrades: usize) -> Result<(), String> {
    let host = start_host(release, false)?;
    let pid = host.child.id();
    let plugins = host.plugins_dir()?;
    let builds = [
        release.join("libmock_sms.so"),
        release.join("libfixture_mock_sms_next.so"),
    ];

    // Drop-in: a new file name each time, renamed into place, until it is reported.
    let mut drop_ins = Vec::new();
    for round in 0..10 {
        let name = format!("extra-{round}.so");
        let started = Instant::now();
        install(&builds[round % 2], &plugins, &name)?;
        while !is_reported(&host.url, &name) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("{name} was not picked up in 10 s"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        drop_ins.push(started.elapsed());
        std::fs::remove_file(plugins.join(&name)).map_err(|error| error.to_string())?;
    }
    drop_ins.sort();
    println!(
        "drop-in (rename into the folder → listed), 10 files: p50 {:?}, max {:?}",
        percentile(&drop_ins, 0.5),
        drop_ins[drop_ins.len() - 1]
    );

    // Upgrades of the live connector's plugin, alternating two builds, sending all along.
    let mut pickups = Vec::new();
    let mut rss_after_both_builds = 0;
    let mut rss_samples = Vec::new();
    let mut failed_sends = 0u64;
    let mut sends = 0u64;
    for round in 0..upgrades {
        let next = (round + 1) % 2;
        let started = Instant::now();
        install(&builds[next], &plugins, "libmock_sms.so")?;
        let expected_prefix = if next == 0 {
            "mock-0.1.0-"
        } else {
            "mock-0.2.0-"
        };
        loop {
            let (status, receipt) = post(
                &host.url,
                "/api/messages",
                &json!({"to": "+12015550123", "payload": {"code": "1"}}),
            );
            sends += 1;
            if status != 200 {
                failed_sends += 1;
            }
            if receipt["providerMessageId"]
                .as_str()
                .is_some_and(|id| id.starts_with(expected_prefix))
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("upgrade {round} was not picked up in 10 s"));
            }
        }
        pickups.push(started.elapsed());
        if round == 1 {
            rss_after_both_builds = resident_set_kib(pid);
        }
        if (round + 1) % (upgrades / 4).max(1) == 0 {
            rss_samples.push(format!("{}: {} KiB", round + 1, resident_set_kib(pid)));
        }
    }
    let rss_at_end = resident_set_kib(pid);
    pickups.sort();
    println!(
        "{upgrades} upgrades of the live plugin (rename → sends on the new build): p50 {:?}, p99 {:?}; {sends} sends, {failed_sends} failed",
        percentile(&pickups, 0.5),
        percentile(&pickups, 0.99)
    );
    println!(
        "RSS after both builds were loaded: {rss_after_both_builds} KiB; after {upgrades} upgrades: {rss_at_end} KiB (by upgrade: {})",
        rss_samples.join(", ")
    );
    if failed_sends > 0 {
        return Err(format!("{failed_sends} sends failed during upgrades"));
    }
    Ok(())
}
