//! Delivery: transient failures (5xx, 429, SMTP 4xx) retried with backoff until the attempt
//! limit, permanent ones (other 4xx, SMTP 5xx) recorded at once, and failed notifications
//! retried on request — each attempt in the log, and one message per cause at the receiver.

use crate::common;

use chrono::TimeDelta;
use common::{Notifier, at};
use mentorstream_proto::kpi::v1::{FirstSale, RankAchieved, kpi_signal};
use mentorstream_proto::notification::v1::{self as proto, NotificationStatus};
use tonic::Code;

fn rank(level: u32) -> kpi_signal::Payload {
    kpi_signal::Payload::RankAchieved(RankAchieved {
        rank_level: level,
        rank_name: format!("Level {level}"),
        days_to_rank: 10,
    })
}

fn codes(notification: &proto::Notification) -> Vec<u32> {
    notification
        .attempts
        .iter()
        .map(|attempt| attempt.response_code)
        .collect()
}

fn by_cause<'a>(all: &'a [proto::Notification], cause: &str) -> &'a proto::Notification {
    all.iter()
        .find(|n| n.cause == cause)
        .unwrap_or_else(|| panic!("no {cause} in {all:#?}"))
}

#[tokio::test]
async fn the_gateway_gets_one_message_per_cause_through_retries() {
    let mut notifier = Notifier::start_at(at("2026-11-25T10:00:00Z")).await;
    notifier
        .set_preferences(proto::Preferences {
            partner_id: "p-1".into(),
            chatbot_user_id: "tg-p1".into(),
            ..proto::Preferences::default()
        })
        .await;

    // 500, then 200: one delivery, two attempts, the same message both times.
    notifier.gateway.answer_next(&[500]);
    notifier
        .signal(
            "sig-sale",
            "p-1",
            kpi_signal::Payload::FirstSale(FirstSale {
                order_id: "o-1".into(),
                volume: None,
                days_to_first_sale: 1,
            }),
        )
        .await;
    let first = notifier
        .wait_for("p-1", "failed once", |all| {
            all.len() == 1 && all[0].attempts.len() == 1
        })
        .await;
    assert_eq!(first[0].status(), NotificationStatus::Pending);
    assert_eq!(codes(&first[0]), vec![500]);
    assert_eq!(
        first[0].status_reason,
        "attempt 1 failed, retrying: the chat-bot gateway answered 500 Internal Server Error: "
    );
    // Backed off: retry_base (10 s) less up to half of it as jitter.
    let (next_attempt_at,): (chrono::DateTime<chrono::Utc>,) =
        sqlx::query_as("SELECT next_attempt_at FROM notifications WHERE notification_id = $1")
            .bind(&first[0].notification_id)
            .fetch_one(&notifier.pool)
            .await
            .expect("next attempt");
    let wait = next_attempt_at - at("2026-11-25T10:00:00Z");
    assert!(
        (TimeDelta::seconds(5)..=TimeDelta::seconds(10)).contains(&wait),
        "{wait}"
    );
    notifier.clock.advance(TimeDelta::seconds(60));
    let delivered = notifier
        .wait_for("p-1", "delivered", |all| {
            all[0].status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(codes(&delivered[0]), vec![500, 200]);
    assert_eq!(
        delivered[0].delivered_at.map(|t| t.seconds),
        Some(at("2026-11-25T10:01:00Z").timestamp())
    );
    let received = notifier.gateway.received();
    assert_eq!(
        received.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 200]
    );
    assert!(
        received
            .iter()
            .all(|r| r.idempotency_key == delivered[0].notification_id)
    );
    assert_eq!(received[0].body, received[1].body);

    // 400: failed at once, no retry.
    notifier.gateway.answer_next(&[400]);
    notifier.signal("sig-rank-2", "p-1", rank(2)).await;
    let failed = notifier
        .wait_for("p-1", "failed for good", |all| {
            all.len() == 2
                && by_cause(all, "signal:sig-rank-2").status() == NotificationStatus::Failed
        })
        .await;
    let failed = by_cause(&failed, "signal:sig-rank-2").clone();
    assert_eq!(codes(&failed), vec![400]);
    assert_eq!(
        failed.status_reason,
        "the chat-bot gateway answered 400 Bad Request: "
    );
    notifier.clock.advance(TimeDelta::seconds(120));
    // Nothing more went out for it (the next request proves the dispatcher ran on).
    notifier.signal("sig-rank-3", "p-1", rank(3)).await;
    notifier
        .wait_for("p-1", "got rank 3", |all| {
            all.len() == 3
                && by_cause(all, "signal:sig-rank-3").status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(notifier.gateway.received().len(), 4);
    assert_eq!(
        codes(by_cause(
            &notifier.notifications("p-1").await,
            "signal:sig-rank-2"
        )),
        vec![400]
    );

    // Retried on request: sent again, and the log keeps both attempts.
    let retry = |request_id: &str, notification_id: &str| {
        notifier.write(proto::RetryNotificationRequest {
            request_id: request_id.into(),
            notification_id: notification_id.into(),
        })
    };
    let answer = notifier
        .client
        .clone()
        .retry_notification(retry("retry-1", &failed.notification_id))
        .await
        .expect("retry")
        .into_inner()
        .notification
        .expect("notification");
    assert_eq!(answer.status(), NotificationStatus::Pending);
    assert_eq!(answer.status_reason, "retry requested");
    let retried = notifier
        .wait_for("p-1", "delivered the retry", |all| {
            by_cause(all, "signal:sig-rank-2").status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(
        codes(by_cause(&retried, "signal:sig-rank-2")),
        vec![400, 200]
    );
    // The same request id answers as the first time; a new one is refused now.
    let again = notifier
        .client
        .clone()
        .retry_notification(retry("retry-1", &failed.notification_id))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.notification, Some(answer));
    let refused = notifier
        .client
        .clone()
        .retry_notification(retry("retry-2", &failed.notification_id))
        .await
        .expect_err("delivered");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        format!(
            "notification `{}` is delivered; only failed notifications can be retried",
            failed.notification_id
        )
    );
    let unknown = notifier
        .client
        .clone()
        .retry_notification(retry("", "nope"))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), "no notification `nope`");

    // 503 every time: given up after the attempt limit (3 here), each attempt backed off.
    notifier.gateway.answer_next(&[503, 429, 503]);
    notifier.signal("sig-rank-4", "p-1", rank(4)).await;
    for attempts in 1..=3 {
        notifier
            .wait_for("p-1", "made another attempt", |all| {
                all.len() == 4 && by_cause(all, "signal:sig-rank-4").attempts.len() == attempts
            })
            .await;
        notifier.clock.advance(TimeDelta::seconds(60));
    }
    let gave_up = notifier
        .wait_for("p-1", "gave up", |all| {
            by_cause(all, "signal:sig-rank-4").status() == NotificationStatus::Failed
        })
        .await;
    let gave_up = by_cause(&gave_up, "signal:sig-rank-4");
    assert_eq!(codes(gave_up), vec![503, 429, 503]);
    assert_eq!(
        gave_up.status_reason,
        "gave up after 3 attempts: the chat-bot gateway answered 503 Service Unavailable: "
    );
    // Each attempt waited for the clock (moved a minute at a time).
    let times: Vec<i64> = gave_up
        .attempts
        .iter()
        .map(|attempt| attempt.at.map_or(0, |t| t.seconds))
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[1] - pair[0] == 60),
        "{times:?}"
    );
    assert_eq!(notifier.gateway.received().len(), 8);
    notifier.stop().await;
}

#[tokio::test]
async fn smtp_4xx_is_retried_and_5xx_is_final() {
    let mut notifier = Notifier::start_at(at("2026-11-25T10:00:00Z")).await;
    notifier
        .set_preferences(proto::Preferences {
            partner_id: "p-1".into(),
            email: "p1@example.com".into(),
            locale: "en".into(),
            ..proto::Preferences::default()
        })
        .await;
    notifier.sink.answer_next(&[451, 250, 550]);
    notifier.signal("sig-rank-1", "p-1", rank(1)).await;
    notifier
        .wait_for("p-1", "failed once", |all| {
            all.len() == 1 && all[0].attempts.len() == 1
        })
        .await;
    notifier.clock.advance(TimeDelta::seconds(60));
    let delivered = notifier
        .wait_for("p-1", "delivered", |all| {
            all[0].status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(codes(&delivered[0]), vec![451, 250]);
    assert!(
        delivered[0].attempts[0]
            .error
            .starts_with("the SMTP server refused the e-mail:"),
        "{:?}",
        delivered[0].attempts[0]
    );
    notifier.signal("sig-rank-2", "p-1", rank(2)).await;
    let failed = notifier
        .wait_for("p-1", "failed for good", |all| {
            all.len() == 2
                && by_cause(all, "signal:sig-rank-2").status() == NotificationStatus::Failed
        })
        .await;
    assert_eq!(codes(by_cause(&failed, "signal:sig-rank-2")), vec![550]);
    let emails = notifier.sink.received();
    assert_eq!(
        emails.iter().map(|e| e.answered).collect::<Vec<_>>(),
        vec![451, 250, 550]
    );
    // Both attempts of the first carry the same Message-ID.
    assert_eq!(emails[0].message_id, emails[1].message_id);
    assert_eq!(
        emails[1].message_id,
        format!("{}@mentorstream", delivered[0].notification_id)
    );
    assert_eq!(emails[1].subject, "Congratulations on reaching Level 1!");
    notifier.stop().await;
}
