//! What every server reports on `/metrics` about the calls it answers:
//!
//! - `mentorstream_server_requests_total{protocol, method, code}`: calls by protocol (`grpc`,
//!   `http`), method (`Service/Method` of the contracts — gRPC and its HTTP/JSON form name the
//!   same — or `dashboard`, `webhook`, `other`: never a path a caller made up) and code (the
//!   gRPC status name, or the HTTP status).
//! - `mentorstream_server_request_seconds{protocol, method}`: until the answer's headers.
//!
//! A gRPC answer's status is read from its headers (a refusal comes "trailers only"); one sent
//! in the trailers after a streamed body counts as OK.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use prost::Message as _;
use prost_types::FileDescriptorSet;
use tonic::body::Body;
use tower::{Layer, Service};

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The method label of every path the server answers with a contract's method.
#[derive(Debug, Default)]
struct Methods {
    /// `/pkg.Service/Method` and `/v1/{short}/{Method}` → `Service/Method`.
    labels: HashMap<String, String>,
}

impl Methods {
    fn of(served: &[&str]) -> Self {
        let set =
            FileDescriptorSet::decode(mentorstream_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let mut labels = HashMap::new();
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                if !served.contains(&full.as_str()) {
                    continue;
                }
                let short = crate::json::short_name(service.name());
                for method in &service.method {
                    let label = format!("{}/{}", service.name(), method.name());
                    labels.insert(format!("/{full}/{}", method.name()), label.clone());
                    labels.insert(format!("/v1/{short}/{}", method.name()), label);
                }
            }
        }
        Self { labels }
    }

    fn label(&self, path: &str) -> String {
        if let Some(label) = self.labels.get(path) {
            return label.clone();
        }
        let family = if path.starts_with("/grpc.health.") {
            "Health"
        } else if path.starts_with("/grpc.reflection.") {
            "Reflection"
        } else if path.starts_with("/dashboard") {
            "dashboard"
        } else if path.starts_with("/v1/webhooks/") {
            "webhook"
        } else if path == "/openapi.json" {
            "openapi"
        } else {
            "other"
        };
        family.to_owned()
    }
}

/// Counts and times every call (the outermost layer).
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    methods: Arc<Methods>,
}

impl MetricsLayer {
    /// For a server answering the services named in `served`.
    pub fn new(served: &[&str]) -> Self {
        Self {
            methods: Arc::new(Methods::of(served)),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            methods: self.methods.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    methods: Arc<Methods>,
}

/// The gRPC status name of a code number.
fn grpc_code(value: &str) -> String {
    value
        .parse::<i32>()
        .map(tonic::Code::from)
        .map_or_else(|_| "Unknown".to_owned(), |code| format!("{code:?}"))
}

fn code_of(grpc: bool, response: &Response<Body>) -> String {
    if !grpc {
        return response.status().as_u16().to_string();
    }
    match response.headers().get("grpc-status") {
        Some(status) => grpc_code(status.to_str().unwrap_or("2")),
        None if response.status().is_success() => "Ok".to_owned(),
        None => "Unavailable".to_owned(),
    }
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was made ready must serve this call; keep a fresh clone for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        let method = self.methods.label(request.uri().path());
        let started = Instant::now();
        Box::pin(async move {
            let response = inner.call(request).await?;
            let protocol = if grpc { "grpc" } else { "http" };
            metrics::counter!(
                "mentorstream_server_requests_total",
                "protocol" => protocol,
                "method" => method.clone(),
                "code" => code_of(grpc, &response),
            )
            .increment(1);
            metrics::histogram!(
                "mentorstream_server_request_seconds",
                "protocol" => protocol,
                "method" => method,
            )
            .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contracts_methods_name_a_label() {
        let methods = Methods::of(&["mentorstream.kpi.v1.KpiService"]);
        assert_eq!(
            methods.label("/mentorstream.kpi.v1.KpiService/GetScorecard"),
            "KpiService/GetScorecard"
        );
        assert_eq!(
            methods.label("/v1/kpi/GetScorecard"),
            "KpiService/GetScorecard"
        );
        assert_eq!(methods.label("/v1/kpi/NoSuchMethod"), "other");
        assert_eq!(methods.label("/anything/a-caller/made-up"), "other");
        assert_eq!(methods.label("/grpc.health.v1.Health/Check"), "Health");
        assert_eq!(methods.label("/dashboard/mentor/p-1"), "dashboard");
        // A service this server does not answer has no label of its own.
        assert_eq!(
            methods.label("/mentorstream.ingest.v1.IngestService/Ingest"),
            "other"
        );
        assert_eq!(grpc_code("5"), "NotFound");
        assert_eq!(grpc_code("x"), "Unknown");
    }
}
