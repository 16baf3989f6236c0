//! Tenants (one MLM company each) and their API keys.
//!
//! An API key is `ms_<key id>_<secret>`: the key id finds the row, the secret is checked
//! against its stored SHA-256 hash in constant time. The full key exists only in the answer to
//! [`Tenants::create_key`]; it is never stored or logged.

mod channels;
mod data_keys;
mod frames;
mod keys;
mod lent;
mod scope;
pub mod sealed;
mod targets;
mod webhooks;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use channels::{ChannelsError, TenantChannels};
pub use data_keys::DataKey;
pub use frames::{FrameAncestorsError, MAX_FRAME_ANCESTORS};
pub use keys::{ApiKey, MalformedKey};
pub use lent::{LENT_KEY_LIFETIME, ReadKeys};
pub use scope::{Scope, Scopes, UnknownScope};
pub use targets::{KpiTarget, TARGETS_CACHE_TTL};
pub use webhooks::{WebhookSecret, WebhookSourceRecord};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a resolved key or tenant is trusted before it is read again (so a revocation takes effect
/// within this time without a database read on every request).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Allowed lateness of events unless a tenant says otherwise: 35 days.
pub const DEFAULT_ALLOWED_LATENESS: Duration = Duration::from_secs(35 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("tenant name must be 1 to 100 characters, got {0}")]
    InvalidName(usize),
    #[error("unknown time zone `{0}`: expected an IANA name such as Europe/Moscow")]
    UnknownTimeZone(String),
    #[error("a tenant named `{0}` already exists")]
    DuplicateName(String),
    #[error("no tenant with id or name `{0}`")]
    UnknownTenant(String),
    #[error("this tenant already has a webhook source named `{0}`")]
    DuplicateWebhookSource(String),
    #[error("no webhook source `{0}`")]
    UnknownWebhookSource(String),
    #[error("a key needs at least one scope (ingest, read, write, admin)")]
    NoScopes,
    #[error(transparent)]
    Channels(#[from] ChannelsError),
    #[error(transparent)]
    FrameAncestors(#[from] FrameAncestorsError),
    #[error(transparent)]
    Sealed(#[from] sealed::SealError),
    #[error("{rewritten} secrets re-sealed, but these could not be opened: {}", failed.join("; "))]
    Reseal { rewritten: u64, failed: Vec<String> },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the control database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl TenancyError {
    /// Whether the control database could not be reached (a retry may succeed), as opposed
    /// to a refusal or a bug.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }
}

/// Why a request's key was not accepted. The messages never say whether a key id exists.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send `authorization: Bearer <api key>`")]
    Missing,
    #[error("malformed authorization header: expected `Bearer <api key>`")]
    MalformedHeader,
    #[error("unknown or revoked API key")]
    Unknown,
    #[error("cannot check the API key now: {0}")]
    Unavailable(sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub tenant_id: String,
    pub name: String,
    pub time_zone: Tz,
    pub default_locale: String,
    pub allowed_lateness: Duration,
    pub inactivity_days: u32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub time_zone: String,
    pub default_locale: String,
}

/// Who is calling: the tenant of the key and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: String,
    pub key_id: String,
    pub scopes: Scopes,
}

/// A freshly created key. `api_key` is shown once and never again.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedKey {
    pub key_id: String,
    pub tenant_id: String,
    pub scopes: Scopes,
    pub api_key: String,
}

/// Resolves API keys to principals; the gRPC layer depends on this, not on Postgres.
pub trait Authenticate: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        api_key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>>;
}

#[derive(Debug, Clone)]
struct CachedKey {
    secret_hash: [u8; 32],
    principal: Principal,
    fetched: Instant,
}

/// The tenant registry of the control database.
#[derive(Debug, Clone)]
pub struct Tenants {
    pool: PgPool,
    keys: Arc<RwLock<HashMap<String, CachedKey>>>,
    tenants: Arc<RwLock<HashMap<String, (Tenant, Instant)>>>,
    targets: Arc<RwLock<targets::CachedTargets>>,
    /// Seals the tenants' channel secrets at rest; None: stored in clear.
    sealer: Option<Arc<sealed::Sealer>>,
}

impl Tenants {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            keys: Arc::default(),
            tenants: Arc::default(),
            targets: Arc::default(),
            sealer: None,
        }
    }

    /// The same registry, sealing channel secrets with `sealer` (`secrets.keys`).
    pub fn with_sealer(mut self, sealer: Option<sealed::Sealer>) -> Self {
        self.sealer = sealer.map(Arc::new);
        self
    }

    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, TenancyError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self::new(pool))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), TenancyError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn create_tenant(&self, new: NewTenant) -> Result<Tenant, TenancyError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(TenancyError::InvalidName(name.chars().count()));
        }
        let time_zone = Tz::from_str(&new.time_zone)
            .map_err(|_| TenancyError::UnknownTimeZone(new.time_zone.clone()))?;
        let tenant_id = uuid::Uuid::now_v7().simple().to_string();
        let inserted = sqlx::query(
            "INSERT INTO tenants (tenant_id, name, time_zone, default_locale) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&tenant_id)
        .bind(name)
        .bind(time_zone.name())
        .bind(&new.default_locale)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(TenancyError::DuplicateName(name.to_owned()));
        }
        self.tenant(&tenant_id).await
    }

    /// The tenant with this id or, failing that, this name.
    pub async fn tenant(&self, id_or_name: &str) -> Result<Tenant, TenancyError> {
        let row: Option<TenantRow> = sqlx::query_as(
            "SELECT tenant_id, name, time_zone, default_locale, allowed_lateness_secs, \
                    inactivity_days, created_at \
             FROM tenants WHERE tenant_id = $1 OR name = $1 \
             ORDER BY (tenant_id = $1) DESC LIMIT 1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| TenancyError::UnknownTenant(id_or_name.to_owned()))?
            .try_into()
    }

    /// The tenant with this id, read at most once per cache period (30 s): for hot paths
    /// that need a tenant's settings on every request.
    pub async fn cached_tenant(&self, tenant_id: &str) -> Result<Tenant, TenancyError> {
        if let Some((tenant, fetched)) = self
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant_id)
            && fetched.elapsed() < CACHE_TTL
        {
            return Ok(tenant.clone());
        }
        let tenant = self.tenant(tenant_id).await?;
        self.tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant_id.to_owned(), (tenant.clone(), Instant::now()));
        Ok(tenant)
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, TenancyError> {
        let rows: Vec<TenantRow> = sqlx::query_as(
            "SELECT tenant_id, name, time_zone, default_locale, allowed_lateness_secs, \
                    inactivity_days, created_at FROM tenants ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Tenant::try_from).collect()
    }

    pub async fn create_key(
        &self,
        tenant_id_or_name: &str,
        scopes: Scopes,
    ) -> Result<IssuedKey, TenancyError> {
        self.insert_key(tenant_id_or_name, scopes, None).await
    }

    /// A key that stops working after `lifetime`: for a service that calls another one on a
    /// tenant's behalf. Keys that expired more than a day ago are deleted on the way.
    pub async fn create_expiring_key(
        &self,
        tenant_id: &str,
        scopes: Scopes,
        lifetime: Duration,
    ) -> Result<IssuedKey, TenancyError> {
        sqlx::query("DELETE FROM api_keys WHERE expires_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await?;
        self.insert_key(tenant_id, scopes, Some(Utc::now() + lifetime))
            .await
    }

    async fn insert_key(
        &self,
        tenant_id_or_name: &str,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedKey, TenancyError> {
        if scopes.is_empty() {
            return Err(TenancyError::NoScopes);
        }
        let tenant = self.tenant(tenant_id_or_name).await?;
        let key = ApiKey::generate();
        sqlx::query(
            "INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.key_id())
        .bind(&tenant.tenant_id)
        .bind(key.secret_hash().as_slice())
        .bind(scopes.names())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(IssuedKey {
            key_id: key.key_id().to_owned(),
            tenant_id: tenant.tenant_id,
            scopes,
            api_key: key.reveal(),
        })
    }

    /// Revokes a key; returns whether it existed and was active.
    pub async fn revoke_key(&self, key_id: &str) -> Result<bool, TenancyError> {
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
        )
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        self.write_cache().remove(key_id);
        Ok(revoked.rows_affected() == 1)
    }

    async fn resolve(&self, api_key: &str) -> Result<Principal, AuthError> {
        let key = ApiKey::parse(api_key).map_err(|_| AuthError::Unknown)?;
        let cached = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key.key_id())
            .filter(|cached| cached.fetched.elapsed() < CACHE_TTL)
            .cloned();
        let cached = match cached {
            Some(cached) => cached,
            None => {
                let fetched = self.fetch_key(key.key_id()).await?;
                self.write_cache()
                    .insert(key.key_id().to_owned(), fetched.clone());
                fetched
            }
        };
        if key.matches(&cached.secret_hash) {
            Ok(cached.principal)
        } else {
            Err(AuthError::Unknown)
        }
    }

    async fn fetch_key(&self, key_id: &str) -> Result<CachedKey, AuthError> {
        let row: Option<(String, Vec<u8>, Vec<String>)> = sqlx::query_as(
            "SELECT tenant_id, secret_hash, scopes FROM api_keys \
             WHERE key_id = $1 AND revoked_at IS NULL \
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::Unavailable)?;
        let (tenant_id, hash, scope_names) = row.ok_or(AuthError::Unknown)?;
        let secret_hash: [u8; 32] = hash.try_into().map_err(|_| AuthError::Unknown)?;
        let scopes = Scopes::parse_names(&scope_names).map_err(|_| AuthError::Unknown)?;
        Ok(CachedKey {
            secret_hash,
            principal: Principal {
                tenant_id,
                key_id: key_id.to_owned(),
                scopes,
            },
            fetched: Instant::now(),
        })
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, CachedKey>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Authenticate for Tenants {
    fn authenticate<'a>(
        &'a self,
        api_key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>> {
        Box::pin(self.resolve(api_key))
    }
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    tenant_id: String,
    name: String,
    time_zone: String,
    default_locale: String,
    allowed_lateness_secs: i64,
    inactivity_days: i32,
    created_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = TenancyError;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        Ok(Tenant {
            time_zone: Tz::from_str(&row.time_zone)
                .map_err(|_| TenancyError::UnknownTimeZone(row.time_zone.clone()))?,
            tenant_id: row.tenant_id,
            name: row.name,
            default_locale: row.default_locale,
            allowed_lateness: Duration::from_secs(row.allowed_lateness_secs.unsigned_abs()),
            inactivity_days: row.inactivity_days.unsigned_abs(),
            created_at: row.created_at,
        })
    }
}
