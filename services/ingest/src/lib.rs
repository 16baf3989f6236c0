//! Ingest service: validated, idempotent, durable intake of activity events over gRPC.
//!
//! A request's events are validated ([`validate`]), deduplicated by (tenant, source,
//! source_event_id) in Redis ([`dedup`]) and published to the activity topic keyed by tenant
//! and partner ([`intake`]). ACCEPTED is answered only after the broker acknowledged the record;
//! when Kafka or Redis cannot be reached the caller gets UNAVAILABLE and a retry is safe: it
//! never answers DUPLICATE for an event that was not published. IngestStream ([`stream`]) does
//! the same for an unbounded stream with bounded in-flight events. Platforms that cannot call
//! the API push signed webhooks instead ([`webhook`]), taken with the same guarantees.

mod api;
pub mod dedup;
pub mod intake;
mod metrics;
mod stream;
pub mod validate;
pub mod webhook;

use std::time::Duration;
use tonic::codec::CompressionEncoding;

use mentorstream_config::{Config, ServiceEndpoints};
use mentorstream_kafka::admin::{all_topics, ensure_topics};
use mentorstream_kafka::{KafkaError, Producer};
use mentorstream_proto::ingest::v1::ingest_service_server::IngestServiceServer;
use mentorstream_proto::ingest::v1::webhook_service_server::WebhookServiceServer;
use mentorstream_redis::KeySpace;
use mentorstream_runtime::{Context, Listeners, host_services};
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::dedup::Dedup;
use crate::intake::Intake;

pub const SERVICE: &str = "ingest";

/// How much longer than the Kafka delivery timeout a claim lives: a publish that is still
/// running when its claim expires could be published twice.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the ingest listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Redis(#[from] mentorstream_redis::ConnectError),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.ingest.endpoints()
}

/// Serves until the context's shutdown begins, then waits for what the broker still owes.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    let config = &context.config;
    let topic = config.kafka.topics.activity.clone();
    // Every service provisions every topic, so each gets its policy whoever starts first.
    ensure_topics(&config.kafka, &all_topics(&config.kafka.topics)).await?;
    let producer = Producer::new(&config.kafka, config.ingest.delivery_timeout)?;
    let dedup = Dedup::new(
        mentorstream_redis::connect(&config.redis)?,
        KeySpace::new(&config.redis.key_prefix, SERVICE),
        config.ingest.delivery_timeout + CLAIM_MARGIN,
    );
    let intake = Intake::new(
        producer.clone(),
        dedup,
        context.tenants.clone(),
        topic,
        config.kafka.partitions,
        config.ingest.claim_wait,
    );
    let deliveries = webhook::delivery::router(webhook::delivery::Deliveries {
        intake: intake.clone(),
        tenants: context.tenants.clone(),
    });
    let admin = WebhookServiceServer::new(webhook::admin::WebhookAdmin {
        tenants: context.tenants.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd)
    .send_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Zstd);
    let api = api::Api {
        intake,
        tenants: context.tenants.clone(),
        stream_max_in_flight: config.ingest.stream_max_in_flight,
        shutdown: context.shutdown.token(),
    };
    let server = IngestServiceServer::new(api)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd)
        // Larger than the 4 MiB batch limit, so an oversized batch gets a precise
        // INVALID_ARGUMENT instead of a transport error.
        .max_decoding_message_size(2 * validate::MAX_BATCH_BYTES);
    let routes = Routes::new(server)
        .add_service(admin)
        .into_axum_router()
        .merge(deliveries);
    let served = host_services(
        SERVICE,
        &context,
        listeners,
        &[
            <IngestServiceServer<api::Api> as NamedService>::NAME,
            <WebhookServiceServer<webhook::admin::WebhookAdmin> as NamedService>::NAME,
        ],
        Routes::from(routes),
    )
    .await;
    if let Err(error) = producer.flush(config.ingest.delivery_timeout) {
        tracing::warn!(%error, "records still unacknowledged at shutdown");
    }
    served?;
    Ok(())
}
