//! Secrets at rest: tenants' chat-bot secrets and SMTP URLs (which may hold a password) are
//! stored sealed with AES-256-GCM under a key from the environment (`secrets.keys`), bound to
//! their tenant and field so a sealed value cannot be moved to another row.
//!
//! `secrets.keys` lists `id:base64-of-32-bytes` entries separated by commas; the first seals,
//! every one opens. Rotation (docs/operations.md): put the new key first and keep the old one,
//! run `mentorstream admin rotate-secrets` (it re-seals every stored secret with the first
//! key), then drop the old key. A stored value is `v1:<key id>:<base64(nonce ‖ ciphertext)>`;
//! one without the prefix was stored in clear before keys were configured and is read as is
//! until the next rotation seals it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

const PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("secrets.keys: entry {0} is not `id:base64-of-32-bytes`")]
    BadKey(usize),
    #[error("secrets.keys: key id `{0}` appears twice")]
    DuplicateKey(String),
    #[error("a stored secret is sealed with key `{0}`, which secrets.keys does not hold")]
    UnknownKey(String),
    #[error("a stored secret cannot be opened: it was changed, or moved from another tenant")]
    Corrupt,
    #[error("the system's random source failed")]
    Random,
}

/// The configured keys; the first seals.
pub struct Sealer {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Sealer").field("key_ids", &ids).finish()
    }
}

impl Sealer {
    /// The keys of `secrets.keys`; None when it is empty (secrets are then stored in clear).
    pub fn from_keys(keys: &str) -> Result<Option<Self>, SealError> {
        let mut parsed: Vec<(String, LessSafeKey)> = Vec::new();
        let entries = keys
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (position, entry) in entries.enumerate() {
            // By position only: an entry's text may be the key itself.
            let bad = || SealError::BadKey(position + 1);
            let (id, material) = entry.split_once(':').ok_or_else(bad)?;
            let valid_id = !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            let bytes = STANDARD.decode(material.trim()).map_err(|_| bad())?;
            if !valid_id || bytes.len() != 32 {
                return Err(bad());
            }
            if parsed.iter().any(|(known, _)| known == id) {
                return Err(SealError::DuplicateKey(id.to_owned()));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad())?;
            parsed.push((id.to_owned(), LessSafeKey::new(key)));
        }
        Ok((!parsed.is_empty()).then(|| Self {
            keys: parsed,
            random: SystemRandom::new(),
        }))
    }

    /// `plaintext` sealed with the first key, bound to `context` (tenant and field).
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SealError> {
        let (id, key) = self.keys.first().ok_or(SealError::Random)?;
        let sealed = seal_bytes(key, &self.random, plaintext.as_bytes(), context)?;
        Ok(format!("{PREFIX}{id}:{}", STANDARD.encode(sealed)))
    }

    /// The plaintext of `stored` (a value stored in clear is returned as is).
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SealError> {
        open_with(Some(self), stored, context)
    }

    /// Whether `stored` is sealed with the first key (a rotation leaves it alone).
    pub fn is_current(&self, stored: &str) -> bool {
        self.keys.first().is_some_and(|(id, _)| {
            stored
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(used, _)| used == id)
        })
    }
}

/// `stored` opened with `sealer`'s keys; a value in clear needs none.
pub fn open_with(
    sealer: Option<&Sealer>,
    stored: &str,
    context: &str,
) -> Result<String, SealError> {
    let Some(rest) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_owned());
    };
    let (id, encoded) = rest.split_once(':').ok_or(SealError::Corrupt)?;
    let key = sealer
        .and_then(|sealer| sealer.keys.iter().find(|(known, _)| known == id))
        .map(|(_, key)| key)
        .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
    let bytes = STANDARD.decode(encoded).map_err(|_| SealError::Corrupt)?;
    String::from_utf8(open_bytes(key, &bytes, context)?).map_err(|_| SealError::Corrupt)
}

/// `plaintext` sealed with `key` and a fresh nonce, bound to `context`: nonce ‖ ciphertext ‖ tag.
pub(crate) fn seal_bytes(
    key: &LessSafeKey,
    random: &SystemRandom,
    plaintext: &[u8],
    context: &str,
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).map_err(|_| SealError::Random)?;
    let mut sealed = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(context.as_bytes()),
        &mut sealed,
    )
    .map_err(|_| SealError::Random)?;
    let mut stored = nonce.to_vec();
    stored.extend_from_slice(&sealed);
    Ok(stored)
}

/// The plaintext of what [`seal_bytes`] sealed with `key` for `context`.
pub(crate) fn open_bytes(
    key: &LessSafeKey,
    sealed: &[u8],
    context: &str,
) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN {
        return Err(SealError::Corrupt);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
    let mut ciphertext = ciphertext.to_vec();
    let plaintext = key
        .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
        .map_err(|_| SealError::Corrupt)?;
    Ok(plaintext.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "b:HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";

    fn sealer(keys: &str) -> Sealer {
        Sealer::from_keys(keys).expect("keys").expect("some")
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_context() {
        let a = sealer(A);
        let stored = a
            .seal("smtps://user:pass@mail", "t-1/smtp_url")
            .expect("sealed");
        assert!(stored.starts_with("v1:a:"), "{stored}");
        assert!(!stored.contains("pass"));
        assert_eq!(
            a.open(&stored, "t-1/smtp_url").expect("opened"),
            "smtps://user:pass@mail"
        );
        // Another tenant's row, or another field: refused.
        assert_eq!(a.open(&stored, "t-2/smtp_url"), Err(SealError::Corrupt));
        // A key that is not configured: said by its id.
        assert_eq!(
            sealer(B).open(&stored, "t-1/smtp_url"),
            Err(SealError::UnknownKey("a".into()))
        );
        assert_eq!(
            open_with(None, &stored, "t-1/smtp_url"),
            Err(SealError::UnknownKey("a".into()))
        );
        // Two seals of one secret differ (a fresh nonce each time).
        assert_ne!(
            a.seal("x", "c").expect("sealed"),
            a.seal("x", "c").expect("sealed")
        );
        // A value stored in clear before keys existed reads as is.
        assert_eq!(
            a.open("clear-secret", "t-1/chatbot_secret").expect("clear"),
            "clear-secret"
        );
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = sealer(A);
        let both = sealer(&format!("{B},{A}"));
        let stored = old.seal("s3cret", "t/f").expect("sealed");
        assert!(!both.is_current(&stored));
        assert_eq!(both.open(&stored, "t/f").expect("opened"), "s3cret");
        let resealed = both.seal("s3cret", "t/f").expect("sealed");
        assert!(both.is_current(&resealed) && resealed.starts_with("v1:b:"));
        assert_eq!(sealer(B).open(&resealed, "t/f").expect("opened"), "s3cret");
    }

    #[test]
    fn bad_key_lists_are_refused_precisely() {
        assert!(Sealer::from_keys("").expect("empty").is_none());
        assert_eq!(
            Sealer::from_keys("nocolon").err(),
            Some(SealError::BadKey(1))
        );
        assert_eq!(
            Sealer::from_keys(&format!("{A},k:c2hvcnQ=")).err(),
            Some(SealError::BadKey(2))
        );
        // The message never holds the entry (it may be the key).
        assert_eq!(
            SealError::BadKey(1).to_string(),
            "secrets.keys: entry 1 is not `id:base64-of-32-bytes`"
        );
        assert_eq!(
            Sealer::from_keys(&format!("{A},{A}")).err(),
            Some(SealError::DuplicateKey("a".into()))
        );
    }
}
