//! Read grants: how the service that serves a dashboard reads the KPI service for it. The
//! dashboard decides what its link may see, then asks for exactly that with a grant that
//! lives a minute, never leaves the cluster, and carries only the `read` scope of one tenant.

use serde::{Deserialize, Serialize};

use crate::TokenKind;

/// How long a grant is valid: long enough for one page's calls or one live stream's start.
pub const GRANT_VALID_FOR_SECS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    #[serde(rename = "ten")]
    pub tenant_id: String,
    /// Who asked for it (a service name), for the logs.
    #[serde(rename = "iss")]
    pub issuer: String,
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

impl TokenKind for GrantClaims {
    const VERSION: &'static str = "g1";
    const KEY_CONTEXT: &'static str = "mentorstream read grant v1 tenant:";

    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl GrantClaims {
    pub fn is_grant(token: &str) -> bool {
        token.starts_with("g1.")
    }
}
