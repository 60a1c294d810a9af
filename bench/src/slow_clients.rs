//! The `slow-clients` scenario: sends at full speed (wrk) while 1,000 slowloris clients stay
//! connected, against the same load without them, in alternating rounds.
//!
//! Each slow client sends a partial request head, then one more header line a second, and
//! reconnects whenever the host closes it (at its header read timeout, 10 s by default), so
//! about 1,000 are connected throughout, the way a real attacker keeps them.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{median, run_wrk, start_host, WrkResult};

/// How often each slow client sends one more header line (and is checked for closure).
const TRICKLE_INTERVAL: Duration = Duration::from_secs(1);

struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Connected at the last check, and reconnections so far.
    connected: Arc<AtomicU64>,
    reconnections: Arc<AtomicU64>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl SlowClients {
    /// Connects `count` slow clients to `address` and keeps them connected until dropped.
    fn start(address: &str, count: usize) -> Result<SlowClients, String> {
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            clients.push(Some(connect_slowly(address)?));
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
                        let alive = client.as_mut().is_some_and(trickle_one_header_line);
                        if !alive {
                            *client = connect_slowly(&address).ok();
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
    slow_client_count: usize,
) -> Result<(), String> {
    raise_own_open_file_limit();
    let host = start_host(release, false)?;
    let address = host.url.trim_start_matches("http://").to_owned();
    run_wrk(&host.url, 1, connections)?;
    let rounds = if duration_secs <= 1 { 1 } else { 3 };
    println!("POST /api/messages, wrk -t2 -c{connections} -d{duration_secs}s, {rounds} rounds alternating without and with {slow_client_count} slow clients (partial head, one header line a second, reconnecting when closed), default limits");
    println!("| round | slow clients | connected (end) | reconnections | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|---|---|---|");
    let (mut throughput_ratios, mut p99_ratios, mut failed) = (Vec::new(), Vec::new(), 0);
    for round in 1..=rounds {
        let without = Round {
            load: run_wrk(&host.url, duration_secs, connections)?,
            slow_clients_connected: 0,
            reconnections: 0,
        };
        let with = {
            let slow_clients = SlowClients::start(&address, slow_client_count)?;
            // Let them settle: the host accepts them all, then each is trickling.
            std::thread::sleep(TRICKLE_INTERVAL * 2);
            let load = run_wrk(&host.url, duration_secs, connections)?;
            Round {
                load,
                slow_clients_connected: slow_clients.connected.load(Ordering::Relaxed),
                reconnections: slow_clients.reconnections.load(Ordering::Relaxed),
            }
        };
        for (label, result) in [("0", &without), ("yes", &with)] {
            let label = if label == "yes" {
                slow_client_count.to_string()
            } else {
                label.to_owned()
            };
            println!(
                "| {round} | {label} | {} | {} | {:.0} | {:.3} | {:.3} | {} |",
                result.slow_clients_connected,
                result.reconnections,
                result.load.requests_per_second,
                result.load.p50_ms,
                result.load.p99_ms,
                result.load.failed
            );
        }
        throughput_ratios.push(with.load.requests_per_second / without.load.requests_per_second);
        p99_ratios.push(with.load.p99_ms / without.load.p99_ms);
        failed += without.load.failed + with.load.failed;
    }
    let throughput_ratio = median(throughput_ratios);
    let p99_ratio = median(p99_ratios);
    println!(
        "with/without slow clients, median of {rounds}: requests/s {throughput_ratio:.2} (target ≥ 0.9), p99 {p99_ratio:.2} (target ≤ 2)"
    );
    if failed > 0 {
        return Err(format!("{failed} sends failed"));
    }
    Ok(())
}
