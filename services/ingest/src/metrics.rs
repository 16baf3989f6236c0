//! What ingest reports on `/metrics`.
//!
//! - `mentorstream_ingest_events_total{status, reason}`: every answered event, by status
//!   (accepted, duplicate, rejected) and, for rejections, reason (invalid, conflict, in_future,
//!   too_late).
//! - `mentorstream_ingest_unavailable_total{cause}`: batches answered UNAVAILABLE, by cause
//!   (kafka, redis, contended, tenant).
//! - `mentorstream_ingest_webhook_deliveries_total{outcome}`: webhook deliveries by outcome
//!   (ACCEPTED, DUPLICATE, unverified, refused, unavailable).
//! - `mentorstream_ingest_publish_seconds`: from enqueueing a record to the broker's
//!   acknowledgement.

use std::time::Duration;

use mentorstream_proto::ingest::v1::RejectionReason;

use crate::intake::Verdict;

const EVENTS: &str = "mentorstream_ingest_events_total";

pub fn publish_latency(elapsed: Duration) {
    metrics::histogram!("mentorstream_ingest_publish_seconds").record(elapsed.as_secs_f64());
}

pub fn unavailable(cause: &'static str) {
    metrics::counter!("mentorstream_ingest_unavailable_total", "cause" => cause).increment(1);
}

/// Counts answered events, one counter update per kind rather than per event.
pub fn answered(verdicts: &[Verdict]) {
    let mut accepted = 0;
    let mut duplicate = 0;
    let mut rejected = [0_u64; 5];
    for verdict in verdicts {
        match verdict {
            Verdict::Accepted => accepted += 1,
            Verdict::Duplicate => duplicate += 1,
            Verdict::Rejected(rejection) => rejected[rejection.reason as usize] += 1,
        }
    }
    if accepted > 0 {
        metrics::counter!(EVENTS, "status" => "accepted", "reason" => "").increment(accepted);
    }
    if duplicate > 0 {
        metrics::counter!(EVENTS, "status" => "duplicate", "reason" => "").increment(duplicate);
    }
    for reason in [
        RejectionReason::Invalid,
        RejectionReason::Conflict,
        RejectionReason::InFuture,
        RejectionReason::TooLate,
    ] {
        let count = rejected[reason as usize];
        if count > 0 {
            metrics::counter!(EVENTS, "status" => "rejected", "reason" => reason_label(reason))
                .increment(count);
        }
    }
}

fn reason_label(reason: RejectionReason) -> &'static str {
    match reason {
        RejectionReason::Unspecified => "unspecified",
        RejectionReason::Invalid => "invalid",
        RejectionReason::Conflict => "conflict",
        RejectionReason::InFuture => "in_future",
        RejectionReason::TooLate => "too_late",
    }
}

/// A webhook delivery's outcome: ACCEPTED, DUPLICATE, unverified, refused or unavailable.
pub fn webhook(outcome: &'static str) {
    metrics::counter!("mentorstream_ingest_webhook_deliveries_total", "outcome" => outcome)
        .increment(1);
}
