use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use mentorstream_config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::{KafkaError, OutboundRecord, client_config};

/// How long to wait before offering a record again to a full local queue.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(2);

/// Where a record landed once the broker acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent producer with `acks=all`: a record's [`PendingDelivery`] resolves only after
/// the broker acknowledged it, and retries inside librdkafka never duplicate or reorder it.
///
/// A failed delivery that left the client with a fatal error (librdkafka could not recover
/// the idempotence state — producer id, sequence numbers — e.g. after the broker fenced it)
/// makes it refuse every later record: it is replaced before the next one. Timeouts and
/// passing broker trouble are not fatal; librdkafka recovers from them itself (bumping the
/// producer epoch). Records already in flight finish on the client they were enqueued on.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClientConfig,
    current: RwLock<Generation>,
}

#[derive(Clone)]
struct Generation {
    client: FutureProducer,
    number: u64,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// `delivery_timeout` bounds how long a send may wait for the broker before it fails
    /// (and the caller answers UNAVAILABLE rather than hanging).
    pub fn new(config: &KafkaConfig, delivery_timeout: Duration) -> Result<Self, KafkaError> {
        let mut client_config = client_config(config);
        client_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            // Records waiting for the broker, per producer; beyond this `enqueue` waits for
            // room. librdkafka's default is 1 GiB.
            .set("queue.buffering.max.kbytes", "65536")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            );
        let client = create(&client_config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                config: client_config,
                current: RwLock::new(Generation { client, number: 0 }),
            }),
        })
    }

    /// Produces `record` and waits for the broker's acknowledgement.
    pub async fn send(&self, record: &OutboundRecord) -> Result<Delivery, KafkaError> {
        self.enqueue(record).await?.await
    }

    /// Hands `record` to the producer's queue and returns the wait for its acknowledgement.
    ///
    /// Records enqueued one after another keep that order within their partition, so a caller
    /// that enqueues in order and awaits later keeps per-key order while many records are in
    /// flight. When the local queue is full this waits for room (back-pressure).
    pub async fn enqueue(&self, record: &OutboundRecord) -> Result<PendingDelivery, KafkaError> {
        let headers = record.headers();
        let mut future_record = FutureRecord::to(&record.topic)
            .key(&record.key)
            .headers(headers);
        future_record.payload = record.payload.as_ref();
        future_record.partition = record.partition;
        loop {
            let generation = self.shared.current();
            match generation.client.send_result(future_record) {
                Ok(acknowledgement) => {
                    return Ok(PendingDelivery {
                        topic: record.topic.clone(),
                        acknowledgement,
                        generation,
                        shared: Arc::clone(&self.shared),
                    });
                }
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    future_record = returned;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((source, _)) => {
                    self.shared.renew(generation.number);
                    return Err(KafkaError::Delivery {
                        topic: record.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// The current client, for sends that manage their own futures.
    pub(crate) fn client(&self) -> FutureProducer {
        self.shared.current().client
    }

    /// Waits for every record in flight; part of the shutdown path.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.client()
            .flush(Timeout::After(timeout))
            .map_err(|source| KafkaError::Delivery {
                topic: "<flush>".to_owned(),
                source,
            })
    }
}

impl Shared {
    fn current(&self) -> Generation {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the client after generation `failed` failed fatally, unless that already
    /// happened.
    fn renew(&self, failed: u64) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.number != failed {
            return;
        }
        let Some((code, reason)) = current.client.client().fatal_error() else {
            return;
        };
        tracing::warn!(%code, %reason, "the Kafka producer failed fatally");
        match create(&self.config) {
            Ok(client) => {
                tracing::info!(
                    generation = failed + 1,
                    "replaced the Kafka producer after a fatal error"
                );
                *current = Generation {
                    client,
                    number: failed + 1,
                };
            }
            Err(error) => {
                tracing::warn!(%error, "cannot replace the Kafka producer; keeping the old one")
            }
        }
    }
}

fn create(config: &ClientConfig) -> Result<FutureProducer, KafkaError> {
    config.create().map_err(|source| KafkaError::Client {
        what: "producer",
        source,
    })
}

/// The broker's acknowledgement of one enqueued record, still to come.
#[must_use = "a record is acknowledged only when its PendingDelivery resolves"]
pub struct PendingDelivery {
    topic: String,
    acknowledgement: DeliveryFuture,
    /// Keeps the client the record was enqueued on alive until it is acknowledged, even when
    /// the producer has moved on to a new one.
    generation: Generation,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Future for PendingDelivery {
    type Output = Result<Delivery, KafkaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = std::task::ready!(Pin::new(&mut self.acknowledgement).poll(cx));
        let source = match outcome {
            Ok(Ok(delivered)) => {
                return Poll::Ready(Ok(Delivery {
                    partition: delivered.partition,
                    offset: delivered.offset,
                }));
            }
            Ok(Err((source, _))) => source,
            // The client was dropped with the record still queued.
            Err(_canceled) => RdKafkaError::Canceled,
        };
        self.shared.renew(self.generation.number);
        Poll::Ready(Err(KafkaError::Delivery {
            topic: self.topic.clone(),
            source,
        }))
    }
}
