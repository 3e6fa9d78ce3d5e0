//! The file-descriptor limit: raised to the hard limit at start (as Go's
//! runtime and nginx's `worker_rlimit_nofile` do), and the default cap on
//! client connections derived from it.
//!
//! Every client connection takes one descriptor; one through the built-in
//! proxy, or a WebSocket tunnel, takes a second for its upstream. The rest
//! of the process needs a few more: the listener, standard streams, the
//! data-directory files, and every pooled database connection (an SQLite
//! connection can hold the database, its WAL and its shared-memory file
//! open). So half of what is left after a reserve for those goes to client
//! connections: running out of descriptors can then only happen when some
//! other limit was set too tight.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept back for the listener, standard streams, data files
/// and outbound lookups, beside the database pools.
const RESERVE: u64 = 64;

/// Descriptors kept back per pooled database or Redis connection.
const PER_POOLED: u64 = 4;

/// The most connections the automatic cap allows, whatever the limit: each
/// connection is a thread (about 30 KiB resident when idle, see
/// docs/operations.md), and an intranet's front door needs no more.
const AUTO_MAX: u64 = 4096;

/// The fewest the automatic cap allows, even under a very low limit.
const AUTO_MIN: u64 = 16;

/// The descriptor limit in force, and what it was before start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The soft limit now (`None`: unlimited).
    pub soft: Option<u64>,
    /// The soft limit found at start.
    pub before: Option<u64>,
    /// Why it could not be raised, if it could not.
    pub error: Option<rustix::io::Errno>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and says what is in
/// force. Never fails: a limit that cannot be raised stays as it was.
pub fn raise() -> Limit {
    let found = getrlimit(Resource::Nofile);
    let before = found.current;
    let error = match (found.current, found.maximum) {
        // An unlimited hard limit cannot be the soft one on Linux
        // (`fs.nr_open` bounds it, 1,048,576 by default).
        (Some(soft), hard) if hard.unwrap_or(1 << 20) > soft => {
            let target = hard.unwrap_or(1 << 20);
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(target),
                    maximum: found.maximum,
                },
            )
            .err()
        }
        _ => None,
    };
    Limit {
        soft: getrlimit(Resource::Nofile).current,
        before,
        error,
    }
}

/// The default `max_connections` under a soft limit of `soft` descriptors
/// (`None`: unlimited) with `pooled` database and Redis connections:
/// `(soft - 64 - 4 × pooled) / 2`, at least 16 and at most 4096.
pub fn max_connections(soft: Option<u64>, pooled: u64) -> usize {
    let soft = soft.unwrap_or(u64::MAX);
    let free = soft.saturating_sub(RESERVE + PER_POOLED * pooled);
    let n = (free / 2).clamp(AUTO_MIN, AUTO_MAX);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The default `max_connections_per_client` under a cap of `max`
/// connections: a quarter of them, at least 8. One address (an office's
/// NAT, a flood) then holds at most a quarter of the slots, and a browser
/// (six connections a host) always has room.
pub fn per_client(max: usize) -> usize {
    (max / 4).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_gets_a_quarter_of_the_cap_and_at_least_eight() {
        assert_eq!(per_client(4096), 1024);
        assert_eq!(per_client(444), 111);
        assert_eq!(per_client(16), 8);
        assert_eq!(per_client(2), 8);
    }

    #[test]
    fn the_default_cap_leaves_room_for_upstreams_and_pools() {
        // A shell's default limit, the default pool of 18 connections.
        assert_eq!(max_connections(Some(1024), 18), (1024 - 64 - 72) / 2);
        // A client and an upstream descriptor each, plus the reserve,
        // stay under the limit.
        let n = max_connections(Some(1024), 18) as u64;
        assert!(2 * n + 64 + 4 * 18 <= 1024);
    }

    #[test]
    fn the_default_cap_has_a_floor_and_a_ceiling() {
        assert_eq!(max_connections(Some(64), 18), 16);
        assert_eq!(max_connections(Some(0), 0), 16);
        assert_eq!(max_connections(Some(1 << 20), 18), 4096);
        assert_eq!(max_connections(None, 18), 4096);
    }

    #[test]
    fn raising_lifts_a_lowered_soft_limit_to_the_hard_one() {
        let found = getrlimit(Resource::Nofile);
        // What `raise` aims for: the hard limit (an unlimited one as Linux
        // bounds it).
        let target = found.maximum.unwrap_or(1 << 20);
        // Lowering the soft limit is always allowed, and one below the
        // target leaves the other tests of this process their descriptors.
        let lowered = target - 1;
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(lowered),
                maximum: found.maximum,
            },
        )
        .expect("a soft limit below the hard one can always be set");
        let limit = raise();
        assert_eq!(limit.before, Some(lowered));
        // Raising the soft limit up to the hard one needs no privilege, so
        // a failure here is a bug in `raise`, not a test to pass quietly.
        assert_eq!(limit.error, None);
        assert_eq!(limit.soft, Some(target));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(target));
    }
}
