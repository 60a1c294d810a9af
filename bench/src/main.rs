//! The benchmark harness. On loopback, with the release builds:
//!
//! - `forward` (`forward.rs`): a real round trip. `POST /api/messages` through the host's
//!   http-sms connector to a local HTTP sink (`sms-sink`) versus `bare-forwarder` (axum and
//!   one pooled reqwest client forwarding the same JSON) to the same sink.
//! - `sends`: `POST /api/messages` through the host with the mock connector (outbox
//!   discarded) versus the bare axum baseline (`bare-baseline`, which only parses the JSON).
//!   Both comparisons alternate rounds under the same wrk load (distinct recipients) and
//!   report requests/s, p50/p99 latency, the server's CPU per request and the median ratios.
//! - `codes` (`codes.rs`): codes issued/s against raw sends/s, then codes issued and verified
//!   per second on the embedded store, read back from the mock connector's outbox.
//! - `plugins`: drop-in latency (rename into the folder → factory listed), then 200 upgrades
//!   of the live connector's plugin alternating two builds: pick-up time and RSS.
//! - `swaps`: sends at full speed while the live connector is swapped 100 times a second, then
//!   as fast as the API answers, against the same load without swaps; RSS across 10,000 swaps
//!   between two connectors.
//! - `slow-clients`: sends at full speed while 1,000 slowloris clients, then 100 slow readers
//!   (requests pipelined, answers never read) stay connected (each reconnecting when the host
//!   closes it), against the same load without them.
//! - `pumping` (`pumping.rs`): legitimate users verifying their codes mixed with an SMS
//!   pumping attack (thousands of codes to a few prefixes from rotating IPs, never verified),
//!   time compressed; attack sends reaching the connector, legitimate users blocked and time
//!   to detection, with the protection off and in `enforce`.
//! - `protection` (`protection.rs`): sends with the protection in `enforce` (every layer
//!   counting) against it off, then RSS over a flood to distinct numbers with it at its
//!   defaults and off.
//! - `isolation` (`isolation.rs`): what `--plugin-isolation process` costs: a step's round
//!   trip through a worker process against in-process, the forward path in both modes, and
//!   the time to replace a crashed worker and replay its call.
//! - `all`: all of the above.
//! - `soak`: sends, swaps every 100 ms and upgrades every 5 s together for `--duration-secs`
//!   (`-- soak --duration-secs 600` is the 10-minute soak): failed requests and RSS over time.
//!
//! `cargo run --release -p bench -- all` (`--smoke` for a tiny load that only checks the
//! harness works) ends with a summary of the send path's targets (forward, sends, codes),
//! each met or missed. Needs wrk (`apt-get install wrk`).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};

mod codes;
mod fallback;
mod forward;
mod isolation;
mod message_log;
mod outbox;
mod plugins;
mod protection;
mod pumping;
mod several_hosts;
mod slow_clients;
mod soak;
mod swaps;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "bench-admin-key";
pub(crate) const MOCK: &str = "mock-short-message-service";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
    /// Seconds each measurement runs.
    #[arg(long, global = true, default_value_t = 10)]
    duration_secs: u64,
    /// Concurrent connections (wrk) or workers (codes).
    #[arg(long, global = true, default_value_t = 32)]
    connections: u32,
    /// A tiny load: checks the harness works, measures nothing worth quoting.
    #[arg(long, global = true)]
    smoke: bool,
    /// pumping: a host flag replacing the simulation's own (`--host-arg=--prefix-velocity-max=20`;
    /// repeatable; seconds as in real life, compressed like the defaults), to try other thresholds.
    #[arg(long = "host-arg", global = true, allow_hyphen_values = true)]
    host_args: Vec<String>,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The mock path: the host with the mock connector vs a bare axum handler.
    Sends,
    /// A real round trip: the host with http-sms vs a bare forwarder, both to a local sink.
    Forward,
    Codes,
    Plugins,
    Swaps,
    /// Sends while 1,000 slowloris clients, then 100 slow readers stay connected, against the
    /// same load without.
    SlowClients,
    /// An SMS pumping attack among legitimate users, time compressed: with the protection off
    /// and in `enforce`.
    Pumping,
    /// What the protection costs a send (`enforce` against `off`), and RSS after a flood to
    /// distinct numbers.
    Protection,
    /// What the message log costs a send (on, with report URLs, against `--message-log off`).
    MessageLog,
    /// What a send costs once the breaker is open (the standby sends, the live connector is
    /// skipped) against a host whose live connector is the same mock.
    Fallback,
    /// What `--plugin-isolation process` costs: a step's round trip through a worker against
    /// in-process, the forward path in both modes, and how fast a crashed worker is replaced.
    Isolation,
    /// Not part of `all`: sends, swaps and upgrades together for `--duration-secs` (600 for
    /// the documented 10-minute soak).
    Soak,
    /// Not part of `all` (it starts a PostgreSQL cluster): sends and code pairs on PostgreSQL
    /// against SQLite, two hosts against one, propagation of 200 changes.
    Postgres,
    All,
}

fn main() {
    let cli = Cli::parse();
    let (duration, connections) = if cli.smoke {
        (1, 2)
    } else {
        (cli.duration_secs, cli.connections)
    };
    if let Err(error) = run(cli.command, duration, connections, &cli.host_args) {
        eprintln!("bench: {error}");
        std::process::exit(1);
    }
}

fn run(
    scenario: Scenario,
    duration_secs: u64,
    connections: u32,
    host_args: &[String],
) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_owned();
    build_release(&root)?;
    let release = root.join("target/release");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        memory_total()
    );
    let mut summary = Vec::new();
    if matches!(scenario, Scenario::Forward | Scenario::All) {
        let forward = forward::bench_forward(&release, duration_secs, connections)?;
        summary.push(TargetLine::at_least(
            "forward: host with http-sms / bare forwarder, requests/s",
            forward.throughput_ratio,
            0.9,
        ));
    }
    if matches!(scenario, Scenario::Sends | Scenario::All) {
        let sends = bench_sends(&release, duration_secs, connections)?;
        summary.push(TargetLine::at_least(
            "sends: host with mock / bare handler, requests/s",
            sends.throughput_ratio,
            0.75,
        ));
    }
    if matches!(scenario, Scenario::Protection | Scenario::All) {
        let protection = protection::bench_protection(&release, duration_secs, connections)?;
        summary.push(TargetLine::at_least(
            "protection: enforce / off, requests/s",
            protection.throughput_ratio,
            protection::ENFORCE_OVER_OFF_TARGET,
        ));
    }
    if matches!(scenario, Scenario::MessageLog | Scenario::All) {
        let logged = message_log::bench_message_log(&release, duration_secs, connections)?;
        summary.push(TargetLine::at_least(
            "message log: on / off, requests/s",
            logged.throughput_ratio,
            message_log::LOGGED_OVER_OFF_TARGET,
        ));
    }
    if matches!(scenario, Scenario::Fallback | Scenario::All) {
        let open = fallback::bench_fallback(&release, duration_secs, connections)?;
        summary.push(TargetLine::at_most_in(
            "fallback: p99 added once the breaker is open",
            open.p99_added_ms,
            fallback::P99_ADDED_TARGET_MS,
            " ms",
        ));
    }
    if matches!(scenario, Scenario::Isolation | Scenario::All) {
        let isolated = isolation::bench_isolation(&release, duration_secs, connections)?;
        summary.push(TargetLine::at_most_in(
            "isolation: p99 added per step round trip (mock)",
            isolated.step_p99_added_us,
            isolation::STEP_P99_ADDED_TARGET_US,
            " µs",
        ));
        summary.push(TargetLine::at_least(
            "isolation: forward path, process / in-process, requests/s",
            isolated.forward_ratio,
            isolation::FORWARD_RATIO_TARGET,
        ));
        summary.push(TargetLine::at_most_in(
            "isolation: a crashed worker replaced (worst)",
            isolated.replaced_ms,
            isolation::REPLACED_TARGET_MS,
            " ms",
        ));
    }
    if matches!(scenario, Scenario::Codes | Scenario::All) {
        let codes = codes::bench_codes(&release, duration_secs, connections)?;
        summary.push(TargetLine::at_least(
            "codes: issued/s / raw sends/s (distinct phones)",
            codes.issued_over_raw,
            codes::ISSUED_OVER_RAW_TARGET,
        ));
        summary.push(TargetLine::at_least_in(
            &format!(
                "codes: issued + verified pairs/s, {} workers",
                codes.workers
            ),
            codes.pairs_per_second,
            codes::CODE_PAIRS_PER_SECOND_TARGET,
            " pairs/s",
        ));
    }
    if scenario == Scenario::Soak {
        soak::soak(&release, duration_secs, connections)?;
    }
    if scenario == Scenario::Postgres {
        several_hosts::bench_postgres(&release, duration_secs, connections)?;
    }
    if matches!(scenario, Scenario::Swaps | Scenario::All) {
        swaps::bench_swaps(
            &release,
            duration_secs,
            connections,
            if duration_secs <= 1 { 100 } else { 10_000 },
        )?;
    }
    if matches!(scenario, Scenario::SlowClients | Scenario::All) {
        slow_clients::bench_slow_clients(
            &release,
            duration_secs,
            connections,
            if duration_secs <= 1 { 50 } else { 1000 },
            if duration_secs <= 1 { 10 } else { 100 },
        )?;
    }
    if matches!(scenario, Scenario::Plugins | Scenario::All) {
        plugins::bench_plugins(&release, if duration_secs <= 1 { 10 } else { 200 })?;
    }
    if matches!(scenario, Scenario::Pumping | Scenario::All) {
        pumping::bench_pumping(&release, duration_secs <= 1, host_args)?;
    }
    if !summary.is_empty() {
        println!("\nsummary (each target as the issue that asked for it set it)");
        println!("| what | measured | target | met |");
        println!("|---|---|---|---|");
        for line in &summary {
            println!("{line}");
        }
    }
    Ok(())
}

/// One line of the closing summary: a measured ratio against its target.
pub(crate) struct TargetLine {
    what: String,
    measured: f64,
    target: f64,
    /// Written right after the number: `×` for ratios, ` pairs/s` for rates.
    unit: &'static str,
    decimals: usize,
    /// The target is a ceiling (a latency), not a floor.
    at_most: bool,
}

impl TargetLine {
    /// A ratio, measured/baseline.
    pub(crate) fn at_least(what: &str, measured: f64, target: f64) -> Self {
        Self {
            what: what.to_owned(),
            measured,
            target,
            unit: "×",
            decimals: 2,
            at_most: false,
        }
    }

    /// A rate; `unit` is written as it is after the number (`" pairs/s"`).
    pub(crate) fn at_least_in(what: &str, measured: f64, target: f64, unit: &'static str) -> Self {
        Self {
            what: what.to_owned(),
            measured,
            target,
            unit,
            decimals: 0,
            at_most: false,
        }
    }

    pub(crate) fn at_most_in(what: &str, measured: f64, target: f64, unit: &'static str) -> Self {
        Self {
            what: what.to_owned(),
            measured,
            target,
            unit,
            decimals: 2,
            at_most: true,
        }
    }
}

impl std::fmt::Display for TargetLine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (decimals, unit) = (self.decimals, self.unit);
        let measured = format!("{:.decimals$}{unit}", self.measured);
        let (sign, met) = if self.at_most {
            ("≤", self.measured <= self.target)
        } else {
            ("≥", self.measured >= self.target)
        };
        let target = format!("{sign} {:.decimals$}{unit}", self.target);
        let met = if met { "met" } else { "missed" };
        write!(
            formatter,
            "| {} | {measured} | {target} | {met} |",
            self.what
        )
    }
}

fn build_release(root: &Path) -> Result<(), String> {
    let status = e2e_tests::cargo_command()
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "connector-host",
            "-p",
            "mock-sms",
            "-p",
            "http-sms",
            "-p",
            "fixture-mock-sms-next",
            "-p",
            "fixture-misbehaving-connector",
            "-p",
            "bench",
        ])
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| "the release build failed".to_owned())
}

fn memory_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .next()
                .map(|line| line.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown memory".to_owned())
}

/// A child process killed on drop, with the URL it printed first.
struct Server {
    child: Child,
    url: String,
    scratch: Option<tempfile::TempDir>,
}

impl Server {
    /// The plugins folder of a host started by [`start_host`].
    fn plugins_dir(&self) -> Result<PathBuf, String> {
        let scratch = self
            .scratch
            .as_ref()
            .ok_or("this server has no plugins folder")?;
        Ok(scratch.path().join("plugins"))
    }

    /// The host's outbox (`<data>/mock-sms-outbox.jsonl`), where the mock's messages go.
    fn outbox_path(&self) -> Result<PathBuf, String> {
        let scratch = self
            .scratch
            .as_ref()
            .ok_or("this server has no data directory")?;
        Ok(scratch.path().join("data").join("mock-sms-outbox.jsonl"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(
    mut command: Command,
    scratch: Option<tempfile::TempDir>,
) -> Result<Server, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {command:?}: {error}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|error| error.to_string())?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected first line {line:?}"))?
        .to_owned();
    Ok(Server {
        child,
        url,
        scratch,
    })
}

/// The release host with the mock plugin, limits out of the way, logs to a file; `outbox`:
/// the mock writes each message to the host's outbox ([`Server::outbox_path`]), else discards it.
fn start_host(release: &Path, outbox: bool) -> Result<Server, String> {
    start_host_on(release, outbox, None)
}

/// [`start_host`] on a shared PostgreSQL database instead of the embedded SQLite store.
fn start_host_on(
    release: &Path,
    outbox: bool,
    database: Option<&e2e_tests::SharedDatabase>,
) -> Result<Server, String> {
    let config = json!({"templates": [{"usageType": "Generic", "content": "Your verification code is {{code}}."}], "outbox": outbox});
    start_host_with_connector(release, database, "libmock_sms.so", MOCK, &config)
}

/// The release host with one plugin file installed and a connector of `factory_id` live.
fn start_host_with_connector(
    release: &Path,
    database: Option<&e2e_tests::SharedDatabase>,
    plugin_file: &str,
    factory_id: &str,
    config: &Value,
) -> Result<Server, String> {
    let limits = [
        "--max-sends-per-recipient=4000000000",
        // A one-second window keeps the limiter at its realistic size under full load.
        "--resend-cooldown-secs=0",
        "--send-window-secs=1",
        // wrk floods a few prefixes of one country: the layers that stop exactly that are
        // off here; the rest of the protection runs as deployed.
        "--prefix-velocity-max=0",
        "--first-seen-country-max=0",
    ]
    .map(str::to_owned);
    start_host_with_args(release, database, plugin_file, factory_id, config, &limits)
}

/// [`start_host_with_connector`] with `args` (`--flag=value`) in place of the bench's send limits.
fn start_host_with_args(
    release: &Path,
    database: Option<&e2e_tests::SharedDatabase>,
    plugin_file: &str,
    factory_id: &str,
    config: &Value,
    args: &[String],
) -> Result<Server, String> {
    let scratch = tempfile::tempdir().map_err(|error| error.to_string())?;
    let plugins = scratch.path().join("plugins");
    std::fs::create_dir_all(&plugins).map_err(|error| error.to_string())?;
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755))
        .map_err(|error| error.to_string())?;
    install(&release.join(plugin_file), &plugins, plugin_file)?;
    let log = std::fs::File::create(scratch.path().join("host.log"))
        .map_err(|error| error.to_string())?;
    let mut command = Command::new(release.join("connector-host"));
    command
        .arg("serve")
        .arg("--plugins")
        .arg(&plugins)
        .arg("--data")
        .arg(scratch.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--admin-key", ADMIN_KEY])
        .args(args)
        .stderr(log);
    if let Some(database) = database {
        command
            .args(["--database-url", &database.url])
            .arg("--code-hash-key-file")
            .arg(&database.code_hash_key_file)
            .arg("--secrets-key-file")
            .arg(&database.secrets_key_file);
    }
    let host = spawn_server(command, Some(scratch))?;
    let (status, body) = post(
        &host.url,
        "/api/connectors",
        &json!({"connectorId": factory_id, "config": config}),
    );
    if status != 200 {
        return Err(format!(
            "cannot create the {factory_id} connector: {status} {body}"
        ));
    }
    Ok(host)
}

/// The recommended drop-in: copy under a hidden temporary name, then rename into place.
fn install(source: &Path, plugins: &Path, name: &str) -> Result<(), String> {
    let temporary = plugins.join(format!(".{name}.tmp"));
    std::fs::copy(source, &temporary).map_err(|error| error.to_string())?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644))
        .map_err(|error| error.to_string())?;
    std::fs::rename(&temporary, plugins.join(name)).map_err(|error| error.to_string())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A GET with the admin key.
fn get(base_url: &str, path: &str) -> (u16, Value) {
    match agent()
        .get(format!("{base_url}{path}"))
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .call()
    {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_json().unwrap_or(Value::Null),
        ),
        Err(error) => (0, Value::String(error.to_string())),
    }
}

/// A PATCH with the admin key.
fn patch(base_url: &str, path: &str, body: &Value) -> (u16, Value) {
    match agent()
        .patch(format!("{base_url}{path}"))
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .send_json(body)
    {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_json().unwrap_or(Value::Null),
        ),
        Err(error) => (0, Value::String(error.to_string())),
    }
}

fn post(base_url: &str, path: &str, body: &Value) -> (u16, Value) {
    thread_local! {
        static AGENT: ureq::Agent = agent();
    }
    AGENT.with(|agent| {
        match agent
            .post(format!("{base_url}{path}"))
            .header("Authorization", format!("Bearer {ADMIN_KEY}"))
            .send_json(body)
        {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(error) => (0, Value::String(error.to_string())),
        }
    })
}

struct WrkResult {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
}

fn run_wrk(url: &str, duration_secs: u64, connections: u32) -> Result<WrkResult, String> {
    run_wrk_with(url, duration_secs, connections, Recipients::One)
}

/// Who a wrk run sends to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recipients {
    /// One phone (the in-memory limiter's worst case).
    One,
    /// 10,000 phones in turn, as real traffic: a shared limiter locks per phone.
    Distinct,
    /// Random US mobile numbers over 15 area codes (~12,000 prefixes), each from a random
    /// public IPv4 address given as `ip`: every protection layer has something to count.
    Spread,
}

fn run_wrk_with(
    url: &str,
    duration_secs: u64,
    connections: u32,
    recipients: Recipients,
) -> Result<WrkResult, String> {
    let body = match recipients {
        Recipients::Spread => {
            r#"{"to": "{phone}", "type": "SignIn", "payload": {"code": "123456"}, "ip": "{ip}"}"#
        }
        _ => r#"{"to": "{phone}", "type": "SignIn", "payload": {"code": "123456"}}"#,
    };
    run_wrk_posting(
        url,
        "/api/messages",
        body,
        duration_secs,
        connections,
        recipients,
    )
}

/// wrk POSTing `body_template` to `path`, its `{phone}` replaced by the recipient and `{ip}`
/// (only with [`Recipients::Spread`]) by a client address (JSON without `%` or `'`: it goes
/// into a Lua format string).
fn run_wrk_posting(
    url: &str,
    path: &str,
    body_template: &str,
    duration_secs: u64,
    connections: u32,
    recipients: Recipients,
) -> Result<WrkResult, String> {
    let script = tempfile::NamedTempFile::new().map_err(|error| error.to_string())?;
    let headers = format!(
        "wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {ADMIN_KEY}\"\n"
    );
    let body = match recipients {
        Recipients::One => format!(
            "wrk.method = \"POST\"\nwrk.body = '{}'\n",
            body_template.replace("{phone}", "+12015550123")
        ),
        Recipients::Distinct => format!(
            "counter = 0\nrequest = function()\n  counter = counter + 1\n  local body = string.format('{}', counter % 10000)\n  return wrk.format(\"POST\", nil, nil, body)\nend\n",
            body_template.replace("{phone}", "+1201555%04d")
        ),
        Recipients::Spread => format!(
            "{SPREAD_LUA}local template = '{}'\nrequest = function()\n  return wrk.format(\"POST\", nil, nil, string.format(template, spread_phone(), spread_ip()))\nend\n",
            body_template
                .replace("{phone}", "%s")
                .replace("{ip}", "%s")
        ),
    };
    std::fs::write(script.path(), format!("{body}{headers}")).map_err(|error| error.to_string())?;
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{duration_secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script.path())
        .arg(format!("{url}{path}"))
        .output()
        .map_err(|error| format!("cannot run wrk (apt-get install wrk): {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |label: &str| {
        text.lines().find_map(|line| {
            line.trim()
                .strip_prefix(label)
                .map(|rest| rest.trim().to_owned())
        })
    };
    let latency_ms = |label: &str| {
        field(label)
            .map(|value| parse_wrk_duration_ms(&value))
            .unwrap_or(f64::NAN)
    };
    let errors: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
        + field("Socket errors:")
            .map(|value| {
                value
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
    Ok(WrkResult {
        requests_per_second: field("Requests/sec:")
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| format!("unexpected wrk output:\n{text}"))?,
        p50_ms: latency_ms("50%"),
        p99_ms: latency_ms("99%"),
        failed: errors,
    })
}

/// Random valid US mobile numbers and public IPv4 addresses, seeded per wrk thread.
const SPREAD_LUA: &str = r#"local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
init = function(args)
  math.randomseed(os.time() * 16 + seed)
end
local areas = {"201", "212", "213", "305", "312", "404", "415", "512", "617", "646", "702", "713", "718", "773", "917"}
spread_phone = function()
  local exchange
  repeat
    exchange = string.format("%d%02d", math.random(2, 9), math.random(0, 99))
  until exchange ~= "555" and exchange:sub(2) ~= "11"
  return string.format("+1%s%s%04d", areas[math.random(1, #areas)], exchange, math.random(0, 9999))
end
local private = {[10] = true, [100] = true, [127] = true, [169] = true, [172] = true, [192] = true, [198] = true, [203] = true}
spread_ip = function()
  local first
  repeat first = math.random(11, 223) until not private[first]
  return string.format("%d.%d.%d.%d", first, math.random(0, 255), math.random(0, 255), math.random(1, 254))
end
"#;

/// `812.00us`, `1.20ms`, `2.00s` → milliseconds.
fn parse_wrk_duration_ms(value: &str) -> f64 {
    let number: String = value
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let number: f64 = number.parse().unwrap_or(f64::NAN);
    match &value[value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len())..]
    {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        _ => f64::NAN,
    }
}

/// CPU time a process has used so far (all its threads, user and system), from
/// `/proc/PID/stat`; Linux counts it in USER_HZ ticks, 100 per second on every architecture.
fn process_cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|error| format!("cannot read /proc/{pid}/stat: {error}"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')').ok_or("unexpected /proc/PID/stat")? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64, String> {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .ok_or_else(|| format!("unexpected /proc/{pid}/stat"))
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

struct SendsRound {
    load: WrkResult,
    /// The server's own CPU time per request: steadier than requests/s on a shared machine,
    /// where wrk and neighbours take cores away from whichever server is running.
    cpu_microseconds_per_request: f64,
}

fn measure_sends(
    server: &Server,
    duration_secs: u64,
    connections: u32,
    recipients: Recipients,
) -> Result<SendsRound, String> {
    let cpu_before = process_cpu_seconds(server.child.id())?;
    let load = run_wrk_with(&server.url, duration_secs, connections, recipients)?;
    let cpu_seconds = process_cpu_seconds(server.child.id())? - cpu_before;
    let requests = load.requests_per_second * duration_secs as f64;
    Ok(SendsRound {
        cpu_microseconds_per_request: cpu_seconds * 1e6 / requests.max(1.0),
        load,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The medians of one [`compare_alternating`] run, measured/baseline.
pub(crate) struct Comparison {
    pub throughput_ratio: f64,
    pub cpu_ratio: f64,
    /// Median of the rounds' measured p99 minus baseline p99, in ms.
    pub p99_added_ms: f64,
}

/// Drives `measured` and `baseline` with the same wrk load in alternating rounds (after a
/// one-second warm-up of each): a neighbour's burst on this shared machine then lands on both
/// sides of some round, and the median ratio holds. Prints one table row per server and
/// round; fails if any request of `measured` failed.
fn compare_alternating(
    (measured_name, measured): (&str, &Server),
    (baseline_name, baseline): (&str, &Server),
    duration_secs: u64,
    connections: u32,
    recipients: Recipients,
) -> Result<Comparison, String> {
    run_wrk_with(&measured.url, 1, connections, recipients)?;
    run_wrk_with(&baseline.url, 1, connections, recipients)?;
    let rounds = if duration_secs <= 1 { 1 } else { 3 };
    println!("{rounds} rounds alternating, wrk -t2 -c{connections} -d{duration_secs}s");
    println!("| round | server | requests/s | p50 ms | p99 ms | failed | server CPU µs/request |");
    println!("|---|---|---|---|---|---|---|");
    let (mut throughput_ratios, mut cpu_ratios, mut measured_failed) = (Vec::new(), Vec::new(), 0);
    let mut p99_added = Vec::new();
    for round in 1..=rounds {
        let measured_result = measure_sends(measured, duration_secs, connections, recipients)?;
        let baseline_result = measure_sends(baseline, duration_secs, connections, recipients)?;
        for (name, result) in [
            (measured_name, &measured_result),
            (baseline_name, &baseline_result),
        ] {
            println!(
                "| {round} | {name} | {:.0} | {:.3} | {:.3} | {} | {:.1} |",
                result.load.requests_per_second,
                result.load.p50_ms,
                result.load.p99_ms,
                result.load.failed,
                result.cpu_microseconds_per_request
            );
        }
        throughput_ratios.push(
            measured_result.load.requests_per_second / baseline_result.load.requests_per_second,
        );
        cpu_ratios.push(
            measured_result.cpu_microseconds_per_request
                / baseline_result.cpu_microseconds_per_request,
        );
        p99_added.push(measured_result.load.p99_ms - baseline_result.load.p99_ms);
        measured_failed += measured_result.load.failed;
    }
    let comparison = Comparison {
        throughput_ratio: median(throughput_ratios),
        cpu_ratio: median(cpu_ratios),
        p99_added_ms: median(p99_added),
    };
    println!(
        "ratio {measured_name}/{baseline_name}, median of {rounds}: requests/s {:.2}, server CPU per request {:.2}, p99 added {:.2} ms",
        comparison.throughput_ratio, comparison.cpu_ratio, comparison.p99_added_ms
    );
    if measured_failed > 0 {
        return Err(format!("{measured_failed} {measured_name} requests failed"));
    }
    Ok(comparison)
}

/// The mock path: the host with the mock connector (outbox discarded) against the bare
/// handler that only parses the JSON.
fn bench_sends(release: &Path, duration_secs: u64, connections: u32) -> Result<Comparison, String> {
    let host = start_host(release, false)?;
    let baseline = spawn_server(Command::new(release.join("bare-baseline")), None)?;
    println!("POST /api/messages, mock connector (outbox discarded) vs bare axum handler, distinct recipients");
    compare_alternating(
        ("connector-host", &host),
        ("bare handler", &baseline),
        duration_secs,
        connections,
        Recipients::Distinct,
    )
}
