//! DashboardService: the platform asks for a partner's dashboard link.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mentorstream_actions::Signer;
use mentorstream_actions::dashboard::{LinkClaims, Role};
use mentorstream_grpc::{authorize, field_violation, refusal};
use mentorstream_proto::mentorship::v1::dashboard_service_server::DashboardService;
use mentorstream_proto::mentorship::v1::{
    CreateDashboardLinkRequest, CreateDashboardLinkResponse, DashboardRole,
};
use mentorstream_tenancy::Scope;
use sqlx::PgPool;
use tonic::{Code, Request, Response, Status};

use crate::api::timestamp;
use crate::partners::is_enrolled;

/// The shortest and longest a link may work: a back office asks for a fresh one whenever it
/// shows a page, and a link cannot be revoked before it expires.
pub const MIN_VALID_FOR: Duration = Duration::from_secs(60);
pub const MAX_VALID_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Links {
    pub pool: PgPool,
    /// None while `actions.signing_key` is empty: no links are issued.
    pub signer: Option<Signer>,
    /// `mentorship.dashboard_url`, without a trailing slash.
    pub base_url: String,
    pub default_valid_for: Duration,
}

#[tonic::async_trait]
impl DashboardService for Links {
    async fn create_dashboard_link(
        &self,
        request: Request<CreateDashboardLinkRequest>,
    ) -> Result<Response<CreateDashboardLinkResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let request = request.into_inner();
        let role = role(request.role)?;
        let valid_for = valid_for(request.valid_for, self.default_valid_for)?;
        let locale = locale(&request.locale)?;
        if request.partner_id.trim().is_empty() {
            return Err(field_violation("partner_id", "required"));
        }
        let signer = self.signer.as_ref().ok_or_else(|| {
            refusal(
                Code::FailedPrecondition,
                "DASHBOARDS_NOT_CONFIGURED",
                [],
                "dashboards are off here: actions.signing_key is not set",
            )
        })?;
        if !is_enrolled(&self.pool, &principal.tenant_id, &request.partner_id).await? {
            return Err(refusal(
                Code::NotFound,
                "PARTNER_NOT_FOUND",
                [("partner_id", request.partner_id.as_str())],
                format!("no enrolled partner `{}`", request.partner_id),
            ));
        }
        let expires_at = Utc::now() + valid_for;
        let claims = LinkClaims {
            tenant_id: principal.tenant_id,
            partner_id: request.partner_id,
            role,
            locale: locale.to_owned(),
            expires_at: expires_at.timestamp(),
        };
        Ok(Response::new(self.answer(&claims, signer.issue(&claims))))
    }
}

impl Links {
    fn answer(&self, claims: &LinkClaims, token: String) -> CreateDashboardLinkResponse {
        let url = |page: &str| page_url(&self.base_url, page, &claims.partner_id, &token);
        let expires_at = DateTime::from_timestamp(claims.expires_at, 0).unwrap_or_default();
        CreateDashboardLinkResponse {
            expires_at: Some(timestamp(expires_at)),
            partner_url: url("partner"),
            mentor_url: if claims.role == Role::Partner {
                String::new()
            } else {
                url("mentor")
            },
            team_url: if claims.role == Role::Leader {
                url("team")
            } else {
                String::new()
            },
            token,
        }
    }
}

/// `{base}/dashboard/{page}/{id}?token=...`, the id percent-encoded.
pub fn page_url(base: &str, page: &str, id: &str, token: &str) -> String {
    let id: String = url_escape(id);
    format!("{base}/dashboard/{page}/{id}?token={token}")
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn role(role: i32) -> Result<Role, Status> {
    match DashboardRole::try_from(role) {
        Ok(DashboardRole::Partner) => Ok(Role::Partner),
        Ok(DashboardRole::Mentor) => Ok(Role::Mentor),
        Ok(DashboardRole::Leader) => Ok(Role::Leader),
        _ => Err(field_violation(
            "role",
            "one of DASHBOARD_ROLE_PARTNER, DASHBOARD_ROLE_MENTOR, DASHBOARD_ROLE_LEADER",
        )),
    }
}

fn valid_for(asked: Option<prost_types::Duration>, default: Duration) -> Result<Duration, Status> {
    let Some(asked) = asked else {
        return Ok(default);
    };
    let refused = || {
        field_violation(
            "valid_for",
            format!(
                "between {}s and {}s",
                MIN_VALID_FOR.as_secs(),
                MAX_VALID_FOR.as_secs()
            ),
        )
    };
    let asked = Duration::try_from(asked).map_err(|_| refused())?;
    if (MIN_VALID_FOR..=MAX_VALID_FOR).contains(&asked) {
        Ok(asked)
    } else {
        Err(refused())
    }
}

fn locale(locale: &str) -> Result<&str, Status> {
    match locale {
        "" | "ru" | "en" => Ok(locale),
        _ => Err(field_violation(
            "locale",
            format!("`{locale}` is not offered: `ru`, `en`, or empty for the partner's own"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_checked_field_by_field() {
        assert_eq!(role(2).ok(), Some(Role::Mentor));
        assert!(role(0).is_err() && role(9).is_err());
        let hour = Duration::from_secs(3600);
        assert_eq!(valid_for(None, hour).ok(), Some(hour));
        let seconds = |seconds| valid_for(Some(prost_types::Duration { seconds, nanos: 0 }), hour);
        assert_eq!(seconds(60).ok(), Some(MIN_VALID_FOR));
        assert_eq!(seconds(24 * 3600).ok(), Some(MAX_VALID_FOR));
        for refused in [59, 24 * 3600 + 1, -5] {
            let status = seconds(refused).expect_err("refused");
            assert_eq!(status.message(), "valid_for: between 60s and 86400s");
        }
        assert_eq!(locale("ru").ok(), Some("ru"));
        assert_eq!(
            locale("de").expect_err("refused").message(),
            "locale: `de` is not offered: `ru`, `en`, or empty for the partner's own"
        );
    }

    #[test]
    fn a_page_url_escapes_the_id() {
        assert_eq!(
            page_url("https://m.example.com", "team", "p 1/ü", "d1.x.y"),
            "https://m.example.com/dashboard/team/p%201%2F%C3%BC?token=d1.x.y"
        );
    }
}
