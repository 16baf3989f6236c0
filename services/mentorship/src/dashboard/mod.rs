//! Dashboards in the browser (docs/dashboards.md): a partner's own page, a mentor's group and
//! a leader's team, opened with a signed link the platform asked for ([`link`]), checked on the
//! page and on every data request ([`access`]), filled from the mentorship database and the KPI
//! service ([`views`]) and kept live from the KPI change stream ([`live`]). The KPI service is
//! read with a short-lived read key the service lends itself per tenant; the browser only ever
//! holds its link.

mod access;
mod assets;
pub mod kpi;
pub mod link;
pub mod live;
mod stats;
mod views;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse as _, Response};
use chrono::{NaiveDate, Utc};
use http::HeaderMap;
use mentorstream_actions::Signer;
use mentorstream_actions::dashboard::LinkClaims;
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_tenancy::{ReadKeys, TenancyError, Tenant, Tenants};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use access::{Page, Refusal, unavailable};

/// What the pages need.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub pool: PgPool,
    pub tenants: Tenants,
    /// None while `actions.signing_key` is empty: every link is refused.
    pub signer: Option<Signer>,
    pub kpi: KpiServiceClient<Channel>,
    /// The tenants' read keys for the KPI service.
    pub keys: Arc<ReadKeys>,
    /// The live streams open here, per link partner.
    pub streams: Arc<live::Streams>,
    /// Ends the live streams.
    pub shutdown: CancellationToken,
}

/// The routes, ready to be merged into the service's router. They are public in the API-key
/// layer: the link is their credential.
pub fn router(dashboard: Dashboard) -> axum::Router {
    axum::Router::new()
        .route(
            "/dashboard/assets/{name}",
            axum::routing::get(assets::asset),
        )
        .route("/dashboard/{page}/{subject}", axum::routing::get(page))
        .route("/dashboard/api/{page}/{subject}", axum::routing::get(data))
        .route(
            "/dashboard/api/live/{page}/{subject}",
            axum::routing::get(live::stream),
        )
        .with_state(dashboard)
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    token: Option<String>,
    date: Option<String>,
    lang: Option<String>,
}

/// A request that passed every check.
struct Admitted {
    claims: LinkClaims,
    page: Page,
    tenant: Tenant,
    date: NaiveDate,
    locale: String,
}

impl Dashboard {
    /// The link's claims if it may see `page` of `subject`, with the page's date and language.
    async fn admit(
        &self,
        page: &str,
        subject: &str,
        headers: &HeaderMap,
        query: &PageQuery,
    ) -> Result<Admitted, Refusal> {
        let page = Page::parse(page).ok_or(Refusal::UnknownPage)?;
        let token = access::presented(headers, query.token.as_deref());
        let claims = access::verify(self.signer.as_ref(), token, Utc::now())?;
        access::allow(&self.pool, &claims, page, subject).await?;
        let tenant = match self.tenants.cached_tenant(&claims.tenant_id).await {
            Ok(tenant) => tenant,
            // A link of a tenant that was deleted since.
            Err(TenancyError::UnknownTenant(_)) => return Err(Refusal::Invalid),
            Err(error) => return Err(unavailable(error)),
        };
        let date = match &query.date {
            Some(text) => text
                .parse()
                .map_err(|_| Refusal::BadDate(text.chars().take(40).collect()))?,
            None => Utc::now().with_timezone(&tenant.time_zone).date_naive(),
        };
        let locale = self.locale(&claims, &tenant, query.lang.as_deref()).await?;
        Ok(Admitted {
            claims,
            page,
            tenant,
            date,
            locale,
        })
    }

    /// `ru` or `en`: asked in the URL, else the link's, else the partner's, else the tenant's.
    async fn locale(
        &self,
        claims: &LinkClaims,
        tenant: &Tenant,
        asked: Option<&str>,
    ) -> Result<String, Refusal> {
        let chosen = match asked.filter(|lang| ["ru", "en"].contains(lang)) {
            Some(lang) => lang.to_owned(),
            None if !claims.locale.is_empty() => claims.locale.clone(),
            None => {
                let own: Option<String> = sqlx::query_scalar(
                    "SELECT locale FROM partners WHERE tenant_id = $1 AND partner_id = $2",
                )
                .bind(&claims.tenant_id)
                .bind(&claims.partner_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                own.filter(|locale| !locale.is_empty())
                    .unwrap_or_else(|| tenant.default_locale.clone())
            }
        };
        Ok(if chosen.starts_with("ru") { "ru" } else { "en" }.to_owned())
    }

    fn ask<'a>(&'a self, kpi: &'a kpi::KpiReader, admitted: &'a Admitted) -> views::Ask<'a> {
        views::Ask {
            pool: &self.pool,
            kpi,
            claims: &admitted.claims,
            time_zone: admitted.tenant.time_zone,
            inactivity_days: admitted.tenant.inactivity_days,
            date: admitted.date,
            locale: &admitted.locale,
        }
    }

    /// The refusal page. A genuine link (expired, or for another page) names its tenant and
    /// partner: the page is in the language the page itself would have had and framable by
    /// the tenant's back offices; any other token gets `?lang=` or English, and no frame.
    async fn refused(&self, refusal: &Refusal, headers: &HeaderMap, query: &PageQuery) -> Response {
        let token = access::presented(headers, query.token.as_deref());
        let claims: Option<LinkClaims> = self
            .signer
            .as_ref()
            .zip(token)
            .and_then(|(signer, token)| signer.open(token).ok());
        let asked = query
            .lang
            .as_deref()
            .filter(|lang| ["ru", "en"].contains(lang));
        let Some(claims) = claims else {
            return assets::refused(refusal, asked.unwrap_or("en"), &[]);
        };
        let lang = match self.tenants.cached_tenant(&claims.tenant_id).await {
            Ok(tenant) => self.locale(&claims, &tenant, asked).await.ok(),
            Err(_) => None,
        };
        let lang = lang.as_deref().or(asked).unwrap_or("en");
        let frame_ancestors = self
            .tenants
            .frame_ancestors(&claims.tenant_id)
            .await
            .unwrap_or_default();
        assets::refused(refusal, lang, &frame_ancestors)
    }

    fn reader(&self) -> kpi::KpiReader {
        kpi::KpiReader {
            client: self.kpi.clone(),
            keys: self.keys.clone(),
        }
    }
}

/// `GET /dashboard/{page}/{subject}`: the page, or a refusal page.
async fn page(
    State(dashboard): State<Dashboard>,
    Path((page, subject)): Path<(String, String)>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let admitted = match dashboard.admit(&page, &subject, &headers, &query).await {
        Ok(admitted) => admitted,
        Err(refusal) => return dashboard.refused(&refusal, &headers, &query).await,
    };
    let frame_ancestors = match dashboard
        .tenants
        .frame_ancestors(&admitted.claims.tenant_id)
        .await
    {
        Ok(origins) => origins,
        Err(error) => return assets::refused(&unavailable(error), &admitted.locale, &[]),
    };
    assets::page(
        admitted.page,
        &subject,
        admitted.date,
        admitted.tenant.time_zone.name(),
        &admitted.locale,
        &frame_ancestors,
    )
}

/// `GET /dashboard/api/{page}/{subject}`: the page's data.
async fn data(
    State(dashboard): State<Dashboard>,
    Path((page, subject)): Path<(String, String)>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let admitted = dashboard.admit(&page, &subject, &headers, &query).await?;
        let reader = dashboard.reader();
        views::page(dashboard.ask(&reader, &admitted), admitted.page, &subject).await
    };
    match answer.await {
        Ok(json) => {
            let mut response = axum::Json(json).into_response();
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(refusal) => refusal_json(&refusal),
    }
}

fn refusal_json(refusal: &Refusal) -> Response {
    (refusal.status(), axum::Json(refusal.json())).into_response()
}
