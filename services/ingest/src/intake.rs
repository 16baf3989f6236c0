//! The path of a batch of events from the request to the activity topic.
//!
//! [`Intake::prepare`] validates, claims identities in Redis (one round trip) and enqueues the
//! claimed events to Kafka in request order; [`Prepared::settle`] waits for the broker's
//! acknowledgements, then confirms delivered events in Redis and releases the others. The two
//! halves are separate so a stream can prepare the next batch while the broker acknowledges
//! the previous one, without ever enqueueing out of order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use mentorstream_kafka::{
    CloudEvent, KafkaError, OutboundRecord, PendingDelivery, Producer, tenant_partition,
};
use mentorstream_proto::activity::v1::activity_event::Payload;
use mentorstream_proto::activity::v1::{ActivityEvent, PartnerEnrolled, PersonalFields};
use mentorstream_proto::common::v1::FieldViolation;
use mentorstream_proto::ingest::v1::{EventResult, EventStatus, RejectionReason};
use mentorstream_tenancy::{TenancyError, Tenants};
use prost::Message as _;
use tracing::Instrument as _;

use crate::dedup::{ClaimToken, Dedup, DedupError, Entry, Fingerprint, Seen};
use crate::metrics;
use crate::validate::{Rejection, Window, validate};

/// CloudEvents `type` of the records on the activity topic.
pub const EVENT_TYPE: &str = "mentorstream.activity.v1.ActivityEvent";
/// How long sealing a batch's enrolments may wait for the control database: well inside the
/// claims' lease, so a stalled database answers UNAVAILABLE before another request could take
/// the events over.
const SEAL_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause while another request holds an event's claim.
const CONTENDED_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(200));

/// Why a batch could not be taken in. Nothing of it is lost: a retry is safe.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("Kafka did not acknowledge {path}: {source}")]
    Kafka { path: String, source: KafkaError },
    #[error("cannot check duplicates: {0}")]
    Dedup(#[from] DedupError),
    #[error(
        "{path} (source `{event_source}`, source_event_id `{source_event_id}`) is being \
         accepted by another request right now"
    )]
    Contended {
        path: String,
        event_source: String,
        source_event_id: String,
    },
    #[error("cannot seal the personal fields of enrolments: {0}")]
    DataKeys(#[from] mentorstream_tenancy::TenancyError),
    #[error(
        "cannot seal the personal fields of enrolments: the control database did not answer \
         within {0:?}"
    )]
    DataKeysTimeout(Duration),
}

impl Unavailable {
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Kafka { .. } => "kafka",
            Self::Dedup(_) => "redis",
            Self::Contended { .. } => "contended",
            Self::DataKeys(_) | Self::DataKeysTimeout(_) => "control_database",
        }
    }
}

/// One event as submitted; `path` names it in violations (`events[3]`, `event`).
#[derive(Debug)]
pub struct Submitted {
    pub path: String,
    pub event: Option<ActivityEvent>,
}

/// The tenant an intake is for.
#[derive(Debug, Clone)]
pub struct TenantScope {
    pub tenant_id: String,
    pub allowed_lateness: Duration,
}

/// What ingest answers for one event, once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Duplicate,
    Rejected(Rejection),
}

impl Verdict {
    pub fn into_result(self, index: u32) -> EventResult {
        let (status, reason, violations) = match self {
            Self::Accepted => (
                EventStatus::Accepted,
                RejectionReason::Unspecified,
                Vec::new(),
            ),
            Self::Duplicate => (
                EventStatus::Duplicate,
                RejectionReason::Unspecified,
                Vec::new(),
            ),
            Self::Rejected(rejection) => (
                EventStatus::Rejected,
                rejection.reason,
                rejection.violations,
            ),
        };
        EventResult {
            index,
            status: status.into(),
            reason: reason.into(),
            violations,
        }
    }
}

/// Validates, deduplicates and publishes activity events.
#[derive(Debug, Clone)]
pub struct Intake {
    producer: Producer,
    dedup: Dedup,
    /// Holds the partners' data keys, which seal the personal fields of enrolments.
    tenants: Tenants,
    topic: String,
    /// The topic's partitions: a tenant's events go to the tenant's one.
    partitions: i32,
    claim_wait: Duration,
}

/// A valid event that still needs its claim.
#[derive(Debug)]
struct Candidate {
    position: usize,
    path: String,
    event: ActivityEvent,
    occurred_at: DateTime<Utc>,
    entry: Entry,
}

/// A claimed event on its way to the broker.
#[derive(Debug)]
struct Publishing {
    candidate: Candidate,
    /// `None`: not enqueued because an earlier enqueue of this batch failed (enqueueing it
    /// anyway could put it before an earlier event of the same partner).
    delivery: Option<Result<PendingDelivery, KafkaError>>,
}

/// A batch whose claimed events are enqueued; [`Prepared::settle`] finishes it.
#[derive(Debug)]
#[must_use = "claims are confirmed or released only by settle"]
pub struct Prepared {
    verdicts: Vec<Option<Verdict>>,
    publishing: Vec<Publishing>,
    token: ClaimToken,
    enqueued_at: Instant,
}

/// The end of a batch: the verdicts of its events in order, up to the first event that could
/// not be published, and why it could not.
#[derive(Debug)]
pub struct Settled {
    pub verdicts: Vec<Verdict>,
    pub failure: Option<Unavailable>,
}

impl Intake {
    pub fn new(
        producer: Producer,
        dedup: Dedup,
        tenants: Tenants,
        topic: String,
        partitions: i32,
        claim_wait: Duration,
    ) -> Self {
        Self {
            producer,
            dedup,
            tenants,
            topic,
            partitions,
            claim_wait,
        }
    }

    /// Validates `events`, claims the valid ones and enqueues those nobody had, in order.
    /// `token` identifies the request (or stream) holding the claims.
    pub async fn prepare(
        &self,
        tenant: &TenantScope,
        token: &ClaimToken,
        events: Vec<Submitted>,
    ) -> Result<Prepared, Unavailable> {
        let window = Window {
            now: Utc::now(),
            allowed_lateness: tenant.allowed_lateness,
        };
        let mut verdicts = Vec::with_capacity(events.len());
        let mut candidates = Vec::with_capacity(events.len());
        for (position, submitted) in events.into_iter().enumerate() {
            match self.admit(tenant, window, position, submitted) {
                Ok(candidate) => {
                    candidates.push(candidate);
                    verdicts.push(None);
                }
                Err(rejection) => verdicts.push(Some(Verdict::Rejected(rejection))),
            }
        }
        let mut claimed = self
            .claim_all(token, candidates, &mut verdicts)
            .instrument(tracing::debug_span!("claim"))
            .await?;
        let sealed =
            match tokio::time::timeout(SEAL_TIMEOUT, self.seal_personal(&mut claimed)).await {
                Ok(sealed) => sealed.map_err(Unavailable::from),
                Err(_) => Err(Unavailable::DataKeysTimeout(SEAL_TIMEOUT)),
            };
        // The claimed events (half sealed, perhaps) are dropped; a retry starts over.
        if let Err(error) = sealed {
            self.release(token, &claimed).await;
            return Err(error);
        }
        let publishing = self.enqueue_all(claimed).await;
        Ok(Prepared {
            verdicts,
            publishing,
            token: token.clone(),
            enqueued_at: Instant::now(),
        })
    }

    fn admit(
        &self,
        tenant: &TenantScope,
        window: Window,
        position: usize,
        submitted: Submitted,
    ) -> Result<Candidate, Rejection> {
        let Some(event) = submitted.event else {
            return Err(Rejection {
                reason: RejectionReason::Invalid,
                violations: vec![FieldViolation {
                    field: submitted.path,
                    description: "is required".into(),
                }],
            });
        };
        let event = validate(event, &tenant.tenant_id, window, &submitted.path)?;
        let occurred_at = event
            .occurred_at
            .as_ref()
            .and_then(|time| {
                DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
            })
            .unwrap_or(window.now);
        let entry = self.dedup.entry(
            &tenant.tenant_id,
            &event.source,
            &event.source_event_id,
            Fingerprint::of(&event.encode_to_vec()),
            occurred_at,
            tenant.allowed_lateness,
        );
        Ok(Candidate {
            position,
            path: submitted.path,
            event,
            occurred_at,
            entry,
        })
    }

    /// Claims every candidate; records the verdict of those seen before. Waits (bounded) for
    /// identities another request is publishing right now.
    async fn claim_all(
        &self,
        token: &ClaimToken,
        mut waiting: Vec<Candidate>,
        verdicts: &mut [Option<Verdict>],
    ) -> Result<Vec<Candidate>, Unavailable> {
        let deadline = Instant::now() + self.claim_wait;
        let mut backoff = CONTENDED_BACKOFF.0;
        let mut claimed = Vec::with_capacity(waiting.len());
        loop {
            let entries: Vec<&Entry> = waiting.iter().map(|candidate| &candidate.entry).collect();
            let seen = match self.dedup.claim(token, &entries).await {
                Ok(seen) => seen,
                Err(error) => {
                    self.release(token, &claimed).await;
                    return Err(error.into());
                }
            };
            let mut contended = Vec::new();
            for (candidate, seen) in waiting.into_iter().zip(seen) {
                match seen {
                    Seen::Claimed => claimed.push(candidate),
                    // Ours: an earlier event of this request or stream; it is answered first,
                    // and nothing after it is answered if it fails.
                    Seen::Accepted(fingerprint)
                    | Seen::InFlight {
                        fingerprint,
                        ours: true,
                    } => {
                        verdicts[candidate.position] =
                            Some(if fingerprint == candidate.entry.fingerprint {
                                Verdict::Duplicate
                            } else {
                                Verdict::Rejected(conflict(&candidate.path))
                            });
                    }
                    Seen::InFlight { ours: false, .. } => contended.push(candidate),
                }
            }
            let Some(first) = contended.first() else {
                break;
            };
            if Instant::now() >= deadline {
                self.release(token, &claimed).await;
                return Err(Unavailable::Contended {
                    path: first.path.clone(),
                    event_source: first.event.source.clone(),
                    source_event_id: first.event.source_event_id.clone(),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(CONTENDED_BACKOFF.1);
            waiting = contended;
        }
        // Events claimed after a wait go back to their place in the request.
        claimed.sort_by_key(|candidate| candidate.position);
        Ok(claimed)
    }

    /// Seals the personal fields of every enrolment with its partner's data key
    /// (`PartnerEnrolled.sealed_personal`), so that erasing the partner can make them
    /// unreadable on the topic that keeps every record; an erased partner's are dropped. One
    /// round trip for the batch.
    async fn seal_personal(&self, claimed: &mut [Candidate]) -> Result<(), TenancyError> {
        // The enrolments to seal, by tenant (a batch has one tenant; a webhook's too).
        let mut by_tenant: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, candidate) in claimed.iter().enumerate() {
            if let Some(Payload::PartnerEnrolled(enrolled)) = &candidate.event.payload
                && has_personal(enrolled)
            {
                by_tenant
                    .entry(candidate.event.tenant_id.clone())
                    .or_default()
                    .push(index);
            }
        }
        for (tenant_id, indexes) in by_tenant {
            let mut partners: Vec<&str> = indexes
                .iter()
                .map(|index| claimed[*index].event.partner_id.as_str())
                .collect();
            partners.sort_unstable();
            partners.dedup();
            let keys = self
                .tenants
                .partner_data_keys(&tenant_id, &partners)
                .await?;
            for index in indexes {
                let event = &mut claimed[index].event;
                let Some(Payload::PartnerEnrolled(enrolled)) = &mut event.payload else {
                    continue;
                };
                let personal = PersonalFields {
                    display_name: std::mem::take(&mut enrolled.display_name),
                    locale: std::mem::take(&mut enrolled.locale),
                    time_zone: std::mem::take(&mut enrolled.time_zone),
                };
                // No key: the partner was erased, and nothing personal of theirs is kept.
                if let Some(key) = keys.get(&event.partner_id) {
                    enrolled.sealed_personal =
                        key.seal(&personal.encode_to_vec(), &tenant_id, &event.partner_id)?;
                }
            }
        }
        Ok(())
    }

    /// Enqueues in request order; stops at the first failure.
    async fn enqueue_all(&self, claimed: Vec<Candidate>) -> Vec<Publishing> {
        let accepted_at = prost_types::Timestamp::from(SystemTime::now());
        let mut failed = false;
        let mut publishing = Vec::with_capacity(claimed.len());
        for mut candidate in claimed {
            if failed {
                publishing.push(Publishing {
                    candidate,
                    delivery: None,
                });
                continue;
            }
            candidate.event.accepted_at = Some(accepted_at);
            let record = self.record(&candidate);
            let delivery = self.producer.enqueue(&record).await;
            failed = delivery.is_err();
            publishing.push(Publishing {
                candidate,
                delivery: Some(delivery),
            });
        }
        publishing
    }

    fn record(&self, candidate: &Candidate) -> OutboundRecord {
        let event = &candidate.event;
        // Keyed by tenant and partner, in the partition of the tenant: every event of one
        // tenant lands in one partition, in the order it was accepted (docs/kpi-engine.md).
        let key = format!("{}/{}", event.tenant_id, event.partner_id);
        let mut record = OutboundRecord::protobuf(
            self.topic.clone(),
            key,
            event,
            CloudEvent {
                id: event.source_event_id.clone(),
                event_type: EVENT_TYPE.to_owned(),
                source: format!("/tenants/{}/sources/{}", event.tenant_id, event.source),
                time: candidate.occurred_at,
            },
        );
        record.partition = Some(tenant_partition(&event.tenant_id, self.partitions));
        record
    }

    async fn release(&self, token: &ClaimToken, candidates: &[Candidate]) {
        let entries: Vec<&Entry> = candidates
            .iter()
            .map(|candidate| &candidate.entry)
            .collect();
        if let Err(error) = self.dedup.release(token, &entries).await {
            // The claims expire on their own after the lease.
            tracing::warn!(%error, claims = entries.len(), "cannot release claims");
        }
    }
}

impl Prepared {
    /// Waits for the broker, then confirms what it acknowledged and releases the rest.
    pub async fn settle(self, intake: &Intake) -> Settled {
        let Self {
            mut verdicts,
            publishing,
            token,
            enqueued_at,
        } = self;
        let outcomes = join_all(publishing.into_iter().map(|publishing| async move {
            let outcome = match publishing.delivery {
                Some(Ok(delivery)) => {
                    let outcome = delivery.await;
                    metrics::publish_latency(enqueued_at.elapsed());
                    Some(outcome)
                }
                Some(Err(error)) => Some(Err(error)),
                None => None,
            };
            (publishing.candidate, outcome)
        }))
        .await;

        let mut delivered = Vec::new();
        let mut undelivered = Vec::new();
        let mut failure: Option<(usize, Unavailable)> = None;
        for (candidate, outcome) in outcomes {
            match outcome {
                Some(Ok(_)) => {
                    verdicts[candidate.position] = Some(Verdict::Accepted);
                    delivered.push(candidate);
                }
                Some(Err(source)) => {
                    if failure
                        .as_ref()
                        .is_none_or(|(first, _)| candidate.position < *first)
                    {
                        failure = Some((
                            candidate.position,
                            Unavailable::Kafka {
                                path: candidate.path.clone(),
                                source,
                            },
                        ));
                    }
                    undelivered.push(candidate);
                }
                None => undelivered.push(candidate),
            }
        }
        let delivered_entries: Vec<&Entry> =
            delivered.iter().map(|candidate| &candidate.entry).collect();
        if let Err(error) = intake.dedup.confirm(&delivered_entries).await {
            // The records are durable in Kafka, so they are accepted. Until their claims
            // expire a retry waits; after that it would publish them again, and consumers
            // drop the copy by identity.
            tracing::warn!(%error, events = delivered_entries.len(), "cannot record acceptances");
        }
        intake.release(&token, &undelivered).await;

        // Every event before the first failure has a verdict: it was rejected, seen before or
        // delivered (an undelivered event is the failure or comes after it).
        let answered = failure
            .as_ref()
            .map_or(verdicts.len(), |(position, _)| *position);
        let verdicts: Vec<Verdict> = verdicts
            .into_iter()
            .take(answered)
            .map_while(|verdict| verdict)
            .collect();
        debug_assert_eq!(verdicts.len(), answered);
        Settled {
            verdicts,
            failure: failure.map(|(_, failure)| failure),
        }
    }
}

fn conflict(path: &str) -> Rejection {
    Rejection {
        reason: RejectionReason::Conflict,
        violations: vec![FieldViolation {
            field: format!("{path}.source_event_id"),
            description: "an event with this source and source_event_id was already accepted \
                          with different content; a new event needs a new source_event_id"
                .into(),
        }],
    }
}

/// Whether an enrolment carries a personal field to seal.
fn has_personal(enrolled: &PartnerEnrolled) -> bool {
    !(enrolled.display_name.is_empty()
        && enrolled.locale.is_empty()
        && enrolled.time_zone.is_empty())
}
