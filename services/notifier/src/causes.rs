//! From events to notifications: the mentorship topic's session, assignment and group events
//! and the aggregator's signals each become the notifications they cause, stored with their
//! due time. A notification is unique per (tenant, recipient, cause), so a redelivered event
//! inserts nothing new and a restart never causes a second message.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use mentorstream_kafka::{HandleError, InboundRecord, RecordHandler};
use mentorstream_proto::kpi::v1::{KpiSignal, Metric, kpi_signal};
use mentorstream_proto::mentorship::v1::{MentorshipEvent, mentorship_event};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::kinds::Kind;

/// Reminders go out this long before a session starts.
const REMINDERS: [(Kind, TimeDelta, &str); 2] = [
    (Kind::Reminder24h, TimeDelta::hours(24), "reminder-24h"),
    (Kind::Reminder15m, TimeDelta::minutes(15), "reminder-15m"),
];

/// A notification to store.
#[derive(Debug, Clone)]
pub struct Planned {
    pub recipient_id: String,
    pub kind: Kind,
    pub cause: String,
    /// Notifications one later event cancels together; empty for none.
    pub cause_group: String,
    pub params: Value,
    pub due_at: DateTime<Utc>,
}

/// Stores `planned` unless its cause already has a notification for this recipient; whether
/// it was new.
pub async fn plan(
    connection: &mut PgConnection,
    tenant_id: &str,
    planned: &Planned,
) -> Result<bool, sqlx::Error> {
    // The delivery, maybe days later, continues the trace of the event that caused it.
    let mut trace = std::collections::HashMap::new();
    mentorstream_telemetry::propagation::inject_current(&mut trace);
    let inserted = sqlx::query(
        "INSERT INTO notifications (notification_id, tenant_id, recipient_id, category, kind, \
             cause, cause_group, params, due_at, next_attempt_at, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) \
         ON CONFLICT (tenant_id, recipient_id, cause) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().simple().to_string())
    .bind(tenant_id)
    .bind(&planned.recipient_id)
    .bind(planned.kind.category().name())
    .bind(planned.kind.name())
    .bind(&planned.cause)
    .bind(&planned.cause_group)
    .bind(&planned.params)
    .bind(planned.due_at)
    .bind(trace.remove("traceparent").unwrap_or_default())
    .execute(&mut *connection)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Cancels the pending notifications of `cause_group` whose cause is not in `keep`.
async fn cancel_pending(
    connection: &mut PgConnection,
    tenant_id: &str,
    cause_group: &str,
    keep: &[String],
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let cancelled = sqlx::query(
        "UPDATE notifications SET status = 'cancelled', status_reason = $4, lease_until = NULL \
         WHERE tenant_id = $1 AND cause_group = $2 AND status = 'pending' \
           AND NOT (cause = ANY($3))",
    )
    .bind(tenant_id)
    .bind(cause_group)
    .bind(keep)
    .bind(reason)
    .execute(&mut *connection)
    .await?;
    Ok(cancelled.rows_affected())
}

fn reminders_group(session_id: &str) -> String {
    format!("session:{session_id}:reminders")
}

/// A session's reminders for everyone in it. A reminder whose time has passed is sent at
/// once while the session has not started, except the 24-hour one when the 15-minute one is
/// due too: nobody needs two reminders at the same moment.
fn session_reminders(session: &SessionPlan<'_>, now: DateTime<Utc>) -> (Vec<Planned>, Vec<String>) {
    let mut planned = Vec::new();
    let mut causes = Vec::new();
    if session.starts_at <= now {
        return (planned, causes);
    }
    let starts = session.starts_at.timestamp();
    let last_due = session.starts_at - TimeDelta::minutes(15);
    for (kind, before, name) in REMINDERS {
        let due_at = session.starts_at - before;
        if kind == Kind::Reminder24h && last_due <= now {
            continue;
        }
        let cause = format!("session:{}@{starts}:{name}", session.session_id);
        causes.push(cause.clone());
        let recipients = std::iter::once((session.mentor_id, "mentor")).chain(
            session
                .mentee_ids
                .iter()
                .map(|mentee| (mentee.as_str(), "mentee")),
        );
        for (recipient, role) in recipients {
            planned.push(Planned {
                recipient_id: recipient.to_owned(),
                kind,
                cause: cause.clone(),
                cause_group: reminders_group(session.session_id),
                params: json!({
                    "session_id": session.session_id,
                    "topic": session.topic,
                    "role": role,
                    "mentee_count": session.mentee_ids.len(),
                    "starts_at": session.starts_at.to_rfc3339(),
                    "duration_minutes": session.duration_minutes,
                }),
                due_at: due_at.max(now),
            });
        }
    }
    (planned, causes)
}

struct SessionPlan<'a> {
    session_id: &'a str,
    mentor_id: &'a str,
    mentee_ids: &'a [String],
    topic: &'a str,
    starts_at: DateTime<Utc>,
    duration_minutes: i64,
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let timestamp = timestamp?;
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).ok()?)
}

fn minutes(duration: Option<&prost_types::Duration>) -> i64 {
    duration.map_or(0, |duration| duration.seconds / 60)
}

/// Follows `mentorstream.mentorship.v1`: who mentors whom, who leads a group, and the
/// sessions' reminders and feedback requests.
#[derive(Debug)]
pub struct MentorshipFollower {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub dispatcher: Arc<Notify>,
    /// Notifications older than this are pruned (crate::prune): an event older than it plans
    /// none, so a redelivery cannot send again what pruning forgot.
    pub retention: TimeDelta,
}

impl RecordHandler for MentorshipFollower {
    async fn handle(&mut self, record: InboundRecord<'_>) -> Result<(), HandleError> {
        let event: MentorshipEvent = record
            .decode()
            .map_err(|error| HandleError::Poison(error.to_string()))?;
        let planned = self
            .apply(&event)
            .await
            .map_err(|error| HandleError::Transient(error.to_string()))?;
        if planned {
            self.dispatcher.notify_one();
        }
        Ok(())
    }
}

impl MentorshipFollower {
    /// Applies one event in one transaction; whether it planned a notification.
    async fn apply(&self, event: &MentorshipEvent) -> Result<bool, sqlx::Error> {
        use mentorship_event::Payload;
        let tenant_id = event.tenant_id.as_str();
        let now = self.clock.now();
        let occurred_at = time(event.occurred_at.as_ref()).unwrap_or(now);
        let mut transaction = self.pool.begin().await?;
        let mut planned = Vec::new();
        match &event.payload {
            Some(Payload::GroupCreated(group)) => {
                sqlx::query(
                    "INSERT INTO groups (tenant_id, group_id, mentor_id, since) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, group_id) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(&group.group_id)
                .bind(&group.mentor_id)
                .bind(occurred_at)
                .execute(&mut *transaction)
                .await?;
            }
            Some(Payload::MenteeAssigned(assigned)) => {
                sqlx::query(
                    "INSERT INTO mentees (tenant_id, mentee_id, mentor_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, mentee_id) DO UPDATE SET mentor_id = $3",
                )
                .bind(tenant_id)
                .bind(&assigned.mentee_id)
                .bind(&assigned.mentor_id)
                .execute(&mut *transaction)
                .await?;
            }
            Some(Payload::MenteeUnassigned(unassigned)) => {
                sqlx::query(
                    "DELETE FROM mentees WHERE tenant_id = $1 AND mentee_id = $2 AND mentor_id = $3",
                )
                .bind(tenant_id)
                .bind(&unassigned.mentee_id)
                .bind(&unassigned.mentor_id)
                .execute(&mut *transaction)
                .await?;
            }
            Some(Payload::SessionScheduled(scheduled)) => {
                sqlx::query(
                    "INSERT INTO sessions (tenant_id, session_id, topic) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, session_id) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(&scheduled.session_id)
                .bind(&scheduled.topic)
                .execute(&mut *transaction)
                .await?;
                let Some(starts_at) = time(scheduled.starts_at.as_ref()) else {
                    return Ok(false);
                };
                let (reminders, causes) = session_reminders(
                    &SessionPlan {
                        session_id: &scheduled.session_id,
                        mentor_id: &scheduled.mentor_id,
                        mentee_ids: &scheduled.mentee_ids,
                        topic: &scheduled.topic,
                        starts_at,
                        duration_minutes: minutes(scheduled.duration.as_ref()),
                    },
                    now,
                );
                cancel_pending(
                    &mut transaction,
                    tenant_id,
                    &reminders_group(&scheduled.session_id),
                    &causes,
                    "the session was scheduled at another time",
                )
                .await?;
                planned = reminders;
            }
            Some(Payload::SessionRescheduled(rescheduled)) => {
                let Some(starts_at) = time(rescheduled.starts_at.as_ref()) else {
                    return Ok(false);
                };
                let topic: Option<String> = sqlx::query_scalar(
                    "SELECT topic FROM sessions WHERE tenant_id = $1 AND session_id = $2",
                )
                .bind(tenant_id)
                .bind(&rescheduled.session_id)
                .fetch_optional(&mut *transaction)
                .await?;
                let (reminders, causes) = session_reminders(
                    &SessionPlan {
                        session_id: &rescheduled.session_id,
                        mentor_id: &rescheduled.mentor_id,
                        mentee_ids: &rescheduled.mentee_ids,
                        topic: topic.as_deref().unwrap_or_default(),
                        starts_at,
                        duration_minutes: minutes(rescheduled.duration.as_ref()),
                    },
                    now,
                );
                cancel_pending(
                    &mut transaction,
                    tenant_id,
                    &reminders_group(&rescheduled.session_id),
                    &causes,
                    &format!("the session moved to {}", starts_at.to_rfc3339()),
                )
                .await?;
                planned = reminders;
            }
            Some(Payload::SessionCancelled(cancelled)) => {
                let reason = if cancelled.reason.is_empty() {
                    "the session was cancelled".to_owned()
                } else {
                    format!("the session was cancelled: {}", cancelled.reason)
                };
                cancel_pending(
                    &mut transaction,
                    tenant_id,
                    &reminders_group(&cancelled.session_id),
                    &[],
                    &reason,
                )
                .await?;
            }
            Some(Payload::SessionCompleted(completed)) => {
                cancel_pending(
                    &mut transaction,
                    tenant_id,
                    &reminders_group(&completed.session_id),
                    &[],
                    "the session took place",
                )
                .await?;
                let topic: Option<String> = sqlx::query_scalar(
                    "SELECT topic FROM sessions WHERE tenant_id = $1 AND session_id = $2",
                )
                .bind(tenant_id)
                .bind(&completed.session_id)
                .fetch_optional(&mut *transaction)
                .await?;
                let starts_at = time(completed.starts_at.as_ref()).unwrap_or(occurred_at);
                planned = completed
                    .attendee_ids
                    .iter()
                    .map(|attendee| Planned {
                        recipient_id: attendee.clone(),
                        kind: Kind::FeedbackRequest,
                        cause: format!("session:{}:feedback-request", completed.session_id),
                        cause_group: String::new(),
                        params: json!({
                            "session_id": completed.session_id,
                            "topic": topic.as_deref().unwrap_or_default(),
                            "starts_at": starts_at.to_rfc3339(),
                        }),
                        due_at: now,
                    })
                    .collect();
            }
            Some(Payload::MenteeAtRisk(at_risk)) => {
                planned.push(at_risk_alert(at_risk, now));
            }
            Some(Payload::SessionMissed(missed)) => {
                cancel_pending(
                    &mut transaction,
                    tenant_id,
                    &reminders_group(&missed.session_id),
                    &[],
                    "the session was missed",
                )
                .await?;
            }
            _ => {}
        }
        // An event older than the retention may have caused notifications already sent and
        // pruned: nothing it would send now is planned again. Reminders of a session still to
        // come are due later than anything pruning took, so they stay.
        if occurred_at < now - self.retention {
            planned.retain(|planned| planned.due_at > now);
        }
        let mut any = false;
        for planned in &planned {
            any |= plan(&mut transaction, tenant_id, planned).await?;
        }
        transaction.commit().await?;
        Ok(any)
    }
}

/// The mentor's alert that a newcomer left on-track: one per at-risk episode.
fn at_risk_alert(
    at_risk: &mentorstream_proto::mentorship::v1::MenteeAtRisk,
    now: DateTime<Utc>,
) -> Planned {
    use mentorstream_proto::mentorship::v1::{Milestone, NewcomerStatus};
    let overdue: Vec<&str> = at_risk
        .overdue
        .iter()
        .filter_map(|milestone| Milestone::try_from(*milestone).ok())
        .filter_map(|milestone| match milestone {
            Milestone::FirstSession => Some("first_session"),
            Milestone::FirstModule => Some("first_module"),
            Milestone::FirstSale => Some("first_sale"),
            Milestone::FirstRecruit => Some("first_recruit"),
            Milestone::FirstRank => Some("first_rank"),
            Milestone::Unspecified => None,
        })
        .collect();
    Planned {
        recipient_id: at_risk.mentor_id.clone(),
        kind: Kind::AtRiskMentor,
        cause: format!("at-risk:{}", at_risk.episode_id),
        cause_group: String::new(),
        params: json!({
            "mentee_id": at_risk.mentee_id,
            "group_id": at_risk.group_id,
            "program_id": at_risk.program_id,
            "day": at_risk.day,
            "behind": at_risk.status() == NewcomerStatus::Behind,
            "overdue": overdue,
        }),
        due_at: now,
    }
}

/// Follows `mentorstream.kpi.signals.v1`: congratulations and inactivity nudges to the
/// partner, each with a note to their current mentor.
#[derive(Debug)]
pub struct SignalFollower {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub dispatcher: Arc<Notify>,
    /// As [`MentorshipFollower::retention`].
    pub retention: TimeDelta,
}

impl RecordHandler for SignalFollower {
    async fn handle(&mut self, record: InboundRecord<'_>) -> Result<(), HandleError> {
        let signal: KpiSignal = record
            .decode()
            .map_err(|error| HandleError::Poison(error.to_string()))?;
        let planned = self
            .apply(&signal)
            .await
            .map_err(|error| HandleError::Transient(error.to_string()))?;
        if planned {
            self.dispatcher.notify_one();
        }
        Ok(())
    }
}

/// What a signal tells the partner and their mentor, or None for signals nobody is told of.
fn signal_notifications(signal: &KpiSignal) -> Option<(Kind, Kind, Value)> {
    let decimal = |value: Option<&mentorstream_proto::common::v1::Decimal>| {
        value.map(|value| value.value.clone()).unwrap_or_default()
    };
    Some(match signal.payload.as_ref()? {
        kpi_signal::Payload::FirstSale(sale) => (
            Kind::FirstSale,
            Kind::FirstSaleMentor,
            json!({
                "order_id": sale.order_id,
                "volume": decimal(sale.volume.as_ref()),
                "days_to_first_sale": sale.days_to_first_sale,
            }),
        ),
        kpi_signal::Payload::GoalAchieved(goal) => {
            let (metric_en, metric_ru) = metric_labels(goal.metric());
            (
                Kind::GoalAchieved,
                Kind::GoalAchievedMentor,
                json!({
                    "goal_id": goal.goal_id,
                    "metric_en": metric_en,
                    "metric_ru": metric_ru,
                    "target": decimal(goal.target.as_ref()),
                    "value": decimal(goal.value.as_ref()),
                }),
            )
        }
        kpi_signal::Payload::RankAchieved(rank) => (
            Kind::RankAchieved,
            Kind::RankAchievedMentor,
            json!({
                "rank_level": rank.rank_level,
                "rank_name": rank.rank_name,
                "days_to_rank": rank.days_to_rank,
            }),
        ),
        kpi_signal::Payload::Inactive(inactive) => (
            Kind::Inactive,
            Kind::InactiveMentor,
            json!({
                "inactive_days": inactive.inactive_days,
                "last_active_at": time(inactive.last_active_at.as_ref())
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_default(),
            }),
        ),
        kpi_signal::Payload::GoalMissed(_) | kpi_signal::Payload::TargetCrossed(_) => {
            return None;
        }
    })
}

/// A metric's name in English and Russian, for goal messages.
fn metric_labels(metric: Metric) -> (&'static str, &'static str) {
    match metric {
        Metric::Unspecified => ("progress", "прогресс"),
        Metric::Recruits => ("recruits", "новые партнёры"),
        Metric::SalesVolume => ("sales volume", "объём продаж"),
        Metric::Orders => ("orders", "заказы"),
        Metric::ModulesCompleted => ("modules completed", "пройденные модули"),
        Metric::LearningMinutes => ("learning minutes", "минуты обучения"),
        Metric::EventsAttended => ("events attended", "посещённые мероприятия"),
        Metric::SessionsCompleted => ("sessions completed", "проведённые сессии"),
        Metric::SessionsMissed => ("sessions missed", "пропущенные сессии"),
        Metric::FeedbackAvg => ("average feedback", "средняя оценка"),
        Metric::FeedbackCount => ("feedback received", "полученные оценки"),
        Metric::RankAdvancements => ("rank advancements", "повышения ранга"),
        Metric::ActiveDays => ("active days", "активные дни"),
        Metric::GroupSize => ("group size", "размер группы"),
        Metric::Retention30d => ("30-day retention", "удержание за 30 дней"),
        Metric::FeedbackSum => ("feedback points", "сумма оценок"),
        Metric::Partners => ("partners", "партнёры"),
        Metric::TeamDepth => ("team depth", "глубина структуры"),
    }
}

impl SignalFollower {
    async fn apply(&self, signal: &KpiSignal) -> Result<bool, sqlx::Error> {
        let Some((own, mentors, params)) = signal_notifications(signal) else {
            return Ok(false);
        };
        let now = self.clock.now();
        // Older than what pruning keeps: it may have been sent and forgotten.
        if time(signal.occurred_at.as_ref()).is_some_and(|at| at < now - self.retention) {
            return Ok(false);
        }
        let mut transaction = self.pool.begin().await?;
        let mentor: Option<String> = sqlx::query_scalar(
            "SELECT mentor_id FROM mentees WHERE tenant_id = $1 AND mentee_id = $2",
        )
        .bind(&signal.tenant_id)
        .bind(&signal.partner_id)
        .fetch_optional(&mut *transaction)
        .await?;
        let mut planned = vec![Planned {
            recipient_id: signal.partner_id.clone(),
            kind: own,
            cause: format!("signal:{}", signal.signal_id),
            cause_group: String::new(),
            params: params.clone(),
            due_at: now,
        }];
        if let Some(mentor) = mentor {
            let mut params = params;
            params["mentee_id"] = json!(signal.partner_id);
            planned.push(Planned {
                recipient_id: mentor,
                kind: mentors,
                cause: format!("signal:{}:mentor", signal.signal_id),
                cause_group: String::new(),
                params,
                due_at: now,
            });
        }
        let mut any = false;
        for planned in &planned {
            any |= plan(&mut transaction, &signal.tenant_id, planned).await?;
        }
        transaction.commit().await?;
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn session(starts_at: DateTime<Utc>, mentees: &[String]) -> SessionPlan<'_> {
        SessionPlan {
            session_id: "s-1",
            mentor_id: "m-1",
            mentee_ids: mentees,
            topic: "Первые шаги",
            starts_at,
            duration_minutes: 15,
        }
    }

    #[test]
    fn a_session_far_ahead_gets_both_reminders_for_everyone() {
        let mentees = vec!["p-1".to_owned(), "p-2".to_owned()];
        let starts = at("2026-11-30T07:00:00Z");
        let (planned, causes) =
            session_reminders(&session(starts, &mentees), at("2026-11-27T00:00:00Z"));
        let stamp = starts.timestamp();
        assert_eq!(
            causes,
            vec![
                format!("session:s-1@{stamp}:reminder-24h"),
                format!("session:s-1@{stamp}:reminder-15m")
            ]
        );
        let due: Vec<(&str, Kind, DateTime<Utc>)> = planned
            .iter()
            .map(|planned| (planned.recipient_id.as_str(), planned.kind, planned.due_at))
            .collect();
        assert_eq!(
            due,
            vec![
                ("m-1", Kind::Reminder24h, at("2026-11-29T07:00:00Z")),
                ("p-1", Kind::Reminder24h, at("2026-11-29T07:00:00Z")),
                ("p-2", Kind::Reminder24h, at("2026-11-29T07:00:00Z")),
                ("m-1", Kind::Reminder15m, at("2026-11-30T06:45:00Z")),
                ("p-1", Kind::Reminder15m, at("2026-11-30T06:45:00Z")),
                ("p-2", Kind::Reminder15m, at("2026-11-30T06:45:00Z")),
            ]
        );
        assert_eq!(planned[0].params["role"], "mentor");
        assert_eq!(planned[1].params["role"], "mentee");
    }

    #[test]
    fn a_session_soon_gets_the_late_reminder_at_once_and_no_24h_one() {
        let mentees = vec!["p-1".to_owned()];
        let now = at("2026-11-27T10:00:00Z");
        let (planned, causes) =
            session_reminders(&session(at("2026-11-27T10:10:00Z"), &mentees), now);
        assert_eq!(causes.len(), 1);
        assert!(
            planned
                .iter()
                .all(|planned| planned.kind == Kind::Reminder15m)
        );
        assert!(planned.iter().all(|planned| planned.due_at == now));
        // A session within 24 hours but more than 15 minutes away: the 24-hour one at once.
        let (planned, _) = session_reminders(&session(at("2026-11-27T20:00:00Z"), &mentees), now);
        assert_eq!(
            planned
                .iter()
                .map(|planned| (planned.kind, planned.due_at))
                .collect::<Vec<_>>(),
            vec![
                (Kind::Reminder24h, now),
                (Kind::Reminder24h, now),
                (Kind::Reminder15m, at("2026-11-27T19:45:00Z")),
                (Kind::Reminder15m, at("2026-11-27T19:45:00Z")),
            ]
        );
    }

    #[test]
    fn a_session_that_started_gets_no_reminder() {
        let (planned, causes) = session_reminders(
            &session(at("2026-11-27T09:00:00Z"), &[]),
            at("2026-11-27T09:00:00Z"),
        );
        assert!(planned.is_empty() && causes.is_empty());
    }
}
