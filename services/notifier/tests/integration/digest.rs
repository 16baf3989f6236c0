//! The weekly digest: on Monday at 09:00 in the mentor's zone, each mentor gets the week's
//! numbers of their group, read from the KPI aggregator running next to the notifier, once.

use crate::common;

use chrono::{Datelike as _, NaiveTime, TimeDelta, TimeZone as _, Timelike as _, Utc};
use common::Notifier;
use mentorstream_proto::activity::v1::{OrderPlaced, activity_event};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    GetScorecardRequest, Metric, Subject, SubjectKind, Window, WindowKind, metric_value,
};
use mentorstream_proto::mentorship::v1::{
    FeedbackSubmitted, GroupCreated, MenteeAssigned, SessionCompleted, mentorship_event,
};
use mentorstream_proto::notification::v1::{self as proto, NotificationStatus};

const MOSCOW: chrono_tz::Tz = chrono_tz::Europe::Moscow;

#[tokio::test]
async fn each_mentor_gets_the_weeks_group_numbers_on_monday_morning() {
    // The events span 20 minutes, all in one week: right after midnight on a Monday, they
    // go two hours back, into the week before.
    let real = Utc::now().with_timezone(&MOSCOW);
    let now = if real.weekday() == chrono::Weekday::Mon && real.hour() == 0 {
        real.with_timezone(&Utc) - TimeDelta::hours(2)
    } else {
        real.with_timezone(&Utc)
    };
    let mut notifier = Notifier::start_with_aggregator(now).await;
    notifier
        .set_preferences(proto::Preferences {
            partner_id: "m-1".into(),
            email: "anna@example.com".into(),
            locale: "en".into(),
            ..proto::Preferences::default()
        })
        .await;
    notifier
        .set_preferences(proto::Preferences {
            partner_id: "m-2".into(),
            email: "boris@example.com".into(),
            opted_out: vec![proto::Category::WeeklyDigest as i32],
            ..proto::Preferences::default()
        })
        .await;
    // This week in Moscow: a group of two, a session both attended, their ratings, and two
    // orders by p-1.
    let at = |minutes_ago: i64| now - TimeDelta::minutes(minutes_ago);
    for mentor in ["m-1", "m-2"] {
        notifier
            .mentorship(
                &format!("g-{mentor}"),
                at(20),
                mentorship_event::Payload::GroupCreated(GroupCreated {
                    group_id: format!("g-{mentor}"),
                    program_id: "standard".into(),
                    mentor_id: mentor.into(),
                    capacity: 7,
                }),
            )
            .await;
    }
    for mentee in ["p-1", "p-2"] {
        notifier
            .mentorship(
                mentee,
                at(10),
                mentorship_event::Payload::MenteeAssigned(MenteeAssigned {
                    group_id: "g-m-1".into(),
                    mentor_id: "m-1".into(),
                    mentee_id: mentee.into(),
                }),
            )
            .await;
    }
    notifier
        .mentorship(
            "s-1",
            at(5),
            mentorship_event::Payload::SessionCompleted(SessionCompleted {
                session_id: "s-1".into(),
                group_id: "g-m-1".into(),
                mentor_id: "m-1".into(),
                mentee_ids: vec!["p-1".into(), "p-2".into()],
                attendee_ids: vec!["p-1".into(), "p-2".into()],
                starts_at: Some(common::timestamp(at(20))),
                duration: Some(prost_types::Duration {
                    seconds: 15 * 60,
                    nanos: 0,
                }),
            }),
        )
        .await;
    for (mentee, rating) in [("p-1", 5), ("p-2", 4)] {
        notifier
            .mentorship(
                "s-1",
                at(4),
                mentorship_event::Payload::FeedbackSubmitted(FeedbackSubmitted {
                    session_id: "s-1".into(),
                    mentor_id: "m-1".into(),
                    mentee_id: mentee.into(),
                    rating,
                }),
            )
            .await;
    }
    for (order, volume) in [("o-1", "10.50"), ("o-2", "4.25")] {
        notifier
            .activity(
                "p-1",
                order,
                at(3),
                activity_event::Payload::OrderPlaced(OrderPlaced {
                    order_id: order.into(),
                    volume: Some(Decimal {
                        value: volume.into(),
                    }),
                    amount: None,
                }),
            )
            .await;
    }

    // The week of those events, and the Monday after it at 09:00 Moscow.
    let today = at(3).with_timezone(&MOSCOW).date_naive();
    let week_start = today - TimeDelta::days(i64::from(today.weekday().num_days_from_monday()));
    let next_monday = MOSCOW
        .from_local_datetime(
            &(week_start + TimeDelta::days(7))
                .and_time(NaiveTime::from_hms_opt(9, 0, 0).expect("09:00")),
        )
        .earliest()
        .expect("09:00 exists")
        .with_timezone(&Utc);
    let week = week_start.iso_week();

    // Wait until the aggregator counted everything, as the digest will ask it.
    let mut kpi = KpiServiceClient::connect(notifier.context.config.notifier.kpi_endpoint.clone())
        .await
        .expect("kpi");
    let scorecard = || GetScorecardRequest {
        subject: Some(Subject {
            kind: SubjectKind::Group as i32,
            id: "g-m-1".into(),
            mentor_id: String::new(),
        }),
        window: Some(Window {
            kind: WindowKind::Week as i32,
            anchor: Some(week_start.into()),
        }),
    };
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let retention = loop {
        // The group is NOT_FOUND until its first assignment is applied.
        let values = match kpi.get_scorecard(notifier.read(scorecard())).await {
            Ok(answer) => answer.into_inner().values,
            Err(status) if status.code() == tonic::Code::NotFound => Vec::new(),
            Err(status) => panic!("scorecard: {status:?}"),
        };
        let value = |metric: Metric| {
            values
                .iter()
                .find(|value| value.metric() == metric)
                .and_then(|value| value.value.clone())
        };
        if value(Metric::FeedbackCount) == Some(metric_value::Value::Count(2))
            && value(Metric::Orders) == Some(metric_value::Value::Count(2))
            && value(Metric::SessionsCompleted) == Some(metric_value::Value::Count(2))
        {
            break value(Metric::Retention30d);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the aggregator never counted the week: {values:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Neither mentee enrolled 30 days ago: nobody to retain, so retention has no value.
    assert_eq!(
        retention,
        Some(metric_value::Value::Fraction(
            mentorstream_proto::kpi::v1::Fraction {
                numerator: 0,
                denominator: 0,
                value: None,
            }
        ))
    );

    notifier.clock.set(next_monday - TimeDelta::seconds(1));
    notifier.clock.set(next_monday);
    let emails = notifier.sink.wait_for(1).await;
    assert_eq!(emails[0].to, vec!["anna@example.com".to_owned()]);
    let label = format!("{}-W{:02}", week.year(), week.week());
    assert_eq!(emails[0].subject, format!("Your group in week {label}"));
    assert_eq!(
        emails[0].body,
        format!(
            "Your group, week {label} (from {week_start}):\n\
             - mentees: 2\n\
             - sessions completed: 2, missed: 0\n\
             - recruits: 0\n\
             - sales volume: 14.75 PV in 2 order(s)\n\
             - modules completed: 0\n\
             - your feedback: 4.50 from 2 rating(s)\n\
             - 30-day retention: —"
        )
    );
    let digest = notifier
        .wait_for("m-1", "got the digest", |all| {
            all.len() == 1 && all[0].status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(digest[0].cause, format!("digest:g-m-1:{label}"));
    assert_eq!(digest[0].category(), proto::Category::WeeklyDigest);
    assert_eq!(
        digest[0].due_at.map(|t| t.seconds),
        Some(next_monday.timestamp())
    );
    let opted_out = notifier
        .wait_for("m-2", "had the digest suppressed", |all| {
            all.len() == 1 && all[0].status() == NotificationStatus::Suppressed
        })
        .await;
    assert_eq!(
        opted_out[0].status_reason,
        "the recipient opted out of weekly_digest"
    );
    // Later that week: still one digest each.
    notifier.clock.set(next_monday + TimeDelta::days(3));
    notifier
        .mentorship(
            "sentinel",
            at(1),
            mentorship_event::Payload::GroupCreated(GroupCreated {
                group_id: "g-m-3".into(),
                program_id: "standard".into(),
                mentor_id: "m-3".into(),
                capacity: 7,
            }),
        )
        .await;
    // m-3 led a group before this Monday: its digest comes now (and fails: no address).
    notifier
        .wait_for("m-3", "had a digest", |all| {
            all.len() == 1 && common::settled(all)
        })
        .await;
    assert_eq!(notifier.notifications("m-1").await.len(), 1);
    assert_eq!(notifier.notifications("m-2").await.len(), 1);
    assert_eq!(notifier.sink.received().len(), 1);
    notifier.stop().await;
}
