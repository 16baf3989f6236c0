//! Observability shared by every service: structured logs (human or JSON), OpenTelemetry
//! traces with W3C trace-context propagation, Prometheus metrics, and the admin HTTP endpoint
//! (`/metrics`, `/healthz`).
//!
//! Spans always carry OpenTelemetry ids, exported or not, so trace context crosses every hop
//! (gRPC metadata, Kafka headers) even where no collector is configured.

mod admin;
pub mod propagation;

use std::sync::OnceLock;

use mentorstream_config::{LogFormat, TelemetryConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use admin::serve_admin;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid telemetry.log_filter `{filter}`: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialised,
    #[error("cannot install the Prometheus recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
}

/// Handles to what [`init`] installed; [`Telemetry::shutdown`] flushes the trace exporter.
#[derive(Debug, Clone)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    metrics: PrometheusHandle,
}

impl Telemetry {
    /// The Prometheus text exposition of every metric recorded in this process.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Exports the spans still buffered. Part of the shutdown path.
    pub fn shutdown(&self) {
        if let Err(error) = self.tracer_provider.shutdown() {
            tracing::warn!(%error, "trace exporter did not flush cleanly");
        }
    }
}

/// Installs the global subscriber, propagator and metrics recorder. Call once per process
/// (`mentorstream up` runs four services in one process over one [`Telemetry`]).
pub fn init(config: &TelemetryConfig, service_name: &str) -> Result<Telemetry, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => filter,
        _ => config.log_filter.clone(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|source| TelemetryError::Filter {
        filter: filter.clone(),
        source,
    })?;

    let tracer_provider = tracer_provider(config, service_name)?;
    // Spans carry trace context whatever the log filter says: a quiet log must not break traces.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer_provider.tracer(service_name.to_owned()))
        .with_filter(LevelFilter::INFO);
    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Human => tracing_subscriber::fmt::layer().boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(env_filter))
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    let metrics = prometheus().install_recorder()?;
    Ok(Telemetry {
        tracer_provider,
        metrics,
    })
}

/// The Prometheus exporter: metrics named `*_seconds` are histograms with buckets from 100 µs
/// to 10 s (latencies of broker and store round trips), and `*_records` with buckets from 1 to
/// 10,000 (batch sizes), not summaries, so they aggregate across replicas.
fn prometheus() -> PrometheusBuilder {
    const LATENCY_BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ];
    // Sizes: records in a batch.
    const SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .expect("the bucket list is not empty")
        .set_buckets_for_metric(Matcher::Suffix("_records".into()), SIZE_BUCKETS)
        .expect("the bucket list is not empty")
}

/// Telemetry for tests: initialised once per test binary, logs to the test writer.
pub fn init_for_tests() -> Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY
        .get_or_init(|| {
            let tracer_provider = SdkTracerProvider::builder().build();
            let otel_layer = tracing_opentelemetry::layer()
                .with_tracer(tracer_provider.tracer("tests"))
                .with_filter(LevelFilter::INFO);
            let log_filter =
                EnvFilter::new(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
            let _ = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_test_writer()
                        .with_filter(log_filter),
                )
                .with(otel_layer)
                .try_init();
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let metrics = prometheus()
                .install_recorder()
                .unwrap_or_else(|_| prometheus().build_recorder().handle());
            Telemetry {
                tracer_provider,
                metrics,
            }
        })
        .clone()
}

fn tracer_provider(
    config: &TelemetryConfig,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if config.otlp_endpoint.is_empty() {
        return Ok(builder.build());
    }
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: config.otlp_endpoint.clone(),
            source,
        })?;
    Ok(builder.with_batch_exporter(exporter).build())
}
