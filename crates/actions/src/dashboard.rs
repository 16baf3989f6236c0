//! Dashboard links: what the MLM platform hands its already-authenticated user so that the
//! browser can open Mentorstream's pages for one partner, in one role, until it expires.

use serde::{Deserialize, Serialize};

use crate::TokenKind;

/// What a dashboard link lets its partner see, beyond their own page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Only their own page.
    Partner,
    /// Also their mentor page and their current mentees' pages.
    Mentor,
    /// Also their team, every team inside it and every page of a partner in it.
    Leader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Partner => "PARTNER",
            Self::Mentor => "MENTOR",
            Self::Leader => "LEADER",
        }
    }
}

/// What a dashboard link says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    #[serde(rename = "ten")]
    pub tenant_id: String,
    /// The partner the platform authenticated.
    #[serde(rename = "prt")]
    pub partner_id: String,
    #[serde(rename = "rol")]
    pub role: Role,
    /// The language the pages open in (`ru`, `en`); empty for the partner's own.
    #[serde(rename = "loc", default, skip_serializing_if = "String::is_empty")]
    pub locale: String,
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

impl TokenKind for LinkClaims {
    const VERSION: &'static str = "d1";
    const KEY_CONTEXT: &'static str = "mentorstream dashboard link v1 tenant:";

    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::{Claims, Signer, TokenError};

    fn link() -> LinkClaims {
        LinkClaims {
            tenant_id: "acme".into(),
            partner_id: "p-1".into(),
            role: Role::Mentor,
            locale: "ru".into(),
            expires_at: 2_000,
        }
    }

    #[test]
    fn a_link_verifies_as_a_link_and_never_as_an_action_token() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef").expect("key");
        let now = DateTime::from_timestamp(1_000, 0).expect("time");
        let token = signer.issue(&link());
        assert!(token.starts_with("d1."));
        assert_eq!(signer.verify::<LinkClaims>(&token, now), Ok(link()));
        assert_eq!(
            signer.verify::<Claims>(&token, now),
            Err(TokenError::Malformed)
        );
        // Relabelled as another kind, its signature no longer matches.
        let relabelled = token.replacen("d1.", "v1.", 1);
        assert!(signer.verify::<Claims>(&relabelled, now).is_err());
        let upgraded = LinkClaims {
            role: Role::Leader,
            ..link()
        };
        let (_, signature) = token.rsplit_once('.').expect("parts");
        let (head, _) = signer
            .issue(&upgraded)
            .rsplit_once('.')
            .map(|(h, s)| (h.to_owned(), s.to_owned()))
            .expect("parts");
        assert_eq!(
            signer.verify::<LinkClaims>(&format!("{head}.{signature}"), now),
            Err(TokenError::Forged)
        );
    }
}
