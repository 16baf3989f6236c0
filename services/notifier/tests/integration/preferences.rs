//! Preferences: what a partner sets is checked field by field and kept; quiet hours defer,
//! opt-outs suppress and the daily cap holds, in the partner's time zone.

use crate::common;

use chrono::TimeDelta;
use common::{Notifier, at};
use mentorstream_proto::kpi::v1::{Inactive, RankAchieved, kpi_signal};
use mentorstream_proto::notification::v1::{self as proto, NotificationStatus};
use tonic::Code;
use tonic_types::StatusExt as _;

fn rank(level: u32) -> kpi_signal::Payload {
    kpi_signal::Payload::RankAchieved(RankAchieved {
        rank_level: level,
        rank_name: format!("Level {level}"),
        days_to_rank: 10,
    })
}

fn night_owl() -> proto::Preferences {
    proto::Preferences {
        partner_id: "p-1".into(),
        channels: vec![proto::Channel::Chatbot as i32],
        chatbot_user_id: "tg-p1".into(),
        email: String::new(),
        locale: "en".into(),
        time_zone: String::new(),
        quiet_hours: Some(proto::QuietHours {
            start: Some(proto::TimeOfDay {
                hours: 22,
                minutes: 0,
            }),
            end: Some(proto::TimeOfDay {
                hours: 8,
                minutes: 0,
            }),
        }),
        opted_out: vec![proto::Category::Inactivity as i32],
        daily_cap: 2,
    }
}

async fn preferences_of(notifier: &Notifier, partner: &str) -> proto::Preferences {
    notifier
        .client
        .clone()
        .get_preferences(notifier.read(proto::GetPreferencesRequest {
            partner_id: partner.into(),
        }))
        .await
        .expect("preferences")
        .into_inner()
        .preferences
        .expect("preferences")
}

#[tokio::test]
async fn preferences_are_checked_kept_and_retried_safely() {
    let notifier = Notifier::start_at(at("2026-11-25T10:00:00Z")).await;
    // Unknown partners have the defaults: no address, tenant's locale and zone.
    assert_eq!(
        preferences_of(&notifier, "p-1").await,
        proto::Preferences {
            partner_id: "p-1".into(),
            ..proto::Preferences::default()
        }
    );
    let update = |request_id: &str, preferences: proto::Preferences| {
        notifier.write(proto::UpdatePreferencesRequest {
            request_id: request_id.into(),
            preferences: Some(preferences),
            update_mask: None,
        })
    };
    let mut client = notifier.client.clone();
    let stored = client
        .update_preferences(update("req-1", night_owl()))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(stored.preferences, Some(night_owl()));
    assert_eq!(preferences_of(&notifier, "p-1").await, night_owl());

    // Refused with the field and the reason, and nothing changes.
    let refused = client
        .update_preferences(update(
            "",
            proto::Preferences {
                email: "not an address".into(),
                ..night_owl()
            },
        ))
        .await
        .expect_err("bad e-mail");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "preferences.email: `not an address` is not an e-mail address"
    );
    let violations = refused
        .get_error_details()
        .bad_request()
        .expect("bad request")
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "preferences.email");
    let refused = client
        .update_preferences(update(
            "",
            proto::Preferences {
                time_zone: "Europe/Atlantis".into(),
                ..night_owl()
            },
        ))
        .await
        .expect_err("bad zone");
    assert_eq!(
        refused.message(),
        "preferences.time_zone: unknown time zone `Europe/Atlantis`: expected an IANA name \
         such as Europe/Moscow"
    );
    assert_eq!(preferences_of(&notifier, "p-1").await, night_owl());

    // A retried request answers as the first time and writes nothing.
    let retried = client
        .update_preferences(update(
            "req-1",
            proto::Preferences {
                daily_cap: 7,
                ..night_owl()
            },
        ))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.preferences, Some(night_owl()));
    assert_eq!(preferences_of(&notifier, "p-1").await, night_owl());

    // A partial update writes what it sets and keeps the rest; a mask can clear a field.
    let new_address = proto::Preferences {
        partner_id: "p-1".into(),
        email: "owl@example.com".into(),
        ..proto::Preferences::default()
    };
    let updated = client
        .update_preferences(update("", new_address))
        .await
        .expect("partial update")
        .into_inner();
    let with_new_address = proto::Preferences {
        email: "owl@example.com".into(),
        ..night_owl()
    };
    assert_eq!(updated.preferences, Some(with_new_address.clone()));
    let masked = |paths: &[&str]| {
        notifier.write(proto::UpdatePreferencesRequest {
            request_id: String::new(),
            preferences: Some(proto::Preferences {
                partner_id: "p-1".into(),
                ..proto::Preferences::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|&path| path.into()).collect(),
            }),
        })
    };
    let refused = client
        .update_preferences(masked(&["quiet_hours", "colour"]))
        .await
        .expect_err("unknown path");
    assert_eq!(
        refused.message(),
        "update_mask.paths: [1] `colour` is not a field an update can write (channels, \
         chatbot_user_id, email, locale, time_zone, quiet_hours, opted_out, daily_cap)"
    );
    assert_eq!(preferences_of(&notifier, "p-1").await, with_new_address);
    client
        .update_preferences(masked(&["quiet_hours"]))
        .await
        .expect("cleared");
    assert_eq!(
        preferences_of(&notifier, "p-1").await,
        proto::Preferences {
            quiet_hours: None,
            ..with_new_address
        }
    );
    // "*" writes every field, empty ones too.
    client
        .update_preferences(notifier.write(proto::UpdatePreferencesRequest {
            request_id: String::new(),
            preferences: Some(night_owl()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["*".into()],
            }),
        }))
        .await
        .expect("restored");
    assert_eq!(preferences_of(&notifier, "p-1").await, night_owl());
    // A request id of another method is refused.
    let reused = client
        .retry_notification(notifier.write(proto::RetryNotificationRequest {
            request_id: "req-1".into(),
            notification_id: "n-1".into(),
        }))
        .await
        .expect_err("reused");
    assert_eq!(
        reused.message(),
        "request_id: request_id `req-1` was used for UpdatePreferences"
    );
    // A read key cannot change preferences.
    let denied = client
        .update_preferences(notifier.read(proto::UpdatePreferencesRequest {
            request_id: String::new(),
            preferences: Some(night_owl()),
            update_mask: None,
        }))
        .await
        .expect_err("read key");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let missing = client
        .list_notifications(notifier.read(proto::ListNotificationsRequest {
            recipient_id: "p-1".into(),
            status: 0,
            page_size: 501,
            page_token: String::new(),
        }))
        .await
        .expect_err("page too big");
    assert_eq!(missing.message(), "page_size: must be at most 500, got 501");
    notifier.stop().await;
}

#[tokio::test]
async fn quiet_hours_defer_opt_outs_suppress_and_the_daily_cap_holds() {
    // 23:00 in Moscow, the tenant's zone (p-1 sets none).
    let mut notifier = Notifier::start_at(at("2026-11-25T20:00:00Z")).await;
    notifier.set_preferences(night_owl()).await;
    notifier.signal("sig-rank-1", "p-1", rank(1)).await;
    notifier
        .signal(
            "sig-inactive",
            "p-1",
            kpi_signal::Payload::Inactive(Inactive {
                last_active_at: None,
                inactive_days: 7,
            }),
        )
        .await;
    let night = notifier
        .wait_for("p-1", "deferred one and suppressed the other", |all| {
            all.len() == 2 && all.iter().all(|n| !n.status_reason.is_empty())
        })
        .await;
    let reasons: Vec<_> = night
        .iter()
        .map(|n| (n.cause.as_str(), n.status(), n.status_reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "signal:sig-rank-1",
                NotificationStatus::Pending,
                "deferred by quiet hours until 2026-11-26 08:00 (Europe/Moscow)"
            ),
            (
                "signal:sig-inactive",
                NotificationStatus::Suppressed,
                "the recipient opted out of inactivity"
            ),
        ]
    );
    assert!(notifier.gateway.received().is_empty());

    // 07:59: still quiet. 08:00: delivered, the first of the day.
    notifier.clock.set(at("2026-11-26T04:59:00Z"));
    notifier.signal("sig-rank-2", "p-1", rank(2)).await;
    notifier
        .wait_for("p-1", "deferred the second", |all| {
            all.len() == 3 && !all[2].status_reason.is_empty()
        })
        .await;
    assert!(notifier.gateway.received().is_empty());
    notifier.clock.set(at("2026-11-26T05:00:00Z"));
    let morning = notifier.gateway.wait_for(2).await;
    assert_eq!(morning.len(), 2);
    // The cap is 2 a day: a third on the same local day is suppressed, not sent.
    notifier.signal("sig-rank-3", "p-1", rank(3)).await;
    let capped = notifier
        .wait_for("p-1", "capped the third", |all| {
            all.len() == 4 && common::settled(all)
        })
        .await;
    assert_eq!(
        capped
            .iter()
            .map(|n| (n.cause.as_str(), n.status(), n.status_reason.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("signal:sig-rank-1", NotificationStatus::Delivered, ""),
            (
                "signal:sig-inactive",
                NotificationStatus::Suppressed,
                "the recipient opted out of inactivity"
            ),
            ("signal:sig-rank-2", NotificationStatus::Delivered, ""),
            (
                "signal:sig-rank-3",
                NotificationStatus::Suppressed,
                "the daily cap of 2 notifications was reached"
            ),
        ]
    );
    // The next local day (from 00:00 Moscow, outside quiet hours at 08:00) counts afresh.
    notifier
        .clock
        .set(at("2026-11-27T05:00:00Z") + TimeDelta::minutes(1));
    notifier.signal("sig-rank-4", "p-1", rank(4)).await;
    notifier
        .wait_for("p-1", "sent the next day", |all| {
            all.len() == 5 && all[4].status() == NotificationStatus::Delivered
        })
        .await;
    assert_eq!(notifier.gateway.received().len(), 3);
    // Filtered by status.
    let suppressed = notifier
        .client
        .clone()
        .list_notifications(notifier.read(proto::ListNotificationsRequest {
            recipient_id: "p-1".into(),
            status: NotificationStatus::Suppressed as i32,
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(suppressed.notifications.len(), 2);
    notifier.stop().await;
}
