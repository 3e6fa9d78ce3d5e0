//! The threads that serve client connections, one per open connection.
//!
//! gatehouse patch: no panics. A thread that cannot be started is reported
//! to the caller (the accept loop logs it and carries on); the queue's lock
//! is taken even if a thread panicked while holding it (the queue stays
//! valid).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<VecDeque<Box<dyn FnMut() + Send>>>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

/// gatehouse patch: how long a thread beyond [`MIN_THREADS`] waits for
/// another connection before it ends, while at most [`WARM_IDLE`] threads
/// wait (upstream: 5 s for all). Clients that come and go in bursts a few
/// seconds apart (a benchmark's runs, a page's assets, pollers) found
/// their threads gone and made them anew each time; a minute keeps them
/// warm across such gaps.
const RETIRE_AFTER: Duration = Duration::from_secs(60);

/// gatehouse patch: idle threads beyond this many end after
/// [`RETIRE_QUICKLY`], as upstream's all did: the threads of a flood of
/// connections (hundreds, each with its stack and allocator cache) are
/// given back within seconds once it is over, while the number a busy
/// server's steady load needs stays warm.
const WARM_IDLE: usize = 64;

/// See [`WARM_IDLE`].
const RETIRE_QUICKLY: Duration = Duration::from_secs(5);

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(VecDeque::new()),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            // Threads are started on demand too; one missing now is no loss.
            let _ = pool.add_thread(None);
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    ///
    /// # Errors
    ///
    /// No thread was idle and none could be started; `code` is dropped.
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) -> io::Result<()> {
        let mut queue = lock(&self.sharing.todo);

        // gatehouse patch: a new thread unless an idle one is left for this
        // task. Upstream checked only for "no idle thread", so tasks spawned
        // in a burst queued behind one waiter that had been woken already
        // (its count drops only once it runs): a connection that then
        // stalled (a TLS handshake never started) held up the ones queued
        // behind it.
        if self.sharing.waiting_tasks.load(Ordering::Acquire) <= queue.len() {
            drop(queue);
            self.add_thread(Some(code))
        } else {
            queue.push_back(code);
            self.sharing.condvar.notify_one();
            Ok(())
        }
    }

    fn add_thread(&self, initial_fn: Option<Box<dyn FnMut() + Send>>) -> io::Result<()> {
        let sharing = self.sharing.clone();

        thread::Builder::new().name("tiny-http-conn".into()).spawn(move || {
            let sharing = sharing;
            let _active_guard = Registration::new(&sharing.active_tasks);

            if let Some(mut f) = initial_fn {
                f();
            }

            loop {
                let mut task: Box<dyn FnMut() + Send> = {
                    let mut todo = lock(&sharing.todo);

                    let task;
                    loop {
                        if let Some(poped_task) = todo.pop_front() {
                            task = poped_task;
                            break;
                        }
                        let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                        let received =
                            if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                todo = sharing
                                    .condvar
                                    .wait(todo)
                                    .unwrap_or_else(PoisonError::into_inner);
                                true
                            } else {
                                // This thread counts itself among those waiting.
                                let linger = if sharing.waiting_tasks.load(Ordering::Acquire)
                                    <= WARM_IDLE
                                {
                                    RETIRE_AFTER
                                } else {
                                    RETIRE_QUICKLY
                                };
                                let (new_lock, waitres) = sharing
                                    .condvar
                                    .wait_timeout(todo, linger)
                                    .unwrap_or_else(PoisonError::into_inner);
                                todo = new_lock;
                                !waitres.timed_out()
                            };

                        if !received && todo.is_empty() {
                            return;
                        }
                    }

                    task
                };

                task();
            }
        })?;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
