//! What the notifier reports on `/metrics`.
//!
//! - `mentorstream_notifier_attempts_total{channel, outcome}`: delivery attempts by channel
//!   (chatbot, email) and outcome (delivered, retry, failed).
//! - `mentorstream_notifier_unsent_total{status}`: notifications that ended without an
//!   attempt: suppressed (opt-out, daily cap) or failed (no channel reaches the recipient).
//! - `mentorstream_notifier_deferred_total`: deliveries pushed to the end of quiet hours.
//! - `mentorstream_notifier_due`: notifications due and not yet sent, at the last round.

pub fn attempt(channel: &str, status: &str) {
    let outcome = match status {
        "delivered" => "delivered",
        "pending" => "retry",
        _ => "failed",
    };
    metrics::counter!(
        "mentorstream_notifier_attempts_total",
        "channel" => channel.to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
}

pub fn unsent(status: &'static str) {
    metrics::counter!("mentorstream_notifier_unsent_total", "status" => status).increment(1);
}

pub fn deferred() {
    metrics::counter!("mentorstream_notifier_deferred_total").increment(1);
}

#[allow(clippy::cast_precision_loss)]
pub fn due(count: i64) {
    metrics::gauge!("mentorstream_notifier_due").set(count as f64);
}
