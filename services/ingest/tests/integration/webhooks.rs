//! Webhook intake: sources managed through WebhookService (gRPC), signed payloads delivered over
//! HTTP, the topic checked.

use std::time::Duration;

use chrono::Utc;
use mentorstream_config::Config;
use mentorstream_ingest::webhook::signature::sign;
use mentorstream_kafka::{InboundRecord, Message as _};
use mentorstream_proto::activity::v1::{ActivityEvent, OrderPlaced, activity_event::Payload};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::ingest::v1::webhook_service_client::WebhookServiceClient;
use mentorstream_proto::ingest::v1::{
    Conversion, CreateWebhookSourceRequest, DeleteWebhookSourceRequest, FieldMapping,
    GetWebhookSourceRequest, ListWebhookSourcesRequest, RotateWebhookSecretRequest,
    UpdateWebhookMappingRequest, WebhookMapping, WebhookPreset, WebhookRule,
    create_webhook_source_request, field_mapping, update_webhook_mapping_request,
};
use mentorstream_runtime::Context;
use mentorstream_tenancy::NewTenant;
use mentorstream_testkit::{KafkaCluster, authorized};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

/// One running ingest service, a tenant with an admin key, and an HTTP client.
struct Service {
    admin: WebhookServiceClient<Channel>,
    http: reqwest::Client,
    base: String,
    api_key: String,
    context: Context,
    served: tokio::task::JoinHandle<Result<(), mentorstream_ingest::ServiceError>>,
}

/// A created source: its URL and current secret.
struct Source {
    source_id: String,
    secret: String,
}

impl Service {
    async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let (context, addr, served) = crate::common::start("webhooks", adjust).await;
        let api_key = admin_key(&context, "acme").await;
        let admin = WebhookServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Self {
            admin,
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            api_key,
            context,
            served,
        }
    }

    async fn create(&mut self, name: &str, preset: WebhookPreset) -> Source {
        let created = self
            .admin
            .create_webhook_source(authorized(
                &self.api_key,
                CreateWebhookSourceRequest {
                    name: name.into(),
                    definition: Some(create_webhook_source_request::Definition::Preset(
                        preset.into(),
                    )),
                },
            ))
            .await
            .expect("created")
            .into_inner();
        Source {
            source_id: created.source.expect("source").source_id,
            secret: created.secret,
        }
    }

    /// Delivers `body` signed with `secret` at `timestamp`; the answer's status, Retry-After
    /// and JSON body.
    async fn deliver(
        &self,
        source_id: &str,
        webhook_id: &str,
        timestamp: i64,
        secret: &str,
        body: &str,
    ) -> (u16, Option<String>, Value) {
        let signature = sign(secret, webhook_id, timestamp, body.as_bytes()).expect("a secret");
        let answer = self
            .http
            .post(format!("{}/v1/webhooks/{source_id}", self.base))
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .expect("an answer");
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().expect("ascii").to_owned());
        (
            status,
            retry_after,
            answer.json().await.expect("a JSON body"),
        )
    }

    async fn events(&self) -> Vec<ActivityEvent> {
        let config = &self.context.config.kafka;
        mentorstream_testkit::read_to_end(config, &config.topics.activity)
            .await
            .iter()
            .map(|message| {
                let mut event: ActivityEvent = InboundRecord::new(message)
                    .decode()
                    .expect("an ActivityEvent");
                assert!(message.key().is_some());
                event.accepted_at = None;
                event
            })
            .collect()
    }

    async fn stop(self) {
        self.context.shutdown.trigger();
        self.served
            .await
            .expect("service task")
            .expect("service ends cleanly");
    }
}

async fn admin_key(context: &Context, tenant: &str) -> String {
    context
        .tenants
        .create_tenant(NewTenant {
            name: tenant.into(),
            time_zone: "Europe/Moscow".into(),
            default_locale: "ru-RU".into(),
        })
        .await
        .expect("tenant");
    context
        .tenants
        .create_key(tenant, "admin".parse().expect("scopes"))
        .await
        .expect("key")
        .api_key
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// An `order.created` of the typed-envelope preset, an hour ago.
fn order(order_id: &str, partner: &str, volume: &str) -> String {
    let at = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    json!({
        "type": "order.created",
        "timestamp": at,
        "data": {
            "customerId": partner,
            "orderId": order_id,
            "volume": volume,
            "total": {"amount": 49.99, "currency": "EUR"}
        }
    })
    .to_string()
}

/// The event `body` (an [`order`]) should become, its volume written at its fixed scale.
fn expected_order(source: &str, webhook_id: &str, body: &str, volume: &str) -> ActivityEvent {
    let payload: Value = serde_json::from_str(body).expect("json");
    let at = chrono::DateTime::parse_from_rfc3339(payload["timestamp"].as_str().expect("time"))
        .expect("rfc3339");
    ActivityEvent {
        tenant_id: String::new(),
        source: source.into(),
        source_event_id: webhook_id.into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: i32::try_from(at.timestamp_subsec_nanos()).expect("nanos"),
        }),
        partner_id: payload["data"]["customerId"].as_str().expect("id").into(),
        accepted_at: None,
        payload: Some(Payload::OrderPlaced(OrderPlaced {
            order_id: payload["data"]["orderId"].as_str().expect("id").into(),
            volume: Some(Decimal {
                value: volume.into(),
            }),
            amount: Some(Money {
                amount: Some(Decimal {
                    value: "49.99".into(),
                }),
                currency_code: "EUR".into(),
            }),
        })),
    }
}

/// (reason of the ErrorInfo, field violations) of a google.rpc.Status JSON body.
fn refusal(body: &Value) -> (String, Vec<(String, String)>) {
    let mut reason = String::new();
    let mut violations = Vec::new();
    for detail in body["details"].as_array().expect("details") {
        if let Some(found) = detail["reason"].as_str() {
            reason = found.to_owned();
        }
        for violation in detail["fieldViolations"].as_array().into_iter().flatten() {
            violations.push((
                violation["field"].as_str().expect("field").to_owned(),
                violation["description"]
                    .as_str()
                    .expect("description")
                    .to_owned(),
            ));
        }
    }
    (reason, violations)
}

#[tokio::test]
async fn a_signed_delivery_is_published_once_and_every_bad_one_is_refused_by_name() {
    let mut service = Service::start(|_| {}).await;
    let source = service
        .create("backoffice", WebhookPreset::TypedEnvelope)
        .await;
    let id = source.source_id.as_str();
    let secret = source.secret.as_str();
    let tenant_id = service
        .context
        .tenants
        .tenant("acme")
        .await
        .expect("tenant")
        .tenant_id;

    let body = order("SO-1", "P-1", "12.5");
    let (status, _, answer) = service.deliver(id, "msg_1", now(), secret, &body).await;
    assert_eq!(
        (status, answer),
        (200, json!({"status": "ACCEPTED", "sourceEventId": "msg_1"}))
    );
    // The sender retries (a lost answer): a new timestamp and signature, the same id.
    let (status, _, answer) = service.deliver(id, "msg_1", now() + 1, secret, &body).await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"status": "DUPLICATE", "sourceEventId": "msg_1"})
        )
    );

    let forged = sign(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "msg_2",
        now(),
        body.as_bytes(),
    )
    .expect("sign");
    let answer = service
        .http
        .post(format!("{}/v1/webhooks/{id}", service.base))
        .header("webhook-id", "msg_2")
        .header("webhook-timestamp", now().to_string())
        .header("webhook-signature", forged)
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 401);
    let answer: Value = answer.json().await.expect("json");
    assert_eq!(refusal(&answer).0, "WEBHOOK_SIGNATURE_INVALID");

    let stale = now() - 600;
    let (status, _, answer) = service.deliver(id, "msg_3", stale, secret, &body).await;
    assert_eq!(status, 401);
    assert_eq!(refusal(&answer).0, "WEBHOOK_TIMESTAMP_OUTSIDE_WINDOW");
    assert!(
        answer["message"]
            .as_str()
            .expect("message")
            .starts_with(&format!("webhook-timestamp {stale} is -60")),
        "{answer}"
    );

    let (status, _, answer) = service
        .deliver(id, "msg_4", now(), secret, "{not json")
        .await;
    assert_eq!(status, 400);
    let (_, violations) = refusal(&answer);
    assert_eq!(violations[0].0, "body");
    assert!(violations[0].1.starts_with("is not JSON"), "{violations:?}");

    let malformed = json!({
        "type": "order.created",
        "timestamp": "last tuesday",
        "data": {"orderId": "SO-5", "volume": "1.234", "total": {"amount": 1, "currency": "EUR"}}
    })
    .to_string();
    let (status, _, answer) = service
        .deliver(id, "msg_5", now(), secret, &malformed)
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        refusal(&answer).1,
        [
            (
                "/data/customerId".to_owned(),
                "is missing; it is mapped to partner_id".to_owned()
            ),
            (
                "/timestamp".to_owned(),
                "must be an RFC 3339 time such as 2026-12-01T10:00:00+03:00, got `last \
                 tuesday` (mapped to occurred_at)"
                    .to_owned()
            ),
        ]
    );

    // Mapped, but the event it makes is invalid: named by the payload's pointer.
    let (status, _, answer) = service
        .deliver(id, "msg_6", now(), secret, &order("SO-6", "P-1", "1.234"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        refusal(&answer).1,
        [(
            "/data/volume".to_owned(),
            "order_placed.volume: must have at most 2 decimal places, got `1.234`".to_owned()
        )]
    );

    let unmapped = json!({"type": "subscription.paused", "data": {}}).to_string();
    let (status, _, answer) = service.deliver(id, "msg_7", now(), secret, &unmapped).await;
    assert_eq!(status, 400);
    assert_eq!(
        refusal(&answer).1,
        [(
            "/type".to_owned(),
            "`subscription.paused` is not a payload type this source maps (it maps \
             order.created, order.refunded, customer.enrolled, rank.advanced)"
                .to_owned()
        )]
    );

    let (status, _, answer) = service
        .deliver("whs_unknown", "msg_8", now(), secret, &body)
        .await;
    assert_eq!(
        (status, refusal(&answer).0.as_str()),
        (404, "WEBHOOK_SOURCE_NOT_FOUND")
    );

    let missing = service
        .http
        .post(format!("{}/v1/webhooks/{id}", service.base))
        .header("webhook-id", "msg_9")
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(missing.status().as_u16(), 401);
    let missing: Value = missing.json().await.expect("json");
    assert_eq!(refusal(&missing).0, "WEBHOOK_HEADER_MISSING");

    let mut expected = expected_order("backoffice", "msg_1", &body, "12.50");
    expected.tenant_id = tenant_id;
    assert_eq!(
        service.events().await,
        [expected],
        "one event, published once"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_rotated_secret_verifies_beside_the_old_one_until_the_old_one_expires() {
    let mut service = Service::start(|_| {}).await;
    let source = service.create("shop", WebhookPreset::TypedEnvelope).await;
    let id = source.source_id.clone();
    let rotate = |seconds: i64| {
        authorized(
            &service.api_key,
            RotateWebhookSecretRequest {
                source_id: id.clone(),
                previous_valid_for: Some(prost_types::Duration { seconds, nanos: 0 }),
            },
        )
    };
    let request = rotate(3600);
    let rotated = service
        .admin
        .rotate_webhook_secret(request)
        .await
        .expect("rotated")
        .into_inner();
    let new = rotated.secret;
    let infos = rotated.source.expect("source").secrets;
    assert_eq!(infos.len(), 2, "{infos:?}");
    assert!(infos[0].expires_at.is_none() && infos[1].expires_at.is_some());

    for (webhook_id, secret) in [("r-1", &source.secret), ("r-2", &new)] {
        let (status, _, answer) = service
            .deliver(
                &id,
                webhook_id,
                now(),
                secret,
                &order(webhook_id, "P-1", "1"),
            )
            .await;
        assert_eq!((status, &answer["status"]), (200, &json!("ACCEPTED")));
    }

    let request = rotate(0);
    let newest = service
        .admin
        .rotate_webhook_secret(request)
        .await
        .expect("rotated")
        .into_inner()
        .secret;
    for secret in [&source.secret, &new] {
        let (status, _, answer) = service
            .deliver(&id, "r-3", now(), secret, &order("r-3", "P-1", "1"))
            .await;
        assert_eq!(
            (status, refusal(&answer).0.as_str()),
            (401, "WEBHOOK_SIGNATURE_INVALID")
        );
    }
    let (status, _, _) = service
        .deliver(&id, "r-3", now(), &newest, &order("r-3", "P-1", "1"))
        .await;
    assert_eq!(status, 200);

    let too_long = rotate(8 * 24 * 3600);
    let refused = service
        .admin
        .rotate_webhook_secret(too_long)
        .await
        .expect_err("over 7 days");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(service.events().await.len(), 3);
    service.stop().await;
}

#[tokio::test]
async fn with_the_broker_down_a_delivery_gets_503_and_its_retry_lands_once() {
    let mut broker = KafkaCluster::single().await;
    let brokers = broker.brokers();
    let mut service = Service::start(|config| {
        config.kafka.brokers = brokers;
        config.ingest.delivery_timeout = Duration::from_secs(3);
    })
    .await;
    let source = service.create("crm", WebhookPreset::FlatCents).await;
    let body = json!({
        "event": "ORDER_PLACED",
        "distributor_id": "D-1",
        "created": now() - 60,
        "order_number": "A-1",
        "qualifying_volume": "30",
        "amount_cents": 4999,
        "currency": "USD"
    })
    .to_string();

    broker.kill(0);
    let (status, retry_after, answer) = service
        .deliver(&source.source_id, "evt-1", now(), &source.secret, &body)
        .await;
    assert_eq!(
        (status, retry_after.as_deref()),
        (503, Some("1")),
        "{answer}"
    );
    assert_eq!(refusal(&answer).0, "BROKER_UNAVAILABLE");

    broker.resume(0).await;
    let mut answer = (0, None, Value::Null);
    for _ in 0..30 {
        answer = service
            .deliver(&source.source_id, "evt-1", now(), &source.secret, &body)
            .await;
        if answer.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        (answer.0, answer.2),
        (200, json!({"status": "ACCEPTED", "sourceEventId": "evt-1"}))
    );
    let events = service.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].source_event_id, "evt-1");
    service.stop().await;
}

#[tokio::test]
async fn mappings_are_managed_through_the_api_and_each_tenant_sees_only_its_own_sources() {
    let mut service = Service::start(|_| {}).await;
    let source = service.create("lms", WebhookPreset::TypedEnvelope).await;
    let other_key = admin_key(&service.context, "globex").await;

    // A custom mapping: a learning platform's completion payload.
    let field = |field: &str, pointer: &str, conversion: Conversion| FieldMapping {
        field: field.into(),
        value: Some(field_mapping::Value::Pointer(pointer.into())),
        conversion: conversion.into(),
        optional: false,
    };
    let mapping = WebhookMapping {
        type_pointer: String::new(),
        rules: vec![WebhookRule {
            type_value: String::new(),
            fields: vec![
                field("partner_id", "/learner", Conversion::Unspecified),
                field("occurred_at", "/finished_ms", Conversion::UnixMillis),
                field("source_event_id", "/completion_id", Conversion::Unspecified),
                field(
                    "module_completed.module_id",
                    "/course/id",
                    Conversion::Unspecified,
                ),
                field(
                    "module_completed.minutes",
                    "/course/minutes",
                    Conversion::Unspecified,
                ),
            ],
        }],
    };
    let update = |key: &str, mapping: WebhookMapping| {
        authorized(
            key,
            UpdateWebhookMappingRequest {
                source_id: source.source_id.clone(),
                definition: Some(update_webhook_mapping_request::Definition::Mapping(mapping)),
            },
        )
    };
    let refused = service
        .admin
        .update_webhook_mapping(update(&other_key, mapping.clone()))
        .await
        .expect_err("another tenant's source");
    assert_eq!(refused.code(), Code::NotFound);
    let mut broken = mapping.clone();
    broken.rules[0].fields.remove(0);
    let refused = service
        .admin
        .update_webhook_mapping(update(&service.api_key.clone(), broken))
        .await
        .expect_err("no partner_id");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "the mapping cannot make events: must map `partner_id`"
    );
    let updated = service
        .admin
        .update_webhook_mapping(update(&service.api_key.clone(), mapping.clone()))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(updated.source.expect("source").mapping, Some(mapping));

    let finished = Utc::now() - chrono::Duration::minutes(5);
    let body = json!({
        "learner": "P-9",
        "finished_ms": finished.timestamp_millis(),
        "completion_id": "c-77",
        "course": {"id": "onboarding-1", "minutes": 45}
    })
    .to_string();
    let (status, _, answer) = service
        .deliver(
            &source.source_id,
            "delivery-1",
            now(),
            &source.secret,
            &body,
        )
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"status": "ACCEPTED", "sourceEventId": "c-77"}))
    );
    let events = service.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].partner_id, "P-9");
    assert_eq!(
        events[0]
            .occurred_at
            .as_ref()
            .map(|at| (at.seconds, at.nanos)),
        Some((
            finished.timestamp(),
            i32::try_from(finished.timestamp_subsec_millis() * 1_000_000).expect("nanos")
        ))
    );

    // Tenant isolation: globex neither sees nor changes acme's source.
    let get = authorized(
        &other_key,
        GetWebhookSourceRequest {
            source_id: source.source_id.clone(),
        },
    );
    assert_eq!(
        service
            .admin
            .get_webhook_source(get)
            .await
            .expect_err("hidden")
            .code(),
        Code::NotFound
    );
    let listed = service
        .admin
        .list_webhook_sources(authorized(&other_key, ListWebhookSourcesRequest {}))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.sources, []);
    let rotate = authorized(
        &other_key,
        RotateWebhookSecretRequest {
            source_id: source.source_id.clone(),
            previous_valid_for: None,
        },
    );
    assert_eq!(
        service
            .admin
            .rotate_webhook_secret(rotate)
            .await
            .expect_err("hidden")
            .code(),
        Code::NotFound
    );
    let delete = |key: &str| {
        authorized(
            key,
            DeleteWebhookSourceRequest {
                source_id: source.source_id.clone(),
            },
        )
    };
    assert_eq!(
        service
            .admin
            .delete_webhook_source(delete(&other_key))
            .await
            .expect_err("hidden")
            .code(),
        Code::NotFound
    );
    let duplicate = service
        .admin
        .create_webhook_source(authorized(
            &service.api_key.clone(),
            CreateWebhookSourceRequest {
                name: "lms".into(),
                definition: Some(create_webhook_source_request::Definition::Preset(
                    WebhookPreset::FlatCents.into(),
                )),
            },
        ))
        .await
        .expect_err("taken");
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    // Deleting ends deliveries.
    service
        .admin
        .delete_webhook_source(delete(&service.api_key.clone()))
        .await
        .expect("deleted");
    let (status, _, _) = service
        .deliver(
            &source.source_id,
            "delivery-2",
            now(),
            &source.secret,
            &body,
        )
        .await;
    assert_eq!(status, 404);
    service.stop().await;
}
