//! The `slow-clients` scenario: sends at full speed (wrk) while slow clients stay connected,
//! against the same load without them, in alternating rounds: 1,000 slowloris clients, then
//! 100 slow readers.
//!
//! A slowloris client sends a partial request head, then one more header line a second. A
//! slow reader pipelines requests for a large console file and never reads an answer, adding
//! one more request a second. Each reconnects whenever the host closes it (at its header
//! read timeout or its response write timeout, 10 s each by default), so about as many are
//! connected throughout, the way a real attacker keeps them.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{median, run_wrk, start_host, WrkResult};

/// How often each slow client sends one more header line or request (and is checked for
/// closure).
const TRICKLE_INTERVAL: Duration = Duration::from_secs(1);

/// The largest file the host serves without a key.
const LARGE_RESPONSE_PATH: &str = "/console/assets/config-form.js";

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlowClientKind {
    Slowloris,
    SlowReader,
}

impl SlowClientKind {
    fn connect(self, address: &str) -> Result<TcpStream, String> {
        match self {
            SlowClientKind::Slowloris => connect_slowly(address),
            SlowClientKind::SlowReader => connect_reading_nothing(address),
        }
    }

    /// One more step of the attack; whether the connection is still open.
    fn trickle(self, stream: &mut TcpStream) -> bool {
        match self {
            SlowClientKind::Slowloris => trickle_one_header_line(stream),
            SlowClientKind::SlowReader => pipeline_one_more_request(stream),
        }
    }

    fn description(self) -> &'static str {
        match self {
            SlowClientKind::Slowloris => "slowloris",
            SlowClientKind::SlowReader => "slow readers",
        }
    }
}

struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Connected at the last check, and reconnections so far.
    connected: Arc<AtomicU64>,
    reconnections: Arc<AtomicU64>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl SlowClients {
    /// Connects `count` slow clients to `address` and keeps them connected until dropped.
    fn start(address: &str, count: usize, kind: SlowClientKind) -> Result<SlowClients, String> {
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            clients.push(Some(kind.connect(address)?));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicU64::new(count as u64));
        let reconnections = Arc::new(AtomicU64::new(0));
        let worker = {
            let (stop, connected, reconnections, address) = (
                Arc::clone(&stop),
                Arc::clone(&connected),
                Arc::clone(&reconnections),
                address.to_owned(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let tick = Instant::now();
                    let mut open = 0;
                    for client in clients.iter_mut() {
                        let alive = client.as_mut().is_some_and(|stream| kind.trickle(stream));
                        if !alive {
                            *client = kind.connect(&address).ok();
                            reconnections.fetch_add(1, Ordering::Relaxed);
                        }
                        open += u64::from(client.is_some());
                    }
                    connected.store(open, Ordering::Relaxed);
                    std::thread::sleep(TRICKLE_INTERVAL.saturating_sub(tick.elapsed()));
                }
            })
        };
        Ok(SlowClients {
            stop,
            connected,
            reconnections,
            worker: Some(worker),
        })
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn connect_slowly(address: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(address).map_err(|error| error.to_string())?;
    stream
        .write_all(b"POST /api/messages HTTP/1.1\r\nHost: bench\r\n")
        .map_err(|error| error.to_string())?;
    stream
        .set_nonblocking(true)
        .map_err(|error| error.to_string())?;
    Ok(stream)
}

/// One more header line, unless the host closed the connection; whether it is still open.
fn trickle_one_header_line(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 512];
    match stream.read(&mut buffer) {
        Ok(0) => return false,
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        Err(_) => return false,
    }
    stream.write_all(b"X-Slow: a\r\n").is_ok()
}

fn slow_reader_request() -> String {
    format!("GET {LARGE_RESPONSE_PATH} HTTP/1.1\r\nHost: bench\r\n\r\n")
}

/// A connection with as many requests for a large file pipelined as the socket takes (tens of
/// megabytes of answers, past every socket buffer), whose answers are never read.
fn connect_reading_nothing(address: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(address).map_err(|error| error.to_string())?;
    stream
        .set_nonblocking(true)
        .map_err(|error| error.to_string())?;
    let requests = slow_reader_request().repeat(2000);
    let mut sent = 0;
    while sent < requests.len() {
        match stream.write(&requests.as_bytes()[sent..]) {
            Ok(0) | Err(_) => break,
            Ok(count) => sent += count,
        }
    }
    Ok(stream)
}

/// One more pipelined request, unless the host closed the connection (the write fails);
/// whether it is still open. Nothing is read.
fn pipeline_one_more_request(stream: &mut TcpStream) -> bool {
    // Non-blocking: a full socket (WouldBlock) is the point, not a closed connection.
    match stream.write_all(slow_reader_request().as_bytes()) {
        Ok(()) => true,
        Err(error) => error.kind() == ErrorKind::WouldBlock,
    }
}

/// The slow clients need a descriptor each, on top of the harness's own.
fn raise_own_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if let Err(error) = setrlimit(Resource::Nofile, raised) {
        eprintln!("bench: cannot raise the open file limit: {error}");
    }
}

struct Round {
    load: WrkResult,
    slow_clients_connected: u64,
    reconnections: u64,
}

pub fn bench_slow_clients(
    release: &Path,
    duration_secs: u64,
    connections: u32,
    slowloris_count: usize,
    slow_reader_count: usize,
) -> Result<(), String> {
    raise_own_open_file_limit();
    let host = start_host(release, false)?;
    let address = host.url.trim_start_matches("http://").to_owned();
    run_wrk(&host.url, 1, connections)?;
    let rounds = if duration_secs <= 1 { 1 } else { 3 };
    let attacks = [
        (SlowClientKind::Slowloris, slowloris_count),
        (SlowClientKind::SlowReader, slow_reader_count),
    ];
    println!("POST /api/messages, wrk -t2 -c{connections} -d{duration_secs}s, {rounds} rounds alternating without slow clients, with {slowloris_count} slowloris clients (partial head, one header line a second) and with {slow_reader_count} slow readers (requests for {LARGE_RESPONSE_PATH} pipelined, never read, one more a second), each reconnecting when closed, default limits");
    println!("| round | slow clients | connected (end) | reconnections | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut throughput_ratios = [Vec::new(), Vec::new()];
    let mut p99_ratios = [Vec::new(), Vec::new()];
    let mut failed = 0;
    for round in 1..=rounds {
        let without = Round {
            load: run_wrk(&host.url, duration_secs, connections)?,
            slow_clients_connected: 0,
            reconnections: 0,
        };
        print_round(round, "none", &without);
        failed += without.load.failed;
        for (index, (kind, count)) in attacks.into_iter().enumerate() {
            let with = {
                let slow_clients = SlowClients::start(&address, count, kind)?;
                // Let them settle: the host accepts them all, then each is trickling (or
                // blocked writing answers its client does not read).
                std::thread::sleep(TRICKLE_INTERVAL * 2);
                let load = run_wrk(&host.url, duration_secs, connections)?;
                Round {
                    load,
                    slow_clients_connected: slow_clients.connected.load(Ordering::Relaxed),
                    reconnections: slow_clients.reconnections.load(Ordering::Relaxed),
                }
            };
            print_round(round, &format!("{count} {}", kind.description()), &with);
            throughput_ratios[index]
                .push(with.load.requests_per_second / without.load.requests_per_second);
            p99_ratios[index].push(with.load.p99_ms / without.load.p99_ms);
            failed += with.load.failed;
        }
    }
    for ((kind, _), (throughput, p99)) in attacks
        .into_iter()
        .zip(throughput_ratios.into_iter().zip(p99_ratios))
    {
        println!(
            "with/without {}, median of {rounds}: requests/s {:.2} (target ≥ 0.9), p99 {:.2} (target ≤ 2)",
            kind.description(),
            median(throughput),
            median(p99)
        );
    }
    if failed > 0 {
        return Err(format!("{failed} sends failed"));
    }
    Ok(())
}

fn print_round(round: u32, slow_clients: &str, result: &Round) {
    println!(
        "| {round} | {slow_clients} | {} | {} | {:.0} | {:.3} | {:.3} | {} |",
        result.slow_clients_connected,
        result.reconnections,
        result.load.requests_per_second,
        result.load.p50_ms,
        result.load.p99_ms,
        result.load.failed
    );
}
