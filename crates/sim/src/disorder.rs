//! What real integrations do to a stream, applied to a scenario for the end-to-end tests:
//! events sent twice, replays of an event id with other content, events out of order, and
//! events that arrive late (after everything else). Enrolments stay in place: mentoring calls
//! wait for the partners they name.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::{Action, Activity, Payload, Scenario, Step};

/// How many of each the disorder added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Disorder {
    /// Exact copies: answered DUPLICATE.
    pub duplicates: u64,
    /// Same source id, other content: answered REJECTED (conflict).
    pub conflicts: u64,
    /// Events moved to the end of the stream.
    pub late: u64,
}

fn movable(step: &Step) -> bool {
    matches!(
        &step.action,
        Action::Activity(Activity { payload, .. }) if !matches!(payload, Payload::Enrolled { .. })
    )
}

/// `scenario` as a messy integration would send it; the accepted events are exactly the
/// original ones.
pub fn disorder(scenario: &Scenario, seed: u64) -> (Scenario, Disorder) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = Disorder::default();
    let mut steps: Vec<Step> = Vec::with_capacity(scenario.steps.len() * 11 / 10);
    let mut late: Vec<Step> = Vec::new();
    for step in &scenario.steps {
        if !movable(step) {
            steps.push(step.clone());
            continue;
        }
        if rng.random_bool(0.03) {
            counts.late += 1;
            late.push(step.clone());
        } else {
            steps.push(step.clone());
        }
        if rng.random_bool(0.05) {
            counts.duplicates += 1;
            late.push(Step {
                id: format!("{}-again", step.id),
                ..step.clone()
            });
        }
        if let Action::Activity(activity) = &step.action
            && let Payload::Order {
                order_id,
                volume,
                amount,
            } = &activity.payload
            && rng.random_bool(0.05)
        {
            counts.conflicts += 1;
            late.push(Step {
                id: format!("{}-conflict", step.id),
                at: step.at,
                action: Action::Activity(Activity {
                    payload: Payload::Order {
                        order_id: order_id.clone(),
                        volume: format!("1{volume}"),
                        amount: amount.clone(),
                    },
                    ..activity.clone()
                }),
            });
        }
    }
    // Out of order: movable events trade places within windows of 40 of them.
    let positions: Vec<usize> = (0..steps.len()).filter(|&i| movable(&steps[i])).collect();
    for window in positions.chunks(40) {
        for (index, &position) in window.iter().enumerate() {
            let other = window[rng.random_range(index..window.len())];
            steps.swap(position, other);
        }
    }
    // The replays and copies arrive at the end, after everything they repeat.
    steps.extend(late);
    (Scenario { steps }, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimConfig, generate};
    use std::collections::BTreeSet;

    #[test]
    fn the_disordered_stream_holds_the_same_events_and_the_counted_extras() {
        // A fixed end: the scenario (and what the disorder does to it) is the same every run.
        let scenario = generate(&SimConfig {
            seed: 5,
            partners: 80,
            days: 14,
            end: chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
                .expect("time")
                .with_timezone(&chrono::Utc),
        });
        let (messy, counts) = disorder(&scenario, 9);
        assert!(counts.duplicates > 0 && counts.conflicts > 0 && counts.late > 0);
        assert_eq!(
            messy.steps.len() as u64,
            scenario.steps.len() as u64 + counts.duplicates + counts.conflicts
        );
        let original: BTreeSet<&str> = scenario.steps.iter().map(|s| s.id.as_str()).collect();
        let kept: BTreeSet<&str> = messy
            .steps
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| original.contains(id))
            .collect();
        assert_eq!(kept, original);
        // Mentoring calls keep their order.
        let calls = |scenario: &Scenario| -> Vec<String> {
            scenario
                .steps
                .iter()
                .filter(|s| !matches!(s.action, Action::Activity(_)))
                .map(|s| s.id.clone())
                .collect()
        };
        assert_eq!(calls(&messy), calls(&scenario));
        // Something moved.
        assert_ne!(
            messy.steps.iter().map(|s| &s.id).collect::<Vec<_>>(),
            scenario.steps.iter().map(|s| &s.id).collect::<Vec<_>>()
        );
    }
}
