//! `mentorstream kpi rebuild`: the KPI state computed again from the topics, from the start, in
//! a fresh generation (docs/kpi-engine.md).
//!
//! The replay runs in this process with the aggregator's own consumer code, into a new key
//! namespace with its own consumer group. It announces every signal again, under the same
//! stable ids: a signal still in the lost Redis's outbox is announced after all, and consumers
//! keep one per id (the notifier one notification per cause, the mentorship service one goal
//! status change). When every partition is applied up to where the topics ended when the rebuild began,
//! it commits and activates the new generation; running aggregators switch to it within
//! [`crate::namespace::POLL`] and continue from its committed offsets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mentorstream_config::Config;
use mentorstream_kafka::admin::{all_topics, ensure_topics};
use mentorstream_kafka::{Consumer, DeadLetters, KafkaError, Producer};
use mentorstream_redis::{ConnectError, RedisError};
use mentorstream_tenancy::Tenants;
use rdkafka::consumer::Consumer as _;
use tokio_util::sync::CancellationToken;

use crate::consume::{self, Aggregator, AppliedOffsets};
use crate::engine::Engine;
use crate::namespace::{Generations, Namespace, next_generation};
use crate::signal::{KafkaSignals, SIGNAL_TIMEOUT};
use crate::{DEAD_LETTER_TIMEOUT, pause};

/// How often a rebuild reports its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// How long the topics' ends may take to be read.
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(10);

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The generation that was active before.
    pub previous: String,
    /// The generation now active.
    pub generation: String,
    /// Records on the topics when the rebuild began, all applied.
    pub records: i64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("cannot read where the topics end: {0}")]
    Watermarks(rdkafka::error::KafkaError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("Redis is unavailable: {0}")]
    Redis(#[from] RedisError),
    #[error("interrupted before it caught up; the active generation is unchanged")]
    Interrupted,
}

/// How far a replay is: records applied of the records to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub applied: i64,
    pub records: i64,
}

/// Replays both topics into a new generation and activates it when caught up; `progress` is
/// told how far it is every [`PROGRESS_EVERY`].
pub async fn rebuild(
    config: &Config,
    tenants: &Tenants,
    shutdown: CancellationToken,
    progress: &(dyn Fn(Replayed) + Sync),
) -> Result<Rebuilt, RebuildError> {
    let started = Instant::now();
    let topics = [
        &config.kafka.topics.activity,
        &config.kafka.topics.mentorship,
    ];
    // Every service provisions every topic, so each gets its policy whoever starts first.
    ensure_topics(&config.kafka, &all_topics(&config.kafka.topics)).await?;
    let connection = mentorstream_redis::connect(&config.redis)?;
    let generations = Generations::new(config, connection.clone());
    let previous = generations.active().await?;
    let namespace = Namespace::new(config, &connection, &next_generation());
    let signals = Arc::new(KafkaSignals {
        producer: Producer::new(&config.kafka, SIGNAL_TIMEOUT)?,
        topic: config.kafka.topics.kpi_signals.clone(),
    });
    let engine = Engine::new(connection.clone(), namespace.store.keys().clone())
        .with_signals(signals)
        .with_targets(Arc::new(tenants.clone()));
    let aggregator = Aggregator {
        activity_topic: config.kafka.topics.activity.clone(),
        engine: Arc::new(tokio::sync::Mutex::new(engine)),
        tenants: tenants.clone(),
        dead_letters: DeadLetters::new(Producer::new(&config.kafka, DEAD_LETTER_TIMEOUT)?),
        progress: namespace.progress.clone(),
        applied: AppliedOffsets::default(),
    };
    let group = namespace.consumer_group(config);
    // Every partition, whatever this process's own assignment says.
    let every_partition: Vec<i32> = (0..config.kafka.partitions).collect();
    let consumers = topics
        .into_iter()
        .map(|topic| {
            let consumer = Consumer::assigned(
                &config.kafka,
                &group,
                topic,
                &every_partition,
                &[("enable.partition.eof", "true")],
            )?;
            Ok((consumer, topic.as_str()))
        })
        .collect::<Result<Vec<_>, KafkaError>>()?;
    // Where every partition ends now: the last offset to apply.
    let mut ends = Vec::new();
    let mut records = 0;
    for (consumer, topic) in &consumers {
        for partition in 0..config.kafka.partitions {
            let (low, high) = consumer
                .inner()
                .fetch_watermarks(topic, partition, WATERMARKS_TIMEOUT)
                .map_err(RebuildError::Watermarks)?;
            if high > low {
                ends.push((*topic, partition, low, high - 1));
                records += high - low;
            }
        }
    }
    tracing::info!(
        generation = namespace.generation,
        records,
        "rebuilding from the start of the topics"
    );
    let stop = shutdown.child_token();
    let consuming = futures::future::try_join_all(
        consumers
            .iter()
            .map(|(consumer, _)| consume::run(consumer, &aggregator, stop.clone())),
    );
    let caught_up = async {
        loop {
            let applied = ends
                .iter()
                .map(|(topic, partition, low, last)| {
                    aggregator
                        .applied
                        .get(topic, *partition)
                        .map_or(0, |applied| applied.min(*last) - low + 1)
                })
                .sum();
            progress(Replayed { applied, records });
            if applied >= records || !pause(&stop, PROGRESS_EVERY).await {
                break;
            }
        }
        stop.cancel();
    };
    let (consumed, ()) = tokio::join!(consuming, caught_up);
    consumed?;
    if shutdown.is_cancelled() {
        return Err(RebuildError::Interrupted);
    }
    for (consumer, _) in &consumers {
        consumer.commit()?;
    }
    generations.activate(&namespace.generation).await?;
    Ok(Rebuilt {
        previous,
        generation: namespace.generation,
        records,
        elapsed: started.elapsed(),
    })
}
