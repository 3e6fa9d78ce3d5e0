//! The confirm step before what cannot be undone (deleting a user,
//! removing someone's second factors, removing a passkey, turning off an
//! authenticator): one page that says what will happen, one button that
//! does it, and a way back. It works without script.

use maud::{Markup, html};

use super::{Viewer, csrf_field, layout};

/// What a confirm step shows.
pub struct ConfirmStep<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// The ids' stem: the form is `{id}-form`, its button `{id}-submit`.
    pub id: &'a str,
    /// The question ("Delete bob?").
    pub title: &'a str,
    /// What will happen, and that it cannot be undone.
    pub explain: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The action's own fields.
    pub fields: Vec<(&'a str, &'a str)>,
    /// CSRF token.
    pub csrf: &'a str,
    /// The button's words.
    pub button: &'a str,
    /// Where "Cancel" goes.
    pub back: &'a str,
}

/// A confirm step.
pub fn confirm_step_page(v: &ConfirmStep<'_>) -> Markup {
    layout(
        v.title,
        Some(&v.viewer),
        html! {
            section.card.narrow.confirm {
                h1 { (v.title) }
                p { (v.explain) }
                form id={ (v.id) "-form" } method="post" action=(v.action) {
                    (csrf_field(v.csrf))
                    @for (name, value) in &v.fields {
                        input type="hidden" name=(name) value=(value);
                    }
                    button.danger.solid type="submit" id={ (v.id) "-submit" } { (v.button) }
                }
                p { a href=(v.back) id="cancel" { "Cancel" } }
            }
        },
    )
}
