//! HTML views: pure functions from plain data to maud `Markup`.
//!
//! No inline scripts or styles: the Content-Security-Policy forbids them,
//! and every page reads fine without the stylesheet.

use maud::{DOCTYPE, Markup, html};

/// The signed-in user as pages show them.
pub struct Viewer<'a> {
    /// Name to show.
    pub username: &'a str,
}

/// The shared layout.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · gatehouse" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header.top {
                    a.brand href="/" { "gatehouse" }
                    nav {
                        @if let Some(v) = viewer {
                            span.muted id="signed-in-as" { (v.username) }
                            a href="/logout" id="nav-logout" { "Sign out" }
                        } @else {
                            a href="/login" { "Sign in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// What the login page shows.
pub struct LoginView<'a> {
    /// Where to go after signing in.
    pub next: &'a str,
    /// The CSRF token for the form.
    pub csrf: &'a str,
    /// The username to refill after a failure.
    pub username: &'a str,
    /// An error to show.
    pub error: Option<&'a str>,
}

/// `GET /login`.
pub fn login_page(v: &LoginView<'_>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                @if let Some(e) = v.error {
                    p.error id="login-error" role="alert" { (e) }
                }
                form id="login-form" method="post" action="/login" {
                    input type="hidden" name="csrf" value=(v.csrf);
                    input type="hidden" name="next" value=(v.next);
                    label for="username" { "Username" }
                    input type="text" id="username" name="username" value=(v.username)
                        autocomplete="username" autocapitalize="none" spellcheck="false"
                        maxlength="64" required autofocus[v.username.is_empty()];
                    label for="password" { "Password" }
                    input type="password" id="password" name="password"
                        autocomplete="current-password" required autofocus[!v.username.is_empty()];
                    label.check for="remember" {
                        input type="checkbox" id="remember" name="remember" value="1";
                        "Remember me on this device"
                    }
                    button type="submit" id="login-submit" { "Sign in" }
                }
            }
        },
    )
}

/// What the dashboard shows.
pub struct DashboardView<'a> {
    /// Who is signed in.
    pub username: &'a str,
    /// This session's visit count.
    pub visits: i64,
}

/// `GET /`.
pub fn dashboard_page(v: &DashboardView<'_>) -> Markup {
    let viewer = Viewer {
        username: v.username,
    };
    layout(
        "Home",
        Some(&viewer),
        html! {
            section.card {
                h1 id="welcome" { "Welcome, " (v.username) }
                p {
                    "You have opened this page "
                    strong id="visits" { (v.visits) }
                    @if v.visits == 1 { " time" } @else { " times" }
                    " in this session."
                }
            }
        },
    )
}

/// `GET /logout`: one button, so a link or image cannot sign anyone out.
pub fn logout_page(username: &str, csrf: &str) -> Markup {
    let viewer = Viewer { username };
    layout(
        "Sign out",
        Some(&viewer),
        html! {
            section.card.narrow {
                h1 { "Sign out?" }
                p { "You are signed in as " strong { (username) } "." }
                form id="logout-form" method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" id="logout-submit" { "Sign out" }
                }
            }
        },
    )
}

/// An error page with a fixed, generic message.
pub fn error_page(status: u16, message: &str) -> Markup {
    layout(
        &status.to_string(),
        None,
        html! {
            section.card.narrow {
                h1 { "Error " (status) }
                p.error id="error-message" { (message) }
                p { a href="/" { "Back to the start" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_input_is_escaped() {
        let page = login_page(&LoginView {
            next: "/\"><script>x</script>",
            csrf: "t",
            username: "<b>bob</b>",
            error: Some("bad"),
        })
        .into_string();
        assert!(!page.contains("<script>x"));
        assert!(!page.contains("<b>bob"));
        assert!(page.contains("&lt;b&gt;bob"));
    }

    #[test]
    fn pages_carry_no_inline_script_or_style() {
        let pages = [
            login_page(&LoginView {
                next: "/",
                csrf: "t",
                username: "",
                error: None,
            }),
            dashboard_page(&DashboardView {
                username: "a",
                visits: 2,
            }),
            logout_page("a", "t"),
            error_page(404, "x"),
        ];
        for p in pages {
            let s = p.into_string();
            assert!(!s.contains("<script"), "{s}");
            assert!(!s.contains("<style"), "{s}");
            assert!(!s.contains(" style="), "{s}");
        }
    }
}
