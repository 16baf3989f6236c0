//! Session reminders and feedback requests: the right message, in the recipient's language
//! and time zone, on their channel, at the right time — moved by a reschedule, dropped by a
//! cancellation.

use crate::common;

use common::{GATEWAY_SECRET, Notifier, at, timestamp};
use hmac::{Hmac, Mac as _};
use mentorstream_config::ExposeSecret as _;
use mentorstream_proto::mentorship::v1::{
    SessionCancelled, SessionCompleted, SessionRescheduled, SessionScheduled, mentorship_event,
};
use mentorstream_proto::notification::v1::{self as proto, NotificationStatus};
use serde_json::json;

fn preferences(partner: &str) -> proto::Preferences {
    proto::Preferences {
        partner_id: partner.into(),
        ..proto::Preferences::default()
    }
}

fn sorted(notifications: &[proto::Notification]) -> Vec<(String, NotificationStatus)> {
    let mut statuses = common::statuses(notifications);
    statuses.sort();
    statuses
}

#[tokio::test]
async fn reminders_move_with_the_session_and_go_out_in_each_recipients_language() {
    let mut notifier = Notifier::start_at(at("2026-11-25T10:00:00Z")).await;
    notifier
        .set_preferences(proto::Preferences {
            channels: vec![proto::Channel::Email as i32],
            email: "anna@example.com".into(),
            locale: "en-GB".into(),
            time_zone: "Asia/Yekaterinburg".into(),
            ..preferences("m-1")
        })
        .await;
    notifier
        .set_preferences(proto::Preferences {
            chatbot_user_id: "tg-p1".into(),
            ..preferences("p-1")
        })
        .await;
    // p-2 gave no address at all.
    let starts = at("2026-11-27T10:00:00Z");
    notifier
        .mentorship(
            "s-1",
            at("2026-11-25T10:00:00Z"),
            mentorship_event::Payload::SessionScheduled(SessionScheduled {
                session_id: "s-1".into(),
                group_id: "g-1".into(),
                mentor_id: "m-1".into(),
                mentee_ids: vec!["p-1".into(), "p-2".into()],
                starts_at: Some(timestamp(starts)),
                duration: Some(prost_types::Duration {
                    seconds: 15 * 60,
                    nanos: 0,
                }),
                topic: "Первые шаги".into(),
                module_id: String::new(),
            }),
        )
        .await;
    let old = starts.timestamp();
    let pending = notifier
        .wait_for("m-1", "had both reminders", |all| all.len() == 2)
        .await;
    let due: Vec<_> = pending
        .iter()
        .map(|n| (n.cause.clone(), n.status(), n.due_at.map(|t| t.seconds)))
        .collect();
    assert_eq!(
        due,
        vec![
            (
                format!("session:s-1@{old}:reminder-24h"),
                NotificationStatus::Pending,
                Some(at("2026-11-26T10:00:00Z").timestamp())
            ),
            (
                format!("session:s-1@{old}:reminder-15m"),
                NotificationStatus::Pending,
                Some(at("2026-11-27T09:45:00Z").timestamp())
            ),
        ]
    );
    assert!(notifier.gateway.received().is_empty());
    assert!(notifier.sink.received().is_empty());

    // 24 hours before: the mentor by e-mail in English at Yekaterinburg time, the mentee by
    // chat-bot in Russian at Moscow time, and p-2 cannot be reached.
    notifier.clock.set(at("2026-11-26T10:00:00Z"));
    let emails = notifier.sink.wait_for(1).await;
    let mentor = notifier
        .wait_for("m-1", "got the 24-hour reminder", |all| {
            all[0].status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].to, vec!["anna@example.com".to_owned()]);
    assert_eq!(emails[0].from, "mentors@acme.example");
    assert_eq!(
        emails[0].message_id,
        format!("{}@mentorstream", mentor[0].notification_id)
    );
    assert_eq!(
        emails[0].subject,
        "Your mentoring session is tomorrow at 2026-11-27 15:00"
    );
    assert_eq!(
        emails[0].body,
        "Your session \"Первые шаги\" with 2 mentee(s) starts on 2026-11-27 15:00 \
         (Asia/Yekaterinburg) and takes 15 minutes."
    );
    assert_eq!(mentor[0].subject, emails[0].subject);
    assert_eq!(mentor[0].channel(), proto::Channel::Email);
    assert_eq!(mentor[0].locale, "en");
    assert_eq!(mentor[0].attempts.len(), 1);
    assert_eq!(mentor[0].attempts[0].response_code, 250);

    let webhooks = notifier.gateway.wait_for(1).await;
    let mentee = notifier
        .wait_for("p-1", "got the 24-hour reminder", |all| {
            all[0].status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(webhooks.len(), 1);
    let webhook = &webhooks[0];
    assert_eq!(webhook.idempotency_key, mentee[0].notification_id);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GATEWAY_SECRET.as_bytes()).expect("key");
    mac.update(format!("{}.", webhook.timestamp).as_bytes());
    mac.update(&webhook.body);
    assert_eq!(
        webhook.signature,
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    );
    assert_eq!(
        webhook.timestamp,
        at("2026-11-26T10:00:00Z").timestamp().to_string()
    );
    // The mentee's buttons: one token for attend and reschedule, valid until the session
    // starts, for this notification, tenant, session and partner.
    let signer = mentorstream_actions::Signer::new(
        notifier
            .context
            .config
            .actions
            .signing_key
            .expose_secret()
            .as_bytes(),
    )
    .expect("key");
    let token = signer.issue(&mentorstream_actions::Claims {
        token_id: mentee[0].notification_id.clone(),
        tenant_id: notifier.tenant_id.clone(),
        session_id: "s-1".into(),
        partner_id: "p-1".into(),
        actions: vec![
            mentorstream_actions::Action::Attend,
            mentorstream_actions::Action::Reschedule,
        ],
        expires_at: at("2026-11-27T10:00:00Z").timestamp(),
    });
    assert_eq!(
        webhook.json(),
        json!({
            "actions": [
                {"action": "ATTEND", "label": "Буду", "token": token},
                {"action": "RESCHEDULE", "label": "Прошу перенести", "token": token},
            ],
            "notification_id": mentee[0].notification_id,
            "tenant_id": notifier.tenant_id,
            "recipient_id": "p-1",
            "chatbot_user_id": "tg-p1",
            "category": "session_reminder",
            "locale": "ru",
            "subject": "Завтра в 2026-11-27 13:00 у вас сессия наставничества",
            "text": "Ваша сессия наставничества «Первые шаги» начнётся 2026-11-27 13:00 \
                     (Europe/Moscow), длительность: 15 мин.",
        })
    );
    let unreachable = notifier
        .wait_for("p-2", "failed", |all| {
            all[0].status() == NotificationStatus::Failed
        })
        .await;
    assert_eq!(
        unreachable[0].status_reason,
        "no channel reaches the recipient: their preferences need a chat-bot user id or an \
         e-mail address for a channel the tenant has set up"
    );

    // Moved by two hours: the pending reminder goes, new ones come for the new time.
    notifier.clock.set(at("2026-11-26T11:00:00Z"));
    let moved = at("2026-11-27T12:00:00Z");
    notifier
        .mentorship(
            "s-1",
            at("2026-11-26T11:00:00Z"),
            mentorship_event::Payload::SessionRescheduled(SessionRescheduled {
                session_id: "s-1".into(),
                mentor_id: "m-1".into(),
                mentee_ids: vec!["p-1".into(), "p-2".into()],
                previous_starts_at: Some(timestamp(starts)),
                starts_at: Some(timestamp(moved)),
                duration: Some(prost_types::Duration {
                    seconds: 20 * 60,
                    nanos: 0,
                }),
            }),
        )
        .await;
    let new = moved.timestamp();
    let mentor = notifier
        .wait_for("m-1", "had the moved reminders", |all| all.len() == 4)
        .await;
    assert_eq!(
        sorted(&mentor),
        vec![
            (
                format!("session:s-1@{old}:reminder-15m"),
                NotificationStatus::Cancelled
            ),
            (
                format!("session:s-1@{old}:reminder-24h"),
                NotificationStatus::Delivered
            ),
            (
                format!("session:s-1@{new}:reminder-15m"),
                NotificationStatus::Pending
            ),
            (
                format!("session:s-1@{new}:reminder-24h"),
                NotificationStatus::Pending
            ),
        ]
    );
    let cancelled = mentor
        .iter()
        .find(|n| n.cause == format!("session:s-1@{old}:reminder-15m"))
        .expect("old 15-minute reminder");
    assert_eq!(
        cancelled.status_reason,
        "the session moved to 2026-11-27T12:00:00+00:00"
    );

    // Cancelled: every pending reminder goes, with the reason.
    notifier
        .mentorship(
            "s-1",
            at("2026-11-26T11:00:00Z"),
            mentorship_event::Payload::SessionCancelled(SessionCancelled {
                session_id: "s-1".into(),
                mentor_id: "m-1".into(),
                mentee_ids: vec!["p-1".into(), "p-2".into()],
                reason: "the mentor is ill".into(),
            }),
        )
        .await;
    for (recipient, delivered_24h) in [
        ("m-1", NotificationStatus::Delivered),
        ("p-1", NotificationStatus::Delivered),
        ("p-2", NotificationStatus::Failed),
    ] {
        let all = notifier
            .wait_for(recipient, "had its reminders cancelled", |all| {
                all.len() == 4 && common::settled(all)
            })
            .await;
        assert_eq!(
            sorted(&all),
            vec![
                (
                    format!("session:s-1@{old}:reminder-15m"),
                    NotificationStatus::Cancelled
                ),
                (format!("session:s-1@{old}:reminder-24h"), delivered_24h),
                (
                    format!("session:s-1@{new}:reminder-15m"),
                    NotificationStatus::Cancelled
                ),
                (
                    format!("session:s-1@{new}:reminder-24h"),
                    NotificationStatus::Cancelled
                ),
            ],
            "{recipient}"
        );
        for notification in &all {
            if notification.cause.contains(&new.to_string()) {
                assert_eq!(
                    notification.status_reason,
                    "the session was cancelled: the mentor is ill"
                );
            }
        }
    }

    // A session that took place: a feedback request to each attendee, nobody else.
    let earlier = at("2026-11-26T10:30:00Z");
    notifier
        .mentorship(
            "s-2",
            at("2026-11-25T12:00:00Z"),
            mentorship_event::Payload::SessionScheduled(SessionScheduled {
                session_id: "s-2".into(),
                group_id: "g-1".into(),
                mentor_id: "m-1".into(),
                mentee_ids: vec!["p-1".into(), "p-2".into()],
                starts_at: Some(timestamp(earlier)),
                duration: Some(prost_types::Duration {
                    seconds: 10 * 60,
                    nanos: 0,
                }),
                topic: "Возражения".into(),
                module_id: String::new(),
            }),
        )
        .await;
    notifier
        .mentorship(
            "s-2",
            at("2026-11-26T10:45:00Z"),
            mentorship_event::Payload::SessionCompleted(SessionCompleted {
                session_id: "s-2".into(),
                group_id: "g-1".into(),
                mentor_id: "m-1".into(),
                mentee_ids: vec!["p-1".into(), "p-2".into()],
                attendee_ids: vec!["p-1".into()],
                starts_at: Some(timestamp(earlier)),
                duration: Some(prost_types::Duration {
                    seconds: 10 * 60,
                    nanos: 0,
                }),
            }),
        )
        .await;
    let webhooks = notifier.gateway.wait_for(2).await;
    assert_eq!(
        webhooks[1].json()["subject"],
        json!("Как прошла сессия «Возражения»?")
    );
    assert_eq!(
        webhooks[1].json()["text"],
        json!(
            "Оцените, пожалуйста, сессию наставничества 2026-11-26 13:30 (Europe/Moscow) \
             от 1 до 5 и расскажите наставнику, что было полезно."
        )
    );
    assert_eq!(webhooks[1].json()["category"], json!("feedback_request"));
    let mentee = notifier
        .wait_for("p-1", "got the feedback request", |all| {
            all.len() == 5 && common::settled(all)
        })
        .await;
    assert_eq!(
        mentee
            .iter()
            .filter(|n| n.cause == "session:s-2:feedback-request")
            .map(|n| n.status())
            .collect::<Vec<_>>(),
        vec![NotificationStatus::Delivered]
    );
    // The session before its start had no reminder, and p-2 did not attend.
    assert_eq!(notifier.notifications("p-2").await.len(), 4);
    assert_eq!(notifier.notifications("m-1").await.len(), 4);
    assert_eq!(notifier.gateway.received().len(), 2);
    assert_eq!(notifier.sink.received().len(), 1);
    notifier.stop().await;
}
