//! The record format of every Mentorstream topic: a protobuf payload with CloudEvents
//! binary-mode headers (`ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time`,
//! `content-type: application/protobuf`) and W3C trace context (`traceparent`).

use chrono::{DateTime, SecondsFormat, Utc};
use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

pub const CONTENT_TYPE: &str = "application/protobuf";
pub const SPEC_VERSION: &str = "1.0";

/// CloudEvents attributes of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    /// Unique per event; with `source` it identifies the event.
    pub id: String,
    /// The protobuf message name, e.g. `mentorstream.activity.v1.ActivityEvent`.
    pub event_type: String,
    /// Who produced it, e.g. `/mentorstream/ingest` or `/tenants/acme/crm`.
    pub source: String,
    pub time: DateTime<Utc>,
}

/// A record ready to be produced.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    pub topic: String,
    /// `None`: the partition of the key (what every service uses). `Some`: this partition, for
    /// tests and benchmarks that must reach each partition.
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    /// `None`: a tombstone, which tells a compacted topic to forget the key.
    pub payload: Option<Vec<u8>>,
    pub event: CloudEvent,
}

impl OutboundRecord {
    pub fn protobuf(
        topic: impl Into<String>,
        key: impl Into<Vec<u8>>,
        message: &impl prost::Message,
        event: CloudEvent,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: key.into(),
            payload: Some(message.encode_to_vec()),
            event,
        }
    }

    /// A record with no value for `key`: a compacted topic forgets the key (after keeping the
    /// tombstone for the topic's `delete.retention.ms`, so readers behind see it too).
    pub fn tombstone(topic: impl Into<String>, key: impl Into<Vec<u8>>, event: CloudEvent) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: key.into(),
            payload: None,
            event,
        }
    }

    /// The same record, sent to `partition` whatever its key.
    #[must_use]
    pub fn to_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Headers of the record: CloudEvents attributes plus the current span's trace context.
    pub(crate) fn headers(&self) -> OwnedHeaders {
        let time = self.event.time.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut headers = HeaderWriter(
            OwnedHeaders::new_with_capacity(8)
                .insert(header("ce_specversion", SPEC_VERSION))
                .insert(header("ce_id", &self.event.id))
                .insert(header("ce_type", &self.event.event_type))
                .insert(header("ce_source", &self.event.source))
                .insert(header("ce_time", &time))
                .insert(header("content-type", CONTENT_TYPE)),
        );
        mentorstream_telemetry::propagation::inject_current(&mut headers);
        headers.0
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

struct HeaderWriter(OwnedHeaders);

impl Injector for HeaderWriter {
    fn set(&mut self, key: &str, value: String) {
        let headers = std::mem::replace(&mut self.0, OwnedHeaders::new());
        self.0 = headers.insert(Header {
            key,
            value: Some(&value),
        });
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("record has no `{0}` header")]
    MissingHeader(&'static str),
    #[error("header `{header}` is not valid: {reason}")]
    InvalidHeader {
        header: &'static str,
        reason: String,
    },
    #[error("content-type is `{0}`, expected `application/protobuf`")]
    ContentType(String),
    #[error("record has no payload")]
    EmptyPayload,
    #[error("payload is not a valid {message}: {reason}")]
    Decode {
        message: &'static str,
        reason: String,
    },
}

/// A consumed record seen through the envelope: one a consumer lent (`BorrowedMessage`), or
/// one kept (`OwnedMessage`, as readers in tests hold them).
#[derive(Debug)]
pub struct InboundRecord<'a, R: Message = BorrowedMessage<'a>> {
    message: &'a R,
}

impl<R: Message> Clone for InboundRecord<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: Message> Copy for InboundRecord<'_, R> {}

impl<'a, R: Message> InboundRecord<'a, R> {
    pub fn new(message: &'a R) -> Self {
        Self { message }
    }

    pub fn message(&self) -> &'a R {
        self.message
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.message.key()
    }

    pub fn header(&self, name: &str) -> Option<&'a str> {
        let headers = self.message.headers()?;
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    pub fn cloud_event(&self) -> Result<CloudEvent, EnvelopeError> {
        let required = |name: &'static str| {
            self.header(name)
                .map(str::to_owned)
                .ok_or(EnvelopeError::MissingHeader(name))
        };
        let time = required("ce_time")?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|error| EnvelopeError::InvalidHeader {
                header: "ce_time",
                reason: error.to_string(),
            })?
            .with_timezone(&Utc);
        Ok(CloudEvent {
            id: required("ce_id")?,
            event_type: required("ce_type")?,
            source: required("ce_source")?,
            time,
        })
    }

    /// The protobuf payload, after checking the content type.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, EnvelopeError> {
        match self.header("content-type") {
            Some(CONTENT_TYPE) => {}
            Some(other) => return Err(EnvelopeError::ContentType(other.to_owned())),
            None => return Err(EnvelopeError::MissingHeader("content-type")),
        }
        let payload = self.message.payload().ok_or(EnvelopeError::EmptyPayload)?;
        M::decode(payload).map_err(|error| EnvelopeError::Decode {
            message: std::any::type_name::<M>(),
            reason: error.to_string(),
        })
    }

    /// Makes `span` a child of the producer's trace, carried in `traceparent`.
    pub fn continue_trace(&self, span: &tracing::Span) {
        mentorstream_telemetry::propagation::set_parent_from(span, self);
    }
}

impl<R: Message> Extractor for InboundRecord<'_, R> {
    fn get(&self, key: &str) -> Option<&str> {
        self.header(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.message
            .headers()
            .map(|headers| headers.iter().map(|header| header.key).collect())
            .unwrap_or_default()
    }
}
