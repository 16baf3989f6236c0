//! gRPC server plumbing shared by the four services.
//!
//! [`serve`] runs a tonic server with `grpc.health.v1`, server reflection (v1 and v1alpha, so
//! grpcurl 1.8 works), the API-key [`auth`] layer, a tracing span per call continuing the
//! caller's W3C trace, optional TLS/mTLS, and graceful shutdown.

pub mod auth;
pub mod error;
pub mod json;
pub mod metrics;
pub mod openapi;
mod server;

pub use auth::{AuthLayer, authorize, caller_tenant};
pub use error::{
    ERROR_DOMAIN, RETRY_AFTER, ServiceError, field_violation, invalid_argument, refusal,
    retry_later,
};
pub use server::{GrpcError, Health, HealthReporter, ServingStatus, serve, tls_config};
