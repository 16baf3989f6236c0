//! Which back offices may embed a tenant's dashboard pages: the origins of its
//! `Content-Security-Policy: frame-ancestors`.

use crate::{TenancyError, Tenants};

/// Most origins a tenant may list.
pub const MAX_FRAME_ANCESTORS: usize = 16;

/// Why a list of origins was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameAncestorsError {
    #[error(
        "`{0}` is not an origin: expected https://host or https://host:port (http:// only for \
         localhost), without a path"
    )]
    NotAnOrigin(String),
    #[error("at most {MAX_FRAME_ANCESTORS} origins, got {0}")]
    TooMany(usize),
}

/// `origin` if it is one a CSP source list takes as is: a scheme, a host, maybe a port.
pub fn check_origin(origin: &str) -> Result<&str, FrameAncestorsError> {
    let refused = || FrameAncestorsError::NotAnOrigin(origin.to_owned());
    let (scheme, rest) = origin.split_once("://").ok_or_else(refused)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0));
    let scheme_ok = scheme == "https" || (scheme == "http" && host == "localhost");
    if host_ok && port_ok && scheme_ok {
        Ok(origin)
    } else {
        Err(refused())
    }
}

impl Tenants {
    /// The origins allowed to frame the tenant's pages (read on every page load).
    pub async fn frame_ancestors(&self, tenant_id: &str) -> Result<Vec<String>, TenancyError> {
        let row: Option<(Vec<String>,)> =
            sqlx::query_as("SELECT frame_ancestors FROM tenants WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(origins,)| origins)
            .ok_or_else(|| TenancyError::UnknownTenant(tenant_id.to_owned()))
    }

    /// Replaces them for the tenant with this id or name, after checking every origin.
    pub async fn set_frame_ancestors(
        &self,
        tenant_id_or_name: &str,
        origins: &[String],
    ) -> Result<(), TenancyError> {
        if origins.len() > MAX_FRAME_ANCESTORS {
            return Err(FrameAncestorsError::TooMany(origins.len()).into());
        }
        for origin in origins {
            check_origin(origin)?;
        }
        let tenant = self.tenant(tenant_id_or_name).await?;
        sqlx::query("UPDATE tenants SET frame_ancestors = $2 WHERE tenant_id = $1")
            .bind(&tenant.tenant_id)
            .bind(origins)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_origins_are_taken() {
        for good in [
            "https://office.example.com",
            "https://office.example.com:8443",
            "http://localhost:3000",
        ] {
            assert_eq!(check_origin(good), Ok(good));
        }
        for bad in [
            "office.example.com",
            "http://office.example.com",
            "https://office.example.com/path",
            "https://*.example.com",
            "https://a.example.com; script-src *",
            "https://a.example.com:0",
            "https://",
            "'self'",
        ] {
            assert_eq!(
                check_origin(bad),
                Err(FrameAncestorsError::NotAnOrigin(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
