//! The order of events that "first" facts and membership follow (docs/spec.md §6).

use chrono::{DateTime, Utc};

/// An event's place in time: `occurred_at`, then source, then source_event_id. Two records of
/// one event have the same rank; the derived order compares the fields in that order, strings
/// bytewise, so "ab" comes before "abc".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank {
    /// `occurred_at` in microseconds since 1970.
    pub micros: i64,
    pub source: String,
    pub id: String,
}

impl Rank {
    pub fn new(occurred_at: DateTime<Utc>, source: &str, id: &str) -> Self {
        Self {
            micros: occurred_at.timestamp_micros(),
            source: source.to_owned(),
            id: id.to_owned(),
        }
    }

    pub fn occurred_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_order_by_time_then_source_then_id() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let later = DateTime::from_timestamp(1_790_000_001, 0).expect("time");
        assert!(Rank::new(at, "shop", "b") < Rank::new(later, "crm", "a"));
        assert!(Rank::new(at, "crm", "z") < Rank::new(at, "shop", "a"));
        assert!(Rank::new(at, "shop", "a") < Rank::new(at, "shop", "b"));
        assert!(Rank::new(at, "ab", "zzz") < Rank::new(at, "abc", "a"));
        assert_eq!(Rank::new(at, "shop", "a").occurred_at(), at);
    }
}
