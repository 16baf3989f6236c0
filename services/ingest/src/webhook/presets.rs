//! Ready mappings for two common back-office payload shapes. A preset is expanded into an
//! ordinary mapping when a source is created or updated, so what a source does is always
//! visible in its mapping and can be edited from there.

use mentorstream_proto::ingest::v1::{
    Conversion, FieldMapping, WebhookMapping, WebhookPreset, WebhookRule, field_mapping,
};

/// The mapping of `preset`, or `None` for UNSPECIFIED.
pub fn mapping(preset: WebhookPreset) -> Option<WebhookMapping> {
    match preset {
        WebhookPreset::Unspecified => None,
        WebhookPreset::TypedEnvelope => Some(typed_envelope()),
        WebhookPreset::FlatCents => Some(flat_cents()),
    }
}

fn from(field: &str, pointer: &str) -> FieldMapping {
    FieldMapping {
        field: field.to_owned(),
        value: Some(field_mapping::Value::Pointer(pointer.to_owned())),
        conversion: Conversion::Unspecified.into(),
        optional: false,
    }
}

fn converted(field: &str, pointer: &str, conversion: Conversion) -> FieldMapping {
    FieldMapping {
        conversion: conversion.into(),
        ..from(field, pointer)
    }
}

fn optional(field: &str, pointer: &str) -> FieldMapping {
    FieldMapping {
        optional: true,
        ..from(field, pointer)
    }
}

fn rule(type_value: &str, fields: Vec<FieldMapping>) -> WebhookRule {
    WebhookRule {
        type_value: type_value.to_owned(),
        fields,
    }
}

/// `{"type": "order.created", "timestamp": "2026-12-01T10:00:00+03:00", "data": {...}}` with
/// money as decimals: `"total": {"amount": 49.99, "currency": "EUR"}`.
fn typed_envelope() -> WebhookMapping {
    let common = |fields: Vec<FieldMapping>| {
        let mut all = vec![
            from("partner_id", "/data/customerId"),
            converted("occurred_at", "/timestamp", Conversion::Rfc3339),
        ];
        all.extend(fields);
        all
    };
    WebhookMapping {
        type_pointer: "/type".to_owned(),
        rules: vec![
            rule(
                "order.created",
                common(vec![
                    from("order_placed.order_id", "/data/orderId"),
                    from("order_placed.volume.value", "/data/volume"),
                    from("order_placed.amount.amount.value", "/data/total/amount"),
                    from("order_placed.amount.currency_code", "/data/total/currency"),
                ]),
            ),
            rule(
                "order.refunded",
                common(vec![
                    from("order_refunded.order_id", "/data/orderId"),
                    from("order_refunded.volume.value", "/data/volume"),
                ]),
            ),
            rule(
                "customer.enrolled",
                common(vec![
                    optional("partner_enrolled.sponsor_id", "/data/sponsorId"),
                    optional("partner_enrolled.display_name", "/data/name"),
                    optional("partner_enrolled.locale", "/data/locale"),
                    optional("partner_enrolled.time_zone", "/data/timeZone"),
                ]),
            ),
            rule(
                "rank.advanced",
                common(vec![
                    from("rank_achieved.rank_level", "/data/rank/level"),
                    optional("rank_achieved.rank_name", "/data/rank/name"),
                ]),
            ),
        ],
    }
}

/// `{"event": "ORDER_PLACED", "distributor_id": "D-1", "created": 1764583200, ...}` with
/// money in cents: `"amount_cents": 4999, "currency": "USD"`.
fn flat_cents() -> WebhookMapping {
    let common = |fields: Vec<FieldMapping>| {
        let mut all = vec![
            from("partner_id", "/distributor_id"),
            converted("occurred_at", "/created", Conversion::UnixSeconds),
        ];
        all.extend(fields);
        all
    };
    WebhookMapping {
        type_pointer: "/event".to_owned(),
        rules: vec![
            rule(
                "ORDER_PLACED",
                common(vec![
                    from("order_placed.order_id", "/order_number"),
                    from("order_placed.volume.value", "/qualifying_volume"),
                    converted(
                        "order_placed.amount.amount.value",
                        "/amount_cents",
                        Conversion::Hundredths,
                    ),
                    from("order_placed.amount.currency_code", "/currency"),
                ]),
            ),
            rule(
                "ORDER_REFUNDED",
                common(vec![
                    from("order_refunded.order_id", "/order_number"),
                    from("order_refunded.volume.value", "/qualifying_volume"),
                ]),
            ),
            rule(
                "DISTRIBUTOR_ENROLLED",
                common(vec![
                    optional("partner_enrolled.sponsor_id", "/enroller_id"),
                    optional("partner_enrolled.display_name", "/full_name"),
                    optional("partner_enrolled.locale", "/language"),
                    optional("partner_enrolled.time_zone", "/time_zone"),
                ]),
            ),
            rule(
                "RANK_ADVANCED",
                common(vec![
                    from("rank_achieved.rank_level", "/rank_level"),
                    optional("rank_achieved.rank_name", "/rank_title"),
                ]),
            ),
        ],
    }
}
