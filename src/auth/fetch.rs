//! Fetch metadata (`Sec-Fetch-Site`, `-Mode`, `-Dest`): which requests to
//! gatehouse's own pages a browser sent as a top-level navigation.
//!
//! The threat: an app proxied in prefix mode (`/apps/<name>/`) is the same
//! origin as gatehouse, so a script it serves can `fetch("/admin")`, read
//! the CSRF token out of the page and post an admin form with it. A CSRF
//! token cannot tell that script from the admin. The browser can: it labels
//! every request with how it was made, in headers a script cannot set or
//! remove (the `Sec-` prefix is forbidden to `fetch` and XHR). A form the
//! person submits is `Mode: navigate`, `Dest: document`; a script's `fetch`
//! or XHR is `Mode: cors`/`same-origin`/`no-cors` with `Dest: empty`.
//!
//! Requests without these headers (curl, scripts, browsers older than
//! Chrome 76, Firefox 90, Safari 16.4) are judged as before, by the CSRF
//! token alone: their absence proves nothing, and refusing it would lock
//! out every non-browser client. `Sec-Fetch-User` is not required either:
//! Safari does not send it, so insisting on it would refuse every form
//! Safari submits. See docs/SECURITY.md for what this leaves open.

/// What the browser said about how a request was made; `None` where the
/// header is missing.
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchMetadata<'a> {
    /// `Sec-Fetch-Site`: `same-origin`, `same-site`, `cross-site` or `none`.
    pub site: Option<&'a str>,
    /// `Sec-Fetch-Mode`: `navigate`, `cors`, `no-cors`, `same-origin`, `websocket`.
    pub mode: Option<&'a str>,
    /// `Sec-Fetch-Dest`: `document`, `iframe`, `empty`, `image`, ...
    pub dest: Option<&'a str>,
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A script's request (fetch, XHR, an image, ...), not a navigation.
    NotNavigation,
    /// A navigation into a frame, not the top-level window.
    NotDocument,
    /// A form posted from another origin (a sibling host counts).
    OtherOrigin,
}

fn is(value: Option<&str>, wanted: &[&str]) -> bool {
    value.is_none_or(|v| wanted.iter().any(|w| v.trim().eq_ignore_ascii_case(w)))
}

impl FetchMetadata<'_> {
    /// Whether a state-changing form POST may proceed: a top-level
    /// navigation started from one of gatehouse's own pages (`same-origin`)
    /// or by the browser itself (`none`, e.g. re-submitting after a reload).
    ///
    /// # Errors
    ///
    /// The first rule the request breaks, where the browser said so.
    pub fn check_form_post(&self) -> Result<(), Refusal> {
        if !is(self.mode, &["navigate"]) {
            return Err(Refusal::NotNavigation);
        }
        if !is(self.dest, &["document"]) {
            return Err(Refusal::NotDocument);
        }
        if !is(self.site, &["same-origin", "none"]) {
            return Err(Refusal::OtherOrigin);
        }
        Ok(())
    }

    /// Whether a page that carries the session's CSRF token (`/admin`,
    /// `/account`, ...) may be shown: only to a top-level navigation, from
    /// anywhere (a link in a mail is fine), never to a script's read.
    ///
    /// # Errors
    ///
    /// The rule the request breaks, where the browser said so.
    pub fn check_page(&self) -> Result<(), Refusal> {
        if !is(self.mode, &["navigate"]) {
            return Err(Refusal::NotNavigation);
        }
        if !is(self.dest, &["document"]) {
            return Err(Refusal::NotDocument);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(site: &'a str, mode: &'a str, dest: &'a str) -> FetchMetadata<'a> {
        FetchMetadata {
            site: Some(site),
            mode: Some(mode),
            dest: Some(dest),
        }
    }

    #[test]
    fn requests_without_fetch_metadata_are_left_to_the_csrf_token() {
        assert_eq!(FetchMetadata::default().check_form_post(), Ok(()));
        assert_eq!(FetchMetadata::default().check_page(), Ok(()));
    }

    #[test]
    fn a_form_submitted_on_our_own_page_passes() {
        assert_eq!(
            meta("same-origin", "navigate", "document").check_form_post(),
            Ok(())
        );
        assert_eq!(
            meta("none", "navigate", "document").check_form_post(),
            Ok(())
        );
        assert_eq!(
            meta("Same-Origin", " navigate", "DOCUMENT").check_form_post(),
            Ok(())
        );
    }

    #[test]
    fn a_scripts_fetch_or_xhr_is_refused_even_from_the_same_origin() {
        for mode in ["cors", "same-origin", "no-cors", "websocket"] {
            assert_eq!(
                meta("same-origin", mode, "empty").check_form_post(),
                Err(Refusal::NotNavigation),
                "{mode}"
            );
            assert_eq!(
                meta("same-origin", mode, "empty").check_page(),
                Err(Refusal::NotNavigation),
                "{mode}"
            );
        }
        // One header alone is enough to tell.
        let only_mode = FetchMetadata {
            mode: Some("cors"),
            ..FetchMetadata::default()
        };
        assert_eq!(only_mode.check_form_post(), Err(Refusal::NotNavigation));
        let only_dest = FetchMetadata {
            dest: Some("empty"),
            ..FetchMetadata::default()
        };
        assert_eq!(only_dest.check_page(), Err(Refusal::NotDocument));
    }

    #[test]
    fn a_navigation_into_a_frame_is_refused() {
        assert_eq!(
            meta("same-origin", "navigate", "iframe").check_form_post(),
            Err(Refusal::NotDocument)
        );
        assert_eq!(
            meta("same-origin", "navigate", "iframe").check_page(),
            Err(Refusal::NotDocument)
        );
    }

    #[test]
    fn a_form_posted_from_another_site_or_sibling_host_is_refused() {
        for site in ["cross-site", "same-site", "bogus"] {
            assert_eq!(
                meta(site, "navigate", "document").check_form_post(),
                Err(Refusal::OtherOrigin),
                "{site}"
            );
        }
    }

    #[test]
    fn a_link_from_elsewhere_may_open_a_page() {
        assert_eq!(
            meta("cross-site", "navigate", "document").check_page(),
            Ok(())
        );
    }
}
