//! Where formatted log lines wait for the disk: a buffer in memory that one background
//! thread writes out in batches, at most every [`BATCH_WINDOW`].
//!
//! Why not `tracing_appender::non_blocking` (what the host used before): its worker thread
//! wakes for every line, so under load each send paid a channel wake-up (a futex), the
//! worker's spinning (`sched_yield`) and often a `write` of its own: about 2.5 system calls
//! per send, more than the send's own socket I/O. Here a caller only appends to a buffer
//! under a mutex, and wakes the writer only when it is asleep with nothing to write; the
//! writer, once woken, lets [`BATCH_WINDOW`] of lines gather and writes them with one
//! `write`. A line reaches stderr at most a few milliseconds after it was logged.
//!
//! Never lossy: the audit trail is one line per send. Past [`MAX_PENDING_BYTES`] (stderr
//! blocked, a full disk) callers wait for room, as they did on the old bounded channel.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather once woken: under load one `write` per window
/// instead of one per line; when idle, the delay of a lone line.
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// Lines waiting past this make callers wait: memory stays bounded if stderr blocks.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// The writing end handed to the log formatter: cheap to clone, one per formatted line.
#[derive(Clone)]
pub struct BatchedLogWriter {
    shared: Arc<SharedLines>,
}

/// Joins the writer thread on drop, after it wrote every line logged before.
pub struct LogFlushGuard {
    shared: Arc<SharedLines>,
    writer_thread: Option<JoinHandle<()>>,
}

struct SharedLines {
    pending: Mutex<PendingLines>,
    /// Signalled when lines arrive for an idle writer, or on close.
    lines_arrived: Condvar,
    /// Signalled when the writer took the pending lines.
    room_made: Condvar,
}

#[derive(Default)]
struct PendingLines {
    bytes: Vec<u8>,
    writer_idle: bool,
    closed: bool,
}

impl BatchedLogWriter {
    /// Starts the writer thread on `output`.
    pub fn start(output: impl Write + Send + 'static) -> io::Result<(Self, LogFlushGuard)> {
        let shared = Arc::new(SharedLines {
            pending: Mutex::new(PendingLines::default()),
            lines_arrived: Condvar::new(),
            room_made: Condvar::new(),
        });
        let writer_thread = std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_batches(&shared, output)
            })?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            LogFlushGuard {
                shared,
                writer_thread: Some(writer_thread),
            },
        ))
    }

    fn append(&self, line: &[u8]) {
        let mut pending = lock(&self.shared.pending);
        while pending.bytes.len() >= MAX_PENDING_BYTES && !pending.closed {
            pending = self
                .shared
                .room_made
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        pending.bytes.extend_from_slice(line);
        if pending.writer_idle {
            pending.writer_idle = false;
            self.shared.lines_arrived.notify_one();
        }
    }
}

impl Write for BatchedLogWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    /// The writer thread flushes each batch; a line is never held back by a caller.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedLogWriter {
    type Writer = BatchedLogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LogFlushGuard {
    fn drop(&mut self) {
        lock(&self.shared.pending).closed = true;
        self.shared.lines_arrived.notify_one();
        if let Some(writer_thread) = self.writer_thread.take() {
            let _ = writer_thread.join();
        }
    }
}

/// A poisoned lock only means a thread panicked while appending bytes: the buffer is still
/// whole lines or a partial one, and logging must go on.
fn lock(pending: &Mutex<PendingLines>) -> MutexGuard<'_, PendingLines> {
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_batches(shared: &SharedLines, mut output: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        {
            let mut pending = lock(&shared.pending);
            while pending.bytes.is_empty() && !pending.closed {
                pending.writer_idle = true;
                pending = shared
                    .lines_arrived
                    .wait(pending)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if pending.bytes.is_empty() && pending.closed {
                return;
            }
            pending.writer_idle = false;
            let closing = pending.closed;
            drop(pending);
            if !closing {
                std::thread::sleep(BATCH_WINDOW);
            }
        }
        {
            let mut pending = lock(&shared.pending);
            std::mem::swap(&mut pending.bytes, &mut batch);
        }
        shared.room_made.notify_all();
        // Nowhere to report a failed write to but the log itself: go on with the next batch.
        let _ = output.write_all(&batch).and_then(|()| output.flush());
        batch.clear();
        // A burst's buffer is not kept for ever.
        batch.shrink_to(64 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back, counting the writes.
    #[derive(Clone, Default)]
    struct CapturedOutput {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for CapturedOutput {
        fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buffer);
            *self.writes.lock().unwrap() += 1;
            Ok(buffer.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_in_few_writes() {
        let output = CapturedOutput::default();
        let (writer, guard) = BatchedLogWriter::start(output.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for line in 0..5_000 {
                        writer
                            .write_all(format!("thread {thread} line {line}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(output.bytes.lock().unwrap().clone()).unwrap();
        for thread in 0..4 {
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| line.starts_with(&format!("thread {thread} ")))
                .collect();
            assert_eq!(lines.len(), 5_000, "thread {thread} lost lines");
            assert!(
                lines
                    .iter()
                    .enumerate()
                    .all(|(index, line)| *line == format!("thread {thread} line {index}")),
                "lines of one thread out of order or torn"
            );
        }
        let writes = *output.writes.lock().unwrap();
        assert!(writes < 20_000 / 10, "{writes} writes for 20,000 lines");
    }

    #[test]
    fn a_lone_line_is_written_within_moments_and_the_guard_flushes_the_rest() {
        let output = CapturedOutput::default();
        let (mut writer, guard) = BatchedLogWriter::start(output.clone()).unwrap();
        writer.write_all(b"first\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while output.bytes.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line never came");
            std::thread::sleep(Duration::from_millis(1));
        }
        writer.write_all(b"last\n").unwrap();
        drop(guard);
        assert_eq!(&*output.bytes.lock().unwrap(), b"first\nlast\n");
    }

    #[test]
    fn a_blocked_output_makes_callers_wait_instead_of_dropping_lines() {
        // The output blocks until released: lines pile up to the cap, then callers wait.
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        struct BlockedOutput {
            release: Arc<(Mutex<bool>, Condvar)>,
            written: Arc<Mutex<usize>>,
        }
        impl Write for BlockedOutput {
            fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
                let (released, changed) = &*self.release;
                let mut released = released.lock().unwrap();
                while !*released {
                    released = changed.wait(released).unwrap();
                }
                *self.written.lock().unwrap() += buffer.len();
                Ok(buffer.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let written = Arc::new(Mutex::new(0));
        let (writer, guard) = BatchedLogWriter::start(BlockedOutput {
            release: Arc::clone(&release),
            written: Arc::clone(&written),
        })
        .unwrap();
        let line = vec![b'x'; 1023];
        let total_lines = 3 * MAX_PENDING_BYTES / 1024;
        let caller = {
            let mut writer = writer.clone();
            let line = line.clone();
            std::thread::spawn(move || {
                for _ in 0..total_lines {
                    writer.write_all(&line).unwrap();
                    writer.write_all(b"\n").unwrap();
                }
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !caller.is_finished(),
            "the caller should be waiting for room"
        );
        assert!(lock(&writer.shared.pending).bytes.len() <= MAX_PENDING_BYTES + 1024);
        *release.0.lock().unwrap() = true;
        release.1.notify_all();
        caller.join().unwrap();
        drop(guard);
        assert_eq!(*written.lock().unwrap(), total_lines * 1024);
    }
}
