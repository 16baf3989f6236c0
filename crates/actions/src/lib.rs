//! Tokens the system signs so that their bearer needs no other credential: what a chat-bot
//! button carries ("I'll attend", "please reschedule", "rate the session": [`Claims`]) and a
//! dashboard link ([`dashboard::LinkClaims`]).
//!
//! A token is `<version>.<claims>.<signature>`, both parts base64url without padding: the
//! claims are JSON (always with the tenant and an expiry in Unix seconds), the signature is
//! HMAC-SHA256 of `<version>.<claims>` with a key derived from the system's signing key, the
//! kind of token and the tenant id. A token therefore cannot be moved to another tenant or
//! used as another kind, changed, or extended. An action token is single-use because the
//! service that redeems it remembers its id.

pub mod dashboard;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// One kind of signed token: its claims, the version prefix that names it, and the context
/// that separates its tenant keys from those of every other kind.
pub trait TokenKind: Serialize + serde::de::DeserializeOwned {
    /// The first part of the token (`v1` for action tokens).
    const VERSION: &'static str;
    /// Derivation context of this kind's tenant keys.
    const KEY_CONTEXT: &'static str;

    fn tenant_id(&self) -> &str;
    /// Unix seconds after which the token is refused.
    fn expires_at(&self) -> i64;
}
/// A signing key shorter than this is refused: it would be guessable.
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// The mentee will attend the session.
    Attend,
    /// The mentee asks the mentor for another time.
    Reschedule,
    /// The mentee rates the session 1–5, with an optional comment.
    Rate,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Attend => "ATTEND",
            Self::Reschedule => "RESCHEDULE",
            Self::Rate => "RATE",
        }
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Unique per token: what makes it single-use.
    #[serde(rename = "jti")]
    pub token_id: String,
    #[serde(rename = "ten")]
    pub tenant_id: String,
    #[serde(rename = "ses")]
    pub session_id: String,
    /// The partner the token acts for.
    #[serde(rename = "prt")]
    pub partner_id: String,
    /// The actions it offers; one of them may be taken, once.
    #[serde(rename = "act")]
    pub actions: Vec<Action>,
    /// Unix seconds after which it is refused.
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

impl TokenKind for Claims {
    const VERSION: &'static str = "v1";
    const KEY_CONTEXT: &'static str = "mentorstream action token v1 tenant:";

    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Claims {
    /// Claims with a fresh token id.
    pub fn new(
        tenant_id: &str,
        session_id: &str,
        partner_id: &str,
        actions: Vec<Action>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            token_id: uuid::Uuid::now_v7().simple().to_string(),
            tenant_id: tenant_id.to_owned(),
            session_id: session_id.to_owned(),
            partner_id: partner_id.to_owned(),
            actions,
            expires_at: expires_at.timestamp(),
        }
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a token of this kind: expected `<version>.<claims>.<signature>`")]
    Malformed,
    #[error("the token's signature does not match: it was changed or not issued here")]
    Forged,
    #[error("the token expired at {0}")]
    Expired(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the action signing key must be at least {MIN_SIGNING_KEY_BYTES} bytes, got {0}")]
pub struct WeakKey(pub usize);

/// Issues and checks tokens with one signing key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer of a configured key: none for an empty key (buttons are off), an error for
    /// a short one.
    pub fn configured(key: &str) -> Result<Option<Self>, WeakKey> {
        if key.is_empty() {
            return Ok(None);
        }
        Self::new(key.as_bytes()).map(Some)
    }

    pub fn new(key: &[u8]) -> Result<Self, WeakKey> {
        if key.len() < MIN_SIGNING_KEY_BYTES {
            return Err(WeakKey(key.len()));
        }
        Ok(Self { key: key.to_vec() })
    }

    pub fn issue<C: TokenKind>(&self, claims: &C) -> String {
        let encoded = BASE64URL.encode(
            serde_json::to_vec(claims).unwrap_or_else(|_| unreachable!("claims are plain data")),
        );
        let signed = format!("{}.{encoded}", C::VERSION);
        let signature = BASE64URL.encode(
            self.mac(C::KEY_CONTEXT, claims.tenant_id(), &signed)
                .finalize()
                .into_bytes(),
        );
        format!("{signed}.{signature}")
    }

    /// The claims of `token` if this system issued it unchanged and it has not expired at
    /// `now`. (Whether it was used is for the redeeming service to know.)
    pub fn verify<C: TokenKind>(&self, token: &str, now: DateTime<Utc>) -> Result<C, TokenError> {
        let claims: C = self.open(token)?;
        let expires_at =
            DateTime::from_timestamp(claims.expires_at(), 0).ok_or(TokenError::Malformed)?;
        if now >= expires_at {
            return Err(TokenError::Expired(expires_at));
        }
        Ok(claims)
    }

    /// The claims of `token` if this system issued it unchanged, expired or not: whom an
    /// expired token was for (its tenant's settings for the refusal), never a permission.
    pub fn open<C: TokenKind>(&self, token: &str) -> Result<C, TokenError> {
        let (signed, signature) = token.trim().rsplit_once('.').ok_or(TokenError::Malformed)?;
        let encoded = signed
            .strip_prefix(C::VERSION)
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or(TokenError::Malformed)?;
        let claims: C = BASE64URL
            .decode(encoded)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Malformed)?;
        let signature = BASE64URL
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        // Compared in constant time.
        self.mac(C::KEY_CONTEXT, claims.tenant_id(), signed)
            .verify_slice(&signature)
            .map_err(|_| TokenError::Forged)?;
        Ok(claims)
    }

    fn mac(&self, context: &str, tenant_id: &str, signed: &str) -> Hmac<Sha256> {
        let mut derive = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        derive.update(context.as_bytes());
        derive.update(tenant_id.as_bytes());
        let tenant_key = derive.finalize().into_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(&tenant_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(signed.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("a time")
    }

    fn claims(tenant: &str) -> Claims {
        Claims {
            token_id: "t-1".into(),
            tenant_id: tenant.into(),
            session_id: "s-1".into(),
            partner_id: "p-1".into(),
            actions: vec![Action::Attend, Action::Reschedule],
            expires_at: 2_000,
        }
    }

    #[test]
    fn an_issued_token_verifies_until_it_expires() {
        let signer = Signer::new(KEY).expect("key");
        let token = signer.issue(&claims("acme"));
        assert!(token.starts_with("v1."));
        assert_eq!(signer.verify(&token, at(1_999)), Ok(claims("acme")));
        assert_eq!(
            signer.verify::<Claims>(&token, at(2_000)),
            Err(TokenError::Expired(at(2_000)))
        );
    }

    #[test]
    fn a_changed_claim_a_moved_tenant_or_another_key_is_forged() {
        let signer = Signer::new(KEY).expect("key");
        let token = signer.issue(&claims("acme"));
        let (_, signature) = token.rsplit_once('.').expect("three parts");
        for changed in [
            Claims {
                session_id: "s-2".into(),
                ..claims("acme")
            },
            Claims {
                expires_at: 9_999,
                ..claims("acme")
            },
            claims("globex"),
        ] {
            let json = serde_json::to_vec(&changed).expect("json");
            let forged = format!("v1.{}.{signature}", BASE64URL.encode(json));
            assert_eq!(
                signer.verify::<Claims>(&forged, at(1_000)),
                Err(TokenError::Forged)
            );
        }
        let other = Signer::new(b"another key of at least 32 bytes!").expect("key");
        assert_eq!(
            other.verify::<Claims>(&token, at(1_000)),
            Err(TokenError::Forged)
        );
        // The same claims for another tenant sign differently.
        assert_ne!(
            signer
                .issue(&claims("globex"))
                .rsplit_once('.')
                .map(|(_, s)| s.to_owned()),
            Some(signature.to_owned())
        );
    }

    #[test]
    fn anything_that_is_not_a_token_is_malformed() {
        let signer = Signer::new(KEY).expect("key");
        for text in [
            "",
            "v1",
            "v1.abc",
            "v2.e30.AAAA",
            "v1.!!!.AAAA",
            "v1.e30.AAAA",
        ] {
            assert_eq!(
                signer.verify::<Claims>(text, at(0)),
                Err(TokenError::Malformed),
                "{text}"
            );
        }
    }

    #[test]
    fn a_short_signing_key_is_refused_and_an_empty_one_turns_buttons_off() {
        assert_eq!(Signer::new(b"short").map(|_| ()), Err(WeakKey(5)));
        assert!(matches!(Signer::configured(""), Ok(None)));
        assert!(matches!(Signer::configured("x"), Err(WeakKey(1))));
        assert!(matches!(
            Signer::configured(std::str::from_utf8(KEY).unwrap_or_default()),
            Ok(Some(_))
        ));
    }
}
