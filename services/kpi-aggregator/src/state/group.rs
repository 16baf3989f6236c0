//! A mentor's group: its counters (its mentees' contributions while assigned), its mentor and
//! its members.

use std::collections::{BTreeMap, BTreeSet};

use super::counts::Counters;
use super::partner::MemberChange;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRecord {
    pub counters: Counters,
    /// The mentor, once a mentee was assigned.
    pub mentor: String,
    /// The sum of each mentee's membership changes; a mentee is current while it is positive
    /// (changes may arrive in either order).
    pub members: BTreeMap<String, i64>,
    /// Everyone ever assigned: whose contributions Explain looks at.
    pub everyone: BTreeSet<String>,
}

impl GroupRecord {
    pub fn member(&mut self, mentee: &str, change: &MemberChange) {
        let count = self.members.entry(mentee.to_owned()).or_default();
        *count += change.amount;
        if *count == 0 {
            self.members.remove(mentee);
        }
    }

    pub fn joined(&mut self, mentee: &str, mentor: &str) {
        self.everyone.insert(mentee.to_owned());
        mentor.clone_into(&mut self.mentor);
    }

    /// The current mentees.
    pub fn mentees(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(mentee, _)| mentee.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(amount: i64) -> MemberChange {
        MemberChange {
            group: "g".into(),
            mentor: "m".into(),
            amount,
        }
    }

    #[test]
    fn a_mentee_leaving_before_joining_ends_up_out() {
        let mut group = GroupRecord::default();
        group.member("ann", &change(-1));
        assert_eq!(group.mentees().count(), 0);
        group.member("ann", &change(1));
        group.member("bob", &change(1));
        group.joined("bob", "mentor-1");
        assert_eq!(group.mentees().collect::<Vec<_>>(), vec!["bob"]);
        assert!(!group.members.contains_key("ann"), "ann's changes net out");
        assert_eq!(group.mentor, "mentor-1");
        assert!(group.everyone.contains("bob"));
    }
}
