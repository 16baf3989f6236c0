//! Mentorship service: programs, groups, micro-sessions, feedback and development plans.
//!
//! Until this service's issue lands it serves health, reflection and authentication, and its
//! RPCs answer UNIMPLEMENTED.

use mentorstream_config::{Config, ServiceEndpoints};
use mentorstream_proto::mentorship::v1::mentorship_service_server::{
    MentorshipService, MentorshipServiceServer,
};
use mentorstream_runtime::{Context, Listeners, host_service};

pub const SERVICE: &str = "mentorship";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the mentorship listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.mentorship.endpoints()
}

/// Serves until the context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    host_service(
        SERVICE,
        &context,
        listeners,
        MentorshipServiceServer::new(Api),
    )
    .await?;
    Ok(())
}

#[derive(Debug)]
struct Api;

#[tonic::async_trait]
impl MentorshipService for Api {}
