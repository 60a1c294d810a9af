//! The host's side of process isolation: a small pool of worker processes per plugin build,
//! each answering one call at a time.
//!
//! A call takes a free worker (or waits for one), writes its frame and reads the answer
//! within the deadline. A worker that dies during a call (a crash, the seccomp filter, the
//! address-space limit) or misses the deadline (it is SIGKILLed) is replaced, and the call
//! is replayed once on a fresh worker: a call is a pure function of what it carries, so the
//! replay computes the same thing. A second failure is the caller's to report. Replacements
//! after consecutive failures wait longer each time (100 ms doubling, at most 5 s), so a
//! build that crashes on every call does not spin. Dropping the pool (its build retired)
//! kills its workers and frees their memory.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use plugin_api::PluginMetadata;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::protocol::{
    decode_body, encode_frame, frame_length, Answer, Call, Hello, Ready, PROTOCOL_VERSION,
};
use super::worker::{MEMORY_LIMIT_ARGUMENT, PARENT_ARGUMENT};
use crate::plugins::load_error::LoadError;

/// `--plugin-isolation process`'s settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The `connector-host` binary the workers run (`plugin-worker`).
    pub executable: PathBuf,
    pub workers_per_build: usize,
    /// A call's deadline, past which the worker is SIGKILLed.
    pub call_timeout: Duration,
    /// Loading the library and reading its metadata.
    pub load_timeout: Duration,
    pub memory_limit_bytes: u64,
}

/// Why a call got no answer, after its replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLost {
    pub reason: String,
}

impl std::fmt::Display for WorkerLost {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.reason)
    }
}

/// A pool's health, for `/api/plugins` and the console.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolHealth {
    /// Workers the pool may run.
    pub workers: usize,
    /// Workers running now.
    pub running: usize,
    /// Workers started to replace one that died or was killed.
    pub restarts: u64,
    pub last_crash: Option<WorkerCrash>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerCrash {
    /// How the worker ended (`killed by SIGSEGV (a memory fault)`, ...) and its last line
    /// on stderr.
    pub reason: String,
    /// Milliseconds since the epoch.
    pub at: i64,
}

#[derive(Default)]
struct Slot {
    worker: Option<Worker>,
    /// Its worker died or was killed: the next one started here is a restart.
    lost_one: bool,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Set while a frame is out and its answer not read: a call cancelled there (its
    /// request went away) leaves the worker mid-conversation, and it is replaced.
    in_call: bool,
    /// The last lines the worker wrote on stderr (at most 3, joined by ` / `).
    last_words: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    async fn exchange(&mut self, frame: &[u8]) -> std::io::Result<Vec<u8>> {
        self.in_call = true;
        self.stdin.write_all(frame).await?;
        self.stdin.flush().await?;
        let mut prefix = [0u8; 4];
        self.stdout.read_exact(&mut prefix).await?;
        let length = frame_length(prefix).map_err(std::io::Error::other)?;
        let mut body = vec![0u8; length];
        self.stdout.read_exact(&mut body).await?;
        self.in_call = false;
        Ok(body)
    }

    /// Ends the worker (SIGKILL when `kill`) and says how it ended.
    async fn end(mut self, kill: bool) -> String {
        if kill {
            let _ = self.child.start_kill();
        }
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let ending = match status {
            Ok(Ok(status)) => describe_exit(status),
            Ok(Err(error)) => format!("its end could not be read: {error}"),
            Err(_) => {
                let _ = self.child.start_kill();
                "it did not end within 2 s and was killed".to_owned()
            }
        };
        // Its stderr reader may still hold the last line for a moment.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let last_words = self
            .last_words
            .lock()
            .map(|words| words.join(" / "))
            .unwrap_or_default();
        if last_words.is_empty() {
            ending
        } else {
            format!("{ending}; its last words: {last_words}")
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), status.code()) {
        (Some(signal), _) => {
            let (name, meaning) = match signal {
                libc::SIGSEGV => ("SIGSEGV", "a memory fault, or a stack overflow"),
                libc::SIGABRT => ("SIGABRT", "the plugin aborted: a panic that could not unwind, a failed allocation or a stack overflow"),
                libc::SIGSYS => ("SIGSYS", "a system call the sandbox forbids: files, sockets, threads, exec"),
                libc::SIGKILL => ("SIGKILL", "killed"),
                libc::SIGBUS => ("SIGBUS", "a bus error"),
                libc::SIGILL => ("SIGILL", "an illegal instruction"),
                libc::SIGFPE => ("SIGFPE", "an arithmetic fault"),
                _ => ("a signal", "unexpected"),
            };
            format!("the worker was killed by {name} ({meaning}; signal {signal})")
        }
        (None, Some(code)) => format!("the worker exited with code {code}"),
        (None, None) => "the worker ended".to_owned(),
    }
}

/// The worker processes of one plugin build.
pub struct WorkerPool {
    library: PathBuf,
    sha256: String,
    /// The build's factory id once loaded, for log lines.
    label: OnceLock<String>,
    settings: Arc<WorkerSettings>,
    slots: Vec<tokio::sync::Mutex<Slot>>,
    next_slot: AtomicUsize,
    next_instance: AtomicU64,
    health: Mutex<HealthState>,
}

#[derive(Default)]
struct HealthState {
    restarts: u64,
    consecutive_failures: u32,
    last_crash: Option<WorkerCrash>,
}

/// A loaded build: its pool, metadata and the plugin-api layout it was opened through.
pub struct StartedPool {
    pub pool: Arc<WorkerPool>,
    pub metadata: PluginMetadata,
    pub abi_version: String,
}

impl WorkerPool {
    /// Starts the build's first worker, which loads and checks the library: its metadata, or
    /// why the build is refused.
    pub async fn start(
        library: PathBuf,
        sha256: String,
        settings: Arc<WorkerSettings>,
    ) -> Result<StartedPool, LoadError> {
        let size = settings.workers_per_build.max(1);
        let pool = WorkerPool {
            library,
            sha256,
            label: OnceLock::new(),
            settings,
            slots: (0..size)
                .map(|_| tokio::sync::Mutex::new(Slot::default()))
                .collect(),
            next_slot: AtomicUsize::new(0),
            next_instance: AtomicU64::new(1),
            health: Mutex::new(HealthState::default()),
        };
        let (worker, ready) = pool
            .spawn()
            .await
            .map_err(|reason| LoadError::PluginFailed {
                reason: format!("its worker process failed while loading it: {reason}"),
            })?;
        match ready {
            Ready::Loaded {
                metadata_json,
                abi_version,
            } => {
                let metadata: PluginMetadata =
                    serde_json::from_str(&metadata_json).map_err(|error| {
                        LoadError::InvalidMetadata {
                            reason: error.to_string(),
                        }
                    })?;
                let _ = pool.label.set(metadata.connector.id.clone());
                pool.slots[0].lock().await.worker = Some(worker);
                Ok(StartedPool {
                    pool: Arc::new(pool),
                    metadata,
                    abi_version,
                })
            }
            Ready::Refused(refusal) => {
                let _ = worker.end(false).await;
                Err(refusal.into())
            }
        }
    }

    fn label(&self) -> &str {
        self.label
            .get()
            .map(String::as_str)
            .unwrap_or_else(|| self.sha256.get(..12).unwrap_or(&self.sha256))
    }

    /// A key for a new connector instance (a config), unique in this pool.
    pub fn new_instance_key(&self) -> u64 {
        self.next_instance.fetch_add(1, Ordering::Relaxed)
    }

    pub fn health(&self) -> PoolHealth {
        let running = self
            .slots
            .iter()
            .filter(|slot| slot.try_lock().map_or(true, |slot| slot.worker.is_some()))
            .count();
        let health = self
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        PoolHealth {
            workers: self.slots.len(),
            running,
            restarts: health.restarts,
            last_crash: health.last_crash.clone(),
        }
    }

    async fn spawn(&self) -> Result<(Worker, Ready), String> {
        let mut child = Command::new(&self.settings.executable)
            .arg("plugin-worker")
            .arg(MEMORY_LIMIT_ARGUMENT)
            .arg(self.settings.memory_limit_bytes.to_string())
            .arg(PARENT_ARGUMENT)
            .arg(std::process::id().to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                format!(
                    "cannot start {} plugin-worker: {error}",
                    self.settings.executable.display()
                )
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the worker's pipes were not set up".to_owned());
        };
        let last_words = Arc::new(Mutex::new(Vec::new()));
        let label = self.label().to_owned();
        let words = Arc::clone(&last_words);
        // The worker's stderr (a panic message, the sandbox's refusal) into the host's log.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(500).collect();
                tracing::warn!(factory_id = %label, line = %line, "plugin worker stderr");
                // Rust's hint about backtraces says nothing of what happened.
                if line.starts_with("note: run with `RUST_BACKTRACE") || line.trim().is_empty() {
                    continue;
                }
                if let Ok(mut words) = words.lock() {
                    if words.len() == 3 {
                        words.remove(0);
                    }
                    words.push(line);
                }
            }
        });
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            in_call: false,
            last_words,
        };
        let hello = encode_frame(&Hello {
            protocol: PROTOCOL_VERSION,
            library: self.library.to_string_lossy().into_owned(),
            sha256: self.sha256.clone(),
        })?;
        match tokio::time::timeout(self.settings.load_timeout, worker.exchange(&hello)).await {
            Ok(Ok(body)) => match decode_body::<Ready>(&body) {
                Ok(ready) => Ok((worker, ready)),
                Err(reason) => Err(format!("{reason}; {}", worker.end(true).await)),
            },
            Ok(Err(_)) => Err(worker.end(false).await),
            Err(_) => Err(format!(
                "it did not load the library within {:?}; {}",
                self.settings.load_timeout,
                worker.end(true).await
            )),
        }
    }

    /// How long to wait before starting a worker: nothing after one failure (the replay is
    /// immediate), then 100 ms doubling up to 5 s while failures follow each other.
    fn restart_delay(&self) -> Duration {
        let failures = self
            .health
            .lock()
            .map(|health| health.consecutive_failures)
            .unwrap_or(0);
        match failures {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(100u64 << (n - 2).min(6)).min(Duration::from_secs(5)),
        }
    }

    fn record(&self, failure: Option<&str>) {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match failure {
            None => health.consecutive_failures = 0,
            Some(reason) => {
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                health.last_crash = Some(WorkerCrash {
                    reason: reason.to_owned(),
                    at: crate::store::now_millis(),
                });
                ::metrics::counter!("sms_plugin_worker_failures_total", "factory" => self.label().to_owned())
                    .increment(1);
            }
        }
    }

    /// A free worker slot, or the next one to free up.
    async fn slot(&self) -> tokio::sync::MutexGuard<'_, Slot> {
        let start = self.next_slot.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.slots.len() {
            if let Ok(slot) = self.slots[(start + offset) % self.slots.len()].try_lock() {
                return slot;
            }
        }
        self.slots[start % self.slots.len()].lock().await
    }

    /// One call, replayed once on a fresh worker if its worker died or missed the deadline.
    pub async fn call(&self, call: &Call) -> Result<Answer, WorkerLost> {
        let frame = encode_frame(call).map_err(|reason| WorkerLost { reason })?;
        let mut last_failure = String::new();
        for attempt in 0..2 {
            let mut slot = self.slot().await;
            if slot.worker.as_ref().is_some_and(|worker| worker.in_call) {
                if let Some(abandoned) = slot.worker.take() {
                    let _ = abandoned.end(true).await;
                }
            }
            if slot.worker.is_none() {
                let delay = self.restart_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                match self.spawn().await {
                    Ok((worker, Ready::Loaded { .. })) => {
                        slot.worker = Some(worker);
                        if std::mem::take(&mut slot.lost_one) {
                            if let Ok(mut health) = self.health.lock() {
                                health.restarts += 1;
                            }
                        }
                    }
                    Ok((worker, Ready::Refused(refusal))) => {
                        let _ = worker.end(false).await;
                        last_failure = format!(
                            "a new worker refused the build: {}",
                            LoadError::from(refusal)
                        );
                        self.record(Some(&last_failure));
                        continue;
                    }
                    Err(reason) => {
                        last_failure = format!("a new worker failed to start: {reason}");
                        self.record(Some(&last_failure));
                        continue;
                    }
                }
            }
            let Some(worker) = slot.worker.as_mut() else {
                continue;
            };
            let outcome =
                tokio::time::timeout(self.settings.call_timeout, worker.exchange(&frame)).await;
            let failure = match outcome {
                Ok(Ok(body)) => match decode_body::<Answer>(&body) {
                    Ok(answer) => {
                        self.record(None);
                        return Ok(answer);
                    }
                    Err(reason) => {
                        let ending = slot.worker.take().map(|worker| worker.end(true));
                        match ending {
                            Some(ending) => {
                                format!("it answered garbage ({reason}); {}", ending.await)
                            }
                            None => reason,
                        }
                    }
                },
                Ok(Err(_)) => match slot.worker.take() {
                    Some(worker) => worker.end(false).await,
                    None => "the worker is gone".to_owned(),
                },
                Err(_) => match slot.worker.take() {
                    Some(worker) => format!(
                        "it did not answer within {} ms; {}",
                        self.settings.call_timeout.as_millis(),
                        worker.end(true).await
                    ),
                    None => "the worker is gone".to_owned(),
                },
            };
            slot.lost_one = true;
            tracing::warn!(factory_id = %self.label(), attempt = attempt + 1, reason = %failure, "a plugin worker failed during a call; it is replaced");
            self.record(Some(&failure));
            last_failure = failure;
        }
        Err(WorkerLost {
            reason: last_failure,
        })
    }
}

/// Runs a worker call from synchronous code (loading, building connectors): on the
/// multi-thread runtime through `block_in_place`, so the runtime's other tasks move on;
/// outside any runtime on a small one of its own.
pub fn run_blocking<T>(future: impl std::future::Future<Output = T>) -> Result<T, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                Ok(tokio::task::block_in_place(|| handle.block_on(future)))
            }
            _ => Err("plugin isolation needs the multi-thread runtime".to_owned()),
        },
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())
            .map(|runtime| runtime.block_on(future)),
    }
}
