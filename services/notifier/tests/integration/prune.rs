//! Data lifecycle with a manual clock: a finished notification and its attempts are deleted
//! once the retention has passed, a pending one never is, answers kept for request_id retries
//! go after theirs, and the old event redelivered sends nothing again.

use crate::common;

use std::time::Duration;

use chrono::TimeDelta;
use common::Notifier;
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::kpi::v1::{FirstSale, kpi_signal};
use mentorstream_proto::notification::v1::{self as proto, NotificationStatus};

async fn count(notifier: &Notifier, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&notifier.pool)
        .await
        .expect("count")
}

fn first_sale() -> kpi_signal::Payload {
    kpi_signal::Payload::FirstSale(FirstSale {
        order_id: "o-1".into(),
        volume: Some(Decimal {
            value: "10.00".into(),
        }),
        days_to_first_sale: 2,
    })
}

#[tokio::test]
async fn what_outlived_its_retention_is_pruned_and_never_sent_again() {
    // Today: the database stamps request answers with its own clock.
    let start = chrono::Utc::now();
    let mut notifier = Notifier::start_inner(
        start,
        |config| {
            config.notifier.prune_interval = Duration::from_millis(100);
            config.notifier.notification_retention = Duration::from_secs(90 * 86_400);
            config.notifier.request_retention = Duration::from_secs(7 * 86_400);
        },
        false,
    )
    .await;
    // With a request_id: its answer is kept for retries.
    let request = notifier.write(proto::UpdatePreferencesRequest {
        request_id: "prefs-1".into(),
        preferences: Some(proto::Preferences {
            partner_id: "p-1".into(),
            chatbot_user_id: "tg-p1".into(),
            ..proto::Preferences::default()
        }),
        update_mask: None,
    });
    notifier
        .client
        .update_preferences(request)
        .await
        .expect("preferences");
    let delivered = |all: &[proto::Notification]| {
        all.iter()
            .filter(|n| n.status() == NotificationStatus::Delivered)
            .count()
    };
    notifier.signal("sig-1", "p-1", first_sale()).await;
    notifier
        .wait_for("p-1", "delivered the first", |all| delivered(all) == 1)
        .await;
    assert_eq!(count(&notifier, "SELECT count(*) FROM attempts").await, 1);
    assert_eq!(count(&notifier, "SELECT count(*) FROM requests").await, 1);

    // 89 days on: nothing has outlived its 90 days; the request answers (7 days) have.
    notifier.clock.advance(TimeDelta::days(89));
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while count(&notifier, "SELECT count(*) FROM requests").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "answers never pruned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(&notifier, "SELECT count(*) FROM notifications").await,
        1
    );

    // A second signal, now; then 2 more days: the first (92 days old) goes with its attempt,
    // the second (2 days old) stays.
    notifier.signal("sig-2", "p-1", first_sale()).await;
    notifier
        .wait_for("p-1", "delivered the second", |all| delivered(all) == 2)
        .await;
    notifier.clock.advance(TimeDelta::days(2));
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while count(&notifier, "SELECT count(*) FROM notifications").await > 1 {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<String> = sqlx::query_scalar("SELECT cause FROM notifications")
        .fetch_all(&notifier.pool)
        .await
        .expect("causes");
    assert_eq!(left, ["signal:sig-2"]);
    assert_eq!(count(&notifier, "SELECT count(*) FROM attempts").await, 1);

    // The first signal again (a redelivery, 92 days after it happened): nothing is planned,
    // so nothing is sent twice. A fresh signal after it still is, proving the topic was read.
    let before = notifier.gateway.received().len();
    notifier
        .signal_at("sig-1", "p-1", start, first_sale())
        .await;
    notifier.signal("sig-3", "p-1", first_sale()).await;
    notifier
        .wait_for("p-1", "delivered the third", |all| delivered(all) == 2)
        .await;
    let causes: Vec<String> = notifier
        .notifications("p-1")
        .await
        .into_iter()
        .map(|n| n.cause)
        .collect();
    assert!(!causes.contains(&"signal:sig-1".to_owned()), "{causes:?}");
    assert_eq!(notifier.gateway.received().len(), before + 1);
    notifier.stop().await;
}
