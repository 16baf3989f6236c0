//! How far the aggregator has applied each partition: the `as_of` of every KPI answer.
//!
//! Per partition of the topics the aggregator reads, Redis keeps the latest instant up to which every
//! record is applied: the broker timestamp of the last applied record or, when the consumer
//! found the partition read to its end (it asks every half second), the moment it asked. `as_of` is the minimum over all
//! partitions, so an answer never claims an event it has not counted. Values only move
//! forward, whichever instance (or zombie) writes them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mentorstream_kafka::{BorrowedMessage, Message as _};
use mentorstream_redis::{Connection, cmd};
use rdkafka::message::Timestamp;

/// Keeps the greater of the stored and the given value, field by field.
const ADVANCE: &str = "for i = 1, #ARGV, 2 do \
                         local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') \
                         if tonumber(ARGV[i + 1]) > current then \
                           redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) \
                         end \
                       end \
                       return 0";

#[derive(Clone)]
pub struct Progress {
    connection: Connection,
    key: String,
    topics: Vec<String>,
    partitions: i32,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("key", &self.key)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Progress over `partitions` partitions of each of `topics`.
    pub fn new(connection: Connection, key: String, topics: Vec<String>, partitions: i32) -> Self {
        Self {
            connection,
            key,
            topics,
            partitions,
        }
    }

    /// Records that `applied` records of `topic` are applied and that its `drained` partitions
    /// were read to their end as of `received_at`. Best effort: a failure only makes `as_of`
    /// older until the next batch.
    pub async fn record(
        &self,
        topic: &str,
        applied: &[&BorrowedMessage<'_>],
        drained: &[i32],
        received_at: DateTime<Utc>,
    ) {
        let now = received_at.timestamp_millis();
        let mut latest: BTreeMap<i32, i64> = BTreeMap::new();
        for message in applied {
            if let Timestamp::CreateTime(millis) | Timestamp::LogAppendTime(millis) =
                message.timestamp()
            {
                let slot = latest.entry(message.partition()).or_insert(millis);
                *slot = (*slot).max(millis);
            }
        }
        for partition in drained {
            latest.insert(*partition, now);
        }
        if latest.is_empty() {
            return;
        }
        let mut call = cmd("EVAL");
        call.arg(ADVANCE).arg(1).arg(&self.key);
        for (partition, millis) in latest {
            call.arg(format!("{topic}/{partition}")).arg(millis);
        }
        if let Err(error) = call.query_async::<i64>(&mut self.connection.clone()).await {
            tracing::warn!(%error, "cannot record progress");
        }
    }

    /// The instant up to which every record of every partition is applied; `None` until every
    /// partition has been applied or read to its end once.
    pub async fn as_of(&self) -> Result<Option<DateTime<Utc>>, mentorstream_redis::RedisError> {
        let stored: BTreeMap<String, i64> = cmd("HGETALL")
            .arg(&self.key)
            .query_async(&mut self.connection.clone())
            .await?;
        let mut earliest = None;
        for topic in &self.topics {
            for partition in 0..self.partitions {
                let Some(millis) = stored.get(&format!("{topic}/{partition}")) else {
                    return Ok(None);
                };
                earliest = Some(earliest.map_or(*millis, |earliest: i64| earliest.min(*millis)));
            }
        }
        Ok(earliest.and_then(DateTime::from_timestamp_millis))
    }
}
