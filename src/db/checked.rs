//! Pooled connections to network servers that are checked before use when
//! they have been idle, so a server that restarted costs no failed request.
//!
//! Checking every checkout would add a round trip to every statement; not
//! checking at all hands out connections the server closed while they sat
//! in the pool. A connection used within the last [`IDLE_CHECK`] is trusted
//! as it is; an older one is pinged first, and replaced if the ping fails.
//!
//! A pool may be seeded with the connection made at start (to report a
//! refused certificate or password as itself): it becomes the pool's
//! first, so start-up makes one connection, not two, and never waits on a
//! second.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a connection may sit unused before it is pinged on checkout.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A connection manager whose connections are pinged after idling.
pub struct Checked<M: r2d2::ManageConnection> {
    manager: M,
    seed: Mutex<Option<M::Connection>>,
}

impl<M: r2d2::ManageConnection + std::fmt::Debug> std::fmt::Debug for Checked<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Checked").field(&self.manager).finish()
    }
}

impl<M: r2d2::ManageConnection> Checked<M> {
    /// Checks `manager`'s connections.
    pub fn new(manager: M) -> Self {
        Self {
            manager,
            seed: Mutex::new(None),
        }
    }

    /// As [`Checked::new`], with `first` handed out as the first new
    /// connection.
    pub fn seeded(manager: M, first: M::Connection) -> Self {
        Self {
            manager,
            seed: Mutex::new(Some(first)),
        }
    }
}

/// A pooled connection and when it was last handed back.
#[derive(Debug)]
pub struct Conn<C> {
    conn: C,
    last_used: Instant,
}

impl<C> Deref for Conn<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Conn<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<M: r2d2::ManageConnection> r2d2::ManageConnection for Checked<M> {
    type Connection = Conn<M::Connection>;
    type Error = M::Error;

    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let seed = self
            .seed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let conn = match seed {
            Some(conn) => conn,
            None => self.manager.connect()?,
        };
        Ok(Conn {
            conn,
            last_used: Instant::now(),
        })
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        if conn.last_used.elapsed() >= IDLE_CHECK {
            self.manager.is_valid(&mut conn.conn)?;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        // Called as the connection goes back to the pool.
        conn.last_used = Instant::now();
        self.manager.has_broken(&mut conn.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Connections are numbers, counted as they are made.
    #[derive(Debug, Default)]
    struct Counting(AtomicU32);

    impl r2d2::ManageConnection for Counting {
        type Connection = u32;
        type Error = std::io::Error;

        fn connect(&self) -> Result<u32, std::io::Error> {
            Ok(self.0.fetch_add(1, Ordering::SeqCst) + 1)
        }

        fn is_valid(&self, _: &mut u32) -> Result<(), std::io::Error> {
            Ok(())
        }

        fn has_broken(&self, _: &mut u32) -> bool {
            false
        }
    }

    #[test]
    fn a_seeded_pool_hands_out_the_seed_first_and_then_makes_its_own() {
        let checked = Checked::seeded(Counting::default(), 100);
        let first = r2d2::ManageConnection::connect(&checked).expect("first");
        let second = r2d2::ManageConnection::connect(&checked).expect("second");
        assert_eq!((*first, *second), (100, 1));
        assert_eq!(checked.manager.0.load(Ordering::SeqCst), 1);
        let unseeded = Checked::new(Counting::default());
        assert_eq!(
            *r2d2::ManageConnection::connect(&unseeded).expect("made"),
            1
        );
    }
}
