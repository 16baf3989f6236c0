//! The KPI state in Redis (docs/kpi-state.md): shard keys, the stage-1 partner script with
//! its offset watermarks, and reads of counters.

use std::collections::BTreeMap;

use mentorstream_redis::{Connection, KeySpace, RedisError, Value, cmd, pipe};

use crate::calendar::{Bucket, DAY_RETENTION, MONTH_RETENTION, WEEK_RETENTION};
use crate::fold::{Operation, ShardEvent};
use crate::metric::Counter;

const PARTNER_SCRIPT: &str = include_str!("partner.lua");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Redis(#[from] RedisError),
    #[error("unexpected answer from the partner script: {0}")]
    Answer(String),
}

/// Events of one topic-partition for one partner shard, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerBatch {
    pub tenant_id: String,
    pub partner_id: String,
    /// `<topic>/<partition>`: the watermark this batch advances.
    pub source: String,
    pub events: Vec<ShardEvent>,
}

/// Where the shards of one key namespace live.
#[derive(Clone)]
pub struct Store {
    connection: Connection,
    keys: KeySpace,
    partner_script_sha: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(connection: Connection, keys: KeySpace) -> Self {
        Self {
            connection,
            keys,
            partner_script_sha: mentorstream_redis::Script::new(PARTNER_SCRIPT)
                .get_hash()
                .to_owned(),
        }
    }

    /// The hash tag of a partner's shard.
    pub fn partner_shard(&self, tenant_id: &str, partner_id: &str) -> String {
        self.keys.hash_tag(&[tenant_id, "p", partner_id])
    }

    /// Applies batches, one script call per shard in one round trip. A batch whose shard has
    /// already applied part of it (a redelivery after a crash) is cut at the shard's
    /// watermark and sent again, so every event is applied exactly once.
    pub async fn apply_partners(&self, batches: &[PartnerBatch]) -> Result<(), StoreError> {
        let mut pending: Vec<(&PartnerBatch, i64)> = batches
            .iter()
            .filter(|batch| !batch.events.is_empty())
            .map(|batch| (batch, i64::MIN))
            .collect();
        while !pending.is_empty() {
            let answers = self.invoke_partner(&pending).await?;
            let mut refused = Vec::new();
            for ((batch, _), answer) in pending.into_iter().zip(answers) {
                match answer {
                    ScriptAnswer::Applied => {}
                    ScriptAnswer::AlreadyUpTo(watermark) => {
                        if batch.events.iter().any(|event| event.offset > watermark) {
                            refused.push((batch, watermark));
                        }
                    }
                }
            }
            pending = refused;
        }
        Ok(())
    }

    async fn invoke_partner(
        &self,
        batches: &[(&PartnerBatch, i64)],
    ) -> Result<Vec<ScriptAnswer>, StoreError> {
        let mut pipeline = pipe();
        for (batch, watermark) in batches {
            pipeline.add_command(self.partner_call(batch, *watermark));
        }
        let mut connection = self.connection.clone();
        let values: Vec<Value> = match pipeline.query_async(&mut connection).await {
            Ok(values) => values,
            Err(error) if mentorstream_redis::is_no_script(&error) => {
                // Redis restarted or failed over: load the script and send again. Calls that
                // went through before are refused by their watermark.
                let _: String = cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(PARTNER_SCRIPT)
                    .query_async(&mut connection)
                    .await?;
                pipeline.query_async(&mut connection).await?
            }
            Err(error) => return Err(error.into()),
        };
        values.iter().map(ScriptAnswer::parse).collect()
    }

    fn partner_call(&self, batch: &PartnerBatch, watermark: i64) -> mentorstream_redis::Cmd {
        let events: Vec<&ShardEvent> = batch
            .events
            .iter()
            .filter(|event| event.offset > watermark)
            .collect();
        let first = events.first().map_or(0, |event| event.offset);
        let last = events.last().map_or(0, |event| event.offset);
        let mut call = cmd("EVALSHA");
        call.arg(&self.partner_script_sha)
            .arg(1)
            .arg(self.partner_shard(&batch.tenant_id, &batch.partner_id))
            .arg(&batch.source)
            .arg(first)
            .arg(last);
        for retention in [DAY_RETENTION, WEEK_RETENTION, MONTH_RETENTION] {
            call.arg(retention.as_secs());
        }
        for event in events {
            call.arg(&event.id);
            for bucket in &event.buckets {
                call.arg(bucket.to_string());
            }
            call.arg(event.operations.len());
            for operation in &event.operations {
                match operation {
                    Operation::Add { counter, amount } => {
                        call.arg("add").arg(counter.field()).arg(amount);
                    }
                    Operation::First {
                        fact,
                        rank,
                        amounts,
                    } => {
                        call.arg("first").arg(fact).arg(rank).arg(amounts.len());
                        for (counter, amount) in amounts {
                            call.arg(counter.field()).arg(amount);
                        }
                    }
                    Operation::Order {
                        order_id,
                        rank,
                        volume,
                    } => {
                        call.arg("order").arg(order_id).arg(rank).arg(volume);
                    }
                    Operation::Refund { order_id, volume } => {
                        call.arg("refund").arg(order_id).arg(volume);
                    }
                }
            }
        }
        call
    }

    /// A partner's personal counters in `buckets`, summed (a rolling window is many days).
    pub async fn personal(
        &self,
        tenant_id: &str,
        partner_id: &str,
        buckets: &[Bucket],
    ) -> Result<BTreeMap<Counter, i64>, StoreError> {
        let shard = self.partner_shard(tenant_id, partner_id);
        let mut pipeline = pipe();
        for bucket in buckets {
            pipeline.cmd("HGETALL").arg(format!("{shard}:c:{bucket}"));
        }
        let hashes: Vec<BTreeMap<String, i64>> =
            pipeline.query_async(&mut self.connection.clone()).await?;
        let mut totals = BTreeMap::new();
        for hash in hashes {
            for (field, value) in hash {
                if let Some(counter) = Counter::from_field(&field) {
                    *totals.entry(counter).or_default() += value;
                }
            }
        }
        totals.retain(|_, value| *value != 0);
        Ok(totals)
    }
}

/// What the partner script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptAnswer {
    Applied,
    /// Refused: the shard has applied this source up to this offset.
    AlreadyUpTo(i64),
}

impl ScriptAnswer {
    fn parse(value: &Value) -> Result<Self, StoreError> {
        let unexpected = || StoreError::Answer(format!("{value:?}"));
        let Value::Array(parts) = value else {
            return Err(unexpected());
        };
        let number = |value: &Value| match value {
            Value::Int(number) => Some(*number),
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        };
        match parts.as_slice() {
            [status, offset] => match (number(status), number(offset)) {
                (Some(1), Some(_)) => Ok(Self::Applied),
                (Some(0), Some(watermark)) => Ok(Self::AlreadyUpTo(watermark)),
                _ => Err(unexpected()),
            },
            _ => Err(unexpected()),
        }
    }
}
