//! Where jobs run. A hub server runs its jobs (refresh, compare, activation and replication:
//! engines, connector I/O, type mapping) on a Tokio runtime of their own, whose threads (workers
//! and blocking pool) run at a lower CPU priority than the threads that serve requests. A busy job
//! then takes the CPU the requests leave, instead of queueing requests behind its batches on the
//! same workers. Without one (the CLI, tests) jobs run on the caller's runtime.

use std::future::Future;

use tokio::task::JoinHandle;

/// The CPU priority (`nice`) the job threads of `sluice serve` get by default.
pub const DEFAULT_JOB_NICE: i32 = 10;

/// A runtime for jobs: its worker threads, its blocking pool, and their priority.
pub struct JobRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    threads: usize,
    nice: i32,
}

impl JobRuntime {
    /// A runtime of `threads` worker threads (at least one) named `sluice-job`, every thread of
    /// which (workers and blocking pool) runs at CPU priority `nice` (0 to 19; Linux only, a
    /// no-op elsewhere).
    pub fn new(threads: usize, nice: i32) -> std::io::Result<JobRuntime> {
        if !(0..=19).contains(&nice) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("job priority (nice) {nice} is not between 0 and 19"),
            ));
        }
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sluice-job")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()?;
        Ok(JobRuntime {
            runtime: Some(runtime),
            threads,
            nice,
        })
    }

    /// Its worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Its threads' CPU priority.
    pub fn nice(&self) -> i32 {
        self.nice
    }

    /// Runs `work` on this runtime.
    pub(crate) fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => runtime.spawn(work),
            None => tokio::spawn(work),
        }
    }
}

impl Drop for JobRuntime {
    fn drop(&mut self) {
        // Dropped from async code too (the last service handle): do not wait for the jobs, which
        // are abandoned as they would be with the server's own runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's CPU priority to `nice` (a thread of its own on Linux, where
/// `setpriority` with a thread id applies to that thread only). A failure leaves the thread as
/// it was: the jobs still run, only without the lower priority.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(%error, nice, "cannot lower a job thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The current thread's CPU priority (Linux; 0 elsewhere or when it cannot be read).
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_threads_run_at_the_lower_priority() {
        let jobs = JobRuntime::new(1, 7).expect("a runtime");
        // block_on runs its future on this thread: ask the blocking pool and a worker.
        let blocking = jobs
            .runtime
            .as_ref()
            .expect("own runtime")
            .block_on(async { tokio::task::spawn_blocking(current_nice).await })
            .expect("blocking task");
        let worker = jobs
            .runtime
            .as_ref()
            .expect("own runtime")
            .block_on(jobs.spawn(async { current_nice() }))
            .expect("worker task");
        assert_eq!(worker, 7);
        assert_eq!(blocking, 7, "blocking pool threads are lowered too");
        assert!(JobRuntime::new(1, 20).is_err());
        assert!(JobRuntime::new(1, -1).is_err());
    }
}
