use std::sync::Arc;

use mentorstream_config::TlsConfig;
use mentorstream_tenancy::Authenticate;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use tonic_health::server::HealthReporter;

use crate::AuthLayer;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    Tls(tonic::transport::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(tonic::transport::Error),
}

/// The rustls server configuration of `config`, or `None` when TLS is off. A client CA makes
/// client certificates mandatory (mTLS).
pub fn tls_config(config: &TlsConfig) -> Result<Option<ServerTlsConfig>, GrpcError> {
    if !config.enabled {
        return Ok(None);
    }
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| GrpcError::TlsFile {
            path: path.display().to_string(),
            source,
        })
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read(&config.cert_path)?,
        read(&config.key_path)?,
    ));
    if !config.client_ca_path.as_os_str().is_empty() {
        tls = tls.client_ca_root(Certificate::from_pem(read(&config.client_ca_path)?));
    }
    Ok(Some(tls))
}

/// Serves `routes` plus health and reflection on `listener` until `shutdown` is cancelled,
/// then lets in-flight calls finish. `configure_health` marks the services as serving.
pub async fn serve(
    listener: TcpListener,
    tls: &TlsConfig,
    authenticator: Arc<dyn Authenticate>,
    routes: Routes,
    health: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    shutdown: CancellationToken,
) -> Result<(), GrpcError> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mentorstream_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mentorstream_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let mut builder = Server::builder();
    if let Some(tls) = tls_config(tls)? {
        builder = builder.tls_config(tls).map_err(GrpcError::Tls)?;
    }
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let stopping = shutdown.clone();
    let result = builder
        .layer(AuthLayer::new(authenticator))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            stopping.cancelled().await;
            // Probes see NOT_SERVING while in-flight calls drain.
            health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        })
        .await;
    result.map_err(GrpcError::Serve)
}
