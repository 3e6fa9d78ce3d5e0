//! Files at rest are private: the data directory is `0700`, and every file
//! gatehouse writes (the database and its `-wal`/`-shm`, backups, the
//! secret) is `0600`, so other local users read no password or session
//! hashes. A bottom helper: the CLI, the app and the database code use it.

use std::path::Path;

/// Mode of the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file gatehouse writes.
pub const FILE_MODE: u32 = 0o600;

/// Makes every file and directory this process creates from now on private
/// to its user (umask `077`), whatever code creates it: SQLite's journal
/// files, a temporary file, a file another helper forgets to give a mode.
/// Called first thing by the executable; a library embedding gatehouse
/// keeps its own umask and relies on the explicit modes below.
///
/// An umask that already keeps out group and others (systemd's `UMask=0077`
/// in `docs/gatehouse.service`) is left alone without a system call: that
/// unit's filter (`SystemCallFilter=~@resources`) kills a process that
/// calls `umask`.
pub fn private_umask() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(mask) = stricter_umask(&status) {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    }
}

/// The umask to set, given `/proc/self/status`: the current one with
/// group and others masked out, or `None` when it already is. Without a
/// readable `Umask:` line, `077`.
fn stricter_umask(status: &str) -> Option<u32> {
    let current = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok());
    match current {
        Some(mask) if mask & 0o077 == 0o077 => None,
        Some(mask) => Some((mask | 0o077) & 0o777),
        None => Some(0o077),
    }
}

/// Creates `dir` (and missing parents) with mode `0700`. An existing
/// directory keeps its mode (see [`warn_if_readable`]).
///
/// # Errors
///
/// When it cannot be created.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Creates an empty `file` with mode `0600` if it does not exist yet, so
/// that whatever writes it next (SQLite, which gives its `-wal` and `-shm`
/// files the database's mode) keeps that mode.
///
/// # Errors
///
/// When it cannot be created.
pub fn touch_private(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `path` can be read (or, for a directory, entered) by its group
/// or by others; `None` when it cannot be examined (absent, say).
pub fn readable_by_others(path: &Path) -> Option<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        Some(mode & 0o055 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Logs one line naming each of `paths` that others can read, with what
/// to do about it. Modes of existing files are never changed behind the
/// owner's back (a shared group may be deliberate), only reported.
pub fn warn_if_readable(paths: &[&Path]) {
    for path in paths {
        if readable_by_others(path) == Some(true) {
            let fix = if path.is_dir() { "700" } else { "600" };
            crate::logging::line(&format!(
                "warning: {} is readable by other users; it holds password and session \
                 hashes: chmod {fix} {}",
                path.display(),
                path.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_umask_is_tightened_only_when_it_lets_others_in() {
        let status = |m: &str| format!("Name:\tgatehouse\nUmask:\t{m}\nState:\tR\n");
        assert_eq!(stricter_umask(&status("0022")), Some(0o077));
        assert_eq!(stricter_umask(&status("0000")), Some(0o077));
        assert_eq!(stricter_umask(&status("0227")), Some(0o277));
        // systemd's UMask=0077 (or stricter): no system call at all.
        assert_eq!(stricter_umask(&status("0077")), None);
        assert_eq!(stricter_umask(&status("0277")), None);
        assert_eq!(stricter_umask("no such line"), Some(0o077));
        assert_eq!(stricter_umask(&status("bogus")), Some(0o077));
    }

    #[test]
    fn a_new_directory_and_file_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().expect("dir");
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).expect("create");
        assert_eq!(mode(&dir), DIR_MODE);
        let file = dir.join("f");
        touch_private(&file).expect("touch");
        assert_eq!(mode(&file), FILE_MODE);
        touch_private(&file).expect("an existing file is fine");
        assert_eq!(readable_by_others(&file), Some(false));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert_eq!(readable_by_others(&file), Some(true));
        assert_eq!(readable_by_others(&dir.join("absent")), None);
    }
}
