//! Pooled connections to network servers that are checked before use when
//! they have been idle, so a server that restarted costs no failed request.
//!
//! Checking every checkout would add a round trip to every statement; not
//! checking at all hands out connections the server closed while they sat
//! in the pool. A connection used within the last [`IDLE_CHECK`] is trusted
//! as it is; an older one is pinged first, and replaced if the ping fails.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// How long a connection may sit unused before it is pinged on checkout.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A connection manager whose connections are pinged after idling.
#[derive(Debug)]
pub struct Checked<M>(pub M);

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
        Ok(Conn {
            conn: self.0.connect()?,
            last_used: Instant::now(),
        })
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        if conn.last_used.elapsed() >= IDLE_CHECK {
            self.0.is_valid(&mut conn.conn)?;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        // Called as the connection goes back to the pool.
        conn.last_used = Instant::now();
        self.0.has_broken(&mut conn.conn)
    }
}
