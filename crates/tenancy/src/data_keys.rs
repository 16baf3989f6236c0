//! Per-partner data keys: erasing personal data from a topic that keeps every record.
//!
//! The activity topic keeps every record forever, because KPIs are rebuilt from it, so a
//! partner's personal fields cannot be deleted from it. Ingest seals them instead (the display
//! name, locale and time zone of an enrolment) with a key of the partner's own, kept in the
//! control database; consumers open them with it; `mentorstream admin erase-partner` destroys
//! the key. The records stay, their ids and numbers still rebuild every KPI, and the personal
//! fields can no longer be read by anyone (crypto-shredding). The partner stays marked as
//! erased, so no new key is made for them: ingest drops the personal fields of a later
//! enrolment of theirs instead of sealing them.
//!
//! A key is 32 random bytes for AES-256-GCM, stored as is: it is as safe as the control
//! database, and a backup of that database keeps it until the backup itself expires.

use std::collections::HashMap;

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::sealed::{SealError, open_bytes, seal_bytes};
use crate::{TenancyError, Tenants};

/// One partner's data key.
pub struct DataKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").finish_non_exhaustive()
    }
}

impl DataKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::Corrupt)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        })
    }

    /// `plaintext` sealed for `tenant_id`'s partner `partner_id`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(
        &self,
        plaintext: &[u8],
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<Vec<u8>, SealError> {
        seal_bytes(
            &self.key,
            &self.random,
            plaintext,
            &context(tenant_id, partner_id),
        )
    }

    /// What [`DataKey::seal`] sealed for the same partner.
    pub fn open(
        &self,
        sealed: &[u8],
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<Vec<u8>, SealError> {
        open_bytes(&self.key, sealed, &context(tenant_id, partner_id))
    }
}

/// What a sealed value is bound to: it opens for this partner of this tenant only.
fn context(tenant_id: &str, partner_id: &str) -> String {
    format!("{tenant_id}/{partner_id}/personal")
}

impl Tenants {
    /// The data keys of `partner_ids` of `tenant_id`, each created on first use (one round
    /// trip for the whole set, whatever its size); an erased partner has none.
    pub async fn partner_data_keys(
        &self,
        tenant_id: &str,
        partner_ids: &[&str],
    ) -> Result<HashMap<String, DataKey>, TenancyError> {
        // In one order, so that two batches enrolling the same partners wait for each other
        // instead of deadlocking.
        let mut partner_ids = partner_ids.to_vec();
        partner_ids.sort_unstable();
        partner_ids.dedup();
        let partner_ids = partner_ids.as_slice();
        let random = SystemRandom::new();
        let mut fresh = Vec::with_capacity(partner_ids.len());
        for _ in partner_ids {
            let mut bytes = vec![0u8; 32];
            random
                .fill(&mut bytes)
                .map_err(|_| TenancyError::Sealed(SealError::Random))?;
            fresh.push(bytes);
        }
        let rows: Vec<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "WITH fresh AS ( \
                 INSERT INTO partner_data_keys (tenant_id, partner_id, data_key) \
                 SELECT $1, partner_id, data_key FROM unnest($2::text[], $3::bytea[]) \
                     AS given (partner_id, data_key) \
                 ON CONFLICT (tenant_id, partner_id) DO NOTHING \
                 RETURNING partner_id, data_key) \
             SELECT partner_id, data_key FROM fresh \
             UNION ALL \
             SELECT partner_id, data_key FROM partner_data_keys \
             WHERE tenant_id = $1 AND partner_id = ANY($2)",
        )
        .bind(tenant_id)
        .bind(partner_ids)
        .bind(&fresh)
        .fetch_all(&self.pool)
        .await?;
        let mut keys = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (partner_id, bytes) in rows {
            if let Some(bytes) = bytes {
                keys.insert(partner_id.clone(), DataKey::from_bytes(&bytes)?);
            }
            seen.insert(partner_id);
        }
        // A key another request created meanwhile is not in this statement's snapshot: the
        // next statement sees it.
        for partner_id in partner_ids {
            if !seen.contains(*partner_id)
                && let Some(key) = self.find_partner_data_key(tenant_id, partner_id).await?
            {
                keys.insert((*partner_id).to_owned(), key);
            }
        }
        Ok(keys)
    }

    /// The data key of `partner_id`, if it has one (none once the partner was erased).
    pub async fn find_partner_data_key(
        &self,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<Option<DataKey>, TenancyError> {
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(
            "SELECT data_key FROM partner_data_keys WHERE tenant_id = $1 AND partner_id = $2",
        )
        .bind(tenant_id)
        .bind(partner_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .and_then(|(bytes,)| bytes)
            .map(|bytes| DataKey::from_bytes(&bytes))
            .transpose()?)
    }

    /// Destroys the data key of `partner_id`, so whatever it sealed can never be read again,
    /// and marks the partner erased, so no key is made for them again. Whether there was a key.
    pub async fn destroy_partner_data_key(
        &self,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<bool, TenancyError> {
        // One statement: an enrolment creating the first key meanwhile either commits before
        // it (and its key is destroyed here: the upsert acts on the latest row) or finds the
        // marker and makes none. `before` reads the statement's snapshot, as it was.
        let (destroyed,): (bool,) = sqlx::query_as(
            "WITH before AS ( \
                 SELECT data_key IS NOT NULL AS had_key FROM partner_data_keys \
                 WHERE tenant_id = $1 AND partner_id = $2) \
             INSERT INTO partner_data_keys (tenant_id, partner_id, data_key, erased_at) \
             VALUES ($1, $2, NULL, now()) \
             ON CONFLICT (tenant_id, partner_id) DO UPDATE SET data_key = NULL, \
                 erased_at = COALESCE(partner_data_keys.erased_at, now()) \
             RETURNING COALESCE((SELECT had_key FROM before), false)",
        )
        .bind(tenant_id)
        .bind(partner_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(destroyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_for_its_partner_only() {
        let key = DataKey::from_bytes(&[7; 32]).expect("key");
        let sealed = key.seal(b"Maria", "t-1", "p-1").expect("sealed");
        assert!(!sealed.windows(5).any(|window| window == b"Maria"));
        assert_eq!(key.open(&sealed, "t-1", "p-1").expect("opened"), b"Maria");
        assert_eq!(key.open(&sealed, "t-1", "p-2"), Err(SealError::Corrupt));
        assert_eq!(key.open(&sealed, "t-2", "p-1"), Err(SealError::Corrupt));
        let other = DataKey::from_bytes(&[8; 32]).expect("key");
        assert_eq!(other.open(&sealed, "t-1", "p-1"), Err(SealError::Corrupt));
        assert_eq!(
            key.open(&sealed[..10], "t-1", "p-1"),
            Err(SealError::Corrupt)
        );
        assert!(DataKey::from_bytes(&[7; 31]).is_err());
    }
}
