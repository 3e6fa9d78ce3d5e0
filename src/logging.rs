//! Log lines: one per request and one per login event, on standard error.
//!
//! Lines are `<UTC time> <event> key=value ...`, one event per line, values
//! quoted when they could contain spaces, and never a password, session id
//! or cookie. The login lines are a stable format meant for fail2ban:
//!
//! ```text
//! 2026-11-26T12:00:00.000Z login ok user="alice" ip=192.0.2.7
//! 2026-11-26T12:00:00.000Z login failed user="alice" ip=192.0.2.7 reason=wrong_password
//! 2026-11-26T12:00:00.000Z login locked user="alice" ip=192.0.2.7 by=ip seconds=60
//! 2026-11-26T12:00:00.000Z login throttled user="alice" ip=192.0.2.7 retry_after=42
//! ```

use std::fmt::Write as _;

use crate::clock;

/// Formats Unix milliseconds as RFC 3339 UTC, e.g. `2026-11-26T12:00:00.000Z`.
pub fn rfc3339(ms: clock::Millis) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, ms);
    out
}

/// Appends `ms` as RFC 3339 UTC to `out`, without `format!` (this runs for
/// every request's log line).
#[inline]
fn push_rfc3339(out: &mut String, ms: clock::Millis) {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    push_digits(out, year, 4);
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
    out.push('T');
    push_digits(out, rem / 3600, 2);
    out.push(':');
    push_digits(out, rem / 60 % 60, 2);
    out.push(':');
    push_digits(out, rem % 60, 2);
    out.push('.');
    push_digits(out, ms.rem_euclid(1000), 3);
    out.push('Z');
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
#[inline]
fn push_digits(out: &mut String, n: i64, width: u32) {
    for place in (0..width).rev() {
        let d = n.div_euclid(10_i64.pow(place)).rem_euclid(10);
        out.push(char::from(b'0' + u8::try_from(d).unwrap_or(0)));
    }
}

/// Appends `n` in decimal.
#[inline]
pub fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends `ip` as `Display` writes it; an IPv4 address (nearly every
/// request's) without the formatting machinery, which cost about 1,300
/// instructions per request line.
#[inline]
pub fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_number(out, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `ip` as text (see [`push_ip`]).
#[inline]
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// Appends `d` in milliseconds with one decimal, rounded (`12.3`), without
/// formatting a float.
#[inline]
pub fn push_millis(out: &mut String, d: std::time::Duration) {
    let tenths = (d.as_micros() + 50) / 100;
    push_number(out, u64::try_from(tenths / 10).unwrap_or(u64::MAX));
    out.push('.');
    push_number(out, u64::try_from(tenths % 10).unwrap_or(0));
}

/// A value made safe for one log line: quoted, with quotes, backslashes and
/// control characters escaped, and cut to 128 characters.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    push_quoted(&mut out, value);
    out
}

/// Unicode format characters that change how text around them is shown:
/// bidi marks, embeddings, overrides and isolates, zero-width characters,
/// the byte order mark.
#[inline]
pub fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// Appends `value` to `out` as [`quote`] would write it.
#[inline]
pub fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    // Printable ASCII but a quote or backslash (most of most values) goes
    // as it is, at once; one byte is one character there.
    let plain = value
        .bytes()
        .take(128)
        .take_while(|&b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
        .count();
    out.push_str(value.get(..plain).unwrap_or_default());
    push_escaped_chars(out, value.get(plain..).unwrap_or_default(), 128 - plain);
    out.push('"');
}

/// Appends the first `limit` characters of `value` with quotes,
/// backslashes, controls and format characters escaped.
#[inline]
fn push_escaped_chars(out: &mut String, value: &str, limit: usize) {
    for c in value.chars().take(limit) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Controls could forge log lines; bidi overrides and
            // zero-width characters could make a name look like another
            // in a terminal or a log viewer.
            c if c.is_control() || is_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The message of a login event line: `login <outcome> user="..." ip=... <extra>`.
///
/// The username is quoted and escaped, and the IP always comes after it, so
/// a filter that reads the last `" ip=` on the line cannot be fooled by a
/// username that contains one.
pub fn login_message(outcome: &str, username: &str, ip: std::net::IpAddr, extra: &str) -> String {
    format!("login {outcome} user={} ip={ip}{extra}", quote(username))
}

/// Writes one line: the time, then `message` (after any request lines
/// still waiting, so lines keep their order).
pub fn line(message: &str) {
    let text = assemble(message);
    if let Some(behind) = behind() {
        let mut pending = behind.pending();
        pending.text.push_str(&text);
        pending.write_out();
    } else {
        emit(&text);
    }
}

/// Whether lines go through `eprint!` (see [`to_test_output`]).
static TEST_OUTPUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends every line through `eprint!`, which the test harness captures
/// (and shows with a failing test), for tests that run a server in their
/// own process. Not for a server: `eprint!` panics when stderr cannot be
/// written, and a panic in a request is a `500`.
pub fn to_test_output() {
    TEST_OUTPUT.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Writes `text` to stderr in one `write`. A log that cannot be written
/// (its pipe's reader gone, a full disk) loses the line, never the
/// request that logged it.
#[inline]
fn emit(text: &str) {
    if TEST_OUTPUT.load(std::sync::atomic::Ordering::Relaxed) {
        eprint!("{text}");
        return;
    }
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes a request's line, or holds it a moment to go out with others.
///
/// A line per request was one `write` per request: a third of the system
/// calls a kept-alive `/auth/verify` made beyond receiving and sending
/// (issue 22). With [`write_behind`] on (the server turns it on), a line
/// that comes when nothing was written for [`BEHIND`] goes out at once, as
/// before; one that comes sooner waits, with the others of that moment,
/// for one `write` at most [`BEHIND`] later. Any other line, and the
/// server's stop, write what waits first. What a crash can lose is the
/// request lines of the last [`BEHIND`]; login, error and every other line
/// are written at once.
#[inline]
pub fn request_line(message: &str) {
    let Some(behind) = behind() else {
        return line(message);
    };
    let text = assemble(message);
    let mut pending = behind.pending();
    let quiet = pending.text.is_empty() && pending.last_write.is_none_or(|t| t.elapsed() >= BEHIND);
    if quiet || pending.text.len() + text.len() > BEHIND_MAX {
        pending.text.push_str(&text);
        pending.write_out();
        return;
    }
    let first = pending.text.is_empty();
    pending.text.push_str(&text);
    if first {
        drop(pending);
        behind.wake.notify_one();
    }
}

/// How long a request line may wait for others.
pub const BEHIND: std::time::Duration = std::time::Duration::from_millis(50);

/// Waiting lines beyond this many bytes are written at once.
const BEHIND_MAX: usize = 32 * 1024;

/// Turns on [`request_line`]'s write-behind for the rest of the process
/// (the server does; commands write every line at once). Idempotent.
pub fn write_behind() {
    let _ = BEHIND_STATE.get_or_init(|| {
        let state = Behind {
            pending: std::sync::Mutex::new(Pending::default()),
            wake: std::sync::Condvar::new(),
        };
        // Without its thread nothing would write what waits: then every
        // line is written at once.
        std::thread::Builder::new()
            .name("gatehouse-log".into())
            .spawn(|| {
                // Started from inside the initialisation: waits for its end.
                if let Some(behind) = BEHIND_STATE.wait() {
                    behind.run();
                }
            })
            .ok()
            .map(|_| state)
    });
}

/// Writes every request line still waiting (at the server's stop).
pub fn flush() {
    if let Some(behind) = behind() {
        behind.pending().write_out();
    }
}

static BEHIND_STATE: std::sync::OnceLock<Option<Behind>> = std::sync::OnceLock::new();

#[inline]
fn behind() -> Option<&'static Behind> {
    BEHIND_STATE.get().and_then(Option::as_ref)
}

struct Behind {
    pending: std::sync::Mutex<Pending>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct Pending {
    text: String,
    last_write: Option<std::time::Instant>,
}

impl Pending {
    /// One `write` of everything waiting.
    fn write_out(&mut self) {
        if !self.text.is_empty() {
            emit(&self.text);
            self.text.clear();
            if self.text.capacity() > 4 * BEHIND_MAX {
                self.text.shrink_to(BEHIND_MAX);
            }
        }
        self.last_write = Some(std::time::Instant::now());
    }
}

impl Behind {
    #[inline]
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The writer of waiting lines: sleeps until some wait, then until
    /// [`BEHIND`] after the last write, then writes them.
    fn run(&self) {
        loop {
            let mut pending = self.pending();
            while pending.text.is_empty() {
                pending = self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            let due = pending.last_write.map_or(std::time::Duration::ZERO, |t| {
                BEHIND.saturating_sub(t.elapsed())
            });
            drop(pending);
            std::thread::sleep(due);
            self.pending().write_out();
        }
    }
}

/// The line as written: the time, `message`, a newline (and before it, a
/// warning when the system clock stepped back).
#[inline]
fn assemble(message: &str) -> String {
    let now = clock::now();
    let mut line = String::with_capacity(message.len() + 26);
    if let Some(back) = clock::take_step_back() {
        push_rfc3339(&mut line, now);
        line.push_str(&format!(
            " warning: the system clock stepped back by {} s; gatehouse keeps its own time \
             until the system clock catches up (restart it to follow the step)\n",
            back / 1000
        ));
    }
    push_rfc3339(&mut line, now);
    line.push(' ');
    line.push_str(message);
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_milliseconds_are_written_as_display_would() {
        for ip in [
            "0.0.0.0",
            "192.0.2.7",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let parsed: std::net::IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(parsed), parsed.to_string());
        }
        for (micros, text) in [
            (0, "0.0"),
            (49, "0.0"),
            (50, "0.1"),
            (1_234, "1.2"),
            (12_351, "12.4"),
        ] {
            let mut out = String::new();
            push_millis(&mut out, std::time::Duration::from_micros(micros));
            assert_eq!(out, text, "{micros} us");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_694_400_123), "2026-11-26T12:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_username_cannot_forge_the_ip_a_filter_reads() {
        let ip: std::net::IpAddr = "203.0.113.9".parse().expect("ip");
        let line = login_message("failed", "x\" ip=6.6.6.6 y", ip, " reason=unknown_user");
        // fail2ban's `user=".*" ip=<HOST>` is greedy: it takes the last `" ip=`.
        let last = line.rfind("\" ip=").expect("ip field");
        assert!(line[last..].starts_with("\" ip=203.0.113.9 "), "{line}");
    }

    #[test]
    fn quoting_keeps_a_value_on_one_line() {
        assert_eq!(quote("alice"), "\"alice\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("evil\nlogin ok"), "\"evil\\u{a}login ok\"");
        assert_eq!(quote(&"x".repeat(500)).len(), 130);
    }

    #[test]
    fn quoting_shows_bidi_and_zero_width_characters() {
        assert_eq!(quote("alice\u{202e}"), "\"alice\\u{202e}\"");
        assert_eq!(quote("\u{200b}bob"), "\"\\u{200b}bob\"");
        assert_eq!(quote("\u{2066}x\u{2069}"), "\"\\u{2066}x\\u{2069}\"");
        assert_eq!(quote("\u{85}x"), "\"\\u{85}x\"");
    }

    /// The quoting a character at a time, as all of a value went before
    /// its printable ASCII start went at once.
    fn quoted_a_character_at_a_time(value: &str) -> String {
        let mut out = String::from("\"");
        push_escaped_chars(&mut out, value, 128);
        out.push('"');
        out
    }

    #[test]
    fn a_plain_start_is_cut_and_escaped_like_the_rest() {
        for value in [
            "x".repeat(127) + "\"tail",
            "x".repeat(128) + "\"",
            "x".repeat(126) + "é\u{202e}zz",
            "plain then \\ and \u{7f}".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                quote(&value),
                quoted_a_character_at_a_time(&value),
                "{value:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn quoting_is_the_same_as_a_character_at_a_time(value in "\\PC{0,200}|[ -~]{0,200}|[ -~]{0,140}\\PC{0,20}") {
            proptest::prop_assert_eq!(quote(&value), quoted_a_character_at_a_time(&value));
        }
    }
}
