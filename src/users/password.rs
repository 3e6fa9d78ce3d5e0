//! Passwords: the rules for new ones, and bcrypt hashing on a bounded number
//! of threads.
//!
//! bcrypt is slow on purpose. Unbounded, a burst of logins would occupy every
//! request thread and the server would stop answering anything else; so at
//! most `workers` hashes run at once, at most `queue` more may wait, and a
//! login beyond that is told to come back ([`PasswordError::Busy`]).

use std::sync::{Condvar, Mutex, OnceLock};

/// Shortest password accepted when one is set.
pub const MIN_LEN: usize = 8;
/// bcrypt reads only the first 72 bytes; longer passwords are refused, not
/// silently truncated.
pub const MAX_BYTES: usize = 72;

/// Errors from setting or checking a password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Fewer than [`MIN_LEN`] characters.
    #[error("the password must be at least {MIN_LEN} characters long")]
    TooShort,
    /// More than [`MAX_BYTES`] bytes.
    #[error("the password must be at most {MAX_BYTES} bytes long (bcrypt ignores the rest)")]
    TooLong,
    /// Too many password checks are already queued.
    #[error("too many sign-ins at once; try again in a moment")]
    Busy,
    /// bcrypt itself failed.
    #[error("password hashing failed")]
    Hash,
}

/// Checks a password someone wants to set.
///
/// # Errors
///
/// [`PasswordError::TooShort`] or [`PasswordError::TooLong`].
pub fn validate(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        Err(PasswordError::TooShort)
    } else if password.len() > MAX_BYTES {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

/// Hashes and verifies with a fixed bcrypt cost and bounded concurrency.
pub struct Hasher {
    cost: u32,
    workers: usize,
    queue: usize,
    state: Mutex<Slots>,
    freed: Condvar,
    dummy: OnceLock<String>,
}

#[derive(Default)]
struct Slots {
    running: usize,
    waiting: usize,
    peak_running: usize,
    peak_waiting: usize,
    verified: u64,
    turned_away: u64,
}

/// What the hasher has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HasherStats {
    /// Most hashes that ever ran at once.
    pub peak_running: usize,
    /// Most callers that ever waited at once.
    pub peak_waiting: usize,
    /// Password checks run (real and dummy).
    pub verified: u64,
    /// Callers refused because the queue was full.
    pub turned_away: u64,
}

/// Holds one of the hasher's worker slots until dropped.
struct Permit<'a>(&'a Hasher);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.slots().running -= 1;
        self.0.freed.notify_one();
    }
}

impl Hasher {
    /// A hasher with bcrypt `cost`, `workers` concurrent hashes and up to
    /// `queue` waiting callers.
    pub fn new(cost: u32, workers: usize, queue: usize) -> Self {
        Self {
            cost,
            workers: workers.max(1),
            queue,
            state: Mutex::new(Slots::default()),
            freed: Condvar::new(),
            dummy: OnceLock::new(),
        }
    }

    /// The bcrypt cost new hashes use.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counters since start.
    pub fn stats(&self) -> HasherStats {
        let s = self.slots();
        HasherStats {
            peak_running: s.peak_running,
            peak_waiting: s.peak_waiting,
            verified: s.verified,
            turned_away: s.turned_away,
        }
    }

    /// How many hashes may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// How many callers may wait.
    pub fn queue(&self) -> usize {
        self.queue
    }

    fn permit(&self) -> Result<Permit<'_>, PasswordError> {
        let mut s = self.slots();
        if s.running >= self.workers {
            if s.waiting >= self.queue {
                s.turned_away += 1;
                return Err(PasswordError::Busy);
            }
            s.waiting += 1;
            s.peak_waiting = s.peak_waiting.max(s.waiting);
            while s.running >= self.workers {
                s = self
                    .freed
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            s.waiting -= 1;
        }
        s.running += 1;
        s.peak_running = s.peak_running.max(s.running);
        Ok(Permit(self))
    }

    /// Hashes a new password after checking the rules.
    ///
    /// # Errors
    ///
    /// The rules in [`validate`], [`PasswordError::Busy`], or a bcrypt failure.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        validate(password)?;
        let _permit = self.permit()?;
        // `validate` refused anything over 72 bytes, and bcrypt uses all of
        // the first 72, so nothing is ever cut off here.
        bcrypt::hash(password, self.cost).map_err(|_| PasswordError::Hash)
    }

    /// Whether `password` matches `hash`. Always costs one bcrypt run, also
    /// for overlong input, so timing does not reveal why a check failed.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] when the queue is full.
    pub fn verify(&self, password: &str, hash: &str) -> Result<bool, PasswordError> {
        let _permit = self.permit()?;
        self.slots().verified += 1;
        let bytes = password.as_bytes();
        let head = &bytes[..bytes.len().min(MAX_BYTES)];
        let ok = bcrypt::verify(head, hash).unwrap_or(false);
        Ok(ok && bytes.len() <= MAX_BYTES)
    }

    /// Spends the time of one verify against a hash nobody has, so an
    /// unknown username takes as long to refuse as a wrong password.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] when the queue is full.
    pub fn dummy_verify(&self, password: &str) -> Result<(), PasswordError> {
        let hash = self.dummy_hash().to_owned();
        self.verify(password, &hash).map(|_| ())
    }

    /// Computes the dummy hash now rather than on the first unknown user.
    pub fn warm_up(&self) {
        let _ = self.dummy_hash();
    }

    fn dummy_hash(&self) -> &str {
        self.dummy.get_or_init(|| {
            let secret = crate::crypto::random_bytes::<18>();
            bcrypt::hash(secret, self.cost).expect("bcrypt hashes random bytes at a valid cost")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn short_and_overlong_passwords_are_refused() {
        assert_eq!(validate("1234567"), Err(PasswordError::TooShort));
        assert_eq!(validate("12345678"), Ok(()));
        assert_eq!(validate(&"a".repeat(72)), Ok(()));
        assert_eq!(validate(&"a".repeat(73)), Err(PasswordError::TooLong));
        // 24 three-byte characters are 72 bytes; one more is too many.
        assert_eq!(validate(&"€".repeat(24)), Ok(()));
        assert_eq!(validate(&"€".repeat(25)), Err(PasswordError::TooLong));
    }

    #[test]
    fn a_hash_verifies_only_its_password() {
        let h = Hasher::new(4, 1, 8);
        let hash = h.hash("correct horse").expect("hash");
        assert!(h.verify("correct horse", &hash).expect("verify"));
        assert!(!h.verify("correct horsf", &hash).expect("verify"));
    }

    #[test]
    fn input_past_72_bytes_never_matches_a_72_byte_password() {
        let h = Hasher::new(4, 1, 8);
        let pw = "p".repeat(72);
        let hash = h.hash(&pw).expect("hash");
        assert!(h.verify(&pw, &hash).expect("verify"));
        assert!(!h.verify(&format!("{pw}extra"), &hash).expect("verify"));
    }

    #[test]
    fn a_garbage_hash_is_a_mismatch_not_an_error() {
        let h = Hasher::new(4, 1, 8);
        assert!(!h.verify("whatever1", "not a bcrypt hash").expect("verify"));
        h.dummy_verify("whatever1").expect("dummy");
    }

    #[test]
    fn callers_beyond_the_queue_are_turned_away() {
        let h = Arc::new(Hasher::new(4, 1, 0));
        let held = h.permit().expect("first permit");
        assert_eq!(h.verify("x", "y"), Err(PasswordError::Busy));
        drop(held);
        assert_eq!(h.verify("x", "y"), Ok(false));
    }

    #[test]
    fn an_unknown_user_costs_one_verify_like_a_known_one() {
        let h = Hasher::new(4, 1, 8);
        h.dummy_verify("whatever1").expect("dummy");
        assert_eq!(h.stats().verified, 1);
    }

    #[test]
    fn waiting_callers_get_their_turn() {
        let h = Arc::new(Hasher::new(4, 1, 8));
        let hash = h.hash("password1").expect("hash");
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (h, hash) = (h.clone(), hash.clone());
                std::thread::spawn(move || h.verify("password1", &hash))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("join"), Ok(true));
        }
    }
}
