//! Work off the relay's threads, on a thread of its own at the lowest
//! priority (nice 19): the console's snapshots and traffic and `/metrics`
//! (the admin's thread), and the encoding of history replays (the
//! replays' thread), which a client can ask for in a loop.
//!
//! On the tokio blocking pool this work still took the relay's CPU at its
//! priority: on a busy core, a runtime thread woken by a client waited for
//! the kernel to take the core back from it. At nice 19 the kernel hands
//! the core to the relay's threads at once, yet never starves the admin
//! work (it gets its small share under full load, so metrics still answer
//! when they are most wanted).

use std::sync::mpsc;

use tokio::sync::oneshot;

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A thread for work off the relay's threads. Jobs run one at a time, in
/// order.
#[derive(Debug, Clone)]
pub(crate) struct Background {
    jobs: mpsc::Sender<Job>,
}

impl Background {
    /// Starts the thread `switchboard-{name}`; it ends when every handle
    /// is dropped.
    pub(crate) fn start(name: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("switchboard-{name}"))
            .spawn(move || {
                if let Err(error) = thread_priority::set_current_thread_priority(
                    thread_priority::ThreadPriority::Min,
                ) {
                    tracing::debug!(
                        ?error,
                        "work off the relay's threads runs at normal priority"
                    );
                }
                for job in queue {
                    // A job that panics answers nothing; the thread goes on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(Background { jobs })
    }

    /// Runs `work` on the thread; `None` if it panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs.send(job).ok()?;
        answer.await.ok()
    }

    /// Hands `job` to the thread without waiting for it (dropped if the
    /// thread is gone).
    pub(crate) fn spawn(&self, job: Job) {
        let _ = self.jobs.send(job);
    }
}
