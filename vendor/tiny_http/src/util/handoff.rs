//! gatehouse patch: the channel a connection's consecutive readers and
//! writers hand the stream and their turn on through (see `sequential`),
//! in place of `std::sync::mpsc`.
//!
//! Two of these are made for every request. std's unbounded channel
//! allocates a cache-aligned counter and, at the first send, a zeroed
//! block of 31 slots: about 9,000 of the 80,000 instructions of a
//! kept-alive request (callgrind). Here a channel is one small allocation
//! (its first message is kept inline, more go to a queue that allocates
//! only when used), and a send wakes the receiver only when it waits, so
//! a hand-off that finds nobody waiting makes no system call.
//!
//! The semantics are mpsc's, as far as `sequential` and `request` use
//! them: many senders (clones), one receiver; `recv` fails once every
//! sender is gone and nothing is left; `send` fails, handing the message
//! back, once the receiver is gone.

use std::collections::VecDeque;
use std::sync::mpsc::{RecvError, SendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

struct State<T> {
    first: Option<T>,
    rest: VecDeque<T>,
    senders: usize,
    receiver: bool,
    /// The receiver is blocked in `recv`.
    waiting: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side; clones share the channel.
pub struct Sender<T>(Arc<Inner<T>>);

/// The receiving side.
pub struct Receiver<T>(Arc<Inner<T>>);

/// A new channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            first: None,
            rest: VecDeque::new(),
            senders: 1,
            receiver: true,
            waiting: false,
        }),
        ready: Condvar::new(),
    });
    (Sender(Arc::clone(&inner)), Receiver(inner))
}

impl<T> Sender<T> {
    /// Queues `value`; hands it back when the receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut state = self.0.lock();
        if !state.receiver {
            return Err(SendError(value));
        }
        if state.first.is_none() && state.rest.is_empty() {
            state.first = Some(value);
        } else {
            state.rest.push_back(value);
        }
        let wake = state.waiting;
        drop(state);
        if wake {
            self.0.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(Arc::clone(&self.0))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        let wake = state.senders == 0 && state.waiting;
        drop(state);
        if wake {
            self.0.ready.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message, waiting for it; `RecvError` once every sender is
    /// gone and none is left.
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut state = self.0.lock();
        loop {
            if let Some(value) = state.first.take() {
                return Ok(value);
            }
            if let Some(value) = state.rest.pop_front() {
                return Ok(value);
            }
            if state.senders == 0 {
                return Err(RecvError);
            }
            state.waiting = true;
            state = self
                .0
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting = false;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.lock().receiver = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_in_order_then_the_end_when_the_senders_are_gone() {
        let (tx, rx) = channel();
        let tx2 = tx.clone();
        tx.send(1).expect("send");
        tx2.send(2).expect("send");
        tx.send(3).expect("send");
        drop(tx);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Ok(3));
        drop(tx2);
        assert_eq!(rx.recv(), Err(RecvError));
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_send_or_by_the_last_sender_going() {
        let (tx, rx) = channel::<u32>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            tx.send(7).expect("send");
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
        assert_eq!(rx.recv(), Ok(7));
        assert_eq!(rx.recv(), Err(RecvError));
        t.join().expect("join");
    }

    #[test]
    fn a_send_to_a_receiver_that_is_gone_hands_the_message_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(5), Err(SendError(5)));
    }
}
