//! How many proxied requests may wait on upstreams at once. A request
//! thread forwarding a request waits for the upstream's answer head (up to
//! `proxy_timeout`); an upstream that accepts and never answers (hung, or
//! a long poll) held one thread per request, and one signed-in user sending
//! a few hundred such requests took every request thread for a minute:
//! `/healthz` and `/auth/verify` answered nobody (a hostile pass, issue 22).
//!
//! So at most three quarters of `threads` forward at once, leaving the rest
//! for everything else, and one asker (a user, or an address when nobody
//! is signed in) holds at most half of those: a second user's page still
//! loads while the first one's requests hang.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::identity::UserId;

/// Who a proxied request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asker {
    /// A signed-in user, from wherever.
    User(UserId),
    /// Nobody signed in (a `bypass` rule): the client's address, IPv6 by
    /// its /64 (one host usually holds a whole /64).
    Address(IpAddr),
}

impl Asker {
    /// The asker for `user`, else for `ip`.
    pub fn of(user: Option<UserId>, ip: IpAddr) -> Self {
        match (user, ip) {
            (Some(user), _) => Self::User(user),
            (None, IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self::Address(IpAddr::V6(bits.into()))
            }
            (None, ip) => Self::Address(ip.to_canonical()),
        }
    }
}

/// Why a request was not forwarded.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This asker already has as many requests waiting as one may.
    Asker,
    /// As many requests wait on upstreams as the threads allow.
    Full,
}

/// The requests waiting on upstreams, in all and per asker.
#[derive(Debug)]
pub struct InFlight {
    most: usize,
    per_asker: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by: HashMap<Asker, usize>,
}

impl InFlight {
    /// The limits for a server with `threads` request threads (the
    /// `threads` setting): three quarters of them in all, half of that per
    /// asker, at least one each.
    pub fn new(threads: usize) -> Arc<Self> {
        let most = threads.saturating_sub(threads / 4).max(1);
        Arc::new(Self {
            most,
            per_asker: (most / 2).max(1),
            held: Mutex::new(Held::default()),
        })
    }

    /// Counts one request for `asker` until the slot is dropped.
    ///
    /// # Errors
    ///
    /// [`Refused`] when the asker, or everyone together, is at the limit.
    pub fn claim(self: &Arc<Self>, asker: Asker) -> Result<Slot, Refused> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.total >= self.most {
            return Err(Refused::Full);
        }
        let n = held.by.entry(asker).or_insert(0);
        if *n >= self.per_asker {
            return Err(Refused::Asker);
        }
        *n += 1;
        held.total += 1;
        Ok(Slot {
            inflight: Arc::clone(self),
            asker,
        })
    }

    /// How many requests wait on upstreams now.
    pub fn total(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One counted request; given back when dropped (the answer's head came,
/// or the forwarding failed).
#[derive(Debug)]
pub struct Slot {
    inflight: Arc<InFlight>,
    asker: Asker,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .inflight
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by.get_mut(&self.asker) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.by.remove(&self.asker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    #[test]
    fn an_asker_holds_half_and_everyone_three_quarters_of_the_threads() {
        let limits = InFlight::new(16);
        let alice = Asker::User(1);
        let mut held: Vec<Slot> = (0..6).map(|_| limits.claim(alice).expect("slot")).collect();
        assert_eq!(limits.claim(alice).unwrap_err(), Refused::Asker);
        held.extend((0..6).map(|_| limits.claim(Asker::User(2)).expect("slot")));
        assert_eq!(limits.claim(Asker::User(3)).unwrap_err(), Refused::Full);
        assert_eq!(limits.total(), 12);
        held.truncate(5);
        assert_eq!(limits.total(), 5);
        assert!(
            limits.claim(alice).is_ok(),
            "a slot given back is free again"
        );
        drop(held);
        assert_eq!(limits.total(), 0);
        assert!(limits.held.lock().expect("lock").by.is_empty());
    }

    #[test]
    fn one_thread_still_forwards_one_request() {
        let limits = InFlight::new(1);
        let slot = limits.claim(Asker::User(1)).expect("slot");
        assert_eq!(limits.claim(Asker::User(2)).unwrap_err(), Refused::Full);
        drop(slot);
        assert!(limits.claim(Asker::User(2)).is_ok());
    }

    #[test]
    fn anonymous_askers_are_counted_by_address_and_ipv6_by_its_64() {
        let a = "2001:db8:1:2::1".parse::<Ipv6Addr>().expect("v6");
        let b = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().expect("v6");
        assert_eq!(
            Asker::of(None, IpAddr::V6(a)),
            Asker::of(None, IpAddr::V6(b))
        );
        let mapped = "::ffff:10.0.0.1".parse::<Ipv6Addr>().expect("v6");
        assert_eq!(
            Asker::of(None, IpAddr::V6(mapped)),
            Asker::Address("10.0.0.1".parse().expect("v4"))
        );
        assert_eq!(Asker::of(Some(7), IpAddr::V6(a)), Asker::User(7));
    }
}
