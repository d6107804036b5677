//! The thread that owns the connection.
//!
//! SQLite calls block, and a blocking call on an async executor thread
//! stalls every task scheduled there. One dedicated thread owns the
//! connection and runs jobs from a queue, in arrival order.
//! `spawn_blocking` around a `Mutex<Connection>` would also keep SQLite off
//! the executor, but under load every caller waiting for the lock parks a
//! blocking-pool thread; here waiting costs a queue slot, and the
//! connection needs no lock because only one thread ever touches it.
//!
//! Group commit: a durable commit waits for the disk, and most of a small
//! write's cost is that wait. Writes sent with [`Worker::grouped`] that queue
//! while a commit is in progress, or while the next group runs, go together
//! in one transaction, each in a savepoint of its own, and share one commit:
//! one failing undoes only its own writes, and each caller hears back once
//! the commit that holds its rows has returned. Jobs that run alone keep
//! their place in the order: a group stops at the first one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;

use rusqlite::{Connection, Transaction, TransactionBehavior, ffi};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::schema::{self, Schema};

/// The most writes one transaction takes: enough for every caller a busy
/// host has waiting, few enough that the write lock is not held for long.
const MAX_GROUP: usize = 128;

/// How a grouped write's commit reaches the disk. A group commits with the
/// strongest its members ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Durability {
    /// `synchronous = NORMAL`: not synced until the next durable commit or
    /// checkpoint; for writes whose loss is harmless (leases).
    Relaxed,
    /// `synchronous = FULL`: synced before the commit returns.
    Full,
}

enum Job {
    /// Has the connection to itself.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// May share a transaction with the grouped writes queued beside it.
    Grouped(Durability, Box<dyn Member>),
    /// Ends the thread after the jobs before it: the connection closes,
    /// then the sender hears how.
    Close(oneshot::Sender<Result<(), Error>>),
}

/// One write of a group, type-erased.
trait Member: Send {
    /// Does the write in the group's open transaction; `false` when it
    /// failed (and has told its caller), so its writes must be undone.
    fn run(&mut self, db: &Transaction<'_>) -> bool;

    /// Tells the caller how it ended, now that the transaction has committed
    /// (`Ok`) or failed; a member that already answered does nothing.
    fn settle(self: Box<Self>, commit: Result<(), &rusqlite::Error>);
}

/// A grouped write and the caller waiting for it.
struct Call<W, T, E> {
    operation: &'static str,
    work: Option<W>,
    /// The write's value, held back until its transaction commits.
    done: Option<T>,
    reply: Option<oneshot::Sender<Result<T, E>>>,
}

impl<W, T, E> Member for Call<W, T, E>
where
    W: FnOnce(&Transaction<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<Error> + Send,
{
    fn run(&mut self, db: &Transaction<'_>) -> bool {
        let Some(work) = self.work.take() else { return false };
        match work(db) {
            Ok(value) => {
                self.done = Some(value);
                true
            }
            Err(error) => {
                // Nothing of it will stand: no need to wait for the commit.
                if let Some(reply) = self.reply.take() {
                    let _ = reply.send(Err(error));
                }
                false
            }
        }
    }

    fn settle(mut self: Box<Self>, commit: Result<(), &rusqlite::Error>) {
        let Some(reply) = self.reply.take() else { return };
        let _ = reply.send(match (commit, self.done.take()) {
            (Ok(()), Some(value)) => Ok(value),
            (Err(source), _) => Err(Error::Sqlite { operation: self.operation, source: copy(source) }.into()),
            // It panicked, and its writes were undone.
            (Ok(()), None) => Err(Error::Stopped.into()),
        });
    }
}

/// A handle on the connection thread; clones share it. The thread closes
/// the connection and ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread, which opens `path` and migrates or checks its
    /// schema before it takes jobs.
    pub(crate) async fn start(path: PathBuf, schema: Schema) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name("webhooks-sqlite".into())
            .spawn(move || {
                let mut connection = match schema::open(&path, schema) {
                    Ok(connection) => connection,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let closing = serve(&mut connection, &queue);
                // The last connection to the file checkpoints the WAL into
                // it and removes the -wal file as it closes.
                let closed = connection
                    .close()
                    .map_err(|(_, source)| Error::Sqlite { operation: "close the database", source });
                if let Some(done) = closing {
                    let _ = done.send(closed);
                }
            })
            .map_err(Error::Thread)?;
        opened.await.map_err(|_| Error::Stopped)??;
        Ok(Self { jobs })
    }

    /// Closes the connection once the jobs sent before have run; every
    /// handle's later calls fail with [`Error::Stopped`].
    pub(crate) async fn close(&self) -> Result<(), Error> {
        let (done, closed) = oneshot::channel();
        self.jobs.send(Job::Close(done)).map_err(|_| Error::Stopped)?;
        closed.await.map_err(|_| Error::Stopped)?
    }

    /// Runs `job` on the connection thread, alone, and waits for its result.
    ///
    /// A caller that stops waiting does not stop the job: it runs, and
    /// commits, all the same.
    pub(crate) async fn call<T, E>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Job::Alone(Box::new(move |connection| {
                let _ = reply.send(job(connection));
            })))
            .map_err(|_| Error::Stopped)?;
        result.await.map_err(|_| Error::Stopped)?
    }

    /// Runs `work` in a `BEGIN IMMEDIATE` transaction that it may share with
    /// other grouped writes, inside a savepoint of its own, and waits until
    /// that transaction has committed.
    ///
    /// An `Err` from `work` undoes its writes alone and comes back at once;
    /// the others in the transaction still commit. When the transaction
    /// itself fails (the write lock not had within the busy timeout, the
    /// commit failing), every write in it fails with that error, naming
    /// `operation`. As with [`Worker::call`], a caller that stops waiting
    /// does not stop the write.
    pub(crate) async fn grouped<T, E>(
        &self,
        durability: Durability,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let call = Call { operation, work: Some(work), done: None, reply: Some(reply) };
        self.jobs.send(Job::Grouped(durability, Box::new(call))).map_err(|_| Error::Stopped)?;
        result.await.map_err(|_| Error::Stopped)?
    }
}

/// The jobs waiting for the connection, with the one taken early when a
/// group stopped at it.
struct Queue<'a> {
    jobs: &'a mpsc::Receiver<Job>,
    next: Option<Job>,
}

impl Queue<'_> {
    /// The next job, waiting for one; `None` once every handle is gone.
    fn take(&mut self) -> Option<Job> {
        self.next.take().or_else(|| self.jobs.recv().ok())
    }

    /// A grouped write already waiting, if the next job is one and a group
    /// committing with `limit` can take it (any when `None`). A job that must
    /// run alone, or a durable write when the group will not sync, ends the
    /// group and keeps its place in the order.
    fn more(&mut self, limit: Option<Durability>) -> Option<(Durability, Box<dyn Member>)> {
        if self.next.is_some() {
            return None;
        }
        match self.jobs.try_recv() {
            Ok(Job::Grouped(wants, member)) if limit.is_none_or(|limit| wants <= limit) => {
                Some((wants, member))
            }
            Ok(other) => {
                self.next = Some(other);
                None
            }
            Err(_) => None,
        }
    }
}

/// Runs the queue's jobs in arrival order until every handle is gone, or
/// until a [`Job::Close`], which it returns.
fn serve(
    connection: &mut Connection,
    jobs: &mpsc::Receiver<Job>,
) -> Option<oneshot::Sender<Result<(), Error>>> {
    let mut queue = Queue { jobs, next: None };
    while let Some(job) = queue.take() {
        match job {
            Job::Close(done) => return Some(done),
            Job::Alone(job) => {
                // A panicking job (a bug) answers nobody, and its
                // transaction is rolled back as it unwinds; the next job
                // still runs.
                let _ = catch_unwind(AssertUnwindSafe(|| job(connection)));
            }
            Job::Grouped(durability, first) => commit_group(connection, &mut queue, durability, first),
        }
    }
    None
}

/// Sets the connection's `synchronous` level, which every job other than a
/// relaxed group expects to be `FULL`. SQLite refuses to change it inside a
/// transaction, so a group's level is settled before it begins.
fn synchronous(connection: &Connection, durability: Durability) -> rusqlite::Result<()> {
    let sql = match durability {
        Durability::Relaxed => "PRAGMA synchronous = NORMAL",
        Durability::Full => "PRAGMA synchronous = FULL",
    };
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `first` and the grouped writes queued behind it in one transaction,
/// each in its savepoint, commits, and tells each caller how it ended.
fn commit_group(
    connection: &mut Connection,
    queue: &mut Queue<'_>,
    durability: Durability,
    first: Box<dyn Member>,
) {
    // Whatever queued during the last commit goes in this one, which
    // commits with the strongest durability they ask for.
    let (mut durability, mut members) = (durability, vec![first]);
    while members.len() < MAX_GROUP {
        let Some((wants, member)) = queue.more(None) else { break };
        durability = durability.max(wants);
        members.push(member);
    }
    let mut outcome = Ok(());
    if durability == Durability::Relaxed {
        outcome = synchronous(connection, Durability::Relaxed);
    }
    if outcome.is_ok() {
        outcome = run_and_commit(connection, queue, durability, &mut members);
    }
    if durability == Durability::Relaxed {
        // Whatever happened, every other write stays durable.
        let restored = synchronous(connection, Durability::Full);
        outcome = outcome.and(restored);
    }
    for member in members {
        member.settle(outcome.as_ref().map(|_| ()));
    }
}

/// Runs `members`, and the writes that queue while they run, in one
/// transaction. Taking those too keeps the group growing for as long as the
/// callers keep up, so a burst costs few commits rather than alternating
/// between a large group and the few that arrived as the last one ended.
fn run_and_commit(
    connection: &mut Connection,
    queue: &mut Queue<'_>,
    durability: Durability,
    members: &mut Vec<Box<dyn Member>>,
) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut ran = 0;
    loop {
        for member in &mut members[ran..] {
            in_savepoint(&transaction, member.as_mut())?;
        }
        ran = members.len();
        if ran >= MAX_GROUP {
            break;
        }
        let Some((_, member)) = queue.more(Some(durability)) else { break };
        members.push(member);
    }
    transaction.commit()
}

/// Runs `member` in a savepoint of its own, which is undone if it fails or
/// panics. Fails when the savepoint does, or when SQLite gave up the whole
/// transaction (some errors, a full disk say, roll it back): then nothing
/// of the group stands.
fn in_savepoint(db: &Transaction<'_>, member: &mut dyn Member) -> rusqlite::Result<()> {
    db.prepare_cached("SAVEPOINT member")?.execute([])?;
    // A panic (a bug) is taken as a failure: the member's caller hears it
    // stopped, and the rest of the group goes on.
    let kept = catch_unwind(AssertUnwindSafe(|| member.run(db))).unwrap_or(false);
    if db.is_autocommit() {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_ABORT),
            Some("SQLite rolled back the transaction after an error in a write that shared it".into()),
        ));
    }
    if !kept {
        db.prepare_cached("ROLLBACK TO member")?.execute([])?;
    }
    db.prepare_cached("RELEASE member")?.execute([])?;
    Ok(())
}

/// The same error again, for the next member of a failed group
/// (`rusqlite::Error` is not `Clone`).
fn copy(error: &rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_ERROR), Some(other.to_string())),
    }
}
