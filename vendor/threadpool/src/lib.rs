//! gatehouse's replacement for `threadpool` 1.8.1: the pool rouille runs its
//! request handlers on (`rouille::Server::pool_size`), with the part of the
//! API rouille uses (`new`, `execute`, `join`).
//!
//! Upstream starts all `n` threads at once and keeps them for ever.
//! gatehouse sizes the pool for the worst case (its request threads plus
//! one for every sign-in that may wait for bcrypt: up to 274 threads) so
//! that a login storm never takes the threads everything else is answered
//! on; upstream made every one of them at start, idle or not. This pool:
//!
//! - starts a thread only when a job finds no idle thread to take it, up to
//!   `n` (then jobs queue, as upstream's did);
//! - keeps a thread once made: it waits for the next job, and retires only
//!   after [`RETIRE_AFTER`] without one, and never while it is one of the
//!   first [`WARM`] threads. So a load that comes and goes (bursts a few
//!   seconds apart) is served by the same threads, with no thread made or
//!   dropped per burst, while the threads a login storm needed go once it
//!   is long over;
//! - hands a job over with one lock and, only when a thread waits, one
//!   wake-up (upstream: a channel, a mutex around its receiver, and
//!   counters for `join`).
//!
//! A job that panics does not take its thread with it (rouille catches a
//! handler's panics; this catches the rest).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// Threads that never retire once made.
pub const WARM: usize = 4;

/// How long a thread beyond the first [`WARM`] waits for a job before it
/// ends: much longer than the gaps of a bursty load.
pub const RETIRE_AFTER: Duration = Duration::from_secs(60);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    jobs: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Jobs taken and not yet done.
    running: usize,
    /// The pool was dropped: threads end once the queue is empty.
    closed: bool,
    /// Callers waiting in `join` (only they need a wake-up when the work
    /// runs out: a futex wake for nobody is a system call per job).
    joining: usize,
}

struct Shared {
    state: Mutex<State>,
    /// A job was queued (or the pool closed).
    work: Condvar,
    /// The pool ran out of work (for `join`).
    done: Condvar,
    max: usize,
    name: Option<String>,
}

/// A pool of at most `n` threads, started as work comes.
pub struct ThreadPool {
    shared: Arc<Shared>,
}

impl ThreadPool {
    /// A pool of at most `num_threads` threads; none is started yet.
    ///
    /// # Panics
    ///
    /// When `num_threads` is 0 (as upstream).
    pub fn new(num_threads: usize) -> ThreadPool {
        // Named, unlike upstream's (an unnamed thread shows its maker's
        // name, here the thread that accepts requests).
        Self::build(num_threads, Some("request".to_owned()))
    }

    /// As [`ThreadPool::new`], with threads named `name`.
    ///
    /// # Panics
    ///
    /// When `num_threads` is 0 (as upstream).
    pub fn with_name(name: String, num_threads: usize) -> ThreadPool {
        Self::build(num_threads, Some(name))
    }

    fn build(max: usize, name: Option<String>) -> ThreadPool {
        assert!(max >= 1, "a thread pool needs at least one thread");
        ThreadPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    running: 0,
                    closed: false,
                    joining: 0,
                }),
                work: Condvar::new(),
                done: Condvar::new(),
                max,
                name,
            }),
        }
    }

    /// Runs `job` on a thread of the pool: an idle one, else a new one
    /// while there are fewer than the maximum, else the first to be free.
    pub fn execute<F: FnOnce() + Send + 'static>(&self, job: F) {
        let mut state = lock(&self.shared.state);
        state.jobs.push_back(Box::new(job));
        // Each queued job needs a waiting thread of its own: a thread
        // woken for an earlier job still counts as idle until it runs.
        if state.idle >= state.jobs.len() {
            drop(state);
            self.shared.work.notify_one();
            return;
        }
        if state.threads < self.shared.max {
            state.threads += 1;
            let index = state.threads;
            drop(state);
            if spawn(&self.shared, index).is_err() {
                // No thread now: the job waits for one that is free, as
                // upstream's jobs did at the maximum.
                lock(&self.shared.state).threads -= 1;
            }
        }
    }

    /// Waits until no job is queued or running.
    pub fn join(&self) {
        let mut state = lock(&self.shared.state);
        state.joining += 1;
        while !state.jobs.is_empty() || state.running > 0 {
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.joining -= 1;
    }

    /// Threads alive now.
    pub fn active_count(&self) -> usize {
        lock(&self.shared.state).threads
    }

    /// The most threads the pool starts.
    pub fn max_count(&self) -> usize {
        self.shared.max
    }

    /// Jobs waiting for a thread.
    pub fn queued_count(&self) -> usize {
        lock(&self.shared.state).jobs.len()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.work.notify_all();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts thread number `index` (counted from 1 as they are made).
fn spawn(shared: &Arc<Shared>, index: usize) -> std::io::Result<()> {
    let shared = Arc::clone(shared);
    let mut builder = thread::Builder::new();
    if let Some(name) = &shared.name {
        builder = builder.name(name.clone());
    }
    builder.spawn(move || work(&shared, index)).map(drop)
}

fn work(shared: &Shared, index: usize) {
    let mut state = lock(&shared.state);
    loop {
        if let Some(job) = state.jobs.pop_front() {
            state.running += 1;
            drop(state);
            let _ = catch_unwind(AssertUnwindSafe(job));
            state = lock(&shared.state);
            state.running -= 1;
            if state.running == 0 && state.jobs.is_empty() && state.joining > 0 {
                shared.done.notify_all();
            }
            continue;
        }
        if state.closed {
            break;
        }
        state.idle += 1;
        if index <= WARM {
            state = shared
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
        } else {
            let (next, waited) = shared
                .work
                .wait_timeout(state, RETIRE_AFTER)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.jobs.is_empty() {
                break;
            }
        }
    }
    state.threads -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn no_thread_is_started_before_work_and_one_serves_jobs_in_turn() {
        let pool = ThreadPool::new(8);
        assert_eq!(pool.active_count(), 0);
        let count = Arc::new(AtomicUsize::new(0));
        for _ in 0..300 {
            let c = Arc::clone(&count);
            pool.execute(move || {
                c.fetch_add(1, Ordering::SeqCst);
            });
            pool.join();
        }
        assert_eq!(count.load(Ordering::SeqCst), 300);
        assert_eq!(pool.active_count(), 1, "a thread was made per job");
    }

    #[test]
    fn jobs_at_once_get_threads_up_to_the_maximum_and_the_rest_wait() {
        let pool = ThreadPool::new(3);
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started, seen) = mpsc::channel();
        for _ in 0..5 {
            let gate = Arc::clone(&gate);
            let started = started.clone();
            pool.execute(move || {
                started.send(()).expect("send");
                let _ = gate.lock().expect("gate").recv();
            });
        }
        for _ in 0..3 {
            seen.recv_timeout(Duration::from_secs(30)).expect("three run");
        }
        assert_eq!(pool.active_count(), 3);
        assert_eq!(pool.queued_count(), 2);
        for _ in 0..5 {
            release.send(()).expect("release");
        }
        pool.join();
        assert_eq!(pool.queued_count(), 0);
        assert_eq!(pool.active_count(), 3, "threads were dropped after the burst");
    }

    #[test]
    fn a_panicking_job_leaves_its_thread_serving() {
        let pool = ThreadPool::new(1);
        pool.execute(|| panic!("a job panics"));
        let (tx, rx) = mpsc::channel();
        pool.execute(move || tx.send(7).expect("send"));
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).expect("ran"), 7);
        pool.join();
        assert_eq!(pool.active_count(), 1);
    }
}
