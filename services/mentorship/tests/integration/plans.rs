//! Development plans and goals through MentorshipService, their status following the
//! aggregator's goal signals: redelivered signals change nothing twice, a goal reached after
//! it was announced missed is achieved, and each change is acknowledged once on the topic.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::{Service, WAIT};
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::kpi::v1::{self as kpi, KpiSignal, Metric, kpi_signal};
use mentorstream_proto::mentorship::v1::{
    CreatePlanRequest, GetPlanRequest, GoalStatus, SetGoalRequest, mentorship_event,
};
use tonic::Code;

fn at(time: chrono::DateTime<Utc>) -> Option<prost_types::Timestamp> {
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

#[tokio::test]
async fn goals_follow_the_aggregators_signals_once() {
    let mut service = Service::start().await;
    for partner in ["mentor-1", "ann"] {
        service.enrol(partner).await;
    }
    service.group_with("mentor-1", &["ann"], None, None).await;

    let plan = |mentee: &str| CreatePlanRequest {
        request_id: String::new(),
        mentee_id: mentee.into(),
    };
    let created = service
        .client
        .create_plan(service.write(plan("ann")))
        .await
        .expect("plan")
        .into_inner()
        .plan
        .expect("plan");
    assert_eq!(created.mentor_id, "mentor-1", "the mentee's current mentor");
    let twice = service
        .client
        .create_plan(service.write(plan("ann")))
        .await
        .expect_err("one plan per mentee");
    assert_eq!(twice.code(), Code::AlreadyExists);
    let stranger = service
        .client
        .create_plan(service.write(plan("stranger")))
        .await
        .expect_err("not enrolled");
    assert_eq!(stranger.code(), Code::FailedPrecondition);

    let start = Utc::now() - chrono::Duration::days(1);
    let goal = |metric: Metric, target: &str| SetGoalRequest {
        request_id: String::new(),
        plan_id: created.plan_id.clone(),
        metric: metric.into(),
        target: decimal(target),
        starts_at: at(start),
        due_at: at(start + chrono::Duration::days(14)),
        description: "First sales".into(),
    };
    for (request, code, message) in [
        (
            goal(Metric::FeedbackAvg, "4"),
            Code::InvalidArgument,
            "metric: must be a partner's counted metric (recruits, sales volume, orders, \
             modules, learning minutes, events, sessions completed, rank advancements, active \
             days)"
                .to_owned(),
        ),
        (
            goal(Metric::Orders, "2.5"),
            Code::InvalidArgument,
            "target: must be a whole number above 0, got `2.5`".to_owned(),
        ),
        (
            goal(Metric::SalesVolume, "1.234"),
            Code::InvalidArgument,
            "target: must be a volume with at most 2 decimals, got `1.234`".to_owned(),
        ),
        (
            SetGoalRequest {
                due_at: at(start - chrono::Duration::days(1)),
                ..goal(Metric::Orders, "2")
            },
            Code::InvalidArgument,
            "due_at: must be after starts_at".to_owned(),
        ),
        (
            SetGoalRequest {
                plan_id: "nope".into(),
                ..goal(Metric::Orders, "2")
            },
            Code::FailedPrecondition,
            "plan_id: no plan `nope`".to_owned(),
        ),
    ] {
        let refused = service
            .client
            .set_goal(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!(
            (refused.code(), refused.message()),
            (code, message.as_str())
        );
    }
    assert_eq!(service.counts("goals").await.0, 0);
    let orders = service
        .client
        .set_goal(service.write(goal(Metric::Orders, "2")))
        .await
        .expect("goal")
        .into_inner()
        .goal
        .expect("goal")
        .goal_id;
    let volume = service
        .client
        .set_goal(service.write(goal(Metric::SalesVolume, "100.50")))
        .await
        .expect("goal")
        .into_inner()
        .goal
        .expect("goal")
        .goal_id;

    // The aggregator's signals, one of them redelivered, one arriving after its goal was
    // achieved, and a goal achieved after it was announced missed.
    let signal = |n: u32, payload| KpiSignal {
        tenant_id: service.tenant_id.clone(),
        signal_id: format!("signal-{n}"),
        partner_id: "ann".into(),
        occurred_at: at(Utc::now()),
        payload: Some(payload),
    };
    let achieved = |goal_id: &str, value: &str| {
        kpi_signal::Payload::GoalAchieved(kpi::GoalAchieved {
            plan_id: created.plan_id.clone(),
            goal_id: goal_id.into(),
            metric: Metric::Orders.into(),
            target: decimal("2"),
            value: decimal(value),
        })
    };
    let missed = |goal_id: &str, value: &str| {
        kpi_signal::Payload::GoalMissed(kpi::GoalMissed {
            plan_id: created.plan_id.clone(),
            goal_id: goal_id.into(),
            metric: Metric::SalesVolume.into(),
            target: decimal("100.50"),
            value: decimal(value),
        })
    };
    let signals = [
        signal(1, achieved(&orders, "2")),
        signal(1, achieved(&orders, "2")),
        signal(2, missed(&volume, "40.00")),
        signal(3, missed(&orders, "1")),
        signal(4, achieved(&volume, "100.50")),
    ];
    let kafka = &service.context.config.kafka;
    let producer = Producer::new(kafka, WAIT).expect("producer");
    for signal in &signals {
        producer
            .send(&OutboundRecord::protobuf(
                &kafka.topics.kpi_signals,
                format!("{}/ann", service.tenant_id),
                signal,
                CloudEvent {
                    id: signal.signal_id.clone(),
                    event_type: "mentorstream.kpi.v1.KpiSignal".into(),
                    source: "/tests".into(),
                    time: Utc::now(),
                },
            ))
            .await
            .expect("produced");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let goals = loop {
        let plan = service
            .client
            .get_plan(service.read(GetPlanRequest {
                plan_id: String::new(),
                mentee_id: "ann".into(),
            }))
            .await
            .expect("plan")
            .into_inner()
            .plan
            .expect("plan");
        let statuses: Vec<(String, i32, Option<String>)> = plan
            .goals
            .iter()
            .map(|goal| {
                (
                    goal.goal_id.clone(),
                    goal.status,
                    goal.progress
                        .as_ref()
                        .map(|progress| progress.value.clone()),
                )
            })
            .collect();
        if statuses
            .iter()
            .any(|(id, status, _)| *id == volume && *status == i32::from(GoalStatus::Achieved))
        {
            break statuses;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "goals never moved: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let achieved_status = i32::from(GoalStatus::Achieved);
    let mut expected = vec![
        (orders.clone(), achieved_status, Some("2".to_owned())),
        (volume.clone(), achieved_status, Some("100.50".to_owned())),
    ];
    expected.sort();
    let mut goals = goals;
    goals.sort();
    assert_eq!(goals, expected);

    // Each change of ann's plan once on the topic, in order.
    let changes: Vec<String> = service
        .published()
        .await
        .into_iter()
        .filter(|(key, _)| *key == format!("{}/ann", service.tenant_id))
        .filter_map(|(_, event)| match event.payload? {
            mentorship_event::Payload::PlanCreated(_) => Some("plan".to_owned()),
            mentorship_event::Payload::GoalSet(set) => Some(format!("set {}", set.goal_id)),
            mentorship_event::Payload::GoalAchieved(done) => {
                Some(format!("achieved {}", done.goal_id))
            }
            mentorship_event::Payload::GoalMissed(missed) => {
                Some(format!("missed {}", missed.goal_id))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            "plan".to_owned(),
            format!("set {orders}"),
            format!("set {volume}"),
            format!("achieved {orders}"),
            format!("missed {volume}"),
            format!("achieved {volume}"),
        ]
    );
    service.stop().await;
}

/// With KpiService answering, a plan shows each goal's live progress — here two orders toward
/// a goal of three, which no signal has reported yet — computed by the aggregator from the
/// goal as it arrived on the mentorship topic and the orders on the activity topic.
#[tokio::test]
async fn plans_show_live_progress_from_kpi_service() {
    let mut service = Service::start_with_aggregator().await;
    service.enrol("ann").await;
    let plan_id = service
        .client
        .create_plan(service.write(CreatePlanRequest {
            request_id: String::new(),
            mentee_id: "ann".into(),
        }))
        .await
        .expect("plan")
        .into_inner()
        .plan
        .expect("plan")
        .plan_id;
    let now = Utc::now();
    let goal_id = service
        .client
        .set_goal(service.write(SetGoalRequest {
            request_id: String::new(),
            plan_id,
            metric: Metric::Orders.into(),
            target: decimal("3"),
            starts_at: at(now - chrono::Duration::days(1)),
            due_at: at(now + chrono::Duration::days(13)),
            description: "Three orders".into(),
        }))
        .await
        .expect("goal")
        .into_inner()
        .goal
        .expect("goal")
        .goal_id;
    for order in ["o-1", "o-2"] {
        service
            .publish(
                "ann",
                order,
                now,
                mentorstream_proto::activity::v1::activity_event::Payload::OrderPlaced(
                    mentorstream_proto::activity::v1::OrderPlaced {
                        order_id: order.into(),
                        volume: decimal("10.00"),
                        amount: None,
                    },
                ),
            )
            .await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let plan = service
            .client
            .get_plan(service.read(GetPlanRequest {
                plan_id: String::new(),
                mentee_id: "ann".into(),
            }))
            .await
            .expect("plan")
            .into_inner()
            .plan
            .expect("plan");
        let goal = plan
            .goals
            .iter()
            .find(|goal| goal.goal_id == goal_id)
            .expect("the goal");
        if goal.progress.as_ref().map(|value| value.value.as_str()) == Some("2") {
            assert_eq!(goal.status, i32::from(GoalStatus::InProgress));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no live progress: {goal:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.stop().await;
}
