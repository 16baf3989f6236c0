//! IngestService over gRPC: authorization, request limits, and the two RPCs.

use std::pin::Pin;

use futures::Stream;
use mentorstream_grpc::{authorize, caller_tenant, invalid_argument};
use mentorstream_proto::ingest::v1::ingest_service_server::IngestService;
use mentorstream_proto::ingest::v1::{
    IngestRequest, IngestResponse, IngestStreamRequest, IngestStreamResponse,
};
use mentorstream_tenancy::{Principal, Scope, Tenants};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::dedup::ClaimToken;
use crate::intake::{Intake, Submitted, TenantScope};
use crate::validate::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS};
use crate::{metrics, stream};

/// Acknowledgements buffered towards a slow stream client before the writer waits.
const STREAM_RESPONSE_BUFFER: usize = 1024;

#[derive(Debug, Clone)]
pub struct Api {
    pub intake: Intake,
    pub tenants: Tenants,
    pub stream_max_in_flight: usize,
    pub shutdown: CancellationToken,
}

type AcknowledgementStream =
    Pin<Box<dyn Stream<Item = Result<IngestStreamResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl IngestService for Api {
    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        let principal = authorize(&request, Scope::Ingest)?;
        let tenant = self.tenant_scope(&principal).await?;
        let batch = request.into_inner();
        check_limits(&batch)?;
        let span = tracing::info_span!(
            "ingest.batch",
            tenant_id = %tenant.tenant_id,
            events = batch.events.len()
        );
        let submitted = batch
            .events
            .into_iter()
            .enumerate()
            .map(|(position, event)| Submitted {
                path: format!("events[{position}]"),
                event: Some(event),
            })
            .collect();
        // Its own task, so a client that goes away mid-request cannot leave claims behind or
        // enqueued records unconfirmed.
        let intake = self.intake.clone();
        let settled = tokio::spawn(
            async move {
                let prepared = intake
                    .prepare(&tenant, &ClaimToken::new(), submitted)
                    .await?;
                Ok(prepared.settle(&intake).await)
            }
            .instrument(span),
        )
        .await
        .map_err(|error| {
            tracing::error!(%error, "ingest batch task failed");
            Status::internal("internal error; see the service log")
        })?
        .map_err(|unavailable| stream::unavailable_status(&unavailable))?;
        if let Some(failure) = settled.failure {
            return Err(stream::unavailable_status(&failure));
        }
        metrics::answered(&settled.verdicts);
        let results = settled
            .verdicts
            .into_iter()
            .zip(0_u32..)
            .map(|(verdict, index)| verdict.into_result(index))
            .collect();
        Ok(Response::new(IngestResponse { results }))
    }

    async fn ingest_stream(
        &self,
        request: Request<Streaming<IngestStreamRequest>>,
    ) -> Result<Response<AcknowledgementStream>, Status> {
        let principal = authorize(&request, Scope::Ingest)?;
        let tenant = self.tenant_scope(&principal).await?;
        let span = tracing::info_span!("ingest.stream", tenant_id = %tenant.tenant_id);
        let (responses, acknowledgements) = mpsc::channel(STREAM_RESPONSE_BUFFER);
        tokio::spawn(
            stream::serve(
                self.intake.clone(),
                tenant,
                request.into_inner(),
                responses,
                self.stream_max_in_flight,
                self.shutdown.clone(),
            )
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(
            acknowledgements,
        ))))
    }
}

impl Api {
    async fn tenant_scope(&self, principal: &Principal) -> Result<TenantScope, Status> {
        let tenant = caller_tenant(&self.tenants, principal)
            .await
            .inspect_err(|status| {
                if status.code() == tonic::Code::Unavailable {
                    metrics::unavailable("tenant");
                }
            })?;
        Ok(TenantScope {
            tenant_id: tenant.tenant_id,
            allowed_lateness: tenant.allowed_lateness,
        })
    }
}

/// Refuses a whole request over the batch limits (google.rpc.BadRequest on `events`).
fn check_limits(batch: &IngestRequest) -> Result<(), Status> {
    let refuse = |description: String| {
        invalid_argument(
            format!("events: {description}"),
            [("events".to_owned(), description)],
        )
    };
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(refuse(format!(
            "a batch holds at most {MAX_BATCH_EVENTS} events, got {}; split it or use IngestStream",
            batch.events.len()
        )));
    }
    let bytes = batch.encoded_len();
    if bytes > MAX_BATCH_BYTES {
        return Err(refuse(format!(
            "a batch is at most {MAX_BATCH_BYTES} bytes (4 MiB) encoded, got {bytes}; split it \
             or use IngestStream"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mentorstream_proto::activity::v1::ActivityEvent;
    use tonic::Code;
    use tonic_types::StatusExt as _;

    use super::*;

    fn violations(status: &Status) -> Vec<(String, String)> {
        status
            .get_error_details()
            .bad_request()
            .expect("bad request details")
            .field_violations
            .iter()
            .map(|violation| (violation.field.clone(), violation.description.clone()))
            .collect()
    }

    #[test]
    fn a_batch_of_1000_events_is_within_limits_and_1001_is_refused() {
        let mut batch = IngestRequest {
            events: vec![ActivityEvent::default(); 1000],
        };
        assert!(check_limits(&batch).is_ok());
        batch.events.push(ActivityEvent::default());
        let status = check_limits(&batch).expect_err("over the limit");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            violations(&status),
            [(
                "events".to_owned(),
                "a batch holds at most 1000 events, got 1001; split it or use IngestStream"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_batch_over_4_mib_is_refused_with_its_size() {
        let event = ActivityEvent {
            source: "x".repeat(5 * 1024 * 1024),
            ..ActivityEvent::default()
        };
        let batch = IngestRequest {
            events: vec![event],
        };
        let status = check_limits(&batch).expect_err("over the limit");
        assert_eq!(
            violations(&status),
            [(
                "events".to_owned(),
                format!(
                    "a batch is at most 4194304 bytes (4 MiB) encoded, got {}; split it or use \
                     IngestStream",
                    batch.encoded_len()
                )
            )]
        );
    }
}
