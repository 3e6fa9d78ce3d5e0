//! The layout every page shares: the head (stylesheet, icon, viewport),
//! the top bar with the navigation a viewer may use, and the main column
//! (wide for the pages whose tables need the room).

use maud::{DOCTYPE, Markup, html};

use super::Viewer;

/// The shared layout.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    frame(title, viewer, false, None, body)
}

/// The shared layout with a wide main column, for pages of wide tables
/// (the admin area).
pub fn wide_layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    frame(title, viewer, true, None, body)
}

/// The shared layout with `head` added to the head (a page that moves on
/// by itself: its `meta http-equiv="refresh"`).
pub fn layout_with_head(
    title: &str,
    viewer: Option<&Viewer<'_>>,
    head: Markup,
    body: Markup,
) -> Markup {
    frame(title, viewer, false, Some(head), body)
}

fn frame(
    title: &str,
    viewer: Option<&Viewer<'_>>,
    wide: bool,
    head: Option<Markup>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · gatehouse" }
                link rel="stylesheet" href="/assets/style.css";
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                @if let Some(head) = head {
                    (head)
                }
            }
            body {
                header.top {
                    a.brand href="/" { "gatehouse" }
                    nav aria-label="Main" {
                        @if let Some(v) = viewer {
                            a href="/" { "Home" }
                            a href="/account" id="nav-account" { "Account" }
                            @if v.is_admin {
                                a href="/admin" id="nav-admin" { "Admin" }
                            }
                            a href="/logout" id="nav-logout" { "Sign out" }
                            span.muted id="signed-in-as" { (v.username) }
                        } @else {
                            a href="/login" { "Sign in" }
                        }
                    }
                }
                main class=[wide.then_some("wide")] { (body) }
            }
        }
    }
}
