use std::sync::Arc;

use mentorstream_config::TlsConfig;
use mentorstream_tenancy::Authenticate;
use prost::Message;
use prost_types::FileDescriptorSet;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
pub use tonic_health::server::HealthReporter;
use tonic_health::server::HealthService;

/// Where every server serves the compiled contracts, without a key.
pub const DESCRIPTORS_PATH: &str = "/mentorstream.binpb";

/// How often an idle connection is pinged, and how long a ping may go unanswered.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The `grpc.health.v1` service of one server and the handle that sets its statuses.
#[derive(Debug)]
pub struct Health {
    pub reporter: HealthReporter,
    service: HealthServer<HealthService>,
}

impl Health {
    pub fn new() -> Self {
        let reporter = HealthReporter::new();
        let service = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        Self { reporter, service }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

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
    #[error("cannot read the descriptors for HTTP/JSON: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
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

/// The Mentorstream descriptor set reduced to the services in `served` (full names), so
/// reflection lists what this server answers rather than every contract.
fn reflection_descriptors(served: &[&str]) -> Vec<u8> {
    let mut set = FileDescriptorSet::decode(mentorstream_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|_| unreachable!("the embedded descriptor set is generated at build time"));
    for file in &mut set.file {
        let package = file.package().to_owned();
        file.service
            .retain(|service| served.contains(&format!("{package}.{}", service.name()).as_str()));
    }
    set.encode_to_vec()
}

/// `routes` plus their HTTP/JSON form (`/v1/…`, crate::json) and `/openapi.json`. A JSON call
/// goes through the same API-key layer as a gRPC one.
fn with_json(
    routes: Routes,
    served: &[&str],
    authenticator: &Arc<dyn Authenticate>,
) -> Result<Routes, GrpcError> {
    let api = crate::json::JsonApi::new(served)?;
    let document =
        crate::openapi::document(&api, &format!("Mentorstream: {}", served.join(", "))).to_string();
    let grpc = tower::Layer::layer(&AuthLayer::new(authenticator.clone()), routes.clone());
    let transcode = move |request: http::Request<axum::body::Body>| {
        let (api, grpc) = (api.clone(), grpc.clone());
        async move { api.call(request, grpc).await }
    };
    let openapi = move || {
        let document = document.clone();
        async move { ([(http::header::CONTENT_TYPE, "application/json")], document) }
    };
    // The contracts compiled (FileDescriptorSet: every message, the services this server
    // answers), for clients that build messages at run time, e.g. subscribers of the KPI
    // topic (docs/kpi-topic.md).
    let published = bytes::Bytes::from(reflection_descriptors(served));
    let descriptors = move || {
        let published = published.clone();
        async move {
            (
                [(http::header::CONTENT_TYPE, "application/octet-stream")],
                published,
            )
        }
    };
    let json = axum::Router::new()
        .route("/openapi.json", axum::routing::get(openapi))
        .route(DESCRIPTORS_PATH, axum::routing::get(descriptors))
        .route("/v1/{service}/{method}", axum::routing::any(transcode));
    Ok(Routes::from(routes.into_axum_router().merge(json)))
}

/// Serves `routes` (whose services are named in `served`) plus health and reflection on
/// `listener` until `shutdown` is cancelled, then lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    tls: &TlsConfig,
    authenticator: Arc<dyn Authenticate>,
    served: &[&str],
    routes: Routes,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), GrpcError> {
    let descriptors = reflection_descriptors(served);
    // google.rpc too, so that clients resolving error details by reflection (grpcurl) can
    // decode BadRequest, ErrorInfo and RetryInfo.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(&descriptors)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(&descriptors)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Pings keep long streams (WatchKpis, IngestStream) open through idle-timing proxies and
    // find dead peers.
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
        // HTTP/JSON clients speak HTTP/1.1.
        .accept_http1(true);
    if let Some(tls) = tls_config(tls)? {
        builder = builder.tls_config(tls).map_err(GrpcError::Tls)?;
    }
    let routes = routes
        .add_service(health.service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let routes = with_json(routes, served, &authenticator)?;
    let stopping = shutdown.clone();
    let reporter = health.reporter.clone();
    let result = builder
        .layer(crate::metrics::MetricsLayer::new(served))
        .layer(AuthLayer::new(authenticator))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            stopping.cancelled().await;
            // Probes see NOT_SERVING while in-flight calls drain.
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        })
        .await;
    result.map_err(GrpcError::Serve)
}
