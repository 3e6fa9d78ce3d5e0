//! Personal access tokens made and revoked, by their user (the account
//! page), an administrator (the admin page) or the box's owner (the
//! command line); each recorded in the audit log. The token's rules are
//! `users::tokens`'.

use crate::clock::Millis;
use crate::users::User;
use crate::users::tokens::{NewToken, Token, TokenId};

use super::*;

impl Accounts<'_> {
    /// Makes a token for `user`: the token (shown once, never stored) and
    /// its row.
    ///
    /// # Errors
    ///
    /// A bad name, too many tokens, or database failures (see
    /// [`crate::users::tokens::Tokens::create`]).
    pub fn create_token(
        &self,
        user: &User,
        new: &NewToken,
        now: Millis,
    ) -> Result<(String, Token), AccountError> {
        let (secret, token) = self.users.tokens().create(user, new, now)?;
        let apps = if token.apps.is_empty() {
            "*".to_owned()
        } else {
            token.apps.join(",")
        };
        self.record(
            Kind::TokenCreated,
            Some(&user.username),
            format!(
                "token={} {} {}",
                token.id,
                super::field("name", &token.name),
                super::field("apps", &apps)
            ),
        );
        Ok((secret, token))
    }

    /// Revokes the token `id`: only `owner`'s when given (the account
    /// page), anyone's else.
    ///
    /// # Errors
    ///
    /// [`crate::users::UserError::NoSuchToken`] (also for another user's), or database
    /// failures.
    pub fn revoke_token(&self, id: TokenId, owner: Option<&User>) -> Result<(), AccountError> {
        // Whose it is, for the record: the owner, or found among all.
        let whose = match owner {
            Some(u) => Some(u.username.clone()),
            None => self
                .users
                .tokens()
                .all()?
                .into_iter()
                .find(|l| l.token.id == id)
                .map(|l| l.username),
        };
        self.users.tokens().revoke(id, owner.map(|u| u.id))?;
        self.record(Kind::TokenRevoked, whose.as_deref(), format!("token={id}"));
        Ok(())
    }
}
