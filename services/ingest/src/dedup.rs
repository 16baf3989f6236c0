//! Source deduplication in Redis, safe against crashes between the check and the publish.
//!
//! One key per event identity (tenant, source, source_event_id) holds either
//!
//! - a **claim** `C:<fingerprint>:<token>`, written with `SET NX GET PX <lease>` before the event
//!   is published: the request holding it is publishing right now. A claim expires on its own,
//!   so a process that dies between the claim and the publish blocks a retry for at most the
//!   lease and never turns it into a false DUPLICATE; or
//! - an **acceptance** `A:<fingerprint>`, written only after Kafka acknowledged the record and
//!   kept until the event could no longer be accepted anyway (`occurred_at` + the tenant's
//!   allowed lateness, plus a day of margin).
//!
//! A failed publish deletes its claims (only if still its own), so the retry publishes again.
//! The one window left is a crash after Kafka acknowledged and before the acceptance was
//! written: the retry then publishes the event a second time. The record carries the same
//! identity, so consumers dedup it (docs/spec.md §9); no event is ever lost.
//!
//! Every command touches one key, so this works unchanged on Redis Cluster. Redis ≥ 7.0 is
//! needed for `SET ... NX GET`.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mentorstream_redis::{Connection, KeySpace, RedisError, Value, cmd};
use sha2::{Digest, Sha256};

/// Deletes a claim only if it is still the caller's (it may have expired and been taken).
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                                return redis.call('DEL', KEYS[1]) \
                              end \
                              return 0";

/// Kept past the end of the lateness horizon, so a tenant that lengthens its lateness a little
/// does not reopen recent events to double acceptance.
const ACCEPTANCE_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// The content of an event: 128 bits of SHA-256 of its canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    pub fn of(canonical_encoding: &[u8]) -> Self {
        Self(truncated_sha256(&[canonical_encoding]))
    }

    fn hex(self) -> String {
        hex::encode(self.0)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.hex())
    }
}

/// Identifies one request or stream holding claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl Default for ClaimToken {
    fn default() -> Self {
        Self::new()
    }
}

/// What Redis knew of an identity when a claim was attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nobody had it: the claim is ours, publish the event.
    Claimed,
    /// Accepted before with this content.
    Accepted(Fingerprint),
    /// Being published right now with this content, by our own token or by another request.
    InFlight {
        fingerprint: Fingerprint,
        ours: bool,
    },
}

/// One event's identity and content, as far as deduplication is concerned.
#[derive(Debug, Clone)]
pub struct Entry {
    key: String,
    pub fingerprint: Fingerprint,
    /// When the acceptance may be forgotten.
    keep_until: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("Redis is unavailable: {0}")]
    Redis(#[from] RedisError),
    #[error("unexpected value `{0}` under a deduplication key")]
    Corrupt(String),
}

/// The deduplication store.
#[derive(Clone)]
pub struct Dedup {
    connection: Connection,
    keys: KeySpace,
    lease: Duration,
}

impl fmt::Debug for Dedup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("keys", &self.keys)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Dedup {
    /// `lease` must outlast the longest publish (the Kafka delivery timeout plus margin).
    pub fn new(connection: Connection, keys: KeySpace, lease: Duration) -> Self {
        Self {
            connection,
            keys,
            lease,
        }
    }

    /// The dedup entry of an event of `tenant_id` that occurred at `occurred_at`.
    pub fn entry(
        &self,
        tenant_id: &str,
        source: &str,
        source_event_id: &str,
        fingerprint: Fingerprint,
        occurred_at: DateTime<Utc>,
        allowed_lateness: Duration,
    ) -> Entry {
        // The identity is hashed so that keys stay short whatever the ids' length; the
        // separator keeps ("ab", "c") and ("a", "bc") apart.
        let identity = truncated_sha256(&[source.as_bytes(), b"\0", source_event_id.as_bytes()]);
        Entry {
            key: self.keys.key(&["dedup", tenant_id, &hex::encode(identity)]),
            fingerprint,
            keep_until: occurred_at + allowed_lateness + ACCEPTANCE_MARGIN,
        }
    }

    /// Tries to claim every entry, in order, in one round trip.
    pub async fn claim(
        &self,
        token: &ClaimToken,
        entries: &[&Entry],
    ) -> Result<Vec<Seen>, DedupError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let claims = entries
            .iter()
            .map(|entry| {
                let mut claim = cmd("SET");
                claim
                    .arg(&entry.key)
                    .arg(claim_value(entry.fingerprint, token))
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(lease_ms);
                claim
            })
            .collect();
        let answers = self.connection.each(claims).await?;
        answers
            .iter()
            .map(|answer| match answer {
                Value::Nil => Ok(Seen::Claimed),
                Value::BulkString(value) => parse_seen(&String::from_utf8_lossy(value), token),
                other => Err(DedupError::Corrupt(format!("{other:?}"))),
            })
            .collect()
    }

    /// Records that Kafka acknowledged these entries' events.
    pub async fn confirm(&self, entries: &[&Entry]) -> Result<(), DedupError> {
        if entries.is_empty() {
            return Ok(());
        }
        let acceptances = entries
            .iter()
            .map(|entry| {
                let mut acceptance = cmd("SET");
                acceptance
                    .arg(&entry.key)
                    .arg(format!("A:{}", entry.fingerprint.hex()))
                    .arg("PXAT")
                    .arg(entry.keep_until.timestamp_millis());
                acceptance
            })
            .collect();
        self.connection.each(acceptances).await?;
        Ok(())
    }

    /// Gives up claims whose events were not published, so a retry can publish them.
    pub async fn release(&self, token: &ClaimToken, entries: &[&Entry]) -> Result<(), DedupError> {
        if entries.is_empty() {
            return Ok(());
        }
        // EVAL rather than EVALSHA: a pipeline cannot recover from NOSCRIPT, and this path
        // only runs after a failure, so the script's bytes do not matter.
        let releases = entries
            .iter()
            .map(|entry| {
                let mut release = cmd("EVAL");
                release
                    .arg(RELEASE_SCRIPT)
                    .arg(1)
                    .arg(&entry.key)
                    .arg(claim_value(entry.fingerprint, token));
                release
            })
            .collect();
        self.connection.each(releases).await?;
        Ok(())
    }
}

fn claim_value(fingerprint: Fingerprint, token: &ClaimToken) -> String {
    format!("C:{}:{}", fingerprint.hex(), token.0)
}

fn parse_seen(value: &str, token: &ClaimToken) -> Result<Seen, DedupError> {
    let corrupt = || DedupError::Corrupt(value.to_owned());
    if let Some(fingerprint) = value.strip_prefix("A:") {
        return Fingerprint::parse(fingerprint)
            .map(Seen::Accepted)
            .ok_or_else(corrupt);
    }
    let (fingerprint, holder) = value
        .strip_prefix("C:")
        .and_then(|claim| claim.split_once(':'))
        .ok_or_else(corrupt)?;
    Ok(Seen::InFlight {
        fingerprint: Fingerprint::parse(fingerprint).ok_or_else(corrupt)?,
        ours: holder == token.0,
    })
}

fn truncated_sha256(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut truncated = [0; 16];
    truncated.copy_from_slice(&digest[..16]);
    truncated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_parse_back() {
        let token = ClaimToken::new();
        let other = ClaimToken::new();
        let fingerprint = Fingerprint::of(b"event");
        assert_eq!(
            parse_seen(&format!("A:{}", fingerprint.hex()), &token).expect("acceptance"),
            Seen::Accepted(fingerprint)
        );
        assert_eq!(
            parse_seen(&claim_value(fingerprint, &token), &token).expect("own claim"),
            Seen::InFlight {
                fingerprint,
                ours: true
            }
        );
        assert_eq!(
            parse_seen(&claim_value(fingerprint, &other), &token).expect("other claim"),
            Seen::InFlight {
                fingerprint,
                ours: false
            }
        );
        assert!(matches!(
            parse_seen("garbage", &token),
            Err(DedupError::Corrupt(value)) if value == "garbage"
        ));
    }

    #[test]
    fn fingerprints_differ_with_content() {
        assert_ne!(Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        assert_eq!(Fingerprint::of(b"a"), Fingerprint::of(b"a"));
    }
}
