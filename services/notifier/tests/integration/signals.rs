//! Congratulations and inactivity nudges from the aggregator's signals: to the partner, with
//! a note to their current mentor; one per signal id however often it is delivered; signals
//! nobody is told of and undecodable records change nothing.

use crate::common;

use common::{Notifier, at, timestamp};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::kpi::v1::{
    FirstSale, GoalAchieved, GoalMissed, Inactive, Metric, RankAchieved, TargetCrossed, kpi_signal,
};
use mentorstream_proto::mentorship::v1::{MenteeAssigned, mentorship_event};
use mentorstream_proto::notification::v1::{self as proto, NotificationStatus};
use tracing::Instrument as _;

fn decimal(value: &str) -> Option<Decimal> {
    Some(Decimal {
        value: value.into(),
    })
}

/// (cause, subject, body) of each notification, in order.
fn texts(notifications: &[proto::Notification]) -> Vec<(String, String, String)> {
    let mut texts: Vec<_> = notifications
        .iter()
        .map(|n| (n.cause.clone(), n.subject.clone(), n.body.clone()))
        .collect();
    texts.sort();
    texts
}

fn triple(cause: &str, subject: &str, body: &str) -> (String, String, String) {
    (cause.into(), subject.into(), body.into())
}

#[tokio::test]
async fn each_signal_tells_the_partner_and_their_mentor_once() {
    let mut notifier = Notifier::start_at(at("2026-11-25T10:00:00Z")).await;
    for (partner, chatbot, locale) in [("p-1", "tg-p1", ""), ("p-3", "tg-p3", "en-US")] {
        notifier
            .set_preferences(proto::Preferences {
                partner_id: partner.into(),
                chatbot_user_id: chatbot.into(),
                locale: locale.into(),
                ..proto::Preferences::default()
            })
            .await;
    }
    notifier
        .set_preferences(proto::Preferences {
            partner_id: "m-1".into(),
            email: "anna@example.com".into(),
            locale: "en".into(),
            ..proto::Preferences::default()
        })
        .await;
    notifier
        .mentorship(
            "p-1",
            at("2026-11-20T10:00:00Z"),
            mentorship_event::Payload::MenteeAssigned(MenteeAssigned {
                group_id: "g-1".into(),
                mentor_id: "m-1".into(),
                mentee_id: "p-1".into(),
            }),
        )
        .await;
    // The assignment is applied before any signal: the notifier learns of it through the
    // same kind of consumer, so wait for its effect.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let known: i64 = sqlx::query_scalar("SELECT count(*) FROM mentees WHERE mentee_id = 'p-1'")
            .fetch_one(&notifier.pool)
            .await
            .expect("count");
        if known == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never assigned");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A record nobody can decode goes to the dead-letter topic; the signals after it count.
    let signals_topic = notifier.context.config.kafka.topics.kpi_signals.clone();
    notifier
        .produce_raw(&signals_topic, "p-1", b"\xff\xff not protobuf".to_vec())
        .await;
    // Produced inside a trace: the webhooks it causes continue it.
    let producing = tracing::info_span!("aggregator");
    let trace_id = mentorstream_telemetry::propagation::trace_id(&producing).expect("trace id");
    notifier
        .signal(
            "sig-first-sale-p1",
            "p-1",
            kpi_signal::Payload::FirstSale(FirstSale {
                order_id: "o-1".into(),
                volume: decimal("120.50"),
                days_to_first_sale: 3,
            }),
        )
        .instrument(producing)
        .await;
    notifier
        .signal(
            "sig-rank-p1",
            "p-1",
            kpi_signal::Payload::RankAchieved(RankAchieved {
                rank_level: 2,
                rank_name: "Silver".into(),
                days_to_rank: 40,
            }),
        )
        .await;
    notifier
        .signal(
            "sig-goal-p1",
            "p-1",
            kpi_signal::Payload::GoalAchieved(GoalAchieved {
                plan_id: "plan-1".into(),
                goal_id: "goal-1".into(),
                metric: Metric::Recruits as i32,
                target: decimal("3"),
                value: decimal("3"),
            }),
        )
        .await;
    notifier
        .signal(
            "sig-inactive-p1",
            "p-1",
            kpi_signal::Payload::Inactive(Inactive {
                last_active_at: Some(timestamp(at("2026-11-18T09:00:00Z"))),
                inactive_days: 7,
            }),
        )
        .await;
    // Nobody is told of these.
    notifier
        .signal(
            "sig-missed-p1",
            "p-1",
            kpi_signal::Payload::GoalMissed(GoalMissed {
                plan_id: "plan-1".into(),
                goal_id: "goal-2".into(),
                metric: Metric::Orders as i32,
                target: decimal("5"),
                value: decimal("1"),
            }),
        )
        .await;
    notifier
        .signal(
            "sig-target-p1",
            "p-1",
            kpi_signal::Payload::TargetCrossed(TargetCrossed {
                target_id: "t-1".into(),
                threshold: decimal("100"),
                value: decimal("120.50"),
                ..TargetCrossed::default()
            }),
        )
        .await;
    // A partner without a mentor: only they hear of it.
    notifier
        .signal(
            "sig-first-sale-p3",
            "p-3",
            kpi_signal::Payload::FirstSale(FirstSale {
                order_id: "o-9".into(),
                volume: decimal("40.00"),
                days_to_first_sale: 12,
            }),
        )
        .await;

    let partner = notifier
        .wait_for("p-1", "got four messages", |all| {
            all.len() == 4
                && all
                    .iter()
                    .all(|n| n.status() == NotificationStatus::Delivered)
        })
        .await;
    assert_eq!(
        texts(&partner),
        vec![
            triple(
                "signal:sig-first-sale-p1",
                "Поздравляем с первой продажей!",
                "Ваш первый заказ (120.50 PV) пришёл через 3 дн. после регистрации. \
                 Отличная работа!"
            ),
            triple(
                "signal:sig-goal-p1",
                "Цель достигнута: новые партнёры 3 из 3",
                "Вы достигли цели плана развития: новые партнёры, 3 из 3. Поздравляем!"
            ),
            triple(
                "signal:sig-inactive-p1",
                "Мы скучаем!",
                "Вы не проявляли активности 7 дн. (последний раз 2026-11-18 12:00). Короткая \
                 встреча с наставником поможет вернуться."
            ),
            triple(
                "signal:sig-rank-p1",
                "Поздравляем с рангом Silver!",
                "Вы достигли ранга Silver (уровень 2) через 40 дн. после регистрации."
            ),
        ]
    );
    let first_sale = partner
        .iter()
        .find(|n| n.cause == "signal:sig-first-sale-p1")
        .expect("first sale");
    let webhook = notifier
        .gateway
        .received()
        .into_iter()
        .find(|request| request.idempotency_key == first_sale.notification_id)
        .expect("sent");
    assert_eq!(
        webhook.traceparent.split('-').nth(1),
        Some(trace_id.as_str()),
        "{webhook:?}"
    );
    let categories: Vec<_> = partner.iter().map(|n| n.category()).collect();
    assert_eq!(
        categories
            .iter()
            .filter(|c| **c == proto::Category::Congratulation)
            .count(),
        3
    );
    assert!(categories.contains(&proto::Category::Inactivity));

    let mentor = notifier
        .wait_for("m-1", "got four notes", |all| {
            all.len() == 4
                && all
                    .iter()
                    .all(|n| n.status() == NotificationStatus::Delivered)
        })
        .await;
    assert_eq!(
        texts(&mentor),
        vec![
            triple(
                "signal:sig-first-sale-p1:mentor",
                "Your mentee p-1 made their first sale",
                "p-1 placed their first order (120.50 PV), 3 day(s) after joining. A good \
                 moment to congratulate them."
            ),
            triple(
                "signal:sig-goal-p1:mentor",
                "Your mentee p-1 achieved a goal",
                "p-1 reached their goal: recruits, 3 of 3."
            ),
            triple(
                "signal:sig-inactive-p1:mentor",
                "Your mentee p-1 has been inactive for 7 days",
                "p-1 was last active on 2026-11-18 12:00 (Europe/Moscow). A short session may \
                 help them get going again."
            ),
            triple(
                "signal:sig-rank-p1:mentor",
                "Your mentee p-1 reached Silver",
                "p-1 reached rank Silver (level 2) 40 day(s) after joining."
            ),
        ]
    );
    let alone = notifier
        .wait_for("p-3", "got the congratulation", |all| {
            all.len() == 1 && all[0].status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(alone[0].subject, "Congratulations on your first sale!");

    // Redelivered (with a corrected volume, as the aggregator re-announces): nothing new.
    notifier
        .signal(
            "sig-first-sale-p1",
            "p-1",
            kpi_signal::Payload::FirstSale(FirstSale {
                order_id: "o-0".into(),
                volume: decimal("99.00"),
                days_to_first_sale: 2,
            }),
        )
        .await;
    // A later signal of the same partner (so the same partition): once it is in, the
    // redelivery before it was applied.
    notifier
        .signal(
            "sig-rank3-p1",
            "p-1",
            kpi_signal::Payload::RankAchieved(RankAchieved {
                rank_level: 3,
                rank_name: "Gold".into(),
                days_to_rank: 41,
            }),
        )
        .await;
    let partner = notifier
        .wait_for("p-1", "got the Gold message", |all| all.len() == 5)
        .await;
    assert_eq!(
        partner
            .iter()
            .filter(|n| n.cause == "signal:sig-first-sale-p1")
            .map(|n| n.body.as_str())
            .collect::<Vec<_>>(),
        vec!["Ваш первый заказ (120.50 PV) пришёл через 3 дн. после регистрации. Отличная работа!"]
    );
    notifier
        .wait_for("m-1", "got the Gold note", |all| all.len() == 5)
        .await;
    // p-1: 5 webhooks, p-3: 1; the mentor's notes went by e-mail.
    assert_eq!(notifier.gateway.wait_for(6).await.len(), 6);
    assert_eq!(notifier.sink.wait_for(5).await.len(), 5);

    let dead = common::read_raw(
        &notifier.context.config.kafka,
        &format!("{signals_topic}.dlq"),
        1,
    )
    .await;
    assert_eq!(dead[0].0, b"\xff\xff not protobuf".to_vec());
    assert_eq!(dead[0].1.get("dlq-origin-topic"), Some(&signals_topic));
    notifier.stop().await;
}
