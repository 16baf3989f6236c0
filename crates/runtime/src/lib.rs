//! What every service process shares.
//!
//! A service library exposes `run(&Context, Listeners)`: the [`Context`] carries the typed
//! configuration, telemetry, tenant registry and the shutdown path, passed down explicitly.
//! A service binary is [`service_main`] around that function; `mentorstream up` builds one
//! context and runs the four services in one process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use mentorstream_actions::Signer;
use mentorstream_config::{Config, ExposeSecret, ServiceEndpoints};
use mentorstream_grpc::{GrpcError, HealthReporter};
use mentorstream_shutdown::Shutdown;
use mentorstream_telemetry::Telemetry;
use mentorstream_tenancy::Tenants;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;

/// Every Mentorstream process allocates with jemalloc. glibc's per-thread arenas (tokio workers,
/// librdkafka's threads) kept the aggregator's resident set well above its live heap
/// (docs/benchmarks.md, memory); jemalloc returns freed pages to the system. It is built with
/// one arena (`.cargo/config.toml`), because every arena holds its freed pages for a while.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Everything a service needs from its process.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub telemetry: Telemetry,
    pub tenants: Tenants,
    /// The signer of `actions.signing_key` (chat-bot buttons, dashboard links); None when the
    /// key is empty, which turns those off.
    pub signer: Option<Signer>,
    pub shutdown: Shutdown,
}

impl Context {
    /// Connects to the control database. Telemetry must be initialised by the caller.
    pub async fn connect(config: Config, telemetry: Telemetry) -> anyhow::Result<Self> {
        let tenants = Tenants::connect(
            config.postgres.url.expose_secret(),
            config.postgres.max_connections,
        )
        .await
        .context("cannot connect to the control database (postgres.url)")?
        .with_sealer(
            mentorstream_tenancy::sealed::Sealer::from_keys(config.secrets.keys.expose_secret())
                .context("secrets.keys")?,
        );
        let signer = Signer::configured(config.actions.signing_key.expose_secret())
            .context("actions.signing_key")?;
        Ok(Self {
            config: Arc::new(config),
            telemetry,
            tenants,
            signer,
            shutdown: Shutdown::new(),
        })
    }
}

/// The bound sockets of one service. Binding before serving lets tests use port 0 and
/// read the real port.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(endpoints: &ServiceEndpoints) -> std::io::Result<Self> {
        Ok(Self {
            grpc: TcpListener::bind(endpoints.grpc_listen).await?,
            admin: TcpListener::bind(endpoints.admin_listen).await?,
        })
    }

    /// Both on 127.0.0.1 with ports chosen by the OS.
    pub async fn ephemeral() -> std::io::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self {
            grpc: TcpListener::bind(any).await?,
            admin: TcpListener::bind(any).await?,
        })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// Serves `routes` (the services named in `served`, plus health, reflection and authentication) and the admin endpoint until
/// shutdown. `mark_serving` runs once the health service exists.
pub async fn host(
    service: &'static str,
    context: &Context,
    listeners: Listeners,
    served: &[&str],
    routes: Routes,
    mark_serving: impl AsyncFnOnce(&HealthReporter),
) -> Result<(), GrpcError> {
    let describe = |addr: std::io::Result<SocketAddr>| {
        addr.map_or_else(
            |error| format!("unknown ({error})"),
            |addr| addr.to_string(),
        )
    };
    tracing::info!(
        service,
        grpc = %describe(listeners.grpc_addr()),
        admin = %describe(listeners.admin_addr()),
        "listening"
    );
    let admin = tokio::spawn(mentorstream_telemetry::serve_admin(
        listeners.admin,
        context.telemetry.clone(),
        context.shutdown.token(),
    ));
    let health = mentorstream_grpc::Health::new();
    mark_serving(&health.reporter).await;
    let serving = mentorstream_grpc::serve(
        listeners.grpc,
        &context.config.tls,
        Arc::new(context.tenants.clone()),
        served,
        routes,
        health,
        context.shutdown.token(),
    );
    // A client that keeps its connection open can hold hyper's graceful shutdown forever
    // (hyperium/hyper#4170) and tonic has no forced stop: in-flight calls get half the grace
    // period, then the server is dropped, leaving the rest for consumers and producers.
    let drain = context.config.shutdown.grace_period / 2;
    let shutdown = context.shutdown.token();
    let served = tokio::select! {
        served = serving => served,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(service, drain = ?drain, "connections still open after shutdown; closing them");
            Ok(())
        }
    };
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(service, %error, "admin endpoint failed"),
        Err(error) => tracing::warn!(service, %error, "admin endpoint panicked"),
    }
    tracing::info!(service, "stopped serving");
    served
}

/// [`host`] for a server of exactly one gRPC service, marked serving under its own name.
pub async fn host_service<S>(
    service: &'static str,
    context: &Context,
    listeners: Listeners,
    server: S,
) -> Result<(), GrpcError>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    host(
        service,
        context,
        listeners,
        &[S::NAME],
        Routes::new(server),
        async |health| health.set_serving::<S>().await,
    )
    .await
}

/// [`host`] for `routes` holding the gRPC services named in `served`, each marked serving.
pub async fn host_services(
    service: &'static str,
    context: &Context,
    listeners: Listeners,
    served: &[&str],
    routes: Routes,
) -> Result<(), GrpcError> {
    host(
        service,
        context,
        listeners,
        served,
        routes,
        async |health| {
            for name in served {
                health
                    .set_service_status(*name, mentorstream_grpc::ServingStatus::Serving)
                    .await;
            }
        },
    )
    .await
}

/// Command line of every service binary.
#[derive(Debug, clap::Parser)]
pub struct ServiceArgs {
    /// Configuration file (TOML); MENTORSTREAM__SECTION__KEY variables override it.
    #[arg(long, env = "MENTORSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The `main` of a service binary: configuration, telemetry, control database, the service,
/// then the one shutdown path (signal → stop intake → drain within the grace period → flush).
pub async fn service_main<F, Fut, E>(service: &'static str, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    use clap::Parser;
    let args = ServiceArgs::parse();
    let config = Config::load(args.config.as_deref())?;
    let telemetry = mentorstream_telemetry::init(&config.telemetry, service)?;
    let context = Context::connect(config, telemetry.clone()).await?;
    let result = run_until_shutdown(&context, run(context.clone())).await;
    telemetry.shutdown();
    result
}

/// Runs `services` until they end or a signal arrives, then drains within the grace period.
pub async fn run_until_shutdown<E>(
    context: &Context,
    services: impl Future<Output = Result<(), E>> + Send + 'static,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let shutdown = context.shutdown.clone();
    shutdown.trigger_on_signals();
    let stopper = shutdown.clone();
    let main = shutdown.spawn(async move {
        let result = services.await;
        // A service that ends (or fails) ends the process: everything else stops too.
        stopper.trigger();
        result
    });
    shutdown.triggered().await;
    let drained = shutdown.drain(context.config.shutdown.grace_period).await;
    if main.is_finished() {
        main.await.context("service task panicked")??;
    }
    drained?;
    Ok(())
}
