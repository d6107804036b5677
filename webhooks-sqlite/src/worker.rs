//! The thread that owns the connection.
//!
//! SQLite calls block, and a blocking call on an async executor thread
//! stalls every task scheduled there. One dedicated thread owns the
//! connection and runs jobs from a queue, one at a time, in arrival order.
//! `spawn_blocking` around a `Mutex<Connection>` would also keep SQLite off
//! the executor, but under load every caller waiting for the lock parks a
//! blocking-pool thread; here waiting costs a queue slot, and the
//! connection needs no lock because only one thread ever touches it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::schema;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle on the connection thread; clones share it. The thread closes
/// the connection and ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread, which opens `path` and brings its schema up to
    /// date before it takes jobs.
    pub(crate) async fn start(path: PathBuf) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name("webhooks-sqlite".into())
            .spawn(move || {
                let mut connection = match schema::open(&path) {
                    Ok(connection) => connection,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                for job in queue {
                    // A panicking job (a bug) answers nobody, and its
                    // transaction is rolled back as it unwinds; the next job
                    // still runs.
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut connection)));
                }
            })
            .map_err(Error::Thread)?;
        opened.await.map_err(|_| Error::Stopped)??;
        Ok(Self { jobs })
    }

    /// Runs `job` on the connection thread and waits for its result.
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
            .send(Box::new(move |connection| {
                let _ = reply.send(job(connection));
            }))
            .map_err(|_| Error::Stopped)?;
        result.await.map_err(|_| Error::Stopped)?
    }
}
