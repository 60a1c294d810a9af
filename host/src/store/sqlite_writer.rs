//! Group commit for the embedded store: one thread owns the SQLite connection and commits
//! concurrent operations together, one transaction and one fsync per batch.
//!
//! With `synchronous=FULL` every commit waits for the disk, so one commit per operation caps
//! the host at the disk's fsync rate. Here callers queue jobs on a bounded channel (awaiting
//! room, never blocking an async worker) and await a oneshot answer. The writer takes the
//! first job, drains what else is queued (up to [`MAX_JOBS_PER_BATCH`]) and runs them all in
//! one `BEGIN IMMEDIATE` transaction, each under its own savepoint: a job that fails (or
//! panics) is rolled back to its savepoint alone and answered with its error, its neighbours
//! stay. Then one `COMMIT`, and only then the answers: a success is never acknowledged before
//! it is durable, and if the commit fails every job of the batch gets the error. At low load a
//! batch is a single job, so latency does not grow.
//!
//! SQLite may roll back the whole transaction by itself (an I/O error, a full disk): after
//! every job the writer checks that its transaction is still open; if not, the jobs that
//! already ran in it are answered with an error, never success, and the rest of the batch goes
//! on in a new transaction.
//!
//! Work that must have the connection alone (resealing every config, which checkpoints the WAL
//! after its own commit) is an exclusive job: the batch in progress is committed and answered
//! first, then the job runs by itself with the connection in autocommit mode.
//!
//! The single writer also makes each job atomic against every other: a verify reads and
//! consumes its code with nothing in between.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::secrets_keyring::SecretsKeyring;
use super::StoreError;

/// Jobs waiting for the writer. Bounded: past it callers wait for room (asynchronously), so a
/// burst costs memory in proportion to this, not to the burst.
const QUEUED_JOBS_CAPACITY: usize = 1024;

/// At most this many jobs share one transaction: a bound on how long the first job of a batch
/// waits for the others, and on how much one failed commit takes down.
pub(super) const MAX_JOBS_PER_BATCH: usize = 256;

/// The savepoint each batched job runs under.
const JOB_SAVEPOINT: &str = "SAVEPOINT batched_job";
const RELEASE_JOB_SAVEPOINT: &str = "RELEASE batched_job";
const ROLLBACK_TO_JOB_SAVEPOINT: &str = "ROLLBACK TO batched_job";

/// The async side: queues jobs and awaits their answers. Cheap to clone; the writer thread
/// ends once every clone is dropped and the last batch is answered.
#[derive(Clone)]
pub(super) struct SqliteWriterHandle {
    jobs: mpsc::Sender<QueuedJob>,
    committed_batches: Arc<AtomicU64>,
}

impl SqliteWriterHandle {
    /// Starts the writer thread ("sqlite-writer"), which owns `connection` from now on.
    pub(super) fn spawn(
        connection: Connection,
        keyring: SecretsKeyring,
    ) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUED_JOBS_CAPACITY);
        let committed_batches = Arc::new(AtomicU64::new(0));
        let writer = SqliteWriter::new(connection, keyring, queue, Arc::clone(&committed_batches));
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || writer.run_until_every_handle_is_dropped())
            .map_err(|error| {
                StoreError::Failed(format!("cannot start the store's writer thread: {error}"))
            })?;
        Ok(Self {
            jobs,
            committed_batches,
        })
    }

    /// Runs `work` in the next batch, under a savepoint of the batch's transaction; answers
    /// once that transaction is committed.
    pub(super) async fn run_batched<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &SecretsKeyring) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (job, answer) = QueuedJob::batched(work);
        self.submit(job, answer).await
    }

    /// Runs `work` alone, after the batch in progress is committed, with the connection in
    /// autocommit mode: it manages its own transaction.
    pub(super) async fn run_exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &SecretsKeyring) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (job, answer) = QueuedJob::exclusive(work);
        self.submit(job, answer).await
    }

    async fn submit<T>(
        &self,
        job: QueuedJob,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.jobs.send(job).await.map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// How many transactions the writer has committed (batches, exclusive jobs excluded).
    pub(super) fn committed_batches(&self) -> u64 {
        self.committed_batches.load(Ordering::Relaxed)
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Failed(
        "the store's writer thread has stopped; restart the host to use the store again".to_owned(),
    )
}

/// A job in the queue: the caller's work and where its answer goes.
pub(super) struct QueuedJob {
    exclusive: bool,
    work: Box<dyn PendingWork>,
}

impl QueuedJob {
    pub(super) fn batched<T: Send + 'static>(
        work: impl FnOnce(&Connection, &SecretsKeyring) -> Result<T, StoreError> + Send + 'static,
    ) -> (Self, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let work =
            move |connection: &mut Connection, keyring: &SecretsKeyring| work(connection, keyring);
        let job = Self {
            exclusive: false,
            work: Box::new(TypedWork { work, reply }),
        };
        (job, answer)
    }

    pub(super) fn exclusive<T: Send + 'static>(
        work: impl FnOnce(&mut Connection, &SecretsKeyring) -> Result<T, StoreError> + Send + 'static,
    ) -> (Self, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Self {
            exclusive: true,
            work: Box::new(TypedWork { work, reply }),
        };
        (job, answer)
    }
}

/// The writer's view of a job, whatever its result type.
trait PendingWork: Send {
    /// Runs the work, catching a panic; the result waits for the batch's fate.
    fn run(
        self: Box<Self>,
        connection: &mut Connection,
        keyring: &SecretsKeyring,
    ) -> Box<dyn ResultAwaitingCommit>;
    /// Answers `error` without running the work.
    fn refuse(self: Box<Self>, error: String);
}

/// A job that ran, holding its result until its transaction is committed (or lost).
trait ResultAwaitingCommit: Send {
    fn failed(&self) -> bool;
    /// Delivers the result, or `lost` (why the transaction did not commit) instead of a success.
    fn answer(self: Box<Self>, lost: Option<&str>);
}

struct TypedWork<T, W> {
    work: W,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, W> PendingWork for TypedWork<T, W>
where
    T: Send + 'static,
    W: FnOnce(&mut Connection, &SecretsKeyring) -> Result<T, StoreError> + Send + 'static,
{
    fn run(
        self: Box<Self>,
        connection: &mut Connection,
        keyring: &SecretsKeyring,
    ) -> Box<dyn ResultAwaitingCommit> {
        let Self { work, reply } = *self;
        // The writer outlives a panicking job: its savepoint is rolled back like any failure.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(connection, keyring)))
            .unwrap_or_else(|panic| {
                let message = panic_message(panic.as_ref());
                tracing::error!(panic = %message, "a store operation panicked; it was rolled back");
                Err(StoreError::Failed(format!(
                    "the store operation panicked: {message}"
                )))
            });
        Box::new(TypedResult { result, reply })
    }

    fn refuse(self: Box<Self>, error: String) {
        // The caller may have gone away meanwhile; nothing to tell then.
        let _ = self.reply.send(Err(StoreError::Failed(error)));
    }
}

struct TypedResult<T> {
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send + 'static> ResultAwaitingCommit for TypedResult<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn answer(self: Box<Self>, lost: Option<&str>) {
        let answer = match (self.result, lost) {
            (Ok(_), Some(why)) => Err(StoreError::Failed(why.to_owned())),
            (result, _) => result,
        };
        let _ = self.reply.send(answer);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The writer thread's state: the connection, alone.
pub(super) struct SqliteWriter {
    connection: Connection,
    keyring: SecretsKeyring,
    queue: mpsc::Receiver<QueuedJob>,
    committed_batches: Arc<AtomicU64>,
    /// Registered once: a histogram looked up per batch would hash its name every time.
    batch_sizes: metrics::Histogram,
}

impl SqliteWriter {
    pub(super) fn new(
        connection: Connection,
        keyring: SecretsKeyring,
        queue: mpsc::Receiver<QueuedJob>,
        committed_batches: Arc<AtomicU64>,
    ) -> Self {
        Self {
            connection,
            keyring,
            queue,
            committed_batches,
            batch_sizes: metrics::histogram!("store_batch_size"),
        }
    }

    /// The thread's loop: a batch, or an exclusive job, at a time, until the channel closes.
    pub(super) fn run_until_every_handle_is_dropped(mut self) {
        let mut next = None;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match self.queue.blocking_recv() {
                    Some(job) => job,
                    None => break,
                },
            };
            next = if job.exclusive {
                self.run_exclusive(job.work);
                None
            } else {
                self.run_batch(job.work)
            };
        }
        tracing::debug!("the store's writer thread stopped: every handle was dropped");
    }

    /// Runs `first` and whatever else is queued in one transaction, commits, answers. Returns
    /// the exclusive job that ended the draining, if one did: it runs after the commit.
    fn run_batch(&mut self, first: Box<dyn PendingWork>) -> Option<QueuedJob> {
        let mut awaiting_commit = Vec::new();
        let mut next_work = Some(first);
        let mut jobs_taken = 0;
        let mut exclusive_job = None;
        while let Some(work) = next_work.take() {
            self.run_in_savepoint(work, &mut awaiting_commit);
            jobs_taken += 1;
            if jobs_taken >= MAX_JOBS_PER_BATCH {
                break;
            }
            match self.queue.try_recv() {
                Ok(job) if job.exclusive => exclusive_job = Some(job),
                Ok(job) => next_work = Some(job.work),
                Err(_) => {}
            }
        }
        self.commit_and_answer(awaiting_commit);
        exclusive_job
    }

    /// Runs one job under its savepoint, opening the batch's transaction if none is open.
    /// A success joins `awaiting_commit`; a failure is rolled back alone and answered now.
    fn run_in_savepoint(
        &mut self,
        work: Box<dyn PendingWork>,
        awaiting_commit: &mut Vec<Box<dyn ResultAwaitingCommit>>,
    ) {
        if self.connection.is_autocommit() {
            if let Err(error) = execute_cached(&self.connection, "BEGIN IMMEDIATE") {
                work.refuse(format!("cannot begin a store transaction: {error}"));
                return;
            }
        }
        if let Err(error) = execute_cached(&self.connection, JOB_SAVEPOINT) {
            work.refuse(format!("cannot open a savepoint: {error}"));
            return;
        }
        let ran = work.run(&mut self.connection, &self.keyring);
        if self.connection.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (an I/O error, a full disk):
            // what ran in it before this job is gone too.
            answer_lost(
                awaiting_commit,
                ran,
                "the store transaction was rolled back after an error in another operation of its batch; nothing was saved",
            );
            return;
        }
        let closed = if ran.failed() {
            execute_cached(&self.connection, ROLLBACK_TO_JOB_SAVEPOINT)
                .and_then(|()| execute_cached(&self.connection, RELEASE_JOB_SAVEPOINT))
        } else {
            execute_cached(&self.connection, RELEASE_JOB_SAVEPOINT)
        };
        match closed {
            Ok(()) if ran.failed() => ran.answer(None),
            Ok(()) => awaiting_commit.push(ran),
            Err(error) => {
                // The job cannot be set apart from its neighbours: give the batch up whole.
                let _ = self.connection.execute_batch("ROLLBACK");
                answer_lost(
                    awaiting_commit,
                    ran,
                    &format!("the store transaction was rolled back: {error}; nothing was saved"),
                );
            }
        }
    }

    /// One `COMMIT` (one fsync) for the batch, then every answer.
    fn commit_and_answer(&mut self, awaiting_commit: Vec<Box<dyn ResultAwaitingCommit>>) {
        if self.connection.is_autocommit() {
            // Every job failed or was answered with its lost transaction: nothing to commit.
            return;
        }
        match execute_cached(&self.connection, "COMMIT") {
            Ok(()) => {
                self.committed_batches.fetch_add(1, Ordering::Relaxed);
                self.batch_sizes.record(awaiting_commit.len() as f64);
                for ran in awaiting_commit {
                    ran.answer(None);
                }
            }
            Err(error) => {
                if !self.connection.is_autocommit() {
                    let _ = self.connection.execute_batch("ROLLBACK");
                }
                let why = format!("the store could not commit: {error}; nothing was saved");
                tracing::error!(jobs = awaiting_commit.len(), reason = %why, "a store batch was lost");
                for ran in awaiting_commit {
                    ran.answer(Some(&why));
                }
            }
        }
    }

    /// An exclusive job: the connection alone, in autocommit mode; it commits by itself.
    fn run_exclusive(&mut self, work: Box<dyn PendingWork>) {
        let ran = work.run(&mut self.connection, &self.keyring);
        if self.connection.is_autocommit() {
            ran.answer(None);
        } else {
            // A job that returns with its transaction still open saved nothing for sure.
            let _ = self.connection.execute_batch("ROLLBACK");
            ran.answer(Some(
                "the store operation left its transaction open; it was rolled back",
            ));
        }
    }
}

/// The transaction is gone: every job that ran in it, and `last`, get `why` (a failed
/// `last` keeps its own error).
fn answer_lost(
    awaiting_commit: &mut Vec<Box<dyn ResultAwaitingCommit>>,
    last: Box<dyn ResultAwaitingCommit>,
    why: &str,
) {
    tracing::error!(
        jobs = awaiting_commit.len() + 1,
        reason = why,
        "a store batch was lost"
    );
    for ran in awaiting_commit.drain(..) {
        ran.answer(Some(why));
    }
    last.answer(Some(why));
}

/// Statements the writer runs for every job, parsed once.
fn execute_cached(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The writer run on the test's own thread over jobs queued beforehand: which jobs share a
    //! transaction is then certain, not a matter of timing.

    use std::path::PathBuf;

    use super::*;

    struct ScratchDatabase {
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    /// `items` and `notes`, whose reference to an item is checked only at COMMIT.
    fn scratch_database() -> ScratchDatabase {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.sqlite3");
        let connection = Connection::open(&path).unwrap();
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .unwrap();
        connection
            .execute_batch(
                "CREATE TABLE items (name TEXT PRIMARY KEY);
                 CREATE TABLE notes (item TEXT REFERENCES items (name) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        ScratchDatabase { path, _dir: dir }
    }

    /// Queues `jobs`, drops the only handle and runs the writer here until it stops; returns
    /// the batches it committed.
    fn run_writer_over(database: &ScratchDatabase, jobs: Vec<QueuedJob>) -> u64 {
        let connection = Connection::open(&database.path).unwrap();
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .unwrap();
        let (handle, queue) = mpsc::channel(QUEUED_JOBS_CAPACITY);
        for job in jobs {
            assert!(handle.try_send(job).is_ok(), "the queue has room");
        }
        drop(handle);
        let committed_batches = Arc::new(AtomicU64::new(0));
        SqliteWriter::new(
            connection,
            SecretsKeyring::generate().unwrap(),
            queue,
            Arc::clone(&committed_batches),
        )
        .run_until_every_handle_is_dropped();
        committed_batches.load(Ordering::Relaxed)
    }

    /// What is in the file, read by a connection of its own.
    fn saved_items(database: &ScratchDatabase) -> Vec<String> {
        let connection = Connection::open(&database.path).unwrap();
        let mut statement = connection
            .prepare("SELECT name FROM items ORDER BY name")
            .unwrap();
        let names = statement.query_map([], |row| row.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

    fn insert_item(name: &'static str) -> (QueuedJob, Answer<()>) {
        QueuedJob::batched(move |connection, _| {
            connection.execute("INSERT INTO items (name) VALUES (?1)", [name])?;
            Ok(())
        })
    }

    fn answer_of<T>(mut answer: Answer<T>) -> Result<T, StoreError> {
        answer.try_recv().expect("the writer answered")
    }

    #[test]
    fn queued_jobs_share_one_commit_and_a_failing_job_fails_alone() {
        let database = scratch_database();
        let (first, first_answer) = insert_item("a");
        let (second, second_answer) = insert_item("b");
        // The primary key refuses it, as the partial unique index refuses a second live
        // connector.
        let (duplicate, duplicate_answer) = insert_item("a");
        let (third, third_answer) = insert_item("c");
        let (count, count_answer) = QueuedJob::batched(|connection, _| {
            Ok(connection
                .query_row("SELECT count(*) FROM items", [], |row| row.get::<_, i64>(0))?)
        });
        let batches = run_writer_over(&database, vec![first, second, duplicate, third, count]);
        assert_eq!(batches, 1, "one transaction, one fsync");
        assert!(answer_of(first_answer).is_ok());
        assert!(answer_of(second_answer).is_ok());
        assert!(answer_of(duplicate_answer)
            .unwrap_err()
            .to_string()
            .contains("UNIQUE"));
        assert!(answer_of(third_answer).is_ok());
        assert_eq!(answer_of(count_answer).unwrap(), 3);
        assert_eq!(saved_items(&database), ["a", "b", "c"]);
    }

    #[test]
    fn a_batch_holds_at_most_its_cap_of_jobs() {
        let database = scratch_database();
        let names: Vec<&'static str> = (0..MAX_JOBS_PER_BATCH + 10)
            .map(|index| &*Box::leak(format!("item-{index:04}").into_boxed_str()))
            .collect();
        let (jobs, answers): (Vec<_>, Vec<_>) = names.iter().map(|name| insert_item(name)).unzip();
        assert_eq!(run_writer_over(&database, jobs), 2);
        assert!(answers.into_iter().all(|answer| answer_of(answer).is_ok()));
        assert_eq!(saved_items(&database).len(), MAX_JOBS_PER_BATCH + 10);
    }

    #[test]
    fn a_panicking_job_is_rolled_back_and_answered_and_the_writer_goes_on() {
        let database = scratch_database();
        let (before, before_answer) = insert_item("before");
        let (panicking, panicking_answer) = QueuedJob::batched(|connection, _| -> Result<(), _> {
            connection.execute("INSERT INTO items (name) VALUES ('half-done')", [])?;
            panic!("a bug in a store operation");
        });
        let (after, after_answer) = insert_item("after");
        assert_eq!(
            run_writer_over(&database, vec![before, panicking, after]),
            1
        );
        let error = answer_of(panicking_answer).unwrap_err().to_string();
        assert!(
            error.contains("panicked") && error.contains("a bug in a store operation"),
            "{error}"
        );
        assert!(answer_of(before_answer).is_ok());
        assert!(answer_of(after_answer).is_ok());
        assert_eq!(saved_items(&database), ["after", "before"]);
    }

    #[test]
    fn a_transaction_sqlite_rolled_back_fails_the_jobs_that_ran_in_it_and_the_rest_go_on() {
        let database = scratch_database();
        let (earlier, earlier_answer) = insert_item("earlier");
        // What SQLite does by itself after some I/O errors or a full disk: the whole
        // transaction is gone, not only the failed statement.
        let (failing, failing_answer) = QueuedJob::batched(|connection, _| -> Result<(), _> {
            connection.execute_batch("ROLLBACK")?;
            Err(StoreError::Failed("disk I/O error".to_owned()))
        });
        let (later, later_answer) = insert_item("later");
        let batches = run_writer_over(&database, vec![earlier, failing, later]);
        assert_eq!(batches, 1, "the later job commits in a new transaction");
        let lost = answer_of(earlier_answer).unwrap_err().to_string();
        assert!(lost.contains("rolled back"), "{lost}");
        assert_eq!(
            answer_of(failing_answer).unwrap_err().to_string(),
            "store error: disk I/O error"
        );
        assert!(answer_of(later_answer).is_ok());
        assert_eq!(saved_items(&database), ["later"]);
    }

    #[test]
    fn a_failed_commit_answers_every_job_of_its_batch_with_the_error() {
        let database = scratch_database();
        let (item, item_answer) = insert_item("kept-only-if-committed");
        // Checked at COMMIT only: the statement succeeds, the commit fails.
        let (dangling, dangling_answer) = QueuedJob::batched(|connection, _| {
            connection.execute("INSERT INTO notes (item) VALUES ('missing')", [])?;
            Ok(())
        });
        assert_eq!(run_writer_over(&database, vec![item, dangling]), 0);
        for answer in [item_answer, dangling_answer] {
            let error = answer_of(answer).unwrap_err().to_string();
            assert!(error.contains("could not commit"), "{error}");
        }
        assert!(saved_items(&database).is_empty());

        // The writer goes on with a new transaction.
        let (next, next_answer) = insert_item("next");
        assert_eq!(run_writer_over(&database, vec![next]), 1);
        assert!(answer_of(next_answer).is_ok());
    }

    #[test]
    fn an_exclusive_job_runs_alone_after_the_batch_in_progress_is_committed() {
        let database = scratch_database();
        let (first, first_answer) = insert_item("a");
        let (second, second_answer) = insert_item("b");
        let path = database.path.clone();
        let (exclusive, exclusive_answer) = QueuedJob::exclusive(move |connection, _| {
            // Read from another connection: only what is committed.
            let committed: i64 =
                Connection::open(&path)?
                    .query_row("SELECT count(*) FROM items", [], |row| row.get(0))?;
            Ok((connection.is_autocommit(), committed))
        });
        let (third, third_answer) = insert_item("c");
        let batches = run_writer_over(&database, vec![first, second, exclusive, third]);
        assert_eq!(batches, 2, "a and b, then c");
        assert_eq!(answer_of(exclusive_answer).unwrap(), (true, 2));
        for answer in [first_answer, second_answer, third_answer] {
            assert!(answer_of(answer).is_ok());
        }
        assert_eq!(saved_items(&database), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_stopped_writer_is_an_error_not_a_panic() {
        let (jobs, queue) = mpsc::channel(1);
        drop(queue);
        let handle = SqliteWriterHandle {
            jobs,
            committed_batches: Arc::new(AtomicU64::new(0)),
        };
        let error = handle
            .run_batched(|_, _| Ok(()))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("writer thread has stopped"), "{error}");
    }
}
