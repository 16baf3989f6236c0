use mentorstream_proto::activity::v1::{
    OrderPlaced, PartnerEnrolled, RankAchieved, activity_event::Payload,
};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::ingest::v1::WebhookPreset;
use serde_json::json;

use super::*;
use crate::webhook::presets;

fn preset(preset: WebhookPreset) -> WebhookMapping {
    presets::mapping(preset).expect("a preset")
}

fn at(rfc3339: &str) -> Option<prost_types::Timestamp> {
    let time = DateTime::parse_from_rfc3339(rfc3339).expect("a time");
    Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    })
}

fn decimal(value: &str) -> Option<Decimal> {
    Some(Decimal {
        value: value.to_owned(),
    })
}

fn violation(field: &str, description: &str) -> Violation {
    (field.to_owned(), description.to_owned())
}

#[test]
fn both_presets_are_valid_mappings() {
    for each in [WebhookPreset::TypedEnvelope, WebhookPreset::FlatCents] {
        assert_eq!(check(&preset(each), "mapping"), [], "{each:?}");
    }
    assert_eq!(presets::mapping(WebhookPreset::Unspecified), None);
}

#[test]
fn a_typed_envelope_order_becomes_an_order_placed_in_utc() {
    let payload = json!({
        "type": "order.created",
        "timestamp": "2026-12-01T10:00:00+03:00",
        "data": {
            "customerId": "P-17",
            "orderId": "SO-1001",
            "volume": 12.5,
            "total": {"amount": "49.99", "currency": "EUR"},
            "ignored": [1, 2]
        }
    });
    let mapped = apply(&preset(WebhookPreset::TypedEnvelope), &payload).expect("mapped");
    assert_eq!(
        mapped.event,
        ActivityEvent {
            partner_id: "P-17".into(),
            occurred_at: at("2026-12-01T07:00:00Z"),
            payload: Some(Payload::OrderPlaced(OrderPlaced {
                order_id: "SO-1001".into(),
                volume: decimal("12.5"),
                amount: Some(Money {
                    amount: decimal("49.99"),
                    currency_code: "EUR".into(),
                }),
            })),
            ..ActivityEvent::default()
        }
    );
    assert_eq!(
        mapped.origins,
        [
            ("partner_id", "/data/customerId"),
            ("occurred_at", "/timestamp"),
            ("order_placed.order_id", "/data/orderId"),
            ("order_placed.volume.value", "/data/volume"),
            ("order_placed.amount.amount.value", "/data/total/amount"),
            ("order_placed.amount.currency_code", "/data/total/currency"),
        ]
        .map(|(field, pointer)| (field.to_owned(), pointer.to_owned()))
    );
}

#[test]
fn a_flat_order_in_cents_and_unix_seconds_becomes_a_decimal_and_a_timestamp() {
    let payload = json!({
        "event": "ORDER_PLACED",
        "distributor_id": 4711,
        "created": 1_764_583_200,
        "order_number": "A-9",
        "qualifying_volume": "30",
        "amount_cents": 4999,
        "currency": "USD"
    });
    let mapped = apply(&preset(WebhookPreset::FlatCents), &payload).expect("mapped");
    assert_eq!(mapped.event.partner_id, "4711");
    assert_eq!(mapped.event.occurred_at, at("2025-12-01T10:00:00Z"));
    assert_eq!(
        mapped.event.payload,
        Some(Payload::OrderPlaced(OrderPlaced {
            order_id: "A-9".into(),
            volume: decimal("30"),
            amount: Some(Money {
                amount: decimal("49.99"),
                currency_code: "USD".into(),
            }),
        }))
    );
}

#[test]
fn optional_fields_may_be_missing_or_null_and_the_payload_kind_stays() {
    let payload = json!({
        "event": "DISTRIBUTOR_ENROLLED",
        "distributor_id": "D-1",
        "created": 1_764_583_200,
        "enroller_id": null
    });
    let mapped = apply(&preset(WebhookPreset::FlatCents), &payload).expect("mapped");
    assert_eq!(
        mapped.event.payload,
        Some(Payload::PartnerEnrolled(PartnerEnrolled::default()))
    );
    let rank = json!({
        "type": "rank.advanced",
        "timestamp": "2026-12-01T10:00:00Z",
        "data": {"customerId": "P-1", "rank": {"level": "3", "name": "Gold"}}
    });
    let mapped = apply(&preset(WebhookPreset::TypedEnvelope), &rank).expect("mapped");
    assert_eq!(
        mapped.event.payload,
        Some(Payload::RankAchieved(RankAchieved {
            rank_level: 3,
            rank_name: "Gold".into(),
        }))
    );
}

#[test]
fn a_payload_type_no_rule_maps_is_refused_naming_the_types_it_maps() {
    let payload = json!({"type": "order.cancelled", "data": {}});
    assert_eq!(
        apply(&preset(WebhookPreset::TypedEnvelope), &payload),
        Err(vec![violation(
            "/type",
            "`order.cancelled` is not a payload type this source maps (it maps order.created, \
             order.refunded, customer.enrolled, rank.advanced)"
        )])
    );
    assert_eq!(
        apply(&preset(WebhookPreset::TypedEnvelope), &json!({"data": {}})),
        Err(vec![violation(
            "/type",
            "is missing; it says what the payload is"
        )])
    );
}

#[test]
fn every_missing_or_malformed_value_is_named_by_its_pointer() {
    let payload = json!({
        "event": "ORDER_PLACED",
        "created": "yesterday",
        "order_number": "A-9",
        "qualifying_volume": {"pv": 3},
        "amount_cents": 49.99,
        "currency": "USD"
    });
    assert_eq!(
        apply(&preset(WebhookPreset::FlatCents), &payload),
        Err(vec![
            violation("/distributor_id", "is missing; it is mapped to partner_id"),
            violation(
                "/created",
                "must be whole seconds since 1970, got `yesterday` (mapped to occurred_at)"
            ),
            violation(
                "/qualifying_volume",
                "is an object, not a value (mapped to order_placed.volume.value)"
            ),
            violation(
                "/amount_cents",
                "must be a whole number of hundredths (cents), got `49.99` (mapped to \
                 order_placed.amount.amount.value)"
            ),
        ])
    );
    let rank = json!({
        "event": "RANK_ADVANCED",
        "distributor_id": "D-1",
        "created": 1_764_583_200,
        "rank_level": "gold"
    });
    let refused = apply(&preset(WebhookPreset::FlatCents), &rank).expect_err("not a number");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, "/rank_level");
    assert!(
        refused[0]
            .1
            .ends_with("(mapped to rank_achieved.rank_level)"),
        "{}",
        refused[0].1
    );
}

#[test]
fn hundredths_keep_two_decimals_and_the_sign() {
    assert_eq!(hundredths("4999"), Ok("49.99".to_owned()));
    assert_eq!(hundredths("5"), Ok("0.05".to_owned()));
    assert_eq!(hundredths("-120"), Ok("-1.20".to_owned()));
    assert_eq!(hundredths("0"), Ok("0.00".to_owned()));
}

#[test]
fn a_mapping_that_could_never_make_an_event_is_refused_field_by_field() {
    let field = |field: &str, value: field_mapping::Value, conversion: Conversion| FieldMapping {
        field: field.into(),
        value: Some(value),
        conversion: conversion.into(),
        optional: false,
    };
    let pointer = |text: &str| field_mapping::Value::Pointer(text.into());
    let mapping = WebhookMapping {
        type_pointer: "type".into(),
        rules: vec![
            WebhookRule {
                type_value: "a".into(),
                fields: vec![
                    field("tenant_id", pointer("/t"), Conversion::Unspecified),
                    field("partner_id", pointer("/p"), Conversion::Hundredths),
                    field(
                        "order_placed.amount",
                        pointer("/x"),
                        Conversion::Unspecified,
                    ),
                    field(
                        "order_placed.colour",
                        pointer("/c"),
                        Conversion::Unspecified,
                    ),
                    field(
                        "rank_achieved.rank_level",
                        pointer("level"),
                        Conversion::Unspecified,
                    ),
                ],
            },
            WebhookRule {
                type_value: "a".into(),
                fields: vec![
                    field("partner_id", pointer("/p"), Conversion::Unspecified),
                    field("occurred_at", pointer("/at"), Conversion::UnixSeconds),
                    field(
                        "activity_ping.kind",
                        field_mapping::Value::Constant("PING_KIND_APP".into()),
                        Conversion::Unspecified,
                    ),
                ],
            },
        ],
    };
    assert_eq!(
        check(&mapping, "mapping"),
        [
            violation(
                "mapping.type_pointer",
                "must be a JSON pointer such as /type (or empty)"
            ),
            violation(
                "mapping.rules[0].fields[0]",
                "`tenant_id` is set by ingest and cannot be mapped"
            ),
            violation(
                "mapping.rules[0].fields[1]",
                "CONVERSION_HUNDREDTHS does not apply to `partner_id` (neither a timestamp nor \
                 a decimal's value)"
            ),
            violation(
                "mapping.rules[0].fields[2]",
                "`order_placed.amount` is a mentorstream.common.v1.Money; map its fields instead"
            ),
            violation(
                "mapping.rules[0].fields[3]",
                "`order_placed.colour`: mentorstream.activity.v1.OrderPlaced has no field `colour`"
            ),
            violation(
                "mapping.rules[0].fields[4]",
                "pointer must be a JSON pointer such as /data/id, got `level`"
            ),
            violation("mapping.rules[0].fields", "must map `occurred_at`"),
            violation(
                "mapping.rules[0].fields",
                "must map the fields of exactly one payload kind (order_placed, order_refunded, \
                 partner_enrolled, rank_achieved, module_completed, event_attended, \
                 activity_ping), got order_placed, rank_achieved"
            ),
            violation(
                "mapping.rules[1].type_value",
                "`a` is mapped by an earlier rule"
            ),
        ]
    );
}
