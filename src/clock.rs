//! Time: wall-clock Unix milliseconds (the one time unit stored anywhere),
//! kept from stepping backwards within a process, and a monotonic clock for
//! waits and lockouts that nobody else needs to read.
//!
//! A wall clock can step: an administrator sets it, NTP corrects it, a
//! virtual machine resumes. Stepped back a day, a naive server would have
//! answered a 60 s lockout with `Retry-After: 86459` and written session
//! expiry times a day early, signing people out once the clock was put
//! right. So [`now`] follows the system clock forwards (a clock that was
//! slow at boot, as on a board without a real-time clock, must catch up),
//! but when the system clock falls back by more than [`STEP_BACK`], it
//! carries on from where it was at the pace of the monotonic clock until
//! the system clock catches up. Code that only measures intervals uses
//! [`Clock::monotonic`] instead, which no wall-clock step touches.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as stored in the database.
pub type Millis = i64;

/// How far the system clock may fall back and still be followed (NTP's
/// small corrections); a bigger step back is a step, and is ignored.
pub const STEP_BACK: Millis = 2_000;

/// The system's wall clock, as it is.
#[inline]
fn system_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where the process clock was last set from the system clock: the
/// monotonic instant (as [`monotonic_now`] milliseconds) and the wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    mono: Millis,
    wall: Millis,
}

/// One reading of the step-resistant clock: the time to use, the anchor
/// to keep, and whether the system clock is behind by a step. Pure, so the
/// rule is tested without touching the real clock.
#[inline]
fn steady(anchor: Option<Anchor>, system: Millis, mono: Millis) -> (Millis, Anchor, bool) {
    let fresh = Anchor { mono, wall: system };
    let Some(a) = anchor else {
        return (system, fresh, false);
    };
    let carried = a.wall.saturating_add(mono.saturating_sub(a.mono));
    if system.saturating_add(STEP_BACK) >= carried {
        (system, fresh, false)
    } else {
        // Stepped back: keep the old anchor, so the carried time keeps
        // moving at the monotonic clock's pace.
        (carried, a, true)
    }
}

/// The anchor, and whether a step back is being ridden out (so it is
/// reported once, not on every reading).
struct State {
    anchor: Option<Anchor>,
    stepped: bool,
    /// A step back seen and not yet reported: how far, in milliseconds.
    unreported: Option<Millis>,
}

static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
static STATE: Mutex<State> = Mutex::new(State {
    anchor: None,
    stepped: false,
    unreported: None,
});

/// Milliseconds on the monotonic clock since this process first asked.
#[inline]
fn monotonic_now() -> Millis {
    millis(ORIGIN.elapsed())
}

/// The current time in Unix milliseconds; never more than [`STEP_BACK`]
/// earlier than an earlier reading in this process. A step back, when it is
/// first seen, is kept for [`take_step_back`]: the log reports it with its
/// next line (the clock does not write to the log itself, which reads the
/// clock: the bottom helpers import in one direction only).
#[inline]
pub fn now() -> Millis {
    let mono = monotonic_now();
    let system = system_now();
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    let (t, next, stepped) = steady(state.anchor, system, mono);
    state.anchor = Some(next);
    if stepped && !state.stepped {
        state.unreported = Some(t - system);
    }
    state.stepped = stepped;
    t
}

/// How far the system clock stepped back, if it did since the last call:
/// reported once per step.
pub fn take_step_back() -> Option<Millis> {
    STATE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .unreported
        .take()
}

/// A duration in milliseconds, saturating rather than wrapping.
pub fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Both clocks, injectable so tests can step one without the other.
pub trait Clock: Send + Sync {
    /// Wall time in Unix milliseconds, for what is stored or shared.
    fn wall(&self) -> Millis;
    /// Milliseconds since an arbitrary fixed origin, never decreasing: for
    /// waits that only this process measures.
    fn monotonic(&self) -> Millis;
}

/// The real clocks: [`now`] and the process's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> Millis {
        now()
    }

    fn monotonic(&self) -> Millis {
        monotonic_now()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicI64,
    mono: AtomicI64,
}

impl ManualClock {
    /// A clock reading `wall` on the wall clock.
    pub fn at(wall: Millis) -> Self {
        Self {
            wall: AtomicI64::new(wall),
            mono: AtomicI64::new(1_000_000),
        }
    }

    /// Time passes: both clocks move on by `d`.
    pub fn advance(&self, d: Duration) {
        self.wall.fetch_add(millis(d), Ordering::SeqCst);
        self.mono.fetch_add(millis(d), Ordering::SeqCst);
    }

    /// The wall clock is stepped by `by` milliseconds (negative: back);
    /// the monotonic clock does not notice.
    pub fn step_wall(&self, by: Millis) {
        self.wall.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> Millis {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Millis {
        self.mono.load(Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn wall(&self) -> Millis {
        (**self).wall()
    }

    fn monotonic(&self) -> Millis {
        (**self).monotonic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;

    #[test]
    fn the_first_reading_is_the_system_clock() {
        assert_eq!(
            steady(None, 5_000, 7),
            (
                5_000,
                Anchor {
                    mono: 7,
                    wall: 5_000
                },
                false
            )
        );
    }

    #[test]
    fn a_step_back_is_ignored_and_time_keeps_moving() {
        let t0 = 1_800_000_000_000;
        let (_, a, _) = steady(None, t0, 0);
        // A second later the clock is set back a day.
        let (t, a, stepped) = steady(Some(a), t0 + 1_000 - DAY, 1_000);
        assert_eq!((t, stepped), (t0 + 1_000, true));
        // An hour on, still stepped back: an hour on from before the step.
        let (t, a, _) = steady(Some(a), t0 + 3_601_000 - DAY, 3_601_000);
        assert_eq!(t, t0 + 3_601_000);
        // Put right again: followed, and no jump.
        let (t, _, stepped) = steady(Some(a), t0 + 3_602_000, 3_602_000);
        assert_eq!((t, stepped), (t0 + 3_602_000, false));
    }

    #[test]
    fn a_step_forward_is_followed() {
        let (_, a, _) = steady(None, 1_000, 0);
        let (t, a, _) = steady(Some(a), 1_000 + DAY, 10);
        assert_eq!(t, 1_000 + DAY);
        assert_eq!(steady(Some(a), 1_000 + DAY + 5, 15).0, 1_000 + DAY + 5);
    }

    #[test]
    fn a_small_correction_back_is_followed() {
        let (_, a, _) = steady(None, 10_000, 0);
        let (t, _, stepped) = steady(Some(a), 10_000 + 500 - STEP_BACK, 500);
        assert_eq!((t, stepped), (10_000 + 500 - STEP_BACK, false));
    }

    #[test]
    fn a_manual_clock_steps_the_wall_clock_alone() {
        let c = ManualClock::at(DAY);
        c.advance(Duration::from_secs(1));
        c.step_wall(-DAY);
        assert_eq!(c.wall(), 1_000);
        assert_eq!(c.monotonic(), 1_001_000);
    }
}
