//! `audit`: the audit log on the configured store (the SQLite file, or the
//! PostgreSQL database every instance shares), newest first: a table for
//! people, or with `--json` one object a line as `/admin/audit.jsonl`
//! writes them.

use std::io::Write;

use clap::Args;

use crate::logging::rfc3339;
use crate::users::audit::{Filter, Kind, Outcome};

use super::{CliError, Global, stores};

#[derive(Args, Debug)]
pub(super) struct AuditArgs {
    /// Only events this user did, or that were done to them (any case).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Only events since then: a duration ago (`1d`, `12h`) or a UTC date
    /// and time (`2026-01-31`, `2026-01-31T12:00`).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only events before then (the same forms as --since).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Only events of this kind (`sign_in`, `user_created`, ...; an
    /// unknown one lists them).
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Only events with this outcome: `ok`, `failed` or `pending`.
    #[arg(long, value_name = "OUTCOME")]
    outcome: Option<String>,
    /// At most this many events, newest first (0: every one).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// Print one JSON object a line (all fields) instead of a table.
    #[arg(long)]
    json: bool,
}

/// The filter the flags ask for.
fn filter_of(args: &AuditArgs) -> Result<Filter, CliError> {
    let now = crate::clock::now();
    let time = |flag: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| crate::config::parse_instant(v, now))
            .transpose()
            .map_err(|e| CliError::Usage(format!("--{flag} {e}")))
    };
    let kind = match args.kind.as_deref() {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            CliError::Usage(format!(
                "--kind {k:?} is no kind of event; one of: {}",
                all.join(", ")
            ))
        })?),
    };
    let outcome = match args.outcome.as_deref() {
        None => None,
        Some(o) => Some(Outcome::parse(o).ok_or_else(|| {
            CliError::Usage(format!("--outcome {o:?}: one of ok, failed, pending"))
        })?),
    };
    Ok(Filter {
        user: args
            .user
            .as_deref()
            .map(|u| crate::users::trim_spaces(u).to_owned()),
        kind,
        outcome,
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        after: None,
        subject: None,
    })
}

pub(super) fn audit(global: &Global, args: &AuditArgs) -> Result<(), CliError> {
    let filter = filter_of(args)?;
    let (users, _, _) = stores(global)?;
    let limit = if args.limit == 0 {
        usize::MAX
    } else {
        args.limit
    };
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(
            out,
            "{:<24} {:<20} {:<7} {:<16} {:<16} {:<16} DETAIL",
            "AT", "KIND", "OUTCOME", "BY", "USER", "IP"
        )?;
    }
    let mut shown = 0;
    for entry in users.audit().export(filter).take(limit) {
        let e = entry?;
        if args.json {
            serde_json::to_writer(&mut out, &e.to_json()).map_err(std::io::Error::other)?;
            writeln!(out)?;
        } else {
            let mut detail = e.detail.clone();
            if let Some(ua) = &e.user_agent {
                if !detail.is_empty() {
                    detail.push(' ');
                }
                detail.push_str(&format!("agent={ua:?}"));
            }
            writeln!(
                out,
                "{:<24} {:<20} {:<7} {:<16} {:<16} {:<16} {}",
                rfc3339(e.at),
                e.kind,
                e.outcome,
                e.actor.as_deref().unwrap_or("-"),
                e.subject.as_deref().unwrap_or("-"),
                e.ip.as_deref().unwrap_or("-"),
                detail
            )?;
        }
        shown += 1;
    }
    if !args.json {
        writeln!(out, "{shown} event(s)")?;
    }
    Ok(())
}
