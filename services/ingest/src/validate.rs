//! What an acceptable activity event is, and its canonical form.
//!
//! Pure: no IO, the clock is a parameter. [`validate`] either returns the event in canonical
//! form (tenant from the API key, decimals at their fixed scale) or a [`Rejection`] with one
//! violation per bad field. Two submissions that mean the same thing ("10.5" and "10.50") have
//! the same canonical form, so they are duplicates rather than conflicts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use iso_currency::Currency;
use mentorstream_proto::activity::v1::{
    ActivityEvent, ActivityPing, EventAttended, EventKind, ModuleCompleted, OrderPlaced,
    OrderRefunded, PartnerEnrolled, PingKind, RankAchieved, activity_event::Payload,
};
use mentorstream_proto::common::v1::{Decimal, FieldViolation, Money};
use mentorstream_proto::ingest::v1::RejectionReason;

/// Events in one Ingest request.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Encoded size of one Ingest request.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Characters of an id (source, source_event_id, partner_id, order_id, ...).
pub const MAX_ID_CHARS: usize = 128;
/// How far ahead of the server's clock `occurred_at` may be (clock skew of the sources).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);
/// Characters of free text (display name, rank name).
const MAX_TEXT_CHARS: usize = 200;
/// A training module is a small block: at most a day of learning.
const MAX_MODULE_MINUTES: u32 = 24 * 60;
/// Digits before the decimal point of a volume or amount (keeps minor units within i64).
const MAX_INTEGER_DIGITS: usize = 15;
/// Decimal places of a volume (PV).
const VOLUME_SCALE: u32 = 2;

/// Why an event is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectionReason,
    pub violations: Vec<FieldViolation>,
}

/// The clock and the tenant's horizon an event is judged against.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now: DateTime<Utc>,
    pub allowed_lateness: Duration,
}

impl Window {
    /// The earliest `occurred_at` still accepted.
    pub fn earliest(&self) -> DateTime<Utc> {
        self.now - self.allowed_lateness
    }

    /// The latest `occurred_at` accepted.
    pub fn latest(&self) -> DateTime<Utc> {
        self.now + MAX_FUTURE_SKEW
    }
}

/// Checks `event` and returns it in canonical form for `tenant_id`. `path` names the event in
/// violations, e.g. `events[3]` or `event`.
pub fn validate(
    mut event: ActivityEvent,
    tenant_id: &str,
    window: Window,
    path: &str,
) -> Result<ActivityEvent, Rejection> {
    let mut check = Checker::new(path);
    check.id("source", &event.source);
    check.id("source_event_id", &event.source_event_id);
    check.id("partner_id", &event.partner_id);
    let occurred_at = check.timestamp("occurred_at", event.occurred_at.as_ref());
    match event.payload.as_mut() {
        None => check.violation(
            "payload",
            "is required: one of partner_enrolled, order_placed, order_refunded, \
             module_completed, event_attended, rank_achieved, activity_ping \
             (a payload this server does not know is refused too)",
        ),
        Some(Payload::PartnerEnrolled(enrolled)) => {
            check.partner_enrolled(enrolled, &event.partner_id);
        }
        Some(Payload::OrderPlaced(order)) => check.order_placed(order),
        Some(Payload::OrderRefunded(refund)) => check.order_refunded(refund),
        Some(Payload::ModuleCompleted(module)) => check.module_completed(module),
        Some(Payload::EventAttended(attended)) => check.event_attended(attended),
        Some(Payload::RankAchieved(rank)) => check.rank_achieved(rank),
        Some(Payload::ActivityPing(ping)) => check.activity_ping(ping),
    }
    if !check.violations.is_empty() {
        return Err(check.reject(RejectionReason::Invalid));
    }
    if let Some(occurred_at) = occurred_at {
        if occurred_at > window.latest() {
            check.violation(
                "occurred_at",
                format!(
                    "is {}, more than 5 minutes after the server time {}",
                    rfc3339(occurred_at),
                    rfc3339(window.now)
                ),
            );
            return Err(check.reject(RejectionReason::InFuture));
        }
        if occurred_at < window.earliest() {
            check.violation(
                "occurred_at",
                format!(
                    "is {}, older than the tenant's allowed lateness of {} \
                     (the earliest accepted now is {})",
                    rfc3339(occurred_at),
                    humanize(window.allowed_lateness),
                    rfc3339(window.earliest())
                ),
            );
            return Err(check.reject(RejectionReason::TooLate));
        }
    }
    event.tenant_id = tenant_id.to_owned();
    event.accepted_at = None;
    Ok(event)
}

/// Collects violations of one event.
struct Checker<'a> {
    path: &'a str,
    violations: Vec<FieldViolation>,
}

impl<'a> Checker<'a> {
    fn new(path: &'a str) -> Self {
        Self {
            path,
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(FieldViolation {
            field: format!("{}.{field}", self.path),
            description: description.into(),
        });
    }

    fn reject(self, reason: RejectionReason) -> Rejection {
        Rejection {
            reason,
            violations: self.violations,
        }
    }

    /// Non-empty, not only whitespace, at most 128 characters, no control characters.
    fn id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.violation(field, "is required");
        } else if value.trim().is_empty() {
            self.violation(field, "must not be only whitespace");
        } else {
            self.text(field, value, MAX_ID_CHARS);
        }
    }

    /// Optional text: at most `max` characters, no control characters.
    fn text(&mut self, field: &str, value: &str, max: usize) {
        let chars = value.chars().count();
        if chars > max {
            self.violation(
                field,
                format!("must be at most {max} characters, got {chars}"),
            );
        } else if value.chars().any(char::is_control) {
            self.violation(field, "must not contain control characters");
        }
    }

    fn timestamp(
        &mut self,
        field: &str,
        value: Option<&prost_types::Timestamp>,
    ) -> Option<DateTime<Utc>> {
        let Some(value) = value else {
            self.violation(field, "is required");
            return None;
        };
        let parsed = u32::try_from(value.nanos)
            .ok()
            .filter(|nanos| *nanos < 1_000_000_000)
            .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos));
        if parsed.is_none() {
            self.violation(
                field,
                format!(
                    "is not a valid timestamp (seconds {}, nanos {})",
                    value.seconds, value.nanos
                ),
            );
        }
        parsed
    }

    fn partner_enrolled(&mut self, enrolled: &PartnerEnrolled, partner_id: &str) {
        if !enrolled.sponsor_id.is_empty() {
            self.text(
                "partner_enrolled.sponsor_id",
                &enrolled.sponsor_id,
                MAX_ID_CHARS,
            );
            if enrolled.sponsor_id == partner_id {
                self.violation(
                    "partner_enrolled.sponsor_id",
                    "must differ from partner_id (leave it empty for a root of the tree)",
                );
            }
        }
        self.text(
            "partner_enrolled.display_name",
            &enrolled.display_name,
            MAX_TEXT_CHARS,
        );
        if !enrolled.locale.is_empty() && !is_language_tag(&enrolled.locale) {
            self.violation(
                "partner_enrolled.locale",
                format!(
                    "must be a BCP-47 language tag such as ru-RU, got `{}`",
                    printable(&enrolled.locale)
                ),
            );
        }
        if !enrolled.sealed_personal.is_empty() {
            self.violation(
                "partner_enrolled.sealed_personal",
                "is set by Mentorstream, not by a client: send display_name, locale and \
                 time_zone in the clear",
            );
        }
        if !enrolled.time_zone.is_empty() && enrolled.time_zone.parse::<chrono_tz::Tz>().is_err() {
            self.violation(
                "partner_enrolled.time_zone",
                format!(
                    "must be an IANA time zone such as Europe/Moscow, got `{}`",
                    printable(&enrolled.time_zone)
                ),
            );
        }
    }

    fn order_placed(&mut self, order: &mut OrderPlaced) {
        self.id("order_placed.order_id", &order.order_id);
        if let Some(volume) =
            self.decimal("order_placed.volume", order.volume.as_ref(), VOLUME_SCALE)
        {
            order.volume = Some(volume.canonical(VOLUME_SCALE));
        }
        match order.amount.as_mut() {
            None => self.violation("order_placed.amount", "is required"),
            Some(amount) => self.money("order_placed.amount", amount),
        }
    }

    fn order_refunded(&mut self, refund: &mut OrderRefunded) {
        self.id("order_refunded.order_id", &refund.order_id);
        let field = "order_refunded.volume";
        if let Some(volume) = self.decimal(field, refund.volume.as_ref(), VOLUME_SCALE) {
            if volume.is_zero() {
                self.violation(field, "must be greater than 0");
            } else {
                refund.volume = Some(volume.canonical(VOLUME_SCALE));
            }
        }
    }

    fn module_completed(&mut self, module: &ModuleCompleted) {
        self.id("module_completed.module_id", &module.module_id);
        if module.minutes == 0 {
            self.violation(
                "module_completed.minutes",
                "must be at least 1: a completed module took time",
            );
        } else if module.minutes > MAX_MODULE_MINUTES {
            self.violation(
                "module_completed.minutes",
                format!(
                    "must be at most {MAX_MODULE_MINUTES} (a day), got {}",
                    module.minutes
                ),
            );
        }
    }

    fn event_attended(&mut self, attended: &EventAttended) {
        self.id("event_attended.event_id", &attended.event_id);
        match EventKind::try_from(attended.kind) {
            Ok(EventKind::Unspecified) | Err(_) => self.violation(
                "event_attended.kind",
                format!(
                    "must be one of EVENT_KIND_WEBINAR, EVENT_KIND_MEETING, \
                     EVENT_KIND_TRAINING, EVENT_KIND_CONFERENCE, got {}",
                    enum_name(
                        EventKind::try_from(attended.kind)
                            .ok()
                            .map(|kind| kind.as_str_name()),
                        attended.kind
                    )
                ),
            ),
            Ok(_) => {}
        }
    }

    fn rank_achieved(&mut self, rank: &RankAchieved) {
        if rank.rank_level == 0 {
            self.violation(
                "rank_achieved.rank_level",
                "must be at least 1 (the entry rank)",
            );
        }
        self.id("rank_achieved.rank_name", &rank.rank_name);
    }

    fn activity_ping(&mut self, ping: &ActivityPing) {
        match PingKind::try_from(ping.kind) {
            Ok(PingKind::Unspecified) | Err(_) => self.violation(
                "activity_ping.kind",
                format!(
                    "must be one of PING_KIND_LOGIN, PING_KIND_APP, PING_KIND_CHATBOT, got {}",
                    enum_name(
                        PingKind::try_from(ping.kind)
                            .ok()
                            .map(|kind| kind.as_str_name()),
                        ping.kind
                    )
                ),
            ),
            Ok(_) => {}
        }
    }

    /// A required non-negative decimal with at most `scale` places.
    fn decimal(&mut self, field: &str, value: Option<&Decimal>, scale: u32) -> Option<Amount> {
        let Some(value) = value else {
            self.violation(field, "is required");
            return None;
        };
        match Amount::parse(&value.value, scale) {
            Ok(amount) => Some(amount),
            Err(problem) => {
                self.violation(field, problem.describe(&value.value, scale));
                None
            }
        }
    }

    fn money(&mut self, field: &str, money: &mut Money) {
        let code_field = format!("{field}.currency_code");
        let currency = Currency::from_code(&money.currency_code);
        let scale = match currency.map(|currency| (currency, currency.exponent())) {
            None => {
                self.violation(
                    &code_field,
                    format!(
                        "must be an ISO-4217 currency code such as EUR, got `{}`",
                        printable(&money.currency_code)
                    ),
                );
                return;
            }
            Some((currency, None)) => {
                self.violation(
                    &code_field,
                    format!(
                        "{} has no minor unit (a fund or metal code): use the currency paid in",
                        currency.code()
                    ),
                );
                return;
            }
            Some((currency, _)) if let Some(successor) = withdrawn(currency) => {
                self.violation(
                    &code_field,
                    format!(
                        "{} was withdrawn from ISO 4217 and replaced by {}: use the currency paid in",
                        currency.code(),
                        successor.code()
                    ),
                );
                return;
            }
            Some((_, Some(exponent))) => u32::from(exponent),
        };
        if let Some(amount) = self.decimal(&format!("{field}.amount"), money.amount.as_ref(), scale)
        {
            money.amount = Some(amount.canonical(scale));
        }
    }
}

/// The code that replaced a withdrawn one (HRK → EUR, SLL → SLE…), from the ISO 4217 data
/// of `iso_currency`. VES is not withdrawn: ISO 4217 lists it beside VED, whatever the
/// crate's data says.
fn withdrawn(currency: Currency) -> Option<Currency> {
    currency
        .is_superseded()
        .filter(|_| currency != Currency::VES)
}

/// A non-negative decimal as an integer of units of 10^-scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    integer: u64,
    fraction: u64,
    places: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalProblem {
    Malformed,
    Negative,
    TooManyPlaces,
    TooLarge,
}

impl DecimalProblem {
    fn describe(self, value: &str, scale: u32) -> String {
        let value = printable(value);
        match self {
            Self::Malformed => {
                format!("must be a decimal number such as 125.50, got `{value}`")
            }
            Self::Negative => format!("must not be negative, got `{value}`"),
            Self::TooManyPlaces => {
                format!("must have at most {scale} decimal places, got `{value}`")
            }
            Self::TooLarge => format!(
                "must have at most {MAX_INTEGER_DIGITS} digits before the decimal point, \
                 got `{value}`"
            ),
        }
    }
}

impl Amount {
    /// Parses `123`, `123.4` or `0.05`; at most `scale` decimal places.
    pub fn parse(text: &str, scale: u32) -> Result<Self, DecimalProblem> {
        let unsigned = match text.strip_prefix('-') {
            Some(rest) if is_decimal(rest) => return Err(DecimalProblem::Negative),
            Some(_) => return Err(DecimalProblem::Malformed),
            None => text,
        };
        if !is_decimal(unsigned) {
            return Err(DecimalProblem::Malformed);
        }
        let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let integer = integer.trim_start_matches('0');
        let fraction = fraction.trim_end_matches('0');
        if integer.len() > MAX_INTEGER_DIGITS {
            return Err(DecimalProblem::TooLarge);
        }
        if fraction.len() > scale as usize {
            return Err(DecimalProblem::TooManyPlaces);
        }
        let digits = |text: &str| {
            text.bytes()
                .fold(0_u64, |n, b| n * 10 + u64::from(b - b'0'))
        };
        Ok(Self {
            integer: digits(integer),
            fraction: digits(fraction),
            // Bounded by `scale` above, which is at most a currency exponent or 2.
            places: u32::try_from(fraction.len()).unwrap_or(u32::MAX),
        })
    }

    pub fn is_zero(&self) -> bool {
        self.integer == 0 && self.fraction == 0
    }

    /// Exactly `scale` decimal places, no leading zeros: "7.50", "0.05", "1200".
    pub fn canonical(&self, scale: u32) -> Decimal {
        let value = if scale == 0 {
            self.integer.to_string()
        } else {
            let fraction = self.fraction * 10_u64.pow(scale - self.places);
            format!(
                "{}.{fraction:0width$}",
                self.integer,
                width = scale as usize
            )
        };
        Decimal { value }
    }
}

/// Digits, optionally one point with digits on both sides.
fn is_decimal(text: &str) -> bool {
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    all_digits(integer) && fraction.is_none_or(all_digits)
}

/// Well-formed BCP-47 shape: a 2–3 or 5–8 letter language, then subtags of 1–8 letters or
/// digits, separated by hyphens (e.g. `ru`, `ru-RU`, `sr-Latn-RS`).
fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let language_ok = subtags.next().is_some_and(|language| {
        matches!(language.len(), 2 | 3 | 5..=8) && language.bytes().all(|b| b.is_ascii_alphabetic())
    });
    language_ok
        && tag.len() <= 35
        && subtags.all(|subtag| {
            (1..=8).contains(&subtag.len()) && subtag.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Client text quoted in a message: at most 64 characters, control characters escaped.
fn printable(text: &str) -> String {
    let mut shown: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().count() > 64 {
        shown.push('…');
    }
    shown
}

fn enum_name(known: Option<&str>, value: i32) -> String {
    known.map_or_else(|| format!("unknown value {value}"), str::to_owned)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn humanize(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds.is_multiple_of(86_400) {
        format!("{} days", seconds / 86_400)
    } else if seconds.is_multiple_of(3_600) {
        format!("{} hours", seconds / 3_600)
    } else {
        format!("{seconds} seconds")
    }
}

#[cfg(test)]
mod tests;
