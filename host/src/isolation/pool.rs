//! The host's side of process isolation: a small pool of worker processes per plugin build,
//! each answering one call at a time.
//!
//! A call takes the next worker in turn, writes its frame and waits for the answer. Calls to
//! one worker are pipelined and answered in order, and the deadline is the step's own: it
//! runs from when the worker begins the call (the previous answer, or the write to an idle
//! worker), so time spent queued behind other calls never counts. A worker that dies during
//! a call (a crash, the seccomp filter, the address-space limit) or misses the deadline (it
//! is SIGKILLed) is replaced, and the call it was computing is replayed once on a fresh
//! worker: a call is a pure function of what it carries, so the replay computes the same
//! thing. A second failure is the caller's to report. The calls queued behind it were never
//! begun: they go to another worker without using their replay. Replacements start at once
//! in the background and, after consecutive failures, wait longer each time (100 ms
//! doubling, at most 5 s), so a build that crashes on every call does not spin. Dropping the
//! pool (its build retired) kills its workers and frees their memory.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use plugin_api::PluginMetadata;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::protocol::{
    decode_body, encode_frame, frame_length, Answer, Call, Hello, Ready, MEMORY_LIMIT_ARGUMENT,
    PARENT_ARGUMENT, PROTOCOL_VERSION,
};
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

/// One worker's place in the pool.
#[derive(Default)]
struct Slot {
    /// Held while a worker is started here, so two calls do not start two.
    worker: tokio::sync::Mutex<Option<Arc<WorkerConnection>>>,
    /// Its worker died or was killed: the next one started here is a restart.
    lost_one: AtomicBool,
    /// A worker is being started here (under the lock): not running yet.
    starting: AtomicBool,
}

/// A call waiting for its answer; dropped unanswered when the worker ended while computing
/// it.
type Reply = tokio::sync::oneshot::Sender<Result<Vec<u8>, NotBegun>>;

/// The worker ended before it began the call.
#[derive(Debug)]
struct NotBegun;

/// How a call to one worker ended.
enum CallEnd {
    Answered(Vec<u8>),
    /// The worker ended while computing it (or was gone already).
    Ended,
    /// The worker ended before beginning it: another call crashed it or missed its deadline.
    NotBegun,
}

/// What the callers, the writer task and the reader task share, under one lock: the order
/// of the pending replies is the order the frames were written in.
#[derive(Default)]
struct Conversation {
    /// Calls written (or queued in `backlog`) and not answered yet, oldest first.
    pending: std::collections::VecDeque<Reply>,
    /// Bytes of frames the pipe had no room for yet; the writer task writes them.
    backlog: Vec<u8>,
    /// When the worker began the oldest pending call, if that call was queued behind
    /// another: its deadline runs from here (the reader task watches it). A call given to an
    /// idle worker watches its own deadline.
    head_since: Option<tokio::time::Instant>,
    /// Calls taken and answers handed out so far: the call taken as number `answered` is
    /// the one the worker computes.
    taken: u64,
    answered: u64,
    /// The worker ended (or its pipe broke): no call is taken any more.
    closed: bool,
}

/// Hands a call's deadline to the reader task when its caller goes away before the answer (a
/// cancelled request). A call given to an idle worker is watched by its caller alone, and
/// nothing would stop a loop in it from holding up every call queued behind.
struct DeadlineHandOver<'a> {
    connection: &'a WorkerConnection,
    position: u64,
    begun: tokio::time::Instant,
    settled: bool,
}

impl Drop for DeadlineHandOver<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(mut conversation) = self.connection.conversation.lock() {
            if conversation.answered == self.position
                && conversation.head_since.is_none()
                && !conversation.closed
            {
                conversation.head_since = Some(self.begun);
                self.connection.deadline_handed_over.notify_one();
            }
        }
    }
}

/// A running worker. A call writes its frame itself when the pipe has room (a non-blocking
/// write under the conversation's lock, never an await in between: a call cancelled with its
/// request never leaves half a frame), else leaves the rest to the writer task (which looks
/// again every millisecond while the pipe is full); the reader
/// task hands each answer to the oldest pending call (the worker answers in order) and kills
/// the worker when the call it is computing passes its deadline. Calls are pipelined: under
/// load the worker reads several frames in one read and the host several answers, and
/// neither side sleeps between them.
struct WorkerConnection {
    conversation: Arc<Mutex<Conversation>>,
    /// The worker's stdin, non-blocking.
    input: Arc<std::os::fd::OwnedFd>,
    /// Wakes the writer task: a backlog to write, or the connection dropped.
    backlog_waiting: Arc<tokio::sync::Notify>,
    /// Asks the reader task, which owns the child, to SIGKILL it.
    kill: Arc<tokio::sync::Notify>,
    /// A call passed its deadline (it was killed for it).
    missed_deadline: Arc<AtomicBool>,
    /// Wakes the reader task: a cancelled call's deadline is now its to watch.
    deadline_handed_over: Arc<tokio::sync::Notify>,
    call_timeout: Duration,
    /// `Some` once the worker ended: how (its exit and last words on stderr).
    ended: tokio::sync::watch::Receiver<Option<String>>,
    /// Its failure is counted once, however many calls it failed.
    failure_counted: AtomicBool,
}

impl Drop for WorkerConnection {
    /// The pool let go of the worker (its build retired): the writer task ends and drops the
    /// worker's stdin, and the worker, reading its end, exits.
    fn drop(&mut self) {
        if let Ok(mut conversation) = self.conversation.lock() {
            conversation.closed = true;
        }
        self.backlog_waiting.notify_one();
    }
}

/// Writes what fits of `bytes` without blocking: how many were written, `None` when the pipe
/// is broken.
fn write_some(input: &std::os::fd::OwnedFd, bytes: &[u8]) -> Option<usize> {
    match rustix::io::write(input, bytes) {
        Ok(written) => Some(written),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Some(0),
        Err(_) => None,
    }
}

impl WorkerConnection {
    fn is_alive(&self) -> bool {
        self.ended.borrow().is_none()
            && self
                .conversation
                .lock()
                .is_ok_and(|conversation| !conversation.closed)
    }

    /// The worker's answer to `frame`, or how it ended first.
    async fn call(&self, frame: &[u8]) -> CallEnd {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (position, idle);
        {
            let Ok(mut conversation) = self.conversation.lock() else {
                return CallEnd::Ended;
            };
            if conversation.closed {
                return CallEnd::Ended;
            }
            idle = conversation.pending.is_empty();
            conversation.pending.push_back(reply);
            position = conversation.taken;
            conversation.taken += 1;
            if conversation.backlog.is_empty() {
                match write_some(&self.input, frame) {
                    Some(written) if written == frame.len() => {}
                    Some(written) => {
                        conversation.backlog.extend_from_slice(&frame[written..]);
                        self.backlog_waiting.notify_one();
                    }
                    // Broken: the reader sees the end and fails what is pending.
                    None => conversation.closed = true,
                }
            } else {
                conversation.backlog.extend_from_slice(frame);
            }
        }
        let answered = if idle {
            // The worker begins it now: its deadline is the caller's to watch (no wake-up of
            // the reader task per call), or the reader task's if the caller goes away.
            let mut hand_over = DeadlineHandOver {
                connection: self,
                position,
                begun: tokio::time::Instant::now(),
                settled: false,
            };
            let waited = tokio::time::timeout(self.call_timeout, answer).await;
            hand_over.settled = true;
            match waited {
                Ok(answered) => answered,
                Err(_) => {
                    self.missed_deadline.store(true, Ordering::Relaxed);
                    self.kill.notify_one();
                    return CallEnd::Ended;
                }
            }
        } else {
            answer.await
        };
        match answered {
            Ok(Ok(body)) => CallEnd::Answered(body),
            Ok(Err(NotBegun)) => CallEnd::NotBegun,
            Err(_) => CallEnd::Ended,
        }
    }

    /// Why the worker failed a call, once it ended: its deadline, its exit and last words.
    async fn failure(&self) -> String {
        let ending = self.ending(false).await;
        if self.missed_deadline.load(Ordering::Relaxed) {
            format!(
                "it did not answer within {} ms; {ending}",
                self.call_timeout.as_millis()
            )
        } else {
            ending
        }
    }

    /// How the worker ended, once it has (asking it to end first when `kill`).
    async fn ending(&self, kill: bool) -> String {
        if kill {
            self.kill.notify_one();
        }
        let mut ended = self.ended.clone();
        let waited = tokio::time::timeout(
            Duration::from_secs(3),
            ended.wait_for(|ending| ending.is_some()),
        )
        .await;
        match waited {
            Ok(Ok(ending)) => ending.clone().unwrap_or_default(),
            _ => "the worker did not end".to_owned(),
        }
    }

    /// Takes over a worker that answered its handshake: starts its writer and reader tasks.
    fn start(worker: Worker, call_timeout: Duration) -> Result<Arc<Self>, String> {
        let Worker {
            mut child,
            stdin,
            mut stdout,
            last_words,
        } = worker;
        let input = stdin
            .into_owned_fd()
            .and_then(|input| {
                rustix::io::ioctl_fionbio(&input, true)?;
                Ok(input)
            })
            .map_err(|error| format!("the worker's input pipe: {error}"))?;
        let input = Arc::new(input);
        let conversation: Arc<Mutex<Conversation>> = Arc::default();
        let backlog_waiting = Arc::new(tokio::sync::Notify::new());
        let kill = Arc::new(tokio::sync::Notify::new());
        let missed_deadline = Arc::new(AtomicBool::new(false));
        let deadline_handed_over = Arc::new(tokio::sync::Notify::new());
        let (report_end, ended) = tokio::sync::watch::channel(None);

        let (writer_input, writer_conversation, writer_waiting) = (
            Arc::clone(&input),
            Arc::clone(&conversation),
            Arc::clone(&backlog_waiting),
        );
        tokio::spawn(async move {
            loop {
                writer_waiting.notified().await;
                loop {
                    let has_backlog = match writer_conversation.lock() {
                        Ok(conversation) if conversation.closed => return,
                        Ok(conversation) => !conversation.backlog.is_empty(),
                        Err(_) => return,
                    };
                    if !has_backlog {
                        break;
                    }
                    let written = {
                        let Ok(mut conversation) = writer_conversation.lock() else {
                            return;
                        };
                        match write_some(&writer_input, &conversation.backlog) {
                            Some(written) => {
                                conversation.backlog.drain(..written);
                                written
                            }
                            None => {
                                conversation.closed = true;
                                return;
                            }
                        }
                    };
                    // The pipe is full: the worker is behind (or stuck, and its deadline
                    // comes). Rare enough to look again shortly rather than register the
                    // descriptor with the reactor.
                    if written == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        });

        let (reader_kill, reader_conversation, reader_missed_deadline, reader_handed_over) = (
            Arc::clone(&kill),
            Arc::clone(&conversation),
            Arc::clone(&missed_deadline),
            Arc::clone(&deadline_handed_over),
        );
        tokio::spawn(async move {
            let mut kill_requested = false;
            loop {
                // One read per answer, kept across the waits below: a frame is never read
                // in part and dropped.
                let read = read_answer(&mut stdout);
                tokio::pin!(read);
                let frame = loop {
                    let deadline = reader_conversation
                        .lock()
                        .ok()
                        .and_then(|conversation| conversation.head_since)
                        .map(|since| since + call_timeout);
                    let watch_deadline = deadline.is_some() && !kill_requested;
                    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
                    tokio::select! {
                        biased;
                        () = reader_kill.notified(), if !kill_requested => {
                            let _ = child.start_kill();
                            kill_requested = true;
                        }
                        () = tokio::time::sleep_until(deadline.unwrap_or(far)), if watch_deadline => {
                            reader_missed_deadline.store(true, Ordering::Relaxed);
                            let _ = child.start_kill();
                            kill_requested = true;
                        }
                        // A cancelled call's deadline: look again.
                        () = reader_handed_over.notified() => {}
                        frame = &mut read => break frame,
                    }
                };
                let Ok(body) = frame else { break };
                let reply = reader_conversation
                    .lock()
                    .ok()
                    .and_then(|mut conversation| {
                        let reply = conversation.pending.pop_front();
                        conversation.answered += 1;
                        // The worker begins the next call as it sends this answer.
                        conversation.head_since =
                            (!conversation.pending.is_empty()).then(tokio::time::Instant::now);
                        reply
                    });
                if let Some(reply) = reply {
                    // A caller that went away (its request cancelled) drops it.
                    let _ = reply.send(Ok(body));
                }
            }
            let pending = match reader_conversation.lock() {
                Ok(mut conversation) => {
                    conversation.closed = true;
                    conversation.head_since = None;
                    std::mem::take(&mut conversation.pending)
                }
                Err(_) => Default::default(),
            };
            // The oldest was being computed (its reply dropped: it ended with the worker);
            // the worker had not begun the others.
            for reply in pending.into_iter().skip(1) {
                let _ = reply.send(Err(NotBegun));
            }
            let ending = end(&mut child, &last_words).await;
            let _ = report_end.send(Some(ending));
        });
        Ok(Arc::new(WorkerConnection {
            conversation,
            input,
            backlog_waiting,
            kill,
            missed_deadline,
            deadline_handed_over,
            call_timeout,
            ended,
            failure_counted: AtomicBool::new(false),
        }))
    }
}

/// A worker between its start and its handshake's answer.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The last lines the worker wrote on stderr (at most 3, joined by ` / `).
    last_words: Arc<Mutex<Vec<String>>>,
}

async fn read_answer(stdout: &mut BufReader<ChildStdout>) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stdout.read_exact(&mut prefix).await?;
    let length = frame_length(prefix).map_err(std::io::Error::other)?;
    let mut body = vec![0u8; length];
    stdout.read_exact(&mut body).await?;
    Ok(body)
}

/// Waits for the worker to end (killing it if it does not within 2 s) and says how.
async fn end(child: &mut Child, last_words: &Mutex<Vec<String>>) -> String {
    let ending = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => describe_exit(status),
        Ok(Err(error)) => format!("its end could not be read: {error}"),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            "it did not end within 2 s of closing its output and was killed".to_owned()
        }
    };
    // Its stderr reader may still hold the last line for a moment.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let last_words = last_words
        .lock()
        .map(|words| words.join(" / "))
        .unwrap_or_default();
    if last_words.is_empty() {
        ending
    } else {
        format!("{ending}; its last words: {last_words}")
    }
}

impl Worker {
    /// The handshake: one frame out, one back, before the connection's tasks take over.
    async fn exchange(&mut self, frame: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stdin.write_all(frame).await?;
        self.stdin.flush().await?;
        read_answer(&mut self.stdout).await
    }

    /// Ends a worker that never got its connection (SIGKILL when `kill`).
    async fn end(mut self, kill: bool) -> String {
        if kill {
            let _ = self.child.start_kill();
        }
        end(&mut self.child, &self.last_words).await
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
    slots: Vec<Slot>,
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
            slots: (0..size).map(|_| Slot::default()).collect(),
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
                let connection = WorkerConnection::start(worker, pool.settings.call_timeout)
                    .map_err(|reason| LoadError::PluginFailed {
                        reason: format!("its worker process could not be reached: {reason}"),
                    })?;
                *pool.slots[0].worker.lock().await = Some(connection);
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
            .filter(|slot| {
                // Locked: a call taking its worker, or a worker being started.
                slot.worker.try_lock().map_or_else(
                    |_| !slot.starting.load(Ordering::Relaxed),
                    |worker| worker.as_ref().is_some_and(|worker| worker.is_alive()),
                )
            })
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

    /// A running worker for the next slot in turn, started (with the restart delay) if the
    /// slot has none or its worker ended.
    async fn worker(&self) -> Result<Arc<WorkerConnection>, String> {
        let slot = &self.slots[self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        self.running_in(slot).await
    }

    /// The slot's running worker, started (with the restart delay) if it has none or its
    /// worker ended.
    async fn running_in(&self, slot: &Slot) -> Result<Arc<WorkerConnection>, String> {
        let mut worker = slot.worker.lock().await;
        if let Some(running) = worker.as_ref().filter(|worker| worker.is_alive()) {
            return Ok(Arc::clone(running));
        }
        if worker.take().is_some() {
            slot.lost_one.store(true, Ordering::Relaxed);
        }
        slot.starting.store(true, Ordering::Relaxed);
        let delay = self.restart_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let started = match self.spawn().await {
            Ok((started, Ready::Loaded { .. })) => {
                if slot.lost_one.swap(false, Ordering::Relaxed) {
                    if let Ok(mut health) = self.health.lock() {
                        health.restarts += 1;
                    }
                }
                WorkerConnection::start(started, self.settings.call_timeout)
                    .inspect(|connection| *worker = Some(Arc::clone(connection)))
            }
            Ok((started, Ready::Refused(refusal))) => {
                let _ = started.end(false).await;
                Err(format!(
                    "a new worker refused the build: {}",
                    LoadError::from(refusal)
                ))
            }
            Err(reason) => Err(format!("a new worker failed to start: {reason}")),
        };
        slot.starting.store(false, Ordering::Relaxed);
        started
    }

    /// Starts replacements for workers that ended, in the background, so the pool is back
    /// to strength before the next send needs it (and `/api/plugins` shows it). Only while
    /// the pool is in use: a retired build's pool is dropped with its workers.
    fn replace_lost_workers(self: &Arc<Self>) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(pool) = pool.upgrade() else { return };
            for slot in &pool.slots {
                let lost = slot
                    .worker
                    .try_lock()
                    .is_ok_and(|worker| worker.as_ref().is_some_and(|worker| !worker.is_alive()));
                if lost {
                    if let Err(reason) = pool.running_in(slot).await {
                        tracing::warn!(factory_id = %pool.label(), %reason, "a plugin worker could not be replaced; the next call tries again");
                    }
                }
            }
        });
    }

    /// Counts a worker's failure once, however many calls it failed, and starts its
    /// replacement.
    fn count_failure(self: &Arc<Self>, worker: &WorkerConnection, failure: &str, attempt: u32) {
        if !worker.failure_counted.swap(true, Ordering::Relaxed) {
            tracing::warn!(factory_id = %self.label(), attempt, reason = %failure, "a plugin worker failed during a call; it is replaced");
            self.record(Some(failure));
            self.replace_lost_workers();
        }
    }

    /// One call, replayed once on a fresh worker if its worker died or missed the deadline
    /// while computing it. A call whose worker ended before beginning it goes to the next
    /// worker without using its replay (a few times at most: a pool whose workers all keep
    /// dying fails it).
    pub async fn call(self: &Arc<Self>, call: &Call) -> Result<Answer, WorkerLost> {
        const NOT_BEGUN_RETRIES: u32 = 8;
        let frame = encode_frame(call).map_err(|reason| WorkerLost { reason })?;
        let mut last_failure = String::new();
        let (mut attempt, mut not_begun) = (1, 0);
        while attempt <= 2 {
            let worker = match self.worker().await {
                Ok(worker) => worker,
                Err(reason) => {
                    self.record(Some(&reason));
                    last_failure = reason;
                    attempt += 1;
                    continue;
                }
            };
            let failure = match worker.call(&frame).await {
                CallEnd::Answered(body) => match decode_body::<Answer>(&body) {
                    Ok(answer) => {
                        self.record(None);
                        return Ok(answer);
                    }
                    Err(reason) => {
                        format!(
                            "it answered garbage ({reason}); {}",
                            worker.ending(true).await
                        )
                    }
                },
                CallEnd::NotBegun if not_begun < NOT_BEGUN_RETRIES => {
                    not_begun += 1;
                    // Only the first to see the worker's end waits for how it ended; the
                    // others go straight on to the next worker.
                    if !worker.failure_counted.load(Ordering::Relaxed) {
                        let failure = worker.failure().await;
                        self.count_failure(&worker, &failure, attempt);
                    }
                    continue;
                }
                CallEnd::NotBegun | CallEnd::Ended => worker.failure().await,
            };
            self.count_failure(&worker, &failure, attempt);
            last_failure = failure;
            attempt += 1;
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
