//! One error type for handlers, mapped to a status and a generic page in
//! one place. The user sees a short, fixed message; the log gets the detail.

use rouille::Response;

use crate::accounts::AccountError;
use crate::session::{SessionError, StoreError};
use crate::users::UserError;
use crate::users::password::PasswordError;

/// What handlers and the helpers they call return.
pub(super) type Result<T> = std::result::Result<T, WebError>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Malformed input (400); the message is safe to show.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A state-changing request without a valid CSRF token (403).
    #[error("missing or invalid CSRF token")]
    Csrf,
    /// Not allowed (403).
    #[error("forbidden")]
    Forbidden,
    /// No such page (404).
    #[error("not found")]
    NotFound,
    /// Wrong method for the path (405).
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// Body over the limit (413).
    #[error("request body too large")]
    TooLarge,
    /// Wrong content type (415).
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// Too many password checks queued (503).
    #[error("password checks are saturated")]
    Busy,
    /// A backend (PostgreSQL, Redis) could not be reached (503); logged.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The directory could not answer a directory user's sign-in (503).
    #[error("directory unavailable")]
    DirectoryUnavailable,
    /// Something on our side failed (500); logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WebError {
    /// A provider failure on a page (the database or the signing keys):
    /// `503` when a backend is away, else `500`; logged by the one error
    /// mapping. Not for a client's mistake, which the provider's own
    /// answer names.
    pub fn provider_fault(e: crate::oidc::OidcError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<SessionError> for WebError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) => e.into(),
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<UserError> for WebError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Password(PasswordError::Busy) => Self::Busy,
            UserError::Unavailable(m) => Self::Unavailable(m),
            UserError::DirectoryUnavailable(_) => Self::DirectoryUnavailable,
            UserError::Db(e) if e.is_unavailable() => Self::Unavailable(e.detail()),
            UserError::Db(e) => Self::Internal(e.detail()),
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<AccountError> for WebError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::User(e) => e.into(),
            AccountError::Store(e) => e.into(),
            AccountError::Session(e) => e.into(),
            AccountError::Grants(e) if e.is_unavailable() => Self::Unavailable(e.to_string()),
            AccountError::Grants(e) => Self::Internal(e.to_string()),
            AccountError::NoSuchSession => Self::NotFound,
            AccountError::UsernameTooLong => Self::BadRequest("The username is too long."),
            // Pages show a refusal in place; one that reaches here is a
            // forbidden action all the same.
            AccountError::Refused(_) => Self::Forbidden,
        }
    }
}

impl WebError {
    /// The status code this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Csrf | Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::TooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Busy | Self::Unavailable(_) | Self::DirectoryUnavailable => 503,
            Self::Internal(_) => 500,
        }
    }

    /// What the visitor is told.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::BadRequest(m) => m,
            Self::Csrf => {
                "This form has expired or did not come from this site. Go back, reload the page and try again."
            }
            Self::Forbidden => "You are not allowed to do that.",
            Self::NotFound => "There is nothing here.",
            Self::MethodNotAllowed(_) => "That method is not allowed here.",
            Self::TooLarge => "The request is too large.",
            Self::UnsupportedMediaType => "That content type is not accepted here.",
            Self::Busy => "Too many sign-ins at once. Try again in a moment.",
            Self::Unavailable(_) => {
                "The login service cannot use its storage just now. Try again in a moment."
            }
            Self::DirectoryUnavailable => {
                "The directory cannot be reached just now, so directory accounts cannot sign in. Try again in a moment; if it stays, tell an administrator."
            }
            Self::Internal(_) => "Something went wrong on our side. It has been logged.",
        }
    }

    /// The response: a small page with the public message.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let mut response =
            Response::html(super::views::error_page(status, self.public_message()).into_string())
                .with_status_code(status);
        match self {
            Self::MethodNotAllowed(allow) => {
                response = response.with_additional_header("Allow", allow);
            }
            Self::Busy | Self::Unavailable(_) | Self::DirectoryUnavailable => {
                response = response.with_additional_header("Retry-After", "1");
            }
            Self::TooLarge => {
                // The rest of the body is not read; do not reuse the connection.
                response = response.with_additional_header("Connection", "close");
            }
            _ => {}
        }
        response
    }
}
