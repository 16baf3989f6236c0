//! Ingest service: validated, idempotent, durable intake of activity events over gRPC.
//!
//! Until this service's issue lands it serves health, reflection and authentication, and its
//! RPCs answer UNIMPLEMENTED.

use mentorstream_config::{Config, ServiceEndpoints};
use mentorstream_proto::ingest::v1::ingest_service_server::{IngestService, IngestServiceServer};
use mentorstream_runtime::{Context, Listeners, host_service};

pub const SERVICE: &str = "ingest";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the ingest listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.ingest.clone()
}

/// Serves until the context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    host_service(SERVICE, &context, listeners, IngestServiceServer::new(Api)).await?;
    Ok(())
}

#[derive(Debug)]
struct Api;

#[tonic::async_trait]
impl IngestService for Api {}
