//! The start page: the welcome, this session's visit count, the apps.

use maud::{Markup, html};

use super::{Viewer, layout, messages};

/// A link on the dashboard.
pub struct AppLink<'a> {
    /// Shown name.
    pub name: &'a str,
    /// Where it goes.
    pub href: String,
    /// A line about it.
    pub description: Option<&'a str>,
    /// Its icon (a path on gatehouse's origin).
    pub icon: Option<&'a str>,
}

/// What the dashboard shows.
pub struct DashboardView<'a> {
    /// Who is signed in.
    pub viewer: Viewer<'a>,
    /// This session's visit count.
    pub visits: i64,
    /// Apps the user may open.
    pub apps: Vec<AppLink<'a>>,
    /// A message after an action.
    pub notice: Option<&'a str>,
}

/// `GET /`.
pub fn dashboard_page(v: &DashboardView<'_>) -> Markup {
    layout(
        "Home",
        Some(&v.viewer),
        html! {
            (messages(v.notice, None))
            section.card {
                h1 id="welcome" { "Welcome, " (v.viewer.username) }
                p {
                    "You have opened this page "
                    strong id="visits" { (v.visits) }
                    @if v.visits == 1 { " time" } @else { " times" }
                    " in this session."
                }
            }
            section.card {
                h2 { "Your apps" }
                @if v.apps.is_empty() {
                    p.muted id="no-apps" { "No apps are set up for you yet." }
                } @else {
                    ul id="apps" {
                        @for app in &v.apps {
                            li.app {
                                a href=(app.href) {
                                    @if let Some(icon) = app.icon {
                                        img.app-icon src=(icon) alt="" width="24" height="24";
                                    }
                                    (app.name)
                                }
                                @if let Some(d) = app.description {
                                    span.muted.app-description { " " (d) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
