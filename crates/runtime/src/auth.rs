//! Who may call a service: API keys from the control database, and the read grants that one
//! service signs for another (`mentorstream_actions::grant`) with the shared signing key.

use std::future::Future;
use std::pin::Pin;

use chrono::Utc;
use mentorstream_actions::Signer;
use mentorstream_actions::grant::GrantClaims;
use mentorstream_tenancy::{AuthError, Authenticate, Principal, Scope, Scopes, Tenants};

#[derive(Debug)]
pub struct Authenticator {
    pub tenants: Tenants,
    /// None when `actions.signing_key` is empty: grants are then refused like unknown keys.
    pub grants: Option<Signer>,
}

impl Authenticator {
    fn grant(&self, token: &str) -> Result<Principal, AuthError> {
        let signer = self.grants.as_ref().ok_or(AuthError::Unknown)?;
        let claims: GrantClaims = signer.verify(token, Utc::now()).map_err(|error| {
            tracing::warn!(%error, "read grant refused");
            AuthError::Unknown
        })?;
        Ok(Principal {
            tenant_id: claims.tenant_id,
            key_id: format!("grant:{}", claims.issuer),
            scopes: Scopes::default().with(Scope::Read),
        })
    }
}

impl Authenticate for Authenticator {
    fn authenticate<'a>(
        &'a self,
        api_key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>> {
        if GrantClaims::is_grant(api_key) {
            let granted = self.grant(api_key);
            return Box::pin(async move { granted });
        }
        self.tenants.authenticate(api_key)
    }
}
