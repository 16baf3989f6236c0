//! What the aggregator reports on `/metrics` (no tenant, partner or topic name in a label):
//!
//! - `mentorstream_aggregator_records_total{outcome}`: input records by outcome — `applied`,
//!   or `dead_lettered` (poison, or refused by the engine, with their cause on the `.dlq`).
//! - `mentorstream_aggregator_batch_records`: records per consumed batch (a histogram).
//! - `mentorstream_aggregator_apply_seconds`: applying one batch — fold, the engine's fenced
//!   writes, dead letters.
//! - `mentorstream_aggregator_freshness_seconds`: now − `as_of`, the age of the newest instant
//!   every KPI answer includes (docs/spec.md §6, freshness), looked up every few seconds.
//! - `mentorstream_aggregator_update_tombstones_total`: keys of `kpi.updates.v1` tombstoned
//!   because their bucket expired (`expire`).

use std::time::Duration;

/// One applied batch of `records`, `dead_lettered` of which went to the dead-letter topic.
#[allow(clippy::cast_precision_loss)]
pub fn batch(records: usize, dead_lettered: usize, elapsed: Duration) {
    let applied = records.saturating_sub(dead_lettered);
    if applied > 0 {
        metrics::counter!("mentorstream_aggregator_records_total", "outcome" => "applied")
            .increment(applied as u64);
    }
    if dead_lettered > 0 {
        metrics::counter!("mentorstream_aggregator_records_total", "outcome" => "dead_lettered")
            .increment(dead_lettered as u64);
    }
    metrics::histogram!("mentorstream_aggregator_batch_records").record(records as f64);
    metrics::histogram!("mentorstream_aggregator_apply_seconds").record(elapsed.as_secs_f64());
}

/// The age of `as_of`.
pub fn freshness(age: Duration) {
    metrics::gauge!("mentorstream_aggregator_freshness_seconds").set(age.as_secs_f64());
}

/// `keys` of the updates topic tombstoned.
pub fn tombstoned(keys: u64) {
    metrics::counter!("mentorstream_aggregator_update_tombstones_total").increment(keys);
}
