//! The value types settings parse into and the parsers themselves: one
//! function per kind of value (durations, booleans, addresses, URLs,
//! secrets, cookie attributes), each returning the reason a value is
//! refused as a sentence the error names the setting in front of.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::access::Access;
use crate::session::SameSite;

/// A signing secret. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) Vec<u8>);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text (settings are read as UTF-8, so it is).
    pub fn expose_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where users (and, by default, sessions) are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server; the URL may hold a password, so it is masked.
    Postgres(Secret),
}

/// Where sessions are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStore {
    /// In the database, beside the users.
    Database,
    /// In Redis (or Valkey); the URL may hold a password.
    Redis(Secret),
}

impl Database {
    /// Whether connections to it use TLS (a `postgres://` URL whose
    /// `sslmode` asks for it).
    pub fn uses_tls(&self) -> bool {
        match self {
            Self::Sqlite(_) => false,
            Self::Postgres(url) => crate::db::postgres::parse(url.expose_str())
                .is_ok_and(|(_, mode)| mode == crate::db::postgres::SslMode::VerifyFull),
        }
    }
}

impl SessionStore {
    /// Whether connections to it use TLS (`rediss://`).
    pub fn uses_tls(&self) -> bool {
        match self {
            Self::Database => false,
            Self::Redis(url) => crate::db::redis::uses_tls(url.expose_str()),
        }
    }
}

/// A URL with any password replaced by `***`, fit to print: the one
/// between the user and the first `@` (where the PostgreSQL client ends
/// it, so one with an unencoded `/`, `?` or `#` is masked whole), and a
/// `password=` parameter, which PostgreSQL URLs may carry too. Where in
/// doubt it masks more, never less.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (credentials, rest) = match rest.split_once('@') {
        Some((userinfo, after)) => {
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => format!("{userinfo}@"),
            };
            (masked, after)
        }
        None => (String::new(), rest),
    };
    let (location, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
    let query: Vec<String> = query
        .strip_prefix('?')
        .map(|q| q.split('&').collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            if decoded.eq_ignore_ascii_case("password") {
                format!("{key}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    format!("{scheme}://{credentials}{location}{query}")
}

/// Parses `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
///
/// # Errors
///
/// A message naming the accepted words.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" | "" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// Parses `500ms`, `90s`, `10m`, `2h`, `30d`.
///
/// # Errors
///
/// A message saying what a duration looks like.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 90s, 10m, 2h or 30d");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let ms_per = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per)
        .filter(|ms| *ms <= 3_650 * 86_400_000)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is longer than ten years"))
}

/// A point in time as a filter takes it (`gatehouse audit --since`, the
/// audit page): a duration ago from `now` (`90s`, `12h`, `30d`, as
/// [`parse_duration`] reads it), or a UTC date and time, `2026-01-31`,
/// `2026-01-31T12:00`, `2026-01-31T12:00:30` (a space for the `T`, and a
/// `Z` at the end, are taken too). Strict: anything else is refused, and
/// the message does not repeat the text.
///
/// # Errors
///
/// Text of neither shape, or a date that does not exist.
pub fn parse_instant(s: &str, now: crate::clock::Millis) -> Result<crate::clock::Millis, String> {
    const BAD: &str = "is neither a duration ago (1d, 12h) nor a UTC date and time (2026-01-31, 2026-01-31T12:00)";
    let s = s.trim_matches(' ');
    if s.len() > 32 {
        return Err(BAD.to_owned());
    }
    if !s.contains(['-', ':']) {
        let d = parse_duration(s).map_err(|_| BAD.to_owned())?;
        return Ok(now.saturating_sub(crate::clock::millis(d)));
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let number = |t: &str, len: usize| -> Option<i64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD.to_owned());
    };
    let (y, m, d) = match (number(y, 4), number(m, 2), number(d, 2)) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err(BAD.to_owned()),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(BAD.to_owned()),
    };
    if !(1970..=9999).contains(&y) || !(1..=days_in).contains(&d) {
        return Err(BAD.to_owned());
    }
    let mut hms = [0i64; 3];
    if let Some(time) = time {
        let fields: Vec<&str> = time.split(':').collect();
        if !(2..=3).contains(&fields.len()) {
            return Err(BAD.to_owned());
        }
        for (slot, (field, max)) in hms.iter_mut().zip(fields.iter().zip([23, 59, 59])) {
            *slot = number(field, 2)
                .filter(|v| *v <= max)
                .ok_or_else(|| BAD.to_owned())?;
        }
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400) + hms[0] * 3600 + hms[1] * 60 + hms[2]) * 1000)
}

/// Writes a duration the way the config reads it, in the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= per && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// `database`: empty for `<data>/gatehouse.db`, a file path (relative to
/// the data directory), or a `postgres://` URL (its `sslmode` read by
/// `db::postgres::parse`: none or `disable`, or TLS checked in full).
pub(super) fn database(s: &str, data_dir: &Path) -> Result<Database, String> {
    if s.is_empty() {
        Ok(Database::Sqlite(data_dir.join("gatehouse.db")))
    } else if crate::db::postgres::is_url(s) {
        crate::db::postgres::parse(s)
            .map_err(|e| format!("is not a PostgreSQL URL gatehouse can use: {}", e.detail()))?;
        Ok(Database::Postgres(Secret(s.as_bytes().to_vec())))
    } else if s.contains("://") {
        Err(format!(
            "{:?} is neither a file path nor a postgres:// URL",
            s.split("://").next().unwrap_or("")
        ))
    } else {
        Ok(Database::Sqlite(data_dir.join(s)))
    }
}

/// `session_store`: `database` (or empty), or a `redis://` URL
/// (`rediss://` for TLS, checked in full).
pub(super) fn session_store(s: &str) -> Result<SessionStore, String> {
    if s == "database" || s.is_empty() {
        Ok(SessionStore::Database)
    } else if crate::db::redis::is_url(s) {
        crate::db::redis::check_url(s).map_err(|e| e.detail())?;
        Ok(SessionStore::Redis(Secret(s.as_bytes().to_vec())))
    } else {
        Err("must be `database` or a redis:// (or rediss://) URL".to_owned())
    }
}

/// How `check-config` shows a backend's CA file: the file, or what is
/// trusted without one.
pub(super) fn show_ca_file(file: Option<&Path>, tls: bool) -> String {
    match (file, tls) {
        (Some(path), _) => path.display().to_string(),
        (None, true) => "(none: Mozilla's roots, built in)".to_owned(),
        (None, false) => "(none: no TLS)".to_owned(),
    }
}

/// `store_prefix`: 1 to 64 printable ASCII characters, no spaces.
pub(super) fn store_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || s.bytes().any(|b| !b.is_ascii_graphic()) {
        Err("must be 1 to 64 printable ASCII characters without spaces".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// `listen`: an address with a port.
pub(super) fn listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:8080"))
}

/// `redirect_http`: empty for none, or an address with a port.
pub(super) fn redirect_http(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        Ok(None)
    } else {
        s.parse()
            .map(Some)
            .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:80"))
    }
}

/// `threads`: `auto` (8 per core, at least 8) or 1 to 1024.
pub(super) fn threads(s: &str) -> Result<usize, String> {
    if s == "auto" {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok((cores * 8).max(8))
    } else {
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| format!("{s:?} is not `auto` or a number from 1 to 1024"))
    }
}

/// `max_connections`: `auto` (`None`, derived at start) or 1 to 1000000.
pub(super) fn max_connections(s: &str) -> Result<Option<usize>, String> {
    if s == "auto" {
        Ok(None)
    } else {
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .map(Some)
            .ok_or_else(|| format!("{s:?} is not `auto` or a number from 1 to 1000000"))
    }
}

/// `max_connections_per_client`: `auto` (`None`, derived at start), `0`
/// (no cap) or up to 1000000.
pub(super) fn per_client(s: &str) -> Result<Option<usize>, String> {
    if s == "auto" {
        Ok(None)
    } else {
        s.parse::<usize>()
            .ok()
            .filter(|n| *n <= 1_000_000)
            .map(Some)
            .ok_or_else(|| format!("{s:?} is not `auto` or a number from 0 to 1000000"))
    }
}

/// A whole number in `range`, said as "a number from A to B".
pub(super) fn number_in<T>(s: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    let (low, high) = (range.start(), range.end());
    s.parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{s:?} is not a number from {low} to {high}"))
}

/// A whole number of at least 1.
pub(super) fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    s.parse::<T>()
        .ok()
        .filter(|n| *n >= T::from(1))
        .ok_or_else(|| format!("{s:?} is not a whole number of at least 1"))
}

/// `cookie.name`: letters, digits, `-`, `_`, `.`.
pub(super) fn cookie_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a valid cookie name"))
    }
}

/// `cookie.domain`: empty (host-only) or a domain name, lower-cased, any
/// leading dot dropped.
pub(super) fn cookie_domain(s: &str) -> Result<Option<String>, String> {
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        Ok(None)
    } else if s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
    {
        Ok(Some(s.to_ascii_lowercase()))
    } else {
        Err(format!("{s:?} is not a domain name"))
    }
}

/// `cookie.path`: starts with `/`, no control characters or `;`.
pub(super) fn cookie_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') && !s.bytes().any(|b| b.is_ascii_control() || b == b';') {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} must start with / and contain no ';'"))
    }
}

/// `cookie.secure`: `auto` (false) or `always` (true); `false`/`true`
/// are accepted as the same.
pub(super) fn cookie_secure(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" | "false" => Ok(false),
        "always" | "true" => Ok(true),
        _ => Err(format!("{s:?} is not `auto` or `always`")),
    }
}

/// How `cookie.secure` is written.
pub(super) fn show_cookie_secure(force_secure: bool) -> String {
    if force_secure { "always" } else { "auto" }.to_owned()
}

/// `cookie.same_site`: `lax`, `strict` or `none`.
pub(super) fn same_site(s: &str) -> Result<SameSite, String> {
    match s.to_ascii_lowercase().as_str() {
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        "none" => Ok(SameSite::None),
        _ => Err(format!("{s:?} is not `lax`, `strict` or `none`")),
    }
}

/// How `cookie.same_site` is written.
pub(super) fn show_same_site(same_site: SameSite) -> String {
    format!("{same_site:?}").to_ascii_lowercase()
}

/// One of `secrets`: at least 32 bytes.
pub(super) fn signing_secret(s: &str) -> Result<Secret, String> {
    if s.len() >= 32 {
        Ok(Secret(s.as_bytes().to_vec()))
    } else {
        Err("each secret must be at least 32 bytes long".to_owned())
    }
}

/// An optional secret such as `metrics_token`: empty is none.
pub(super) fn optional_secret(s: &str) -> Result<Option<Secret>, String> {
    Ok((!s.is_empty()).then(|| Secret(s.as_bytes().to_vec())))
}

/// `public_url`: empty, or an `http(s)://` URL without query or fragment;
/// a trailing slash is dropped.
pub(super) fn public_url(s: &str) -> Result<Option<String>, String> {
    let s = s.trim_end_matches('/');
    if s.is_empty() {
        Ok(None)
    } else if (s.starts_with("http://") || s.starts_with("https://"))
        && !s
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        Ok(Some(s.to_owned()))
    } else {
        Err(format!("{s:?} is not a URL like https://auth.lan"))
    }
}

/// `default_policy`: `signed_in`, `admins` or `deny`.
pub(super) fn access(s: &str) -> Result<Access, String> {
    match s {
        "signed_in" => Ok(Access::SignedIn),
        "admins" => Ok(Access::Admins),
        "deny" => Ok(Access::Nobody),
        _ => Err(format!("{s:?} is not `signed_in`, `admins` or `deny`")),
    }
}

/// A path setting such as `tls_cert`: empty is none, a relative path is
/// in the data directory.
pub(super) fn data_path(s: &str, data_dir: &Path) -> Option<PathBuf> {
    (!s.is_empty()).then(|| data_dir.join(s))
}

/// How many secrets are configured, never what they are.
pub(super) fn masked(n: usize) -> String {
    if n == 0 {
        "(none)".to_owned()
    } else {
        format!("*** ({n} configured)")
    }
}

/// A list, comma-separated, or `(none)`.
pub(super) fn none_if_empty(items: Vec<String>) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_instant_is_a_duration_ago_or_a_utc_date_and_nothing_else() {
        let now = 1_800_000_000_000;
        assert_eq!(super::parse_instant("1d", now), Ok(now - 86_400_000));
        assert_eq!(super::parse_instant("90s", now), Ok(now - 90_000));
        assert_eq!(super::parse_instant("1970-01-01", now), Ok(0));
        assert_eq!(
            super::parse_instant("2026-01-31", now),
            Ok(1_769_817_600_000)
        );
        assert_eq!(
            super::parse_instant("2026-01-31T12:00", now),
            Ok(1_769_817_600_000 + 12 * 3_600_000)
        );
        assert_eq!(
            super::parse_instant("2026-01-31 12:00:30Z", now),
            Ok(1_769_817_600_000 + 12 * 3_600_000 + 30_000)
        );
        assert_eq!(
            super::parse_instant("2024-02-29", now),
            Ok(1_709_164_800_000)
        );
        for bad in [
            "",
            "d",
            "1",
            "-1d",
            "1x",
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-01-32",
            "2026-1-5",
            "20260131",
            "2026-01-31T24:00",
            "2026-01-31T12:60",
            "2026-01-31T12",
            "2026-01-31T12:00:00:00",
            "1969-12-31",
            "99999-01-01",
            "2026-01-31T1a:00",
            "' OR 1=1 --",
            "２０２６-０１-３１",
            "1d; DROP TABLE audit",
            "99999999999999999999999999d",
            "1e9d",
        ] {
            assert!(super::parse_instant(bad, now).is_err(), "{bad:?}");
        }
        let long = "1".repeat(10_000) + "d";
        let message = super::parse_instant(&long, now).expect_err("long");
        assert!(!message.contains("1111"), "the text is not echoed");
    }
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "h",
            "2",
            "2 hours",
            "-1s",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_password("postgres://u:p@h/db?x=1"),
            "postgres://u:***@h/db?x=1"
        );
        assert_eq!(
            mask_password("redis://:p@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(mask_password("redis://h:6379"), "redis://h:6379");
        assert_eq!(mask_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_password("rediss://default:p@cache.lan:6380/0"),
            "rediss://default:***@cache.lan:6380/0"
        );
    }

    #[test]
    fn a_password_with_url_delimiters_in_it_is_masked_whole() {
        // Generated passwords of managed databases hold such characters;
        // the PostgreSQL client reads the password up to the first `@`.
        for (url, shown) in [
            (
                "postgres://u:pa?ss/w#rd@h/db?sslmode=verify-full",
                "postgres://u:***@h/db?sslmode=verify-full",
            ),
            ("postgres://u:a/b@h/db", "postgres://u:***@h/db"),
        ] {
            assert_eq!(mask_password(url), shown);
        }
    }

    #[test]
    fn a_password_parameter_is_masked() {
        assert_eq!(
            mask_password("postgres://u@h/db?sslmode=require&password=hunter2&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            mask_password("postgres://h/db?pass%77ord=hunter2"),
            "postgres://h/db?pass%77ord=***"
        );
    }

    #[test]
    fn numbers_out_of_range_say_the_range() {
        assert_eq!(number_in::<u32>("31", 4..=31), Ok(31));
        assert_eq!(
            number_in::<u32>("3", 4..=31),
            Err("\"3\" is not a number from 4 to 31".to_owned())
        );
        assert_eq!(
            number_in::<usize>("100001", 1..=100_000),
            Err("\"100001\" is not a number from 1 to 100000".to_owned())
        );
        assert_eq!(at_least_one::<u32>("1"), Ok(1));
        assert!(at_least_one::<usize>("0").is_err());
    }
}
