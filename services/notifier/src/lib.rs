//! Notifier: durable reminders, nudges and digests over chat-bot webhooks and e-mail.
//!
//! Until this service's issue lands it serves health, reflection and authentication, and its
//! RPCs answer UNIMPLEMENTED.

use mentorstream_config::{Config, ServiceEndpoints};
use mentorstream_proto::notification::v1::notification_service_server::{
    NotificationService, NotificationServiceServer,
};
use mentorstream_runtime::{Context, Listeners, host_service};

pub const SERVICE: &str = "notifier";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the notifier listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.notifier.endpoints()
}

/// Serves until the context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    host_service(
        SERVICE,
        &context,
        listeners,
        NotificationServiceServer::new(Api),
    )
    .await?;
    Ok(())
}

#[derive(Debug)]
struct Api;

#[tonic::async_trait]
impl NotificationService for Api {}
