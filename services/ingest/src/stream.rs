//! IngestStream: events in, acknowledgements out in order, with bounded in-flight.
//!
//! Two stages joined by a channel. The reader takes whatever events the client has already
//! sent (up to a batch), prepares them (validate, claim, enqueue in order) and hands the batch
//! on; the writer settles batches in order and sends one acknowledgement per event. Each event
//! holds a permit from reading until its acknowledgement is sent, so at most
//! `stream_max_in_flight` events are in between; when none is left the reader stops reading and
//! HTTP/2 flow control pushes back on the client.
//!
//! The first event that cannot be published ends the stream with UNAVAILABLE after the
//! acknowledgements of everything before it: the client resumes with the first sequence it has
//! no acknowledgement for, and what was accepted in the meantime answers DUPLICATE.

use std::sync::Arc;

use futures::FutureExt as _;
use mentorstream_proto::ingest::v1::{IngestStreamRequest, IngestStreamResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::dedup::ClaimToken;
use crate::intake::{Intake, Prepared, Submitted, TenantScope, Unavailable};
use crate::metrics;

/// Events prepared together: one Redis round trip and one burst of enqueues.
const MAX_BATCH: usize = 512;
/// Prepared batches waiting for the writer (the permits bound the events in them).
const QUEUED_BATCHES: usize = 64;

pub type Responses = mpsc::Sender<Result<IngestStreamResponse, Status>>;

enum Step {
    Batch {
        prepared: Prepared,
        sequences: Vec<u64>,
        permit: OwnedSemaphorePermit,
    },
    /// Ends the stream with this status once the batches before it are acknowledged.
    End(Status),
}

/// Serves one IngestStream until the client ends it, it fails, or the service shuts down.
pub async fn serve(
    intake: Intake,
    tenant: TenantScope,
    inbound: Streaming<IngestStreamRequest>,
    responses: Responses,
    max_in_flight: usize,
    shutdown: CancellationToken,
) {
    let (steps, queued) = mpsc::channel(QUEUED_BATCHES);
    let stopped = CancellationToken::new();
    let writer = tokio::spawn(
        write_acknowledgements(intake.clone(), queued, responses, stopped.clone())
            .in_current_span(),
    );
    let mut reader = Reader {
        intake,
        tenant,
        token: ClaimToken::new(),
        inbound,
        permits: Arc::new(Semaphore::new(max_in_flight)),
        client_end: None,
    };
    loop {
        // Only waiting for the client is interrupted: a batch being prepared holds claims and
        // enqueued records, so it always reaches the writer to be settled.
        let received = tokio::select! {
            biased;
            () = stopped.cancelled() => break,
            () = shutdown.cancelled() => Received::End(mentorstream_grpc::retry_later(
                "ingest is shutting down; every acknowledged event is accepted: resume with \
                 the first unacknowledged sequence",
                "SHUTTING_DOWN",
                mentorstream_grpc::RETRY_AFTER,
                [],
            )),
            received = reader.receive() => received,
        };
        let step = match received {
            Received::Events(permit, requests) => reader.prepare(permit, requests).await,
            Received::End(status) => Step::End(status),
            Received::Closed => break,
        };
        let end = matches!(step, Step::End(_));
        if steps.send(step).await.is_err() || end {
            break;
        }
    }
    drop(steps);
    if let Err(error) = writer.await {
        tracing::error!(%error, "stream writer panicked");
    }
}

/// The reading stage: turns what the client sent into prepared batches.
struct Reader {
    intake: Intake,
    tenant: TenantScope,
    token: ClaimToken,
    inbound: Streaming<IngestStreamRequest>,
    permits: Arc<Semaphore>,
    /// How the client ended its side, seen while draining a batch: `Some(None)` for a clean
    /// end, `Some(Some(status))` for an error. Reported after that batch.
    client_end: Option<Option<Status>>,
}

/// What the client sent next.
enum Received {
    /// Events already sent, with one permit each.
    Events(OwnedSemaphorePermit, Vec<IngestStreamRequest>),
    /// The client's side failed.
    End(Status),
    /// The client ended its side cleanly.
    Closed,
}

impl Reader {
    /// Waits for the next event, then takes whatever else the client already sent, up to a
    /// batch and the free permits. Cancel-safe: a permit or a message not yet taken stays
    /// where it was.
    async fn receive(&mut self) -> Received {
        if let Some(end) = self.client_end.take() {
            return end.map_or(Received::Closed, Received::End);
        }
        let Ok(mut permit) = self.permits.clone().acquire_owned().await else {
            return Received::Closed;
        };
        let mut requests = match self.inbound.message().await {
            Ok(Some(request)) => vec![request],
            Ok(None) => return Received::Closed,
            Err(status) => return Received::End(status),
        };
        while requests.len() < MAX_BATCH {
            let Ok(more) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            match self.inbound.message().now_or_never() {
                Some(Ok(Some(request))) => {
                    permit.merge(more);
                    requests.push(request);
                }
                Some(Ok(None)) => {
                    self.client_end = Some(None);
                    break;
                }
                Some(Err(status)) => {
                    self.client_end = Some(Some(status));
                    break;
                }
                None => break,
            }
        }
        Received::Events(permit, requests)
    }

    async fn prepare(
        &self,
        permit: OwnedSemaphorePermit,
        requests: Vec<IngestStreamRequest>,
    ) -> Step {
        let (sequences, submitted): (Vec<u64>, Vec<Submitted>) = requests
            .into_iter()
            .map(|request| {
                let submitted = Submitted {
                    path: "event".to_owned(),
                    event: request.event,
                };
                (request.sequence, submitted)
            })
            .unzip();
        match self
            .intake
            .prepare(&self.tenant, &self.token, submitted)
            .await
        {
            Ok(prepared) => Step::Batch {
                prepared,
                sequences,
                permit,
            },
            Err(unavailable) => Step::End(unavailable_status(&unavailable)),
        }
    }
}

async fn write_acknowledgements(
    intake: Intake,
    mut queued: mpsc::Receiver<Step>,
    responses: Responses,
    stopped: CancellationToken,
) {
    let mut ended = false;
    while let Some(step) = queued.recv().await {
        match step {
            Step::Batch {
                prepared,
                sequences,
                permit,
            } => {
                let settled = prepared.settle(&intake).await;
                // After the end, batches are still settled so their claims are confirmed or
                // released, but nothing more is answered.
                if ended {
                    continue;
                }
                metrics::answered(&settled.verdicts);
                for (sequence, verdict) in sequences.into_iter().zip(settled.verdicts) {
                    let response = IngestStreamResponse {
                        sequence,
                        result: Some(verdict.into_result(0)),
                    };
                    if responses.send(Ok(response)).await.is_err() {
                        ended = true;
                        break;
                    }
                }
                drop(permit);
                if let Some(failure) = settled.failure
                    && !ended
                {
                    let _ = responses.send(Err(unavailable_status(&failure))).await;
                    ended = true;
                }
            }
            Step::End(status) => {
                if !ended {
                    let _ = responses.send(Err(status)).await;
                    ended = true;
                }
            }
        }
        if ended {
            stopped.cancel();
        }
    }
}

pub fn unavailable_status(unavailable: &Unavailable) -> Status {
    metrics::unavailable(unavailable.cause());
    tracing::warn!(error = %unavailable, "answering UNAVAILABLE");
    let reason = match unavailable.cause() {
        "kafka" => "BROKER_UNAVAILABLE",
        "redis" => "DEDUP_STORE_UNAVAILABLE",
        "control_database" => "CONTROL_DATABASE_UNAVAILABLE",
        _ => "CONTENDED",
    };
    mentorstream_grpc::retry_later(
        format!(
            "{unavailable}; nothing acknowledged is lost and nothing else was accepted twice: \
             retry (what was accepted meanwhile answers DUPLICATE)"
        ),
        reason,
        mentorstream_grpc::RETRY_AFTER,
        [],
    )
}
