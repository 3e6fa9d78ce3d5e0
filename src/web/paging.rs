//! Long lists a page at a time: which page a query asks for, and that
//! page of the rows with where it is.

use rouille::Request;

use super::error::{Result, WebError};
use super::views;

/// Rows per page in the account and admin lists: a user with many
/// sessions, or a deployment with many users, must not make one page huge.
pub(super) const PAGE_SIZE: usize = 50;

/// The 1-based page a query parameter asks for; absent means the first.
///
/// # Errors
///
/// A value that is not a whole number from 1 up (400).
pub(super) fn page_param(request: &Request, name: &str) -> Result<usize> {
    match request.get_param(name) {
        None => Ok(1),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(WebError::BadRequest(
                "The page must be a whole number from 1 up.",
            )),
    }
}

/// One page of `items` (a page past the end shows the last) and where it is.
pub(super) fn paged<T>(items: Vec<T>, page: usize) -> (Vec<T>, views::Pager) {
    let total = items.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let rows = items
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    (rows, views::Pager { page, pages, total })
}
