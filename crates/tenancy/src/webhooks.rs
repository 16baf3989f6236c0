//! A tenant's webhook sources and their signing secrets (Standard Webhooks `whsec_` secrets).
//!
//! The mapping is stored as the encoded `mentorstream.ingest.v1.WebhookMapping` the ingest
//! service checked; this crate does not look into it. A secret is needed in the clear to
//! verify signatures, so it is stored as given, like the chat-bot gateway's.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;

use crate::{TenancyError, Tenants};

/// Random bytes of a new secret (Standard Webhooks asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// One source with the secrets that verify its deliveries now, newest first.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSourceRecord {
    pub source_id: String,
    pub tenant_id: String,
    pub name: String,
    pub mapping: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub secrets: Vec<WebhookSecret>,
}

#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookSecret {
    pub secret_id: String,
    /// `whsec_<base64>`.
    pub secret: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for WebhookSourceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSourceRecord")
            .field("source_id", &self.source_id)
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("secret_id", &self.secret_id)
            .field("secret", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    source_id: String,
    tenant_id: String,
    name: String,
    mapping: Vec<u8>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A fresh `whsec_` secret and its id.
fn new_secret() -> (String, String) {
    let mut bytes = [0_u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    (uuid::Uuid::now_v7().simple().to_string(), secret)
}

impl Tenants {
    /// A new source of `tenant_id` and its first secret, shown only here.
    pub async fn create_webhook_source(
        &self,
        tenant_id: &str,
        name: &str,
        mapping: &[u8],
    ) -> Result<(WebhookSourceRecord, String), TenancyError> {
        let source_id = format!("whs_{}", uuid::Uuid::now_v7().simple());
        let (secret_id, secret) = new_secret();
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_sources (source_id, tenant_id, name, mapping) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(&source_id)
        .bind(tenant_id)
        .bind(name)
        .bind(mapping)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(TenancyError::DuplicateWebhookSource(name.to_owned()));
        }
        sqlx::query(
            "INSERT INTO webhook_secrets (source_id, secret_id, secret) VALUES ($1, $2, $3)",
        )
        .bind(&source_id)
        .bind(&secret_id)
        .bind(&secret)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        let record = self.webhook_source(Some(tenant_id), &source_id).await?;
        Ok((record, secret))
    }

    /// The source with this id, with its secrets that have not expired. With `tenant_id`,
    /// another tenant's source is as unknown as a missing one.
    pub async fn webhook_source(
        &self,
        tenant_id: Option<&str>,
        source_id: &str,
    ) -> Result<WebhookSourceRecord, TenancyError> {
        let row: Option<SourceRow> = sqlx::query_as(
            "SELECT source_id, tenant_id, name, mapping, created_at, updated_at \
             FROM webhook_sources WHERE source_id = $1 AND ($2::text IS NULL OR tenant_id = $2)",
        )
        .bind(source_id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| TenancyError::UnknownWebhookSource(source_id.to_owned()))?;
        self.with_secrets(row).await
    }

    pub async fn list_webhook_sources(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<WebhookSourceRecord>, TenancyError> {
        let rows: Vec<SourceRow> = sqlx::query_as(
            "SELECT source_id, tenant_id, name, mapping, created_at, updated_at \
             FROM webhook_sources WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        let mut sources = Vec::with_capacity(rows.len());
        for row in rows {
            sources.push(self.with_secrets(row).await?);
        }
        Ok(sources)
    }

    pub async fn update_webhook_mapping(
        &self,
        tenant_id: &str,
        source_id: &str,
        mapping: &[u8],
    ) -> Result<WebhookSourceRecord, TenancyError> {
        let updated = sqlx::query(
            "UPDATE webhook_sources SET mapping = $3, updated_at = now() \
             WHERE source_id = $1 AND tenant_id = $2",
        )
        .bind(source_id)
        .bind(tenant_id)
        .bind(mapping)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(TenancyError::UnknownWebhookSource(source_id.to_owned()));
        }
        self.webhook_source(Some(tenant_id), source_id).await
    }

    /// A new current secret; the older ones verify for `previous_valid_for` more (an older
    /// expiry that comes sooner stays).
    pub async fn rotate_webhook_secret(
        &self,
        tenant_id: &str,
        source_id: &str,
        previous_valid_for: Duration,
    ) -> Result<(WebhookSourceRecord, String), TenancyError> {
        let (secret_id, secret) = new_secret();
        let mut transaction = self.pool.begin().await?;
        // The tenant's source, locked: concurrent rotations take turns, each ending the
        // secrets before it, and a deletion meanwhile is NOT_FOUND.
        let owned = sqlx::query(
            "SELECT 1 FROM webhook_sources WHERE source_id = $1 AND tenant_id = $2 FOR UPDATE",
        )
        .bind(source_id)
        .bind(tenant_id)
        .fetch_optional(&mut *transaction)
        .await?;
        if owned.is_none() {
            return Err(TenancyError::UnknownWebhookSource(source_id.to_owned()));
        }
        sqlx::query(
            "UPDATE webhook_secrets \
             SET expires_at = LEAST(COALESCE(expires_at, 'infinity'), now() + make_interval(secs => $2)) \
             WHERE source_id = $1",
        )
        .bind(source_id)
        .bind(previous_valid_for.as_secs_f64())
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_secrets (source_id, secret_id, secret) VALUES ($1, $2, $3)",
        )
        .bind(source_id)
        .bind(&secret_id)
        .bind(&secret)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        let record = self.webhook_source(Some(tenant_id), source_id).await?;
        Ok((record, secret))
    }

    pub async fn delete_webhook_source(
        &self,
        tenant_id: &str,
        source_id: &str,
    ) -> Result<(), TenancyError> {
        let deleted =
            sqlx::query("DELETE FROM webhook_sources WHERE source_id = $1 AND tenant_id = $2")
                .bind(source_id)
                .bind(tenant_id)
                .execute(&self.pool)
                .await?;
        if deleted.rows_affected() == 0 {
            return Err(TenancyError::UnknownWebhookSource(source_id.to_owned()));
        }
        Ok(())
    }

    async fn with_secrets(&self, row: SourceRow) -> Result<WebhookSourceRecord, TenancyError> {
        let secrets = sqlx::query_as(
            "SELECT secret_id, secret, created_at, expires_at FROM webhook_secrets \
             WHERE source_id = $1 AND (expires_at IS NULL OR expires_at > now()) \
             ORDER BY created_at DESC, secret_id DESC",
        )
        .bind(&row.source_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(WebhookSourceRecord {
            source_id: row.source_id,
            tenant_id: row.tenant_id,
            name: row.name,
            mapping: row.mapping,
            created_at: row.created_at,
            updated_at: row.updated_at,
            secrets,
        })
    }
}
