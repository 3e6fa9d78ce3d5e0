//! The error page: a status and a fixed, generic message.

use maud::{Markup, html};

use super::layout;

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
