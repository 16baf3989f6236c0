//! KPI aggregator: exact windowed KPIs in Redis, group and team roll-ups, signals, KPI queries.
//!
//! Until this service's issue lands it serves health, reflection and authentication, and its
//! RPCs answer UNIMPLEMENTED.

pub mod calendar;
pub mod fold;
pub mod metric;
pub mod store;

use mentorstream_config::{Config, ServiceEndpoints};
use mentorstream_proto::kpi::v1::kpi_service_server::{KpiService, KpiServiceServer};
use mentorstream_runtime::{Context, Listeners, host_service};

pub const SERVICE: &str = "kpi";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the kpi listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.kpi.clone()
}

/// Serves until the context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    host_service(SERVICE, &context, listeners, KpiServiceServer::new(Api)).await?;
    Ok(())
}

#[derive(Debug)]
struct Api;

#[tonic::async_trait]
impl KpiService for Api {}
