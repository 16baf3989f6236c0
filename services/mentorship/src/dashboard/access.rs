//! Who may see what: a link's token is checked (signature, tenant, expiry), then the page it
//! asks for against the link's partner and role. A refusal never says whether the partner
//! named in the path exists.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mentorstream_actions::dashboard::{LinkClaims, Role};
use mentorstream_actions::{Signer, TokenError};
use sqlx::PgPool;

/// Deepest sponsor chain looked through for a leader's team.
pub const MAX_DEPTH: i32 = 64;

/// The three pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Partner,
    Mentor,
    Team,
}

impl Page {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "partner" => Some(Self::Partner),
            "mentor" => Some(Self::Mentor),
            "team" => Some(Self::Team),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Partner => "partner",
            Self::Mentor => "mentor",
            Self::Team => "team",
        }
    }
}

/// Why a page or data request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this page needs a dashboard link: ask the platform for a new one")]
    Missing,
    #[error("this dashboard link is not valid: it was changed or not issued here")]
    Invalid,
    #[error("this dashboard link expired at {0}: ask the platform for a new one")]
    Expired(DateTime<Utc>),
    #[error("this dashboard link does not show that page")]
    Forbidden,
    #[error("no such page: expected partner, mentor or team")]
    UnknownPage,
    #[error("`{0}` is not a date: expected YYYY-MM-DD")]
    BadDate(String),
    #[error("dashboards are off here: actions.signing_key is not set")]
    NotConfigured,
    #[error("the dashboard's data cannot be read right now; retry")]
    Unavailable,
    #[error("this link's partner has {0} live pages open already: close one to open another")]
    TooManyStreams(usize),
}

impl Refusal {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Missing | Self::Invalid | Self::Expired(_) => http::StatusCode::UNAUTHORIZED,
            Self::Forbidden => http::StatusCode::FORBIDDEN,
            Self::UnknownPage => http::StatusCode::NOT_FOUND,
            Self::BadDate(_) => http::StatusCode::BAD_REQUEST,
            Self::NotConfigured | Self::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyStreams(_) => http::StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "DASHBOARD_LINK_MISSING",
            Self::Invalid => "DASHBOARD_LINK_INVALID",
            Self::Expired(_) => "DASHBOARD_LINK_EXPIRED",
            Self::Forbidden => "DASHBOARD_FORBIDDEN",
            Self::UnknownPage => "DASHBOARD_PAGE_UNKNOWN",
            Self::BadDate(_) => "DASHBOARD_DATE_INVALID",
            Self::NotConfigured => "DASHBOARDS_NOT_CONFIGURED",
            Self::Unavailable => "DASHBOARD_UNAVAILABLE",
            Self::TooManyStreams(_) => "DASHBOARD_TOO_MANY_STREAMS",
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code(), "message": self.to_string()})
    }
}

/// The claims of `token`, if it is a dashboard link this system issued and it has not expired.
pub fn verify(
    signer: Option<&Signer>,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LinkClaims, Refusal> {
    let signer = signer.ok_or(Refusal::NotConfigured)?;
    let token = token
        .filter(|token| !token.is_empty())
        .ok_or(Refusal::Missing)?;
    signer.verify(token, now).map_err(|error| match error {
        TokenError::Expired(at) => Refusal::Expired(at),
        TokenError::Malformed | TokenError::Forged => Refusal::Invalid,
    })
}

/// The bearer token of `authorization`, else `?token=` (pages and the live stream, which a
/// browser opens without headers).
pub fn presented<'a>(headers: &'a http::HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .or(query)
}

/// Whether the link's partner, in its role, may see `page` of `subject`.
pub async fn allow(
    pool: &PgPool,
    claims: &LinkClaims,
    page: Page,
    subject: &str,
) -> Result<(), Refusal> {
    let own = subject == claims.partner_id;
    let allowed = match (page, claims.role) {
        (Page::Partner, _) if own => true,
        (Page::Partner, Role::Mentor | Role::Leader) if mentors(pool, claims, subject).await? => {
            true
        }
        (Page::Mentor, Role::Mentor) => own,
        (Page::Team, Role::Leader) | (Page::Mentor, Role::Leader) if own => true,
        (_, Role::Leader) => in_team(pool, claims, subject).await?,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::Forbidden)
    }
}

/// Whether `mentee` is now in one of the link partner's groups.
async fn mentors(pool: &PgPool, claims: &LinkClaims, mentee: &str) -> Result<bool, Refusal> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM assignments a JOIN groups g \
                          ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
                        WHERE a.tenant_id = $1 AND a.mentee_id = $2 AND a.ended_at IS NULL \
                          AND g.mentor_id = $3)",
    )
    .bind(&claims.tenant_id)
    .bind(mentee)
    .bind(&claims.partner_id)
    .fetch_one(pool)
    .await
    .map_err(unavailable)
}

/// Whether `partner` is below the link's partner in the sponsor tree.
async fn in_team(pool: &PgPool, claims: &LinkClaims, partner: &str) -> Result<bool, Refusal> {
    let below = in_team_of(pool, claims, &[partner.to_owned()]).await?;
    Ok(below.contains(partner))
}

/// Those of `partners` below the link's partner in the sponsor tree, in one query: each
/// partner's sponsor chain is walked up until it reaches the link's partner.
pub async fn in_team_of(
    pool: &PgPool,
    claims: &LinkClaims,
    partners: &[String],
) -> Result<HashSet<String>, Refusal> {
    if partners.is_empty() {
        return Ok(HashSet::new());
    }
    let below: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE up (origin, partner_id, sponsor_id, depth) AS ( \
             SELECT partner_id, partner_id, sponsor_id, 0 FROM partners \
             WHERE tenant_id = $1 AND partner_id = ANY($2) \
           UNION ALL \
             SELECT up.origin, s.partner_id, s.sponsor_id, up.depth + 1 \
             FROM partners s JOIN up ON s.tenant_id = $1 AND s.partner_id = up.sponsor_id \
             WHERE up.sponsor_id <> '' AND up.depth < $4 AND up.partner_id <> $3) \
         SELECT DISTINCT origin FROM up WHERE depth > 0 AND partner_id = $3",
    )
    .bind(&claims.tenant_id)
    .bind(partners)
    .bind(&claims.partner_id)
    .bind(MAX_DEPTH)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    Ok(below.into_iter().collect())
}

pub fn unavailable(error: impl std::fmt::Display) -> Refusal {
    tracing::warn!(%error, "dashboard data unavailable");
    Refusal::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("time")
    }

    #[test]
    fn a_token_is_refused_for_what_is_wrong_with_it() {
        let signer = Signer::new(KEY).expect("key");
        let claims = LinkClaims {
            tenant_id: "acme".into(),
            partner_id: "p-1".into(),
            role: Role::Partner,
            locale: String::new(),
            expires_at: 2_000,
        };
        let token = signer.issue(&claims);
        assert_eq!(verify(Some(&signer), Some(&token), at(1_999)), Ok(claims));
        assert_eq!(
            verify(Some(&signer), Some(&token), at(2_000)),
            Err(Refusal::Expired(at(2_000)))
        );
        let tampered = token.replacen("d1.e", "d1.f", 1);
        assert_eq!(
            verify(Some(&signer), Some(&tampered), at(0)),
            Err(Refusal::Invalid)
        );
        assert_eq!(verify(Some(&signer), None, at(0)), Err(Refusal::Missing));
        assert_eq!(
            verify(Some(&signer), Some(""), at(0)),
            Err(Refusal::Missing)
        );
        assert_eq!(
            verify(None, Some(&token), at(0)),
            Err(Refusal::NotConfigured)
        );
    }

    #[test]
    fn the_header_wins_over_the_query() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(presented(&headers, Some("q")), Some("q"));
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer h".parse().expect("header"),
        );
        assert_eq!(presented(&headers, Some("q")), Some("h"));
    }
}
