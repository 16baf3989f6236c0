//! The admin HTTP endpoint of a service: `/metrics` for Prometheus, `/healthz` for probes.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Telemetry;

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` is cancelled. `/healthz`
/// answers 503 once shutdown has begun, so load balancers stop routing before the drain ends.
pub async fn serve_admin(
    listener: TcpListener,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let health = shutdown.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let telemetry = telemetry.clone();
                async move { telemetry.render_metrics() }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let shutting_down = health.is_cancelled();
                async move {
                    if shutting_down {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
