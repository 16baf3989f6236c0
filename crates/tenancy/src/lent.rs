//! Keys a service lends itself to call another service for a tenant (the notifier's weekly
//! digests, mentorship's dashboards read KpiService): ordinary API keys of the control
//! database with the `read` scope only and an expiry, so every service checks them the way it
//! checks any key and no new kind of credential exists. One per tenant is reused for half its
//! lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Scope, Scopes, TenancyError, Tenants};

/// How long a lent key is valid.
pub const LENT_KEY_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct ReadKeys {
    tenants: Tenants,
    keys: Mutex<HashMap<String, (String, Instant)>>,
}

impl ReadKeys {
    pub fn new(tenants: Tenants) -> Self {
        Self {
            tenants,
            keys: Mutex::default(),
        }
    }

    /// A read key of `tenant_id`, issued when none younger than half its lifetime is cached.
    pub async fn key(&self, tenant_id: &str) -> Result<String, TenancyError> {
        if let Some((key, issued)) = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant_id)
            && issued.elapsed() < LENT_KEY_LIFETIME / 2
        {
            return Ok(key.clone());
        }
        let issued = self
            .tenants
            .create_expiring_key(
                tenant_id,
                Scopes::default().with(Scope::Read),
                LENT_KEY_LIFETIME,
            )
            .await?;
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                tenant_id.to_owned(),
                (issued.api_key.clone(), Instant::now()),
            );
        Ok(issued.api_key)
    }
}
