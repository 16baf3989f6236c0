//! Mentorship service: programs, groups, micro-sessions, feedback and development plans in
//! PostgreSQL, every change announced on `mentorstream.mentorship.v1` through a transactional
//! outbox ([`db`], [`relay`]), with a partner read model from the activity stream
//! ([`partners`]). Built so far: programs, groups, assignments, partner lookups, sessions ([`sessions`]),
//! feedback, modules, and development plans whose goals follow the aggregator's signals
//! ([`plans`]).

/// Begins a mutation of `$method` or returns the answer its `request_id` already got.
macro_rules! begin {
    ($api:expr, $tenant:expr, $request_id:expr, $method:literal, $answer:ty) => {
        match $crate::db::begin::<$answer>(&$api.pool, &$tenant.tenant_id, $request_id, $method)
            .await
            .map_err($crate::api::db_status)?
        {
            $crate::db::Begun::Answered(answer) => return Ok(::tonic::Response::new(answer)),
            $crate::db::Begun::Fresh(transaction) => transaction,
        }
    };
}

pub mod actions;
mod api;
pub mod dashboard;
pub mod db;
pub mod erase;
pub mod impact;
mod metrics;
pub mod partners;
pub mod plans;
pub mod prune;
pub mod relay;
mod responses;
pub mod sessions;

use std::sync::Arc;
use tonic::codec::CompressionEncoding;

use mentorstream_config::{Config, ExposeSecret, ServiceEndpoints};
use mentorstream_kafka::admin::{all_topics, ensure_topics};
use mentorstream_kafka::{Consumer, DeadLetters, KafkaError, Producer, run_consumer};
use mentorstream_proto::mentorship::v1::action_service_server::ActionServiceServer;
use mentorstream_proto::mentorship::v1::dashboard_service_server::DashboardServiceServer;
use mentorstream_proto::mentorship::v1::impact_service_server::ImpactServiceServer;
use mentorstream_proto::mentorship::v1::mentorship_service_server::MentorshipServiceServer;
use mentorstream_runtime::{Context, Listeners, host_services};
use tokio::sync::Notify;
use tonic::server::NamedService;
use tonic::service::Routes;

pub const SERVICE: &str = "mentorship";

/// How long KpiService may take to tell a goal's progress before the signals' value is shown.
const KPI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long Kafka may take to acknowledge a relayed event or a dead letter.
const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the mentorship listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Database(#[from] db::DbError),
    #[error("invalid mentorship.kpi_endpoint: {0}")]
    KpiEndpoint(String),
    #[error(
        "mentorship.dashboard_link_valid_for must be between {}s and {}s",
        dashboard::link::MIN_VALID_FOR.as_secs(),
        dashboard::link::MAX_VALID_FOR.as_secs()
    )]
    DashboardLinkValidFor,
    #[error("mentorship.{0} must be longer than zero")]
    ZeroInterval(&'static str),
    #[error("mentorship.{0} must be a day at least")]
    Retention(&'static str),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.mentorship.endpoints()
}

/// Every `interval` until shutdown: sessions not completed by their end plus `grace` become
/// MISSED, without anyone acting. Failures are logged and retried at the next round.
async fn mark_missed(
    pool: &sqlx::PgPool,
    grace: std::time::Duration,
    interval: std::time::Duration,
    relay: &Notify,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut rounds = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        loop {
            match sessions::mark_missed(pool, grace).await {
                Ok(0) => break,
                Ok(marked) => {
                    tracing::info!(marked, "sessions missed");
                    relay.notify_one();
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot mark missed sessions");
                    break;
                }
            }
        }
    }
}

/// Every `interval` until shutdown: newcomers who left on-track begin an at-risk episode
/// (MenteeAtRisk, once per episode), those back on track end theirs. Failures are logged and
/// retried at the next round.
async fn watch_newcomers(
    pool: &sqlx::PgPool,
    interval: std::time::Duration,
    relay: &Notify,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut rounds = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        match impact::newcomers::watch_episodes(pool, chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(began) => {
                tracing::info!(began, "at-risk episodes began");
                relay.notify_one();
            }
            Err(error) => tracing::warn!(%error, "cannot look at newcomers"),
        }
    }
}

/// The consumer group that follows the aggregator's goal signals.
pub fn signals_group(config: &Config) -> String {
    format!("mentorship-signals-{}", config.kafka.topics.kpi_signals)
}

/// The consumer group of the partner read model.
pub fn partners_group(config: &Config) -> String {
    format!("mentorship-partners-{}", config.kafka.topics.activity)
}

/// Migrates, then relays the outbox, follows the activity stream and serves until the
/// context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    let config = &context.config;
    // Every service provisions every topic, so each gets its policy whoever starts first.
    ensure_topics(&config.kafka, &all_topics(&config.kafka.topics)).await?;
    for (name, interval) in [
        (
            "missed_check_interval",
            config.mentorship.missed_check_interval,
        ),
        (
            "newcomer_check_interval",
            config.mentorship.newcomer_check_interval,
        ),
        ("prune_interval", config.mentorship.prune_interval),
    ] {
        if interval.is_zero() {
            return Err(ServiceError::ZeroInterval(name));
        }
    }
    let pool = db::connect(config.mentorship.database_url.expose_secret())?;
    db::migrate(&pool).await?;
    let wake = Arc::new(Notify::new());
    let relaying = relay::run(
        pool.clone(),
        Producer::new(&config.kafka, DELIVERY_TIMEOUT)?,
        config.kafka.topics.mentorship.clone(),
        config.kafka.partitions,
        wake.clone(),
        context.shutdown.token(),
    );
    let consumer = Consumer::new(
        &config.kafka,
        &partners_group(config),
        &[&config.kafka.topics.activity],
    )?;
    let dead_letters = DeadLetters::new(Producer::new(&config.kafka, DELIVERY_TIMEOUT)?);
    let following = async {
        let mut model = partners::PartnerModel {
            pool: pool.clone(),
            tenants: context.tenants.clone(),
        };
        let followed = run_consumer(
            &consumer,
            &dead_letters,
            &mut model,
            context.shutdown.token(),
        )
        .await;
        if followed.is_err() {
            context.shutdown.trigger();
        }
        followed
    };
    let signals_consumer = Consumer::new(
        &config.kafka,
        &signals_group(config),
        &[&config.kafka.topics.kpi_signals],
    )?;
    let signalling = async {
        let mut signals = plans::GoalSignals {
            pool: pool.clone(),
            relay: wake.clone(),
        };
        let followed = run_consumer(
            &signals_consumer,
            &dead_letters,
            &mut signals,
            context.shutdown.token(),
        )
        .await;
        if followed.is_err() {
            context.shutdown.trigger();
        }
        followed
    };
    let marking = mark_missed(
        &pool,
        config.mentorship.missed_grace,
        config.mentorship.missed_check_interval,
        &wake,
        context.shutdown.token(),
    );
    let day = |value: std::time::Duration, name| {
        chrono::TimeDelta::from_std(value)
            .ok()
            .filter(|span| *span >= chrono::TimeDelta::days(1))
            .ok_or(ServiceError::Retention(name))
    };
    let retention = prune::Retention {
        requests: day(config.mentorship.request_retention, "request_retention")?,
        outbox: day(config.mentorship.outbox_retention, "outbox_retention")?,
    };
    let pruning = prune::run(
        &pool,
        retention,
        config.mentorship.prune_interval,
        context.shutdown.token(),
    );
    let watching = watch_newcomers(
        &pool,
        config.mentorship.newcomer_check_interval,
        &wake,
        context.shutdown.token(),
    );
    let kpi = tonic::transport::Channel::from_shared(config.mentorship.kpi_endpoint.clone())
        .map_err(|error| ServiceError::KpiEndpoint(error.to_string()))?
        .connect_timeout(KPI_TIMEOUT)
        .timeout(KPI_TIMEOUT)
        .connect_lazy();
    let api = api::Api {
        pool: pool.clone(),
        tenants: context.tenants.clone(),
        relay: wake.clone(),
        kpi: mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient::new(kpi),
        readiness: partners::Readiness {
            consumer: consumer.clone(),
            topic: config.kafka.topics.activity.clone(),
        },
    };
    let signer = context.signer.clone();
    if signer.is_none() {
        tracing::warn!("actions.signing_key is empty: chat-bot buttons and dashboards are refused");
    }
    // One lender of read keys for everything here that asks the KPI service.
    let keys = Arc::new(mentorstream_tenancy::ReadKeys::new(context.tenants.clone()));
    let pages = dashboard::router(dashboard::Dashboard {
        pool: pool.clone(),
        tenants: context.tenants.clone(),
        signer: signer.clone(),
        kpi: api.kpi.clone(),
        keys: keys.clone(),
        streams: Arc::default(),
        shutdown: context.shutdown.token(),
    });
    if !(dashboard::link::MIN_VALID_FOR..=dashboard::link::MAX_VALID_FOR)
        .contains(&config.mentorship.dashboard_link_valid_for)
    {
        return Err(ServiceError::DashboardLinkValidFor);
    }
    let links = DashboardServiceServer::new(dashboard::link::Links {
        pool: pool.clone(),
        signer: signer.clone(),
        base_url: config
            .mentorship
            .dashboard_url
            .trim_end_matches('/')
            .to_owned(),
        default_valid_for: config.mentorship.dashboard_link_valid_for,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    let impact = ImpactServiceServer::new(impact::Impact {
        pool: pool.clone(),
        tenants: context.tenants.clone(),
        kpi: dashboard::kpi::KpiReader {
            client: api.kpi.clone(),
            keys: keys.clone(),
        },
        readiness: api.readiness.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    let actions = ActionServiceServer::new(actions::Actions {
        api: api.clone(),
        signer,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    let mentorship = MentorshipServiceServer::new(api)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd);
    let serving = host_services(
        SERVICE,
        &context,
        listeners,
        &[
            <MentorshipServiceServer<api::Api> as NamedService>::NAME,
            <ActionServiceServer<actions::Actions> as NamedService>::NAME,
            <DashboardServiceServer<dashboard::link::Links> as NamedService>::NAME,
            <ImpactServiceServer<impact::Impact> as NamedService>::NAME,
        ],
        Routes::from(
            Routes::new(mentorship)
                .add_service(actions)
                .add_service(links)
                .add_service(impact)
                .into_axum_router()
                .merge(pages),
        ),
    );
    let ((), followed, signalled, served, (), (), ()) = tokio::join!(
        relaying, following, signalling, serving, marking, watching, pruning
    );
    served?;
    followed?;
    signalled?;
    Ok(())
}
