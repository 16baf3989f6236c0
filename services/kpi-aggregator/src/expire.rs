//! Tombstones for the keys of the KPI updates topic whose bucket expired.
//!
//! A key of `kpi.updates.v1` names a bucket (`d:2026-11-26`, `w:2026-W48`, `m:2026-11`,
//! `life`). Once the bucket is past its retention the KPI state has forgotten it
//! when it next writes the record ([`Bucket::expired`]) and no window of the spec reaches that
//! far back, so the compacted topic forgets it too: every
//! `kpi.tombstone_interval` [`run`] reads the updates topics from their start, finds the keys
//! whose latest record is an update of a bucket expired in its tenant's time zone, and
//! publishes a tombstone (a null value) for each. Keys that change again are published by the
//! updates publisher, which tombstones a bucket already expired when it changes (history
//! imported from long ago) instead of publishing its numbers.
//!
//! One replica sweeps each round: the one that takes the round's lease in Redis
//! ([`Sweeper`]); the others skip it. Should two ever sweep (a lease outlived by a slow sweep),
//! a key tombstoned twice is harmless, and one already tombstoned is not tombstoned again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use mentorstream_config::KafkaConfig;
use mentorstream_kafka::snapshot::{read_to_end, topic_names};
use mentorstream_kafka::{KafkaError, Message as _, OutboundRecord, Producer};
use mentorstream_redis::{Connection, KeySpace};
use mentorstream_tenancy::Tenants;
use tokio_util::sync::CancellationToken;

use crate::calendar::Calendar;
use crate::store::Changed;
use crate::updates::{UPDATE_TIMEOUT, parse_key, update_event, update_key};

/// How long after start the first sweep runs.
const FIRST_SWEEP: Duration = Duration::from_secs(60);
/// Tombstones enqueued before their acknowledgements are awaited.
const CHUNK: usize = 4096;
/// The furthest ahead of UTC a local day can be (UTC+14, Kiribati).
const WIDEST_OFFSET: chrono::TimeDelta = chrono::TimeDelta::hours(14);

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Records read from the updates topics.
    pub read: u64,
    /// Keys tombstoned.
    pub tombstoned: u64,
}

/// Who sweeps: the replica that takes the round's lease.
#[derive(Debug, Clone)]
pub struct Sweeper {
    pub connection: Connection,
    /// The lease's key, shared by every replica of the deployment.
    pub lease: String,
    /// This replica, as the lease names its holder.
    pub holder: String,
}

impl Sweeper {
    /// The sweeper of this process: the lease under the configured key prefix, the holder
    /// named by the host (the pod) and a fresh id.
    pub fn new(connection: Connection, key_prefix: &str) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        Self {
            connection,
            lease: KeySpace::new(key_prefix, "kpi").key(&["tombstone-sweep"]),
            holder: format!("{host}/{}", uuid::Uuid::now_v7()),
        }
    }

    /// Whether this replica sweeps the round: it took the lease, for a little less than the
    /// interval so that the next round's lease is free when any replica asks for it. Without
    /// an answer from Redis it sweeps anyway: a key tombstoned twice is harmless, a round
    /// that nobody sweeps is not.
    pub async fn takes_round(&self, interval: Duration) -> bool {
        let ttl = interval.mul_f64(0.9);
        match self
            .connection
            .take_lease(&self.lease, &self.holder, ttl)
            .await
        {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(%error, "cannot ask for the tombstone sweep's lease; sweeping anyway");
                true
            }
        }
    }

    /// Gives a failed round's lease back, so the next replica to ask sweeps instead of waiting
    /// for it to run out.
    pub async fn gives_round_back(&self) {
        if let Err(error) = self
            .connection
            .release_lease(&self.lease, &self.holder)
            .await
        {
            tracing::warn!(%error, "cannot give the tombstone sweep's lease back; it runs out");
        }
    }
}

/// A sweep at the current time a minute after start (pods restarted more often than every
/// `interval` still sweep), then every `interval` until shutdown, each by the replica that
/// takes the round's lease; a sweep that takes longer than `interval` (a partition without a
/// leader) is given up and tried at the next round.
pub async fn run(
    kafka: KafkaConfig,
    tenants: Tenants,
    sweeper: Sweeper,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let producer = match Producer::new(&kafka, UPDATE_TIMEOUT) {
        Ok(producer) => producer,
        Err(error) => {
            tracing::error!(%error, "cannot tombstone expired KPI update keys");
            return;
        }
    };
    let first = tokio::time::Instant::now() + FIRST_SWEEP.min(interval);
    let mut rounds = tokio::time::interval_at(first, interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        if !sweeper.takes_round(interval).await {
            tracing::debug!("another replica sweeps this round");
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            swept = tokio::time::timeout(interval, sweep(&kafka, &tenants, &producer, Utc::now())) => match swept {
                Ok(Ok(swept)) => tracing::info!(read = swept.read, tombstoned = swept.tombstoned, "expired KPI update keys tombstoned"),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot tombstone expired KPI update keys; next round tries again");
                    sweeper.gives_round_back().await;
                }
                Err(_) => {
                    tracing::warn!(?interval, "tombstoning expired KPI update keys took too long; next round tries again");
                    sweeper.gives_round_back().await;
                }
            },
        }
    }
}

/// Tombstones, at `now`, every key of the updates topics whose latest record is an update of
/// a bucket expired in its tenant's time zone.
pub async fn sweep(
    kafka: &KafkaConfig,
    tenants: &Tenants,
    producer: &Producer,
    now: DateTime<Utc>,
) -> Result<Swept, KafkaError> {
    let topics = &kafka.topics;
    let names = if topics.kpi_updates_per_tenant {
        topic_names(kafka, |name| topics.is_tenant_kpi_updates(name)).await?
    } else {
        vec![topics.kpi_updates.clone()]
    };
    let mut swept = Swept::default();
    for topic in names {
        let (read, candidates) = live_expired_anywhere(kafka, &topic, now).await?;
        swept.read += read;
        let expired = expired_in_their_zone(tenants, candidates, now).await;
        let tombstoned = tombstone(producer, &topic, &expired).await?;
        crate::metrics::tombstoned(tombstoned);
        swept.tombstoned += tombstoned;
    }
    Ok(swept)
}

/// The keys of `topic` whose latest record is an update (not a tombstone) of a bucket expired
/// in the time zone furthest ahead: all the expired ones, and a few that are not yet in
/// their tenant's zone.
async fn live_expired_anywhere(
    kafka: &KafkaConfig,
    topic: &str,
    now: DateTime<Utc>,
) -> Result<(u64, HashMap<String, Changed>), KafkaError> {
    let latest_day = (now + WIDEST_OFFSET).date_naive();
    let mut candidates = HashMap::new();
    let read = read_to_end(kafka, topic, |message| {
        let Some(key) = message.key().and_then(|key| std::str::from_utf8(key).ok()) else {
            return;
        };
        match parse_key(key) {
            Some(changed) if message.payload().is_some() && changed.bucket.expired(latest_day) => {
                candidates.insert(key.to_owned(), changed);
            }
            _ => {
                candidates.remove(key);
            }
        }
    })
    .await?;
    Ok((read, candidates))
}

/// The candidates whose bucket is expired on their tenant's local day at `now`. A tenant that
/// cannot be read keeps its keys until the next sweep.
async fn expired_in_their_zone(
    tenants: &Tenants,
    candidates: HashMap<String, Changed>,
    now: DateTime<Utc>,
) -> Vec<Changed> {
    let mut today: HashMap<Arc<str>, Option<NaiveDate>> = HashMap::new();
    let mut expired = Vec::new();
    for changed in candidates.into_values() {
        let day = match today.get(&changed.tenant_id) {
            Some(day) => *day,
            None => {
                let day = match tenants.cached_tenant(&changed.tenant_id).await {
                    Ok(tenant) => Some(Calendar::new(tenant.time_zone).local_day(now)),
                    Err(error) => {
                        tracing::warn!(%error, tenant_id = %changed.tenant_id, "cannot read a tenant; its expired KPI update keys wait");
                        None
                    }
                };
                today.insert(changed.tenant_id.clone(), day);
                day
            }
        };
        if day.is_some_and(|day| changed.bucket.expired(day)) {
            expired.push(changed);
        }
    }
    expired
}

/// Publishes a tombstone for each key and waits for them all; how many were acknowledged.
async fn tombstone(
    producer: &Producer,
    topic: &str,
    expired: &[Changed],
) -> Result<u64, KafkaError> {
    let mut acknowledged = 0;
    for chunk in expired.chunks(CHUNK) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for changed in chunk {
            deliveries.push(producer.enqueue(&tombstone_record(topic, changed)).await?);
        }
        for delivery in deliveries {
            delivery.await?;
            acknowledged += 1;
        }
    }
    Ok(acknowledged)
}

/// The record that removes `changed`'s key from `topic`.
fn tombstone_record(topic: &str, changed: &Changed) -> OutboundRecord {
    OutboundRecord::tombstone(topic, update_key(changed), update_event(changed))
}
