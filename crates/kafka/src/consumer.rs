use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mentorstream_config::KafkaConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{DeadLetters, InboundRecord, KafkaError, client_config};

/// The consumers' client context.
///
/// - librdkafka also reports the end of a partition as a global error when
///   `enable.partition.eof` is on, which is not one; it is logged at debug level, and real
///   errors as errors.
/// - Partitions that a rebalance assigns or revokes are logged.
#[derive(Debug, Default)]
pub struct Context {
    /// The consumer group: a label of the lag gauge.
    group: String,
    /// The partitions whose lag the last statistics reported: one this member no longer owns
    /// is set to 0 rather than left at its last value.
    reported: std::sync::Mutex<std::collections::HashSet<(String, i32)>>,
}

impl Context {
    fn of_group(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            reported: std::sync::Mutex::default(),
        }
    }

    fn lag(&self, topic: &str, partition: i32, lag: f64) {
        metrics::gauge!(
            "mentorstream_kafka_consumer_lag",
            "group" => self.group.clone(),
            "topic" => topic.to_owned(),
            "partition" => partition.to_string(),
        )
        .set(lag);
    }
}

impl ClientContext for Context {
    /// librdkafka's statistics (every `statistics.interval.ms`) as gauges:
    /// `mentorstream_kafka_consumer_lag{group, topic, partition}` — records after the last one
    /// the application applied (stored; before the first store after an assignment, after the
    /// committed offset), for the partitions this member owns; 0 for one it no longer owns.
    #[allow(clippy::cast_precision_loss)]
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut owned = std::collections::HashSet::new();
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                if partition.partition < 0 || !partition.desired {
                    continue;
                }
                let lag = if partition.consumer_lag_stored >= 0 {
                    partition.consumer_lag_stored
                } else {
                    partition.consumer_lag
                };
                if lag >= 0 {
                    self.lag(topic, partition.partition, lag as f64);
                    owned.insert((topic.clone(), partition.partition));
                }
            }
        }
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, partition) in reported.difference(&owned) {
            self.lag(topic, *partition, 0.0);
        }
        *reported = owned;
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::KafkaError as Error;
        if matches!(
            error,
            Error::PartitionEOF(_) | Error::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::debug!(%reason, "partition read to its end");
        } else {
            tracing::error!(%error, %reason, "librdkafka");
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::info!(revoked = %describe(partitions), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(assigned = %describe(partitions), "partitions assigned");
        }
    }
}

/// `topic/partition` of each entry of `partitions`, comma-separated, for logs.
fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|entry| format!("{}/{}", entry.topic(), entry.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// How long the broker may take to say where a partition ends.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);

/// A group consumer whose offsets move only when the application says a record is applied:
/// automatic offset *storing* is off, and commits carry only stored offsets: periodic ones, on
/// [`Consumer::commit`], and the one librdkafka makes (with `enable.auto.commit`) before a
/// rebalance revokes partitions, so that their next owner starts right after what was
/// applied. Records in flight were not stored and are delivered again there (every handler
/// is idempotent); a crash redelivers likewise. Nothing is ever skipped. Members share the partitions with the
/// cooperative-sticky assignor: a rebalance moves only the partitions that must move, and the
/// others are read on without a pause.
#[derive(Clone)]
pub struct Consumer {
    inner: Arc<StreamConsumer<Context>>,
    group: String,
    /// The last offset stored (applied) per (topic, partition) by this process.
    stored: Arc<std::sync::Mutex<HashMap<(String, i32), i64>>>,
    /// The group's committed offsets of the assignment, as last asked (see [`Committed`]).
    committed: Arc<std::sync::Mutex<Committed>>,
    /// Asks where partitions end. Not `inner`: the broker answers a connection's requests in
    /// order, and `inner`'s connection is mostly held by a fetch that waits up to
    /// `fetch.wait.max.ms` (500 ms) for records, so each question asked there waited for it —
    /// the aggregator spent seconds per progress tick asking, one partition after another,
    /// while new records waited (an order took 2 s to show with 6 partitions, 5.5 s with 12).
    ends: Arc<BaseConsumer<Context>>,
}

/// How often the group's committed offsets are asked again, at most.
const COMMITTED_REFRESH: Duration = Duration::from_secs(5);

/// The group's committed offsets, asked in the background (the call takes seconds) and kept:
/// a committed offset only grows, so an old answer can only make a partition look less read
/// than it is, never more. They say where a partition that delivered nothing since its
/// assignment was read to, which the consumer's position cannot.
#[derive(Debug, Default)]
struct Committed {
    offsets: HashMap<(String, i32), i64>,
    asked_at: Option<std::time::Instant>,
    asking: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub fn new(config: &KafkaConfig, group: &str, topics: &[&str]) -> Result<Self, KafkaError> {
        Self::with_properties(config, group, topics, &[])
    }

    /// [`Consumer::new`] with extra librdkafka properties (e.g. `enable.partition.eof`).
    pub fn with_properties(
        config: &KafkaConfig,
        group: &str,
        topics: &[&str],
        properties: &[(&str, &str)],
    ) -> Result<Self, KafkaError> {
        let consumer = Self::create(config, group, properties)?;
        consumer
            .inner
            .subscribe(topics)
            .map_err(KafkaError::Consume)?;
        Ok(consumer)
    }

    /// A consumer of `partitions` of `topic` without group membership: it resumes from the
    /// group's committed offsets and commits to them, but no coordinator moves partitions. For
    /// bounded readers that must see every partition themselves (`kpi rebuild`, the bench),
    /// never for a service's replicas.
    pub fn assigned(
        config: &KafkaConfig,
        group: &str,
        topic: &str,
        partitions: &[i32],
        properties: &[(&str, &str)],
    ) -> Result<Self, KafkaError> {
        let consumer = Self::create(config, group, properties)?;
        let mut assignment = TopicPartitionList::new();
        for &partition in partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Stored)
                .map_err(KafkaError::Consume)?;
        }
        consumer
            .inner
            .assign(&assignment)
            .map_err(KafkaError::Consume)?;
        Ok(consumer)
    }

    fn create(
        config: &KafkaConfig,
        group: &str,
        properties: &[(&str, &str)],
    ) -> Result<Self, KafkaError> {
        let mut client = client_config(config);
        client
            .set("group.id", group)
            // Statistics (consumer lag) for `/metrics`, see `Context::stats`.
            .set("statistics.interval.ms", "5000")
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Records prefetched ahead of the application, per consumer. librdkafka's default
            // (64 MiB) is a quarter of the aggregator's whole memory budget (docs/spec.md §11)
            // for each of its consumers; a few MiB keep a batch of 4096 records ready.
            .set("queued.max.messages.kbytes", "8192")
            // The same queue in records, per partition. Each queued record carries an op of
            // librdkafka's that the kbytes limit does not count: at the default (100,000), the
            // aggregator started on a topic of 1M small records held 100 MB in glibc's heap.
            .set("queued.min.messages", "10000")
            // One fetch may overshoot that queue by a whole response, and a compressed
            // response stays decompressed while any of its records waits: at the default
            // 50 MiB, heaptrack found 110 MiB of fetched records in the aggregator.
            .set("fetch.max.bytes", "4194304");
        // The caller's properties win (e.g. a reader of new records only: auto.offset.reset).
        for (key, value) in properties {
            client.set(*key, *value);
        }
        let inner: StreamConsumer<Context> = client
            .create_with_context(Context::of_group(group))
            .map_err(|source| KafkaError::Client {
            what: "consumer",
            source,
        })?;
        let ends: BaseConsumer<Context> = client_config(config)
            .set("isolation.level", "read_committed")
            .create_with_context(Context::default())
            .map_err(|source| KafkaError::Client {
                what: "consumer",
                source,
            })?;
        Ok(Self {
            inner: Arc::new(inner),
            group: group.to_owned(),
            stored: Arc::default(),
            committed: Arc::default(),
            ends: Arc::new(ends),
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, KafkaError> {
        self.inner.recv().await.map_err(KafkaError::Consume)
    }

    /// Marks `message` as applied: its offset will be committed. A record whose partition a
    /// rebalance took away meanwhile is not stored: its new owner reads it again.
    pub fn store(&self, message: &BorrowedMessage<'_>) -> Result<(), KafkaError> {
        match self.inner.store_offset_from_message(message) {
            Ok(()) => {
                let mut stored = self
                    .stored
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let slot = stored
                    .entry((message.topic().to_owned(), message.partition()))
                    .or_insert(message.offset());
                *slot = (*slot).max(message.offset());
                Ok(())
            }
            Err(rdkafka::error::KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    "applied after its partition was revoked; its new owner reads it again"
                );
                Ok(())
            }
            Err(error) => Err(KafkaError::Consume(error)),
        }
    }

    /// Commits the stored offsets now and waits for the broker.
    pub fn commit(&self) -> Result<(), KafkaError> {
        match self.inner.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(source) => Err(KafkaError::Commit {
                group: self.group.clone(),
                source,
            }),
        }
    }

    /// Asks for the stored offsets to be committed without waiting for the broker: for the
    /// end of a consumer that is about to be closed (closing commits them too) and must not
    /// block its runtime on a slow coordinator.
    pub fn commit_in_background(&self) -> Result<(), KafkaError> {
        match self.inner.commit_consumer_state(CommitMode::Async) {
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(source) => Err(KafkaError::Commit {
                group: self.group.clone(),
                source,
            }),
        }
    }

    /// The assigned partitions this consumer has read to their end: its position is at the
    /// partition's high watermark, or it has no position yet (nothing delivered since the
    /// assignment) and the partition is empty or the group committed it to its end, as last
    /// asked (asked of the broker, off the async threads).
    pub async fn drained(&self) -> Vec<(String, i32)> {
        self.ask_committed_in_background();
        let inner = Arc::clone(&self.inner);
        let ends = Arc::clone(&self.ends);
        let committed = Arc::clone(&self.committed);
        let asked = tokio::task::spawn_blocking(move || {
            let Ok(positions) = inner.position() else {
                return Vec::new();
            };
            positions
                .elements()
                .iter()
                .filter_map(|entry| {
                    let (low, high) = ends
                        .fetch_watermarks(entry.topic(), entry.partition(), WATERMARK_TIMEOUT)
                        .ok()?;
                    let drained = match entry.offset() {
                        Offset::Offset(position) => position >= high,
                        // Nothing delivered since the assignment: empty, or committed to its
                        // end by the group (before a restart or a rebalance).
                        _ => {
                            low == high
                                || committed
                                    .lock()
                                    .ok()
                                    .and_then(|committed| {
                                        committed
                                            .offsets
                                            .get(&(entry.topic().to_owned(), entry.partition()))
                                            .copied()
                                    })
                                    .is_some_and(|committed| committed >= high)
                        }
                    };
                    drained.then(|| (entry.topic().to_owned(), entry.partition()))
                })
                .collect()
        });
        asked.await.unwrap_or_default()
    }

    /// Asks the group's committed offsets of the assignment, off the async threads, unless an
    /// answer is younger than [`COMMITTED_REFRESH`] or a question is out.
    fn ask_committed_in_background(&self) {
        {
            let Ok(mut state) = self.committed.lock() else {
                return;
            };
            if state.asking
                || state
                    .asked_at
                    .is_some_and(|asked| asked.elapsed() < COMMITTED_REFRESH)
            {
                return;
            }
            state.asking = true;
        }
        let (inner, committed) = (Arc::clone(&self.inner), Arc::clone(&self.committed));
        tokio::task::spawn_blocking(move || {
            let answer = inner.committed(WATERMARK_TIMEOUT);
            let Ok(mut state) = committed.lock() else {
                return;
            };
            state.asking = false;
            state.asked_at = Some(std::time::Instant::now());
            let Ok(answer) = answer else {
                return;
            };
            for entry in answer.elements() {
                if let Offset::Offset(offset) = entry.offset() {
                    let key = (entry.topic().to_owned(), entry.partition());
                    let known = state.offsets.entry(key).or_insert(offset);
                    *known = (*known).max(offset);
                }
            }
        });
    }

    /// Whether every record of every partition of `topic` that the broker held when asked is
    /// applied by the group: for each partition the offsets this consumer stored, or the
    /// group committed (the members holding the others commit within a second), reach the
    /// high watermark. `false` when the broker cannot say.
    pub async fn applied_to_end(&self, topic: &str) -> bool {
        let consumer = self.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || consumer.applied_to_end_blocking(&topic))
            .await
            .unwrap_or(false)
    }

    fn applied_to_end_blocking(&self, topic: &str) -> bool {
        let Ok(metadata) = self.inner.fetch_metadata(Some(topic), WATERMARK_TIMEOUT) else {
            return false;
        };
        let Some(partitions) = metadata
            .topics()
            .iter()
            .find(|found| found.name() == topic)
            .and_then(|found| i32::try_from(found.partitions().len()).ok())
            .filter(|partitions| *partitions > 0)
        else {
            return false;
        };
        // Every partition's committed offset, those other members hold too: theirs are
        // committed a second after they apply them.
        let mut all = TopicPartitionList::new();
        for partition in 0..partitions {
            all.add_partition(topic, partition);
        }
        let Ok(committed) = self.inner.committed_offsets(all, WATERMARK_TIMEOUT) else {
            return false;
        };
        (0..partitions).all(|partition| {
            let Ok((low, high)) = self
                .ends
                .fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)
            else {
                return false;
            };
            let stored = self
                .stored
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&(topic.to_owned(), partition))
                .map_or(-1, |offset| offset + 1);
            let committed = match committed
                .find_partition(topic, partition)
                .map(|entry| entry.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => -1,
            };
            high == low || stored.max(committed) >= high
        })
    }

    pub fn inner(&self) -> &StreamConsumer<Context> {
        &self.inner
    }
}

/// Why a record was not applied.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The record can never be applied (undecodable, invalid): it goes to the dead-letter
    /// topic and the stream moves on.
    #[error("poison record: {0}")]
    Poison(String),
    /// Applying failed for a reason that may pass (a store is down): the same record is
    /// retried after a pause, and nothing after it is applied before it.
    #[error("transient failure: {0}")]
    Transient(String),
}

/// Applies one record. Implementations must be idempotent: after a crash the records since
/// the last commit are delivered again.
pub trait RecordHandler: Send {
    fn handle(
        &mut self,
        record: InboundRecord<'_>,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;
}

const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Consumes until `shutdown` is cancelled, applying each record with `handler`, sending
/// poison records to `dead_letters`, and storing offsets only of what was applied or
/// dead-lettered. On shutdown it stops taking records, then commits synchronously.
pub async fn run_consumer<H: RecordHandler>(
    consumer: &Consumer,
    dead_letters: &DeadLetters,
    handler: &mut H,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    loop {
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            message = consumer.recv() => message,
        };
        // librdkafka reports a broker that went away (and other passing trouble) through the
        // consumer and recovers by itself: wait and read on, never end the service for it.
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "consumer error; reading on");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(RETRY_PAUSE) => continue,
                }
            }
        };
        let record = InboundRecord::new(&message);
        let span = tracing::info_span!(
            "consume",
            messaging.destination = message.topic(),
            messaging.kafka.partition = message.partition(),
            messaging.kafka.offset = message.offset(),
            messaging.consumer.group = consumer.group(),
        );
        record.continue_trace(&span);
        loop {
            match handler.handle(record).instrument(span.clone()).await {
                Ok(()) => break,
                Err(HandleError::Poison(reason)) => {
                    dead_letters
                        .send(&message, &reason)
                        .instrument(span.clone())
                        .await?;
                    break;
                }
                Err(HandleError::Transient(reason)) => {
                    tracing::warn!(parent: &span, reason, "record not applied; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            // Not applied: leave its offset uncommitted for the next owner.
                            return consumer.commit();
                        }
                        () = tokio::time::sleep(RETRY_PAUSE) => {}
                    }
                }
            }
        }
        consumer.store(&message)?;
    }
    consumer.commit()
}
