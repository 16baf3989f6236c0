//! `mentorstream.kpi.updates.v1` and WatchKpis.
//!
//! The store reports which (subject, bucket) numbers every applied batch changed. [`publish`]
//! coalesces them for an interval and publishes each changed key's current scorecard as a
//! `KpiUpdate` to the compacted updates topic, keyed `tenant/kind/id/bucket`, so the topic
//! keeps the latest numbers of every key. [`Hub`] reads the topic from its end and fans the
//! updates out to this process's WatchKpis streams: a watcher sees what every replica applies.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use mentorstream_config::{Config, KafkaConfig};
use mentorstream_kafka::admin::{TopicSpec, create_topics};
use mentorstream_kafka::{
    CloudEvent, Consumer, InboundRecord, KafkaError, Message as _, OutboundRecord, PendingDelivery,
    Producer,
};
use mentorstream_proto::kpi::v1::{KpiUpdate, Subject, SubjectKind, Window, WindowKind};
use mentorstream_tenancy::Tenant;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::calendar::{Bucket, Calendar};
use crate::store::{Changed, OwnedSubject};

/// Updates a watcher may fall behind by before it gets a fresh snapshot instead.
const HUB_CAPACITY: usize = 4096;

/// How long one update may take to be acknowledged.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The API spelling of a subject.
pub fn proto_subject(subject: &OwnedSubject) -> Subject {
    let (kind, id) = match subject {
        OwnedSubject::Partner(id) => (SubjectKind::Partner, id.as_str()),
        OwnedSubject::Team(id) => (SubjectKind::Team, id.as_str()),
        OwnedSubject::Group(id) => (SubjectKind::Group, id.as_str()),
        OwnedSubject::Tenant => (SubjectKind::Tenant, ""),
    };
    Subject {
        kind: kind.into(),
        id: id.to_owned(),
        mentor_id: String::new(),
    }
}

/// The window whose number is one bucket.
pub fn bucket_window(bucket: Bucket) -> Window {
    let kind = match bucket {
        Bucket::Day(_) => WindowKind::Day,
        Bucket::Week { .. } => WindowKind::Week,
        Bucket::Month { .. } => WindowKind::Month,
        Bucket::Lifetime => WindowKind::Lifetime,
    };
    Window {
        kind: kind.into(),
        anchor: bucket.first_day().map(Into::into),
    }
}

/// The record key of an update: `tenant/kind/id/bucket` (kinds p, t, g, n).
pub(crate) fn update_key(changed: &Changed) -> String {
    let (kind, id) = match &changed.subject {
        OwnedSubject::Partner(id) => ("p", id.as_str()),
        OwnedSubject::Team(id) => ("t", id.as_str()),
        OwnedSubject::Group(id) => ("g", id.as_str()),
        OwnedSubject::Tenant => ("n", ""),
    };
    format!("{}/{kind}/{id}/{}", changed.tenant_id, changed.bucket)
}

pub(crate) fn parse_key(key: &str) -> Option<Changed> {
    let (rest, bucket) = key.rsplit_once('/')?;
    let (tenant_id, rest) = rest.split_once('/')?;
    let (kind, id) = rest.split_once('/')?;
    let subject = match kind {
        "p" => OwnedSubject::Partner(id.to_owned()),
        "t" => OwnedSubject::Team(id.to_owned()),
        "g" => OwnedSubject::Group(id.to_owned()),
        "n" => OwnedSubject::Tenant,
        _ => return None,
    };
    Some(Changed {
        tenant_id: tenant_id.into(),
        subject,
        bucket: Bucket::parse(bucket)?,
    })
}

/// The keys whose numbers changed since the publisher last took them, each once.
///
/// Bounded: while it holds its capacity ([`PENDING_CAPACITY`]) of keys, the consumers wait to add theirs (their
/// batch is applied, its offsets not yet stored), so a publisher that falls behind slows the
/// consumers down instead of growing the process without limit. Once the publisher is gone
/// (shutdown), nobody waits any more.
#[derive(Debug)]
pub struct PendingUpdates {
    state: Mutex<PendingState>,
    room: Notify,
    capacity: usize,
}

impl Default for PendingUpdates {
    fn default() -> Self {
        Self::with_capacity(PENDING_CAPACITY)
    }
}

#[derive(Debug, Default)]
struct PendingState {
    keys: HashSet<Changed>,
    closed: bool,
}

/// Distinct changed keys held at most (about 150 bytes each) before the consumers wait.
pub const PENDING_CAPACITY: usize = 32_768;

/// Scorecards computed at once by the publisher (Redis reads pipelined on one connection).
const PUBLISH_CONCURRENCY: usize = 64;
/// Updates enqueued before the publisher waits for their acknowledgements.
const PUBLISH_CHUNK: usize = 4096;

impl PendingUpdates {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            room: Notify::new(),
            capacity,
        }
    }

    /// Adds what a batch changed, first waiting until the set has room for all of it (or is
    /// empty: one batch of a deep genealogy may change more keys than the capacity).
    pub async fn add(&self, changed: Vec<Changed>) {
        loop {
            let room = self.room.notified();
            {
                let mut state = self.lock();
                let fits =
                    state.keys.is_empty() || state.keys.len() + changed.len() <= self.capacity;
                if state.closed || fits {
                    if !state.closed {
                        state.keys.extend(changed);
                    }
                    return;
                }
            }
            room.await;
        }
    }

    /// Everything pending, leaving the set empty.
    fn take(&self) -> HashSet<Changed> {
        let keys = std::mem::take(&mut self.lock().keys);
        self.room.notify_waiters();
        keys
    }

    /// Puts back a key that could not be published; it never waits, so a failing round
    /// cannot block itself.
    fn put_back(&self, changed: Changed) {
        self.lock().keys.insert(changed);
    }

    /// Nobody publishes any more: adding returns at once and keeps nothing.
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.keys.clear();
        drop(state);
        self.room.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every `interval` until shutdown: the scorecards of what changed since, to `topic`. A key
/// that could not be published stays for the next round.
pub async fn publish(
    api: Api,
    pending: Arc<PendingUpdates>,
    producer: Producer,
    kafka: KafkaConfig,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut rounds = tokio::time::interval(interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut topics = TenantTopics::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = rounds.tick() => {}
        }
        let topic = |changed: &Changed| kafka.topics.kpi_updates_of(&changed.tenant_id);
        let mut taken = pending.take();
        // A tenant whose topic cannot be created yet waits for the next round; the others go.
        let missing = topics.ensure(&kafka, &taken).await;
        if !missing.is_empty() {
            let (waiting, ready): (HashSet<Changed>, HashSet<Changed>) = taken
                .into_iter()
                .partition(|changed| missing.contains(&topic(changed)));
            taken = ready;
            waiting
                .into_iter()
                .for_each(|changed| pending.put_back(changed));
        }
        let mut round = taken.into_iter().peekable();
        // A chunk's records are enqueued, then awaited, so a round of many keys holds at most
        // a chunk of them in memory. A shutdown ends the round between chunks: what is left
        // would not be published by this process anyway once its grace period is over.
        while round.peek().is_some() && !shutdown.is_cancelled() {
            let chunk = futures::stream::iter(round.by_ref().take(PUBLISH_CHUNK))
                .map(|changed| {
                    let topic = topic(&changed);
                    let (api, producer) = (&api, &producer);
                    async move { enqueue_update(api, producer, &topic, changed).await }
                })
                .buffer_unordered(PUBLISH_CONCURRENCY)
                .filter_map(|enqueued| {
                    std::future::ready(match enqueued {
                        Ok(delivery) => Some(delivery),
                        Err(changed) => {
                            pending.put_back(changed);
                            None
                        }
                    })
                })
                .collect::<Vec<_>>();
            let deliveries = tokio::select! {
                () = shutdown.cancelled() => break,
                deliveries = chunk => deliveries,
            };
            for (changed, delivery) in deliveries {
                if let Err(error) = delivery.await {
                    tracing::warn!(%error, "a KPI update was not acknowledged");
                    pending.put_back(changed);
                }
            }
        }
    }
    pending.close();
}

/// The per-tenant updates topics this process made sure exist (none with one shared topic,
/// which every service provisions at start).
#[derive(Debug, Default)]
struct TenantTopics {
    created: HashSet<String>,
}

impl TenantTopics {
    /// Creates the topics of the tenants in `changed` not created yet; the topics that could
    /// not be (their updates wait).
    async fn ensure(
        &mut self,
        kafka: &KafkaConfig,
        changed: &HashSet<Changed>,
    ) -> BTreeSet<String> {
        let mut failed = BTreeSet::new();
        if !kafka.topics.kpi_updates_per_tenant {
            return failed;
        }
        let missing: BTreeSet<String> = changed
            .iter()
            .map(|changed| kafka.topics.kpi_updates_of(&changed.tenant_id))
            .filter(|topic| !self.created.contains(topic))
            .collect();
        for topic in missing {
            match create_topics(kafka, &[TopicSpec::compacted(&topic)]).await {
                Ok(()) => {
                    self.created.insert(topic);
                }
                Err(error) => {
                    tracing::warn!(%error, topic, "cannot create a tenant's KPI updates topic; its updates wait");
                    failed.insert(topic);
                }
            }
        }
        failed
    }
}

/// Computes the current scorecard of `changed` and hands it to the producer.
async fn enqueue_update(
    api: &Api,
    producer: &Producer,
    topic: &str,
    changed: Changed,
) -> Result<(Changed, PendingDelivery), Changed> {
    let record = match update_record(api, topic, &changed).await {
        Ok(record) => record,
        Err(status) => {
            tracing::warn!(%status, "cannot compute a KPI update");
            return Err(changed);
        }
    };
    match producer.enqueue(&record).await {
        Ok(delivery) => Ok((changed, delivery)),
        Err(error) => {
            tracing::warn!(%error, "cannot publish a KPI update");
            Err(changed)
        }
    }
}

/// The record of `changed`'s current numbers, or its tombstone when its bucket has already
/// expired in the tenant's time zone (history imported from long ago): the KPI state has
/// forgotten that bucket, so the topic must not keep it.
async fn update_record(
    api: &Api,
    topic: &str,
    changed: &Changed,
) -> Result<OutboundRecord, tonic::Status> {
    let tenant = api.tenant_by_id(&changed.tenant_id).await?;
    let today = Calendar::new(tenant.time_zone).local_day(chrono::Utc::now());
    let key = update_key(changed);
    if changed.bucket.expired(today) {
        return Ok(OutboundRecord::tombstone(topic, key, update_event(changed)));
    }
    let update = update(api, &tenant, changed).await?;
    Ok(OutboundRecord::protobuf(
        topic,
        key,
        &update,
        update_event(changed),
    ))
}

/// The CloudEvents attributes of a record of `changed`'s key.
pub(crate) fn update_event(changed: &Changed) -> CloudEvent {
    CloudEvent {
        id: uuid::Uuid::new_v4().to_string(),
        event_type: "mentorstream.kpi.v1.KpiUpdate".into(),
        source: format!("/tenants/{}/kpi", changed.tenant_id),
        time: chrono::Utc::now(),
    }
}

/// The current scorecard of a changed key.
async fn update(api: &Api, tenant: &Tenant, changed: &Changed) -> Result<KpiUpdate, tonic::Status> {
    let namespace = api.current_namespace()?;
    let scorecard = api
        .scorecard(
            &namespace,
            tenant,
            proto_subject(&changed.subject),
            bucket_window(changed.bucket),
        )
        .await?;
    Ok(KpiUpdate {
        tenant_id: changed.tenant_id.to_string(),
        subject: scorecard.subject,
        window: scorecard.window,
        values: scorecard.values,
        as_of: scorecard.as_of,
    })
}

/// An update read back from the topic.
#[derive(Debug, Clone)]
pub struct Published {
    pub changed: Changed,
    pub update: KpiUpdate,
}

/// Fans the updates topic out to the watchers of this process.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<Arc<Published>>,
}

impl Hub {
    /// Reads `config`'s updates topic from its end until `shutdown`, in a group of its own.
    pub fn start(config: &Config, shutdown: CancellationToken) -> Result<Self, KafkaError> {
        let group = format!(
            "{}-watch-{}",
            config.redis.key_prefix,
            uuid::Uuid::new_v4().simple()
        );
        let topics = &config.kafka.topics;
        // Per-tenant topics are followed by pattern (tenant ids are hex, so the shared topic's
        // `.dlq` twin does not match). A tenant's topic appears with its first update and is
        // found at the next metadata refresh (every second), so it is read from its beginning:
        // nothing published before the hub was assigned it is missed. A watcher recomputes
        // the numbers an update names, so reading an older update again is harmless.
        let (topic, refresh, reset) = if topics.kpi_updates_per_tenant {
            let pattern = format!("^{}\\.[0-9a-f]+$", topics.kpi_updates.replace('.', "\\."));
            (pattern, "1000", "earliest")
        } else {
            (topics.kpi_updates.clone(), "300000", "latest")
        };
        let consumer = Consumer::with_properties(
            &config.kafka,
            &group,
            &[&topic],
            &[
                ("auto.offset.reset", reset),
                ("enable.auto.commit", "false"),
                ("topic.metadata.refresh.interval.ms", refresh),
            ],
        )?;
        let (sender, _) = broadcast::channel(HUB_CAPACITY);
        let hub = Self { sender };
        let fan_out = hub.sender.clone();
        tokio::spawn(async move {
            let mut stream = consumer.inner().stream();
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = stream.next() => match message {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => {
                            tracing::warn!(%error, "cannot read KPI updates");
                            continue;
                        }
                        None => return,
                    },
                };
                let changed = message
                    .key()
                    .and_then(|key| std::str::from_utf8(key).ok())
                    .and_then(parse_key);
                let update = InboundRecord::new(&message).decode::<KpiUpdate>();
                if let (Some(changed), Ok(update)) = (changed, update) {
                    // No watcher is fine.
                    let _ = fan_out.send(Arc::new(Published { changed, update }));
                }
            }
        });
        Ok(hub)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_keys_parse_back() {
        for subject in [
            OwnedSubject::Partner("ann".into()),
            OwnedSubject::Team("root".into()),
            OwnedSubject::Group("g-1".into()),
            OwnedSubject::Tenant,
        ] {
            let changed = Changed {
                tenant_id: "t1".into(),
                subject,
                bucket: Bucket::parse("w:2026-W48").expect("bucket"),
            };
            assert_eq!(parse_key(&update_key(&changed)), Some(changed));
        }
        assert_eq!(parse_key("t1/x/ann/life"), None);
    }

    fn partner_day(id: &str) -> Changed {
        Changed {
            tenant_id: "t1".into(),
            subject: OwnedSubject::Partner(id.into()),
            bucket: Bucket::parse("d:2026-11-27").expect("bucket"),
        }
    }

    #[tokio::test]
    async fn pending_updates_coalesce_and_hold_a_full_consumer_until_taken() {
        use futures::FutureExt as _;
        let pending = PendingUpdates::with_capacity(2);
        // An empty set takes a whole batch, even one beyond its capacity; a key changed
        // twice is pending once.
        pending
            .add(vec![partner_day("a"), partner_day("b"), partner_day("a")])
            .await;
        // Full: the next batch waits until the publisher takes what is there.
        let mut waiting = Box::pin(pending.add(vec![partner_day("c")]));
        assert!((&mut waiting).now_or_never().is_none());
        let taken = pending.take();
        assert_eq!(taken, HashSet::from([partner_day("a"), partner_day("b")]));
        waiting.await;
        // A batch waits until all of it fits: one key pending, two more than capacity 2.
        let mut waiting = Box::pin(pending.add(vec![partner_day("a"), partner_day("b")]));
        assert!((&mut waiting).now_or_never().is_none());
        assert_eq!(pending.take(), HashSet::from([partner_day("c")]));
        waiting.await;
        // A key put back after a failed publish never waits, even when full.
        pending.put_back(partner_day("d"));
        assert_eq!(pending.take().len(), 3);
    }

    #[tokio::test]
    async fn once_the_publisher_is_gone_nobody_waits_and_nothing_is_kept() {
        use futures::FutureExt as _;
        let pending = PendingUpdates::with_capacity(1);
        pending.add(vec![partner_day("a")]).await;
        let mut waiting = Box::pin(pending.add(vec![partner_day("b")]));
        assert!((&mut waiting).now_or_never().is_none());
        pending.close();
        waiting.await;
        pending.add(vec![partner_day("c")]).await;
        assert!(pending.take().is_empty());
    }
}
