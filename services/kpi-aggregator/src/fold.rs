//! What records mean in numbers, shared by the rules and the API: volumes in hundredths, and
//! ranks (the order "first" facts follow) as the API spells them.

use chrono::{DateTime, Utc};

/// The `source` of mentorship events in ranks and identities: their ids are the outbox's.
pub const MENTORSHIP_SOURCE: &str = "mentorship";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FoldError {
    #[error("event has no occurred_at or an invalid one")]
    Time,
    #[error("event has no payload this aggregator knows")]
    Payload,
    #[error("volume `{0}` is not a decimal with at most 2 places")]
    Volume(String),
}

/// Orders "first" candidates by occurred_at, then source, then source_event_id (docs/spec.md
/// §6). Fields are joined by \x1e, which sorts below every character an id may hold.
pub fn rank(occurred_at: DateTime<Utc>, source: &str, source_event_id: &str) -> String {
    format!(
        "{:020}\u{1e}{source}\u{1e}{source_event_id}",
        occurred_at.timestamp_micros()
    )
}

/// The occurred_at of a rank (20 digits of microseconds, then source and id).
pub fn rank_time(rank: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(rank.get(..20)?.parse().ok()?)
}

/// A canonical volume ("12.50", "7", "0.5") in hundredths.
pub fn hundredths(volume: Option<&str>) -> Result<i64, FoldError> {
    let text = volume.unwrap_or_default();
    let malformed = || FoldError::Volume(text.to_owned());
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(integer) || (!fraction.is_empty() && !digits(fraction)) || fraction.len() > 2 {
        return Err(malformed());
    }
    let integer: i64 = integer.parse().map_err(|_| malformed())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| malformed())?;
    integer
        .checked_mul(100)
        .and_then(|units| units.checked_add(fraction))
        .ok_or_else(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_become_hundredths() {
        assert_eq!(hundredths(Some("12.50")), Ok(1250));
        assert_eq!(hundredths(Some("7")), Ok(700));
        assert_eq!(hundredths(Some("0.5")), Ok(50));
        assert_eq!(
            hundredths(Some("1.234")),
            Err(FoldError::Volume("1.234".into()))
        );
        assert_eq!(hundredths(Some("-1")), Err(FoldError::Volume("-1".into())));
        assert_eq!(hundredths(None), Err(FoldError::Volume(String::new())));
    }

    #[test]
    fn ranks_order_by_time_then_source_then_id() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let later = DateTime::from_timestamp(1_790_000_001, 0).expect("time");
        assert!(rank(at, "shop", "b") < rank(later, "crm", "a"));
        assert!(rank(at, "crm", "z") < rank(at, "shop", "a"));
        assert!(rank(at, "shop", "a") < rank(at, "shop", "b"));
        // A shorter source sorts first: "ab" < "abc" whatever follows.
        assert!(rank(at, "ab", "zzz") < rank(at, "abc", "a"));
        assert_eq!(rank_time(&rank(at, "shop", "a")), Some(at));
    }
}
