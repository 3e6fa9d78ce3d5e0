//! `/admin/audit`: the audit log, filtered by user, kind, outcome and time,
//! 50 a page, newest first; and `/admin/audit.jsonl`, the same filter as
//! JSON lines, streamed a batch at a time. Administrators only (`403` for
//! anyone else). Reading changes nothing: no confirm step.
//!
//! The query is checked before anything is read: a name longer than any
//! username, a kind or an outcome this version does not know, a time that
//! is neither a duration nor a UTC date, or a cursor that is not two whole
//! numbers is a `400` with a fixed message; everything else is a bound
//! value (never part of a statement), so at worst it matches nothing.

use std::io::Read;

use rouille::{Request, Response, ResponseBody};

use crate::auth::proxy::Client;
use crate::clock;
use crate::users::audit::{Cursor, Export, Filter, Kind, MAX_NAME, Outcome, PAGE_SIZE};
use crate::web::device::audit_rows;
use crate::web::error::{Result, WebError};
use crate::web::respond::{encode, html};
use crate::web::signed_in::viewer;
use crate::web::state::State;
use crate::web::views::{self, AuditFilterView, AuditView};

use super::act::as_admin;

/// The longest value of a query parameter read: past it, a `400`.
const MAX_PARAM: usize = 64;

/// A query parameter, without the plain spaces around it; empty is none.
fn param(request: &Request, name: &str) -> Result<Option<String>> {
    match request.get_param(name) {
        None => Ok(None),
        Some(v) if v.chars().count() > MAX_PARAM => Err(WebError::BadRequest(
            "A filter is longer than any value it could take.",
        )),
        Some(v) => {
            let v = v.trim_matches(' ');
            Ok((!v.is_empty()).then(|| v.to_owned()))
        }
    }
}

/// The filter the query asks for, and its values as given (for the form
/// and the links).
fn filter_of(request: &Request) -> Result<(Filter, AuditFilterView)> {
    let now = clock::now();
    let user = param(request, "user")?;
    if user.as_ref().is_some_and(|u| u.chars().count() > MAX_NAME) {
        return Err(WebError::BadRequest(
            "The user is longer than any username.",
        ));
    }
    let kind = param(request, "kind")?;
    let outcome = param(request, "outcome")?;
    let since = param(request, "since")?;
    let until = param(request, "until")?;
    let time = |t: &Option<String>| {
        t.as_deref()
            .map(|t| crate::config::parse_instant(t, now))
            .transpose()
            .map_err(|_| {
                WebError::BadRequest(
                    "A time is a duration ago (7d, 12h) or a UTC date (2026-01-31, 2026-01-31T12:00).",
                )
            })
    };
    let filter = Filter {
        user: user.clone(),
        kind: kind
            .as_deref()
            .map(|k| Kind::parse(k).ok_or(WebError::BadRequest("No such kind of event.")))
            .transpose()?,
        outcome: outcome
            .as_deref()
            .map(|o| Outcome::parse(o).ok_or(WebError::BadRequest("No such outcome.")))
            .transpose()?,
        since: time(&since)?,
        until: time(&until)?,
        after: param(request, "after")?
            .map(|c| Cursor::parse(&c).ok_or(WebError::BadRequest("No such page.")))
            .transpose()?,
        subject: None,
    };
    let shown = AuditFilterView {
        user: user.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        outcome: outcome.unwrap_or_default(),
        since: since.unwrap_or_default(),
        until: until.unwrap_or_default(),
    };
    Ok((filter, shown))
}

/// The query of `shown` (every filter given, no page), for the links.
fn query_of(shown: &AuditFilterView) -> String {
    [
        ("user", &shown.user),
        ("kind", &shown.kind),
        ("outcome", &shown.outcome),
        ("since", &shown.since),
        ("until", &shown.until),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&")
}

/// `GET /admin/audit`.
pub(super) fn get_audit(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let (filter, shown) = filter_of(request)?;
        let mut rows = state.users.audit().page(&filter, PAGE_SIZE + 1)?;
        let more = rows.len() > PAGE_SIZE;
        rows.truncate(PAGE_SIZE);
        let query = query_of(&shown);
        let at = |extra: String| {
            let q: Vec<&str> = [query.as_str(), extra.as_str()]
                .into_iter()
                .filter(|q| !q.is_empty())
                .collect();
            if q.is_empty() {
                "/admin/audit".to_owned()
            } else {
                format!("/admin/audit?{}", q.join("&"))
            }
        };
        let older = rows
            .last()
            .filter(|_| more)
            .map(|last| at(format!("after={}", last.cursor())));
        let newest = filter.after.is_some().then(|| at(String::new()));
        let export = if query.is_empty() {
            "/admin/audit.jsonl".to_owned()
        } else {
            format!("/admin/audit.jsonl?{query}")
        };
        Ok(html(views::audit_page(&AuditView {
            viewer: viewer(&s.user),
            rows: audit_rows(&rows),
            filter: shown,
            kinds: Kind::ALL.iter().map(|k| (k.as_str(), k.label())).collect(),
            outcomes: Outcome::ALL.iter().map(|o| o.as_str()).collect(),
            older,
            newest,
            export,
            now: clock::now(),
        })))
    })
}

/// `GET /admin/audit.jsonl`: every row of the filter (from the cursor, if
/// one is given), one JSON object a line, newest first, streamed.
pub(super) fn get_audit_jsonl(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    as_admin(state, request, client, |_| {
        let (filter, _) = filter_of(request)?;
        let lines = Lines {
            rows: state.users.audit().export(filter),
            buf: Vec::new(),
            pos: 0,
        };
        Ok(Response {
            status_code: 200,
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/x-ndjson; charset=utf-8".into(),
                ),
                (
                    "Content-Disposition".into(),
                    "attachment; filename=\"gatehouse-audit.jsonl\"".into(),
                ),
                ("Cache-Control".into(), "no-store".into()),
            ],
            data: ResponseBody::from_reader(lines),
            upgrade: None,
        })
    })
}

/// The export as bytes: a line per row, read from the database a batch at
/// a time as the client takes them. A read that fails ends the stream
/// short (logged): the client sees a chunked body that never finished,
/// never a partial line taken for the whole.
struct Lines {
    rows: Export,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Lines {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            match self.rows.next() {
                None => return Ok(0),
                Some(Ok(entry)) => {
                    serde_json::to_writer(&mut self.buf, &entry.to_json())?;
                    self.buf.push(b'\n');
                }
                Some(Err(e)) => {
                    crate::logging::line(&format!(
                        "audit export failed detail={}",
                        crate::logging::quote(&e.to_string())
                    ));
                    return Err(std::io::Error::other("the audit log could not be read"));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
