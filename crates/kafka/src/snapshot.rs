//! Topics read as they are now: every record of every partition, from its start to where the
//! partition ended when asked. For bounded readers that look at a whole compacted topic now
//! and then (tombstoning expired KPI keys); no group membership and no committed offsets, so
//! they never disturb a service's consumers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mentorstream_config::KafkaConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::{KafkaError, client_config};

/// How long the broker may take to describe topics and partitions.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The names of the cluster's topics that `wanted` accepts.
pub async fn topic_names(
    config: &KafkaConfig,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, KafkaError> {
    let consumer = Arc::new(reader(config)?);
    let metadata = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(KafkaError::Consume)
    })
    .await
    .map_err(|_| KafkaError::Consume(RdKafkaError::Canceled))??;
    Ok(metadata
        .topics()
        .iter()
        .map(|topic| topic.name())
        .filter(|name| wanted(name))
        .map(str::to_owned)
        .collect())
}

/// Hands every record of `topic` to `each`, in offset order within each partition, from the
/// start of every partition to its end as it was when called (records appended meanwhile may
/// be handed too); the number of records handed.
pub async fn read_to_end(
    config: &KafkaConfig,
    topic: &str,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, KafkaError> {
    let consumer = Arc::new(reader(config)?);
    // The last offset of every partition that holds anything.
    let mut open: HashMap<i32, i64> = ends(Arc::clone(&consumer), topic).await?;
    let mut assignment = TopicPartitionList::new();
    for partition in open.keys() {
        assignment
            .add_partition_offset(topic, *partition, Offset::Beginning)
            .map_err(KafkaError::Consume)?;
    }
    consumer.assign(&assignment).map_err(KafkaError::Consume)?;
    let mut read = 0;
    while !open.is_empty() {
        match consumer.recv().await {
            Ok(message) => {
                let partition = message.partition();
                if open
                    .get(&partition)
                    .is_some_and(|last| message.offset() >= *last)
                {
                    open.remove(&partition);
                }
                each(&message);
                read += 1;
            }
            // The end, when the last offsets are transaction markers no record is read at.
            Err(RdKafkaError::PartitionEOF(partition)) => {
                open.remove(&partition);
            }
            Err(error) => return Err(KafkaError::Consume(error)),
        }
    }
    Ok(read)
}

/// A consumer for assigned partitions only: it joins no group and commits nothing.
fn reader(config: &KafkaConfig) -> Result<StreamConsumer, KafkaError> {
    client_config(config)
        // Required by librdkafka to assign partitions; never joined (no subscription) and
        // never committed to.
        .set("group.id", "mentorstream-snapshot-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        // A whole compacted topic streams through: keep what is prefetched small (see the
        // service consumers' settings in `Consumer`).
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.max.bytes", "4194304")
        .create()
        .map_err(|source| KafkaError::Client {
            what: "topic reader",
            source,
        })
}

/// The last offset of each partition of `topic` that holds records.
async fn ends(consumer: Arc<StreamConsumer>, topic: &str) -> Result<HashMap<i32, i64>, KafkaError> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
            .map_err(KafkaError::Consume)?;
        let mut ends = HashMap::new();
        for found in metadata
            .topics()
            .iter()
            .filter(|found| found.name() == topic)
        {
            for partition in found.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition.id(), METADATA_TIMEOUT)
                    .map_err(KafkaError::Consume)?;
                if high > low {
                    ends.insert(partition.id(), high - 1);
                }
            }
        }
        Ok(ends)
    })
    .await
    .map_err(|_| KafkaError::Consume(RdKafkaError::Canceled))?
}
