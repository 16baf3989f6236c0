//! The aggregator's consumer: batches of activity and mentorship records → the tenants'
//! writers → stored offsets (docs/kpi-engine.md, "A batch").
//!
//! Whatever librdkafka has ready (up to a batch) is decoded, grouped by tenant and applied by
//! the [`Engine`]; only then are the records' offsets stored for the next commit. A record that
//! can never be applied (undecodable, unknown tenant, malformed volume, an enrolment that would
//! make a genealogy cycle) goes to the dead-letter topic with its cause. While Redis or the
//! control database is unavailable the batch is retried and nothing is committed, so a crash
//! or a rebalance redelivers it and the tenants' offset watermarks make that harmless.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mentorstream_kafka::{
    BorrowedMessage, Consumer, DeadLetters, InboundRecord, KafkaError, Message as _,
};
use mentorstream_proto::activity::v1::ActivityEvent;
use mentorstream_proto::mentorship::v1::MentorshipEvent;
use mentorstream_tenancy::{TenancyError, Tenants};
use tokio_util::sync::CancellationToken;

use crate::calendar::Calendar;
use crate::engine::{Engine, Input};
use crate::progress::Progress;
use crate::state::input;

/// Records applied together at most. Under load a batch fills up (a tenant's ancestors are
/// written once per batch); when the consumer has caught up it is whatever arrived within
/// [`BATCH_WINDOW`] of its first record.
const MAX_BATCH: usize = 16_384;
/// How long a batch waits for more records after its first: a little latency for much fewer
/// writes while records keep coming.
const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// Pause before retrying a batch while Redis or the control database is away.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What the consumer applies records with.
#[derive(Debug, Clone)]
pub struct Aggregator {
    /// Records of this topic are activity events; of any other, mentorship events.
    pub activity_topic: String,
    pub engine: Arc<tokio::sync::Mutex<Engine>>,
    pub tenants: Tenants,
    pub dead_letters: DeadLetters,
    pub progress: Progress,
    /// The last applied offset of every partition, for whoever waits for the consumers to
    /// reach a point (a rebuild catching up).
    pub applied: AppliedOffsets,
}

/// Last applied offset per (topic, partition).
#[derive(Debug, Clone, Default)]
pub struct AppliedOffsets(Arc<Mutex<HashMap<(String, i32), i64>>>);

impl AppliedOffsets {
    /// Records the last applied message of each partition.
    fn record(&self, last: &HashMap<(&str, i32), &BorrowedMessage<'_>>) {
        let mut applied = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for message in last.values() {
            let slot = applied
                .entry((message.topic().to_owned(), message.partition()))
                .or_insert(message.offset());
            *slot = (*slot).max(message.offset());
        }
    }

    /// The last applied offset of a partition, if any record of it was applied.
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .copied()
    }
}

/// Why one record was not folded.
enum Unfolded {
    /// Never applicable: to the dead-letter topic.
    Poison(String),
    /// Try the batch again later.
    Transient(String),
}

/// One tenant's share of a batch.
struct TenantBatch<'m> {
    calendar: Calendar,
    inputs: Vec<Input>,
    messages: Vec<&'m BorrowedMessage<'m>>,
}

/// How often the consumer asks the broker whether its partitions are read to their end, so
/// that `as_of` advances over partitions that receive nothing.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// One batch as the consumer received it.
#[derive(Default)]
struct Received<'m> {
    messages: Vec<BorrowedMessage<'m>>,
    /// A partition reached its end, or it is time to ask where partitions end anyway.
    ask_ends: bool,
}

/// Waits for a record or the progress tick, then takes whatever else arrives within
/// [`BATCH_WINDOW`] (up to [`MAX_BATCH`]); `None` on shutdown. `recv` is cancel-safe, so a
/// record is never lost between two calls.
async fn receive<'c>(
    consumer: &'c Consumer,
    tick: &mut tokio::time::Interval,
    shutdown: &CancellationToken,
) -> Option<Received<'c>> {
    let mut received = Received::default();
    let first = tokio::select! {
        biased;
        () = shutdown.cancelled() => return None,
        first = consumer.inner().recv() => Some(first),
        _ = tick.tick() => None,
    };
    match first {
        Some(first) => received.take(first),
        None => received.ask_ends = true,
    }
    let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
    while received.messages.len() < MAX_BATCH {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            next = tokio::time::timeout_at(deadline, consumer.inner().recv()) => next,
        };
        match next {
            Ok(next) => received.take(next),
            Err(_elapsed) => break,
        }
    }
    // Under load records are always ready: the tick is due all the same.
    if futures::FutureExt::now_or_never(tick.tick()).is_some() {
        received.ask_ends = true;
    }
    Some(received)
}

impl<'m> Received<'m> {
    fn take(&mut self, item: Result<BorrowedMessage<'m>, rdkafka::error::KafkaError>) {
        match item {
            Ok(message) => self.messages.push(message),
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => self.ask_ends = true,
            Err(error) => tracing::warn!(%error, "consumer error"),
        }
    }
}

/// Consumes until `shutdown`, then commits what was applied.
pub async fn run(
    consumer: &Consumer,
    aggregator: &Aggregator,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    while let Some(Received { messages, ask_ends }) = receive(consumer, &mut tick, &shutdown).await
    {
        // A partition read to its end holds nothing accepted before this moment that is not in
        // this batch (up to the broker's propagation delay).
        let received_at = chrono::Utc::now();
        // A batch cut short by the shutdown is neither stored nor committed: it comes again.
        let applied = tokio::select! {
            () = shutdown.cancelled() => break,
            applied = aggregator.apply(&messages, &shutdown) => applied?,
        };
        if !applied {
            break;
        }
        store_offsets(consumer, aggregator, &messages)?;
        // Only now, with every received record applied and none received since, do the
        // consumer's positions say what is applied. Asking the broker where partitions end
        // must not hold up a shutdown.
        let drained = if ask_ends {
            tokio::select! {
                () = shutdown.cancelled() => Vec::new(),
                drained = consumer.drained() => drained,
            }
        } else {
            Vec::new()
        };
        record_progress(aggregator, &messages, &drained, received_at).await;
    }
    // Whatever is not committed now is redelivered and refused by the tenants' watermarks.
    consumer.commit_in_background()
}

/// How often the freshness gauge asks Redis for `as_of`.
const FRESHNESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Every few seconds until `stop`: `mentorstream_aggregator_freshness_seconds` from the stored
/// `as_of`, on its own, so that a consumer stuck on a batch shows its growing age.
pub async fn watch_freshness(progress: &Progress, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match progress.as_of().await {
            Ok(Some(as_of)) => {
                let age = (chrono::Utc::now() - as_of).to_std().unwrap_or_default();
                crate::metrics::freshness(age);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot read as_of for the freshness gauge"),
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(FRESHNESS_INTERVAL) => {}
        }
    }
}

/// Stores each partition's last applied offset (which covers every record before it) for the
/// next commit.
fn store_offsets(
    consumer: &Consumer,
    aggregator: &Aggregator,
    messages: &[BorrowedMessage<'_>],
) -> Result<(), KafkaError> {
    let mut last: HashMap<(&str, i32), &BorrowedMessage<'_>> = HashMap::new();
    for message in messages {
        last.insert((message.topic(), message.partition()), message);
    }
    for message in last.values() {
        consumer.store(message)?;
    }
    aggregator.applied.record(&last);
    Ok(())
}

/// Advances `as_of` per partition: to the newest applied record, or to `received_at` for a
/// partition read to its end.
async fn record_progress(
    aggregator: &Aggregator,
    messages: &[BorrowedMessage<'_>],
    drained: &[(String, i32)],
    received_at: chrono::DateTime<chrono::Utc>,
) {
    let mut by_topic: BTreeMap<&str, Vec<&BorrowedMessage<'_>>> = BTreeMap::new();
    for message in messages {
        by_topic.entry(message.topic()).or_default().push(message);
    }
    for (topic, _) in drained {
        by_topic.entry(topic.as_str()).or_default();
    }
    for (topic, applied) in by_topic {
        let ends: Vec<i32> = drained
            .iter()
            .filter(|(drained_topic, _)| drained_topic == topic)
            .map(|(_, partition)| *partition)
            .collect();
        aggregator
            .progress
            .record(topic, &applied, &ends, received_at)
            .await;
    }
}

/// Waits before a retry; `false` when shutdown came first.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(RETRY_PAUSE) => true,
    }
}

impl Aggregator {
    /// Applies `messages`; `false` when shutdown came first (nothing may be committed then).
    async fn apply(
        &self,
        messages: &[BorrowedMessage<'_>],
        shutdown: &CancellationToken,
    ) -> Result<bool, KafkaError> {
        let started = std::time::Instant::now();
        let mut dead_lettered = 0;
        let batches = loop {
            match self.fold(messages).await {
                Ok((batches, poison)) => {
                    for (message, reason) in poison {
                        self.dead_letters.send(message, &reason).await?;
                        dead_lettered += 1;
                    }
                    break batches;
                }
                Err(reason) => tracing::warn!(reason, "cannot fold a batch; retrying"),
            }
            if !pause(shutdown).await {
                return Ok(false);
            }
        };
        for (tenant_id, batch) in batches {
            let refused = loop {
                let applied = self
                    .engine
                    .lock()
                    .await
                    .apply(&tenant_id, batch.calendar, &batch.inputs)
                    .await;
                match applied {
                    Ok(applied) => break applied.refused,
                    // The tenant's stored state cannot be read: the records go to the
                    // dead-letter topic with the cause rather than block the partition.
                    Err(error) if error.is_permanent() => {
                        tracing::error!(%error, tenant_id, records = batch.messages.len(), "dead-lettering a batch");
                        let reason = error.to_string();
                        break (0..batch.messages.len())
                            .map(|position| (position, reason.clone()))
                            .collect();
                    }
                    Err(error) => {
                        tracing::warn!(%error, tenant_id, "cannot apply a batch; retrying");
                    }
                }
                if !pause(shutdown).await {
                    return Ok(false);
                }
            };
            for (position, reason) in refused {
                self.dead_letters
                    .send(batch.messages[position], &reason)
                    .await?;
                dead_lettered += 1;
            }
        }
        if !messages.is_empty() {
            crate::metrics::batch(messages.len(), dead_lettered, started.elapsed());
        }
        Ok(true)
    }

    /// The batch by tenant, and the records that can never be applied.
    async fn fold<'m>(
        &self,
        messages: &'m [BorrowedMessage<'m>],
    ) -> Result<
        (
            BTreeMap<String, TenantBatch<'m>>,
            Vec<(&'m BorrowedMessage<'m>, String)>,
        ),
        String,
    > {
        let mut batches: BTreeMap<String, TenantBatch<'m>> = BTreeMap::new();
        let mut poison = Vec::new();
        // One tenant lookup per tenant and batch, not per record.
        let mut calendars: HashMap<String, Calendar> = HashMap::new();
        for message in messages {
            match self.fold_one(message, &mut calendars).await {
                Ok((tenant_id, calendar, events)) => {
                    let batch = batches.entry(tenant_id).or_insert_with(|| TenantBatch {
                        calendar,
                        inputs: Vec::new(),
                        messages: Vec::new(),
                    });
                    batch.inputs.push(Input {
                        source: format!("{}/{}", message.topic(), message.partition()),
                        offset: message.offset(),
                        events,
                    });
                    batch.messages.push(message);
                }
                Err(Unfolded::Poison(reason)) => poison.push((message, reason)),
                Err(Unfolded::Transient(reason)) => return Err(reason),
            }
        }
        Ok((batches, poison))
    }

    /// The tenant of a record and its events per partner.
    async fn fold_one(
        &self,
        message: &BorrowedMessage<'_>,
        calendars: &mut HashMap<String, Calendar>,
    ) -> Result<
        (
            String,
            Calendar,
            Vec<(String, crate::state::partner::Event)>,
        ),
        Unfolded,
    > {
        let record = InboundRecord::new(message);
        let poison = |error: &dyn std::fmt::Display| Unfolded::Poison(error.to_string());
        if message.topic() == self.activity_topic {
            let event: ActivityEvent = record.decode().map_err(|error| poison(&error))?;
            let calendar = self.calendar(&event.tenant_id, calendars).await?;
            let folded = input::activity(&event, &calendar).map_err(|error| poison(&error))?;
            Ok((event.tenant_id, calendar, vec![folded]))
        } else {
            let event: MentorshipEvent = record.decode().map_err(|error| poison(&error))?;
            let calendar = self.calendar(&event.tenant_id, calendars).await?;
            let folded = input::mentorship(&event, &calendar).map_err(|error| poison(&error))?;
            Ok((event.tenant_id, calendar, folded))
        }
    }

    async fn calendar(
        &self,
        tenant_id: &str,
        calendars: &mut HashMap<String, Calendar>,
    ) -> Result<Calendar, Unfolded> {
        if let Some(calendar) = calendars.get(tenant_id) {
            return Ok(*calendar);
        }
        match self.tenants.cached_tenant(tenant_id).await {
            Ok(tenant) => {
                let calendar = Calendar::new(tenant.time_zone);
                calendars.insert(tenant_id.to_owned(), calendar);
                Ok(calendar)
            }
            Err(TenancyError::UnknownTenant(tenant)) => {
                Err(Unfolded::Poison(format!("unknown tenant `{tenant}`")))
            }
            Err(error) => Err(Unfolded::Transient(error.to_string())),
        }
    }
}
