//! A tenant's KPI targets (docs/spec.md §4: a tenant has KPI targets). Stored as names; the KPI
//! service validates kinds, metrics and thresholds before they get here.

use std::sync::Arc;
use std::time::Instant;

use crate::{TenancyError, Tenants};

/// One target, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KpiTarget {
    pub target_id: String,
    pub subject_kind: String,
    pub metric: String,
    pub window_kind: String,
    /// A canonical decimal.
    pub threshold: String,
}

pub(crate) type CachedTargets = std::collections::HashMap<String, (Arc<Vec<KpiTarget>>, Instant)>;

/// How long targets may be cached: a new or changed target applies to crossings within this.
pub const TARGETS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl Tenants {
    /// Creates `target` (or replaces the target with its id). With a `request_id` already
    /// used by this tenant, writes nothing and returns that request's answer.
    pub async fn put_target(
        &self,
        tenant_id: &str,
        request_id: Option<&str>,
        target: &KpiTarget,
    ) -> Result<KpiTarget, TenancyError> {
        let mut transaction = self.pool.begin().await?;
        if let Some(request_id) = request_id {
            // Serialises retries of one request id.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
                .bind(tenant_id)
                .bind(request_id)
                .execute(&mut *transaction)
                .await?;
            let answered: Option<KpiTarget> = sqlx::query_as(
                "SELECT target_id, subject_kind, metric, window_kind, threshold \
                 FROM kpi_target_requests WHERE tenant_id = $1 AND request_id = $2",
            )
            .bind(tenant_id)
            .bind(request_id)
            .fetch_optional(&mut *transaction)
            .await?;
            if let Some(answered) = answered {
                return Ok(answered);
            }
        }
        sqlx::query(
            "INSERT INTO kpi_targets (tenant_id, target_id, subject_kind, metric, window_kind, \
                                      threshold) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, target_id) DO UPDATE SET subject_kind = $3, metric = $4, \
                 window_kind = $5, threshold = $6, updated_at = now()",
        )
        .bind(tenant_id)
        .bind(&target.target_id)
        .bind(&target.subject_kind)
        .bind(&target.metric)
        .bind(&target.window_kind)
        .bind(&target.threshold)
        .execute(&mut *transaction)
        .await?;
        if let Some(request_id) = request_id {
            sqlx::query(
                "INSERT INTO kpi_target_requests (tenant_id, request_id, target_id, \
                     subject_kind, metric, window_kind, threshold) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(tenant_id)
            .bind(request_id)
            .bind(&target.target_id)
            .bind(&target.subject_kind)
            .bind(&target.metric)
            .bind(&target.window_kind)
            .bind(&target.threshold)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        self.targets_cache().remove(tenant_id);
        Ok(target.clone())
    }

    /// Up to `limit` targets with ids after `after`, by id.
    pub async fn list_targets(
        &self,
        tenant_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<KpiTarget>, TenancyError> {
        Ok(sqlx::query_as(
            "SELECT target_id, subject_kind, metric, window_kind, threshold FROM kpi_targets \
             WHERE tenant_id = $1 AND target_id > $2 ORDER BY target_id LIMIT $3",
        )
        .bind(tenant_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a target; returns whether it existed.
    pub async fn delete_target(
        &self,
        tenant_id: &str,
        target_id: &str,
    ) -> Result<bool, TenancyError> {
        let deleted =
            sqlx::query("DELETE FROM kpi_targets WHERE tenant_id = $1 AND target_id = $2")
                .bind(tenant_id)
                .bind(target_id)
                .execute(&self.pool)
                .await?;
        self.targets_cache().remove(tenant_id);
        Ok(deleted.rows_affected() == 1)
    }

    /// All of a tenant's targets, read at most once per [`TARGETS_CACHE_TTL`] in this process.
    pub async fn cached_targets(
        &self,
        tenant_id: &str,
    ) -> Result<Arc<Vec<KpiTarget>>, TenancyError> {
        if let Some((targets, fetched)) = self
            .targets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant_id)
            && fetched.elapsed() < TARGETS_CACHE_TTL
        {
            return Ok(targets.clone());
        }
        let targets: Arc<Vec<KpiTarget>> = Arc::new(
            sqlx::query_as(
                "SELECT target_id, subject_kind, metric, window_kind, threshold FROM kpi_targets \
                 WHERE tenant_id = $1 ORDER BY target_id",
            )
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?,
        );
        self.targets_cache()
            .insert(tenant_id.to_owned(), (targets.clone(), Instant::now()));
        Ok(targets)
    }

    fn targets_cache(&self) -> std::sync::RwLockWriteGuard<'_, CachedTargets> {
        self.targets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
