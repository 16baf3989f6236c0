use std::time::Duration;

use mentorstream_config::KafkaConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::{KafkaError, OutboundRecord, client_config};

/// Where a record landed once the broker acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent producer with `acks=all`: [`Producer::send`] resolves only after the
/// broker acknowledged the record, and retries inside librdkafka never duplicate or reorder it.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
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
        let inner = client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|source| KafkaError::Client {
                what: "producer",
                source,
            })?;
        Ok(Self { inner })
    }

    /// Produces `record` and waits for the broker's acknowledgement.
    pub async fn send(&self, record: &OutboundRecord) -> Result<Delivery, KafkaError> {
        let headers = record.headers();
        let future_record = FutureRecord::to(&record.topic)
            .key(&record.key)
            .payload(&record.payload)
            .headers(headers);
        // The queue-full wait is bounded by message.timeout.ms through delivery.
        match self.inner.send(future_record, Timeout::Never).await {
            Ok(delivered) => Ok(Delivery {
                partition: delivered.partition,
                offset: delivered.offset,
            }),
            Err((source, _)) => Err(KafkaError::Delivery {
                topic: record.topic.clone(),
                source,
            }),
        }
    }

    pub(crate) fn inner(&self) -> &FutureProducer {
        &self.inner
    }

    /// Waits for every record in flight; part of the shutdown path.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner
            .flush(Timeout::After(timeout))
            .map_err(|source| KafkaError::Delivery {
                topic: "<flush>".to_owned(),
                source,
            })
    }
}
