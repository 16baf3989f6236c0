use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "ms";
const KEY_ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a Mentorstream API key")]
pub struct MalformedKey;

/// An API key, `ms_<12 hex key id>_<64 hex secret>`. Debug output hides the secret.
pub struct ApiKey {
    key_id: String,
    secret: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &self.key_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl ApiKey {
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut key_id = [0u8; KEY_ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        rng.fill_bytes(&mut key_id);
        rng.fill_bytes(&mut secret);
        Self {
            key_id: hex::encode(key_id),
            secret: hex::encode(secret),
        }
    }

    pub fn parse(text: &str) -> Result<Self, MalformedKey> {
        let mut parts = text.split('_');
        let (Some(PREFIX), Some(key_id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MalformedKey);
        };
        let is_hex = |s: &str, bytes: usize| {
            s.len() == bytes * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !is_hex(key_id, KEY_ID_BYTES) || !is_hex(secret, SECRET_BYTES) {
            return Err(MalformedKey);
        }
        Ok(Self {
            key_id: key_id.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    pub fn matches(&self, stored_hash: &[u8; 32]) -> bool {
        self.secret_hash().ct_eq(stored_hash).into()
    }

    /// The full key text, for the one answer that shows it.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}_{}_{}", self.key_id, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_match_their_hash() {
        let key = ApiKey::generate();
        let text = key.reveal();
        assert_eq!(text.len(), 2 + 1 + 12 + 1 + 64);
        let parsed = ApiKey::parse(&text).expect("parses");
        assert_eq!(parsed.key_id(), key.key_id());
        assert!(parsed.matches(&key.secret_hash()));
        assert!(!ApiKey::generate().matches(&key.secret_hash()));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = ApiKey::generate().reveal();
        for bad in [
            "",
            "ms",
            "ms_abc_def",
            &key.replacen("ms_", "xx_", 1),
            &format!("{key}_extra"),
            &key[..key.len() - 1],
            &key.replace(&key[3..15], "zzzzzzzzzzzz"),
        ] {
            assert_eq!(ApiKey::parse(bad).map(|_| ()), Err(MalformedKey), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = ApiKey::generate();
        let printed = format!("{key:?}");
        assert!(!printed.contains(&key.secret), "{printed}");
        assert!(printed.contains(key.key_id()), "{printed}");
    }
}
