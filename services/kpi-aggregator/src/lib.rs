//! KPI aggregator: exact windowed KPIs in Redis, group and team roll-ups, signals, KPI queries.
//!
//! The consumer ([`consume`], both input topics) hands each tenant's records to the tenant's
//! writer ([`engine`], docs/kpi-engine.md), which applies the rules ([`state`]) and writes the
//! records of the active generation ([`namespace`], [`rebuild`]) in Redis; the consumer records
//! how far it got ([`progress`]). The rules decide signals ([`signal`]) and the writer target
//! crossings ([`target`]); what changed is published to kpi.updates.v1 and fanned out to
//! WatchKpis ([`updates`]); KpiService (`api`) reads the records ([`store`]).

mod api;
pub mod calendar;
pub mod consume;
pub mod engine;
pub mod expire;
pub mod fold;
pub mod metric;
mod metrics;
pub mod namespace;
pub mod progress;
pub mod rebuild;
pub mod signal;
pub mod state;
pub mod store;
pub mod target;
pub mod updates;

use std::sync::Arc;
use tonic::codec::CompressionEncoding;

use mentorstream_config::{Config, ServiceEndpoints};
use mentorstream_kafka::admin::{all_topics, ensure_topics};
use mentorstream_kafka::{Consumer, DeadLetters, KafkaError, Producer};
use mentorstream_proto::kpi::v1::kpi_service_server::KpiServiceServer;
use mentorstream_redis::Connection;
use mentorstream_runtime::{Context, Listeners, host_service};
use mentorstream_tenancy::Tenants;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::consume::{Aggregator, AppliedOffsets};
use crate::engine::Engine;
use crate::namespace::{Generations, Namespace};
use crate::signal::{KafkaSignals, SIGNAL_TIMEOUT};
use crate::updates::{Hub, UPDATE_TIMEOUT};

pub const SERVICE: &str = "kpi";

/// How long a dead letter may take to be acknowledged.
pub(crate) const DEAD_LETTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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

/// Consumes and serves until the context's shutdown begins.
pub async fn run(context: Context, listeners: Listeners) -> Result<(), ServiceError> {
    let config = &context.config;
    // Every service provisions every topic, so each gets its policy whoever starts first.
    ensure_topics(&config.kafka, &all_topics(&config.kafka.topics)).await?;
    let connection = mentorstream_redis::connect(&config.redis)?;
    let pipeline = Pipeline {
        generations: Generations::new(config, connection.clone()),
        connection,
        signals: Arc::new(KafkaSignals {
            producer: Producer::new(&config.kafka, SIGNAL_TIMEOUT)?,
            topic: config.kafka.topics.kpi_signals.clone(),
        }),
        dead_letters: DeadLetters::new(Producer::new(&config.kafka, DEAD_LETTER_TIMEOUT)?),
    };
    let (current, namespace) = watch::channel(None);
    let pending_updates = Arc::new(updates::PendingUpdates::default());
    let api = api::Api {
        namespace: namespace.clone(),
        tenants: context.tenants.clone(),
        hub: Hub::start(config, context.shutdown.token())?,
    };
    let publishing = updates::publish(
        api.clone(),
        pending_updates.clone(),
        Producer::new(&config.kafka, UPDATE_TIMEOUT)?,
        config.kafka.clone(),
        config.kpi.updates_interval,
        context.shutdown.token(),
    );
    let consuming = async {
        let consumed = pipeline
            .follow_generations(&context, &current, &pending_updates)
            .await;
        if consumed.is_err() {
            // The process must not keep answering KPIs that no longer move.
            context.shutdown.trigger();
        }
        consumed
    };
    let sweeping = sweep_inactive(
        namespace,
        &context.tenants,
        config.kpi.sweep_interval,
        context.shutdown.token(),
    );
    let tombstoning = expire::run(
        config.kafka.clone(),
        context.tenants.clone(),
        expire::Sweeper::new(pipeline.connection.clone(), &config.redis.key_prefix),
        config.kpi.tombstone_interval,
        context.shutdown.token(),
    );
    let server = KpiServiceServer::new(api)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd);
    let serving = host_service(SERVICE, &context, listeners, server);
    let (consumed, served, (), (), ()) =
        tokio::join!(consuming, serving, sweeping, publishing, tombstoning);
    served?;
    consumed?;
    Ok(())
}

/// What the consumers of every generation share.
struct Pipeline {
    connection: Connection,
    generations: Generations,
    signals: Arc<KafkaSignals>,
    dead_letters: DeadLetters,
}

impl Pipeline {
    /// Consumes into the active generation; when another becomes active (a rebuild finished),
    /// commits, stops and starts over in it. Publishes each generation's namespace to `current`
    /// for the API and the sweep.
    async fn follow_generations(
        &self,
        context: &Context,
        current: &watch::Sender<Option<Namespace>>,
        pending_updates: &Arc<updates::PendingUpdates>,
    ) -> Result<(), KafkaError> {
        let config = &context.config;
        let shutdown = context.shutdown.token();
        loop {
            let generation = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                active = self.generations.active() => match active {
                    Ok(generation) => generation,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the active generation; retrying");
                        if !pause(&shutdown, namespace::POLL).await {
                            return Ok(());
                        }
                        continue;
                    }
                },
            };
            let mut namespace = Namespace::new(config, &self.connection, &generation);
            namespace.store = namespace.store.with_signals(self.signals.clone());
            current.send_replace(Some(namespace.clone()));
            tracing::info!(generation, "consuming");
            let engine = Engine::new(self.connection.clone(), namespace.store.keys().clone())
                .with_signals(self.signals.clone())
                .with_targets(Arc::new(context.tenants.clone()))
                .with_updates(pending_updates.clone());
            let aggregator = Aggregator {
                activity_topic: config.kafka.topics.activity.clone(),
                engine: Arc::new(tokio::sync::Mutex::new(engine)),
                tenants: context.tenants.clone(),
                dead_letters: self.dead_letters.clone(),
                progress: namespace.progress.clone(),
                applied: AppliedOffsets::default(),
            };
            let group = namespace.consumer_group(config);
            let consumer = consumer(
                config,
                &group,
                &[
                    &config.kafka.topics.activity,
                    &config.kafka.topics.mentorship,
                ],
            )?;
            let stop = shutdown.child_token();
            let consuming = consume::run(&consumer, &aggregator, stop.clone());
            // Its own task: a consumer stuck on a batch must show its growing age.
            let watching = consume::watch_freshness(&aggregator.progress, stop.clone());
            let (consumed, (), ()) = tokio::join!(
                consuming,
                self.until_switched(&generation, stop.clone()),
                watching
            );
            consumed?;
            if let Err(error) = consumer.commit() {
                tracing::warn!(%error, "cannot commit on leaving a generation");
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Returns when `stop` is cancelled, or cancels it when another generation is active.
    async fn until_switched(&self, generation: &str, stop: CancellationToken) {
        while pause(&stop, namespace::POLL).await {
            if let Ok(active) = self.generations.active().await
                && active != generation
            {
                tracing::info!(from = generation, to = active, "switching generation");
                stop.cancel();
                return;
            }
        }
    }
}

/// Waits `period`; `false` when `stop` came first.
pub(crate) async fn pause(stop: &CancellationToken, period: std::time::Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(period) => true,
    }
}

/// Every `interval` until shutdown, for every tenant: Inactive for partners idle for the
/// tenant's inactivity period, and GoalMissed for goals past due. Failures are logged and
/// retried at the next round.
async fn sweep_inactive(
    namespace: watch::Receiver<Option<Namespace>>,
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
        let Some(store) = namespace
            .borrow()
            .as_ref()
            .map(|namespace| namespace.store.clone())
        else {
            continue;
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
            match store
                .sweep_goals(&tenant.tenant_id, chrono::Utc::now())
                .await
            {
                Ok(0) => {}
                Ok(announced) => {
                    tracing::info!(tenant_id = %tenant.tenant_id, announced, "goals missed");
                }
                Err(error) => {
                    tracing::warn!(tenant_id = %tenant.tenant_id, %error, "goal sweep failed");
                }
            }
        }
    }
}

/// The consumer of both input topics in `group`. The `range` assignor gives a member the same
/// partition numbers of both topics, and both hold a tenant's records in the partition of the
/// tenant: each tenant has one writer (docs/kpi-engine.md, "Ownership").
pub fn consumer(config: &Config, group: &str, topics: &[&str]) -> Result<Consumer, KafkaError> {
    Consumer::with_properties(
        &config.kafka,
        group,
        topics,
        &[
            ("enable.partition.eof", "true"),
            ("partition.assignment.strategy", "range"),
        ],
    )
}
