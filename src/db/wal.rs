//! Which database file a `-wal` belongs to, so that one written for one
//! file never meets another.
//!
//! SQLite ties a `-wal` to nothing but a file name. Its header (magic, page
//! size, checkpoint sequence, two salts, a checksum) and its frames (page
//! number, commit size, the salts again, a running checksum) are checked
//! against each other, never against the database file (see "WAL file
//! format" in <https://www.sqlite.org/fileformat2.html>). A `-wal` left by a
//! server whose file was replaced (renamed over, or copied over in place)
//! is therefore replayed onto whatever file bears the name next: its pages
//! (a session row, the `meta` page with the old database id) land in another
//! database, where user 1 is someone else, and a cookie maps onto them.
//! SQLite leaves such a `-wal` behind by design: it does not checkpoint
//! into a file that was moved while open, and a crash leaves any `-wal`.
//!
//! So every gatehouse process (the server, every CLI command) writes beside
//! the database a record of the file its `-wal` is written for
//! ([`sidecar`], `gatehouse.db-identity`: device, inode and the random
//! database id of `meta`), and checks it before SQLite opens the file
//! ([`guard`]). A `-wal` beside a file that is not the one recorded
//! (another inode: renamed over; or the same inode holding another database
//! id: copied over) is never replayed: it is moved aside with a clear
//! message, or, when a server may still have it open (a command run beside
//! a server whose file was replaced), the database is not opened at all
//! ([`ForeignWal`]). The record is written before SQLite writes anything,
//! and again once the database id is known, so no `-wal` frame is ever
//! written for a file the record does not name. The server also reads the
//! record before each new connection (`identity`): one that names another
//! file means its own `-wal` is no longer the one at the path.
//!
//! Files are told apart by inode, not device: the same file can show
//! another device number through another mount (a container's view of a
//! volume), and two files cannot share an inode on the one file system the
//! database and its `-wal` are on, while both exist.
//!
//! The database id is read from the file alone, without its `-wal`, through
//! SQLite with `immutable=1` (never by reading the file ourselves: closing
//! another descriptor of the database would drop SQLite's POSIX locks).
//!
//! A data directory from before this record existed has none; its `-wal`
//! is trusted once, and recorded from then on.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;

use super::DbError;

/// The record's first word and version.
const MAGIC: &str = "gatehouse-database-identity-v1";

/// The most of a record that is read: a line of a few dozen bytes.
const MAX_RECORD: u64 = 4096;

/// What to do with a `-wal` found written for another file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignWal {
    /// Move it aside: no gatehouse server has the database open (a server
    /// starting, which holds the data directory; a command with no server
    /// running).
    MoveAside,
    /// Leave it and refuse to open the database: a server may still have
    /// it open (its file was replaced while it ran), and taking the `-wal`
    /// from under it could make its next connection read a fresh `-wal`
    /// through its old index. Its next start moves it aside.
    Refuse,
}

/// The file a `-wal` is written for, as recorded beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The device the database file is on.
    pub dev: u64,
    /// The database file's inode.
    pub ino: u64,
    /// The database id in its `meta` table; empty while not yet known.
    pub database_id: String,
}

impl Owner {
    /// The record's one line.
    fn to_line(&self) -> String {
        format!(
            "{MAGIC} dev={} ino={} id={}\n",
            self.dev, self.ino, self.database_id
        )
    }

    /// A record read back; `None` when it is not one.
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_ascii_whitespace();
        if words.next()? != MAGIC {
            return None;
        }
        let (mut dev, mut ino, mut id) = (None, None, None);
        for word in words {
            match word.split_once('=')? {
                ("dev", v) => dev = v.parse().ok(),
                ("ino", v) => ino = v.parse().ok(),
                ("id", v) if v.is_empty() || is_database_id(v) => id = Some(v.to_owned()),
                _ => return None,
            }
        }
        Some(Self {
            dev: dev?,
            ino: ino?,
            database_id: id.unwrap_or_default(),
        })
    }
}

/// Whether `s` looks like a database id: 32 lowercase hex digits, as
/// `lower(hex(randomblob(16)))` makes them.
fn is_database_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The file SQLite opens for `path`: it follows symbolic links, and keeps
/// its `-wal` beside the file they lead to, so the record goes there too.
fn target(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The file named `path` with `suffix` added (`-wal`, `-shm`, `-identity`).
pub(crate) fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The record beside the database at `path`.
pub(crate) fn sidecar(path: &Path) -> PathBuf {
    companion(path, "-identity")
}

/// The record beside `path`, if there is a readable one.
pub(crate) fn recorded(path: &Path) -> Option<Owner> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(sidecar(path))
        .ok()?
        .take(MAX_RECORD)
        .read_to_string(&mut text)
        .ok()?;
    Owner::parse(&text)
}

/// The database id stored in the file at `path` itself, ignoring any
/// `-wal`; `None` when it cannot be read (no `meta` table in the file yet,
/// a page being rewritten by a checkpoint) or is not a well-formed id.
pub(crate) fn id_in_file(path: &Path) -> Option<String> {
    let absolute = std::path::absolute(path).ok()?;
    let text = absolute.to_str()?;
    // A URI, so that `immutable=1` applies: SQLite then reads the file as
    // it is, takes no lock and opens no -wal or -shm. `%`, `?` and `#`
    // would be read as URI syntax, so they are escaped.
    let mut uri = String::from("file://");
    for c in text.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    let conn = rusqlite::Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let id: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'database_id'",
            [],
            |r| r.get(0),
        )
        .ok()?;
    is_database_id(&id).then_some(id)
}

/// Why the non-empty `-wal` beside `path` was not written for the file
/// there now, or `None` when nothing says so.
fn foreign(path: &Path) -> Result<Option<String>, DbError> {
    let file = match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => m,
        // SQLite writes the first page of a database to the file itself
        // before any frame to its -wal: a -wal beside no file, or an empty
        // one, belongs to a database that is gone.
        Ok(_) => return Ok(Some("the database file beside it is empty".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some("there is no database file beside it".into()));
        }
        Err(e) => {
            return Err(DbError::Invalid(format!(
                "cannot read the database {}: {e}",
                path.display()
            )));
        }
    };
    let Some(owner) = recorded(path) else {
        return Ok(None);
    };
    if owner.ino != file.ino() {
        return Ok(Some(format!(
            "it was written for the file with inode {} (device {}), and the file there now has \
             inode {} (device {}): the database was replaced",
            owner.ino,
            owner.dev,
            file.ino(),
            file.dev()
        )));
    }
    if owner.database_id.is_empty() {
        return Ok(None);
    }
    // The same inode: it may still hold other bytes (copied over in place).
    // Read twice, so that a page caught half-rewritten by a checkpoint of
    // another process cannot pass for another database.
    match (id_in_file(path), id_in_file(path)) {
        (Some(first), Some(second)) if first == second && first != owner.database_id => {
            Ok(Some(format!(
                "it was written for the database with id {}, and the file there now holds the \
                 database with id {first}: the database was copied over",
                owner.database_id
            )))
        }
        _ => Ok(None),
    }
}

/// Run before SQLite opens the database at `path`: a non-empty `-wal`
/// beside it that was written for another file is never replayed. With
/// [`ForeignWal::MoveAside`] it is moved aside (with its `-shm`) and one
/// line says so and where it went; returns where, if it moved.
///
/// # Errors
///
/// When the files cannot be examined; with [`ForeignWal::Refuse`], when
/// there is a foreign `-wal`; when one cannot be moved. The database must
/// not be opened then.
pub(crate) fn guard(path: &Path, foreign_wal: ForeignWal) -> Result<Option<PathBuf>, DbError> {
    let path = &target(path);
    let wal = companion(path, "-wal");
    match std::fs::metadata(&wal) {
        Ok(m) if m.len() > 0 => {}
        // Nothing that could be replayed.
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DbError::Invalid(format!(
                "cannot read {}: {e}",
                wal.display()
            )));
        }
    }
    let Some(why) = foreign(path)? else {
        return Ok(None);
    };
    if foreign_wal == ForeignWal::Refuse {
        return Err(DbError::Replaced(format!(
            "{} was written for another database file ({why}); a gatehouse server on this data \
             directory may still have it open (its database was replaced while it ran), so it is \
             left where it is and {} is not opened: stop the server (its next start moves the \
             -wal aside, without replaying it), then run this again",
            wal.display(),
            path.display()
        )));
    }
    let stamp = format!(
        "foreign-{}-{:08x}",
        crate::clock::now() / 1000,
        rand::random::<u32>()
    );
    let aside = companion(path, &format!("-wal.{stamp}"));
    std::fs::rename(&wal, &aside).map_err(|e| {
        DbError::Replaced(format!(
            "{} was written for another database file ({why}), and it cannot be moved aside \
             ({e}); refusing to open {} so that it is never replayed into it: move it away",
            wal.display(),
            path.display()
        ))
    })?;
    // The -shm indexes that -wal; whoever opens the database next must
    // build a fresh one.
    let shm = companion(path, "-shm");
    if shm.exists() {
        let _ = std::fs::rename(&shm, companion(path, &format!("-shm.{stamp}")));
    }
    crate::logging::line(&format!(
        "warning: {} was written for another database file ({why}); moved it aside to {} \
         without replaying it, so none of its pages reach {}. It holds the last changes to the \
         file it belongs to.",
        wal.display(),
        aside.display(),
        path.display()
    ));
    Ok(Some(aside))
}

/// Records that the `-wal` beside the existing database at `path` is
/// written for that file, whose database id is `database_id` (`None`: not
/// known yet, keep the one recorded for this file if any). Nothing is
/// written when the record already says so.
///
/// # Errors
///
/// When the file cannot be examined or the record cannot be written (the
/// directory is read-only or full).
pub(crate) fn record(path: &Path, database_id: Option<&str>) -> Result<(), DbError> {
    let path = &target(path);
    let file = std::fs::metadata(path).map_err(|e| {
        DbError::Invalid(format!("cannot read the database {}: {e}", path.display()))
    })?;
    let previous = recorded(path);
    let database_id = match (database_id, &previous) {
        (Some(id), _) => id.to_owned(),
        (None, Some(p)) if p.ino == file.ino() => p.database_id.clone(),
        (None, _) => String::new(),
    };
    let owner = Owner {
        dev: file.dev(),
        ino: file.ino(),
        database_id,
    };
    if previous.as_ref() == Some(&owner) {
        return Ok(());
    }
    write_atomically(&sidecar(path), owner.to_line().as_bytes()).map_err(|e| DbError::ReadOnly {
        path: path.to_path_buf(),
        reason: format!("cannot write {}: {e}", sidecar(path).display()),
    })
}

/// Whether the record beside `path` still names the file with this inode
/// and database id (or there is none): the server asks before each new
/// connection, since a command that opened a replacement file records that
/// file, and the `-wal` at the path is then not this file's.
pub(crate) fn still_owned_by(path: &Path, ino: u64, database_id: &str) -> bool {
    recorded(&target(path))
        .is_none_or(|o| o.ino == ino && (o.database_id.is_empty() || o.database_id == database_id))
}

/// Writes `bytes` to `dest` through a private temporary file renamed into
/// place, so a reader sees the old record or the new one, never half.
fn write_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = dest
        .file_name()
        .map_or_else(|| "identity".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dest.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::files::FILE_MODE);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL-mode database at `path` with a `meta` id, and a `-wal` beside
    /// it holding a change not yet in the file, as a crash leaves them (made
    /// under another name and copied, so no connection of this process
    /// holds them). Returns the id.
    fn database_with_hot_wal(path: &Path, value: &str) -> String {
        let work = companion(path, ".work");
        let conn = rusqlite::Connection::open(&work).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta VALUES ('database_id', lower(hex(randomblob(16))));
             CREATE TABLE t (v TEXT);
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .expect("schema");
        conn.execute("INSERT INTO t VALUES (?1)", [value])
            .expect("a change in the -wal");
        let id = conn
            .query_row("SELECT value FROM meta", [], |r| r.get(0))
            .expect("id");
        std::fs::copy(&work, path).expect("copy the file");
        std::fs::copy(companion(&work, "-wal"), companion(path, "-wal")).expect("copy the -wal");
        drop(conn);
        let _ = std::fs::remove_file(&work);
        id
    }

    fn rows(path: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut stmt = conn.prepare("SELECT v FROM t").expect("select");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
    }

    fn other_database(dir: &Path) -> PathBuf {
        let other = dir.join("other.db");
        let conn = rusqlite::Connection::open(&other).expect("open");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta VALUES ('database_id', lower(hex(randomblob(16))));
             CREATE TABLE t (v TEXT);",
        )
        .expect("schema");
        other
    }

    #[test]
    fn a_record_reads_back_and_nothing_else_passes_for_one() {
        let owner = Owner {
            dev: 2049,
            ino: 77,
            database_id: "0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(Owner::parse(&owner.to_line()), Some(owner.clone()));
        let unknown = Owner {
            database_id: String::new(),
            ..owner
        };
        assert_eq!(Owner::parse(&unknown.to_line()), Some(unknown));
        for bad in [
            "",
            "dev=1 ino=2 id=",
            "gatehouse-database-identity-v0 dev=1 ino=2 id=",
            "gatehouse-database-identity-v1 dev=1 id=",
            "gatehouse-database-identity-v1 dev=x ino=2 id=",
            "gatehouse-database-identity-v1 dev=1 ino=2 id=NOT-AN-ID",
            "gatehouse-database-identity-v1 dev=1 ino=2 id= extra=1",
        ] {
            assert_eq!(Owner::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_id_in_the_file_ignores_the_wal() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("we?ird #%name.db");
        let id = database_with_hot_wal(&path, "x");
        assert_eq!(id_in_file(&path), Some(id.clone()));
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute("UPDATE meta SET value = ?1", ["f".repeat(32)])
            .expect("a new id, in the -wal only");
        assert_eq!(id_in_file(&path), Some(id), "read through the -wal");
        assert!(companion(&path, "-wal").exists(), "the -wal was touched");
        assert_eq!(id_in_file(&dir.path().join("missing.db")), None);
    }

    #[test]
    fn a_wal_recorded_for_this_file_is_replayed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let id = database_with_hot_wal(&path, "mine");
        record(&path, Some(&id)).expect("record");
        assert_eq!(guard(&path, ForeignWal::MoveAside).expect("guard"), None);
        assert_eq!(rows(&path), ["mine"]);
    }

    #[test]
    fn a_wal_beside_a_file_renamed_over_it_is_moved_aside_never_replayed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let id = database_with_hot_wal(&path, "for the old file");
        record(&path, Some(&id)).expect("record");
        std::fs::rename(other_database(dir.path()), &path).expect("rename over");
        let aside = guard(&path, ForeignWal::MoveAside).expect("guard");
        assert!(rows(&path).is_empty(), "replayed into the other file");
        let aside = aside.expect("moved aside");
        assert!(aside.exists(), "{aside:?}");
        assert!(aside.to_string_lossy().contains("foreign"), "{aside:?}");
    }

    #[test]
    fn a_wal_beside_a_file_copied_over_it_is_moved_aside_never_replayed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let id = database_with_hot_wal(&path, "for the old file");
        record(&path, Some(&id)).expect("record");
        let ino = std::fs::metadata(&path).expect("stat").ino();
        std::fs::copy(other_database(dir.path()), &path).expect("copy over");
        assert_eq!(std::fs::metadata(&path).expect("stat").ino(), ino);
        let aside = guard(&path, ForeignWal::MoveAside).expect("guard");
        assert!(rows(&path).is_empty(), "replayed into the other file");
        assert!(aside.is_some(), "not moved aside");
    }

    #[test]
    fn beside_a_server_a_foreign_wal_is_left_alone_and_the_database_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let id = database_with_hot_wal(&path, "for the old file");
        record(&path, Some(&id)).expect("record");
        std::fs::rename(other_database(dir.path()), &path).expect("rename over");
        let err = guard(&path, ForeignWal::Refuse).expect_err("refused");
        assert!(
            err.to_string()
                .contains("was written for another database file")
                && err.to_string().contains("stop the server"),
            "{err}"
        );
        assert!(
            companion(&path, "-wal").exists(),
            "moved from under a server"
        );
        // Its own -wal, beside a server: nothing to refuse.
        let mine = dir.path().join("mine.db");
        let id = database_with_hot_wal(&mine, "mine");
        record(&mine, Some(&id)).expect("record");
        assert_eq!(guard(&mine, ForeignWal::Refuse).expect("guard"), None);
    }

    #[test]
    fn the_same_file_seen_with_another_device_number_is_the_same_file() {
        // Another mount (a container's view of a volume) may show another
        // device number for the same file.
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let id = database_with_hot_wal(&path, "mine");
        let ino = std::fs::metadata(&path).expect("stat").ino();
        let owner = Owner {
            dev: 12345,
            ino,
            database_id: id,
        };
        std::fs::write(sidecar(&path), owner.to_line()).expect("record");
        assert_eq!(guard(&path, ForeignWal::MoveAside).expect("guard"), None);
        assert_eq!(rows(&path), ["mine"]);
    }

    #[test]
    fn an_oversized_record_is_no_record() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let mut big = Owner {
            dev: 1,
            ino: 2,
            database_id: String::new(),
        }
        .to_line();
        big.push_str(&" ".repeat(8192));
        big.push_str("id=zz");
        std::fs::write(sidecar(&path), big).expect("write");
        assert_eq!(recorded(&path).map(|o| o.ino), Some(2), "read past its end");
    }

    #[test]
    fn a_wal_beside_no_database_or_an_empty_one_is_moved_aside() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let id = database_with_hot_wal(&path, "x");
        record(&path, Some(&id)).expect("record");
        std::fs::remove_file(&path).expect("delete");
        assert!(
            guard(&path, ForeignWal::MoveAside)
                .expect("guard")
                .is_some()
        );
        let id = database_with_hot_wal(&path, "y");
        record(&path, Some(&id)).expect("record");
        std::fs::write(&path, b"").expect("empty it");
        assert!(
            guard(&path, ForeignWal::MoveAside)
                .expect("guard")
                .is_some()
        );
    }

    #[test]
    fn a_database_reached_through_a_symbolic_link_is_judged_where_sqlite_keeps_its_wal() {
        let dir = tempfile::tempdir().expect("dir");
        let real = dir.path().join("real.db");
        let id = database_with_hot_wal(&real, "for the old file");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        record(&link, Some(&id)).expect("record");
        assert!(sidecar(&real).exists() && !sidecar(&link).exists());
        std::fs::rename(other_database(dir.path()), &real).expect("rename over");
        assert!(
            guard(&link, ForeignWal::MoveAside)
                .expect("guard")
                .is_some(),
            "not moved aside"
        );
        assert!(rows(&link).is_empty(), "replayed into the other file");
    }

    #[test]
    fn without_a_record_or_a_wal_nothing_moves() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        database_with_hot_wal(&path, "from before the record existed");
        assert_eq!(guard(&path, ForeignWal::MoveAside).expect("guard"), None);
        assert_eq!(rows(&path), ["from before the record existed"]);
        // Checkpointed and closed: no -wal left to judge.
        std::fs::rename(other_database(dir.path()), &path).expect("rename over");
        assert_eq!(guard(&path, ForeignWal::MoveAside).expect("guard"), None);
    }

    #[test]
    fn a_record_keeps_a_known_id_until_told_another_and_follows_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let id = database_with_hot_wal(&path, "x");
        record(&path, None).expect("record");
        assert_eq!(recorded(&path).expect("recorded").database_id, "");
        record(&path, Some(&id)).expect("record");
        record(&path, None).expect("record");
        assert_eq!(recorded(&path).expect("recorded").database_id, id);
        let meta = std::fs::metadata(&path).expect("stat");
        assert!(still_owned_by(&path, meta.ino(), &id));
        assert!(!still_owned_by(&path, meta.ino() + 1, &id));
        assert!(!still_owned_by(&path, meta.ino(), &"0".repeat(32)));
        std::fs::rename(other_database(dir.path()), &path).expect("rename over");
        record(&path, None).expect("record");
        let now = recorded(&path).expect("recorded");
        assert_eq!(now.database_id, "", "an id carried over to another file");
        assert!(!still_owned_by(&path, meta.ino(), &id));
    }
}
