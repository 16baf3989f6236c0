use chrono::TimeZone as _;
use mentorstream_proto::activity::v1::{
    ActivityEvent, ActivityPing, EventAttended, ModuleCompleted, OrderPlaced, OrderRefunded,
    PartnerEnrolled, PingKind, RankAchieved, activity_event::Payload,
};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::ingest::v1::{IngestRequest, IngestStreamRequest};
use proptest::prelude::*;
use prost::Message as _;

use super::*;

const TENANT: &str = "tenant-a";

fn window() -> Window {
    Window {
        now: Utc
            .with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
            .single()
            .expect("valid time"),
        allowed_lateness: Duration::from_secs(35 * 86_400),
    }
}

fn at(time: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    })
}

fn decimal(value: &str) -> Option<Decimal> {
    Some(Decimal {
        value: value.into(),
    })
}

fn event(payload: Payload) -> ActivityEvent {
    ActivityEvent {
        tenant_id: "spoofed".into(),
        source: "shop".into(),
        source_event_id: "evt-1".into(),
        occurred_at: at(window().now - chrono::Duration::hours(1)),
        partner_id: "p-1".into(),
        accepted_at: at(window().now),
        payload: Some(payload),
    }
}

fn order(volume: &str, amount: &str, currency: &str) -> Payload {
    Payload::OrderPlaced(OrderPlaced {
        order_id: "o-1".into(),
        volume: decimal(volume),
        amount: Some(Money {
            amount: decimal(amount),
            currency_code: currency.into(),
        }),
    })
}

fn rejected(event: ActivityEvent) -> (RejectionReason, Vec<(String, String)>) {
    let rejection = validate(event, TENANT, window(), "events[0]").expect_err("rejected");
    let violations = rejection
        .violations
        .into_iter()
        .map(|violation| (violation.field, violation.description))
        .collect();
    (rejection.reason, violations)
}

fn violation(field: &str, description: &str) -> (String, String) {
    (format!("events[0].{field}"), description.to_owned())
}

#[test]
fn a_valid_event_gets_the_key_tenant_and_no_acceptance_time() {
    let valid = validate(
        event(order("12.5", "1200", "JPY")),
        TENANT,
        window(),
        "events[0]",
    )
    .expect("valid");
    assert_eq!(valid.tenant_id, TENANT);
    assert_eq!(valid.accepted_at, None);
}

#[test]
fn decimals_take_their_canonical_scale() {
    let valid =
        validate(event(order("007.5", "19.9", "EUR")), TENANT, window(), "e").expect("valid");
    let Some(Payload::OrderPlaced(placed)) = valid.payload else {
        panic!("order kept");
    };
    assert_eq!(placed.volume, decimal("7.50"));
    let amount = placed.amount.expect("amount");
    assert_eq!(amount.amount, decimal("19.90"));
    // Yen has no minor unit; Bahraini dinar has three.
    for (amount, currency, canonical) in [("1200", "JPY", "1200"), ("1.5", "BHD", "1.500")] {
        let valid =
            validate(event(order("1", amount, currency)), TENANT, window(), "e").expect("valid");
        let Some(Payload::OrderPlaced(placed)) = valid.payload else {
            panic!("order kept");
        };
        assert_eq!(
            placed.amount.and_then(|money| money.amount),
            decimal(canonical)
        );
    }
}

#[test]
fn the_same_meaning_has_the_same_encoding() {
    let a = validate(event(order("10.5", "3", "EUR")), TENANT, window(), "e").expect("valid");
    let b = validate(event(order("10.50", "3.00", "EUR")), TENANT, window(), "e").expect("valid");
    assert_eq!(a.encode_to_vec(), b.encode_to_vec());
}

#[test]
fn ids_are_required_bounded_and_printable() {
    let mut bad = event(Payload::ActivityPing(ActivityPing {
        kind: PingKind::Login.into(),
    }));
    bad.source = String::new();
    bad.source_event_id = "x".repeat(129);
    bad.partner_id = "p\n1".into();
    assert_eq!(
        rejected(bad),
        (
            RejectionReason::Invalid,
            vec![
                violation("source", "is required"),
                violation("source_event_id", "must be at most 128 characters, got 129"),
                violation("partner_id", "must not contain control characters"),
            ]
        )
    );
    let mut blank = event(Payload::ActivityPing(ActivityPing {
        kind: PingKind::Login.into(),
    }));
    blank.partner_id = "   ".into();
    blank.source_event_id = "\u{3000}".into();
    assert_eq!(
        rejected(blank).1,
        [
            violation("source_event_id", "must not be only whitespace"),
            violation("partner_id", "must not be only whitespace"),
        ]
    );
    let mut longest = event(Payload::ActivityPing(ActivityPing {
        kind: PingKind::App.into(),
    }));
    longest.source_event_id = "я".repeat(128);
    assert!(validate(longest, TENANT, window(), "e").is_ok());
}

#[test]
fn volumes_and_amounts_are_checked() {
    assert_eq!(
        rejected(event(order("-1", "1", "EUR"))).1,
        [violation(
            "order_placed.volume",
            "must not be negative, got `-1`"
        )]
    );
    assert_eq!(
        rejected(event(order("1.234", "1.001", "EUR"))).1,
        [
            violation(
                "order_placed.volume",
                "must have at most 2 decimal places, got `1.234`"
            ),
            violation(
                "order_placed.amount.amount",
                "must have at most 2 decimal places, got `1.001`"
            ),
        ]
    );
    assert_eq!(
        rejected(event(order("1e3", "5", "XYZ"))).1,
        [
            violation(
                "order_placed.volume",
                "must be a decimal number such as 125.50, got `1e3`"
            ),
            violation(
                "order_placed.amount.currency_code",
                "must be an ISO-4217 currency code such as EUR, got `XYZ`"
            ),
        ]
    );
    assert_eq!(
        rejected(event(order("1", "1", "XAU"))).1,
        [violation(
            "order_placed.amount.currency_code",
            "XAU has no minor unit (a fund or metal code): use the currency paid in"
        )]
    );
    for (code, successor) in [("HRK", "EUR"), ("SLL", "SLE")] {
        assert_eq!(
            rejected(event(order("1", "1", code))).1,
            [violation(
                "order_placed.amount.currency_code",
                &format!(
                    "{code} was withdrawn from ISO 4217 and replaced by {successor}: use the currency paid in"
                )
            )]
        );
    }
    for current in ["VES", "SLE", "EUR"] {
        assert!(validate(event(order("1", "1", current)), TENANT, window(), "e").is_ok());
    }
    assert_eq!(
        rejected(event(order("1234567890123456", "1", "EUR"))).1,
        [violation(
            "order_placed.volume",
            "must have at most 15 digits before the decimal point, got `1234567890123456`"
        )]
    );
    let mut no_amount = event(order("1", "1", "EUR"));
    if let Some(Payload::OrderPlaced(order)) = no_amount.payload.as_mut() {
        order.amount = None;
        order.volume = None;
    }
    assert_eq!(
        rejected(no_amount).1,
        [
            violation("order_placed.volume", "is required"),
            violation("order_placed.amount", "is required"),
        ]
    );
}

#[test]
fn a_refund_must_refund_something() {
    let refund = |volume: &str| {
        event(Payload::OrderRefunded(OrderRefunded {
            order_id: "o-1".into(),
            volume: decimal(volume),
        }))
    };
    assert_eq!(
        rejected(refund("0.00")).1,
        [violation("order_refunded.volume", "must be greater than 0")]
    );
    let valid = validate(refund("0.1"), TENANT, window(), "e").expect("valid");
    assert_eq!(
        valid.payload,
        Some(Payload::OrderRefunded(OrderRefunded {
            order_id: "o-1".into(),
            volume: decimal("0.10"),
        }))
    );
}

#[test]
fn enrolment_fields_are_checked() {
    let enrolled = |sponsor: &str, locale: &str, time_zone: &str| {
        event(Payload::PartnerEnrolled(PartnerEnrolled {
            sponsor_id: sponsor.into(),
            display_name: "Анна".into(),
            locale: locale.into(),
            time_zone: time_zone.into(),
            sealed_personal: Vec::new(),
        }))
    };
    assert!(validate(enrolled("", "", ""), TENANT, window(), "e").is_ok());
    assert!(
        validate(
            enrolled("p-0", "sr-Latn-RS", "Europe/Moscow"),
            TENANT,
            window(),
            "e"
        )
        .is_ok()
    );
    assert_eq!(
        rejected(enrolled("p-1", "ru_RU", "Mars/Olympus")).1,
        [
            violation(
                "partner_enrolled.sponsor_id",
                "must differ from partner_id (leave it empty for a root of the tree)"
            ),
            violation(
                "partner_enrolled.locale",
                "must be a BCP-47 language tag such as ru-RU, got `ru_RU`"
            ),
            violation(
                "partner_enrolled.time_zone",
                "must be an IANA time zone such as Europe/Moscow, got `Mars/Olympus`"
            ),
        ]
    );
    // Sealed fields come from ingest itself, never from a client.
    let mut sealed = enrolled("", "", "");
    if let Some(Payload::PartnerEnrolled(enrolled)) = &mut sealed.payload {
        enrolled.sealed_personal = vec![1, 2, 3];
    }
    assert_eq!(
        rejected(sealed).1,
        [violation(
            "partner_enrolled.sealed_personal",
            "is set by Mentorstream, not by a client: send display_name, locale and time_zone \
             in the clear"
        )]
    );
}

#[test]
fn other_payloads_are_checked() {
    assert_eq!(
        rejected(event(Payload::ModuleCompleted(ModuleCompleted {
            module_id: String::new(),
            minutes: 1441,
        })))
        .1,
        [
            violation("module_completed.module_id", "is required"),
            violation(
                "module_completed.minutes",
                "must be at most 1440 (a day), got 1441"
            ),
        ]
    );
    assert_eq!(
        rejected(event(Payload::ModuleCompleted(ModuleCompleted {
            module_id: "m-1".into(),
            minutes: 0,
        })))
        .1,
        [violation(
            "module_completed.minutes",
            "must be at least 1: a completed module took time"
        )]
    );
    assert_eq!(
        rejected(event(Payload::EventAttended(EventAttended {
            event_id: "w-1".into(),
            kind: 9,
        })))
        .1,
        [violation(
            "event_attended.kind",
            "must be one of EVENT_KIND_WEBINAR, EVENT_KIND_MEETING, EVENT_KIND_TRAINING, \
             EVENT_KIND_CONFERENCE, got unknown value 9"
        )]
    );
    assert_eq!(
        rejected(event(Payload::RankAchieved(RankAchieved {
            rank_level: 0,
            rank_name: "Gold".into(),
        })))
        .1,
        [violation(
            "rank_achieved.rank_level",
            "must be at least 1 (the entry rank)"
        )]
    );
    assert_eq!(
        rejected(event(Payload::ActivityPing(ActivityPing { kind: 0 }))).1,
        [violation(
            "activity_ping.kind",
            "must be one of PING_KIND_LOGIN, PING_KIND_APP, PING_KIND_CHATBOT, got \
             PING_KIND_UNSPECIFIED"
        )]
    );
    let mut missing = event(Payload::ActivityPing(ActivityPing { kind: 1 }));
    missing.payload = None;
    missing.occurred_at = None;
    assert_eq!(
        rejected(missing),
        (
            RejectionReason::Invalid,
            vec![
                violation("occurred_at", "is required"),
                violation(
                    "payload",
                    "is required: one of partner_enrolled, order_placed, order_refunded, \
                     module_completed, event_attended, rank_achieved, activity_ping (a payload \
                     this server does not know is refused too)"
                ),
            ]
        )
    );
}

#[test]
fn occurred_at_must_be_within_the_window() {
    let ping = |time: DateTime<Utc>| {
        let mut event = event(Payload::ActivityPing(ActivityPing { kind: 1 }));
        event.occurred_at = at(time);
        event
    };
    let now = window().now;
    assert!(
        validate(
            ping(now + chrono::Duration::minutes(5)),
            TENANT,
            window(),
            "e"
        )
        .is_ok()
    );
    assert!(
        validate(
            ping(now - chrono::Duration::days(35)),
            TENANT,
            window(),
            "e"
        )
        .is_ok()
    );
    assert_eq!(
        rejected(ping(now + chrono::Duration::seconds(301))),
        (
            RejectionReason::InFuture,
            vec![violation(
                "occurred_at",
                "is 2026-11-26T12:05:01Z, more than 5 minutes after the server time \
                 2026-11-26T12:00:00Z"
            )]
        )
    );
    assert_eq!(
        rejected(ping(
            now - chrono::Duration::days(35) - chrono::Duration::seconds(1)
        )),
        (
            RejectionReason::TooLate,
            vec![violation(
                "occurred_at",
                "is 2026-10-22T11:59:59Z, older than the tenant's allowed lateness of 35 days \
                 (the earliest accepted now is 2026-10-22T12:00:00Z)"
            )]
        )
    );
    let mut broken = ping(now);
    broken.occurred_at = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: -5,
    });
    assert_eq!(
        rejected(broken).1,
        [violation(
            "occurred_at",
            "is not a valid timestamp (seconds 1, nanos -5)"
        )]
    );
}

#[test]
fn amounts_parse_exactly() {
    assert_eq!(
        Amount::parse("0", 2).map(|a| a.canonical(2)),
        Ok(Decimal {
            value: "0.00".into()
        })
    );
    assert_eq!(
        Amount::parse("000.10", 2).map(|a| a.canonical(2)),
        Ok(Decimal {
            value: "0.10".into()
        })
    );
    assert_eq!(Amount::parse("5.", 2), Err(DecimalProblem::Malformed));
    assert_eq!(Amount::parse(".5", 2), Err(DecimalProblem::Malformed));
    assert_eq!(Amount::parse("", 2), Err(DecimalProblem::Malformed));
    assert_eq!(Amount::parse("+5", 2), Err(DecimalProblem::Malformed));
    assert_eq!(Amount::parse("-0.5", 2), Err(DecimalProblem::Negative));
    assert_eq!(
        Amount::parse("1.230000", 2).map(|a| a.canonical(2)),
        Ok(Decimal {
            value: "1.23".into()
        })
    );
    assert_eq!(
        Amount::parse("999999999999999.99", 2).map(|a| a.canonical(2)),
        Ok(Decimal {
            value: "999999999999999.99".into()
        })
    );
}

// Fuzzing: arbitrary bytes through the decoder and arbitrary field values through validation
// never panic, and whatever validation accepts is canonical (validating it again changes
// nothing). Bounded by the case count, so it runs in `make test`.

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,12}",
        "\\PC{0,140}",
        any::<String>(),
    ]
}

fn any_decimal() -> impl Strategy<Value = Option<Decimal>> {
    proptest::option::of(
        prop_oneof!["-?[0-9]{0,18}(\\.[0-9]{0,5})?", any::<String>()]
            .prop_map(|value| Decimal { value }),
    )
}

fn any_timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    let now = window().now.timestamp();
    proptest::option::of(prop_oneof![
        (now - 40 * 86_400..now + 3_600, 0..1_000_000_000_i32),
        (any::<i64>(), any::<i32>()),
    ])
    .prop_map(|time| time.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }))
}

fn any_payload() -> impl Strategy<Value = Option<Payload>> {
    proptest::option::of(prop_oneof![
        (any_text(), any_text(), any_text(), any_text()).prop_map(
            |(sponsor_id, display_name, locale, time_zone)| {
                Payload::PartnerEnrolled(PartnerEnrolled {
                    sponsor_id,
                    display_name,
                    locale,
                    time_zone,
                    sealed_personal: Vec::new(),
                })
            }
        ),
        (
            any_text(),
            any_decimal(),
            any_decimal(),
            "[A-Z]{3}|\\PC{0,5}"
        )
            .prop_map(|(order_id, volume, amount, currency_code)| {
                Payload::OrderPlaced(OrderPlaced {
                    order_id,
                    volume,
                    amount: Some(Money {
                        amount,
                        currency_code,
                    }),
                })
            }),
        (any_text(), any_decimal()).prop_map(|(order_id, volume)| {
            Payload::OrderRefunded(OrderRefunded { order_id, volume })
        }),
        (any_text(), any::<u32>()).prop_map(|(module_id, minutes)| {
            Payload::ModuleCompleted(ModuleCompleted { module_id, minutes })
        }),
        (any_text(), any::<i32>())
            .prop_map(|(event_id, kind)| Payload::EventAttended(EventAttended { event_id, kind })),
        (any::<u32>(), any_text()).prop_map(|(rank_level, rank_name)| {
            Payload::RankAchieved(RankAchieved {
                rank_level,
                rank_name,
            })
        }),
        any::<i32>().prop_map(|kind| Payload::ActivityPing(ActivityPing { kind })),
    ])
}

fn any_event() -> impl Strategy<Value = ActivityEvent> {
    (
        any_text(),
        any_text(),
        any_text(),
        any_timestamp(),
        any_payload(),
    )
        .prop_map(
            |(source, source_event_id, partner_id, occurred_at, payload)| ActivityEvent {
                tenant_id: String::new(),
                source,
                source_event_id,
                occurred_at,
                partner_id,
                accepted_at: None,
                payload,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder_or_validation(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(event) = ActivityEvent::decode(bytes.as_slice()) {
            let _ = validate(event, TENANT, window(), "event");
        }
        if let Ok(request) = IngestRequest::decode(bytes.as_slice()) {
            for event in request.events {
                let _ = validate(event, TENANT, window(), "events[0]");
            }
        }
        if let Ok(IngestStreamRequest { event: Some(event), .. }) = IngestStreamRequest::decode(bytes.as_slice()) {
            let _ = validate(event, TENANT, window(), "event");
        }
    }

    #[test]
    fn arbitrary_fields_validate_without_panic_and_accepted_events_are_canonical(event in any_event()) {
        match validate(event, TENANT, window(), "event") {
            Ok(valid) => {
                let again = validate(valid.clone(), TENANT, window(), "event").expect("still valid");
                prop_assert_eq!(again, valid);
            }
            Err(rejection) => {
                prop_assert!(!rejection.violations.is_empty());
                prop_assert!(rejection.violations.iter().all(|violation| violation.field.starts_with("event.")));
            }
        }
    }

    #[test]
    fn valid_amounts_round_trip_through_their_canonical_form(integer in 0_u64..1_000_000_000_000_000, cents in 0_u64..100) {
        let text = format!("{integer}.{cents:02}");
        let amount = Amount::parse(&text, 2).expect("valid");
        prop_assert_eq!(amount.canonical(2).value, text);
    }
}
