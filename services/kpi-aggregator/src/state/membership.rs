//! A mentee's membership in mentors' groups over time, from assignment and unassignment events
//! in any arrival order.

use super::rank::Rank;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Assign,
    Unassign,
}

/// One assignment or unassignment of the mentee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipEvent {
    pub rank: Rank,
    pub change: Change,
    pub group: String,
    pub mentor: String,
}

/// The membership events of one mentee, kept in rank order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline(Vec<MembershipEvent>);

impl Timeline {
    pub fn from_events(mut events: Vec<MembershipEvent>) -> Self {
        events.sort_by(|a, b| a.rank.cmp(&b.rank));
        Self(events)
    }

    pub fn events(&self) -> &[MembershipEvent] {
        &self.0
    }

    /// Adds an event in its place; `false` when an event of the same rank is there already.
    pub fn insert(&mut self, event: MembershipEvent) -> bool {
        match self.0.binary_search_by(|probe| probe.rank.cmp(&event.rank)) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, event);
                true
            }
        }
    }

    /// The assignment in effect at `micros` (`None` for "now", after every event): membership
    /// changes at its occurred_at, so what happens at the very moment of an assignment is the
    /// group's. Unassigning from another group than the current one changes nothing, so a
    /// transfer's two events may come in either order.
    pub fn at(&self, micros: Option<i64>) -> Option<&MembershipEvent> {
        let mut current = None;
        for event in &self.0 {
            if micros.is_some_and(|micros| event.rank.micros > micros) {
                break;
            }
            match event.change {
                Change::Assign => current = Some(event),
                Change::Unassign => {
                    if current
                        .is_some_and(|assigned: &MembershipEvent| assigned.group == event.group)
                    {
                        current = None;
                    }
                }
            }
        }
        current
    }

    /// The group in effect at `micros`.
    pub fn group_at(&self, micros: i64) -> Option<&str> {
        self.at(Some(micros)).map(|event| event.group.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(micros: i64, change: Change, group: &str) -> MembershipEvent {
        MembershipEvent {
            rank: Rank {
                micros,
                source: "mentorship".into(),
                id: format!("{micros}"),
            },
            change,
            group: group.into(),
            mentor: format!("mentor-of-{group}"),
        }
    }

    #[test]
    fn membership_starts_at_the_assignment_and_ends_at_the_unassignment() {
        let timeline = Timeline::from_events(vec![
            event(300, Change::Unassign, "g1"),
            event(100, Change::Assign, "g1"),
        ]);
        assert_eq!(timeline.group_at(99), None);
        assert_eq!(
            timeline.group_at(100),
            Some("g1"),
            "the moment of the assignment counts"
        );
        assert_eq!(timeline.group_at(299), Some("g1"));
        assert_eq!(timeline.group_at(300), None);
        assert_eq!(timeline.at(None), None);
    }

    #[test]
    fn a_transfer_may_arrive_in_either_order() {
        // Transfer at 200: unassign g1 and assign g2 share the instant; whichever rank sorts
        // first, g2 is the group from 200 on.
        for (first, second) in [("a", "b"), ("b", "a")] {
            let mut unassign = event(200, Change::Unassign, "g1");
            unassign.rank.id = first.into();
            let mut assign = event(200, Change::Assign, "g2");
            assign.rank.id = second.into();
            let mut timeline = Timeline::default();
            assert!(timeline.insert(assign.clone()));
            assert!(timeline.insert(event(100, Change::Assign, "g1")));
            assert!(timeline.insert(unassign));
            assert!(!timeline.insert(assign), "the same event twice");
            assert_eq!(timeline.group_at(199), Some("g1"));
            assert_eq!(timeline.group_at(200), Some("g2"));
            assert_eq!(
                timeline.at(None).map(|event| event.mentor.as_str()),
                Some("mentor-of-g2")
            );
        }
    }
}
