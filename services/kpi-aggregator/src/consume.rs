//! The aggregator's consumers: batches of activity or mentorship records → the KPI state →
//! stored offsets.
//!
//! Whatever librdkafka has ready (up to a batch) is decoded, folded into one batch per partner
//! shard and partition and applied with [`Store::apply`]; only then are the records' offsets
//! stored for the next commit. A record that can never be applied (undecodable, unknown tenant, malformed
//! volume) goes to the dead-letter topic. While Redis or the control database is unavailable
//! the batch is retried and nothing is committed, so a crash or a rebalance redelivers it and
//! the shard watermarks make that harmless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use mentorstream_kafka::{
    BorrowedMessage, Consumer, DeadLetters, InboundRecord, KafkaError, Message as _,
};
use mentorstream_proto::activity::v1::ActivityEvent;
use mentorstream_proto::mentorship::v1::MentorshipEvent;
use mentorstream_tenancy::{TenancyError, Tenants};
use tokio_util::sync::CancellationToken;

use crate::calendar::Calendar;
use crate::fold::{ShardEvent, mentorship_event, partner_event};
use crate::progress::Progress;
use crate::store::{PartnerBatch, Store};

/// Records applied together at most.
const MAX_BATCH: usize = 4096;
/// Pause before retrying a batch while Redis or the control database is away.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What the consumer applies records with.
#[derive(Debug, Clone)]
pub struct Aggregator {
    /// Records of this topic are activity events; of any other, mentorship events.
    pub activity_topic: String,
    pub store: Store,
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
    fn record(&self, last: &HashMap<i32, &BorrowedMessage<'_>>) {
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

/// Consumes until `shutdown`, then commits what was applied. `consumer` reads `topic` only.
pub async fn run(
    consumer: &Consumer,
    topic: &str,
    aggregator: &Aggregator,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let mut chunks = consumer.inner().stream().ready_chunks(MAX_BATCH);
    loop {
        let chunk = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            chunk = chunks.next() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
        };
        // A partition read to its end holds nothing accepted before this moment that is not in
        // this chunk (up to the broker's propagation delay).
        let received_at = chrono::Utc::now();
        let mut messages = Vec::with_capacity(chunk.len());
        let mut drained = Vec::new();
        for item in chunk {
            match item {
                Ok(message) => messages.push(message),
                Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => drained.push(partition),
                Err(error) => tracing::warn!(%error, "consumer error"),
            }
        }
        if !aggregator.apply(&messages, &shutdown).await? {
            break;
        }
        // Storing a partition's last applied offset covers every record before it.
        let mut last: HashMap<i32, &BorrowedMessage<'_>> = HashMap::new();
        for message in &messages {
            last.insert(message.partition(), message);
        }
        for message in last.values() {
            consumer.store(message)?;
        }
        aggregator.applied.record(&last);
        aggregator
            .progress
            .record(topic, &messages, &drained, received_at)
            .await;
    }
    // Whatever is not committed now is redelivered and refused by the shard watermarks.
    consumer.commit_in_background()
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
        let batches = loop {
            match self.fold(messages).await {
                Ok((batches, poison)) => {
                    for (message, reason) in poison {
                        self.dead_letters.send(message, &reason).await?;
                    }
                    break batches;
                }
                Err(reason) => tracing::warn!(reason, "cannot fold a batch; retrying"),
            }
            if !pause(shutdown).await {
                return Ok(false);
            }
        };
        loop {
            match self.store.apply(&batches).await {
                Ok(()) => return Ok(true),
                Err(error) => tracing::warn!(%error, "cannot apply a batch; retrying"),
            }
            if !pause(shutdown).await {
                return Ok(false);
            }
        }
    }

    /// One batch per (tenant, partner, topic, partition), and the records that can never be
    /// applied.
    async fn fold<'m>(
        &self,
        messages: &'m [BorrowedMessage<'m>],
    ) -> Result<(Vec<PartnerBatch>, Vec<(&'m BorrowedMessage<'m>, String)>), String> {
        // Where each shard event goes (tenant, partner, message), and the events apart, so that
        // the events move into their batches while the names are borrowed as keys.
        let mut targets: Vec<(String, String, &BorrowedMessage<'_>)> =
            Vec::with_capacity(messages.len());
        let mut events: Vec<ShardEvent> = Vec::with_capacity(messages.len());
        let mut poison = Vec::new();
        // One tenant lookup per tenant and batch, not per record.
        let mut calendars: HashMap<String, Calendar> = HashMap::new();
        for message in messages {
            match self.fold_one(message, &mut calendars).await {
                Ok((tenant_id, shard_events)) => {
                    for (partner_id, shard_event) in shard_events {
                        targets.push((tenant_id.clone(), partner_id, message));
                        events.push(shard_event);
                    }
                }
                Err(Unfolded::Poison(reason)) => poison.push((message, reason)),
                Err(Unfolded::Transient(reason)) => return Err(reason),
            }
        }
        let mut positions: HashMap<(&str, &str, i32), usize> = HashMap::new();
        let mut batches: Vec<PartnerBatch> = Vec::new();
        for ((tenant_id, partner_id, message), event) in targets.iter().zip(events) {
            let position = *positions
                .entry((tenant_id, partner_id, message.partition()))
                .or_insert_with(|| {
                    batches.push(PartnerBatch {
                        tenant_id: tenant_id.clone(),
                        partner_id: partner_id.clone(),
                        source: format!("{}/{}", message.topic(), message.partition()),
                        events: Vec::new(),
                    });
                    batches.len() - 1
                });
            batches[position].events.push(event);
        }
        Ok((batches, poison))
    }

    /// The tenant of a record and its events for each partner shard it concerns.
    async fn fold_one(
        &self,
        message: &BorrowedMessage<'_>,
        calendars: &mut HashMap<String, Calendar>,
    ) -> Result<(String, Vec<(String, ShardEvent)>), Unfolded> {
        let record = InboundRecord::new(message);
        let poison = |error: &dyn std::fmt::Display| Unfolded::Poison(error.to_string());
        if message.topic() == self.activity_topic {
            let event: ActivityEvent = record.decode().map_err(|error| poison(&error))?;
            let calendar = self.calendar(&event.tenant_id, calendars).await?;
            let shard_event = partner_event(&event, message.offset(), &calendar)
                .map_err(|error| poison(&error))?;
            Ok((event.tenant_id, vec![(event.partner_id, shard_event)]))
        } else {
            let event: MentorshipEvent = record.decode().map_err(|error| poison(&error))?;
            let calendar = self.calendar(&event.tenant_id, calendars).await?;
            let shard_events = mentorship_event(&event, message.offset(), &calendar)
                .map_err(|error| poison(&error))?;
            Ok((event.tenant_id, shard_events))
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
