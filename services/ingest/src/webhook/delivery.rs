//! `POST /v1/webhooks/{source_id}`: one signed delivery of a platform's own JSON, taken with
//! the guarantees of IngestService.
//!
//! The signature is checked before anything else is read; the payload is mapped with the
//! source's mapping into one event whose `source` is the source's name and whose
//! `source_event_id` is the `webhook-id` (unless the mapping names one), and that event goes
//! through the same validation, deduplication and publishing as an Ingest call. 200 comes
//! only after the broker acknowledged the event; a repeated `webhook-id` answers 200
//! `DUPLICATE` and publishes nothing; when Kafka or Redis cannot be reached the answer is 503
//! with `Retry-After` and nothing was published, so the sender's retry lands exactly once.

use axum::extract::{Path, State};
use bytes::Bytes;
use chrono::Utc;
use http::HeaderMap;
use mentorstream_grpc::json::{json_ok, refusal_response};
use mentorstream_grpc::{field_violation, invalid_argument, refusal};
use mentorstream_proto::common::v1::FieldViolation;
use mentorstream_proto::ingest::v1::{RejectionReason, WebhookMapping};
use mentorstream_tenancy::{TenancyError, Tenants};
use prost::Message as _;
use tonic::{Code, Status};
use tracing::Instrument as _;

use super::mapping::{self, Mapped};
use super::signature::{self, Headers, Unverified};
use crate::dedup::ClaimToken;
use crate::intake::{Intake, Submitted, TenantScope, Verdict};
use crate::{metrics, stream};

/// Largest payload taken: platforms send one object per delivery.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the delivery route needs.
#[derive(Debug, Clone)]
pub struct Deliveries {
    pub intake: Intake,
    pub tenants: Tenants,
}

/// The route, ready to be merged into the service's router.
pub fn router(deliveries: Deliveries) -> axum::Router {
    axum::Router::new()
        .route("/v1/webhooks/{source_id}", axum::routing::post(deliver))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(deliveries)
}

async fn deliver(
    State(deliveries): State<Deliveries>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> http::Response<tonic::body::Body> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            metrics::webhook("refused");
            return refusal_response(&field_violation(
                "body",
                format!(
                    "cannot be read ({rejection}); a delivery is at most {MAX_BODY_BYTES} bytes"
                ),
            ));
        }
    };
    let span = tracing::info_span!(
        "ingest.webhook",
        source_id,
        webhook_id = tracing::field::Empty
    );
    // Its own task, so a sender that hangs up cannot leave a claim behind.
    let answered = tokio::spawn(
        async move { deliveries.take(&source_id, &headers, &body).await }.instrument(span),
    )
    .await
    .unwrap_or_else(|error| {
        tracing::error!(%error, "webhook delivery task failed");
        Err(Status::internal("internal error; see the service log"))
    });
    match answered {
        Ok(receipt) => {
            metrics::webhook(receipt.status);
            json_ok(&serde_json::json!({
                "status": receipt.status,
                "sourceEventId": receipt.source_event_id,
            }))
        }
        Err(status) => {
            metrics::webhook(match status.code() {
                Code::Unavailable => "unavailable",
                Code::Unauthenticated => "unverified",
                _ => "refused",
            });
            refusal_response(&status)
        }
    }
}

/// A delivery that was taken.
struct Receipt {
    status: &'static str,
    source_event_id: String,
}

impl Deliveries {
    async fn take(
        &self,
        source_id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Receipt, Status> {
        let signed = Headers {
            id: header(headers, "webhook-id")?,
            timestamp: header(headers, "webhook-timestamp")?,
            signature: header(headers, "webhook-signature")?,
        };
        tracing::Span::current().record("webhook_id", signed.id);
        let source = self
            .tenants
            .webhook_source(None, source_id)
            .await
            .map_err(super::admin::status)?;
        signature::verify(
            signed,
            body,
            source.secrets.iter().map(|secret| secret.secret.as_str()),
            Utc::now(),
        )
        .map_err(|unverified| unverified_status(&unverified))?;
        let payload: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| field_violation("body", format!("is not JSON: {error}")))?;
        let mapping = WebhookMapping::decode(source.mapping.as_slice()).map_err(|error| {
            tracing::error!(%error, "a stored webhook mapping does not decode");
            Status::internal("internal error; see the service log")
        })?;
        let Mapped { mut event, origins } =
            mapping::apply(&mapping, &payload).map_err(|violations| {
                invalid_argument(
                    format!(
                        "the payload does not map to an event: {}: {}",
                        violations[0].0, violations[0].1
                    ),
                    violations,
                )
            })?;
        event.source.clone_from(&source.name);
        if event.source_event_id.is_empty() {
            signed.id.clone_into(&mut event.source_event_id);
        }
        let source_event_id = event.source_event_id.clone();
        let tenant = self.tenant_scope(&source.tenant_id).await?;
        let verdict = self.publish(&tenant, event).await?;
        match verdict {
            Verdict::Accepted => Ok(Receipt {
                status: "ACCEPTED",
                source_event_id,
            }),
            Verdict::Duplicate => Ok(Receipt {
                status: "DUPLICATE",
                source_event_id,
            }),
            Verdict::Rejected(rejection) if rejection.reason == RejectionReason::Conflict => {
                Err(refusal(
                    Code::AlreadyExists,
                    "WEBHOOK_ID_CONFLICT",
                    [("source_event_id", source_event_id.as_str())],
                    format!(
                        "`{source_event_id}` was accepted before with other content; a new event \
                     needs a new webhook-id"
                    ),
                ))
            }
            Verdict::Rejected(rejection) => {
                let violations = in_payload_terms(rejection.violations, &origins);
                Err(invalid_argument(
                    format!(
                        "the mapped event is not valid: {}: {}",
                        violations[0].0, violations[0].1
                    ),
                    violations,
                ))
            }
        }
    }

    async fn tenant_scope(&self, tenant_id: &str) -> Result<TenantScope, Status> {
        let tenant = self
            .tenants
            .cached_tenant(tenant_id)
            .await
            .map_err(|error| match error {
                TenancyError::UnknownTenant(_) => {
                    Status::not_found("this source's tenant no longer exists")
                }
                error => super::admin::status(error),
            })?;
        Ok(TenantScope {
            tenant_id: tenant.tenant_id,
            allowed_lateness: tenant.allowed_lateness,
        })
    }

    /// Validates, deduplicates and publishes the one event, as Ingest does.
    async fn publish(
        &self,
        tenant: &TenantScope,
        event: mentorstream_proto::activity::v1::ActivityEvent,
    ) -> Result<Verdict, Status> {
        let submitted = vec![Submitted {
            path: "event".to_owned(),
            event: Some(event),
        }];
        let prepared = self
            .intake
            .prepare(tenant, &ClaimToken::new(), submitted)
            .await
            .map_err(|unavailable| stream::unavailable_status(&unavailable))?;
        let settled = prepared.settle(&self.intake).await;
        if let Some(failure) = settled.failure {
            return Err(stream::unavailable_status(&failure));
        }
        metrics::answered(&settled.verdicts);
        settled
            .verdicts
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("internal error; see the service log"))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Status> {
    let value = headers.get(name).ok_or_else(|| {
        refusal(
            Code::Unauthenticated,
            "WEBHOOK_HEADER_MISSING",
            [("header", name)],
            format!(
                "missing header `{name}`: a delivery carries webhook-id, webhook-timestamp and \
                 webhook-signature (Standard Webhooks)"
            ),
        )
    })?;
    value
        .to_str()
        .map_err(|_| field_violation(name, "must be visible ASCII"))
}

fn unverified_status(unverified: &Unverified) -> Status {
    let reason = match unverified {
        Unverified::MalformedTimestamp(_) => "WEBHOOK_TIMESTAMP_MALFORMED",
        Unverified::OutsideWindow { .. } => "WEBHOOK_TIMESTAMP_OUTSIDE_WINDOW",
        Unverified::BadSignature => "WEBHOOK_SIGNATURE_INVALID",
    };
    refusal(Code::Unauthenticated, reason, [], unverified.to_string())
}

/// The validation's violations (`event.order_placed.volume`) named by where the payload had
/// the value (`/data/volume`), when it came from the payload.
fn in_payload_terms(
    violations: Vec<FieldViolation>,
    origins: &[(String, String)],
) -> Vec<(String, String)> {
    violations
        .into_iter()
        .map(|violation| {
            let field = violation
                .field
                .strip_prefix("event.")
                .unwrap_or(&violation.field);
            let origin = origins
                .iter()
                .find(|(mapped, _)| mapped == field || mapped.starts_with(&format!("{field}.")));
            match origin {
                Some((_, pointer)) => (
                    pointer.clone(),
                    format!("{field}: {}", violation.description),
                ),
                None => (field.to_owned(), violation.description),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_named_by_the_payload_pointer_they_came_from() {
        let origins = [
            ("occurred_at".to_owned(), "/timestamp".to_owned()),
            (
                "order_placed.volume.value".to_owned(),
                "/data/volume".to_owned(),
            ),
        ];
        let violation = |field: &str, description: &str| FieldViolation {
            field: field.into(),
            description: description.into(),
        };
        assert_eq!(
            in_payload_terms(
                vec![
                    violation("event.order_placed.volume", "must have at most 2 decimals"),
                    violation("event.occurred_at", "is more than 35 days old"),
                    violation("event.source_event_id", "must be at most 128 characters"),
                ],
                &origins
            ),
            [
                (
                    "/data/volume".to_owned(),
                    "order_placed.volume: must have at most 2 decimals".to_owned()
                ),
                (
                    "/timestamp".to_owned(),
                    "occurred_at: is more than 35 days old".to_owned()
                ),
                (
                    "source_event_id".to_owned(),
                    "must be at most 128 characters".to_owned()
                ),
            ]
        );
    }
}
