//! The device a session was made on, read loosely from its user agent
//! ("Firefox on Linux"), and the session rows and audit rows the account
//! and admin lists show.

use super::views::{AuditRow, SessionRow};
use crate::session::{Record, SessionKey};
use crate::users::audit::{Entry, label_of};

/// "Firefox on Linux", read loosely from a User-Agent.
pub(super) fn device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") || ua.contains("Opera") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chromium/") {
        "Chromium"
    } else if ua.contains("Chrome/") || ua.contains("CriOS/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if ua.starts_with("curl/") {
        "curl"
    } else {
        ua.split(['/', ' '])
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("Unknown browser")
    };
    let os = if ua.contains("iPhone") || ua.contains("iPad") {
        Some("iOS")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Linux") {
        Some("Linux")
    } else {
        None
    };
    let browser: String = browser.chars().take(40).collect();
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser,
    }
}

/// Rows for a session table; `names` maps user ids to names (admin list).
pub(super) fn session_rows(
    records: &[Record],
    current: &SessionKey,
    name_of: impl Fn(Option<i64>) -> Option<String>,
) -> Vec<SessionRow> {
    records
        .iter()
        .map(|r| SessionRow {
            handle: r.key.handle(),
            username: name_of(r.user_id),
            device: device(r.user_agent.as_deref()),
            ip: r.ip.clone().unwrap_or_else(|| "-".to_owned()),
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            current: &r.key == current,
            persistent: r.persistent,
        })
        .collect()
}

/// Rows for an audit table.
pub(super) fn audit_rows(entries: &[Entry]) -> Vec<AuditRow> {
    entries
        .iter()
        .map(|e| AuditRow {
            id: e.id,
            at: e.at,
            kind: e.kind.clone(),
            label: label_of(&e.kind).to_owned(),
            outcome: e.outcome.clone(),
            actor: e.actor.clone(),
            subject: e.subject.clone(),
            ip: e.ip.clone().unwrap_or_else(|| "-".to_owned()),
            device: match (&e.user_agent, &e.ip) {
                (None, None) => "-".to_owned(),
                (ua, _) => device(ua.as_deref()),
            },
            user_agent: e.user_agent.clone().unwrap_or_default(),
            detail: e.detail.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_from_the_user_agent() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            ("curl/8.5.0", "curl"),
            ("ureq/3.0", "ureq"),
        ];
        for (ua, expected) in cases {
            assert_eq!(device(Some(ua)), expected, "{ua}");
        }
        assert_eq!(device(None), "Unknown device");
    }
}
