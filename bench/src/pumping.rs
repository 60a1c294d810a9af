//! `bench pumping`: an SMS pumping attack mixed with legitimate users, on the release host with
//! the mock connector writing its outbox, time compressed by short windows.
//!
//! - Legitimate users arrive at random over the whole run, spread over 12 countries and, in
//!   each, over 1,000 number prefixes with a skewed (Zipf) popularity. Each keeps one IP, a few
//!   (mobile) or shares one of a few carrier-grade NAT addresses. 88 % verify their code (read
//!   back from the host's outbox) after reading it, 6 % ask again before verifying the second
//!   code, 6 % never verify.
//! - The attack starts once legitimate traffic has run for a while: thousands of code requests
//!   to a few prefixes of one country the deployment serves (legitimate users there verify
//!   their codes), each from one of a large pool of rotating client IPs; nobody verifies.
//! - Everything runs [`TIME_SCALE`] times faster than real life: the host's windows, the code
//!   lifetime and the users' delays are divided by it; counts per window stay as they are. The
//!   protection's windows are its own defaults (read from `serve --help`) compressed the same
//!   way, so the run measures the defaults; `--host-arg=--flag=value` replaces any of them
//!   (seconds given as in real life, compressed the same way).
//!
//! Reported per mode (baseline: protection off or absent; enforce): attack sends that reached
//! the connector (lines in the outbox), legitimate users refused with `429 sms.blocked`, time
//! from the attack's start to its first block and to 99 % of its sends blocked, and every block
//! by `data.reason`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{get, post, start_host_with_args, Server, MOCK};

/// Real life runs this many times slower than the simulation: one real second is two
/// simulated minutes; the default code lifetime (600 s) becomes 5 s.
pub(crate) const TIME_SCALE: f64 = 120.0;
/// At most this share of the attack's sends may reach the connector (issue 24).
pub(crate) const ATTACK_REACHING_TARGET: f64 = 0.01;
/// At most this share of legitimate users may be refused by the protection (issue 24).
pub(crate) const LEGIT_BLOCKED_TARGET: f64 = 0.005;

/// The region the attack targets, and its prefixes (E.164 without the last four digits).
const ATTACK_REGION: &str = "GB";
const ATTACK_PREFIXES: &[&str] = &["+44748123", "+44748124", "+44748125", "+44748126"];

/// How long each phase runs and how much traffic it carries, in real seconds.
struct Plan {
    /// Legitimate traffic alone before the attack starts.
    warm_up_secs: f64,
    attack_secs: f64,
    /// Legitimate traffic after the attack ends.
    tail_secs: f64,
    legit_users_per_sec: f64,
    attack_sends: usize,
    /// Rotating client IPs of the attack.
    attack_ips: usize,
    workers: usize,
}

impl Plan {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                warm_up_secs: 1.0,
                attack_secs: 1.5,
                tail_secs: 0.5,
                legit_users_per_sec: 20.0,
                attack_sends: 150,
                attack_ips: 40,
                workers: 8,
            }
        } else {
            // 30 simulated minutes of legitimate traffic (1,200 users an hour), then an hour
            // of attack (6,000 codes), then 20 minutes of legitimate traffic alone.
            Self {
                warm_up_secs: 15.0,
                attack_secs: 30.0,
                tail_secs: 10.0,
                legit_users_per_sec: 40.0,
                attack_sends: 6000,
                attack_ips: 1500,
                workers: 32,
            }
        }
    }

    fn legit_span_secs(&self) -> f64 {
        self.warm_up_secs + self.attack_secs + self.tail_secs
    }
}

/// Whether the protection runs in the measured host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--protection off`, or a host without the protection.
    Baseline,
    Enforce,
}

impl Mode {
    fn name(self, protection_built: bool) -> &'static str {
        match (self, protection_built) {
            (Mode::Baseline, true) => "baseline (--protection off)",
            (Mode::Baseline, false) => "baseline (no protection in this build)",
            (Mode::Enforce, _) => "enforce",
        }
    }
}

/// One row of the results.
pub(crate) struct PumpingResult {
    mode: String,
    attack_sends: usize,
    attack_reaching: usize,
    attack_blocked: usize,
    legit_users: usize,
    legit_blocked: usize,
    legit_verified: usize,
    /// Legitimate users who meant to verify and could not, for another reason than a block.
    legit_failed_otherwise: usize,
    first_block_secs: Option<f64>,
    ninety_nine_secs: Option<f64>,
    /// The attack's last send that went through, after its start.
    last_through_secs: Option<f64>,
    /// reason → (attack sends, legitimate requests) refused with it.
    reasons: BTreeMap<String, (usize, usize)>,
    /// Other refusals: code → count.
    other_refusals: BTreeMap<String, usize>,
    blocks_without_reason: usize,
    /// How late the client ran its events at worst (p99): a loaded machine stretches time.
    lag_p99_ms: f64,
    enforce: bool,
}

impl PumpingResult {
    fn attack_reaching_share(&self) -> f64 {
        self.attack_reaching as f64 / self.attack_sends.max(1) as f64
    }

    fn legit_blocked_share(&self) -> f64 {
        self.legit_blocked as f64 / self.legit_users.max(1) as f64
    }
}

pub(crate) fn bench_pumping(
    release: &Path,
    smoke: bool,
    host_overrides: &[String],
) -> Result<Vec<PumpingResult>, String> {
    let plan = Plan::new(smoke);
    let defaults = protection_defaults(release)?;
    let protection_built = defaults.contains_key("--protection");
    println!(
        "pumping simulation, time ×{TIME_SCALE} (1 s = {} simulated min): {:.0} legitimate users/simulated hour over {:.0} min, attack of {} code requests to {} prefixes of {ATTACK_REGION} over {:.0} min from {} rotating IPs, starting after {:.0} min",
        TIME_SCALE / 60.0,
        plan.legit_users_per_sec * 3600.0 / TIME_SCALE,
        plan.legit_span_secs() * TIME_SCALE / 60.0,
        plan.attack_sends,
        ATTACK_PREFIXES.len(),
        plan.attack_secs * TIME_SCALE / 60.0,
        plan.attack_ips,
        plan.warm_up_secs * TIME_SCALE / 60.0,
    );
    let mut results = Vec::new();
    for mode in [Mode::Baseline, Mode::Enforce] {
        if mode == Mode::Enforce && !protection_built {
            println!("enforce: skipped, this host has no --protection flag yet");
            continue;
        }
        let args = host_args(mode, &defaults, host_overrides)?;
        println!(
            "{}: connector-host serve {}",
            mode.name(protection_built),
            args.join(" ")
        );
        let result = simulate(release, &plan, mode, protection_built, &args)?;
        results.push(result);
    }
    print_results(&results);
    Ok(results)
}

/// `serve --help`'s flags and their defaults (`""` for a flag without one).
fn protection_defaults(release: &Path) -> Result<BTreeMap<String, String>, String> {
    let output = Command::new(release.join("connector-host"))
        .args(["serve", "--help"])
        .output()
        .map_err(|error| format!("cannot run connector-host serve --help: {error}"))?;
    let help = String::from_utf8_lossy(&output.stdout);
    let mut defaults = BTreeMap::new();
    let mut flag: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let name = format!("--{name}");
            defaults.insert(name.clone(), String::new());
            flag = Some(name);
        }
        if let (Some(flag), Some(start)) = (&flag, line.find("[default: ")) {
            let value = &line[start + "[default: ".len()..];
            let value = value.split(']').next().unwrap_or_default();
            defaults.insert(flag.clone(), value.to_owned());
        }
    }
    Ok(defaults)
}

/// The protection's flags: those of the contract in issue 24.
fn is_protection_flag(flag: &str) -> bool {
    [
        "--protection",
        "--ip-velocity-",
        "--prefix-velocity-",
        "--low-conversion-",
        "--first-seen-country-",
        "--daily-budget",
        "--budget-window-",
        "--recipient-backoff",
    ]
    .iter()
    .any(|prefix| flag.starts_with(prefix))
}

/// Seconds of real life as seconds of the simulation (at least 1 unless 0).
fn compressed(seconds: u64) -> u64 {
    if seconds == 0 {
        0
    } else {
        ((seconds as f64 / TIME_SCALE).round() as u64).max(1)
    }
}

/// The host's flags for one mode: the send limits and code lifetime compressed, the
/// protection's windows (its defaults) compressed, then the overrides.
fn host_args(
    mode: Mode,
    defaults: &BTreeMap<String, String>,
    overrides: &[String],
) -> Result<Vec<String>, String> {
    let protection_built = defaults.contains_key("--protection");
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    // The code lifetime's lower bound is 60 s until the protection lowers it to 5 s.
    let ttl = if protection_built {
        compressed(600)
    } else {
        60
    };
    flags.insert("--code-ttl-secs".into(), ttl.to_string());
    flags.insert("--max-sends-per-recipient".into(), "10".into());
    flags.insert("--send-window-secs".into(), compressed(600).to_string());
    // 60 s compresses to half a second, below the flag's unit: off.
    flags.insert("--resend-cooldown-secs".into(), "0".into());
    flags.insert("--allowed-countries".into(), regions().join(","));
    if protection_built {
        for (flag, value) in defaults {
            if !is_protection_flag(flag) || flag == "--protection" {
                continue;
            }
            if let (true, Ok(seconds)) = (flag.ends_with("-secs"), value.parse::<u64>()) {
                flags.insert(flag.clone(), compressed(seconds).to_string());
            }
        }
        let protection = match mode {
            Mode::Baseline => "off",
            Mode::Enforce => "enforce",
        };
        flags.insert("--protection".into(), protection.into());
    }
    for entry in overrides {
        let (flag, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("--host-arg {entry:?}: expected --flag=value"))?;
        if !defaults.contains_key(flag) {
            return Err(format!("--host-arg {entry:?}: the host has no {flag}"));
        }
        // Given in real-life seconds, like the defaults.
        let value = match (flag.ends_with("-secs"), value.parse::<u64>()) {
            (true, Ok(seconds)) => compressed(seconds).to_string(),
            _ => value.to_owned(),
        };
        // The baseline stays off whatever the overrides say.
        if !(flag == "--protection" && mode == Mode::Baseline) {
            flags.insert(flag.to_owned(), value);
        }
    }
    Ok(flags
        .into_iter()
        .flat_map(|(flag, value)| {
            if value.is_empty() {
                vec![flag]
            } else {
                vec![format!("{flag}={value}")]
            }
        })
        .collect())
}

/// A small deterministic generator (SplitMix64): the same run every time, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    fn digits(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A country of the simulation: its share of legitimate users and how a number prefix
/// (E.164 without the last four digits) valid for its mobile plan is drawn.
struct Country {
    region: &'static str,
    weight: u32,
    prefix: fn(&mut Rng) -> String,
}

fn us_exchange(rng: &mut Rng) -> String {
    loop {
        let exchange = format!("{}{}", 2 + rng.below(8), rng.digits(2));
        if exchange != "555" && !exchange.ends_with("11") {
            return exchange;
        }
    }
}

fn countries() -> Vec<Country> {
    vec![
        Country {
            region: "US",
            weight: 30,
            prefix: |rng| {
                let area = rng.pick(&[
                    "201", "212", "213", "305", "312", "404", "415", "512", "617", "646", "702",
                    "713", "718", "773", "917",
                ]);
                format!("+1{area}{}", us_exchange(rng))
            },
        },
        Country {
            region: "CA",
            weight: 3,
            prefix: |rng| {
                let area = rng.pick(&["416", "514", "604", "613", "403"]);
                format!("+1{area}{}", us_exchange(rng))
            },
        },
        Country {
            region: "GB",
            weight: 10,
            // 71x–73x, 740–744, 771–777, 790, 792, 794–799; never the attacked 748.
            prefix: |rng| {
                let stem = match rng.below(4) {
                    0 => format!("7{}{}", 1 + rng.below(3), rng.below(10)),
                    1 => format!("74{}", rng.below(5)),
                    2 => format!("77{}", 1 + rng.below(7)),
                    _ => format!("79{}", rng.pick(&[0, 2, 4, 5, 6, 7, 8, 9])),
                };
                format!("+44{stem}{}", rng.digits(3))
            },
        },
        Country {
            region: "DE",
            weight: 10,
            prefix: |rng| {
                format!(
                    "+49{}{}",
                    rng.pick(&["151", "152", "157", "159"]),
                    rng.digits(4)
                )
            },
        },
        Country {
            region: "FR",
            weight: 8,
            prefix: |rng| {
                format!(
                    "+336{}{}",
                    rng.pick(&[0, 1, 2, 4, 5, 6, 7, 8]),
                    rng.digits(3)
                )
            },
        },
        Country {
            region: "IN",
            weight: 12,
            prefix: |rng| format!("+9198{}{}", 1 + rng.below(9), rng.digits(3)),
        },
        Country {
            region: "BR",
            weight: 8,
            prefix: |rng| format!("+55119{}{}", 5 + rng.below(5), rng.digits(3)),
        },
        Country {
            region: "ES",
            weight: 5,
            prefix: |rng| format!("+346{}", rng.digits(4)),
        },
        Country {
            region: "IT",
            weight: 5,
            prefix: |rng| format!("+393{}{}", 2 + rng.below(8), rng.digits(4)),
        },
        Country {
            region: "NL",
            weight: 3,
            prefix: |rng| format!("+316{}{}", rng.pick(&[1, 2, 3, 4, 5, 8]), rng.digits(3)),
        },
        Country {
            region: "AU",
            weight: 3,
            prefix: |rng| format!("+614{}{}", rng.below(3), rng.digits(3)),
        },
        Country {
            region: "JP",
            weight: 3,
            prefix: |rng| format!("+8190{}{}", 1 + rng.below(9), rng.digits(3)),
        },
    ]
}

fn regions() -> Vec<&'static str> {
    countries().iter().map(|country| country.region).collect()
}

/// Prefixes per country, and how skewed their popularity is: with Zipf 0.8 over 1,000, the
/// most popular prefix carries about 6 % of its country's users.
const PREFIXES_PER_COUNTRY: usize = 1000;
const PREFIX_POPULARITY_EXPONENT: f64 = 0.8;

/// One country's prefixes with the cumulative weights to draw them by.
struct PrefixPool {
    prefixes: Vec<String>,
    cumulative: Vec<f64>,
}

impl PrefixPool {
    fn new(country: &Country, rng: &mut Rng) -> Self {
        let mut prefixes = Vec::with_capacity(PREFIXES_PER_COUNTRY);
        // Distinct draws; a country with fewer prefixes than that simply has repeats.
        for _ in 0..PREFIXES_PER_COUNTRY * 20 {
            let prefix = (country.prefix)(rng);
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
            if prefixes.len() == PREFIXES_PER_COUNTRY {
                break;
            }
        }
        let mut total = 0.0;
        let cumulative = (1..=prefixes.len())
            .map(|rank| {
                total += (rank as f64).powf(-PREFIX_POPULARITY_EXPONENT);
                total
            })
            .collect();
        Self {
            prefixes,
            cumulative,
        }
    }

    fn draw(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = rng.unit() * total;
        let index = self.cumulative.partition_point(|weight| *weight < target);
        &self.prefixes[index.min(self.prefixes.len() - 1)]
    }
}

fn public_ipv4(rng: &mut Rng) -> String {
    loop {
        let first = 11 + rng.below(213);
        if ![100, 127, 169, 172, 192, 198, 203].contains(&first) {
            return format!(
                "{first}.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            );
        }
    }
}

fn public_ipv6(rng: &mut Rng) -> String {
    format!(
        "2a0{}:{:x}:{:x}:{:x}::{:x}",
        1 + rng.below(9),
        rng.below(0xffff),
        rng.below(0xffff),
        rng.below(0xffff),
        1 + rng.below(0xfffe)
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Verifies,
    /// Asks again before verifying the second code.
    RetriesThenVerifies,
    NeverVerifies,
}

struct LegitUser {
    phone: String,
    ips: Vec<String>,
    behaviour: Behaviour,
    arrival_secs: f64,
    /// Codes the host issued to this user (answered 204).
    issued: AtomicU32,
}

fn legit_users(plan: &Plan, rng: &mut Rng) -> Vec<LegitUser> {
    let countries = countries();
    let pools: Vec<PrefixPool> = countries
        .iter()
        .map(|country| PrefixPool::new(country, rng))
        .collect();
    let total_weight: u32 = countries.iter().map(|country| country.weight).sum();
    let carrier_nat: Vec<String> = (0..25).map(|_| public_ipv4(rng)).collect();
    let mut users = Vec::new();
    let mut arrival = 0.0;
    loop {
        // Poisson arrivals.
        arrival += -(1.0 - rng.unit()).ln() / plan.legit_users_per_sec;
        if arrival >= plan.legit_span_secs() {
            return users;
        }
        let mut pick = rng.below(u64::from(total_weight)) as u32;
        let country = countries
            .iter()
            .position(|country| {
                if pick < country.weight {
                    true
                } else {
                    pick -= country.weight;
                    false
                }
            })
            .unwrap_or(0);
        let phone = format!("{}{}", pools[country].draw(rng), rng.digits(4));
        let ips = match rng.below(100) {
            0..=69 => vec![public_ipv4(rng)],
            70..=79 => vec![public_ipv6(rng)],
            80..=91 => (0..2 + rng.below(2)).map(|_| public_ipv4(rng)).collect(),
            _ => vec![rng.pick(&carrier_nat).clone()],
        };
        let behaviour = match rng.below(100) {
            0..=87 => Behaviour::Verifies,
            88..=93 => Behaviour::RetriesThenVerifies,
            _ => Behaviour::NeverVerifies,
        };
        users.push(LegitUser {
            phone,
            ips,
            behaviour,
            arrival_secs: arrival,
            issued: AtomicU32::new(0),
        });
    }
}

struct AttackSend {
    phone: String,
    ip: String,
    at_secs: f64,
}

fn attack_sends(plan: &Plan, rng: &mut Rng) -> Vec<AttackSend> {
    let ips: Vec<String> = (0..plan.attack_ips).map(|_| public_ipv4(rng)).collect();
    let mut sends: Vec<AttackSend> = (0..plan.attack_sends)
        .map(|_| AttackSend {
            phone: format!("{}{}", rng.pick(ATTACK_PREFIXES), rng.digits(4)),
            ip: rng.pick(&ips).clone(),
            at_secs: plan.warm_up_secs + rng.unit() * plan.attack_secs,
        })
        .collect();
    sends.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    sends
}

fn is_attack_phone(phone: &str) -> bool {
    ATTACK_PREFIXES
        .iter()
        .any(|prefix| phone.starts_with(prefix))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Issue { user: usize, attempt: u8 },
    Verify { user: usize },
    Attack { send: usize },
}

/// When an action is due, in microseconds from the start; `sequence` keeps the order stable.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    due_micros: u64,
    sequence: u64,
    action: Action,
}

#[derive(Default)]
struct Queue {
    events: BinaryHeap<Reverse<Event>>,
    running: usize,
    sequence: u64,
}

impl Queue {
    fn push(&mut self, due_secs: f64, action: Action) {
        self.sequence += 1;
        self.events.push(Reverse(Event {
            due_micros: (due_secs * 1e6) as u64,
            sequence: self.sequence,
            action,
        }));
    }
}

/// The codes the mock wrote to the outbox, per phone, in order.
#[derive(Default)]
struct Mailbox {
    codes: Mutex<HashMap<String, Vec<String>>>,
    arrived: Condvar,
}

fn follow_outbox(outbox: PathBuf, mailbox: Arc<Mailbox>, stop: Arc<AtomicBool>) {
    crate::outbox::follow_outbox(outbox, stop, Duration::from_micros(500), |codes| {
        let arrivals: Vec<_> = codes
            .into_iter()
            .filter(|(to, _)| !is_attack_phone(to))
            .collect();
        if arrivals.is_empty() {
            return;
        }
        if let Ok(mut codes) = mailbox.codes.lock() {
            for (to, code) in arrivals {
                codes.entry(to).or_default().push(code);
            }
        }
        mailbox.arrived.notify_all();
    });
}

/// Outbox lines (the current file and the rotated one) whose recipient is in an attacked prefix.
fn attack_lines_in_outbox(outbox: &Path) -> usize {
    let mut rotated = outbox.as_os_str().to_owned();
    rotated.push(".1");
    [outbox.to_owned(), PathBuf::from(rotated)]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| {
            text.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|entry| entry["to"].as_str().is_some_and(is_attack_phone))
                .count()
        })
        .sum()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Legit(usize),
    Attack,
}

/// One answer of the host.
struct Answer {
    who: Who,
    verify: bool,
    at_secs: f64,
    status: u16,
    code: String,
    reason: Option<String>,
}

/// What the workers share.
struct World<'a> {
    url: String,
    users: &'a [LegitUser],
    attack: &'a [AttackSend],
    queue: Mutex<Queue>,
    changed: Condvar,
    mailbox: Arc<Mailbox>,
    /// Whether the host takes the `ip` field.
    send_ip: bool,
    started: Instant,
}

fn simulate(
    release: &Path,
    plan: &Plan,
    mode: Mode,
    protection_built: bool,
    args: &[String],
) -> Result<PumpingResult, String> {
    let config = json!({"templates": [{"usageType": "Generic", "content": "Your verification code is {{code}}."}], "outbox": true});
    let host = start_host_with_args(release, None, "libmock_sms.so", MOCK, &config, args)?;
    let outbox = host.outbox_path()?;
    let send_ip = host_takes_ip(&host)?;
    if !send_ip {
        println!("  this host refuses the ip field: requests go without it");
    }
    let mut rng = Rng(0x5EED_2024);
    let users = legit_users(plan, &mut rng);
    let attack = attack_sends(plan, &mut rng);
    let mut queue = Queue::default();
    for (index, user) in users.iter().enumerate() {
        queue.push(
            user.arrival_secs,
            Action::Issue {
                user: index,
                attempt: 1,
            },
        );
    }
    for (index, send) in attack.iter().enumerate() {
        queue.push(send.at_secs, Action::Attack { send: index });
    }
    let mailbox = Arc::new(Mailbox::default());
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (mailbox, stop, outbox) = (Arc::clone(&mailbox), Arc::clone(&stop), outbox.clone());
        std::thread::spawn(move || follow_outbox(outbox, mailbox, stop))
    };
    let world = World {
        url: host.url.clone(),
        users: &users,
        attack: &attack,
        queue: Mutex::new(queue),
        changed: Condvar::new(),
        mailbox,
        send_ip,
        started: Instant::now(),
    };
    let sampling = Arc::new(AtomicBool::new(protection_built && mode == Mode::Enforce));
    let sampler = {
        let (sampling, url) = (Arc::clone(&sampling), host.url.clone());
        std::thread::spawn(move || sample_blocks(&url, &sampling))
    };
    let (answers, lags) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..plan.workers)
            .map(|worker| {
                let world = &world;
                scope.spawn(move || run_worker(world, worker as u64))
            })
            .collect();
        let mut answers = Vec::new();
        let mut lags = Vec::new();
        for worker in workers {
            if let Ok((worker_answers, worker_lags)) = worker.join() {
                answers.extend(worker_answers);
                lags.extend(worker_lags);
            }
        }
        (answers, lags)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = follower.join();
    sampling.store(false, Ordering::Relaxed);
    if let Ok(blocks) = sampler.join() {
        print_blocks(&blocks);
    }
    let attack_reaching = attack_lines_in_outbox(&outbox);
    let result = tally(
        mode.name(protection_built),
        mode == Mode::Enforce,
        &users,
        &answers,
        lags,
        attack_reaching,
    );
    if result.legit_verified == 0 {
        return Err(format!(
            "{}: no legitimate user verified a code; the harness is broken",
            result.mode
        ));
    }
    Ok(result)
}

/// Probes with a malformed `ip`: a host that knows the field says the address is malformed,
/// one that does not says the field is unknown. Nothing is sent either way.
fn host_takes_ip(host: &Server) -> Result<bool, String> {
    let (status, body) = post(
        &host.url,
        "/api/verification-codes",
        &json!({"phone": "+12015550100", "ip": "not-an-address"}),
    );
    if status != 400 {
        return Err(format!(
            "a malformed ip was answered {status} {body}, not 400"
        ));
    }
    Ok(!body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("unknown field"))
}

fn run_worker(world: &World<'_>, worker: u64) -> (Vec<Answer>, Vec<f64>) {
    let mut rng = Rng(0xC0FFEE ^ (worker << 32));
    let mut answers = Vec::new();
    let mut lags = Vec::new();
    loop {
        let Ok(mut queue) = world.queue.lock() else {
            return (answers, lags);
        };
        let event = loop {
            let due = queue.events.peek().map(|Reverse(event)| event.due_micros);
            match due {
                None if queue.running == 0 => {
                    world.changed.notify_all();
                    return (answers, lags);
                }
                None => match world.changed.wait(queue) {
                    Ok(guard) => queue = guard,
                    Err(_) => return (answers, lags),
                },
                Some(due_micros) => {
                    let due = world.started + Duration::from_micros(due_micros);
                    let now = Instant::now();
                    if due <= now {
                        lags.push((now - due).as_secs_f64() * 1000.0);
                        queue.running += 1;
                        if let Some(Reverse(event)) = queue.events.pop() {
                            break event;
                        }
                    } else {
                        match world.changed.wait_timeout(queue, due - now) {
                            Ok((guard, _)) => queue = guard,
                            Err(_) => return (answers, lags),
                        }
                    }
                }
            }
        };
        drop(queue);
        let (answer, follow_up) = act(world, event.action, &mut rng);
        answers.push(answer);
        if let Ok(mut queue) = world.queue.lock() {
            if let Some((due_secs, action)) = follow_up {
                queue.push(due_secs, action);
            }
            queue.running -= 1;
        }
        world.changed.notify_all();
    }
}

fn now_secs(world: &World<'_>) -> f64 {
    world.started.elapsed().as_secs_f64()
}

/// Simulated seconds as real ones.
fn sim(seconds: f64) -> f64 {
    seconds / TIME_SCALE
}

/// Runs one action; returns the answer and the user's next step, if any.
fn act(world: &World<'_>, action: Action, rng: &mut Rng) -> (Answer, Option<(f64, Action)>) {
    match action {
        Action::Attack { send } => {
            let send = &world.attack[send];
            let answer = issue(world, Who::Attack, &send.phone, &send.ip);
            (answer, None)
        }
        Action::Issue { user, attempt } => {
            let person = &world.users[user];
            let ip = rng.pick(&person.ips).clone();
            let answer = issue(world, Who::Legit(user), &person.phone, &ip);
            if answer.status == 204 {
                person.issued.fetch_add(1, Ordering::Relaxed);
            }
            let now = answer.at_secs;
            // A human reads the SMS and types the code in 10–60 s; one who asks again does
            // so after 45–120 s.
            let next = match (person.behaviour, attempt) {
                (Behaviour::NeverVerifies, _) => None,
                (Behaviour::RetriesThenVerifies, 1) => Some((
                    now + sim(rng.between(45.0, 120.0)),
                    Action::Issue { user, attempt: 2 },
                )),
                _ if answer.status == 204 => {
                    Some((now + sim(rng.between(10.0, 60.0)), Action::Verify { user }))
                }
                _ => None,
            };
            (answer, next)
        }
        Action::Verify { user } => (verify(world, user), None),
    }
}

fn issue(world: &World<'_>, who: Who, phone: &str, ip: &str) -> Answer {
    let body = if world.send_ip {
        json!({"phone": phone, "ip": ip})
    } else {
        json!({"phone": phone})
    };
    let (status, body) = post(&world.url, "/api/verification-codes", &body);
    answer(world, who, false, status, &body)
}

fn verify(world: &World<'_>, user: usize) -> Answer {
    let person = &world.users[user];
    let issued = person.issued.load(Ordering::Relaxed) as usize;
    // The code is in the outbox before the host answers 204; the follower may lag a little.
    let code = world.mailbox.codes.lock().ok().and_then(|codes| {
        world
            .mailbox
            .arrived
            .wait_timeout_while(codes, Duration::from_secs(5), |codes| {
                codes.get(&person.phone).map_or(0, Vec::len) < issued
            })
            .ok()
            .and_then(|(codes, _)| codes.get(&person.phone).and_then(|all| all.last().cloned()))
    });
    let body = json!({"phone": person.phone, "verificationCode": code.unwrap_or_default()});
    let (status, body) = post(&world.url, "/api/verification-codes/verify", &body);
    answer(world, Who::Legit(user), true, status, &body)
}

fn answer(world: &World<'_>, who: Who, verify: bool, status: u16, body: &Value) -> Answer {
    Answer {
        who,
        verify,
        at_secs: now_secs(world),
        status,
        code: body["code"].as_str().unwrap_or_default().to_owned(),
        reason: body["data"]["reason"].as_str().map(str::to_owned),
    }
}

fn is_block(answer: &Answer) -> bool {
    answer.status == 429 && answer.code == "sms.blocked"
}

fn tally(
    mode: &str,
    enforce: bool,
    users: &[LegitUser],
    answers: &[Answer],
    mut lags: Vec<f64>,
    attack_reaching: usize,
) -> PumpingResult {
    let mut attack: Vec<&Answer> = answers
        .iter()
        .filter(|answer| answer.who == Who::Attack)
        .collect();
    attack.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    let attack_start = attack.first().map_or(0.0, |answer| answer.at_secs);
    let first_block_secs = attack
        .iter()
        .find(|answer| is_block(answer))
        .map(|answer| answer.at_secs - attack_start);
    // From when on every bucket of the attack (two simulated minutes) had ≥ 99 % blocked.
    let bucket_secs = 120.0 / TIME_SCALE;
    let mut buckets: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for answer in &attack {
        let bucket = buckets
            .entry(((answer.at_secs - attack_start) / bucket_secs) as u64)
            .or_default();
        bucket.0 += usize::from(is_block(answer));
        bucket.1 += 1;
    }
    let mut ninety_nine_secs = None;
    for (bucket, (blocked, sends)) in buckets.iter().rev() {
        if (*blocked as f64) < 0.99 * *sends as f64 {
            break;
        }
        ninety_nine_secs = Some(*bucket as f64 * bucket_secs);
    }
    let last_through_secs = attack
        .iter()
        .rev()
        .find(|answer| answer.status == 204)
        .map(|answer| answer.at_secs - attack_start);
    let mut reasons: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut other_refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut blocks_without_reason = 0;
    let mut legit_blocked = vec![false; users.len()];
    let mut legit_verified = vec![false; users.len()];
    for answer in answers {
        if is_block(answer) {
            let Some(reason) = &answer.reason else {
                blocks_without_reason += 1;
                continue;
            };
            let entry = reasons.entry(reason.clone()).or_default();
            match answer.who {
                Who::Attack => entry.0 += 1,
                Who::Legit(user) => {
                    entry.1 += 1;
                    legit_blocked[user] = true;
                }
            }
        } else if answer.status == 204 {
            if let (Who::Legit(user), true) = (answer.who, answer.verify) {
                legit_verified[user] = true;
            }
        } else {
            let who = match answer.who {
                Who::Attack => "attack",
                Who::Legit(_) => "legit",
            };
            *other_refusals
                .entry(format!("{who} {} {}", answer.status, answer.code))
                .or_default() += 1;
        }
    }
    let legit_failed_otherwise = users
        .iter()
        .enumerate()
        .filter(|(index, user)| {
            user.behaviour != Behaviour::NeverVerifies
                && !legit_verified[*index]
                && !legit_blocked[*index]
        })
        .count();
    lags.sort_by(f64::total_cmp);
    let lag_p99_ms = lags
        .get(((lags.len() as f64 * 0.99) as usize).min(lags.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    PumpingResult {
        mode: mode.to_owned(),
        attack_sends: attack.len(),
        attack_reaching,
        attack_blocked: attack.iter().filter(|answer| is_block(answer)).count(),
        legit_users: users.len(),
        legit_blocked: legit_blocked.iter().filter(|blocked| **blocked).count(),
        legit_verified: legit_verified.iter().filter(|verified| **verified).count(),
        legit_failed_otherwise,
        first_block_secs,
        ninety_nine_secs,
        last_through_secs,
        reasons,
        other_refusals,
        blocks_without_reason,
        lag_p99_ms,
        enforce,
    }
}

/// Every block `GET /api/protection` listed during the run (polled every 200 ms), by id.
fn sample_blocks(url: &str, sampling: &AtomicBool) -> BTreeMap<String, Value> {
    let mut blocks = BTreeMap::new();
    while sampling.load(Ordering::Relaxed) {
        let (status, body) = get(url, "/api/protection");
        if status == 200 {
            for block in body["blocks"].as_array().into_iter().flatten() {
                if let Some(id) = block["id"].as_str() {
                    blocks.insert(id.to_owned(), block.clone());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    blocks
}

fn print_blocks(blocks: &BTreeMap<String, Value>) {
    if blocks.is_empty() {
        return;
    }
    println!(
        "  blocks listed by GET /api/protection during the run: {}",
        blocks.len()
    );
    let mut blocks: Vec<&Value> = blocks.values().collect();
    blocks.sort_by_key(|block| block["since"].as_i64().unwrap_or_default());
    for block in blocks.iter().take(30) {
        println!(
            "    {} {} {} (issued {}, verified {}, blocked {} when last seen)",
            block["kind"].as_str().unwrap_or("?"),
            block["subject"].as_str().unwrap_or("?"),
            block["reason"].as_str().unwrap_or("?"),
            block["counts"]["issued"],
            block["counts"]["verified"],
            block["counts"]["blocked"],
        );
    }
}

/// `24.6 min (12.3 s)`: the simulated minutes after the attack's start, and the real seconds.
fn duration_cell(seconds: Option<f64>) -> String {
    seconds.map_or_else(
        || "never".to_owned(),
        |seconds| format!("{:.1} min ({seconds:.1} s)", seconds * TIME_SCALE / 60.0),
    )
}

fn print_results(results: &[PumpingResult]) {
    println!("| mode | attack sends | reached the connector | legit users | legit blocked | first block | ≥ 99 % blocked from | last attack send through | blocks by reason (attack / legit) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for result in results {
        let reasons = if result.reasons.is_empty() {
            "none".to_owned()
        } else {
            result
                .reasons
                .iter()
                .map(|(reason, (attack, legit))| format!("{reason} {attack} / {legit}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {} | {} | {} ({:.2} %) | {} | {} ({:.2} %) | {} | {} | {} | {reasons} |",
            result.mode,
            result.attack_sends,
            result.attack_reaching,
            100.0 * result.attack_reaching_share(),
            result.legit_users,
            result.legit_blocked,
            100.0 * result.legit_blocked_share(),
            duration_cell(result.first_block_secs),
            duration_cell(result.ninety_nine_secs),
            duration_cell(result.last_through_secs),
        );
    }
    for result in results {
        println!(
            "{}: attack sends blocked {}, legit users verified {}, legit users who meant to verify and could not for another reason {}, blocks without a reason {}, client lag p99 {:.0} ms",
            result.mode,
            result.attack_blocked,
            result.legit_verified,
            result.legit_failed_otherwise,
            result.blocks_without_reason,
            result.lag_p99_ms
        );
        if !result.other_refusals.is_empty() {
            let others: Vec<String> = result
                .other_refusals
                .iter()
                .map(|(what, count)| format!("{what}: {count}"))
                .collect();
            println!("  other answers: {}", others.join(", "));
        }
    }
    for result in results.iter().filter(|result| result.enforce) {
        println!(
            "targets ({}): attack reaching the connector {:.2} % (≤ {:.0} %: {}), legit users blocked {:.2} % (≤ {:.1} %: {})",
            result.mode,
            100.0 * result.attack_reaching_share(),
            100.0 * ATTACK_REACHING_TARGET,
            met(result.attack_reaching_share() <= ATTACK_REACHING_TARGET),
            100.0 * result.legit_blocked_share(),
            100.0 * LEGIT_BLOCKED_TARGET,
            met(result.legit_blocked_share() <= LEGIT_BLOCKED_TARGET),
        );
    }
}

fn met(condition: bool) -> &'static str {
    if condition {
        "met"
    } else {
        "missed"
    }
}
