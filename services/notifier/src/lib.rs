//! Notifier: durable reminders, nudges and digests over chat-bot webhooks and e-mail.
//!
//! Events become notifications in PostgreSQL ([`causes`]): session reminders and feedback
//! requests from `mentorstream.mentorship.v1`, congratulations and inactivity nudges from
//! `mentorstream.kpi.signals.v1`, one row per recipient and cause. The [`dispatch`]er sends
//! what is due through the tenant's chat-bot gateway or SMTP server ([`delivery`]), in the
//! recipient's language ([`templates`]) and within their [`preferences`], and plans each
//! mentor's weekly [`digest`]. NotificationService ([`api`]) reads and changes preferences and
//! lists and retries notifications.

mod api;
pub mod buttons;
pub mod causes;
pub mod clock;
pub mod delivery;
pub mod digest;
pub mod dispatch;
pub mod erase;
pub mod kinds;
mod metrics;
pub mod preferences;
pub mod prune;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;
use tonic::codec::CompressionEncoding;

use mentorstream_config::{Config, ExposeSecret, ServiceEndpoints};
use mentorstream_kafka::admin::{all_topics, ensure_topics};
use mentorstream_kafka::{
    Consumer, DeadLetters, KafkaError, Producer, RecordHandler, run_consumer,
};
use mentorstream_proto::notification::v1::notification_service_server::NotificationServiceServer;
use mentorstream_runtime::{Context, Listeners, host_service};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Notify;

pub use clock::{Clock, ManualClock, SystemClock};

pub const SERVICE: &str = "notifier";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connections of one service instance.
const MAX_CONNECTIONS: u32 = 8;
/// How long Kafka may take to acknowledge a dead letter.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long KpiService may take to answer for a digest.
const KPI_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the notifier listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("the notifier database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the notifier database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Templates(#[from] templates::TemplateError),
    #[error("cannot build the webhook client: {0}")]
    Webhook(#[from] reqwest::Error),
    #[error("actions.signing_key: {0}")]
    ActionKey(#[from] mentorstream_actions::WeakKey),
    #[error("invalid notifier.kpi_endpoint: {0}")]
    KpiEndpoint(String),
    #[error(
        "notifier.{0} is out of range: a retention is a day at least, the prune interval longer than zero"
    )]
    Retention(&'static str),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.notifier.endpoints()
}

/// Connects lazily (the service starts while the database is still coming up).
pub fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The consumer group that follows the mentorship topic.
pub fn mentorship_group(config: &Config) -> String {
    format!("notifier-mentorship-{}", config.kafka.topics.mentorship)
}

/// The consumer group that follows the aggregator's signals.
pub fn signals_group(config: &Config) -> String {
    format!("notifier-signals-{}", config.kafka.topics.kpi_signals)
}

/// A retention setting as a time span: a day at least.
fn retention(value: std::time::Duration) -> Result<chrono::TimeDelta, ServiceError> {
    chrono::TimeDelta::from_std(value)
        .ok()
        .filter(|span| *span >= chrono::TimeDelta::days(1))
        .ok_or(ServiceError::Retention(
            "notification_retention and request_retention",
        ))
}

/// Serves with the machine's clock until the context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    run_with_clock(context, listeners, Arc::new(SystemClock)).await
}

/// Migrates, then follows both topics, dispatches and serves until the context's shutdown
/// begins, reading time from `clock`.
pub async fn run_with_clock(
    context: Context,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
) -> Result<(), ServiceError> {
    let config = &context.config;
    // Every service provisions every topic, so each gets its policy whoever starts first.
    ensure_topics(&config.kafka, &all_topics(&config.kafka.topics)).await?;
    let pool = connect(config.notifier.database_url.expose_secret())?;
    migrate(&pool).await?;
    let wake = Arc::new(Notify::new());
    let dead_letters = DeadLetters::new(Producer::new(&config.kafka, DELIVERY_TIMEOUT)?);
    let mentorship_consumer = Consumer::new(
        &config.kafka,
        &mentorship_group(config),
        &[&config.kafka.topics.mentorship],
    )?;
    let signals_consumer = Consumer::new(
        &config.kafka,
        &signals_group(config),
        &[&config.kafka.topics.kpi_signals],
    )?;
    let retention = prune::Retention {
        notifications: retention(config.notifier.notification_retention)?,
        requests: retention(config.notifier.request_retention)?,
    };
    if config.notifier.prune_interval.is_zero() {
        return Err(ServiceError::Retention("prune_interval"));
    }
    let mut mentorship = causes::MentorshipFollower {
        pool: pool.clone(),
        clock: clock.clone(),
        dispatcher: wake.clone(),
        retention: retention.notifications,
    };
    let mut signals = causes::SignalFollower {
        pool: pool.clone(),
        clock: clock.clone(),
        dispatcher: wake.clone(),
        retention: retention.notifications,
    };
    let pruning = prune::run(
        pool.clone(),
        clock.clone(),
        retention,
        config.notifier.prune_interval,
        context.shutdown.token(),
    );
    let kpi = tonic::transport::Channel::from_shared(config.notifier.kpi_endpoint.clone())
        .map_err(|error| ServiceError::KpiEndpoint(error.to_string()))?
        .connect_timeout(KPI_TIMEOUT)
        .timeout(KPI_TIMEOUT)
        .connect_lazy();
    let dispatcher = dispatch::Dispatcher {
        pool: pool.clone(),
        tenants: context.tenants.clone(),
        clock: clock.clone(),
        config: config.notifier.clone(),
        templates: templates::Templates::new()?,
        webhook: delivery::Webhook::new(config.notifier.send_timeout)?,
        mailer: delivery::Mailer::new(config.notifier.send_timeout),
        kpi: digest::KpiReader::new(kpi, context.tenants.clone()),
        buttons: buttons::Buttons {
            signer: mentorstream_actions::Signer::configured(
                config.actions.signing_key.expose_secret(),
            )?,
            rating_valid_for: config.actions.rating_valid_for,
        },
    };
    let api = api::Api {
        pool: pool.clone(),
        clock,
        dispatcher: wake.clone(),
    };
    let ((), (), followed_mentorship, followed_signals, served) = tokio::join!(
        dispatcher.run(&wake, context.shutdown.token()),
        pruning,
        follow_topic(
            &context,
            &mentorship_consumer,
            &dead_letters,
            &mut mentorship
        ),
        follow_topic(&context, &signals_consumer, &dead_letters, &mut signals),
        host_service(
            SERVICE,
            &context,
            listeners,
            NotificationServiceServer::new(api)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd),
        ),
    );
    served?;
    followed_mentorship?;
    followed_signals?;
    Ok(())
}

/// Consumes one topic until shutdown; a consumer that cannot go on shuts the service down.
async fn follow_topic(
    context: &Context,
    consumer: &Consumer,
    dead_letters: &DeadLetters,
    handler: &mut impl RecordHandler,
) -> Result<(), KafkaError> {
    let followed = run_consumer(consumer, dead_letters, handler, context.shutdown.token()).await;
    if followed.is_err() {
        context.shutdown.trigger();
    }
    followed
}
