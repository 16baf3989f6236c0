//! What mentorship reports on `/metrics` (no tenant or partner in a label):
//!
//! - `mentorstream_mentorship_outbox_relayed_total{event_type}`: outbox events published and
//!   acknowledged, by type (GroupCreated, MenteeAssigned, …: the contract's, a bounded set).
//! - `mentorstream_mentorship_outbox_relay_seconds`: one relay round — read a batch, publish,
//!   await every acknowledgement, mark it sent.
//! - `mentorstream_mentorship_outbox_backlog`: events not yet relayed.
//! - `mentorstream_mentorship_outbox_oldest_seconds`: how long the oldest of them has waited
//!   (0 when none): the alert for a stuck relay watches it.

use std::time::Duration;

pub fn relayed<'a>(event_types: impl IntoIterator<Item = &'a str>, elapsed: Duration) {
    let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for event_type in event_types {
        *counts.entry(event_type).or_default() += 1;
    }
    for (event_type, count) in counts {
        metrics::counter!(
            "mentorstream_mentorship_outbox_relayed_total",
            "event_type" => event_type.to_owned()
        )
        .increment(count);
    }
    metrics::histogram!("mentorstream_mentorship_outbox_relay_seconds")
        .record(elapsed.as_secs_f64());
}

#[allow(clippy::cast_precision_loss)]
pub fn backlog(events: i64, oldest: Duration) {
    metrics::gauge!("mentorstream_mentorship_outbox_backlog").set(events as f64);
    metrics::gauge!("mentorstream_mentorship_outbox_oldest_seconds").set(oldest.as_secs_f64());
}
