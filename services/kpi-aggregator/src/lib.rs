//! KPI aggregator: exact windowed KPIs in Redis, group and team roll-ups, signals, KPI queries.
//!
//! The consumers ([`consume`], one per topic) fold activity and mentorship records ([`fold`])
//! into the KPI state in Redis ([`store`], docs/kpi-state.md) and record how far they got
//! ([`progress`]); KpiService ([`api`]) reads it. Built so far: personal, group, team and tenant
//! counters and tenant-wide leaderboards; GetScorecard, GetSeries and GetLeaderboard. Signals
//! and the other RPCs are still to come.

mod api;
pub mod calendar;
pub mod consume;
pub mod fold;
pub mod metric;
pub mod progress;
pub mod signal;
pub mod store;
pub mod target;

use std::sync::Arc;

use mentorstream_config::{Config, PartitionAssignment, ServiceEndpoints};
use mentorstream_kafka::admin::{TopicSpec, ensure_topics};
use mentorstream_kafka::{Consumer, DeadLetters, KafkaError, Producer};
use mentorstream_proto::kpi::v1::kpi_service_server::KpiServiceServer;
use mentorstream_redis::KeySpace;
use mentorstream_runtime::{Context, Listeners, host_service};
use mentorstream_tenancy::Tenants;
use tokio_util::sync::CancellationToken;

use crate::consume::Aggregator;
use crate::progress::Progress;
use crate::signal::{KafkaSignals, SIGNAL_TIMEOUT};
use crate::store::Store;

pub const SERVICE: &str = "kpi";

/// How long a dead letter may take to be acknowledged.
const DEAD_LETTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot bind the kpi listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Grpc(#[from] mentorstream_grpc::GrpcError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Redis(#[from] mentorstream_redis::ConnectError),
}

/// Where this service listens, from the configuration.
pub fn endpoints(config: &Config) -> ServiceEndpoints {
    config.kpi.endpoints()
}

/// The consumer group of a key namespace: a fresh namespace (a rebuild) reads from the start.
pub fn consumer_group(config: &Config) -> String {
    format!("{}-kpi", config.redis.key_prefix)
}

/// Consumes and serves until the context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    let config = &context.config;
    let topics = [
        config.kafka.topics.activity.clone(),
        config.kafka.topics.mentorship.clone(),
    ];
    let specs: Vec<TopicSpec> = topics
        .iter()
        .chain([&config.kafka.topics.kpi_signals])
        .map(TopicSpec::new)
        .collect();
    ensure_topics(&config.kafka, &specs).await?;
    let connection = mentorstream_redis::connect(&config.redis)?;
    let keys = KeySpace::new(&config.redis.key_prefix, SERVICE);
    let signals = KafkaSignals {
        producer: Producer::new(&config.kafka, SIGNAL_TIMEOUT)?,
        topic: config.kafka.topics.kpi_signals.clone(),
    };
    let store = Store::new(connection.clone(), keys.clone())
        .with_signals(Arc::new(signals))
        .with_targets(Arc::new(context.tenants.clone()));
    let progress = Progress::new(
        connection,
        keys.key(&["progress"]),
        topics.to_vec(),
        config.kafka.partitions,
    );
    let aggregator = Aggregator {
        activity_topic: config.kafka.topics.activity.clone(),
        store: store.clone(),
        tenants: context.tenants.clone(),
        dead_letters: DeadLetters::new(Producer::new(&config.kafka, DEAD_LETTER_TIMEOUT)?),
        progress: progress.clone(),
    };
    // One consumer per topic: librdkafka reports the end of a partition without its topic,
    // and `as_of` needs to know which one ended.
    let consumers = topics
        .iter()
        .map(|topic| Ok((consumer(config, topic)?, topic.as_str())))
        .collect::<Result<Vec<_>, KafkaError>>()?;
    let api = api::Api {
        store,
        progress,
        tenants: context.tenants.clone(),
    };
    let consuming = futures::future::try_join_all(consumers.iter().map(|(consumer, topic)| {
        let shutdown = context.shutdown.token();
        let aggregator = &aggregator;
        let context = &context;
        async move {
            let consumed = consume::run(consumer, topic, aggregator, shutdown).await;
            if consumed.is_err() {
                // The process must not keep answering KPIs that no longer move.
                context.shutdown.trigger();
            }
            consumed
        }
    }));
    let sweeping = sweep_inactive(
        &aggregator.store,
        &context.tenants,
        config.kpi.sweep_interval,
        context.shutdown.token(),
    );
    let serving = host_service(SERVICE, &context, listeners, KpiServiceServer::new(api));
    let (consumed, served, ()) = tokio::join!(consuming, serving, sweeping);
    served?;
    consumed?;
    Ok(())
}

/// Every `interval` until shutdown: Inactive signals for every tenant's partners idle for the
/// tenant's inactivity period. Failures are logged and retried at the next round.
async fn sweep_inactive(
    store: &Store,
    tenants: &Tenants,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut rounds = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        let all = match tenants.list_tenants().await {
            Ok(all) => all,
            Err(error) => {
                tracing::warn!(%error, "cannot list tenants for the inactivity sweep");
                continue;
            }
        };
        for tenant in all {
            let after = chrono::Duration::days(i64::from(tenant.inactivity_days));
            match store
                .sweep_inactive(&tenant.tenant_id, chrono::Utc::now(), after)
                .await
            {
                Ok(0) => {}
                Ok(announced) => {
                    tracing::info!(tenant_id = %tenant.tenant_id, announced, "inactive partners");
                }
                Err(error) => {
                    tracing::warn!(tenant_id = %tenant.tenant_id, %error, "inactivity sweep failed");
                }
            }
        }
    }
}

/// The consumer of `topic`, in the consumer group of the key namespace; in `partitions =
/// "group"` mode the replicas share each topic's partitions.
fn consumer(config: &Config, topic: &str) -> Result<Consumer, KafkaError> {
    let reporting_ends = [("enable.partition.eof", "true")];
    let group = consumer_group(config);
    match config.kpi.partitions {
        PartitionAssignment::Group => {
            Consumer::with_properties(&config.kafka, &group, &[topic], &reporting_ends)
        }
        PartitionAssignment::All => Consumer::assigned(
            &config.kafka,
            &group,
            topic,
            config.kafka.partitions,
            &reporting_ends,
        ),
    }
}
